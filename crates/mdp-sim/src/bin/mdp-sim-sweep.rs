//! Seed sweep: runs many simulated pushes with settings drawn from each seed
//! and checks that the sender's verdicts match the truth. Prints every
//! failing seed with the command that reproduces it.
//!
//! `cargo xtask sim --seeds 1000`, or directly
//! `cargo run --release -p mdp-sim --bin mdp-sim-sweep -- --seeds 1000 [--first N]`
//! and `... -- --seed N` for one run with details.

use mdp_proto::Verdict;
use mdp_sim::{Content, Fate, SimConfig, SimRng, World};
use std::time::Duration;

fn config_for(seed: u64) -> (SimConfig, Content) {
    let mut rng = SimRng::new(seed ^ 0x5EED);
    let pick = |rng: &mut SimRng, n: u64| rng.next_u64() % n;
    let receivers = 1 + pick(&mut rng, 24) as usize;
    let mut c = SimConfig::new(receivers, seed);
    let loss = [0.0, 0.01, 0.05, 0.1, 0.2, 0.3][pick(&mut rng, 6) as usize];
    if pick(&mut rng, 3) == 0 {
        c.loss_sender = loss;
    } else {
        c.loss_independent = loss;
    }
    c.latency = Duration::from_micros(50 + pick(&mut rng, 5000));
    if pick(&mut rng, 3) == 0 {
        c.jitter = Duration::from_micros(pick(&mut rng, 3000));
    }
    if pick(&mut rng, 4) == 0 {
        c.duplicate = 0.05;
    }
    c.sender.rate =
        mdp_proto::RateMode::Fixed([20, 100, 500, 1000][pick(&mut rng, 4) as usize] * 1_000_000);
    c.sender.block_k = [1, 7, 64, 192, 256, 1024][pick(&mut rng, 6) as usize];
    c.sender.parity = [1, 16, 64, 128][pick(&mut rng, 4) as usize];
    c.sender.proactive = if pick(&mut rng, 4) == 0 {
        c.sender.parity.min(4)
    } else {
        0
    };
    c.sender.symbol_size = [16, 500, 1400, 8000][pick(&mut rng, 4) as usize];
    if c.sender.block_k as usize * c.sender.symbol_size as usize
        > mdp_proto::limits::MAX_BLOCK_BYTES
    {
        c.sender.block_k = 256;
    }
    // Sometimes the smallest cache: blocks are evicted and read again for
    // repairs.
    c.sender.cache_bytes = if pick(&mut rng, 4) == 0 {
        c.sender.min_cache_bytes()
    } else {
        c.sender.cache_bytes.max(c.sender.min_cache_bytes())
    };
    c.receiver_buffer = [1 << 20, 8 << 20, 64 << 20][pick(&mut rng, 3) as usize];
    // Parity jobs answered at once, or by a busy or slow encoder thread.
    c.encode_delay = Duration::from_micros([0, 0, 50, 2000][pick(&mut rng, 4) as usize]);
    c.sender.timeout = Duration::from_secs(60);
    c.sender.drop_after = Duration::from_secs(3);
    c.fates = (0..receivers)
        .map(|_| match pick(&mut rng, 20) {
            0 => Fate::Killed(Duration::from_millis(pick(&mut rng, 500))),
            1 => Fate::LateJoin(Duration::from_millis(pick(&mut rng, 300))),
            _ => Fate::Normal,
        })
        .collect();
    if c.fates.iter().any(|f| matches!(f, Fate::LateJoin(_))) {
        // Late joiners are only waited for in open groups.
        c.sender.expected_receivers = 0;
        c.sender.wait = Duration::from_millis(100);
    }
    // At most ~2000 symbols per file keeps a seed under a second or so.
    // (fewer with tiny blocks: each block then costs a decode per loss).
    let symbols = if c.sender.block_k < 64 { 300 } else { 2000 };
    let max_len = c.sender.symbol_size as u64 * symbols;
    // Now and then a tree of many small files.
    let file_count = if pick(&mut rng, 8) == 0 {
        300
    } else {
        1 + pick(&mut rng, 6)
    };
    let files = (0..file_count)
        .map(|i| {
            let len = match pick(&mut rng, 4) {
                _ if file_count > 100 => pick(&mut rng, max_len / 100 + 1) as usize,
                0 => 0,
                1 => pick(&mut rng, 3000) as usize,
                _ => pick(&mut rng, max_len) as usize,
            };
            (
                format!("d{}/f{i}", i % 2),
                Content::random_bytes(len, seed + i),
            )
        })
        .collect();
    // The receivers' callers settle the tree (directory times, --delete)
    // at once, or take a while: confirmation waits for it. (Drawn last,
    // so that the draws above are those of earlier sweeps.)
    c.settle_delay = Duration::from_millis([0, 0, 5, 200][pick(&mut rng, 4) as usize]);
    (c, Content::new(&["d0", "d1"], files))
}

/// Runs one seed; returns what is wrong, if anything.
fn check(seed: u64, verbose: bool) -> Result<(), String> {
    let (c, content) = config_for(seed);
    if verbose {
        println!("{c:#?}");
    }
    let fates = c.fates.clone();
    let r = World::new(c, content.clone()).run();
    let report = r.report.as_ref().ok_or("the sender never finished")?;
    if verbose {
        println!("{report:#?}");
    }
    let mut all_alive_complete = true;
    for (i, rx) in r.receivers.iter().enumerate() {
        let alive = !matches!(fates.get(i), Some(Fate::Killed(_)));
        let has_all = content
            .manifest
            .files()
            .all(|(id, e)| rx.files.get(&e.path) == Some(&content.files[&id]));
        // Files a receiver verified are byte-identical to the source.
        for (path, data) in &rx.files {
            let (id, _) = content
                .manifest
                .files()
                .find(|(_, e)| &e.path == path)
                .ok_or(format!("r{i} placed an unknown file {path}"))?;
            if data != &content.files[&id] {
                return Err(format!("r{i} holds a wrong {path}"));
            }
        }
        if let Some(rr) = report.receivers.iter().find(|x| x.node == Some(rx.node)) {
            if rr.verdict == Verdict::Confirmed && !has_all {
                return Err(format!("r{i} confirmed without holding every file"));
            }
            // Confirmed means settled: a script may read the tree as soon
            // as the sender ends.
            if rr.verdict == Verdict::Confirmed && rx.settled.is_none_or(|t| t > r.elapsed) {
                return Err(format!(
                    "r{i} confirmed but settled at {:?}, the sender ended at {:?}",
                    rx.settled, r.elapsed
                ));
            }
        } else if alive && has_all && report.expected > 0 {
            // A closed group names every receiver that took part; an open
            // group can miss one whose every REGISTER and STATUS was lost.
            return Err(format!("r{i} completed but is missing from the report"));
        }
        if alive && !has_all {
            all_alive_complete = false;
            if verbose {
                println!(
                    "r{i} ({:?}) lacks files: outcome {:?} stats {:?}",
                    fates.get(i),
                    rx.outcome,
                    rx.stats
                );
            }
        }
    }
    // In an open group (no --receivers), a receiver that never reached the
    // sender (it lost every ANNOUNCE, or joined after the end) is not
    // expected; in a closed group every live receiver is.
    if report.success && !all_alive_complete && report.expected > 0 {
        return Err("success reported while a live receiver lacks files".into());
    }
    let any_killed = fates.iter().any(|f| matches!(f, Fate::Killed(_)));
    if !report.success && all_alive_complete && !any_killed && !report.receivers.is_empty() {
        return Err(format!(
            "failure reported though all are complete: {:?}",
            report.problem
        ));
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "usage: mdp-sim-sweep [--seeds N (default 200)] [--first N (default 0)]\n       \
             mdp-sim-sweep --seed N   (one run, with details)"
        );
        return;
    }
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse::<u64>().expect("a number"))
    };
    if let Some(seed) = value("--seed") {
        match check(seed, true) {
            Ok(()) => println!("seed {seed}: ok"),
            Err(e) => {
                println!("seed {seed}: FAILED: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let seeds = value("--seeds").unwrap_or(200);
    let first = value("--first").unwrap_or(0);
    let mut failed = 0;
    for seed in first..first + seeds {
        let started = std::time::Instant::now();
        let result = check(seed, false);
        if started.elapsed() > Duration::from_secs(10) {
            println!(
                "seed {seed}: slow ({:.1}s of real time)",
                started.elapsed().as_secs_f64()
            );
        }
        if let Err(e) = result {
            failed += 1;
            println!("seed {seed}: FAILED: {e}\n  reproduce: cargo run --release -p mdp-sim --bin mdp-sim-sweep -- --seed {seed}");
        }
    }
    println!("{} passed, {failed} failed", seeds - failed);
    if failed > 0 {
        std::process::exit(1);
    }
}

//! Project tasks.
//!
//! - `cargo xtask ci`: every gate CI runs: fmt, clippy, tests, a seed sweep,
//!   the fault suite (as root), short fuzz runs (with nightly and
//!   cargo-fuzz), docs, benches compile, `bash -n` on benches/scripts.
//! - `cargo xtask demo`: builds the binaries and pushes a generated tree to
//!   four receivers over loopback multicast, then checks their copies.
//! - `cargo xtask bench`: FEC throughput and end-to-end loopback goodput.
//! - `cargo xtask sim [--seeds N]`: a long seed sweep of simulated pushes.
//! - `cargo xtask dist`: release binaries, man pages and shell completions.
//! - `cargo xtask netns`: the fault suite (loss, outage, slow link, killed
//!   and restarted processes, a full disk) between network namespaces.
//!
//! The demo and the benchmark run inside a private network namespace when
//! they can (root and `unshare -n`), so no datagram can leave the machine;
//! otherwise on the host's loopback interface, pinned to 127.0.0.1.

mod compare;
mod faults;

use anyhow::{bail, Context, Result};
use mdp_sim::{netns, Content};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INNER: &str = "MDP_XTASK_INNER";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("demo") => demo(),
        Some("bench") => bench(&args[1..]),
        Some("sim") => sim(&args[1..]),
        Some("dist") => dist(),
        Some("netns") => netns_suite(),
        // Internal: the testbed floor of `bench`, run in namespaces.
        Some("blast") => compare::blast(&args[1..]),
        Some("sink") => compare::sink(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <ci|demo|bench|sim>\n  ci                fmt, clippy, tests, a short seed sweep, docs (what CI runs)\n  demo              a real push over loopback multicast to four receivers\n  bench             FEC throughput and loopback goodput, as a table\n  sim [--seeds N]   simulate N pushes with random settings (default 1000)\n  netns             the fault suite: real binaries between network namespaces (root)\n  dist              release binaries, man pages and shell completions in target/dist");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(what: &str, cmd: &mut Command) -> Result<()> {
    let start = Instant::now();
    eprintln!("==> {what}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start: {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    eprintln!("    {what}: ok in {:.1}s", start.elapsed().as_secs_f64());
    Ok(())
}

fn ci() -> Result<()> {
    run(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    run(
        "cargo clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    let (passed, failed) = run_tests()?;
    sweep("60", false)?;
    // The fault suite needs root (namespaces, nftables, a tmpfs mount).
    netns_suite()?;
    fuzz_short()?;
    run(
        "cargo doc",
        cargo()
            .args(["doc", "--workspace", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    run(
        "benches compile",
        cargo().args(["bench", "-p", "mdp-benches", "--no-run"]),
    )?;
    for script in fs::read_dir(root().join("benches/scripts"))? {
        let path = script?.path();
        if path.extension().is_some_and(|e| e == "sh") {
            run(
                &format!("bash -n {}", path.display()),
                Command::new("bash").arg("-n").arg(&path),
            )?;
        }
    }
    eprintln!("xtask ci: all gates passed");
    // A plain summary as the very last line, for tools that read it.
    println!("{passed} passed, {failed} failed");
    Ok(())
}

/// `cargo test --workspace`, passing its output through and adding up the
/// `test result:` lines of every test binary.
fn run_tests() -> Result<(u64, u64)> {
    use std::io::{BufRead, BufReader};
    eprintln!("==> cargo test");
    let start = Instant::now();
    let mut child = cargo()
        .args(["test", "--workspace"])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start cargo test")?;
    let (mut passed, mut failed) = (0u64, 0u64);
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let count = |word: &str| -> u64 {
                rest.split(';')
                    .find_map(|part| {
                        part.trim()
                            .trim_start_matches("ok. ")
                            .trim_start_matches("FAILED. ")
                            .strip_suffix(word)
                    })
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0)
            };
            passed += count(" passed");
            failed += count(" failed");
        }
    }
    let status = child.wait()?;
    if !status.success() {
        println!("{passed} passed, {failed} failed");
        bail!("cargo test failed ({status})");
    }
    eprintln!(
        "    cargo test: ok in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    Ok((passed, failed))
}

/// True when this process should do the network work itself: inside the
/// private namespace it re-ran itself in, or on the host when there is none.
fn enter_private_netns(task: &str) -> Result<bool> {
    if std::env::var(INNER).as_deref() == Ok(task) {
        netns::setup_loopback()?;
        return Ok(true);
    }
    if !netns::available() {
        eprintln!("note: no private network namespace (needs root and unshare -n); using the host's loopback, pinned to 127.0.0.1");
        return Ok(true);
    }
    let status = Command::new("unshare")
        .args(netns::unshare_args().expect("checked available() above"))
        .arg(std::env::current_exe()?)
        .arg(task)
        .env(INNER, task)
        .status()?;
    if !status.success() {
        bail!("{task} failed inside its network namespace");
    }
    Ok(false)
}

fn build_release() -> Result<PathBuf> {
    if std::env::var(INNER).is_err() {
        run(
            "cargo build --release -p mdp-cli",
            cargo().args(["build", "--release", "-p", "mdp-cli"]),
        )?;
    }
    Ok(root().join("target/release"))
}

fn bytes(len: usize, seed: u64) -> Vec<u8> {
    Content::random_bytes(len, seed)
}

fn receivers(bin: &Path, base: &Path, n: usize) -> Result<Vec<Child>> {
    (0..n)
        .map(|i| {
            let dir = base.join(format!("receiver{i}"));
            let _ = fs::remove_dir_all(&dir);
            Command::new(bin.join("mdp-recv"))
                .arg("--dir")
                .arg(&dir)
                .args(["--once", "--quiet", "--timeout", "300s", "--name"])
                .arg(format!("receiver{i}"))
                .stdout(Stdio::null())
                .spawn()
                .context("cannot start mdp-recv")
        })
        .collect()
}

fn same_tree(a: &Path, b: &Path) -> Result<(usize, u64)> {
    let mut files = 0;
    let mut total = 0;
    for e in fs::read_dir(a)? {
        let e = e?;
        let (pa, pb) = (e.path(), b.join(e.file_name()));
        if e.file_type()?.is_dir() {
            let (f, t) = same_tree(&pa, &pb)?;
            files += f;
            total += t;
        } else {
            let (x, y) = (
                fs::read(&pa)?,
                fs::read(&pb).with_context(|| format!("{} is missing", pb.display()))?,
            );
            if x != y {
                bail!("{} differs from the source", pb.display());
            }
            files += 1;
            total += x.len() as u64;
        }
    }
    Ok((files, total))
}

fn demo() -> Result<()> {
    let bin = build_release()?;
    if !enter_private_netns("demo")? {
        return Ok(());
    }
    let base = root().join("target/demo");
    let src = base.join("source/site");
    if !src.exists() {
        eprintln!("==> generating a tree to push in {}", src.display());
        fs::create_dir_all(src.join("empty-dir"))?;
        fs::write(src.join("video.bin"), bytes(48 << 20, 1))?;
        fs::write(src.join("empty-file"), b"")?;
        for d in 0..8 {
            let dir = src.join(format!("assets/group{d}"));
            fs::create_dir_all(&dir)?;
            for f in 0..25 {
                fs::write(
                    dir.join(format!("file{f}.dat")),
                    bytes(1000 + 4093 * (d * 25 + f), (d * 100 + f) as u64),
                )?;
            }
        }
    }
    let n = 4;
    eprintln!("==> starting {n} receivers and a sender on 239.255.77.1:7400 via 127.0.0.1");
    let rx = receivers(&bin, &base, n)?;
    std::thread::sleep(Duration::from_millis(300));
    let status = Command::new(bin.join("mdp-send"))
        .args(["--receivers", &n.to_string(), "--timeout", "120s"])
        .arg(&src)
        .status()?;
    for mut c in rx {
        c.wait()?;
    }
    for i in 0..n {
        let (files, total) = same_tree(&src, &base.join(format!("receiver{i}/site")))?;
        eprintln!("    receiver{i}: {files} files, {total} bytes, identical to the source");
    }
    if !status.success() {
        bail!("mdp-send exited with {status}");
    }
    eprintln!("demo: done; the copies are in {}", base.display());
    Ok(())
}

fn sim(args: &[String]) -> Result<()> {
    let seeds = match args {
        [] => "1000".to_string(),
        [flag, n] if flag == "--seeds" => n.clone(),
        _ => bail!("usage: cargo xtask sim [--seeds N]"),
    };
    sweep(&seeds, true)
}

/// Runs `seeds` simulated pushes with random settings (mdp-sim-sweep).
fn sweep(seeds: &str, release: bool) -> Result<()> {
    let mut cmd = cargo();
    cmd.arg("run");
    if release {
        cmd.arg("--release");
    }
    cmd.args([
        "-q",
        "-p",
        "mdp-sim",
        "--bin",
        "mdp-sim-sweep",
        "--",
        "--seeds",
        seeds,
    ]);
    run(&format!("seed sweep ({seeds} seeds)"), &mut cmd)
}

fn dist() -> Result<()> {
    use clap::CommandFactory;
    let bin = build_release()?;
    let out = root().join("target/dist");
    let _ = fs::remove_dir_all(&out);
    for dir in ["bin", "man/man1", "completions"] {
        fs::create_dir_all(out.join(dir))?;
    }
    let commands = [
        mdp_cli::send::Args::command(),
        mdp_cli::recv::Args::command(),
    ];
    for mut cmd in commands {
        let name = cmd.get_name().to_string();
        fs::copy(bin.join(&name), out.join("bin").join(&name))?;
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
        fs::write(out.join(format!("man/man1/{name}.1")), page)?;
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            clap_complete::generate_to(shell, &mut cmd, &name, out.join("completions"))?;
        }
    }
    eprintln!(
        "dist: binaries, man pages and completions in {}",
        out.display()
    );
    Ok(())
}

/// mdp, udpcast and UFTP side by side between network namespaces.
/// Seconds each fuzz target runs in `cargo xtask ci`.
const FUZZ_CI_SECS: u32 = 10;

/// A short coverage-guided run of every fuzz target (`fuzz/`, cargo-fuzz
/// on nightly), when the machine has both; the stable corpus test
/// (`crates/mdp-sim/tests/fuzz_corpus.rs`) has run in `cargo test` anyway.
fn fuzz_short() -> Result<()> {
    let has = |args: &[&str]| {
        Command::new("cargo")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has(&["+nightly", "--version"]) || !has(&["fuzz", "--version"]) {
        eprintln!("note: skipping the short cargo-fuzz runs: they need a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`); the corpus test ran on stable");
        return Ok(());
    }
    for target in ["wire", "manifest", "receiver", "sender"] {
        let fresh = root().join("fuzz/corpus-new").join(target);
        fs::create_dir_all(&fresh)?;
        run(
            &format!("cargo fuzz run {target} ({FUZZ_CI_SECS} s)"),
            Command::new("cargo")
                .current_dir(root().join("fuzz"))
                .args(["+nightly", "fuzz", "run", "-O", target])
                .arg(&fresh)
                .arg(root().join("fuzz/corpus").join(target))
                .args([
                    "--",
                    &format!("-max_total_time={FUZZ_CI_SECS}"),
                    "-rss_limit_mb=2048",
                ]),
        )?;
    }
    Ok(())
}

/// `cargo xtask netns`: skipped, with a message, without root.
fn netns_suite() -> Result<()> {
    if !netns::available() {
        eprintln!("skipping the fault suite: it needs root (network namespaces, nftables, tc, a tmpfs mount)");
        return Ok(());
    }
    compare::ensure_netns_tools()?;
    let bin = build_release()?;
    faults::run(&bin)
}

/// The comparison with udpcast and UFTP; with `only`, just the cases whose
/// name contains it (the peers' sweeps and the floor always run).
fn peers(bin: &Path, runs: usize, only: Option<&str>) -> Result<()> {
    let wanted = |case: &str| only.is_none_or(|o| case.contains(o));
    compare::ensure_tools()?;
    let work = root().join("target/bench/peers");
    fs::create_dir_all(&work)?;
    let small = compare::data_file(&work, "file-4.5MiB.bin", 4608 << 10, 11)?;
    let big = compare::data_file(&work, "file-256MiB.bin", 256 << 20, 12)?;
    let tree = compare::data_tree(&work, "tree-10k", 100, 100)?;
    // Each case runs on a network of exactly its hosts. The bridge floods
    // multicast to every port (there is no IGMP querier), and a host idle
    // in a case would still take every frame, on the same two cores as
    // the hosts under test.
    let (floor4, read4) = {
        let net = compare::Net::new(5)?;
        (net.floor(256 << 20, false)?, net.floor(256 << 20, true)?)
    };
    let mut net = Some(compare::Net::new(2)?);
    let floor = net.as_ref().expect("just made").floor(256 << 20, false)?;
    let read = net.as_ref().expect("just made").floor(256 << 20, true)?;
    eprintln!(
        "==> testbed floor: 256 MiB of datagrams from h0 to 1 / 4 hosts that do not read: {floor:.2} / {floor4:.2} s; that read and drop them: {read:.2} / {read4:.2} s"
    );
    let tool = |name, setting: &str, extra: &[&str]| compare::Tool {
        name,
        setting: setting.to_string(),
        extra: extra.iter().map(|s| s.to_string()).collect(),
    };
    eprintln!("==> fastest settings of the peers (256 MiB to 1 receiver, one run each)");
    let bridge = compare::Place::Bridge(net.as_ref().expect("just made"));
    let (udpcast, _) = compare::sweep(
        bridge,
        bin,
        &work,
        vec![
            tool("udpcast", "", &[]),
            tool("udpcast", "--full-duplex", &["--full-duplex"]),
            tool("udpcast", "--max-bitrate 900m", &["--max-bitrate", "900m"]),
        ],
        &big,
    )?;
    let (uftp, uftp_seen) = compare::sweep(
        bridge,
        bin,
        &work,
        vec![
            tool("uftp", "-R -1", &["-R", "-1"]),
            tool("uftp", "-R 1000000", &["-R", "1000000"]),
            tool("uftp", "-R -1 -b 8800", &["-R", "-1", "-b", "8800"]),
        ],
        &big,
    )?;
    let mdp = tool("mdp", "", &[]);
    let mdp_floor = tool("mdp", "--min-rate 1G", &["--min-rate", "1G"]);
    // Under loss on the link, UFTP's 8800-byte datagrams (six IP fragments
    // each) are lost whenever one fragment is: 26 % at 5 % frame loss, and
    // it did not finish in 90 s. The loss cases use its fastest setting
    // whose datagrams fit a frame.
    let uftp_lossy =
        compare::fastest(&uftp_seen, |t| !t.setting.contains("-b 8800")).unwrap_or(uftp.clone());
    let tools = [mdp.clone(), udpcast, uftp];
    struct Case {
        name: String,
        file: PathBuf,
        n: usize,
        loss: u32,
        limit_all: u32,
        slow_one: u32,
    }
    let case = |name: &str, file: &Path, n, loss, limit_all, slow_one| Case {
        name: name.to_string(),
        file: file.to_path_buf(),
        n,
        loss,
        limit_all,
        slow_one,
    };
    let cases = [
        case("4.5 MiB to 1", &small, 1, 0, 0, 0),
        case("4.5 MiB to 4", &small, 4, 0, 0, 0),
        case("256 MiB to 1", &big, 1, 0, 0, 0),
        case("256 MiB to 4", &big, 4, 0, 0, 0),
        case("256 MiB to 1, 5 % loss", &big, 1, 5, 0, 0),
        case("256 MiB to 4, 5 % loss each", &big, 4, 5, 0, 0),
        case("256 MiB to 1, link 500 Mbit/s", &big, 1, 0, 500, 0),
        case("256 MiB to 4, links 500 Mbit/s", &big, 4, 0, 500, 0),
        case(
            "256 MiB to 4, one link 10× slower (200 Mbit/s)",
            &big,
            4,
            0,
            0,
            200,
        ),
        case("10,000 files (63 MiB) to 4", &tree, 4, 0, 0, 0),
    ];
    let mut rows = Vec::new();
    for c in cases.iter().filter(|c| wanted(&c.name)) {
        if net.as_ref().is_none_or(|n| n.receivers() != c.n) {
            drop(net.take()); // its namespaces go before the next ones are made
            net = Some(compare::Net::new(c.n + 1)?);
        }
        let net = net.as_ref().expect("made above");
        for i in 1..=c.n {
            net.loss(i, c.loss)?;
            net.limit(
                i,
                if c.slow_one > 0 && i == c.n {
                    c.slow_one
                } else {
                    c.limit_all
                },
            )?;
        }
        let mut these = tools.to_vec();
        if c.loss > 0 {
            these[2] = uftp_lossy.clone();
        }
        if c.slow_one > 0 {
            these.insert(1, mdp_floor.clone());
        }
        if c.file.is_dir() {
            // udpcast sends one stream (a file, or tar's output), not a tree.
            these.retain(|t| t.name != "udpcast");
        }
        // The tree's receivers write to a tmpfs: on this VM's ext4, creating
        // 10,000 files right after the last run deleted 10,000 others costs
        // seconds of inode searching (`recently_deleted`), more each run,
        // and that measured the disk, not the tools (mdp 4.0 s and then
        // 9.7 s in two runs of the same code).
        let shm = Path::new("/dev/shm/mdp-bench");
        let work = if c.file.is_dir() && fs::create_dir_all(shm).is_ok() {
            shm.to_path_buf()
        } else {
            work.clone()
        };
        for t in these {
            rows.push(compare::row(
                compare::Place::Bridge(net),
                bin,
                &work,
                &t,
                &c.name,
                &c.file,
                c.n,
                runs,
            )?);
        }
        if work == shm {
            let _ = fs::remove_dir_all(shm);
        }
    }
    drop(net);
    // Plain loopback: sender and receivers on one host. udpcast and UFTP
    // cannot run several receivers on one host (uftpd: "Address already in
    // use"; udp-receivers on one port hang), so the 4-receiver case is
    // mdp's alone.
    let lo = compare::Loopback::new()?;
    let place = compare::Place::Loopback(&lo);
    eprintln!(
        "==> fastest settings of the peers on loopback (256 MiB to 1 receiver, one run each)"
    );
    let (udpcast_lo, _) = compare::sweep(
        place,
        bin,
        &work,
        vec![
            tool("udpcast", "", &[]),
            tool("udpcast", "--full-duplex", &["--full-duplex"]),
        ],
        &big,
    )?;
    let (uftp_lo, _) = compare::sweep(
        place,
        bin,
        &work,
        vec![
            tool("uftp", "-R -1", &["-R", "-1"]),
            tool("uftp", "-R -1 -b 8800", &["-R", "-1", "-b", "8800"]),
        ],
        &big,
    )?;
    let lo_cases: [(&str, &Path, usize, Vec<compare::Tool>); 3] = [
        (
            "loopback: 4.5 MiB to 1",
            &small,
            1,
            vec![mdp.clone(), udpcast_lo.clone(), uftp_lo.clone()],
        ),
        (
            "loopback: 256 MiB to 1",
            &big,
            1,
            vec![mdp.clone(), udpcast_lo, uftp_lo],
        ),
        ("loopback: 256 MiB to 4", &big, 4, vec![mdp.clone()]),
    ];
    for (name, file, n, these) in lo_cases.into_iter().filter(|c| wanted(c.0)) {
        for t in these {
            rows.push(compare::row(place, bin, &work, &t, name, file, n, runs)?);
        }
    }
    drop(lo);
    let (md, rows_json) = compare::render(&rows);
    let json = serde_json::json!({
        "testbed_floor_secs_256MiB": { "to_1": floor, "to_4": floor4 },
        "testbed_floor_reading_secs_256MiB": { "to_1": read, "to_4": read4 },
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "rows": rows_json,
    });
    let out = root().join("target/bench");
    fs::write(out.join("peers.md"), &md)?;
    fs::write(out.join("peers.json"), serde_json::to_string_pretty(&json)?)?;
    println!("\nmdp, udpcast and UFTP between network namespaces on a bridge and on one host's loopback (median of {runs} runs; target/bench/peers.md and peers.json):\n");
    let mbit = |secs: f64| (256u64 << 20) as f64 * 8.0 / secs / 1e6;
    println!(
        "Testbed floor: 256 MiB of {}-byte datagrams from the sender's namespace to 1 (4) hosts that joined the group, in GSO batches as fast as the kernels and the bridge take them: {floor:.2} s, {:.0} Mbit/s ({floor4:.2} s, {:.0} Mbit/s) when the hosts do not read; {read:.2} s, {:.0} Mbit/s ({read4:.2} s, {:.0} Mbit/s) when they read every datagram they get and drop it, as any receiver must read it.\n",
        compare::blast_segment(),
        mbit(floor),
        mbit(floor4),
        mbit(read),
        mbit(read4),
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "Every host runs on this machine's {cores} cores: a push cannot take less than its CPU seconds (all hosts) divided by {cores}.\n"
    );
    println!("{md}");
    Ok(())
}

fn bench(args: &[String]) -> Result<()> {
    let mut runs = 3usize;
    let mut only = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.next()) {
            ("--runs", Some(n)) => runs = n.parse().context("--runs N")?,
            ("--only", Some(text)) => only = Some(text.clone()),
            _ => bail!("usage: cargo xtask bench [--runs N] [--only TEXT]"),
        }
    }
    let only = only.as_deref();
    if std::env::var(INNER).is_err() && only.is_none() {
        eprintln!("==> FEC throughput (benches/benches/fec.rs)");
        run(
            "cargo bench -p mdp-benches --bench fec",
            cargo().args(["bench", "-q", "-p", "mdp-benches", "--bench", "fec"]),
        )?;
    }
    if std::env::var(INNER).is_err() && only.is_none() {
        eprintln!(
            "==> many small files: both state machines in the simulator (CPU time per file count)"
        );
        for n in ["25000", "100000"] {
            run(
                &format!("simulated push of {n} small files"),
                cargo().args([
                    "run",
                    "--release",
                    "-q",
                    "-p",
                    "mdp-sim",
                    "--example",
                    "smallfiles",
                    "--",
                    n,
                ]),
            )?;
        }
    }
    let bin = build_release()?;
    if std::env::var(INNER).is_err() && netns::available() {
        // The comparison covers the loopback cases too.
        return peers(&bin, runs, only);
    }
    if std::env::var(INNER).is_err() {
        eprintln!("note: skipping the comparison with udpcast and UFTP: it needs root (network namespaces, nftables, tc); measuring mdp alone over loopback");
    }
    if !enter_private_netns("bench")? {
        return Ok(());
    }
    let base = root().join("target/bench");
    fs::create_dir_all(&base)?;
    let src = base.join("file-256MiB.bin");
    if fs::metadata(&src).map(|m| m.len()).unwrap_or(0) != 256 << 20 {
        fs::write(&src, bytes(256 << 20, 9))?;
    }
    let mut rows = Vec::new();
    for n in [1usize, 4] {
        let mut secs = Vec::new();
        let mut goodput = Vec::new();
        let mut wire = Vec::new();
        for _ in 0..runs {
            let rx = receivers(&bin, &base, n)?;
            std::thread::sleep(Duration::from_millis(300));
            let out = Command::new(bin.join("mdp-send"))
                .args([
                    "--receivers",
                    &n.to_string(),
                    "--no-hash-cache",
                    "--json",
                    "--quiet",
                    "--timeout",
                    "300s",
                ])
                .arg(&src)
                .output()?;
            for mut c in rx {
                c.wait()?;
            }
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
                format!(
                    "mdp-send printed no report: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
            if v["success"] != true {
                bail!("push to {n} receivers failed: {v}");
            }
            secs.push(v["elapsed_secs"].as_f64().unwrap_or(0.0));
            goodput.push(v["goodput_mbps"].as_f64().unwrap_or(0.0));
            wire.push(
                v["stats"]["wire_bytes_per_file_byte"]
                    .as_f64()
                    .unwrap_or(0.0),
            );
        }
        rows.push((
            n,
            compare::median(secs),
            compare::median(goodput),
            compare::median(wire),
        ));
    }
    println!("\n| push (loopback, one network namespace, adaptive rate) | wall time (median of {runs}) | goodput | wire bytes per file byte |");
    println!("|---|---|---|---|");
    for (n, s, g, w) in rows {
        println!(
            "| 256 MiB to {n} receiver{} | {s:.2} s | {g:.0} Mbit/s | {w:.3} |",
            if n == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

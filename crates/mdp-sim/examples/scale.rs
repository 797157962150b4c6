//! One simulated push to a large group, as a row of the scale table
//! (docs/BENCHMARKS.md, "Feedback at scale"):
//! `cargo run --release -p mdp-sim --example scale -- RECEIVERS [MIB] [LOSS] [SEED] [PROACTIVE]`
//! (PROACTIVE: parity symbols sent with every block before any NACK,
//! `mdp-send --proactive`; 0 by default)
//!
//! The receivers check each block against the manifest and drop it
//! (`SimConfig::keep_files = false`), so that ten thousand of them fit in
//! memory; the row says how many confirmed every file, the virtual time,
//! NACK entries per block that some receiver lost, wire bytes per file
//! byte, and the CPU seconds and peak memory of the simulation itself.
use mdp_sim::{Content, SimConfig, World};
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let n: usize = arg(1, "100").parse().expect("RECEIVERS: a number");
    let mib: usize = arg(2, "64").parse().expect("MIB: a number");
    let loss: f64 = arg(3, "0.05").parse().expect("LOSS: a fraction");
    let seed: u64 = arg(4, "1").parse().expect("SEED: a number");
    let proactive: u16 = arg(5, "0").parse().expect("PROACTIVE: a number");
    let mut c = SimConfig::new(n, seed);
    c.sender.proactive = proactive;
    c.loss_independent = loss;
    c.keep_files = false;
    c.max_time = Duration::from_secs(600);
    let content = Content::new(
        &[],
        vec![("big".into(), Content::random_bytes(mib << 20, seed))],
    );
    let r = World::new(c, content).run();
    let confirmed = r
        .receivers
        .iter()
        .filter(|x| x.outcome.as_ref().is_some_and(|o| o.complete))
        .count();
    let (cpu, peak) = usage();
    println!(
        "| {n} | {confirmed}/{n} | {:.3} s | {:.2} | {:.3} | {:.1} s | {} MiB |",
        r.elapsed.as_secs_f64(),
        r.nacks_per_lost_block(),
        r.wire_per_byte(),
        cpu,
        peak >> 10,
    );
}

/// CPU seconds (user and system) and peak resident KiB of this process,
/// from /proc (0 where it cannot be read).
fn usage() -> (f64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 here;
    // the kernel counts them in USER_HZ, 100 on Linux.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (cpu, peak)
}

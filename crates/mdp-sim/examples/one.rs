//! Runs one simulated push and prints its counters:
//! `cargo run --release -p mdp-sim --example one -- RECEIVERS LOSS [correlated] [RATE_MBPS] [LATENCY_US] [MIB]`
use mdp_sim::{Content, SimConfig, World};
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let n: usize = arg(1, "10").parse().unwrap();
    let loss: f64 = arg(2, "0.05").parse().unwrap();
    let mut c = SimConfig::new(n, 1000 + n as u64 + (loss * 100.0) as u64);
    if arg(3, "independent") == "correlated" {
        c.loss_sender = loss
    } else {
        c.loss_independent = loss
    }
    c.sender.rate = mdp_proto::RateMode::Fixed(arg(4, "200").parse::<u64>().unwrap() * 1_000_000);
    c.latency = Duration::from_micros(arg(5, "1000").parse().unwrap());
    c.max_time = Duration::from_secs(60);
    let mib: usize = arg(6, "1").parse().unwrap();
    let content = Content::new(
        &[],
        vec![("big".into(), Content::random_bytes(mib << 20, 1))],
    );
    let r = World::new(c, content).run();
    let s = r.sender_stats;
    println!(
        "success {:?} virtual {:?} wire/byte {:.3} repairs {} nack entries {} lost blocks {} NACKs/lost block {:.2}",
        r.report.as_ref().map(|r| r.success),
        r.elapsed,
        r.wire_per_byte(),
        s.repair_symbols_sent,
        r.nack_entries,
        r.blocks_with_loss,
        r.nacks_per_lost_block()
    );
}

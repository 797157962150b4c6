use mdp_sim::{Content, SimConfig, World};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args[1].parse().unwrap();
    let loss: f64 = args[2].parse().unwrap();
    let mut c = SimConfig::new(n, 1000 + n as u64 + (loss * 100.0) as u64);
    if args.len() > 3 {
        c.loss_sender = loss
    } else {
        c.loss_independent = loss
    }
    c.max_time = std::time::Duration::from_secs(20);
    let content = Content::new(&[], vec![("big".into(), Content::random_bytes(1 << 20, 1))]);
    let t = std::time::Instant::now();
    let r = World::new(c, content).run();
    println!(
        "real {:?} virtual {:?} success {:?} wpb {:.3} nacks {} lost {} sender {:?}",
        t.elapsed(),
        r.elapsed,
        r.report.as_ref().map(|r| r.success),
        r.wire_per_byte(),
        r.nack_entries,
        r.blocks_with_loss,
        r.sender_stats
    );
    for x in &r.receivers {
        println!("{:?} {:?}", x.outcome.as_ref().map(|o| o.complete), x.stats);
    }
}

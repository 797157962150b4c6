//! Times one simulated push of many small files to one receiver (sender CPU
//! for trees of small files): `cargo run --release -p mdp-sim --example smallfiles -- N`.
use mdp_sim::{Content, SimConfig, World};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().unwrap())
        .unwrap_or(50_000);
    let files = (0..n)
        .map(|i| {
            (
                format!("d{}/f{i}", i % 100),
                Content::random_bytes(100 + i % 900, i as u64),
            )
        })
        .collect();
    let dirs: Vec<String> = (0..100).map(|d| format!("d{d}")).collect();
    let dirs: Vec<&str> = dirs.iter().map(String::as_str).collect();
    let mut c = SimConfig::new(1, 1);
    c.sender.rate = mdp_proto::RateMode::Fixed(1_000_000_000);
    c.max_time = std::time::Duration::from_secs(600);
    let t = std::time::Instant::now();
    let r = World::new(c, Content::new(&dirs, files)).run();
    println!(
        "{n} files: success {:?}, {:.2}s real, {:.2}s virtual",
        r.report.map(|r| r.success),
        t.elapsed().as_secs_f64(),
        r.elapsed.as_secs_f64()
    );
}

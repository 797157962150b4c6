//! Reed-Solomon encode and decode throughput for mdp's default block shape
//! (k = 256 source symbols, r = 128 parity symbols, 1400-byte symbols).
//! Prints one Markdown table row per case; `cargo xtask bench` runs it.

use mdp_proto::fec::Codec;
use std::time::{Duration, Instant};

fn measure(mut f: impl FnMut()) -> Duration {
    // Warm up, then run for at least 0.5 s and report the median of 5 runs.
    f();
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let mut n = 0u32;
        while start.elapsed() < Duration::from_millis(100) {
            f();
            n += 1;
        }
        times.push(start.elapsed() / n);
    }
    times.sort();
    times[2]
}

fn main() {
    // `cargo test --benches` passes --bench too; a quick smoke run then.
    let quick = std::env::args().any(|a| a == "--quick");
    let t = 1400usize;
    let mut codec = Codec::default();
    if quick {
        let (k, r) = (256usize, 128usize);
        let source: Vec<u8> = (0..k * t).map(|i| (i * 31 % 251) as u8).collect();
        let mut parity = Vec::new();
        codec.encode(k, r, t, &source, &mut parity).unwrap();
        return;
    }
    println!("| operation | shape | time per block | MB/s of source data |");
    println!("|---|---|---|---|");
    // The default shape first, then larger blocks: the decoder's cost has
    // a fixed part per block (the erasure locator over the whole field),
    // which larger blocks spread over more bytes.
    for (k, r) in [
        (256usize, 128usize),
        (256, 32),
        (1024, 128),
        (2048, 256),
        (4096, 512),
    ] {
        let source: Vec<u8> = (0..k * t).map(|i| (i * 31 % 251) as u8).collect();
        let mut parity = Vec::new();
        let block_mb = (k * t) as f64 / 1e6;
        let enc = measure(|| codec.encode(k, r, t, &source, &mut parity).unwrap());
        println!(
            "| encode all parity | k={k} r={r} T={t} | {:.0} µs | {:.0} |",
            enc.as_secs_f64() * 1e6,
            block_mb / enc.as_secs_f64()
        );
        for lost in [1usize, k / 20, r] {
            // Lose `lost` source symbols, rebuild them from as many parity symbols.
            let mut have = vec![true; k];
            for i in 0..lost {
                have[i * (k / lost)] = false;
            }
            let mut block = source.clone();
            let dec = measure(|| {
                let rec = (0..lost).map(|i| (i, &parity[i * t..(i + 1) * t]));
                codec.decode(k, r, t, &mut block, &have, rec).unwrap();
            });
            assert!(block == source);
            println!(
                "| decode, {lost} lost | k={k} r={r} T={t} | {:.0} µs | {:.0} |",
                dec.as_secs_f64() * 1e6,
                block_mb / dec.as_secs_f64()
            );
        }
    }
}

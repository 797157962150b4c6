//! Reed-Solomon encode and decode throughput for mdp's default block shape
//! (k = 192 source symbols, r = 64 parity symbols, 1400-byte symbols: the
//! GF(2^8) code) and for larger blocks (the GF(2^16) code).
//! Prints one Markdown table row per case; `cargo xtask bench` runs it.

use mdp_proto::fec::{Codec, ParityJob, Scheme};
use std::sync::Arc;
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
        let (k, r) = (192usize, 64usize);
        let source: Vec<u8> = (0..k * t).map(|i| (i * 31 % 251) as u8).collect();
        let mut parity = Vec::new();
        codec.encode(k, r, t, &source, &mut parity).unwrap();
        return;
    }
    println!("| operation | shape (code) | time per block | MB/s of source data |");
    println!("|---|---|---|---|");
    // The default shape first, then the GF(2^16) code's shapes: its
    // decoder's cost has a fixed part per block (the erasure locator over
    // the whole field), which larger blocks spread over more bytes.
    for (k, r) in [
        (192usize, 64usize),
        (128, 128),
        (256, 128),
        (1024, 128),
        (4096, 512),
    ] {
        let code = match Scheme::for_block(k, r) {
            Scheme::Cauchy => "GF(2^8)",
            Scheme::Fft => "GF(2^16)",
        };
        let shape = format!("k={k} r={r} T={t} ({code})");
        let source: Vec<u8> = (0..k * t).map(|i| (i * 31 % 251) as u8).collect();
        let shared = Arc::new(source.clone());
        let mut parity = Vec::new();
        let block_mb = (k * t) as f64 / 1e6;
        let row = |what: &str, d: Duration| {
            println!(
                "| {what} | {shape} | {:.0} µs | {:.0} |",
                d.as_secs_f64() * 1e6,
                block_mb / d.as_secs_f64()
            );
        };
        row(
            "encode all parity",
            measure(|| codec.encode(k, r, t, &source, &mut parity).unwrap()),
        );
        // What a sender pays for the first repair symbol of a block.
        row(
            "encode one parity symbol",
            measure(|| {
                ParityJob::new(shared.clone(), k, r, t, 0, 1)
                    .run(&mut codec)
                    .unwrap();
            }),
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
            row(&format!("decode, {lost} lost"), dec);
        }
    }
}

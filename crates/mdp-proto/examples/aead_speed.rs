//! How fast each AEAD seals and opens mdp's DATA datagrams on this CPU:
//! `cargo run --release -p mdp-proto --example aead_speed [DATAGRAMS]`.
//! The figures behind the choice of AES-256-GCM where the CPU has AES
//! instructions (docs/SECURITY.md).

use mdp_proto::crypto::{Aead, Cipher};
use mdp_proto::wire::{self, DataHeader};
use mdp_proto::{BlockNumber, ObjectId, SessionId, SymbolId};
use std::time::Instant;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let payload = vec![0x5a; 1420];
    println!("{n} DATA datagrams of {} payload bytes", payload.len());
    for aead in [Aead::Aes256Gcm, Aead::ChaCha20Poly1305] {
        let c = Cipher::new(aead, &[7; 32]);
        // Built before the clock starts: only sealing is timed.
        let mut sealed: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let mut buf = Vec::with_capacity(1500);
                let header = DataHeader {
                    session: SessionId(1),
                    object: ObjectId(1),
                    block: BlockNumber((i / 192) as u32),
                    esi: SymbolId((i % 192) as u16),
                    flags: 0,
                    seq: i as u32,
                };
                wire::write_data(&mut buf, &header, &payload);
                buf
            })
            .collect();
        let t = Instant::now();
        for (i, buf) in sealed.iter_mut().enumerate() {
            c.seal(buf, 0, i as u64 + 1);
        }
        let seal = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut out = Vec::with_capacity(1500);
        for d in &sealed {
            c.open(d, &mut out).expect("opens");
        }
        let open = t.elapsed().as_secs_f64();
        let bytes = (n * payload.len() as u64) as f64;
        println!(
            "{:<18} seal {:>6.0} MB/s   open {:>6.0} MB/s",
            aead.name(),
            bytes / seal / 1e6,
            bytes / open / 1e6
        );
    }
}

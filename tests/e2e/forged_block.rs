//! A forged block on the LAN: an unauthenticated host injects forged
//! symbols of one block of a signed push; the receiver rebuilds the block,
//! finds it unlike the manifest's block hash, writes nothing of it, asks
//! for it again at once, and the file lands intact.

use crate::forge::injector;
use crate::harness::*;
use mdp_proto::wire::{self, Control, DataHeader, Packet};
use mdp_proto::{BlockNumber, ObjectId, SymbolId};
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Listens on the group for the first ANNOUNCE, then sends a forged copy
/// of every source symbol of block 2 of the first file, every 10 ms, for
/// `forge_for`; returns how many forged datagrams it sent.
fn forger(stop: Arc<AtomicBool>, forge_for: Duration) -> u64 {
    let (sock, ep) = injector();
    let listen = mdp_net::socket::joined(&ep, ep.group.port()).unwrap();
    listen
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let (session, t, k) = loop {
        if stop.load(Ordering::Relaxed) {
            return 0;
        }
        let Ok(n) = listen.recv(&mut buf) else {
            continue;
        };
        if let Ok(Packet::Control {
            session,
            message: Control::Announce(a),
        }) = wire::parse(&buf[..n])
        {
            break (session, a.symbol_size as usize, a.block_k);
        }
    };
    let start = Instant::now();
    let mut sent = 0;
    let mut d = Vec::new();
    while start.elapsed() < forge_for && !stop.load(Ordering::Relaxed) {
        for esi in 0..k {
            d.clear();
            let header = DataHeader {
                session,
                object: ObjectId(1),
                block: BlockNumber(2),
                esi: SymbolId(esi),
                flags: 0,
                seq: 0,
            };
            wire::write_data(&mut d, &header, &vec![0xee; t]);
            if sock.send_to(&d, ep.group).is_ok() {
                sent += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    sent
}

#[test]
fn a_forged_block_is_rejected_on_arrival_asked_for_again_and_the_file_lands_intact() {
    let Some(_net) = network() else { return };
    let base = temp_dir("forged-block");
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    // Sixteen or so blocks: block 2 is well inside the file.
    fs::write(src.join("image.bin"), bytes(4 << 20, 21)).unwrap();
    let dir = base.join("r1");
    let rx = receiver(&dir, "r1", &["--once", "--timeout", "60s"]);
    let stop = Arc::new(AtomicBool::new(false));
    let forging = {
        let stop = stop.clone();
        std::thread::spawn(move || forger(stop, Duration::from_millis(1500)))
    };
    // At 20 Mbit/s the file takes 1.7 s, so the forger's copies of block 2
    // (every 10 ms) arrive before the sender's, whatever the machine's speed
    // (at full speed the real block could come first and make the forged
    // symbols redundant, and the test would show nothing).
    let sent = Push::new(
        &["--receivers", "1", "--timeout", "60s", "--rate", "20M"],
        &[src.join("image.bin")],
    )
    .run();
    stop.store(true, Ordering::Relaxed);
    let forged = forging.join().unwrap();
    assert!(
        forged > 0,
        "the forger never saw the push: the test shows nothing"
    );
    assert_eq!(sent.code(), Some(0), "{}", sent.stderr());
    let out = wait_output(rx, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = json(&out);
    assert_eq!(report["complete"], true, "{report}\n{stderr}");
    assert!(
        report["blocks_rejected"].as_u64().unwrap() > 0,
        "no forged block was caught: {report}"
    );
    assert!(
        stderr.contains("did not match its hash"),
        "the operator is told: {stderr}"
    );
    assert_eq!(
        fs::read(dir.join("image.bin")).unwrap(),
        fs::read(src.join("image.bin")).unwrap()
    );
    fs::remove_dir_all(&base).unwrap();
}

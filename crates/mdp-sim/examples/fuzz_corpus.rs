//! Writes the seed corpora of the fuzz targets (`fuzz/corpus/<target>/`):
//! real sessions between a sender and a receiver, recorded as the scripts
//! the state-machine targets read, plus single datagrams and manifests.
//! `cargo run -p mdp-sim --example fuzz_corpus`; the output is checked in.

use mdp_proto::auth::{AuthConfig, Key};
use mdp_proto::wire::{self, Control, Echo, Nack, NackEntry, Packet};
use mdp_proto::{BlockNumber, ObjectId};
use mdp_proto::{
    Entry, EntryKind, Manifest, NodeId, Receiver, ReceiverConfig, Sender, SenderConfig,
    SenderRequest, SessionId,
};
use mdp_sim::drain::{accept_all, Drain, Output};
use mdp_sim::fuzz::{script, steps, Step};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

fn manifest(sizes: &[u64]) -> (Manifest, Vec<Vec<u8>>) {
    let mut entries = vec![Entry {
        path: "d".into(),
        kind: EntryKind::Dir,
        mode: 0o755,
        mtime_secs: 1,
        mtime_nanos: 2,
        owner: 0,
    }];
    let mut data = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let bytes = mdp_sim::Content::random_bytes(size as usize, i as u64);
        entries.push(Entry {
            path: format!("d/f{i}"),
            kind: EntryKind::File {
                size,
                hash: *blake3::hash(&bytes).as_bytes(),
                // At the coding `session` uses: 16 symbols of 256 bytes.
                blocks: mdp_proto::manifest::block_hashes(
                    &bytes,
                    &mdp_proto::layout::Coding {
                        symbol_size: 256,
                        block_k: 16,
                        parity: 8,
                    },
                ),
            },
            mode: 0o644,
            mtime_secs: 3,
            mtime_nanos: 4,
            owner: 0,
        });
        data.push(bytes);
    }
    (Manifest::new(entries), data)
}

/// One session, lossy in both directions by a fixed pattern; returns what
/// the receiver and the sender were fed, as scripts, and every datagram.
fn session(
    sizes: &[u64],
    drop_every: usize,
    keyed: bool,
    encrypted: bool,
) -> (Vec<u8>, Vec<u8>, Vec<Vec<u8>>) {
    let t0 = Instant::now();
    let (m, data) = manifest(sizes);
    let mut sc = SenderConfig::new(SessionId(0x5e55 + sizes.len() as u64));
    sc.rate = mdp_proto::RateMode::Fixed(100_000_000);
    sc.expected_receivers = 1;
    sc.symbol_size = 256;
    sc.block_k = 16;
    sc.parity = 8;
    let mut rc = ReceiverConfig::new(NodeId(9), "seed", 9);
    rc.insecure = true;
    if encrypted {
        // The receiver the fuzz target builds with flags bit 5, so that
        // the recorded KEY opens there and the sealed datagrams are read.
        use mdp_proto::crypto::{Aead, SecretSource};
        use mdp_proto::identity::Identity;
        rc = ReceiverConfig::new(NodeId(7), "fuzz", 7);
        rc.insecure = true;
        rc.identity = Some(Identity::from_seed([7; 32]));
        rc.secrets = Some(SecretSource::new([7; 32]));
        sc.identity = Some(Identity::from_seed([1; 32]));
        sc.expected_keys = vec![("fuzz".into(), Identity::from_seed([7; 32]).public())];
        sc.expected_names = vec!["fuzz".into()];
        sc.encryption = Some(mdp_proto::sender::EncryptionConfig {
            aead: Aead::Aes256Gcm,
            secrets: SecretSource::new([2; 32]),
        });
    }
    if keyed {
        let key = Key::from_bytes([0x42; 32]);
        sc.auth = Some(AuthConfig::new(key.clone(), t0, 1_800_000_000_000_000));
        rc.auth = Some(AuthConfig::new(key, t0, 1_800_000_000_000_000));
    }
    let mut s = Sender::new(sc, m, t0).unwrap();
    let mut r = Receiver::new(rc);
    let (mut to_r, mut to_s, mut all) = (Vec::new(), Vec::new(), Vec::new());
    let mut drain = Drain::new();
    let mut now = t0;
    let mut n = 0usize;
    for _ in 0..3000 {
        drain.sender(
            &mut s,
            now,
            |seg| {
                n += 1;
                all.push(seg.to_vec());
                if drop_every == 0 || !n.is_multiple_of(drop_every) {
                    to_r.push(seg.to_vec());
                    r.handle_datagram(now, seg);
                }
            },
            |s, ev| match ev {
                Output::Request(SenderRequest::ReadBlock {
                    object,
                    block,
                    offset,
                    len,
                }) => {
                    let f = &data[object.0 as usize - 1];
                    let chunk = f[offset as usize..offset as usize + len].to_vec();
                    s.handle_block(now, object, block, chunk);
                }
                Output::Request(SenderRequest::EncodeParity { object, block, job }) => {
                    let symbols = job.run(&mut mdp_proto::fec::Codec::default()).unwrap();
                    s.handle_parity(now, object, block, job, symbols);
                }
                _ => {}
            },
        );
        drain.receiver(
            &mut r,
            now,
            |d| {
                all.push(d.to_vec());
                to_s.push(d.to_vec());
                s.handle_datagram(now, d);
            },
            |r, ev| accept_all(r, now, ev),
        );
        if s.is_finished() {
            break;
        }
        now += Duration::from_millis(1);
        s.handle_timeout(now);
        r.handle_timeout(now);
    }
    let report = s.report().unwrap_or_else(|| {
        panic!(
            "the recorded session ({sizes:?}) did not end: {:?} {:?}",
            s.stats(),
            r.stats()
        )
    });
    assert!(report.success, "the recorded session failed: {report:?}");
    let steps = |v: &[Vec<u8>]| -> Vec<u8> {
        let mut out = Vec::new();
        for d in v {
            out.extend(script(&[
                Step::Datagram(d),
                Step::Advance(Duration::from_millis(1)),
            ]));
        }
        out.extend(script(&[Step::Timer]));
        out
    };
    let mut rx = steps(&to_r);
    let mut sx = steps(&to_s);
    // The targets read bit 7 of the first byte as "with a key", bit 5 as
    // "can take encrypted pushes" (with bit 6, the sender encrypts).
    if keyed {
        rx.insert(0, 0x80);
        sx.insert(0, 0x80);
    } else if encrypted {
        rx.insert(0, 0x20);
        sx.insert(0, 0x60);
    } else {
        rx.insert(0, 0);
        sx.insert(0, 0);
    }
    (rx, sx, all)
}

/// A receiver's session script with a forged NACK from another receiver
/// inserted after the first ANNOUNCE: it asks for `u16::MAX` symbols of the
/// manifest's first block, which the receiver still lacks (the suppression
/// margin `need + need / 4` once overflowed on it).
fn with_forged_nack(rx: &[u8]) -> Vec<u8> {
    let (&flags, body) = rx.split_first().unwrap();
    let mut out = vec![flags];
    let mut nack = Vec::new();
    let mut inserted = false;
    for step in steps(body) {
        out.extend(script(&[step]));
        if inserted {
            continue;
        }
        if let Step::Datagram(d) = step {
            if let Ok(Packet::Control {
                session,
                message: Control::Announce(_),
            }) = wire::parse(d)
            {
                let forged = Nack {
                    node: NodeId(99),
                    echo: Echo::default(),
                    loss: 0,
                    entries: vec![NackEntry {
                        object: ObjectId::MANIFEST,
                        block: BlockNumber(0),
                        need: u16::MAX,
                        missing: Vec::new(),
                    }],
                };
                wire::write_control(&mut nack, session, &Control::Nack(forged));
                out.extend(script(&[Step::Datagram(&nack)]));
                inserted = true;
            }
        }
    }
    assert!(inserted, "the session has no ANNOUNCE");
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let cases: [(&[u64], usize, bool, bool); 6] = [
        (&[1000, 0], 0, false, false),
        (&[9000, 300], 7, false, false),
        (&[5000], 0, true, false),
        (&[20_000, 10], 5, true, false),
        (&[3000], 0, false, true),
        (&[12_000, 40], 6, false, true),
    ];
    for (i, (sizes, drop, keyed, encrypted)) in cases.iter().enumerate() {
        let (rx, sx, all) = session(sizes, *drop, *keyed, *encrypted);
        write(&root.join("receiver"), &format!("session-{i}"), &rx);
        if i == 0 {
            write(
                &root.join("receiver"),
                "forged-nack-huge-need",
                &with_forged_nack(&rx),
            );
        }
        write(&root.join("sender"), &format!("session-{i}"), &sx);
        // A handful of single datagrams of every kind.
        let mut kinds = std::collections::BTreeMap::new();
        for d in &all {
            kinds
                .entry((d[3], d.len() > 300))
                .or_insert_with(|| d.clone());
        }
        for ((ty, big), d) in kinds {
            write(&root.join("wire"), &format!("s{i}-type{ty:02x}-{big}"), &d);
        }
        write(
            &root.join("manifest"),
            &format!("m{i}"),
            &manifest(sizes).0.encode(),
        );
    }
    // A relay's RELAY (a downstream receiver's confirmation), and a
    // manifest that carries a relay tree.
    let mut relay = Vec::new();
    wire::write_control(
        &mut relay,
        mdp_proto::SessionId(7),
        &Control::Relay(wire::Relay {
            node: NodeId(5),
            message: wire::Relayed::Status(wire::Status {
                node: NodeId(9),
                name: "behind".into(),
                echo: Echo::default(),
                complete: true,
                verified: 2,
                missing: vec![],
                failed: vec![],
                hook: None,
                signed: None,
            }),
        }),
    );
    write(&root.join("wire"), "relay", &relay);
    let mut treed = manifest(&[4000]).0;
    treed.tree = Some(mdp_proto::manifest::RelayTree {
        fan_out: 2,
        hosts: (0..5).map(|i| format!("10.0.0.{}:7400", i + 2)).collect(),
    });
    write(&root.join("manifest"), "tree", &treed.encode());
    println!("corpora written to {}", root.display());
}

//! Hostile input: the state machines take random datagrams and mutated
//! copies of real traffic without panicking, and keep their memory bounds.

use mdp_proto::wire::{self, Control, Nack, NackEntry, Status};
use mdp_proto::{
    BlockNumber, NodeId, ObjectId, Receiver, ReceiverConfig, ReceiverEvent, ReceiverRequest,
    Sender, SenderConfig, SessionId,
};
use mdp_sim::{Content, Drain, Output, SimRng};
use std::time::{Duration, Instant};

/// Real sender traffic: everything a sender sends in its first 300 ms.
fn sender_traffic(content: &Content) -> Vec<Vec<u8>> {
    let mut cfg = SenderConfig::new(SessionId(77));
    cfg.wait = Duration::from_millis(50);
    cfg.rate = mdp_proto::RateMode::Fixed(100_000_000);
    // Waiting for one receiver, which never registers: the data goes out
    // anyway (an open group nobody joined gets none).
    cfg.expected_receivers = 1;
    let t0 = Instant::now();
    let manifest = content.manifest_for(&cfg.coding());
    let mut s = Sender::new(cfg, manifest, t0).unwrap();
    let mut out = Vec::new();
    let mut drain = Drain::new();
    let mut now = t0;
    while now < t0 + Duration::from_millis(300) {
        s.handle_timeout(now);
        drain.sender(
            &mut s,
            now,
            |d| out.push(d.to_vec()),
            |s, ev| content.answer(s, now, ev),
        );
        now += Duration::from_micros(200);
    }
    out
}

fn mutate(rng: &mut SimRng, d: &[u8]) -> Vec<u8> {
    let mut v = d.to_vec();
    match rng.next_u64() % 4 {
        0 => {
            let n = (rng.next_u64() % 4 + 1) as usize;
            for _ in 0..n {
                if !v.is_empty() {
                    let i = (rng.next_u64() as usize) % v.len();
                    v[i] = rng.next_u64() as u8;
                }
            }
        }
        1 => v.truncate((rng.next_u64() as usize) % (v.len() + 1)),
        2 => v.extend((0..rng.next_u64() % 64).map(|_| rng.next_u64() as u8)),
        _ => {
            // Flip a byte of the header only: ids, lengths, types.
            let i = (rng.next_u64() as usize) % v.len().clamp(1, 40);
            if i < v.len() {
                v[i] ^= 1 << (rng.next_u64() % 8);
            }
        }
    }
    v
}

#[test]
fn a_receiver_survives_random_and_mutated_datagrams_within_its_memory_budget() {
    let content = Content::new(
        &["d"],
        vec![
            ("d/a".into(), Content::random_bytes(600_000, 1)),
            ("b".into(), Content::random_bytes(5000, 2)),
        ],
    );
    let traffic = sender_traffic(&content);
    assert!(traffic.len() > 400, "got {} datagrams", traffic.len());
    let mut rng = SimRng::new(99);
    for round in 0..40 {
        let mut cfg = ReceiverConfig::new(NodeId(round), "fuzz", round);
        cfg.buffer_bytes = 2 << 20;
        cfg.insecure = true;
        let mut r = Receiver::new(cfg);
        let mut now = Instant::now();
        let mut drain = Drain::new();
        let mut delivered = 0u64;
        for d in &traffic {
            now += Duration::from_micros(50);
            let input = match if round == 0 { 0 } else { rng.next_u64() % 3 } {
                0 => d.clone(),
                1 => mutate(&mut rng, d),
                _ => (0..rng.next_u64() % 1500)
                    .map(|_| rng.next_u64() as u8)
                    .collect(),
            };
            r.handle_datagram(now, &input);
            r.handle_timeout(now);
            assert!(r.buffered_bytes() <= 2 << 20, "over its block budget");
            drain.receiver(
                &mut r,
                now,
                |_| {},
                |r, ev| match ev {
                    Output::Request(ReceiverRequest::WriteBlock { block, .. }) => {
                        delivered += block.len() as u64
                    }
                    Output::Request(ReceiverRequest::CheckPresent { .. }) => {
                        r.handle_present(now, &[])
                    }
                    Output::Request(ReceiverRequest::VerifyObject { object }) => {
                        r.handle_object_verified(now, object, Err(wire::FailReason::HashMismatch))
                    }
                    _ => {}
                },
            );
        }
        let st = r.stats();
        if round == 0 {
            // The clean run: everything arrives.
            assert_eq!(delivered, content.total_bytes());
            assert_eq!(st.malformed, 0);
        } else {
            assert!(
                st.malformed + st.ignored > 0,
                "round {round}: nothing rejected"
            );
        }
    }
}

#[test]
fn a_sender_survives_forged_feedback() {
    let content = Content::new(&[], vec![("f".into(), Content::random_bytes(400_000, 3))]);
    let mut cfg = SenderConfig::new(SessionId(5));
    cfg.wait = Duration::from_millis(10);
    let t0 = Instant::now();
    let manifest = content.manifest_for(&cfg.coding());
    let mut s = Sender::new(cfg, manifest, t0).unwrap();
    let mut rng = SimRng::new(7);
    let mut drain = Drain::new();
    let mut now = t0;
    for i in 0..20_000u64 {
        now += Duration::from_micros(20);
        let msg = match i % 3 {
            0 => Control::Nack(Nack {
                node: NodeId(rng.next_u64() % 5000),
                echo: wire::Echo {
                    ts_us: rng.next_u64(),
                    delay_us: rng.next_u64() as u32,
                },
                loss: rng.next_u64() as u16,
                entries: vec![NackEntry {
                    object: ObjectId(rng.next_u64() as u32 % 4),
                    block: BlockNumber(rng.next_u64() as u32 % 8),
                    need: rng.next_u64() as u16,
                    missing: (0..rng.next_u64() % 40)
                        .map(|_| rng.next_u64() as u16)
                        .collect(),
                }],
            }),
            1 => Control::Status(Status {
                node: NodeId(rng.next_u64() % 5000),
                name: "x".repeat((rng.next_u64() % 64) as usize),
                echo: wire::Echo::default(),
                complete: rng.next_u64().is_multiple_of(2),
                verified: rng.next_u64() as u32,
                missing: vec![ObjectId(rng.next_u64() as u32)],
                failed: vec![(ObjectId(rng.next_u64() as u32), wire::FailReason::Io)],
                hook: None,
                signed: None,
            }),
            _ => {
                let junk: Vec<u8> = (0..rng.next_u64() % 200)
                    .map(|_| rng.next_u64() as u8)
                    .collect();
                s.handle_datagram(now, &junk);
                continue;
            }
        };
        let mut d = Vec::new();
        wire::write_control(&mut d, SessionId(5), &msg);
        s.handle_datagram(now, &d);
        s.handle_datagram(now, &mutate(&mut rng, &d));
        s.handle_timeout(now);
        drain.sender(&mut s, now, |_| {}, |s, ev| content.answer(s, now, ev));
    }
    assert!(s.peer_count() <= mdp_proto::limits::MAX_PEERS);
}

/// A forged session whose manifest claims a file that would need billions of
/// blocks (tiny symbols, one-symbol blocks): refused before any allocation.
#[test]
fn a_receiver_refuses_a_manifest_that_would_need_huge_block_maps() {
    use mdp_proto::wire::{Announce, DataHeader, Timing};
    use mdp_proto::{Entry, EntryKind, Manifest, SymbolId};
    let manifest = Manifest::new(vec![Entry {
        path: "huge".into(),
        kind: EntryKind::File {
            size: 1 << 40,
            hash: [0; 32],
            blocks: Vec::new(),
        },
        mode: 0o644,
        mtime_secs: 0,
        mtime_nanos: 0,
        owner: 0,
    }])
    .encode();
    let session = SessionId(0xf00d);
    let t = 16usize;
    let mut cfg = ReceiverConfig::new(NodeId(1), "r", 1);
    cfg.insecure = true;
    let mut r = Receiver::new(cfg);
    let now = Instant::now();
    let mut d = Vec::new();
    wire::write_control(
        &mut d,
        session,
        &Control::Announce(Announce {
            timing: Timing {
                ts_us: 1,
                grtt_us: 1000,
                rate_bps: 1_000_000,
                group_size: 1,
            },
            symbol_size: t as u16,
            block_k: 1,
            parity: 1,
            manifest_len: manifest.len() as u64,
            manifest_hash: *blake3::hash(&manifest).as_bytes(),
            object_count: 1,
            data_pos: (0, 0),
            acked: vec![],
            poll: vec![],
            delete: false,
            dry_run: false,
            enc: None,
            signed: None,
        }),
    );
    r.handle_datagram(now, &d);
    for (i, chunk) in manifest.chunks(t).enumerate() {
        let mut d = Vec::new();
        let header = DataHeader {
            session,
            object: ObjectId(0),
            block: BlockNumber(i as u32),
            esi: SymbolId(0),
            flags: 0,
            seq: i as u32,
        };
        wire::write_data(&mut d, &header, chunk);
        r.handle_datagram(now, &d);
    }
    let mut outcome = None;
    Drain::new().receiver(
        &mut r,
        now,
        |_| {},
        |_, ev| {
            assert!(!matches!(
                ev,
                Output::Request(ReceiverRequest::CheckPresent { .. })
            ));
            if let Output::Event(ReceiverEvent::Finished(o)) = ev {
                outcome = Some(o);
            }
        },
    );
    let o = outcome.expect("the session ended");
    assert!(!o.complete);
    assert!(o.problem.unwrap().to_string().contains("refused the push"));
}

/// Complete blocks handed to a writer that does not keep up stay in the
/// block budget until dropped: the receiver then stops taking new blocks
/// (and asks for them later) instead of letting the queue grow without
/// bound, and takes them again once the writer catches up.
#[test]
fn blocks_waiting_for_the_writer_count_against_the_block_budget() {
    let content = Content::new(&[], vec![("big".into(), Content::random_bytes(3 << 20, 3))]);
    let traffic = sender_traffic(&content);
    let budget = 1 << 20;
    let mut cfg = ReceiverConfig::new(NodeId(9), "slow-writer", 9);
    cfg.buffer_bytes = budget;
    cfg.insecure = true;
    let defaults = SenderConfig::new(SessionId(77));
    let block = defaults.block_k as usize * defaults.symbol_size as usize;
    let mut r = Receiver::new(cfg);
    let now = Instant::now();
    let mut drain = Drain::new();
    let mut queued = Vec::new();
    let mut feed = |r: &mut Receiver, queued: &mut Vec<_>| {
        for d in &traffic {
            r.handle_datagram(now, d);
            assert!(
                r.buffered_bytes() <= budget + block,
                "{} bytes of blocks held",
                r.buffered_bytes()
            );
            drain.receiver(
                r,
                now,
                |_| {},
                |r, ev| match ev {
                    Output::Request(ReceiverRequest::CheckPresent { .. }) => {
                        r.handle_present(now, &[])
                    }
                    // The writer is stuck: every block stays queued.
                    Output::Request(ReceiverRequest::WriteBlock { block, .. }) => {
                        queued.push(block)
                    }
                    _ => {}
                },
            );
        }
    };
    feed(&mut r, &mut queued);
    let stuck = queued.len();
    assert!(stuck >= 1, "no block completed");
    assert!(
        stuck * block <= budget,
        "{stuck} blocks queued past the budget"
    );
    assert!(r.stats().dropped_no_buffer > 0, "nothing was turned away");
    // The writer catches up: the same traffic again completes more blocks.
    let held = r.buffered_bytes();
    let queued_bytes: usize = queued.iter().map(|b| b.held_bytes()).sum();
    queued.clear();
    assert_eq!(
        r.buffered_bytes(),
        held - queued_bytes,
        "written blocks give their room back"
    );
    let before = r.stats().blocks_completed;
    feed(&mut r, &mut queued);
    assert!(
        r.stats().blocks_completed > before,
        "no room came back once the queued blocks were written"
    );
}

/// A manifest of many tiny entries costs about ten times its size in
/// memory once decoded: a receiver checks the entry count against its
/// limits before it decodes anything, and ends the session then.
#[test]
fn a_manifest_with_more_entries_than_the_receiver_takes_is_refused_before_decoding() {
    use mdp_proto::receiver::SessionError;
    use mdp_sim::{SimConfig, World};
    let files: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| (format!("f{i}"), Content::random_bytes(10, i)))
        .collect();
    let mut c = SimConfig::new(1, 5);
    c.sender.timeout = Duration::from_secs(5);
    // 1 file at most: 16 entries decoded at most (twice the limit, at least 16).
    c.receiver_setup = Some(|_, rc| rc.max_files = 1);
    let mut w = World::new(c, Content::new(&[], files));
    assert!(w.drive_until(|w| w.receiver_outcome(0).is_some()));
    let outcome = w.receiver_outcome(0).unwrap();
    assert_eq!(
        outcome.problem,
        Some(SessionError::ManifestTooLarge {
            entries: 40,
            limit: 16
        }),
        "{outcome:?}"
    );
    assert!(w.receiver_files(0).is_empty());
}

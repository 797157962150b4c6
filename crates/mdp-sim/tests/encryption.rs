//! Encrypted pushes (docs/PROTOCOL.md §5c): only receivers the sender
//! expects by key are sent the session key; DATA, FLUSH and DONE are
//! sealed with it; nothing unsealed or forged is used; feedback counts
//! only when sealed with its receiver's own key.

use mdp_proto::crypto::{Aead, SecretSource};
use mdp_proto::identity::Identity;
use mdp_proto::limits::ENC_FLAG;
use mdp_proto::receiver::{SessionError, Untrusted};
use mdp_proto::sender::EncryptionConfig;
use mdp_proto::wire::{self, Congestion, Control, DataHeader, Echo, Packet};
use mdp_proto::{BlockNumber, ObjectId, SymbolId};
use mdp_sim::{Content, Node, SimConfig, World};
use std::time::Duration;

fn key(seed: u8) -> Identity {
    Identity::from_seed([seed; 32])
}

/// A plaintext no datagram may show.
const SECRET: &[u8] = b"password=correct horse battery staple;";

fn content() -> Content {
    let mut data = Content::random_bytes(60_000, 3);
    data[1000..1000 + SECRET.len()].copy_from_slice(SECRET);
    Content::new(&["etc"], vec![("etc/secret.conf".into(), data)])
}

/// `receivers` receivers `r0`, `r1`, … with keys 10, 11, …; the sender
/// (key 1, trusted by all) expects `expected` of them by key and encrypts.
fn config(receivers: usize, expected: usize, aead: Aead) -> SimConfig {
    let mut c = SimConfig::new(receivers, 21);
    c.sender.symbol_size = 256;
    c.sender.block_k = 16;
    c.sender.parity = 8;
    c.sender.identity = Some(key(1));
    c.sender.wait = Duration::from_millis(300);
    c.sender.timeout = Duration::from_secs(5);
    c.trust = vec![key(1).public()];
    c.receiver_setup = Some(|i, rc| rc.identity = Some(Identity::from_seed([10 + i as u8; 32])));
    c.sender.expected_keys = (0..expected)
        .map(|i| (format!("r{i}"), key(10 + i as u8).public()))
        .collect();
    c.sender.expected_names = c
        .sender
        .expected_keys
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    c.sender.encryption = Some(EncryptionConfig {
        aead,
        secrets: SecretSource::new([42; 32]),
    });
    c
}

fn push(mut w: World) -> World {
    assert!(
        w.drive_until(|w| w.sender().is_finished()),
        "the sender ends"
    );
    w
}

#[test]
fn an_encrypted_push_reaches_every_expected_receiver_and_shows_nothing_on_the_wire() {
    for aead in [Aead::Aes256Gcm, Aead::ChaCha20Poly1305] {
        let mut c = config(2, 2, aead);
        c.loss_independent = 0.05;
        let mut w = World::new(c, content());
        w.record_sent();
        let w = push(w);
        let report = w.sender().report().unwrap();
        assert!(report.success, "{aead:?}: {report:?}");
        assert_eq!(w.sender().stats().keys_sent, 2);
        for i in 0..2 {
            assert_eq!(
                w.receiver_files(i).get("etc/secret.conf"),
                Some(&content().files[&ObjectId(1)]),
                "{aead:?}: receiver {i}"
            );
        }
        let mut data = 0;
        for s in w.sent() {
            assert!(
                !s.datagram.windows(SECRET.len()).any(|x| x == SECRET),
                "plaintext on the wire"
            );
            if s.datagram[3] & !ENC_FLAG == wire::PacketType::Data as u8 {
                assert_ne!(s.datagram[3] & ENC_FLAG, 0, "DATA in clear");
                data += 1;
            }
        }
        assert!(data > 200, "{data} DATA datagrams");
        // Repairs were asked for and answered through sealed feedback.
        assert!(w.sender().stats().nacks_received > 0);
        assert_eq!(w.sender().stats().auth_failed, 0);
    }
}

#[test]
fn a_receiver_not_expected_by_key_is_sent_no_key_and_gets_nothing() {
    let w = push(World::new(config(3, 2, Aead::Aes256Gcm), content()));
    let report = w.sender().report().unwrap();
    assert!(report.success, "{report:?}");
    assert_eq!(w.sender().stats().keys_sent, 2);
    assert!(w.sender().stats().unadmitted > 0, "r2's KEYREQ was refused");
    assert!(
        report.receivers.iter().all(|r| r.name != "r2"),
        "{report:?}"
    );
    assert!(w.receiver_files(2).is_empty());
    let r2 = w.receiver(2).stats();
    assert!(r2.key_requests_sent > 0 && r2.undecryptable > 0, "{r2:?}");
    assert_eq!(r2.symbols_received, 0);
}

#[test]
fn a_non_member_ends_saying_it_was_not_admitted() {
    let mut c = config(3, 2, Aead::Aes256Gcm);
    c.max_time = Duration::from_secs(60);
    let mut w = World::new(c, content());
    assert!(w.drive_until(|w| w.receiver(2).is_finished()));
    let problem = w.receiver_outcome(2).and_then(|o| o.problem.clone());
    assert_eq!(problem, Some(SessionError::NotAdmitted));
}

#[test]
fn a_receiver_without_an_identity_refuses_an_encrypted_push() {
    let mut c = config(1, 1, Aead::Aes256Gcm);
    c.receiver_setup = None;
    let w = push(World::new(c, content()));
    assert_eq!(w.receiver_untrusted(0), &[Untrusted::NeedIdentity]);
    assert!(!w.sender().report().unwrap().success);
}

#[test]
fn forged_symbols_sealed_or_in_clear_are_dropped_not_decoded() {
    let c = config(1, 1, Aead::Aes256Gcm);
    let session = c.sender.session;
    let mut w = World::new(c, content());
    assert!(w.drive_until(|w| w.receiver(0).progress().is_some()));
    // Zeros for every symbol of the file's first block: in clear, and
    // with the encrypted flag and a made-up tag.
    for esi in 0..24u16 {
        let h = DataHeader {
            session,
            object: ObjectId(1),
            block: BlockNumber(0),
            esi: SymbolId(esi),
            flags: 0,
            seq: 0,
        };
        let mut d = Vec::new();
        wire::write_data(&mut d, &h, &[0u8; 256]);
        w.inject(Node::Sender, &d);
        d[3] |= ENC_FLAG;
        d.extend_from_slice(&[7u8; 24]);
        w.inject(Node::Sender, &d);
    }
    let w = push(w);
    assert!(w.sender().report().unwrap().success);
    assert_eq!(
        w.receiver_files(0).get("etc/secret.conf"),
        Some(&content().files[&ObjectId(1)])
    );
    assert!(
        w.receiver(0).stats().auth_failed >= 48,
        "{:?}",
        w.receiver(0).stats()
    );
}

#[test]
fn congestion_forged_in_an_admitted_receivers_name_does_not_slow_the_push() {
    let c = config(1, 1, Aead::Aes256Gcm);
    let session = c.sender.session;
    let mut w = World::new(c, content());
    // Wait until r0 is admitted, then speak in its node's name.
    assert!(w.drive_until(|w| w.sender().stats().keys_sent == 1));
    let node = w.receiver(0).node();
    let before = w.sender().rate_bps();
    for sealed in [false, true] {
        let mut d = Vec::new();
        let m = Control::Congestion(Congestion {
            node,
            echo: Echo::default(),
            delivered_bps: 10_000,
            loss: 60_000,
            floor: 0,
            first_seq: 0,
            last_seq: 1000,
            runs: 50,
        });
        wire::write_control(&mut d, session, &m);
        if sealed {
            // Sealed, but not with r0's feedback key.
            let mut s = mdp_proto::auth::Sealer::new(mdp_proto::auth::Key::from_bytes([9; 32]));
            s.seal(&mut d, 0, 1);
        }
        w.inject(Node::Receiver(0), &d);
    }
    w.drive_for(Duration::from_millis(1));
    let stats = w.sender().stats();
    assert_eq!(stats.congestion_received, 0, "{stats:?}");
    assert!(
        stats.auth_failed >= 1 && stats.ignored_received >= 1,
        "{stats:?}"
    );
    assert!(w.sender().rate_bps() >= before);
    let w = push(w);
    assert!(w.sender().report().unwrap().success);
}

#[test]
fn a_forged_key_for_a_receiver_does_not_open_and_the_real_one_still_works() {
    let c = config(1, 1, Aead::Aes256Gcm);
    let session = c.sender.session;
    let mut w = World::new(c, content());
    let node = w.receiver(0).node();
    // Drop the sender's first KEY, and offer a forged one first.
    let mut dropped = false;
    w.drop_when(move |from, _, d| {
        let key = from == Node::Sender
            && matches!(
                wire::parse(d),
                Ok(Packet::Control {
                    message: Control::Key(_),
                    ..
                })
            );
        let drop = key && !dropped;
        dropped |= key;
        drop
    });
    let mut d = Vec::new();
    wire::write_control(
        &mut d,
        session,
        &Control::Key(wire::KeyWrap {
            node,
            sealed_key: [1; 32],
            tag: [2; 16],
        }),
    );
    w.drive_for(Duration::from_millis(5));
    w.inject(Node::Sender, &d);
    let w = push(w);
    assert!(w.sender().report().unwrap().success);
    assert!(w.receiver(0).stats().auth_failed >= 1);
    assert!(w.receiver(0).stats().key_requests_sent >= 2);
}

/// The sender's latest ANNOUNCE sent in clear, parsed.
fn last_clear_announce(w: &World) -> wire::Announce {
    w.sent()
        .iter()
        .rev()
        .find_map(|s| match wire::parse(&s.datagram) {
            Ok(Packet::Control {
                message: Control::Announce(a),
                ..
            }) if s.datagram[3] & ENC_FLAG == 0 => Some(a),
            _ => None,
        })
        .expect("an ANNOUNCE went out")
}

#[test]
fn an_announce_in_clear_moves_nothing_for_a_receiver_that_holds_the_key() {
    let mut c = config(1, 1, Aead::Aes256Gcm);
    let session = c.sender.session;
    c.sender.timeout = Duration::from_secs(20);
    c.max_time = Duration::from_secs(30);
    let big = Content::new(
        &["img"],
        vec![("img/disk.raw".into(), Content::random_bytes(2 << 20, 5))],
    );
    let mut w = World::new(c, big.clone());
    w.record_sent();
    // r0 holds the key and the first symbols of the file.
    assert!(w.drive_until(|w| w.receiver(0).stats().symbols_received > 40));
    // A forger copies the signed fields and claims the sender passed every
    // block and acknowledged r0's confirmation.
    let mut a = last_clear_announce(&w);
    a.data_pos = (a.object_count + 1, 0);
    a.acked = vec![wire::Ack {
        node: w.receiver(0).node(),
        state: wire::AckState::Confirmed,
    }];
    let mut d = Vec::new();
    wire::write_control(&mut d, session, &Control::Announce(a));
    let ignored = w.receiver(0).stats().ignored;
    for _ in 0..5 {
        w.deliver(Node::Receiver(0), &d);
        w.drive_for(Duration::from_millis(2));
    }
    assert!(w.receiver(0).stats().ignored >= ignored + 5);
    let w = push(w);
    let report = w.sender().report().unwrap();
    assert!(report.success, "{report:?}");
    // Lossless: r0 never asked for a block the sender had not yet sent.
    let stats = w.receiver(0).stats();
    assert_eq!(stats.nack_entries_sent, 0, "{stats:?}");
    assert_eq!(
        w.receiver_files(0).get("img/disk.raw"),
        Some(&big.files[&ObjectId(1)])
    );
}

#[test]
fn sealed_announces_keep_a_member_acknowledged_and_alive() {
    let mut c = config(1, 1, Aead::ChaCha20Poly1305);
    c.loss_independent = 0.05;
    let mut w = World::new(c, content());
    w.record_sent();
    let w = push(w);
    assert!(w.sender().report().unwrap().success);
    let sealed = w
        .sent()
        .iter()
        .filter(|s| {
            s.datagram[3] == wire::PacketType::Announce as u8 | ENC_FLAG && s.from == Node::Sender
        })
        .count();
    assert!(sealed > 0, "no sealed ANNOUNCE went out");
}

#[test]
fn forged_nacks_hold_off_a_members_repair_only_a_bounded_time() {
    let mut c = config(1, 1, Aead::Aes256Gcm);
    let session = c.sender.session;
    c.sender.timeout = Duration::from_secs(30);
    c.max_time = Duration::from_secs(40);
    let mut w = World::new(c, content());
    // r0 loses the first pass of the file's block 0.
    w.drop_when(|from, to, d| {
        from == Node::Sender
            && to == Node::Receiver(0)
            && d[3] & !ENC_FLAG == wire::PacketType::Data as u8
            && d[12..16] == 1u32.to_be_bytes()
            && d[16..20] == 0u32.to_be_bytes()
            && d[22] & wire::FLAG_REPAIR == 0
    });
    assert!(w.drive_until(|w| w.receiver(0).stats().symbols_received > 0));
    // Someone keeps saying, every 10 ms, that it needs all of block 0 (and
    // more of the others), sealed with a made-up key, as if another member.
    let entries = (0..15)
        .map(|b| wire::NackEntry {
            object: ObjectId(1),
            block: BlockNumber(b),
            need: u16::MAX,
            missing: vec![],
        })
        .collect();
    let mut nack = Vec::new();
    wire::write_control(
        &mut nack,
        session,
        &Control::Nack(wire::Nack {
            node: mdp_proto::NodeId(0xbad),
            echo: Echo::default(),
            loss: 0,
            entries,
        }),
    );
    let mut s = mdp_proto::auth::Sealer::new(mdp_proto::auth::Key::from_bytes([9; 32]));
    s.seal(&mut nack, 0, 1);
    while !w.sender().is_finished() && w.elapsed() < Duration::from_secs(25) {
        w.deliver(Node::Receiver(0), &nack);
        w.drive_for(Duration::from_millis(10));
    }
    let report = w.sender().report().expect("the sender ended");
    assert!(report.success, "{report:?}");
    assert!(
        w.elapsed() < Duration::from_secs(8),
        "r0 waited {:?} for its repair",
        w.elapsed()
    );
    assert!(w.receiver(0).stats().nack_entries_sent > 0);
}

#[test]
fn a_member_cannot_take_over_another_members_node_with_its_own_key() {
    let c = config(2, 2, Aead::Aes256Gcm);
    let session = c.sender.session;
    let mut w = World::new(c, content());
    assert!(w.drive_until(|w| w.sender().stats().keys_sent == 2));
    // r1, compromised, asks for a key in r0's node id, signed with its own
    // (listed) key under its own name.
    let mut m = Control::KeyRequest(wire::KeyRequest {
        node: w.receiver(0).node(),
        name: "r1".into(),
        receiver_eph: mdp_proto::crypto::Ephemeral::from_secret([3; 32]).public(),
        signed: None,
    });
    wire::sign_feedback(session, &mut m, &key(11));
    let mut d = Vec::new();
    wire::write_control(&mut d, session, &m);
    let unadmitted = w.sender().stats().unadmitted;
    w.deliver(Node::Sender, &d);
    assert_eq!(w.sender().stats().unadmitted, unadmitted + 1);
    assert_eq!(w.sender().stats().keys_sent, 2, "no KEY for the forger");
    let w = push(w);
    let report = w.sender().report().unwrap();
    assert!(report.success, "{report:?}");
    assert_eq!(w.sender().stats().auth_failed, 0);
}

#[test]
fn a_member_cannot_confirm_an_absent_member_through_a_relay_message() {
    // r0 and r1 run; r2 is expected but absent. r1, compromised, passes
    // up a confirmation in r2's name as if it were a relay.
    let c = config(2, 3, Aead::Aes256Gcm);
    let mut w = World::new(c, content());
    assert!(w.drive_until(|w| w.sender().stats().keys_sent == 2));
    let now = w.now();
    w.receiver_mut(1).pass_on(
        now,
        wire::Relayed::Status(wire::Status {
            node: mdp_proto::NodeId(0x7272),
            name: "r2".into(),
            echo: Echo::default(),
            complete: true,
            verified: 1,
            missing: vec![],
            failed: vec![],
            hook: None,
            signed: None,
        }),
    );
    let w = push(w);
    let report = w.sender().report().expect("finished").clone();
    let r2 = report
        .receivers
        .iter()
        .find(|r| r.name == "r2")
        .expect("r2 reported");
    assert_eq!(
        r2.verdict,
        mdp_proto::Verdict::NeverRegistered,
        "{report:?}"
    );
    assert!(!report.success);
}

//! Golden bytes: every control message and the DATA header, a fixed value
//! written with `wire::write_control` / `wire::write_data`, equals bytes
//! derived by hand from docs/PROTOCOL.md §3–5 (common header, DATA's fixed
//! header, postcard with LEB128 varints), and parsing those bytes gives the
//! value back. A change of the wire format fails here first.

use mdp_proto::wire::{
    self, Ack, AckState, Announce, Congestion, Control, DataHeader, Done, Echo, FailReason, Flush,
    Nack, NackEntry, Packet, Register, Status, Timing, FLAG_REPAIR,
};
use mdp_proto::{BlockNumber, NodeId, ObjectId, SessionId, SymbolId};

const SESSION: SessionId = SessionId(0x0102_0304_0506_0708);

/// Bytes from hex digits; spaces and `|` (field separators) are skipped.
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|b| !b" |\n".contains(b))
        .map(|b| (b as char).to_digit(16).expect("a hex digit") as u8)
        .collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
}

/// §3: magic "md", version 9, the type, the session big-endian.
fn common(ty: &str) -> String {
    format!("6d64 | 09 | {ty} | 0102030405060708 | ")
}

/// `message` written equals `common(ty) + body`, and parses back to it.
fn golden(ty: &str, message: Control, body: &str) {
    let expected = hex(&(common(ty) + body));
    let mut written = Vec::new();
    wire::write_control(&mut written, SESSION, &message);
    assert_eq!(
        written, expected,
        "{message:?}: written {written:02x?}, the doc says {expected:02x?}"
    );
    match wire::parse(&expected) {
        Ok(Packet::Control {
            session,
            message: parsed,
        }) => {
            assert_eq!(session, SESSION);
            assert_eq!(parsed, message);
        }
        other => panic!("the golden bytes do not parse: {other:?}"),
    }
}

/// Timing { ts_us: 300, grtt_us: 5000, rate_bps: 1_000_000, group_size: 3 }.
fn timing() -> (Timing, &'static str) {
    (
        Timing {
            ts_us: 300,
            grtt_us: 5000,
            rate_bps: 1_000_000,
            group_size: 3,
        },
        "ac02 | 8827 | c0843d | 03",
    )
}

#[test]
fn data_header_golden_bytes() {
    let header = DataHeader {
        session: SESSION,
        object: ObjectId(0x0a0b_0c0d),
        block: BlockNumber(0x0102),
        esi: SymbolId(0x0304),
        flags: FLAG_REPAIR,
        seq: 0xdead_beef,
    };
    let payload = [0xaa, 0xbb, 0xcc];
    // §4: object, block (u32 BE), esi (u16 BE), flags, reserved 0, seq
    // (u32 BE), then the symbol.
    let expected =
        hex(&(common("01") + "0a0b0c0d | 00000102 | 0304 | 01 | 00 | deadbeef | aabbcc"));
    let mut written = Vec::new();
    wire::write_data(&mut written, &header, &payload);
    assert_eq!(written, expected);
    assert_eq!(written.len(), 28 + payload.len(), "a 28-byte header");
    match wire::parse(&expected) {
        Ok(Packet::Data {
            header: h,
            payload: p,
        }) => {
            assert_eq!(h, header);
            assert_eq!(p, payload);
        }
        other => panic!("the golden bytes do not parse: {other:?}"),
    }
}

#[test]
fn announce_golden_bytes() {
    let (timing, t) = timing();
    let message = Control::Announce(Announce {
        timing,
        symbol_size: 1400,
        block_k: 192,
        parity: 64,
        manifest_len: 2,
        manifest_hash: [0x11; 32],
        object_count: 5,
        data_pos: (1, 2),
        acked: vec![
            Ack {
                node: NodeId(7),
                state: AckState::Registered,
            },
            Ack {
                node: NodeId(128),
                state: AckState::Confirmed,
            },
        ],
        poll: vec![NodeId(9)],
        delete: true,
        dry_run: false,
        enc: None,
        signed: None,
    });
    let hash = "11".repeat(32);
    golden(
        "10",
        message,
        &format!(
            "{t} | f80a | c001 | 40 | 02 | {hash} | 05 | 01 02 | 02 07 00 8001 01 | 01 09 | 01 | 00 | 00 | 00"
        ),
    );
}

#[test]
fn signed_announce_golden_bytes() {
    let (timing, t) = timing();
    let message = Control::Announce(Announce {
        timing,
        symbol_size: 1400,
        block_k: 192,
        parity: 64,
        manifest_len: 2,
        manifest_hash: [0x11; 32],
        object_count: 5,
        data_pos: (0, 0),
        acked: vec![],
        poll: vec![],
        delete: false,
        dry_run: false,
        enc: None,
        signed: Some(wire::PushSignature {
            signer: [0x22; 32],
            signed_at_us: 300,
            sig_r: [0x33; 32],
            sig_s: [0x44; 32],
        }),
    });
    let (hash, signer, r, s) = (
        "11".repeat(32),
        "22".repeat(32),
        "33".repeat(32),
        "44".repeat(32),
    );
    golden(
        "10",
        message,
        &format!("{t} | f80a | c001 | 40 | 02 | {hash} | 05 | 00 00 | 00 | 00 | 00 | 00 | 00 | 01 {signer} ac02 {r} {s}"),
    );
}

/// §5c: an encrypted push announces its AEAD (a postcard enum: 0 is
/// AES-256-GCM, 1 ChaCha20-Poly1305) and the sender's ephemeral key.
#[test]
fn encrypted_announce_golden_bytes() {
    let (timing, t) = timing();
    let message = Control::Announce(Announce {
        timing,
        symbol_size: 1400,
        block_k: 192,
        parity: 64,
        manifest_len: 2,
        manifest_hash: [0x11; 32],
        object_count: 5,
        data_pos: (0, 0),
        acked: vec![],
        poll: vec![],
        delete: false,
        dry_run: false,
        enc: Some(wire::Encryption {
            aead: mdp_proto::crypto::Aead::ChaCha20Poly1305,
            sender_eph: [0x55; 32],
        }),
        signed: None,
    });
    let (hash, eph) = ("11".repeat(32), "55".repeat(32));
    golden(
        "10",
        message,
        &format!(
            "{t} | f80a | c001 | 40 | 02 | {hash} | 05 | 00 00 | 00 | 00 | 00 | 00 | 01 01 {eph} | 00"
        ),
    );
}

/// §5c: KEYREQ (0x24) and KEY (0x13).
#[test]
fn key_request_and_key_golden_bytes() {
    golden(
        "24",
        Control::KeyRequest(wire::KeyRequest {
            node: NodeId(9),
            name: "w1".into(),
            receiver_eph: [0x66; 32],
            signed: None,
        }),
        &format!("09 | 02 7731 | {} | 00", "66".repeat(32)),
    );
    golden(
        "13",
        Control::Key(wire::KeyWrap {
            node: NodeId(300),
            sealed_key: [0x77; 32],
            tag: [0x88; 16],
        }),
        &format!("ac02 | {} | {}", "77".repeat(32), "88".repeat(16)),
    );
}

#[test]
fn the_push_claim_has_a_fixed_layout() {
    let a = Announce {
        timing: Timing {
            ts_us: 9,
            grtt_us: 9,
            rate_bps: 9,
            group_size: 9,
        },
        symbol_size: 0x0102,
        block_k: 0x0304,
        parity: 0x0506,
        manifest_len: 0x0708,
        manifest_hash: [0x11; 32],
        object_count: 0x090a,
        data_pos: (9, 9),
        acked: vec![],
        poll: vec![],
        delete: true,
        dry_run: false,
        enc: None,
        signed: None,
    };
    let claim = wire::push_claim(SESSION, &a, &[0x22; 32], 0x0b0c);
    let fixed = format!(
        "0102030405060708 | 0000000000000b0c | {} | 0102 | 0304 | 0506 | 0000000000000708 | {} | 0000090a | 01 | 00",
        "22".repeat(32),
        "11".repeat(32)
    );
    let expected = [
        b"mdp push claim v9\0".to_vec(),
        hex(&format!("{fixed} | 00")),
    ]
    .concat();
    assert_eq!(claim, expected);
    // Encrypted: 1, the AEAD's id (1 AES-256-GCM, 2 ChaCha20-Poly1305),
    // the sender's ephemeral key.
    let a = Announce {
        enc: Some(wire::Encryption {
            aead: mdp_proto::crypto::Aead::Aes256Gcm,
            sender_eph: [0x55; 32],
        }),
        ..a
    };
    let claim = wire::push_claim(SESSION, &a, &[0x22; 32], 0x0b0c);
    let expected = [
        b"mdp push claim v9\0".to_vec(),
        hex(&format!("{fixed} | 01 01 {}", "55".repeat(32))),
    ]
    .concat();
    assert_eq!(claim, expected);
}

#[test]
fn flush_golden_bytes() {
    let (timing, t) = timing();
    let message = Control::Flush(Flush {
        timing,
        awaiting: vec![NodeId(1), NodeId(300)],
        acked: vec![Ack {
            node: NodeId(2),
            state: AckState::Confirmed,
        }],
    });
    golden("11", message, &format!("{t} | 02 01 ac02 | 01 02 01"));
}

#[test]
fn done_golden_bytes() {
    golden("12", Control::Done(Done { success: true }), "01");
    golden("12", Control::Done(Done { success: false }), "00");
}

#[test]
fn register_golden_bytes() {
    let message = Control::Register(Register {
        node: NodeId(258),
        name: "r1".into(),
        echo: Echo {
            ts_us: 300,
            delay_us: 7,
        },
        have: vec![(1, 3)],
        have_blocks: vec![(2, 0, 129)],
        more: false,
        signed: None,
    });
    golden(
        "20",
        message,
        "8202 | 02 7231 | ac02 07 | 01 01 03 | 01 02 00 8101 | 00 | 00",
    );
}

#[test]
fn nack_golden_bytes() {
    let message = Control::Nack(Nack {
        node: NodeId(9),
        echo: Echo {
            ts_us: 1,
            delay_us: 200,
        },
        loss: 655,
        entries: vec![NackEntry {
            object: ObjectId(1),
            block: BlockNumber(2),
            need: 2,
            missing: vec![3, 5],
        }],
    });
    golden(
        "21",
        message,
        "09 | 01 c801 | 8f05 | 01 | 01 02 02 | 02 03 05",
    );
}

#[test]
fn status_golden_bytes() {
    let message = Control::Status(Status {
        node: NodeId(9),
        name: String::new(),
        echo: Echo::default(),
        complete: true,
        verified: 4,
        missing: vec![ObjectId(6)],
        failed: vec![(ObjectId(7), FailReason::Refused)],
        hook: None,
        signed: None,
    });
    golden(
        "22",
        message,
        "09 | 00 | 00 00 | 01 | 04 | 01 06 | 01 07 02 | 00 | 00",
    );
}

#[test]
fn relay_golden_bytes() {
    // The relay (node 5) passes on receiver 9's confirming STATUS as it
    // came: the variant index 1, then STATUS's own bytes.
    let message = Control::Relay(wire::Relay {
        node: NodeId(5),
        message: wire::Relayed::Status(Status {
            node: NodeId(9),
            name: String::new(),
            echo: Echo::default(),
            complete: true,
            verified: 4,
            missing: vec![],
            failed: vec![],
            hook: None,
            signed: None,
        }),
    });
    golden(
        "25",
        message,
        "05 | 01 | 09 | 00 | 00 00 | 01 | 04 | 00 | 00 | 00 | 00",
    );
}

#[test]
fn a_confirmation_with_its_hooks_outcome_golden_bytes() {
    use mdp_proto::wire::HookOutcome;
    let status = |hook| {
        Control::Status(Status {
            node: NodeId(9),
            name: String::new(),
            echo: Echo::default(),
            complete: true,
            verified: 4,
            missing: vec![],
            failed: vec![],
            hook: Some(hook),
            signed: None,
        })
    };
    // hook: Some (01), then the variant: 0 Succeeded, 1 Exited(u8),
    // 2 Killed, 3 NotStarted.
    let head = "09 | 00 | 00 00 | 01 | 04 | 00 | 00 | 01";
    golden(
        "22",
        status(HookOutcome::Succeeded),
        &format!("{head} 00 | 00"),
    );
    golden(
        "22",
        status(HookOutcome::Exited(7)),
        &format!("{head} 01 07 | 00"),
    );
    golden(
        "22",
        status(HookOutcome::Killed),
        &format!("{head} 02 | 00"),
    );
    golden(
        "22",
        status(HookOutcome::NotStarted),
        &format!("{head} 03 | 00"),
    );
}

#[test]
fn congestion_golden_bytes() {
    let message = Control::Congestion(Congestion {
        node: NodeId(9),
        echo: Echo {
            ts_us: 1,
            delay_us: 2,
        },
        delivered_bps: 128,
        loss: 1000,
        floor: 10,
        first_seq: 100,
        last_seq: 200,
        runs: 3,
    });
    golden(
        "23",
        message,
        "09 | 01 02 | 8001 | e807 | 0a | 64 | c801 | 03",
    );
}

/// §3: bit 7 of the type marks a sealed datagram; the parser reads the
/// type with it cleared (the trailer is checked and cut by `auth` first).
#[test]
fn the_sealed_flag_is_bit_7_of_the_type() {
    let mut bytes = hex(&(common("92") + "01"));
    match wire::parse(&bytes) {
        Ok(Packet::Control { message, .. }) => {
            assert_eq!(message, Control::Done(Done { success: true }))
        }
        other => panic!("{other:?}"),
    }
    bytes[2] = 3;
    assert!(wire::parse(&bytes).is_err(), "another version is refused");
}

/// §3, §5c: bit 6 of the type marks a datagram sealed with the session
/// key; the parser reads the type with it cleared (crypto.rs opens it
/// first), and the clear header of DATA is its whole fixed header.
#[test]
fn the_encrypted_flag_is_bit_6_of_the_type() {
    let bytes = hex(&(common("52") + "01"));
    assert!(matches!(
        wire::parse(&bytes),
        Ok(Packet::Control {
            message: Control::Done(Done { success: true }),
            ..
        })
    ));
    let c = mdp_proto::crypto::Cipher::new(mdp_proto::crypto::Aead::Aes256Gcm, &[1; 32]);
    let mut d = hex(&(common("01") + "00000001 00000002 0003 00 00 00000004 | 6869"));
    c.seal(&mut d, 0, 0x0102);
    assert_eq!(d[3], 0x41);
    assert_eq!(
        &d[4..28],
        &hex(&(common("01") + "00000001 00000002 0003 00 00 00000004"))[4..]
    );
    assert_eq!(d.len(), 28 + 2 + 8 + 16);
    assert_eq!(&d[30..38], &hex("0000000000000102")[..]);
}

#[test]
fn the_feedback_claim_is_the_message_without_its_signature() {
    use mdp_proto::identity::Identity;
    let mut message = Control::Status(Status {
        node: NodeId(9),
        name: String::new(),
        echo: Echo::default(),
        complete: true,
        verified: 4,
        missing: vec![ObjectId(6)],
        failed: vec![(ObjectId(7), FailReason::Refused)],
        hook: None,
        signed: None,
    });
    let claim = wire::feedback_claim(SESSION, &message).unwrap();
    let expected = [
        b"mdp feedback claim v9\0".to_vec(),
        hex("0102030405060708 | 22 | 09 | 00 | 00 00 | 01 | 04 | 01 06 | 01 07 02 | 00 | 00"),
    ]
    .concat();
    assert_eq!(claim, expected);
    // Signing fills `signed`; the claim of the signed message is the same.
    let id = Identity::from_seed([5; 32]);
    wire::sign_feedback(SESSION, &mut message, &id);
    let signed = *wire::feedback_signature(&message).unwrap();
    assert_eq!(signed.key, id.public().to_bytes());
    assert_eq!(wire::feedback_claim(SESSION, &message).unwrap(), claim);
    assert!(id.public().verify(&claim, &signed.signature()));
    // Another session's claim differs.
    assert_ne!(wire::feedback_claim(SessionId(2), &message).unwrap(), claim);
}

#[test]
fn a_manifest_with_a_symbolic_link_golden_bytes() {
    use mdp_proto::{Entry, EntryKind, Manifest};
    let m = Manifest::new(vec![Entry {
        path: "l".into(),
        kind: EntryKind::Symlink { target: "t".into() },
        mode: 0o777,
        mtime_secs: 0,
        mtime_nanos: 0,
        owner: 0,
    }]);
    // One entry | path "l" | variant 2 (Symlink) | target "t" | mode 511
    // (varint) | mtime_secs 0 (zigzag varint) | mtime_nanos 0 | owner 0
    // (none) | no owners | not atomic | no relay tree.
    assert_eq!(
        m.encode(),
        hex("01 | 01 6c | 02 | 01 74 | ff 03 | 00 | 00 | 00 | 00 | 00 | 00")
    );
}

#[test]
fn a_manifest_with_a_hard_link_golden_bytes() {
    use mdp_proto::{Entry, EntryKind, Manifest};
    let entry = |path: &str, kind| Entry {
        path: path.into(),
        kind,
        mode: 0o644,
        mtime_secs: 0,
        mtime_nanos: 0,
        owner: 0,
    };
    let m = Manifest::new(vec![
        entry(
            "a",
            EntryKind::File {
                size: 0,
                hash: [0; 32],
                blocks: vec![],
            },
        ),
        entry("b", EntryKind::HardLink { target: "a".into() }),
    ]);
    let zeros = "00".repeat(32);
    // Two entries | "a" File { size 0, hash, no blocks } mode 420 ... |
    // "b" variant 3 (HardLink) target "a" mode 420 ... | no owners | not
    // atomic | no relay tree.
    assert_eq!(
        m.encode(),
        hex(&format!(
            "02 | 01 61 | 01 00 {zeros} 00 | a4 03 | 00 00 00 | 01 62 | 03 01 61 | a4 03 | 00 00 00 | 00 | 00 | 00"
        ))
    );
}

#[test]
fn a_manifest_with_a_relay_tree_golden_bytes() {
    use mdp_proto::manifest::RelayTree;
    use mdp_proto::Manifest;
    let mut m = Manifest::new(vec![]);
    m.tree = Some(RelayTree {
        fan_out: 2,
        hosts: vec!["10.0.0.2:7400".into()],
    });
    // No entries | no owners | not atomic | a tree: fan-out 2 | one host
    // "10.0.0.2:7400".
    assert_eq!(
        m.encode(),
        hex("00 | 00 | 00 | 01 02 | 01 0d 31302e302e302e323a37343030")
    );
    assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
}

#[test]
fn a_manifest_with_an_owner_golden_bytes() {
    use mdp_proto::manifest::Owner;
    use mdp_proto::{Entry, EntryKind, Manifest};
    let m = Manifest {
        entries: vec![Entry {
            path: "d".into(),
            kind: EntryKind::Dir,
            mode: 0o755,
            mtime_secs: 0,
            mtime_nanos: 0,
            owner: 1,
        }],
        owners: vec![Owner {
            uid: 33,
            gid: 1000,
            user: "www".into(),
            group: "ops".into(),
        }],
        atomic: true,
        tree: None,
    };
    // One entry | path "d" | variant 0 (Dir) | mode 493 | mtime 0 0 |
    // owner 1 (the first of the table) | one owner: uid 33 | gid 1000
    // (varint) | "www" | "ops" | atomic: true | no relay tree.
    assert_eq!(
        m.encode(),
        hex(
            "01 | 01 64 | 00 | ed 03 | 00 | 00 | 01 | 01 | 21 | e8 07 | 03 777777 | 03 6f7073 | 01 | 00"
        )
    );
    assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
}

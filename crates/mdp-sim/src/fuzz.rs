//! The bodies of the fuzz targets (`fuzz/`, cargo-fuzz) and of the stable
//! corpus test (`tests/fuzz_corpus.rs`): each takes arbitrary bytes and
//! must neither panic nor allocate in proportion to a size it was told
//! rather than given, nor break the invariants it checks.
//!
//! The state-machine targets read their input as a flags byte (bit 7: both
//! ends use a key; bit 6: the receiver trusts one signing key, the sender
//! knows its receivers by key) and then a script of steps: `[op][len: u16 LE][len
//! bytes]`. Ops (`op % 4`): 0 a datagram, 1 advance
//! the clock by `len` ms, 2 fire the timer, 3 a datagram on the other
//! socket (the receiver's feedback port; the sender has one socket).

use crate::{Drain, Output};
use mdp_proto::auth::{self, AuthConfig, Key};
use mdp_proto::fec::Codec;
use mdp_proto::wire::{self, FailReason};
use mdp_proto::{
    Entry, EntryKind, Manifest, NodeId, Receiver, ReceiverConfig, ReceiverEvent, ReceiverRequest,
    Sender, SenderConfig, SenderRequest, SessionId,
};
use std::time::{Duration, Instant};

/// One step of a script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// A datagram.
    Datagram(&'a [u8]),
    /// The clock moves on.
    Advance(Duration),
    /// The timer fires.
    Timer,
}

/// Splits a script into steps (a truncated last step is dropped).
pub fn steps(mut data: &[u8]) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    while data.len() >= 3 {
        let op = data[0] % 4;
        let len = u16::from_le_bytes([data[1], data[2]]) as usize;
        data = &data[3..];
        match op {
            1 => out.push(Step::Advance(Duration::from_millis(len as u64))),
            2 => out.push(Step::Timer),
            _ => {
                let n = len.min(data.len());
                out.push(Step::Datagram(&data[..n]));
                data = &data[n..];
            }
        }
    }
    out
}

/// Encodes steps as a script (for seed corpora).
pub fn script(steps: &[Step]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in steps {
        match s {
            Step::Datagram(d) => {
                out.push(0);
                out.extend_from_slice(&(d.len() as u16).to_le_bytes());
                out.extend_from_slice(d);
            }
            Step::Advance(d) => {
                out.push(1);
                out.extend_from_slice(&(d.as_millis().min(65535) as u16).to_le_bytes());
            }
            Step::Timer => out.extend_from_slice(&[2, 0, 0]),
        }
    }
    out
}

/// The key the authenticated targets use.
fn key() -> Key {
    Key::from_bytes([0x42; 32])
}

/// Every decoder of network bytes: the datagram parser (with and without a
/// key) and, for control messages, re-encoding what was decoded.
pub fn wire_target(data: &[u8]) {
    if let Ok(wire::Packet::Control { session, message }) = wire::parse(data) {
        let mut buf = Vec::new();
        wire::write_control(&mut buf, session, &message);
        // What decodes re-encodes to something that decodes the same.
        match wire::parse(&buf) {
            Ok(wire::Packet::Control { message: again, .. }) => assert_eq!(again, message),
            other => panic!("re-encoded control message does not parse: {other:?}"),
        }
    }
    let k = key();
    if let Ok((inner, _)) = auth::open(Some(&k), data) {
        let _ = wire::parse(inner);
    }
    let _ = auth::open(None, data);
}

/// The manifest decoder: whatever it accepts has only safe paths.
pub fn manifest_target(data: &[u8]) {
    let Ok(m) = Manifest::decode(data) else {
        return;
    };
    for e in &m.entries {
        assert!(
            !e.path.is_empty() && !e.path.starts_with('/'),
            "{:?}",
            e.path
        );
        assert!(!e.path.contains('\0'));
        assert!(
            e.path
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".."),
            "{:?}",
            e.path
        );
    }
    assert!(Manifest::decode(&m.encode()).is_ok());
}

/// A receiver fed a script; checks that its buffer stays bounded and that
/// every block it hands over has the length it announced. Returns how its
/// session ended, if it did.
pub fn receiver_target(data: &[u8]) -> Option<mdp_proto::SessionOutcome> {
    let t0 = Instant::now();
    let mut config = ReceiverConfig::new(NodeId(7), "fuzz", 7);
    config.buffer_bytes = 4 << 20;
    config.insecure = true;
    let (&flags, data) = data.split_first()?;
    if flags & 0x80 != 0 {
        config.auth = Some(AuthConfig::new(key(), t0, 1_800_000_000_000_000));
    }
    if flags & 0x20 != 0 {
        // A receiver that can take encrypted pushes: ANNOUNCEs with an
        // ephemeral key start a session that asks for its key, and KEY,
        // sealed DATA, FLUSH and DONE reach the crypto.
        config.identity = Some(mdp_proto::identity::Identity::from_seed([7; 32]));
        config.secrets = Some(mdp_proto::crypto::SecretSource::new([7; 32]));
    }
    if flags & 0x40 != 0 {
        // A receiver that trusts one key: every ANNOUNCE goes through
        // `trust::admit` (signatures of any shape, by any signer).
        config.trust = vec![mdp_proto::identity::Identity::from_seed([9; 32]).public()];
        config.clock = Some(mdp_proto::identity::WallClock {
            at: t0,
            unix_us: 1_800_000_000_000_000,
        });
    }
    let limit = config.buffer_bytes;
    let mut r = Receiver::new(config);
    let mut now = t0;
    let mut codec = Codec::default();
    let mut drain = Drain::new();
    let mut outcome = None;
    let mut verdict = 0u8;
    for step in steps(data) {
        match step {
            Step::Datagram(d) => r.handle_datagram(now, d),
            Step::Advance(d) => now += d,
            Step::Timer => r.handle_timeout(now),
        }
        // A block a little over the budget can be admitted whole.
        assert!(
            r.buffered_bytes() <= limit + (16 << 20),
            "buffer grew past its bound"
        );
        let _ = drain.receiver(
            &mut r,
            now,
            |_| {},
            |r, ev| match ev {
                Output::Request(ReceiverRequest::CheckPresent { .. }) => r.handle_present(now, &[]),
                Output::Request(ReceiverRequest::WriteBlock { block, .. }) => {
                    let len = block.len();
                    if let Ok(bytes) = block.into_bytes(&mut codec) {
                        assert_eq!(bytes.len(), len);
                    }
                }
                Output::Request(ReceiverRequest::VerifyObject { object }) => {
                    // Mostly accepted; one in four refused, to walk the
                    // failure paths too.
                    verdict = verdict.wrapping_add(1);
                    let result = if !verdict.is_multiple_of(4) {
                        Ok(())
                    } else {
                        Err(FailReason::HashMismatch)
                    };
                    r.handle_object_verified(now, object, result);
                }
                Output::Request(ReceiverRequest::Settle { .. }) => r.handle_settled(now, None),
                Output::Event(ReceiverEvent::Finished(o)) => outcome = Some(o),
                Output::Event(_) => {}
            },
        );
    }
    outcome
}

/// A sender of a small push fed a script of feedback; answers its reads.
pub fn sender_target(data: &[u8]) {
    let t0 = Instant::now();
    let mut config = SenderConfig::new(SessionId(0x5e55));
    config.rate = mdp_proto::RateMode::Fixed(100_000_000);
    config.expected_receivers = 2;
    config.wait = Duration::from_millis(200);
    config.timeout = Duration::from_secs(30);
    let Some((&flags, data)) = data.split_first() else {
        return;
    };
    if flags & 0x80 != 0 {
        config.auth = Some(AuthConfig::new(key(), t0, 1_800_000_000_000_000));
    }
    if flags & 0x40 != 0 {
        // Receivers known by key: every REGISTER and STATUS goes through
        // the signature check, every NACK through admission.
        let web1 = mdp_proto::identity::Identity::from_seed([9; 32]).public();
        config.expected_keys = vec![("web1".into(), web1)];
        config.expected_names = vec!["web1".into()];
        if flags & 0x80 == 0 && flags & 0x20 != 0 {
            // Encrypted: KEYREQs reach the key agreement, and feedback
            // must open with the feedback key of the node it names.
            config.identity = Some(mdp_proto::identity::Identity::from_seed([1; 32]));
            config.encryption = Some(mdp_proto::sender::EncryptionConfig {
                aead: mdp_proto::crypto::Aead::Aes256Gcm,
                secrets: mdp_proto::crypto::SecretSource::new([2; 32]),
            });
        }
    }
    let files = [("a", 5000u64), ("d/b", 70_000), ("e", 0)];
    let mut entries = vec![Entry {
        path: "d".into(),
        kind: EntryKind::Dir,
        mode: 0o755,
        mtime_secs: 0,
        mtime_nanos: 0,
        owner: 0,
    }];
    for (p, size) in files {
        entries.push(Entry {
            path: p.into(),
            kind: EntryKind::File {
                size,
                hash: [1; 32],
                // As many as the coding makes blocks (their values do not
                // matter to the sender).
                blocks: mdp_proto::manifest::block_hashes(
                    &vec![0; size as usize],
                    &config.coding(),
                ),
            },
            mode: 0o644,
            mtime_secs: 0,
            mtime_nanos: 0,
            owner: 0,
        });
    }
    let mut s = Sender::new(config, Manifest::new(entries), t0).expect("valid settings");
    let mut now = t0;
    // A bound on what one step may send: no input can hang the target.
    let mut drain = Drain::with_batch_limit(10_000);
    for step in steps(data) {
        match step {
            Step::Datagram(d) => s.handle_datagram(now, d),
            Step::Advance(d) => now += d,
            Step::Timer => s.handle_timeout(now),
        }
        let _ = drain.sender(
            &mut s,
            now,
            |_| {},
            |s, ev| {
                if let Output::Request(SenderRequest::ReadBlock {
                    object, block, len, ..
                }) = ev
                {
                    assert!(len <= 16 << 20, "a read beyond the block size");
                    s.handle_block(now, object, block, vec![0; len]);
                }
            },
        );
    }
}

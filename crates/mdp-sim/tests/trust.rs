//! Signed pushes (docs/PROTOCOL.md §5a): a receiver with a trust list takes
//! only a push signed by one of its keys, recently; anything else creates
//! no session, sends no feedback and is reported once.

use mdp_proto::identity::{Identity, PublicKey};
use mdp_proto::receiver::Untrusted;
use mdp_proto::wire::{Control, Packet};
use mdp_sim::{Content, SimConfig, World};
use std::time::Duration;

fn key(seed: u8) -> Identity {
    Identity::from_seed([seed; 32])
}

fn config(signer: Option<Identity>, trust: Vec<PublicKey>) -> SimConfig {
    let mut c = SimConfig::new(2, 11);
    c.sender.symbol_size = 256;
    c.sender.block_k = 16;
    c.sender.parity = 8;
    c.sender.identity = signer;
    c.sender.wait = Duration::from_millis(300);
    c.sender.timeout = Duration::from_secs(3);
    c.trust = trust;
    c
}

fn content() -> Content {
    Content::new(
        &["d"],
        vec![("d/f".into(), Content::random_bytes(20_000, 3))],
    )
}

/// Runs the push; returns the world at its end.
fn push(c: SimConfig) -> World {
    let mut w = World::new(c, content());
    w.record_sent();
    assert!(
        w.drive_until(|w| w.sender().is_finished()),
        "the sender ends"
    );
    w
}

/// True when receiver `i` sent any feedback (REGISTER, STATUS, NACK...).
fn sent_feedback(w: &World) -> bool {
    w.sent().iter().any(|s| {
        matches!(
            s.packet(),
            Some(Packet::Control {
                message: Control::Register(_) | Control::Status(_) | Control::Nack(_),
                ..
            })
        )
    })
}

fn refused(w: &World, why: impl Fn(&Untrusted) -> bool) {
    for i in 0..2 {
        let r = w.receiver(i);
        assert_eq!(r.session_id(), None, "receiver {i} joined");
        assert!(r.stats().untrusted > 0, "receiver {i} counted nothing");
        assert!(w.receiver_files(i).is_empty(), "receiver {i} holds files");
        let reasons = w.receiver_untrusted(i);
        assert_eq!(reasons.len(), 1, "receiver {i}: reported once: {reasons:?}");
        assert!(why(&reasons[0]), "receiver {i}: {:?}", reasons[0]);
    }
    assert!(!sent_feedback(w), "a refused push drew feedback");
    let report = w.sender().report().expect("a report");
    assert!(!report.success);
    assert_eq!(report.receivers.len(), 0, "nobody registered");
}

#[test]
fn a_push_signed_by_a_trusted_key_is_delivered() {
    let w = push(config(Some(key(1)), vec![key(1).public()]));
    assert!(w.sender().report().unwrap().success);
    for i in 0..2 {
        assert_eq!(w.receiver(i).stats().untrusted, 0);
        assert_eq!(w.receiver_files(i).len(), 1);
    }
}

#[test]
fn a_receiver_that_trusts_keys_refuses_an_unsigned_push() {
    let w = push(config(None, vec![key(1).public()]));
    refused(&w, |why| *why == Untrusted::Unsigned);
}

#[test]
fn a_push_signed_by_an_untrusted_key_is_refused_and_named() {
    let w = push(config(Some(key(2)), vec![key(1).public()]));
    let fp = key(2).public().fingerprint();
    refused(
        &w,
        |why| matches!(why, Untrusted::UnknownSigner { fingerprint } if *fingerprint == fp),
    );
}

#[test]
fn one_of_several_trusted_keys_is_enough_so_keys_can_be_rotated() {
    let w = push(config(Some(key(2)), vec![key(1).public(), key(2).public()]));
    assert!(w.sender().report().unwrap().success);
}

#[test]
fn a_signature_made_long_ago_is_refused_as_a_replay() {
    let mut c = config(Some(key(1)), vec![key(1).public()]);
    // The receivers' clocks are 10 minutes ahead of the signing time.
    c.receiver_clock_ahead = Duration::from_secs(600);
    let w = push(c);
    refused(
        &w,
        |why| matches!(why, Untrusted::Stale { skew_secs } if *skew_secs == 600),
    );
}

#[test]
fn without_a_trust_list_unsigned_pushes_are_taken_as_before() {
    let w = push(config(None, Vec::new()));
    assert!(w.sender().report().unwrap().success);
}

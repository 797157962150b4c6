//! Signed pushes (docs/PROTOCOL.md §5a): a receiver with a trust list takes
//! only a push signed by one of its keys, recently; anything else creates
//! no session, sends no feedback and is reported once.

use mdp_proto::identity::{Identity, PublicKey};
use mdp_proto::receiver::{SessionError, Untrusted};
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
        assert_eq!(
            w.receiver_settle_links(i),
            Some(true),
            "a signed push places its links"
        );
    }
}

#[test]
fn an_insecure_receiver_places_an_unsigned_pushs_files_but_not_its_links() {
    // No trust list: the simulated receivers take any push (--insecure).
    let w = push(config(None, vec![]));
    assert!(w.sender().report().unwrap().success);
    for i in 0..2 {
        assert_eq!(w.receiver_files(i).len(), 1);
        assert_eq!(w.receiver_settle_links(i), Some(false), "receiver {i}");
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
fn with_no_key_trusted_a_receiver_refuses_every_push() {
    for signer in [None, Some(key(1))] {
        let mut c = config(signer, Vec::new());
        c.receiver_setup = Some(|_, rc| rc.insecure = false);
        let w = push(c);
        refused(&w, |why| *why == Untrusted::NoTrust);
    }
}

#[test]
fn an_insecure_receiver_takes_unsigned_pushes() {
    let mut c = config(None, Vec::new());
    c.receiver_setup = Some(|_, rc| rc.insecure = true);
    let w = push(c);
    assert!(w.sender().report().unwrap().success);
}

/// Receivers known by key: `r0` and `r1` with keys 10 and 11.
fn keyed_group(c: &mut SimConfig) {
    c.receiver_setup = Some(|i, rc| rc.identity = Some(Identity::from_seed([10 + i as u8; 32])));
    c.sender.expected_keys = vec![
        ("r0".into(), key(10).public()),
        ("r1".into(), key(11).public()),
    ];
    c.sender.expected_names = vec!["r0".into(), "r1".into()];
}

/// A REGISTER then a complete STATUS in `name`'s name, as a forger sends
/// them (from receiver 0's link), signed by `signer` if given.
fn forge_confirmation(
    w: &mut World,
    session: mdp_proto::SessionId,
    name: &str,
    signer: Option<&Identity>,
) {
    use mdp_proto::wire::{self, Echo, Register, Status};
    use mdp_proto::NodeId;
    let node = NodeId(0xf0f0);
    let mut messages = [
        Control::Register(Register {
            node,
            name: name.into(),
            echo: Echo::default(),
            have: vec![],
            have_blocks: vec![],
            more: false,
            signed: None,
        }),
        Control::Status(Status {
            node,
            name: name.into(),
            echo: Echo::default(),
            complete: true,
            verified: 1,
            missing: vec![],
            failed: vec![],
            hook: None,
            signed: None,
        }),
    ];
    for m in &mut messages {
        if let Some(id) = signer {
            wire::sign_feedback(session, m, id);
        }
        let mut buf = Vec::new();
        wire::write_control(&mut buf, session, m);
        w.inject(mdp_sim::Node::Receiver(0), &buf);
    }
}

#[test]
fn receivers_known_by_key_confirm_with_signed_feedback() {
    let mut c = config(None, Vec::new());
    keyed_group(&mut c);
    let w = push(c);
    let report = w.sender().report().unwrap();
    assert!(report.success, "{report:?}");
    assert_eq!(report.confirmed, 2);
    assert_eq!(w.sender().stats().unadmitted, 0);
}

#[test]
fn feedback_forged_in_an_expected_name_does_not_confirm_it() {
    for forger_key in [None, Some(key(99))] {
        let mut c = config(None, Vec::new());
        keyed_group(&mut c);
        // r1 dies before the push: only a forger speaks in its name.
        c.fates = vec![mdp_sim::Fate::Normal, mdp_sim::Fate::Killed(Duration::ZERO)];
        let session = c.sender.session;
        let mut w = World::new(c, content());
        // While the sender waits for registrations, and again at its end.
        w.drive_for(Duration::from_millis(50));
        forge_confirmation(&mut w, session, "r1", forger_key.as_ref());
        assert!(w.drive_until(|w| w.sender().is_finished()));
        let report = w.sender().report().unwrap();
        assert!(!report.success, "forged by {forger_key:?}: {report:?}");
        let r1 = report.receivers.iter().find(|r| r.name == "r1").unwrap();
        assert_eq!(
            r1.verdict,
            mdp_proto::Verdict::NeverRegistered,
            "{report:?}"
        );
        assert!(
            w.sender().stats().unadmitted >= 2,
            "{:?}",
            w.sender().stats()
        );
    }
}

/// A sender killed mid-push and run again signs its new push later with the
/// same key: receivers give the dead push up at once (after 1 s of
/// silence, not 2 s) and take the new one.
#[test]
fn a_rerun_signed_by_the_same_key_takes_over_its_dead_push_at_once() {
    let k = key(1);
    let mut c = config(Some(k.clone()), vec![k.public()]);
    c.sender.timeout = Duration::from_secs(10);
    c.sender.wait = Duration::from_secs(3);
    // 600 kB at 200 Mbit/s take ~25 ms: killed at 10 ms, run again 500 ms
    // later (its ANNOUNCEs begin at once).
    c.sender_crash = Some((Duration::from_millis(10), Duration::from_millis(510)));
    let content = Content::new(
        &["d"],
        vec![("d/f".into(), Content::random_bytes(600_000, 3))],
    );
    let r = World::new(c, content).run();
    let report = r.report.expect("the rerun finished");
    assert!(report.success, "{:?}", report.problem);
    for (i, rx) in r.receivers.iter().enumerate() {
        assert_eq!(rx.outcomes.len(), 2, "r{i}: {:?}", rx.outcomes);
        match &rx.outcomes[0].problem {
            Some(SessionError::Superseded { silent }) => assert!(
                *silent < Duration::from_millis(1500),
                "r{i} waited {silent:?} for its dead push"
            ),
            other => panic!("r{i}: {other:?}"),
        }
        assert!(rx.outcomes[1].complete, "r{i}");
    }
}

/// A recording of a push signed before the newest push of the same key
/// this receiver took (here: one second before it) is refused as a
/// replay, even though the receiver never saw that push: taking it would
/// roll the files back.
#[test]
fn a_push_signed_before_the_newest_one_taken_from_its_key_is_refused() {
    let k = key(1);
    let mut c = config(Some(k.clone()), vec![k.public()]);
    // The world's clocks start at this Unix time (world.rs).
    const START_US: u64 = 1_800_000_000_000_000;
    c.sender.signed_at_us = START_US - 1_000_000;
    c.receiver_setup = Some(|_, rc| rc.raise_signed_floor(key(1).public().to_bytes(), START_US));
    let w = push(c);
    assert!(!w.sender().report().unwrap().success);
    refused(&w, |u| matches!(u, Untrusted::Replayed));
}

/// A receiver's push hook runs between settling and confirming, so its
/// outcome rides in the confirmation: the sender's report names the hook
/// that failed, per receiver, and the files still count as delivered. A
/// push taken unsigned runs no hook, and its confirmation says none ran.
#[test]
fn each_receivers_hook_outcome_reaches_the_senders_report() {
    use mdp_proto::wire::HookOutcome;
    let mut c = config(Some(key(1)), vec![key(1).public()]);
    c.receivers = 3;
    c.sender.expected_receivers = 3;
    c.hooks = vec![Some(HookOutcome::Succeeded), Some(HookOutcome::Exited(3))];
    let w = push(c);
    let report = w.sender().report().unwrap();
    assert!(report.success, "{:?}", report.problem);
    let hook_of = |name: &str| {
        report
            .receivers
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("{name} in {:?}", report.receivers))
            .hook
    };
    assert_eq!(hook_of("r0"), Some(HookOutcome::Succeeded));
    assert_eq!(hook_of("r1"), Some(HookOutcome::Exited(3)));
    assert_eq!(hook_of("r2"), None, "r2 has no hook");
    let failed: Vec<&str> = report.hook_failures().map(|r| r.name.as_str()).collect();
    assert_eq!(failed, ["r1"]);
    for i in 0..3 {
        assert_eq!(w.receiver_files(i).len(), 1, "receiver {i}");
    }

    // Unsigned, taken without a trust list: no hook may run.
    let mut c = config(None, Vec::new());
    c.hooks = vec![Some(HookOutcome::Exited(1)), Some(HookOutcome::Exited(1))];
    let w = push(c);
    let report = w.sender().report().unwrap();
    assert!(report.success, "{:?}", report.problem);
    assert!(report.receivers.iter().all(|r| r.hook.is_none()));
}

/// A receiver whose caller cannot make the tree final (a flush failed)
/// does not confirm: the sender reports it failed, with every file it had
/// placed, and its own outcome says why; the others confirm.
#[test]
fn a_receiver_that_cannot_settle_its_tree_is_reported_failed_not_confirmed() {
    use mdp_proto::receiver::SessionError;
    use mdp_proto::Verdict;
    let mut c = config(Some(key(1)), vec![key(1).public()]);
    c.settle_fails = vec![1];
    let w = push(c);
    let report = w.sender().report().unwrap();
    assert!(!report.success);
    let verdict = |name: &str| {
        report
            .receivers
            .iter()
            .find(|r| r.name == name)
            .map(|r| (r.verdict.clone(), r.failed.len()))
            .unwrap()
    };
    assert_eq!(verdict("r0"), (Verdict::Confirmed, 0));
    assert_eq!(verdict("r1"), (Verdict::Failed, 1));
    let outcome = w.receiver_outcome(1).expect("r1 ended");
    assert!(!outcome.complete);
    assert!(
        matches!(outcome.problem, Some(SessionError::NotSettled(_))),
        "{:?}",
        outcome.problem
    );
}

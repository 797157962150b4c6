//! Pushes through a relay (mdp_sim::relayed): the hosts behind it get the
//! origin's push, signed by the origin, and the origin's report names each
//! of them with the relay it came through.

use mdp_proto::wire::{self, Control};
use mdp_proto::NodeId;
use mdp_sim::relayed::{self, RelayedConfig};
use mdp_sim::{Content, Node, SimConfig, World};
use std::time::Duration;

fn content(len: usize) -> Content {
    Content::new(
        &["site"],
        vec![
            ("site/big.bin".into(), Content::random_bytes(len, 3)),
            ("site/small.txt".into(), b"hello through a relay\n".to_vec()),
        ],
    )
}

#[test]
fn a_push_through_a_relay_reaches_the_hosts_behind_it_and_the_origin_names_each_with_its_relay() {
    let c = content(2 << 20);
    let cfg = RelayedConfig {
        loss: 0.03,
        ..RelayedConfig::default()
    };
    let r = relayed::run(&cfg, &c);
    let report = r.origin.as_ref().expect("the origin finished");
    let v = relayed::verdicts(report);
    eprintln!("{v:?} in {:?}", r.elapsed);
    assert!(report.success, "{v:?}");
    assert_eq!(v.len(), 2 + 1 + 3, "{v:?}");
    for b in 0..3 {
        assert_eq!(
            v[&format!("b{b}")],
            ("confirmed".into(), Some("relay".into()))
        );
    }
    for d in 0..2 {
        assert_eq!(v[&format!("d{d}")], ("confirmed".into(), None));
    }
    assert_eq!(v["relay"], ("confirmed".into(), None));
    assert!(
        r.behind_complete.iter().all(|c| *c),
        "{:?}",
        r.behind_complete
    );
    assert!(r.direct_complete.iter().all(|c| *c));
    // The relay's own receivers' losses are repaired by the relay: what
    // crossed into it is about one copy of the push and its own repairs.
    let pushed = c.total_bytes() as f64;
    let up = r.relay_upstream_bytes as f64 / pushed;
    eprintln!("upstream link: {up:.3} bytes per byte");
    assert!(up < 1.25, "{up}");
    let relay = r.relay.as_ref().expect("the relay's push finished");
    assert!(relay.success);
}

#[test]
fn a_relay_that_dies_mid_push_is_reported_with_the_hosts_behind_it_and_the_others_finish() {
    let c = content(32 << 20);
    let cfg = RelayedConfig {
        relay_dies_at: Some(Duration::from_millis(40)),
        ..RelayedConfig::default()
    };
    let r = relayed::run(&cfg, &c);
    let report = r.origin.as_ref().expect("the origin finished");
    let v = relayed::verdicts(report);
    eprintln!("{v:?} in {:?}", r.elapsed);
    assert!(!report.success);
    assert!(r.elapsed < Duration::from_secs(30), "{:?}", r.elapsed);
    for d in 0..2 {
        assert_eq!(v[&format!("d{d}")], ("confirmed".into(), None));
    }
    assert_eq!(v["relay"].0, "dropped: silent");
    for b in 0..3 {
        assert_eq!(
            v[&format!("b{b}")],
            ("dropped: silent".into(), Some("relay".into()))
        );
    }
}

#[test]
fn a_relay_cannot_alter_what_it_passes_on() {
    let c = content(256 << 10);
    let cfg = RelayedConfig {
        relay_tampers: true,
        limit: Duration::from_secs(20),
        ..RelayedConfig::default()
    };
    let r = relayed::run(&cfg, &c);
    // Nothing the relay altered was taken: no host behind it holds a file.
    assert!(r.behind_complete.iter().all(|c| !*c));
    for o in r.behind_outcomes.iter().flatten() {
        assert_eq!(o.verified, 0, "{o:?}");
    }
    let report = r.origin.as_ref().expect("the origin finished");
    let v = relayed::verdicts(report);
    eprintln!("{v:?}");
    assert!(!report.success);
    for b in 0..3 {
        assert_ne!(v[&format!("b{b}")].0, "confirmed");
    }
    assert!(r.direct_complete.iter().all(|c| *c));
}

/// A confirming STATUS of a receiver behind a relay, as a RELAY from
/// `relay`.
fn relayed_status(
    session: mdp_proto::SessionId,
    relay: NodeId,
    host: NodeId,
    name: &str,
) -> Vec<u8> {
    let mut d = Vec::new();
    wire::write_control(
        &mut d,
        session,
        &Control::Relay(wire::Relay {
            node: relay,
            message: wire::Relayed::Status(wire::Status {
                node: host,
                name: name.into(),
                echo: wire::Echo::default(),
                complete: true,
                verified: 1,
                missing: vec![],
                failed: vec![],
                hook: None,
                signed: None,
            }),
        }),
    );
    d
}

#[test]
fn a_relay_message_speaks_only_from_a_registered_receiver_and_never_for_one_heard_directly() {
    let c = SimConfig::new(2, 7);
    let session = c.sender.session;
    let mut w = World::new(c, content(64 << 10));
    assert!(w.drive_until(|w| w.sender().peer_count() == 2));
    let (r0, r1) = (w.receiver(0).node(), w.receiver(1).node());
    // From a node id that never registered: not a relay of this push.
    w.deliver(
        Node::Sender,
        &relayed_status(session, NodeId(0xbad), NodeId(77), "ghost"),
    );
    // From a registered receiver, in the name of another one heard
    // directly: a relay cannot take a receiver over.
    w.deliver(Node::Sender, &relayed_status(session, r1, r0, "r0"));
    // From a registered receiver, for a host behind it: counted.
    w.deliver(
        Node::Sender,
        &relayed_status(session, r1, NodeId(78), "behind"),
    );
    let result = w.run();
    let report = result.report.as_ref().expect("finished");
    let v = relayed::verdicts(report);
    assert!(!v.contains_key("ghost"), "{v:?}");
    assert_eq!(v["r0"], ("confirmed".into(), None), "{v:?}");
    assert_eq!(
        v["behind"],
        ("confirmed".into(), Some("r1".into())),
        "{v:?}"
    );
}

//! Narrow tests of single protocol rules (docs/PROTOCOL.md §6–7): each
//! steps a small world, drops or injects chosen datagrams, and asserts on
//! what went over the wire or on a machine's state mid-run.
//!
//! The push is one file of 40 symbols of 256 bytes: blocks of 16, 16 and 8
//! source symbols (object 1, blocks 0, 1, 2), lossless 1 ms links unless a
//! test drops something.

use mdp_proto::wire::{
    self, Ack, AckState, Control, DataHeader, Done, Echo, Nack, NackEntry, Packet, FLAG_REPAIR,
};
use mdp_proto::{BlockNumber, NodeId, ObjectId, SessionId};
use mdp_sim::{Content, Node, Sent, SimConfig, World};
use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::time::Duration;

/// Source symbols per full block.
const K: u16 = 16;
const FILE: ObjectId = ObjectId(1);

fn config(receivers: usize) -> SimConfig {
    let mut c = SimConfig::new(receivers, 7);
    c.sender.symbol_size = 256;
    c.sender.block_k = K;
    c.sender.parity = 8;
    c
}

fn content() -> Content {
    Content::new(&[], vec![("f".into(), Content::random_bytes(10_000, 1))])
}

fn world(config: SimConfig) -> World {
    let mut w = World::new(config, content());
    w.record_sent();
    w
}

fn data(s: &Sent) -> Option<DataHeader> {
    match s.packet()? {
        Packet::Data { header, .. } => Some(header),
        _ => None,
    }
}

fn control(s: &Sent) -> Option<Control> {
    match s.packet()? {
        Packet::Control { message, .. } => Some(message),
        _ => None,
    }
}

/// True for a first transmission (not a repair) of `(FILE, block, esi)`
/// with `esi` among `esis`.
fn first_tx_of(datagram: &[u8], block: u32, esis: &[u16]) -> bool {
    match wire::parse(datagram) {
        Ok(Packet::Data { header: h, .. }) => {
            h.flags & FLAG_REPAIR == 0
                && h.object == FILE
                && h.block.0 == block
                && esis.contains(&h.esi.0)
        }
        _ => false,
    }
}

/// The NACKs `from` sent, with when.
fn nacks(w: &World, from: Node) -> Vec<(Duration, Nack)> {
    w.sent()
        .iter()
        .filter(|s| s.from == from && !s.injected)
        .filter_map(|s| match control(s)? {
            Control::Nack(n) => Some((s.at, n)),
            _ => None,
        })
        .collect()
}

/// The ESIs of the repair symbols the sender sent for `(FILE, block)`.
fn repairs(w: &World, block: u32) -> Vec<u16> {
    w.sent()
        .iter()
        .filter(|s| s.from == Node::Sender)
        .filter_map(data)
        .filter(|h| h.flags & FLAG_REPAIR != 0 && h.object == FILE && h.block.0 == block)
        .map(|h| h.esi.0)
        .collect()
}

/// When the sender first sent a datagram matching `what`.
fn first_sent(w: &World, what: impl Fn(&Sent) -> bool) -> Option<Duration> {
    w.sent()
        .iter()
        .find(|s| s.from == Node::Sender && what(s))
        .map(|s| s.at)
}

fn run_to_end(w: &mut World) {
    assert!(w.drive_until(World::is_over), "the push did not end");
}

fn nack_datagram(session: SessionId, need: u16, missing: Vec<u16>) -> Vec<u8> {
    let mut d = Vec::new();
    wire::write_control(
        &mut d,
        session,
        &Control::Nack(Nack {
            node: NodeId(0xbad),
            echo: Echo::default(),
            loss: 0,
            entries: vec![NackEntry {
                object: FILE,
                block: BlockNumber(0),
                need,
                missing,
            }],
        }),
    );
    d
}

/// §6 "Source repair for a lone receiver".
#[test]
fn a_lone_receivers_nack_naming_two_source_symbols_gets_exactly_those_two_back() {
    let mut w = world(config(1));
    w.drop_when(|_, to, d| to == Node::Receiver(0) && first_tx_of(d, 0, &[3, 5]));
    run_to_end(&mut w);
    let entries: Vec<NackEntry> = nacks(&w, Node::Receiver(0))
        .into_iter()
        .flat_map(|(_, n)| n.entries)
        .collect();
    assert_eq!(
        entries,
        vec![NackEntry {
            object: FILE,
            block: BlockNumber(0),
            need: 2,
            missing: vec![3, 5],
        }]
    );
    assert_eq!(repairs(&w, 0), vec![3, 5], "exactly the named sources");
    assert!(w.receiver_outcome(0).unwrap().complete);
    assert_eq!(w.receiver(0).stats().blocks_decoded, 0);
}

/// §6 "In a group the sender never starts a source round".
#[test]
fn receivers_that_lost_different_symbols_are_repaired_with_parity() {
    let mut w = world(config(2));
    w.drop_when(|_, to, d| match to {
        Node::Receiver(0) => first_tx_of(d, 0, &[1]),
        Node::Receiver(1) => first_tx_of(d, 0, &[2]),
        _ => false,
    });
    // A NACK naming the one source symbol receiver 0 lacks, as a lone
    // receiver's would: in a group the sender still answers with parity.
    assert!(w.drive_until(|w| first_sent(w, |s| first_tx_of(&s.datagram, 1, &[0])).is_some()));
    let session = w.receiver(0).session_id().expect("joined");
    let mut nack = Vec::new();
    wire::write_control(
        &mut nack,
        session,
        &Control::Nack(Nack {
            node: w.receiver(0).node(),
            echo: Echo::default(),
            loss: 0,
            entries: vec![NackEntry {
                object: FILE,
                block: BlockNumber(0),
                need: 1,
                missing: vec![1],
            }],
        }),
    );
    w.deliver(Node::Sender, &nack);
    run_to_end(&mut w);
    let esis = repairs(&w, 0);
    assert!(!esis.is_empty(), "no repair");
    assert!(
        esis.iter().all(|&e| e >= K),
        "source symbols resent to a group: {esis:?}"
    );
    for i in 0..2 {
        assert!(w.receiver_outcome(i).unwrap().complete, "receiver {i}");
        // In a group, NACKs name no source symbols.
        for (_, n) in nacks(&w, Node::Receiver(i)) {
            assert!(n.entries.iter().all(|e| e.missing.is_empty()));
        }
    }
}

/// Steps a lone receiver that lost source symbols 3 and 5 of block 0 to
/// the moment block 0 became a NACK candidate, hands it `overheard` (a NACK
/// of another node), and returns whether it NACKed block 0 within the next
/// 5 ms (its back-off is below 2 ms; a hold-off lasts at least 8 ms).
fn nacks_soon_after_overhearing(overheard: Option<(u16, Vec<u16>)>) -> bool {
    let mut c = config(1);
    c.sender.initial_grtt = Duration::from_millis(2);
    let mut w = world(c);
    w.drop_when(|_, to, d| to == Node::Receiver(0) && first_tx_of(d, 0, &[3, 5]));
    // Block 0 is passed once the first symbol of block 1 arrived.
    assert!(w.drive_until(|w| {
        first_sent(w, |s| first_tx_of(&s.datagram, 1, &[0]))
            .is_some_and(|at| w.elapsed() >= at + Duration::from_millis(1))
    }));
    let before = nacks(&w, Node::Receiver(0)).len();
    assert_eq!(before, 0, "NACKed before the candidate appeared");
    if let Some((need, missing)) = overheard {
        let session = w.receiver(0).session_id().expect("joined");
        w.deliver(Node::Receiver(0), &nack_datagram(session, need, missing));
    }
    w.drive_for(Duration::from_millis(5));
    nacks(&w, Node::Receiver(0))
        .iter()
        .any(|(_, n)| n.entries.iter().any(|e| e.block == BlockNumber(0)))
}

/// §7 "Hold-off": an overheard NACK whose need covers this receiver's
/// (`mine ≤ need + need/4`) holds its pending NACK off.
#[test]
fn an_overheard_nack_asking_as_much_holds_off_a_pending_one() {
    assert!(nacks_soon_after_overhearing(None), "no NACK without one");
    assert!(!nacks_soon_after_overhearing(Some((2, vec![]))));
    assert!(!nacks_soon_after_overhearing(Some((3, vec![]))));
    assert!(!nacks_soon_after_overhearing(Some((2, vec![3, 5]))));
}

/// §7 "Hold-off": a smaller overheard NACK, or one whose `missing` leaves
/// out a symbol this receiver lacks, does not.
#[test]
fn an_overheard_smaller_or_narrower_nack_does_not_hold_off_a_pending_one() {
    assert!(nacks_soon_after_overhearing(Some((1, vec![]))));
    assert!(nacks_soon_after_overhearing(Some((1, vec![3]))));
}

/// §7 "Passed blocks": a block lost whole at the end of the data is passed
/// only by the FLUSH, which draws one NACK for it.
#[test]
fn a_flush_to_a_receiver_missing_its_last_block_draws_exactly_one_nack() {
    let mut w = world(config(1));
    w.drop_when(|_, to, d| to == Node::Receiver(0) && first_tx_of(d, 2, &[0, 1, 2, 3, 4, 5, 6, 7]));
    run_to_end(&mut w);
    let flush = first_sent(&w, |s| matches!(control(s), Some(Control::Flush(_)))).expect("a FLUSH");
    let nacks = nacks(&w, Node::Receiver(0));
    assert_eq!(nacks.len(), 1, "{nacks:?}");
    let (at, nack) = &nacks[0];
    assert!(*at > flush, "NACKed before the FLUSH");
    assert_eq!(nack.entries.len(), 1);
    assert_eq!(
        (nack.entries[0].block, nack.entries[0].need),
        (BlockNumber(2), 8)
    );
    assert!(w.receiver_outcome(0).unwrap().complete);
}

/// §6 phase 1 / §7: a receiver says nothing until it heard an ANNOUNCE,
/// then REGISTERs, and the sender counts it.
#[test]
fn a_receiver_registers_only_after_an_announce() {
    let mut w = world(config(1));
    let deaf = Rc::new(Cell::new(true));
    let d2 = deaf.clone();
    w.drop_when(move |_, to, d| {
        d2.get()
            && to == Node::Receiver(0)
            && matches!(
                wire::parse(d),
                Ok(Packet::Control {
                    message: Control::Announce(_),
                    ..
                })
            )
    });
    w.drive_for(Duration::from_millis(60));
    assert!(first_sent(&w, |s| matches!(control(s), Some(Control::Announce(_)))).is_some());
    assert!(
        w.sent().iter().all(|s| s.from != Node::Receiver(0)),
        "spoke before any ANNOUNCE"
    );
    assert_eq!(w.receiver(0).session_id(), None);
    assert_eq!(w.sender().peer_count(), 0);
    deaf.set(false);
    let heard_from = w.elapsed();
    assert!(w.drive_until(|w| w.sender().peer_count() == 1));
    let first = w
        .sent()
        .iter()
        .find(|s| s.from == Node::Receiver(0))
        .expect("it spoke");
    assert!(matches!(control(first), Some(Control::Register(_))));
    let announce = w
        .sent()
        .iter()
        .find(|s| s.at >= heard_from && matches!(control(s), Some(Control::Announce(_))))
        .expect("an ANNOUNCE it heard");
    assert!(first.at > announce.at);
}

/// §7 "End": DONE ends a receiver's session at once, even mid-push.
#[test]
fn a_done_ends_the_receiver_at_once() {
    let mut w = world(config(1));
    assert!(w.drive_until(|w| w.receiver(0).stats().blocks_completed >= 1));
    let session = w.receiver(0).session_id().expect("joined");
    assert!(!w.receiver(0).is_finished());
    let mut done = Vec::new();
    wire::write_control(&mut done, session, &Control::Done(Done { success: false }));
    w.deliver(Node::Receiver(0), &done);
    assert!(w.receiver(0).is_finished());
    let outcome = w.receiver_outcome(0).expect("an outcome");
    assert_eq!(outcome.session, session);
    assert!(!outcome.complete, "ended before its file arrived");
}

/// §7 "End": a complete receiver ends at the `Ack { Confirmed }` for it,
/// without waiting for DONE (here the sender still waits for another
/// receiver, cut off once it registered, and sends no DONE yet).
#[test]
fn a_confirmed_ack_ends_a_complete_receiver_without_done() {
    let mut w = world(config(2));
    let cut = Rc::new(Cell::new(false));
    let cut2 = cut.clone();
    w.drop_when(move |from, to, d| {
        let done = matches!(
            wire::parse(d),
            Ok(Packet::Control {
                message: Control::Done(_),
                ..
            })
        );
        (to == Node::Receiver(0) && done)
            || (cut2.get() && (from == Node::Receiver(1) || to == Node::Receiver(1)))
    });
    assert!(w.drive_until(|w| w.sender().peer_count() == 2));
    cut.set(true);
    assert!(w.drive_until(|w| w.receiver(0).is_finished()));
    assert!(
        w.elapsed() < Duration::from_secs(1),
        "ended by its idle timeout"
    );
    assert!(!w.sender().is_finished());
    assert!(w.receiver_outcome(0).unwrap().complete);
    let confirmed = Ack {
        node: w.receiver(0).node(),
        state: AckState::Confirmed,
    };
    assert!(
        w.sent().iter().any(|s| match control(s) {
            Some(Control::Flush(f)) => f.acked.contains(&confirmed),
            Some(Control::Announce(a)) => a.acked.contains(&confirmed),
            _ => false,
        }),
        "no Ack {{ Confirmed }} went out"
    );
}

/// §7 "End": a receiver stopped by its caller after it confirmed, but
/// before it heard the sender acknowledge that (the sender may already have
/// exited on the confirmation), ends complete, so its caller reports the
/// push and runs its hooks; one stopped mid-push is left as it is.
#[test]
fn a_receiver_stopped_after_it_confirmed_ends_complete() {
    let mut w = world(config(1));
    // From the first complete STATUS on, nothing more reaches the receiver.
    let confirmed = Rc::new(Cell::new(false));
    let seen = confirmed.clone();
    w.drop_when(move |from, to, d| {
        if from == Node::Receiver(0) {
            if let Ok(Packet::Control {
                message: Control::Status(s),
                ..
            }) = wire::parse(d)
            {
                seen.set(seen.get() || s.complete);
            }
        }
        seen.get() && to == Node::Receiver(0)
    });
    assert!(w.drive_until(|w| w.receiver(0).stats().blocks_completed >= 1));
    assert!(!confirmed.get(), "the push is too small to stop mid-way");
    let now = w.now();
    w.receiver_mut(0).handle_shutdown(now);
    assert!(!w.receiver(0).is_finished(), "stopped mid-push: left as is");
    assert!(w.drive_until(|w| confirmed.get() && w.sender().is_finished()));
    assert!(!w.receiver(0).is_finished(), "the acknowledgement was cut");
    let now = w.now();
    w.receiver_mut(0).handle_shutdown(now);
    assert!(w.receiver(0).is_finished());
    w.step(); // drains the receiver's events
    let outcome = w.receiver_outcome(0).expect("an outcome");
    assert!(outcome.complete, "{outcome:?}");
    assert!(outcome.problem.is_none(), "{outcome:?}");
    assert_eq!(w.receiver_files(0).len(), 1);
}

/// §1 / §7: datagrams of another session are ignored.
#[test]
fn a_datagram_of_another_session_is_ignored() {
    let mut w = world(config(1));
    assert!(w.drive_until(|w| w.receiver(0).stats().blocks_completed >= 1));
    let session = w.receiver(0).session_id().expect("joined");
    let other = SessionId(session.0 ^ 0xffff);
    let ignored = w.receiver(0).stats().ignored;
    let progress = w.receiver(0).progress();
    let said = w.sent().len();
    let mut d = Vec::new();
    let header = DataHeader {
        session: other,
        object: FILE,
        block: BlockNumber(2),
        esi: mdp_proto::SymbolId(0),
        flags: 0,
        seq: 0,
    };
    wire::write_data(&mut d, &header, &[0; 256]);
    w.deliver(Node::Receiver(0), &d);
    let mut done = Vec::new();
    wire::write_control(&mut done, other, &Control::Done(Done { success: false }));
    w.deliver(Node::Receiver(0), &done);
    let r = w.receiver(0);
    assert_eq!(r.stats().ignored, ignored + 2);
    assert_eq!(r.session_id(), Some(session));
    assert!(!r.is_finished(), "another session's DONE ended this one");
    assert_eq!(r.progress(), progress);
    assert_eq!(w.sent().len(), said, "answered another session");
    run_to_end(&mut w);
    assert!(w.receiver_outcome(0).unwrap().complete);
}

/// §7 "Collecting": a block completes with `k_b` *distinct* symbols; a
/// symbol that arrives twice counts once.
#[test]
fn a_duplicate_symbol_is_not_counted_twice() {
    let mut w = world(config(1));
    w.drop_when(|_, to, d| to == Node::Receiver(0) && first_tx_of(d, 0, &[3]));
    // Right after symbol 4 of block 0 arrived, it arrives again.
    let copy = |w: &World| {
        w.sent()
            .iter()
            .find(|s| s.from == Node::Sender && first_tx_of(&s.datagram, 0, &[4]))
            .cloned()
    };
    assert!(
        w.drive_until(|w| copy(w).is_some_and(|s| w.elapsed() >= s.at + Duration::from_millis(1)))
    );
    let again = copy(&w).unwrap();
    let redundant = w.receiver(0).stats().symbols_redundant;
    w.deliver(Node::Receiver(0), &again.datagram);
    assert_eq!(w.receiver(0).stats().symbols_redundant, redundant + 1);
    run_to_end(&mut w);
    // Block 0 still lacked one symbol, and a good file came out of it.
    let first = &nacks(&w, Node::Receiver(0))[0].1.entries[0];
    assert_eq!((first.block, first.need), (BlockNumber(0), 1));
    assert_eq!(first.missing, vec![3]);
    assert!(w.receiver_outcome(0).unwrap().complete);
}

/// §1: a node's own datagrams looped back by the kernel are ignored.
#[test]
fn a_receiver_ignores_its_own_looped_back_feedback() {
    let mut w = world(config(1));
    assert!(w.drive_until(|w| w.sent().iter().any(|s| s.from == Node::Receiver(0))));
    let own = w
        .sent()
        .iter()
        .find(|s| s.from == Node::Receiver(0))
        .unwrap()
        .datagram
        .clone();
    let ignored = w.receiver(0).stats().ignored;
    w.deliver(Node::Receiver(0), &own);
    assert_eq!(w.receiver(0).stats().ignored, ignored + 1);
}

/// §6 phase 3: with no receiver at all the sender ends, and its report
/// says what went wrong and what to check.
#[test]
fn a_sender_with_no_receiver_ends_with_the_clear_failure() {
    let mut c = config(0);
    c.sender.wait = Duration::from_millis(100);
    let mut w = world(c);
    assert!(w.drive_until(|w| w.sender().is_finished()));
    assert!(w.elapsed() < Duration::from_secs(10), "{:?}", w.elapsed());
    let report = w.sender().report().expect("a report").clone();
    assert!(!report.success);
    assert_eq!(
        report.problem.as_deref(),
        Some("no receiver registered: is mdp-recv running and joined to the same group and interface?")
    );
    let dones: Vec<bool> = w
        .sent()
        .iter()
        .filter_map(|s| match control(s) {
            Some(Control::Done(d)) => Some(d.success),
            _ => None,
        })
        .collect();
    assert_eq!(dones, vec![false; 5], "DONE five times, unsuccessful");
    // An open group nobody joined gets no file data (it would go to nobody,
    // at a rate no feedback checks).
    let file_data = w
        .sent()
        .iter()
        .filter(|s| {
            matches!(wire::parse(&s.datagram), Ok(Packet::Data { header, .. }) if header.object.0 >= 1)
        })
        .count();
    assert_eq!(file_data, 0, "file data sent to nobody");
}

/// §7 "Status": `complete` means the tree is final, so a receiver
/// confirms only once its caller settled it.
#[test]
fn a_receiver_confirms_only_after_its_caller_settled_the_tree() {
    let mut c = config(1);
    c.settle_delay = Duration::from_millis(40);
    let mut w = world(c);
    let settling = |w: &World| {
        w.receiver(0)
            .progress()
            .is_some_and(|(a, b)| a == b && b > 0)
    };
    assert!(w.drive_until(settling));
    let all_in = w.elapsed();
    run_to_end(&mut w);
    let complete: Vec<Duration> = w
        .sent()
        .iter()
        .filter(|s| s.from == Node::Receiver(0))
        .filter_map(|s| match control(s) {
            Some(Control::Status(st)) if st.complete => Some(s.at),
            _ => None,
        })
        .collect();
    assert!(!complete.is_empty(), "never confirmed");
    assert!(
        complete[0] >= all_in + Duration::from_millis(40),
        "confirmed at {:?}, its last block came at {all_in:?}",
        complete[0]
    );
    assert!(w.sender().report().unwrap().success);
}

/// §6 phase 1: files every registered receiver already holds are not sent.
#[test]
fn files_every_receiver_holds_are_not_sent() {
    let held = Content::random_bytes(10_000, 1);
    let mut c = config(2);
    let files: HashMap<String, Vec<u8>> = [("a".to_string(), held.clone())].into();
    c.preexisting = vec![files.clone(), files];
    let content = Content::new(
        &[],
        vec![
            ("a".into(), held),
            ("b".into(), Content::random_bytes(3000, 2)),
        ],
    );
    let mut w = World::new(c, content);
    w.record_sent();
    run_to_end(&mut w);
    let objects: BTreeSet<u32> = w
        .sent()
        .iter()
        .filter_map(data)
        .map(|h| h.object.0)
        .collect();
    // Object 0 is the manifest, 1 the held file "a", 2 the file "b".
    assert_eq!(objects, BTreeSet::from([0, 2]));
    assert!(w.sender().report().unwrap().success);
}

/// §6 phase 1: no file data goes out before the expected receivers
/// registered (or `wait` passed).
#[test]
fn no_file_data_goes_out_before_the_expected_receiver_registered() {
    let mut c = config(1);
    c.fates = vec![mdp_sim::Fate::LateJoin(Duration::from_millis(300))];
    let mut w = world(c);
    run_to_end(&mut w);
    let registered = w
        .sent()
        .iter()
        .find(|s| matches!(control(s), Some(Control::Register(_))))
        .expect("a REGISTER")
        .at;
    let first_file_data =
        first_sent(&w, |s| data(s).is_some_and(|h| h.object == FILE)).expect("file data");
    assert!(registered >= Duration::from_millis(300));
    assert!(
        first_file_data > registered,
        "file data at {first_file_data:?}, REGISTER at {registered:?}"
    );
    assert!(w.sender().report().unwrap().success);
}

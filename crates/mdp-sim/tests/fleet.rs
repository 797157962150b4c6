//! Fleet pushes (issue 4): closed groups by name, and what the sender
//! reports about each expected receiver.

use mdp_proto::Verdict;
use mdp_sim::{Content, Fate, SimConfig, World};
use std::collections::HashMap;
use std::time::Duration;

fn files(seed: u64) -> Content {
    Content::new(
        &["etc"],
        vec![
            ("etc/a.conf".into(), Content::random_bytes(300_000, seed)),
            ("etc/b.conf".into(), Content::random_bytes(1234, seed + 1)),
        ],
    )
}

/// Compares what a receiver holds with what it should, naming the first
/// difference instead of printing megabytes.
fn assert_holds(got: &HashMap<String, Vec<u8>>, want: &HashMap<String, Vec<u8>>, who: &str) {
    let mut g: Vec<&String> = got.keys().collect();
    let mut w: Vec<&String> = want.keys().collect();
    g.sort();
    w.sort();
    assert_eq!(g, w, "{who}: paths");
    for (p, data) in want {
        assert!(got[p] == *data, "{who}: {p} differs");
    }
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_closed_group_starts_once_everyone_registered_and_succeeds() {
    let content = files(1);
    let mut c = SimConfig::new(3, 501);
    c.sender.expected_names = names(&["r0", "r1", "r2"]);
    c.sender.wait = Duration::from_secs(30);
    let r = World::new(c, content).run();
    let report = r.report.clone().expect("finished");
    assert!(report.success, "{:?}", report.problem);
    assert_eq!((report.expected, report.confirmed), (3, 3));
    assert!(report.receivers.iter().all(|x| x.expected));
    // It did not sit out the 30 s wait: the group was complete at once.
    assert!(r.elapsed < Duration::from_secs(2), "took {:?}", r.elapsed);
}

#[test]
fn an_expected_host_that_never_starts_is_named_and_fails_the_push_in_bounded_time() {
    let content = files(2);
    let mut c = SimConfig::new(3, 502);
    c.sender.expected_names = names(&["r0", "r1", "r2"]);
    c.sender.wait = Duration::from_secs(2);
    c.sender.drop_after = Duration::from_secs(1);
    // r2's host is down for the whole push.
    c.fates = vec![
        Fate::Normal,
        Fate::Normal,
        Fate::LateJoin(Duration::from_secs(3600)),
    ];
    let r = World::new(c, content).run();
    let report = r.report.clone().expect("finished");
    assert!(!report.success);
    assert_eq!((report.expected, report.confirmed), (3, 2));
    let absent = report
        .receivers
        .iter()
        .find(|x| x.name == "r2")
        .expect("the absent host is in the report");
    assert_eq!(absent.verdict, Verdict::NeverRegistered);
    assert_eq!(absent.node, None);
    assert!(absent.expected);
    assert_eq!(absent.missing, ["etc/a.conf", "etc/b.conf"]);
    let problem = report.problem.as_deref().unwrap();
    assert!(problem.contains("r2 (never registered)"), "{problem}");
    for n in ["r0", "r1"] {
        let x = report.receivers.iter().find(|x| x.name == n).unwrap();
        assert_eq!(x.verdict, Verdict::Confirmed, "{n}");
    }
    // wait (2 s) + data + drop_after (1 s), not the 10 minute timeout.
    assert!(r.elapsed < Duration::from_secs(4), "took {:?}", r.elapsed);
}

#[test]
fn an_unexpected_receiver_is_served_and_reported_but_does_not_decide_success() {
    let content = files(3);
    let mut c = SimConfig::new(3, 503);
    c.sender.expected_names = names(&["r0", "r1"]);
    c.sender.drop_after = Duration::from_secs(1);
    // r2 is not on the list, and dies mid-push.
    c.fates = vec![
        Fate::Normal,
        Fate::Normal,
        Fate::Killed(Duration::from_millis(5)),
    ];
    let r = World::new(c, content).run();
    let report = r.report.clone().expect("finished");
    assert!(report.success, "{:?}", report.problem);
    assert_eq!((report.expected, report.confirmed), (2, 2));
    if let Some(extra) = report.receivers.iter().find(|x| x.name == "r2") {
        assert!(!extra.expected);
        assert_ne!(extra.verdict, Verdict::Confirmed);
    }
}

/// The content `files(seed)` as a receiver's directory would hold it.
/// A push of the files `paths` (with their bytes in `all`), under `dirs`.
fn pick(dirs: &[&str], all: &HashMap<String, Vec<u8>>, paths: &[&str]) -> Content {
    Content::new(
        dirs,
        paths
            .iter()
            .map(|p| (p.to_string(), all[*p].clone()))
            .collect(),
    )
}

fn held(content: &Content) -> HashMap<String, Vec<u8>> {
    content
        .manifest
        .files()
        .map(|(id, e)| (e.path.clone(), content.files[&id].clone()))
        .collect()
}

#[test]
fn a_repeated_push_of_unchanged_files_sends_no_file_data() {
    let content = files(4);
    let mut c = SimConfig::new(3, 504);
    c.preexisting = vec![held(&content); 3];
    let r = World::new(c, content.clone()).run();
    let report = r.report.clone().expect("finished");
    assert!(report.success, "{:?}", report.problem);
    assert_eq!(report.stats.files_skipped, 2);
    assert_eq!(report.stats.bytes_skipped, 300_000 + 1234);
    // Only the manifest's blocks went out as data, no repairs.
    assert!(
        report.stats.bytes_sent < 20_000,
        "sent {} bytes for an unchanged push",
        report.stats.bytes_sent
    );
    assert_eq!(report.stats.bytes_read, 0, "no file was even read");
    for (i, rx) in r.receivers.iter().enumerate() {
        assert_holds(&rx.files, &held(&content), &format!("r{i}"));
    }
}

#[test]
fn a_push_where_one_file_changed_sends_about_that_file_only() {
    let old = files(5);
    let mut new_files = held(&old);
    new_files.insert("etc/b.conf".into(), Content::random_bytes(40_000, 99));
    let content = pick(&["etc"], &new_files, &["etc/a.conf", "etc/b.conf"]);
    let mut c = SimConfig::new(3, 505);
    c.preexisting = vec![held(&old); 3];
    c.loss_independent = 0.02;
    let r = World::new(c, content.clone()).run();
    let report = r.report.clone().expect("finished");
    assert!(report.success, "{:?}", report.problem);
    assert_eq!(report.stats.files_skipped, 1, "a.conf is everywhere");
    assert_eq!(report.stats.bytes_read, 40_000, "only b.conf was read");
    let sent = report.stats.bytes_sent as f64;
    assert!(sent < 40_000.0 * 1.5 + 20_000.0, "sent {sent} bytes");
    for (i, rx) in r.receivers.iter().enumerate() {
        assert_holds(&rx.files, &new_files, &format!("r{i}"));
    }
}

#[test]
fn a_file_one_receiver_lacks_is_sent_to_all_and_the_others_keep_theirs() {
    let content = files(6);
    let mut partial = held(&content);
    partial.remove("etc/a.conf");
    let mut c = SimConfig::new(3, 506);
    c.preexisting = vec![held(&content), partial, held(&content)];
    let r = World::new(c, content.clone()).run();
    let report = r.report.clone().expect("finished");
    assert!(report.success, "{:?}", report.problem);
    assert_eq!(report.stats.files_skipped, 1, "only b.conf is everywhere");
    for (i, rx) in r.receivers.iter().enumerate() {
        assert_holds(&rx.files, &held(&content), &format!("r{i}"));
    }
}

#[test]
fn a_late_joiner_gets_the_files_the_others_already_had() {
    let old = files(7);
    let mut all = held(&old);
    all.insert("big.bin".into(), Content::random_bytes(8 << 20, 70));
    let content = pick(&["etc"], &all, &["etc/a.conf", "etc/b.conf", "big.bin"]);
    let mut c = SimConfig::new(3, 507);
    c.sender.expected_receivers = 2;
    c.preexisting = vec![held(&old), held(&old)];
    // 8 MiB at 200 Mbit/s take ~340 ms: it starts mid-push, after the
    // sender decided not to send the two files the others had.
    c.fates = vec![
        Fate::Normal,
        Fate::Normal,
        Fate::LateJoin(Duration::from_millis(40)),
    ];
    let r = World::new(c, content.clone()).run();
    let report = r.report.clone().expect("finished");
    assert!(report.success, "{:?}", report.problem);
    assert_eq!(report.stats.files_skipped, 2);
    assert_holds(&r.receivers[2].files, &all, "the late joiner");
    assert!(report
        .receivers
        .iter()
        .any(|x| x.name == "r2" && x.verdict == Verdict::Confirmed));
}

/// The first datagram a fresh sender of `session` sends: its ANNOUNCE.
fn first_announce(session: u64, content: &Content, now: std::time::Instant) -> Vec<u8> {
    let mut config = mdp_proto::SenderConfig::new(mdp_proto::SessionId(session));
    config.expected_receivers = 1;
    let manifest = content.manifest_for(&config.coding());
    let mut s = mdp_proto::Sender::new(config, manifest, now).unwrap();
    let mut buf = Vec::new();
    let t = s.poll_transmit(now, &mut buf).expect("an ANNOUNCE at once");
    buf.truncate(t.size);
    buf
}

#[test]
fn a_receiver_leaves_a_vanished_senders_push_for_a_new_one() {
    let content = files(8);
    let t0 = std::time::Instant::now();
    let mut config = mdp_proto::ReceiverConfig::new(mdp_proto::NodeId(7), "svc", 7);
    config.insecure = true;
    let mut r = mdp_proto::Receiver::new(config);
    r.handle_datagram(t0, &first_announce(0xa, &content, t0));
    assert_eq!(r.session_id(), Some(mdp_proto::SessionId(0xa)));
    // The sender of 0xa dies. A new push is announced 1 s later: too soon
    // to give up on 0xa (a busy sender may pause).
    let t1 = t0 + Duration::from_secs(1);
    r.handle_datagram(t1, &first_announce(0xb, &content, t1));
    assert!(!r.is_finished());
    // 3 s of silence: the old push is given up at once, not after the
    // 30 s idle timeout, and reported incomplete.
    let t2 = t0 + Duration::from_secs(3);
    r.handle_datagram(t2, &first_announce(0xb, &content, t2));
    assert!(r.is_finished());
    let mut outcome = None;
    while let Some(ev) = r.poll_event() {
        if let mdp_proto::ReceiverEvent::Finished(o) = ev {
            outcome = Some(o);
        }
    }
    let o = outcome.expect("the old push ended");
    assert_eq!(o.session, mdp_proto::SessionId(0xa));
    assert!(!o.complete);
    assert!(
        o.problem
            .as_ref()
            .unwrap()
            .to_string()
            .contains("another push began"),
        "{:?}",
        o.problem
    );
}

fn key(b: u8) -> mdp_proto::auth::Key {
    mdp_proto::auth::Key::from_bytes([b; 32])
}

#[test]
fn forged_and_replayed_packets_change_nothing_with_a_key() {
    // 4 MiB take ~170 ms at 200 Mbit/s: replays (50 ms late) land mid-push.
    let content = Content::new(
        &[],
        vec![("big.bin".into(), Content::random_bytes(4 << 20, 9))],
    );
    let mut c = SimConfig::new(3, 509);
    c.key = Some(key(1));
    c.tamper = 0.05;
    c.loss_independent = 0.02;
    let r = World::new(c, content.clone()).run();
    let report = r.report.clone().expect("finished");
    assert!(report.success, "{:?}", report.problem);
    let failed: u64 = r.receivers.iter().map(|x| x.stats.auth_failed).sum();
    let replayed: u64 = r.receivers.iter().map(|x| x.stats.replayed).sum();
    assert!(failed > 10, "forged copies were dropped: {failed}");
    assert!(replayed > 10, "replays were dropped: {replayed}");
    for (i, rx) in r.receivers.iter().enumerate() {
        assert_holds(&rx.files, &held(&content), &format!("r{i}"));
    }
}

#[test]
fn without_a_key_forged_symbols_are_caught_by_the_block_hashes_and_asked_for_again() {
    // The control experiment: forged symbols reach the decoder and spoil
    // blocks; each spoiled block is caught by its hash before it is
    // written and asked for again. The attacker forges for the first
    // 100 ms, then stops: every file lands, intact.
    let content = files(10);
    let mut c = SimConfig::new(3, 510);
    c.tamper = 0.05;
    c.tamper_for = Some(Duration::from_millis(100));
    let r = World::new(c, content.clone()).run();
    let rejected: u64 = r.receivers.iter().map(|rx| rx.stats.blocks_rejected).sum();
    assert!(
        rejected > 0,
        "no forged block reached a check: the test shows nothing"
    );
    for (i, rx) in r.receivers.iter().enumerate() {
        assert_holds(&rx.files, &held(&content), &format!("r{i}"));
    }
    assert!(r.report.as_ref().expect("finished").success);
}

#[test]
fn an_attacker_who_never_stops_forging_gets_nothing_placed() {
    // Without per-datagram authentication (--key, encryption) an attacker
    // who forges all along can keep blocks from completing (a denial of
    // service, docs/SECURITY.md), but nothing forged is ever written.
    let content = files(10);
    let mut c = SimConfig::new(3, 510);
    c.tamper = 0.05;
    c.sender.drop_after = Duration::from_secs(2);
    let r = World::new(c, content.clone()).run();
    for rx in &r.receivers {
        assert!(rx.stats.blocks_rejected > 0);
        for (p, data) in &rx.files {
            assert!(held(&content)[p] == *data, "a forged {p} was placed");
        }
    }
}

#[test]
fn a_receiver_with_a_key_refuses_an_unauthenticated_push() {
    let content = files(11);
    let mut c = SimConfig::new(2, 511);
    c.key = Some(key(1));
    c.sender_key = Some(None);
    c.sender.wait = Duration::from_millis(500);
    c.sender.drop_after = Duration::from_millis(500);
    let r = World::new(c, content).run();
    let report = r.report.clone().expect("finished");
    assert!(!report.success);
    for rx in &r.receivers {
        assert!(rx.files.is_empty());
        assert!(rx.outcome.is_none(), "never joined");
        assert!(rx.stats.auth_failed > 0);
    }
}

#[test]
fn a_push_whose_clock_is_far_from_the_receivers_is_refused_as_a_replay() {
    // What a recording of an old push, replayed an hour later, looks like.
    let content = files(12);
    let mut c = SimConfig::new(2, 512);
    c.key = Some(key(1));
    c.receiver_clock_ahead = Duration::from_secs(3600);
    c.sender.wait = Duration::from_millis(500);
    c.sender.drop_after = Duration::from_millis(500);
    let r = World::new(c, content).run();
    assert!(!r.report.expect("finished").success);
    for rx in &r.receivers {
        assert!(rx.files.is_empty());
        assert!(rx.stats.replayed > 0);
        assert_eq!(rx.stats.auth_failed, 0, "authentic, but stale");
    }
}

#[test]
fn a_sender_with_another_key_is_refused() {
    let content = files(13);
    let mut c = SimConfig::new(2, 513);
    c.key = Some(key(1));
    c.sender_key = Some(Some(key(2)));
    c.sender.wait = Duration::from_millis(500);
    c.sender.drop_after = Duration::from_millis(500);
    let r = World::new(c, content).run();
    assert!(!r.report.expect("finished").success);
    for rx in &r.receivers {
        assert!(rx.files.is_empty());
        assert!(rx.stats.auth_failed > 0);
    }
}

#[test]
fn a_sender_killed_mid_push_then_rerun_sends_only_the_missing_blocks() {
    let mut all = HashMap::new();
    all.insert("big.bin".to_string(), Content::random_bytes(8 << 20, 14));
    all.insert("etc/a.conf".to_string(), Content::random_bytes(2000, 15));
    let content = pick(&["etc"], &all, &["big.bin", "etc/a.conf"]);
    let mut c = SimConfig::new(3, 514);
    c.loss_independent = 0.01;
    // 8 MiB at 200 Mbit/s take ~340 ms: killed at 150 ms, so about 40 % of
    // big.bin is in the receivers' temporary files. Rerun at 2.5 s (the
    // receivers give the silent push up when the new one is announced).
    c.sender_crash = Some((Duration::from_millis(150), Duration::from_millis(2500)));
    let r = World::new(c, content.clone()).run();
    let report = r.report.expect("the rerun finished");
    assert!(report.success, "{:?}", report.problem);
    let s = report.stats;
    println!(
        "rerun: {} blocks skipped, {} of {} bytes read",
        s.blocks_skipped,
        s.bytes_read,
        content.total_bytes()
    );
    assert!(
        s.blocks_skipped >= 5,
        "blocks every receiver had were not sent again: {s:?}"
    );
    assert!(
        s.bytes_read < 6 << 20,
        "the rerun read {} of 8 MiB",
        s.bytes_read
    );
    for (i, rx) in r.receivers.iter().enumerate() {
        assert_holds(&rx.files, &all, &format!("r{i}"));
        assert_eq!(rx.outcomes.len(), 2, "r{i}: two sessions");
        assert!(!rx.outcomes[0].complete);
        assert!(
            rx.outcomes[0]
                .problem
                .as_ref()
                .unwrap()
                .to_string()
                .contains("another push began"),
            "{:?}",
            rx.outcomes[0].problem
        );
        assert!(
            rx.outcomes[1].complete,
            "r{i}: {:?}",
            rx.outcomes[1].problem
        );
        // While the sender was dead (2.35 s) the receivers did not flood
        // the network with NACKs: they stop once it has been silent for
        // about a second. In that second a receiver of this group of 3
        // (back-off 2 GRTT, then a hold-off of 3 more) NACKs about every
        // 5 GRTT of ~2 ms: under 100, where 2.35 s of it would be ~235.
        let nacks = rx.session_stats[0].nacks_sent;
        assert!(nacks < 120, "r{i} sent {nacks} NACKs in the first session");
    }
}

#[test]
fn a_receiver_whose_limits_refuse_a_push_says_so_and_the_others_complete() {
    let content = files(15);
    let mut c = SimConfig::new(3, 515);
    // r1 accepts no file over 100 kB: a.conf is 300 kB.
    c.receiver_setup = Some(|i, rc| {
        if i == 1 {
            rc.max_file_bytes = 100_000;
        }
    });
    let r = World::new(c, content.clone()).run();
    let report = r.report.clone().expect("finished");
    assert!(!report.success);
    let refused = report.receivers.iter().find(|x| x.name == "r1").unwrap();
    assert_eq!(refused.verdict, Verdict::Failed);
    assert!(refused
        .failed
        .iter()
        .all(|(_, why)| *why == mdp_proto::wire::FailReason::Refused));
    assert_eq!(refused.failed.len(), 2);
    let o = r.receivers[1].outcome.as_ref().unwrap();
    assert!(
        o.problem
            .as_ref()
            .unwrap()
            .to_string()
            .contains("--max-file-size"),
        "{:?}",
        o.problem
    );
    assert!(r.receivers[1].files.is_empty());
    for i in [0, 2] {
        assert_holds(&r.receivers[i].files, &held(&content), &format!("r{i}"));
    }
    // Refused at once, not dropped after a silence.
    assert!(r.elapsed < Duration::from_secs(2), "took {:?}", r.elapsed);
}

/// Directories count against `max_files` like files: a push of 2 files
/// in 5 directories is 7 entries, over a limit of 6.
#[test]
fn directories_count_against_a_receivers_file_limit() {
    let content = Content::new(
        &["a", "a/b", "a/b/c", "d", "d/e"],
        vec![
            ("a/b/c/f".into(), Content::random_bytes(1000, 1)),
            ("d/e/g".into(), Content::random_bytes(1000, 2)),
        ],
    );
    let mut c = SimConfig::new(1, 516);
    c.receiver_setup = Some(|_, rc| rc.max_files = 6);
    let r = World::new(c, content).run();
    let report = r.report.clone().expect("finished");
    assert!(!report.success);
    let o = r.receivers[0].outcome.as_ref().unwrap();
    assert_eq!(
        o.problem.as_ref().map(|p| p.to_string()),
        Some(
            "refused the push: its 7 files and directories are more than this receiver accepts (--max-files 6)"
                .to_string()
        ),
    );
    assert!(r.receivers[0].files.is_empty());
}

#[test]
fn receivers_fall_quiet_when_the_sender_dies_instead_of_flooding_the_network() {
    let content = Content::new(
        &[],
        vec![("big.bin".into(), Content::random_bytes(8 << 20, 16))],
    );
    let mut c = SimConfig::new(3, 516);
    c.loss_independent = 0.01;
    // Killed at 150 ms and never back: the receivers wait for their idle
    // timeout (30 s).
    c.sender_crash = Some((Duration::from_millis(150), Duration::from_secs(3600)));
    c.max_time = Duration::from_secs(40);
    let r = World::new(c, content).run();
    for (i, rx) in r.receivers.iter().enumerate() {
        let o = rx
            .outcomes
            .first()
            .expect("the session ended by idle timeout");
        assert!(!o.complete);
        // NACKing a dead sender for 30 s would be thousands of datagrams
        // per receiver (about a hundred a second here: a group of 3 backs
        // off 2 GRTT, then holds off 3 more); they stop after about a second.
        let nacks = rx.session_stats[0].nacks_sent;
        assert!(nacks < 120, "r{i} sent {nacks} NACKs to a dead sender");
    }
}

#[test]
fn a_dry_run_reports_what_each_receiver_lacks_and_sends_and_writes_nothing() {
    let old = files(8);
    let mut new_files = held(&old);
    new_files.insert("etc/b.conf".into(), Content::random_bytes(40_000, 98));
    let content = pick(&["etc"], &new_files, &["etc/a.conf", "etc/b.conf"]);
    let mut c = SimConfig::new(3, 508);
    c.sender.dry_run = true;
    c.sender.expected_names = names(&["r0", "r1", "r2"]);
    // r0 holds the new version, r1 the old one, r2 nothing.
    c.preexisting = vec![new_files.clone(), held(&old), HashMap::new()];
    let r = World::new(c, content.clone()).run();
    let report = r.report.clone().expect("finished");
    assert!(report.success, "{:?}", report.problem);
    let by_name = |n: &str| report.receivers.iter().find(|x| x.name == n).unwrap();
    for (name, holds, lacks) in [
        ("r0", 2, vec![]),
        ("r1", 1, vec!["etc/b.conf"]),
        ("r2", 0, vec!["etc/a.conf", "etc/b.conf"]),
    ] {
        let rr = by_name(name);
        assert_eq!(rr.verdict, Verdict::DryRun, "{name}");
        assert_eq!(
            (rr.verified, rr.missing.clone()),
            (
                holds,
                lacks.iter().map(|s| s.to_string()).collect::<Vec<_>>()
            ),
            "{name}"
        );
    }
    assert_eq!(report.stats.bytes_read, 0, "no file was read");
    // Only the manifest (object 0) went out as data.
    let manifest_symbols = content
        .manifest
        .encode()
        .len()
        .div_ceil(report.symbol_size as usize) as u64;
    assert_eq!(
        report.stats.data_symbols_sent, manifest_symbols,
        "file data went out"
    );
    // Nothing changed anywhere: r1 keeps its old version, r2 stays empty.
    assert_holds(&r.receivers[1].files, &held(&old), "r1");
    assert!(
        r.receivers[2].files.is_empty(),
        "r2 got {:?}",
        r.receivers[2].files.keys()
    );
    assert!(r
        .receivers
        .iter()
        .all(|x| !x.outcome.as_ref().unwrap().complete));
}

#[test]
fn a_large_group_that_keeps_no_files_is_served_and_every_receiver_confirms() {
    // 500 receivers, each losing 5 % on its own: the simulator's large
    // groups (receivers that check each block and drop it). Every one
    // confirms, none holds a file, and the forged-free run rejects no block.
    let mut c = SimConfig::new(500, 77);
    c.loss_independent = 0.05;
    c.keep_files = false;
    let content = Content::new(&[], vec![("big".into(), Content::random_bytes(1 << 20, 9))]);
    let r = World::new(c, content).run();
    assert_eq!(r.report.as_ref().map(|x| x.success), Some(true));
    for (i, x) in r.receivers.iter().enumerate() {
        let o = x.outcome.as_ref().expect("finished");
        assert!(o.complete && o.verified == 1, "r{i}: {o:?}");
        assert!(x.files.is_empty(), "r{i} kept its file");
        assert_eq!(x.stats.blocks_rejected, 0, "r{i}");
    }
    assert!(r.blocks_with_loss > 0 && r.nack_entries > 0);
}

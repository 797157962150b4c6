//! The main test layer: whole sessions of one sender and many receivers over
//! a lossy simulated network, asserting outcomes and counters.

use mdp_proto::{SenderEvent, Verdict};
use mdp_sim::{Content, Fate, SimConfig, SimResult, World};
use std::time::Duration;

/// A nested tree: a 1 MiB file, small files in subdirectories, an empty
/// file and an empty directory.
fn tree(seed: u64) -> Content {
    let mut files = vec![
        (
            "tree/big.bin".to_string(),
            Content::random_bytes(1 << 20, seed),
        ),
        ("tree/empty".to_string(), Vec::new()),
    ];
    for i in 0..5u64 {
        files.push((
            format!("tree/sub{}/f{i}.txt", i % 2),
            Content::random_bytes(1000 + 3000 * i as usize, seed + i + 1),
        ));
    }
    Content::new(&["tree", "tree/sub0", "tree/sub1", "tree/emptydir"], files)
}

/// One file of `len` random bytes.
fn one_file(len: usize, seed: u64) -> Content {
    Content::new(
        &[],
        vec![("big.bin".into(), Content::random_bytes(len, seed))],
    )
}

fn run(config: SimConfig, content: &Content) -> SimResult {
    World::new(config, content.clone()).run()
}

/// Every receiver holds every file byte for byte and the sender says so.
fn assert_all_delivered(r: &SimResult, content: &Content, label: &str) {
    let report = r
        .report
        .as_ref()
        .unwrap_or_else(|| panic!("{label}: sender never finished"));
    assert!(
        report.success,
        "{label}: sender reported failure: {:?}",
        report.problem
    );
    assert_eq!(
        report.receivers.len(),
        r.receivers.len(),
        "{label}: receivers in report"
    );
    for rr in &report.receivers {
        assert_eq!(
            rr.verdict,
            Verdict::Confirmed,
            "{label}: {} not confirmed",
            rr.name
        );
    }
    for (i, rx) in r.receivers.iter().enumerate() {
        let outcome = rx
            .outcome
            .as_ref()
            .unwrap_or_else(|| panic!("{label}: r{i} never finished"));
        assert!(outcome.complete, "{label}: r{i}: {:?}", outcome.problem);
        for (id, e) in content.manifest.files() {
            let got = rx
                .files
                .get(&e.path)
                .unwrap_or_else(|| panic!("{label}: r{i} lacks {}", e.path));
            assert!(
                got == &content.files[&id],
                "{label}: r{i} has a different {}",
                e.path
            );
        }
    }
}

#[test]
fn every_receiver_gets_identical_files_across_group_sizes_and_loss() {
    let content = tree(7);
    println!(
        "{:>9} {:>6} {:>12} {:>10} {:>12} {:>14} {:>10}",
        "receivers", "loss", "kind", "wire/byte", "lost blocks", "NACKs/lost blk", "time"
    );
    for &n in &[1usize, 10, 100] {
        for &loss in &[0.0, 0.01, 0.05, 0.20] {
            for correlated in [false, true] {
                if loss == 0.0 && correlated {
                    continue;
                }
                let mut c = SimConfig::new(n, 1000 + n as u64 + (loss * 100.0) as u64);
                if correlated {
                    c.loss_sender = loss;
                } else {
                    c.loss_independent = loss;
                }
                let label = format!(
                    "{n} receivers, {}% {}",
                    loss * 100.0,
                    if correlated {
                        "correlated"
                    } else {
                        "independent"
                    }
                );
                let r = run(c, &content);
                assert_all_delivered(&r, &content, &label);
                let wpb = r.wire_per_byte();
                let npl = r.nacks_per_lost_block();
                println!(
                    "{:>9} {:>5}% {:>12} {:>10.3} {:>12} {:>14.2} {:>9.3}s",
                    n,
                    loss * 100.0,
                    if correlated {
                        "correlated"
                    } else {
                        "independent"
                    },
                    wpb,
                    r.blocks_with_loss,
                    npl,
                    r.elapsed.as_secs_f64()
                );
                if loss == 0.0 {
                    assert_eq!(r.nack_entries, 0, "{label}: NACKs without loss");
                    assert_eq!(
                        r.sender_stats.blocks_encoded, 0,
                        "{label}: parity computed without loss"
                    );
                    assert!(
                        wpb < 1.03,
                        "{label}: {wpb} wire bytes per byte without loss"
                    );
                }
                if loss == 0.05 && !correlated {
                    assert!(wpb < 1.15, "{label}: {wpb} wire bytes per byte");
                }
                if n == 100 && loss > 0.0 {
                    // Suppression keeps feedback near one NACK per repair
                    // round, not one per receiver. With 100 receivers a lost
                    // block takes a few rounds (someone always loses a repair
                    // symbol too), and at 20 % loss several more.
                    let bound = if loss <= 0.05 { 5.0 } else { 15.0 };
                    assert!(npl < bound, "{label}: {npl} NACK entries per lost block");
                }
            }
        }
    }
}

/// One file of `bytes` (8 MiB: about 3.4 s of data at 20 Mbit/s).
fn one_big_file(bytes: usize, seed: u64) -> Content {
    Content::new(
        &["d"],
        vec![("d/big.bin".into(), Content::random_bytes(bytes, seed))],
    )
}

/// When the sender first said what `want` matches, and when its data
/// ended (`Flushing`), in virtual time.
fn when(r: &SimResult, want: impl Fn(&SenderEvent) -> bool) -> (Duration, Duration) {
    let at = |want: &dyn Fn(&SenderEvent) -> bool| {
        r.sender_events
            .iter()
            .find(|(_, e)| want(e))
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("{:?}", r.sender_events))
    };
    (at(&want), at(&|e| matches!(e, SenderEvent::Flushing)))
}

/// True for the sender's notice that receiver `r1` was dropped as silent.
fn r1_dropped(e: &SenderEvent) -> bool {
    matches!(e, SenderEvent::Silent { name, .. } if name == "r1")
}

/// A receiver killed early in a long push is polled in the ANNOUNCE
/// heartbeats, and dropped as it happens: before the data ends, not only
/// after it, while the others take the whole push.
#[test]
fn a_receiver_killed_during_the_data_is_dropped_before_the_data_ends() {
    let content = one_big_file(8 << 20, 3);
    let mut c = SimConfig::new(3, 7);
    // 8 MiB at 20 Mbit/s: about 3.4 s of data.
    c.sender.rate = mdp_proto::RateMode::Fixed(20_000_000);
    c.sender.drop_after = Duration::from_secs(1);
    c.fates = vec![
        Fate::Normal,
        Fate::Killed(Duration::from_millis(300)),
        Fate::Normal,
    ];
    let r = run(c, &content);
    let (dropped, flushing) = when(&r, r1_dropped);
    assert!(
        dropped < flushing,
        "dropped at {dropped:?}, the data ended at {flushing:?}"
    );
    // Not before it was silent for drop_after.
    assert!(dropped >= Duration::from_millis(1300), "{dropped:?}");
    let report = r.report.expect("sender finished");
    for rr in &report.receivers {
        let want_dropped = rr.name == "r1";
        assert_eq!(
            matches!(rr.verdict, Verdict::Dropped { .. }),
            want_dropped,
            "{}: {:?}",
            rr.name,
            rr.verdict
        );
    }
    // The live ones were polled too, and never dropped.
    assert_eq!(
        r.sender_events
            .iter()
            .filter(|(_, e)| matches!(e, SenderEvent::Silent { .. }))
            .count(),
        1
    );
}

/// A receiver killed near the end of the data, too late to be dropped
/// during it, is dropped `drop_after` after it fell silent, not
/// `drop_after` after the data ended: the polls it left unanswered show
/// its silence began before the flush.
#[test]
fn a_receiver_killed_late_in_the_data_is_dropped_from_when_it_fell_silent() {
    let content = one_big_file(8 << 20, 4);
    let mut c = SimConfig::new(3, 8);
    // About 3.4 s of data; killed at 2 s: three polls (0.4 s apart) go
    // unanswered before the data ends, the drop comes after it.
    c.sender.rate = mdp_proto::RateMode::Fixed(20_000_000);
    c.sender.drop_after = Duration::from_secs(2);
    c.fates = vec![
        Fate::Normal,
        Fate::Killed(Duration::from_millis(2000)),
        Fate::Normal,
    ];
    let r = run(c, &content);
    let (dropped, flushing) = when(&r, r1_dropped);
    assert!(flushing < Duration::from_millis(4500), "{flushing:?}");
    assert!(dropped > flushing, "dropped during the data: {dropped:?}");
    assert!(
        dropped < flushing + Duration::from_millis(1500),
        "dropped at {dropped:?}, flushing began at {flushing:?}"
    );
    assert!(dropped >= Duration::from_millis(3500), "{dropped:?}");
}

/// Live receivers are never dropped by the polls: not after a long
/// registration wait (their silence counts from the data's start), and not
/// on a path whose round trip is longer than the heartbeat (a receiver is
/// polled again only after four round trips).
#[test]
fn live_receivers_far_away_after_a_long_wait_are_never_dropped_by_the_polls() {
    let content = one_big_file(4 << 20, 5);
    let mut c = SimConfig::new(3, 9);
    c.sender.rate = mdp_proto::RateMode::Fixed(10_000_000);
    c.sender.drop_after = Duration::from_secs(2);
    // An open group waits the whole registration window.
    c.sender.expected_receivers = 0;
    c.sender.wait = Duration::from_secs(4);
    c.sender.initial_grtt = Duration::from_millis(400);
    // Lossless: the receivers have nothing to NACK, so only the polls
    // hear from them during the data.
    c.latency = Duration::from_millis(200);
    let r = run(c, &content);
    let silent: Vec<_> = r
        .sender_events
        .iter()
        .filter(|(_, e)| matches!(e, SenderEvent::Silent { .. }))
        .collect();
    assert!(silent.is_empty(), "{silent:?}");
    assert_all_delivered(&r, &content, "far and late");
}

#[test]
fn a_killed_receiver_is_dropped_and_named_while_the_others_complete() {
    let content = tree(11);
    let mut c = SimConfig::new(4, 42);
    c.fates = vec![
        Fate::Normal,
        Fate::Killed(Duration::from_millis(20)),
        Fate::Normal,
        Fate::Normal,
    ];
    c.sender.drop_after = Duration::from_secs(2);
    let r = run(c, &content);
    let report = r.report.expect("sender finished");
    assert!(!report.success);
    let killed = r.receivers[1].node;
    for rr in &report.receivers {
        if rr.node == Some(killed) {
            assert!(
                matches!(rr.verdict, Verdict::Dropped { .. }),
                "killed receiver: {:?}",
                rr.verdict
            );
            // It never confirmed: the report names every file it lacks.
            assert_eq!(
                rr.missing.len(),
                content.manifest.file_count() as usize - rr.verified as usize
            );
        } else {
            assert_eq!(rr.verdict, Verdict::Confirmed, "{}", rr.name);
        }
    }
    for i in [0, 2, 3] {
        assert!(r.receivers[i].outcome.as_ref().unwrap().complete);
    }
    // Ended by the drop, well before the session timeout.
    assert!(r.elapsed < Duration::from_secs(10), "took {:?}", r.elapsed);
    // The sender said so as it happened: each confirmation once, when it
    // came, and the drop at least drop_after after the last one.
    let confirmed: Vec<(Duration, String)> = r
        .sender_events
        .iter()
        .filter_map(|(t, e)| match e {
            SenderEvent::Confirmed {
                name, failed: 0, ..
            } => Some((*t, name.clone())),
            _ => None,
        })
        .collect();
    let mut names: Vec<&str> = confirmed.iter().map(|(_, n)| n.as_str()).collect();
    names.sort();
    assert_eq!(names, ["r0", "r2", "r3"], "{:?}", r.sender_events);
    let silent: Vec<&(Duration, SenderEvent)> = r
        .sender_events
        .iter()
        .filter(|(_, e)| matches!(e, SenderEvent::Silent { .. }))
        .collect();
    assert_eq!(silent.len(), 1, "{:?}", r.sender_events);
    let (
        at,
        SenderEvent::Silent {
            name, silent_for, ..
        },
    ) = silent[0]
    else {
        unreachable!()
    };
    assert_eq!(name, "r1");
    assert!(*silent_for >= Duration::from_secs(2), "{silent_for:?}");
    let last_confirmation = confirmed.iter().map(|(t, _)| *t).max().unwrap();
    assert!(
        *at > last_confirmation,
        "the drop came before the others confirmed"
    );
    assert!(*at <= r.elapsed);
}

#[test]
fn a_late_joiner_gets_everything_before_the_sender_ends() {
    let mut content = tree(12);
    // 4 MiB at 200 Mbit/s: the data takes ~170 ms.
    content = Content::new(
        &[],
        vec![
            ("big".into(), Content::random_bytes(4 << 20, 12)),
            (
                "small".into(),
                content.files[&mdp_proto::ObjectId(3)].clone(),
            ),
        ],
    );
    let mut c = SimConfig::new(3, 43);
    c.sender.expected_receivers = 0;
    c.sender.wait = Duration::from_millis(300);
    // Joins after the data began (1 MiB at 200 Mbit/s takes ~45 ms).
    c.fates = vec![
        Fate::Normal,
        Fate::Normal,
        Fate::LateJoin(Duration::from_millis(320)),
    ];
    c.loss_independent = 0.02;
    let r = run(c, &content);
    assert_all_delivered(&r, &content, "late join");
    assert!(
        r.receivers[2].stats.nack_entries_sent > 0,
        "the late joiner asked for what it missed"
    );
}

#[test]
fn a_receiver_that_missed_the_first_announce_holds_the_push_up_only_milliseconds() {
    // The sender waits for 4 receivers; one starts 3 ms after it, when the
    // first ANNOUNCE and the manifest have gone by (1 ms links). It
    // registers at the next ANNOUNCE, which comes 10 ms after the first
    // (and no longer 100 ms after it).
    let content = one_file(256 << 10, 50);
    let on_time = run(SimConfig::new(4, 51), &content);
    let mut c = SimConfig::new(4, 51);
    c.fates = vec![
        Fate::Normal,
        Fate::Normal,
        Fate::Normal,
        Fate::LateJoin(Duration::from_millis(3)),
    ];
    let late = run(c, &content);
    assert_all_delivered(&on_time, &content, "all on time");
    assert_all_delivered(&late, &content, "one 3 ms late");
    let held = late.elapsed.saturating_sub(on_time.elapsed);
    assert!(
        held >= Duration::from_millis(5) && held <= Duration::from_millis(20),
        "the late receiver held the push up {held:?} ({:?} against {:?})",
        late.elapsed,
        on_time.elapsed
    );
}

#[test]
fn after_every_receiver_confirmed_the_sender_ends_as_soon_as_they_do() {
    // The five DONEs go back to back, so the sender ends before its
    // receivers, which end when the first DONE arrives one link (1 ms)
    // later. (The run's end is the last of them: `elapsed_all`.) With the
    // repeats a millisecond apart, the sender would end last, 3 ms after
    // the receivers.
    let content = one_file(256 << 10, 52);
    let r = run(SimConfig::new(3, 53), &content);
    assert_all_delivered(&r, &content, "three receivers");
    assert!(
        r.elapsed < r.elapsed_all,
        "the sender ended at {:?}, after its receivers ({:?})",
        r.elapsed,
        r.elapsed_all
    );
}

#[test]
fn the_sender_ends_only_after_every_receiver_settled_its_tree() {
    // A receiver confirms only once its caller made the tree final
    // (directory times, --delete): a sender that hears "complete" may
    // exit, and a cron job then reads the receivers' trees. With settling
    // taking 300 ms, the sender ends after every receiver's settle, and
    // about that much later than with an instant one.
    let content = tree(54);
    let quick = run(SimConfig::new(3, 55), &content);
    assert_all_delivered(&quick, &content, "instant settle");
    let mut c = SimConfig::new(3, 55);
    c.settle_delay = Duration::from_millis(300);
    let slow = run(c, &content);
    assert_all_delivered(&slow, &content, "slow settle");
    for (i, rx) in slow.receivers.iter().enumerate() {
        let settled = rx.settled.unwrap_or_else(|| panic!("r{i} never settled"));
        assert!(
            settled <= slow.elapsed,
            "r{i} settled at {settled:?}, after the sender ended at {:?}",
            slow.elapsed
        );
    }
    assert!(
        slow.elapsed >= quick.elapsed + Duration::from_millis(250),
        "slow settle {:?}, instant {:?}",
        slow.elapsed,
        quick.elapsed
    );
}

#[test]
fn source_symbols_leave_the_sender_uncopied_unless_they_are_sealed() {
    // The gathering path hands each source symbol over as a range of its
    // cached block: every file byte goes out that way at least once. A
    // seal is computed over the datagram in one piece, so with a key every
    // payload is copied instead; delivery is the same either way.
    let content = one_file(1 << 20, 56);
    let plain = run(SimConfig::new(2, 57), &content);
    assert_all_delivered(&plain, &content, "without a key");
    assert!(
        plain.shared_payload_bytes >= content.total_bytes(),
        "{} of {} bytes shared",
        plain.shared_payload_bytes,
        content.total_bytes()
    );
    let mut c = SimConfig::new(2, 57);
    c.key = Some(mdp_proto::auth::Key::from_bytes([3; 32]));
    let sealed = run(c, &content);
    assert_all_delivered(&sealed, &content, "with a key");
    assert_eq!(sealed.shared_payload_bytes, 0);
}

#[test]
fn reordered_and_duplicated_datagrams_do_not_break_delivery() {
    let content = tree(13);
    let mut c = SimConfig::new(5, 44);
    c.jitter = Duration::from_millis(3);
    c.duplicate = 0.1;
    c.loss_independent = 0.03;
    let r = run(c, &content);
    assert_all_delivered(&r, &content, "jitter");
    assert!(
        r.receivers.iter().all(|x| x.stats.symbols_redundant > 0),
        "duplicates arrived and were dropped"
    );
}

#[test]
fn a_slow_encoder_delays_only_the_repairs_it_computes() {
    // Parity is computed off the sender's loop. While a job is out, the
    // sender goes on with new data and other repairs; the push completes
    // in about the same time as with parity computed at once.
    let content = one_file(6 << 20, 48);
    let mut times = Vec::new();
    for (delay, proactive) in [(0, 0), (5, 0), (5, 8)] {
        let mut c = SimConfig::new(6, 48);
        c.loss_independent = 0.05;
        c.encode_delay = Duration::from_millis(delay);
        c.sender.proactive = proactive;
        let label = format!("encode delay {delay} ms, proactive {proactive}");
        let r = run(c, &content);
        assert_all_delivered(&r, &content, &label);
        assert!(
            r.sender_stats.blocks_encoded > 0,
            "{label}: no parity computed"
        );
        println!("{label}: {:.3} s", r.elapsed.as_secs_f64());
        times.push(r.elapsed);
    }
    for t in &times[1..] {
        // At 200 Mbit/s 6 MiB take 0.25 s; a 5 ms encode delays each repair
        // round by 5 ms, not the data.
        assert!(
            *t < times[0] + Duration::from_millis(100),
            "{times:?}: a slow encoder held the push up"
        );
    }
}

#[test]
fn a_receiver_with_a_tiny_buffer_still_completes() {
    let content = tree(14);
    let mut c = SimConfig::new(3, 45);
    c.loss_independent = 0.05;
    // Room for one block only: symbols of the next block are dropped while
    // one waits for repair, and asked for later.
    c.receiver_buffer = c.sender.block_k as usize * c.sender.symbol_size as usize + 10_000;
    let r = run(c, &content);
    assert_all_delivered(&r, &content, "tiny buffer");
    assert!(r.receivers.iter().all(|x| x.stats.dropped_no_buffer > 0));
}

#[test]
fn nobody_listening_ends_with_a_clear_failure_not_a_hang() {
    let content = tree(15);
    let mut c = SimConfig::new(0, 46);
    c.sender.wait = Duration::from_millis(200);
    let r = run(c, &content);
    let report = r.report.expect("sender finished");
    assert!(!report.success);
    assert!(report.problem.as_deref().unwrap().contains("no receiver"));
    assert!(r.elapsed < Duration::from_secs(5));
}

#[test]
fn the_session_timeout_bounds_a_push_that_cannot_finish() {
    let content = tree(16);
    let mut c = SimConfig::new(2, 47);
    // One receiver loses everything after registering: it keeps NACKing
    // but never completes.
    c.loss_independent = 0.0;
    c.sender.timeout = Duration::from_secs(3);
    c.sender.drop_after = Duration::from_secs(60);
    c.fates = vec![Fate::Normal, Fate::Killed(Duration::from_millis(30))];
    let r = run(c, &content);
    let report = r.report.expect("sender finished");
    assert!(report.timed_out);
    assert!(!report.success);
    assert!(r.elapsed <= Duration::from_secs(3) + Duration::from_millis(100));
}

/// A lone receiver NACKs after about one round trip instead of the six a
/// large group waits to suppress duplicate NACKs: its lost symbols are
/// repaired sooner, so it holds fewer incomplete blocks in memory. The same
/// push to a receiver that assumes a large group (`backoff_group_floor`)
/// is the comparison.
#[test]
fn a_lone_receiver_nacks_sooner_and_holds_fewer_blocks_than_a_large_groups_member() {
    let content = one_file(16 << 20, 21);
    let push = |assume_large: bool| {
        let mut c = SimConfig::new(1, 521);
        c.loss_independent = 0.05;
        c.sender.rate = mdp_proto::RateMode::Fixed(2_000_000_000);
        c.latency = Duration::from_millis(2);
        if assume_large {
            c.receiver_setup = Some(|_, rc| rc.backoff_group_floor = 32);
        }
        let r = run(c, &content);
        let label = if assume_large { "large" } else { "lone" };
        assert_all_delivered(&r, &content, label);
        r.receivers[0].stats
    };
    let lone = push(false);
    let large = push(true);
    println!(
        "lone: peak {} KiB, {} NACKs; assuming a large group: peak {} KiB, {} NACKs",
        lone.buffer_peak >> 10,
        lone.nacks_sent,
        large.buffer_peak >> 10,
        large.nacks_sent,
    );
    assert_eq!(lone.dropped_no_buffer + large.dropped_no_buffer, 0);
    assert!(
        lone.buffer_peak < large.buffer_peak * 4 / 5,
        "lone receiver peaked at {} bytes, one assuming a large group at {}",
        lone.buffer_peak,
        large.buffer_peak
    );
    // Sooner, so more often: each NACK covers a round trip's blocks.
    assert!(lone.nacks_sent > 2 * large.nacks_sent, "{lone:?} {large:?}");
}

/// A lone receiver names the source symbols it lacks, and the sender
/// resends exactly those instead of parity: the same symbols on the wire,
/// and nothing to decode. In a group the sender keeps to parity, which
/// heals different losses at different receivers at once.
#[test]
fn a_lone_receiver_gets_its_missing_source_symbols_back_and_decodes_nothing() {
    let content = one_file(16 << 20, 22);
    let push = |receivers: usize| {
        let mut c = SimConfig::new(receivers, 522);
        c.loss_independent = 0.05;
        c.sender.rate = mdp_proto::RateMode::Fixed(1_000_000_000);
        let r = run(c, &content);
        assert_all_delivered(&r, &content, &format!("{receivers} receivers"));
        r
    };
    let lone = push(1);
    let group = push(3);
    let blocks = lone.receivers[0].stats.blocks_completed;
    let decoded = lone.receivers[0].stats.blocks_decoded;
    println!(
        "lone: {decoded} of {blocks} blocks decoded, {:.3} wire bytes per byte; group of 3: {} decoded",
        lone.wire_per_byte(),
        group.receivers[0].stats.blocks_decoded
    );
    assert!(
        lone.blocks_with_loss > blocks as usize / 2,
        "too little loss to tell"
    );
    assert!(
        decoded * 50 <= blocks,
        "{decoded} of {blocks} blocks decoded"
    );
    assert!(lone.wire_per_byte() < 1.08, "{}", lone.wire_per_byte());
    for (i, rx) in group.receivers.iter().enumerate() {
        assert!(
            rx.stats.blocks_decoded * 2 > rx.stats.blocks_completed,
            "r{i} of a group decoded only {} blocks: not repaired with parity",
            rx.stats.blocks_decoded
        );
    }
}

/// An adaptive push of `bytes` to four receivers on a network of `net_bps`,
/// one of whose hosts takes only `slow_bps` from its socket; `min_bps` the
/// push's floor.
fn push_with_a_slow_host(
    bytes: usize,
    net_bps: u64,
    slow_bps: u64,
    min_bps: u64,
) -> (SimResult, Content) {
    let content = one_big_file(bytes, 11);
    let mut c = SimConfig::new(4, 5);
    c.sender.rate = mdp_proto::RateMode::Adaptive {
        min_bps,
        max_bps: net_bps,
        start_bps: net_bps,
    };
    c.slow_hosts = vec![(3, slow_bps)];
    let r = run(c, &content);
    (r, content)
}

/// A receiver whose host cannot keep up with the network (its CPU or disk)
/// paces the push: its socket queue is the early signal, its reports say
/// what it drains, and the sender settles there at once instead of
/// overrunning it again and again and repairing what it overran.
#[test]
fn a_receiver_slower_than_the_network_paces_the_push_without_a_repair_storm() {
    let (r, content) = push_with_a_slow_host(24 << 20, 1_000_000_000, 300_000_000, 10_000_000);
    assert_all_delivered(&r, &content, "slow host");
    let slow = &r.receivers[3];
    let summary = format!(
        "{:?}, {:.3} wire bytes per byte, {} repairs, {} datagrams dropped by the slow host's full socket queue, {:?}",
        r.elapsed,
        r.wire_per_byte(),
        r.sender_stats.repair_symbols_sent,
        slow.socket_drops,
        r.report.as_ref().map(|x| &x.rate)
    );
    assert_eq!(slow.socket_drops, 0, "{summary}");
    assert!(r.wire_per_byte() < 1.03, "{summary}");
    // Paced to it: about the time its host needs for the bytes.
    let paced = Duration::from_secs_f64(content.total_bytes() as f64 * 8.0 / 300e6);
    assert!(r.elapsed < paced.mul_f64(1.2), "{summary}");
    let report = r.report.as_ref().expect("sender finished");
    assert_eq!(
        report.rate.limited_by.as_ref().map(|(n, _)| n.as_str()),
        Some("r3"),
        "{summary}"
    );
}

/// A receiver slower than the push's floor (`--min-rate`) is dropped and
/// named; the others take the push at their pace, not held back to its.
#[test]
fn a_receiver_slower_than_the_floor_is_dropped_and_the_others_are_not_held_back() {
    // Long enough (2.7 s at the network's 600 Mbit/s) for the slow one to
    // stay below the floor for cc::SLOW_DROP_AFTER while the data goes out.
    let (r, content) = push_with_a_slow_host(192 << 20, 600_000_000, 300_000_000, 500_000_000);
    let report = r.report.as_ref().expect("sender finished");
    for rr in &report.receivers {
        let want_dropped = rr.name == "r3";
        assert_eq!(
            matches!(rr.verdict, Verdict::TooSlow { .. }),
            want_dropped,
            "{}: {:?}",
            rr.name,
            rr.verdict
        );
    }
    for (i, rx) in r.receivers.iter().enumerate().take(3) {
        for (id, e) in content.manifest.files() {
            assert!(
                rx.files.get(&e.path) == Some(&content.files[&id]),
                "r{i} {}",
                e.path
            );
        }
    }
    // Until it is dropped (2 s below the floor) the slow one is a member,
    // but what it loses below the floor is not repaired for everyone.
    assert!(report.stats.nacks_below_floor > 0);
    assert!(r.wire_per_byte() < 1.1, "{:.3}", r.wire_per_byte());
    // Not paced to the slow one: faster than it could have taken the push.
    let paced = Duration::from_secs_f64(content.total_bytes() as f64 * 8.0 / 300e6);
    assert!(r.elapsed < paced, "{:?}", r.elapsed);
}

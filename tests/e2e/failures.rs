use crate::harness::*;
use std::fs;
use std::time::{Duration, Instant};

#[test]
fn a_receiver_killed_mid_push_makes_the_sender_exit_1_naming_it() {
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("kill");
    let src = base.join("src");
    make_source(&src, 64 << 20);
    let mut rx = start_receivers(&base, &["steady0", "victim", "steady1"]);
    // 64 MiB at 100 Mbit/s takes over 5 s: the kill lands mid-push.
    let send = Push::new(
        &[
            "--receivers",
            "3",
            "--rate",
            "100M",
            "--drop-after",
            "2s",
            "--timeout",
            "60s",
        ],
        &[src.join("big.bin"), src.join("tree")],
    )
    .start();
    std::thread::sleep(Duration::from_millis(2500));
    let mut victim = rx.remove(1);
    victim.kill();
    let killed_at = Instant::now();
    let out = send.finish(Duration::from_secs(60));
    let report = out.report();
    println!(
        "sender: {report} (ended {:?} after the kill)",
        killed_at.elapsed()
    );
    assert_eq!(out.code(), Some(1));
    assert_eq!(report["success"], false);
    let receivers = report["receivers"].as_array().unwrap();
    let victim = receivers
        .iter()
        .find(|r| r["name"] == "victim")
        .expect("victim named in the report");
    assert_eq!(victim["verdict"], "dropped");
    assert!(
        !victim["missing"].as_array().unwrap().is_empty(),
        "names what it missed: {victim}"
    );
    for r in receivers.iter().filter(|r| r["name"] != "victim") {
        assert_eq!(r["verdict"], "confirmed", "{r}");
    }
    assert_receivers_complete(rx, &base, &["steady0", "steady1"], &src);
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_file_changed_while_it_is_pushed_fails_clearly_and_is_never_placed() {
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("changing");
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    let file = src.join("growing.log");
    fs::write(&file, bytes(32 << 20, 5)).unwrap();
    let rx = start_receivers(&base, &["r0"]);
    // 32 MiB at 50 Mbit/s take over 5 s: the change lands mid-push.
    let send = Push::new(
        &["--receivers", "1", "--rate", "50M"],
        std::slice::from_ref(&file),
    )
    .start();
    std::thread::sleep(Duration::from_millis(1500));
    {
        use std::io::Write;
        let mut f = fs::OpenOptions::new().append(true).open(&file).unwrap();
        f.write_all(b"one more line\n").unwrap();
    }
    let out = send.finish(Duration::from_secs(30));
    let report = out.report();
    println!("sender: {report}");
    assert_eq!(out.code(), Some(1));
    let problem = report["problem"].as_str().unwrap();
    assert!(
        problem.contains("growing.log") && problem.contains("changed while it was being pushed"),
        "{problem}"
    );
    // The receiver was told at once (DONE) and placed nothing.
    let got = wait_output(rx.into_iter().next().unwrap(), Duration::from_secs(10));
    assert_eq!(got.status.code(), Some(1));
    assert!(!base.join("r0/growing.log").exists());
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn an_interrupted_sender_reports_and_tells_the_receivers_at_once() {
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("sigint");
    let src = base.join("src");
    make_source(&src, 64 << 20);
    let rx = start_receivers(&base, &["r0"]);
    // 64 MiB at 50 Mbit/s takes ten seconds: SIGINT lands mid-push.
    let send = Push::new(
        &["--receivers", "1", "--rate", "50M"],
        &[src.join("big.bin")],
    )
    .start();
    std::thread::sleep(Duration::from_millis(1500));
    send.signal("-INT");
    let out = send.finish(Duration::from_secs(5));
    let report = out.report();
    println!("sender: {report}");
    assert_eq!(out.code(), Some(1));
    assert!(report["problem"].as_str().unwrap().contains("interrupted"));
    assert_eq!(report["receivers"][0]["verdict"], "incomplete");
    // DONE reached the receiver: it ends now, not after its idle timeout.
    let out = wait_output(rx.into_iter().next().unwrap(), Duration::from_secs(5));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["complete"], false);
    assert!(
        !base.join("r0/big.bin").exists(),
        "no partial file under its final name"
    );
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_receiver_timeout_says_whether_a_push_was_under_way_and_how_far_it_got() {
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("timeout");
    // No sender at all.
    let idle = receiver(&base.join("idle"), "idle", &["--once", "--timeout", "1s"]);
    let out = wait_output(idle, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--timeout (1s) ran out before any push arrived"),
        "{err}"
    );
    // A push at 20 Mbit/s: 8 MiB take over 3 s, the receiver gives up
    // after 1.5 s with part of it.
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("slow.bin"), bytes(8 << 20, 7)).unwrap();
    let rx = receiver(&base.join("r"), "r", &["--once", "--timeout", "1500ms"]);
    let send = Push::new(
        &[
            "--receivers",
            "1",
            "--rate",
            "20M",
            "--drop-after",
            "2s",
            "--timeout",
            "20s",
        ],
        &[src.join("slow.bin")],
    )
    .start();
    let out = wait_output(rx, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("ran out during push"))
        .unwrap_or_else(|| panic!("no timeout line: {err}"));
    assert!(
        line.starts_with("mdp-recv: --timeout (1.5s) ran out during push "),
        "{line}"
    );
    assert!(
        line.contains(" of 8.0 MiB received, 0 of 1 files placed"),
        "{line}"
    );
    assert!(
        !line.contains(": 0 B of"),
        "part of it arrived first: {line}"
    );
    assert!(
        !base.join("r/slow.bin").exists(),
        "nothing under its final name"
    );
    let out = send.finish(Duration::from_secs(60));
    assert_eq!(
        out.code(),
        Some(1),
        "the sender names the receiver that left"
    );
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_sender_whose_every_send_fails_ends_in_seconds_and_says_why() {
    let Some(_net) = network_as_root() else {
        return;
    };
    // An output rule that drops the data port: every send fails with EPERM.
    if !nft_rules(&[
        "add table inet mdpout",
        "add chain inet mdpout out { type filter hook output priority 0; }",
        "add rule inet mdpout out udp dport 7400 drop",
    ]) {
        return;
    }
    let base = temp_dir("eperm");
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f.bin"), bytes(1 << 20, 3)).unwrap();
    let started = Instant::now();
    let send = Push::new(
        &["--receivers", "1", "--wait", "60s", "--timeout", "60s"],
        &[src.join("f.bin")],
    )
    .start();
    let out = send.finish(Duration::from_secs(60));
    let took = started.elapsed();
    let report = out.report();
    println!("sender after {took:?}: {report}");
    assert_eq!(out.code(), Some(1));
    assert!(
        took < Duration::from_secs(30),
        "not --wait or --timeout: {took:?}"
    );
    let problem = report["problem"].as_str().unwrap();
    assert!(
        problem.contains("every send to") && problem.contains("failed for 5 s"),
        "{problem}"
    );
    assert!(problem.contains("Operation not permitted"), "{problem}");
    let err = out.stderr();
    assert!(err.contains("check this host's firewall"), "{err}");
    fs::remove_dir_all(&base).unwrap();
}

use crate::harness::*;
use std::fs;
use std::time::Duration;

#[test]
fn a_repeated_push_of_an_unchanged_tree_sends_only_a_handshake() {
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("sync");
    let src = base.join("src");
    make_source(&src, 64 << 20);
    let first = push_to_three(&base, &src);
    let full = first["stats"]["bytes_sent"].as_u64().unwrap();
    // The same tree again, to the same directories.
    let again = push_to_three(&base, &src);
    let sent = again["stats"]["bytes_sent"].as_u64().unwrap();
    println!(
        "unchanged: {sent} bytes sent (first push {full}), {} s",
        again["elapsed_secs"]
    );
    assert_eq!(again["stats"]["skipped_files"], 5);
    assert!(sent < 64 << 10, "an unchanged push sent {sent} bytes");
    // One file changed: about that file goes out.
    fs::write(src.join("tree/a/mid.bin"), bytes(100_000, 77)).unwrap();
    let changed = push_to_three(&base, &src);
    let sent = changed["stats"]["bytes_sent"].as_u64().unwrap();
    println!("one file changed: {sent} bytes sent");
    assert_eq!(changed["stats"]["skipped_files"], 4);
    assert!(
        (100_000..100_000 * 3 / 2 + (64 << 10)).contains(&sent),
        "one changed 100 kB file: {sent} bytes sent"
    );
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_sender_killed_with_sigkill_then_rerun_completes_sending_only_what_is_missing() {
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("rerun");
    let src = base.join("src/parts");
    fs::create_dir_all(&src).unwrap();
    for i in 0..8 {
        fs::write(src.join(format!("p{i}.bin")), bytes(4 << 20, 100 + i)).unwrap();
    }
    let dir = base.join("svc");
    let service = receiver(&dir, "svc", &["--idle-timeout", "60s"]);
    // 32 MiB at 40 Mbit/s take ~7 s: the kill lands mid-push, after a few
    // files were placed.
    let mut first = Push::new(
        &["--receivers", "1", "--rate", "40M"],
        std::slice::from_ref(&src),
    )
    .start_quiet();
    std::thread::sleep(Duration::from_millis(3500));
    first.kill(); // SIGKILL: no DONE, no goodbye
    let placed_before = fs::read_dir(dir.join("parts"))
        .map(|d| d.count())
        .unwrap_or(0);
    // The same push again, at full speed.
    let out = Push::new(
        &["--receivers", "1", "--timeout", "60s"],
        std::slice::from_ref(&src),
    )
    .run();
    let report = out.report();
    println!("rerun: {report} ({placed_before} files were placed before the kill)");
    assert_eq!(out.code(), Some(0), "{report}");
    assert!(
        placed_before >= 1,
        "the kill came too early to show a resume"
    );
    assert_eq!(report["stats"]["skipped_files"], placed_before as u64);
    println!(
        "rerun: {} blocks of the interrupted file kept",
        report["stats"]["skipped_blocks"]
    );
    let sent = report["stats"]["bytes_sent"].as_u64().unwrap();
    assert!(
        sent < (8 - placed_before as u64) * (4 << 20) * 12 / 10,
        "sent {sent} bytes for {} missing files",
        8 - placed_before
    );
    assert_same_tree(&src, &dir.join("parts"));
    let (lines, _) = stop_service(service);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["complete"], false, "the killed push");
    assert!(
        lines[0]["problem"]
            .as_str()
            .unwrap()
            .contains("another push began"),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1]["complete"], true, "the rerun");
    // The same key signed the rerun: the receiver took it over after 1 s
    // of silence, not the 2 s it gives another sender's push.
    let problem = lines[0]["problem"].as_str().unwrap();
    let silent: f64 = problem
        .split("silent for ")
        .nth(1)
        .and_then(|r| r.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no silence in {problem:?}"));
    assert!(
        (1.0..2.0).contains(&silent),
        "taken over after {silent} s of silence: {problem}"
    );
    fs::remove_dir_all(&base).unwrap();
}

/// A receiver killed with SIGKILL mid-push (nothing of it runs after the
/// signal) keeps what it wrote up to its last checkpoint: restarted, it
/// takes the same push again and the rerun sends about what it lacked.
#[test]
fn a_receiver_killed_with_sigkill_then_restarted_takes_only_what_it_lacked() {
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("rx-kill");
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    let total: u64 = 192 << 20;
    fs::write(src.join("image.bin"), bytes(total as usize, 31)).unwrap();
    let dir = base.join("svc");
    let mut rx = receiver(&dir, "svc", &[]);
    // 192 MiB at 200 Mbit/s take ~8 s: at 5 s about 120 MiB are written,
    // past the first 64 MiB checkpoint.
    let mut first = Push::new(
        &["--receivers", "1", "--rate", "200M"],
        &[src.join("image.bin")],
    )
    .start_quiet();
    std::thread::sleep(Duration::from_secs(5));
    rx.kill(); // SIGKILL: no record written at the end
    first.kill();
    assert!(!dir.join("image.bin").exists(), "the kill came too late");
    let rx = receiver(&dir, "svc", &[]);
    std::thread::sleep(Duration::from_millis(300));
    let out = Push::new(
        &["--receivers", "1", "--timeout", "60s"],
        &[src.join("image.bin")],
    )
    .run();
    let report = out.report();
    assert_eq!(out.code(), Some(0), "{report}");
    let kept = report["stats"]["skipped_bytes"].as_u64().unwrap();
    let sent = report["stats"]["bytes_sent"].as_u64().unwrap();
    println!("rerun after the receiver's kill: {kept} bytes kept, {sent} bytes sent");
    assert!(kept >= 60 << 20, "kept only {kept} bytes: {report}");
    assert!(
        sent < (total - kept) * 11 / 10 + (1 << 20),
        "sent {sent} bytes for the {} it lacked",
        total - kept
    );
    assert_eq!(
        fs::read(dir.join("image.bin")).unwrap(),
        bytes(total as usize, 31)
    );
    let (lines, _) = stop_service(rx);
    assert_eq!(lines.last().unwrap()["complete"], true, "{lines:?}");
    fs::remove_dir_all(&base).unwrap();
}

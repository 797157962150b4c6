use crate::harness::*;
use std::fs;
use std::time::Duration;

#[test]
fn a_receiver_service_takes_three_pushes_and_runs_its_hooks_each_time() {
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("service");
    let src = base.join("src");
    make_source(&src, 1 << 20);
    let log = base.join("hook.log");
    let files_log = base.join("files.log");
    let dir = base.join("svc");
    let service = receiver(
        &dir,
        "svc",
        &[
            "--exec",
            &format!(
                // Its own stdout must not reach the service's JSON lines.
                "echo hook-stdout; echo \"$MDP_SESSION $MDP_FILE_COUNT $MDP_CHANGED_COUNT $MDP_SENDER\" >> {}",
                log.display()
            ),
            "--exec-file",
            &format!("echo \"$MDP_FILE\" >> {}", files_log.display()),
        ],
    );
    // 1: the tree; 2: the same again; 3: one file changed.
    let mut sessions = Vec::new();
    for round in 0..3 {
        if round == 2 {
            fs::write(src.join("tree/a/mid.bin"), bytes(100_000, 9)).unwrap();
        }
        let out = Push::new(
            &["--receivers", "1", "--timeout", "60s"],
            &[src.join("tree")],
        )
        .run();
        let report = out.report();
        assert_eq!(out.code(), Some(0), "push {round}: {report}");
        sessions.push(report["session"].as_str().unwrap().to_string());
        // The sender exits once the receiver confirmed, and the receiver
        // confirms only after its tree is final (directory times too): a
        // cron job may read it right away.
        assert_same_tree(&src.join("tree"), &dir.join("tree"));
        // The hook ran before the receiver confirmed: its line is there
        // when the sender exits, and the sender's report says it worked.
        let lines = fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(lines.lines().count(), round + 1, "push {round}: {lines}");
        assert_eq!(report["receivers"][0]["hook"]["result"], "succeeded");
    }
    // SIGTERM ends the service cleanly.
    std::thread::sleep(Duration::from_millis(300));
    let (lines, _) = stop_service(service);
    assert_eq!(lines.len(), 3, "one JSON line per push");
    for (line, session) in lines.iter().zip(&sessions) {
        assert_eq!(line["session"], session.as_str());
        assert_eq!(line["complete"], true);
        assert_eq!(line["hook"]["exit_code"], 0, "{line}");
        assert!(
            line["sender"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{line}"
        );
    }
    // The hook ran once per push, in order, with what each push changed:
    // 4 files, then none (already there), then the one that changed.
    let hook_lines: Vec<Vec<String>> = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| l.split(' ').map(str::to_string).collect())
        .collect();
    assert_eq!(hook_lines.len(), 3, "{hook_lines:?}");
    for (i, (fields, changed)) in hook_lines.iter().zip(["4", "0", "1"]).enumerate() {
        assert_eq!(fields[0], sessions[i]);
        assert_eq!(fields[1], "4", "files in the push");
        assert_eq!(fields[2], changed, "push {i}");
        assert!(fields[3].starts_with("127.0.0.1:"), "{fields:?}");
    }
    let mut placed: Vec<String> = fs::read_to_string(&files_log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    placed.sort();
    assert_eq!(
        placed,
        [
            "tree/a/b/deep.bin",
            "tree/a/b/empty",
            "tree/a/mid.bin",
            "tree/a/mid.bin",
            "tree/top.txt"
        ]
    );
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn delete_removes_what_the_sender_no_longer_has_and_only_below_pushed_directories() {
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("delete");
    let src = base.join("src");
    make_source(&src, 1 << 20);
    let dir = base.join("r0");
    // What the receiver holds beyond the push: an old file and directory
    // in the pushed tree, a symbolic link pointing outside, and files
    // outside the pushed tree that must stay.
    fs::create_dir_all(dir.join("tree/old/deeper")).unwrap();
    fs::write(dir.join("tree/stale.txt"), b"old").unwrap();
    fs::write(dir.join("tree/old/deeper/x"), b"old").unwrap();
    let outside = base.join("outside.txt");
    fs::write(&outside, b"keep me").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("tree/link")).unwrap();
    fs::write(dir.join("unrelated.txt"), b"keep me too").unwrap();
    let rx = start_receivers(&base, &["r0"]);
    let out = Push::new(
        &["--receivers", "1", "--delete", "--timeout", "60s"],
        &[src.join("tree"), src.join("big.bin")],
    )
    .run();
    assert_eq!(out.code(), Some(0), "{}", out.report());
    // The receiver confirmed only after --delete and the directory times:
    // the tree is final as soon as the sender exits 0.
    assert_same_tree(&src.join("tree"), &dir.join("tree"));
    assert!(!dir.join("tree/old").exists() && !dir.join("tree/stale.txt").exists());
    let got = wait_output(rx.into_iter().next().unwrap(), Duration::from_secs(30));
    let line = json(&got);
    let mut deleted: Vec<String> = line["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    deleted.sort();
    assert_eq!(
        deleted,
        ["tree/link", "tree/old", "tree/stale.txt"],
        "{line}"
    );
    assert_same_tree(&src.join("tree"), &dir.join("tree"));
    assert!(!dir.join("tree/old").exists() && !dir.join("tree/stale.txt").exists());
    assert_eq!(
        fs::read(&outside).unwrap(),
        b"keep me",
        "a link's target is never touched"
    );
    assert!(
        dir.join("unrelated.txt").exists(),
        "outside the pushed directories"
    );
    assert!(dir.join("big.bin").exists());
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn delete_leaves_a_volume_mounted_below_a_pushed_directory_whole() {
    // Mounting needs root; the test's own mount namespace keeps it private.
    let Some(_net) = network_as_root() else {
        return;
    };
    let base = temp_dir("delete-mount");
    let src = base.join("src");
    make_source(&src, 64 << 10);
    let dir = base.join("r0");
    let volume = dir.join("tree/volume");
    fs::create_dir_all(&volume).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&volume)
        .status()
        .unwrap();
    assert!(mounted.success());
    fs::write(volume.join("data"), b"another file system's").unwrap();
    let rx = start_receivers(&base, &["r0"]);
    let out = Push::new(
        &["--receivers", "1", "--delete", "--timeout", "60s"],
        &[src.join("tree")],
    )
    .run();
    assert_eq!(out.code(), Some(0), "{}", out.report());
    let got = wait_output(rx.into_iter().next().unwrap(), Duration::from_secs(30));
    assert_eq!(got.status.code(), Some(0));
    assert_eq!(
        fs::read(volume.join("data")).unwrap(),
        b"another file system's",
        "--delete reached into a mounted volume"
    );
    let _ = std::process::Command::new("umount").arg(&volume).status();
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_file_group_and_mask_let_that_group_alone_read_what_is_placed() {
    // Giving files to another group needs root.
    let Some(_net) = network_as_root() else {
        return;
    };
    use std::os::unix::fs::MetadataExt;
    let base = temp_dir("file-group");
    let src = base.join("src");
    make_source(&src, 64 << 10);
    let dir = base.join("r0");
    let rx = receiver(
        &dir,
        "r0",
        &[
            "--once",
            "--timeout",
            "60s",
            "--file-group",
            "4242",
            "--mode-mask",
            "027",
        ],
    );
    let out = Push::new(&["--receivers", "1"], &[src.join("tree")]).run();
    assert_eq!(out.code(), Some(0), "{}", out.report());
    let got = wait_output(rx, Duration::from_secs(30));
    assert_eq!(got.status.code(), Some(0));
    let mut seen = 0;
    let mut stack = vec![dir.join("tree")];
    while let Some(path) = stack.pop() {
        let md = fs::symlink_metadata(&path).unwrap();
        assert_eq!(md.gid(), 4242, "{}", path.display());
        assert_eq!(md.mode() & 0o007, 0, "others can reach {}", path.display());
        assert_eq!(
            md.mode() & 0o040,
            0o040,
            "the group cannot read {}",
            path.display()
        );
        if md.is_dir() {
            stack.extend(fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
        seen += 1;
    }
    assert!(seen > 3, "the tree has files and directories");
    // A group that does not exist stops the receiver at start-up.
    let bad = std::process::Command::new(RECV)
        .args([
            "--dir",
            "/tmp/x",
            "--insecure",
            "--file-group",
            "no-such-group-mdp",
        ])
        .env("MDP_RECV_CONFIG", "/dev/null")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("--file-group no-such-group-mdp: no such group"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    fs::remove_dir_all(&base).unwrap();
}

/// `GET /metrics` from `addr`: the body, or "" while nothing listens.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: mdp\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    text
}

/// The value of the sample `name` (with its labels) in `text`.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_show_a_push_in_progress_then_its_outcome_and_its_hook() {
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("metrics");
    let src = base.join("src");
    make_source(&src, 4 << 20);
    let addr = "127.0.0.1:9477";
    let rx = receiver(
        &base.join("r0"),
        "r0",
        &["--metrics", addr, "--exec", "exit 3"],
    );
    // 4 MiB at 20 Mbit/s: about 1.7 s to scrape during.
    let push = Push::new(
        &["--receivers", "1", "--rate", "20M"],
        &[src.join("big.bin"), src.join("tree")],
    )
    .start();
    let start = std::time::Instant::now();
    let during = loop {
        let text = scrape(addr);
        if sample(&text, "mdp_recv_push_received_bytes").is_some_and(|b| b > 0.0) {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never saw the push in progress: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        sample(&during, "mdp_recv_push_in_progress"),
        Some(1.0),
        "{during}"
    );
    assert!(
        sample(&during, "mdp_recv_push_total_bytes").unwrap() > 4e6,
        "{during}"
    );
    let out = push.finish(Duration::from_secs(30));
    // Delivered, but the hook failed: exit status 3.
    assert_eq!(out.code(), Some(3), "{}", out.report());
    let files = out.report()["files"].as_f64().unwrap();
    // The receiver counts it when its session ends, after the sender's
    // acknowledgement: wait for that.
    let after = loop {
        let text = scrape(addr);
        if sample(&text, "mdp_recv_hook_runs_total{result=\"failed\"}") == Some(1.0) {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the hook was never counted: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    for (name, want) in [
        ("mdp_recv_pushes_total{outcome=\"complete\"}", 1.0),
        ("mdp_recv_pushes_total{outcome=\"incomplete\"}", 0.0),
        ("mdp_recv_files_placed_total", files),
        ("mdp_recv_files_failed_total", 0.0),
        ("mdp_recv_push_in_progress", 0.0),
        ("mdp_recv_hook_runs_total{result=\"ok\"}", 0.0),
    ] {
        assert_eq!(sample(&after, name), Some(want), "{name} in {after}");
    }
    assert!(
        sample(&after, "mdp_recv_received_bytes_total").unwrap() > 4e6,
        "{after}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last = sample(&after, "mdp_recv_last_complete_push_timestamp_seconds").unwrap();
    assert!((now - last).abs() < 60.0, "{last} vs {now}");
    stop_service(rx);
    fs::remove_dir_all(&base).unwrap();
}

/// The push hook runs before a receiver confirms, and its outcome rides in
/// the confirmation: the sender's JSON report names the host whose hook
/// failed (report.rs's tests check the text), and the exit status says so (3) though every file
/// was delivered.
#[test]
fn a_hook_failing_on_one_host_is_in_the_senders_report_and_exit_status() {
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("hook-report");
    let src = base.join("src");
    make_source(&src, 1 << 20);
    let ok = receiver(&base.join("ok"), "ok", &["--exec", "true"]);
    let bad = receiver(&base.join("bad"), "bad", &["--exec", "exit 7"]);
    let none = receiver(&base.join("none"), "none", &[]);
    let out = Push::new(
        &["--receivers", "3", "--timeout", "60s"],
        &[src.join("tree")],
    )
    .run();
    let report = out.report();
    assert_eq!(out.code(), Some(3), "{report}");
    assert_eq!(report["success"], true, "every file was delivered");
    assert_eq!(report["hook_failures"], serde_json::json!(["bad"]));
    let hook = |name: &str| {
        report["receivers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {report}"))["hook"]
            .clone()
    };
    assert_eq!(
        hook("ok"),
        serde_json::json!({"result": "succeeded", "exit_code": null})
    );
    assert_eq!(
        hook("bad"),
        serde_json::json!({"result": "exited", "exit_code": 7})
    );
    assert_eq!(hook("none"), serde_json::Value::Null);
    for rx in [ok, bad, none] {
        stop_service(rx);
    }
    fs::remove_dir_all(&base).unwrap();
}

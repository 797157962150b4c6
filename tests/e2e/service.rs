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
        // The hook runs when the session ends, at the sender's DONE.
        wait_for_lines(&log, round + 1, Duration::from_secs(10));
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

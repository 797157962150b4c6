use crate::forge::*;
use crate::harness::*;
use mdp_proto::SessionId;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[test]
fn hostile_datagrams_never_crash_a_receiver_nor_write_outside_its_directory() {
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("hostile");
    let dir = base.join("cache");
    // --insecure: the forged pushes must get past the signature check to
    // reach (and be refused by) manifest validation.
    let rx = receiver(
        &dir,
        "target",
        &["--insecure", "--timeout", "60s", "--idle-timeout", "2s"],
    );
    std::thread::sleep(Duration::from_millis(300));
    let (sock, ep) = injector();
    let group = ep.group;
    let send = |d: &[u8]| {
        let _ = sock.send_to(d, group);
        let _ = sock.send_to(d, ep.feedback());
    };
    // Random datagrams and truncated headers of every length.
    for i in 0..3000u64 {
        let b = bytes((i % 1500) as usize, i + 100);
        send(&b);
        let mut h = b"md\x02\x01".to_vec();
        h.extend_from_slice(&b[..(i % 30) as usize]);
        send(&h);
    }
    // Valid headers with huge claimed sizes and indexes.
    let big = SessionId(0xbad0);
    send(&announce(big, &[0; 10], u32::MAX));
    let mut huge = announce(big, &[0; 10], 1);
    huge.truncate(huge.len() - 3);
    send(&huge);
    send(&data(big, u32::MAX, u16::MAX, &[1; 1400]));
    // Manifests that try to leave the directory, with matching hashes, and
    // one that claims a 2^49-byte file.
    for (n, path) in [
        "../escape",
        "/tmp/mdp-e2e-absolute",
        "a/../../escape",
        "ok/./x",
    ]
    .iter()
    .enumerate()
    {
        let session = SessionId(0xe000 + n as u64);
        let m = evil_manifest(path, 5);
        send(&announce(session, &m, 1));
        send(&data(session, 0, 0, &m));
        send(&data(session, 1, 0, b"EVIL!"));
        std::thread::sleep(Duration::from_millis(50));
    }
    let session = SessionId(0xe100);
    let m = evil_manifest("sparse", 1 << 49);
    send(&announce(session, &m, 1));
    send(&data(session, 0, 0, &m));
    std::thread::sleep(Duration::from_millis(500));

    // The receiver is alive and still takes a real push.
    let src = base.join("src");
    make_source(&src, 1 << 20);
    let push = Push::new(
        &["--receivers", "1", "--timeout", "30s"],
        &[src.join("tree")],
    )
    .run();
    assert_eq!(push.code(), Some(0), "{}", push.stdout());
    assert_same_tree(&src.join("tree"), &dir.join("tree"));
    // SIGTERM ends the service cleanly.
    // The forged sessions really reached manifest validation and were
    // refused there (so the checks below are not vacuous), and the real push
    // arrived complete.
    let (sessions, _) = stop_service(rx);
    let problems: Vec<&str> = sessions
        .iter()
        .filter_map(|v| v["problem"].as_str())
        .collect();
    assert_eq!(
        problems
            .iter()
            .filter(|p| p.contains("rejected the manifest: unsafe path"))
            .count(),
        4,
        "{problems:?}"
    );
    assert_eq!(
        problems
            .iter()
            .filter(|p| p.contains("refused the push"))
            .count(),
        1,
        "{problems:?}"
    );
    assert_eq!(sessions.iter().filter(|v| v["complete"] == true).count(), 1);
    assert!(!base.join("escape").exists());
    assert!(!Path::new("/tmp/mdp-e2e-absolute").exists());
    assert!(!dir.join("sparse").exists());
    // Only the real push landed (beside mdp's own .mdp-tmp, with its index).
    let mut names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != ".mdp-tmp")
        .collect();
    names.sort();
    assert_eq!(names, vec![std::ffi::OsString::from("tree")]);
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn with_a_key_forged_and_unauthenticated_pushes_change_nothing_on_disk() {
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("auth");
    let key = base.join("mdp.key");
    let other_key = base.join("other.key");
    for k in [&key, &other_key] {
        let out = Command::new(SEND).arg("--gen-key").arg(k).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // --gen-key never overwrites.
    let again = Command::new(SEND)
        .arg("--gen-key")
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    let key_arg = key.display().to_string();
    let dir = base.join("cache");
    let rx = receiver(
        &dir,
        "guarded",
        &[
            "--key-file",
            &key_arg,
            "--timeout",
            "60s",
            "--idle-timeout",
            "2s",
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let src = base.join("src");
    make_source(&src, 1 << 20);
    // 1. A well-formed push without a key: refused.
    let plain = Push::new(
        &["--receivers", "1", "--wait", "1s", "--drop-after", "1s"],
        &[src.join("tree")],
    )
    .run();
    assert_eq!(
        plain.code(),
        Some(1),
        "nobody took the unauthenticated push"
    );
    // 2. A push with another key: refused.
    let other = Push::new(
        &[
            "--receivers",
            "1",
            "--wait",
            "1s",
            "--drop-after",
            "1s",
            "--key-file",
            &other_key.display().to_string(),
        ],
        &[src.join("tree")],
    )
    .run();
    assert_eq!(
        other.code(),
        Some(1),
        "nobody took the push with another key"
    );
    // 3. Hand-made datagrams, plain and with a forged seal.
    let (sock, ep) = injector();
    let group = ep.group;
    let session = SessionId(0xf00d);
    let m = evil_manifest("planted", 5);
    for d in [
        announce(session, &m, 1),
        data(session, 0, 0, &m),
        data(session, 1, 0, b"EVIL!"),
    ] {
        let _ = sock.send_to(&d, group);
        let mut sealed = d.clone();
        sealed[3] |= mdp_proto::limits::AUTH_FLAG;
        sealed.extend_from_slice(&[0x5a; mdp_proto::limits::TRAILER_LEN]);
        let _ = sock.send_to(&sealed, group);
    }
    std::thread::sleep(Duration::from_millis(300));
    let placed: Vec<_> = fs::read_dir(&dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name())
                .filter(|n| n != ".mdp-tmp")
                .collect()
        })
        .unwrap_or_default();
    assert!(
        placed.is_empty(),
        "nothing lands without the key: {placed:?}"
    );
    // 4. The real push, with the key: placed.
    let good = Push::new(
        &[
            "--receivers",
            "1",
            "--timeout",
            "30s",
            "--key-file",
            &key_arg,
        ],
        &[src.join("tree")],
    )
    .run();
    assert_eq!(good.code(), Some(0), "{}", good.report());
    std::thread::sleep(Duration::from_millis(200));
    let (lines, stderr) = stop_service(rx);
    let done = lines.last().expect("the real push reported");
    assert_eq!(done["complete"], true, "{done}");
    assert!(done["auth_failed"].as_u64().unwrap() > 0, "{lines:?}");
    assert_same_tree(&src.join("tree"), &dir.join("tree"));
    assert!(!dir.join("planted").exists());
    assert!(
        stderr.contains("fail authentication"),
        "the operator is told why packets are dropped"
    );
    fs::remove_dir_all(&base).unwrap();
}

//! The hostile-LAN suite: what a host on the same network can and cannot
//! do to receivers run as shipped (docs/SECURITY.md). Every test drives the
//! real binaries; the attacks are real pushes and hand-made datagrams.

use crate::forge::injector;
use crate::harness::*;
use mdp_proto::wire::{self, Announce, Control, Timing};
use mdp_proto::{Entry, EntryKind, Manifest, SessionId};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Records every datagram sent to the default group until stopped.
struct Capture {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Vec<u8>>>,
}

impl Capture {
    fn start() -> Capture {
        let (_, ep) = injector();
        let sock = mdp_net::socket::joined(&ep, ep.group.port()).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 65536];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, _)) = sock.recv_from(&mut buf) {
                    got.push(buf[..n].to_vec());
                }
            }
            got
        });
        Capture { stop, thread }
    }

    fn finish(self) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// The files of `dir` (relative paths), `.mdp-tmp` left out.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == ".mdp-tmp") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn by_default_a_receiver_refuses_every_push_and_says_so_at_start_up() {
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("secure-default");
    let src = base.join("src");
    make_source(&src, 64 << 10);
    let dir = base.join("r0");
    // As the unit runs it before a trust file is written: no --trust.
    let rx = Proc::spawn(Command::new(RECV).arg("--dir").arg(&dir).args([
        "--node-id",
        "r0",
        "--json",
        "-q",
        "--timeout",
        "6s",
    ]));
    std::thread::sleep(Duration::from_millis(300));
    for push in [
        Push::new(&["--receivers", "1", "--wait", "1s"], &[src.join("tree")]),
        Push::unsigned(&["--receivers", "1", "--wait", "1s"], &[src.join("tree")]),
    ] {
        let out = push.run();
        assert_eq!(out.code(), Some(1), "nobody took it: {}", out.report());
    }
    let out = wait_output(rx, Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.contains("no key is trusted") && first.contains("--trust"),
        "{err}"
    );
    assert!(err.contains("refused push"), "{err}");
    assert!(files(&dir).is_empty(), "{:?}", files(&dir));
}

#[test]
fn unsigned_untrusted_and_wipe_attempts_change_nothing_and_run_no_hook() {
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("secure-wipe");
    let src = base.join("src");
    fs::create_dir_all(src.join("www")).unwrap();
    fs::write(src.join("www/new.html"), b"defaced").unwrap();
    let dir = base.join("cache");
    fs::create_dir_all(dir.join("www")).unwrap();
    fs::write(dir.join("www/index.html"), b"the real site").unwrap();
    let mark = base.join("hook-ran");
    let hook = format!("echo \"$MDP_SESSION\" >> {}", mark.display());
    let rx = receiver(&dir, "web1", &["--exec", &hook, "--timeout", "60s"]);
    std::thread::sleep(Duration::from_millis(300));
    let other = base.join("other.key");
    gen_identity(&other);
    let args = ["--receivers", "1", "--wait", "1s", "--delete"];
    // 1. Unsigned, with --delete.
    let out = Push::unsigned(&args, &[src.join("www")]).run();
    assert_eq!(out.code(), Some(1), "{}", out.report());
    // 2. Signed by a key the receiver does not trust.
    let mut signed_other = args.to_vec();
    signed_other.extend(["--identity", other.to_str().unwrap()]);
    let out = Push::new(&signed_other, &[src.join("www")]).run();
    assert_eq!(out.code(), Some(1), "{}", out.report());
    // 3. Forged datagrams: a push of an empty `www` with the delete flag,
    //    every byte of it complete and consistent, only not signed.
    let (sock, ep) = injector();
    let m = Manifest::new(vec![Entry {
        path: "www".into(),
        kind: EntryKind::Dir,
        mode: 0o755,
        mtime_secs: 0,
        mtime_nanos: 0,
        owner: 0,
    }])
    .encode();
    let session = SessionId(0x3a3a);
    let mut a = Vec::new();
    wire::write_control(
        &mut a,
        session,
        &Control::Announce(Announce {
            timing: Timing {
                ts_us: 1,
                grtt_us: 1000,
                rate_bps: 100_000_000,
                group_size: 1,
            },
            symbol_size: 1400,
            block_k: 256,
            parity: 128,
            manifest_len: m.len() as u64,
            manifest_hash: *blake3::hash(&m).as_bytes(),
            object_count: 0,
            data_pos: (1, 0),
            acked: vec![],
            poll: vec![],
            delete: true,
            dry_run: false,
            enc: None,
            signed: None,
        }),
    );
    for _ in 0..20 {
        let _ = sock.send_to(&a, ep.group);
        let _ = sock.send_to(&crate::forge::data(session, 0, 0, &m), ep.group);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(files(&dir), ["www/index.html"]);
    assert!(!mark.exists(), "a hook ran for an unauthenticated push");
    // The real push (signed by the trusted key) lands and runs the hook:
    // the checks above are not vacuous.
    let out = Push::new(&["--receivers", "1", "--wait", "1s"], &[src.join("www")]).run();
    assert_eq!(out.code(), Some(0), "{}", out.report());
    let (_, err) = stop_service(rx);
    assert_eq!(
        fs::read(dir.join("www/new.html")).unwrap(),
        b"defaced",
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(&mark).unwrap().lines().count(),
        1,
        "{err}"
    );
    assert!(err.contains("is not signed"), "{err}");
    assert!(err.contains("not trusted here"), "{err}");
}

#[test]
fn a_non_member_gets_no_file_and_cannot_read_what_it_captured() {
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("secure-member");
    let src = base.join("src/etc");
    fs::create_dir_all(&src).unwrap();
    let secret = "db_password=correct-horse-battery-staple\n".repeat(2000);
    fs::write(src.join("app.conf"), &secret).unwrap();
    let (web1_key, db1_key) = (base.join("web1.key"), base.join("db1.key"));
    let web1 = gen_identity(&web1_key);
    gen_identity(&db1_key);
    let expect = base.join("expect");
    fs::write(&expect, format!("web1 {web1}\n")).unwrap();
    let rx: Vec<_> = [("web1", &web1_key), ("db1", &db1_key)]
        .iter()
        .map(|(name, key)| {
            receiver(
                &base.join(name),
                name,
                &[
                    "--identity",
                    key.to_str().unwrap(),
                    "--once",
                    "--timeout",
                    "30s",
                    "--idle-timeout",
                    "3s",
                ],
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let capture = Capture::start();
    let out = Push::new(
        &["--expect-file", expect.to_str().unwrap(), "--wait", "5s"],
        std::slice::from_ref(&src),
    )
    .run();
    std::thread::sleep(Duration::from_millis(200));
    let captured = capture.finish();
    assert_eq!(out.code(), Some(0), "{}", out.report());
    let aead = out.report()["encryption"].clone();
    assert!(
        aead == "AES-256-GCM" || aead == "ChaCha20-Poly1305",
        "{}",
        out.report()
    );
    let mut rx = rx.into_iter();
    let web1_out = wait_output(rx.next().unwrap(), Duration::from_secs(30));
    assert_eq!(web1_out.status.code(), Some(0));
    assert_eq!(
        fs::read_to_string(base.join("web1/etc/app.conf")).unwrap(),
        secret
    );
    let db1_out = wait_output(rx.next().unwrap(), Duration::from_secs(30));
    assert_ne!(db1_out.status.code(), Some(0));
    assert!(files(&base.join("db1")).is_empty());
    let problem = json(&db1_out)["problem"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(problem.contains("did not admit"), "{problem}");
    // What a listener recorded: DATA sealed, and no trace of the file.
    let data: Vec<_> = captured
        .iter()
        .filter(|d| d.len() > 3 && d[3] & 0x3f == wire::PacketType::Data as u8)
        .collect();
    assert!(data.len() > 50, "captured {} DATA datagrams", data.len());
    assert!(data.iter().all(|d| d[3] & mdp_proto::limits::ENC_FLAG != 0));
    assert!(!captured
        .iter()
        .any(|d| d.windows(11).any(|w| w == b"db_password")));
}

#[test]
fn a_recorded_push_replayed_after_a_receiver_restart_is_refused() {
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("secure-replay");
    let src = base.join("src/conf");
    fs::create_dir_all(&src).unwrap();
    let dir = base.join("cache");
    let start = || receiver(&dir, "web1", &["--timeout", "60s"]);
    let rx = start();
    std::thread::sleep(Duration::from_millis(300));
    // Version 1, recorded by a listener; then version 2.
    fs::write(
        src.join("app.conf"),
        b"version 1: an old, vulnerable setting\n",
    )
    .unwrap();
    let capture = Capture::start();
    let out = Push::new(
        &["--receivers", "1", "--wait", "1s"],
        std::slice::from_ref(&src),
    )
    .run();
    assert_eq!(out.code(), Some(0), "{}", out.report());
    std::thread::sleep(Duration::from_millis(200));
    let recorded = capture.finish();
    fs::write(src.join("app.conf"), b"version 2: fixed\n").unwrap();
    let out = Push::new(
        &["--receivers", "1", "--wait", "1s"],
        std::slice::from_ref(&src),
    )
    .run();
    assert_eq!(out.code(), Some(0), "{}", out.report());
    assert_eq!(
        fs::read(dir.join("conf/app.conf")).unwrap(),
        b"version 2: fixed\n"
    );
    // The receiver restarts (a reboot, a crash), and the attacker replays
    // the recording of version 1, well inside its signature's window.
    let mut rx = rx;
    rx.kill();
    let rx = start();
    std::thread::sleep(Duration::from_millis(300));
    let (sock, ep) = injector();
    let announces = recorded
        .iter()
        .filter(|d| d.len() > 3 && d[3] & 0x3f == wire::PacketType::Announce as u8)
        .count();
    assert!(announces > 0, "nothing recorded");
    for d in &recorded {
        let _ = sock.send_to(d, ep.group);
        std::thread::sleep(Duration::from_micros(200));
    }
    std::thread::sleep(Duration::from_millis(1000));
    let (_, err) = stop_service(rx);
    assert_eq!(
        fs::read(dir.join("conf/app.conf")).unwrap(),
        b"version 2: fixed\n",
        "the replay rolled the file back: {err}"
    );
    assert!(err.contains("accepted here before"), "{err}");
}

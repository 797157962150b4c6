//! End-to-end tests of the real `mdp-send` and `mdp-recv` binaries over real
//! loopback multicast.
//!
//! Each network test re-runs itself inside a private network namespace
//! (`unshare -n`, loopback up with a multicast route), so nothing can leave
//! the machine and parallel tests cannot hear each other, and a private PID
//! namespace, so that the receivers of a test that failed die with it. Without root they
//! run on the host's loopback instead (pinned to 127.0.0.1, TTL 1, one at a
//! time), except those that need root for packet filters or routes, which
//! say they are skipped. Files live in a temporary directory of the host
//! file system, shared with the namespace.

use mdp_net::socket::Endpoint;
use mdp_proto::wire::{self, Announce, Control, DataHeader, Timing};
use mdp_proto::{BlockNumber, Entry, EntryKind, Manifest, ObjectId, SessionId, SymbolId};
use mdp_sim::{netns, Content};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SEND: &str = env!("CARGO_BIN_EXE_mdp-send");
const RECV: &str = env!("CARGO_BIN_EXE_mdp-recv");
const INNER: &str = "MDP_E2E_INNER";

/// Where a network test's body runs.
#[allow(dead_code)] // the guard is held for its lifetime only
enum Net {
    /// Inside its own network namespace.
    Namespace,
    /// On the host's loopback (no namespace available), one test at a time.
    Host(std::sync::MutexGuard<'static, ()>),
}

/// One network test at a time: parallel pushes of tens of MiB on a small
/// machine would starve each other, and on the host they would share ports.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Decides where the calling test runs. With root it re-runs itself inside a
/// fresh network namespace: there this returns `Some(Net::Namespace)`, and
/// outside `None` after checking the inner run. Without namespaces
/// (or with `MDP_E2E_NO_NETNS=1`) it returns `Some(Net::Host(..))` so the test
/// runs on the host's loopback, pinned to 127.0.0.1 with TTL 1, unless it
/// `needs_root` (packet filters, routes), when it is skipped.
fn network(test: &str, needs_root: bool) -> Option<Net> {
    if std::env::var(INNER).as_deref() == Ok(test) {
        netns::setup_loopback().expect("loopback multicast in the namespace");
        return Some(Net::Namespace);
    }
    let turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if std::env::var_os("MDP_E2E_NO_NETNS").is_some() || !netns::available() {
        if needs_root {
            eprintln!("skipping {test}: needs root and `unshare -n` (a private network namespace)");
            return None;
        }
        eprintln!("note: {test}: no private network namespace; running on the host's loopback");
        return Some(Net::Host(turn));
    }
    let exe = std::env::current_exe().expect("test executable path");
    let out = Command::new("unshare")
        .args(netns::unshare_args().expect("checked available() above"))
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env(INNER, test)
        .output()
        .expect("unshare runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "{test} failed inside its namespace");
    assert!(
        text.contains("1 passed"),
        "{test} did not run inside its namespace"
    );
    None
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mdp-e2e-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn bytes(len: usize, seed: u64) -> Vec<u8> {
    Content::random_bytes(len, seed)
}

/// A 64 MiB file and a nested tree with an empty file and an empty directory.
fn make_source(root: &Path, big: usize) {
    fs::create_dir_all(root.join("tree/a/b")).unwrap();
    fs::create_dir_all(root.join("tree/emptydir")).unwrap();
    fs::write(root.join("big.bin"), bytes(big, 1)).unwrap();
    fs::write(root.join("tree/top.txt"), b"top\n").unwrap();
    fs::write(root.join("tree/a/mid.bin"), bytes(100_000, 2)).unwrap();
    fs::write(root.join("tree/a/b/deep.bin"), bytes(3_000_001, 3)).unwrap();
    fs::write(root.join("tree/a/b/empty"), b"").unwrap();
}

/// Asserts that `got` holds the same tree as `want` (names, bytes, modes).
fn assert_same_tree(want: &Path, got: &Path) {
    for entry in fs::read_dir(want).unwrap() {
        let entry = entry.unwrap();
        let w = entry.path();
        let g = got.join(entry.file_name());
        let wm = fs::metadata(&w).unwrap();
        let gm = fs::metadata(&g).unwrap_or_else(|_| panic!("{} missing", g.display()));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            wm.permissions().mode() & 0o777,
            gm.permissions().mode() & 0o777,
            "mode of {}",
            g.display()
        );
        if wm.is_dir() {
            assert!(gm.is_dir());
            assert_same_tree(&w, &g);
            let gm = fs::metadata(&g).unwrap();
            assert_eq!(
                wm.modified().unwrap(),
                gm.modified().unwrap(),
                "mtime of {}",
                g.display()
            );
        } else {
            assert!(
                fs::read(&w).unwrap() == fs::read(&g).unwrap(),
                "{} differs",
                g.display()
            );
            assert_eq!(
                wm.modified().unwrap(),
                gm.modified().unwrap(),
                "mtime of {}",
                g.display()
            );
        }
    }
}

fn receiver(dir: &Path, name: &str, extra: &[&str]) -> Child {
    Command::new(RECV)
        .arg("--dir")
        .arg(dir)
        .args(["--node-id", name, "--json", "-q"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mdp-recv starts")
}

/// Starts one `--once` receiver per name, each in `base/<name>`.
fn start_receivers(base: &Path, names: &[&str]) -> Vec<Child> {
    names
        .iter()
        .map(|n| receiver(&base.join(n), n, &["--once", "--timeout", "120s"]))
        .collect()
}

/// The sender with `--json` and `args`, pushing `paths`.
fn sender(args: &[&str], paths: &[PathBuf]) -> Command {
    let mut c = Command::new(SEND);
    c.arg("--json").args(args).args(paths);
    // Its hash cache goes to the test's temporary area, not ~/.cache.
    c.env("XDG_CACHE_HOME", std::env::temp_dir().join("mdp-e2e-cache"));
    c
}

/// Waits for each receiver, checks it exited 0 with `src` intact in its directory.
fn assert_receivers_complete(rx: Vec<Child>, base: &Path, names: &[&str], src: &Path) {
    for (child, name) in rx.into_iter().zip(names) {
        let out = wait_output(child, Duration::from_secs(30));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(json(&out)["complete"], true, "{name}");
        let dir = base.join(name);
        assert_same_tree(src, &dir);
        // Nothing is left in the temporary area but the index of placed files.
        let left: Vec<String> = fs::read_dir(dir.join(".mdp-tmp"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "index")
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "{name}: left in .mdp-tmp: {left:?}");
    }
}

/// Pushes `src/big.bin` and `src/tree` to three fresh receivers under
/// `base`, checks that the sender exits 0 with every receiver confirmed and
/// that each copy is intact, and returns the sender's report.
fn push_to_three(base: &Path, src: &Path) -> serde_json::Value {
    let names = ["r0", "r1", "r2"];
    let rx = start_receivers(base, &names);
    let send = sender(
        &["--receivers", "3", "--timeout", "120s"],
        &[src.join("big.bin"), src.join("tree")],
    )
    .output()
    .unwrap();
    let report = json(&send);
    println!("sender: {report}");
    assert_eq!(send.status.code(), Some(0), "sender: {report}");
    assert_eq!(report["success"], true);
    assert_eq!(report["files"], 5);
    assert_eq!(report["receivers"].as_array().unwrap().len(), 3);
    for r in report["receivers"].as_array().unwrap() {
        assert_eq!(r["verdict"], "confirmed", "{r}");
    }
    assert_receivers_complete(rx, base, &names, src);
    report
}

fn wait_output(child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    let mut child = child;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "process ran over {limit:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `path` holds at least `n` lines, at most `limit`.
fn wait_for_lines(path: &Path, n: usize, limit: Duration) {
    let start = Instant::now();
    while fs::read_to_string(path).map_or(0, |t| t.lines().count()) < n {
        assert!(
            start.elapsed() < limit,
            "{} has fewer than {n} lines after {limit:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Ends a receiver service with SIGTERM, checks that it exits 0, and
/// returns the JSON line of each push it took, and its stderr.
fn stop_service(service: Child) -> (Vec<serde_json::Value>, String) {
    let term = Command::new("kill")
        .args(["-TERM", &service.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let out = wait_output(service, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "the service: {stderr}");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, stderr)
}

fn json(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_else(|| {
        panic!(
            "no JSON on stdout; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"))
}

#[test]
fn pushes_a_64_mib_file_and_a_nested_tree_to_three_receivers() {
    let Some(_net) = network(
        "pushes_a_64_mib_file_and_a_nested_tree_to_three_receivers",
        false,
    ) else {
        return;
    };
    let base = temp_dir("push3");
    let src = base.join("src");
    make_source(&src, 64 << 20);
    push_to_three(&base, &src);
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_receiver_killed_mid_push_makes_the_sender_exit_1_naming_it() {
    let Some(_net) = network(
        "a_receiver_killed_mid_push_makes_the_sender_exit_1_naming_it",
        false,
    ) else {
        return;
    };
    let base = temp_dir("kill");
    let src = base.join("src");
    make_source(&src, 64 << 20);
    let mut rx = start_receivers(&base, &["steady0", "victim", "steady1"]);
    // 64 MiB at 100 Mbit/s takes over 5 s: the kill lands mid-push.
    let send = sender(
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
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let mut victim = rx.remove(1);
    victim.kill().unwrap();
    let _ = victim.wait();
    let killed_at = Instant::now();
    let out = wait_output(send, Duration::from_secs(60));
    let report = json(&out);
    println!(
        "sender: {report} (ended {:?} after the kill)",
        killed_at.elapsed()
    );
    assert_eq!(out.status.code(), Some(1));
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
fn a_closed_group_with_a_host_that_never_starts_exits_1_naming_it() {
    let Some(_net) = network(
        "a_closed_group_with_a_host_that_never_starts_exits_1_naming_it",
        false,
    ) else {
        return;
    };
    let base = temp_dir("closed");
    let src = base.join("src");
    make_source(&src, 1 << 20);
    let rx = start_receivers(&base, &["web1", "web2"]);
    let started = Instant::now();
    let out = sender(
        &[
            "--expect",
            "web1,web2,web3",
            "--wait",
            "2s",
            "--drop-after",
            "1s",
            "--timeout",
            "60s",
        ],
        &[src.join("tree")],
    )
    .output()
    .unwrap();
    let took = started.elapsed();
    let report = json(&out);
    println!("sender: {report} (took {took:?})");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(report["success"], false);
    assert_eq!(report["expected"], 3);
    assert_eq!(report["confirmed"], 2);
    let receivers = report["receivers"].as_array().unwrap();
    let ghost = receivers
        .iter()
        .find(|r| r["name"] == "web3")
        .expect("the host that never started is in the report");
    assert_eq!(ghost["verdict"], "never_registered");
    assert_eq!(ghost["node"], serde_json::Value::Null);
    assert_eq!(ghost["expected"], true);
    assert!(
        report["problem"]
            .as_str()
            .unwrap()
            .contains("web3 (never registered)"),
        "{report}"
    );
    // Ends after the wait and the drop delay, far below --timeout.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    for (child, name) in rx.into_iter().zip(["web1", "web2"]) {
        let out = wait_output(child, Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(0), "{name}");
        assert_same_tree(&src.join("tree"), &base.join(name).join("tree"));
    }
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_repeated_push_of_an_unchanged_tree_sends_only_a_handshake() {
    let Some(_net) = network(
        "a_repeated_push_of_an_unchanged_tree_sends_only_a_handshake",
        false,
    ) else {
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
fn a_receiver_service_takes_three_pushes_and_runs_its_hooks_each_time() {
    let Some(_net) = network(
        "a_receiver_service_takes_three_pushes_and_runs_its_hooks_each_time",
        false,
    ) else {
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
                "echo \"$MDP_SESSION $MDP_FILE_COUNT $MDP_CHANGED_COUNT $MDP_SENDER\" >> {}",
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
        let out = sender(
            &["--receivers", "1", "--timeout", "60s"],
            &[src.join("tree")],
        )
        .output()
        .unwrap();
        let report = json(&out);
        assert_eq!(out.status.code(), Some(0), "push {round}: {report}");
        sessions.push(report["session"].as_str().unwrap().to_string());
        // The sender exits once the receiver confirmed, and the receiver
        // confirms only after its tree is final (directory times too): a
        // cron job may read it right away. (Before, directory times were
        // set at the sender's DONE, and this comparison raced them.)
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
fn a_sender_killed_with_sigkill_then_rerun_completes_sending_only_what_is_missing() {
    let Some(_net) = network(
        "a_sender_killed_with_sigkill_then_rerun_completes_sending_only_what_is_missing",
        false,
    ) else {
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
    let mut first = sender(
        &["--receivers", "1", "--rate", "40M"],
        std::slice::from_ref(&src),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(3500));
    first.kill().unwrap(); // SIGKILL: no DONE, no goodbye
    let _ = first.wait();
    let placed_before = fs::read_dir(dir.join("parts"))
        .map(|d| d.count())
        .unwrap_or(0);
    // The same push again, at full speed.
    let out = sender(
        &["--receivers", "1", "--timeout", "60s"],
        std::slice::from_ref(&src),
    )
    .output()
    .unwrap();
    let report = json(&out);
    println!("rerun: {report} ({placed_before} files were placed before the kill)");
    assert_eq!(out.status.code(), Some(0), "{report}");
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
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn delete_removes_what_the_sender_no_longer_has_and_only_below_pushed_directories() {
    let Some(_net) = network(
        "delete_removes_what_the_sender_no_longer_has_and_only_below_pushed_directories",
        false,
    ) else {
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
    let out = sender(
        &["--receivers", "1", "--delete", "--timeout", "60s"],
        &[src.join("tree"), src.join("big.bin")],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", json(&out));
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
fn a_file_changed_while_it_is_pushed_fails_clearly_and_is_never_placed() {
    let Some(_net) = network(
        "a_file_changed_while_it_is_pushed_fails_clearly_and_is_never_placed",
        false,
    ) else {
        return;
    };
    let base = temp_dir("changing");
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    let file = src.join("growing.log");
    fs::write(&file, bytes(32 << 20, 5)).unwrap();
    let rx = start_receivers(&base, &["r0"]);
    // 32 MiB at 50 Mbit/s take over 5 s: the change lands mid-push.
    let send = sender(
        &["--receivers", "1", "--rate", "50M"],
        std::slice::from_ref(&file),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    {
        use std::io::Write;
        let mut f = fs::OpenOptions::new().append(true).open(&file).unwrap();
        f.write_all(b"one more line\n").unwrap();
    }
    let out = wait_output(send, Duration::from_secs(30));
    let report = json(&out);
    println!("sender: {report}");
    assert_eq!(out.status.code(), Some(1));
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
fn a_receiver_refuses_a_push_beyond_its_limits_and_the_sender_names_why() {
    let Some(_net) = network(
        "a_receiver_refuses_a_push_beyond_its_limits_and_the_sender_names_why",
        false,
    ) else {
        return;
    };
    let base = temp_dir("limits");
    let src = base.join("src");
    make_source(&src, 2 << 20);
    let strict = receiver(
        &base.join("strict"),
        "strict",
        &["--once", "--timeout", "60s", "--max-file-size", "1M"],
    );
    let fine = receiver(&base.join("fine"), "fine", &["--once", "--timeout", "60s"]);
    let started = Instant::now();
    let out = sender(
        &["--receivers", "2", "--timeout", "60s"],
        &[src.join("big.bin"), src.join("tree")],
    )
    .output()
    .unwrap();
    let report = json(&out);
    println!("sender: {report}");
    assert_eq!(out.status.code(), Some(1));
    let r = report["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "strict")
        .unwrap()
        .clone();
    assert_eq!(r["verdict"], "failed", "{r}");
    assert!(r["failed"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["reason"] == "refused"));
    // Refused at once, not dropped after --drop-after.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let got = wait_output(strict, Duration::from_secs(10));
    let line = json(&got);
    assert_eq!(got.status.code(), Some(1));
    assert!(
        line["problem"]
            .as_str()
            .unwrap()
            .contains("--max-file-size"),
        "{line}"
    );
    assert!(!base.join("strict/big.bin").exists());
    let ok = wait_output(fine, Duration::from_secs(10));
    assert_eq!(ok.status.code(), Some(0));
    assert_same_tree(&src.join("tree"), &base.join("fine/tree"));
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_push_that_cannot_be_placed_is_refused_at_once_with_the_reason() {
    let Some(_net) = network(
        "a_push_that_cannot_be_placed_is_refused_at_once_with_the_reason",
        false,
    ) else {
        return;
    };
    let base = temp_dir("blocked");
    let src = base.join("src");
    make_source(&src, 1 << 20);
    // A regular file where the push needs its directory.
    fs::create_dir_all(base.join("r0")).unwrap();
    fs::write(base.join("r0/tree"), b"in the way").unwrap();
    let rx = start_receivers(&base, &["r0"]);
    let started = Instant::now();
    let out = sender(&["--receivers", "1"], &[src.join("tree")])
        .output()
        .unwrap();
    let report = json(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert_eq!(report["receivers"][0]["verdict"], "failed", "{report}");
    assert_eq!(report["receivers"][0]["failed"][0]["reason"], "refused");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let got = wait_output(rx.into_iter().next().unwrap(), Duration::from_secs(10));
    let line = json(&got);
    assert!(
        line["problem"]
            .as_str()
            .unwrap()
            .contains("is not a directory"),
        "{line}"
    );
    assert_eq!(fs::read(base.join("r0/tree")).unwrap(), b"in the way");
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_push_through_5_percent_loss_arrives_intact_everywhere() {
    let Some(_net) = network(
        "a_push_through_5_percent_loss_arrives_intact_everywhere",
        true,
    ) else {
        return;
    };
    // Drop 5 % of the datagrams arriving on either port. On one host the
    // kernel loops multicast back once for all sockets, so this loss is
    // shared by the receivers (correlated); the simulator covers
    // independent loss.
    if !nft_rules(&[
        "add table inet mdploss",
        "add chain inet mdploss in { type filter hook input priority 0; }",
        "add rule inet mdploss in udp dport 7400 numgen random mod 100 < 5 drop",
        "add rule inet mdploss in udp dport 7401 numgen random mod 100 < 5 drop",
    ]) {
        return;
    }
    let base = temp_dir("loss");
    let src = base.join("src");
    make_source(&src, 16 << 20);
    let report = push_to_three(&base, &src);
    let repairs = report["stats"]["repair_symbols"].as_u64().unwrap();
    assert!(repairs > 0, "5 % loss needed repairs");
    let wire = report["stats"]["wire_bytes_per_file_byte"]
        .as_f64()
        .unwrap();
    assert!(wire < 1.3, "{wire} wire bytes per file byte at 5 % loss");
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_receiver_with_few_file_descriptors_takes_a_tree_of_many_files() {
    let Some(_net) = network(
        "a_receiver_with_few_file_descriptors_takes_a_tree_of_many_files",
        false,
    ) else {
        return;
    };
    let base = temp_dir("fds");
    let src = base.join("src/many");
    fs::create_dir_all(&src).unwrap();
    for i in 0..1000 {
        fs::write(src.join(format!("f{i:04}")), bytes(10 + i % 300, i as u64)).unwrap();
    }
    // The receiver may hold 256 descriptors: far fewer than the files.
    let dir = base.join("r0");
    let rx = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 256 && exec "$0" --dir "$1" --name r0 --json -q --once --timeout 60s"#)
        .arg(RECV)
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let send = sender(
        &["--receivers", "1", "--timeout", "60s"],
        std::slice::from_ref(&src),
    )
    .output()
    .unwrap();
    let report = json(&send);
    assert_eq!(send.status.code(), Some(0), "{report}");
    assert_receivers_complete(vec![rx], &base, &["r0"], &base.join("src"));
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn an_interrupted_sender_reports_and_tells_the_receivers_at_once() {
    let Some(_net) = network(
        "an_interrupted_sender_reports_and_tells_the_receivers_at_once",
        false,
    ) else {
        return;
    };
    let base = temp_dir("sigint");
    let src = base.join("src");
    make_source(&src, 64 << 20);
    let rx = start_receivers(&base, &["r0"]);
    // 64 MiB at 50 Mbit/s takes ten seconds: SIGINT lands mid-push.
    let send = sender(
        &["--receivers", "1", "--rate", "50M"],
        &[src.join("big.bin")],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let int = Command::new("kill")
        .args(["-INT", &send.id().to_string()])
        .status()
        .unwrap();
    assert!(int.success());
    let out = wait_output(send, Duration::from_secs(5));
    let report = json(&out);
    println!("sender: {report}");
    assert_eq!(out.status.code(), Some(1));
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
fn pushes_over_ipv6_loopback_multicast() {
    let Some(_net) = network("pushes_over_ipv6_loopback_multicast", true) else {
        return;
    };
    let ok = Command::new("ip")
        .args([
            "-6",
            "route",
            "add",
            "local",
            "ff15::/16",
            "dev",
            "lo",
            "table",
            "local",
        ])
        .status()
        .unwrap();
    assert!(ok.success(), "IPv6 multicast route on loopback");
    let base = temp_dir("ipv6");
    let src = base.join("src");
    make_source(&src, 4 << 20);
    let net = ["--group", "[ff15::77]:7400", "--interface", "::1"];
    let rx: Vec<_> = ["r0", "r1"]
        .iter()
        .map(|n| {
            let mut extra = vec!["--once", "--timeout", "60s"];
            extra.extend(net);
            receiver(&base.join(n), n, &extra)
        })
        .collect();
    let mut args = vec!["--receivers", "2", "--timeout", "60s"];
    args.extend(net);
    let send = sender(&args, &[src.join("big.bin"), src.join("tree")])
        .output()
        .unwrap();
    let report = json(&send);
    assert_eq!(send.status.code(), Some(0), "{report}");
    assert_receivers_complete(rx, &base, &["r0", "r1"], &src);
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn interfaces_by_name_and_dscp_marks_reach_the_wire() {
    let Some(_net) = network("interfaces_by_name_and_dscp_marks_reach_the_wire", true) else {
        return;
    };
    // Count, in the kernel, the pushes' packets that carry DSCP AF11 (10).
    let nft = |args: &str| {
        let ok = Command::new("sh")
            .args(["-c", &format!("nft {args}")])
            .status()
            .unwrap();
        assert!(ok.success(), "nft {args}");
    };
    nft("add table inet mdpdscp");
    nft("'add chain inet mdpdscp out { type filter hook output priority 0 ; }'");
    nft("add rule inet mdpdscp out ip dscp af11 udp dport 7400 counter");
    let base = temp_dir("dscp");
    let src = base.join("src");
    make_source(&src, 1 << 20);
    let rx = receiver(
        &base.join("r0"),
        "r0",
        &["--once", "--timeout", "60s", "--interface", "lo"],
    );
    let send = sender(
        &["--receivers", "1", "--interface", "lo", "--dscp", "10"],
        &[src.join("tree")],
    )
    .output()
    .unwrap();
    assert_eq!(send.status.code(), Some(0), "{}", json(&send));
    assert_eq!(
        wait_output(rx, Duration::from_secs(20)).status.code(),
        Some(0)
    );
    assert_same_tree(&src.join("tree"), &base.join("r0/tree"));
    let listed = Command::new("nft")
        .args(["list", "chain", "inet", "mdpdscp", "out"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&listed.stdout);
    let packets: u64 = text
        .split("counter packets ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        packets > 10,
        "DSCP-marked data packets seen: {packets}\n{text}"
    );
    // A name that is not an interface, or an address the host lacks, is
    // refused in one line before anything is sent.
    for (bad, says) in [
        ("eth99", "no interface named"),
        ("10.9.9.9", "no interface of this host"),
    ] {
        let out = Command::new(SEND)
            .args(["--interface", bad])
            .arg(src.join("tree"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says) && err.lines().count() == 1, "{err}");
    }
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn unicast_mode_pushes_to_each_receiver_over_ipv4_and_ipv6() {
    let Some(_net) = network(
        "unicast_mode_pushes_to_each_receiver_over_ipv4_and_ipv6",
        false,
    ) else {
        return;
    };
    let base = temp_dir("unicast");
    let src = base.join("src");
    make_source(&src, 4 << 20);
    for (family, local) in [("v4", "127.0.0.1"), ("v6", "::1")] {
        let dest = |port: u16| {
            if family == "v4" {
                format!("127.0.0.1:{port}")
            } else {
                format!("[::1]:{port}")
            }
        };
        let names = [format!("{family}-a"), format!("{family}-b")];
        let rx: Vec<Child> = names
            .iter()
            .zip([7500u16, 7600])
            .map(|(n, port)| {
                let group = if family == "v4" {
                    format!("239.255.77.1:{port}")
                } else {
                    format!("[ff15::77]:{port}")
                };
                receiver(
                    &base.join(n),
                    n,
                    &[
                        "--once",
                        "--timeout",
                        "60s",
                        "--unicast",
                        "--interface",
                        local,
                        "--group",
                        &group,
                    ],
                )
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let group = if family == "v4" {
            "239.255.77.1:7400"
        } else {
            "[ff15::77]:7400"
        };
        let out = sender(
            &[
                "--receivers",
                "2",
                "--interface",
                local,
                "--group",
                group,
                "--to",
                &dest(7500),
                "--to",
                &dest(7600),
            ],
            &[src.join("big.bin"), src.join("tree")],
        )
        .output()
        .unwrap();
        let report = json(&out);
        println!("{family}: {report}");
        assert_eq!(out.status.code(), Some(0), "{family}: {report}");
        // Two copies of the data, one per receiver.
        let wire = report["stats"]["wire_bytes_per_file_byte"]
            .as_f64()
            .unwrap();
        assert!((2.0..2.3).contains(&wire), "{family}: {wire}");
        let n: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_receivers_complete(rx, &base, &n, &src);
    }
    fs::remove_dir_all(&base).unwrap();
}

/// Runs `sh -c cmd` and asserts it worked.
/// Applies nftables `rules` (words split at spaces) in the test's
/// namespace; false, with a skip message, when nft is missing.
fn nft_rules(rules: &[&str]) -> bool {
    if Command::new("nft").arg("--version").output().is_err() {
        eprintln!("skipping: needs nft (Debian package nftables; .ci/run installs it)");
        return false;
    }
    for rule in rules {
        let ok = Command::new("nft").args(rule.split(' ')).status().unwrap();
        assert!(ok.success(), "nft {rule}");
    }
    true
}

fn sh(cmd: &str) {
    let ok = Command::new("sh").args(["-c", cmd]).status().unwrap();
    assert!(ok.success(), "{cmd}");
}

/// IP fragments this namespace's kernel has made so far (`FragCreates`).
fn fragments_made() -> u64 {
    let snmp = fs::read_to_string("/proc/net/snmp").unwrap();
    let mut ip = snmp.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (ip.next().unwrap(), ip.next().unwrap());
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "FragCreates")
        .map(|(_, v)| v.parse().unwrap())
        .expect("FragCreates in /proc/net/snmp")
}

#[test]
fn symbols_fill_a_packet_of_the_mtu_and_larger_ones_are_named_at_both_ends() {
    let Some(_net) = network(
        "symbols_fill_a_packet_of_the_mtu_and_larger_ones_are_named_at_both_ends",
        true,
    ) else {
        return;
    };
    // Loopback with an Ethernet's MTU instead of its 64 KiB.
    sh("ip link set lo mtu 1500");
    let base = temp_dir("mtu");
    let src = base.join("src");
    make_source(&src, 1 << 20);
    let push = |name: &str, extra: &[&str]| {
        let rx = receiver(&base.join(name), name, &["--once", "--timeout", "60s"]);
        let before = fragments_made();
        let mut args = vec!["--receivers", "1"];
        args.extend(extra);
        let send = sender(&args, &[src.join("tree")]).output().unwrap();
        assert_eq!(send.status.code(), Some(0), "{}", json(&send));
        let got = wait_output(rx, Duration::from_secs(20));
        assert_eq!(got.status.code(), Some(0));
        assert_same_tree(&src.join("tree"), &base.join(name).join("tree"));
        (
            json(&send),
            String::from_utf8_lossy(&send.stderr).into_owned(),
            String::from_utf8_lossy(&got.stderr).into_owned(),
            fragments_made() - before,
        )
    };
    // By default a DATA datagram fills one 1500-byte packet, no more.
    let (report, send_err, recv_err, fragments) = push("fit", &[]);
    assert_eq!(report["symbol_size"], 1444, "{report}");
    assert_eq!(fragments, 0, "{send_err}");
    assert!(!send_err.contains("do not fit"), "{send_err}");
    assert!(!recv_err.contains("do not fit"), "{recv_err}");
    // Larger symbols still arrive, in fragments, and both ends say why
    // that is worse and what fits.
    let (report, send_err, recv_err, fragments) = push("big", &["--symbol-size", "4000"]);
    assert_eq!(report["symbol_size"], 4000, "{report}");
    assert!(fragments > 0);
    assert!(
        send_err.contains("4000-byte symbols do not fit in one packet on --interface 127.0.0.1, whose MTU is 1500 bytes")
            && send_err.contains("--symbol-size 1444 or less"),
        "{send_err}"
    );
    assert!(
        recv_err.contains("the sender's 4000-byte symbols do not fit in one packet on this interface, whose MTU is 1500 bytes")
            && recv_err.contains("--symbol-size 1444` or less"),
        "{recv_err}"
    );
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_sender_on_two_networks_reaches_receivers_on_either_and_survives_one_failing() {
    let Some(_net) = network(
        "a_sender_on_two_networks_reaches_receivers_on_either_and_survives_one_failing",
        true,
    ) else {
        return;
    };
    // Two networks inside this namespace: veth pairs va0-va1 and vb0-vb1.
    for (n, net) in [("a", 1), ("b", 2)] {
        sh(&format!("ip link add v{n}0 type veth peer name v{n}1"));
        sh(&format!("ip addr add 10.91.{net}.1/24 dev v{n}0"));
        sh(&format!("ip addr add 10.91.{net}.2/24 dev v{n}1"));
        sh(&format!("ip link set v{n}0 up && ip link set v{n}1 up"));
    }
    // Both ends are this host: accept its own addresses as sources.
    sh("for f in /proc/sys/net/ipv4/conf/*/accept_local; do echo 1 > $f; done");
    sh("for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > $f; done");
    let base = temp_dir("multi");
    let src = base.join("src");
    make_source(&src, 4 << 20);
    let push = |names: &[(&str, &[&str])]| {
        let rx: Vec<Child> = names
            .iter()
            .map(|(n, ifaces)| {
                let mut extra = vec!["--once", "--timeout", "60s"];
                for i in *ifaces {
                    extra.extend(["--interface", i]);
                }
                receiver(&base.join(n), n, &extra)
            })
            .collect();
        let count = names.len().to_string();
        let out = sender(
            &[
                "--receivers",
                &count,
                "--interface",
                "va0",
                "--interface",
                "vb0",
                "--timeout",
                "60s",
            ],
            &[src.join("big.bin"), src.join("tree")],
        )
        .output()
        .unwrap();
        let n: Vec<String> = names.iter().map(|(n, _)| n.to_string()).collect();
        (out, rx, n)
    };
    // Receivers on network A, on network B, and on both.
    let (out, rx, n) = push(&[
        ("on-a", &["va1"]),
        ("on-b", &["vb1"]),
        ("on-both", &["va1", "vb1"]),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", json(&out));
    let n: Vec<&str> = n.iter().map(String::as_str).collect();
    assert_receivers_complete(rx, &base, &n, &src);
    for d in ["on-a", "on-b", "on-both"] {
        fs::remove_dir_all(base.join(d)).unwrap();
    }
    // Network A fails (everything arriving on va1 dropped): the receiver
    // on both networks completes through B.
    sh("nft add table inet mdpnet");
    sh("nft 'add chain inet mdpnet in { type filter hook input priority 0 ; }'");
    sh("nft add rule inet mdpnet in iifname va1 udp dport 7400 drop");
    let (out, rx, n) = push(&[("on-b", &["vb1"]), ("on-both", &["va1", "vb1"])]);
    assert_eq!(out.status.code(), Some(0), "{}", json(&out));
    let n: Vec<&str> = n.iter().map(String::as_str).collect();
    assert_receivers_complete(rx, &base, &n, &src);
    fs::remove_dir_all(&base).unwrap();
}

fn announce(session: SessionId, manifest_bytes: &[u8], object_count: u32) -> Vec<u8> {
    let mut buf = Vec::new();
    wire::write_control(
        &mut buf,
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
            manifest_len: manifest_bytes.len() as u64,
            manifest_hash: *blake3::hash(manifest_bytes).as_bytes(),
            object_count,
            data_pos: (0, 0),
            acked: vec![],
            delete: false,
        }),
    );
    buf
}

fn data(session: SessionId, object: u32, esi: u16, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    wire::write_data(
        &mut buf,
        &DataHeader {
            session,
            object: ObjectId(object),
            block: BlockNumber(0),
            esi: SymbolId(esi),
            flags: 0,
            seq: esi as u32,
        },
        payload,
    );
    buf
}

/// A socket that sends hand-made datagrams to the default group on
/// loopback, as a sender would, and the endpoint it sends to.
fn injector() -> (std::net::UdpSocket, Endpoint) {
    let ep = Endpoint {
        group: "239.255.77.1:7400".parse().unwrap(),
        interface: "127.0.0.1".parse().unwrap(),
        ttl: 1,
        index: 0,
        dscp: 0,
        unicast: false,
    };
    (mdp_net::socket::sender(&ep).unwrap(), ep)
}

fn evil_manifest(path: &str, size: u64) -> Vec<u8> {
    Manifest {
        entries: vec![Entry {
            path: path.into(),
            kind: EntryKind::File {
                size,
                hash: [7; 32],
            },
            mode: 0o6777,
            mtime_secs: 0,
            mtime_nanos: 0,
        }],
    }
    .encode()
}

#[test]
fn hostile_datagrams_never_crash_a_receiver_nor_write_outside_its_directory() {
    let Some(_net) = network(
        "hostile_datagrams_never_crash_a_receiver_nor_write_outside_its_directory",
        false,
    ) else {
        return;
    };
    let base = temp_dir("hostile");
    let dir = base.join("cache");
    let rx = receiver(
        &dir,
        "target",
        &["--timeout", "60s", "--idle-timeout", "2s"],
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
    let push = sender(
        &["--receivers", "1", "--timeout", "30s"],
        &[src.join("tree")],
    )
    .output()
    .unwrap();
    assert_eq!(
        push.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&push.stdout)
    );
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
    let Some(_net) = network(
        "with_a_key_forged_and_unauthenticated_pushes_change_nothing_on_disk",
        false,
    ) else {
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
    let plain = sender(
        &["--receivers", "1", "--wait", "1s", "--drop-after", "1s"],
        &[src.join("tree")],
    )
    .output()
    .unwrap();
    assert_eq!(
        plain.status.code(),
        Some(1),
        "nobody took the unauthenticated push"
    );
    // 2. A push with another key: refused.
    let other = sender(
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
    .output()
    .unwrap();
    assert_eq!(
        other.status.code(),
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
    let good = sender(
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
    .output()
    .unwrap();
    assert_eq!(good.status.code(), Some(0), "{}", json(&good));
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

#[test]
fn usage_errors_exit_2_with_one_line_that_says_what_to_do() {
    let out = Command::new(SEND).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PATH"));
    let out = Command::new(SEND)
        .args(["--rate", "fast", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("800M"), "{err}");
    let out = Command::new(SEND)
        .args(["--group", "10.1.2.3:5", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("239.0.0.0/8"));
    let out = Command::new(SEND)
        .arg("/nonexistent/mdp-e2e")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<_> = err
        .lines()
        .filter(|l| l.starts_with("mdp-send: error:"))
        .collect();
    assert_eq!(
        errors,
        ["mdp-send: error: cannot read /nonexistent/mdp-e2e: No such file or directory (os error 2)"],
        "{err}"
    );
    let out = Command::new(RECV).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    for bin in [SEND, RECV] {
        let out = Command::new(bin).arg("--help").output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("Examples:") && help.contains("Exit status:"),
            "{help}"
        );
        let out = Command::new(bin).arg("-h").output().unwrap();
        assert_eq!(out.status.code(), Some(0));
    }
}

#[test]
fn a_receiver_timeout_says_whether_a_push_was_under_way_and_how_far_it_got() {
    let Some(_net) = network(
        "a_receiver_timeout_says_whether_a_push_was_under_way_and_how_far_it_got",
        false,
    ) else {
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
    let send = sender(
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
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
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
    let out = wait_output(send, Duration::from_secs(60));
    assert_eq!(
        out.status.code(),
        Some(1),
        "the sender names the receiver that left"
    );
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_sender_whose_every_send_fails_ends_in_seconds_and_says_why() {
    let Some(_net) = network(
        "a_sender_whose_every_send_fails_ends_in_seconds_and_says_why",
        true,
    ) else {
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
    let send = sender(
        &["--receivers", "1", "--wait", "60s", "--timeout", "60s"],
        &[src.join("f.bin")],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let out = wait_output(send, Duration::from_secs(60));
    let took = started.elapsed();
    let report = json(&out);
    println!("sender after {took:?}: {report}");
    assert_eq!(out.status.code(), Some(1));
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
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("check this host's firewall"), "{err}");
    fs::remove_dir_all(&base).unwrap();
}

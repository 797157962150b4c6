//! What every end-to-end test shares: where it runs (its own network
//! namespace, or the host's loopback), scratch directories and generated
//! trees, the two binaries (receivers, and a [`Push`] of the sender), waiting
//! on them, reading their JSON, comparing trees, and the namespace's packet
//! filters and routes.
//!
//! **Invariant:** a network test touches the network only after
//! [`network`] or [`network_as_root`] returned `Some`, and holds the returned
//! [`Net`] until it ends: inside a namespace nothing leaves the machine, on
//! the host only one network test runs at a time.

use mdp_sim::{netns, Content};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const SEND: &str = env!("CARGO_BIN_EXE_mdp-send");
pub const RECV: &str = env!("CARGO_BIN_EXE_mdp-recv");
const INNER: &str = "MDP_E2E_INNER";

/// Where a network test's body runs.
#[allow(dead_code)] // the guard is held for its lifetime only
pub enum Net {
    /// Inside its own network namespace.
    Namespace,
    /// On the host's loopback (no namespace available), one test at a time.
    Host(std::sync::MutexGuard<'static, ()>),
}

/// One network test at a time: parallel pushes of tens of MiB on a small
/// machine would starve each other, and on the host they would share ports.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Where the calling test runs; see [`enter`]. It may fall back to the
/// host's loopback.
pub fn network() -> Option<Net> {
    enter(false)
}

/// Where the calling test runs, when it needs root (packet filters,
/// routes): skipped, with a message, where there is no private namespace.
pub fn network_as_root() -> Option<Net> {
    enter(true)
}

/// The running test's full name (`module::function`): libtest names each
/// test's thread after it, and `--exact` wants it whole.
fn test_name() -> String {
    let name = std::thread::current()
        .name()
        .expect("a test runs on a thread named after it")
        .to_string();
    assert_ne!(name, "main", "a test runs on a thread named after it");
    name
}

/// Decides where the calling test runs. With root it re-runs itself inside a
/// fresh network namespace: there this returns `Some(Net::Namespace)`, and
/// outside `None` after checking the inner run. Without namespaces
/// (or with `MDP_E2E_NO_NETNS=1`) it returns `Some(Net::Host(..))` so the test
/// runs on the host's loopback, pinned to 127.0.0.1 with TTL 1, unless it
/// `needs_root` (packet filters, routes), when it is skipped.
fn enter(needs_root: bool) -> Option<Net> {
    let test = test_name();
    if std::env::var(INNER).as_deref() == Ok(test.as_str()) {
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
        .args(["--exact", &test, "--nocapture", "--test-threads", "1"])
        .env(INNER, &test)
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

/// A fresh, empty scratch directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mdp-e2e-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    Content::random_bytes(len, seed)
}

/// A `big`-byte file and a nested tree with an empty file and an empty
/// directory.
pub fn make_source(root: &Path, big: usize) {
    fs::create_dir_all(root.join("tree/a/b")).unwrap();
    fs::create_dir_all(root.join("tree/emptydir")).unwrap();
    fs::write(root.join("big.bin"), bytes(big, 1)).unwrap();
    fs::write(root.join("tree/top.txt"), b"top\n").unwrap();
    fs::write(root.join("tree/a/mid.bin"), bytes(100_000, 2)).unwrap();
    fs::write(root.join("tree/a/b/deep.bin"), bytes(3_000_001, 3)).unwrap();
    fs::write(root.join("tree/a/b/empty"), b"").unwrap();
}

/// Asserts that `got` holds the same tree as `want` (names, bytes, modes).
pub fn assert_same_tree(want: &Path, got: &Path) {
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

/// The identity the tests' pushes are signed with (made once per test
/// process with `mdp-send --gen-identity`): its key file and its public
/// key line, which [`receiver`] trusts unless told otherwise.
pub fn test_identity() -> &'static (PathBuf, String) {
    static ID: std::sync::OnceLock<(PathBuf, String)> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("mdp-e2e-identity-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let key = dir.join("sender.key");
        (key.clone(), gen_identity(&key))
    })
}

/// `mdp-send --gen-identity PATH`; returns the public key line it printed.
pub fn gen_identity(path: &Path) -> String {
    let out = Command::new(SEND)
        .arg("--gen-identity")
        .arg(path)
        .output()
        .expect("mdp-send runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `mdp-recv --dir DIR --node-id NAME --json -q EXTRA`, its output piped;
/// it trusts [`test_identity`] unless `extra` has `--trust` or
/// `--insecure`.
pub fn receiver(dir: &Path, name: &str, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(RECV);
    cmd.arg("--dir")
        .arg(dir)
        .args(["--node-id", name, "--json", "-q"])
        .args(extra);
    if !extra.iter().any(|a| *a == "--trust" || *a == "--insecure") {
        cmd.args(["--trust", &test_identity().1]);
    }
    Proc::spawn(&mut cmd)
}

/// Starts one `--once` receiver per name, each in `base/<name>`.
pub fn start_receivers(base: &Path, names: &[&str]) -> Vec<Proc> {
    names
        .iter()
        .map(|n| receiver(&base.join(n), n, &["--once", "--timeout", "120s"]))
        .collect()
}

/// Waits for each receiver, checks it exited 0 with `src` intact in its directory.
pub fn assert_receivers_complete(rx: Vec<Proc>, base: &Path, names: &[&str], src: &Path) {
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
                    .filter(|n| n != "index" && n != "sessions")
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "{name}: left in .mdp-tmp: {left:?}");
    }
}

/// One run of `mdp-send --json ARGS PATHS`, its hash cache in the tests'
/// temporary area rather than ~/.cache.
pub struct Push {
    cmd: Command,
}

impl Push {
    /// Signed with [`test_identity`] unless `args` name another.
    pub fn new(args: &[&str], paths: &[PathBuf]) -> Push {
        let mut push = Push::unsigned(args, paths);
        if !args.contains(&"--identity") {
            push.cmd.arg("--identity").arg(&test_identity().0);
        }
        push
    }

    /// A push that is not signed (unless `args` give `--identity`).
    pub fn unsigned(args: &[&str], paths: &[PathBuf]) -> Push {
        let mut cmd = Command::new(SEND);
        cmd.arg("--json").args(args).args(paths);
        cmd.env("XDG_CACHE_HOME", std::env::temp_dir().join("mdp-e2e-cache"));
        no_config(&mut cmd);
        Push { cmd }
    }

    /// Runs the push to its end.
    pub fn run(mut self) -> Sent {
        Sent(self.cmd.output().unwrap())
    }

    /// Starts the push, its output piped, for a test that acts while it
    /// runs; [`Running::finish`] collects it.
    pub fn start(mut self) -> Running {
        Running(Proc::spawn(&mut self.cmd))
    }

    /// Starts the push, for a sender that will be killed.
    pub fn start_quiet(mut self) -> Proc {
        Proc::spawn(&mut self.cmd)
    }
}

/// A sender started by [`Push::start`].
pub struct Running(pub Proc);

impl Running {
    /// Waits for the sender, at most `limit` (it is killed after that, and
    /// the test fails).
    pub fn finish(self, limit: Duration) -> Sent {
        Sent(wait_output(self.0, limit))
    }

    /// Sends `signal` (`-INT`, `-TERM`, ...) with kill(1).
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

/// What a finished sender left: its exit status and its JSON report.
pub struct Sent(pub Output);

impl Sent {
    /// The sender's exit code.
    pub fn code(&self) -> Option<i32> {
        self.0.status.code()
    }

    /// The sender's JSON report (its last line on stdout).
    pub fn report(&self) -> serde_json::Value {
        json(&self.0)
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
}

/// Pushes `src/big.bin` and `src/tree` to three fresh receivers under
/// `base`, checks that the sender exits 0 with every receiver confirmed and
/// that each copy is intact, and returns the sender's report.
pub fn push_to_three(base: &Path, src: &Path) -> serde_json::Value {
    let names = ["r0", "r1", "r2"];
    let rx = start_receivers(base, &names);
    let send = Push::new(
        &["--receivers", "3", "--timeout", "120s"],
        &[src.join("big.bin"), src.join("tree")],
    )
    .run();
    let report = send.report();
    println!("sender: {report}");
    assert_eq!(send.code(), Some(0), "sender: {report}");
    assert_eq!(report["success"], true);
    assert_eq!(report["files"], 5);
    assert_eq!(report["receivers"].as_array().unwrap().len(), 3);
    for r in report["receivers"].as_array().unwrap() {
        assert_eq!(r["verdict"], "confirmed", "{r}");
    }
    assert_receivers_complete(rx, base, &names, src);
    report
}

/// Keeps a configuration file installed on this host (/etc/mdp) out of a
/// test: each test says every setting it means.
pub fn no_config(cmd: &mut Command) -> &mut Command {
    cmd.env("MDP_RECV_CONFIG", "/dev/null")
        .env("MDP_SEND_CONFIG", "/dev/null")
}

/// A process whose stdout and stderr are read as it writes them, so that
/// a long-running one (a receiver service taking many pushes) never blocks
/// on a full pipe; [`wait_output`] collects what it wrote.
pub struct Proc {
    child: Child,
    out: std::thread::JoinHandle<Vec<u8>>,
    err: std::thread::JoinHandle<Vec<u8>>,
}

impl Proc {
    /// Starts `cmd` with its output piped and drained.
    pub fn spawn(cmd: &mut Command) -> Proc {
        let mut child = no_config(cmd)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{:?} starts: {e}", cmd.get_program()));
        let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut all = Vec::new();
                let _ = pipe.read_to_end(&mut all);
                all
            })
        };
        let out = drain(Box::new(child.stdout.take().unwrap()));
        let err = drain(Box::new(child.stderr.take().unwrap()));
        Proc { child, out, err }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and waits for it to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `proc` and collects its output, at most `limit` (then it is
/// killed and the test fails).
pub fn wait_output(proc: Proc, limit: Duration) -> Output {
    let Proc {
        mut child,
        out,
        err,
    } = proc;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    let Some(status) = status else {
        panic!(
            "process ran over {limit:?}: {}{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    };
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Ends a receiver service with SIGTERM, checks that it exits 0, and
/// returns the JSON line of each push it took, and its stderr.
pub fn stop_service(service: Proc) -> (Vec<serde_json::Value>, String) {
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

/// The last line of a process's stdout, as JSON.
pub fn json(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_else(|| {
        panic!(
            "no JSON on stdout; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"))
}

/// Applies nftables `rules` (words split at spaces) in the test's
/// namespace; false, with a skip message, when nft is missing.
pub fn nft_rules(rules: &[&str]) -> bool {
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

/// Runs `sh -c cmd` and asserts it worked.
pub fn sh(cmd: &str) {
    let ok = Command::new("sh").args(["-c", cmd]).status().unwrap();
    assert!(ok.success(), "{cmd}");
}

//! Project tasks.
//!
//! - `cargo xtask ci`: every gate CI runs: fmt, clippy, tests, a seed sweep,
//!   the fault suite (as root), short fuzz runs (with nightly and
//!   cargo-fuzz), the package check (as root), docs, benches compile,
//!   `bash -n` on benches/scripts.
//! - `cargo xtask demo` (`demo.rs`): builds the binaries and pushes a
//!   generated tree to four receivers over loopback multicast, then checks
//!   their copies (and, as root, pushes it again through loss).
//! - `cargo xtask bench`: FEC throughput and end-to-end loopback goodput.
//! - `cargo xtask sim [--seeds N]`: a long seed sweep of simulated pushes.
//! - `cargo xtask dist [--check]`: the Debian package (binaries, man pages,
//!   completions, units, configuration, docs); `--check` installs it into a
//!   throw-away root and verifies it (root).
//! - `cargo xtask netns`: the fault suite (loss, outage, slow link, killed
//!   and restarted processes, a full disk) between network namespaces.
//!
//! The demo and the benchmark run inside a private network namespace when
//! they can (root and `unshare -n`), so no datagram can leave the machine;
//! otherwise on the host's loopback interface, pinned to 127.0.0.1.

mod bench;
mod demo;
mod dist;
mod faults;
mod routed;

use anyhow::{bail, Context, Result};
use mdp_sim::netns;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const INNER: &str = "MDP_XTASK_INNER";

fn main() {
    // The programs this starts (demo, benchmarks, fault suite) say every
    // setting they mean: a configuration installed on this host
    // (/etc/mdp) must not change them. Set before any thread starts.
    std::env::set_var("MDP_RECV_CONFIG", "/dev/null");
    std::env::set_var("MDP_SEND_CONFIG", "/dev/null");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("demo") => demo::run(),
        Some("bench") => bench::run(&args[1..]),
        Some("sim") => sim(&args[1..]),
        Some("dist") => dist_task(&args[1..]),
        Some("netns") => netns_suite(),
        // Internal: the testbed floor of `bench`, run in namespaces.
        Some("blast") => bench::floor::blast(&args[1..]),
        Some("sink") => bench::floor::sink(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <ci|demo|bench|sim>\n  ci                fmt, clippy, tests, a short seed sweep, docs (what CI runs)\n  demo              a real push over loopback multicast to four receivers\n  bench             FEC throughput and loopback goodput, as a table\n  sim [--seeds N]   simulate N pushes with random settings (default 1000)\n  netns             the fault suite: real binaries between network namespaces (root)\n  dist [--check]    the Debian package in target/dist; --check installs it in a throw-away root");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(what: &str, cmd: &mut Command) -> Result<()> {
    let start = Instant::now();
    eprintln!("==> {what}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start: {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    eprintln!("    {what}: ok in {:.1}s", start.elapsed().as_secs_f64());
    Ok(())
}

fn ci() -> Result<()> {
    run(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    run(
        "cargo clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    let (passed, failed) = run_tests()?;
    sweep("60", false)?;
    // The fault suite needs root (namespaces, nftables, a tmpfs mount).
    netns_suite()?;
    dist_ci()?;
    fuzz_short()?;
    run(
        "cargo doc",
        cargo()
            .args(["doc", "--workspace", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    run(
        "benches compile",
        cargo().args(["bench", "-p", "mdp-benches", "--no-run"]),
    )?;
    for script in fs::read_dir(root().join("benches/scripts"))? {
        let path = script?.path();
        if path.extension().is_some_and(|e| e == "sh") {
            run(
                &format!("bash -n {}", path.display()),
                Command::new("bash").arg("-n").arg(&path),
            )?;
        }
    }
    eprintln!("xtask ci: all gates passed");
    // A plain summary as the very last line, for tools that read it.
    println!("{passed} passed, {failed} failed");
    Ok(())
}

/// `cargo test --workspace`, passing its output through and adding up the
/// `test result:` lines of every test binary.
fn run_tests() -> Result<(u64, u64)> {
    use std::io::{BufRead, BufReader};
    eprintln!("==> cargo test");
    let start = Instant::now();
    let mut child = cargo()
        .args(["test", "--workspace"])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start cargo test")?;
    let (mut passed, mut failed) = (0u64, 0u64);
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let count = |word: &str| -> u64 {
                rest.split(';')
                    .find_map(|part| {
                        part.trim()
                            .trim_start_matches("ok. ")
                            .trim_start_matches("FAILED. ")
                            .strip_suffix(word)
                    })
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0)
            };
            passed += count(" passed");
            failed += count(" failed");
        }
    }
    let status = child.wait()?;
    if !status.success() {
        println!("{passed} passed, {failed} failed");
        bail!("cargo test failed ({status})");
    }
    eprintln!(
        "    cargo test: ok in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    Ok((passed, failed))
}

/// True when this process should do the network work itself: inside the
/// private namespace it re-ran itself in, or on the host when there is none.
fn enter_private_netns(task: &str) -> Result<bool> {
    if std::env::var(INNER).as_deref() == Ok(task) {
        netns::setup_loopback()?;
        return Ok(true);
    }
    if !netns::available() {
        eprintln!("note: no private network namespace (needs root and unshare -n); using the host's loopback, pinned to 127.0.0.1");
        return Ok(true);
    }
    let status = Command::new("unshare")
        .args(netns::unshare_args().expect("checked available() above"))
        .arg(std::env::current_exe()?)
        .arg(task)
        .env(INNER, task)
        .status()?;
    if !status.success() {
        bail!("{task} failed inside its network namespace");
    }
    Ok(false)
}

fn build_release() -> Result<PathBuf> {
    if std::env::var(INNER).is_err() {
        run(
            "cargo build --release -p mdp-cli",
            cargo().args(["build", "--release", "-p", "mdp-cli"]),
        )?;
    }
    Ok(root().join("target/release"))
}

/// Keys made afresh in one directory (as an operator would with
/// `--gen-identity`): the sender's key file and public key line, each
/// receiver's key file, and the sender's `--expect-file` naming them.
pub(crate) struct Keys {
    pub(crate) sender: PathBuf,
    pub(crate) sender_pub: String,
    pub(crate) receivers: Vec<PathBuf>,
    pub(crate) expect: PathBuf,
}

/// [`Keys`] in `dir` for receivers named `names`.
pub(crate) fn make_keys(bin: &Path, dir: &Path, names: &[String]) -> Result<Keys> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    let gen = |name: &str| -> Result<(PathBuf, String)> {
        let path = dir.join(format!("{name}.key"));
        let out = Command::new(bin.join("mdp-send"))
            .arg("--gen-identity")
            .arg(&path)
            .output()?;
        if !out.status.success() {
            bail!(
                "--gen-identity failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok((path, String::from_utf8(out.stdout)?.trim().to_string()))
    };
    let (sender, sender_pub) = gen("sender")?;
    let mut receivers = Vec::new();
    let mut expect = String::from("# name, then the receiver's public key\n");
    for name in names {
        let (key, line) = gen(name)?;
        expect.push_str(&format!("{name} {line}\n"));
        receivers.push(key);
    }
    let expect_path = dir.join("expect");
    fs::write(&expect_path, expect)?;
    Ok(Keys {
        sender,
        sender_pub,
        receivers,
        expect: expect_path,
    })
}

fn sim(args: &[String]) -> Result<()> {
    let seeds = match args {
        [] => "1000".to_string(),
        [flag, n] if flag == "--seeds" => n.clone(),
        _ => bail!("usage: cargo xtask sim [--seeds N]"),
    };
    sweep(&seeds, true)
}

/// Runs `seeds` simulated pushes with random settings (mdp-sim-sweep).
fn sweep(seeds: &str, release: bool) -> Result<()> {
    let mut cmd = cargo();
    cmd.arg("run");
    if release {
        cmd.arg("--release");
    }
    cmd.args([
        "-q",
        "-p",
        "mdp-sim",
        "--bin",
        "mdp-sim-sweep",
        "--",
        "--seeds",
        seeds,
    ]);
    run(&format!("seed sweep ({seeds} seeds)"), &mut cmd)
}

/// `cargo xtask dist [--check]`.
fn dist_task(args: &[String]) -> Result<()> {
    let package = dist::dist()?;
    if args.iter().any(|a| a == "--check") {
        dist::check(&package)?;
    }
    Ok(())
}

/// The package built and, as root, installed into a throw-away root;
/// skipped where there is no dpkg-deb (not a Debian-like machine).
fn dist_ci() -> Result<()> {
    if Command::new("dpkg-deb").arg("--version").output().is_err() {
        eprintln!(
            "skipping the package check: dpkg-deb is not installed (not a Debian-like machine)"
        );
        return Ok(());
    }
    let package = dist::dist()?;
    dist::check(&package)
}

/// Seconds each fuzz target runs in `cargo xtask ci`.
const FUZZ_CI_SECS: u32 = 10;

/// A short coverage-guided run of every fuzz target (`fuzz/`, cargo-fuzz
/// on nightly), when the machine has both; the stable corpus test
/// (`crates/mdp-sim/tests/fuzz_corpus.rs`) has run in `cargo test` anyway.
fn fuzz_short() -> Result<()> {
    let has = |args: &[&str]| {
        Command::new("cargo")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has(&["+nightly", "--version"]) || !has(&["fuzz", "--version"]) {
        eprintln!("note: skipping the short cargo-fuzz runs: they need a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`); the corpus test ran on stable");
        return Ok(());
    }
    for target in ["wire", "manifest", "receiver", "sender"] {
        let fresh = root().join("fuzz/corpus-new").join(target);
        fs::create_dir_all(&fresh)?;
        run(
            &format!("cargo fuzz run {target} ({FUZZ_CI_SECS} s)"),
            Command::new("cargo")
                .current_dir(root().join("fuzz"))
                .args(["+nightly", "fuzz", "run", "-O", target])
                .arg(&fresh)
                .arg(root().join("fuzz/corpus").join(target))
                .args([
                    "--",
                    &format!("-max_total_time={FUZZ_CI_SECS}"),
                    "-rss_limit_mb=2048",
                ]),
        )?;
    }
    Ok(())
}

/// `cargo xtask netns`: skipped, with a message, without root.
fn netns_suite() -> Result<()> {
    if !netns::available() {
        eprintln!("skipping the fault suite: it needs root (network namespaces, nftables, tc, a tmpfs mount)");
        return Ok(());
    }
    bench::packages::ensure_netns_tools()?;
    let bin = build_release()?;
    faults::run(&bin)
}

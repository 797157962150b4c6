//! `cargo xtask netns`: the fault suite. The real binaries between network
//! namespaces joined by a bridge (the benchmark's network: a sender host and
//! four receiver hosts), with loss from nftables `numgen random` rules, an
//! outage (every packet to one host dropped for 2 s), symbols too large for
//! the links' MTU (fragmented), links with a tunnel's smaller MTU (the
//! default symbol size must fit them), a slow link (tbf), a
//! receiver killed, one restarted, the sender killed and run again, and a
//! receiver whose disk fills up. Each scenario checks the copies byte for
//! byte and the verdicts of the sender's JSON report; the table goes to
//! stdout and to target/netns/faults.md.

mod routed;

use crate::bench::data::data_file;
use crate::bench::net::{host, ip, sh, Net};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Receivers in every scenario (hosts 1..=4; host 0 sends).
const RECEIVERS: usize = 4;
/// Longest a sender may run in any scenario.
const SEND_LIMIT: Duration = Duration::from_secs(90);

/// A scenario: sets up its faults, pushes, checks, and says how it went.
type Scenario = Box<dyn Fn(&Ctx) -> Result<Row>>;

/// What a push measured: the sender's report, wall time, wire bytes per
/// file byte, exit code.
type Pushed = (serde_json::Value, f64, f64, i32);

/// One row of the table.
struct Row {
    scenario: &'static str,
    condition: String,
    secs: f64,
    wire: f64,
    verdicts: String,
    result: Result<(), String>,
    /// Not run here (the machine lacks what it needs): says why in `verdicts`.
    skipped: bool,
}

/// What every scenario works with.
struct Ctx<'a> {
    net: &'a Net,
    bin: PathBuf,
    work: PathBuf,
    src: PathBuf,
    /// Every process a scenario started, stopped after it whatever
    /// happened (a failed scenario must not leave a sender or receivers
    /// behind to confuse the next one).
    pids: std::cell::RefCell<Vec<u32>>,
    /// The sender's identity (key file) and public key line, which every
    /// receiver trusts: the suite runs mdp as it is meant to be run.
    identity: (PathBuf, String),
}

impl Ctx<'_> {
    fn dir(&self, i: usize) -> PathBuf {
        self.work.join(format!("r{i}"))
    }

    fn fresh_dirs(&self) -> Result<()> {
        for i in 1..=RECEIVERS {
            let d = self.dir(i);
            let _ = fs::remove_dir_all(&d);
            fs::create_dir_all(&d)?;
        }
        Ok(())
    }

    /// Starts mdp-recv on host `i` (`--once` unless `service`).
    fn receiver(&self, i: usize, service: bool) -> Result<Child> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &host(i)])
            .arg(self.bin.join("mdp-recv"))
            .arg("--dir")
            .arg(self.dir(i))
            .args(["--interface", &ip(i), "--node-id", &format!("h{i}")])
            .args(["--json", "--quiet", "--timeout", "120s"])
            .args(["--trust", &self.identity.1])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if !service {
            c.arg("--once");
        }
        self.started(c.spawn()?)
    }

    fn started(&self, c: Child) -> Result<Child> {
        self.pids.borrow_mut().push(c.id());
        Ok(c)
    }

    /// Kills whatever the scenario left running.
    fn reap(&self) {
        for pid in self.pids.borrow_mut().drain(..) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }

    fn receivers(&self, service: bool) -> Result<Vec<Child>> {
        (1..=RECEIVERS).map(|i| self.receiver(i, service)).collect()
    }

    /// The sender on host 0 with `args`, pushing the source tree.
    fn sender(&self, args: &[&str]) -> Command {
        let mut c = self.sender_on(&host(0), &ip(0));
        c.args(["--timeout", "80s"]).args(args).arg(&self.src);
        c
    }

    /// mdp-send in namespace `ns` on `interface`, reporting in JSON, with
    /// the suite's identity; its arguments follow.
    fn sender_on(&self, ns: &str, interface: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns])
            .arg(self.bin.join("mdp-send"))
            .args(["--interface", interface, "--json", "--quiet"])
            .arg("--identity")
            .arg(&self.identity.0)
            .env("XDG_CACHE_HOME", self.work.join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs the sender to its end: its report, wall time, wire bytes per
    /// file byte (the sender interface's counter) and exit code.
    fn push(&self, args: &[&str]) -> Result<Pushed> {
        self.push_during(args, Duration::ZERO, || Ok(()))
    }

    /// [`Ctx::push`], doing `fault` `after` the sender started.
    fn push_during(
        &self,
        args: &[&str],
        after: Duration,
        fault: impl FnOnce() -> Result<()>,
    ) -> Result<Pushed> {
        let tx0 = self.net.sender_tx_bytes()?;
        let start = Instant::now();
        let child = self.started(self.sender(args).spawn()?)?;
        if !after.is_zero() {
            std::thread::sleep(after);
            fault()?;
        }
        let out = wait_output(child, SEND_LIMIT)?;
        let secs = start.elapsed().as_secs_f64();
        let tx = self.net.sender_tx_bytes()? - tx0;
        let (report, bytes) = sender_report(&out)?;
        Ok((
            report,
            secs,
            tx as f64 / bytes,
            out.status.code().unwrap_or(-1),
        ))
    }

    /// Checks receiver `i`'s copy of the source tree, byte for byte.
    fn check_copy(&self, i: usize) -> Result<(), String> {
        let name = self.src.file_name().expect("named");
        same_tree(&self.src, &self.dir(i).join(name)).map_err(|e| format!("h{i}: {e}"))
    }
}

fn wait_output(mut child: Child, limit: Duration) -> Result<Output> {
    let until = Instant::now() + limit;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(child.wait_with_output()?);
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            bail!("still running after {limit:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The sender's JSON report in `out`, and the bytes it pushed (at least 1,
/// to divide by).
fn sender_report(out: &Output) -> Result<(serde_json::Value, f64)> {
    let report = last_json(out).with_context(|| {
        format!(
            "the sender printed no report: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    let bytes = report["bytes"].as_f64().unwrap_or(1.0).max(1.0);
    Ok((report, bytes))
}

fn last_json(out: &Output) -> Option<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
}

/// Stops receivers that are still running (services, or ones a scenario
/// expects to be left behind).
fn stop(children: Vec<Child>) {
    for mut c in children {
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(5);
        while c.try_wait().ok().flatten().is_none() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Compares two trees: same names, same bytes.
fn same_tree(want: &Path, got: &Path) -> Result<(), String> {
    for e in fs::read_dir(want).map_err(|e| e.to_string())? {
        let e = e.map_err(|e| e.to_string())?;
        let g = got.join(e.file_name());
        if e.file_type().map_err(|e| e.to_string())?.is_dir() {
            same_tree(&e.path(), &g)?;
        } else {
            let a = fs::read(e.path()).map_err(|e| e.to_string())?;
            let b = fs::read(&g).map_err(|_| format!("{} is missing", g.display()))?;
            if a != b {
                return Err(format!("{} differs", g.display()));
            }
        }
    }
    Ok(())
}

/// `name → verdict` for every receiver of a report (of a name reported
/// twice, a restarted receiver, the last).
fn verdicts(report: &serde_json::Value) -> BTreeMap<String, String> {
    all_verdicts(report).into_iter().collect()
}

/// `(name, verdict)` of every receiver process in the report.
fn all_verdicts(report: &serde_json::Value) -> Vec<(String, String)> {
    report["receivers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    let v = match r["dropped_because"].as_str() {
                        Some(why) => format!("dropped ({why})"),
                        None => r["verdict"].as_str().unwrap_or("?").to_string(),
                    };
                    (r["name"].as_str().unwrap_or("?").to_string(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn summary(report: &serde_json::Value) -> String {
    let v = all_verdicts(report);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, verdict) in &v {
        *counts.entry(verdict).or_default() += 1;
    }
    counts
        .iter()
        .map(|(v, n)| format!("{n} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every receiver confirmed, every copy intact, exit 0.
fn expect_all_confirmed(
    ctx: &Ctx,
    report: &serde_json::Value,
    code: i32,
    rx: Vec<Child>,
) -> Result<(), String> {
    let outs: Vec<_> = rx
        .into_iter()
        .map(|c| wait_output(c, Duration::from_secs(30)))
        .collect();
    if code != 0 {
        return Err(format!("sender exited {code}: {}", report["problem"]));
    }
    for (i, o) in outs.iter().enumerate() {
        match o {
            Ok(o) if o.status.success() => {}
            Ok(o) => return Err(format!("h{} exited {:?}", i + 1, o.status.code())),
            Err(e) => return Err(format!("h{}: {e}", i + 1)),
        }
    }
    for i in 1..=RECEIVERS {
        ctx.check_copy(i)?;
    }
    Ok(())
}

fn loss(ctx: &Ctx, percent: u32) -> Result<Row> {
    ctx.fresh_dirs()?;
    for i in 1..=RECEIVERS {
        ctx.net.loss(i, percent)?;
    }
    let rx = ctx.receivers(false)?;
    std::thread::sleep(Duration::from_millis(300));
    let (report, secs, wire, code) = ctx.push(&["--receivers", "4"])?;
    for i in 1..=RECEIVERS {
        ctx.net.loss(i, 0)?;
    }
    let result = expect_all_confirmed(ctx, &report, code, rx);
    Ok(Row {
        scenario: "independent loss",
        condition: format!("{percent} % per receiver"),
        secs,
        wire,
        verdicts: summary(&report),
        result,
        skipped: false,
    })
}

/// Symbols larger than the links' 1500-byte MTU: the kernel refuses GSO
/// for them (`EMSGSIZE`), and the sender must fall back to one datagram per
/// call, which the kernel fragments, rather than count every batch as
/// lost and repair it forever.
fn oversized_symbols(ctx: &Ctx) -> Result<Row> {
    ctx.fresh_dirs()?;
    for i in 1..=RECEIVERS {
        ctx.net.loss(i, 1)?;
    }
    let rx = ctx.receivers(false)?;
    std::thread::sleep(Duration::from_millis(300));
    let (report, secs, wire, code) = ctx.push(&[
        "--receivers",
        "4",
        "--symbol-size",
        "8800",
        "--block-size",
        "64",
        "--parity",
        "32",
    ])?;
    for i in 1..=RECEIVERS {
        ctx.net.loss(i, 0)?;
    }
    let result = expect_all_confirmed(ctx, &report, code, rx);
    Ok(Row {
        scenario: "symbols > MTU",
        condition: "--symbol-size 8800 on 1500-byte links, 1 % loss of fragments".into(),
        secs,
        wire,
        verdicts: summary(&report),
        result,
        skipped: false,
    })
}

/// Links with a tunnel's MTU (1450 bytes, as under VXLAN): the default
/// symbol size must shrink to fit, so that no datagram is fragmented
/// (fragments mean no GSO, and a lost fragment loses the whole datagram).
fn small_mtu(ctx: &Ctx) -> Result<Row> {
    ctx.fresh_dirs()?;
    ctx.net.mtu(1450)?;
    for i in 1..=RECEIVERS {
        ctx.net.loss(i, 1)?;
    }
    let frags = ctx.net.sender_fragments();
    let rx = ctx.receivers(false);
    let pushed = rx.and_then(|rx| {
        std::thread::sleep(Duration::from_millis(300));
        Ok((ctx.push(&["--receivers", "4"])?, rx))
    });
    let made = ctx.net.sender_fragments();
    for i in 1..=RECEIVERS {
        ctx.net.loss(i, 0)?;
    }
    ctx.net.mtu(1500)?;
    let ((report, secs, wire, code), rx) = pushed?;
    let made = made? - frags?;
    let result = expect_all_confirmed(ctx, &report, code, rx).and_then(|()| {
        if made == 0 {
            Ok(())
        } else {
            Err(format!("the sender's host made {made} IP fragments"))
        }
    });
    Ok(Row {
        scenario: "tunnel MTU",
        condition:
            "1450-byte links (VXLAN), default symbol size, 1 % loss; no IP fragment may be made"
                .into(),
        secs,
        wire,
        verdicts: summary(&report),
        result,
        skipped: false,
    })
}

fn outage(ctx: &Ctx) -> Result<Row> {
    ctx.fresh_dirs()?;
    let rx = ctx.receivers(false)?;
    std::thread::sleep(Duration::from_millis(300));
    // A slower push, so that the outage lands in the middle of it.
    let (report, secs, wire, code) = ctx.push_during(
        &["--receivers", "4", "--max-rate", "200M"],
        Duration::from_millis(600),
        || {
            ctx.net.loss(2, 100)?;
            std::thread::sleep(Duration::from_secs(2));
            ctx.net.loss(2, 0)
        },
    )?;
    let result = expect_all_confirmed(ctx, &report, code, rx);
    Ok(Row {
        scenario: "outage",
        condition: "h2 gets nothing for 2 s mid-push".into(),
        secs,
        wire,
        verdicts: summary(&report),
        result,
        skipped: false,
    })
}

fn slow_host(ctx: &Ctx) -> Result<Row> {
    ctx.fresh_dirs()?;
    ctx.net.limit(3, 100)?;
    for i in [1, 2, 4] {
        ctx.net.limit(i, 1000)?;
    }
    let rx = ctx.receivers(false)?;
    std::thread::sleep(Duration::from_millis(300));
    let (report, secs, wire, code) = ctx.push(&["--receivers", "4"])?;
    for i in 1..=RECEIVERS {
        ctx.net.limit(i, 0)?;
    }
    let mut result = expect_all_confirmed(ctx, &report, code, rx);
    if result.is_ok() && report["rate"]["limited_by"] != "h3" {
        result = Err(format!(
            "the push was paced to {}, not the slow h3",
            report["rate"]["limited_by"]
        ));
    }
    Ok(Row {
        scenario: "slow host",
        condition: "h3's link 100 Mbit/s, the others 1 Gbit/s".into(),
        secs,
        wire,
        verdicts: format!(
            "{}; paced to {}",
            summary(&report),
            report["rate"]["limited_by"].as_str().unwrap_or("nobody")
        ),
        result,
        skipped: false,
    })
}

/// Receivers on every host; host `victim` is killed (SIGKILL) 0.8 s into
/// the push and, with `restart`, started again 0.3 s later. Returns the
/// push's measures and the receivers still to wait for, by host.
fn kill_mid_push(
    ctx: &Ctx,
    args: &[&str],
    victim: usize,
    restart: bool,
) -> Result<(Pushed, Vec<(usize, Child)>)> {
    ctx.fresh_dirs()?;
    let mut rx: Vec<(usize, Child)> = (1..=RECEIVERS).zip(ctx.receivers(false)?).collect();
    std::thread::sleep(Duration::from_millis(300));
    let at = rx
        .iter()
        .position(|(i, _)| *i == victim)
        .expect("a receiver host");
    let (_, mut killed) = rx.remove(at);
    let pushed = ctx.push_during(args, Duration::from_millis(800), || {
        let _ = killed.kill();
        let _ = killed.wait();
        if restart {
            std::thread::sleep(Duration::from_millis(300));
            rx.insert(at, (victim, ctx.receiver(victim, false)?));
        }
        Ok(())
    })?;
    Ok((pushed, rx))
}

fn receiver_killed(ctx: &Ctx) -> Result<Row> {
    let ((report, secs, wire, code), rx) = kill_mid_push(
        ctx,
        &[
            "--receivers",
            "4",
            "--max-rate",
            "200M",
            "--drop-after",
            "2s",
        ],
        2,
        false,
    )?;
    let v = verdicts(&report);
    let mut result = Ok(());
    if code != 1 {
        result = Err(format!("sender exited {code}, not 1"));
    } else if v.get("h2").map(String::as_str) != Some("dropped (silent)") {
        result = Err(format!("h2's verdict: {:?}", v.get("h2")));
    }
    for (i, c) in rx {
        let o = wait_output(c, Duration::from_secs(30));
        if result.is_ok() {
            result = match o {
                Ok(o) if o.status.success() => ctx.check_copy(i),
                _ => Err(format!("h{i} did not complete")),
            };
        }
    }
    Ok(Row {
        scenario: "receiver killed",
        condition: "h2 killed (SIGKILL) mid-push".into(),
        secs,
        wire,
        verdicts: summary(&report),
        result,
        skipped: false,
    })
}

fn receiver_restarted(ctx: &Ctx) -> Result<Row> {
    let ((report, secs, wire, code), rx) = kill_mid_push(
        ctx,
        &[
            "--expect",
            "h1,h2,h3,h4",
            "--max-rate",
            "200M",
            "--drop-after",
            "2s",
        ],
        3,
        true,
    )?;
    // The killed process is dropped, the new one (same name) confirms:
    // the closed group is complete.
    let rx = rx.into_iter().map(|(_, c)| c).collect();
    let result = expect_all_confirmed(ctx, &report, code, rx);
    let n = report["receivers"].as_array().map_or(0, Vec::len);
    Ok(Row {
        scenario: "receiver restarted",
        condition: "h3 killed and started again mid-push (--expect)".into(),
        secs,
        wire,
        verdicts: format!("{} ({n} processes)", summary(&report)),
        result,
        skipped: false,
    })
}

fn sender_killed(ctx: &Ctx) -> Result<Row> {
    ctx.fresh_dirs()?;
    let rx = ctx.receivers(true)?;
    std::thread::sleep(Duration::from_millis(300));
    let mut first = ctx.started(
        ctx.sender(&["--receivers", "4", "--max-rate", "200M"])
            .spawn()?,
    )?;
    std::thread::sleep(Duration::from_millis(1200));
    let _ = first.kill(); // SIGKILL: no DONE
    let _ = first.wait();
    let (report, secs, wire, code) = ctx.push(&["--receivers", "4"])?;
    let mut result = if code == 0 {
        (1..=RECEIVERS).try_for_each(|i| ctx.check_copy(i))
    } else {
        Err(format!("the rerun exited {code}: {}", report["problem"]))
    };
    let reused = report["stats"]["skipped_files"].as_u64().unwrap_or(0)
        + report["stats"]["skipped_blocks"].as_u64().unwrap_or(0);
    if result.is_ok() && reused == 0 {
        result = Err("the rerun sent everything again".into());
    }
    stop(rx);
    Ok(Row {
        scenario: "sender killed",
        condition: "SIGKILL after 1.2 s, then run again".into(),
        secs,
        wire,
        verdicts: format!(
            "{}; rerun skipped {} files and {} blocks",
            summary(&report),
            report["stats"]["skipped_files"],
            report["stats"]["skipped_blocks"]
        ),
        result,
        skipped: false,
    })
}

fn full_disk(ctx: &Ctx) -> Result<Row> {
    ctx.fresh_dirs()?;
    let small = ctx.dir(4);
    if let Err(e) = sh(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=8m",
        "mdp-full",
        &small.display().to_string(),
    ]) {
        return Ok(Row {
            scenario: "full disk",
            condition: "skipped: cannot mount a tmpfs here".into(),
            secs: 0.0,
            wire: 0.0,
            verdicts: format!("{e:#}"),
            result: Ok(()),
            skipped: true,
        });
    }
    let outcome = (|| -> Result<Row> {
        let rx = ctx.receivers(false)?;
        std::thread::sleep(Duration::from_millis(300));
        let (report, secs, wire, code) = ctx.push(&["--receivers", "4"])?;
        let v = verdicts(&report);
        let mut result = Ok(());
        if code != 1 {
            result = Err(format!("sender exited {code}, not 1"));
        } else if v.get("h4").map(String::as_str) != Some("failed") {
            result = Err(format!("h4's verdict: {:?}", v.get("h4")));
        }
        let outs: Vec<_> = rx
            .into_iter()
            .map(|c| wait_output(c, Duration::from_secs(30)))
            .collect();
        if result.is_ok() {
            result = (1..=3).try_for_each(|i| ctx.check_copy(i));
        }
        // Nothing half-written under a final name on the full host.
        let big = small
            .join(ctx.src.file_name().expect("named"))
            .join("big.bin");
        if result.is_ok() && big.exists() {
            result = Err(format!("{} exists on the full disk", big.display()));
        }
        let failed = report["receivers"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["name"] == "h4"))
            .and_then(|r| r["failed"].as_array())
            .map(|f| {
                let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
                for x in f {
                    *reasons
                        .entry(x["reason"].as_str().unwrap_or("?").to_string())
                        .or_default() += 1;
                }
                let reasons: Vec<String> =
                    reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
                format!("{} files failed ({})", f.len(), reasons.join(", "))
            })
            .unwrap_or_default();
        let h4_line = outs
            .last()
            .and_then(|o| o.as_ref().ok())
            .and_then(last_json)
            .map(|j| j["complete"].to_string())
            .unwrap_or_default();
        Ok(Row {
            scenario: "full disk",
            condition: "h4's directory is an 8 MiB tmpfs".into(),
            secs,
            wire,
            verdicts: format!(
                "{}; on h4 {failed}, its own report complete={h4_line}",
                summary(&report)
            ),
            result,
            skipped: false,
        })
    })();
    let _ = sh(&["umount", &small.display().to_string()]);
    outcome
}

/// The source tree: a 32 MiB file and a few small files in directories.
fn source(work: &Path) -> Result<PathBuf> {
    let src = work.join("src").join("payload");
    fs::create_dir_all(src.join("conf/d"))?;
    data_file(&src, "big.bin", 32 << 20, 77)?;
    for i in 0..6u64 {
        data_file(
            &src.join("conf"),
            &format!("f{i}.conf"),
            1000 + 5000 * i as usize,
            i,
        )?;
    }
    data_file(&src.join("conf/d"), "deep.bin", 300_000, 99)?;
    Ok(src)
}

fn render(rows: &[Row]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| scenario | condition | time | wire bytes per byte | verdicts | result |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} s | {:.3} | {} | {} |",
            r.scenario,
            r.condition,
            r.secs,
            r.wire,
            r.verdicts,
            match &r.result {
                Ok(()) if r.skipped => "skipped".to_string(),
                Ok(()) => "pass".to_string(),
                Err(e) => format!("**FAIL**: {e}"),
            }
        );
    }
    md
}

/// Runs the suite; fails when a scenario failed.
pub fn run(bin: &Path) -> Result<()> {
    let work = crate::root().join("target/netns");
    fs::create_dir_all(&work)?;
    let src = source(&work)?;
    let net = match Net::new(RECEIVERS + 1) {
        Ok(net) => net,
        Err(e) => {
            // Root, but no `ip netns` (a container without the mounts it
            // needs): the end-to-end tests in `unshare -n` still ran.
            eprintln!("skipping the fault suite: cannot build its network namespaces here: {e:#}");
            return Ok(());
        }
    };
    let keys = crate::make_keys(bin, &work.join("keys"), &[])?;
    let ctx = Ctx {
        net: &net,
        bin: bin.to_path_buf(),
        work: work.clone(),
        src,
        pids: Default::default(),
        identity: (keys.sender, keys.sender_pub),
    };
    let started = Instant::now();
    let scenarios: Vec<(&str, Scenario)> = vec![
        ("1 % loss", Box::new(|c: &Ctx| loss(c, 1))),
        ("5 % loss", Box::new(|c: &Ctx| loss(c, 5))),
        ("20 % loss", Box::new(|c: &Ctx| loss(c, 20))),
        ("symbols > MTU", Box::new(oversized_symbols)),
        ("tunnel MTU", Box::new(small_mtu)),
        ("outage", Box::new(outage)),
        ("slow host", Box::new(slow_host)),
        ("receiver killed", Box::new(receiver_killed)),
        ("receiver restarted", Box::new(receiver_restarted)),
        ("sender killed", Box::new(sender_killed)),
        ("full disk", Box::new(full_disk)),
        ("routed multicast", Box::new(routed::across_a_router)),
        (
            "feedback TTL 1 across a router",
            Box::new(routed::feedback_ttl_too_small),
        ),
        (
            "push TTL 1 across a router",
            Box::new(routed::push_ttl_too_small),
        ),
    ];
    let mut rows = Vec::new();
    for (name, f) in &scenarios {
        eprintln!("==> {name}");
        let row = f(&ctx);
        ctx.reap();
        for i in 1..=RECEIVERS {
            let _ = net.loss(i, 0);
            let _ = net.limit(i, 0);
        }
        let row = row.unwrap_or_else(|e| Row {
            scenario: "?",
            condition: name.to_string(),
            secs: 0.0,
            wire: 0.0,
            verdicts: String::new(),
            result: Err(format!("{e:#}")),
            skipped: false,
        });
        eprintln!(
            "    {}",
            match &row.result {
                Ok(()) => format!("pass in {:.2} s", row.secs),
                Err(e) => format!("FAIL: {e}"),
            }
        );
        rows.push(row);
    }
    let md = render(&rows);
    fs::write(work.join("faults.md"), &md)?;
    println!(
        "\nmdp fault suite between network namespaces ({} s in all; target/netns/faults.md):\n\n{md}",
        started.elapsed().as_secs()
    );
    let failed = rows.iter().filter(|r| r.result.is_err()).count();
    if failed > 0 {
        bail!("{failed} of {} scenarios failed", rows.len());
    }
    Ok(())
}

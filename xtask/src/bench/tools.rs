//! The tools under test (mdp, udpcast, UFTP) and one push with each:
//! its command lines, run under `/usr/bin/time` in the hosts' namespaces,
//! with a time limit, measured (wall time, wire bytes, CPU, RSS) and its
//! copies checked; sweeps of a peer's settings and the runs of one row.
//!
//! **Invariant:** a run leaves no process behind: every receiver and the
//! sender are waited for or killed, with their children, by [`RUN_LIMIT`].

use super::data::{content, payload_bytes};
use super::net::{ip, Place};
use super::table::Row;
use anyhow::{Context, Result};
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a single run may take before it is killed and marked failed.
pub(super) const RUN_LIMIT: Duration = Duration::from_secs(90);

/// A tool under test, with one setting.
#[derive(Clone, Debug)]
pub struct Tool {
    pub name: &'static str,
    pub setting: String,
    pub extra: Vec<String>,
}

impl Tool {
    /// How the tool appears in the table.
    pub fn label(&self) -> String {
        if self.setting.is_empty() {
            self.name.to_string()
        } else {
            format!("{} ({})", self.name, self.setting)
        }
    }
}

/// What one run measured.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub ok: bool,
    pub secs: f64,
    pub wire: f64,
    /// CPU seconds of every process, the sender's included.
    pub cpu: f64,
    /// CPU seconds of the sender alone.
    pub cpu_send: f64,
    pub rss_send_kb: u64,
    pub rss_recv_kb: u64,
    pub note: String,
}

fn timed(ns: &str, stats: &Path, args: &[String]) -> Command {
    let mut c = Command::new("ip");
    c.args([
        "netns",
        "exec",
        ns,
        "/usr/bin/time",
        "-q",
        "-f",
        "%U %S %M",
        "-o",
    ])
    .arg(stats)
    .args(args)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    c
}

fn read_stats(p: &Path) -> (f64, u64) {
    let s = fs::read_to_string(p).unwrap_or_default();
    let last = s.lines().last().unwrap_or("");
    let v: Vec<&str> = last.split_whitespace().collect();
    if v.len() < 3 {
        return (0.0, 0);
    }
    let cpu = v[0].parse::<f64>().unwrap_or(0.0) + v[1].parse::<f64>().unwrap_or(0.0);
    (cpu, v[2].parse().unwrap_or(0))
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// A udpcast command on the hosts' `eth0`, without keyboard or progress
/// output, with `rest` after the common options.
fn udpcast(program: &str, ifname: &str, rest: &[&str]) -> Vec<String> {
    let mut v = argv(&[
        program,
        "--nokbd",
        "--no-progress",
        "--interface",
        ifname,
        "--portbase",
        "9000",
    ]);
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

pub fn wait_limit(c: &mut Child, until: Instant) -> bool {
    loop {
        match c.try_wait() {
            Ok(Some(s)) => return s.success(),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                // Its children first: a tool under `/usr/bin/time` would
                // outlive `time` (see [`stop_timed`]).
                let _ = Command::new("pkill")
                    .args(["-KILL", "-P", &c.id().to_string()])
                    .status();
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
        }
    }
}

/// How a receiver comes to hold an older version of the pushed file before
/// a delta push.
#[derive(Clone, Copy, Debug)]
pub enum Older<'a> {
    /// Copied into its directory (its index knows nothing of it).
    Copied(&'a Path),
    /// Placed by an earlier push, untimed (its index knows its blocks).
    Pushed(&'a Path),
}

/// What each receiver's directory holds when a run starts.
#[derive(Clone, Copy, Debug)]
enum Start<'a> {
    Empty,
    Holding(&'a Path),
    AsLeft,
}

/// Runs one push of `file` to `n` receivers with `tool`; with `old`, each
/// receiver holds an older version of it under its name first (for a delta
/// push).
pub fn run_once(
    place: Place,
    bin: &Path,
    work: &Path,
    tool: &Tool,
    (file, old): (&Path, Option<Older>),
    n: usize,
) -> Result<Sample> {
    match old {
        None => push_once(place, bin, work, tool, file, n, Start::Empty),
        Some(Older::Copied(old)) => push_once(place, bin, work, tool, file, n, Start::Holding(old)),
        Some(Older::Pushed(old)) => {
            let first = push_once(place, bin, work, tool, old, n, Start::Empty)?;
            anyhow::ensure!(
                first.ok,
                "the push of the older version failed: {}",
                first.note
            );
            push_once(place, bin, work, tool, file, n, Start::AsLeft)
        }
    }
}

/// One push of `file` to `n` receivers with `tool`, whose directories are
/// as `start` says.
fn push_once(
    place: Place,
    bin: &Path,
    work: &Path,
    tool: &Tool,
    file: &Path,
    n: usize,
    start: Start,
) -> Result<Sample> {
    let size = payload_bytes(file)?;
    let name = file.file_name().context("file name")?;
    // mdp runs as it is meant to: signed by the sender's key, which the
    // receivers trust; "encrypted" also lists them by key (--expect-file).
    let keys = if tool.name == "mdp" {
        let names: Vec<String> = (1..=n).map(|i| format!("h{i}")).collect();
        Some(crate::make_keys(bin, &work.join("keys"), &names)?)
    } else {
        None
    };
    let encrypted = tool.name == "mdp" && tool.setting == "encrypted";
    let mut receivers = Vec::new();
    let mut dirs = Vec::new();
    for i in 1..=n {
        let dir = work.join(format!("r{i}"));
        if !matches!(start, Start::AsLeft) {
            let _ = fs::remove_dir_all(&dir);
        }
        fs::create_dir_all(&dir)?;
        if let Start::Holding(old) = start {
            fs::copy(old, dir.join(name))?;
        }
        let st = work.join(format!("r{i}.time"));
        let _ = fs::remove_file(&st);
        let args: Vec<String> = match tool.name {
            "mdp" => vec![
                bin.join("mdp-recv").display().to_string(),
                "--dir".into(),
                dir.display().to_string(),
                "--once".into(),
                "--quiet".into(),
                "--timeout".into(),
                "100s".into(),
                "--interface".into(),
                place.addr(i),
                "--name".into(),
                format!("h{i}"),
                "--trust".into(),
                keys.as_ref().expect("made for mdp").sender_pub.clone(),
                "--identity".into(),
                keys.as_ref().expect("made for mdp").receivers[i - 1]
                    .display()
                    .to_string(),
            ],
            "udpcast" => udpcast(
                "udp-receiver",
                place.ifname(),
                &["--file", &dir.join(name).display().to_string()],
            ),
            "uftp" => argv(&[
                "uftpd",
                "-d",
                "-q",
                "-I",
                place.ifname(),
                "-D",
                &dir.display().to_string(),
            ]),
            _ => unreachable!(),
        };
        receivers.push((timed(&place.ns(i), &st, &args).spawn()?, st));
        dirs.push(dir);
    }
    std::thread::sleep(Duration::from_millis(400));
    let st = work.join("s.time");
    let _ = fs::remove_file(&st);
    let file_s = file.display().to_string();
    let mut args: Vec<String> = match tool.name {
        "mdp" => vec![
            bin.join("mdp-send").display().to_string(),
            "--interface".into(),
            place.addr(0),
            "--identity".into(),
            keys.as_ref()
                .expect("made for mdp")
                .sender
                .display()
                .to_string(),
            if encrypted {
                "--expect-file".into()
            } else {
                "--receivers".into()
            },
            if encrypted {
                keys.as_ref()
                    .expect("made for mdp")
                    .expect
                    .display()
                    .to_string()
            } else {
                n.to_string()
            },
            // Every run hashes the file, as a push of new content does.
            "--no-hash-cache".into(),
            "--quiet".into(),
            "--timeout".into(),
            "80s".into(),
        ],
        "udpcast" => udpcast(
            "udp-sender",
            place.ifname(),
            &["--min-receivers", &n.to_string(), "--file", &file_s],
        ),
        // On the bridge the receivers are named (a closed group); on
        // loopback they share the sender's address, so the group is open.
        "uftp" => match place {
            Place::Bridge(_) => argv(&[
                "uftp",
                "-I",
                "eth0",
                "-H",
                &(1..=n).map(ip).collect::<Vec<_>>().join(","),
            ]),
            Place::Loopback(_) => argv(&["uftp", "-I", "lo"]),
        },
        _ => unreachable!(),
    };
    args.extend(tool.extra.iter().cloned());
    if tool.name != "udpcast" {
        args.push(file_s);
    }
    let tx0 = place.tx_bytes()?;
    let start = Instant::now();
    let until = start + RUN_LIMIT;
    let mut sender = timed(&place.ns(0), &st, &args).spawn()?;
    let sender_ok = wait_limit(&mut sender, until);
    let mut sample = Sample::default();
    // Receivers that end by themselves get a moment; uftpd never does.
    let mut recv_ok = true;
    // With a --min-rate the slow host cannot keep, mdp drops it: the others
    // must finish, the sender must say so (exit 1), and the dropped one
    // waits for its own idle timeout, so it is stopped here.
    let expect_drop = tool.name == "mdp" && tool.setting.contains("--min-rate");
    for (c, _) in &mut receivers {
        if tool.name == "uftp" || expect_drop {
            std::thread::sleep(Duration::from_millis(50));
            stop_timed(c);
        } else if !wait_limit(c, until.max(Instant::now() + Duration::from_secs(10))) {
            recv_ok = false;
        }
    }
    sample.secs = start.elapsed().as_secs_f64();
    let tx = place.tx_bytes()? - tx0;
    // Multicast: every byte leaves the sender once for all receivers.
    sample.wire = tx as f64 / size.max(1) as f64;
    let (cpu, rss) = read_stats(&st);
    sample.cpu = cpu;
    sample.cpu_send = cpu;
    sample.rss_send_kb = rss;
    for (_, st) in &receivers {
        let (cpu, rss) = read_stats(st);
        sample.cpu += cpu;
        sample.rss_recv_kb = sample.rss_recv_kb.max(rss);
    }
    let mut complete = 0;
    let want = content(file)?;
    for d in &dirs {
        if content(&d.join(name)).is_ok_and(|got| got == want) {
            complete += 1;
        }
    }
    sample.ok = if expect_drop {
        complete == n - 1
    } else {
        sender_ok && recv_ok && complete == n
    };
    if expect_drop && sample.ok {
        sample.note = "the slow host was dropped (as expected); the others completed".into();
    }
    if !sample.ok {
        sample.note = format!(
            "{complete}/{n} complete{}{}",
            if sender_ok {
                ""
            } else {
                ", sender failed or hung"
            },
            if recv_ok { "" } else { ", a receiver hung" }
        );
    }
    Ok(sample)
}

/// Stops a receiver started by [`timed`]: kills the tool, `/usr/bin/time`'s
/// child, so that `time` writes its CPU and RSS and exits. Killing `time`
/// itself would leave the tool running: uftpd ignores SIGTERM, and daemons
/// left behind stay bound to the group's port in the hosts' namespaces, so
/// the next run's daemons cannot bind and the old ones receive in their
/// place, with the wrong CPU and RSS measured.
fn stop_timed(c: &mut Child) {
    let _ = Command::new("pkill")
        .args(["-KILL", "-P", &c.id().to_string()])
        .status();
    let _ = c.wait();
}

/// Picks the fastest setting of a peer: one run of `file` to one receiver each.
pub fn sweep(
    place: Place,
    bin: &Path,
    work: &Path,
    settings: Vec<Tool>,
    file: &Path,
) -> Result<(Tool, Vec<(Tool, Sample)>)> {
    let mut best: Option<(Tool, f64)> = None;
    let mut seen = Vec::new();
    for t in settings {
        let s = run_once(place, bin, work, &t, (file, None), 1)?;
        eprintln!(
            "    sweep {}: {}",
            t.label(),
            if s.ok {
                format!("{:.2} s", s.secs)
            } else {
                s.note.clone()
            }
        );
        if s.ok && best.as_ref().is_none_or(|(_, b)| s.secs < *b) {
            best = Some((t.clone(), s.secs));
        }
        seen.push((t, s));
    }
    let (t, _) = best.context("no setting of this peer completed a push")?;
    Ok((t, seen))
}

/// The fastest setting of a sweep that passes `keep`.
pub fn fastest(seen: &[(Tool, Sample)], keep: impl Fn(&Tool) -> bool) -> Option<Tool> {
    seen.iter()
        .filter(|(t, s)| s.ok && keep(t))
        .min_by(|a, b| a.1.secs.total_cmp(&b.1.secs))
        .map(|(t, _)| t.clone())
}

/// `runs` pushes of `file` to `n` receivers with `tool` (each holding `old`
/// first, if given): one row of the table, for `case`.
#[allow(clippy::too_many_arguments)]
pub fn row(
    place: Place,
    bin: &Path,
    work: &Path,
    tool: &Tool,
    case: &str,
    (file, old): (&Path, Option<Older>),
    n: usize,
    runs: usize,
) -> Result<Row> {
    eprintln!("==> {case}: {}", tool.label());
    let samples = (0..runs)
        .map(|_| run_once(place, bin, work, tool, (file, old), n))
        .collect::<Result<Vec<_>>>()?;
    Ok(Row {
        case: case.to_string(),
        tool: tool.label(),
        runs: samples,
        bytes: payload_bytes(file)?,
    })
}

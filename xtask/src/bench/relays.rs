//! `cargo xtask bench --only relays`: a push through relays, each serving
//! a network of its own (docs/BENCHMARKS.md, "Relays").
//!
//! The network: the origin and four relays on one bridge (the core);
//! behind each relay a bridge of its own with three receivers. Segment 1
//! loses 5 % of the UDP frames towards its receivers; segment 3 is behind
//! a link ten times slower than the origin's rate (a tbf on the relay's
//! port towards it). Multicast inside every network, the relays passing
//! the push from the core's group to their segment's. Measured: the wall
//! time against the same push to three receivers on the core, and the
//! bytes each relay took in on its link to the core (its upstream link),
//! per byte pushed.
//!
//! **Invariant:** every namespace made here is removed when the
//! [`RelayNet`] is dropped, and a new one first removes what an
//! interrupted run left.

use super::net::{flooding_bridge, in_ns, sh};
use super::table::median;
use crate::demo::bytes;
use crate::make_keys;
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Segments behind relays, and receivers on each.
const SEGMENTS: usize = 4;
const PER_SEGMENT: usize = 3;
/// The origin's rate, and the slow segment's link (ten times slower).
const ORIGIN_MBIT: u32 = 400;
const SLOW_MBIT: u32 = ORIGIN_MBIT / 10;
/// The lossy segment and its loss; the slow segment.
const LOSSY: usize = 1;
const LOSS_PERCENT: u32 = 5;
const SLOW: usize = 3;
/// The push.
const PUSH_BYTES: usize = 64 << 20;

const CORE: &str = "mdpr-core";
const ORIGIN: &str = "mdpr-o";
const CORE_GROUP: &str = "239.255.80.1:7400";
const SEGMENT_GROUP: &str = "239.255.81.1:7400";

fn relay_ns(s: usize) -> String {
    format!("mdpr-r{s}")
}
fn hub_ns(s: usize) -> String {
    format!("mdpr-s{s}")
}
fn host_ns(s: usize, j: usize) -> String {
    format!("mdpr-s{s}h{j}")
}

/// The core, the relays and their segments.
struct RelayNet;

impl RelayNet {
    fn names() -> Vec<String> {
        let mut v = vec![CORE.to_string(), ORIGIN.to_string()];
        for s in 0..SEGMENTS {
            v.push(relay_ns(s));
            v.push(hub_ns(s));
            for j in 0..PER_SEGMENT {
                v.push(host_ns(s, j));
            }
        }
        v
    }

    fn cleanup() {
        for n in RelayNet::names() {
            let _ = sh(&["ip", "netns", "del", &n]);
        }
    }

    /// A veth from `ns` (`dev`, address `addr`) to a port `port` of the
    /// bridge in `hub`.
    fn attach(hub: &str, port: &str, ns: &str, dev: &str, addr: &str) -> Result<()> {
        sh(&[
            "ip", "-n", hub, "link", "add", port, "type", "veth", "peer", "name", dev, "netns", ns,
        ])?;
        sh(&["ip", "-n", hub, "link", "set", port, "master", "br0", "up"])?;
        in_ns(hub, &["ethtool", "-K", port, "tso", "off", "gso", "off"])?;
        sh(&["ip", "-n", ns, "link", "set", dev, "up"])?;
        sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev])?;
        in_ns(
            ns,
            &[
                "ethtool",
                "-K",
                dev,
                "tx-udp-segmentation",
                "off",
                "gro",
                "on",
            ],
        )
    }

    fn new() -> Result<RelayNet> {
        RelayNet::cleanup();
        for n in RelayNet::names() {
            sh(&["ip", "netns", "add", &n])?;
            sh(&["ip", "-n", &n, "link", "set", "lo", "up"])?;
        }
        let net = RelayNet;
        flooding_bridge(CORE, "br0")?;
        RelayNet::attach(CORE, "po", ORIGIN, "eth0", "10.78.0.1/24")?;
        sh(&[
            "ip",
            "-n",
            ORIGIN,
            "route",
            "add",
            "224.0.0.0/4",
            "dev",
            "eth0",
        ])?;
        for s in 0..SEGMENTS {
            let r = relay_ns(s);
            RelayNet::attach(
                CORE,
                &format!("pr{s}"),
                &r,
                "eth0",
                &format!("10.78.0.{}/24", 10 + s),
            )?;
            flooding_bridge(&hub_ns(s), "br0")?;
            RelayNet::attach(&hub_ns(s), "pr", &r, "eth1", &format!("10.79.{s}.1/24"))?;
            // The core's group arrives on eth0; the segment's leaves by eth1.
            sh(&["ip", "-n", &r, "route", "add", "224.0.0.0/4", "dev", "eth0"])?;
            for j in 0..PER_SEGMENT {
                let h = host_ns(s, j);
                RelayNet::attach(
                    &hub_ns(s),
                    &format!("h{j}"),
                    &h,
                    "eth0",
                    &format!("10.79.{s}.{}/24", 10 + j),
                )?;
                sh(&["ip", "-n", &h, "route", "add", "224.0.0.0/4", "dev", "eth0"])?;
            }
        }
        // 5 % of the frames towards segment 1's receivers lost.
        let hub = hub_ns(LOSSY);
        in_ns(&hub, &["nft", "add", "table", "bridge", "loss"])?;
        in_ns(
            &hub,
            &[
                "nft",
                "add",
                "chain",
                "bridge",
                "loss",
                "forward",
                "{ type filter hook forward priority 0 ; }",
            ],
        )?;
        let threshold = (LOSS_PERCENT * 10).to_string();
        in_ns(
            &hub,
            &[
                "nft", "add", "rule", "bridge", "loss", "forward", "oifname", "h*", "meta",
                "l4proto", "udp", "numgen", "random", "mod", "1000", "<", &threshold, "drop",
            ],
        )?;
        // Segment 3 behind a slow link: the relay's way into it.
        in_ns(
            &relay_ns(SLOW),
            &[
                "tc",
                "qdisc",
                "add",
                "dev",
                "eth1",
                "root",
                "tbf",
                "rate",
                &format!("{SLOW_MBIT}mbit"),
                "burst",
                "256kb",
                "latency",
                "50ms",
            ],
        )?;
        Ok(net)
    }

    /// Bytes relay `s` has taken in from the core so far.
    fn relay_rx_bytes(s: usize) -> Result<u64> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &relay_ns(s),
                "cat",
                "/sys/class/net/eth0/statistics/rx_bytes",
            ])
            .output()?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .context("rx_bytes")
    }
}

impl Drop for RelayNet {
    fn drop(&mut self) {
        RelayNet::cleanup();
    }
}

/// `mdp-recv --once` in `ns`, in `dir`, with `extra`.
fn recv(
    bin: &Path,
    ns: &str,
    dir: &Path,
    name: &str,
    trust: &str,
    extra: &[&str],
) -> Result<Child> {
    let _ = fs::remove_dir_all(dir);
    Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(bin.join("mdp-recv"))
        .arg("--dir")
        .arg(dir)
        .args([
            "--once",
            "--quiet",
            "--timeout",
            "300s",
            "--name",
            name,
            "--trust",
            trust,
        ])
        .args(["--interface", "eth0"])
        .args(extra)
        .env("MDP_RECV_CONFIG", "/dev/null")
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start mdp-recv")
}

/// One push from the origin to `receivers`: its wall time, its report,
/// and when each of `watch` (receivers, timed while the origin runs on a
/// thread of its own) ended, from the push's start.
fn push(
    bin: &Path,
    key: &Path,
    src: &Path,
    receivers: usize,
    watch: Vec<Child>,
) -> Result<(Duration, serde_json::Value, Vec<Duration>)> {
    let start = Instant::now();
    let (b, k, f) = (bin.to_path_buf(), key.to_path_buf(), src.to_path_buf());
    let origin = std::thread::spawn(move || origin(&b, &k, &f, receivers, start));
    let ends = reap(watch, start);
    let (wall, v) = origin.join().expect("the origin's thread")?;
    Ok((wall, v, ends?))
}

/// `mdp-send` in the origin's namespace, started at `start`.
fn origin(
    bin: &Path,
    key: &Path,
    src: &Path,
    receivers: usize,
    start: Instant,
) -> Result<(Duration, serde_json::Value)> {
    let out = Command::new("ip")
        .args(["netns", "exec", ORIGIN])
        .arg(bin.join("mdp-send"))
        .arg("--identity")
        .arg(key)
        .args([
            "--interface",
            "eth0",
            "--group",
            CORE_GROUP,
            "--receivers",
            &receivers.to_string(),
            "--max-rate",
            &format!("{ORIGIN_MBIT}M"),
            "--no-hash-cache",
            "--json",
            "--quiet",
            "--timeout",
            "300s",
            "--wait",
            "10s",
        ])
        .arg(src)
        .env("MDP_SEND_CONFIG", "/dev/null")
        .output()?;
    let wall = start.elapsed();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "mdp-send printed no report: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((wall, v))
}

/// Waits for `children` (at most five minutes from `start`); when each
/// ended, from `start`.
pub(super) fn reap(mut children: Vec<Child>, start: Instant) -> Result<Vec<Duration>> {
    let mut ends: Vec<Option<Duration>> = vec![None; children.len()];
    let deadline = start + Duration::from_secs(300);
    while ends.iter().any(Option::is_none) {
        for (c, end) in children.iter_mut().zip(ends.iter_mut()) {
            if end.is_none() && c.try_wait()?.is_some() {
                *end = Some(start.elapsed());
            }
        }
        if Instant::now() > deadline {
            for c in &mut children {
                let _ = c.kill();
                let _ = c.wait();
            }
            bail!("a receiver did not end within five minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(ends.into_iter().flatten().collect())
}

pub(super) fn relays(bin: &Path, runs: usize, base: &Path) -> Result<()> {
    eprintln!(
        "==> relays: {SEGMENTS} segments of {PER_SEGMENT} receivers behind relays ({LOSS_PERCENT} % loss in segment {LOSSY}, segment {SLOW} behind {SLOW_MBIT} Mbit/s), against {PER_SEGMENT} receivers on the origin's network; {} MiB at up to {ORIGIN_MBIT} Mbit/s",
        PUSH_BYTES >> 20
    );
    let _net = RelayNet::new()?;
    let dir = base.join("relays");
    fs::create_dir_all(&dir)?;
    let src = dir.join("push.bin");
    if fs::metadata(&src).map(|m| m.len()).unwrap_or(0) != PUSH_BYTES as u64 {
        fs::write(&src, bytes(PUSH_BYTES, 13))?;
    }
    let keys = make_keys(bin, &dir.join("keys"), &[])?;
    let trust = keys.sender_pub.clone();
    let group = ["--group", CORE_GROUP];
    let mut direct = Vec::new();
    let mut relayed = Vec::new();
    let mut upstream: Vec<Vec<f64>> = vec![Vec::new(); SEGMENTS];
    let mut segment_secs: Vec<Vec<f64>> = vec![Vec::new(); SEGMENTS];
    for run in 0..runs {
        // The same push to three receivers on the origin's own network:
        // the relays' namespaces, as plain receivers of the core's group.
        let rx: Vec<Child> = (0..PER_SEGMENT)
            .map(|s| {
                recv(
                    bin,
                    &relay_ns(s),
                    &dir.join(format!("direct{s}")),
                    &format!("direct{s}"),
                    &trust,
                    &group,
                )
            })
            .collect::<Result<_>>()?;
        std::thread::sleep(Duration::from_millis(300));
        let (wall, v, _) = push(bin, &keys.sender, &src, PER_SEGMENT, rx)?;
        if v["success"] != true {
            bail!("the direct push failed: {v}");
        }
        direct.push(wall.as_secs_f64());
        // Through the relays.
        let mut rx = Vec::new();
        let mut relays = Vec::new();
        for s in 0..SEGMENTS {
            for j in 0..PER_SEGMENT {
                rx.push(recv(
                    bin,
                    &host_ns(s, j),
                    &dir.join(format!("s{s}h{j}")),
                    &format!("s{s}h{j}"),
                    &trust,
                    &["--group", SEGMENT_GROUP],
                )?);
            }
            relays.push(recv(
                bin,
                &relay_ns(s),
                &dir.join(format!("relay{s}")),
                &format!("relay{s}"),
                &trust,
                &[
                    "--group",
                    CORE_GROUP,
                    "--relay-group",
                    SEGMENT_GROUP,
                    "--relay-interface",
                    "eth1",
                    "--relay-receivers",
                    &PER_SEGMENT.to_string(),
                    "--relay-wait",
                    "10s",
                ],
            )?);
        }
        std::thread::sleep(Duration::from_millis(300));
        let before: Vec<u64> = (0..SEGMENTS)
            .map(RelayNet::relay_rx_bytes)
            .collect::<Result<_>>()?;
        let (wall, v, ends) = push(bin, &keys.sender, &src, SEGMENTS * (PER_SEGMENT + 1), rx)?;
        let after: Vec<u64> = (0..SEGMENTS)
            .map(RelayNet::relay_rx_bytes)
            .collect::<Result<_>>()?;
        reap(relays, Instant::now())?;
        // A segment is done when its last receiver ended.
        for (s, secs) in segment_secs.iter_mut().enumerate() {
            let last = ends[s * PER_SEGMENT..(s + 1) * PER_SEGMENT]
                .iter()
                .max()
                .copied()
                .unwrap_or_default();
            secs.push(last.as_secs_f64());
        }
        if v["success"] != true {
            bail!("the push through relays failed: {v}");
        }
        for r in v["receivers"].as_array().context("receivers")? {
            if r["verdict"] != "confirmed" {
                bail!("{} did not confirm: {r}", r["name"]);
            }
        }
        for s in 0..SEGMENTS {
            upstream[s].push((after[s] - before[s]) as f64 / PUSH_BYTES as f64);
            for j in 0..PER_SEGMENT {
                let got = fs::read(dir.join(format!("s{s}h{j}/push.bin")))?;
                if got.len() != PUSH_BYTES || got != fs::read(&src)? {
                    bail!("s{s}h{j}'s copy differs from the push");
                }
            }
        }
        relayed.push(wall.as_secs_f64());
        eprintln!(
            "run {}: direct {:.2} s, through relays {:.2} s, upstream bytes per byte {:?}",
            run + 1,
            direct[run],
            relayed[run],
            upstream
                .iter()
                .map(|u| format!("{:.3}", u[run]))
                .collect::<Vec<_>>()
        );
    }
    println!();
    println!(
        "| push of {} MiB | wall time (median of {runs}) |",
        PUSH_BYTES >> 20
    );
    println!("|---|---|");
    println!(
        "| to {PER_SEGMENT} receivers on the origin's network | {:.2} s |",
        median(direct.clone())
    );
    println!(
        "| to {} receivers behind {SEGMENTS} relays (and the relays) | {:.2} s |",
        SEGMENTS * PER_SEGMENT,
        median(relayed.clone())
    );
    println!();
    println!("| relay | its network | its {PER_SEGMENT} receivers done, from the push's start (median) | bytes in on its upstream link per byte pushed (median) |");
    println!("|---|---|---|---|");
    for (s, u) in upstream.iter().enumerate() {
        let what = match s {
            LOSSY => format!("{LOSS_PERCENT} % loss towards its receivers"),
            SLOW => format!("behind {SLOW_MBIT} Mbit/s"),
            _ => "plain".to_string(),
        };
        println!(
            "| relay{s} | {what} | {:.2} s | {:.3} |",
            median(segment_secs[s].clone()),
            median(u.clone())
        );
    }
    Ok(())
}

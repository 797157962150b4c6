//! `cargo xtask bench --only tree`: a unicast relay tree against one
//! unicast copy per host (docs/BENCHMARKS.md, "Relays").
//!
//! Sixteen hosts on the bench's bridge, each an `mdp-recv --unicast
//! --relay-tree`; the origin pushes to them with `--tree` (fan-out 4: four
//! copies from the origin, each of those hosts passing the push on to
//! three or four more) and with `--to` for each of the sixteen. Measured:
//! the bytes the origin's interface sent, per byte pushed, and the wall
//! time; then the same with the origin's upload capped at 1 Gbit/s (a tbf
//! on its interface), as a cloud host's is.

use super::net::{host, ip, Net};
use super::table::median;
use crate::demo::bytes;
use crate::make_keys;
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HOSTS: usize = 16;
const FAN_OUT: usize = 4;
const PUSH_BYTES: usize = 64 << 20;
/// Each host's port (its relay sends from the next one).
const PORT: u16 = 7400;
/// The origin's upload in the second half of the bench.
const UPLINK_MBIT: u32 = 1000;

/// Caps (or uncaps, 0) the origin's upload.
fn cap_uplink(mbit: u32) -> Result<()> {
    super::net::tbf(&host(0), "eth0", mbit)
}

/// The receivers, one per host namespace.
fn receivers(bin: &Path, dir: &Path, trust: &str) -> Result<Vec<Child>> {
    (1..=HOSTS)
        .map(|i| {
            let d = dir.join(format!("h{i}"));
            let _ = fs::remove_dir_all(&d);
            Command::new("ip")
                .args(["netns", "exec", &host(i)])
                .arg(bin.join("mdp-recv"))
                .arg("--dir")
                .arg(&d)
                .args([
                    "--once",
                    "--quiet",
                    "--timeout",
                    "300s",
                    "--name",
                    &format!("h{i}"),
                ])
                .args([
                    "--trust",
                    trust,
                    "--unicast",
                    "--relay-tree",
                    "--interface",
                    &ip(i),
                ])
                .args(["--group", &format!("239.255.77.1:{PORT}")])
                .env("MDP_RECV_CONFIG", "/dev/null")
                .stdout(Stdio::null())
                .spawn()
                .context("cannot start mdp-recv")
        })
        .collect()
}

/// One push from host 0 with `how` (`--tree FILE …` or `--to …`): wall
/// time, the origin's bytes sent per byte pushed.
fn push(bin: &Path, net: &Net, key: &Path, src: &Path, how: &[String]) -> Result<(f64, f64)> {
    let before = net.sender_tx_bytes()?;
    let start = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", &host(0)])
        .arg(bin.join("mdp-send"))
        .arg("--identity")
        .arg(key)
        .args(["--interface", &ip(0), "--receivers", &HOSTS.to_string()])
        .args(["--no-hash-cache", "--json", "--quiet", "--timeout", "300s"])
        .args(how)
        .arg(src)
        .env("MDP_SEND_CONFIG", "/dev/null")
        .output()?;
    let wall = start.elapsed().as_secs_f64();
    let sent = net.sender_tx_bytes()? - before;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "mdp-send printed no report: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if v["success"] != true {
        bail!("the push failed: {v}");
    }
    Ok((wall, sent as f64 / PUSH_BYTES as f64))
}

pub(super) fn tree(bin: &Path, runs: usize, base: &Path) -> Result<()> {
    eprintln!(
        "==> unicast relay tree: {HOSTS} hosts, fan-out {FAN_OUT}, against --to each; {} MiB",
        PUSH_BYTES >> 20
    );
    let net = Net::new(HOSTS + 1)?;
    let dir = base.join("tree");
    fs::create_dir_all(&dir)?;
    let src = dir.join("push.bin");
    if fs::metadata(&src).map(|m| m.len()).unwrap_or(0) != PUSH_BYTES as u64 {
        fs::write(&src, bytes(PUSH_BYTES, 17))?;
    }
    let keys = make_keys(bin, &dir.join("keys"), &[])?;
    let list = dir.join("hosts");
    let hosts: String = (1..=HOSTS).map(|i| format!("{}:{PORT}\n", ip(i))).collect();
    fs::write(&list, hosts)?;
    let tree_args = vec![
        "--tree".to_string(),
        list.display().to_string(),
        "--fan-out".to_string(),
        FAN_OUT.to_string(),
    ];
    let to_args: Vec<String> = (1..=HOSTS)
        .flat_map(|i| ["--to".to_string(), format!("{}:{PORT}", ip(i))])
        .collect();
    let mut rows: Vec<(&str, Vec<f64>, Vec<f64>)> = vec![
        ("relay tree, fan-out 4", Vec::new(), Vec::new()),
        ("--to each of 16", Vec::new(), Vec::new()),
        (
            "relay tree, fan-out 4, origin's upload 1 Gbit/s",
            Vec::new(),
            Vec::new(),
        ),
        (
            "--to each of 16, origin's upload 1 Gbit/s",
            Vec::new(),
            Vec::new(),
        ),
    ];
    for run in 0..runs {
        let cases = [
            (&tree_args, 0),
            (&to_args, 0),
            (&tree_args, UPLINK_MBIT),
            (&to_args, UPLINK_MBIT),
        ];
        for ((how, cap), row) in cases.into_iter().zip(rows.iter_mut()) {
            cap_uplink(cap)?;
            let rx = receivers(bin, &dir, &keys.sender_pub)?;
            std::thread::sleep(Duration::from_millis(300));
            let (wall, copies) = push(bin, &net, &keys.sender, &src, how)?;
            super::relays::reap(rx, Instant::now())?;
            for i in 1..=HOSTS {
                if fs::read(dir.join(format!("h{i}/push.bin")))? != fs::read(&src)? {
                    bail!("h{i}'s copy differs from the push");
                }
            }
            eprintln!(
                "run {}: {}: {wall:.2} s, {copies:.2} copies from the origin",
                run + 1,
                row.0
            );
            row.1.push(wall);
            row.2.push(copies);
        }
    }
    println!();
    println!(
        "| {} MiB to {HOSTS} hosts | wall time (median of {runs}) | bytes the origin sent per byte pushed |",
        PUSH_BYTES >> 20
    );
    println!("|---|---|---|");
    for (name, wall, copies) in rows {
        println!("| {name} | {:.2} s | {:.2} |", median(wall), median(copies));
    }
    Ok(())
}

//! `cargo xtask bench`: FEC throughput, the simulator's many-small-files
//! cost, and end-to-end pushes. With root, mdp against udpcast and UFTP on
//! the same machine, in the same run, each sender and receiver in its own
//! network namespace, joined by a bridge ([`net`]); every figure is the
//! median of `--runs` runs, and the table goes to stdout and, as Markdown
//! and JSON, to target/bench/ ([`peers`]). Without root, mdp alone over
//! loopback.
//!
//! - [`net`]: the namespaces, bridge, loss and rate limits, or one loopback.
//! - [`floor`]: the testbed floor (`cargo xtask blast` / `sink`).
//! - [`tools`]: the tools under test and one measured run of each.
//! - [`table`]: the rows and their rendering.
//! - [`data`]: what is pushed, and how copies are compared.
//! - [`packages`]: the commands needed, installed when missing.
//! - [`peers`]: the comparison's cases.
//! - [`xfs`]: an XFS with reflink on a loop device, for the delta cases.
//! - [`long`]: long pushes (5 GiB; one slowed receiver) beside `dd`, mdp
//!   alone (`--only long`).

pub mod data;
pub mod floor;
mod long;
pub mod net;
pub mod packages;
mod peers;
mod relays;
mod table;
mod tools;
mod tree;
mod xfs;

use crate::demo::{bytes, receivers};
use crate::{build_release, cargo, enter_private_netns, root, run as run_cmd, INNER};
use anyhow::{bail, Context, Result};
use mdp_sim::netns;
use std::fs;
use std::process::Command;
use std::time::Duration;
use table::median;

pub fn run(args: &[String]) -> Result<()> {
    let mut runs = 3usize;
    let mut only = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.next()) {
            ("--runs", Some(n)) => runs = n.parse().context("--runs N")?,
            ("--only", Some(text)) => only = Some(text.clone()),
            _ => bail!("usage: cargo xtask bench [--runs N] [--only TEXT]"),
        }
    }
    let only = only.as_deref();
    if std::env::var(INNER).is_err() && only.is_none() {
        eprintln!("==> FEC throughput (benches/benches/fec.rs)");
        run_cmd(
            "cargo bench -p mdp-benches --bench fec",
            cargo().args(["bench", "-q", "-p", "mdp-benches", "--bench", "fec"]),
        )?;
    }
    if std::env::var(INNER).is_err() && only.is_none() {
        eprintln!(
            "==> many small files: both state machines in the simulator (CPU time per file count)"
        );
        for n in ["25000", "100000"] {
            run_cmd(
                &format!("simulated push of {n} small files"),
                cargo().args([
                    "run",
                    "--release",
                    "-q",
                    "-p",
                    "mdp-sim",
                    "--example",
                    "smallfiles",
                    "--",
                    n,
                ]),
            )?;
        }
    }
    let bin = build_release()?;
    if std::env::var(INNER).is_err() && netns::available() {
        // Long pushes (mdp alone), then the comparison, which covers the
        // loopback cases too. `--only long` runs the long rows alone.
        if only == Some("relays") {
            return relays::relays(&bin, runs, &root().join("target/bench"));
        }
        if only == Some("tree") {
            return tree::tree(&bin, runs, &root().join("target/bench"));
        }
        let long_only = only.is_some_and(|o| o.starts_with("long"));
        if only.is_none() || long_only {
            long::long(&bin, runs, &|case: &str| {
                only.is_none_or(|o| case.contains(o))
            })?;
        }
        if long_only {
            return Ok(());
        }
        return peers::peers(&bin, runs, only);
    }
    if std::env::var(INNER).is_err() {
        eprintln!("note: skipping the comparison with udpcast and UFTP: it needs root (network namespaces, nftables, tc); measuring mdp alone over loopback");
    }
    if !enter_private_netns("bench")? {
        return Ok(());
    }
    let base = root().join("target/bench");
    fs::create_dir_all(&base)?;
    let src = base.join("file-256MiB.bin");
    if fs::metadata(&src).map(|m| m.len()).unwrap_or(0) != 256 << 20 {
        fs::write(&src, bytes(256 << 20, 9))?;
    }
    let mut rows = Vec::new();
    for n in [1usize, 4] {
        let mut secs = Vec::new();
        let mut goodput = Vec::new();
        let mut wire = Vec::new();
        let names: Vec<String> = (0..n).map(|i| format!("receiver{i}")).collect();
        let keys = crate::make_keys(&bin, &base.join("keys"), &names)?;
        for _ in 0..runs {
            let rx = receivers(&bin, &base, &keys)?;
            std::thread::sleep(Duration::from_millis(300));
            let out = Command::new(bin.join("mdp-send"))
                .arg("--identity")
                .arg(&keys.sender)
                .args([
                    "--receivers",
                    &n.to_string(),
                    "--no-hash-cache",
                    "--json",
                    "--quiet",
                    "--timeout",
                    "300s",
                ])
                .arg(&src)
                .output()?;
            for mut c in rx {
                c.wait()?;
            }
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
                format!(
                    "mdp-send printed no report: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
            if v["success"] != true {
                bail!("push to {n} receivers failed: {v}");
            }
            secs.push(v["elapsed_secs"].as_f64().unwrap_or(0.0));
            goodput.push(v["goodput_mbps"].as_f64().unwrap_or(0.0));
            wire.push(
                v["stats"]["wire_bytes_per_file_byte"]
                    .as_f64()
                    .unwrap_or(0.0),
            );
        }
        rows.push((n, median(secs), median(goodput), median(wire)));
    }
    println!("\n| push (loopback, one network namespace, adaptive rate) | wall time (median of {runs}) | goodput | wire bytes per file byte |");
    println!("|---|---|---|---|");
    for (n, s, g, w) in rows {
        println!(
            "| 256 MiB to {n} receiver{} | {s:.2} s | {g:.0} Mbit/s | {w:.3} |",
            if n == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

//! The fault suite's routed scenarios, on [`RoutedNet`]: a push across a
//! multicast router with feedback through it, and the two ways a TTL of 1
//! keeps it from crossing, each with the one line that says so.

use super::{same_tree, sender_report, summary, wait_output, Ctx, Row, SEND_LIMIT};
use crate::routed::{addr, ns, RoutedNet, GROUP, PORT};
use anyhow::{Context, Result};
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The receivers: one beside the sender, two beyond the router.
const RECEIVERS: [&str; 3] = ["a1", "b1", "b2"];

/// What a routed push left: the sender's report, wall time, wire bytes
/// per file byte, exit code, and each receiver's exit code and stderr.
struct Routed {
    report: serde_json::Value,
    secs: f64,
    wire: f64,
    code: i32,
    receivers: Vec<(&'static str, Option<i32>, String)>,
}

fn dir(ctx: &Ctx, name: &str) -> PathBuf {
    ctx.work.join("routed").join(name)
}

/// Starts mdp-recv on `name` with `--ttl ttl`, its stderr to a file.
fn receiver(ctx: &Ctx, name: &str, ttl: u32, timeout: &str) -> Result<Child> {
    let d = dir(ctx, name);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d)?;
    let err = fs::File::create(dir(ctx, &format!("{name}.err")))?;
    let c = Command::new("ip")
        .args(["netns", "exec", &ns(name)])
        .arg(ctx.bin.join("mdp-recv"))
        .arg("--dir")
        .arg(&d)
        .args(["--interface", addr(name), "--node-id", name])
        .args(["--group", &format!("{GROUP}:{PORT}")])
        .args(["--ttl", &ttl.to_string()])
        .args(["--json", "--once", "--timeout", timeout])
        .args(["--trust", &ctx.identity.1])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()?;
    ctx.started(c)
}

/// A push from `s` to the three receivers, each at its TTL in `ttls`, the
/// sender with `args`; `loss` % of what the router forwards into segment b
/// dropped. Without `settle` the receivers are stopped once the sender is
/// done (those it never reached would wait for their timeout).
fn push(
    ctx: &Ctx,
    net: &RoutedNet,
    ttls: [u32; 3],
    args: &[&str],
    loss: u32,
    settle: bool,
) -> Result<Routed> {
    fs::create_dir_all(ctx.work.join("routed"))?;
    net.forward(loss)?;
    let rx: Vec<Child> = RECEIVERS
        .iter()
        .zip(ttls)
        .map(|(n, ttl)| receiver(ctx, n, ttl, "40s"))
        .collect::<Result<_>>()?;
    std::thread::sleep(Duration::from_millis(300));
    let tx0 = net.tx_bytes("s")?;
    let start = Instant::now();
    let sender = ctx
        .sender_on(&ns("s"), addr("s"))
        .args(["--group", &format!("{GROUP}:{PORT}"), "--receivers", "3"])
        .args(args)
        .arg(&ctx.src)
        .spawn()?;
    let sender = ctx.started(sender)?;
    let out = wait_output(sender, SEND_LIMIT)?;
    let secs = start.elapsed().as_secs_f64();
    let tx = net.tx_bytes("s")? - tx0;
    net.forward(0)?;
    let (report, bytes) = sender_report(&out)?;
    let mut receivers = Vec::new();
    if !settle {
        // a1 confirms before the sender ends; give its last writes a moment.
        std::thread::sleep(Duration::from_millis(500));
        for c in &rx {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
    }
    for (name, c) in RECEIVERS.iter().zip(rx) {
        let code = wait_output(c, Duration::from_secs(45))
            .ok()
            .and_then(|o| o.status.code());
        let err = fs::read_to_string(dir(ctx, &format!("{name}.err"))).unwrap_or_default();
        receivers.push((*name, code, err));
    }
    Ok(Routed {
        report,
        secs,
        wire: tx as f64 / bytes,
        code: out.status.code().unwrap_or(-1),
        receivers,
    })
}

fn copy_of(ctx: &Ctx, name: &str) -> Result<(), String> {
    let src = ctx.src.file_name().expect("named");
    same_tree(&ctx.src, &dir(ctx, name).join(src)).map_err(|e| format!("{name}: {e}"))
}

/// A scenario on the routed network: builds it, pushes, and judges the
/// push with `judge`, which gives the result and what the verdicts column
/// adds.
fn scenario(
    ctx: &Ctx,
    condition: &str,
    (ttls, args, loss, settle): ([u32; 3], &[&str], u32, bool),
    judge: impl Fn(&Routed) -> (Result<(), String>, String),
) -> Result<Row> {
    // The suite installed nftables; a router that cannot be built is a
    // failure, not a skip, or the crossing would silently go untested.
    let net = RoutedNet::new(&ctx.work).context("building the routed network")?;
    let p = push(ctx, &net, ttls, args, loss, settle)?;
    let (result, more) = judge(&p);
    Ok(Row {
        scenario: "routed multicast",
        condition: condition.into(),
        secs: p.secs,
        wire: p.wire,
        verdicts: format!("{}; {more}", summary(&p.report)),
        result,
        skipped: false,
    })
}

/// The push crosses the router to segment b at `--ttl 2`, the receivers'
/// NACKs and confirmations cross back, and 3 % of what the router
/// forwards into b is lost, so repairs must follow the NACKs.
pub fn across_a_router(ctx: &Ctx) -> Result<Row> {
    let condition = "s and a1 on segment a, b1 and b2 beyond a router, --ttl 2, 3 % lost into b";
    let args: &[&str] = &["--ttl", "2", "--timeout", "60s"];
    scenario(ctx, condition, ([2, 2, 2], args, 3, true), |p| {
        let mut result = if p.code != 0 {
            Err(format!("sender exited {}: {}", p.code, p.report["problem"]))
        } else {
            Ok(())
        };
        for (name, code, err) in &p.receivers {
            if result.is_ok() && *code != Some(0) {
                result = Err(format!("{name} exited {code:?}: {}", err.trim()));
            }
        }
        for name in RECEIVERS {
            result = result.and_then(|()| copy_of(ctx, name));
        }
        let nacks = p.report["stats"]["nacks_received"].as_u64().unwrap_or(0);
        if result.is_ok() && nacks == 0 {
            result = Err("no NACK crossed the router back to the sender".into());
        }
        (result, format!("{nacks} NACKs through the router"))
    })
}

/// The push crosses the router (the sender's `--ttl 2`) but the far
/// receivers' feedback, at TTL 1, cannot: each of them says so in one
/// line, and the sender reports them missing.
pub fn feedback_ttl_too_small(ctx: &Ctx) -> Result<Row> {
    let condition = "sender --ttl 2, b1 and b2 at --ttl 1";
    let args: &[&str] = &["--ttl", "2", "--wait", "3s", "--timeout", "15s"];
    scenario(ctx, condition, ([1, 1, 1], args, 0, false), |p| {
        let mut result = if p.code == 0 {
            Err("the sender succeeded without hearing b1 and b2".to_string())
        } else {
            copy_of(ctx, "a1")
        };
        for (name, _, err) in &p.receivers {
            let far = name.starts_with('b');
            let told = err.contains("is not on this host's network") && err.contains("--ttl");
            if result.is_ok() && far != told {
                result = Err(format!(
                    "{name} {} the route warning: {}",
                    if far { "lacks" } else { "has" },
                    err.trim()
                ));
            }
        }
        (result, "b1, b2 told to raise --ttl".into())
    })
}

/// The sender's `--ttl 1` keeps the push on its own segment: the far
/// receivers hear nothing, and the sender's report says how to cross.
pub fn push_ttl_too_small(ctx: &Ctx) -> Result<Row> {
    let condition = "sender --ttl 1, receivers at --ttl 2";
    let args: &[&str] = &["--wait", "3s", "--timeout", "15s"];
    scenario(ctx, condition, ([2, 2, 2], args, 0, false), |p| {
        let problem = p.report["problem"].as_str().unwrap_or_default();
        let result = if p.code == 0 {
            Err("the sender succeeded without hearing b1 and b2".to_string())
        } else if !problem.contains("--ttl") {
            Err(format!(
                "the sender's problem does not name --ttl: {problem}"
            ))
        } else {
            copy_of(ctx, "a1")
        };
        (result, "the report names --ttl".into())
    })
}

//! The commands the comparison and the fault suite need, installed from
//! Debian's packages when missing.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Command, Stdio};

/// Installs what the comparison needs from Debian's packages.
pub fn ensure_tools() -> Result<()> {
    install_missing(&[
        ("udp-sender", "udpcast"),
        ("uftp", "uftp"),
        ("ethtool", "ethtool"),
        ("nft", "nftables"),
        ("tc", "iproute2"),
    ])
}

/// Installs what the XFS cases need (mkfs.xfs).
pub fn ensure_xfs_tools() -> Result<()> {
    install_missing(&[("mkfs.xfs", "xfsprogs")])
}

/// Installs what the namespaced network needs (the fault suite).
pub fn ensure_netns_tools() -> Result<()> {
    install_missing(&[
        ("ethtool", "ethtool"),
        ("nft", "nftables"),
        ("tc", "iproute2"),
    ])
}

/// Installs the Debian packages of the commands that are missing.
fn install_missing(tools: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(bin, _)| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {bin}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|(_, pkg)| *pkg)
        .chain((!Path::new("/usr/bin/time").exists()).then_some("time"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "==> installing {} from Debian's packages",
        missing.join(" ")
    );
    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    let mut c = Command::new("apt-get");
    c.args(["install", "-y", "-qq"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    let st = c.status().context("apt-get")?;
    if !st.success() {
        bail!(
            "cannot install {}: install them and run again",
            missing.join(" ")
        );
    }
    // uftp's package starts a uftpd service on the host; it is not needed.
    // It ignores SIGTERM.
    let _ = Command::new("pkill")
        .args(["-KILL", "-x", "uftpd"])
        .status();
    Ok(())
}

//! Private network namespaces for the tests and tasks that run the real
//! binaries: inside one, multicast on loopback cannot leave the machine and
//! parallel runs cannot hear each other.

use std::io;
use std::process::{Command, Stdio};

/// How to run a command in private namespaces: `unshare` with these
/// arguments, then the command. A network namespace, and a PID namespace
/// whose first process is the command (with its own `/proc`): when the
/// command ends, or `unshare` is killed, the kernel kills every process it
/// left behind, so a failed test's receivers never outlive it.
pub const UNSHARE: &[&str] = &["-n", "-p", "-f", "--kill-child", "--mount-proc"];

/// True when this process may create those namespaces (root, and a kernel
/// and sandbox that allow it).
pub fn available() -> bool {
    Command::new("unshare")
        .args(UNSHARE)
        .arg("true")
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Inside a fresh namespace: brings loopback up with multicast and routes
/// 224.0.0.0/4 to it.
pub fn setup_loopback() -> io::Result<()> {
    for cmd in [
        "ip link set lo up",
        "ip link set lo multicast on",
        "ip route add 224.0.0.0/4 dev lo src 127.0.0.1",
    ] {
        let ok = Command::new("sh").arg("-c").arg(cmd).status()?;
        if !ok.success() {
            return Err(io::Error::other(format!("namespace set-up failed: {cmd}")));
        }
    }
    Ok(())
}

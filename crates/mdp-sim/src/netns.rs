//! Private network namespaces for the tests and tasks that run the real
//! binaries: inside one, multicast on loopback cannot leave the machine and
//! parallel runs cannot hear each other.

use std::io;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// How to run a command in private namespaces: `unshare` with these
/// arguments, then the command. A network namespace, and where the machine
/// allows it a PID namespace whose first process is the command (with its
/// own `/proc`): when the command ends, or `unshare` is killed, the kernel
/// kills every process it left behind, so a failed test's receivers never
/// outlive it. `None` when not even a network namespace can be made (not
/// root, or a sandbox that forbids it).
pub fn unshare_args() -> Option<&'static [&'static str]> {
    static ARGS: OnceLock<Option<&'static [&'static str]>> = OnceLock::new();
    *ARGS.get_or_init(|| {
        const CONTAINED: &[&str] = &["-n", "-p", "-f", "--kill-child", "--mount-proc"];
        const NET_ONLY: &[&str] = &["-n"];
        [CONTAINED, NET_ONLY].into_iter().find(|args| {
            Command::new("unshare")
                .args(*args)
                .arg("true")
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    })
}

/// True when this process may create a network namespace.
pub fn available() -> bool {
    unshare_args().is_some()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What a namespaced run leaves behind dies with it: a background
    /// process of the command is gone once the command has returned.
    #[test]
    fn processes_a_namespaced_run_leaves_behind_die_with_it() {
        let Some(args) = unshare_args() else {
            eprintln!("skipping: no private namespaces here (needs root)");
            return;
        };
        if !args.contains(&"-p") {
            eprintln!("skipping: this machine allows a network namespace only, no PID namespace");
            return;
        }
        // A sleep nobody else runs, so that it can be looked for by name.
        let marker = format!(
            "sleep {}.{}",
            40 + std::process::id() % 10,
            std::process::id()
        );
        let ok = Command::new("unshare")
            .args(args)
            .args(["sh", "-c", &format!("{marker} & exit 0")])
            .status()
            .expect("unshare runs")
            .success();
        assert!(ok);
        let left = |m: &str| {
            Command::new("pgrep")
                .args(["-f", m])
                .status()
                .is_ok_and(|s| s.success())
        };
        let start = std::time::Instant::now();
        while left(&marker) {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(5),
                "`{marker}` outlived its namespace"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

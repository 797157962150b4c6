//! `cargo xtask dist --check` (and `cargo xtask ci` as root): the package
//! installed into a throw-away root, as on a fresh host.
//!
//! The root is the host's own file system seen through an overlay whose
//! writable layer is a tmpfs, in a private mount and network namespace: the
//! package's maintainer scripts and files land in the tmpfs and vanish with
//! the namespace, the host is untouched. In it: `dpkg -i`, both programs'
//! `--version`, the man pages found by `man`, the units through
//! `systemd-analyze verify`, the shipped configuration started as the unit
//! starts it, as its own user (it must run and say that no key is trusted
//! yet), then `dpkg --purge`, which must leave nothing behind.

use super::Package;
use crate::run;
use anyhow::Result;
use std::process::Command;

/// The check's steps, run as `sh -c SCRIPT sh DEB` in the namespace.
const SCRIPT: &str = r#"
set -eu
deb=$1
t=$(mktemp -d /tmp/mdp-dist-check.XXXXXX)
trap 'umount -R -l "$t" 2>/dev/null; rmdir "$t" 2>/dev/null || true' EXIT
mount -t tmpfs tmpfs "$t"
mkdir "$t/upper" "$t/work" "$t/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$t/upper,workdir=$t/work" "$t/root"
r=$t/root
mount --bind /proc "$r/proc"
mount --bind /dev "$r/dev"
mount -t tmpfs tmpfs "$r/tmp"
mount -t tmpfs tmpfs "$r/run"
# The host may have this package installed: the fresh root has none.
chroot "$r" sh -c 'dpkg --purge mdp-multicast >/dev/null 2>&1 || true; rm -rf /etc/mdp /var/lib/mdp'
cp "$deb" "$r/tmp/mdp.deb"
ip link set lo up
ip route add 224.0.0.0/4 dev lo src 127.0.0.1
echo "== dpkg -i"
chroot "$r" dpkg -i /tmp/mdp.deb
chroot "$r" getent passwd mdp >/dev/null || { echo "the package made no user mdp"; exit 1; }
for d in /etc/mdp /usr/share/doc/mdp-multicast; do
    [ "$(stat -c %a "$r$d")" = 755 ] || { echo "$d is not 0755"; exit 1; }
done
echo "== --version"
chroot "$r" mdp-send --version
chroot "$r" mdp-recv --version
echo "== man pages"
if chroot "$r" sh -c 'command -v man' >/dev/null; then
    chroot "$r" man -w mdp-send mdp-recv
    for page in mdp-send mdp-recv; do
        for section in EXAMPLES "EXIT STATUS" ENVIRONMENT FILES; do
            chroot "$r" sh -c "MANWIDTH=100 man $page 2>/dev/null" | grep -q "^$section" ||
                { echo "man $page has no $section section"; exit 1; }
        done
    done
else
    echo "(man is not installed: pages not rendered)"
fi
echo "== systemd-analyze verify"
if chroot "$r" sh -c 'command -v systemd-analyze' >/dev/null; then
    ln -s /usr/lib/systemd/system/mdp-recv@.service "$r/tmp/mdp-recv@web.service"
    chroot "$r" systemd-analyze verify --man=no /usr/lib/systemd/system/mdp-recv.service /tmp/mdp-recv@web.service
    echo "units verified"
else
    echo "(systemd-analyze is not installed: units not verified)"
fi
echo "== the shipped configuration, started as the unit starts it (as mdp)"
start=$(sed -n 's/^ExecStart=//p' "$r/usr/lib/systemd/system/mdp-recv.service")
user=$(sed -n 's/^User=//p' "$r/usr/lib/systemd/system/mdp-recv.service")
[ "$user" = mdp ] || { echo "the unit runs as ${user:-root}, not mdp"; exit 1; }
# What systemd's StateDirectory= would make.
chroot "$r" install -d -o mdp -g mdp -m 0755 /var/lib/mdp
set +e
chroot "$r" setpriv --reuid mdp --regid mdp --init-groups sh -c "$start --once --timeout 2s" >"$t/out" 2>"$t/err"
code=$?
set -e
cat "$t/err"
[ "$code" = 1 ] || { echo "expected exit status 1 (no push came), got $code"; exit 1; }
grep -q "no key is trusted" "$t/err" || { echo "the unconfigured receiver did not say that no key is trusted"; exit 1; }
echo "== dpkg --purge"
chroot "$r" dpkg --purge mdp-multicast
for f in /usr/bin/mdp-send /usr/bin/mdp-recv /etc/mdp/recv.toml /usr/lib/systemd/system/mdp-recv.service; do
    [ ! -e "$r$f" ] || { echo "$f is left after purge"; exit 1; }
done
echo "package check: installed, ran, verified and purged cleanly"
"#;

/// Installs `package` into a throw-away root and checks it; skipped, and
/// says why, where the machine cannot (not root, no `unshare`).
pub fn check(package: &Package) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "dist check: skipped: installing into a throw-away root needs root (mount and chroot)"
        );
        return Ok(());
    }
    let can = Command::new("unshare")
        .args(["--mount", "--net", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !can {
        eprintln!("dist check: skipped: no private mount and network namespace here (unshare --mount --net failed)");
        return Ok(());
    }
    run(
        "the package in a throw-away root",
        Command::new("unshare")
            .args([
                "--mount",
                "--net",
                "--propagation",
                "private",
                "sh",
                "-c",
                SCRIPT,
                "sh",
            ])
            .arg(&package.deb),
    )
}

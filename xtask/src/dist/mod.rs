//! `cargo xtask dist`: the Debian package, and `cargo xtask dist --check`:
//! the package installed into a throw-away root.
//!
//! The package holds both binaries (release profile, stripped), their man
//! pages (clap's options plus [`mdp_cli::manual`]'s sections), bash, zsh and
//! fish completions, the systemd units of `dist/`, the example
//! configuration files as conffiles under /etc/mdp, and the docs. It is
//! built from a staging tree (`target/dist/root`, laid out as installed)
//! with `dpkg-deb --root-owner-group`, so no root is needed to build it.

mod check;
mod man;

use crate::{build_release, root, run};
use anyhow::{bail, Context, Result};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use check::check;

/// The package's name (Debian's `mdp` is a Markdown presentation tool).
const PACKAGE: &str = "mdp-multicast";

/// What `dist` built.
pub struct Package {
    pub deb: PathBuf,
}

/// Builds the package; prints what it holds and its sizes.
pub fn dist() -> Result<Package> {
    let bin = build_release()?;
    let out = root().join("target/dist");
    let stage = out.join("root");
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&stage)?;
    let mut sizes = Vec::new();
    for name in ["mdp-send", "mdp-recv"] {
        let to = stage.join("usr/bin").join(name);
        install(&bin.join(name), &to, 0o755)?;
        sizes.push((name, fs::metadata(&to)?.len()));
    }
    for cmd in [
        mdp_cli::send::Args::command(),
        mdp_cli::recv::Args::command(),
    ] {
        let name = cmd.get_name().to_string();
        let manual = if name == "mdp-send" {
            mdp_cli::send::MANUAL
        } else {
            mdp_cli::recv::MANUAL
        };
        let page = man::render(cmd.clone(), manual)?;
        write(
            &stage.join(format!("usr/share/man/man1/{name}.1.gz")),
            &gzip(&page)?,
            0o644,
        )?;
        completions(cmd, &name, &stage)?;
    }
    let repo = root();
    let systemd = stage.join("usr/lib/systemd/system");
    for unit in ["mdp-recv.service", "mdp-recv@.service"] {
        install(&repo.join("dist").join(unit), &systemd.join(unit), 0o644)?;
    }
    install(
        &repo.join("dist/sysusers.conf"),
        &stage.join(format!("usr/lib/sysusers.d/{PACKAGE}.conf")),
        0o644,
    )?;
    for conf in ["recv.toml", "send.toml"] {
        install(
            &repo.join("dist").join(conf),
            &stage.join("etc/mdp").join(conf),
            0o644,
        )?;
    }
    let doc = stage.join("usr/share/doc").join(PACKAGE);
    install(&repo.join("README.md"), &doc.join("README.md"), 0o644)?;
    for entry in fs::read_dir(repo.join("docs"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "md") {
            install(&path, &doc.join(path.file_name().unwrap()), 0o644)?;
        }
    }
    let license = fs::read_to_string(repo.join("LICENSE"))?;
    write(
        &doc.join("copyright"),
        copyright(&license).as_bytes(),
        0o644,
    )?;
    control(&stage, &bin)?;
    // Directories as Debian wants them, whatever the builder's umask.
    dir_modes(&stage)?;
    let arch = architecture()?;
    let deb = out.join(format!(
        "{PACKAGE}_{}_{arch}.deb",
        env!("CARGO_PKG_VERSION")
    ));
    run(
        "dpkg-deb --build",
        Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group", "-Zxz"])
            .arg(&stage)
            .arg(&deb),
    )?;
    eprintln!("dist: {}", deb.display());
    for (name, len) in sizes {
        eprintln!("  {name:9} {:>6.2} MB (stripped)", len as f64 / 1e6);
    }
    eprintln!(
        "  package   {:>6.2} MB",
        fs::metadata(&deb)?.len() as f64 / 1e6
    );
    eprintln!("  staging tree (as installed): {}", stage.display());
    Ok(Package { deb })
}

/// The DEBIAN directory: control, conffiles and the maintainer scripts.
fn control(stage: &Path, bin: &Path) -> Result<()> {
    let debian = stage.join("DEBIAN");
    let installed_kib = du_kib(stage)?;
    let glibc = glibc_needed(&[bin.join("mdp-send"), bin.join("mdp-recv")])?;
    let maintainer = maintainer();
    let control = format!(
        "Package: {PACKAGE}
Version: {version}
Architecture: {arch}
Maintainer: {maintainer}
Installed-Size: {installed_kib}
Depends: libc6 (>= {glibc}), adduser | systemd
Suggests: systemd
Section: net
Priority: optional
Description: reliable multicast file distribution
 mdp-send pushes files and directory trees to many hosts at once over UDP
 multicast: it cuts files into blocks, adds Reed-Solomon parity, paces the
 packets and repairs only what receivers report lost. mdp-recv joins the
 group, rebuilds each block from any k of its n symbols, checks it against
 the signed manifest's BLAKE3 hashes, and only then places each file by
 atomic rename, durably. The sender reports per receiver and exits with a
 meaningful status, so it is safe to run from cron; mdp-recv runs as a
 service (mdp-recv.service, settings in /etc/mdp/recv.toml) and runs hooks
 after each delivery.
",
        version = env!("CARGO_PKG_VERSION"),
        arch = architecture()?,
    );
    write(&debian.join("control"), control.as_bytes(), 0o644)?;
    write(
        &debian.join("conffiles"),
        b"/etc/mdp/recv.toml\n/etc/mdp/send.toml\n",
        0o644,
    )?;
    write(&debian.join("postinst"), POSTINST.as_bytes(), 0o755)?;
    write(&debian.join("prerm"), PRERM.as_bytes(), 0o755)?;
    write(&debian.join("postrm"), POSTRM.as_bytes(), 0o755)?;
    Ok(())
}

/// After install: the service's user exists, systemd learns the units, and
/// an upgrade restarts receivers that run; nothing is enabled or started
/// on a first install, since a receiver takes no push before a sender's
/// key is trusted.
const POSTINST: &str = r#"#!/bin/sh
set -e
if [ "$1" = configure ]; then
    if ! getent passwd mdp >/dev/null; then
        if command -v systemd-sysusers >/dev/null; then
            systemd-sysusers /usr/lib/sysusers.d/mdp-multicast.conf
        else
            adduser --system --group --home /var/lib/mdp --no-create-home mdp >/dev/null
        fi
    fi
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null 2>&1 || true
        if [ -n "$2" ]; then
            systemctl try-restart mdp-recv.service 'mdp-recv@*.service' >/dev/null 2>&1 || true
        fi
    fi
    if [ -z "$2" ]; then
        echo "mdp-multicast: set interface and trust in /etc/mdp/recv.toml, then: systemctl enable --now mdp-recv"
    fi
fi
exit 0
"#;

/// Before removal: the receivers stop.
const PRERM: &str = r#"#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop mdp-recv.service 'mdp-recv@*.service' >/dev/null 2>&1 || true
fi
exit 0
"#;

/// After removal: systemd forgets the units.
const POSTRM: &str = r#"#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null 2>&1 || true
fi
exit 0
"#;

/// Bash, zsh and fish completions where each shell looks for a package's.
fn completions(mut cmd: clap::Command, name: &str, stage: &Path) -> Result<()> {
    use clap_complete::Shell;
    for (shell, path) in [
        (
            Shell::Bash,
            format!("usr/share/bash-completion/completions/{name}"),
        ),
        (
            Shell::Zsh,
            format!("usr/share/zsh/vendor-completions/_{name}"),
        ),
        (
            Shell::Fish,
            format!("usr/share/fish/vendor_completions.d/{name}.fish"),
        ),
    ] {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut cmd, name, &mut text);
        write(&stage.join(path), &text, 0o644)?;
    }
    Ok(())
}

/// Debian's machine-readable copyright file around the licence text.
fn copyright(license: &str) -> String {
    let body: String = license
        .lines()
        .map(|l| {
            if l.trim().is_empty() {
                " .\n".to_string()
            } else {
                format!(" {l}\n")
            }
        })
        .collect();
    format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: mdp\n\nFiles: *\nCopyright: the mdp developers\nLicense: MIT\n{body}"
    )
}

/// The Maintainer field: Debian's DEBFULLNAME and DEBEMAIL, as `dch` reads
/// them, so that whoever publishes the package signs it with their name.
fn maintainer() -> String {
    let name = std::env::var("DEBFULLNAME").unwrap_or_else(|_| "mdp developers".into());
    match std::env::var("DEBEMAIL") {
        Ok(mail) => format!("{name} <{mail}>"),
        Err(_) => {
            eprintln!(
                "dist: DEBEMAIL is not set: the Maintainer field says <root@localhost>; set DEBFULLNAME and DEBEMAIL before publishing"
            );
            format!("{name} <root@localhost>")
        }
    }
}

/// dpkg's name for this machine's architecture (`amd64`, `arm64`).
fn architecture() -> Result<String> {
    let out = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .context(
            "dpkg --print-architecture (cargo xtask dist builds a Debian package: it needs dpkg)",
        )?;
    if !out.status.success() {
        bail!("dpkg --print-architecture failed");
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// The newest glibc symbol version the binaries need (`GLIBC_2.34` →
/// `2.34`), read from their version-requirement strings.
fn glibc_needed(bins: &[PathBuf]) -> Result<String> {
    let mut best = (2u32, 17u32);
    for bin in bins {
        let bytes = fs::read(bin)?;
        for at in memchr_all(&bytes, b"GLIBC_2.") {
            let rest = &bytes[at + 8..];
            let digits: String = rest
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .map(|&b| b as char)
                .collect();
            if let Ok(minor) = digits.parse::<u32>() {
                best = best.max((2, minor));
            }
        }
    }
    Ok(format!("{}.{}", best.0, best.1))
}

fn memchr_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// Kibibytes the staging tree takes, for Installed-Size.
fn du_kib(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let md = entry.metadata()?;
        total += if md.is_dir() {
            du_kib(&entry.path())?
        } else {
            md.len().div_ceil(1024)
        };
    }
    Ok(total)
}

fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut child = Command::new("gzip")
        .args(["-9n"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("gzip (for the man pages)")?;
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output()?;
    feeder.join().expect("gzip's feeder")?;
    if !out.status.success() {
        bail!("gzip failed");
    }
    Ok(out.stdout)
}

/// Every directory of the staging tree 0755.
fn dir_modes(dir: &Path) -> Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            dir_modes(&entry.path())?;
        }
    }
    Ok(())
}

fn install(from: &Path, to: &Path, mode: u32) -> Result<()> {
    let data = fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    write(to, &data, mode)
}

fn write(to: &Path, data: &[u8], mode: u32) -> Result<()> {
    fs::create_dir_all(to.parent().unwrap())?;
    fs::write(to, data)?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

use clap::CommandFactory;

//! The identity tasks both programs share: `--gen-identity FILE` writes a
//! new Ed25519 key (OpenSSH format, mode 0600, never overwriting) and its
//! `FILE.pub`, and prints the public key line; `--fingerprint FILE` prints
//! the fingerprint of each key in a private key file, a `.pub` file or a
//! trust file, as `ssh-keygen -l` does. The key formats are
//! `mdp_proto::identity`'s.

use anyhow::{anyhow, Context};
use mdp_proto::identity::{parse_trust, Identity};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The identity options of both programs; each is a task of its own that
/// runs instead of a push.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct IdentityArgs {
    /// Write a new identity to FILE (an Ed25519 key in OpenSSH format,
    /// mode 0600; never overwritten) and its public key to FILE.pub, print
    /// the public key line, and exit. `ssh-keygen -t ed25519 -N ''` makes
    /// the same kind of file.
    #[arg(long, value_name = "FILE", exclusive = true)]
    pub gen_identity: Option<PathBuf>,

    /// Print the fingerprint of each key in FILE (a private key, a .pub
    /// file, or a trust file of `[name] ssh-ed25519 AAAA…` lines), as
    /// `ssh-keygen -l` prints it, and exit.
    #[arg(long, value_name = "FILE", exclusive = true)]
    pub fingerprint: Option<PathBuf>,
}

impl IdentityArgs {
    /// Runs the task asked for, if any; `None` when a push is asked for.
    pub fn run(&self, program: &str) -> Option<anyhow::Result<i32>> {
        if let Some(path) = &self.gen_identity {
            return Some(gen_identity(path, &host_comment()).map(|line| {
                println!("{line}");
                eprintln!(
                    "{program}: wrote a new identity to {} and its public key to {}.pub",
                    path.display(),
                    path.display()
                );
                crate::EXIT_OK
            }));
        }
        if let Some(path) = &self.fingerprint {
            return Some(fingerprints(path).map(|lines| {
                for line in lines {
                    println!("{line}");
                }
                crate::EXIT_OK
            }));
        }
        None
    }
}

fn host_comment() -> String {
    format!("mdp@{}", mdp_net::recv::host_name())
}

/// Writes a new identity to `path` (mode 0600) and its public key line to
/// `path.pub`, refusing to overwrite either; returns the public key line.
pub fn gen_identity(path: &Path, comment: &str) -> anyhow::Result<String> {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(|e| anyhow!("cannot read /dev/urandom for a key: {e}"))?;
    let identity = Identity::from_seed(seed);
    let line = identity.public().to_line(comment);
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    let pub_path = PathBuf::from(pub_path);
    let create = |p: &Path, mode: u32| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(p)
            .map_err(|e| {
                anyhow!(
                    "cannot create {}: {e} (keys are never overwritten; remove it first to replace it)",
                    p.display()
                )
            })
    };
    // The public file first: if it cannot be made, no private key is left
    // behind without it.
    let mut public = create(&pub_path, 0o644)?;
    let mut private = match create(path, 0o600) {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_file(&pub_path);
            return Err(e);
        }
    };
    private
        .write_all(identity.to_openssh(comment).as_bytes())
        .and_then(|()| private.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(public, "{line}")
        .and_then(|()| public.sync_all())
        .with_context(|| format!("cannot write {}", pub_path.display()))?;
    Ok(line)
}

/// Reads this host's identity from `path`, warning when other users can
/// read it.
pub fn read_identity(path: &Path) -> anyhow::Result<Identity> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow!(
            "cannot read --identity {}: {e}{}",
            path.display(),
            mdp_net::sys::io_fix(&e)
        )
    })?;
    let identity =
        Identity::parse(&text).map_err(|e| anyhow!("--identity {}: {e}", path.display()))?;
    if let Ok(md) = std::fs::metadata(path) {
        if md.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "--identity {} can be read by other users; `chmod 600` it",
                path.display()
            );
        }
    }
    Ok(identity)
}

/// The keys of every `--trust` value: a public key line, or a file of
/// them. A file that holds no key is an error (a typo must not leave the
/// receiver trusting less than meant, silently).
pub fn read_trust(values: &[String]) -> anyhow::Result<Vec<mdp_proto::identity::PublicKey>> {
    let mut keys = Vec::new();
    for v in values {
        if v.trim_start().starts_with("ssh-") {
            let key = mdp_proto::identity::PublicKey::parse(v)
                .map_err(|e| anyhow!("--trust {v:?}: {e}"))?;
            keys.push(key);
            continue;
        }
        let text = std::fs::read_to_string(v).map_err(|e| {
            anyhow!("cannot read --trust {v}: {e} (give a key line `ssh-ed25519 AAAA…` or a file of them)")
        })?;
        let found = parse_trust(&text).map_err(|e| anyhow!("--trust {v}: {e}"))?;
        if found.is_empty() {
            anyhow::bail!("--trust {v} holds no key");
        }
        keys.extend(found.into_iter().map(|t| t.key));
    }
    Ok(keys)
}

/// One line per key of `path`: `SHA256:… name-or-comment (ED25519)`.
pub fn fingerprints(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow!(
            "cannot read {}: {e}{}",
            path.display(),
            mdp_net::sys::io_fix(&e)
        )
    })?;
    if text.contains("PRIVATE KEY-----") {
        let id = Identity::parse(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        return Ok(vec![format!(
            "{} {} (ED25519)",
            id.public().fingerprint(),
            path.display()
        )]);
    }
    let keys = parse_trust(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    if keys.is_empty() {
        anyhow::bail!("{} holds no key", path.display());
    }
    Ok(keys
        .iter()
        .map(|t| {
            let label = t.name.as_deref().unwrap_or("-");
            format!("{} {label} (ED25519)", t.key.fingerprint())
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_identity_is_private_never_overwritten_and_fingerprinted() {
        let dir = std::env::temp_dir().join(format!("mdp-identity-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("id");
        let line = gen_identity(&key, "mdp@test").unwrap();
        assert!(line.starts_with("ssh-ed25519 AAAA") && line.ends_with(" mdp@test"));
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let id = read_identity(&key).unwrap();
        let pub_text = std::fs::read_to_string(dir.join("id.pub")).unwrap();
        assert_eq!(pub_text.trim(), line);
        let err = gen_identity(&key, "again").unwrap_err().to_string();
        assert!(err.contains("never overwritten"), "{err}");
        assert_eq!(read_identity(&key).unwrap().public(), id.public());
        let fp = id.public().fingerprint();
        assert!(fingerprints(&key).unwrap()[0].starts_with(&fp));
        assert!(fingerprints(&dir.join("id.pub")).unwrap()[0].starts_with(&fp));
        std::fs::write(dir.join("trust"), format!("# fleet\nweb1 {line}\n")).unwrap();
        assert_eq!(
            fingerprints(&dir.join("trust")).unwrap(),
            vec![format!("{fp} web1 (ED25519)")]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

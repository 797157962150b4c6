//! Long-term identities: each sender and receiver has its own Ed25519
//! signing key (issue 20's first step; the keys do not sign anything on
//! the wire yet).
//!
//! One format for everything, OpenSSH's, so that operators can reuse
//! `ssh-keygen` keys and host keys and check fingerprints with
//! `ssh-keygen -lf`:
//!
//! - a private key is an unencrypted OpenSSH `ed25519` private key file
//!   (`-----BEGIN OPENSSH PRIVATE KEY-----`), as `ssh-keygen -t ed25519
//!   -N ''` writes it;
//! - a public key is one line `ssh-ed25519 AAAA… [comment]`, as in a `.pub`
//!   file;
//! - a fingerprint is `SHA256:` and the unpadded base64 of the SHA-256 of
//!   the key's SSH encoding, as `ssh-keygen -l` prints it;
//! - a trust file holds one key a line, `[name] ssh-ed25519 AAAA…
//!   [comment]`; blank lines and lines starting with `#` are ignored.
//!
//! Parsing and encoding are `ssh-key`'s (RustCrypto), signing and
//! verifying `ed25519-dalek`'s; nothing here reads a file or a clock or
//! draws randomness: a new key is made from 32 bytes the caller drew.

use std::fmt;
use thiserror::Error;

/// Why a key or a trust file was refused, in one line.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// Not an OpenSSH private key.
    #[error("not an OpenSSH private key ({0}); make one with `mdp-send --gen-identity FILE` or `ssh-keygen -t ed25519 -N '' -f FILE`")]
    BadPrivate(String),
    /// A private key protected by a passphrase.
    #[error("the key is encrypted with a passphrase; mdp runs unattended and needs an unencrypted key (`ssh-keygen -p -N '' -f FILE` removes the passphrase)")]
    Encrypted,
    /// A key of another algorithm.
    #[error("a {0} key; mdp uses ed25519 keys only (`ssh-keygen -t ed25519`)")]
    NotEd25519(String),
    /// Not a public key line.
    #[error("not a public key line ({0}); expected `ssh-ed25519 AAAA…`")]
    BadPublic(String),
    /// A line of a trust file that is not a key.
    #[error("line {line}: {error}")]
    TrustLine {
        /// Line number, from 1.
        line: usize,
        /// What is wrong with it.
        error: Box<KeyError>,
    },
    /// A name in a trust file that could forge output or arguments.
    #[error("the name {0:?} may hold only letters, digits, '.', '_' and '-', not start with '-', and be 1 to 64 bytes")]
    BadName(String),
}

/// A public key: who signed, or who may.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    /// Parses one public key line: `ssh-ed25519 AAAA… [comment]`.
    pub fn parse(line: &str) -> Result<PublicKey, KeyError> {
        let key = ssh_key::PublicKey::from_openssh(line.trim())
            .map_err(|e| KeyError::BadPublic(e.to_string()))?;
        let Some(ed) = key.key_data().ed25519() else {
            return Err(KeyError::NotEd25519(key.algorithm().to_string()));
        };
        ed25519_dalek::VerifyingKey::from_bytes(&ed.0)
            .map(PublicKey)
            .map_err(|e| KeyError::BadPublic(e.to_string()))
    }

    /// The raw 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// From raw bytes (as carried on the wire); `None` when they are not
    /// a point of the curve.
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<PublicKey> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .ok()
            .map(PublicKey)
    }

    fn ssh(&self) -> ssh_key::PublicKey {
        ssh_key::PublicKey::new(
            ssh_key::public::KeyData::Ed25519(ssh_key::public::Ed25519PublicKey(self.to_bytes())),
            "",
        )
    }

    /// The key as one line, `ssh-ed25519 AAAA…`, with `comment` after it
    /// when not empty.
    pub fn to_line(&self, comment: &str) -> String {
        let mut key = self.ssh();
        key.set_comment(comment);
        key.to_openssh()
            .expect("an ed25519 public key always encodes")
    }

    /// `SHA256:…`, as `ssh-keygen -l` prints it for the same key.
    pub fn fingerprint(&self) -> String {
        self.ssh().fingerprint(ssh_key::HashAlg::Sha256).to_string()
    }

    /// True when `signature` is this key's signature of `message`
    /// (strict verification: no malleable or small-order forms).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        self.0.verify_strict(message, &signature).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fingerprint())
    }
}

/// A private signing key: this host's identity.
#[derive(Clone)]
pub struct Identity {
    signing: ed25519_dalek::SigningKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.public().fingerprint())
    }
}

impl Identity {
    /// The identity whose secret is `seed` (32 bytes from a CSPRNG).
    pub fn from_seed(seed: [u8; 32]) -> Identity {
        Identity {
            signing: ed25519_dalek::SigningKey::from_bytes(&seed),
        }
    }

    /// Parses an unencrypted OpenSSH ed25519 private key file's text.
    pub fn parse(text: &str) -> Result<Identity, KeyError> {
        let key = ssh_key::PrivateKey::from_openssh(text.trim_start())
            .map_err(|e| KeyError::BadPrivate(e.to_string()))?;
        if key.is_encrypted() {
            return Err(KeyError::Encrypted);
        }
        let Some(pair) = key.key_data().ed25519() else {
            return Err(KeyError::NotEd25519(key.algorithm().to_string()));
        };
        let identity = Identity::from_seed(pair.private.to_bytes());
        // A file whose public half does not match its private half is
        // corrupt (or was edited): refuse it rather than sign as someone
        // else than the file says.
        if identity.public().to_bytes() != pair.public.0 {
            return Err(KeyError::BadPrivate(
                "its public half does not match its private half".into(),
            ));
        }
        Ok(identity)
    }

    /// The key file's text (OpenSSH format, unencrypted), with `comment`.
    pub fn to_openssh(&self, comment: &str) -> String {
        let pair = ssh_key::private::Ed25519Keypair::from_seed(&self.signing.to_bytes());
        let key = ssh_key::PrivateKey::new(ssh_key::private::KeypairData::Ed25519(pair), comment)
            .expect("an unencrypted ed25519 key always encodes");
        key.to_openssh(ssh_key::LineEnding::LF)
            .expect("an unencrypted ed25519 key always encodes")
            .to_string()
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.signing.sign(message).to_bytes()
    }
}

/// The wall clock as the caller read it at one `Instant`, so that the
/// state machines can tell the Unix time at a later `now` without reading
/// a clock. Callers that live long refresh it (a host suspended, or whose
/// clock was stepped, would otherwise drift).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallClock {
    /// When it was read.
    pub at: std::time::Instant,
    /// The Unix time then, µs.
    pub unix_us: u64,
}

impl WallClock {
    /// The Unix time at `now`, µs.
    pub fn unix_us(&self, now: std::time::Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.at).as_micros() as u64;
        self.unix_us.saturating_add(elapsed)
    }
}

/// How far a push's signing time may be from a receiver's clock, either
/// way: a recording of a signed push cannot be replayed to roll files back
/// once this has passed (and clocks of a fleet agree far better).
pub const SIGNATURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);

/// One key of a trust file, with the name it is trusted under, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trusted {
    /// The host's name (`--expect-file`), or `None` for a bare key line.
    pub name: Option<String>,
    /// Its key.
    pub key: PublicKey,
}

/// True when `name` can stand in reports, logs and hook environments as
/// it is: 1 to 64 bytes of letters, digits, `.`, `_` and `-`, not starting
/// with `-` (no newline, control character or option look-alike).
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= crate::limits::MAX_NAME_LEN
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Parses a trust file: one key a line, `[name] ssh-ed25519 AAAA…
/// [comment]`; blank lines and `#` comments are ignored. An OpenSSH `.pub`
/// file is a trust file of one unnamed key.
pub fn parse_trust(text: &str) -> Result<Vec<Trusted>, KeyError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |error| KeyError::TrustLine {
            line: i + 1,
            error: Box::new(error),
        };
        let first = line.split_whitespace().next().unwrap_or_default();
        let (name, key_text) = if first.starts_with("ssh-") {
            (None, line)
        } else {
            if !is_safe_name(first) {
                return Err(bad(KeyError::BadName(first.to_string())));
            }
            (Some(first.to_string()), line[first.len()..].trim_start())
        };
        let key = PublicKey::parse(key_text).map_err(bad)?;
        out.push(Trusted { name, key });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A key `ssh-keygen -q -t ed25519 -N '' -C test` wrote (OpenSSH 9 on
    // Debian), and the fingerprint `ssh-keygen -lf` printed for it.
    const SSH_PRIVATE: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACAt3bv4cRcfqIJ3MvpW38iWHG/7X0e/DabHNTN2dA8S5gAAAIhCtYj+QrWI
/gAAAAtzc2gtZWQyNTUxOQAAACAt3bv4cRcfqIJ3MvpW38iWHG/7X0e/DabHNTN2dA8S5g
AAAEDkjxEsNV/CEyD7L/oqGw/FiAbVmR7iGJcdLyGlACLM3C3du/hxFx+ogncy+lbfyJYc
b/tfR78Npsc1M3Z0DxLmAAAABHRlc3QB
-----END OPENSSH PRIVATE KEY-----
";
    const SSH_PUBLIC: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC3du/hxFx+ogncy+lbfyJYcb/tfR78Npsc1M3Z0DxLm test";

    #[test]
    fn keys_round_trip_through_the_openssh_formats() {
        let id = Identity::from_seed([7; 32]);
        let text = id.to_openssh("web1");
        assert!(text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        let back = Identity::parse(&text).unwrap();
        assert_eq!(back.public(), id.public());
        let line = id.public().to_line("web1");
        assert!(line.starts_with("ssh-ed25519 AAAA") && line.ends_with(" web1"));
        assert_eq!(PublicKey::parse(&line).unwrap(), id.public());
        assert!(id.public().fingerprint().starts_with("SHA256:"));
    }

    #[test]
    fn ssh_keygen_keys_are_accepted_and_fingerprinted_as_ssh_keygen_does() {
        let id = Identity::parse(SSH_PRIVATE).unwrap();
        let public = PublicKey::parse(SSH_PUBLIC).unwrap();
        assert_eq!(id.public(), public);
        // What `ssh-keygen -lf` printed for this key.
        assert_eq!(
            public.fingerprint(),
            "SHA256:rEpbwoUIf0yCEZ4mZZFSqTC6hoFVVk9Z8Y+17H1u8m8"
        );
    }

    #[test]
    fn signatures_verify_only_for_the_same_key_and_message() {
        let a = Identity::from_seed([1; 32]);
        let b = Identity::from_seed([2; 32]);
        let sig = a.sign(b"push");
        assert!(a.public().verify(b"push", &sig));
        assert!(!a.public().verify(b"pusH", &sig));
        assert!(!b.public().verify(b"push", &sig));
        let mut bent = sig;
        bent[0] ^= 1;
        assert!(!a.public().verify(b"push", &bent));
    }

    #[test]
    fn bad_keys_are_refused_with_the_reason() {
        assert!(matches!(
            Identity::parse("hello"),
            Err(KeyError::BadPrivate(_))
        ));
        assert!(matches!(
            PublicKey::parse("ssh-ed25519 !!!"),
            Err(KeyError::BadPublic(_))
        ));
        let rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7 x";
        assert!(PublicKey::parse(rsa).is_err());
    }

    #[test]
    fn trust_files_take_named_and_bare_keys_and_refuse_forged_names() {
        let a = Identity::from_seed([1; 32]).public();
        let b = Identity::from_seed([2; 32]).public();
        let text = format!(
            "# web tier\n\nweb1 {}\n{}\n",
            a.to_line("web1 key"),
            b.to_line("")
        );
        let t = parse_trust(&text).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].name.as_deref(), Some("web1"));
        assert_eq!(t[0].key, a);
        assert_eq!(t[1].name, None);
        assert_eq!(t[1].key, b);
        for name in ["-rf", "a\u{1b}[2J", "x/y"] {
            let text = format!("{name} {}\n", a.to_line(""));
            let err = parse_trust(&text).unwrap_err();
            assert!(
                matches!(err, KeyError::TrustLine { line: 1, .. }),
                "{name:?}: {err}"
            );
        }
        let err = parse_trust("web1 ssh-ed25519 AAAA\n").unwrap_err();
        assert!(err.to_string().starts_with("line 1: "), "{err}");
        assert!(is_safe_name("web-1.example_com"));
        assert!(!is_safe_name("web1\nX=1"));
    }
}

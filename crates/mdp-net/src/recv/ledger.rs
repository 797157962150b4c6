//! The durable record of accepted signed pushes (`DIR/.mdp-tmp/sessions`),
//! so that a recording of a push replayed after this receiver restarts is
//! refused ([`mdp_proto::receiver::Untrusted::Replayed`]). A push is
//! refused as stale once its signature is older than
//! [`SIGNATURE_WINDOW`]; until then this record stands in.
//!
//! One line when a push is accepted, the session id (16 hex digits), its
//! signing time (µs since the Unix epoch) and its signer's key (64 hex
//! digits), and one more, the same with ` end`, when it ends here; each is appended and flushed to disk
//! (`fsync`) before the receiver goes on (the first before any of the
//! push's files is written). After a restart, a push that ended here is
//! refused, and so is one that did not end but was signed before another
//! push accepted here (it would roll the files back); a push that was
//! under way when the receiver stopped, with none newer, is taken again,
//! so that a restarted receiver rejoins the push still running. Lines
//! older than the window (and a minute of slack) are dropped when the
//! record is read. The file is private to this user and opened without
//! following symbolic links.

use mdp_proto::identity::SIGNATURE_WINDOW;
use mdp_proto::SessionId;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Name of the record, inside [`crate::store::TMP_DIR`].
pub const LEDGER_FILE: &str = "sessions";

/// Most lines kept: far more pushes than a window holds.
const MAX_LINES: usize = 1024;

/// One accepted push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    session: SessionId,
    signed_at_us: u64,
    /// The key that signed it (lines written before it was recorded have
    /// none).
    signer: Option<[u8; 32]>,
    /// It ended here.
    ended: bool,
}

/// The record of one receiver directory.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    /// Accepted pushes still inside the window.
    entries: Vec<Entry>,
    /// Bound on `entries` ([`MAX_LINES`]; smaller in tests).
    max_lines: usize,
}

impl Ledger {
    /// Reads the record of `dir`, keeping what is still within the window
    /// of `now_us`; a missing or unreadable record is empty (an unreadable
    /// line is skipped).
    pub fn open(dir: &Path, now_us: u64) -> Ledger {
        let path = dir.join(crate::store::TMP_DIR).join(LEDGER_FILE);
        let horizon = now_us.saturating_sub((SIGNATURE_WINDOW.as_secs() + 60) * 1_000_000);
        let text = read_nofollow(&path).unwrap_or_default();
        let mut entries: Vec<Entry> = Vec::new();
        for line in text.lines() {
            let mut words = line.split(' ');
            let (Some(id), Some(at)) = (words.next(), words.next()) else {
                continue;
            };
            let (Ok(id), Ok(at)) = (u64::from_str_radix(id, 16), at.trim().parse::<u64>()) else {
                continue;
            };
            if at < horizon {
                continue;
            }
            let mut next = words.next();
            let signer = next.and_then(parse_key);
            if signer.is_some() {
                next = words.next();
            }
            let ended = next == Some("end");
            match entries.iter_mut().find(|e| e.session.0 == id) {
                Some(e) => e.ended |= ended,
                None => entries.push(Entry {
                    session: SessionId(id),
                    signed_at_us: at,
                    signer,
                    ended,
                }),
            }
        }
        if entries.len() > MAX_LINES {
            entries.drain(..entries.len() - MAX_LINES);
        }
        Ledger {
            path,
            entries,
            max_lines: MAX_LINES,
        }
    }

    /// The sessions to refuse as replays: those that ended here, and those
    /// signed before the newest push accepted here.
    pub fn sessions(&self) -> Vec<SessionId> {
        let newest = self.entries.iter().map(|e| e.signed_at_us).max();
        self.entries
            .iter()
            .filter(|e| e.ended || Some(e.signed_at_us) < newest)
            .map(|e| e.session)
            .collect()
    }

    /// Per signing key, the signing time of the newest push accepted here
    /// (`ReceiverConfig::signed_floor`).
    pub fn floors(&self) -> Vec<([u8; 32], u64)> {
        let mut out: Vec<([u8; 32], u64)> = Vec::new();
        for e in &self.entries {
            let Some(k) = e.signer else { continue };
            match out.iter_mut().find(|(x, _)| *x == k) {
                Some((_, t)) => *t = (*t).max(e.signed_at_us),
                None => out.push((k, e.signed_at_us)),
            }
        }
        out
    }

    /// Records an accepted push durably: appended and flushed before this
    /// returns. When the record has grown past its bound it is rewritten
    /// (a temporary file, flushed, renamed over it).
    pub fn record(
        &mut self,
        session: SessionId,
        signed_at_us: u64,
        signer: [u8; 32],
    ) -> io::Result<()> {
        let entry = Entry {
            session,
            signed_at_us,
            signer: Some(signer),
            ended: false,
        };
        self.entries.push(entry);
        if self.entries.len() > self.max_lines {
            self.entries
                .drain(..self.entries.len() - self.max_lines / 2);
            return self.rewrite();
        }
        self.append(&entry)
    }

    /// Records durably that an accepted push ended here; nothing for a
    /// push not recorded (unsigned, or already ended).
    pub fn record_end(&mut self, session: SessionId) -> io::Result<()> {
        let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.session == session && !e.ended)
        else {
            return Ok(());
        };
        e.ended = true;
        let entry = *e;
        self.append(&entry)
    }

    fn append(&self, e: &Entry) -> io::Result<()> {
        self.ensure_dir()?;
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)?;
        writeln!(f, "{}", line(e))?;
        f.sync_all()
    }

    /// Creates the temporary area when the push is the first here, and
    /// refuses one that is a symbolic link.
    fn ensure_dir(&self) -> io::Result<()> {
        let parent = self.path.parent().expect("a file below TMP_DIR");
        match fs::create_dir(parent) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        if fs::symlink_metadata(parent)?.file_type().is_symlink() {
            return Err(io::Error::other(format!(
                "{} is a symbolic link",
                parent.display()
            )));
        }
        Ok(())
    }

    fn rewrite(&self) -> io::Result<()> {
        self.ensure_dir()?;
        let tmp = self.path.with_extension("new");
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        for e in &self.entries {
            writeln!(f, "{}", line(e))?;
        }
        f.sync_all()?;
        fs::rename(&tmp, &self.path)?;
        if let Some(parent) = self.path.parent() {
            File::open(parent)?.sync_all()?;
        }
        Ok(())
    }
}

fn line(e: &Entry) -> String {
    let end = if e.ended { " end" } else { "" };
    let signer: String = e
        .signer
        .map(|k| {
            format!(
                " {}",
                k.iter().map(|b| format!("{b:02x}")).collect::<String>()
            )
        })
        .unwrap_or_default();
    format!("{:016x} {}{signer}{end}", e.session.0, e.signed_at_us)
}

/// A key written as 64 hexadecimal digits.
fn parse_key(word: &str) -> Option<[u8; 32]> {
    if word.len() != 64 || !word.is_ascii() {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(&word[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(key)
}

fn read_nofollow(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut s = String::new();
    f.read_to_string(&mut s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: [u8; 32] = [7; 32];

    #[test]
    fn accepted_pushes_survive_a_restart_for_the_window_only() {
        let dir = crate::test_dir("ledger");
        fs::create_dir_all(dir.join(crate::store::TMP_DIR)).unwrap();
        let now = 1_800_000_000_000_000u64;
        let mut l = Ledger::open(&dir, now);
        assert!(l.sessions().is_empty());
        l.record(SessionId(0xabc), now - 1_000_000, K).unwrap();
        l.record(SessionId(0xdef), now, K).unwrap();
        l.record_end(SessionId(0xdef)).unwrap();
        // A restart a minute later refuses both (0xabc was signed before
        // 0xdef: taking it again would roll back); one an hour later, none.
        assert_eq!(
            Ledger::open(&dir, now + 60_000_000).sessions(),
            [SessionId(0xabc), SessionId(0xdef)]
        );
        assert!(Ledger::open(&dir, now + 3_600_000_000)
            .sessions()
            .is_empty());
        // Garbage lines are skipped.
        let path = dir.join(crate::store::TMP_DIR).join(LEDGER_FILE);
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str("zz\n12 x\n");
        fs::write(&path, text).unwrap();
        assert_eq!(Ledger::open(&dir, now).sessions().len(), 2);
        // The newest push, under way when the receiver stopped, is taken
        // again after a restart (the sender may still be sending it); once
        // it ended, it is refused.
        let mut l = Ledger::open(&dir, now);
        l.record(SessionId(0x123), now + 1, K).unwrap();
        let after = Ledger::open(&dir, now + 1_000_000).sessions();
        assert!(!after.contains(&SessionId(0x123)), "{after:?}");
        assert!(after.contains(&SessionId(0xabc)) && after.contains(&SessionId(0xdef)));
        l.record_end(SessionId(0x123)).unwrap();
        assert!(Ledger::open(&dir, now + 1_000_000)
            .sessions()
            .contains(&SessionId(0x123)));
        // Each key's newest signing time survives the restart, and lines
        // written before keys were recorded still read.
        assert_eq!(Ledger::open(&dir, now + 1_000_000).floors(), [(K, now + 1)]);
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str(&format!("{:016x} {}\n", 0x456, now + 2));
        fs::write(&path, text).unwrap();
        let l = Ledger::open(&dir, now + 1_000_000);
        assert_eq!(l.floors(), [(K, now + 1)]);
        assert!(l.entries.iter().any(|e| e.session == SessionId(0x456)));
        // Bounded: a flood of records keeps at most its bound.
        let mut l = Ledger::open(&dir, now);
        l.max_lines = 16;
        for i in 0..40 {
            l.record(SessionId(i + 1), now, K).unwrap();
        }
        let n = Ledger::open(&dir, now).entries.len();
        assert!((8..=16).contains(&n), "{n}");
        fs::remove_dir_all(&dir).unwrap();
    }
}

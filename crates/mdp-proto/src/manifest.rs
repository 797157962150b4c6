//! The manifest: the list of directories and files a session delivers.
//!
//! It travels as object 0, postcard-encoded. [`Manifest::decode`] is the only
//! way to build one from network bytes, and it rejects every path that could
//! leave the receiver's directory: absolute paths, `.` and `..` components,
//! empty components, NUL bytes, duplicates and a file that is also a parent
//! directory of another entry.

use crate::ids::ObjectId;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use thiserror::Error;

/// Largest encoded manifest a receiver accepts (bytes).
pub const MAX_MANIFEST_LEN: u64 = 256 << 20;
/// Most entries (files and directories) in one manifest.
pub const MAX_ENTRIES: usize = 4_000_000;
/// Longest relative path, in bytes.
pub const MAX_PATH_LEN: usize = 4096;
/// Deepest relative path, in components.
pub const MAX_PATH_DEPTH: usize = 128;
/// Largest file mdp carries (1 PiB), which keeps every block number in u32.
pub const MAX_FILE_SIZE: u64 = 1 << 50;

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A directory (created even when empty).
    Dir,
    /// A regular file, with its size and BLAKE3 hash.
    File {
        /// Length in bytes.
        size: u64,
        /// BLAKE3 hash of the content.
        hash: [u8; 32],
    },
}

/// One directory or file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative path with `/` separators, e.g. `tree/sub/file.txt`.
    pub path: String,
    /// Directory or file.
    pub kind: EntryKind,
    /// Unix permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// Modification time, seconds since the Unix epoch.
    pub mtime_secs: i64,
    /// Nanoseconds part of the modification time.
    pub mtime_nanos: u32,
}

/// The entries of a session, in transmission order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Entries; files become objects 1, 2, ... in this order.
    pub entries: Vec<Entry>,
}

/// Why a manifest was rejected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ManifestError {
    /// Not a postcard-encoded manifest.
    #[error("manifest does not decode")]
    Malformed,
    /// Too many entries.
    #[error("manifest has more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    /// A path that could escape or is otherwise unusable.
    #[error("unsafe path {0:?}: {1}")]
    UnsafePath(String, &'static str),
    /// The same path twice, or a file used as a directory.
    #[error("conflicting path {0:?}")]
    Conflict(String),
    /// A file larger than [`MAX_FILE_SIZE`].
    #[error("file {0:?} is too large")]
    TooLarge(String),
}

/// Checks one relative path; returns why it is unsafe.
pub fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("empty");
    }
    if path.len() > MAX_PATH_LEN {
        return Err("too long");
    }
    if path.starts_with('/') {
        return Err("absolute");
    }
    if path.contains('\0') {
        return Err("contains NUL");
    }
    // A newline would forge a line of the hooks' file lists, an escape
    // sequence would rewrite an operator's terminal.
    if path.chars().any(char::is_control) {
        return Err("contains a control character");
    }
    let mut depth = 0;
    for comp in path.split('/') {
        depth += 1;
        match comp {
            "" => return Err("empty component"),
            "." | ".." => return Err("dot component"),
            _ => {}
        }
    }
    if depth > MAX_PATH_DEPTH {
        return Err("too deep");
    }
    Ok(())
}

impl Manifest {
    /// Encodes for transmission as object 0.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("postcard serialization into a Vec is infallible")
    }

    /// The number of entries encoded `bytes` claim to hold (the length
    /// prefix of the entry list), read without decoding anything else:
    /// what a receiver checks against its limits before it decodes a
    /// manifest into memory. `None` when the prefix is malformed.
    pub fn encoded_entry_count(bytes: &[u8]) -> Option<u64> {
        // postcard: a `Vec` starts with its length as an unsigned LEB128
        // varint of at most 10 bytes.
        let mut n = 0u64;
        for (i, &b) in bytes.iter().take(10).enumerate() {
            n |= u64::from(b & 0x7f).checked_shl(7 * i as u32)?;
            if b & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    /// Decodes and validates network bytes.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let manifest: Manifest =
            postcard::from_bytes(bytes).map_err(|_| ManifestError::Malformed)?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks every path and size; see the module doc.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.entries.len() > MAX_ENTRIES {
            return Err(ManifestError::TooManyEntries);
        }
        let mut seen: HashSet<&str> = HashSet::with_capacity(self.entries.len());
        let mut files: HashSet<&str> = HashSet::new();
        for e in &self.entries {
            check_path(&e.path).map_err(|why| ManifestError::UnsafePath(e.path.clone(), why))?;
            if !seen.insert(&e.path) {
                return Err(ManifestError::Conflict(e.path.clone()));
            }
            if let EntryKind::File { size, .. } = e.kind {
                if size > MAX_FILE_SIZE {
                    return Err(ManifestError::TooLarge(e.path.clone()));
                }
                files.insert(&e.path);
            }
        }
        // No entry may live below a file.
        for e in &self.entries {
            let mut prefix_end = 0;
            while let Some(i) = e.path[prefix_end..].find('/') {
                let parent = &e.path[..prefix_end + i];
                if files.contains(parent) {
                    return Err(ManifestError::Conflict(e.path.clone()));
                }
                prefix_end += i + 1;
            }
        }
        Ok(())
    }

    /// The files, in object order: `(ObjectId(1), entry)`, `(ObjectId(2), entry)`, ...
    pub fn files(&self) -> impl Iterator<Item = (ObjectId, &Entry)> {
        self.entries
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::File { .. }))
            .enumerate()
            .map(|(i, e)| (ObjectId(i as u32 + 1), e))
    }

    /// Number of file objects.
    pub fn file_count(&self) -> u32 {
        self.files().count() as u32
    }

    /// Total bytes of all files.
    pub fn total_bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match e.kind {
                EntryKind::File { size, .. } => size,
                EntryKind::Dir => 0,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::File {
                size: 1,
                hash: [0; 32],
            },
            mode: 0o644,
            mtime_secs: 0,
            mtime_nanos: 0,
        }
    }

    #[test]
    fn the_entry_count_is_read_from_the_prefix_alone() {
        for n in [0usize, 1, 127, 128, 300, 20_000] {
            let m = Manifest {
                entries: (0..n).map(|i| file(&format!("f{i}"))).collect(),
            };
            assert_eq!(Manifest::encoded_entry_count(&m.encode()), Some(n as u64));
        }
        assert_eq!(Manifest::encoded_entry_count(&[]), None);
        assert_eq!(Manifest::encoded_entry_count(&[0xff; 11]), None);
        assert_eq!(
            Manifest::encoded_entry_count(&[0x80, 0x80, 0x80, 0x80, 0x01]),
            Some(1 << 28)
        );
    }

    #[test]
    fn rejects_paths_that_escape() {
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "",
            "a\0b",
            // Would forge a line of a hook's MDP_FILES, or write escape
            // sequences to a terminal.
            "etc/x\nMDP_FAKE",
            "a\rb",
            "a\u{1b}[2Jb",
            "a\u{7f}",
            "a\u{9b}b",
        ] {
            let m = Manifest {
                entries: vec![file(bad)],
            };
            assert!(
                Manifest::decode(&m.encode()).is_err(),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn rejects_duplicates_and_files_used_as_directories() {
        let m = Manifest {
            entries: vec![file("a"), file("a")],
        };
        assert!(matches!(m.validate(), Err(ManifestError::Conflict(_))));
        let m = Manifest {
            entries: vec![file("a"), file("a/b")],
        };
        assert!(matches!(m.validate(), Err(ManifestError::Conflict(_))));
    }

    #[test]
    fn numbers_files_from_one_skipping_directories() {
        let mut dir = file("d");
        dir.kind = EntryKind::Dir;
        let m = Manifest {
            entries: vec![dir, file("d/x"), file("y")],
        };
        m.validate().unwrap();
        let ids: Vec<_> = m.files().map(|(id, e)| (id.0, e.path.as_str())).collect();
        assert_eq!(ids, vec![(1, "d/x"), (2, "y")]);
    }
}

//! The manifest: the list of directories and files a session delivers.
//!
//! It travels as object 0, postcard-encoded. [`Manifest::decode`] is the only
//! way to build one from network bytes, and it rejects every path that could
//! leave the receiver's directory: absolute paths, `.` and `..` components,
//! empty components, NUL bytes, duplicates and a file that is also a parent
//! directory of another entry.

use crate::ids::ObjectId;
use crate::layout::Coding;
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
/// Most distinct owners (user and group pairs) in one manifest.
pub const MAX_OWNERS: usize = 4096;
/// Longest user or group name, in bytes (Linux's own limit is 32).
pub const MAX_NAME_LEN: usize = 32;

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A directory (created even when empty).
    Dir,
    /// A regular file, with its size and BLAKE3 hashes.
    File {
        /// Length in bytes.
        size: u64,
        /// BLAKE3 hash of the content.
        hash: [u8; 32],
        /// BLAKE3 hash of each block of the content at the session's block
        /// size ([`crate::layout::Coding`]), in order, when the file has
        /// more than one block; empty otherwise (a file of one block is
        /// checked against `hash`). See [`Entry::block_hash`].
        blocks: Vec<[u8; 32]>,
    },
    /// A symbolic link (not an object: no data follows). Its target is
    /// taken as written and may point anywhere, as with rsync; the receiver
    /// never follows it (nor any link) when it places or deletes.
    Symlink {
        /// What the link points to, at most [`MAX_PATH_LEN`] bytes, no NUL
        /// and no control character.
        target: String,
    },
    /// A hard link to a file of the same push (not an object: no data
    /// follows): the receiver makes this path another name of the file it
    /// placed at `target`, when the tree settles.
    HardLink {
        /// The path of a [`EntryKind::File`] entry of the same manifest.
        target: String,
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
    /// Its owner and group on the sender: 0 when not recorded, `n` for
    /// [`Manifest::owners`]`[n - 1]`. A receiver running as root gives the
    /// entry that owner (by name, else by number); any other keeps its own.
    pub owner: u32,
}

/// An owner and group of entries on the sender, by number and, when the
/// sender's system has one, by name (empty otherwise).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Owner {
    /// User id on the sender.
    pub uid: u32,
    /// Group id on the sender.
    pub gid: u32,
    /// User name on the sender (`""`: none).
    pub user: String,
    /// Group name on the sender (`""`: none).
    pub group: String,
}

/// Checks a user or group name; returns why it is unusable. Empty (no
/// name), or at most [`MAX_NAME_LEN`] bytes of the portable set `A-Z a-z
/// 0-9 . _ -` (not starting with `-`), with an optional final `$`.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.len() > MAX_NAME_LEN {
        return Err("too long");
    }
    let body = name.strip_suffix('$').unwrap_or(name);
    if body.starts_with('-') {
        return Err("starts with -");
    }
    if !body
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err("not a portable name");
    }
    Ok(())
}

/// The block hashes the manifest carries for a file of content `data` at
/// `coding`'s block size: the BLAKE3 hash of each block, in order, when
/// there is more than one block; none otherwise (see [`EntryKind::File`]).
/// Senders with the file on disk compute the same in one read with its
/// whole hash; this is the definition, for callers holding the bytes.
pub fn block_hashes(data: &[u8], coding: &Coding) -> Vec<[u8; 32]> {
    let block = coding.block_k as usize * coding.symbol_size as usize;
    if block == 0 || data.len() <= block {
        return Vec::new();
    }
    data.chunks(block)
        .map(|c| *blake3::hash(c).as_bytes())
        .collect()
}

impl Entry {
    /// The BLAKE3 hash block `block` of this file must have: its entry in
    /// `blocks`, or the file's `hash` for a file of one block. `None` for a
    /// directory or a block the entry has no hash for (the caller checked
    /// [`Manifest::check_block_hashes`], so that is a block out of range).
    pub fn block_hash(&self, block: u32) -> Option<[u8; 32]> {
        match &self.kind {
            EntryKind::File { blocks, .. } if !blocks.is_empty() => {
                blocks.get(block as usize).copied()
            }
            EntryKind::File { hash, .. } if block == 0 => Some(*hash),
            _ => None,
        }
    }
}

/// The entries of a session, in transmission order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Entries; files become objects 1, 2, ... in this order. (The first
    /// field: [`Manifest::encoded_entry_count`] reads its length.)
    pub entries: Vec<Entry>,
    /// The owners entries refer to ([`Entry::owner`]), each once.
    pub owners: Vec<Owner>,
    /// Switch each pushed directory as a whole (`mdp-send --atomic`): the
    /// receiver places the push in a new version of each top-level
    /// directory and points the directory's name at it only once every
    /// file is in place.
    pub atomic: bool,
    /// A unicast relay tree (`mdp-send --tree`): the hosts the push goes
    /// to, each passing it on to its children ([`RelayTree`]).
    pub tree: Option<RelayTree>,
}

/// Most hosts of a relay tree.
pub const MAX_TREE_HOSTS: usize = 4096;
/// Most children of one node of a relay tree.
pub const MAX_FAN_OUT: u16 = 64;

/// A unicast relay tree, carried in the signed manifest: `hosts` (each
/// `IP:PORT`, where a receiver started with `mdp-recv --unicast
/// --relay-tree` takes pushes) in heap order: the origin sends to the
/// first `fan_out`, and host `i` (from 0) passes the push on to hosts
/// `fan_out·(i+1)` to `fan_out·(i+1) + fan_out − 1` (those that exist).
/// The origin's upload is `fan_out` copies, whatever the number of hosts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayTree {
    /// Children per node, 1 to [`MAX_FAN_OUT`].
    pub fan_out: u16,
    /// The hosts, at most [`MAX_TREE_HOSTS`], each a socket address.
    pub hosts: Vec<String>,
}

impl RelayTree {
    /// The hosts `node` passes the push on to: the origin's (`None`) or
    /// host `i`'s.
    pub fn children(&self, node: Option<usize>) -> &[String] {
        let f = self.fan_out.max(1) as usize;
        let first = node.map_or(0, |i| f.saturating_mul(i.saturating_add(1)));
        let first = first.min(self.hosts.len());
        let end = first.saturating_add(f).min(self.hosts.len());
        &self.hosts[first..end]
    }

    /// The host `i` takes the push from (`None`: the origin).
    pub fn parent(&self, i: usize) -> Option<usize> {
        let f = self.fan_out.max(1) as usize;
        (i >= f).then(|| i / f - 1)
    }

    /// Where `addr` stands in the tree, if it does.
    pub fn position(&self, addr: std::net::SocketAddr) -> Option<usize> {
        self.hosts
            .iter()
            .position(|h| h.parse::<std::net::SocketAddr>().ok() == Some(addr))
    }

    /// The tree's own rules: its size, and every host a socket address
    /// named once.
    fn validate(&self) -> Result<(), ManifestError> {
        if self.fan_out == 0 || self.fan_out > MAX_FAN_OUT {
            return Err(ManifestError::BadTree("fan-out must be 1 to 64"));
        }
        if self.hosts.len() > MAX_TREE_HOSTS {
            return Err(ManifestError::BadTree("more than 4096 hosts"));
        }
        let mut seen = HashSet::with_capacity(self.hosts.len());
        let mut family = None;
        for h in &self.hosts {
            let Ok(addr) = h.parse::<std::net::SocketAddr>() else {
                return Err(ManifestError::BadTree("a host that is not IP:PORT"));
            };
            // One spelling per address (no leading zeros, no long forms),
            // so that a host finds itself and the list stays its size.
            if addr.to_string() != *h {
                return Err(ManifestError::BadTree("a host not written as IP:PORT is"));
            }
            let ip = addr.ip();
            let bad = ip.is_unspecified()
                || ip.is_multicast()
                || addr.port() == 0
                || addr.port() == u16::MAX
                || matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast());
            if bad {
                return Err(ManifestError::BadTree(
                    "a host no receiver can be (unspecified, multicast or broadcast address, port 0 or 65535)",
                ));
            }
            if *family.get_or_insert(ip.is_ipv4()) != ip.is_ipv4() {
                return Err(ManifestError::BadTree("IPv4 and IPv6 hosts mixed"));
            }
            if !seen.insert(addr) {
                return Err(ManifestError::BadTree("a host named twice"));
            }
        }
        Ok(())
    }
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
    /// A symbolic link whose target is unusable.
    #[error("link {0:?} has an unusable target: {1}")]
    UnsafeTarget(String, &'static str),
    /// A hard link whose target is not a file of the same manifest.
    #[error("hard link {0:?} names no file of the push")]
    HardLinkTarget(String),
    /// Too many owners, an unusable owner name, or an entry naming an
    /// owner the manifest does not hold.
    #[error("bad owner: {0}")]
    BadOwner(&'static str),
    /// A relay tree that breaks its rules.
    #[error("bad relay tree: {0}")]
    BadTree(&'static str),
    /// A file whose block hashes do not match its block count.
    #[error("file {0:?} has {1} block hashes for {2} blocks")]
    BlockHashes(String, usize, u64),
}

/// Checks one relative path; returns why it is unsafe.
pub fn check_path(path: &str) -> Result<(), &'static str> {
    check_text(path)?;
    if path.starts_with('/') {
        return Err("absolute");
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

/// Checks a symbolic link's target; returns why it is unusable. Any path,
/// absolute or with `..`, is a valid target (nothing follows it), but not
/// an empty one, an over-long one, or one with a NUL or a control
/// character (which would reach logs and terminals).
pub fn check_target(target: &str) -> Result<(), &'static str> {
    check_text(target)
}

/// What a path and a link's target share: not empty, at most
/// [`MAX_PATH_LEN`] bytes, no NUL, and no control character (a newline
/// would forge a line of the hooks' file lists, an escape sequence would
/// rewrite an operator's terminal).
fn check_text(text: &str) -> Result<(), &'static str> {
    if text.is_empty() {
        return Err("empty");
    }
    if text.len() > MAX_PATH_LEN {
        return Err("too long");
    }
    if text.contains('\0') {
        return Err("contains NUL");
    }
    if text.chars().any(char::is_control) {
        return Err("contains a control character");
    }
    Ok(())
}

impl Manifest {
    /// A manifest of `entries` with no owners recorded.
    pub fn new(entries: Vec<Entry>) -> Manifest {
        Manifest {
            entries,
            owners: Vec::new(),
            atomic: false,
            tree: None,
        }
    }

    /// Moves every entry below the directory `dir` (a relative path that
    /// [`check_path`] accepts): `site/index.html` becomes
    /// `dir/site/index.html` (`mdp-send --dest`). `dir` itself and its
    /// parents are not listed: receivers create them as needed, and
    /// `--delete` still prunes only below the pushed directories.
    pub fn place_under(&mut self, dir: &str) {
        for e in &mut self.entries {
            e.path = format!("{dir}/{}", e.path);
            if let EntryKind::HardLink { target } = &mut e.kind {
                *target = format!("{dir}/{target}");
            }
        }
    }

    /// The owner [`Entry::owner`] names, if any.
    pub fn owner_of(&self, e: &Entry) -> Option<&Owner> {
        (e.owner as usize)
            .checked_sub(1)
            .and_then(|i| self.owners.get(i))
    }

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
        if self.owners.len() > MAX_OWNERS {
            return Err(ManifestError::BadOwner("too many owners"));
        }
        if let Some(t) = &self.tree {
            t.validate()?;
        }
        for o in &self.owners {
            check_name(&o.user).map_err(ManifestError::BadOwner)?;
            check_name(&o.group).map_err(ManifestError::BadOwner)?;
        }
        let mut seen: HashSet<&str> = HashSet::with_capacity(self.entries.len());
        // Files and links: nothing may live below them.
        let mut files: HashSet<&str> = HashSet::new();
        for e in &self.entries {
            check_path(&e.path).map_err(|why| ManifestError::UnsafePath(e.path.clone(), why))?;
            if e.owner as usize > self.owners.len() {
                return Err(ManifestError::BadOwner(
                    "an entry names an owner not listed",
                ));
            }
            if !seen.insert(&e.path) {
                return Err(ManifestError::Conflict(e.path.clone()));
            }
            if let EntryKind::File { size, .. } = e.kind {
                if size > MAX_FILE_SIZE {
                    return Err(ManifestError::TooLarge(e.path.clone()));
                }
                files.insert(&e.path);
            }
            if let EntryKind::Symlink { target } = &e.kind {
                check_target(target)
                    .map_err(|why| ManifestError::UnsafeTarget(e.path.clone(), why))?;
                files.insert(&e.path);
            }
        }
        // A hard link names a file of the push (every path was checked
        // above, and a link's own path is one of them).
        let regular: HashSet<&str> = self
            .entries
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::File { .. }))
            .map(|e| e.path.as_str())
            .collect();
        for e in &self.entries {
            if let EntryKind::HardLink { target } = &e.kind {
                if !regular.contains(target.as_str()) {
                    return Err(ManifestError::HardLinkTarget(e.path.clone()));
                }
                files.insert(&e.path);
            }
        }
        // No entry may live below a file or a link.
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

    /// Checks that each file carries one hash per block at `coding`'s block
    /// size when it has more than one block, and none otherwise: what a
    /// receiver checks once it knows the session's coding, before it takes
    /// a block against them.
    pub fn check_block_hashes(&self, coding: &Coding) -> Result<(), ManifestError> {
        for e in &self.entries {
            if let EntryKind::File { size, blocks, .. } = &e.kind {
                let n = coding.block_count_wide(*size);
                let want = if n > 1 { n } else { 0 };
                if blocks.len() as u64 != want {
                    return Err(ManifestError::BlockHashes(e.path.clone(), blocks.len(), n));
                }
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
                EntryKind::Dir | EntryKind::Symlink { .. } | EntryKind::HardLink { .. } => 0,
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
                blocks: Vec::new(),
            },
            mode: 0o644,
            mtime_secs: 0,
            mtime_nanos: 0,
            owner: 0,
        }
    }

    #[test]
    fn the_entry_count_is_read_from_the_prefix_alone() {
        for n in [0usize, 1, 127, 128, 300, 20_000] {
            let m = Manifest::new((0..n).map(|i| file(&format!("f{i}"))).collect());
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
            let m = Manifest::new(vec![file(bad)]);
            assert!(
                Manifest::decode(&m.encode()).is_err(),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn owners_are_checked_names_and_entries_name_only_listed_ones() {
        let owner = |user: &str, group: &str| Owner {
            uid: 33,
            gid: 33,
            user: user.into(),
            group: group.into(),
        };
        let mut m = Manifest {
            entries: vec![Entry {
                owner: 1,
                ..file("a")
            }],
            owners: vec![owner("www-data", "www-data")],
            atomic: false,
            tree: None,
        };
        m.validate().unwrap();
        assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
        assert_eq!(m.owner_of(&m.entries[0]).unwrap().user, "www-data");
        m.owners[0] = owner("", "");
        m.validate().unwrap();
        m.owners[0] = owner("host$", "_x.y-z");
        m.validate().unwrap();
        for (user, group) in [
            ("-rf", "g"),
            ("a b", "g"),
            ("u", "g\n"),
            ("u", "é"),
            ("u", &"g".repeat(MAX_NAME_LEN + 1)),
        ] {
            m.owners[0] = owner(user, group);
            assert!(
                matches!(m.validate(), Err(ManifestError::BadOwner(_))),
                "{user:?} {group:?}"
            );
        }
        m.owners.clear();
        assert!(
            matches!(m.validate(), Err(ManifestError::BadOwner(_))),
            "an entry names owner 1 of none"
        );
        m.owners = vec![Owner::default(); MAX_OWNERS + 1];
        assert!(matches!(m.validate(), Err(ManifestError::BadOwner(_))));
    }

    #[test]
    fn a_hard_link_names_a_file_of_the_push_and_holds_nothing_below_it() {
        let hard = |path: &str, target: &str| Entry {
            kind: EntryKind::HardLink {
                target: target.into(),
            },
            ..file(path)
        };
        let dir = Entry {
            kind: EntryKind::Dir,
            ..file("d")
        };
        let mut m = Manifest::new(vec![dir.clone(), file("d/a"), hard("d/b", "d/a")]);
        m.validate().unwrap();
        assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
        assert_eq!(m.file_count(), 1, "a hard link is no object");
        m.place_under("x/y");
        assert_eq!(
            m.entries[2].kind,
            EntryKind::HardLink {
                target: "x/y/d/a".into()
            }
        );
        m.validate().unwrap();
        for bad in [
            // Its target must be a file of the same push: not missing, not
            // a directory, not another link.
            vec![file("a"), hard("b", "c")],
            vec![dir.clone(), hard("b", "d")],
            vec![file("a"), hard("b", "a"), hard("c", "b")],
            vec![file("a"), hard("b", "/etc/shadow")],
        ] {
            let m = Manifest::new(bad);
            assert!(
                matches!(m.validate(), Err(ManifestError::HardLinkTarget(_))),
                "{m:?}"
            );
        }
        let m = Manifest::new(vec![file("a"), hard("b", "a"), file("b/c")]);
        assert!(matches!(m.validate(), Err(ManifestError::Conflict(_))));
    }

    #[test]
    fn rejects_duplicates_and_files_used_as_directories() {
        let m = Manifest::new(vec![file("a"), file("a")]);
        assert!(matches!(m.validate(), Err(ManifestError::Conflict(_))));
        let m = Manifest::new(vec![file("a"), file("a/b")]);
        assert!(matches!(m.validate(), Err(ManifestError::Conflict(_))));
    }

    #[test]
    fn links_point_anywhere_but_hold_nothing_below_them_and_no_control_character() {
        let link = |path: &str, target: &str| Entry {
            kind: EntryKind::Symlink {
                target: target.into(),
            },
            ..file(path)
        };
        // Nothing follows a link, so any target is fine, even outside.
        let m = Manifest::new(vec![
            link("current", "release-42"),
            link("up", "../../etc"),
            link("abs", "/etc/passwd"),
        ]);
        m.validate().unwrap();
        assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
        assert_eq!(m.file_count(), 0, "a link is no object");
        let m = Manifest::new(vec![link("current", "release-42"), file("current/x")]);
        assert!(matches!(m.validate(), Err(ManifestError::Conflict(_))));
        for bad in [
            "",
            "a\nb",
            "a\0b",
            "x\u{1b}[2J",
            &"t".repeat(MAX_PATH_LEN + 1),
        ] {
            let m = Manifest::new(vec![link("l", bad)]);
            assert!(
                matches!(m.validate(), Err(ManifestError::UnsafeTarget(..))),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn numbers_files_from_one_skipping_directories() {
        let mut dir = file("d");
        dir.kind = EntryKind::Dir;
        let m = Manifest::new(vec![dir, file("d/x"), file("y")]);
        m.validate().unwrap();
        let ids: Vec<_> = m.files().map(|(id, e)| (id.0, e.path.as_str())).collect();
        assert_eq!(ids, vec![(1, "d/x"), (2, "y")]);
    }

    #[test]
    fn a_relay_tree_is_a_heap_of_hosts_each_written_once_as_a_socket_address() {
        let tree = |hosts: &[&str]| RelayTree {
            fan_out: 2,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        };
        let t = tree(&[
            "10.0.0.1:7400",
            "10.0.0.2:7400",
            "10.0.0.3:7400",
            "10.0.0.4:7400",
            "10.0.0.5:7400",
        ]);
        t.validate().unwrap();
        assert_eq!(t.children(None), &t.hosts[0..2]);
        assert_eq!(t.children(Some(0)), &t.hosts[2..4]);
        assert_eq!(t.children(Some(1)), &t.hosts[4..5]);
        assert!(t.children(Some(2)).is_empty());
        assert_eq!(t.parent(0), None);
        assert_eq!(t.parent(1), None);
        assert_eq!(
            (t.parent(2), t.parent(3), t.parent(4)),
            (Some(0), Some(0), Some(1))
        );
        assert_eq!(t.position("10.0.0.4:7400".parse().unwrap()), Some(3));
        for bad in [
            &["10.0.0.1:07400"][..],
            &["0.0.0.0:7400"],
            &["239.1.2.3:7400"],
            &["255.255.255.255:7400"],
            &["10.0.0.1:0"],
            &["10.0.0.1:7400", "[::1]:7400"],
            &["10.0.0.1:7400", "10.0.0.1:7400"],
            &["host:7400"],
        ] {
            assert!(tree(bad).validate().is_err(), "{bad:?}");
        }
        let mut m = Manifest::new(vec![]);
        m.tree = Some(tree(&["10.0.0.1:07400"]));
        assert!(Manifest::decode(&m.encode()).is_err());
    }
}

//! A file whose blocks are all written: its hash check and its atomic
//! placement under its final name.
//!
//! **Invariant:** a file appears under its final name only after its
//! content matched the manifest (each block checked as it was written,
//! `blocks.rs`, or the whole file read back and hashed here) and (unless the store is not durable) its data, mode and mtime
//! reached the disk; the rename is atomic since the temporary directory is
//! inside the cache directory. The directory entry the rename made is
//! flushed when the store settles the tree ([`super::Store::settle`]),
//! before the receiver confirms.

use super::blocks::hash_open;
use super::mtime;
use super::safe_path::{refuse, Beneath};
use mdp_proto::wire::FailReason;
use mdp_proto::{Entry, EntryKind};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use std::fs::{self, File, FileTimes};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

/// A file of the session whose blocks are all written.
#[derive(Debug)]
pub struct Written {
    /// Its temporary file's name in the temporary directory `tmp`.
    pub(super) temp: String,
    pub(super) tmp: Arc<OwnedFd>,
    pub(super) entry: Entry,
    pub(super) beneath: Arc<Beneath>,
    pub(super) error: Option<io::Error>,
    /// The hash of the whole file if it was kept as it was written.
    pub(super) hashed: Option<[u8; 32]>,
    /// Flush the file to the disk before it is renamed into place.
    pub(super) durable: bool,
    /// Its mode here (the manifest's, less the store's mask).
    pub(super) mode: u32,
    /// The owner and group it is given, where the store gives one.
    pub(super) owner: crate::owners::Ownership,
    /// The session's bytes per full block (what its block hashes are for).
    pub(super) block_bytes: u64,
}

impl Written {
    /// The file's path in the manifest and its hashes, for the index
    /// ([`super::Store::placed`]).
    pub fn path_and_hashes(&self) -> (String, KnownContent) {
        let (hash, blocks) = match &self.entry.kind {
            EntryKind::File { hash, blocks, .. } => (*hash, blocks.clone()),
            EntryKind::Dir | EntryKind::Symlink { .. } | EntryKind::HardLink { .. } => {
                ([0; 32], Vec::new())
            }
        };
        let content = KnownContent {
            hash,
            block_bytes: self.block_bytes,
            blocks,
        };
        (self.entry.path.clone(), content)
    }

    /// [`Written::verify`] then [`Verified::place`]; the final path.
    pub fn verify_and_place(self) -> Result<PathBuf, (FailReason, String)> {
        Ok(self.verify()?.place()?.path)
    }

    /// Checks the file's hash; only when it matches gives it its mode and
    /// mtime and (when durable) starts writing it to the disk, for
    /// [`Verified::place`]. A file that fails is removed.
    pub fn verify(self) -> Result<Verified, (FailReason, String)> {
        let e = &self.entry;
        let remove = || rfs::unlinkat(&*self.tmp, &self.temp, AtFlags::empty());
        let fail_io = |err: io::Error| {
            let _ = remove();
            (FailReason::Io, format!("{}: {err}", e.path))
        };
        if let Some(err) = self.error {
            return Err(fail_io(err));
        }
        let EntryKind::File { hash, .. } = e.kind else {
            unreachable!("open files are File entries")
        };
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let file = rfs::openat(&*self.tmp, &self.temp, flags, Mode::empty())
            .map(File::from)
            .map_err(|err| fail_io(err.into()))?;
        let got = match self.hashed {
            Some(h) => h,
            None => hash_open(&file).map_err(fail_io)?,
        };
        if got != hash {
            let _ = remove();
            return Err((
                FailReason::HashMismatch,
                format!("{}: content does not match its BLAKE3 hash", e.path),
            ));
        }
        self.owner.apply(&file).map_err(fail_io)?;
        file.set_permissions(fs::Permissions::from_mode(self.mode))
            .map_err(fail_io)?;
        if let Some(t) = mtime(e.mtime_secs, e.mtime_nanos) {
            file.set_times(FileTimes::new().set_modified(t))
                .map_err(fail_io)?;
        }
        if self.durable {
            // The flush in `place` then waits for less (and a batch of
            // files is written out together).
            crate::sys::start_writeback(&file);
        }
        Ok(Verified {
            file,
            written: Written {
                error: None,
                ..self
            },
        })
    }
}

/// A file whose hash matched, with its mode and mtime set, ready to be
/// placed.
#[derive(Debug)]
pub struct Verified {
    file: File,
    written: Written,
}

impl Verified {
    /// Flushes the file to the disk (when durable) and renames it to its
    /// final path. A file that fails is removed.
    pub fn place(self) -> Result<Placed, (FailReason, String)> {
        let w = &self.written;
        let e = &w.entry;
        let fail_io = |err: io::Error| {
            let _ = rfs::unlinkat(&*w.tmp, &w.temp, AtFlags::empty());
            (FailReason::Io, format!("{}: {err}", e.path))
        };
        if w.durable {
            // Data, size, mode and mtime on the disk before the name: after
            // a power cut the final name holds the whole file or the old one.
            self.file.sync_all().map_err(fail_io)?;
        }
        // The parent walked from the cache directory without following a
        // link, and the rename made between the two directories' own
        // descriptors: no swap of a directory for a link can move it.
        let (parent, name) = w.beneath.parent(&e.path, true).map_err(fail_io)?;
        let dest = w.beneath.path().join(&e.path);
        if let Ok(st) = rfs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                return Err(fail_io(refuse(format!(
                    "{} is a directory",
                    dest.display()
                ))));
            }
        }
        rfs::renameat(&*w.tmp, &w.temp, &parent, name).map_err(|err| fail_io(err.into()))?;
        // Its stamp for the index, from the descriptor, right after the
        // rename: never from whatever a hook or another writer may make of
        // the path later.
        let stamp = self.file.metadata().ok();
        Ok(Placed { path: dest, stamp })
    }

    /// See [`Written::path_and_hashes`].
    pub fn path_and_hashes(&self) -> (String, KnownContent) {
        self.written.path_and_hashes()
    }
}

/// What a placed file's content is known to be: its hash, and the hashes of
/// its blocks of `block_bytes` (none for a file of one block).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KnownContent {
    /// BLAKE3 of the whole file.
    pub hash: [u8; 32],
    /// The block size the block hashes are for.
    pub block_bytes: u64,
    /// BLAKE3 of each block.
    pub blocks: Vec<[u8; 32]>,
}

/// A file placed under its final name.
#[derive(Debug)]
pub struct Placed {
    /// Its final path.
    pub path: PathBuf,
    /// Its metadata just after it was placed (`None` if it could not be
    /// read), for [`super::Store::placed`].
    pub stamp: Option<fs::Metadata>,
}

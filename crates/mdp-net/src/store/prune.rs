//! `--delete`: removing what the pushed directories hold beyond the
//! manifest, like rsync's `--delete`.
//!
//! **Invariant:** pruning only looks below the manifest's top-level
//! directories (those whose parent the manifest does not list: the pushed
//! directories, also when `mdp-send --dest` put them below a directory), never follows a symbolic link (links are removed as
//! links), leaves names that are not UTF-8 alone, and removes each entry
//! relative to the descriptor of the directory it is in (safe_path.rs), so
//! that a directory swapped for a link mid-walk leads nowhere outside the
//! cache directory; and never enters another file system (a volume mounted
//! below a pushed directory is left whole, as `rsync -x` would).

use super::Store;
use mdp_proto::EntryKind;
use rustix::fs::{self as rfs, AtFlags, Dir, FileType, Mode, OFlags};
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Deepest directory nesting a removal walks into.
const MAX_DEPTH: usize = 256;

impl Store {
    /// `--delete`: removes, below each top-level directory of the
    /// manifest (one whose parent it does not list as a directory: what
    /// the sender pushed, wherever `--dest` put it), every entry the
    /// manifest does not list (like rsync's
    /// `--delete`): extra files, symbolic links and whole directories.
    /// Symbolic links are removed, never followed. Returns the paths
    /// removed, relative to the cache directory. Call it only after a
    /// complete push.
    pub fn prune(&mut self) -> Vec<String> {
        let manifest = self.manifest.clone();
        let listed: HashMap<&str, bool> = manifest
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.kind == EntryKind::Dir))
            .collect();
        let mut removed = Vec::new();
        let top = |path: &str| match path.rsplit_once('/') {
            Some((parent, _)) => listed.get(parent) != Some(&true),
            None => true,
        };
        for e in &manifest.entries {
            if e.kind == EntryKind::Dir && top(&e.path) {
                if let Ok(dir) = self.beneath.dir(&e.path, false) {
                    prune_dir(&listed, dir, &e.path, &mut removed);
                }
            }
        }
        removed
    }
}

/// The names in directory `dir` (not `.` and `..`; UTF-8 only: others were
/// never pushed by mdp and are left alone), with their types.
pub(super) fn entries(dir: BorrowedFd<'_>) -> Vec<(String, FileType)> {
    let Ok(d) = Dir::read_from(dir) else {
        return Vec::new();
    };
    d.flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str().ok()?.to_string();
            (name != "." && name != "..").then_some((name, e.file_type()))
        })
        .collect()
}

/// The type of `name` in `dir`, not following a link (for file systems
/// whose directory entries do not say).
fn type_of(dir: BorrowedFd<'_>, name: &str, said: FileType) -> Option<FileType> {
    if said != FileType::Unknown {
        return Some(said);
    }
    let st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    Some(FileType::from_raw_mode(st.st_mode))
}

/// Opens directory `name` in `dir` without following a link; `None` for a
/// directory on another file system than `dir` (a mount point).
fn open_subdir(dir: BorrowedFd<'_>, name: &str) -> Option<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let sub = rfs::openat(dir, name, flags, Mode::empty()).ok()?;
    let same_fs = rfs::fstat(&sub).ok()?.st_dev == rfs::fstat(dir).ok()?.st_dev;
    same_fs.then_some(sub)
}

fn prune_dir(listed: &HashMap<&str, bool>, dir: OwnedFd, rel: &str, removed: &mut Vec<String>) {
    for (name, said) in entries(dir.as_fd()) {
        let child = format!("{rel}/{name}");
        let Some(ft) = type_of(dir.as_fd(), &name, said) else {
            continue;
        };
        match listed.get(child.as_str()) {
            Some(true) if ft == FileType::Directory => {
                if let Some(sub) = open_subdir(dir.as_fd(), &name) {
                    prune_dir(listed, sub, &child, removed);
                }
            }
            Some(_) => {}
            None => {
                let gone = if ft == FileType::Directory {
                    remove_tree(dir.as_fd(), &name, 0)
                } else {
                    rfs::unlinkat(dir.as_fd(), name.as_str(), AtFlags::empty()).is_ok()
                };
                if gone {
                    removed.push(child);
                }
            }
        }
    }
}

/// Removes directory `name` in `dir` with everything in it, each entry
/// relative to its own directory's descriptor; links are removed as links.
pub(super) fn remove_tree(dir: BorrowedFd<'_>, name: &str, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    let Some(sub) = open_subdir(dir, name) else {
        // A link now, or gone: a link is removed, never followed.
        return rfs::unlinkat(dir, name, AtFlags::empty()).is_ok();
    };
    for (child, said) in entries(sub.as_fd()) {
        match type_of(sub.as_fd(), &child, said) {
            Some(FileType::Directory) => {
                remove_tree(sub.as_fd(), &child, depth + 1);
            }
            _ => {
                let _ = rfs::unlinkat(sub.as_fd(), child.as_str(), AtFlags::empty());
            }
        }
    }
    rfs::unlinkat(dir, name, AtFlags::REMOVEDIR).is_ok()
}

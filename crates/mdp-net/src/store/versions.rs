//! Atomic whole-tree switches (`mdp-send --atomic`). Each pushed directory
//! `T` (a top-level directory of the manifest) lives in versions,
//! `.mdp-versions/T/NNNNNN-SESSION/`, and `T` itself is a symbolic link to
//! the current one. A push lands in a new version: the store takes a
//! manifest whose paths are rewritten into it ([`Switch::plan`]); files
//! unchanged since the current version are linked into it instead of sent
//! ([`Store::carry_over`]); a changed file starts from the current
//! version's blocks (delta.rs, through [`Switch::old_path`]). When the tree
//! settles, for a signed push in which every file arrived, `T` is switched
//! to the new version by one rename ([`Store::switch_versions`]), and
//! versions beyond the count kept are removed.
//!
//! **Invariant:** a reader that resolves `T` sees one whole version: the
//! new one is complete, settled and on the disk before the rename that
//! points `T` at it, and no file of a version is changed once `T` pointed
//! to it (a carried file is another name of the same inode, and the store
//! never writes into a placed file; it places new ones by rename).

use super::prune::{entries, remove_tree};
use super::safe_path::{file_at, refuse};
use super::Store;
use mdp_proto::{EntryKind, Manifest, ObjectId, SessionId};
use rustix::fs::{self as rfs, AtFlags, FileType, RenameFlags};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

/// The directory of the versions, below DIR. Pushes may not write there.
pub const VERSIONS_DIR: &str = ".mdp-versions";

/// Default number of versions of each directory kept (the current one
/// included).
pub const DEFAULT_KEEP_VERSIONS: usize = 3;

/// One pushed directory's switch.
#[derive(Debug)]
struct Top {
    /// Its path (relative to DIR), e.g. `site` or `releases/web/site`.
    path: String,
    /// Where its files are now, relative to DIR: the version `path` links
    /// to, or `path` itself while it is still a plain directory; `None`
    /// when there is nothing yet.
    current: Option<String>,
    /// The new version, relative to DIR.
    new: String,
}

/// The switch of one atomic push.
#[derive(Debug, Default)]
pub(super) struct Switch {
    tops: Vec<Top>,
}

/// True for `.mdp-versions` and every path below it.
pub(super) fn is_versions_dir(path: &str) -> bool {
    path == VERSIONS_DIR || path.starts_with(&format!("{VERSIONS_DIR}/"))
}

/// The versions directory of pushed directory `top`.
fn versions_of(top: &str) -> String {
    format!("{VERSIONS_DIR}/{top}")
}

impl Switch {
    /// Plans the switch of `manifest`'s top-level directories (those whose
    /// parent it does not list) for `session`, and rewrites its paths into
    /// their new versions. Entries outside those directories (a file pushed
    /// by name) keep their paths. Refuses a push whose directory is a file
    /// here.
    pub(super) fn plan(
        store: &Store,
        manifest: &Manifest,
        session: SessionId,
    ) -> io::Result<(Switch, Manifest)> {
        let dirs: std::collections::HashSet<&str> = manifest
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::Dir)
            .map(|e| e.path.as_str())
            .collect();
        let mut switch = Switch::default();
        for e in &manifest.entries {
            let top = e.kind == EntryKind::Dir
                && e.path
                    .rsplit_once('/')
                    .is_none_or(|(p, _)| !dirs.contains(p));
            if !top {
                continue;
            }
            let current = store.current_version(&e.path)?;
            let number = store.next_version_number(&e.path);
            let new = format!("{}/{number:06}-{session}", versions_of(&e.path));
            switch.tops.push(Top {
                path: e.path.clone(),
                current,
                new,
            });
        }
        let mut rewritten = manifest.clone();
        for e in &mut rewritten.entries {
            if let Some(p) = switch.to_new(&e.path) {
                e.path = p;
            }
            if let EntryKind::HardLink { target } = &mut e.kind {
                if let Some(p) = switch.to_new(target) {
                    *target = p;
                }
            }
        }
        Ok((switch, rewritten))
    }

    /// `path` of the push, moved into its directory's new version.
    fn to_new(&self, path: &str) -> Option<String> {
        self.tops.iter().find_map(|t| {
            let rest = path.strip_prefix(&t.path)?;
            (rest.is_empty() || rest.starts_with('/')).then(|| format!("{}{rest}", t.new))
        })
    }

    /// Where the current version holds the file that `path` (a rewritten
    /// path, in a new version) replaces, if its directory has one.
    pub(super) fn old_path(&self, path: &str) -> Option<String> {
        self.tops.iter().find_map(|t| {
            let rest = path.strip_prefix(&t.new)?;
            let current = t.current.as_deref()?;
            (rest.is_empty() || rest.starts_with('/')).then(|| format!("{current}{rest}"))
        })
    }
}

impl Store {
    /// Where pushed directory `top`'s files are now: the version its link
    /// points to (a link into its versions directory), `top` itself while
    /// it is a plain directory, `None` when it is missing or a link
    /// elsewhere; refuses a push where `top` is a file.
    fn current_version(&self, top: &str) -> io::Result<Option<String>> {
        let (parent, name) = match self.beneath.parent(top, false) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let st = match rfs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => Ok(Some(top.to_string())),
            FileType::Symlink => {
                let target = rfs::readlinkat(&parent, name, Vec::new())?;
                let target = target.to_string_lossy();
                // Written by `switch_versions`: "../" for each level of
                // `top` below DIR, then the version's path from DIR.
                let up = "../".repeat(top.matches('/').count());
                let version = target.strip_prefix(&up).unwrap_or(&target);
                let ours = version
                    .strip_prefix(&versions_of(top))
                    .is_some_and(|v| v.starts_with('/') && !v[1..].contains('/'));
                Ok(ours.then(|| version.to_string()))
            }
            _ => Err(refuse(format!(
                "{top} is a file here and a directory in the push: remove the file, or push it under another name"
            ))),
        }
    }

    /// The number of the next version of `top`: one above the highest
    /// there.
    fn next_version_number(&self, top: &str) -> u32 {
        self.versions(top)
            .last()
            .and_then(|v| v.get(..6)?.parse::<u32>().ok())
            .map_or(1, |n| n + 1)
    }

    /// The names of `top`'s versions, oldest first.
    fn versions(&self, top: &str) -> Vec<String> {
        let Ok(dir) = self.beneath.dir(&versions_of(top), false) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries(dir.as_fd())
            .into_iter()
            .filter(|(n, t)| {
                *t == FileType::Directory
                    && n.len() > 7
                    && n.as_bytes()[..6].iter().all(u8::is_ascii_digit)
                    && n.as_bytes()[6] == b'-'
            })
            .map(|(n, _)| n)
            .collect();
        names.sort();
        names
    }

    /// Files of the push that the current version already holds as the
    /// push has them (content, mode, time, owner): linked into the new
    /// version (unless `!touch`, a dry run) instead of sent.
    pub(super) fn carry_over(&mut self, touch: bool) -> Vec<ObjectId> {
        let Some(switch) = self.switch.take() else {
            return Vec::new();
        };
        let manifest = self.manifest.clone();
        let mut out = Vec::new();
        for (id, e) in manifest.files() {
            let EntryKind::File { size, hash, blocks } = &e.kind else {
                continue;
            };
            let Some(old) = switch.old_path(&e.path) else {
                continue;
            };
            let Ok((old_dir, old_name)) = self.beneath.parent(&old, false) else {
                continue;
            };
            let Some((file, md)) = file_at(&old_dir, old_name) else {
                continue;
            };
            let same_meta = md.len() == *size
                && md.mode() & 0o7777 == self.mode(e.mode)
                && super::mtime(e.mtime_secs, e.mtime_nanos) == md.modified().ok()
                && self.ownership(e).holds(&md)
                && self.ours(&md, e);
            if !same_meta {
                continue;
            }
            let same = match self.index.hash_of(&old, &md) {
                Some(h) => h == *hash,
                None => super::blocks::hash_open(&file).is_ok_and(|h| h == *hash),
            };
            if !same {
                continue;
            }
            if touch {
                let Ok((new_dir, new_name)) = self.beneath.parent(&e.path, true) else {
                    continue;
                };
                if rfs::linkat(&old_dir, old_name, &new_dir, new_name, AtFlags::empty()).is_err() {
                    continue;
                }
                self.index
                    .remember_blocks(&e.path, &md, (*hash, blocks.clone()), self.block_bytes);
            }
            out.push(id);
        }
        self.switch = Some(switch);
        out
    }

    /// Points each pushed directory at its new version, by one rename, and
    /// removes the versions beyond the count kept. A directory that is
    /// still a plain one is exchanged with the link atomically, and becomes
    /// the oldest version. Called once the new versions are settled and on
    /// the disk, for a signed push in which every file arrived.
    pub(super) fn switch_versions(&mut self) {
        let Some(switch) = self.switch.take() else {
            return;
        };
        let session = self.session.map_or(0, |s| s.0);
        for (i, top) in switch.tops.iter().enumerate() {
            if let Err(err) = self.switch_one(top, &format!(".mdp-switch-{session:x}-{i}")) {
                tracing::warn!(
                    "cannot switch {} to its new version {}: {err}; it still shows the previous one",
                    top.path,
                    top.new
                );
                continue;
            }
            self.remove_old_versions(top);
        }
    }

    fn switch_one(&mut self, top: &Top, temp: &str) -> io::Result<()> {
        // A relative link, so that DIR may move or be mounted elsewhere.
        let target = format!("{}{}", "../".repeat(top.path.matches('/').count()), top.new);
        let tmp = self.tmp_fd.clone();
        let _ = rfs::unlinkat(&*tmp, temp, AtFlags::empty());
        rfs::symlinkat(target.as_str(), &*tmp, temp)?;
        let (parent, name) = self.beneath.parent(&top.path, true)?;
        let is_dir = rfs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
        let switched = if is_dir {
            rfs::renameat_with(&*tmp, temp, &parent, name, RenameFlags::EXCHANGE)
        } else {
            rfs::renameat(&*tmp, temp, &parent, name)
        };
        if let Err(e) = switched {
            let _ = rfs::unlinkat(&*tmp, temp, AtFlags::empty());
            return Err(e.into());
        }
        if self.durable {
            File::from(parent).sync_all()?;
        }
        if is_dir {
            // The plain directory it was is now at `temp`: it becomes the
            // version before the new one.
            let (vdir, new_name) = self.beneath.parent(&top.new, false)?;
            let before = format!("{}-0", &new_name[..6]);
            rfs::renameat(&*tmp, temp, &vdir, before.as_str())?;
        }
        Ok(())
    }

    /// Removes `top`'s versions beyond the newest [`Store::set_keep_versions`],
    /// never the one it now points to.
    fn remove_old_versions(&mut self, top: &Top) {
        let names = self.versions(&top.path);
        let keep = self.keep_versions.max(1);
        let Ok(vdir) = self.beneath.dir(&versions_of(&top.path), false) else {
            return;
        };
        let current = top.new.rsplit('/').next().unwrap_or_default();
        for name in names.iter().rev().skip(keep) {
            if name != current {
                remove_tree(vdir.as_fd(), name, 0);
            }
        }
    }
}

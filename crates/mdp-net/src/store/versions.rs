//! Atomic whole-tree switches (`mdp-send --atomic`). Each pushed directory
//! `T` (a top-level directory of the manifest) lives in versions,
//! `.mdp-versions/T/@/NNNNNN-SESSION/`, and `T` itself is a symbolic link
//! to the current one. A push lands in a new version: the store takes a
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
//! never writes into a placed file; it places new ones by rename). A new
//! version is private (0700) until it settles, and one that never became
//! current is removed when its push ends.

use super::prune::{entries, remove_tree};
use super::safe_path::{file_at, refuse};
use super::Store;
use mdp_proto::{EntryKind, Manifest, ObjectId, SessionId};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, RenameFlags};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

/// The name the link that switches a directory is made under in `.mdp-tmp`
/// begins with this; one a crash left there (after the exchange, before
/// the old directory was moved into its versions) is removed at start-up.
pub(super) const SWITCH_TEMP: &str = ".mdp-switch-";

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

/// The versions directory of pushed directory `top` (its own `@`
/// component: the versions of `a` and of a directory `a/000001-x` pushed
/// on its own never share a directory).
fn versions_of(top: &str) -> String {
    format!("{VERSIONS_DIR}/{top}/@")
}

/// A version's number, from its name (`NNNNNN-SESSION`).
fn version_number(name: &str) -> Option<u64> {
    let (digits, rest) = name.split_once('-')?;
    if digits.len() < 6 || rest.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
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
            store.check_switchable(&e.path)?;
            switch.tops.push(Top {
                path: e.path.clone(),
                current,
                new,
            });
        }
        // A crafted manifest could list a top directory below another
        // (`a` and `a/b/c` without `a/b`): which one a file lands in would
        // depend on the order. The sender's walk never makes one.
        for t in &switch.tops {
            if switch
                .tops
                .iter()
                .any(|o| t.path.starts_with(&format!("{}/", o.path)))
            {
                return Err(refuse(format!(
                    "{} lies below another pushed directory of this atomic push",
                    t.path
                )));
            }
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
    fn next_version_number(&self, top: &str) -> u64 {
        self.versions(top)
            .last()
            .and_then(|v| version_number(v))
            .map_or(1, |n| n + 1)
    }

    /// The names of `top`'s versions, oldest first.
    fn versions(&self, top: &str) -> Vec<String> {
        let Ok(dir) = self.beneath.dir(&versions_of(top), false) else {
            return Vec::new();
        };
        let mut names: Vec<(u64, String)> = entries(dir.as_fd())
            .into_iter()
            .filter(|(_, t)| *t == FileType::Directory)
            .filter_map(|(n, _)| Some((version_number(&n)?, n)))
            .collect();
        names.sort();
        names.into_iter().map(|(_, n)| n).collect()
    }

    /// Refuses, before anything is written, an atomic push whose switch of
    /// `top` could not be made: the link is made in `.mdp-tmp` and renamed
    /// into `top`'s directory, which must be on the same file system; a
    /// plain directory `top` is exchanged with it, which the file system
    /// must support (`renameat2(RENAME_EXCHANGE)`).
    fn check_switchable(&self, top: &str) -> io::Result<()> {
        let (parent, _) = self.beneath.parent(top, true)?;
        let same_fs = rfs::fstat(&parent)?.st_dev == rfs::fstat(&*self.tmp_fd)?.st_dev;
        if !same_fs {
            return Err(refuse(format!(
                "{top} would be on another file system than {}: an atomic push switches by a rename within one; push it without --atomic, or below another directory",
                self.root.display()
            )));
        }
        let tmp = &*self.tmp_fd;
        let (a, b) = (".mdp-probe-a", ".mdp-probe-b");
        let _ = rfs::unlinkat(tmp, a, AtFlags::REMOVEDIR);
        let _ = rfs::unlinkat(tmp, b, AtFlags::empty());
        rfs::mkdirat(tmp, a, Mode::from_raw_mode(0o700))?;
        let probe = rfs::symlinkat("x", tmp, b)
            .and_then(|()| rfs::renameat_with(tmp, a, tmp, b, RenameFlags::EXCHANGE));
        let _ = rfs::unlinkat(tmp, a, AtFlags::empty());
        let _ = rfs::unlinkat(tmp, a, AtFlags::REMOVEDIR);
        let _ = rfs::unlinkat(tmp, b, AtFlags::empty());
        let _ = rfs::unlinkat(tmp, b, AtFlags::REMOVEDIR);
        probe.map_err(|e| {
            refuse(format!(
                "the file system of {} cannot exchange a directory and a link atomically ({e}): push without --atomic",
                self.root.display()
            ))
        })
    }

    /// Makes each new version's directory, private (0700) until the tree
    /// settles and its mode is applied, and removes the versions of the
    /// push's directories that never became current (a push that failed,
    /// or a receiver that crashed before its switch): those newer than
    /// the current one, or all while there is none.
    pub(super) fn prepare_versions(&mut self) -> io::Result<()> {
        let Some(switch) = self.switch.take() else {
            return Ok(());
        };
        let made = (|| {
            for top in &switch.tops {
                let current_number = top
                    .current
                    .as_deref()
                    .and_then(|c| c.rsplit('/').next())
                    .and_then(version_number);
                if let Ok(vdir) = self.beneath.dir(&versions_of(&top.path), false) {
                    for name in self.versions(&top.path) {
                        let newer = version_number(&name) > current_number;
                        if newer {
                            remove_tree(vdir.as_fd(), &name, 0);
                        }
                    }
                }
                let (vdir, name) = self.beneath.parent(&top.new, true)?;
                match rfs::mkdirat(&vdir, name, Mode::from_raw_mode(0o700)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(io::Error::from(e)),
                }
            }
            Ok(())
        })();
        self.switch = Some(switch);
        made
    }

    /// The push ends without its switch (a file failed, not signed, or
    /// interrupted): its new versions go, so that only versions that were
    /// current count towards those kept.
    pub(super) fn drop_versions(&mut self) {
        let Some(switch) = self.switch.take() else {
            return;
        };
        for top in &switch.tops {
            if let Ok((vdir, name)) = self.beneath.parent(&top.new, false) {
                remove_tree(vdir.as_fd(), name, 0);
            }
        }
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
                // The name was linked, not the descriptor checked above: it
                // must still be that file (a local user may have swapped
                // the name meanwhile).
                let Some((_, linked)) = file_at(&new_dir, new_name) else {
                    continue;
                };
                if (linked.dev(), linked.ino()) != (md.dev(), md.ino()) {
                    let _ = rfs::unlinkat(&new_dir, new_name, AtFlags::empty());
                    continue;
                }
                // As it is after the link (which moved its ctime), so that
                // the next push's check of this version finds it unread.
                self.index.remember_blocks(
                    &e.path,
                    &linked,
                    (*hash, blocks.clone()),
                    self.block_bytes,
                );
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
            if let Err(err) = self.switch_one(top, &format!("{SWITCH_TEMP}{session:x}-{i}")) {
                let why = format!(
                    "cannot switch {} to its new version {}: {err}; it still shows the previous one",
                    top.path, top.new
                );
                tracing::warn!("{why}");
                self.settle_problem.get_or_insert(why);
                if let Ok((vdir, name)) = self.beneath.parent(&top.new, false) {
                    remove_tree(vdir.as_fd(), name, 0);
                }
                continue;
            }
            self.remove_old_versions(top);
        }
    }

    /// Switches `top` to its new version; an error leaves it as it was.
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
        // Switched: what follows cannot undo it.
        if self.durable {
            if let Err(e) = File::from(parent).sync_all() {
                // Switched, but not on the disk: not confirmed.
                let why = format!("cannot flush the directory of {}: {e}", top.path);
                tracing::warn!("{why}");
                self.settle_problem.get_or_insert(why);
            }
        }
        if is_dir {
            // The plain directory it was is now at `temp`: it becomes the
            // version before the new one (numbered one below it).
            let before = top
                .new
                .rsplit('/')
                .next()
                .and_then(version_number)
                .map_or(0, |n| n.saturating_sub(1));
            let moved = self
                .beneath
                .dir(&versions_of(&top.path), false)
                .and_then(|vdir| {
                    let name = format!("{before:06}-0");
                    Ok(rfs::renameat(&*tmp, temp, &vdir, name.as_str())?)
                });
            if let Err(e) = moved {
                tracing::warn!(
                    "{} switched, but its previous directory could not be kept as a version ({e}): removed",
                    top.path
                );
                remove_tree(tmp.as_fd(), temp, 0);
            }
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

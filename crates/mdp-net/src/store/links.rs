//! The push's symbolic and hard links.
//!
//! **Invariant:** a link is made under a temporary name in the store's
//! private directory (`.mdp-tmp`, 0700: no local user can swap it there),
//! given its owner there, then renamed over its path within a directory
//! opened beneath DIR without following any link (safe_path.rs), so the
//! path holds the old entry or the new link, never nothing; an existing
//! link is only touched through a descriptor of it (`O_PATH`,
//! `O_NOFOLLOW`) that was checked to be a link; neither call follows the link, nor does anything later (the
//! delete walk removes links as links). A link may point anywhere: nothing
//! mdp does goes through it. A hard link is made the same way, `linkat`
//! (which does not follow a link either) from its target, a regular file
//! the push placed, under a temporary name, then `renameat`.

use super::safe_path::{refuse, Beneath};
use super::Store;
use crate::owners::Ownership;
use mdp_proto::EntryKind;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use std::io;
use std::os::fd::OwnedFd;

/// Refuses a push whose link `path` would replace a directory (which a
/// rename cannot do, and which the push could only empty by `--delete`):
/// before anything of the push is written, as a directory blocked by a
/// file is.
pub(super) fn check_room(beneath: &Beneath, path: &str) -> io::Result<()> {
    let (parent, name) = match beneath.parent(path, false) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    match rfs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => Err(refuse(format!(
            "{path} is a directory here and a symbolic link in the push: remove the directory, or push it as a directory"
        ))),
        _ => Ok(()),
    }
}

/// The symbolic link `name` in `dir`, opened as itself (`O_PATH`, never
/// followed), when it is one and points to `target`.
fn same_link(dir: &OwnedFd, name: &str, target: &str) -> Option<OwnedFd> {
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let link = rfs::openat(dir, name, flags, Mode::empty()).ok()?;
    let st = rfs::fstat(&link).ok()?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
        return None;
    }
    rfs::readlinkat(&link, "", Vec::new())
        .ok()
        .filter(|t| t.as_bytes() == target.as_bytes())
        .map(|_| link)
}

impl Store {
    /// Places the push's symbolic links (when the tree settles, after its
    /// files and before its directories' times): a link already there with
    /// the same target is left alone; any other entry under the name (a
    /// file, a link elsewhere) is replaced. A link that cannot be made is
    /// logged; the directories it touched are flushed with the others.
    pub(super) fn place_links(&mut self) {
        let manifest = self.manifest.clone();
        let session = self.session.map_or(0, |s| s.0);
        // The files hard links may name, by path.
        let files: std::collections::HashMap<&str, (&mdp_proto::Entry, [u8; 32])> = manifest
            .entries
            .iter()
            .filter_map(|t| match &t.kind {
                EntryKind::File { hash, .. } => Some((t.path.as_str(), (t, *hash))),
                _ => None,
            })
            .collect();
        for (i, e) in manifest.entries.iter().enumerate() {
            let temp = format!(".mdp-link-{session:x}-{i}");
            match &e.kind {
                EntryKind::Symlink { target } => {
                    let owner = self.ownership(e);
                    if let Err(err) = self.place_link(&e.path, target, &temp, owner) {
                        tracing::warn!("cannot place the link {} -> {target}: {err}", e.path);
                    }
                }
                EntryKind::HardLink { target } => {
                    let Some(&(file, hash)) = files.get(target.as_str()) else {
                        continue;
                    };
                    if let Err(err) = self.place_hard_link(&e.path, file, hash, &temp) {
                        tracing::warn!("cannot make {} another name of {target}: {err}", e.path);
                    }
                }
                EntryKind::File { .. } | EntryKind::Dir => {}
            }
        }
    }

    /// Makes `path` another name of the file the push placed at `file`'s
    /// path (content `hash`): left alone when it already is one. The file
    /// linked is checked after the link, under its private temporary
    /// name: this store's own, with the push's content (a local user who
    /// swapped the target's name gets nothing linked).
    fn place_hard_link(
        &mut self,
        path: &str,
        file: &mdp_proto::Entry,
        hash: [u8; 32],
        temp: &str,
    ) -> io::Result<()> {
        let target = file.path.as_str();
        let (tdir, tname) = self.beneath.parent(target, false)?;
        let st = rfs::statat(&tdir, tname, AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(io::Error::other(format!(
                "{target} is not a regular file here"
            )));
        }
        let (parent, name) = self.beneath.parent(path, true)?;
        if rfs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|o| (o.st_dev, o.st_ino) == (st.st_dev, st.st_ino))
        {
            return Ok(());
        }
        let tmp = self.tmp_fd.clone();
        let _ = rfs::unlinkat(&*tmp, temp, AtFlags::empty());
        rfs::linkat(&tdir, tname, &*tmp, temp, AtFlags::empty())?;
        let checked = super::safe_path::file_at(&tmp, temp).is_some_and(|(f, md)| {
            self.ours(&md, file) && super::blocks::hash_open(&f).is_ok_and(|h| h == hash)
        });
        if !checked {
            let _ = rfs::unlinkat(&*tmp, temp, AtFlags::empty());
            return Err(io::Error::other(format!(
                "{target} is not the file this push placed (changed or replaced meanwhile)"
            )));
        }
        self.move_into_place(temp, &parent, name, path)
    }

    fn place_link(
        &mut self,
        path: &str,
        target: &str,
        temp: &str,
        owner: Ownership,
    ) -> io::Result<()> {
        let (parent, name) = self.beneath.parent(path, true)?;
        if let Some(link) = same_link(&parent, name, target) {
            // The same link: only its owner may need setting, through a
            // descriptor of the link itself.
            return owner.apply_at(&link, "");
        }
        let tmp = self.tmp_fd.clone();
        let _ = rfs::unlinkat(&*tmp, temp, AtFlags::empty());
        rfs::symlinkat(target, &*tmp, temp)?;
        if let Err(e) = owner.apply_at(&*tmp, temp) {
            let _ = rfs::unlinkat(&*tmp, temp, AtFlags::empty());
            return Err(e);
        }
        self.move_into_place(temp, &parent, name, path)
    }

    /// Renames the link made as `temp` in `.mdp-tmp` over `name` in
    /// `parent` (the directory of `path`), or removes it if that fails.
    fn move_into_place(
        &mut self,
        temp: &str,
        parent: &OwnedFd,
        name: &str,
        path: &str,
    ) -> io::Result<()> {
        let tmp = self.tmp_fd.clone();
        if let Err(e) = rfs::renameat(&*tmp, temp, parent, name) {
            let _ = rfs::unlinkat(&*tmp, temp, AtFlags::empty());
            return Err(e.into());
        }
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        self.touched_dirs.insert(dir.to_string());
        Ok(())
    }
}

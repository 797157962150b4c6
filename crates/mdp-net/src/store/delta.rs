//! Delta pushes: a file of the push that is not in place, but whose path
//! holds an older version, is started from that version's blocks.
//!
//! Each block of the new file is compared with the bytes at the same offset
//! of the old one (read, hashed, compared with the manifest's hash for the
//! block); a block that matches is copied into the new file's temporary
//! file and counts as held, like a block kept from an interrupted push: the
//! receiver reports it when it registers, and the sender sends only the
//! blocks some receiver lacks. The old file is only read: it stays under its
//! name until the new one, complete and checked, replaces it by rename.
//! Only the same offsets are compared (an insertion that shifts the rest of
//! a file is sent from there on, as are files of one block).
//!
//! When the store's index vouches for the old file (it placed it, or found
//! it in place, and its inode, size, mtime and ctime are unchanged since),
//! the index's block hashes of it are compared instead of reading it, and
//! the blocks it shares are copied by the kernel (`copy_file_range`, a
//! clone of the extents where the file system can). A write to the old file
//! meanwhile moves its ctime: the old file is looked at again after the
//! copy, and if it changed, nothing copied counts.

use super::blocks::{block_at_matches, block_len};
use super::resume::HeldBlocks;
use super::safe_path::file_at;
use super::{open_handle, Store};
use crate::stamp::FileId;
use mdp_proto::{EntryKind, ObjectId};
use rustix::fs as rfs;
use std::collections::HashSet;
use std::fs::{self, File};

impl Store {
    /// For each file of the session that is not `present`, not resumed and
    /// of more than one block, copies the blocks of the file now at its path
    /// that match the new content into its temporary file. Returns them per
    /// file, in object order.
    pub fn start_from_old_versions(&mut self, present: &[ObjectId]) -> Vec<HeldBlocks> {
        let present: HashSet<&ObjectId> = present.iter().collect();
        let mut objects: Vec<ObjectId> = self
            .files
            .iter()
            .filter(|(o, t)| !present.contains(o) && !t.blocks.any() && t.error.is_none())
            .map(|(o, _)| *o)
            .collect();
        objects.sort();
        let mut held = Vec::new();
        let mut buf = Vec::new();
        for object in objects {
            let n = self.start_from_old(object, &mut buf);
            if n > 0 {
                let t = &self.files[&object];
                let blocks = self.block_bytes.max(1);
                held.push((object, t.blocks.ranges(t.size.div_ceil(blocks) as u32)));
            }
        }
        held
    }

    /// [`Store::start_from_old_versions`] for one file; the blocks copied.
    fn start_from_old(&mut self, object: ObjectId, buf: &mut Vec<u8>) -> u32 {
        let bb = self.block_bytes;
        let Some(t) = self.files.get(&object) else {
            return 0;
        };
        let entry = &self.manifest.entries[t.entry];
        let EntryKind::File { blocks, .. } = &entry.kind else {
            return 0;
        };
        if blocks.is_empty() || bb == 0 {
            return 0;
        }
        // The old version: a regular file at the path (in an atomic push,
        // at its path in the current version), reached without following
        // a link.
        let path: std::borrow::Cow<'_, str> =
            match self.switch.as_ref().and_then(|s| s.old_path(&entry.path)) {
                Some(old) => old.into(),
                None => entry.path.as_str().into(),
            };
        let Ok((dir, name)) = self.beneath.parent(&path, false) else {
            return 0;
        };
        let Some((old, md)) = file_at(&dir, name) else {
            return 0;
        };
        let shared: Vec<u64> = match self
            .index
            .hashes_of(&path, &md, bb)
            .filter(|(_, b)| !b.is_empty())
        {
            // The index vouches for it: its block hashes, unread.
            Some((_, old_blocks)) => (0..blocks.len() as u64)
                .filter(|&b| old_blocks.get(b as usize) == blocks.get(b as usize))
                .collect(),
            // Else each block at the same offset, read and hashed.
            None => (0..blocks.len() as u64)
                .filter(|&b| block_at_matches(&old, entry, bb, b, buf))
                .collect(),
        };
        self.copy_shared(object, &old, &md, &shared)
    }

    /// Copies the blocks `shared` (ascending) of `old` to the same places of
    /// `object`'s temporary file, by the kernel, run by run, and marks them;
    /// none counts if the old file changed meanwhile (its ctime moved).
    fn copy_shared(
        &mut self,
        object: ObjectId,
        old: &File,
        md: &fs::Metadata,
        shared: &[u64],
    ) -> u32 {
        let bb = self.block_bytes;
        let Some(size) = self.files.get(&object).map(|t| t.size) else {
            return 0;
        };
        let mut copied = Vec::new();
        for run in shared.chunk_by(|a, b| a + 1 == *b) {
            let (first, last) = (run[0], run[run.len() - 1]);
            let Some(last_len) = block_len(size, bb, last) else {
                break;
            };
            let (start, end) = (first * bb, last * bb + last_len as u64);
            if !self.copy_range(object, old, start, end) {
                break;
            }
            copied.extend_from_slice(run);
        }
        let unchanged = old
            .metadata()
            .is_ok_and(|now| FileId::of(&now) == FileId::of(md));
        let Some(t) = self.files.get_mut(&object) else {
            return 0;
        };
        if !unchanged {
            // Written to while it was read or copied: what was copied is
            // not known.
            return 0;
        }
        for &b in &copied {
            t.blocks.mark(b as usize);
        }
        copied.len() as u32
    }

    /// Copies bytes `start..end` of `old` to the same place of `object`'s
    /// temporary file with `copy_file_range`: the part aligned to the file
    /// system's blocks in one call, so that a file system that can share
    /// extents (XFS, Btrfs) clones it instead of copying, and the unaligned
    /// ends apart. False when the copy fell short.
    fn copy_range(&mut self, object: ObjectId, old: &File, start: u64, end: u64) -> bool {
        let Some(t) = self.files.get_mut(&object) else {
            return false;
        };
        let (manifest, session, bb) = (&self.manifest, self.session, self.block_bytes);
        let (entry, by_content) = (t.entry, t.by_content);
        let name = || super::temp_name(manifest, session, bb, object, entry, by_content);
        let Ok(to) = open_handle(&mut self.handles, t, &self.tmp_fd, name, object) else {
            return false;
        };
        let align = rfs::fstat(to).map_or(4096, |st| (st.st_blksize as u64).max(1));
        let inner_start = start.div_ceil(align) * align;
        let inner_end = (end / align * align).max(inner_start);
        let pieces = [
            (start, inner_start.min(end)),
            (inner_start.min(end), inner_end.min(end)),
            (inner_end.min(end).max(start), end),
        ];
        pieces.iter().all(|&(from, until)| {
            let (mut off_in, mut off_out) = (from, from);
            while off_in < until {
                let left = (until - off_in) as usize;
                match rfs::copy_file_range(old, Some(&mut off_in), to, Some(&mut off_out), left) {
                    Ok(0) | Err(_) => return false,
                    Ok(_) => {}
                }
            }
            true
        })
    }
}

//! Resume records: when a session ends before a file is complete, its
//! temporary file stays, synced, with `<stem>.blocks` beside it (a bitmap of
//! the blocks written), so that the next push of the same content and block
//! size resumes from it. The record is also brought up to date every 64 MiB
//! written (`Store::checkpoint`), so a receiver killed or powered off
//! mid-push keeps what it wrote before that. Records older than the keep-partial age, and
//! temporary files without one, are removed.
//!
//! **Invariant:** a record names only blocks whose data reached the disk
//! (the file is synced before the record is written, by rename), and a
//! record is consumed when it is read: a second interruption writes it
//! again.

use super::{sync_data, Store};
use mdp_proto::ranges::{self, Range};
use mdp_proto::ObjectId;
use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// Blocks of a file kept from an interrupted push: the file object and
/// ascending `(first block, count)` ranges.
pub type HeldBlocks = (ObjectId, Vec<Range>);

/// How long the blocks of an interrupted push are kept by default.
pub const DEFAULT_KEEP_PARTIAL: Duration = Duration::from_secs(24 * 3600);

/// The blocks of a file written so far, a bit per block.
pub(super) struct BlockMap(Vec<u64>);

impl BlockMap {
    /// No block of `blocks` written yet.
    pub(super) fn new(blocks: u64) -> BlockMap {
        BlockMap(vec![0; words(blocks)])
    }

    /// Block `b` was written (ignored beyond the file's blocks).
    pub(super) fn mark(&mut self, b: usize) {
        if let Some(w) = self.0.get_mut(b / 64) {
            *w |= 1 << (b % 64);
        }
    }

    /// True when block `b` was written.
    pub(super) fn is_marked(&self, b: u64) -> bool {
        self.0
            .get((b / 64) as usize)
            .is_some_and(|w| w & (1 << (b % 64)) != 0)
    }

    /// Block `b` is not written after all (a check found it wrong).
    pub(super) fn unmark(&mut self, b: u64) {
        if let Some(w) = self.0.get_mut((b / 64) as usize) {
            *w &= !(1 << (b % 64));
        }
    }

    /// The blocks written, ascending.
    pub(super) fn marked(&self) -> Vec<u64> {
        let mut out = Vec::new();
        for (i, &w) in self.0.iter().enumerate() {
            let mut w = w;
            while w != 0 {
                out.push(i as u64 * 64 + u64::from(w.trailing_zeros()));
                w &= w - 1;
            }
        }
        out
    }

    /// True when all of the first `blocks` blocks were written.
    pub(super) fn all(&self, blocks: u64) -> bool {
        (0..blocks).all(|b| {
            self.0
                .get((b / 64) as usize)
                .is_some_and(|w| w & (1 << (b % 64)) != 0)
        })
    }

    /// True when some block was written.
    pub(super) fn any(&self) -> bool {
        self.0.iter().any(|w| *w != 0)
    }

    /// The blocks written, below `n`, as ascending ranges.
    pub(super) fn ranges(&self, n: u32) -> Vec<Range> {
        ranges::from_ascending((0..n).filter(|b| self.0[(b / 64) as usize] & (1 << (b % 64)) != 0))
    }

    /// The record of an interrupted push of the content named `stem`
    /// (`size` bytes in `blocks` blocks) in `tmp`, if its temporary file and
    /// record are there and agree. The record is consumed.
    pub(super) fn load(tmp: &Path, stem: &str, size: u64, blocks: u64) -> Option<BlockMap> {
        let sidecar = tmp.join(format!("{stem}.blocks"));
        let md = fs::symlink_metadata(tmp.join(format!("{stem}.part"))).ok()?;
        if !md.is_file() || md.len() != size {
            return None;
        }
        let bits: Vec<u64> = postcard::from_bytes(&fs::read(&sidecar).ok()?).ok()?;
        // The sidecar is consumed: it is written again if this push is
        // interrupted too.
        let _ = fs::remove_file(&sidecar);
        let map = BlockMap(bits);
        (map.0.len() == words(blocks) && map.any()).then_some(map)
    }

    /// Writes the record beside the temporary file `temp` (flushed, then
    /// renamed into place: after a power cut the record is the old one or
    /// the new one, whole); false if it could not be.
    pub(super) fn save(&self, temp: &Path) -> bool {
        postcard::to_stdvec(&self.0).is_ok_and(|bytes| {
            let sidecar = temp.with_extension("blocks");
            let tmp = temp.with_extension("blocks.new");
            let written = fs::File::create(&tmp).and_then(|mut f| {
                f.write_all(&bytes)?;
                f.sync_data()
            });
            written.is_ok() && fs::rename(&tmp, sidecar).is_ok()
        })
    }
}

/// Words of a bitmap of `blocks` bits.
fn words(blocks: u64) -> usize {
    blocks.div_ceil(64) as usize
}

/// Lowercase hexadecimal.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The name stem of a resumable temporary file: its content and the block
/// size (`{stem}.part`, and `{stem}.blocks` for its sidecar).
pub(super) fn content_stem(hash: &[u8; 32], block_bytes: u64) -> String {
    format!("{}-{block_bytes}", hex(hash))
}

/// The stems of the records in `tmp`, listed once: a push of many files
/// looks only for the few it may resume.
pub(super) fn records(tmp: &Path) -> HashSet<String> {
    fs::read_dir(tmp)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".blocks").map(str::to_string)
        })
        .collect()
}

/// How long a complete file left waiting for its check is kept at least.
const DONE_KEPT: Duration = Duration::from_secs(3600);

/// Removes from `tmp` temporary files and records older than `keep`, and
/// temporary files without a record (left by a receiver that was killed:
/// what they hold is not known), and records without their file.
pub(super) fn remove_stale(tmp: &Path, keep: Duration) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    let now = std::time::SystemTime::now();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let age = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok());
        if name.ends_with(".done") {
            // A complete file waiting for its check (`Store::written`),
            // left by a receiver that stopped: gone after a while, never
            // while a verifier may still take it.
            if age.is_none_or(|a| a >= keep.max(DONE_KEPT)) {
                let _ = fs::remove_file(e.path());
            }
            continue;
        }
        let (stem, is_part) = if let Some(stem) = name.strip_suffix(".part") {
            (stem.to_string(), true)
        } else if let Some(stem) = name.strip_suffix(".blocks") {
            (stem.to_string(), false)
        } else {
            continue;
        };
        let old = age.is_none_or(|age| age >= keep);
        let orphan = if is_part {
            !tmp.join(format!("{stem}.blocks")).exists()
        } else {
            !tmp.join(format!("{stem}.part")).exists()
        };
        if old || orphan {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// The resume records of the files being written are brought up to date
/// each time this many bytes were written (each file's data flushed first):
/// a receiver killed, or whose host lost power, mid-push keeps what it wrote
/// before the last checkpoint.
const CHECKPOINT_EVERY: u64 = 64 << 20;

/// What a session's checkpoints keep track of.
#[derive(Debug)]
pub(super) struct Checkpoints {
    /// Bytes written since the last checkpoint, and how many there may be
    /// between two ([`CHECKPOINT_EVERY`]).
    since: u64,
    every: u64,
    /// Files written to since the last checkpoint.
    unsaved: HashSet<ObjectId>,
    /// Files with a record on disk (removed once the file is complete).
    recorded: HashSet<ObjectId>,
}

impl Default for Checkpoints {
    fn default() -> Self {
        Checkpoints {
            since: 0,
            every: CHECKPOINT_EVERY,
            unsaved: HashSet::new(),
            recorded: HashSet::new(),
        }
    }
}

impl Checkpoints {
    /// `bytes` of `object` were written; true when a checkpoint is due.
    pub(super) fn wrote(&mut self, object: ObjectId, bytes: u64) -> bool {
        self.unsaved.insert(object);
        self.since += bytes;
        if self.since < self.every {
            return false;
        }
        self.since = 0;
        true
    }

    /// `object` is complete: true when it has a record on disk, now of no
    /// more use.
    pub(super) fn completed(&mut self, object: ObjectId) -> bool {
        self.unsaved.remove(&object);
        self.recorded.remove(&object)
    }

    /// The session ended: forgets its files.
    pub(super) fn clear(&mut self) {
        self.since = 0;
        self.unsaved.clear();
        self.recorded.clear();
    }

    /// True when `object` has a record on disk.
    pub(super) fn has_record(&self, object: ObjectId) -> bool {
        self.recorded.contains(&object)
    }
}

impl Store {
    /// Brings the resume record of each file written to since the last
    /// checkpoint up to date: its data flushed, then its record written
    /// (atomically). **Invariant:** a record names only blocks on the disk.
    pub(super) fn checkpoint(&mut self) {
        for object in std::mem::take(&mut self.checkpoints.unsaved) {
            let Some(t) = self.files.get(&object) else {
                continue;
            };
            if t.error.is_some() || !t.created {
                continue;
            }
            let (name, temp) = (self.temp_name(object, t), self.temp_path(object, t));
            if sync_data(&self.handles, object, &self.tmp_fd, &name).is_ok() && t.blocks.save(&temp)
            {
                self.checkpoints.recorded.insert(object);
            }
        }
    }

    /// Checkpoints after every `bytes` written instead of
    /// [`CHECKPOINT_EVERY`] (for tests).
    #[cfg(test)]
    pub(crate) fn set_checkpoint_every(&mut self, bytes: u64) {
        self.checkpoints.every = bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::BlockMap;

    #[test]
    fn the_blocks_written_come_back_as_ascending_ranges() {
        let mut m = BlockMap::new(130);
        assert!(!m.any());
        for b in [0, 1, 2, 63, 64, 65, 129, 200] {
            m.mark(b);
        }
        assert!(m.any());
        assert_eq!(m.ranges(130), vec![(0, 3), (63, 3), (129, 1)]);
        assert_eq!(m.ranges(64), vec![(0, 3), (63, 1)]);
    }
}

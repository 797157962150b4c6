//! Remembered hashes: a file's BLAKE3 hash is trusted again without reading
//! the file when its device, inode, size, mtime and ctime are unchanged.
//! Any write, `touch` or `chmod` moves ctime, which no process can set back,
//! so this is the quick check of rsync made strict. The sender keeps one
//! cache for the files it pushes, the receiver one for the files it placed
//! (its index in `DIR/.mdp-tmp`).

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Most entries a cache keeps; past that it starts again empty.
const MAX_ENTRIES: usize = 4_000_000;

/// A file's identity and change times: equal while nobody wrote, touched,
/// chmodded or replaced the file. The sender also checks every block it
/// reads against the one taken when the file was hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileId {
    /// The identity of the file `md` describes.
    pub fn of(md: &fs::Metadata) -> FileId {
        FileId {
            dev: md.dev(),
            ino: md.ino(),
            size: md.len(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        }
    }
}

/// What a cache remembers of a file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Stamp {
    id: FileId,
    hash: [u8; 32],
    /// The block size and hashes of its blocks, when they were computed
    /// (a file of more than one block pushed by a sender).
    blocks: Option<(u64, Vec<[u8; 32]>)>,
}

impl Stamp {
    fn of(md: &fs::Metadata, hash: [u8; 32]) -> Stamp {
        Stamp {
            id: FileId::of(md),
            hash,
            blocks: None,
        }
    }
}

/// Path → stamp, saved to a file.
#[derive(Debug, Default)]
pub struct HashCache {
    file: Option<PathBuf>,
    map: HashMap<String, Stamp>,
    dirty: bool,
    /// Files changed this recently are not remembered: a change within the
    /// same timestamp tick would go unseen ("racily clean", as git says).
    settle: Duration,
}

impl HashCache {
    /// A cache saved in `file` (loaded now; missing or unreadable: empty).
    /// Files changed less than `settle` ago are not remembered.
    pub fn load(file: PathBuf, settle: Duration) -> HashCache {
        let map = fs::read(&file)
            .ok()
            .and_then(|b| postcard::from_bytes::<Vec<(String, Stamp)>>(&b).ok())
            .map(|v| v.into_iter().collect())
            .unwrap_or_default();
        HashCache {
            file: Some(file),
            map,
            dirty: false,
            settle,
        }
    }

    /// A cache that remembers nothing.
    pub fn disabled() -> HashCache {
        HashCache::default()
    }

    /// The remembered hash of `key`, if `md` shows the file unchanged.
    pub fn hash_of(&self, key: &str, md: &fs::Metadata) -> Option<[u8; 32]> {
        let s = self.map.get(key)?;
        (FileId::of(md) == s.id).then_some(s.hash)
    }

    /// The remembered hash of `key` and of its blocks of `block_bytes` (none
    /// when it has one block), if `md` shows the file unchanged.
    pub fn hashes_of(
        &self,
        key: &str,
        md: &fs::Metadata,
        block_bytes: u64,
    ) -> Option<crate::hash::Hashes> {
        let s = self.map.get(key)?;
        if FileId::of(md) != s.id {
            return None;
        }
        if md.len() <= block_bytes || block_bytes == 0 {
            return Some((s.hash, Vec::new()));
        }
        match &s.blocks {
            Some((bb, blocks)) if *bb == block_bytes => Some((s.hash, blocks.clone())),
            _ => None,
        }
    }

    /// [`HashCache::remember`], with the hashes of the file's blocks of
    /// `block_bytes`.
    pub fn remember_blocks(
        &mut self,
        key: &str,
        md: &fs::Metadata,
        (hash, blocks): crate::hash::Hashes,
        block_bytes: u64,
    ) {
        self.remember(key, md, hash);
        if blocks.is_empty() {
            return;
        }
        if let Some(s) = self.map.get_mut(key) {
            if s.id == FileId::of(md) && s.hash == hash {
                s.blocks = Some((block_bytes, blocks));
                self.dirty = true;
            }
        }
    }

    /// Remembers that the file `md` describes has `hash`.
    pub fn remember(&mut self, key: &str, md: &fs::Metadata, hash: [u8; 32]) {
        if self.file.is_none() {
            return;
        }
        let now = SystemTime::now();
        let recent = |secs: i64, nsec: i64| {
            let t =
                UNIX_EPOCH + Duration::new(secs.max(0) as u64, nsec.clamp(0, 999_999_999) as u32);
            now.duration_since(t).map_or(true, |age| age < self.settle)
        };
        if recent(md.mtime(), md.mtime_nsec()) || recent(md.ctime(), md.ctime_nsec()) {
            return;
        }
        let stamp = Stamp::of(md, hash);
        if self
            .map
            .get(key)
            .is_none_or(|s| s.id != stamp.id || s.hash != hash)
        {
            if self.map.len() >= MAX_ENTRIES {
                self.map.clear();
            }
            self.map.insert(key.to_string(), stamp);
            self.dirty = true;
        }
    }

    /// Writes the cache (atomically) when it changed; errors only cost a
    /// rehash next time.
    pub fn save(&mut self) {
        let Some(file) = &self.file else { return };
        if !self.dirty {
            return;
        }
        let entries: Vec<(&String, &Stamp)> = self.map.iter().collect();
        let Ok(bytes) = postcard::to_stdvec(&entries) else {
            return;
        };
        if let Some(dir) = file.parent() {
            let _ = fs::create_dir_all(dir);
        }
        let tmp = file.with_extension("new");
        if fs::write(&tmp, bytes).is_ok() && fs::rename(&tmp, file).is_ok() {
            self.dirty = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_hash_holds_until_the_file_changes() {
        let dir = crate::test_dir("stamp");
        let f = dir.join("f");
        // Writes `bytes` and sets the mtime an hour back.
        let write_old = |bytes: &[u8]| {
            fs::write(&f, bytes).unwrap();
            let old = SystemTime::now() - Duration::from_secs(3600);
            let file = fs::File::options().write(true).open(&f).unwrap();
            file.set_modified(old).unwrap();
        };
        write_old(b"one");
        let cache_file = dir.join("cache");
        let mut c = HashCache::load(cache_file.clone(), Duration::ZERO);
        let md = fs::metadata(&f).unwrap();
        c.remember("f", &md, [1; 32]);
        c.save();
        let c = HashCache::load(cache_file.clone(), Duration::ZERO);
        assert_eq!(c.hash_of("f", &fs::metadata(&f).unwrap()), Some([1; 32]));
        // Same size, mtime set back: ctime moved, so the hash is not trusted.
        write_old(b"two");
        assert_eq!(c.hash_of("f", &fs::metadata(&f).unwrap()), None);
        // A file changed just now is not remembered at all.
        let mut c = HashCache::load(cache_file, Duration::from_secs(2));
        c.remember("g", &fs::metadata(&f).unwrap(), [2; 32]);
        assert_eq!(c.hash_of("g", &fs::metadata(&f).unwrap()), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}

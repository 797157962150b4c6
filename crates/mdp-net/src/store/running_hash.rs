//! The running hash: a file's BLAKE3 hash kept as its blocks are written,
//! so that a complete file need not be read back to be checked, and the
//! memory budget for blocks that arrive ahead of the hash's position.
//!
//! **Invariant:** the hash covers the bytes in the file, in order: a block
//! written twice gives the running hash up (the file is read back and
//! hashed once complete), and bytes held in memory are counted in
//! [`KeptBytes`] from the moment they are kept until they are dropped.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// The BLAKE3 hash of a file's first `next` bytes, fed from the blocks as
/// they are written, so that a complete file need not be read back to be
/// checked: the last block's write is followed by the check at once.
/// Blocks written past `next` (they complete out of order under loss) are
/// kept in memory while the store's [`KeptBytes`] allow, else remembered by
/// length and read back from the page cache, and hashed when the gap
/// before them is filled.
#[derive(Debug)]
pub(super) struct RunningHash {
    pub(super) hasher: blake3::Hasher,
    pub(super) next: u64,
    /// Offset → block written beyond `next`.
    ahead: std::collections::BTreeMap<u64, Ahead>,
}

/// A block written ahead of a [`RunningHash`]'s position.
#[derive(Debug)]
pub(super) enum Ahead {
    /// Its length: read it back from the file.
    Len(usize),
    /// Its bytes.
    Kept(Kept),
}

/// A block's bytes held for a [`RunningHash`], counted in the store's
/// [`KeptBytes`] until dropped (on whatever path that happens).
pub(super) struct Kept {
    data: Box<dyn AsRef<[u8]> + Send>,
    count: KeptBytes,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kept({} bytes)", (*self.data).as_ref().len())
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        let len = (*self.data).as_ref().len();
        self.count
            .0
            .fetch_sub(len, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A block handed to [`Store`](super::Store) for writing: borrowed, or given over to be
/// kept.
pub(super) enum Bytes<'a> {
    Borrowed(&'a [u8]),
    Kept(Kept),
}

impl Bytes<'_> {
    pub(super) fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Borrowed(d) => d,
            Bytes::Kept(k) => (*k.data).as_ref(),
        }
    }
}

/// Bytes of blocks the store's running hashes hold in memory.
#[derive(Clone, Debug, Default)]
pub(super) struct KeptBytes(Arc<std::sync::atomic::AtomicUsize>);

impl KeptBytes {
    /// Holds `data` if `limit` leaves room for it; else gives it back.
    pub(super) fn keep(
        &self,
        data: Box<dyn AsRef<[u8]> + Send>,
        limit: usize,
    ) -> Result<Kept, Box<dyn AsRef<[u8]> + Send>> {
        let len = (*data).as_ref().len();
        if self.get() + len > limit {
            return Err(data);
        }
        self.0.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
        Ok(Kept {
            data,
            count: self.clone(),
        })
    }

    pub(super) fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Most blocks a [`RunningHash`] remembers ahead of its position; beyond
/// that the file is hashed once complete instead.
pub(super) const MAX_AHEAD: usize = 4096;

/// Bytes a [`RunningHash`] reads back at a time (its buffer's size).
pub(super) const READ_BACK_CHUNK: usize = 1 << 20;

impl RunningHash {
    pub(super) fn new() -> RunningHash {
        RunningHash {
            hasher: blake3::Hasher::new(),
            next: 0,
            ahead: std::collections::BTreeMap::new(),
        }
    }

    /// Takes in a block just written at `offset`; `file` holds it and the
    /// blocks before. `false`: the hash cannot be kept (give it up).
    pub(super) fn wrote(
        &mut self,
        file: &File,
        offset: u64,
        block: Bytes<'_>,
        scratch: &mut Vec<u8>,
    ) -> bool {
        let len = block.as_slice().len();
        if offset > self.next {
            let ahead = match block {
                Bytes::Kept(k) => Ahead::Kept(k),
                Bytes::Borrowed(_) => Ahead::Len(len),
            };
            self.ahead.insert(offset, ahead);
            return self.ahead.len() <= MAX_AHEAD;
        }
        if offset < self.next {
            // Written twice: the bytes hashed may not be the bytes there.
            return false;
        }
        self.hasher.update(block.as_slice());
        self.next += len as u64;
        while let Some(ahead) = self.ahead.remove(&self.next) {
            let len = match ahead {
                Ahead::Kept(k) => {
                    let bytes = (*k.data).as_ref();
                    self.hasher.update(bytes);
                    self.next += bytes.len() as u64;
                    continue;
                }
                Ahead::Len(len) => len,
            };
            let end = self.next + len as u64;
            while self.next < end {
                let piece = ((end - self.next) as usize).min(READ_BACK_CHUNK);
                scratch.resize(piece, 0);
                if file.read_exact_at(scratch, self.next).is_err() {
                    return false;
                }
                self.hasher.update(scratch);
                self.next += piece as u64;
            }
        }
        true
    }
}

/// The BLAKE3 hash of a whole file, read from its start.
pub(super) fn hash_open(file: &File) -> io::Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut reader = file;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(*hasher.finalize().as_bytes())
}

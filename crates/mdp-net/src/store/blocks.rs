//! Content checks against the manifest's hashes.
//!
//! Every block that goes into a temporary file is checked against the
//! manifest's BLAKE3 hash for it ([`mdp_proto::Entry::block_hash`]): a
//! rebuilt block before it is written ([`super::Store::write`]), a block an
//! interrupted push left on the disk before it counts again (its record
//! says only that it was written, not that the disk kept it:
//! [`recheck`]), and a block of an older version of the file before it is
//! copied into the new one ([`super::delta`]).
//!
//! **Invariant:** a temporary file's block map names only blocks whose bytes
//! in it matched their hash, so a file whose blocks are all marked is the
//! file the manifest describes, without reading it back.

use super::resume::BlockMap;
use mdp_proto::{Entry, EntryKind};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

/// Bytes a file is read in when it is hashed whole.
const READ_CHUNK: usize = 1 << 20;

/// The length of block `block` of a file of `size` bytes in blocks of
/// `block_bytes`, or `None` when the file has no such block.
pub(super) fn block_len(size: u64, block_bytes: u64, block: u64) -> Option<usize> {
    let offset = block.checked_mul(block_bytes)?;
    (offset < size).then(|| (size - offset).min(block_bytes) as usize)
}

/// True when `data` is block `block` of `entry` byte for byte: the right
/// length and the manifest's hash.
pub(super) fn block_matches(entry: &Entry, block_bytes: u64, block: u64, data: &[u8]) -> bool {
    let EntryKind::File { size, .. } = entry.kind else {
        return false;
    };
    let Ok(b) = u32::try_from(block) else {
        return false;
    };
    block_len(size, block_bytes, block) == Some(data.len())
        && entry
            .block_hash(b)
            .is_some_and(|h| *blake3::hash(data).as_bytes() == h)
}

/// True when `file` holds block `block` of `entry` at its offset: read
/// (into `buf`) and checked with [`block_matches`]. A file too short for it
/// does not.
pub(super) fn block_at_matches(
    file: &File,
    entry: &Entry,
    block_bytes: u64,
    block: u64,
    buf: &mut Vec<u8>,
) -> bool {
    let EntryKind::File { size, .. } = entry.kind else {
        return false;
    };
    let Some(len) = block_len(size, block_bytes, block) else {
        return false;
    };
    buf.resize(len, 0);
    file.read_exact_at(buf, block * block_bytes).is_ok()
        && block_matches(entry, block_bytes, block, buf)
}

/// Reads the blocks `map` marks back from `file` (the temporary file of
/// `entry`, kept from an interrupted push) and unmarks each that no longer
/// matches its hash, or cannot be read.
pub(super) fn recheck(file: &File, entry: &Entry, block_bytes: u64, map: &mut BlockMap) {
    let mut buf = Vec::new();
    for b in map.marked() {
        if !block_at_matches(file, entry, block_bytes, b, &mut buf) {
            map.unmark(b);
        }
    }
}

/// True when `file` holds exactly the blocks of `entry` (a file of more
/// than one block), read and hashed one block at a time up to the first
/// that differs.
pub(super) fn all_blocks_match(file: &File, entry: &Entry, block_bytes: u64) -> bool {
    let EntryKind::File { size, .. } = entry.kind else {
        return false;
    };
    if block_bytes == 0 || file.metadata().map(|m| m.len()).ok() != Some(size) {
        return false;
    }
    let mut buf = Vec::new();
    (0..size.div_ceil(block_bytes)).all(|b| block_at_matches(file, entry, block_bytes, b, &mut buf))
}

/// The BLAKE3 hash of a whole file, read from its start.
pub(super) fn hash_open(file: &File) -> io::Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; READ_CHUNK];
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

//! Hashing many files, and large ones, on several threads.
//!
//! The sender hashes everything it pushes before the first datagram, so
//! that hashing is time every push waits for. BLAKE3 is a tree hash: a file
//! longer than [`PIECE`] is cut, along the tree's own left/right splits
//! ([`blake3::hazmat::left_subtree_len`]), into subtrees of at most
//! `PIECE` bytes whose chaining values are computed independently and then
//! merged up to the root. Smaller files are hashed whole. Files and pieces
//! go into one queue that `threads` workers drain, so that one large file
//! and a tree of many small ones both keep every core busy. The result is
//! the plain BLAKE3 hash of each file, the same as a sequential read.
//!
//! The same read also gives the hash of each block of a file of more than
//! one block (the manifest's block hashes, for a block size the caller
//! names): the job in which a block starts hashes it, reading past its own
//! end for a block that runs on into the next piece.

use blake3::hazmat::{self, ChainingValue, HasherExt, Mode};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Files longer than this are cut into subtrees of at most this size.
pub const PIECE: u64 = 16 << 20;

/// Bytes a worker reads at a time.
const READ_CHUNK: usize = 1 << 20;

/// One unit of work: `len` bytes of file `file` from `offset`; `whole`
/// when it is the entire file (hashed to its root, not to a chaining value).
#[derive(Clone, Copy, Debug)]
struct Job {
    file: usize,
    offset: u64,
    len: u64,
    whole: bool,
}

/// What a job produced: the root or chaining value, and the hashes of
/// the blocks that start in it.
#[derive(Debug)]
enum Done {
    Root([u8; 32], Vec<[u8; 32]>),
    Subtree(ChainingValue, Vec<[u8; 32]>),
}

/// A file's BLAKE3 hash and, when it has more than one block, the hash of
/// each block.
pub type Hashes = ([u8; 32], Vec<[u8; 32]>);

/// The BLAKE3 hash of the first `lens[i]` bytes of each `paths[i]`, and
/// the hashes of their blocks of `block_bytes` (none for a file of one
/// block, or when `block_bytes` is 0), with up to `threads` threads. A file
/// shorter than its length fails with `UnexpectedEof` (the caller sees it
/// changed).
pub fn hash_files(
    paths: &[&Path],
    lens: &[u64],
    block_bytes: u64,
    threads: usize,
) -> Vec<io::Result<Hashes>> {
    hash_files_in(paths, lens, block_bytes, threads, PIECE)
}

fn hash_files_in(
    paths: &[&Path],
    lens: &[u64],
    block_bytes: u64,
    threads: usize,
    piece: u64,
) -> Vec<io::Result<Hashes>> {
    assert_eq!(paths.len(), lens.len(), "one length per path");
    let mut jobs = Vec::new();
    for (file, &len) in lens.iter().enumerate() {
        if len <= piece {
            jobs.push(Job {
                file,
                offset: 0,
                len,
                whole: true,
            });
        } else {
            plan(file, 0, len, piece, &mut jobs);
        }
    }
    let results: Vec<Mutex<Option<io::Result<Done>>>> =
        jobs.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let work = || {
        let mut buf = vec![0u8; READ_CHUNK];
        let mut open: Option<(usize, File)> = None;
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(job) = jobs.get(i) else { return };
            let blocks = (block_bytes > 0 && lens[job.file] > block_bytes).then_some(block_bytes);
            let result = run(
                job,
                paths[job.file],
                lens[job.file],
                blocks,
                &mut open,
                &mut buf,
            );
            *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        }
    };
    let threads = threads.clamp(1, jobs.len().max(1));
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(work);
        }
        work();
    });
    let mut done = results
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .map(|r| r.expect("every job ran"));
    lens.iter()
        .map(|&len| {
            if len <= piece {
                match done.next().expect("a job per file") {
                    Ok(Done::Root(h, blocks)) => Ok((h, blocks)),
                    Ok(Done::Subtree(..)) => unreachable!("a whole file hashes to its root"),
                    Err(e) => Err(e),
                }
            } else {
                // Every piece is consumed, even after an error, so that the
                // next file's pieces line up.
                let mut blocks = Vec::new();
                let left = hazmat::left_subtree_len(len);
                let l = merge(left, piece, &mut done, &mut blocks);
                let r = merge(len - left, piece, &mut done, &mut blocks);
                Ok((
                    hazmat::merge_subtrees_root(&l?, &r?, Mode::Hash).into(),
                    blocks,
                ))
            }
        })
        .collect()
}

/// Appends the pieces of the subtree of `len` bytes at `offset`, in order.
fn plan(file: usize, offset: u64, len: u64, piece: u64, jobs: &mut Vec<Job>) {
    if len <= piece {
        jobs.push(Job {
            file,
            offset,
            len,
            whole: false,
        });
        return;
    }
    let left = hazmat::left_subtree_len(len);
    plan(file, offset, left, piece, jobs);
    plan(file, offset + left, len - left, piece, jobs);
}

/// The chaining value of a subtree of `len` bytes, from the results of the
/// pieces [`plan`] cut it into (taken in the same order); the hashes of the
/// blocks that start in it are appended to `blocks`.
fn merge(
    len: u64,
    piece: u64,
    done: &mut impl Iterator<Item = io::Result<Done>>,
    blocks: &mut Vec<[u8; 32]>,
) -> io::Result<ChainingValue> {
    if len <= piece {
        return match done.next().expect("a job per piece")? {
            Done::Subtree(cv, b) => {
                blocks.extend(b);
                Ok(cv)
            }
            Done::Root(..) => unreachable!("a piece hashes to a chaining value"),
        };
    }
    let left = hazmat::left_subtree_len(len);
    let l = merge(left, piece, done, blocks);
    let r = merge(len - left, piece, done, blocks);
    Ok(hazmat::merge_subtrees_non_root(&l?, &r?, Mode::Hash))
}

/// The hashes of the blocks of `block_bytes` that start in a job, fed from
/// the job's own reads.
struct BlockHasher {
    block_bytes: u64,
    /// The file's length.
    size: u64,
    /// The block being hashed: its start, and its hasher.
    open: Option<(u64, blake3::Hasher)>,
    done: Vec<[u8; 32]>,
}

impl BlockHasher {
    /// Takes the bytes `data` of the file at `at`; only blocks that start
    /// at or after `from` (the job's start) are hashed.
    fn update(&mut self, from: u64, at: u64, mut data: &[u8]) {
        let bb = self.block_bytes;
        let mut at = at;
        while !data.is_empty() {
            if self.open.is_none() {
                // The next block start at or after both `at` and `from`.
                let start = at.max(from).div_ceil(bb) * bb;
                if start >= at + data.len() as u64 {
                    return;
                }
                data = &data[(start - at) as usize..];
                at = start;
                self.open = Some((start, blake3::Hasher::new()));
            }
            let (start, hasher) = self.open.as_mut().expect("opened above");
            let end = (*start + bb).min(self.size);
            let take = ((end - at) as usize).min(data.len());
            hasher.update(&data[..take]);
            data = &data[take..];
            at += take as u64;
            if at == end {
                let (_, hasher) = self.open.take().expect("opened above");
                self.done.push(*hasher.finalize().as_bytes());
            }
        }
    }

    /// Where the block still open ends, if one is.
    fn open_until(&self) -> Option<u64> {
        self.open
            .as_ref()
            .map(|(start, _)| (start + self.block_bytes).min(self.size))
    }
}

fn run(
    job: &Job,
    path: &Path,
    size: u64,
    block_bytes: Option<u64>,
    open: &mut Option<(usize, File)>,
    buf: &mut [u8],
) -> io::Result<Done> {
    let file = match open {
        Some((f, file)) if *f == job.file => file,
        _ => &open.insert((job.file, File::open(path)?)).1,
    };
    let mut hasher = blake3::Hasher::new();
    if !job.whole {
        hasher.set_input_offset(job.offset);
    }
    let mut blocks = block_bytes.map(|block_bytes| BlockHasher {
        block_bytes,
        size,
        open: None,
        done: Vec::new(),
    });
    let short = || {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("shorter than the {size} bytes it had"),
        )
    };
    let mut at = job.offset;
    let end = job.offset + job.len;
    while at < end {
        let want = ((end - at) as usize).min(buf.len());
        let n = file.read_at(&mut buf[..want], at)?;
        if n == 0 {
            return Err(short());
        }
        hasher.update(&buf[..n]);
        if let Some(b) = &mut blocks {
            b.update(job.offset, at, &buf[..n]);
        }
        at += n as u64;
    }
    // A block that started here and runs on into the next piece.
    if let Some(b) = &mut blocks {
        while let Some(until) = b.open_until() {
            let want = ((until - at) as usize).min(buf.len());
            let n = file.read_at(&mut buf[..want], at)?;
            if n == 0 {
                return Err(short());
            }
            b.update(job.offset, at, &buf[..n]);
            at += n as u64;
        }
    }
    let blocks = blocks.map(|b| b.done).unwrap_or_default();
    Ok(if job.whole {
        Done::Root(*hasher.finalize().as_bytes(), blocks)
    } else {
        Done::Subtree(hasher.finalize_non_root(), blocks)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn pieces_and_whole_files_give_the_plain_hash() {
        let d = crate::test_dir("phash");
        fs::create_dir_all(&d).unwrap();
        // Small pieces, so that short files exercise deep trees; lengths
        // around chunk (1024) and piece boundaries.
        let piece = 3000;
        let lens = [0u64, 1, 1024, 2999, 3000, 3001, 4096, 8193, 65_537, 300_001];
        let mut paths = Vec::new();
        for (i, &len) in lens.iter().enumerate() {
            let p = d.join(format!("f{i}"));
            let data: Vec<u8> = (0..len).map(|b| (b * 131 + i as u64) as u8).collect();
            fs::write(&p, &data).unwrap();
            paths.push(p);
        }
        let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
        for (threads, block_bytes) in [(1, 0), (2, 1000), (5, 4096), (2, 2999)] {
            let got = hash_files_in(&refs, &lens, block_bytes, threads, piece);
            for ((p, len), h) in paths.iter().zip(lens).zip(got) {
                let data = fs::read(p).unwrap();
                let (root, blocks) = h.unwrap();
                assert_eq!(
                    root,
                    *blake3::hash(&data).as_bytes(),
                    "len={len} threads={threads}"
                );
                // Each block's plain hash, in order; none for one block.
                let want: Vec<[u8; 32]> = if block_bytes == 0 || len <= block_bytes {
                    Vec::new()
                } else {
                    data.chunks(block_bytes as usize)
                        .map(|c| *blake3::hash(c).as_bytes())
                        .collect()
                };
                assert_eq!(blocks, want, "len={len} block_bytes={block_bytes}");
            }
        }
        // The default piece size, with a file just over it.
        let big = d.join("big");
        let data: Vec<u8> = (0..PIECE + 5000).map(|b| (b * 7 / 3) as u8).collect();
        fs::write(&big, &data).unwrap();
        let got = hash_files(&[&big], &[data.len() as u64], 274_176, 2);
        let (root, blocks) = got[0].as_ref().unwrap();
        assert_eq!(root, blake3::hash(&data).as_bytes());
        // Block 61 starts in the first piece and ends in the second.
        let want: Vec<[u8; 32]> = data
            .chunks(274_176)
            .map(|c| *blake3::hash(c).as_bytes())
            .collect();
        assert_eq!(*blocks, want);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_file_shorter_than_its_length_or_missing_fails_alone() {
        let d = crate::test_dir("pshort");
        fs::create_dir_all(&d).unwrap();
        let (a, b, c) = (d.join("a"), d.join("b"), d.join("missing"));
        fs::write(&a, vec![1u8; 10_000]).unwrap();
        fs::write(&b, vec![2u8; 10_000]).unwrap();
        let got = hash_files_in(&[&a, &b, &c], &[20_000, 10_000, 5], 0, 2, 3000);
        assert_eq!(
            got[0].as_ref().unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert_eq!(
            &got[1].as_ref().unwrap().0,
            blake3::hash(&[2u8; 10_000]).as_bytes()
        );
        assert_eq!(got[2].as_ref().unwrap_err().kind(), io::ErrorKind::NotFound);
        fs::remove_dir_all(&d).unwrap();
    }
}

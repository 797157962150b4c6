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

/// What a job produced.
#[derive(Debug)]
enum Done {
    Root([u8; 32]),
    Subtree(ChainingValue),
}

/// The BLAKE3 hash of the first `lens[i]` bytes of each `paths[i]`, with up
/// to `threads` threads. A file shorter than its length fails with
/// `UnexpectedEof` (the caller sees it changed).
pub fn hash_files(paths: &[&Path], lens: &[u64], threads: usize) -> Vec<io::Result<[u8; 32]>> {
    hash_files_in(paths, lens, threads, PIECE)
}

fn hash_files_in(
    paths: &[&Path],
    lens: &[u64],
    threads: usize,
    piece: u64,
) -> Vec<io::Result<[u8; 32]>> {
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
            let result = run(job, paths[job.file], &mut open, &mut buf);
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
                    Ok(Done::Root(h)) => Ok(h),
                    Ok(Done::Subtree(_)) => unreachable!("a whole file hashes to its root"),
                    Err(e) => Err(e),
                }
            } else {
                // Every piece is consumed, even after an error, so that the
                // next file's pieces line up.
                let left = hazmat::left_subtree_len(len);
                let l = merge(left, piece, &mut done);
                let r = merge(len - left, piece, &mut done);
                Ok(hazmat::merge_subtrees_root(&l?, &r?, Mode::Hash).into())
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
/// pieces [`plan`] cut it into (taken in the same order).
fn merge(
    len: u64,
    piece: u64,
    done: &mut impl Iterator<Item = io::Result<Done>>,
) -> io::Result<ChainingValue> {
    if len <= piece {
        return match done.next().expect("a job per piece")? {
            Done::Subtree(cv) => Ok(cv),
            Done::Root(_) => unreachable!("a piece hashes to a chaining value"),
        };
    }
    let left = hazmat::left_subtree_len(len);
    let l = merge(left, piece, done);
    let r = merge(len - left, piece, done);
    Ok(hazmat::merge_subtrees_non_root(&l?, &r?, Mode::Hash))
}

fn run(
    job: &Job,
    path: &Path,
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
    let mut at = job.offset;
    let end = job.offset + job.len;
    while at < end {
        let want = ((end - at) as usize).min(buf.len());
        let n = file.read_at(&mut buf[..want], at)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("shorter than the {} bytes it had", job.offset + job.len),
            ));
        }
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(if job.whole {
        Done::Root(*hasher.finalize().as_bytes())
    } else {
        Done::Subtree(hasher.finalize_non_root())
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
        for threads in [1, 2, 5] {
            let got = hash_files_in(&refs, &lens, threads, piece);
            for ((p, len), h) in paths.iter().zip(lens).zip(got) {
                let want = blake3::hash(&fs::read(p).unwrap());
                assert_eq!(h.unwrap(), *want.as_bytes(), "len={len} threads={threads}");
            }
        }
        // The default piece size, with a file just over it.
        let big = d.join("big");
        let data: Vec<u8> = (0..PIECE + 5000).map(|b| (b * 7 / 3) as u8).collect();
        fs::write(&big, &data).unwrap();
        let got = hash_files(&[&big], &[data.len() as u64], 2);
        assert_eq!(got[0].as_ref().unwrap(), blake3::hash(&data).as_bytes());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_file_shorter_than_its_length_or_missing_fails_alone() {
        let d = crate::test_dir("pshort");
        fs::create_dir_all(&d).unwrap();
        let (a, b, c) = (d.join("a"), d.join("b"), d.join("missing"));
        fs::write(&a, vec![1u8; 10_000]).unwrap();
        fs::write(&b, vec![2u8; 10_000]).unwrap();
        let got = hash_files_in(&[&a, &b, &c], &[20_000, 10_000, 5], 2, 3000);
        assert_eq!(
            got[0].as_ref().unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert_eq!(
            got[1].as_ref().unwrap(),
            blake3::hash(&[2u8; 10_000]).as_bytes()
        );
        assert_eq!(got[2].as_ref().unwrap_err().kind(), io::ErrorKind::NotFound);
        fs::remove_dir_all(&d).unwrap();
    }
}

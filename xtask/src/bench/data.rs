//! What the benchmark pushes and how its copies are checked: random files
//! and trees made once under target/bench, and their content (path, length,
//! BLAKE3) to compare a copy with.

use anyhow::Result;
use std::fs;
use std::path::{Path, PathBuf};

/// A file of `len` random bytes under `dir`, made once.
pub fn data_file(dir: &Path, name: &str, len: usize, seed: u64) -> Result<PathBuf> {
    let p = dir.join(name);
    if fs::metadata(&p).map(|m| m.len()).unwrap_or(0) != len as u64 {
        fs::write(&p, mdp_sim::Content::random_bytes(len, seed))?;
    }
    Ok(p)
}

/// An older version of `new`, under `dir/name`, made once: `places` runs
/// of `bytes_each` bytes spread evenly over it differ (what a receiver holds
/// before a delta push of `new`).
pub fn data_older(
    dir: &Path,
    name: &str,
    new: &Path,
    places: usize,
    bytes_each: usize,
) -> Result<PathBuf> {
    let p = dir.join(name);
    if !p.exists() {
        let mut data = fs::read(new)?;
        let stride = data.len() / places;
        for i in 0..places {
            let at = i * stride + stride / 2;
            for b in &mut data[at..at + bytes_each] {
                *b ^= 0xa5;
            }
        }
        fs::write(&p, data)?;
    }
    Ok(p)
}

/// A tree of `dirs` directories of `per_dir` files each, of 100 B to
/// 20 KB (the sizes of configuration files and small packages' parts),
/// made once under `dir/name`.
pub fn data_tree(dir: &Path, name: &str, dirs: usize, per_dir: usize) -> Result<PathBuf> {
    const SIZES: [usize; 5] = [100, 1_000, 4_000, 8_000, 20_000];
    let root = dir.join(name);
    for d in 0..dirs {
        let sub = root.join(format!("d{d:03}"));
        fs::create_dir_all(&sub)?;
        for f in 0..per_dir {
            let i = d * per_dir + f;
            data_file(
                &sub,
                &format!("f{f:03}.dat"),
                SIZES[i % SIZES.len()],
                i as u64,
            )?;
        }
    }
    Ok(root)
}

/// Bytes of a file, or of every file below a directory.
pub(super) fn payload_bytes(path: &Path) -> Result<u64> {
    Ok(content(path)?.iter().map(|(_, len, _)| len).sum())
}

/// Path (relative to `path`), length and BLAKE3 hash of a file or of every
/// file below a directory, sorted: equal for two identical trees.
pub(super) fn content(path: &Path) -> Result<Vec<(PathBuf, u64, [u8; 32])>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, u64, [u8; 32])>) -> Result<()> {
        for e in fs::read_dir(dir)? {
            let p = e?.path();
            if p.is_dir() {
                walk(root, &p, out)?;
            } else {
                let bytes = fs::read(&p)?;
                let rel = p.strip_prefix(root)?.to_path_buf();
                out.push((rel, bytes.len() as u64, *blake3::hash(&bytes).as_bytes()));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    if path.is_dir() {
        walk(path, path, &mut out)?;
        out.sort();
    } else {
        let bytes = fs::read(path)?;
        out.push((
            PathBuf::new(),
            bytes.len() as u64,
            *blake3::hash(&bytes).as_bytes(),
        ));
    }
    Ok(out)
}

//! Builds the manifest of a push from the paths given on the command line.
//!
//! A file `a/b/c.txt` is pushed as `c.txt`; a directory `a/b` as `b/...`
//! (like `scp -r`). Directories are walked in name order; a symbolic link
//! below a pushed directory is pushed as a link (its target as written),
//! never followed; a file's second and later names in the push go as hard
//! links to its first; special files are skipped and reported. A path given on
//! the command line is followed if it is a link. Each file is hashed (BLAKE3) here,
//! before anything is sent: after the walk, all at once on every core
//! ([`crate::hash`]).

use crate::exclude::Exclude;
use crate::owners::OwnerTable;
use crate::stamp::{FileId, HashCache};
use mdp_proto::{Entry, EntryKind, Manifest};
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;
use thiserror::Error;

/// What a push consists of.
#[derive(Debug, Default)]
pub struct Source {
    /// The manifest to announce.
    pub manifest: Manifest,
    /// Local path of each file object: `files[i]` is object `i + 1`.
    pub files: Vec<PathBuf>,
    /// What each file looked like when it was hashed: the reader checks
    /// every block it reads against it, so that a file changed during the
    /// push fails clearly instead of sending a mix of two versions.
    pub seen: Vec<FileId>,
    /// Paths left out, with the reason.
    pub skipped: Vec<(PathBuf, &'static str)>,
    /// Entries `--exclude` left out (a directory counts once, with all it
    /// holds).
    pub excluded: usize,
    /// The owners of the entries so far (moved into the manifest at the
    /// end of the scan).
    owners: OwnerTable,
    /// Files with more than one name: (device, inode) → the manifest path
    /// of the first name pushed, which later names link to.
    names: std::collections::HashMap<(u64, u64), String>,
}

/// Why a push cannot be built.
#[derive(Debug, Error)]
pub enum ScanError {
    /// A path could not be read.
    #[error("cannot read {path}: {error}{}", crate::sys::io_fix(error))]
    Io {
        /// The path.
        path: PathBuf,
        /// The error (in the message, with what to do about it).
        error: io::Error,
    },
    /// A path has no usable final name (e.g. `/` or `..`).
    #[error("cannot push {0}: give a path that ends in a file or directory name")]
    NoName(PathBuf),
    /// Two paths would land under the same name.
    #[error("two paths would both land as {0:?}: push them from different commands or rename one")]
    Duplicate(String),
    /// A name is not UTF-8.
    #[error("cannot push {0}: its name is not valid UTF-8")]
    NotUtf8(PathBuf),
    /// A file kept changing while it was hashed.
    #[error(
        "{0} changed while it was being hashed (twice): push it when it is no longer being written"
    )]
    Changing(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ScanError + '_ {
    move |error| ScanError::Io {
        path: path.to_path_buf(),
        error,
    }
}

fn entry(path: String, kind: EntryKind, md: &fs::Metadata, owners: &mut OwnerTable) -> Entry {
    let (secs, nanos) = match md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
    {
        Some(d) => (d.as_secs() as i64, d.subsec_nanos()),
        None => (md.mtime(), 0),
    };
    Entry {
        path,
        kind,
        mode: md.permissions().mode() & 0o7777,
        mtime_secs: secs,
        mtime_nanos: nanos,
        owner: owners.number(md.uid(), md.gid()),
    }
}

/// Hashes a file, returning its BLAKE3 hash, the hashes of its blocks of
/// `block_bytes` (none for a file of one block), and its length.
pub fn hash_file(path: &Path, block_bytes: u64) -> io::Result<(crate::hash::Hashes, u64)> {
    let len = fs::metadata(path)?.len();
    let hashed = crate::hash::hash_files(&[path], &[len], block_bytes, 1);
    let hashes = hashed.into_iter().next().expect("one result per file")?;
    Ok((hashes, len))
}

/// Walks `paths` and hashes every file, and each block of `block_bytes` of
/// the files of more than one block (the push's block size).
pub fn scan(paths: &[PathBuf], block_bytes: u64) -> Result<Source, ScanError> {
    scan_cached(
        paths,
        block_bytes,
        &mut HashCache::disabled(),
        &Exclude::none(),
    )
}

/// [`scan`], taking the hashes of a file unchanged since it was last hashed
/// from `cache` (and remembering the others there), and leaving out what
/// `exclude` matches.
pub fn scan_cached(
    paths: &[PathBuf],
    block_bytes: u64,
    cache: &mut HashCache,
    exclude: &Exclude,
) -> Result<Source, ScanError> {
    let mut src = Source::default();
    let mut pending = Vec::new();
    let mut top = std::collections::HashSet::new();
    for p in paths {
        let abs = fs::canonicalize(p).map_err(io_err(p))?;
        let name = abs
            .file_name()
            .ok_or_else(|| ScanError::NoName(p.clone()))?
            .to_str()
            .ok_or_else(|| ScanError::NotUtf8(p.clone()))?
            .to_string();
        if !top.insert(name.clone()) {
            return Err(ScanError::Duplicate(name));
        }
        let walk = Walk {
            cache: &mut *cache,
            block_bytes,
            exclude,
        };
        add(&mut src, walk, &mut pending, &abs, name)?;
    }
    hash_pending(&mut src, (cache, block_bytes), pending)?;
    cache.save();
    src.manifest.owners = std::mem::take(&mut src.owners).into_owners();
    Ok(src)
}

/// A file found by the walk whose hash is not known yet.
struct Pending {
    /// Its entry in the manifest.
    entry: usize,
    /// Its object (`src.files[object]`, `src.seen[object]`).
    object: usize,
    path: PathBuf,
    md: fs::Metadata,
}

/// Hashes the files the walk left pending, in parallel, and checks that
/// none changed meanwhile (hashing one that did once more, alone).
fn hash_pending(
    src: &mut Source,
    (cache, block_bytes): (&mut HashCache, u64),
    pending: Vec<Pending>,
) -> Result<(), ScanError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let paths: Vec<&Path> = pending.iter().map(|p| p.path.as_path()).collect();
    let lens: Vec<u64> = pending.iter().map(|p| p.md.len()).collect();
    let hashes = crate::hash::hash_files(&paths, &lens, block_bytes, threads);
    for (p, hashed) in pending.into_iter().zip(hashes) {
        let after = fs::symlink_metadata(&p.path).map_err(io_err(&p.path))?;
        let (hash, size, md) =
            if FileId::of(&after) == FileId::of(&p.md) && after.len() == p.md.len() {
                (hashed.map_err(io_err(&p.path))?, p.md.len(), p.md)
            } else {
                // It changed while it was hashed: once more, alone, and it
                // must hold still this time.
                let (h, size) = hash_file(&p.path, block_bytes).map_err(io_err(&p.path))?;
                let again = fs::symlink_metadata(&p.path).map_err(io_err(&p.path))?;
                if FileId::of(&again) != FileId::of(&after) || size != after.len() {
                    return Err(ScanError::Changing(p.path));
                }
                (h, size, after)
            };
        let (hash, blocks) = hash;
        cache.remember_blocks(
            &p.path.to_string_lossy(),
            &md,
            (hash, blocks.clone()),
            block_bytes,
        );
        let e = &mut src.manifest.entries[p.entry];
        *e = entry(
            std::mem::take(&mut e.path),
            EntryKind::File { size, hash, blocks },
            &md,
            &mut src.owners,
        );
        src.seen[p.object] = FileId::of(&md);
    }
    Ok(())
}

/// What the walk reads with.
struct Walk<'a> {
    cache: &'a mut HashCache,
    block_bytes: u64,
    exclude: &'a Exclude,
}

fn add(
    src: &mut Source,
    walk: Walk<'_>,
    pending: &mut Vec<Pending>,
    path: &Path,
    rel: String,
) -> Result<(), ScanError> {
    let Walk {
        cache,
        block_bytes,
        exclude,
    } = walk;
    let md = fs::symlink_metadata(path).map_err(io_err(path))?;
    let ft = md.file_type();
    if exclude.excludes(&rel, ft.is_dir()) {
        src.excluded += 1;
    } else if ft.is_symlink() {
        // Pushed as a link, its target as written (it may point anywhere:
        // the receiver never follows it).
        let target = fs::read_link(path).map_err(io_err(path))?;
        match target.to_str() {
            Some(t) if mdp_proto::manifest::check_target(t).is_ok() => {
                let kind = EntryKind::Symlink {
                    target: t.to_string(),
                };
                src.manifest
                    .entries
                    .push(entry(rel, kind, &md, &mut src.owners));
            }
            _ => src
                .skipped
                .push((path.to_path_buf(), "a link whose target is not UTF-8 text")),
        }
    } else if ft.is_file() && md.nlink() > 1 && src.names.contains_key(&(md.dev(), md.ino())) {
        // Another name of a file this push carries already: a hard link
        // to it, no second copy of the data.
        let target = src.names[&(md.dev(), md.ino())].clone();
        let kind = EntryKind::HardLink { target };
        src.manifest
            .entries
            .push(entry(rel, kind, &md, &mut src.owners));
    } else if ft.is_file() {
        if md.nlink() > 1 {
            src.names.insert((md.dev(), md.ino()), rel.clone());
        }
        let size = md.len();
        // The hashes, if the cache vouches for them; else hashed after the
        // walk.
        let hashes = cache.hashes_of(&path.to_string_lossy(), &md, block_bytes);
        if hashes.is_none() {
            pending.push(Pending {
                entry: src.manifest.entries.len(),
                object: src.files.len(),
                path: path.to_path_buf(),
                md: md.clone(),
            });
        }
        let (hash, blocks) = hashes.unwrap_or_default();
        src.manifest.entries.push(entry(
            rel,
            EntryKind::File { size, hash, blocks },
            &md,
            &mut src.owners,
        ));
        src.files.push(path.to_path_buf());
        src.seen.push(FileId::of(&md));
    } else if ft.is_dir() {
        src.manifest
            .entries
            .push(entry(rel.clone(), EntryKind::Dir, &md, &mut src.owners));
        let mut children: Vec<_> = fs::read_dir(path)
            .map_err(io_err(path))?
            .collect::<Result<_, _>>()
            .map_err(io_err(path))?;
        children.sort_by_key(|e| e.file_name());
        for child in children {
            let cp = child.path();
            let Some(name) = child.file_name().to_str().map(str::to_string) else {
                src.skipped.push((cp, "name is not UTF-8"));
                continue;
            };
            let walk = Walk {
                cache: &mut *cache,
                block_bytes,
                exclude,
            };
            add(src, walk, pending, &cp, format!("{rel}/{name}"))?;
        }
    } else {
        src.skipped
            .push((path.to_path_buf(), "not a regular file or directory"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn names_entries_like_scp_r_and_keeps_links_as_links() {
        let d = crate::test_dir("names");
        fs::create_dir_all(d.join("site/sub/empty")).unwrap();
        fs::write(d.join("site/b.txt"), b"bee").unwrap();
        fs::write(d.join("site/sub/a.txt"), b"a").unwrap();
        fs::write(d.join("single.bin"), b"").unwrap();
        symlink("/etc/passwd", d.join("site/link")).unwrap();
        fs::set_permissions(d.join("site/b.txt"), fs::Permissions::from_mode(0o640)).unwrap();

        let src = scan(&[d.join("site"), d.join("single.bin")], 1 << 20).unwrap();
        let paths: Vec<_> = src
            .manifest
            .entries
            .iter()
            .map(|e| e.path.as_str())
            .collect();
        assert_eq!(
            paths,
            [
                "site",
                "site/b.txt",
                "site/link",
                "site/sub",
                "site/sub/a.txt",
                "site/sub/empty",
                "single.bin"
            ]
        );
        src.manifest.validate().unwrap();
        // Files become objects in manifest order, with their local paths.
        assert_eq!(
            src.files,
            [
                d.join("site/b.txt"),
                d.join("site/sub/a.txt"),
                d.join("single.bin")
            ]
        );
        let b = &src.manifest.entries[1];
        assert_eq!(b.mode, 0o640);
        assert_eq!(
            src.manifest.entries[2].kind,
            EntryKind::Symlink {
                target: "/etc/passwd".into()
            }
        );
        assert_eq!(
            b.kind,
            EntryKind::File {
                size: 3,
                hash: *blake3::hash(b"bee").as_bytes(),
                blocks: Vec::new(),
            }
        );
        assert!(src.skipped.is_empty(), "{:?}", src.skipped);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_file_that_changed_after_the_walk_is_hashed_again() {
        let d = crate::test_dir("changed");
        fs::create_dir_all(&d).unwrap();
        let f = d.join("grow.txt");
        fs::write(&f, b"one").unwrap();
        let mut src = Source::default();
        let mut cache = HashCache::disabled();
        let mut pending = Vec::new();
        let walk = Walk {
            cache: &mut cache,
            block_bytes: 4,
            exclude: &Exclude::none(),
        };
        add(&mut src, walk, &mut pending, &f, "grow.txt".into()).unwrap();
        // Written between the walk and the hash: its size moved.
        fs::write(&f, b"one two").unwrap();
        hash_pending(&mut src, (&mut cache, 4), pending).unwrap();
        assert_eq!(
            src.manifest.entries[0].kind,
            EntryKind::File {
                size: 7,
                hash: *blake3::hash(b"one two").as_bytes(),
                // Two blocks of 4 bytes.
                blocks: vec![
                    *blake3::hash(b"one ").as_bytes(),
                    *blake3::hash(b"two").as_bytes()
                ],
            }
        );
        assert!(src.seen[0] == FileId::of(&fs::symlink_metadata(&f).unwrap()));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn two_paths_with_the_same_name_are_refused() {
        let d = crate::test_dir("dup");
        fs::create_dir_all(d.join("x/data")).unwrap();
        fs::create_dir_all(d.join("y/data")).unwrap();
        let err = scan(&[d.join("x/data"), d.join("y/data")], 1 << 20).unwrap_err();
        assert!(
            matches!(err, ScanError::Duplicate(ref n) if n == "data"),
            "{err}"
        );
        assert!(matches!(
            scan(&[PathBuf::from("/")], 1 << 20),
            Err(ScanError::NoName(_))
        ));
        fs::remove_dir_all(&d).unwrap();
    }
}

//! Path safety: paths come from the network. The manifest decoder already
//! refused absolute paths and `.`/`..` components; here every directory on
//! the way down is created or checked one component at a time.
//!
//! **Invariant:** nothing is written outside the cache directory: a
//! component that is a symbolic link or not a directory stops the write,
//! and nothing is written into the store's own [`TMP_DIR`].

use super::TMP_DIR;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// A write refused by the path rules.
pub(super) fn refuse(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, msg)
}

/// Creates (or checks) each directory of `components` below `root`, one at
/// a time, refusing symbolic links and non-directories.
pub(super) fn safe_dirs<'a>(
    root: &Path,
    components: impl Iterator<Item = &'a str>,
) -> io::Result<PathBuf> {
    let mut p = root.to_path_buf();
    for c in components {
        p.push(c);
        match fs::symlink_metadata(&p) {
            Ok(md) if md.file_type().is_symlink() => {
                return Err(refuse(format!(
                    "refusing to follow symbolic link {}",
                    p.display()
                )))
            }
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                return Err(refuse(format!(
                    "{} exists and is not a directory",
                    p.display()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
    Ok(p)
}

/// The final path of `path` when every directory on the way is a real
/// directory (no symbolic link) and the file itself is a regular file.
pub(super) fn existing_file(root: &Path, path: &str) -> Option<(PathBuf, fs::Metadata)> {
    let mut p = root.to_path_buf();
    let mut comps = path.split('/').peekable();
    while let Some(c) = comps.next() {
        p.push(c);
        let md = fs::symlink_metadata(&p).ok()?;
        if comps.peek().is_some() {
            if !md.is_dir() {
                return None;
            }
        } else if md.is_file() {
            return Some((p, md));
        }
    }
    None
}

/// The path of directory `path` below `root` when it and every directory
/// on the way are real directories (no symbolic link).
pub(super) fn existing_dir(root: &Path, path: &str) -> Option<(PathBuf, fs::Metadata)> {
    let mut p = root.to_path_buf();
    let mut md = None;
    for c in path.split('/') {
        p.push(c);
        let m = fs::symlink_metadata(&p).ok()?;
        if !m.is_dir() {
            return None;
        }
        md = Some(m);
    }
    md.map(|m| (p, m))
}

/// True for a manifest path inside the store's own [`TMP_DIR`].
pub(super) fn is_own_dir(path: &str) -> bool {
    path == TMP_DIR || path.starts_with(&format!("{TMP_DIR}/"))
}

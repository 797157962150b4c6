//! Path safety: paths come from the network, and the cache directory may be
//! shared with local users who can write inside pushed directories. The
//! manifest decoder already refused absolute paths and `.`/`..`
//! components; here every operation below the cache directory goes through
//! [`Beneath`], a handle on that directory: each path is walked one
//! component at a time from an open descriptor, each directory opened with
//! `O_DIRECTORY | O_NOFOLLOW`, and the change itself (create, rename,
//! remove, mode, times) is made relative to the descriptor of the directory
//! it changes, or on the descriptor of the file.
//!
//! **Invariant:** nothing the store does below the cache directory follows
//! a symbolic link at any component, nor resolves a path from the root of
//! the file system: a local user who swaps a directory for a link between
//! two steps makes the next step fail (`ELOOP`/`ENOTDIR`), or it acts on
//! the directory already opened, never outside the cache directory. Nothing
//! is written into the store's own [`TMP_DIR`] by a manifest path, and
//! that directory belongs to the receiver's user and is writable by it
//! alone ([`own_private_dir`]).

use super::TMP_DIR;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// A write refused by the path rules.
pub(super) fn refuse(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, msg)
}

/// Flags of every directory opened below the cache directory.
fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// The cache directory, held open.
#[derive(Debug)]
pub(super) struct Beneath {
    fd: OwnedFd,
    path: PathBuf,
}

impl Beneath {
    /// Opens the directory `path` (canonical).
    pub(super) fn open(path: &Path) -> io::Result<Beneath> {
        let fd = rfs::open(path, dir_flags(), Mode::empty())?;
        Ok(Beneath {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Its path, for messages and for what callers name by path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The directory `rel` below it (`/`-separated; empty: the directory
    /// itself), each component opened without following links; missing
    /// ones are created (mode 0755 less the umask) when `create`.
    pub(super) fn dir(&self, rel: &str, create: bool) -> io::Result<OwnedFd> {
        let mut cur = rfs::openat(&self.fd, ".", dir_flags(), Mode::empty())?;
        let mut shown = self.path.clone();
        for c in rel.split('/').filter(|c| !c.is_empty()) {
            check_component(c)?;
            shown.push(c);
            cur = open_dir_at(cur.as_fd(), c, create, &shown)?;
        }
        Ok(cur)
    }

    /// The parent directory of `rel` (see [`Beneath::dir`]) and its last
    /// component.
    pub(super) fn parent<'a>(&self, rel: &'a str, create: bool) -> io::Result<(OwnedFd, &'a str)> {
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        check_component(name)?;
        Ok((self.dir(dir, create)?, name))
    }
}

/// The regular file `name` in the directory `dir` (from [`Beneath::dir`]),
/// opened for reading without following a link, with its metadata; `None`
/// when it is not there or not a regular file.
pub(super) fn file_at(dir: &OwnedFd, name: &str) -> Option<(File, fs::Metadata)> {
    check_component(name).ok()?;
    let st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return None;
    }
    // NONBLOCK: had it become a FIFO meanwhile, opening does not hang.
    let fd = rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .ok()?;
    let file = File::from(fd);
    let md = file.metadata().ok()?;
    md.is_file().then_some((file, md))
}

/// Checks that the temporary directory belongs to this process's user and
/// that nobody else may enter it (taking every group and other bit away if
/// any was given): what it holds is trusted once checked, and another user
/// who could write there could change a file between its check and its
/// placement; one who could read there would learn every pushed path,
/// size and hash (the index), even of files a mode mask keeps from them.
pub(super) fn own_private_dir(fd: &OwnedFd, shown: &Path) -> io::Result<()> {
    let st = rfs::fstat(fd)?;
    let me = crate::sys::euid();
    if st.st_uid != me {
        return Err(refuse(format!(
            "{} belongs to uid {}, not to this user (uid {me}): remove it, or run mdp-recv as its owner",
            shown.display(),
            st.st_uid
        )));
    }
    let mode = st.st_mode & 0o7777;
    if mode & 0o077 != 0 {
        rfs::fchmod(fd, Mode::from_raw_mode(mode & !0o077))?;
    }
    Ok(())
}

/// Refuses a component that could leave the directory or name it again.
fn check_component(c: &str) -> io::Result<()> {
    if c.is_empty() || c == "." || c == ".." || c.contains('/') || c.contains('\0') {
        return Err(refuse(format!("refusing the path component {c:?}")));
    }
    Ok(())
}

/// Opens directory `name` in `parent` without following a link, creating
/// it first when missing and `create`.
fn open_dir_at(
    parent: BorrowedFd<'_>,
    name: &str,
    create: bool,
    shown: &Path,
) -> io::Result<OwnedFd> {
    match rfs::openat(parent, name, dir_flags(), Mode::empty()) {
        Ok(fd) => return Ok(fd),
        Err(rustix::io::Errno::NOENT) if create => {}
        Err(e) => return Err(explain(e, shown)),
    }
    match rfs::mkdirat(parent, name, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    rfs::openat(parent, name, dir_flags(), Mode::empty()).map_err(|e| explain(e, shown))
}

/// The error of opening `shown` as a directory, in words.
fn explain(e: rustix::io::Errno, shown: &Path) -> io::Error {
    match e {
        rustix::io::Errno::LOOP => refuse(format!(
            "refusing to follow symbolic link {}",
            shown.display()
        )),
        rustix::io::Errno::NOTDIR => {
            refuse(format!("{} exists and is not a directory", shown.display()))
        }
        e => e.into(),
    }
}

/// True for a manifest path inside the store's own [`TMP_DIR`].
pub(super) fn is_own_dir(path: &str) -> bool {
    path == TMP_DIR || path.starts_with(&format!("{TMP_DIR}/"))
}

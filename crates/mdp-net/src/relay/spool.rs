//! The relay's spool: every block the relay verified, kept on its disk for
//! its own sender, which reads a block as soon as it is here (cut-through)
//! and again for any repair, however slow the network behind the relay.
//!
//! One file in the cache directory's temporary area, unlinked as soon as
//! it is created (nothing is left behind by a crash or a kill), holding
//! each file of the push at its own offset (sparse: only blocks received
//! take room). Its memory is one flag per block.
//!
//! **Invariant:** a read returns only bytes of a block put here, and put
//! only after it matched the manifest's hash for it; a read of a block not
//! here yet waits for it, and ends with an error once the spool is closed.

use mdp_proto::{EntryKind, Manifest, ObjectId};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// A file with no name in `tmp`, readable by its owner only: an
/// `O_TMPFILE` where the file system has them, else a new name (never an
/// existing file or link) removed at once. `tmp` is opened without
/// following a link, and the file made through that handle, so a local
/// user who swaps the directory for a link sends it nowhere else.
fn unnamed_file(tmp: &Path) -> io::Result<File> {
    use rustix::fs::{self as rfs, Mode, OFlags};
    let dir = rfs::open(
        tmp,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mode = Mode::RUSR | Mode::WUSR;
    match rfs::openat(
        &dir,
        ".",
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        mode,
    ) {
        Ok(fd) => return Ok(File::from(fd)),
        Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::ISDIR => {}
        Err(e) => return Err(e.into()),
    }
    let name = format!("relay-{:016x}.spool", crate::random_u64());
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::RDWR | OFlags::CLOEXEC;
    let fd = rfs::openat(&dir, &name, flags, mode)?;
    rfs::unlinkat(&dir, &name, rfs::AtFlags::empty())?;
    Ok(File::from(fd))
}

/// A relay's blocks of one push.
#[derive(Debug)]
pub struct Spool {
    file: File,
    /// Where each file object starts in the spool (index 0 unused).
    base: Vec<u64>,
    /// Bytes per full block.
    block_bytes: u64,
    state: Mutex<State>,
    arrived: Condvar,
}

#[derive(Debug)]
struct State {
    /// Per file object, per block: held.
    held: Vec<Vec<bool>>,
    /// Why the spool takes and gives no more (`None`: open).
    closed: Option<String>,
}

impl Spool {
    /// An empty spool for `manifest`'s files, in `tmp` (the cache
    /// directory's temporary area).
    pub fn create(tmp: &Path, manifest: &Manifest, block_bytes: u64) -> io::Result<Spool> {
        let block_bytes = block_bytes.max(1);
        let mut base = vec![0u64];
        let mut held = vec![Vec::new()];
        let mut end = 0u64;
        for (_, e) in manifest.files() {
            if let EntryKind::File { size, .. } = e.kind {
                base.push(end);
                held.push(vec![false; size.div_ceil(block_bytes) as usize]);
                end = end.saturating_add(size);
            }
        }
        let file = unnamed_file(tmp)?;
        Ok(Spool {
            file,
            base,
            block_bytes,
            state: Mutex::new(State { held, closed: None }),
            arrived: Condvar::new(),
        })
    }

    /// Keeps the block of `object` at `offset`, already checked against the
    /// manifest's hash. An error closes the spool (its readers fail).
    pub fn put(&self, object: ObjectId, offset: u64, data: &[u8]) {
        let Some(&base) = self.base.get(object.0 as usize) else {
            return;
        };
        let block = (offset / self.block_bytes) as usize;
        let written = self.file.write_all_at(data, base + offset);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match written {
            Ok(()) => {
                if let Some(h) = st
                    .held
                    .get_mut(object.0 as usize)
                    .and_then(|b| b.get_mut(block))
                {
                    *h = true;
                }
            }
            Err(e) => {
                st.closed
                    .get_or_insert(format!("the relay's spool could not be written: {e}"));
            }
        }
        drop(st);
        self.arrived.notify_all();
    }

    /// The `len` bytes of `object` at `offset` (one block), if the relay
    /// holds them; `None` while it does not (and the spool is open).
    pub fn try_read(
        &self,
        object: ObjectId,
        offset: u64,
        len: usize,
    ) -> Option<io::Result<Vec<u8>>> {
        let Some(&base) = self.base.get(object.0 as usize) else {
            return Some(Err(io::Error::other("no such file in the relayed push")));
        };
        let block = (offset / self.block_bytes) as usize;
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let held = st
            .held
            .get(object.0 as usize)
            .and_then(|b| b.get(block))
            .copied()
            .unwrap_or(false);
        if !held {
            return st
                .closed
                .as_ref()
                .map(|why| Err(io::Error::other(why.clone())));
        }
        drop(st);
        let mut buf = vec![0u8; len];
        Some(
            self.file
                .read_exact_at(&mut buf, base + offset)
                .map(|()| buf),
        )
    }

    /// Waits until a block arrives or the spool closes, at most `timeout`.
    pub fn wait(&self, timeout: Duration) {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.closed.is_none() {
            let _ = self.arrived.wait_timeout(st, timeout);
        }
    }

    /// Takes and gives no more: readers waiting for a block fail with
    /// `why`.
    pub fn close(&self, why: &str) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.closed.get_or_insert_with(|| why.to_string());
        drop(st);
        self.arrived.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdp_proto::Entry;
    use std::sync::Arc;

    fn file(path: &str, size: u64) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::File {
                size,
                hash: [0; 32],
                blocks: Vec::new(),
            },
            mode: 0o644,
            mtime_secs: 0,
            mtime_nanos: 0,
            owner: 0,
        }
    }

    #[test]
    fn a_block_is_read_once_put_and_none_is_after_the_spool_closed() {
        let dir = crate::test_dir("spool");
        let m = Manifest::new(vec![file("a", 10), file("b", 25)]);
        let spool = Arc::new(Spool::create(&dir, &m, 8).unwrap());
        // Nothing is left in the directory.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        assert!(spool.try_read(ObjectId(2), 16, 8).is_none());
        let waiter = {
            let s = spool.clone();
            std::thread::spawn(move || s.wait(Duration::from_millis(200)))
        };
        spool.put(ObjectId(2), 16, b"abcdefgh");
        waiter.join().unwrap();
        assert_eq!(
            spool.try_read(ObjectId(2), 16, 8).unwrap().unwrap(),
            b"abcdefgh"
        );
        spool.put(ObjectId(1), 8, b"xy");
        assert_eq!(spool.try_read(ObjectId(1), 8, 2).unwrap().unwrap(), b"xy");
        spool.close("the push ended");
        let err = spool.try_read(ObjectId(2), 0, 8).unwrap().unwrap_err();
        assert!(err.to_string().contains("the push ended"), "{err}");
        // What was put is still read.
        assert!(spool.try_read(ObjectId(1), 8, 2).unwrap().is_ok());
    }
}

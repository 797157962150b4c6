//! The receiver's cache directory.
//!
//! Each file of a session is written to `DIR/.mdp-tmp/<hash>-<block bytes>.part`
//! (sparse, block by block, created on its first block; at most 64 are open
//! at once, whatever the number of files). When the session ends before the
//! file is complete, the file stays, synced, with `<…>.blocks` beside it (a
//! bitmap of the blocks written), so that the next push of the same content
//! resumes ([`Store::begin`] returns the blocks held); they are removed
//! after [`Store::set_keep_partial`]'s age. When all its blocks are in, the file is hashed;
//! only a match gives it its mode and mtime and renames it to its final name
//! under `DIR`. Since the temporary directory is inside `DIR`, the rename is
//! atomic: a partial or corrupt file is never visible under its final name.
//!
//! Files already in place byte for byte are found before a push starts
//! ([`Store::present`]) and not received again. To avoid hashing them on
//! every push, the store keeps an index (`DIR/.mdp-tmp/index`) of the files
//! it placed or checked: path, size, inode, mtime and ctime, and BLAKE3 hash.
//! A file whose size, inode, mtime and ctime are unchanged keeps its hash
//! (the quick check of rsync, made stricter by ctime, which any write or
//! `touch` moves); any other file of the right size is hashed again.
//!
//! Paths come from the network. The manifest decoder already refused
//! absolute paths and `.`/`..` components; here every directory on the way
//! down is created or checked one component at a time, and a component that
//! is a symbolic link or not a directory stops the write, so nothing lands
//! outside `DIR`. Set-user-id, set-group-id and sticky bits are never applied.

use crate::stamp::HashCache;
use mdp_proto::wire::FailReason;
use mdp_proto::{Entry, EntryKind, Manifest, ObjectId, SessionId};
use std::collections::HashMap;
use std::fs::{self, File, FileTimes};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// Name of the temporary directory inside the cache directory.
pub const TMP_DIR: &str = ".mdp-tmp";

/// Blocks of a file kept from an interrupted push: the file object and
/// ascending `(first block, count)` ranges.
pub type HeldBlocks = (ObjectId, Vec<(u32, u32)>);

/// How long the blocks of an interrupted push are kept by default.
pub const DEFAULT_KEEP_PARTIAL: Duration = Duration::from_secs(24 * 3600);

/// Lowercase hexadecimal.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The set bits of `bits` below `n` as ascending `(first, count)` ranges.
fn bit_ranges(bits: &[u64], n: u32) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for b in 0..n {
        if bits[(b / 64) as usize] & (1 << (b % 64)) != 0 {
            match out.last_mut() {
                Some((f, c)) if *f + *c == b => *c += 1,
                _ => out.push((b, 1)),
            }
        }
    }
    out
}

/// Name of the index of checked files, inside [`TMP_DIR`].
const INDEX_FILE: &str = "index";

/// Most temporary files a store keeps open at once. Files are created on
/// their first write and reopened (never truncated again) when needed, so a
/// push of any number of files stays far below the process's fd limit.
const MAX_OPEN_FILES: usize = 64;

/// A file of the session that is not complete yet. A store holds one per
/// file of the manifest from the start of the session, so it is kept small
/// (about 100 bytes with its map entry): its paths are derived when needed
/// ([`Store::temp_path`]) and its hasher (about 2 KiB) exists only from
/// its first write to its last. A push of 50,000 small files took a
/// receiver to 197 MiB when each held both paths and a hasher.
struct TempFile {
    /// Its entry in the session's manifest.
    entry: usize,
    size: u64,
    /// Named by its content and the block size, with a sidecar that records
    /// `blocks` when the push is interrupted, for a resume; else (a second
    /// file with the same content, an empty file) by session and object.
    by_content: bool,
    created: bool,
    error: Option<io::Error>,
    /// Blocks written (bit per block), kept for resume.
    blocks: Vec<u64>,
    hash: Running,
}

/// Where a [`TempFile`]'s hash stands.
enum Running {
    /// Nothing written yet.
    NotStarted,
    /// Kept as the blocks are written.
    Hashing(Box<RunningHash>),
    /// Given up (or blocks came from an interrupted push): the file is read
    /// back and hashed once complete.
    Off,
}

/// The BLAKE3 hash of a file's first `next` bytes, fed from the blocks as
/// they are written, so that a complete file need not be read back to be
/// checked: the last block's write is followed by the check at once.
/// Blocks written past `next` (they complete out of order under loss) are
/// kept in memory while the store's [`KeptBytes`] allow, else remembered by
/// length and read back from the page cache, and hashed when the gap
/// before them is filled.
#[derive(Debug)]
struct RunningHash {
    hasher: blake3::Hasher,
    next: u64,
    /// Offset → block written beyond `next`.
    ahead: std::collections::BTreeMap<u64, Ahead>,
}

/// A block written ahead of a [`RunningHash`]'s position.
#[derive(Debug)]
enum Ahead {
    /// Its length: read it back from the file.
    Len(usize),
    /// Its bytes.
    Kept(Kept),
}

/// A block's bytes held for a [`RunningHash`], counted in the store's
/// [`KeptBytes`] until dropped (on whatever path that happens).
struct Kept {
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

/// A block handed to [`Store`] for writing: borrowed, or given over to be
/// kept.
enum Bytes<'a> {
    Borrowed(&'a [u8]),
    Kept(Kept),
}

impl Bytes<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Borrowed(d) => d,
            Bytes::Kept(k) => (*k.data).as_ref(),
        }
    }
}

/// Bytes of blocks the store's running hashes hold in memory.
#[derive(Clone, Debug, Default)]
struct KeptBytes(Arc<std::sync::atomic::AtomicUsize>);

impl KeptBytes {
    /// Holds `data` if `limit` leaves room for it; else gives it back.
    fn keep(
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

    fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Most blocks a [`RunningHash`] remembers ahead of its position; beyond
/// that the file is hashed once complete instead.
const MAX_AHEAD: usize = 4096;

/// Bytes a [`RunningHash`] reads back at a time (its buffer's size).
const READ_BACK_CHUNK: usize = 1 << 20;

/// Default of [`Store::set_keep_limit`].
const DEFAULT_KEEP_LIMIT: usize = 8 << 20;

impl RunningHash {
    fn new() -> RunningHash {
        RunningHash {
            hasher: blake3::Hasher::new(),
            next: 0,
            ahead: std::collections::BTreeMap::new(),
        }
    }

    /// Takes in a block just written at `offset`; `file` holds it and the
    /// blocks before. `false`: the hash cannot be kept (give it up).
    fn wrote(&mut self, file: &File, offset: u64, block: Bytes<'_>, scratch: &mut Vec<u8>) -> bool {
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

/// The open handle of `object`'s temporary file, creating the file (sparse,
/// at its final size) on first use and closing another handle when
/// [`MAX_OPEN_FILES`] are open.
fn open_handle<'a>(
    handles: &'a mut HashMap<ObjectId, File>,
    t: &mut TempFile,
    path: impl FnOnce() -> PathBuf,
    object: ObjectId,
) -> io::Result<&'a File> {
    if !handles.contains_key(&object) {
        if handles.len() >= MAX_OPEN_FILES {
            // Any one will do: it is reopened when its next block comes.
            if let Some(&victim) = handles.keys().next() {
                handles.remove(&victim);
            }
        }
        let mut options = fs::OpenOptions::new();
        options.read(true).write(true);
        let path = path();
        let file = if t.created {
            options.open(&path)?
        } else {
            let file = options.create(true).truncate(true).open(&path)?;
            t.created = true;
            file.set_len(t.size)?;
            file
        };
        handles.insert(object, file);
    }
    Ok(&handles[&object])
}

/// A cache directory that receives the files of one session at a time.
pub struct Store {
    root: PathBuf,
    tmp: PathBuf,
    session: Option<SessionId>,
    manifest: Arc<Manifest>,
    files: HashMap<ObjectId, TempFile>,
    handles: HashMap<ObjectId, File>,
    /// Path → stamp of files placed or checked (see the module docs).
    index: HashCache,
    /// Bytes per full block of the current session (block numbers of
    /// writes are `offset / block_bytes`).
    block_bytes: u64,
    /// How long interrupted files are kept for resume (zero: not kept).
    keep_partial: Duration,
    /// Read-back buffer of [`RunningHash`] ([`READ_BACK_CHUNK`] at most).
    scratch: Vec<u8>,
    /// Bytes of out-of-order blocks the running hashes hold, and the most
    /// they may.
    kept: KeptBytes,
    keep_limit: usize,
    /// [`Store::settle`] ran for this session.
    settled: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

fn refuse(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, msg)
}

/// Creates (or checks) each directory of `components` below `root`, one at
/// a time, refusing symbolic links and non-directories.
fn safe_dirs<'a>(root: &Path, components: impl Iterator<Item = &'a str>) -> io::Result<PathBuf> {
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

fn mtime(secs: i64, nanos: u32) -> Option<std::time::SystemTime> {
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(secs as u64, nanos.min(999_999_999)))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }
}

/// The name stem of a resumable temporary file: its content and the block
/// size (`{stem}.part`, and `{stem}.blocks` for its sidecar).
fn content_stem(hash: &[u8; 32], block_bytes: u64) -> String {
    format!("{}-{block_bytes}", hex(hash))
}

/// Where the temporary file of `object` (manifest entry `entry`) lives.
fn temp_path(
    tmp: &Path,
    manifest: &Manifest,
    session: Option<SessionId>,
    block_bytes: u64,
    object: ObjectId,
    entry: usize,
    by_content: bool,
) -> PathBuf {
    match manifest.entries.get(entry).map(|e| &e.kind) {
        Some(EntryKind::File { hash, .. }) if by_content => {
            tmp.join(format!("{}.part", content_stem(hash, block_bytes)))
        }
        _ => match session {
            Some(s) => tmp.join(format!("{s}-{}.part", object.0)),
            None => tmp.join(format!("none-{}.part", object.0)),
        },
    }
}

impl Store {
    /// Where `t`'s temporary file lives.
    fn temp_path(&self, object: ObjectId, t: &TempFile) -> PathBuf {
        temp_path(
            &self.tmp,
            &self.manifest,
            self.session,
            self.block_bytes,
            object,
            t.entry,
            t.by_content,
        )
    }

    /// Opens (creating if needed) the cache directory `root`.
    pub fn open(root: &Path) -> io::Result<Store> {
        fs::create_dir_all(root)?;
        let root = fs::canonicalize(root)?;
        let tmp = safe_dirs(&root, std::iter::once(TMP_DIR))?;
        // A missing or unreadable index only costs hashing again. The files
        // it describes were written by this store: no settling time needed.
        let index = HashCache::load(tmp.join(INDEX_FILE), Duration::ZERO);
        Ok(Store {
            root,
            tmp,
            session: None,
            manifest: Arc::new(Manifest::default()),
            files: HashMap::new(),
            handles: HashMap::new(),
            index,
            block_bytes: 0,
            keep_partial: DEFAULT_KEEP_PARTIAL,
            scratch: Vec::new(),
            kept: KeptBytes::default(),
            keep_limit: DEFAULT_KEEP_LIMIT,
            settled: false,
        })
    }

    /// The most bytes of blocks written out of order that the store holds
    /// in memory to hash them once the gap before them is written (default
    /// 8 MiB; beyond it they are read back from the page cache). The
    /// receiver gives a quarter of its block budget: held blocks still
    /// count in it, and must leave room for the blocks that close the gaps.
    pub fn set_keep_limit(&mut self, bytes: usize) {
        self.keep_limit = bytes;
    }

    /// How long the blocks of an interrupted push are kept for a resume
    /// (zero: removed at once); removes what is older now.
    pub fn set_keep_partial(&mut self, keep: Duration) {
        self.keep_partial = keep;
        self.remove_stale_partials();
    }

    /// Removes temporary files older than `keep_partial`, and temporary
    /// files without a sidecar (left by a receiver that was killed: what
    /// they hold is not known).
    fn remove_stale_partials(&self) {
        let Ok(entries) = fs::read_dir(&self.tmp) else {
            return;
        };
        let now = std::time::SystemTime::now();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let (stem, is_part) = if let Some(stem) = name.strip_suffix(".part") {
                (stem.to_string(), true)
            } else if let Some(stem) = name.strip_suffix(".blocks") {
                (stem.to_string(), false)
            } else {
                continue;
            };
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_none_or(|age| age >= self.keep_partial);
            let orphan = if is_part {
                !self.tmp.join(format!("{stem}.blocks")).exists()
            } else {
                !self.tmp.join(format!("{stem}.part")).exists()
            };
            if old || orphan {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    /// The cache directory (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Bytes the cache directory's file system has free for this user.
    pub fn free_bytes(&self) -> Option<u64> {
        crate::sys::free_bytes(&self.root)
    }

    /// Bytes the session still has to write: the files not `present`,
    /// less the blocks kept from an interrupted push.
    pub fn bytes_needed(&self, present: &[ObjectId], held: &[HeldBlocks]) -> u64 {
        let held_bytes: u64 = held
            .iter()
            .flat_map(|(_, r)| r.iter().map(|(_, c)| *c as u64))
            .sum::<u64>()
            * self.block_bytes;
        let needed: u64 = self
            .files
            .iter()
            .filter(|(o, _)| !present.contains(o))
            .map(|(_, t)| t.size)
            .sum();
        needed.saturating_sub(held_bytes)
    }

    /// The final path of `path` when every directory on the way is a real
    /// directory (no symbolic link) and the file itself is a regular file.
    fn existing_file(&self, path: &str) -> Option<(PathBuf, fs::Metadata)> {
        let mut p = self.root.clone();
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

    /// The files of `manifest` that are already in place byte for byte:
    /// a regular file at the same path with the same BLAKE3 hash (taken from
    /// the index when the file is unchanged since it was last hashed). Their
    /// mode and mtime are set as the manifest says, as a push would.
    pub fn present(&mut self, manifest: &Manifest) -> Vec<ObjectId> {
        let mut out = Vec::new();
        for (id, e) in manifest.files() {
            let EntryKind::File { size, hash } = e.kind else {
                continue;
            };
            if e.path == TMP_DIR || e.path.starts_with(&format!("{TMP_DIR}/")) {
                continue;
            }
            let Some((p, md)) = self.existing_file(&e.path) else {
                continue;
            };
            if md.len() != size {
                continue;
            }
            let known = self.index.hash_of(&e.path, &md);
            let got = match known {
                Some(h) => h,
                None => match File::open(&p).and_then(|f| hash_open(&f)) {
                    Ok(h) => h,
                    Err(_) => continue,
                },
            };
            if got != hash {
                continue;
            }
            // Same content: make mode and mtime what a push would give.
            use std::os::unix::fs::MetadataExt;
            if md.mode() & 0o7777 != e.mode & 0o777 {
                let _ = fs::set_permissions(&p, fs::Permissions::from_mode(e.mode & 0o777));
            }
            if let Some(t) = mtime(e.mtime_secs, e.mtime_nanos) {
                if md.modified().ok() != Some(t) {
                    if let Ok(f) = File::options().write(true).open(&p) {
                        let _ = f.set_times(FileTimes::new().set_modified(t));
                    }
                }
            }
            if let Ok(md) = fs::symlink_metadata(&p) {
                self.index.remember(&e.path, &md, hash);
            }
            out.push(id);
        }
        self.index.save();
        out
    }

    /// Records a file [`Written::verify_and_place`] placed, so that the next
    /// push finds it without hashing it again.
    pub fn placed(&mut self, path: &str, hash: [u8; 32]) {
        if let Some((_, md)) = self.existing_file(path) {
            self.index.remember(path, &md, hash);
        }
    }

    /// Prepares a session: creates its directories; temporary files are
    /// created as their blocks arrive. `block_bytes` is the session's
    /// bytes per full block. Returns, per file, the blocks an interrupted
    /// earlier push of the same content (same hash, same block size) left
    /// in the temporary area: they are kept and need not be received again.
    pub fn begin(
        &mut self,
        session: SessionId,
        manifest: Arc<Manifest>,
        block_bytes: u64,
    ) -> io::Result<Vec<HeldBlocks>> {
        self.abort();
        self.settled = false;
        self.remove_stale_partials();
        self.block_bytes = block_bytes;
        for e in &manifest.entries {
            if e.path == TMP_DIR || e.path.starts_with(&format!("{TMP_DIR}/")) {
                return Err(refuse(format!(
                    "refusing to write into {TMP_DIR}, mdp's own directory"
                )));
            }
        }
        self.session = Some(session);
        self.manifest = manifest.clone();
        for e in &manifest.entries {
            if e.kind == EntryKind::Dir {
                safe_dirs(&self.root, e.path.split('/'))?;
            }
        }
        let mut object = 0u32;
        let mut resumed = Vec::new();
        let mut stems = std::collections::HashSet::new();
        // Interrupted pushes' sidecars, listed once: a push of many files
        // looks only for the few it may resume.
        let sidecars: std::collections::HashSet<String> = fs::read_dir(&self.tmp)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".blocks").map(str::to_string)
            })
            .collect();
        for (i, e) in manifest.entries.iter().enumerate() {
            let EntryKind::File { size, hash } = e.kind else {
                continue;
            };
            object += 1;
            let nblocks = if block_bytes == 0 {
                0
            } else {
                size.div_ceil(block_bytes)
            };
            let words = nblocks.div_ceil(64) as usize;
            // Named by content, so that a later push of the same file finds
            // it; a second file with the same content in this push gets a
            // name of its own (and no resume).
            let stem = content_stem(&hash, block_bytes);
            let mut t = TempFile {
                entry: i,
                size,
                by_content: true,
                created: false,
                error: None,
                blocks: vec![0; words],
                hash: Running::NotStarted,
            };
            if block_bytes == 0 || size == 0 || !stems.insert(hash) {
                t.by_content = false;
            } else if sidecars.contains(&stem) {
                if let Some(blocks) = self.load_partial(&stem, size, words) {
                    // Blocks from the earlier push are not written again:
                    // the file is hashed once complete.
                    t.created = true;
                    t.blocks = blocks;
                    t.hash = Running::Off;
                    resumed.push((ObjectId(object), bit_ranges(&t.blocks, nblocks as u32)));
                }
            }
            self.files.insert(ObjectId(object), t);
        }
        Ok(resumed)
    }

    /// The block bitmap of an interrupted push of the content named `stem`
    /// (`size` bytes), if its temporary file and sidecar are there and agree.
    fn load_partial(&self, stem: &str, size: u64, words: usize) -> Option<Vec<u64>> {
        let sidecar = self.tmp.join(format!("{stem}.blocks"));
        let md = fs::symlink_metadata(self.tmp.join(format!("{stem}.part"))).ok()?;
        if !md.is_file() || md.len() != size {
            return None;
        }
        let blocks: Vec<u64> = postcard::from_bytes(&fs::read(&sidecar).ok()?).ok()?;
        // The sidecar is consumed: it is written again if this push is
        // interrupted too.
        let _ = fs::remove_file(&sidecar);
        (blocks.len() == words && blocks.iter().any(|w| *w != 0)).then_some(blocks)
    }

    /// Writes a block of a file. An error is kept and reported when the file
    /// completes.
    pub fn write(&mut self, object: ObjectId, offset: u64, data: &[u8]) {
        self.write_inner(object, offset, Bytes::Borrowed(data));
    }

    /// [`Store::write`], handing over the block: if it comes ahead of the
    /// file's hash position, the store may hold it in memory to hash it
    /// later instead of reading it back (see [`Store::set_keep_limit`]).
    pub fn write_block<B: AsRef<[u8]> + Send + 'static>(
        &mut self,
        object: ObjectId,
        offset: u64,
        block: B,
    ) {
        let ahead = self.files.get(&object).is_some_and(|t| match &t.hash {
            Running::NotStarted => offset > 0,
            Running::Hashing(r) => offset > r.next,
            Running::Off => false,
        });
        if !ahead {
            return self.write_inner(object, offset, Bytes::Borrowed(block.as_ref()));
        }
        match self.kept.keep(Box::new(block), self.keep_limit) {
            Ok(kept) => self.write_inner(object, offset, Bytes::Kept(kept)),
            Err(block) => self.write_inner(object, offset, Bytes::Borrowed((*block).as_ref())),
        }
    }

    fn write_inner(&mut self, object: ObjectId, offset: u64, block: Bytes<'_>) {
        let Some(t) = self.files.get_mut(&object) else {
            return;
        };
        if t.error.is_some() {
            return;
        }
        let (tmp, manifest, session, bb) =
            (&self.tmp, &self.manifest, self.session, self.block_bytes);
        let (entry, by_content) = (t.entry, t.by_content);
        let path = || temp_path(tmp, manifest, session, bb, object, entry, by_content);
        let file = match open_handle(&mut self.handles, t, path, object) {
            Ok(f) => f,
            Err(e) => {
                t.error = Some(e);
                return;
            }
        };
        if let Err(e) = file.write_all_at(block.as_slice(), offset) {
            t.error = Some(e);
            return;
        }
        if let Some(b) = offset.checked_div(self.block_bytes) {
            let b = b as usize;
            if let Some(w) = t.blocks.get_mut(b / 64) {
                *w |= 1 << (b % 64);
            }
        }
        if matches!(t.hash, Running::NotStarted) {
            t.hash = Running::Hashing(Box::new(RunningHash::new()));
        }
        if let Running::Hashing(running) = &mut t.hash {
            if !running.wrote(file, offset, block, &mut self.scratch) {
                t.hash = Running::Off;
            }
        }
    }

    /// Marks `object` as failed (a block could not be rebuilt): it will not
    /// be placed.
    pub fn fail(&mut self, object: ObjectId, error: io::Error) {
        if let Some(t) = self.files.get_mut(&object) {
            t.error.get_or_insert(error);
        }
    }

    /// All blocks of `object` are written: takes it out of the store, to be
    /// checked and placed with [`Written::verify_and_place`] (on another
    /// thread if need be, so that hashing a large file does not hold up the
    /// writes of the next ones).
    pub fn written(&mut self, object: ObjectId) -> Result<Written, (FailReason, String)> {
        let Some(mut t) = self.files.remove(&object) else {
            return Err((FailReason::Io, format!("object {} is unknown", object.0)));
        };
        let entry = self.manifest.entries[t.entry].clone();
        let temp = self.temp_path(object, &t);
        // An empty file has had no write: this creates it. The handle is
        // closed here: finished files may wait for the verifier, and must
        // not hold descriptors while they do.
        if let Err(e) = open_handle(&mut self.handles, &mut t, || temp.clone(), object) {
            let _ = fs::remove_file(&temp);
            return Err((FailReason::Io, format!("{}: {e}", entry.path)));
        }
        self.handles.remove(&object);
        let hashed = match t.hash {
            Running::Hashing(r) if r.next == t.size => Some(*r.hasher.finalize().as_bytes()),
            // Nothing written: the empty file's hash.
            Running::NotStarted if t.size == 0 => Some(*blake3::hash(&[]).as_bytes()),
            _ => None,
        };
        Ok(Written {
            entry,
            root: self.root.clone(),
            temp,
            error: t.error,
            hashed,
        })
    }

    /// [`Store::written`] then [`Written::verify_and_place`].
    pub fn complete(&mut self, object: ObjectId) -> Result<PathBuf, (FailReason, String)> {
        self.written(object)?.verify_and_place()
    }

    /// `--delete`: removes, below each top-level directory of the
    /// manifest, every entry the manifest does not list (like rsync's
    /// `--delete`): extra files, symbolic links and whole directories.
    /// Symbolic links are removed, never followed. Returns the paths
    /// removed, relative to the cache directory. Call it only after a
    /// complete push.
    pub fn prune(&mut self) -> Vec<String> {
        let manifest = self.manifest.clone();
        let listed: HashMap<&str, bool> = manifest
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.kind == EntryKind::Dir))
            .collect();
        let mut removed = Vec::new();
        for e in &manifest.entries {
            if e.kind == EntryKind::Dir && !e.path.contains('/') {
                self.prune_dir(&listed, &e.path, &mut removed);
            }
        }
        removed
    }

    fn prune_dir(&self, listed: &HashMap<&str, bool>, rel: &str, removed: &mut Vec<String>) {
        let Ok(dir) = safe_dirs(&self.root, rel.split('/')) else {
            return;
        };
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue; // not UTF-8: never pushed by mdp, left alone
            };
            let child = format!("{rel}/{name}");
            let Ok(ft) = entry.file_type() else { continue };
            match listed.get(child.as_str()) {
                Some(true) if ft.is_dir() => self.prune_dir(listed, &child, removed),
                Some(_) => {}
                None => {
                    let gone = if ft.is_dir() {
                        // remove_dir_all does not follow symbolic links.
                        fs::remove_dir_all(entry.path())
                    } else {
                        fs::remove_file(entry.path())
                    };
                    if gone.is_ok() {
                        removed.push(child);
                    }
                }
            }
        }
    }

    /// Makes the tree final once every file is placed or failed for good
    /// (the receiver's `Settle`, before it confirms): with `prune`, the
    /// `--delete` removal ([`Store::prune`], whose list it returns); then
    /// the directories' modes and mtimes. [`Store::finish`] does not do it
    /// again.
    pub fn settle(&mut self, prune: bool) -> Vec<String> {
        let removed = if prune { self.prune() } else { Vec::new() };
        self.settle_dirs();
        self.settled = true;
        removed
    }

    /// Ends the session: makes the tree final if [`Store::settle`] did not
    /// (an incomplete push still gets its directories' modes and mtimes)
    /// and removes what is left of the temporary files.
    pub fn finish(&mut self) {
        if !self.settled {
            self.settle_dirs();
        }
        self.settled = false;
        self.abort();
    }

    /// Saves the hash index, and applies the directories' modes and mtimes
    /// deepest first (a child's change would move its parent's mtime).
    fn settle_dirs(&mut self) {
        self.index.save();
        let mut dirs: Vec<_> = self
            .manifest
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::Dir)
            .collect();
        dirs.sort_by_key(|e| std::cmp::Reverse(e.path.matches('/').count()));
        for e in dirs {
            let Ok(p) = safe_dirs(&self.root, e.path.split('/')) else {
                continue;
            };
            let _ = fs::set_permissions(&p, fs::Permissions::from_mode(e.mode & 0o777));
            if let (Some(t), Ok(d)) = (mtime(e.mtime_secs, e.mtime_nanos), File::open(&p)) {
                let _ = d.set_times(FileTimes::new().set_modified(t));
            }
        }
    }

    /// Ends the session's unfinished files: with `keep_partial`, a file
    /// with written blocks is kept for a resume (its data synced to disk
    /// first, then its block bitmap written beside it); others are removed.
    fn abort(&mut self) {
        let files = std::mem::take(&mut self.files);
        for (object, t) in files {
            if !t.created {
                continue;
            }
            let temp = self.temp_path(object, &t);
            let keep = !self.keep_partial.is_zero()
                && t.error.is_none()
                && t.blocks.iter().any(|w| *w != 0)
                && t.by_content;
            let kept = keep
                && self
                    .handles
                    .get(&object)
                    .map_or(Ok(()), |f| f.sync_data())
                    .is_ok()
                && postcard::to_stdvec(&t.blocks).is_ok_and(|bytes| {
                    let sidecar = temp.with_extension("blocks");
                    let tmp = temp.with_extension("blocks.new");
                    fs::write(&tmp, bytes).is_ok() && fs::rename(&tmp, sidecar).is_ok()
                });
            if !kept {
                let _ = fs::remove_file(&temp);
            }
        }
        self.handles.clear();
        self.session = None;
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.abort();
        // Only removes the directory when it is empty.
        let _ = fs::remove_dir(&self.tmp);
    }
}

/// A file of the session whose blocks are all written.
#[derive(Debug)]
pub struct Written {
    temp: PathBuf,
    entry: Entry,
    root: PathBuf,
    error: Option<io::Error>,
    /// The hash of the whole file if it was kept as it was written.
    hashed: Option<[u8; 32]>,
}

impl Written {
    /// The file's path in the manifest and its expected hash.
    pub fn path_and_hash(&self) -> (String, [u8; 32]) {
        let hash = match self.entry.kind {
            EntryKind::File { hash, .. } => hash,
            EntryKind::Dir => [0; 32],
        };
        (self.entry.path.clone(), hash)
    }

    /// Checks the file's hash; only when it matches gives it its mode and
    /// mtime and renames it to its final path. A file that fails is removed.
    pub fn verify_and_place(self) -> Result<PathBuf, (FailReason, String)> {
        let e = &self.entry;
        let fail_io = |err: io::Error| {
            let _ = fs::remove_file(&self.temp);
            (FailReason::Io, format!("{}: {err}", e.path))
        };
        if let Some(err) = self.error {
            return Err(fail_io(err));
        }
        let EntryKind::File { hash, .. } = e.kind else {
            unreachable!("open files are File entries")
        };
        let file = File::open(&self.temp).map_err(fail_io)?;
        let got = match self.hashed {
            Some(h) => h,
            None => hash_open(&file).map_err(fail_io)?,
        };
        if got != hash {
            let _ = fs::remove_file(&self.temp);
            return Err((
                FailReason::HashMismatch,
                format!("{}: content does not match its BLAKE3 hash", e.path),
            ));
        }
        fs::set_permissions(&self.temp, fs::Permissions::from_mode(e.mode & 0o777))
            .map_err(fail_io)?;
        if let Some(t) = mtime(e.mtime_secs, e.mtime_nanos) {
            file.set_times(FileTimes::new().set_modified(t))
                .map_err(fail_io)?;
        }
        let mut comps: Vec<&str> = e.path.split('/').collect();
        let name = comps.pop().expect("paths have at least one component");
        let parent = safe_dirs(&self.root, comps.into_iter()).map_err(fail_io)?;
        let dest = parent.join(name);
        if let Ok(md) = fs::symlink_metadata(&dest) {
            if md.is_dir() {
                return Err(fail_io(refuse(format!(
                    "{} is a directory",
                    dest.display()
                ))));
            }
        }
        fs::rename(&self.temp, &dest).map_err(fail_io)?;
        Ok(dest)
    }
}

fn hash_open(file: &File) -> io::Result<[u8; 32]> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn file_entry(path: &str, data: &[u8]) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::File {
                size: data.len() as u64,
                hash: *blake3::hash(data).as_bytes(),
            },
            mode: 0o4755,
            mtime_secs: 1_600_000_000,
            mtime_nanos: 5,
        }
    }

    #[test]
    fn a_file_appears_only_after_its_hash_matched() {
        let root = crate::test_dir("place");
        let mut store = Store::open(&root).unwrap();
        let m = Arc::new(Manifest {
            entries: vec![
                file_entry("d/x.bin", b"hello world"),
                file_entry("y", b"abc"),
            ],
        });
        store.begin(SessionId(1), m, 4096).unwrap();
        store.write(ObjectId(1), 0, b"hello ");
        assert!(!root.join("d/x.bin").exists());
        store.write(ObjectId(1), 6, b"world");
        let placed = store.complete(ObjectId(1)).unwrap();
        assert_eq!(fs::read(&placed).unwrap(), b"hello world");
        let md = fs::metadata(&placed).unwrap();
        assert_eq!(
            md.permissions().mode() & 0o7777,
            0o755,
            "setuid bit dropped"
        );
        // A corrupt file is never placed.
        store.write(ObjectId(2), 0, b"abd");
        assert_eq!(
            store.complete(ObjectId(2)).unwrap_err().0,
            FailReason::HashMismatch
        );
        assert!(!root.join("y").exists());
        store.finish();
        assert_eq!(fs::read_dir(root.join(TMP_DIR)).unwrap().count(), 0);
        fs::remove_dir_all(&root).unwrap();
    }

    /// A store in a fresh test directory, with a session of `entries`
    /// begun in blocks of `block_bytes`.
    fn store_with(name: &str, entries: Vec<Entry>, block_bytes: u64) -> (PathBuf, Store) {
        let root = crate::test_dir(name);
        let mut store = Store::open(&root).unwrap();
        let m = Arc::new(Manifest { entries });
        store.begin(SessionId(4), m, block_bytes).unwrap();
        (root, store)
    }

    #[test]
    fn the_hash_is_kept_as_blocks_are_written_in_any_order() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let blocks = data.len() as u64 / 1000;
        let entries = vec![file_entry("a", &data), file_entry("b", &data[..5000])];
        let (root, mut store) = store_with("running", entries, 1000);
        // a: blocks 3, 1, 0, 2, then the rest in order; the gap is read
        // back once it closes, and no read-back is needed at the end.
        for b in [3, 1, 0, 2].into_iter().chain(4..blocks) {
            let at = (b * 1000) as usize;
            store.write(ObjectId(1), b * 1000, &data[at..at + 1000]);
        }
        let a = store.written(ObjectId(1)).unwrap();
        assert_eq!(a.hashed, Some(*blake3::hash(&data).as_bytes()));
        assert_eq!(fs::read(a.verify_and_place().unwrap()).unwrap(), data);
        // b: a block that differs from what was announced fails the check
        // whichever way the hash was made.
        let mut bad = data[..5000].to_vec();
        bad[4321] ^= 1;
        for b in (0..5).rev() {
            store.write(ObjectId(2), b * 1000, &bad[b as usize * 1000..][..1000]);
        }
        let b = store.written(ObjectId(2)).unwrap();
        assert!(b.hashed.is_some());
        assert_eq!(
            b.verify_and_place().unwrap_err().0,
            FailReason::HashMismatch
        );
        store.finish();
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn blocks_handed_over_ahead_of_the_hash_are_kept_within_the_limit() {
        let data: Vec<u8> = (0..8_000u32).map(|i| (i * 13 % 251) as u8).collect();
        let entries = vec![file_entry("a", &data), file_entry("b", &data)];
        let (root, mut store) = store_with("kept", entries, 1000);
        // Room for two blocks: of a's blocks 7, 5, 6 ahead of the gap at 0,
        // 7 and 5 are kept and 6 is read back.
        store.set_keep_limit(2000);
        let block = |b: usize| data[b * 1000..(b + 1) * 1000].to_vec();
        for b in [7, 5, 6] {
            store.write_block(ObjectId(1), b as u64 * 1000, block(b));
        }
        assert_eq!(store.kept.get(), 2000);
        for b in 0..5 {
            store.write_block(ObjectId(1), b as u64 * 1000, block(b));
        }
        assert_eq!(store.kept.get(), 0, "hashed and let go");
        assert_eq!(store.scratch.len(), 1000, "only block 6 was read back");
        let a = store.written(ObjectId(1)).unwrap();
        assert_eq!(a.hashed, Some(*blake3::hash(&data).as_bytes()));
        assert!(a.verify_and_place().is_ok());
        // b: blocks kept, then the hash is given up (a block written twice):
        // the kept blocks are let go, and the file is read back instead.
        store.write_block(ObjectId(2), 3000, block(3));
        assert_eq!(store.kept.get(), 1000);
        store.write_block(ObjectId(2), 0, block(0));
        store.write_block(ObjectId(2), 0, block(0));
        assert_eq!(store.kept.get(), 0);
        for b in (1..8).filter(|&b| b != 3) {
            store.write_block(ObjectId(2), b as u64 * 1000, block(b));
        }
        let b = store.written(ObjectId(2)).unwrap();
        assert_eq!(b.hashed, None);
        assert!(b.verify_and_place().is_ok());
        store.finish();
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_block_larger_than_the_read_back_buffer_is_read_back_in_pieces() {
        let block = READ_BACK_CHUNK + READ_BACK_CHUNK / 2;
        let data: Vec<u8> = (0..2 * block as u32).map(|i| (i % 241) as u8).collect();
        let (root, mut store) = store_with("pieces", vec![file_entry("big", &data)], block as u64);
        store.write(ObjectId(1), block as u64, &data[block..]);
        store.write(ObjectId(1), 0, &data[..block]);
        assert!(store.scratch.len() <= READ_BACK_CHUNK);
        let w = store.written(ObjectId(1)).unwrap();
        assert_eq!(w.hashed, Some(*blake3::hash(&data).as_bytes()));
        assert!(w.verify_and_place().is_ok());
        store.finish();
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn too_many_blocks_out_of_order_fall_back_to_reading_the_file_back() {
        let data: Vec<u8> = (0..MAX_AHEAD as u32 + 2).map(|i| i as u8).collect();
        // One-byte blocks, written last to first.
        let (root, mut store) = store_with("fallback", vec![file_entry("c", &data)], 1);
        for (i, byte) in data.iter().enumerate().rev() {
            store.write(ObjectId(1), i as u64, &[*byte]);
        }
        let c = store.written(ObjectId(1)).unwrap();
        assert_eq!(c.hashed, None, "gave up keeping the hash");
        assert_eq!(fs::read(c.verify_and_place().unwrap()).unwrap(), data);
        store.finish();
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn many_files_written_in_interleaved_blocks_stay_within_the_open_file_limit() {
        let root = crate::test_dir("many");
        let mut store = Store::open(&root).unwrap();
        let n = 3 * MAX_OPEN_FILES;
        let data: Vec<Vec<u8>> = (0..n)
            .map(|i| format!("{i:04}-block-one|block-two").into_bytes())
            .collect();
        let m = Arc::new(Manifest {
            entries: (0..n)
                .map(|i| file_entry(&format!("f{i}"), &data[i]))
                .collect(),
        });
        let fds = || fs::read_dir("/proc/self/fd").unwrap().count();
        let before = fds();
        store.begin(SessionId(3), m, 4096).unwrap();
        // First halves of every file, then second halves: each handle is
        // closed and reopened along the way.
        for (i, d) in data.iter().enumerate() {
            store.write(ObjectId(i as u32 + 1), 0, &d[..15]);
        }
        assert!(store.handles.len() <= MAX_OPEN_FILES);
        // Other tests run in this process too: allow some slack.
        assert!(fds() <= before + MAX_OPEN_FILES + 16, "{} fds open", fds());
        for (i, d) in data.iter().enumerate() {
            store.write(ObjectId(i as u32 + 1), 15, &d[15..]);
        }
        for (i, d) in data.iter().enumerate() {
            let placed = store.complete(ObjectId(i as u32 + 1)).unwrap();
            assert_eq!(&fs::read(placed).unwrap(), d);
        }
        store.finish();
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_session_of_many_files_holds_a_hasher_only_for_those_being_written() {
        let data: Vec<Vec<u8>> = (0..1000)
            .map(|i| format!("file {i}").into_bytes())
            .collect();
        let mut entries: Vec<Entry> = data
            .iter()
            .enumerate()
            .map(|(i, d)| file_entry(&format!("d/f{i}"), d))
            .collect();
        entries.push(file_entry("empty", b""));
        let (root, mut store) = store_with("lazy", entries, 4096);
        // What every file of the manifest costs from the start: no paths,
        // no hasher (a blake3::Hasher alone is about 2 KiB).
        assert!(
            size_of::<TempFile>() <= 80,
            "{} bytes",
            size_of::<TempFile>()
        );
        let hashing = |s: &Store| {
            s.files
                .values()
                .filter(|t| matches!(t.hash, Running::Hashing(_)))
                .count()
        };
        assert_eq!(hashing(&store), 0);
        store.write(ObjectId(7), 0, &data[6][..3]);
        assert_eq!(hashing(&store), 1);
        store.write(ObjectId(7), 3, &data[6][3..]);
        let placed = store.complete(ObjectId(7)).unwrap();
        assert_eq!(fs::read(placed).unwrap(), data[6]);
        assert_eq!(hashing(&store), 0);
        // An empty file, never written, is created and checked.
        let placed = store.complete(ObjectId(1001)).unwrap();
        assert_eq!(fs::read(placed).unwrap(), b"");
        store.finish();
        assert_eq!(fs::read_dir(root.join(TMP_DIR)).unwrap().count(), 0);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_symbolic_link_in_the_way_stops_the_write() {
        let root = crate::test_dir("symlink");
        let outside = crate::test_dir("symlink-outside");
        std::os::unix::fs::symlink(&outside, root.join("d")).unwrap();
        let mut store = Store::open(&root).unwrap();
        let m = Arc::new(Manifest {
            entries: vec![file_entry("d/evil", b"x")],
        });
        store.begin(SessionId(2), m, 4096).unwrap();
        store.write(ObjectId(1), 0, b"x");
        assert_eq!(store.complete(ObjectId(1)).unwrap_err().0, FailReason::Io);
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
        fs::remove_dir_all(&root).unwrap();
        fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn an_interrupted_file_keeps_its_blocks_for_the_next_push_of_the_same_content() {
        let root = crate::test_dir("resume");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let m = Arc::new(Manifest {
            entries: vec![file_entry("f", &data)],
        });
        let block = 4096u64;
        {
            let mut store = Store::open(&root).unwrap();
            assert!(store
                .begin(SessionId(1), m.clone(), block)
                .unwrap()
                .is_empty());
            // Blocks 0 and 2 of 3 arrive, then the push is interrupted.
            store.write(ObjectId(1), 0, &data[..4096]);
            store.write(ObjectId(1), 8192, &data[8192..]);
            store.finish();
        }
        let mut store = Store::open(&root).unwrap();
        let held = store.begin(SessionId(2), m.clone(), block).unwrap();
        assert_eq!(held, vec![(ObjectId(1), vec![(0, 1), (2, 1)])]);
        store.write(ObjectId(1), 4096, &data[4096..8192]);
        let placed = store.complete(ObjectId(1)).unwrap();
        assert_eq!(fs::read(placed).unwrap(), data);
        store.finish();
        // Another block size: nothing to resume from.
        let mut store = Store::open(&root).unwrap();
        assert!(store
            .begin(SessionId(3), m.clone(), 8192)
            .unwrap()
            .is_empty());
        store.write(ObjectId(1), 0, &data[..8192]);
        store.finish();
        // With --keep-partial 0, interrupted files are removed.
        store.set_keep_partial(Duration::ZERO);
        let parts = fs::read_dir(root.join(TMP_DIR))
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name();
                let n = n.to_string_lossy();
                n.ends_with(".part") || n.ends_with(".blocks")
            })
            .count();
        assert_eq!(parts, 0);
        fs::remove_dir_all(&root).unwrap();
    }
}

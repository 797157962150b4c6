//! The receiver's cache directory.
//!
//! - `mod.rs` (here): the [`Store`] itself: a session's temporary files,
//!   their block writes, the open-file limit, files already in place, and
//!   settling the tree.
//! - `blocks`: the content checks: each block against the manifest's hash
//!   for it before it is written or counted again.
//! - `delta`: a file whose path holds an older version starts from the
//!   blocks of that version that are also blocks of the new one.
//! - `resume`: the records of blocks written, kept for a resume.
//! - `prune`: `--delete`.
//! - `safe_path`: `Beneath`, the handle every operation below the directory
//!   goes through, so that none leaves it.
//! - `written`: a complete file's hash check and atomic placement.
//!
//! Each file of a session is written to `DIR/.mdp-tmp/<hash>-<block bytes>.part`
//! (sparse, block by block, created on its first block; at most 64 are open
//! at once, whatever the number of files). When the session ends before the
//! file is complete, the file stays, synced, with `<…>.blocks` beside it (a
//! bitmap of the blocks written), so that the next push of the same content
//! resumes ([`Store::begin`] returns the blocks held); they are removed
//! after [`Store::set_keep_partial`]'s age. Every block is checked against
//! the manifest's hash for it before it is written (or, kept from an
//! interrupted push, before it counts again), so a file whose blocks are all
//! in is the file the manifest describes; only then is it given its mode
//! and mtime and renamed to its final name under `DIR`. Since the temporary directory is inside `DIR`, the rename is
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
//! absolute paths and `.`/`..` components; here every operation below
//! `DIR` goes through descriptors walked down from a handle on it, one
//! component at a time, refusing symbolic links (`safe_path`), so nothing
//! lands outside `DIR` even when a local user races the store.
//! Set-user-id, set-group-id and sticky bits are never applied.

mod blocks;
mod delta;
mod links;
mod ownership;
mod prune;
mod resume;
mod safe_path;
mod versions;
mod written;

pub use resume::{HeldBlocks, DEFAULT_KEEP_PARTIAL};
pub use versions::{DEFAULT_KEEP_VERSIONS, VERSIONS_DIR};
pub use written::{KnownContent, Placed, Verified, Written};

use crate::stamp::HashCache;
use blocks::{all_blocks_match, block_matches, hash_open, recheck};
use mdp_proto::wire::FailReason;
use mdp_proto::{EntryKind, Manifest, ObjectId, SessionId};
use resume::{content_stem, BlockMap, Checkpoints};
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use safe_path::{file_at, is_own_dir, own_private_dir, refuse, Beneath};
use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, FileTimes};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// Name of the temporary directory inside the cache directory.
pub const TMP_DIR: &str = ".mdp-tmp";

/// Name of the index of checked files, inside [`TMP_DIR`].
const INDEX_FILE: &str = "index";

/// Most temporary files a store keeps open at once. Files are created on
/// their first write and reopened (never truncated again) when needed, so a
/// push of any number of files stays far below the process's fd limit.
const MAX_OPEN_FILES: usize = 64;

/// A durable store asks the kernel to start writing a file out each time
/// this many bytes were written, so that the flush before the file is
/// placed waits for the last few MiB only, not for the whole file.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// Default of [`Store::set_mode_mask`]: nothing world-writable.
pub const DEFAULT_MODE_MASK: u32 = 0o002;

/// A file of the session that is not complete yet. A store holds one per
/// file of the manifest from the start of the session, so it is kept small
/// (about 100 bytes with its map entry): its paths are derived when needed
/// ([`Store::temp_path`]).
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
    /// Blocks written, each checked against its hash first (blocks.rs);
    /// kept for resume.
    blocks: BlockMap,
}

/// A rebuilt block did not match the manifest's hash for it (or was not a
/// whole block): it was not written, and must be received again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockRejected {
    /// Its block number (the offset it was written at, in blocks).
    pub block: u32,
}

/// The open handle of `object`'s temporary file `name` in the temporary
/// directory `tmp`, creating the file (sparse, at its final size, private
/// to this user, exclusively: never through a link) on first use and
/// closing another handle when [`MAX_OPEN_FILES`] are open.
fn open_handle<'a>(
    handles: &'a mut HashMap<ObjectId, File>,
    t: &mut TempFile,
    tmp: &OwnedFd,
    name: impl FnOnce() -> String,
    object: ObjectId,
) -> io::Result<&'a File> {
    if !handles.contains_key(&object) {
        if handles.len() >= MAX_OPEN_FILES {
            // Any one will do: it is reopened when its next block comes.
            if let Some(&victim) = handles.keys().next() {
                handles.remove(&victim);
            }
        }
        let name = name();
        let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let file = if t.created {
            File::from(rfs::openat(tmp, &name, flags, Mode::empty())?)
        } else {
            // A file of that name left by an earlier run goes first.
            let _ = rfs::unlinkat(tmp, &name, AtFlags::empty());
            let fd = rfs::openat(
                tmp,
                &name,
                flags | OFlags::CREATE | OFlags::EXCL,
                Mode::from_raw_mode(0o600),
            )?;
            t.created = true;
            let file = File::from(fd);
            file.set_len(t.size)?;
            file
        };
        handles.insert(object, file);
    }
    Ok(&handles[&object])
}

/// Flushes the data of `object`'s temporary file `name` in `tmp`, through
/// its open handle or, if it was closed meanwhile, a new one.
fn sync_data(
    handles: &HashMap<ObjectId, File>,
    object: ObjectId,
    tmp: &OwnedFd,
    name: &str,
) -> io::Result<()> {
    match handles.get(&object) {
        Some(f) => f.sync_data(),
        None => {
            let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            File::from(rfs::openat(tmp, name, flags, Mode::empty())?).sync_data()
        }
    }
}

/// A cache directory that receives the files of one session at a time.
pub struct Store {
    root: PathBuf,
    tmp: PathBuf,
    /// The cache directory and its temporary directory, held open: every
    /// operation below them goes through these (safe_path.rs).
    beneath: Arc<Beneath>,
    tmp_fd: Arc<OwnedFd>,
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
    /// [`Store::settle`] ran for this session.
    settled: bool,
    /// Files are flushed before they are placed, and directories when the
    /// tree settles ([`Store::set_durable`]).
    durable: bool,
    /// Permission bits never given to what the store places
    /// ([`Store::set_mode_mask`]).
    mode_mask: u32,
    /// The group placed files and directories get ([`Store::set_group`]).
    group: Option<u32>,
    /// Give placed entries the owners the manifest records
    /// ([`Store::set_keep_owners`]).
    keep_owners: bool,
    /// The atomic switch of the current push, if it is one (versions.rs).
    switch: Option<versions::Switch>,
    /// Why the last [`Store::settle`] could not make the tree final (a
    /// flush failed, a switch could not be made).
    settle_problem: Option<String>,
    /// Versions of each atomically pushed directory kept
    /// ([`Store::set_keep_versions`]).
    keep_versions: usize,
    /// The next push is signed: only then may its owners be applied
    /// ([`Store::set_push_signed`]).
    push_signed: bool,
    /// The current manifest's owners as this host's `(uid, gid)`, when
    /// they are kept.
    owner_ids: Vec<(Option<u32>, Option<u32>)>,
    /// Directories (relative) that files were placed in since the tree was
    /// last settled, to be flushed then.
    touched_dirs: BTreeSet<String>,
    /// Bytes written since the disk was last asked to start writing them
    /// out (durable only; see [`WRITEBACK_EVERY`]).
    since_writeback: u64,
    /// The resume records' checkpoints during the session (resume.rs).
    checkpoints: Checkpoints,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// A manifest mtime as a time stamp; `None` when it cannot be one.
fn mtime(secs: i64, nanos: u32) -> Option<std::time::SystemTime> {
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(secs as u64, nanos.min(999_999_999)))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }
}

/// The name of the temporary file of `object` (manifest entry `entry`) in
/// the temporary directory.
fn temp_name(
    manifest: &Manifest,
    session: Option<SessionId>,
    block_bytes: u64,
    object: ObjectId,
    entry: usize,
    by_content: bool,
) -> String {
    match manifest.entries.get(entry).map(|e| &e.kind) {
        Some(EntryKind::File { hash, .. }) if by_content => {
            format!("{}.part", content_stem(hash, block_bytes))
        }
        _ => match session {
            Some(s) => format!("{s}-{}.part", object.0),
            None => format!("none-{}.part", object.0),
        },
    }
}

impl Store {
    /// The name of `t`'s temporary file in the temporary directory.
    fn temp_name(&self, object: ObjectId, t: &TempFile) -> String {
        temp_name(
            &self.manifest,
            self.session,
            self.block_bytes,
            object,
            t.entry,
            t.by_content,
        )
    }

    /// Where `t`'s temporary file lives (for its resume record).
    fn temp_path(&self, object: ObjectId, t: &TempFile) -> PathBuf {
        self.tmp.join(self.temp_name(object, t))
    }

    /// Opens (creating if needed) the cache directory `root`.
    pub fn open(root: &Path) -> io::Result<Store> {
        fs::create_dir_all(root)?;
        let root = fs::canonicalize(root)?;
        let beneath = Beneath::open(&root)?;
        let tmp_fd = beneath.dir(TMP_DIR, true)?;
        own_private_dir(&tmp_fd, &root.join(TMP_DIR))?;
        // A directory an atomic switch exchanged away just before a crash:
        // superseded, its new version is current.
        for (name, _) in prune::entries(std::os::fd::AsFd::as_fd(&tmp_fd)) {
            if name.starts_with(versions::SWITCH_TEMP) {
                prune::remove_tree(std::os::fd::AsFd::as_fd(&tmp_fd), &name, 0);
            }
        }
        let tmp = root.join(TMP_DIR);
        // A missing or unreadable index only costs hashing again. The files
        // it describes were written by this store: no settling time needed.
        let index = HashCache::load(tmp.join(INDEX_FILE), Duration::ZERO);
        Ok(Store {
            root,
            tmp,
            beneath: Arc::new(beneath),
            tmp_fd: Arc::new(tmp_fd),
            session: None,
            manifest: Arc::new(Manifest::default()),
            files: HashMap::new(),
            handles: HashMap::new(),
            index,
            block_bytes: 0,
            keep_partial: DEFAULT_KEEP_PARTIAL,
            settled: false,
            durable: true,
            mode_mask: DEFAULT_MODE_MASK,
            group: None,
            keep_owners: false,
            switch: None,
            settle_problem: None,
            keep_versions: DEFAULT_KEEP_VERSIONS,
            push_signed: false,
            owner_ids: Vec::new(),
            touched_dirs: BTreeSet::new(),
            since_writeback: 0,
            checkpoints: Checkpoints::default(),
        })
    }

    /// How long the blocks of an interrupted push are kept for a resume
    /// (zero: removed at once); removes what is older now.
    pub fn set_keep_partial(&mut self, keep: Duration) {
        self.keep_partial = keep;
        resume::remove_stale(&self.tmp, self.keep_partial);
    }

    /// Whether placement is durable (the default): each file's data, mode
    /// and mtime are flushed to the disk before it is renamed into place,
    /// and every directory of the push (and the cache directory) after the
    /// tree is settled, so that what the receiver confirms survives a power
    /// cut. Off (`mdp-recv --no-fsync`), a power cut soon after a push can
    /// leave files short or empty under their final names.
    pub fn set_durable(&mut self, durable: bool) {
        self.durable = durable;
    }

    /// Permission bits never given to a placed file or directory, whatever
    /// the manifest says (default `0o002`: nothing world-writable unless the
    /// operator allows it with `mdp-recv --mode-mask 0`). Set-user-id,
    /// set-group-id and sticky bits are never applied in any case.
    pub fn set_mode_mask(&mut self, mask: u32) {
        self.mode_mask = mask & 0o777;
    }

    /// The group every placed file and directory is given (`mdp-recv
    /// --file-group`), so that, say, a web server's group can read them
    /// under a mode mask that keeps others out; `None` leaves the group the
    /// receiver's own.
    pub fn set_group(&mut self, group: Option<u32>) {
        self.group = group;
    }

    /// Why the last [`Store::settle`] could not make the tree final, if it
    /// could not: then the receiver must not confirm the push.
    pub fn take_settle_problem(&mut self) -> Option<String> {
        self.settle_problem.take()
    }

    /// How many versions of each directory an atomic push (`mdp-send
    /// --atomic`) keeps, the current one included (at least 1).
    pub fn set_keep_versions(&mut self, keep: usize) {
        self.keep_versions = keep.max(1);
    }

    /// The mode a manifest's `mode` gets here.
    fn mode(&self, mode: u32) -> u32 {
        mode & 0o777 & !self.mode_mask
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
        // A set: a list searched once per file made a million present
        // files cost minutes.
        let present: std::collections::HashSet<&ObjectId> = present.iter().collect();
        let needed: u64 = self
            .files
            .iter()
            .filter(|(o, _)| !present.contains(o))
            .map(|(_, t)| t.size)
            .sum();
        needed.saturating_sub(held_bytes)
    }

    /// The files of `manifest` that are already in place byte for byte:
    /// a regular file at the same path with the same BLAKE3 hash (taken from
    /// the index when the file is unchanged since it was last hashed). Their
    /// mode and mtime are set as the manifest says, as a push would.
    /// In an atomic push, the files the current version holds as the push
    /// has them count too (linked into the new version).
    pub fn present(&mut self) -> Vec<ObjectId> {
        self.find_present(true)
    }

    /// [`Store::present`] that changes nothing: no mode, group or time set,
    /// nothing recorded or linked (a dry run).
    pub fn present_unchanged(&mut self) -> Vec<ObjectId> {
        self.find_present(false)
    }

    fn find_present(&mut self, touch: bool) -> Vec<ObjectId> {
        let manifest = self.manifest.clone();
        let mut out = self.carry_over(touch);
        out.extend(self.find_in_place(&manifest, touch));
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Files of `manifest` in place at their own paths.
    fn find_in_place(&mut self, manifest: &Manifest, touch: bool) -> Vec<ObjectId> {
        let mut out = Vec::new();
        // The directory of the previous file, held open: a manifest lists
        // a directory's files together, so each is walked to once.
        let mut parent: Option<(String, OwnedFd)> = None;
        // The other names each file has in the push (its hard links): a
        // file in place with exactly those names is still ours.
        let mut names: HashMap<&str, Vec<&str>> = HashMap::new();
        for e in &manifest.entries {
            if let EntryKind::HardLink { target } = &e.kind {
                names.entry(target.as_str()).or_default().push(&e.path);
            }
        }
        for (id, e) in manifest.files() {
            let EntryKind::File { size, hash, .. } = e.kind else {
                continue;
            };
            if is_own_dir(&e.path) {
                continue;
            }
            // Opened without following a link anywhere on its path; mode
            // and mtime are then changed on that descriptor, never by name.
            let (dir, name) = e.path.rsplit_once('/').unwrap_or(("", &e.path));
            if parent.as_ref().map(|(d, _)| d.as_str()) != Some(dir) {
                parent = self
                    .beneath
                    .dir(dir, false)
                    .ok()
                    .map(|fd| (dir.to_string(), fd));
            }
            let Some((_, dir_fd)) = &parent else {
                continue;
            };
            let Some((file, md)) = file_at(dir_fd, name) else {
                continue;
            };
            // Only a file of this store's own, with no names beyond the
            // push's own hard links: the mode, group and time set below
            // must not reach a file a local user linked in from outside
            // the directory (it is placed afresh instead, which breaks the
            // link).
            use std::os::unix::fs::MetadataExt;
            let links = names.get(e.path.as_str()).map_or(&[][..], Vec::as_slice);
            if md.len() != size || md.nlink() != 1 + links.len() as u64 || !self.ours(&md, e) {
                continue;
            }
            // Each of those names is this file (a name of a file from
            // elsewhere would count in `nlink` just the same).
            let is_this = |link: &&str| {
                self.beneath.parent(link, false).is_ok_and(|(d, n)| {
                    rfs::statat(&d, n, AtFlags::SYMLINK_NOFOLLOW)
                        .is_ok_and(|st| (st.st_dev, st.st_ino) == (md.dev(), md.ino()))
                })
            };
            if !links.iter().all(is_this) {
                continue;
            }
            let known = self.index.hash_of(&e.path, &md);
            let same = match (known, &e.kind) {
                (Some(h), _) => h == hash,
                // Block by block, stopping at the first that differs: a
                // changed file costs a read up to its first change, not a
                // read of all of it (its blocks are read again to start
                // it from, delta.rs).
                (None, EntryKind::File { blocks, .. }) if !blocks.is_empty() => {
                    all_blocks_match(&file, e, self.block_bytes)
                }
                (None, _) => hash_open(&file).is_ok_and(|h| h == hash),
            };
            if !same {
                continue;
            }
            if !touch {
                out.push(id);
                continue;
            }
            // Same content: make owner, mode and mtime what a push would
            // give.
            let mode = self.mode(e.mode);
            let owner = self.ownership(e);
            if !owner.holds(&md) {
                let _ = owner.apply(&file);
            }
            if md.mode() & 0o7777 != mode {
                let _ = file.set_permissions(fs::Permissions::from_mode(mode));
            }
            if let Some(t) = mtime(e.mtime_secs, e.mtime_nanos) {
                if md.modified().ok() != Some(t) {
                    let _ = file.set_times(FileTimes::new().set_modified(t));
                }
            }
            if let Ok(md) = file.metadata() {
                if let EntryKind::File { blocks, .. } = &e.kind {
                    let hashes = (hash, blocks.clone());
                    self.index
                        .remember_blocks(&e.path, &md, hashes, self.block_bytes);
                }
            }
            out.push(id);
        }
        self.index.save();
        out
    }

    /// Records a file [`Verified::place`] placed, with the metadata it had
    /// then (`stamp`), so that the next push finds it without hashing it
    /// again while it is unchanged; and its directory, to be flushed when
    /// the tree settles.
    pub fn placed(&mut self, path: &str, hashes: KnownContent, stamp: Option<&fs::Metadata>) {
        if let Some((dir, _)) = path.rsplit_once('/') {
            self.touched_dirs.insert(dir.to_string());
        }
        if let Some(md) = stamp {
            // With its block hashes: the next push of a changed version
            // finds the blocks it shares without reading them (delta.rs).
            self.index
                .remember_blocks(path, md, (hashes.hash, hashes.blocks), hashes.block_bytes);
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
        self.touched_dirs.clear();
        resume::remove_stale(&self.tmp, self.keep_partial);
        self.block_bytes = block_bytes;
        for e in &manifest.entries {
            if is_own_dir(&e.path) || versions::is_versions_dir(&e.path) {
                let own = if is_own_dir(&e.path) {
                    TMP_DIR
                } else {
                    VERSIONS_DIR
                };
                return Err(refuse(format!(
                    "refusing to write into {own}, mdp's own directory"
                )));
            }
        }
        // An atomic push lands in new versions of its directories: the
        // store works on its paths moved there.
        self.switch = None;
        let manifest = if manifest.atomic {
            let (switch, rewritten) = versions::Switch::plan(self, &manifest, session)?;
            self.switch = Some(switch);
            self.prepare_versions()?;
            Arc::new(rewritten)
        } else {
            manifest
        };
        // Directories are created when the tree settles (or a file is
        // placed in one), never before the push is taken (a refusal for
        // disk space comes after this); what would stop one (a link, a
        // file in its place), or a link (a directory in its place),
        // refuses the push now, before the store takes its manifest: a
        // refused push's directories are not touched when it finishes.
        for e in &manifest.entries {
            let refused = match e.kind {
                EntryKind::Dir => match self.beneath.dir(&e.path, false) {
                    Err(err) if err.kind() != io::ErrorKind::NotFound => Some(err),
                    _ => None,
                },
                EntryKind::Symlink { .. } | EntryKind::HardLink { .. } => {
                    links::check_room(&self.beneath, &e.path).err()
                }
                EntryKind::File { .. } => None,
            };
            if let Some(err) = refused {
                self.manifest = Arc::new(Manifest::default());
                return Err(err);
            }
        }
        self.session = Some(session);
        self.take_owners(&manifest);
        self.manifest = manifest.clone();
        let mut object = 0u32;
        let mut resumed = Vec::new();
        let mut stems = std::collections::HashSet::new();
        // Interrupted pushes' sidecars, listed once: a push of many files
        // looks only for the few it may resume.
        let sidecars = resume::records(&self.tmp);
        for (i, e) in manifest.entries.iter().enumerate() {
            let EntryKind::File { size, hash, .. } = e.kind else {
                continue;
            };
            object += 1;
            let nblocks = if block_bytes == 0 {
                0
            } else {
                size.div_ceil(block_bytes)
            };
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
                blocks: BlockMap::new(nblocks),
            };
            if block_bytes == 0 || size == 0 || !stems.insert(hash) {
                t.by_content = false;
            } else if sidecars.contains(&stem) {
                if let Some(mut blocks) = BlockMap::load(&self.tmp, &stem, size, nblocks) {
                    // Blocks from the earlier push are not written again,
                    // once read back and found to match their hashes: the
                    // disk may not have kept what the record says.
                    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                    match rfs::openat(&*self.tmp_fd, format!("{stem}.part"), flags, Mode::empty()) {
                        Ok(fd) => {
                            recheck(&File::from(fd), e, block_bytes, &mut blocks);
                        }
                        // Not read back, not trusted.
                        Err(_) => blocks = BlockMap::new(nblocks),
                    }
                    if blocks.any() {
                        t.created = true;
                        t.blocks = blocks;
                        resumed.push((ObjectId(object), t.blocks.ranges(nblocks as u32)));
                    }
                }
            }
            self.files.insert(ObjectId(object), t);
        }
        Ok(resumed)
    }

    /// Writes block `offset / block_bytes` of a file, once it matched the
    /// manifest's hash for it; else writes nothing and rejects it (a forged
    /// or corrupt block, to be received again). An I/O error is kept and
    /// reported when the file completes. A file no longer in the session
    /// takes nothing.
    pub fn write(
        &mut self,
        object: ObjectId,
        offset: u64,
        data: &[u8],
    ) -> Result<(), BlockRejected> {
        self.write_checked_block(object, offset, data).map(drop)
    }

    /// [`Store::write`], saying whether `data` itself was checked against
    /// its hash (true), or not looked at (false: the block was held
    /// already, or the file is not in the session). A relay passes on
    /// only checked bytes.
    pub fn write_checked_block(
        &mut self,
        object: ObjectId,
        offset: u64,
        data: &[u8],
    ) -> Result<bool, BlockRejected> {
        let Some(t) = self.files.get(&object) else {
            return Ok(false);
        };
        let bb = self.block_bytes;
        if bb > 0 && offset.is_multiple_of(bb) && t.blocks.is_marked(offset / bb) {
            // Held already (kept from an interrupted push, or found in an
            // older version, before the state machine heard so): what is
            // there matched its hash; these bytes, forged or not, change
            // nothing.
            return Ok(false);
        }
        let entry = &self.manifest.entries[t.entry];
        if bb == 0 || !offset.is_multiple_of(bb) || !block_matches(entry, bb, offset / bb, data) {
            let block = offset.checked_div(bb).map_or(0, |b| b as u32);
            return Err(BlockRejected { block });
        }
        self.write_checked(object, offset, data);
        Ok(true)
    }

    /// True when `data` is block `offset / block_bytes` of `object` as the
    /// manifest hashes it.
    pub fn block_matches(&self, object: ObjectId, offset: u64, data: &[u8]) -> bool {
        let bb = self.block_bytes;
        let Some(t) = self.files.get(&object) else {
            return false;
        };
        bb > 0
            && offset.is_multiple_of(bb)
            && block_matches(&self.manifest.entries[t.entry], bb, offset / bb, data)
    }

    /// Writes a block already checked against its hash; an I/O error is
    /// kept for the file.
    fn write_checked(&mut self, object: ObjectId, offset: u64, data: &[u8]) {
        let Some(t) = self.files.get_mut(&object) else {
            return;
        };
        if t.error.is_some() {
            return;
        }
        let (manifest, session, bb) = (&self.manifest, self.session, self.block_bytes);
        let (entry, by_content) = (t.entry, t.by_content);
        let name = || temp_name(manifest, session, bb, object, entry, by_content);
        let file = match open_handle(&mut self.handles, t, &self.tmp_fd, name, object) {
            Ok(f) => f,
            Err(e) => {
                t.error = Some(e);
                return;
            }
        };
        if let Err(e) = file.write_all_at(data, offset) {
            t.error = Some(e);
            return;
        }
        let len = data.len() as u64;
        if self.durable {
            self.since_writeback += len;
            if self.since_writeback >= WRITEBACK_EVERY {
                self.since_writeback = 0;
                crate::sys::start_writeback(file);
            }
        }
        if let Some(b) = offset.checked_div(self.block_bytes) {
            t.blocks.mark(b as usize);
        }
        if t.by_content && !self.keep_partial.is_zero() && self.checkpoints.wrote(object, len) {
            self.checkpoint();
        }
    }

    /// True while a block of `object` is still to be written again after it
    /// was rejected: the file is not complete, whatever was asked.
    pub fn lacks_blocks(&self, object: ObjectId) -> bool {
        self.files.get(&object).is_some_and(|t| {
            let nblocks = t.size.div_ceil(self.block_bytes.max(1));
            t.error.is_none() && !t.blocks.all(nblocks)
        })
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
        let (name, temp) = (self.temp_name(object, &t), self.temp_path(object, &t));
        // An empty file has had no write: this creates it. The handle is
        // closed here: finished files may wait for the verifier, and must
        // not hold descriptors while they do.
        if let Err(e) = open_handle(
            &mut self.handles,
            &mut t,
            &self.tmp_fd,
            || name.clone(),
            object,
        ) {
            let _ = rfs::unlinkat(&*self.tmp_fd, &name, AtFlags::empty());
            return Err((FailReason::Io, format!("{}: {e}", entry.path)));
        }
        self.handles.remove(&object);
        if self.checkpoints.completed(object) {
            // Complete: its checkpoint record is of no more use.
            let _ = fs::remove_file(temp.with_extension("blocks"));
        }
        // A name of this push's own for the verifier: the content-named one
        // may be taken by the next push of the same content (a resume, a
        // delta) while this file still waits, and the verifier must place
        // this file, not that one.
        let done = match self.session {
            Some(s) => format!("{s}-{}.done", object.0),
            None => format!("none-{}.done", object.0),
        };
        if let Err(e) = rfs::renameat(&*self.tmp_fd, &name, &*self.tmp_fd, &done) {
            let _ = rfs::unlinkat(&*self.tmp_fd, &name, AtFlags::empty());
            return Err((FailReason::Io, format!("{}: {e}", entry.path)));
        }
        // Every block matched its hash as it was written: the file is the
        // one the manifest describes (an empty file has no block).
        let nblocks = t.size.div_ceil(self.block_bytes.max(1));
        let hashed = match &self.manifest.entries[t.entry].kind {
            _ if t.size == 0 => Some(*blake3::hash(&[]).as_bytes()),
            EntryKind::File { hash, .. } if t.blocks.all(nblocks) => Some(*hash),
            _ => None,
        };
        Ok(Written {
            entry,
            beneath: self.beneath.clone(),
            tmp: self.tmp_fd.clone(),
            temp: done,
            error: t.error,
            hashed,
            durable: self.durable,
            mode: self.mode(self.manifest.entries[t.entry].mode),
            owner: self.ownership(&self.manifest.entries[t.entry]),
            block_bytes: self.block_bytes,
        })
    }

    /// [`Store::written`] then [`Written::verify_and_place`].
    pub fn complete(&mut self, object: ObjectId) -> Result<PathBuf, (FailReason, String)> {
        self.written(object)?.verify_and_place()
    }

    /// Makes the tree final once every file is placed or failed for good
    /// (the receiver's `Settle`, before it confirms): with `prune`, the
    /// `--delete` removal ([`Store::prune`], whose list it returns); then,
    /// with `links` (the receiver's `Settle` says: a signed push, every
    /// file in place), the symbolic links (`links.rs`); then the
    /// directories' modes and mtimes. [`Store::finish`] does not do it
    /// again.
    pub fn settle(&mut self, prune: bool, links: bool) -> Vec<String> {
        self.settle_problem = None;
        let removed = if prune { self.prune() } else { Vec::new() };
        if links {
            self.place_links();
        } else {
            let n = self
                .manifest
                .entries
                .iter()
                .filter(|e| {
                    matches!(
                        e.kind,
                        EntryKind::Symlink { .. } | EntryKind::HardLink { .. }
                    )
                })
                .count();
            if n > 0 {
                tracing::warn!(
                    "{n} links (symbolic or hard) of this push not placed: it was not signed, or some of its files failed"
                );
            }
        }
        self.settle_dirs(true);
        if links && self.settle_problem.is_none() {
            // Every file arrived, signed, on the disk: an atomic push's
            // directories now point at their new versions.
            self.switch_versions();
        } else {
            self.drop_versions();
        }
        self.settled = true;
        removed
    }

    /// Ends the session: makes the tree final if [`Store::settle`] did not
    /// (an incomplete push still gets the modes and mtimes of the
    /// directories it has; none is created) and removes what is left of the
    /// temporary files.
    pub fn finish(&mut self) {
        if !self.settled {
            self.settle_dirs(false);
        }
        self.settled = false;
        self.abort();
    }

    /// Saves the hash index, and applies the directories' modes and mtimes
    /// deepest first (a child's change would move its parent's mtime);
    /// when durable, then flushes every directory the push touched, with
    /// their ancestors and the cache directory, so that the entries its
    /// renames, creations and removals made are on the disk before the
    /// receiver confirms. Missing directories are created when `create`.
    fn settle_dirs(&mut self, create: bool) {
        self.index.save();
        let mut dirs: Vec<_> = self
            .manifest
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::Dir)
            .collect();
        dirs.sort_by_key(|e| std::cmp::Reverse(e.path.matches('/').count()));
        for e in dirs {
            // Mode and mtime set on the directory's own descriptor.
            let Ok(d) = self.beneath.dir(&e.path, create).map(File::from) else {
                continue;
            };
            // A directory of another user's (made by a local user, or
            // linked from elsewhere) keeps its owner's group and mode.
            if d.metadata().is_ok_and(|md| !self.ours(&md, e)) {
                continue;
            }
            let _ = self.ownership(e).apply(&d);
            let _ = d.set_permissions(fs::Permissions::from_mode(self.mode(e.mode)));
            if let Some(t) = mtime(e.mtime_secs, e.mtime_nanos) {
                let _ = d.set_times(FileTimes::new().set_modified(t));
            }
        }
        let touched = std::mem::take(&mut self.touched_dirs);
        if self.durable {
            self.flush_dirs(touched);
        }
    }

    /// Flushes each directory of `touched` (paths relative to the cache
    /// directory), each of their ancestors, and the cache directory itself.
    fn flush_dirs(&mut self, touched: BTreeSet<String>) {
        let mut all = BTreeSet::new();
        let dirs = self
            .manifest
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::Dir)
            .map(|e| e.path.as_str());
        for d in dirs.chain(touched.iter().map(String::as_str)) {
            let mut end = d.len();
            // `d` and each of its ancestors.
            loop {
                all.insert(&d[..end]);
                match d[..end].rfind('/') {
                    Some(i) => end = i,
                    None => break,
                }
            }
        }
        // The cache directory itself last ("" is below every path).
        for d in all.into_iter().rev().chain(std::iter::once("")) {
            let Ok(fd) = self.beneath.dir(d, false) else {
                continue; // gone, or a link now: not ours to flush
            };
            if let Err(err) = File::from(fd).sync_all() {
                let why = format!(
                    "cannot flush directory {}: {err}",
                    self.root.join(d).display()
                );
                tracing::warn!("{why}");
                self.settle_problem.get_or_insert(why);
            }
        }
    }

    /// Ends the session's unfinished files: with `keep_partial`, a file
    /// with written blocks is kept for a resume (its data synced to disk
    /// first, then its block bitmap written beside it); others are removed.
    fn abort(&mut self) {
        // An atomic push that ends unswitched leaves no version behind.
        self.drop_versions();
        let files = std::mem::take(&mut self.files);
        for (object, t) in files {
            if !t.created {
                continue;
            }
            let (name, temp) = (self.temp_name(object, &t), self.temp_path(object, &t));
            let keep =
                !self.keep_partial.is_zero() && t.error.is_none() && t.blocks.any() && t.by_content;
            let kept = keep
                && sync_data(&self.handles, object, &self.tmp_fd, &name).is_ok()
                && t.blocks.save(&temp);
            if !kept {
                let _ = rfs::unlinkat(&*self.tmp_fd, &name, AtFlags::empty());
                if self.checkpoints.has_record(object) {
                    let _ = fs::remove_file(temp.with_extension("blocks"));
                }
            }
        }
        self.handles.clear();
        self.checkpoints.clear();
        self.session = None;
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.abort();
        // Only removes the directory when it is empty.
        if let Ok(root) = self.beneath.dir("", false) {
            let _ = rfs::unlinkat(&root, TMP_DIR, AtFlags::REMOVEDIR);
        }
    }
}

#[cfg(test)]
mod tests;

//! The store's unit tests.

use super::*;
use mdp_proto::Entry;

/// The block size of most tests.
const BLOCK: u64 = 4096;

/// Writes blocks `blocks` (of [`BLOCK`] bytes) of `data` as object 1.
fn write_blocks(store: &mut Store, data: &[u8], blocks: impl IntoIterator<Item = u64>) {
    for b in blocks {
        let at = (b * BLOCK) as usize;
        let end = (at + BLOCK as usize).min(data.len());
        store.write(ObjectId(1), b * BLOCK, &data[at..end]).unwrap();
    }
}

/// A file entry for `data`, with its block hashes at [`BLOCK`].
fn file_entry(path: &str, data: &[u8]) -> Entry {
    file_entry_in(path, data, BLOCK)
}

/// A file entry for `data`, with its block hashes at `block_bytes`.
fn file_entry_in(path: &str, data: &[u8], block_bytes: u64) -> Entry {
    let blocks = if data.len() as u64 > block_bytes {
        data.chunks(block_bytes as usize)
            .map(|c| *blake3::hash(c).as_bytes())
            .collect()
    } else {
        Vec::new()
    };
    Entry {
        path: path.into(),
        kind: EntryKind::File {
            size: data.len() as u64,
            hash: *blake3::hash(data).as_bytes(),
            blocks,
        },
        mode: 0o4755,
        mtime_secs: 1_600_000_000,
        mtime_nanos: 5,
        owner: 0,
    }
}

#[test]
fn a_file_appears_only_after_its_hash_matched() {
    let root = crate::test_dir("place");
    let mut store = Store::open(&root).unwrap();
    let m = Arc::new(Manifest::new(vec![
        file_entry("d/x.bin", b"hello world"),
        file_entry("y", b"abc"),
    ]));
    store.begin(SessionId(1), m, 4096).unwrap();
    // Not a whole block: rejected.
    assert_eq!(
        store.write(ObjectId(1), 0, b"hello "),
        Err(BlockRejected { block: 0 })
    );
    assert!(store.lacks_blocks(ObjectId(1)));
    store.write(ObjectId(1), 0, b"hello world").unwrap();
    assert!(!store.lacks_blocks(ObjectId(1)));
    let placed = store.complete(ObjectId(1)).unwrap();
    assert_eq!(fs::read(&placed).unwrap(), b"hello world");
    let md = fs::metadata(&placed).unwrap();
    assert_eq!(
        md.permissions().mode() & 0o7777,
        0o755,
        "setuid bit dropped"
    );
    // A corrupt block is never written, and its file never placed.
    assert_eq!(
        store.write(ObjectId(2), 0, b"abd"),
        Err(BlockRejected { block: 0 })
    );
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
    let m = Arc::new(Manifest::new(entries));
    store.begin(SessionId(4), m, block_bytes).unwrap();
    (root, store)
}

/// Every block is checked against the manifest's hash for it before it is
/// written, in whatever order blocks come: a wrong, short or misplaced
/// block is not written and leaves its file incomplete; once every block
/// matched, the file is known good without being read back.
#[test]
fn every_block_is_checked_against_its_hash_before_it_is_written() {
    let data: Vec<u8> = (0..10_500u32).map(|i| (i * 7 % 251) as u8).collect();
    let blocks = data.len().div_ceil(1000) as u64;
    let entries = vec![file_entry_in("a", &data, 1000)];
    let (root, mut store) = store_with("blockcheck", entries, 1000);
    let block =
        |b: u64| &data[(b * 1000) as usize..((b + 1) * 1000).min(data.len() as u64) as usize];
    for b in [3, 1, 0, 2].into_iter().chain(4..blocks) {
        if b == 7 {
            // Forged: one bit flipped.
            let mut bad = block(b).to_vec();
            bad[321] ^= 1;
            assert_eq!(
                store.write(ObjectId(1), b * 1000, &bad),
                Err(BlockRejected { block: 7 })
            );
            // Right bytes at the wrong offset, or cut short.
            assert_eq!(
                store.write(ObjectId(1), 8000, block(b)),
                Err(BlockRejected { block: 8 })
            );
            assert_eq!(
                store.write(ObjectId(1), 7000, &block(b)[..999]),
                Err(BlockRejected { block: 7 })
            );
            assert_eq!(
                store.write(ObjectId(1), 7001, block(b)),
                Err(BlockRejected { block: 7 })
            );
            continue;
        }
        store.write(ObjectId(1), b * 1000, block(b)).unwrap();
    }
    assert!(
        store.lacks_blocks(ObjectId(1)),
        "the rejected block is missing"
    );
    store.write(ObjectId(1), 7000, block(7)).unwrap();
    assert!(!store.lacks_blocks(ObjectId(1)));
    let a = store.written(ObjectId(1)).unwrap();
    assert_eq!(
        a.hashed,
        Some(*blake3::hash(&data).as_bytes()),
        "not read back"
    );
    assert_eq!(fs::read(a.verify_and_place().unwrap()).unwrap(), data);
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
    let m = Arc::new(Manifest::new(
        (0..n)
            .map(|i| file_entry_in(&format!("f{i}"), &data[i], 15))
            .collect(),
    ));
    let fds = || fs::read_dir("/proc/self/fd").unwrap().count();
    let before = fds();
    store.begin(SessionId(3), m, 15).unwrap();
    // First halves of every file, then second halves: each handle is
    // closed and reopened along the way.
    for (i, d) in data.iter().enumerate() {
        store.write(ObjectId(i as u32 + 1), 0, &d[..15]).unwrap();
    }
    assert!(store.handles.len() <= MAX_OPEN_FILES);
    // Other tests run in this process too: allow some slack.
    assert!(fds() <= before + MAX_OPEN_FILES + 16, "{} fds open", fds());
    for (i, d) in data.iter().enumerate() {
        store.write(ObjectId(i as u32 + 1), 15, &d[15..]).unwrap();
    }
    for (i, d) in data.iter().enumerate() {
        let placed = store.complete(ObjectId(i as u32 + 1)).unwrap();
        assert_eq!(&fs::read(placed).unwrap(), d);
    }
    store.finish();
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_session_of_many_files_costs_little_per_file() {
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
    // What every file of the manifest costs from the start: no paths, no
    // hasher.
    assert!(
        size_of::<TempFile>() <= 72,
        "{} bytes",
        size_of::<TempFile>()
    );
    store.write(ObjectId(7), 0, &data[6]).unwrap();
    let placed = store.complete(ObjectId(7)).unwrap();
    assert_eq!(fs::read(placed).unwrap(), data[6]);
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
    let m = Arc::new(Manifest::new(vec![file_entry("d/evil", b"x")]));
    store.begin(SessionId(2), m, 4096).unwrap();
    store.write(ObjectId(1), 0, b"x").unwrap();
    assert_eq!(store.complete(ObjectId(1)).unwrap_err().0, FailReason::Io);
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    fs::remove_dir_all(&root).unwrap();
    fs::remove_dir_all(&outside).unwrap();
}

#[test]
fn an_interrupted_file_keeps_its_blocks_for_the_next_push_of_the_same_content() {
    let root = crate::test_dir("resume");
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
    let m = Arc::new(Manifest::new(vec![file_entry("f", &data)]));
    let block = 4096u64;
    {
        let mut store = Store::open(&root).unwrap();
        assert!(store
            .begin(SessionId(1), m.clone(), block)
            .unwrap()
            .is_empty());
        // Blocks 0 and 2 of 3 arrive, then the push is interrupted.
        store.write(ObjectId(1), 0, &data[..4096]).unwrap();
        store.write(ObjectId(1), 8192, &data[8192..]).unwrap();
        store.finish();
    }
    let mut store = Store::open(&root).unwrap();
    let held = store.begin(SessionId(2), m.clone(), block).unwrap();
    assert_eq!(held, vec![(ObjectId(1), vec![(0, 1), (2, 1)])]);
    store.write(ObjectId(1), 4096, &data[4096..8192]).unwrap();
    let placed = store.complete(ObjectId(1)).unwrap();
    assert_eq!(fs::read(placed).unwrap(), data);
    store.finish();
    // Another block size: nothing to resume from.
    let mut store = Store::open(&root).unwrap();
    let m8 = Arc::new(Manifest::new(vec![file_entry_in("f", &data, 8192)]));
    fs::remove_file(root.join("f")).unwrap();
    assert!(store
        .begin(SessionId(3), m8.clone(), 8192)
        .unwrap()
        .is_empty());
    store.write(ObjectId(1), 0, &data[..8192]).unwrap();
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

/// The index records a placed file's metadata as it was when placed: a
/// file changed after that (by a hook, another writer) before the record
/// is made is hashed again, never vouched for.
#[test]
fn the_index_records_a_file_as_it_was_placed() {
    let root = crate::test_dir("stamp-placed");
    let mut store = Store::open(&root).unwrap();
    let m = Arc::new(Manifest::new(vec![file_entry("x", b"the pushed bytes")]));
    store.begin(SessionId(1), m.clone(), 4096).unwrap();
    store.write(ObjectId(1), 0, b"the pushed bytes").unwrap();
    let placed = store
        .written(ObjectId(1))
        .unwrap()
        .verify()
        .unwrap()
        .place()
        .unwrap();
    // Changed in place, same size, its mtime put back.
    let md = fs::metadata(&placed.path).unwrap();
    fs::write(&placed.path, b"other bytes here").unwrap();
    File::options()
        .write(true)
        .open(&placed.path)
        .unwrap()
        .set_times(FileTimes::new().set_modified(md.modified().unwrap()))
        .unwrap();
    let EntryKind::File { hash, .. } = m.entries[0].kind else {
        unreachable!()
    };
    let hashes = KnownContent {
        hash,
        ..KnownContent::default()
    };
    store.placed("x", hashes, placed.stamp.as_ref());
    store.finish();
    store.begin(SessionId(2), m.clone(), 4096).unwrap();
    assert!(store.present().is_empty(), "a changed file was vouched for");
}

/// A receiver killed mid-push (no `finish`, no drop) keeps the blocks it
/// wrote before the last checkpoint: the next push of the same content
/// resumes from them.
#[test]
fn a_store_killed_mid_push_keeps_the_blocks_of_its_last_checkpoint() {
    let root = crate::test_dir("checkpoint");
    let data: Vec<u8> = (0..4 * 4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let m = Arc::new(Manifest::new(vec![file_entry("big", &data)]));
    let mut store = Store::open(&root).unwrap();
    store.set_checkpoint_every(2 * 4096);
    store.begin(SessionId(1), m.clone(), 4096).unwrap();
    store.write(ObjectId(1), 0, &data[..4096]).unwrap();
    store
        .write(ObjectId(1), 2 * 4096, &data[2 * 4096..3 * 4096])
        .unwrap();
    // Killed: nothing of the store runs any more.
    std::mem::forget(store);
    let mut store = Store::open(&root).unwrap();
    let held = store.begin(SessionId(2), m, 4096).unwrap();
    assert_eq!(held, vec![(ObjectId(1), vec![(0, 1), (2, 1)])]);
    store
        .write(ObjectId(1), 4096, &data[4096..2 * 4096])
        .unwrap();
    store
        .write(ObjectId(1), 3 * 4096, &data[3 * 4096..])
        .unwrap();
    let placed = store.complete(ObjectId(1)).unwrap();
    assert_eq!(fs::read(placed).unwrap(), data);
    // Its record went with it.
    let left: Vec<_> = fs::read_dir(root.join(TMP_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "index")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A local user who can write in the cache directory swaps a pushed
/// directory for a link to a directory outside it, again and again, while
/// the store places files, settles modes and prunes with `--delete`:
/// nothing outside the cache directory is created, changed or removed.
#[test]
fn a_directory_swapped_for_a_link_mid_push_leads_nowhere_outside() {
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicBool, Ordering};
    let base = crate::test_dir("swap");
    let root = base.join("cache");
    let outside = base.join("outside");
    fs::create_dir_all(root.join("www")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("victim"), b"keep me").unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o751)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (root, outside, stop) = (root.clone(), outside.clone(), stop.clone());
        std::thread::spawn(move || {
            let (www, real) = (root.join("www"), root.join("www.real"));
            while !stop.load(Ordering::Relaxed) {
                if fs::rename(&www, &real).is_ok() {
                    let _ = symlink(&outside, &www);
                    std::thread::yield_now();
                    let _ = fs::remove_file(&www);
                    let _ = fs::rename(&real, &www);
                }
                std::thread::yield_now();
            }
        })
    };
    let mut store = Store::open(&root).unwrap();
    let mut placed = 0;
    // 1500 rounds, and more (up to 10,000) until one placed a file: on a
    // loaded machine the swapper can win every race of a short run.
    for round in 0..10_000u32 {
        if round >= 1500 && placed > 0 {
            break;
        }
        let data = format!("file {round}").into_bytes();
        let m = Arc::new(Manifest::new(vec![
            Entry {
                path: "www".into(),
                kind: EntryKind::Dir,
                mode: 0o700,
                mtime_secs: 1_000_000_000,
                mtime_nanos: 0,
                owner: 0,
            },
            file_entry(&format!("www/f{round}"), &data),
        ]));
        if store.begin(SessionId(round as u64 + 1), m, 4096).is_err() {
            continue;
        }
        if store.write(ObjectId(1), 0, &data).is_ok() {
            placed += store.complete(ObjectId(1)).is_ok() as u32;
        }
        store.settle(true, true);
        store.finish();
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    let names: Vec<_> = fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["victim"], "written or removed outside");
    assert_eq!(fs::read(outside.join("victim")).unwrap(), b"keep me");
    let md = fs::metadata(&outside).unwrap();
    assert_eq!(
        md.permissions().mode() & 0o7777,
        0o751,
        "mode changed outside"
    );
    use std::os::unix::fs::MetadataExt;
    assert_ne!(md.mtime(), 1_000_000_000, "mtime changed outside");
    assert!(placed > 0, "no round placed a file: the test shows nothing");
}

/// Nothing is placed world-writable unless the operator allows it: the
/// store's mask takes bits off the sender's modes, of files and
/// directories, placed or found present.
#[test]
fn the_mode_mask_keeps_what_the_store_places_from_being_world_writable() {
    let root = crate::test_dir("mask");
    let m = Arc::new(Manifest::new(vec![
        Entry {
            path: "d".into(),
            kind: EntryKind::Dir,
            mode: 0o777,
            mtime_secs: 0,
            mtime_nanos: 0,
            owner: 0,
        },
        Entry {
            mode: 0o666,
            ..file_entry("d/f", b"data")
        },
    ]));
    let mode = |p: &str| fs::metadata(root.join(p)).unwrap().permissions().mode() & 0o7777;
    let mut store = Store::open(&root).unwrap();
    store.begin(SessionId(1), m.clone(), 4096).unwrap();
    store.write(ObjectId(1), 0, b"data").unwrap();
    store.complete(ObjectId(1)).unwrap();
    store.settle(false, true);
    store.finish();
    assert_eq!((mode("d"), mode("d/f")), (0o775, 0o664));
    // Allowed by the operator: the sender's modes, for a file found present.
    store.set_mode_mask(0);
    store.begin(SessionId(2), m.clone(), 4096).unwrap();
    assert_eq!(store.present(), [ObjectId(1)]);
    store.settle(false, true);
    store.finish();
    assert_eq!((mode("d"), mode("d/f")), (0o777, 0o666));
}

/// A file a local user hard-linked in from outside the directory, with the
/// content a push brings, is not taken as present: its mode is not changed
/// (which would change the outside file's), and the push places a file of
/// its own under the name, which leaves the outside file as it was.
#[test]
fn a_file_linked_in_from_outside_is_placed_afresh_and_the_outside_file_keeps_its_mode() {
    let base = crate::test_dir("hardlink");
    let root = base.join("dir");
    fs::create_dir_all(root.join("d")).unwrap();
    let outside = base.join("outside.conf");
    fs::write(&outside, b"data").unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o600)).unwrap();
    fs::hard_link(&outside, root.join("d/f")).unwrap();
    let m = Arc::new(Manifest::new(vec![Entry {
        mode: 0o664,
        ..file_entry("d/f", b"data")
    }]));
    let mut store = Store::open(&root).unwrap();
    store.begin(SessionId(1), m.clone(), 4096).unwrap();
    assert!(
        store.present().is_empty(),
        "a linked file counted as present"
    );
    store.write(ObjectId(1), 0, b"data").unwrap();
    store.complete(ObjectId(1)).unwrap();
    store.settle(false, true);
    store.finish();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&outside), 0o600, "the outside file's mode changed");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::metadata(&outside).unwrap().nlink(),
        1,
        "still linked in"
    );
    assert_eq!(mode(&root.join("d/f")), 0o664);
    // Placed by the store itself, it is present next time.
    store.begin(SessionId(2), m.clone(), 4096).unwrap();
    assert_eq!(store.present(), [ObjectId(1)]);
}

/// Directories are not created before the push is taken: a push that
/// ends before it settles (refused for disk space, cut off) leaves none
/// behind; one in the way of a directory refuses the push at once.
#[test]
fn directories_appear_only_when_the_tree_settles() {
    let root = crate::test_dir("dirs-late");
    let dir = |path: &str| Entry {
        path: path.into(),
        kind: EntryKind::Dir,
        mode: 0o755,
        mtime_secs: 0,
        mtime_nanos: 0,
        owner: 0,
    };
    let m = Arc::new(Manifest::new(vec![dir("new"), dir("new/sub")]));
    let mut store = Store::open(&root).unwrap();
    store.begin(SessionId(1), m.clone(), 4096).unwrap();
    assert!(
        !root.join("new").exists(),
        "created before the push was taken"
    );
    store.finish();
    assert!(
        !root.join("new").exists(),
        "left behind by a push that never settled"
    );
    store.begin(SessionId(2), m, 4096).unwrap();
    store.settle(false, true);
    store.finish();
    assert!(root.join("new/sub").is_dir());
    // A file where a directory must go: refused at the start.
    fs::write(root.join("blocked"), b"x").unwrap();
    let m = Arc::new(Manifest::new(vec![dir("blocked"), dir("blocked/sub")]));
    let err = store.begin(SessionId(3), m, 4096).unwrap_err();
    assert!(err.to_string().contains("is not a directory"), "{err}");
}

/// A resume record says which blocks were written, not that the disk kept
/// them: each is read back and checked against its hash before it counts.
#[test]
fn a_kept_block_the_disk_did_not_keep_is_received_again() {
    let root = crate::test_dir("resume-check");
    let data: Vec<u8> = (0..3 * 4096u32).map(|i| (i * 11 % 253) as u8).collect();
    let m = Arc::new(Manifest::new(vec![file_entry("f", &data)]));
    {
        let mut store = Store::open(&root).unwrap();
        store.begin(SessionId(1), m.clone(), BLOCK).unwrap();
        store.write(ObjectId(1), 0, &data[..4096]).unwrap();
        store.write(ObjectId(1), 8192, &data[8192..]).unwrap();
        store.finish();
    }
    // Block 2 of the kept file is damaged on the disk.
    let part = fs::read_dir(root.join(TMP_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "part"))
        .unwrap();
    let f = File::options().write(true).open(&part).unwrap();
    f.write_all_at(b"rot", 9000).unwrap();
    drop(f);
    let mut store = Store::open(&root).unwrap();
    let held = store.begin(SessionId(2), m, BLOCK).unwrap();
    assert_eq!(held, vec![(ObjectId(1), vec![(0, 1)])]);
    store.write(ObjectId(1), 4096, &data[4096..8192]).unwrap();
    assert!(store.lacks_blocks(ObjectId(1)));
    store.write(ObjectId(1), 8192, &data[8192..]).unwrap();
    let placed = store.complete(ObjectId(1)).unwrap();
    assert_eq!(fs::read(placed).unwrap(), data);
    store.finish();
    fs::remove_dir_all(&root).unwrap();
}

/// A changed file starts from the blocks of the version at its path that
/// the new one shares; the old version stays whole under its name until
/// the new one replaces it. A link at the path is not followed.
#[test]
fn a_changed_file_starts_from_the_blocks_of_its_old_version() {
    let root = crate::test_dir("delta");
    let outside = crate::test_dir("delta-outside");
    let new: Vec<u8> = (0..10 * 4096u32 + 100)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let mut old = new[..8 * 4096].to_vec();
    old[3 * 4096 + 5] ^= 1;
    old[6 * 4096] ^= 1;
    fs::create_dir_all(root.join("d")).unwrap();
    fs::write(root.join("d/img"), &old).unwrap();
    // The same old version, outside, behind a link in the cache.
    fs::write(outside.join("img"), &old).unwrap();
    std::os::unix::fs::symlink(outside.join("img"), root.join("linked")).unwrap();
    let m = Arc::new(Manifest::new(vec![
        file_entry("d/img", &new),
        file_entry("linked", &new),
    ]));
    let mut store = Store::open(&root).unwrap();
    assert!(store
        .begin(SessionId(1), m.clone(), BLOCK)
        .unwrap()
        .is_empty());
    let present = store.present();
    assert!(present.is_empty());
    let held = store.start_from_old_versions(&present);
    // Blocks 0-2, 4, 5 and 7 are the old ones; 3 and 6 changed, 8-10 are new.
    assert_eq!(held, vec![(ObjectId(1), vec![(0, 3), (4, 2), (7, 1)])]);
    assert_eq!(
        fs::read(root.join("d/img")).unwrap(),
        old,
        "the old version was touched"
    );
    write_blocks(&mut store, &new, [3, 6, 8, 9, 10]);
    let placed = store.complete(ObjectId(1)).unwrap();
    assert_eq!(fs::read(placed).unwrap(), new);
    store.finish();
    fs::remove_dir_all(&root).unwrap();
    fs::remove_dir_all(&outside).unwrap();
}

/// A complete file waiting for its check is placed as it was written, even
/// when the next push of the same content has meanwhile begun a file of
/// the same content-derived name (a resume, a delta) in the temporary area.
#[test]
fn a_file_waiting_for_its_check_is_not_confused_with_the_next_push_of_its_content() {
    let data: Vec<u8> = (0..3 * 4096u32).map(|i| (i * 29 % 241) as u8).collect();
    let m = Arc::new(Manifest::new(vec![file_entry("f", &data)]));
    let (root, mut store) = store_with("done-name", m.entries.clone(), BLOCK);
    write_blocks(&mut store, &data, 0..3);
    let waiting = store.written(ObjectId(1)).unwrap();
    store.finish();
    // The next push of the same content starts its own file of it.
    store.begin(SessionId(5), m, BLOCK).unwrap();
    store.write(ObjectId(1), 0, &data[..4096]).unwrap();
    let placed = waiting.verify_and_place().unwrap();
    assert_eq!(fs::read(placed).unwrap(), data);
    store.finish();
    fs::remove_dir_all(&root).unwrap();
}

/// A block the store holds already (kept, or from an older version) is not
/// written again, and a forged copy of it arriving late is no rejection: it
/// changes nothing.
#[test]
fn a_block_already_held_takes_no_second_write() {
    let data: Vec<u8> = (0..2 * 4096u32).map(|i| (i * 3 % 239) as u8).collect();
    let (root, mut store) = store_with("held", vec![file_entry("f", &data)], BLOCK);
    store.write(ObjectId(1), 0, &data[..4096]).unwrap();
    assert_eq!(store.write(ObjectId(1), 0, &[0xee; 4096]), Ok(()));
    store.write(ObjectId(1), 4096, &data[4096..]).unwrap();
    let placed = store.complete(ObjectId(1)).unwrap();
    assert_eq!(fs::read(placed).unwrap(), data);
    store.finish();
    fs::remove_dir_all(&root).unwrap();
}

/// The temporary directory is private to the receiver's user: write access
/// for group and others is taken away when the store opens it.
#[test]
fn the_temporary_directory_is_private() {
    let root = crate::test_dir("private-tmp");
    fs::create_dir_all(root.join(TMP_DIR)).unwrap();
    fs::set_permissions(root.join(TMP_DIR), fs::Permissions::from_mode(0o777)).unwrap();
    let _store = Store::open(&root).unwrap();
    let mode = fs::metadata(root.join(TMP_DIR))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
}

/// A changed version of a file this store placed itself starts from the
/// blocks its index knows it shares, copied without reading them; a file
/// changed since it was placed is compared by reading it, as any other.
#[test]
fn a_changed_version_of_a_placed_file_starts_from_the_blocks_the_index_knows() {
    let v1: Vec<u8> = (0..6 * 4096u32 + 7)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 9) as u8)
        .collect();
    let mut v2 = v1.clone();
    v2[4096 + 1] ^= 1;
    v2[5 * 4096 + 3] ^= 1;
    let push =
        |store: &mut Store, session: u64, data: &[u8], held: Vec<(ObjectId, Vec<(u32, u32)>)>| {
            let m = Arc::new(Manifest::new(vec![file_entry("img", data)]));
            store.begin(SessionId(session), m.clone(), BLOCK).unwrap();
            let present = store.present();
            assert!(present.is_empty());
            assert_eq!(store.start_from_old_versions(&present), held);
            let have: Vec<u64> = held
                .iter()
                .flat_map(|(_, r)| r.iter().flat_map(|&(f, c)| (f..f + c).map(u64::from)))
                .collect();
            let lacking = (0..data.len().div_ceil(4096) as u64).filter(|b| !have.contains(b));
            write_blocks(store, data, lacking);
            let w = store.written(ObjectId(1)).unwrap();
            let (path, hashes) = w.path_and_hashes();
            let placed = w.verify().unwrap().place().unwrap();
            store.placed(&path, hashes, placed.stamp.as_ref());
            assert_eq!(fs::read(&placed.path).unwrap(), data);
            store.finish();
        };
    let root = crate::test_dir("delta-index");
    let mut store = Store::open(&root).unwrap();
    push(&mut store, 1, &v1, vec![]);
    // v2 from v1, through the index: blocks 0, 2, 3, 4 and 6.
    push(
        &mut store,
        2,
        &v2,
        vec![(ObjectId(1), vec![(0, 1), (2, 3), (6, 1)])],
    );
    // v1 again, but v2 was changed in place after it was placed (the index
    // no longer vouches): compared by reading, block 3 now differs too.
    let mut f = File::options().write(true).open(root.join("img")).unwrap();
    std::io::Write::write_all(&mut f, b"").unwrap();
    f.write_all_at(b"local edit", 3 * 4096 + 10).unwrap();
    drop(f);
    push(
        &mut store,
        3,
        &v1,
        vec![(ObjectId(1), vec![(0, 1), (2, 1), (4, 1), (6, 1)])],
    );
    fs::remove_dir_all(&root).unwrap();
}

/// A push's symbolic links are placed as links, with their targets as
/// written, when the tree settles: a file in the way is replaced, a link
/// with the same target left alone, and a directory in the way refuses
/// the push before anything is written.
#[test]
fn links_are_placed_as_links_and_replace_what_is_in_their_way_but_a_directory() {
    let root = crate::test_dir("links");
    fs::create_dir_all(root.join("site/release-42")).unwrap();
    fs::write(root.join("site/old"), b"a file where a link goes").unwrap();
    let link = |path: &str, target: &str| Entry {
        path: path.into(),
        kind: EntryKind::Symlink {
            target: target.into(),
        },
        mode: 0o777,
        mtime_secs: 0,
        mtime_nanos: 0,
        owner: 0,
    };
    let dir = |path: &str| Entry {
        path: path.into(),
        kind: EntryKind::Dir,
        mode: 0o755,
        mtime_secs: 0,
        mtime_nanos: 0,
        owner: 0,
    };
    let m = Arc::new(Manifest::new(vec![
        dir("site"),
        link("site/current", "release-42"),
        link("site/old", "/etc/passwd"),
        link("site/new/deep", "../x"),
    ]));
    let mut store = Store::open(&root).unwrap();
    // Not signed, or a file failed: no link is placed.
    store.begin(SessionId(1), m.clone(), 4096).unwrap();
    store.settle(false, false);
    store.finish();
    assert!(fs::symlink_metadata(root.join("site/current")).is_err());
    assert_eq!(
        fs::read(root.join("site/old")).unwrap(),
        b"a file where a link goes"
    );
    store.begin(SessionId(1), m.clone(), 4096).unwrap();
    store.settle(false, true);
    store.finish();
    let target = |p: &str| fs::read_link(root.join(p)).unwrap();
    assert_eq!(target("site/current"), Path::new("release-42"));
    assert_eq!(target("site/old"), Path::new("/etc/passwd"));
    assert_eq!(target("site/new/deep"), Path::new("../x"));
    assert!(
        fs::read("/etc/passwd").unwrap().len() > 10,
        "the target is untouched"
    );
    // Again: the same links are left as they are (same inode).
    use std::os::unix::fs::MetadataExt;
    let ino = fs::symlink_metadata(root.join("site/current"))
        .unwrap()
        .ino();
    store.begin(SessionId(2), m.clone(), 4096).unwrap();
    store.settle(false, true);
    store.finish();
    assert_eq!(
        fs::symlink_metadata(root.join("site/current"))
            .unwrap()
            .ino(),
        ino
    );
    // A directory where a link goes: refused at once.
    let m = Arc::new(Manifest::new(vec![
        dir("site"),
        link("site/release-42", "elsewhere"),
    ]));
    let err = store.begin(SessionId(3), m, 4096).unwrap_err();
    assert!(err.to_string().contains("is a directory here"), "{err}");
    assert!(root.join("site/release-42").is_dir());
}

#[test]
fn a_hard_link_is_made_only_to_the_file_the_push_placed() {
    use std::os::unix::fs::MetadataExt;
    let data = b"the pushed file";
    let entries = || {
        vec![
            file_entry("a", data),
            Entry {
                kind: EntryKind::HardLink { target: "a".into() },
                ..file_entry("b", b"")
            },
        ]
    };
    // As pushed: b is another name of a.
    let (root, mut store) = store_with("hardlink", entries(), 4096);
    store.write(ObjectId(1), 0, data).unwrap();
    store.complete(ObjectId(1)).unwrap();
    store.settle(false, true);
    let ino = |p: &str| fs::metadata(root.join(p)).unwrap().ino();
    assert_eq!(ino("a"), ino("b"));
    // A local user swaps the placed file for one of their own before the
    // tree settles: no name of the push is given to it.
    let (root, mut store) = store_with("hardlink-swap", entries(), 4096);
    store.write(ObjectId(1), 0, data).unwrap();
    store.complete(ObjectId(1)).unwrap();
    fs::rename(root.join("a"), root.join("a.orig")).unwrap();
    fs::write(root.join("a"), b"someone else's").unwrap();
    store.settle(false, true);
    assert!(
        !root.join("b").exists(),
        "linked to a file the push did not place"
    );
}

//! The store's unit tests.

use super::running_hash::{MAX_AHEAD, READ_BACK_CHUNK};
use super::*;
use mdp_proto::Entry;

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

/// The index records a placed file's metadata as it was when placed: a
/// file changed after that (by a hook, another writer) before the record
/// is made is hashed again, never vouched for.
#[test]
fn the_index_records_a_file_as_it_was_placed() {
    let root = crate::test_dir("stamp-placed");
    let mut store = Store::open(&root).unwrap();
    let m = Arc::new(Manifest {
        entries: vec![file_entry("x", b"the pushed bytes")],
    });
    store.begin(SessionId(1), m.clone(), 4096).unwrap();
    store.write(ObjectId(1), 0, b"the pushed bytes");
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
    store.placed("x", hash, placed.stamp.as_ref());
    store.finish();
    store.begin(SessionId(2), m.clone(), 4096).unwrap();
    assert!(
        store.present(&m).is_empty(),
        "a changed file was vouched for"
    );
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
    let m = Arc::new(Manifest {
        entries: vec![file_entry("big", &data)],
    });
    let mut store = Store::open(&root).unwrap();
    store.set_checkpoint_every(2 * 4096);
    store.begin(SessionId(1), m.clone(), 4096).unwrap();
    store.write(ObjectId(1), 0, &data[..4096]);
    store.write(ObjectId(1), 2 * 4096, &data[2 * 4096..3 * 4096]);
    // Killed: nothing of the store runs any more.
    std::mem::forget(store);
    let mut store = Store::open(&root).unwrap();
    let held = store.begin(SessionId(2), m, 4096).unwrap();
    assert_eq!(held, vec![(ObjectId(1), vec![(0, 1), (2, 1)])]);
    store.write(ObjectId(1), 4096, &data[4096..2 * 4096]);
    store.write(ObjectId(1), 3 * 4096, &data[3 * 4096..]);
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
    for round in 0..1500u32 {
        let data = format!("file {round}").into_bytes();
        let m = Arc::new(Manifest {
            entries: vec![
                Entry {
                    path: "www".into(),
                    kind: EntryKind::Dir,
                    mode: 0o700,
                    mtime_secs: 1_000_000_000,
                    mtime_nanos: 0,
                },
                file_entry(&format!("www/f{round}"), &data),
            ],
        });
        if store.begin(SessionId(round as u64 + 1), m, 4096).is_err() {
            continue;
        }
        store.write(ObjectId(1), 0, &data);
        placed += store.complete(ObjectId(1)).is_ok() as u32;
        store.settle(true);
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
    let m = Arc::new(Manifest {
        entries: vec![
            Entry {
                path: "d".into(),
                kind: EntryKind::Dir,
                mode: 0o777,
                mtime_secs: 0,
                mtime_nanos: 0,
            },
            Entry {
                mode: 0o666,
                ..file_entry("d/f", b"data")
            },
        ],
    });
    let mode = |p: &str| fs::metadata(root.join(p)).unwrap().permissions().mode() & 0o7777;
    let mut store = Store::open(&root).unwrap();
    store.begin(SessionId(1), m.clone(), 4096).unwrap();
    store.write(ObjectId(1), 0, b"data");
    store.complete(ObjectId(1)).unwrap();
    store.settle(false);
    store.finish();
    assert_eq!((mode("d"), mode("d/f")), (0o775, 0o664));
    // Allowed by the operator: the sender's modes, for a file found present.
    store.set_mode_mask(0);
    store.begin(SessionId(2), m.clone(), 4096).unwrap();
    assert_eq!(store.present(&m), [ObjectId(1)]);
    store.settle(false);
    store.finish();
    assert_eq!((mode("d"), mode("d/f")), (0o777, 0o666));
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
    };
    let m = Arc::new(Manifest {
        entries: vec![dir("new"), dir("new/sub")],
    });
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
    store.settle(false);
    store.finish();
    assert!(root.join("new/sub").is_dir());
    // A file where a directory must go: refused at the start.
    fs::write(root.join("blocked"), b"x").unwrap();
    let m = Arc::new(Manifest {
        entries: vec![dir("blocked"), dir("blocked/sub")],
    });
    let err = store.begin(SessionId(3), m, 4096).unwrap_err();
    assert!(err.to_string().contains("is not a directory"), "{err}");
}

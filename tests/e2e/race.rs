//! A local user racing the receiver: while pushes with `--delete` place
//! files in a directory, another process swaps that directory for a
//! symbolic link to a directory outside the receiver's, again and again.
//! Nothing outside is created, changed or removed.

use crate::harness::*;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

#[test]
fn a_directory_swapped_for_a_link_during_pushes_with_delete_changes_nothing_outside() {
    let Some(_net) = network() else { return };
    let base = temp_dir("race");
    let src = base.join("src");
    let dir = base.join("r0");
    let outside = base.join("outside");
    fs::create_dir_all(src.join("www/sub")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("victim"), b"keep me").unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o751)).unwrap();
    let before = fs::metadata(&outside).unwrap();
    let rx = receiver(&dir, "r0", &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = {
        let (sub, real) = (dir.join("www/sub"), dir.join("www/sub.real"));
        let (outside, stop, swaps) = (outside.clone(), stop.clone(), swaps.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if fs::rename(&sub, &real).is_ok() {
                    let _ = symlink(&outside, &sub);
                    swaps.fetch_add(1, Ordering::Relaxed);
                    std::thread::yield_now();
                    let _ = fs::remove_file(&sub);
                    let _ = fs::rename(&real, &sub);
                }
                std::thread::yield_now();
            }
        })
    };
    let mut confirmed = 0;
    for round in 0..20 {
        // Each round places new files in www/sub and leaves last round's
        // behind for --delete to remove.
        let _ = fs::remove_dir_all(src.join("www/sub"));
        fs::create_dir_all(src.join("www/sub")).unwrap();
        for f in 0..40 {
            fs::write(
                src.join(format!("www/sub/r{round}-{f}")),
                format!("{round} {f}"),
            )
            .unwrap();
        }
        let out = Push::new(
            &[
                "--receivers",
                "1",
                "--delete",
                "--timeout",
                "30s",
                "--drop-after",
                "5s",
            ],
            &[src.join("www")],
        )
        .run();
        confirmed += (out.code() == Some(0)) as u32;
        if out.code() != Some(0) {
            eprintln!("raced push {round}: {}", out.report()["problem"]);
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    let names: Vec<_> = fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["victim"], "written or removed outside");
    assert_eq!(fs::read(outside.join("victim")).unwrap(), b"keep me");
    let after = fs::metadata(&outside).unwrap();
    assert_eq!(
        after.permissions().mode() & 0o7777,
        0o751,
        "mode changed outside"
    );
    assert_eq!(after.mtime(), before.mtime(), "mtime changed outside");
    assert!(
        swaps.load(Ordering::Relaxed) > 0,
        "no swap happened: the test shows nothing"
    );
    // Without the race the receiver recovers: a push lands whole. (The
    // first may still meet what the race left, e.g. the swapper's renamed
    // directory beside a fresh one, and a file of the last raced push
    // still waiting; its --delete clears that, so a second must succeed.)
    let clean = || {
        Push::new(
            &["--receivers", "1", "--delete", "--timeout", "30s"],
            &[src.join("www")],
        )
        .run()
    };
    let mut pushes = 21;
    let mut out = clean();
    if out.code() != Some(0) {
        eprintln!("first push after the race: {}", out.report());
        out = clean();
        pushes += 1;
    }
    assert_eq!(out.code(), Some(0), "{}", out.report());
    assert_same_tree(&src.join("www"), &dir.join("www"));
    let (lines, _) = stop_service(rx);
    assert_eq!(lines.len(), pushes, "one report per push");
    eprintln!(
        "{confirmed} of 20 raced pushes confirmed, {} swaps",
        swaps.load(Ordering::Relaxed)
    );
    fs::remove_dir_all(&base).unwrap();
}

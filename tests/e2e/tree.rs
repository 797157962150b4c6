//! What of a tree a push carries: `--exclude` and `--exclude-from`, and
//! symbolic links as links.

use crate::harness::*;
use std::fs;
use std::time::Duration;

/// The relative paths of every entry below `root`, sorted.
fn listing(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn excluded_paths_are_neither_sent_nor_placed() {
    let Some(_net) = network() else { return };
    let base = temp_dir("exclude");
    let src = base.join("src");
    make_source(&src, 64 << 10);
    fs::write(src.join("tree/a/debug.log"), b"noise").unwrap();
    fs::write(src.join("tree/keep.log"), b"wanted").unwrap();
    fs::create_dir_all(src.join("tree/cache/x")).unwrap();
    fs::write(src.join("tree/cache/x/blob"), bytes(1 << 20, 9)).unwrap();
    let patterns = base.join("excludes");
    fs::write(&patterns, "# build leftovers\n/tree/a/b\n").unwrap();
    let rx = start_receivers(&base, &["r0"]);
    let out = Push::new(
        &[
            "--receivers",
            "1",
            "--exclude",
            "*.log",
            "--exclude",
            "!keep.log",
            "--exclude",
            "cache/",
            "--exclude-from",
            patterns.to_str().unwrap(),
        ],
        &[src.join("tree")],
    )
    .run();
    assert_eq!(out.code(), Some(0), "{}", out.report());
    let report = out.report();
    // top.txt, mid.bin, keep.log: nothing of cache/ went out.
    assert_eq!(report["files"], 3, "{report}");
    assert!(report["bytes"].as_u64().unwrap() < 200_000, "{report}");
    let got = wait_output(rx.into_iter().next().unwrap(), Duration::from_secs(30));
    assert_eq!(got.status.code(), Some(0));
    assert_eq!(
        listing(&base.join("r0/tree")),
        ["a", "a/mid.bin", "emptydir", "keep.log", "top.txt"]
    );
    assert_eq!(
        report["excluded"], 3,
        "a/debug.log, a/b/ and cache/: {report}"
    );
    // A pattern that is not one stops the sender before it sends anything.
    let bad = Push::new(&["--exclude", "a/[z-a]"], &[src.join("tree")]).run();
    assert_eq!(bad.code(), Some(2));
    assert!(
        bad.stderr()
            .contains("--exclude \"a/[z-a]\" is not a valid pattern"),
        "{}",
        bad.stderr()
    );
    // With --delete the receivers would remove what is left out: refused.
    let both = Push::new(&["--exclude", "*.log", "--delete"], &[src.join("tree")]).run();
    assert_eq!(both.code(), Some(2));
    assert!(
        both.stderr().contains("--delete with --exclude"),
        "{}",
        both.stderr()
    );
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn symbolic_links_are_pushed_as_links_and_switch_with_the_next_push() {
    let Some(_net) = network() else { return };
    let base = temp_dir("links");
    let src = base.join("src/site");
    for r in ["release-42", "release-43"] {
        fs::create_dir_all(src.join(r)).unwrap();
        fs::write(src.join(r).join("index.html"), r.as_bytes()).unwrap();
    }
    std::os::unix::fs::symlink("release-42", src.join("current")).unwrap();
    // A link may point anywhere; the receiver never follows it.
    std::os::unix::fs::symlink("/etc/hostname", src.join("host")).unwrap();
    let dir = base.join("r0");
    let rx = receiver(&dir, "r0", &[]);
    let push = || {
        let out = Push::new(
            &["--receivers", "1", "--delete"],
            std::slice::from_ref(&src),
        )
        .run();
        assert_eq!(out.code(), Some(0), "{}", out.report());
    };
    push();
    let link = |name: &str| fs::read_link(dir.join("site").join(name)).unwrap();
    assert_eq!(link("current"), std::path::Path::new("release-42"));
    assert_eq!(link("host"), std::path::Path::new("/etc/hostname"));
    assert_eq!(
        fs::read(dir.join("site/current/index.html")).unwrap(),
        b"release-42"
    );
    // The next release: the link flips, in one rename.
    fs::remove_file(src.join("current")).unwrap();
    std::os::unix::fs::symlink("release-43", src.join("current")).unwrap();
    push();
    assert_eq!(link("current"), std::path::Path::new("release-43"));
    assert_eq!(
        fs::read(dir.join("site/current/index.html")).unwrap(),
        b"release-43"
    );
    let (lines, _) = stop_service(rx);
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["complete"] == true), "{lines:?}");
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_dry_run_names_per_host_what_it_lacks_and_changes_nothing() {
    let Some(_net) = network() else { return };
    let base = temp_dir("dry-run");
    let src = base.join("src/site");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.conf"), b"version 2 of a").unwrap();
    fs::write(src.join("b.conf"), b"b, the same everywhere").unwrap();
    // web1 holds the new version, web2 an old a.conf, web3 nothing.
    for (host, a) in [
        ("web1", &b"version 2 of a"[..]),
        ("web2", b"version 1 of a"),
    ] {
        fs::create_dir_all(base.join(host).join("site")).unwrap();
        fs::write(base.join(host).join("site/a.conf"), a).unwrap();
        fs::write(
            base.join(host).join("site/b.conf"),
            b"b, the same everywhere",
        )
        .unwrap();
    }
    let rx: Vec<_> = ["web1", "web2", "web3"]
        .iter()
        .map(|h| receiver(&base.join(h), h, &[]))
        .collect();
    let out = Push::new(
        &["--expect", "web1,web2,web3", "--dry-run"],
        std::slice::from_ref(&src),
    )
    .run();
    let report = out.report();
    assert_eq!(out.code(), Some(0), "{report}");
    assert_eq!(report["dry_run"], true);
    let host = |n: &str| {
        report["receivers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == n)
            .unwrap()
            .clone()
    };
    for (name, holds, lacks) in [
        ("web1", 2, serde_json::json!([])),
        ("web2", 1, serde_json::json!(["site/a.conf"])),
        ("web3", 0, serde_json::json!(["site/a.conf", "site/b.conf"])),
    ] {
        let r = host(name);
        assert_eq!(r["verdict"], "dry_run", "{r}");
        assert_eq!(
            (r["verified"].clone(), r["missing"].clone()),
            (holds.into(), lacks),
            "{r}"
        );
    }
    // Nothing was sent or written: web2 keeps its old version, web3 has
    // no directory at all.
    assert_eq!(report["stats"]["skipped_files"], 0);
    assert_eq!(
        fs::read(base.join("web2/site/a.conf")).unwrap(),
        b"version 1 of a"
    );
    assert!(!base.join("web3/site").exists());
    for rx in rx {
        let (lines, _) = stop_service(rx);
        assert!(
            lines[0]["problem"].as_str().unwrap().contains("a dry run"),
            "{}",
            lines[0]
        );
    }
    fs::remove_dir_all(&base).unwrap();
}

/// A receiver running as root gives each placed file, directory and link
/// the owner and group it has on the sender (by name where this host knows
/// it, else by number); `--no-owners` leaves them root's. A second push of
/// the same tree finds the files in place though they belong to others
/// now: nothing is sent again.
#[test]
fn owners_are_kept_when_the_receiver_runs_as_root() {
    use std::os::unix::fs::{chown, lchown, MetadataExt};
    let Some(_net) = network_as_root() else {
        return;
    };
    let base = temp_dir("owners");
    let src = base.join("src/tree");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("numeric.txt"), b"ids only").unwrap();
    fs::write(src.join("sub/named.txt"), b"daemon's").unwrap();
    std::os::unix::fs::symlink("numeric.txt", src.join("link")).unwrap();
    // No such user or group here: kept by number.
    chown(src.join("numeric.txt"), Some(1234), Some(2345)).unwrap();
    // nobody:nogroup, and daemon:daemon, by name.
    let (nobody, nogroup) = (65534, 65534);
    chown(src.join("sub"), Some(nobody), Some(nogroup)).unwrap();
    chown(src.join("sub/named.txt"), Some(1), Some(1)).unwrap();
    lchown(src.join("link"), Some(4321), Some(4322)).unwrap();
    let keep = receiver(&base.join("keep"), "keep", &[]);
    let root = receiver(&base.join("root"), "root", &["--no-owners"]);
    let push = || {
        let out = Push::new(&["--receivers", "2"], std::slice::from_ref(&src)).run();
        assert_eq!(out.code(), Some(0), "{}", out.report());
        out.report()
    };
    push();
    let owner = |dir: &str, path: &str| {
        let md = fs::symlink_metadata(base.join(dir).join("tree").join(path)).unwrap();
        (md.uid(), md.gid())
    };
    assert_eq!(owner("keep", "numeric.txt"), (1234, 2345));
    assert_eq!(owner("keep", "sub"), (nobody, nogroup));
    assert_eq!(owner("keep", "sub/named.txt"), (1, 1));
    assert_eq!(owner("keep", "link"), (4321, 4322));
    for path in ["numeric.txt", "sub", "sub/named.txt", "link", ""] {
        assert_eq!(owner("root", path), (0, 0), "--no-owners: {path}");
    }
    // The same tree again: every file is already in place, owners and all.
    let again = push();
    assert_eq!(again["stats"]["skipped_files"], 2, "{again}");
    assert_eq!(owner("keep", "numeric.txt"), (1234, 2345));
    stop_service(keep);
    stop_service(root);
    fs::remove_dir_all(&base).unwrap();
}

/// `--dest SUBDIR` lands a push below SUBDIR of each receiver's directory;
/// with `--delete`, only the pushed directory is pruned there, never the
/// rest of SUBDIR or its neighbours; a `--dest` that would leave the
/// directory is a usage error.
#[test]
fn dest_lands_a_push_below_a_subdirectory_and_delete_stays_inside_the_pushed_one() {
    let Some(_net) = network() else { return };
    let base = temp_dir("dest");
    let src = base.join("src/site");
    fs::create_dir_all(src.join("css")).unwrap();
    fs::write(src.join("index.html"), b"v2").unwrap();
    fs::write(src.join("css/main.css"), b"body{}").unwrap();
    let dir = base.join("r0");
    for (path, text) in [
        ("releases/web/site/old.html", "stale"),
        ("releases/web/notes.txt", "beside the push"),
        ("releases/api/keep.txt", "another service"),
    ] {
        fs::create_dir_all(dir.join(path).parent().unwrap()).unwrap();
        fs::write(dir.join(path), text).unwrap();
    }
    let rx = receiver(&dir, "r0", &[]);
    let out = Push::new(
        &["--receivers", "1", "--delete", "--dest", "releases/web/"],
        std::slice::from_ref(&src),
    )
    .run();
    assert_eq!(out.code(), Some(0), "{}", out.report());
    assert_same_tree(&src, &dir.join("releases/web/site"));
    assert!(!dir.join("site").exists(), "landed at the top too");
    assert!(
        !dir.join("releases/web/site/old.html").exists(),
        "--delete left what the pushed directory no longer has"
    );
    assert_eq!(
        fs::read_to_string(dir.join("releases/web/notes.txt")).unwrap(),
        "beside the push"
    );
    assert_eq!(
        fs::read_to_string(dir.join("releases/api/keep.txt")).unwrap(),
        "another service"
    );
    stop_service(rx);
    for bad in ["../up", "/etc", "a/./b", ""] {
        let out = Push::new(
            &["--receivers", "1", "--dest", bad],
            std::slice::from_ref(&src),
        )
        .run();
        assert_eq!(out.code(), Some(2), "--dest {bad:?}");
        let err = out.stderr();
        assert!(err.contains("--dest"), "{err}");
    }
    fs::remove_dir_all(&base).unwrap();
}

/// Two names of one file in a pushed tree arrive as one file with two
/// names: its data crosses the network once, and a second push finds both
/// in place.
#[test]
fn hard_links_within_a_push_arrive_as_hard_links() {
    use std::os::unix::fs::MetadataExt;
    let Some(_net) = network() else { return };
    let base = temp_dir("hardlinks");
    let src = base.join("src/tree");
    fs::create_dir_all(src.join("bin")).unwrap();
    fs::write(src.join("bin/tool"), bytes(300_000, 5)).unwrap();
    fs::hard_link(src.join("bin/tool"), src.join("bin/tool-alias")).unwrap();
    fs::hard_link(src.join("bin/tool"), src.join("same-elsewhere")).unwrap();
    fs::write(src.join("plain"), b"one name").unwrap();
    let dir = base.join("r0");
    let rx = receiver(&dir, "r0", &[]);
    let push = || {
        let out = Push::new(&["--receivers", "1"], std::slice::from_ref(&src)).run();
        assert_eq!(out.code(), Some(0), "{}", out.report());
        out.report()
    };
    let first = push();
    assert_eq!(
        first["files"], 2,
        "one object per file, not per name: {first}"
    );
    assert!(
        first["stats"]["bytes_sent"].as_u64().unwrap() < 2 * 300_000,
        "{first}"
    );
    let ino = |p: &str| {
        let md = fs::symlink_metadata(dir.join("tree").join(p)).unwrap();
        (md.ino(), md.nlink(), md.is_file())
    };
    let (tool, nlink, regular) = ino("bin/tool");
    assert!(regular);
    assert_eq!(nlink, 3);
    assert_eq!(ino("bin/tool-alias").0, tool);
    assert_eq!(ino("same-elsewhere").0, tool);
    assert_eq!(ino("plain").1, 1);
    assert_eq!(
        fs::read(dir.join("tree/bin/tool-alias")).unwrap(),
        bytes(300_000, 5)
    );
    // Again: everything in place, the names kept.
    let again = push();
    assert_eq!(again["stats"]["skipped_files"], 2, "{again}");
    assert_eq!(ino("same-elsewhere").0, ino("bin/tool").0);
    stop_service(rx);
    fs::remove_dir_all(&base).unwrap();
}

/// `--atomic`: a reader that opens the pushed directory while pushes land
/// (once per look, as a web server resolves a request) always sees one
/// whole release, never half of one and half of the next; the directory
/// switches only when every file is in place; unchanged files are linked
/// from the current version, not sent; old versions are kept to a count;
/// a plain directory from an earlier push becomes the first version.
#[test]
fn an_atomic_push_switches_the_whole_tree_at_once_for_a_reader() {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let Some(_net) = network() else { return };
    let base = temp_dir("atomic");
    let src = base.join("src/site");
    const FILES: usize = 40;
    let release = |v: u32, changed: Option<usize>| {
        fs::create_dir_all(&src).unwrap();
        for i in 0..FILES {
            // All files of release v, or (changed) only that file.
            if changed.is_none_or(|c| c == i) {
                let mut text = format!("v{v} {i}\n").into_bytes();
                text.resize(30_000, b'.');
                fs::write(src.join(format!("f{i:02}")), text).unwrap();
            }
        }
    };
    let dir = base.join("r0");
    let rx = receiver(&dir, "r0", &["--keep-versions", "2"]);
    let push = |atomic: bool| {
        let mut args = vec!["--receivers", "1", "--rate", "30M"];
        if atomic {
            args.push("--atomic");
        }
        let out = Push::new(&args, std::slice::from_ref(&src)).run();
        assert_eq!(out.code(), Some(0), "{}", out.report());
        out.report()
    };
    // Release 0 arrives the plain way.
    release(0, None);
    push(false);
    assert!(fs::symlink_metadata(dir.join("site")).unwrap().is_dir());
    // A reader: each look opens `site` once and reads every file through
    // that handle.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
    let reader = {
        let (site, stop, seen) = (dir.join("site"), stop.clone(), seen.clone());
        std::thread::spawn(move || {
            let mut looks = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let Ok(d) = fs::File::open(&site) else {
                    continue;
                };
                let mut versions = std::collections::BTreeSet::new();
                for i in 0..FILES {
                    let p = format!("/proc/self/fd/{}/f{i:02}", d.as_raw_fd());
                    let text = fs::read(&p).unwrap_or_else(|e| panic!("{p} missing: {e}"));
                    let v = String::from_utf8_lossy(
                        &text[..text.iter().position(|&b| b == b' ').unwrap()],
                    )
                    .into_owned();
                    versions.insert(v);
                }
                assert_eq!(versions.len(), 1, "a mix of releases: {versions:?}");
                seen.lock().unwrap().extend(versions);
                looks += 1;
            }
            looks
        })
    };
    for v in 1..=3 {
        release(v, None);
        push(true);
    }
    stop.store(true, Ordering::Relaxed);
    let looks = reader.join().expect("the reader never saw a mix");
    let seen = seen.lock().unwrap().clone();
    assert!(looks > 10 && seen.len() >= 2, "{looks} looks saw {seen:?}");
    // One file changed: the rest are linked from the current version.
    release(4, Some(7));
    let last = push(true);
    assert_eq!(last["stats"]["skipped_files"], FILES - 1, "{last}");
    // `site` is a link to the newest version; two versions are kept.
    let target = fs::read_link(dir.join("site")).unwrap();
    assert!(target.starts_with(".mdp-versions/site"), "{target:?}");
    assert_eq!(fs::read(dir.join("site/f07")).unwrap()[..5], *b"v4 7\n");
    assert_eq!(fs::read(dir.join("site/f08")).unwrap()[..5], *b"v3 8\n");
    let versions = fs::read_dir(dir.join(".mdp-versions/site/@"))
        .unwrap()
        .count();
    assert_eq!(versions, 2, "--keep-versions 2");
    let (lines, _) = stop_service(rx);
    assert!(lines.iter().all(|l| l["complete"] == true), "{lines:?}");
    fs::remove_dir_all(&base).unwrap();
}

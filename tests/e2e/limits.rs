use crate::harness::*;
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn a_receiver_refuses_a_push_beyond_its_limits_and_the_sender_names_why() {
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("limits");
    let src = base.join("src");
    make_source(&src, 2 << 20);
    let strict = receiver(
        &base.join("strict"),
        "strict",
        &["--once", "--timeout", "60s", "--max-file-size", "1M"],
    );
    let fine = receiver(&base.join("fine"), "fine", &["--once", "--timeout", "60s"]);
    let started = Instant::now();
    let out = Push::new(
        &["--receivers", "2", "--timeout", "60s"],
        &[src.join("big.bin"), src.join("tree")],
    )
    .run();
    let report = out.report();
    println!("sender: {report}");
    assert_eq!(out.code(), Some(1));
    let r = report["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "strict")
        .unwrap()
        .clone();
    assert_eq!(r["verdict"], "failed", "{r}");
    assert!(r["failed"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["reason"] == "refused"));
    // Refused at once, not dropped after --drop-after.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let got = wait_output(strict, Duration::from_secs(10));
    let line = json(&got);
    assert_eq!(got.status.code(), Some(1));
    // The receiver's own report names the refused file by its path.
    assert!(
        line["failed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"] == "big.bin" && f["reason"] == "refused"),
        "{line}"
    );
    assert!(
        line["problem"]
            .as_str()
            .unwrap()
            .contains("--max-file-size"),
        "{line}"
    );
    assert!(!base.join("strict/big.bin").exists());
    let ok = wait_output(fine, Duration::from_secs(10));
    assert_eq!(ok.status.code(), Some(0));
    assert_same_tree(&src.join("tree"), &base.join("fine/tree"));
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_push_that_cannot_be_placed_is_refused_at_once_with_the_reason() {
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("blocked");
    let src = base.join("src");
    make_source(&src, 1 << 20);
    // A regular file where the push needs its directory.
    fs::create_dir_all(base.join("r0")).unwrap();
    fs::write(base.join("r0/tree"), b"in the way").unwrap();
    let rx = start_receivers(&base, &["r0"]);
    let started = Instant::now();
    let out = Push::new(&["--receivers", "1"], &[src.join("tree")]).run();
    let report = out.report();
    assert_eq!(out.code(), Some(1), "{report}");
    assert_eq!(report["receivers"][0]["verdict"], "failed", "{report}");
    assert_eq!(report["receivers"][0]["failed"][0]["reason"], "refused");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let got = wait_output(rx.into_iter().next().unwrap(), Duration::from_secs(10));
    let line = json(&got);
    assert!(
        line["problem"]
            .as_str()
            .unwrap()
            .contains("is not a directory"),
        "{line}"
    );
    assert_eq!(fs::read(base.join("r0/tree")).unwrap(), b"in the way");
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_receiver_with_few_file_descriptors_takes_a_tree_of_many_files() {
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("fds");
    let src = base.join("src/many");
    fs::create_dir_all(&src).unwrap();
    for i in 0..1000 {
        fs::write(src.join(format!("f{i:04}")), bytes(10 + i % 300, i as u64)).unwrap();
    }
    // The receiver may hold 256 descriptors: far fewer than the files.
    let dir = base.join("r0");
    let rx = Proc::spawn(
        Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 256 && exec "$0" --dir "$1" --name r0 --json -q --once --timeout 60s --trust "$2""#)
        .arg(RECV)
        .arg(&dir)
        .arg(&test_identity().1));
    let send = Push::new(
        &["--receivers", "1", "--timeout", "60s"],
        std::slice::from_ref(&src),
    )
    .run();
    let report = send.report();
    assert_eq!(send.code(), Some(0), "{report}");
    assert_receivers_complete(vec![rx], &base, &["r0"], &base.join("src"));
    fs::remove_dir_all(&base).unwrap();
}

//! Durable placement, shown by the receiver's own system calls in order
//! (`strace`): a power cut cannot be simulated by a signal, but what it
//! would lose can be read off the order of flushes, renames and the
//! confirmation.

use crate::harness::*;
use mdp_proto::wire::{self, Control, Packet};
use std::fs;
use std::process::Command;
use std::time::Duration;

/// The bytes of a C string as strace prints it with `-xx` (`"\x01\x02…"`),
/// starting at the opening quote of `s`.
fn hex_string(s: &str) -> Option<Vec<u8>> {
    let body = s.strip_prefix('"')?;
    let end = body.find('"')?;
    body[..end]
        .split("\\x")
        .skip(1)
        .map(|h| u8::from_str_radix(h, 16).ok())
        .collect()
}

/// `line` with the printable characters of its `\xHH` escapes (paths)
/// written out.
fn readable(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("\\x") {
        out.push_str(&rest[..i]);
        let hex = rest
            .get(i + 2..i + 4)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' => {
                out.push(b as char);
                rest = &rest[i + 4..];
            }
            _ => {
                out.push_str(&rest[i..i + 2]);
                rest = &rest[i + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// True for a traced send whose datagram is a STATUS saying complete.
fn is_complete_status(line: &str) -> bool {
    let Some(at) = line
        .find("sendto(")
        .and_then(|i| line[i..].find('"').map(|q| i + q))
    else {
        return false;
    };
    let Some(bytes) = hex_string(&line[at..]) else {
        return false;
    };
    matches!(
        wire::parse(&bytes),
        Ok(Packet::Control {
            message: Control::Status(s),
            ..
        }) if s.complete
    )
}

/// The first line at or after `from` that holds every one of `parts`.
fn find(lines: &[&str], from: usize, parts: &[&str]) -> Option<usize> {
    (from..lines.len()).find(|&i| parts.iter().all(|p| lines[i].contains(p)))
}

#[test]
fn a_file_and_its_directory_reach_the_disk_before_the_receiver_confirms() {
    let Some(_net) = network() else {
        return;
    };
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("skipped: strace is not installed (apt-get install strace)");
        return;
    }
    let base = temp_dir("durable");
    let src = base.join("src");
    fs::create_dir_all(src.join("site")).unwrap();
    fs::write(src.join("site/page.bin"), bytes(300_000, 5)).unwrap();
    let dir = base.join("r");
    fs::create_dir_all(&dir).unwrap();
    let dir = fs::canonicalize(&dir).unwrap();
    let trace = base.join("trace");
    let rx = Proc::spawn(
        Command::new("strace")
            .args(["-f", "-y", "-xx", "-s", "4096", "-qq", "-o"])
            .arg(&trace)
            .args([
                "-e",
                "trace=fsync,fdatasync,rename,renameat,renameat2,sendto",
                "--",
                RECV,
                "--dir",
            ])
            .arg(&dir)
            .args([
                "--node-id",
                "r",
                "--json",
                "-q",
                "--once",
                "--timeout",
                "60s",
            ])
            .args(["--trust", &test_identity().1]),
    );
    let out = Push::new(&["--receivers", "1", "--wait", "10s"], &[src.join("site")]).run();
    assert_eq!(out.code(), Some(0), "{}", out.report());
    let got = wait_output(rx, Duration::from_secs(30));
    assert_eq!(
        got.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(
        fs::read(dir.join("site/page.bin")).unwrap(),
        bytes(300_000, 5)
    );
    let raw = fs::read_to_string(&trace).unwrap();
    let raw: Vec<&str> = raw.lines().collect();
    let text: Vec<String> = raw.iter().map(|l| readable(l)).collect();
    let lines: Vec<&str> = text.iter().map(String::as_str).collect();
    let text = text.join("\n");
    // The store renames between directory descriptors (`renameat(<DIR/
    // .mdp-tmp>, "<session>-1.done", <DIR/site>, "page.bin")`; strace -y
    // names them), from the name of its push's own a complete file waits
    // under for its check.
    let into_site = format!("<{}>, \"page.bin\"", dir.join("site").display());
    let rename = find(&lines, 0, &["rename", ".done\"", &into_site])
        .unwrap_or_else(|| panic!("no rename into place:\n{text}"));
    let part = lines[rename]
        .split('"')
        .find(|s| s.ends_with(".done"))
        .expect("the temporary name");
    let part = part.rsplit('/').next().unwrap_or(part);
    // 1. The file's data, before its name.
    let flushed = find(&lines, 0, &["sync(", &format!("/{part}>")])
        .unwrap_or_else(|| panic!("{part} was never flushed:\n{text}"));
    assert!(flushed < rename, "renamed before it was flushed:\n{text}");
    // 2. Its directory and the cache directory, after the rename and
    //    before the complete STATUS.
    let status = find(&lines, rename, &["sendto("])
        .and_then(|i| (i..raw.len()).find(|&j| is_complete_status(raw[j])))
        .unwrap_or_else(|| panic!("no complete STATUS after the rename:\n{text}"));
    for d in [dir.join("site"), dir.clone()] {
        let name = format!("<{}>)", d.display());
        let at = find(&lines, rename, &["fsync(", &name])
            .unwrap_or_else(|| panic!("{} was not flushed after the rename:\n{text}", d.display()));
        assert!(
            at < status,
            "{} flushed after the confirmation:\n{text}",
            d.display()
        );
    }
}

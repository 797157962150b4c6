//! A hundred receiver processes on one host: every copy confirmed and
//! verified, the sender's report naming each. Its printout (wall time,
//! repairs, wire bytes) is a row of docs/BENCHMARKS.md's scale section.

use crate::harness::*;
use std::fs;
use std::time::Instant;

/// Receiver processes in the test.
const RECEIVERS: usize = 100;
/// The diary's file: 4.5 MiB.
const FILE_BYTES: usize = 4608 << 10;

#[test]
fn a_push_to_a_hundred_receiver_processes_is_confirmed_by_every_one() {
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("hundred");
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("file.bin"), bytes(FILE_BYTES, 22)).unwrap();
    let names: Vec<String> = (0..RECEIVERS).map(|i| format!("r{i:03}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let rx = start_receivers(&base.join("rx"), &names);
    let started = Instant::now();
    let send = Push::new(
        &["--receivers", &RECEIVERS.to_string(), "--timeout", "120s"],
        &[src.join("file.bin")],
    )
    .run();
    let wall = started.elapsed();
    let report = send.report();
    assert_eq!(send.code(), Some(0), "sender: {}", send.stderr());
    assert_eq!(report["success"], true);
    let verdicts = report["receivers"].as_array().unwrap();
    assert_eq!(verdicts.len(), RECEIVERS);
    assert!(
        verdicts.iter().all(|r| r["verdict"] == "confirmed"),
        "{report}"
    );
    let stats = &report["stats"];
    println!(
        "{RECEIVERS} receivers, {FILE_BYTES} bytes: {:.2} s wall, {:.2} s in the sender's report, {} repair symbols, {:.3} wire bytes per byte",
        wall.as_secs_f64(),
        report["elapsed_secs"].as_f64().unwrap_or(f64::NAN),
        stats["repair_symbols"],
        stats["wire_bytes_per_file_byte"].as_f64().unwrap_or(f64::NAN),
    );
    // Each copy byte for byte, and nothing left in its temporary area.
    assert_receivers_complete(rx, &base.join("rx"), &names, &src);
    fs::remove_dir_all(&base).unwrap();
}

use crate::harness::*;
use std::fs;
use std::time::{Duration, Instant};

#[test]
fn a_closed_group_with_a_host_that_never_starts_exits_1_naming_it() {
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("closed");
    let src = base.join("src");
    make_source(&src, 1 << 20);
    let rx = start_receivers(&base, &["web1", "web2"]);
    let started = Instant::now();
    let out = Push::new(
        &[
            "--expect",
            "web1,web2,web3",
            "--wait",
            "2s",
            "--drop-after",
            "1s",
            "--timeout",
            "60s",
        ],
        &[src.join("tree")],
    )
    .run();
    let took = started.elapsed();
    let report = out.report();
    println!("sender: {report} (took {took:?})");
    assert_eq!(out.code(), Some(1));
    assert_eq!(report["success"], false);
    assert_eq!(report["expected"], 3);
    assert_eq!(report["confirmed"], 2);
    let receivers = report["receivers"].as_array().unwrap();
    let ghost = receivers
        .iter()
        .find(|r| r["name"] == "web3")
        .expect("the host that never started is in the report");
    assert_eq!(ghost["verdict"], "never_registered");
    assert_eq!(ghost["node"], serde_json::Value::Null);
    assert_eq!(ghost["expected"], true);
    assert!(
        report["problem"]
            .as_str()
            .unwrap()
            .contains("web3 (never registered)"),
        "{report}"
    );
    // Ends after the wait and the drop delay, far below --timeout.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    for (child, name) in rx.into_iter().zip(["web1", "web2"]) {
        let out = wait_output(child, Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(0), "{name}");
        assert_same_tree(&src.join("tree"), &base.join(name).join("tree"));
    }
    fs::remove_dir_all(&base).unwrap();
}

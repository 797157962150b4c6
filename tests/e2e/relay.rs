//! Relays (`mdp-recv --relay-group`): a push crosses to a second group
//! through a relay; its receivers trust the origin's key only, and the
//! origin's report names each of them with the relay it came through.

use crate::harness::*;
use std::fs;
use std::time::Duration;

/// The relay's own group (the origin's is the default 239.255.77.1:7400).
const RELAY_GROUP: &str = "239.255.77.2:7410";

/// A relay that passes pushes on to [`RELAY_GROUP`] on loopback, waiting
/// for `behind` receivers there.
fn relay(base: &std::path::Path, behind: usize) -> Proc {
    receiver(
        &base.join("relay"),
        "relay",
        &[
            "--once",
            "--timeout",
            "120s",
            "--relay-group",
            RELAY_GROUP,
            "--relay-interface",
            "127.0.0.1",
            "--relay-receivers",
            &behind.to_string(),
        ],
    )
}

/// The report's entry for receiver `name`.
fn named(report: &serde_json::Value, name: &str) -> serde_json::Value {
    report["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {report}"))
        .clone()
}

/// Receivers on the relay's group, each in `base/<name>`.
fn behind(base: &std::path::Path, names: &[&str]) -> Vec<Proc> {
    names
        .iter()
        .map(|n| {
            receiver(
                &base.join(n),
                n,
                &["--once", "--timeout", "120s", "--group", RELAY_GROUP],
            )
        })
        .collect()
}

#[test]
fn a_push_through_a_relay_reaches_the_receivers_behind_it_and_the_origin_names_each_with_the_relay()
{
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("relay");
    let src = base.join("src");
    make_source(&src, 3 << 20);
    let names = ["b0", "b1"];
    let rx = behind(&base, &names);
    let relay = relay(&base, names.len());
    let direct = start_receivers(&base, &["d0"]);
    let send = Push::new(
        &["--receivers", "4", "--timeout", "120s"],
        &[src.join("big.bin"), src.join("tree")],
    )
    .run();
    let report = send.report();
    println!("sender: {report}");
    assert_eq!(send.code(), Some(0), "sender: {}", send.stderr());
    let verdicts: Vec<(String, String, Option<String>)> = report["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["verdict"].as_str().unwrap().to_string(),
                r["via"].as_str().map(str::to_string),
            )
        })
        .collect();
    for (name, via) in [
        ("relay", None),
        ("d0", None),
        ("b0", Some("relay")),
        ("b1", Some("relay")),
    ] {
        assert!(
            verdicts.contains(&(name.into(), "confirmed".into(), via.map(str::to_string))),
            "{name}: {verdicts:?}"
        );
    }
    // Every copy byte for byte, the relay's own too, and no spool left.
    assert_receivers_complete(rx, &base, &names, &src);
    assert_receivers_complete(vec![relay], &base, &["relay"], &src);
    assert_receivers_complete(direct, &base, &["d0"], &src);
    fs::remove_dir_all(&base).unwrap();
}

/// A push under way to a relay, the receivers behind it and one
/// receiver `d0` beside it.
struct Relayed {
    base: std::path::PathBuf,
    src: std::path::PathBuf,
    rx: Vec<Proc>,
    relay: Proc,
    direct: Vec<Proc>,
    send: Running,
}

/// Starts 16 MiB at 40 Mbit/s (over 3 s: time to kill something mid-push)
/// to a relay with `names` behind it and `d0` beside it.
fn slow_relayed_push(test: &str, names: &[&str]) -> Relayed {
    let base = temp_dir(test);
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("big.bin"), bytes(16 << 20, 9)).unwrap();
    let rx = behind(&base, names);
    let relay = relay(&base, names.len());
    let direct = start_receivers(&base, &["d0"]);
    let send = Push::new(
        &["--receivers", "4", "--timeout", "120s", "--rate", "40M"],
        &[src.join("big.bin")],
    )
    .start();
    Relayed {
        base,
        src,
        rx,
        relay,
        direct,
        send,
    }
}

#[test]
fn a_relay_killed_mid_push_is_reported_with_the_receivers_behind_it_and_the_rest_finish() {
    let Some(_net) = network() else {
        return;
    };
    let names = ["b0", "b1"];
    let Relayed {
        base,
        src,
        mut rx,
        mut relay,
        direct,
        send,
    } = slow_relayed_push("relay-killed", &names);
    // Well into the data (16 MiB at 40 Mbit/s take over 3 s).
    std::thread::sleep(Duration::from_millis(1500));
    relay.kill();
    let sent = send.finish(Duration::from_secs(60));
    let report = sent.report();
    println!("sender: {report}");
    assert_eq!(sent.code(), Some(1), "sender: {}", sent.stderr());
    let by_name = |n: &str| named(&report, n);
    assert_eq!(by_name("d0")["verdict"], "confirmed");
    assert_eq!(by_name("relay")["verdict"], "dropped");
    for n in names {
        let r = by_name(n);
        assert_eq!(r["verdict"], "dropped", "{r}");
        assert_eq!(r["via"], "relay", "{r}");
    }
    assert_receivers_complete(direct, &base, &["d0"], &src);
    for p in &mut rx {
        p.kill();
    }
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_unicast_relay_tree_of_three_levels_from_one_host_list_reaches_every_host_with_two_copies_from_the_origin(
) {
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("relay-tree");
    let src = base.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("big.bin"), bytes(4 << 20, 5)).unwrap();
    // Eight hosts, two children a node: the origin sends to h0 and h1, h0
    // passes on to h2 and h3, h1 to h4 and h5, and h2 (a relay behind a
    // relay) to h6 and h7. Each host's port + 1 is where its relay sends
    // from.
    let names = ["h0", "h1", "h2", "h3", "h4", "h5", "h6", "h7"];
    let port = |i: usize| 7600 + 2 * i;
    let list: String = (0..names.len())
        .map(|i| format!("127.0.0.1:{}\n", port(i)))
        .collect();
    fs::write(base.join("hosts"), format!("# the fleet\n{list}")).unwrap();
    let rx: Vec<Proc> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            receiver(
                &base.join(n),
                n,
                &[
                    "--once",
                    "--timeout",
                    "120s",
                    "--unicast",
                    "--relay-tree",
                    "--group",
                    &format!("239.255.77.1:{}", port(i)),
                ],
            )
        })
        .collect();
    let tree = base.join("hosts");
    let send = Push::new(
        &[
            "--tree",
            tree.to_str().unwrap(),
            "--fan-out",
            "2",
            "--timeout",
            "120s",
        ],
        &[src.join("big.bin")],
    )
    .run();
    let report = send.report();
    println!("sender: {report}");
    assert_eq!(send.code(), Some(0), "sender: {}", send.stderr());
    let by_name = |n: &str| named(&report, n);
    for (n, via) in [
        ("h0", None),
        ("h1", None),
        ("h2", Some("h0")),
        ("h3", Some("h0")),
        ("h4", Some("h1")),
        ("h5", Some("h1")),
        // Behind h2, behind h0: named with the first relay.
        ("h6", Some("h0")),
        ("h7", Some("h0")),
    ] {
        let r = by_name(n);
        assert_eq!(r["verdict"], "confirmed", "{r}");
        assert_eq!(r["via"].as_str(), via, "{r}");
    }
    // The origin sent two copies, not eight.
    let sent = report["stats"]["bytes_sent"].as_f64().unwrap();
    let copies = sent / (4 << 20) as f64;
    println!("the origin sent {copies:.2} copies of the push");
    assert!(copies < 2.3, "{copies}");
    assert_receivers_complete(rx, &base, &names, &src);
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_receiver_behind_a_relay_killed_mid_push_is_reported_through_it_and_the_rest_confirm() {
    let Some(_net) = network() else {
        return;
    };
    let names = ["b0", "b1"];
    let Relayed {
        base,
        src,
        mut rx,
        relay,
        direct,
        send,
    } = slow_relayed_push("relay-behind-killed", &names);
    // Well into the data (16 MiB at 40 Mbit/s take over 3 s).
    std::thread::sleep(Duration::from_millis(1500));
    rx[0].kill();
    let sent = send.finish(Duration::from_secs(60));
    let report = sent.report();
    println!("sender: {report}");
    assert_eq!(sent.code(), Some(1), "sender: {}", sent.stderr());
    let by_name = |n: &str| named(&report, n);
    let b0 = by_name("b0");
    assert_ne!(b0["verdict"], "confirmed", "{b0}");
    assert_eq!(b0["via"], "relay", "{b0}");
    assert_eq!(by_name("b1")["verdict"], "confirmed");
    assert_eq!(by_name("b1")["via"], "relay");
    assert_eq!(by_name("relay")["verdict"], "confirmed");
    assert_eq!(by_name("d0")["verdict"], "confirmed");
    let rx1 = rx.remove(1);
    assert_receivers_complete(vec![rx1], &base, &["b1"], &src);
    assert_receivers_complete(vec![relay], &base, &["relay"], &src);
    assert_receivers_complete(direct, &base, &["d0"], &src);
    fs::remove_dir_all(&base).unwrap();
}

//! Configuration files: a receiver and a sender whose settings live in
//! TOML files (the sender's in a profile) push with short command lines,
//! and a typo stops a program at start-up with its line named.

use crate::harness::*;
use std::fs;
use std::process::Command;
use std::time::Duration;

#[test]
fn a_receiver_and_a_sender_set_up_by_files_push_with_short_command_lines() {
    let Some(_net) = network() else { return };
    let base = temp_dir("config");
    let src = base.join("src");
    make_source(&src, 64 << 10);
    let dir = base.join("r0");
    let recv_toml = base.join("recv.toml");
    fs::write(
        &recv_toml,
        format!(
            "# as /etc/mdp/recv.toml\ndir = {dir:?}\ntrust = [{:?}]\nnode-id = \"cfg\"\nonce = true\ntimeout = \"60s\"\njson = true\nquiet = true\n",
            test_identity().1
        ),
    )
    .unwrap();
    let send_toml = base.join("send.toml");
    fs::write(
        &send_toml,
        format!(
            "json = true\ntimeout = \"60s\"\nidentity = {:?}\n\n[profile.site]\nexpect = [\"cfg\"]\npaths = [{:?}]\n",
            test_identity().0,
            src.join("tree")
        ),
    )
    .unwrap();
    let rx = Proc::spawn(Command::new(RECV).arg("--config").arg(&recv_toml));
    let out = Command::new(SEND)
        .env("XDG_CACHE_HOME", base.join("cache"))
        .arg("--config")
        .arg(&send_toml)
        .args(["--profile", "site"])
        .output()
        .unwrap();
    let sent = Sent(out);
    assert_eq!(sent.code(), Some(0), "{}\n{}", sent.stdout(), sent.stderr());
    let report = sent.report();
    assert_eq!(report["receivers"][0]["name"], "cfg", "{report}");
    let got = wait_output(rx, Duration::from_secs(30));
    assert_eq!(
        got.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let line = json(&got);
    assert_eq!(line["complete"], true);
    // The receiver's report says who, when, what and how much.
    assert_eq!(line["node"], "cfg", "{line}");
    assert_eq!(line["roots"], serde_json::json!(["tree"]), "{line}");
    assert!(line["bytes"].as_u64().unwrap() > 0, "{line}");
    for at in ["started_at", "ended_at"] {
        let t = line[at].as_str().unwrap();
        assert!(
            t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
            "{line}"
        );
    }
    assert_eq!(
        report["roots"],
        serde_json::json!([src.join("tree").display().to_string()])
    );
    assert!(report["started_at"].as_str().unwrap() <= report["ended_at"].as_str().unwrap());
    assert_same_tree(&src.join("tree"), &dir.join("tree"));
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_typo_in_a_configuration_file_stops_the_program_and_names_the_line() {
    let base = temp_dir("config-typo");
    fs::create_dir_all(&base).unwrap();
    let bad = base.join("recv.toml");
    fs::write(&bad, "dir = \"/tmp/x\"\n# the network\ninterfce = \"lo\"\n").unwrap();
    let out = Command::new(RECV)
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(
        err.trim(),
        format!(
            "mdp-recv: error: {}:3: unknown setting `interfce` (did you mean `interface`?)",
            bad.display()
        )
    );
    // A value the option refuses, in a send profile.
    let bad = base.join("send.toml");
    fs::write(&bad, "[profile.nightly]\nmax-rate = \"fast\"\n").unwrap();
    let out = Command::new(SEND)
        .arg("--config")
        .arg(&bad)
        .args(["--profile", "nightly", "x"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with(&format!(
            "mdp-send: error: {}:2: max-rate: invalid value 'fast'",
            bad.display()
        )),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    fs::remove_dir_all(&base).unwrap();
}

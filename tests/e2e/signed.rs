//! Signed pushes with the real binaries: identities made by
//! `--gen-identity`, a receiver that trusts one key, and three senders:
//! unsigned, signed by another key, signed by the trusted one.

use crate::harness::*;
use std::fs;
use std::path::Path;

fn entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".mdp-tmp")
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_receiver_that_trusts_a_key_takes_only_pushes_signed_by_it() {
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("signed");
    fs::create_dir_all(&base).unwrap();
    let src = base.join("src");
    make_source(&src, 256 << 10);
    let trusted = base.join("trusted.key");
    let other = base.join("other.key");
    let line = gen_identity(&trusted);
    gen_identity(&other);
    fs::write(
        base.join("trust"),
        format!("# the release host\nrelease {line}\n"),
    )
    .unwrap();
    let trust = base.join("trust");
    let dir = base.join("web1");
    let rx = receiver(
        &dir,
        "web1",
        &["--trust", trust.to_str().unwrap(), "--timeout", "60s"],
    );
    let push = |extra: &[&str]| {
        let mut args = vec!["--receivers", "1", "--wait", "1s", "--timeout", "4s"];
        args.extend_from_slice(extra);
        Push::unsigned(&args, &[src.join("tree")]).run()
    };
    // Unsigned, then signed by a key the receiver does not trust: nothing
    // registers, nothing lands.
    for (what, out) in [
        ("unsigned", push(&[])),
        ("untrusted", push(&["--identity", other.to_str().unwrap()])),
    ] {
        let report = out.report();
        assert_ne!(out.code(), Some(0), "{what}: {report}");
        assert_eq!(
            report["receivers"].as_array().unwrap().len(),
            0,
            "{what}: {report}"
        );
        assert!(entries(&dir).is_empty(), "{what}: {:?}", entries(&dir));
    }
    // Signed by the trusted key: delivered.
    let out = push(&["--identity", trusted.to_str().unwrap()]);
    assert_eq!(out.code(), Some(0), "{}", out.report());
    assert_same_tree(&src.join("tree"), &dir.join("tree"));
    let (_, stderr) = stop_service(rx);
    // Each refusal is said once, with its reason.
    assert!(stderr.contains("the push is not signed"), "{stderr}");
    assert!(stderr.contains("signed by SHA256:"), "{stderr}");
    assert_eq!(stderr.matches("refused push").count(), 2, "{stderr}");
    fs::remove_dir_all(&base).unwrap();
}

/// A closed group known by key: a receiver that signs its feedback is
/// counted; with it gone, REGISTER and STATUS forged in its name (as the
/// issue found: "web1 confirmed" with no web1 running) are not.
#[test]
fn a_sender_with_keys_counts_only_feedback_signed_by_the_listed_key() {
    use crate::forge::injector;
    use mdp_proto::wire::{self, Control, Echo, Packet, Register, Status};
    use mdp_proto::NodeId;
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("keyed-group");
    fs::create_dir_all(&base).unwrap();
    let src = base.join("src");
    make_source(&src, 64 << 10);
    let web1_key = base.join("web1.key");
    let line = gen_identity(&web1_key);
    let expect = base.join("web-hosts");
    fs::write(&expect, format!("web1 {line}\n")).unwrap();
    let expect_arg = expect.to_str().unwrap();
    // web1 with its key: confirmed.
    let rx = receiver(
        &base.join("web1"),
        "web1",
        &[
            "--once",
            "--timeout",
            "60s",
            "--identity",
            web1_key.to_str().unwrap(),
        ],
    );
    let out = Push::new(
        &[
            "--expect-file",
            expect_arg,
            "--wait",
            "10s",
            "--timeout",
            "60s",
        ],
        &[src.join("tree")],
    )
    .run();
    assert_eq!(out.code(), Some(0), "{}", out.report());
    let rx_out = wait_output(rx, std::time::Duration::from_secs(30));
    assert_eq!(rx_out.status.code(), Some(0));
    assert_same_tree(&src.join("tree"), &base.join("web1").join("tree"));
    // No web1 now: a forger answers in its name.
    let running = Push::new(
        &[
            "--expect-file",
            expect_arg,
            "--wait",
            "2s",
            "--drop-after",
            "1s",
            "--timeout",
            "8s",
        ],
        &[src.join("tree")],
    )
    .start();
    let (sock, ep) = injector();
    let listen = mdp_net::socket::joined(&ep, ep.group.port()).unwrap();
    listen.set_nonblocking(false).unwrap();
    listen
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let session = loop {
        let n = listen.recv(&mut buf).expect("the sender announces");
        if let Ok(Packet::Control {
            session,
            message: Control::Announce(_),
        }) = wire::parse(&buf[..n])
        {
            break session;
        }
    };
    let node = NodeId(0xf0f0);
    for _ in 0..20 {
        for m in [
            Control::Register(Register {
                node,
                name: "web1".into(),
                echo: Echo::default(),
                have: vec![],
                have_blocks: vec![],
                more: false,
                signed: None,
            }),
            Control::Status(Status {
                node,
                name: "web1".into(),
                echo: Echo::default(),
                complete: true,
                verified: 3,
                missing: vec![],
                failed: vec![],
                hook: None,
                signed: None,
            }),
        ] {
            let mut d = Vec::new();
            wire::write_control(&mut d, session, &m);
            let _ = sock.send_to(&d, ep.feedback());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = running.finish(std::time::Duration::from_secs(30));
    let report = out.report();
    assert_eq!(out.code(), Some(1), "{report}");
    let web1 = report["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "web1")
        .unwrap();
    assert_eq!(web1["verdict"], "never_registered", "{report}");
    // The report names the key web1 must sign with.
    assert!(
        web1["key"]
            .as_str()
            .is_some_and(|k| k.starts_with("SHA256:")),
        "{report}"
    );
    fs::remove_dir_all(&base).unwrap();
}

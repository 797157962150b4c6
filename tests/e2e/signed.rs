//! Signed pushes with the real binaries: identities made by
//! `--gen-identity`, a receiver that trusts one key, and three senders:
//! unsigned, signed by another key, signed by the trusted one.

use crate::harness::*;
use std::fs;
use std::path::Path;
use std::process::Command;

fn gen_identity(path: &Path) -> String {
    let out = Command::new(SEND)
        .arg("--gen-identity")
        .arg(path)
        .output()
        .expect("mdp-send runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

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
        Push::new(&args, &[src.join("tree")]).run()
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

use crate::harness::*;
use std::fs;
use std::process::Command;

#[test]
fn pushes_a_64_mib_file_and_a_nested_tree_to_three_receivers() {
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("push3");
    let src = base.join("src");
    make_source(&src, 64 << 20);
    push_to_three(&base, &src);
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn usage_errors_exit_2_with_one_line_that_says_what_to_do() {
    let out = Command::new(SEND).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PATH"));
    let out = Command::new(SEND)
        .args(["--rate", "fast", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("800M"), "{err}");
    let out = Command::new(SEND)
        .args(["--group", "10.1.2.3:5", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("239.0.0.0/8"));
    let out = Command::new(SEND)
        .arg("/nonexistent/mdp-e2e")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<_> = err
        .lines()
        .filter(|l| l.starts_with("mdp-send: error:"))
        .collect();
    assert_eq!(
        errors,
        ["mdp-send: error: cannot read /nonexistent/mdp-e2e: No such file or directory (os error 2): check the path"],
        "{err}"
    );
    let out = Command::new(RECV).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    for bin in [SEND, RECV] {
        let out = Command::new(bin).arg("--help").output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("Examples:") && help.contains("Exit status:"),
            "{help}"
        );
        let out = Command::new(bin).arg("-h").output().unwrap();
        assert_eq!(out.status.code(), Some(0));
    }
}

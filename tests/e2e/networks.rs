use crate::harness::*;
use std::fs;
use std::process::Command;
use std::time::Duration;

#[test]
fn pushes_over_ipv6_loopback_multicast() {
    let Some(_net) = network_as_root() else {
        return;
    };
    let ok = Command::new("ip")
        .args([
            "-6",
            "route",
            "add",
            "local",
            "ff15::/16",
            "dev",
            "lo",
            "table",
            "local",
        ])
        .status()
        .unwrap();
    assert!(ok.success(), "IPv6 multicast route on loopback");
    let base = temp_dir("ipv6");
    let src = base.join("src");
    make_source(&src, 4 << 20);
    let net = ["--group", "[ff15::77]:7400", "--interface", "::1"];
    let rx: Vec<_> = ["r0", "r1"]
        .iter()
        .map(|n| {
            let mut extra = vec!["--once", "--timeout", "60s"];
            extra.extend(net);
            receiver(&base.join(n), n, &extra)
        })
        .collect();
    let mut args = vec!["--receivers", "2", "--timeout", "60s"];
    args.extend(net);
    let send = Push::new(&args, &[src.join("big.bin"), src.join("tree")]).run();
    let report = send.report();
    assert_eq!(send.code(), Some(0), "{report}");
    assert_receivers_complete(rx, &base, &["r0", "r1"], &src);
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn unicast_mode_pushes_to_each_receiver_over_ipv4_and_ipv6() {
    let Some(_net) = network() else {
        return;
    };
    let base = temp_dir("unicast");
    let src = base.join("src");
    make_source(&src, 4 << 20);
    for (family, local) in [("v4", "127.0.0.1"), ("v6", "::1")] {
        let dest = |port: u16| {
            if family == "v4" {
                format!("127.0.0.1:{port}")
            } else {
                format!("[::1]:{port}")
            }
        };
        let names = [format!("{family}-a"), format!("{family}-b")];
        let rx: Vec<Proc> = names
            .iter()
            .zip([7500u16, 7600])
            .map(|(n, port)| {
                let group = if family == "v4" {
                    format!("239.255.77.1:{port}")
                } else {
                    format!("[ff15::77]:{port}")
                };
                receiver(
                    &base.join(n),
                    n,
                    &[
                        "--once",
                        "--timeout",
                        "60s",
                        "--unicast",
                        "--interface",
                        local,
                        "--group",
                        &group,
                    ],
                )
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let group = if family == "v4" {
            "239.255.77.1:7400"
        } else {
            "[ff15::77]:7400"
        };
        let out = Push::new(
            &[
                "--receivers",
                "2",
                "--interface",
                local,
                "--group",
                group,
                "--to",
                &dest(7500),
                "--to",
                &dest(7600),
            ],
            &[src.join("big.bin"), src.join("tree")],
        )
        .run();
        let report = out.report();
        println!("{family}: {report}");
        assert_eq!(out.code(), Some(0), "{family}: {report}");
        // Two copies of the data, one per receiver.
        let wire = report["stats"]["wire_bytes_per_file_byte"]
            .as_f64()
            .unwrap();
        assert!((2.0..2.3).contains(&wire), "{family}: {wire}");
        let n: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_receivers_complete(rx, &base, &n, &src);
    }
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn interfaces_by_name_and_dscp_marks_reach_the_wire() {
    let Some(_net) = network_as_root() else {
        return;
    };
    // Count, in the kernel, the pushes' packets that carry DSCP AF11 (10).
    let nft = |args: &str| {
        let ok = Command::new("sh")
            .args(["-c", &format!("nft {args}")])
            .status()
            .unwrap();
        assert!(ok.success(), "nft {args}");
    };
    nft("add table inet mdpdscp");
    nft("'add chain inet mdpdscp out { type filter hook output priority 0 ; }'");
    nft("add rule inet mdpdscp out ip dscp af11 udp dport 7400 counter");
    let base = temp_dir("dscp");
    let src = base.join("src");
    make_source(&src, 1 << 20);
    let rx = receiver(
        &base.join("r0"),
        "r0",
        &["--once", "--timeout", "60s", "--interface", "lo"],
    );
    let send = Push::new(
        &["--receivers", "1", "--interface", "lo", "--dscp", "10"],
        &[src.join("tree")],
    )
    .run();
    assert_eq!(send.code(), Some(0), "{}", send.report());
    assert_eq!(
        wait_output(rx, Duration::from_secs(20)).status.code(),
        Some(0)
    );
    assert_same_tree(&src.join("tree"), &base.join("r0/tree"));
    let listed = Command::new("nft")
        .args(["list", "chain", "inet", "mdpdscp", "out"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&listed.stdout);
    let packets: u64 = text
        .split("counter packets ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        packets > 10,
        "DSCP-marked data packets seen: {packets}\n{text}"
    );
    // A name that is not an interface, or an address the host lacks, is
    // refused in one line before anything is sent.
    for (bad, says) in [
        ("eth99", "no interface named"),
        ("10.9.9.9", "no interface of this host"),
    ] {
        let out = Command::new(SEND)
            .args(["--interface", bad])
            .arg(src.join("tree"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says) && err.lines().count() == 1, "{err}");
    }
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_sender_on_two_networks_reaches_receivers_on_either_and_survives_one_failing() {
    let Some(_net) = network_as_root() else {
        return;
    };
    // Two networks inside this namespace: veth pairs va0-va1 and vb0-vb1.
    for (n, net) in [("a", 1), ("b", 2)] {
        sh(&format!("ip link add v{n}0 type veth peer name v{n}1"));
        sh(&format!("ip addr add 10.91.{net}.1/24 dev v{n}0"));
        sh(&format!("ip addr add 10.91.{net}.2/24 dev v{n}1"));
        sh(&format!("ip link set v{n}0 up && ip link set v{n}1 up"));
    }
    // Both ends are this host: accept its own addresses as sources.
    sh("for f in /proc/sys/net/ipv4/conf/*/accept_local; do echo 1 > $f; done");
    sh("for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > $f; done");
    let base = temp_dir("multi");
    let src = base.join("src");
    make_source(&src, 4 << 20);
    let push = |names: &[(&str, &[&str])]| {
        let rx: Vec<Proc> = names
            .iter()
            .map(|(n, ifaces)| {
                let mut extra = vec!["--once", "--timeout", "60s"];
                for i in *ifaces {
                    extra.extend(["--interface", i]);
                }
                receiver(&base.join(n), n, &extra)
            })
            .collect();
        let count = names.len().to_string();
        let out = Push::new(
            &[
                "--receivers",
                &count,
                "--interface",
                "va0",
                "--interface",
                "vb0",
                "--timeout",
                "60s",
            ],
            &[src.join("big.bin"), src.join("tree")],
        )
        .run();
        let n: Vec<String> = names.iter().map(|(n, _)| n.to_string()).collect();
        (out, rx, n)
    };
    // Receivers on network A, on network B, and on both.
    let (out, rx, n) = push(&[
        ("on-a", &["va1"]),
        ("on-b", &["vb1"]),
        ("on-both", &["va1", "vb1"]),
    ]);
    assert_eq!(out.code(), Some(0), "{}", out.report());
    let n: Vec<&str> = n.iter().map(String::as_str).collect();
    assert_receivers_complete(rx, &base, &n, &src);
    for d in ["on-a", "on-b", "on-both"] {
        fs::remove_dir_all(base.join(d)).unwrap();
    }
    // Network A fails (everything arriving on va1 dropped): the receiver
    // on both networks completes through B.
    sh("nft add table inet mdpnet");
    sh("nft 'add chain inet mdpnet in { type filter hook input priority 0 ; }'");
    sh("nft add rule inet mdpnet in iifname va1 udp dport 7400 drop");
    let (out, rx, n) = push(&[("on-b", &["vb1"]), ("on-both", &["va1", "vb1"])]);
    assert_eq!(out.code(), Some(0), "{}", out.report());
    let n: Vec<&str> = n.iter().map(String::as_str).collect();
    assert_receivers_complete(rx, &base, &n, &src);
    fs::remove_dir_all(&base).unwrap();
}

use crate::harness::*;
use std::fs;
use std::time::Duration;

/// IP fragments this namespace's kernel has made so far (`FragCreates`).
fn fragments_made() -> u64 {
    let snmp = fs::read_to_string("/proc/net/snmp").unwrap();
    let mut ip = snmp.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (ip.next().unwrap(), ip.next().unwrap());
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "FragCreates")
        .map(|(_, v)| v.parse().unwrap())
        .expect("FragCreates in /proc/net/snmp")
}

#[test]
fn symbols_fill_a_packet_of_the_mtu_and_larger_ones_are_named_at_both_ends() {
    let Some(_net) = network_as_root() else {
        return;
    };
    // Loopback with an Ethernet's MTU instead of its 64 KiB.
    sh("ip link set lo mtu 1500");
    let base = temp_dir("mtu");
    let src = base.join("src");
    make_source(&src, 1 << 20);
    let push = |name: &str, extra: &[&str]| {
        let rx = receiver(&base.join(name), name, &["--once", "--timeout", "60s"]);
        let before = fragments_made();
        let mut args = vec!["--receivers", "1"];
        args.extend(extra);
        let send = Push::new(&args, &[src.join("tree")]).run();
        assert_eq!(send.code(), Some(0), "{}", send.report());
        let got = wait_output(rx, Duration::from_secs(20));
        assert_eq!(got.status.code(), Some(0));
        assert_same_tree(&src.join("tree"), &base.join(name).join("tree"));
        (
            send.report(),
            send.stderr(),
            String::from_utf8_lossy(&got.stderr).into_owned(),
            fragments_made() - before,
        )
    };
    // By default a DATA datagram fills one 1500-byte packet, no more.
    let (report, send_err, recv_err, fragments) = push("fit", &[]);
    assert_eq!(report["symbol_size"], 1444, "{report}");
    assert_eq!(fragments, 0, "{send_err}");
    assert!(!send_err.contains("do not fit"), "{send_err}");
    assert!(!recv_err.contains("do not fit"), "{recv_err}");
    // Larger symbols still arrive, in fragments, and both ends say why
    // that is worse and what fits.
    let (report, send_err, recv_err, fragments) = push("big", &["--symbol-size", "4000"]);
    assert_eq!(report["symbol_size"], 4000, "{report}");
    assert!(fragments > 0);
    assert!(
        send_err.contains("4000-byte symbols do not fit in one packet on --interface 127.0.0.1, whose MTU is 1500 bytes")
            && send_err.contains("--symbol-size 1444 or less"),
        "{send_err}"
    );
    assert!(
        recv_err.contains("the sender's 4000-byte symbols do not fit in one packet on this interface, whose MTU is 1500 bytes")
            && recv_err.contains("--symbol-size 1444` or less"),
        "{recv_err}"
    );
    fs::remove_dir_all(&base).unwrap();
}

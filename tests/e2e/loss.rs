use crate::harness::*;
use std::fs;

#[test]
fn a_push_through_5_percent_loss_arrives_intact_everywhere() {
    let Some(_net) = network_as_root() else {
        return;
    };
    // Drop 5 % of the datagrams arriving on either port. On one host the
    // kernel loops multicast back once for all sockets, so this loss is
    // shared by the receivers (correlated); the simulator covers
    // independent loss.
    if !nft_rules(&[
        "add table inet mdploss",
        "add chain inet mdploss in { type filter hook input priority 0; }",
        "add rule inet mdploss in udp dport 7400 numgen random mod 100 < 5 drop",
        "add rule inet mdploss in udp dport 7401 numgen random mod 100 < 5 drop",
    ]) {
        return;
    }
    let base = temp_dir("loss");
    let src = base.join("src");
    make_source(&src, 16 << 20);
    let report = push_to_three(&base, &src);
    let repairs = report["stats"]["repair_symbols"].as_u64().unwrap();
    assert!(repairs > 0, "5 % loss needed repairs");
    let wire = report["stats"]["wire_bytes_per_file_byte"]
        .as_f64()
        .unwrap();
    assert!(wire < 1.3, "{wire} wire bytes per file byte at 5 % loss");
    fs::remove_dir_all(&base).unwrap();
}

//! Delta pushes (issue 21): receivers holding older versions of a file at
//! its path start from the blocks of it that the new version shares, and
//! the sender sends only the blocks some receiver lacks.

use mdp_sim::{Content, SimConfig, World};
use std::collections::HashMap;

/// Bytes per block in these tests: 16 symbols of 1000 bytes.
const BLOCK: usize = 16_000;
const BLOCKS: usize = 64;

/// `data` with each of `blocks` changed (one byte flipped in each).
fn changed(data: &[u8], blocks: &[usize]) -> Vec<u8> {
    let mut v = data.to_vec();
    for &b in blocks {
        v[b * BLOCK + 77] ^= 0x5a;
    }
    v
}

fn config(receivers: usize, seed: u64) -> SimConfig {
    let mut c = SimConfig::new(receivers, seed);
    c.sender.symbol_size = 1000;
    c.sender.block_k = 16;
    c.sender.parity = 8;
    c.sender.expected_receivers = receivers as u32;
    c
}

#[test]
fn receivers_with_different_old_versions_each_get_what_they_lack_and_no_more_is_sent() {
    let new = Content::random_bytes(BLOCKS * BLOCK, 21);
    let content = Content::new(&[], vec![("disk.img".into(), new.clone())]);
    let old = |v: Vec<u8>| HashMap::from([("disk.img".to_string(), v)]);
    // Four hosts, four histories: two different edits, a shorter old
    // version with an edit of its own, and the new version already.
    let mut c = config(4, 2101);
    c.preexisting = vec![
        old(changed(&new, &[3, 10])),
        old(changed(&new, &[10, 20])),
        old(changed(&new[..50 * BLOCK], &[30])),
        old(new.clone()),
    ];
    let r = World::new(c, content.clone()).run();
    let report = r.report.clone().expect("finished");
    assert!(report.success, "{:?}", report.problem);
    for (i, rx) in r.receivers.iter().enumerate() {
        assert!(
            rx.files["disk.img"] == new,
            "r{i} does not hold the new version"
        );
    }
    // Lacked by some receiver: blocks 3, 10, 20, 30 and 50..63, 18 of 64.
    let lacked = 18.0 / BLOCKS as f64;
    let wire = r.wire_per_byte();
    assert!(
        wire < lacked * 1.25,
        "sent {wire:.3} bytes per file byte for {lacked:.3} lacked"
    );
    assert!(
        wire > lacked * 0.9,
        "sent {wire:.3} bytes per file byte: less than was lacked"
    );

    // The control: the same push to hosts with nothing sends it all.
    let r = World::new(config(4, 2102), content).run();
    assert!(r.report.as_ref().expect("finished").success);
    assert!(r.wire_per_byte() > 0.95, "{:.3}", r.wire_per_byte());
}

#[test]
fn an_old_version_whose_blocks_all_differ_is_sent_whole_and_replaced() {
    let new = Content::random_bytes(BLOCKS * BLOCK, 22);
    let content = Content::new(&[], vec![("db".into(), new.clone())]);
    let mut c = config(2, 2201);
    let unrelated = Content::random_bytes(BLOCKS * BLOCK, 23);
    c.preexisting = vec![
        HashMap::from([("db".to_string(), unrelated)]),
        HashMap::new(),
    ];
    let r = World::new(c, content).run();
    assert!(r.report.as_ref().expect("finished").success);
    for rx in &r.receivers {
        assert!(rx.files["db"] == new);
    }
    assert!(r.wire_per_byte() > 0.95);
}

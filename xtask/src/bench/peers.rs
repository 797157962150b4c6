//! The comparison with udpcast and UFTP: its cases (file sizes, receiver
//! counts, loss, slow links, a tree of 10,000 files; on the bridge and on
//! one host's loopback), the peers' fastest settings, and the table it
//! writes to stdout and target/bench/peers.{md,json}.
//!
//! **Invariant:** each case runs on a network of exactly its hosts, and a
//! network's namespaces are gone before the next one is made.

use super::data::{data_file, data_older, data_tree};
use super::floor::blast_segment;
use super::net::{Loopback, Net, Place};
use super::packages::ensure_tools;
use super::table::render;
use super::tools::{fastest, row, sweep, Older, Tool};
use super::xfs::Xfs;
use crate::root;
use anyhow::Result;
use std::fs;
use std::path::{Path, PathBuf};

/// The comparison with udpcast and UFTP; with `only`, just the cases whose
/// name contains it (the peers' sweeps and the floor always run).
pub fn peers(bin: &Path, runs: usize, only: Option<&str>) -> Result<()> {
    let wanted = |case: &str| only.is_none_or(|o| case.contains(o));
    ensure_tools()?;
    let work = root().join("target/bench/peers");
    fs::create_dir_all(&work)?;
    let small = data_file(&work, "file-4.5MiB.bin", 4608 << 10, 11)?;
    let big = data_file(&work, "file-256MiB.bin", 256 << 20, 12)?;
    let tree = data_tree(&work, "tree-10k", 100, 100)?;
    // A 1 GiB file and an older version of it with 1 MiB changed, in 16
    // runs of 64 KiB spread over it, for the delta rows; made only when a
    // case needs them.
    let gib = if wanted("1 GiB") {
        let new = data_file(&work, "file-1GiB.bin", 1 << 30, 13)?;
        let older = work.join("older");
        fs::create_dir_all(&older)?;
        let old = data_older(&older, "file-1GiB.bin", &new, 16, 64 << 10)?;
        Some((new, old))
    } else {
        None
    };
    // Each case runs on a network of exactly its hosts. The bridge floods
    // multicast to every port (there is no IGMP querier), and a host idle
    // in a case would still take every frame, on the same two cores as
    // the hosts under test.
    let (floor4, read4) = {
        let net = Net::new(5)?;
        (net.floor(256 << 20, false)?, net.floor(256 << 20, true)?)
    };
    let mut net = Some(Net::new(2)?);
    let floor = net.as_ref().expect("just made").floor(256 << 20, false)?;
    let read = net.as_ref().expect("just made").floor(256 << 20, true)?;
    eprintln!(
        "==> testbed floor: 256 MiB of datagrams from h0 to 1 / 4 hosts that do not read: {floor:.2} / {floor4:.2} s; that read and drop them: {read:.2} / {read4:.2} s"
    );
    let tool = |name, setting: &str, extra: &[&str]| Tool {
        name,
        setting: setting.to_string(),
        extra: extra.iter().map(|s| s.to_string()).collect(),
    };
    eprintln!("==> fastest settings of the peers (256 MiB to 1 receiver, one run each)");
    let bridge = Place::Bridge(net.as_ref().expect("just made"));
    let (udpcast, _) = sweep(
        bridge,
        bin,
        &work,
        vec![
            tool("udpcast", "", &[]),
            tool("udpcast", "--full-duplex", &["--full-duplex"]),
            tool("udpcast", "--max-bitrate 900m", &["--max-bitrate", "900m"]),
        ],
        &big,
    )?;
    let (uftp, uftp_seen) = sweep(
        bridge,
        bin,
        &work,
        vec![
            tool("uftp", "-R -1", &["-R", "-1"]),
            tool("uftp", "-R 1000000", &["-R", "1000000"]),
            tool("uftp", "-R -1 -b 8800", &["-R", "-1", "-b", "8800"]),
        ],
        &big,
    )?;
    let mdp = tool("mdp", "", &[]);
    let mdp_floor = tool("mdp", "--min-rate 1G", &["--min-rate", "1G"]);
    // Signed, and encrypted for receivers listed by key (keys made per run).
    let mdp_encrypted = tool("mdp", "encrypted", &[]);
    // Under loss on the link, UFTP's 8800-byte datagrams (six IP fragments
    // each) are lost whenever one fragment is: 26 % at 5 % frame loss. The
    // loss cases use its fastest setting whose datagrams fit a frame.
    let uftp_lossy =
        fastest(&uftp_seen, |t| !t.setting.contains("-b 8800")).unwrap_or(uftp.clone());
    let tools = [mdp.clone(), udpcast, uftp];
    struct Case {
        name: String,
        file: PathBuf,
        n: usize,
        loss: u32,
        limit_all: u32,
        slow_one: u32,
        /// What each receiver holds before the push (mdp's alone).
        old: Option<(PathBuf, bool)>,
    }
    let case = |name: &str, file: &Path, n, loss, limit_all, slow_one| Case {
        name: name.to_string(),
        file: file.to_path_buf(),
        n,
        loss,
        limit_all,
        slow_one,
        old: None,
    };
    let cases = [
        case("4.5 MiB to 1", &small, 1, 0, 0, 0),
        case("4.5 MiB to 4", &small, 4, 0, 0, 0),
        case("256 MiB to 1", &big, 1, 0, 0, 0),
        case("256 MiB to 4", &big, 4, 0, 0, 0),
        case("256 MiB to 1, 5 % loss", &big, 1, 5, 0, 0),
        case("256 MiB to 4, 5 % loss each", &big, 4, 5, 0, 0),
        case("256 MiB to 1, link 500 Mbit/s", &big, 1, 0, 500, 0),
        case("256 MiB to 4, links 500 Mbit/s", &big, 4, 0, 500, 0),
        case(
            "256 MiB to 4, one link 10× slower (200 Mbit/s)",
            &big,
            4,
            0,
            0,
            200,
        ),
        case("10,000 files (63 MiB) to 4", &tree, 4, 0, 0, 0),
    ];
    let mut cases = cases.into_iter().collect::<Vec<_>>();
    if let Some((new, old)) = &gib {
        // On tmpfs every copy is a copy; on XFS with reflink the copy of an
        // unchanged block is a shared extent.
        for fs in ["tmpfs", "XFS with reflink"] {
            cases.push(case(&format!("1 GiB to 4 (to {fs})"), new, 4, 0, 0, 0));
            // The older version placed by an earlier push (the receivers'
            // indexes know its blocks), and copied in (they read it).
            for (how, pushed) in [("pushed before", true), ("copied in", false)] {
                cases.push(Case {
                    old: Some((old.clone(), pushed)),
                    ..case(
                        &format!(
                            "1 GiB to 4 (to {fs}) holding a version with 1 MiB changed in 16 places, {how} (delta)"
                        ),
                        new,
                        4,
                        0,
                        0,
                        0,
                    )
                });
            }
        }
    }
    let mut rows = Vec::new();
    for c in cases.iter().filter(|c| wanted(&c.name)) {
        if net.as_ref().is_none_or(|n| n.receivers() != c.n) {
            drop(net.take()); // its namespaces go before the next ones are made
            net = Some(Net::new(c.n + 1)?);
        }
        let net = net.as_ref().expect("made above");
        for i in 1..=c.n {
            net.loss(i, c.loss)?;
            net.limit(
                i,
                if c.slow_one > 0 && i == c.n {
                    c.slow_one
                } else {
                    c.limit_all
                },
            )?;
        }
        let mut these = tools.to_vec();
        if c.loss > 0 {
            these[2] = uftp_lossy.clone();
        }
        if c.slow_one > 0 {
            these.insert(1, mdp_floor.clone());
        }
        if c.name == "256 MiB to 1" || c.name == "256 MiB to 4" {
            these.insert(1, mdp_encrypted.clone());
        }
        if c.file.is_dir() {
            // udpcast sends one stream (a file, or tar's output), not a tree.
            these.retain(|t| t.name != "udpcast");
        }
        if c.name.contains("1 GiB") {
            // mdp's own rows: the full push the delta row is measured
            // against, and the delta, which no peer has.
            these.retain(|t| t.name == "mdp");
        }
        // The tree's receivers write to a tmpfs: on this VM's ext4, creating
        // 10,000 files right after the last run deleted 10,000 others costs
        // seconds of inode searching (`recently_deleted`), more each run,
        // and that measures the disk, not the tools.
        let shm = Path::new("/dev/shm/mdp-bench");
        let tmpfs = c.file.is_dir() || c.name.contains("tmpfs");
        let xfs = if c.name.contains("XFS") {
            Some(Xfs::new(&work, 12)?)
        } else {
            None
        };
        let work = if let Some(x) = &xfs {
            x.path().to_path_buf()
        } else if tmpfs && fs::create_dir_all(shm).is_ok() {
            shm.to_path_buf()
        } else {
            work.clone()
        };
        for t in these {
            rows.push(row(
                Place::Bridge(net),
                bin,
                &work,
                &t,
                &c.name,
                (
                    &c.file,
                    c.old.as_ref().map(|(p, pushed)| {
                        if *pushed {
                            Older::Pushed(p)
                        } else {
                            Older::Copied(p)
                        }
                    }),
                ),
                c.n,
                runs,
            )?);
        }
        if work == shm {
            let _ = fs::remove_dir_all(shm);
        }
    }
    drop(net);
    // Plain loopback: sender and receivers on one host. udpcast and UFTP
    // cannot run several receivers on one host (uftpd: "Address already in
    // use"; udp-receivers on one port hang), so the 4-receiver case is
    // mdp's alone.
    let lo = Loopback::new()?;
    let place = Place::Loopback(&lo);
    eprintln!(
        "==> fastest settings of the peers on loopback (256 MiB to 1 receiver, one run each)"
    );
    let (udpcast_lo, _) = sweep(
        place,
        bin,
        &work,
        vec![
            tool("udpcast", "", &[]),
            tool("udpcast", "--full-duplex", &["--full-duplex"]),
        ],
        &big,
    )?;
    let (uftp_lo, _) = sweep(
        place,
        bin,
        &work,
        vec![
            tool("uftp", "-R -1", &["-R", "-1"]),
            tool("uftp", "-R -1 -b 8800", &["-R", "-1", "-b", "8800"]),
        ],
        &big,
    )?;
    let lo_cases: [(&str, &Path, usize, Vec<Tool>); 3] = [
        (
            "loopback: 4.5 MiB to 1",
            &small,
            1,
            vec![mdp.clone(), udpcast_lo.clone(), uftp_lo.clone()],
        ),
        (
            "loopback: 256 MiB to 1",
            &big,
            1,
            vec![mdp.clone(), udpcast_lo, uftp_lo],
        ),
        ("loopback: 256 MiB to 4", &big, 4, vec![mdp.clone()]),
    ];
    for (name, file, n, these) in lo_cases.into_iter().filter(|c| wanted(c.0)) {
        for t in these {
            rows.push(row(place, bin, &work, &t, name, (file, None), n, runs)?);
        }
    }
    drop(lo);
    let (md, rows_json) = render(&rows);
    let json = serde_json::json!({
        "testbed_floor_secs_256MiB": { "to_1": floor, "to_4": floor4 },
        "testbed_floor_reading_secs_256MiB": { "to_1": read, "to_4": read4 },
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "rows": rows_json,
    });
    let out = root().join("target/bench");
    fs::write(out.join("peers.md"), &md)?;
    fs::write(out.join("peers.json"), serde_json::to_string_pretty(&json)?)?;
    println!("\nmdp, udpcast and UFTP between network namespaces on a bridge and on one host's loopback (median of {runs} runs; target/bench/peers.md and peers.json):\n");
    let mbit = |secs: f64| (256u64 << 20) as f64 * 8.0 / secs / 1e6;
    println!(
        "Testbed floor: 256 MiB of {}-byte datagrams from the sender's namespace to 1 (4) hosts that joined the group, in GSO batches as fast as the kernels and the bridge take them: {floor:.2} s, {:.0} Mbit/s ({floor4:.2} s, {:.0} Mbit/s) when the hosts do not read; {read:.2} s, {:.0} Mbit/s ({read4:.2} s, {:.0} Mbit/s) when they read every datagram they get and drop it, as any receiver must read it.\n",
        blast_segment(),
        mbit(floor),
        mbit(floor4),
        mbit(read),
        mbit(read4),
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "Every host runs on this machine's {cores} cores: a push cannot take less than its CPU seconds (all hosts) divided by {cores}.\n"
    );
    println!("{md}");
    Ok(())
}

//! `cargo xtask bench` part two: mdp against udpcast and UFTP on the same
//! machine, in the same run, each sender and receiver in its own network
//! namespace, joined by a bridge in a hub namespace (10.77.0.0/24, nothing
//! routed out). Loss comes from nftables `numgen random` drop rules on the
//! bridge's ports towards the receivers, slow links from tbf on those
//! ports. Every figure is the median of `--runs` runs; the table goes to
//! stdout and, as Markdown and JSON, to target/bench/.

use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HUB: &str = "mdpb-hub";
/// The hub's nftables table that holds the loss rules.
const LOSS_TABLE: &str = "mdpb_loss";
/// Longest a single run may take before it is killed and marked failed.
const RUN_LIMIT: Duration = Duration::from_secs(90);

pub fn host(i: usize) -> String {
    // 0 is the sender, 1.. the receivers.
    format!("mdpb-h{i}")
}

pub fn ip(i: usize) -> String {
    format!("10.77.0.{}", i + 1)
}

pub fn sh(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

pub fn in_ns(ns: &str, args: &[&str]) -> Result<()> {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(args);
    sh(&v)
}

/// The namespaces: a hub with a bridge, and `hosts` hosts on it.
pub struct Net {
    hosts: usize,
    /// Per host, the percentage of UDP frames dropped towards it.
    losses: std::cell::RefCell<Vec<u32>>,
}

impl Net {
    pub fn new(hosts: usize) -> Result<Net> {
        Net::cleanup(hosts + 4);
        sh(&["ip", "netns", "add", HUB])?;
        sh(&["ip", "-n", HUB, "link", "add", "br0", "type", "bridge"])?;
        // Flood multicast to every port: no IGMP querier here.
        sh(&[
            "ip",
            "-n",
            HUB,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        sh(&["ip", "-n", HUB, "link", "set", "br0", "up"])?;
        for i in 0..hosts {
            let h = host(i);
            let port = format!("p{i}");
            sh(&["ip", "netns", "add", &h])?;
            sh(&[
                "ip", "-n", HUB, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &h,
            ])?;
            sh(&["ip", "-n", HUB, "link", "set", &port, "master", "br0", "up"])?;
            sh(&["ip", "-n", &h, "link", "set", "lo", "up"])?;
            sh(&["ip", "-n", &h, "link", "set", "eth0", "up"])?;
            // udpcast finds its sender by broadcast: give the address one.
            sh(&[
                "ip",
                "-n",
                &h,
                "addr",
                "add",
                &format!("{}/24", ip(i)),
                "brd",
                "+",
                "dev",
                "eth0",
            ])?;
            sh(&["ip", "-n", &h, "route", "add", "224.0.0.0/4", "dev", "eth0"])?;
            // Datagrams cross the bridge one by one, as on a real wire:
            // GSO batches are cut before the device, not carried whole, and
            // the switch port passes frames on as they came. The host's
            // interface receives with GRO, as network cards do by default
            // (a veth does GRO only when its peer does not offload TSO).
            in_ns(
                &h,
                &[
                    "ethtool",
                    "-K",
                    "eth0",
                    "tx-udp-segmentation",
                    "off",
                    "gro",
                    "on",
                ],
            )?;
            in_ns(HUB, &["ethtool", "-K", &port, "tso", "off", "gso", "off"])?;
        }
        Ok(Net {
            hosts,
            losses: std::cell::RefCell::new(vec![0; hosts]),
        })
    }

    fn cleanup(hosts: usize) {
        for i in 0..hosts {
            let _ = sh(&["ip", "netns", "del", &host(i)]);
        }
        let _ = sh(&["ip", "netns", "del", HUB]);
    }

    /// Drops `percent` of the UDP frames the bridge forwards to receiver
    /// `i`: loss on its link, frame by frame, before its interface's GRO
    /// (a rule in the receiver's own namespace would drop whole GRO
    /// batches, a burst of up to 64 datagrams at a time).
    ///
    /// All the rules live in one chain, one rule per lossy port, rebuilt on
    /// each change. (A table per port put one netfilter hook per lossy
    /// port on every frame's path: 4 hooks for each of the 4 copies of a
    /// frame, which cost the 4-receiver loss case about 0.06 of its
    /// sender's CPU-seconds for nothing.)
    pub fn loss(&self, i: usize, percent: u32) -> Result<()> {
        self.losses.borrow_mut()[i] = percent;
        let _ = in_ns(HUB, &["nft", "delete", "table", "bridge", LOSS_TABLE]);
        let losses = self.losses.borrow();
        if losses.iter().all(|&p| p == 0) {
            return Ok(());
        }
        in_ns(HUB, &["nft", "add", "table", "bridge", LOSS_TABLE])?;
        in_ns(
            HUB,
            &[
                "nft",
                "add",
                "chain",
                "bridge",
                LOSS_TABLE,
                "forward",
                "{ type filter hook forward priority 0 ; }",
            ],
        )?;
        for (port, &percent) in losses.iter().enumerate().filter(|(_, &p)| p > 0) {
            let port = format!("p{port}");
            let mut args = vec![
                "nft", "add", "rule", "bridge", LOSS_TABLE, "forward", "oif", &port, "meta",
                "l4proto", "udp",
            ];
            // numgen cannot express "all": 100 % is a plain drop rule.
            let threshold = (percent * 10).to_string();
            if percent < 100 {
                args.extend(["numgen", "random", "mod", "1000", "<", &threshold]);
            }
            args.push("drop");
            in_ns(HUB, &args)?;
        }
        Ok(())
    }

    /// Limits the bridge port towards receiver `i` to `mbit` (0: no limit).
    pub fn limit(&self, i: usize, mbit: u32) -> Result<()> {
        let port = format!("p{i}");
        let _ = sh(&[
            "ip", "netns", "exec", HUB, "tc", "qdisc", "del", "dev", &port, "root",
        ]);
        if mbit == 0 {
            return Ok(());
        }
        in_ns(
            HUB,
            &[
                "tc",
                "qdisc",
                "add",
                "dev",
                &port,
                "root",
                "tbf",
                "rate",
                &format!("{mbit}mbit"),
                "burst",
                "256kb",
                "latency",
                "20ms",
            ],
        )
    }

    /// Sets the MTU of every link: each host's `eth0` and its bridge port.
    pub fn mtu(&self, mtu: u32) -> Result<()> {
        let mtu = mtu.to_string();
        for i in 0..self.hosts {
            for (ns, dev) in [(host(i), "eth0".to_string()), (HUB.into(), format!("p{i}"))] {
                sh(&["ip", "-n", &ns, "link", "set", &dev, "mtu", &mtu])?;
            }
        }
        Ok(())
    }

    /// IP fragments the sender's host has made so far (`FragCreates` of
    /// its namespace's `/proc/net/snmp`).
    pub fn sender_fragments(&self) -> Result<u64> {
        let out = Command::new("ip")
            .args(["netns", "exec", &host(0), "cat", "/proc/net/snmp"])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut ip = text.lines().filter(|l| l.starts_with("Ip:"));
        let (Some(names), Some(values)) = (ip.next(), ip.next()) else {
            bail!("no Ip lines in the sender's /proc/net/snmp");
        };
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == "FragCreates")
            .context("no FragCreates in the sender's /proc/net/snmp")?
            .1
            .parse()
            .context("FragCreates")
    }

    /// Receivers on this network (every host but the sender's).
    pub fn receivers(&self) -> usize {
        self.hosts - 1
    }

    /// The testbed's own limit: how long the sender's kernel, the bridge and
    /// the receivers' kernels take to carry `bytes` in datagrams of mdp's
    /// size ([`blast_segment`]) from host 0 to a group every other host
    /// joined (`cargo xtask sink`), sent in GSO batches as fast as they go
    /// (`cargo xtask blast` in host 0's namespace). With `read` the hosts
    /// read every datagram (and drop it), as any receiver must, on the same
    /// cores; without, they never read, and no tool that delivers the data
    /// to those hosts can be faster.
    pub fn floor(&self, bytes: u64, read: bool) -> Result<f64> {
        let exe = std::env::current_exe()?;
        let mut sinks = Vec::new();
        for i in 1..self.hosts {
            sinks.push(
                Command::new("ip")
                    .args(["netns", "exec", &host(i)])
                    .arg(&exe)
                    .args(["sink", &ip(i), &RUN_LIMIT.as_secs().to_string()])
                    .args(read.then_some("read"))
                    .stdout(Stdio::null())
                    .spawn()?,
            );
        }
        std::thread::sleep(Duration::from_millis(300));
        let out = Command::new("ip")
            .args(["netns", "exec", &host(0)])
            .arg(&exe)
            .args(["blast", &ip(0), &bytes.to_string()])
            .output();
        for mut s in sinks {
            let _ = s.kill();
            let _ = s.wait();
        }
        let out = out?;
        if !out.status.success() {
            bail!(
                "blast failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    }

    /// Bytes sent by the sender's interface so far.
    pub fn sender_tx_bytes(&self) -> Result<u64> {
        tx_bytes(&host(0), "eth0")
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        Net::cleanup(self.hosts);
    }
}

/// One host's namespace with multicast on its loopback interface: the
/// "plain loopback" cases, where sender and receivers share a host.
pub struct Loopback {
    ns: &'static str,
}

/// The loopback namespace's name.
const LOOPBACK_NS: &str = "mdpb-lo";

impl Loopback {
    pub fn new() -> Result<Loopback> {
        let _ = sh(&["ip", "netns", "del", LOOPBACK_NS]);
        sh(&["ip", "netns", "add", LOOPBACK_NS])?;
        // udpcast and UFTP want an interface flagged MULTICAST.
        sh(&[
            "ip",
            "-n",
            LOOPBACK_NS,
            "link",
            "set",
            "lo",
            "up",
            "multicast",
            "on",
        ])?;
        sh(&[
            "ip",
            "-n",
            LOOPBACK_NS,
            "route",
            "add",
            "224.0.0.0/4",
            "dev",
            "lo",
            "src",
            "127.0.0.1",
        ])?;
        Ok(Loopback { ns: LOOPBACK_NS })
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", self.ns]);
    }
}

/// Where a push runs: hosts on the bridge, or one host's loopback.
#[derive(Clone, Copy)]
pub enum Place<'a> {
    Bridge(&'a Net),
    Loopback(&'a Loopback),
}

impl Place<'_> {
    /// The namespace of host `i` (0 is the sender).
    fn ns(&self, i: usize) -> String {
        match self {
            Place::Bridge(_) => host(i),
            Place::Loopback(lo) => lo.ns.into(),
        }
    }

    /// The address host `i` sends and joins on.
    fn addr(&self, i: usize) -> String {
        match self {
            Place::Bridge(_) => ip(i),
            Place::Loopback(_) => "127.0.0.1".into(),
        }
    }

    fn ifname(&self) -> &'static str {
        match self {
            Place::Bridge(_) => "eth0",
            Place::Loopback(_) => "lo",
        }
    }

    /// Bytes the sender's interface transmitted so far. On loopback that
    /// is everything the host sent, feedback included.
    fn tx_bytes(&self) -> Result<u64> {
        match self {
            Place::Bridge(net) => net.sender_tx_bytes(),
            Place::Loopback(lo) => tx_bytes(lo.ns, "lo"),
        }
    }
}

fn tx_bytes(ns: &str, ifname: &str) -> Result<u64> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "cat",
            &format!("/sys/class/net/{ifname}/statistics/tx_bytes"),
        ])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// The group `blast` sends to and `sink` joins.
const BLAST_GROUP: std::net::SocketAddrV4 =
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(239, 255, 77, 99), 7999);

/// The `ADDR N` arguments of `sink` and `blast`, and a UDP socket.
fn addr_and_count(
    args: &[String],
    usage: &str,
) -> Result<(std::net::Ipv4Addr, u64, socket2::Socket)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let [addr, n] = args else {
        bail!("usage: {usage}");
    };
    let addr = addr.parse().context("ADDR")?;
    let n = n.parse().with_context(|| usage.to_string())?;
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    Ok((addr, n, sock))
}

/// `cargo xtask sink ADDR SECS [read]`: joins the `blast` group on the
/// interface with ADDR for SECS seconds. Without `read` it never reads:
/// its host's kernel takes every datagram up to the socket, whose buffer
/// then drops it. With `read` it reads everything as a receiver does
/// (`recvmmsg` with GRO into reused slots, a 32 MiB socket buffer) and
/// throws it away.
pub fn sink(args: &[String]) -> Result<()> {
    let usage = "cargo xtask sink ADDR SECS [read]";
    let (read, args) = match args {
        [rest @ .., last] if last == "read" => (true, rest),
        _ => (false, args),
    };
    let (addr, secs, sock) = addr_and_count(args, usage)?;
    sock.set_reuse_address(true)?;
    sock.bind(&BLAST_GROUP.into())?;
    sock.join_multicast_v4(BLAST_GROUP.ip(), &addr)?;
    let until = Instant::now() + Duration::from_secs(secs);
    if !read {
        std::thread::sleep(until - Instant::now());
        return Ok(());
    }
    use std::os::fd::AsRawFd;
    mdp_net::udp::grow_recv_buffer(&sock, 32 << 20);
    let mut rx = mdp_net::udp::BatchReceiver::new(&sock);
    let fd = sock.as_raw_fd();
    while Instant::now() < until {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the call.
        unsafe { libc::poll(&mut pfd, 1, 100) };
        while rx.recv(fd).is_ok() {}
    }
    Ok(())
}

/// Bytes of each `blast` datagram: mdp's DATA datagram on a 1500-byte
/// MTU (its default symbol size there and the DATA header: 1472).
pub fn blast_segment() -> usize {
    let symbol = mdp_proto::limits::symbol_size_for_mtu(1500, false, false).expect("fits");
    mdp_proto::limits::DATA_HEADER_LEN + symbol as usize
}

/// `cargo xtask blast ADDR BYTES`: sends BYTES in [`blast_segment`]-byte datagrams to
/// 239.255.77.99:7999 out of the interface with ADDR, TTL 1, in GSO
/// batches; prints the seconds it took.
pub fn blast(args: &[String]) -> Result<()> {
    use socket2::SockAddr;
    use std::os::fd::AsRawFd;
    let (addr, bytes, sock) = addr_and_count(args, "cargo xtask blast ADDR BYTES")?;
    sock.set_multicast_if_v4(&addr)?;
    sock.set_multicast_ttl_v4(1)?;
    mdp_net::udp::grow_send_buffer(&sock, 32 << 20);
    let to = SockAddr::from(BLAST_GROUP);
    let segment = blast_segment();
    let batch = vec![0x5au8; segment * mdp_net::udp::batch_limit(segment)];
    let mut sender = mdp_net::udp::BatchSender::new(true);
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        if start.elapsed() > RUN_LIMIT {
            bail!("sent only {sent} of {bytes} bytes in {RUN_LIMIT:?}");
        }
        let n = ((bytes - sent) as usize).min(batch.len());
        match sender.send(sock.as_raw_fd(), &to, &batch[..n], segment) {
            Ok(n) => sent += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            // A full device queue: try again, as the tools under test do.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
            Err(e) => return Err(e.into()),
        }
    }
    println!("{:.4}", start.elapsed().as_secs_f64());
    Ok(())
}

/// A tool under test, with one setting.
#[derive(Clone, Debug)]
pub struct Tool {
    pub name: &'static str,
    pub setting: String,
    pub extra: Vec<String>,
}

impl Tool {
    /// How the tool appears in the table.
    pub fn label(&self) -> String {
        if self.setting.is_empty() {
            self.name.to_string()
        } else {
            format!("{} ({})", self.name, self.setting)
        }
    }
}

/// What one run measured.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub ok: bool,
    pub secs: f64,
    pub wire: f64,
    /// CPU seconds of every process, the sender's included.
    pub cpu: f64,
    /// CPU seconds of the sender alone.
    pub cpu_send: f64,
    pub rss_send_kb: u64,
    pub rss_recv_kb: u64,
    pub note: String,
}

fn timed(ns: &str, stats: &Path, args: &[String]) -> Command {
    let mut c = Command::new("ip");
    c.args([
        "netns",
        "exec",
        ns,
        "/usr/bin/time",
        "-q",
        "-f",
        "%U %S %M",
        "-o",
    ])
    .arg(stats)
    .args(args)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    c
}

fn read_stats(p: &Path) -> (f64, u64) {
    let s = fs::read_to_string(p).unwrap_or_default();
    let last = s.lines().last().unwrap_or("");
    let v: Vec<&str> = last.split_whitespace().collect();
    if v.len() < 3 {
        return (0.0, 0);
    }
    let cpu = v[0].parse::<f64>().unwrap_or(0.0) + v[1].parse::<f64>().unwrap_or(0.0);
    (cpu, v[2].parse().unwrap_or(0))
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// A udpcast command on the hosts' `eth0`, without keyboard or progress
/// output, with `rest` after the common options.
fn udpcast(program: &str, ifname: &str, rest: &[&str]) -> Vec<String> {
    let mut v = argv(&[
        program,
        "--nokbd",
        "--no-progress",
        "--interface",
        ifname,
        "--portbase",
        "9000",
    ]);
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

pub fn wait_limit(c: &mut Child, until: Instant) -> bool {
    loop {
        match c.try_wait() {
            Ok(Some(s)) => return s.success(),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                // Its children first: a tool under `/usr/bin/time` would
                // outlive `time` (see [`stop_timed`]).
                let _ = Command::new("pkill")
                    .args(["-KILL", "-P", &c.id().to_string()])
                    .status();
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
        }
    }
}

/// Runs one push of `file` to `n` receivers with `tool`.
pub fn run_once(
    place: Place,
    bin: &Path,
    work: &Path,
    tool: &Tool,
    file: &Path,
    n: usize,
) -> Result<Sample> {
    let size = payload_bytes(file)?;
    let name = file.file_name().context("file name")?;
    let mut receivers = Vec::new();
    let mut dirs = Vec::new();
    for i in 1..=n {
        let dir = work.join(format!("r{i}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let st = work.join(format!("r{i}.time"));
        let _ = fs::remove_file(&st);
        let args: Vec<String> = match tool.name {
            "mdp" => vec![
                bin.join("mdp-recv").display().to_string(),
                "--dir".into(),
                dir.display().to_string(),
                "--once".into(),
                "--quiet".into(),
                "--timeout".into(),
                "100s".into(),
                "--interface".into(),
                place.addr(i),
                "--name".into(),
                format!("h{i}"),
            ],
            "udpcast" => udpcast(
                "udp-receiver",
                place.ifname(),
                &["--file", &dir.join(name).display().to_string()],
            ),
            "uftp" => argv(&[
                "uftpd",
                "-d",
                "-q",
                "-I",
                place.ifname(),
                "-D",
                &dir.display().to_string(),
            ]),
            _ => unreachable!(),
        };
        receivers.push((timed(&place.ns(i), &st, &args).spawn()?, st));
        dirs.push(dir);
    }
    std::thread::sleep(Duration::from_millis(400));
    let st = work.join("s.time");
    let _ = fs::remove_file(&st);
    let file_s = file.display().to_string();
    let mut args: Vec<String> = match tool.name {
        "mdp" => vec![
            bin.join("mdp-send").display().to_string(),
            "--interface".into(),
            place.addr(0),
            "--receivers".into(),
            n.to_string(),
            // Every run hashes the file, as a push of new content does.
            "--no-hash-cache".into(),
            "--quiet".into(),
            "--timeout".into(),
            "80s".into(),
        ],
        "udpcast" => udpcast(
            "udp-sender",
            place.ifname(),
            &["--min-receivers", &n.to_string(), "--file", &file_s],
        ),
        // On the bridge the receivers are named (a closed group); on
        // loopback they share the sender's address, so the group is open.
        "uftp" => match place {
            Place::Bridge(_) => argv(&[
                "uftp",
                "-I",
                "eth0",
                "-H",
                &(1..=n).map(ip).collect::<Vec<_>>().join(","),
            ]),
            Place::Loopback(_) => argv(&["uftp", "-I", "lo"]),
        },
        _ => unreachable!(),
    };
    args.extend(tool.extra.iter().cloned());
    if tool.name != "udpcast" {
        args.push(file_s);
    }
    let tx0 = place.tx_bytes()?;
    let start = Instant::now();
    let until = start + RUN_LIMIT;
    let mut sender = timed(&place.ns(0), &st, &args).spawn()?;
    let sender_ok = wait_limit(&mut sender, until);
    let mut sample = Sample::default();
    // Receivers that end by themselves get a moment; uftpd never does.
    let mut recv_ok = true;
    // With a --min-rate the slow host cannot keep, mdp drops it: the others
    // must finish, the sender must say so (exit 1), and the dropped one
    // waits for its own idle timeout, so it is stopped here.
    let expect_drop = tool.name == "mdp" && tool.setting.contains("--min-rate");
    for (c, _) in &mut receivers {
        if tool.name == "uftp" || expect_drop {
            std::thread::sleep(Duration::from_millis(50));
            stop_timed(c);
        } else if !wait_limit(c, until.max(Instant::now() + Duration::from_secs(10))) {
            recv_ok = false;
        }
    }
    sample.secs = start.elapsed().as_secs_f64();
    let tx = place.tx_bytes()? - tx0;
    // Multicast: every byte leaves the sender once for all receivers.
    sample.wire = tx as f64 / size.max(1) as f64;
    let (cpu, rss) = read_stats(&st);
    sample.cpu = cpu;
    sample.cpu_send = cpu;
    sample.rss_send_kb = rss;
    for (_, st) in &receivers {
        let (cpu, rss) = read_stats(st);
        sample.cpu += cpu;
        sample.rss_recv_kb = sample.rss_recv_kb.max(rss);
    }
    let mut complete = 0;
    let want = content(file)?;
    for d in &dirs {
        if content(&d.join(name)).is_ok_and(|got| got == want) {
            complete += 1;
        }
    }
    sample.ok = if expect_drop {
        complete == n - 1
    } else {
        sender_ok && recv_ok && complete == n
    };
    if expect_drop && sample.ok {
        sample.note = "the slow host was dropped (as expected); the others completed".into();
    }
    if !sample.ok {
        sample.note = format!(
            "{complete}/{n} complete{}{}",
            if sender_ok {
                ""
            } else {
                ", sender failed or hung"
            },
            if recv_ok { "" } else { ", a receiver hung" }
        );
    }
    Ok(sample)
}

/// One row of the table.
#[derive(Clone, Debug)]
pub struct Row {
    pub case: String,
    pub tool: String,
    pub runs: Vec<Sample>,
    pub bytes: u64,
}

/// `runs` pushes of `file` to `n` receivers with `tool`: one row of the
/// table, for `case`.
#[allow(clippy::too_many_arguments)]
pub fn row(
    place: Place,
    bin: &Path,
    work: &Path,
    tool: &Tool,
    case: &str,
    file: &Path,
    n: usize,
    runs: usize,
) -> Result<Row> {
    eprintln!("==> {case}: {}", tool.label());
    let samples = (0..runs)
        .map(|_| run_once(place, bin, work, tool, file, n))
        .collect::<Result<Vec<_>>>()?;
    Ok(Row {
        case: case.to_string(),
        tool: tool.label(),
        runs: samples,
        bytes: payload_bytes(file)?,
    })
}

/// Bytes of a file, or of every file below a directory.
fn payload_bytes(path: &Path) -> Result<u64> {
    Ok(content(path)?.iter().map(|(_, len, _)| len).sum())
}

/// Path (relative to `path`), length and BLAKE3 hash of a file or of every
/// file below a directory, sorted: equal for two identical trees.
fn content(path: &Path) -> Result<Vec<(PathBuf, u64, [u8; 32])>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, u64, [u8; 32])>) -> Result<()> {
        for e in fs::read_dir(dir)? {
            let p = e?.path();
            if p.is_dir() {
                walk(root, &p, out)?;
            } else {
                let bytes = fs::read(&p)?;
                let rel = p.strip_prefix(root)?.to_path_buf();
                out.push((rel, bytes.len() as u64, *blake3::hash(&bytes).as_bytes()));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    if path.is_dir() {
        walk(path, path, &mut out)?;
        out.sort();
    } else {
        let bytes = fs::read(path)?;
        out.push((
            PathBuf::new(),
            bytes.len() as u64,
            *blake3::hash(&bytes).as_bytes(),
        ));
    }
    Ok(out)
}

/// A tree of `dirs` directories of `per_dir` files each, of 100 B to
/// 20 KB (the sizes of configuration files and small packages' parts),
/// made once under `dir/name`.
pub fn data_tree(dir: &Path, name: &str, dirs: usize, per_dir: usize) -> Result<PathBuf> {
    const SIZES: [usize; 5] = [100, 1_000, 4_000, 8_000, 20_000];
    let root = dir.join(name);
    for d in 0..dirs {
        let sub = root.join(format!("d{d:03}"));
        fs::create_dir_all(&sub)?;
        for f in 0..per_dir {
            let i = d * per_dir + f;
            data_file(
                &sub,
                &format!("f{f:03}.dat"),
                SIZES[i % SIZES.len()],
                i as u64,
            )?;
        }
    }
    Ok(root)
}

/// The median (NaN for no values).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

impl Row {
    fn ok(&self) -> Vec<&Sample> {
        self.runs.iter().filter(|s| s.ok).collect()
    }
    pub fn secs(&self) -> f64 {
        median(self.ok().iter().map(|s| s.secs).collect())
    }
    fn goodput(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.secs() / 1e6
    }
    fn med(&self, f: impl Fn(&Sample) -> f64) -> f64 {
        median(self.ok().iter().map(|s| f(s)).collect())
    }
}

/// The Markdown table and the JSON document of `rows`.
pub fn render(rows: &[Row]) -> (String, serde_json::Value) {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| case | tool | ok runs | wall time (median) | goodput | wire bytes per delivered byte | CPU s, all hosts (sender) | peak RSS sender / receiver | mdp's speed-up |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    let mut json = Vec::new();
    for r in rows {
        let mdp = rows
            .iter()
            .find(|m| m.case == r.case && m.tool.starts_with("mdp"))
            .map(|m| m.secs());
        let speedup = match mdp {
            Some(m) if !r.tool.starts_with("mdp") && r.secs().is_finite() => {
                format!("{:.1}×", r.secs() / m)
            }
            Some(_) if !r.tool.starts_with("mdp") => "peer failed".into(),
            _ => "".into(),
        };
        let ok = r.ok().len();
        let mut notes: Vec<String> = r
            .runs
            .iter()
            .filter(|s| !s.note.is_empty())
            .map(|s| s.note.clone())
            .collect();
        notes.dedup();
        let _ = writeln!(
            md,
            "| {} | {} | {}/{}{} | {:.2} s | {:.0} Mbit/s | {:.3} | {:.2} ({:.2}) | {:.0} / {:.0} MiB | {} |",
            r.case,
            r.tool,
            ok,
            r.runs.len(),
            if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join("; "))
            },
            r.secs(),
            r.goodput(),
            r.med(|s| s.wire),
            r.med(|s| s.cpu),
            r.med(|s| s.cpu_send),
            r.med(|s| s.rss_send_kb as f64) / 1024.0,
            r.med(|s| s.rss_recv_kb as f64) / 1024.0,
            speedup
        );
        json.push(serde_json::json!({
            "case": r.case,
            "tool": r.tool,
            "runs": r.runs.len(),
            "ok_runs": ok,
            "failures": notes,
            "secs_median": r.secs(),
            "goodput_mbps": r.goodput(),
            "wire_per_byte": r.med(|s| s.wire),
            "cpu_secs": r.med(|s| s.cpu),
            "cpu_sender_secs": r.med(|s| s.cpu_send),
            "rss_sender_kib": r.med(|s| s.rss_send_kb as f64),
            "rss_receiver_kib": r.med(|s| s.rss_recv_kb as f64),
            "secs_all": r.runs.iter().map(|s| s.secs).collect::<Vec<_>>(),
        }));
    }
    (md, serde_json::Value::Array(json))
}

/// Installs what the comparison needs from Debian's packages.
pub fn ensure_tools() -> Result<()> {
    install_missing(&[
        ("udp-sender", "udpcast"),
        ("uftp", "uftp"),
        ("ethtool", "ethtool"),
        ("nft", "nftables"),
        ("tc", "iproute2"),
    ])
}

/// Installs what the namespaced network needs (the fault suite).
pub fn ensure_netns_tools() -> Result<()> {
    install_missing(&[
        ("ethtool", "ethtool"),
        ("nft", "nftables"),
        ("tc", "iproute2"),
    ])
}

/// Installs the Debian packages of the commands that are missing.
fn install_missing(tools: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(bin, _)| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {bin}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|(_, pkg)| *pkg)
        .chain((!Path::new("/usr/bin/time").exists()).then_some("time"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "==> installing {} from Debian's packages",
        missing.join(" ")
    );
    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    let mut c = Command::new("apt-get");
    c.args(["install", "-y", "-qq"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    let st = c.status().context("apt-get")?;
    if !st.success() {
        bail!(
            "cannot install {}: install them and run again",
            missing.join(" ")
        );
    }
    // uftp's package starts a uftpd service on the host; it is not needed.
    // It ignores SIGTERM.
    let _ = Command::new("pkill")
        .args(["-KILL", "-x", "uftpd"])
        .status();
    Ok(())
}

/// Stops a receiver started by [`timed`]: kills the tool, `/usr/bin/time`'s
/// child, so that `time` writes its CPU and RSS and exits. Killing `time`
/// itself (as this bench did until commit f758bc4) left the tool running:
/// uftpd ignores SIGTERM, so every UFTP run left its four daemons behind,
/// bound to the group's port in the hosts' namespaces. The next run's
/// daemons could not bind and exited at once ("Address already in use");
/// the old ones received in their place, into the same directories. So
/// the copies were checked, but UFTP's receiver CPU and RSS were those of
/// daemons that had exited at start, and a later case on the same network
/// (the 10,000-file tree, whose receivers write elsewhere) failed.
fn stop_timed(c: &mut Child) {
    let _ = Command::new("pkill")
        .args(["-KILL", "-P", &c.id().to_string()])
        .status();
    let _ = c.wait();
}

/// Picks the fastest setting of a peer: one run of `file` to one receiver each.
pub fn sweep(
    place: Place,
    bin: &Path,
    work: &Path,
    settings: Vec<Tool>,
    file: &Path,
) -> Result<(Tool, Vec<(Tool, Sample)>)> {
    let mut best: Option<(Tool, f64)> = None;
    let mut seen = Vec::new();
    for t in settings {
        let s = run_once(place, bin, work, &t, file, 1)?;
        eprintln!(
            "    sweep {}: {}",
            t.label(),
            if s.ok {
                format!("{:.2} s", s.secs)
            } else {
                s.note.clone()
            }
        );
        if s.ok && best.as_ref().is_none_or(|(_, b)| s.secs < *b) {
            best = Some((t.clone(), s.secs));
        }
        seen.push((t, s));
    }
    let (t, _) = best.context("no setting of this peer completed a push")?;
    Ok((t, seen))
}

/// The fastest setting of a sweep that passes `keep`.
pub fn fastest(seen: &[(Tool, Sample)], keep: impl Fn(&Tool) -> bool) -> Option<Tool> {
    seen.iter()
        .filter(|(t, s)| s.ok && keep(t))
        .min_by(|a, b| a.1.secs.total_cmp(&b.1.secs))
        .map(|(t, _)| t.clone())
}

/// A file of `len` random bytes under `dir`, made once.
pub fn data_file(dir: &Path, name: &str, len: usize, seed: u64) -> Result<PathBuf> {
    let p = dir.join(name);
    if fs::metadata(&p).map(|m| m.len()).unwrap_or(0) != len as u64 {
        fs::write(&p, mdp_sim::Content::random_bytes(len, seed))?;
    }
    Ok(p)
}

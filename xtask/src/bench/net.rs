//! The benchmark's networks: namespaces joined by a bridge in a hub
//! namespace (10.77.0.0/24, nothing routed out), with loss from nftables
//! `numgen random` drop rules and slow links from tbf on the bridge's ports
//! towards the receivers; or one namespace's loopback. The fault suite
//! (`cargo xtask netns`) runs on the same bridge.
//!
//! **Invariant:** every namespace, link and rule made here is removed when
//! its [`Net`] or [`Loopback`] is dropped, and a new [`Net`] first removes
//! what an interrupted run left.

use anyhow::{bail, Context, Result};
use std::process::Command;

const HUB: &str = "mdpb-hub";

/// The hub's nftables table that holds the loss rules.
const LOSS_TABLE: &str = "mdpb_loss";

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

/// `ip -n NS ARGS…`.
pub fn ip_n(ns: &str, args: &[&str]) -> Result<()> {
    let mut v = vec!["ip", "-n", ns];
    v.extend_from_slice(args);
    sh(&v)
}

/// A bridge `name` in namespace `ns`, up, that floods multicast to every
/// port (there is no IGMP querier to make snooping work).
pub fn flooding_bridge(ns: &str, name: &str) -> Result<()> {
    ip_n(ns, &["link", "add", name, "type", "bridge"])?;
    ip_n(
        ns,
        &["link", "set", name, "type", "bridge", "mcast_snooping", "0"],
    )?;
    ip_n(ns, &["link", "set", name, "up"])
}

/// Limits what `dev` in namespace `ns` sends to `mbit` with a tbf (0:
/// no limit; any earlier one is removed first).
pub fn tbf(ns: &str, dev: &str, mbit: u32) -> Result<()> {
    let _ = sh(&[
        "ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root",
    ]);
    if mbit == 0 {
        return Ok(());
    }
    let rate = format!("{mbit}mbit");
    in_ns(
        ns,
        &[
            "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", &rate, "burst", "256kb",
            "latency", "20ms",
        ],
    )
}

pub fn in_ns(ns: &str, args: &[&str]) -> Result<()> {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(args);
    sh(&v)
}

/// The namespaces: a hub with a bridge, and `hosts` hosts on it.
pub struct Net {
    pub(super) hosts: usize,
    /// Per host, the percentage of UDP frames dropped towards it.
    losses: std::cell::RefCell<Vec<u32>>,
}

impl Net {
    pub fn new(hosts: usize) -> Result<Net> {
        Net::cleanup(hosts + 4);
        sh(&["ip", "netns", "add", HUB])?;
        flooding_bridge(HUB, "br0")?;
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
        tbf(HUB, &format!("p{i}"), mbit)
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
    pub(super) fn ns(&self, i: usize) -> String {
        match self {
            Place::Bridge(_) => host(i),
            Place::Loopback(lo) => lo.ns.into(),
        }
    }

    /// The address host `i` sends and joins on.
    pub(super) fn addr(&self, i: usize) -> String {
        match self {
            Place::Bridge(_) => ip(i),
            Place::Loopback(_) => "127.0.0.1".into(),
        }
    }

    pub(super) fn ifname(&self) -> &'static str {
        match self {
            Place::Bridge(_) => "eth0",
            Place::Loopback(_) => "lo",
        }
    }

    /// Bytes the sender's interface transmitted so far. On loopback that
    /// is everything the host sent, feedback included.
    pub(super) fn tx_bytes(&self) -> Result<u64> {
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

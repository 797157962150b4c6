//! A routed network for the fault suite: two segments joined by a router
//! namespace that forwards the push's multicast group between them, both
//! ways (the push out to the far segment, the receivers' feedback back).
//!
//! ```text
//!   segment a, 10.78.1.0/24          segment b, 10.78.2.0/24
//!   mdpr-s  (sender)   .2 ─┐       ┌─ .2 mdpr-b1
//!   mdpr-a1 (receiver) .3 ─┤ br-a  br-b ├─ .3 mdpr-b2
//!                          └ .1 mdpr-rt .1 ┘
//! ```
//!
//! Every host's default route is the router; its bridges flood multicast
//! (no snooping). The router forwards as a multicast router does: a
//! datagram of the group that arrives on one segment with a TTL above 1
//! leaves on the other with its TTL one less and its source unchanged; one
//! with TTL 1 goes no further. This machine's kernel has no multicast
//! routing (`CONFIG_IP_MROUTE` is not set, so smcroute and pimd cannot
//! run), so nftables does the forwarding: a `dup` to the other bridge in
//! the prerouting hook (`nf_dup_ipv4` decrements the TTL of what it
//! duplicates there), after a rule that lets TTL 1 through to the router
//! alone. What the hosts see is what a kernel-routed hop shows them.

use crate::bench::net::{flooding_bridge, in_ns, ip_n, sh};
use anyhow::Result;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The group the routed scenarios push to (the router routes only it).
pub const GROUP: &str = "239.255.78.1";
/// Its data port (feedback: the next one).
pub const PORT: u16 = 7500;
const ROUTER: &str = "mdpr-rt";

/// The hosts: name, segment, address.
pub const HOSTS: [(&str, char, &str); 4] = [
    ("s", 'a', "10.78.1.2"),
    ("a1", 'a', "10.78.1.3"),
    ("b1", 'b', "10.78.2.2"),
    ("b2", 'b', "10.78.2.3"),
];

/// The namespace of host `name`.
pub fn ns(name: &str) -> String {
    format!("mdpr-{name}")
}

/// The address of host `name`.
pub fn addr(name: &str) -> &'static str {
    HOSTS
        .iter()
        .find(|h| h.0 == name)
        .map(|h| h.2)
        .expect("a host of the routed network")
}

/// The routed network; removed when dropped.
pub struct RoutedNet {
    /// Where the router's rules are written.
    rules: PathBuf,
}

impl RoutedNet {
    /// Builds it, its nftables rules written under `work`.
    pub fn new(work: &Path) -> Result<RoutedNet> {
        cleanup();
        let net = RoutedNet {
            rules: work.join("router.nft"),
        };
        sh(&["ip", "netns", "add", ROUTER])?;
        ip_n(ROUTER, &["link", "set", "lo", "up"])?;
        in_ns(ROUTER, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        for seg in ['a', 'b'] {
            let br = format!("br-{seg}");
            flooding_bridge(ROUTER, &br)?;
            ip_n(
                ROUTER,
                &["addr", "add", &format!("{}.1/24", segment(seg)), "dev", &br],
            )?;
        }
        for (name, seg, ip) in HOSTS {
            let h = ns(name);
            let port = format!("p-{name}");
            sh(&["ip", "netns", "add", &h])?;
            ip_n(
                ROUTER,
                &[
                    "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &h,
                ],
            )?;
            ip_n(
                ROUTER,
                &["link", "set", &port, "master", &format!("br-{seg}"), "up"],
            )?;
            ip_n(&h, &["link", "set", "lo", "up"])?;
            ip_n(&h, &["link", "set", "eth0", "up"])?;
            ip_n(&h, &["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
            let router = format!("{}.1", segment(seg));
            ip_n(&h, &["route", "add", "default", "via", &router])?;
            ip_n(&h, &["route", "add", "224.0.0.0/4", "dev", "eth0"])?;
        }
        net.forward(0)?;
        Ok(net)
    }

    /// The router's forwarding, with `percent` of the push's datagrams
    /// into segment b not forwarded (its feedback back is not touched):
    /// the far segment's own loss, repaired through the router.
    pub fn forward(&self, percent: u32) -> Result<()> {
        let _ = in_ns(ROUTER, &["nft", "delete", "table", "ip", "mdpr"]);
        let loss = if percent > 0 {
            format!(
                "iifname \"br-a\" ip daddr {GROUP} udp dport {PORT} numgen random mod 100 < {percent} accept\n"
            )
        } else {
            String::new()
        };
        fs::write(
            &self.rules,
            format!(
                "table ip mdpr {{\n chain pre {{\n  type filter hook prerouting priority 0;\n  \
                 ip daddr {GROUP} ip ttl <= 1 accept\n  {loss}\
                 iifname \"br-a\" ip daddr {GROUP} dup to {GROUP} device \"br-b\"\n  \
                 iifname \"br-b\" ip daddr {GROUP} dup to {GROUP} device \"br-a\"\n }}\n}}\n"
            ),
        )?;
        in_ns(ROUTER, &["nft", "-f", &self.rules.to_string_lossy()])
    }

    /// Bytes host `name`'s interface has sent.
    pub fn tx_bytes(&self, name: &str) -> Result<u64> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns(name),
                "cat",
                "/sys/class/net/eth0/statistics/tx_bytes",
            ])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    }
}

impl Drop for RoutedNet {
    fn drop(&mut self) {
        cleanup();
    }
}

fn segment(seg: char) -> &'static str {
    if seg == 'a' {
        "10.78.1"
    } else {
        "10.78.2"
    }
}

fn cleanup() {
    for (name, _, _) in HOSTS {
        let _ = sh(&["ip", "netns", "del", &ns(name)]);
    }
    let _ = sh(&["ip", "netns", "del", ROUTER]);
}

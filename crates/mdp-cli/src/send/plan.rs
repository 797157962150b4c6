//! `mdp-send`'s arguments turned into a checked plan, in one function
//! ([`SendPlan::from_args`]): the interfaces resolved, the unicast
//! destinations checked against them, the symbol size fitted to the MTU,
//! the key read, the expected receivers listed, and the state machine's
//! configuration validated. Nothing is sent and nothing is scanned here.

use super::Args;
use crate::OutputArgs;
use mdp_net::socket::Endpoint;
use mdp_proto::{RateMode, SenderConfig, SessionId};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What `mdp-send` was asked to do, checked and resolved.
#[derive(Debug)]
pub enum SendPlan {
    /// `--gen-key FILE`: write a new key and exit.
    GenKey(PathBuf),
    /// Push files.
    Push(Box<PushPlan>),
}

/// A checked push: everything [`super::run`] needs, and nothing it must
/// still check.
#[derive(Debug)]
pub struct PushPlan {
    /// The interfaces to send on, the first in unicast mode with `--to`.
    pub endpoints: Vec<Endpoint>,
    /// Unicast destinations (`--to`, or the first hosts of `--tree`);
    /// empty for multicast.
    pub to: Vec<SocketAddr>,
    /// `--tree`: the relay tree the manifest carries.
    pub tree: Option<mdp_proto::manifest::RelayTree>,
    /// The state machine's validated settings.
    pub config: SenderConfig,
    /// Files and directories to push.
    pub paths: Vec<PathBuf>,
    /// Where file hashes are remembered; `None`: hash every file.
    pub hash_cache: Option<PathBuf>,
    /// What `--exclude` and `--exclude-from` leave out.
    pub exclude: mdp_net::exclude::Exclude,
    /// `--dest`: the directory of the receivers' the push lands below.
    pub dest: Option<String>,
    /// `--atomic`: each pushed directory switches as a whole.
    pub atomic: bool,
    /// The group, for the log.
    pub group: SocketAddr,
    /// The interfaces as given, for the log.
    pub interfaces: Vec<String>,
    /// The first interface is the loopback one (named in the report when
    /// no receiver registered).
    pub loopback: bool,
    /// Output settings.
    pub out: OutputArgs,
}

impl SendPlan {
    /// Checks and resolves `args`; every usage error of `mdp-send` after
    /// clap's comes from here.
    pub fn from_args(args: &Args) -> anyhow::Result<SendPlan> {
        if let Some(path) = &args.gen_key {
            return Ok(SendPlan::GenKey(path.clone()));
        }
        let mut endpoints = args.net.endpoints()?;
        let mut endpoint = endpoints[0];
        let tree = args
            .tree
            .as_deref()
            .map(|f| read_tree(f, args.fan_out))
            .transpose()?;
        let to: Vec<SocketAddr> = match &tree {
            Some((t, _)) => t
                .children(None)
                .iter()
                .map(|h| h.parse().expect("checked by read_tree"))
                .collect(),
            None => args.to.clone(),
        };
        if !to.is_empty() {
            endpoint.unicast = true;
            if let Some(d) = to
                .iter()
                .find(|d| d.is_ipv4() != endpoint.interface.is_ipv4())
            {
                anyhow::bail!(
                    "--to {d} and --interface {} are not both IPv4 or both IPv6",
                    endpoint.interface
                );
            }
        }
        let endpoint_is_loopback = endpoint.interface.is_loopback();
        endpoints[0] = endpoint;
        let mut config = SenderConfig::new(SessionId(mdp_net::random_u64()));
        config.auth = args.net.auth()?;
        if let Some(path) = &args.identity_file {
            config.identity = Some(crate::identity::read_identity(path)?);
            config.signed_at_us = mdp_net::wall_clock().unix_us;
        }
        if config.identity.is_none() {
            tracing::warn!(
                "the push is not signed: only receivers run with --insecure take it; give --identity FILE (make one with --gen-identity FILE)"
            );
        }
        config.block_k = args.block_size;
        config.parity = args.parity;
        config.proactive = args.proactive;
        config.rate = match args.rate {
            Some(r) => RateMode::Fixed(r),
            None => RateMode::Adaptive {
                min_bps: args.min_rate,
                max_bps: args.max_rate,
                start_bps: mdp_proto::cc::START_BPS,
            },
        };
        config.expected_receivers = args.receivers;
        // A tree: every host of it must confirm, unless said otherwise.
        if let Some((_, hosts)) = &tree {
            if args.receivers == 0 && args.expect.is_empty() && args.expect_file.is_none() {
                config.expected_receivers = *hosts as u32;
            }
        }
        config.expected_keys = expected_keys(args.expect_file.as_deref())?;
        config.expected_names = if config.expected_keys.is_empty() {
            expected_names(&args.expect, args.expect_file.as_deref())?
        } else {
            if !args.expect.is_empty() {
                anyhow::bail!(
                    "--expect-file lists receivers by key: name each host there, not with --expect"
                );
            }
            config
                .expected_keys
                .iter()
                .map(|(n, _)| n.clone())
                .collect()
        };
        config.wait =
            args.wait
                .unwrap_or(if args.receivers > 0 || !config.expected_names.is_empty() {
                    Duration::from_secs(10)
                } else {
                    Duration::from_secs(1)
                });
        config.timeout = args.timeout;
        config.drop_after = args.drop_after;
        if args.delete && !(args.exclude.is_empty() && args.exclude_from.is_empty()) {
            // The receivers do not know the patterns: they would delete
            // what the push leaves out wherever they hold it.
            anyhow::bail!(
                "--delete with --exclude would delete on the receivers what --exclude leaves out: push with one or the other"
            );
        }
        config.delete = args.delete;
        config.dry_run = args.dry_run;
        // Encrypted wherever the receivers are known by key.
        if config.identity.is_some() && !config.expected_keys.is_empty() && !args.no_encrypt {
            config.encryption = Some(mdp_proto::sender::EncryptionConfig {
                aead: mdp_proto::crypto::Aead::preferred(cpu_has_aes()),
                secrets: mdp_proto::crypto::SecretSource::new(mdp_net::random_secret()),
            });
        }
        if tree.is_some() && config.encryption.is_some() {
            anyhow::bail!(
                "--tree cannot be encrypted: the hosts that pass the push on do not hold its key agreement; push it signed but not encrypted (--no-encrypt)"
            );
        }
        let sealed = config.auth.is_some() || config.encryption.is_some();
        config.symbol_size = symbol_size(args, &endpoints, sealed);
        // Larger blocks need a larger cache for the read-ahead window.
        config.cache_bytes = config.cache_bytes.max(config.min_cache_bytes());
        config.validate().map_err(anyhow::Error::msg)?;
        Ok(SendPlan::Push(Box::new(PushPlan {
            endpoints,
            to,
            tree: tree.map(|(t, _)| t),
            config,
            paths: args.paths.clone(),
            hash_cache: if args.no_hash_cache {
                None
            } else {
                hash_cache_file()
            },
            exclude: mdp_net::exclude::Exclude::new(&args.exclude, &args.exclude_from)
                .map_err(anyhow::Error::msg)?,
            dest: args.dest.as_deref().map(dest_dir).transpose()?,
            atomic: args.atomic,
            group: args.net.group,
            interfaces: args.net.interface.clone(),
            loopback: endpoint_is_loopback,
            out: args.out.clone(),
        })))
    }
}

/// `--dest`'s directory, checked as receivers check every path (a final
/// `/` dropped).
fn dest_dir(dest: &str) -> anyhow::Result<String> {
    let dir = dest.trim_end_matches('/');
    match mdp_proto::manifest::check_path(dir) {
        Ok(()) => Ok(dir.to_string()),
        Err(why) => anyhow::bail!(
            "--dest {dest:?}: {why}: give a path relative to the receivers' directories, like releases/web"
        ),
    }
}

/// `--symbol-size`, or what fits one packet on the smallest MTU of the
/// interfaces (see [`default_symbol_size`]); warns, with the fix, when the
/// size makes every datagram fragment.
/// True when the CPU has AES and carry-less multiply instructions, which
/// make AES-256-GCM the faster AEAD (docs/SECURITY.md has the measurement).
fn cpu_has_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

fn symbol_size(args: &Args, endpoints: &[Endpoint], sealed: bool) -> u16 {
    let mtu = endpoints
        .iter()
        .zip(&args.net.interface)
        .filter_map(|(ep, spec)| Some((mdp_net::socket::interface_mtu(ep)?, spec)))
        .min();
    let endpoint = &endpoints[0];
    let ipv6 = endpoint.group.is_ipv6();
    let fit = mtu.and_then(|(m, _)| mdp_proto::limits::symbol_size_for_mtu(m, ipv6, sealed));
    let routed = endpoint.unicast || args.net.ttl > 1;
    let symbol_size = args
        .symbol_size
        .unwrap_or_else(|| default_symbol_size(fit, ipv6, sealed, routed));
    if let Some((m, spec)) = mtu {
        if fit.is_none_or(|f| symbol_size > f) {
            tracing::warn!(
                "{}-byte symbols do not fit in one packet on --interface {spec}, whose MTU is {m} bytes: every datagram will be fragmented, which is slower and loses a datagram with any of its fragments; {}",
                symbol_size,
                match fit {
                    Some(f) => format!("give --symbol-size {f} or less"),
                    None => "raise the interface's MTU".to_string(),
                }
            );
        }
    }
    symbol_size
}

/// The symbol size when --symbol-size is not given: what fits one packet
/// on the interface's MTU (`fit`, if known), but no more than fits a
/// 1500-byte MTU, which every Ethernet segment carries (a receiver on a
/// jumbo-frame segment whose own link is not would get nothing), and no
/// more than 1400 when packets may cross routers, whose tunnels (GRE,
/// IPsec, VXLAN) take 50 to 80 bytes of the path's MTU: with the don't-
/// fragment bit set and no ICMP error for multicast, a larger datagram
/// would vanish without a word.
fn default_symbol_size(fit: Option<u16>, ipv6: bool, sealed: bool, routed: bool) -> u16 {
    const ROUTED: u16 = 1400;
    let ethernet = mdp_proto::limits::symbol_size_for_mtu(1500, ipv6, sealed)
        .expect("a 1500-byte MTU fits a symbol");
    let cap = if routed {
        ROUTED.min(ethernet)
    } else {
        ethernet
    };
    fit.map_or(cap, |f| f.min(cap))
}

/// Where the sender remembers file hashes: `$XDG_CACHE_HOME/mdp` or
/// `~/.cache/mdp`.
fn hash_cache_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("mdp").join("send-hashes"))
}

/// The receivers of an `--expect-file` that names them by key (`name
/// ssh-ed25519 AAAA…` lines): empty when the file holds plain names, or
/// when there is none. Every key line must carry a name, once.
fn expected_keys(
    file: Option<&Path>,
) -> anyhow::Result<Vec<(String, mdp_proto::identity::PublicKey)>> {
    let Some(f) = file else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(f)
        .map_err(|e| anyhow::anyhow!("cannot read --expect-file {}: {e}", f.display()))?;
    if !text.contains("ssh-") {
        return Ok(Vec::new());
    }
    let trusted = mdp_proto::identity::parse_trust(&text)
        .map_err(|e| anyhow::anyhow!("--expect-file {}: {e}", f.display()))?;
    let mut out: Vec<(String, mdp_proto::identity::PublicKey)> = Vec::new();
    for t in trusted {
        let Some(name) = t.name else {
            anyhow::bail!(
                "--expect-file {}: the key {} has no name; write `NAME ssh-ed25519 AAAA…`",
                f.display(),
                t.key.fingerprint()
            );
        };
        if out.iter().any(|(n, _)| *n == name) {
            anyhow::bail!("--expect-file {}: {name} is listed twice", f.display());
        }
        out.push((name, t.key));
    }
    Ok(out)
}

/// The names of `--expect` and `--expect-file`, without duplicates.
fn expected_names(given: &[String], file: Option<&Path>) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = given.iter().map(|n| n.trim().to_string()).collect();
    if let Some(f) = file {
        let text = std::fs::read_to_string(f).map_err(|e| {
            anyhow::anyhow!(
                "cannot read --expect-file {}: {e}; give a file with one receiver name per line",
                f.display()
            )
        })?;
        names.extend(parse_names(&text));
    }
    names.retain(|n| !n.is_empty());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    for n in &names {
        if n.len() > mdp_proto::limits::MAX_NAME_LEN {
            anyhow::bail!(
                "receiver name {n:?} is longer than {} bytes, so no receiver can register with it",
                mdp_proto::limits::MAX_NAME_LEN
            );
        }
    }
    Ok(names)
}

/// Names in an `--expect-file`: separated by newlines, commas or spaces,
/// with `#` comments.
fn parse_names(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.split(|c: char| c == ',' || c.is_whitespace()))
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// `--tree FILE`: the hosts it lists (one `IP:PORT` a line, `#` comments),
/// as the relay tree the manifest carries, and how many they are.
fn read_tree(
    path: &std::path::Path,
    fan_out: u16,
) -> anyhow::Result<(mdp_proto::manifest::RelayTree, usize)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read --tree {}: {e}", path.display()))?;
    let mut hosts: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let addr: SocketAddr = line.parse().map_err(|_| {
            anyhow::anyhow!(
                "--tree {}:{}: {line:?} is not IP:PORT (a receiver's --interface address and --group port)",
                path.display(),
                n + 1
            )
        })?;
        if !seen.insert(addr) {
            anyhow::bail!(
                "--tree {}:{}: {addr} is listed twice",
                path.display(),
                n + 1
            );
        }
        hosts.push(addr.to_string());
    }
    if hosts.is_empty() {
        anyhow::bail!("--tree {} lists no host", path.display());
    }
    if hosts.len() > mdp_proto::manifest::MAX_TREE_HOSTS {
        anyhow::bail!(
            "--tree {} lists {} hosts, more than a tree takes ({}): split the push",
            path.display(),
            hosts.len(),
            mdp_proto::manifest::MAX_TREE_HOSTS
        );
    }
    let n = hosts.len();
    Ok((mdp_proto::manifest::RelayTree { fan_out, hosts }, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_default_ceiling_is_the_state_machines() {
        let args = Args::try_parse_from(["mdp-send", "f"]).unwrap();
        assert_eq!(args.max_rate, mdp_proto::cc::MAX_BPS);
        assert_eq!(
            SenderConfig::new(SessionId(1)).rate,
            RateMode::Adaptive {
                min_bps: args.min_rate,
                max_bps: args.max_rate,
                start_bps: mdp_proto::cc::START_BPS,
            }
        );
    }

    #[test]
    fn the_default_symbol_size_fills_a_packet_of_the_interface() {
        use mdp_proto::limits::symbol_size_for_mtu as fit;
        // (interface MTU, IPv6, keyed, routed) → symbol size.
        let cases = [
            // A plain Ethernet LAN: the datagram fills the 1500-byte frame.
            (Some(1500), false, false, false, 1444),
            (Some(1500), true, true, false, 1400),
            // A VXLAN overlay or a WireGuard tunnel: smaller, not fragmented.
            (Some(1450), false, false, false, 1394),
            (Some(1420), true, false, false, 1344),
            // Jumbo frames and loopback: no more than a 1500-byte frame's worth.
            (Some(9000), false, false, false, 1444),
            (Some(65_536), false, true, false, 1420),
            // Routed: room for tunnels on the way.
            (Some(1500), false, false, true, 1400),
            (Some(1450), false, false, true, 1394),
            // MTU unknown, or too small for anything.
            (None, false, false, false, 1444),
            (None, true, false, true, 1400),
            (Some(68), false, false, false, 1444),
        ];
        for (mtu, ipv6, sealed, routed, want) in cases {
            let fitted = mtu.and_then(|m| fit(m, ipv6, sealed));
            assert_eq!(
                default_symbol_size(fitted, ipv6, sealed, routed),
                want,
                "mtu {mtu:?} ipv6 {ipv6} keyed {sealed} routed {routed}"
            );
        }
    }

    #[test]
    fn expect_files_take_lines_commas_and_comments() {
        let names = parse_names("# the web tier\nweb1\nweb2, web3  # canary\n\n db1 db2\n");
        assert_eq!(names, ["web1", "web2", "web3", "db1", "db2"]);
    }

    #[test]
    fn expected_names_are_deduplicated_and_bounded() {
        let given = ["a".to_string(), "b".to_string(), "a".to_string()];
        assert_eq!(expected_names(&given, None).unwrap(), ["a", "b"]);
        let long = ["x".repeat(300)];
        let e = expected_names(&long, None).unwrap_err().to_string();
        assert!(e.contains("longer than"), "{e}");
    }
}

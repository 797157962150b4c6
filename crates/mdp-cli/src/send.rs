//! mdp-send: push files and directory trees to a multicast group.

use crate::report::SendJson;
use crate::{parse_duration, parse_rate, NetArgs, OutputArgs, EXIT_INCOMPLETE, EXIT_OK};
use mdp_proto::{RateMode, SenderConfig, SessionId};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const AFTER_HELP: &str = "\
Examples:
  Push a file and a directory to every receiver that shows up within a second:
    mdp-send --interface 192.168.1.10 release.tar.gz configs/

  Push to exactly 20 hosts, wait up to 30 s for them, give up after 10 minutes:
    mdp-send --interface 192.168.1.10 --receivers 20 --wait 30s --timeout 10m images/

  From cron, machine-readable, never above 2 Gbit/s:
    mdp-send --interface 10.0.0.5 --receivers 40 --max-rate 2G --json /srv/content > /var/log/mdp-push.json

Rate: by default the rate adapts: it starts at 2 Gbit/s, doubles every 10 ms
until a receiver reports congestion, then follows the slowest receiver that
can keep --min-rate; slower ones are dropped and reported. --rate fixes it.

Exit status:
  0  every expected receiver confirmed every file
  1  some receiver did not (the report names it and what it missed), or none registered
  2  usage error or local I/O error

Receivers run `mdp-recv --dir DIR` with the same --group and their own --interface.";

/// Push files and directory trees to many hosts at once over UDP multicast.
///
/// mdp-send announces the push, waits for receivers to register, sends every
/// file once (cut into blocks with Reed-Solomon parity), repairs what
/// receivers report missing, and ends when every receiver confirmed or the
/// timeout passed. A file is pushed as its name, a directory as its name and
/// everything below it (like `scp -r`), with modes and mtimes.
#[derive(clap::Parser, Debug)]
#[command(name = "mdp-send", version, after_long_help = AFTER_HELP)]
pub struct Args {
    /// Files and directories to push.
    #[arg(required_unless_present = "gen_key", value_name = "PATH")]
    paths: Vec<PathBuf>,

    /// Hash every file again instead of trusting the hashes remembered
    /// for files unchanged since the last push (device, inode, size, mtime
    /// and ctime equal; kept in ~/.cache/mdp/send-hashes).
    #[arg(long)]
    no_hash_cache: bool,

    /// Unicast mode, for networks without multicast: send to this
    /// receiver (its --interface address and --group port; repeat for
    /// each receiver, which runs with --unicast). Same FEC, NACK and
    /// handshake; every datagram goes out once per receiver.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_destination)]
    to: Vec<std::net::SocketAddr>,

    /// Write a new random key to FILE (mode 0600) for --key-file, and exit.
    #[arg(long, value_name = "FILE", exclusive = true)]
    gen_key: Option<PathBuf>,

    #[command(flatten)]
    net: NetArgs,

    /// Send at this fixed rate, in bits per second (K, M, G suffixes),
    /// instead of adapting to the receivers.
    #[arg(long, value_name = "RATE", value_parser = parse_rate, conflicts_with_all = ["min_rate", "max_rate"])]
    rate: Option<u64>,

    /// Adaptive rate: the floor. A receiver that cannot take it is dropped
    /// and reported, so one slow host cannot hold the others below it.
    #[arg(long, value_name = "RATE", default_value = "10M", value_parser = parse_rate)]
    min_rate: u64,

    /// Adaptive rate: the ceiling (raise it for paths faster than 40 Gbit/s).
    #[arg(long, value_name = "RATE", default_value = "40G", value_parser = parse_rate)]
    max_rate: u64,

    /// Receivers to wait for before sending; all must confirm (0: anyone
    /// who registers within --wait).
    #[arg(long, value_name = "N", default_value_t = 0, conflicts_with_all = ["expect", "expect_file"])]
    receivers: u32,

    /// A closed group: the receivers (by their --node-id, by default their
    /// host names) that must confirm every file. Sending starts as soon as
    /// all of them registered; success needs all of them.
    #[arg(long, value_name = "NAME[,NAME...]", value_delimiter = ',')]
    expect: Vec<String>,

    /// Like --expect, with the names in a file: one per line, or separated
    /// by commas or spaces; `#` starts a comment.
    #[arg(long, value_name = "FILE")]
    expect_file: Option<PathBuf>,

    /// How long to wait for registrations [default: 10s with --receivers or
    /// --expect, else 1s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    wait: Option<Duration>,

    /// Bound on the whole push; unconfirmed receivers are then reported incomplete.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    timeout: Duration,

    /// Drop a receiver that stays silent this long after the data was sent.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    drop_after: Duration,

    /// Bytes of file data per datagram (even). By default the most that
    /// fits one packet on the interface's MTU, up to a 1500-byte MTU's
    /// worth (1444 for IPv4 without a key), or up to 1400 when packets may
    /// cross routers (--ttl above 1, or --to), whose tunnels may have a
    /// smaller MTU. Set it higher (8944 for a 9000-byte MTU) only when
    /// every receiver's link takes jumbo frames.
    #[arg(long, value_name = "BYTES")]
    symbol_size: Option<u16>,

    /// Source symbols per Reed-Solomon block (with --parity at most 256 in
    /// all for the GF(2^8) code, which decodes faster under light loss).
    #[arg(long, value_name = "N", default_value_t = 192)]
    block_size: u16,

    /// Parity symbols available per block for repairs.
    #[arg(long, value_name = "N", default_value_t = 64)]
    parity: u16,

    /// After a complete push, receivers remove what the pushed directories
    /// hold beyond what was pushed (like rsync's --delete). Only below the
    /// directories named on the command line; files pushed by name and the
    /// rest of the receivers' directories are never touched.
    #[arg(long)]
    delete: bool,

    /// Parity symbols sent with every block before any loss is reported.
    #[arg(long, value_name = "N", default_value_t = 0)]
    proactive: u16,

    #[allow(missing_docs)] // documented by OutputArgs's fields
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Runs the program; returns its exit code.
pub fn run(args: &Args) -> anyhow::Result<i32> {
    if let Some(path) = &args.gen_key {
        crate::write_new_key(path)?;
        eprintln!(
            "mdp-send: wrote a new key to {}; copy it to every receiver and give both ends --key-file",
            path.display()
        );
        return Ok(EXIT_OK);
    }
    let mut endpoints = args.net.endpoints()?;
    let mut endpoint = endpoints[0];
    if !args.to.is_empty() {
        endpoint.unicast = true;
        if let Some(d) = args
            .to
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
    let mtu = endpoints
        .iter()
        .zip(&args.net.interface)
        .filter_map(|(ep, spec)| Some((mdp_net::socket::interface_mtu(ep)?, spec)))
        .min();
    let ipv6 = endpoint.group.is_ipv6();
    let sealed = config.auth.is_some();
    let fit = mtu.and_then(|(m, _)| mdp_proto::limits::symbol_size_for_mtu(m, ipv6, sealed));
    let routed = endpoint.unicast || args.net.ttl > 1;
    config.symbol_size = args
        .symbol_size
        .unwrap_or_else(|| default_symbol_size(fit, ipv6, sealed, routed));
    if let Some((m, spec)) = mtu {
        if fit.is_none_or(|f| config.symbol_size > f) {
            tracing::warn!(
                "{}-byte symbols do not fit in one packet on --interface {spec}, whose MTU is {m} bytes: every datagram will be fragmented, which is slower and loses a datagram with any of its fragments; {}",
                config.symbol_size,
                match fit {
                    Some(f) => format!("give --symbol-size {f} or less"),
                    None => "raise the interface's MTU".to_string(),
                }
            );
        }
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
    config.expected_names = expected_names(&args.expect, args.expect_file.as_deref())?;
    config.wait = args
        .wait
        .unwrap_or(if args.receivers > 0 || !config.expected_names.is_empty() {
            Duration::from_secs(10)
        } else {
            Duration::from_secs(1)
        });
    config.timeout = args.timeout;
    config.drop_after = args.drop_after;
    config.delete = args.delete;
    // Larger blocks need a larger cache for the read-ahead window.
    config.cache_bytes = config.cache_bytes.max(config.min_cache_bytes());
    config.validate().map_err(anyhow::Error::msg)?;

    let started = Instant::now();
    tracing::info!("reading and hashing what to push");
    let mut cache = match (args.no_hash_cache, hash_cache_file()) {
        (false, Some(f)) => mdp_net::stamp::HashCache::load(f, Duration::from_secs(2)),
        _ => mdp_net::stamp::HashCache::disabled(),
    };
    let source = mdp_net::scan::scan_cached(&args.paths, &mut cache)?;
    for (p, why) in &source.skipped {
        tracing::warn!("skipping {}: {why}", p.display());
    }
    let files = source.manifest.file_count();
    let bytes = source.manifest.total_bytes();
    tracing::info!(
        "pushing {files} files ({}) to {} via {} in {}-byte symbols, session {}",
        crate::human_bytes(bytes),
        args.net.group,
        args.net.interface.join(", "),
        config.symbol_size,
        config.session
    );
    let bar = crate::progress_bar(args.out.bar(), bytes, "sending");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut log = crate::ProgressLog::new(!args.out.quiet && bar.is_none());
    let report = runtime.block_on(mdp_net::send::run(
        &endpoints,
        &args.to,
        config,
        source,
        |p| {
            if let Some(bar) = &bar {
                bar.set_position(p.bytes_sent);
                if p.flushing {
                    bar.set_message(format!("{}/{} ok", p.confirmed, p.receivers));
                }
            } else if p.started && log.due() {
                tracing::info!(
                    "sent {} of {}, {} receivers, {} confirmed",
                    crate::human_bytes(p.bytes_sent),
                    crate::human_bytes(p.bytes_total),
                    p.receivers,
                    p.confirmed
                );
            }
        },
    ));
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = report?;
    let code = if report.success {
        EXIT_OK
    } else {
        EXIT_INCOMPLETE
    };
    let mut json = SendJson::new(&report, files, bytes, started.elapsed(), code);
    if !args.to.is_empty() {
        // Unicast: every datagram went to each destination.
        json.count_copies(args.to.len() as u64);
    }
    if let Some(p) = &mut json.problem {
        if report.receivers.is_empty() && endpoint_is_loopback {
            p.push_str(" (mdp-send uses loopback unless you give --interface)");
        }
    }
    if args.out.json {
        println!("{}", serde_json::to_string(&json)?);
    } else {
        print!("{}", json.text());
    }
    Ok(code)
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

/// A `--to` destination: `HOST:PORT` (a name is resolved now).
fn parse_destination(s: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .map_err(|e| format!("{s:?} is not HOST:PORT ({e})"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_ceiling_is_the_state_machines() {
        use clap::Parser;
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

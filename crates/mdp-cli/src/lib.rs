//! The `mdp-send` and `mdp-recv` programs: their arguments and bodies
//! ([`send`], [`recv`]; the binaries only parse and call them), shared
//! argument value parsers, logging set-up, progress output and reports.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod hook;
pub mod identity;
pub mod manual;
pub mod metrics;
pub mod progress;

pub use progress::{progress_bar, ProgressLog};
pub mod recv;
pub mod report;
pub mod send;

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The network options both programs share.
#[derive(clap::Args, Debug)]
pub struct NetArgs {
    /// Multicast group and data port (feedback uses the next port).
    #[arg(long, value_name = "ADDR:PORT", default_value = "239.255.77.1:7400", value_parser = parse_group)]
    pub group: SocketAddr,

    /// The interface to send and join on, by name (`eth0`) or by one of its
    /// addresses (loopback by default: give this host's LAN interface to
    /// reach other hosts). Repeat it to use several networks at once: the
    /// sender sends every packet on each, a receiver takes the session from
    /// any of them (redundancy against one network failing).
    #[arg(long, value_name = "NAME|ADDR", default_value = "127.0.0.1", value_parser = parse_interface)]
    pub interface: Vec<String>,

    /// Multicast TTL (1 keeps packets on the local network).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub ttl: u32,

    /// DSCP code point (0-63) for every packet sent, e.g. 10 (AF11) to
    /// let a congested network drop pushes before interactive traffic.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub dscp: u8,

    /// Authenticate every packet with this shared key (64 hex digits; make
    /// one with `mdp-send --gen-key FILE`). Sender and receivers need the
    /// same key; a receiver with a key refuses unauthenticated pushes.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<std::path::PathBuf>,
}

impl NetArgs {
    /// The checked endpoint of the first `--interface`.
    pub fn endpoint(&self) -> anyhow::Result<mdp_net::socket::Endpoint> {
        Ok(self.endpoints()?.remove(0))
    }

    /// The checked endpoints, one per `--interface`.
    pub fn endpoints(&self) -> anyhow::Result<Vec<mdp_net::socket::Endpoint>> {
        let mut out = Vec::new();
        for spec in &self.interface {
            let (interface, index) =
                mdp_net::socket::resolve_interface(spec, self.group).map_err(anyhow::Error::msg)?;
            let ep = mdp_net::socket::Endpoint {
                group: self.group,
                interface,
                ttl: self.ttl,
                index,
                dscp: self.dscp,
                unicast: false,
            };
            ep.validate().map_err(anyhow::Error::msg)?;
            if out
                .iter()
                .any(|e: &mdp_net::socket::Endpoint| e.index == index && index != 0)
            {
                anyhow::bail!("--interface {spec} names an interface given twice");
            }
            out.push(ep);
        }
        Ok(out)
    }

    /// The authentication settings of `--key-file`, if given.
    pub fn auth(&self) -> anyhow::Result<Option<mdp_proto::auth::AuthConfig>> {
        let Some(path) = &self.key_file else {
            return Ok(None);
        };
        let key = read_key_file(path)?;
        let unix_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Ok(Some(mdp_proto::auth::AuthConfig::new(
            key,
            std::time::Instant::now(),
            unix_us,
        )))
    }
}

/// Reads a key file; warns when others may read it.
pub fn read_key_file(path: &std::path::Path) -> anyhow::Result<mdp_proto::auth::Key> {
    use std::os::unix::fs::PermissionsExt;
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read --key-file {}: {e}", path.display()))?;
    let key = mdp_proto::auth::Key::parse(&text)
        .map_err(|e| anyhow::anyhow!("--key-file {}: {e}", path.display()))?;
    if let Ok(md) = std::fs::metadata(path) {
        if md.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "--key-file {} can be read by other users; `chmod 600` it",
                path.display()
            );
        }
    }
    Ok(key)
}

/// Writes a new random key to `path` (mode 0600), refusing to overwrite.
pub fn write_new_key(path: &std::path::Path) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| anyhow::anyhow!("cannot read /dev/urandom for a key: {e}"))?;
    let key = mdp_proto::auth::Key::from_bytes(bytes);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot create key file {}: {e} (it is never overwritten; remove it first to replace it)",
                path.display()
            )
        })?;
    writeln!(
        f,
        "# mdp key: the same file on the sender and every receiver (--key-file)"
    )?;
    writeln!(f, "{}", key.to_hex())?;
    Ok(())
}

/// The output options both programs share.
#[derive(clap::Args, Clone, Debug)]
pub struct OutputArgs {
    /// Print the report as JSON on stdout (schema: docs/REPORT.md).
    #[arg(long)]
    pub json: bool,

    /// Only warnings and the report.
    #[arg(short, long)]
    pub quiet: bool,

    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

impl OutputArgs {
    /// True when a progress bar may be shown (on a terminal).
    pub fn bar(&self) -> bool {
        !self.no_progress && !self.quiet
    }
}

/// Sets up logging for `program`, runs its body and exits; see [`exit_with`].
pub fn main(program: &str, out: &OutputArgs, run: impl FnOnce() -> anyhow::Result<i32>) -> ! {
    init_logging(program, out.quiet || out.json);
    exit_with(program, run)
}

/// Runs a program's body and exits: with its code, or with [`EXIT_ERROR`]
/// after printing the error chain in one line as `PROGRAM: error: ...`.
pub fn exit_with(program: &str, run: impl FnOnce() -> anyhow::Result<i32>) -> ! {
    match run() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("{program}: error: {e:#}");
            std::process::exit(EXIT_ERROR);
        }
    }
}

/// Exit code: every expected receiver confirmed every file.
pub const EXIT_OK: i32 = 0;
/// Exit code: some receiver did not get everything (or none registered).
pub const EXIT_INCOMPLETE: i32 = 1;
/// Exit code: usage error or local I/O error.
pub const EXIT_ERROR: i32 = 2;
/// Exit code (mdp-send): every receiver confirmed every file, but the push
/// hook (`mdp-recv --exec`) failed on at least one.
pub const EXIT_HOOK_FAILED: i32 = 3;

/// Parses a rate in bits per second: `800M`, `1G`, `1.5G`, `64k`, `1000000`.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let bad = || format!("{s:?} is not a rate: write e.g. 800M or 1G (bits per second)");
    let (num, mult) = match s.chars().last().map(|c| c.to_ascii_lowercase()) {
        Some('k') => (&s[..s.len() - 1], 1e3),
        Some('m') => (&s[..s.len() - 1], 1e6),
        Some('g') => (&s[..s.len() - 1], 1e9),
        _ => (s, 1.0),
    };
    let v: f64 = num.parse().map_err(|_| bad())?;
    let bps = v * mult;
    if !(8000.0..=100e9).contains(&bps) {
        return Err(format!("rate {s} is out of range: use 8K to 100G"));
    }
    Ok(bps as u64)
}

/// Parses a size in bytes: `4096`, `64K`, `500M`, `2G`, `1T` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size: write e.g. 500M, 2G or 4096"))?;
    let mult: f64 = match unit
        .trim_end_matches(['i', 'B'])
        .to_ascii_uppercase()
        .as_str()
    {
        "" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        "T" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("unknown size unit {unit:?}: use K, M, G or T")),
    };
    let bytes = v * mult;
    if !(0.0..=1.8e19).contains(&bytes) {
        return Err(format!("size {s} is out of range"));
    }
    Ok(bytes as u64)
}

/// Parses a duration: `500ms`, `30s`, `5m`, `1h`, `1d`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: write e.g. 30s, 5m or 500ms"))?;
    let secs = match unit {
        "" | "s" => v,
        "ms" => v / 1000.0,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        "d" => v * 86400.0,
        _ => {
            return Err(format!(
                "unknown duration unit {unit:?}: use ms, s, m, h or d"
            ))
        }
    };
    if !(0.0..=30.0 * 86400.0).contains(&secs) {
        return Err(format!("duration {s} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `ADDR:PORT` for a multicast group (IPv6 as `[ff15::1]:7400`).
pub fn parse_group(s: &str) -> Result<SocketAddr, String> {
    let a: SocketAddr = s.parse().map_err(|_| {
        format!("{s:?} is not ADDR:PORT: write e.g. 239.255.77.1:7400 or [ff15::77]:7400")
    })?;
    if !a.ip().is_multicast() {
        return Err(format!(
            "{} is not a multicast address: use one in 239.0.0.0/8",
            a.ip()
        ));
    }
    Ok(a)
}

/// Parses an interface address.
pub fn parse_interface(s: &str) -> Result<String, String> {
    let ok = s.parse::<IpAddr>().is_ok()
        || (!s.is_empty()
            && s.len() < 16
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c)));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is neither an IP address nor an interface name: give e.g. eth0 or 192.168.1.10"
        ))
    }
}

/// Logs to stderr: `info` by default, `warn` with `quiet`; `RUST_LOG` overrides.
/// Each line starts with its time (UTC, RFC 3339) unless stderr is the
/// systemd journal, which stamps lines itself: a cron job's error file then
/// says when each line was written.
pub fn init_logging(program: &str, quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(progress::MakeLogWriter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if stderr_is_journal() {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
    let _ = program;
}

/// True when stderr is connected to the systemd journal: systemd sets
/// `JOURNAL_STREAM` to the device and inode of that stream
/// (systemd.exec(5)), and a process whose stderr was redirected elsewhere
/// has another.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(md) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    is_journal_stream(&stream, md.dev(), md.ino())
}

/// True when `JOURNAL_STREAM`'s value (`DEVICE:INODE`, decimal) names the
/// stream of device `dev` and inode `ino`.
fn is_journal_stream(value: &str, dev: u64, ino: u64) -> bool {
    value
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

/// Human-readable bytes.
pub fn human_bytes(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(super::parse_size("4096").unwrap(), 4096);
        assert_eq!(super::parse_size("64K").unwrap(), 64 << 10);
        assert_eq!(super::parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(super::parse_size("2TiB").unwrap(), 2 << 40);
        assert!(super::parse_size("5 apples").is_err());
        assert!(super::parse_size("-1M").is_err());
    }

    #[test]
    fn the_journal_is_recognised_by_its_stream_only() {
        assert!(is_journal_stream("8:123456", 8, 123_456));
        // Redirected elsewhere (`2> push.err` under systemd): another inode.
        assert!(!is_journal_stream("8:123456", 8, 654_321));
        assert!(!is_journal_stream("", 8, 123_456));
        assert!(!is_journal_stream("8", 8, 123_456));
        assert!(!is_journal_stream("x:y", 8, 123_456));
    }

    #[test]
    fn rates_take_si_suffixes() {
        assert_eq!(parse_rate("800M").unwrap(), 800_000_000);
        assert_eq!(parse_rate("1.5G").unwrap(), 1_500_000_000);
        assert_eq!(parse_rate("64k").unwrap(), 64_000);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("10X").is_err());
        assert!(parse_rate("1").is_err());
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn groups_must_be_multicast() {
        assert!(parse_group("239.1.2.3:7400").is_ok());
        assert!(parse_group("[ff15::1]:7400").is_ok());
        assert!(parse_group("10.0.0.1:7400").is_err());
        assert!(parse_group("239.1.2.3").is_err());
    }
}

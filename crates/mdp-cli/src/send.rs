//! mdp-send: push files and directory trees to a multicast group.

//!
//! [`Args`] (clap) becomes a [`SendPlan`] in one function,
//! [`SendPlan::from_args`] (`send/plan.rs`), and [`run`] carries it out.

mod plan;

pub use plan::{PushPlan, SendPlan};

use crate::manual::{self, help_text, Item, Section};
use crate::report::SendJson;
use crate::{
    parse_duration, parse_rate, NetArgs, OutputArgs, EXIT_HOOK_FAILED, EXIT_INCOMPLETE, EXIT_OK,
};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `mdp-send`'s manual beyond its options: the end of `--help`, and the
/// man page's EXAMPLES, EXIT STATUS, ENVIRONMENT and FILES.
pub const MANUAL: &[Section] = &[
    Section {
        title: "EXAMPLES",
        items: &[
            Item::Example {
                what: "Push a file and a directory to every receiver that shows up within a second:",
                command: "mdp-send --interface 192.168.1.10 release.tar.gz configs/",
            },
            Item::Example {
                what: "Push to exactly 20 hosts, wait up to 30 s for them, give up after 10 minutes:",
                command: "mdp-send --interface 192.168.1.10 --receivers 20 --wait 30s --timeout 10m images/",
            },
            Item::Example {
                what: "From cron, machine-readable, never above 2 Gbit/s:",
                command: "mdp-send --interface 10.0.0.5 --receivers 40 --max-rate 2G --json /srv/content > /var/log/mdp-push.json",
            },
            Item::Example {
                what: "The same with its settings in /etc/mdp/send.toml's [profile.content] table:",
                command: "mdp-send --profile content",
            },
        ],
    },
    Section {
        title: "RATE",
        items: &[Item::Para(
            "By default the rate adapts: it starts at 2 Gbit/s, doubles every 10 ms\nuntil a receiver reports congestion, then follows the slowest receiver that\ncan keep --min-rate; slower ones are dropped and reported. --rate fixes it.",
        )],
    },
    Section {
        title: "EXIT STATUS",
        items: &[
            Item::Entry {
                term: "0",
                text: "every expected receiver confirmed every file",
            },
            Item::Entry {
                term: "1",
                text: "some receiver did not (the report names it and what it missed), or none registered",
            },
            manual::EXIT_USAGE,
            Item::Entry {
                term: "3",
                text: "every expected receiver confirmed every file, but the push hook\n(mdp-recv --exec) failed on some (the report names them)",
            },
        ],
    },
    Section {
        title: "ENVIRONMENT",
        items: &[
            Item::Entry {
                term: "MDP_SEND_CONFIG",
                text: "the configuration file to read, as --config names it",
            },
            Item::Entry {
                term: "XDG_CACHE_HOME",
                text: "where the hash cache lives (default ~/.cache)",
            },
            manual::ENV_RUST_LOG,
            manual::ENV_JOURNAL_STREAM,
        ],
    },
    Section {
        title: "FILES",
        items: &[
            Item::Entry {
                term: "/etc/mdp/send.toml",
                text: "settings, read when it exists: each key an option's long name\n(`interface = \"10.0.0.5\"`, `json = true`, `paths = [\"/srv/www\"]`), and\n[profile.NAME] tables that --profile NAME lays over them",
            },
            Item::Entry {
                term: "$XDG_CACHE_HOME/mdp/send-hashes",
                text: "the hashes of files pushed before, by path, size and times",
            },
        ],
    },
    Section {
        title: "SEE ALSO",
        items: &[Item::Para(
            "mdp-recv(1). Receivers run `mdp-recv --dir DIR` with the same --group and\ntheir own --interface.",
        )],
    },
];

/// Push files and directory trees to many hosts at once over UDP multicast.
///
/// mdp-send announces the push, waits for receivers to register, sends every
/// file once (cut into blocks with Reed-Solomon parity), repairs what
/// receivers report missing, and ends when every receiver confirmed or the
/// timeout passed. A file is pushed as its name, a directory as its name and
/// everything below it (like `scp -r`), with modes and mtimes.
#[derive(clap::Parser, Debug)]
#[command(name = "mdp-send", version, after_long_help = help_text(MANUAL))]
pub struct Args {
    /// Read settings from this TOML file, whose keys are these options'
    /// long names (`interface = "10.0.0.5"`, `json = true`, `paths =
    /// ["/srv/www"]`); options given here replace its values. Read when it
    /// exists: /etc/mdp/send.toml, or the file MDP_SEND_CONFIG names.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Lay the settings of the configuration file's `[profile.NAME]` table
    /// over its top-level ones.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,

    /// Files and directories to push.
    #[arg(required_unless_present_any = ["gen_key", "gen_identity", "fingerprint"], value_name = "PATH")]
    paths: Vec<PathBuf>,

    /// Land the push below SUBDIR of each receiver's directory (a relative
    /// path, created as needed): `--dest releases/web site` places
    /// DIR/releases/web/site. With --delete, only what the pushed
    /// directories hold is pruned, never the rest of SUBDIR.
    #[arg(long, value_name = "SUBDIR")]
    dest: Option<String>,

    /// Switch each pushed directory as a whole: receivers place the push
    /// in a new version (DIR/.mdp-versions/NAME/...) and point NAME at it,
    /// by one rename, only once every file arrived and was verified, so a
    /// reader never sees half of one release and half of the next. Files
    /// unchanged since the current version are linked, not sent.
    /// Receivers keep --keep-versions versions.
    #[arg(long)]
    atomic: bool,

    /// Send no file data: receivers register with what they hold, and the
    /// report says per receiver which files it holds and which it lacks
    /// (as a push would find them). Nothing is written on the receivers.
    #[arg(long)]
    dry_run: bool,

    /// Leave out paths that match PATTERN, gitignore-style, matched
    /// against the paths as they land (`site/cache/x`): `*.tmp` at any
    /// depth, `/site/cache` anchored at the top, `logs/` directories only,
    /// `!keep.tmp` taken back in. Repeat it for more patterns.
    #[arg(long, value_name = "PATTERN")]
    exclude: Vec<String>,

    /// Read --exclude patterns from FILE, one per line (`#` comments and
    /// blank lines skipped).
    #[arg(long, value_name = "FILE")]
    exclude_from: Vec<PathBuf>,

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

    /// A unicast relay tree, for networks without multicast: push to the
    /// hosts FILE lists (one IP:PORT per line; # starts a comment), each a
    /// receiver run with --unicast --relay-tree. This sender sends to the
    /// first --fan-out of them, and each host passes the push on to the
    /// next ones (host i to hosts fan-out·(i+1) onwards): this host's
    /// upload is --fan-out copies whatever the number of hosts. The tree
    /// travels in the signed push; every host must confirm (unless
    /// --receivers or --expect say otherwise).
    #[arg(long, value_name = "FILE", conflicts_with = "to")]
    tree: Option<PathBuf>,

    /// Hosts each node of --tree passes the push on to (this sender
    /// included).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64), requires = "tree")]
    fan_out: u16,

    /// Write a new random key to FILE (mode 0600) for --key-file, and exit.
    #[arg(long, value_name = "FILE", exclusive = true)]
    gen_key: Option<PathBuf>,

    /// Sign the push with this identity (a key of `--gen-identity`, or an
    /// unencrypted OpenSSH ed25519 key): receivers with --trust take only
    /// pushes signed by a key they trust.
    #[arg(long = "identity", value_name = "FILE")]
    identity_file: Option<PathBuf>,

    #[allow(missing_docs)] // documented by IdentityArgs's fields
    #[command(flatten)]
    pub identity: crate::identity::IdentityArgs,

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
    /// by commas or spaces; `#` starts a comment. With keys (`NAME
    /// ssh-ed25519 AAAA…` lines, as `--gen-identity` prints them), only a
    /// receiver that signs its feedback with the key listed for its name
    /// (mdp-recv --identity) is admitted and counted.
    #[arg(long, value_name = "FILE")]
    expect_file: Option<PathBuf>,

    /// Do not encrypt. A push with --identity to receivers listed by key
    /// in --expect-file is encrypted by default (only they can read it);
    /// this sends the files in clear, still signed.
    #[arg(long)]
    no_encrypt: bool,

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

    /// Parity symbols sent with every block before any loss is reported,
    /// at least (to a group, the sender adds what the group's losses call
    /// for, so that few blocks need a repair: NACKs stay few
    /// however large the group; none on a network without loss).
    #[arg(long, value_name = "N", default_value_t = 0)]
    proactive: u16,

    #[allow(missing_docs)] // documented by OutputArgs's fields
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Runs a checked plan; returns the exit code.
pub fn run(plan: SendPlan) -> anyhow::Result<i32> {
    let plan = match plan {
        SendPlan::GenKey(path) => {
            crate::write_new_key(&path)?;
            eprintln!(
                "mdp-send: wrote a new key to {}; copy it to every receiver and give both ends --key-file",
                path.display()
            );
            return Ok(EXIT_OK);
        }
        SendPlan::Push(plan) => *plan,
    };
    let PushPlan {
        endpoints,
        to,
        tree,
        config,
        paths,
        hash_cache,
        exclude,
        dest,
        atomic,
        group,
        interfaces,
        loopback,
        out,
    } = plan;
    let dry_run = config.dry_run;
    let started = Instant::now();
    let started_at = std::time::SystemTime::now();
    let roots: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    tracing::info!("reading and hashing what to push");
    let mut cache = match hash_cache {
        Some(f) => mdp_net::stamp::HashCache::load(f, Duration::from_secs(2)),
        None => mdp_net::stamp::HashCache::disabled(),
    };
    let block_bytes = u64::from(config.block_k) * u64::from(config.symbol_size);
    let hashing = crate::progress::spinner(out.bar(), "reading and hashing what to push");
    let source = mdp_net::scan::scan_cached(&paths, block_bytes, &mut cache, &exclude);
    crate::progress::finish(hashing);
    let mut source = source?;
    if let Some(dest) = &dest {
        source.manifest.place_under(dest);
    }
    source.manifest.atomic = atomic;
    source.manifest.tree = tree;
    for (p, why) in &source.skipped {
        tracing::warn!("skipping {}: {why}", p.display());
    }
    let excluded = source.excluded;
    if excluded > 0 {
        tracing::info!("--exclude left out {excluded} paths");
    }
    let files = source.manifest.file_count();
    let bytes = source.manifest.total_bytes();
    tracing::info!(
        "pushing {files} files ({}) to {} via {} in {}-byte symbols, session {}",
        crate::human_bytes(bytes),
        group,
        interfaces.join(", "),
        config.symbol_size,
        config.session
    );
    match &config.encryption {
        Some(e) => tracing::info!(
            "encrypted with {} for the {} receivers of --expect-file",
            e.aead.name(),
            config.expected_keys.len()
        ),
        None if !config.expected_keys.is_empty() => {
            tracing::warn!("not encrypted (--no-encrypt): anyone on the network can read the push")
        }
        None => {}
    }
    // A spinner while receivers register; a bar from the first datagram,
    // so that its rate and ETA count the data alone.
    let bar = crate::progress::spinner(out.bar(), "waiting for receivers");
    let mut bar_started = false;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut log = crate::ProgressLog::new(!out.quiet && bar.is_none());
    let report = runtime.block_on(mdp_net::send::run(&endpoints, &to, config, source, |p| {
        if let Some(bar) = &bar {
            if !p.started {
                bar.set_message(format!("waiting for receivers: {} registered", p.receivers));
                return;
            }
            if !bar_started {
                crate::progress::start_bytes(bar, bytes, "");
                bar_started = true;
            }
            bar.set_position(p.bytes_sent);
            bar.set_message(hosts_line(p));
        } else if p.started && log.due() {
            tracing::info!(
                "sent {} of {}, {} receivers, {} confirmed",
                crate::human_bytes(p.bytes_sent),
                crate::human_bytes(p.bytes_total),
                p.receivers,
                p.confirmed
            );
        }
    }));
    crate::progress::finish(bar);
    let report = report?;
    let code = if !report.success {
        EXIT_INCOMPLETE
    } else if report.hook_failures().next().is_some() {
        EXIT_HOOK_FAILED
    } else {
        EXIT_OK
    };
    let mut json = SendJson::new(
        &report,
        files,
        bytes,
        (started_at, started.elapsed()),
        roots,
        code,
    );
    json.excluded = excluded;
    json.dry_run = dry_run;
    if !to.is_empty() {
        // Unicast: every datagram went to each destination.
        json.count_copies(to.len() as u64);
    }
    if let Some(p) = &mut json.problem {
        let unheard = report.receivers.is_empty()
            || report.receivers.len() < report.expected as usize
            || report
                .receivers
                .iter()
                .any(|r| r.verdict == mdp_proto::sender::Verdict::NeverRegistered);
        if report.receivers.is_empty() && loopback {
            p.push_str(" (mdp-send uses loopback unless you give --interface)");
        } else if unheard && to.is_empty() && endpoints.iter().all(|e| e.ttl <= 1) {
            p.push_str(ROUTED_HINT);
        }
    }
    if out.json {
        println!("{}", serde_json::to_string(&json)?);
    } else {
        print!("{}", json.text());
    }
    Ok(code)
}

/// Appended to the problem of a multicast push at TTL 1 that some
/// receiver never answered.
const ROUTED_HINT: &str = " (with --ttl 1 multicast stays on this network: for receivers beyond a router give --ttl one more than the routers between, on both ends, and route the group both ways; see docs/CROSSING.md)";

/// A `--to` destination: `HOST:PORT` (a name is resolved now).
/// The receivers' states in a few words, beside the bar: `3 rx, 1 ok, 1
/// dropped`.
fn hosts_line(p: &mdp_net::send::SendProgress) -> String {
    let mut line = format!("{} rx", p.receivers);
    if p.confirmed > 0 || p.flushing {
        line.push_str(&format!(", {} ok", p.confirmed));
    }
    if p.dropped > 0 {
        line.push_str(&format!(", {} dropped", p.dropped));
    }
    line
}

fn parse_destination(s: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .map_err(|e| format!("{s:?} is not HOST:PORT ({e})"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

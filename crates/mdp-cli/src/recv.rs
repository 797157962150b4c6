//! mdp-recv: receive pushes from mdp-send into a directory.

//!
//! [`Args`] (clap) becomes a [`RecvPlan`] in one function,
//! [`RecvPlan::from_args`] (`recv/plan.rs`), and [`run`] carries it out.

mod plan;

pub use plan::RecvPlan;

use crate::hook::{HookResult, Hooks, PushInfo};
use crate::manual::{self, help_text, Item, Section};
use crate::report::{PushSpan, RecvJson};
use crate::{parse_duration, parse_size, NetArgs, OutputArgs, EXIT_INCOMPLETE, EXIT_OK};
use mdp_net::recv::RecvNotice;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `mdp-recv`'s manual beyond its options: the end of `--help`, and the
/// man page's EXAMPLES, EXIT STATUS, ENVIRONMENT and FILES.
pub const MANUAL: &[Section] = &[
    Section {
        title: "EXAMPLES",
        items: &[
            Item::Example {
                what: "Receive one push into /srv/cache and exit (0 when every file arrived intact):",
                command: "mdp-recv --interface 192.168.1.20 --dir /srv/cache --trust sender.pub --once",
            },
            Item::Example {
                what: "Run as a service, taking one push after another:",
                command: "mdp-recv --interface 192.168.1.20 --dir /srv/cache --trust /etc/mdp/trusted",
            },
            Item::Example {
                what: "Reload nginx after each complete push that changed something:",
                command: "mdp-recv --interface 192.168.1.20 --dir /srv/www --trust /etc/mdp/trusted \\\n  --exec '[ \"$MDP_CHANGED_COUNT\" = 0 ] || systemctl reload nginx'",
            },
            Item::Example {
                what: "As the packaged service does, every setting in /etc/mdp/recv.toml:",
                command: "systemctl enable --now mdp-recv",
            },
        ],
    },
    Section {
        title: "PLACEMENT",
        items: &[Item::Para(
            "Files appear under DIR at their pushed paths only after each block and\nthe whole file matched their BLAKE3 hashes (written in DIR/.mdp-tmp,\nflushed, then renamed).",
        )],
    },
    Section {
        title: "EXIT STATUS",
        items: &[
            Item::Entry {
                term: "0",
                text: "with --once: every file of the push arrived and was placed;\nwithout --once: stopped by SIGINT/SIGTERM",
            },
            Item::Entry {
                term: "1",
                text: "with --once: the push ended incomplete, --timeout ran out during it (the\nmessage says how much had arrived), or no push came within --timeout",
            },
            manual::EXIT_USAGE,
        ],
    },
    Section {
        title: "ENVIRONMENT",
        items: &[
            Item::Entry {
                term: "MDP_RECV_CONFIG",
                text: "the configuration file to read, as --config names it",
            },
            manual::ENV_RUST_LOG,
            manual::ENV_JOURNAL_STREAM,
            Item::Para(
                "Hooks (--exec, --exec-file) run with MDP_SESSION, MDP_SENDER, MDP_DIR,\nMDP_FILE_COUNT, MDP_FILES, MDP_FILE_LIST, MDP_CHANGED_COUNT, MDP_CHANGED,\nand for --exec-file MDP_FILE and MDP_PATH, set (docs/SERVICE.md).",
            ),
        ],
    },
    Section {
        title: "FILES",
        items: &[
            Item::Entry {
                term: "/etc/mdp/recv.toml",
                text: "settings, read when it exists: each key an option's long name\n(`dir = \"/var/lib/mdp\"`, `trust = \"/etc/mdp/trusted\"`, `json = true`)",
            },
            Item::Entry {
                term: "/etc/mdp/trusted",
                text: "the packaged configuration's trust file: one `[name] ssh-ed25519 AAAA…`\nline per sender key",
            },
            Item::Entry {
                term: "DIR/.mdp-tmp/",
                text: "files being received, the index of placed files and the record of\naccepted pushes (private to the receiver's user)",
            },
        ],
    },
    Section {
        title: "SEE ALSO",
        items: &[Item::Para("mdp-send(1), systemd.exec(5).")],
    },
];

/// Receive files pushed with mdp-send over UDP multicast.
///
/// mdp-recv joins the group, registers with the sender, asks only for what
/// it lost, rebuilds blocks from any k of n symbols, checks each file's
/// BLAKE3 hash and only then places it under DIR by atomic rename.
#[derive(clap::Parser, Debug)]
#[command(name = "mdp-recv", version, after_long_help = help_text(MANUAL))]
pub struct Args {
    /// Read settings from this TOML file, whose keys are these options'
    /// long names (`dir = "/srv/www"`, `json = true`); options given here
    /// replace its values. Read when it exists: /etc/mdp/recv.toml, or
    /// the file MDP_RECV_CONFIG names.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Directory to place received files in (created if missing).
    #[arg(long, value_name = "DIR", required_unless_present_any = ["gen_identity", "fingerprint"])]
    dir: Option<PathBuf>,

    /// Take only pushes signed by this key: a public key line
    /// (`ssh-ed25519 AAAA…`) or a file of them (a .pub file, or a trust
    /// file of `[name] ssh-ed25519 AAAA…` lines). Repeat it, or list
    /// several keys, to trust more than one sender or to rotate keys.
    /// Without it (and without --insecure) every push is refused.
    #[arg(long, value_name = "KEY|FILE")]
    trust: Vec<String>,

    /// Take pushes that are not signed, or signed by any key, from anyone
    /// who can reach the group. Files are placed, but no hook runs and
    /// --delete removes nothing for such a push. For a trusted lab
    /// network only; warns at start-up.
    #[arg(long, conflicts_with = "trust")]
    insecure: bool,

    /// Sign this receiver's feedback with this identity, so that a sender
    /// with `--expect-file` listing its name and key counts it, and no one
    /// else in its name.
    #[arg(long = "identity", value_name = "FILE")]
    identity_file: Option<PathBuf>,

    #[allow(missing_docs)] // documented by IdentityArgs's fields
    #[command(flatten)]
    pub identity: crate::identity::IdentityArgs,

    #[command(flatten)]
    net: NetArgs,

    /// Exit after the first push ends.
    #[arg(long)]
    once: bool,

    /// Stop after this long in any case.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,

    /// Abandon a push whose sender went silent this long.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    idle_timeout: Duration,

    /// This receiver's node name, which the sender's --expect lists and
    /// its report shows [default: the host name]. At most 64 bytes.
    #[arg(long = "node-id", visible_alias = "name", value_name = "NAME")]
    name: Option<String>,

    /// Memory for blocks, in MiB: incomplete ones, and complete ones until
    /// they are rebuilt and written. With the rest of the process this
    /// keeps a receiver under 64 MiB at the default.
    #[arg(long, value_name = "MIB", default_value_t = 40)]
    buffer: usize,

    /// Kernel receive buffer to ask for, in MiB (beyond net.core.rmem_max
    /// when run as root).
    #[arg(long, value_name = "MIB", default_value_t = 32)]
    socket_buffer: usize,

    /// Run `sh -c CMD` after each complete push, with MDP_SESSION,
    /// MDP_SENDER, MDP_DIR, MDP_FILE_COUNT, MDP_FILES, MDP_FILE_LIST,
    /// MDP_CHANGED_COUNT and MDP_CHANGED set (see docs/SERVICE.md). Its
    /// failure is logged and reported, never fatal.
    #[arg(long, value_name = "CMD")]
    exec: Option<String>,

    /// Run `sh -c CMD` after each placed file, with MDP_FILE (relative),
    /// MDP_PATH (absolute), MDP_SESSION, MDP_SENDER and MDP_DIR set.
    #[arg(long, value_name = "CMD")]
    exec_file: Option<String>,

    /// Refuse a push larger than this in all (K, M, G, T: powers of 1024).
    #[arg(long, value_name = "SIZE", default_value = "4T", value_parser = parse_size)]
    max_push_size: u64,

    /// Refuse a push with a file larger than this.
    #[arg(long, value_name = "SIZE", default_value = "1T", value_parser = parse_size)]
    max_file_size: u64,

    /// Refuse a push of more files and directories than this.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    max_files: u32,

    /// Refuse a push with a path deeper than this (`a/b/c` is 3).
    #[arg(long, value_name = "N", default_value_t = 32)]
    max_path_depth: usize,

    /// Refuse a push with a path longer than this, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1024)]
    max_path_len: usize,

    /// Unicast mode, for networks without multicast: take pushes sent to
    /// this host's --interface address and --group port (`mdp-send --to`),
    /// and answer the sender directly.
    #[arg(long)]
    unicast: bool,

    /// Keep the files of an interrupted push (sender killed, host down)
    /// this long, so that the same push started again sends only the
    /// missing blocks (0: remove them at once).
    #[arg(long, value_name = "DURATION", default_value = "1d", value_parser = parse_duration)]
    keep_partial: Duration,

    /// Do not flush files and directories to the disk before confirming a
    /// push. Faster on slow disks, but UNSAFE: after a power cut or a kernel
    /// crash soon after a push, files the sender was told had arrived may be
    /// short, empty or missing under their final names.
    #[arg(long)]
    no_fsync: bool,

    /// Permission bits (octal) never given to a placed file or directory,
    /// whatever the sender's modes say: the default 002 places nothing
    /// world-writable; 0 keeps the sender's modes (set-user-id, set-group-id
    /// and sticky bits are never applied).
    #[arg(long, value_name = "OCTAL", default_value = "002", value_parser = parse_mode_mask)]
    mode_mask: u32,

    /// Serve Prometheus metrics at http://ADDR/metrics: pushes by
    /// outcome, bytes, files placed and failed, hook results, the last
    /// push's time and the current push's progress. No authentication:
    /// give a loopback or management address (e.g. 127.0.0.1:9477).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<std::net::SocketAddr>,

    /// Give placed files and directories this group (a name or a number),
    /// e.g. the web server's; with --mode-mask 027 only it (and the
    /// receiver's user) can read them. Needs root, or membership of the
    /// group.
    #[arg(long, value_name = "GROUP")]
    file_group: Option<String>,

    /// As root, leave placed files, directories and links owned by root.
    /// By default a receiver running as root gives each the owner and
    /// group it has on the sender, by name where this host knows the name,
    /// else by number (--file-group still sets the group). A receiver not
    /// running as root always owns what it places.
    #[arg(long)]
    no_owners: bool,

    /// For pushes made with mdp-send --atomic: keep this many versions of
    /// each pushed directory (in DIR/.mdp-versions), the current one
    /// included; older ones are removed after each switch.
    #[arg(long, value_name = "N", default_value_t = mdp_net::store::DEFAULT_KEEP_VERSIONS as u64, value_parser = clap::value_parser!(u64).range(1..=1000))]
    keep_versions: u64,

    /// Relay: pass each push taken on to this group and port, as its
    /// sender on another network (--relay-interface): every block as soon
    /// as it is verified here, repairs of that network's losses from this
    /// copy, and its receivers' registrations and confirmations passed up,
    /// so that the origin's report names each of them. The origin's
    /// signature travels unchanged: the receivers behind trust the
    /// origin's key, not this host's. Encrypted pushes are not passed on.
    #[arg(long, value_name = "ADDR:PORT", value_parser = crate::parse_group, requires = "relay_interface")]
    relay_group: Option<std::net::SocketAddr>,

    /// The interface (name or address) the relay sends on; repeat it for
    /// several networks.
    #[arg(long, value_name = "NAME|ADDR", value_parser = crate::parse_interface, requires = "relay_group")]
    relay_interface: Vec<String>,

    /// The relay's TTL (hop limit): one more than the routers between it
    /// and the receivers behind it.
    #[arg(long, value_name = "N", default_value_t = 1)]
    relay_ttl: u32,

    /// Receivers behind the relay to wait for before its data starts (0:
    /// wait --relay-wait, then start with those registered).
    #[arg(long, value_name = "N", default_value_t = 0)]
    relay_receivers: u32,

    /// In a unicast relay tree (mdp-send --tree, this receiver run with
    /// --unicast): pass each push on to the hosts below this one in the
    /// tree the signed push carries, as a relay does (the --relay-*
    /// settings apply). This host's port + 1 must be free: its relay sends
    /// from there.
    #[arg(long, requires = "unicast", conflicts_with_all = ["relay_group", "insecure"])]
    relay_tree: bool,

    /// The relay's highest rate (bits per second, e.g. 500M); it adapts
    /// below it to what its receivers take, down to 100 kbit/s, and drops
    /// none as too slow: a slow network behind a relay takes the push at
    /// its own pace.
    #[arg(long, value_name = "RATE", value_parser = crate::parse_rate)]
    relay_max_rate: Option<u64>,

    /// Bound on each push the relay passes on (its receivers that have not
    /// confirmed by then are reported incomplete).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    relay_timeout: Duration,

    /// How long the relay waits for its receivers to register (less when
    /// --relay-receivers of them did).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    relay_wait: Duration,

    /// Kill a hook that runs longer than this.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    exec_timeout: Duration,

    #[allow(missing_docs)] // documented by OutputArgs's fields
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Runs a checked plan; returns the exit code.
pub fn run(plan: RecvPlan) -> anyhow::Result<i32> {
    let RecvPlan {
        opts,
        name,
        group,
        interfaces,
        exec,
        exec_file,
        exec_timeout,
        metrics,
        out,
    } = plan;
    let metrics = metrics
        .map(|addr| crate::metrics::Metrics::serve(addr, &name))
        .transpose()?;
    let (dir, once, timeout) = (opts.dir.clone(), opts.once, opts.timeout);
    if opts.config.trust.is_empty() {
        if opts.config.insecure {
            tracing::warn!(
                "--insecure: taking pushes from anyone who can reach {group}, signed or not (no hook runs and --delete removes nothing for them); give --trust KEY|FILE instead"
            );
        } else {
            tracing::error!(
                "no key is trusted, so every push will be refused: give --trust KEY|FILE (or `trust = \"FILE\"` in the configuration file) with the sender's public key (mdp-send --fingerprint / --gen-identity print it), or --insecure"
            );
        }
    }
    tracing::info!(
        "{name} waiting for pushes on {} via {} into {}",
        group,
        interfaces.join(", "),
        dir.display()
    );
    let show_bar = out.bar();
    let mut bar: Option<indicatif::ProgressBar> = None;
    let json = out.json;
    let mut log = crate::ProgressLog::new(!out.quiet);
    let has_hooks = exec.is_some() || exec_file.is_some();
    let has_push_hook = exec.is_some();
    let hooks = Hooks::new(exec, exec_file, exec_timeout);
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    // The push in progress, for the hooks.
    let mut push = PushInfo::empty(dir.clone());
    // How the push hook of a push ended, with its session, for its report
    // (written on the hook thread before the receiver may confirm).
    let hook_ran: Arc<Mutex<Option<(String, HookResult)>>> = Arc::default();
    // Bytes of the push in progress, and its total, for the message when
    // --timeout or a signal ends it.
    let mut progress: Option<(u64, u64)> = None;
    // The push in progress, for its report.
    let mut span: Option<PushSpan> = None;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ended = runtime.block_on(mdp_net::recv::run(opts, |n| match n {
        RecvNotice::Started {
            session,
            sender,
            manifest,
            signer,
        } => {
            if signer.is_none() && has_hooks {
                tracing::warn!(
                    "push {session} is not authenticated (--insecure): its hooks will not run"
                );
            }
            tracing::info!(
                "push {session}{}: {} files, {}",
                sender.map(|a| format!(" from {a}")).unwrap_or_default(),
                manifest.file_count(),
                crate::human_bytes(manifest.total_bytes())
            );
            push = PushInfo {
                session: session.to_string(),
                sender: sender.map(|a| a.to_string()),
                dir: dir.clone(),
                files: manifest.files().map(|(_, e)| e.path.clone()).collect(),
                changed: Vec::new(),
                complete: false,
                authenticated: signer.is_some(),
            };
            progress = Some((0, manifest.total_bytes()));
            if let Some(m) = &metrics {
                m.push_started(manifest.total_bytes());
            }
            span = Some(PushSpan {
                node: name.clone(),
                started: std::time::SystemTime::now(),
            });
            bar = crate::progress_bar(show_bar, manifest.total_bytes(), "receiving");
        }
        RecvNotice::Progress { bytes, total } => {
            progress = Some((bytes, total));
            if let Some(m) = &metrics {
                m.progress(bytes);
            }
            if let Some(b) = &bar {
                b.set_position(bytes);
            } else if log.due() {
                tracing::info!(
                    "received {} of {}",
                    crate::human_bytes(bytes),
                    crate::human_bytes(total)
                );
            }
        }
        RecvNotice::Placed(p) => {
            tracing::debug!("placed {}", p.display());
            if let Ok(rel) = p.strip_prefix(&dir) {
                let rel = rel.to_string_lossy().into_owned();
                push.changed.push(rel.clone());
                hooks.file_placed(|| push.clone(), rel);
            }
        }
        RecvNotice::Failed(msg) => tracing::warn!("{msg}"),
        RecvNotice::Settled { reply, session } => {
            // Every file is placed and the tree settled: the push hook runs
            // now, and the receiver confirms once it ended, with its
            // outcome.
            push.complete = true;
            let slot = hook_ran.clone();
            let session = session.to_string();
            hooks.push_done(push.clone(), move |hook| {
                let outcome = match &hook {
                    Some(h) => Some(h.outcome()),
                    // A hook is configured but none could run (the hook
                    // thread is gone): the sender hears it failed.
                    None if has_push_hook => Some(mdp_proto::wire::HookOutcome::NotStarted),
                    None => None,
                };
                // Recorded before the answer: the push's report, printed
                // once the sender acknowledged, finds it.
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = hook.map(|h| (session, h));
                reply.send(outcome);
            });
        }
        RecvNotice::Finished(outcome, stats, removed) => {
            crate::progress::finish(bar.take());
            progress = None;
            push.complete = outcome.complete;
            if let Some(m) = &metrics {
                m.push_finished(&outcome, &stats);
            }
            let span = span.take().unwrap_or_else(|| PushSpan {
                node: name.clone(),
                started: std::time::SystemTime::now(),
            });
            let sender = std::mem::replace(&mut push, PushInfo::empty(dir.clone())).sender;
            // The hook ended before the receiver confirmed; a push that
            // never settled ran none.
            let hook = {
                let mut slot = hook_ran.lock().unwrap_or_else(|e| e.into_inner());
                match slot.take() {
                    Some((s, h)) if s == outcome.session.to_string() => Some(h),
                    // Another push's (one that ended before its hook did).
                    other => {
                        *slot = other;
                        None
                    }
                }
            };
            if let Some(m) = &metrics {
                m.hook_done(hook.as_ref());
            }
            if json {
                let mut j = RecvJson::new(&outcome, &stats, &span);
                j.sender = sender;
                j.deleted = removed;
                j.hook = hook;
                println!("{}", serde_json::to_string(&j).expect("serializable"));
            } else if outcome.complete {
                println!(
                    "mdp-recv: push {} complete: {} files placed{}",
                    outcome.session,
                    outcome.verified,
                    match &hook {
                        Some(h) => format!("; hook {}", h.outcome().describe()),
                        None => String::new(),
                    }
                );
            } else {
                println!(
                    "mdp-recv: push {} incomplete: {}",
                    outcome.session,
                    outcome
                        .problem
                        .as_ref()
                        .map_or("unknown reason".into(), |p| p.to_string())
                );
            }
        }
    }));
    // A push a signal or --timeout cut short leaves no bar behind.
    crate::progress::finish(bar.take());
    hooks.finish();
    let ended = ended?;
    if !once {
        return Ok(EXIT_OK);
    }
    Ok(match ended.outcomes.first() {
        Some(o) if o.complete => EXIT_OK,
        Some(_) => EXIT_INCOMPLETE,
        None => {
            let why = match timeout {
                Some(t) if ended.timed_out => {
                    format!("--timeout ({t:?}) ran out")
                }
                _ => "interrupted".to_string(),
            };
            match progress {
                Some((bytes, total)) => eprintln!(
                    "mdp-recv: {why} during push {}: {} of {} received, {} of {} files placed; the rest is kept for a resume (--keep-partial) when the sender pushes again",
                    push.session,
                    crate::human_bytes(bytes),
                    crate::human_bytes(total),
                    push.changed.len(),
                    push.files.len()
                ),
                None => eprintln!(
                    "mdp-recv: {why} before any push arrived (is mdp-send using the same --group and a reachable --interface?)"
                ),
            }
            EXIT_INCOMPLETE
        }
    })
}

/// `--mode-mask`: permission bits in octal (`022`, `0o002`, `0`).
fn parse_mode_mask(s: &str) -> Result<u32, String> {
    let digits = s.trim_start_matches("0o");
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(format!(
            "{s:?} is not a permission mask: give up to three octal digits, like 022"
        )),
    }
}

//! The receiver's driver: one tokio task runs the [`Receiver`](mdp_proto::Receiver) state machine
//! against the data and feedback sockets and a timer; a writer thread owns
//! the [`Store`] and writes, verifies and places files.
//!
//! Without `once`, a finished session is followed by a fresh receiver that
//! waits for the next push (finished session ids are ignored from then on).
//!
//! - [`run`] (here): opens the sockets and the store, starts the writer, and
//!   turns the driver until the run ends.
//! - `sockets`: the data, feedback and further-interface sockets.
//! - `writer`: the writer and verifier threads that own the store.
//! - `driver`: one turn of the loop, as named steps.
//! - `warnings`: the one-line warnings with their fix (buffer, MTU, keys).

mod driver;
mod ledger;
mod sockets;
mod warnings;
mod writer;

pub use warnings::{buffer_warning, mtu_warning, BUFFER_MS};

use crate::socket::Endpoint;
use crate::store::Store;
use driver::RecvDriver;
use mdp_proto::wire::HookOutcome;
use mdp_proto::{Manifest, ReceiverConfig, ReceiverStats, SessionId, SessionOutcome};
use sockets::RecvSockets;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use writer::Writer;

/// Why the receiver stopped with an error.
#[derive(Debug, Error)]
pub enum RecvError {
    /// Bad settings.
    #[error("{0}")]
    Config(String),
    /// The sockets could not be set up.
    #[error("{0}")]
    Socket(String),
    /// The cache directory cannot be used.
    #[error("cannot use directory {path}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Another IO error.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A view of the receiver, for progress displays and logs.
#[derive(Debug)]
pub enum RecvNotice {
    /// A session's manifest arrived.
    Started {
        /// Session.
        session: SessionId,
        /// Where its first ANNOUNCE came from.
        sender: Option<std::net::SocketAddr>,
        /// The validated manifest.
        manifest: Arc<Manifest>,
        /// The trusted key that signed it; `None` for a push taken with
        /// `--insecure` (no hook may run for it).
        signer: Option<mdp_proto::identity::PublicKey>,
    },
    /// Bytes handed over so far in the current session.
    Progress {
        /// Delivered.
        bytes: u64,
        /// Total.
        total: u64,
    },
    /// A file was verified and placed.
    Placed(PathBuf),
    /// A file failed.
    Failed(String),
    /// A signed push in which every file was placed is settled: its tree
    /// is final and on the disk, `--delete` done. The caller runs its push
    /// hook now, if it has one, and answers with how it ended; the
    /// receiver confirms to the sender only then, with that outcome, so
    /// the sender's report shows it. Dropping `reply` answers "no hook
    /// ran". (No hook may run for any other push: one taken `--insecure`,
    /// or one in which a file failed, confirms without this notice.)
    Settled {
        /// Session.
        session: SessionId,
        /// The answer.
        reply: HookReply,
    },
    /// A session ended; the last field lists what `--delete` removed.
    Finished(SessionOutcome, ReceiverStats, Vec<String>),
}

/// The answer to [`RecvNotice::Settled`].
#[derive(Debug)]
pub struct HookReply(pub(super) tokio::sync::oneshot::Sender<Option<HookOutcome>>);

impl HookReply {
    /// How the push hook ended (`None`: none ran).
    pub fn send(self, outcome: Option<HookOutcome>) {
        // The receiver may have stopped meanwhile: nobody to tell then.
        let _ = self.0.send(outcome);
    }
}

/// Settings of the receiver driver.
#[derive(Clone, Debug)]
pub struct RecvOptions {
    /// Group, port and interface.
    pub endpoint: Endpoint,
    /// More interfaces (same group) to take the session from: duplicates
    /// from several networks are discarded, and feedback goes out on each.
    pub also: Vec<Endpoint>,
    /// State machine settings.
    pub config: ReceiverConfig,
    /// Cache directory.
    pub dir: PathBuf,
    /// Stop after the first session.
    pub once: bool,
    /// Bound on the whole run.
    pub timeout: Option<Duration>,
    /// Receive buffer to ask the kernel for, in bytes.
    pub socket_buffer: usize,
    /// How long files of an interrupted push are kept for a resume.
    pub keep_partial: Duration,
    /// Flush each file before it is placed and the push's directories
    /// before confirming ([`Store::set_durable`]); true unless the operator
    /// traded it away (`--no-fsync`).
    pub durable: bool,
    /// Permission bits never given to what is placed
    /// ([`Store::set_mode_mask`]).
    pub mode_mask: u32,
    /// The group placed files and directories get ([`Store::set_group`]).
    pub file_group: Option<u32>,
    /// Give placed entries the sender's owners ([`Store::set_keep_owners`];
    /// only a receiver running as root can).
    pub keep_owners: bool,
    /// Versions of each directory an atomic push keeps
    /// ([`Store::set_keep_versions`]).
    pub keep_versions: usize,
    /// Pass each push on to a network of its own, as a relay
    /// (docs/PROTOCOL.md §5d).
    pub relay: Option<crate::relay::RelayOptions>,
    /// In a unicast relay tree (`mdp-recv --relay-tree`): pass each push
    /// on to the hosts below this one in the tree the push carries; the
    /// destinations are filled in per push.
    pub relay_tree: Option<crate::relay::RelayOptions>,
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// Runs the receiver until `once` and a session ended, the timeout, or a
/// signal. Returns the outcomes of the sessions it finished, and whether the
/// timeout ended it.
pub async fn run(opts: RecvOptions, notice: impl FnMut(RecvNotice)) -> Result<Ended, RecvError> {
    let sockets = RecvSockets::open(&opts)?;
    let mut store = Store::open(&opts.dir).map_err(|source| RecvError::Dir {
        path: opts.dir.clone(),
        source,
    })?;
    store.set_keep_partial(opts.keep_partial);
    store.set_durable(opts.durable);
    store.set_mode_mask(opts.mode_mask);
    store.set_group(opts.file_group);
    store.set_keep_owners(opts.keep_owners);
    store.set_keep_versions(opts.keep_versions);
    let writer = Writer::spawn(store)?;
    let mtu = sockets::smallest_mtu(&opts);
    let mut driver = RecvDriver::new(&opts, sockets, writer, mtu, notice);
    // An error returns at once: dropping the driver closes the writer's
    // channel, and it ends on its own.
    let timed_out = loop {
        if let Some(timed_out) = driver.turn().await? {
            break timed_out;
        }
    };
    Ok(Ended {
        outcomes: driver.finish(),
        timed_out,
    })
}

/// How [`run`] ended.
#[derive(Debug)]
pub struct Ended {
    /// The sessions it finished, in order.
    pub outcomes: Vec<SessionOutcome>,
    /// The timeout ran out (not `once` with a finished session, nor a
    /// signal).
    pub timed_out: bool,
}

/// The host name, for the default node name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "mdp-recv".to_string())
}

/// True when `dir` can be used as a cache directory (for early errors).
pub fn check_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(".mdp-probe");
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(probe)
}

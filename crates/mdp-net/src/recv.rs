//! The receiver's driver: one tokio task runs the [`Receiver`] state machine
//! against the data and feedback sockets and a timer; a writer thread owns
//! the [`Store`] and writes, verifies and places files.
//!
//! Without `once`, a finished session is followed by a fresh receiver that
//! waits for the next push (finished session ids are ignored from then on).

use crate::socket::{self, Endpoint};
use crate::store::{Store, Written};
use crate::udp::{self, BatchReceiver};
use mdp_proto::fec::{Codec, CompleteBlock};
use mdp_proto::receiver::Refusal;
use mdp_proto::wire::FailReason;
use mdp_proto::{
    Manifest, ObjectId, Receiver, ReceiverConfig, ReceiverEvent, ReceiverStats, SessionId,
    SessionOutcome,
};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::io::Interest;
use tokio::net::UdpSocket;

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
#[derive(Clone, Debug)]
pub enum RecvNotice {
    /// A session's manifest arrived.
    Started {
        /// Session.
        session: SessionId,
        /// Where its first ANNOUNCE came from.
        sender: Option<std::net::SocketAddr>,
        /// The validated manifest.
        manifest: Arc<Manifest>,
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
    /// A session ended; the last field lists what `--delete` removed.
    Finished(SessionOutcome, ReceiverStats, Vec<String>),
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
}

/// Commands (mostly finished blocks) queued for the writer thread at most.
const WRITE_QUEUE: usize = 16;

enum WriterCmd {
    /// A session: its manifest and bytes per full block.
    Begin(SessionId, Arc<Manifest>, u64),
    /// A file was verified and placed: remember it in the store's index.
    Placed(String, [u8; 32]),
    Write(ObjectId, u64, CompleteBlock),
    Complete(ObjectId),
    /// Every file is placed or failed: make the tree final (directory
    /// modes and times; with `prune`, remove what the pushed directories
    /// hold beyond the manifest) before the receiver confirms.
    Settle {
        session: SessionId,
        prune: bool,
    },
    /// The session ended.
    Finish,
}

enum WriterReply {
    /// The files of the session that are already in place, and the blocks
    /// of others an interrupted push left.
    Present(SessionId, Vec<ObjectId>, Vec<crate::store::HeldBlocks>),
    /// The session cannot be taken (not enough disk space): why.
    Refuse(SessionId, String),
    Verified(
        ObjectId,
        Result<PathBuf, (FailReason, String)>,
        (String, [u8; 32]),
    ),
    BeginFailed(String),
    /// The tree is final; what `--delete` removed.
    Settled(SessionId, Vec<String>),
    Finished,
}

/// Owns the store: rebuilds blocks (the Reed-Solomon decodes run here, not
/// on the socket loop), writes them, and hands finished files to a verifier
/// thread, so that hashing a large file does not hold up the next writes.
fn writer(
    mut store: Store,
    cmds: mpsc::Receiver<WriterCmd>,
    replies: tokio::sync::mpsc::UnboundedSender<WriterReply>,
) {
    let mut codec = Codec::default();
    let dir = store.root().to_path_buf();
    let (verify_tx, verify_rx) = mpsc::channel::<(ObjectId, Written)>();
    let verify_replies = replies.clone();
    let verifier = std::thread::Builder::new()
        .name("mdp-verifier".into())
        .spawn(move || {
            for (object, written) in verify_rx {
                let key = written.path_and_hash();
                let result = written.verify_and_place();
                if verify_replies
                    .send(WriterReply::Verified(object, result, key))
                    .is_err()
                {
                    return;
                }
            }
        });
    for cmd in cmds {
        let reply = match cmd {
            WriterCmd::Begin(session, manifest, block_bytes) => {
                match store.begin(session, manifest.clone(), block_bytes) {
                    Ok(partial) => {
                        let present = store.present(&manifest);
                        let needed = store.bytes_needed(&present, &partial);
                        match store.free_bytes() {
                        Some(free) if needed > free => WriterReply::Refuse(
                            session,
                            format!(
                                "refused the push: it needs {needed} bytes in {} and only {free} are free; free some space or use another --dir",
                                dir.display()
                            ),
                        ),
                        _ => WriterReply::Present(session, present, partial),
                    }
                    }
                    Err(e) => WriterReply::BeginFailed(e.to_string()),
                }
            }
            WriterCmd::Placed(path, hash) => {
                store.placed(&path, hash);
                continue;
            }
            WriterCmd::Write(object, offset, block) => {
                match block.into_bytes(&mut codec) {
                    Ok(data) => store.write_block(object, offset, data),
                    Err(e) => store.fail(object, io::Error::other(e)),
                }
                continue;
            }
            WriterCmd::Complete(object) => match (store.written(object), &verifier) {
                (Ok(written), Ok(_)) => {
                    let _ = verify_tx.send((object, written));
                    continue;
                }
                // No verifier thread could be started: verify here.
                (Ok(written), Err(_)) => {
                    let key = written.path_and_hash();
                    WriterReply::Verified(object, written.verify_and_place(), key)
                }
                (Err(e), _) => WriterReply::Verified(object, Err(e), (String::new(), [0; 32])),
            },
            WriterCmd::Settle { session, prune } => {
                WriterReply::Settled(session, store.settle(prune))
            }
            WriterCmd::Finish => {
                store.finish();
                WriterReply::Finished
            }
        };
        if replies.send(reply).is_err() {
            break;
        }
    }
    drop(verify_tx);
    if let Ok(v) = verifier {
        let _ = v.join();
    }
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
pub async fn run(
    opts: RecvOptions,
    mut notice: impl FnMut(RecvNotice),
) -> Result<Ended, RecvError> {
    let ep = opts.endpoint;
    ep.validate().map_err(RecvError::Config)?;
    let explain = |e: io::Error| RecvError::Socket(socket::explain(&e, &ep));
    if ep.unicast && !opts.also.is_empty() {
        return Err(RecvError::Config(
            "unicast mode takes pushes on one --interface".into(),
        ));
    }
    let data = if ep.unicast {
        socket::unicast(&ep, ep.group.port()).map_err(explain)?
    } else {
        socket::joined(&ep, ep.group.port()).map_err(explain)?
    };
    // The same group on the other interfaces: joined by the same sockets
    // (the state machine discards the duplicates), and a sending socket
    // each for feedback.
    let mut feedback_out = Vec::new();
    for other in &opts.also {
        other.validate().map_err(RecvError::Config)?;
        let explain = |e: io::Error| RecvError::Socket(socket::explain(&e, other));
        socket::join_also(&data, other).map_err(explain)?;
        feedback_out.push(UdpSocket::from_std(
            socket::sender(other).map_err(explain)?,
        )?);
    }
    // Unicast: feedback goes back from the data socket to the sender.
    let reply = if ep.unicast {
        Some(UdpSocket::from_std(data.try_clone()?)?)
    } else {
        None
    };
    let granted = udp::grow_recv_buffer(&data, opts.socket_buffer);
    let mut batch = BatchReceiver::new(&data);
    let data = UdpSocket::from_std(data)?;
    let data_fd = data.as_raw_fd();
    let mut buffer_checked = false;
    let feedback_addr = ep.feedback();
    // Unicast has no group to overhear other receivers on: a socket that
    // never receives anything keeps the loop the same.
    let feedback = if ep.unicast {
        socket::unicast(&ep, 0).map_err(explain)?
    } else {
        socket::joined(&ep, feedback_addr.port()).map_err(explain)?
    };
    for other in &opts.also {
        socket::join_also(&feedback, other)
            .map_err(|e| RecvError::Socket(socket::explain(&e, other)))?;
    }
    let feedback = UdpSocket::from_std(feedback)?;
    let mut store = Store::open(&opts.dir).map_err(|source| RecvError::Dir {
        path: opts.dir.clone(),
        source,
    })?;
    store.set_keep_partial(opts.keep_partial);
    // Blocks held for the running hash count in the block budget; three
    // quarters stay for the blocks that close the gaps.
    store.set_keep_limit(opts.config.buffer_bytes / 4);
    // Bounded: when the disk is slower than the network, the protocol task
    // waits here (and the kernel drops what overflows the socket buffer,
    // which NACKs repair) instead of queueing blocks in memory without end.
    let (cmd_tx, cmd_rx) = mpsc::sync_channel(WRITE_QUEUE);
    let (reply_tx, mut reply_rx) = tokio::sync::mpsc::unbounded_channel();
    let writer_thread = std::thread::Builder::new()
        .name("mdp-writer".into())
        .spawn(move || writer(store, cmd_rx, reply_tx))?;

    let deadline = opts.timeout.map(|t| Instant::now() + t);
    let mut config = opts.config.clone();
    let mut receiver = Receiver::new(config.clone());
    let mut outcomes = Vec::new();
    let mut buf = Vec::with_capacity(2048);
    let mut fbuf = vec![0u8; 65536];
    let mut next_progress = Instant::now();
    let mut interrupt = Box::pin(shutdown_signal());
    let mut pending_finish: Option<SessionOutcome> = None;
    let mut auth_warnings = AuthWarnings::default();
    // The smallest MTU of the interfaces this receiver takes pushes on, and
    // the last session whose symbol size was checked against it.
    let mtu = std::iter::once(&ep)
        .chain(&opts.also)
        .filter_map(socket::interface_mtu)
        .min();
    let mut mtu_checked: Option<mdp_proto::SessionId> = None;
    // The source address of the ANNOUNCE the current session began with.
    let mut session_sender: Option<std::net::SocketAddr> = None;
    // What --delete removed when the tree was settled, for the report.
    let mut pruned: Vec<String> = Vec::new();
    let result = 'run: loop {
        let now = Instant::now();
        // A timer that fell due fires here, not only when the select below
        // sleeps: while datagrams keep arriving, `readable` always wins it,
        // and NACKs and congestion reports would wait for the stream to end.
        if receiver.poll_timeout().is_some_and(|t| t <= now) {
            receiver.handle_timeout(now);
        }
        while let Some(t) = receiver.poll_transmit(now, &mut buf) {
            let sent = match (&reply, session_sender) {
                (Some(r), Some(to)) => r.send_to(&buf[..t.size], to).await,
                (Some(_), None) => continue,
                (None, _) => feedback.send_to(&buf[..t.size], feedback_addr).await,
            };
            if let Err(e) = sent {
                tracing::debug!("feedback send failed: {e}");
            }
            for out in &feedback_out {
                if let Err(e) = out.send_to(&buf[..t.size], feedback_addr).await {
                    tracing::debug!("feedback send failed: {e}");
                }
            }
        }
        // Once per session, as soon as its ANNOUNCE is in (a push that
        // does not fit the MTU may never bring the manifest).
        if let (Some(id), Some(t), Some(mtu)) =
            (receiver.session_id(), receiver.session_symbol_size(), mtu)
        {
            if mtu_checked != Some(id) {
                mtu_checked = Some(id);
                let sealed = config.auth.is_some();
                if let Some(msg) = mtu_warning(t, mtu, ep.group.is_ipv6(), sealed) {
                    tracing::warn!("{msg}");
                }
            }
        }
        while let Some(ev) = receiver.poll_event() {
            match ev {
                ReceiverEvent::SessionStarted {
                    session,
                    manifest,
                    block_bytes,
                    ..
                } => {
                    if !buffer_checked {
                        buffer_checked = true;
                        if let Some(msg) = buffer_warning(granted, receiver.session_rate()) {
                            tracing::warn!("{msg}");
                        }
                    }
                    notice(RecvNotice::Started {
                        session,
                        sender: session_sender,
                        manifest: manifest.clone(),
                    });
                    let _ = cmd_tx.send(WriterCmd::Begin(session, manifest, block_bytes));
                }
                ReceiverEvent::Block {
                    object,
                    offset,
                    block,
                } => {
                    let _ = cmd_tx.send(WriterCmd::Write(object, offset, block));
                }
                ReceiverEvent::ObjectComplete { object } => {
                    let _ = cmd_tx.send(WriterCmd::Complete(object));
                }
                ReceiverEvent::Settle { prune } => {
                    if let Some(session) = receiver.session_id() {
                        let _ = cmd_tx.send(WriterCmd::Settle { session, prune });
                    }
                }
                ReceiverEvent::Finished(outcome) => {
                    let _ = cmd_tx.send(WriterCmd::Finish);
                    pending_finish = Some(outcome);
                }
            }
        }
        if now >= next_progress {
            if let Some((bytes, total)) = receiver.progress() {
                notice(RecvNotice::Progress { bytes, total });
            }
            auth_warnings.check(&receiver.stats());
            next_progress = now + Duration::from_millis(100);
        }
        let mut wake = receiver
            .poll_timeout()
            .unwrap_or(now + Duration::from_secs(3600))
            .min(next_progress);
        if let Some(d) = deadline {
            if now >= d {
                break Ok(true);
            }
            wake = wake.min(d);
        }
        tokio::select! {
            r = data.readable() => {
                r?;
                // One batch (at most RECV_BATCH slots, a few blocks), then
                // back to the top: its blocks go to the writer before more
                // are read, so memory stays bounded however far behind the
                // receiver is (the socket buffer holds the rest).
                match data.try_io(Interest::READABLE, || batch.recv(data_fd)) {
                    Ok(_) => {
                        let now = Instant::now();
                        if let Some(waited) = batch.queue_delay() {
                            receiver.handle_queue_delay(waited);
                        }
                        // Each datagram at its arrival time, so that the
                        // receiver's echoes and hold-offs leave out the time
                        // it sat in our own socket queue.
                        batch.for_each_from(now, |at, slot, d| {
                            let joined = receiver.session_id().is_some();
                            receiver.handle_datagram(at, d);
                            if !joined && receiver.session_id().is_some() {
                                session_sender = batch.source(slot);
                            }
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
            }
            r = feedback.recv_from(&mut fbuf) => {
                let (n, _) = r?;
                receiver.handle_datagram(Instant::now(), &fbuf[..n]);
            }
            Some(reply) = reply_rx.recv() => match reply {
                WriterReply::Refuse(session, why) => {
                    if receiver.session_id() == Some(session) {
                        notice(RecvNotice::Failed(why.clone()));
                        receiver.refuse(Instant::now(), Refusal::Caller(why));
                    }
                }
                WriterReply::Present(session, present, partial) => {
                    if receiver.session_id() == Some(session) {
                        if !present.is_empty() {
                            tracing::info!("{} files already in place", present.len());
                        }
                        let now = Instant::now();
                        for (object, blocks) in &partial {
                            receiver.handle_partial(now, *object, blocks);
                        }
                        if !partial.is_empty() {
                            let blocks: u32 =
                                partial.iter().flat_map(|(_, r)| r.iter().map(|(_, c)| c)).sum();
                            tracing::info!(
                                "resuming {} files: {blocks} blocks kept from an interrupted push",
                                partial.len()
                            );
                        }
                        receiver.handle_present(now, &present);
                    }
                }
                WriterReply::Verified(object, res, (path, hash)) => {
                    let res = match res {
                        Ok(placed) => {
                            let _ = cmd_tx.send(WriterCmd::Placed(path, hash));
                            notice(RecvNotice::Placed(placed));
                            Ok(())
                        }
                        Err((reason, msg)) => {
                            notice(RecvNotice::Failed(msg));
                            Err(reason)
                        }
                    };
                    receiver.handle_object_verified(Instant::now(), object, res);
                }
                WriterReply::BeginFailed(msg) => {
                    // The push cannot be placed here (a directory in the
                    // way, a permission): refuse it, so that the sender
                    // hears why at once instead of waiting for a receiver
                    // that never registers.
                    let why = format!("cannot prepare the push in {}: {msg}", opts.dir.display());
                    notice(RecvNotice::Failed(why.clone()));
                    receiver.refuse(Instant::now(), Refusal::Caller(why));
                }
                WriterReply::Settled(session, removed) => {
                    if receiver.session_id() == Some(session) {
                        pruned = removed;
                        receiver.handle_settled(Instant::now());
                    }
                }
                WriterReply::Finished => {
                    let Some(outcome) = pending_finish.take() else { continue };
                    let removed = std::mem::take(&mut pruned);
                    if !removed.is_empty() {
                        tracing::info!(
                            "--delete: removed {} entries the sender no longer has",
                            removed.len()
                        );
                    }
                    notice(RecvNotice::Finished(outcome.clone(), receiver.stats(), removed));
                    // Late datagrams of finished sessions must not start them
                    // again; the most recent ones are enough to remember.
                    config.ignore_sessions.push(outcome.session);
                    if config.ignore_sessions.len() > 64 {
                        config.ignore_sessions.remove(0);
                    }
                    outcomes.push(outcome);
                    if opts.once {
                        break 'run Ok(false);
                    }
                    receiver = Receiver::new(ReceiverConfig {
                        seed: crate::random_u64(),
                        ..config.clone()
                    });
                }
            },
            _ = tokio::time::sleep_until(wake.into()) => {
                receiver.handle_timeout(Instant::now());
            }
            _ = &mut interrupt => break Ok(false),
        }
    };
    drop(cmd_tx);
    let _ = writer_thread.join();
    result.map(|timed_out| Ended {
        outcomes,
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

/// Says once, in one line, why packets are being dropped by authentication.
#[derive(Default)]
struct AuthWarnings {
    no_key: bool,
    failed: bool,
}

impl AuthWarnings {
    fn check(&mut self, st: &ReceiverStats) {
        if st.auth_no_key > 0 && !self.no_key {
            self.no_key = true;
            tracing::warn!(
                "ignoring authenticated packets: this receiver has no key; give it the sender's --key-file"
            );
        }
        if st.auth_failed > 0 && !self.failed {
            self.failed = true;
            tracing::warn!(
                "dropping packets that fail authentication (a sender without a key, or another key): check that both ends use the same --key-file"
            );
        }
    }
}

/// Milliseconds of data at the session rate the receive buffer should
/// absorb while the protocol task is busy (a block decode, a slow write).
pub const BUFFER_MS: u64 = 20;

/// A warning, with its fix, when `granted` bytes of receive buffer cannot
/// hold [`BUFFER_MS`] of data at `rate_bps`.
pub fn buffer_warning(granted: usize, rate_bps: Option<u64>) -> Option<String> {
    let rate = rate_bps?;
    let need = (rate / 8 * BUFFER_MS / 1000) as usize;
    (granted < need).then(|| {
        format!(
            "the kernel granted {} KiB of receive buffer, less than the {} KiB that {} ms at {} Mbit/s need: expect loss; raise it with `sysctl -w net.core.rmem_max={}` (or run as root)",
            granted >> 10,
            need >> 10,
            BUFFER_MS,
            rate / 1_000_000,
            (need * 2).next_power_of_two()
        )
    })
}

/// A warning, with its fix, when a session's `symbol_size` makes DATA
/// datagrams larger than one packet on this receiver's interface (`mtu`):
/// they arrive in IP fragments, a datagram lost with any of them, or not
/// at all where the network between does not carry such frames (a sender
/// on a jumbo-frame segment that this host's link is not).
pub fn mtu_warning(symbol_size: u16, mtu: u32, ipv6: bool, sealed: bool) -> Option<String> {
    let fit = mdp_proto::limits::symbol_size_for_mtu(mtu, ipv6, sealed);
    if fit.is_some_and(|f| symbol_size <= f) {
        return None;
    }
    let fix = match fit {
        Some(f) => format!("ask the sender for `--symbol-size {f}` or less"),
        None => "raise this interface's MTU".to_string(),
    };
    Some(format!(
        "the sender's {symbol_size}-byte symbols do not fit in one packet on this interface, whose MTU is {mtu} bytes: its datagrams arrive in fragments, or not at all; {fix}"
    ))
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

#[cfg(test)]
mod tests {
    use super::{buffer_warning, mtu_warning};

    #[test]
    fn the_mtu_warning_comes_only_when_a_symbol_needs_more_than_a_packet() {
        // 1444 + 28 + 8 + 20 = 1500: fits exactly.
        assert_eq!(mtu_warning(1444, 1500, false, false), None);
        assert_eq!(mtu_warning(1400, 1500, true, true), None);
        assert_eq!(mtu_warning(8944, 9000, false, false), None);
        let w = mtu_warning(1446, 1500, false, false).expect("two bytes too many");
        assert!(
            w.contains("1446-byte symbols")
                && w.contains("MTU is 1500")
                && w.contains("--symbol-size 1444"),
            "{w}"
        );
        // The key's trailer and IPv6's larger header leave less room.
        assert!(mtu_warning(1444, 1500, false, true)
            .unwrap()
            .contains("--symbol-size 1420"));
        assert!(mtu_warning(1444, 1500, true, false)
            .unwrap()
            .contains("--symbol-size 1424"));
        // Nothing fits at all.
        assert!(mtu_warning(16, 68, false, false)
            .unwrap()
            .contains("raise this interface's MTU"));
    }

    #[test]
    fn the_buffer_warning_names_the_fix_only_when_the_buffer_is_too_small() {
        // 1 Gbit/s for 20 ms is 2.5 MB.
        assert_eq!(buffer_warning(4 << 20, Some(1_000_000_000)), None);
        assert_eq!(buffer_warning(4 << 20, None), None, "no session, no rate");
        let w = buffer_warning(1 << 20, Some(1_000_000_000)).expect("too small");
        assert!(w.contains("net.core.rmem_max="), "{w}");
    }
}

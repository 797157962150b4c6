//! The receiver's turn loop: [`RecvDriver::turn`] runs the [`Receiver`]
//! state machine against the sockets, the writer thread and a timer, as a
//! list of named steps.
//!
//! **Invariant:** a due timer fires at the top of every turn, not only when
//! [`RecvDriver::wait`] sleeps, so a steady stream of datagrams cannot
//! starve NACKs and congestion reports.

use super::ledger::Ledger;
use super::sockets::RecvSockets;
use super::warnings::{buffer_warning, mtu_warning, off_link_warning, AuthWarnings};
use super::writer::{Writer, WriterCmd, WriterReply};
use super::{HookReply, RecvError, RecvNotice, RecvOptions};
use crate::relay::{Downstream, RelayNote, Spool};
use crate::store::HeldBlocks;
use mdp_proto::receiver::Refusal;
use mdp_proto::wire::HookOutcome;
use mdp_proto::{
    Receiver, ReceiverConfig, ReceiverEvent, ReceiverRequest, SessionId, SessionOutcome,
};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::sync::oneshot;

/// How often progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// A new secret source when `config` has one (the key exchange of
/// encrypted pushes draws from it), from the operating system.
fn fresh_secrets(config: &ReceiverConfig) -> Option<mdp_proto::crypto::SecretSource> {
    config
        .secrets
        .as_ref()
        .map(|_| mdp_proto::crypto::SecretSource::new(crate::random_secret()))
}

/// How long a stopping receiver waits for its writer to finish a push it
/// completed (see `Driver::stop`).
const STOP_GRACE: Duration = Duration::from_secs(20);

/// Finished session ids remembered, so that their late datagrams do not
/// start them again.
const IGNORED_SESSIONS: usize = 64;
/// Accepted signed pushes remembered in memory (as the ledger on disk).
const REPLAY_GUARD: usize = 1024;

/// The state of a receiver between turns.
pub(super) struct RecvDriver<N> {
    receiver: Receiver,
    /// The settings each fresh receiver starts from; collects the ids of
    /// finished sessions.
    config: ReceiverConfig,
    sockets: RecvSockets,
    writer: Writer,
    notice: N,
    /// The cache directory, named in messages.
    dir: PathBuf,
    once: bool,
    /// When the whole run ends (`--timeout`).
    deadline: Option<Instant>,
    /// The pushes come over IPv6 (for the MTU check).
    ipv6: bool,
    /// The sessions finished so far.
    pub(super) outcomes: Vec<SessionOutcome>,
    buf: Vec<u8>,
    fbuf: Vec<u8>,
    next_progress: Instant,
    interrupt: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// The outcome of the session the writer is finishing.
    pending_finish: Option<SessionOutcome>,
    auth_warnings: AuthWarnings,
    buffer_checked: bool,
    /// The smallest MTU of the interfaces this receiver takes pushes on, and
    /// the last session whose symbol size was checked against it.
    mtu: Option<u32>,
    mtu_checked: Option<SessionId>,
    /// The interfaces' endpoints, for the route check.
    endpoint: crate::socket::Endpoint,
    also: Vec<crate::socket::Endpoint>,
    route_checked: Option<SessionId>,
    /// The source address of the ANNOUNCE the current session began with.
    session_sender: Option<SocketAddr>,
    /// What --delete removed when the tree was settled, for the report.
    pruned: Vec<String>,
    /// The session whose first rejected block was logged (one warning a
    /// session: a flood of forged packets must not flood the log too).
    rejection_logged: Option<SessionId>,
    /// The durable record of accepted signed pushes (ledger.rs).
    ledger: Ledger,
    /// The session whose settle may run a push hook (signed, no file
    /// failed), from its `Settle { links }`.
    hook_may_run: Option<SessionId>,
    /// The push hook the caller is running for a settled session: the
    /// confirmation waits for its answer.
    hook_wait: Option<(SessionId, oneshot::Receiver<Option<HookOutcome>>)>,
    /// A relay: where pushes are passed on, and the sender of the current
    /// one (crate::relay).
    relay: Option<crate::relay::RelayOptions>,
    relay_tree: Option<crate::relay::RelayOptions>,
    downstream: Option<Downstream>,
    /// A push this relay could not pass on, and why.
    relay_problem: Option<(SessionId, String)>,
    /// A relay's settled session whose confirmation waits until its own
    /// push ended and the origin has every word it passed up.
    settle_parked: Option<SessionId>,
}

/// What woke [`RecvDriver::wait`].
enum Wake {
    Data(io::Result<()>),
    Feedback(io::Result<(usize, SocketAddr)>),
    Writer(WriterReply),
    Hook(Option<HookOutcome>),
    Relay(RelayNote),
    Timer,
    Interrupt,
}

impl<N: FnMut(RecvNotice)> RecvDriver<N> {
    pub(super) fn new(
        opts: &RecvOptions,
        sockets: RecvSockets,
        writer: Writer,
        mtu: Option<u32>,
        notice: N,
    ) -> Self {
        let deadline = opts.timeout.map(|t| Instant::now() + t);
        let mut config = opts.config.clone();
        let ledger = Ledger::open(&opts.dir, crate::wall_clock().unix_us);
        config.replay_guard.extend(ledger.sessions());
        for (signer, at) in ledger.floors() {
            config.raise_signed_floor(signer, at);
        }
        let receiver = Receiver::new(ReceiverConfig {
            clock: Some(crate::wall_clock()),
            ..config.clone()
        });
        // The first push's secret stays with its receiver only.
        config.secrets = fresh_secrets(&config);
        RecvDriver {
            receiver,
            config,
            sockets,
            writer,
            notice,
            dir: opts.dir.clone(),
            once: opts.once,
            deadline,
            ipv6: opts.endpoint.group.is_ipv6(),
            outcomes: Vec::new(),
            buf: Vec::with_capacity(2048),
            fbuf: vec![0u8; 65536],
            next_progress: Instant::now(),
            interrupt: Box::pin(super::shutdown_signal()),
            pending_finish: None,
            auth_warnings: AuthWarnings::default(),
            buffer_checked: false,
            mtu,
            mtu_checked: None,
            endpoint: opts.endpoint,
            also: opts.also.clone(),
            route_checked: None,
            session_sender: None,
            pruned: Vec::new(),
            rejection_logged: None,
            ledger,
            hook_may_run: None,
            hook_wait: None,
            relay: opts.relay.clone(),
            relay_tree: opts.relay_tree.clone(),
            downstream: None,
            relay_problem: None,
            settle_parked: None,
        }
    }

    /// Ends the writer thread, waiting for it; returns the finished
    /// sessions.
    pub(super) fn finish(self) -> Vec<SessionOutcome> {
        self.writer.join();
        self.outcomes
    }

    /// One turn: returns `Some(timed_out)` once the run is over.
    pub(super) async fn turn(&mut self) -> Result<Option<bool>, RecvError> {
        let now = Instant::now();
        // Signature ages are judged by the wall clock as it is now (after a
        // suspend, or a step of the clock), not as it was at start-up.
        self.receiver.handle_wall_clock(crate::wall_clock());
        self.fire_due_timers(now);
        self.transmit(now).await;
        self.check_mtu();
        self.check_route();
        self.dispatch_requests();
        self.dispatch_events();
        self.release_parked_settle();
        self.report_progress(now);
        let Some(wake) = self.next_wake(now) else {
            return Ok(Some(self.stop(true).await));
        };
        self.wait(wake).await
    }

    /// The run ends (`timed_out`: by --timeout, else by a signal). A push
    /// this receiver completed but whose confirmation the sender has not
    /// acknowledged yet (the sender may already have exited on it) is
    /// finished and reported first, so its hooks run and the ledger records
    /// its end; the writer gets [`STOP_GRACE`] to finish it. Returns
    /// `timed_out`.
    async fn stop(&mut self, timed_out: bool) -> bool {
        // A push hook under way ends first (within the grace): the push is
        // then complete, and confirmed below like any other.
        if let Some((session, rx)) = self.hook_wait.take() {
            if let Ok(Ok(hook)) = tokio::time::timeout(STOP_GRACE, rx).await {
                self.settled_with(session, hook);
            }
        }
        let now = Instant::now();
        self.receiver.handle_shutdown(now);
        self.transmit(now).await;
        self.dispatch_events();
        let grace = tokio::time::sleep(STOP_GRACE);
        tokio::pin!(grace);
        while self.pending_finish.is_some() {
            tokio::select! {
                reply = self.writer.replies.recv() => match reply {
                    Some(reply) => {
                        self.on_writer_reply(reply);
                    }
                    None => break,
                },
                _ = &mut grace => {
                    tracing::warn!(
                        "stopping before the writer finished the last push (waited {}s); its hooks do not run",
                        STOP_GRACE.as_secs()
                    );
                    break;
                }
            }
        }
        timed_out
    }

    /// A timer that fell due fires here, not only when [`Self::wait`]
    /// sleeps: while datagrams keep arriving, the data socket always wins
    /// the wait, and NACKs and congestion reports would wait for the
    /// stream to end.
    fn fire_due_timers(&mut self, now: Instant) {
        if self.receiver.poll_timeout().is_some_and(|t| t <= now) {
            self.receiver.handle_timeout(now);
        }
    }

    /// Sends the feedback the state machine has ready: to the sender in
    /// unicast mode, else to the feedback group, and out of each further
    /// interface. A failed feedback send is loss.
    async fn transmit(&mut self, now: Instant) {
        let s = &self.sockets;
        while let Some(t) = self.receiver.poll_transmit(now, &mut self.buf) {
            let sent = match (&s.reply, self.session_sender) {
                (Some(r), Some(to)) => r.send_to(&self.buf[..t.size], to).await,
                (Some(_), None) => continue,
                (None, _) => {
                    s.feedback
                        .send_to(&self.buf[..t.size], s.feedback_addr)
                        .await
                }
            };
            if let Err(e) = sent {
                tracing::debug!("feedback send failed: {e}");
            }
            for out in &s.feedback_out {
                if let Err(e) = out.send_to(&self.buf[..t.size], s.feedback_addr).await {
                    tracing::debug!("feedback send failed: {e}");
                }
            }
        }
    }

    /// Once per session, as soon as its ANNOUNCE is in (a push that does
    /// not fit the MTU may never bring the manifest): warns when its
    /// symbols do not fit in one packet.
    fn check_mtu(&mut self) {
        if let (Some(id), Some(t), Some(mtu)) = (
            self.receiver.session_id(),
            self.receiver.session_symbol_size(),
            self.mtu,
        ) {
            if self.mtu_checked != Some(id) {
                self.mtu_checked = Some(id);
                let sealed = self.config.auth.is_some();
                if let Some(msg) = mtu_warning(t, mtu, self.ipv6, sealed) {
                    tracing::warn!("{msg}");
                }
            }
        }
    }

    /// Once per session, as soon as its sender's address is known: warns
    /// when the sender is beyond a router and this receiver's feedback
    /// (TTL 1) cannot follow its push back.
    fn check_route(&mut self) {
        if let (Some(id), Some(sender)) = (self.receiver.session_id(), self.session_sender) {
            if self.route_checked != Some(id) {
                self.route_checked = Some(id);
                // A neighbour on any of its interfaces is near.
                let ep = &self.endpoint;
                let near = std::iter::once(ep)
                    .chain(&self.also)
                    .map(|e| crate::socket::on_link(e, sender.ip()))
                    .reduce(|a, b| match (a, b) {
                        (Some(true), _) | (_, Some(true)) => Some(true),
                        (Some(false), Some(false)) => Some(false),
                        _ => None,
                    })
                    .flatten();
                if let Some(msg) = off_link_warning(ep, sender.ip(), near) {
                    tracing::warn!("{msg}");
                }
            }
        }
    }

    /// Hands the state machine's requests to the writer thread, which
    /// answers them (`WriterReply`) in order.
    fn dispatch_requests(&mut self) {
        let cmds = self.writer.cmds.clone();
        while let Some(req) = self.receiver.poll_request() {
            match req {
                ReceiverRequest::CheckPresent {
                    session,
                    manifest,
                    block_bytes,
                    signer,
                    dry_run,
                    ..
                } => {
                    if !self.buffer_checked {
                        self.buffer_checked = true;
                        let rate = self.receiver.session_rate();
                        if let Some(msg) = buffer_warning(self.sockets.granted, rate) {
                            tracing::warn!("{msg}");
                        }
                    }
                    (self.notice)(RecvNotice::Started {
                        session,
                        sender: self.session_sender,
                        manifest: manifest.clone(),
                        signer: signer.and_then(|k| mdp_proto::identity::PublicKey::from_bytes(&k)),
                    });
                    let signed = signer.is_some();
                    self.reply_to_parent();
                    let spool = self.start_relay(session, block_bytes);
                    let _ = cmds.send(WriterCmd::Begin(
                        session,
                        manifest,
                        block_bytes,
                        dry_run,
                        signed,
                        spool,
                    ));
                }
                ReceiverRequest::WriteBlock {
                    object,
                    offset,
                    block,
                } => {
                    let _ = cmds.send(WriterCmd::Write(object, offset, block));
                }
                ReceiverRequest::VerifyObject { object } => {
                    let _ = cmds.send(WriterCmd::Complete(object));
                }
                ReceiverRequest::Settle { prune, links } => {
                    if let Some(session) = self.receiver.session_id() {
                        // `links`: signed, and no file failed.
                        self.hook_may_run = links.then_some(session);
                        let _ = cmds.send(WriterCmd::Settle {
                            session,
                            prune,
                            links,
                        });
                    }
                }
            }
        }
    }

    /// Takes the state machine's notices: a finished session is handed on
    /// once the writer has done everything asked before it.
    fn dispatch_events(&mut self) {
        while let Some(ev) = self.receiver.poll_event() {
            match ev {
                ReceiverEvent::Finished(outcome) => {
                    if let Err(e) = self.ledger.record_end(outcome.session) {
                        tracing::warn!(
                            "cannot record the end of push {} in {}: {e}; a recording of it replayed after a restart would be taken again (check the directory's permissions)",
                            outcome.session,
                            self.dir.join(crate::store::TMP_DIR).display()
                        );
                    }
                    let _ = self.writer.cmds.send(WriterCmd::Finish);
                    self.pending_finish = Some(outcome);
                }
                ReceiverEvent::Untrusted { session, why } => {
                    tracing::warn!("refused push {session}: {why}");
                }
                ReceiverEvent::Accepted {
                    session,
                    signed_at_us,
                    signer,
                } => {
                    self.config.raise_signed_floor(signer, signed_at_us);
                    if let Err(e) = self.ledger.record(session, signed_at_us, signer) {
                        tracing::warn!(
                            "cannot record push {session} in {}: {e}; a recording of it replayed after a restart would not be recognised (check the directory's permissions)",
                            self.dir.join(crate::store::TMP_DIR).display()
                        );
                    }
                    self.config.replay_guard.push(session);
                    if self.config.replay_guard.len() > REPLAY_GUARD {
                        self.config.replay_guard.remove(0);
                    }
                }
                _ => {}
            }
        }
    }

    /// Reports progress and checks the authentication counters, about ten
    /// times a second.
    fn report_progress(&mut self, now: Instant) {
        if now >= self.next_progress {
            if let Some((bytes, total)) = self.receiver.progress() {
                (self.notice)(RecvNotice::Progress { bytes, total });
            }
            self.auth_warnings.check(&self.receiver.stats());
            self.next_progress = now + PROGRESS_EVERY;
        }
    }

    /// When [`Self::wait`] wakes at the latest; `None` once the run's
    /// deadline passed.
    fn next_wake(&self, now: Instant) -> Option<Instant> {
        let mut wake = self
            .receiver
            .poll_timeout()
            .unwrap_or(now + Duration::from_secs(3600))
            .min(self.next_progress);
        if let Some(d) = self.deadline {
            if now >= d {
                return None;
            }
            wake = wake.min(d);
        }
        // A parked confirmation goes once the relay's wait for the
        // origin's acknowledgements is over.
        if let (Some(_), Some(at)) = (
            self.settle_parked,
            self.downstream.as_ref().and_then(|d| d.ended_at),
        ) {
            wake = wake.min((at + mdp_proto::receiver::RELAY_ACK_WAIT).max(now));
        }
        Some(wake)
    }

    /// Waits for the first of: datagrams, a writer reply, the `wake` time,
    /// a signal; and hands it to the state machine. Returns `Some(false)`
    /// when the run is over (a signal, or `once` and a finished session).
    async fn wait(&mut self, wake: Instant) -> Result<Option<bool>, RecvError> {
        let woke = tokio::select! {
            r = self.sockets.data.readable() => Wake::Data(r),
            r = self.sockets.feedback.recv_from(&mut self.fbuf) => Wake::Feedback(r),
            Some(reply) = self.writer.replies.recv() => Wake::Writer(reply),
            note = async {
                match &mut self.downstream {
                    Some(d) if d.ended.is_none() => d.notes.recv().await,
                    _ => std::future::pending().await,
                }
            } => Wake::Relay(note.unwrap_or_else(|| {
                RelayNote::Ended(Err("the relay's sender stopped without a report".into()))
            })),
            // A dropped reply: no hook ran.
            hook = async {
                match &mut self.hook_wait {
                    Some((_, rx)) => rx.await.unwrap_or(None),
                    None => std::future::pending().await,
                }
            } => Wake::Hook(hook),
            _ = tokio::time::sleep_until(wake.into()) => Wake::Timer,
            _ = &mut self.interrupt => Wake::Interrupt,
        };
        match woke {
            Wake::Data(r) => {
                r?;
                self.on_data()?;
            }
            Wake::Feedback(r) => {
                let (n, _) = r?;
                self.receiver
                    .handle_datagram(Instant::now(), &self.fbuf[..n]);
            }
            Wake::Writer(reply) => return Ok(self.on_writer_reply(reply)),
            Wake::Hook(hook) => {
                if let Some((session, _)) = self.hook_wait.take() {
                    self.settled_with(session, hook);
                }
            }
            Wake::Relay(note) => self.on_relay_note(note),
            Wake::Timer => self.receiver.handle_timeout(Instant::now()),
            Wake::Interrupt => return Ok(Some(self.stop(false).await)),
        }
        Ok(None)
    }

    /// One batch (a few blocks at most), then back to the top of the turn:
    /// its blocks go to the writer before more are read, so memory stays
    /// bounded however far behind the receiver is (the socket buffer holds
    /// the rest).
    fn on_data(&mut self) -> io::Result<()> {
        let s = &mut self.sockets;
        let fd = s.data_fd;
        match s.data.try_io(Interest::READABLE, || s.batch.recv(fd)) {
            Ok(_) => {
                let now = Instant::now();
                if let Some(waited) = s.batch.queue_delay() {
                    self.receiver.handle_queue_delay(now, waited);
                }
                // Each datagram at its arrival time, so that the receiver's
                // echoes and hold-offs leave out the time it sat in our own
                // socket queue.
                let receiver = &mut self.receiver;
                let mut joined_in = None;
                s.batch.for_each_from(now, |at, slot, d| {
                    let joined = receiver.session_id().is_some();
                    receiver.handle_datagram_mut(at, d);
                    if !joined && receiver.session_id().is_some() {
                        joined_in = Some(slot);
                    }
                });
                if let Some(slot) = joined_in {
                    self.session_sender = s.batch.source(slot);
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Hands a writer reply to the state machine; returns `Some(false)`
    /// when `once` and the session finished.
    fn on_writer_reply(&mut self, reply: WriterReply) -> Option<bool> {
        match reply {
            WriterReply::Refuse(session, why) => {
                if self.receiver.session_id() == Some(session) {
                    (self.notice)(RecvNotice::Failed(why.clone()));
                    self.receiver.refuse(Instant::now(), Refusal::Caller(why));
                }
            }
            WriterReply::Present {
                session,
                present,
                partial,
                from_old,
            } => {
                if self.receiver.session_id() == Some(session) {
                    if !present.is_empty() {
                        tracing::info!("{} files already in place", present.len());
                    }
                    let blocks = |held: &[HeldBlocks]| -> u32 {
                        held.iter()
                            .flat_map(|(_, r)| r.iter().map(|(_, c)| c))
                            .sum()
                    };
                    if !partial.is_empty() {
                        tracing::info!(
                            "resuming {} files: {} blocks kept from an interrupted push",
                            partial.len(),
                            blocks(&partial)
                        );
                    }
                    if !from_old.is_empty() {
                        tracing::info!(
                            "{} changed files start from their older version here: {} blocks unchanged",
                            from_old.len(),
                            blocks(&from_old)
                        );
                    }
                    // In object order, as the receiver reports them.
                    let mut held: Vec<_> = partial.into_iter().chain(from_old).collect();
                    held.sort_by_key(|(o, _)| *o);
                    let now = Instant::now();
                    for (object, blocks) in &held {
                        self.receiver.handle_partial(now, *object, blocks);
                    }
                    self.receiver.handle_present(now, &present);
                }
            }
            WriterReply::Rejected(session, object, block) => {
                if self.receiver.session_id() == Some(session) {
                    if self.rejection_logged.replace(session) != Some(session) {
                        tracing::warn!(
                            "block {block} of file {} did not match its hash (a forged or corrupt packet on the network): asking for it again; the report counts any others",
                            object.0
                        );
                    }
                    self.receiver
                        .handle_block_rejected(Instant::now(), object, block);
                }
            }
            WriterReply::Verified(v) => {
                let ours = self.receiver.session_id() == Some(v.session);
                let res = match v.result {
                    Ok(placed) => {
                        let _ = self.writer.cmds.send(WriterCmd::Placed(
                            v.path,
                            v.hashes,
                            placed.stamp,
                        ));
                        if ours {
                            (self.notice)(RecvNotice::Placed(placed.path));
                        } else {
                            tracing::info!(
                                "placed {} for push {}, which has ended",
                                placed.path.display(),
                                v.session
                            );
                        }
                        Ok(())
                    }
                    Err((reason, msg)) => {
                        (self.notice)(RecvNotice::Failed(msg));
                        Err(reason)
                    }
                };
                // A result of an ended push must not land in the next one,
                // whose object numbers are the same.
                if ours {
                    self.receiver
                        .handle_object_verified(Instant::now(), v.object, res);
                }
            }
            WriterReply::BeginFailed(msg) => {
                // The push cannot be placed here (a directory in the way, a
                // permission): refuse it, so that the sender hears why at
                // once instead of waiting for a receiver that never
                // registers.
                let why = format!("cannot prepare the push in {}: {msg}", self.dir.display());
                (self.notice)(RecvNotice::Failed(why.clone()));
                self.receiver.refuse(Instant::now(), Refusal::Caller(why));
            }
            WriterReply::Settled(session, removed, problem) => {
                if self.receiver.session_id() == Some(session) {
                    self.pruned = removed;
                    if let Some(why) = problem {
                        // Not final, or not on the disk: never confirmed,
                        // and no hook runs.
                        self.hook_may_run = None;
                        (self.notice)(RecvNotice::Failed(why.clone()));
                        self.receiver.handle_settle_failed(Instant::now(), why);
                    } else if self.relay_holds(session) {
                        // Confirmed once the relay's own push ended and the
                        // origin has every word passed up (`turn`).
                        self.settle_parked = Some(session);
                    } else if let Some(why) = self.relay_failed(session) {
                        self.relay_settle_failed(why);
                    } else {
                        self.settled_ok(session);
                    }
                }
            }
            WriterReply::Finished => return self.on_session_finished(),
        }
        None
    }

    /// `session`'s tree is final: its push hook runs, if it may, and the
    /// receiver confirms.
    fn settled_ok(&mut self, session: SessionId) {
        if self.hook_may_run.take() == Some(session) {
            // The caller runs its push hook; the confirmation waits for
            // it (see `Wake::Hook`).
            let (tx, rx) = oneshot::channel();
            self.hook_wait = Some((session, rx));
            (self.notice)(RecvNotice::Settled {
                session,
                reply: HookReply(tx),
            });
        } else {
            self.receiver.handle_settled(Instant::now(), None);
        }
    }

    /// A relay: starts passing `session` on, once its manifest is known;
    /// returns the spool its verified blocks go to. `None` when this
    /// receiver is no relay, or the push cannot be passed on (said once).
    fn start_relay(&mut self, session: SessionId, block_bytes: u64) -> Option<Arc<Spool>> {
        let source = self.receiver.relay_source()?;
        let opts = self.relay_options(session, &source)?;
        // The sender of an earlier push still running stops now.
        self.downstream = None;
        if source.encrypted {
            tracing::warn!("push {session} is not passed on: it is encrypted, and a relay does not hold the origin's key agreement");
            return None;
        }
        if source.dry_run {
            tracing::info!("dry run {session} is not passed on");
            return None;
        }
        let tmp = self.dir.join(crate::store::TMP_DIR);
        match Downstream::start(&opts, source, &tmp, block_bytes) {
            Ok(d) => {
                let to = match opts.destinations.len() {
                    0 => opts
                        .endpoints
                        .first()
                        .map_or_else(String::new, |e| e.group.to_string()),
                    n => format!("{n} unicast destinations"),
                };
                tracing::info!("passing push {session} on to {to}");
                let spool = d.spool.clone();
                self.downstream = Some(d);
                Some(spool)
            }
            Err(why) => {
                // Not confirmed as a success: the receivers behind this
                // relay would be missing from the origin's report.
                tracing::warn!("push {session} cannot be passed on: {why}");
                self.relay_problem = Some((session, why));
                None
            }
        }
    }

    /// In a unicast relay tree of a signed push: this host's feedback goes
    /// to the host it takes the push from (its relay sends from the port
    /// after its own), not to whoever sent the first ANNOUNCE, which
    /// anyone holding a copy of the push's ANNOUNCE could have spoofed.
    fn reply_to_parent(&mut self) {
        if !self.endpoint.unicast {
            return;
        }
        let Some(source) = self.receiver.relay_source() else {
            return;
        };
        let (Some(_), Some(tree)) = (&source.signature, &source.manifest.tree) else {
            return;
        };
        let me = SocketAddr::new(self.endpoint.interface, self.endpoint.group.port());
        let Some(parent) = tree.position(me).and_then(|i| tree.parent(i)) else {
            return;
        };
        if let Ok(p) = tree.hosts[parent].parse::<SocketAddr>() {
            self.session_sender = Some(SocketAddr::new(p.ip(), p.port().wrapping_add(1)));
        }
    }

    /// Where `source` is passed on: the relay's group, or in a unicast
    /// relay tree the hosts below this one (`None`: nowhere).
    fn relay_options(
        &self,
        session: SessionId,
        source: &mdp_proto::RelaySource,
    ) -> Option<crate::relay::RelayOptions> {
        if let Some(opts) = &self.relay {
            return Some(opts.clone());
        }
        // Only the origin's signed word says where a host sends the push:
        // an unsigned push's tree is not followed.
        source.signature.as_ref()?;
        let tree = source.manifest.tree.as_ref()?;
        let me = SocketAddr::new(self.endpoint.interface, self.endpoint.group.port());
        let Some(position) = tree.position(me) else {
            if self.relay_tree.is_some() {
                tracing::warn!(
                    "push {session} carries a relay tree that does not list this host ({me}, its --interface address and --group port): it passes nothing on"
                );
            }
            return None;
        };
        let below = tree.children(Some(position));
        if below.is_empty() {
            return None;
        }
        let Some(template) = &self.relay_tree else {
            tracing::warn!(
                "push {session} names this host ({me}) in its relay tree with {} hosts below it, but this receiver was not started with --relay-tree: they get nothing from here",
                below.len()
            );
            return None;
        };
        let mut opts = template.clone();
        opts.destinations = below.iter().filter_map(|h| h.parse().ok()).collect();
        // The hosts below are known: the data starts once they registered.
        if opts.config.expected_receivers == 0 {
            opts.config.expected_receivers = opts.destinations.len() as u32;
        }
        Some(opts)
    }

    /// Why `session` could not be passed on, if it could not: the relay
    /// then reports its copy failed, so that the origin does not count it
    /// a success with its receivers missing.
    fn relay_failed(&self, session: SessionId) -> Option<String> {
        if let Some((s, why)) = &self.relay_problem {
            if *s == session {
                return Some(why.clone());
            }
        }
        match &self.downstream {
            Some(d) if d.session == session => match &d.ended {
                Some(Err(why)) => Some(why.clone()),
                _ => None,
            },
            _ => None,
        }
    }

    /// True while `session`'s confirmation must wait: this relay passes
    /// it on, and its own push has not ended, or the origin lacks a word
    /// passed up (for at most `RELAY_ACK_WAIT` after the push ended).
    fn relay_holds(&self, session: SessionId) -> bool {
        self.downstream.as_ref().is_some_and(|d| {
            d.session == session
                && match d.ended_at {
                    None => true,
                    Some(at) => {
                        self.receiver.passed_on_pending() > 0
                            && at.elapsed() < mdp_proto::receiver::RELAY_ACK_WAIT
                    }
                }
        })
    }

    /// Confirms a relay's parked session once nothing holds it.
    fn release_parked_settle(&mut self) {
        if let Some(session) = self.settle_parked {
            if self.receiver.session_id() != Some(session) {
                self.settle_parked = None;
            } else if !self.relay_holds(session) {
                self.settle_parked = None;
                match self.relay_failed(session) {
                    Some(why) => self.relay_settle_failed(why),
                    None => self.settled_ok(session),
                }
            }
        }
    }

    /// The push could not be passed on: reported failed upstream.
    fn relay_settle_failed(&mut self, why: String) {
        let why = format!("the push could not be passed on: {why}");
        (self.notice)(RecvNotice::Failed(why.clone()));
        self.receiver.handle_settle_failed(Instant::now(), why);
    }

    /// What the relay's sender said: a word of its receivers for the
    /// origin, or its end.
    fn on_relay_note(&mut self, note: RelayNote) {
        let Some(d) = self.downstream.as_mut() else {
            return;
        };
        match note {
            RelayNote::Feedback(m) => {
                if self.receiver.session_id() == Some(d.session) {
                    self.receiver.pass_on(Instant::now(), m);
                }
            }
            RelayNote::Ended(result) => {
                match &result {
                    Ok(r) => tracing::info!(
                        "passed push {} on: {} of {} receivers confirmed{}",
                        d.session,
                        r.confirmed,
                        r.receivers.len(),
                        if r.success { "" } else { " (not a success)" }
                    ),
                    Err(why) => tracing::warn!("push {} could not be passed on: {why}", d.session),
                }
                d.ended = Some(result);
                d.ended_at = Some(Instant::now());
                // The push it belonged to ended here already: its spool
                // goes now.
                if self.receiver.session_id() != Some(d.session) || self.receiver.is_finished() {
                    self.keep_relay_report();
                }
            }
        }
    }

    /// The caller's push hook for `session` ended (`hook`: how; `None`:
    /// none ran): the receiver confirms, if that session is still the one
    /// under way.
    fn settled_with(&mut self, session: SessionId, hook: Option<HookOutcome>) {
        if self.receiver.session_id() == Some(session) {
            self.receiver.handle_settled(Instant::now(), hook);
        }
    }

    /// Lets the relay's ended push go (its spool with it).
    fn keep_relay_report(&mut self) {
        if self.downstream.as_ref().is_some_and(|d| d.ended.is_some()) {
            self.downstream = None;
        }
    }

    /// The writer finished the session: report it, and start a fresh
    /// receiver for the next push unless `once`.
    fn on_session_finished(&mut self) -> Option<bool> {
        let outcome = self.pending_finish.take()?;
        // A relay's push that ended goes with its session; one still
        // running (the origin ended first) goes when it ends.
        self.keep_relay_report();
        let removed = std::mem::take(&mut self.pruned);
        if !removed.is_empty() {
            tracing::info!(
                "--delete: removed {} entries the sender no longer has",
                removed.len()
            );
        }
        (self.notice)(RecvNotice::Finished(
            outcome.clone(),
            self.receiver.stats(),
            removed,
        ));
        // Late datagrams of finished sessions must not start them again;
        // the most recent ones are enough to remember.
        self.config.ignore_sessions.push(outcome.session);
        if self.config.ignore_sessions.len() > IGNORED_SESSIONS {
            self.config.ignore_sessions.remove(0);
        }
        self.outcomes.push(outcome);
        if self.once {
            return Some(false);
        }
        // The wall clock is read again for each session, so that a host
        // suspended or whose clock was stepped judges the next push's
        // signature date by the time it really is.
        self.receiver = Receiver::new(ReceiverConfig {
            seed: crate::random_u64(),
            clock: Some(crate::wall_clock()),
            // A fresh secret per push: no seed kept for the service's
            // lifetime could rebuild an ended push's ephemeral keys.
            secrets: fresh_secrets(&self.config),
            ..self.config.clone()
        });
        None
    }
}

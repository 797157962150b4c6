//! One push's turn loop: [`SendDriver::turn`] runs the [`Sender`] state
//! machine against the sockets, the worker threads and a timer, as a list
//! of named steps.
//!
//! **Invariant:** a due timer fires at the top of every turn, not only when
//! [`SendDriver::wait`] sleeps, so a busy push cannot starve it.

use super::sockets::SendSockets;
use super::workers::{ReadRequest, Workers, CHANGED};
use super::{SendError, SendProgress};
use crate::udp::BatchSender;
use mdp_proto::wire::HookOutcome;
use mdp_proto::{Sender, SenderEvent, SenderReport, SenderRequest};
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Every send failing this long, with no success between, ends the push.
const SEND_FAILING_LIMIT: Duration = Duration::from_secs(5);

/// Feedback datagrams read at most between two sends.
const FEEDBACK_BATCH: usize = 64;

/// How often the progress callback runs.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// The state of one push between turns.
pub(super) struct SendDriver<P> {
    sender: Sender,
    sockets: SendSockets,
    workers: Workers,
    /// The group, named in messages about failed sends.
    group: std::net::SocketAddr,
    batch: BatchSender,
    gather: mdp_proto::Gather,
    rbuf: Vec<u8>,
    view: SendProgress,
    progress: P,
    next_progress: Instant,
    /// Sends that failed, for the warning at the end.
    send_errors: u64,
    /// Since when every send failed, with no success between.
    failing_since: Option<Instant>,
    gave_up_sending: bool,
    started: Instant,
    logged_rate: u64,
    interrupt: Pin<Box<dyn Future<Output = ()> + Send>>,
    interrupted: bool,
    aborted_for_read: bool,
    /// A relay's sender: where its receivers' words go (to its upstream
    /// side, docs/PROTOCOL.md §5d).
    feedback: Option<tokio::sync::mpsc::UnboundedSender<mdp_proto::wire::Relayed>>,
}

/// What woke [`SendDriver::wait`].
enum Wake {
    /// Feedback socket `i` is readable.
    Feedback(usize),
    Parity(super::workers::ParityDone),
    Read(super::workers::ReadDone),
    Timer,
    Interrupt,
}

impl<P: FnMut(&SendProgress)> SendDriver<P> {
    pub(super) fn new(
        sender: Sender,
        sockets: SendSockets,
        workers: Workers,
        group: std::net::SocketAddr,
        bytes_total: u64,
        progress: P,
    ) -> Self {
        SendDriver {
            sender,
            sockets,
            workers,
            group,
            batch: BatchSender::default(),
            gather: mdp_proto::Gather::default(),
            rbuf: vec![0u8; 65536],
            view: SendProgress {
                bytes_total,
                ..Default::default()
            },
            progress,
            next_progress: Instant::now(),
            send_errors: 0,
            failing_since: None,
            gave_up_sending: false,
            started: Instant::now(),
            logged_rate: 0,
            interrupt: Box::pin(crate::recv::shutdown_signal()),
            interrupted: false,
            aborted_for_read: false,
            feedback: None,
        }
    }

    /// A relay's sender: each REGISTER and confirming STATUS of its
    /// receivers goes to `feedback` as it came.
    pub(super) fn pass_feedback_to(
        &mut self,
        feedback: tokio::sync::mpsc::UnboundedSender<mdp_proto::wire::Relayed>,
    ) {
        self.feedback = Some(feedback);
    }

    /// Ends the worker threads, waiting for them; returns the number of
    /// sends that failed.
    pub(super) fn finish(self) -> u64 {
        self.workers.join();
        self.send_errors
    }

    /// One turn: returns the report once the push finished.
    pub(super) async fn turn(&mut self) -> Result<Option<Arc<SenderReport>>, SendError> {
        self.drain_feedback();
        let now = Instant::now();
        self.fire_due_timers(now);
        self.transmit(now).await;
        self.log_rate(now);
        self.dispatch_requests();
        if let Some(report) = self.dispatch_events() {
            return Ok(Some(report));
        }
        self.report_progress(now);
        self.wait(now).await?;
        Ok(None)
    }

    /// Feedback first, read straight from the (non-blocking) socket.
    /// While the pacer always has tokens (the sender is CPU-bound), this
    /// task never waits, so the runtime's reactor, which only looks at
    /// readiness when tasks yield, would report NACKs tens of milliseconds
    /// late; repairs and the round-trip estimate with them.
    fn drain_feedback(&mut self) {
        for f in &self.sockets.feedback_now {
            for _ in 0..FEEDBACK_BATCH {
                match f.recv_from(&mut self.rbuf) {
                    Ok((n, _)) => self.sender.handle_datagram(Instant::now(), &self.rbuf[..n]),
                    Err(_) => break,
                }
            }
        }
    }

    /// A timer that fell due fires here, not only when [`Self::wait`]
    /// sleeps: on a busy push a block read or feedback is nearly always
    /// ready and wins the wait, and the rate would stop growing.
    fn fire_due_timers(&mut self, now: Instant) {
        if self.sender.poll_timeout().is_some_and(|t| t <= now) {
            self.sender.handle_timeout(now);
        }
    }

    /// Sends every batch the state machine has ready, on each socket to
    /// each target.
    async fn transmit(&mut self, now: Instant) {
        while let Some(t) = self.sender.poll_gather(now, &mut self.gather) {
            for d in 0..self.sockets.datas.len() {
                for to in 0..self.sockets.targets.len() {
                    let sent = send_batch(
                        &self.sockets.datas[d],
                        &mut self.batch,
                        &self.sockets.targets[to],
                        &self.gather,
                        t.segment_size,
                    )
                    .await;
                    match sent {
                        Ok(()) => self.failing_since = None,
                        Err(e) => self.on_send_failed(now, to, e),
                    }
                }
            }
        }
    }

    /// A failed send is loss: the protocol repairs it. Unless every send
    /// fails, for long: then the cause is here (an output firewall rule, a
    /// route gone), and repairs would fail alike until --timeout.
    fn on_send_failed(&mut self, now: Instant, target: usize, e: io::Error) {
        self.send_errors += 1;
        let dest = self.sockets.targets[target]
            .as_socket()
            .map_or(self.group, |a| a);
        if self.send_errors == 1 {
            tracing::warn!("send to {dest} failed: {e} (treated as loss)");
        }
        let since = *self.failing_since.get_or_insert(now);
        if now.duration_since(since) >= SEND_FAILING_LIMIT && !self.gave_up_sending {
            self.gave_up_sending = true;
            let why = format!(
                "every send to {dest} failed for {} s: {e}; check this host's firewall (output rules) and its route to the group",
                SEND_FAILING_LIMIT.as_secs()
            );
            tracing::error!("{why}");
            self.sender.abort(now, &why);
        }
    }

    /// Logs each change of the sending rate, at debug level.
    fn log_rate(&mut self, now: Instant) {
        if tracing::enabled!(tracing::Level::DEBUG) && self.sender.rate_bps() != self.logged_rate {
            self.logged_rate = self.sender.rate_bps();
            tracing::debug!(
                "rate {} Mbit/s at {:.3} s, {} datagrams sent",
                self.logged_rate / 1_000_000,
                now.duration_since(self.started).as_secs_f64(),
                self.sender.stats().packets_sent
            );
        }
    }

    /// Hands the state machine's requests to the worker threads, whose
    /// replies [`Self::wait`] passes back (`handle_block`, `handle_parity`).
    fn dispatch_requests(&mut self) {
        while let Some(req) = self.sender.poll_request() {
            match req {
                SenderRequest::ReadBlock {
                    object,
                    block,
                    offset,
                    len,
                } => {
                    let _ = self.workers.reads.send(ReadRequest {
                        object,
                        block,
                        offset,
                        len,
                    });
                }
                SenderRequest::EncodeParity { object, block, job } => {
                    let _ = self.workers.jobs.send((object, block, job));
                }
            }
        }
    }

    /// Logs the state machine's notices; returns the report once it
    /// finished.
    fn dispatch_events(&mut self) -> Option<Arc<SenderReport>> {
        let mut finished = None;
        while let Some(ev) = self.sender.poll_event() {
            match ev {
                SenderEvent::Registered { node, name } => {
                    self.view.receivers += 1;
                    tracing::info!("{name} ({node}) registered");
                }
                SenderEvent::DataStarted => {
                    self.view.started = true;
                    tracing::info!(
                        "sending to {} receivers, starting at {} Mbit/s",
                        self.sender.peer_count(),
                        self.sender.rate_bps() / 1_000_000
                    );
                }
                SenderEvent::Dropped {
                    node,
                    name,
                    delivered_bps,
                } => {
                    self.view.dropped += 1;
                    tracing::warn!(
                        "dropped {name} ({node}): it took only {:.1} Mbit/s, below --min-rate",
                        delivered_bps as f64 / 1e6
                    );
                }
                SenderEvent::Silent {
                    node,
                    name,
                    silent_for,
                } => {
                    self.view.dropped += 1;
                    tracing::warn!(
                        "dropped {name} ({node}): silent for {:.1} s",
                        silent_for.as_secs_f64()
                    );
                }
                SenderEvent::Confirmed {
                    node,
                    name,
                    failed,
                    hook,
                } => {
                    let hook_said = match hook {
                        Some(h) => format!("; its push hook {}", h.describe()),
                        None => String::new(),
                    };
                    if failed == 0 && !hook.is_some_and(HookOutcome::failed) {
                        tracing::info!("{name} ({node}) confirmed: every file placed{hook_said}")
                    } else if failed == 0 {
                        tracing::warn!("{name} ({node}) confirmed: every file placed{hook_said}")
                    } else {
                        tracing::warn!("{name} ({node}) finished with {failed} files failed")
                    }
                }
                SenderEvent::Flushing => {
                    self.view.flushing = true;
                    tracing::info!("all data sent once; waiting for confirmations");
                }
                SenderEvent::Finished(report) => finished = Some(report),
                SenderEvent::Feedback { message } => {
                    if let Some(f) = &self.feedback {
                        let _ = f.send(message);
                    }
                }
                _ => {}
            }
        }
        finished
    }

    /// Calls the progress callback, about ten times a second.
    fn report_progress(&mut self, now: Instant) {
        if now >= self.next_progress {
            self.view.bytes_sent = self.sender.progress_bytes();
            self.view.confirmed = self.sender.confirmed_count();
            (self.progress)(&self.view);
            self.next_progress = now + PROGRESS_EVERY;
        }
    }

    /// Waits for the first of: feedback, a parity job or a block read done,
    /// the next deadline, a signal; and hands it to the state machine.
    async fn wait(&mut self, now: Instant) -> Result<(), SendError> {
        let deadline = self
            .sender
            .poll_timeout()
            .unwrap_or(now + Duration::from_secs(1))
            .min(self.next_progress);
        let wake = tokio::select! {
            i = readable(&self.sockets.feedbacks) => Wake::Feedback(i),
            Some(done) = self.workers.parity_done.recv() => Wake::Parity(done),
            Some(done) = self.workers.read_done.recv() => Wake::Read(done),
            _ = tokio::time::sleep_until(deadline.into()) => Wake::Timer,
            _ = &mut self.interrupt, if !self.interrupted => Wake::Interrupt,
        };
        match wake {
            Wake::Feedback(i) => self.on_feedback(i)?,
            Wake::Parity((object, block, job, symbols)) => {
                self.sender
                    .handle_parity(Instant::now(), object, block, job, symbols);
            }
            Wake::Read((object, block, result)) => match result {
                Ok(data) => self
                    .sender
                    .handle_block(Instant::now(), object, block, data),
                Err((path, e)) => self.on_read_failed(&path, e),
            },
            Wake::Timer => self.sender.handle_timeout(Instant::now()),
            Wake::Interrupt => {
                // Tell the receivers the push is over, then report.
                self.interrupted = true;
                tracing::warn!("interrupted: ending the push");
                self.sender.abort(
                    Instant::now(),
                    "interrupted by a signal before every receiver confirmed",
                );
            }
        }
        Ok(())
    }

    /// Takes what is queued on feedback socket `i` before sending again.
    fn on_feedback(&mut self, i: usize) -> Result<(), SendError> {
        let now = Instant::now();
        for _ in 0..FEEDBACK_BATCH {
            match self.sockets.feedbacks[i].try_recv_from(&mut self.rbuf) {
                Ok((n, _)) => self.sender.handle_datagram(now, &self.rbuf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The push cannot deliver this file: end it, telling the receivers
    /// (DONE) and reporting why. Only the first failed read does.
    fn on_read_failed(&mut self, path: &std::path::Path, e: io::Error) {
        if self.aborted_for_read {
            return;
        }
        self.aborted_for_read = true;
        let why = if e.to_string() == CHANGED {
            format!("{}: {CHANGED}; receivers keep no part of it that does not match its hash; push again once it is complete", path.display())
        } else {
            format!(
                "cannot read {}: {e}{}",
                path.display(),
                crate::sys::io_fix(&e)
            )
        };
        tracing::error!("{why}");
        self.sender.abort(Instant::now(), &why);
    }
}

/// Resolves with the index of a socket that has something to read.
async fn readable(socks: &[UdpSocket]) -> usize {
    std::future::poll_fn(|cx| {
        for (i, s) in socks.iter().enumerate() {
            if s.poll_recv_ready(cx).is_ready() {
                return std::task::Poll::Ready(i);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Sends a batch of datagrams of `segment` bytes, waiting while the
/// socket's buffer is full.
async fn send_batch(
    sock: &UdpSocket,
    batch: &mut BatchSender,
    to: &socket2::SockAddr,
    gather: &mdp_proto::Gather,
    segment: usize,
) -> io::Result<()> {
    let fd = sock.as_raw_fd();
    let mut from = 0;
    while from < gather.len() {
        match sock.try_io(Interest::WRITABLE, || {
            batch.send_gather(fd, to, gather, from, segment)
        }) {
            Ok(n) => from += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => sock.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

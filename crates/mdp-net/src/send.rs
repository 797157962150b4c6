//! The sender's driver: one tokio task runs the [`Sender`] state machine
//! against the data and feedback sockets and a timer; a reader thread reads
//! whole blocks from the files on request, and an encoder thread computes
//! the parity symbols the state machine asks for.

use crate::scan::Source;
use crate::socket::{self, Endpoint};
use crate::stamp::FileId;
use crate::udp::{self, BatchSender};
use mdp_proto::fec::{Codec, ParityJob};
use mdp_proto::{BlockNumber, ObjectId, Sender, SenderConfig, SenderEvent, SenderReport};
use std::fs::File;
use std::io::{self, Read, Seek};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Why a push could not run to its end.
#[derive(Debug, Error)]
pub enum SendError {
    /// Bad settings.
    #[error("{0}")]
    Config(String),
    /// The sockets could not be set up.
    #[error("{0}")]
    Socket(String),
    /// Another IO error.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A view of a running push, for progress displays.
#[derive(Clone, Copy, Debug, Default)]
pub struct SendProgress {
    /// File bytes sent at least once.
    pub bytes_sent: u64,
    /// File bytes in the push.
    pub bytes_total: u64,
    /// Receivers registered.
    pub receivers: usize,
    /// Receivers confirmed.
    pub confirmed: usize,
    /// True once all data went out once and the sender waits for confirmations.
    pub flushing: bool,
    /// True once the data phase began.
    pub started: bool,
}

struct ReadRequest {
    object: ObjectId,
    block: BlockNumber,
    offset: u64,
    len: usize,
}

type ReadDone = (ObjectId, BlockNumber, Result<Vec<u8>, (PathBuf, io::Error)>);

/// The error a block read returns when its file is no longer the one that
/// was hashed.
fn changed() -> io::Error {
    io::Error::other(CHANGED)
}

const CHANGED: &str = "it changed while it was being pushed (size, mtime or ctime moved)";

/// Reads blocks on its own thread; keeps the current file open. Each block
/// is checked against what the file looked like when it was hashed: a block
/// of a changed file is never sent.
fn reader(
    files: Vec<PathBuf>,
    seen: Vec<FileId>,
    requests: mpsc::Receiver<ReadRequest>,
    done: tokio::sync::mpsc::UnboundedSender<ReadDone>,
) {
    let mut open: Option<(ObjectId, File)> = None;
    for r in requests {
        let i = r.object.0 as usize - 1;
        let path = &files[i];
        let result = (|| {
            if open.as_ref().is_none_or(|(o, _)| *o != r.object) {
                open = Some((r.object, File::open(path)?));
            }
            let (_, f) = open.as_ref().expect("opened above");
            // Read into spare capacity: no zeroing of a buffer that the
            // read overwrites anyway (a block is hundreds of kilobytes).
            let mut buf = Vec::with_capacity(r.len);
            let mut f = f;
            f.seek(io::SeekFrom::Start(r.offset))?;
            f.take(r.len as u64).read_to_end(&mut buf)?;
            if buf.len() < r.len {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            // After the read: a change during it shows too.
            let now = FileId::of(&f.metadata()?);
            if seen.get(i).is_some_and(|s| now != *s) {
                return Err(changed());
            }
            Ok(buf)
        })();
        let result = result.map_err(|e: io::Error| (path.clone(), e));
        if done.send((r.object, r.block, result)).is_err() {
            return;
        }
    }
}

/// A parity job and what it computed.
type ParityDone = (ObjectId, BlockNumber, ParityJob, Vec<u8>);

/// Computes parity symbols on its own thread, so that the loop that sends
/// never waits for a Reed-Solomon encode.
fn encoder(
    jobs: mpsc::Receiver<(ObjectId, BlockNumber, ParityJob)>,
    done: tokio::sync::mpsc::UnboundedSender<ParityDone>,
) {
    let mut codec = Codec::default();
    for (object, block, job) in jobs {
        let symbols = job
            .run(&mut codec)
            .expect("the sender validated its coding parameters");
        if done.send((object, block, job, symbols)).is_err() {
            return;
        }
    }
}

/// Runs one push to its end. `progress` is called about ten times a second.
/// With several `endpoints` (one per interface, same group), every datagram
/// goes out on each interface, and feedback is taken from all of them:
/// receivers on any of the networks are served, and one network failing
/// does not stop a receiver that is on another one too.
pub async fn run(
    endpoints: &[Endpoint],
    destinations: &[SocketAddr],
    mut config: SenderConfig,
    source: Source,
    mut progress: impl FnMut(&SendProgress),
) -> Result<Arc<SenderReport>, SendError> {
    let Some(&endpoint) = endpoints.first() else {
        return Err(SendError::Config("no --interface to send on".into()));
    };
    for ep in endpoints {
        ep.validate().map_err(SendError::Config)?;
    }
    if endpoint.unicast && endpoints.len() > 1 {
        return Err(SendError::Config(
            "unicast mode (--to) sends on one --interface".into(),
        ));
    }
    if endpoint.unicast && destinations.is_empty() {
        return Err(SendError::Config(
            "unicast mode needs at least one --to HOST:PORT".into(),
        ));
    }
    let explain = |e: io::Error| SendError::Socket(socket::explain(&e, &endpoint));
    let feedback_port = endpoint.feedback().port();
    // Unicast: one socket, on the feedback port, sends the data and takes
    // the feedback (receivers answer to where the data came from).
    let data = if endpoint.unicast {
        socket::unicast(&endpoint, feedback_port).map_err(explain)?
    } else {
        socket::sender(&endpoint).map_err(explain)?
    };
    // A full send buffer makes the pacer's bursts wait in the kernel rather
    // than fail; a few milliseconds at the configured rate are plenty.
    let top = match config.rate {
        mdp_proto::RateMode::Fixed(r) => r,
        mdp_proto::RateMode::Adaptive { max_bps, .. } => max_bps,
    };
    let want = ((top / 8) as usize / 50).clamp(1 << 20, 64 << 20);
    udp::grow_send_buffer(&data, want);
    let unicast_feedback = if endpoint.unicast {
        Some(data.try_clone()?)
    } else {
        None
    };
    let data = UdpSocket::from_std(data)?;
    let trailer = if config.auth.is_some() {
        mdp_proto::limits::TRAILER_LEN
    } else {
        0
    };
    config.max_batch = udp::batch_limit(
        config.symbol_size as usize + mdp_proto::limits::DATA_HEADER_LEN + trailer,
    );
    let feedback = match unicast_feedback {
        Some(f) => f,
        None => socket::joined(&endpoint, feedback_port).map_err(explain)?,
    };
    // The other networks: a sending and a feedback socket each.
    let mut datas = vec![data];
    let mut feedbacks = vec![feedback];
    for ep in &endpoints[1..] {
        let explain = |e: io::Error| SendError::Socket(socket::explain(&e, ep));
        let d = socket::sender(ep).map_err(explain)?;
        udp::grow_send_buffer(&d, want);
        datas.push(UdpSocket::from_std(d)?);
        feedbacks.push(socket::joined(ep, feedback_port).map_err(explain)?);
    }
    // The same sockets, read directly: see the top of the loop.
    let feedback_now: Vec<std::net::UdpSocket> = feedbacks
        .iter()
        .map(|f| f.try_clone())
        .collect::<io::Result<_>>()?;
    let feedbacks: Vec<UdpSocket> = feedbacks
        .into_iter()
        .map(UdpSocket::from_std)
        .collect::<io::Result<_>>()?;
    let total = source.manifest.total_bytes();
    let mut sender =
        Sender::new(config, source.manifest, Instant::now()).map_err(SendError::Config)?;

    let (req_tx, req_rx) = mpsc::channel();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let files = source.files;
    let seen = source.seen;
    let reader_thread = std::thread::Builder::new()
        .name("mdp-reader".into())
        .spawn(move || reader(files, seen, req_rx, done_tx))?;
    let (job_tx, job_rx) = mpsc::channel();
    let (parity_tx, mut parity_rx) = tokio::sync::mpsc::unbounded_channel();
    let encoder_thread = std::thread::Builder::new()
        .name("mdp-encoder".into())
        .spawn(move || encoder(job_rx, parity_tx))?;

    let group = endpoint.group;
    let targets: Vec<socket2::SockAddr> = if endpoint.unicast {
        destinations.iter().map(|&d| d.into()).collect()
    } else {
        vec![group.into()]
    };
    let mut batch = BatchSender::default();
    let mut gather = mdp_proto::Gather::default();
    let mut rbuf = vec![0u8; 65536];
    let mut view = SendProgress {
        bytes_total: total,
        ..Default::default()
    };
    let mut next_progress = Instant::now();
    let mut send_errors = 0u64;
    let started = Instant::now();
    let mut logged_rate = 0u64;
    // Since when every send failed, with no success between.
    let mut failing_since: Option<Instant> = None;
    let mut gave_up_sending = false;
    let mut interrupt = Box::pin(crate::recv::shutdown_signal());
    let mut interrupted = false;
    let mut aborted_for_read = false;
    let result = loop {
        // Feedback first, read straight from the (non-blocking) socket.
        // While the pacer always has tokens (the sender is CPU-bound), this
        // task never waits, so the runtime's reactor, which only looks at
        // readiness when tasks yield, would report NACKs tens of
        // milliseconds late; repairs and the round-trip estimate with them.
        for f in &feedback_now {
            for _ in 0..FEEDBACK_BATCH {
                match f.recv_from(&mut rbuf) {
                    Ok((n, _)) => sender.handle_datagram(Instant::now(), &rbuf[..n]),
                    Err(_) => break,
                }
            }
        }
        let now = Instant::now();
        // A timer that fell due fires here, not only when the select below
        // sleeps: on a busy push a block read or feedback is nearly always
        // ready and wins it, and the rate would stop growing (20 ms steps).
        if sender.poll_timeout().is_some_and(|t| t <= now) {
            sender.handle_timeout(now);
        }
        while let Some(t) = sender.poll_gather(now, &mut gather) {
            for (data, to) in datas
                .iter()
                .flat_map(|d| targets.iter().map(move |t| (d, t)))
            {
                match send_batch(data, &mut batch, to, &gather, t.segment_size).await {
                    Ok(()) => failing_since = None,
                    Err(e) => {
                        // A failed send is loss: the protocol repairs it.
                        send_errors += 1;
                        let dest = to.as_socket().map_or(group, |a| a);
                        if send_errors == 1 {
                            tracing::warn!("send to {dest} failed: {e} (treated as loss)");
                        }
                        // Unless every send fails, for long: then the cause
                        // is here (an output firewall rule, a route gone),
                        // and repairs would fail alike until --timeout.
                        let since = *failing_since.get_or_insert(now);
                        if now.duration_since(since) >= SEND_FAILING_LIMIT && !gave_up_sending {
                            gave_up_sending = true;
                            let why = format!(
                                "every send to {dest} failed for {} s: {e}; check this host's firewall (output rules) and its route to the group",
                                SEND_FAILING_LIMIT.as_secs()
                            );
                            tracing::error!("{why}");
                            sender.abort(now, &why);
                        }
                    }
                }
            }
        }
        if tracing::enabled!(tracing::Level::DEBUG) && sender.rate_bps() != logged_rate {
            logged_rate = sender.rate_bps();
            tracing::debug!(
                "rate {} Mbit/s at {:.3} s, {} datagrams sent",
                logged_rate / 1_000_000,
                now.duration_since(started).as_secs_f64(),
                sender.stats().packets_sent
            );
        }
        let mut finished = None;
        while let Some(ev) = sender.poll_event() {
            match ev {
                SenderEvent::ReadBlock {
                    object,
                    block,
                    offset,
                    len,
                } => {
                    let _ = req_tx.send(ReadRequest {
                        object,
                        block,
                        offset,
                        len,
                    });
                }
                SenderEvent::EncodeParity { object, block, job } => {
                    let _ = job_tx.send((object, block, job));
                }
                SenderEvent::Registered { node, name } => {
                    view.receivers += 1;
                    tracing::info!("receiver {name} ({node}) registered");
                }
                SenderEvent::DataStarted => {
                    view.started = true;
                    tracing::info!(
                        "sending to {} receivers, starting at {} Mbit/s",
                        sender.peer_count(),
                        sender.rate_bps() / 1_000_000
                    );
                }
                SenderEvent::Dropped {
                    node,
                    name,
                    delivered_bps,
                } => {
                    tracing::warn!(
                        "dropped {name} ({node}): it took only {:.1} Mbit/s, below --min-rate",
                        delivered_bps as f64 / 1e6
                    );
                }
                SenderEvent::Flushing => {
                    view.flushing = true;
                    tracing::info!("all data sent once; waiting for confirmations");
                }
                SenderEvent::Finished(report) => finished = Some(report),
            }
        }
        if let Some(report) = finished {
            break Ok(report);
        }
        if now >= next_progress {
            view.bytes_sent = sender.progress_bytes();
            view.confirmed = sender.confirmed_count();
            progress(&view);
            next_progress = now + Duration::from_millis(100);
        }
        let deadline = sender
            .poll_timeout()
            .unwrap_or(now + Duration::from_secs(1))
            .min(next_progress);
        tokio::select! {
            i = readable(&feedbacks) => {
                // Take what is queued there before sending again.
                let now = Instant::now();
                for _ in 0..FEEDBACK_BATCH {
                    match feedbacks[i].try_recv_from(&mut rbuf) {
                        Ok((n, _)) => sender.handle_datagram(now, &rbuf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Some((object, block, job, symbols)) = parity_rx.recv() => {
                sender.handle_parity(Instant::now(), object, block, job, symbols);
            }
            Some((object, block, result)) = done_rx.recv() => {
                match result {
                    Ok(data) => sender.handle_block(Instant::now(), object, block, data),
                    // The push cannot deliver this file: end it, telling
                    // the receivers (DONE) and reporting why.
                    Err((path, e)) if !aborted_for_read => {
                        aborted_for_read = true;
                        let why = if e.to_string() == CHANGED {
                            format!("{}: {CHANGED}; receivers keep no part of it that does not match its hash; push again once it is complete", path.display())
                        } else {
                            format!("cannot read {}: {e}", path.display())
                        };
                        tracing::error!("{why}");
                        sender.abort(Instant::now(), &why);
                    }
                    Err(_) => {}
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                sender.handle_timeout(Instant::now());
            }
            _ = &mut interrupt, if !interrupted => {
                // Tell the receivers the push is over, then report.
                interrupted = true;
                tracing::warn!("interrupted: ending the push");
                sender.abort(Instant::now(), "interrupted by a signal before every receiver confirmed");
            }
        }
    };
    drop(req_tx);
    drop(job_tx);
    let _ = reader_thread.join();
    let _ = encoder_thread.join();
    if send_errors > 0 {
        tracing::warn!("{send_errors} sends failed during the push");
    }
    result
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

/// Every send failing this long, with no success between, ends the push.
const SEND_FAILING_LIMIT: Duration = Duration::from_secs(5);

/// Feedback datagrams read at most between two sends.
const FEEDBACK_BATCH: usize = 64;

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

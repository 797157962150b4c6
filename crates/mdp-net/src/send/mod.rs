//! The sender's driver: one tokio task runs the [`Sender`] state machine
//! against the data and feedback sockets and a timer; a reader thread reads
//! whole blocks from the files on request, and an encoder thread computes
//! the parity symbols the state machine asks for.
//!
//! - [`run`] (here): checks the settings, opens the sockets, starts the
//!   threads, and turns the driver until the push ends.
//! - `sockets`: the sending and feedback sockets of each interface.
//! - `workers`: the reader and encoder threads.
//! - `driver`: one turn of the loop, as named steps.

mod driver;
mod sockets;
mod workers;

use crate::scan::Source;
use crate::socket::Endpoint;
use crate::udp;
use driver::SendDriver;
use mdp_proto::{Sender, SenderConfig, SenderReport};
use sockets::SendSockets;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use thiserror::Error;
use tokio::net::UdpSocket;
use workers::Workers;

/// Why a push could not run to its end.
#[derive(Debug, Error)]
pub enum SendError {
    /// Bad settings of the network side (interfaces, destinations).
    #[error("{0}")]
    Config(String),
    /// Settings or a manifest the sender's state machine refuses.
    #[error(transparent)]
    Session(#[from] mdp_proto::sender::ConfigError),
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
    /// Receivers dropped (silent, or too slow).
    pub dropped: usize,
    /// True once all data went out once and the sender waits for confirmations.
    pub flushing: bool,
    /// True once the data phase began.
    pub started: bool,
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
    progress: impl FnMut(&SendProgress),
) -> Result<Arc<SenderReport>, SendError> {
    let endpoint = sockets::check(endpoints, destinations)?;
    let sockets = open_sockets(&endpoint, endpoints, destinations, &mut config)?;
    let total = source.manifest.total_bytes();
    let sender = Sender::new(config, source.manifest, Instant::now())?;
    let workers = Workers::spawn(workers::BlockSource::Files {
        files: source.files,
        seen: source.seen,
    })?;
    drive(SendDriver::new(
        sender,
        sockets,
        workers,
        endpoint.group,
        total,
        progress,
    ))
    .await
}

/// A relay's push (docs/PROTOCOL.md §5d): the origin's push, announced as
/// it is (`config` carries the origin's session, coding and signature;
/// `manifest` is the origin's, whose hash must be `manifest_hash`), its
/// blocks read from `spool` as they arrive; each REGISTER and confirming
/// STATUS of the relay's receivers goes to `feedback`.
pub(crate) async fn run_relay(
    endpoints: &[Endpoint],
    destinations: &[SocketAddr],
    mut config: SenderConfig,
    manifest: mdp_proto::Manifest,
    manifest_hash: [u8; 32],
    spool: Arc<crate::relay::Spool>,
    feedback: tokio::sync::mpsc::UnboundedSender<mdp_proto::wire::Relayed>,
) -> Result<Arc<SenderReport>, SendError> {
    let endpoint = sockets::check(endpoints, destinations)?;
    config.pass_on_feedback = true;
    let sockets = open_sockets(&endpoint, endpoints, destinations, &mut config)?;
    let total = manifest.total_bytes();
    let sender = Sender::new(config, manifest, Instant::now())?;
    if sender.manifest_hash() != manifest_hash {
        return Err(SendError::Config(
            "the origin's manifest does not encode to the bytes it announced (a newer mdp?): not passed on"
                .into(),
        ));
    }
    let workers = Workers::spawn(workers::BlockSource::Spool(spool))?;
    let mut driver = SendDriver::new(
        sender,
        sockets,
        workers,
        endpoint.group,
        total,
        |_: &SendProgress| {},
    );
    driver.pass_feedback_to(feedback);
    drive(driver).await
}

/// Every socket of the push, the send buffers sized for `config`'s rate,
/// and `config`'s batch limit set for its datagrams (the seal's trailer
/// included).
fn open_sockets(
    endpoint: &Endpoint,
    endpoints: &[Endpoint],
    destinations: &[SocketAddr],
    config: &mut SenderConfig,
) -> Result<SendSockets, SendError> {
    // A full send buffer makes the pacer's bursts wait in the kernel rather
    // than fail; a few milliseconds at the configured rate are plenty.
    let top = match config.rate {
        mdp_proto::RateMode::Fixed(r) => r,
        mdp_proto::RateMode::Adaptive { max_bps, .. } => max_bps,
    };
    let send_buffer = ((top / 8) as usize / 50).clamp(1 << 20, 64 << 20);
    let (data, unicast_feedback) = sockets::open_first(endpoint, send_buffer)?;
    let data = UdpSocket::from_std(data)?;
    let trailer = if config.auth.is_some() {
        mdp_proto::limits::TRAILER_LEN
    } else {
        0
    };
    config.max_batch = udp::batch_limit(
        config.symbol_size as usize + mdp_proto::limits::DATA_HEADER_LEN + trailer,
    );
    SendSockets::open(endpoints, destinations, data, unicast_feedback, send_buffer)
}

/// Turns `driver` until the push ends.
async fn drive<P: FnMut(&SendProgress)>(
    mut driver: SendDriver<P>,
) -> Result<Arc<SenderReport>, SendError> {
    // An error returns at once: dropping the driver closes the worker
    // threads' channels, and they end on their own.
    let report = loop {
        if let Some(report) = driver.turn().await? {
            break report;
        }
    };
    let send_errors = driver.finish();
    if send_errors > 0 {
        tracing::warn!("{send_errors} sends failed during the push");
    }
    Ok(report)
}

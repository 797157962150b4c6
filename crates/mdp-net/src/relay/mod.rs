//! A relay (`mdp-recv --relay-group`): the receiver passes
//! the push it takes on to a network of its own, as a sender of the same
//! push (docs/PROTOCOL.md §5d, docs/CROSSING.md).
//!
//! - `spool`: the blocks the relay verified, on its disk, for its sender.
//! - [`Downstream`] (here): the relay's sender, a task of its own, started
//!   when the push's manifest is known; its receivers' words come back to
//!   the receiving side through a channel, and so does its end.
//!
//! The receiving side (recv/driver.rs) writes each verified block to the
//! spool as well as to its files, registers holding nothing (the origin
//! skips nothing its receivers may need), passes its receivers' words up
//! ([`mdp_proto::Receiver::pass_on`]), and settles its own copy (and so
//! confirms) only once this push ended and the origin acknowledged every
//! word passed up.

mod spool;

pub use spool::Spool;

use crate::socket::Endpoint;
use mdp_proto::wire::Relayed;
use mdp_proto::{RelaySource, SenderConfig, SenderReport, SessionId};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::mpsc::{channel, unbounded_channel, Receiver};
use tokio::sync::oneshot;

/// Where and how a relay passes pushes on.
#[derive(Clone, Debug)]
pub struct RelayOptions {
    /// The relay's group, port and interfaces (its sending side).
    pub endpoints: Vec<Endpoint>,
    /// Unicast destinations instead of the group (none yet from the
    /// command line).
    pub destinations: Vec<SocketAddr>,
    /// The sender's settings (rate, receivers to wait for, timeouts); the
    /// push's own (session, coding, signature) are set from the origin's.
    pub config: SenderConfig,
}

/// What the relay's sender tells its receiving side.
#[derive(Debug)]
pub enum RelayNote {
    /// A receiver's REGISTER or confirming STATUS, to pass up.
    Feedback(Relayed),
    /// The relay's push ended: its report, or why it could not run.
    Ended(Result<Arc<SenderReport>, String>),
}

/// Words of the relay's receivers queued for the receiving side, at
/// most; beyond, a word is dropped (its receiver repeats it until the
/// relay's sender acknowledges it, and the relay repeats it upstream).
const WORDS_QUEUED: usize = 1024;

/// The relay's sender of one push, on a thread of its own (its own
/// runtime: a busy network behind the relay does not slow the receiving
/// side's loop). Dropping it stops that push.
#[derive(Debug)]
pub struct Downstream {
    /// The push.
    pub session: SessionId,
    /// Where its blocks go as they are verified.
    pub spool: Arc<Spool>,
    /// Its receivers' words and its end.
    pub notes: Receiver<RelayNote>,
    /// Its report, once it ended (`Err`: it could not run).
    pub ended: Option<Result<Arc<SenderReport>, String>>,
    /// When it ended.
    pub ended_at: Option<std::time::Instant>,
    /// Stops it (dropped with it).
    _stop: oneshot::Sender<()>,
}

impl Downstream {
    /// Starts the relay's sender of `source` (the push the receiving side
    /// takes), its spool in `tmp`. Fails when the spool or the thread
    /// cannot be made.
    pub fn start(
        opts: &RelayOptions,
        source: RelaySource,
        tmp: &Path,
        block_bytes: u64,
    ) -> Result<Downstream, String> {
        let spool = Arc::new(
            Spool::create(tmp, &source.manifest, block_bytes)
                .map_err(|e| format!("cannot make the relay's spool in {}: {e}", tmp.display()))?,
        );
        let mut config = opts.config.clone();
        config.session = source.session;
        config.symbol_size = source.coding.symbol_size;
        config.block_k = source.coding.block_k;
        config.parity = source.coding.parity;
        config.proactive = config.proactive.min(config.parity);
        config.forwarded_signature = source.signature;
        config.identity = None;
        config.encryption = None;
        config.delete = source.delete;
        config.dry_run = source.dry_run;
        let (tx, notes) = channel(WORDS_QUEUED);
        let (feedback, mut words) = unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let endpoints = opts.endpoints.clone();
        let destinations = opts.destinations.clone();
        let manifest = (*source.manifest).clone();
        let task_spool = spool.clone();
        let hash = source.manifest_hash;
        std::thread::Builder::new()
            .name("mdp-relay".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.blocking_send(RelayNote::Ended(Err(e.to_string())));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let run = crate::send::run_relay(
                        &endpoints,
                        &destinations,
                        config,
                        manifest,
                        hash,
                        task_spool.clone(),
                        feedback,
                    );
                    // Words as they come (dropped when the queue is full:
                    // they are repeated), and the end once the push is over
                    // or stopped.
                    let pass = async {
                        while let Some(w) = words.recv().await {
                            let _ = tx.try_send(RelayNote::Feedback(w));
                        }
                    };
                    let result = tokio::select! {
                        (r, ()) = async { tokio::join!(run, pass) } => r.map_err(|e| e.to_string()),
                        _ = stopped => Err("stopped: another push began".to_string()),
                    };
                    task_spool.close("the relay's push ended");
                    let _ = tx.send(RelayNote::Ended(result)).await;
                });
            })
            .map_err(|e| format!("cannot start the relay's sender: {e}"))?;
        Ok(Downstream {
            session: source.session,
            spool,
            notes,
            ended: None,
            ended_at: None,
            _stop: stop,
        })
    }
}

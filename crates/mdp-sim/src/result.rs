//! What a run ended with: the sender's report and counters, each
//! receiver's files and outcomes, and the figures the matrix prints.

use crate::Fate;
use mdp_proto::{ReceiverStats, SenderReport, SessionOutcome};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

#[cfg(doc)]
use mdp_proto::Sender;

/// What one receiver ended with.
#[derive(Debug)]
pub struct ReceiverResult {
    /// Files it verified, by path.
    pub files: HashMap<String, Vec<u8>>,
    /// How its session ended (None: it never finished).
    pub outcome: Option<SessionOutcome>,
    /// Its counters.
    pub stats: ReceiverStats,
    /// Its fate.
    pub fate: Fate,
    /// Every session's outcome, in order (several with `sender_crash`).
    pub outcomes: Vec<SessionOutcome>,
    /// The counters of each finished session, in the same order.
    pub session_stats: Vec<ReceiverStats>,
    /// Its node id.
    pub node: mdp_proto::NodeId,
    /// When (from the start) its caller finished settling the tree of the
    /// last session that got that far.
    pub settled: Option<Duration>,
    /// Datagrams its host's full socket queue dropped (a slow host of
    /// [`crate::SimConfig::slow_hosts`]; 0 for the others).
    pub socket_drops: u64,
}

/// The outcome of a run.
#[derive(Debug)]
pub struct SimResult {
    /// The sender's report (None: the run hit `max_time`).
    pub report: Option<Arc<SenderReport>>,
    /// The sender's counters.
    pub sender_stats: mdp_proto::SenderStats,
    /// The sender's notices ([`mdp_proto::SenderEvent`]) with the virtual
    /// time since the start at which each came.
    pub sender_events: Vec<(Duration, mdp_proto::SenderEvent)>,
    /// Every receiver.
    pub receivers: Vec<ReceiverResult>,
    /// Virtual time from start to the sender's end.
    pub elapsed: Duration,
    /// Virtual time from start to the last receiver's end.
    pub elapsed_all: Duration,
    /// Distinct blocks of which at least one receiver lost at least one
    /// first-transmission symbol.
    pub blocks_with_loss: usize,
    /// NACK entries sent by all receivers.
    pub nack_entries: u64,
    /// Total file bytes pushed.
    pub file_bytes: u64,
    /// Payload bytes the sender handed over without copying them
    /// ([`Sender::poll_gather`]'s shared pieces).
    pub shared_payload_bytes: u64,
}

impl SimResult {
    /// UDP payload bytes the sender sent per byte of file.
    pub fn wire_per_byte(&self) -> f64 {
        self.sender_stats.bytes_sent as f64 / self.file_bytes.max(1) as f64
    }

    /// NACK entries sent per block that suffered loss.
    pub fn nacks_per_lost_block(&self) -> f64 {
        self.nack_entries as f64 / self.blocks_with_loss.max(1) as f64
    }
}

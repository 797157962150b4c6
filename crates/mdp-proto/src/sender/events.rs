//! What the sender asks of its caller and tells it.

use super::*;

/// Work the sender asks of its caller ([`Sender::poll_request`]). Each
/// request names the call that answers it; until the answer comes, the
/// sender goes on with other work (other symbols, other repairs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SenderRequest {
    /// Read `len` bytes of object `object` at `offset`. Answer:
    /// [`Sender::handle_block`] with those bytes. A block evicted from the
    /// cache is asked for again when a repair needs it.
    ReadBlock {
        /// File object.
        object: ObjectId,
        /// Block.
        block: BlockNumber,
        /// Byte offset in the file.
        offset: u64,
        /// Bytes to read.
        len: usize,
    },
    /// Compute parity symbols with [`ParityJob::run`]. Answer:
    /// [`Sender::handle_parity`] with the job and its symbols. A parity symbol costs `k` multiply-adds per
    /// byte (a whole GF(2^16) block far more), so the caller runs it off
    /// the loop that sends; meanwhile the sender sends other symbols.
    EncodeParity {
        /// File object.
        object: ObjectId,
        /// Block.
        block: BlockNumber,
        /// What to compute.
        job: ParityJob,
    },
}

/// What the sender tells its caller ([`Sender::poll_event`]): notices
/// that need no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SenderEvent {
    /// A receiver could not take the minimum rate and was dropped.
    Dropped {
        /// Its node id.
        node: NodeId,
        /// Its name.
        name: String,
        /// Its pace when it was dropped (the moving average of what it
        /// reported taking), bits per second.
        delivered_bps: u64,
    },
    /// A receiver went silent after the data was sent, longer than
    /// `drop_after`, and was dropped (it may come back).
    Silent {
        /// Its node id.
        node: NodeId,
        /// Its name.
        name: String,
        /// How long it had been silent.
        silent_for: std::time::Duration,
    },
    /// A receiver confirmed that its push ended: every file verified and
    /// placed, or (`failed` > 0) some failed there for good.
    Confirmed {
        /// Its node id.
        node: NodeId,
        /// Its name.
        name: String,
        /// Files that failed there.
        failed: usize,
        /// How its push hook ended, when one ran.
        hook: Option<crate::wire::HookOutcome>,
    },
    /// A relay's sender (`SenderConfig::pass_on_feedback`): a
    /// receiver's REGISTER or STATUS, as it came, for the relay to pass
    /// upstream with [`crate::Receiver::pass_on`].
    Feedback {
        /// What the receiver said.
        message: crate::wire::Relayed,
    },
    /// A receiver joined.
    Registered {
        /// Its node id.
        node: NodeId,
        /// Its name.
        name: String,
    },
    /// Data transmission begins (registration phase over).
    DataStarted,
    /// All data sent; waiting for confirmations.
    Flushing,
    /// The session is over; the sender has nothing more to send.
    Finished(Arc<SenderReport>),
}

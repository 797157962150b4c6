//! What the sender asks of its caller and tells it.

use super::*;

/// What the caller must do or know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SenderEvent {
    /// Read `len` bytes of object `object` at `offset` and pass them to
    /// [`Sender::handle_block`].
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
    /// Compute parity symbols with [`ParityJob::run`] and pass them to
    /// [`Sender::handle_parity`]. A parity symbol costs `k` multiply-adds per
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
    /// A receiver could not take the minimum rate and was dropped.
    Dropped {
        /// Its node id.
        node: NodeId,
        /// Its name.
        name: String,
        /// The rate that last reached it, bits per second.
        delivered_bps: u64,
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

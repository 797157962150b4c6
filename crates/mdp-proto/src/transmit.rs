//! What the state machines hand the IO layer to send: [`Transmit`], one
//! datagram or a batch of equal-sized ones in the caller's buffer, and
//! [`Gather`], a batch as pieces for a gathering send. The wire format is
//! [`crate::wire`]'s; this module only says how datagrams are batched and
//! where they go, so the IO layer's batching can change without touching
//! the format.

/// Where a datagram goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// The session's multicast group (all packets in mdp 0.1).
    Group,
}

/// One datagram, or a batch of equal-sized datagrams (the last may be
/// shorter), written by `poll_transmit` into the caller's buffer (or by the
/// sender's `poll_gather` into a [`Gather`]).
///
/// A batch can be handed to the kernel in one UDP GSO send; without GSO the
/// caller sends `buf[i*segment_size..]` chunks one by one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send.
    pub destination: Destination,
    /// Total bytes written to the buffer.
    pub size: usize,
    /// Size of each datagram in the batch; equals `size` for a single one.
    pub segment_size: usize,
}

/// A batch of datagrams as pieces for a gathering send (`sendmsg` with
/// one iovec per piece), so that source symbols go from the sender's block
/// cache to the kernel without a copy: each datagram is its own bytes
/// (header; copied payload and seal where there is one) and, for a source
/// symbol, a range of the shared block buffer. Filled by
/// `Sender::poll_gather`, reused from batch to batch.
#[derive(Debug, Default)]
pub struct Gather {
    /// Headers and copied payloads, back to back.
    bytes: Vec<u8>,
    /// Per datagram: its range of `bytes`, and the shared payload after it.
    datagrams: Vec<(std::ops::Range<usize>, Option<SharedPayload>)>,
    /// Bytes of all datagrams.
    size: usize,
}

/// A payload range of a buffer shared with the sender's block cache.
#[derive(Clone, Debug)]
struct SharedPayload {
    buf: std::sync::Arc<Vec<u8>>,
    range: std::ops::Range<usize>,
}

impl Gather {
    /// Empties it, keeping its memory.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.datagrams.clear();
        self.size = 0;
    }

    /// Bytes of all datagrams.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Datagrams held.
    pub fn len(&self) -> usize {
        self.datagrams.len()
    }

    /// True when it holds no datagram.
    pub fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }

    /// Datagram `i` as its pieces: its own bytes, then the shared payload
    /// if it has one (empty otherwise).
    pub fn pieces(&self, i: usize) -> [&[u8]; 2] {
        let (own, shared) = &self.datagrams[i];
        let shared = shared.as_ref().map_or(&[][..], |p| &p.buf[p.range.clone()]);
        [&self.bytes[own.clone()], shared]
    }

    /// Appends every datagram, contiguous, to `buf` (the copying path).
    pub fn copy_to(&self, buf: &mut Vec<u8>) {
        for i in 0..self.len() {
            for piece in self.pieces(i) {
                buf.extend_from_slice(piece);
            }
        }
    }

    /// Appends a datagram: `own` bytes, then `shared[range]` if given.
    pub fn push(
        &mut self,
        own: &[u8],
        shared: Option<(std::sync::Arc<Vec<u8>>, std::ops::Range<usize>)>,
    ) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(own);
        self.end_datagram(start, shared);
    }

    /// Where the next datagram's own bytes go; call [`Gather::end_datagram`]
    /// when they are written.
    pub(crate) fn bytes_mut(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// Ends a datagram that starts at `start` of the own bytes, with an
    /// optional shared payload `buf[range]` after them.
    pub(crate) fn end_datagram(
        &mut self,
        start: usize,
        shared: Option<(std::sync::Arc<Vec<u8>>, std::ops::Range<usize>)>,
    ) {
        let shared = shared.map(|(buf, range)| SharedPayload { buf, range });
        self.size += self.bytes.len() - start + shared.as_ref().map_or(0, |p| p.range.len());
        self.datagrams.push((start..self.bytes.len(), shared));
    }
}

//! The one drain loop: what every caller of a state machine does after each
//! input it gave it (a datagram, a timer, an answer to a request).
//!
//! After each input the caller takes every datagram the machine has to send
//! now (`poll_gather` / `poll_transmit`), then every request
//! (`poll_request`: read a block, encode parity, check present files, write
//! a block, verify a file, settle), answered by calling the machine back,
//! then every notice (`poll_event`), and repeats until none yields
//! anything; then it reads `poll_timeout` for when to wake the machine next.
//! The simulator, the hostile-input tests, the fuzz bodies and the examples
//! all drain through [`Drain`]; each gives its own `send` (where datagrams
//! go) and `handle` (how requests are answered and notices taken).
//!
//! **Invariant:** after [`Drain::sender`] or [`Drain::receiver`] returns,
//! the machine has nothing left to send or report at that `now` (unless a
//! batch limit cut the sender short), so the returned deadline is the only
//! thing that can wake it without new input.

use mdp_proto::{
    Gather, Receiver, ReceiverEvent, ReceiverRequest, Sender, SenderEvent, SenderRequest,
};
use std::time::Instant;

/// What a drain hands its caller besides datagrams: a request to answer,
/// or a notice.
#[derive(Debug)]
pub enum Output<R, E> {
    /// Work to do; the request names the call that answers it.
    Request(R),
    /// A notice.
    Event(E),
}

/// The buffers one caller reuses from drain to drain, and what it counted.
#[derive(Debug)]
pub struct Drain {
    buf: Vec<u8>,
    gather: Gather,
    /// Payload bytes the sender handed over as shared pieces of its
    /// [`Gather`] (not copied into its own buffer).
    pub shared_payload_bytes: u64,
    /// At most this many batches are taken from a sender per call.
    limit: usize,
}

impl Default for Drain {
    fn default() -> Self {
        Drain::new()
    }
}

impl Drain {
    /// Empty buffers, no batch limit.
    pub fn new() -> Drain {
        Drain {
            buf: Vec::with_capacity(65536),
            gather: Gather::default(),
            shared_payload_bytes: 0,
            limit: usize::MAX,
        }
    }

    /// At most `batches` batches are taken from a sender per call: a guard
    /// for callers fed arbitrary input (the fuzz bodies), where a machine
    /// that kept yielding at a fixed `now` would otherwise hang the caller.
    pub fn with_batch_limit(batches: usize) -> Drain {
        Drain {
            limit: batches,
            ..Drain::new()
        }
    }

    /// Drains `sender` at `now`: each datagram to `send` (put together from
    /// its gathered pieces, as the kernel does for `mdp-send`), each request
    /// and each notice to `handle` (which answers a request at once or
    /// later), until none yields anything. Returns when to call
    /// [`Sender::handle_timeout`] next.
    pub fn sender(
        &mut self,
        sender: &mut Sender,
        now: Instant,
        mut send: impl FnMut(&[u8]),
        mut handle: impl FnMut(&mut Sender, Output<SenderRequest, SenderEvent>),
    ) -> Option<Instant> {
        let mut batches = 0usize;
        loop {
            let mut progressed = false;
            while batches < self.limit {
                let Some(t) = sender.poll_gather(now, &mut self.gather) else {
                    break;
                };
                batches += 1;
                progressed = true;
                let gather = &self.gather;
                let mut size = 0;
                for i in 0..gather.len() {
                    let [own, shared] = gather.pieces(i);
                    self.buf.clear();
                    self.buf.extend_from_slice(own);
                    self.buf.extend_from_slice(shared);
                    self.shared_payload_bytes += shared.len() as u64;
                    let d = &self.buf;
                    assert!(
                        d.len() == t.segment_size
                            || (i + 1 == gather.len() && d.len() < t.segment_size),
                        "datagram {i} of a batch of {}-byte segments has {} bytes",
                        t.segment_size,
                        d.len()
                    );
                    size += d.len();
                    send(d);
                }
                assert_eq!(size, t.size, "the batch's size");
            }
            while let Some(req) = sender.poll_request() {
                progressed = true;
                handle(sender, Output::Request(req));
            }
            while let Some(ev) = sender.poll_event() {
                progressed = true;
                handle(sender, Output::Event(ev));
            }
            if !progressed {
                break;
            }
        }
        sender.poll_timeout()
    }

    /// Drains `receiver` at `now`: each feedback datagram to `send`, each
    /// request and each notice to `handle`, until none yields anything. Returns when to call
    /// [`Receiver::handle_timeout`] next.
    ///
    /// `handle` may replace the machine (a service starting its
    /// next session); the drain goes on with the new one.
    pub fn receiver(
        &mut self,
        receiver: &mut Receiver,
        now: Instant,
        mut send: impl FnMut(&[u8]),
        mut handle: impl FnMut(&mut Receiver, Output<ReceiverRequest, ReceiverEvent>),
    ) -> Option<Instant> {
        loop {
            let mut progressed = false;
            while let Some(t) = receiver.poll_transmit(now, &mut self.buf) {
                progressed = true;
                send(&self.buf[..t.size]);
            }
            while let Some(req) = receiver.poll_request() {
                progressed = true;
                handle(receiver, Output::Request(req));
            }
            while let Some(ev) = receiver.poll_event() {
                progressed = true;
                handle(receiver, Output::Event(ev));
            }
            if !progressed {
                break;
            }
        }
        receiver.poll_timeout()
    }
}

/// Answers a receiver's requests as a caller that holds nothing and accepts
/// every file: no file is already present, every complete file verifies,
/// the tree settles at once; blocks are dropped unwritten.
pub fn accept_all(
    receiver: &mut Receiver,
    now: Instant,
    out: Output<ReceiverRequest, ReceiverEvent>,
) {
    let Output::Request(request) = out else {
        return;
    };
    match request {
        ReceiverRequest::CheckPresent { .. } => receiver.handle_present(now, &[]),
        ReceiverRequest::VerifyObject { object } => {
            receiver.handle_object_verified(now, object, Ok(()))
        }
        ReceiverRequest::Settle { .. } => receiver.handle_settled(now, None),
        ReceiverRequest::WriteBlock { .. } => {}
    }
}

//! The sans-IO protocol core of mdp.
//!
//! This crate owns the wire format ([`wire`], with every bound in
//! [`limits`]), the file manifest ([`manifest`]), the block layout and
//! Reed-Solomon coding ([`layout`], [`fec`]), rate control ([`cc`]), packet
//! authentication ([`auth`]), and the two state machines: [`Sender`] and
//! [`Receiver`]. It performs no IO: it opens no socket and no file, reads no
//! clock, spawns no thread and uses no global randomness. Time enters as
//! `now: Instant` arguments, randomness as a seed in the configuration,
//! datagrams as byte slices; datagrams leave through `poll_transmit` (or,
//! from the sender, `poll_gather`, which hands source symbols out as ranges
//! of its cached blocks instead of copying them, see [`transmit`]), work for
//! the caller through `poll_request`, notices through `poll_event`.
//!
//! # Calling contract (both state machines)
//!
//! Inputs are the `handle_*` calls: `handle_datagram`, `handle_timeout`,
//! and the answers to requests. After every input, the caller
//!
//! 1. drains `poll_transmit` (or `poll_gather`) until it returns `None` and
//!    sends what it got;
//! 2. drains `poll_request` and starts each request. A request names the
//!    call that answers it ([`SenderRequest::ReadBlock`] →
//!    [`Sender::handle_block`], [`SenderRequest::EncodeParity`] →
//!    [`Sender::handle_parity`], [`ReceiverRequest::CheckPresent`] →
//!    [`Receiver::handle_partial`] then [`Receiver::handle_present`],
//!    [`ReceiverRequest::VerifyObject`] →
//!    [`Receiver::handle_object_verified`], [`ReceiverRequest::Settle`] →
//!    [`Receiver::handle_settled`]; [`ReceiverRequest::WriteBlock`] needs no
//!    answer). The answer may come at once or later, from another thread's
//!    result; it is itself an input;
//! 3. drains `poll_event`, the notices;
//! 4. reads `poll_timeout` and arms one timer for that instant, calling
//!    `handle_timeout(now)` when it fires.
//!
//! `now` never goes backwards from one call to the next, with one exception:
//! `handle_datagram` may be given the datagram's kernel arrival time
//! (`SO_TIMESTAMPNS`), which can be earlier than the `now` of a call made
//! while the datagram waited in the socket queue. The state machines take
//! such a `now` as "when this datagram arrived": durations computed from it
//! saturate at zero (`Instant` subtraction never panics), and a deadline
//! armed from it may already have passed, which the caller's next check of
//! `poll_timeout` takes care of. An
//! early or spurious `handle_timeout` is harmless, a late one is not: a
//! caller that waits on several inputs must still call it once
//! `poll_timeout` has passed, even when another input is always ready (the
//! rate grows, and NACKs go out, from timers).
//!
//! # The whole driver loop
//!
//! A sketch of what `mdp-net` does for each side, with the IO left abstract
//! (`mdp-sim`'s `Drain` is the same loop against a simulated network):
//!
//! ```no_run
//! use mdp_proto::{
//!     Manifest, NodeId, ObjectId, Receiver, ReceiverConfig, ReceiverEvent, ReceiverRequest,
//!     Sender, SenderConfig, SenderEvent, SenderRequest, SessionId,
//! };
//! use mdp_proto::fec::Codec;
//! use std::time::Instant;
//!
//! # fn send_to_group(_: &[u8]) {}
//! # fn next_datagram(_: Option<Instant>) -> Option<(Instant, Vec<u8>)> { None }
//! # fn read_file(_: ObjectId, _: u64, len: usize) -> Vec<u8> { vec![0; len] }
//! # fn files_in_place(_: &Manifest) -> Vec<ObjectId> { Vec::new() }
//! # fn write_at(_: ObjectId, _: u64, _: &[u8]) {}
//! # fn check_hash_and_rename(_: ObjectId) -> bool { true }
//! fn drive_sender(manifest: Manifest) -> Result<(), mdp_proto::ConfigError> {
//!     let mut sender = Sender::new(SenderConfig::new(SessionId(1)), manifest, Instant::now())?;
//!     let mut buf = Vec::new();
//!     loop {
//!         let now = Instant::now();
//!         if sender.poll_timeout().is_some_and(|t| t <= now) {
//!             sender.handle_timeout(now);
//!         }
//!         while let Some(t) = sender.poll_transmit(now, &mut buf) {
//!             for datagram in buf[..t.size].chunks(t.segment_size) {
//!                 send_to_group(datagram);
//!             }
//!         }
//!         while let Some(request) = sender.poll_request() {
//!             match request {
//!                 SenderRequest::ReadBlock { object, block, offset, len } => {
//!                     sender.handle_block(now, object, block, read_file(object, offset, len));
//!                 }
//!                 SenderRequest::EncodeParity { object, block, job } => {
//!                     let symbols = job.run(&mut Codec::default()).expect("valid coding");
//!                     sender.handle_parity(now, object, block, job, symbols);
//!                 }
//!             }
//!         }
//!         while let Some(event) = sender.poll_event() {
//!             if let SenderEvent::Finished(report) = event {
//!                 println!("{}", if report.success { "every receiver confirmed" } else { "incomplete" });
//!                 return Ok(());
//!             }
//!         }
//!         // Feedback from the receivers, or the timer.
//!         if let Some((at, datagram)) = next_datagram(sender.poll_timeout()) {
//!             sender.handle_datagram(at, &datagram);
//!         }
//!     }
//! }
//!
//! fn drive_receiver() {
//!     let mut receiver = Receiver::new(ReceiverConfig::new(NodeId(7), "web1", 7));
//!     let mut codec = Codec::default();
//!     let mut buf = Vec::new();
//!     loop {
//!         let now = Instant::now();
//!         if receiver.poll_timeout().is_some_and(|t| t <= now) {
//!             receiver.handle_timeout(now);
//!         }
//!         while let Some(t) = receiver.poll_transmit(now, &mut buf) {
//!             send_to_group(&buf[..t.size]);
//!         }
//!         while let Some(request) = receiver.poll_request() {
//!             match request {
//!                 ReceiverRequest::CheckPresent { manifest, .. } => {
//!                     // Files kept from an interrupted push would go to
//!                     // `handle_partial` first.
//!                     receiver.handle_present(now, &files_in_place(&manifest));
//!                 }
//!                 ReceiverRequest::WriteBlock { object, offset, block } => {
//!                     let bytes = block.into_bytes(&mut codec).expect("k symbols decode");
//!                     write_at(object, offset, &bytes);
//!                 }
//!                 ReceiverRequest::VerifyObject { object } => {
//!                     let result = if check_hash_and_rename(object) {
//!                         Ok(())
//!                     } else {
//!                         Err(mdp_proto::wire::FailReason::HashMismatch)
//!                     };
//!                     receiver.handle_object_verified(now, object, result);
//!                 }
//!                 ReceiverRequest::Settle { .. } => receiver.handle_settled(now, None),
//!             }
//!         }
//!         while let Some(event) = receiver.poll_event() {
//!             if let ReceiverEvent::Finished(outcome) = event {
//!                 println!("complete: {}", outcome.complete);
//!                 return;
//!             }
//!         }
//!         // A datagram at its arrival time, or the timer.
//!         if let Some((at, datagram)) = next_datagram(receiver.poll_timeout()) {
//!             receiver.handle_datagram(at, &datagram);
//!         }
//!     }
//! }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod cc;
pub mod crypto;
pub mod fec;
pub mod identity;
pub mod ids;
pub mod layout;
pub mod limits;
pub mod manifest;
mod pacer;
pub mod ranges;
pub mod receiver;
mod rng;
pub mod sender;
pub mod transmit;
pub mod wire;

pub use cc::RateMode;
pub use ids::{BlockNumber, NodeId, ObjectId, SessionId, SymbolId};
pub use manifest::{Entry, EntryKind, Manifest, ManifestError};
pub use receiver::{
    Receiver, ReceiverConfig, ReceiverEvent, ReceiverRequest, ReceiverStats, RelaySource,
    SessionError, SessionOutcome,
};
pub use sender::{
    ConfigError, RateSummary, ReceiverReport, Sender, SenderConfig, SenderEvent, SenderReport,
    SenderRequest, SenderStats, Verdict,
};
pub use transmit::{Destination, Gather, Transmit};

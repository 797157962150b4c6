//! The sans-IO protocol core of mdp.
//!
//! This crate owns the wire format ([`wire`]), the file manifest ([`manifest`]),
//! the block layout and Reed-Solomon coding ([`layout`], [`fec`]), rate
//! control ([`cc`]), and the two state machines: [`Sender`] and [`Receiver`]. It performs no IO: it opens no
//! socket and no file, reads no clock, spawns no thread and uses no global
//! randomness. Time enters as `now: Instant` arguments, randomness as a seed in
//! the configuration, datagrams as byte slices; datagrams leave through
//! `poll_transmit` (or, from the sender, `poll_gather`, which hands source
//! symbols out as ranges of its cached blocks instead of copying them),
//! everything else through `poll_event`.
//!
//! # Calling contract (both state machines)
//!
//! After every input (`handle_*`), the caller drains `poll_transmit` until it
//! returns `None`, then `poll_event` until it returns `None`, then reads
//! `poll_timeout` and arms one timer for that instant. When the timer fires it
//! calls `handle_timeout(now)`. `now` must never go backwards; an early or
//! spurious `handle_timeout` is harmless, a late one is not: a caller that
//! waits on several inputs must still call it once `poll_timeout` has passed,
//! even when another input is always ready (the rate grows, and NACKs go out,
//! from timers).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod cc;
pub mod fec;
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
    Receiver, ReceiverConfig, ReceiverEvent, ReceiverRequest, ReceiverStats, SessionError,
    SessionOutcome,
};
pub use sender::{
    ConfigError, RateSummary, ReceiverReport, Sender, SenderConfig, SenderEvent, SenderReport,
    SenderRequest, SenderStats, Verdict,
};
pub use transmit::{Destination, Gather, Transmit};

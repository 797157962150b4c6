//! A deterministic in-memory multicast network: one [`Sender`] and N
//! [`Receiver`]s over lossy links, in virtual time.
//!
//! The world jumps from event to event (a datagram arriving, a state
//! machine's timer), so a 100-receiver push takes milliseconds of real time.
//! Every random choice comes from one seed: the same [`SimConfig`] always
//! gives the same run. Receivers keep their files in memory and check them
//! against the manifest's BLAKE3 hashes like the real receiver does.
//!
//! Loss: each receiver's link drops datagrams independently with
//! `loss_independent` (both directions), and the sender's own link drops
//! with `loss_sender` before the group fans out, so those losses are shared
//! by every receiver (correlated loss).
//!
//! A whole session runs with [`World::run`]; a test of one protocol rule
//! steps it instead ([`World::step`], [`World::drive_until`]), looks at the
//! machines mid-run ([`World::sender`], [`World::receiver`]), injects
//! datagrams ([`World::inject`], [`World::deliver`]), drops chosen ones
//! ([`World::drop_when`]) and reads what went over the wire
//! ([`World::record_sent`], [`Sent`]).
//!
//! Rooms: [`world`] steps the world, [`links`] carries datagrams,
//! [`drain`] is the one drain loop every caller of a state machine uses,
//! `store` is a receiver's caller (files in memory), [`host`] a receiving
//! host slower than the network (its socket queue), [`content`] what is
//! pushed, [`config`] the settings, [`result`] what a run ended with,
//! [`fuzz`] the fuzz bodies, [`netns`] the helpers that put real-binary
//! tests in private network namespaces.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod content;
pub mod drain;
pub mod fuzz;
pub mod host;
pub mod links;
pub mod netns;
pub mod relayed;
pub mod result;
mod rng;
mod store;
mod wakes;
pub mod world;

pub use config::{Fate, SimConfig};
pub use content::Content;
pub use drain::{Drain, Output};
pub use links::{Node, Sent};
pub use result::{ReceiverResult, SimResult};
pub use rng::SimRng;
pub use world::World;

#[cfg(doc)]
use mdp_proto::{Receiver, Sender};

//! End-to-end tests of the real `mdp-send` and `mdp-recv` binaries over real
//! loopback multicast.
//!
//! Each network test re-runs itself inside a private network namespace
//! (`unshare -n`, loopback up with a multicast route), so nothing can leave
//! the machine and parallel tests cannot hear each other, and a private PID
//! namespace, so that the receivers of a test that failed die with it. Without root they
//! run on the host's loopback instead (pinned to 127.0.0.1, TTL 1, one at a
//! time), except those that need root for packet filters or routes, which
//! say they are skipped. Files live in a temporary directory of the host
//! file system, shared with the namespace.
//!
//! [`harness`] holds the set-up every test shares; each other module is one
//! topic.

/// Hand-made datagrams for the hostile and authentication tests.
mod forge;
/// Where tests run, the binaries, [`harness::Push`], waiting and comparing.
mod harness;

/// `--expect`: a closed group with a member that never starts.
mod closed_group;
/// Configuration files and send profiles.
mod config;
/// Durable placement: flushes before renames, renames before the confirmation.
mod durable;
/// Pushes that go wrong mid-way: a receiver killed, a file changed, the
/// sender interrupted, timeouts, every send failing.
mod failures;
/// A forged block: rejected by its hash, asked for again, the file intact.
mod forged_block;
/// Hostile datagrams and authentication with a key.
mod hostile;
/// Receivers' limits: file size, a push that cannot be placed, few descriptors.
mod limits;
/// Pushes through packet loss.
mod loss;
/// Symbol sizes against the interface's MTU.
mod mtu;
/// IPv6, unicast, interfaces by name, DSCP, and a sender on two networks.
mod networks;
/// Plain pushes that work, and the command line's usage errors.
mod plain;
/// A local user swapping a pushed directory for a link while pushes run.
mod race;
/// Relays: a push passed on to a second group, a relay killed.
mod relay;
/// Repeated pushes and a killed sender run again: only what is missing goes out.
mod resume;
/// A hundred receiver processes on one host.
mod scale;
/// The hostile-LAN suite: secure defaults, wipes, non-members, replays.
mod secure;
/// Receiver services: hooks per push, and `--delete`.
mod service;
/// Signed pushes: identities, and receivers that trust some keys only.
mod signed;
/// What of a tree a push carries: excludes, links.
mod tree;

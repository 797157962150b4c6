//! The IO layer of mdp: it drives the sans-IO state machines of `mdp-proto`
//! against real multicast sockets, a real clock and real files.
//!
//! - [`socket`]: multicast UDP sockets (socket2), pinned to one interface.
//! - [`scan`]: walks the paths to push and builds the manifest (with hashes).
//! - [`store`]: the receiver's cache directory: temporary files, hash check,
//!   atomic placement, and the path rules that keep writes inside it.
//! - [`udp`]: batched UDP (GSO or `sendmmsg` out, `recvmmsg` and GRO in);
//!   with [`sys`] (free disk space), the only modules with `unsafe` code,
//!   each block with its reason.
//! - [`send`] and [`recv`]: the tokio drivers; [`relay`], a receiver that
//!   passes its push on as a sender.
//!
//! File reads and writes run on dedicated threads, off the protocol task, in
//! whole blocks; a receiver hashes finished files on a thread of their own.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod exclude;
pub mod hash;
pub mod owners;
pub mod recv;
pub mod relay;
pub mod scan;
pub mod send;
pub mod socket;
pub mod stamp;
pub mod store;
#[allow(unsafe_code)]
pub mod sys;
#[allow(unsafe_code)]
pub mod udp;

/// 64 random bits from the OS (through std's hasher keys), for session and
/// node ids and seeds.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish()
}

/// 32 bytes from the operating system's CSPRNG (`getrandom`), for the
/// secrets of encrypted pushes.
pub fn random_secret() -> [u8; 32] {
    use ring::rand::SecureRandom;
    let mut out = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .expect("the operating system's random number generator failed");
    out
}

/// A fresh, empty directory for a unit test.
#[cfg(test)]
fn test_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("mdp-net-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The wall clock now, for the state machines' signature dates and ages.
pub fn wall_clock() -> mdp_proto::identity::WallClock {
    let unix_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    mdp_proto::identity::WallClock {
        at: std::time::Instant::now(),
        unix_us,
    }
}

//! Which pushes a receiver takes: with keys to trust
//! (`ReceiverConfig::trust`), only a push whose ANNOUNCE carries a valid
//! signature ([`wire::PushSignature`]) by one of them, made within
//! [`SIGNATURE_WINDOW`] of this host's clock. Checked before the receiver
//! creates a session, so an untrusted push creates nothing, registers
//! nothing and asks its caller for nothing.
//!
//! **Invariant:** with a trust list, no session starts from an ANNOUNCE
//! that fails [`admit`]; later ANNOUNCEs of the session must carry the same
//! fixed fields (feedback.rs), so a forged one cannot change what was
//! signed.

use super::ReceiverConfig;
use crate::identity::{PublicKey, SIGNATURE_WINDOW};
use crate::ids::SessionId;
use crate::wire::{self, Announce};
use std::time::Instant;
use thiserror::Error;

/// Why a push was not taken (without joining it).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Untrusted {
    /// No key is trusted here and `--insecure` was not given.
    #[error("no key is trusted here: give --trust KEY|FILE with the sender's public key (or --insecure to take unsigned pushes)")]
    NoTrust,
    /// An encrypted push, and this receiver has no identity to ask for
    /// its key with.
    #[error("the push is encrypted for receivers known by key: give this receiver --identity with the key the sender's --expect-file lists")]
    NeedIdentity,
    /// An encrypted push without a signature (never sent by mdp).
    #[error("the push is encrypted but not signed: forged or broken")]
    EncryptedUnsigned,
    /// A push this host accepted before (its durable record says so): a
    /// recording replayed.
    #[error("the push was accepted here before: a recording replayed, refused")]
    Replayed,
    /// The ANNOUNCE carries no signature.
    #[error("the push is not signed: give mdp-send --identity, or this receiver --insecure")]
    Unsigned,
    /// Signed by a key not in the trust list.
    #[error("the push is signed by {fingerprint}, which is not trusted here: add its public key with --trust")]
    UnknownSigner {
        /// The signer's fingerprint.
        fingerprint: String,
    },
    /// The signature does not verify.
    #[error("the push's signature does not verify: forged or corrupt")]
    BadSignature,
    /// Signed too long ago, or too far in the future.
    #[error("the push was signed {skew_secs} s away from this host's clock (more than {} s): a replay, or a clock to fix", SIGNATURE_WINDOW.as_secs())]
    Stale {
        /// How far apart the clocks are, seconds.
        skew_secs: u64,
    },
}

/// Whether an ANNOUNCE of `session` may start a session here.
pub(super) fn admit(
    config: &ReceiverConfig,
    now: Instant,
    session: SessionId,
    a: &Announce,
) -> Result<(), Untrusted> {
    let (trust, clock) = (&config.trust, config.clock.as_ref());
    if a.enc.is_some() {
        if a.signed.is_none() {
            return Err(Untrusted::EncryptedUnsigned);
        }
        if config.identity.is_none() || config.secrets.is_none() {
            return Err(Untrusted::NeedIdentity);
        }
    }
    if trust.is_empty() {
        return if config.insecure {
            Ok(())
        } else {
            Err(Untrusted::NoTrust)
        };
    }
    let Some(signed) = &a.signed else {
        return Err(Untrusted::Unsigned);
    };
    let Some(key) = trust.iter().find(|k| k.to_bytes() == signed.signer) else {
        let fingerprint = PublicKey::from_bytes(&signed.signer)
            .map_or_else(|| "an invalid key".to_string(), |k| k.fingerprint());
        return Err(Untrusted::UnknownSigner { fingerprint });
    };
    if config.replay_guard.contains(&session) {
        return Err(Untrusted::Replayed);
    }
    // Signed before the newest push of this key taken here: a recording.
    if config
        .signed_floor
        .iter()
        .any(|(k, t)| *k == signed.signer && signed.signed_at_us < *t)
    {
        return Err(Untrusted::Replayed);
    }
    let claim = wire::push_claim(session, a, &signed.signer, signed.signed_at_us);
    if !key.verify(&claim, &signed.signature()) {
        return Err(Untrusted::BadSignature);
    }
    if let Some(clock) = clock {
        let here = clock.unix_us(now);
        let skew = here.abs_diff(signed.signed_at_us);
        if skew > SIGNATURE_WINDOW.as_micros() as u64 {
            return Err(Untrusted::Stale {
                skew_secs: skew / 1_000_000,
            });
        }
    }
    Ok(())
}

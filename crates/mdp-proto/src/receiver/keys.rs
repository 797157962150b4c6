//! The receiver's side of an encrypted push (crate::crypto): its
//! ephemeral key for the session, the signed KEYREQ it repeats until the
//! sender's KEY arrives, the session key that KEY opens, and the feedback
//! key that seals what it says afterwards.
//!
//! **Invariants:** nothing of an encrypted push is used before the session
//! key opened it (DATA, FLUSH and DONE that do not open are dropped, not
//! decoded; an ANNOUNCE in clear only asks for the key; only opened
//! datagrams keep the session alive once the key is here); a KEY is taken only when it opens under the key agreed with
//! the ephemeral key the signed ANNOUNCE carries; the session key never
//! changes once taken.

use super::state::Session;
use super::Ctx;
use crate::auth::Sealer;
use crate::crypto::{self, Cipher, Ephemeral, Transcript};
use crate::wire::{Announce, Control, Encryption, KeyRequest, KeyWrap};
use std::time::{Duration, Instant};

/// Least time between two KEYREQs.
const KEY_REQUEST_INTERVAL: Duration = Duration::from_millis(50);

/// A receiver's encryption state in one session.
#[derive(Debug)]
pub(super) struct SessionKeys {
    enc: Encryption,
    /// The push's signer (bound into the agreement).
    sender_id: [u8; 32],
    eph: Ephemeral,
    /// Set once the KEY opened.
    pub(super) cipher: Option<Cipher>,
    /// Seals this receiver's feedback, once the KEY opened.
    pub(super) feedback: Option<Sealer>,
    last_request: Option<Instant>,
    /// When the session began.
    since: Instant,
}

impl SessionKeys {
    pub(super) fn new(
        now: Instant,
        enc: Encryption,
        sender_id: [u8; 32],
        eph_secret: [u8; 32],
    ) -> SessionKeys {
        SessionKeys {
            enc,
            sender_id,
            eph: Ephemeral::from_secret(eph_secret),
            cipher: None,
            feedback: None,
            last_request: None,
            since: now,
        }
    }

    /// What the session's ANNOUNCEs must keep saying.
    pub(super) fn announced(&self) -> &Encryption {
        &self.enc
    }
}

impl Session {
    /// True when this is an encrypted push whose key has not arrived.
    pub(super) fn awaiting_key(&self) -> bool {
        self.keys.as_ref().is_some_and(|k| k.cipher.is_none())
    }

    /// Asks for the session key (again), at most every
    /// [`KEY_REQUEST_INTERVAL`], while it has not arrived.
    pub(super) fn maybe_request_key(&mut self, now: Instant, cx: &mut Ctx) {
        let Some(keys) = self.keys.as_mut() else {
            return;
        };
        if keys.cipher.is_some()
            || keys
                .last_request
                .is_some_and(|t| now < t + KEY_REQUEST_INTERVAL)
        {
            return;
        }
        keys.last_request = Some(now);
        cx.stats.key_requests_sent += 1;
        cx.transmits.push_back(Control::KeyRequest(KeyRequest {
            node: cx.config.node,
            name: cx.config.name.clone(),
            receiver_eph: keys.eph.public(),
            signed: None, // signed as it goes out (poll_transmit)
        }));
    }

    /// An ANNOUNCE in clear in an encrypted push: anyone could have sent
    /// it with other timing, acknowledgements or data position, so only
    /// its signed fields count, and only to ask for the key (and, while
    /// the key has not come, as a sign that the push is alive, for at most
    /// [`crate::identity::SIGNATURE_WINDOW`]).
    pub(super) fn handle_clear_announce(&mut self, now: Instant, cx: &mut Ctx, a: &Announce) {
        if !self.awaiting_key() || !self.announces_this_push(a) {
            cx.stats.ignored += 1;
            return;
        }
        // A replayed ANNOUNCE keeps a receiver without the key waiting no
        // longer than a signature stays fresh; then the idle timeout ends it.
        let since = self.keys.as_ref().map_or(now, |k| k.since);
        if now.saturating_duration_since(since) < crate::identity::SIGNATURE_WINDOW {
            self.last_heard = now;
        }
        self.maybe_request_key(now, cx);
    }

    /// A KEY: when it is ours and opens, the push can be read from now on.
    pub(super) fn handle_key(&mut self, cx: &mut Ctx, k: &KeyWrap) {
        let Some(keys) = self.keys.as_mut() else {
            cx.stats.ignored += 1;
            return;
        };
        if k.node != cx.config.node || keys.cipher.is_some() {
            return;
        }
        let Some(identity) = cx.config.identity.as_ref() else {
            return;
        };
        let receiver_id = identity.public().to_bytes();
        let receiver_eph = keys.eph.public();
        let Some(shared) = keys.eph.agree(&keys.enc.sender_eph) else {
            cx.stats.auth_failed += 1;
            return;
        };
        let peer = crypto::derive(
            &shared,
            &Transcript {
                session: self.id,
                sender_eph: &keys.enc.sender_eph,
                receiver_eph: &receiver_eph,
                sender_id: &keys.sender_id,
                receiver_id: &receiver_id,
                node: cx.config.node,
                aead: keys.enc.aead,
            },
        );
        let Some(session_key) = crypto::unwrap(
            keys.enc.aead,
            &peer.kek,
            self.id,
            cx.config.node,
            &k.sealed_key,
            &k.tag,
        ) else {
            cx.stats.auth_failed += 1;
            return;
        };
        keys.cipher = Some(Cipher::new(keys.enc.aead, &session_key));
        keys.feedback = Some(Sealer::new(peer.feedback));
    }
}

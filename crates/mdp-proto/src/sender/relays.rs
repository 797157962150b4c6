//! Receivers behind relays (docs/PROTOCOL.md §5d): a relay is a receiver
//! of this push that passes it on to receivers of its own, and passes
//! their REGISTER and STATUS back here in RELAY messages, unchanged.
//!
//! A receiver behind a relay is tracked like any other, with the relay it
//! came through (`Peer::via`), except that:
//! - its echo is not a round trip of this sender's (it answered the
//!   relay's clock), so it is not measured, and what it holds does not
//!   make this sender skip anything (the relay needs every block);
//! - it is not polled or listed in FLUSH (it does not hear them);
//! - it is as alive as its relay: when the relay stops being active
//!   (confirmed, failed, dropped), every receiver behind it that is not
//!   final is dropped with it. A relay confirms only after each of its
//!   receivers' final word was acknowledged here, so one still active
//!   then was lost with it.
//!
//! **Invariant:** a relay speaks only for receivers no other relay and no
//! direct feedback claimed first, and with receivers known by key what it
//! passes on counts only when signed by the downstream receiver's own
//! listed key (peers.rs, `admitted`): a relay can withhold a receiver's
//! word, never forge it.

use super::*;
use crate::wire::{Relay, Relayed};

/// Relays the sender keeps track of, at most (each costs a look whenever
/// the push's progress is checked).
const MAX_RELAYS: usize = 256;

impl Sender {
    /// A RELAY that passed authentication and admission.
    pub(super) fn handle_relay(&mut self, now: Instant, r: Relay) {
        // An encrypted push is never passed on (a relay does not hold its
        // key agreement), and its feedback counts only under the name its
        // sealing key proved: a RELAY would carry words no key vouches for.
        // The relay itself must be a receiver heard directly that has not
        // finished (once it confirmed, it has passed up all it will), and
        // the relays known are bounded.
        let relay_ok = self.keys.is_none()
            && self.peers.get(&r.node).is_some_and(|p| {
                p.registered
                    && p.via.is_none()
                    && matches!(p.state, PeerState::Active | PeerState::Dropped(_))
            })
            && (self.relays.contains_key(&r.node) || self.relays.len() < MAX_RELAYS);
        // The message counts as word from the relay too.
        if !relay_ok || !self.touch_peer(now, r.node, "", Echo::default()) {
            self.stats.ignored_received += 1;
            return;
        }
        let node = r.message.node();
        let claimed = self.peers.get(&node).map(|p| p.via);
        if node == r.node
            || self.relays.contains_key(&node)
            || claimed.is_some_and(|v| v != Some(r.node))
        {
            // Itself, another relay, or a receiver heard directly or
            // through another relay first.
            self.stats.ignored_received += 1;
            return;
        }
        self.stats.relayed_received += 1;
        self.relays.insert(r.node, false);
        let message = match r.message {
            Relayed::Register(mut m) => {
                m.echo = Echo::default();
                m.have.clear();
                m.have_blocks.clear();
                Control::Register(m)
            }
            Relayed::Status(mut m) => {
                m.echo = Echo::default();
                Control::Status(m)
            }
        };
        let register = matches!(message, Control::Register(_));
        // Handled as the receiver's own word, then marked as behind the
        // relay (touching a receiver dropped with its relay makes it
        // active again, and unmarks it: it is marked again here).
        self.apply_feedback(now, message);
        if let Some(p) = self.peers.get_mut(&node) {
            p.via = Some(r.node);
            // The relay repeats the word until acknowledged: a REGISTER is
            // acknowledged again each time (a receiver's own repeats stop
            // at the first acknowledgement; a relay's may cross it).
            if register && p.registered {
                self.acks.push(node, AckState::Registered);
            }
        }
    }

    /// Drops the receivers still active behind each relay that stopped
    /// being active (once per relay, until it is heard again). O(relays),
    /// and O(receivers) when a relay has just stopped.
    pub(super) fn drop_orphans(&mut self, now: Instant) {
        let mut gone = Vec::new();
        for (relay, done) in self.relays.iter_mut() {
            if !*done
                && self
                    .peers
                    .get(relay)
                    .is_none_or(|p| p.state != PeerState::Active)
            {
                *done = true;
                gone.push(*relay);
            }
        }
        for relay in gone {
            for (node, p) in self.peers.iter_mut() {
                if p.via == Some(relay) && p.state == PeerState::Active {
                    peers::drop_silent(
                        now,
                        *node,
                        p,
                        &mut self.tally,
                        &mut self.cc,
                        &mut self.events,
                    );
                }
            }
        }
    }

    /// The name of the relay `node` came through, if any.
    pub(super) fn relay_name(&self, node: &NodeId) -> Option<String> {
        let via = self.peers.get(node)?.via?;
        Some(
            self.peers
                .get(&via)
                .map_or_else(String::new, |p| p.name.clone()),
        )
    }
}

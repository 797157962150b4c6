//! A relay's upstream side (docs/PROTOCOL.md §5d): what the relay's own
//! receivers said (their REGISTER and STATUS, handed over by the relay's
//! sender) goes to the origin in RELAY messages, unchanged, and is
//! repeated with each ANNOUNCE or FLUSH until the origin acknowledges it;
//! and what the relay's sender needs to announce the same push
//! ([`RelaySource`]).
//!
//! **Invariant:** at most [`MAX_PASSED_ON`] receivers' words are held,
//! one (the latest that matters) per receiver; a final STATUS is never
//! replaced by an earlier kind of word; a word goes up at once only when
//! it is new or changed (a receiver's repeats, which differ only in their
//! echo, are not passed up each time), and a receiver's word at most once
//! per round of the origin's (the rest go with the round's repeats); the
//! count of unacknowledged words is kept, not recounted.

use super::*;
use crate::layout::Coding;
use crate::manifest::Manifest;
use crate::wire::{Ack, AckState, Relay, Relayed};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Receivers behind one relay whose word it holds, at most (beyond, a
/// receiver's word is not passed up, and counted: it is reported dropped
/// with the relay).
pub const MAX_PASSED_ON: usize = 4096;

/// How long a relay whose own push ended waits for the origin to
/// acknowledge every word it passed up before it confirms anyway: a word
/// the origin ignores is never acknowledged, and a relay must not hold
/// the origin until its timeout for it (a receiver whose word did not
/// arrive is reported dropped with the relay).
pub const RELAY_ACK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Words repeated per ANNOUNCE or FLUSH of the origin, at most.
const REPEATS_PER_ROUND: usize = 8;

/// Most bytes of a RELAY's message: it must fit one datagram on any
/// network the push crosses, with the headers of a tunnel.
pub const MAX_RELAY_MESSAGE: usize = 1200;

/// What a relay's sender announces: the origin's push as it is.
#[derive(Clone, Debug)]
pub struct RelaySource {
    /// The origin's session id.
    pub session: SessionId,
    /// Its coding parameters.
    pub coding: Coding,
    /// Its manifest (whose hash the origin announced).
    pub manifest: Arc<Manifest>,
    /// The manifest's BLAKE3 hash, as announced.
    pub manifest_hash: [u8; 32],
    /// The origin's signature (`None`: an unsigned push taken with
    /// `--insecure`).
    pub signature: Option<wire::PushSignature>,
    /// The push asks for `--delete`.
    pub delete: bool,
    /// The push is a dry run.
    pub dry_run: bool,
    /// The push is encrypted: a relay cannot pass it on (it does not hold
    /// the origin's key agreement).
    pub encrypted: bool,
}

/// The receivers' words held for the origin.
#[derive(Debug, Default)]
pub(super) struct PassedOn {
    entries: BTreeMap<NodeId, Word>,
    /// Entries not acknowledged.
    unacked: usize,
    /// Rounds of repeats so far (one per ANNOUNCE or FLUSH of the origin).
    round: u64,
    /// Where the next round of repeats starts (a node id).
    next: u64,
}

#[derive(Debug)]
struct Word {
    message: Relayed,
    acked: bool,
    /// The round in which it last went up at once: a word that changes
    /// again within a round waits for the round's repeats (a host that
    /// alternates two words cannot make the relay send one RELAY per
    /// datagram it sends).
    sent_round: Option<u64>,
}

/// True when `m` is a receiver's last word: a STATUS that confirms.
fn is_final(m: &Relayed) -> bool {
    matches!(m, Relayed::Status(s) if s.complete)
}

/// True when `a` and `b` say the same but for their echo (a receiver's
/// repeats carry a fresh one each time).
fn same_word(a: &Relayed, b: &Relayed) -> bool {
    match (a, b) {
        (Relayed::Register(x), Relayed::Register(y)) => {
            wire::Register {
                echo: y.echo,
                ..x.clone()
            } == *y
        }
        (Relayed::Status(x), Relayed::Status(y)) => {
            wire::Status {
                echo: y.echo,
                ..x.clone()
            } == *y
        }
        _ => false,
    }
}

/// What keeping a word came to.
#[derive(Debug, PartialEq, Eq)]
enum Kept {
    /// New or changed: it goes up now.
    Changed,
    /// As held already.
    Same,
    /// Not kept (an earlier kind after a final word, or no room).
    Refused,
}

impl PassedOn {
    /// Words the origin has not acknowledged.
    pub(super) fn pending(&self) -> usize {
        self.unacked
    }

    /// Keeps `message` as its receiver's word.
    fn keep(&mut self, message: Relayed) -> Kept {
        let node = message.node();
        let full = self.entries.len() >= MAX_PASSED_ON;
        match self.entries.get_mut(&node) {
            Some(w) if is_final(&w.message) && !is_final(&message) => Kept::Refused,
            Some(w) if same_word(&w.message, &message) => Kept::Same,
            Some(w) => {
                if w.acked {
                    w.acked = false;
                    self.unacked += 1;
                }
                w.message = message;
                if w.sent_round == Some(self.round) {
                    Kept::Same
                } else {
                    w.sent_round = Some(self.round);
                    Kept::Changed
                }
            }
            None if full => Kept::Refused,
            None => {
                self.entries.insert(
                    node,
                    Word {
                        message,
                        acked: false,
                        sent_round: Some(self.round),
                    },
                );
                self.unacked += 1;
                Kept::Changed
            }
        }
    }

    /// The origin acknowledged `ack`: a registration acknowledges any word
    /// but a final one, a confirmation the final one.
    pub(super) fn acked(&mut self, ack: &Ack) {
        if let Some(w) = self.entries.get_mut(&ack.node) {
            let fin = is_final(&w.message);
            if (ack.state == AckState::Confirmed) == fin && !w.acked {
                w.acked = true;
                self.unacked -= 1;
            }
        }
    }

    /// Up to [`REPEATS_PER_ROUND`] unacknowledged words, rotating.
    fn round(&mut self) -> Vec<Relayed> {
        self.round += 1;
        let mut out = Vec::new();
        if self.unacked == 0 {
            return out;
        }
        let next = NodeId(self.next);
        let after = self.entries.range(next..).chain(self.entries.range(..next));
        let mut last = None;
        for (node, w) in after {
            if out.len() == REPEATS_PER_ROUND {
                break;
            }
            if !w.acked {
                out.push(w.message.clone());
                last = Some(*node);
            }
        }
        if let Some(NodeId(n)) = last {
            self.next = n.wrapping_add(1);
        }
        out
    }
}

impl Session {
    /// The relay's sender heard `message` from one of its receivers.
    pub(super) fn pass_on(&mut self, cx: &mut Ctx, message: Relayed) {
        let relay = Relay {
            node: cx.config.node,
            message,
        };
        let mut body = Vec::new();
        wire::write_control(&mut body, self.id, &Control::Relay(relay.clone()));
        if body.len() > COMMON_HEADER_LEN + MAX_RELAY_MESSAGE {
            // A REGISTER with long have-lists: the receiver shows up
            // when it confirms.
            cx.stats.relay_words_dropped += 1;
            return;
        }
        match self.passed_on.keep(relay.message.clone()) {
            Kept::Changed => cx.transmits.push_back(Control::Relay(relay)),
            Kept::Same => {}
            Kept::Refused => cx.stats.relay_words_dropped += 1,
        }
    }

    /// An ANNOUNCE or FLUSH of the origin came: words not acknowledged yet
    /// go again.
    pub(super) fn repeat_passed_on(&mut self, cx: &mut Ctx) {
        for message in self.passed_on.round() {
            cx.transmits.push_back(Control::Relay(Relay {
                node: cx.config.node,
                message,
            }));
        }
    }

    /// What a relay's sender needs to announce this push, once the
    /// manifest is here.
    pub(super) fn relay_source(&self) -> Option<RelaySource> {
        Some(RelaySource {
            session: self.id,
            coding: self.coding,
            manifest: self.manifest.clone()?,
            manifest_hash: self.manifest_hash,
            signature: self.signature,
            delete: self.delete,
            dry_run: self.dry_run,
            encrypted: self.keys.is_some(),
        })
    }
}

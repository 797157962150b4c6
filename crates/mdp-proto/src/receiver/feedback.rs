//! What the receiver tells the sender and hears back about it: REGISTER
//! (with the files and blocks already here) until acknowledged, STATUS
//! (progress, and the confirmation that ends a session), CONGESTION reports,
//! the DATA loss estimate NACKs carry, and the timing and acknowledgements
//! of the sender's ANNOUNCE and FLUSH.
//!
//! **Invariant:** a REGISTER goes out only once the manifest is known and the
//! caller said which files are here, and never more often than every
//! [`REGISTER_INTERVAL`]; the have-lists it carries are ascending, disjoint
//! `(first, count)` ranges (see [`crate::ranges`]).

use super::state::{Phase, Session};
use super::Ctx;
use crate::ids::ObjectId;
use crate::limits::MAX_STATUS_OBJECTS;
use crate::ranges::Range;
use crate::wire::{
    self, AckState, Announce, Congestion, Control, Echo, Flush, Register, Status, Timing,
};
use std::time::{Duration, Instant};

const REGISTER_INTERVAL: Duration = Duration::from_millis(50);
/// Most REGISTERs one registration sends (each with up to
/// [`crate::limits::MAX_HAVE_RANGES`] ranges of files already held); a receiver whose
/// files fall into more ranges reports only the first ones, and is sent the
/// rest (which it then recognises as already held).
const MAX_HAVE_CHUNKS: usize = 16;

/// This receiver's registration with the sender.
#[derive(Debug, Default)]
pub(super) struct Registration {
    /// The files already here ([`super::Receiver::handle_present`]), as
    /// ranges of objects; `None` until the caller said (registration waits
    /// for it).
    pub(super) have: Option<Vec<Range>>,
    /// Blocks of files held in part ([`super::Receiver::handle_partial`]),
    /// as `(object, first block, count)`.
    pub(super) have_blocks: Vec<(u32, u32, u32)>,
    /// The sender acknowledged it.
    pub(super) acked: bool,
    /// When it last went out.
    pub(super) sent: Option<Instant>,
}

impl Registration {
    /// The caller said which files are here.
    pub(super) fn present_known(&self) -> bool {
        self.have.is_some()
    }
}

/// Estimates the DATA loss rate from sequence numbers, over epochs of
/// [`LossMeter::EPOCH`] sequence numbers, smoothed.
#[derive(Debug, Default)]
pub(super) struct LossMeter {
    base: Option<u32>,
    highest: u32,
    received: u32,
    estimate: f64,
}

impl LossMeter {
    const EPOCH: u32 = 256;

    pub(super) fn on_seq(&mut self, seq: u32) {
        let Some(base) = self.base else {
            self.base = Some(seq);
            self.highest = seq;
            self.received = 1;
            return;
        };
        let ahead = seq.wrapping_sub(base);
        if ahead >= 1 << 31 {
            return; // from before this epoch: reordered or duplicated
        }
        self.received += 1;
        if seq.wrapping_sub(self.highest) < 1 << 31 {
            self.highest = seq;
        }
        // Wrapping: right after an epoch `highest` is `base - 1`, and a
        // forged sequence number may leave it there.
        let span = self.highest.wrapping_sub(base).wrapping_add(1);
        if span >= Self::EPOCH {
            let loss = 1.0 - (self.received as f64 / span as f64).min(1.0);
            self.estimate = 0.75 * self.estimate + 0.25 * loss;
            self.base = Some(self.highest.wrapping_add(1));
            self.received = 0;
        }
    }

    /// In 1/65536 units.
    pub(super) fn wire(&self) -> u16 {
        (self.estimate * 65535.0).clamp(0.0, 65535.0) as u16
    }
}

impl Session {
    /// An ANNOUNCE of our session.
    pub(super) fn handle_announce(&mut self, now: Instant, cx: &mut Ctx, a: &Announce) {
        if !self.announces_this_push(a) {
            // A session's parameters never change: this one is forged or broken.
            cx.stats.malformed += 1;
            return;
        }
        self.handle_timing(now, cx, &a.timing, &a.acked);
        // Polled during the data: a STATUS says this receiver is alive.
        if self.registration.acked && a.poll.contains(&cx.config.node) {
            self.status_due = true;
        }
        self.repeat_passed_on(cx);
        self.advance_sender_pos(now, cx, a.data_pos);
        self.maybe_request_key(now, cx);
        self.maybe_register(now, cx);
    }

    /// True when `a` repeats what the session's first ANNOUNCE said of
    /// the push (its signed fields).
    pub(super) fn announces_this_push(&self, a: &Announce) -> bool {
        self.coding.symbol_size == a.symbol_size
            && self.coding.block_k == a.block_k
            && self.coding.parity == a.parity
            && self.manifest_len == a.manifest_len
            && self.manifest_hash == a.manifest_hash
            && self.object_count == a.object_count
            && self.keys.as_ref().map(|k| k.announced()) == a.enc.as_ref()
    }

    /// A FLUSH: the sender sent every block; answer when it asks.
    pub(super) fn handle_flush(&mut self, now: Instant, cx: &mut Ctx, f: &Flush) {
        self.handle_timing(now, cx, &f.timing, &f.acked);
        self.flushed = true;
        self.repeat_passed_on(cx);
        let listed = f.awaiting.contains(&cx.config.node);
        let unconfirmed = matches!(self.phase, Phase::Confirming { acked: false });
        if listed || unconfirmed || !self.registration.acked {
            self.status_due = true;
        }
        self.maybe_arm_nack(now, cx);
    }

    fn handle_timing(&mut self, now: Instant, cx: &Ctx, timing: &Timing, acked: &[wire::Ack]) {
        self.timing = *timing;
        self.last_ts = Some((timing.ts_us, now));
        for a in acked {
            if a.node == cx.config.node {
                self.registration.acked = true;
                if a.state == AckState::Confirmed {
                    if let Phase::Confirming { acked } = &mut self.phase {
                        *acked = true;
                    }
                }
            } else {
                self.passed_on.acked(a);
            }
        }
    }

    /// The echo of the sender's latest timestamp, for its round-trip time.
    pub(super) fn echo(&self, now: Instant) -> Echo {
        match self.last_ts {
            Some((ts, at)) => Echo {
                ts_us: ts,
                delay_us: now.saturating_duration_since(at).as_micros() as u32,
            },
            None => Echo::default(),
        }
    }

    /// REGISTER once the manifest is here (so a sender that waits for N
    /// registrations starts when N receivers can use its data), again until
    /// the sender acknowledges it.
    pub(super) fn maybe_register(&mut self, now: Instant, cx: &mut Ctx) {
        let echo = self.echo(now);
        let reg = &mut self.registration;
        let due = reg
            .sent
            .is_none_or(|t| now.saturating_duration_since(t) >= REGISTER_INTERVAL);
        let manifest_known = !matches!(self.phase, Phase::Joining(_));
        let Some(have) = &reg.have else {
            return;
        };
        if !manifest_known || reg.acked || !due {
            return;
        }
        reg.sent = Some(now);
        // All chunks of the have-list, each time: the sender counts us
        // as registered at the last one (`more == false`).
        let m = crate::limits::MAX_HAVE_RANGES;
        let chunks = have
            .len()
            .div_ceil(m)
            .max(reg.have_blocks.len().div_ceil(m))
            .clamp(1, MAX_HAVE_CHUNKS);
        for i in 0..chunks {
            let part = |len: usize| (i * m).min(len)..((i + 1) * m).min(len);
            cx.transmits.push_back(Control::Register(Register {
                node: cx.config.node,
                name: cx.config.name.clone(),
                echo,
                have: have[part(have.len())].to_vec(),
                have_blocks: reg.have_blocks[part(reg.have_blocks.len())].to_vec(),
                more: i + 1 < chunks,
                signed: None,
            }));
        }
    }

    /// The STATUS to send now.
    pub(super) fn status(&self, now: Instant, cx: &Ctx) -> Status {
        let missing = if self.manifest_known() {
            self.objects
                .iter()
                .enumerate()
                .skip(1)
                .filter(|(_, o)| o.is_pending())
                .take(MAX_STATUS_OBJECTS)
                .map(|(i, _)| ObjectId(i as u32))
                .collect()
        } else {
            Vec::new()
        };
        Status {
            node: cx.config.node,
            name: cx.config.name.clone(),
            echo: self.echo(now),
            complete: self.complete(),
            verified: self.verified,
            missing,
            failed: self
                .failed
                .iter()
                .take(MAX_STATUS_OBJECTS)
                .copied()
                .collect(),
            hook: self.hook,
            signed: None,
        }
    }

    /// Feeds a DATA packet to the loss and congestion meters, and queues a
    /// CONGESTION report when the meter has one.
    pub(super) fn meter_data(&mut self, now: Instant, cx: &mut Ctx, seq: u32, len: usize) {
        self.loss.on_seq(seq);
        if let Some(c) = self.congestion.on_data(now, seq, len) {
            cx.stats.congestion_sent += 1;
            cx.transmits.push_back(Control::Congestion(Congestion {
                node: cx.config.node,
                echo: self.echo(now),
                delivered_bps: c.delivered_bps,
                loss: c.loss,
                floor: c.floor,
                first_seq: c.first_seq,
                last_seq: c.last_seq,
                runs: c.runs,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forged_sequence_number_right_after_an_epoch_is_harmless() {
        let mut m = LossMeter::default();
        for seq in 0..LossMeter::EPOCH {
            m.on_seq(seq);
        }
        // Half the sequence space ahead of the new epoch's start: it used
        // to overflow the span (a panic where overflows are checked).
        m.on_seq(LossMeter::EPOCH + (1 << 31) - 1);
        m.on_seq(LossMeter::EPOCH);
        assert_eq!(m.wire(), 0);
    }

    #[test]
    fn loss_meter_converges_on_the_loss_rate() {
        let mut m = LossMeter::default();
        // Every tenth datagram lost, starting near the wrap-around.
        for i in 0..20_000u32 {
            if i % 10 != 3 {
                m.on_seq(i.wrapping_add(u32::MAX - 5000));
            }
        }
        assert!((m.estimate - 0.1).abs() < 0.01, "estimate {}", m.estimate);
    }
}

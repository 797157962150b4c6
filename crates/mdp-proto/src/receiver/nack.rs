//! NACK scheduling (NORM, RFC 5740): which blocks to ask for and when. A
//! block the sender has passed (or every block, once it flushed) that is
//! still incomplete becomes a candidate; a NACK is armed after a random
//! back-off of up to `K * GRTT`, and carries only the blocks that were
//! candidates when its back-off began. A NACK overheard from another
//! receiver asking for as much or more, or a repair symbol of the block,
//! holds ours off for a while; so does our own NACK, for as long as its
//! repair should take.
//!
//! **Invariant:** at most one NACK is armed at a time (`Session::nack_at`),
//! a block in hold-off is never asked for before the hold-off ends, and no
//! NACK goes to a sender silent for [`super::SENDER_GONE`]. Other
//! receivers' NACKs cannot be authenticated here (in an encrypted push
//! each is sealed with its sender's own key), so what they can do is
//! bounded: a block is held off by them at most [`MAX_OTHERS_HOLDS`]
//! times, each time for at most [`MAX_OTHERS_HOLD`], however many NACKs
//! come and whatever they say.

use super::state::Session;
use super::{Ctx, SENDER_GONE};
use crate::ids::{BlockKey, BlockNumber, ObjectId};
use crate::limits::{DATA_HEADER_LEN, MAX_NACK_ENTRIES};
use crate::rng::Rng;
use crate::wire::{Control, Nack, NackEntry};
use std::time::{Duration, Instant};

const MIN_GRTT: Duration = Duration::from_millis(1);
/// Smallest group size the NACK back-off assumes.
const MIN_GROUP_ESTIMATE: u32 = 32;
/// Most blocks looked at in one NACK scan.
const MAX_SCAN: usize = 8192;
/// Longest one hold-off by other receivers' NACKs lasts, from its start,
/// however often they repeat.
pub(super) const MAX_OTHERS_HOLD: Duration = Duration::from_secs(1);
/// Most hold-offs by other receivers' NACKs one block waits out; after
/// them, this receiver asks for the block whatever others say.
pub(super) const MAX_OTHERS_HOLDS: u8 = 3;

/// The back-off factor `K` for a group of `group_size` receivers, at most
/// `cap`: 1 for a lone receiver, one more per doubling of the group
/// (2 for 2–3, 3 for 4–7, …, 6 from 32 on).
///
/// The back-off exists to suppress duplicate NACKs in large groups. In a
/// small one there are few NACKs to suppress (with losses independent per
/// receiver, hardly any: each asks for its own), while every GRTT of wait
/// keeps incomplete blocks in memory and delays the repair. A lone
/// receiver still waits up to one GRTT, so that one NACK covers the blocks
/// of a round trip instead of one NACK going out per block.
pub fn backoff_factor_for(group_size: u32, cap: u32) -> u32 {
    let doublings = 31 - group_size.max(1).leading_zeros();
    (1 + doublings).min(cap)
}

/// The blocks a NACK may ask for: those behind `horizon` (the sender's
/// position; `None` once it flushed: all) and out of any hold-off at `at`.
#[derive(Clone, Copy, Debug)]
pub(super) struct NackView {
    at: Instant,
    horizon: Option<BlockKey>,
}

/// RFC 5401's truncated exponential back-off: most receivers wait close to
/// `max`, a few much less, so the first NACK usually suppresses the rest.
///
/// The group size is floored at [`MIN_GROUP_ESTIMATE`]: overestimating it
/// only delays NACKs a little, underestimating it floods the sender.
fn random_backoff(rng: &mut Rng, max: Duration, group_size: u32) -> Duration {
    let lambda = (group_size.max(MIN_GROUP_ESTIMATE) as f64).ln() + 1.0;
    let u = rng.unit();
    let x = ((lambda.exp() - 1.0) * u + 1.0).ln() / lambda;
    max.mul_f64(x.clamp(0.0, 1.0))
}

impl Session {
    pub(super) fn grtt(&self) -> Duration {
        Duration::from_micros(self.timing.grtt_us as u64).max(MIN_GRTT)
    }

    pub(super) fn backoff_max(&self, cx: &Ctx) -> Duration {
        let group = self.timing.group_size.max(cx.config.backoff_group_floor);
        self.grtt() * backoff_factor_for(group, cx.config.backoff_factor)
    }

    /// How long to wait for the repair of `cumulative` symbols asked for in
    /// one NACK before asking again.
    fn repair_wait(&self, cx: &Ctx, cumulative: u32) -> Duration {
        let bits = (self.coding.symbol_size as u64 + DATA_HEADER_LEN as u64) * 8;
        let per_symbol =
            Duration::from_secs_f64(bits as f64 / self.timing.rate_bps.max(8000) as f64);
        self.backoff_max(cx) + self.grtt() * 3 + per_symbol * cumulative
    }

    /// The NACK timers that are due.
    pub(super) fn on_timeout(&mut self, now: Instant, cx: &mut Ctx) {
        if self.recheck_at.is_some_and(|t| now >= t) {
            self.recheck_at = None;
            self.maybe_arm_nack(now, cx);
        }
        if let Some((_, view)) = self.nack_at.filter(|(t, _)| now >= *t) {
            self.nack_at = None;
            self.send_nack(now, cx, view);
        }
    }

    /// The sender says every block before `pos` was sent.
    pub(super) fn advance_sender_pos(&mut self, now: Instant, cx: &mut Ctx, pos: (u32, u32)) {
        let pos = BlockKey::new(pos.0, pos.1);
        if pos > self.sender_pos && pos.object <= self.object_count + 1 {
            let old = std::mem::replace(&mut self.sender_pos, pos);
            // Only the blocks passed just now are new candidates: the
            // others were looked at before (and are timed or held off), so
            // do not rescan them on every block boundary.
            if self.nack_at.is_none() && self.incomplete_between(old, pos) {
                self.maybe_arm_nack(now, cx);
            }
        }
    }

    /// True when a known block in `[from, to)` is incomplete (or when the
    /// range is too long to look at cheaply).
    fn incomplete_between(&self, from: BlockKey, to: BlockKey) -> bool {
        let mut looked = 0;
        let last = to.object.min(self.objects.len().saturating_sub(1) as u32);
        for o in from.object..=last {
            let obj = &self.objects[o as usize];
            if obj.state != super::collect::ObjState::Receiving {
                continue;
            }
            let first = if o == from.object { from.block } else { 0 };
            let end = if o == to.object {
                to.block.min(obj.blocks)
            } else {
                obj.blocks
            };
            for b in first.max(obj.first_missing)..end {
                looked += 1;
                if looked > 64 || !obj.is_done(b) {
                    return true;
                }
            }
        }
        false
    }

    /// Another receiver's NACK (or our own, looped back): it may hold ours
    /// off.
    pub(super) fn handle_other_nack(&mut self, now: Instant, cx: &mut Ctx, n: &Nack) {
        if n.node == cx.config.node {
            // Our own NACK, looped back by the kernel.
            cx.stats.ignored += 1;
            return;
        }
        let mut cumulative = 0u32;
        let mut holds = Vec::new();
        for e in &n.entries {
            cumulative += e.need as u32;
            let key = BlockKey::new(e.object.0, e.block.0);
            let Some(obj) = self.objects.get(key.object as usize) else {
                continue;
            };
            if key.block >= obj.blocks
                || obj.is_done(key.block)
                || obj.state != super::collect::ObjState::Receiving
            {
                continue;
            }
            let partial = self.partial.get(&key);
            let mine = match partial {
                Some(p) => p.need(),
                None => self.coding.block_k(obj.size, e.block),
            };
            // Theirs names source symbols: the sender may resend just
            // those, which covers us only if we lack no other.
            let covered = e.missing.is_empty()
                || partial
                    .and_then(|p| p.missing_sources())
                    .is_some_and(|m| m.iter().all(|i| e.missing.contains(i)));
            // A need a little above theirs is suppressed too: with many
            // receivers another round follows anyway (someone loses a repair
            // symbol), and it carries our remainder. Widened: a forged
            // `need` near `u16::MAX` must not overflow.
            let need = e.need as u32;
            if covered && mine as u32 <= need + need / 4 {
                holds.push((key, now + self.repair_wait(cx, cumulative)));
            }
        }
        for (key, until) in holds {
            let held = self.holdoff.get(&key).is_some_and(|&t| t > now);
            let round = self.others_holds.entry(key).or_insert((now, 0));
            if !held {
                if round.1 >= MAX_OTHERS_HOLDS {
                    continue;
                }
                *round = (now, round.1 + 1);
                cx.stats.nack_entries_suppressed += 1;
            }
            let until = until.min(round.0 + MAX_OTHERS_HOLD);
            let entry = self.holdoff.entry(key).or_insert(until);
            *entry = (*entry).max(until);
        }
    }

    /// What NACKing would ask for now.
    fn view_now(&self, now: Instant) -> NackView {
        NackView {
            at: now,
            horizon: (!self.flushed).then_some(self.sender_pos),
        }
    }

    /// Blocks to ask for as of `view`, with how many symbols each needs.
    /// Also returns the earliest hold-off that kept a block out.
    fn nack_candidates(
        &self,
        cx: &Ctx,
        view: NackView,
        max: usize,
    ) -> (Vec<NackEntry>, Option<Instant>) {
        let mut out = Vec::new();
        let mut earliest_hold: Option<Instant> = None;
        let mut scanned = 0;
        let mut budget = cx
            .config
            .buffer_bytes
            .saturating_sub(self.buffered + cx.config.buffer_gauge.bytes());
        let t = self.coding.symbol_size as usize;
        let first = self.first_receiving as usize;
        let mut named_left = crate::limits::MAX_NACK_MISSING_TOTAL;
        // The sender resends named sources only to a lone receiver.
        let lone = self.timing.group_size <= 1;
        'objects: for (o, obj) in self.objects.iter().enumerate().skip(first) {
            if obj.state != super::collect::ObjState::Receiving {
                continue;
            }
            let o = o as u32;
            for b in obj.first_missing..obj.blocks {
                let key = BlockKey::new(o, b);
                if view.horizon.is_some_and(|h| key >= h) {
                    break 'objects;
                }
                scanned += 1;
                if scanned > MAX_SCAN || out.len() >= max {
                    break 'objects;
                }
                if obj.is_done(b) {
                    continue;
                }
                if let Some(&until) = self.holdoff.get(&key) {
                    if until > view.at {
                        earliest_hold = Some(earliest_hold.map_or(until, |e| e.min(until)));
                        continue;
                    }
                }
                let mut missing = Vec::new();
                let need = match self.partial.get(&key) {
                    Some(p) => {
                        if let Some(m) = lone.then(|| p.missing_sources()).flatten() {
                            if m.len() <= named_left {
                                named_left -= m.len();
                                missing = m;
                            }
                        }
                        p.need()
                    }
                    None => {
                        let k = self.coding.block_k(obj.size, BlockNumber(b));
                        // Ask only for blocks we have room to collect.
                        let bytes = k as usize * t;
                        if bytes > budget {
                            continue;
                        }
                        budget -= bytes;
                        k
                    }
                };
                out.push(NackEntry {
                    object: ObjectId(o),
                    block: BlockNumber(b),
                    need,
                    missing,
                });
            }
        }
        (out, earliest_hold)
    }

    /// Arms a NACK if none is armed and a block is a candidate now;
    /// otherwise a recheck for when the earliest hold-off ends.
    pub(super) fn maybe_arm_nack(&mut self, now: Instant, cx: &mut Ctx) {
        if self.nack_at.is_some() || self.sender_gone(now) {
            return;
        }
        let view = self.view_now(now);
        let (candidates, hold) = self.nack_candidates(cx, view, 1);
        if candidates.is_empty() {
            if let Some(h) = hold {
                self.recheck_at = Some(self.recheck_at.map_or(h, |r| r.min(h)));
            }
            return;
        }
        let max = self.backoff_max(cx);
        let delay = random_backoff(&mut cx.rng, max, self.timing.group_size);
        self.nack_at = Some((now + delay, view));
    }

    /// True when the sender has said nothing for [`SENDER_GONE`] (and some
    /// round trips): NACKs would go nowhere. A whole group of receivers
    /// NACKing a dead sender until their idle timeout would flood the
    /// network; they wait quietly instead, and NACK again as soon as the
    /// sender is heard (any of its datagrams re-arms the timer).
    fn sender_gone(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_heard) >= SENDER_GONE + self.grtt() * 4
    }

    /// Sends a NACK for the blocks `view` allows, then arms the next.
    fn send_nack(&mut self, now: Instant, cx: &mut Ctx, view: NackView) {
        if self.sender_gone(now) {
            return;
        }
        // Only blocks that waited out this back-off: one that became a
        // candidate since (the sender moved on, or a hold-off ran out) gets
        // a back-off of its own below. Otherwise every receiver whose timer
        // happened to be running would ask for it at once, before anyone
        // could hear another's NACK and stay quiet.
        let (entries, _) = self.nack_candidates(cx, view, MAX_NACK_ENTRIES);
        if !entries.is_empty() {
            let mut cumulative = 0;
            for e in &entries {
                cumulative += e.need as u32;
                let until = now + self.repair_wait(cx, cumulative);
                self.holdoff
                    .insert(BlockKey::new(e.object.0, e.block.0), until);
            }
            cx.stats.nacks_sent += 1;
            cx.stats.nack_entries_sent += entries.len() as u64;
            cx.transmits.push_back(Control::Nack(Nack {
                node: cx.config.node,
                echo: self.echo(now),
                loss: self.loss.wire(),
                entries,
            }));
        }
        self.maybe_arm_nack(now, cx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_factor_grows_with_the_group_up_to_its_cap() {
        let k = |g| backoff_factor_for(g, 6);
        assert_eq!(
            [k(0), k(1), k(2), k(3), k(4), k(7), k(8)],
            [1, 1, 2, 2, 3, 3, 4]
        );
        assert_eq!([k(31), k(32), k(1000), k(u32::MAX)], [5, 6, 6, 6]);
        assert_eq!(backoff_factor_for(1000, 4), 4, "never above the cap");
        assert_eq!(backoff_factor_for(1, 0), 0, "a zero cap means no back-off");
    }

    #[test]
    fn backoff_stays_within_its_bound_and_mostly_near_it() {
        let mut rng = Rng::new(1);
        let max = Duration::from_millis(100);
        let mut late = 0;
        for _ in 0..10_000 {
            let d = random_backoff(&mut rng, max, 100);
            assert!(d <= max);
            if d > max / 2 {
                late += 1;
            }
        }
        // With a large group most receivers wait long, few answer early.
        assert!(late > 8_000, "only {late} of 10000 waited past half");
    }
}

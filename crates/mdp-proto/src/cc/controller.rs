//! The sender's side of rate control: the rate, its growth, the cuts the
//! receivers' reports make, and who limits the push (see the parent
//! module).

use super::*;
use crate::ids::NodeId;
use std::collections::HashMap;
use std::time::Instant;

/// A cut of the rate, from a report of a window wholly after the cut
/// before it.
#[derive(Clone, Debug)]
struct Cut {
    /// When it happened.
    at: Instant,
    /// The first DATA sequence number sent at the new rate.
    seq: u32,
    /// The receivers whose reports cut the rate since (at most
    /// [`CUT_NODES`]), each once.
    by: Vec<NodeId>,
}

/// A receiver's pace: the moving average ([`PACE_WEIGHT`]) of the
/// capacities it reports.
#[derive(Clone, Debug)]
struct Pace {
    mean: f64,
    /// Since when the average is below the minimum rate.
    below_since: Option<Instant>,
    /// Its last report.
    last: Instant,
}

/// Receivers a cut remembers: those beyond cut no further for it.
const CUT_NODES: usize = 64;

/// How the sender sets its rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateMode {
    /// Always this many bits per second.
    Fixed(u64),
    /// Adaptive within bounds, starting at `start`.
    Adaptive {
        /// Floor: receivers that cannot take it are dropped.
        min_bps: u64,
        /// Ceiling.
        max_bps: u64,
        /// First rate.
        start_bps: u64,
    },
}

impl RateMode {
    /// The rate at the start.
    pub fn initial(&self) -> u64 {
        match *self {
            RateMode::Fixed(r) => r,
            RateMode::Adaptive {
                min_bps,
                max_bps,
                start_bps,
            } => start_bps.clamp(min_bps, max_bps),
        }
    }

    /// The lowest rate the mode allows.
    pub fn min(&self) -> u64 {
        match *self {
            RateMode::Fixed(r) => r,
            RateMode::Adaptive { min_bps, .. } => min_bps,
        }
    }
}

/// The sender's side: the current rate and who limits it.
#[derive(Clone, Debug)]
pub struct RateController {
    mode: RateMode,
    rate: f64,
    startup: bool,
    last_step: Instant,
    /// The last cut: caused by a whole window after the one before it, or
    /// by a receiver that cut for that one, again, a [`DRAIN_SPAN`] later.
    cut: Option<Cut>,
    /// Each reporting receiver's pace, and since when it is below the
    /// minimum.
    paces: HashMap<NodeId, Pace>,
    /// Cuts per receiver (who paced the push).
    cuts: HashMap<NodeId, u32>,
    /// Lowest rate the controller set.
    lowest: f64,
    /// Bytes sent since the last step ([`RateController::on_sent`]).
    sent: u64,
    /// The rate actually sent in the last two steps that sent anything
    /// (bits per second; 0: not measured).
    achieved: [f64; 2],
    /// What the report behind the last cut said its receiver can take
    /// (bits per second), and who sent it: growth slows near it.
    capacity: Option<(NodeId, f64)>,
    /// The last report from a receiver that cut for the last cut and
    /// still takes less than the rate: growth waits [`HOLD`] after it.
    overrun: Option<Instant>,
}

impl RateController {
    /// A controller in `mode`, starting now.
    pub fn new(mode: RateMode, now: Instant) -> Self {
        let rate = mode.initial() as f64;
        RateController {
            mode,
            rate,
            startup: true,
            last_step: now,
            cut: None,
            paces: HashMap::new(),
            cuts: HashMap::new(),
            lowest: rate,
            sent: 0,
            achieved: [0.0; 2],
            capacity: None,
            overrun: None,
        }
    }

    /// The sender sent a datagram of `bytes`.
    pub fn on_sent(&mut self, bytes: usize) {
        self.sent += bytes as u64;
    }

    /// What a cut is a fraction of: the rate, or what was actually sent
    /// lately when that was less (the sender's CPU, its disk or the
    /// kernel held it below the rate). A cut of a rate the sender never
    /// reached would not slow it at all.
    fn cut_basis(&self) -> f64 {
        let sent = self.achieved[0].max(self.achieved[1]);
        if sent > 0.0 {
            self.rate.min(sent)
        } else {
            self.rate
        }
    }

    /// The rate now, in bits per second.
    pub fn rate_bps(&self) -> u64 {
        self.rate as u64
    }

    /// The mode.
    pub fn mode(&self) -> RateMode {
        self.mode
    }

    /// The lowest rate set so far.
    pub fn lowest_bps(&self) -> u64 {
        self.lowest as u64
    }

    /// When [`RateController::on_timer`] wants to run next (at the
    /// ceiling too: each step measures the rate actually sent).
    pub fn next_step(&self) -> Option<Instant> {
        match self.mode {
            RateMode::Fixed(_) => None,
            RateMode::Adaptive { .. } => Some(self.last_step + self.step()),
        }
    }

    /// Time between growth steps.
    fn step(&self) -> Duration {
        if self.startup {
            STARTUP_STEP
        } else {
            WINDOW
        }
    }

    /// Grows the rate once per window without a congestion report, and
    /// measures what was sent since the last step.
    /// `sending` is false while there is nothing to send (no evidence).
    pub fn on_timer(&mut self, now: Instant, sending: bool) {
        let RateMode::Adaptive { max_bps, .. } = self.mode else {
            return;
        };
        if now < self.last_step + self.step() {
            return;
        }
        let elapsed = (now - self.last_step).as_secs_f64();
        if sending && self.sent > 0 && elapsed > 0.0 {
            self.achieved = [self.achieved[1], self.sent as f64 * 8.0 / elapsed];
        }
        self.sent = 0;
        self.last_step = now;
        let quiet = self.cut.as_ref().is_none_or(|c| now >= c.at + WINDOW * 2)
            && self.overrun.is_none_or(|at| now >= at + HOLD);
        if sending && quiet {
            self.rate = self.grown().min(max_bps as f64);
        }
        // Receivers that stopped reporting are no longer slow: their pace
        // starts afresh from their next report.
        self.paces.retain(|_, p| now < p.last + WINDOW * 10);
    }

    /// The rate after one more step of growth: doubling before the first
    /// report; after it, [`GROWTH`] up to where a cut by the last measured
    /// capacity puts it ([`BACKOFF`] of it: a little below, so that a
    /// standing queue drains), [`PROBE_GROWTH`] from there up to
    /// [`PROBE_SPAN`] of it, and [`GROWTH`] again beyond.
    fn grown(&self) -> f64 {
        if self.startup {
            return self.rate * STARTUP_GROWTH;
        }
        match self.capacity {
            Some((_, c)) if self.rate < c * BACKOFF => (self.rate * GROWTH).min(c * BACKOFF),
            Some((_, c)) if self.rate < c * PROBE_SPAN => self.rate * PROBE_GROWTH,
            _ => self.rate * GROWTH,
        }
    }

    /// A receiver's congestion report. Returns its pace (bits per second)
    /// when that receiver has stayed below the minimum rate long enough to
    /// be dropped.
    ///
    /// `next_seq` is the DATA sequence number the sender will send next: a
    /// cut takes effect from it.
    pub fn on_report(
        &mut self,
        now: Instant,
        node: NodeId,
        c: &CongestionSample,
        next_seq: u32,
    ) -> Option<u64> {
        let RateMode::Adaptive {
            min_bps, max_bps, ..
        } = self.mode
        else {
            return None;
        };
        // What reached it, over what got through its random loss: what it
        // can take from us.
        let floor = from_wire(c.floor).min(0.5);
        let capacity = c.delivered_bps as f64 / (1.0 - floor);
        // What the report asks for, cutting at most to `max_cut` of the
        // rate (of what was sent, when that was less).
        let (rate, min, max) = (self.rate, min_bps as f64, max_bps as f64);
        let basis = self.cut_basis();
        let asked =
            |max_cut: f64| (capacity * BACKOFF).clamp((basis * max_cut).clamp(min, max), max);
        // Where the report's window lies against the last cut, by the DATA
        // sequence numbers the receiver saw: wholly before it (the overload
        // that cut already answered), across it (a mix of two rates:
        // ignored), or wholly after it (news).
        let deep = from_wire(c.loss) > DEEP_LOSS && c.runs >= DEEP_RUNS;
        // A cut older than a quarter of the sequence numbers is forgotten:
        // past half of them, windows after it would compare as before it.
        if self
            .cut
            .as_ref()
            .is_some_and(|cut| next_seq.wrapping_sub(cut.seq) > 1 << 30)
        {
            self.cut = None;
        }
        // A receiver that cut for the last cut and still takes less than
        // the rate holds growth, whether or not this report cuts again.
        let holds = capacity * BACKOFF < self.rate
            && self.cut.as_ref().is_some_and(|cut| cut.by.contains(&node));
        let target = match self.cut.as_mut() {
            Some(cut) if seq_before(c.last_seq, cut.seq) => {
                // Seen by another receiver, it may cut once more (several
                // overloaded receivers bring the rate down together). Seen
                // again by one that cut already, it is a backlog of its
                // older windows, reported at once, and says nothing new,
                // unless the last cut was more than a DRAIN_SPAN ago: then
                // what it measured (the pace at which its host drained
                // its socket, over at most that span) is from after the
                // cut, and its own queue delays its news (a host with a
                // CPU quota behind a deep socket buffer: half a second).
                // Targets are what the report measured, never a fraction
                // of one another: a backlog cannot take the rate below
                // what its slowest window reached.
                let again = cut.by.contains(&node);
                let heard = if again {
                    now < cut.at + DRAIN_SPAN
                } else {
                    cut.by.len() >= CUT_NODES
                };
                if heard {
                    rate
                } else {
                    let target = asked(if deep { DEEP_CUT } else { MAX_CUT });
                    if target < rate {
                        if again {
                            // A new cut: the windows it measured are
                            // answered, and the ones after it are news.
                            *cut = Cut {
                                at: now,
                                seq: next_seq,
                                by: vec![node],
                            };
                        } else {
                            cut.by.push(node);
                        }
                    }
                    target
                }
            }
            Some(cut) if seq_before(c.first_seq, cut.seq) => rate,
            _ => {
                // One report cuts at most to MAX_CUT of the rate: a window
                // that spanned a stall of the receiver (a decode, a disk
                // flush) reports far less than it can take, and must not
                // collapse the rate; a receiver that really is much slower
                // reports again from the next window. A window that lost
                // most of its datagrams, all through it, may cut deeper
                // (DEEP_CUT).
                let target = asked(if deep { DEEP_CUT } else { MAX_CUT });
                if target < rate {
                    self.cut = Some(Cut {
                        at: now,
                        seq: next_seq,
                        by: vec![node],
                    });
                }
                target
            }
        };
        if holds {
            self.overrun = Some(now);
        }
        if target < self.rate {
            *self.cuts.entry(node).or_default() += 1;
            self.capacity = Some((node, capacity.clamp(min, max)));
            self.rate = target;
            self.lowest = self.lowest.min(target);
            self.startup = false;
        }
        // No receiver takes more than it is sent: a forged or broken
        // report of a huge capacity counts as the rate (or the floor).
        let taken = capacity.min(self.rate.max(min_bps as f64));
        let pace = self.paces.entry(node).or_insert(Pace {
            mean: taken,
            below_since: None,
            last: now,
        });
        pace.mean += (taken - pace.mean) * PACE_WEIGHT;
        pace.last = now;
        if pace.mean < min_bps as f64 {
            let since = *pace.below_since.get_or_insert(now);
            if now >= since + SLOW_DROP_AFTER {
                let mean = pace.mean;
                self.paces.remove(&node);
                return Some(mean as u64);
            }
        } else {
            pace.below_since = None;
        }
        None
    }

    /// True while `node`'s pace is below the floor (it is dropped if that
    /// lasts [`SLOW_DROP_AFTER`]).
    pub fn below_floor(&self, node: NodeId) -> bool {
        self.paces
            .get(&node)
            .is_some_and(|p| p.below_since.is_some())
    }

    /// Forgets a receiver (dropped or gone).
    pub fn forget(&mut self, node: NodeId) {
        self.paces.remove(&node);
        if self.capacity.is_some_and(|(n, _)| n == node) {
            self.capacity = None;
        }
    }

    /// The receiver that cut the rate most often, with its cut count.
    pub fn limiting(&self) -> Option<(NodeId, u32)> {
        self.cuts
            .iter()
            .max_by_key(|(n, c)| (**c, std::cmp::Reverse(**n)))
            .map(|(n, c)| (*n, *c))
    }
}

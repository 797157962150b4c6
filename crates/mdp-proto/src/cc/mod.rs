//! Rate control: receivers detect congestion, the sender follows the
//! receiver that limits it (in the spirit of NORM-CC, RFC 5740 §5.5, and
//! TFMCC, RFC 4654: receiver-measured loss and rate, the sender tracking the
//! current limiting receiver), tuned for LANs.
//!
//! **Receivers** cut the DATA stream into windows of at least
//! [`WINDOW`] and [`WINDOW_MIN_PACKETS`] datagrams and measure, from the
//! DATA sequence numbers, the fraction lost in each. Loss that does not
//! depend on the rate (a lossy link) shows as a steady *floor*, tracked by
//! a slow average of the uncongested windows in which this host kept up
//! (no batch waited long in its socket); a window whose loss is well
//! above the floor (`loss > 1.5 × floor + 5 %`), in at least
//! [`MIN_LOSS_RUNS`] separate runs (or in any, when this host fell behind
//! in this window and the one before), means the sender is faster than this
//! receiver, its CPU or its path can take. The receiver then
//! sends a CONGESTION report with the rate that did reach it. The IO layer
//! also hands in how long each batch of datagrams waited in the socket's
//! queue (kernel timestamps): a window in which even the freshest batch
//! waited more than [`QUEUE_LIMIT`] is congested too. That signal comes
//! before any loss, while the socket buffer still absorbs the excess, which
//! on a host-limited receiver (CPU, disk) is where loss would start. Behind
//! such a queue the datagrams arrive at the sender's pace: the report then
//! carries the rate at which this host *took* them from its socket (the
//! read times the IO layer hands in with the delays), and, as its loss, the
//! share it could not keep up with, so that one report brings the sender
//! down to what the receiver sustains (every later report waits behind
//! the queue).
//!
//! **The sender** starts at its start rate and doubles it every
//! [`STARTUP_STEP`] (half a window) until the first report (a LAN is
//! reached in tens of milliseconds, not after a slow crawl), then grows by
//! [`GROWTH`] per window without a report, but by [`PROBE_GROWTH`] just
//! below the capacity the last cut measured (it dwells there instead of
//! overshooting it every few windows). A report cuts the rate to what
//! reached that receiver, corrected for its floor, times [`BACKOFF`], but
//! at most to [`MAX_CUT`] of the rate (of the rate actually sent in the
//! last steps, when the sender's CPU or disk held it below the rate: a cut
//! of a rate never reached would not slow it), or to [`DEEP_CUT`] when the window
//! lost more than half in many separate runs (a slow path, or start-up's
//! overshoot, not a stall). Reports carry the DATA sequence numbers their
//! window spans, and the sender remembers where its last cut took effect:
//! a window after it is news and may cut again; a window before it may cut
//! once more if it comes from another receiver (the same overload, seen
//! elsewhere), and from one that cut already only a [`DRAIN_SPAN`] after
//! the cut (sooner, it is a backlog of old windows it catches up on;
//! later, its drained rate measured its host after the cut, and its own
//! queue delays its news); a window across it measured two rates and is
//! ignored. A report from a receiver that cut for the last cut and still
//! takes less than the rate holds growth for [`HOLD`]. Without reports the rate never falls:
//! silence is no reason to collapse. The rate stays within `[min, max]`. A receiver
//! whose reports stay below `min` for [`SLOW_DROP_AFTER`] is dropped, so
//! one slow host cannot hold the others below the floor.
//!
//! Rooms: [`meter`] is the receiver's side ([`CongestionMeter`], and the
//! rate at which its host drains its socket), [`controller`] the sender's
//! ([`RateMode`], [`RateController`]); this module holds the constants and
//! the report ([`CongestionSample`]) they share.

use std::time::Duration;

pub mod controller;
pub mod meter;
#[cfg(test)]
mod tests;

pub use controller::{RateController, RateMode};
pub use meter::{CongestionMeter, DRAIN_SPAN};

/// Shortest measurement window, and the sender's growth step.
pub const WINDOW: Duration = Duration::from_millis(20);
/// Fewest DATA datagrams a window spans before it counts.
pub const WINDOW_MIN_PACKETS: u32 = 64;
/// A window in which even the freshest batch waited this long in the
/// receiver's socket queue is congested: the receiver falls behind. A
/// window in which any batch waited this long *fell behind*: its loss is
/// not the path's floor, and (after another such window) its loss in
/// bursts is this host's own full buffer.
pub const QUEUE_LIMIT: Duration = Duration::from_millis(4);
/// A standing queue into which datagrams arrive at less than this fraction
/// of the rate the receiver takes them out is draining: no congestion.
const DRAINING: f64 = 0.98;
/// Fewest separate runs of lost datagrams in a window that loses more
/// than the floor explains before that loss counts as congestion, unless
/// this host fell behind in this window and the one before (a batch waited
/// more than [`QUEUE_LIMIT`]: the burst is its own socket buffer
/// overflowing again, as a host under a CPU quota does in every period it
/// is held; once, it is a stall). Otherwise loss
/// that comes in few bursts (a whole GSO batch or GRO train dropped at
/// once) says nothing about the rate, and in a short window at a low rate
/// a burst or two alone would exceed the threshold: counted as congestion,
/// the cuts that follow shrink the windows further until the rate reaches
/// the floor.
pub const MIN_LOSS_RUNS: u32 = 4;
/// A window this long without enough packets is discarded.
const WINDOW_MAX: Duration = Duration::from_millis(500);
/// Rate growth per window without congestion, after the first report.
pub const GROWTH: f64 = 1.03;
/// Rate growth per window without congestion from where a cut by the last
/// measured capacity puts the rate ([`BACKOFF`] of it) up to that
/// capacity: the rate dwells just below what the limiting receiver can
/// take, where its queue drains, instead of overshooting it by [`GROWTH`]
/// within two windows of every cut (a sawtooth of a few windows, as many
/// cuts a second).
pub const PROBE_GROWTH: f64 = 1.0025;
/// How far above the last measured capacity [`PROBE_GROWTH`] applies:
/// nowhere above it. Beyond the capacity a slow link loses more with every
/// step; probing there at [`PROBE_GROWTH`] raised that loss so slowly that
/// the receiver's loss floor (an average of ten windows) followed it, every
/// window stayed under the threshold and none was reported, and a push
/// went on at three times a 200 Mbit/s link's rate (the bench's "one link
/// 10× slower", 1 run in 4 with a span of 1.1). Above the capacity the rate
/// grows by [`GROWTH`] and its loss outruns the floor at once.
pub const PROBE_SPAN: f64 = 1.0;
/// Rate growth per step before the first report.
pub const STARTUP_GROWTH: f64 = 2.0;
/// The growth step before the first report.
pub const STARTUP_STEP: Duration = Duration::from_millis(10);
/// First rate of an adaptive push. High enough that a push of a few MiB on
/// a LAN is not spent ramping up; a slower path (a 1 GbE link, a slow host)
/// takes the excess for at most one window, because the first report cuts
/// it, deeply when the window lost more than half ([`DEEP_CUT`]).
/// docs/BENCHMARKS-HISTORY.md has the measurements behind the figure.
pub const START_BPS: u64 = 2_000_000_000;
/// The default ceiling of the adaptive rate (`--max-rate`). High enough
/// not to hold back a fast path (loopback, jumbo-frame LANs): on slower
/// paths the receivers' reports set the rate, and cuts are fractions of
/// what was really sent, not of a ceiling the sender never reached. Not
/// much higher: start-up doubles the rate every [`STARTUP_STEP`], and an
/// overshoot far beyond what the path takes loses whole bursts before the
/// first report arrives. docs/BENCHMARKS-HISTORY.md has the measurements.
pub const MAX_BPS: u64 = 40_000_000_000;
/// The deepest cut of one report whose window lost more than [`DEEP_LOSS`]
/// in at least [`DEEP_RUNS`] separate runs: the rate was more than twice
/// what reaches that receiver, all through the window. That is a slow path
/// (or start-up's overshoot: the rate doubles twice per receiver window),
/// not a stall, which loses in one run. Otherwise [`MAX_CUT`].
pub const DEEP_CUT: f64 = MAX_CUT / 4.0;
/// See [`DEEP_CUT`].
pub const DEEP_LOSS: f64 = 0.5;
/// See [`DEEP_CUT`].
pub const DEEP_RUNS: u16 = 16;
/// How long growth waits after a report from a receiver that cut for the
/// last cut and still takes less than the rate, whether or not that report
/// cut again. A receiver behind
/// its own socket queue reports windows from before the last cut for as
/// long as the queue takes to drain (a host with a CPU quota: a tenth of
/// a second and more), and those reports cut no further; growing
/// meanwhile by [`GROWTH`] a window overruns it again before its first
/// report from after the cut arrives.
pub const HOLD: Duration = Duration::from_millis(40);
/// Fraction of a limiting receiver's delivered rate the sender cuts to.
pub const BACKOFF: f64 = 0.95;
/// The deepest single cut: at most to this fraction of the rate.
pub const MAX_CUT: f64 = 0.7;
/// A receiver whose pace stays below the minimum rate this long is dropped.
pub const SLOW_DROP_AFTER: Duration = Duration::from_secs(2);
/// Weight of a report in a receiver's pace (a moving average of the
/// capacities it reports). A host that gets the CPU in slices reports
/// windows above and below its pace in turn (one at 10 % of a core:
/// 450–970 Mbit/s around 700): the average, not each window, says whether
/// it keeps the floor.
pub const PACE_WEIGHT: f64 = 0.25;

/// The loss above which a window counts as congested, given the floor.
fn threshold(floor: f64) -> f64 {
    1.5 * floor + 0.05
}

fn to_wire(p: f64) -> u16 {
    (p * 65535.0).clamp(0.0, 65535.0) as u16
}

fn from_wire(v: u16) -> f64 {
    v as f64 / 65535.0
}

/// What a receiver reports about a congested window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CongestionSample {
    /// DATA bits per second that arrived.
    pub delivered_bps: u64,
    /// Loss in the window, 1/65536 units.
    pub loss: u16,
    /// Loss floor, 1/65536 units.
    pub floor: u16,
    /// DATA sequence number that opened the window.
    pub first_seq: u32,
    /// Highest DATA sequence number in the window.
    pub last_seq: u32,
    /// Separate runs of lost datagrams in the window.
    pub runs: u16,
}

/// True when DATA sequence number `a` came before `b` (they wrap).
fn seq_before(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) > 0
}

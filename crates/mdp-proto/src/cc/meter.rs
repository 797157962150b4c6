//! The receiver's side of rate control: windows of the DATA stream, their
//! loss against a floor, the socket queue's delay, and the rate at which
//! this host drains its socket (see the parent module).

use super::*;
use std::collections::VecDeque;
use std::time::Instant;

/// The receiver's side: measures windows of the DATA stream.
#[derive(Clone, Debug, Default)]
pub struct CongestionMeter {
    start: Option<Instant>,
    pub(super) base: u32,
    highest: u32,
    received: u32,
    /// Runs of lost datagrams (gaps in the sequence) in this window.
    runs: u32,
    bytes: u64,
    floor: f64,
    /// Whether a window measured the floor yet.
    floor_set: bool,
    windows: u64,
    /// Smallest queue delay reported in this window.
    min_queue: Option<Duration>,
    /// Largest queue delay reported in this window.
    max_queue: Duration,
    /// The queue delay of the batch being read.
    batch_wait: Option<Duration>,
    /// Windows in a row, up to this one, in which this host fell behind.
    behind: u32,
    /// How fast this host takes datagrams from its socket.
    drain: DrainMeter,
}

impl CongestionMeter {
    /// Counts a DATA datagram of `len` bytes with sequence number `seq`;
    /// returns a sample when it closes a congested window.
    pub fn on_data(&mut self, now: Instant, seq: u32, len: usize) -> Option<CongestionSample> {
        self.drain.total += len as u64;
        let Some(start) = self.start else {
            self.restart(now, seq, len);
            return None;
        };
        let ahead = seq.wrapping_sub(self.base);
        if ahead >= 1 << 31 {
            return None; // from before this window: reordered or duplicated
        }
        self.received += 1;
        self.bytes += len as u64;
        let step = seq.wrapping_sub(self.highest);
        if step < 1 << 31 {
            if step > 1 {
                self.runs += 1;
            }
            self.highest = seq;
        }
        let elapsed = now.saturating_duration_since(start);
        // Wrapping: right after a window `highest` is `base - 1`, and a
        // forged sequence number may leave it there.
        let span = self.highest.wrapping_sub(self.base).wrapping_add(1);
        if elapsed > WINDOW_MAX && span < WINDOW_MIN_PACKETS {
            self.restart(now, seq, len);
            return None;
        }
        if elapsed < WINDOW || span < WINDOW_MIN_PACKETS {
            return None;
        }
        let loss = 1.0 - (self.received as f64 / span as f64).min(1.0);
        let arrived_bps = self.bytes as f64 * 8.0 / elapsed.as_secs_f64();
        // Behind a standing queue the datagrams arrive at the sender's
        // pace and are taken at this host's own: what it can sustain. A
        // queue that drains (they arrive more slowly than it takes them:
        // the sender cut already) is no news.
        let drained = self.drain.bps();
        let standing_queue = self.min_queue.is_some_and(|q| q > QUEUE_LIMIT)
            && drained.is_none_or(|d| arrived_bps > d * DRAINING);
        let delivered_bps = match drained {
            Some(d) if standing_queue => arrived_bps.min(d),
            _ => arrived_bps,
        } as u64;
        self.windows += 1;
        let fell_behind = self.max_queue > QUEUE_LIMIT;
        self.behind = if fell_behind { self.behind + 1 } else { 0 };
        // Loss in a few bursts counts when this host fell behind in this
        // window and the one before: its own buffer, overflowing again and
        // again (a CPU quota holds it every period). A stall within one
        // window says nothing about the rate; one whose backlog spans two
        // windows and overflowed the buffer costs one cut (later reports
        // of the same overload are answered by it, see the controller).
        let own_bursts = self.behind >= 2;
        let lossy = loss > threshold(self.floor) && (self.runs >= MIN_LOSS_RUNS || own_bursts);
        let congested = self.windows > 1 && (lossy || standing_queue);
        // A window congested by a standing queue reports, as its loss, the
        // share of what arrived that this host could not take at its pace
        // (it would be lost, later, when the queue is full), and as its
        // runs the datagrams it got, each of which waited: the overload
        // lasted the whole window, so the sender may cut deep at once.
        let (overload, waited) = if standing_queue {
            let behind = 1.0 - delivered_bps as f64 / arrived_bps.max(1.0);
            (behind.max(0.0), self.received)
        } else {
            (0.0, 0)
        };
        let sample = congested.then(|| CongestionSample {
            delivered_bps,
            loss: to_wire(loss.max(overload)),
            floor: to_wire(self.floor),
            first_seq: self.base,
            last_seq: self.highest,
            runs: self.runs.max(waited).min(u16::MAX as u32) as u16,
        });
        // The floor is the path's own loss: measured in windows in which
        // this host kept up (no batch waited long). Behind a queue loss
        // comes from its full socket buffer, in bursts while a CPU quota
        // holds it (a host that catches up within the window still lost
        // what arrived while it was held): taken into the floor, that loss
        // raised it towards one half and every report's capacity (delivered
        // over one minus the floor) towards twice what the host takes. The
        // first window sets it whatever happened in it (provisionally, when
        // the host fell behind: the first window in which it kept up
        // replaces it), so that a lossy path is known from the start;
        // later windows that are not congested move it slowly.
        if !congested {
            if !fell_behind {
                self.floor = if self.floor_set {
                    0.9 * self.floor + 0.1 * loss
                } else {
                    loss.min(0.3)
                };
                self.floor_set = true;
            } else if self.windows == 1 {
                // Provisional, and small: a host that never keeps up
                // (under a CPU quota) never replaces it, and a start-up
                // overshoot's loss must not stay its floor.
                self.floor = loss.min(PROVISIONAL_FLOOR);
            }
        }
        self.start = Some(now);
        self.base = self.highest.wrapping_add(1);
        self.received = 0;
        self.runs = 0;
        self.bytes = 0;
        // The rest of the batch being read (if any) belongs to the next
        // window, and waited as long: had it been forgotten, a window read
        // within one batch (a burst lost from a full buffer, then a few
        // datagrams) would seem to have been read by a host that kept up.
        // Carried until the next batch: a batch may hold several windows
        // (one read after a host was held for 85 ms).
        self.min_queue = None;
        self.max_queue = self.batch_wait.unwrap_or_default();
        sample
    }

    /// A batch of datagrams was read from the socket at `now`, and its
    /// oldest one had waited `waited` in the socket's queue.
    pub fn on_queue_delay(&mut self, now: Instant, waited: Duration) {
        self.min_queue = Some(self.min_queue.map_or(waited, |q| q.min(waited)));
        self.max_queue = self.max_queue.max(waited);
        self.batch_wait = Some(waited);
        self.drain.on_read(now, waited);
    }

    fn restart(&mut self, now: Instant, seq: u32, len: usize) {
        self.start = Some(now);
        self.base = seq;
        self.highest = seq;
        self.received = 1;
        self.runs = 0;
        self.bytes = len as u64;
        self.min_queue = None;
        self.max_queue = Duration::ZERO;
        self.batch_wait = None;
    }

    /// The loss floor seen so far.
    pub fn floor(&self) -> f64 {
        self.floor
    }
}

/// The most a first window that fell behind may set the floor to.
const PROVISIONAL_FLOOR: f64 = 0.05;

/// How far back the drained rate looks: several windows, and two periods
/// of a CPU quota (cgroup `cpu.max`'s default period is 100 ms), so that a
/// host that reads in bursts is measured at its average pace.
pub const DRAIN_SPAN: Duration = Duration::from_millis(200);
/// Reads the drained rate remembers at most.
const DRAIN_READS: usize = 4096;

/// How fast this host takes DATA from its socket: the bytes it read over
/// the last [`DRAIN_SPAN`] of reads, by the read times the IO layer hands
/// in. Behind a standing queue the datagrams arrive at the sender's pace,
/// and this is the receiver's own.
#[derive(Clone, Debug, Default)]
struct DrainMeter {
    /// Per read: when, and the DATA bytes taken before it; oldest first.
    reads: VecDeque<(Instant, u64)>,
    /// DATA bytes taken so far.
    total: u64,
}

impl DrainMeter {
    /// A batch is read at `now`, its oldest datagram having waited
    /// `waited` (its datagrams follow). A batch that hardly waited finds
    /// the host keeping up: the time before it is no measure of its pace
    /// (the sender was slower, or sent nothing), and is forgotten.
    fn on_read(&mut self, now: Instant, waited: Duration) {
        if waited <= QUEUE_LIMIT {
            self.reads.clear();
        }
        self.reads.push_back((now, self.total));
        while self.reads.len() > DRAIN_READS
            || (self.reads.len() > 2
                && now.saturating_duration_since(self.reads[1].0) >= DRAIN_SPAN)
        {
            self.reads.pop_front();
        }
    }

    /// Bits per second taken between the oldest read remembered and the
    /// latest; `None` until they span a [`WINDOW`].
    fn bps(&self) -> Option<f64> {
        let (&(t0, b0), &(t1, b1)) = (self.reads.front()?, self.reads.back()?);
        let took = t1.checked_duration_since(t0)?;
        (took >= WINDOW).then(|| b1.saturating_sub(b0) as f64 * 8.0 / took.as_secs_f64())
    }
}

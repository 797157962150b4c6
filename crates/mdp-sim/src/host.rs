//! A receiving host slower than the network: the datagrams it gets wait
//! in its socket's queue, which it drains at its own pace (its CPU, its
//! disk), and which drops what arrives while it is full, as a kernel's
//! socket buffer does.
//!
//! The world hands each datagram to the receiver's state machine when the
//! host takes it from the queue, with its arrival time and, as the real
//! receive loop does, how long the batch waited
//! ([`mdp_proto::Receiver::handle_queue_delay`]).

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Bytes a slow host's socket queue holds before it drops.
pub const SOCKET_BUFFER: usize = 16 << 20;

/// One host's socket queue.
#[derive(Debug)]
pub(crate) struct HostQueue {
    /// Bits per second the host takes from its queue.
    bps: u64,
    /// Queued datagrams: when the host takes each, and when it arrived.
    queued: VecDeque<(Instant, Instant, Rc<[u8]>)>,
    /// Bytes queued.
    bytes: usize,
    /// When the host is done with what is queued.
    busy_until: Option<Instant>,
    /// Datagrams dropped because the queue was full.
    pub(crate) dropped: u64,
}

impl HostQueue {
    /// A host that takes `bps` bits per second from its socket.
    pub(crate) fn new(bps: u64) -> Self {
        HostQueue {
            bps: bps.max(1),
            queued: VecDeque::new(),
            bytes: 0,
            busy_until: None,
            dropped: 0,
        }
    }

    /// A datagram arrives at `now`: queued, or dropped when the queue is full.
    pub(crate) fn arrive(&mut self, now: Instant, d: Rc<[u8]>) {
        if self.bytes + d.len() > SOCKET_BUFFER {
            self.dropped += 1;
            return;
        }
        let start = self.busy_until.map_or(now, |b| b.max(now));
        let took = Duration::from_secs_f64(d.len() as f64 * 8.0 / self.bps as f64);
        self.busy_until = Some(start + took);
        self.bytes += d.len();
        self.queued.push_back((start + took, now, d));
    }

    /// When the host takes its next datagram.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.queued.front().map(|(at, _, _)| *at)
    }

    /// The next datagram the host takes by `now`: when it arrived, how
    /// long it waited, and its bytes.
    pub(crate) fn take_due(&mut self, now: Instant) -> Option<(Instant, Duration, Rc<[u8]>)> {
        if self.next()? > now {
            return None;
        }
        let (taken, arrived, d) = self.queued.pop_front()?;
        self.bytes -= d.len();
        Some((arrived, taken.saturating_duration_since(arrived), d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_each_datagram_waits_its_turn() {
        let t0 = Instant::now();
        // 1000 bytes take 1 ms at 8 Mbit/s.
        let mut q = HostQueue::new(8_000_000);
        let d: Rc<[u8]> = vec![0u8; 1000].into();
        for _ in 0..SOCKET_BUFFER / 1000 + 5 {
            q.arrive(t0, d.clone());
        }
        assert_eq!(q.dropped, 5);
        assert_eq!(
            q.take_due(t0),
            None.map(|x: (Instant, Duration, Rc<[u8]>)| x)
        );
        let (arrived, waited, _) = q.take_due(t0 + Duration::from_millis(1)).expect("due");
        assert_eq!((arrived, waited), (t0, Duration::from_millis(1)));
        let (_, waited, _) = q.take_due(t0 + Duration::from_millis(9)).expect("due");
        assert_eq!(waited, Duration::from_millis(2));
    }
}

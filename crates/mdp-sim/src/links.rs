//! The network between the nodes: lossy, delaying, duplicating links in
//! virtual time, the datagrams in flight, and the tap that records what
//! each node sent.
//!
//! A datagram of the sender first crosses the sender's own link (loss
//! shared by every receiver), then fans out over each receiver's link
//! (independent loss). A receiver's feedback crosses its uplink, then every
//! other member's downlink, so receivers overhear each other.
//!
//! **Invariant:** the network draws from its [`SimRng`] in the same order
//! for the same sequence of datagrams. The tap draws nothing, so turning it
//! on never changes a run; a test's [`DropRule`] is asked only after the
//! random loss, so without one the draws are exactly those of a run that
//! never had one.

use crate::{SimConfig, SimRng};
use mdp_proto::wire::{self, Packet};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A node of the simulated network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Node {
    /// The sender.
    Sender,
    /// Receiver `i`.
    Receiver(usize),
}

/// A datagram a node sent (or a test injected in its name), as the tap
/// recorded it before any link lost it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// When, from the start of the world.
    pub at: Duration,
    /// Who sent it.
    pub from: Node,
    /// The datagram's bytes.
    pub datagram: Vec<u8>,
    /// True when a test injected it ([`World::inject`](crate::World::inject)).
    pub injected: bool,
}

impl Sent {
    /// The datagram parsed (`None` if it does not parse; a sealed datagram
    /// still carries its trailer and does not).
    pub fn packet(&self) -> Option<Packet<'_>> {
        wire::parse(&self.datagram).ok()
    }
}

/// A test's rule for which datagrams a link drops: called with the sending
/// node, the receiving node and the datagram; `true` drops it.
pub type DropRule = Box<dyn FnMut(Node, Node, &[u8]) -> bool>;

/// The links, the datagrams in flight and their timetable.
pub(crate) struct Links {
    rng: SimRng,
    start: Instant,
    loss_independent: f64,
    loss_sender: f64,
    latency: Duration,
    jitter: Duration,
    duplicate: f64,
    tamper: f64,
    seq: u64,
    /// When each entry of `in_flight` arrives, by its number.
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Datagrams in flight, each with the nodes it arrives at then, in
    /// the order they were scheduled: one entry for a multicast's copies
    /// that arrive at the same moment, so that a datagram to ten thousand
    /// receivers is one entry, not ten thousand.
    in_flight: HashMap<u64, (Rc<[u8]>, Vec<Node>)>,
    /// The last entry scheduled (still in the queue): a copy of the same
    /// datagram arriving at the same moment joins it.
    last: Option<(u64, Instant)>,
    /// The rest of the entry being delivered.
    delivering: Option<(Instant, Rc<[u8]>, std::vec::IntoIter<Node>)>,
    /// Distinct blocks of which a live receiver lost a first transmission.
    pub(crate) lost_blocks: HashSet<(u32, u32)>,
    /// Every datagram sent, when the tap is on.
    pub(crate) tap: Option<Vec<Sent>>,
    pub(crate) drop_rule: Option<DropRule>,
}

impl Links {
    /// The links of `config`, drawing from `rng` (already advanced past
    /// the receivers' node ids).
    pub(crate) fn new(config: &SimConfig, rng: SimRng, start: Instant) -> Links {
        Links {
            rng,
            start,
            loss_independent: config.loss_independent,
            loss_sender: config.loss_sender,
            latency: config.latency,
            jitter: config.jitter,
            duplicate: config.duplicate,
            tamper: config.tamper,
            seq: 0,
            queue: BinaryHeap::new(),
            in_flight: HashMap::new(),
            last: None,
            delivering: None,
            lost_blocks: HashSet::new(),
            tap: None,
            drop_rule: None,
        }
    }

    /// The attacker stops forging (`SimConfig::tamper_for`).
    pub(crate) fn stop_tampering(&mut self) {
        self.tamper = 0.0;
    }

    /// When the next datagram arrives.
    pub(crate) fn next_arrival(&self) -> Option<Instant> {
        match &self.delivering {
            Some((at, _, rest)) if rest.len() > 0 => Some(*at),
            _ => self.queue.peek().map(|Reverse((at, _))| *at),
        }
    }

    /// The next datagram due at or before `now`, and its destination.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Node, Rc<[u8]>)> {
        loop {
            if let Some((_, d, rest)) = &mut self.delivering {
                if let Some(to) = rest.next() {
                    return Some((to, d.clone()));
                }
                self.delivering = None;
            }
            let Reverse((at, seq)) = self.queue.peek().copied()?;
            if at > now {
                return None;
            }
            self.queue.pop();
            if self.last.is_some_and(|(last, _)| last == seq) {
                self.last = None;
            }
            let (d, to) = self.in_flight.remove(&seq).expect("queued datagram");
            self.delivering = Some((at, d, to.into_iter()));
        }
    }

    fn record(&mut self, now: Instant, from: Node, datagram: &[u8], injected: bool) {
        if let Some(tap) = &mut self.tap {
            tap.push(Sent {
                at: now - self.start,
                from,
                datagram: datagram.to_vec(),
                injected,
            });
        }
    }

    fn dropped(&mut self, from: Node, to: Node, datagram: &[u8]) -> bool {
        self.drop_rule
            .as_mut()
            .is_some_and(|rule| rule(from, to, datagram))
    }

    fn link_delay(&mut self) -> Duration {
        let j = self.jitter.as_nanos() as u64;
        let extra = if j == 0 { 0 } else { self.rng.next_u64() % j };
        self.latency + Duration::from_nanos(extra)
    }

    fn schedule(&mut self, now: Instant, to: Node, datagram: Rc<[u8]>) {
        let copies = if self.rng.chance(self.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = now + self.link_delay();
            self.schedule_at(at, to, datagram.clone());
        }
    }

    fn schedule_at(&mut self, at: Instant, to: Node, datagram: Rc<[u8]>) {
        // Delivered in the order scheduled among those due at one moment,
        // as if each copy had an entry of its own.
        if let Some((seq, when)) = self.last {
            let (d, nodes) = self.in_flight.get_mut(&seq).expect("last is queued");
            if when == at && Rc::ptr_eq(d, &datagram) {
                nodes.push(to);
                return;
            }
        }
        self.seq += 1;
        self.in_flight.insert(self.seq, (datagram, vec![to]));
        self.queue.push(Reverse((at, self.seq)));
        self.last = Some((self.seq, at));
    }

    /// The sender multicasts `datagram` to the `receivers`; `counted(i)`
    /// says whether receiver `i`'s losses count in `lost_blocks` (it is
    /// alive and started).
    pub(crate) fn multicast_from_sender(
        &mut self,
        now: Instant,
        datagram: &[u8],
        receivers: usize,
        counted: impl Fn(usize) -> bool,
        injected: bool,
    ) {
        self.record(now, Node::Sender, datagram, injected);
        let first_tx = match wire::parse(datagram) {
            Ok(Packet::Data { header, .. }) if header.flags & wire::FLAG_REPAIR == 0 => {
                Some((header.object.0, header.block.0))
            }
            _ => None,
        };
        if self.rng.chance(self.loss_sender) {
            if let Some(key) = first_tx {
                self.lost_blocks.insert(key);
            }
            return;
        }
        if self.tamper > 0.0 && self.rng.chance(self.tamper) {
            // A forged copy (one byte changed) now, a replay later.
            let mut forged = datagram.to_vec();
            let at = 12 + (self.rng.next_u64() as usize) % (forged.len() - 12);
            forged[at] ^= 1 << (self.rng.next_u64() % 8);
            let forged: Rc<[u8]> = forged.into();
            let replay: Rc<[u8]> = datagram.into();
            for i in 0..receivers {
                self.schedule(now, Node::Receiver(i), forged.clone());
                self.schedule_at(
                    now + Duration::from_millis(50),
                    Node::Receiver(i),
                    replay.clone(),
                );
            }
        }
        let d: Rc<[u8]> = datagram.into();
        for i in 0..receivers {
            let lost = self.rng.chance(self.loss_independent)
                || self.dropped(Node::Sender, Node::Receiver(i), datagram);
            if lost {
                if let Some(key) = first_tx {
                    if counted(i) {
                        self.lost_blocks.insert(key);
                    }
                }
                continue;
            }
            self.schedule(now, Node::Receiver(i), d.clone());
        }
    }

    /// Receiver `from` multicasts `datagram` to the sender and the other
    /// receivers.
    pub(crate) fn multicast_from_receiver(
        &mut self,
        now: Instant,
        from: usize,
        datagram: &[u8],
        receivers: usize,
        injected: bool,
    ) {
        let me = Node::Receiver(from);
        self.record(now, me, datagram, injected);
        // The receiver's own uplink, then every other member's downlink.
        if self.rng.chance(self.loss_independent) {
            return;
        }
        let d: Rc<[u8]> = datagram.into();
        if !self.dropped(me, Node::Sender, datagram) {
            self.schedule(now, Node::Sender, d.clone());
        }
        for i in 0..receivers {
            if i != from
                && !self.rng.chance(self.loss_independent)
                && !self.dropped(me, Node::Receiver(i), datagram)
            {
                self.schedule(now, Node::Receiver(i), d.clone());
            }
        }
    }
}

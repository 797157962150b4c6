//! Two networks joined by a relay, in virtual time: the origin's group
//! (the origin, the relay's receiving side, receivers that hear the origin
//! directly) and the relay's group (the relay's sending side and the
//! receivers behind it). The relay is a [`Receiver`] upstream and a
//! [`Sender`] downstream in one node, as `mdp-recv --relay` is:
//!
//! - it takes the push as any receiver does, holding nothing beforehand,
//!   and checks each rebuilt block against the manifest's hash;
//! - its sender announces the origin's push as it is (session, coding,
//!   manifest, the origin's signature: [`mdp_proto::RelaySource`]), and a
//!   block it asks for is handed over as soon as the relay holds it
//!   (cut-through), else when it arrives;
//! - what its receivers say (REGISTER, the confirming STATUS) goes up
//!   through [`Receiver::pass_on`], and the relay confirms its own copy
//!   only once its own push ended and the origin acknowledged every word
//!   it passed on.
//!
//! Links are one-way delays with independent loss per receiving node,
//! drawn from one seed. Receivers keep each verified block, so the test
//! compares what every host holds with what was pushed, byte for byte.

use crate::drain::{Drain, Output};
use crate::{Content, SimRng};
use mdp_proto::fec::Codec;
use mdp_proto::identity::{Identity, WallClock};
use mdp_proto::ids::BlockKey;
use mdp_proto::receiver::RELAY_ACK_WAIT;
use mdp_proto::{
    EntryKind, Manifest, NodeId, ObjectId, Receiver, ReceiverConfig, ReceiverEvent,
    ReceiverRequest, Sender, SenderConfig, SenderEvent, SenderReport, SenderRequest,
};
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

const UNIX_AT_START_US: u64 = 1_800_000_000_000_000;
/// The push's coding: 32 symbols of 1024 bytes a block.
const SYMBOL: u16 = 1024;
const BLOCK_K: u16 = 32;
const BLOCK_BYTES: u64 = SYMBOL as u64 * BLOCK_K as u64;

/// Settings of a relayed push.
#[derive(Clone, Debug)]
pub struct RelayedConfig {
    /// Receivers that hear the origin directly.
    pub direct: usize,
    /// Receivers behind the relay.
    pub behind: usize,
    /// Loss on each link into a receiving node, both networks.
    pub loss: f64,
    /// One-way delay of every link.
    pub latency: Duration,
    /// The relay stops (killed) at this time after the start, if set.
    pub relay_dies_at: Option<Duration>,
    /// The relay flips a byte of every block it passes on (a relay that
    /// tries to alter the push).
    pub relay_tampers: bool,
    /// Seed of every random choice.
    pub seed: u64,
    /// Virtual time after which the run stops, finished or not.
    pub limit: Duration,
}

impl Default for RelayedConfig {
    fn default() -> Self {
        RelayedConfig {
            direct: 2,
            behind: 3,
            loss: 0.0,
            latency: Duration::from_millis(1),
            relay_dies_at: None,
            relay_tampers: false,
            seed: 1,
            limit: Duration::from_secs(120),
        }
    }
}

/// A node of the two networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum At {
    Origin,
    /// The relay's receiving side.
    RelayUp,
    /// The relay's sending side.
    RelayDown,
    Direct(usize),
    Behind(usize),
}

/// A receiving host's files: each verified block, by file and number.
#[derive(Debug, Default)]
struct Blocks {
    entries: HashMap<ObjectId, mdp_proto::Entry>,
    blocks: HashMap<BlockKey, Vec<u8>>,
    /// A settle asked for and not answered yet (the relay holds it).
    settle_held: bool,
    outcome: Option<mdp_proto::SessionOutcome>,
}

impl Blocks {
    /// Answers one request of `r` as mdp-recv's writer does, keeping
    /// blocks in memory. Returns the key of a block just written.
    fn handle(
        &mut self,
        r: &mut Receiver,
        now: Instant,
        out: Output<ReceiverRequest, ReceiverEvent>,
        codec: &mut Codec,
        hold_settle: bool,
    ) -> Option<BlockKey> {
        match out {
            Output::Request(ReceiverRequest::CheckPresent { manifest, .. }) => {
                for (id, e) in manifest.files() {
                    self.entries.insert(id, e.clone());
                }
                r.handle_present(now, &[]);
            }
            Output::Request(ReceiverRequest::WriteBlock {
                object,
                offset,
                block,
            }) => {
                let data = block.into_bytes(codec).expect("k distinct symbols decode");
                let b = (offset / BLOCK_BYTES) as u32;
                let entry = &self.entries[&object];
                if entry.block_hash(b) != Some(*blake3::hash(&data).as_bytes()) {
                    r.handle_block_rejected(now, object, b);
                    return None;
                }
                let key = BlockKey::new(object.0, b);
                self.blocks.insert(key, data.to_vec());
                return Some(key);
            }
            Output::Request(ReceiverRequest::VerifyObject { object }) => {
                r.handle_object_verified(now, object, Ok(()));
            }
            Output::Request(ReceiverRequest::Settle { .. }) => {
                if hold_settle {
                    self.settle_held = true;
                } else {
                    r.handle_settled(now, None);
                }
            }
            Output::Event(ReceiverEvent::Finished(outcome)) => self.outcome = Some(outcome),
            Output::Event(_) => {}
        }
        None
    }

    /// The bytes of `path` as held, if every block of it is.
    fn file(&self, path: &str) -> Option<Vec<u8>> {
        let (id, e) = self.entries.iter().find(|(_, e)| e.path == path)?;
        let EntryKind::File { size, .. } = &e.kind else {
            return None;
        };
        let mut out = Vec::with_capacity(*size as usize);
        for b in 0..size.div_ceil(BLOCK_BYTES) as u32 {
            out.extend_from_slice(self.blocks.get(&BlockKey::new(id.0, b))?);
        }
        (out.len() as u64 == *size).then_some(out)
    }
}

struct Host {
    machine: Receiver,
    blocks: Blocks,
    wake: Option<Instant>,
}

/// The relay's sending side, once the push's manifest is known to it.
struct RelaySend {
    machine: Sender,
    wake: Option<Instant>,
    /// Blocks asked for that the relay does not hold yet.
    waiting: Vec<(ObjectId, mdp_proto::BlockNumber, u64, usize)>,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: std::cmp::Reverse<(Instant, u64)>,
    to: At,
    bytes: Vec<u8>,
}

/// What a relayed push ended with.
#[derive(Debug)]
pub struct RelayedResult {
    /// The origin's report (`None`: it did not finish in time).
    pub origin: Option<Arc<SenderReport>>,
    /// The relay's own sender's report.
    pub relay: Option<Arc<SenderReport>>,
    /// Per receiver behind the relay: it holds every file, byte for byte.
    pub behind_complete: Vec<bool>,
    /// Per receiver behind the relay: its session's outcome.
    pub behind_outcomes: Vec<Option<mdp_proto::SessionOutcome>>,
    /// Per direct receiver: it holds every file, byte for byte.
    pub direct_complete: Vec<bool>,
    /// DATA and control bytes the origin sent.
    pub origin_bytes: u64,
    /// Bytes that crossed into the relay's receiving side (its upstream
    /// link).
    pub relay_upstream_bytes: u64,
    /// Virtual time the origin took (to the end of the run when it did
    /// not finish).
    pub elapsed: Duration,
}

/// A push from an origin to direct receivers and, through one relay, to
/// receivers on another network; every origin signs, every receiver
/// trusts only the origin's key (the relay holds none).
pub fn run(config: &RelayedConfig, content: &Content) -> RelayedResult {
    let start = Instant::now();
    let mut rng = SimRng::new(config.seed);
    let origin_key = Identity::from_seed([7; 32]);
    let mut sc = SenderConfig::new(mdp_proto::SessionId(rng.next_u64()));
    sc.symbol_size = SYMBOL;
    sc.block_k = BLOCK_K;
    sc.parity = 16;
    sc.expected_receivers = (config.direct + 1 + config.behind) as u32;
    sc.wait = Duration::from_secs(2);
    sc.drop_after = Duration::from_secs(2);
    sc.timeout = config.limit;
    sc.identity = Some(origin_key.clone());
    sc.signed_at_us = UNIX_AT_START_US;
    let manifest: Manifest = content.manifest_for(&sc.coding());
    let mut origin = Sender::new(sc, manifest, start).expect("valid settings");
    let mut origin_wake;
    let clock = WallClock {
        at: start,
        unix_us: UNIX_AT_START_US,
    };
    let host = |name: String, rng: &mut SimRng| {
        let mut rc = ReceiverConfig::new(NodeId(rng.next_u64()), &name, rng.next_u64());
        rc.trust = vec![origin_key.public()];
        rc.clock = Some(clock);
        Host {
            machine: Receiver::new(rc),
            blocks: Blocks::default(),
            wake: Some(start),
        }
    };
    let mut relay_up = host("relay".into(), &mut rng);
    let mut direct: Vec<Host> = (0..config.direct)
        .map(|i| host(format!("d{i}"), &mut rng))
        .collect();
    let mut behind: Vec<Host> = (0..config.behind)
        .map(|i| host(format!("b{i}"), &mut rng))
        .collect();
    let mut relay_down: Option<RelaySend> = None;
    let mut net: BinaryHeap<InFlight> = BinaryHeap::new();
    let mut order = 0u64;
    let mut drain = Drain::new();
    let mut codec = Codec::default();
    let (mut origin_bytes, mut relay_upstream_bytes) = (0u64, 0u64);
    let mut now = start;
    let mut origin_done = None;
    let mut relay_ended: Option<Instant> = None;
    let dead_at = config.relay_dies_at.map(|d| start + d);
    let relay_alive = |now: Instant| dead_at.is_none_or(|d| now < d);

    // Who hears what a node sends.
    let listeners = |from: At, direct: usize, behind: usize| -> Vec<At> {
        let up: Vec<At> = std::iter::once(At::RelayUp)
            .chain((0..direct).map(At::Direct))
            .collect();
        let down: Vec<At> = (0..behind).map(At::Behind).collect();
        match from {
            At::Origin => up,
            At::RelayUp | At::Direct(_) => std::iter::once(At::Origin)
                .chain(up)
                .filter(|a| *a != from)
                .collect(),
            At::RelayDown => down,
            At::Behind(_) => std::iter::once(At::RelayDown)
                .chain(down)
                .filter(|a| *a != from)
                .collect(),
        }
    };

    loop {
        // Every machine drained at `now`; what they send goes in flight.
        let mut outbox: Vec<(At, Vec<u8>)> = Vec::new();
        origin_wake = drain.sender(
            &mut origin,
            now,
            |d| outbox.push((At::Origin, d.to_vec())),
            |s, out| {
                if let Output::Request(req) = out {
                    content.serve(s, now, req);
                }
            },
        );
        let mut written: Vec<BlockKey> = Vec::new();
        if relay_alive(now) {
            let hold = true;
            relay_up.wake = drain.receiver(
                &mut relay_up.machine,
                now,
                |d| outbox.push((At::RelayUp, d.to_vec())),
                |r, out| {
                    if let Some(k) = relay_up.blocks.handle(r, now, out, &mut codec, hold) {
                        written.push(k);
                    }
                },
            );
            // The relay's sender starts once the manifest is known (an
            // encrypted push is not passed on).
            if relay_down.is_none() {
                if let Some(src) = relay_up.machine.relay_source().filter(|s| !s.encrypted) {
                    let mut c = SenderConfig::new(src.session);
                    c.symbol_size = src.coding.symbol_size;
                    c.block_k = src.coding.block_k;
                    c.parity = src.coding.parity;
                    c.forwarded_signature = src.signature;
                    c.pass_on_feedback = true;
                    c.expected_receivers = config.behind as u32;
                    c.wait = Duration::from_secs(2);
                    c.drop_after = Duration::from_secs(2);
                    c.timeout = config.limit;
                    c.delete = src.delete;
                    c.dry_run = src.dry_run;
                    let s =
                        Sender::new(c, (*src.manifest).clone(), now).expect("the origin's push");
                    relay_down = Some(RelaySend {
                        machine: s,
                        wake: Some(now),
                        waiting: Vec::new(),
                    });
                }
            }
            if let Some(rd) = relay_down.as_mut() {
                // Blocks that arrived are handed to the waiting reads.
                let held = &relay_up.blocks.blocks;
                let tamper = config.relay_tampers;
                let mut still = Vec::new();
                for (object, block, offset, len) in rd.waiting.drain(..) {
                    match held.get(&BlockKey::new(object.0, block.0)) {
                        Some(data) => {
                            let mut data = data.clone();
                            debug_assert_eq!(data.len(), len, "block {offset}");
                            if tamper {
                                data[0] ^= 1;
                            }
                            rd.machine.handle_block(now, object, block, data);
                        }
                        None => still.push((object, block, offset, len)),
                    }
                }
                rd.waiting = still;
                let mut passed = Vec::new();
                rd.wake = drain.sender(
                    &mut rd.machine,
                    now,
                    |d| outbox.push((At::RelayDown, d.to_vec())),
                    |s, out| match out {
                        Output::Request(SenderRequest::ReadBlock {
                            object,
                            block,
                            offset,
                            len,
                        }) => match held.get(&BlockKey::new(object.0, block.0)) {
                            Some(data) => {
                                let mut data = data.clone();
                                if tamper {
                                    data[0] ^= 1;
                                }
                                s.handle_block(now, object, block, data);
                            }
                            None => rd.waiting.push((object, block, offset, len)),
                        },
                        Output::Request(req @ SenderRequest::EncodeParity { .. }) => {
                            content.serve(s, now, req);
                        }
                        Output::Event(SenderEvent::Feedback { message }) => passed.push(message),
                        Output::Event(_) => {}
                    },
                );
                for m in passed {
                    relay_up.machine.pass_on(now, m);
                }
                // Its own copy is confirmed once its push ended and the
                // origin has every word it passed on.
                if rd.machine.is_finished() {
                    relay_ended.get_or_insert(now);
                }
                let waited = relay_ended.is_some_and(|t| now >= t + RELAY_ACK_WAIT);
                if relay_up.blocks.settle_held
                    && rd.machine.is_finished()
                    && (relay_up.machine.passed_on_pending() == 0 || waited)
                {
                    relay_up.blocks.settle_held = false;
                    relay_up.machine.handle_settled(now, None);
                }
                // Drained again: what pass_on or the settle queued.
                relay_up.wake = drain.receiver(
                    &mut relay_up.machine,
                    now,
                    |d| outbox.push((At::RelayUp, d.to_vec())),
                    |r, out| {
                        relay_up.blocks.handle(r, now, out, &mut codec, true);
                    },
                );
                if !rd.waiting.is_empty() && !written.is_empty() {
                    // Blocks came in this step: wake the sender to take
                    // them now.
                    rd.wake = Some(now);
                }
            }
        }
        for (i, h) in direct.iter_mut().enumerate() {
            h.wake = drain.receiver(
                &mut h.machine,
                now,
                |d| outbox.push((At::Direct(i), d.to_vec())),
                |r, out| {
                    h.blocks.handle(r, now, out, &mut codec, false);
                },
            );
        }
        for (i, h) in behind.iter_mut().enumerate() {
            h.wake = drain.receiver(
                &mut h.machine,
                now,
                |d| outbox.push((At::Behind(i), d.to_vec())),
                |r, out| {
                    h.blocks.handle(r, now, out, &mut codec, false);
                },
            );
        }
        for (from, bytes) in outbox {
            if from == At::Origin {
                origin_bytes += bytes.len() as u64;
            }
            for to in listeners(from, config.direct, config.behind) {
                if rng.chance(config.loss) {
                    continue;
                }
                if to == At::RelayUp {
                    relay_upstream_bytes += bytes.len() as u64;
                }
                order += 1;
                net.push(InFlight {
                    at: std::cmp::Reverse((now + config.latency, order)),
                    to,
                    bytes: bytes.clone(),
                });
            }
        }
        if origin.is_finished() {
            origin_done.get_or_insert(now);
            if !relay_alive(now) || relay_down.as_ref().is_none_or(|r| r.machine.is_finished()) {
                break;
            }
        }
        // The next moment anything happens.
        let mut next: Vec<Instant> = [origin_wake].into_iter().flatten().collect();
        if relay_alive(now) {
            next.extend(relay_up.wake);
            next.extend(relay_down.as_ref().and_then(|r| r.wake));
            if relay_up.blocks.settle_held {
                next.extend(relay_ended.map(|t| t + RELAY_ACK_WAIT));
            }
            next.extend(dead_at);
        }
        next.extend(direct.iter().filter_map(|h| h.wake));
        next.extend(behind.iter().filter_map(|h| h.wake));
        next.extend(net.peek().map(|f| f.at.0 .0));
        let Some(t) = next.into_iter().min() else {
            break;
        };
        now = now.max(t);
        if now > start + config.limit {
            break;
        }
        // Timers, then arrivals, at `now`.
        if origin_wake.is_some_and(|w| w <= now) {
            origin.handle_timeout(now);
        }
        if relay_alive(now) {
            if relay_up.wake.is_some_and(|w| w <= now) {
                relay_up.machine.handle_timeout(now);
            }
            if let Some(rd) = relay_down.as_mut() {
                if rd.wake.is_some_and(|w| w <= now) {
                    rd.machine.handle_timeout(now);
                }
            }
        }
        for h in direct.iter_mut().chain(behind.iter_mut()) {
            if h.wake.is_some_and(|w| w <= now) {
                h.machine.handle_timeout(now);
            }
        }
        while net.peek().is_some_and(|f| f.at.0 .0 <= now) {
            let f = net.pop().expect("peeked");
            match f.to {
                At::Origin => origin.handle_datagram(now, &f.bytes),
                At::RelayUp if relay_alive(now) => relay_up.machine.handle_datagram(now, &f.bytes),
                At::RelayDown if relay_alive(now) => {
                    if let Some(rd) = relay_down.as_mut() {
                        rd.machine.handle_datagram(now, &f.bytes);
                    }
                }
                At::RelayUp | At::RelayDown => {}
                At::Direct(i) => direct[i].machine.handle_datagram(now, &f.bytes),
                At::Behind(i) => behind[i].machine.handle_datagram(now, &f.bytes),
            }
        }
    }
    let holds_all = |b: &Blocks| {
        content.manifest.files().all(|(id, e)| {
            b.file(&e.path).as_deref() == content.files.get(&id).map(|v| v.as_slice())
        })
    };
    RelayedResult {
        origin: origin.report().cloned(),
        relay: relay_down
            .as_ref()
            .and_then(|r| r.machine.report().cloned()),
        behind_complete: behind.iter().map(|h| holds_all(&h.blocks)).collect(),
        behind_outcomes: behind.iter().map(|h| h.blocks.outcome.clone()).collect(),
        direct_complete: direct.iter().map(|h| holds_all(&h.blocks)).collect(),
        origin_bytes,
        relay_upstream_bytes,
        elapsed: origin_done.unwrap_or(now) - start,
    }
}

/// The receivers of a report by name, with their verdict and relay.
pub fn verdicts(report: &SenderReport) -> BTreeMap<String, (String, Option<String>)> {
    report
        .receivers
        .iter()
        .map(|r| {
            (
                r.name.clone(),
                (r.verdict.describe().to_string(), r.via.clone()),
            )
        })
        .collect()
}

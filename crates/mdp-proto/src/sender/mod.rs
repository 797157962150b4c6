//! The sender state machine.
//!
//! A session goes through four phases:
//!
//! 1. **Announcing**: ANNOUNCE 10, 20, 40, 80 ms apart, then every 100 ms,
//!    each followed by the manifest
//!    (object 0; re-sent with every ANNOUNCE while it is at most
//!    [`MANIFEST_RESEND_MAX`] bytes); receivers REGISTER once they hold the
//!    manifest. Ends when the expected number of receivers registered, or
//!    when `wait` ran out.
//! 2. **Sending**: objects in order (the manifest first), block by block, each
//!    block's `k` source symbols then `proactive` parity symbols. Repairs asked
//!    for by NACKs go before new data. ANNOUNCE every 100 ms as a heartbeat
//!    (late joiners learn of the session from it).
//! 3. **Flushing**: all data sent and no repair queued. FLUSH at once and then
//!    periodically, naming the receivers whose final STATUS is still missing.
//!    Repairs go on. Ends when every receiver is final (confirmed, failed or
//!    dropped for silence), or at the session deadline.
//! 4. **Done**: DONE five times, half a GRTT apart (1–10 ms), then
//!    [`SenderEvent::Finished`].
//!
//! File data enters through [`SenderRequest::ReadBlock`] requests that the
//! caller answers with [`Sender::handle_block`]; the sender keeps a bounded
//! cache of blocks for repairs and asks again for a block it evicted. Parity
//! symbols are computed by the caller too, off the loop that sends:
//! [`SenderRequest::EncodeParity`], answered with [`Sender::handle_parity`].
//! A repair whose parity is not there yet waits; other symbols go first.

mod autoparity;
mod cache;
mod config;
mod emit;
mod events;
mod keys;
mod peers;
mod relays;
mod repair;
mod report;
mod skip;
mod timers;

pub use crate::cc::RateMode;
pub use config::{ConfigError, SenderConfig};
pub use events::{SenderEvent, SenderRequest};
pub use keys::EncryptionConfig;
pub use report::{RateSummary, ReceiverReport, SenderReport, SenderStats, Verdict};

use cache::{pad_exactly, BlockCache};
use emit::pacing_burst;
use keys::SenderKeys;
use peers::MAX_PEER_HAVE_RANGES;
use peers::{Acks, Peer, PeerState};
use repair::RepairState;
use timers::{Timer, Timers};

use crate::auth::{self, AuthConfig, ReplayWindow, Sealer};
use crate::cc::{CongestionSample, RateController};
use crate::fec::{BlockParity, ParityJob};
use crate::ids::{BlockKey, BlockNumber, NodeId, ObjectId, SessionId, SymbolId};
use crate::layout::Coding;
use crate::limits::{
    DATA_HEADER_LEN, MANIFEST_RESEND_MAX, MAX_BLOCK_BYTES, MAX_NODE_LIST, MAX_PEERS,
    MAX_SESSION_BLOCKS, TRAILER_LEN,
};
use crate::manifest::{EntryKind, Manifest};
use crate::pacer::Pacer;
use crate::ranges;
use crate::transmit::{Destination, Gather, Transmit};
use crate::wire::{
    self, Ack, AckState, Announce, Control, DataHeader, Done, Echo, FailReason, Flush, HookOutcome,
    NackEntry, Packet, Timing, FLAG_REPAIR,
};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Announcing,
    Sending,
    Flushing,
    Done { sent: u8 },
    Finished,
}

/// Position of the next new symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cursor {
    object: u32,
    block: u32,
    esi: u32,
}

impl Cursor {
    /// The block it stands in.
    fn key(&self) -> BlockKey {
        BlockKey::new(self.object, self.block)
    }
}

/// The sender of one session. See the crate docs for the calling contract.
#[derive(Debug)]
pub struct Sender {
    config: SenderConfig,
    coding: Coding,
    manifest_bytes: Vec<u8>,
    manifest_hash: [u8; 32],
    /// Object sizes; index 0 is the manifest.
    sizes: Vec<u64>,
    /// Paths of the file objects; index 0 is unused.
    paths: Vec<String>,
    phase: Phase,
    epoch: Instant,
    pacer: Pacer,
    cc: RateController,
    cursor: Cursor,
    data_seq: u32,
    /// Blocks read ahead and kept for repairs (cache.rs).
    cache: BlockCache,
    /// How much proactive parity each block gets (autoparity.rs).
    auto_parity: autoparity::AutoParity,
    /// Blocks with repair symbols queued, in request order; a block is here
    /// exactly while its `RepairState::queued > 0` (checked in O(1) that way).
    repair_queue: VecDeque<BlockKey>,
    repairs: HashMap<BlockKey, RepairState>,
    peers: BTreeMap<NodeId, Peer>,
    /// The relays heard from (relays.rs), each with whether the receivers
    /// behind it were let go when it stopped being active.
    relays: BTreeMap<NodeId, bool>,
    /// Counts that follow the peers (peers.rs).
    tally: peers::Tally,
    acks: Acks,
    await_rotation: usize,
    grtt: Duration,
    /// ANNOUNCEs sent while registering (they start close together).
    announces: u32,
    flush_start: Option<Instant>,
    /// When the data began (the phase Sending).
    data_start: Option<Instant>,
    flushes_sent: u32,
    timed_out: bool,
    aborted: Option<String>,
    /// Per object: not sent, every receiver has it (index 0 unused).
    skip: Vec<bool>,
    /// Per object held in part by every receiver: blocks not sent, as
    /// ascending `(first, count)` ranges.
    skip_blocks: HashMap<u32, Vec<(u32, u32)>>,
    /// With a key: the sealer, the counters seen per receiver, and the
    /// latest `now` (for the sealer's clock).
    sealer: Option<Sealer>,
    replay: HashMap<NodeId, ReplayWindow>,
    now_hint: Instant,
    /// The push's signature, sent with every ANNOUNCE.
    signed: Option<wire::PushSignature>,
    /// An encrypted push's keys (keys.rs).
    keys: Option<SenderKeys>,
    /// Every deadline of the session (timers.rs).
    timers: Timers,
    requests: VecDeque<SenderRequest>,
    events: VecDeque<SenderEvent>,
    stats: SenderStats,
    report: Option<Arc<SenderReport>>,
    /// Scratch batch of [`Sender::poll_transmit`] (the copying path).
    gather: Gather,
}

const ANNOUNCE_INTERVAL: Duration = Duration::from_millis(100);
/// While registering, ANNOUNCEs start this far apart and double up to
/// [`ANNOUNCE_INTERVAL`]: a receiver whose first ANNOUNCE or manifest was
/// lost registers a few milliseconds later on a LAN, not 100 ms later,
/// and the push (which waits for it) starts that much sooner.
const ANNOUNCE_FIRST_GAP: Duration = Duration::from_millis(10);
/// The gap after the `n`th ANNOUNCE (from 1) while registering.
fn announce_gap(n: u32) -> Duration {
    (ANNOUNCE_FIRST_GAP * 2u32.pow(n.saturating_sub(1).min(4))).min(ANNOUNCE_INTERVAL)
}
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);
/// During the data, a receiver not heard from for `drop_after /
/// POLL_AFTER` is polled in the ANNOUNCE heartbeats.
const POLL_AFTER: u32 = 5;
/// Receivers polled per ANNOUNCE heartbeat, at most (so at most 120 STATUS
/// a second answer, whatever the group's size).
const POLLS_PER_ANNOUNCE: usize = 12;
/// Polls a receiver silent for `drop_after` must have left unanswered to
/// be dropped during the data.
const POLLS_BEFORE_DROP: u32 = 3;
/// DONE goes out [`DONE_REPEATS`] times: back to back after a push every
/// receiver confirmed, else half a GRTT apart within these bounds: spread
/// over more than a burst of loss on the group's network, but not holding
/// the sender's exit up by more than the round trips of that network.
const DONE_INTERVAL_MIN: Duration = Duration::from_millis(1);
const DONE_INTERVAL_MAX: Duration = Duration::from_millis(10);
const DONE_REPEATS: u8 = 5;

impl Sender {
    /// Starts a session that delivers `manifest`. Fails on invalid settings.
    pub fn new(
        config: SenderConfig,
        manifest: Manifest,
        now: Instant,
    ) -> Result<Sender, ConfigError> {
        config.validate()?;
        manifest.validate()?;
        manifest.check_block_hashes(&config.coding())?;
        let manifest_bytes = manifest.encode();
        if manifest_bytes.len() as u64 > crate::manifest::MAX_MANIFEST_LEN {
            return Err(ConfigError::TooManyFiles);
        }
        let manifest_hash = *blake3::hash(&manifest_bytes).as_bytes();
        let coding = config.coding();
        let blocks: u64 = manifest
            .files()
            .map(|(_, e)| match e.kind {
                EntryKind::File { size, .. } => coding.block_count_wide(size),
                EntryKind::Dir | EntryKind::Symlink { .. } | EntryKind::HardLink { .. } => 0,
            })
            .sum::<u64>()
            + coding.block_count_wide(manifest_bytes.len() as u64);
        if blocks > MAX_SESSION_BLOCKS {
            return Err(ConfigError::TooManyBlocks { blocks });
        }
        let mut sizes = vec![manifest_bytes.len() as u64];
        let mut paths = vec![String::new()];
        for (_, e) in manifest.files() {
            if let EntryKind::File { size, .. } = e.kind {
                sizes.push(size);
                paths.push(e.path.clone());
            }
        }
        // The bucket holds what the rate allows in PACING_BURST, so a caller
        // whose timer fires about once a millisecond still reaches the rate;
        // at least a few datagrams.
        let trailer = if config.auth.is_some() || config.encryption.is_some() {
            TRAILER_LEN
        } else {
            0
        };
        let datagram = config.symbol_size as usize + DATA_HEADER_LEN + trailer;
        let cc = RateController::new(config.rate, now);
        let rate = cc.rate_bps();
        let keys = config
            .encryption
            .as_ref()
            .map(|e| SenderKeys::new(e, config.session));
        let signed = config.forwarded_signature.or_else(|| {
            config.identity.as_ref().map(|id| {
                let signer = id.public().to_bytes();
                // The fields the claim covers, as every ANNOUNCE carries them.
                let fixed = Announce {
                    timing: Timing {
                        ts_us: 0,
                        grtt_us: 0,
                        rate_bps: 0,
                        group_size: 0,
                    },
                    symbol_size: coding.symbol_size,
                    block_k: coding.block_k,
                    parity: coding.parity,
                    manifest_len: manifest_bytes.len() as u64,
                    manifest_hash,
                    object_count: (sizes.len() - 1) as u32,
                    data_pos: (0, 0),
                    acked: Vec::new(),
                    poll: Vec::new(),
                    delete: config.delete,
                    dry_run: config.dry_run,
                    enc: keys.as_ref().map(|k| k.announced()),
                    signed: None,
                };
                let claim = wire::push_claim(config.session, &fixed, &signer, config.signed_at_us);
                let sig = id.sign(&claim);
                let (r, s) = sig.split_at(32);
                wire::PushSignature {
                    signer,
                    signed_at_us: config.signed_at_us,
                    sig_r: r.try_into().expect("32 bytes"),
                    sig_s: s.try_into().expect("32 bytes"),
                }
            })
        });
        Ok(Sender {
            signed,
            keys,
            coding: config.coding(),
            pacer: Pacer::new(rate, pacing_burst(rate, config.max_batch, datagram), now),
            cc,
            manifest_bytes,
            manifest_hash,
            skip: vec![false; sizes.len()],
            skip_blocks: HashMap::new(),
            sealer: config.auth.as_ref().map(|a| Sealer::new(a.key.clone())),
            gather: Gather::default(),
            replay: HashMap::new(),
            now_hint: now,
            sizes,
            paths,
            phase: Phase::Announcing,
            epoch: now,
            timers: {
                let mut t = Timers::default();
                t.set(Timer::Session, now + config.timeout);
                t.set(Timer::DataStart, now + config.wait);
                t.set(Timer::Announce, now);
                t
            },
            cursor: Cursor {
                object: 0,
                block: 0,
                esi: 0,
            },
            data_seq: 0,
            cache: BlockCache::default(),
            auto_parity: autoparity::AutoParity::default(),
            repair_queue: VecDeque::new(),
            repairs: HashMap::new(),
            peers: BTreeMap::new(),
            relays: BTreeMap::new(),
            tally: peers::Tally::new(&config.expected_names),
            acks: Acks::default(),
            await_rotation: 0,
            grtt: config.initial_grtt,
            announces: 0,
            flush_start: None,
            data_start: None,
            flushes_sent: 0,
            timed_out: false,
            aborted: None,
            requests: VecDeque::new(),
            events: VecDeque::new(),
            stats: SenderStats::default(),
            report: None,
            config,
        })
    }

    /// The BLAKE3 hash of the manifest this sender announces.
    pub fn manifest_hash(&self) -> [u8; 32] {
        self.manifest_hash
    }

    /// Counters so far.
    pub fn stats(&self) -> SenderStats {
        self.stats
    }

    /// Registered receivers so far.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Bytes of file data sent at least once (for progress display).
    pub fn progress_bytes(&self) -> u64 {
        let full_block = self.coding.block_k as u64 * self.coding.symbol_size as u64;
        let mut done: u64 = self.sizes[1..self.cursor.object.max(1) as usize]
            .iter()
            .sum::<u64>();
        if self.cursor.object >= 1 && (self.cursor.object as usize) < self.sizes.len() {
            let size = self.sizes[self.cursor.object as usize];
            done += (self.cursor.block as u64 * full_block).min(size);
        }
        done
    }

    /// The report, once the session is finished.
    pub fn report(&self) -> Option<&Arc<SenderReport>> {
        self.report.as_ref()
    }

    /// True once [`SenderEvent::Finished`] was emitted.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    fn ts_us(&self, now: Instant) -> u64 {
        // Never 0: 0 means "no timestamp" in an echo.
        now.saturating_duration_since(self.epoch).as_micros() as u64 + 1
    }

    fn timing(&self, now: Instant) -> Timing {
        Timing {
            ts_us: self.ts_us(now),
            grtt_us: self.grtt.as_micros() as u32,
            rate_bps: self.cc.rate_bps(),
            group_size: self.group_size(),
        }
    }

    /// A datagram arrived from the network (any source; the sender's own
    /// looped-back datagrams included).
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        if self.keys.is_some() {
            if self.phase == Phase::Finished {
                self.stats.ignored_received += 1;
                return;
            }
            if let Some(message) = self.open_feedback(datagram) {
                self.handle_feedback(now, message);
            }
            return;
        }
        let Ok((datagram, counter)) =
            auth::open(self.config.auth.as_ref().map(|a| &a.key), datagram)
        else {
            self.stats.auth_failed += 1;
            return;
        };
        let Ok(Packet::Control { session, message }) = wire::parse(datagram) else {
            self.stats.ignored_received += 1;
            return;
        };
        if session != self.config.session || self.phase == Phase::Finished {
            self.stats.ignored_received += 1;
            return;
        }
        if self.config.auth.is_some() {
            let Some(node) = message.feedback_node() else {
                self.stats.ignored_received += 1;
                return;
            };
            let known = self.replay.contains_key(&node);
            if (!known && self.replay.len() >= MAX_PEERS)
                || !self.replay.entry(node).or_default().accept(counter)
            {
                self.stats.replayed += 1;
                return;
            }
        }
        if !self.config.expected_keys.is_empty() && !self.admitted(&message) {
            self.stats.unadmitted += 1;
            return;
        }
        self.handle_feedback(now, message);
    }

    /// Feedback that passed authentication and admission. A relay's
    /// sender passes each REGISTER (its last chunk) and confirming STATUS
    /// on as it came ([`SenderEvent::Feedback`]): what the origin needs to
    /// know the receiver and its outcome, not its progress.
    fn handle_feedback(&mut self, now: Instant, message: Control) {
        let relayed = match &message {
            _ if !self.config.pass_on_feedback => None,
            Control::Register(m) if !m.more => Some(wire::Relayed::Register(m.clone())),
            Control::Status(m) if m.complete => Some(wire::Relayed::Status(m.clone())),
            Control::Relay(r) => Some(r.message.clone()),
            _ => None,
        };
        self.apply_feedback(now, message);
        // Passed on only when taken here: from a receiver tracked and
        // registered, not dropped as too slow.
        if let Some(message) = relayed {
            let node = message.node();
            if self
                .peers
                .get(&node)
                .is_some_and(|p| p.registered && !matches!(p.state, PeerState::TooSlow(_)))
            {
                self.events.push_back(SenderEvent::Feedback { message });
            }
        }
    }

    /// True when `node` is behind a relay: its NACK and CONGESTION cannot
    /// be its own (it does not hear this sender), and are ignored.
    fn behind_a_relay(&self, node: NodeId) -> bool {
        self.peers.get(&node).is_some_and(|p| p.via.is_some())
    }

    /// [`Sender::handle_feedback`] without passing it on.
    fn apply_feedback(&mut self, now: Instant, message: Control) {
        match message {
            Control::Register(r) => {
                if self.touch_peer_as(now, r.node, &r.name, r.echo, !r.more) {
                    let p = self.peers.get_mut(&r.node).expect("touched");
                    if self.phase == Phase::Announcing {
                        p.have = ranges::union(&p.have, &r.have);
                        p.have.truncate(MAX_PEER_HAVE_RANGES);
                        // Receivers repeat their chunks until acknowledged:
                        // duplicates are removed when the list is full,
                        // not searched for on every datagram.
                        p.have_blocks.extend(r.have_blocks);
                        if p.have_blocks.len() > MAX_PEER_HAVE_RANGES {
                            p.have_blocks.sort_unstable();
                            p.have_blocks.dedup();
                            p.have_blocks.truncate(MAX_PEER_HAVE_RANGES);
                        }
                    }
                }
            }
            Control::Nack(n) => {
                self.stats.nacks_received += 1;
                if self.behind_a_relay(n.node)
                    || !self.touch_peer(now, n.node, "", n.echo)
                    || self.too_slow(n.node)
                {
                    return;
                }
                // While the data goes out, a receiver that takes less than
                // the floor loses most of what the floor sends: repairing
                // it, for everyone, would cost more than the push until it
                // is dropped. Its NACKs count again once it keeps up, stops
                // reporting, or the data is all sent (in the flush its
                // repairs are all it needs, and a forged report cannot hold
                // them back there).
                if self.phase == Phase::Sending && self.cc.below_floor(n.node) {
                    self.stats.nacks_below_floor += 1;
                    return;
                }
                // Scale each need by the asking receiver's loss rate, so that
                // it most likely gets enough of the repair in one round.
                let loss = (n.loss as f64 / 65536.0).min(0.5);
                for e in n.entries {
                    self.stats.nack_entries_received += 1;
                    self.handle_nack_entry(now, n.node, e, loss);
                }
            }
            Control::Congestion(c) => {
                self.stats.congestion_received += 1;
                if self.behind_a_relay(c.node)
                    || !self.touch_peer(now, c.node, "", c.echo)
                    || self.too_slow(c.node)
                {
                    return;
                }
                if self.phase != Phase::Sending && self.repair_queue.is_empty() {
                    return; // late news of a window that is over
                }
                let sample = CongestionSample {
                    delivered_bps: c.delivered_bps,
                    loss: c.loss,
                    floor: c.floor,
                    first_seq: c.first_seq,
                    last_seq: c.last_seq,
                    runs: c.runs,
                };
                if let Some(pace) = self.cc.on_report(now, c.node, &sample, self.data_seq) {
                    let peer = self.peers.get_mut(&c.node).expect("touch_peer inserted it");
                    peers::set_state(&mut self.tally.active, peer, PeerState::TooSlow(pace));
                    self.cc.forget(c.node);
                    self.events.push_back(SenderEvent::Dropped {
                        node: c.node,
                        name: peer.name.clone(),
                        delivered_bps: pace,
                    });
                }
                self.apply_rate();
            }
            Control::Status(s) => {
                if !self.touch_peer(now, s.node, &s.name, s.echo) || self.too_slow(s.node) {
                    return;
                }
                let max_obj = self.sizes.len() as u32;
                // (A dropped receiver that speaks again was made active by
                // `touch_peer`.)
                let peer = self.peers.get_mut(&s.node).expect("touch_peer inserted it");
                peer.verified = s.verified;
                peer.status_seen = true;
                peer.missing = s
                    .missing
                    .into_iter()
                    .filter(|o| o.0 >= 1 && o.0 < max_obj)
                    .collect();
                // Object 0 fails when the receiver could not make the
                // tree final in a push that had no file placed there.
                peer.failed = s
                    .failed
                    .into_iter()
                    .filter(|(o, _)| o.0 < max_obj)
                    .collect();
                if s.complete {
                    peer.hook = s.hook;
                    let state = if peer.failed.is_empty() {
                        PeerState::Confirmed
                    } else {
                        PeerState::Failed
                    };
                    if peer.state != state {
                        // The STATUS repeats until acknowledged: one event.
                        self.events.push_back(SenderEvent::Confirmed {
                            node: s.node,
                            name: peer.name.clone(),
                            failed: peer.failed.len(),
                            hook: s.hook,
                        });
                    }
                    peers::set_state(&mut self.tally.active, peer, state);
                    self.push_ack(s.node, AckState::Confirmed);
                }
            }
            Control::KeyRequest(k) => {
                self.handle_key_request(now, k);
                return;
            }
            Control::Relay(r) => self.handle_relay(now, r),
            // Our own packets looped back, or another sender's.
            Control::Announce(_) | Control::Flush(_) | Control::Done(_) | Control::Key(_) => {
                self.stats.ignored_received += 1;
            }
        }
        self.check_progress(now);
    }

    /// Hands the controller's rate to the pacer.
    fn apply_rate(&mut self) {
        let rate = self.cc.rate_bps();
        let datagram = self.coding.symbol_size as usize + DATA_HEADER_LEN + self.trailer_len();
        self.pacer
            .set_rate(rate, pacing_burst(rate, self.config.max_batch, datagram));
    }

    /// The rate now, bits per second.
    pub fn rate_bps(&self) -> u64 {
        self.cc.rate_bps()
    }

    /// The caller read a block asked for by [`SenderRequest::ReadBlock`].
    pub fn handle_block(
        &mut self,
        now: Instant,
        object: ObjectId,
        block: BlockNumber,
        mut data: Vec<u8>,
    ) {
        let key = BlockKey::new(object.0, block.0);
        if !self.cache.read_arrived(&key) {
            return;
        }
        let Some(&size) = self.sizes.get(object.0 as usize) else {
            return;
        };
        let len = self.coding.block_len(size, block);
        debug_assert_eq!(data.len(), len, "caller read the wrong length");
        self.stats.bytes_read += data.len() as u64;
        let k = self.coding.block_k(size, block) as usize;
        pad_exactly(&mut data, k * self.coding.symbol_size as usize);
        self.insert_cache(key, data);
        self.check_progress(now);
    }

    /// The caller computed a [`SenderRequest::EncodeParity`] job: `symbols`
    /// is what [`ParityJob::run`] returned.
    pub fn handle_parity(
        &mut self,
        now: Instant,
        object: ObjectId,
        block: BlockNumber,
        job: ParityJob,
        symbols: Vec<u8>,
    ) {
        let key = BlockKey::new(object.0, block.0);
        let Some(cached) = self.cache.get_mut(&key) else {
            return;
        };
        // A job for an earlier copy of the block (evicted and read again)
        // still holds its bytes; the current copy has its own job.
        if !Arc::ptr_eq(&cached.source, &job.source) {
            return;
        }
        cached.encoding = false;
        if cached.parity.is_empty() {
            self.stats.blocks_encoded += 1;
        }
        let grew = cached.parity.fill(&job, symbols);
        self.cache.grew(grew);
        self.evict();
        self.check_progress(now);
    }

    /// The timer armed from [`Sender::poll_timeout`] fired.
    pub fn handle_timeout(&mut self, now: Instant) {
        let sending = self.phase == Phase::Sending || !self.repair_queue.is_empty();
        self.cc.on_timer(now, sending);
        self.apply_rate();
        self.check_progress(now);
    }

    /// Re-evaluates everything after an input: phase changes, drops, the end.
    fn check_progress(&mut self, now: Instant) {
        self.drop_orphans(now);
        self.advance_phase(now);
        if self.phase == Phase::Flushing {
            self.check_flushing(now);
        }
        self.request_reads();
    }

    /// Phase changes that sending itself can cause (cheap: called per
    /// transmit).
    fn advance_phase(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Done { .. } | Phase::Finished) {
            return;
        }
        if self.timers.is_due(Timer::Session, now) {
            self.timed_out = true;
            self.finish(now);
            return;
        }
        if self.phase == Phase::Announcing {
            let enough = self.expected_count() > 0 && self.unregistered_expected() == 0;
            if (enough || self.timers.is_due(Timer::DataStart, now)) && self.config.dry_run {
                // What each receiver holds is known from its REGISTER:
                // the report says what it lacks, and no data goes out.
                self.finish(now);
                return;
            }
            if enough || self.timers.is_due(Timer::DataStart, now) {
                self.phase = Phase::Sending;
                self.plan_skips();
                self.plan_block_skips();
                if self.peers.is_empty() && self.expected_count() == 0 {
                    // An open group nobody joined: its data would go to
                    // nobody, at a rate no feedback checks. The FLUSH
                    // rounds still give a receiver whose REGISTER was lost
                    // its chance: it NACKs what it lacks.
                    self.cursor = Cursor {
                        object: self.sizes.len() as u32,
                        block: 0,
                        esi: 0,
                    };
                }
                // Announce at once: receivers learn the final group size.
                self.data_start = Some(now);
                self.timers.stop(Timer::DataStart);
                self.timers.set(Timer::Announce, now);
                self.events.push_back(SenderEvent::DataStarted);
            }
        }
        if self.phase == Phase::Sending
            && self.cursor.object as usize >= self.sizes.len()
            && self.repair_queue.is_empty()
        {
            self.phase = Phase::Flushing;
            self.flush_start = Some(now);
            self.timers.stop(Timer::Announce);
            self.timers.set(Timer::Flush, now);
            self.events.push_back(SenderEvent::Flushing);
            self.check_flushing(now);
        }
    }

    /// How often a quiet receiver is polled during the data: `drop_after
    /// /` [`POLL_AFTER`], and at least four round-trip times.
    pub(super) fn poll_interval(&self) -> Duration {
        (self.config.drop_after / POLL_AFTER).max(self.grtt * 4)
    }

    /// During the data: drops each receiver silent for `drop_after` (since
    /// the data began, at the earliest) that left [`POLLS_BEFORE_DROP`]
    /// polls unanswered, a poll interval apart (killed, its host gone), as
    /// it happens; its congestion state is forgotten. Any feedback from it
    /// later makes it active again. O(receivers), once per heartbeat.
    fn drop_silent_during_data(&mut self, now: Instant) {
        let mut dropped = Vec::new();
        let data_start = self.data_start.unwrap_or(now);
        for (node, p) in self.peers.iter_mut() {
            let silent_for = now.saturating_duration_since(p.last_heard);
            let silent_in_data = now.saturating_duration_since(p.last_heard.max(data_start));
            if p.state == PeerState::Active
                && p.via.is_none()
                && p.unanswered_polls >= POLLS_BEFORE_DROP
                && silent_in_data >= self.config.drop_after
            {
                peers::set_state(&mut self.tally.active, p, PeerState::Dropped(silent_for));
                dropped.push(*node);
                self.events.push_back(SenderEvent::Silent {
                    node: *node,
                    name: p.name.clone(),
                    silent_for,
                });
            }
        }
        for node in dropped {
            self.cc.forget(node);
        }
    }

    /// Drops silent receivers and ends the session when every receiver is
    /// final. Called on feedback, timers and FLUSH rounds: O(1), but
    /// O(receivers) when `DropCheck` is due (once per firing, not per
    /// feedback: a group of ten thousand confirming would otherwise cost
    /// a hundred million looks).
    fn check_flushing(&mut self, now: Instant) {
        let flush_start = self.flush_start.unwrap_or(now);
        // The look at every receiver only when someone is active and its
        // timer says one may be due (or at the start of the flush), not on
        // every feedback. With no one active there is no one to drop (one
        // dropped that speaks again arms the timer: `refresh_drop_check`).
        let check =
            !self.timers.is_armed(Timer::DropCheck) || self.timers.is_due(Timer::DropCheck, now);
        if self.tally.active == 0 {
            self.timers.stop(Timer::DropCheck);
        } else if check {
            for (node, p) in self.peers.iter_mut() {
                // A receiver behind a relay is as alive as its relay
                // (`drop_orphans`).
                if p.state == PeerState::Active && p.via.is_none() {
                    let silent = now.saturating_duration_since(p.silent_since(flush_start));
                    if silent >= self.config.drop_after {
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
            self.timers
                .set_opt(Timer::DropCheck, self.next_drop_check());
            debug_assert_eq!(
                self.tally.active,
                self.peers
                    .values()
                    .filter(|p| p.state == PeerState::Active)
                    .count(),
                "the tally follows the peers"
            );
        }
        let all_final = self.tally.active == 0;
        let expected = self.expected_count();
        let since_flush = now.saturating_duration_since(flush_start);
        let done = if self.peers.is_empty() && expected == 0 {
            // Give receivers whose REGISTER was lost a few FLUSH rounds.
            self.flushes_sent >= 3 && since_flush >= self.flush_interval() * 3
        } else if self.unregistered_expected() > 0 {
            // Late joiners still get everything: wait for them a while.
            all_final && since_flush >= self.config.drop_after
        } else if expected == 0 {
            // An open group: give receivers the sender has not heard
            // from yet (lost REGISTERs) two FLUSH rounds to answer.
            all_final && self.flushes_sent >= 2
        } else {
            all_final
        };
        if done {
            self.finish(now);
        }
    }

    /// Ends the session early (e.g. on SIGINT): the sender reports what it
    /// knows, says DONE to the receivers, and finishes. `reason` becomes the
    /// report's problem.
    pub fn abort(&mut self, now: Instant, reason: &str) {
        if matches!(self.phase, Phase::Done { .. } | Phase::Finished) {
            return;
        }
        self.aborted = Some(reason.to_string());
        self.finish(now);
    }

    fn flush_interval(&self) -> Duration {
        (self.grtt * 8).clamp(Duration::from_millis(20), Duration::from_millis(500))
    }

    /// Next request for the caller: read a block, or encode parity. Drain
    /// them after the transmits, before the events (see the crate doc).
    pub fn poll_request(&mut self) -> Option<SenderRequest> {
        self.requests.pop_front()
    }

    /// Next notice for the caller.
    pub fn poll_event(&mut self) -> Option<SenderEvent> {
        self.events.pop_front()
    }

    /// When to call [`Sender::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.timers.next()?;
        if matches!(
            self.phase,
            Phase::Announcing | Phase::Sending | Phase::Flushing
        ) && self.has_sendable_data()
        {
            let len = DATA_HEADER_LEN + self.coding.symbol_size as usize + self.trailer_len();
            t = t.min(self.pacer.ready_at(len));
            if let Some(step) = self.cc.next_step() {
                t = t.min(step);
            }
        }
        // A repair round that ends lets later NACKs start a new one; no
        // timer needed: NACK arrival is the input that matters.
        Some(t)
    }

    fn has_sendable_data(&self) -> bool {
        let repair_ready = self
            .repair_queue
            .iter()
            .any(|k| self.repair_next(k).is_some_and(|(_, ready)| ready));
        let new_ready = self.may_send_new() && self.new_symbol_ready();
        repair_ready || new_ready || self.new_data_at_empty_object()
    }

    /// New symbols go out while sending, and the manifest also while
    /// registering.
    fn may_send_new(&self) -> bool {
        (self.cursor.object as usize) < self.sizes.len()
            && match self.phase {
                Phase::Sending => true,
                Phase::Announcing => self.cursor.object == 0,
                _ => false,
            }
    }

    /// True when the cursor stands on an object without blocks (it advances
    /// without sending anything).
    fn new_data_at_empty_object(&self) -> bool {
        self.phase == Phase::Sending
            && (self.cursor.object as usize) < self.sizes.len()
            && self
                .coding
                .block_count(self.sizes[self.cursor.object as usize])
                == 0
    }

    /// Writes the next datagram (or batch) into `buf` (cleared first).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        buf.clear();
        let mut gather = std::mem::take(&mut self.gather);
        let t = self.poll_gather(now, &mut gather);
        gather.copy_to(buf);
        self.gather = gather;
        t
    }

    /// [`Sender::poll_transmit`] without the copy: the batch goes into
    /// `out` as pieces, each source symbol a range of its cached block (see
    /// [`Gather`]), for a gathering send. The same datagrams in the same
    /// order as `poll_transmit` writes them.
    pub fn poll_gather(&mut self, now: Instant, out: &mut Gather) -> Option<Transmit> {
        out.clear();
        self.now_hint = now;
        match self.phase {
            Phase::Finished => return None,
            Phase::Done { sent } => {
                if !self.timers.is_due(Timer::Done, now) {
                    return None;
                }
                let success = self.report.as_ref().is_some_and(|r| r.success);
                self.write_control(out, &Control::Done(Done { success }));
                let sent = sent + 1;
                if sent >= DONE_REPEATS {
                    self.phase = Phase::Finished;
                    self.timers.stop_all();
                    let report = self.report.clone().expect("finish() set the report");
                    self.events.push_back(SenderEvent::Finished(report));
                } else {
                    self.phase = Phase::Done { sent };
                    // Every receiver confirmed: they are idle and take the
                    // repeats back to back (a complete receiver that missed
                    // them all still ends, at its idle timeout). Otherwise
                    // a receiver may still be draining a full socket buffer:
                    // spread the repeats over a burst of loss.
                    let gap = if success {
                        Duration::ZERO
                    } else {
                        (self.grtt / 2).clamp(DONE_INTERVAL_MIN, DONE_INTERVAL_MAX)
                    };
                    self.timers.set(Timer::Done, now + gap);
                }
                return Some(self.single(out));
            }
            _ => {}
        }
        self.advance_phase(now);
        if matches!(self.phase, Phase::Done { .. }) {
            return self.poll_gather(now, out);
        }
        // Control messages first: they are small and time-critical.
        if let Some(key) = self.keys.as_mut().and_then(|k| k.next_due()) {
            self.write_control(out, &Control::Key(key));
            return Some(self.single(out));
        }
        if self.write_sealed_announce(out) {
            return Some(self.single(out));
        }
        if self.timers.is_due(Timer::Announce, now) {
            if self.phase == Phase::Announcing
                && self.cursor.object > 0
                && self.sizes[0] <= MANIFEST_RESEND_MAX
            {
                // Send the manifest again for receivers that lost some of it.
                self.cursor = Cursor {
                    object: 0,
                    block: 0,
                    esi: 0,
                };
            }
            let msg = self.announce(now);
            self.write_control(out, &msg);
            if let Some(keys) = self.keys.as_mut() {
                keys.copy_announce(&msg);
            }
            let gap = if self.phase == Phase::Announcing {
                self.announces += 1;
                announce_gap(self.announces)
            } else {
                HEARTBEAT_INTERVAL
            };
            self.timers.set(Timer::Announce, now + gap);
            if self.phase == Phase::Sending {
                self.drop_silent_during_data(now);
            }
            return Some(self.single(out));
        }
        if self.timers.is_due(Timer::Flush, now) {
            let msg = self.flush(now);
            self.write_control(out, &msg);
            self.flushes_sent += 1;
            self.timers.set(Timer::Flush, now + self.flush_interval());
            // The end may wait for a number of FLUSH rounds.
            self.check_flushing(now);
            return Some(self.single(out));
        }
        // Data: repairs before new symbols, paced.
        let mut segment = 0;
        let mut count = 0;
        while count < self.config.max_batch {
            self.skip_empty_objects();
            let Some((pick, len)) = self.pick() else {
                break;
            };
            let wire_len = DATA_HEADER_LEN + len + self.trailer_len();
            if count > 0 && wire_len != segment {
                break;
            }
            if !self.pacer.try_take(now, wire_len) {
                break;
            }
            self.emit(now, pick, out);
            segment = wire_len;
            count += 1;
        }
        self.request_reads();
        if count == 0 {
            return None;
        }
        self.stats.packets_sent += count as u64;
        self.stats.bytes_sent += out.size() as u64;
        self.cc.on_sent(out.size());
        Some(Transmit {
            destination: Destination::Group,
            size: out.size(),
            segment_size: segment,
        })
    }
}

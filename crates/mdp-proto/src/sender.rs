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
//! File data enters through [`SenderEvent::ReadBlock`] requests that the
//! caller answers with [`Sender::handle_block`]; the sender keeps a bounded
//! cache of blocks for repairs and asks again for a block it evicted. Parity
//! symbols are computed by the caller too, off the loop that sends:
//! [`SenderEvent::EncodeParity`], answered with [`Sender::handle_parity`].
//! A repair whose parity is not there yet waits; other symbols go first.

use crate::auth::{self, AuthConfig, ReplayWindow, Sealer};
pub use crate::cc::RateMode;
use crate::cc::{CongestionSample, RateController};
use crate::fec::{BlockParity, ParityJob};
use crate::ids::{BlockNumber, NodeId, ObjectId, SessionId, SymbolId};
use crate::layout::Coding;
use crate::limits::{
    DATA_HEADER_LEN, MANIFEST_RESEND_MAX, MAX_BLOCK_BYTES, MAX_NODE_LIST, MAX_PEERS,
    MAX_SESSION_BLOCKS, TRAILER_LEN,
};
use crate::manifest::{EntryKind, Manifest};
use crate::pacer::Pacer;
use crate::transmit::{Destination, Gather, Transmit};
use crate::wire::{
    self, Ack, AckState, Announce, Control, DataHeader, Done, Echo, FailReason, Flush, NackEntry,
    Packet, Timing, FLAG_REPAIR,
};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most ranges of already-held files kept per receiver.
const MAX_PEER_HAVE_RANGES: usize = 1024;

/// Most receivers for which blocks held from an interrupted push are
/// matched up (the work grows with receivers × ranges).
const MAX_BLOCK_SKIP_PEERS: usize = 1024;

/// Sender settings. [`SenderConfig::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct SenderConfig {
    /// This session's id (random per push).
    pub session: SessionId,
    /// Symbol size in bytes; even, 16..=[`crate::limits::MAX_SYMBOL_SIZE`].
    pub symbol_size: u16,
    /// Source symbols per block (k).
    pub block_k: u16,
    /// Parity symbols defined per block (r).
    pub parity: u16,
    /// Parity symbols sent with every block before any NACK.
    pub proactive: u16,
    /// Send rate (UDP payload bits per second): fixed, or adaptive.
    pub rate: RateMode,
    /// Receivers to wait for (0: open group). Ignored when `expected_names`
    /// is not empty.
    pub expected_receivers: u32,
    /// A closed group: the names of the receivers that must confirm. The
    /// sender starts sending as soon as all of them registered, and the push
    /// succeeds only when all of them confirmed every file; receivers with
    /// other names are served and reported but do not count.
    pub expected_names: Vec<String>,
    /// How long to wait for registrations before sending data.
    pub wait: Duration,
    /// Bound on the whole session, from `Sender::new` to DONE.
    pub timeout: Duration,
    /// A receiver silent this long during flushing is dropped.
    pub drop_after: Duration,
    /// Group round-trip time assumed before any measurement.
    pub initial_grtt: Duration,
    /// Bytes of block data kept for repairs.
    pub cache_bytes: usize,
    /// Blocks read ahead of the send position.
    pub readahead_blocks: usize,
    /// Most datagrams in one [`Transmit`] batch.
    pub max_batch: usize,
    /// With a key: seal every datagram and accept only sealed feedback.
    pub auth: Option<AuthConfig>,
    /// Ask receivers to remove what the pushed directories hold beyond
    /// the manifest, after a complete push (`--delete`).
    pub delete: bool,
}

impl SenderConfig {
    /// Defaults for a session id.
    pub fn new(session: SessionId) -> Self {
        SenderConfig {
            session,
            symbol_size: 1400,
            block_k: 192,
            parity: 64,
            proactive: 0,
            rate: RateMode::Adaptive {
                min_bps: 10_000_000,
                max_bps: crate::cc::MAX_BPS,
                start_bps: crate::cc::START_BPS,
            },
            expected_receivers: 0,
            expected_names: Vec::new(),
            wait: Duration::from_secs(1),
            timeout: Duration::from_secs(600),
            drop_after: Duration::from_secs(5),
            initial_grtt: Duration::from_millis(5),
            cache_bytes: 32 << 20,
            readahead_blocks: 8,
            max_batch: 1,
            auth: None,
            delete: false,
        }
    }

    fn coding(&self) -> Coding {
        Coding {
            symbol_size: self.symbol_size,
            block_k: self.block_k,
            parity: self.parity,
        }
    }

    /// Checks the settings; the message says what to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.symbol_size < 16
            || !self.symbol_size.is_multiple_of(2)
            || self.symbol_size > crate::limits::MAX_SYMBOL_SIZE
        {
            return Err(format!(
                "symbol size must be an even number from 16 to {}",
                crate::limits::MAX_SYMBOL_SIZE
            ));
        }
        if self.block_k == 0 || self.block_k > crate::limits::MAX_BLOCK_K {
            return Err(format!(
                "block size must be 1 to {} symbols",
                crate::limits::MAX_BLOCK_K
            ));
        }
        if self.parity == 0 || self.parity > crate::limits::MAX_PARITY {
            return Err(format!(
                "parity must be 1 to {} symbols",
                crate::limits::MAX_PARITY
            ));
        }
        if self.proactive > self.parity {
            return Err("proactive parity cannot exceed the parity per block".into());
        }
        if let RateMode::Adaptive {
            min_bps, max_bps, ..
        } = self.rate
        {
            if min_bps > max_bps {
                return Err("--min-rate is above --max-rate".into());
            }
        }
        if self.rate.min() < 8_000 {
            return Err("rate must be at least 8 kbit/s".into());
        }
        let block_bytes = self.block_k as usize * self.symbol_size as usize;
        if block_bytes > MAX_BLOCK_BYTES {
            return Err(format!(
                "a block of {} symbols of {} bytes is {} MiB; block size × symbol size must be at most {} MiB",
                self.block_k,
                self.symbol_size,
                block_bytes >> 20,
                MAX_BLOCK_BYTES >> 20
            ));
        }
        if self.cache_bytes < self.min_cache_bytes() {
            return Err("block cache too small for the read-ahead window".into());
        }
        Ok(())
    }

    /// The smallest block cache that holds the read-ahead window and a
    /// block being repaired.
    pub fn min_cache_bytes(&self) -> usize {
        self.block_k as usize * self.symbol_size as usize * (self.readahead_blocks + 2)
    }
}

/// What the caller must do or know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SenderEvent {
    /// Read `len` bytes of object `object` at `offset` and pass them to
    /// [`Sender::handle_block`].
    ReadBlock {
        /// File object.
        object: ObjectId,
        /// Block.
        block: BlockNumber,
        /// Byte offset in the file.
        offset: u64,
        /// Bytes to read.
        len: usize,
    },
    /// Compute parity symbols with [`ParityJob::run`] and pass them to
    /// [`Sender::handle_parity`]. A parity symbol costs `k` multiply-adds per
    /// byte (a whole GF(2^16) block far more), so the caller runs it off
    /// the loop that sends; meanwhile the sender sends other symbols.
    EncodeParity {
        /// File object.
        object: ObjectId,
        /// Block.
        block: BlockNumber,
        /// What to compute.
        job: ParityJob,
    },
    /// A receiver could not take the minimum rate and was dropped.
    Dropped {
        /// Its node id.
        node: NodeId,
        /// Its name.
        name: String,
        /// The rate that last reached it, bits per second.
        delivered_bps: u64,
    },
    /// A receiver joined.
    Registered {
        /// Its node id.
        node: NodeId,
        /// Its name.
        name: String,
    },
    /// Data transmission begins (registration phase over).
    DataStarted,
    /// All data sent; waiting for confirmations.
    Flushing,
    /// The session is over; the sender has nothing more to send.
    Finished(Arc<SenderReport>),
}

/// A receiver's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It confirmed every file.
    Confirmed,
    /// It finished, but some files failed (see `failed`).
    Failed,
    /// It had not confirmed when the session ended.
    Incomplete,
    /// It went silent and was dropped.
    Dropped {
        /// How long it had been silent.
        silent_for: Duration,
    },
    /// It could not take the minimum rate and was dropped.
    TooSlow {
        /// The rate (bits per second) that last reached it.
        delivered_bps: u64,
        /// The minimum rate of the push.
        min_bps: u64,
    },
    /// An expected receiver that never registered.
    NeverRegistered,
}

impl Verdict {
    /// A short description for one-line summaries.
    pub fn describe(&self) -> &'static str {
        match self {
            Verdict::Confirmed => "confirmed",
            Verdict::Failed => "some files failed",
            Verdict::Incomplete => "incomplete",
            Verdict::Dropped { .. } => "dropped: silent",
            Verdict::TooSlow { .. } => "dropped: too slow",
            Verdict::NeverRegistered => "never registered",
        }
    }
}

/// One receiver in the final report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiverReport {
    /// Node id (`None` for an expected receiver that never registered).
    pub node: Option<NodeId>,
    /// Name it registered with (or was expected under).
    pub name: String,
    /// True when its confirmation is required for success: every receiver
    /// of a group given by count, only the named ones of a closed group.
    pub expected: bool,
    /// Verdict.
    pub verdict: Verdict,
    /// Files verified and placed, as last reported.
    pub verified: u32,
    /// Files it still missed (the first few), by path.
    pub missing: Vec<String>,
    /// Files that failed, by path, with the reason.
    pub failed: Vec<(String, FailReason)>,
}

/// The outcome of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderReport {
    /// Session id.
    pub session: SessionId,
    /// True when every expected receiver confirmed every file.
    pub success: bool,
    /// Receivers that were expected (0: open group).
    pub expected: u32,
    /// Expected receivers that confirmed every file.
    pub confirmed: u32,
    /// Why the session is not a success, in one line.
    pub problem: Option<String>,
    /// True when the session deadline ended it.
    pub timed_out: bool,
    /// Bytes of file data per DATA datagram (the session's symbol size).
    pub symbol_size: u16,
    /// Every receiver that registered.
    pub receivers: Vec<ReceiverReport>,
    /// Counters at the end.
    pub stats: SenderStats,
    /// How the rate behaved.
    pub rate: RateSummary,
}

/// The rate control's part of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateSummary {
    /// True for an adaptive rate, false for `--rate`.
    pub adaptive: bool,
    /// The rate at the end, bits per second.
    pub final_bps: u64,
    /// The lowest rate set, bits per second.
    pub lowest_bps: u64,
    /// The receiver whose congestion reports cut the rate most often (the
    /// one the push was paced to), with the number of cuts it caused.
    pub limited_by: Option<(String, u32)>,
}

/// Counters. `bytes_sent` counts UDP payload bytes of every datagram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Datagrams sent.
    pub packets_sent: u64,
    /// UDP payload bytes sent.
    pub bytes_sent: u64,
    /// Source and proactive parity symbols sent once.
    pub data_symbols_sent: u64,
    /// Repair symbols sent in answer to NACKs.
    pub repair_symbols_sent: u64,
    /// Control datagrams sent.
    pub control_sent: u64,
    /// NACK datagrams received.
    pub nacks_received: u64,
    /// NACK entries received.
    pub nack_entries_received: u64,
    /// Datagrams received that were not valid mdp packets for this session.
    pub ignored_received: u64,
    /// Blocks whose parity was computed.
    pub blocks_encoded: u64,
    /// CONGESTION reports received.
    pub congestion_received: u64,
    /// Bytes of file data the caller passed in.
    pub bytes_read: u64,
    /// Files not sent because every receiver already had them.
    pub files_skipped: u64,
    /// Blocks of other files not sent because every receiver already had
    /// them (from an interrupted push).
    pub blocks_skipped: u64,
    /// Bytes of the skipped files and blocks.
    pub bytes_skipped: u64,
    /// Feedback dropped by authentication (bad tag, unsealed with a key,
    /// sealed without one).
    pub auth_failed: u64,
    /// Authentic feedback dropped as a replay.
    pub replayed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Announcing,
    Sending,
    Flushing,
    Done { sent: u8 },
    Finished,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PeerState {
    Active,
    Confirmed,
    Failed,
    Dropped(Duration),
    /// Could not take the minimum rate: its feedback is ignored from now on.
    TooSlow(u64),
}

#[derive(Debug)]
struct Peer {
    name: String,
    /// Its registration is complete (the last REGISTER of its have-list, or
    /// any other feedback, arrived).
    registered: bool,
    /// Files it already holds, as ascending disjoint ranges
    /// `(first object, count)` (at most [`MAX_PEER_HAVE_RANGES`]).
    have: Vec<(u32, u32)>,
    /// Blocks of files it holds in part: `(object, first block, count)`
    /// (at most [`MAX_PEER_HAVE_RANGES`]).
    have_blocks: Vec<(u32, u32, u32)>,
    state: PeerState,
    last_heard: Instant,
    verified: u32,
    /// False until its first STATUS: then `missing` means "everything".
    status_seen: bool,
    missing: Vec<ObjectId>,
    failed: Vec<(ObjectId, FailReason)>,
}

type BlockKey = (u32, u32);

#[derive(Debug)]
struct CachedBlock {
    /// `k * T` bytes, zero-padded (shared with parity jobs).
    source: Arc<Vec<u8>>,
    /// The parity symbols computed so far.
    parity: BlockParity,
    /// A [`SenderEvent::EncodeParity`] for it is out.
    encoding: bool,
    last_use: u64,
}

/// Memory a cached block costs beyond its buffer: its map and LRU
/// entries, the shared buffer's header, the allocator's. Counted, so that
/// [`SenderConfig::cache_bytes`] bounds what the cache really holds when blocks are small: a
/// push of 50,000 files of at most 800 bytes (a one-symbol block each) took
/// the sender to 79 MiB when only the symbols were counted.
const CACHED_BLOCK_OVERHEAD: usize = 192;

/// Pads `data` with zeros to `len` bytes, growing it to exactly that:
/// `resize` alone doubles the buffer of a short last block (8,000 bytes
/// padded to 8,400 took 16,000), and cached blocks are most of the
/// sender's memory.
fn pad_exactly(data: &mut Vec<u8>, len: usize) {
    data.reserve_exact(len.saturating_sub(data.len()));
    data.resize(len, 0);
}

impl CachedBlock {
    fn bytes(&self) -> usize {
        self.source.capacity() + self.parity.held_bytes() + CACHED_BLOCK_OVERHEAD
    }
}

#[derive(Debug)]
struct RepairState {
    /// Symbols to send in the current round (`sources` first).
    queued: u32,
    /// Source symbols to resend, while one receiver alone asked for the
    /// block in this round and named what it lacks: resending exactly
    /// those spares it a decode. Emptied when another receiver asks.
    sources: VecDeque<u16>,
    /// The receiver `sources` are for.
    lone: Option<NodeId>,
    /// Symbols sent in the current round.
    round_sent: u32,
    /// NACKs until this instant belong to the current round.
    round_end: Instant,
    /// Next encoding symbol id to send (cycles through parity, then source).
    next_esi: u32,
}

/// Position of the next new symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cursor {
    object: u32,
    block: u32,
    esi: u32,
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
    deadline: Instant,
    data_start_deadline: Instant,
    pacer: Pacer,
    cc: RateController,
    cursor: Cursor,
    data_seq: u32,
    cache: HashMap<BlockKey, CachedBlock>,
    cache_bytes: usize,
    use_counter: u64,
    /// The cached blocks by last use (`CachedBlock::last_use` → key), oldest
    /// first: eviction takes from the front.
    lru: BTreeMap<u64, BlockKey>,
    reads_pending: HashSet<BlockKey>,
    /// Blocks with repair symbols queued, in request order; a block is here
    /// exactly while its `RepairState::queued > 0` (checked in O(1) that way).
    repair_queue: VecDeque<BlockKey>,
    repairs: HashMap<BlockKey, RepairState>,
    peers: BTreeMap<NodeId, Peer>,
    acks: VecDeque<(Ack, u8)>,
    acks_queued: HashSet<(NodeId, AckState)>,
    await_rotation: usize,
    grtt: Duration,
    next_announce: Instant,
    /// ANNOUNCEs sent while registering (they start close together).
    announces: u32,
    next_flush: Instant,
    flush_start: Option<Instant>,
    flushes_sent: u32,
    next_done: Instant,
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
    events: VecDeque<SenderEvent>,
    stats: SenderStats,
    report: Option<Arc<SenderReport>>,
    /// Scratch batch of [`Sender::poll_transmit`] (the copying path).
    gather: Gather,
}

const PACING_BURST: Duration = Duration::from_millis(2);

/// The pacer's bucket: what the rate allows in [`PACING_BURST`], so that a
/// caller whose timer fires about once a millisecond still reaches the
/// rate; at least a few batches.
fn pacing_burst(rate_bps: u64, max_batch: usize, datagram: usize) -> usize {
    ((rate_bps as f64 / 8.0 * PACING_BURST.as_secs_f64()) as usize).max(max_batch.max(4) * datagram)
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
/// DONE goes out [`DONE_REPEATS`] times: back to back after a push every
/// receiver confirmed, else half a GRTT apart within these bounds: spread
/// over more than a burst of loss on the group's network, but not holding
/// the sender's exit up by more than the round trips of that network.
const DONE_INTERVAL_MIN: Duration = Duration::from_millis(1);
const DONE_INTERVAL_MAX: Duration = Duration::from_millis(10);
const DONE_REPEATS: u8 = 5;
const ACK_REPEATS: u8 = 3;
const MIN_GRTT: Duration = Duration::from_millis(1);
const MAX_GRTT: Duration = Duration::from_secs(2);

impl Sender {
    /// Starts a session that delivers `manifest`. Fails on invalid settings.
    pub fn new(config: SenderConfig, manifest: Manifest, now: Instant) -> Result<Sender, String> {
        config.validate()?;
        manifest.validate().map_err(|e| e.to_string())?;
        let manifest_bytes = manifest.encode();
        if manifest_bytes.len() as u64 > crate::manifest::MAX_MANIFEST_LEN {
            return Err("too many files for one push: split it".into());
        }
        let manifest_hash = *blake3::hash(&manifest_bytes).as_bytes();
        let coding = config.coding();
        let blocks: u64 = manifest
            .files()
            .map(|(_, e)| match e.kind {
                EntryKind::File { size, .. } => coding.block_count_wide(size),
                EntryKind::Dir => 0,
            })
            .sum::<u64>()
            + coding.block_count_wide(manifest_bytes.len() as u64);
        if blocks > MAX_SESSION_BLOCKS {
            return Err(format!(
                "{blocks} blocks is more than receivers track ({}): raise --symbol-size or --block-size, or split the push",
                MAX_SESSION_BLOCKS
            ));
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
        let trailer = if config.auth.is_some() {
            TRAILER_LEN
        } else {
            0
        };
        let datagram = config.symbol_size as usize + DATA_HEADER_LEN + trailer;
        let cc = RateController::new(config.rate, now);
        let rate = cc.rate_bps();
        Ok(Sender {
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
            deadline: now + config.timeout,
            data_start_deadline: now + config.wait,
            cursor: Cursor {
                object: 0,
                block: 0,
                esi: 0,
            },
            data_seq: 0,
            cache: HashMap::new(),
            cache_bytes: 0,
            use_counter: 0,
            lru: BTreeMap::new(),
            reads_pending: HashSet::new(),
            repair_queue: VecDeque::new(),
            repairs: HashMap::new(),
            peers: BTreeMap::new(),
            acks: VecDeque::new(),
            acks_queued: HashSet::new(),
            await_rotation: 0,
            grtt: config.initial_grtt,
            next_announce: now,
            announces: 0,
            next_flush: now,
            flush_start: None,
            flushes_sent: 0,
            next_done: now,
            timed_out: false,
            aborted: None,
            events: VecDeque::new(),
            stats: SenderStats::default(),
            report: None,
            config,
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> SenderStats {
        self.stats
    }

    /// Registered receivers so far.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Receivers that confirmed so far.
    pub fn confirmed_count(&self) -> usize {
        self.peers
            .values()
            .filter(|p| p.state == PeerState::Confirmed)
            .count()
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

    /// The group size receivers are told (and time their NACKs by): the
    /// receivers known or expected, at least 1.
    fn group_size(&self) -> u32 {
        self.peers
            .len()
            .max(self.config.expected_receivers as usize)
            .max(1) as u32
    }

    // ---------------------------------------------------------------- input

    /// A datagram arrived from the network (any source; the sender's own
    /// looped-back datagrams included).
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
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
            let node = match &message {
                Control::Register(m) => m.node,
                Control::Nack(m) => m.node,
                Control::Status(m) => m.node,
                Control::Congestion(m) => m.node,
                _ => {
                    self.stats.ignored_received += 1;
                    return;
                }
            };
            let known = self.replay.contains_key(&node);
            if (!known && self.replay.len() >= MAX_PEERS)
                || !self.replay.entry(node).or_default().accept(counter)
            {
                self.stats.replayed += 1;
                return;
            }
        }
        match message {
            Control::Register(r) => {
                if self.touch_peer_as(now, r.node, &r.name, r.echo, !r.more) {
                    let p = self.peers.get_mut(&r.node).expect("touched");
                    if self.phase == Phase::Announcing {
                        p.have = union_ranges(&p.have, &r.have);
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
                if !self.touch_peer(now, n.node, "", n.echo) || self.too_slow(n.node) {
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
                if !self.touch_peer(now, c.node, "", c.echo) || self.too_slow(c.node) {
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
                if self.cc.on_report(now, c.node, &sample, self.data_seq) {
                    let peer = self.peers.get_mut(&c.node).expect("touch_peer inserted it");
                    peer.state = PeerState::TooSlow(c.delivered_bps);
                    self.cc.forget(c.node);
                    self.events.push_back(SenderEvent::Dropped {
                        node: c.node,
                        name: peer.name.clone(),
                        delivered_bps: c.delivered_bps,
                    });
                }
                self.apply_rate();
            }
            Control::Status(s) => {
                if !self.touch_peer(now, s.node, &s.name, s.echo) || self.too_slow(s.node) {
                    return;
                }
                let max_obj = self.sizes.len() as u32;
                let peer = self.peers.get_mut(&s.node).expect("touch_peer inserted it");
                if matches!(peer.state, PeerState::Dropped(_)) {
                    // A dropped receiver came back: it is tracked again.
                    peer.state = PeerState::Active;
                }
                peer.verified = s.verified;
                peer.status_seen = true;
                peer.missing = s
                    .missing
                    .into_iter()
                    .filter(|o| o.0 >= 1 && o.0 < max_obj)
                    .collect();
                peer.failed = s
                    .failed
                    .into_iter()
                    .filter(|(o, _)| o.0 >= 1 && o.0 < max_obj)
                    .collect();
                if s.complete {
                    peer.state = if peer.failed.is_empty() {
                        PeerState::Confirmed
                    } else {
                        PeerState::Failed
                    };
                    self.push_ack(s.node, AckState::Confirmed);
                }
            }
            // Our own packets looped back, or another sender's.
            Control::Announce(_) | Control::Flush(_) | Control::Done(_) => {
                self.stats.ignored_received += 1;
            }
        }
        self.check_progress(now);
    }

    fn too_slow(&self, node: NodeId) -> bool {
        self.peers
            .get(&node)
            .is_some_and(|p| matches!(p.state, PeerState::TooSlow(_)))
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

    /// Records feedback other than REGISTER from `node`; returns false when
    /// it cannot be tracked.
    fn touch_peer(&mut self, now: Instant, node: NodeId, name: &str, echo: Echo) -> bool {
        self.touch_peer_as(now, node, name, echo, true)
    }

    /// Records feedback from `node`, which completes its registration when
    /// `registers`; returns false when it cannot be tracked.
    fn touch_peer_as(
        &mut self,
        now: Instant,
        node: NodeId,
        name: &str,
        echo: Echo,
        registers: bool,
    ) -> bool {
        if echo.ts_us != 0 {
            let now_us = self.ts_us(now);
            if let Some(rtt) = now_us
                .checked_sub(echo.ts_us)
                .and_then(|d| d.checked_sub(echo.delay_us as u64))
            {
                self.update_grtt(Duration::from_micros(rtt));
            }
        }
        if let Some(p) = self.peers.get_mut(&node) {
            p.last_heard = now;
            if p.name.is_empty() && !name.is_empty() {
                p.name = name.to_string();
            }
            if registers && !p.registered {
                p.registered = true;
                let name = p.name.clone();
                self.push_ack(node, AckState::Registered);
                self.events
                    .push_back(SenderEvent::Registered { node, name });
            }
            return true;
        }
        if self.peers.len() >= MAX_PEERS {
            return false;
        }
        self.peers.insert(
            node,
            Peer {
                name: name.to_string(),
                registered: registers,
                have: Vec::new(),
                have_blocks: Vec::new(),
                state: PeerState::Active,
                last_heard: now,
                verified: 0,
                status_seen: false,
                missing: Vec::new(),
                failed: Vec::new(),
            },
        );
        if registers {
            self.push_ack(node, AckState::Registered);
            self.events.push_back(SenderEvent::Registered {
                node,
                name: name.to_string(),
            });
        }
        true
    }

    fn update_grtt(&mut self, sample: Duration) {
        let sample = sample.clamp(MIN_GRTT, MAX_GRTT);
        // Rise fast, fall slowly (as NORM does): a too-small GRTT causes
        // NACK implosion, a too-large one only slows repairs a little.
        self.grtt = if sample > self.grtt {
            (self.grtt + sample * 3) / 4
        } else {
            (self.grtt * 15 + sample) / 16
        }
        .clamp(MIN_GRTT, MAX_GRTT);
    }

    /// Queues an acknowledgement, once per node and state: the queue holds
    /// at most two entries per known node whatever the feedback, and each
    /// push is O(1).
    fn push_ack(&mut self, node: NodeId, state: AckState) {
        if self.acks_queued.insert((node, state)) {
            self.acks.push_back((Ack { node, state }, ACK_REPEATS));
        }
    }

    fn handle_nack_entry(&mut self, now: Instant, node: NodeId, e: NackEntry, loss: f64) {
        let Some(&size) = self.sizes.get(e.object.0 as usize) else {
            return;
        };
        if e.block.0 >= self.coding.block_count(size) || e.need == 0 {
            return;
        }
        // A block the sender has not sent yet cannot be missing.
        let key = (e.object.0, e.block.0);
        if (e.object.0, e.block.0) >= (self.cursor.object, self.cursor.block) {
            return;
        }
        let k = self.coding.block_k(size, e.block) as u32;
        let need = self.scaled_need(e.need, loss).min(k);
        // Repairs continue after the proactive parity; when that used up
        // every parity symbol, they start over with the source symbols.
        let r = self.coding.block_parity(k as u16) as u32;
        let start_esi = (k + (self.config.proactive as u32).min(r)) % (k + r);
        // Only for a lone receiver: in a group, a second NACK for the block
        // usually follows within the round, and sources resent for the
        // first would have served it alone (in the simulator, 10 receivers
        // at 5 % loss sent 1.15 wire bytes per byte that way against 1.10
        // with parity only).
        // The same test as the receivers', which name sources only then.
        let named = if self.group_size() <= 1 {
            Self::named_sources(e.need, e.missing, k)
        } else {
            None
        };
        let st = self.repairs.entry(key).or_insert(RepairState {
            queued: 0,
            sources: VecDeque::new(),
            lone: None,
            round_sent: 0,
            round_end: now,
            next_esi: start_esi,
        });
        // A block is in `repair_queue` exactly while it has symbols queued.
        let was_queued = st.queued > 0;
        let in_round = was_queued || now < st.round_end;
        let same_named = st.lone == Some(node) && named.is_some();
        if in_round && st.lone.is_some() && !same_named {
            // Another receiver asks (or this one without naming): parity
            // serves everyone. What was resent served only the receiver
            // that named it, so the round starts over.
            st.sources.clear();
            st.lone = None;
            st.round_sent = 0;
        }
        if in_round && same_named {
            // The same receiver again: add what it names and is not queued
            // (a resent symbol it lost again).
            for i in named.into_iter().flatten() {
                if !st.sources.contains(&i) {
                    st.sources.push_back(i);
                    st.queued += 1;
                }
            }
        } else if in_round {
            // NACKs sent before the receiver saw this round's repairs: top up
            // to the largest need, do not add a second round.
            let have = st.queued + st.round_sent;
            if need > have {
                st.queued += need - have;
            }
        } else if let Some(sources) = named {
            // No margin: a resent symbol that is lost again is named in the
            // receiver's next NACK; parity here would mean a decode.
            st.round_sent = 0;
            st.queued = sources.len() as u32;
            st.sources = sources;
            st.lone = Some(node);
        } else {
            st.round_sent = 0;
            st.queued = need;
            st.sources.clear();
            st.lone = None;
        }
        if st.queued > 0 && !was_queued {
            self.repair_queue.push_back(key);
        }
    }

    /// The source symbols a NACK entry names (`missing`), when they are
    /// usable: all below `k`, distinct, and exactly `need` of them.
    fn named_sources(need: u16, mut missing: Vec<u16>, k: u32) -> Option<VecDeque<u16>> {
        let named = missing.len();
        if named == 0 || named != need as usize {
            return None;
        }
        missing.sort_unstable();
        missing.dedup();
        (missing.len() == named && missing.iter().all(|&i| (i as u32) < k)).then(|| missing.into())
    }

    /// How many repair symbols to send for a NACKed `need`, so that one round
    /// most likely suffices: scaled by the NACKer's loss rate `p`, plus a
    /// margin of `z` standard deviations of the repair's own losses, with
    /// `z = 1 + sqrt(2 ln N)` growing slowly with the group size `N` (the
    /// worst of N receivers sits about sqrt(2 ln N) deviations out).
    fn scaled_need(&self, need: u16, p: f64) -> u32 {
        let need = need as f64;
        let n = self.peers.len().max(1) as f64;
        let z = 1.0 + (2.0 * n.ln()).sqrt();
        ((need + z * (need * p).sqrt()) / (1.0 - p)).ceil() as u32
    }

    /// The caller read a block asked for by [`SenderEvent::ReadBlock`].
    pub fn handle_block(
        &mut self,
        now: Instant,
        object: ObjectId,
        block: BlockNumber,
        mut data: Vec<u8>,
    ) {
        let key = (object.0, block.0);
        if !self.reads_pending.remove(&key) {
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

    /// The caller computed a [`SenderEvent::EncodeParity`] job: `symbols`
    /// is what [`ParityJob::run`] returned.
    pub fn handle_parity(
        &mut self,
        now: Instant,
        object: ObjectId,
        block: BlockNumber,
        job: ParityJob,
        symbols: Vec<u8>,
    ) {
        let key = (object.0, block.0);
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
        self.cache_bytes += cached.parity.fill(&job, symbols);
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

    // ------------------------------------------------------------- progress

    /// Re-evaluates everything after an input: phase changes, drops, the end.
    fn check_progress(&mut self, now: Instant) {
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
        if now >= self.deadline {
            self.timed_out = true;
            self.finish(now);
            return;
        }
        if self.phase == Phase::Announcing {
            let enough = self.expected_count() > 0 && self.unregistered_expected() == 0;
            if enough || now >= self.data_start_deadline {
                self.phase = Phase::Sending;
                self.plan_skips();
                self.plan_block_skips();
                // Announce at once: receivers learn the final group size.
                self.next_announce = now;
                self.events.push_back(SenderEvent::DataStarted);
            }
        }
        if self.phase == Phase::Sending
            && self.cursor.object as usize >= self.sizes.len()
            && self.repair_queue.is_empty()
        {
            self.phase = Phase::Flushing;
            self.flush_start = Some(now);
            self.next_flush = now;
            self.events.push_back(SenderEvent::Flushing);
            self.check_flushing(now);
        }
    }

    /// Drops silent receivers and ends the session when every receiver is
    /// final. O(receivers): called on feedback, timers and FLUSH rounds, not
    /// per data packet.
    fn check_flushing(&mut self, now: Instant) {
        let flush_start = self.flush_start.unwrap_or(now);
        for p in self.peers.values_mut() {
            if p.state == PeerState::Active {
                let silent_since = p.last_heard.max(flush_start);
                let silent = now.saturating_duration_since(silent_since);
                if silent >= self.config.drop_after {
                    p.state = PeerState::Dropped(now.saturating_duration_since(p.last_heard));
                }
            }
        }
        let all_final = self.peers.values().all(|p| p.state != PeerState::Active);
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

    /// Receivers whose confirmation decides success.
    fn expected_count(&self) -> usize {
        if self.config.expected_names.is_empty() {
            self.config.expected_receivers as usize
        } else {
            self.config.expected_names.len()
        }
    }

    /// True when `name` is one of a closed group's names, or when the
    /// group is given by count (every receiver counts).
    fn is_expected(&self, name: &str) -> bool {
        self.config.expected_names.is_empty()
            || self.config.expected_names.iter().any(|n| n == name)
    }

    /// Expected receivers not registered yet.
    fn unregistered_expected(&self) -> usize {
        let registered = self.peers.values().filter(|p| p.registered);
        if self.config.expected_names.is_empty() {
            return (self.config.expected_receivers as usize).saturating_sub(registered.count());
        }
        let names: HashSet<&str> = registered.map(|p| p.name.as_str()).collect();
        self.config
            .expected_names
            .iter()
            .filter(|n| !names.contains(n.as_str()))
            .count()
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

    fn finish(&mut self, now: Instant) {
        self.phase = Phase::Done { sent: 0 };
        self.next_done = now;
        let mut receivers = Vec::new();
        let everything = || {
            self.paths[1..]
                .iter()
                .take(crate::limits::MAX_STATUS_OBJECTS)
                .cloned()
                .collect::<Vec<_>>()
        };
        for (node, p) in &self.peers {
            let verdict = match p.state {
                PeerState::Active => Verdict::Incomplete,
                PeerState::Confirmed => Verdict::Confirmed,
                PeerState::Failed => Verdict::Failed,
                PeerState::Dropped(d) => Verdict::Dropped { silent_for: d },
                PeerState::TooSlow(delivered_bps) => Verdict::TooSlow {
                    delivered_bps,
                    min_bps: self.cc.mode().min(),
                },
            };
            let path = |o: &ObjectId| self.paths.get(o.0 as usize).cloned().unwrap_or_default();
            receivers.push(ReceiverReport {
                node: Some(*node),
                name: p.name.clone(),
                expected: self.is_expected(&p.name),
                verified: p.verified,
                missing: if verdict == Verdict::Confirmed {
                    Vec::new()
                } else if !p.status_seen {
                    // Never reported progress: it misses everything.
                    everything()
                } else {
                    p.missing.iter().map(path).collect()
                },
                failed: p.failed.iter().map(|(o, r)| (path(o), *r)).collect(),
                verdict,
            });
        }
        for name in &self.config.expected_names {
            if !receivers.iter().any(|r| &r.name == name) {
                receivers.push(ReceiverReport {
                    node: None,
                    name: name.clone(),
                    expected: true,
                    verdict: Verdict::NeverRegistered,
                    verified: 0,
                    missing: everything(),
                    failed: Vec::new(),
                });
            }
        }
        // Of a name registered twice (two processes, or a restart), the
        // best verdict counts.
        let mut satisfied: Vec<&str> = Vec::new();
        let mut short: Vec<(&str, &'static str)> = Vec::new();
        for r in receivers.iter().filter(|r| r.expected) {
            if r.verdict == Verdict::Confirmed {
                satisfied.push(&r.name);
            }
        }
        let named = !self.config.expected_names.is_empty();
        for r in receivers.iter().filter(|r| r.expected) {
            let covered = named && satisfied.contains(&r.name.as_str());
            if r.verdict != Verdict::Confirmed && !covered {
                short.push((&r.name, r.verdict.describe()));
            }
        }
        let confirmed = if named {
            let mut names = satisfied.clone();
            names.sort_unstable();
            names.dedup();
            names.len()
        } else {
            satisfied.len()
        };
        let expected = self.expected_count();
        let list = |v: &[(&str, &str)]| {
            let mut s: Vec<String> = v
                .iter()
                .take(5)
                .map(|(n, d)| format!("{n} ({d})"))
                .collect();
            if v.len() > 5 {
                s.push(format!("and {} more", v.len() - 5));
            }
            s.join(", ")
        };
        let problem = if let Some(reason) = &self.aborted {
            Some(reason.clone())
        } else if receivers.is_empty() {
            Some("no receiver registered: is mdp-recv running and joined to the same group and interface?".to_string())
        } else if !short.is_empty() {
            let of = if expected > 0 {
                expected
            } else {
                receivers.len()
            };
            Some(format!(
                "{} of {} receivers did not confirm every file: {}",
                of - confirmed.min(of),
                of,
                list(&short)
            ))
        } else if confirmed < expected {
            Some(format!(
                "only {confirmed} of {expected} expected receivers registered"
            ))
        } else {
            None
        };
        let problem = match problem {
            Some(p) if self.timed_out => Some(format!(
                "timed out after {}s: {p}",
                self.config.timeout.as_secs()
            )),
            other => other,
        };
        self.report = Some(Arc::new(SenderReport {
            session: self.config.session,
            success: problem.is_none(),
            expected: expected as u32,
            confirmed: confirmed as u32,
            problem,
            timed_out: self.timed_out,
            symbol_size: self.config.symbol_size,
            receivers,
            stats: self.stats,
            rate: RateSummary {
                adaptive: matches!(self.cc.mode(), RateMode::Adaptive { .. }),
                final_bps: self.cc.rate_bps(),
                lowest_bps: self.cc.lowest_bps(),
                limited_by: self.cc.limiting().map(|(node, cuts)| {
                    let name = self
                        .peers
                        .get(&node)
                        .map_or_else(|| node.to_string(), |p| p.name.clone());
                    (name, cuts)
                }),
            },
        }));
    }

    fn flush_interval(&self) -> Duration {
        (self.grtt * 8).clamp(Duration::from_millis(20), Duration::from_millis(500))
    }

    // ------------------------------------------------------------ block data

    fn insert_cache(&mut self, key: BlockKey, source: Vec<u8>) {
        self.use_counter += 1;
        let block = CachedBlock {
            source: Arc::new(source),
            parity: BlockParity::default(),
            encoding: false,
            last_use: self.use_counter,
        };
        self.cache_bytes += block.bytes();
        if let Some(old) = self.cache.insert(key, block) {
            self.lru.remove(&old.last_use);
            self.cache_bytes -= old.bytes();
        }
        self.lru.insert(self.use_counter, key);
        self.evict();
        if self.config.proactive > 0 {
            // Ready before the cursor reaches it, with luck.
            self.request_parity(key, 0, self.config.proactive as usize);
        }
    }

    /// Asks the caller for parity symbols `first .. first + count` of a
    /// cached block, unless a request for it is out.
    fn request_parity(&mut self, key: BlockKey, first: usize, count: usize) {
        let size = self.sizes[key.0 as usize];
        let k = self.coding.block_k(size, BlockNumber(key.1)) as usize;
        let r = self.coding.block_parity(k as u16) as usize;
        let t = self.coding.symbol_size as usize;
        let Some(cached) = self.cache.get_mut(&key) else {
            return;
        };
        if cached.encoding {
            return;
        }
        cached.encoding = true;
        let job = ParityJob::new(cached.source.clone(), k, r, t, first, count.max(1));
        self.events.push_back(SenderEvent::EncodeParity {
            object: ObjectId(key.0),
            block: BlockNumber(key.1),
            job,
        });
    }

    /// The next symbol a queued repair of `key` sends, and whether it can
    /// go now (its parity is computed); `None` while the block is not
    /// cached.
    fn repair_next(&self, key: &BlockKey) -> Option<(u32, bool)> {
        let cached = self.cache.get(key)?;
        let st = self.repairs.get(key)?;
        let k = self
            .coding
            .block_k(self.sizes[key.0 as usize], BlockNumber(key.1)) as u32;
        let esi = st.sources.front().map_or(st.next_esi, |&i| i as u32);
        let t = self.coding.symbol_size as usize;
        Some((
            esi,
            esi < k || cached.parity.symbol((esi - k) as usize, t).is_some(),
        ))
    }

    /// Whether the next new symbol can go now: its block is cached and, for
    /// proactive parity, the symbol computed.
    fn new_symbol_ready(&self) -> bool {
        let key = (self.cursor.object, self.cursor.block);
        let Some(cached) = self.cache.get(&key) else {
            return false;
        };
        let k = self
            .coding
            .block_k(self.sizes[key.0 as usize], BlockNumber(key.1)) as u32;
        let esi = self.cursor.esi;
        esi < k
            || cached
                .parity
                .symbol((esi - k) as usize, self.coding.symbol_size as usize)
                .is_some()
    }

    /// Marks a cached block as just used.
    fn touch(&mut self, key: BlockKey) {
        self.use_counter += 1;
        if let Some(b) = self.cache.get_mut(&key) {
            self.lru.remove(&b.last_use);
            b.last_use = self.use_counter;
            self.lru.insert(self.use_counter, key);
        }
    }

    fn evict(&mut self) {
        while self.cache_bytes > self.config.cache_bytes {
            // Least recently used among blocks already sent and not queued
            // for repair; blocks of the read-ahead window are never evicted.
            // `lru` is ordered by last use, so this looks only past the
            // few blocks that may not go.
            let cursor = (self.cursor.object, self.cursor.block);
            let victim = self.lru.iter().find(|(_, k)| {
                **k < cursor && self.repairs.get(*k).is_none_or(|st| st.queued == 0)
            });
            let Some((&last_use, &victim)) = victim else {
                break;
            };
            self.lru.remove(&last_use);
            if let Some(b) = self.cache.remove(&victim) {
                self.cache_bytes -= b.bytes();
            }
        }
    }

    /// Asks for the blocks of the read-ahead window and of queued repairs.
    fn request_reads(&mut self) {
        if self.phase == Phase::Finished {
            return;
        }
        let mut wanted = Vec::new();
        let (mut o, mut b) = (self.cursor.object, self.cursor.block);
        // Files are read only once sending began: which of them to send is
        // decided then (files every receiver has are skipped).
        let end = if self.phase == Phase::Announcing {
            1
        } else {
            self.sizes.len()
        };
        while wanted.len() < self.config.readahead_blocks && (o as usize) < end {
            b = self.unskipped_from(o, b);
            if b >= self.blocks_to_send(o) {
                o += 1;
                b = 0;
                continue;
            }
            wanted.push((o, b));
            b += 1;
        }
        wanted.extend(self.repair_queue.iter().take(4).copied());
        for key in wanted {
            if self.cache.contains_key(&key) || self.reads_pending.contains(&key) {
                continue;
            }
            if key.0 == 0 {
                let block = BlockNumber(key.1);
                let off = self.coding.block_offset(block) as usize;
                let len = self.coding.block_len(self.sizes[0], block);
                let k = self.coding.block_k(self.sizes[0], block) as usize;
                let mut data = self.manifest_bytes[off..off + len].to_vec();
                pad_exactly(&mut data, k * self.coding.symbol_size as usize);
                self.insert_cache(key, data);
                continue;
            }
            self.reads_pending.insert(key);
            let block = BlockNumber(key.1);
            let size = self.sizes[key.0 as usize];
            self.events.push_back(SenderEvent::ReadBlock {
                object: ObjectId(key.0),
                block,
                offset: self.coding.block_offset(block),
                len: self.coding.block_len(size, block),
            });
        }
    }

    // --------------------------------------------------------------- output

    /// Next event for the caller.
    pub fn poll_event(&mut self) -> Option<SenderEvent> {
        self.events.pop_front()
    }

    /// When to call [`Sender::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.deadline;
        match self.phase {
            Phase::Finished => return None,
            Phase::Done { .. } => return Some(self.next_done),
            Phase::Announcing | Phase::Sending | Phase::Flushing => {
                if self.phase == Phase::Announcing {
                    t = t.min(self.data_start_deadline);
                }
                t = t.min(if self.phase == Phase::Flushing {
                    self.next_flush.min(self.next_drop_check())
                } else {
                    self.next_announce
                });
                if self.has_sendable_data() {
                    let len =
                        DATA_HEADER_LEN + self.coding.symbol_size as usize + self.trailer_len();
                    t = t.min(self.pacer.ready_at(len));
                    if let Some(step) = self.cc.next_step() {
                        t = t.min(step);
                    }
                }
                // A repair round that ends lets later NACKs start a new one;
                // no timer needed: NACK arrival is the input that matters.
            }
        }
        Some(t)
    }

    fn next_drop_check(&self) -> Instant {
        let start = self.flush_start.unwrap_or(self.epoch);
        self.peers
            .values()
            .filter(|p| p.state == PeerState::Active)
            .map(|p| p.last_heard.max(start) + self.config.drop_after)
            .min()
            .unwrap_or(self.deadline)
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
                if now < self.next_done {
                    return None;
                }
                let success = self.report.as_ref().is_some_and(|r| r.success);
                self.write_control(out, &Control::Done(Done { success }));
                let sent = sent + 1;
                if sent >= DONE_REPEATS {
                    self.phase = Phase::Finished;
                    let report = self.report.clone().expect("finish() set the report");
                    self.events.push_back(SenderEvent::Finished(report));
                } else {
                    self.phase = Phase::Done { sent };
                    // Every receiver confirmed: they are idle and take the
                    // repeats back to back (a complete receiver that missed
                    // them all still ends, at its idle timeout). Otherwise
                    // a receiver may still be draining a full socket buffer:
                    // spread the repeats over a burst of loss.
                    self.next_done = if success {
                        now
                    } else {
                        now + (self.grtt / 2).clamp(DONE_INTERVAL_MIN, DONE_INTERVAL_MAX)
                    };
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
        if matches!(self.phase, Phase::Announcing | Phase::Sending) && now >= self.next_announce {
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
            self.next_announce = now
                + if self.phase == Phase::Announcing {
                    self.announces += 1;
                    announce_gap(self.announces)
                } else {
                    HEARTBEAT_INTERVAL
                };
            return Some(self.single(out));
        }
        if self.phase == Phase::Flushing && now >= self.next_flush {
            let msg = self.flush(now);
            self.write_control(out, &msg);
            self.flushes_sent += 1;
            self.next_flush = now + self.flush_interval();
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

    fn single(&mut self, out: &Gather) -> Transmit {
        self.stats.packets_sent += 1;
        self.stats.control_sent += 1;
        self.stats.bytes_sent += out.size() as u64;
        Transmit {
            destination: Destination::Group,
            size: out.size(),
            segment_size: out.size(),
        }
    }

    fn write_control(&mut self, out: &mut Gather, msg: &Control) {
        let buf = out.bytes_mut();
        let start = buf.len();
        wire::write_control(buf, self.config.session, msg);
        self.seal(buf, start);
        self.pacer.force_take(buf.len() - start);
        out.end_datagram(start, None);
    }

    /// With a key: seals the datagram that starts at `buf[start]`.
    fn seal(&mut self, buf: &mut Vec<u8>, start: usize) {
        if let (Some(sealer), Some(auth)) = (&mut self.sealer, &self.config.auth) {
            sealer.seal(buf, start, auth.unix_us(self.now_hint));
        }
    }

    /// Bytes a seal adds to each datagram.
    fn trailer_len(&self) -> usize {
        if self.config.auth.is_some() {
            TRAILER_LEN
        } else {
            0
        }
    }

    fn take_acks(&mut self) -> Vec<Ack> {
        let n = self.acks.len().min(MAX_NODE_LIST);
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let (ack, left) = self.acks.pop_front().expect("n <= len");
            out.push(ack);
            if left > 1 {
                self.acks.push_back((ack, left - 1));
            } else {
                self.acks_queued.remove(&(ack.node, ack.state));
            }
        }
        out
    }

    fn announce(&mut self, now: Instant) -> Control {
        Control::Announce(Announce {
            timing: self.timing(now),
            symbol_size: self.coding.symbol_size,
            block_k: self.coding.block_k,
            parity: self.coding.parity,
            manifest_len: self.sizes[0],
            manifest_hash: self.manifest_hash,
            object_count: (self.sizes.len() - 1) as u32,
            data_pos: (self.cursor.object, self.cursor.block),
            acked: self.take_acks(),
            delete: self.config.delete,
        })
    }

    fn flush(&mut self, now: Instant) -> Control {
        let active: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.state == PeerState::Active)
            .map(|(n, _)| *n)
            .collect();
        let awaiting = if active.len() <= MAX_NODE_LIST {
            active
        } else {
            // Rotate through a long list, a window per FLUSH.
            let start = self.await_rotation % active.len();
            self.await_rotation = start + MAX_NODE_LIST;
            active
                .iter()
                .cycle()
                .skip(start)
                .take(MAX_NODE_LIST)
                .copied()
                .collect()
        };
        Control::Flush(Flush {
            timing: self.timing(now),
            awaiting,
            acked: self.take_acks(),
        })
    }

    /// Blocks of object `o` to send in the first pass: none for a file
    /// every receiver already has.
    fn blocks_to_send(&self, o: u32) -> u32 {
        if self.skip.get(o as usize).copied().unwrap_or(false) {
            return 0;
        }
        self.coding.block_count(self.sizes[o as usize])
    }

    /// At the start of sending: the files every registered receiver already
    /// holds are not sent (a receiver that joins later NACKs them).
    fn plan_skips(&mut self) {
        let n = self.sizes.len() as u32;
        let mut common: Option<Vec<(u32, u32)>> = None;
        for p in self.peers.values() {
            let have = match (&p.state, p.registered) {
                (PeerState::Confirmed, _) => vec![(1, n.saturating_sub(1))],
                (PeerState::Active, true) => p.have.clone(),
                // Half-registered: assume it has nothing.
                _ => Vec::new(),
            };
            common = Some(match common {
                None => have,
                Some(c) => intersect_ranges(&c, &have),
            });
        }
        for (first, count) in common.unwrap_or_default() {
            for o in first..first.saturating_add(count).min(n) {
                if o > 0 && !self.skip[o as usize] {
                    self.skip[o as usize] = true;
                    self.stats.files_skipped += 1;
                    self.stats.bytes_skipped += self.sizes[o as usize];
                }
            }
        }
    }

    /// The first block of `o` at or after `b` that is not skipped.
    fn unskipped_from(&self, o: u32, b: u32) -> u32 {
        // Called per datagram: no hashing when nothing is skipped.
        if self.skip_blocks.is_empty() {
            return b;
        }
        let Some(ranges) = self.skip_blocks.get(&o) else {
            return b;
        };
        let mut b = b;
        for &(first, count) in ranges {
            if b >= first && b < first + count {
                b = first + count;
            }
        }
        b
    }

    /// Block-level skips: the blocks of files that every registered
    /// receiver holds in part (from an interrupted push) are not sent.
    fn plan_block_skips(&mut self) {
        let held = |p: &Peer, o: u32, blocks: u32| -> Vec<(u32, u32)> {
            if p.state == PeerState::Confirmed || in_ranges(&p.have, o) {
                return vec![(0, blocks)];
            }
            p.have_blocks
                .iter()
                .filter(|(obj, _, _)| *obj == o)
                .map(|&(_, f, c)| (f, c))
                .collect()
        };
        let peers: Vec<&Peer> = self
            .peers
            .values()
            .filter(|p| p.registered && matches!(p.state, PeerState::Active | PeerState::Confirmed))
            .collect();
        // Bounded work whatever the feedback claimed: with more receivers
        // (or forged registrations) blocks are simply sent.
        if peers.is_empty() || peers.len() != self.peers.len() || peers.len() > MAX_BLOCK_SKIP_PEERS
        {
            return;
        }
        let mut candidates: Vec<u32> = peers
            .iter()
            .flat_map(|p| p.have_blocks.iter().map(|&(o, _, _)| o))
            .filter(|&o| (o as usize) < self.sizes.len() && !self.skip[o as usize])
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        candidates.truncate(MAX_PEER_HAVE_RANGES);
        for o in candidates {
            let blocks = self.coding.block_count(self.sizes[o as usize]);
            let mut common = union_ranges(&held(peers[0], o, blocks), &[]);
            for p in &peers[1..] {
                common = intersect_ranges(&common, &union_ranges(&held(p, o, blocks), &[]));
            }
            let common: Vec<(u32, u32)> = common
                .into_iter()
                .filter(|&(f, _)| f < blocks)
                .map(|(f, c)| (f, c.min(blocks - f)))
                .collect();
            if common.is_empty() {
                continue;
            }
            for &(f, c) in &common {
                self.stats.blocks_skipped += c as u64;
                for b in f..f + c {
                    self.stats.bytes_skipped += self
                        .coding
                        .block_len(self.sizes[o as usize], BlockNumber(b))
                        as u64;
                }
            }
            self.skip_blocks.insert(o, common);
        }
    }

    fn skip_empty_objects(&mut self) {
        while self.phase == Phase::Sending && (self.cursor.object as usize) < self.sizes.len() {
            let o = self.cursor.object;
            let b = self.unskipped_from(o, self.cursor.block);
            if b != self.cursor.block {
                self.cursor.block = b;
                self.cursor.esi = 0;
            }
            if self.cursor.block < self.blocks_to_send(o) {
                return;
            }
            self.cursor = Cursor {
                object: self.cursor.object + 1,
                block: 0,
                esi: 0,
            };
        }
    }

    /// Chooses the next symbol to send and its payload length, without
    /// committing to it.
    fn pick(&mut self) -> Option<(Pick, usize)> {
        let t = self.coding.symbol_size as usize;
        // Repairs: the first queued block whose data is at hand.
        // Those whose next parity symbol is not computed yet ask for it (once:
        // `request_parity` sends no second job while one is out) and wait.
        let mut stale = Vec::new();
        let mut found = None;
        let mut encode = Vec::new();
        for (i, key) in self.repair_queue.iter().enumerate() {
            let queued = match self.repairs.get(key) {
                Some(st) if st.queued > 0 => st.queued - st.sources.len() as u32,
                _ => {
                    stale.push(i);
                    continue;
                }
            };
            match self.repair_next(key) {
                Some((_, true)) => {
                    found = Some(*key);
                    break;
                }
                Some((esi, false)) => encode.push((*key, esi, queued)),
                None => {}
            }
        }
        for i in stale.into_iter().rev() {
            self.repair_queue.remove(i);
        }
        for (key, esi, queued) in encode {
            let k = self
                .coding
                .block_k(self.sizes[key.0 as usize], BlockNumber(key.1)) as u32;
            self.request_parity(key, (esi - k) as usize, queued as usize);
        }
        if let Some(key) = found {
            let size = self.sizes[key.0 as usize];
            let block_len = self.coding.block_len(size, BlockNumber(key.1));
            let k = self.coding.block_k(size, BlockNumber(key.1)) as u32;
            let (esi, _) = self.repair_next(&key).expect("found above");
            let len = if esi < k {
                self.coding.source_symbol_len(block_len, esi as u16)
            } else {
                t
            };
            return Some((Pick::Repair(key, esi), len));
        }
        if !self.may_send_new() {
            return None;
        }
        let key = (self.cursor.object, self.cursor.block);
        if !self.new_symbol_ready() {
            if self.cache.contains_key(&key) {
                // Proactive parity not computed yet: asked for when the
                // block came in (no second job while that one is out).
                let k = self
                    .coding
                    .block_k(self.sizes[key.0 as usize], BlockNumber(key.1));
                let first = (self.cursor.esi - k as u32) as usize;
                let count = self.config.proactive as usize - first;
                self.request_parity(key, first, count);
            }
            return None;
        }
        let size = self.sizes[key.0 as usize];
        let block_len = self.coding.block_len(size, BlockNumber(key.1));
        let k = self.coding.block_k(size, BlockNumber(key.1)) as u32;
        let esi = self.cursor.esi;
        let len = if esi < k {
            self.coding.source_symbol_len(block_len, esi as u16)
        } else {
            t
        };
        Some((Pick::New(key, esi), len))
    }

    /// Sends what [`Sender::pick`] chose: appends it to `buf` and advances.
    fn emit(&mut self, now: Instant, pick: Pick, out: &mut Gather) {
        let (key, esi, flags) = match pick {
            Pick::Repair(key, esi) => (key, esi, FLAG_REPAIR),
            Pick::New(key, esi) => (key, esi, 0),
        };
        let size = self.sizes[key.0 as usize];
        let block = BlockNumber(key.1);
        let k = self.coding.block_k(size, block) as u32;
        let r = self.coding.block_parity(k as u16) as u32;
        let t = self.coding.symbol_size as usize;
        let block_len = self.coding.block_len(size, block);
        self.touch(key);
        let cached = self.cache.get(&key).expect("pick() checked the cache");
        let header = DataHeader {
            session: self.config.session,
            object: ObjectId(key.0),
            block,
            esi: SymbolId(esi as u16),
            flags,
            seq: self.data_seq,
        };
        self.data_seq = self.data_seq.wrapping_add(1);
        let buf = out.bytes_mut();
        let start = buf.len();
        wire::write_data_header(buf, &header);
        // A source symbol is a range of the cached block: shared, not
        // copied, unless a seal must follow it (it is computed over the
        // datagram's bytes in one piece). Parity symbols are copied.
        let shared = if esi < k {
            let len = self.coding.source_symbol_len(block_len, esi as u16);
            let range = esi as usize * t..esi as usize * t + len;
            if self.sealer.is_none() {
                Some((cached.source.clone(), range))
            } else {
                buf.extend_from_slice(&cached.source[range]);
                None
            }
        } else {
            let i = (esi - k) as usize;
            let symbol = cached
                .parity
                .symbol(i, t)
                .expect("pick() checked it is computed");
            buf.extend_from_slice(symbol);
            None
        };
        self.seal(buf, start);
        out.end_datagram(start, shared);
        match pick {
            Pick::Repair(..) => {
                self.stats.repair_symbols_sent += 1;
                let grtt = self.grtt;
                let st = self.repairs.get_mut(&key).expect("pick() checked it");
                st.queued -= 1;
                st.round_sent += 1;
                if st.sources.front() == Some(&(esi as u16)) {
                    st.sources.pop_front();
                } else {
                    st.next_esi = (st.next_esi + 1) % (k + r);
                }
                if st.queued == 0 {
                    // NACKs that left receivers before they saw this round's
                    // last symbol arrive within about one round trip.
                    st.round_end = now + grtt * 2;
                    self.repair_queue.retain(|q| *q != key);
                }
            }
            Pick::New(..) => {
                self.stats.data_symbols_sent += 1;
                self.cursor.esi += 1;
                if self.cursor.esi >= k + (self.config.proactive as u32).min(r) {
                    self.cursor.block += 1;
                    self.cursor.esi = 0;
                    if self.cursor.block >= self.coding.block_count(size) {
                        self.cursor.object += 1;
                        self.cursor.block = 0;
                    }
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Pick {
    Repair(BlockKey, u32),
    New(BlockKey, u32),
}

/// The union of two lists of ascending disjoint ranges `(first, count)`.
fn union_ranges(a: &[(u32, u32)], b: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut all: Vec<(u64, u64)> = a
        .iter()
        .chain(b)
        .map(|&(f, c)| (f as u64, f as u64 + c as u64))
        .collect();
    all.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (start, end) in all {
        match out.last_mut() {
            Some((_, e)) if start <= *e => *e = (*e).max(end),
            _ => out.push((start, end)),
        }
    }
    out.into_iter()
        .map(|(s, e)| (s as u32, (e - s).min(u32::MAX as u64) as u32))
        .collect()
}

/// True when `o` lies in one of the ascending disjoint ranges.
fn in_ranges(ranges: &[(u32, u32)], o: u32) -> bool {
    let i = ranges.partition_point(|&(f, _)| f <= o);
    i > 0 && {
        let (f, c) = ranges[i - 1];
        (o as u64) < f as u64 + c as u64
    }
}

/// The intersection of two lists of ascending disjoint ranges.
fn intersect_ranges(a: &[(u32, u32)], b: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let end = |&(f, c): &(u32, u32)| f as u64 + c as u64;
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        let start = a[i].0.max(b[j].0) as u64;
        let stop = end(&a[i]).min(end(&b[j]));
        if start < stop {
            out.push((start as u32, (stop - start) as u32));
        }
        if end(&a[i]) < end(&b[j]) {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_padded_block_holds_no_more_memory_than_its_symbols() {
        use crate::manifest::{Entry, EntryKind};
        let content = [7u8; 8000];
        let manifest = Manifest {
            entries: vec![Entry {
                path: "f".into(),
                kind: EntryKind::File {
                    size: 8000,
                    hash: *blake3::hash(&content).as_bytes(),
                },
                mode: 0o644,
                mtime_secs: 0,
                mtime_nanos: 0,
            }],
        };
        let now = Instant::now();
        let mut sender = Sender::new(SenderConfig::new(SessionId(1)), manifest, now).unwrap();
        // The file's one block, short, as the reader returns it: padded to
        // its 6 symbols of 1400 bytes in the cache, and counted as such.
        let key = (1, 0);
        sender.reads_pending.insert(key);
        let mut data = Vec::with_capacity(8000);
        data.extend_from_slice(&content);
        sender.handle_block(now, ObjectId(1), BlockNumber(0), data);
        let data = &sender.cache[&key].source;
        assert_eq!(data.len(), 8400);
        assert_eq!(data.capacity(), 8400);
        assert!(data[8000..].iter().all(|&b| b == 0));
        assert!(data[..8000].iter().all(|&b| b == 7));
        // What the cache's bound counts for it (the manifest's block may be
        // cached by now too, so not the cache's total).
        assert_eq!(sender.cache[&key].bytes(), 8400 + CACHED_BLOCK_OVERHEAD);
    }

    #[test]
    fn ranges_merge_and_intersect() {
        assert_eq!(
            union_ranges(&[(1, 3), (10, 2)], &[(4, 2), (11, 5)]),
            [(1, 5), (10, 6)]
        );
        assert_eq!(union_ranges(&[], &[(7, 1)]), [(7, 1)]);
        assert_eq!(
            intersect_ranges(&[(1, 10), (20, 5)], &[(5, 17), (24, 1)]),
            [(5, 6), (20, 2), (24, 1)]
        );
        assert_eq!(intersect_ranges(&[(1, 3)], &[]), []);
        assert_eq!(intersect_ranges(&[(1, u32::MAX - 1)], &[(3, 2)]), [(3, 2)]);
    }
}

//! The receiver state machine.
//!
//! A receiver locks onto the first session it sees announced (skipping the
//! ids in [`ReceiverConfig::ignore_sessions`]), registers, collects symbols,
//! rebuilds each block from any `k` distinct symbols, and hands finished
//! blocks to the caller ([`ReceiverEvent::Block`]). When every block of a file
//! was handed over it emits [`ReceiverEvent::ObjectComplete`]; the caller
//! checks the file's hash, places it, and reports with
//! [`Receiver::handle_object_verified`]. When every file is final it asks the
//! caller to settle the tree ([`ReceiverEvent::Settle`]: directory modes and
//! times, `--delete`), and once [`Receiver::handle_settled`] says that is
//! done it sends a confirming STATUS, and ends when the sender acknowledged
//! it or said DONE. So a sender that hears "complete" knows the receiver's
//! tree is final.
//!
//! Loss recovery follows NORM (RFC 5740): a block the sender has passed and
//! that is still incomplete is NACKed after a random back-off; a NACK from
//! another receiver asking for as much or more, or a repair symbol for the
//! block, suppresses ours for a hold-off time.

use crate::auth::{self, AuthConfig, AuthError, ReplayWindow, Sealer};
use crate::cc::CongestionMeter;
use crate::fec::{BlockBytes, BufferGauge, Codec, CompleteBlock, ReceivedParity};
use crate::ids::{BlockNumber, NodeId, ObjectId, SessionId};
use crate::layout::Coding;
use crate::limits::{DATA_HEADER_LEN, MAX_NACK_ENTRIES, MAX_SESSION_BLOCKS, MAX_STATUS_OBJECTS};
use crate::manifest::{EntryKind, Manifest};
use crate::rng::Rng;
use crate::wire::{
    self, AckState, Announce, Congestion, Control, DataHeader, Destination, Echo, FailReason, Nack,
    NackEntry, Packet, Register, Status, Timing, Transmit, FLAG_REPAIR,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Receiver settings.
#[derive(Clone, Debug)]
pub struct ReceiverConfig {
    /// This receiver's id (random per process).
    pub node: NodeId,
    /// Its name, sent with feedback (host name by default).
    pub name: String,
    /// Seed for the NACK back-off randomness.
    pub seed: u64,
    /// Bytes of block memory at most: incomplete blocks held here, and
    /// complete ones handed out ([`ReceiverEvent::Block`]) until the
    /// caller drops them (see [`ReceiverConfig::buffer_gauge`]).
    pub buffer_bytes: usize,
    /// Where the blocks handed out count their memory until dropped.
    /// Receivers made from clones of one config share it, so a block of
    /// the previous session still being written counts for the next one.
    pub buffer_gauge: BufferGauge,
    /// A session silent this long is abandoned.
    pub idle_timeout: Duration,
    /// Sessions not to join (ones already finished).
    pub ignore_sessions: Vec<SessionId>,
    /// NACK back-off is `K * GRTT` at most (RFC 5740's K), with `K` this
    /// factor for groups of 32 receivers or more and less for smaller ones
    /// ([`backoff_factor_for`]). 6 rather than NORM's 4: mdp's GRTT is
    /// measured, not a conservative guess, and the extra spread lets the
    /// first NACK suppress more of the others (see the simulator's NACK
    /// column).
    pub backoff_factor: u32,
    /// Group size the back-off assumes at least, whatever the sender
    /// counts (1: trust the sender's count).
    pub backoff_group_floor: u32,
    /// Largest push (sum of file sizes) this receiver accepts.
    pub max_push_bytes: u64,
    /// Largest file it accepts.
    pub max_file_bytes: u64,
    /// Most files in one push.
    pub max_files: u32,
    /// Most components in a path (`a/b/c` has 3).
    pub max_path_depth: usize,
    /// Longest path, in bytes.
    pub max_path_len: usize,
    /// With a key: accept only sealed datagrams (auth.rs) and seal ours.
    pub auth: Option<AuthConfig>,
}

impl ReceiverConfig {
    /// Defaults for a node id, name and seed.
    pub fn new(node: NodeId, name: &str, seed: u64) -> Self {
        ReceiverConfig {
            node,
            name: wire::clamp_name(name),
            seed,
            buffer_bytes: 40 << 20,
            buffer_gauge: BufferGauge::default(),
            idle_timeout: Duration::from_secs(30),
            ignore_sessions: Vec::new(),
            backoff_factor: 6,
            backoff_group_floor: 1,
            max_push_bytes: 4 << 40,
            max_file_bytes: 1 << 40,
            max_files: 1_000_000,
            max_path_depth: 32,
            max_path_len: 1024,
            auth: None,
        }
    }
}

/// What the caller must do or know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceiverEvent {
    /// The manifest arrived and passed validation: prepare the files.
    SessionStarted {
        /// Session.
        session: SessionId,
        /// The validated manifest.
        manifest: Arc<Manifest>,
        /// After a complete push, remove what the pushed directories hold
        /// beyond the manifest (the sender's `--delete`).
        delete: bool,
        /// Bytes per full block (file block `b` starts at `b * block_bytes`):
        /// what a store needs to keep interrupted files for resume.
        block_bytes: u64,
    },
    /// A block with enough symbols: rebuild it with
    /// [`CompleteBlock::into_bytes`] (a Reed-Solomon decode when a source
    /// symbol was lost; run it off the socket loop) and write it at `offset`
    /// of the object's file.
    Block {
        /// File object.
        object: ObjectId,
        /// Byte offset.
        offset: u64,
        /// The block's symbols.
        block: CompleteBlock,
    },
    /// Every block of the object was handed over: verify its hash, place it,
    /// and call [`Receiver::handle_object_verified`].
    ObjectComplete {
        /// File object.
        object: ObjectId,
    },
    /// Every file is verified or failed for good: make the tree final
    /// (directory modes and modification times; with `prune`, remove what
    /// the pushed directories hold beyond the manifest), then call
    /// [`Receiver::handle_settled`]. The confirming STATUS waits for it.
    Settle {
        /// Do the sender's `--delete`: asked for, and no file failed.
        prune: bool,
    },
    /// The session is over for this receiver.
    Finished(SessionOutcome),
}

/// How a session ended for this receiver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionOutcome {
    /// Session.
    pub session: SessionId,
    /// True when every file was verified and placed.
    pub complete: bool,
    /// Why it ended otherwise, in one line.
    pub problem: Option<String>,
    /// Files verified and placed.
    pub verified: u32,
    /// Files in the session.
    pub files: u32,
    /// Files that failed for good.
    pub failed: Vec<(ObjectId, FailReason)>,
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Datagrams passed in.
    pub packets_received: u64,
    /// Bytes passed in.
    pub bytes_received: u64,
    /// DATA packets of the session accepted.
    pub symbols_received: u64,
    /// Symbols that were not needed (block done, or already held).
    pub symbols_redundant: u64,
    /// Datagrams of other sessions, looped-back own feedback, etc.
    pub ignored: u64,
    /// Datagrams that failed to parse or were out of range.
    pub malformed: u64,
    /// Symbols dropped because the block buffer was full.
    pub dropped_no_buffer: u64,
    /// Most bytes of block memory held at once (incomplete blocks and
    /// blocks handed out and not yet dropped).
    pub buffer_peak: u64,
    /// Blocks completed.
    pub blocks_completed: u64,
    /// Blocks that needed Reed-Solomon decoding.
    pub blocks_decoded: u64,
    /// NACK datagrams sent.
    pub nacks_sent: u64,
    /// NACK entries sent.
    pub nack_entries_sent: u64,
    /// NACK entries not sent because another receiver asked first.
    pub nack_entries_suppressed: u64,
    /// Bytes of file data handed to the caller.
    pub bytes_delivered: u64,
    /// CONGESTION reports sent.
    pub congestion_sent: u64,
    /// Datagrams dropped by authentication: bad tag, or unsealed while a
    /// key is configured.
    pub auth_failed: u64,
    /// Sealed datagrams dropped because no key is configured.
    pub auth_no_key: u64,
    /// Authentic datagrams dropped as replays (counter seen before, or a
    /// new session whose counter is far from this host's clock).
    pub replayed: u64,
}

type BlockKey = (u32, u32);

#[derive(Clone, Debug, PartialEq, Eq)]
enum ObjState {
    Receiving,
    /// All blocks handed over; waiting for the caller's verification.
    Delivered,
    Verified,
    Failed(FailReason),
}

#[derive(Debug)]
struct Obj {
    size: u64,
    blocks: u32,
    done: Vec<u64>,
    done_count: u32,
    first_missing: u32,
    state: ObjState,
}

impl Obj {
    fn new(size: u64, coding: &Coding) -> Obj {
        let blocks = coding.block_count(size);
        Obj {
            size,
            blocks,
            done: vec![0; (blocks as usize).div_ceil(64)],
            done_count: 0,
            first_missing: 0,
            state: ObjState::Receiving,
        }
    }

    fn is_done(&self, b: u32) -> bool {
        self.done[(b / 64) as usize] & (1 << (b % 64)) != 0
    }

    fn set_done(&mut self, b: u32) {
        self.done[(b / 64) as usize] |= 1 << (b % 64);
        self.done_count += 1;
        while self.first_missing < self.blocks && self.is_done(self.first_missing) {
            self.first_missing += 1;
        }
    }
}

#[derive(Debug)]
struct Partial {
    k: u16,
    /// `k * T` bytes; source symbol `i` at `i * T`.
    data: Vec<u8>,
    have: Vec<bool>,
    have_count: u16,
    /// Parity symbols, `T` bytes each.
    recovery: ReceivedParity,
}

impl Partial {
    fn count(&self) -> usize {
        self.have_count as usize + self.recovery.len()
    }

    /// The source symbols still missing, when naming them in a NACK lets
    /// the sender complete the block without a decode: no parity symbol
    /// is held (else a decode follows anyway) and at most
    /// [`crate::limits::MAX_NACK_MISSING`] are missing.
    fn missing_sources(&self) -> Option<Vec<u16>> {
        let lacking = self.k as usize - self.have_count as usize;
        if !self.recovery.is_empty() || lacking == 0 || lacking > crate::limits::MAX_NACK_MISSING {
            return None;
        }
        Some((0..self.k).filter(|&i| !self.have[i as usize]).collect())
    }
    fn bytes(&self) -> usize {
        self.data.len() + self.recovery.held_bytes()
    }
}

/// Estimates the DATA loss rate from sequence numbers, over epochs of
/// [`LossMeter::EPOCH`] sequence numbers, smoothed.
#[derive(Debug, Default)]
struct LossMeter {
    base: Option<u32>,
    highest: u32,
    received: u32,
    estimate: f64,
}

impl LossMeter {
    const EPOCH: u32 = 256;

    fn on_seq(&mut self, seq: u32) {
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
        let span = self.highest.wrapping_sub(base) + 1;
        if span >= Self::EPOCH {
            let loss = 1.0 - (self.received as f64 / span as f64).min(1.0);
            self.estimate = 0.75 * self.estimate + 0.25 * loss;
            self.base = Some(self.highest.wrapping_add(1));
            self.received = 0;
        }
    }

    /// In 1/65536 units.
    fn wire(&self) -> u16 {
        (self.estimate * 65535.0).clamp(0.0, 65535.0) as u16
    }
}

#[derive(Debug)]
struct Session {
    id: SessionId,
    coding: Coding,
    manifest_len: u64,
    manifest_hash: [u8; 32],
    object_count: u32,
    manifest_parts: BTreeMap<u32, Vec<u8>>,
    manifest_attempts: u32,
    /// Index 0 is the manifest; files follow once it is known.
    objects: Vec<Obj>,
    /// No object below this index is still receiving (NACK scans start here).
    first_receiving: u32,
    manifest_known: bool,
    partial: HashMap<BlockKey, Partial>,
    buffered: usize,
    /// Every block before this one was sent at least once.
    sender_pos: BlockKey,
    flushed: bool,
    timing: Timing,
    last_ts: Option<(u64, Instant)>,
    /// When the sender was last heard (its datagrams only).
    last_heard: Instant,
    holdoff: HashMap<BlockKey, Instant>,
    /// When the armed NACK goes out, and what it may carry: the blocks
    /// that were candidates when its back-off began ([`NackView`]).
    nack_at: Option<(Instant, NackView)>,
    recheck_at: Option<Instant>,
    /// The caller said which files are already here
    /// ([`Receiver::handle_present`]); registration waits for it.
    present_known: bool,
    /// Those files, as ranges `(first object, count)` for REGISTER.
    have: Vec<(u32, u32)>,
    /// Blocks of files held in part ([`Receiver::handle_partial`]), as
    /// `(object, first block, count)` for REGISTER.
    have_blocks: Vec<(u32, u32, u32)>,
    registered_acked: bool,
    register_sent: Option<Instant>,
    /// [`ReceiverEvent::Settle`] was emitted; `complete` waits for
    /// [`Receiver::handle_settled`].
    settling: bool,
    complete: bool,
    confirm_acked: bool,
    status_due: bool,
    verified: u32,
    failed: Vec<(ObjectId, FailReason)>,
    loss: LossMeter,
    congestion: CongestionMeter,
    /// The sender asked for `--delete`.
    delete: bool,
    /// Why this receiver refused the push, if it did.
    refused: Option<String>,
    /// With a key: counters seen from the sender and from other receivers.
    sender_replay: ReplayWindow,
    peer_replay: HashMap<NodeId, ReplayWindow>,
}

impl Session {
    /// Moves `first_receiving` past objects that no longer receive
    /// (amortised O(1) per object over a session).
    fn skip_finished_objects(&mut self) {
        while let Some(o) = self.objects.get(self.first_receiving as usize) {
            if o.state == ObjState::Receiving {
                break;
            }
            self.first_receiving += 1;
        }
    }
}

/// The receiver of one session. See the crate docs for the calling contract.
#[derive(Debug)]
pub struct Receiver {
    config: ReceiverConfig,
    rng: Rng,
    codec: Codec,
    sealer: Option<Sealer>,
    session: Option<Session>,
    finished: bool,
    transmits: VecDeque<Control>,
    events: VecDeque<ReceiverEvent>,
    stats: ReceiverStats,
}

const MIN_GRTT: Duration = Duration::from_millis(1);
/// Smallest group size the NACK back-off assumes.
const MIN_GROUP_ESTIMATE: u32 = 32;
const REGISTER_INTERVAL: Duration = Duration::from_millis(50);
/// Most other receivers whose counters a receiver tracks.
const MAX_PEER_WINDOWS: usize = 4096;
/// A sender silent this long (plus four round trips) is not NACKed until
/// it is heard again: it sends an ANNOUNCE or FLUSH at least every 500 ms
/// while it runs.
pub const SENDER_GONE: Duration = Duration::from_secs(1);

/// A session silent this long is given up when another one is announced.
pub const SESSION_SWITCH_SILENCE: Duration = Duration::from_secs(2);
/// Most REGISTERs one registration sends (each with up to
/// [`crate::limits::MAX_HAVE_RANGES`] ranges of files already held); a receiver whose
/// files fall into more ranges reports only the first ones, and is sent the
/// rest (which it then recognises as already held).
const MAX_HAVE_CHUNKS: usize = 16;
/// Most blocks looked at in one NACK scan.
const MAX_SCAN: usize = 8192;

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
struct NackView {
    at: Instant,
    horizon: Option<(u32, u32)>,
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

impl Receiver {
    /// A receiver waiting for a session.
    pub fn new(config: ReceiverConfig) -> Receiver {
        let sealer = config.auth.as_ref().map(|a| Sealer::new(a.key.clone()));
        Receiver {
            rng: Rng::new(config.seed),
            config,
            sealer,
            codec: Codec::default(),
            session: None,
            finished: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: ReceiverStats::default(),
        }
    }

    /// Bytes of block memory held now: incomplete blocks, and complete ones
    /// handed out and not yet dropped (at most `buffer_bytes`, give or take
    /// the block that crossed it).
    pub fn buffered_bytes(&self) -> usize {
        self.session.as_ref().map_or(0, |s| s.buffered) + self.config.buffer_gauge.bytes()
    }

    /// This receiver's node id.
    pub fn node(&self) -> NodeId {
        self.config.node
    }

    /// Counters so far.
    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }

    /// The session this receiver joined, if any.
    pub fn session_id(&self) -> Option<SessionId> {
        self.session.as_ref().map(|s| s.id)
    }

    /// True once [`ReceiverEvent::Finished`] was emitted.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The send rate the session's sender announced, bits per second.
    pub fn session_rate(&self) -> Option<u64> {
        self.session.as_ref().map(|s| s.timing.rate_bps)
    }

    /// The symbol size of the session this receiver joined (from its
    /// ANNOUNCE, before the manifest arrives).
    pub fn session_symbol_size(&self) -> Option<u16> {
        self.session.as_ref().map(|s| s.coding.symbol_size)
    }

    /// `(bytes of file data handed over, total bytes)` once the manifest is known.
    pub fn progress(&self) -> Option<(u64, u64)> {
        let s = self.session.as_ref()?;
        if !s.manifest_known {
            return None;
        }
        let total = s.objects[1..].iter().map(|o| o.size).sum();
        Some((self.stats.bytes_delivered, total))
    }

    // ---------------------------------------------------------------- input

    /// The oldest datagram of the batch about to be handed in waited this
    /// long in the socket's queue: a standing queue means this receiver
    /// cannot keep up with the sender (see [`crate::cc`]).
    pub fn handle_queue_delay(&mut self, waited: Duration) {
        if let Some(s) = self.session.as_mut() {
            s.congestion.on_queue_delay(waited);
        }
    }

    /// A datagram arrived from the network.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        self.stats.packets_received += 1;
        self.stats.bytes_received += datagram.len() as u64;
        if self.finished {
            return;
        }
        let (datagram, counter) =
            match auth::open(self.config.auth.as_ref().map(|a| &a.key), datagram) {
                Ok(x) => x,
                Err(AuthError::NoKey) => {
                    self.stats.auth_no_key += 1;
                    return;
                }
                Err(_) => {
                    self.stats.auth_failed += 1;
                    return;
                }
            };
        let packet = match wire::parse(datagram) {
            Ok(p) => p,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        let session_id = match &packet {
            Packet::Data { header, .. } => header.session,
            Packet::Control { session, .. } => *session,
        };
        if self.config.auth.is_some() && !self.fresh_counter(now, &packet, session_id, counter) {
            self.stats.replayed += 1;
            return;
        }
        if self.session.is_none() {
            match &packet {
                Packet::Control {
                    message: Control::Announce(a),
                    ..
                } if !self.config.ignore_sessions.contains(&session_id) => {
                    self.start_session(now, session_id, a);
                }
                _ => {
                    self.stats.ignored += 1;
                    return;
                }
            }
        }
        let Some(s) = &mut self.session else { return };
        if s.id != session_id {
            self.stats.ignored += 1;
            // A sender that vanished (killed, its host down) and a new push
            // announced meanwhile: give up the old one now rather than after
            // the idle timeout, so that the new push (perhaps the same one,
            // restarted) is not missed. Its next ANNOUNCE starts it.
            let silent = now.saturating_duration_since(s.last_heard);
            let announce = matches!(
                packet,
                Packet::Control {
                    message: Control::Announce(_),
                    ..
                }
            );
            if announce
                && silent >= SESSION_SWITCH_SILENCE
                && !self.config.ignore_sessions.contains(&session_id)
            {
                self.finish(Some(format!(
                    "the sender went silent for {:.1}s and another push began",
                    silent.as_secs_f64()
                )));
            }
            return;
        }
        // Only the sender's datagrams show that the push is alive: receivers
        // NACKing each other must not keep a session whose sender died.
        let from_sender = !matches!(
            packet,
            Packet::Control {
                message: Control::Nack(_)
                    | Control::Register(_)
                    | Control::Status(_)
                    | Control::Congestion(_),
                ..
            }
        );
        if from_sender {
            s.last_heard = now;
        }
        match packet {
            Packet::Data { header, payload } => self.handle_data(now, &header, payload),
            Packet::Control { message, .. } => match message {
                Control::Announce(a) => self.handle_announce(now, &a),
                Control::Flush(f) => {
                    self.handle_timing(now, &f.timing, &f.acked);
                    let s = self.session.as_mut().expect("checked above");
                    s.flushed = true;
                    let listed = f.awaiting.contains(&self.config.node);
                    if listed || (s.complete && !s.confirm_acked) || !s.registered_acked {
                        s.status_due = true;
                    }
                    self.maybe_arm_nack(now);
                }
                Control::Done(_) => self.finish(None),
                Control::Nack(n) => self.handle_other_nack(now, &n),
                Control::Register(_) | Control::Status(_) | Control::Congestion(_) => {
                    self.stats.ignored += 1
                }
            },
        }
        self.after_input(now);
    }

    /// Replay protection (with a key): each origin's counters are taken
    /// once, and a session is joined only when its counter is close to this
    /// host's clock (a recorded old push cannot be replayed later).
    fn fresh_counter(
        &mut self,
        now: Instant,
        packet: &Packet,
        session: SessionId,
        counter: u64,
    ) -> bool {
        let auth = self.config.auth.as_ref().expect("caller checked");
        let origin = match packet {
            Packet::Control { message, .. } => match message {
                Control::Register(m) => Some(m.node),
                Control::Nack(m) => Some(m.node),
                Control::Status(m) => Some(m.node),
                Control::Congestion(m) => Some(m.node),
                _ => None,
            },
            Packet::Data { .. } => None,
        };
        let ours = self.session.as_ref().is_some_and(|s| s.id == session);
        match origin {
            // From the sender of another session (one to join, or one
            // that would replace ours): it must be fresh.
            None if !ours => auth.fresh(now, counter),
            None => self
                .session
                .as_mut()
                .expect("ours")
                .sender_replay
                .accept(counter),
            // Another receiver's feedback (NACK suppression only).
            Some(node) => {
                if !ours {
                    return true;
                }
                let s = self.session.as_mut().expect("ours");
                if !s.peer_replay.contains_key(&node) && s.peer_replay.len() >= MAX_PEER_WINDOWS {
                    return false;
                }
                s.peer_replay.entry(node).or_default().accept(counter)
            }
        }
    }

    fn start_session(&mut self, now: Instant, id: SessionId, a: &Announce) {
        let coding = Coding {
            symbol_size: a.symbol_size,
            block_k: a.block_k,
            parity: a.parity,
        };
        self.session = Some(Session {
            id,
            coding,
            manifest_len: a.manifest_len,
            manifest_hash: a.manifest_hash,
            object_count: a.object_count,
            manifest_parts: BTreeMap::new(),
            manifest_attempts: 0,
            objects: vec![Obj::new(a.manifest_len, &coding)],
            first_receiving: 0,
            manifest_known: false,
            partial: HashMap::new(),
            buffered: 0,
            sender_pos: (0, 0),
            flushed: false,
            timing: a.timing,
            last_ts: None,
            last_heard: now,
            holdoff: HashMap::new(),
            nack_at: None,
            recheck_at: None,
            present_known: false,
            have: Vec::new(),
            have_blocks: Vec::new(),
            registered_acked: false,
            register_sent: None,
            settling: false,
            complete: false,
            confirm_acked: false,
            status_due: false,
            verified: 0,
            failed: Vec::new(),
            loss: LossMeter::default(),
            congestion: CongestionMeter::default(),
            sender_replay: ReplayWindow::default(),
            peer_replay: HashMap::new(),
            delete: a.delete,
            refused: None,
        });
    }

    fn handle_announce(&mut self, now: Instant, a: &Announce) {
        let s = self.session.as_mut().expect("caller checked");
        let same = s.coding.symbol_size == a.symbol_size
            && s.coding.block_k == a.block_k
            && s.coding.parity == a.parity
            && s.manifest_len == a.manifest_len
            && s.manifest_hash == a.manifest_hash
            && s.object_count == a.object_count;
        if !same {
            // A session's parameters never change: this one is forged or broken.
            self.stats.malformed += 1;
            return;
        }
        self.handle_timing(now, &a.timing, &a.acked);
        self.advance_sender_pos(now, a.data_pos);
        self.maybe_register(now);
    }

    /// REGISTER once the manifest is here (so a sender that waits for N
    /// registrations starts when N receivers can use its data), again until
    /// the sender acknowledges it.
    fn maybe_register(&mut self, now: Instant) {
        let s = self.session.as_mut().expect("caller checked");
        let due = s
            .register_sent
            .is_none_or(|t| now.saturating_duration_since(t) >= REGISTER_INTERVAL);
        if s.manifest_known && s.present_known && !s.registered_acked && due {
            s.register_sent = Some(now);
            let echo = Self::echo(s, now);
            // All chunks of the have-list, each time: the sender counts us
            // as registered at the last one (`more == false`).
            let m = crate::limits::MAX_HAVE_RANGES;
            let chunks = s
                .have
                .len()
                .div_ceil(m)
                .max(s.have_blocks.len().div_ceil(m))
                .clamp(1, MAX_HAVE_CHUNKS);
            for i in 0..chunks {
                let part = |len: usize| (i * m).min(len)..((i + 1) * m).min(len);
                self.transmits.push_back(Control::Register(Register {
                    node: self.config.node,
                    name: self.config.name.clone(),
                    echo,
                    have: s.have[part(s.have.len())].to_vec(),
                    have_blocks: s.have_blocks[part(s.have_blocks.len())].to_vec(),
                    more: i + 1 < chunks,
                }));
            }
        }
    }

    fn advance_sender_pos(&mut self, now: Instant, pos: (u32, u32)) {
        let s = self.session.as_mut().expect("caller checked");
        if pos > s.sender_pos && pos.0 <= s.object_count + 1 {
            let old = std::mem::replace(&mut s.sender_pos, pos);
            // Only the blocks passed just now are new candidates: the
            // others were looked at before (and are timed or held off), so
            // do not rescan them on every block boundary.
            if s.nack_at.is_none() && Self::incomplete_between(s, old, pos) {
                self.maybe_arm_nack(now);
            }
        }
    }

    /// True when a known block in `[from, to)` is incomplete (or when the
    /// range is too long to look at cheaply).
    fn incomplete_between(s: &Session, from: BlockKey, to: BlockKey) -> bool {
        let mut looked = 0;
        for o in from.0..=to.0.min(s.objects.len().saturating_sub(1) as u32) {
            let obj = &s.objects[o as usize];
            if obj.state != ObjState::Receiving {
                continue;
            }
            let first = if o == from.0 { from.1 } else { 0 };
            let end = if o == to.0 {
                to.1.min(obj.blocks)
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

    fn handle_timing(&mut self, now: Instant, timing: &Timing, acked: &[wire::Ack]) {
        let s = self.session.as_mut().expect("caller checked");
        s.timing = *timing;
        s.last_ts = Some((timing.ts_us, now));
        for a in acked {
            if a.node == self.config.node {
                s.registered_acked = true;
                if a.state == AckState::Confirmed && s.complete {
                    s.confirm_acked = true;
                }
            }
        }
    }

    fn echo(s: &Session, now: Instant) -> Echo {
        match s.last_ts {
            Some((ts, at)) => Echo {
                ts_us: ts,
                delay_us: now.saturating_duration_since(at).as_micros() as u32,
            },
            None => Echo::default(),
        }
    }

    fn grtt(s: &Session) -> Duration {
        Duration::from_micros(s.timing.grtt_us as u64).max(MIN_GRTT)
    }

    fn backoff_max(&self, s: &Session) -> Duration {
        let group = s.timing.group_size.max(self.config.backoff_group_floor);
        Self::grtt(s) * backoff_factor_for(group, self.config.backoff_factor)
    }

    /// How long to wait for the repair of `cumulative` symbols asked for in
    /// one NACK before asking again.
    fn repair_wait(&self, s: &Session, cumulative: u32) -> Duration {
        let bits = (s.coding.symbol_size as u64 + DATA_HEADER_LEN as u64) * 8;
        let per_symbol = Duration::from_secs_f64(bits as f64 / s.timing.rate_bps.max(8000) as f64);
        self.backoff_max(s) + Self::grtt(s) * 3 + per_symbol * cumulative
    }

    fn handle_data(&mut self, now: Instant, h: &DataHeader, payload: &[u8]) {
        let hold_after_repair;
        {
            let s = self.session.as_ref().expect("caller checked");
            hold_after_repair = self.backoff_max(s) + Self::grtt(s) * 2;
        }
        let s = self.session.as_mut().expect("caller checked");
        let (o, b) = (h.object.0, h.block.0);
        if o > s.object_count {
            self.stats.malformed += 1;
            return;
        }
        s.loss.on_seq(h.seq);
        if let Some(c) = s
            .congestion
            .on_data(now, h.seq, DATA_HEADER_LEN + payload.len())
        {
            self.stats.congestion_sent += 1;
            self.transmits.push_back(Control::Congestion(Congestion {
                node: self.config.node,
                echo: Self::echo(s, now),
                delivered_bps: c.delivered_bps,
                loss: c.loss,
                floor: c.floor,
                first_seq: c.first_seq,
                last_seq: c.last_seq,
                runs: c.runs,
            }));
        }
        if h.flags & FLAG_REPAIR == 0 {
            self.advance_sender_pos(now, (o, b));
        }
        let s = self.session.as_mut().expect("caller checked");
        let Some(obj) = s.objects.get(o as usize) else {
            // A file object before the manifest is known.
            self.stats.ignored += 1;
            return;
        };
        if b >= obj.blocks {
            self.stats.malformed += 1;
            return;
        }
        if obj.is_done(b) || obj.state != ObjState::Receiving {
            self.stats.symbols_redundant += 1;
            return;
        }
        let coding = s.coding;
        let block = BlockNumber(b);
        let k = coding.block_k(obj.size, block);
        let block_len = coding.block_len(obj.size, block);
        let t = coding.symbol_size as usize;
        let esi = h.esi.0;
        if esi as u32 >= k as u32 + coding.block_parity(k) as u32 {
            self.stats.malformed += 1;
            return;
        }
        let expected_len = if esi < k {
            coding.source_symbol_len(block_len, esi)
        } else {
            t
        };
        if payload.len() != expected_len {
            self.stats.malformed += 1;
            return;
        }
        let key = (o, b);
        let outside = self.config.buffer_gauge.bytes();
        if !s.partial.contains_key(&key) {
            let bytes = k as usize * t;
            if s.buffered + outside + bytes > self.config.buffer_bytes {
                self.stats.dropped_no_buffer += 1;
                return;
            }
            s.buffered += bytes;
            s.partial.insert(
                key,
                Partial {
                    k,
                    // Perhaps an earlier block's buffer, not zeroed: every
                    // byte of it is written before it is read (symbols as
                    // they come, the short last one padded here, the
                    // missing ones by the decoder).
                    data: self.config.buffer_gauge.buffer(bytes),
                    have: vec![false; k as usize],
                    have_count: 0,
                    recovery: ReceivedParity::default(),
                },
            );
        }
        let p = s.partial.get_mut(&key).expect("inserted above");
        self.stats.symbols_received += 1;
        if esi < k {
            if p.have[esi as usize] {
                self.stats.symbols_redundant += 1;
                return;
            }
            let at = esi as usize * t;
            p.data[at..at + payload.len()].copy_from_slice(payload);
            p.data[at + payload.len()..at + t].fill(0);
            p.have[esi as usize] = true;
            p.have_count += 1;
        } else {
            let idx = esi - k;
            if p.recovery.contains(idx) {
                self.stats.symbols_redundant += 1;
                return;
            }
            s.buffered += p.recovery.push(idx, payload, t);
        }
        let held = (s.buffered + outside) as u64;
        self.stats.buffer_peak = self.stats.buffer_peak.max(held);
        if p.count() >= p.k as usize {
            let p = s.partial.remove(&key).expect("present");
            s.buffered -= p.bytes();
            s.holdoff.remove(&key);
            self.complete_block(now, key, p, block_len);
        } else if h.flags & FLAG_REPAIR != 0 {
            let until = now + hold_after_repair;
            let e = s.holdoff.entry(key).or_insert(until);
            *e = (*e).max(until);
        }
    }

    fn complete_block(&mut self, now: Instant, key: BlockKey, p: Partial, block_len: usize) {
        let s = self.session.as_mut().expect("caller checked");
        let t = s.coding.symbol_size as usize;
        let r = s.coding.block_parity(p.k) as usize;
        let block = CompleteBlock::new(p.k as usize, r, t, block_len, p.data, p.have, p.recovery);
        if block.needs_decoding() {
            self.stats.blocks_decoded += 1;
        }
        let (o, b) = key;
        if o == 0 {
            // The manifest is small: rebuild it here.
            let Ok(data) = block.into_bytes(&mut self.codec).map(BlockBytes::into_vec) else {
                // Cannot happen with k distinct in-range symbols; treat as
                // loss so that the block is asked for again.
                self.stats.malformed += 1;
                return;
            };
            self.stats.blocks_completed += 1;
            let obj = &mut s.objects[0];
            obj.set_done(b);
            s.manifest_parts.insert(b, data);
            if obj.done_count == obj.blocks {
                self.manifest_complete(now);
            }
            return;
        }
        self.stats.blocks_completed += 1;
        let obj = &mut s.objects[o as usize];
        obj.set_done(b);
        let all_done = obj.done_count == obj.blocks;
        self.stats.bytes_delivered += block.len() as u64;
        let offset = s.coding.block_offset(BlockNumber(b));
        self.events.push_back(ReceiverEvent::Block {
            object: ObjectId(o),
            offset,
            block: block.counted_in(&self.config.buffer_gauge),
        });
        if all_done {
            s.objects[o as usize].state = ObjState::Delivered;
            s.skip_finished_objects();
            self.events.push_back(ReceiverEvent::ObjectComplete {
                object: ObjectId(o),
            });
        }
    }

    fn manifest_complete(&mut self, now: Instant) {
        let s = self.session.as_mut().expect("caller checked");
        let mut bytes = Vec::with_capacity(s.manifest_len as usize);
        for part in std::mem::take(&mut s.manifest_parts).into_values() {
            bytes.extend_from_slice(&part);
        }
        if *blake3::hash(&bytes).as_bytes() != s.manifest_hash {
            // Corrupted or forged symbols: start over a few times.
            s.manifest_attempts += 1;
            if s.manifest_attempts >= 3 {
                self.finish(Some("the manifest never matched its hash".into()));
            } else {
                let coding = s.coding;
                s.objects[0] = Obj::new(s.manifest_len, &coding);
                s.first_receiving = 0;
            }
            return;
        }
        let manifest = match Manifest::decode(&bytes) {
            Ok(m) if m.file_count() == s.object_count => m,
            Ok(_) => {
                self.finish(Some("rejected the manifest: wrong file count".into()));
                return;
            }
            Err(e) => {
                self.finish(Some(format!("rejected the manifest: {e}")));
                return;
            }
        };
        let blocks: u64 = manifest
            .files()
            .map(|(_, e)| match e.kind {
                EntryKind::File { size, .. } => s.coding.block_count_wide(size),
                EntryKind::Dir => 0,
            })
            .sum();
        if blocks > MAX_SESSION_BLOCKS {
            self.finish(Some(format!(
                "refused the push: {blocks} blocks is more than a receiver tracks ({MAX_SESSION_BLOCKS}); use larger symbols or blocks"
            )));
            return;
        }
        let refusal = self.check_limits(&manifest);
        let s = self.session.as_mut().expect("caller checked");
        let coding = s.coding;
        for (_, e) in manifest.files() {
            if let EntryKind::File { size, .. } = e.kind {
                s.objects.push(Obj::new(size, &coding));
            }
        }
        s.objects[0].state = ObjState::Verified;
        s.manifest_known = true;
        if let Some(why) = refusal {
            // Registered, and every file failed as refused: the sender
            // learns why at once instead of waiting for a silent receiver.
            self.refuse(now, why);
            return;
        }
        let s = self.session.as_mut().expect("caller checked");
        self.events.push_back(ReceiverEvent::SessionStarted {
            session: s.id,
            manifest: Arc::new(manifest),
            delete: s.delete,
            block_bytes: s.coding.block_k as u64 * s.coding.symbol_size as u64,
        });
        // Registration and empty files wait for handle_present.
        self.maybe_register(now);
    }

    /// Why this receiver's limits refuse `manifest`, if they do.
    fn check_limits(&self, manifest: &Manifest) -> Option<String> {
        let c = &self.config;
        let total = manifest.total_bytes();
        if total > c.max_push_bytes {
            return Some(format!(
                "refused the push: its {total} bytes are more than this receiver accepts (--max-push-size {})",
                c.max_push_bytes
            ));
        }
        if manifest.file_count() > c.max_files {
            return Some(format!(
                "refused the push: its {} files are more than this receiver accepts (--max-files {})",
                manifest.file_count(),
                c.max_files
            ));
        }
        for e in &manifest.entries {
            if let EntryKind::File { size, .. } = e.kind {
                if size > c.max_file_bytes {
                    return Some(format!(
                        "refused the push: {} is {size} bytes, more than this receiver accepts (--max-file-size {})",
                        e.path, c.max_file_bytes
                    ));
                }
            }
            let depth = e.path.split('/').count();
            if depth > c.max_path_depth {
                return Some(format!(
                    "refused the push: {} is {depth} levels deep, more than this receiver accepts (--max-path-depth {})",
                    e.path, c.max_path_depth
                ));
            }
            if e.path.len() > c.max_path_len {
                return Some(format!(
                    "refused the push: a path of {} bytes is longer than this receiver accepts (--max-path-len {})",
                    e.path.len(),
                    c.max_path_len
                ));
            }
        }
        None
    }

    /// Refuses the current push (a limit, or not enough disk space, found by
    /// the caller after [`ReceiverEvent::SessionStarted`]): every file not
    /// yet final fails as [`FailReason::Refused`], the receiver registers
    /// and reports that at once, and `problem` becomes its outcome's
    /// problem.
    pub fn refuse(&mut self, now: Instant, problem: String) {
        let Some(s) = &mut self.session else { return };
        if !s.manifest_known || self.finished {
            return;
        }
        for (o, obj) in s.objects.iter_mut().enumerate().skip(1) {
            if matches!(obj.state, ObjState::Receiving | ObjState::Delivered) {
                obj.state = ObjState::Failed(FailReason::Refused);
                s.failed.push((ObjectId(o as u32), FailReason::Refused));
            }
        }
        s.partial.clear();
        s.buffered = 0;
        s.refused = Some(problem);
        s.present_known = true;
        s.skip_finished_objects();
        self.check_complete();
        self.maybe_register(now);
        self.after_input(now);
    }

    /// Before [`Receiver::handle_present`]: the caller holds, from an
    /// earlier push that was interrupted, these blocks of `object` already
    /// written to its temporary file (`(first block, count)` ranges). They
    /// are not received again, the registration tells the sender (which
    /// skips blocks every receiver has), and a file whose blocks are all
    /// held is complete at once ([`ReceiverEvent::ObjectComplete`]).
    pub fn handle_partial(&mut self, now: Instant, object: ObjectId, blocks: &[(u32, u32)]) {
        let Some(s) = &mut self.session else { return };
        if !s.manifest_known || s.present_known || object.0 == 0 {
            return;
        }
        let Some(obj) = s.objects.get_mut(object.0 as usize) else {
            return;
        };
        if obj.state != ObjState::Receiving {
            return;
        }
        let mut ranges: Vec<(u32, u32)> = blocks
            .iter()
            .filter(|(_, c)| *c > 0)
            .map(|&(f, c)| (f.min(obj.blocks), f.saturating_add(c).min(obj.blocks)))
            .filter(|(f, e)| f < e)
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::new();
        for (f, e) in ranges {
            match merged.last_mut() {
                Some((_, end)) if f <= *end => *end = (*end).max(e),
                _ => merged.push((f, e)),
            }
        }
        for &(f, e) in &merged {
            for b in f..e {
                if !obj.is_done(b) {
                    obj.set_done(b);
                }
            }
        }
        if s.have_blocks.last().is_some_and(|&(o, _, _)| o >= object.0) {
            // Out of order: not reported (the blocks still count here).
        } else {
            s.have_blocks
                .extend(merged.iter().map(|&(f, e)| (object.0, f, e - f)));
        }
        if obj.done_count == obj.blocks {
            obj.state = ObjState::Delivered;
            s.skip_finished_objects();
            self.events
                .push_back(ReceiverEvent::ObjectComplete { object });
        }
        self.maybe_arm_nack(now);
    }

    /// Answers [`ReceiverEvent::SessionStarted`]: `present` lists the files
    /// of the manifest that are already in place byte for byte (same path,
    /// same hash, as the caller's store found them). They count as verified
    /// and are not received again, and the registration tells the sender,
    /// which sends no data for files every receiver already has. Every
    /// caller must call this once per session, with an empty list when it
    /// has nothing; the receiver registers only after it.
    pub fn handle_present(&mut self, now: Instant, present: &[ObjectId]) {
        let Some(s) = &mut self.session else { return };
        if !s.manifest_known || s.present_known {
            return;
        }
        s.present_known = true;
        let mut ids: Vec<u32> = present.iter().map(|o| o.0).collect();
        ids.sort_unstable();
        ids.dedup();
        for &o in &ids {
            let Some(obj) = s.objects.get_mut(o as usize) else {
                continue;
            };
            if o == 0 || obj.state != ObjState::Receiving {
                continue;
            }
            obj.state = ObjState::Verified;
            s.verified += 1;
            match s.have.last_mut() {
                Some((first, count)) if *first + *count == o => *count += 1,
                _ => s.have.push((o, 1)),
            }
        }
        // Empty files not already there have no block to wait for: they
        // are complete now.
        for (o, obj) in s.objects.iter_mut().enumerate().skip(1) {
            if obj.blocks == 0 && obj.state == ObjState::Receiving {
                obj.state = ObjState::Delivered;
                self.events.push_back(ReceiverEvent::ObjectComplete {
                    object: ObjectId(o as u32),
                });
            }
        }
        // Symbols of those files that arrived meanwhile are not needed.
        let partial = std::mem::take(&mut s.partial);
        for (key, p) in partial {
            if s.objects[key.0 as usize].state == ObjState::Receiving {
                s.partial.insert(key, p);
            } else {
                s.buffered -= p.bytes();
                s.holdoff.remove(&key);
            }
        }
        s.skip_finished_objects();
        self.check_complete();
        self.maybe_register(now);
        self.after_input(now);
    }

    /// The caller checked (and placed) a file after
    /// [`ReceiverEvent::ObjectComplete`]: `Ok` when it matched its hash and
    /// is in place, otherwise why not.
    pub fn handle_object_verified(
        &mut self,
        now: Instant,
        object: ObjectId,
        result: Result<(), FailReason>,
    ) {
        let Some(s) = &mut self.session else { return };
        let Some(obj) = s.objects.get_mut(object.0 as usize) else {
            return;
        };
        if object.0 == 0 || obj.state != ObjState::Delivered {
            return;
        }
        match result {
            Ok(()) => {
                obj.state = ObjState::Verified;
                s.verified += 1;
            }
            Err(reason) => {
                obj.state = ObjState::Failed(reason);
                s.failed.push((object, reason));
            }
        }
        self.check_complete();
        self.after_input(now);
    }

    fn check_complete(&mut self) {
        let s = self.session.as_mut().expect("caller checked");
        if s.complete || s.settling || !s.manifest_known {
            return;
        }
        // Every file object is verified or failed for good (each counted
        // once, in handle_object_verified).
        if s.verified as usize + s.failed.len() == s.objects.len() - 1 {
            if s.refused.is_some() {
                // Nothing was placed: nothing to settle.
                s.complete = true;
                s.status_due = true;
            } else {
                s.settling = true;
                self.events.push_back(ReceiverEvent::Settle {
                    prune: s.delete && s.failed.is_empty(),
                });
            }
        }
    }

    /// The caller made the tree final after [`ReceiverEvent::Settle`]: the
    /// receiver is complete now and confirms it to the sender.
    pub fn handle_settled(&mut self, now: Instant) {
        let Some(s) = &mut self.session else { return };
        if !s.settling || s.complete || self.finished {
            return;
        }
        s.complete = true;
        s.status_due = true;
        self.after_input(now);
    }

    fn handle_other_nack(&mut self, now: Instant, n: &Nack) {
        if n.node == self.config.node {
            // Our own NACK, looped back by the kernel.
            self.stats.ignored += 1;
            return;
        }
        let s = self.session.as_ref().expect("caller checked");
        let mut cumulative = 0u32;
        let mut holds = Vec::new();
        for e in &n.entries {
            cumulative += e.need as u32;
            let key = (e.object.0, e.block.0);
            let Some(obj) = s.objects.get(key.0 as usize) else {
                continue;
            };
            if key.1 >= obj.blocks || obj.is_done(key.1) || obj.state != ObjState::Receiving {
                continue;
            }
            let partial = s.partial.get(&key);
            let mine = match partial {
                Some(p) => (p.k as usize - p.count()) as u16,
                None => s.coding.block_k(obj.size, e.block),
            };
            // Theirs names source symbols: the sender may resend just
            // those, which covers us only if we lack no other.
            let covered = e.missing.is_empty()
                || partial
                    .and_then(Partial::missing_sources)
                    .is_some_and(|m| m.iter().all(|i| e.missing.contains(i)));
            // A need a little above theirs is suppressed too: with many
            // receivers another round follows anyway (someone loses a repair
            // symbol), and it carries our remainder.
            // Widened: a forged `need` near `u16::MAX` must not overflow.
            let need = e.need as u32;
            if covered && mine as u32 <= need + need / 4 {
                holds.push((key, now + self.repair_wait(s, cumulative)));
            }
        }
        let s = self.session.as_mut().expect("caller checked");
        for (key, until) in holds {
            let entry = s.holdoff.entry(key).or_insert(until);
            if *entry <= now {
                self.stats.nack_entries_suppressed += 1;
            }
            *entry = (*entry).max(until);
        }
    }

    /// The timer armed from [`Receiver::poll_timeout`] fired.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(s) = &mut self.session else { return };
        if self.finished {
            return;
        }
        if now.saturating_duration_since(s.last_heard) >= self.config.idle_timeout {
            let problem = if s.complete {
                None
            } else {
                Some(format!(
                    "the sender went silent for {}s",
                    self.config.idle_timeout.as_secs()
                ))
            };
            self.finish(problem);
            return;
        }
        if s.recheck_at.is_some_and(|t| now >= t) {
            s.recheck_at = None;
            self.maybe_arm_nack(now);
        }
        let s = self.session.as_mut().expect("checked above");
        if let Some((_, view)) = s.nack_at.filter(|(t, _)| now >= *t) {
            s.nack_at = None;
            self.send_nack(now, view);
        }
        self.after_input(now);
    }

    fn after_input(&mut self, now: Instant) {
        let Some(s) = &mut self.session else { return };
        if self.finished {
            return;
        }
        if s.status_due {
            s.status_due = false;
            let status = self.status(now);
            self.transmits.push_back(Control::Status(status));
        }
        let s = self.session.as_ref().expect("checked above");
        if s.complete && s.confirm_acked {
            self.finish(None);
        }
    }

    fn status(&self, now: Instant) -> Status {
        let s = self.session.as_ref().expect("caller checked");
        let missing = if s.manifest_known {
            s.objects
                .iter()
                .enumerate()
                .skip(1)
                .filter(|(_, o)| matches!(o.state, ObjState::Receiving | ObjState::Delivered))
                .take(MAX_STATUS_OBJECTS)
                .map(|(i, _)| ObjectId(i as u32))
                .collect()
        } else {
            Vec::new()
        };
        Status {
            node: self.config.node,
            name: self.config.name.clone(),
            echo: Self::echo(s, now),
            complete: s.complete,
            verified: s.verified,
            missing,
            failed: s.failed.iter().take(MAX_STATUS_OBJECTS).copied().collect(),
        }
    }

    fn finish(&mut self, problem: Option<String>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let s = self.session.as_mut().expect("finish needs a session");
        let files = if s.manifest_known {
            s.objects.len() as u32 - 1
        } else {
            s.object_count
        };
        let complete = s.complete && s.failed.is_empty();
        let problem = match problem.or_else(|| s.refused.clone()) {
            Some(p) => Some(p),
            None if !s.complete => Some(format!(
                "the sender ended the session with {} of {} files delivered",
                s.verified, files
            )),
            None if !s.failed.is_empty() => Some(format!("{} files failed", s.failed.len())),
            None => None,
        };
        // Free the block buffers now; the session may be long over.
        s.partial.clear();
        s.buffered = 0;
        self.events
            .push_back(ReceiverEvent::Finished(SessionOutcome {
                session: s.id,
                complete,
                problem,
                verified: s.verified,
                files,
                failed: s.failed.clone(),
            }));
    }

    // ------------------------------------------------------------------ NACK

    /// What NACKing would ask for now.
    fn view_now(s: &Session, now: Instant) -> NackView {
        NackView {
            at: now,
            horizon: (!s.flushed).then_some(s.sender_pos),
        }
    }

    /// Blocks to ask for as of `view`, with how many symbols each needs.
    /// Also returns the earliest hold-off that kept a block out.
    fn nack_candidates(&self, view: NackView, max: usize) -> (Vec<NackEntry>, Option<Instant>) {
        let s = self.session.as_ref().expect("caller checked");
        let mut out = Vec::new();
        let mut earliest_hold: Option<Instant> = None;
        let mut scanned = 0;
        let mut budget = self
            .config
            .buffer_bytes
            .saturating_sub(s.buffered + self.config.buffer_gauge.bytes());
        let t = s.coding.symbol_size as usize;
        let first = s.first_receiving as usize;
        let mut named_left = crate::limits::MAX_NACK_MISSING_TOTAL;
        // The sender resends named sources only to a lone receiver.
        let lone = s.timing.group_size <= 1;
        'objects: for (o, obj) in s.objects.iter().enumerate().skip(first) {
            if obj.state != ObjState::Receiving {
                continue;
            }
            let o = o as u32;
            for b in obj.first_missing..obj.blocks {
                if view.horizon.is_some_and(|h| (o, b) >= h) {
                    break 'objects;
                }
                scanned += 1;
                if scanned > MAX_SCAN || out.len() >= max {
                    break 'objects;
                }
                if obj.is_done(b) {
                    continue;
                }
                let key = (o, b);
                if let Some(&until) = s.holdoff.get(&key) {
                    if until > view.at {
                        earliest_hold = Some(earliest_hold.map_or(until, |e| e.min(until)));
                        continue;
                    }
                }
                let mut missing = Vec::new();
                let need = match s.partial.get(&key) {
                    Some(p) => {
                        if let Some(m) = lone.then(|| p.missing_sources()).flatten() {
                            if m.len() <= named_left {
                                named_left -= m.len();
                                missing = m;
                            }
                        }
                        (p.k as usize - p.count()) as u16
                    }
                    None => {
                        let k = s.coding.block_k(obj.size, BlockNumber(b));
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

    fn maybe_arm_nack(&mut self, now: Instant) {
        let Some(s) = &self.session else { return };
        if s.nack_at.is_some() || self.finished || Self::sender_gone(s, now) {
            return;
        }
        let view = Self::view_now(s, now);
        let (candidates, hold) = self.nack_candidates(view, 1);
        let s = self.session.as_ref().expect("checked above");
        let max = self.backoff_max(s);
        let group = s.timing.group_size;
        if candidates.is_empty() {
            let s = self.session.as_mut().expect("checked above");
            if let Some(h) = hold {
                s.recheck_at = Some(s.recheck_at.map_or(h, |r| r.min(h)));
            }
            return;
        }
        let delay = random_backoff(&mut self.rng, max, group);
        let s = self.session.as_mut().expect("checked above");
        s.nack_at = Some((now + delay, view));
    }

    /// True when the sender has said nothing for [`SENDER_GONE`] (and some
    /// round trips): NACKs would go nowhere. A whole group of receivers
    /// NACKing a dead sender until their idle timeout would flood the
    /// network; they wait quietly instead, and NACK again as soon as the
    /// sender is heard (any of its datagrams re-arms the timer).
    fn sender_gone(s: &Session, now: Instant) -> bool {
        now.saturating_duration_since(s.last_heard) >= SENDER_GONE + Self::grtt(s) * 4
    }

    /// Sends a NACK for the blocks `view` allows, then arms the next.
    fn send_nack(&mut self, now: Instant, view: NackView) {
        if self
            .session
            .as_ref()
            .is_some_and(|s| Self::sender_gone(s, now))
        {
            return;
        }
        // Only blocks that waited out this back-off: one that became a
        // candidate since (the sender moved on, or a hold-off ran out) gets
        // a back-off of its own below. Otherwise every receiver whose timer
        // happened to be running would ask for it at once, before anyone
        // could hear another's NACK and stay quiet.
        let (entries, _) = self.nack_candidates(view, MAX_NACK_ENTRIES);
        if !entries.is_empty() {
            let s = self.session.as_ref().expect("caller checked");
            let mut cumulative = 0;
            let mut holds = Vec::with_capacity(entries.len());
            for e in &entries {
                cumulative += e.need as u32;
                holds.push((
                    (e.object.0, e.block.0),
                    now + self.repair_wait(s, cumulative),
                ));
            }
            let echo = Self::echo(s, now);
            let loss = s.loss.wire();
            let s = self.session.as_mut().expect("caller checked");
            s.holdoff.extend(holds);
            self.stats.nacks_sent += 1;
            self.stats.nack_entries_sent += entries.len() as u64;
            self.transmits.push_back(Control::Nack(Nack {
                node: self.config.node,
                echo,
                loss,
                entries,
            }));
        }
        self.maybe_arm_nack(now);
    }

    // --------------------------------------------------------------- output

    /// Writes the next feedback datagram into `buf` (cleared first).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        let msg = self.transmits.pop_front()?;
        let session = self.session.as_ref()?.id;
        buf.clear();
        wire::write_control(buf, session, &msg);
        if let (Some(sealer), Some(auth)) = (&mut self.sealer, &self.config.auth) {
            sealer.seal(buf, 0, auth.unix_us(now));
        }
        Some(Transmit {
            destination: Destination::Group,
            size: buf.len(),
            segment_size: buf.len(),
        })
    }

    /// Next event for the caller.
    pub fn poll_event(&mut self) -> Option<ReceiverEvent> {
        self.events.pop_front()
    }

    /// When to call [`Receiver::handle_timeout`] next (`None`: only input
    /// can make progress, e.g. before any session was announced).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let s = self.session.as_ref()?;
        if self.finished {
            return None;
        }
        let mut t = s.last_heard + self.config.idle_timeout;
        if let Some((n, _)) = s.nack_at {
            t = t.min(n);
        }
        if let Some(r) = s.recheck_at {
            t = t.min(r);
        }
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A forged NACK asking for nearly `u16::MAX` symbols of a block this
    /// receiver still lacks must be taken as a (large) need, not overflow
    /// the suppression margin `need + need / 4`.
    #[test]
    fn an_overheard_nack_with_a_huge_need_does_not_overflow() {
        let t0 = Instant::now();
        let session = SessionId(0x5e55);
        let mut r = Receiver::new(ReceiverConfig::new(NodeId(7), "test", 7));
        let mut buf = Vec::new();
        let announce = Announce {
            timing: Timing {
                ts_us: 1,
                grtt_us: 10_000,
                rate_bps: 10_000_000,
                group_size: 2,
            },
            symbol_size: 256,
            block_k: 16,
            parity: 8,
            manifest_len: 1000,
            manifest_hash: [0; 32],
            object_count: 1,
            data_pos: (0, 0),
            acked: Vec::new(),
            delete: false,
        };
        wire::write_control(&mut buf, session, &Control::Announce(announce));
        r.handle_datagram(t0, &buf);
        assert_eq!(r.session_id(), Some(session));
        for need in [u16::MAX, 52_429, 60_000] {
            let nack = Nack {
                node: NodeId(99),
                echo: Echo::default(),
                loss: 0,
                entries: vec![NackEntry {
                    object: ObjectId::MANIFEST,
                    block: BlockNumber(0),
                    need,
                    missing: Vec::new(),
                }],
            };
            buf.clear();
            wire::write_control(&mut buf, session, &Control::Nack(nack));
            r.handle_datagram(t0, &buf);
        }
        assert_eq!(r.stats().malformed, 0);
        assert!(!r.is_finished());
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

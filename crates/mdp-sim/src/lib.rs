//! A deterministic in-memory multicast network: one [`Sender`] and N
//! [`Receiver`]s over lossy links, in virtual time.
//!
//! The world jumps from event to event (a datagram arriving, a state
//! machine's timer), so a 100-receiver push takes milliseconds of real time.
//! Every random choice comes from one seed: the same [`SimConfig`] always
//! gives the same run. Receivers keep their files in memory and check them
//! against the manifest's BLAKE3 hashes like the real receiver does.
//!
//! Loss: each receiver's link drops datagrams independently with
//! `loss_independent` (both directions), and the sender's own link drops
//! with `loss_sender` before the group fans out, so those losses are shared
//! by every receiver (correlated loss).
//!
//! [`netns`] holds the helpers that put real-binary tests in private network
//! namespaces.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod fuzz;
pub mod netns;

use mdp_proto::fec::Codec;
use mdp_proto::wire::{self, Packet};
use mdp_proto::{
    EntryKind, Manifest, ObjectId, Receiver, ReceiverConfig, ReceiverEvent, ReceiverStats, Sender,
    SenderConfig, SenderEvent, SenderReport, SessionOutcome,
};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A deterministic PRNG for the network (SplitMix64).
#[derive(Clone, Debug)]
pub struct SimRng(u64);

impl SimRng {
    /// Seeded.
    pub fn new(seed: u64) -> Self {
        SimRng(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// What happens to one receiver during the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fate {
    /// Runs from the start to the end.
    #[default]
    Normal,
    /// Starts only this long after the sender.
    LateJoin(Duration),
    /// Stops dead (no input, no output) this long after the sender started.
    Killed(Duration),
}

/// The world's settings.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of receivers.
    pub receivers: usize,
    /// Per-receiver loss probability, independent per link and direction.
    pub loss_independent: f64,
    /// Loss probability on the sender's link, shared by all receivers.
    pub loss_sender: f64,
    /// One-way latency of every link.
    pub latency: Duration,
    /// Random extra latency, uniform in `0..jitter` (reorders datagrams).
    pub jitter: Duration,
    /// Probability that a delivered datagram arrives twice.
    pub duplicate: f64,
    /// Seed for the network and the receivers.
    pub seed: u64,
    /// The sender's settings.
    pub sender: SenderConfig,
    /// Receiver block buffer.
    pub receiver_buffer: usize,
    /// Per-receiver fates (missing entries: [`Fate::Normal`]).
    pub fates: Vec<Fate>,
    /// Per receiver: files (path → bytes) already in its directory before
    /// the push (missing entries: none).
    pub preexisting: Vec<HashMap<String, Vec<u8>>>,
    /// A shared key: the sender and every receiver authenticate packets.
    pub key: Option<mdp_proto::auth::Key>,
    /// The sender's key, when it differs from the receivers' (`None`: the
    /// same as `key`; `Some(None)`: the sender has none).
    pub sender_key: Option<Option<mdp_proto::auth::Key>>,
    /// How far the receivers' wall clocks are ahead of the sender's.
    pub receiver_clock_ahead: Duration,
    /// An attacker on the sender's link: with this probability each
    /// datagram of the sender is also delivered with one byte changed, and
    /// again (a replay) 50 ms later.
    pub tamper: f64,
    /// The sender is killed (stops dead, says nothing) at the first time
    /// and the same push is started again, as a new session, at the
    /// second. Receivers then run as services: a finished session is
    /// followed by a fresh state machine that keeps the files placed and
    /// the blocks written so far (as the store keeps them for resume).
    pub sender_crash: Option<(Duration, Duration)>,
    /// Changes receiver `i`'s settings before it starts (limits, …).
    pub receiver_setup: Option<fn(usize, &mut ReceiverConfig)>,
    /// How long the sender's caller takes to answer a parity job
    /// ([`SenderEvent::EncodeParity`], the encoder thread of `mdp-send`);
    /// zero answers at once. Jobs are answered in order.
    pub encode_delay: Duration,
    /// How long a receiver's caller takes to settle its tree
    /// ([`ReceiverEvent::Settle`]: directory times, `--delete`); zero
    /// settles at once.
    pub settle_delay: Duration,
    /// Virtual time after which the run is abandoned.
    pub max_time: Duration,
}

impl SimConfig {
    /// `receivers` receivers, lossless 1 ms links, a 200 Mbit/s sender that
    /// waits for all of them.
    pub fn new(receivers: usize, seed: u64) -> Self {
        let mut sender = SenderConfig::new(mdp_proto::SessionId(0x5e55_1000 + seed));
        sender.rate = mdp_proto::RateMode::Fixed(200_000_000);
        sender.expected_receivers = receivers as u32;
        sender.wait = Duration::from_secs(2);
        sender.timeout = Duration::from_secs(120);
        sender.initial_grtt = Duration::from_millis(2);
        SimConfig {
            receivers,
            loss_independent: 0.0,
            loss_sender: 0.0,
            latency: Duration::from_millis(1),
            jitter: Duration::ZERO,
            duplicate: 0.0,
            seed,
            sender,
            receiver_buffer: 64 << 20,
            fates: Vec::new(),
            preexisting: Vec::new(),
            key: None,
            sender_key: None,
            receiver_clock_ahead: Duration::ZERO,
            tamper: 0.0,
            sender_crash: None,
            receiver_setup: None,
            encode_delay: Duration::ZERO,
            settle_delay: Duration::ZERO,
            max_time: Duration::from_secs(300),
        }
    }
}

/// Files to push: a manifest and the content of each file object.
#[derive(Clone, Debug)]
pub struct Content {
    /// The manifest.
    pub manifest: Manifest,
    /// File bytes, by object id.
    pub files: HashMap<ObjectId, Vec<u8>>,
}

impl Content {
    /// Builds content from `(path, bytes)` pairs and directory paths.
    pub fn new(dirs: &[&str], files: Vec<(String, Vec<u8>)>) -> Content {
        let mut entries = Vec::new();
        for d in dirs {
            entries.push(mdp_proto::Entry {
                path: d.to_string(),
                kind: EntryKind::Dir,
                mode: 0o755,
                mtime_secs: 1_700_000_000,
                mtime_nanos: 0,
            });
        }
        let mut by_obj = HashMap::new();
        for (i, (path, data)) in files.into_iter().enumerate() {
            entries.push(mdp_proto::Entry {
                path,
                kind: EntryKind::File {
                    size: data.len() as u64,
                    hash: *blake3::hash(&data).as_bytes(),
                },
                mode: 0o644,
                mtime_secs: 1_700_000_000,
                mtime_nanos: 0,
            });
            by_obj.insert(ObjectId(i as u32 + 1), data);
        }
        Content {
            manifest: Manifest { entries },
            files: by_obj,
        }
    }

    /// Pseudo-random bytes, reproducible from `seed`.
    pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = SimRng::new(seed);
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        v.truncate(len);
        v
    }

    /// Answers a sender's [`SenderEvent::ReadBlock`] from memory and runs
    /// its [`SenderEvent::EncodeParity`] jobs, both at once (other events
    /// are ignored).
    pub fn serve(&self, sender: &mut Sender, now: Instant, event: SenderEvent) {
        match event {
            SenderEvent::ReadBlock {
                object,
                block,
                offset,
                len,
            } => {
                let file = &self.files[&object];
                let data = file[offset as usize..offset as usize + len].to_vec();
                sender.handle_block(now, object, block, data);
            }
            SenderEvent::EncodeParity { object, block, job } => {
                let symbols = job
                    .run(&mut Codec::default())
                    .expect("the sender validated its coding parameters");
                sender.handle_parity(now, object, block, job, symbols);
            }
            _ => {}
        }
    }

    /// Total bytes of all files.
    pub fn total_bytes(&self) -> u64 {
        self.files.values().map(|f| f.len() as u64).sum()
    }
}

/// What one receiver ended with.
#[derive(Debug)]
pub struct ReceiverResult {
    /// Files it verified, by path.
    pub files: HashMap<String, Vec<u8>>,
    /// How its session ended (None: it never finished).
    pub outcome: Option<SessionOutcome>,
    /// Its counters.
    pub stats: ReceiverStats,
    /// Its fate.
    pub fate: Fate,
    /// Every session's outcome, in order (several with `sender_crash`).
    pub outcomes: Vec<SessionOutcome>,
    /// The counters of each finished session, in the same order.
    pub session_stats: Vec<ReceiverStats>,
    /// Its node id.
    pub node: mdp_proto::NodeId,
    /// When (from the start) its caller finished settling the tree of the
    /// last session that got that far.
    pub settled: Option<Duration>,
}

/// The outcome of a run.
#[derive(Debug)]
pub struct SimResult {
    /// The sender's report (None: the run hit `max_time`).
    pub report: Option<Arc<SenderReport>>,
    /// The sender's counters.
    pub sender_stats: mdp_proto::SenderStats,
    /// Every receiver.
    pub receivers: Vec<ReceiverResult>,
    /// Virtual time from start to the sender's end.
    pub elapsed: Duration,
    /// Virtual time from start to the last receiver's end.
    pub elapsed_all: Duration,
    /// Distinct blocks of which at least one receiver lost at least one
    /// first-transmission symbol.
    pub blocks_with_loss: usize,
    /// NACK entries sent by all receivers.
    pub nack_entries: u64,
    /// Total file bytes pushed.
    pub file_bytes: u64,
    /// Payload bytes the sender handed over without copying them
    /// ([`Sender::poll_gather`]'s shared pieces).
    pub shared_payload_bytes: u64,
}

impl SimResult {
    /// UDP payload bytes the sender sent per byte of file.
    pub fn wire_per_byte(&self) -> f64 {
        self.sender_stats.bytes_sent as f64 / self.file_bytes.max(1) as f64
    }

    /// NACK entries sent per block that suffered loss.
    pub fn nacks_per_lost_block(&self) -> f64 {
        self.nack_entries as f64 / self.blocks_with_loss.max(1) as f64
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Node {
    Sender,
    Receiver(usize),
}

struct SimReceiver {
    machine: Receiver,
    fate: Fate,
    alive: bool,
    started: bool,
    /// Path and hash of each file object, by object id.
    objects: HashMap<ObjectId, (String, [u8; 32])>,
    buffers: HashMap<ObjectId, Vec<u8>>,
    verified: HashMap<String, Vec<u8>>,
    /// Blocks written this session, per file object.
    written: HashMap<ObjectId, std::collections::BTreeSet<u32>>,
    /// Incomplete files of earlier sessions, by content hash: their bytes
    /// and the blocks written (what the store keeps for resume).
    partials: HashMap<[u8; 32], (Vec<u8>, std::collections::BTreeSet<u32>)>,
    /// Every session's outcome, in order.
    outcomes: Vec<SessionOutcome>,
    /// The counters of each finished session's state machine.
    session_stats: Vec<ReceiverStats>,
    outcome: Option<SessionOutcome>,
    timeout: Option<Instant>,
    /// A [`ReceiverEvent::Settle`] being worked on, answered then.
    settle_at: Option<Instant>,
    settled: Option<Instant>,
}

/// The simulated world.
pub struct World {
    config: SimConfig,
    content: Content,
    rng: SimRng,
    start: Instant,
    now: Instant,
    seq: u64,
    queue: BinaryHeap<Reverse<(Instant, u64, Node)>>,
    in_flight: HashMap<u64, Rc<[u8]>>,
    sender: Sender,
    sender_timeout: Option<Instant>,
    sender_end: Option<Instant>,
    receivers: Vec<SimReceiver>,
    /// The settings each receiver's state machine was made with.
    receiver_configs: Vec<ReceiverConfig>,
    /// The sender's settings (for a restart after `sender_crash`).
    sender_config: mdp_proto::SenderConfig,
    sender_alive: bool,
    /// 0: no crash yet, 1: crashed, 2: restarted.
    crash_stage: u8,
    lost_blocks: HashSet<(u32, u32)>,
    /// Parity jobs being computed, with when they are answered.
    encoding: std::collections::VecDeque<(Instant, SenderEvent)>,
    buf: Vec<u8>,
    gather: mdp_proto::Gather,
    /// Payload bytes the sender handed over as shared pieces (not copied).
    shared_payload_bytes: u64,
    codec: Codec,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World").finish_non_exhaustive()
    }
}

impl World {
    /// Builds the world; the sender starts at once.
    pub fn new(config: SimConfig, content: Content) -> World {
        let start = Instant::now();
        // Wall clocks: an arbitrary Unix time at the start of the world.
        const UNIX_AT_START_US: u64 = 1_800_000_000_000_000;
        let mut sender_config = config.sender.clone();
        let sender_key = config.sender_key.clone().unwrap_or(config.key.clone());
        sender_config.auth =
            sender_key.map(|k| mdp_proto::auth::AuthConfig::new(k, start, UNIX_AT_START_US));
        let sender = Sender::new(sender_config.clone(), content.manifest.clone(), start)
            .expect("valid simulation settings");
        let mut receiver_configs = Vec::new();
        let mut rng = SimRng::new(config.seed);
        let receivers = (0..config.receivers)
            .map(|i| {
                let mut rc = ReceiverConfig::new(
                    mdp_proto::NodeId(rng.next_u64()),
                    &format!("r{i}"),
                    rng.next_u64(),
                );
                rc.buffer_bytes = config.receiver_buffer;
                rc.auth = config.key.clone().map(|k| {
                    let ahead = config.receiver_clock_ahead.as_micros() as u64;
                    mdp_proto::auth::AuthConfig::new(k, start, UNIX_AT_START_US + ahead)
                });
                if let Some(setup) = config.receiver_setup {
                    setup(i, &mut rc);
                }
                let fate = config.fates.get(i).copied().unwrap_or_default();
                receiver_configs.push(rc.clone());
                SimReceiver {
                    machine: Receiver::new(rc),
                    fate,
                    alive: true,
                    started: !matches!(fate, Fate::LateJoin(_)),
                    objects: HashMap::new(),
                    buffers: HashMap::new(),
                    verified: config.preexisting.get(i).cloned().unwrap_or_default(),
                    written: HashMap::new(),
                    partials: HashMap::new(),
                    outcomes: Vec::new(),
                    session_stats: Vec::new(),
                    outcome: None,
                    timeout: None,
                    settle_at: None,
                    settled: None,
                }
            })
            .collect();
        World {
            sender_config,
            sender_alive: true,
            crash_stage: 0,
            receiver_configs,
            config,
            content,
            rng,
            start,
            now: start,
            seq: 0,
            queue: BinaryHeap::new(),
            in_flight: HashMap::new(),
            sender,
            sender_timeout: None,
            sender_end: None,
            receivers,
            lost_blocks: HashSet::new(),
            encoding: std::collections::VecDeque::new(),
            codec: Codec::default(),
            buf: Vec::with_capacity(65536),
            gather: mdp_proto::Gather::default(),
            shared_payload_bytes: 0,
        }
    }

    fn link_delay(&mut self) -> Duration {
        let j = self.config.jitter.as_nanos() as u64;
        let extra = if j == 0 { 0 } else { self.rng.next_u64() % j };
        self.config.latency + Duration::from_nanos(extra)
    }

    fn schedule(&mut self, to: Node, datagram: Rc<[u8]>) {
        let copies = if self.rng.chance(self.config.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = self.now + self.link_delay();
            self.seq += 1;
            self.in_flight.insert(self.seq, datagram.clone());
            self.queue.push(Reverse((at, self.seq, to)));
        }
    }

    fn schedule_at(&mut self, at: Instant, to: Node, datagram: Rc<[u8]>) {
        self.seq += 1;
        self.in_flight.insert(self.seq, datagram);
        self.queue.push(Reverse((at, self.seq, to)));
    }

    fn multicast_from_sender(&mut self, datagram: &[u8]) {
        let first_tx = match wire::parse(datagram) {
            Ok(Packet::Data { header, .. }) if header.flags & wire::FLAG_REPAIR == 0 => {
                Some((header.object.0, header.block.0))
            }
            _ => None,
        };
        if self.rng.chance(self.config.loss_sender) {
            if let Some(key) = first_tx {
                self.lost_blocks.insert(key);
            }
            return;
        }
        if self.config.tamper > 0.0 && self.rng.chance(self.config.tamper) {
            // A forged copy (one byte changed) now, a replay later.
            let mut forged = datagram.to_vec();
            let at = 12 + (self.rng.next_u64() as usize) % (forged.len() - 12);
            forged[at] ^= 1 << (self.rng.next_u64() % 8);
            let forged: Rc<[u8]> = forged.into();
            let replay: Rc<[u8]> = datagram.into();
            for i in 0..self.receivers.len() {
                self.schedule(Node::Receiver(i), forged.clone());
                self.schedule_at(
                    self.now + Duration::from_millis(50),
                    Node::Receiver(i),
                    replay.clone(),
                );
            }
        }
        let d: Rc<[u8]> = datagram.into();
        for i in 0..self.receivers.len() {
            if self.rng.chance(self.config.loss_independent) {
                if let Some(key) = first_tx {
                    if self.receivers[i].alive && self.receivers[i].started {
                        self.lost_blocks.insert(key);
                    }
                }
                continue;
            }
            self.schedule(Node::Receiver(i), d.clone());
        }
    }

    fn multicast_from_receiver(&mut self, from: usize, datagram: &[u8]) {
        // The receiver's own uplink, then every other member's downlink.
        if self.rng.chance(self.config.loss_independent) {
            return;
        }
        let d: Rc<[u8]> = datagram.into();
        self.schedule(Node::Sender, d.clone());
        for i in 0..self.receivers.len() {
            if i != from && !self.rng.chance(self.config.loss_independent) {
                self.schedule(Node::Receiver(i), d.clone());
            }
        }
    }

    fn drain_sender(&mut self) {
        loop {
            let mut progressed = false;
            // The gathering path, as mdp-send takes it: each datagram is
            // put together from its pieces here, as the kernel does.
            let mut gather = std::mem::take(&mut self.gather);
            let mut d = std::mem::take(&mut self.buf);
            while let Some(t) = self.sender.poll_gather(self.now, &mut gather) {
                progressed = true;
                let mut size = 0;
                for i in 0..gather.len() {
                    let [own, shared] = gather.pieces(i);
                    d.clear();
                    d.extend_from_slice(own);
                    d.extend_from_slice(shared);
                    self.shared_payload_bytes += shared.len() as u64;
                    assert!(
                        d.len() == t.segment_size
                            || (i + 1 == gather.len() && d.len() < t.segment_size),
                        "datagram {i} of a batch of {}-byte segments has {} bytes",
                        t.segment_size,
                        d.len()
                    );
                    size += d.len();
                    self.multicast_from_sender(&d);
                }
                assert_eq!(size, t.size, "the batch's size");
            }
            self.buf = d;
            self.gather = gather;
            while let Some(ev) = self.sender.poll_event() {
                progressed = true;
                if matches!(ev, SenderEvent::EncodeParity { .. })
                    && !self.config.encode_delay.is_zero()
                {
                    let at = self.now + self.config.encode_delay;
                    self.encoding.push_back((at, ev));
                    continue;
                }
                self.content.serve(&mut self.sender, self.now, ev);
            }
            if !progressed {
                break;
            }
        }
        self.sender_timeout = self.sender.poll_timeout();
        if self.sender.is_finished() && self.sender_end.is_none() {
            self.sender_end = Some(self.now);
        }
    }

    fn drain_receiver(&mut self, i: usize) {
        let mut buf = std::mem::take(&mut self.buf);
        loop {
            let mut progressed = false;
            while let Some(t) = self.receivers[i].machine.poll_transmit(self.now, &mut buf) {
                progressed = true;
                let d = buf[..t.size].to_vec();
                self.multicast_from_receiver(i, &d);
            }
            while let Some(ev) = self.receivers[i].machine.poll_event() {
                progressed = true;
                self.receiver_event(i, ev);
            }
            if !progressed {
                break;
            }
        }
        self.buf = buf;
        self.receivers[i].timeout = self.receivers[i].machine.poll_timeout();
    }

    fn receiver_event(&mut self, i: usize, ev: ReceiverEvent) {
        let now = self.now;
        let r = &mut self.receivers[i];
        match ev {
            ReceiverEvent::SessionStarted { manifest, .. } => {
                // As the store does: files already in place, byte for byte,
                // are reported and not received again.
                let mut present = Vec::new();
                for (id, e) in manifest.files() {
                    if let EntryKind::File { size, hash } = e.kind {
                        let held = r.verified.get(&e.path);
                        if held.is_some_and(|d| *blake3::hash(d).as_bytes() == hash) {
                            present.push(id);
                            continue;
                        }
                        r.objects.insert(id, (e.path.clone(), hash));
                        // An earlier, interrupted push of the same file.
                        match r.partials.remove(&hash) {
                            Some((data, blocks)) if data.len() == size as usize => {
                                let ranges = to_ranges(&blocks);
                                r.buffers.insert(id, data);
                                r.written.insert(id, blocks);
                                r.machine.handle_partial(now, id, &ranges);
                            }
                            _ => {
                                r.buffers.insert(id, vec![0; size as usize]);
                            }
                        }
                    }
                }
                r.machine.handle_present(now, &present);
            }
            ReceiverEvent::Block {
                object,
                offset,
                block,
            } => {
                let data = block
                    .into_bytes(&mut self.codec)
                    .expect("k distinct symbols decode");
                let block_bytes =
                    self.config.sender.block_k as u64 * self.config.sender.symbol_size as u64;
                let r = &mut self.receivers[i];
                let f = r.buffers.get_mut(&object).expect("object of the manifest");
                f[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
                r.written
                    .entry(object)
                    .or_default()
                    .insert((offset / block_bytes) as u32);
            }
            ReceiverEvent::ObjectComplete { object } => {
                let (path, hash) = r.objects[&object].clone();
                let data = r.buffers.remove(&object).unwrap_or_default();
                r.written.remove(&object);
                let ok = *blake3::hash(&data).as_bytes() == hash;
                if ok {
                    r.verified.insert(path, data);
                }
                let result = if ok {
                    Ok(())
                } else {
                    Err(wire::FailReason::HashMismatch)
                };
                r.machine.handle_object_verified(now, object, result);
            }
            ReceiverEvent::Settle { .. } => {
                if self.config.settle_delay.is_zero() {
                    r.settled = Some(now);
                    r.machine.handle_settled(now);
                } else {
                    r.settle_at = Some(now + self.config.settle_delay);
                }
            }
            ReceiverEvent::Finished(outcome) => {
                r.settle_at = None;
                r.session_stats.push(r.machine.stats());
                r.outcomes.push(outcome.clone());
                r.outcome = Some(outcome);
                if self.config.sender_crash.is_some() {
                    self.restart_receiver(i);
                }
            }
        }
    }

    /// Service mode: keeps what the finished session left (placed files,
    /// written blocks of the others) and starts a fresh state machine.
    fn restart_receiver(&mut self, i: usize) {
        let r = &mut self.receivers[i];
        for (id, data) in std::mem::take(&mut r.buffers) {
            let blocks = r.written.remove(&id).unwrap_or_default();
            if let Some((_, hash)) = r.objects.get(&id) {
                if !blocks.is_empty() {
                    r.partials.insert(*hash, (data, blocks));
                }
            }
        }
        r.written.clear();
        r.objects.clear();
        let mut config = self.receiver_configs[i].clone();
        if let Some(o) = &r.outcome {
            config.ignore_sessions.push(o.session);
        }
        self.receiver_configs[i] = config.clone();
        r.machine = Receiver::new(config);
    }

    fn next_time(&self) -> Option<Instant> {
        let mut t = self.queue.peek().map(|Reverse((at, _, _))| *at);
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t: Instant| t.min(x)));
            }
        };
        if self.sender_alive {
            consider(self.sender_timeout);
            consider(self.encoding.front().map(|(at, _)| *at));
        }
        if let Some((crash, restart)) = self.config.sender_crash {
            match self.crash_stage {
                0 => consider(Some(self.start + crash)),
                1 => consider(Some(self.start + restart)),
                _ => {}
            }
        }
        for r in &self.receivers {
            if !r.alive {
                continue;
            }
            match (r.started, r.fate) {
                (false, Fate::LateJoin(d)) => consider(Some(self.start + d)),
                (true, Fate::Killed(d)) => {
                    consider(Some(self.start + d));
                    consider(r.timeout);
                }
                _ => consider(r.timeout),
            }
            if r.started {
                consider(r.settle_at);
            }
        }
        t
    }

    /// Runs until the sender finishes (or `max_time` passes).
    pub fn run(mut self) -> SimResult {
        self.drain_sender();
        for i in 0..self.receivers.len() {
            self.drain_receiver(i);
        }
        let limit = self.start + self.config.max_time;
        let mut stuck = 0u32;
        // Run until the sender ended and every live receiver finished too
        // (one that missed every DONE ends by its idle timeout).
        while !self.sender.is_finished()
            || self.receivers.iter().any(|r| {
                r.alive && r.started && !r.machine.is_finished() && r.machine.session_id().is_some()
            })
        {
            let Some(next) = self.next_time() else { break };
            if next > limit {
                break;
            }
            // A state machine that asks to be woken at `now` again and again
            // without doing anything would spin here forever.
            stuck = if next <= self.now { stuck + 1 } else { 0 };
            assert!(
                stuck < 1_000_000,
                "no progress in virtual time: a timer that frees nothing"
            );
            self.now = self.now.max(next);
            let now = self.now;
            // The sender's crash and restart.
            if let Some((crash, restart)) = self.config.sender_crash {
                if self.crash_stage == 0 && now >= self.start + crash {
                    self.crash_stage = 1;
                    self.sender_alive = false;
                } else if self.crash_stage == 1 && now >= self.start + restart {
                    self.crash_stage = 2;
                    let mut c = self.sender_config.clone();
                    c.session = mdp_proto::SessionId(c.session.0 + 1);
                    self.sender = Sender::new(c, self.content.manifest.clone(), now)
                        .expect("valid simulation settings");
                    self.sender_alive = true;
                    self.sender_end = None;
                    self.encoding.clear();
                    self.drain_sender();
                }
            }
            // Fates first.
            for i in 0..self.receivers.len() {
                let r = &mut self.receivers[i];
                match r.fate {
                    Fate::LateJoin(d) if !r.started && now >= self.start + d => r.started = true,
                    Fate::Killed(d) if r.alive && now >= self.start + d => r.alive = false,
                    _ => {}
                }
            }
            // Datagrams due now.
            while let Some(Reverse((at, seq, to))) = self.queue.peek().copied() {
                if at > now {
                    break;
                }
                self.queue.pop();
                let d = self.in_flight.remove(&seq).expect("queued datagram");
                match to {
                    Node::Sender => {
                        if self.sender_alive {
                            self.sender.handle_datagram(now, &d);
                            self.drain_sender();
                        }
                    }
                    Node::Receiver(i) => {
                        let r = &mut self.receivers[i];
                        if r.alive && r.started {
                            r.machine.handle_datagram(now, &d);
                            self.drain_receiver(i);
                        }
                    }
                }
            }
            // Parity jobs done now.
            while self.sender_alive && self.encoding.front().is_some_and(|(at, _)| *at <= now) {
                let (_, ev) = self.encoding.pop_front().expect("checked");
                self.content.serve(&mut self.sender, now, ev);
                self.drain_sender();
            }
            // Timers due now.
            if self.sender_alive && self.sender_timeout.is_some_and(|t| t <= now) {
                self.sender.handle_timeout(now);
                self.drain_sender();
            }
            for i in 0..self.receivers.len() {
                let r = &mut self.receivers[i];
                if r.alive && r.started && r.timeout.is_some_and(|t| t <= now) {
                    r.machine.handle_timeout(now);
                    self.drain_receiver(i);
                }
                let r = &mut self.receivers[i];
                if r.alive && r.started && r.settle_at.is_some_and(|t| t <= now) {
                    r.settle_at = None;
                    r.settled = Some(now);
                    r.machine.handle_settled(now);
                    self.drain_receiver(i);
                }
            }
        }
        let nack_entries = self
            .receivers
            .iter()
            .map(|r| r.machine.stats().nack_entries_sent)
            .sum();
        SimResult {
            report: self.sender.report().cloned(),
            sender_stats: self.sender.stats(),
            elapsed: self.sender_end.unwrap_or(self.now) - self.start,
            elapsed_all: self.now - self.start,
            blocks_with_loss: self.lost_blocks.len(),
            nack_entries,
            file_bytes: self.content.total_bytes(),
            shared_payload_bytes: self.shared_payload_bytes,
            receivers: self
                .receivers
                .into_iter()
                .map(|r| ReceiverResult {
                    node: r.machine.node(),
                    files: r.verified,
                    outcome: r.outcome,
                    stats: r.machine.stats(),
                    fate: r.fate,
                    outcomes: r.outcomes,
                    session_stats: r.session_stats,
                    settled: r.settled.map(|t| t - self.start),
                })
                .collect(),
        }
    }
}

/// Ascending block numbers as `(first, count)` ranges.
fn to_ranges(blocks: &std::collections::BTreeSet<u32>) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &b in blocks {
        match out.last_mut() {
            Some((f, c)) if *f + *c == b => *c += 1,
            _ => out.push((b, 1)),
        }
    }
    out
}

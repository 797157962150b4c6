//! A simulated receiver's caller: its files in memory, checked against the
//! manifest's BLAKE3 hashes like the real store does (each block before it
//! is written, each file before it counts), the blocks kept for resume, the
//! blocks of an older version at a file's path that a changed file starts
//! from, and the answers to the state machine's requests.
//!
//! **Invariant:** a file is in `verified` only when its bytes match the
//! manifest's hash, and a block is in `written` only once its bytes are in
//! the file's buffer and matched the manifest's hash for it, so resume never
//! claims a block it does not hold.

use crate::drain::Output;
use mdp_proto::fec::Codec;
use mdp_proto::ranges;
use mdp_proto::wire::{FailReason, HookOutcome};
use mdp_proto::{
    Entry, EntryKind, ObjectId, Receiver, ReceiverConfig, ReceiverEvent, ReceiverRequest,
    ReceiverStats, SessionOutcome,
};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// What a receiver's caller keeps: files, partial files, outcomes.
#[derive(Debug, Default)]
pub(crate) struct Store {
    /// The manifest entry of each file object, by object id.
    objects: HashMap<ObjectId, Entry>,
    buffers: HashMap<ObjectId, Vec<u8>>,
    pub(crate) verified: HashMap<String, Vec<u8>>,
    /// Blocks written this session, per file object.
    written: HashMap<ObjectId, BTreeSet<u32>>,
    /// Incomplete files of earlier sessions, by content hash: their bytes
    /// and the blocks written (what the store keeps for resume).
    partials: HashMap<[u8; 32], (Vec<u8>, BTreeSet<u32>)>,
    /// Every session's outcome, in order.
    pub(crate) outcomes: Vec<SessionOutcome>,
    /// Why pushes were refused, in order.
    pub(crate) untrusted: Vec<mdp_proto::receiver::Untrusted>,
    /// The counters of each finished session's state machine.
    pub(crate) session_stats: Vec<ReceiverStats>,
    pub(crate) outcome: Option<SessionOutcome>,
    /// A [`ReceiverRequest::Settle`] being worked on, answered then.
    pub(crate) settle_at: Option<Instant>,
    pub(crate) settled: Option<Instant>,
    /// What the last `Settle` said of the push's symbolic links: place
    /// them (signed, every file in place) or not.
    pub(crate) settle_links: Option<bool>,
    /// What this receiver's push hook does: reported when a signed push
    /// in which no file failed settles (`None`: it has no hook).
    pub(crate) hook: Option<HookOutcome>,
    /// Its caller cannot make the tree final (a flush fails): every
    /// settle is answered with `handle_settle_failed`.
    pub(crate) settle_fails: bool,
}

/// How the store answers, the same for every receiver of a world.
pub(crate) struct Rules {
    /// Bytes of a full block (files are written at block offsets).
    pub(crate) block_bytes: u64,
    /// How long settling the tree takes.
    pub(crate) settle_delay: Duration,
    /// A finished session is followed by a fresh state machine.
    pub(crate) service: bool,
    /// Files are kept ([`crate::SimConfig::keep_files`]); else each block
    /// is checked and dropped.
    pub(crate) keep_files: bool,
}

impl Store {
    /// The hook outcome to report with the settle asked for last: a hook
    /// runs only for a signed push in which no file failed, as in
    /// mdp-recv.
    pub(crate) fn hook_for_settle(&self) -> Option<HookOutcome> {
        self.hook.filter(|_| self.settle_links == Some(true))
    }

    /// A store whose directory already holds `files` (path → bytes), whose
    /// push hook ends as `hook` (`None`: it has none).
    pub(crate) fn new(files: HashMap<String, Vec<u8>>, hook: Option<HookOutcome>) -> Store {
        Store {
            verified: files,
            hook,
            ..Store::default()
        }
    }

    /// Answers one request of `machine`, or takes one notice. In service mode a finished session
    /// replaces `machine` with a fresh one made from `config` (which then
    /// ignores the finished session).
    pub(crate) fn handle(
        &mut self,
        machine: &mut Receiver,
        now: Instant,
        out: Output<ReceiverRequest, ReceiverEvent>,
        rules: &Rules,
        codec: &mut Codec,
        config: &mut ReceiverConfig,
    ) {
        match out {
            Output::Request(ReceiverRequest::CheckPresent { manifest, .. }) => {
                // As the store does: files already in place, byte for byte,
                // are reported and not received again.
                let mut present = Vec::new();
                for (id, e) in manifest.files() {
                    if let EntryKind::File { size, hash, .. } = e.kind {
                        let held = self.verified.get(&e.path);
                        if held.is_some_and(|d| *blake3::hash(d).as_bytes() == hash) {
                            present.push(id);
                            continue;
                        }
                        self.objects.insert(id, e.clone());
                        if !rules.keep_files {
                            self.written.insert(id, BTreeSet::new());
                            continue;
                        }
                        // An earlier, interrupted push of the same file.
                        let (data, blocks) = match self.partials.remove(&hash) {
                            Some((data, blocks)) if data.len() == size as usize => (data, blocks),
                            // Else the blocks of an older version at its
                            // path that are blocks of the new one.
                            _ => self.start_from_old(e, rules.block_bytes),
                        };
                        if !blocks.is_empty() {
                            let ranges = ranges::from_ascending(blocks.iter().copied());
                            machine.handle_partial(now, id, &ranges);
                        }
                        self.buffers.insert(id, data);
                        self.written.insert(id, blocks);
                    }
                }
                machine.handle_present(now, &present);
            }
            Output::Request(ReceiverRequest::WriteBlock {
                object,
                offset,
                block,
            }) => {
                let data = block.into_bytes(codec).expect("k distinct symbols decode");
                let b = (offset / rules.block_bytes) as u32;
                let entry = &self.objects[&object];
                // Checked against the manifest before it is written.
                if entry.block_hash(b) != Some(*blake3::hash(&data).as_bytes()) {
                    machine.handle_block_rejected(now, object, b);
                    return;
                }
                if !rules.keep_files {
                    self.written.entry(object).or_default().insert(b);
                    return;
                }
                let f = self
                    .buffers
                    .get_mut(&object)
                    .expect("object of the manifest");
                f[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
                self.written.entry(object).or_default().insert(b);
            }
            Output::Request(ReceiverRequest::VerifyObject { object }) => {
                let entry = &self.objects[&object];
                let EntryKind::File { size, hash, .. } = entry.kind else {
                    unreachable!("objects are files")
                };
                let held = self.written.get(&object).map_or(0, BTreeSet::len) as u64;
                if held < size.div_ceil(rules.block_bytes) {
                    // A block was rejected and is being received again, as
                    // the real writer does: checked once it is written.
                    return;
                }
                if !rules.keep_files {
                    // Every block matched its hash, and the manifest's
                    // block hashes are its file's.
                    self.written.remove(&object);
                    machine.handle_object_verified(now, object, Ok(()));
                    return;
                }
                let path = entry.path.clone();
                let data = self.buffers.remove(&object).unwrap_or_default();
                self.written.remove(&object);
                let ok = *blake3::hash(&data).as_bytes() == hash;
                if ok {
                    self.verified.insert(path, data);
                }
                let result = if ok {
                    Ok(())
                } else {
                    Err(FailReason::HashMismatch)
                };
                machine.handle_object_verified(now, object, result);
            }
            Output::Request(ReceiverRequest::Settle { links, .. }) => {
                self.settle_links = Some(links);
                if self.settle_fails {
                    machine.handle_settle_failed(now, "a flush failed".into());
                } else if rules.settle_delay.is_zero() {
                    self.settled = Some(now);
                    machine.handle_settled(now, self.hook_for_settle());
                } else {
                    self.settle_at = Some(now + rules.settle_delay);
                }
            }
            Output::Event(ReceiverEvent::Finished(outcome)) => {
                self.settle_at = None;
                self.session_stats.push(machine.stats());
                self.outcomes.push(outcome.clone());
                self.outcome = Some(outcome);
                if rules.service {
                    *machine = self.next_session(config);
                }
            }
            Output::Event(ReceiverEvent::Untrusted { why, .. }) => self.untrusted.push(why),
            Output::Event(_) => {}
        }
    }

    /// A new buffer for the file `e`, holding the blocks of the older
    /// version at its path that match the manifest's hashes for them, and
    /// those blocks (the real store's delta.rs).
    fn start_from_old(&self, e: &Entry, block_bytes: u64) -> (Vec<u8>, BTreeSet<u32>) {
        let EntryKind::File { size, blocks, .. } = &e.kind else {
            unreachable!("objects are files")
        };
        let mut data = vec![0; *size as usize];
        let mut held = BTreeSet::new();
        let Some(old) = self.verified.get(&e.path).filter(|_| !blocks.is_empty()) else {
            return (data, held);
        };
        for (b, want) in blocks.iter().enumerate() {
            let start = b * block_bytes as usize;
            let end = (start + block_bytes as usize).min(data.len());
            match old.get(start..end) {
                Some(bytes) if *blake3::hash(bytes).as_bytes() == *want => {
                    data[start..end].copy_from_slice(bytes);
                    held.insert(b as u32);
                }
                _ => {}
            }
        }
        (data, held)
    }

    /// Service mode: keeps what the finished session left (placed files,
    /// written blocks of the others) and makes a fresh state machine.
    fn next_session(&mut self, config: &mut ReceiverConfig) -> Receiver {
        for (id, data) in std::mem::take(&mut self.buffers) {
            let blocks = self.written.remove(&id).unwrap_or_default();
            if let Some(EntryKind::File { hash, .. }) = self.objects.get(&id).map(|e| &e.kind) {
                if !blocks.is_empty() {
                    self.partials.insert(*hash, (data, blocks));
                }
            }
        }
        self.written.clear();
        self.objects.clear();
        if let Some(o) = &self.outcome {
            config.ignore_sessions.push(o.session);
        }
        Receiver::new(config.clone())
    }
}

//! A simulated receiver's caller: its files in memory, checked against the
//! manifest's BLAKE3 hashes like the real store does, the blocks kept for
//! resume, and the answers to the state machine's requests.
//!
//! **Invariant:** a file is in `verified` only when its bytes match the
//! manifest's hash, and a block is in `written` only once its bytes are in
//! the file's buffer, so resume never claims a block it does not hold.

use crate::drain::Output;
use mdp_proto::fec::Codec;
use mdp_proto::ranges;
use mdp_proto::wire::FailReason;
use mdp_proto::{
    EntryKind, ObjectId, Receiver, ReceiverConfig, ReceiverEvent, ReceiverRequest, ReceiverStats,
    SessionOutcome,
};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// What a receiver's caller keeps: files, partial files, outcomes.
#[derive(Debug, Default)]
pub(crate) struct Store {
    /// Path and hash of each file object, by object id.
    objects: HashMap<ObjectId, (String, [u8; 32])>,
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
}

/// How the store answers, the same for every receiver of a world.
pub(crate) struct Rules {
    /// Bytes of a full block (files are written at block offsets).
    pub(crate) block_bytes: u64,
    /// How long settling the tree takes.
    pub(crate) settle_delay: Duration,
    /// A finished session is followed by a fresh state machine.
    pub(crate) service: bool,
}

impl Store {
    /// A store whose directory already holds `files` (path → bytes).
    pub(crate) fn new(files: HashMap<String, Vec<u8>>) -> Store {
        Store {
            verified: files,
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
                    if let EntryKind::File { size, hash } = e.kind {
                        let held = self.verified.get(&e.path);
                        if held.is_some_and(|d| *blake3::hash(d).as_bytes() == hash) {
                            present.push(id);
                            continue;
                        }
                        self.objects.insert(id, (e.path.clone(), hash));
                        // An earlier, interrupted push of the same file.
                        match self.partials.remove(&hash) {
                            Some((data, blocks)) if data.len() == size as usize => {
                                let ranges = ranges::from_ascending(blocks.iter().copied());
                                self.buffers.insert(id, data);
                                self.written.insert(id, blocks);
                                machine.handle_partial(now, id, &ranges);
                            }
                            _ => {
                                self.buffers.insert(id, vec![0; size as usize]);
                            }
                        }
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
                let f = self
                    .buffers
                    .get_mut(&object)
                    .expect("object of the manifest");
                f[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
                self.written
                    .entry(object)
                    .or_default()
                    .insert((offset / rules.block_bytes) as u32);
            }
            Output::Request(ReceiverRequest::VerifyObject { object }) => {
                let (path, hash) = self.objects[&object].clone();
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
            Output::Request(ReceiverRequest::Settle { .. }) => {
                if rules.settle_delay.is_zero() {
                    self.settled = Some(now);
                    machine.handle_settled(now);
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

    /// Service mode: keeps what the finished session left (placed files,
    /// written blocks of the others) and makes a fresh state machine.
    fn next_session(&mut self, config: &mut ReceiverConfig) -> Receiver {
        for (id, data) in std::mem::take(&mut self.buffers) {
            let blocks = self.written.remove(&id).unwrap_or_default();
            if let Some((_, hash)) = self.objects.get(&id) {
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

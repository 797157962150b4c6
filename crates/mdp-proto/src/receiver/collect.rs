//! Collection: DATA symbols into blocks under the memory budget, complete
//! blocks handed to the caller, the manifest (object 0) rebuilt, checked
//! and accepted, and the caller's files already here (present, or held in
//! part from an interrupted push).
//!
//! **Invariant:** `Session::buffered` is the sum of [`Partial::bytes`] over
//! the incomplete blocks held, and a block is admitted only while that plus
//! the blocks handed out and not yet dropped stays within
//! `ReceiverConfig::buffer_bytes`; a block is handed out once, and a file's
//! [`ReceiverRequest::VerifyObject`] follows its last block.

use super::state::End;
use super::state::{Flow, Phase, Session};
use super::{Ctx, ReceiverConfig, ReceiverRequest, Refusal, SessionError};
use crate::fec::{BlockBytes, CompleteBlock, ReceivedParity};
use crate::ids::{BlockKey, BlockNumber, ObjectId};
use crate::layout::Coding;
use crate::limits::{DATA_HEADER_LEN, MAX_SESSION_BLOCKS};
use crate::manifest::{EntryKind, Manifest};
use crate::ranges;
use crate::wire::{DataHeader, FailReason, FLAG_REPAIR};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Where an object (the manifest or a file) stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum ObjState {
    Receiving,
    /// All blocks handed over; waiting for the caller's verification.
    Delivered,
    Verified,
    Failed(FailReason),
}

/// An object's blocks: which are done (handed over, or already held).
#[derive(Debug)]
pub(super) struct Obj {
    pub(super) size: u64,
    pub(super) blocks: u32,
    done: Vec<u64>,
    pub(super) done_count: u32,
    /// Every block below this one is done.
    pub(super) first_missing: u32,
    pub(super) state: ObjState,
}

impl Obj {
    pub(super) fn new(size: u64, coding: &Coding) -> Obj {
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

    pub(super) fn is_done(&self, b: u32) -> bool {
        self.done[(b / 64) as usize] & (1 << (b % 64)) != 0
    }

    fn set_done(&mut self, b: u32) {
        self.done[(b / 64) as usize] |= 1 << (b % 64);
        self.done_count += 1;
        while self.first_missing < self.blocks && self.is_done(self.first_missing) {
            self.first_missing += 1;
        }
    }

    /// Block `b` is to be received again (its rebuilt bytes were rejected).
    fn unset_done(&mut self, b: u32) {
        self.done[(b / 64) as usize] &= !(1 << (b % 64));
        self.done_count -= 1;
        self.first_missing = self.first_missing.min(b);
    }

    /// Not final yet: still receiving, or waiting for its verification.
    pub(super) fn is_pending(&self) -> bool {
        matches!(self.state, ObjState::Receiving | ObjState::Delivered)
    }
}

/// An incomplete block's symbols.
#[derive(Debug)]
pub(super) struct Partial {
    pub(super) k: u16,
    /// `k * T` bytes; source symbol `i` at `i * T`.
    data: Vec<u8>,
    have: Vec<bool>,
    have_count: u16,
    /// Parity symbols, `T` bytes each.
    recovery: ReceivedParity,
}

impl Partial {
    pub(super) fn count(&self) -> usize {
        self.have_count as usize + self.recovery.len()
    }

    /// Symbols still needed to rebuild the block.
    pub(super) fn need(&self) -> u16 {
        (self.k as usize - self.count()) as u16
    }

    /// The source symbols still missing, when naming them in a NACK lets
    /// the sender complete the block without a decode: no parity symbol
    /// is held (else a decode follows anyway) and at most
    /// [`crate::limits::MAX_NACK_MISSING`] are missing.
    pub(super) fn missing_sources(&self) -> Option<Vec<u16>> {
        let lacking = self.k as usize - self.have_count as usize;
        if !self.recovery.is_empty() || lacking == 0 || lacking > crate::limits::MAX_NACK_MISSING {
            return None;
        }
        Some((0..self.k).filter(|&i| !self.have[i as usize]).collect())
    }

    pub(super) fn bytes(&self) -> usize {
        self.data.len() + self.recovery.held_bytes()
    }
}

/// The manifest's blocks, rebuilt as they complete, while joining.
#[derive(Debug, Default)]
pub(super) struct ManifestParts {
    parts: BTreeMap<u32, Vec<u8>>,
    /// Times the whole manifest was rebuilt and did not match its hash.
    attempts: u32,
}

impl Session {
    /// Moves `first_receiving` past objects that no longer receive
    /// (amortised O(1) per object over a session).
    pub(super) fn skip_finished_objects(&mut self) {
        while let Some(o) = self.objects.get(self.first_receiving as usize) {
            if o.state == ObjState::Receiving {
                break;
            }
            self.first_receiving += 1;
        }
    }

    /// A DATA packet of our session.
    pub(super) fn handle_data(
        &mut self,
        now: Instant,
        cx: &mut Ctx,
        h: &DataHeader,
        payload: &[u8],
    ) -> Flow {
        let hold_after_repair = self.backoff_max(cx) + self.grtt() * 2;
        let (o, b) = (h.object.0, h.block.0);
        if o > self.object_count {
            cx.stats.malformed += 1;
            return Ok(());
        }
        self.meter_data(now, cx, h.seq, DATA_HEADER_LEN + payload.len());
        if h.flags & FLAG_REPAIR == 0 {
            self.advance_sender_pos(now, cx, (o, b));
        }
        let Some(obj) = self.objects.get(o as usize) else {
            // A file object before the manifest is known.
            cx.stats.ignored += 1;
            return Ok(());
        };
        if b >= obj.blocks {
            cx.stats.malformed += 1;
            return Ok(());
        }
        if obj.is_done(b) || obj.state != ObjState::Receiving {
            cx.stats.symbols_redundant += 1;
            return Ok(());
        }
        let coding = self.coding;
        let block = BlockNumber(b);
        let k = coding.block_k(obj.size, block);
        let block_len = coding.block_len(obj.size, block);
        let t = coding.symbol_size as usize;
        let esi = h.esi.0;
        if esi as u32 >= k as u32 + coding.block_parity(k) as u32 {
            cx.stats.malformed += 1;
            return Ok(());
        }
        let expected_len = if esi < k {
            coding.source_symbol_len(block_len, esi)
        } else {
            t
        };
        if payload.len() != expected_len {
            cx.stats.malformed += 1;
            return Ok(());
        }
        let key = BlockKey::new(o, b);
        let outside = cx.config.buffer_gauge.bytes();
        let p = match self.partial.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let bytes = k as usize * t;
                if self.buffered + outside + bytes > cx.config.buffer_bytes {
                    cx.stats.dropped_no_buffer += 1;
                    return Ok(());
                }
                self.buffered += bytes;
                e.insert(Partial {
                    k,
                    // Perhaps an earlier block's buffer, not zeroed: every
                    // byte of it is written before it is read (symbols as
                    // they come, the short last one padded here, the
                    // missing ones by the decoder).
                    data: cx.config.buffer_gauge.buffer(bytes),
                    have: vec![false; k as usize],
                    have_count: 0,
                    recovery: ReceivedParity::default(),
                })
            }
        };
        cx.stats.symbols_received += 1;
        if esi < k {
            if p.have[esi as usize] {
                cx.stats.symbols_redundant += 1;
                return Ok(());
            }
            let at = esi as usize * t;
            p.data[at..at + payload.len()].copy_from_slice(payload);
            p.data[at + payload.len()..at + t].fill(0);
            p.have[esi as usize] = true;
            p.have_count += 1;
        } else {
            let idx = esi - k;
            if p.recovery.contains(idx) {
                cx.stats.symbols_redundant += 1;
                return Ok(());
            }
            self.buffered += p.recovery.push(idx, payload, t);
        }
        let held = (self.buffered + outside) as u64;
        cx.stats.buffer_peak = cx.stats.buffer_peak.max(held);
        if p.count() >= p.k as usize {
            if let Some(p) = self.partial.remove(&key) {
                self.buffered -= p.bytes();
                self.holdoff.remove(&key);
                self.others_holds.remove(&key);
                return self.complete_block(now, cx, key, p, block_len);
            }
        } else if h.flags & FLAG_REPAIR != 0 {
            let until = now + hold_after_repair;
            let e = self.holdoff.entry(key).or_insert(until);
            *e = (*e).max(until);
        }
        Ok(())
    }

    /// A block has `k` symbols: the manifest's is rebuilt here, a file's
    /// handed to the caller.
    fn complete_block(
        &mut self,
        now: Instant,
        cx: &mut Ctx,
        key: BlockKey,
        p: Partial,
        block_len: usize,
    ) -> Flow {
        let t = self.coding.symbol_size as usize;
        let r = self.coding.block_parity(p.k) as usize;
        let block = CompleteBlock::new(p.k as usize, r, t, block_len, p.data, p.have, p.recovery);
        if block.needs_decoding() {
            cx.stats.blocks_decoded += 1;
        }
        let BlockKey {
            object: o,
            block: b,
        } = key;
        if o == 0 {
            // The manifest is small: rebuild it here.
            let Ok(data) = block.into_bytes(&mut cx.codec).map(BlockBytes::into_vec) else {
                // Cannot happen with k distinct in-range symbols; treat as
                // loss so that the block is asked for again.
                cx.stats.malformed += 1;
                return Ok(());
            };
            cx.stats.blocks_completed += 1;
            let obj = &mut self.objects[0];
            obj.set_done(b);
            let all_done = obj.done_count == obj.blocks;
            if let Phase::Joining(m) = &mut self.phase {
                m.parts.insert(b, data);
            }
            if all_done {
                return self.manifest_complete(now, cx);
            }
            return Ok(());
        }
        cx.stats.blocks_completed += 1;
        let obj = &mut self.objects[o as usize];
        obj.set_done(b);
        let all_done = obj.done_count == obj.blocks;
        cx.stats.bytes_delivered += block.len() as u64;
        let offset = self.coding.block_offset(BlockNumber(b));
        cx.requests.push_back(ReceiverRequest::WriteBlock {
            object: ObjectId(o),
            offset,
            block: block.counted_in(&cx.config.buffer_gauge),
        });
        if all_done {
            self.objects[o as usize].state = ObjState::Delivered;
            self.skip_finished_objects();
            cx.requests.push_back(ReceiverRequest::VerifyObject {
                object: ObjectId(o),
            });
        }
        Ok(())
    }

    /// Every block of the manifest arrived: check it and, if it is
    /// accepted, move from joining to receiving.
    fn manifest_complete(&mut self, now: Instant, cx: &mut Ctx) -> Flow {
        let Phase::Joining(m) = &mut self.phase else {
            return Ok(());
        };
        let mut bytes = Vec::with_capacity(self.manifest_len as usize);
        for part in std::mem::take(&mut m.parts).into_values() {
            bytes.extend_from_slice(&part);
        }
        if *blake3::hash(&bytes).as_bytes() != self.manifest_hash {
            // Corrupted or forged symbols: start over a few times.
            m.attempts += 1;
            if m.attempts >= 3 {
                return Err(End(Some(SessionError::ManifestHash)));
            }
            self.objects[0] = Obj::new(self.manifest_len, &self.coding);
            self.first_receiving = 0;
            return Ok(());
        }
        // Decoding takes about ten times the encoded size in memory for
        // small entries: the entry count is checked against this
        // receiver's limits first.
        let limit = u64::from(cx.config.max_files).saturating_mul(2).max(16);
        match Manifest::encoded_entry_count(&bytes) {
            Some(entries) if entries > limit => {
                return Err(End(Some(SessionError::ManifestTooLarge { entries, limit })));
            }
            _ => {}
        }
        let manifest = match Manifest::decode(&bytes) {
            Ok(m) if m.file_count() == self.object_count => m,
            Ok(_) => return Err(End(Some(SessionError::ManifestFileCount))),
            Err(e) => return Err(End(Some(e.into()))),
        };
        let blocks: u64 = manifest
            .files()
            .map(|(_, e)| match e.kind {
                EntryKind::File { size, .. } => self.coding.block_count_wide(size),
                EntryKind::Dir | EntryKind::Symlink { .. } | EntryKind::HardLink { .. } => 0,
            })
            .sum();
        if blocks > MAX_SESSION_BLOCKS {
            return Err(End(Some(Refusal::TooManyBlocks { blocks }.into())));
        }
        // Every block is checked against these before it is written.
        if let Err(e) = manifest.check_block_hashes(&self.coding) {
            return Err(End(Some(e.into())));
        }
        let refusal = check_limits(&cx.config, &manifest);
        let manifest = Arc::new(manifest);
        self.manifest = Some(manifest.clone());
        let coding = self.coding;
        for (_, e) in manifest.files() {
            if let EntryKind::File { size, .. } = e.kind {
                self.objects.push(Obj::new(size, &coding));
            }
        }
        self.objects[0].state = ObjState::Verified;
        self.phase = Phase::Receiving;
        if let Some(why) = refusal {
            // Registered, and every file failed as refused: the sender
            // learns why at once instead of waiting for a silent receiver.
            self.refuse(now, cx, why);
            return Ok(());
        }
        cx.requests.push_back(ReceiverRequest::CheckPresent {
            session: self.id,
            manifest,
            // Nothing unauthenticated deletes.
            delete: self.delete && self.signer.is_some(),
            signer: self.signer,
            block_bytes: self.coding.block_k as u64 * self.coding.symbol_size as u64,
            dry_run: self.dry_run,
        });
        // Registration and empty files wait for handle_present.
        self.maybe_register(now, cx);
        Ok(())
    }

    /// See [`super::Receiver::handle_block_rejected`]. True when the block
    /// is to be received again (a NACK may be due then).
    pub(super) fn block_rejected(&mut self, cx: &mut Ctx, object: ObjectId, block: u32) -> bool {
        let Some(obj) = self.objects.get_mut(object.0 as usize) else {
            return false;
        };
        if object.0 == 0 || !obj.is_pending() || block >= obj.blocks || !obj.is_done(block) {
            return false;
        }
        obj.unset_done(block);
        // A verification asked for meanwhile is called off: its answer is
        // ignored (`object_verified` takes only delivered objects), and
        // the file is asked for again once the block is written.
        obj.state = ObjState::Receiving;
        let len = self.coding.block_len(obj.size, BlockNumber(block)) as u64;
        cx.stats.bytes_delivered = cx.stats.bytes_delivered.saturating_sub(len);
        cx.stats.blocks_rejected += 1;
        self.first_receiving = self.first_receiving.min(object.0);
        true
    }

    /// See [`super::Receiver::handle_partial`]. True when the blocks were
    /// taken (a NACK may be due then).
    pub(super) fn handle_partial(
        &mut self,
        cx: &mut Ctx,
        object: ObjectId,
        blocks: &[(u32, u32)],
    ) -> bool {
        if !self.manifest_known() || self.registration.present_known() || object.0 == 0 {
            return false;
        }
        let Some(obj) = self.objects.get_mut(object.0 as usize) else {
            return false;
        };
        if obj.state != ObjState::Receiving {
            return false;
        }
        let held = ranges::normalize(blocks, obj.blocks);
        for &(first, count) in &held {
            for b in first..first + count {
                if !obj.is_done(b) {
                    obj.set_done(b);
                }
            }
        }
        let have_blocks = &mut self.registration.have_blocks;
        if have_blocks.last().is_some_and(|&(o, _, _)| o >= object.0) {
            // Out of order: not reported (the blocks still count here).
        } else {
            have_blocks.extend(held.iter().map(|&(f, c)| (object.0, f, c)));
        }
        if obj.done_count == obj.blocks {
            obj.state = ObjState::Delivered;
            self.skip_finished_objects();
            cx.requests
                .push_back(ReceiverRequest::VerifyObject { object });
        }
        true
    }

    /// See [`super::Receiver::handle_present`]. True when the list was
    /// taken (the first one after the manifest).
    pub(super) fn handle_present(
        &mut self,
        now: Instant,
        cx: &mut Ctx,
        present: &[ObjectId],
    ) -> bool {
        if !self.manifest_known() || self.registration.present_known() {
            return false;
        }
        let mut ids: Vec<u32> = present.iter().map(|o| o.0).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut placed = Vec::new();
        for o in ids {
            let Some(obj) = self.objects.get_mut(o as usize) else {
                continue;
            };
            if o == 0 || obj.state != ObjState::Receiving {
                continue;
            }
            obj.state = ObjState::Verified;
            self.verified += 1;
            placed.push(o);
        }
        self.registration.have = Some(ranges::from_ascending(placed));
        // Empty files not already there have no block to wait for: they
        // are complete now.
        for (o, obj) in self.objects.iter_mut().enumerate().skip(1) {
            if obj.blocks == 0 && obj.state == ObjState::Receiving {
                obj.state = ObjState::Delivered;
                cx.requests.push_back(ReceiverRequest::VerifyObject {
                    object: ObjectId(o as u32),
                });
            }
        }
        // Symbols of those files that arrived meanwhile are not needed.
        let partial = std::mem::take(&mut self.partial);
        for (key, p) in partial {
            if self.objects[key.object as usize].state == ObjState::Receiving {
                self.partial.insert(key, p);
            } else {
                self.buffered -= p.bytes();
                self.holdoff.remove(&key);
                self.others_holds.remove(&key);
            }
        }
        self.skip_finished_objects();
        self.check_complete(cx);
        self.maybe_register(now, cx);
        true
    }
}

/// Why this receiver's limits refuse `manifest`, if they do.
fn check_limits(c: &ReceiverConfig, manifest: &Manifest) -> Option<Refusal> {
    let total = manifest.total_bytes();
    if total > c.max_push_bytes {
        return Some(Refusal::PushTooLarge {
            total,
            max: c.max_push_bytes,
        });
    }
    // Directories count too: each is created, and costs an inode, like a file.
    let entries = u32::try_from(manifest.entries.len()).unwrap_or(u32::MAX);
    if entries > c.max_files {
        return Some(Refusal::TooManyFiles {
            files: entries,
            max: c.max_files,
        });
    }
    for e in &manifest.entries {
        if let EntryKind::File { size, .. } = e.kind {
            if size > c.max_file_bytes {
                return Some(Refusal::FileTooLarge {
                    path: e.path.clone(),
                    size,
                    max: c.max_file_bytes,
                });
            }
        }
        let depth = e.path.split('/').count();
        if depth > c.max_path_depth {
            return Some(Refusal::PathTooDeep {
                path: e.path.clone(),
                depth,
                max: c.max_path_depth,
            });
        }
        if e.path.len() > c.max_path_len {
            return Some(Refusal::PathTooLong {
                len: e.path.len(),
                max: c.max_path_len,
            });
        }
    }
    None
}

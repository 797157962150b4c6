//! Repairs: NACK entries become repair rounds per block, parity in a
//! group and the named source symbols for a lone receiver.
//!
//! **Invariant:** a block is in the repair queue exactly while its
//! `RepairState::queued > 0`; a NACK for a block not yet sent, or beyond its
//! object, is ignored.

use super::*;

#[derive(Debug)]
pub(super) struct RepairState {
    /// Symbols to send in the current round (`sources` first).
    pub(super) queued: u32,
    /// Source symbols to resend, while one receiver alone asked for the
    /// block in this round and named what it lacks: resending exactly
    /// those spares it a decode. Emptied when another receiver asks.
    pub(super) sources: VecDeque<u16>,
    /// The receiver `sources` are for.
    pub(super) lone: Option<NodeId>,
    /// Symbols sent in the current round.
    pub(super) round_sent: u32,
    /// NACKs until this instant belong to the current round.
    pub(super) round_end: Instant,
    /// Next encoding symbol id to send (cycles through parity, then source).
    pub(super) next_esi: u32,
}

impl Sender {
    pub(super) fn handle_nack_entry(
        &mut self,
        now: Instant,
        node: NodeId,
        e: NackEntry,
        loss: f64,
    ) {
        let Some(&size) = self.sizes.get(e.object.0 as usize) else {
            return;
        };
        if e.block.0 >= self.coding.block_count(size) || e.need == 0 {
            return;
        }
        // A block the sender has not sent yet cannot be missing.
        let key = BlockKey::new(e.object.0, e.block.0);
        if key >= self.cursor.key() {
            return;
        }
        let k = self.coding.block_k(size, e.block) as u32;
        let need = self.scaled_need(e.need, loss).min(k);
        // Repairs continue after the proactive parity; when that used up
        // every parity symbol, they start over with the source symbols.
        let r = self.coding.block_parity(k as u16) as u32;
        let start_esi = (k + self.proactive_of(&key).min(r)) % (k + r);
        // Only for a lone receiver: in a group, a second NACK for the block
        // usually follows within the round, and sources resent for the
        // first would have served it alone, and parity serves both.
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
        if !in_round && self.group_size() > 1 {
            // A round starts: the block's proactive parity was not enough
            // for some receiver (autoparity.rs). A lone receiver's rounds
            // do not count: it gets no proactive parity.
            self.auto_parity.block_repaired(self.coding.parity);
        }
    }

    /// The source symbols a NACK entry names (`missing`), when they are
    /// usable: all below `k`, distinct, and exactly `need` of them.
    pub(super) fn named_sources(need: u16, mut missing: Vec<u16>, k: u32) -> Option<VecDeque<u16>> {
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
    pub(super) fn scaled_need(&self, need: u16, p: f64) -> u32 {
        let need = need as f64;
        let n = self.peers.len().max(1) as f64;
        let z = 1.0 + (2.0 * n.ln()).sqrt();
        ((need + z * (need * p).sqrt()) / (1.0 - p)).ceil() as u32
    }

    /// The next symbol a queued repair of `key` sends, and whether it can
    /// go now (its parity is computed); `None` while the block is not
    /// cached.
    pub(super) fn repair_next(&self, key: &BlockKey) -> Option<(u32, bool)> {
        let cached = self.cache.get(key)?;
        let st = self.repairs.get(key)?;
        let k = self
            .coding
            .block_k(self.sizes[key.object as usize], BlockNumber(key.block))
            as u32;
        let esi = st.sources.front().map_or(st.next_esi, |&i| i as u32);
        let t = self.coding.symbol_size as usize;
        Some((
            esi,
            esi < k || cached.parity.symbol((esi - k) as usize, t).is_some(),
        ))
    }
}

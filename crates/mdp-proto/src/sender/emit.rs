//! What goes out: the choice of the next symbol (repairs before new
//! data), the DATA datagram built from the block cache, control messages
//! (ANNOUNCE, FLUSH), sealing, and the pacing burst.

use super::*;

pub(super) const PACING_BURST: Duration = Duration::from_millis(2);

/// The pacer's bucket: what the rate allows in [`PACING_BURST`], so that a
/// caller whose timer fires about once a millisecond still reaches the
/// rate; at least a few batches.
pub(super) fn pacing_burst(rate_bps: u64, max_batch: usize, datagram: usize) -> usize {
    ((rate_bps as f64 / 8.0 * PACING_BURST.as_secs_f64()) as usize).max(max_batch.max(4) * datagram)
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Pick {
    Repair(BlockKey, u32),
    New(BlockKey, u32),
}

impl Sender {
    pub(super) fn single(&mut self, out: &Gather) -> Transmit {
        self.stats.packets_sent += 1;
        self.stats.control_sent += 1;
        self.stats.bytes_sent += out.size() as u64;
        Transmit {
            destination: Destination::Group,
            size: out.size(),
            segment_size: out.size(),
        }
    }

    pub(super) fn write_control(&mut self, out: &mut Gather, msg: &Control) {
        let buf = out.bytes_mut();
        let start = buf.len();
        wire::write_control(buf, self.config.session, msg);
        self.seal(buf, start);
        self.pacer.force_take(buf.len() - start);
        out.end_datagram(start, None);
    }

    /// With a key: seals the datagram that starts at `buf[start]`.
    pub(super) fn seal(&mut self, buf: &mut Vec<u8>, start: usize) {
        if let Some(keys) = &mut self.keys {
            keys.seal(buf, start);
        } else if let (Some(sealer), Some(auth)) = (&mut self.sealer, &self.config.auth) {
            sealer.seal(buf, start, auth.unix_us(self.now_hint));
        }
    }

    /// Bytes a seal adds to each datagram.
    pub(super) fn trailer_len(&self) -> usize {
        if self.config.auth.is_some() || self.keys.is_some() {
            TRAILER_LEN
        } else {
            0
        }
    }

    pub(super) fn announce(&mut self, now: Instant) -> Control {
        Control::Announce(Announce {
            timing: self.timing(now),
            symbol_size: self.coding.symbol_size,
            block_k: self.coding.block_k,
            parity: self.coding.parity,
            manifest_len: self.sizes[0],
            manifest_hash: self.manifest_hash,
            object_count: (self.sizes.len() - 1) as u32,
            data_pos: (self.cursor.object, self.cursor.block),
            acked: self.acks.take(),
            poll: self.polls(now),
            delete: self.config.delete,
            dry_run: self.config.dry_run,
            enc: self.keys.as_ref().map(|k| k.announced()),
            signed: self.signed,
        })
    }

    /// The receivers an ANNOUNCE during the data polls: active ones not
    /// heard from, nor polled, for the poll interval (`drop_after /`
    /// [`POLL_AFTER`], at least four round-trip times), the longest silent
    /// first, at most [`POLLS_PER_ANNOUNCE`] (so that a group of any size
    /// is polled at a bounded rate, and each answer has time to arrive
    /// before the next poll).
    fn polls(&mut self, now: Instant) -> Vec<NodeId> {
        if self.phase != Phase::Sending {
            return Vec::new();
        }
        let every = self.poll_interval();
        let mut quiet: Vec<(Instant, NodeId)> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.state == PeerState::Active
                    && p.registered
                    && p.via.is_none()
                    && now.saturating_duration_since(p.last_heard) >= every
                    && p.last_polled
                        .is_none_or(|t| now.saturating_duration_since(t) >= every)
            })
            .map(|(n, p)| (p.last_heard, *n))
            .collect();
        if quiet.len() > POLLS_PER_ANNOUNCE {
            quiet.select_nth_unstable(POLLS_PER_ANNOUNCE);
            quiet.truncate(POLLS_PER_ANNOUNCE);
        }
        for (_, n) in &quiet {
            if let Some(p) = self.peers.get_mut(n) {
                p.unanswered_polls = p.unanswered_polls.saturating_add(1);
                p.last_polled = Some(now);
            }
        }
        quiet.into_iter().map(|(_, n)| n).collect()
    }

    pub(super) fn flush(&mut self, now: Instant) -> Control {
        let active: Vec<NodeId> = self
            .peers
            .iter()
            // Receivers behind a relay do not hear this FLUSH: their relay
            // answers for them.
            .filter(|(_, p)| p.state == PeerState::Active && p.via.is_none())
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
            acked: self.acks.take(),
        })
    }

    /// Chooses the next symbol to send and its payload length, without
    /// committing to it.
    pub(super) fn pick(&mut self) -> Option<(Pick, usize)> {
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
                .block_k(self.sizes[key.object as usize], BlockNumber(key.block))
                as u32;
            self.request_parity(key, (esi - k) as usize, queued as usize);
        }
        if let Some(key) = found {
            let size = self.sizes[key.object as usize];
            let block_len = self.coding.block_len(size, BlockNumber(key.block));
            let k = self.coding.block_k(size, BlockNumber(key.block)) as u32;
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
        let key = self.cursor.key();
        if !self.new_symbol_ready() {
            if self.cache.contains(&key) {
                // Proactive parity not computed yet: asked for when the
                // block came in (no second job while that one is out).
                let k = self
                    .coding
                    .block_k(self.sizes[key.object as usize], BlockNumber(key.block));
                let first = (self.cursor.esi - k as u32) as usize;
                let count = (self.proactive_of(&key) as usize).saturating_sub(first);
                self.request_parity(key, first, count);
            }
            return None;
        }
        let size = self.sizes[key.object as usize];
        let block_len = self.coding.block_len(size, BlockNumber(key.block));
        let k = self.coding.block_k(size, BlockNumber(key.block)) as u32;
        let esi = self.cursor.esi;
        let len = if esi < k {
            self.coding.source_symbol_len(block_len, esi as u16)
        } else {
            t
        };
        Some((Pick::New(key, esi), len))
    }

    /// Sends what [`Sender::pick`] chose: appends it to `buf` and advances.
    pub(super) fn emit(&mut self, now: Instant, pick: Pick, out: &mut Gather) {
        let (key, esi, flags) = match pick {
            Pick::Repair(key, esi) => (key, esi, FLAG_REPAIR),
            Pick::New(key, esi) => (key, esi, 0),
        };
        let size = self.sizes[key.object as usize];
        let block = BlockNumber(key.block);
        let k = self.coding.block_k(size, block) as u32;
        let r = self.coding.block_parity(k as u16) as u32;
        let t = self.coding.symbol_size as usize;
        let block_len = self.coding.block_len(size, block);
        self.cache.touch(key);
        let cached = self.cache.get(&key).expect("pick() checked the cache");
        let header = DataHeader {
            session: self.config.session,
            object: ObjectId(key.object),
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
            if self.sealer.is_none() && self.keys.is_none() {
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
                if self.cursor.esi >= k + self.proactive_of(&self.cursor.key()).min(r) {
                    self.auto_parity.block_sent();
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

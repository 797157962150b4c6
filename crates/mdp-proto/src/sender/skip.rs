//! Skip planning: files and blocks every registered receiver already
//! holds are not sent.
//!
//! **Invariant:** the sender skips a file or block only when every
//! registered receiver claimed to hold it, so a forged or stale REGISTER can
//! make it send more, never less.

use super::*;

/// Most receivers for which blocks held from an interrupted push are
/// matched up (the work grows with receivers × ranges).
pub(super) const MAX_BLOCK_SKIP_PEERS: usize = 1024;

impl Sender {
    /// Blocks of object `o` to send in the first pass: none for a file
    /// every receiver already has.
    pub(super) fn blocks_to_send(&self, o: u32) -> u32 {
        if self.skip.get(o as usize).copied().unwrap_or(false) {
            return 0;
        }
        self.coding.block_count(self.sizes[o as usize])
    }

    /// At the start of sending: the files every registered receiver already
    /// holds are not sent (a receiver that joins later NACKs them).
    pub(super) fn plan_skips(&mut self) {
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
                Some(c) => ranges::intersect(&c, &have),
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
    pub(super) fn unskipped_from(&self, o: u32, b: u32) -> u32 {
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
    pub(super) fn plan_block_skips(&mut self) {
        let held = |p: &Peer, o: u32, blocks: u32| -> Vec<(u32, u32)> {
            if p.state == PeerState::Confirmed || ranges::contains(&p.have, o) {
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
            let mut common = ranges::union(&held(peers[0], o, blocks), &[]);
            for p in &peers[1..] {
                common = ranges::intersect(&common, &ranges::union(&held(p, o, blocks), &[]));
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

    pub(super) fn skip_empty_objects(&mut self) {
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
}

//! The block cache: file blocks read ahead of the send position and kept
//! for repairs, their parity, and the requests to read and encode them.
//!
//! **Invariant:** the cache holds at most `SenderConfig::cache_bytes`
//! (each block counted with its overhead) beyond the read-ahead window and
//! the blocks queued for repair, which are never evicted.

use super::*;

#[derive(Debug)]
pub(super) struct CachedBlock {
    /// `k * T` bytes, zero-padded (shared with parity jobs).
    pub(super) source: Arc<Vec<u8>>,
    /// The parity symbols computed so far.
    pub(super) parity: BlockParity,
    /// A [`SenderRequest::EncodeParity`] for it is out.
    pub(super) encoding: bool,
    pub(super) last_use: u64,
    /// Parity symbols it goes out with before any NACK (autoparity.rs),
    /// decided when it was read.
    pub(super) proactive: u32,
}

/// Memory a cached block costs beyond its buffer: its map and LRU
/// entries, the shared buffer's header, the allocator's. Counted, so that
/// [`SenderConfig::cache_bytes`] bounds what the cache really holds when
/// blocks are small (a push of many tiny files is one-symbol blocks, whose
/// bookkeeping outweighs their bytes).
pub(super) const CACHED_BLOCK_OVERHEAD: usize = 192;

/// Pads `data` with zeros to `len` bytes, growing it to exactly that:
/// `resize` alone may double the buffer of a short last block, and cached
/// blocks are most of the sender's memory.
pub(super) fn pad_exactly(data: &mut Vec<u8>, len: usize) {
    data.reserve_exact(len.saturating_sub(data.len()));
    data.resize(len, 0);
}

impl CachedBlock {
    pub(super) fn bytes(&self) -> usize {
        self.source.capacity() + self.parity.held_bytes() + CACHED_BLOCK_OVERHEAD
    }
}

/// The cached blocks, their memory and their order of use, and the reads
/// asked for and not answered yet.
#[derive(Debug, Default)]
pub(super) struct BlockCache {
    blocks: HashMap<BlockKey, CachedBlock>,
    /// Memory of all cached blocks, each with its overhead.
    bytes: usize,
    use_counter: u64,
    /// The cached blocks by last use (`CachedBlock::last_use` → key), oldest
    /// first: eviction takes from the front.
    lru: BTreeMap<u64, BlockKey>,
    /// Blocks asked for with [`SenderRequest::ReadBlock`] and not read yet.
    reads_pending: HashSet<BlockKey>,
}

impl BlockCache {
    pub(super) fn get(&self, key: &BlockKey) -> Option<&CachedBlock> {
        self.blocks.get(key)
    }

    pub(super) fn get_mut(&mut self, key: &BlockKey) -> Option<&mut CachedBlock> {
        self.blocks.get_mut(key)
    }

    /// Cached, or asked for and on its way.
    pub(super) fn has_or_awaits(&self, key: &BlockKey) -> bool {
        self.blocks.contains_key(key) || self.reads_pending.contains(key)
    }

    pub(super) fn contains(&self, key: &BlockKey) -> bool {
        self.blocks.contains_key(key)
    }

    /// Records that a read of `key` was asked for.
    pub(super) fn read_asked(&mut self, key: BlockKey) {
        self.reads_pending.insert(key);
    }

    /// True (once) when a read of `key` was asked for: a block nobody
    /// asked for, or asked for twice, is not taken.
    pub(super) fn read_arrived(&mut self, key: &BlockKey) -> bool {
        self.reads_pending.remove(key)
    }

    /// Caches `source` (padded to whole symbols) as `key`, replacing an
    /// older copy; the caller evicts afterwards.
    pub(super) fn insert(&mut self, key: BlockKey, source: Vec<u8>) {
        self.use_counter += 1;
        let block = CachedBlock {
            source: Arc::new(source),
            parity: BlockParity::default(),
            encoding: false,
            last_use: self.use_counter,
            proactive: 0,
        };
        self.bytes += block.bytes();
        if let Some(old) = self.blocks.insert(key, block) {
            self.lru.remove(&old.last_use);
            self.bytes -= old.bytes();
        }
        self.lru.insert(self.use_counter, key);
    }

    /// Counts parity bytes a cached block took on.
    pub(super) fn grew(&mut self, bytes: usize) {
        self.bytes += bytes;
    }

    /// Marks a cached block as just used.
    pub(super) fn touch(&mut self, key: BlockKey) {
        self.use_counter += 1;
        if let Some(b) = self.blocks.get_mut(&key) {
            self.lru.remove(&b.last_use);
            b.last_use = self.use_counter;
            self.lru.insert(self.use_counter, key);
        }
    }

    /// Evicts the least recently used blocks that `may_go` until at most
    /// `limit` bytes are cached (or nothing more may go). `lru` is ordered
    /// by last use, so this looks only past the few blocks that may not go.
    pub(super) fn evict(&mut self, limit: usize, may_go: impl Fn(&BlockKey) -> bool) {
        while self.bytes > limit {
            let victim = self.lru.iter().find(|(_, k)| may_go(k));
            let Some((&last_use, &victim)) = victim else {
                break;
            };
            self.lru.remove(&last_use);
            if let Some(b) = self.blocks.remove(&victim) {
                self.bytes -= b.bytes();
            }
        }
    }
}

impl Sender {
    pub(super) fn insert_cache(&mut self, key: BlockKey, source: Vec<u8>) {
        self.cache.insert(key, source);
        let proactive = self.proactive_for(&key);
        if let Some(c) = self.cache.get_mut(&key) {
            c.proactive = proactive;
        }
        self.evict();
        if proactive > 0 {
            // Ready before the cursor reaches it, with luck.
            self.request_parity(key, 0, proactive as usize);
        }
    }

    /// The proactive parity a block read now goes out with: the group's
    /// level (autoparity.rs), at least `--proactive`, at most its parity;
    /// a lone receiver gets none beyond `--proactive` (the source symbols
    /// it names are resent instead, and it decodes nothing).
    fn proactive_for(&self, key: &BlockKey) -> u32 {
        let k = self
            .coding
            .block_k(self.sizes[key.object as usize], BlockNumber(key.block));
        let r = self.coding.block_parity(k);
        if self.group_size() <= 1 {
            return self.config.proactive.min(r) as u32;
        }
        self.auto_parity.for_block(self.config.proactive, r)
    }

    /// The proactive parity `key` went out with (decided when it was read;
    /// for a block evicted since, what it would get now).
    pub(super) fn proactive_of(&self, key: &BlockKey) -> u32 {
        self.cache
            .get(key)
            .map_or_else(|| self.proactive_for(key), |c| c.proactive)
    }

    /// Asks the caller for parity symbols `first .. first + count` of a
    /// cached block, unless a request for it is out.
    pub(super) fn request_parity(&mut self, key: BlockKey, first: usize, count: usize) {
        let size = self.sizes[key.object as usize];
        let k = self.coding.block_k(size, BlockNumber(key.block)) as usize;
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
        self.requests.push_back(SenderRequest::EncodeParity {
            object: ObjectId(key.object),
            block: BlockNumber(key.block),
            job,
        });
    }

    /// Whether the next new symbol can go now: its block is cached and, for
    /// proactive parity, the symbol computed.
    pub(super) fn new_symbol_ready(&self) -> bool {
        let key = self.cursor.key();
        let Some(cached) = self.cache.get(&key) else {
            return false;
        };
        let k = self
            .coding
            .block_k(self.sizes[key.object as usize], BlockNumber(key.block))
            as u32;
        let esi = self.cursor.esi;
        esi < k
            || cached
                .parity
                .symbol((esi - k) as usize, self.coding.symbol_size as usize)
                .is_some()
    }

    /// Evicts down to the cache's budget: least recently used first,
    /// among blocks already sent and not queued for repair (blocks of the
    /// read-ahead window are never evicted).
    pub(super) fn evict(&mut self) {
        let cursor = self.cursor.key();
        let repairs = &self.repairs;
        self.cache.evict(self.config.cache_bytes, |k| {
            *k < cursor && repairs.get(k).is_none_or(|st| st.queued == 0)
        });
    }

    /// Asks for the blocks of the read-ahead window and of queued repairs.
    pub(super) fn request_reads(&mut self) {
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
            wanted.push(BlockKey::new(o, b));
            b += 1;
        }
        wanted.extend(self.repair_queue.iter().take(4).copied());
        for key in wanted {
            if self.cache.has_or_awaits(&key) {
                continue;
            }
            if key.object == 0 {
                let block = BlockNumber(key.block);
                let off = self.coding.block_offset(block) as usize;
                let len = self.coding.block_len(self.sizes[0], block);
                let k = self.coding.block_k(self.sizes[0], block) as usize;
                let mut data = self.manifest_bytes[off..off + len].to_vec();
                pad_exactly(&mut data, k * self.coding.symbol_size as usize);
                self.insert_cache(key, data);
                continue;
            }
            self.cache.read_asked(key);
            let block = BlockNumber(key.block);
            let size = self.sizes[key.object as usize];
            self.requests.push_back(SenderRequest::ReadBlock {
                object: ObjectId(key.object),
                block,
                offset: self.coding.block_offset(block),
                len: self.coding.block_len(size, block),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_padded_block_holds_no_more_memory_than_its_symbols() {
        use crate::manifest::{Entry, EntryKind};
        let content = [7u8; 8000];
        let manifest = Manifest::new(vec![Entry {
            path: "f".into(),
            kind: EntryKind::File {
                size: 8000,
                hash: *blake3::hash(&content).as_bytes(),
                blocks: Vec::new(),
            },
            mode: 0o644,
            mtime_secs: 0,
            mtime_nanos: 0,
            owner: 0,
        }]);
        let now = Instant::now();
        let mut sender = Sender::new(SenderConfig::new(SessionId(1)), manifest, now).unwrap();
        // The file's one block, short, as the reader returns it: padded to
        // its 6 symbols of 1400 bytes in the cache, and counted as such.
        let key = BlockKey::new(1, 0);
        sender.cache.read_asked(key);
        let mut data = Vec::with_capacity(8000);
        data.extend_from_slice(&content);
        sender.handle_block(now, ObjectId(1), BlockNumber(0), data);
        let data = &sender.cache.get(&key).unwrap().source;
        assert_eq!(data.len(), 8400);
        assert_eq!(data.capacity(), 8400);
        assert!(data[8000..].iter().all(|&b| b == 0));
        assert!(data[..8000].iter().all(|&b| b == 7));
        // What the cache's bound counts for it (the manifest's block may be
        // cached by now too, so not the cache's total).
        assert_eq!(
            sender.cache.get(&key).unwrap().bytes(),
            8400 + CACHED_BLOCK_OVERHEAD
        );
    }
}

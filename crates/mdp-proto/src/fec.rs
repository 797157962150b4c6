//! Reed-Solomon coding of one block, with one of two codes chosen by the
//! block's shape ([`Scheme::for_block`]):
//!
//! - a block of `k` source and `r` parity symbols with `k + r ≤ 256` uses
//!   the GF(2^8) Cauchy code of `mdp-gf256`: parity index `i` (encoding
//!   symbol id `k + i`) is `Σ_j s_j / ((255 − i) XOR j)`. Encoding costs `k`
//!   multiply-adds per byte of each parity symbol sent, decoding about `k`
//!   per byte of each lost symbol, so both grow with the losses;
//! - a larger block uses reed-solomon-simd's GF(2^16) code: parity index `i`
//!   is recovery shard `i` of a `ReedSolomonEncoder::new(k, r, T)`, which
//!   depends on all three. Its encoder makes all `r` symbols at once and its
//!   decoder transforms the whole block, whatever was lost.
//!
//! Either way any `k` distinct symbols rebuild the block.

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use thiserror::Error;

/// A coding failure. With valid parameters only "not enough symbols" can
/// happen, and the state machines never call the decoder then.
#[derive(Debug, Error)]
pub enum FecError {
    /// From the GF(2^16) code.
    #[error("reed-solomon: {0}")]
    Fft(#[from] reed_solomon_simd::Error),
    /// From the GF(2^8) code.
    #[error("reed-solomon: {0}")]
    Cauchy(#[from] mdp_gf256::Error),
}

/// The code a block uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// GF(2^8) Cauchy (`k + r ≤ 256`).
    Cauchy,
    /// reed-solomon-simd's GF(2^16) code (larger blocks).
    Fft,
}

impl Scheme {
    /// The code of a block of `k` source and `r` parity symbols.
    pub fn for_block(k: usize, r: usize) -> Scheme {
        if k + r <= mdp_gf256::MAX_SYMBOLS {
            Scheme::Cauchy
        } else {
            Scheme::Fft
        }
    }
}

/// The parity symbols of one block computed so far: all `r` of them at
/// once for the GF(2^16) code, each one when first asked for with the
/// GF(2^8) code (and only those are held: a block repaired with 13 parity
/// symbols holds 13, not `r`).
#[derive(Debug, Default)]
pub struct BlockParity {
    /// All `r` symbols back to back (GF(2^16) code), once computed.
    all: Vec<u8>,
    /// Symbols by index (GF(2^8) code).
    each: Vec<Option<Box<[u8]>>>,
    /// Bytes of symbols held.
    held: usize,
}

impl BlockParity {
    /// Bytes of memory held.
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// True before any symbol is computed.
    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// Parity symbol `i` (of `t` bytes), if computed.
    pub fn symbol(&self, i: usize, t: usize) -> Option<&[u8]> {
        if self.all.is_empty() {
            self.each.get(i)?.as_deref()
        } else {
            self.all.get(i * t..(i + 1) * t)
        }
    }

    /// Takes in what a [`ParityJob`] of this block computed: symbols
    /// `job.first ..` in `symbols`. Returns the bytes it now holds more.
    pub fn fill(&mut self, job: &ParityJob, symbols: Vec<u8>) -> usize {
        let before = self.held;
        let t = job.t;
        if job.scheme() == Scheme::Fft {
            if self.all.is_empty() && symbols.len() == job.r * t {
                self.all = symbols;
                self.held = self.all.len();
            }
            return self.held - before;
        }
        for (n, s) in symbols.chunks_exact(t).enumerate() {
            let i = job.first + n;
            if self.each.len() <= i {
                self.each.resize(i + 1, None);
            }
            if self.each[i].is_none() {
                self.each[i] = Some(s.into());
                self.held += t;
            }
        }
        self.held - before
    }
}

/// Parity symbols that the sender asks its caller to compute off the
/// protocol loop ([`crate::SenderRequest::EncodeParity`]): symbols `first ..
/// first + count` of a block (all `r` of them with the GF(2^16) code, which
/// makes them together).
#[derive(Clone, PartialEq, Eq)]
pub struct ParityJob {
    /// The block's `k · t` source bytes, zero-padded; shared with the
    /// sender's block cache.
    pub source: Arc<Vec<u8>>,
    /// Source symbols.
    pub k: usize,
    /// Parity symbols the block has.
    pub r: usize,
    /// Symbol size.
    pub t: usize,
    /// First parity index to compute.
    pub first: usize,
    /// How many.
    pub count: usize,
}

impl std::fmt::Debug for ParityJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the source bytes: a block is hundreds of kilobytes.
        f.debug_struct("ParityJob")
            .field("source_len", &self.source.len())
            .field("k", &self.k)
            .field("r", &self.r)
            .field("t", &self.t)
            .field("first", &self.first)
            .field("count", &self.count)
            .finish()
    }
}

impl ParityJob {
    /// A job for parity symbols `first .. first + count` (clipped to `r`;
    /// widened to all `r` for the GF(2^16) code).
    pub fn new(
        source: Arc<Vec<u8>>,
        k: usize,
        r: usize,
        t: usize,
        first: usize,
        count: usize,
    ) -> Self {
        let (first, count) = match Scheme::for_block(k, r) {
            Scheme::Fft => (0, r),
            Scheme::Cauchy => (first.min(r), count.min(r - first.min(r))),
        };
        ParityJob {
            source,
            k,
            r,
            t,
            first,
            count,
        }
    }

    /// The block's code.
    pub fn scheme(&self) -> Scheme {
        Scheme::for_block(self.k, self.r)
    }

    /// Computes the symbols, `count · t` bytes (for [`BlockParity::fill`]).
    pub fn run(&self, codec: &mut Codec) -> Result<Vec<u8>, FecError> {
        let mut out = Vec::new();
        if self.scheme() == Scheme::Fft {
            codec.encode(self.k, self.r, self.t, &self.source, &mut out)?;
            return Ok(out);
        }
        out.resize(self.count * self.t, 0);
        for (n, sym) in out.chunks_exact_mut(self.t).enumerate() {
            codec
                .cauchy
                .encode_parity(self.k, self.t, &self.source, self.first + n, sym)?;
        }
        Ok(out)
    }
}

/// Reusable encoders and decoders (their work buffers are kept between
/// blocks).
#[derive(Default)]
pub struct Codec {
    encoder: Option<ReedSolomonEncoder>,
    decoder: Option<ReedSolomonDecoder>,
    cauchy: mdp_gf256::Coder,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec").finish_non_exhaustive()
    }
}

impl Codec {
    /// Computes all `r` parity symbols of a block. `source` holds `k * t`
    /// bytes (zero-padded); `parity` is cleared and filled with `r * t` bytes.
    pub fn encode(
        &mut self,
        k: usize,
        r: usize,
        t: usize,
        source: &[u8],
        parity: &mut Vec<u8>,
    ) -> Result<(), FecError> {
        debug_assert_eq!(source.len(), k * t);
        parity.clear();
        if Scheme::for_block(k, r) == Scheme::Cauchy {
            parity.resize(r * t, 0);
            for (i, out) in parity.chunks_exact_mut(t).enumerate() {
                self.cauchy.encode_parity(k, t, source, i, out)?;
            }
            return Ok(());
        }
        let enc = match &mut self.encoder {
            Some(e) => {
                e.reset(k, r, t)?;
                e
            }
            slot => slot.insert(ReedSolomonEncoder::new(k, r, t)?),
        };
        for shard in source.chunks_exact(t) {
            enc.add_original_shard(shard)?;
        }
        let result = enc.encode()?;
        parity.reserve(r * t);
        for shard in result.recovery_iter() {
            parity.extend_from_slice(shard);
        }
        Ok(())
    }

    /// Rebuilds the missing source symbols of a block in place. `block` holds
    /// `k * t` bytes; `have[i]` says whether source symbol `i` is present;
    /// `recovery` lists `(parity index, symbol)` pairs. Needs at least `k`
    /// symbols in all.
    pub fn decode<'a>(
        &mut self,
        k: usize,
        r: usize,
        t: usize,
        block: &mut [u8],
        have: &[bool],
        recovery: impl Iterator<Item = (usize, &'a [u8])>,
    ) -> Result<(), FecError> {
        if Scheme::for_block(k, r) == Scheme::Cauchy {
            let recovery: Vec<(usize, &[u8])> = recovery.collect();
            self.cauchy.decode(k, t, block, have, &recovery)?;
            return Ok(());
        }
        let dec = match &mut self.decoder {
            Some(d) => {
                d.reset(k, r, t)?;
                d
            }
            slot => slot.insert(ReedSolomonDecoder::new(k, r, t)?),
        };
        for (i, shard) in block.chunks_exact(t).enumerate() {
            if have[i] {
                dec.add_original_shard(i, shard)?;
            }
        }
        for (i, shard) in recovery {
            dec.add_recovery_shard(i, shard)?;
        }
        let result = dec.decode()?;
        for (i, shard) in result.restored_original_iter() {
            block[i * t..(i + 1) * t].copy_from_slice(shard);
        }
        Ok(())
    }
}

/// Bytes of block memory that left the receiver's state machine and are
/// still alive: blocks queued for the writer, being rebuilt, or being
/// written. The state machine counts them against its buffer budget, so
/// that the budget bounds all block memory, not only the incomplete blocks;
/// each [`CompleteBlock`] and [`BlockBytes`] it hands out gives its share
/// back when dropped, on whatever thread that happens.
///
/// It also keeps a few block buffers that were written and dropped, for
/// the next blocks ([`BufferGauge::buffer`]): a fresh zeroed buffer per
/// block cost the receiver a `memset` of every byte it receives.
#[derive(Clone, Debug, Default)]
pub struct BufferGauge(Arc<Gauge>);

#[derive(Debug, Default)]
struct Gauge {
    bytes: AtomicUsize,
    spare: std::sync::Mutex<Vec<Vec<u8>>>,
}

/// Most dropped block buffers a [`BufferGauge`] keeps for reuse. Under
/// loss, the blocks waiting for repairs rise and fall by more than a few
/// (with 4 spares, 34–55 % of the blocks of a push to 4 receivers at 5 %
/// loss got a fresh zeroed buffer, and its `memset`; with 32, 4–8 %).
/// Spares never raise the peak: a buffer is
/// allocated only when none is spare, so held and spare buffers together
/// never exceed the most ever held at once, which the budget bounds.
const SPARE_BUFFERS: usize = 32;

impl BufferGauge {
    /// Bytes held outside the state machine now.
    pub fn bytes(&self) -> usize {
        self.0.bytes.load(Ordering::Relaxed)
    }

    /// A buffer of `len` bytes for a block: one that held an earlier block
    /// if one is spare, **with that block's bytes still in it** (the caller
    /// writes every byte before reading it), else a zeroed one.
    pub fn buffer(&self, len: usize) -> Vec<u8> {
        let spare = self.0.spare.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match spare {
            Some(mut v) => {
                v.truncate(len);
                v.resize(len, 0);
                v
            }
            None => vec![0; len],
        }
    }

    fn recycle(&self, v: Vec<u8>) {
        if v.capacity() == 0 {
            return;
        }
        let mut spare = self.0.spare.lock().unwrap_or_else(|e| e.into_inner());
        if spare.len() < SPARE_BUFFERS {
            spare.push(v);
        }
    }

    fn lease(&self, bytes: usize) -> Lease {
        self.0.bytes.fetch_add(bytes, Ordering::Relaxed);
        Lease {
            gauge: self.clone(),
            bytes,
        }
    }
}

/// `bytes` counted in a [`BufferGauge`] until dropped.
#[derive(Debug)]
struct Lease {
    gauge: BufferGauge,
    bytes: usize,
}

impl Clone for Lease {
    fn clone(&self) -> Lease {
        // A copy holds as much memory again.
        self.gauge.0.bytes.fetch_add(self.bytes, Ordering::Relaxed);
        Lease {
            gauge: self.gauge.clone(),
            bytes: self.bytes,
        }
    }
}

/// Accounting, not content: blocks compare by their bytes alone.
impl PartialEq for Lease {
    fn eq(&self, _: &Lease) -> bool {
        true
    }
}

impl Eq for Lease {}

impl Drop for Lease {
    fn drop(&mut self) {
        self.gauge.0.bytes.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// A rebuilt block's bytes ([`CompleteBlock::into_bytes`]); still counted
/// in the receiver's buffer budget until dropped.
#[derive(Debug)]
pub struct BlockBytes {
    data: Vec<u8>,
    _lease: Option<Lease>,
}

impl BlockBytes {
    /// The bytes, no longer counted.
    pub fn into_vec(mut self) -> Vec<u8> {
        std::mem::take(&mut self.data)
    }
}

impl Drop for BlockBytes {
    /// The buffer goes back to the gauge, for the next block.
    fn drop(&mut self) {
        if let Some(lease) = &self._lease {
            lease.gauge.recycle(std::mem::take(&mut self.data));
        }
    }
}

impl AsRef<[u8]> for BlockBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::ops::Deref for BlockBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data
    }
}

/// A block for which `k` distinct symbols arrived, not yet rebuilt.
///
/// The receiver state machine hands these over instead of decoding them
/// Parity symbols received for one block, back to back in one buffer: no
/// allocation per symbol (a `Vec` per repair datagram cost the receivers
/// a `malloc` and a `free` for 8 % of their datagrams at 5 % loss).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceivedParity {
    /// Parity index of each symbol, in arrival order.
    index: Vec<u16>,
    /// The symbols, `t` bytes each, in the same order.
    bytes: Vec<u8>,
}

impl ReceivedParity {
    /// Symbols a block's buffer has room for before it first grows.
    const FIRST: usize = 4;

    /// Symbols held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when none is held.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// True when parity symbol `index` is held.
    pub fn contains(&self, index: u16) -> bool {
        self.index.contains(&index)
    }

    /// Adds parity symbol `index`: `symbol` zero-padded to `t` bytes.
    /// Returns how many bytes the buffer grew by (0 while it has room).
    pub fn push(&mut self, index: u16, symbol: &[u8], t: usize) -> usize {
        let before = self.held_bytes();
        if self.bytes.capacity() == 0 {
            self.bytes.reserve_exact(Self::FIRST * t);
        }
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&symbol[..symbol.len().min(t)]);
        self.bytes.resize(at + t, 0);
        self.index.push(index);
        self.held_bytes() - before
    }

    /// Bytes of memory held.
    pub fn held_bytes(&self) -> usize {
        self.bytes.capacity() + self.index.capacity() * 2
    }

    /// `(parity index, symbol)` pairs, for [`Codec::decode`].
    pub fn iter(&self, t: usize) -> impl Iterator<Item = (usize, &[u8])> {
        self.index
            .iter()
            .zip(self.bytes.chunks_exact(t.max(1)))
            .map(|(&i, s)| (i as usize, s))
    }
}

/// itself, so that the caller can run the Reed-Solomon decode (the one
/// costly step of receiving) away from the loop that reads the socket.
#[derive(Clone, PartialEq, Eq)]
pub struct CompleteBlock {
    k: usize,
    r: usize,
    t: usize,
    len: usize,
    /// `k * t` bytes; source symbol `i` at `i * t` when `have[i]`.
    data: Vec<u8>,
    have: Vec<bool>,
    recovery: ReceivedParity,
    lease: Option<Lease>,
}

impl std::fmt::Debug for CompleteBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompleteBlock")
            .field("k", &self.k)
            .field("len", &self.len)
            .field("parity_used", &self.recovery.len())
            .finish_non_exhaustive()
    }
}

impl CompleteBlock {
    /// A block of `k` source symbols of `t` bytes (`r` parity symbols in
    /// its code) whose exact length is `len`. `data` holds `k * t` bytes with
    /// source symbol `i` at `i * t` where `have[i]`; `recovery` holds parity
    /// symbols. Together they must be at least `k` distinct symbols.
    pub fn new(
        k: usize,
        r: usize,
        t: usize,
        len: usize,
        data: Vec<u8>,
        have: Vec<bool>,
        recovery: ReceivedParity,
    ) -> CompleteBlock {
        debug_assert_eq!(data.len(), k * t);
        debug_assert!(len <= k * t);
        CompleteBlock {
            k,
            r,
            t,
            len,
            data,
            have,
            recovery,
            lease: None,
        }
    }

    /// Counts this block's memory in `gauge` until it (or the
    /// [`BlockBytes`] rebuilt from it) is dropped.
    pub fn counted_in(mut self, gauge: &BufferGauge) -> CompleteBlock {
        self.lease = Some(gauge.lease(self.held_bytes()));
        self
    }

    /// Bytes of memory the block holds: its source buffer and parity
    /// symbols.
    pub fn held_bytes(&self) -> usize {
        self.data.len() + self.recovery.held_bytes()
    }

    /// The block's length in bytes once rebuilt.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a block of no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when a source symbol is missing, so that rebuilding needs a
    /// Reed-Solomon decode.
    pub fn needs_decoding(&self) -> bool {
        self.have.iter().any(|h| !h)
    }

    /// The block's bytes (exactly [`CompleteBlock::len`] of them), decoding
    /// with `codec` when a source symbol is missing.
    pub fn into_bytes(mut self, codec: &mut Codec) -> Result<BlockBytes, FecError> {
        if self.needs_decoding() {
            let recovery = self.recovery.iter(self.t);
            codec.decode(self.k, self.r, self.t, &mut self.data, &self.have, recovery)?;
        }
        let mut data = std::mem::take(&mut self.data);
        data.truncate(self.len);
        Ok(BlockBytes {
            data,
            _lease: self.lease.take(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_k_symbols_rebuild_the_block_with_either_code() {
        // (8, 4) and (192, 64) fit in GF(2^8); (256, 128) and (300, 40) do not.
        for (k, r, scheme) in [
            (8, 4, Scheme::Cauchy),
            (192, 64, Scheme::Cauchy),
            (256, 128, Scheme::Fft),
            (300, 40, Scheme::Fft),
        ] {
            assert_eq!(Scheme::for_block(k, r), scheme);
            let t = 64;
            let source: Vec<u8> = (0..k * t).map(|i| (i * 7 % 251) as u8).collect();
            let mut codec = Codec::default();
            let mut parity = Vec::new();
            codec.encode(k, r, t, &source, &mut parity).unwrap();
            assert_eq!(parity.len(), r * t);
            // Lose source symbols 1, 4, 6 and use parity 0, 2, 3 (the
            // decoder may be handed more than it needs).
            let mut block = source.clone();
            let mut have = vec![true; k];
            for i in [1, 4, 6] {
                have[i] = false;
                block[i * t..(i + 1) * t].fill(0);
            }
            let rec = [0usize, 2, 3, 1].map(|i| (i, &parity[i * t..(i + 1) * t]));
            codec
                .decode(k, r, t, &mut block, &have, rec.into_iter())
                .unwrap();
            assert!(block == source, "{scheme:?} k={k} r={r}");
        }
    }

    #[test]
    fn parity_jobs_compute_only_what_they_name_and_fill_the_cache() {
        let t = 32;
        for (k, r) in [(16usize, 8usize), (256, 16)] {
            let source: Vec<u8> = (0..k * t).map(|i| (i * 11 % 253) as u8).collect();
            let mut codec = Codec::default();
            let mut all = Vec::new();
            codec.encode(k, r, t, &source, &mut all).unwrap();
            let source = Arc::new(source);
            let mut cache = BlockParity::default();
            assert!(cache.is_empty());
            let job = ParityJob::new(source.clone(), k, r, t, 5, 2);
            let added = cache.fill(&job, job.run(&mut codec).unwrap());
            assert_eq!(cache.symbol(5, t).unwrap(), &all[5 * t..6 * t]);
            let ready = (0..r).filter(|&i| cache.symbol(i, t).is_some()).count();
            match Scheme::for_block(k, r) {
                // Only the symbols asked for were computed and are held.
                Scheme::Cauchy => {
                    assert_eq!((job.first, job.count), (5, 2));
                    assert_eq!(ready, 2);
                    assert_eq!(added, 2 * t);
                }
                // The FFT code makes them all at once.
                Scheme::Fft => {
                    assert_eq!((job.first, job.count), (0, r));
                    assert_eq!(ready, r);
                    assert_eq!(added, r * t);
                }
            }
            // A job past the end is clipped; filling twice holds once.
            let job = ParityJob::new(source.clone(), k, r, t, 4, 100);
            cache.fill(&job, job.run(&mut codec).unwrap());
            let job = ParityJob::new(source, k, r, t, 0, 4);
            cache.fill(&job, job.run(&mut codec).unwrap());
            for i in 0..r {
                assert_eq!(
                    cache.symbol(i, t).unwrap(),
                    &all[i * t..(i + 1) * t],
                    "k={k} symbol {i}"
                );
            }
            assert_eq!(cache.held_bytes(), r * t);
        }
    }

    #[test]
    fn a_complete_block_decodes_only_when_a_source_symbol_is_missing() {
        let (k, r, t) = (4, 2, 32);
        let source: Vec<u8> = (0..k * t).map(|i| (i * 13 % 251) as u8).collect();
        let mut codec = Codec::default();
        let mut parity = Vec::new();
        codec.encode(k, r, t, &source, &mut parity).unwrap();
        let whole = CompleteBlock::new(
            k,
            r,
            t,
            100,
            source.clone(),
            vec![true; k],
            Default::default(),
        );
        assert!(!whole.needs_decoding());
        assert_eq!(*whole.into_bytes(&mut codec).unwrap(), source[..100]);
        let mut holed = source.clone();
        holed[t..2 * t].fill(0);
        let block = CompleteBlock::new(k, r, t, k * t, holed, vec![true, false, true, true], {
            let mut p = ReceivedParity::default();
            p.push(1, &parity[t..2 * t], t);
            p
        });
        assert!(block.needs_decoding());
        assert_eq!(block.len(), k * t);
        assert_eq!(*block.into_bytes(&mut codec).unwrap(), source[..]);
    }

    #[test]
    fn received_parity_counts_every_byte_it_grows_by() {
        let t = 100;
        let mut p = ReceivedParity::default();
        let mut counted = 0;
        for i in 0..20u16 {
            // A short symbol is padded to `t`.
            let sym = vec![i as u8 + 1; if i == 3 { 40 } else { t }];
            counted += p.push(i, &sym, t);
            assert_eq!(counted, p.held_bytes(), "after {} symbols", i + 1);
        }
        assert_eq!(p.len(), 20);
        assert!(p.contains(19) && !p.contains(20));
        let got: Vec<(usize, &[u8])> = p.iter(t).collect();
        assert_eq!(got.len(), 20);
        assert_eq!(got[3].0, 3);
        assert_eq!(&got[3].1[..40], &[4u8; 40][..]);
        assert!(got[3].1[40..].iter().all(|&b| b == 0));
        assert!(got[19].1.iter().all(|&b| b == 20));
    }

    /// A block of 100 bytes with all `k` source symbols, each byte `fill`.
    fn whole_block(k: usize, r: usize, t: usize, fill: u8) -> CompleteBlock {
        CompleteBlock::new(
            k,
            r,
            t,
            100,
            vec![fill; k * t],
            vec![true; k],
            ReceivedParity::default(),
        )
    }

    #[test]
    fn a_counted_block_is_counted_until_its_bytes_are_dropped() {
        let (k, r, t) = (4, 2, 32);
        let gauge = BufferGauge::default();
        let block = whole_block(k, r, t, 1).counted_in(&gauge);
        assert_eq!(gauge.bytes(), k * t);
        let copy = block.clone();
        assert_eq!(gauge.bytes(), 2 * k * t, "a copy is more memory");
        drop(copy);
        let bytes = block.into_bytes(&mut Codec::default()).unwrap();
        assert_eq!(gauge.bytes(), k * t, "rebuilt, not yet written");
        assert_eq!(bytes.len(), 100);
        let plain = bytes.into_vec();
        assert_eq!(gauge.bytes(), 0);
        assert_eq!(plain.len(), 100);
    }

    #[test]
    fn written_block_buffers_are_used_again_as_they_were() {
        let (k, t) = (4, 32);
        let gauge = BufferGauge::default();
        assert_eq!(gauge.buffer(k * t), vec![0; k * t], "none spare: zeroed");
        let block = whole_block(k, 2, t, 7).counted_in(&gauge);
        drop(block.into_bytes(&mut Codec::default()).unwrap());
        // The written block's buffer comes back, its bytes in it, at the
        // length asked for (the 100 bytes it had, then zeros).
        let again = gauge.buffer(k * t);
        assert_eq!(&again[..100], &[7; 100][..]);
        assert_eq!(&again[100..], &[0; 28][..]);
        assert_eq!(gauge.buffer(10).len(), 10);
        // Only a few are kept.
        for _ in 0..SPARE_BUFFERS + 10 {
            let b = CompleteBlock::new(1, 1, t, t, vec![1; t], vec![true], Default::default())
                .counted_in(&gauge);
            drop(b.into_bytes(&mut Codec::default()).unwrap());
        }
        assert_eq!(gauge.0.spare.lock().unwrap().len(), SPARE_BUFFERS);
    }

    #[test]
    fn a_single_symbol_block_with_many_parity_symbols_works() {
        let (k, r, t) = (1, 128, 16);
        let source = vec![42u8; t];
        let mut codec = Codec::default();
        let mut parity = Vec::new();
        codec.encode(k, r, t, &source, &mut parity).unwrap();
        let mut block = vec![0u8; t];
        let rec = [(77usize, &parity[77 * t..78 * t])];
        codec
            .decode(k, r, t, &mut block, &[false], rec.into_iter())
            .unwrap();
        assert_eq!(block, source);
    }
}

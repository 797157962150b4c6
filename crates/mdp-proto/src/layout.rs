//! How an object is cut into symbols and blocks.
//!
//! An object of `size` bytes is cut into `ceil(size / T)` source symbols of `T`
//! bytes (the last one may be shorter), grouped in order into blocks of `k`
//! symbols (the last block may have fewer). A block of `k_b` source symbols
//! has `r_b = min(r, max(k_b, 32))` parity symbols defined, computed over its
//! source symbols zero-padded to `T` bytes. (Capping `r_b` keeps the decoding
//! work of a small block small; repairs beyond `r_b` resend source symbols.)

use crate::ids::BlockNumber;
use crate::limits::MIN_BLOCK_PARITY;

/// The coding parameters of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coding {
    /// Symbol size `T` in bytes (even).
    pub symbol_size: u16,
    /// Source symbols per full block.
    pub block_k: u16,
    /// Parity symbols defined per block.
    pub parity: u16,
}

impl Coding {
    /// Number of blocks of an object of `size` bytes. Callers check with
    /// [`Coding::block_count_wide`] that it fits in a `u32` first.
    pub fn block_count(&self, size: u64) -> u32 {
        self.block_count_wide(size) as u32
    }

    /// Number of blocks, without truncation.
    pub fn block_count_wide(&self, size: u64) -> u64 {
        let t = self.symbol_size as u64;
        let symbols = size.div_ceil(t);
        symbols.div_ceil(self.block_k as u64)
    }

    /// Byte offset of a block within its object.
    pub fn block_offset(&self, block: BlockNumber) -> u64 {
        block.0 as u64 * self.block_k as u64 * self.symbol_size as u64
    }

    /// Bytes of object data in a block (the last block may be short).
    pub fn block_len(&self, size: u64, block: BlockNumber) -> usize {
        let full = self.block_k as u64 * self.symbol_size as u64;
        size.saturating_sub(self.block_offset(block)).min(full) as usize
    }

    /// Source symbols in a block.
    pub fn block_k(&self, size: u64, block: BlockNumber) -> u16 {
        (self.block_len(size, block) as u64).div_ceil(self.symbol_size as u64) as u16
    }

    /// Parity symbols defined for a block of `k` source symbols.
    pub fn block_parity(&self, k: u16) -> u16 {
        self.parity.min(k.max(MIN_BLOCK_PARITY))
    }

    /// Bytes of a source symbol on the wire (the object's last may be short).
    pub fn source_symbol_len(&self, block_len: usize, esi: u16) -> usize {
        let t = self.symbol_size as usize;
        block_len.saturating_sub(esi as usize * t).min(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_of_a_short_last_block() {
        let c = Coding {
            symbol_size: 100,
            block_k: 4,
            parity: 2,
        };
        assert_eq!(c.block_count(0), 0);
        assert_eq!(c.block_count(1), 1);
        assert_eq!(c.block_count(400), 1);
        assert_eq!(c.block_count(401), 2);
        assert_eq!(c.block_len(401, BlockNumber(1)), 1);
        assert_eq!(c.block_k(401, BlockNumber(1)), 1);
        assert_eq!(c.block_k(950, BlockNumber(2)), 2);
        assert_eq!(c.source_symbol_len(150, 1), 50);
        assert_eq!(c.source_symbol_len(150, 0), 100);
        assert_eq!(c.block_parity(4), 2, "never more than r");
        let big = Coding {
            symbol_size: 100,
            block_k: 256,
            parity: 128,
        };
        assert_eq!(big.block_parity(256), 128);
        assert_eq!(big.block_parity(40), 40);
        assert_eq!(big.block_parity(1), 32);
    }
}

//! The one source of randomness of the simulated network.
//!
//! **Invariant:** every random choice of a run comes from one [`SimRng`]
//! seeded by [`SimConfig::seed`](crate::SimConfig::seed), drawn in the
//! same order, so the same settings give the same run.

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

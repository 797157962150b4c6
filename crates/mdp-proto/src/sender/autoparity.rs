//! Proactive parity sized to the group's losses (as NORM's auto-parity):
//! each block goes out with enough parity that most receivers need no
//! repair for it, so that a group of thousands NACKs a few blocks instead
//! of every one.
//!
//! A quantile tracker: the level falls by [`DOWN`] for each block sent and
//! rises by [`UP`] for each block a repair round starts for (the first
//! NACK of a round), so it settles where about `DOWN / UP` repair rounds
//! (one per three blocks) start per block sent: near the tail of the worst
//! receiver's loss, whatever the group's size. (One in ten cost 2 % more
//! wire bytes at 100 receivers for 0.41 NACK entries per lost block
//! against 0.96; docs/BENCHMARKS-HISTORY.md.) A lone receiver gets none:
//! the source symbols it names are resent instead (sender/repair.rs). On a network without loss
//! no block is NACKed and the level falls to the floor (`--proactive`, 0 by
//! default): no parity goes out that nobody needs.
//!
//! **Invariant:** the level stays within `0 ..= MAX_LEVEL`, and a block's
//! proactive parity within its floor and its parity `r`: forged NACKs can
//! raise it to `r` (a third more data with the default shape), no further.

/// Fall of the level per block sent (symbols).
const DOWN: f64 = 0.1;
/// Rise of the level per repair round started (symbols).
const UP: f64 = 0.3;
/// The level's ceiling (no block has more parity than this).
const MAX_LEVEL: f64 = 8192.0;

/// The proactive parity level.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct AutoParity {
    level: f64,
}

impl AutoParity {
    /// A block's source symbols all went out once.
    pub(super) fn block_sent(&mut self) {
        self.level = (self.level - DOWN).max(0.0);
    }

    /// A repair round started for a block: its proactive parity was not
    /// enough for some receiver. The level never passes `r` (the session's
    /// parity per block): forged NACKs or a receiver losing a quarter of
    /// everything leave it where it falls back within a few hundred blocks.
    pub(super) fn block_repaired(&mut self, r: u16) {
        self.level = (self.level + UP).min(MAX_LEVEL).min(r as f64);
    }

    /// Proactive parity for the next block whose parity is `r`: the level,
    /// at least `floor`, at most `r`.
    pub(super) fn for_block(&self, floor: u16, r: u16) -> u32 {
        (self.level.ceil() as u32).max(floor as u32).min(r as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_settles_where_one_block_in_four_needs_a_repair() {
        let mut a = AutoParity::default();
        // Blocks needing a repair while they get fewer than 20 parity
        // symbols: the level climbs there and stays close.
        for _ in 0..2000 {
            let p = a.for_block(0, 64);
            a.block_sent();
            if p < 20 {
                a.block_repaired(64);
            }
        }
        let p = a.for_block(0, 64);
        assert!((20..=21).contains(&p), "{p}");
        // Without loss it falls back to the floor.
        for _ in 0..1000 {
            a.block_sent();
        }
        assert_eq!(a.for_block(0, 64), 0);
        assert_eq!(a.for_block(4, 64), 4);
        // Never beyond the block's parity.
        for _ in 0..1000 {
            a.block_repaired(64);
        }
        assert_eq!(a.for_block(0, 64), 64);
        // ... and falls back from there within 640 blocks, however many
        // NACKs raised it.
        for _ in 0..640 {
            a.block_sent();
        }
        assert_eq!(a.for_block(0, 64), 0);
    }
}

//! When each ordinary receiver next wants to be woken (its state machine's
//! timer, or its caller's settle finishing), so that a step finds the next
//! wake-up of ten thousand receivers, and the ones due, without looking at
//! each.
//!
//! **Invariant:** `at[i]` is receiver `i`'s wake-up as last set, and the
//! heap holds an entry `(at[i], i)` for each that is set; entries that no
//! longer match `at` are stale and skipped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// The receivers' wake-ups.
#[derive(Debug, Default)]
pub(crate) struct Wakes {
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
    at: Vec<Option<Instant>>,
}

impl Wakes {
    /// No wake-up for any of `receivers` receivers.
    pub(crate) fn new(receivers: usize) -> Wakes {
        Wakes {
            heap: BinaryHeap::new(),
            at: vec![None; receivers],
        }
    }

    /// Receiver `i` next wants to be woken at `at` (`None`: not at all).
    pub(crate) fn set(&mut self, i: usize, at: Option<Instant>) {
        if self.at[i] != at {
            self.at[i] = at;
            if let Some(t) = at {
                self.heap.push(Reverse((t, i)));
            }
        }
    }

    /// The earliest wake-up.
    pub(crate) fn next(&mut self) -> Option<Instant> {
        while let Some(&Reverse((t, i))) = self.heap.peek() {
            if self.at[i] == Some(t) {
                return Some(t);
            }
            self.heap.pop();
        }
        None
    }

    /// Appends to `due` the receivers whose wake-up is at or before `now`,
    /// and forgets their wake-ups (the caller sets them anew).
    pub(crate) fn take_due(&mut self, now: Instant, due: &mut Vec<usize>) {
        while let Some(&Reverse((t, i))) = self.heap.peek() {
            if t > now {
                break;
            }
            self.heap.pop();
            if self.at[i] == Some(t) {
                self.at[i] = None;
                due.push(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_the_last_wake_up_of_each_counts() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut w = Wakes::new(3);
        w.set(0, Some(ms(5)));
        w.set(1, Some(ms(2)));
        w.set(1, Some(ms(9)));
        w.set(2, Some(ms(7)));
        w.set(2, None);
        assert_eq!(w.next(), Some(ms(5)), "1's first wake-up is stale");
        let mut due = Vec::new();
        w.take_due(ms(8), &mut due);
        assert_eq!(due, vec![0]);
        assert_eq!(w.next(), Some(ms(9)));
        w.take_due(ms(9), &mut due);
        assert_eq!(due, vec![0, 1]);
        assert_eq!(w.next(), None);
    }
}

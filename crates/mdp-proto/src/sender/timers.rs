//! The sender's deadlines, in one table: [`Sender::poll_timeout`] is the
//! earliest armed entry (and, while data can go, the pacer's and the rate
//! controller's next step), and every check of a deadline asks the table.
//!
//! Which entries are armed follows the phase:
//!
//! | phase      | armed                                  |
//! |------------|----------------------------------------|
//! | Announcing | `Session`, `DataStart`, `Announce`     |
//! | Sending    | `Session`, `Announce`                  |
//! | Flushing   | `Session`, `Flush`, `DropCheck`        |
//! | Done       | `Done`                                 |
//! | Finished   | none                                   |
//!
//! **Invariant:** a phase change disarms the entries of the phase it
//! leaves, so a stale deadline never wakes the caller for nothing, and
//! `DropCheck` is never later than the moment the first active receiver
//! will have been silent too long. It may be earlier (feedback moved that
//! moment on): the check then finds no one to drop and re-arms it, once per
//! firing, instead of a look at every receiver on every feedback.
//!
//! [`Sender::poll_timeout`]: super::Sender::poll_timeout

use std::time::Instant;

/// One deadline of the sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timer {
    /// The session's end (`--timeout`).
    Session,
    /// Registration ends and data starts (`--wait`).
    DataStart,
    /// The next ANNOUNCE (close together while registering, then a
    /// heartbeat).
    Announce,
    /// The next FLUSH round.
    Flush,
    /// No later than the first moment an active receiver has been silent
    /// for `drop_after`; disarmed while no receiver is active.
    DropCheck,
    /// The next DONE repeat.
    Done,
}

impl Timer {
    const ALL: [Timer; 6] = [
        Timer::Session,
        Timer::DataStart,
        Timer::Announce,
        Timer::Flush,
        Timer::DropCheck,
        Timer::Done,
    ];
}

/// The table: one optional instant per [`Timer`].
#[derive(Debug, Default)]
pub(super) struct Timers([Option<Instant>; Timer::ALL.len()]);

impl Timers {
    /// Arms `timer` for `at` (re-arming it if it was armed).
    pub(super) fn set(&mut self, timer: Timer, at: Instant) {
        self.0[timer as usize] = Some(at);
    }

    /// Arms `timer` for `at`, or disarms it with `None`.
    pub(super) fn set_opt(&mut self, timer: Timer, at: Option<Instant>) {
        self.0[timer as usize] = at;
    }

    /// Disarms `timer`.
    pub(super) fn stop(&mut self, timer: Timer) {
        self.0[timer as usize] = None;
    }

    /// Disarms every timer.
    pub(super) fn stop_all(&mut self) {
        self.0 = Default::default();
    }

    /// True when `timer` is armed.
    pub(super) fn is_armed(&self, timer: Timer) -> bool {
        self.0[timer as usize].is_some()
    }

    /// True when `timer` is armed and its instant has come.
    pub(super) fn is_due(&self, timer: Timer, now: Instant) -> bool {
        self.0[timer as usize].is_some_and(|at| now >= at)
    }

    /// The earliest armed instant.
    pub(super) fn next(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_earliest_armed_timer_is_next_and_stopped_ones_never_fire() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Session, t0 + Duration::from_secs(600));
        t.set(Timer::Announce, t0 + Duration::from_millis(10));
        t.set(Timer::Flush, t0 + Duration::from_millis(5));
        assert_eq!(t.next(), Some(t0 + Duration::from_millis(5)));
        assert!(t.is_due(Timer::Flush, t0 + Duration::from_millis(5)));
        assert!(!t.is_due(Timer::Announce, t0 + Duration::from_millis(5)));
        t.stop(Timer::Flush);
        assert!(!t.is_due(Timer::Flush, t0 + Duration::from_secs(1)));
        assert_eq!(t.next(), Some(t0 + Duration::from_millis(10)));
        t.set_opt(Timer::DropCheck, None);
        t.stop_all();
        assert_eq!(t.next(), None);
        for timer in Timer::ALL {
            assert!(!t.is_due(timer, t0 + Duration::from_secs(3600)));
        }
    }
}

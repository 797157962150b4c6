//! Token-bucket pacing of the sender's datagrams.

use std::time::{Duration, Instant};

/// Holds the send rate: a datagram may leave when the bucket holds its size.
/// The bucket fills at `rate` and holds at most `burst` bytes, so after an
/// idle period at most one burst leaves at once.
#[derive(Clone, Debug)]
pub(crate) struct Pacer {
    bytes_per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Pacer {
    pub(crate) fn new(rate_bps: u64, burst: usize, now: Instant) -> Self {
        Pacer {
            bytes_per_sec: (rate_bps as f64 / 8.0).max(1.0),
            burst: burst as f64,
            tokens: burst as f64,
            last: now,
        }
    }

    /// Changes the rate from now on (tokens already in the bucket stay).
    pub(crate) fn set_rate(&mut self, rate_bps: u64, burst: usize) {
        self.bytes_per_sec = (rate_bps as f64 / 8.0).max(1.0);
        self.burst = burst as f64;
        self.tokens = self.tokens.min(self.burst);
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.bytes_per_sec).min(self.burst);
        self.last = now;
    }

    /// Takes `bytes` from the bucket if they are there.
    pub(crate) fn try_take(&mut self, now: Instant, bytes: usize) -> bool {
        self.refill(now);
        if self.tokens >= bytes as f64 {
            self.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }

    /// Takes `bytes` even if the bucket goes into debt (control messages).
    pub(crate) fn force_take(&mut self, bytes: usize) {
        self.tokens -= bytes as f64;
    }

    /// When `bytes` will be in the bucket.
    pub(crate) fn ready_at(&self, bytes: usize) -> Instant {
        let missing = bytes as f64 - self.tokens;
        if missing <= 0.0 {
            return self.last;
        }
        // Round up, so that at the returned instant the bucket really holds
        // `bytes` (rounding down would spin on a timer that frees nothing).
        let nanos = (missing / self.bytes_per_sec * 1e9).ceil() as u64 + 1;
        self.last + Duration::from_nanos(nanos)
    }
}

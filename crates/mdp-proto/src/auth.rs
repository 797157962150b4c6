//! Packet authentication with a shared key (`--key-file`).
//!
//! With a key, every datagram of either side is *sealed*: bit 7 of its type
//! byte ([`AUTH_FLAG`]) is set and a trailer of [`TRAILER_LEN`] bytes is
//! appended: an 8-byte big-endian counter, then the first 16 bytes of the
//! keyed BLAKE3 hash (`blake3::keyed_hash(key, …)`) of everything before the
//! tag (the datagram with the flag set, then the counter). A receiver with a
//! key drops every datagram whose tag does not match, that is not sealed,
//! or whose counter it has seen before ([`ReplayWindow`]); one without a key
//! drops sealed datagrams and says a key is needed.
//!
//! Counters come from a clock: each sealer's counter is the larger of its
//! previous value + 1 and the Unix time in microseconds, so it never
//! repeats and tracks wall-clock time. A receiver accepts a *new* session
//! only when its counter is within a bound (default 5 minutes) of its own
//! clock: a recording of an old push cannot be replayed later to roll files
//! back. Within a session, a sliding window of 4096 counters per origin (the
//! sender, or a receiver's node id) drops replays.

use crate::limits::{field, AUTH_FLAG, COMMON_HEADER_LEN, TRAILER_LEN};
use std::fmt;

/// Bytes of the tag.
const TAG_LEN: usize = 16;

/// A 256-bit shared key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; 32]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(…)")
    }
}

impl Key {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Key {
        Key(bytes)
    }

    /// Parses a key file's text: 64 hexadecimal digits, surrounding
    /// whitespace and `#` comment lines allowed.
    pub fn parse(text: &str) -> Result<Key, String> {
        let hex: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .flat_map(|l| l.chars())
            .filter(|c| !c.is_whitespace())
            .collect();
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "a key is 64 hexadecimal digits (got {} characters); make one with `mdp-send --gen-key FILE`",
                hex.len()
            ));
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("checked hex digits");
        }
        Ok(Key(out))
    }

    /// The key as 64 lowercase hexadecimal digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn tag(&self, sealed_part: &[u8]) -> [u8; TAG_LEN] {
        let full = blake3::keyed_hash(&self.0, sealed_part);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full.as_bytes()[..TAG_LEN]);
        tag
    }
}

/// The key and a wall clock, for a sender or receiver that authenticates.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// The shared key.
    pub key: Key,
    /// An instant of the caller's clock and the Unix time (µs) it was:
    /// the state machines stay clock-free and compute wall time from it.
    pub clock: (std::time::Instant, u64),
    /// A receiver joins a new session only when its counter is this close
    /// to its own clock (default 5 minutes).
    pub max_skew: std::time::Duration,
}

impl AuthConfig {
    /// `key`, with `now` being Unix time `unix_us`.
    pub fn new(key: Key, now: std::time::Instant, unix_us: u64) -> AuthConfig {
        AuthConfig {
            key,
            clock: (now, unix_us),
            max_skew: std::time::Duration::from_secs(300),
        }
    }

    /// Unix time in microseconds at `now`.
    pub fn unix_us(&self, now: std::time::Instant) -> u64 {
        let (at, unix) = self.clock;
        if now >= at {
            unix + now.duration_since(at).as_micros() as u64
        } else {
            unix.saturating_sub(at.duration_since(now).as_micros() as u64)
        }
    }

    /// True when a new session's `counter` is close enough to `now`.
    pub fn fresh(&self, now: std::time::Instant, counter: u64) -> bool {
        self.unix_us(now).abs_diff(counter) <= self.max_skew.as_micros() as u64
    }
}

/// Why a datagram was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// A key is configured but the datagram is not sealed.
    Unsealed,
    /// Sealed, but no key is configured here.
    NoKey,
    /// Too short to hold a trailer, or the tag does not match.
    BadTag,
}

/// Seals outgoing datagrams with a key and a clock-based counter.
#[derive(Debug)]
pub struct Sealer {
    key: Key,
    counter: u64,
}

impl Sealer {
    /// A sealer for `key`.
    pub fn new(key: Key) -> Sealer {
        Sealer { key, counter: 0 }
    }

    /// Seals the datagram in `buf[start..]` (it must be the last one in
    /// `buf`): sets the flag and appends the trailer. `unix_us` is the
    /// current Unix time in microseconds.
    pub fn seal(&mut self, buf: &mut Vec<u8>, start: usize, unix_us: u64) {
        self.counter = (self.counter + 1).max(unix_us);
        buf[start + field::TYPE] |= AUTH_FLAG;
        buf.extend_from_slice(&self.counter.to_be_bytes());
        let tag = self.key.tag(&buf[start..]);
        buf.extend_from_slice(&tag);
    }
}

/// Checks a received datagram against `key` (`None`: no key configured).
/// Returns the datagram without its trailer (the flag still set; the wire
/// decoder ignores it) and its counter (0 when unsealed and no key).
pub fn open<'a>(key: Option<&Key>, datagram: &'a [u8]) -> Result<(&'a [u8], u64), AuthError> {
    let sealed = datagram.len() > field::TYPE && datagram[field::TYPE] & AUTH_FLAG != 0;
    match (key, sealed) {
        (None, false) => Ok((datagram, 0)),
        (None, true) => Err(AuthError::NoKey),
        (Some(_), false) => Err(AuthError::Unsealed),
        (Some(key), true) => {
            if datagram.len() < COMMON_HEADER_LEN + TRAILER_LEN {
                return Err(AuthError::BadTag);
            }
            let (body, tag) = datagram.split_at(datagram.len() - TAG_LEN);
            // blake3::Hash comparisons are constant-time; so is this one,
            // on the truncated tags.
            let want = key.tag(body);
            let diff = want.iter().zip(tag).fold(0u8, |d, (a, b)| d | (a ^ b));
            if diff != 0 {
                return Err(AuthError::BadTag);
            }
            let (inner, counter) = body.split_at(body.len() - 8);
            let counter = u64::from_be_bytes(counter.try_into().expect("8 bytes"));
            Ok((inner, counter))
        }
    }
}

/// Remembers which counters of one origin were seen: the highest, and a
/// window of the 4096 below it.
#[derive(Clone, Debug, Default)]
pub struct ReplayWindow {
    top: u64,
    bits: Vec<u64>,
}

impl ReplayWindow {
    const WORDS: usize = 64;
    const SPAN: u64 = 64 * Self::WORDS as u64;

    /// True (and remembered) when `counter` is new; false for a replay or a
    /// counter too far below the highest seen.
    pub fn accept(&mut self, counter: u64) -> bool {
        if self.bits.is_empty() {
            self.bits = vec![0; Self::WORDS];
        }
        if counter > self.top {
            if counter - self.top >= Self::SPAN {
                self.bits.iter_mut().for_each(|w| *w = 0);
            } else {
                // Forget the slots the window slides over, a word at a time.
                let mut s = self.top + 1;
                while s <= counter {
                    let slot = s % Self::SPAN;
                    let (word, bit) = ((slot / 64) as usize, slot % 64);
                    let n = (64 - bit).min(counter - s + 1);
                    let mask = if n == 64 {
                        !0
                    } else {
                        ((1u64 << n) - 1) << bit
                    };
                    self.bits[word] &= !mask;
                    s += n;
                }
            }
            self.top = counter;
            let slot = counter % Self::SPAN;
            self.bits[(slot / 64) as usize] |= 1 << (slot % 64);
            return true;
        }
        if self.top - counter >= Self::SPAN {
            return false;
        }
        let slot = counter % Self::SPAN;
        let (word, bit) = ((slot / 64) as usize, 1u64 << (slot % 64));
        if self.bits[word] & bit != 0 {
            return false;
        }
        self.bits[word] |= bit;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Key {
        Key::from_bytes([b; 32])
    }

    #[test]
    fn sealed_datagrams_open_only_with_the_same_key_and_unchanged() {
        let mut s = Sealer::new(key(1));
        let plain = b"md\x04\x10sessionXrest of it";
        let mut buf = plain.to_vec();
        s.seal(&mut buf, 0, 1_000);
        assert_eq!(buf.len(), plain.len() + TRAILER_LEN);
        let (inner, counter) = open(Some(&key(1)), &buf).unwrap();
        assert_eq!(inner.len(), plain.len());
        assert_eq!(inner[3], 0x10 | AUTH_FLAG);
        assert_eq!(counter, 1_000);
        assert_eq!(open(Some(&key(2)), &buf), Err(AuthError::BadTag));
        assert_eq!(open(None, &buf), Err(AuthError::NoKey));
        let mut forged = buf.clone();
        forged[15] ^= 1;
        assert_eq!(open(Some(&key(1)), &forged), Err(AuthError::BadTag));
        assert_eq!(open(Some(&key(1)), plain), Err(AuthError::Unsealed));
        assert_eq!(open(Some(&key(1)), &buf[..20]), Err(AuthError::BadTag));
    }

    #[test]
    fn counters_never_repeat_and_follow_the_clock() {
        let mut s = Sealer::new(key(1));
        let mut seen = Vec::new();
        for now in [500, 500, 500, 400, 10_000] {
            let mut buf = b"md\x04\x10sessionX".to_vec();
            s.seal(&mut buf, 0, now);
            seen.push(open(Some(&key(1)), &buf).unwrap().1);
        }
        assert_eq!(seen, [500, 501, 502, 503, 10_000]);
    }

    #[test]
    fn the_replay_window_takes_each_counter_once() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(100));
        assert!(!w.accept(100));
        assert!(w.accept(99), "late but new");
        assert!(!w.accept(99));
        assert!(w.accept(5000));
        assert!(w.accept(1000), "inside the window");
        assert!(!w.accept(100), "too old: outside the window");
        assert!(w.accept(1_000_000));
        assert!(!w.accept(5000));
    }

    #[test]
    fn keys_parse_from_hex_with_comments() {
        let k = key(0xab);
        let text = format!("# mdp key\n{}\n", k.to_hex());
        assert_eq!(Key::parse(&text).unwrap(), k);
        assert!(Key::parse("abc").unwrap_err().contains("64 hexadecimal"));
        assert!(Key::parse(&"zz".repeat(32)).is_err());
        assert_eq!(format!("{k:?}"), "Key(…)");
    }
}

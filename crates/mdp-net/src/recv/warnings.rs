//! Warnings a receiver gives once, in one line, with their fix: a receive
//! buffer too small for the session's rate, symbols too large for the
//! interface's MTU, packets dropped by authentication.

use mdp_proto::ReceiverStats;

/// Says once, in one line, why packets are being dropped by authentication.
#[derive(Default)]
pub(super) struct AuthWarnings {
    no_key: bool,
    failed: bool,
}

impl AuthWarnings {
    pub(super) fn check(&mut self, st: &ReceiverStats) {
        if st.auth_no_key > 0 && !self.no_key {
            self.no_key = true;
            tracing::warn!(
                "ignoring authenticated packets: this receiver has no key; give it the sender's --key-file"
            );
        }
        if st.auth_failed > 0 && !self.failed {
            self.failed = true;
            tracing::warn!(
                "dropping packets that fail authentication (a sender without a key, or another key): check that both ends use the same --key-file"
            );
        }
    }
}

/// Milliseconds of data at the session rate the receive buffer should
/// absorb while the protocol task is busy (a block decode, a slow write).
pub const BUFFER_MS: u64 = 20;

/// A warning, with its fix, when `granted` bytes of receive buffer cannot
/// hold [`BUFFER_MS`] of data at `rate_bps`.
pub fn buffer_warning(granted: usize, rate_bps: Option<u64>) -> Option<String> {
    let rate = rate_bps?;
    let need = (rate / 8 * BUFFER_MS / 1000) as usize;
    (granted < need).then(|| {
        format!(
            "the kernel granted {} KiB of receive buffer, less than the {} KiB that {} ms at {} Mbit/s need: expect loss; raise it with `sysctl -w net.core.rmem_max={}` (or run as root)",
            granted >> 10,
            need >> 10,
            BUFFER_MS,
            rate / 1_000_000,
            (need * 2).next_power_of_two()
        )
    })
}

/// A warning, with its fix, when a session's `symbol_size` makes DATA
/// datagrams larger than one packet on this receiver's interface (`mtu`):
/// they arrive in IP fragments, a datagram lost with any of them, or not
/// at all where the network between does not carry such frames (a sender
/// on a jumbo-frame segment that this host's link is not).
pub fn mtu_warning(symbol_size: u16, mtu: u32, ipv6: bool, sealed: bool) -> Option<String> {
    let fit = mdp_proto::limits::symbol_size_for_mtu(mtu, ipv6, sealed);
    if fit.is_some_and(|f| symbol_size <= f) {
        return None;
    }
    let fix = match fit {
        Some(f) => format!("ask the sender for `--symbol-size {f}` or less"),
        None => "raise this interface's MTU".to_string(),
    };
    Some(format!(
        "the sender's {symbol_size}-byte symbols do not fit in one packet on this interface, whose MTU is {mtu} bytes: its datagrams arrive in fragments, or not at all; {fix}"
    ))
}

#[cfg(test)]
mod tests {
    use super::{buffer_warning, mtu_warning};

    #[test]
    fn the_mtu_warning_comes_only_when_a_symbol_needs_more_than_a_packet() {
        // 1444 + 28 + 8 + 20 = 1500: fits exactly.
        assert_eq!(mtu_warning(1444, 1500, false, false), None);
        assert_eq!(mtu_warning(1400, 1500, true, true), None);
        assert_eq!(mtu_warning(8944, 9000, false, false), None);
        let w = mtu_warning(1446, 1500, false, false).expect("two bytes too many");
        assert!(
            w.contains("1446-byte symbols")
                && w.contains("MTU is 1500")
                && w.contains("--symbol-size 1444"),
            "{w}"
        );
        // The key's trailer and IPv6's larger header leave less room.
        assert!(mtu_warning(1444, 1500, false, true)
            .unwrap()
            .contains("--symbol-size 1420"));
        assert!(mtu_warning(1444, 1500, true, false)
            .unwrap()
            .contains("--symbol-size 1424"));
        // Nothing fits at all.
        assert!(mtu_warning(16, 68, false, false)
            .unwrap()
            .contains("raise this interface's MTU"));
    }

    #[test]
    fn the_buffer_warning_names_the_fix_only_when_the_buffer_is_too_small() {
        // 1 Gbit/s for 20 ms is 2.5 MB.
        assert_eq!(buffer_warning(4 << 20, Some(1_000_000_000)), None);
        assert_eq!(buffer_warning(4 << 20, None), None, "no session, no rate");
        let w = buffer_warning(1 << 20, Some(1_000_000_000)).expect("too small");
        assert!(w.contains("net.core.rmem_max="), "{w}");
    }
}

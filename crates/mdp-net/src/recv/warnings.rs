//! Warnings a receiver gives once, in one line, with their fix: a receive
//! buffer too small for the session's rate, symbols too large for the
//! interface's MTU, packets dropped by authentication.

use mdp_proto::ReceiverStats;
use std::net::IpAddr;

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

/// What a receiver whose sender is at `sender`, beyond a router, should
/// be told when its feedback cannot follow: `None` when it can (a TTL
/// above 1, unicast replies, a neighbour, loopback).
pub fn off_link_warning(
    ep: &crate::socket::Endpoint,
    sender: IpAddr,
    on_link: Option<bool>,
) -> Option<String> {
    if ep.unicast || ep.ttl > 1 || sender.is_loopback() || on_link != Some(false) {
        return None;
    }
    Some(format!(
        "the sender {sender} is not on this host's network on {}: its push crossed a router, but this receiver's feedback (--ttl 1) cannot, so the sender will not hear it; give --ttl one more than the routers between (2 across one router) and have them route group {} port {} back to the sender (see docs/CROSSING.md)",
        ep.interface,
        ep.group.ip(),
        ep.feedback().port()
    ))
}

#[cfg(test)]
mod tests {
    use super::{buffer_warning, mtu_warning, off_link_warning};
    use crate::socket::Endpoint;
    use std::net::IpAddr;

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

    #[test]
    fn a_sender_beyond_a_router_is_told_only_to_a_receiver_whose_feedback_cannot_follow() {
        let ep = |ttl, unicast| Endpoint {
            group: "239.255.77.1:7400".parse().unwrap(),
            interface: "10.78.2.2".parse().unwrap(),
            ttl,
            index: 0,
            dscp: 0,
            unicast,
        };
        let far: IpAddr = "10.78.1.2".parse().unwrap();
        let w = off_link_warning(&ep(1, false), far, Some(false)).expect("told");
        assert!(
            w.contains("10.78.1.2") && w.contains("--ttl") && w.contains("239.255.77.1 port 7401"),
            "{w}"
        );
        // Its feedback follows: a TTL above 1, unicast replies.
        assert_eq!(off_link_warning(&ep(2, false), far, Some(false)), None);
        assert_eq!(off_link_warning(&ep(1, true), far, Some(false)), None);
        // A neighbour, loopback, or networks unknown: nothing to say.
        assert_eq!(off_link_warning(&ep(1, false), far, Some(true)), None);
        assert_eq!(off_link_warning(&ep(1, false), far, None), None);
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(off_link_warning(&ep(1, false), lo, Some(false)), None);
    }
}

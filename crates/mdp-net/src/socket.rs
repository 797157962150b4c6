//! Multicast sockets.
//!
//! A session uses two UDP ports on one group: the *data port* `P` carries
//! everything the sender sends (DATA, ANNOUNCE, FLUSH, DONE); the *feedback
//! port* `P + 1` carries what receivers send (REGISTER, NACK, STATUS). The
//! sender listens only on the feedback port, so it never reads back its own
//! data stream; receivers listen on both, so they overhear each other's
//! NACKs (suppression). Every socket is pinned to one interface: multicast
//! never follows the default route by accident.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Socket buffer size asked for (the kernel may grant less).
pub const SOCKET_BUFFER: usize = 32 << 20;

/// Where a session lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Multicast group and data port.
    pub group: SocketAddr,
    /// Local address of the interface to send and join on.
    pub interface: IpAddr,
    /// Multicast TTL / hop limit.
    pub ttl: u32,
    /// The interface's index (0: unknown; the kernel picks by address for
    /// IPv4, loopback for `::1`). See [`resolve_interface`].
    pub index: u32,
    /// DSCP code point (0-63) for every packet sent (0: none).
    pub dscp: u8,
    /// Unicast mode, for networks without multicast: the sender sends to
    /// each receiver's address (`--to`) from its feedback port, and
    /// receivers answer to where the data came from. `group` then only
    /// gives the ports.
    pub unicast: bool,
}

impl Endpoint {
    /// The group address on the feedback port.
    pub fn feedback(&self) -> SocketAddr {
        let mut a = self.group;
        a.set_port(self.group.port().wrapping_add(1));
        a
    }

    /// Checks that the group is multicast and the interface matches its family.
    pub fn validate(&self) -> Result<(), String> {
        if !self.unicast && !self.group.ip().is_multicast() {
            return Err(format!(
                "{} is not a multicast address: use one in 239.0.0.0/8 (IPv4) or ff15::/16 (IPv6)",
                self.group.ip()
            ));
        }
        if self.group.is_ipv4() != self.interface.is_ipv4() {
            return Err("--group and --interface must both be IPv4 or both IPv6".into());
        }
        if self.dscp > 63 {
            return Err(
                "--dscp is a 6-bit code point: 0 to 63 (e.g. 10 for AF11, 46 for EF)".into(),
            );
        }
        if self.group.port() == 0 || self.group.port() == u16::MAX {
            return Err(
                "the group port must be 1 to 65534 (the next port carries feedback)".into(),
            );
        }
        Ok(())
    }
}

fn ipv6_index(ep: &Endpoint) -> u32 {
    if ep.index != 0 {
        return ep.index;
    }
    // Unknown: loopback ::1 is interface 1 on Linux; 0 lets the kernel pick.
    match ep.interface {
        IpAddr::V6(a) if a.is_loopback() => 1,
        _ => 0,
    }
}

/// Why no interface has `addr`, and the fix: a loopback address on a host
/// (a fresh network namespace, a container) whose loopback is down gets
/// `ip link set lo up`, which gives it 127.0.0.1 and ::1.
fn missing_address(addr: IpAddr, all: &[crate::sys::Interface]) -> String {
    let down_loopback = all
        .iter()
        .find(|i| i.name == "lo" && !i.up)
        .filter(|_| addr.is_loopback());
    match down_loopback {
        Some(_) => format!(
            "no interface has the address {addr}: the loopback interface lo is down (a fresh network namespace or container?); bring it up with `ip link set lo up` (as root)"
        ),
        None => format!(
            "no interface of this host has the address {addr}: give one of its addresses or an interface name (`ip -br addr` lists them)"
        ),
    }
}

/// Resolves `--interface`: an address of this host, or an interface name.
/// Returns the address to send and join on (of the group's family) and the
/// interface's index; or one line that names what is wrong and the fix.
pub fn resolve_interface(spec: &str, group: SocketAddr) -> Result<(IpAddr, u32), String> {
    let all = crate::sys::interfaces();
    let family = |a: &IpAddr| a.is_ipv4() == group.is_ipv4();
    let (iface, addr) = match spec.parse::<IpAddr>() {
        Ok(addr) => {
            let Some(i) = all.iter().find(|i| i.addrs.contains(&addr)) else {
                return Err(missing_address(addr, &all));
            };
            (i, addr)
        }
        Err(_) => {
            let Some(i) = all.iter().find(|i| i.name == spec) else {
                return Err(format!(
                    "there is no interface named {spec:?}: give an interface name or address (`ip -br addr` lists them)"
                ));
            };
            // For IPv6 any address will do (the index pins the interface);
            // a global one reads better in logs than a link-local one.
            let mut candidates: Vec<&IpAddr> = i.addrs.iter().filter(|a| family(a)).collect();
            candidates.sort_by_key(
                |a| matches!(a, IpAddr::V6(v) if (v.segments()[0] & 0xffc0) == 0xfe80),
            );
            let Some(&&addr) = candidates.first() else {
                return Err(format!(
                    "interface {spec} has no {} address: give it one, or use a {} group",
                    if group.is_ipv4() { "IPv4" } else { "IPv6" },
                    if group.is_ipv4() {
                        "IPv6 (ff15::/16)"
                    } else {
                        "IPv4 (239.0.0.0/8)"
                    }
                ));
            };
            (i, addr)
        }
    };
    if !iface.up {
        return Err(format!(
            "interface {} is down: bring it up with `ip link set {} up`",
            iface.name, iface.name
        ));
    }
    if !iface.multicast {
        return Err(format!(
            "interface {} does not do multicast (no MULTICAST flag): `ip link set {} multicast on`, or pick another --interface",
            iface.name, iface.name
        ));
    }
    Ok((addr, iface.index))
}

/// The MTU of the interface `ep` sends on (by index, else by address);
/// `None` if it is not found or the kernel does not say.
pub fn interface_mtu(ep: &Endpoint) -> Option<u32> {
    crate::sys::interfaces()
        .into_iter()
        .find(|i| {
            if ep.index != 0 {
                i.index == ep.index
            } else {
                i.addrs.contains(&ep.interface)
            }
        })
        .and_then(|i| i.mtu)
}

/// Whether `addr` is on one of the networks of `ep`'s interface (a
/// neighbour, reached without a router); `None` when the interface or its
/// networks are unknown, or it has a single-address network (a /32 or
/// /128: a point-to-point link or a cloud address, whose peers are
/// neighbours without sharing a prefix).
pub fn on_link(ep: &Endpoint, addr: IpAddr) -> Option<bool> {
    let i = crate::sys::interfaces().into_iter().find(|i| {
        if ep.index != 0 {
            i.index == ep.index
        } else {
            i.addrs.contains(&ep.interface)
        }
    })?;
    let whole = |(a, p): &(IpAddr, u8)| *p == if a.is_ipv4() { 32 } else { 128 };
    if i.nets.is_empty() || i.nets.iter().any(whole) {
        return None;
    }
    Some(i.nets.iter().any(|n| crate::sys::in_network(addr, *n)))
}

/// A non-blocking UDP socket of `ipv4`'s family with large buffers (a
/// receiver must absorb bursts while it writes blocks).
fn udp_socket(ipv4: bool) -> io::Result<Socket> {
    let domain = if ipv4 { Domain::IPV4 } else { Domain::IPV6 };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    Ok(s)
}

fn new_socket(ep: &Endpoint) -> io::Result<Socket> {
    let s = udp_socket(ep.group.is_ipv4())?;
    match ep.interface {
        IpAddr::V4(a) => {
            s.set_multicast_if_v4(&a)?;
            s.set_multicast_ttl_v4(ep.ttl)?;
            s.set_multicast_loop_v4(true)?;
        }
        IpAddr::V6(_) => {
            s.set_multicast_if_v6(ipv6_index(ep))?;
            s.set_multicast_hops_v6(ep.ttl)?;
            s.set_multicast_loop_v6(true)?;
        }
    }
    set_dscp(&s, ep)?;
    Ok(s)
}

/// A socket bound to `group_port` of the group and joined on the interface;
/// it also sends to the group through that interface. Several processes on
/// one host may bind the same group and port.
pub fn joined(ep: &Endpoint, port: u16) -> io::Result<std::net::UdpSocket> {
    let s = new_socket(ep)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    match (ep.group.ip(), ep.interface) {
        (IpAddr::V4(g), IpAddr::V4(i)) => {
            s.bind(&SocketAddr::V4(SocketAddrV4::new(g, port)).into())?;
            s.join_multicast_v4(&g, &i)?;
        }
        (IpAddr::V6(g), _) => {
            s.bind(&SocketAddr::V6(SocketAddrV6::new(g, port, 0, 0)).into())?;
            s.join_multicast_v6(&g, ipv6_index(ep))?;
        }
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "group and interface families differ",
            ))
        }
    }
    Ok(s.into())
}

/// Joins `sock` (bound by [`joined`]) to the group on one more interface,
/// so that it takes the session's packets from several networks.
pub fn join_also(sock: &std::net::UdpSocket, ep: &Endpoint) -> io::Result<()> {
    let s = socket2::SockRef::from(sock);
    match (ep.group.ip(), ep.interface) {
        (IpAddr::V4(g), IpAddr::V4(i)) => s.join_multicast_v4(&g, &i),
        (IpAddr::V6(g), _) => s.join_multicast_v6(&g, ipv6_index(ep)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "group and interface families differ",
        )),
    }
}

/// A socket that only sends to the group, through the interface.
pub fn sender(ep: &Endpoint) -> io::Result<std::net::UdpSocket> {
    let s = new_socket(ep)?;
    let local: SocketAddr = match ep.interface {
        IpAddr::V4(a) => SocketAddr::V4(SocketAddrV4::new(a, 0)),
        IpAddr::V6(_) => {
            SocketAddr::V6(SocketAddrV6::new(std::net::Ipv6Addr::UNSPECIFIED, 0, 0, 0))
        }
    };
    s.bind(&local.into())?;
    Ok(s.into())
}

/// Marks what `s` sends with the endpoint's DSCP code point, if any.
fn set_dscp(s: &Socket, ep: &Endpoint) -> io::Result<()> {
    let tos = (ep.dscp as u32) << 2;
    match ep.interface {
        _ if ep.dscp == 0 => Ok(()),
        IpAddr::V4(_) => s.set_tos_v4(tos),
        IpAddr::V6(_) => s.set_tclass_v6(tos),
    }
}

/// Unicast mode: a plain socket bound to `port` of the interface's address
/// (the sender's feedback port, or a receiver's data port).
pub fn unicast(ep: &Endpoint, port: u16) -> io::Result<std::net::UdpSocket> {
    let s = udp_socket(ep.interface.is_ipv4())?;
    set_dscp(&s, ep)?;
    s.bind(&SocketAddr::new(ep.interface, port).into())?;
    Ok(s.into())
}

/// The receive buffer the kernel granted, in bytes.
pub fn recv_buffer(sock: &std::net::UdpSocket) -> usize {
    socket2::SockRef::from(sock).recv_buffer_size().unwrap_or(0)
}

/// A one-line diagnosis for a socket setup error.
pub fn explain(err: &io::Error, ep: &Endpoint) -> String {
    let base = format!(
        "cannot use multicast group {} on interface {}: {err}",
        ep.group, ep.interface
    );
    match err.raw_os_error() {
        Some(19) | Some(99) => format!("{base} (is {} an address of this host?)", ep.interface),
        Some(101) => format!(
            "{base} (no route: on loopback, run `ip route add 224.0.0.0/4 dev lo` or pick the interface with --interface)"
        ),
        Some(98) => format!("{base} (the port is in use by another program; pick another --group port)"),
        _ => base,
    }
}

/// The default group: an administratively scoped IPv4 group.
pub const DEFAULT_GROUP: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(239, 255, 77, 1), 7400));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_resolve_by_name_or_address_or_say_why_not() {
        let group = DEFAULT_GROUP;
        let (addr, index) = resolve_interface("lo", group).expect("lo");
        assert_eq!(addr, IpAddr::from([127, 0, 0, 1]));
        assert!(index > 0);
        assert_eq!(
            resolve_interface("127.0.0.1", group).unwrap(),
            (addr, index)
        );
        let e = resolve_interface("no-such-if0", group).unwrap_err();
        assert!(
            e.contains("no interface named") && e.contains("ip -br addr"),
            "{e}"
        );
        let lo = Endpoint {
            group,
            interface: addr,
            ttl: 1,
            index,
            dscp: 0,
            unicast: false,
        };
        assert!(interface_mtu(&lo).is_some_and(|m| m >= 1500));
        assert_eq!(
            interface_mtu(&Endpoint { index: 0, ..lo }),
            interface_mtu(&lo)
        );
        let e = resolve_interface("203.0.113.7", group).unwrap_err();
        assert!(
            e.contains("no interface of this host has the address"),
            "{e}"
        );
    }

    #[test]
    fn a_loopback_address_on_a_host_whose_loopback_is_down_gets_the_real_fix() {
        let lo = |up| crate::sys::Interface {
            name: "lo".into(),
            index: 1,
            up,
            multicast: true,
            addrs: Vec::new(),
            nets: Vec::new(),
            mtu: Some(65536),
        };
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let e = missing_address(local, &[lo(false)]);
        assert!(
            e.contains("lo is down") && e.contains("ip link set lo up"),
            "{e}"
        );
        let e = missing_address("::1".parse().unwrap(), &[lo(false)]);
        assert!(e.contains("ip link set lo up"), "{e}");
        // Up, or another address: the general message.
        for e in [
            missing_address(local, &[lo(true)]),
            missing_address("192.0.2.1".parse().unwrap(), &[lo(false)]),
        ] {
            assert!(e.contains("`ip -br addr` lists them"), "{e}");
        }
    }

    #[test]
    fn dscp_is_six_bits() {
        let mut ep = Endpoint {
            group: DEFAULT_GROUP,
            interface: IpAddr::from([127, 0, 0, 1]),
            ttl: 1,
            index: 0,
            dscp: 46,
            unicast: false,
        };
        assert!(ep.validate().is_ok());
        ep.dscp = 64;
        assert!(ep.validate().unwrap_err().contains("0 to 63"));
    }
}

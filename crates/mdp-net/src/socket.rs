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
        if !self.group.ip().is_multicast() {
            return Err(format!(
                "{} is not a multicast address: use one in 239.0.0.0/8 (IPv4) or ff15::/16 (IPv6)",
                self.group.ip()
            ));
        }
        if self.group.is_ipv4() != self.interface.is_ipv4() {
            return Err("--group and --interface must both be IPv4 or both IPv6".into());
        }
        if self.group.port() == 0 || self.group.port() == u16::MAX {
            return Err(
                "the group port must be 1 to 65534 (the next port carries feedback)".into(),
            );
        }
        Ok(())
    }
}

fn ipv6_index(interface: IpAddr) -> u32 {
    // Index 0 lets the kernel pick; loopback ::1 is interface 1 on Linux.
    match interface {
        IpAddr::V6(a) if a.is_loopback() => 1,
        _ => 0,
    }
}

fn new_socket(ep: &Endpoint) -> io::Result<Socket> {
    let domain = if ep.group.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    // Large buffers: a receiver must absorb bursts while it writes blocks.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    match ep.interface {
        IpAddr::V4(a) => {
            s.set_multicast_if_v4(&a)?;
            s.set_multicast_ttl_v4(ep.ttl)?;
            s.set_multicast_loop_v4(true)?;
        }
        IpAddr::V6(a) => {
            s.set_multicast_if_v6(ipv6_index(IpAddr::V6(a)))?;
            s.set_multicast_hops_v6(ep.ttl)?;
            s.set_multicast_loop_v6(true)?;
        }
    }
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
        (IpAddr::V6(g), i) => {
            s.bind(&SocketAddr::V6(SocketAddrV6::new(g, port, 0, 0)).into())?;
            s.join_multicast_v6(&g, ipv6_index(i))?;
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

//! The testbed floor: how fast the kernels and the bridge alone carry
//! mdp-sized datagrams from the sender's namespace to the hosts
//! (`cargo xtask blast` and `cargo xtask sink`, run in the namespaces), the
//! bound no tool can beat on this machine.

use super::net::{host, ip, Net};
use super::tools::RUN_LIMIT;
use anyhow::{bail, Context, Result};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

impl Net {
    /// The testbed's own limit: how long the sender's kernel, the bridge and
    /// the receivers' kernels take to carry `bytes` in datagrams of mdp's
    /// size ([`blast_segment`]) from host 0 to a group every other host
    /// joined (`cargo xtask sink`), sent in GSO batches as fast as they go
    /// (`cargo xtask blast` in host 0's namespace). With `read` the hosts
    /// read every datagram (and drop it), as any receiver must, on the same
    /// cores; without, they never read, and no tool that delivers the data
    /// to those hosts can be faster.
    pub fn floor(&self, bytes: u64, read: bool) -> Result<f64> {
        let exe = std::env::current_exe()?;
        let mut sinks = Vec::new();
        for i in 1..self.hosts {
            sinks.push(
                Command::new("ip")
                    .args(["netns", "exec", &host(i)])
                    .arg(&exe)
                    .args(["sink", &ip(i), &RUN_LIMIT.as_secs().to_string()])
                    .args(read.then_some("read"))
                    .stdout(Stdio::null())
                    .spawn()?,
            );
        }
        std::thread::sleep(Duration::from_millis(300));
        let out = Command::new("ip")
            .args(["netns", "exec", &host(0)])
            .arg(&exe)
            .args(["blast", &ip(0), &bytes.to_string()])
            .output();
        for mut s in sinks {
            let _ = s.kill();
            let _ = s.wait();
        }
        let out = out?;
        if !out.status.success() {
            bail!(
                "blast failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    }
}

/// The group `blast` sends to and `sink` joins.
const BLAST_GROUP: std::net::SocketAddrV4 =
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(239, 255, 77, 99), 7999);

/// The `ADDR N` arguments of `sink` and `blast`, and a UDP socket.
fn addr_and_count(
    args: &[String],
    usage: &str,
) -> Result<(std::net::Ipv4Addr, u64, socket2::Socket)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let [addr, n] = args else {
        bail!("usage: {usage}");
    };
    let addr = addr.parse().context("ADDR")?;
    let n = n.parse().with_context(|| usage.to_string())?;
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    Ok((addr, n, sock))
}

/// `cargo xtask sink ADDR SECS [read]`: joins the `blast` group on the
/// interface with ADDR for SECS seconds. Without `read` it never reads:
/// its host's kernel takes every datagram up to the socket, whose buffer
/// then drops it. With `read` it reads everything as a receiver does
/// (`recvmmsg` with GRO into reused slots, a 32 MiB socket buffer) and
/// throws it away.
pub fn sink(args: &[String]) -> Result<()> {
    let usage = "cargo xtask sink ADDR SECS [read]";
    let (read, args) = match args {
        [rest @ .., last] if last == "read" => (true, rest),
        _ => (false, args),
    };
    let (addr, secs, sock) = addr_and_count(args, usage)?;
    sock.set_reuse_address(true)?;
    sock.bind(&BLAST_GROUP.into())?;
    sock.join_multicast_v4(BLAST_GROUP.ip(), &addr)?;
    let until = Instant::now() + Duration::from_secs(secs);
    if !read {
        std::thread::sleep(until - Instant::now());
        return Ok(());
    }
    use std::os::fd::AsRawFd;
    mdp_net::udp::grow_recv_buffer(&sock, 32 << 20);
    let mut rx = mdp_net::udp::BatchReceiver::new(&sock);
    let fd = sock.as_raw_fd();
    while Instant::now() < until {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the call.
        unsafe { libc::poll(&mut pfd, 1, 100) };
        while rx.recv(fd).is_ok() {}
    }
    Ok(())
}

/// Bytes of each `blast` datagram: mdp's DATA datagram on a 1500-byte
/// MTU (its default symbol size there and the DATA header: 1472).
pub fn blast_segment() -> usize {
    let symbol = mdp_proto::limits::symbol_size_for_mtu(1500, false, false).expect("fits");
    mdp_proto::limits::DATA_HEADER_LEN + symbol as usize
}

/// `cargo xtask blast ADDR BYTES`: sends BYTES in [`blast_segment`]-byte datagrams to
/// 239.255.77.99:7999 out of the interface with ADDR, TTL 1, in GSO
/// batches; prints the seconds it took.
pub fn blast(args: &[String]) -> Result<()> {
    use socket2::SockAddr;
    use std::os::fd::AsRawFd;
    let (addr, bytes, sock) = addr_and_count(args, "cargo xtask blast ADDR BYTES")?;
    sock.set_multicast_if_v4(&addr)?;
    sock.set_multicast_ttl_v4(1)?;
    mdp_net::udp::grow_send_buffer(&sock, 32 << 20);
    let to = SockAddr::from(BLAST_GROUP);
    let segment = blast_segment();
    let batch = vec![0x5au8; segment * mdp_net::udp::batch_limit(segment)];
    let mut sender = mdp_net::udp::BatchSender::new(true);
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        if start.elapsed() > RUN_LIMIT {
            bail!("sent only {sent} of {bytes} bytes in {RUN_LIMIT:?}");
        }
        let n = ((bytes - sent) as usize).min(batch.len());
        match sender.send(sock.as_raw_fd(), &to, &batch[..n], segment) {
            Ok(n) => sent += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            // A full device queue: try again, as the tools under test do.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
            Err(e) => return Err(e.into()),
        }
    }
    println!("{:.4}", start.elapsed().as_secs_f64());
    Ok(())
}

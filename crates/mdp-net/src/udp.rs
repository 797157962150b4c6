//! Batched UDP on Linux: many datagrams per system call.
//!
//! Out: a batch of equal-size datagrams to one address goes to the kernel in
//! one `sendmsg` with a `UDP_SEGMENT` control message (GSO: the kernel cuts
//! the buffer into datagrams). The batch is one buffer (`send`) or a
//! [`Gather`] whose datagrams' pieces become the iovecs (`send_gather`:
//! source symbols go from the sender's block cache to the kernel uncopied). Where the kernel or the device refuses GSO
//! (`EIO`, `EINVAL`, `EOPNOTSUPP`, `ENOPROTOOPT`, and `EMSGSIZE` when a
//! datagram does not fit the path's MTU, which GSO cannot fragment) the
//! refusal is remembered and every later batch goes out with `sendmmsg`,
//! one message per datagram, which the kernel fragments if it must.
//!
//! In: `recvmmsg` fills up to [`RECV_BATCH`] reused slots per call; with
//! `UDP_GRO` on, one slot may hold several datagrams of one size glued
//! together, which [`BatchReceiver::for_each`] splits again.
//!
//! Nothing here allocates per datagram: the message headers live on the
//! stack and the receive slots are allocated once.

use mdp_proto::Gather;
use socket2::SockAddr;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, RawFd};
use std::ptr;

/// `SOL_UDP` socket option: segment size for GSO sends.
const UDP_SEGMENT: libc::c_int = 103;
/// `SOL_UDP` socket option: coalesce received datagrams (GRO).
const UDP_GRO: libc::c_int = 104;

/// Most datagrams the kernel cuts from one GSO buffer (`UDP_MAX_SEGMENTS`).
pub const MAX_SEGMENTS: usize = 64;
/// Largest GSO buffer: one IPv4 UDP payload.
pub const MAX_GSO_BYTES: usize = 65_507;
/// Slots filled by one `recvmmsg`.
pub const RECV_BATCH: usize = 32;
/// Bytes per receive slot: a whole GRO super-datagram or any UDP datagram.
const SLOT: usize = 65_536;
/// Control buffer per slot (one `int` message, with room to spare).
const CONTROL: usize = 64;

/// How many datagrams of `segment` bytes fit in one batch.
pub fn batch_limit(segment: usize) -> usize {
    (MAX_GSO_BYTES / segment.max(1)).clamp(1, MAX_SEGMENTS)
}

/// Sends batches of equal-size datagrams; remembers whether GSO works.
#[derive(Debug)]
pub struct BatchSender {
    gso: bool,
    /// Batches sent with GSO, and with sendmmsg.
    pub gso_batches: u64,
    /// Batches sent with sendmmsg (GSO refused or one datagram).
    pub mmsg_batches: u64,
}

impl Default for BatchSender {
    fn default() -> Self {
        BatchSender::new(true)
    }
}

impl BatchSender {
    /// A sender that tries GSO first when `gso` is true.
    pub fn new(gso: bool) -> Self {
        BatchSender {
            gso,
            gso_batches: 0,
            mmsg_batches: 0,
        }
    }

    /// True while GSO is in use.
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// Sends as much of `buf` (datagrams of `segment` bytes, the last one
    /// possibly shorter) as the socket takes now. Returns the bytes taken,
    /// always whole datagrams; `WouldBlock` when it took none.
    pub fn send(
        &mut self,
        fd: RawFd,
        to: &SockAddr,
        buf: &[u8],
        segment: usize,
    ) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let segment = segment.clamp(1, buf.len());
        let mut iovs = [EMPTY_IOV; MAX_SEGMENTS];
        let mut spans = [(0, 0); MAX_SEGMENTS];
        let mut n = 0;
        for chunk in buf.chunks(segment).take(MAX_SEGMENTS) {
            iovs[n] = iov(chunk);
            spans[n] = (n, 1);
            n += 1;
        }
        let sent = self.send_iov(fd, to, &mut iovs, &spans[..n], segment)?;
        Ok(buf.len().min(sent * segment))
    }

    /// Sends datagrams `from..` of `g` (of `segment` bytes, the last one
    /// possibly shorter) as the socket takes them now, each gathered from
    /// its pieces without a copy. Returns how many it took; `WouldBlock`
    /// when none.
    pub fn send_gather(
        &mut self,
        fd: RawFd,
        to: &SockAddr,
        g: &Gather,
        from: usize,
        segment: usize,
    ) -> io::Result<usize> {
        let mut iovs = [EMPTY_IOV; 2 * MAX_SEGMENTS];
        let mut spans = [(0, 0); MAX_SEGMENTS];
        let (mut n, mut m, mut bytes) = (0, 0, 0);
        for i in from..g.len() {
            let pieces = g.pieces(i);
            let len: usize = pieces.iter().map(|p| p.len()).sum();
            if n == MAX_SEGMENTS || (n > 0 && bytes + len > MAX_GSO_BYTES) {
                break;
            }
            let first = m;
            for p in pieces.into_iter().filter(|p| !p.is_empty()) {
                iovs[m] = iov(p);
                m += 1;
            }
            spans[n] = (first, m - first);
            n += 1;
            bytes += len;
        }
        if n == 0 {
            return Ok(0);
        }
        self.send_iov(fd, to, &mut iovs[..m], &spans[..n], segment.max(1))
    }

    /// Sends the datagrams `spans` (each a run of `iovs`) with one GSO
    /// `sendmsg`, or with `sendmmsg` where GSO is off or refused. Returns
    /// the datagrams sent.
    fn send_iov(
        &mut self,
        fd: RawFd,
        to: &SockAddr,
        iovs: &mut [libc::iovec],
        spans: &[(usize, usize)],
        segment: usize,
    ) -> io::Result<usize> {
        if self.gso && spans.len() > 1 {
            match send_gso(fd, to, iovs, segment) {
                Ok(()) => {
                    self.gso_batches += 1;
                    return Ok(spans.len());
                }
                Err(e) if gso_refused(&e) => {
                    tracing::debug!("UDP GSO refused ({e}); sending with sendmmsg from now on");
                    self.gso = false;
                }
                Err(e) => return Err(e),
            }
        }
        self.mmsg_batches += 1;
        send_mmsg(fd, to, iovs, spans)
    }
}

const EMPTY_IOV: libc::iovec = libc::iovec {
    iov_base: ptr::null_mut(),
    iov_len: 0,
};

/// An iovec for `piece`; the kernel only reads through it.
fn iov(piece: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: piece.as_ptr() as *mut libc::c_void,
        iov_len: piece.len(),
    }
}

fn gso_refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO)
            | Some(libc::EINVAL)
            | Some(libc::EOPNOTSUPP)
            | Some(libc::ENOPROTOOPT)
            | Some(libc::EMSGSIZE)
    )
}

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// One `sendmsg` of all of `iovs`, which the kernel cuts into datagrams
/// of `segment` bytes.
fn send_gso(fd: RawFd, to: &SockAddr, iovs: &mut [libc::iovec], segment: usize) -> io::Result<()> {
    // Room for one cmsghdr carrying a u16, aligned as the kernel wants.
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain data; every pointer set below outlives the
    // call, and CMSG_* only touch `control`, whose length we pass.
    unsafe {
        let mut msg: libc::msghdr = zeroed();
        msg.msg_name = to.as_ptr() as *mut libc::c_void;
        msg.msg_namelen = to.len();
        msg.msg_iov = iovs.as_mut_ptr();
        msg.msg_iovlen = iovs.len();
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = libc::CMSG_SPACE(size_of::<u16>() as u32) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
        ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut u16, segment as u16);
        if libc::sendmsg(fd, &msg, 0) < 0 {
            return Err(last_error());
        }
    }
    Ok(())
}

/// One `sendmmsg`, a message per span (`(first iovec, count)`, at most
/// [`MAX_SEGMENTS`]). Returns the messages sent.
fn send_mmsg(
    fd: RawFd,
    to: &SockAddr,
    iovs: &mut [libc::iovec],
    spans: &[(usize, usize)],
) -> io::Result<usize> {
    // SAFETY: a zeroed mmsghdr is valid; each header points at its run of
    // `iovs` (in bounds: the spans were made from it) and at `to`, all
    // alive for the call.
    unsafe {
        let mut msgs: [libc::mmsghdr; MAX_SEGMENTS] = zeroed();
        let n = spans.len().min(MAX_SEGMENTS);
        for (m, &(first, count)) in msgs.iter_mut().zip(&spans[..n]) {
            let h = &mut m.msg_hdr;
            h.msg_name = to.as_ptr() as *mut libc::c_void;
            h.msg_namelen = to.len();
            h.msg_iov = iovs[first..first + count].as_mut_ptr();
            h.msg_iovlen = count;
        }
        let sent = libc::sendmmsg(fd, msgs.as_mut_ptr(), n as libc::c_uint, 0);
        if sent < 0 {
            return Err(last_error());
        }
        Ok(sent as usize)
    }
}

/// Receives datagrams in batches into slots allocated once.
pub struct BatchReceiver {
    slots: Vec<u8>,
    control: Vec<u64>,
    /// Per filled slot: bytes, the GRO segment size (0: one datagram), and
    /// the kernel's arrival time.
    filled: Vec<(usize, usize, Option<std::time::SystemTime>)>,
    /// Per slot: the sender's address.
    names: Vec<libc::sockaddr_storage>,
    gro: bool,
    /// Kernel arrival time of the oldest datagram of the last batch.
    oldest: Option<std::time::SystemTime>,
    /// Datagrams dropped because they did not fit a slot.
    pub truncated: u64,
}

impl std::fmt::Debug for BatchReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchReceiver")
            .field("gro", &self.gro)
            .field("filled", &self.filled.len())
            .finish()
    }
}

impl BatchReceiver {
    /// Slots for one socket; turns GRO and kernel arrival timestamps on
    /// when the kernel has them.
    pub fn new(sock: &impl AsRawFd) -> Self {
        let on = |level, opt| {
            let one: libc::c_int = 1;
            // SAFETY: setsockopt reads `one` for the length given.
            unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    level,
                    opt,
                    &one as *const libc::c_int as *const libc::c_void,
                    size_of::<libc::c_int>() as libc::socklen_t,
                ) == 0
            }
        };
        let gro = on(libc::SOL_UDP, UDP_GRO);
        on(libc::SOL_SOCKET, libc::SO_TIMESTAMPNS);
        BatchReceiver {
            slots: vec![0; SLOT * RECV_BATCH],
            control: vec![0; CONTROL / 8 * RECV_BATCH],
            filled: Vec::with_capacity(RECV_BATCH),
            // SAFETY: an all-zero sockaddr_storage is a valid (AF_UNSPEC) value.
            names: vec![unsafe { zeroed() }; RECV_BATCH],
            gro,
            oldest: None,
            truncated: 0,
        }
    }

    /// True when the kernel coalesces datagrams for this socket.
    pub fn gro(&self) -> bool {
        self.gro
    }

    /// Reads what is queued (up to [`RECV_BATCH`] slots) without blocking.
    /// Returns the number of slots filled; `WouldBlock` when none.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.filled.clear();
        self.oldest = None;
        // SAFETY: each header points at its own slot and control area,
        // both inside buffers that live as long as `self`.
        let got = unsafe {
            let mut iovs: [libc::iovec; RECV_BATCH] = zeroed();
            let mut msgs: [libc::mmsghdr; RECV_BATCH] = zeroed();
            let base = self.slots.as_mut_ptr();
            let cbase = self.control.as_mut_ptr() as *mut u8;
            let nbase = self.names.as_mut_ptr();
            for i in 0..RECV_BATCH {
                iovs[i] = libc::iovec {
                    iov_base: base.add(i * SLOT) as *mut libc::c_void,
                    iov_len: SLOT,
                };
                let h = &mut msgs[i].msg_hdr;
                h.msg_iov = &mut iovs[i];
                h.msg_iovlen = 1;
                h.msg_control = cbase.add(i * CONTROL) as *mut libc::c_void;
                h.msg_controllen = CONTROL;
                h.msg_name = nbase.add(i) as *mut libc::c_void;
                h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            }
            let got = libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                RECV_BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                ptr::null_mut(),
            );
            if got < 0 {
                return Err(last_error());
            }
            for m in &msgs[..got as usize] {
                let h = &m.msg_hdr;
                if h.msg_flags & libc::MSG_TRUNC != 0 {
                    self.truncated += 1;
                    self.filled.push((0, 0, None));
                    continue;
                }
                let mut segment = 0;
                let mut arrived = None;
                let mut c = libc::CMSG_FIRSTHDR(h);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                        segment =
                            ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int) as usize;
                    }
                    if (*c).cmsg_level == libc::SOL_SOCKET
                        && (*c).cmsg_type == libc::SCM_TIMESTAMPNS
                    {
                        let ts = ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                        let at = std::time::UNIX_EPOCH
                            + std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
                        self.oldest = Some(self.oldest.map_or(at, |o| o.min(at)));
                        arrived = Some(at);
                    }
                    c = libc::CMSG_NXTHDR(h, c);
                }
                self.filled.push((m.msg_len as usize, segment, arrived));
            }
            got as usize
        };
        Ok(got)
    }

    /// How long the oldest datagram of the last batch waited in the
    /// socket's queue (from the kernel's arrival timestamp), if known.
    pub fn queue_delay(&self) -> Option<std::time::Duration> {
        let oldest = self.oldest?;
        Some(
            std::time::SystemTime::now()
                .duration_since(oldest)
                .unwrap_or_default(),
        )
    }

    /// Calls `f` with every datagram of the last [`BatchReceiver::recv`] and
    /// the moment it arrived, on the clock of `now` (the moment of the
    /// read): the kernel's timestamp when there is one, else `now`. A
    /// receiver that is behind its socket thus still sees when each
    /// datagram reached the host.
    pub fn for_each(
        &mut self,
        now: std::time::Instant,
        mut f: impl FnMut(std::time::Instant, &mut [u8]),
    ) {
        self.for_each_from(now, |at, _, d| f(at, d));
    }

    /// [`BatchReceiver::for_each`], with the index of the datagram's slot
    /// for [`BatchReceiver::source`]. Each datagram is handed over mutable,
    /// so that it can be decrypted where it lies.
    pub fn for_each_from(
        &mut self,
        now: std::time::Instant,
        mut f: impl FnMut(std::time::Instant, usize, &mut [u8]),
    ) {
        let wall = std::time::SystemTime::now();
        for (i, &(len, segment, arrived)) in self.filled.iter().enumerate() {
            let at = arrived
                .and_then(|a| wall.duration_since(a).ok())
                .and_then(|ago| now.checked_sub(ago))
                .unwrap_or(now);
            let slot = &mut self.slots[i * SLOT..i * SLOT + len];
            if segment == 0 || segment >= len {
                if len > 0 {
                    f(at, i, slot);
                }
            } else {
                slot.chunks_mut(segment).for_each(|d| f(at, i, d));
            }
        }
    }

    /// The sender of the datagrams in `slot` of the last batch.
    pub fn source(&self, slot: usize) -> Option<std::net::SocketAddr> {
        let sa = self.names.get(slot)?;
        // SAFETY: the kernel wrote a sockaddr of the family it names into
        // the storage, which is large and aligned enough for any of them.
        unsafe {
            match sa.ss_family as libc::c_int {
                libc::AF_INET => {
                    let v4 = &*(sa as *const _ as *const libc::sockaddr_in);
                    Some(std::net::SocketAddr::from((
                        u32::from_be(v4.sin_addr.s_addr).to_be_bytes(),
                        u16::from_be(v4.sin_port),
                    )))
                }
                libc::AF_INET6 => {
                    let v6 = &*(sa as *const _ as *const libc::sockaddr_in6);
                    Some(std::net::SocketAddr::from((
                        v6.sin6_addr.s6_addr,
                        u16::from_be(v6.sin6_port),
                    )))
                }
                _ => None,
            }
        }
    }
}

/// Asks for `bytes` of receive buffer, beyond `net.core.rmem_max` when
/// privileged (`SO_RCVBUFFORCE`); returns what the kernel granted.
pub fn grow_recv_buffer(sock: &impl AsRawFd, bytes: usize) -> usize {
    grow(sock, bytes, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF)
}

/// Asks for `bytes` of send buffer, as [`grow_recv_buffer`] does.
pub fn grow_send_buffer(sock: &impl AsRawFd, bytes: usize) -> usize {
    grow(sock, bytes, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)
}

fn grow(sock: &impl AsRawFd, bytes: usize, force: libc::c_int, plain: libc::c_int) -> usize {
    let fd = sock.as_raw_fd();
    let want = bytes.min(i32::MAX as usize) as libc::c_int;
    let set = |opt| {
        // SAFETY: setsockopt reads `want` for the length given.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &want as *const libc::c_int as *const libc::c_void,
                size_of::<libc::c_int>() as libc::socklen_t,
            ) == 0
        }
    };
    if !set(force) {
        set(plain);
    }
    let mut got: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `got`.
    let ok = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            plain,
            &mut got as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        ) == 0
    };
    // Linux reports twice the usable size (it counts bookkeeping).
    if ok {
        got as usize / 2
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    fn pair() -> (UdpSocket, UdpSocket) {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        (tx, rx)
    }

    fn collect(rx: &UdpSocket, r: &mut BatchReceiver, want: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for _ in 0..1000 {
            match r.recv(rx.as_raw_fd()) {
                Ok(_) => r.for_each(std::time::Instant::now(), |_, d| out.push(d.to_vec())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if out.len() >= want {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        }
        out
    }

    fn batch(count: usize, segment: usize, last: usize) -> Vec<u8> {
        let mut buf = Vec::new();
        for i in 0..count {
            let len = if i + 1 == count { last } else { segment };
            buf.extend(std::iter::repeat_n(i as u8, len));
        }
        buf
    }

    fn check(gso: bool) {
        let (tx, rx) = pair();
        let mut r = BatchReceiver::new(&rx);
        let mut s = BatchSender::new(gso);
        let to = SockAddr::from(rx.local_addr().unwrap());
        let buf = batch(40, 1400, 900);
        let sent = s.send(tx.as_raw_fd(), &to, &buf, 1400).unwrap();
        assert_eq!(sent, buf.len());
        let got = collect(&rx, &mut r, 40);
        assert_eq!(got.len(), 40, "every datagram arrives, split again");
        for (i, d) in got.iter().enumerate() {
            let len = if i == 39 { 900 } else { 1400 };
            assert_eq!(d.len(), len);
            assert!(d.iter().all(|b| *b == i as u8), "datagram {i} intact");
        }
        // Loopback takes UDP GSO on every kernel since 4.18: a GSO run that
        // fell back to sendmmsg would hide a broken GSO path.
        assert_eq!(s.gso_batches, u64::from(gso), "one GSO send for the batch");
        assert_eq!(s.mmsg_batches, u64::from(!gso));
        assert_eq!(r.truncated, 0);
    }

    /// A gathered batch: 40 datagrams, each an 8-byte header of its own
    /// then a range of one shared block, except every fifth, whose payload
    /// is copied; the last one shorter.
    fn check_gather(gso: bool) {
        let (tx, rx) = pair();
        let mut r = BatchReceiver::new(&rx);
        let mut s = BatchSender::new(gso);
        let to = SockAddr::from(rx.local_addr().unwrap());
        let block: std::sync::Arc<Vec<u8>> = (0..40 * 1392)
            .map(|i| (i / 7) as u8)
            .collect::<Vec<_>>()
            .into();
        let mut g = Gather::default();
        let mut want = Vec::new();
        for i in 0..40usize {
            let len = if i == 39 { 900 } else { 1392 };
            let range = i * 1392..i * 1392 + len;
            let mut own = vec![i as u8; 8];
            let mut datagram = own.clone();
            datagram.extend_from_slice(&block[range.clone()]);
            if i % 5 == 0 {
                own.extend_from_slice(&block[range]);
                g.push(&own, None);
            } else {
                g.push(&own, Some((block.clone(), range)));
            }
            want.push(datagram);
        }
        let mut from = 0;
        while from < g.len() {
            from += s.send_gather(tx.as_raw_fd(), &to, &g, from, 1400).unwrap();
        }
        let got = collect(&rx, &mut r, 40);
        assert_eq!(got.len(), 40, "every datagram arrives, split again");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(g == w, "datagram {i} differs");
        }
        assert_eq!(s.gso_batches, u64::from(gso), "one GSO send for the batch");
        assert_eq!(s.mmsg_batches, u64::from(!gso));
    }

    #[test]
    fn gathered_batches_arrive_whole_and_in_order_with_gso() {
        check_gather(true);
    }

    #[test]
    fn gathered_batches_arrive_whole_and_in_order_with_sendmmsg() {
        check_gather(false);
    }

    #[test]
    fn batches_arrive_whole_and_in_order_with_gso() {
        check(true);
    }

    #[test]
    fn batches_arrive_whole_and_in_order_with_sendmmsg() {
        check(false);
    }

    #[test]
    fn datagrams_carry_their_arrival_time_not_the_time_they_were_read() {
        use std::time::{Duration, Instant};
        // On a loaded machine the kernel may stamp a loopback datagram
        // late (its receive softirq deferred to ksoftirqd): one of a few
        // tries must show the queueing, and none may be stamped before it
        // was sent. Read times instead of arrival times fail every try.
        let mut queued = Vec::new();
        for _ in 0..5 {
            let (tx, rx) = pair();
            let mut r = BatchReceiver::new(&rx);
            let before = Instant::now();
            tx.send_to(b"one", rx.local_addr().unwrap()).unwrap();
            // The datagram waits in the socket queue, as behind a backlog.
            std::thread::sleep(Duration::from_millis(30));
            let mut seen = Vec::new();
            for _ in 0..100 {
                if r.recv(rx.as_raw_fd()).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let now = Instant::now();
            r.for_each(now, |at, d| seen.push((at, d.to_vec())));
            assert_eq!(seen.len(), 1);
            let (at, d) = &seen[0];
            assert_eq!(d, b"one");
            assert!(
                *at + Duration::from_millis(5) >= before,
                "not before it was sent"
            );
            assert_eq!(
                r.source(0),
                Some(tx.local_addr().unwrap()),
                "sender address"
            );
            let waited = r.queue_delay().expect("kernel timestamp");
            if *at <= now - Duration::from_millis(20) && waited >= Duration::from_millis(20) {
                return;
            }
            queued.push((now - *at, waited));
        }
        panic!("no datagram carried its arrival time (age at the read, queue delay): {queued:?}");
    }

    #[test]
    fn batch_limit_fits_one_gso_buffer() {
        assert_eq!(batch_limit(1428), 45);
        assert_eq!(batch_limit(100), MAX_SEGMENTS);
        assert_eq!(batch_limit(70_000), 1);
        assert!(batch_limit(1428) * 1428 <= MAX_GSO_BYTES);
    }

    #[test]
    fn buffers_grow_as_far_as_allowed() {
        let (tx, rx) = pair();
        let got = grow_recv_buffer(&rx, 8 << 20);
        assert!(got >= 64 << 10, "granted {got}");
        assert!(grow_send_buffer(&tx, 1 << 20) >= 64 << 10);
    }
}

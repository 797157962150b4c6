//! The receiver's sockets: the data socket (joined on every interface), the
//! feedback socket it overhears other receivers on, and a sending socket
//! per further interface for its own feedback.

use super::{RecvError, RecvOptions};
use crate::socket::{self, Endpoint};
use crate::udp::{self, BatchReceiver};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use tokio::net::UdpSocket;

/// The sockets of a receiver, open for its whole run.
pub(super) struct RecvSockets {
    /// DATA and control from the sender.
    pub(super) data: UdpSocket,
    pub(super) data_fd: RawFd,
    /// Reads `data` in batches.
    pub(super) batch: BatchReceiver,
    /// Receive buffer the kernel granted `data`.
    pub(super) granted: usize,
    /// Feedback of other receivers (and ours out, in multicast mode).
    pub(super) feedback: UdpSocket,
    /// Where feedback goes in multicast mode.
    pub(super) feedback_addr: SocketAddr,
    /// Unicast mode: the data socket again, to answer the sender from.
    pub(super) reply: Option<UdpSocket>,
    /// A sending socket on each further interface, for feedback.
    pub(super) feedback_out: Vec<UdpSocket>,
}

impl RecvSockets {
    /// Checks the endpoints of `opts` and opens the sockets.
    pub(super) fn open(opts: &RecvOptions) -> Result<RecvSockets, RecvError> {
        let ep = opts.endpoint;
        ep.validate().map_err(RecvError::Config)?;
        let explain = |e: io::Error| RecvError::Socket(socket::explain(&e, &ep));
        if ep.unicast && !opts.also.is_empty() {
            return Err(RecvError::Config(
                "unicast mode takes pushes on one --interface".into(),
            ));
        }
        let data = if ep.unicast {
            socket::unicast(&ep, ep.group.port()).map_err(explain)?
        } else {
            socket::joined(&ep, ep.group.port()).map_err(explain)?
        };
        // The same group on the other interfaces: joined by the same sockets
        // (the state machine discards the duplicates), and a sending socket
        // each for feedback.
        let mut feedback_out = Vec::new();
        for other in &opts.also {
            other.validate().map_err(RecvError::Config)?;
            let explain = |e: io::Error| RecvError::Socket(socket::explain(&e, other));
            socket::join_also(&data, other).map_err(explain)?;
            feedback_out.push(UdpSocket::from_std(
                socket::sender(other).map_err(explain)?,
            )?);
        }
        // Unicast: feedback goes back from the data socket to the sender.
        let reply = if ep.unicast {
            Some(UdpSocket::from_std(data.try_clone()?)?)
        } else {
            None
        };
        let granted = udp::grow_recv_buffer(&data, opts.socket_buffer);
        let batch = BatchReceiver::new(&data);
        let data = UdpSocket::from_std(data)?;
        let data_fd = data.as_raw_fd();
        let feedback_addr = ep.feedback();
        // Unicast has no group to overhear other receivers on: a socket that
        // never receives anything keeps the loop the same.
        let feedback = if ep.unicast {
            socket::unicast(&ep, 0).map_err(explain)?
        } else {
            socket::joined(&ep, feedback_addr.port()).map_err(explain)?
        };
        for other in &opts.also {
            socket::join_also(&feedback, other)
                .map_err(|e| RecvError::Socket(socket::explain(&e, other)))?;
        }
        let feedback = UdpSocket::from_std(feedback)?;
        Ok(RecvSockets {
            data,
            data_fd,
            batch,
            granted,
            feedback,
            feedback_addr,
            reply,
            feedback_out,
        })
    }
}

/// The smallest MTU of the interfaces a receiver takes pushes on.
pub(super) fn smallest_mtu(opts: &RecvOptions) -> Option<u32> {
    std::iter::once(&opts.endpoint)
        .chain(&opts.also)
        .filter_map(|ep: &Endpoint| socket::interface_mtu(ep))
        .min()
}

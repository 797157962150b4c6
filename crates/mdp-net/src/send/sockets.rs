//! The sender's sockets: one sending and one feedback socket per interface
//! (one socket for both in unicast mode), set up and checked before the
//! push starts.

use super::SendError;
use crate::socket::{self, Endpoint};
use crate::udp;
use std::io;
use std::net::SocketAddr;
use tokio::net::UdpSocket;

/// The sockets of one push.
pub(super) struct SendSockets {
    /// One sending socket per interface.
    pub(super) datas: Vec<UdpSocket>,
    /// Where each datagram goes: the group, or each `--to` in unicast mode.
    pub(super) targets: Vec<socket2::SockAddr>,
    /// The feedback sockets, for the runtime's readiness.
    pub(super) feedbacks: Vec<UdpSocket>,
    /// The same feedback sockets, read directly at the top of each turn.
    pub(super) feedback_now: Vec<std::net::UdpSocket>,
}

/// Checks the settings of `endpoints` and `destinations`; returns the first
/// endpoint, the one the push is named by.
pub(super) fn check(
    endpoints: &[Endpoint],
    destinations: &[SocketAddr],
) -> Result<Endpoint, SendError> {
    let Some(&endpoint) = endpoints.first() else {
        return Err(SendError::Config("no --interface to send on".into()));
    };
    for ep in endpoints {
        ep.validate().map_err(SendError::Config)?;
    }
    if endpoint.unicast && endpoints.len() > 1 {
        return Err(SendError::Config(
            "unicast mode (--to) sends on one --interface".into(),
        ));
    }
    if endpoint.unicast && destinations.is_empty() {
        return Err(SendError::Config(
            "unicast mode needs at least one --to HOST:PORT".into(),
        ));
    }
    Ok(endpoint)
}

/// The sending socket of the first endpoint, and in unicast mode the same
/// socket again for the feedback. Opened before the others so that the
/// batch limit can be taken from it.
pub(super) fn open_first(
    endpoint: &Endpoint,
    send_buffer: usize,
) -> Result<(std::net::UdpSocket, Option<std::net::UdpSocket>), SendError> {
    let explain = |e: io::Error| SendError::Socket(socket::explain(&e, endpoint));
    let feedback_port = endpoint.feedback().port();
    // Unicast: one socket, on the feedback port, sends the data and takes
    // the feedback (receivers answer to where the data came from).
    let data = if endpoint.unicast {
        socket::unicast(endpoint, feedback_port).map_err(explain)?
    } else {
        socket::sender(endpoint).map_err(explain)?
    };
    udp::grow_send_buffer(&data, send_buffer);
    let unicast_feedback = if endpoint.unicast {
        Some(data.try_clone()?)
    } else {
        None
    };
    Ok((data, unicast_feedback))
}

impl SendSockets {
    /// The remaining sockets: the first endpoint's feedback socket (unless
    /// unicast mode gave one, `unicast_feedback`) and a sending and a
    /// feedback socket on each other endpoint.
    pub(super) fn open(
        endpoints: &[Endpoint],
        destinations: &[SocketAddr],
        data: UdpSocket,
        unicast_feedback: Option<std::net::UdpSocket>,
        send_buffer: usize,
    ) -> Result<SendSockets, SendError> {
        let endpoint = &endpoints[0];
        let explain = |e: io::Error| SendError::Socket(socket::explain(&e, endpoint));
        let feedback_port = endpoint.feedback().port();
        let feedback = match unicast_feedback {
            Some(f) => f,
            None => socket::joined(endpoint, feedback_port).map_err(explain)?,
        };
        // The other networks: a sending and a feedback socket each.
        let mut datas = vec![data];
        let mut feedbacks = vec![feedback];
        for ep in &endpoints[1..] {
            let explain = |e: io::Error| SendError::Socket(socket::explain(&e, ep));
            let d = socket::sender(ep).map_err(explain)?;
            udp::grow_send_buffer(&d, send_buffer);
            datas.push(UdpSocket::from_std(d)?);
            feedbacks.push(socket::joined(ep, feedback_port).map_err(explain)?);
        }
        let feedback_now: Vec<std::net::UdpSocket> = feedbacks
            .iter()
            .map(|f| f.try_clone())
            .collect::<io::Result<_>>()?;
        let feedbacks: Vec<UdpSocket> = feedbacks
            .into_iter()
            .map(UdpSocket::from_std)
            .collect::<io::Result<_>>()?;
        let targets = if endpoint.unicast {
            destinations.iter().map(|&d| d.into()).collect()
        } else {
            vec![endpoint.group.into()]
        };
        Ok(SendSockets {
            datas,
            targets,
            feedbacks,
            feedback_now,
        })
    }
}

//! `mdp-recv --metrics ADDR`: the receiver's counters in Prometheus's text
//! format (version 0.0.4), served over HTTP at `/metrics` by a thread of
//! its own.
//!
//! The receive loop only updates a [`Metrics`] under a mutex (a few
//! additions per push and one store per progress notice); the thread
//! renders on demand. A client is served one at a time, with 2-second read
//! and write timeouts and at most 8 KiB of request read, so a slow or
//! hostile client can delay a scrape but cannot grow memory or stall the
//! receiver. There is no authentication: bind it to loopback or a
//! management address (docs/SERVICE.md).

use crate::hook::HookResult;
use mdp_proto::{ReceiverStats, SessionOutcome};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// The counters, shared between the receive loop and the HTTP thread.
#[derive(Clone, Debug)]
pub struct Metrics {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    node: String,
    pushes_complete: u64,
    pushes_incomplete: u64,
    received_bytes: u64,
    files_placed: u64,
    files_failed: u64,
    blocks_rejected: u64,
    auth_failed: u64,
    hooks_ok: u64,
    hooks_failed: u64,
    last_push_end: Option<f64>,
    last_complete_push_end: Option<f64>,
    /// The push in progress: bytes received and in all.
    current: Option<(u64, u64)>,
}

/// The longest request read before it is answered or dropped.
const MAX_REQUEST: usize = 8 << 10;

impl Metrics {
    /// Binds `addr` and serves `/metrics` from a thread; the error names
    /// the address (in use, not local, no permission).
    pub fn serve(addr: SocketAddr, node: &str) -> anyhow::Result<Metrics> {
        let listener = TcpListener::bind(addr).map_err(|e| {
            anyhow::anyhow!("--metrics {addr}: cannot listen: {e} (give a free local address and port, e.g. 127.0.0.1:9477)")
        })?;
        let metrics = Metrics {
            state: Arc::new(Mutex::new(State {
                node: node.to_string(),
                ..State::default()
            })),
        };
        let served = metrics.clone();
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    match conn {
                        Ok(conn) => {
                            let _ = served.answer(conn);
                        }
                        // Out of descriptors, say: no busy loop.
                        Err(_) => std::thread::sleep(Duration::from_millis(100)),
                    }
                }
            })?;
        Ok(metrics)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while the lock was held leaves plain counters:
        // still worth serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A push's manifest arrived: `total` file bytes to come.
    pub fn push_started(&self, total: u64) {
        self.state().current = Some((0, total));
    }

    /// `bytes` of the push in progress have been received.
    pub fn progress(&self, bytes: u64) {
        if let Some((done, _)) = &mut self.state().current {
            *done = bytes;
        }
    }

    /// A push ended.
    pub fn push_finished(&self, o: &SessionOutcome, s: &ReceiverStats) {
        let mut st = self.state();
        let now = unix_now();
        let (received, _) = st.current.take().unwrap_or_default();
        st.received_bytes += received;
        st.files_placed += u64::from(o.verified);
        st.files_failed += o.failed.len() as u64;
        st.blocks_rejected += s.blocks_rejected;
        st.auth_failed += s.auth_failed;
        st.last_push_end = Some(now);
        if o.complete {
            st.pushes_complete += 1;
            st.last_complete_push_end = Some(now);
        } else {
            st.pushes_incomplete += 1;
        }
    }

    /// The push hook ended (`None`: none ran).
    pub fn hook_done(&self, hook: Option<&HookResult>) {
        let mut st = self.state();
        match hook {
            Some(h) if h.ok() => st.hooks_ok += 1,
            Some(_) => st.hooks_failed += 1,
            None => {}
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let st = self.state();
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, value) in samples {
                out.push_str(&format!("{name}{labels} {value}\n"));
            }
        };
        let info = format!(
            "{{version=\"{}\",node=\"{}\"}}",
            env!("CARGO_PKG_VERSION"),
            escape(&st.node)
        );
        family(
            "mdp_recv_info",
            "gauge",
            "This receiver: its version and node name.",
            &[(&info, 1.0)],
        );
        family(
            "mdp_recv_pushes_total",
            "counter",
            "Pushes that ended, by outcome (complete: every file verified and placed).",
            &[
                ("{outcome=\"complete\"}", st.pushes_complete as f64),
                ("{outcome=\"incomplete\"}", st.pushes_incomplete as f64),
            ],
        );
        let counters: [(&str, &str, u64); 5] = [
            (
                "mdp_recv_received_bytes_total",
                "File bytes received in pushes that ended.",
                st.received_bytes,
            ),
            (
                "mdp_recv_files_placed_total",
                "Files verified and placed.",
                st.files_placed,
            ),
            (
                "mdp_recv_files_failed_total",
                "Files that failed (hash, I/O, refused).",
                st.files_failed,
            ),
            (
                "mdp_recv_blocks_rejected_total",
                "Blocks rebuilt that did not match their hash, received again.",
                st.blocks_rejected,
            ),
            (
                "mdp_recv_auth_failed_total",
                "Datagrams that failed authentication.",
                st.auth_failed,
            ),
        ];
        for (name, help, value) in counters {
            family(name, "counter", help, &[("", value as f64)]);
        }
        family(
            "mdp_recv_hook_runs_total",
            "counter",
            "Push hooks (--exec) that ended, by result (failed: non-zero exit, killed or not started).",
            &[
                ("{result=\"ok\"}", st.hooks_ok as f64),
                ("{result=\"failed\"}", st.hooks_failed as f64),
            ],
        );
        let mut times = Vec::new();
        if let Some(t) = st.last_push_end {
            times.push((
                "mdp_recv_last_push_timestamp_seconds",
                "When the last push ended (Unix time).",
                t,
            ));
        }
        if let Some(t) = st.last_complete_push_end {
            times.push((
                "mdp_recv_last_complete_push_timestamp_seconds",
                "When the last complete push ended (Unix time).",
                t,
            ));
        }
        for (name, help, t) in times {
            family(name, "gauge", help, &[("", t)]);
        }
        let (done, total) = st.current.unwrap_or_default();
        family(
            "mdp_recv_push_in_progress",
            "gauge",
            "1 while a push is being received.",
            &[("", f64::from(u8::from(st.current.is_some())))],
        );
        family(
            "mdp_recv_push_received_bytes",
            "gauge",
            "File bytes of the push in progress received so far.",
            &[("", done as f64)],
        );
        family(
            "mdp_recv_push_total_bytes",
            "gauge",
            "File bytes of the push in progress.",
            &[("", total as f64)],
        );
        out
    }

    /// Answers one connection: `GET /metrics` with the text, anything else
    /// with an error status.
    fn answer(&self, mut conn: TcpStream) -> io::Result<()> {
        conn.set_read_timeout(Some(Duration::from_secs(2)))?;
        conn.set_write_timeout(Some(Duration::from_secs(2)))?;
        let mut request = Vec::with_capacity(1024);
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf)?;
            if n == 0 || request.len() + n > MAX_REQUEST {
                return respond(&mut conn, "400 Bad Request", "bad request\n");
            }
            request.extend_from_slice(&buf[..n]);
        }
        let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
        let mut words = line.split(|&b| b == b' ');
        let (method, path) = (
            words.next().unwrap_or_default(),
            words.next().unwrap_or_default(),
        );
        match (method, path) {
            (b"GET", b"/metrics") => respond(&mut conn, "200 OK", &self.render()),
            (b"GET", _) => respond(
                &mut conn,
                "404 Not Found",
                "mdp-recv serves /metrics only\n",
            ),
            _ => respond(&mut conn, "405 Method Not Allowed", "GET /metrics\n"),
        }
    }
}

fn respond(conn: &mut TcpStream, status: &str, body: &str) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(body.as_bytes())
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_millis() as f64) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdp_proto::{ObjectId, SessionId};

    fn scrape(addr: SocketAddr, request: &str) -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn counts_pushes_hooks_and_progress_and_serves_them() {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let m = Metrics::serve(addr, "web\"1").unwrap();
        m.push_started(1000);
        m.progress(400);
        let text = scrape(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("\nmdp_recv_push_in_progress 1\n"), "{text}");
        assert!(
            text.contains("\nmdp_recv_push_received_bytes 400\n"),
            "{text}"
        );
        assert!(
            text.contains("mdp_recv_info{version=\"") && text.contains("node=\"web\\\"1\"} 1"),
            "{text}"
        );
        assert!(
            !text.contains("mdp_recv_last_push_timestamp_seconds"),
            "{text}"
        );
        m.progress(1000);
        let outcome = SessionOutcome {
            session: SessionId(1),
            complete: false,
            problem: None,
            verified: 3,
            files: 4,
            failed: vec![(ObjectId(4), mdp_proto::wire::FailReason::Io)],
            manifest: None,
            hook: None,
        };
        let stats = ReceiverStats {
            blocks_rejected: 2,
            ..ReceiverStats::default()
        };
        m.push_finished(&outcome, &stats);
        m.hook_done(Some(&HookResult {
            command: "false".into(),
            exit_code: Some(1),
            error: None,
            secs: 0.1,
        }));
        let text = m.render();
        for line in [
            "mdp_recv_pushes_total{outcome=\"incomplete\"} 1",
            "mdp_recv_pushes_total{outcome=\"complete\"} 0",
            "mdp_recv_received_bytes_total 1000",
            "mdp_recv_files_placed_total 3",
            "mdp_recv_files_failed_total 1",
            "mdp_recv_blocks_rejected_total 2",
            "mdp_recv_hook_runs_total{result=\"failed\"} 1",
            "mdp_recv_push_in_progress 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        assert!(
            text.contains("\nmdp_recv_last_push_timestamp_seconds 1"),
            "{text}"
        );
        assert!(!text.contains("last_complete_push"), "{text}");
        assert!(scrape(addr, "GET / HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(scrape(addr, "POST /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 405"));
        // A request that never ends is cut off, and the next is served.
        let mut hog = TcpStream::connect(addr).unwrap();
        hog.write_all(&[b'a'; MAX_REQUEST + 10]).unwrap();
        let mut reply = String::new();
        let _ = hog.read_to_string(&mut reply);
        assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
        assert!(
            scrape(addr, "GET /metrics HTTP/1.1\r\n\r\n").contains("mdp_recv_files_placed_total 3")
        );
    }
}

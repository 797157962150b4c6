//! The world's settings and each receiver's fate.

use mdp_proto::{ReceiverConfig, SenderConfig};
use std::collections::HashMap;
use std::time::Duration;

#[cfg(doc)]
use mdp_proto::{ReceiverRequest, SenderRequest};

/// What happens to one receiver during the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fate {
    /// Runs from the start to the end.
    #[default]
    Normal,
    /// Starts only this long after the sender.
    LateJoin(Duration),
    /// Stops dead (no input, no output) this long after the sender started.
    Killed(Duration),
}

/// The world's settings.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of receivers.
    pub receivers: usize,
    /// Per-receiver loss probability, independent per link and direction.
    pub loss_independent: f64,
    /// Loss probability on the sender's link, shared by all receivers.
    pub loss_sender: f64,
    /// One-way latency of every link.
    pub latency: Duration,
    /// Random extra latency, uniform in `0..jitter` (reorders datagrams).
    pub jitter: Duration,
    /// Probability that a delivered datagram arrives twice.
    pub duplicate: f64,
    /// Seed for the network and the receivers.
    pub seed: u64,
    /// The sender's settings.
    pub sender: SenderConfig,
    /// Receiver block buffer.
    pub receiver_buffer: usize,
    /// Per-receiver fates (missing entries: [`Fate::Normal`]).
    pub fates: Vec<Fate>,
    /// Per receiver: files (path → bytes) already in its directory before
    /// the push (missing entries: none).
    pub preexisting: Vec<HashMap<String, Vec<u8>>>,
    /// A shared key: the sender and every receiver authenticate packets.
    pub key: Option<mdp_proto::auth::Key>,
    /// The sender's key, when it differs from the receivers' (`None`: the
    /// same as `key`; `Some(None)`: the sender has none).
    pub sender_key: Option<Option<mdp_proto::auth::Key>>,
    /// Keys the receivers trust (`ReceiverConfig::trust`; empty: they take
    /// every push). The sender signs with `sender.identity`.
    pub trust: Vec<mdp_proto::identity::PublicKey>,
    /// How far the receivers' wall clocks are ahead of the sender's.
    pub receiver_clock_ahead: Duration,
    /// An attacker on the sender's link: with this probability each
    /// datagram of the sender is also delivered with one byte changed, and
    /// again (a replay) 50 ms later.
    pub tamper: f64,
    /// The attacker of `tamper` forges only this long from the start (none:
    /// all along).
    pub tamper_for: Option<Duration>,
    /// The sender is killed (stops dead, says nothing) at the first time
    /// and the same push is started again, as a new session, at the
    /// second. Receivers then run as services: a finished session is
    /// followed by a fresh state machine that keeps the files placed and
    /// the blocks written so far (as the store keeps them for resume).
    pub sender_crash: Option<(Duration, Duration)>,
    /// Changes receiver `i`'s settings before it starts (limits, …).
    pub receiver_setup: Option<fn(usize, &mut ReceiverConfig)>,
    /// How long the sender's caller takes to answer a parity job
    /// ([`SenderRequest::EncodeParity`], the encoder thread of `mdp-send`);
    /// zero answers at once. Jobs are answered in order.
    pub encode_delay: Duration,
    /// How long a receiver's caller takes to settle its tree
    /// ([`ReceiverRequest::Settle`]: directory times, `--delete`); zero
    /// settles at once.
    pub settle_delay: Duration,
    /// Per receiver: how its push hook ends, reported with its
    /// confirmation of a signed push in which no file failed (missing
    /// entries: it has no hook).
    pub hooks: Vec<Option<mdp_proto::wire::HookOutcome>>,
    /// Receivers whose caller cannot make the tree final (by index).
    pub settle_fails: Vec<usize>,
    /// Virtual time after which the run is abandoned.
    pub max_time: Duration,
    /// Receivers whose hosts take datagrams from their socket at most at
    /// this many bits per second (their CPU or disk), with a socket buffer
    /// of [`crate::host::SOCKET_BUFFER`]: (receiver index, bits per second).
    pub slow_hosts: Vec<(usize, u64)>,
    /// Receivers keep the files they receive (true, the default) or only
    /// check them (false): each rebuilt block is hashed against the
    /// manifest and then dropped, and a file whose blocks all matched
    /// counts as verified, as the real store's block map vouches for a
    /// file without reading it back. Large groups are simulated this way
    /// ([`crate::ReceiverResult::files`] then stays empty).
    pub keep_files: bool,
}

impl SimConfig {
    /// `receivers` receivers, lossless 1 ms links, a 200 Mbit/s sender that
    /// waits for all of them.
    pub fn new(receivers: usize, seed: u64) -> Self {
        let mut sender = SenderConfig::new(mdp_proto::SessionId(0x5e55_1000 + seed));
        sender.rate = mdp_proto::RateMode::Fixed(200_000_000);
        sender.expected_receivers = receivers as u32;
        sender.wait = Duration::from_secs(2);
        sender.timeout = Duration::from_secs(120);
        sender.initial_grtt = Duration::from_millis(2);
        SimConfig {
            receivers,
            loss_independent: 0.0,
            loss_sender: 0.0,
            latency: Duration::from_millis(1),
            jitter: Duration::ZERO,
            duplicate: 0.0,
            seed,
            sender,
            receiver_buffer: 64 << 20,
            fates: Vec::new(),
            preexisting: Vec::new(),
            key: None,
            sender_key: None,
            trust: Vec::new(),
            receiver_clock_ahead: Duration::ZERO,
            tamper: 0.0,
            tamper_for: None,
            sender_crash: None,
            receiver_setup: None,
            encode_delay: Duration::ZERO,
            settle_delay: Duration::ZERO,
            hooks: Vec::new(),
            settle_fails: Vec::new(),
            max_time: Duration::from_secs(300),
            slow_hosts: Vec::new(),
            keep_files: true,
        }
    }
}

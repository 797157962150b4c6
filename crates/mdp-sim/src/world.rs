//! The world: one sender and N receivers over the simulated
//! [`links`](crate::links), moved from event to event in virtual time, one
//! [`World::step`] at a time.
//!
//! A step takes the earliest pending event (a datagram arriving, a state
//! machine's timer, a parity job or a settle finishing, a fate or the
//! sender's crash coming due), jumps the clock to it, processes everything
//! due at that moment, and drains every machine it touched through the one
//! [`Drain`]. Tests step the world, look at the machines mid-run, inject
//! datagrams and read the tap; [`World::run`] steps to the end.
//!
//! **Invariant:** the clock never goes back, and after each step every
//! machine has been drained at the current time, so the deadlines the
//! world keeps are the machines' own `poll_timeout`.

use crate::drain::Drain;
use crate::drain::Output;
use crate::host::HostQueue;
use crate::links::{DropRule, Links, Node, Sent};
use crate::store::{Rules, Store};
use crate::wakes::Wakes;
use crate::{Content, Fate, ReceiverResult, SimConfig, SimResult, SimRng};
use mdp_proto::fec::Codec;
use mdp_proto::{
    Receiver, ReceiverConfig, Sender, SenderConfig, SenderEvent, SenderRequest, SessionOutcome,
};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// One simulated receiver: its state machine, its caller's store and fate.
struct SimReceiver {
    machine: Receiver,
    store: Store,
    fate: Fate,
    alive: bool,
    started: bool,
    timeout: Option<Instant>,
    /// A test changed the machine: drain it before the next step.
    dirty: bool,
    /// Its host's socket queue, when the host is slower than the network.
    host: Option<HostQueue>,
}

/// The simulated world.
pub struct World {
    config: SimConfig,
    content: Content,
    start: Instant,
    now: Instant,
    links: Links,
    sender: Sender,
    sender_timeout: Option<Instant>,
    sender_end: Option<Instant>,
    /// The sender's notices, with when they came.
    sender_events: Vec<(Duration, SenderEvent)>,
    /// The sender's settings (for a restart after `sender_crash`).
    sender_config: SenderConfig,
    sender_alive: bool,
    /// A test changed the sender: drain it before the next step.
    sender_dirty: bool,
    /// 0: no crash yet, 1: crashed, 2: restarted.
    crash_stage: u8,
    /// Parity jobs being computed, with when they are answered.
    encoding: VecDeque<(Instant, SenderRequest)>,
    receivers: Vec<SimReceiver>,
    /// The settings each receiver's state machine was made with.
    receiver_configs: Vec<ReceiverConfig>,
    rules: Rules,
    drain: Drain,
    codec: Codec,
    /// The first step drains every machine (they start at time zero).
    booted: bool,
    /// Steps in a row that did not move the clock.
    stuck: u32,
    /// The ordinary receivers' wake-ups.
    wakes: Wakes,
    /// The receivers with a fate or a slow host, looked at in every step
    /// (the others wake through `wakes`).
    special: Vec<usize>,
    /// Receivers a test changed, to drain before the next step.
    dirty: Vec<usize>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World").finish_non_exhaustive()
    }
}

/// Wall clocks: an arbitrary Unix time at the start of the world.
const UNIX_AT_START_US: u64 = 1_800_000_000_000_000;

impl World {
    /// Builds the world; the sender starts at once (its first datagrams go
    /// out at the first [`World::step`]).
    pub fn new(config: SimConfig, content: Content) -> World {
        let start = Instant::now();
        let config_receivers = config.receivers;
        let mut sender_config = config.sender.clone();
        let sender_key = config.sender_key.clone().unwrap_or(config.key.clone());
        sender_config.auth =
            sender_key.map(|k| mdp_proto::auth::AuthConfig::new(k, start, UNIX_AT_START_US));
        if sender_config.identity.is_some() && sender_config.signed_at_us == 0 {
            sender_config.signed_at_us = UNIX_AT_START_US;
        }
        let sender = Sender::new(
            sender_config.clone(),
            content.manifest_for(&sender_config.coding()),
            start,
        )
        .expect("valid simulation settings");
        let mut receiver_configs = Vec::new();
        let mut rng = SimRng::new(config.seed);
        let receivers: Vec<SimReceiver> = (0..config.receivers)
            .map(|i| {
                let mut rc = ReceiverConfig::new(
                    mdp_proto::NodeId(rng.next_u64()),
                    &format!("r{i}"),
                    rng.next_u64(),
                );
                rc.buffer_bytes = config.receiver_buffer;
                rc.auth = config.key.clone().map(|k| {
                    let ahead = config.receiver_clock_ahead.as_micros() as u64;
                    mdp_proto::auth::AuthConfig::new(k, start, UNIX_AT_START_US + ahead)
                });
                rc.trust = config.trust.clone();
                // The simulator tests the protocol: with no keys to trust,
                // every push is taken (a test may say otherwise in its
                // `receiver_setup`).
                rc.insecure = config.trust.is_empty();
                // Derived from the node id, not drawn: the links' random
                // sequence stays as it was without encryption.
                let secret = blake3::hash(&rc.node.0.to_be_bytes());
                rc.secrets = Some(mdp_proto::crypto::SecretSource::new(*secret.as_bytes()));
                rc.clock = Some(mdp_proto::identity::WallClock {
                    at: start,
                    unix_us: UNIX_AT_START_US + config.receiver_clock_ahead.as_micros() as u64,
                });
                if let Some(setup) = config.receiver_setup {
                    setup(i, &mut rc);
                }
                let fate = config.fates.get(i).copied().unwrap_or_default();
                receiver_configs.push(rc.clone());
                SimReceiver {
                    machine: Receiver::new(rc),
                    store: {
                        let mut s = Store::new(
                            config.preexisting.get(i).cloned().unwrap_or_default(),
                            config.hooks.get(i).copied().flatten(),
                        );
                        s.settle_fails = config.settle_fails.contains(&i);
                        s
                    },
                    fate,
                    alive: true,
                    started: !matches!(fate, Fate::LateJoin(_)),
                    timeout: None,
                    host: config
                        .slow_hosts
                        .iter()
                        .find(|(h, _)| *h == i)
                        .map(|(_, bps)| HostQueue::new(*bps)),
                    dirty: false,
                }
            })
            .collect();
        let special = receivers
            .iter()
            .enumerate()
            .filter(|(_, r)| r.fate != Fate::Normal || r.host.is_some())
            .map(|(i, _)| i)
            .collect();
        let rules = Rules {
            block_bytes: config.sender.block_k as u64 * config.sender.symbol_size as u64,
            settle_delay: config.settle_delay,
            service: config.sender_crash.is_some(),
            keep_files: config.keep_files,
        };
        World {
            links: Links::new(&config, rng, start),
            sender_config,
            sender_alive: true,
            sender_dirty: false,
            crash_stage: 0,
            receiver_configs,
            rules,
            config,
            content,
            start,
            now: start,
            sender,
            sender_timeout: None,
            sender_end: None,
            sender_events: Vec::new(),
            receivers,
            encoding: VecDeque::new(),
            codec: Codec::default(),
            drain: Drain::new(),
            booted: false,
            stuck: 0,
            wakes: Wakes::new(config_receivers),
            special,
            dirty: Vec::new(),
        }
    }

    // ------------------------------------------------------------ access

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// The sender.
    pub fn sender(&self) -> &Sender {
        &self.sender
    }

    /// The sender, to change it; it is drained before the next step.
    pub fn sender_mut(&mut self) -> &mut Sender {
        self.sender_dirty = true;
        &mut self.sender
    }

    /// How many receivers the world has.
    pub fn receiver_count(&self) -> usize {
        self.receivers.len()
    }

    /// Receiver `i`'s state machine.
    pub fn receiver(&self, i: usize) -> &Receiver {
        &self.receivers[i].machine
    }

    /// Receiver `i`'s state machine, to change it; it is drained before
    /// the next step.
    pub fn receiver_mut(&mut self, i: usize) -> &mut Receiver {
        if !self.receivers[i].dirty {
            self.receivers[i].dirty = true;
            self.dirty.push(i);
        }
        &mut self.receivers[i].machine
    }

    /// The files receiver `i` holds verified (path → bytes).
    pub fn receiver_files(&self, i: usize) -> &HashMap<String, Vec<u8>> {
        &self.receivers[i].store.verified
    }

    /// How receiver `i`'s last finished session ended.
    pub fn receiver_outcome(&self, i: usize) -> Option<&SessionOutcome> {
        self.receivers[i].store.outcome.as_ref()
    }

    /// Whether receiver `i`'s last `Settle` let the push place its
    /// symbolic links (`None`: it never settled).
    pub fn receiver_settle_links(&self, i: usize) -> Option<bool> {
        self.receivers[i].store.settle_links
    }

    /// Why receiver `i` refused pushes (`ReceiverEvent::Untrusted`), in
    /// order.
    pub fn receiver_untrusted(&self, i: usize) -> &[mdp_proto::receiver::Untrusted] {
        &self.receivers[i].store.untrusted
    }

    // ------------------------------------------------ tap and injection

    /// Records every datagram sent from now on (see [`World::sent`]).
    pub fn record_sent(&mut self) {
        self.links.tap.get_or_insert_with(Vec::new);
    }

    /// The datagrams recorded since [`World::record_sent`], in the order
    /// they were sent.
    pub fn sent(&self) -> &[Sent] {
        self.links.tap.as_deref().unwrap_or(&[])
    }

    /// The datagrams recorded so far, leaving the record empty (and on).
    pub fn take_sent(&mut self) -> Vec<Sent> {
        self.links
            .tap
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Links drop every datagram for which `rule(from, to, datagram)` is
    /// true (after the configured random loss), from now on.
    pub fn drop_when(&mut self, rule: impl FnMut(Node, Node, &[u8]) -> bool + 'static) {
        self.links.drop_rule = Some(Box::new(rule) as DropRule);
    }

    /// Sends `datagram` now as if `from` had sent it: it crosses the links
    /// like that node's own traffic.
    pub fn inject(&mut self, from: Node, datagram: &[u8]) {
        let now = self.now;
        let n = self.receivers.len();
        match from {
            Node::Sender => {
                let receivers = &self.receivers;
                self.links
                    .multicast_from_sender(now, datagram, n, |i| receivers[i].counted(), true)
            }
            Node::Receiver(i) => self
                .links
                .multicast_from_receiver(now, i, datagram, n, true),
        }
    }

    /// Hands `datagram` to `to` at once (no link, no loss) and drains it.
    pub fn deliver(&mut self, to: Node, datagram: &[u8]) {
        let now = self.now;
        match to {
            Node::Sender => {
                self.sender.handle_datagram(now, datagram);
                self.drain_sender();
            }
            Node::Receiver(i) => {
                self.receivers[i].machine.handle_datagram(now, datagram);
                self.drain_receiver(i);
            }
        }
    }

    // ----------------------------------------------------------- driving

    /// True once the sender ended and every live receiver that joined a
    /// session finished it too (one that missed every DONE ends by its
    /// idle timeout).
    pub fn is_over(&self) -> bool {
        self.sender.is_finished()
            && !self.receivers.iter().any(|r| {
                r.alive && r.started && !r.machine.is_finished() && r.machine.session_id().is_some()
            })
    }

    /// Advances to the next event and processes everything due then.
    /// Returns false, doing nothing, once the world is over, has nothing
    /// left to do, or the next event lies beyond `max_time`.
    pub fn step(&mut self) -> bool {
        if !self.booted {
            self.booted = true;
            self.drain_sender();
            for i in 0..self.receivers.len() {
                self.drain_receiver(i);
            }
            return true;
        }
        self.drain_changed();
        if self.is_over() {
            return false;
        }
        let Some(next) = self.next_time() else {
            return false;
        };
        if next > self.start + self.config.max_time {
            return false;
        }
        // A state machine that asks to be woken at `now` again and again
        // without doing anything would spin here forever.
        self.stuck = if next <= self.now { self.stuck + 1 } else { 0 };
        assert!(
            self.stuck < 1_000_000,
            "no progress in virtual time: a timer that frees nothing"
        );
        self.now = self.now.max(next);
        if self
            .config
            .tamper_for
            .is_some_and(|d| self.now >= self.start + d)
        {
            self.links.stop_tampering();
        }
        self.sender_crash_due();
        self.fates_due();
        self.deliver_due();
        self.hosts_due();
        self.parity_due();
        self.timers_due();
        true
    }

    /// Steps until `done(self)` holds (true) or the world stops (false:
    /// over, idle, or past `max_time`).
    pub fn drive_until(&mut self, mut done: impl FnMut(&World) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            if !self.step() {
                return done(self);
            }
        }
    }

    /// Steps until at least `d` of virtual time passed (or the world stops).
    pub fn drive_for(&mut self, d: Duration) -> bool {
        let until = self.now + d;
        self.drive_until(|w| w.now >= until)
    }

    /// Runs until the sender finishes (or `max_time` passes).
    pub fn run(mut self) -> SimResult {
        while self.step() {}
        self.into_result()
    }

    /// What the world ended with (so far).
    pub fn into_result(self) -> SimResult {
        let nack_entries = self
            .receivers
            .iter()
            .map(|r| r.machine.stats().nack_entries_sent)
            .sum();
        SimResult {
            sender_events: self.sender_events,
            report: self.sender.report().cloned(),
            sender_stats: self.sender.stats(),
            elapsed: self.sender_end.unwrap_or(self.now) - self.start,
            elapsed_all: self.now - self.start,
            blocks_with_loss: self.links.lost_blocks.len(),
            nack_entries,
            file_bytes: self.content.total_bytes(),
            shared_payload_bytes: self.drain.shared_payload_bytes,
            receivers: self
                .receivers
                .into_iter()
                .map(|r| ReceiverResult {
                    node: r.machine.node(),
                    stats: r.machine.stats(),
                    files: r.store.verified,
                    outcome: r.store.outcome,
                    fate: r.fate,
                    outcomes: r.store.outcomes,
                    session_stats: r.store.session_stats,
                    settled: r.store.settled.map(|t| t - self.start),
                    socket_drops: r.host.as_ref().map_or(0, |h| h.dropped),
                })
                .collect(),
        }
    }

    // ----------------------------------------------------- one step's parts

    /// The sender's crash and restart.
    fn sender_crash_due(&mut self) {
        let Some((crash, restart)) = self.config.sender_crash else {
            return;
        };
        let now = self.now;
        if self.crash_stage == 0 && now >= self.start + crash {
            self.crash_stage = 1;
            self.sender_alive = false;
        } else if self.crash_stage == 1 && now >= self.start + restart {
            self.crash_stage = 2;
            let mut c = self.sender_config.clone();
            c.session = mdp_proto::SessionId(c.session.0 + 1);
            // Run again, it signs its push anew, later.
            if c.identity.is_some() {
                c.signed_at_us = UNIX_AT_START_US + (now - self.start).as_micros() as u64;
            }
            let manifest = self.content.manifest_for(&c.coding());
            self.sender = Sender::new(c, manifest, now).expect("valid simulation settings");
            self.sender_alive = true;
            self.sender_end = None;
            self.encoding.clear();
            self.drain_sender();
        }
    }

    fn fates_due(&mut self) {
        let now = self.now;
        for &i in &self.special {
            let r = &mut self.receivers[i];
            match r.fate {
                Fate::LateJoin(d) if !r.started && now >= self.start + d => r.started = true,
                Fate::Killed(d) if r.alive && now >= self.start + d => r.alive = false,
                _ => {}
            }
        }
    }

    fn deliver_due(&mut self) {
        let now = self.now;
        while let Some((to, d)) = self.links.pop_due(now) {
            match to {
                Node::Sender => {
                    if self.sender_alive {
                        self.sender.handle_datagram(now, &d);
                        self.drain_sender();
                    }
                }
                Node::Receiver(i) => {
                    if self.receivers[i].counted() {
                        if let Some(host) = &mut self.receivers[i].host {
                            host.arrive(now, d);
                            continue;
                        }
                        self.receivers[i].machine.handle_datagram(now, &d);
                        self.drain_receiver(i);
                    }
                }
            }
        }
    }

    /// Slow hosts take the datagrams due from their socket queues.
    fn hosts_due(&mut self) {
        let now = self.now;
        for s in 0..self.special.len() {
            let i = self.special[s];
            let r = &mut self.receivers[i];
            let mut took = false;
            while let Some((arrived, waited, d)) = r.host.as_mut().and_then(|h| h.take_due(now)) {
                if r.counted() {
                    r.machine.handle_queue_delay(now, waited);
                    r.machine.handle_datagram(arrived, &d);
                    took = true;
                }
            }
            if took {
                self.drain_receiver(i);
            }
        }
    }

    fn parity_due(&mut self) {
        let now = self.now;
        while self.sender_alive && self.encoding.front().is_some_and(|(at, _)| *at <= now) {
            let (_, ev) = self.encoding.pop_front().expect("checked");
            self.content.serve(&mut self.sender, now, ev);
            self.drain_sender();
        }
    }

    fn timers_due(&mut self) {
        let now = self.now;
        if self.sender_alive && self.sender_timeout.is_some_and(|t| t <= now) {
            self.sender.handle_timeout(now);
            self.drain_sender();
        }
        // The ordinary receivers due, and the special ones, in the order
        // of their index (as when each was looked at in turn).
        let mut due = Vec::new();
        self.wakes.take_due(now, &mut due);
        due.extend_from_slice(&self.special);
        due.sort_unstable();
        for i in due {
            let r = &mut self.receivers[i];
            if r.counted() && r.timeout.is_some_and(|t| t <= now) {
                r.machine.handle_timeout(now);
                self.drain_receiver(i);
            }
            let r = &mut self.receivers[i];
            if r.counted() && r.store.settle_at.is_some_and(|t| t <= now) {
                r.store.settle_at = None;
                r.store.settled = Some(now);
                let hook = r.store.hook_for_settle();
                r.machine.handle_settled(now, hook);
                self.drain_receiver(i);
            }
            self.rewake(i);
        }
    }

    /// Sets ordinary receiver `i`'s wake-up from its timer and its
    /// settle (special receivers are looked at in every step).
    fn rewake(&mut self, i: usize) {
        let r = &self.receivers[i];
        if r.fate != Fate::Normal || r.host.is_some() {
            return;
        }
        let at = match (r.timeout, r.store.settle_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.wakes.set(i, at);
    }

    fn next_time(&mut self) -> Option<Instant> {
        let mut t = self.links.next_arrival();
        if let Some(w) = self.wakes.next() {
            t = Some(t.map_or(w, |t| t.min(w)));
        }
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t: Instant| t.min(x)));
            }
        };
        if self.sender_alive {
            consider(self.sender_timeout);
            consider(self.encoding.front().map(|(at, _)| *at));
        }
        if let Some((crash, restart)) = self.config.sender_crash {
            match self.crash_stage {
                0 => consider(Some(self.start + crash)),
                1 => consider(Some(self.start + restart)),
                _ => {}
            }
        }
        for r in self.special.iter().map(|&i| &self.receivers[i]) {
            if !r.alive {
                continue;
            }
            match (r.started, r.fate) {
                (false, Fate::LateJoin(d)) => consider(Some(self.start + d)),
                (true, Fate::Killed(d)) => {
                    consider(Some(self.start + d));
                    consider(r.timeout);
                }
                _ => consider(r.timeout),
            }
            if r.started {
                consider(r.store.settle_at);
            }
            consider(r.host.as_ref().and_then(HostQueue::next));
        }
        t
    }

    // ------------------------------------------------------------ drains

    /// Drains what a test changed through `sender_mut` / `receiver_mut`.
    fn drain_changed(&mut self) {
        if self.sender_dirty {
            self.drain_sender();
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        for i in dirty {
            if self.receivers[i].dirty {
                self.drain_receiver(i);
            }
        }
    }

    fn drain_sender(&mut self) {
        let now = self.now;
        let n = self.receivers.len();
        let receivers = &self.receivers;
        let links = &mut self.links;
        let content = &self.content;
        let encoding = &mut self.encoding;
        let encode_delay = self.config.encode_delay;
        let (start, events) = (self.start, &mut self.sender_events);
        self.sender_timeout = self.drain.sender(
            &mut self.sender,
            now,
            |d| links.multicast_from_sender(now, d, n, |i| receivers[i].counted(), false),
            |sender, out| {
                let req = match out {
                    Output::Request(req) => req,
                    Output::Event(ev) => {
                        events.push((now - start, ev));
                        return;
                    }
                };
                if matches!(req, SenderRequest::EncodeParity { .. }) && !encode_delay.is_zero() {
                    encoding.push_back((now + encode_delay, req));
                } else {
                    content.serve(sender, now, req);
                }
            },
        );
        self.sender_dirty = false;
        if self.sender.is_finished() && self.sender_end.is_none() {
            self.sender_end = Some(now);
        }
    }

    fn drain_receiver(&mut self, i: usize) {
        let now = self.now;
        let n = self.receivers.len();
        let links = &mut self.links;
        let rules = &self.rules;
        let codec = &mut self.codec;
        let config = &mut self.receiver_configs[i];
        let r = &mut self.receivers[i];
        let store = &mut r.store;
        r.timeout = self.drain.receiver(
            &mut r.machine,
            now,
            |d| links.multicast_from_receiver(now, i, d, n, false),
            |machine, out| store.handle(machine, now, out, rules, codec, config),
        );
        r.dirty = false;
        self.rewake(i);
    }
}

impl SimReceiver {
    /// Alive and started: it takes input and its losses count.
    fn counted(&self) -> bool {
        self.alive && self.started
    }
}

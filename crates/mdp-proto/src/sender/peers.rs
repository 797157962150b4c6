//! The receivers the sender knows: registration, their feedback's
//! bookkeeping, the acknowledgements it owes them, the group round-trip
//! time their echoes measure, closed groups, and silence.
//!
//! **Invariant:** at most [`MAX_PEERS`] receivers are tracked and each
//! keeps at most [`MAX_PEER_HAVE_RANGES`] ranges, whatever the feedback
//! claims; the acknowledgement queue holds at most two entries per peer.
//! [`Tally`] agrees with the peers at all times (every change of a peer's
//! state goes through [`set_state`], every registration and naming through
//! [`Tally::registered`]), so the end of the push is decided without a look
//! at each receiver on each feedback.

use super::*;

/// Most ranges of already-held files kept per receiver.
pub(super) const MAX_PEER_HAVE_RANGES: usize = 1024;

pub(super) const ACK_REPEATS: u8 = 3;
pub(super) const MIN_GRTT: Duration = Duration::from_millis(1);
pub(super) const MAX_GRTT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PeerState {
    Active,
    Confirmed,
    Failed,
    Dropped(Duration),
    /// Could not take the minimum rate: its feedback is ignored from now on.
    TooSlow(u64),
}

/// Counts kept as the peers change: what deciding the end of the push
/// needs, in O(1) per feedback however large the group.
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// Peers in [`PeerState::Active`].
    pub(super) active: usize,
    /// Peers whose registration is complete.
    registered: usize,
    /// A closed group's names, each with how often the list names it.
    expected: HashMap<String, usize>,
    /// Names of `expected` that a registered peer carries.
    expected_seen: HashSet<String>,
    /// Entries of the closed group's list those names account for.
    expected_registered: usize,
}

impl Tally {
    /// The tally of a sender whose closed group is `names` (empty: a group
    /// given by count, or an open one).
    pub(super) fn new(names: &[String]) -> Tally {
        let mut expected = HashMap::new();
        for n in names {
            *expected.entry(n.clone()).or_insert(0) += 1;
        }
        Tally {
            expected,
            ..Tally::default()
        }
    }

    /// A peer named `name` completed its registration, or a registered
    /// peer was named (`first` false: it was counted already).
    pub(super) fn registered(&mut self, name: &str, first: bool) {
        if first {
            self.registered += 1;
        }
        if let Some(&times) = self.expected.get(name) {
            if self.expected_seen.insert(name.to_string()) {
                self.expected_registered += times;
            }
        }
    }

    /// Expected receivers not registered yet: of `count` when the group is
    /// given by count, else of the closed group's list.
    pub(super) fn unregistered_expected(&self, names: usize, count: usize) -> usize {
        if names == 0 {
            count.saturating_sub(self.registered)
        } else {
            names - self.expected_registered
        }
    }
}

impl Peer {
    /// Since when it counts as silent in the flush that began at
    /// `flush_start`: receivers are quiet during the data, so silence
    /// counts from the flush; but one that left the data's polls
    /// unanswered has been silent since it was last heard.
    pub(super) fn silent_since(&self, flush_start: Instant) -> Instant {
        if self.unanswered_polls >= POLLS_BEFORE_DROP {
            self.last_heard
        } else {
            self.last_heard.max(flush_start)
        }
    }
}

/// Sets `p`'s state, keeping `active` (the count of active peers) true.
pub(super) fn set_state(active: &mut usize, p: &mut Peer, state: PeerState) {
    match (p.state == PeerState::Active, state == PeerState::Active) {
        (true, false) => {
            debug_assert!(*active > 0, "the tally counts this peer as active");
            *active = active.saturating_sub(1);
        }
        (false, true) => *active += 1,
        _ => {}
    }
    p.state = state;
}

/// Drops `p` (`node`) as silent since it was last heard: its state, its
/// congestion state forgotten, and the notice.
pub(super) fn drop_silent(
    now: Instant,
    node: NodeId,
    p: &mut Peer,
    tally: &mut Tally,
    cc: &mut RateController,
    events: &mut VecDeque<SenderEvent>,
) {
    let silent_for = now.saturating_duration_since(p.last_heard);
    set_state(&mut tally.active, p, PeerState::Dropped(silent_for));
    cc.forget(node);
    events.push_back(SenderEvent::Silent {
        node,
        name: p.name.clone(),
        silent_for,
    });
}

#[derive(Debug)]
pub(super) struct Peer {
    pub(super) name: String,
    /// Its registration is complete (the last REGISTER of its have-list, or
    /// any other feedback, arrived).
    pub(super) registered: bool,
    /// Files it already holds, as ascending disjoint ranges
    /// `(first object, count)` (at most [`MAX_PEER_HAVE_RANGES`]).
    pub(super) have: Vec<(u32, u32)>,
    /// Blocks of files it holds in part: `(object, first block, count)`
    /// (at most [`MAX_PEER_HAVE_RANGES`]).
    pub(super) have_blocks: Vec<(u32, u32, u32)>,
    pub(super) state: PeerState,
    pub(super) last_heard: Instant,
    pub(super) verified: u32,
    /// False until its first STATUS: then `missing` means "everything".
    pub(super) status_seen: bool,
    pub(super) missing: Vec<ObjectId>,
    pub(super) failed: Vec<(ObjectId, FailReason)>,
    /// How its push hook ended, from its confirmation.
    pub(super) hook: Option<HookOutcome>,
    /// ANNOUNCE polls it has not answered since it was last heard.
    pub(super) unanswered_polls: u32,
    /// When it was last polled.
    pub(super) last_polled: Option<Instant>,
    /// The relay it is behind (relays.rs): its word comes through that
    /// relay, and it is as alive as that relay.
    pub(super) via: Option<NodeId>,
}

/// Acknowledgements owed to receivers, each repeated in
/// [`ACK_REPEATS`] ANNOUNCEs or FLUSHes.
#[derive(Debug, Default)]
pub(super) struct Acks {
    queue: VecDeque<(Ack, u8)>,
    queued: HashSet<(NodeId, AckState)>,
}

impl Acks {
    /// Queues an acknowledgement, once per node and state: the queue holds
    /// at most two entries per known node whatever the feedback, and each
    /// push is O(1).
    pub(super) fn push(&mut self, node: NodeId, state: AckState) {
        if self.queued.insert((node, state)) {
            self.queue.push_back((Ack { node, state }, ACK_REPEATS));
        }
    }

    /// The acknowledgements for the next control message: at most
    /// [`MAX_NODE_LIST`], rotating, each dropped after its last repeat.
    pub(super) fn take(&mut self) -> Vec<Ack> {
        let n = self.queue.len().min(MAX_NODE_LIST);
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let (ack, left) = self.queue.pop_front().expect("n <= len");
            out.push(ack);
            if left > 1 {
                self.queue.push_back((ack, left - 1));
            } else {
                self.queued.remove(&(ack.node, ack.state));
            }
        }
        out
    }
}

impl Sender {
    /// Receivers that confirmed so far.
    pub fn confirmed_count(&self) -> usize {
        self.peers
            .values()
            .filter(|p| p.state == PeerState::Confirmed)
            .count()
    }

    /// The group size receivers are told (and time their NACKs by): the
    /// receivers known or expected, at least 1.
    pub(super) fn group_size(&self) -> u32 {
        self.peers
            .len()
            .max(self.config.expected_receivers as usize)
            .max(1) as u32
    }

    pub(super) fn too_slow(&self, node: NodeId) -> bool {
        self.peers
            .get(&node)
            .is_some_and(|p| matches!(p.state, PeerState::TooSlow(_)))
    }

    /// Records feedback other than REGISTER from `node`; returns false when
    /// it cannot be tracked.
    pub(super) fn touch_peer(
        &mut self,
        now: Instant,
        node: NodeId,
        name: &str,
        echo: Echo,
    ) -> bool {
        self.touch_peer_as(now, node, name, echo, true)
    }

    /// Records feedback from `node`, which completes its registration when
    /// `registers`; returns false when it cannot be tracked.
    pub(super) fn touch_peer_as(
        &mut self,
        now: Instant,
        node: NodeId,
        name: &str,
        echo: Echo,
        registers: bool,
    ) -> bool {
        if echo.ts_us != 0 {
            let now_us = self.ts_us(now);
            if let Some(rtt) = now_us
                .checked_sub(echo.ts_us)
                .and_then(|d| d.checked_sub(echo.delay_us as u64))
            {
                self.update_grtt(Duration::from_micros(rtt));
            }
        }
        if let Some(p) = self.peers.get_mut(&node) {
            p.last_heard = now;
            p.unanswered_polls = 0;
            if matches!(p.state, PeerState::Dropped(_)) {
                // A receiver dropped as silent spoke again (any feedback):
                // it is tracked again, judged by its own silence (one
                // behind a relay is marked again by `handle_relay` when
                // the word came through its relay).
                set_state(&mut self.tally.active, p, PeerState::Active);
                p.via = None;
            }
            if p.name.is_empty() && !name.is_empty() {
                p.name = name.to_string();
                if p.registered {
                    self.tally.registered(name, false);
                }
            }
            if registers && !p.registered {
                p.registered = true;
                self.tally.registered(&p.name, true);
                let name = p.name.clone();
                self.push_ack(node, AckState::Registered);
                self.events
                    .push_back(SenderEvent::Registered { node, name });
            }
            self.refresh_drop_check(now);
            return true;
        }
        if self.peers.len() >= MAX_PEERS {
            return false;
        }
        self.peers.insert(
            node,
            Peer {
                name: name.to_string(),
                registered: registers,
                have: Vec::new(),
                have_blocks: Vec::new(),
                state: PeerState::Active,
                last_heard: now,
                verified: 0,
                status_seen: false,
                missing: Vec::new(),
                failed: Vec::new(),
                hook: None,
                unanswered_polls: 0,
                last_polled: None,
                via: None,
            },
        );
        self.tally.active += 1;
        if registers {
            self.tally.registered(name, true);
            self.push_ack(node, AckState::Registered);
            self.events.push_back(SenderEvent::Registered {
                node,
                name: name.to_string(),
            });
        }
        self.refresh_drop_check(now);
        true
    }

    pub(super) fn update_grtt(&mut self, sample: Duration) {
        let sample = sample.clamp(MIN_GRTT, MAX_GRTT);
        // Rise fast, fall slowly (as NORM does): a too-small GRTT causes
        // NACK implosion, a too-large one only slows repairs a little.
        self.grtt = if sample > self.grtt {
            (self.grtt + sample * 3) / 4
        } else {
            (self.grtt * 15 + sample) / 16
        }
        .clamp(MIN_GRTT, MAX_GRTT);
    }

    /// Queues an acknowledgement (see [`Acks::push`]).
    pub(super) fn push_ack(&mut self, node: NodeId, state: AckState) {
        self.acks.push(node, state);
    }

    /// Receivers whose confirmation decides success.
    pub(super) fn expected_count(&self) -> usize {
        if self.config.expected_names.is_empty() {
            self.config.expected_receivers as usize
        } else {
            self.config.expected_names.len()
        }
    }

    /// True when `name` is one of a closed group's names, or when the
    /// group is given by count (every receiver counts).
    pub(super) fn is_expected(&self, name: &str) -> bool {
        self.config.expected_names.is_empty()
            || self.config.expected_names.iter().any(|n| n == name)
    }

    /// Expected receivers not registered yet.
    pub(super) fn unregistered_expected(&self) -> usize {
        self.tally.unregistered_expected(
            self.config.expected_names.len(),
            self.config.expected_receivers as usize,
        )
    }

    /// When the first active receiver will have been silent for
    /// `drop_after` since the flush began (`None`: no active receiver).
    pub(super) fn next_drop_check(&self) -> Option<Instant> {
        let start = self.flush_start.unwrap_or(self.epoch);
        self.peers
            .values()
            .filter(|p| p.state == PeerState::Active && p.via.is_none())
            .map(|p| p.silent_since(start) + self.config.drop_after)
            .min()
    }

    /// With receivers known by key (`expected_keys`): a REGISTER or STATUS
    /// counts only when signed by the key listed for the name it carries;
    /// NACK and CONGESTION only from a receiver admitted that way. Names
    /// not listed are not admitted at all.
    pub(super) fn admitted(&self, message: &Control) -> bool {
        let name = match message {
            Control::Register(m) => &m.name,
            Control::Status(m) => &m.name,
            Control::KeyRequest(m) => &m.name,
            Control::Nack(m) => return self.peers.get(&m.node).is_some_and(|p| p.registered),
            Control::Congestion(m) => return self.peers.get(&m.node).is_some_and(|p| p.registered),
            // From a relay admitted by its own key, and what it passes on
            // signed by the key listed for the downstream receiver's name.
            Control::Relay(m) => {
                return self.peers.get(&m.node).is_some_and(|p| p.registered)
                    && self.admitted(&m.message.to_control())
            }
            Control::Announce(_) | Control::Flush(_) | Control::Done(_) | Control::Key(_) => {
                return true
            }
        };
        let Some((_, key)) = self.config.expected_keys.iter().find(|(n, _)| n == name) else {
            return false;
        };
        let Some(signed) = wire::feedback_signature(message) else {
            return false;
        };
        if signed.key != key.to_bytes() {
            return false;
        }
        wire::feedback_claim(self.config.session, message)
            .is_some_and(|claim| key.verify(&claim, &signed.signature()))
    }

    /// A receiver was heard during the flush: its own deadline moved on,
    /// and the check stays armed no later than the earliest (it may fire
    /// early, then re-arms: see the timers' invariant). Only when none was
    /// armed (no one active) is it armed for this one.
    fn refresh_drop_check(&mut self, now: Instant) {
        if self.phase == Phase::Flushing && !self.timers.is_armed(Timer::DropCheck) {
            self.timers
                .set(Timer::DropCheck, now + self.config.drop_after);
        }
    }
}

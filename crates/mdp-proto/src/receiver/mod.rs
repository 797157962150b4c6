//! The receiver state machine.
//!
//! A receiver locks onto the first session it sees announced (skipping the
//! ids in [`ReceiverConfig::ignore_sessions`]), registers, collects symbols,
//! rebuilds each block from any `k` distinct symbols, and hands finished
//! blocks to the caller ([`ReceiverRequest::WriteBlock`]). When every block of a file
//! was handed over it emits [`ReceiverRequest::VerifyObject`]; the caller
//! checks the file's hash, places it, and reports with
//! [`Receiver::handle_object_verified`]. When every file is final it asks the
//! caller to settle the tree ([`ReceiverRequest::Settle`]: directory modes and
//! times, `--delete`), and once [`Receiver::handle_settled`] says that is
//! done it sends a confirming STATUS, and ends when the sender acknowledged
//! it or said DONE. So a sender that hears "complete" knows the receiver's
//! tree is final.
//!
//! Loss recovery follows NORM (RFC 5740): a block the sender has passed and
//! that is still incomplete is NACKed after a random back-off; a NACK from
//! another receiver asking for as much or more, or a repair symbol for the
//! block, suppresses ours for a hold-off time.
//!
//! # Rooms
//!
//! - this file: [`Receiver`], its public API, the datagram dispatch and
//!   replay protection, and ending a session; the calling contract is the
//!   crate's (see the crate docs).
//! - `state`: the lifecycle (idle, joining, receiving, settling,
//!   confirming, finished) and the per-session data it carries.
//! - `collect`: symbols into blocks under the memory budget, the manifest
//!   object, and the caller's present and partial files.
//! - `nack`: when to NACK what, back-off and suppression.
//! - `feedback`: REGISTER, STATUS and CONGESTION, and the loss estimate.
//! - `config`, `error`: the plain data of the API and the typed errors.

mod collect;
mod config;
mod error;
mod feedback;
mod keys;
mod nack;
mod relay;
mod state;
mod trust;

pub use config::{ReceiverConfig, ReceiverEvent, ReceiverRequest, ReceiverStats, SessionOutcome};
pub use error::{Refusal, SessionError};
pub use nack::backoff_factor_for;
pub use relay::{RelaySource, MAX_PASSED_ON, MAX_RELAY_MESSAGE, RELAY_ACK_WAIT};
pub use trust::Untrusted;

use crate::auth::{self, AuthError, Sealer};
use crate::fec::Codec;
use crate::ids::{NodeId, ObjectId, SessionId};
use crate::limits::{field, AUTH_FLAG, COMMON_HEADER_LEN, ENC_FLAG, TRAILER_LEN};
use crate::rng::Rng;
use crate::transmit::{Destination, Transmit};
use crate::wire::{self, Control, FailReason, HookOutcome, Packet};
use state::{End, Phase, Session, State};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A sender silent this long (plus four round trips) is not NACKed until
/// it is heard again: it sends an ANNOUNCE or FLUSH at least every 500 ms
/// while it runs.
pub const SENDER_GONE: Duration = Duration::from_secs(1);

/// A session silent this long is given up when another one is announced.
pub const SESSION_SWITCH_SILENCE: Duration = Duration::from_secs(2);

/// A signed session silent this long is given up when the key that signed
/// it announces a newer push (signed later): its sender was killed and run
/// again, and takes its own dead push over at once. A sender that runs is
/// never silent this long: it sends an ANNOUNCE or FLUSH at least every
/// 500 ms ([`SENDER_GONE`]).
pub const SAME_SIGNER_SWITCH_SILENCE: Duration = SENDER_GONE;

/// Most other receivers whose counters a receiver tracks.
const MAX_PEER_WINDOWS: usize = 4096;

/// What every room writes to, apart from the session: the settings, the
/// randomness, the decoder, the output queues and the counters.
#[derive(Debug)]
struct Ctx {
    config: ReceiverConfig,
    rng: Rng,
    codec: Codec,
    transmits: VecDeque<Control>,
    requests: VecDeque<ReceiverRequest>,
    events: VecDeque<ReceiverEvent>,
    stats: ReceiverStats,
    /// Sessions refused as untrusted, most recent last, so that each is
    /// reported once.
    refused: VecDeque<SessionId>,
    /// Secrets for encrypted pushes (from the config).
    secrets: Option<crate::crypto::SecretSource>,
}

/// Refused sessions remembered for reporting once (a bound against a
/// flood of forged session ids, which are then only counted again).
const MAX_REFUSED_REMEMBERED: usize = 64;

/// The receiver of one session. See the crate docs for the calling contract.
#[derive(Debug)]
pub struct Receiver {
    cx: Ctx,
    sealer: Option<Sealer>,
    state: State,
    /// Where an encrypted datagram is opened.
    scratch: Vec<u8>,
}

impl Receiver {
    /// A receiver waiting for a session.
    pub fn new(config: ReceiverConfig) -> Receiver {
        let sealer = config.auth.as_ref().map(|a| Sealer::new(a.key.clone()));
        Receiver {
            cx: Ctx {
                rng: Rng::new(config.seed),
                secrets: config.secrets.clone(),
                config,
                codec: Codec::default(),
                transmits: VecDeque::new(),
                requests: VecDeque::new(),
                events: VecDeque::new(),
                refused: VecDeque::new(),
                stats: ReceiverStats::default(),
            },
            sealer,
            state: State::Idle,
            scratch: Vec::new(),
        }
    }

    /// Bytes of block memory held now: incomplete blocks, and complete ones
    /// handed out and not yet dropped (at most `buffer_bytes`, give or take
    /// the block that crossed it).
    pub fn buffered_bytes(&self) -> usize {
        self.state.session().map_or(0, |s| s.buffered) + self.cx.config.buffer_gauge.bytes()
    }

    /// This receiver's node id.
    pub fn node(&self) -> NodeId {
        self.cx.config.node
    }

    /// Counters so far.
    pub fn stats(&self) -> ReceiverStats {
        self.cx.stats
    }

    /// The session this receiver joined, if any.
    pub fn session_id(&self) -> Option<SessionId> {
        self.state.session().map(|s| s.id)
    }

    /// True once [`ReceiverEvent::Finished`] was emitted.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished(_))
    }

    /// The send rate the session's sender announced, bits per second.
    pub fn session_rate(&self) -> Option<u64> {
        self.state.session().map(|s| s.timing.rate_bps)
    }

    /// The symbol size of the session this receiver joined (from its
    /// ANNOUNCE, before the manifest arrives).
    pub fn session_symbol_size(&self) -> Option<u16> {
        self.state.session().map(|s| s.coding.symbol_size)
    }

    /// `(bytes of file data handed over, total bytes)` once the manifest is known.
    pub fn progress(&self) -> Option<(u64, u64)> {
        let s = self.state.session()?;
        if !s.manifest_known() {
            return None;
        }
        let total = s.objects[1..].iter().map(|o| o.size).sum();
        Some((self.cx.stats.bytes_delivered, total))
    }

    // ---------------------------------------------------------------- input

    /// The wall clock as the caller just read it: signature ages are judged
    /// by it from now on. Call it often (every turn of the loop): the
    /// monotonic clock stops while a host is suspended and does not follow
    /// a stepped clock, so a reading taken long ago would misjudge them.
    pub fn handle_wall_clock(&mut self, clock: crate::identity::WallClock) {
        self.cx.config.clock = Some(clock);
    }

    /// The batch about to be handed in was read from the socket at `now`,
    /// and its oldest datagram waited `waited` in the socket's queue: a
    /// standing queue means this receiver cannot keep up with the sender,
    /// and the read times tell the pace it can keep (see [`crate::cc`]).
    pub fn handle_queue_delay(&mut self, now: Instant, waited: Duration) {
        if let Some(s) = self.state.session_mut() {
            s.congestion.on_queue_delay(now, waited);
        }
    }

    /// A datagram arrived from the network. An encrypted one is opened in
    /// a copy: [`Receiver::handle_datagram_mut`] spares that copy.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        if is_sealed(datagram) {
            let mut copy = std::mem::take(&mut self.scratch);
            copy.clear();
            copy.extend_from_slice(datagram);
            self.handle_datagram_mut(now, &mut copy);
            self.scratch = copy;
        } else if self.count_arrival(datagram) {
            self.handle_clear(now, datagram);
        }
    }

    /// [`Receiver::handle_datagram`] for a datagram the caller gives up:
    /// an encrypted one is decrypted where it lies, and what `datagram`
    /// holds afterwards is unspecified.
    pub fn handle_datagram_mut(&mut self, now: Instant, datagram: &mut [u8]) {
        if !self.count_arrival(datagram) {
            return;
        }
        if is_sealed(datagram) {
            self.handle_encrypted(now, datagram);
        } else {
            self.handle_clear(now, datagram);
        }
    }

    /// Counts a datagram in; false once the receiver has finished (it is
    /// then only counted).
    fn count_arrival(&mut self, datagram: &[u8]) -> bool {
        self.cx.stats.packets_received += 1;
        self.cx.stats.bytes_received += datagram.len() as u64;
        !matches!(self.state, State::Finished(_))
    }

    /// A datagram the session key does not seal: checked against the
    /// group key when there is one, parsed and handled.
    fn handle_clear(&mut self, now: Instant, datagram: &[u8]) {
        if wire::is_feedback_for_the_sender(datagram) {
            self.cx.stats.ignored += 1;
            return;
        }
        let ty = datagram.get(field::TYPE).copied().unwrap_or(0);
        if ty & AUTH_FLAG != 0 && self.cx.config.auth.is_none() && self.encrypted_session() {
            self.handle_overheard(now, datagram);
            return;
        }
        let stats = &mut self.cx.stats;
        let (datagram, counter) =
            match auth::open(self.cx.config.auth.as_ref().map(|a| &a.key), datagram) {
                Ok(x) => x,
                Err(AuthError::NoKey) => {
                    stats.auth_no_key += 1;
                    return;
                }
                Err(_) => {
                    stats.auth_failed += 1;
                    return;
                }
            };
        let packet = match wire::parse(datagram) {
            Ok(p) => p,
            Err(_) => {
                stats.malformed += 1;
                return;
            }
        };
        self.handle_packet(now, packet, counter, false);
    }

    /// True while the live session is an encrypted push.
    fn encrypted_session(&self) -> bool {
        matches!(&self.state, State::Live(s) if s.keys.is_some())
    }

    /// A datagram the session key seals (DATA, FLUSH, DONE): opened where
    /// it lies, then handled as any other; dropped when this receiver has
    /// no key for it or it does not open.
    fn handle_encrypted(&mut self, now: Instant, datagram: &mut [u8]) {
        let session = datagram
            .get(field::SESSION)
            .map(|b| SessionId(u64::from_be_bytes(b.try_into().expect("8 bytes"))));
        let State::Live(s) = &mut self.state else {
            self.cx.stats.undecryptable += 1;
            return;
        };
        let Some(cipher) = s.keys.as_ref().and_then(|k| k.cipher.as_ref()) else {
            self.cx.stats.undecryptable += 1;
            return;
        };
        if session != Some(s.id) {
            self.cx.stats.ignored += 1;
            return;
        }
        match cipher.open_in_place(datagram) {
            Ok((counter, len)) if s.sender_replay.accept(counter) => {
                match wire::parse(&datagram[..len]) {
                    Ok(packet) => self.handle_packet(now, packet, counter, true),
                    Err(_) => self.cx.stats.malformed += 1,
                }
            }
            Ok(_) => self.cx.stats.replayed += 1,
            Err(_) => self.cx.stats.auth_failed += 1,
        }
    }

    /// Another receiver's feedback in an encrypted push, sealed with its
    /// own key, which this receiver cannot check: only a NACK is used, and
    /// only to hold back this receiver's own NACK for the same block.
    fn handle_overheard(&mut self, now: Instant, datagram: &[u8]) {
        if datagram.len() < COMMON_HEADER_LEN + TRAILER_LEN {
            self.cx.stats.malformed += 1;
            return;
        }
        let inner = &datagram[..datagram.len() - TRAILER_LEN];
        let (State::Live(s), Ok(Packet::Control { session, message })) =
            (&mut self.state, wire::parse(inner))
        else {
            self.cx.stats.malformed += 1;
            return;
        };
        match message {
            Control::Nack(n) if session == s.id => s.handle_other_nack(now, &mut self.cx, &n),
            _ => self.cx.stats.ignored += 1,
        }
        self.after_input(now);
    }

    /// A datagram that passed authentication (or needs none), parsed;
    /// `opened` when the session key opened it.
    fn handle_packet(&mut self, now: Instant, packet: Packet<'_>, counter: u64, opened: bool) {
        let session_id = match &packet {
            Packet::Data { header, .. } => header.session,
            Packet::Control { session, .. } => *session,
        };
        if !self.fresh_counter(now, &packet, session_id, counter) {
            self.cx.stats.replayed += 1;
            return;
        }
        if let State::Idle = self.state {
            match &packet {
                Packet::Control {
                    message: Control::Announce(a),
                    ..
                } if !self.cx.config.ignore_sessions.contains(&session_id) => {
                    if !self.admit(now, session_id, a) {
                        return;
                    }
                    let keys = match (&a.enc, &a.signed, self.cx.secrets.as_mut()) {
                        (Some(enc), Some(signed), Some(secrets)) => Some(keys::SessionKeys::new(
                            now,
                            *enc,
                            signed.signer,
                            secrets.draw("receiver ephemeral", session_id),
                        )),
                        _ => None, // admit() refused the other encrypted cases
                    };
                    let mut session = Session::new(now, session_id, a, keys);
                    // admit() verified the signature when keys are trusted.
                    if let (false, Some(signed)) = (self.cx.config.trust.is_empty(), &a.signed) {
                        session.signer = Some(signed.signer);
                        session.signature = Some(*signed);
                        session.signed_at_us = signed.signed_at_us;
                        self.cx.events.push_back(ReceiverEvent::Accepted {
                            session: session_id,
                            signed_at_us: signed.signed_at_us,
                            signer: signed.signer,
                        });
                    }
                    self.state = State::Live(Box::new(session));
                }
                _ => {
                    self.cx.stats.ignored += 1;
                    return;
                }
            }
        }
        let State::Live(s) = &mut self.state else {
            return;
        };
        if s.id != session_id {
            self.cx.stats.ignored += 1;
            // A sender that vanished (killed, its host down) and a new push
            // announced meanwhile: give up the old one now rather than after
            // the idle timeout, so that the new push (perhaps the same one,
            // restarted) is not missed. Its next ANNOUNCE starts it.
            let silent = now.saturating_duration_since(s.last_heard);
            // While the session is alive, no other ANNOUNCE costs a
            // signature check: a flood of them cannot slow the push.
            if silent < SAME_SIGNER_SWITCH_SILENCE {
                return;
            }
            let (admitted, rerun) = match &packet {
                Packet::Control {
                    message: Control::Announce(a),
                    ..
                } if trust::admit(&self.cx.config, now, session_id, a).is_ok() => {
                    // admit() verified the signature: the same key signed
                    // this push after the one under way.
                    let rerun = a.signed.as_ref().is_some_and(|sg| {
                        s.signer == Some(sg.signer) && sg.signed_at_us > s.signed_at_us
                    });
                    (true, rerun)
                }
                _ => (false, false),
            };
            let needed = if rerun {
                SAME_SIGNER_SWITCH_SILENCE
            } else {
                SESSION_SWITCH_SILENCE
            };
            // Only a push this receiver would take replaces a silent one:
            // an untrusted ANNOUNCE must not end a trusted session.
            if admitted && silent >= needed && !self.cx.config.ignore_sessions.contains(&session_id)
            {
                self.finish(End(Some(SessionError::Superseded { silent })));
            }
            return;
        }
        // In an encrypted push, what the session key seals counts only
        // sealed: a forged symbol or FLUSH or DONE in clear is dropped.
        let must_open = matches!(
            packet,
            Packet::Data { .. }
                | Packet::Control {
                    message: Control::Flush(_) | Control::Done(_),
                    ..
                }
        );
        if s.keys.is_some() && must_open && !opened {
            self.cx.stats.auth_failed += 1;
            return;
        }
        if s.keys.is_some() && !opened {
            // The rest of an encrypted push in clear: the KEY (which opens
            // only if it is ours), and ANNOUNCE, which asks for the key
            // while there is none; the sealed copy of each ANNOUNCE says
            // the rest. An unsealed NACK is no member's.
            let cx = &mut self.cx;
            match packet {
                Packet::Control {
                    message: Control::Key(k),
                    ..
                } => s.handle_key(cx, &k),
                Packet::Control {
                    message: Control::Announce(a),
                    ..
                } => s.handle_clear_announce(now, cx, &a),
                _ => cx.stats.ignored += 1,
            }
            self.after_input(now);
            return;
        }
        // Only the sender's datagrams show that the push is alive: receivers
        // NACKing each other must not keep a session whose sender died.
        let from_sender = !matches!(
            packet,
            Packet::Control {
                message: Control::Nack(_)
                    | Control::Register(_)
                    | Control::Status(_)
                    | Control::Congestion(_)
                    | Control::KeyRequest(_)
                    | Control::Relay(_),
                ..
            }
        );
        if from_sender {
            s.last_heard = now;
        }
        let cx = &mut self.cx;
        let flow = match packet {
            Packet::Data { header, payload } => s.handle_data(now, cx, &header, payload),
            Packet::Control { message, .. } => match message {
                Control::Announce(a) => {
                    s.handle_announce(now, cx, &a);
                    Ok(())
                }
                Control::Flush(f) => {
                    s.handle_flush(now, cx, &f);
                    Ok(())
                }
                Control::Done(_) => Err(End(None)),
                Control::Nack(n) => {
                    s.handle_other_nack(now, cx, &n);
                    Ok(())
                }
                Control::Key(k) => {
                    s.handle_key(cx, &k);
                    Ok(())
                }
                Control::Register(_)
                | Control::Status(_)
                | Control::Congestion(_)
                | Control::KeyRequest(_)
                | Control::Relay(_) => {
                    cx.stats.ignored += 1;
                    Ok(())
                }
            },
        };
        self.settle_flow(now, flow);
    }

    /// True when the push `a` announces may start a session here; else
    /// counts it and tells the caller, once per session.
    fn admit(&mut self, now: Instant, session: SessionId, a: &wire::Announce) -> bool {
        let cx = &mut self.cx;
        match trust::admit(&cx.config, now, session, a) {
            Ok(()) => true,
            Err(why) => {
                cx.stats.untrusted += 1;
                if !cx.refused.contains(&session) {
                    if cx.refused.len() >= MAX_REFUSED_REMEMBERED {
                        cx.refused.pop_front();
                    }
                    cx.refused.push_back(session);
                    cx.events
                        .push_back(ReceiverEvent::Untrusted { session, why });
                }
                false
            }
        }
    }

    /// Replay protection (with a key): each origin's counters are taken
    /// once, and a session is joined only when its counter is close to this
    /// host's clock (a recorded old push cannot be replayed later). True
    /// without a key.
    fn fresh_counter(
        &mut self,
        now: Instant,
        packet: &Packet,
        session: SessionId,
        counter: u64,
    ) -> bool {
        let Some(auth) = self.cx.config.auth.as_ref() else {
            return true;
        };
        let origin = match packet {
            Packet::Control { message, .. } => message.feedback_node(),
            Packet::Data { .. } => None,
        };
        let ours = self.state.session_mut().filter(|s| s.id == session);
        match (origin, ours) {
            // From the sender of another session (one to join, or one
            // that would replace ours): it must be fresh.
            (None, None) => auth.fresh(now, counter),
            (None, Some(s)) => s.sender_replay.accept(counter),
            // Another receiver's feedback (NACK suppression only).
            (Some(_), None) => true,
            (Some(node), Some(s)) => {
                if !s.peer_replay.contains_key(&node) && s.peer_replay.len() >= MAX_PEER_WINDOWS {
                    return false;
                }
                s.peer_replay.entry(node).or_default().accept(counter)
            }
        }
    }

    /// Refuses the current push (a limit, or not enough disk space, found by
    /// the caller after [`ReceiverRequest::CheckPresent`]): every file not
    /// yet final fails as [`FailReason::Refused`], the receiver registers
    /// and reports that at once, and `why` becomes its outcome's problem.
    pub fn refuse(&mut self, now: Instant, why: Refusal) {
        let State::Live(s) = &mut self.state else {
            return;
        };
        if !s.manifest_known() {
            return;
        }
        s.refuse(now, &mut self.cx, why);
        self.after_input(now);
    }

    /// Before [`Receiver::handle_present`]: the caller holds, from an
    /// earlier push that was interrupted, these blocks of `object` already
    /// written to its temporary file (`(first block, count)` ranges). They
    /// are not received again, the registration tells the sender (which
    /// skips blocks every receiver has), and a file whose blocks are all
    /// held is complete at once ([`ReceiverRequest::VerifyObject`]).
    pub fn handle_partial(&mut self, now: Instant, object: ObjectId, blocks: &[(u32, u32)]) {
        // Taken also after the session finished (only NACKing stops then),
        // as is `handle_present`: the caller may answer late.
        let live = matches!(self.state, State::Live(_));
        let Some(s) = self.state.session_mut() else {
            return;
        };
        if s.handle_partial(&mut self.cx, object, blocks) && live {
            s.maybe_arm_nack(now, &mut self.cx);
        }
    }

    /// After [`ReceiverRequest::WriteBlock`]: the caller rebuilt block
    /// `block` of `object` and it did not match the manifest's hash for it
    /// (a forged or corrupt symbol went into it), so it was not written.
    /// The block is received again: it becomes a NACK candidate at once,
    /// and a verification of its file asked for meanwhile is called off
    /// (its answer is ignored; the file is verified once the block is
    /// written).
    pub fn handle_block_rejected(&mut self, now: Instant, object: ObjectId, block: u32) {
        let State::Live(s) = &mut self.state else {
            return;
        };
        if s.block_rejected(&mut self.cx, object, block) {
            s.maybe_arm_nack(now, &mut self.cx);
            self.after_input(now);
        }
    }

    /// Answers [`ReceiverRequest::CheckPresent`]: `present` lists the files
    /// of the manifest that are already in place byte for byte (same path,
    /// same hash, as the caller's store found them). They count as verified
    /// and are not received again, and the registration tells the sender,
    /// which sends no data for files every receiver already has. Every
    /// caller must call this once per session, with an empty list when it
    /// has nothing; the receiver registers only after it.
    pub fn handle_present(&mut self, now: Instant, present: &[ObjectId]) {
        let Some(s) = self.state.session_mut() else {
            return;
        };
        if s.handle_present(now, &mut self.cx, present) {
            self.after_input(now);
        }
    }

    /// The caller checked (and placed) a file after
    /// [`ReceiverRequest::VerifyObject`]: `Ok` when it matched its hash and
    /// is in place, otherwise why not.
    pub fn handle_object_verified(
        &mut self,
        now: Instant,
        object: ObjectId,
        result: Result<(), FailReason>,
    ) {
        // Also after the session finished: only the counts change then.
        let Some(s) = self.state.session_mut() else {
            return;
        };
        if s.object_verified(&mut self.cx, object, result) {
            self.after_input(now);
        }
    }

    /// A relay: its sender heard `message` from one of its own receivers
    /// ([`crate::SenderEvent::Feedback`]); it goes to the origin in a
    /// RELAY, repeated until acknowledged. Ignored without a live session.
    pub fn pass_on(&mut self, now: Instant, message: wire::Relayed) {
        let State::Live(s) = &mut self.state else {
            return;
        };
        s.pass_on(&mut self.cx, message);
        self.after_input(now);
    }

    /// A relay: words of its receivers the origin has not acknowledged
    /// yet. A relay confirms its own copy once its own push ended and this
    /// is zero (so the origin knows every receiver behind it first), or
    /// [`RELAY_ACK_WAIT`] after its push ended.
    pub fn passed_on_pending(&self) -> usize {
        self.state.session().map_or(0, |s| s.passed_on.pending())
    }

    /// A relay: what its sender announces to pass this push on, once the
    /// manifest is here (`None` before, and without a live session).
    pub fn relay_source(&self) -> Option<RelaySource> {
        match &self.state {
            State::Live(s) => s.relay_source(),
            _ => None,
        }
    }

    /// The caller made the tree final after [`ReceiverRequest::Settle`] and
    /// ran its push hook, if it has one (`hook`: how it ended; `None` when
    /// none ran): the receiver is complete now and confirms it to the
    /// sender, with the hook's outcome.
    pub fn handle_settled(&mut self, now: Instant, hook: Option<HookOutcome>) {
        let State::Live(s) = &mut self.state else {
            return;
        };
        if s.settled(hook) {
            self.after_input(now);
        }
    }

    /// The caller could not make the tree final after
    /// [`ReceiverRequest::Settle`] (`why`: a flush failed, an atomic switch
    /// could not be made): the receiver reports every file it placed as
    /// failed, so the sender does not count it confirmed, and its outcome
    /// says why.
    pub fn handle_settle_failed(&mut self, now: Instant, why: String) {
        let State::Live(s) = &mut self.state else {
            return;
        };
        if s.settle_failed(why) {
            self.after_input(now);
        }
    }

    /// The caller is stopping (a signal, its own deadline). A session this
    /// receiver has completed (every file final, the tree settled, its
    /// confirmation sent or due) ends now as complete, as if the sender had
    /// acknowledged it, so that the caller can report it and run what
    /// follows a delivery. Any other live session is left as it is: the
    /// caller reports it as interrupted, and what it holds is kept for a
    /// resume.
    pub fn handle_shutdown(&mut self, now: Instant) {
        let State::Live(s) = &mut self.state else {
            return;
        };
        if s.complete() {
            // A confirmation that became due still goes out first.
            self.after_input(now);
            self.finish(End(None));
        }
    }

    /// The timer armed from [`Receiver::poll_timeout`] fired.
    pub fn handle_timeout(&mut self, now: Instant) {
        let State::Live(s) = &mut self.state else {
            return;
        };
        let idle = self.cx.config.idle_timeout;
        if now.saturating_duration_since(s.last_heard) >= idle {
            let problem = match s.phase {
                Phase::Confirming { .. } => None,
                _ if s.awaiting_key() => Some(SessionError::NotAdmitted),
                _ => Some(SessionError::SenderSilent { idle }),
            };
            self.finish(End(problem));
            return;
        }
        s.on_timeout(now, &mut self.cx);
        self.after_input(now);
    }

    /// Sends a STATUS that became due and ends the session once the sender
    /// acknowledged our confirmation.
    fn after_input(&mut self, now: Instant) {
        if let State::Live(s) = &mut self.state {
            let flow = s.after_input(now, &mut self.cx);
            if let Err(end) = flow {
                self.finish(end);
            }
        }
    }

    /// Ends the session if `flow` says so, otherwise runs
    /// [`Receiver::after_input`].
    fn settle_flow(&mut self, now: Instant, flow: Result<(), End>) {
        match flow {
            Ok(()) => self.after_input(now),
            Err(end) => self.finish(end),
        }
    }

    /// Live to finished: emits [`ReceiverEvent::Finished`].
    fn finish(&mut self, end: End) {
        let mut s = match std::mem::replace(&mut self.state, State::Idle) {
            State::Live(s) => s,
            // Only a live session finishes; anything else stays as it was.
            other => {
                self.state = other;
                return;
            }
        };
        let outcome = s.outcome(end);
        // Free the block buffers now; the session may be long over.
        s.partial.clear();
        s.buffered = 0;
        self.state = State::Finished(s);
        self.cx.events.push_back(ReceiverEvent::Finished(outcome));
    }

    // --------------------------------------------------------------- output

    /// Writes the next feedback datagram into `buf` (cleared first).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        let mut msg = self.cx.transmits.pop_front()?;
        let s = self.state.session_mut()?;
        let session = s.id;
        if let Some(identity) = &self.cx.config.identity {
            wire::sign_feedback(session, &mut msg, identity);
        }
        buf.clear();
        wire::write_control(buf, session, &msg);
        let unix_us = self.cx.config.clock.map_or(0, |c| c.unix_us(now));
        let feedback_sealer = s.keys.as_mut().and_then(|k| k.feedback.as_mut());
        if let (Some(sealer), false) = (feedback_sealer, matches!(msg, Control::KeyRequest(_))) {
            // An encrypted push: everything but KEYREQ is sealed with this
            // receiver's own feedback key.
            sealer.seal(buf, 0, unix_us);
        } else if let (Some(sealer), Some(auth)) = (&mut self.sealer, &self.cx.config.auth) {
            sealer.seal(buf, 0, auth.unix_us(now));
        }
        Some(Transmit {
            destination: Destination::Group,
            size: buf.len(),
            segment_size: buf.len(),
        })
    }

    /// Next request for the caller: prepare the files, write a block,
    /// verify a file, settle the tree. Drain them after the transmits,
    /// before the events (see the crate doc).
    pub fn poll_request(&mut self) -> Option<ReceiverRequest> {
        self.cx.requests.pop_front()
    }

    /// Next notice for the caller.
    pub fn poll_event(&mut self) -> Option<ReceiverEvent> {
        self.cx.events.pop_front()
    }

    /// When to call [`Receiver::handle_timeout`] next (`None`: only input
    /// can make progress, e.g. before any session was announced).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let State::Live(s) = &self.state else {
            return None;
        };
        let mut t = s.last_heard + self.cx.config.idle_timeout;
        if let Some((n, _)) = s.nack_at {
            t = t.min(n);
        }
        if let Some(r) = s.recheck_at {
            t = t.min(r);
        }
        Some(t)
    }
}

/// True when `datagram` says the session key seals it ([`ENC_FLAG`]).
fn is_sealed(datagram: &[u8]) -> bool {
    datagram
        .get(field::TYPE)
        .is_some_and(|ty| ty & ENC_FLAG != 0)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::BlockNumber;
    use crate::wire::{Announce, Echo, Nack, NackEntry, Timing};

    /// A receiver in a session (an ANNOUNCE taken), and a buffer.
    fn live_receiver(t0: Instant, session: SessionId) -> (Receiver, Vec<u8>) {
        let mut config = ReceiverConfig::new(NodeId(7), "test", 7);
        config.insecure = true;
        let mut r = Receiver::new(config);
        let mut buf = Vec::new();
        let announce = Announce {
            timing: Timing {
                ts_us: 1,
                grtt_us: 10_000,
                rate_bps: 10_000_000,
                group_size: 2,
            },
            symbol_size: 256,
            block_k: 16,
            parity: 8,
            manifest_len: 1000,
            manifest_hash: [0; 32],
            object_count: 1,
            data_pos: (0, 0),
            acked: Vec::new(),
            poll: Vec::new(),
            delete: false,
            dry_run: false,
            enc: None,
            signed: None,
        };
        wire::write_control(&mut buf, session, &Control::Announce(announce));
        r.handle_datagram(t0, &buf);
        assert_eq!(r.session_id(), Some(session));
        (r, buf)
    }

    /// A forged NACK asking for nearly `u16::MAX` symbols of a block this
    /// receiver still lacks must be taken as a (large) need, not overflow
    /// the suppression margin `need + need / 4`.
    #[test]
    fn an_overheard_nack_with_a_huge_need_does_not_overflow() {
        let t0 = Instant::now();
        let session = SessionId(0x5e55);
        let (mut r, mut buf) = live_receiver(t0, session);
        for need in [u16::MAX, 52_429, 60_000] {
            let nack = Nack {
                node: NodeId(99),
                echo: Echo::default(),
                loss: 0,
                entries: vec![NackEntry {
                    object: ObjectId::MANIFEST,
                    block: BlockNumber(0),
                    need,
                    missing: Vec::new(),
                }],
            };
            buf.clear();
            wire::write_control(&mut buf, session, &Control::Nack(nack));
            r.handle_datagram(t0, &buf);
        }
        assert_eq!(r.stats().malformed, 0);
        assert!(!r.is_finished());
    }

    /// Another receiver's REGISTER, STATUS, CONGESTION or KEY_REQUEST is
    /// dropped by its type, before it is checked or decoded: a body that
    /// does not decode is not even malformed.
    #[test]
    fn other_receivers_feedback_but_nacks_is_dropped_undecoded() {
        let t0 = Instant::now();
        let session = SessionId(0x5e55);
        let (mut r, mut buf) = live_receiver(t0, session);
        for ty in [0x20u8, 0x22, 0x23, 0x24, 0x20 | AUTH_FLAG] {
            buf.truncate(COMMON_HEADER_LEN);
            buf[field::TYPE] = ty;
            buf.extend_from_slice(&[0xff; 40]);
            let ignored = r.stats().ignored;
            r.handle_datagram(t0, &buf);
            assert_eq!(r.stats().ignored, ignored + 1, "type {ty:#x}");
        }
        assert_eq!((r.stats().malformed, r.stats().auth_failed), (0, 0));
    }

    #[test]
    fn errors_read_as_one_line_and_stay_small() {
        let e = SessionError::from(Refusal::FileTooLarge {
            path: "d/f".into(),
            size: 10,
            max: 5,
        });
        assert_eq!(
            e.to_string(),
            "refused the push: d/f is 10 bytes, more than this receiver accepts (--max-file-size 5)"
        );
        let e = SessionError::Superseded {
            silent: Duration::from_millis(2345),
        };
        assert_eq!(
            e.to_string(),
            "the sender went silent for 2.3s and another push began"
        );
        assert!(matches!(e, SessionError::Superseded { .. }));
        assert!(
            std::mem::size_of::<Option<SessionError>>() <= std::mem::size_of::<Option<String>>()
        );
    }
}

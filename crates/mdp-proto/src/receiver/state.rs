//! The receiver's lifecycle: [`State`] (no session, a live one, a finished
//! one) and, for a live session, its [`Phase`], each carrying the data only
//! it has; plus [`Session`], the data every phase shares.
//!
//! ```text
//!            ANNOUNCE              manifest complete,           all files verified
//!  Idle ───────────────▶ Joining ───────────────────▶ Receiving ───────────────────▶ Settling
//!                        (manifest   hash and limits  (files; registers             (Settle emitted,
//!                         parts)     checked          once handle_present            waits for
//!                                                     said what is here)             handle_settled)
//!                                                         │ every file refused             │
//!                                                         ▼                                │
//!                                                     Confirming { acked } ◀───────────────┘
//!                                                     (STATUS complete sent, until the sender
//!                                                      acknowledges it)
//!  any live phase ──(DONE, idle timeout, another push, acked confirmation,
//!                    manifest rejected)──▶ Finished
//! ```
//!
//! Registration is not a phase: it waits for the caller's
//! [`super::Receiver::handle_present`] (`Registration::have` is `None`
//! until then) and repeats until the sender acknowledges it, in whichever
//! phase that happens.
//!
//! **Invariant:** the phase only moves forward along the diagram; a
//! finished session keeps its data (for `session_id`, `progress` and the
//! last transmits) but no block buffer, and takes no more datagrams or
//! timers.

use super::collect::{ManifestParts, Obj, ObjState, Partial};
use super::feedback::{LossMeter, Registration};
use super::keys::SessionKeys;
use super::nack::NackView;
use super::{Ctx, ReceiverRequest, Refusal, SessionError, SessionOutcome};
use crate::auth::ReplayWindow;
use crate::cc::CongestionMeter;
use crate::ids::{BlockKey, NodeId, ObjectId, SessionId};
use crate::layout::Coding;
use crate::manifest::Manifest;
use crate::wire::{Announce, Control, FailReason, HookOutcome, Timing};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Whether the receiver has a session, and whether it is over.
#[derive(Debug)]
pub(super) enum State {
    /// Waiting for an ANNOUNCE.
    Idle,
    /// A session joined and not over.
    Live(Box<Session>),
    /// [`ReceiverEvent::Finished`] was emitted.
    Finished(Box<Session>),
}

impl State {
    /// The session joined, live or finished.
    pub(super) fn session(&self) -> Option<&Session> {
        match self {
            State::Idle => None,
            State::Live(s) | State::Finished(s) => Some(s),
        }
    }

    /// The session joined, live or finished.
    pub(super) fn session_mut(&mut self) -> Option<&mut Session> {
        match self {
            State::Idle => None,
            State::Live(s) | State::Finished(s) => Some(s),
        }
    }
}

/// Where a live session stands.
#[derive(Debug)]
pub(super) enum Phase {
    /// The manifest (object 0) is being collected.
    Joining(ManifestParts),
    /// The manifest is known: files are being received and verified.
    Receiving,
    /// Every file is final; [`ReceiverRequest::Settle`] was emitted and the
    /// receiver waits for [`super::Receiver::handle_settled`].
    Settling,
    /// Complete: the STATUS saying so goes out until the sender
    /// acknowledges it (`acked`), which ends the session.
    Confirming {
        /// The sender acknowledged the confirmation.
        acked: bool,
    },
}

/// A live session ends: `None` when it ended as it should (DONE, or the
/// confirmation acknowledged; the outcome then says whether every file
/// arrived), else why not.
#[derive(Debug)]
pub(super) struct End(pub(super) Option<SessionError>);

/// What a step of a live session leads to: go on, or end.
pub(super) type Flow = Result<(), End>;

/// The data of one session, shared by every phase.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) id: SessionId,
    pub(super) phase: Phase,
    // What the ANNOUNCE said (it never changes in a session).
    pub(super) coding: Coding,
    pub(super) manifest_len: u64,
    pub(super) manifest_hash: [u8; 32],
    /// The manifest, once collected and validated (for the outcome's
    /// paths).
    pub(super) manifest: Option<Arc<Manifest>>,
    pub(super) object_count: u32,
    /// The sender asked for `--delete`.
    pub(super) delete: bool,
    /// The sender's `--dry-run`: register with what is held, then DONE.
    pub(super) dry_run: bool,
    /// The trusted key that signed the push (`None`: taken unchecked).
    pub(super) signer: Option<[u8; 32]>,
    /// When it signed it (Unix µs; 0 when unsigned).
    pub(super) signed_at_us: u64,
    // Collection (collect.rs).
    /// Index 0 is the manifest; files follow once it is known.
    pub(super) objects: Vec<Obj>,
    /// No object below this index is still receiving (NACK scans start here).
    pub(super) first_receiving: u32,
    pub(super) partial: HashMap<BlockKey, Partial>,
    /// Bytes held in `partial`.
    pub(super) buffered: usize,
    // The sender, as last heard.
    pub(super) timing: Timing,
    pub(super) last_ts: Option<(u64, Instant)>,
    /// When the sender was last heard (its datagrams only).
    pub(super) last_heard: Instant,
    // NACK scheduling (nack.rs).
    /// Every block before this one was sent at least once.
    pub(super) sender_pos: BlockKey,
    /// The sender sent FLUSH: it has sent every block.
    pub(super) flushed: bool,
    pub(super) holdoff: HashMap<BlockKey, Instant>,
    /// Per block, when the latest hold-off by another receiver's NACK
    /// began and how many such hold-offs there were (nack.rs bounds both).
    pub(super) others_holds: HashMap<BlockKey, (Instant, u8)>,
    /// When the armed NACK goes out, and what it may carry: the blocks
    /// that were candidates when its back-off began ([`NackView`]).
    pub(super) nack_at: Option<(Instant, NackView)>,
    pub(super) recheck_at: Option<Instant>,
    // Feedback (feedback.rs).
    pub(super) registration: Registration,
    /// A STATUS goes out after the current input.
    pub(super) status_due: bool,
    pub(super) loss: LossMeter,
    pub(super) congestion: CongestionMeter,
    // The files' fate.
    pub(super) verified: u32,
    pub(super) failed: Vec<(ObjectId, FailReason)>,
    /// Why this receiver refused the push, if it did.
    pub(super) refused: Option<Refusal>,
    /// How the caller's push hook ended, reported when settled.
    pub(super) hook: Option<HookOutcome>,
    /// Why the caller could not settle the tree, if it could not.
    pub(super) not_settled: Option<String>,
    /// With a key: counters seen from the sender and from other receivers.
    pub(super) sender_replay: ReplayWindow,
    pub(super) peer_replay: HashMap<NodeId, ReplayWindow>,
    /// An encrypted push's keys (keys.rs).
    pub(super) keys: Option<SessionKeys>,
    /// The push's signature, when a trusted key signed it (what a relay
    /// announces again, relay.rs).
    pub(super) signature: Option<crate::wire::PushSignature>,
    /// A relay: its receivers' words for the origin (relay.rs).
    pub(super) passed_on: super::relay::PassedOn,
}

impl Session {
    /// A session joined on its ANNOUNCE `a`.
    pub(super) fn new(
        now: Instant,
        id: SessionId,
        a: &Announce,
        keys: Option<SessionKeys>,
    ) -> Session {
        let coding = Coding {
            symbol_size: a.symbol_size,
            block_k: a.block_k,
            parity: a.parity,
        };
        Session {
            id,
            phase: Phase::Joining(ManifestParts::default()),
            coding,
            manifest_len: a.manifest_len,
            manifest_hash: a.manifest_hash,
            manifest: None,
            object_count: a.object_count,
            delete: a.delete,
            dry_run: a.dry_run,
            signer: None,
            signed_at_us: 0,
            objects: vec![Obj::new(a.manifest_len, &coding)],
            first_receiving: 0,
            partial: HashMap::new(),
            buffered: 0,
            timing: a.timing,
            last_ts: None,
            last_heard: now,
            sender_pos: BlockKey::new(0, 0),
            flushed: false,
            holdoff: HashMap::new(),
            others_holds: HashMap::new(),
            nack_at: None,
            recheck_at: None,
            registration: Registration::default(),
            status_due: false,
            loss: LossMeter::default(),
            congestion: CongestionMeter::default(),
            verified: 0,
            failed: Vec::new(),
            refused: None,
            hook: None,
            not_settled: None,
            sender_replay: ReplayWindow::default(),
            peer_replay: HashMap::new(),
            keys,
            signature: None,
            passed_on: Default::default(),
        }
    }

    /// The manifest arrived and was accepted.
    pub(super) fn manifest_known(&self) -> bool {
        !matches!(self.phase, Phase::Joining(_))
    }

    /// Every file is final, the tree settled (or nothing placed), and the
    /// receiver says so.
    pub(super) fn complete(&self) -> bool {
        matches!(self.phase, Phase::Confirming { .. })
    }

    /// The caller's verdict on a delivered file. True when it was taken.
    pub(super) fn object_verified(
        &mut self,
        cx: &mut Ctx,
        object: ObjectId,
        result: Result<(), FailReason>,
    ) -> bool {
        let Some(obj) = self.objects.get_mut(object.0 as usize) else {
            return false;
        };
        if object.0 == 0 || obj.state != ObjState::Delivered {
            return false;
        }
        match result {
            Ok(()) => {
                obj.state = ObjState::Verified;
                self.verified += 1;
            }
            Err(reason) => {
                obj.state = ObjState::Failed(reason);
                self.failed.push((object, reason));
            }
        }
        self.check_complete(cx);
        true
    }

    /// Receiving to Settling (or, when the push was refused and nothing
    /// placed, straight to Confirming) once every file is final.
    pub(super) fn check_complete(&mut self, cx: &mut Ctx) {
        // A dry run never settles (no --delete, no directory times) nor
        // confirms: it waits for the sender's DONE.
        if !matches!(self.phase, Phase::Receiving) || self.dry_run {
            return;
        }
        // Every file object is verified or failed for good (each counted
        // once, in object_verified).
        if self.verified as usize + self.failed.len() == self.objects.len() - 1 {
            if self.refused.is_some() {
                // Nothing was placed: nothing to settle.
                self.phase = Phase::Confirming { acked: false };
                self.status_due = true;
            } else {
                self.phase = Phase::Settling;
                let whole_and_signed = self.signer.is_some() && self.failed.is_empty();
                cx.requests.push_back(ReceiverRequest::Settle {
                    prune: self.delete && whole_and_signed,
                    links: whole_and_signed,
                });
            }
        }
    }

    /// Settling to Confirming, with how the push hook ended (if one
    /// ran). True when the session was settling.
    pub(super) fn settled(&mut self, hook: Option<HookOutcome>) -> bool {
        if !matches!(self.phase, Phase::Settling) {
            return false;
        }
        self.hook = hook;
        self.phase = Phase::Confirming { acked: false };
        self.status_due = true;
        true
    }

    /// Settling to Confirming when the caller could not make the tree
    /// final (`why`): every file it had placed counts as failed (`Io`), so
    /// the sender reports this receiver failed instead of confirmed. True
    /// when the session was settling.
    pub(super) fn settle_failed(&mut self, why: String) -> bool {
        if !matches!(self.phase, Phase::Settling) {
            return false;
        }
        let before = self.failed.len();
        for (o, obj) in self.objects.iter().enumerate().skip(1) {
            if matches!(obj.state, ObjState::Verified) {
                self.failed.push((ObjectId(o as u32), FailReason::Io));
            }
        }
        if self.failed.len() == before {
            // No file of the push was placed here (directories and links
            // only, or all present): the tree itself failed.
            self.failed.push((ObjectId(0), FailReason::Io));
        }
        self.not_settled = Some(why);
        self.phase = Phase::Confirming { acked: false };
        self.status_due = true;
        true
    }

    /// Every file not yet final fails as refused; see
    /// [`super::Receiver::refuse`]. The manifest is known.
    pub(super) fn refuse(&mut self, now: Instant, cx: &mut Ctx, why: Refusal) {
        for (o, obj) in self.objects.iter_mut().enumerate().skip(1) {
            if matches!(obj.state, ObjState::Receiving | ObjState::Delivered) {
                obj.state = ObjState::Failed(FailReason::Refused);
                self.failed.push((ObjectId(o as u32), FailReason::Refused));
            }
        }
        self.partial.clear();
        self.buffered = 0;
        self.refused = Some(why);
        // Nothing more to wait for before registering.
        self.registration.have.get_or_insert_with(Vec::new);
        self.skip_finished_objects();
        self.check_complete(cx);
        self.maybe_register(now, cx);
    }

    /// After every input: the STATUS that became due goes out, and a
    /// confirmation the sender acknowledged ends the session.
    pub(super) fn after_input(&mut self, now: Instant, cx: &mut Ctx) -> Flow {
        if self.status_due {
            self.status_due = false;
            let status = self.status(now, cx);
            cx.transmits.push_back(Control::Status(status));
        }
        match self.phase {
            Phase::Confirming { acked: true } => Err(End(None)),
            _ => Ok(()),
        }
    }

    /// How the session ended for this receiver.
    pub(super) fn outcome(&self, end: End) -> SessionOutcome {
        let files = if self.manifest_known() {
            self.objects.len() as u32 - 1
        } else {
            self.object_count
        };
        let complete = self.complete();
        let problem = match end
            .0
            .or_else(|| self.refused.clone().map(SessionError::from))
            .or_else(|| self.not_settled.clone().map(SessionError::NotSettled))
        {
            // A dry run ends by the sender's DONE, as it should.
            None if self.dry_run => Some(SessionError::DryRun),
            Some(p) => Some(p),
            None if !complete => Some(SessionError::Incomplete {
                verified: self.verified,
                files,
            }),
            None if !self.failed.is_empty() => Some(SessionError::FilesFailed {
                count: self.failed.len(),
            }),
            None => None,
        };
        SessionOutcome {
            session: self.id,
            complete: complete && self.failed.is_empty(),
            problem,
            verified: self.verified,
            files,
            failed: self.failed.clone(),
            manifest: self.manifest.clone(),
            hook: self.hook,
        }
    }
}

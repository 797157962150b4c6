//! The receiver's settings ([`ReceiverConfig`]), what it tells its caller
//! ([`ReceiverRequest`], [`ReceiverEvent`], [`SessionOutcome`]) and its counters
//! ([`ReceiverStats`]): the plain data of the public API, no behaviour.
//!
//! **Invariant:** nothing here depends on the session's state; a config is
//! read, never changed, once the [`super::Receiver`] is built.

use super::SessionError;
use crate::auth::AuthConfig;
use crate::fec::{BufferGauge, CompleteBlock};
use crate::ids::{NodeId, ObjectId, SessionId};
use crate::manifest::Manifest;
use crate::wire::{self, FailReason};
use std::sync::Arc;
use std::time::Duration;

/// Receiver settings.
#[derive(Clone, Debug)]
pub struct ReceiverConfig {
    /// This receiver's id (random per process).
    pub node: NodeId,
    /// Its name, sent with feedback (host name by default).
    pub name: String,
    /// Seed for the NACK back-off randomness.
    pub seed: u64,
    /// Bytes of block memory at most: incomplete blocks held here, and
    /// complete ones handed out ([`ReceiverRequest::WriteBlock`]) until the
    /// caller drops them (see [`ReceiverConfig::buffer_gauge`]).
    pub buffer_bytes: usize,
    /// Where the blocks handed out count their memory until dropped.
    /// Receivers made from clones of one config share it, so a block of
    /// the previous session still being written counts for the next one.
    pub buffer_gauge: BufferGauge,
    /// A session silent this long is abandoned.
    pub idle_timeout: Duration,
    /// Sessions not to join (ones already finished).
    pub ignore_sessions: Vec<SessionId>,
    /// NACK back-off is `K * GRTT` at most (RFC 5740's K), with `K` this
    /// factor for groups of 32 receivers or more and less for smaller ones
    /// ([`super::backoff_factor_for`]). 6 rather than NORM's 4: mdp's GRTT is
    /// measured, not a conservative guess, and the extra spread lets the
    /// first NACK suppress more of the others (see the simulator's NACK
    /// column).
    pub backoff_factor: u32,
    /// Group size the back-off assumes at least, whatever the sender
    /// counts (1: trust the sender's count).
    pub backoff_group_floor: u32,
    /// Largest push (sum of file sizes) this receiver accepts.
    pub max_push_bytes: u64,
    /// Largest file it accepts.
    pub max_file_bytes: u64,
    /// Most files in one push.
    pub max_files: u32,
    /// Most components in a path (`a/b/c` has 3).
    pub max_path_depth: usize,
    /// Longest path, in bytes.
    pub max_path_len: usize,
    /// With a key: accept only sealed datagrams (auth.rs) and seal ours.
    pub auth: Option<AuthConfig>,
    /// Keys whose signed pushes are taken (`receiver/trust.rs`). Empty:
    /// no push is taken, unless `insecure`.
    pub trust: Vec<crate::identity::PublicKey>,
    /// With no `trust`, take every push, signed or not (`--insecure`).
    pub insecure: bool,
    /// Where this receiver's ephemeral key for an encrypted push comes
    /// from, seeded by the caller from the operating system. Without it
    /// (or without `identity`) encrypted pushes are refused.
    pub secrets: Option<crate::crypto::SecretSource>,
    /// With an identity: sign every REGISTER and STATUS, so that a sender
    /// that binds this receiver's name to its key (`--expect-file`) counts
    /// what it says, and no one else's words in its name.
    pub identity: Option<crate::identity::Identity>,
    /// Signed pushes this host accepted within the signature window (its
    /// durable record of [`ReceiverEvent::Accepted`]): refused as replays.
    pub replay_guard: Vec<SessionId>,
    /// Per signing key, when it signed the newest push this host accepted
    /// (also from its durable record): a push of that key signed before it
    /// is refused as a replay, so a recording of an older push cannot roll
    /// the files back. The same push signed at that time is taken again (a
    /// restarted receiver rejoins the push under way).
    pub signed_floor: Vec<([u8; 32], u64)>,
    /// The wall clock, for the age of a push's signature; without it the
    /// age is not checked. Long-lived callers refresh it
    /// ([`super::Receiver::handle_wall_clock`]).
    pub clock: Option<crate::identity::WallClock>,
}

impl ReceiverConfig {
    /// Raises `signer`'s entry of [`ReceiverConfig::signed_floor`] to
    /// `signed_at_us` (a push of it accepted).
    pub fn raise_signed_floor(&mut self, signer: [u8; 32], signed_at_us: u64) {
        match self.signed_floor.iter_mut().find(|(k, _)| *k == signer) {
            Some((_, t)) => *t = (*t).max(signed_at_us),
            None => self.signed_floor.push((signer, signed_at_us)),
        }
    }

    /// Defaults for a node id, name and seed.
    pub fn new(node: NodeId, name: &str, seed: u64) -> Self {
        ReceiverConfig {
            node,
            name: wire::clamp_name(name),
            seed,
            buffer_bytes: 40 << 20,
            buffer_gauge: BufferGauge::default(),
            idle_timeout: Duration::from_secs(30),
            ignore_sessions: Vec::new(),
            backoff_factor: 6,
            backoff_group_floor: 1,
            max_push_bytes: 4 << 40,
            max_file_bytes: 1 << 40,
            max_files: 1_000_000,
            max_path_depth: 32,
            max_path_len: 1024,
            auth: None,
            trust: Vec::new(),
            insecure: false,
            replay_guard: Vec::new(),
            signed_floor: Vec::new(),
            secrets: None,
            identity: None,
            clock: None,
        }
    }
}

/// Work the receiver asks of its caller ([`super::Receiver::poll_request`]).
/// Each request names the call that answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceiverRequest {
    /// The manifest arrived and passed validation: prepare the files, find
    /// those already in place and those kept from an interrupted push.
    /// Answer: [`super::Receiver::handle_partial`] for each file kept in
    /// part, then [`super::Receiver::handle_present`] with the files in
    /// place (or [`super::Receiver::refuse`] when the push cannot be taken).
    /// The receiver registers only after `handle_present`.
    CheckPresent {
        /// Session.
        session: SessionId,
        /// The validated manifest.
        manifest: Arc<Manifest>,
        /// After a complete push, remove what the pushed directories hold
        /// beyond the manifest (the sender's `--delete`). Never set for an
        /// unauthenticated push (`signer` is `None`).
        delete: bool,
        /// The trusted key that signed the push; `None` when it was taken
        /// without a check (`insecure`): the caller then runs no hooks.
        signer: Option<[u8; 32]>,
        /// Bytes per full block (file block `b` starts at `b * block_bytes`):
        /// what a store needs to keep interrupted files for resume.
        block_bytes: u64,
        /// A dry run: find what is in place and held in part, and nothing
        /// more (no temporary file, no copy of an older version's blocks);
        /// no data will follow.
        dry_run: bool,
    },
    /// A block with enough symbols: rebuild it with
    /// [`CompleteBlock::into_bytes`] (a Reed-Solomon decode when a source
    /// symbol was lost; run it off the socket loop), check it against the
    /// manifest's hash for it ([`crate::Entry::block_hash`]) and only then
    /// write it at `offset` of the object's file. No answer when it
    /// matched; [`super::Receiver::handle_block_rejected`] when it did not.
    /// The block counts in the buffer gauge until the caller drops it.
    WriteBlock {
        /// File object.
        object: ObjectId,
        /// Byte offset.
        offset: u64,
        /// The block's symbols.
        block: CompleteBlock,
    },
    /// Every block of the object was handed over: verify its hash and place
    /// it. Answer: [`super::Receiver::handle_object_verified`].
    VerifyObject {
        /// File object.
        object: ObjectId,
    },
    /// Every file is verified or failed for good: make the tree final
    /// (directory modes and modification times; with `prune`, remove what
    /// the pushed directories hold beyond the manifest). Answer:
    /// [`super::Receiver::handle_settled`]; the confirming STATUS waits for it.
    Settle {
        /// Do the sender's `--delete`: asked for, and no file failed.
        prune: bool,
        /// Place the push's symbolic links: the push is signed (never for
        /// `insecure` pushes: a link may point anywhere) and no file
        /// failed (a `current -> release` link must not switch to a
        /// release that did not arrive whole).
        links: bool,
    },
}

/// What the receiver tells its caller ([`super::Receiver::poll_event`]):
/// notices that need no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReceiverEvent {
    /// A push was announced that this receiver does not take (once per
    /// session); nothing was created for it.
    Untrusted {
        /// Its session.
        session: SessionId,
        /// Why.
        why: super::Untrusted,
    },
    /// A signed push was accepted: record it durably (with its signing
    /// time) and give it back in [`ReceiverConfig::replay_guard`] after a
    /// restart, for [`crate::identity::SIGNATURE_WINDOW`], so that a
    /// recording of it replayed later is refused. Emitted before any file
    /// of the push is asked for.
    Accepted {
        /// Its session.
        session: SessionId,
        /// When the sender signed it, µs since the Unix epoch.
        signed_at_us: u64,
        /// The key that signed it.
        signer: [u8; 32],
    },
    /// The session is over for this receiver.
    Finished(SessionOutcome),
}

/// How a session ended for this receiver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionOutcome {
    /// Session.
    pub session: SessionId,
    /// True when every file was verified and placed.
    pub complete: bool,
    /// Why it ended otherwise (its `Display` is one line).
    pub problem: Option<SessionError>,
    /// Files verified and placed.
    pub verified: u32,
    /// Files in the session.
    pub files: u32,
    /// Files that failed for good.
    pub failed: Vec<(ObjectId, FailReason)>,
    /// The session's manifest, when it was collected: the paths of the
    /// files (`failed` names them by object: object `n` is the `n`th file
    /// of [`Manifest::files`]).
    pub manifest: Option<Arc<Manifest>>,
    /// How the push hook ended, as the caller reported it to
    /// [`super::Receiver::handle_settled`] (`None`: none ran).
    pub hook: Option<crate::wire::HookOutcome>,
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Datagrams passed in.
    pub packets_received: u64,
    /// Bytes passed in.
    pub bytes_received: u64,
    /// DATA packets of the session accepted.
    pub symbols_received: u64,
    /// Symbols that were not needed (block done, or already held).
    pub symbols_redundant: u64,
    /// Datagrams of other sessions, looped-back own feedback, etc.
    pub ignored: u64,
    /// Datagrams that failed to parse or were out of range.
    pub malformed: u64,
    /// ANNOUNCEs of pushes not taken: unsigned, or not signed by a
    /// trusted key, or signed too long ago.
    pub untrusted: u64,
    /// Symbols dropped because the block buffer was full.
    pub dropped_no_buffer: u64,
    /// Most bytes of block memory held at once (incomplete blocks and
    /// blocks handed out and not yet dropped).
    pub buffer_peak: u64,
    /// Blocks completed.
    pub blocks_completed: u64,
    /// Blocks that needed Reed-Solomon decoding.
    pub blocks_decoded: u64,
    /// Blocks the caller rebuilt and found unlike the manifest's block hash
    /// ([`super::Receiver::handle_block_rejected`]: a forged or corrupt
    /// symbol), asked for again.
    pub blocks_rejected: u64,
    /// NACK datagrams sent.
    pub nacks_sent: u64,
    /// NACK entries sent.
    pub nack_entries_sent: u64,
    /// NACK entries not sent because another receiver asked first.
    pub nack_entries_suppressed: u64,
    /// Bytes of file data handed to the caller.
    pub bytes_delivered: u64,
    /// CONGESTION reports sent.
    pub congestion_sent: u64,
    /// Datagrams dropped by authentication: bad tag, or unsealed while a
    /// key is configured.
    pub auth_failed: u64,
    /// Sealed datagrams dropped because no key is configured.
    pub auth_no_key: u64,
    /// Encrypted datagrams dropped because this receiver has not (or not
    /// yet) been sent the session key.
    pub undecryptable: u64,
    /// KEYREQs sent.
    pub key_requests_sent: u64,
    /// Authentic datagrams dropped as replays (counter seen before, or a
    /// new session whose counter is far from this host's clock).
    pub replayed: u64,
    /// A relay: receivers' words not passed up (too large for a RELAY,
    /// or beyond `MAX_PASSED_ON` receivers).
    pub relay_words_dropped: u64,
}

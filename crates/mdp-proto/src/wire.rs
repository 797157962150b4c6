//! The wire format: one common header, a fixed binary DATA header, and
//! postcard-encoded control messages. docs/PROTOCOL.md describes every byte.
//!
//! Parsing turns untrusted bytes into valid representations ([`Packet`]) or a
//! [`WireError`]; it never panics and never allocates more than the datagram's
//! own length.

use crate::ids::{BlockNumber, NodeId, ObjectId, SessionId, SymbolId};
use crate::limits::{
    field, AUTH_FLAG, COMMON_HEADER_LEN, DATA_HEADER_LEN, ENC_FLAG, MAX_BLOCK_BYTES,
    MAX_HAVE_RANGES, MAX_NACK_ENTRIES, MAX_NACK_MISSING, MAX_NACK_MISSING_TOTAL, MAX_NAME_LEN,
    MAX_NODE_LIST, MAX_STATUS_OBJECTS,
};
use crate::ranges;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The two magic bytes that open every mdp datagram: ASCII "md".
pub const MAGIC: [u8; 2] = *b"md";
/// The protocol version this implementation speaks (9: relays, RELAY and
/// the manifest's relay tree).
pub const VERSION: u8 = 9;
/// DATA flag: this symbol is a repair sent in answer to a NACK.
pub const FLAG_REPAIR: u8 = 0x01;

/// Appends a data datagram's header only: its payload follows it on the
/// wire (a shared piece of a [`crate::transmit::Gather`]).
pub fn write_data_header(buf: &mut Vec<u8>, header: &DataHeader) {
    let mut h = [0u8; DATA_HEADER_LEN];
    put_common_header(&mut h, PacketType::Data, header.session);
    h[field::OBJECT].copy_from_slice(&header.object.0.to_be_bytes());
    h[field::BLOCK].copy_from_slice(&header.block.0.to_be_bytes());
    h[field::ESI].copy_from_slice(&header.esi.0.to_be_bytes());
    h[field::FLAGS] = header.flags;
    h[field::RESERVED] = 0;
    h[field::SEQ].copy_from_slice(&header.seq.to_be_bytes());
    buf.extend_from_slice(&h);
}

/// Packet type codes (byte 3 of the common header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PacketType {
    /// A source or parity symbol (sender to group).
    Data = 0x01,
    /// Session parameters and manifest description (sender to group).
    Announce = 0x10,
    /// End of data; asks receivers for their status (sender to group).
    Flush = 0x11,
    /// The session is over (sender to group).
    Done = 0x12,
    /// A receiver joins the session (receiver to group).
    Register = 0x20,
    /// A receiver asks for symbols (receiver to group).
    Nack = 0x21,
    /// A receiver reports its progress or confirms (receiver to group).
    Status = 0x22,
    /// A receiver reports that it cannot take the current rate (receiver to group).
    Congestion = 0x23,
    /// A receiver asks for the session key of an encrypted push (receiver to group).
    KeyRequest = 0x24,
    /// A relay passes on a downstream receiver's REGISTER or STATUS (relay to group).
    Relay = 0x25,
    /// The session key sealed for one receiver (sender to group).
    Key = 0x13,
}

/// True when `datagram` is, by its type byte, receiver feedback other than
/// a NACK (REGISTER, STATUS, CONGESTION, KEY_REQUEST, RELAY): what other receivers
/// send the sender, and a receiver has no use for. A receiver drops it
/// before checking or decoding it: in a group of thousands most of what a
/// receiver hears is that.
pub fn is_feedback_for_the_sender(datagram: &[u8]) -> bool {
    datagram.get(field::TYPE).is_some_and(|&ty| {
        matches!(
            PacketType::from_u8(ty & !(AUTH_FLAG | ENC_FLAG)),
            Some(
                PacketType::Register
                    | PacketType::Status
                    | PacketType::Congestion
                    | PacketType::KeyRequest
                    | PacketType::Relay
            )
        )
    })
}

impl PacketType {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x01 => Self::Data,
            0x10 => Self::Announce,
            0x11 => Self::Flush,
            0x12 => Self::Done,
            0x13 => Self::Key,
            0x20 => Self::Register,
            0x21 => Self::Nack,
            0x22 => Self::Status,
            0x23 => Self::Congestion,
            0x24 => Self::KeyRequest,
            0x25 => Self::Relay,
            _ => return None,
        })
    }
}

/// Why a datagram was rejected. Rejected datagrams are counted and dropped.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than the header it claims.
    #[error("datagram truncated")]
    Truncated,
    /// Not an mdp datagram.
    #[error("bad magic")]
    BadMagic,
    /// An mdp datagram of another protocol version.
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    /// Unknown packet type.
    #[error("unknown packet type {0:#04x}")]
    UnknownType(u8),
    /// The control body did not decode.
    #[error("malformed control message")]
    Malformed,
    /// A field is out of its allowed range.
    #[error("field out of range: {0}")]
    OutOfRange(&'static str),
}

/// The fixed header of a DATA packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataHeader {
    /// Session.
    pub session: SessionId,
    /// Object the symbol belongs to.
    pub object: ObjectId,
    /// Block within the object.
    pub block: BlockNumber,
    /// Encoding symbol id within the block.
    pub esi: SymbolId,
    /// `FLAG_*` bits.
    pub flags: u8,
    /// The sender's DATA sequence number (+1 per DATA datagram, wrapping);
    /// receivers measure loss with it.
    pub seq: u32,
}

/// Echo of the sender's timestamp, for round-trip measurement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Echo {
    /// The `ts_us` of the latest ANNOUNCE or FLUSH the receiver saw (0: none).
    pub ts_us: u64,
    /// Microseconds the receiver held it before this reply.
    pub delay_us: u32,
}

/// What an [`Ack`] acknowledges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AckState {
    /// The sender knows the receiver.
    Registered,
    /// The sender recorded the receiver's final status.
    Confirmed,
}

/// The sender's acknowledgement of one receiver's feedback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The receiver.
    pub node: NodeId,
    /// What is acknowledged.
    pub state: AckState,
}

/// Session parameters that the sender repeats in ANNOUNCE and FLUSH.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// Sender clock, microseconds since the session began (echoed back).
    pub ts_us: u64,
    /// The sender's group round-trip time estimate, microseconds.
    pub grtt_us: u32,
    /// The sender's current rate, bits per second.
    pub rate_bps: u64,
    /// Receivers the sender knows (feeds the NACK back-off).
    pub group_size: u32,
}

/// How a push is encrypted (crypto.rs): announced, and signed, with the
/// push.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// The AEAD sealing DATA, FLUSH, DONE and the wrapped session keys.
    pub aead: crate::crypto::Aead,
    /// The sender's ephemeral X25519 public key for this push.
    pub sender_eph: [u8; 32],
}

/// ANNOUNCE: session parameters and the manifest's description.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announce {
    /// Timing fields.
    pub timing: Timing,
    /// Bytes per symbol (even).
    pub symbol_size: u16,
    /// Source symbols per full block (k).
    pub block_k: u16,
    /// Parity symbols defined per block (r).
    pub parity: u16,
    /// Length of the encoded manifest (object 0).
    pub manifest_len: u64,
    /// BLAKE3 hash of the encoded manifest.
    pub manifest_hash: [u8; 32],
    /// Number of file objects (object ids 1..=object_count).
    pub object_count: u32,
    /// `(object, block)`: every block before this one was sent at least once.
    pub data_pos: (u32, u32),
    /// Recently acknowledged registrations.
    pub acked: Vec<Ack>,
    /// Registered receivers the sender has not heard from for a while
    /// during the data: each listed answers with a STATUS, so that one
    /// that died is dropped as it happens, not only after the data (at
    /// most [`MAX_NODE_LIST`]).
    pub poll: Vec<NodeId>,
    /// After a complete push, receivers remove what the pushed directories
    /// hold beyond the manifest (`mdp-send --delete`).
    pub delete: bool,
    /// A dry run (`mdp-send --dry-run`): receivers only register with what
    /// they hold; no file data follows, nothing is written, and DONE ends
    /// the session once they have.
    pub dry_run: bool,
    /// Set when the push is encrypted for receivers known by key: only a
    /// receiver sent the session key (KEY) can read DATA, FLUSH and DONE.
    pub enc: Option<Encryption>,
    /// The sender's signature of the push ([`push_claim`]), when it has an
    /// identity.
    pub signed: Option<PushSignature>,
}

/// A sender's Ed25519 signature of what defines a push: [`push_claim`] of
/// the session id, `signed_at_us`, the signer's key and the ANNOUNCE's
/// fixed fields (coding shape, manifest length, hash and file count, the
/// delete flag). The manifest's paths, sizes, modes, times and file
/// hashes are covered through `manifest_hash`, checked when the manifest
/// is complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushSignature {
    /// The signer's Ed25519 public key.
    pub signer: [u8; 32],
    /// The sender's wall clock when it signed, µs since the Unix epoch:
    /// receivers refuse a signature too far from their own clock.
    pub signed_at_us: u64,
    /// The signature's first half (R).
    pub sig_r: [u8; 32],
    /// The signature's second half (s).
    pub sig_s: [u8; 32],
}

impl PushSignature {
    /// The 64-byte signature.
    pub fn signature(&self) -> [u8; 64] {
        let mut s = [0u8; 64];
        s[..32].copy_from_slice(&self.sig_r);
        s[32..].copy_from_slice(&self.sig_s);
        s
    }
}

/// Domain separation of a push claim: no other message mdp signs can be
/// taken for one.
pub const PUSH_CLAIM_CONTEXT: &[u8] = b"mdp push claim v9\0";

/// The bytes a sender signs for a push (docs/PROTOCOL.md §5a): the
/// context, then the session id, `signed_at_us`, the signer's key, and the
/// ANNOUNCE's fixed fields, big-endian, in a fixed layout, ending with the
/// encryption parameters (one byte 0, or 1, the AEAD id and the sender's
/// ephemeral key).
pub fn push_claim(
    session: SessionId,
    a: &Announce,
    signer: &[u8; 32],
    signed_at_us: u64,
) -> Vec<u8> {
    let mut m =
        Vec::with_capacity(PUSH_CLAIM_CONTEXT.len() + 8 + 8 + 32 + 2 + 2 + 2 + 8 + 32 + 4 + 2 + 34);
    m.extend_from_slice(PUSH_CLAIM_CONTEXT);
    m.extend_from_slice(&session.0.to_be_bytes());
    m.extend_from_slice(&signed_at_us.to_be_bytes());
    m.extend_from_slice(signer);
    m.extend_from_slice(&a.symbol_size.to_be_bytes());
    m.extend_from_slice(&a.block_k.to_be_bytes());
    m.extend_from_slice(&a.parity.to_be_bytes());
    m.extend_from_slice(&a.manifest_len.to_be_bytes());
    m.extend_from_slice(&a.manifest_hash);
    m.extend_from_slice(&a.object_count.to_be_bytes());
    m.push(a.delete as u8);
    m.push(a.dry_run as u8);
    match &a.enc {
        None => m.push(0),
        Some(e) => {
            m.push(1);
            m.push(e.aead.wire_id());
            m.extend_from_slice(&e.sender_eph);
        }
    }
    m
}

/// FLUSH: the sender has sent all data; listed receivers must answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flush {
    /// Timing fields.
    pub timing: Timing,
    /// Receivers whose final status the sender still waits for.
    pub awaiting: Vec<NodeId>,
    /// Recently acknowledged registrations and confirmations.
    pub acked: Vec<Ack>,
}

/// DONE: the sender ends the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// True when every expected receiver confirmed.
    pub success: bool,
}

/// REGISTER: a receiver joins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    /// The receiver.
    pub node: NodeId,
    /// Its human-readable name (host name by default).
    pub name: String,
    /// Timestamp echo.
    pub echo: Echo,
    /// Files the receiver already holds, byte for byte (same path, same
    /// BLAKE3 hash): ranges `(first object, count)`, ascending and
    /// disjoint. A receiver with more ranges sends several REGISTERs.
    pub have: Vec<(u32, u32)>,
    /// Blocks of files the receiver holds in part (from an earlier,
    /// interrupted push of the same file): `(object, first block, count)`,
    /// ascending and disjoint.
    pub have_blocks: Vec<(u32, u32, u32)>,
    /// True when more REGISTERs with further `have` ranges follow: the
    /// sender counts the receiver as registered at the one without it.
    pub more: bool,
    /// The receiver's signature ([`feedback_claim`]), when it has an
    /// identity.
    pub signed: Option<FeedbackSignature>,
}

/// KEYREQ: a receiver of an encrypted push asks for the session key, with
/// its ephemeral X25519 key for this push, signed with its identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRequest {
    /// The receiver.
    pub node: NodeId,
    /// Its name, which the sender's `--expect-file` binds to its key.
    pub name: String,
    /// Its ephemeral X25519 public key for this push.
    pub receiver_eph: [u8; 32],
    /// The receiver's signature ([`feedback_claim`]); a KEYREQ without one
    /// is never answered.
    pub signed: Option<FeedbackSignature>,
}

/// KEY: the session key sealed for one receiver ([`crate::crypto::wrap`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyWrap {
    /// The receiver it is sealed for.
    pub node: NodeId,
    /// The sealed session key.
    pub sealed_key: [u8; 32],
    /// Its AEAD tag.
    pub tag: [u8; 16],
}

/// A receiver's Ed25519 signature of one REGISTER, STATUS or KEYREQ:
/// [`feedback_claim`] of the session and the message without it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackSignature {
    /// The receiver's public key.
    pub key: [u8; 32],
    /// The signature's first half (R).
    pub sig_r: [u8; 32],
    /// The signature's second half (s).
    pub sig_s: [u8; 32],
}

impl FeedbackSignature {
    /// The 64-byte signature.
    pub fn signature(&self) -> [u8; 64] {
        let mut s = [0u8; 64];
        s[..32].copy_from_slice(&self.sig_r);
        s[32..].copy_from_slice(&self.sig_s);
        s
    }
}

/// Domain separation of a feedback claim.
pub const FEEDBACK_CLAIM_CONTEXT: &[u8] = b"mdp feedback claim v9\0";

/// The bytes a receiver signs for a REGISTER, STATUS or KEYREQ (docs/PROTOCOL.md
/// §5b): the context, the session id (big-endian), the packet type, and
/// the message's own encoding with `signed` empty. `None` for other
/// messages.
pub fn feedback_claim(session: SessionId, message: &Control) -> Option<Vec<u8>> {
    let mut unsigned = message.clone();
    match &mut unsigned {
        Control::Register(m) => m.signed = None,
        Control::Status(m) => m.signed = None,
        Control::KeyRequest(m) => m.signed = None,
        _ => return None,
    }
    let mut claim = FEEDBACK_CLAIM_CONTEXT.to_vec();
    claim.extend_from_slice(&session.0.to_be_bytes());
    claim.push(unsigned.packet_type() as u8);
    let mut body = Vec::new();
    write_control(&mut body, session, &unsigned);
    claim.extend_from_slice(&body[COMMON_HEADER_LEN..]);
    Some(claim)
}

/// The signature a REGISTER or STATUS carries, if any.
pub fn feedback_signature(message: &Control) -> Option<&FeedbackSignature> {
    match message {
        Control::Register(m) => m.signed.as_ref(),
        Control::Status(m) => m.signed.as_ref(),
        Control::KeyRequest(m) => m.signed.as_ref(),
        _ => None,
    }
}

/// Signs a REGISTER or STATUS with `identity`, in place; other messages
/// are left alone.
pub fn sign_feedback(
    session: SessionId,
    message: &mut Control,
    identity: &crate::identity::Identity,
) {
    let Some(claim) = feedback_claim(session, message) else {
        return;
    };
    let sig = identity.sign(&claim);
    let signed = FeedbackSignature {
        key: identity.public().to_bytes(),
        sig_r: sig[..32].try_into().expect("32 bytes"),
        sig_s: sig[32..].try_into().expect("32 bytes"),
    };
    match message {
        Control::Register(m) => m.signed = Some(signed),
        Control::Status(m) => m.signed = Some(signed),
        Control::KeyRequest(m) => m.signed = Some(signed),
        _ => {}
    }
}

/// One request of a NACK: `need` more distinct symbols of a block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NackEntry {
    /// Object.
    pub object: ObjectId,
    /// Block.
    pub block: BlockNumber,
    /// How many more distinct symbols the receiver needs to decode the block.
    pub need: u16,
    /// The source symbols (ids below `k`) the receiver lacks, when it holds
    /// no parity symbol of the block and lacks at most
    /// [`MAX_NACK_MISSING`]: then `need` of them, and resending exactly
    /// those completes the block without decoding. Empty otherwise.
    pub missing: Vec<u16>,
}

/// NACK: a receiver asks for repair symbols.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nack {
    /// The receiver.
    pub node: NodeId,
    /// Timestamp echo.
    pub echo: Echo,
    /// The receiver's recent DATA loss rate, in 1/65536 units.
    pub loss: u16,
    /// Requests, in ascending (object, block) order.
    pub entries: Vec<NackEntry>,
}

/// Why a receiver could not deliver a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailReason {
    /// The reassembled file did not match its BLAKE3 hash.
    HashMismatch,
    /// The receiver could not write or place the file.
    Io,
    /// The receiver refused the push (a limit, or not enough disk space);
    /// the receiver's log and report say which.
    Refused,
}

/// How a receiver's push hook (`mdp-recv --exec`) ended, in its
/// confirmation. The hook runs after the tree is settled and before the
/// receiver confirms, so the sender's report can say whether what follows
/// a delivery (a reload, a restart) worked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HookOutcome {
    /// It exited 0.
    Succeeded,
    /// It exited with this non-zero status.
    Exited(u8),
    /// It was killed: by a signal, or for running over its time limit.
    Killed,
    /// It could not be started.
    NotStarted,
}

impl HookOutcome {
    /// True unless it [`HookOutcome::Succeeded`].
    pub fn failed(self) -> bool {
        self != HookOutcome::Succeeded
    }

    /// A few words for reports: `succeeded`, `exited with status 3`,
    /// `killed`, `could not start`.
    pub fn describe(self) -> String {
        match self {
            HookOutcome::Succeeded => "succeeded".into(),
            HookOutcome::Exited(code) => format!("exited with status {code}"),
            HookOutcome::Killed => "killed".into(),
            HookOutcome::NotStarted => "could not start".into(),
        }
    }
}

/// STATUS: a receiver's progress, or its confirmation when `complete`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The receiver.
    pub node: NodeId,
    /// Its name.
    pub name: String,
    /// Timestamp echo.
    pub echo: Echo,
    /// True when every object is verified and placed (or failed for good).
    pub complete: bool,
    /// Objects verified and placed so far.
    pub verified: u32,
    /// Objects not yet received (first few).
    pub missing: Vec<ObjectId>,
    /// Objects that failed for good, with the reason (first few).
    pub failed: Vec<(ObjectId, FailReason)>,
    /// How its push hook ended, when one ran (only in a `complete`
    /// STATUS; `None` before, and when it has no hook or ran none).
    pub hook: Option<HookOutcome>,
    /// The receiver's signature ([`feedback_claim`]), when it has an
    /// identity.
    pub signed: Option<FeedbackSignature>,
}

/// CONGESTION: a receiver lost clearly more of the DATA stream than its
/// usual (random) loss in its last measurement window: the sender is faster
/// than this receiver or its path can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Congestion {
    /// The receiver.
    pub node: NodeId,
    /// Timestamp echo.
    pub echo: Echo,
    /// DATA bits per second that reached it in the window.
    pub delivered_bps: u64,
    /// DATA lost in the window, in 1/65536 units.
    pub loss: u16,
    /// Its usual loss outside congestion, in 1/65536 units.
    pub floor: u16,
    /// DATA sequence number that opened the window.
    pub first_seq: u32,
    /// Highest DATA sequence number in the window.
    pub last_seq: u32,
    /// Separate runs of lost DATA in the window.
    pub runs: u16,
}

/// RELAY: a relay (a receiver of this session that passes the push on to
/// receivers of its own) passes on one of its downstream receivers'
/// REGISTER or STATUS as that receiver sent it, signature included, so
/// that the origin's report names every host behind it and, with
/// receivers known by key, checks each one's own signature: a relay can
/// withhold a host's word, never forge it (docs/SECURITY.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relay {
    /// The relay.
    pub node: NodeId,
    /// What the downstream receiver said.
    pub message: Relayed,
}

/// The downstream messages a [`Relay`] carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Relayed {
    /// A downstream receiver registered.
    Register(Register),
    /// A downstream receiver reported (or confirmed).
    Status(Status),
}

impl Relayed {
    /// The downstream receiver.
    pub fn node(&self) -> NodeId {
        match self {
            Relayed::Register(m) => m.node,
            Relayed::Status(m) => m.node,
        }
    }

    /// As the message the downstream receiver sent.
    pub fn to_control(&self) -> Control {
        match self {
            Relayed::Register(m) => Control::Register(m.clone()),
            Relayed::Status(m) => Control::Status(m.clone()),
        }
    }
}

/// A control message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// See [`Announce`].
    Announce(Announce),
    /// See [`Flush`].
    Flush(Flush),
    /// See [`Done`].
    Done(Done),
    /// See [`Register`].
    Register(Register),
    /// See [`Nack`].
    Nack(Nack),
    /// See [`Status`].
    Status(Status),
    /// See [`Congestion`].
    Congestion(Congestion),
    /// See [`KeyRequest`].
    KeyRequest(KeyRequest),
    /// See [`KeyWrap`].
    Key(KeyWrap),
    /// See [`Relay`].
    Relay(Relay),
}

impl Control {
    fn packet_type(&self) -> PacketType {
        match self {
            Control::Announce(_) => PacketType::Announce,
            Control::Flush(_) => PacketType::Flush,
            Control::Done(_) => PacketType::Done,
            Control::Register(_) => PacketType::Register,
            Control::Nack(_) => PacketType::Nack,
            Control::Status(_) => PacketType::Status,
            Control::Congestion(_) => PacketType::Congestion,
            Control::KeyRequest(_) => PacketType::KeyRequest,
            Control::Key(_) => PacketType::Key,
            Control::Relay(_) => PacketType::Relay,
        }
    }

    /// The receiver a feedback message speaks for (REGISTER, NACK, STATUS,
    /// CONGESTION); `None` for the sender's messages and KEYREQ, which is
    /// handled on its own.
    pub fn feedback_node(&self) -> Option<NodeId> {
        match self {
            Control::Register(m) => Some(m.node),
            Control::Nack(m) => Some(m.node),
            Control::Status(m) => Some(m.node),
            Control::Congestion(m) => Some(m.node),
            Control::Relay(m) => Some(m.node),
            _ => None,
        }
    }
}

/// A parsed datagram.
// A packet lives on the stack for one call; boxing the control messages
// would cost an allocation per datagram for a few hundred bytes saved.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// A symbol.
    Data {
        /// Its header.
        header: DataHeader,
        /// The symbol bytes.
        payload: &'a [u8],
    },
    /// A control message of a session.
    Control {
        /// Session.
        session: SessionId,
        /// The message.
        message: Control,
    },
}

fn put_common_header(h: &mut [u8], ty: PacketType, session: SessionId) {
    h[field::MAGIC].copy_from_slice(&MAGIC);
    h[field::VERSION] = VERSION;
    h[field::TYPE] = ty as u8;
    h[field::SESSION].copy_from_slice(&session.0.to_be_bytes());
}

fn common_header(buf: &mut Vec<u8>, ty: PacketType, session: SessionId) {
    let mut h = [0u8; COMMON_HEADER_LEN];
    put_common_header(&mut h, ty, session);
    buf.extend_from_slice(&h);
}

/// Appends a DATA datagram to `buf`.
pub fn write_data(buf: &mut Vec<u8>, header: &DataHeader, payload: &[u8]) {
    write_data_header(buf, header);
    buf.extend_from_slice(payload);
}

/// Appends a control datagram to `buf`.
pub fn write_control(buf: &mut Vec<u8>, session: SessionId, message: &Control) {
    common_header(buf, message.packet_type(), session);
    // Serializing into a Vec cannot fail for these types (no maps, no
    // unsupported serde features); an error here is a bug.
    let res = match message {
        Control::Announce(m) => postcard::to_io(m, &mut *buf).map(drop),
        Control::Flush(m) => postcard::to_io(m, &mut *buf).map(drop),
        Control::Done(m) => postcard::to_io(m, &mut *buf).map(drop),
        Control::Register(m) => postcard::to_io(m, &mut *buf).map(drop),
        Control::Nack(m) => postcard::to_io(m, &mut *buf).map(drop),
        Control::Status(m) => postcard::to_io(m, &mut *buf).map(drop),
        Control::Congestion(m) => postcard::to_io(m, &mut *buf).map(drop),
        Control::KeyRequest(m) => postcard::to_io(m, &mut *buf).map(drop),
        Control::Key(m) => postcard::to_io(m, &mut *buf).map(drop),
        Control::Relay(m) => postcard::to_io(m, &mut *buf).map(drop),
    };
    res.expect("postcard serialization into a Vec is infallible for mdp's types");
}

/// A field's bytes as an array, for `from_be_bytes`. The caller has checked
/// the datagram's length against the header's, so the field is whole.
fn be<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

/// Parses a datagram. Never panics.
pub fn parse(datagram: &[u8]) -> Result<Packet<'_>, WireError> {
    if datagram.len() < COMMON_HEADER_LEN {
        return Err(WireError::Truncated);
    }
    if datagram[field::MAGIC] != MAGIC {
        return Err(WireError::BadMagic);
    }
    if datagram[field::VERSION] != VERSION {
        return Err(WireError::UnsupportedVersion(datagram[field::VERSION]));
    }
    // Bit 7 marks a sealed datagram (auth.rs), bit 6 an encrypted one
    // (crypto.rs); either was opened, and its trailer cut off, before this.
    let ty = datagram[field::TYPE] & !(AUTH_FLAG | ENC_FLAG);
    let ty = PacketType::from_u8(ty).ok_or(WireError::UnknownType(ty))?;
    let session = SessionId(u64::from_be_bytes(be(&datagram[field::SESSION])));
    let body = &datagram[COMMON_HEADER_LEN..];
    let message = match ty {
        PacketType::Data => {
            if datagram.len() < DATA_HEADER_LEN {
                return Err(WireError::Truncated);
            }
            let header = DataHeader {
                session,
                object: ObjectId(u32::from_be_bytes(be(&datagram[field::OBJECT]))),
                block: BlockNumber(u32::from_be_bytes(be(&datagram[field::BLOCK]))),
                esi: SymbolId(u16::from_be_bytes(be(&datagram[field::ESI]))),
                flags: datagram[field::FLAGS],
                seq: u32::from_be_bytes(be(&datagram[field::SEQ])),
            };
            return Ok(Packet::Data {
                header,
                payload: &datagram[DATA_HEADER_LEN..],
            });
        }
        PacketType::Announce => Control::Announce(decode(body)?),
        PacketType::Flush => Control::Flush(decode(body)?),
        PacketType::Done => Control::Done(decode(body)?),
        PacketType::Register => Control::Register(decode(body)?),
        PacketType::Nack => Control::Nack(decode(body)?),
        PacketType::Status => Control::Status(decode(body)?),
        PacketType::Congestion => Control::Congestion(decode(body)?),
        PacketType::KeyRequest => Control::KeyRequest(decode(body)?),
        PacketType::Key => Control::Key(decode(body)?),
        PacketType::Relay => Control::Relay(decode(body)?),
    };
    validate(&message)?;
    Ok(Packet::Control { session, message })
}

fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, WireError> {
    // postcard never pre-allocates more than the input could hold, so a
    // claimed length cannot make us allocate beyond the datagram's size.
    let (msg, rest) = postcard::take_from_bytes(body).map_err(|_| WireError::Malformed)?;
    if !rest.is_empty() {
        return Err(WireError::Malformed);
    }
    Ok(msg)
}

/// Range checks that the type system does not express.
fn validate(message: &Control) -> Result<(), WireError> {
    fn check(ok: bool, what: &'static str) -> Result<(), WireError> {
        if ok {
            Ok(())
        } else {
            Err(WireError::OutOfRange(what))
        }
    }
    match message {
        Control::Announce(a) => {
            check(a.symbol_size >= 16 && a.symbol_size % 2 == 0, "symbol_size")?;
            check(
                (1..=crate::limits::MAX_BLOCK_K).contains(&a.block_k),
                "block_k",
            )?;
            check(
                a.block_k as usize * a.symbol_size as usize <= MAX_BLOCK_BYTES,
                "block bytes",
            )?;
            check(
                (1..=crate::limits::MAX_PARITY).contains(&a.parity),
                "parity",
            )?;
            check(
                a.manifest_len <= crate::manifest::MAX_MANIFEST_LEN,
                "manifest_len",
            )?;
            check(
                a.object_count <= crate::manifest::MAX_ENTRIES as u32,
                "object_count",
            )?;
            check(a.acked.len() <= MAX_NODE_LIST, "acked")?;
            check(a.poll.len() <= MAX_NODE_LIST, "poll")
        }
        Control::Flush(f) => {
            check(f.awaiting.len() <= MAX_NODE_LIST, "awaiting")?;
            check(f.acked.len() <= MAX_NODE_LIST, "acked")
        }
        Control::Done(_) | Control::Congestion(_) | Control::Key(_) => Ok(()),
        // What a downstream receiver sent is held to its own rules.
        Control::Relay(r) => validate(&r.message.to_control()),
        Control::KeyRequest(k) => check(k.name.len() <= MAX_NAME_LEN, "name"),
        Control::Register(r) => {
            check(r.name.len() <= MAX_NAME_LEN, "name")?;
            check(r.have.len() <= MAX_HAVE_RANGES, "have")?;
            // Ascending, disjoint, non-empty, file objects only.
            check(
                ranges::is_canonical(r.have.iter().copied(), 1),
                "have ranges must be ascending and disjoint",
            )?;
            check(r.have_blocks.len() <= MAX_HAVE_RANGES, "have_blocks")?;
            let mut next = (1u64, 0u64);
            for &(object, first, count) in &r.have_blocks {
                check(
                    (object as u64, first as u64) >= next && count > 0 && object > 0,
                    "have_blocks ranges must be ascending and disjoint",
                )?;
                next = (object as u64, first as u64 + count as u64);
            }
            Ok(())
        }
        Control::Nack(n) => {
            check(
                !n.entries.is_empty() && n.entries.len() <= MAX_NACK_ENTRIES,
                "entries",
            )?;
            check(
                n.entries
                    .iter()
                    .all(|e| e.missing.len() <= MAX_NACK_MISSING)
                    && n.entries.iter().map(|e| e.missing.len()).sum::<usize>()
                        <= MAX_NACK_MISSING_TOTAL,
                "missing",
            )
        }
        Control::Status(s) => {
            check(s.name.len() <= MAX_NAME_LEN, "name")?;
            check(s.missing.len() <= MAX_STATUS_OBJECTS, "missing")?;
            check(s.failed.len() <= MAX_STATUS_OBJECTS, "failed")
        }
    }
}

/// Truncates `name` to at most [`MAX_NAME_LEN`] bytes on a char boundary.
pub fn clamp_name(name: &str) -> String {
    let mut end = name.len().min(MAX_NAME_LEN);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_round_trip() {
        let h = DataHeader {
            session: SessionId(0x0102_0304_0506_0708),
            object: ObjectId(7),
            block: BlockNumber(9),
            esi: SymbolId(300),
            flags: FLAG_REPAIR,
            seq: 0xdead_beef,
        };
        let mut buf = Vec::new();
        write_data(&mut buf, &h, b"hello");
        assert_eq!(buf.len(), DATA_HEADER_LEN + 5);
        assert_eq!(&buf[..4], b"md\x09\x01");
        assert_eq!(&buf[24..28], &[0xde, 0xad, 0xbe, 0xef]);
        match parse(&buf).unwrap() {
            Packet::Data { header, payload } => {
                assert_eq!(header, h);
                assert_eq!(payload, b"hello");
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn control_round_trip() {
        let msg = Control::Nack(Nack {
            node: NodeId(5),
            echo: Echo {
                ts_us: 10,
                delay_us: 3,
            },
            loss: 1000,
            entries: vec![NackEntry {
                object: ObjectId(1),
                block: BlockNumber(2),
                need: 3,
                missing: vec![4, 9, 200],
            }],
        });
        let congestion = Control::Congestion(Congestion {
            node: NodeId(6),
            echo: Echo::default(),
            delivered_bps: 123_456_789,
            loss: 5000,
            floor: 3000,
            first_seq: u32::MAX - 5,
            last_seq: 7,
            runs: 3,
        });
        for msg in [msg, congestion] {
            let mut buf = Vec::new();
            write_control(&mut buf, SessionId(1), &msg);
            assert_eq!(
                parse(&buf).unwrap(),
                Packet::Control {
                    session: SessionId(1),
                    message: msg
                }
            );
        }
    }

    #[test]
    fn rejects_truncated_and_foreign_datagrams() {
        assert_eq!(parse(b""), Err(WireError::Truncated));
        assert_eq!(
            parse(b"md\x09\x01\0\0\0\0\0\0\0\0\0"),
            Err(WireError::Truncated)
        );
        assert_eq!(
            parse(b"xx\x01\x01\0\0\0\0\0\0\0\0"),
            Err(WireError::BadMagic)
        );
        assert_eq!(
            parse(b"md\x0a\x01\0\0\0\0\0\0\0\0"),
            Err(WireError::UnsupportedVersion(10))
        );
        // Version 8 had no RELAY and no relay tree in the manifest.
        assert_eq!(
            parse(b"md\x08\x25\0\0\0\0\0\0\0\0"),
            Err(WireError::UnsupportedVersion(8))
        );
        // Version 1's NACK entries had no `missing`, and version 2 coded
        // small blocks with another code: none is mixed up with ours.
        assert_eq!(
            parse(b"md\x01\x21\0\0\0\0\0\0\0\0"),
            Err(WireError::UnsupportedVersion(1))
        );
        assert_eq!(
            parse(b"md\x02\x01\0\0\0\0\0\0\0\0"),
            Err(WireError::UnsupportedVersion(2))
        );
        // Version 3's CONGESTION had no window sequence numbers nor runs.
        assert_eq!(
            parse(b"md\x03\x23\0\0\0\0\0\0\0\0"),
            Err(WireError::UnsupportedVersion(3))
        );
        // Version 5 had no encryption.
        assert_eq!(
            parse(b"md\x05\x10\0\0\0\0\0\0\0\0"),
            Err(WireError::UnsupportedVersion(5))
        );
        // Version 4's ANNOUNCE had no signature.
        assert_eq!(
            parse(b"md\x04\x10\0\0\0\0\0\0\0\0"),
            Err(WireError::UnsupportedVersion(4))
        );
        // Version 6's manifest had no block hashes.
        assert_eq!(
            parse(b"md\x06\x10\0\0\0\0\0\0\0\0"),
            Err(WireError::UnsupportedVersion(6))
        );
        assert_eq!(
            parse(b"md\x09\x37\0\0\0\0\0\0\0\0"),
            Err(WireError::UnknownType(0x37))
        );
        // A NACK claiming 2^32 entries in a 20-byte datagram.
        let mut buf = b"md\x09\x21\0\0\0\0\0\0\0\0".to_vec();
        buf.extend_from_slice(&[5, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(parse(&buf).is_err());
    }

    #[test]
    fn a_nack_names_at_most_32_source_symbols_an_entry_and_256_in_all() {
        let nack = |entries: usize, named: usize| {
            let entry = |b| NackEntry {
                object: ObjectId(1),
                block: BlockNumber(b),
                need: named as u16,
                missing: (0..named as u16).collect(),
            };
            let msg = Control::Nack(Nack {
                node: NodeId(5),
                echo: Echo::default(),
                loss: 0,
                entries: (0..entries as u32).map(entry).collect(),
            });
            let mut buf = Vec::new();
            write_control(&mut buf, SessionId(1), &msg);
            parse(&buf).is_ok()
        };
        assert!(nack(8, MAX_NACK_MISSING), "256 named in all");
        assert!(!nack(1, MAX_NACK_MISSING + 1), "33 in one entry");
        assert!(!nack(9, MAX_NACK_MISSING), "288 in all");
    }

    #[test]
    fn every_prefix_of_a_valid_control_message_is_rejected_without_panic() {
        let msg = Control::Status(Status {
            node: NodeId(1),
            name: "host".into(),
            echo: Echo::default(),
            complete: false,
            verified: 3,
            missing: vec![ObjectId(4)],
            failed: vec![(ObjectId(5), FailReason::Io)],
            hook: None,
            signed: None,
        });
        let mut buf = Vec::new();
        write_control(&mut buf, SessionId(1), &msg);
        for len in 0..buf.len() {
            assert!(parse(&buf[..len]).is_err(), "prefix {len} accepted");
        }
    }
}

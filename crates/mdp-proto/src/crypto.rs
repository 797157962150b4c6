//! Session encryption: the per-session key, its delivery to each admitted
//! receiver, and the AEAD that seals the sender's datagrams
//! (docs/PROTOCOL.md §5c, docs/SECURITY.md).
//!
//! The construction is signed ephemeral Diffie-Hellman, as in TLS 1.3 or
//! UFTP, with the key wrapped per receiver:
//!
//! 1. The sender draws a fresh session key `K` and an ephemeral X25519 key
//!    pair for each push. Its ANNOUNCE carries the ephemeral public key and
//!    the AEAD's id, both covered by the push signature ([`crate::wire::push_claim`]).
//! 2. A receiver that trusts the signature draws its own ephemeral X25519
//!    pair and sends the public half in a KEYREQ signed with its identity.
//! 3. For a receiver whose name and key the sender expects, both sides
//!    compute the X25519 shared secret and derive, with HKDF-SHA256 over
//!    both ephemeral keys, both identities and the session id, a key
//!    encryption key and a feedback key ([`derive()`]). The sender sends `K`
//!    sealed under the first ([`wrap`]) in a KEY message; the receiver
//!    seals its feedback with the second ([`crate::auth::Sealer`]).
//! 4. The sender seals DATA, FLUSH and DONE with `K` ([`Cipher`]): the
//!    fixed header stays readable and is authenticated; the rest is
//!    encrypted. Each datagram carries a 64-bit counter, the nonce, that the
//!    sender never repeats under one `K`.
//!
//! Both key pairs live for one push only, and long-term keys only sign, so
//! a later leak of either side's identity does not open a recorded push
//! (forward secrecy). The secrets come from a [`SecretSource`] the caller
//! seeds from the operating system: the core draws no randomness itself.

use crate::ids::{NodeId, SessionId};
use crate::limits::{COMMON_HEADER_LEN, DATA_HEADER_LEN, ENC_FLAG, TRAILER_LEN};
use ring::aead::{self, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use ring::hkdf;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Bytes of an AEAD tag.
pub const TAG_LEN: usize = 16;

/// The AEAD that seals a session's datagrams, as its id travels on the
/// wire. Both use 256-bit keys and 96-bit nonces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Aead {
    /// AES-256-GCM: the choice where the CPU has AES and carry-less
    /// multiply instructions, where it is the faster of the two
    /// (docs/BENCHMARKS-HISTORY.md, `examples/aead_speed.rs`).
    Aes256Gcm,
    /// ChaCha20-Poly1305: the choice on CPUs without them.
    ChaCha20Poly1305,
}

impl Aead {
    /// The faster AEAD on this CPU (decided by the caller, which may look
    /// at CPU features: the core reads none).
    pub fn preferred(cpu_has_aes: bool) -> Aead {
        if cpu_has_aes {
            Aead::Aes256Gcm
        } else {
            Aead::ChaCha20Poly1305
        }
    }

    /// Its name in reports and logs.
    /// Its id in a push claim and in the key agreement's info (1, 2).
    pub fn wire_id(self) -> u8 {
        match self {
            Aead::Aes256Gcm => 1,
            Aead::ChaCha20Poly1305 => 2,
        }
    }

    /// Its name, as reports show it.
    pub fn name(self) -> &'static str {
        match self {
            Aead::Aes256Gcm => "AES-256-GCM",
            Aead::ChaCha20Poly1305 => "ChaCha20-Poly1305",
        }
    }

    fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Aead::Aes256Gcm => &aead::AES_256_GCM,
            Aead::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }

    fn key(self, key: &[u8; 32]) -> LessSafeKey {
        LessSafeKey::new(
            UnboundKey::new(self.algorithm(), key).expect("32-byte key for a 256-bit AEAD"),
        )
    }
}

/// Secrets for one push after another, from one seed the caller drew from
/// the operating system. Each draw also moves the seed on through a
/// one-way function, so a copy of the state taken later cannot recompute
/// the secrets of earlier pushes.
#[derive(Clone)]
pub struct SecretSource([u8; 32]);

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretSource(…)")
    }
}

impl SecretSource {
    /// A source seeded with 32 bytes of OS randomness (fixed bytes only in
    /// tests and the simulator).
    pub fn new(seed: [u8; 32]) -> SecretSource {
        SecretSource(seed)
    }

    /// A secret for `label` in `session`.
    pub fn draw(&mut self, label: &str, session: SessionId) -> [u8; 32] {
        let out = blake3::Hasher::new_keyed(&self.0)
            .update(b"mdp secret\0")
            .update(label.as_bytes())
            .update(&[0])
            .update(&session.0.to_be_bytes())
            .finalize();
        self.0 = *blake3::Hasher::new_keyed(&self.0)
            .update(b"mdp ratchet\0")
            .finalize()
            .as_bytes();
        *out.as_bytes()
    }
}

/// An ephemeral X25519 key pair, for one push.
pub struct Ephemeral {
    secret: x25519_dalek::StaticSecret,
    public: [u8; 32],
}

impl fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ephemeral({:02x?}…)", &self.public[..4])
    }
}

impl Ephemeral {
    /// The pair whose secret is `bytes` (clamped as X25519 requires).
    pub fn from_secret(bytes: [u8; 32]) -> Ephemeral {
        let secret = x25519_dalek::StaticSecret::from(bytes);
        let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
        Ephemeral { secret, public }
    }

    /// The public half, as it travels.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// The shared secret with `theirs`; `None` when `theirs` is a point
    /// of small order (the result would not depend on our secret).
    pub fn agree(&self, theirs: &[u8; 32]) -> Option<[u8; 32]> {
        let shared = self
            .secret
            .diffie_hellman(&x25519_dalek::PublicKey::from(*theirs));
        shared.was_contributory().then(|| shared.to_bytes())
    }
}

/// Who agreed on a shared secret: the inputs [`derive()`] binds its keys to.
#[derive(Clone, Copy, Debug)]
pub struct Transcript<'a> {
    /// The push.
    pub session: SessionId,
    /// The sender's ephemeral public key (from the ANNOUNCE).
    pub sender_eph: &'a [u8; 32],
    /// The receiver's ephemeral public key (from its KEYREQ).
    pub receiver_eph: &'a [u8; 32],
    /// The sender's Ed25519 identity (the push's signer).
    pub sender_id: &'a [u8; 32],
    /// The receiver's Ed25519 identity (its KEYREQ's signer).
    pub receiver_id: &'a [u8; 32],
    /// The receiver's node id (its KEYREQ's): the keys are this node's
    /// alone, not any other node of the same identity.
    pub node: NodeId,
    /// The push's AEAD: keys agreed for one never serve the other.
    pub aead: Aead,
}

/// The keys one sender–receiver agreement yields.
#[derive(Clone)]
pub struct PeerKeys {
    /// Seals the session key for this receiver ([`wrap`]).
    pub kek: [u8; 32],
    /// Seals this receiver's feedback ([`crate::auth::Sealer`]).
    pub feedback: crate::auth::Key,
}

impl fmt::Debug for PeerKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PeerKeys(…)")
    }
}

/// HKDF salt: the construction's name and version.
const HKDF_SALT: &[u8] = b"mdp key agreement v6";

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA256 (RFC 5869) of `shared` with the transcript as info: 64
/// bytes, the key encryption key then the feedback key.
pub fn derive(shared: &[u8; 32], t: &Transcript<'_>) -> PeerKeys {
    let session = t.session.0.to_be_bytes();
    let node = t.node.0.to_be_bytes();
    let aead = [t.aead.wire_id()];
    let info: [&[u8]; 7] = [
        &session,
        t.sender_eph,
        t.receiver_eph,
        t.sender_id,
        t.receiver_id,
        &node,
        &aead,
    ];
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(shared);
    let mut okm = [0u8; 64];
    prk.expand(&info, Len(64))
        .expect("64 bytes is within HKDF-SHA256's limit")
        .fill(&mut okm)
        .expect("length matches");
    let mut kek = [0u8; 32];
    kek.copy_from_slice(&okm[..32]);
    let mut feedback = [0u8; 32];
    feedback.copy_from_slice(&okm[32..]);
    PeerKeys {
        kek,
        feedback: crate::auth::Key::from_bytes(feedback),
    }
}

fn wrap_aad(session: SessionId, node: NodeId) -> [u8; 28] {
    let mut aad = [0u8; 28];
    aad[..12].copy_from_slice(b"mdp key v6\0\0");
    aad[12..20].copy_from_slice(&session.0.to_be_bytes());
    aad[20..].copy_from_slice(&node.0.to_be_bytes());
    aad
}

/// The session key sealed for one receiver: ciphertext and tag. The
/// nonce is zero: each key encryption key seals exactly one plaintext
/// (the same `K`, however often it is re-sent).
pub fn wrap(
    aead: Aead,
    kek: &[u8; 32],
    session: SessionId,
    node: NodeId,
    key: &[u8; 32],
) -> ([u8; 32], [u8; TAG_LEN]) {
    let mut ct = *key;
    let tag = aead
        .key(kek)
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(wrap_aad(session, node)),
            &mut ct,
        )
        .expect("32 bytes is within the AEAD's limit");
    let mut t = [0u8; TAG_LEN];
    t.copy_from_slice(tag.as_ref());
    (ct, t)
}

/// Opens what [`wrap`] sealed; `None` when it was not sealed for this
/// receiver's agreement.
pub fn unwrap(
    aead: Aead,
    kek: &[u8; 32],
    session: SessionId,
    node: NodeId,
    ct: &[u8; 32],
    tag: &[u8; TAG_LEN],
) -> Option<[u8; 32]> {
    let mut buf = [0u8; 32 + TAG_LEN];
    buf[..32].copy_from_slice(ct);
    buf[32..].copy_from_slice(tag);
    let plain = aead
        .key(kek)
        .open_in_place(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(wrap_aad(session, node)),
            &mut buf,
        )
        .ok()?;
    let mut key = [0u8; 32];
    key.copy_from_slice(plain);
    Some(key)
}

/// The length of the clear header of a sealed datagram whose type byte is
/// `ty`: the DATA header for DATA, the common header for control messages.
fn clear_header_len(ty: u8) -> usize {
    if ty & !(ENC_FLAG | crate::limits::AUTH_FLAG) == crate::wire::PacketType::Data as u8 {
        DATA_HEADER_LEN
    } else {
        COMMON_HEADER_LEN
    }
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// Why a sealed datagram was not opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Too short for its header and trailer.
    Truncated,
    /// The tag does not match: forged, corrupt, or another session's key.
    BadTag,
}

/// A session key in use: seals the sender's datagrams, opens them at
/// receivers.
pub struct Cipher {
    aead: Aead,
    key: LessSafeKey,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cipher({})", self.aead.name())
    }
}

impl Cipher {
    /// The cipher of session key `key`.
    pub fn new(aead: Aead, key: &[u8; 32]) -> Cipher {
        Cipher {
            aead,
            key: aead.key(key),
        }
    }

    /// Its AEAD.
    pub fn aead(&self) -> Aead {
        self.aead
    }

    /// Seals the datagram `buf[start..]` (the last in `buf`): sets
    /// [`ENC_FLAG`], encrypts everything after its clear header with the
    /// header as associated data, and appends `counter` and the tag
    /// ([`TRAILER_LEN`] bytes). `counter` must never repeat under one key.
    pub fn seal(&self, buf: &mut Vec<u8>, start: usize, counter: u64) {
        let ty_at = start + crate::limits::field::TYPE;
        buf[ty_at] |= ENC_FLAG;
        let header = clear_header_len(buf[ty_at]);
        let (head, body) = buf[start..].split_at_mut(header);
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce(counter), Aad::from(&*head), body)
            .expect("a datagram is within the AEAD's limit");
        buf.extend_from_slice(&counter.to_be_bytes());
        buf.extend_from_slice(tag.as_ref());
    }

    /// Opens a datagram [`Cipher::seal`] made: writes its clear header
    /// (the flag still set) and plaintext into `out` (cleared first) and
    /// returns its counter.
    pub fn open(&self, datagram: &[u8], out: &mut Vec<u8>) -> Result<u64, OpenError> {
        out.clear();
        out.extend_from_slice(datagram);
        let (counter, len) = self.open_in_place(out)?;
        out.truncate(len);
        Ok(counter)
    }

    /// Opens a datagram [`Cipher::seal`] made where it lies: returns its
    /// counter and the length of its clear header (the flag still set) and
    /// plaintext, which then begin `datagram`. What `datagram` holds after
    /// an error is unspecified.
    pub fn open_in_place(&self, datagram: &mut [u8]) -> Result<(u64, usize), OpenError> {
        let ty = *datagram
            .get(crate::limits::field::TYPE)
            .ok_or(OpenError::Truncated)?;
        let header = clear_header_len(ty);
        if datagram.len() < header + TRAILER_LEN {
            return Err(OpenError::Truncated);
        }
        let body_end = datagram.len() - TRAILER_LEN;
        let (sealed, trailer) = datagram.split_at_mut(body_end);
        let (counter, tag) = trailer.split_at(8);
        let counter = u64::from_be_bytes(counter.try_into().expect("8 bytes"));
        let tag = Tag::try_from(tag).map_err(|_| OpenError::Truncated)?;
        let (head, body) = sealed.split_at_mut(header);
        let plain_len = self
            .key
            .open_in_place_separate_tag(nonce(counter), Aad::from(&*head), tag, body, 0..)
            .map_err(|_| OpenError::BadTag)?
            .len();
        Ok((counter, header + plain_len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{self, Control, DataHeader, Done};

    fn transcript<'a>(
        s: &'a [u8; 32],
        r: &'a [u8; 32],
        sid: &'a [u8; 32],
        rid: &'a [u8; 32],
    ) -> Transcript<'a> {
        Transcript {
            session: SessionId(9),
            sender_eph: s,
            receiver_eph: r,
            sender_id: sid,
            receiver_id: rid,
            node: NodeId(3),
            aead: Aead::Aes256Gcm,
        }
    }

    #[test]
    fn both_sides_agree_and_the_wrapped_key_opens_only_for_its_receiver() {
        let mut src = SecretSource::new([1; 32]);
        let s = Ephemeral::from_secret(src.draw("sender eph", SessionId(9)));
        let r = Ephemeral::from_secret(src.draw("receiver eph", SessionId(9)));
        let (sp, rp) = (s.public(), r.public());
        let (sid, rid) = ([5; 32], [6; 32]);
        let ks = derive(&s.agree(&rp).unwrap(), &transcript(&sp, &rp, &sid, &rid));
        let kr = derive(&r.agree(&sp).unwrap(), &transcript(&sp, &rp, &sid, &rid));
        assert_eq!(ks.kek, kr.kek);
        assert_eq!(ks.feedback, kr.feedback);
        // Another identity in the transcript: other keys.
        let other = derive(
            &r.agree(&sp).unwrap(),
            &transcript(&sp, &rp, &sid, &[7; 32]),
        );
        assert_ne!(other.kek, ks.kek);
        let k = [0xaa; 32];
        for aead in [Aead::Aes256Gcm, Aead::ChaCha20Poly1305] {
            let (ct, tag) = wrap(aead, &ks.kek, SessionId(9), NodeId(3), &k);
            assert_ne!(ct, k);
            assert_eq!(
                unwrap(aead, &kr.kek, SessionId(9), NodeId(3), &ct, &tag),
                Some(k)
            );
            assert_eq!(
                unwrap(aead, &other.kek, SessionId(9), NodeId(3), &ct, &tag),
                None
            );
            assert_eq!(
                unwrap(aead, &kr.kek, SessionId(9), NodeId(4), &ct, &tag),
                None
            );
        }
        // A small-order point agrees on nothing.
        assert_eq!(s.agree(&[0; 32]), None);
    }

    #[test]
    fn secrets_differ_per_draw_and_the_source_moves_on() {
        let mut a = SecretSource::new([1; 32]);
        let mut b = SecretSource::new([1; 32]);
        let x = a.draw("k", SessionId(1));
        assert_eq!(x, b.draw("k", SessionId(1)));
        assert_ne!(x, a.draw("k", SessionId(1)));
        assert_ne!(b.draw("k", SessionId(2)), b.draw("j", SessionId(2)));
        assert_eq!(format!("{a:?}"), "SecretSource(…)");
    }

    #[test]
    fn sealed_datagrams_hide_their_body_and_open_only_unchanged() {
        for aead in [Aead::Aes256Gcm, Aead::ChaCha20Poly1305] {
            let c = Cipher::new(aead, &[3; 32]);
            let header = DataHeader {
                session: SessionId(9),
                object: crate::ids::ObjectId(1),
                block: crate::ids::BlockNumber(2),
                esi: crate::ids::SymbolId(3),
                flags: 0,
                seq: 4,
            };
            let payload = b"secret symbol bytes".repeat(10);
            let mut buf = vec![0xee; 5];
            wire::write_data(&mut buf, &header, &payload);
            c.seal(&mut buf, 5, 77);
            let dgram = &buf[5..];
            assert_eq!(dgram.len(), DATA_HEADER_LEN + payload.len() + TRAILER_LEN);
            assert!(!dgram.windows(13).any(|w| w == b"secret symbol"));
            let mut out = Vec::new();
            assert_eq!(c.open(dgram, &mut out), Ok(77));
            match wire::parse(&out).unwrap() {
                wire::Packet::Data {
                    header: h,
                    payload: p,
                } => {
                    assert_eq!(h, header);
                    assert_eq!(p, &payload[..]);
                }
                other => panic!("{other:?}"),
            }
            // Opened where it lies: the same header and plaintext.
            let mut inplace = dgram.to_vec();
            let (counter, len) = c.open_in_place(&mut inplace).unwrap();
            assert_eq!((counter, &inplace[..len]), (77, &out[..]));
            // Any changed byte, header or body or counter, fails.
            for i in [3, 13, 27, 40, dgram.len() - 20, dgram.len() - 1] {
                let mut forged = dgram.to_vec();
                forged[i] ^= 1;
                assert_eq!(
                    c.open(&forged, &mut out),
                    Err(OpenError::BadTag),
                    "byte {i}"
                );
                assert_eq!(c.open_in_place(&mut forged), Err(OpenError::BadTag));
            }
            assert_eq!(
                Cipher::new(aead, &[4; 32]).open(dgram, &mut out),
                Err(OpenError::BadTag)
            );
            assert_eq!(c.open(&dgram[..30], &mut out), Err(OpenError::Truncated));
            // A control message keeps only the common header clear.
            let mut buf = Vec::new();
            wire::write_control(
                &mut buf,
                SessionId(9),
                &Control::Done(Done { success: true }),
            );
            c.seal(&mut buf, 0, 78);
            assert_eq!(c.open(&buf, &mut out), Ok(78));
            assert!(matches!(
                wire::parse(&out),
                Ok(wire::Packet::Control {
                    message: Control::Done(Done { success: true }),
                    ..
                })
            ));
        }
    }
}

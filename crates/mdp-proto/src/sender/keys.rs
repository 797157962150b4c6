//! The sender's side of an encrypted push (crate::crypto): the session key
//! and ephemeral key pair, the KEY each admitted receiver is sent in
//! answer to its signed KEYREQ, the sealing of DATA, FLUSH and DONE (and
//! of a copy of each ANNOUNCE), and the opening of receivers' feedback
//! with each one's own feedback key.
//!
//! **Invariants:** a KEY goes only to a receiver whose KEYREQ was signed by
//! the key `--expect-file` lists for its name, and is computed once per
//! (node, ephemeral key): a replayed KEYREQ costs one map lookup and at
//! most one KEY every [`KEY_RESEND_GAP`]. A node id is bound to the name
//! (and so the key) of its first agreement, and a name has at most one
//! agreement at a time (a new node of the same identity replaces the
//! old one): agreements never outnumber the names expected by key. In an encrypted push, feedback
//! other than KEYREQ counts only when sealed with the feedback key of the
//! node it names, so no host without that receiver's agreement can speak
//! for it, and a forgery costs the sender one lookup and one keyed hash.

use super::*;
use crate::crypto::{self, Aead, Cipher, Ephemeral, SecretSource, Transcript};
use crate::wire::{Encryption, KeyRequest, KeyWrap};

/// Encryption settings of a sender (`SenderConfig::encryption`).
#[derive(Clone, Debug)]
pub struct EncryptionConfig {
    /// The AEAD (the caller picks the faster for its CPU,
    /// [`Aead::preferred`]).
    pub aead: Aead,
    /// Where the session key and ephemeral key come from: seeded by the
    /// caller from the operating system, afresh for every push (keys are
    /// drawn by session id, so a source reused with a session id reused
    /// would repeat them, and nonces with them).
    pub secrets: SecretSource,
}

/// Least time between two KEYs for the same receiver.
pub(super) const KEY_RESEND_GAP: Duration = Duration::from_millis(20);

/// One receiver's key agreement.
#[derive(Debug)]
struct Agreement {
    receiver_eph: [u8; 32],
    /// The name its KEYREQ was signed for.
    name: String,
    wrap: KeyWrap,
    feedback: crate::auth::Key,
    last_sent: Option<Instant>,
}

/// The sender's encryption state.
#[derive(Debug)]
pub(super) struct SenderKeys {
    aead: Aead,
    session_key: [u8; 32],
    cipher: Cipher,
    eph: Ephemeral,
    /// The next nonce counter: never repeats under `session_key`.
    counter: u64,
    agreements: HashMap<NodeId, Agreement>,
    /// The node of each name's agreement.
    by_name: HashMap<String, NodeId>,
    /// KEYs to send, in request order.
    due: VecDeque<KeyWrap>,
    /// The ANNOUNCE just sent in clear, to send sealed next: receivers that
    /// hold the session key take ANNOUNCE's changing fields (timing,
    /// acknowledgements, data position) only sealed.
    announce_copy: Option<Control>,
}

impl SenderKeys {
    pub(super) fn new(config: &EncryptionConfig, session: SessionId) -> SenderKeys {
        let mut secrets = config.secrets.clone();
        let session_key = secrets.draw("session key", session);
        let eph = Ephemeral::from_secret(secrets.draw("sender ephemeral", session));
        SenderKeys {
            aead: config.aead,
            cipher: Cipher::new(config.aead, &session_key),
            session_key,
            eph,
            counter: 1,
            agreements: HashMap::new(),
            by_name: HashMap::new(),
            due: VecDeque::new(),
            announce_copy: None,
        }
    }

    /// What the ANNOUNCE says (and the signature covers).
    pub(super) fn announced(&self) -> Encryption {
        Encryption {
            aead: self.aead,
            sender_eph: self.eph.public(),
        }
    }

    /// Seals an outgoing datagram at `buf[start..]` when it is one the
    /// session key covers (DATA, FLUSH, DONE).
    pub(super) fn seal(&mut self, buf: &mut Vec<u8>, start: usize) {
        let ty = buf[start + crate::limits::field::TYPE];
        let sealed = [
            wire::PacketType::Data,
            wire::PacketType::Flush,
            wire::PacketType::Done,
        ]
        .iter()
        .any(|t| *t as u8 == ty);
        if sealed {
            self.cipher.seal(buf, start, self.counter);
            self.counter += 1;
        }
    }

    /// Keeps `announce`, just sent in clear, to send sealed next.
    pub(super) fn copy_announce(&mut self, announce: &Control) {
        self.announce_copy = Some(announce.clone());
    }

    /// The next KEY to send, if any.
    pub(super) fn next_due(&mut self) -> Option<KeyWrap> {
        self.due.pop_front()
    }

    /// The feedback key of `node`, once it was sent its KEY.
    pub(super) fn feedback_key(&self, node: NodeId) -> Option<&crate::auth::Key> {
        self.agreements.get(&node).map(|a| &a.feedback)
    }

    /// The name `node` proved in its KEYREQ.
    pub(super) fn name_of(&self, node: NodeId) -> Option<&str> {
        self.agreements.get(&node).map(|a| a.name.as_str())
    }
}

impl Sender {
    /// The sealed copy of the ANNOUNCE last sent in clear, when one is due:
    /// written into `out`; true when it was.
    pub(super) fn write_sealed_announce(&mut self, out: &mut Gather) -> bool {
        let Some(keys) = self.keys.as_mut() else {
            return false;
        };
        let Some(announce) = keys.announce_copy.take() else {
            return false;
        };
        let buf = out.bytes_mut();
        let start = buf.len();
        wire::write_control(buf, self.config.session, &announce);
        keys.cipher.seal(buf, start, keys.counter);
        keys.counter += 1;
        self.pacer.force_take(buf.len() - start);
        out.end_datagram(start, None);
        true
    }

    /// A KEYREQ: answer an expected receiver with its KEY.
    pub(super) fn handle_key_request(&mut self, now: Instant, req: KeyRequest) {
        let Some(keys) = self.keys.as_mut() else {
            self.stats.ignored_received += 1;
            return;
        };
        if let Some(a) = keys.agreements.get_mut(&req.node) {
            if a.receiver_eph == req.receiver_eph {
                // Its KEY was lost (or this is a replay): the same bytes
                // again, at most every KEY_RESEND_GAP.
                if a.last_sent.is_none_or(|t| now >= t + KEY_RESEND_GAP) {
                    a.last_sent = Some(now);
                    keys.due.push_back(a.wrap);
                }
                return;
            }
        }
        let message = Control::KeyRequest(req);
        if !self.admitted(&message) {
            self.stats.unadmitted += 1;
            return;
        }
        let Control::KeyRequest(req) = message else {
            unreachable!("built above");
        };
        let keys = self.keys.as_mut().expect("checked above");
        // A node id keeps the name of its first agreement: no identity can
        // take over another's node (and its feedback key).
        if keys
            .agreements
            .get(&req.node)
            .is_some_and(|a| a.name != req.name)
        {
            self.stats.unadmitted += 1;
            return;
        }
        if !keys.agreements.contains_key(&req.node) && keys.agreements.len() >= MAX_PEERS {
            self.stats.unadmitted += 1;
            return;
        }
        let Some(shared) = keys.eph.agree(&req.receiver_eph) else {
            self.stats.unadmitted += 1;
            return;
        };
        let signer = self.signed.map(|s| s.signer).unwrap_or_default();
        let receiver_id = req.signed.as_ref().expect("admitted() checked it").key;
        let sender_eph = keys.eph.public();
        let peer = crypto::derive(
            &shared,
            &Transcript {
                session: self.config.session,
                sender_eph: &sender_eph,
                receiver_eph: &req.receiver_eph,
                sender_id: &signer,
                receiver_id: &receiver_id,
                node: req.node,
                aead: keys.aead,
            },
        );
        let (sealed_key, tag) = crypto::wrap(
            keys.aead,
            &peer.kek,
            self.config.session,
            req.node,
            &keys.session_key,
        );
        let wrap = KeyWrap {
            node: req.node,
            sealed_key,
            tag,
        };
        // One agreement per name: the same identity from a new node (a
        // restarted receiver) replaces its old one.
        if let Some(old) = keys.by_name.insert(req.name.clone(), req.node) {
            if old != req.node {
                keys.agreements.remove(&old);
            }
        }
        keys.agreements.insert(
            req.node,
            Agreement {
                receiver_eph: req.receiver_eph,
                name: req.name,
                wrap,
                feedback: peer.feedback,
                last_sent: Some(now),
            },
        );
        keys.due.push_back(wrap);
        self.stats.keys_sent += 1;
    }

    /// In an encrypted push: opens a receiver's sealed feedback with the
    /// feedback key of the node it names. `None` (counted) when it is not
    /// sealed by that node's key or repeats a counter; KEYREQ is taken
    /// unsealed (its signature is checked when it is handled).
    pub(super) fn open_feedback(&mut self, datagram: &[u8]) -> Option<Control> {
        let keys = self.keys.as_ref().expect("only in an encrypted push");
        let sealed = datagram.len() > crate::limits::field::TYPE
            && datagram[crate::limits::field::TYPE] & crate::limits::AUTH_FLAG != 0;
        if !sealed {
            return match wire::parse(datagram) {
                Ok(Packet::Control {
                    session,
                    message: message @ Control::KeyRequest(_),
                }) if session == self.config.session => Some(message),
                _ => {
                    self.stats.ignored_received += 1;
                    None
                }
            };
        }
        if datagram.len() < crate::limits::COMMON_HEADER_LEN + TRAILER_LEN {
            self.stats.auth_failed += 1;
            return None;
        }
        let inner = &datagram[..datagram.len() - TRAILER_LEN];
        let Ok(Packet::Control { session, message }) = wire::parse(inner) else {
            self.stats.auth_failed += 1;
            return None;
        };
        let Some(node) = message.feedback_node() else {
            self.stats.ignored_received += 1;
            return None;
        };
        let Some(key) = keys.feedback_key(node) else {
            self.stats.unadmitted += 1;
            return None;
        };
        let Ok((_, counter)) = auth::open(Some(key), datagram) else {
            self.stats.auth_failed += 1;
            return None;
        };
        if session != self.config.session {
            self.stats.ignored_received += 1;
            return None;
        }
        // A REGISTER or STATUS speaks under the name the KEYREQ proved.
        let named = match &message {
            Control::Register(m) => Some(&m.name),
            Control::Status(m) => Some(&m.name),
            _ => None,
        };
        if named.is_some_and(|n| Some(n.as_str()) != keys.name_of(node)) {
            self.stats.unadmitted += 1;
            return None;
        }
        // Bounded by the agreements, themselves bounded by MAX_PEERS.
        if !self.replay.entry(node).or_default().accept(counter) {
            self.stats.replayed += 1;
            return None;
        }
        Some(message)
    }
}

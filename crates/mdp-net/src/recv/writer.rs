//! The receiver's writer thread: it owns the [`Store`], rebuilds blocks
//! (the Reed-Solomon decodes run here, not on the socket loop), writes them,
//! and hands finished files to a verifier thread of its own.
//!
//! **Invariant:** the protocol task never touches the disk; the command
//! queue is bounded, so a disk slower than the network holds the protocol
//! task back instead of filling memory.

use crate::relay::Spool;
use crate::store::{BlockRejected, HeldBlocks, KnownContent, Placed, Store, Verified, Written};
use mdp_proto::fec::{Codec, CompleteBlock};
use mdp_proto::wire::FailReason;
use mdp_proto::{Manifest, ObjectId, SessionId};
use std::io;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// Commands (mostly finished blocks) queued for the writer thread at most.
pub(super) const WRITE_QUEUE: usize = 16;

/// Files the verifier checks before it flushes and places them (each holds
/// a descriptor meanwhile).
const VERIFY_BATCH: usize = 32;

pub(super) enum WriterCmd {
    /// A session: its manifest and bytes per full block.
    /// A session's manifest arrived: its block size, and whether it is a
    /// dry run (find what is held; change and create nothing).
    /// A push begins: session, manifest, block bytes, dry run, signed by
    /// a trusted key; for a relay, the spool its verified blocks also go
    /// to (and it holds nothing beforehand: nothing is reported present).
    Begin(
        SessionId,
        Arc<Manifest>,
        u64,
        bool,
        bool,
        Option<Arc<Spool>>,
    ),
    /// A file was verified and placed: remember it in the store's index
    /// (path, hashes, its metadata just after placing).
    Placed(String, KnownContent, Option<std::fs::Metadata>),
    Write(ObjectId, u64, CompleteBlock),
    Complete(ObjectId),
    /// Every file is placed or failed: make the tree final (directory
    /// modes and times; with `prune`, remove what the pushed directories
    /// hold beyond the manifest) before the receiver confirms.
    Settle {
        session: SessionId,
        prune: bool,
        links: bool,
    },
    /// The session ended.
    Finish,
}

/// A file's check and placement, as the verifier reports it.
pub(super) struct VerifiedFile {
    /// The session the file belongs to: its reply may come after the
    /// session ended and another began, and must not land in that one.
    pub(super) session: SessionId,
    pub(super) object: ObjectId,
    /// Its manifest path, and its hash and block hashes.
    pub(super) path: String,
    pub(super) hashes: KnownContent,
    /// Where it was placed, or why not.
    pub(super) result: Result<Placed, (FailReason, String)>,
}

impl VerifiedFile {
    /// The reply that reports it.
    fn reply(
        session: SessionId,
        object: ObjectId,
        (path, hashes): (String, KnownContent),
        result: Result<Placed, (FailReason, String)>,
    ) -> WriterReply {
        WriterReply::Verified(Box::new(VerifiedFile {
            session,
            object,
            path,
            hashes,
            result,
        }))
    }
}

pub(super) enum WriterReply {
    /// The files of the session that are already in place, the blocks of
    /// others an interrupted push left (`partial`), and the blocks of others
    /// found in the older version at their path (`from_old`).
    Present {
        session: SessionId,
        present: Vec<ObjectId>,
        partial: Vec<HeldBlocks>,
        from_old: Vec<HeldBlocks>,
    },
    /// The session cannot be taken (not enough disk space): why.
    Refuse(SessionId, String),
    Verified(Box<VerifiedFile>),
    BeginFailed(String),
    /// A rebuilt block did not match its hash and was not written: the
    /// session, the file and the block number.
    Rejected(SessionId, ObjectId, u32),
    /// The tree is final; what `--delete` removed; or why it could not be
    /// made final (then the push is not confirmed).
    Settled(SessionId, Vec<String>, Option<String>),
    Finished,
}

/// Owns the store: rebuilds blocks (the Reed-Solomon decodes run here, not
/// on the socket loop), writes them, and hands finished files to a verifier
/// thread, so that hashing a large file does not hold up the next writes.
fn writer(
    mut store: Store,
    cmds: mpsc::Receiver<WriterCmd>,
    replies: UnboundedSender<WriterReply>,
) {
    let mut codec = Codec::default();
    let dir = store.root().to_path_buf();
    let (verify_tx, verify_rx) = mpsc::channel::<(SessionId, ObjectId, Written)>();
    let verify_replies = replies.clone();
    let verifier = std::thread::Builder::new()
        .name("mdp-verifier".into())
        .spawn(move || {
            // What is queued is taken as a batch: each file checked and its
            // writeback started, then each flushed and placed, so that the
            // flushes of many small files overlap instead of queueing.
            while let Ok(first) = verify_rx.recv() {
                let mut batch = vec![first];
                while batch.len() < VERIFY_BATCH {
                    match verify_rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let checked: Vec<_> = batch
                    .into_iter()
                    .map(|(session, object, written)| {
                        let key = written.path_and_hashes();
                        (session, object, key, written.verify())
                    })
                    .collect();
                for (session, object, key, verified) in checked {
                    let result = verified.and_then(Verified::place);
                    if verify_replies
                        .send(VerifiedFile::reply(session, object, key, result))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
    // The session the files being written belong to.
    let mut current = SessionId(0);
    // A relay's spool for the current session.
    let mut spool: Option<Arc<Spool>> = None;
    for cmd in cmds {
        let reply = match cmd {
            WriterCmd::Begin(session, manifest, bytes, dry_run, signed, relay) => {
                current = session;
                store.set_push_signed(signed);
                spool = relay;
                match store.begin(session, manifest.clone(), bytes) {
                    // A relay takes every block (its receivers need them
                    // all): it reports holding nothing, and needs room for
                    // the push twice (its copy, and the spool).
                    Ok(_) if spool.is_some() => {
                        let needed = store.bytes_needed(&[], &[]).saturating_mul(2);
                        match store.free_bytes() {
                            Some(free) if needed > free => WriterReply::Refuse(
                                session,
                                format!(
                                    "refused the push: as a relay it needs {needed} bytes in {} (its copy and the relay's spool) and only {free} are free; free some space or use another --dir",
                                    dir.display()
                                ),
                            ),
                            _ => WriterReply::Present {
                                session,
                                present: Vec::new(),
                                partial: Vec::new(),
                                from_old: Vec::new(),
                            },
                        }
                    }
                    Ok(partial) if dry_run => {
                        let present = store.present_unchanged();
                        WriterReply::Present {
                            session,
                            present,
                            partial,
                            from_old: Vec::new(),
                        }
                    }
                    Ok(partial) => {
                        let present = store.present();
                        let from_old = store.start_from_old_versions(&present);
                        let held: Vec<_> = partial.iter().chain(&from_old).cloned().collect();
                        let needed = store.bytes_needed(&present, &held);
                        match store.free_bytes() {
                        Some(free) if needed > free => WriterReply::Refuse(
                            session,
                            format!(
                                "refused the push: it needs {needed} bytes in {} and only {free} are free; free some space or use another --dir",
                                dir.display()
                            ),
                        ),
                        _ => WriterReply::Present { session, present, partial, from_old },
                    }
                    }
                    Err(e) => WriterReply::BeginFailed(e.to_string()),
                }
            }
            WriterCmd::Placed(path, hashes, stamp) => {
                store.placed(&path, hashes, stamp.as_ref());
                continue;
            }
            WriterCmd::Write(object, offset, block) => match block.into_bytes(&mut codec) {
                Ok(data) => match store.write_checked_block(object, offset, data.as_ref()) {
                    Ok(checked) => {
                        // Only bytes that matched their hash are passed on.
                        if let Some(s) = &spool {
                            if checked || store.block_matches(object, offset, data.as_ref()) {
                                s.put(object, offset, data.as_ref());
                            }
                        }
                        continue;
                    }
                    Err(BlockRejected { block }) => WriterReply::Rejected(current, object, block),
                },
                Err(e) => {
                    store.fail(object, io::Error::other(e));
                    continue;
                }
            },
            // A block of the file was rejected and is being received again:
            // it is checked once that block is written.
            WriterCmd::Complete(object) if store.lacks_blocks(object) => continue,
            WriterCmd::Complete(object) => match (store.written(object), &verifier) {
                (Ok(written), Ok(_)) => {
                    let _ = verify_tx.send((current, object, written));
                    continue;
                }
                // No verifier thread could be started: verify here.
                (Ok(written), Err(_)) => {
                    let key = written.path_and_hashes();
                    let result = written.verify().and_then(Verified::place);
                    VerifiedFile::reply(current, object, key, result)
                }
                (Err(e), _) => VerifiedFile::reply(current, object, Default::default(), Err(e)),
            },
            WriterCmd::Settle {
                session,
                prune,
                links,
            } => {
                let removed = store.settle(prune, links);
                WriterReply::Settled(session, removed, store.take_settle_problem())
            }
            WriterCmd::Finish => {
                // The relay's sender gets no more blocks of it (after
                // every block queued before: reads of blocks it never got
                // fail; what it holds is still read).
                if let Some(s) = spool.take() {
                    s.close("the push ended upstream before the relay held every block");
                }
                store.finish();
                WriterReply::Finished
            }
        };
        if replies.send(reply).is_err() {
            break;
        }
    }
    drop(verify_tx);
    if let Ok(v) = verifier {
        let _ = v.join();
    }
}

/// The writer thread and its two channels.
pub(super) struct Writer {
    pub(super) cmds: mpsc::SyncSender<WriterCmd>,
    pub(super) replies: UnboundedReceiver<WriterReply>,
    thread: JoinHandle<()>,
}

impl Writer {
    /// Starts the writer thread over `store`.
    pub(super) fn spawn(store: Store) -> io::Result<Writer> {
        // Bounded: when the disk is slower than the network, the protocol task
        // waits here (and the kernel drops what overflows the socket buffer,
        // which NACKs repair) instead of queueing blocks in memory without end.
        let (cmds, cmd_rx) = mpsc::sync_channel(WRITE_QUEUE);
        let (reply_tx, replies) = tokio::sync::mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("mdp-writer".into())
            .spawn(move || writer(store, cmd_rx, reply_tx))?;
        Ok(Writer {
            cmds,
            replies,
            thread,
        })
    }

    /// Closes the command channel and waits for the writer to finish.
    pub(super) fn join(self) {
        drop(self.cmds);
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdp_proto::{Entry, EntryKind};

    /// A file's verification may end after its push did and the next one
    /// began (with the same object numbers): its reply names its own push,
    /// so that the driver does not hand it to the next.
    #[test]
    fn a_verification_result_names_the_push_of_its_file() {
        let root = crate::test_dir("writer-session");
        let writer = Writer::spawn(Store::open(&root).unwrap()).unwrap();
        let manifest = Arc::new(Manifest::new(vec![Entry {
            path: "empty".into(),
            kind: EntryKind::File {
                size: 0,
                hash: *blake3::hash(&[]).as_bytes(),
                blocks: Vec::new(),
            },
            mode: 0o644,
            mtime_secs: 0,
            mtime_nanos: 0,
            owner: 0,
        }]));
        let (first, second) = (SessionId(1), SessionId(2));
        let Writer {
            cmds,
            mut replies,
            thread,
        } = writer;
        cmds.send(WriterCmd::Begin(
            first,
            manifest.clone(),
            4096,
            false,
            true,
            None,
        ))
        .unwrap();
        cmds.send(WriterCmd::Complete(ObjectId(1))).unwrap();
        cmds.send(WriterCmd::Begin(second, manifest, 4096, false, true, None))
            .unwrap();
        drop(cmds);
        let mut verified = None;
        while let Some(reply) = replies.blocking_recv() {
            if let WriterReply::Verified(v) = reply {
                verified = Some(v);
            }
        }
        thread.join().unwrap();
        let v = verified.expect("a verification result");
        assert_eq!(v.session, first);
        assert_eq!(v.object, ObjectId(1));
        // Placed or not (the next push's start may clear the temporary
        // area first), the result is the first push's.
        if let Ok(placed) = &v.result {
            assert!(placed.stamp.is_some());
        }
    }
}

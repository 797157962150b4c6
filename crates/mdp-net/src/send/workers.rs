//! The sender's two helper threads: a reader that reads whole blocks from
//! the files on request, and an encoder that computes parity symbols, so
//! that the loop that sends never waits for a disk read or a Reed-Solomon
//! encode.
//!
//! **Invariant:** a block of a file that changed since it was hashed is
//! never handed to the state machine: the reader compares the file's
//! identity after each read.

use crate::relay::Spool;
use crate::stamp::FileId;
use mdp_proto::fec::{Codec, ParityJob};
use mdp_proto::{BlockNumber, ObjectId};
use std::fs::File;
use std::io::{self, Read, Seek};
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// Where the reader takes blocks from.
pub(crate) enum BlockSource {
    /// The pushed files, with what each looked like when it was hashed.
    Files {
        /// Local path of each file object: `files[i]` is object `i + 1`.
        files: Vec<PathBuf>,
        /// What each looked like when it was hashed.
        seen: Vec<FileId>,
    },
    /// A relay's spool: a block is handed over once the relay holds it.
    Spool(Arc<Spool>),
}

/// A block the state machine asked for ([`mdp_proto::SenderRequest::ReadBlock`]).
pub(super) struct ReadRequest {
    pub(super) object: ObjectId,
    pub(super) block: BlockNumber,
    pub(super) offset: u64,
    pub(super) len: usize,
}

/// A block read, or the file and the error that stopped it.
pub(super) type ReadDone = (ObjectId, BlockNumber, Result<Vec<u8>, (PathBuf, io::Error)>);

/// A parity job and what it computed.
pub(super) type ParityDone = (ObjectId, BlockNumber, ParityJob, Vec<u8>);

/// The error a block read returns when its file is no longer the one that
/// was hashed.
fn changed() -> io::Error {
    io::Error::other(CHANGED)
}

/// What a block read of a changed file fails with.
pub(super) const CHANGED: &str =
    "it changed while it was being pushed (size, mtime or ctime moved)";

/// The reader and encoder threads and their channels. Dropping the request
/// sides ends the threads; [`Workers::join`] waits for them.
pub(super) struct Workers {
    pub(super) reads: mpsc::Sender<ReadRequest>,
    pub(super) read_done: UnboundedReceiver<ReadDone>,
    pub(super) jobs: mpsc::Sender<(ObjectId, BlockNumber, ParityJob)>,
    pub(super) parity_done: UnboundedReceiver<ParityDone>,
    reader: JoinHandle<()>,
    encoder: JoinHandle<()>,
}

impl Workers {
    /// Starts the reader over `source` and the encoder.
    pub(super) fn spawn(source: BlockSource) -> io::Result<Workers> {
        let (reads, req_rx) = mpsc::channel();
        let (done_tx, read_done) = unbounded_channel();
        let reader = std::thread::Builder::new()
            .name("mdp-reader".into())
            .spawn(move || match source {
                BlockSource::Files { files, seen } => reader(files, seen, req_rx, done_tx),
                BlockSource::Spool(spool) => spool_reader(&spool, req_rx, done_tx),
            })?;
        let (jobs, job_rx) = mpsc::channel();
        let (parity_tx, parity_done) = unbounded_channel();
        let encoder = std::thread::Builder::new()
            .name("mdp-encoder".into())
            .spawn(move || encoder(job_rx, parity_tx))?;
        Ok(Workers {
            reads,
            read_done,
            jobs,
            parity_done,
            reader,
            encoder,
        })
    }

    /// Closes the request channels and waits for both threads to end.
    pub(super) fn join(self) {
        let Workers {
            reads,
            jobs,
            reader,
            encoder,
            ..
        } = self;
        drop(reads);
        drop(jobs);
        let _ = reader.join();
        let _ = encoder.join();
    }
}

/// Reads blocks on its own thread; keeps the current file open. Each block
/// is checked against what the file looked like when it was hashed: a block
/// of a changed file is never sent.
fn reader(
    files: Vec<PathBuf>,
    seen: Vec<FileId>,
    requests: mpsc::Receiver<ReadRequest>,
    done: UnboundedSender<ReadDone>,
) {
    let mut open: Option<(ObjectId, File)> = None;
    for r in requests {
        let i = r.object.0 as usize - 1;
        let path = &files[i];
        let result = (|| {
            if open.as_ref().is_none_or(|(o, _)| *o != r.object) {
                open = Some((r.object, File::open(path)?));
            }
            let (_, f) = open.as_ref().expect("opened above");
            // Read into spare capacity: no zeroing of a buffer that the
            // read overwrites anyway (a block is hundreds of kilobytes).
            let mut buf = Vec::with_capacity(r.len);
            let mut f = f;
            f.seek(io::SeekFrom::Start(r.offset))?;
            f.take(r.len as u64).read_to_end(&mut buf)?;
            if buf.len() < r.len {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            // After the read: a change during it shows too.
            let now = FileId::of(&f.metadata()?);
            if seen.get(i).is_some_and(|s| now != *s) {
                return Err(changed());
            }
            Ok(buf)
        })();
        let result = result.map_err(|e: io::Error| (path.clone(), e));
        if done.send((r.object, r.block, result)).is_err() {
            return;
        }
    }
}

/// A relay's reader: hands each block over as soon as the spool holds it;
/// a block not here yet waits apart, so that a repair of an earlier block
/// is not held up behind it.
fn spool_reader(
    spool: &Spool,
    requests: mpsc::Receiver<ReadRequest>,
    done: UnboundedSender<ReadDone>,
) {
    let mut waiting: Vec<ReadRequest> = Vec::new();
    loop {
        if waiting.is_empty() {
            match requests.recv() {
                Ok(r) => waiting.push(r),
                Err(_) => return,
            }
        }
        loop {
            match requests.try_recv() {
                Ok(r) => waiting.push(r),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        let mut still = Vec::with_capacity(waiting.len());
        for r in waiting.drain(..) {
            match spool.try_read(r.object, r.offset, r.len) {
                Some(result) => {
                    let result = result.map_err(|e| (PathBuf::from("the relay's spool"), e));
                    if done.send((r.object, r.block, result)).is_err() {
                        return;
                    }
                }
                None => still.push(r),
            }
        }
        waiting = still;
        if !waiting.is_empty() {
            spool.wait(std::time::Duration::from_millis(5));
        }
    }
}

/// Computes parity symbols on its own thread, so that the loop that sends
/// never waits for a Reed-Solomon encode.
fn encoder(
    jobs: mpsc::Receiver<(ObjectId, BlockNumber, ParityJob)>,
    done: UnboundedSender<ParityDone>,
) {
    let mut codec = Codec::default();
    for (object, block, job) in jobs {
        let symbols = job
            .run(&mut codec)
            .expect("the sender validated its coding parameters");
        if done.send((object, block, job, symbols)).is_err() {
            return;
        }
    }
}

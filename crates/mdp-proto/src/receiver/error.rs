//! Why a session ended badly ([`SessionError`]) and why a receiver refused a
//! push ([`Refusal`]): enums a caller can match, whose `Display` is the
//! one-line message the receiver's report prints.
//!
//! **Invariant:** every message is one line that says what went wrong and,
//! where the receiver's settings decide it, which option to change.

use crate::limits::MAX_SESSION_BLOCKS;
use crate::manifest::ManifestError;
use std::time::Duration;
use thiserror::Error;

/// Why a session did not end complete ([`super::SessionOutcome::problem`]).
///
/// The variants that carry paths are boxed so that the enum stays the size
/// of the `String` it replaced: outcomes travel inside the drivers' enums.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SessionError {
    /// The sender's `--dry-run`: this receiver told it what it holds;
    /// nothing was sent or written.
    #[error("a dry run: the sender learnt what this receiver holds; nothing was sent")]
    DryRun,
    /// Nothing came from the sender for the idle timeout.
    #[error("the sender went silent for {}s", .idle.as_secs())]
    SenderSilent {
        /// The idle timeout that ran out.
        idle: Duration,
    },
    /// The push was encrypted and the sender never sent this receiver the
    /// session key: its name and key are not in the sender's
    /// `--expect-file`.
    #[error("the push was encrypted and the sender did not admit this receiver: add its name and public key (mdp-recv --fingerprint) to the sender's --expect-file")]
    NotAdmitted,
    /// The sender fell silent and another push was announced meanwhile.
    #[error("the sender went silent for {:.1}s and another push began", .silent.as_secs_f64())]
    Superseded {
        /// How long the sender had been silent.
        silent: Duration,
    },
    /// The sender ended the session before every file was delivered.
    #[error("the sender ended the session with {verified} of {files} files delivered")]
    Incomplete {
        /// Files verified and placed.
        verified: u32,
        /// Files in the session.
        files: u32,
    },
    /// Every file arrived, but the caller could not make the tree final
    /// (a flush failed, an atomic switch could not be made): the push is
    /// reported failed, not confirmed.
    #[error("the tree could not be made final: {0}")]
    NotSettled(String),
    /// Every file is final, but some failed for good.
    #[error("{count} files failed")]
    FilesFailed {
        /// How many.
        count: usize,
    },
    /// The manifest was rebuilt three times and never matched the hash the
    /// sender announced.
    #[error("the manifest never matched its hash")]
    ManifestHash,
    /// The manifest lists another number of files than the sender announced.
    #[error("rejected the manifest: wrong file count")]
    ManifestFileCount,
    /// The manifest lists more entries than this receiver decodes (twice
    /// its file limit: files and as many directories), found before
    /// decoding it.
    #[error("refused the push: its manifest lists {entries} entries, more than this receiver decodes ({limit}, twice --max-files)")]
    ManifestTooLarge {
        /// Entries the manifest claims.
        entries: u64,
        /// This receiver's limit.
        limit: u64,
    },
    /// The manifest did not decode, or failed validation.
    #[error("rejected the manifest: {0}")]
    Manifest(Box<ManifestError>),
    /// This receiver refused the push.
    #[error(transparent)]
    Refused(Box<Refusal>),
}

impl From<ManifestError> for SessionError {
    fn from(e: ManifestError) -> Self {
        SessionError::Manifest(Box::new(e))
    }
}

impl From<Refusal> for SessionError {
    fn from(r: Refusal) -> Self {
        SessionError::Refused(Box::new(r))
    }
}

/// Why this receiver refused a push: its limits (checked when the manifest
/// arrives) or its caller ([`super::Receiver::refuse`]).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Refusal {
    /// More blocks than a receiver's maps track.
    #[error("refused the push: {blocks} blocks is more than a receiver tracks ({MAX_SESSION_BLOCKS}); use larger symbols or blocks")]
    TooManyBlocks {
        /// Blocks in the push.
        blocks: u64,
    },
    /// The push is larger than `max_push_bytes`.
    #[error("refused the push: its {total} bytes are more than this receiver accepts (--max-push-size {max})")]
    PushTooLarge {
        /// Bytes in the push.
        total: u64,
        /// The limit.
        max: u64,
    },
    /// The push has more files and directories than `max_files`.
    #[error("refused the push: its {files} files and directories are more than this receiver accepts (--max-files {max})")]
    TooManyFiles {
        /// Files and directories in the push.
        files: u32,
        /// The limit.
        max: u32,
    },
    /// A file is larger than `max_file_bytes`.
    #[error("refused the push: {path} is {size} bytes, more than this receiver accepts (--max-file-size {max})")]
    FileTooLarge {
        /// The file's path.
        path: String,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A path is deeper than `max_path_depth`.
    #[error("refused the push: {path} is {depth} levels deep, more than this receiver accepts (--max-path-depth {max})")]
    PathTooDeep {
        /// The path.
        path: String,
        /// Its components.
        depth: usize,
        /// The limit.
        max: usize,
    },
    /// A path is longer than `max_path_len`.
    #[error("refused the push: a path of {len} bytes is longer than this receiver accepts (--max-path-len {max})")]
    PathTooLong {
        /// The path's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The caller cannot take the push (not enough disk space, a directory
    /// in the way), in its own one-line words.
    #[error("{0}")]
    Caller(String),
}

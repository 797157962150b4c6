//! The sender's settings ([`SenderConfig`]) and why they can be refused
//! ([`ConfigError`]): checked once, in [`SenderConfig::validate`], before a
//! session starts.

use super::*;

/// Sender settings. [`SenderConfig::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct SenderConfig {
    /// This session's id (random per push).
    pub session: SessionId,
    /// Symbol size in bytes; even, 16..=[`crate::limits::MAX_SYMBOL_SIZE`].
    pub symbol_size: u16,
    /// Source symbols per block (k).
    pub block_k: u16,
    /// Parity symbols defined per block (r).
    pub parity: u16,
    /// Parity symbols sent with every block before any NACK.
    pub proactive: u16,
    /// Send rate (UDP payload bits per second): fixed, or adaptive.
    pub rate: RateMode,
    /// Receivers to wait for (0: open group). Ignored when `expected_names`
    /// is not empty.
    pub expected_receivers: u32,
    /// A closed group: the names of the receivers that must confirm. The
    /// sender starts sending as soon as all of them registered, and the push
    /// succeeds only when all of them confirmed every file; receivers with
    /// other names are served and reported but do not count.
    pub expected_names: Vec<String>,
    /// Receivers known by key (`mdp-send --expect-file`): each name's
    /// public key. When not empty, only feedback signed by the key listed
    /// for its name counts (peers.rs, `admitted`), and `expected_names`
    /// holds the same names.
    pub expected_keys: Vec<(String, crate::identity::PublicKey)>,
    /// How long to wait for registrations before sending data.
    pub wait: Duration,
    /// Bound on the whole session, from `Sender::new` to DONE.
    pub timeout: Duration,
    /// A receiver silent this long during flushing is dropped.
    pub drop_after: Duration,
    /// Group round-trip time assumed before any measurement.
    pub initial_grtt: Duration,
    /// Bytes of block data kept for repairs.
    pub cache_bytes: usize,
    /// Blocks read ahead of the send position.
    pub readahead_blocks: usize,
    /// Most datagrams in one [`Transmit`] batch.
    pub max_batch: usize,
    /// With a key: seal every datagram and accept only sealed feedback.
    pub auth: Option<AuthConfig>,
    /// With an identity: sign the push (ANNOUNCE's `signed`), dated
    /// `signed_at_us` (the wall clock when the push starts, µs since the
    /// Unix epoch).
    pub identity: Option<crate::identity::Identity>,
    /// See `identity`.
    pub signed_at_us: u64,
    /// Ask receivers to remove what the pushed directories hold beyond
    /// the manifest, after a complete push (`--delete`).
    pub delete: bool,
    /// A dry run: receivers register with what they hold, the report says
    /// per receiver which files it lacks, and no file data is sent
    /// (`mdp-send --dry-run`).
    pub dry_run: bool,
    /// Encrypt the push for the receivers in `expected_keys` (keys.rs);
    /// needs `identity` and excludes `auth`.
    pub encryption: Option<super::EncryptionConfig>,
    /// A relay's sender: the origin's signature of the push, announced
    /// unchanged (the session, the coding and the manifest must be the
    /// origin's: the claim covers them). Excludes `identity`.
    pub forwarded_signature: Option<wire::PushSignature>,
    /// A relay's sender: every REGISTER and STATUS is also handed to the
    /// caller ([`SenderEvent::Feedback`]) to pass upstream.
    pub pass_on_feedback: bool,
}

impl SenderConfig {
    /// Defaults for a session id.
    pub fn new(session: SessionId) -> Self {
        SenderConfig {
            session,
            symbol_size: 1400,
            block_k: 192,
            parity: 64,
            proactive: 0,
            rate: RateMode::Adaptive {
                min_bps: 10_000_000,
                max_bps: crate::cc::MAX_BPS,
                start_bps: crate::cc::START_BPS,
            },
            expected_receivers: 0,
            expected_names: Vec::new(),
            expected_keys: Vec::new(),
            wait: Duration::from_secs(1),
            timeout: Duration::from_secs(600),
            drop_after: Duration::from_secs(5),
            initial_grtt: Duration::from_millis(5),
            cache_bytes: 32 << 20,
            readahead_blocks: 8,
            max_batch: 1,
            auth: None,
            identity: None,
            signed_at_us: 0,
            delete: false,
            dry_run: false,
            encryption: None,
            forwarded_signature: None,
            pass_on_feedback: false,
        }
    }

    /// The coding parameters (symbol size, block size, parity) a session of
    /// these settings announces: what the manifest's block hashes are for.
    pub fn coding(&self) -> Coding {
        Coding {
            symbol_size: self.symbol_size,
            block_k: self.block_k,
            parity: self.parity,
        }
    }

    /// Checks the settings; the error says what to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use crate::limits::{MAX_BLOCK_K, MAX_PARITY, MAX_SYMBOL_SIZE};
        if self.symbol_size < 16
            || !self.symbol_size.is_multiple_of(2)
            || self.symbol_size > MAX_SYMBOL_SIZE
        {
            return Err(ConfigError::SymbolSize);
        }
        if self.block_k == 0 || self.block_k > MAX_BLOCK_K {
            return Err(ConfigError::BlockSize);
        }
        if self.parity == 0 || self.parity > MAX_PARITY {
            return Err(ConfigError::Parity);
        }
        if self.proactive > self.parity {
            return Err(ConfigError::Proactive);
        }
        if let RateMode::Adaptive {
            min_bps, max_bps, ..
        } = self.rate
        {
            if min_bps > max_bps {
                return Err(ConfigError::MinAboveMax);
            }
        }
        if self.rate.min() < 8_000 {
            return Err(ConfigError::RateTooLow);
        }
        let block_bytes = self.block_k as usize * self.symbol_size as usize;
        if block_bytes > MAX_BLOCK_BYTES {
            return Err(ConfigError::BlockTooLarge {
                block_k: self.block_k,
                symbol_size: self.symbol_size,
            });
        }
        if self.cache_bytes < self.min_cache_bytes() {
            return Err(ConfigError::CacheTooSmall);
        }
        if self.encryption.is_some() {
            if self.identity.is_none() {
                return Err(ConfigError::EncryptionNeedsIdentity);
            }
            if self.expected_keys.is_empty() {
                return Err(ConfigError::EncryptionNeedsKnownReceivers);
            }
            if self.auth.is_some() {
                return Err(ConfigError::EncryptionWithSharedKey);
            }
        }
        if self.forwarded_signature.is_some()
            && (self.identity.is_some() || self.encryption.is_some())
        {
            return Err(ConfigError::RelaySigns);
        }
        Ok(())
    }

    /// The smallest block cache that holds the read-ahead window and a
    /// block being repaired.
    pub fn min_cache_bytes(&self) -> usize {
        self.block_k as usize * self.symbol_size as usize * (self.readahead_blocks + 2)
    }
}

/// Why a push cannot start with these settings and this manifest. The
/// message says what to change, in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The symbol size is odd or out of range.
    #[error(
        "symbol size must be an even number from 16 to {}",
        crate::limits::MAX_SYMBOL_SIZE
    )]
    SymbolSize,
    /// `k` is 0 or above [`crate::limits::MAX_BLOCK_K`].
    #[error("block size must be 1 to {} symbols", crate::limits::MAX_BLOCK_K)]
    BlockSize,
    /// `r` is 0 or above [`crate::limits::MAX_PARITY`].
    #[error("parity must be 1 to {} symbols", crate::limits::MAX_PARITY)]
    Parity,
    /// More proactive parity than parity per block.
    #[error("proactive parity cannot exceed the parity per block")]
    Proactive,
    /// The adaptive rate's floor is above its ceiling.
    #[error("--min-rate is above --max-rate")]
    MinAboveMax,
    /// The rate is below 8 kbit/s.
    #[error("rate must be at least 8 kbit/s")]
    RateTooLow,
    /// `k × T` is above [`MAX_BLOCK_BYTES`].
    #[error(
        "a block of {block_k} symbols of {symbol_size} bytes is {} MiB; block size × symbol size must be at most {} MiB",
        (*block_k as usize * *symbol_size as usize) >> 20,
        MAX_BLOCK_BYTES >> 20
    )]
    BlockTooLarge {
        /// Source symbols per block.
        block_k: u16,
        /// Bytes per symbol.
        symbol_size: u16,
    },
    /// Encryption without a signing identity.
    #[error(
        "an encrypted push must be signed: give --identity (make one with --gen-identity FILE)"
    )]
    EncryptionNeedsIdentity,
    /// Encryption without receivers known by key.
    #[error("an encrypted push needs its receivers' keys: give --expect-file with a `name ssh-ed25519 …` line per host")]
    EncryptionNeedsKnownReceivers,
    /// Encryption and a shared key together.
    #[error("--key-file is for unencrypted pushes (encryption authenticates every packet already): drop --key-file, or push with --no-encrypt")]
    EncryptionWithSharedKey,
    /// A relay's sender given an identity or encryption of its own.
    #[error("a relay passes the origin's signed push on as it is: it neither signs nor encrypts")]
    RelaySigns,
    /// The cache cannot hold the read-ahead window.
    #[error("block cache too small for the read-ahead window")]
    CacheTooSmall,
    /// The manifest breaks a rule of its own.
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    /// The manifest does not fit its size limit.
    #[error("too many files for one push: split it")]
    TooManyFiles,
    /// More blocks than a receiver tracks.
    #[error(
        "{blocks} blocks is more than receivers track ({}): raise --symbol-size or --block-size, or split the push",
        MAX_SESSION_BLOCKS
    )]
    TooManyBlocks {
        /// Blocks of the whole push.
        blocks: u64,
    },
}

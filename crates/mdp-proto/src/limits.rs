//! Limits and layout constants shared by every part of the core.
//!
//! A leaf module: it depends on nothing else in the crate, and [`crate::wire`],
//! [`crate::auth`], [`crate::layout`], the sender and the receiver all take their
//! bounds from here, so no two of them import each other for a number. Every
//! bound that protects memory or CPU against a hostile datagram is one of these,
//! and docs/PROTOCOL.md names each beside the message or field it bounds.

// ---- Datagram layout -------------------------------------------------------

/// The byte layout of the fixed headers, as offsets into the datagram: one
/// table that writing ([`crate::wire::write_data_header`]), parsing
/// ([`crate::wire::parse`]) and sealing ([`crate::auth`], which sets a bit of
/// the type byte) all use. docs/PROTOCOL.md §3–4 draws the same table.
/// Multi-byte fields are big-endian.
pub mod field {
    /// A field: the byte range it occupies in the datagram.
    pub type Field = core::ops::Range<usize>;

    // Common header, every datagram.
    /// Magic bytes, ASCII "md".
    pub const MAGIC: Field = 0..2;
    /// Protocol version.
    pub const VERSION: usize = 2;
    /// Packet type; bit 7 is the authentication flag, bit 6 the
    /// encryption flag.
    pub const TYPE: usize = 3;
    /// Session id (u64).
    pub const SESSION: Field = 4..12;

    // DATA header, after the common header.
    /// Object id (u32).
    pub const OBJECT: Field = 12..16;
    /// Source block number (u32).
    pub const BLOCK: Field = 16..20;
    /// Encoding symbol id (u16).
    pub const ESI: Field = 20..22;
    /// Flags ([`crate::wire::FLAG_REPAIR`]).
    pub const FLAGS: usize = 22;
    /// Reserved, sent as 0 and ignored.
    pub const RESERVED: usize = 23;
    /// DATA sequence number (u32), one per DATA datagram sent.
    pub const SEQ: Field = 24..28;
}

/// Length of the common header: magic, version, type, session id.
pub const COMMON_HEADER_LEN: usize = field::SESSION.end;
/// Length of the whole DATA header (common header included).
pub const DATA_HEADER_LEN: usize = field::SEQ.end;
/// The largest symbol size a sender uses (the DATA datagram stays below
/// [`MAX_DATAGRAM`] with the authentication trailer).
pub const MAX_SYMBOL_SIZE: u16 = 65_000;
/// Bytes of IP and UDP header in front of every IPv4 datagram (no options).
pub const IPV4_UDP_OVERHEAD: usize = 20 + 8;
/// Bytes of IP and UDP header in front of every IPv6 datagram (no
/// extension headers).
pub const IPV6_UDP_OVERHEAD: usize = 40 + 8;

/// The largest symbol size whose DATA datagrams fit in one IP packet of
/// `mtu` bytes: the MTU less the IP, UDP and DATA headers and, when
/// `sealed`, the authentication trailer ([`TRAILER_LEN`]),
/// rounded down to an even number and at most [`MAX_SYMBOL_SIZE`]. `None`
/// when less than 16 bytes (the smallest symbol size) fits.
pub fn symbol_size_for_mtu(mtu: u32, ipv6: bool, sealed: bool) -> Option<u16> {
    let ip = if ipv6 {
        IPV6_UDP_OVERHEAD
    } else {
        IPV4_UDP_OVERHEAD
    };
    let seal = if sealed { TRAILER_LEN } else { 0 };
    let room = (mtu as usize).checked_sub(ip + DATA_HEADER_LEN + seal)?;
    let room = room.min(MAX_SYMBOL_SIZE as usize) & !1;
    (room >= 16).then_some(room as u16)
}

/// The largest datagram mdp sends or accepts.
pub const MAX_DATAGRAM: usize = 65_507;
/// Longest node name carried in feedback (bytes of UTF-8).
pub const MAX_NAME_LEN: usize = 64;
/// Most entries a NACK may carry.
pub const MAX_NACK_ENTRIES: usize = 64;
/// Most source symbols one NACK entry may name as missing.
pub const MAX_NACK_MISSING: usize = 32;
/// Most source symbols one NACK may name in all (keeps it one datagram).
pub const MAX_NACK_MISSING_TOTAL: usize = 256;
/// Most node ids in one list of a FLUSH or ANNOUNCE.
pub const MAX_NODE_LIST: usize = 48;
/// Most object ids a STATUS may list as missing or failed.
pub const MAX_STATUS_OBJECTS: usize = 32;
/// Most ranges of files already held that one REGISTER may carry.
pub const MAX_HAVE_RANGES: usize = 64;

// ---- Authentication trailer ------------------------------------------------

/// Type-byte flag of a sealed datagram (a keyed-BLAKE3 tag: `--key-file`,
/// or a receiver's feedback in an encrypted session).
pub const AUTH_FLAG: u8 = 0x80;
/// Type-byte flag of a datagram encrypted with the session key
/// ([`crate::crypto::Cipher`]).
pub const ENC_FLAG: u8 = 0x40;
/// Counter (8 bytes) and tag (16 bytes) appended to a sealed or encrypted
/// datagram.
pub const TRAILER_LEN: usize = 24;

// ---- Coding ----------------------------------------------------------------

/// Largest `k` (source symbols per block).
pub const MAX_BLOCK_K: u16 = 8192;
/// Largest `r` (parity symbols per block).
pub const MAX_PARITY: u16 = 8192;

/// Fewest parity symbols a block has (unless `r` itself is smaller).
pub const MIN_BLOCK_PARITY: u16 = 32;

/// Largest block (k × T) a sender uses: both ends hold whole blocks in memory.
pub const MAX_BLOCK_BYTES: usize = 16 << 20;

/// Largest manifest that is re-sent with every ANNOUNCE while registering.
pub const MANIFEST_RESEND_MAX: u64 = 64 << 10;

/// Most receivers a sender tracks (bounds memory against forged node ids).
pub const MAX_PEERS: usize = 65_536;

// ---- Sessions and peers ----------------------------------------------------

/// Most blocks a session may have (one bit each in the receiver's maps).
pub const MAX_SESSION_BLOCKS: u64 = 1 << 27;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_sizes_fit_the_mtu() {
        // 1500 − 20 − 8 − 28: a DATA datagram fills an Ethernet frame.
        assert_eq!(symbol_size_for_mtu(1500, false, false), Some(1444));
        assert_eq!(symbol_size_for_mtu(1500, true, false), Some(1424));
        assert_eq!(symbol_size_for_mtu(1500, false, true), Some(1420));
        // A VXLAN overlay; an odd MTU rounds down to an even size.
        assert_eq!(symbol_size_for_mtu(1450, false, false), Some(1394));
        assert_eq!(symbol_size_for_mtu(1451, false, false), Some(1394));
        assert_eq!(symbol_size_for_mtu(9000, false, false), Some(8944));
        // Loopback's 64 KiB MTU is capped by the largest symbol size.
        assert_eq!(
            symbol_size_for_mtu(65_536, false, true),
            Some(MAX_SYMBOL_SIZE)
        );
        assert!(MAX_SYMBOL_SIZE as usize + DATA_HEADER_LEN + TRAILER_LEN <= MAX_DATAGRAM);
        // Too small for anything, or for the headers alone.
        assert_eq!(symbol_size_for_mtu(68, false, false), None);
        assert_eq!(symbol_size_for_mtu(0, true, true), None);
        for mtu in [1280, 1492, 1500, 4000, 9000, 65_536] {
            for (v6, sealed) in [(false, false), (true, false), (false, true), (true, true)] {
                let t = symbol_size_for_mtu(mtu, v6, sealed).unwrap() as usize;
                let ip = if v6 {
                    IPV6_UDP_OVERHEAD
                } else {
                    IPV4_UDP_OVERHEAD
                };
                let seal = if sealed { TRAILER_LEN } else { 0 };
                assert!(t.is_multiple_of(2) && t + ip + DATA_HEADER_LEN + seal <= mtu as usize);
                assert!(
                    t == MAX_SYMBOL_SIZE as usize
                        || t + 2 + ip + DATA_HEADER_LEN + seal > mtu as usize
                );
            }
        }
    }
}

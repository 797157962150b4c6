//! Newtypes for the protocol's numbers, named as in docs/PROTOCOL.md.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A sender instance: chosen at random when a push starts. Every packet of a
/// session carries it; packets of other sessions are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionId(pub u64);

/// A receiver instance: chosen at random when a receiver starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub u64);

/// A transport object. Object 0 is the manifest; object `i >= 1` is the
/// `i`-th file of the manifest (in manifest order, directories skipped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectId(pub u32);

/// A source block within an object, counted from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlockNumber(pub u32);

/// An encoding symbol id within a block: `0..k` are source symbols, `k..k+r`
/// are Reed-Solomon parity symbols.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SymbolId(pub u16);

/// A block of a session: the object it belongs to and its number there.
/// Ordered by object, then block: the order in which a sender sends them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockKey {
    /// The object (file, or 0 for the manifest).
    pub object: u32,
    /// The block within it.
    pub block: u32,
}

impl BlockKey {
    /// Block `block` of object `object`.
    pub const fn new(object: u32, block: u32) -> BlockKey {
        BlockKey { object, block }
    }
}

impl fmt::Display for BlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.object, self.block)
    }
}

impl ObjectId {
    /// The manifest's object id.
    pub const MANIFEST: ObjectId = ObjectId(0);
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

//! Hand-made datagrams, as a hostile or confused sender would send them:
//! forged announcements and data, manifests that try to leave the
//! receiver's directory, and the socket they go out of.

use mdp_net::socket::Endpoint;
use mdp_proto::wire::{self, Announce, Control, DataHeader, Timing};
use mdp_proto::{BlockNumber, Entry, EntryKind, Manifest, ObjectId, SessionId, SymbolId};

pub fn announce(session: SessionId, manifest_bytes: &[u8], object_count: u32) -> Vec<u8> {
    let mut buf = Vec::new();
    wire::write_control(
        &mut buf,
        session,
        &Control::Announce(Announce {
            timing: Timing {
                ts_us: 1,
                grtt_us: 1000,
                rate_bps: 100_000_000,
                group_size: 1,
            },
            symbol_size: 1400,
            block_k: 256,
            parity: 128,
            manifest_len: manifest_bytes.len() as u64,
            manifest_hash: *blake3::hash(manifest_bytes).as_bytes(),
            object_count,
            data_pos: (0, 0),
            acked: vec![],
            poll: vec![],
            delete: false,
            dry_run: false,
            enc: None,
            signed: None,
        }),
    );
    buf
}

pub fn data(session: SessionId, object: u32, esi: u16, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    wire::write_data(
        &mut buf,
        &DataHeader {
            session,
            object: ObjectId(object),
            block: BlockNumber(0),
            esi: SymbolId(esi),
            flags: 0,
            seq: esi as u32,
        },
        payload,
    );
    buf
}

/// A socket that sends hand-made datagrams to the default group on
/// loopback, as a sender would, and the endpoint it sends to.
pub fn injector() -> (std::net::UdpSocket, Endpoint) {
    let ep = Endpoint {
        group: "239.255.77.1:7400".parse().unwrap(),
        interface: "127.0.0.1".parse().unwrap(),
        ttl: 1,
        index: 0,
        dscp: 0,
        unicast: false,
    };
    (mdp_net::socket::sender(&ep).unwrap(), ep)
}

pub fn evil_manifest(path: &str, size: u64) -> Vec<u8> {
    Manifest::new(vec![Entry {
        path: path.into(),
        kind: EntryKind::File {
            size,
            hash: [7; 32],
            blocks: Vec::new(),
        },
        mode: 0o6777,
        mtime_secs: 0,
        mtime_nanos: 0,
        owner: 0,
    }])
    .encode()
}

//! What is pushed: a manifest and the bytes of its files, and the
//! sender's file requests answered from them.

use crate::drain::Output;
use crate::SimRng;
use mdp_proto::fec::Codec;
use mdp_proto::{EntryKind, Manifest, ObjectId, Sender, SenderEvent, SenderRequest};
use std::collections::HashMap;
use std::time::Instant;

/// Files to push: a manifest and the content of each file object.
#[derive(Clone, Debug)]
pub struct Content {
    /// The manifest.
    pub manifest: Manifest,
    /// File bytes, by object id.
    pub files: HashMap<ObjectId, Vec<u8>>,
}

impl Content {
    /// Builds content from `(path, bytes)` pairs and directory paths.
    pub fn new(dirs: &[&str], files: Vec<(String, Vec<u8>)>) -> Content {
        let mut entries = Vec::new();
        for d in dirs {
            entries.push(mdp_proto::Entry {
                path: d.to_string(),
                kind: EntryKind::Dir,
                mode: 0o755,
                mtime_secs: 1_700_000_000,
                mtime_nanos: 0,
                owner: 0,
            });
        }
        let mut by_obj = HashMap::new();
        for (i, (path, data)) in files.into_iter().enumerate() {
            entries.push(mdp_proto::Entry {
                path,
                kind: EntryKind::File {
                    size: data.len() as u64,
                    hash: *blake3::hash(&data).as_bytes(),
                    // Filled in for a session's block size: `manifest_for`.
                    blocks: Vec::new(),
                },
                mode: 0o644,
                mtime_secs: 1_700_000_000,
                mtime_nanos: 0,
                owner: 0,
            });
            by_obj.insert(ObjectId(i as u32 + 1), data);
        }
        Content {
            manifest: Manifest::new(entries),
            files: by_obj,
        }
    }

    /// The manifest a sender of `coding` announces: [`Content::manifest`]
    /// with the hash of each block of its files at that block size.
    pub fn manifest_for(&self, coding: &mdp_proto::layout::Coding) -> Manifest {
        let mut m = self.manifest.clone();
        let mut object = 0;
        for e in &mut m.entries {
            if let EntryKind::File { blocks, .. } = &mut e.kind {
                object += 1;
                *blocks = mdp_proto::manifest::block_hashes(&self.files[&ObjectId(object)], coding);
            }
        }
        m
    }

    /// Pseudo-random bytes, reproducible from `seed`.
    pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = SimRng::new(seed);
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        v.truncate(len);
        v
    }

    /// Answers a sender's [`SenderRequest::ReadBlock`] from memory and runs
    /// its [`SenderRequest::EncodeParity`] jobs, both at once.
    pub fn serve(&self, sender: &mut Sender, now: Instant, request: SenderRequest) {
        match request {
            SenderRequest::ReadBlock {
                object,
                block,
                offset,
                len,
            } => {
                let file = &self.files[&object];
                let data = file[offset as usize..offset as usize + len].to_vec();
                sender.handle_block(now, object, block, data);
            }
            SenderRequest::EncodeParity { object, block, job } => {
                let symbols = job
                    .run(&mut Codec::default())
                    .expect("the sender validated its coding parameters");
                sender.handle_parity(now, object, block, job, symbols);
            }
        }
    }

    /// [`Content::serve`] for a request out of a drain; notices are ignored.
    pub fn answer(
        &self,
        sender: &mut Sender,
        now: Instant,
        out: Output<SenderRequest, SenderEvent>,
    ) {
        if let Output::Request(request) = out {
            self.serve(sender, now, request);
        }
    }

    /// Total bytes of all files.
    pub fn total_bytes(&self) -> u64 {
        self.files.values().map(|f| f.len() as u64).sum()
    }
}

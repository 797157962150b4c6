//! The fuzz targets on stable Rust: every input of the checked-in corpora
//! (`fuzz/corpus/`), then deterministic mutations of each (bit flips,
//! truncations, splices, random bytes). `cargo fuzz` runs the same target
//! bodies with coverage guidance (docs/FUZZING.md); this test keeps them
//! exercised on every CI run.

use mdp_sim::{fuzz, SimRng};
use std::fs;
use std::path::Path;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.into_iter().map(|p| fs::read(p).unwrap()).collect()
}

fn mutate(rng: &mut SimRng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    match rng.next_u64() % 5 {
        0 if !v.is_empty() => {
            for _ in 0..1 + rng.next_u64() % 8 {
                let i = (rng.next_u64() as usize) % v.len();
                v[i] ^= 1 << (rng.next_u64() % 8);
            }
        }
        1 => v.truncate((rng.next_u64() as usize) % (v.len() + 1)),
        2 if !other.is_empty() => {
            let at = (rng.next_u64() as usize) % (v.len() + 1);
            let from = (rng.next_u64() as usize) % other.len();
            v.splice(at..at, other[from..].iter().take(4096).copied());
        }
        3 if !v.is_empty() => {
            let i = (rng.next_u64() as usize) % v.len();
            let b = (rng.next_u64() % 256) as u8;
            let n = (1 + rng.next_u64() % 64) as usize;
            v.splice(i..i, std::iter::repeat_n(b, n));
        }
        _ => {
            v = (0..rng.next_u64() % 300)
                .map(|_| rng.next_u64() as u8)
                .collect()
        }
    }
    v
}

fn exercise(target: &str, rounds: usize, f: impl Fn(&[u8])) {
    let seeds = corpus(target);
    assert!(!seeds.is_empty(), "no corpus for {target}");
    let mut rng = SimRng::new(0xf022 + target.len() as u64);
    for s in &seeds {
        f(s);
    }
    for i in 0..rounds {
        let a = &seeds[i % seeds.len()];
        let b = &seeds[(i * 7 + 3) % seeds.len()];
        f(&mutate(&mut rng, a, b));
    }
}

#[test]
fn wire_decoders_take_any_bytes() {
    exercise("wire", 20_000, fuzz::wire_target);
}

#[test]
fn the_manifest_decoder_takes_any_bytes_and_keeps_paths_safe() {
    exercise("manifest", 20_000, fuzz::manifest_target);
}

#[test]
fn a_receiver_takes_any_datagram_sequence() {
    exercise("receiver", 300, |d| {
        fuzz::receiver_target(d);
    });
}

#[test]
fn a_sender_takes_any_feedback_sequence() {
    exercise("sender", 300, fuzz::sender_target);
}

#[test]
fn the_receiver_seeds_are_whole_sessions() {
    // The corpus is worth something only if it reaches deep states: the
    // recorded sessions (lossless and lossy, with and without a key) end
    // complete when replayed.
    for (i, s) in corpus("receiver").iter().enumerate() {
        let o = fuzz::receiver_target(s).unwrap_or_else(|| panic!("seed {i} never ended"));
        assert!(o.complete, "seed {i}: {:?}", o.problem);
    }
}

/// The encrypted seeds reach past the crypto: the recorded KEY opens for
/// the target's receiver (flags bit 5) and the push completes from the
/// sealed datagrams, so mutations of them exercise the opening code.
#[test]
fn the_encrypted_receiver_seeds_complete_their_push() {
    for name in ["session-4", "session-5"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus/receiver")
            .join(name);
        let seed = fs::read(&path).unwrap();
        assert_eq!(seed[0], 0x20, "{name}: flags");
        let outcome = fuzz::receiver_target(&seed).expect("the session ends");
        assert!(outcome.complete, "{name}: {outcome:?}");
    }
}

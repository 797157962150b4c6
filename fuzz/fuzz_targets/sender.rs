#![no_main]
//! See mdp_sim::fuzz::sender_target.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mdp_sim::fuzz::sender_target(data));

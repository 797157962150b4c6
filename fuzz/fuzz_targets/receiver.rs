#![no_main]
//! See mdp_sim::fuzz::receiver_target.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mdp_sim::fuzz::receiver_target(data);
});

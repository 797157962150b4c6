//! Benchmarks live in `benches/`; see `cargo xtask bench`.

//! A systematic Reed-Solomon erasure code over GF(2^8) for blocks of at most
//! 256 symbols, whose decoding cost grows with the number of lost symbols.
//!
//! A block has `k` source symbols `s_0 … s_{k-1}` of `t` bytes each, and
//! parity symbols `p_0, p_1, …` with `k + (number of parity symbols) ≤ 256`.
//! Parity symbol `i` is, byte by byte,
//!
//! ```text
//! p_i = Σ_j C(i, j) · s_j      with C(i, j) = 1 / ((255 − i) XOR j)
//! ```
//!
//! in GF(2^8) with the polynomial x^8 + x^4 + x^3 + x + 1 (0x11B). The
//! coefficients form a Cauchy matrix (the points `255 − i` and `j` are all
//! distinct because `j < k ≤ 256 − r ≤ 255 − i`), every square submatrix of
//! which is invertible: any `k` distinct symbols of a block rebuild it. A
//! parity symbol does not depend on how many others the block has.
//!
//! Encoding one parity symbol costs `k` multiply-adds per byte. Rebuilding
//! `e` lost source symbols costs about `k · e` per byte of one symbol: with
//! few losses, far less than a fast Fourier transform code, which pays for
//! the whole block whatever was lost. Multiply-adds run in the CPU's vector
//! unit ([`Kernel`]).
//!
//! No `unsafe` outside the vector kernels. Memory: the [`Coder`]'s scratch
//! space, which grows to `e · t + k` bytes, and per decode a few lists and
//! matrices of `O(e²)` bytes.

#![warn(missing_docs)]

mod field;
mod kernel;

pub use field::{inv, mul};
pub use kernel::Kernel;
use thiserror::Error;

/// Most symbols (source and parity) a block can have.
pub const MAX_SYMBOLS: usize = 256;

/// Why a block could not be coded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Error {
    /// The block or a parity index does not fit in the field.
    #[error("a block of {k} source symbols has no parity symbol {index} (k + index must stay below 256)")]
    Shape {
        /// Source symbols in the block.
        k: usize,
        /// The parity index asked for.
        index: usize,
    },
    /// A buffer's length does not match `k` and `t`.
    #[error("buffer length {got} where {expected} was expected")]
    Length {
        /// Bytes (or flags) expected.
        expected: usize,
        /// Bytes (or flags) given.
        got: usize,
    },
    /// Fewer distinct parity symbols than lost source symbols.
    #[error(
        "{missing} source symbols are missing but only {parity} distinct parity symbols were given"
    )]
    TooFew {
        /// Lost source symbols.
        missing: usize,
        /// Distinct parity symbols given.
        parity: usize,
    },
}

/// The coefficient of source symbol `j` in parity symbol `i`.
///
/// # Panics
/// If `i` or `j` is 256 or more, or `255 − i = j` (callers check the
/// shape first, so that `j < k ≤ 255 − i`).
pub fn coefficient(i: usize, j: usize) -> u8 {
    assert!(i < MAX_SYMBOLS && j < MAX_SYMBOLS, "coefficient({i}, {j})");
    inv(((255 - i) ^ j) as u8).expect("parity and source points are distinct")
}

fn check_parity(k: usize, index: usize) -> Result<(), Error> {
    if k == 0 || k + index >= MAX_SYMBOLS {
        return Err(Error::Shape { k, index });
    }
    Ok(())
}

fn check_len(expected: usize, got: usize) -> Result<(), Error> {
    if expected != got {
        return Err(Error::Length { expected, got });
    }
    Ok(())
}

/// Encoder and decoder, with the vector kernel chosen once and scratch
/// space kept between blocks.
#[derive(Debug)]
pub struct Coder {
    kernel: Kernel,
    scratch: Vec<u8>,
    /// One row of coefficients for [`Kernel::mul_add_rows`].
    coeffs: Vec<u8>,
}

impl Default for Coder {
    fn default() -> Coder {
        Coder::with_kernel(Kernel::best())
    }
}

impl Coder {
    /// A coder that uses `kernel` (one of [`Kernel::available`]).
    pub fn with_kernel(kernel: Kernel) -> Coder {
        Coder {
            kernel,
            scratch: Vec::new(),
            coeffs: Vec::new(),
        }
    }

    /// Writes parity symbol `index` of the block `source` (`k · t` bytes,
    /// the last symbol zero-padded) into `out` (`t` bytes).
    pub fn encode_parity(
        &mut self,
        k: usize,
        t: usize,
        source: &[u8],
        index: usize,
        out: &mut [u8],
    ) -> Result<(), Error> {
        check_parity(k, index)?;
        check_len(k * t, source.len())?;
        check_len(t, out.len())?;
        out.fill(0);
        self.coeffs.clear();
        self.coeffs.extend((0..k).map(|j| coefficient(index, j)));
        self.kernel.mul_add_rows(out, source, t, &self.coeffs);
        Ok(())
    }

    /// Rebuilds the missing source symbols of `block` (`k · t` bytes) in
    /// place. `have[j]` says whether source symbol `j` is present;
    /// `recovery` lists `(parity index, symbol)` pairs, of which the first
    /// distinct indices, as many as symbols are missing, are used. Returns
    /// how many symbols were rebuilt.
    pub fn decode(
        &mut self,
        k: usize,
        t: usize,
        block: &mut [u8],
        have: &[bool],
        recovery: &[(usize, &[u8])],
    ) -> Result<usize, Error> {
        check_len(k * t, block.len())?;
        check_len(k, have.len())?;
        let missing: Vec<usize> = (0..k).filter(|&j| !have[j]).collect();
        let e = missing.len();
        if e == 0 {
            return Ok(0);
        }
        let mut rows: Vec<(usize, &[u8])> = Vec::with_capacity(e);
        for &(index, symbol) in recovery {
            if rows.len() == e {
                break;
            }
            check_parity(k, index)?;
            check_len(t, symbol.len())?;
            if rows.iter().all(|(i, _)| *i != index) {
                rows.push((index, symbol));
            }
        }
        if rows.len() < e {
            return Err(Error::TooFew {
                missing: e,
                parity: rows.len(),
            });
        }

        // Syndromes: each parity symbol minus what the present sources
        // put in it leaves the missing sources' share, M · missing.
        self.scratch.clear();
        self.scratch.resize(e * t, 0);
        for ((index, symbol), syndrome) in rows.iter().zip(self.scratch.chunks_exact_mut(t)) {
            syndrome.copy_from_slice(symbol);
            // A missing source's coefficient is zero: its row is skipped.
            self.coeffs.clear();
            self.coeffs
                .extend((0..k).map(|j| if have[j] { coefficient(*index, j) } else { 0 }));
            self.kernel.mul_add_rows(syndrome, block, t, &self.coeffs);
        }

        // missing = M⁻¹ · syndromes, with M[a][b] = C(row a, missing b).
        let mut m: Vec<u8> = Vec::with_capacity(e * e);
        for (index, _) in &rows {
            m.extend(missing.iter().map(|&j| coefficient(*index, j)));
        }
        let m_inv = invert(self.kernel, &m, e)
            .expect("a square submatrix of a Cauchy matrix is invertible");
        for (b, &j) in missing.iter().enumerate() {
            let target = &mut block[j * t..(j + 1) * t];
            target.fill(0);
            self.kernel
                .mul_add_rows(target, &self.scratch, t, &m_inv[b * e..(b + 1) * e]);
        }
        Ok(e)
    }
}

/// Inverts the `n × n` row-major matrix `m` by Gauss-Jordan elimination;
/// `None` if it is singular. Row operations run in `kernel`, so that the
/// `O(n³)` work of heavy losses stays small next to the symbols' `O(n·k·t)`.
fn invert(kernel: Kernel, m: &[u8], n: usize) -> Option<Vec<u8>> {
    // Each row of `aug` is a row of `m` followed by a row of the identity.
    let w = 2 * n;
    let mut aug = vec![0u8; n * w];
    for (r, row) in aug.chunks_exact_mut(w).enumerate() {
        row[..n].copy_from_slice(&m[r * n..(r + 1) * n]);
        row[n + r] = 1;
    }
    let mut pivot_row = vec![0u8; w];
    for col in 0..n {
        let pivot = (col..n).find(|&r| aug[r * w + col] != 0)?;
        if pivot != col {
            for c in 0..w {
                aug.swap(pivot * w + c, col * w + c);
            }
        }
        let scale = inv(aug[col * w + col])?;
        pivot_row.fill(0);
        kernel.mul_add(&mut pivot_row, &aug[col * w..(col + 1) * w], scale);
        aug[col * w..(col + 1) * w].copy_from_slice(&pivot_row);
        for (r, row) in aug.chunks_exact_mut(w).enumerate() {
            let f = row[col];
            if r != col && f != 0 {
                kernel.mul_add(row, &pivot_row, f);
            }
        }
    }
    let mut out = Vec::with_capacity(n * n);
    for row in aug.chunks_exact(w) {
        out.extend_from_slice(&row[n..]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator, so that the tests need no crate.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn parity(coder: &mut Coder, k: usize, t: usize, source: &[u8], r: usize) -> Vec<Vec<u8>> {
        (0..r)
            .map(|i| {
                let mut p = vec![0; t];
                coder.encode_parity(k, t, source, i, &mut p).unwrap();
                p
            })
            .collect()
    }

    #[test]
    fn any_k_symbols_rebuild_the_block_with_every_kernel() {
        let mut rng = Lcg(7);
        for kernel in Kernel::available() {
            let mut coder = Coder::with_kernel(kernel);
            for (k, r, t) in [
                (1, 1, 2),
                (4, 2, 64),
                (16, 8, 70),
                (192, 64, 1400),
                (255, 1, 32),
                (128, 128, 40),
            ] {
                let source: Vec<u8> = (0..k * t).map(|_| rng.next() as u8).collect();
                let parity = parity(&mut coder, k, t, &source, r);
                for _ in 0..20 {
                    // Lose up to r source symbols; rebuild them from a random
                    // choice of as many parity symbols, in random order.
                    let lost = 1 + rng.below(r.min(k));
                    let mut have = vec![true; k];
                    let mut n = 0;
                    while n < lost {
                        let j = rng.below(k);
                        if have[j] {
                            have[j] = false;
                            n += 1;
                        }
                    }
                    let mut order: Vec<usize> = (0..r).collect();
                    for i in (1..r).rev() {
                        order.swap(i, rng.below(i + 1));
                    }
                    let recovery: Vec<(usize, &[u8])> = order[..lost]
                        .iter()
                        .map(|&i| (i, parity[i].as_slice()))
                        .collect();
                    let mut block = source.clone();
                    for j in 0..k {
                        if !have[j] {
                            block[j * t..(j + 1) * t].fill(0xEE);
                        }
                    }
                    assert_eq!(coder.decode(k, t, &mut block, &have, &recovery), Ok(lost));
                    assert!(block == source, "{kernel:?} k={k} r={r} lost={lost}");
                }
            }
        }
    }

    #[test]
    fn a_parity_symbol_is_a_sum_of_products_of_the_sources() {
        // k = 2, t = 1: p_0 = C(0,0)·s_0 + C(0,1)·s_1, C(0,j) = 1/(255 ^ j).
        let mut coder = Coder::default();
        let mut p = [0u8];
        coder.encode_parity(2, 1, &[3, 5], 0, &mut p).unwrap();
        assert_eq!(p[0], mul(inv(255).unwrap(), 3) ^ mul(inv(254).unwrap(), 5));
    }

    #[test]
    fn duplicate_parity_counts_once_and_too_few_is_an_error() {
        let (k, t) = (4, 8);
        let source: Vec<u8> = (0..32).collect();
        let mut coder = Coder::default();
        let p = parity(&mut coder, k, t, &source, 2);
        let mut block = source.clone();
        let have = [false, true, false, true];
        let dup = [(0, p[0].as_slice()), (0, p[0].as_slice())];
        assert_eq!(
            coder.decode(k, t, &mut block, &have, &dup),
            Err(Error::TooFew {
                missing: 2,
                parity: 1
            })
        );
        let both = [
            (0, p[0].as_slice()),
            (0, p[0].as_slice()),
            (1, p[1].as_slice()),
        ];
        assert_eq!(coder.decode(k, t, &mut block, &have, &both), Ok(2));
        assert_eq!(block, source);
        // Nothing missing: nothing to do, whatever the recovery list holds.
        assert_eq!(coder.decode(k, t, &mut block, &[true; 4], &[]), Ok(0));
    }

    #[test]
    fn shapes_outside_the_field_and_bad_lengths_are_refused() {
        let mut coder = Coder::default();
        let mut out = [0u8; 2];
        assert_eq!(
            coder.encode_parity(200, 2, &[0; 400], 56, &mut out),
            Err(Error::Shape { k: 200, index: 56 })
        );
        assert!(coder.encode_parity(200, 2, &[0; 400], 55, &mut out).is_ok());
        assert_eq!(
            coder.encode_parity(2, 2, &[0; 3], 0, &mut out),
            Err(Error::Length {
                expected: 4,
                got: 3
            })
        );
        let mut block = [0u8; 4];
        assert_eq!(
            coder.decode(2, 2, &mut block, &[false, true], &[(0, &[1, 2, 3][..])]),
            Err(Error::Length {
                expected: 2,
                got: 3
            })
        );
        assert_eq!(
            coder.decode(2, 2, &mut block, &[false, true], &[(254, &[1, 2][..])]),
            Err(Error::Shape { k: 2, index: 254 })
        );
    }

    #[test]
    fn a_singular_matrix_is_reported_and_an_inverse_is_one() {
        for kernel in Kernel::available() {
            assert_eq!(invert(kernel, &[1, 2, 1, 2], 2), None);
            assert_eq!(invert(kernel, &[1, 0, 0, 1], 2), Some(vec![1, 0, 0, 1]));
            // A 40 × 40 Cauchy matrix times its inverse is the identity.
            let n = 40;
            let m: Vec<u8> = (0..n * n).map(|x| coefficient(x / n, x % n)).collect();
            let m_inv = invert(kernel, &m, n).unwrap();
            for r in 0..n {
                for c in 0..n {
                    let dot = (0..n).fold(0, |acc, i| acc ^ mul(m[r * n + i], m_inv[i * n + c]));
                    assert_eq!(dot, u8::from(r == c), "{kernel:?} ({r}, {c})");
                }
            }
        }
    }
}

//! `dst ^= c · src` over byte slices: the one operation the code's encoder
//! and decoder spend their time in.
//!
//! Four implementations, chosen once per call by what the CPU has:
//! - GFNI (`vgf2p8mulb`), which multiplies in this very field, with
//!   AVX-512 registers (64 bytes at a time) or AVX2 ones (32);
//! - AVX2 (`vpshufb` on two 16-entry tables of `c` times each nibble);
//! - portable code (one lookup in the product table per byte).
//!
//! The coder's work is mostly sums of many products into one symbol (a
//! parity symbol is a sum over all `k` sources). [`Kernel::mul_add_rows`]
//! computes such a sum with the GFNI kernels in registers, a tile of the
//! output at a time, so that each output byte is loaded and stored once
//! instead of once per term.
//!
//! All give the same bytes; the tests compare them with the product table
//! on every constant and on lengths around the vector widths.

use crate::field::MUL;

/// One implementation of [`Kernel::mul_add`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// One table lookup per byte; runs anywhere.
    Portable,
    /// x86-64 AVX2 nibble tables.
    Avx2,
    /// x86-64 GFNI (with AVX2 registers).
    Gfni,
    /// x86-64 GFNI with AVX-512 registers (and masked tails).
    Gfni512,
}

/// Whether this CPU has GFNI with AVX-512 (byte and word instructions).
#[cfg(target_arch = "x86_64")]
fn has_gfni512() -> bool {
    std::arch::is_x86_feature_detected!("gfni")
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
}

/// Whether this CPU has GFNI with AVX2.
#[cfg(target_arch = "x86_64")]
fn has_gfni() -> bool {
    std::arch::is_x86_feature_detected!("gfni") && std::arch::is_x86_feature_detected!("avx2")
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub fn best() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if has_gfni512() {
                return Kernel::Gfni512;
            }
            if has_gfni() {
                return Kernel::Gfni;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Kernel::Avx2;
            }
        }
        Kernel::Portable
    }

    /// Every kernel this CPU runs (for tests and benchmarks).
    pub fn available() -> Vec<Kernel> {
        let mut all = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                all.push(Kernel::Avx2);
            }
            if has_gfni() {
                all.push(Kernel::Gfni);
            }
            if has_gfni512() {
                all.push(Kernel::Gfni512);
            }
        }
        all
    }

    /// `dst[i] ^= c · src[i]` for every `i` of the shorter slice.
    ///
    /// # Panics
    /// If this CPU lacks the kernel's instructions (only [`Kernel::best`]
    /// and [`Kernel::available`] hand out kernels, so that cannot happen
    /// through them).
    pub fn mul_add(self, dst: &mut [u8], src: &[u8], c: u8) {
        let n = dst.len().min(src.len());
        let (dst, src) = (&mut dst[..n], &src[..n]);
        match c {
            0 => return,
            1 => {
                for (d, s) in dst.iter_mut().zip(src) {
                    *d ^= s;
                }
                return;
            }
            _ => {}
        }
        match self {
            Kernel::Portable => portable(dst, src, c),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                assert!(std::arch::is_x86_feature_detected!("avx2"));
                // SAFETY: the CPU has AVX2 (checked above).
                unsafe { x86::avx2(dst, src, c) }
            }
            // A lone product is as fast with AVX2 registers: the AVX-512
            // kernel's gain is in `mul_add_rows`.
            #[cfg(target_arch = "x86_64")]
            Kernel::Gfni | Kernel::Gfni512 => {
                assert!(has_gfni());
                // SAFETY: the CPU has GFNI and AVX2 (checked above).
                unsafe { x86::gfni(dst, src, c) }
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => portable(dst, src, c),
        }
    }

    /// `dst[i] ^= Σ_j coeffs[j] · src[j · stride + i]` for every `i` of
    /// `dst`: adds to `dst` the sum of the products of `coeffs` with the
    /// `coeffs.len()` rows of `src` that start `stride` bytes apart (the
    /// symbols of a block). A zero coefficient skips its row, which may then
    /// hold anything.
    ///
    /// # Panics
    /// If `dst` is longer than `stride`, or `src` too short for the rows;
    /// and, as [`Kernel::mul_add`], if this CPU lacks the kernel's
    /// instructions.
    pub fn mul_add_rows(self, dst: &mut [u8], src: &[u8], stride: usize, coeffs: &[u8]) {
        let Some(last) = coeffs.len().checked_sub(1) else {
            return;
        };
        assert!(
            dst.len() <= stride,
            "rows overlap: {} > {stride}",
            dst.len()
        );
        assert!(
            src.len() >= last * stride + dst.len(),
            "{} rows of {stride} bytes do not fit in {}",
            coeffs.len(),
            src.len()
        );
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Gfni512 => {
                assert!(has_gfni512());
                // SAFETY: the CPU has GFNI, AVX-512F and AVX-512BW (checked
                // above); the rows lie within `src` (checked above).
                unsafe { x86::gfni512_rows(dst, src, stride, coeffs) }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Gfni => {
                assert!(has_gfni());
                // SAFETY: the CPU has GFNI and AVX2 (checked above); the
                // rows lie within `src` (checked above).
                unsafe { x86::gfni_rows(dst, src, stride, coeffs) }
            }
            _ => {
                for (j, &c) in coeffs.iter().enumerate() {
                    self.mul_add(dst, &src[j * stride..j * stride + dst.len()], c);
                }
            }
        }
    }
}

fn portable(dst: &mut [u8], src: &[u8], c: u8) {
    let row = &MUL[c as usize];
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= row[*s as usize];
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::portable;
    use crate::field::MUL;
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX2; `dst` and `src` have the same length.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn avx2(dst: &mut [u8], src: &[u8], c: u8) {
        let row = &MUL[c as usize];
        let mut lo = [0u8; 16];
        let mut hi = [0u8; 16];
        for x in 0..16 {
            lo[x] = row[x];
            hi[x] = row[x << 4];
        }
        let n = dst.len() / 32 * 32;
        // SAFETY: every load and store below stays within the first `n`
        // bytes of the slices (`i + 32 <= n`); the tables are 16 bytes.
        unsafe {
            let lo = _mm256_broadcastsi128_si256(_mm_loadu_si128(lo.as_ptr().cast()));
            let hi = _mm256_broadcastsi128_si256(_mm_loadu_si128(hi.as_ptr().cast()));
            let mask = _mm256_set1_epi8(0x0f);
            let mut i = 0;
            while i < n {
                let s = _mm256_loadu_si256(src.as_ptr().add(i).cast());
                let d = _mm256_loadu_si256(dst.as_ptr().add(i).cast());
                let l = _mm256_shuffle_epi8(lo, _mm256_and_si256(s, mask));
                let h = _mm256_shuffle_epi8(hi, _mm256_and_si256(_mm256_srli_epi64(s, 4), mask));
                let out = _mm256_xor_si256(d, _mm256_xor_si256(l, h));
                _mm256_storeu_si256(dst.as_mut_ptr().add(i).cast(), out);
                i += 32;
            }
        }
        portable(&mut dst[n..], &src[n..], c);
    }

    /// # Safety
    /// The CPU must have GFNI and AVX2; `dst` and `src` have the same length.
    #[target_feature(enable = "avx2,gfni")]
    pub(super) unsafe fn gfni(dst: &mut [u8], src: &[u8], c: u8) {
        let n = dst.len() / 32 * 32;
        // SAFETY: every load and store stays within the first `n` bytes.
        unsafe {
            let cv = _mm256_set1_epi8(c as i8);
            let mut i = 0;
            while i < n {
                let s = _mm256_loadu_si256(src.as_ptr().add(i).cast());
                let d = _mm256_loadu_si256(dst.as_ptr().add(i).cast());
                let out = _mm256_xor_si256(d, _mm256_gf2p8mul_epi8(s, cv));
                _mm256_storeu_si256(dst.as_mut_ptr().add(i).cast(), out);
                i += 32;
            }
        }
        portable(&mut dst[n..], &src[n..], c);
    }

    /// Products summed in a tile of `W` 32-byte registers.
    ///
    /// # Safety
    /// The CPU must have GFNI and AVX2; for every non-zero `coeffs[j]`,
    /// `src[j·stride + off..]` holds `W · 32` bytes.
    #[target_feature(enable = "avx2,gfni")]
    unsafe fn gfni_tile<const W: usize>(
        src: &[u8],
        off: usize,
        stride: usize,
        coeffs: &[u8],
    ) -> [__m256i; W] {
        let mut acc = [_mm256_setzero_si256(); W];
        for (j, &c) in coeffs.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let cv = _mm256_set1_epi8(c as i8);
            let row = j * stride + off;
            for (w, a) in acc.iter_mut().enumerate() {
                // SAFETY: the caller vouches for `W · 32` bytes at `row`.
                let s = unsafe { _mm256_loadu_si256(src.as_ptr().add(row + 32 * w).cast()) };
                *a = _mm256_xor_si256(*a, _mm256_gf2p8mul_epi8(s, cv));
            }
        }
        acc
    }

    /// # Safety
    /// The CPU must have GFNI and AVX2; `dst.len() <= stride` and `src`
    /// holds `(coeffs.len() - 1) · stride + dst.len()` bytes.
    #[target_feature(enable = "avx2,gfni")]
    pub(super) unsafe fn gfni_rows(dst: &mut [u8], src: &[u8], stride: usize, coeffs: &[u8]) {
        let n = dst.len();
        let mut off = 0;
        // SAFETY (all blocks): every access is at `off + x` with
        // `off + x < n <= stride`, in `dst` or in a row of `src`.
        while off + 128 <= n {
            let acc = unsafe { gfni_tile::<4>(src, off, stride, coeffs) };
            for (w, a) in acc.iter().enumerate() {
                let p = unsafe { dst.as_mut_ptr().add(off + 32 * w) };
                unsafe {
                    _mm256_storeu_si256(
                        p.cast(),
                        _mm256_xor_si256(_mm256_loadu_si256(p.cast()), *a),
                    )
                };
            }
            off += 128;
        }
        while off + 32 <= n {
            let [a] = unsafe { gfni_tile::<1>(src, off, stride, coeffs) };
            let p = unsafe { dst.as_mut_ptr().add(off) };
            unsafe {
                _mm256_storeu_si256(p.cast(), _mm256_xor_si256(_mm256_loadu_si256(p.cast()), a))
            };
            off += 32;
        }
        if off < n {
            // The last piece, under 32 bytes: each row's through a
            // zero-padded copy, so that it too takes one product.
            let tail = n - off;
            let mut acc = _mm256_setzero_si256();
            let mut buf = [0u8; 32];
            for (j, &c) in coeffs.iter().enumerate() {
                if c == 0 {
                    continue;
                }
                buf[..tail].copy_from_slice(&src[j * stride + off..j * stride + n]);
                // SAFETY: `buf` is 32 bytes.
                let s = unsafe { _mm256_loadu_si256(buf.as_ptr().cast()) };
                acc = _mm256_xor_si256(acc, _mm256_gf2p8mul_epi8(s, _mm256_set1_epi8(c as i8)));
            }
            // SAFETY: `buf` is 32 bytes.
            unsafe { _mm256_storeu_si256(buf.as_mut_ptr().cast(), acc) };
            for (d, b) in dst[off..].iter_mut().zip(buf) {
                *d ^= b;
            }
        }
    }

    /// # Safety
    /// The CPU must have GFNI, AVX-512F and AVX-512BW; `dst.len() <=
    /// stride` and `src` holds `(coeffs.len() - 1) · stride + dst.len()`
    /// bytes.
    #[target_feature(enable = "avx512f,avx512bw,gfni")]
    pub(super) unsafe fn gfni512_rows(dst: &mut [u8], src: &[u8], stride: usize, coeffs: &[u8]) {
        let n = dst.len();
        let mut off = 0;
        // SAFETY (all blocks): every access is at `off + x` with
        // `off + x < n <= stride`, in `dst` or in a row of `src`; the last
        // piece is read and written under a mask of its length.
        while off + 256 <= n {
            let mut acc = [_mm512_setzero_si512(); 4];
            for (j, &c) in coeffs.iter().enumerate() {
                if c == 0 {
                    continue;
                }
                let cv = _mm512_set1_epi8(c as i8);
                let row = unsafe { src.as_ptr().add(j * stride + off) };
                for (w, a) in acc.iter_mut().enumerate() {
                    let s = unsafe { _mm512_loadu_si512(row.add(64 * w).cast()) };
                    *a = _mm512_xor_si512(*a, _mm512_gf2p8mul_epi8(s, cv));
                }
            }
            for (w, a) in acc.iter().enumerate() {
                let p = unsafe { dst.as_mut_ptr().add(off + 64 * w) };
                unsafe {
                    _mm512_storeu_si512(
                        p.cast(),
                        _mm512_xor_si512(_mm512_loadu_si512(p.cast()), *a),
                    )
                };
            }
            off += 256;
        }
        while off < n {
            let len = (n - off).min(64);
            let mask: __mmask64 = if len == 64 { !0 } else { (1u64 << len) - 1 };
            let mut acc = _mm512_setzero_si512();
            for (j, &c) in coeffs.iter().enumerate() {
                if c == 0 {
                    continue;
                }
                let s = unsafe {
                    _mm512_maskz_loadu_epi8(mask, src.as_ptr().add(j * stride + off).cast())
                };
                acc = _mm512_xor_si512(acc, _mm512_gf2p8mul_epi8(s, _mm512_set1_epi8(c as i8)));
            }
            let p = unsafe { dst.as_mut_ptr().add(off) };
            let d = unsafe { _mm512_maskz_loadu_epi8(mask, p.cast()) };
            unsafe { _mm512_mask_storeu_epi8(p.cast(), mask, _mm512_xor_si512(d, acc)) };
            off += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::mul;

    #[test]
    fn every_kernel_gives_the_products() {
        let src: Vec<u8> = (0..300u32).map(|i| (i * 97 + 13) as u8).collect();
        for kernel in Kernel::available() {
            for c in 0..=255u8 {
                // Lengths around the 32-byte vector width, and a long one.
                for len in [0, 1, 31, 32, 33, 64, 95, 300] {
                    let start: Vec<u8> = (0..len as u32).map(|i| (i * 5) as u8).collect();
                    let mut dst = start.clone();
                    kernel.mul_add(&mut dst, &src[..len], c);
                    for i in 0..len {
                        assert_eq!(
                            dst[i],
                            start[i] ^ mul(c, src[i]),
                            "{kernel:?} c={c} len={len} i={i}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn every_kernel_sums_rows_of_products() {
        for kernel in Kernel::available() {
            for rows in [0usize, 1, 2, 3, 17] {
                // Lengths around the 32- and 64-byte widths and the 128- and
                // 256-byte tiles, and a symbol's; rows a little apart.
                for len in [
                    0, 1, 24, 31, 32, 33, 63, 64, 65, 127, 128, 200, 255, 256, 257, 300, 1400,
                ] {
                    let stride = len + 7;
                    let src: Vec<u8> = (0..rows * stride)
                        .map(|i| (i as u32 * 97 + 13) as u8)
                        .collect();
                    // Zero, one and everything else among the coefficients.
                    let coeffs: Vec<u8> = (0..rows)
                        .map(|j| [0, 1, 0x53, 0xFF, 2][j % 5] ^ (j / 5) as u8)
                        .collect();
                    let start: Vec<u8> = (0..len as u32).map(|i| (i * 5) as u8).collect();
                    let mut want = start.clone();
                    for (j, &c) in coeffs.iter().enumerate() {
                        for (i, w) in want.iter_mut().enumerate() {
                            *w ^= mul(c, src[j * stride + i]);
                        }
                    }
                    let mut dst = start.clone();
                    kernel.mul_add_rows(&mut dst, &src, stride, &coeffs);
                    assert!(dst == want, "{kernel:?} rows={rows} len={len}");
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "do not fit")]
    fn rows_beyond_the_source_panic() {
        Kernel::best().mul_add_rows(&mut [0; 8], &[0; 20], 10, &[1, 1, 1]);
    }

    #[test]
    fn the_shorter_slice_bounds_the_work() {
        let mut dst = [1u8; 8];
        Kernel::best().mul_add(&mut dst, &[0xFF; 4], 1);
        assert_eq!(dst, [0xFE, 0xFE, 0xFE, 0xFE, 1, 1, 1, 1]);
    }
}

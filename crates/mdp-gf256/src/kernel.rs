//! `dst ^= c · src` over byte slices: the one operation the code's encoder
//! and decoder spend their time in.
//!
//! Three implementations, chosen once per call by what the CPU has:
//! - GFNI (`vgf2p8mulb`, 32 bytes at a time), which multiplies in this very
//!   field;
//! - AVX2 (`vpshufb` on two 16-entry tables of `c` times each nibble);
//! - portable code (one lookup in the product table per byte).
//!
//! All three give the same bytes; the tests compare them on every length
//! and constant.

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
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub fn best() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("gfni")
                && std::arch::is_x86_feature_detected!("avx2")
            {
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
            if std::arch::is_x86_feature_detected!("gfni")
                && std::arch::is_x86_feature_detected!("avx2")
            {
                all.push(Kernel::Gfni);
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
            #[cfg(target_arch = "x86_64")]
            Kernel::Gfni => {
                assert!(
                    std::arch::is_x86_feature_detected!("gfni")
                        && std::arch::is_x86_feature_detected!("avx2")
                );
                // SAFETY: the CPU has GFNI and AVX2 (checked above).
                unsafe { x86::gfni(dst, src, c) }
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => portable(dst, src, c),
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
    fn the_shorter_slice_bounds_the_work() {
        let mut dst = [1u8; 8];
        Kernel::best().mul_add(&mut dst, &[0xFF; 4], 1);
        assert_eq!(dst, [0xFE, 0xFE, 0xFE, 0xFE, 1, 1, 1, 1]);
    }
}

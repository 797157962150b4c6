//! Arithmetic in GF(2^8) with the polynomial x^8 + x^4 + x^3 + x + 1
//! (0x11B, the AES field, which the GFNI instructions use).
//!
//! Addition is XOR. Multiplication goes through a full 256 × 256 product
//! table built at compile time; the vector kernels in [`crate::kernel`] take
//! their per-constant nibble tables from it.

/// The field's reduction polynomial, without the x^8 term.
const POLY: u16 = 0x11B;

/// Multiplies by shifting and reducing: only used to build the tables.
const fn slow_mul(a: u8, b: u8) -> u8 {
    let mut a = a as u16;
    let mut b = b;
    let mut p = 0u16;
    while b != 0 {
        if b & 1 != 0 {
            p ^= a;
        }
        a <<= 1;
        if a & 0x100 != 0 {
            a ^= POLY;
        }
        b >>= 1;
    }
    p as u8
}

const fn build_mul() -> [[u8; 256]; 256] {
    let mut t = [[0u8; 256]; 256];
    let mut a = 0;
    while a < 256 {
        let mut b = 0;
        while b < 256 {
            t[a][b] = slow_mul(a as u8, b as u8);
            b += 1;
        }
        a += 1;
    }
    t
}

const fn build_inv() -> [u8; 256] {
    let mut inv = [0u8; 256];
    let mut a = 1;
    while a < 256 {
        let mut b = 1;
        while b < 256 {
            if slow_mul(a as u8, b as u8) == 1 {
                inv[a] = b as u8;
                break;
            }
            b += 1;
        }
        a += 1;
    }
    inv
}

/// `MUL[a][b]` is `a · b`.
pub(crate) static MUL: [[u8; 256]; 256] = build_mul();

/// `INV[a]` is `1 / a` for `a ≠ 0` (and 0 for 0).
static INV: [u8; 256] = build_inv();

/// `a · b`.
pub fn mul(a: u8, b: u8) -> u8 {
    MUL[a as usize][b as usize]
}

/// `1 / a`; `None` for 0.
pub fn inv(a: u8) -> Option<u8> {
    (a != 0).then(|| INV[a as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_form_a_field() {
        for a in 0..=255u8 {
            assert_eq!(mul(a, 1), a);
            assert_eq!(mul(a, 0), 0);
            if a != 0 {
                assert_eq!(mul(a, inv(a).unwrap()), 1, "inverse of {a}");
            }
            for b in 0..=255u8 {
                assert_eq!(mul(a, b), mul(b, a));
            }
        }
        assert_eq!(inv(0), None);
        // Distributivity and associativity on a sample.
        for (a, b, c) in [(3u8, 7u8, 200u8), (0x53, 0xCA, 0x11), (255, 254, 2)] {
            assert_eq!(mul(a, b ^ c), mul(a, b) ^ mul(a, c));
            assert_eq!(mul(mul(a, b), c), mul(a, mul(b, c)));
        }
        // The AES field's textbook product: 0x53 · 0xCA = 1.
        assert_eq!(mul(0x53, 0xCA), 1);
    }
}

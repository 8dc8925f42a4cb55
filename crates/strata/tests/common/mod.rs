//! Test support shared by the array-layer tests.
#![allow(dead_code)]

use strata::Array;

/// `shape` of values uniform in `[-1, 1)` (float64) from an xorshift stream of `seed`.
pub fn rand(shape: &[usize], seed: u64) -> Array {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let v: Vec<f64> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect();
    Array::from_slice(&v, shape).unwrap()
}

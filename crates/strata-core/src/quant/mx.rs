//! OCP MX blocks: 32 elements sharing an E8M0 power-of-two scale.

use super::{MxElement, Numerics, floor_log2, pow2};
use crate::formats::{Overflow, minifloat};

/// Encodes one block into `codes` and returns its E8M0 scale code.
pub(super) fn quantize_block(element: MxElement, numerics: Numerics, x: &[f32], codes: &mut [u8]) -> u8 {
    if x.iter().any(|v| !v.is_finite()) {
        codes.fill(0);
        return 0xFF;
    }
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if amax == 0.0 {
        codes.fill(0);
        return if numerics == Numerics::Mlx { 127 } else { 0 };
    }
    let k = scale_exponent(element, numerics, amax).clamp(-127, 127);
    // V / 2^k is exact wherever it matters: a product that underflows f32's normal range is
    // far below half the smallest element value and rounds to zero either way.
    let inv = pow2(-k);
    for (c, &v) in codes.iter_mut().zip(x) {
        *c = encode_element(element, numerics, v * inv);
    }
    (k + 127) as u8
}

/// The exponent `k` of the block scale `2^k`, before clamping to E8M0's range.
fn scale_exponent(element: MxElement, numerics: Numerics, amax: f32) -> i32 {
    match numerics {
        // OCP v1.0 §6.3: shared_exp = floor(log2(amax)) - emax_elem.
        Numerics::Ocp => floor_log2(amax) - element.emax(),
        // The smallest k with amax / 2^k <= max_elem: the OCP exponent or one more.
        Numerics::NoClip => {
            let k = floor_log2(amax) - element.emax();
            if f64::from(amax) > f64::from(element.max_value()) * 2f64.powi(k) { k + 1 } else { k }
        }
        // MLX 0.32: r = amax / max_elem rounded to f32, then r rounded up to a power of two
        // (the same as NoClip except where r is an f32 subnormal).
        Numerics::Mlx => {
            let r = amax / element.max_value();
            let k = floor_log2(r);
            if r == pow2(k) { k } else { k + 1 }
        }
    }
}

fn encode_element(element: MxElement, numerics: Numerics, y: f32) -> u8 {
    match (element, numerics) {
        (MxElement::Int8, _) => ((y * 64.0).round_ties_even().clamp(-128.0, 127.0) as i8) as u8,
        (MxElement::E2M1, Numerics::Mlx) => mlx_e2m1(y),
        _ => {
            let fmt = element.float_format().expect("non-int8 MX elements are floats");
            fmt.encode(y, Overflow::Saturate) as u8
        }
    }
}

/// MLX's FP4 rounding: the first index minimizing `|y - lut[i]|` over
/// `[+0, .5, 1, 1.5, 2, 3, 4, 6, -0, -.5, …, -6]`, i.e. nearest with ties toward the smaller
/// magnitude, and `+0` for anything that rounds to zero.
pub(super) fn mlx_e2m1(y: f32) -> u8 {
    let a = y.abs();
    let magnitude = match a {
        a if a <= 0.25 => 0,
        a if a <= 0.75 => 1,
        a if a <= 1.25 => 2,
        a if a <= 1.75 => 3,
        a if a <= 2.5 => 4,
        a if a <= 3.5 => 5,
        a if a <= 5.0 => 6,
        _ => 7,
    };
    if magnitude != 0 && y < 0.0 { magnitude | 8 } else { magnitude }
}

pub(super) fn dequantize_block(element: MxElement, scale: u8, codes: &[u8], out: &mut [f32]) {
    let x = minifloat::E8M0.decode(u32::from(scale));
    match element.float_format() {
        Some(fmt) => {
            for (o, &c) in out.iter_mut().zip(codes) {
                *o = fmt.decode(u32::from(c)) * x;
            }
        }
        None => {
            for (o, &c) in out.iter_mut().zip(codes) {
                *o = f32::from(c as i8) / 64.0 * x;
            }
        }
    }
}

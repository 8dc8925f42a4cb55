//! NVIDIA nvfp4 blocks: 16 FP4 E2M1 elements with an FP8 E4M3 scale, under one fp32 scale
//! per tensor.

use super::{E4M3, Numerics, mx::mlx_e2m1};
use crate::formats::{Overflow, minifloat};

/// `448 · 6`: the largest block scale times the largest element.
const RANGE: f32 = 448.0 * 6.0;

/// How block values are mapped into E4M3's range and back.
pub(super) struct TensorScaling {
    /// Multiplies block scales and elements on the way in (MLX's `scale_encode`).
    encode: f32,
    /// The stored tensor scale: multiplies on the way out.
    pub(super) decode: f32,
}

impl TensorScaling {
    /// From a global amax `g` (`None`, zero or non-finite: no tensor scaling).
    pub(super) fn new(global: Option<f32>) -> Self {
        match global {
            Some(g) if g > 0.0 && g.is_finite() => TensorScaling { encode: RANGE / g, decode: g / RANGE },
            _ => TensorScaling { encode: 1.0, decode: 1.0 },
        }
    }
}

/// Encodes one block into `codes` and returns its E4M3 scale code. The order of the f32
/// operations is MLX's, so that [`Numerics::Mlx`] is bit-exact with it.
pub(super) fn quantize_block(scaling: &TensorScaling, numerics: Numerics, x: &[f32], codes: &mut [u8]) -> u8 {
    if x.iter().any(|v| !v.is_finite()) {
        codes.fill(0);
        return E4M3.nan_code().expect("E4M3 has NaN") as u8;
    }
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let scale = amax / 6.0 * scaling.encode;
    let mut code = E4M3.encode(scale, Overflow::Saturate);
    if numerics == Numerics::NoClip && E4M3.decode(code) < scale && code < E4M3.max_code() {
        // Positive E4M3 codes are ordered like their values: the next code is the next value up.
        code += 1;
    }
    let block_scale = E4M3.decode(code);
    if block_scale == 0.0 {
        codes.fill(0);
        return code as u8;
    }
    for (c, &v) in codes.iter_mut().zip(x) {
        let y = v / block_scale * scaling.encode;
        *c = match numerics {
            Numerics::Mlx => mlx_e2m1(y),
            _ => minifloat::E2M1.encode(y, Overflow::Saturate) as u8,
        };
    }
    code as u8
}

pub(super) fn dequantize_block(scale: u8, tensor_scale: f32, codes: &[u8], out: &mut [f32]) {
    let s = E4M3.decode(u32::from(scale)) * tensor_scale;
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = minifloat::E2M1.decode(u32::from(c)) * s;
    }
}

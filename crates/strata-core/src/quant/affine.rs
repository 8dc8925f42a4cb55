//! MLX's affine quantization: `w ≈ scale · q + bias` per group, `q` unsigned.
//!
//! The arithmetic follows MLX's CPU kernel (`mlx/backend/cpu/quantized.cpp`) operation for
//! operation in f32, which is what makes the codes, scales and biases bit-identical to
//! `mlx.core.quantize`. The scale is nudged so that the group's largest-magnitude value (the
//! "edge") is represented exactly, and it is negative when that edge is the maximum; 1-bit
//! groups use plain min-max, as MLX does.

/// Encodes one group into `codes` and returns `(scale, bias)` in f32.
pub(super) fn quantize_block(bits: u32, x: &[f32], codes: &mut [u8]) -> (f32, f32) {
    if x.iter().any(|v| !v.is_finite()) {
        codes.fill(0);
        return (f32::NAN, f32::NAN);
    }
    let n_bins = ((1u32 << bits) - 1) as f32;
    let eps = 1e-7f32;
    let (w_min, w_max) = x.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if bits == 1 {
        // MLX 0.32 quantizes 1-bit groups by plain min-max: with two levels the edge nudge
        // below would shrink the range instead of centring it.
        let scale = ((w_max - w_min) / n_bins).max(eps);
        for (c, &v) in codes.iter_mut().zip(x) {
            *c = ((v - w_min) / scale).round_ties_even().clamp(0.0, n_bins) as u8;
        }
        return (scale, w_min);
    }
    let edge_is_min = w_min.abs() > w_max.abs();
    let mut scale = ((w_max - w_min) / n_bins).max(eps);
    if !edge_is_min {
        scale = -scale;
    }
    let edge = if edge_is_min { w_min } else { w_max };
    let q0 = (edge / scale).round_ties_even();
    let mut bias = 0.0f32;
    if q0 != 0.0 {
        scale = edge / q0;
        bias = edge;
    }
    for (c, &v) in codes.iter_mut().zip(x) {
        *c = ((v - bias) / scale).round_ties_even().clamp(0.0, n_bins) as u8;
    }
    (scale, bias)
}

pub(super) fn dequantize_block(scale: f32, bias: f32, codes: &[u8], out: &mut [f32]) {
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = f32::from(c) * scale + bias;
    }
}

//! `f16` and `bf16` conversions that match NumPy and `ml_dtypes` bit for bit.
//!
//! The `half` crate rounds exactly as they do for every number; the two differ only on NaN
//! payloads, which `half` always quiets. NumPy's `float16` keeps the payload (and keeps a
//! signaling NaN signaling); `ml_dtypes.bfloat16` maps every NaN to the canonical `±0x7FC0` on
//! the way in and shifts bits unchanged on the way out. We take `half` for numbers and follow
//! the references for NaN.

use half::{bf16, f16};

/// `f32` → `f16`, round to nearest even, as NumPy's `astype(np.float16)`.
#[inline]
pub fn f16_from_f32(x: f32) -> f16 {
    let bits = x.to_bits();
    if bits & 0x7FFF_FFFF > 0x7F80_0000 {
        // NaN: keep the top 10 payload bits; a payload that vanishes becomes 1 so the result
        // stays NaN (NumPy's npy_floatbits_to_halfbits).
        let sign = ((bits >> 16) & 0x8000) as u16;
        let payload = ((bits & 0x007F_FFFF) >> 13) as u16;
        return f16::from_bits(sign | 0x7C00 | if payload == 0 { 1 } else { payload });
    }
    f16::from_f32(x)
}

/// `f16` → `f32`, exact; NaN payloads are kept as NumPy keeps them.
#[inline]
pub fn f16_to_f32(x: f16) -> f32 {
    let h = x.to_bits() as u32;
    if h & 0x7C00 == 0x7C00 && h & 0x03FF != 0 {
        return f32::from_bits(((h & 0x8000) << 16) | 0x7F80_0000 | ((h & 0x03FF) << 13));
    }
    x.to_f32()
}

/// `f32` → `bf16`, round to nearest even, as `ml_dtypes.bfloat16`: every NaN becomes the
/// canonical quiet NaN with the input's sign.
#[inline]
pub fn bf16_from_f32(x: f32) -> bf16 {
    if x.is_nan() {
        return bf16::from_bits(if x.is_sign_negative() { 0xFFC0 } else { 0x7FC0 });
    }
    bf16::from_f32(x)
}

/// `bf16` → `f32`: the 16 bits become the top half of the `f32`, NaN payloads included.
#[inline]
pub fn bf16_to_f32(x: bf16) -> f32 {
    f32::from_bits((x.to_bits() as u32) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_payloads_follow_numpy_and_ml_dtypes() {
        // Vectors printed by NumPy 2.4 / ml_dtypes 0.6 (see scripts/refs for the full sweep).
        let cases = [
            (0x7F80_0001, 0x7C01, 0x7FC0),
            (0x7FA0_0000, 0x7D00, 0x7FC0),
            (0x7F81_2345, 0x7C09, 0x7FC0),
            (0xFF80_0001, 0xFC01, 0xFFC0),
            (0x7FFF_FFFF, 0x7FFF, 0x7FC0),
        ];
        for (x, h, b) in cases {
            let x = f32::from_bits(x);
            assert_eq!(f16_from_f32(x).to_bits(), h);
            assert_eq!(bf16_from_f32(x).to_bits(), b);
        }
        assert_eq!(f16_to_f32(f16::from_bits(0x7C01)).to_bits(), 0x7F80_2000);
        assert_eq!(bf16_to_f32(bf16::from_bits(0x7F81)).to_bits(), 0x7F81_0000);
    }
}

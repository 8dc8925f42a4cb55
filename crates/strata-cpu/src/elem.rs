//! The element types of the element-wise kernels and the arithmetic each kind supports.
//!
//! Floats compute in [`Float`] (f32 for f16/bf16/f32, f64 for f64) and round once on the way
//! out; integers use wrapping arithmetic with NumPy's conventions where Rust would panic
//! (division by zero gives 0, over-wide shifts give 0 or -1); `bool` is a byte, 0 or 1.

use bytemuck::Pod;
use half::{bf16, f16};

/// Floating-point arithmetic in the compute types f32 and f64.
pub(crate) trait Float: Copy + Send + Sync + PartialOrd + PartialEq + std::fmt::Debug + 'static {
    const ZERO: Self;
    const ONE: Self;
    const NAN: Self;
    fn add(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn neg(self) -> Self;
    fn is_nan(self) -> bool;
    fn unary(self, op: strata_core::kernel::UnaryOp) -> Self;
    fn binary(self, o: Self, op: strata_core::kernel::BinaryOp) -> Self;
}

/// `erfinv` for f64: Giles' single-precision approximation refined by two Newton steps on
/// `erf`, which brings it to full double precision.
pub(crate) fn erfinv_f64(y: f64) -> f64 {
    if y.is_nan() || y.abs() > 1.0 {
        return f64::NAN;
    }
    if y.abs() == 1.0 {
        return y * f64::INFINITY;
    }
    let mut x = erfinv_f32(y as f32) as f64;
    for _ in 0..2 {
        let err = libm::erf(x) - y;
        x -= err / (std::f64::consts::FRAC_2_SQRT_PI * (-x * x).exp());
    }
    x
}

/// `erfinv` for f32 (M. Giles, "Approximating the erfinv function", 2010).
#[allow(clippy::excessive_precision)] // the coefficients as published
pub(crate) fn erfinv_f32(y: f32) -> f32 {
    if y.is_nan() || y.abs() > 1.0 {
        return f32::NAN;
    }
    if y.abs() == 1.0 {
        return y * f32::INFINITY;
    }
    let mut w = -((1.0 - y) * (1.0 + y)).ln();
    let p = if w < 5.0 {
        w -= 2.5;
        let mut p = 2.810_226_36e-08f32;
        for c in [
            3.432_739_39e-07,
            -3.523_387_7e-06,
            -4.391_506_54e-06,
            0.000_218_580_87,
            -0.001_253_725_03,
            -0.004_177_681_64,
            0.246_640_727,
            1.501_409_41,
        ] {
            p = p.mul_add(w, c);
        }
        p
    } else {
        w = w.sqrt() - 3.0;
        let mut p = -0.000_200_214_257f32;
        for c in [
            0.000_100_950_558,
            0.001_349_343_22,
            -0.003_673_428_44,
            0.005_739_507_73,
            -0.007_622_461_3,
            0.009_438_870_47,
            1.001_674_06,
            2.832_976_82,
        ] {
            p = p.mul_add(w, c);
        }
        p
    };
    p * y
}

macro_rules! impl_float {
    ($t:ident, $erf:path, $erfc:path, $erfinv:path, $exp:expr, $tanh:expr) => {
        impl Float for $t {
            const ZERO: $t = 0.0;
            const ONE: $t = 1.0;
            const NAN: $t = $t::NAN;
            #[inline(always)]
            fn add(self, o: $t) -> $t {
                self + o
            }
            #[inline(always)]
            fn mul(self, o: $t) -> $t {
                self * o
            }
            #[inline(always)]
            fn neg(self) -> $t {
                -self
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                $t::is_nan(self)
            }

            #[inline(always)]
            fn unary(self, op: strata_core::kernel::UnaryOp) -> $t {
                use strata_core::kernel::UnaryOp as U;
                let x = self;
                let exp: fn($t) -> $t = $exp;
                match op {
                    U::Neg => -x,
                    U::Abs => x.abs(),
                    U::Sign => {
                        if x > 0.0 {
                            1.0
                        } else if x < 0.0 {
                            -1.0
                        } else {
                            x
                        }
                    }
                    U::Square => x * x,
                    U::Sqrt => x.sqrt(),
                    U::Rsqrt => 1.0 / x.sqrt(),
                    U::Reciprocal => 1.0 / x,
                    U::Exp => exp(x),
                    U::Exp2 => x.exp2(),
                    U::Expm1 => x.exp_m1(),
                    U::Log => x.ln(),
                    U::Log2 => x.log2(),
                    U::Log10 => x.log10(),
                    U::Log1p => x.ln_1p(),
                    U::Sin => x.sin(),
                    U::Cos => x.cos(),
                    U::Tan => x.tan(),
                    U::Asin => x.asin(),
                    U::Acos => x.acos(),
                    U::Atan => x.atan(),
                    U::Sinh => x.sinh(),
                    U::Cosh => x.cosh(),
                    U::Tanh => ($tanh)(x),
                    // libm's inverse hyperbolics stay accurate near their singular points.
                    U::Asinh => libm::Libm::<$t>::asinh(x),
                    // libm answers with a number below the domain; NumPy (and CUDA) say NaN.
                    U::Acosh => {
                        if x < 1.0 {
                            $t::NAN
                        } else {
                            libm::Libm::<$t>::acosh(x)
                        }
                    }
                    U::Atanh => libm::Libm::<$t>::atanh(x),
                    U::Erf => $erf(x),
                    U::ErfInv => $erfinv(x),
                    U::Sigmoid => 1.0 / (1.0 + exp(-x)),
                    // ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|): no overflow, no cancellation.
                    U::Softplus => x.max(0.0) + exp(-x.abs()).ln_1p(),
                    U::Relu => {
                        if x < 0.0 {
                            0.0
                        } else {
                            x
                        }
                    }
                    // erfc(-x/√2) rather than 1 + erf(x/√2): no cancellation for negative x.
                    U::Gelu => 0.5 * x * $erfc(-x * std::$t::consts::FRAC_1_SQRT_2),
                    // ½(1 + tanh z) = σ(2z): the same value without the cancellation for z < 0.
                    U::GeluTanh => {
                        x / (1.0
                            + exp(-2.0
                                * std::$t::consts::FRAC_2_SQRT_PI
                                * std::$t::consts::FRAC_1_SQRT_2
                                * (x + 0.044715 * x * x * x)))
                    }
                    U::Silu => x / (1.0 + exp(-x)),
                    U::Floor => x.floor(),
                    U::Ceil => x.ceil(),
                    U::Round => x.round_ties_even(),
                    U::IsNan | U::IsInf | U::IsFinite | U::LogicalNot | U::BitwiseNot => {
                        unreachable!("not a float-valued op")
                    }
                }
            }

            #[inline(always)]
            fn binary(self, b: $t, op: strata_core::kernel::BinaryOp) -> $t {
                use strata_core::kernel::BinaryOp as B;
                let a = self;
                match op {
                    B::Add => a + b,
                    B::Sub => a - b,
                    B::Mul => a * b,
                    B::Div => a / b,
                    // NumPy's npy_divmod: the quotient of a − fmod(a, b), which is a whole
                    // multiple of b, rounded to the nearest integer, so that it does not hinge on
                    // the last bit of a / b (a GPU's division may be a few ulps off).
                    B::FloorDiv => {
                        if b == 0.0 {
                            return a / b;
                        }
                        let m = a % b;
                        let mut div = (a - m) / b;
                        if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
                            div -= 1.0;
                        }
                        if div == 0.0 {
                            return (0.0 as $t).copysign(a / b);
                        }
                        let f = div.floor();
                        if div - f > 0.5 { f + 1.0 } else { f }
                    }
                    B::Remainder => {
                        // fmod, moved to the sign of the divisor (Python's and NumPy's %).
                        let r = a % b;
                        if r != 0.0 && ((r < 0.0) != (b < 0.0)) { r + b } else { r }
                    }
                    B::Pow => a.powf(b),
                    B::Maximum => {
                        if a.is_nan() || b.is_nan() {
                            $t::NAN
                        } else {
                            a.max(b)
                        }
                    }
                    B::Minimum => {
                        if a.is_nan() || b.is_nan() {
                            $t::NAN
                        } else {
                            a.min(b)
                        }
                    }
                    B::Atan2 => a.atan2(b),
                    B::LogAddExp => {
                        let m = a.max(b);
                        if m == $t::NEG_INFINITY {
                            m
                        } else if a.is_nan() || b.is_nan() {
                            $t::NAN
                        } else {
                            m + (-(a - b).abs()).exp().ln_1p()
                        }
                    }
                    _ => unreachable!("not a float-valued op"),
                }
            }
        }
    };
}

impl_float!(f32, libm::erff, libm::erfcf, erfinv_f32, crate::math::exp_f32, crate::math::tanh_f32);
impl_float!(f64, libm::erf, libm::erfc, erfinv_f64, f64::exp, f64::tanh);

/// A floating storage type and its compute type.
pub(crate) trait FloatStore: Pod + Send + Sync {
    type C: Float;
    fn load(self) -> Self::C;
    fn store(c: Self::C) -> Self;
}

impl FloatStore for f32 {
    type C = f32;
    #[inline(always)]
    fn load(self) -> f32 {
        self
    }
    #[inline(always)]
    fn store(c: f32) -> f32 {
        c
    }
}
impl FloatStore for f64 {
    type C = f64;
    #[inline(always)]
    fn load(self) -> f64 {
        self
    }
    #[inline(always)]
    fn store(c: f64) -> f64 {
        c
    }
}
impl FloatStore for f16 {
    type C = f32;
    #[inline(always)]
    fn load(self) -> f32 {
        f16_to_f32(self)
    }
    #[inline(always)]
    fn store(c: f32) -> f16 {
        f32_to_f16(c)
    }
}
impl FloatStore for bf16 {
    type C = f32;
    #[inline(always)]
    fn load(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn store(c: f32) -> bf16 {
        bf16::from_f32(c)
    }
}

/// `f16 → f32`, exact, without branches so that loops over it vectorize (the `half` crate's
/// conversion is one call per element). NaNs come out quiet with their payload, as in `half`.
#[inline(always)]
pub(crate) fn f16_to_f32(h: f16) -> f32 {
    let h = u32::from(h.to_bits());
    let (sign, em) = ((h & 0x8000) << 16, h & 0x7fff);
    // The exponent and mantissa moved into place are the value times 2^-112, subnormals too.
    let scaled = (f32::from_bits(em << 13) * f32::from_bits(0x7780_0000)).to_bits();
    let special = (em << 13) | 0x7f80_0000 | if em > 0x7c00 { 0x0040_0000 } else { 0 };
    f32::from_bits(sign | if em >= 0x7c00 { special } else { scaled })
}

/// `f32 → f16` with round-to-nearest-even, bit-identical to `half` (NaN payloads kept, made
/// quiet) but without branches, so that loops over it vectorize.
#[inline(always)]
pub(crate) fn f32_to_f16(x: f32) -> f16 {
    const DENORM_MAGIC: u32 = ((127 - 15) + (23 - 10) + 1) << 23;
    let bits = x.to_bits();
    let sign = (bits >> 16) & 0x8000;
    let u = bits & 0x7fff_ffff;
    // Below 2^-14 the result is subnormal: adding 0.5 makes the FPU round the bits into place.
    let sub = (f32::from_bits(u) + f32::from_bits(DENORM_MAGIC)).to_bits().wrapping_sub(DENORM_MAGIC);
    // Normal: rebias, then round to nearest even on the 13 dropped bits.
    let odd = (u >> 13) & 1;
    let norm = u.wrapping_sub((127 - 15) << 23).wrapping_add(0xfff + odd) >> 13;
    let nan = 0x7e00 | ((u >> 13) & 0x3ff);
    let h = if u > 0x7f80_0000 {
        nan
    } else if u >= (127 + 16) << 23 {
        0x7c00
    } else if u < 113 << 23 {
        sub
    } else {
        norm
    };
    f16::from_bits((h | sign) as u16)
}

/// Integer arithmetic with NumPy's conventions.
pub(crate) trait Int: Pod + Send + Sync + PartialOrd + Ord + std::fmt::Debug {
    const ZERO: Self;
    const ONE: Self;
    const MIN: Self;
    const MAX: Self;
    fn unary(self, op: strata_core::kernel::UnaryOp) -> Self;
    fn binary(self, o: Self, op: strata_core::kernel::BinaryOp) -> Self;
}

macro_rules! impl_int {
    ($($t:ident: $signed:expr),*) => {$(
        impl Int for $t {
            const ZERO: $t = 0;
            const ONE: $t = 1;
            const MIN: $t = $t::MIN;
            const MAX: $t = $t::MAX;

            #[inline(always)]
            #[allow(unused_comparisons)]
            fn unary(self, op: strata_core::kernel::UnaryOp) -> $t {
                use strata_core::kernel::UnaryOp as U;
                let x = self;
                match op {
                    U::Neg => x.wrapping_neg(),
                    U::Abs => if x < 0 { x.wrapping_neg() } else { x },
                    U::Sign => if x > 0 { 1 } else if x < 0 { (0 as $t).wrapping_sub(1) } else { 0 },
                    U::Square => x.wrapping_mul(x),
                    U::Relu => if x < 0 { 0 } else { x },
                    U::Floor | U::Ceil | U::Round => x,
                    U::BitwiseNot => !x,
                    _ => unreachable!("not an integer-valued op"),
                }
            }

            #[inline(always)]
            #[allow(unused_comparisons)]
            fn binary(self, b: $t, op: strata_core::kernel::BinaryOp) -> $t {
                use strata_core::kernel::BinaryOp as B;
                let a = self;
                const BITS: u32 = $t::BITS;
                match op {
                    B::Add => a.wrapping_add(b),
                    B::Sub => a.wrapping_sub(b),
                    B::Mul => a.wrapping_mul(b),
                    B::FloorDiv => {
                        if b == 0 {
                            0
                        } else {
                            let q = a.wrapping_div(b);
                            // Round toward -inf: one less when the signs differ and it was inexact.
                            if (a.wrapping_rem(b) != 0) && ((a < 0) != (b < 0)) { q.wrapping_sub(1) } else { q }
                        }
                    }
                    B::Remainder => {
                        if b == 0 {
                            0
                        } else {
                            let r = a.wrapping_rem(b);
                            if r != 0 && ((r < 0) != (b < 0)) { r.wrapping_add(b) } else { r }
                        }
                    }
                    B::Pow => {
                        if b < 0 {
                            // Only ±1 have integer reciprocals.
                            if a == 1 { 1 } else if $signed && a == (0 as $t).wrapping_sub(1) { if b % 2 == 0 { 1 } else { a } } else { 0 }
                        } else {
                            let (mut base, mut e, mut acc) = (a, b as u64, 1 as $t);
                            while e > 0 {
                                if e & 1 == 1 {
                                    acc = acc.wrapping_mul(base);
                                }
                                base = base.wrapping_mul(base);
                                e >>= 1;
                            }
                            acc
                        }
                    }
                    B::Maximum => a.max(b),
                    B::Minimum => a.min(b),
                    B::BitwiseAnd => a & b,
                    B::BitwiseOr => a | b,
                    B::BitwiseXor => a ^ b,
                    B::LeftShift => if b < 0 || (b as u64) >= BITS as u64 { 0 } else { a << (b as u32) },
                    B::RightShift => {
                        if b < 0 || (b as u64) >= BITS as u64 {
                            if a < 0 { (0 as $t).wrapping_sub(1) } else { 0 }
                        } else {
                            a >> (b as u32)
                        }
                    }
                    _ => unreachable!("not an integer-valued op"),
                }
            }
        }
    )*};
}

impl_int!(i8: true, u8: false, i16: true, u16: false, i32: true, u32: false, i64: true, u64: false);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_widening_matches_half_for_every_code() {
        for bits in 0..=u16::MAX {
            let h = f16::from_bits(bits);
            assert_eq!(f16_to_f32(h).to_bits(), h.to_f32().to_bits(), "f16 bits {bits:#06x}");
        }
    }

    #[test]
    fn f16_narrowing_matches_half() {
        // Every exponent with many mantissas, including the ties and the neighbours of every
        // rounding boundary (bits 12..14), and the specials.
        let mut codes: Vec<u32> = (0..=0xffff_ffffu32).step_by(4093).collect();
        for e in 0..=255u32 {
            for m in [0, 1, 0xfff, 0x1000, 0x1001, 0x2000, 0x3000, 0x5000, 0x7f_e000, 0x7f_efff, 0x7f_f000, 0x7f_ffff] {
                codes.extend([e << 23 | m, 0x8000_0000 | e << 23 | m]);
            }
        }
        for bits in codes {
            let x = f32::from_bits(bits);
            assert_eq!(f32_to_f16(x).to_bits(), f16::from_f32(x).to_bits(), "f32 bits {bits:#010x}");
        }
    }
}

//! Vectorizable elementary functions over slices.
//!
//! `f32::exp` calls libm one value at a time; softmax over attention scores needs millions of
//! them, so [`exp_inplace`] uses a branch-free range reduction and polynomial the compiler
//! turns into AVX-512/AVX2 code (`exp(x) = 2^n · p(r)`, `r = x − n·ln 2`, |r| ≤ ln 2 / 2, a
//! degree-6 polynomial: relative error below 2 ulp, checked against `f64::exp`).

const LOG2E: f32 = std::f32::consts::LOG2_E;
// ln 2 split in two so that `n · LN2_HI` is exact for |n| < 2^8.
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// Below this, e^x is less than half the smallest subnormal and rounds to zero; above it the
/// result is a normal or subnormal number (as libm's and CUDA's `expf` give: flushing
/// subnormals to zero made `exp(-96)·∞` NaN instead of ∞).
const EXP_LO: f32 = -103.972_08;
/// Above this, exp overflows to +Inf.
const EXP_HI: f32 = 88.722_84;

/// `2^n` for an integer-valued `n` in [-126, 127], by bit arithmetic only: Rust's saturating
/// `as i32` would keep the loop from vectorizing (LLVM converts lane by lane).
#[inline(always)]
fn pow2i(n: f32) -> f32 {
    // n + 1.5·2²³ holds n (two's complement) in its low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let i = (n + MAGIC).to_bits().wrapping_sub(MAGIC.to_bits());
    f32::from_bits(i.wrapping_add(127) << 23)
}

/// `e^x` for one value, written so that a loop over it vectorizes.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    let c = x.clamp(EXP_LO, EXP_HI);
    let n = (c * LOG2E).round_ties_even();
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, c));
    // Taylor coefficients of e^r up to r^6 (on |r| ≤ 0.347 the next term is below 1.2e-7),
    // evaluated with fused multiply-adds so each step rounds once.
    let p = r.mul_add(1.0 / 720.0, 1.0 / 120.0);
    let p = r.mul_add(p, 1.0 / 24.0);
    let p = r.mul_add(p, 1.0 / 6.0);
    let p = r.mul_add(p, 0.5);
    let p = r.mul_add(p, 1.0);
    let p = r.mul_add(p, 1.0);
    // 2^n for n in [-150, 128] as two factors, each a normal power of two: p·2^a is exact, and
    // the second product rounds once (into the subnormals for n < -126).
    let half = (n * 0.5).floor();
    let (scale_a, scale_b) = (pow2i(half), pow2i(n - half));
    let v = p * scale_a * scale_b;
    if x < EXP_LO {
        0.0
    } else if x > EXP_HI {
        f32::INFINITY
    } else if x.is_nan() {
        x
    } else {
        v
    }
}

/// `tanh x` for one value, written so that a loop over it vectorizes (libm's `tanhf` is a
/// call per element): Eigen's 13/6-degree odd/even rational interpolant on [-9, 9] (outside
/// it tanh rounds to ±1 in float32), `x` itself below |x| = 0.0004 where `x` is the correctly
/// rounded value. One division and eleven fused multiply-adds; within 3 ulp (tested below).
#[inline(always)]
pub(crate) fn tanh_f32(x: f32) -> f32 {
    let c = x.clamp(-9.0, 9.0);
    let z = c * c;
    let p = z.mul_add(-2.760_768_5e-16, 2.000_188e-13);
    let p = z.mul_add(p, -8.604_672e-11);
    let p = z.mul_add(p, 5.122_297e-8);
    let p = z.mul_add(p, 1.485_722_4e-5);
    let p = z.mul_add(p, 6.372_619_3e-4);
    let p = z.mul_add(p, 4.893_524_6e-3);
    let q = z.mul_add(1.198_258_4e-6, 1.185_347_1e-4);
    let q = z.mul_add(q, 2.268_434_6e-3);
    let q = z.mul_add(q, 4.893_525e-3);
    let t = c * p / q;
    if x.abs() < 0.0004 { x } else { t }
}

/// `x[i] = e^x[i]` with the best instruction set available.
pub(crate) fn exp_inplace(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { exp_avx512(x) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { exp_avx2(x) };
        }
    }
    x.iter_mut().for_each(|v| *v = exp_f32(*v));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn exp_avx512(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = exp_f32(*v));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_avx2(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = exp_f32(*v));
}

#[cfg(test)]
mod tests {
    #[test]
    fn tanh_is_accurate() {
        // Within 3 ulp of the correctly rounded value over a sweep, and exact specials.
        let mut worst = 0.0f64;
        for i in -200_000..=200_000 {
            let x = i as f32 * 1e-4;
            let (got, want) = (super::tanh_f32(x) as f64, (x as f64).tanh());
            let ulp = f32::EPSILON as f64 * want.abs().max(f32::MIN_POSITIVE as f64);
            worst = worst.max((got - want).abs() / ulp);
        }
        assert!(worst <= 3.0, "worst error {worst} ulp");
        assert_eq!(super::tanh_f32(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(super::tanh_f32(f32::INFINITY), 1.0);
        assert_eq!(super::tanh_f32(f32::NEG_INFINITY), -1.0);
        assert!(super::tanh_f32(f32::NAN).is_nan());
        assert_eq!(super::tanh_f32(1e-30), 1e-30);
    }

    use super::*;

    #[test]
    fn exp_is_accurate_everywhere() {
        // A dense sweep of the whole finite range and the specials.
        let mut xs: Vec<f32> = (0..2_100_001).map(|i| -110.0 + i as f32 * 1e-4).collect();
        xs.extend([
            0.0,
            -0.0,
            1e-30,
            -1e-30,
            88.72,
            88.73,
            -87.33,
            -87.34,
            -96.87,
            -103.97,
            -103.98,
            -1e10,
            1e10,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ]);
        let mut ys = xs.clone();
        exp_inplace(&mut ys);
        let mut worst = 0.0f64;
        for (&x, &y) in xs.iter().zip(&ys) {
            let want = (x as f64).exp();
            if x.is_nan() {
                assert!(y.is_nan());
            } else if want > f32::MAX as f64 {
                assert_eq!(y, f32::INFINITY, "exp({x})");
            } else if want < f32::MIN_POSITIVE as f64 {
                // Subnormal results: within two subnormal steps (2^-148): the polynomial's 2 ulp
                // of relative error plus the rounding into the subnormals.
                assert!((y as f64 - want).abs() <= f32::from_bits(2) as f64, "exp({x}) = {y}, want {want}");
            } else {
                let ulps = (y as f64 - want).abs() / (want * f32::EPSILON as f64);
                worst = worst.max(ulps);
            }
        }
        assert!(worst < 2.0, "worst error {worst} ulp");
    }
}

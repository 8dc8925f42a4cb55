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
/// Below this, exp underflows to zero (rather than to a subnormal; the result differs from
/// the true value by less than 1.2e-38).
const EXP_LO: f32 = -87.336_55;
/// Above this, exp overflows to +Inf.
const EXP_HI: f32 = 88.722_84;

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
    // 2^n for n in [-126, 128]: n = 128 (only at EXP_HI) goes through two steps.
    let half = (n * 0.5).floor();
    let scale_a = f32::from_bits(((half as i32 + 127) << 23) as u32);
    let scale_b = f32::from_bits((((n - half) as i32 + 127) << 23) as u32);
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
    use super::*;

    #[test]
    fn exp_is_accurate_everywhere() {
        // A dense sweep of the whole finite range and the specials.
        let mut xs: Vec<f32> = (0..2_000_001).map(|i| -100.0 + i as f32 * 1e-4).collect();
        xs.extend([
            0.0,
            -0.0,
            1e-30,
            -1e-30,
            88.72,
            88.73,
            -87.33,
            -87.34,
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
                assert!(y == 0.0 || (y as f64 - want).abs() < 1.2e-38, "exp({x}) = {y}");
            } else {
                let ulps = (y as f64 - want).abs() / (want * f32::EPSILON as f64);
                worst = worst.max(ulps);
            }
        }
        assert!(worst < 2.0, "worst error {worst} ulp");
    }
}

//! Round-trip error bounds of every quantization mode, property-tested on random inputs, and
//! the defined behaviour on all-zero blocks, NaN/Inf and f32 subnormals.
//!
//! The bounds are the tight ones each rule promises: an MX or nvfp4 element is off by at most
//! half a step of the element format at its magnitude (times the block scale), unless it was
//! beyond the element's max, in which case it is exactly ±max (and under `NoClip`, nothing
//! is); an affine element in its group's range is off by at most half a step.

use proptest::prelude::*;
use strata_core::formats::{F8E4M3, minifloat};
use strata_core::quant::{self, MxElement, Numerics, QuantMode, TensorScale};

const ELEMENTS: [MxElement; 6] =
    [MxElement::E4M3, MxElement::E5M2, MxElement::E3M2, MxElement::E2M3, MxElement::E2M1, MxElement::Int8];
const NUMERICS: [Numerics; 3] = [Numerics::Ocp, Numerics::NoClip, Numerics::Mlx];

/// Half the gap between neighbouring element values around `|y|` (in element units).
fn half_step(element: MxElement, y: f32) -> f64 {
    match element.float_format() {
        None => 0.5 / 64.0,
        Some(fmt) => {
            let emin = 1 - fmt.bias;
            let e = if y == 0.0 { emin } else { (y.abs() as f64).log2().floor() as i32 }.max(emin);
            0.5 * 2f64.powi(e - fmt.mantissa_bits as i32)
        }
    }
}

/// Rows of random values: `rows` × `cols`, magnitudes varying by row over 2^±`spread`, with
/// some exact zeros.
fn matrix(
    max_rows: usize,
    col_blocks: usize,
    block: usize,
    spread: i32,
) -> impl Strategy<Value = (Vec<f32>, Vec<usize>)> {
    (1..=max_rows, 1..=col_blocks).prop_flat_map(move |(rows, blocks)| {
        let cols = blocks * block;
        (prop::collection::vec(-spread..=spread, rows), prop::collection::vec((-1.0f32..1.0, 0u8..20), rows * cols))
            .prop_map(move |(exps, vals)| {
                let x = vals
                    .iter()
                    .enumerate()
                    .map(|(i, &(v, z))| if z == 0 { 0.0 } else { v * 2f32.powi(exps[i / cols]) })
                    .collect();
                (x, vec![rows, cols])
            })
    })
}

fn check_mx(element: MxElement, numerics: Numerics, x: &[f32], shape: &[usize]) -> Result<(), TestCaseError> {
    let mode = QuantMode::Mx { element, numerics };
    let q = quant::quantize(x, shape, &mode).unwrap();
    let y = quant::dequantize(&q);
    let max = element.max_value() as f64;
    for (b, (xb, yb)) in x.chunks(32).zip(y.chunks(32)).enumerate() {
        let code = q.scales().bytes[b];
        let scale = minifloat::E8M0.decode(u32::from(code)) as f64;
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
        if amax == 0.0 {
            prop_assert_eq!(code, if numerics == Numerics::Mlx { 127 } else { 0 });
            prop_assert!(yb.iter().all(|&v| v == 0.0));
            continue;
        }
        // Where the scale puts the block's largest value (unless E8M0's range clamped it).
        let top = amax / scale;
        if code > 0 && code < 254 {
            match numerics {
                Numerics::Ocp => {
                    let emax = 2f64.powi(element.emax());
                    prop_assert!(top >= emax && top < 2.0 * emax, "{mode}: amax/X = {top}");
                }
                Numerics::NoClip | Numerics::Mlx => {
                    prop_assert!(top <= max && top > max / 2.0, "{mode}: amax/X = {top}")
                }
            }
        }
        for (&v, &r) in xb.iter().zip(yb) {
            let scaled = v as f64 / scale;
            let err = (v as f64 - r as f64).abs();
            // INT8's two's complement range reaches -2 below, one step past -max.
            let lowest = if element == MxElement::Int8 { -2.0 } else { -max };
            if scaled > max || scaled < lowest {
                prop_assert!(numerics == Numerics::Ocp, "{mode} clipped {v} (x/X = {scaled})");
                let clamped = if scaled > 0.0 { max } else { lowest };
                prop_assert_eq!(r as f64, clamped * scale, "{}: {} clips", mode, v);
            } else {
                let bound = half_step(element, scaled as f32) * scale;
                prop_assert!(err <= bound, "{mode}: {v} -> {r}, error {err} > half step {bound} (X = {scale})");
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn mx_round_trip_within_half_a_step((x, shape) in matrix(4, 4, 32, 40)) {
        for element in ELEMENTS {
            for numerics in NUMERICS {
                check_mx(element, numerics, &x, &shape)?;
            }
        }
    }

    #[test]
    fn mx_handles_f32_extremes((x, shape) in matrix(2, 2, 32, 10), exp in prop_oneof![-149i32..-120, 100i32..117]) {
        let x: Vec<f32> = x.iter().map(|v| (*v as f64 * 2f64.powi(exp)) as f32).collect();
        for element in ELEMENTS {
            check_mx(element, Numerics::Ocp, &x, &shape)?;
        }
    }

    #[test]
    fn nvfp4_round_trip((x, shape) in matrix(4, 4, 16, 30), numerics in prop::sample::select(NUMERICS.to_vec()), one in any::<bool>()) {
        let tensor_scale = if one { TensorScale::One } else { TensorScale::Amax };
        let mode = QuantMode::Nvfp4 { tensor_scale, numerics };
        let q = quant::quantize(&x, &shape, &mode).unwrap();
        let y = quant::dequantize(&q);
        let t = q.tensor_scale().unwrap() as f64;
        let tensor_amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
        if !one && tensor_amax > 0.0 {
            prop_assert_eq!(t, (tensor_amax as f32 / 2688.0) as f64);
        }
        let encode = if one || tensor_amax == 0.0 { 1.0 } else { 2688.0 / tensor_amax as f32 };
        for (b, (xb, yb)) in x.chunks(16).zip(y.chunks(16)).enumerate() {
            let code = q.scales().bytes[b];
            let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let wanted = amax / 6.0 * encode;
            match numerics {
                // The block scale is amax/6 (in E4M3 units) rounded to nearest-even...
                Numerics::Ocp | Numerics::Mlx => prop_assert_eq!(code, F8E4M3::from_f32_saturating(wanted).to_bits()),
                // ...or rounded up, so that no element clips.
                Numerics::NoClip => {
                    let s = F8E4M3::from_bits(code);
                    prop_assert!(s.to_f32() >= wanted || s == F8E4M3::MAX, "{mode}: scale {s} < {wanted}");
                    prop_assert!(code == 0 || F8E4M3::from_bits(code - 1).to_f32() < wanted);
                }
            }
            // As dequantize computes it: element · (block scale · tensor scale), in f32.
            let block_scale_f32 = F8E4M3::from_bits(code).to_f32() * t as f32;
            let block_scale = block_scale_f32 as f64;
            if block_scale == 0.0 {
                prop_assert!(yb.iter().all(|&v| v == 0.0));
                continue;
            }
            for (&v, &r) in xb.iter().zip(yb) {
                let scaled = v as f64 / block_scale;
                let err = (v as f64 - r as f64).abs();
                // f32 rounding of v / scale · encode, and of the tensor scale.
                let slop = 1e-6 * v.abs() as f64;
                if scaled.abs() > 6.0 * (1.0 + 1e-6) {
                    // NoClip can only clip when the scale it needs is beyond E4M3's 448.
                    prop_assert!(numerics != Numerics::NoClip || F8E4M3::from_bits(code) == F8E4M3::MAX, "{mode} clipped {v}");
                    prop_assert_eq!(r, 6f32.copysign(scaled as f32) * block_scale_f32);
                } else {
                    let bound = half_step(MxElement::E2M1, scaled as f32) * block_scale + slop;
                    prop_assert!(err <= bound, "{mode}: {v} -> {r}, error {err} > {bound}");
                }
            }
        }
    }

    #[test]
    fn affine_round_trip((x, shape) in matrix(3, 2, 128, 30), bits in prop::sample::select(vec![1u32, 2, 3, 4, 5, 6, 8]), group in prop::sample::select(vec![32usize, 64, 128])) {
        let q = quant::quantize(&x, &shape, &QuantMode::affine(bits, group)).unwrap();
        let y = quant::dequantize(&q);
        let n = ((1u32 << bits) - 1) as f64;
        let scales = q.scales().to_f32_vec();
        let biases = q.biases().unwrap().to_f32_vec();
        for (g, (xg, yg)) in x.chunks(group).zip(y.chunks(group)).enumerate() {
            let (s, b) = (scales[g] as f64, biases[g] as f64);
            let (lo, hi) = if s > 0.0 { (b, b + n * s) } else { (b + n * s, b) };
            let slop = 4e-7 * (b.abs() + n * s.abs());
            let lo_in = xg.iter().fold(f64::INFINITY, |m, &v| m.min(v as f64));
            let hi_in = xg.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            // The range covers the data up to one step at the far end from the edge.
            prop_assert!(lo <= lo_in + s.abs() + slop && hi >= hi_in - s.abs() - slop, "group range [{lo}, {hi}] vs data [{lo_in}, {hi_in}], scale {s}");
            for (&v, &r) in xg.iter().zip(yg) {
                let (v, r) = (v as f64, r as f64);
                if v >= lo && v <= hi {
                    prop_assert!((v - r).abs() <= s.abs() / 2.0 + slop, "affine {bits}/{group}: {v} -> {r}, scale {s}");
                } else {
                    let nearest = if v < lo { lo } else { hi };
                    prop_assert!((r - nearest).abs() <= slop && (v - r).abs() <= s.abs() + slop, "affine {bits}/{group}: {v} outside [{lo}, {hi}] -> {r}");
                }
            }
        }
    }

    #[test]
    fn packing_round_trips((x, shape) in matrix(2, 2, 128, 5)) {
        for mode in ["mxfp4", "mxfp6_e2m3", "mxfp8", "mxint8", "nvfp4", "affine:3:32", "affine:5:64", "affine:1:128"] {
            let mode: QuantMode = mode.parse().unwrap();
            let q = quant::quantize(&x, &shape, &mode).unwrap();
            let again = quant::QuantizedTensor::from_parts(mode, shape.clone(), q.data().to_vec(), q.scales().clone(), q.biases().cloned(), q.tensor_scale()).unwrap();
            prop_assert_eq!(quant::dequantize(&again), quant::dequantize(&q));
            prop_assert_eq!(q.codes().len(), x.len());
            prop_assert!(q.codes().iter().all(|&c| u32::from(c) < 1 << mode.element_bits()));
        }
    }
}

#[test]
fn all_zero_blocks() {
    let x = vec![0.0f32; 64];
    for mode in ["mxfp4", "mxfp8", "mxint8", "mxfp4+mlx", "nvfp4", "affine:4:64"] {
        let mode: QuantMode = mode.parse().unwrap();
        let q = quant::quantize(&x, &[64], &mode).unwrap();
        assert!(q.codes().iter().all(|&c| c == 0), "{mode}");
        assert!(quant::dequantize(&q).iter().all(|&v| v == 0.0), "{mode}");
    }
    let q = quant::quantize(&x, &[64], &QuantMode::mxfp4()).unwrap();
    assert_eq!(q.scales().bytes, [0, 0], "OCP zero blocks take the smallest scale, 2^-127");
    let q = quant::quantize(&x, &[64], &QuantMode::mxfp4().with_numerics(Numerics::Mlx)).unwrap();
    assert_eq!(q.scales().bytes, [127, 127], "MLX zero blocks take scale 1.0");
}

#[test]
fn nan_and_inf_poison_only_their_block() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        for mode in ["mxfp4", "mxfp6_e3m2", "mxfp8_e5m2", "mxint8", "nvfp4", "nvfp4+mlx", "affine:4:32", "affine:8:32"]
        {
            let mode: QuantMode = mode.parse().unwrap();
            let mut x: Vec<f32> = (0..64).map(|i| (i as f32 - 30.0) * 0.1).collect();
            x[40] = bad;
            let q = quant::quantize(&x, &[64], &mode).unwrap();
            let y = quant::dequantize(&q);
            let block = mode.block_size();
            let poisoned = 40 / block;
            for (b, yb) in y.chunks(block).enumerate() {
                if b == poisoned {
                    assert!(yb.iter().all(|v| v.is_nan()), "{mode}: block holding {bad} must dequantize to NaN");
                } else {
                    assert!(yb.iter().all(|v| v.is_finite()), "{mode}: block {b} without {bad} must stay finite");
                }
            }
            match mode {
                QuantMode::Mx { .. } => assert_eq!(q.scales().bytes[poisoned], 0xFF),
                QuantMode::Nvfp4 { .. } => assert_eq!(q.scales().bytes[poisoned], 0x7F),
                QuantMode::Affine { .. } => assert!(q.scales().get_f32(poisoned).is_nan()),
            }
        }
    }
}

#[test]
fn subnormal_blocks_use_the_smallest_scale() {
    // Values around 1e-40 (f32 subnormals): floor(log2) - emax is below -127, so the scale
    // clamps to 2^-127 and the elements are the values over 2^-127, rounded.
    let x: Vec<f32> = (1..=32).map(|i| f32::from_bits(i * 40_000)).collect();
    for element in ELEMENTS {
        let mode = QuantMode::mxfp8(element);
        let q = quant::quantize(&x, &[32], &mode).unwrap();
        assert_eq!(q.scales().bytes, [0], "{mode}");
        let scale = 2f64.powi(-127);
        for (&v, &r) in x.iter().zip(&quant::dequantize(&q)) {
            let err = (v as f64 - r as f64).abs();
            assert!(err <= half_step(element, (v as f64 / scale) as f32) * scale, "{mode}: {v:e} -> {r:e}");
        }
    }
    // E4M3 elements reach down to 2^-9 · 2^-127 = 2^-136: these survive, not flush to zero.
    let q = quant::quantize(&x, &[32], &QuantMode::mxfp8(MxElement::E4M3)).unwrap();
    assert!(quant::dequantize(&q).iter().all(|&v| v > 0.0));
}

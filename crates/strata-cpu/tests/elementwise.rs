//! Element-wise, reduction, scan, copy and cast kernels against f64 references, for every
//! operation, every standard type and every kind of layout (contiguous, transposed, reversed,
//! offset, broadcast), with outputs poisoned before each run.

#![allow(clippy::needless_range_loop)] // index loops mirror the math

mod common;

use common::*;
use strata_core::DType;
use strata_core::kernel::{BinaryOp, Layout, ReduceOp, ScanOp, UnaryOp};
use strata_cpu::{CpuBuffer, TensorMut, TensorRef};

const FLOATS: [DType; 4] = [DType::F64, DType::F32, DType::F16, DType::BF16];
const INTS: [DType; 8] = [DType::I8, DType::U8, DType::I16, DType::U16, DType::I32, DType::U32, DType::I64, DType::U64];

fn eps(t: DType) -> f64 {
    match t {
        DType::F64 => 2f64.powi(-52),
        DType::F32 => 2f64.powi(-23),
        DType::F16 => 2f64.powi(-10),
        DType::BF16 => 2f64.powi(-7),
        _ => 0.0,
    }
}

/// Smallest positive normal of a float type (below it, accuracy is absolute).
fn tiny(t: DType) -> f64 {
    match t {
        DType::F64 => f64::MIN_POSITIVE,
        DType::F32 | DType::BF16 => f32::MIN_POSITIVE as f64,
        DType::F16 => 2f64.powi(-14),
        _ => 0.0,
    }
}

/// Whether `got` (of type `t`) is within `ulps` units in the last place of `want`.
fn close(t: DType, got: f64, want: f64, ulps: f64) -> bool {
    if want.is_nan() {
        return got.is_nan();
    }
    if want.is_infinite() || got.is_infinite() {
        // Overflow to infinity near the top of the range is within rounding of a huge value.
        return got == want || (want.abs() > 0.5 * round(t, f64::MAX).abs() && got.signum() == want.signum());
    }
    (got - want).abs() <= ulps * eps(t) * want.abs().max(tiny(t))
}

fn erfinv(y: f64) -> f64 {
    if y.is_nan() || y == 0.0 {
        return y;
    }
    if y.abs() >= 1.0 {
        return if y.abs() == 1.0 { y * f64::INFINITY } else { f64::NAN };
    }
    // Bisection on erf: slow, simple, independent of the kernel's method.
    let (mut lo, mut hi) = (-7.0f64, 7.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if libm::erf(mid) < y { lo = mid } else { hi = mid }
    }
    0.5 * (lo + hi)
}

fn unary_ref(op: UnaryOp, x: f64) -> f64 {
    use UnaryOp as U;
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
        U::Exp => x.exp(),
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
        U::Tanh => x.tanh(),
        // Well-conditioned forms (std's formulas lose digits near the singular points).
        U::Asinh if x.is_infinite() => x,
        U::Asinh => x.signum() * (x.abs() + x * x / (1.0 + (1.0 + x * x).sqrt())).ln_1p(),
        U::Acosh => (x + ((x - 1.0) * (x + 1.0)).sqrt()).ln(),
        U::Atanh if x.abs() < 0.5 => 0.5 * (2.0 * x / (1.0 - x)).ln_1p(),
        U::Atanh => 0.5 * ((1.0 + x) / (1.0 - x)).ln(),
        U::Erf => libm::erf(x),
        U::ErfInv => erfinv(x),
        U::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        U::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
        U::Relu => {
            if x < 0.0 {
                0.0
            } else {
                x
            }
        } // NaN stays NaN, as in MLX and PyTorch
        U::Gelu => 0.5 * x * libm::erfc(-x / 2f64.sqrt()),
        U::GeluTanh => x / (1.0 + (-2.0 * (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).exp()),
        U::Silu => x / (1.0 + (-x).exp()),
        U::Floor => x.floor(),
        U::Ceil => x.ceil(),
        U::Round => x.round_ties_even(),
        U::IsNan => x.is_nan() as u8 as f64,
        U::IsInf => x.is_infinite() as u8 as f64,
        U::IsFinite => x.is_finite() as u8 as f64,
        U::LogicalNot | U::BitwiseNot => (x == 0.0) as u8 as f64,
    }
}

/// `1 + |x·f'(x)/f(x)|` by central differences (1 where that is not finite).
fn condition(op: UnaryOp, x: f64) -> f64 {
    let f = |v| unary_ref(op, v);
    let h = 1e-6 * x.abs().max(1e-3);
    let c = ((f(x + h) - f(x - h)) / (2.0 * h) * x / f(x)).abs();
    if c.is_finite() { 1.0 + c.min(1e6) } else { 1.0 }
}

/// Inputs in the op's domain: mostly [-3, 3] (or its natural interval), plus specials.
fn unary_inputs(op: UnaryOp, n: usize, seed: u64) -> Vec<f64> {
    use UnaryOp as U;
    let v = values(n, seed);
    let mut x: Vec<f64> = match op {
        U::Sqrt | U::Rsqrt | U::Log | U::Log2 | U::Log10 => v.iter().map(|x| (x.abs() * 8.0).exp2() * 0.01).collect(),
        U::Log1p => v.iter().map(|x| x.abs() * 5.0 - 0.9).collect(),
        U::Asin | U::Acos | U::Atanh | U::ErfInv => v.iter().map(|x| x * 0.999).collect(),
        U::Acosh => v.iter().map(|x| 1.0 + x.abs() * 10.0).collect(),
        U::Exp | U::Exp2 | U::Expm1 | U::Sinh | U::Cosh | U::Sigmoid | U::Softplus | U::Silu => {
            v.iter().map(|x| x * 20.0).collect()
        }
        U::Floor | U::Ceil | U::Round => v.iter().map(|x| (x * 40.0).round() / 4.0).collect(),
        _ => v.iter().map(|x| x * 3.0).collect(),
    };
    x.extend([f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.0, 1.0]);
    x
}

#[test]
fn unary_float_ops() {
    let shape = [3, 7, 13];
    let n: usize = shape.iter().product();
    for (s, &op) in UnaryOp::ALL.iter().enumerate() {
        for dtype in FLOATS {
            let Ok(out_dtype) = op.output_dtype(dtype) else { continue };
            for (k, &arr) in ARRANGEMENTS.iter().enumerate() {
                let mut x = unary_inputs(op, n, s as u64 * 100 + k as u64);
                x.truncate(n - 6);
                x.extend([f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.0, 1.0]);
                let (xb, xl) = tensor(dtype, &shape, &mut x, arr);
                let oarr = OUTPUT_ARRANGEMENTS[k % OUTPUT_ARRANGEMENTS.len()];
                let mut poison = vec![f64::NAN; n];
                let (mut ob, ol) = tensor(out_dtype, &shape, &mut poison, oarr);
                strata_cpu::unary(op, TensorRef::new(dtype, &xb, &xl), TensorMut::new(out_dtype, &mut ob, &ol))
                    .unwrap();
                let got = read(out_dtype, &ob, &ol);
                // f16/bf16 compute in f32 and round once: within one unit of their own ulp.
                let ulps = match (op, dtype) {
                    (UnaryOp::ErfInv, DType::F32) => 8.0,
                    (_, DType::F64 | DType::F32) => 4.0,
                    _ => 1.0,
                };
                for i in 0..n {
                    let want = round(out_dtype, unary_ref(op, x[i]));
                    // Allow for the function's condition number |x·f'(x)/f(x)|: an implementation
                    // that rounds an intermediate argument (x/√2 in gelu, erf in erfinv) moves
                    // its answer by that factor.
                    let cond = condition(op, x[i]);
                    assert!(
                        close(out_dtype, got[i], want, ulps * cond),
                        "{}({dtype}) {arr:?}: f({}) = {}, want {want}",
                        op.name(),
                        x[i],
                        got[i]
                    );
                }
            }
        }
    }
}

#[test]
fn unary_int_and_bool_ops() {
    let shape = [5, 9];
    for (s, dtype) in INTS.into_iter().enumerate() {
        let bits = dtype.bits();
        let signed = matches!(dtype, DType::I8 | DType::I16 | DType::I32 | DType::I64);
        // The extremes of the type (for 64-bit types, the largest f64 holds exactly).
        let (lo, hi) = match (signed, bits) {
            (true, 64) => (-(2f64.powi(62)), 2f64.powi(62)),
            (false, 64) => (0.0, 2f64.powi(63)),
            (true, _) => (-(2f64.powi(bits as i32 - 1)), 2f64.powi(bits as i32 - 1) - 1.0),
            (false, _) => (0.0, 2f64.powi(bits as i32) - 1.0),
        };
        for &op in UnaryOp::ALL {
            let Ok(out_dtype) = op.output_dtype(dtype) else { continue };
            let mut x: Vec<f64> = values(45, s as u64)
                .iter()
                .map(|v| (v * 100.0).round().max(if signed { -100.0 } else { 0.0 }))
                .collect();
            x[0] = lo;
            x[1] = hi;
            x[2] = 0.0;
            for (k, &arr) in ARRANGEMENTS.iter().enumerate().take(4) {
                let mut xv = x.clone();
                let (xb, xl) = tensor(dtype, &shape, &mut xv, arr);
                let mut poison = vec![77.0; 45];
                let (mut ob, ol) = tensor(out_dtype, &shape, &mut poison, OUTPUT_ARRANGEMENTS[k]);
                strata_cpu::unary(op, TensorRef::new(dtype, &xb, &xl), TensorMut::new(out_dtype, &mut ob, &ol))
                    .unwrap();
                let got = read(out_dtype, &ob, &ol);
                for i in 0..45 {
                    let v = xv[i] as i128;
                    let m = 1i128 << bits;
                    let wrap = |r: i128| -> f64 {
                        let r = r.rem_euclid(m);
                        (if signed && r >= m / 2 { r - m } else { r }) as f64
                    };
                    let want = match op {
                        UnaryOp::Neg => wrap(-v),
                        UnaryOp::Abs => wrap(v.abs()),
                        UnaryOp::Sign => v.signum() as f64,
                        UnaryOp::Square => wrap(v * v),
                        UnaryOp::Relu => v.max(0) as f64,
                        UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Round => v as f64,
                        UnaryOp::BitwiseNot => wrap(!v),
                        UnaryOp::IsNan | UnaryOp::IsInf => 0.0,
                        UnaryOp::IsFinite => 1.0,
                        _ => unreachable!(),
                    };
                    assert_eq!(got[i], want, "{}({dtype}) of {}", op.name(), xv[i]);
                }
            }
        }
    }
    // bool: logical_not and invert.
    let mut x = vec![1.0, 0.0, 1.0, 1.0];
    let (xb, xl) = tensor(DType::Bool, &[4], &mut x, Arrangement::Reversed);
    for op in [UnaryOp::LogicalNot, UnaryOp::BitwiseNot] {
        let mut ob = CpuBuffer::zeros(4).unwrap();
        strata_cpu::unary(
            op,
            TensorRef::new(DType::Bool, &xb, &xl),
            TensorMut::new(DType::Bool, &mut ob, &Layout::contiguous(&[4])),
        )
        .unwrap();
        assert_eq!(ob.as_bytes(), [0, 1, 0, 0]);
    }
}

fn binary_float_ref(op: BinaryOp, a: f64, b: f64) -> f64 {
    use BinaryOp as B;
    match op {
        B::Add => a + b,
        B::Sub => a - b,
        B::Mul => a * b,
        B::Div => a / b,
        B::FloorDiv => {
            // NumPy's npy_divmod (so inf // 2 is NaN, as NumPy says).
            if b == 0.0 {
                return a / b;
            }
            let m = a % b;
            let mut div = (a - m) / b;
            if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
                div -= 1.0;
            }
            if div == 0.0 {
                return 0f64.copysign(a / b);
            }
            let f = div.floor();
            if div - f > 0.5 { f + 1.0 } else { f }
        }
        B::Remainder => {
            let r = a % b;
            if r != 0.0 && ((r < 0.0) != (b < 0.0)) { r + b } else { r }
        }
        B::Pow => a.powf(b),
        B::Maximum => {
            if a.is_nan() || b.is_nan() {
                f64::NAN
            } else {
                a.max(b)
            }
        }
        B::Minimum => {
            if a.is_nan() || b.is_nan() {
                f64::NAN
            } else {
                a.min(b)
            }
        }
        B::Atan2 => a.atan2(b),
        B::LogAddExp => {
            let m = a.max(b);
            if m == f64::NEG_INFINITY { m } else { m + (-(a - b).abs()).exp().ln_1p() }
        }
        B::Equal => (a == b) as u8 as f64,
        B::NotEqual => (a != b) as u8 as f64,
        B::Less => (a < b) as u8 as f64,
        B::LessEqual => (a <= b) as u8 as f64,
        B::Greater => (a > b) as u8 as f64,
        B::GreaterEqual => (a >= b) as u8 as f64,
        _ => unreachable!(),
    }
}

#[test]
fn binary_float_ops() {
    let shape = [4, 6, 11];
    let n: usize = shape.iter().product();
    for (s, &op) in BinaryOp::ALL.iter().enumerate() {
        for dtype in FLOATS {
            let Ok(out_dtype) = op.output_dtype(dtype) else { continue };
            for (k, &(aa, ab)) in [(0, 0), (1, 2), (4, 0), (0, 5), (5, 3), (2, 4)].iter().enumerate() {
                let mut a: Vec<f64> = values(n, s as u64 * 7 + 1).iter().map(|v| v * 4.0).collect();
                let mut b: Vec<f64> = values(n, s as u64 * 7 + 2).iter().map(|v| v * 4.0).collect();
                if op == BinaryOp::Pow {
                    // Positive bases with any exponent, negative bases with integer ones.
                    for i in 0..n {
                        if i % 2 == 0 { a[i] = a[i].abs() + 0.1 } else { b[i] = b[i].round() }
                    }
                }
                // Specials and exact ties at the front (not clobbered by broadcasting's first row).
                let specials = [
                    (f64::NAN, 1.0),
                    (1.0, f64::NAN),
                    (f64::INFINITY, 2.0),
                    (-3.0, f64::NEG_INFINITY),
                    (0.0, -0.0),
                    (2.5, 2.5),
                    (-7.0, 2.0),
                    (7.0, -2.0),
                ];
                for (i, &(x, y)) in specials.iter().enumerate() {
                    a[i] = x;
                    b[i] = y;
                }
                let (xa, la) = tensor(dtype, &shape, &mut a, ARRANGEMENTS[aa]);
                let (xb, lb) = tensor(dtype, &shape, &mut b, ARRANGEMENTS[ab]);
                let mut poison = vec![f64::NAN; n];
                let (mut ob, ol) = tensor(out_dtype, &shape, &mut poison, OUTPUT_ARRANGEMENTS[k % 4]);
                strata_cpu::binary(
                    op,
                    TensorRef::new(dtype, &xa, &la),
                    TensorRef::new(dtype, &xb, &lb),
                    TensorMut::new(out_dtype, &mut ob, &ol),
                )
                .unwrap();
                let got = read(out_dtype, &ob, &ol);
                let ulps = if matches!(dtype, DType::F64 | DType::F32) { 4.0 } else { 1.0 };
                for i in 0..n {
                    let want = round(out_dtype, binary_float_ref(op, a[i], b[i]));
                    // logaddexp adds a correction to max(a, b): its error is relative to that.
                    let want_scale = if op == BinaryOp::LogAddExp && want.is_finite() {
                        want.abs().max(a[i].abs().max(b[i].abs())) / want.abs().max(tiny(dtype))
                    } else {
                        1.0
                    };
                    assert!(
                        close(out_dtype, got[i], want, ulps * want_scale),
                        "{}({dtype}) {:?}/{:?}: f({}, {}) = {}, want {want}",
                        op.name(),
                        ARRANGEMENTS[aa],
                        ARRANGEMENTS[ab],
                        a[i],
                        b[i],
                        got[i]
                    );
                }
            }
        }
    }
}

#[test]
fn binary_int_ops() {
    let shape = [7, 9];
    for (s, dtype) in INTS.into_iter().enumerate() {
        let bits = dtype.bits();
        let signed = matches!(dtype, DType::I8 | DType::I16 | DType::I32 | DType::I64);
        let m = 1i128 << bits;
        let wrap = |r: i128| -> f64 {
            let r = r.rem_euclid(m);
            (if signed && r >= m / 2 { r - m } else { r }) as f64
        };
        for &op in BinaryOp::ALL {
            let Ok(out_dtype) = op.output_dtype(dtype) else { continue };
            let sign = if signed { 1.0 } else { 0.0 };
            let mut a: Vec<f64> =
                values(63, s as u64 + 1).iter().map(|v| (v * 50.0).round().max(-50.0 * sign)).collect();
            let mut b: Vec<f64> = values(63, s as u64 + 2).iter().map(|v| (v * 9.0).round().max(-9.0 * sign)).collect();
            if matches!(op, BinaryOp::LeftShift | BinaryOp::RightShift) {
                b.iter_mut().enumerate().for_each(|(i, v)| *v = (i % (bits as usize + 3)) as f64);
            }
            if op == BinaryOp::Pow {
                b.iter_mut().for_each(|v| *v = v.abs().min(5.0));
            }
            a[0] = 17.0;
            b[0] = 0.0; // division by zero gives 0
            let (xa, la) = tensor(dtype, &shape, &mut a, Arrangement::Transposed);
            let (xb, lb) = tensor(dtype, &shape, &mut b, Arrangement::Reversed);
            let mut poison = vec![77.0; 63];
            let (mut ob, ol) = tensor(out_dtype, &shape, &mut poison, Arrangement::Offset);
            strata_cpu::binary(
                op,
                TensorRef::new(dtype, &xa, &la),
                TensorRef::new(dtype, &xb, &lb),
                TensorMut::new(out_dtype, &mut ob, &ol),
            )
            .unwrap();
            let got = read(out_dtype, &ob, &ol);
            for i in 0..63 {
                let (x, y) = (a[i] as i128, b[i] as i128);
                let floor_div = |x: i128, y: i128| {
                    if y == 0 { 0 } else { x.div_euclid(y) - if y < 0 && x.rem_euclid(y) != 0 { 1 } else { 0 } }
                };
                let want = match op {
                    BinaryOp::Add => wrap(x + y),
                    BinaryOp::Sub => wrap(x - y),
                    BinaryOp::Mul => wrap(x * y),
                    BinaryOp::FloorDiv => wrap(floor_div(x, y)),
                    BinaryOp::Remainder => wrap(if y == 0 { 0 } else { x - floor_div(x, y) * y }),
                    BinaryOp::Pow => wrap((0..y).fold(1i128, |acc, _| (acc * x).rem_euclid(m))),
                    BinaryOp::Maximum => x.max(y) as f64,
                    BinaryOp::Minimum => x.min(y) as f64,
                    BinaryOp::BitwiseAnd => wrap(x & y),
                    BinaryOp::BitwiseOr => wrap(x | y),
                    BinaryOp::BitwiseXor => wrap(x ^ y),
                    BinaryOp::LeftShift => {
                        if y >= bits as i128 {
                            0.0
                        } else {
                            wrap(x << y)
                        }
                    }
                    BinaryOp::RightShift => {
                        if y >= bits as i128 {
                            if x < 0 { -1.0 } else { 0.0 }
                        } else {
                            wrap(x >> y)
                        }
                    }
                    BinaryOp::Equal => (x == y) as u8 as f64,
                    BinaryOp::NotEqual => (x != y) as u8 as f64,
                    BinaryOp::Less => (x < y) as u8 as f64,
                    BinaryOp::LessEqual => (x <= y) as u8 as f64,
                    BinaryOp::Greater => (x > y) as u8 as f64,
                    BinaryOp::GreaterEqual => (x >= y) as u8 as f64,
                    _ => unreachable!(),
                };
                assert_eq!(got[i], want, "{}({dtype}): f({x}, {y})", op.name());
            }
        }
    }
}

#[test]
fn select_every_width() {
    let shape = [6, 5];
    for dtype in [DType::F64, DType::F32, DType::F16, DType::I8, DType::U64, DType::Bool] {
        let mut c: Vec<f64> = values(30, 1).iter().map(|v| (*v > 0.0) as u8 as f64).collect();
        let mut a = values(30, 2).iter().map(|v| (v * 9.0).round()).collect::<Vec<_>>();
        let mut b = values(30, 3).iter().map(|v| (v * 9.0).round()).collect::<Vec<_>>();
        let (cb, cl) = tensor(DType::Bool, &shape, &mut c, Arrangement::Transposed);
        let (ab, al) = tensor(dtype, &shape, &mut a, Arrangement::Broadcast);
        let (bb, bl) = tensor(dtype, &shape, &mut b, Arrangement::Reversed);
        let mut poison = vec![77.0; 30];
        let (mut ob, ol) = tensor(dtype, &shape, &mut poison, Arrangement::Contiguous);
        strata_cpu::select(
            TensorRef::new(DType::Bool, &cb, &cl),
            TensorRef::new(dtype, &ab, &al),
            TensorRef::new(dtype, &bb, &bl),
            TensorMut::new(dtype, &mut ob, &ol),
        )
        .unwrap();
        let got = read(dtype, &ob, &ol);
        for i in 0..30 {
            assert_eq!(got[i], if c[i] != 0.0 { a[i] } else { b[i] }, "{dtype} at {i}");
        }
    }
}

fn reduce_ref(op: ReduceOp, x: &[f64]) -> f64 {
    match op {
        ReduceOp::Sum => x.iter().sum(),
        ReduceOp::Prod => x.iter().product(),
        ReduceOp::Max => {
            x.iter().fold(f64::NEG_INFINITY, |a, &b| if a.is_nan() || b.is_nan() { f64::NAN } else { a.max(b) })
        }
        ReduceOp::Min => {
            x.iter().fold(f64::INFINITY, |a, &b| if a.is_nan() || b.is_nan() { f64::NAN } else { a.min(b) })
        }
        ReduceOp::ArgMax => {
            x.iter()
                .enumerate()
                .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &v)| {
                    if v > bv && !bv.is_nan() || (v.is_nan() && !bv.is_nan()) { (i, v) } else { (bi, bv) }
                })
                .0 as f64
        }
        ReduceOp::ArgMin => {
            x.iter()
                .enumerate()
                .fold((0, f64::INFINITY), |(bi, bv), (i, &v)| {
                    if v < bv && !bv.is_nan() || (v.is_nan() && !bv.is_nan()) { (i, v) } else { (bi, bv) }
                })
                .0 as f64
        }
        ReduceOp::All => x.iter().all(|&v| v != 0.0) as u8 as f64,
        ReduceOp::Any => x.iter().any(|&v| v != 0.0) as u8 as f64,
    }
}

#[test]
fn reductions_over_any_axes() {
    let shape = [3, 4, 5, 6];
    let n: usize = shape.iter().product();
    let axis_sets: [&[usize]; 7] = [&[3], &[0], &[1, 2], &[0, 3], &[0, 1, 2, 3], &[2], &[]];
    for (s, &op) in ReduceOp::ALL.iter().enumerate() {
        for dtype in [DType::F64, DType::F32, DType::F16, DType::BF16, DType::I32, DType::U8, DType::I64, DType::Bool] {
            if op
                .validate_types(
                    dtype,
                    if op.is_index() {
                        DType::I64
                    } else if matches!(op, ReduceOp::All | ReduceOp::Any) {
                        DType::Bool
                    } else {
                        dtype
                    },
                )
                .is_err()
            {
                continue;
            }
            for (k, axes) in axis_sets.iter().enumerate() {
                if op.is_index() && axes.len() != 1 {
                    continue;
                }
                let mut x: Vec<f64> = values(n, s as u64 * 31 + k as u64)
                    .iter()
                    .map(|v| if dtype.is_float() { v * 2.0 } else { (v * 20.0).round() })
                    .collect();
                if matches!(op, ReduceOp::Prod) {
                    x.iter_mut().for_each(|v| *v = if dtype.is_float() { 1.0 + *v / 8.0 } else { (*v / 10.0).round() });
                }
                if dtype == DType::Bool {
                    x.iter_mut().for_each(|v| *v = (*v > -15.0) as u8 as f64);
                }
                if dtype.is_float() && k == 3 {
                    x[17] = f64::NAN;
                }
                let arr =
                    [Arrangement::Contiguous, Arrangement::Transposed, Arrangement::Reversed, Arrangement::Offset]
                        [k % 4];
                let (xb, xl) = tensor(dtype, &shape, &mut x, arr);
                let keep = k % 2 == 0;
                let oshape: Vec<usize> = shape
                    .iter()
                    .enumerate()
                    .filter_map(|(i, &d)| if axes.contains(&i) { keep.then_some(1) } else { Some(d) })
                    .collect();
                let out_dtype = if op.is_index() {
                    [DType::I64, DType::U32, DType::I32][k % 3]
                } else if matches!(op, ReduceOp::All | ReduceOp::Any) {
                    DType::Bool
                } else {
                    dtype
                };
                let on: usize = oshape.iter().product();
                let mut poison = vec![if out_dtype.is_float() { f64::NAN } else { 77.0 }; on];
                let (mut ob, ol) = tensor(out_dtype, &oshape, &mut poison, Arrangement::Transposed);
                strata_cpu::reduce(op, axes, TensorRef::new(dtype, &xb, &xl), TensorMut::new(out_dtype, &mut ob, &ol))
                    .unwrap();
                let got = read(out_dtype, &ob, &ol);
                // The reference: for each output element, the block of inputs in row-major order.
                let kept: Vec<usize> = (0..4).filter(|a| !axes.contains(a)).collect();
                let kept_shape: Vec<usize> = kept.iter().map(|&a| shape[a]).collect();
                let red_shape: Vec<usize> = axes.iter().map(|&a| shape[a]).collect();
                let rn: usize = red_shape.iter().product();
                for o in 0..on {
                    let ko = unravel(&kept_shape, o);
                    let block: Vec<f64> = (0..rn)
                        .map(|r| {
                            let ro = unravel(&red_shape, r);
                            let mut idx = [0; 4];
                            for (i, &a) in kept.iter().enumerate() {
                                idx[a] = ko[i];
                            }
                            for (i, &a) in axes.iter().enumerate() {
                                idx[a] = ro[i];
                            }
                            let flat = idx
                                .iter()
                                .zip(Layout::contiguous(&shape).strides())
                                .map(|(&i, &s)| i as isize * s)
                                .sum::<isize>();
                            x[flat as usize]
                        })
                        .collect();
                    let mut want =
                        if !dtype.is_float() && dtype != DType::Bool && matches!(op, ReduceOp::Sum | ReduceOp::Prod) {
                            int_fold(dtype, op == ReduceOp::Prod, &block)
                        } else {
                            reduce_ref(op, &block)
                        };
                    if !op.is_index() && !matches!(op, ReduceOp::All | ReduceOp::Any) {
                        want = round(out_dtype, if dtype.is_float() { want } else { wrap_to(dtype, want) });
                    }
                    let mag: f64 = block.iter().map(|v| v.abs()).sum();
                    let ok = if dtype.is_float() && matches!(op, ReduceOp::Sum | ReduceOp::Prod) {
                        want.is_nan() && got[o].is_nan()
                            || (got[o] - want).abs()
                                <= 2.0 * eps(dtype) * (want.abs() + if op == ReduceOp::Sum { mag * 1e-3 } else { 0.0 })
                                    + 8.0 * eps(DType::F32) * mag
                    } else {
                        got[o] == want || (got[o].is_nan() && want.is_nan())
                    };
                    assert!(
                        ok,
                        "{}({dtype}) axes {axes:?} keep={keep} {arr:?}: out[{o}] = {}, want {want}",
                        op.name(),
                        got[o]
                    );
                }
            }
        }
    }
}

/// A sum or product of integers, wrapped to `dtype` at every step.
fn int_fold(dtype: DType, prod: bool, x: &[f64]) -> f64 {
    let m = 1i128 << dtype.bits();
    let r = x.iter().fold(if prod { 1i128 } else { 0 }, |acc, &v| {
        if prod { (acc * v as i128).rem_euclid(m) } else { (acc + v as i128).rem_euclid(m) }
    });
    let signed = matches!(dtype, DType::I8 | DType::I16 | DType::I32 | DType::I64);
    (if signed && r >= m / 2 { r - m } else { r }) as f64
}

/// Wraps an exact integer result to `dtype`'s range.
fn wrap_to(dtype: DType, v: f64) -> f64 {
    if v.abs() > 1e15 {
        return round(dtype, v);
    }
    let bits = dtype.bits();
    let m = 1i128 << bits;
    let signed = matches!(dtype, DType::I8 | DType::I16 | DType::I32 | DType::I64);
    let r = (v as i128).rem_euclid(m);
    (if signed && r >= m / 2 { r - m } else { r }) as f64
}

#[test]
fn scans_every_way() {
    let shape = [4, 9, 5];
    let n: usize = shape.iter().product();
    for &op in ScanOp::ALL {
        for dtype in [DType::F64, DType::F32, DType::BF16, DType::I32, DType::U8] {
            if op.output_dtype(dtype).is_err() {
                continue;
            }
            for axis in 0..3 {
                for (reverse, inclusive) in [(false, true), (true, true), (false, false), (true, false)] {
                    let mut x: Vec<f64> = values(n, axis as u64)
                        .iter()
                        .map(|v| if dtype.is_float() { v * 2.0 } else { (v * 5.0).round() })
                        .collect();
                    if op == ScanOp::Prod && dtype.is_float() {
                        x.iter_mut().for_each(|v| *v = 1.0 + *v / 8.0);
                    }
                    let (xb, xl) = tensor(dtype, &shape, &mut x, Arrangement::Transposed);
                    let mut poison = vec![if dtype.is_float() { f64::NAN } else { 77.0 }; n];
                    let (mut ob, ol) = tensor(dtype, &shape, &mut poison, Arrangement::Reversed);
                    strata_cpu::scan(
                        op,
                        axis,
                        reverse,
                        inclusive,
                        TensorRef::new(dtype, &xb, &xl),
                        TensorMut::new(dtype, &mut ob, &ol),
                    )
                    .unwrap();
                    let got = read(dtype, &ob, &ol);
                    let cs = Layout::contiguous(&shape);
                    let st = cs.strides()[axis] as usize;
                    for i in 0..n {
                        let idx = unravel(&shape, i);
                        let pos = idx[axis];
                        let base = i - pos * st;
                        let range: Vec<usize> = if reverse {
                            ((if inclusive { pos } else { pos + 1 })..shape[axis]).collect()
                        } else {
                            (0..if inclusive { pos + 1 } else { pos }).collect()
                        };
                        let terms: Vec<f64> = range.iter().map(|&j| x[base + j * st]).collect();
                        let want = match op {
                            ScanOp::Sum | ScanOp::Prod if !dtype.is_float() => {
                                int_fold(dtype, op == ScanOp::Prod, &terms)
                            }
                            ScanOp::Sum => terms.iter().sum(),
                            ScanOp::Prod => terms.iter().product(),
                            ScanOp::Max => terms.iter().cloned().fold(
                                if dtype.is_float() {
                                    f64::NEG_INFINITY
                                } else if dtype == DType::U8 {
                                    0.0
                                } else {
                                    -(2f64.powi(31))
                                },
                                f64::max,
                            ),
                            ScanOp::Min => terms.iter().cloned().fold(
                                if dtype.is_float() {
                                    f64::INFINITY
                                } else if dtype == DType::U8 {
                                    255.0
                                } else {
                                    2f64.powi(31) - 1.0
                                },
                                f64::min,
                            ),
                            ScanOp::LogAddExp => terms.iter().fold(f64::NEG_INFINITY, |a, &b| {
                                let m = a.max(b);
                                if m == f64::NEG_INFINITY { m } else { m + (-(a - b).abs()).exp().ln_1p() }
                            }),
                        };
                        let want = round(dtype, if dtype.is_float() { want } else { wrap_to(dtype, want) });
                        let mag: f64 = terms.iter().map(|v| v.abs()).sum::<f64>() + want.abs();
                        assert!(
                            got[i] == want
                                || (got[i] - want).abs()
                                    <= (terms.len() as f64 + 2.0) * eps(dtype).max(eps(DType::F32)) * mag,
                            "{}({dtype}) axis {axis} rev={reverse} incl={inclusive}: [{i}] = {}, want {want}",
                            op.name(),
                            got[i]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn casts_between_standard_types() {
    let standard = [
        DType::Bool,
        DType::U8,
        DType::I8,
        DType::U16,
        DType::I16,
        DType::U32,
        DType::I32,
        DType::U64,
        DType::I64,
        DType::F16,
        DType::BF16,
        DType::F32,
        DType::F64,
    ];
    let specials = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        2.5,
        -2.5,
        3.7,
        -3.7,
        200.7,
        -129.0,
        65504.0,
        70000.5,
        1e10,
        -1e10,
        3e38,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1e-8,
    ];
    for from in standard {
        for to in standard {
            let mut x: Vec<f64> = specials.to_vec();
            let n = x.len();
            if !from.is_float() {
                // Integer sources hold integers that f64 represents exactly (unsigned ones
                // non-negative, so that nothing wraps to near 2^64).
                let lo = if matches!(from, DType::I8 | DType::I16 | DType::I32 | DType::I64) { -1e9 } else { 0.0 };
                x.iter_mut().for_each(|v| *v = if v.is_finite() { v.trunc().clamp(lo, 1e9) } else { 5.0 });
            }
            let (xb, xl) = tensor(from, &[n], &mut x, Arrangement::Reversed);
            let mut poison = vec![if to.is_float() { f64::NAN } else { 77.0 }; n];
            let (mut ob, ol) = tensor(to, &[n], &mut poison, Arrangement::Offset);
            strata_cpu::cast(TensorRef::new(from, &xb, &xl), TensorMut::new(to, &mut ob, &ol)).unwrap();
            let got = read(to, &ob, &ol);
            for i in 0..n {
                let v = x[i];
                let want = match to {
                    DType::Bool => (v != 0.0) as u8 as f64,
                    t if t.is_float() => round(t, v),
                    // Float -> int truncates and saturates (NaN -> 0); int -> int wraps.
                    t if from.is_float() => {
                        let bits = t.bits() as i32;
                        let signed = matches!(t, DType::I8 | DType::I16 | DType::I32 | DType::I64);
                        let (lo, hi) = if signed {
                            (-(2f64.powi(bits - 1)), 2f64.powi(bits - 1) - 1.0)
                        } else {
                            (0.0, 2f64.powi(bits) - 1.0)
                        };
                        if v.is_nan() { 0.0 } else { v.trunc().clamp(lo, hi) }
                    }
                    t => wrap_to(t, v),
                };
                let ok = got[i] == want
                    || (got[i].is_nan() && want.is_nan())
                    || (to == DType::U64 && (got[i] - want).abs() <= 2048.0);
                assert!(ok, "cast {from} -> {to}: {v} became {}, want {want}", got[i]);
            }
        }
    }
}

#[test]
fn casts_into_and_out_of_narrow_formats() {
    // f32 -> narrow agrees with strata-core's ml_dtypes-exact codec; f64 -> narrow is the
    // correctly rounded value (checked by brute force over the format's values).
    for narrow in
        [DType::F8E4M3, DType::F8E5M2, DType::F6E3M2, DType::F6E2M3, DType::F4E2M1, DType::E8M0, DType::I4, DType::U2]
    {
        let raw = values(997, narrow.bits() as u64);
        let xs: Vec<f64> = raw.iter().enumerate().map(|(i, v)| v * [1.0, 10.0, 300.0, 1e-3, 7.0][i % 5]).collect();
        for from in [DType::F32, DType::F64] {
            let mut x = xs.clone();
            let (xb, xl) = tensor(from, &[997], &mut x, Arrangement::Transposed);
            let mut ob = CpuBuffer::zeros(narrow.byte_len(997)).unwrap();
            strata_cpu::cast(
                TensorRef::new(from, &xb, &xl),
                TensorMut::new(narrow, &mut ob, &Layout::contiguous(&[997])),
            )
            .unwrap();
            let codes = strata_core::formats::pack::unpack(ob.as_bytes(), narrow.bits(), 997);
            for (i, &c) in codes.iter().enumerate() {
                let want = if from == DType::F32 || narrow.int_format().is_some() {
                    narrow.encode_f32(x[i] as f32) as u8
                } else {
                    nearest_code(narrow, x[i])
                };
                assert_eq!(c, want, "{from} {} -> {narrow}", x[i]);
            }
            // And back: narrow -> f64 decodes exactly.
            let mut back = CpuBuffer::zeros(997 * 8).unwrap();
            strata_cpu::cast(
                TensorRef::new(narrow, &ob, &Layout::contiguous(&[997])),
                TensorMut::new(DType::F64, &mut back, &Layout::contiguous(&[997])),
            )
            .unwrap();
            for (i, &c) in codes.iter().enumerate() {
                let v = back.typed::<f64>()[i];
                let d = narrow.decode_f32(u64::from(c)) as f64;
                assert!(v == d || (v.is_nan() && d.is_nan()), "{narrow} code {c:#x} decoded to {v}, want {d}");
            }
        }
    }
}

/// The code of the value nearest `v` (ties to the even code), saturating as the codec does.
fn nearest_code(t: DType, v: f64) -> u8 {
    let f = t.float_format().unwrap();
    let mut best: Option<(u8, f64)> = None;
    for (code, value) in f.finite_values() {
        let d = (value as f64 - v).abs();
        match best {
            Some((bc, bd)) if d > bd || (d == bd && code % 2 == 1 && bc % 2 == 0) => {}
            _ => best = Some((code as u8, d)),
        }
    }
    let (code, _) = best.unwrap();
    // Beyond the range the codec's overflow rule applies, and the sign of zero follows v.
    let code32 = t.encode_f32(v as f32) as u8;
    if (v.abs() as f32) > f.max_value() || f.decode(u32::from(code)) == 0.0 || f.decode(u32::from(code32)).is_nan() {
        code32
    } else {
        code
    }
}

#[test]
fn copies_and_errors() {
    // A transposed view copied into a reversed one holds the same logical values.
    let mut x = values(24, 1);
    let (xb, xl) = tensor(DType::F32, &[2, 3, 4], &mut x, Arrangement::Transposed);
    let mut poison = vec![f64::NAN; 24];
    let (mut ob, ol) = tensor(DType::F32, &[2, 3, 4], &mut poison, Arrangement::Reversed);
    strata_cpu::copy(TensorRef::new(DType::F32, &xb, &xl), TensorMut::new(DType::F32, &mut ob, &ol)).unwrap();
    assert_eq!(read(DType::F32, &ob, &ol), x);

    let b = CpuBuffer::zeros(64).unwrap();
    let mut o = CpuBuffer::zeros(64).unwrap();
    let l4 = Layout::contiguous(&[4]);
    let l5 = Layout::contiguous(&[5]);
    let e =
        strata_cpu::unary(UnaryOp::Exp, TensorRef::new(DType::I32, &b, &l4), TensorMut::new(DType::I32, &mut o, &l4))
            .unwrap_err()
            .to_string();
    assert!(e.contains("exp") && e.contains("int32"), "{e}");
    let e = strata_cpu::binary(
        BinaryOp::Add,
        TensorRef::new(DType::F32, &b, &l4),
        TensorRef::new(DType::F32, &b, &l5),
        TensorMut::new(DType::F32, &mut o, &l4),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("[5]") && e.contains("[4]"), "{e}");
    let e = strata_cpu::binary(
        BinaryOp::Add,
        TensorRef::new(DType::F32, &b, &l4),
        TensorRef::new(DType::F16, &b, &l4),
        TensorMut::new(DType::F32, &mut o, &l4),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("promote"), "{e}");
    let e = strata_cpu::binary(
        BinaryOp::Less,
        TensorRef::new(DType::F32, &b, &l4),
        TensorRef::new(DType::F32, &b, &l4),
        TensorMut::new(DType::F32, &mut o, &l4),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("bool"), "{e}");
    let shared = Layout::new(&[4], &[0], 0).unwrap();
    assert!(
        strata_cpu::unary(
            UnaryOp::Neg,
            TensorRef::new(DType::F32, &b, &l4),
            TensorMut::new(DType::F32, &mut o, &shared)
        )
        .is_err()
    );
    let big = Layout::contiguous(&[100]);
    let e =
        strata_cpu::unary(UnaryOp::Neg, TensorRef::new(DType::F32, &b, &big), TensorMut::new(DType::F32, &mut o, &big))
            .unwrap_err()
            .to_string();
    assert!(e.contains("outside its buffer of 16"), "{e}");
    let e = strata_cpu::reduce(
        ReduceOp::Sum,
        &[0, 0],
        TensorRef::new(DType::F32, &b, &l4),
        TensorMut::new(DType::F32, &mut o, &Layout::contiguous(&[])),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("distinct"), "{e}");
    let e = strata_cpu::reduce(
        ReduceOp::Max,
        &[0],
        TensorRef::new(DType::F32, &b, &Layout::contiguous(&[0, 2])),
        TensorMut::new(DType::F32, &mut o, &Layout::contiguous(&[2])),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("empty"), "{e}");
    let strided = Layout::new(&[4], &[2], 0).unwrap();
    let e = strata_cpu::cast(TensorRef::new(DType::F32, &b, &l4), TensorMut::new(DType::F4E2M1, &mut o, &strided))
        .unwrap_err()
        .to_string();
    assert!(e.contains("contiguous"), "{e}");
}

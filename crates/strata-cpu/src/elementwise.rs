//! Element-wise kernels: unary and binary operations and `select`, over any strides.
//!
//! Every operation is instantiated with its op as a constant (one closure per match arm), so
//! the per-element `match` folds away and contiguous loops vectorize; those loops are also
//! compiled for AVX-512 and AVX2 and picked at run time. Operands share the output's shape
//! (broadcasting is a zero stride); a broadcast scalar is read once.

use bytemuck::Pod;
use half::{bf16, f16};
use rayon::prelude::*;
use strata_core::kernel::{BinaryOp, Layout, UnaryOp, validate_binary, validate_select, validate_unary};
use strata_core::{DType, Result};

use crate::elem::{Float, FloatStore, Int};
use crate::{TensorMut, TensorRef};

// The op lists, each handed to a callback macro: one match arm per op, each with the op as a
// constant, so its closure's `match` folds away.
macro_rules! unary_float_ops {
    ($m:ident($($args:tt)*)) => {
        $m!($($args)*; Neg Abs Sign Square Sqrt Rsqrt Reciprocal Exp Exp2 Expm1 Log Log2 Log10 Log1p Sin Cos Tan Asin Acos Atan
            Sinh Cosh Tanh Asinh Acosh Atanh Erf ErfInv Sigmoid Softplus Relu Gelu GeluTanh Silu Floor Ceil Round)
    };
}
pub(crate) use unary_float_ops;
macro_rules! unary_int_ops {
    ($m:ident($($args:tt)*)) => {
        $m!($($args)*; Neg Abs Sign Square Relu Floor Ceil Round BitwiseNot)
    };
}
macro_rules! binary_float_ops {
    ($m:ident($($args:tt)*)) => {
        $m!($($args)*; Add Sub Mul Div FloorDiv Remainder Pow Maximum Minimum Atan2 LogAddExp)
    };
}
pub(crate) use binary_float_ops;
macro_rules! binary_int_ops {
    ($m:ident($($args:tt)*)) => {
        $m!($($args)*; Add Sub Mul FloorDiv Remainder Pow Maximum Minimum BitwiseAnd BitwiseOr BitwiseXor LeftShift RightShift)
    };
}
macro_rules! unary_float_arms {
    ($op:ident, $x:ident, $out:ident, $t:ty; $($v:ident)*) => {
        match $op {
            $(UnaryOp::$v => map1::<$t, $t>($x, $out, |a: $t| <$t>::store(a.load().unary(UnaryOp::$v))),)*
            UnaryOp::IsNan => map1::<$t, u8>($x, $out, |a: $t| a.load().is_nan() as u8),
            UnaryOp::IsInf => map1::<$t, u8>($x, $out, |a: $t| a.load().is_infinite() as u8),
            UnaryOp::IsFinite => map1::<$t, u8>($x, $out, |a: $t| !(a.load().is_nan() || a.load().is_infinite()) as u8),
            UnaryOp::LogicalNot | UnaryOp::BitwiseNot => unreachable!("rejected by output_dtype"),
        }
    };
}
macro_rules! unary_int_arms {
    ($op:ident, $x:ident, $out:ident, $t:ty; $($v:ident)*) => {
        match $op {
            $(UnaryOp::$v => map1::<$t, $t>($x, $out, |a: $t| a.unary(UnaryOp::$v)),)*
            UnaryOp::IsNan | UnaryOp::IsInf => map1::<$t, u8>($x, $out, |_: $t| 0),
            UnaryOp::IsFinite => map1::<$t, u8>($x, $out, |_: $t| 1),
            _ => unreachable!("rejected by output_dtype"),
        }
    };
}
macro_rules! binary_arms {
    ($op:ident, $a:ident, $b:ident, $out:ident, $t:ty, $f:expr; $($v:ident)*) => {
        match $op {
            $(BinaryOp::$v => { let f = $f; map2::<$t, $t, $t>($a, $b, $out, move |x: $t, y: $t| f(x, y, BinaryOp::$v)) })*
            _ => unreachable!("rejected by output_dtype"),
        }
    };
}

/// Below this many elements, one thread does the whole loop.
const PAR_MIN: usize = 1 << 16;

/// `out = op(x)`. The output type is [`UnaryOp::output_dtype`] of the input's.
pub fn unary(op: UnaryOp, x: TensorRef<'_>, out: TensorMut<'_>) -> Result<()> {
    validate_unary(op, &x, &out)?;
    use UnaryOp as U;
    macro_rules! float {
        ($t:ty) => {
            unary_float_ops!(unary_float_arms(op, x, out, $t))
        };
    }
    macro_rules! int {
        ($t:ty) => {
            unary_int_ops!(unary_int_arms(op, x, out, $t))
        };
    }
    match x.dtype {
        DType::F32 => float!(f32),
        DType::F64 => float!(f64),
        DType::F16 => float!(f16),
        DType::BF16 => float!(bf16),
        DType::I8 => int!(i8),
        DType::U8 => int!(u8),
        DType::I16 => int!(i16),
        DType::U16 => int!(u16),
        DType::I32 => int!(i32),
        DType::U32 => int!(u32),
        DType::I64 => int!(i64),
        DType::U64 => int!(u64),
        DType::Bool => match op {
            U::LogicalNot | U::BitwiseNot => map1::<u8, u8>(x, out, |a: u8| (a == 0) as u8),
            _ => unreachable!("rejected by output_dtype"),
        },
        DType::C64 => match op {
            U::Neg => map1::<[f32; 2], [f32; 2]>(x, out, |[re, im]: [f32; 2]| [-re, -im]),
            U::Exp => map1::<[f32; 2], [f32; 2]>(x, out, |[re, im]: [f32; 2]| {
                let (m, (s, c)) = (f64::from(re).exp(), f64::from(im).sin_cos());
                [(m * c) as f32, (m * s) as f32]
            }),
            _ => unreachable!("rejected by output_dtype"),
        },
        _ => unreachable!("rejected by output_dtype"),
    }
    Ok(())
}

/// `out = op(a, b)`; both operands have one type, the output [`BinaryOp::output_dtype`] of it.
pub fn binary(op: BinaryOp, a: TensorRef<'_>, b: TensorRef<'_>, out: TensorMut<'_>) -> Result<()> {
    validate_binary(op, &a, &b, &out)?;
    use BinaryOp as B;
    macro_rules! compare {
        ($t:ty, $load:expr) => {{
            let l = $load;
            match op {
                B::Equal => map2::<$t, $t, u8>(a, b, out, |x: $t, y: $t| (l(x) == l(y)) as u8),
                B::NotEqual => map2::<$t, $t, u8>(a, b, out, |x: $t, y: $t| (l(x) != l(y)) as u8),
                B::Less => map2::<$t, $t, u8>(a, b, out, |x: $t, y: $t| (l(x) < l(y)) as u8),
                B::LessEqual => map2::<$t, $t, u8>(a, b, out, |x: $t, y: $t| (l(x) <= l(y)) as u8),
                B::Greater => map2::<$t, $t, u8>(a, b, out, |x: $t, y: $t| (l(x) > l(y)) as u8),
                B::GreaterEqual => map2::<$t, $t, u8>(a, b, out, |x: $t, y: $t| (l(x) >= l(y)) as u8),
                _ => unreachable!("not a comparison"),
            }
        }};
    }
    let comparison = matches!(op, B::Equal | B::NotEqual | B::Less | B::LessEqual | B::Greater | B::GreaterEqual);
    macro_rules! float {
        ($t:ty) => {
            if comparison {
                compare!($t, |v: $t| v.load())
            } else {
                binary_float_ops!(binary_arms(op, a, b, out, $t, |x: $t, y: $t, o| <$t>::store(
                    x.load().binary(y.load(), o)
                )))
            }
        };
    }
    macro_rules! int {
        ($t:ty) => {
            if comparison {
                compare!($t, |v: $t| v)
            } else {
                binary_int_ops!(binary_arms(op, a, b, out, $t, |x: $t, y: $t, o| x.binary(y, o)))
            }
        };
    }
    match a.dtype {
        DType::F32 => float!(f32),
        DType::F64 => float!(f64),
        DType::F16 => float!(f16),
        DType::BF16 => float!(bf16),
        DType::I8 => int!(i8),
        DType::U8 => int!(u8),
        DType::I16 => int!(i16),
        DType::U16 => int!(u16),
        DType::I32 => int!(i32),
        DType::U32 => int!(u32),
        DType::I64 => int!(i64),
        DType::U64 => int!(u64),
        DType::Bool => match op {
            B::LogicalAnd | B::BitwiseAnd => map2::<u8, u8, u8>(a, b, out, |x: u8, y: u8| (x != 0 && y != 0) as u8),
            B::LogicalOr | B::BitwiseOr => map2::<u8, u8, u8>(a, b, out, |x: u8, y: u8| (x != 0 || y != 0) as u8),
            B::BitwiseXor => map2::<u8, u8, u8>(a, b, out, |x: u8, y: u8| ((x != 0) != (y != 0)) as u8),
            _ => unreachable!("rejected by output_dtype"),
        },
        // complex64 as (real, imaginary) pairs of f32.
        DType::C64 => {
            type C = [f32; 2];
            match op {
                B::Add => map2::<C, C, C>(a, b, out, |[p, q]: C, [r, t]: C| [p + r, q + t]),
                B::Sub => map2::<C, C, C>(a, b, out, |[p, q]: C, [r, t]: C| [p - r, q - t]),
                B::Mul => map2::<C, C, C>(a, b, out, |[p, q]: C, [r, t]: C| [p * r - q * t, p * t + q * r]),
                B::Div => map2::<C, C, C>(a, b, out, |x: C, y: C| {
                    // In float64, so that |y|² neither overflows nor loses the small part.
                    let [p, q, r, t] = [x[0], x[1], y[0], y[1]].map(f64::from);
                    let d = r * r + t * t;
                    [((p * r + q * t) / d) as f32, ((q * r - p * t) / d) as f32]
                }),
                B::Equal => map2::<C, C, u8>(a, b, out, |x: C, y: C| (x[0] == y[0] && x[1] == y[1]) as u8),
                B::NotEqual => map2::<C, C, u8>(a, b, out, |x: C, y: C| (x[0] != y[0] || x[1] != y[1]) as u8),
                _ => unreachable!("rejected by output_dtype"),
            }
        }
        _ => unreachable!("rejected by output_dtype"),
    }
    Ok(())
}

/// `out = cond ? a : b`, element by element; `cond` is `bool`, `a`, `b` and `out` one type.
pub fn select(cond: TensorRef<'_>, a: TensorRef<'_>, b: TensorRef<'_>, out: TensorMut<'_>) -> Result<()> {
    validate_select(&cond, &a, &b, &out)?;
    match a.dtype.bits() {
        8 => map3::<u8>(cond, a, b, out),
        16 => map3::<u16>(cond, a, b, out),
        32 => map3::<u32>(cond, a, b, out),
        64 => map3::<u64>(cond, a, b, out),
        _ => unreachable!("no other widths"),
    }
    Ok(())
}

/// A layout whose every stride is zero: one value, broadcast.
fn is_scalar(l: &Layout) -> bool {
    l.strides().iter().zip(l.shape()).all(|(&s, &d)| s == 0 || d == 1)
}

/// Runs `f(i, base_positions)` over row-major chunks of the common shape, in parallel for big
/// tensors: `f` receives, for each of the `N` layouts, the position of the chunk's first
/// element, and the chunk is always a run of whole innermost rows.
fn for_each_row<const N: usize>(shape: &[usize], layouts: [&Layout; N], f: impl Fn([isize; N], usize) + Sync) {
    let nd = shape.len();
    let numel: usize = shape.iter().product();
    if numel == 0 {
        return;
    }
    if nd == 0 {
        return f(layouts.map(|l| l.offset() as isize), 1);
    }
    let inner = shape[nd - 1];
    let rows = numel / inner;
    let row_base = |r: usize| -> [isize; N] {
        layouts.map(|l| {
            let mut rem = r;
            let mut pos = l.offset() as isize;
            for ax in (0..nd - 1).rev() {
                pos += (rem % shape[ax]) as isize * l.strides()[ax];
                rem /= shape[ax];
            }
            pos
        })
    };
    if numel >= PAR_MIN && rows > 1 {
        (0..rows).into_par_iter().for_each(|r| f(row_base(r), inner));
    } else {
        (0..rows).for_each(|r| f(row_base(r), inner));
    }
}

/// `out[i] = f(a[i])`.
fn map1<A: Pod + Send + Sync, O: Pod + Send + Sync>(
    a: TensorRef<'_>,
    out: TensorMut<'_>,
    f: impl Fn(A) -> O + Sync + Send,
) {
    let ad = a.buffer.typed::<A>();
    let ol = out.layout.clone();
    let od = out.buffer.typed_mut::<O>();
    if a.layout.is_contiguous() && ol.is_contiguous() {
        let (ao, oo, n) = (a.layout.offset(), ol.offset(), ol.numel());
        return contiguous1(&ad[ao..ao + n], &mut od[oo..oo + n], &f);
    }
    let op = od.as_mut_ptr() as usize;
    let (sa, so) = (*a.layout.strides().last().unwrap_or(&0), *ol.strides().last().unwrap_or(&0));
    for_each_row(ol.shape(), [a.layout, &ol], |[pa, po], n| {
        for j in 0..n as isize {
            // SAFETY: positions lie in the checked buffers; output elements never overlap.
            unsafe { *(op as *mut O).offset(po + j * so) = f(ad[(pa + j * sa) as usize]) };
        }
    });
}

/// `out[i] = f(a[i], b[i])`.
fn map2<A: Pod + Send + Sync, B: Pod + Send + Sync, O: Pod + Send + Sync>(
    a: TensorRef<'_>,
    b: TensorRef<'_>,
    out: TensorMut<'_>,
    f: impl Fn(A, B) -> O + Sync + Send,
) {
    let (ad, bd) = (a.buffer.typed::<A>(), b.buffer.typed::<B>());
    let ol = out.layout.clone();
    let od = out.buffer.typed_mut::<O>();
    let n = ol.numel();
    if n == 0 {
        return;
    }
    if ol.is_contiguous() {
        let oo = ol.offset();
        let o = &mut od[oo..oo + n];
        match (a.layout.is_contiguous(), b.layout.is_contiguous(), is_scalar(a.layout), is_scalar(b.layout)) {
            (true, true, _, _) => {
                let (x, y) = (&ad[a.layout.offset()..][..n], &bd[b.layout.offset()..][..n]);
                return contiguous2(x, y, o, &f);
            }
            (true, _, _, true) => {
                let y = bd[b.layout.offset()];
                return contiguous1(&ad[a.layout.offset()..][..n], o, &|x| f(x, y));
            }
            (_, true, true, _) => {
                let x = ad[a.layout.offset()];
                return contiguous1(&bd[b.layout.offset()..][..n], o, &|y| f(x, y));
            }
            _ => {}
        }
    }
    let op = od.as_mut_ptr() as usize;
    let last = |l: &Layout| *l.strides().last().unwrap_or(&0);
    let (sa, sb, so) = (last(a.layout), last(b.layout), last(&ol));
    for_each_row(ol.shape(), [a.layout, b.layout, &ol], |[pa, pb, po], n| {
        for j in 0..n as isize {
            // SAFETY: as in map1.
            unsafe { *(op as *mut O).offset(po + j * so) = f(ad[(pa + j * sa) as usize], bd[(pb + j * sb) as usize]) };
        }
    });
}

/// `out[i] = cond[i] ? a[i] : b[i]` for elements of one width.
fn map3<T: Pod + Send + Sync>(cond: TensorRef<'_>, a: TensorRef<'_>, b: TensorRef<'_>, out: TensorMut<'_>) {
    let (cd, ad, bd) = (cond.buffer.as_bytes(), a.buffer.typed::<T>(), b.buffer.typed::<T>());
    let ol = out.layout.clone();
    let op = out.buffer.typed_mut::<T>().as_mut_ptr() as usize;
    let last = |l: &Layout| *l.strides().last().unwrap_or(&0);
    let (sc, sa, sb, so) = (last(cond.layout), last(a.layout), last(b.layout), last(&ol));
    for_each_row(ol.shape(), [cond.layout, a.layout, b.layout, &ol], |[pc, pa, pb, po], n| {
        for j in 0..n as isize {
            let v =
                if cd[(pc + j * sc) as usize] != 0 { ad[(pa + j * sa) as usize] } else { bd[(pb + j * sb) as usize] };
            // SAFETY: as in map1.
            unsafe { *(op as *mut T).offset(po + j * so) = v };
        }
    });
}

/// A contiguous loop, split across threads when long, compiled for the best SIMD level.
fn contiguous1<A: Pod + Send + Sync, O: Pod + Send + Sync>(a: &[A], o: &mut [O], f: &(impl Fn(A) -> O + Sync)) {
    if o.len() >= PAR_MIN {
        o.par_chunks_mut(PAR_MIN / 4).zip(a.par_chunks(PAR_MIN / 4)).for_each(|(o, a)| simd1(a, o, f));
    } else {
        simd1(a, o, f);
    }
}

fn contiguous2<A: Pod + Send + Sync, B: Pod + Send + Sync, O: Pod + Send + Sync>(
    a: &[A],
    b: &[B],
    o: &mut [O],
    f: &(impl Fn(A, B) -> O + Sync),
) {
    if o.len() >= PAR_MIN {
        o.par_chunks_mut(PAR_MIN / 4)
            .zip(a.par_chunks(PAR_MIN / 4))
            .zip(b.par_chunks(PAR_MIN / 4))
            .for_each(|((o, a), b)| simd2(a, b, o, f));
    } else {
        simd2(a, b, o, f);
    }
}

macro_rules! multiversion {
    ($vis:vis $name:ident, $body:ident, ($($arg:ident: $ty:ty),*), <$($g:ident: $bound:path),*>, $f:ident: $fty:ty) => {
        $vis fn $name<$($g: $bound),*>($($arg: $ty,)* $f: $fty) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,fma")]
                unsafe fn avx512<$($g: $bound),*>($($arg: $ty,)* $f: $fty) {
                    $body($($arg,)* $f)
                }
                #[target_feature(enable = "avx2,fma,f16c")]
                unsafe fn avx2<$($g: $bound),*>($($arg: $ty,)* $f: $fty) {
                    $body($($arg,)* $f)
                }
                if simd_level() >= 2 {
                    // SAFETY: the CPU has these features.
                    return unsafe { avx512($($arg,)* $f) };
                }
                if simd_level() == 1 {
                    // SAFETY: the CPU has these features.
                    return unsafe { avx2($($arg,)* $f) };
                }
            }
            $body($($arg,)* $f)
        }
    };
}

#[inline(always)]
fn body1<A: Pod, O: Pod>(a: &[A], o: &mut [O], f: &impl Fn(A) -> O) {
    for (o, &a) in o.iter_mut().zip(a) {
        *o = f(a);
    }
}

#[inline(always)]
fn body2<A: Pod, B: Pod, O: Pod>(a: &[A], b: &[B], o: &mut [O], f: &impl Fn(A, B) -> O) {
    for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
        *o = f(a, b);
    }
}

multiversion!(pub(crate) simd1, body1, (a: &[A], o: &mut [O]), <A: Pod, O: Pod, F: Fn(A) -> O>, f: &F);
multiversion!(pub(crate) simd2, body2, (a: &[A], b: &[B], o: &mut [O]), <A: Pod, B: Pod, O: Pod, F: Fn(A, B) -> O>, f: &F);

/// 2: AVX-512, 1: AVX2+FMA+F16C, 0: neither (decided once).
#[cfg(target_arch = "x86_64")]
fn simd_level() -> u8 {
    static LEVEL: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl") && has!("fma") {
            2
        } else if has!("avx2") && has!("fma") && has!("f16c") {
            1
        } else {
            0
        }
    })
}

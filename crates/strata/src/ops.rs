//! The op set: each op checks its arguments, computes the output's shape and dtype (so errors
//! surface at the call, with the shapes in the message) and records a node. Broadcasting and
//! type promotion follow NumPy/MLX: see [`result_type`].

use strata_core::kernel::{BinaryOp, ReduceOp, ScanOp, UnaryOp};
use strata_core::{DType, Error, Kind, Result};

use crate::graph::Array;
use crate::prim::Prim;

pub(crate) fn invalid(op: &'static str, message: String) -> Error {
    Error::InvalidArgument { op, message }
}

/// Fails with the stored error if an operand is the result of a failed operator
/// expression (`a + b` cannot return a `Result`; it returns an array that carries the error).
pub(crate) fn check_ok(xs: &[&Array]) -> Result<()> {
    for x in xs {
        if let Prim::Error(e) = x.prim() {
            return Err(e.clone());
        }
    }
    Ok(())
}

pub(crate) fn make(prim: Prim, inputs: Vec<Array>, shape: Vec<usize>, dtype: DType) -> Array {
    let device = inputs.first().map(|a| a.device()).unwrap_or_else(crate::default_device);
    Array::node(prim, inputs, shape, dtype, device)
}

/// An array that fails with `e` when evaluated (the result of a failed operator).
pub(crate) fn failed(e: Error) -> Array {
    Array::node(Prim::Error(e), Vec::new(), Vec::new(), DType::F32, crate::default_device())
}

// ---------------------------------------------------------------------------------------------
// Types and shapes

/// The type two operands are converted to before an element-wise op. NumPy's table for bool,
/// integers and floats, except where MLX differs, whose rules suit ML better: an integer with a
/// float gives that float type (NumPy: int32 + float32 → float64), float16 with bfloat16 gives
/// float32, and uint64 with a signed type gives float32 (NumPy: float64).
pub fn result_type(a: DType, b: DType) -> DType {
    use DType::*;
    if a == b {
        return a;
    }
    if a == C64 || b == C64 {
        return C64;
    }
    match ((a.kind(), a.bits()), (b.kind(), b.bits())) {
        ((Kind::Bool, _), _) => b,
        (_, (Kind::Bool, _)) => a,
        ((Kind::Float, _), (Kind::Float, _)) => {
            if (a == F16 && b == BF16) || (a == BF16 && b == F16) {
                F32
            } else if a.bits() >= b.bits() {
                a
            } else {
                b
            }
        }
        ((Kind::Float, _), _) => a,
        (_, (Kind::Float, _)) => b,
        ((ka, ba), (kb, bb)) if ka == kb => {
            if ba >= bb {
                a
            } else {
                b
            }
        }
        ((ka, ba), (_, bb)) => {
            // One signed, one unsigned: the smallest signed type holding both.
            let (su, bu) = if ka == Kind::UInt { (bb, ba) } else { (ba, bb) };
            match su.max(bu * 2) {
                8 => I8,
                16 => I16,
                32 => I32,
                64 => I64,
                _ => F32,
            }
        }
    }
}

/// The shape two shapes broadcast to, or an error naming both.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i < n - a.len() { 1 } else { a[i - (n - a.len())] };
        let db = if i < n - b.len() { 1 } else { b[i - (n - b.len())] };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(invalid("broadcast", format!("shapes {a:?} and {b:?} cannot be broadcast together"))),
        };
    }
    Ok(out)
}

/// `axis` (negative counts from the end) as an index into `ndim` axes.
pub(crate) fn norm_axis(op: &'static str, axis: isize, ndim: usize) -> Result<usize> {
    let a = if axis < 0 { axis + ndim as isize } else { axis };
    if a < 0 || a >= ndim as isize {
        return Err(invalid(op, format!("axis {axis} is out of range for an array of {ndim} axes")));
    }
    Ok(a as usize)
}

pub(crate) fn norm_axes(op: &'static str, axes: Option<&[isize]>, ndim: usize) -> Result<Vec<usize>> {
    let mut out: Vec<usize> = match axes {
        None => (0..ndim).collect(),
        Some(axes) => axes.iter().map(|&a| norm_axis(op, a, ndim)).collect::<Result<_>>()?,
    };
    out.sort_unstable();
    if out.windows(2).any(|w| w[0] == w[1]) {
        return Err(invalid(op, format!("repeated axis in {axes:?}")));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Casts, views and copies

impl Array {
    /// The elements converted to `dtype` (`ml_dtypes`/NumPy rules; see `strata_cpu::cast`).
    pub fn astype(&self, dtype: DType) -> Result<Array> {
        check_ok(&[self])?;
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        Ok(make(Prim::Cast, vec![self.clone()], self.shape().to_vec(), dtype))
    }

    /// The same elements in a new shape; one axis may be `-1` (inferred).
    pub fn reshape(&self, shape: &[isize]) -> Result<Array> {
        check_ok(&[self])?;
        let size = self.size();
        let known: usize = shape.iter().filter(|&&d| d >= 0).map(|&d| d as usize).product();
        let inferred = shape.iter().filter(|&&d| d == -1).count();
        let bad = || {
            invalid(
                "reshape",
                format!("cannot reshape an array of shape {:?} ({size} elements) to {shape:?}", self.shape()),
            )
        };
        if inferred > 1 || shape.iter().any(|&d| d < -1) {
            return Err(bad());
        }
        let out: Vec<usize> = if inferred == 1 {
            if known == 0 || !size.is_multiple_of(known) {
                return Err(bad());
            }
            shape.iter().map(|&d| if d == -1 { size / known } else { d as usize }).collect()
        } else {
            shape.iter().map(|&d| d as usize).collect()
        };
        if out.iter().product::<usize>() != size {
            return Err(bad());
        }
        Ok(reshape_to(self, &out))
    }

    /// Axes permuted (`None`: reversed).
    pub fn transpose(&self, perm: Option<&[isize]>) -> Result<Array> {
        check_ok(&[self])?;
        let n = self.ndim();
        let perm: Vec<usize> = match perm {
            None => (0..n).rev().collect(),
            Some(p) => {
                let p: Vec<usize> = p.iter().map(|&a| norm_axis("transpose", a, n)).collect::<Result<_>>()?;
                let mut sorted = p.clone();
                sorted.sort_unstable();
                if sorted != (0..n).collect::<Vec<_>>() {
                    return Err(invalid(
                        "transpose",
                        format!("{perm:?} is not a permutation of the {n} axes of {:?}", self.shape()),
                    ));
                }
                p
            }
        };
        Ok(permute(self, perm))
    }

    /// The sum over `axes` (`None`: all).
    pub fn sum(&self, axes: Option<&[isize]>, keepdims: bool) -> Result<Array> {
        sum(self, axes, keepdims)
    }

    /// The mean over `axes`.
    pub fn mean(&self, axes: Option<&[isize]>, keepdims: bool) -> Result<Array> {
        mean(self, axes, keepdims)
    }

    /// The matrix product.
    pub fn matmul(&self, other: &Array) -> Result<Array> {
        matmul(self, other)
    }
}

pub(crate) fn reshape_to(a: &Array, shape: &[usize]) -> Array {
    if a.shape() == shape {
        return a.clone();
    }
    make(Prim::Reshape, vec![a.clone()], shape.to_vec(), a.dtype())
}

pub(crate) fn permute(a: &Array, perm: Vec<usize>) -> Array {
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return a.clone();
    }
    let shape = perm.iter().map(|&p| a.shape()[p]).collect();
    make(Prim::Transpose(perm), vec![a.clone()], shape, a.dtype())
}

/// A contiguous copy (itself if already contiguous when evaluated).
pub fn contiguous(a: &Array) -> Result<Array> {
    check_ok(&[a])?;
    if let Some(d) = a.data()
        && d.layout.is_contiguous()
    {
        return Ok(a.clone());
    }
    Ok(make(Prim::Reshape, vec![a.clone()], a.shape().to_vec(), a.dtype()))
}

/// `a` broadcast to `shape` (a view).
pub fn broadcast_to(a: &Array, shape: &[usize]) -> Result<Array> {
    check_ok(&[a])?;
    let target = broadcast_shapes(a.shape(), shape)?;
    if target != shape {
        return Err(invalid(
            "broadcast_to",
            format!("an array of shape {:?} cannot be broadcast to {shape:?}", a.shape()),
        ));
    }
    if a.shape() == shape {
        return Ok(a.clone());
    }
    Ok(make(Prim::Broadcast, vec![a.clone()], shape.to_vec(), a.dtype()))
}

/// Axes `a` and `b` swapped.
pub fn swapaxes(x: &Array, a: isize, b: isize) -> Result<Array> {
    let (a, b) = (norm_axis("swapaxes", a, x.ndim())?, norm_axis("swapaxes", b, x.ndim())?);
    let mut perm: Vec<usize> = (0..x.ndim()).collect();
    perm.swap(a, b);
    Ok(permute(x, perm))
}

/// Axis `from` moved to position `to`.
pub fn moveaxis(x: &Array, from: isize, to: isize) -> Result<Array> {
    let (f, t) = (norm_axis("moveaxis", from, x.ndim())?, norm_axis("moveaxis", to, x.ndim())?);
    let mut perm: Vec<usize> = (0..x.ndim()).filter(|&i| i != f).collect();
    perm.insert(t, f);
    Ok(permute(x, perm))
}

/// A new axis of size 1 at `axis` (of the result).
pub fn expand_dims(x: &Array, axis: isize) -> Result<Array> {
    let a = norm_axis("expand_dims", axis, x.ndim() + 1)?;
    let mut shape = x.shape().to_vec();
    shape.insert(a, 1);
    Ok(reshape_to(x, &shape))
}

/// Size-1 axes removed (`None`: all of them).
pub fn squeeze(x: &Array, axes: Option<&[isize]>) -> Result<Array> {
    let axes: Vec<usize> = match axes {
        None => (0..x.ndim()).filter(|&i| x.shape()[i] == 1).collect(),
        Some(_) => norm_axes("squeeze", axes, x.ndim())?,
    };
    if let Some(&a) = axes.iter().find(|&&a| x.shape()[a] != 1) {
        return Err(invalid("squeeze", format!("axis {a} of shape {:?} has size {}, not 1", x.shape(), x.shape()[a])));
    }
    let shape: Vec<usize> = (0..x.ndim()).filter(|i| !axes.contains(i)).map(|i| x.shape()[i]).collect();
    Ok(reshape_to(x, &shape))
}

/// All elements in one axis.
pub fn flatten(x: &Array) -> Result<Array> {
    Ok(reshape_to(x, &[x.size()]))
}

/// Elements `start, start + step, …` before `stop` along every axis (Python slice rules:
/// negative indices count from the end, out-of-range bounds are clipped, `step` ≠ 0).
pub fn slice(x: &Array, start: &[isize], stop: &[isize], step: &[isize]) -> Result<Array> {
    check_ok(&[x])?;
    let n = x.ndim();
    if start.len() != n || stop.len() != n || step.len() != n {
        return Err(invalid(
            "slice",
            format!(
                "an array of {n} axes needs {n} starts, stops and steps; got {}, {} and {}",
                start.len(),
                stop.len(),
                step.len()
            ),
        ));
    }
    let mut first = Vec::with_capacity(n);
    let mut shape = Vec::with_capacity(n);
    for i in 0..n {
        let (d, st) = (x.shape()[i] as isize, step[i]);
        if st == 0 {
            return Err(invalid("slice", format!("step 0 on axis {i}")));
        }
        let clamp = |v: isize, lo: isize, hi: isize| (if v < 0 { v + d } else { v }).clamp(lo, hi);
        let (b, e) = if st > 0 {
            (clamp(start[i], 0, d), clamp(stop[i], 0, d))
        } else {
            (clamp(start[i], -1, d - 1), clamp(stop[i], -1, d - 1))
        };
        let len = if st > 0 { (e - b + st - 1).max(0) / st } else { (b - e - st - 1).max(0) / -st };
        first.push(if len > 0 { b as usize } else { 0 });
        shape.push(len as usize);
    }
    Ok(make(Prim::Slice { start: first, step: step.to_vec() }, vec![x.clone()], shape, x.dtype()))
}

/// Elements `start..stop` along one axis.
pub fn slice_axis(x: &Array, axis: isize, start: isize, stop: isize) -> Result<Array> {
    let a = norm_axis("slice", axis, x.ndim())?;
    let mut b = vec![0; x.ndim()];
    let mut e: Vec<isize> = x.shape().iter().map(|&d| d as isize).collect();
    b[a] = start;
    e[a] = stop;
    slice(x, &b, &e, &vec![1; x.ndim()])
}

/// `x` with the region `slice(x, start, stop, step)` replaced by `update` (broadcast to it).
pub fn slice_update(x: &Array, update: &Array, start: &[isize], stop: &[isize], step: &[isize]) -> Result<Array> {
    let region = slice(x, start, stop, step)?;
    let Prim::Slice { start, step } = region.prim().clone() else { unreachable!("slice makes a Slice") };
    let update = broadcast_to(&update.astype(x.dtype())?, region.shape())?;
    Ok(make(Prim::SliceUpdate { start, step }, vec![x.clone(), update], x.shape().to_vec(), x.dtype()))
}

/// Reversed along `axes` (`None`: all).
pub fn flip(x: &Array, axes: Option<&[isize]>) -> Result<Array> {
    let axes = norm_axes("flip", axes, x.ndim())?;
    let n = x.ndim();
    let (mut b, mut e, mut s) = (vec![0isize; n], vec![0isize; n], vec![1isize; n]);
    for i in 0..n {
        e[i] = x.shape()[i] as isize;
        if axes.contains(&i) {
            (b[i], e[i], s[i]) = (-1, -(x.shape()[i] as isize) - 1, -1);
        }
    }
    slice(x, &b, &e, &s)
}

/// The arrays joined along `axis` (types promoted; other axes must agree).
pub fn concatenate(xs: &[&Array], axis: isize) -> Result<Array> {
    check_ok(xs)?;
    let Some(first) = xs.first() else { return Err(invalid("concatenate", "no arrays given".into())) };
    let a = norm_axis("concatenate", axis, first.ndim())?;
    let dtype = xs.iter().map(|x| x.dtype()).reduce(result_type).expect("non-empty");
    let mut shape = first.shape().to_vec();
    shape[a] = 0;
    for x in xs {
        let same = x.ndim() == first.ndim() && (0..x.ndim()).all(|i| i == a || x.shape()[i] == first.shape()[i]);
        if !same {
            return Err(invalid(
                "concatenate",
                format!("shapes {:?} and {:?} differ outside axis {axis}", first.shape(), x.shape()),
            ));
        }
        shape[a] += x.shape()[a];
    }
    let inputs = xs.iter().map(|x| x.astype(dtype)).collect::<Result<Vec<_>>>()?;
    Ok(make(Prim::Concat(a), inputs, shape, dtype))
}

/// The arrays (of one shape) stacked along a new axis.
pub fn stack(xs: &[&Array], axis: isize) -> Result<Array> {
    let Some(first) = xs.first() else { return Err(invalid("stack", "no arrays given".into())) };
    if let Some(x) = xs.iter().find(|x| x.shape() != first.shape()) {
        return Err(invalid("stack", format!("shapes {:?} and {:?} differ", first.shape(), x.shape())));
    }
    let expanded = xs.iter().map(|x| expand_dims(x, axis)).collect::<Result<Vec<_>>>()?;
    concatenate(&expanded.iter().collect::<Vec<_>>(), axis)
}

/// Pieces of `x` along `axis`, cut before each of `indices`.
pub fn split_at(x: &Array, indices: &[usize], axis: isize) -> Result<Vec<Array>> {
    let a = norm_axis("split", axis, x.ndim())?;
    let d = x.shape()[a];
    let mut bounds = vec![0];
    bounds.extend(indices.iter().map(|&i| i.min(d)));
    bounds.push(d);
    bounds.windows(2).map(|w| slice_axis(x, a as isize, w[0] as isize, w[1].max(w[0]) as isize)).collect()
}

/// `x` cut into `sections` equal pieces along `axis`.
pub fn split(x: &Array, sections: usize, axis: isize) -> Result<Vec<Array>> {
    let a = norm_axis("split", axis, x.ndim())?;
    let d = x.shape()[a];
    if sections == 0 || !d.is_multiple_of(sections) {
        return Err(invalid(
            "split",
            format!("axis {axis} of shape {:?} cannot be split into {sections} equal pieces", x.shape()),
        ));
    }
    let idx: Vec<usize> = (1..sections).map(|i| i * d / sections).collect();
    split_at(x, &idx, axis)
}

/// `x` repeated `reps` times along each axis (NumPy's `tile`).
pub fn tile(x: &Array, reps: &[usize]) -> Result<Array> {
    let n = x.ndim().max(reps.len());
    let mut shape = vec![1; n - x.ndim()];
    shape.extend(x.shape());
    let mut reps_full = vec![1; n - reps.len()];
    reps_full.extend(reps);
    // [r0, d0, r1, d1, …] broadcast, then merged.
    let mut expanded = Vec::new();
    let mut target = Vec::new();
    for i in 0..n {
        expanded.extend([1, shape[i]]);
        target.extend([reps_full[i], shape[i]]);
    }
    let b = broadcast_to(&reshape_to(x, &expanded), &target)?;
    let out: Vec<usize> = (0..n).map(|i| reps_full[i] * shape[i]).collect();
    Ok(reshape_to(&contiguous(&b)?, &out))
}

/// Each element repeated `repeats` times along `axis`.
pub fn repeat(x: &Array, repeats: usize, axis: isize) -> Result<Array> {
    let a = norm_axis("repeat", axis, x.ndim())?;
    let mut shape = x.shape().to_vec();
    shape.insert(a + 1, 1);
    let mut target = shape.clone();
    target[a + 1] = repeats;
    let b = broadcast_to(&reshape_to(x, &shape), &target)?;
    let mut out = x.shape().to_vec();
    out[a] *= repeats;
    Ok(reshape_to(&contiguous(&b)?, &out))
}

/// Elements shifted by `shift` along `axis`, wrapping around.
pub fn roll(x: &Array, shift: isize, axis: isize) -> Result<Array> {
    let a = norm_axis("roll", axis, x.ndim())?;
    let d = x.shape()[a] as isize;
    if d == 0 {
        return Ok(x.clone());
    }
    let s = shift.rem_euclid(d);
    let tail = slice_axis(x, a as isize, d - s, d)?;
    let head = slice_axis(x, a as isize, 0, d - s)?;
    concatenate(&[&tail, &head], a as isize)
}

/// `x` padded with `value`: `widths[i] = (before, after)` for axis `i`.
pub fn pad(x: &Array, widths: &[(usize, usize)], value: f64) -> Result<Array> {
    if widths.len() != x.ndim() {
        return Err(invalid("pad", format!("{} pad widths for an array of shape {:?}", widths.len(), x.shape())));
    }
    let shape: Vec<usize> = x.shape().iter().zip(widths).map(|(&d, &(b, a))| d + b + a).collect();
    let base = crate::array::full(&shape, value, x.dtype())?;
    let start: Vec<isize> = widths.iter().map(|&(b, _)| b as isize).collect();
    let stop: Vec<isize> = widths.iter().zip(x.shape()).map(|(&(b, _), &d)| (b + d) as isize).collect();
    slice_update(&base, x, &start, &stop, &vec![1; x.ndim()])
}

/// The value with no derivative flowing through it.
pub fn stop_gradient(x: &Array) -> Result<Array> {
    check_ok(&[x])?;
    Ok(make(Prim::StopGradient, vec![x.clone()], x.shape().to_vec(), x.dtype()))
}

// ---------------------------------------------------------------------------------------------
// Element-wise

/// `op(x)`. Operations defined on floats only (`exp`, `sin`, …) compute integer and bool
/// inputs in float32, as MLX does.
pub fn unary(op: UnaryOp, x: &Array) -> Result<Array> {
    check_ok(&[x])?;
    if x.dtype() == DType::C64
        && let Some(r) = crate::fft::complex_unary(op, x)?
    {
        return Ok(r);
    }
    let x = match op.output_dtype(x.dtype()) {
        Ok(_) => x.clone(),
        Err(e) if x.dtype().is_integer() || x.dtype() == DType::Bool => match op.output_dtype(DType::F32) {
            Ok(_) if !matches!(op, UnaryOp::IsNan | UnaryOp::IsInf | UnaryOp::IsFinite) => x.astype(DType::F32)?,
            _ => return Err(e),
        },
        Err(e) => return Err(e),
    };
    let dtype = op.output_dtype(x.dtype())?;
    Ok(make(Prim::Unary(op), vec![x.clone()], x.shape().to_vec(), dtype))
}

/// `op(a, b)` with broadcasting and type promotion (float-only ops such as `divide` compute
/// integers in float32; logical ops take the truth of their operands).
pub fn binary(op: BinaryOp, a: &Array, b: &Array) -> Result<Array> {
    check_ok(&[a, b])?;
    let shape = broadcast_shapes(a.shape(), b.shape())?;
    let mut t = result_type(a.dtype(), b.dtype());
    if t == DType::C64 && op == BinaryOp::Pow {
        return crate::fft::complex_power(&a.astype(t)?, &b.astype(t)?);
    }
    if matches!(op, BinaryOp::LogicalAnd | BinaryOp::LogicalOr) {
        t = DType::Bool;
    } else if op.output_dtype(t).is_err() && (t.is_integer() || t == DType::Bool) && op.output_dtype(DType::F32).is_ok()
    {
        t = DType::F32;
    }
    let dtype = op.output_dtype(t).map_err(|e| match e {
        Error::UnsupportedDType { op, expected, .. } => Error::InvalidArgument {
            op,
            message: format!(
                "operands of {} and {} (promoted to {t}) are not supported; it needs {expected}",
                a.dtype(),
                b.dtype()
            ),
        },
        e => e,
    })?;
    let a = broadcast_to(&a.astype(t)?, &shape)?;
    let b = broadcast_to(&b.astype(t)?, &shape)?;
    Ok(make(Prim::Binary(op), vec![a, b], shape, dtype))
}

/// `cond ? a : b`, broadcast together; `cond` is taken as bool.
pub fn where_(cond: &Array, a: &Array, b: &Array) -> Result<Array> {
    check_ok(&[cond, a, b])?;
    let shape = broadcast_shapes(&broadcast_shapes(cond.shape(), a.shape())?, b.shape())?;
    let t = result_type(a.dtype(), b.dtype());
    let c = broadcast_to(&cond.astype(DType::Bool)?, &shape)?;
    let a = broadcast_to(&a.astype(t)?, &shape)?;
    let b = broadcast_to(&b.astype(t)?, &shape)?;
    Ok(make(Prim::Select, vec![c, a, b], shape, t))
}

macro_rules! unary_fns {
    ($($f:ident => $op:ident),* $(,)?) => {$(
        #[doc = concat!("Element-wise `", stringify!($f), "` (see [`UnaryOp::", stringify!($op), "`]).")]
        pub fn $f(x: &Array) -> Result<Array> {
            unary(UnaryOp::$op, x)
        }
    )*};
}
unary_fns!(negative => Neg, abs => Abs, sign => Sign, square => Square, sqrt => Sqrt, rsqrt => Rsqrt,
    reciprocal => Reciprocal, exp => Exp, exp2 => Exp2, expm1 => Expm1, log => Log, log2 => Log2,
    log10 => Log10, log1p => Log1p, sin => Sin, cos => Cos, tan => Tan, arcsin => Asin, arccos => Acos,
    arctan => Atan, sinh => Sinh, cosh => Cosh, tanh => Tanh, arcsinh => Asinh, arccosh => Acosh,
    arctanh => Atanh, erf => Erf, erfinv => ErfInv, sigmoid => Sigmoid, softplus => Softplus,
    relu => Relu, gelu => Gelu, gelu_tanh => GeluTanh, silu => Silu, floor => Floor, ceil => Ceil,
    round => Round, isnan => IsNan, isinf => IsInf, isfinite => IsFinite, logical_not => LogicalNot,
    bitwise_invert => BitwiseNot);

macro_rules! binary_fns {
    ($($f:ident => $op:ident),* $(,)?) => {$(
        #[doc = concat!("Element-wise `", stringify!($f), "` with broadcasting (see [`BinaryOp::", stringify!($op), "`]).")]
        pub fn $f(a: &Array, b: &Array) -> Result<Array> {
            binary(BinaryOp::$op, a, b)
        }
    )*};
}
binary_fns!(add => Add, subtract => Sub, multiply => Mul, divide => Div, floor_divide => FloorDiv,
    remainder => Remainder, power => Pow, maximum => Maximum, minimum => Minimum, arctan2 => Atan2,
    logaddexp => LogAddExp, equal => Equal, not_equal => NotEqual, less => Less, less_equal => LessEqual,
    greater => Greater, greater_equal => GreaterEqual, logical_and => LogicalAnd, logical_or => LogicalOr,
    bitwise_and => BitwiseAnd, bitwise_or => BitwiseOr, bitwise_xor => BitwiseXor, left_shift => LeftShift,
    right_shift => RightShift);

/// `x` limited to `[lo, hi]` (either bound optional).
pub fn clip(x: &Array, lo: Option<f64>, hi: Option<f64>) -> Result<Array> {
    let mut y = x.clone();
    if let Some(lo) = lo {
        y = maximum(&y, &weak_scalar(&y, lo))?;
    }
    if let Some(hi) = hi {
        y = minimum(&y, &weak_scalar(&y, hi))?;
    }
    Ok(y)
}

/// A scalar that takes `like`'s type (a float value with an integer array gives float32),
/// as Python scalars do in NumPy 2 and MLX.
pub(crate) fn weak_scalar(like: &Array, v: f64) -> Array {
    let t = like.dtype();
    let is_int_value = v.fract() == 0.0 && v.is_finite();
    let dtype = if t.is_float() || (t.is_integer() && is_int_value) {
        t
    } else if t == DType::Bool && is_int_value {
        DType::I32
    } else {
        DType::F32
    };
    // Converted on the host: a device without float64 never sees the f64 value.
    crate::array::full(&[], v, dtype).unwrap_or_else(failed)
}

// ---------------------------------------------------------------------------------------------
// Reductions and scans

fn reduce(op: ReduceOp, x: &Array, axes: Option<&[isize]>, keepdims: bool) -> Result<Array> {
    check_ok(&[x])?;
    if op == ReduceOp::Sum && x.dtype() == DType::C64 {
        let part = |p: Array| reduce(op, &p, axes, keepdims);
        return crate::fft::complex(&part(crate::fft::real(x)?)?, &part(crate::fft::imag(x)?)?);
    }
    let axes = norm_axes(op.name(), axes, x.ndim())?;
    let mut x = x.clone();
    let dtype = match op {
        ReduceOp::All | ReduceOp::Any => DType::Bool,
        ReduceOp::ArgMax | ReduceOp::ArgMin => DType::U32,
        _ => {
            if x.dtype() == DType::Bool {
                x = x.astype(DType::I32)?;
            }
            op.output_dtype(x.dtype())?
        }
    };
    if matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin) && x.dtype() == DType::Bool {
        x = x.astype(DType::U8)?;
    }
    let mut kept = x.shape().to_vec();
    for &a in &axes {
        if x.shape()[a] == 0 && matches!(op, ReduceOp::Max | ReduceOp::Min | ReduceOp::ArgMax | ReduceOp::ArgMin) {
            return Err(invalid(
                op.name(),
                format!("axis {a} of shape {:?} is empty and {} has no identity", x.shape(), op.name()),
            ));
        }
        kept[a] = 1;
    }
    let r = make(Prim::Reduce(op, axes.clone()), vec![x.clone()], kept.clone(), dtype);
    if keepdims {
        return Ok(r);
    }
    let shape: Vec<usize> = (0..x.ndim()).filter(|i| !axes.contains(i)).map(|i| x.shape()[i]).collect();
    Ok(reshape_to(&r, &shape))
}

macro_rules! reduce_fns {
    ($($f:ident => $op:ident),* $(,)?) => {$(
        #[doc = concat!("`", stringify!($f), "` over `axes` (`None`: all), keeping them with size 1 if `keepdims`.")]
        pub fn $f(x: &Array, axes: Option<&[isize]>, keepdims: bool) -> Result<Array> {
            reduce(ReduceOp::$op, x, axes, keepdims)
        }
    )*};
}
reduce_fns!(sum => Sum, prod => Prod, max => Max, min => Min, all => All, any => Any);

/// The index of the largest element along `axis` (`None`: of the flattened array), as uint32.
pub fn argmax(x: &Array, axis: Option<isize>, keepdims: bool) -> Result<Array> {
    arg_reduce(ReduceOp::ArgMax, x, axis, keepdims)
}

/// The index of the smallest element along `axis`, as uint32.
pub fn argmin(x: &Array, axis: Option<isize>, keepdims: bool) -> Result<Array> {
    arg_reduce(ReduceOp::ArgMin, x, axis, keepdims)
}

fn arg_reduce(op: ReduceOp, x: &Array, axis: Option<isize>, keepdims: bool) -> Result<Array> {
    match axis {
        Some(a) => reduce(op, x, Some(&[a]), keepdims),
        None => {
            let r = reduce(op, &flatten(x)?, Some(&[0]), false)?;
            if keepdims { Ok(reshape_to(&r, &vec![1; x.ndim()])) } else { Ok(r) }
        }
    }
}

fn count(x: &Array, axes: Option<&[isize]>) -> Result<f64> {
    Ok(norm_axes("mean", axes, x.ndim())?.iter().map(|&a| x.shape()[a]).product::<usize>() as f64)
}

fn float_of(x: &Array) -> Result<Array> {
    if x.dtype().is_float() || x.dtype() == DType::C64 { Ok(x.clone()) } else { x.astype(DType::F32) }
}

/// The mean over `axes` (integers in float32).
pub fn mean(x: &Array, axes: Option<&[isize]>, keepdims: bool) -> Result<Array> {
    let x = float_of(x)?;
    let n = count(&x, axes)?;
    let s = sum(&x, axes, keepdims)?;
    multiply(&s, &weak_scalar(&s, 1.0 / n))
}

/// The variance over `axes`, dividing by `n - ddof`.
pub fn var(x: &Array, axes: Option<&[isize]>, keepdims: bool, ddof: usize) -> Result<Array> {
    let x = float_of(x)?;
    let n = count(&x, axes)?;
    let mu = mean(&x, axes, true)?;
    let d = subtract(&x, &mu)?;
    let s = sum(&square(&d)?, axes, keepdims)?;
    multiply(&s, &weak_scalar(&s, 1.0 / (n - ddof as f64)))
}

/// The standard deviation over `axes`.
pub fn std(x: &Array, axes: Option<&[isize]>, keepdims: bool, ddof: usize) -> Result<Array> {
    sqrt(&var(x, axes, keepdims, ddof)?)
}

/// `log(sum(exp(x)))` over `axes`, without overflow.
pub fn logsumexp(x: &Array, axes: Option<&[isize]>, keepdims: bool) -> Result<Array> {
    let x = float_of(x)?;
    let m = stop_gradient(&max(&x, axes, true)?)?;
    // An all -inf (or inf) slice would give inf - inf: shift by 0 there.
    let m = where_(&isfinite(&m)?, &m, &weak_scalar(&m, 0.0))?;
    let s = log(&sum(&exp(&subtract(&x, &m)?)?, axes, true)?)?;
    let r = add(&s, &m)?;
    if keepdims {
        return Ok(r);
    }
    squeeze(&r, Some(&norm_axes("logsumexp", axes, x.ndim())?.iter().map(|&a| a as isize).collect::<Vec<_>>()))
}

/// `softmax` over `axes` (computed in the input's float type).
pub fn softmax(x: &Array, axes: Option<&[isize]>) -> Result<Array> {
    let x = float_of(x)?;
    let m = stop_gradient(&max(&x, axes, true)?)?;
    let e = exp(&subtract(&x, &m)?)?;
    divide(&e, &sum(&e, axes, true)?)
}

/// `log softmax` over `axes`: `x − logsumexp(x)`, without the softmax's division (stable where
/// the probabilities underflow).
pub fn log_softmax(x: &Array, axes: Option<&[isize]>) -> Result<Array> {
    subtract(x, &logsumexp(x, axes, true)?)
}

/// A scan along `axis`: `inclusive` (element `i` combines `0..=i`) or exclusive, optionally
/// from the end.
pub fn scan(op: ScanOp, x: &Array, axis: isize, reverse: bool, inclusive: bool) -> Result<Array> {
    check_ok(&[x])?;
    let mut x = x.clone();
    if x.dtype() == DType::Bool {
        x = x.astype(DType::I32)?;
    }
    if op == ScanOp::LogAddExp {
        x = float_of(&x)?;
    }
    let axis = norm_axis(op.name(), axis, x.ndim())?;
    let dtype = op.output_dtype(x.dtype())?;
    Ok(make(Prim::Scan { op, axis, reverse, inclusive }, vec![x.clone()], x.shape().to_vec(), dtype))
}

/// Running sum along `axis`.
pub fn cumsum(x: &Array, axis: isize, reverse: bool, inclusive: bool) -> Result<Array> {
    scan(ScanOp::Sum, x, axis, reverse, inclusive)
}

// ---------------------------------------------------------------------------------------------
// Linear algebra

/// The fp8 product `(sₐ ⊗ s_b) ∘ (a·b)` as `torch._scaled_mm` computes it: `a` `[m, k]` and `b`
/// `[k, n]` of `float8_e4m3fn` or `float8_e5m2` (either on either side), `scale_a` one factor
/// (`[]`) or one per row (`[m]`), `scale_b` one or one per column (`[n]`), accumulated in f32
/// and rounded once to `out` (float32, float16 or bfloat16). On Hopper a `b` stored `n × k`
/// and seen transposed (`w.t()`, a `Linear` layer's weight) runs on fp8 tensor cores.
/// Inference only: it has no derivative.
///
/// ```
/// use strata::{Array, DType};
/// let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2])?.astype(DType::F8E4M3)?;
/// // A weight stored n × k, as a `Linear` layer keeps it.
/// let w = Array::from_slice(&[0.5f32, -1.0, 1.5, 2.0], &[2, 2])?.astype(DType::F8E4M3)?;
/// let s = Array::from_slice(&[2.0f32], &[])?;
/// let y = strata::scaled_matmul(&a, &w.transpose(None)?, &s, &s, DType::F32)?;
/// assert_eq!(y.to_vec::<f32>()?, vec![-6.0, 22.0, -10.0, 50.0]);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn scaled_matmul(a: &Array, b: &Array, scale_a: &Array, scale_b: &Array, out: DType) -> Result<Array> {
    const OP: &str = "scaled_matmul";
    check_ok(&[a, b, scale_a, scale_b])?;
    let (&[m, k], &[k2, n]) = (a.shape(), b.shape()) else {
        return Err(invalid(
            OP,
            format!("operands of shape {:?} and {:?}: it takes two matrices", a.shape(), b.shape()),
        ));
    };
    if k != k2 {
        return Err(invalid(OP, format!("operands of shape {:?} and {:?} do not chain", a.shape(), b.shape())));
    }
    if !strata_core::kernel::is_fp8(a.dtype()) {
        return Err(invalid(OP, format!("a is {}; it takes float8_e4m3fn or float8_e5m2 operands", a.dtype())));
    }
    strata_core::kernel::Matmul2d::new(m, n, k).validate_types(a.dtype(), b.dtype(), out, None)?;
    for (what, s, len) in [("scale_a", scale_a, m), ("scale_b", scale_b, n)] {
        if !(s.shape().is_empty() || s.shape() == [len]) {
            return Err(invalid(OP, format!("{what} has shape {:?}; it needs [] or [{len}]", s.shape())));
        }
    }
    let inputs = vec![a.clone(), b.clone(), scale_a.astype(DType::F32)?, scale_b.astype(DType::F32)?];
    Ok(make(Prim::ScaledMatmul, inputs, vec![m, n], out))
}

/// The matrix product with NumPy's rules: 1-D operands are promoted to a row (left) or a
/// column (right) and the added axis removed again; batch axes broadcast. Floating types only.
pub fn matmul(a: &Array, b: &Array) -> Result<Array> {
    check_ok(&[a, b])?;
    if a.ndim() == 0 || b.ndim() == 0 {
        return Err(invalid(
            "matmul",
            format!("operands of shape {:?} and {:?}: matmul needs at least one axis each", a.shape(), b.shape()),
        ));
    }
    let t = result_type(a.dtype(), b.dtype());
    if t == DType::C64 {
        // (A + iB)(C + iD) = (AC − BD) + i(AD + BC), on the real kernels.
        use crate::fft::{complex, imag, real};
        let (ar, ai, br, bi) = (real(a)?, imag(a)?, real(b)?, imag(b)?);
        let re = subtract(&matmul(&ar, &br)?, &matmul(&ai, &bi)?)?;
        return complex(&re, &add(&matmul(&ar, &bi)?, &matmul(&ai, &br)?)?);
    }
    if !t.is_float() || !matches!(t, DType::F16 | DType::BF16 | DType::F32 | DType::F64) {
        return Err(invalid(
            "matmul",
            format!(
                "operands of {} and {}: matmul needs float16, bfloat16, float32, float64 or complex64",
                a.dtype(),
                b.dtype()
            ),
        ));
    }
    let a2 = if a.ndim() == 1 { reshape_to(a, &[1, a.shape()[0]]) } else { a.clone() };
    let b2 = if b.ndim() == 1 { reshape_to(b, &[b.shape()[0], 1]) } else { b.clone() };
    let (m, k) = (a2.shape()[a2.ndim() - 2], a2.shape()[a2.ndim() - 1]);
    let (k2, n) = (b2.shape()[b2.ndim() - 2], b2.shape()[b2.ndim() - 1]);
    if k != k2 {
        return Err(invalid(
            "matmul",
            format!("shapes {:?} and {:?}: inner dimensions {k} and {k2} differ", a.shape(), b.shape()),
        ));
    }
    let batch = broadcast_shapes(&a2.shape()[..a2.ndim() - 2], &b2.shape()[..b2.ndim() - 2])?;
    let full = |x: &Array, r: usize, c: usize| -> Result<Array> {
        let mut s = batch.clone();
        s.extend([r, c]);
        broadcast_to(&x.astype(t)?, &s)
    };
    let (a3, b3) = (full(&a2, m, k)?, full(&b2, k, n)?);
    let mut shape = batch.clone();
    shape.extend([m, n]);
    let out = make(Prim::Matmul, vec![a3, b3], shape.clone(), t);
    let mut final_shape = batch;
    if a.ndim() > 1 {
        final_shape.push(m);
    }
    if b.ndim() > 1 {
        final_shape.push(n);
    }
    Ok(reshape_to(&out, &final_shape))
}

/// `Σ a[i]·b[i]` over the last axis of both.
pub fn inner(a: &Array, b: &Array) -> Result<Array> {
    sum(&multiply(a, b)?, Some(&[-1]), false)
}

/// The outer product of two vectors (flattened).
pub fn outer(a: &Array, b: &Array) -> Result<Array> {
    let (a, b) = (flatten(a)?, flatten(b)?);
    multiply(&reshape_to(&a, &[a.size(), 1]), &reshape_to(&b, &[1, b.size()]))
}

// ---------------------------------------------------------------------------------------------
// Indexing

fn index_array(op: &'static str, idx: &Array) -> Result<Array> {
    match idx.dtype() {
        DType::I32 | DType::I64 | DType::U32 => Ok(idx.clone()),
        t if t.is_integer() => idx.astype(DType::I32),
        t => Err(invalid(op, format!("indices must be integers, not {t}"))),
    }
}

/// NumPy's `take_along_axis`: `out[.., j, ..] = x[.., idx[.., j, ..], ..]` along `axis`, `x`
/// and `idx` broadcast together on the other axes. Negative indices count from the end; an
/// out-of-range index is an error when evaluated.
pub fn take_along_axis(x: &Array, idx: &Array, axis: isize) -> Result<Array> {
    check_ok(&[x, idx])?;
    let idx = index_array("take_along_axis", idx)?;
    if idx.ndim() != x.ndim() {
        return Err(invalid(
            "take_along_axis",
            format!("indices {:?} need as many axes as the array {:?}", idx.shape(), x.shape()),
        ));
    }
    let a = norm_axis("take_along_axis", axis, x.ndim())?;
    let (mut xs, mut is) = (x.shape().to_vec(), idx.shape().to_vec());
    xs[a] = 1;
    is[a] = 1;
    let mut common = broadcast_shapes(&xs, &is)?;
    common[a] = x.shape()[a];
    let xb = broadcast_to(x, &common)?;
    common[a] = idx.shape()[a];
    let ib = broadcast_to(&idx, &common)?;
    Ok(make(Prim::Gather(a), vec![xb, ib], common, x.dtype()))
}

/// NumPy's `take`: the elements at `idx` along `axis` (`None`: of the flattened array); the
/// result's shape is `x.shape[..axis] + idx.shape + x.shape[axis+1..]`.
pub fn take(x: &Array, idx: &Array, axis: Option<isize>) -> Result<Array> {
    check_ok(&[x, idx])?;
    let (x, a) = match axis {
        None => (flatten(x)?, 0),
        Some(ax) => (x.clone(), norm_axis("take", ax, x.ndim())?),
    };
    let flat = flatten(&index_array("take", idx)?)?;
    let mut shape = vec![1; x.ndim()];
    shape[a] = flat.size();
    let mut target = x.shape().to_vec();
    target[a] = flat.size();
    let ib = broadcast_to(&reshape_to(&flat, &shape), &target)?;
    let g = make(Prim::Gather(a), vec![x.clone(), ib], target, x.dtype());
    let out: Vec<usize> = x.shape()[..a].iter().chain(idx.shape()).chain(&x.shape()[a + 1..]).copied().collect();
    Ok(reshape_to(&g, &out))
}

/// `base` with `updates` added at `idx` along `axis` (repeated indices accumulate; `np.add.at`
/// along an axis). `idx` and `updates` have one shape, agreeing with `base` off `axis`.
pub fn scatter_add_along_axis(base: &Array, idx: &Array, updates: &Array, axis: isize) -> Result<Array> {
    check_ok(&[base, idx, updates])?;
    let idx = index_array("scatter_add", idx)?;
    let a = norm_axis("scatter_add", axis, base.ndim())?;
    let agree = idx.ndim() == base.ndim() && (0..base.ndim()).all(|d| d == a || idx.shape()[d] == base.shape()[d]);
    if !agree || updates.shape() != idx.shape() {
        return Err(invalid(
            "scatter_add",
            format!(
                "base {:?}, indices {:?} and updates {:?}: indices and updates must match, and agree with base off axis {axis}",
                base.shape(),
                idx.shape(),
                updates.shape()
            ),
        ));
    }
    let u = updates.astype(base.dtype())?;
    Ok(make(Prim::ScatterAdd(a), vec![base.clone(), idx, u], base.shape().to_vec(), base.dtype()))
}

/// `base` with `values` written at `idx` along `axis` (NumPy's `put_along_axis`, returning a
/// new array). `idx` and `values` have one shape, agreeing with `base` off `axis`. Indices
/// are meant to be distinct within each lane (a permutation, the positions of a top-k); where
/// one repeats, its values are summed, which NumPy leaves unspecified.
pub fn put_along_axis(base: &Array, idx: &Array, values: &Array, axis: isize) -> Result<Array> {
    check_ok(&[base, idx, values])?;
    let hit_dtype = if base.dtype().is_float() { base.dtype() } else { DType::I32 };
    let zeros = crate::array::zeros(base.shape(), base.dtype())?;
    let hits = scatter_add_along_axis(
        &crate::array::zeros(base.shape(), hit_dtype)?,
        idx,
        &crate::array::ones(idx.shape(), hit_dtype)?,
        axis,
    )?;
    let written = scatter_add_along_axis(&zeros, idx, &values.astype(base.dtype())?, axis)?;
    where_(&greater(&hits, &weak_scalar(&hits, 0.0))?, &written, base)
}

/// The indexed axes moved to the front, their indices as one flat index into their product
/// (negative indices wrapped; an index out of range on its own axis becomes an out-of-range
/// flat index, so evaluation fails as `take` does rather than reading a neighbour).
struct Flat {
    /// `x` with `axes` first, in the order given.
    moved: Array,
    /// The flat index, of the indices' broadcast shape.
    index: Array,
    /// The product of the indexed axes' sizes.
    size: usize,
    perm: Vec<usize>,
}

fn flat_index(op: &'static str, x: &Array, indices: &[Array], axes: &[isize]) -> Result<Flat> {
    if indices.is_empty() || indices.len() != axes.len() {
        return Err(invalid(
            op,
            format!("{} index arrays for {} axes; give one per axis, at least one", indices.len(), axes.len()),
        ));
    }
    let axes: Vec<usize> = axes.iter().map(|&a| norm_axis(op, a, x.ndim())).collect::<Result<_>>()?;
    if (1..axes.len()).any(|i| axes[..i].contains(&axes[i])) {
        return Err(invalid(op, format!("axes {axes:?} repeat an axis")));
    }
    let mut shape = Vec::new();
    for i in indices {
        shape = broadcast_shapes(&shape, i.shape())?;
    }
    let size: usize = axes.iter().map(|&a| x.shape()[a]).product();
    let t = if size < i32::MAX as usize { DType::I32 } else { DType::I64 };
    let mut index = crate::array::zeros(&shape, t)?;
    let mut valid = crate::array::full(&shape, 1.0, DType::Bool)?;
    let mut stride = 1usize;
    for (i, &a) in indices.iter().zip(&axes).rev() {
        let dim = x.shape()[a] as f64;
        let i = index_array(op, i)?.astype(t)?;
        let zero = weak_scalar(&i, 0.0);
        let i = where_(&less(&i, &zero)?, &add(&i, &weak_scalar(&i, dim))?, &i)?;
        valid = logical_and(&valid, &logical_and(&greater_equal(&i, &zero)?, &less(&i, &weak_scalar(&i, dim))?)?)?;
        index = add(&index, &multiply(&i, &weak_scalar(&i, stride as f64))?)?;
        stride *= x.shape()[a];
    }
    let index = where_(&valid, &index, &weak_scalar(&index, size as f64))?;
    let perm: Vec<usize> = axes.iter().copied().chain((0..x.ndim()).filter(|d| !axes.contains(d))).collect();
    Ok(Flat { moved: permute(x, perm.clone()), index, size, perm })
}

/// NumPy's advanced indexing on `axes`: `out[b.., r..] = x[.., indices[0][b..] on axes[0], ..,
/// indices[k][b..] on axes[k], ..]`, the index arrays broadcast together to `b..` and the axes
/// not indexed, `r..`, following in order (NumPy's layout when the indexed axes are not
/// adjacent: `x[i, :, j]`). Negative indices count from the end; an index out of range is an
/// error when evaluated. Differentiable in `x` (the vjp is [`scatter_add`]).
///
/// ```
/// let x = strata::arange(0.0, 12.0, 1.0, strata::DType::F32)?.reshape(&[3, 4])?;
/// let (i, j) = (strata::Array::from_slice(&[0i32, 2], &[2])?, strata::Array::from_slice(&[1i32, -1], &[2])?);
/// // x[[0, 2], [1, -1]] = [x[0, 1], x[2, 3]]
/// assert_eq!(strata::gather(&x, &[i, j], &[0, 1])?.to_vec::<f32>()?, [1.0, 11.0]);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn gather(x: &Array, indices: &[Array], axes: &[isize]) -> Result<Array> {
    check_ok(&[x])?;
    check_ok(&indices.iter().collect::<Vec<_>>())?;
    let f = flat_index("gather", x, indices, axes)?;
    let rest = &f.moved.shape()[axes.len()..];
    let merged: Vec<usize> = std::iter::once(f.size).chain(rest.iter().copied()).collect();
    take(&reshape_to(&f.moved, &merged), &f.index, Some(0))
}

/// `base` with `updates` added at the positions [`gather`] with the same `indices` and `axes`
/// reads (`np.add.at(base, (.., i, .., j, ..), updates)`): repeated positions accumulate.
/// `updates` broadcasts to the shape `gather` would return.
pub fn scatter_add(base: &Array, indices: &[Array], axes: &[isize], updates: &Array) -> Result<Array> {
    check_ok(&[base, updates])?;
    check_ok(&indices.iter().collect::<Vec<_>>())?;
    scatter_flat("scatter_add", base, indices, axes, updates, false)
}

/// `base` with `updates` written at the positions [`gather`] with the same `indices` and
/// `axes` reads (NumPy's `base[.., i, .., j, ..] = updates` on a copy). Positions are meant to
/// be distinct; where one repeats, its updates are summed (NumPy keeps one, unspecified which).
pub fn scatter(base: &Array, indices: &[Array], axes: &[isize], updates: &Array) -> Result<Array> {
    check_ok(&[base, updates])?;
    check_ok(&indices.iter().collect::<Vec<_>>())?;
    scatter_flat("scatter", base, indices, axes, updates, true)
}

fn scatter_flat(
    op: &'static str,
    base: &Array,
    indices: &[Array],
    axes: &[isize],
    updates: &Array,
    put: bool,
) -> Result<Array> {
    let f = flat_index(op, base, indices, axes)?;
    let rest = f.moved.shape()[axes.len()..].to_vec();
    let n = f.index.size();
    let target: Vec<usize> = f.index.shape().iter().chain(&rest).copied().collect();
    let u = broadcast_to(&updates.astype(base.dtype())?, &target)
        .map_err(|_| invalid(op, format!("updates {:?} do not broadcast to {target:?}", updates.shape())))?;
    let lanes: Vec<usize> = std::iter::once(n).chain(rest.iter().copied()).collect();
    let mut column = vec![1; lanes.len()];
    column[0] = n;
    let idx = broadcast_to(&reshape_to(&flatten(&f.index)?, &column), &lanes)?;
    let merged: Vec<usize> = std::iter::once(f.size).chain(rest.iter().copied()).collect();
    let flat_base = reshape_to(&f.moved, &merged);
    let u = reshape_to(&u, &lanes);
    let out =
        if put { put_along_axis(&flat_base, &idx, &u, 0)? } else { scatter_add_along_axis(&flat_base, &idx, &u, 0)? };
    let mut inverse = vec![0; f.perm.len()];
    for (i, &p) in f.perm.iter().enumerate() {
        inverse[p] = i;
    }
    Ok(permute(&reshape_to(&out, f.moved.shape()), inverse))
}

/// The elements of `x` where `mask` (broadcast to `x`) is true, flattened (NumPy's `x[mask]`).
/// The result's length depends on the mask's values, so the mask is evaluated here.
///
/// ```
/// let x = strata::arange(0.0, 6.0, 1.0, strata::DType::F32)?.reshape(&[2, 3])?;
/// let m = strata::greater(&x, &strata::Array::scalar(2.5f32))?;
/// assert_eq!(strata::boolean_mask(&x, &m)?.to_vec::<f32>()?, [3.0, 4.0, 5.0]);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn boolean_mask(x: &Array, mask: &Array) -> Result<Array> {
    check_ok(&[x, mask])?;
    if mask.dtype() != DType::Bool {
        return Err(invalid("boolean_mask", format!("the mask is {}; it must be bool", mask.dtype())));
    }
    let m = broadcast_to(mask, x.shape())?.to_vec::<bool>()?;
    let at: Vec<u32> = m.iter().enumerate().filter(|(_, b)| **b).map(|(i, _)| i as u32).collect();
    let idx = Array::from_slice(&at, &[at.len()])?;
    take(&flatten(x)?, &idx, Some(0))
}

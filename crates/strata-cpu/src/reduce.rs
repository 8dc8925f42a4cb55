//! Reductions over any set of axes, and scans along one axis.
//!
//! A reduction walks the output elements (the kept axes) and, for each, the reduced block of
//! the input; the block is read in place when it is contiguous and gathered otherwise. Float
//! sums are pairwise (as NumPy's), in f32 for 16-bit floats. A reduction to a single value
//! over many elements splits the block across threads and combines the partial results.

use bytemuck::Pod;
use half::{bf16, f16};
use rayon::prelude::*;
use strata_core::kernel::{Layout, ReduceOp, ScanOp, validate_reduce_call, validate_scan};
use strata_core::{DType, Result};

use crate::elem::{Float, FloatStore, Int};
use crate::{TensorMut, TensorRef};

/// Reduces `x` over `axes` into `out`, whose shape is `x`'s with those axes removed or kept
/// with size 1. Types: [`ReduceOp::validate_types`].
pub fn reduce(op: ReduceOp, axes: &[usize], x: TensorRef<'_>, out: TensorMut<'_>) -> Result<()> {
    let axes = validate_reduce_call(op, axes, &x, &out)?;
    // View the input as [kept..., reduced...] and the output over the kept axes.
    let kept: Vec<usize> = (0..x.layout.ndim()).filter(|a| !axes.contains(a)).collect();
    let perm: Vec<usize> = kept.iter().chain(&axes).copied().collect();
    let xs = x.layout;
    let view = Layout::new(
        &perm.iter().map(|&a| xs.shape()[a]).collect::<Vec<_>>(),
        &perm.iter().map(|&a| xs.strides()[a]).collect::<Vec<_>>(),
        xs.offset(),
    )?;
    let kept_shape: Vec<usize> = kept.iter().map(|&a| xs.shape()[a]).collect();
    let out_view = if out.layout.ndim() == xs.ndim() {
        Layout::new(
            &kept_shape,
            &kept.iter().map(|&a| out.layout.strides()[a]).collect::<Vec<_>>(),
            out.layout.offset(),
        )?
    } else {
        out.layout.clone()
    };
    let plan = Plan { view, nkept: kept.len(), out_view };
    macro_rules! float {
        ($t:ty) => {
            reduce_float::<$t>(op, &plan, x, out)
        };
    }
    macro_rules! int {
        ($t:ty) => {
            reduce_int::<$t>(op, &plan, x, out)
        };
    }
    match x.dtype {
        DType::F32 => float!(f32),
        DType::F64 => float!(f64),
        DType::F16 => float!(f16),
        DType::BF16 => float!(bf16),
        DType::I8 => int!(i8),
        DType::U8 | DType::Bool => int!(u8),
        DType::I16 => int!(i16),
        DType::U16 => int!(u16),
        DType::I32 => int!(i32),
        DType::U32 => int!(u32),
        DType::I64 => int!(i64),
        DType::U64 => int!(u64),
        _ => unreachable!("rejected by validate_types"),
    }
    Ok(())
}

/// The input as `[kept..., reduced...]` and the output over the kept axes.
struct Plan {
    view: Layout,
    nkept: usize,
    out_view: Layout,
}

impl Plan {
    fn outputs(&self) -> usize {
        self.out_view.numel()
    }
    fn block_len(&self) -> usize {
        self.view.shape()[self.nkept..].iter().product()
    }
    /// Buffer positions of output `o`'s input block (in row-major order of the reduced axes)
    /// and of the output element itself.
    fn block(&self, o: usize) -> (Layout, isize) {
        let (shape, strides) = (self.view.shape(), self.view.strides());
        let mut rem = o;
        let mut base = self.view.offset() as isize;
        let mut out_pos = self.out_view.offset() as isize;
        for ax in (0..self.nkept).rev() {
            let i = rem % shape[ax];
            rem /= shape[ax];
            base += i as isize * strides[ax];
            out_pos += i as isize * self.out_view.strides()[ax];
        }
        // A sub-layout with a non-negative base: `position` of its elements is the buffer index.
        let block = Layout::new(&shape[self.nkept..], &strides[self.nkept..], base as usize).expect("same lengths");
        (block, out_pos)
    }
}

/// Calls `f` with the elements of a block, as one slice when contiguous, else gathered.
fn with_block<T: Pod, R>(data: &[T], block: &Layout, f: impl FnOnce(&[T]) -> R) -> R {
    if block.numel() == 0 {
        // An empty block may sit past the end of an empty buffer.
        f(&[])
    } else if block.is_contiguous() {
        let o = block.offset();
        f(&data[o..o + block.numel()])
    } else {
        let mut v = Vec::with_capacity(block.numel());
        crate::strided::for_each_position(block, |_, p| v.push(data[p]));
        f(&v)
    }
}

/// Pairwise sum: blocks of 128 summed with 8 independent partial sums (vectorizable), the
/// block sums combined as a tree. Error grows like log n rather than n.
fn pairwise_sum<C: Float>(x: &[C]) -> C {
    if x.len() <= 128 {
        let mut acc = [C::ZERO; 8];
        let chunks = x.chunks_exact(8);
        let rest = chunks.remainder();
        for c in chunks {
            for i in 0..8 {
                acc[i] = acc[i].add(c[i]);
            }
        }
        let mut s = ((acc[0].add(acc[1])).add(acc[2].add(acc[3]))).add((acc[4].add(acc[5])).add(acc[6].add(acc[7])));
        for &v in rest {
            s = s.add(v);
        }
        return s;
    }
    let half = (x.len() / 2).div_ceil(128) * 128;
    pairwise_sum(&x[..half]).add(pairwise_sum(&x[half..]))
}

fn nan_max<C: Float>(a: C, b: C) -> C {
    if a.is_nan() || b.is_nan() {
        C::NAN
    } else if b > a {
        b
    } else {
        a
    }
}

fn nan_min<C: Float>(a: C, b: C) -> C {
    if a.is_nan() || b.is_nan() {
        C::NAN
    } else if b < a {
        b
    } else {
        a
    }
}

/// Index of the first element preferred by `better` (the first NaN wins outright).
fn arg_float<C: Float>(x: &[C], better: impl Fn(C, C) -> bool) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v.is_nan() {
            return i;
        }
        if better(v, x[best]) {
            best = i;
        }
    }
    best
}

/// Writes an index into an integer output of any type.
fn write_index(dtype: DType, bytes: &mut [u8], pos: isize, idx: usize) {
    let p = pos as usize;
    let w = dtype.bits() as usize / 8;
    let le = (idx as u64).to_le_bytes();
    bytes[p * w..p * w + w].copy_from_slice(&le[..w]);
}

/// Writes `value` (one element of type `T`) at `pos` of the output.
fn write<T: Pod>(bytes: &mut [u8], pos: isize, value: T) {
    let w = std::mem::size_of::<T>();
    let p = pos as usize * w;
    bytes[p..p + w].copy_from_slice(bytemuck::bytes_of(&value));
}

/// Runs `f(o)` for every output element, in parallel when there are many; returns the
/// `(position, value)` pairs to write. For a single output over a long block, splits the
/// block across threads and combines with `combine`.
fn for_outputs<T: Send>(plan: &Plan, f: impl Fn(usize) -> T + Sync) -> Vec<(isize, T)> {
    let n = plan.outputs();
    let pos = |o: usize| plan.block(o).1;
    if n * plan.block_len() >= 1 << 16 && n > 1 {
        (0..n).into_par_iter().map(|o| (pos(o), f(o))).collect()
    } else {
        (0..n).map(|o| (pos(o), f(o))).collect()
    }
}

fn reduce_float<T: FloatStore>(op: ReduceOp, plan: &Plan, x: TensorRef<'_>, out: TensorMut<'_>) {
    let data = x.buffer.typed::<T>();
    let out_dtype = out.dtype;
    let bytes = out.buffer.as_bytes_mut();
    let load = |s: &[T]| -> Vec<T::C> { s.iter().map(|v| v.load()).collect() };
    match op {
        ReduceOp::Sum | ReduceOp::Prod | ReduceOp::Max | ReduceOp::Min => {
            let results = for_outputs(plan, |o| {
                let (block, _) = plan.block(o);
                with_block(data, &block, |s| {
                    let v = load(s);
                    match op {
                        ReduceOp::Sum => {
                            if v.len() >= 1 << 18 {
                                // One long sum: pairwise halves in parallel.
                                v.par_chunks(1 << 16)
                                    .map(pairwise_sum)
                                    .collect::<Vec<_>>()
                                    .iter()
                                    .fold(T::C::ZERO, |a, &b| a.add(b))
                            } else {
                                pairwise_sum(&v)
                            }
                        }
                        ReduceOp::Prod => v.iter().fold(T::C::ONE, |a, &b| a.mul(b)),
                        ReduceOp::Max => v.iter().fold(v[0], |a, &b| nan_max(a, b)),
                        _ => v.iter().fold(v[0], |a, &b| nan_min(a, b)),
                    }
                })
            });
            for (p, v) in results {
                write(bytes, p, T::store(v));
            }
        }
        ReduceOp::ArgMax | ReduceOp::ArgMin => {
            let results = for_outputs(plan, |o| {
                with_block(data, &plan.block(o).0, |s| {
                    let v = load(s);
                    if op == ReduceOp::ArgMax { arg_float(&v, |a, b| a > b) } else { arg_float(&v, |a, b| a < b) }
                })
            });
            for (p, i) in results {
                write_index(out_dtype, bytes, p, i);
            }
        }
        ReduceOp::All | ReduceOp::Any => {
            let results = for_outputs(plan, |o| {
                with_block(data, &plan.block(o).0, |s| {
                    let nonzero = |v: &T| v.load() != T::C::ZERO;
                    if op == ReduceOp::All { s.iter().all(nonzero) } else { s.iter().any(nonzero) }
                })
            });
            for (p, b) in results {
                write(bytes, p, b as u8);
            }
        }
    }
}

fn reduce_int<T: Int>(op: ReduceOp, plan: &Plan, x: TensorRef<'_>, out: TensorMut<'_>) {
    use strata_core::kernel::BinaryOp as B;
    let data = x.buffer.typed::<T>();
    let out_dtype = out.dtype;
    let bytes = out.buffer.as_bytes_mut();
    match op {
        ReduceOp::Sum | ReduceOp::Prod | ReduceOp::Max | ReduceOp::Min => {
            let results = for_outputs(plan, |o| {
                with_block(data, &plan.block(o).0, |s| match op {
                    ReduceOp::Sum => s.iter().fold(T::ZERO, |a, &b| a.binary(b, B::Add)),
                    ReduceOp::Prod => s.iter().fold(T::ONE, |a, &b| a.binary(b, B::Mul)),
                    ReduceOp::Max => s.iter().fold(T::MIN, |a, &b| a.max(b)),
                    _ => s.iter().fold(T::MAX, |a, &b| a.min(b)),
                })
            });
            for (p, v) in results {
                write(bytes, p, v);
            }
        }
        ReduceOp::ArgMax | ReduceOp::ArgMin => {
            let results = for_outputs(plan, |o| {
                with_block(data, &plan.block(o).0, |s| {
                    let mut best = 0;
                    for (i, v) in s.iter().enumerate() {
                        if (op == ReduceOp::ArgMax && *v > s[best]) || (op == ReduceOp::ArgMin && *v < s[best]) {
                            best = i;
                        }
                    }
                    best
                })
            });
            for (p, i) in results {
                write_index(out_dtype, bytes, p, i);
            }
        }
        ReduceOp::All | ReduceOp::Any => {
            let results = for_outputs(plan, |o| {
                with_block(data, &plan.block(o).0, |s| {
                    if op == ReduceOp::All { s.iter().all(|v| *v != T::ZERO) } else { s.iter().any(|v| *v != T::ZERO) }
                })
            });
            for (p, b) in results {
                write(bytes, p, b as u8);
            }
        }
    }
}

/// A scan of `x` along `axis` into `out` (same shape and type). `inclusive`: element `i`
/// combines elements `0..=i`; otherwise `0..i` (the first is the identity). `reverse` runs
/// from the end.
pub fn scan(
    op: ScanOp,
    axis: usize,
    reverse: bool,
    inclusive: bool,
    x: TensorRef<'_>,
    out: TensorMut<'_>,
) -> Result<()> {
    validate_scan(op, axis, &x, &out)?;
    if x.layout.numel() == 0 {
        return Ok(());
    }
    macro_rules! float {
        ($t:ty) => {{
            type C = <$t as FloatStore>::C;
            let (ident, f): (C, fn(C, C) -> C) = match op {
                ScanOp::Sum => (C::ZERO, |a, b| a.add(b)),
                ScanOp::Prod => (C::ONE, |a, b| a.mul(b)),
                ScanOp::Max => (<C>::NEG_INFINITY, nan_max),
                ScanOp::Min => (C::NEG_INFINITY.neg(), nan_min),
                ScanOp::LogAddExp => (C::NEG_INFINITY, |a, b| a.binary(b, strata_core::kernel::BinaryOp::LogAddExp)),
            };
            scan_lanes::<$t, C>(axis, reverse, inclusive, x, out, ident, |v: $t| v.load(), <$t>::store, f)
        }};
    }
    macro_rules! int {
        ($t:ty) => {{
            use strata_core::kernel::BinaryOp as B;
            let (ident, f): ($t, fn($t, $t) -> $t) = match op {
                ScanOp::Sum => (0, |a, b| a.binary(b, B::Add)),
                ScanOp::Prod => (1, |a, b| a.binary(b, B::Mul)),
                ScanOp::Max => (<$t>::MIN, |a, b| a.max(b)),
                ScanOp::Min => (<$t>::MAX, |a, b| a.min(b)),
                ScanOp::LogAddExp => unreachable!("float only"),
            };
            scan_lanes::<$t, $t>(axis, reverse, inclusive, x, out, ident, |v| v, |v| v, f)
        }};
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
        _ => unreachable!("rejected by output_dtype"),
    }
    Ok(())
}

/// Runs the scan on every lane (all indices but `axis`), in parallel.
#[allow(clippy::too_many_arguments)]
fn scan_lanes<T: Pod + Send + Sync, C: Copy + Send + Sync>(
    axis: usize,
    reverse: bool,
    inclusive: bool,
    x: TensorRef<'_>,
    out: TensorMut<'_>,
    ident: C,
    load: impl Fn(T) -> C + Sync,
    store: impl Fn(C) -> T + Sync,
    f: fn(C, C) -> C,
) {
    let shape = x.layout.shape().to_vec();
    let n = shape.get(axis).copied().unwrap_or(1);
    let (xs, os) =
        (x.layout.strides().get(axis).copied().unwrap_or(0), out.layout.strides().get(axis).copied().unwrap_or(0));
    // The lanes: the layout with the scanned axis removed.
    let lane = |l: &Layout| -> Layout {
        let mut s = l.shape().to_vec();
        let mut st = l.strides().to_vec();
        if axis < s.len() {
            s.remove(axis);
            st.remove(axis);
        }
        Layout::new(&s, &st, l.offset()).expect("same lengths")
    };
    let (xl, ol) = (lane(x.layout), lane(out.layout));
    let mut starts: Vec<(usize, usize)> = Vec::with_capacity(xl.numel());
    let mut xp = Vec::with_capacity(xl.numel());
    crate::strided::for_each_position(&xl, |_, p| xp.push(p));
    crate::strided::for_each_position(&ol, |i, p| starts.push((xp[i], p)));
    let data = x.buffer.typed::<T>();
    let optr = out.buffer.typed_mut::<T>().as_mut_ptr() as usize;
    let run = |&(px, po): &(usize, usize)| {
        let mut acc = ident;
        for step in 0..n {
            let i = if reverse { n - 1 - step } else { step } as isize;
            let v = load(data[(px as isize + i * xs) as usize]);
            let before = acc;
            acc = f(acc, v);
            // SAFETY: the lanes' outputs are disjoint and inside the checked buffer.
            unsafe { *(optr as *mut T).offset(po as isize + i * os) = store(if inclusive { acc } else { before }) };
        }
    };
    if starts.len() > 1 && starts.len() * n >= 1 << 16 {
        starts.par_iter().for_each(run);
    } else {
        starts.iter().for_each(run);
    }
}

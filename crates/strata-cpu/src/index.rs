//! Indexing kernels along one axis: `gather` (NumPy's `take_along_axis`) and `scatter_add`
//! (its adjoint, `np.add.at` along an axis). Every index is checked before anything is
//! written; negative indices count from the end, as in NumPy.

use bytemuck::Pod;
use strata_core::kernel::{Layout, validate_argsort, validate_gather, validate_scatter_add, wrap_index};
use strata_core::{DType, Result};

use crate::{TensorMut, TensorRef};

/// The indices as `usize`, wrapped and bounds-checked against `size`.
fn indices(op: &'static str, idx: &TensorRef<'_>, size: usize) -> Result<Vec<usize>> {
    let raw: Vec<i64> = match idx.dtype {
        DType::I32 => crate::strided::gather(idx.buffer.typed::<i32>(), idx.layout, i64::from),
        DType::I64 => crate::strided::gather(idx.buffer.typed::<i64>(), idx.layout, |v| v),
        _ => crate::strided::gather(idx.buffer.typed::<u32>(), idx.layout, i64::from),
    };
    raw.iter().map(|&i| wrap_index(op, i, size)).collect()
}

/// Calls `f(i, index)` for every row-major element `i` of `shape` with its multi-index.
fn for_each_index(shape: &[usize], mut f: impl FnMut(usize, &[usize])) {
    let n: usize = shape.iter().product();
    let mut index = vec![0usize; shape.len()];
    for i in 0..n {
        f(i, &index);
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
}

/// The buffer position of element `index` of `l` with its coordinate on `axis` replaced by `at`.
fn position_at(l: &Layout, index: &[usize], axis: usize, at: usize) -> usize {
    (l.position(index) + (at as isize - index[axis] as isize) * l.strides()[axis]) as usize
}

/// `out[..., j, ...] = x[..., idx[..., j, ...], ...]` along `axis`: `idx` and `out` have one
/// shape, which agrees with `x`'s except on `axis`.
pub fn gather(axis: usize, x: TensorRef<'_>, idx: TensorRef<'_>, out: TensorMut<'_>) -> Result<()> {
    const OP: &str = "take_along_axis";
    validate_gather(axis, &x, &idx, &out)?;
    let ix = indices(OP, &idx, x.layout.shape()[axis])?;
    fn run<T: Pod>(axis: usize, x: &TensorRef<'_>, ix: &[usize], out: TensorMut<'_>) {
        let xd = x.buffer.typed::<T>();
        let ol = out.layout.clone();
        let od = out.buffer.typed_mut::<T>();
        for_each_index(ol.shape(), |i, index| {
            od[ol.position(index) as usize] = xd[position_at(x.layout, index, axis, ix[i])];
        });
    }
    match x.dtype.bits() {
        8 => run::<u8>(axis, &x, &ix, out),
        16 => run::<u16>(axis, &x, &ix, out),
        32 => run::<u32>(axis, &x, &ix, out),
        _ => run::<u64>(axis, &x, &ix, out),
    }
    Ok(())
}

/// Keys whose unsigned order is the elements' order: floats by value with every NaN last and
/// `-0.0 == 0.0` (so a stable sort keeps their order, as NumPy's does), integers by value.
fn sort_keys(x: &TensorRef<'_>) -> Vec<u64> {
    use crate::strided::gather as g;
    use half::{bf16, f16};
    const SIGN: u64 = 1 << 63;
    let float = |v: f64| {
        if v.is_nan() {
            u64::MAX
        } else {
            let b = (v + 0.0).to_bits(); // -0.0 + 0.0 is +0.0
            if b & SIGN != 0 { !b } else { b | SIGN }
        }
    };
    let int = |v: i64| (v as u64) ^ SIGN;
    let (d, l) = (x.buffer, x.layout);
    match x.dtype {
        DType::F64 => g(d.typed::<f64>(), l, float),
        DType::F32 => g(d.typed::<f32>(), l, |v| float(f64::from(v))),
        DType::F16 => g(d.typed::<f16>(), l, |v| float(v.to_f64())),
        DType::BF16 => g(d.typed::<bf16>(), l, |v| float(v.to_f64())),
        DType::I8 => g(d.typed::<i8>(), l, |v| int(i64::from(v))),
        DType::I16 => g(d.typed::<i16>(), l, |v| int(i64::from(v))),
        DType::I32 => g(d.typed::<i32>(), l, |v| int(i64::from(v))),
        DType::I64 => g(d.typed::<i64>(), l, int),
        DType::U16 => g(d.typed::<u16>(), l, u64::from),
        DType::U32 => g(d.typed::<u32>(), l, u64::from),
        DType::U64 => g(d.typed::<u64>(), l, |v| v),
        // bool, uint8 and the 8-bit float formats are ordered by their bytes only where the
        // format is unsigned; the signed 8-bit floats go through f32.
        t if t.is_float() => g(d.typed::<u8>(), l, |v| float(f64::from(t.decode_f32(u64::from(v))))),
        _ => g(d.typed::<u8>(), l, u64::from),
    }
}

/// The indices that sort each lane along `axis` ascending, stably, NaNs last (NumPy's
/// `argsort(kind="stable")`), as uint32.
pub fn argsort(axis: usize, x: TensorRef<'_>, out: TensorMut<'_>) -> Result<()> {
    validate_argsort(axis, &x, &out)?;
    let shape = x.layout.shape().to_vec();
    let keys = sort_keys(&x);
    let len = shape.get(axis).copied().unwrap_or(1);
    let inner: usize = shape.iter().skip(axis + 1).product();
    let mut idx = vec![0u32; keys.len()];
    let mut lane: Vec<u32> = Vec::with_capacity(len);
    for start in (0..keys.len()).step_by((len * inner).max(1)) {
        for i in 0..inner {
            let at = |j: u32| start + i + j as usize * inner;
            lane.clear();
            lane.extend(0..len as u32);
            lane.sort_by_key(|&j| keys[at(j)]);
            for (j, &v) in lane.iter().enumerate() {
                idx[at(j as u32)] = v;
            }
        }
    }
    crate::strided::scatter(&idx, out.buffer.typed_mut::<u32>(), out.layout, |v| v);
    Ok(())
}

/// `out[..., idx[..., j, ...], ...] += updates[..., j, ...]` along `axis` (repeated indices
/// accumulate): `idx` and `updates` have one shape, which agrees with `out`'s except on `axis`.
pub fn scatter_add(axis: usize, idx: TensorRef<'_>, updates: TensorRef<'_>, out: TensorMut<'_>) -> Result<()> {
    const OP: &str = "scatter_add";
    validate_scatter_add(axis, &idx, &updates, &out)?;
    let ix = indices(OP, &idx, out.layout.shape()[axis])?;
    // Integers wrap, as every backend's atomics do (and as they would in a release build).
    fn run<T: Pod>(axis: usize, ix: &[usize], u: &TensorRef<'_>, out: TensorMut<'_>, add: fn(T, T) -> T) {
        let ud = u.buffer.typed::<T>();
        let ol = out.layout.clone();
        let od = out.buffer.typed_mut::<T>();
        for_each_index(u.layout.shape(), |i, index| {
            let p = position_at(&ol, index, axis, ix[i]);
            od[p] = add(od[p], ud[u.layout.position(index) as usize]);
        });
    }
    match out.dtype {
        DType::F32 => run::<f32>(axis, &ix, &updates, out, |a, b| a + b),
        DType::F64 => run::<f64>(axis, &ix, &updates, out, |a, b| a + b),
        DType::I32 => run::<i32>(axis, &ix, &updates, out, i32::wrapping_add),
        _ => run::<i64>(axis, &ix, &updates, out, i64::wrapping_add),
    }
    Ok(())
}

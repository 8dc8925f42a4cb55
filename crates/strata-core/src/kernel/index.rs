//! Operand checks for the kernels that are neither element-wise nor products: reductions,
//! scans, indexing along an axis and random bits. Every backend calls these, so a bad call
//! reads the same whichever device it was made on.

use crate::kernel::{Layout, ReduceOp, ScanOp, Storage, TensorMut, TensorRef, validate_reduce};
use crate::{DType, Error, Result};

fn invalid(op: &'static str, message: String) -> Error {
    Error::InvalidArgument { op, message }
}

fn non_overlapping(op: &'static str, out: &Layout) -> Result<()> {
    if out.is_non_overlapping() { Ok(()) } else { Err(invalid(op, "the output has elements that share memory".into())) }
}

/// Checks a reduction (types, axes, shapes, buffers); returns the axes sorted.
pub fn validate_reduce_call<B: Storage>(
    op: ReduceOp,
    axes: &[usize],
    x: &TensorRef<'_, B>,
    out: &TensorMut<'_, B>,
) -> Result<Vec<usize>> {
    op.validate_types(x.dtype, out.dtype)?;
    let axes = validate_reduce(op, x.layout, axes, out.layout)?;
    non_overlapping(op.name(), out.layout)?;
    x.check(op.name(), "the input")?;
    out.check(op.name(), "the output")?;
    Ok(axes)
}

/// Checks a scan: the output has the input's shape and the op's type, `axis` is in range.
pub fn validate_scan<B: Storage>(op: ScanOp, axis: usize, x: &TensorRef<'_, B>, out: &TensorMut<'_, B>) -> Result<()> {
    let want = op.output_dtype(x.dtype)?;
    if out.dtype != want || out.layout.shape() != x.layout.shape() || axis >= x.layout.ndim().max(1) {
        return Err(invalid(
            op.name(),
            format!(
                "scanning {:?} ({}) along axis {axis} needs an output of the same shape and type; got {:?} ({})",
                x.layout.shape(),
                x.dtype,
                out.layout.shape(),
                out.dtype
            ),
        ));
    }
    non_overlapping(op.name(), out.layout)?;
    x.check(op.name(), "the input")?;
    out.check(op.name(), "the output")
}

/// The index types [`gather`](crate::kernel::Backend::gather) and
/// [`scatter_add`](crate::kernel::Backend::scatter_add) take.
pub const INDEX_TYPES: [DType; 3] = [DType::I32, DType::I64, DType::U32];

/// The element types `scatter_add` accumulates.
pub const SCATTER_TYPES: [DType; 4] = [DType::F32, DType::F64, DType::I32, DType::I64];

/// `index` wrapped NumPy-style (negative counts from the end) and checked against `size`.
pub fn wrap_index(op: &'static str, index: i64, size: usize) -> Result<usize> {
    let j = if index < 0 { index + size as i64 } else { index };
    if j < 0 || j >= size as i64 {
        Err(invalid(op, format!("index {index} is out of range for an axis of size {size}")))
    } else {
        Ok(j as usize)
    }
}

fn check_index_type(op: &'static str, t: DType) -> Result<()> {
    if INDEX_TYPES.contains(&t) {
        Ok(())
    } else {
        Err(Error::UnsupportedDType { op, dtype: t, expected: "int32, int64 or uint32 indices" })
    }
}

/// Checks that `a` and `b` agree on every axis but `axis`.
fn check_shapes(op: &'static str, axis: usize, a: &Layout, b: &Layout, what: (&str, &str)) -> Result<()> {
    let ok =
        a.ndim() == b.ndim() && axis < a.ndim() && (0..a.ndim()).all(|d| d == axis || a.shape()[d] == b.shape()[d]);
    if !ok {
        return Err(invalid(
            op,
            format!("{} {:?} and {} {:?} must agree on every axis but {axis}", what.0, a.shape(), what.1, b.shape()),
        ));
    }
    Ok(())
}

/// Checks a `take_along_axis`: `indices` and `out` share one shape, which agrees with `x`'s
/// except on `axis`. (The index values are checked by the backend, before it writes.)
pub fn validate_gather<B: Storage>(
    axis: usize,
    x: &TensorRef<'_, B>,
    indices: &TensorRef<'_, B>,
    out: &TensorMut<'_, B>,
) -> Result<()> {
    const OP: &str = "take_along_axis";
    check_shapes(OP, axis, x.layout, indices.layout, ("the array", "the indices"))?;
    if out.layout.shape() != indices.layout.shape() || out.dtype != x.dtype {
        return Err(invalid(OP, format!("the output must be {} {:?}", x.dtype, indices.layout.shape())));
    }
    if x.dtype.is_packed() {
        return Err(Error::UnsupportedDType { op: OP, dtype: x.dtype, expected: "a type of 8 bits or more" });
    }
    check_index_type(OP, indices.dtype)?;
    non_overlapping(OP, out.layout)?;
    x.check(OP, "the array")?;
    indices.check(OP, "the indices")?;
    out.check(OP, "the output")
}

/// Checks an `argsort`: `out` is uint32 of `x`'s shape, `axis` one of its axes, and `x` of a
/// type with an order (not packed, not complex).
pub fn validate_argsort<B: Storage>(axis: usize, x: &TensorRef<'_, B>, out: &TensorMut<'_, B>) -> Result<()> {
    const OP: &str = "argsort";
    if axis >= x.layout.ndim().max(1) {
        return Err(invalid(OP, format!("axis {axis} is out of range for shape {:?}", x.layout.shape())));
    }
    if out.layout.shape() != x.layout.shape() || out.dtype != DType::U32 {
        return Err(invalid(OP, format!("the output must be uint32 {:?}", x.layout.shape())));
    }
    if x.dtype.is_packed() || x.dtype == DType::C64 {
        return Err(Error::UnsupportedDType { op: OP, dtype: x.dtype, expected: "a real type of 8 bits or more" });
    }
    non_overlapping(OP, out.layout)?;
    x.check(OP, "the array")?;
    out.check(OP, "the output")
}

/// Checks a `scatter_add`: `indices` and `updates` share one shape, which agrees with `out`'s
/// except on `axis`; the type is one of [`SCATTER_TYPES`].
pub fn validate_scatter_add<B: Storage>(
    axis: usize,
    indices: &TensorRef<'_, B>,
    updates: &TensorRef<'_, B>,
    out: &TensorMut<'_, B>,
) -> Result<()> {
    const OP: &str = "scatter_add";
    check_shapes(OP, axis, out.layout, indices.layout, ("the output", "the indices"))?;
    if updates.layout.shape() != indices.layout.shape() || updates.dtype != out.dtype {
        return Err(invalid(OP, format!("the updates must be {} {:?}", out.dtype, indices.layout.shape())));
    }
    if !SCATTER_TYPES.contains(&out.dtype) {
        return Err(Error::UnsupportedDType { op: OP, dtype: out.dtype, expected: "float32, float64, int32 or int64" });
    }
    check_index_type(OP, indices.dtype)?;
    non_overlapping(OP, out.layout)?;
    indices.check(OP, "the indices")?;
    updates.check(OP, "the updates")?;
    out.check(OP, "the output")
}

/// Checks `random_bits`: keys uint32 `[K, 2]`, the output uint32 `[K, N]` and contiguous.
pub fn validate_random_bits<B: Storage>(keys: &TensorRef<'_, B>, out: &TensorMut<'_, B>) -> Result<()> {
    const OP: &str = "random_bits";
    let (ks, os) = (keys.layout.shape(), out.layout.shape());
    if keys.dtype != DType::U32
        || out.dtype != DType::U32
        || ks.len() != 2
        || ks[1] != 2
        || os.len() != 2
        || os[0] != ks[0]
    {
        return Err(invalid(
            OP,
            format!(
                "keys must be uint32 [K, 2] and the output uint32 [K, N]; got {} {ks:?} and {} {os:?}",
                keys.dtype, out.dtype
            ),
        ));
    }
    if !out.layout.is_contiguous() {
        return Err(invalid(OP, "the output must be contiguous".into()));
    }
    keys.check(OP, "the keys")?;
    out.check(OP, "the output")
}

//! Sorting: `sort`, `argsort`, `topk`, `partition`, `argpartition`.
//!
//! One primitive, `ArgSort` (a stable sort with NaNs last, as NumPy's `kind="stable"`); the
//! values are a `take_along_axis` of the input by those indices, so their derivatives are
//! `Gather`'s and no sort needs a rule of its own.

use strata_core::{DType, Result};

use crate::graph::Array;
use crate::ops::{check_ok, flatten, invalid, make, norm_axis, slice_axis, take_along_axis};
use crate::prim::Prim;

/// `x` and the axis to work on (`None`: the flattened array, as NumPy's `axis=None`).
fn lanes(op: &'static str, x: &Array, axis: Option<isize>) -> Result<(Array, usize)> {
    check_ok(&[x])?;
    match axis {
        None => Ok((flatten(x)?, 0)),
        Some(a) => {
            let a = norm_axis(op, a, x.ndim().max(1))?;
            Ok((if x.ndim() == 0 { flatten(x)? } else { x.clone() }, a))
        }
    }
}

fn argsort_on(op: &'static str, x: &Array, axis: usize) -> Result<Array> {
    if x.dtype().is_packed() || x.dtype() == DType::C64 {
        return Err(strata_core::Error::UnsupportedDType {
            op,
            dtype: x.dtype(),
            expected: "a real type of 8 bits or more",
        });
    }
    if x.shape()[axis] > u32::MAX as usize {
        return Err(invalid(op, format!("axis {axis} has {} elements; indices are uint32", x.shape()[axis])));
    }
    Ok(make(Prim::ArgSort(axis), vec![x.clone()], x.shape().to_vec(), DType::U32))
}

/// The indices (uint32) that sort `x` along `axis` (`None`: flattened), ascending and stable,
/// NaNs last.
///
/// ```
/// let x = strata::Array::from_slice(&[3.0f32, f32::NAN, 1.0, 3.0, -0.5], &[5])?;
/// assert_eq!(strata::argsort(&x, Some(-1))?.to_vec::<u32>()?, [4, 2, 0, 3, 1]);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn argsort(x: &Array, axis: Option<isize>) -> Result<Array> {
    let (x, a) = lanes("argsort", x, axis)?;
    argsort_on("argsort", &x, a)
}

/// `x` sorted along `axis` (`None`: flattened), ascending, NaNs last. Differentiable (the
/// cotangent goes back to where each element came from).
///
/// ```
/// let x = strata::Array::from_slice(&[3i32, -1, 2, 0], &[2, 2])?;
/// assert_eq!(strata::sort(&x, Some(1))?.to_vec::<i32>()?, [-1, 3, 0, 2]);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn sort(x: &Array, axis: Option<isize>) -> Result<Array> {
    let (x, a) = lanes("sort", x, axis)?;
    take_along_axis(&x, &argsort_on("sort", &x, a)?, a as isize)
}

fn check_k(op: &'static str, k: usize, x: &Array, axis: usize) -> Result<()> {
    if k > x.shape()[axis] {
        return Err(invalid(op, format!("k = {k} but axis {axis} of shape {:?} has {}", x.shape(), x.shape()[axis])));
    }
    Ok(())
}

/// The `k` largest elements along `axis` (`None`: flattened), in ascending order (MLX
/// returns them in an unspecified order; these are its values, sorted).
///
/// ```
/// let x = strata::Array::from_slice(&[5.0f32, 1.0, 4.0, 2.0], &[4])?;
/// assert_eq!(strata::topk(&x, 2, Some(0))?.to_vec::<f32>()?, [4.0, 5.0]);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn topk(x: &Array, k: usize, axis: Option<isize>) -> Result<Array> {
    let (x, a) = lanes("topk", x, axis)?;
    check_k("topk", k, &x, a)?;
    let n = x.shape()[a] as isize;
    let s = take_along_axis(&x, &argsort_on("topk", &x, a)?, a as isize)?;
    slice_axis(&s, a as isize, n - k as isize, n)
}

/// The indices that partition `x` along `axis` around its `kth` element: the element at
/// `kth` is the one a sort would put there, those before it are not larger and those after
/// not smaller (here they are fully sorted, which is one such arrangement).
pub fn argpartition(x: &Array, kth: usize, axis: Option<isize>) -> Result<Array> {
    let (x, a) = lanes("argpartition", x, axis)?;
    if kth >= x.shape()[a] {
        return Err(invalid("argpartition", format!("kth = {kth} is out of range for axis {a} of {:?}", x.shape())));
    }
    argsort_on("argpartition", &x, a)
}

/// `x` partitioned along `axis` around its `kth` element (see [`argpartition`]).
pub fn partition(x: &Array, kth: usize, axis: Option<isize>) -> Result<Array> {
    let (xs, a) = lanes("partition", x, axis)?;
    let idx = argpartition(x, kth, axis)?;
    take_along_axis(&xs, &idx, a as isize)
}

//! `fast`: the fused building blocks of transformer models, as MLX's `mx.fast`:
//! [`rms_norm`], [`layer_norm`], [`rope`] and [`scaled_dot_product_attention`].
//!
//! Attention is one primitive (`Attention`) that runs the kernel layer's flash-attention
//! kernel; its derivatives are those of the plain composition `softmax(q·kᵀ·scale + mask)·v`
//! ([`attention_reference`]), recomputed in the backward pass as FlashAttention does. The
//! norms and rope are compositions of element-wise ops and reductions, computed in float32 for
//! 16-bit inputs (as MLX does) and returned in the input's type.

use strata_core::kernel::{Attention, AttentionMask};
use strata_core::{DType, Result};

use crate::graph::Array;
use crate::ops::*;
use crate::prim::Prim;

fn wide(x: &Array) -> Result<Array> {
    match x.dtype() {
        DType::F16 | DType::BF16 => x.astype(DType::F32),
        t if t.is_float() => Ok(x.clone()),
        t => Err(strata_core::Error::UnsupportedDType { op: "fast", dtype: t, expected: "a floating-point type" }),
    }
}

fn scalar(like: &Array, v: f64) -> Array {
    weak_scalar(like, v)
}

/// `x / √(mean(x², last axis) + eps) · weight` (weight `[D]`, optional).
///
/// ```
/// let x = strata::Array::from_slice(&[3.0f32, 4.0], &[1, 2])?;
/// let y = strata::fast::rms_norm(&x, None, 0.0)?; // rms = √12.5
/// assert!((y.to_vec::<f32>()?[1] - 4.0 / 12.5f32.sqrt()).abs() < 1e-6);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn rms_norm(x: &Array, weight: Option<&Array>, eps: f32) -> Result<Array> {
    check_ok(&[x])?;
    let xf = wide(x)?;
    let ms = mean(&square(&xf)?, Some(&[-1]), true)?;
    let mut y = multiply(&xf, &rsqrt(&add(&ms, &scalar(&ms, f64::from(eps)))?)?)?;
    if let Some(w) = weight {
        y = multiply(&y, &wide(w)?)?;
    }
    y.astype(x.dtype())
}

/// `(x − mean) / √(var + eps) · weight + bias` over the last axis (weight and bias `[D]`,
/// optional).
pub fn layer_norm(x: &Array, weight: Option<&Array>, bias: Option<&Array>, eps: f32) -> Result<Array> {
    check_ok(&[x])?;
    let xf = wide(x)?;
    let mu = mean(&xf, Some(&[-1]), true)?;
    let d = subtract(&xf, &mu)?;
    let v = mean(&square(&d)?, Some(&[-1]), true)?;
    let mut y = multiply(&d, &rsqrt(&add(&v, &scalar(&v, f64::from(eps)))?)?)?;
    if let Some(w) = weight {
        y = multiply(&y, &wide(w)?)?;
    }
    if let Some(b) = bias {
        y = add(&y, &wide(b)?)?;
    }
    y.astype(x.dtype())
}

/// Rotary position embedding (MLX's `mx.fast.rope`) of `x [..., L, D]`: the first `dims`
/// features of position `p = offset + i` are rotated in pairs by the angles `p · scale ·
/// base^(−2j/dims)`; pairs are `(2j, 2j+1)` if `traditional`, else `(j, j + dims/2)`. The
/// other `D − dims` features pass through.
pub fn rope(x: &Array, dims: usize, traditional: bool, base: f32, scale: f32, offset: usize) -> Result<Array> {
    check_ok(&[x])?;
    if x.ndim() < 2 || dims == 0 || !dims.is_multiple_of(2) || dims > x.shape()[x.ndim() - 1] {
        return Err(invalid(
            "rope",
            format!("x {:?} needs [..., L, D] and an even dims in 2..=D; dims is {dims}", x.shape()),
        ));
    }
    let xf = wide(x)?;
    let (l, half) = (x.shape()[x.ndim() - 2], dims / 2);
    let pos = crate::array::arange(offset as f64, (offset + l) as f64, 1.0, DType::F32)?.reshape(&[-1, 1])?;
    let j = crate::array::arange(0.0, half as f64, 1.0, DType::F32)?;
    let inv = exp(&multiply(&j, &scalar(&j, -2.0 * f64::from(base).ln() / dims as f64))?)?;
    let theta = multiply(&multiply(&pos, &scalar(&pos, f64::from(scale)))?, &reshape_to(&inv, &[1, half]))?; // [L, half]
    let (c, s) = (cos(&theta)?.astype(xf.dtype())?, sin(&theta)?.astype(xf.dtype())?);
    let last = xf.ndim() as isize - 1;
    let rot = slice_axis(&xf, last, 0, dims as isize)?;
    let (a, b) = if traditional {
        let pairs = [&x.shape()[..x.ndim() - 1], &[half, 2]].concat();
        let p = contiguous(&rot)?.reshape(&pairs.iter().map(|&d| d as isize).collect::<Vec<_>>())?;
        let ax = p.ndim() as isize - 1;
        (squeeze(&slice_axis(&p, ax, 0, 1)?, Some(&[ax]))?, squeeze(&slice_axis(&p, ax, 1, 2)?, Some(&[ax]))?)
    } else {
        (slice_axis(&rot, last, 0, half as isize)?, slice_axis(&rot, last, half as isize, dims as isize)?)
    };
    let ra = subtract(&multiply(&a, &c)?, &multiply(&b, &s)?)?;
    let rb = add(&multiply(&a, &s)?, &multiply(&b, &c)?)?;
    let rotated = if traditional {
        let st = stack(&[&ra, &rb], -1)?;
        let shape = [&x.shape()[..x.ndim() - 1], &[dims]].concat();
        reshape_to(&contiguous(&st)?, &shape)
    } else {
        concatenate(&[&ra, &rb], last)?
    };
    let out = if dims < x.shape()[x.ndim() - 1] {
        concatenate(&[&rotated, &slice_axis(&xf, last, dims as isize, x.shape()[x.ndim() - 1] as isize)?], last)?
    } else {
        rotated
    };
    out.astype(x.dtype())
}

/// The mask of [`scaled_dot_product_attention`].
#[derive(Clone, Copy)]
pub enum Mask<'a> {
    /// Every key for every query.
    None,
    /// Query `i` sees key `j ≤ i + (Lk − Lq)` (aligned bottom right, as MLX).
    Causal,
    /// Broadcast to `[B, Hq, Lq, Lk]`: added to the scores if float, `false` removes if bool.
    Array(&'a Array),
}

/// `softmax(q·kᵀ·scale + mask)·v` with `q [B, Hq, Lq, D]`, `k [B, Hkv, Lk, D]`, `v [B, Hkv,
/// Lk, Dv]` and `Hq` a multiple of `Hkv` (grouped and multi-query attention), as MLX's
/// `mx.fast.scaled_dot_product_attention`. Runs the flash-attention kernel; differentiable.
///
/// ```
/// use strata::fast::{Mask, scaled_dot_product_attention};
/// let q = strata::ones(&[1, 2, 3, 4], strata::DType::F32)?;
/// let k = strata::ones(&[1, 1, 3, 4], strata::DType::F32)?; // one head shared by both
/// let v = strata::arange(0.0, 12.0, 1.0, strata::DType::F32)?.reshape(&[1, 1, 3, 4])?;
/// // Equal scores: each query averages the values it sees; the first sees only the first.
/// let o = scaled_dot_product_attention(&q, &k, &v, 0.5, Mask::Causal)?;
/// assert_eq!(o.to_vec::<f32>()?[..4], [0.0, 1.0, 2.0, 3.0]);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn scaled_dot_product_attention(q: &Array, k: &Array, v: &Array, scale: f32, mask: Mask<'_>) -> Result<Array> {
    check_ok(&[q, k, v])?;
    let t = result_type(result_type(q.dtype(), k.dtype()), v.dtype());
    let (q, k, v) = (q.astype(t)?, k.astype(t)?, v.astype(t)?);
    let kind = match mask {
        Mask::None => AttentionMask::None,
        Mask::Causal => AttentionMask::Causal,
        Mask::Array(_) => AttentionMask::Explicit,
    };
    let desc = Attention::new(scale).mask(kind);
    let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
    let mut inputs = vec![q.clone(), k.clone(), v.clone()];
    if let Mask::Array(m) = mask {
        check_ok(&[m])?;
        if qs.len() != 4 || ks.len() != 4 {
            return Err(invalid("scaled_dot_product_attention", format!("q {qs:?} and k {ks:?} must be 4-D")));
        }
        let m = if m.dtype() == DType::Bool { m.clone() } else { m.astype(t)? };
        inputs.push(broadcast_to(&m, &[qs[0], qs[1], qs[2], ks[2]])?);
    }
    let layouts: Vec<_> = inputs.iter().map(|a| strata_core::kernel::Layout::contiguous(a.shape())).collect();
    let out_shape = if qs.len() == 4 && vs.len() == 4 { vec![qs[0], qs[1], qs[2], vs[3]] } else { qs.to_vec() };
    desc.validate_shapes(
        &layouts[0],
        &layouts[1],
        &layouts[2],
        &strata_core::kernel::Layout::contiguous(&out_shape),
        layouts.get(3),
    )?;
    desc.validate_types(t, t, t, t, inputs.get(3).map(|m| m.dtype()))?;
    Ok(make(Prim::Attention(desc), inputs, out_shape, t))
}

/// Attention as plain ops (`repeat` for the shared heads, `matmul`, `softmax`), in float32 for
/// 16-bit inputs: the attention primitive's derivatives are this composition's. A query whose
/// every key is masked gets zeros, as from the kernel.
pub(crate) fn attention_reference(desc: &Attention, x: &[Array]) -> Result<Array> {
    let (q, k, v) = (wide(&x[0])?, wide(&x[1])?, wide(&x[2])?);
    let group = q.shape()[1] / k.shape()[1];
    let (k, v) = if group > 1 { (repeat(&k, group, 1)?, repeat(&v, group, 1)?) } else { (k, v) };
    let s = multiply(&matmul(&q, &swapaxes(&k, -1, -2)?)?, &scalar(&q, f64::from(desc.scale)))?;
    let (lq, lk) = (q.shape()[2], k.shape()[2]);
    let keep = match desc.mask {
        AttentionMask::None => None,
        AttentionMask::Causal => {
            let i = crate::array::arange(0.0, lq as f64, 1.0, DType::I32)?.reshape(&[-1, 1])?;
            let j = crate::array::arange(0.0, lk as f64, 1.0, DType::I32)?.reshape(&[1, -1])?;
            Some(less_equal(&j, &add(&i, &scalar(&i, lk as f64 - lq as f64))?)?)
        }
        AttentionMask::Explicit if x[3].dtype() == DType::Bool => Some(x[3].clone()),
        AttentionMask::Explicit => None,
    };
    let s =
        if desc.mask == AttentionMask::Explicit && x[3].dtype() != DType::Bool { add(&s, &wide(&x[3])?)? } else { s };
    let out = match keep {
        None => matmul(&softmax(&s, Some(&[-1]))?, &v)?,
        Some(keep) => {
            // Masked scores get a large finite negative (not −∞, whose fully masked rows would
            // make NaNs in the softmax and its derivative); such rows are then zeroed.
            let s = where_(&keep, &s, &scalar(&s, -1e30))?;
            let any_kept = any(&broadcast_to(&keep, s.shape())?, Some(&[-1]), true)?.astype(s.dtype())?;
            multiply(&matmul(&softmax(&s, Some(&[-1]))?, &v)?, &any_kept)?
        }
    };
    out.astype(x[0].dtype())
}

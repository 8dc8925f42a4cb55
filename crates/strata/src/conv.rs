//! Convolutions of arrays: `conv1d`/`conv2d`/`conv3d`, their transposes, and `conv_general`.
//!
//! Layouts are MLX's: the input is channels-last (`[batch, *spatial, channels]`, NHWC in 2-D)
//! and the weight is `[c_out, *kernel, c_in / groups]` (OHWI), for the transposed convolutions
//! too. The primitive underneath is the kernel layer's [`Conv`], whose weight is HWIO; the
//! layout change is a view (a copy only for grouped transposes). Derivatives: the input's is
//! the transposed convolution (and the other way round); the weight's is a sum over kernel taps
//! of strided slices times the cotangent, so it is itself made of differentiable ops and
//! `grad` of `grad` works.

use strata_core::kernel::Conv;
use strata_core::{DType, Result};

use crate::graph::Array;
use crate::ops::{check_ok, invalid, make, matmul, pad, permute, reshape_to, result_type, slice, stack};
use crate::prim::Prim;

/// `conv` applied through the kernel-layer descriptor `desc`, with an MLX-layout weight.
///
/// `desc.spatial` says how many spatial axes there are; strides, dilations, padding (low and
/// high per axis), groups, `transposed` and `output_padding` are the descriptor's.
///
/// ```
/// use strata::{Array, Conv, conv_general};
/// // A 3-tap moving sum over 5 positions, one channel, padding 1 on both sides.
/// let x = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0], &[1, 5, 1])?;
/// let w = Array::from_slice(&[1.0f32, 1.0, 1.0], &[1, 3, 1])?;
/// let mut desc = Conv::new(1);
/// desc.padding[0] = (1, 1);
/// assert_eq!(conv_general(&x, &w, &desc)?.to_vec::<f32>()?, [3.0, 6.0, 9.0, 12.0, 9.0]);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn conv_general(x: &Array, w: &Array, desc: &Conv) -> Result<Array> {
    check_ok(&[x, w])?;
    let s = desc.spatial;
    if w.ndim() != s + 2 {
        return Err(invalid(
            "conv",
            format!("a {s}-D convolution needs a weight [c_out, {s} kernel axes, c_in / groups]; got {:?}", w.shape()),
        ));
    }
    let t = result_type(x.dtype(), w.dtype());
    if !matches!(t, DType::F32 | DType::F64 | DType::F16 | DType::BF16) {
        return Err(invalid(
            "conv",
            format!(
                "input {} and weight {}: convolutions take float32, float64, float16 or bfloat16",
                x.dtype(),
                w.dtype()
            ),
        ));
    }
    let (x, w) = (x.astype(t)?, w.astype(t)?);
    let wk = if desc.transposed { transposed_weight(&w, desc.groups)? } else { forward_weight(&w) };
    conv_node(&x, &wk, desc)
}

/// `[o, *k, i]` (MLX) → `[*k, i, o]` (HWIO), a view.
fn forward_weight(w: &Array) -> Array {
    let s = w.ndim() - 2;
    permute(w, (1..=s).chain([s + 1, 0]).collect())
}

/// A transposed convolution's `[c_out, *k, c_in / groups]` (MLX) → the kernel layer's
/// `[*k, c_out / groups, c_in]`: per group the same matrix, with the groups moved from the
/// first axis to the last.
fn transposed_weight(w: &Array, groups: usize) -> Result<Array> {
    let s = w.ndim() - 2;
    let (c_out, cig) = (w.shape()[0], w.shape()[s + 1]);
    if groups == 0 || !c_out.is_multiple_of(groups) {
        return Err(invalid("conv_transpose", format!("{c_out} output channels do not split into {groups} groups")));
    }
    let cog = c_out / groups;
    let k = &w.shape()[1..=s];
    let split: Vec<usize> = [&[groups, cog][..], k, &[cig]].concat();
    let g = reshape_to(w, &split); // [g, cog, *k, cig]
    let p = permute(&g, (2..2 + s).chain([1, 0, 2 + s]).collect()); // [*k, cog, g, cig]
    crate::ops::contiguous(&p).map(|c| reshape_to(&c, &[k, &[cog, groups * cig]].concat()))
}

/// The `Conv` node on a kernel-layout (HWIO) weight.
pub(crate) fn conv_node(x: &Array, wk: &Array, desc: &Conv) -> Result<Array> {
    let shape = desc.output_shape(x.shape(), wk.shape())?;
    Ok(make(Prim::Conv(*desc), vec![x.clone(), wk.clone()], shape, x.dtype()))
}

pub(crate) fn desc_of(spatial: usize, stride: &[usize], padding: &[usize], dilation: &[usize], groups: usize) -> Conv {
    let mut d = Conv::new(spatial).groups(groups).dilation(dilation);
    d.stride[..spatial].copy_from_slice(stride);
    for (p, &v) in d.padding.iter_mut().zip(padding) {
        *p = (v, v);
    }
    d
}

/// A 1-D convolution: input `[batch, length, c_in]`, weight `[c_out, k, c_in / groups]`.
pub fn conv1d(x: &Array, w: &Array, stride: usize, padding: usize, dilation: usize, groups: usize) -> Result<Array> {
    conv_general(x, w, &desc_of(1, &[stride], &[padding], &[dilation], groups))
}

/// A 2-D convolution: input `[batch, h, w, c_in]` (NHWC), weight `[c_out, kh, kw, c_in /
/// groups]` (OHWI), symmetric padding per axis.
///
/// ```
/// use strata::Array;
/// // The 5-point Laplacian of a 4x4 image, zero outside.
/// let x = strata::arange(0.0, 16.0, 1.0, strata::DType::F32)?.reshape(&[1, 4, 4, 1])?;
/// let lap = [0.0f32, 1.0, 0.0, 1.0, -4.0, 1.0, 0.0, 1.0, 0.0];
/// let w = Array::from_slice(&lap, &[1, 3, 3, 1])?;
/// let y = strata::conv2d(&x, &w, [1, 1], [1, 1], [1, 1], 1)?;
/// assert_eq!(y.shape(), [1, 4, 4, 1]);
/// assert_eq!(y.to_vec::<f32>()?[5], 0.0); // interior of a linear ramp
/// # Ok::<(), strata::Error>(())
/// ```
pub fn conv2d(
    x: &Array,
    w: &Array,
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
) -> Result<Array> {
    conv_general(x, w, &desc_of(2, &stride, &padding, &dilation, groups))
}

/// A 3-D convolution: input `[batch, d, h, w, c_in]`, weight `[c_out, kd, kh, kw, c_in / groups]`.
pub fn conv3d(
    x: &Array,
    w: &Array,
    stride: [usize; 3],
    padding: [usize; 3],
    dilation: [usize; 3],
    groups: usize,
) -> Result<Array> {
    conv_general(x, w, &desc_of(3, &stride, &padding, &dilation, groups))
}

pub(crate) fn transposed(mut d: Conv, output_padding: &[usize]) -> Conv {
    d.transposed = true;
    d.output_padding[..output_padding.len()].copy_from_slice(output_padding);
    d
}

/// The transposed 1-D convolution (the input-gradient of `conv1d`): input `[batch, length,
/// c_in]`, weight `[c_out, k, c_in / groups]`.
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose1d(
    x: &Array,
    w: &Array,
    stride: usize,
    padding: usize,
    dilation: usize,
    output_padding: usize,
    groups: usize,
) -> Result<Array> {
    conv_general(x, w, &transposed(desc_of(1, &[stride], &[padding], &[dilation], groups), &[output_padding]))
}

/// The transposed 2-D convolution: input `[batch, h, w, c_in]`, weight `[c_out, kh, kw, c_in /
/// groups]`, as MLX's `conv_transpose2d`.
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose2d(
    x: &Array,
    w: &Array,
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    output_padding: [usize; 2],
    groups: usize,
) -> Result<Array> {
    conv_general(x, w, &transposed(desc_of(2, &stride, &padding, &dilation, groups), &output_padding))
}

/// The transposed 3-D convolution.
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose3d(
    x: &Array,
    w: &Array,
    stride: [usize; 3],
    padding: [usize; 3],
    dilation: [usize; 3],
    output_padding: [usize; 3],
    groups: usize,
) -> Result<Array> {
    conv_general(x, w, &transposed(desc_of(3, &stride, &padding, &dilation, groups), &output_padding))
}

/// The descriptor of the other direction: for a convolution, the transposed one; for a
/// transposed one, the convolution (no output padding).
fn adjoint(desc: &Conv) -> Conv {
    let mut d = *desc;
    d.transposed = !desc.transposed;
    d.output_padding = [0; 3];
    d
}

/// [`adjoint`], mapping back onto `in_shape`: a transposed one gets the output padding that
/// makes its output exactly that size.
fn adjoint_for(desc: &Conv, in_shape: &[usize], kernel: &[usize]) -> Conv {
    let mut d = adjoint(desc);
    if d.transposed {
        for ax in 0..desc.spatial {
            let (lo, hi) = desc.padding[ax];
            let span = desc.dilation[ax] * (kernel[ax].max(1) - 1) + 1;
            // n + lo + hi − span = (m − 1)·stride + r with r < stride: r rows the forward
            // convolution never reached, given back as output padding.
            let padded = in_shape[1 + ax] + lo + hi;
            d.output_padding[ax] = if padded >= span { (padded - span) % desc.stride[ax] } else { 0 };
        }
    }
    d
}

/// The cotangent of the HWIO weight of the (forward) convolution `desc` with input `x` and
/// output cotangent `g`: for each kernel tap, the strided slice of the padded input it sees,
/// contracted with `g` over batch and positions, one product per group.
fn weight_cotangent(desc: &Conv, x: &Array, g: &Array, kernel_shape: &[usize]) -> Result<Array> {
    let s = desc.spatial;
    let groups = desc.groups;
    let (batch, a) = (x.shape()[0], x.shape()[s + 1]);
    let c_out = g.shape()[s + 1];
    let (ag, og) = (a / groups, c_out / groups);
    let out_sp = &g.shape()[1..=s];
    let positions: usize = batch * out_sp.iter().product::<usize>();
    let widths: Vec<(usize, usize)> =
        [(0, 0)].into_iter().chain((0..s).map(|ax| desc.padding[ax])).chain([(0, 0)]).collect();
    let xp = pad(x, &widths, 0.0)?;
    // g as [groups, positions, og]
    let gm = permute(&reshape_to(g, &[positions, groups, og]), vec![1, 0, 2]);
    let taps: usize = kernel_shape[..s].iter().product();
    let mut per_tap = Vec::with_capacity(taps);
    for t in 0..taps {
        let mut k = vec![0usize; s];
        let mut rest = t;
        for ax in (0..s).rev() {
            k[ax] = rest % kernel_shape[ax];
            rest /= kernel_shape[ax];
        }
        let mut start = vec![0isize; s + 2];
        let mut stop: Vec<isize> = xp.shape().iter().map(|&d| d as isize).collect();
        let mut step = vec![1isize; s + 2];
        for ax in 0..s {
            let b = (k[ax] * desc.dilation[ax]) as isize;
            start[1 + ax] = b;
            step[1 + ax] = desc.stride[ax] as isize;
            stop[1 + ax] = b + (out_sp[ax] as isize - 1) * desc.stride[ax] as isize + 1;
        }
        let xs = slice(&xp, &start, &stop, &step)?; // [batch, *out_sp, a]
        let xm = permute(&reshape_to(&crate::ops::contiguous(&xs)?, &[positions, groups, ag]), vec![1, 2, 0]);
        let prod = matmul(&xm, &gm)?; // [groups, ag, og]
        per_tap.push(reshape_to(&crate::ops::contiguous(&permute(&prod, vec![1, 0, 2]))?, &[ag, groups * og]));
    }
    let w = stack(&per_tap.iter().collect::<Vec<_>>(), 0)?;
    Ok(reshape_to(&w, kernel_shape))
}

/// The cotangents of a `Conv` node's input and HWIO weight.
pub(crate) fn conv_vjp(desc: &Conv, x: &Array, w: &Array, g: &Array) -> Result<(Array, Array)> {
    let k = &w.shape()[..desc.spatial];
    let dx = conv_node(g, w, &adjoint_for(desc, x.shape(), k))?;
    let dw = if desc.transposed {
        // ⟨T(x, w), g⟩ = ⟨x, C(g, w)⟩: the forward convolution's weight cotangent with input g
        // and output cotangent x.
        weight_cotangent(&adjoint(desc), g, x, w.shape())?
    } else {
        weight_cotangent(desc, x, g, w.shape())?
    };
    // With an output padding at or past the stride (possible when the dilation is larger), the
    // adjoint covers a few positions more than `x` has: its first ones are the cotangent.
    let dx = if dx.shape() != x.shape() && dx.shape().iter().zip(x.shape()).all(|(a, b)| a >= b) {
        let start = vec![0isize; x.ndim()];
        let stop: Vec<isize> = x.shape().iter().map(|&d| d as isize).collect();
        slice(&dx, &start, &stop, &vec![1; x.ndim()])?
    } else {
        dx
    };
    if dx.shape() != x.shape() {
        return Err(invalid("conv", format!("internal: input cotangent {:?} for input {:?}", dx.shape(), x.shape())));
    }
    Ok((dx, dw))
}

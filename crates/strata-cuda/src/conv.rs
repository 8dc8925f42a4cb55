//! N-d convolution and its transpose (`kernels/conv.cu`): the general kernel, a thread per
//! output element, for every float type, any strides, dilations, padding and groups. (The
//! implicit GEMM on tensor cores is the fast path to come; this one is the reference every
//! later kernel is held to.)

use cudarc::driver::{DeviceRepr, PushKernelArg};
use strata_core::kernel::{Conv, Layout, TensorMut, TensorRef};
use strata_core::{DType, Result};

use crate::{Cuda, CudaBuffer, FLOAT_TYPES, float_source};

const CONV: &str = include_str!("../kernels/conv.cu");
const OP: &str = "conv";

/// The C layout of `ConvGeometry`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct ConvGeometry {
    n: i64,
    transposed: i32,
    cig: i64,
    cog: i64,
    c_out: i64,
    out: [i64; 3],
    input: [i64; 3],
    kernel: [i64; 3],
    stride: [i64; 3],
    dilation: [i64; 3],
    pad: [i64; 3],
    x: [i64; 6],
    w: [i64; 6],
    y: [i64; 6],
}

// SAFETY: plain old data with the C layout of `ConvGeometry`.
unsafe impl DeviceRepr for ConvGeometry {}

/// The kernel for operands of type `t` (accumulating in f32, f64 for f64).
pub(crate) fn source(t: DType) -> String {
    float_source(CONV, "STRATA_CONV", t)
}

pub(crate) fn all_sources() -> Vec<String> {
    FLOAT_TYPES.map(source).to_vec()
}

/// Offset, then the strides of batch, three spatial axes (zero where absent) and channels.
fn place(l: &Layout, s: usize) -> [i64; 6] {
    let st = l.strides();
    let mut p = [l.offset() as i64, st[0] as i64, 0, 0, 0, st[s + 1] as i64];
    for ax in 0..s {
        p[2 + ax] = st[1 + ax] as i64;
    }
    p
}

pub(crate) fn conv(
    cuda: &Cuda,
    desc: &Conv,
    x: TensorRef<'_, CudaBuffer>,
    weight: TensorRef<'_, CudaBuffer>,
    out: TensorMut<'_, CudaBuffer>,
) -> Result<()> {
    desc.validate_call(&x, &weight, &out)?;
    let n = out.layout.numel();
    if n == 0 {
        return Ok(());
    }
    let s = desc.spatial;
    let three = |v: &[usize], fill: usize| {
        let mut a = [fill as i64; 3];
        for ax in 0..s {
            a[ax] = v[ax] as i64;
        }
        a
    };
    let (xs, ws, os) = (x.layout.shape(), weight.layout.shape(), out.layout.shape());
    let (c_in, c_out) = (xs[s + 1], os[s + 1]);
    // The forward map's channel counts: a transpose runs a convolution from its output's
    // channels to its input's.
    let (cin_f, cout_f) = if desc.transposed { (c_out, c_in) } else { (c_in, c_out) };
    // The weight: three kernel axes, then the two channel axes.
    let ws_st = weight.layout.strides();
    let mut w = [weight.layout.offset() as i64, 0, 0, 0, ws_st[s] as i64, ws_st[s + 1] as i64];
    for ax in 0..s {
        w[1 + ax] = ws_st[ax] as i64;
    }
    let g = ConvGeometry {
        n: n as i64,
        transposed: i32::from(desc.transposed),
        cig: (cin_f / desc.groups) as i64,
        cog: (cout_f / desc.groups) as i64,
        c_out: c_out as i64,
        out: three(&os[1..], 1),
        input: three(&xs[1..], 1),
        kernel: three(ws, 1),
        stride: three(&desc.stride, 1),
        dilation: three(&desc.dilation, 1),
        pad: three(&desc.padding.map(|p| p.0), 0),
        x: place(x.layout, s),
        w,
        y: place(out.layout, s),
    };
    let f = cuda.kernel(&format!("conv {}", x.dtype), || source(x.dtype))?;
    let cfg = cuda.linear(n as u64, 256, 16);
    let mut b = cuda.stream.launch_builder(&f);
    b.arg(x.buffer.slice()).arg(weight.buffer.slice()).arg(out.buffer.slice_mut()).arg(&g);
    // SAFETY: parameters as `STRATA_CONV` declares them; every operand was checked against its
    // buffer, and the output has no broadcast axis, so no two threads write one element.
    cuda.timed(OP, || unsafe { b.launch(cfg) })
}

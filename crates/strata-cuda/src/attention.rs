//! Scaled dot-product attention (`kernels/attention.cu`): the general online-softmax kernel,
//! a warp per query row, for every type the primitive takes, head sizes up to 256, any
//! strides, grouped key/value heads and every mask. (A tensor-core kernel for the common
//! 16-bit shapes is the next step; this one is the reference every later kernel is held to.)

use cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
use strata_core::kernel::{Attention, AttentionMask, Backend, Layout, TensorMut, TensorRef};
use strata_core::{DType, Error, Result};

use crate::{Cuda, CudaBuffer, FLOAT_TYPES, float_source};

const ATTENTION: &str = include_str!("../kernels/attention.cu");
const OP: &str = "attention";
/// `STRATA_ATTENTION_MAX_D` and `STRATA_ATTENTION_WARPS` in `attention.cu`.
const MAX_D: usize = 256;
const WARPS: u64 = 4;

/// The C layout of `AttentionGeometry`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct AttentionGeometry {
    batch: i64,
    hq: i64,
    lq: i64,
    d: i64,
    hkv: i64,
    lk: i64,
    dv: i64,
    q: [i64; 5],
    k: [i64; 5],
    v: [i64; 5],
    out: [i64; 5],
    mask: [i64; 5],
    scale: f32,
    mask_kind: i32,
}

// SAFETY: plain old data with the C layout of `AttentionGeometry`.
unsafe impl DeviceRepr for AttentionGeometry {}

/// The kernel for operands of type `t` (accumulating in f32, f64 for f64).
pub(crate) fn source(t: DType) -> String {
    float_source(ATTENTION, "STRATA_ATTENTION", t)
}

pub(crate) fn all_sources() -> Vec<String> {
    FLOAT_TYPES.map(source).to_vec()
}

/// Offset, then the four strides.
fn place(l: &Layout) -> [i64; 5] {
    let s = l.strides();
    [l.offset() as i64, s[0] as i64, s[1] as i64, s[2] as i64, s[3] as i64]
}

pub(crate) fn attention(
    cuda: &Cuda,
    desc: &Attention,
    q: TensorRef<'_, CudaBuffer>,
    k: TensorRef<'_, CudaBuffer>,
    v: TensorRef<'_, CudaBuffer>,
    mask: Option<TensorRef<'_, CudaBuffer>>,
    out: TensorMut<'_, CudaBuffer>,
) -> Result<()> {
    desc.validate_call(&q, &k, &v, mask.as_ref(), &out)?;
    let [batch, hq, lq, d]: [usize; 4] = q.layout.shape().try_into().expect("validated");
    let [_, hkv, lk, _]: [usize; 4] = k.layout.shape().try_into().expect("validated");
    let dv = v.layout.shape()[3];
    if d > MAX_D || dv > MAX_D {
        return Err(Error::NotImplemented { op: "attention with heads wider than 256", backend: cuda.name() });
    }
    let rows = (batch * hq * lq) as u64;
    if rows == 0 || dv == 0 {
        return Ok(());
    }
    let mask_kind = match (desc.mask, mask.as_ref().map(|m| m.dtype)) {
        (AttentionMask::None, _) => 0,
        (AttentionMask::Causal, _) => 1,
        (AttentionMask::Explicit, Some(DType::Bool)) => 3,
        (AttentionMask::Explicit, _) => 2,
    };
    let g = AttentionGeometry {
        batch: batch as i64,
        hq: hq as i64,
        lq: lq as i64,
        d: d as i64,
        hkv: hkv as i64,
        lk: lk as i64,
        dv: dv as i64,
        q: place(q.layout),
        k: place(k.layout),
        v: place(v.layout),
        out: place(out.layout),
        mask: mask.as_ref().map_or([0; 5], |m| place(m.layout)),
        scale: desc.scale,
        mask_kind,
    };
    let f = cuda.kernel(&format!("attention {}", q.dtype), || source(q.dtype))?;
    let blocks = rows.div_ceil(WARPS).min(u64::from(cuda.sms) * 16).max(1) as u32;
    let cfg = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (32 * WARPS as u32, 1, 1), shared_mem_bytes: 0 };
    // Without a mask the kernel still takes a pointer; it is never read.
    let mask_buf = mask.as_ref().map_or(q.buffer, |m| m.buffer);
    let mut b = cuda.stream.launch_builder(&f);
    b.arg(q.buffer.slice()).arg(k.buffer.slice()).arg(v.buffer.slice()).arg(mask_buf.slice());
    b.arg(out.buffer.slice_mut()).arg(&g);
    // SAFETY: parameters as `STRATA_ATTENTION` declares them; every operand was checked against
    // its buffer, and the output has no broadcast axis, so no two warps write one element.
    cuda.timed(OP, || unsafe { b.launch(cfg) })
}

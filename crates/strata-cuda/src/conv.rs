//! N-d convolution and its transpose (`kernels/conv.cu`): an implicit GEMM on tensor cores for
//! 16-bit forward convolutions whose channels come in multiples of eight (contiguous channels,
//! rows 16-byte aligned) — `wgmma` on sm_90a, its reduction split among blocks where the grid
//! would leave half the device idle, `mma.sync` elsewhere (or with
//! `STRATA_GEMM_KERNEL=warp`) — and for every other call the general kernel, a thread per output
//! element, for every float type, any strides, dilations, padding and groups: the reference the
//! fast kernels are checked and timed against ([`Cuda::with_tensor_cores`]).

use cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
use strata_core::kernel::{Backend, Conv, Layout, TensorMut, TensorRef, dense_copy};
use strata_core::{DType, Result};

use crate::matmul::TENSOR_OPS;
use crate::{Cuda, CudaBuffer, ELEMENTWISE, FLOAT_TYPES, c, float_source};

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

/// The tensor-core kernel (`mma.sync`) for 16-bit type `t`.
fn igemm_source(t: DType) -> String {
    format!("{ELEMENTWISE}{TENSOR_OPS}{CONV}\nSTRATA_CONV_TENSOR_CORES({})\n", c(t))
}

/// The warpgroup kernel (`wgmma`, sm_90a) for 16-bit type `t` and `bn` output channels a block.
fn wg_source(t: DType, bn: usize) -> String {
    format!("{ELEMENTWISE}{TENSOR_OPS}{CONV}\nSTRATA_CONV_WGMMA({}, {bn})\n", c(t))
}

/// The `mma.sync` kernel's shared memory: four stages of a 128 x 32 slice of the input and a
/// 32 x 128 slice of the weight, 16-bit elements. Its block tile is 128 x 128, as is the
/// warpgroup kernel's or 128 x 256.
const IGEMM_SMEM: u32 = 4 * (128 * 32 + 32 * 128) * 2;
const BM: usize = 128;

/// The warpgroup kernel's shared memory for `bn` channels a block: six stages of 64-deep
/// slices for 128, four for 256, and room to align them to 1024 bytes.
fn wg_smem(bn: usize) -> u32 {
    let stages = if bn == 128 { 6 } else { 4 };
    (stages * (BM + bn) * 64 * 2 + 1024) as u32
}

/// The sum of the warpgroup kernel's split partial outputs, rounded to 16-bit type `t`.
fn reduce_source(t: DType) -> String {
    format!("{ELEMENTWISE}{TENSOR_OPS}{CONV}\nSTRATA_CONV_SPLITK_REDUCE({})\n", c(t))
}

pub(crate) fn all_sources() -> Vec<String> {
    let mut all: Vec<String> = FLOAT_TYPES.map(source).to_vec();
    for t in [DType::F16, DType::BF16] {
        all.extend([igemm_source(t), wg_source(t, 128), wg_source(t, 256), reduce_source(t)]);
    }
    all
}

/// How many ways the warpgroup kernel splits the `slices` 64-deep slices of its reduction for a
/// grid of `blocks` blocks on `sms` multiprocessors: the GEMM's rule (`matmul::split_k`), which
/// splits only grids that leave half the multiprocessors idle, enough to fill them, with about
/// four slices or more a split (the last may have fewer). 32 × 7 × 7 × 512 (3 × 3, 512
/// channels out) makes 52 blocks of 72 slices: two ways. Each split stores an fp32 partial
/// output that a second kernel sums, so wider splits pay in traffic what they gain in waves. `forced` (`STRATA_CONV_SPLITS=N`, to test or time; 1
/// turns splitting off) sets the ways, normalized as the rule's are so that no split is empty.
fn splits(blocks: usize, slices: usize, sms: usize, forced: Option<usize>) -> usize {
    match forced {
        _ if slices == 0 => 1,
        Some(s) => slices.div_ceil(slices.div_ceil(s.min(slices))),
        None => crate::matmul::split_k(blocks, slices, sms),
    }
}

/// The weight's offset, then the strides of its three kernel axes (zero where absent) and its
/// two channel axes.
fn weight_place(l: &Layout, s: usize) -> [i64; 6] {
    let st = l.strides();
    let mut w = [l.offset() as i64, 0, 0, 0, st[s] as i64, st[s + 1] as i64];
    for (ax, &stride) in st[..s].iter().enumerate() {
        w[1 + ax] = stride as i64;
    }
    w
}

/// `STRATA_CONV_TILE_N=128|256`: the warpgroup kernel's output channels a block, whatever the
/// shape (to test or time each tile on any shape).
fn tile_override() -> Option<usize> {
    std::env::var("STRATA_CONV_TILE_N").ok().and_then(|v| v.parse().ok()).filter(|v| [128, 256].contains(v))
}

/// Whether weight rows (taps, then the channels of a group) lie evenly spaced, `w[4]` apart,
/// as the tensor-core kernel reads them (axes of one element may have any stride).
fn rows_even(w: &[i64; 6], kernel: &[i64; 3], cig: i64) -> bool {
    let mut span = cig * w[4];
    for ax in (0..3).rev() {
        if kernel[ax] > 1 && w[1 + ax] != span {
            return false;
        }
        span *= kernel[ax];
    }
    true
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
        w: weight_place(weight.layout, s),
        y: place(out.layout, s),
    };
    // The tensor-core kernels: a forward 16-bit convolution on sm_80 or later, channels in
    // (non-zero) multiples of eight and contiguous, every row start of the input on 16 bytes,
    // the output's channels contiguous, a grid CUDA launches, and input positions (from the
    // low padding's start to the last tap of the last output) within the kernels' 30-bit
    // arithmetic; a weight whose rows are not evenly spaced, contiguous and aligned is copied
    // first.
    let aligned = |v: &[i64]| v.iter().all(|&e| e % 8 == 0);
    let reach = (0..3).all(|ax| {
        let last = (g.out[ax] - 1) * g.stride[ax] + (g.kernel[ax] - 1) * g.dilation[ax];
        last.max(g.pad[ax]).max(g.input[ax]) < 1 << 30
    });
    let fast = cuda.tensor_cores()
        && crate::has_mma_sync(cuda.arch())
        && matches!(x.dtype, DType::F16 | DType::BF16)
        && !desc.transposed
        && g.cig > 0
        && g.cig % 8 == 0
        && g.cog % 8 == 0
        && g.x[5] == 1
        && aligned(&g.x[..5])
        && g.y[5] == 1
        && desc.groups <= 65_535
        && (g.cog as usize).div_ceil(128) <= 65_535
        && (n / c_out).div_ceil(BM) <= i32::MAX as usize
        && reach;
    if fast {
        let wc = if g.w[5] == 1 && rows_even(&g.w, &g.kernel, g.cig) && aligned(&[g.w[0], g.w[4]]) {
            None
        } else {
            dense_copy(cuda, &weight)?
        };
        let mut g = g;
        if wc.is_some() {
            g.w = weight_place(&Layout::contiguous(weight.layout.shape()), s);
        }
        let wbuf = wc.as_ref().unwrap_or(weight.buffer);
        let (warpgroup, warp_only) =
            (cuda.arch() == "sm_90a", crate::matmul::kernel_override().as_deref() == Some("warp"));
        // 256 channels a block where they come in whole blocks of 256 and the grid still fills
        // the device twice over, else 128.
        let m_blocks = (n / c_out).div_ceil(BM);
        let wide = g.cog % 256 == 0 && m_blocks * (g.cog as usize / 256) * desc.groups >= 2 * cuda.sms as usize;
        let bn = match tile_override() {
            Some(bn) if warpgroup && !warp_only => bn,
            _ if warpgroup && !warp_only && wide => 256,
            _ => 128,
        };
        let (f, threads, smem) = if warpgroup && !warp_only {
            let smem = wg_smem(bn);
            let f = cuda.kernel_with_smem(&format!("conv {} wgmma {bn}", x.dtype), smem, || wg_source(x.dtype, bn))?;
            (f, 256, smem)
        } else {
            let f =
                cuda.kernel_with_smem(&format!("conv {} tensor cores", x.dtype), IGEMM_SMEM, || igemm_source(x.dtype))?;
            (f, 128, IGEMM_SMEM)
        };
        let col_blocks = (g.cog as usize).div_ceil(bn);
        let depth = (g.kernel.iter().product::<i64>() * g.cig) as usize;
        let ways = if warpgroup && !warp_only {
            // (A forced split stays within the grid's 65 535 blocks along z.)
            let forced = std::env::var("STRATA_CONV_SPLITS").ok().and_then(|v| v.parse::<usize>().ok());
            let forced = forced.filter(|&v| v > 0).map(|v| v.min(65_535 / desc.groups).max(1));
            splits(m_blocks * col_blocks * desc.groups, depth.div_ceil(64), cuda.sms as usize, forced)
        } else {
            1
        };
        if desc.groups * ways > 65_535 {
            return Err(strata_core::Error::InvalidArgument {
                op: OP,
                message: format!("{} groups split {ways} ways exceed the grid the CUDA kernel uses", desc.groups),
            });
        }
        let grid = (m_blocks as u32, col_blocks as u32, (desc.groups * ways) as u32);
        let cfg = LaunchConfig { grid_dim: grid, block_dim: (threads, 1, 1), shared_mem_bytes: smem };
        // Split: fp32 partial outputs, [split][row][channel], each element written by one block.
        let mut part = if ways > 1 { Some(cuda.alloc_output(ways * n * 4)?) } else { None };
        let mut b = cuda.stream.launch_builder(&f);
        b.arg(x.buffer.slice()).arg(wbuf.slice()).arg(out.buffer.slice_mut());
        let ways_arg = ways as i32;
        if warpgroup && !warp_only {
            // (Unsplit, the partials' pointer is never read: any buffer will do.)
            match part.as_mut() {
                Some(p) => b.arg(p.slice_mut()),
                None => b.arg(x.buffer.slice()),
            };
            b.arg(&ways_arg);
        }
        b.arg(&g);
        // SAFETY: parameters as `STRATA_CONV_TENSOR_CORES` and `STRATA_CONV_WGMMA` declare
        // them (the latter launched on sm_90a only, with its BN's shared memory); every operand was
        // checked against its buffer, and the strides and alignment the kernel reads with were
        // checked above; each output element (or partial) belongs to one block's tile; the
        // partials hold `ways` outputs of fp32.
        cuda.timed("conv (tensor cores)", || unsafe { b.launch(cfg) })?;
        let Some(part) = part else { return Ok(()) };
        let f = cuda.kernel(&format!("conv {} split-k reduce", x.dtype), || reduce_source(x.dtype))?;
        let cfg = cuda.linear(n as u64, 256, 16);
        let mut b = cuda.stream.launch_builder(&f);
        b.arg(part.slice()).arg(&ways_arg).arg(out.buffer.slice_mut()).arg(&g);
        // SAFETY: parameters as `STRATA_CONV_SPLITK_REDUCE` declares them; `part` holds `ways`
        // fp32 outputs of n elements, all written above, and each thread writes its own outputs.
        return cuda.timed("conv (split-k reduce)", || unsafe { b.launch(cfg) });
    }
    let f = cuda.kernel(&format!("conv {}", x.dtype), || source(x.dtype))?;
    let cfg = cuda.linear(n as u64, 256, 16);
    let mut b = cuda.stream.launch_builder(&f);
    b.arg(x.buffer.slice()).arg(weight.buffer.slice()).arg(out.buffer.slice_mut()).arg(&g);
    // SAFETY: parameters as `STRATA_CONV` declares them; every operand was checked against its
    // buffer, and the output has no broadcast axis, so no two threads write one element.
    cuda.timed(OP, || unsafe { b.launch(cfg) })
}

#[cfg(test)]
mod tests {
    use super::splits;

    #[test]
    fn small_grids_split_their_slices_and_no_split_is_empty() {
        // 32 × 7 × 7 × 512, 3 × 3 → 512: 52 blocks of 72 slices on 132 multiprocessors.
        assert_eq!(splits(52, 72, 132, None), 2);
        // The suite's cases: 2 blocks of 9 slices, 2 of 20.
        assert_eq!(splits(2, 9, 132, None), 2);
        assert_eq!(splits(2, 20, 132, None), 5);
        // Grids that fill half the device, or too few slices: no split.
        assert_eq!(splits(80, 90, 132, None), 1);
        assert_eq!(splits(200, 72, 132, None), 1);
        assert_eq!(splits(2, 7, 132, None), 1);
        // Forced, and normalized so that every split has a slice (9 slices in 4 ways would
        // leave the last empty at 3 a split).
        assert_eq!(splits(500, 10, 132, Some(4)), 4);
        assert_eq!(splits(500, 9, 132, Some(4)), 3);
        assert_eq!(splits(500, 3, 132, Some(8)), 3);
        for slices in 1..200 {
            for ways in 1..20 {
                let s = splits(1, slices, 132, Some(ways));
                let per = slices.div_ceil(s);
                assert!((s - 1) * per < slices, "{slices} slices, {ways} forced: split {s} empty");
            }
        }
    }
}

//! Reductions over any set of axes and scans along one axis (`kernels/reduce.cu`): the plans
//! (which strategy, how many chunks) and the launches.

use cudarc::driver::{DeviceRepr, PushKernelArg};
use strata_core::kernel::{
    Backend, Layout, ReduceOp, ScanOp, TensorMut, TensorRef, validate_reduce_call, validate_scan,
};
use strata_core::{DType, Error, Result};

use crate::{Cuda, CudaBuffer, ELEMENTWISE, MAX_DIMS, c, exprs};

const REDUCE: &str = include_str!("../kernels/reduce.cu");

/// Mirrors `strata::ReduceGeometry` in `kernels/reduce.cu`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct ReduceGeometry {
    outputs: i64,
    block: i64,
    chunks: i64,
    chunk_len: i64,
    nkept: i32,
    nred: i32,
    rows: i32,
    group: i32,
    red_dense: i32,
    vec4: i32,
    kept_shape: [i64; MAX_DIMS],
    kept_in: [i64; MAX_DIMS],
    kept_out: [i64; MAX_DIMS],
    red_shape: [i64; MAX_DIMS],
    red_stride: [i64; MAX_DIMS],
    in_offset: i64,
    out_offset: i64,
}

// SAFETY: plain old data with the C layout of `strata::ReduceGeometry`.
unsafe impl DeviceRepr for ReduceGeometry {}

/// Mirrors `strata::ScanGeometry`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct ScanGeometry {
    lanes: i64,
    n: i64,
    nlane: i32,
    reverse: i32,
    inclusive: i32,
    walker: i32,
    lane_shape: [i64; MAX_DIMS],
    lane_in: [i64; MAX_DIMS],
    lane_out: [i64; MAX_DIMS],
    in_offset: i64,
    out_offset: i64,
    in_stride: i64,
    out_stride: i64,
}

// SAFETY: plain old data with the C layout of `strata::ScanGeometry`.
unsafe impl DeviceRepr for ScanGeometry {}

/// `a / b` rounded up, for positive `b` (`i64::div_ceil` is unstable).
fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

fn too_many_dims(op: &'static str, n: usize) -> Error {
    Error::InvalidArgument { op, message: format!("{n} dimensions: the CUDA kernels take at most {MAX_DIMS}") }
}

/// The C++ operation struct of `op` over compute type `ct`.
fn op_struct(op: ReduceOp, ct: &str) -> String {
    match op {
        ReduceOp::Sum => format!("strata::RSum<{ct}>"),
        ReduceOp::Prod => format!("strata::RProd<{ct}>"),
        ReduceOp::Max => format!("strata::RMax<{ct}>"),
        ReduceOp::Min => format!("strata::RMin<{ct}>"),
        ReduceOp::ArgMax => format!("strata::RArg<{ct}, true>"),
        ReduceOp::ArgMin => format!("strata::RArg<{ct}, false>"),
        ReduceOp::All => format!("strata::RAll<{ct}>"),
        ReduceOp::Any => format!("strata::RAny<{ct}>"),
    }
}

fn scan_struct(op: ScanOp, ct: &str) -> String {
    match op {
        ScanOp::Sum => format!("strata::RSum<{ct}>"),
        ScanOp::Prod => format!("strata::RProd<{ct}>"),
        ScanOp::Max => format!("strata::RMax<{ct}>"),
        ScanOp::Min => format!("strata::RMin<{ct}>"),
        ScanOp::LogAddExp => format!("strata::RLogAddExp<{ct}>"),
    }
}

/// The kernel source reducing `tin` into `tout` with `op`.
pub(crate) fn reduce_source(op: ReduceOp, tin: DType, tout: DType) -> String {
    let ct = exprs::compute_type(tin);
    format!("{ELEMENTWISE}{REDUCE}\nSTRATA_REDUCE({}, {ct}, {}, {})\n", c(tin), c(tout), op_struct(op, ct))
}

pub(crate) fn scan_source(op: ScanOp, t: DType) -> String {
    let ct = exprs::compute_type(t);
    format!("{ELEMENTWISE}{REDUCE}\nSTRATA_SCAN({}, {ct}, {})\n", c(t), scan_struct(op, ct))
}

/// The type partial results of `op` over `t` are kept in between two launches.
fn partial_type(op: ReduceOp, t: DType) -> DType {
    match (op, t) {
        (ReduceOp::All | ReduceOp::Any, _) => DType::Bool,
        (_, DType::F16 | DType::BF16) => DType::F32,
        (_, t) => t,
    }
}

/// Whether `axes` of `l` (in order) are one dense row-major run.
fn dense_run(l: &Layout, axes: &[usize]) -> bool {
    let mut want = 1isize;
    for &a in axes.iter().rev() {
        if l.shape()[a] != 1 && l.strides()[a] != want {
            return false;
        }
        want *= l.shape()[a] as isize;
    }
    true
}

pub(crate) fn reduce(
    cuda: &Cuda,
    op: ReduceOp,
    axes: &[usize],
    x: TensorRef<'_, CudaBuffer>,
    out: TensorMut<'_, CudaBuffer>,
) -> Result<()> {
    let name = op.name();
    let axes = validate_reduce_call(op, axes, &x, &out)?;
    Cuda::types(name, &[x.dtype, out.dtype])?;
    let xs = x.layout;
    let kept: Vec<usize> = (0..xs.ndim()).filter(|a| !axes.contains(a)).collect();
    if kept.len() > MAX_DIMS || axes.len() > MAX_DIMS {
        return Err(too_many_dims(name, xs.ndim()));
    }
    let kept_out: Vec<isize> = if out.layout.ndim() == xs.ndim() {
        kept.iter().map(|&a| out.layout.strides()[a]).collect()
    } else {
        out.layout.strides().to_vec()
    };
    let mut g = ReduceGeometry {
        nkept: kept.len() as i32,
        nred: axes.len() as i32,
        in_offset: xs.offset() as i64,
        out_offset: out.layout.offset() as i64,
        ..Default::default()
    };
    for (d, &a) in kept.iter().enumerate() {
        (g.kept_shape[d], g.kept_in[d], g.kept_out[d]) =
            (xs.shape()[a] as i64, xs.strides()[a] as i64, kept_out[d] as i64);
    }
    for (d, &a) in axes.iter().enumerate() {
        (g.red_shape[d], g.red_stride[d]) = (xs.shape()[a] as i64, xs.strides()[a] as i64);
    }
    g.outputs = g.kept_shape[..kept.len()].iter().product();
    g.block = g.red_shape[..axes.len()].iter().product();
    if g.outputs == 0 {
        return Ok(());
    }
    g.red_dense = i32::from(dense_run(xs, &axes));
    let innermost_dense = axes.last().is_some_and(|&a| xs.strides()[a] == 1);
    g.rows = i32::from(g.block > 1 && (g.red_dense == 1 || innermost_dense));
    let sms = i64::from(cuda.sms);
    // Enough independent work to fill the device: few outputs over long blocks are split.
    // Columns whose innermost kept axis is dense take four outputs a thread (16-byte loads).
    let aligned = |v: i64| v % 4 == 0;
    let nk = kept.len();
    let column_quads = g.rows == 0
        && nk > 0
        && g.kept_in[nk - 1] == 1
        && aligned(g.kept_shape[nk - 1])
        && aligned(g.in_offset)
        && g.kept_in[..nk - 1].iter().all(|&s| aligned(s))
        && g.red_stride[..axes.len()].iter().all(|&s| aligned(s));
    let threads_per_chunk = if column_quads { g.outputs / 4 } else { g.outputs };
    g.chunks = if op.is_index() {
        1
    } else if g.rows == 1 && g.outputs < 4 * sms && g.block >= 8192 {
        ceil_div(8 * sms, g.outputs).min(ceil_div(g.block, 4096))
    } else if g.rows == 0 && threads_per_chunk < 512 * sms && g.block >= 64 {
        ceil_div(2048 * sms, threads_per_chunk).min(ceil_div(g.block, 32))
    } else {
        1
    };
    // Chunks of a multiple of four elements keep the packed loads aligned in every chunk.
    g.chunk_len = ceil_div(ceil_div(g.block, g.chunks.max(1)).max(1), 4) * 4;
    g.chunks = ceil_div(g.block, g.chunk_len).max(1);
    g.group = if g.chunk_len >= 1024 { 256 } else { 32 };
    // Pack loads: dense runs whose starts (every row's and every chunk's) are 4-aligned.
    g.vec4 = i32::from(
        column_quads
            || (g.rows == 1
                && g.red_dense == 1
                && aligned(g.in_offset)
                && aligned(g.block)
                && aligned(g.chunk_len)
                && g.kept_in[..nk].iter().all(|&s| aligned(s))),
    );

    if g.chunks == 1 {
        let f =
            cuda.kernel(&format!("reduce {name} {} {}", x.dtype, out.dtype), || reduce_source(op, x.dtype, out.dtype))?;
        return launch_reduce(cuda, name, &f, &g, x.buffer, out.buffer);
    }
    // Two passes: partial results per chunk into a dense scratch array, then those reduced.
    let pt = partial_type(op, x.dtype);
    let mut partial = cuda.alloc_output((g.outputs * g.chunks) as usize * (pt.bits() as usize / 8))?;
    let f = cuda.kernel(&format!("reduce {name} {} {pt}", x.dtype), || reduce_source(op, x.dtype, pt))?;
    launch_reduce(cuda, name, &f, &g, x.buffer, &mut partial)?;
    let mut second = ReduceGeometry {
        outputs: g.outputs,
        block: g.chunks,
        chunks: 1,
        chunk_len: g.chunks,
        nkept: g.nkept,
        nred: 1,
        rows: 1,
        group: 32,
        red_dense: 1,
        out_offset: g.out_offset,
        kept_shape: g.kept_shape,
        kept_out: g.kept_out,
        ..Default::default()
    };
    second.red_shape[0] = g.chunks;
    second.red_stride[0] = 1;
    let mut stride = g.chunks;
    for d in (0..kept.len()).rev() {
        second.kept_in[d] = stride;
        stride *= g.kept_shape[d];
    }
    let f = cuda.kernel(&format!("reduce {name} {pt} {}", out.dtype), || reduce_source(op, pt, out.dtype))?;
    launch_reduce(cuda, name, &f, &second, &partial, out.buffer)
}

fn launch_reduce(
    cuda: &Cuda,
    name: &'static str,
    f: &cudarc::driver::CudaFunction,
    g: &ReduceGeometry,
    x: &CudaBuffer,
    y: &mut CudaBuffer,
) -> Result<()> {
    let items = (g.outputs * g.chunks) as u64;
    // Rows: 256 / group outputs to a block; columns: one per thread (four with `vec4`).
    let cfg = match (g.rows, g.vec4) {
        (1, _) => cuda.linear(items, 256 / g.group as u64, 16),
        (_, 1) => cuda.linear(items / 4, 256, 32),
        _ => cuda.linear(items, 256, 32),
    };
    let mut b = cuda.stream.launch_builder(f);
    b.arg(x.slice()).arg(y.slice_mut()).arg(g);
    // SAFETY: parameters as `STRATA_REDUCE` declares them; the geometry stays inside the
    // operands, which were checked against their buffers (the scratch array is sized for it).
    cuda.timed(name, || unsafe { b.launch(cfg) })
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn scan(
    cuda: &Cuda,
    op: ScanOp,
    axis: usize,
    reverse: bool,
    inclusive: bool,
    x: TensorRef<'_, CudaBuffer>,
    out: TensorMut<'_, CudaBuffer>,
) -> Result<()> {
    let name = op.name();
    validate_scan(op, axis, &x, &out)?;
    Cuda::types(name, &[x.dtype])?;
    let (xs, os) = (x.layout, out.layout);
    if xs.numel() == 0 {
        return Ok(());
    }
    if xs.ndim() > MAX_DIMS + 1 {
        return Err(too_many_dims(name, xs.ndim()));
    }
    let mut g = ScanGeometry {
        n: xs.shape().get(axis).map_or(1, |&n| n as i64),
        reverse: i32::from(reverse),
        inclusive: i32::from(inclusive),
        in_offset: xs.offset() as i64,
        out_offset: os.offset() as i64,
        in_stride: xs.strides().get(axis).map_or(0, |&s| s as i64),
        out_stride: os.strides().get(axis).map_or(0, |&s| s as i64),
        ..Default::default()
    };
    let mut d = 0;
    for a in (0..xs.ndim()).filter(|&a| a != axis) {
        (g.lane_shape[d], g.lane_in[d], g.lane_out[d]) =
            (xs.shape()[a] as i64, xs.strides()[a] as i64, os.strides()[a] as i64);
        d += 1;
    }
    g.nlane = d as i32;
    g.lanes = g.lane_shape[..d].iter().product();
    // Long lanes whose elements are adjacent get a block each; otherwise a thread walks a lane
    // (adjacent threads on adjacent lanes, so their loads coalesce).
    g.walker = i32::from(g.n >= 256 && g.in_stride.abs() == 1);
    // ... or a warp each, with 16-byte loads and stores, where every lane runs forward from a
    // 4-aligned start (no block barriers: on an H200 this took cumsum along 16384 rows from
    // 0.71 to 0.93 of copy bandwidth), and there are lanes enough to give each multiprocessor
    // half the warps it holds (fewer keep a block each: a block keeps eight times a warp's
    // loads in flight on its lane; the threshold is reasoned, not measured).
    let aligned = |v: i64| v % 4 == 0;
    let lane_strides_aligned =
        (0..d).filter(|&a| g.lane_shape[a] > 1).all(|a| aligned(g.lane_in[a]) && aligned(g.lane_out[a]));
    if g.walker == 1
        && !reverse
        && g.in_stride == 1
        && g.out_stride == 1
        && aligned(g.in_offset)
        && aligned(g.out_offset)
        && lane_strides_aligned
        && g.lanes >= 32 * i64::from(cuda.sms)
    {
        g.walker = 2;
    }
    let f = cuda.kernel(&format!("scan {name} {}", x.dtype), || scan_source(op, x.dtype))?;
    let lanes = g.lanes as u64;
    let cfg = match g.walker {
        0 => cuda.linear(lanes, 256, 32),
        1 => cuda.linear(lanes, 1, 16),
        _ => cuda.linear(lanes, 8, 16),
    };
    let mut b = cuda.stream.launch_builder(&f);
    b.arg(x.buffer.slice()).arg(out.buffer.slice_mut()).arg(&g);
    // SAFETY: parameters as `STRATA_SCAN` declares them; operands checked against their buffers.
    cuda.timed(name, || unsafe { b.launch(cfg) })
}

/// Every reduction and scan kernel the backend can generate (for the NVRTC compile test).
pub(crate) fn all_sources(types: &[DType]) -> Vec<String> {
    let mut units = Vec::new();
    for &t in types {
        for &op in ReduceOp::ALL {
            let outs: Vec<DType> = match op {
                ReduceOp::All | ReduceOp::Any => vec![DType::Bool],
                ReduceOp::ArgMax | ReduceOp::ArgMin => vec![DType::U32, DType::I64],
                _ => vec![t],
            };
            for o in outs {
                if op.validate_types(t, o).is_ok() {
                    units.push(reduce_source(op, t, o));
                    let pt = partial_type(op, t);
                    if !op.is_index() && pt != t {
                        units.push(reduce_source(op, t, pt));
                        units.push(reduce_source(op, pt, o));
                    }
                }
            }
        }
        for &op in ScanOp::ALL {
            if op.output_dtype(t).is_ok() {
                units.push(scan_source(op, t));
            }
        }
    }
    units.sort();
    units.dedup();
    units
}

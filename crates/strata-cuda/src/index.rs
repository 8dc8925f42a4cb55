//! Indexing along one axis (`take_along_axis`, `scatter_add`) and Threefry random bits
//! (`kernels/index.cu`). Index values are checked on the device before anything is written: a
//! bad one costs a synchronisation and comes back as an `Err` naming it.

use cudarc::driver::{LaunchConfig, PushKernelArg};
use strata_core::kernel::{
    Backend, Layout, TensorMut, TensorRef, dense_copy, validate_argsort, validate_gather, validate_random_bits,
    validate_scatter_add,
};
use strata_core::{DType, Error, Result};

use crate::{Cuda, CudaBuffer, ELEMENTWISE, c, geometry};

const INDEX: &str = include_str!("../kernels/index.cu");
const SORT: &str = include_str!("../kernels/sort.cu");
/// The most elements a block sorts in shared memory (`STRATA_SORT_MAX` in `sort.cu`).
const SORT_MAX: usize = 4096;

/// The unsigned type of an element's width: indexing moves bits.
fn bits_type(t: DType) -> &'static str {
    match t.bits() {
        8 => "u8",
        16 => "u16",
        32 => "u32",
        _ => "u64",
    }
}

pub(crate) fn check_source(ti: DType) -> String {
    format!("{ELEMENTWISE}{INDEX}\nSTRATA_CHECK_INDICES({})\n", c(ti))
}
pub(crate) fn gather_source(t: DType, ti: DType) -> String {
    format!("{ELEMENTWISE}{INDEX}\nSTRATA_GATHER({}, {})\n", bits_type(t), c(ti))
}
pub(crate) fn scatter_source(t: DType, ti: DType) -> String {
    format!("{ELEMENTWISE}{INDEX}\nSTRATA_SCATTER_ADD({}, {})\n", c(t), c(ti))
}
pub(crate) fn argsort_source(t: DType) -> String {
    format!("{ELEMENTWISE}{SORT}\nSTRATA_ARGSORT({})\n", c(t))
}
pub(crate) fn argsort_stride_source() -> String {
    format!("{ELEMENTWISE}{SORT}\nSTRATA_ARGSORT_STRIDE\n")
}
pub(crate) fn random_source() -> String {
    format!("{ELEMENTWISE}{INDEX}\nSTRATA_RANDOM_BITS\n")
}

/// `l` with its stride along `axis` set to zero (the index supplies that coordinate).
fn without_axis(l: &Layout, shape: &[usize], axis: usize) -> Result<Layout> {
    let mut strides = l.strides().to_vec();
    strides[axis] = 0;
    Layout::new(shape, &strides, l.offset())
}

/// Errors naming the first out-of-range index, if any (synchronises).
fn check_indices(cuda: &Cuda, op: &'static str, idx: &TensorRef<'_, CudaBuffer>, size: usize) -> Result<()> {
    let n = idx.layout.numel();
    if n == 0 {
        return Ok(());
    }
    let f = cuda.kernel(&format!("check indices {}", idx.dtype), || check_source(idx.dtype))?;
    let mut bad = cuda.upload(&u64::MAX.to_le_bytes())?;
    let g = geometry(op, idx.layout, &[idx.layout])?;
    let size = size as i64;
    let mut b = cuda.stream.launch_builder(&f);
    b.arg(idx.buffer.slice()).arg(bad.slice_mut()).arg(&g).arg(&size);
    // SAFETY: parameters as `STRATA_CHECK_INDICES` declares them; the indices were checked
    // against their buffer and `bad` holds one u64.
    cuda.timed(op, || unsafe { b.launch(cuda.config(&g)) })?;
    let mut word = [0u8; 8];
    cuda.download(&bad, &mut word)?;
    let first = u64::from_le_bytes(word);
    if first == u64::MAX {
        return Ok(());
    }
    // Read the offending value back to name it.
    let shape = idx.layout.shape();
    let mut at = vec![0usize; shape.len()];
    let mut rem = first as usize;
    for d in (0..shape.len()).rev() {
        at[d] = rem % shape[d];
        rem /= shape[d];
    }
    let pos = idx.layout.position(&at) as usize;
    let w = idx.dtype.bits() as usize / 8;
    let mut raw = vec![0u8; (pos + 1) * w];
    cuda.download(idx.buffer, &mut raw)?;
    let v = &raw[pos * w..];
    let value = match idx.dtype {
        DType::I32 => i64::from(i32::from_le_bytes(v.try_into().unwrap_or_default())),
        DType::U32 => i64::from(u32::from_le_bytes(v.try_into().unwrap_or_default())),
        _ => i64::from_le_bytes(v.try_into().unwrap_or_default()),
    };
    Err(Error::InvalidArgument { op, message: format!("index {value} is out of range for an axis of size {size}") })
}

pub(crate) fn gather(
    cuda: &Cuda,
    axis: usize,
    x: TensorRef<'_, CudaBuffer>,
    idx: TensorRef<'_, CudaBuffer>,
    out: TensorMut<'_, CudaBuffer>,
) -> Result<()> {
    const OP: &str = "take_along_axis";
    validate_gather(axis, &x, &idx, &out)?;
    let size = x.layout.shape()[axis];
    check_indices(cuda, OP, &idx, size)?;
    let shape = idx.layout.shape();
    let xl = without_axis(x.layout, shape, axis)?;
    let g = geometry(OP, out.layout, &[idx.layout, &xl])?;
    if g.n == 0 {
        return Ok(());
    }
    let f =
        cuda.kernel(&format!("gather {} {}", bits_type(x.dtype), idx.dtype), || gather_source(x.dtype, idx.dtype))?;
    let (stride, size) = (x.layout.strides()[axis] as i64, size as i64);
    let mut b = cuda.stream.launch_builder(&f);
    b.arg(x.buffer.slice()).arg(idx.buffer.slice()).arg(out.buffer.slice_mut()).arg(&g).arg(&stride).arg(&size);
    // SAFETY: parameters as `STRATA_GATHER` declares them; every index was checked in range
    // and every operand against its buffer.
    cuda.timed(OP, || unsafe { b.launch(cuda.config(&g)) })
}

pub(crate) fn scatter_add(
    cuda: &Cuda,
    axis: usize,
    idx: TensorRef<'_, CudaBuffer>,
    updates: TensorRef<'_, CudaBuffer>,
    out: TensorMut<'_, CudaBuffer>,
) -> Result<()> {
    const OP: &str = "scatter_add";
    validate_scatter_add(axis, &idx, &updates, &out)?;
    let size = out.layout.shape()[axis];
    check_indices(cuda, OP, &idx, size)?;
    let shape = idx.layout.shape();
    let ol = without_axis(out.layout, shape, axis)?;
    // Operand 0 (the one the iteration runs over) is the updates; the output is written
    // through atomics, so the element-wise overlap rule does not apply to it here.
    let g = geometry(OP, updates.layout, &[idx.layout, &ol])?;
    if g.n == 0 {
        return Ok(());
    }
    let f =
        cuda.kernel(&format!("scatter_add {} {}", out.dtype, idx.dtype), || scatter_source(out.dtype, idx.dtype))?;
    let (stride, size) = (out.layout.strides()[axis] as i64, size as i64);
    let mut b = cuda.stream.launch_builder(&f);
    b.arg(idx.buffer.slice()).arg(updates.buffer.slice()).arg(out.buffer.slice_mut()).arg(&g).arg(&stride).arg(&size);
    // SAFETY: parameters as `STRATA_SCATTER_ADD` declares them; indices checked in range,
    // operands against their buffers.
    cuda.timed(OP, || unsafe { b.launch(cuda.config(&g)) })
}

pub(crate) fn random_bits(cuda: &Cuda, keys: TensorRef<'_, CudaBuffer>, out: TensorMut<'_, CudaBuffer>) -> Result<()> {
    const OP: &str = "random_bits";
    validate_random_bits(&keys, &out)?;
    let (count, n) = (out.layout.shape()[0] as i64, out.layout.shape()[1] as i64);
    let work = count * (n / 2 + n % 2);
    if work == 0 {
        return Ok(());
    }
    let f = cuda.kernel("random_bits", random_source)?;
    let (s0, s1) = (keys.layout.strides()[0] as i64, keys.layout.strides()[1] as i64);
    let (ko, oo) = (keys.layout.offset() as i64, out.layout.offset() as i64);
    let mut b = cuda.stream.launch_builder(&f);
    b.arg(keys.buffer.slice()).arg(out.buffer.slice_mut()).arg(&count).arg(&n).arg(&s0).arg(&s1).arg(&ko).arg(&oo);
    let cfg = cuda.linear(work as u64, 256, 32);
    // SAFETY: parameters as `STRATA_RANDOM_BITS` declares them; keys and output checked.
    cuda.timed(OP, || unsafe { b.launch(cfg) })
}

/// Every indexing, sorting and random kernel the backend can generate (for the NVRTC compile
/// test).
pub(crate) fn all_sources() -> Vec<String> {
    let mut units = vec![random_source(), argsort_stride_source()];
    use DType::*;
    for t in [Bool, U8, I8, U16, I16, U32, I32, U64, I64, F16, BF16, F32, F64] {
        units.push(argsort_source(t));
    }
    for ti in strata_core::kernel::INDEX_TYPES {
        units.push(check_source(ti));
        for t in [DType::U8, DType::U16, DType::U32, DType::U64] {
            units.push(gather_source(t, ti));
        }
        for t in strata_core::kernel::SCATTER_TYPES {
            units.push(scatter_source(t, ti));
        }
    }
    units
}

/// The indices that sort each lane along `axis` (stable, NaNs last): a bitonic sort of (key,
/// position) pairs, in shared memory for lanes up to 4096 elements and through scratch pairs in
/// global memory for longer ones (`sort.cu` says how).
pub(crate) fn argsort(
    cuda: &Cuda,
    axis: usize,
    x: TensorRef<'_, CudaBuffer>,
    out: TensorMut<'_, CudaBuffer>,
) -> Result<()> {
    const OP: &str = "argsort";
    validate_argsort(axis, &x, &out)?;
    Cuda::types(OP, &[x.dtype])?;
    let shape = x.layout.shape();
    let n = x.layout.numel();
    if n == 0 {
        return Ok(());
    }
    let len = shape.get(axis).copied().unwrap_or(1);
    let (lanes, inner) = (n / len, shape.iter().skip(axis + 1).product::<usize>());
    let pow2 = len.next_power_of_two();
    let span = pow2.min(SORT_MAX);
    let blocks = pow2 / span;
    if len > u32::MAX as usize || lanes * blocks > i32::MAX as usize {
        return Err(Error::NotImplemented {
            op: "argsort of more than 2^31 blocks or 2^32-long lanes",
            backend: cuda.name(),
        });
    }
    let dense = |l: &Layout| l.is_contiguous() && l.offset() == 0;
    // The kernels read and write dense operands; others go through a copy.
    let contiguous = Layout::contiguous(shape);
    let xc = dense_copy(cuda, &x)?;
    let xbuf = xc.as_ref().unwrap_or(x.buffer);
    let mut oc = if dense(out.layout) { None } else { Some(cuda.alloc_output(4 * n)?) };
    // The scratch pairs of long lanes (8 + 4 bytes an element); a lane that fits takes none.
    let scratch = if blocks > 1 { lanes * pow2 } else { 1 };
    let (mut sk, mut sp) = (cuda.alloc_output(8 * scratch)?, cuda.alloc_output(4 * scratch)?);
    let sort = cuda.kernel(&format!("argsort {}", x.dtype), || argsort_source(x.dtype))?;
    let threads = (span / 2).clamp(32, 1024) as u32;
    let cfg =
        LaunchConfig { grid_dim: ((lanes * blocks) as u32, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 };
    let (len, inner, pow2, blocks, span) = (len as i64, inner as i64, pow2 as i64, blocks as i64, span as i64);
    // One pass of the block kernel: stages `first..=last`, from x or the scratch, to the
    // scratch or out.
    let mut pass = |sk: &mut CudaBuffer, sp: &mut CudaBuffer, first: i64, last: i64, from_x: i32, to_out: i32| {
        let obuf = match oc.as_mut() {
            Some(b) => b.slice_mut(),
            None => out.buffer.slice_mut(),
        };
        let mut b = cuda.stream.launch_builder(&sort);
        b.arg(xbuf.slice()).arg(obuf).arg(sk.slice_mut()).arg(sp.slice_mut());
        b.arg(&len).arg(&inner).arg(&pow2).arg(&blocks).arg(&first).arg(&last).arg(&from_x).arg(&to_out).arg(&span);
        // SAFETY: parameters as `STRATA_ARGSORT` declares them; x and out are dense with n
        // elements (checked by validate_argsort or made so above), the scratch holds every
        // lane's pow2 pairs when a lane takes several blocks (and is not touched otherwise), and
        // the grid has a block per span of each lane.
        cuda.timed(OP, || unsafe { b.launch(cfg) })
    };
    // Stages up to the span, in shared memory; for a lane that fits, the whole sort.
    pass(&mut sk, &mut sp, 2, span, 1, i32::from(blocks == 1))?;
    if blocks > 1 {
        // Each later stage: its long strides over the scratch, then its short ones block by
        // block (the last stage writing the positions out).
        let step = cuda.kernel("argsort stride", argsort_stride_source)?;
        let pairs = lanes as i64 * pow2 / 2;
        let grid = (pairs as u64).div_ceil(256).min(1 << 20) as u32;
        let mut size = 2 * span;
        while size <= pow2 {
            let mut stride = size / 2;
            while stride >= span {
                let mut b = cuda.stream.launch_builder(&step);
                b.arg(sk.slice_mut()).arg(sp.slice_mut()).arg(&pairs).arg(&pow2).arg(&size).arg(&stride);
                let cfg = LaunchConfig { grid_dim: (grid, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
                // SAFETY: parameters as `STRATA_ARGSORT_STRIDE` declares them; the scratch
                // holds lanes · pow2 pairs, and every pair index is below that.
                cuda.timed(OP, || unsafe { b.launch(cfg) })?;
                stride /= 2;
            }
            pass(&mut sk, &mut sp, size, size, 0, i32::from(size == pow2))?;
            size *= 2;
        }
    }
    if let Some(tmp) = oc {
        cuda.copy(TensorRef::new(DType::U32, &tmp, &contiguous), out)?;
    }
    Ok(())
}

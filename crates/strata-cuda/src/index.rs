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
/// The longest lane the shared-memory sort takes (`STRATA_SORT_MAX` in `sort.cu`).
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
    let mut units = vec![random_source()];
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

/// The indices that sort each lane along `axis` (stable, NaNs last): a block per lane, a
/// bitonic sort of (key, position) pairs in shared memory. Lanes longer than 4096 elements are
/// `Error::NotImplemented` (the array layer then sorts on the CPU, visibly).
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
    if len > SORT_MAX {
        return Err(Error::NotImplemented { op: "argsort of lanes longer than 4096", backend: cuda.name() });
    }
    let inner: usize = shape.iter().skip(axis + 1).product();
    let dense = |l: &Layout| l.is_contiguous() && l.offset() == 0;
    // The kernel reads and writes dense operands; others go through a copy.
    let contiguous = Layout::contiguous(shape);
    let xc = dense_copy(cuda, &x)?;
    let xbuf = xc.as_ref().unwrap_or(x.buffer);
    let mut oc = if dense(out.layout) { None } else { Some(cuda.alloc_output(4 * n)?) };
    let f = cuda.kernel(&format!("argsort {}", x.dtype), || argsort_source(x.dtype))?;
    let (len64, inner64, pow2) = (len as i64, inner as i64, len.next_power_of_two() as i64);
    let threads = (len.next_power_of_two() / 2).clamp(32, 1024) as u32;
    let cfg = LaunchConfig { grid_dim: ((n / len) as u32, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 };
    {
        let obuf = match oc.as_mut() {
            Some(b) => b.slice_mut(),
            None => out.buffer.slice_mut(),
        };
        let mut b = cuda.stream.launch_builder(&f);
        b.arg(xbuf.slice()).arg(obuf).arg(&len64).arg(&inner64).arg(&pow2);
        // SAFETY: parameters as `STRATA_ARGSORT` declares them; both operands are dense with n
        // elements (checked by validate_argsort or made so above), one block per lane.
        cuda.timed(OP, || unsafe { b.launch(cfg) })?;
    }
    if let Some(tmp) = oc {
        cuda.copy(TensorRef::new(DType::U32, &tmp, &contiguous), out)?;
    }
    Ok(())
}

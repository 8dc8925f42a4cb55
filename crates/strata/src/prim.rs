//! The primitives of the array graph and how each runs on a backend.
//!
//! A primitive is defined once: its variant here (with `eval`, the kernel it runs), its shape
//! and type rule in the op that creates it (`ops.rs`, so errors surface at the call), and its
//! derivative rules in `autodiff.rs`. Views (reshape of a contiguous array, transpose,
//! broadcast, slice) run no kernel: they share their input's buffer under a new layout.

use std::sync::Arc;

use strata_core::kernel::{
    Attention, Backend, BinaryOp, Conv, Fused, Layout, Matmul2d, ReduceOp, ScanOp, TensorMut, TensorRef, UnaryOp,
};
use strata_core::{DType, Result};
use strata_cpu::{Cpu, CpuBuffer};

use crate::device::Device;
use crate::graph::{Array, Buffer, Data, internal};

/// A node's operation. The output's shape and dtype are the node's.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Prim {
    /// Data given at creation (no inputs).
    Constant,
    /// The value of its input unchanged (a transform's handle on an argument).
    Identity,
    /// The value of its input, through which no derivative flows.
    StopGradient,
    Unary(UnaryOp),
    /// Two operands of the output's shape (already broadcast).
    Binary(BinaryOp),
    /// `cond ? a : b`, all of the output's shape.
    Select,
    /// A reduction over these axes, kept with size 1.
    Reduce(ReduceOp, Vec<usize>),
    Scan {
        op: ScanOp,
        axis: usize,
        reverse: bool,
        inclusive: bool,
    },
    /// Conversion to the node's dtype.
    Cast,
    /// `[..., m, k] · [..., k, n]` with equal batch axes.
    Matmul,
    /// `(sₐ ⊗ s_b) ∘ (a·b)` of `[a, b, sₐ, s_b]`: fp8 `[m, k]` and `[k, n]`, f32 scales `[]` or
    /// `[m]` and `[]` or `[n]`.
    ScaledMatmul,
    /// A convolution of a channels-last input by an HWIO weight (the kernel layer's layouts).
    Conv(Conv),
    /// Scaled dot-product attention of `[q, k, v]` or `[q, k, v, mask]`.
    Attention(Attention),
    /// `x·Wᵀ` (or `x·W`) with a quantized `W`, dequantized inside the kernel.
    QuantizedMatmul {
        weight: crate::quantized::QuantizedArray,
        transpose: bool,
    },
    /// Same elements, the node's shape.
    Reshape,
    /// Axes permuted: output axis `i` is input axis `perm[i]`.
    Transpose(Vec<usize>),
    /// Broadcast to the node's shape (input axes aligned right).
    Broadcast,
    /// Elements `start + i·step` along each axis (the node's shape says how many).
    Slice {
        start: Vec<usize>,
        step: Vec<isize>,
    },
    /// A copy of input 0 with `Slice { start, step }` of it replaced by input 1.
    SliceUpdate {
        start: Vec<usize>,
        step: Vec<isize>,
    },
    /// The inputs joined along an axis.
    Concat(usize),
    /// `x[.., idx[.., j, ..], ..]` along an axis (inputs `[x, idx]`, output of idx's shape).
    Gather(usize),
    /// A copy of input 0 with input 2 added at the positions input 1 names along an axis.
    ScatterAdd(usize),
    /// Threefry random bits from the keys `[K, 2]` into `[K, N]` uint32.
    RandomBits,
    /// The uint32 indices that sort the input along an axis (stable, NaNs last). Sorting is
    /// this and a `Gather`, so only this needs a kernel and derivatives come from `Gather`'s.
    ArgSort(usize),
    /// An element-wise program over inputs of the node's shape (made by `compile`).
    Fused(Arc<Fused>),
    /// An output of a function with its own derivative rule (`custom_vjp`, `checkpoint`); it
    /// is evaluated by running the function (`graph.rs`), not by a kernel.
    Custom(crate::custom::CustomOutput),
    /// The result of an operator expression that failed (`a + b` cannot return a `Result`):
    /// evaluating it, or using it in an op, returns the error.
    Error(strata_core::Error),
}

impl Prim {
    /// The name shown in errors and traces.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Prim::Constant => "constant",
            Prim::Identity => "identity",
            Prim::StopGradient => "stop_gradient",
            Prim::Unary(op) => op.name(),
            Prim::Binary(op) => op.name(),
            Prim::Select => "where",
            Prim::Reduce(op, _) => op.name(),
            Prim::Scan { op, .. } => op.name(),
            Prim::Cast => "astype",
            Prim::Matmul => "matmul",
            Prim::ScaledMatmul => "scaled_matmul",
            Prim::Conv(_) => "conv",
            Prim::Attention(_) => "scaled_dot_product_attention",
            Prim::QuantizedMatmul { .. } => "quantized_matmul",
            Prim::Reshape => "reshape",
            Prim::Transpose(_) => "transpose",
            Prim::Broadcast => "broadcast_to",
            Prim::Slice { .. } => "slice",
            Prim::SliceUpdate { .. } => "slice_update",
            Prim::Concat(_) => "concatenate",
            Prim::Fused(_) => "fused",
            Prim::Custom(_) => "custom",
            Prim::Gather(_) => "take_along_axis",
            Prim::RandomBits => "random_bits",
            Prim::ArgSort(_) => "argsort",
            Prim::ScatterAdd(_) => "scatter_add",
            Prim::Error(_) => "error",
        }
    }
}

/// A backend the array layer can hold buffers of.
trait DeviceBackend: Backend<Quantized: 'static> + 'static {
    fn unwrap(b: &Buffer) -> &Self::Buffer;
    fn wrap(b: Self::Buffer) -> Buffer;
}

// `eval` moves every input to the node's device first, so a buffer of another kind here is a
// bug in this module, not something a caller can cause.
impl DeviceBackend for Cpu {
    fn unwrap(b: &Buffer) -> &CpuBuffer {
        match b {
            Buffer::Cpu(b) => b,
            #[allow(unreachable_patterns)]
            _ => unreachable!("inputs are moved to the node's device before it runs"),
        }
    }
    fn wrap(b: CpuBuffer) -> Buffer {
        Buffer::Cpu(b)
    }
}

#[cfg(feature = "cuda")]
impl DeviceBackend for strata_cuda::Cuda {
    fn unwrap(b: &Buffer) -> &strata_cuda::CudaBuffer {
        match b {
            Buffer::Cuda(b) => b,
            _ => unreachable!("inputs are moved to the node's device before it runs"),
        }
    }
    fn wrap(b: strata_cuda::CudaBuffer) -> Buffer {
        Buffer::Cuda(b)
    }
}

#[cfg(feature = "wgpu")]
impl DeviceBackend for strata_wgpu::Wgpu {
    fn unwrap(b: &Buffer) -> &strata_wgpu::WgpuBuffer {
        match b {
            Buffer::Wgpu(b) => b,
            _ => unreachable!("inputs are moved to the node's device before it runs"),
        }
    }
    fn wrap(b: strata_wgpu::WgpuBuffer) -> Buffer {
        Buffer::Wgpu(b)
    }
}

/// Runs `node`'s primitive on evaluated inputs.
/// `dtypes` are the inputs' element types.
pub(crate) fn eval(node: &Array, inputs: &[&Data], dtypes: &[DType]) -> Result<Data> {
    let device = node.device();
    let moved: Vec<Option<Data>> = inputs
        .iter()
        .map(|d| if d.buffer.device() == device { Ok(None) } else { to_device(d, device).map(Some) })
        .collect::<Result<_>>()?;
    let inputs: Vec<&Data> = inputs.iter().zip(&moved).map(|(d, m)| m.as_ref().unwrap_or(d)).collect();
    match device {
        Device::Cpu => eval_on(&Cpu, node, &inputs, dtypes),
        #[cfg(feature = "cuda")]
        Device::Cuda => or_cpu(node, &inputs, dtypes, eval_on(crate::device::cuda()?, node, &inputs, dtypes)),
        #[cfg(feature = "wgpu")]
        Device::Wgpu => or_cpu(node, &inputs, dtypes, eval_on(crate::device::wgpu()?, node, &inputs, dtypes)),
    }
}

/// `r`, or where the device said it has no kernel for the primitive, the primitive run on
/// the CPU (unless `STRATA_FALLBACK=error`).
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn or_cpu(node: &Array, inputs: &[&Data], dtypes: &[DType], r: Result<Data>) -> Result<Data> {
    match r {
        Err(strata_core::Error::NotImplemented { op, backend }) if crate::device::cpu_fallback() => {
            cpu_fallback_notice(op, &backend);
            let moved = inputs.iter().map(|d| to_device(d, Device::Cpu)).collect::<Result<Vec<_>>>()?;
            let out = eval_on(&Cpu, node, &moved.iter().collect::<Vec<_>>(), dtypes)?;
            to_device(&out, node.device())
        }
        r => r,
    }
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
/// Says once per primitive on stderr, and every time in the flight recorder (a `cpu fallback`
/// instant), that a primitive ran on the CPU because its device has no kernel for it.
fn cpu_fallback_notice(op: &'static str, backend: &str) {
    static SAID: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    strata_trace::instant("cpu fallback");
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if !said.contains(&op) {
        said.push(op);
        eprintln!(
            "strata: {op} has no kernel on {backend} yet; it runs on the CPU (inputs and result copied). STRATA_FALLBACK=error makes this an error."
        );
    }
}

/// `d`'s buffer copied to `device` (the same layout over it), recorded in the flight recorder.
fn to_device(d: &Data, device: Device) -> Result<Data> {
    let len = d.buffer.byte_len();
    strata_trace::instant("cross-device copy");
    let bytes = d.buffer.host_bytes(len)?;
    Ok(Data { buffer: Arc::new(crate::array::upload(&bytes, device)?), layout: d.layout.clone() })
}

fn operand<'a, B: DeviceBackend>(d: &'a Data, dtype: DType) -> TensorRef<'a, B::Buffer> {
    TensorRef::new(dtype, B::unwrap(&d.buffer), &d.layout)
}

/// A fresh contiguous output, filled by `f` (which writes every element).
fn fresh<B: DeviceBackend>(
    backend: &B,
    shape: &[usize],
    dtype: DType,
    f: impl FnOnce(TensorMut<'_, B::Buffer>) -> Result<()>,
) -> Result<Data> {
    fresh_with(backend, shape, dtype, |buffer, layout| f(TensorMut::new(dtype, buffer, layout)))
}

/// A fresh contiguous output that `f` fills in several writes (every element at least once),
/// each through its own view of the buffer.
fn fresh_with<B: DeviceBackend>(
    backend: &B,
    shape: &[usize],
    dtype: DType,
    f: impl FnOnce(&mut B::Buffer, &Layout) -> Result<()>,
) -> Result<Data> {
    let layout = Layout::contiguous(shape);
    let mut buffer = backend.alloc_output(dtype.byte_len(layout.numel()))?;
    f(&mut buffer, &layout)?;
    Ok(Data { buffer: Arc::new(B::wrap(buffer)), layout })
}

/// `d`'s elements in a contiguous buffer (itself if already so).
fn contiguous<B: DeviceBackend>(backend: &B, d: &Data, dtype: DType) -> Result<Data> {
    if d.layout.is_contiguous() {
        return Ok(d.clone());
    }
    fresh(backend, d.layout.shape(), dtype, |out| backend.copy(operand::<B>(d, dtype), out))
}

fn view(d: &Data, layout: Layout) -> Data {
    Data { buffer: d.buffer.clone(), layout }
}

/// The layout of `Slice { start, step }` of `l` with `shape`.
pub(crate) fn slice_layout(l: &Layout, start: &[usize], step: &[isize], shape: &[usize]) -> Result<Layout> {
    let mut offset = l.offset() as isize;
    let mut strides = Vec::with_capacity(shape.len());
    for ((&s, &st), &stride) in start.iter().zip(step).zip(l.strides()) {
        offset += s as isize * stride;
        strides.push(stride * st);
    }
    Layout::new(shape, &strides, offset as usize)
}

fn eval_on<B: DeviceBackend>(b: &B, node: &Array, inputs: &[&Data], dtypes: &[DType]) -> Result<Data> {
    let (shape, dtype) = (node.shape(), node.dtype());
    let arg = |i: usize| operand::<B>(inputs[i], dtypes[i]);
    match node.prim() {
        Prim::Constant => Err(internal("a constant without data")),
        Prim::Custom(_) => Err(internal("a custom function reached a backend")),
        Prim::Error(e) => Err(e.clone()),
        Prim::RandomBits => fresh(b, shape, dtype, |out| b.random_bits(arg(0), out)),
        Prim::ArgSort(axis) => fresh(b, shape, dtype, |out| b.argsort(*axis, arg(0), out)),
        Prim::Gather(axis) => fresh(b, shape, dtype, |out| b.gather(*axis, arg(0), arg(1), out)),
        Prim::ScatterAdd(axis) => fresh_with(b, shape, dtype, |buffer, layout| {
            b.copy(arg(0), TensorMut::new(dtype, buffer, layout))?;
            b.scatter_add(*axis, arg(1), arg(2), TensorMut::new(dtype, buffer, layout))
        }),
        Prim::Fused(program) => {
            let args: Vec<_> = (0..inputs.len()).map(arg).collect();
            fresh(b, shape, dtype, |out| b.fused(program, &args, out))
        }
        Prim::Identity | Prim::StopGradient => Ok(inputs[0].clone()),
        Prim::Unary(op) => fresh(b, shape, dtype, |out| b.unary(*op, arg(0), out)),
        Prim::Binary(op) => fresh(b, shape, dtype, |out| b.binary(*op, arg(0), arg(1), out)),
        Prim::Select => fresh(b, shape, dtype, |out| b.select(arg(0), arg(1), arg(2), out)),
        Prim::Reduce(op, axes) => fresh(b, shape, dtype, |out| b.reduce(*op, axes, arg(0), out)),
        Prim::Scan { op, axis, reverse, inclusive } => {
            fresh(b, shape, dtype, |out| b.scan(*op, *axis, *reverse, *inclusive, arg(0), out))
        }
        Prim::Cast => fresh(b, shape, dtype, |out| b.cast(arg(0), out)),
        Prim::Matmul => {
            let (l, r) = (arg(0), arg(1));
            let desc = Matmul2d::for_operands(l.layout, r.layout, false, false)?;
            fresh(b, shape, dtype, |out| b.matmul2d(&desc, l, r, None, None, out))
        }
        Prim::ScaledMatmul => {
            let (l, r) = (arg(0), arg(1));
            let desc = Matmul2d::for_operands(l.layout, r.layout, false, false)?;
            let scales = strata_core::kernel::Scales { left: arg(2), right: arg(3) };
            fresh(b, shape, dtype, |out| b.matmul2d(&desc, l, r, None, Some(scales), out))
        }
        Prim::Conv(desc) => fresh(b, shape, dtype, |out| b.conv(desc, arg(0), arg(1), out)),
        Prim::QuantizedMatmul { weight, transpose } => {
            let q = weight.resident(b)?;
            let desc = strata_core::kernel::QuantizedMatmul { transpose: *transpose };
            fresh(b, shape, dtype, |out| b.quantized_matmul(&desc, arg(0), &q, out))
        }
        Prim::Attention(desc) => {
            let mask = (inputs.len() > 3).then(|| arg(3));
            fresh(b, shape, dtype, |out| b.attention(desc, arg(0), arg(1), arg(2), mask, out))
        }
        Prim::Reshape => {
            let d = contiguous(b, inputs[0], dtype)?;
            let strides = Layout::contiguous(shape).strides().to_vec();
            Ok(view(&d, Layout::new(shape, &strides, d.layout.offset())?))
        }
        Prim::Transpose(perm) => {
            let l = &inputs[0].layout;
            let strides: Vec<isize> = perm.iter().map(|&p| l.strides()[p]).collect();
            Ok(view(inputs[0], Layout::new(shape, &strides, l.offset())?))
        }
        Prim::Broadcast => {
            let l = &inputs[0].layout;
            let lead = shape.len() - l.ndim();
            let strides: Vec<isize> = (0..shape.len())
                .map(|i| if i < lead || l.shape()[i - lead] != shape[i] { 0 } else { l.strides()[i - lead] })
                .collect();
            Ok(view(inputs[0], Layout::new(shape, &strides, l.offset())?))
        }
        Prim::Slice { start, step } => Ok(view(inputs[0], slice_layout(&inputs[0].layout, start, step, shape)?)),
        Prim::SliceUpdate { start, step } => fresh_with(b, shape, dtype, |buffer, layout| {
            b.copy(arg(0), TensorMut::new(dtype, buffer, layout))?;
            let target = slice_layout(layout, start, step, inputs[1].layout.shape())?;
            b.copy(arg(1), TensorMut::new(dtype, buffer, &target))
        }),
        Prim::Concat(axis) => fresh_with(b, shape, dtype, |buffer, layout| {
            let mut at = 0;
            for (i, d) in inputs.iter().enumerate() {
                let mut start = vec![0; shape.len()];
                start[*axis] = at;
                let target = slice_layout(layout, &start, &vec![1; shape.len()], d.layout.shape())?;
                b.copy(arg(i), TensorMut::new(dtype, buffer, &target))?;
                at += d.layout.shape()[*axis];
            }
            Ok(())
        }),
    }
}

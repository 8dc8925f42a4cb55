//! The [`Backend`] trait: what a device must provide for the kernel layer (and, above it, the
//! array layer) to run on it. Operands are a backend's own buffers seen through a dtype and a
//! [`Layout`]; descriptors say what to compute and are validated the same way everywhere.

use crate::kernel::{
    Attention, BinaryOp, Conv, Fused, Layout, Matmul2d, QuantizedMatmul, ReduceOp, Scales, ScanOp, UnaryOp,
};
use crate::quant::QuantizedTensor;
use crate::{DType, Result};

/// A backend's memory: anything that knows its size in bytes.
pub trait Storage: Send + Sync {
    /// Size in bytes.
    fn byte_len(&self) -> usize;
}

/// A read-only operand: a buffer seen as elements of `dtype` laid out by `layout`.
pub struct TensorRef<'a, B> {
    /// Element type.
    pub dtype: DType,
    /// Storage.
    pub buffer: &'a B,
    /// Shape, strides and offset (in elements) over the buffer.
    pub layout: &'a Layout,
}

impl<B> Clone for TensorRef<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B> Copy for TensorRef<'_, B> {}

/// A writable operand.
pub struct TensorMut<'a, B> {
    /// Element type.
    pub dtype: DType,
    /// Storage.
    pub buffer: &'a mut B,
    /// Shape, strides and offset (in elements) over the buffer.
    pub layout: &'a Layout,
}

impl<'a, B: Storage> TensorRef<'a, B> {
    /// An operand (checked against its buffer when a kernel runs).
    pub fn new(dtype: DType, buffer: &'a B, layout: &'a Layout) -> Self {
        TensorRef { dtype, buffer, layout }
    }

    /// Errors unless every element lies inside the buffer.
    pub fn check(&self, op: &'static str, what: &str) -> Result<()> {
        check(op, what, self.dtype, self.buffer.byte_len(), self.layout)
    }
}

impl<'a, B: Storage> TensorMut<'a, B> {
    /// An operand (checked against its buffer when a kernel runs).
    pub fn new(dtype: DType, buffer: &'a mut B, layout: &'a Layout) -> Self {
        TensorMut { dtype, buffer, layout }
    }

    /// Errors unless every element lies inside the buffer.
    pub fn check(&self, op: &'static str, what: &str) -> Result<()> {
        check(op, what, self.dtype, self.buffer.byte_len(), self.layout)
    }

    /// The same operand, read-only.
    pub fn as_ref(&self) -> TensorRef<'_, B> {
        TensorRef { dtype: self.dtype, buffer: self.buffer, layout: self.layout }
    }
}

fn check(op: &'static str, what: &str, dtype: DType, bytes: usize, layout: &Layout) -> Result<()> {
    let elems = if dtype.is_packed() { bytes * 8 / dtype.bits() as usize } else { bytes / (dtype.bits() as usize / 8) };
    layout.check_fits(op, what, elems)
}

/// A device that runs the kernel layer. Every method validates its operands and returns an
/// `Err` naming the operand and the sizes for anything a caller can get wrong; nothing is
/// written unless the call is valid.
///
/// Work may be asynchronous: a method returns once the work is queued, and
/// [`download`](Backend::download) and [`synchronize`](Backend::synchronize) wait for it.
pub trait Backend: Send + Sync {
    /// The backend's memory.
    type Buffer: Storage;
    /// A quantized weight resident on the device (uploaded once, used by many products).
    type Quantized: Send + Sync;

    /// A short name for reports ("cpu", "cuda:0 (NVIDIA H100)", …).
    fn name(&self) -> String;
    /// A buffer of `bytes` bytes, zero-filled. Out of memory is `Error::OutOfMemory`.
    fn alloc(&self, bytes: usize) -> Result<Self::Buffer>;
    /// A buffer of `bytes` bytes that the caller will overwrite entirely (its contents are
    /// unspecified, which lets a backend skip clearing a reused block).
    fn alloc_output(&self, bytes: usize) -> Result<Self::Buffer> {
        self.alloc(bytes)
    }
    /// A buffer holding a copy of `bytes`.
    fn upload(&self, bytes: &[u8]) -> Result<Self::Buffer>;
    /// Copies the buffer's first `out.len()` bytes into `out`, after all queued work.
    fn download(&self, buffer: &Self::Buffer, out: &mut [u8]) -> Result<()>;
    /// Waits until all queued work is done.
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
    /// A quantized weight made resident.
    fn upload_quantized(&self, weight: &QuantizedTensor) -> Result<Self::Quantized>;

    /// [`Matmul2d`]: `out = act(left·right (+ out) + bias)`, the product scaled by `scales`
    /// (fp8 operands only) before the rest.
    fn matmul2d(
        &self,
        desc: &Matmul2d,
        left: TensorRef<'_, Self::Buffer>,
        right: TensorRef<'_, Self::Buffer>,
        bias: Option<TensorRef<'_, Self::Buffer>>,
        scales: Option<Scales<'_, Self::Buffer>>,
        out: TensorMut<'_, Self::Buffer>,
    ) -> Result<()>;
    /// [`Conv`]: N-d convolution or its transpose, channels last.
    fn conv(
        &self,
        desc: &Conv,
        input: TensorRef<'_, Self::Buffer>,
        weight: TensorRef<'_, Self::Buffer>,
        out: TensorMut<'_, Self::Buffer>,
    ) -> Result<()>;
    /// [`Attention`]: softmax(q·kᵀ·scale + mask)·v.
    fn attention(
        &self,
        desc: &Attention,
        q: TensorRef<'_, Self::Buffer>,
        k: TensorRef<'_, Self::Buffer>,
        v: TensorRef<'_, Self::Buffer>,
        mask: Option<TensorRef<'_, Self::Buffer>>,
        out: TensorMut<'_, Self::Buffer>,
    ) -> Result<()>;
    /// [`QuantizedMatmul`]: `out = x·Wᵀ` (or `x·W`), dequantizing block by block.
    fn quantized_matmul(
        &self,
        desc: &QuantizedMatmul,
        x: TensorRef<'_, Self::Buffer>,
        weight: &Self::Quantized,
        out: TensorMut<'_, Self::Buffer>,
    ) -> Result<()>;
    /// An element-wise function of one operand.
    fn unary(&self, op: UnaryOp, x: TensorRef<'_, Self::Buffer>, out: TensorMut<'_, Self::Buffer>) -> Result<()>;
    /// An element-wise function of two operands broadcast to the output's shape.
    fn binary(
        &self,
        op: BinaryOp,
        a: TensorRef<'_, Self::Buffer>,
        b: TensorRef<'_, Self::Buffer>,
        out: TensorMut<'_, Self::Buffer>,
    ) -> Result<()>;
    /// `out = cond ? a : b`, broadcast.
    fn select(
        &self,
        cond: TensorRef<'_, Self::Buffer>,
        a: TensorRef<'_, Self::Buffer>,
        b: TensorRef<'_, Self::Buffer>,
        out: TensorMut<'_, Self::Buffer>,
    ) -> Result<()>;
    /// A reduction over `axes` (the output keeps them with size 1).
    fn reduce(
        &self,
        op: ReduceOp,
        axes: &[usize],
        x: TensorRef<'_, Self::Buffer>,
        out: TensorMut<'_, Self::Buffer>,
    ) -> Result<()>;
    /// A scan along `axis`.
    #[allow(clippy::too_many_arguments)]
    fn scan(
        &self,
        op: ScanOp,
        axis: usize,
        reverse: bool,
        inclusive: bool,
        x: TensorRef<'_, Self::Buffer>,
        out: TensorMut<'_, Self::Buffer>,
    ) -> Result<()>;
    /// A [`Fused`] element-wise program.
    fn fused(
        &self,
        program: &Fused,
        inputs: &[TensorRef<'_, Self::Buffer>],
        out: TensorMut<'_, Self::Buffer>,
    ) -> Result<()>;
    /// `out[.., j, ..] = x[.., indices[.., j, ..], ..]` along `axis` (NumPy's
    /// `take_along_axis`); an out-of-range index is an error and nothing is written.
    fn gather(
        &self,
        axis: usize,
        x: TensorRef<'_, Self::Buffer>,
        indices: TensorRef<'_, Self::Buffer>,
        out: TensorMut<'_, Self::Buffer>,
    ) -> Result<()>;
    /// `out[.., indices[.., j, ..], ..] += updates[.., j, ..]` along `axis`, in place.
    fn scatter_add(
        &self,
        axis: usize,
        indices: TensorRef<'_, Self::Buffer>,
        updates: TensorRef<'_, Self::Buffer>,
        out: TensorMut<'_, Self::Buffer>,
    ) -> Result<()>;
    /// Threefry-2x32 random bits: `out` (`[K, N]` uint32) gets `N` words from each key of
    /// `keys` (`[K, 2]` uint32), in MLX's layout.
    fn random_bits(&self, keys: TensorRef<'_, Self::Buffer>, out: TensorMut<'_, Self::Buffer>) -> Result<()>;
    /// The indices (uint32) that sort each lane of `x` along `axis` ascending, stably, NaNs
    /// last (NumPy's `argsort(kind="stable")`). Backends without a sort kernel keep this
    /// default, which says so; the array layer then runs it on the CPU, visibly.
    fn argsort(&self, axis: usize, x: TensorRef<'_, Self::Buffer>, out: TensorMut<'_, Self::Buffer>) -> Result<()> {
        let _ = (axis, x, out);
        Err(crate::Error::NotImplemented { op: "argsort", backend: self.name() })
    }
    /// A copy between layouts of the same dtype and shape.
    fn copy(&self, x: TensorRef<'_, Self::Buffer>, out: TensorMut<'_, Self::Buffer>) -> Result<()>;
    /// A conversion between dtypes (same shape), with `ml_dtypes`' rules.
    fn cast(&self, x: TensorRef<'_, Self::Buffer>, out: TensorMut<'_, Self::Buffer>) -> Result<()>;
}

/// `x`'s elements copied into a dense buffer of their own (row-major from offset 0), or `None`
/// where `x` is laid out that way already: for kernels that only read dense operands.
pub fn dense_copy<B: Backend>(backend: &B, x: &TensorRef<'_, B::Buffer>) -> Result<Option<B::Buffer>> {
    if x.layout.is_contiguous() && x.layout.offset() == 0 {
        return Ok(None);
    }
    let contiguous = Layout::contiguous(x.layout.shape());
    let mut b = backend.alloc_output(x.dtype.byte_len(x.layout.numel()))?;
    backend.copy(*x, TensorMut::new(x.dtype, &mut b, &contiguous))?;
    Ok(Some(b))
}

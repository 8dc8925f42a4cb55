//! [`Cpu`]: this crate's kernels behind the [`Backend`] trait, for code that is generic over
//! devices (the array layer). Calls run synchronously on the calling thread and rayon's pool.

use strata_core::kernel::{
    Attention, Backend, BinaryOp, Conv, Fused, Matmul2d, QuantizedMatmul, ReduceOp, Scales, ScanOp, UnaryOp,
};
use strata_core::quant::QuantizedTensor;
use strata_core::{Error, Result};

use crate::{CpuBuffer, TensorMut, TensorRef};

/// The CPU backend.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu;

impl Backend for Cpu {
    type Buffer = CpuBuffer;
    type Quantized = QuantizedTensor;

    fn name(&self) -> String {
        "cpu".into()
    }
    fn alloc(&self, bytes: usize) -> Result<CpuBuffer> {
        CpuBuffer::zeros(bytes)
    }
    fn alloc_output(&self, bytes: usize) -> Result<CpuBuffer> {
        CpuBuffer::for_output(bytes)
    }
    fn upload(&self, bytes: &[u8]) -> Result<CpuBuffer> {
        CpuBuffer::from_slice(bytes)
    }
    fn download(&self, buffer: &CpuBuffer, out: &mut [u8]) -> Result<()> {
        let src = buffer.as_bytes().get(..out.len()).ok_or_else(|| Error::InvalidArgument {
            op: "download",
            message: format!("asked for {} bytes of a {}-byte buffer", out.len(), buffer.len()),
        })?;
        out.copy_from_slice(src);
        Ok(())
    }
    fn upload_quantized(&self, weight: &QuantizedTensor) -> Result<QuantizedTensor> {
        Ok(weight.clone())
    }
    fn matmul2d(
        &self,
        desc: &Matmul2d,
        left: TensorRef<'_>,
        right: TensorRef<'_>,
        bias: Option<TensorRef<'_>>,
        scales: Option<Scales<'_, CpuBuffer>>,
        out: TensorMut<'_>,
    ) -> Result<()> {
        crate::matmul2d(desc, left, right, bias, scales, out)
    }
    fn conv(&self, desc: &Conv, input: TensorRef<'_>, weight: TensorRef<'_>, out: TensorMut<'_>) -> Result<()> {
        crate::conv(desc, input, weight, out)
    }
    fn attention(
        &self,
        desc: &Attention,
        q: TensorRef<'_>,
        k: TensorRef<'_>,
        v: TensorRef<'_>,
        mask: Option<TensorRef<'_>>,
        out: TensorMut<'_>,
    ) -> Result<()> {
        crate::attention(desc, q, k, v, mask, out)
    }
    fn quantized_matmul(
        &self,
        desc: &QuantizedMatmul,
        x: TensorRef<'_>,
        weight: &QuantizedTensor,
        out: TensorMut<'_>,
    ) -> Result<()> {
        crate::quantized_matmul(desc, x, weight, out)
    }
    fn unary(&self, op: UnaryOp, x: TensorRef<'_>, out: TensorMut<'_>) -> Result<()> {
        crate::unary(op, x, out)
    }
    fn binary(&self, op: BinaryOp, a: TensorRef<'_>, b: TensorRef<'_>, out: TensorMut<'_>) -> Result<()> {
        crate::binary(op, a, b, out)
    }
    fn select(&self, cond: TensorRef<'_>, a: TensorRef<'_>, b: TensorRef<'_>, out: TensorMut<'_>) -> Result<()> {
        crate::select(cond, a, b, out)
    }
    fn reduce(&self, op: ReduceOp, axes: &[usize], x: TensorRef<'_>, out: TensorMut<'_>) -> Result<()> {
        crate::reduce(op, axes, x, out)
    }
    fn scan(
        &self,
        op: ScanOp,
        axis: usize,
        reverse: bool,
        inclusive: bool,
        x: TensorRef<'_>,
        out: TensorMut<'_>,
    ) -> Result<()> {
        crate::scan(op, axis, reverse, inclusive, x, out)
    }
    fn fused(&self, program: &Fused, inputs: &[TensorRef<'_>], out: TensorMut<'_>) -> Result<()> {
        crate::fused(program, inputs, out)
    }
    fn gather(&self, axis: usize, x: TensorRef<'_>, indices: TensorRef<'_>, out: TensorMut<'_>) -> Result<()> {
        crate::gather(axis, x, indices, out)
    }
    fn scatter_add(
        &self,
        axis: usize,
        indices: TensorRef<'_>,
        updates: TensorRef<'_>,
        out: TensorMut<'_>,
    ) -> Result<()> {
        crate::scatter_add(axis, indices, updates, out)
    }
    fn argsort(&self, axis: usize, x: TensorRef<'_>, out: TensorMut<'_>) -> Result<()> {
        crate::argsort(axis, x, out)
    }
    fn random_bits(&self, keys: TensorRef<'_>, out: TensorMut<'_>) -> Result<()> {
        crate::random_bits(keys, out)
    }
    fn copy(&self, x: TensorRef<'_>, out: TensorMut<'_>) -> Result<()> {
        crate::copy(x, out)
    }
    fn cast(&self, x: TensorRef<'_>, out: TensorMut<'_>) -> Result<()> {
        crate::cast(x, out)
    }
}

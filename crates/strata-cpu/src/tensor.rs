//! Operands of the CPU kernels: a buffer, an element type and a layout.

use strata_core::kernel::Layout;
use strata_core::{DType, Result};

use crate::CpuBuffer;

/// A read-only tensor operand.
#[derive(Clone, Copy)]
pub struct TensorRef<'a> {
    /// Element type.
    pub dtype: DType,
    /// Storage.
    pub buffer: &'a CpuBuffer,
    /// Shape, strides and offset (in elements) over the buffer.
    pub layout: &'a Layout,
}

/// A writable tensor operand.
pub struct TensorMut<'a> {
    /// Element type.
    pub dtype: DType,
    /// Storage.
    pub buffer: &'a mut CpuBuffer,
    /// Shape, strides and offset (in elements) over the buffer.
    pub layout: &'a Layout,
}

impl<'a> TensorRef<'a> {
    /// An operand, checked to lie inside its buffer.
    pub fn new(dtype: DType, buffer: &'a CpuBuffer, layout: &'a Layout) -> Self {
        TensorRef { dtype, buffer, layout }
    }

    /// Errors unless every element lies inside the buffer.
    pub fn check(&self, op: &'static str, what: &str) -> Result<()> {
        check(op, what, self.dtype, self.buffer.len(), self.layout)
    }
}

impl<'a> TensorMut<'a> {
    /// An operand, checked to lie inside its buffer.
    pub fn new(dtype: DType, buffer: &'a mut CpuBuffer, layout: &'a Layout) -> Self {
        TensorMut { dtype, buffer, layout }
    }

    /// Errors unless every element lies inside the buffer.
    pub fn check(&self, op: &'static str, what: &str) -> Result<()> {
        check(op, what, self.dtype, self.buffer.len(), self.layout)
    }
}

fn check(op: &'static str, what: &str, dtype: DType, bytes: usize, layout: &Layout) -> Result<()> {
    let elems = if dtype.is_packed() { bytes * 8 / dtype.bits() as usize } else { bytes / (dtype.bits() as usize / 8) };
    layout.check_fits(op, what, elems)
}

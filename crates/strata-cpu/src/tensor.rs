//! Operands of the CPU kernels: a [`CpuBuffer`] seen through a dtype and a layout.

use crate::CpuBuffer;

/// A read-only operand in host memory.
pub type TensorRef<'a> = strata_core::kernel::TensorRef<'a, CpuBuffer>;
/// A writable operand in host memory.
pub type TensorMut<'a> = strata_core::kernel::TensorMut<'a, CpuBuffer>;

impl strata_core::kernel::Storage for CpuBuffer {
    fn byte_len(&self) -> usize {
        self.len()
    }
}

//! `strata-cpu`: Strata's CPU backend, and the reference every other backend is checked
//! against.
//!
//! Kernels take [`TensorRef`]/[`TensorMut`] operands (a [`CpuBuffer`], a dtype and a
//! [`Layout`](strata_core::kernel::Layout)) and a descriptor from `strata_core::kernel`. They
//! check their inputs and return an error for anything a caller can get wrong; past that
//! point they use SIMD (AVX-512 or AVX2/FMA chosen at run time, with a portable fallback) and
//! rayon's threads.

// Kernel code indexes several arrays by the same loop variable; iterator chains would hide
// the math they mirror.
#![allow(clippy::needless_range_loop)]

mod activation;
mod attention;
mod backend;
mod buffer;
mod cast;
mod conv;
mod elem;
mod elementwise;
mod fused;
mod gemm;
mod index;
mod math;
mod matmul;
mod qmatmul;
mod random;
mod reduce;
mod strided;
mod tensor;

pub use attention::attention;
pub use backend::Cpu;
pub use buffer::CpuBuffer;
pub use cast::{cast, copy};
pub use conv::conv;
pub use elementwise::{binary, select, unary};
pub use fused::fused;
pub use index::{argsort, gather, scatter_add};
pub use matmul::matmul2d;
pub use qmatmul::quantized_matmul;
pub use random::{random_bits, threefry2x32};
pub use reduce::{reduce, scan};
pub use tensor::{TensorMut, TensorRef};

/// The micro-kernels this CPU uses, for reports (`"avx512 12x32"`, …).
pub fn kernel_names() -> Vec<&'static str> {
    vec![gemm::kernels::f32_kernel().name, gemm::kernels::f64_kernel().name]
}

//! The kernel layer's vocabulary: tensor layouts and the descriptors that say exactly what a
//! kernel computes. A backend (`strata-cpu`, later CUDA and wgpu) runs a descriptor on
//! operands it owns; the descriptor's `validate` is the one place that checks shapes and
//! types, so every backend reports a bad call with the same message.
//!
//! The descriptors follow Apple's TensorOps (`matmul2d_descriptor`): sizes, transposes,
//! relaxed precision and a mode of multiply or multiply-accumulate, plus an epilogue.

mod attention;
mod backend;
mod conv;
mod elementwise;
mod fused;
mod index;
mod layout;
mod matmul;
mod qmatmul;

pub use attention::{Attention, AttentionDims, AttentionMask};
pub use backend::{Backend, Storage, TensorMut, TensorRef, dense_copy};
pub use conv::Conv;
pub use elementwise::{
    BinaryOp, ReduceOp, ScanOp, UnaryOp, validate_binary, validate_elementwise, validate_reduce, validate_select,
    validate_unary,
};
pub use fused::{Fused, FusedOp};
pub use index::{
    INDEX_TYPES, SCATTER_TYPES, validate_argsort, validate_gather, validate_random_bits, validate_reduce_call,
    validate_scan, validate_scatter_add, wrap_index,
};
pub use layout::Layout;
pub use matmul::{Epilogue, Matmul2d, MatmulMode, Scales, is_fp8};
pub use qmatmul::QuantizedMatmul;

/// An element-wise function applied in an epilogue (and available as a unary op).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Activation {
    /// Identity.
    #[default]
    None,
    /// `max(x, 0)`.
    Relu,
    /// `x·Φ(x)` with the exact normal CDF (`erf`).
    Gelu,
    /// GELU's tanh approximation: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
    GeluTanh,
    /// `x·σ(x)` (swish).
    Silu,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
}

impl Activation {
    /// Every activation.
    pub const ALL: [Activation; 7] = [
        Activation::None,
        Activation::Relu,
        Activation::Gelu,
        Activation::GeluTanh,
        Activation::Silu,
        Activation::Sigmoid,
        Activation::Tanh,
    ];
}

//! `strata`: NumPy-shaped arrays with lazy evaluation and function transforms, in the manner
//! of MLX.
//!
//! An [`Array`] is a cheap handle to a node of a lazy graph: ops record what to compute (and
//! check shapes and types right away), and [`Array::eval`] — or reading a value — runs it on
//! the array's device. Derivatives come from [`grad`], [`value_and_grad`], [`vjp`] and
//! [`jvp`], which compose.
//!
//! ```
//! use strata::{Array, grad};
//! // d/dx Σ sin(x)² = 2 sin(x) cos(x)
//! let f = |x: &[Array]| strata::square(&strata::sin(&x[0])?)?.sum(None, false);
//! let x = Array::from_slice(&[0.5f32, 1.0, 2.0], &[3])?;
//! let g = grad(f, &[])(&[x.clone()])?;
//! let want: Vec<f32> = [0.5f32, 1.0, 2.0].iter().map(|v| (2.0 * v).sin()).collect();
//! for (g, w) in g[0].to_vec::<f32>()?.iter().zip(&want) {
//!     assert!((g - w).abs() < 1e-6);
//! }
//! # Ok::<(), strata::Error>(())
//! ```

mod array;
mod autodiff;
mod compile;
mod conv;
mod custom;
mod device;
mod display;
mod einsum;
pub mod fast;
pub mod fft;
mod graph;
pub mod io;
pub mod linalg;
pub mod nn;
mod operators;
mod ops;
pub mod optim;
mod prim;
mod quantized;
pub mod random;
mod sort;
mod tree;
mod vmap;

pub use array::{Element, arange, eye, full, identity, linspace, ones, ones_like, tri, zeros, zeros_like};
pub use autodiff::{grad, jvp, value_and_grad, vjp};
pub use compile::{Compiled, compile};
pub use conv::{conv_general, conv_transpose1d, conv_transpose2d, conv_transpose3d, conv1d, conv2d, conv3d};
pub use custom::{checkpoint, custom_vjp};
pub use device::{Device, default_device, set_default_device};
pub use einsum::{einsum, tensordot, tensordot_axes};
pub use fft::{angle, complex, conj, imag, real};
pub use graph::{Array, EvalHandle, async_eval, eval_all, live_nodes};
pub use quantized::{
    MxElement, Numerics, QuantMode, QuantizedArray, QuantizedTensor, dequantize, quantize, quantized_matmul,
};
pub use sort::{argpartition, argsort, partition, sort, topk};
pub use tree::{Tree, value_and_grad_tree};
pub use vmap::vmap;

pub use ops::*;
pub use strata_core::kernel::{BinaryOp, Conv, ReduceOp, ScanOp, UnaryOp};
pub use strata_core::{DType, Error, Result};

// The README's examples are compiled and run as doctests here (the top crate sees them all).
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

//! `strata-core`: the ground floor of Strata.
//!
//! - [`DType`]: every element type the stack carries, from `bool` to `complex64`, including
//!   the narrow formats of the OCP Microscaling spec, with conversions that match `ml_dtypes`
//!   bit for bit ([`formats`]).
//! - [`quant`]: quantized tensors (data plane + block scale plane + optional bias plane) and
//!   `quantize`/`dequantize` for the MX modes (mxfp8, mxfp6, mxfp4, mxint8), nvfp4 and MLX's
//!   affine mode.
//! - [`Error`]: the typed error every fallible call here returns.
//!
//! ```
//! use strata_core::{DType, formats::F8E4M3, quant::{self, QuantMode}};
//!
//! assert_eq!(F8E4M3::from_f32(300.0).to_f32(), 288.0);
//! assert_eq!("e2m1".parse::<DType>()?, DType::F4E2M1);
//!
//! let x: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
//! let q = quant::quantize(&x, &[2, 32], &QuantMode::mxfp4())?;
//! let y = quant::dequantize(&q);
//! assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() <= 0.25));
//! # Ok::<(), strata_core::Error>(())
//! ```

pub mod dtype;
pub mod error;
pub mod formats;
pub mod kernel;
pub mod quant;

pub use dtype::{DType, Kind};
pub use error::{Error, Result};

//! Parameter initializers. Fans follow the weight layouts of this crate: `[out, in]` for
//! linear layers and `[out, *kernel, in]` for convolutions (fan in = `in · kernel`, fan out =
//! `out · kernel`).

use strata_core::{DType, Result};

use crate::graph::Array;
use crate::random;

/// `(fan_in, fan_out)` of a weight shape.
fn fans(shape: &[usize]) -> (f64, f64) {
    match shape {
        [] => (1.0, 1.0),
        [n] => (*n as f64, *n as f64),
        [out, mid @ .., inp] => {
            let k: usize = mid.iter().product();
            ((inp * k) as f64, (out * k) as f64)
        }
    }
}

/// An initializer, for layers that take one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Uniform in ±√(6 / (fan_in + fan_out)).
    GlorotUniform,
    /// Normal with σ = √(2 / (fan_in + fan_out)).
    GlorotNormal,
    /// Uniform in ±√(6 / fan_in) (for ReLU networks).
    HeUniform,
    /// Normal with σ = √(2 / fan_in).
    HeNormal,
    /// Uniform in ±1/√fan_in (MLX's and PyTorch's default for linear layers).
    LecunUniform,
    /// Every value the same.
    Constant(f64),
}

impl Init {
    /// A fresh array of `shape` (float32), from `key` or the global key.
    pub fn array(self, shape: &[usize], key: Option<&Array>) -> Result<Array> {
        let (fi, fo) = fans(shape);
        let t = DType::F32;
        match self {
            Init::GlorotUniform => {
                let a = (6.0 / (fi + fo)).sqrt();
                random::uniform(-a, a, shape, t, key)
            }
            Init::GlorotNormal => random::normal(shape, t, 0.0, (2.0 / (fi + fo)).sqrt(), key),
            Init::HeUniform => {
                let a = (6.0 / fi).sqrt();
                random::uniform(-a, a, shape, t, key)
            }
            Init::HeNormal => random::normal(shape, t, 0.0, (2.0 / fi).sqrt(), key),
            Init::LecunUniform => {
                let a = 1.0 / fi.sqrt();
                random::uniform(-a, a, shape, t, key)
            }
            Init::Constant(v) => crate::array::full(shape, v, t),
        }
    }
}

/// Glorot (Xavier) uniform initialization.
pub fn glorot_uniform(shape: &[usize], key: Option<&Array>) -> Result<Array> {
    Init::GlorotUniform.array(shape, key)
}

/// Glorot (Xavier) normal initialization.
pub fn glorot_normal(shape: &[usize], key: Option<&Array>) -> Result<Array> {
    Init::GlorotNormal.array(shape, key)
}

/// He (Kaiming) uniform initialization.
pub fn he_uniform(shape: &[usize], key: Option<&Array>) -> Result<Array> {
    Init::HeUniform.array(shape, key)
}

/// He (Kaiming) normal initialization.
pub fn he_normal(shape: &[usize], key: Option<&Array>) -> Result<Array> {
    Init::HeNormal.array(shape, key)
}

//! `QuantizedMatmul`: `y = x·Wᵀ` (or `x·W`) with `W` a [`QuantizedTensor`], dequantized block by
//! block inside the kernel.

use super::{Layout, Storage, TensorMut, TensorRef};
use crate::DType;
use crate::error::{Error, Result};

/// A product of a dense `x` and a quantized 2-D weight `W`.
///
/// With `transpose` (the default, MLX's convention for linear layers) `W` is `[n, k]`,
/// quantized along `k`, and `y = x·Wᵀ`; without it `W` is `[k, n]`, quantized along `n`, and
/// `y = x·W`. `x` is `[..batch, m, k]` of f32, f16 or bf16; `y` is `[..batch, m, n]` of the
/// same type or f32. The kernel never materializes the whole dequantized weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuantizedMatmul {
    /// `y = x·Wᵀ` with `W` stored `[n, k]`.
    pub transpose: bool,
}

impl Default for QuantizedMatmul {
    fn default() -> Self {
        QuantizedMatmul { transpose: true }
    }
}

impl QuantizedMatmul {
    /// `(m, n, k)` after checking the shapes and types of `x`, a weight of shape `w_shape`
    /// and the output.
    pub fn validate(
        &self,
        x: (&Layout, DType),
        w_shape: &[usize],
        out: (&Layout, DType),
    ) -> Result<(usize, usize, usize)> {
        let err = |message: String| Err(Error::InvalidArgument { op: "quantized_matmul", message });
        let [wr, wc]: [usize; 2] = match w_shape.try_into() {
            Ok(s) => s,
            Err(_) => return err(format!("the weight has shape {w_shape:?}; it must be 2-D")),
        };
        let (n, k) = if self.transpose { (wr, wc) } else { (wc, wr) };
        let xs = x.0.shape();
        if xs.len() < 2 || xs[xs.len() - 1] != k {
            return err(format!(
                "x has shape {xs:?}; the weight {w_shape:?}{} needs [.., m, {k}]",
                if self.transpose { " (transposed)" } else { "" }
            ));
        }
        let m = xs[xs.len() - 2];
        let mut want = xs.to_vec();
        *want.last_mut().expect("2-D") = n;
        if out.0.shape() != want {
            return err(format!("the output has shape {:?}; it needs {want:?}", out.0.shape()));
        }
        if !matches!(x.1, DType::F32 | DType::F16 | DType::BF16) || (out.1 != x.1 && out.1 != DType::F32) {
            return err(format!(
                "unsupported types x {} -> {} (x float32, float16 or bfloat16; output the same or float32)",
                x.1, out.1
            ));
        }
        Ok((m, n, k))
    }

    /// [`validate`](Self::validate) for a kernel call: also that `x` and the output lie inside
    /// their buffers and that no two output elements share memory. Every backend runs it
    /// before writing anything.
    pub fn validate_call<B: Storage>(
        &self,
        x: &TensorRef<'_, B>,
        w_shape: &[usize],
        out: &TensorMut<'_, B>,
    ) -> Result<(usize, usize, usize)> {
        const OP: &str = "quantized_matmul";
        let mnk = self.validate((x.layout, x.dtype), w_shape, (out.layout, out.dtype))?;
        x.check(OP, "x")?;
        out.check(OP, "the output")?;
        if !out.layout.is_non_overlapping() {
            return Err(Error::InvalidArgument { op: OP, message: "the output has elements that share memory".into() });
        }
        Ok(mnk)
    }
}

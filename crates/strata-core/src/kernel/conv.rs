//! `Conv`: 1-, 2- and 3-D convolution (and its transpose) over channels-last tensors.

use super::{Layout, Storage, TensorMut, TensorRef};
use crate::DType;
use crate::error::{Error, Result};

/// An N-D convolution, `N` = 1, 2 or 3 spatial axes, channels last.
///
/// Operands:
/// - input `[batch, *spatial, c_in]` (NHWC for 2-D);
/// - weight `[*kernel, c_in / groups, c_out]` (HWIO) for a convolution, and
///   `[*kernel, c_out / groups, c_in]` for a transposed one (the weight of the convolution it is
///   the transpose of, whose input has `c_out` channels and whose output has `c_in`);
/// - output `[batch, *out_spatial, c_out]`.
///
/// A convolution computes `out[b, o, co] = Σ in[b, o·stride + k·dilation − pad_lo, ci] ·
/// w[k, ci, co]` over the kernel window and the `c_in / groups` input channels of `co`'s
/// group. A transposed convolution is the adjoint of that map: with the same stride, dilation
/// and padding it sends an output-shaped tensor back to an input-shaped one, so
/// `⟨conv(x, w), y⟩ = ⟨x, conv_transpose(y, w)⟩` (it is the gradient of a convolution with
/// respect to its input). `output_padding` adds rows at the high end of each axis of a
/// transposed output, to reach sizes a strided convolution maps to the same output size.
///
/// ```
/// use strata_core::kernel::{Conv, Layout};
///
/// // 3x3, 64 -> 64 channels, same padding, on 8 images of 56x56.
/// let conv = Conv::new_2d([1, 1], [1, 1]);
/// let out = conv.output_shape(&[8, 56, 56, 64], &[3, 3, 64, 64])?;
/// assert_eq!(out, [8, 56, 56, 64]);
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv {
    /// Number of spatial axes: 1, 2 or 3.
    pub spatial: usize,
    /// Step between output positions, per axis.
    pub stride: [usize; 3],
    /// Step between kernel taps, per axis.
    pub dilation: [usize; 3],
    /// Zero padding `(low, high)` per axis.
    pub padding: [(usize, usize); 3],
    /// Channel groups: 1 (dense), `c_in` (depthwise), or anything dividing both channel counts.
    pub groups: usize,
    /// The transposed convolution (see above).
    pub transposed: bool,
    /// Extra high-end rows of a transposed output, per axis (less than the stride).
    pub output_padding: [usize; 3],
}

impl Conv {
    /// A convolution with `spatial` axes, stride 1, no dilation, no padding, one group.
    pub fn new(spatial: usize) -> Self {
        Conv {
            spatial,
            stride: [1; 3],
            dilation: [1; 3],
            padding: [(0, 0); 3],
            groups: 1,
            transposed: false,
            output_padding: [0; 3],
        }
    }

    /// A 2-D convolution with the given strides and symmetric padding.
    pub fn new_2d(stride: [usize; 2], padding: [usize; 2]) -> Self {
        let mut c = Conv::new(2);
        c.stride[..2].copy_from_slice(&stride);
        c.padding[0] = (padding[0], padding[0]);
        c.padding[1] = (padding[1], padding[1]);
        c
    }

    /// Sets the groups.
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// Sets the dilation of every axis.
    pub fn dilation(mut self, dilation: &[usize]) -> Self {
        self.dilation[..dilation.len()].copy_from_slice(dilation);
        self
    }

    /// Makes it transposed.
    pub fn transposed(mut self, output_padding: &[usize]) -> Self {
        self.transposed = true;
        self.output_padding[..output_padding.len()].copy_from_slice(output_padding);
        self
    }

    fn err(message: String) -> Error {
        Error::InvalidArgument { op: "conv", message }
    }

    /// `(c_in, c_out)` as the weight implies them.
    fn channels(&self, weight: &[usize]) -> (usize, usize) {
        let (a, b) = (weight[self.spatial], weight[self.spatial + 1]);
        if self.transposed { (b, a * self.groups) } else { (a * self.groups, b) }
    }

    /// The output shape for an input and weight shape, or an error saying what does not fit.
    pub fn output_shape(&self, input: &[usize], weight: &[usize]) -> Result<Vec<usize>> {
        let s = self.spatial;
        if !(1..=3).contains(&s) {
            return Err(Self::err(format!("{s} spatial axes; 1, 2 or 3 are supported")));
        }
        if input.len() != s + 2 || weight.len() != s + 2 {
            return Err(Self::err(format!(
                "a {s}-D convolution needs an input [batch, {s} spatial, channels] and a weight [{s} kernel, in, out]; got input {input:?} and weight {weight:?}"
            )));
        }
        if self.groups == 0 || self.stride[..s].contains(&0) || self.dilation[..s].contains(&0) {
            return Err(Self::err(format!(
                "groups, strides and dilations must be positive (groups {}, stride {:?}, dilation {:?})",
                self.groups,
                &self.stride[..s],
                &self.dilation[..s]
            )));
        }
        let (c_in, c_out) = self.channels(weight);
        if input[s + 1] != c_in || c_out % self.groups != 0 {
            return Err(Self::err(format!(
                "the input has {} channels but the weight {weight:?} with {} group(s) takes {c_in} and gives {c_out}{}",
                input[s + 1],
                self.groups,
                if c_out % self.groups != 0 { " (not a multiple of the groups)" } else { "" }
            )));
        }
        let mut out = vec![input[0]];
        for ax in 0..s {
            let (lo, hi) = self.padding[ax];
            let span = self.dilation[ax] * (weight[ax].max(1) - 1) + 1;
            if self.transposed {
                if self.output_padding[ax] >= self.stride[ax].max(self.dilation[ax]) {
                    return Err(Self::err(format!(
                        "output padding {} on axis {ax} must be smaller than the stride or dilation",
                        self.output_padding[ax]
                    )));
                }
                let full = (input[1 + ax].max(1) - 1) * self.stride[ax] + span + self.output_padding[ax];
                if full < lo + hi {
                    return Err(Self::err(format!(
                        "padding {lo}+{hi} on axis {ax} removes more than the {full} rows a transposed convolution produces"
                    )));
                }
                out.push(if input[1 + ax] == 0 { 0 } else { full - lo - hi });
            } else {
                let padded = input[1 + ax] + lo + hi;
                if padded < span {
                    return Err(Self::err(format!(
                        "axis {ax}: the padded input has {padded} positions but the dilated kernel spans {span}"
                    )));
                }
                out.push((padded - span) / self.stride[ax] + 1);
            }
        }
        out.push(c_out);
        Ok(out)
    }

    /// Checks a call before anything runs: types and shapes ([`validate`](Self::validate)),
    /// every operand inside its buffer, and an output whose elements do not share memory.
    pub fn validate_call<B: Storage>(
        &self,
        input: &TensorRef<'_, B>,
        weight: &TensorRef<'_, B>,
        out: &TensorMut<'_, B>,
    ) -> Result<()> {
        self.validate((input.layout, input.dtype), (weight.layout, weight.dtype), (out.layout, out.dtype))?;
        input.check("conv", "the input")?;
        weight.check("conv", "the weight")?;
        out.check("conv", "the output")?;
        if !out.layout.is_non_overlapping() {
            return Err(Self::err("the output has elements that share memory".into()));
        }
        Ok(())
    }

    /// Checks types and shapes: floating inputs of one type (f32, f64, f16, bf16), the output
    /// of that type with the shape [`output_shape`](Self::output_shape) gives.
    pub fn validate(&self, input: (&Layout, DType), weight: (&Layout, DType), out: (&Layout, DType)) -> Result<()> {
        let want = self.output_shape(input.0.shape(), weight.0.shape())?;
        if out.0.shape() != want {
            return Err(Self::err(format!(
                "the output has shape {:?}; input {:?} and weight {:?} give {want:?}",
                out.0.shape(),
                input.0.shape(),
                weight.0.shape()
            )));
        }
        let t = input.1;
        if !matches!(t, DType::F32 | DType::F64 | DType::F16 | DType::BF16) || weight.1 != t || out.1 != t {
            return Err(Self::err(format!(
                "unsupported types: input {t}, weight {}, output {} (all three float32, float64, float16 or bfloat16)",
                weight.1, out.1
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let c = Conv::new_2d([2, 2], [1, 1]);
        assert_eq!(c.output_shape(&[1, 7, 8, 3], &[3, 3, 3, 5]).unwrap(), [1, 4, 4, 5]);
        let t = Conv::new_2d([2, 2], [1, 1]).transposed(&[0, 1]);
        // The transpose maps the 4x4 output back to 7x8 (output padding picks 8 over 7).
        assert_eq!(t.output_shape(&[1, 4, 4, 5], &[3, 3, 3, 5]).unwrap(), [1, 7, 8, 3]);
        let dw = Conv::new_2d([1, 1], [1, 1]).groups(8);
        assert_eq!(dw.output_shape(&[2, 5, 5, 8], &[3, 3, 1, 8]).unwrap(), [2, 5, 5, 8]);
        let e = c.output_shape(&[1, 7, 8, 4], &[3, 3, 3, 5]).unwrap_err().to_string();
        assert!(e.contains("4 channels") && e.contains("takes 3"), "{e}");
        let e = Conv::new(2).output_shape(&[1, 2, 2, 3], &[3, 3, 3, 5]).unwrap_err().to_string();
        assert!(e.contains("spans 3"), "{e}");
        assert!(Conv::new(4).output_shape(&[1, 2, 3], &[1, 2, 3]).is_err());
        let c1 = Conv::new(1).dilation(&[2]);
        assert_eq!(c1.output_shape(&[2, 10, 4], &[3, 4, 6]).unwrap(), [2, 6, 6]);
    }
}

//! The layers: each a struct of parameter arrays with MLX's names and layouts (so weights
//! saved by MLX, or by PyTorch after a transpose of its conv weights, load by name).

use std::collections::BTreeMap;

use strata_core::{DType, Error, Result};

use super::{Init, Module, child, empty, map_of, set_leaf};
use crate::graph::Array;
use crate::ops::*;
use crate::tree::Tree;

fn invalid(op: &'static str, message: String) -> Error {
    Error::InvalidArgument { op, message }
}

/// `y + bias` where there is one.
fn plus_bias(y: Array, bias: &Option<Array>) -> Result<Array> {
    match bias {
        Some(b) => add(&y, b),
        None => Ok(y),
    }
}

/// Puts back an optional `weight` and `bias` from an update tree.
fn update_affine(p: &Tree, weight: &mut Option<Array>, bias: &mut Option<Array>) -> Result<()> {
    if let Some(w) = weight {
        set_leaf("weight", w, child(p, "weight"))?;
    }
    if let Some(b) = bias {
        set_leaf("bias", b, child(p, "bias"))?;
    }
    Ok(())
}

/// The `Module` methods of a layer whose parameters are `weight` and an optional `bias`.
macro_rules! weight_and_bias {
    () => {
        fn parameters(&self) -> Tree {
            map_of(vec![("weight", Some(&self.weight)), ("bias", self.bias.as_ref())])
        }
        fn update(&mut self, p: &Tree) -> Result<()> {
            set_leaf("weight", &mut self.weight, child(p, "weight"))?;
            if let Some(b) = &mut self.bias {
                set_leaf("bias", b, child(p, "bias"))?;
            }
            Ok(())
        }
    };
}

/// The `Module` methods of a layer without parameters.
macro_rules! no_parameters {
    () => {
        fn parameters(&self) -> Tree {
            empty()
        }
        fn update(&mut self, _: &Tree) -> Result<()> {
            Ok(())
        }
    };
}

/// Implements `trainable_parameters`/`set_frozen` for a leaf layer with a `frozen` field.
macro_rules! freezable {
    () => {
        fn trainable_parameters(&self) -> Tree {
            if self.frozen { empty() } else { self.parameters() }
        }
    };
}

/// `y = x·Wᵀ + b`, `W` of shape `[out, in]`.
#[derive(Clone, Debug)]
pub struct Linear {
    /// `[out, in]`.
    pub weight: Array,
    /// `[out]`, if any.
    pub bias: Option<Array>,
    /// Left out of `trainable_parameters`.
    pub frozen: bool,
}

impl Linear {
    /// Weights and bias uniform in ±1/√in (MLX's default).
    pub fn new(input: usize, output: usize, bias: bool) -> Result<Linear> {
        let weight = Init::LecunUniform.array(&[output, input], None)?;
        let bias = if bias {
            let a = 1.0 / (input.max(1) as f64).sqrt();
            Some(crate::random::uniform(-a, a, &[output], DType::F32, None)?)
        } else {
            None
        };
        Ok(Linear { weight, bias, frozen: false })
    }
}

impl Module for Linear {
    fn forward(&self, x: &Array) -> Result<Array> {
        plus_bias(matmul(x, &swapaxes(&self.weight, 0, 1)?)?, &self.bias)
    }
    weight_and_bias!();
    freezable!();
}

/// A lookup table: integer ids `[...]` to rows `[..., dims]` of `weight [count, dims]`.
#[derive(Clone, Debug)]
pub struct Embedding {
    /// `[count, dims]`.
    pub weight: Array,
    /// Left out of `trainable_parameters`.
    pub frozen: bool,
}

impl Embedding {
    /// Rows drawn from N(0, 1/dims)… as MLX: normal with σ = 1/√dims.
    pub fn new(count: usize, dims: usize) -> Result<Embedding> {
        let weight = crate::random::normal(&[count, dims], DType::F32, 0.0, 1.0 / (dims.max(1) as f64).sqrt(), None)?;
        Ok(Embedding { weight, frozen: false })
    }

    /// Scores against every row, `x·Wᵀ` (a tied output layer).
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        matmul(x, &swapaxes(&self.weight, 0, 1)?)
    }
}

impl Module for Embedding {
    fn forward(&self, ids: &Array) -> Result<Array> {
        take(&self.weight, ids, Some(0))
    }
    fn parameters(&self) -> Tree {
        map_of(vec![("weight", Some(&self.weight))])
    }
    fn update(&mut self, p: &Tree) -> Result<()> {
        set_leaf("weight", &mut self.weight, child(p, "weight"))
    }
    freezable!();
}

/// A 1-D convolution over `[batch, length, in]`; weight `[out, k, in / groups]`.
#[derive(Clone, Debug)]
pub struct Conv1d {
    /// `[out, k, in / groups]`.
    pub weight: Array,
    /// `[out]`, if any.
    pub bias: Option<Array>,
    /// Step, padding (both sides), dilation, groups.
    pub stride: usize,
    #[allow(missing_docs)]
    pub padding: usize,
    #[allow(missing_docs)]
    pub dilation: usize,
    #[allow(missing_docs)]
    pub groups: usize,
    /// Left out of `trainable_parameters`.
    pub frozen: bool,
}

impl Conv1d {
    /// Weights uniform in ±1/√(in·k/groups).
    pub fn new(
        input: usize,
        output: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
    ) -> Result<Conv1d> {
        let weight = Init::LecunUniform.array(&[output, kernel, input], None)?;
        let bias = if bias { Some(crate::array::zeros(&[output], DType::F32)?) } else { None };
        Ok(Conv1d { weight, bias, stride, padding, dilation: 1, groups: 1, frozen: false })
    }
}

impl Module for Conv1d {
    fn forward(&self, x: &Array) -> Result<Array> {
        let y = crate::conv::conv1d(x, &self.weight, self.stride, self.padding, self.dilation, self.groups)?;
        plus_bias(y, &self.bias)
    }
    weight_and_bias!();
    freezable!();
}

/// A 2-D convolution over NHWC input; weight `[out, kh, kw, in / groups]` (OHWI).
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// `[out, kh, kw, in / groups]`.
    pub weight: Array,
    /// `[out]`, if any.
    pub bias: Option<Array>,
    #[allow(missing_docs)]
    pub stride: [usize; 2],
    #[allow(missing_docs)]
    pub padding: [usize; 2],
    #[allow(missing_docs)]
    pub dilation: [usize; 2],
    #[allow(missing_docs)]
    pub groups: usize,
    /// Left out of `trainable_parameters`.
    pub frozen: bool,
}

impl Conv2d {
    /// A square `kernel`, weights uniform in ±1/√(in·k²).
    pub fn new(
        input: usize,
        output: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
    ) -> Result<Conv2d> {
        let weight = Init::LecunUniform.array(&[output, kernel, kernel, input], None)?;
        let bias = if bias { Some(crate::array::zeros(&[output], DType::F32)?) } else { None };
        Ok(Conv2d {
            weight,
            bias,
            stride: [stride; 2],
            padding: [padding; 2],
            dilation: [1; 2],
            groups: 1,
            frozen: false,
        })
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Array) -> Result<Array> {
        let y = crate::conv::conv2d(x, &self.weight, self.stride, self.padding, self.dilation, self.groups)?;
        plus_bias(y, &self.bias)
    }
    weight_and_bias!();
    freezable!();
}

/// An `N`-d convolution over channels-last input `[batch, *spatial, in]`, or its transpose
/// (MLX's `Conv3d` and `ConvTranspose1d/2d/3d`); weight `[out, *kernel, in / groups]` in both
/// cases, as MLX lays them out. [`Conv3d`] names the 3-d one; the transposed layers come from
/// [`ConvNd::transposed`].
#[derive(Clone, Debug)]
pub struct ConvNd<const N: usize> {
    /// `[out, *kernel, in / groups]`.
    pub weight: Array,
    /// `[out]`, if any.
    pub bias: Option<Array>,
    #[allow(missing_docs)]
    pub stride: [usize; N],
    #[allow(missing_docs)]
    pub padding: [usize; N],
    #[allow(missing_docs)]
    pub dilation: [usize; N],
    /// Extra rows at the end of a transposed convolution's output.
    pub output_padding: [usize; N],
    #[allow(missing_docs)]
    pub groups: usize,
    /// The transposed convolution (the adjoint of the forward one).
    pub transposed: bool,
    /// Left out of `trainable_parameters`.
    pub frozen: bool,
}

/// A 3-d convolution layer over `[batch, d, h, w, in]`.
pub type Conv3d = ConvNd<3>;

impl<const N: usize> ConvNd<N> {
    /// A cubic `kernel`, weights uniform in ±1/√(in·kᴺ) as MLX initializes them.
    pub fn new(input: usize, output: usize, kernel: usize, stride: usize, padding: usize, bias: bool) -> Result<Self> {
        let shape: Vec<usize> = std::iter::once(output).chain([kernel; N]).chain([input]).collect();
        let weight = Init::LecunUniform.array(&shape, None)?;
        let bias = if bias { Some(crate::array::zeros(&[output], DType::F32)?) } else { None };
        Ok(ConvNd {
            weight,
            bias,
            stride: [stride; N],
            padding: [padding; N],
            dilation: [1; N],
            output_padding: [0; N],
            groups: 1,
            transposed: false,
            frozen: false,
        })
    }

    /// The transposed convolution layer (MLX's `ConvTranspose{N}d`), initialized as `new`.
    pub fn transposed(
        input: usize,
        output: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
    ) -> Result<Self> {
        Ok(ConvNd { transposed: true, ..Self::new(input, output, kernel, stride, padding, bias)? })
    }
}

impl<const N: usize> Module for ConvNd<N> {
    fn forward(&self, x: &Array) -> Result<Array> {
        let d = crate::conv::desc_of(N, &self.stride, &self.padding, &self.dilation, self.groups);
        let d = if self.transposed { crate::conv::transposed(d, &self.output_padding) } else { d };
        plus_bias(crate::conv::conv_general(x, &self.weight, &d)?, &self.bias)
    }
    weight_and_bias!();
    freezable!();
}

impl<const N: usize> BoxedModule for ConvNd<N> {
    fn clone_box(&self) -> Box<dyn BoxedModule> {
        Box::new(self.clone())
    }
    fn set_frozen(&mut self, frozen: bool) {
        self.frozen = frozen;
    }
}

/// Layer normalization over the last axis, with a learned scale and shift.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    /// `[dims]` (ones at first), if affine.
    pub weight: Option<Array>,
    /// `[dims]` (zeros at first), if affine.
    pub bias: Option<Array>,
    #[allow(missing_docs)]
    pub eps: f32,
    /// Left out of `trainable_parameters`.
    pub frozen: bool,
}

impl LayerNorm {
    /// With `affine`, a scale and shift per feature.
    pub fn new(dims: usize, eps: f32, affine: bool) -> Result<LayerNorm> {
        let (w, b) = if affine {
            (Some(crate::array::ones(&[dims], DType::F32)?), Some(crate::array::zeros(&[dims], DType::F32)?))
        } else {
            (None, None)
        };
        Ok(LayerNorm { weight: w, bias: b, eps, frozen: false })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Array) -> Result<Array> {
        crate::fast::layer_norm(x, self.weight.as_ref(), self.bias.as_ref(), self.eps)
    }
    fn parameters(&self) -> Tree {
        map_of(vec![("weight", self.weight.as_ref()), ("bias", self.bias.as_ref())])
    }
    fn update(&mut self, p: &Tree) -> Result<()> {
        update_affine(p, &mut self.weight, &mut self.bias)
    }
    freezable!();
}

/// RMS normalization over the last axis, with a learned scale.
#[derive(Clone, Debug)]
pub struct RmsNorm {
    /// `[dims]` (ones at first).
    pub weight: Array,
    #[allow(missing_docs)]
    pub eps: f32,
    /// Left out of `trainable_parameters`.
    pub frozen: bool,
}

impl RmsNorm {
    /// A scale per feature, ones at first.
    pub fn new(dims: usize, eps: f32) -> Result<RmsNorm> {
        Ok(RmsNorm { weight: crate::array::ones(&[dims], DType::F32)?, eps, frozen: false })
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Array) -> Result<Array> {
        crate::fast::rms_norm(x, Some(&self.weight), self.eps)
    }
    fn parameters(&self) -> Tree {
        map_of(vec![("weight", Some(&self.weight))])
    }
    fn update(&mut self, p: &Tree) -> Result<()> {
        set_leaf("weight", &mut self.weight, child(p, "weight"))
    }
    freezable!();
}

/// Group normalization of channels-last input `[batch, ..., channels]`: channels split into
/// `groups`, each normalized over its channels and every position.
#[derive(Clone, Debug)]
pub struct GroupNorm {
    #[allow(missing_docs)]
    pub groups: usize,
    /// `[channels]` scale and shift.
    pub weight: Array,
    #[allow(missing_docs)]
    pub bias: Array,
    #[allow(missing_docs)]
    pub eps: f32,
    /// Left out of `trainable_parameters`.
    pub frozen: bool,
}

impl GroupNorm {
    /// `channels` split into `groups`.
    pub fn new(groups: usize, channels: usize, eps: f32) -> Result<GroupNorm> {
        if groups == 0 || !channels.is_multiple_of(groups) {
            return Err(invalid("GroupNorm", format!("{channels} channels do not split into {groups} groups")));
        }
        Ok(GroupNorm {
            groups,
            weight: crate::array::ones(&[channels], DType::F32)?,
            bias: crate::array::zeros(&[channels], DType::F32)?,
            eps,
            frozen: false,
        })
    }
}

impl Module for GroupNorm {
    fn forward(&self, x: &Array) -> Result<Array> {
        let c = *x.shape().last().unwrap_or(&0);
        if x.ndim() < 2 || c != self.weight.size() {
            return Err(invalid(
                "GroupNorm",
                format!("input {:?} needs [batch, ..., {}] channels last", x.shape(), self.weight.size()),
            ));
        }
        let b = x.shape()[0] as isize;
        let g = x.reshape(&[b, -1, self.groups as isize, (c / self.groups) as isize])?;
        let mu = mean(&g, Some(&[1, 3]), true)?;
        let d = subtract(&g, &mu)?;
        let v = mean(&square(&d)?, Some(&[1, 3]), true)?;
        let n = multiply(&d, &rsqrt(&add(&v, &weak_scalar(&v, f64::from(self.eps)))?)?)?;
        let n = reshape_to(&contiguous(&n)?, x.shape());
        add(&multiply(&n, &self.weight)?, &self.bias)
    }
    fn parameters(&self) -> Tree {
        map_of(vec![("weight", Some(&self.weight)), ("bias", Some(&self.bias))])
    }
    fn update(&mut self, p: &Tree) -> Result<()> {
        set_leaf("weight", &mut self.weight, child(p, "weight"))?;
        set_leaf("bias", &mut self.bias, child(p, "bias"))
    }
    freezable!();
}

/// Zeroes each value with probability `p` while training, scaling the rest by `1/(1−p)`; the
/// identity in evaluation mode.
#[derive(Clone, Debug)]
pub struct Dropout {
    #[allow(missing_docs)]
    pub p: f64,
    #[allow(missing_docs)]
    pub training: bool,
}

impl Dropout {
    /// Drop probability `p` in `[0, 1)`.
    pub fn new(p: f64) -> Result<Dropout> {
        if !(0.0..1.0).contains(&p) {
            return Err(invalid("Dropout", format!("p = {p}; it must be in [0, 1)")));
        }
        Ok(Dropout { p, training: true })
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Array) -> Result<Array> {
        if !self.training || self.p == 0.0 {
            return Ok(x.clone());
        }
        let keep = crate::random::bernoulli(1.0 - self.p, x.shape(), None)?.astype(x.dtype())?;
        multiply(x, &multiply(&keep, &weak_scalar(&keep, 1.0 / (1.0 - self.p)))?)
    }
    no_parameters!();
    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}

/// An element-wise activation as a layer, with `mlx.nn`'s definitions (each one MLX's
/// function of the same name, or its layer's default parameters where it takes some).
///
/// They are compositions of array ops, so they differentiate like any other graph. The ones
/// over an axis (`Glu`, `Softmax`, `Softmin`, `LogSoftmax`) act on the last one.
///
/// ```
/// use strata::{Array, nn::{Activation, Module}};
/// let x = Array::from_slice(&[-8.0f32, -0.5, 0.5, 8.0], &[4])?;
/// assert_eq!(Activation::Relu6.forward(&x)?.to_vec::<f32>()?, [0.0, 0.0, 0.5, 6.0]);
/// assert_eq!(Activation::HardTanh { min: -1.0, max: 1.0 }.forward(&x)?.to_vec::<f32>()?, [-1.0, -0.5, 0.5, 1.0]);
/// // GLU gates the first half of the last axis by the sigmoid of the second.
/// let g = Activation::Glu.forward(&Array::from_slice(&[2.0f32, 0.0], &[2])?)?;
/// assert_eq!(g.to_vec::<f32>()?, [1.0]);
/// # Ok::<(), strata::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `max(x, 0)²`.
    Relu2,
    /// `max(x, a·x)` (MLX's default slope is 0.01).
    LeakyRelu(f64),
    /// `x·Φ(x)`, Φ the normal CDF (exact, through erf).
    Gelu,
    /// GELU with the tanh approximation (MLX's `gelu_approx`).
    GeluTanh,
    /// `x·σ(1.702·x)` (MLX's `gelu_fast_approx`).
    GeluFast,
    /// `x·σ(x)` (swish).
    Silu,
    /// `σ(x) = 1 / (1 + e^−x)`.
    Sigmoid,
    /// `log σ(x) = −softplus(−x)`.
    LogSigmoid,
    /// `tanh(x)`.
    Tanh,
    /// `x` limited to `[min, max]` (MLX's defaults are −1 and 1).
    HardTanh {
        #[allow(missing_docs)]
        min: f64,
        #[allow(missing_docs)]
        max: f64,
    },
    /// `log(1 + e^x)`.
    Softplus,
    /// `x / (1 + |x|)`.
    Softsign,
    /// `x·tanh(softplus(x))`.
    Mish,
    /// `x·min(max(x + 3, 0), 6) / 6`.
    Hardswish,
    /// `x` if positive, `a·(e^x − 1)` otherwise (MLX's default `a` is 1).
    Elu(f64),
    /// `max(x, 0) + a·(e^(min(x, 0)/a) − 1)` (MLX's default `a` is 1).
    Celu(f64),
    /// `λ·elu(x, α)` with the self-normalizing constants λ ≈ 1.0507, α ≈ 1.6733 (to full
    /// precision; MLX rounds them to 1.0507 and 1.67326, a difference of 2·10⁻⁶ relative).
    Selu,
    /// `a·σ(b)`, `a` and `b` the halves of the last axis (which must have an even size).
    Glu,
    /// `softmax(x)` over the last axis.
    Softmax,
    /// `softmax(−x)` over the last axis.
    Softmin,
    /// `log(softmax(x))` over the last axis.
    LogSoftmax,
    /// `x − sign(x)·λ` where `|x| > λ`, 0 elsewhere (MLX's default λ is 0.5).
    Softshrink(f64),
    /// `x` where `|x| > λ`, 0 elsewhere (MLX's default λ is 0.5).
    HardShrink(f64),
    /// 1 where `x ≥ threshold`, 0 elsewhere, in `x`'s type (a gradient of zero everywhere).
    Step(f64),
}

/// The full-precision SELU constants (Klambauer et al.; PyTorch's and JAX's values).
const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
const SELU_LAMBDA: f64 = 1.050_700_987_355_480_5;

/// `a·(e^min(x, 0) − 1)`: the negative branch of ELU. The `min` keeps `e^x` finite where the
/// branch is not taken, so the gradient there is 0 rather than `0·∞ = NaN`.
fn elu_negative(x: &Array, a: f64) -> Result<Array> {
    multiply(&expm1(&minimum(x, &weak_scalar(x, 0.0))?)?, &weak_scalar(x, a))
}

/// ELU: `x` where positive, [`elu_negative`] elsewhere.
fn elu(x: &Array, a: f64) -> Result<Array> {
    where_(&greater(x, &weak_scalar(x, 0.0))?, x, &elu_negative(x, a)?)
}

impl Module for Activation {
    fn forward(&self, x: &Array) -> Result<Array> {
        let c = |v: f64| weak_scalar(x, v);
        match *self {
            Activation::Relu => relu(x),
            Activation::Relu6 => clip(x, Some(0.0), Some(6.0)),
            Activation::Relu2 => square(&relu(x)?),
            Activation::LeakyRelu(a) => maximum(x, &multiply(x, &c(a))?),
            Activation::Gelu => gelu(x),
            Activation::GeluTanh => gelu_tanh(x),
            Activation::GeluFast => multiply(x, &sigmoid(&multiply(x, &c(1.702))?)?),
            Activation::Silu => silu(x),
            Activation::Sigmoid => sigmoid(x),
            Activation::LogSigmoid => negative(&softplus(&negative(x)?)?),
            Activation::Tanh => tanh(x),
            Activation::HardTanh { min, max } => {
                if min > max {
                    return Err(invalid("Activation::HardTanh", format!("min {min} is above max {max}")));
                }
                clip(x, Some(min), Some(max))
            }
            Activation::Softplus => softplus(x),
            Activation::Softsign => divide(x, &add(&abs(x)?, &c(1.0))?),
            Activation::Mish => multiply(x, &tanh(&softplus(x)?)?),
            Activation::Hardswish => {
                multiply(&multiply(x, &clip(&add(x, &c(3.0))?, Some(0.0), Some(6.0))?)?, &c(1.0 / 6.0))
            }
            Activation::Elu(a) => elu(x, a),
            Activation::Celu(a) => {
                if a == 0.0 {
                    return Err(invalid("Activation::Celu", "alpha must not be 0 (it divides x)".into()));
                }
                let neg = elu_negative(&multiply(x, &c(1.0 / a))?, a)?;
                add(&maximum(x, &c(0.0))?, &neg)
            }
            Activation::Selu => multiply(&elu(x, SELU_ALPHA)?, &c(SELU_LAMBDA)),
            Activation::Glu => {
                let n = x.shape().last().copied().unwrap_or(0);
                if x.ndim() == 0 || !n.is_multiple_of(2) {
                    return Err(invalid(
                        "Activation::Glu",
                        format!("input {:?} needs a last axis of even size to halve", x.shape()),
                    ));
                }
                let halves = split(x, 2, -1)?;
                multiply(&halves[0], &sigmoid(&halves[1])?)
            }
            Activation::Softmax => softmax(x, Some(&[-1])),
            Activation::Softmin => softmax(&negative(x)?, Some(&[-1])),
            Activation::LogSoftmax => log_softmax(x, Some(&[-1])),
            Activation::Softshrink(l) => {
                let shrunk = subtract(x, &multiply(&sign(x)?, &c(l))?)?;
                where_(&greater(&abs(x)?, &c(l))?, &shrunk, &c(0.0))
            }
            Activation::HardShrink(l) => where_(&greater(&abs(x)?, &c(l))?, x, &c(0.0)),
            Activation::Step(t) => greater_equal(x, &c(t))?.astype(x.dtype()),
        }
    }
    no_parameters!();
}

/// The parametric ReLU (MLX's `PReLU`): `max(x, 0) + a·min(x, 0)` with a learned slope `a`,
/// one shared (`count = 1`) or one per feature of the last axis.
///
/// ```
/// use strata::{Array, nn::{Module, PRelu}};
/// let p = PRelu::new(1, 0.25)?;
/// let y = p.forward(&Array::from_slice(&[-4.0f32, 2.0], &[2])?)?;
/// assert_eq!(y.to_vec::<f32>()?, [-1.0, 2.0]);
/// # Ok::<(), strata::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct PRelu {
    /// `[count]` slopes of the negative part.
    pub weight: Array,
    /// Left out of `trainable_parameters`.
    pub frozen: bool,
}

impl PRelu {
    /// `count` slopes, each `init` (MLX's defaults: one slope of 0.25).
    pub fn new(count: usize, init: f64) -> Result<PRelu> {
        if count == 0 {
            return Err(invalid("PRelu", "count must be at least 1".into()));
        }
        Ok(PRelu { weight: crate::array::full(&[count], init, DType::F32)?, frozen: false })
    }
}

impl Module for PRelu {
    fn forward(&self, x: &Array) -> Result<Array> {
        let n = self.weight.size();
        if n != 1 && x.shape().last() != Some(&n) {
            return Err(invalid("PRelu", format!("{n} slopes need input [..., {n}]; got {:?}", x.shape())));
        }
        let zero = weak_scalar(x, 0.0);
        add(&maximum(x, &zero)?, &multiply(&self.weight.astype(x.dtype())?, &minimum(x, &zero)?)?)
    }
    fn parameters(&self) -> Tree {
        map_of(vec![("weight", Some(&self.weight))])
    }
    fn update(&mut self, p: &Tree) -> Result<()> {
        set_leaf("weight", &mut self.weight, child(p, "weight"))
    }
    freezable!();
}

/// A clonable boxed module (so containers of layers can be cloned for `value_and_grad`).
pub trait BoxedModule: Module {
    #[allow(missing_docs)]
    fn clone_box(&self) -> Box<dyn BoxedModule>;
    /// Freezes (or unfreezes) the whole module.
    fn set_frozen(&mut self, frozen: bool);
    /// Freezes (or unfreezes) the module at `path` below this one (`""`: this one). A layer
    /// freezes only as a whole, so only containers ([`Sequential`]) take a non-empty path;
    /// anything else is an error naming the path.
    fn freeze_path(&mut self, path: &str, frozen: bool) -> Result<()> {
        if !path.is_empty() {
            let kind = std::any::type_name::<Self>().rsplit("::").next().unwrap_or("layer");
            return Err(invalid("freeze_path", format!("{path}: a {kind} freezes as a whole, not by parameter")));
        }
        self.set_frozen(frozen);
        Ok(())
    }
}

macro_rules! boxed {
    ($($t:ty),*) => {$(
        impl BoxedModule for $t {
            fn clone_box(&self) -> Box<dyn BoxedModule> {
                Box::new(self.clone())
            }
            fn set_frozen(&mut self, frozen: bool) {
                self.frozen = frozen;
            }
        }
    )*};
}
boxed!(
    Linear,
    Embedding,
    Conv1d,
    Conv2d,
    LayerNorm,
    RmsNorm,
    GroupNorm,
    MultiHeadAttention,
    BatchNorm,
    Bilinear,
    PRelu
);

/// `BoxedModule` for layers without parameters (nothing to freeze).
macro_rules! boxed_stateless {
    ($($t:ty),*) => {$(
        impl BoxedModule for $t {
            fn clone_box(&self) -> Box<dyn BoxedModule> {
                Box::new(<$t as Clone>::clone(self))
            }
            fn set_frozen(&mut self, _: bool) {}
        }
    )*};
}
boxed_stateless!(Dropout, Activation, Pool, Rope);

impl BoxedModule for Sequential {
    fn clone_box(&self) -> Box<dyn BoxedModule> {
        Box::new(self.clone())
    }
    fn set_frozen(&mut self, frozen: bool) {
        self.layers.iter_mut().for_each(|l| l.set_frozen(frozen));
    }
    fn freeze_path(&mut self, path: &str, frozen: bool) -> Result<()> {
        Sequential::freeze_path(self, path, frozen)
    }
}

/// Layers applied in order; their parameters are `layers.0`, `layers.1`, … as in MLX.
#[derive(Default)]
pub struct Sequential {
    /// The layers.
    pub layers: Vec<Box<dyn BoxedModule>>,
}

impl Clone for Sequential {
    fn clone(&self) -> Self {
        Sequential { layers: self.layers.iter().map(|l| l.clone_box()).collect() }
    }
}

impl std::fmt::Debug for Sequential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sequential({} layers)", self.layers.len())
    }
}

impl Sequential {
    /// No layers.
    pub fn new() -> Sequential {
        Sequential::default()
    }

    /// With `layer` appended.
    pub fn push(mut self, layer: impl BoxedModule + 'static) -> Sequential {
        self.layers.push(Box::new(layer));
        self
    }

    /// Freezes (or unfreezes) every layer, or with `index` one of them.
    pub fn freeze(&mut self, index: Option<usize>, frozen: bool) {
        match index {
            Some(i) => {
                if let Some(l) = self.layers.get_mut(i) {
                    l.set_frozen(frozen);
                }
            }
            None => self.layers.iter_mut().for_each(|l| l.set_frozen(frozen)),
        }
    }

    /// Freezes (or unfreezes) the modules under a parameter path prefix: `"layers.1"` is the
    /// second layer, `"layers.0.layers.2"` a layer of a nested `Sequential`, `"layers"` or
    /// `""` every layer. A path that names no module (or a parameter inside a layer, which
    /// freezes only as a whole) is an error naming it.
    ///
    /// ```
    /// use strata::nn::{self, Module};
    /// let mut m = nn::Sequential::new().push(nn::Linear::new(2, 3, true)?).push(nn::Linear::new(3, 1, false)?);
    /// m.freeze_path("layers.0", true)?;
    /// let names: Vec<String> = m.trainable_parameters().flatten().into_iter().map(|(n, _)| n).collect();
    /// assert_eq!(names, ["layers.1.weight"]);
    /// assert!(m.freeze_path("layers.5", true).is_err());
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn freeze_path(&mut self, path: &str, frozen: bool) -> Result<()> {
        let rest = match path {
            "" | "layers" => {
                self.layers.iter_mut().for_each(|l| l.set_frozen(frozen));
                return Ok(());
            }
            p => p.strip_prefix("layers."),
        };
        let count = self.layers.len();
        let no_module = || invalid("freeze_path", format!("{path}: no such module (a Sequential of {count} layers)"));
        let rest = rest.ok_or_else(no_module)?;
        let (index, below) = rest.split_once('.').unwrap_or((rest, ""));
        let layer = index.parse::<usize>().ok().and_then(|i| self.layers.get_mut(i)).ok_or_else(no_module)?;
        layer.freeze_path(below, frozen).map_err(|e| super::prefixed(&format!("layers.{index}"), e))
    }

    fn tree(&self, f: impl Fn(&dyn BoxedModule) -> Tree) -> Tree {
        let list = Tree::List(self.layers.iter().map(|l| f(l.as_ref())).collect());
        Tree::Map(BTreeMap::from([("layers".to_string(), list)]))
    }
}

impl Module for Sequential {
    fn forward(&self, x: &Array) -> Result<Array> {
        self.layers.iter().try_fold(x.clone(), |h, l| l.forward(&h))
    }
    fn parameters(&self) -> Tree {
        self.tree(|l| l.parameters())
    }
    fn trainable_parameters(&self) -> Tree {
        self.tree(|l| l.trainable_parameters())
    }
    fn update(&mut self, p: &Tree) -> Result<()> {
        super::update_layers(p, self.layers.iter_mut().map(|l| &mut **l as &mut dyn Module))
    }
    fn set_training(&mut self, training: bool) {
        self.layers.iter_mut().for_each(|l| l.set_training(training));
    }
}

/// Multi-head attention with input and output projections (`query_proj`, `key_proj`,
/// `value_proj`, `out_proj`, as MLX), on the flash-attention kernel.
#[derive(Clone, Debug)]
pub struct MultiHeadAttention {
    #[allow(missing_docs)]
    pub heads: usize,
    #[allow(missing_docs)]
    pub query_proj: Linear,
    #[allow(missing_docs)]
    pub key_proj: Linear,
    #[allow(missing_docs)]
    pub value_proj: Linear,
    #[allow(missing_docs)]
    pub out_proj: Linear,
    /// Left out of `trainable_parameters`.
    pub frozen: bool,
}

impl MultiHeadAttention {
    /// `dims` split into `heads` heads.
    pub fn new(dims: usize, heads: usize, bias: bool) -> Result<MultiHeadAttention> {
        if heads == 0 || !dims.is_multiple_of(heads) {
            return Err(invalid("MultiHeadAttention", format!("{dims} dims do not split into {heads} heads")));
        }
        Ok(MultiHeadAttention {
            heads,
            query_proj: Linear::new(dims, dims, bias)?,
            key_proj: Linear::new(dims, dims, bias)?,
            value_proj: Linear::new(dims, dims, bias)?,
            out_proj: Linear::new(dims, dims, bias)?,
            frozen: false,
        })
    }

    /// Attention of queries `[batch, Lq, dims]` over keys and values `[batch, Lk, dims]`.
    pub fn attend(&self, q: &Array, k: &Array, v: &Array, mask: crate::fast::Mask<'_>) -> Result<Array> {
        if q.ndim() != 3 || k.ndim() != 3 || v.ndim() != 3 || k.shape() != v.shape() || q.shape()[0] != k.shape()[0] {
            return Err(invalid(
                "MultiHeadAttention",
                format!(
                    "queries {:?}, keys {:?} and values {:?} must be [batch, length, dims] with one batch and keys shaped as values",
                    q.shape(),
                    k.shape(),
                    v.shape()
                ),
            ));
        }
        let h = self.heads as isize;
        let split = |x: &Array| -> Result<Array> {
            let (b, l, d) = (x.shape()[0] as isize, x.shape()[1] as isize, x.shape()[2] as isize);
            swapaxes(&x.reshape(&[b, l, h, d / h])?, 1, 2)
        };
        let (q, k, v) = (
            split(&self.query_proj.forward(q)?)?,
            split(&self.key_proj.forward(k)?)?,
            split(&self.value_proj.forward(v)?)?,
        );
        let scale = 1.0 / (q.shape()[3] as f32).sqrt();
        let o = crate::fast::scaled_dot_product_attention(&q, &k, &v, scale, mask)?;
        let (b, l) = (o.shape()[0] as isize, o.shape()[2] as isize);
        self.out_proj.forward(&contiguous(&swapaxes(&o, 1, 2)?)?.reshape(&[b, l, -1])?)
    }
}

impl Module for MultiHeadAttention {
    /// Self-attention of `x [batch, L, dims]`.
    fn forward(&self, x: &Array) -> Result<Array> {
        self.attend(x, x, x, crate::fast::Mask::None)
    }
    fn parameters(&self) -> Tree {
        Tree::map([
            ("query_proj", self.query_proj.parameters()),
            ("key_proj", self.key_proj.parameters()),
            ("value_proj", self.value_proj.parameters()),
            ("out_proj", self.out_proj.parameters()),
        ])
    }
    fn update(&mut self, p: &Tree) -> Result<()> {
        super::update_children(
            p,
            vec![
                ("query_proj", &mut self.query_proj),
                ("key_proj", &mut self.key_proj),
                ("value_proj", &mut self.value_proj),
                ("out_proj", &mut self.out_proj),
            ],
        )
    }
    freezable!();
}

/// Max or average pooling over the spatial axes of channels-last input `[batch, *spatial,
/// channels]` (1-D, 2-D or 3-D, as MLX's `MaxPool1d` … `AvgPool3d`): the reduction over the
/// strided slices of every window tap, so it runs on every device and differentiates like those
/// ops. Entries of `kernel`, `stride` and `padding` past `spatial` are unused.
///
/// ```
/// use strata::{Array, nn::{Module, Pool}};
/// let x = Array::from_slice(&[1.0f32, 5.0, 2.0, 4.0, 3.0, 0.0], &[1, 6, 1])?;
/// assert_eq!(Pool::max1d(2, 2, 0).forward(&x)?.to_vec::<f32>()?, [5.0, 4.0, 3.0]);
/// assert_eq!(Pool::avg1d(2, 2, 0).forward(&x)?.to_vec::<f32>()?, [3.0, 3.0, 1.5]);
/// # Ok::<(), strata::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pool {
    /// Spatial axes: 1, 2 or 3.
    pub spatial: usize,
    /// Window size per axis.
    pub kernel: [usize; 3],
    /// Step per axis.
    pub stride: [usize; 3],
    /// Padding on both sides per axis (with −∞ for max, 0 for average: padded positions count
    /// in the average, as MLX and PyTorch's default do).
    pub padding: [usize; 3],
    /// Average instead of max.
    pub average: bool,
}

impl Pool {
    /// Max pooling over `spatial` axes with a cubic window (the unused axes: window and step
    /// 1, no padding).
    fn cubic(spatial: usize, kernel: usize, stride: usize, padding: usize) -> Pool {
        let fill = |v: usize, unused: usize| std::array::from_fn(|a| if a < spatial { v } else { unused });
        Pool { spatial, kernel: fill(kernel, 1), stride: fill(stride, 1), padding: fill(padding, 0), average: false }
    }

    /// 1-D max pooling.
    pub fn max1d(kernel: usize, stride: usize, padding: usize) -> Pool {
        Pool::cubic(1, kernel, stride, padding)
    }

    /// 1-D average pooling.
    pub fn avg1d(kernel: usize, stride: usize, padding: usize) -> Pool {
        Pool { average: true, ..Pool::max1d(kernel, stride, padding) }
    }

    /// 2-D max pooling with a square window (MLX's default stride is the window).
    pub fn max2d(kernel: usize, stride: usize, padding: usize) -> Pool {
        Pool::cubic(2, kernel, stride, padding)
    }

    /// 2-D average pooling with a square window.
    pub fn avg2d(kernel: usize, stride: usize, padding: usize) -> Pool {
        Pool { average: true, ..Pool::max2d(kernel, stride, padding) }
    }

    /// 3-D max pooling with a cubic window, over `[batch, d, h, w, channels]`.
    pub fn max3d(kernel: usize, stride: usize, padding: usize) -> Pool {
        Pool::cubic(3, kernel, stride, padding)
    }

    /// 3-D average pooling with a cubic window.
    pub fn avg3d(kernel: usize, stride: usize, padding: usize) -> Pool {
        Pool { average: true, ..Pool::max3d(kernel, stride, padding) }
    }
}

impl Module for Pool {
    fn forward(&self, x: &Array) -> Result<Array> {
        let s = self.spatial;
        if !(1..=3).contains(&s) || x.ndim() != s + 2 || self.kernel[..s].contains(&0) || self.stride[..s].contains(&0)
        {
            return Err(invalid(
                "pool",
                format!(
                    "a {s}-D pool of window {:?} and stride {:?} needs input [batch, {s} spatial, channels] (1 to 3 \
                     spatial axes, windows and strides of at least 1); got {:?}",
                    &self.kernel[..s.min(3)],
                    &self.stride[..s.min(3)],
                    x.shape()
                ),
            ));
        }
        let fill = if self.average { 0.0 } else { f64::NEG_INFINITY };
        let widths: Vec<(usize, usize)> =
            [(0, 0)].into_iter().chain((0..s).map(|a| (self.padding[a], self.padding[a]))).chain([(0, 0)]).collect();
        let xp = pad(x, &widths, fill)?;
        let mut out_sp = Vec::with_capacity(s);
        for a in 0..s {
            let n = xp.shape()[1 + a];
            if n < self.kernel[a] {
                return Err(invalid(
                    "pool",
                    format!("axis {a}: the padded input has {n} positions, the window {}", self.kernel[a]),
                ));
            }
            out_sp.push((n - self.kernel[a]) / self.stride[a] + 1);
        }
        let mut taps = Vec::new();
        for t in 0..self.kernel[..s].iter().product::<usize>() {
            // The tap's offset along each spatial axis, the last axis varying fastest.
            let mut k = [0usize; 3];
            let mut rest = t;
            for a in (0..s).rev() {
                k[a] = rest % self.kernel[a];
                rest /= self.kernel[a];
            }
            let mut start = vec![0isize; s + 2];
            let mut stop: Vec<isize> = xp.shape().iter().map(|&d| d as isize).collect();
            let mut step = vec![1isize; s + 2];
            for a in 0..s {
                start[1 + a] = k[a] as isize;
                step[1 + a] = self.stride[a] as isize;
                stop[1 + a] = (k[a] + (out_sp[a] - 1) * self.stride[a] + 1) as isize;
            }
            taps.push(slice(&xp, &start, &stop, &step)?);
        }
        let stacked = stack(&taps.iter().collect::<Vec<_>>(), 0)?;
        if self.average { mean(&stacked, Some(&[0]), false) } else { max(&stacked, Some(&[0]), false) }
    }
    no_parameters!();
}

/// Batch normalization of channels-last input `[batch, ..., channels]` (MLX's `BatchNorm`):
/// while training, each channel is normalized by the batch's mean and (biased) variance over
/// every other axis and the running statistics (mean, unbiased variance) move toward them by
/// `momentum`; in evaluation
/// mode the running statistics are used.
///
/// The running statistics are parameters (saved and loaded with the others) but never
/// trainable. Clones share them, so a step through [`super::value_and_grad`], which runs a
/// clone, updates the model's; they are lazy arrays like any other, so evaluate
/// [`Module::parameters`] with the trained ones now and then to keep their graph short.
#[derive(Clone, Debug)]
pub struct BatchNorm {
    /// `[channels]` scale (ones at first), if affine.
    pub weight: Option<Array>,
    /// `[channels]` shift (zeros at first), if affine.
    pub bias: Option<Array>,
    running: std::sync::Arc<std::sync::Mutex<(Array, Array)>>,
    #[allow(missing_docs)]
    pub eps: f32,
    /// Weight of the newest batch in the running statistics.
    pub momentum: f32,
    #[allow(missing_docs)]
    pub training: bool,
    /// Left out of `trainable_parameters`.
    pub frozen: bool,
}

impl BatchNorm {
    /// MLX's defaults are `eps = 1e-5`, `momentum = 0.1`, affine.
    pub fn new(channels: usize, eps: f32, momentum: f32, affine: bool) -> Result<BatchNorm> {
        let (w, b) = if affine {
            (Some(crate::array::ones(&[channels], DType::F32)?), Some(crate::array::zeros(&[channels], DType::F32)?))
        } else {
            (None, None)
        };
        let stats = (crate::array::zeros(&[channels], DType::F32)?, crate::array::ones(&[channels], DType::F32)?);
        Ok(BatchNorm {
            weight: w,
            bias: b,
            running: std::sync::Arc::new(std::sync::Mutex::new(stats)),
            eps,
            momentum,
            training: true,
            frozen: false,
        })
    }

    /// The running mean and variance.
    pub fn running_stats(&self) -> (Array, Array) {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Module for BatchNorm {
    fn forward(&self, x: &Array) -> Result<Array> {
        let c = self.running_stats().0.size();
        if x.ndim() < 2 || x.shape()[x.ndim() - 1] != c {
            return Err(invalid("BatchNorm", format!("input {:?} must be [batch, ..., {c}]", x.shape())));
        }
        let axes: Vec<isize> = (0..x.ndim() as isize - 1).collect();
        let (mean, var) = if self.training {
            if x.size() / c <= 1 {
                return Err(invalid(
                    "BatchNorm",
                    format!(
                        "input {:?} has one value per channel: nothing to normalize over while training",
                        x.shape()
                    ),
                ));
            }
            let mean = crate::ops::mean(x, Some(&axes), false)?;
            let var = crate::ops::var(x, Some(&axes), false, 0)?;
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            let m = self.momentum as f64;
            let blend = |old: &Array, new: &Array| -> Result<Array> {
                add(&multiply(old, &weak_scalar(old, 1.0 - m))?, &multiply(&stop_gradient(new)?, &weak_scalar(new, m))?)
            };
            // The running variance is the unbiased estimate (MLX and PyTorch), the batch's own
            // normalization the biased one.
            let unbiased = crate::ops::var(x, Some(&axes), false, 1)?;
            *running = (blend(&running.0, &mean)?, blend(&running.1, &unbiased)?);
            (mean, var)
        } else {
            self.running_stats()
        };
        let y = divide(&subtract(x, &mean)?, &sqrt(&add(&var, &weak_scalar(&var, self.eps as f64))?)?)?;
        let y = match &self.weight {
            Some(w) => multiply(&y, w)?,
            None => y,
        };
        plus_bias(y, &self.bias)
    }
    fn parameters(&self) -> Tree {
        let (m, v) = self.running_stats();
        map_of(vec![
            ("weight", self.weight.as_ref()),
            ("bias", self.bias.as_ref()),
            ("running_mean", Some(&m)),
            ("running_var", Some(&v)),
        ])
    }
    fn trainable_parameters(&self) -> Tree {
        if self.frozen {
            return empty();
        }
        map_of(vec![("weight", self.weight.as_ref()), ("bias", self.bias.as_ref())])
    }
    fn update(&mut self, p: &Tree) -> Result<()> {
        update_affine(p, &mut self.weight, &mut self.bias)?;
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        set_leaf("running_mean", &mut running.0, child(p, "running_mean"))?;
        set_leaf("running_var", &mut running.1, child(p, "running_var"))
    }
    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}

/// `y[..., o] = Σᵢⱼ x1[..., i]·W[o, j, i]·x2[..., j] + b[o]` (MLX's `Bilinear`; `W` of shape
/// `[out, in2, in1]`). It takes two inputs: [`Bilinear::forward_pair`].
#[derive(Clone, Debug)]
pub struct Bilinear {
    /// `[out, in2, in1]`.
    pub weight: Array,
    /// `[out]`, if any.
    pub bias: Option<Array>,
    /// Left out of `trainable_parameters`.
    pub frozen: bool,
}

impl Bilinear {
    /// Uniform in ±1/√in1 as MLX initializes it.
    pub fn new(in1: usize, in2: usize, out: usize, bias: bool) -> Result<Bilinear> {
        let s = 1.0 / (in1 as f64).sqrt();
        let u = |shape: &[usize]| crate::random::uniform(-s, s, shape, DType::F32, None);
        Ok(Bilinear { weight: u(&[out, in2, in1])?, bias: if bias { Some(u(&[out])?) } else { None }, frozen: false })
    }

    /// The bilinear form of `x1 [..., in1]` and `x2 [..., in2]` (the same leading axes).
    pub fn forward_pair(&self, x1: &Array, x2: &Array) -> Result<Array> {
        let (out, in2, in1) = (self.weight.shape()[0], self.weight.shape()[1], self.weight.shape()[2]);
        let lead = &x1.shape()[..x1.ndim().saturating_sub(1)];
        if x1.ndim() == 0 || x1.shape()[x1.ndim() - 1] != in1 || x2.shape() != [lead, &[in2]].concat() {
            return Err(invalid(
                "Bilinear",
                format!(
                    "inputs {:?} and {:?} must be [..., {in1}] and [..., {in2}] with the same leading axes",
                    x1.shape(),
                    x2.shape()
                ),
            ));
        }
        let n = lead.iter().product::<usize>() as isize;
        let w = self.weight.reshape(&[(out * in2) as isize, in1 as isize])?;
        let y = matmul(&x1.reshape(&[n, in1 as isize])?, &w.transpose(None)?)?;
        let y = swapaxes(&y.reshape(&[n, out as isize, in2 as isize])?, -2, -1)?;
        let y = matmul(&x2.reshape(&[n, 1, in2 as isize])?, &y)?;
        let shape: Vec<isize> = lead.iter().map(|&d| d as isize).chain([out as isize]).collect();
        plus_bias(y.reshape(&shape)?, &self.bias)
    }
}

impl Module for Bilinear {
    /// An error: a bilinear layer has two inputs ([`Bilinear::forward_pair`]).
    fn forward(&self, _: &Array) -> Result<Array> {
        Err(invalid("Bilinear", "a bilinear layer takes two inputs: call forward_pair(x1, x2)".into()))
    }
    weight_and_bias!();
    freezable!();
}

/// Rotary position embedding as a layer (MLX's `nn.RoPE`): [`crate::fast::rope`] on the first
/// `dims` features of the last axis, positions along the second-to-last.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rope {
    #[allow(missing_docs)]
    pub dims: usize,
    /// Rotate adjacent pairs (the original formulation) instead of the two halves.
    pub traditional: bool,
    #[allow(missing_docs)]
    pub base: f32,
    /// Positions are multiplied by this.
    pub scale: f32,
}

impl Rope {
    /// MLX's defaults: `base = 10000`, `scale = 1`, not traditional.
    pub fn new(dims: usize) -> Rope {
        Rope { dims, traditional: false, base: 10_000.0, scale: 1.0 }
    }

    /// Positions starting at `offset` (the length of a key-value cache).
    pub fn forward_at(&self, x: &Array, offset: usize) -> Result<Array> {
        crate::fast::rope(x, self.dims, self.traditional, self.base, self.scale, offset)
    }
}

impl Module for Rope {
    fn forward(&self, x: &Array) -> Result<Array> {
        self.forward_at(x, 0)
    }
    no_parameters!();
}

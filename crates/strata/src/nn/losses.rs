//! Loss functions, as `mlx.nn.losses`: each returns the mean over every element (a scalar)
//! unless said otherwise. Class targets are integer class ids; probabilities are accepted
//! where a distribution makes sense.
//!
//! [`unreduced`] has the same losses element by element (MLX's `reduction="none"`), and
//! [`reduce`] turns them into a mean or a sum:
//!
//! ```
//! use strata::{Array, nn::losses::{self, Reduction}};
//! let p = Array::from_slice(&[0.0f32, 1.0, 3.0], &[3])?;
//! let t = Array::from_slice(&[0.0f32, 0.0, 0.0], &[3])?;
//! let each = losses::unreduced::smooth_l1(&p, &t, 1.0)?; // 0, ½·1², 3 − ½
//! assert_eq!(each.to_vec::<f32>()?, [0.0, 0.5, 2.5]);
//! assert_eq!(losses::reduce(&each, Reduction::Sum)?.item::<f32>()?, 3.0);
//! assert_eq!(losses::smooth_l1(&p, &t, 1.0)?.item::<f32>()?, 1.0);
//! # Ok::<(), strata::Error>(())
//! ```

use strata_core::{DType, Error, Result};

use crate::graph::Array;
use crate::ops::*;

fn s(like: &Array, v: f64) -> Array {
    weak_scalar(like, v)
}

fn mean_all(x: &Array) -> Result<Array> {
    mean(x, None, false)
}

/// How a loss's per-element values become its result (MLX's `reduction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// Every element's loss, unreduced.
    None,
    /// Their mean (a scalar).
    Mean,
    /// Their sum (a scalar).
    Sum,
}

/// `loss` reduced as `how` says.
pub fn reduce(loss: &Array, how: Reduction) -> Result<Array> {
    match how {
        Reduction::None => Ok(loss.clone()),
        Reduction::Mean => mean_all(loss),
        Reduction::Sum => sum(loss, None, false),
    }
}

/// The losses element by element: the values that the functions of [`super::losses`] average.
/// Each checks its arguments' shapes and says what is wrong.
pub mod unreduced {
    use super::*;

    fn invalid(op: &'static str, message: String) -> Error {
        Error::InvalidArgument { op, message }
    }

    /// An error unless `a` and `b` have the same shape.
    fn same_shape(op: &'static str, what: &str, a: &Array, b: &Array) -> Result<()> {
        if a.shape() != b.shape() {
            return Err(invalid(
                op,
                format!("{what} {:?} and targets {:?} must have the same shape", a.shape(), b.shape()),
            ));
        }
        Ok(())
    }

    /// An error unless `targets` are class ids for scores `[..., classes]`: integers of the
    /// scores' shape less the last axis.
    fn class_ids(op: &'static str, scores: &Array, targets: &Array) -> Result<()> {
        let lead = &scores.shape()[..scores.ndim().saturating_sub(1)];
        if scores.ndim() == 0 || targets.shape() != lead || !targets.dtype().is_integer() {
            return Err(invalid(
                op,
                format!(
                    "scores {:?} need integer class ids of shape {lead:?}; the targets are {:?} {}",
                    scores.shape(),
                    targets.shape(),
                    targets.dtype()
                ),
            ));
        }
        Ok(())
    }

    /// `(pred − target)²`.
    pub fn mse(pred: &Array, target: &Array) -> Result<Array> {
        square(&subtract(pred, target)?)
    }

    /// `|pred − target|`.
    pub fn l1(pred: &Array, target: &Array) -> Result<Array> {
        abs(&subtract(pred, target)?)
    }

    /// Cross-entropy of `logits [..., classes]` at integer class ids `[...]`, with label
    /// smoothing `eps` in `[0, 1)`: a value per row.
    pub fn cross_entropy(logits: &Array, targets: &Array, label_smoothing: f64) -> Result<Array> {
        class_ids("cross_entropy", logits, targets)?;
        if !(0.0..1.0).contains(&label_smoothing) {
            return Err(invalid("cross_entropy", format!("label smoothing {label_smoothing} is not in [0, 1)")));
        }
        let logp = log_softmax(logits, Some(&[-1]))?;
        let picked = squeeze(&take_along_axis(&logp, &expand_dims(targets, -1)?, -1)?, Some(&[-1]))?;
        let nll = negative(&picked)?;
        if label_smoothing == 0.0 {
            return Ok(nll);
        }
        let uniform = negative(&mean(&logp, Some(&[-1]), false)?)?;
        add(&multiply(&nll, &s(&nll, 1.0 - label_smoothing))?, &multiply(&uniform, &s(&uniform, label_smoothing))?)
    }

    /// Cross-entropy of `logits` against target probabilities of the same shape (soft
    /// labels), `−Σ p·log softmax(logits)` over the last axis: a value per row.
    pub fn cross_entropy_probs(logits: &Array, probs: &Array) -> Result<Array> {
        same_shape("cross_entropy_probs", "logits", logits, probs)?;
        if logits.ndim() == 0 {
            return Err(invalid("cross_entropy_probs", "logits need a class axis; they are a scalar".into()));
        }
        negative(&sum(&multiply(probs, &log_softmax(logits, Some(&[-1]))?)?, Some(&[-1]), false)?)
    }

    /// Negative log-likelihood of log-probabilities `[..., classes]` at class ids `[...]`: a
    /// value per row.
    pub fn nll(logp: &Array, targets: &Array) -> Result<Array> {
        class_ids("nll", logp, targets)?;
        negative(&squeeze(&take_along_axis(logp, &expand_dims(targets, -1)?, -1)?, Some(&[-1]))?)
    }

    /// Binary cross-entropy of logits against targets in [0, 1] of the same shape, computed
    /// stably (`max(x, 0) − x·y + log(1 + e^−|x|)`).
    pub fn binary_cross_entropy_with_logits(logits: &Array, targets: &Array) -> Result<Array> {
        same_shape("binary_cross_entropy_with_logits", "logits", logits, targets)?;
        let x = logits;
        add(
            &subtract(&maximum(x, &s(x, 0.0))?, &multiply(x, &targets.astype(x.dtype())?)?)?,
            &softplus(&negative(&abs(x)?)?)?,
        )
    }

    /// Binary cross-entropy of probabilities in (0, 1) against targets of the same shape (each
    /// log clipped at −100, as PyTorch and MLX do, so a probability of exactly 0 or 1 gives a
    /// finite loss).
    pub fn binary_cross_entropy(probs: &Array, targets: &Array) -> Result<Array> {
        same_shape("binary_cross_entropy", "probabilities", probs, targets)?;
        let y = targets.astype(probs.dtype())?;
        let lp = maximum(&log(probs)?, &s(probs, -100.0))?;
        let lq = maximum(&log1p(&negative(probs)?)?, &s(probs, -100.0))?;
        negative(&add(&multiply(&y, &lp)?, &multiply(&subtract(&s(&y, 1.0), &y)?, &lq)?)?)
    }

    /// `Σ p (log p − log q)` over the last axis, from log-probabilities `logq` (the model's) to
    /// `logp` (the target's): a value per row.
    pub fn kl_div(logq: &Array, logp: &Array) -> Result<Array> {
        sum(&multiply(&exp(logp)?, &subtract(logp, logq)?)?, Some(&[-1]), false)
    }

    /// Huber loss: `½d²` within `delta` of the target, `delta·(d − ½delta)` beyond.
    pub fn huber(pred: &Array, target: &Array, delta: f64) -> Result<Array> {
        if delta.is_nan() || delta <= 0.0 {
            return Err(invalid("huber", format!("delta {delta} must be positive")));
        }
        let d = abs(&subtract(pred, target)?)?;
        let quad = multiply(&square(&d)?, &s(&d, 0.5))?;
        let lin = multiply(&subtract(&d, &s(&d, 0.5 * delta))?, &s(&d, delta))?;
        where_(&less_equal(&d, &s(&d, delta))?, &quad, &lin)
    }

    /// Smooth L1 loss: Huber divided by `beta` (PyTorch's and MLX's definition), for
    /// predictions and targets of the same shape.
    pub fn smooth_l1(pred: &Array, target: &Array, beta: f64) -> Result<Array> {
        same_shape("smooth_l1", "predictions", pred, target)?;
        if beta.is_nan() || beta <= 0.0 {
            return Err(invalid("smooth_l1", format!("beta {beta} must be positive")));
        }
        let h = huber(pred, target, beta)?;
        multiply(&h, &s(&h, 1.0 / beta))
    }

    /// `1 − cos(a, b)` over the last axis: a value per row.
    pub fn cosine_similarity_loss(a: &Array, b: &Array, eps: f64) -> Result<Array> {
        let dot = sum(&multiply(a, b)?, Some(&[-1]), false)?;
        let na = sqrt(&sum(&square(a)?, Some(&[-1]), false)?)?;
        let nb = sqrt(&sum(&square(b)?, Some(&[-1]), false)?)?;
        let cos = divide(&dot, &maximum(&multiply(&na, &nb)?, &s(&dot, eps))?)?;
        subtract(&s(&cos, 1.0), &cos)
    }
}

/// Mean squared error.
pub fn mse(pred: &Array, target: &Array) -> Result<Array> {
    mean_all(&unreduced::mse(pred, target)?)
}

/// Mean absolute error.
pub fn l1(pred: &Array, target: &Array) -> Result<Array> {
    mean_all(&unreduced::l1(pred, target)?)
}

/// Cross-entropy of `logits [..., classes]` against integer class ids `[...]`, with label
/// smoothing `eps` (the target is `1 − eps` on the class and `eps / classes` spread over all).
///
/// ```
/// use strata::{Array, nn::losses};
/// let logits = Array::from_slice(&[2.0f32, 0.0, 0.0, 0.0, 3.0, 0.0], &[2, 3])?;
/// let y = Array::from_slice(&[0u32, 1], &[2])?;
/// let l = losses::cross_entropy(&logits, &y, 0.0)?.item::<f32>()?;
/// let want = ((1.0 + 2.0 * (-2.0f32).exp()).ln() + (1.0 + 2.0 * (-3.0f32).exp()).ln()) / 2.0;
/// assert!((l - want).abs() < 1e-6);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn cross_entropy(logits: &Array, targets: &Array, label_smoothing: f64) -> Result<Array> {
    mean_all(&unreduced::cross_entropy(logits, targets, label_smoothing)?)
}

/// Cross-entropy against target probabilities `[..., classes]` (soft labels).
pub fn cross_entropy_probs(logits: &Array, probs: &Array) -> Result<Array> {
    mean_all(&unreduced::cross_entropy_probs(logits, probs)?)
}

/// Negative log-likelihood of log-probabilities `[..., classes]` at class ids `[...]`.
pub fn nll(logp: &Array, targets: &Array) -> Result<Array> {
    mean_all(&unreduced::nll(logp, targets)?)
}

/// Binary cross-entropy of logits against targets in [0, 1], computed stably
/// (`max(x, 0) − x·y + log(1 + e^−|x|)`).
pub fn binary_cross_entropy_with_logits(logits: &Array, targets: &Array) -> Result<Array> {
    mean_all(&unreduced::binary_cross_entropy_with_logits(logits, targets)?)
}

/// Binary cross-entropy of probabilities in (0, 1) against targets (log clipped at −100, as
/// PyTorch and MLX do).
pub fn binary_cross_entropy(probs: &Array, targets: &Array) -> Result<Array> {
    mean_all(&unreduced::binary_cross_entropy(probs, targets)?)
}

/// Kullback–Leibler divergence `Σ p (log p − log q)` from log-probabilities `logq` (the
/// model's) to `logp` (the target's), over the last axis, mean over the rest.
pub fn kl_div(logq: &Array, logp: &Array) -> Result<Array> {
    mean_all(&unreduced::kl_div(logq, logp)?)
}

/// Huber loss: quadratic within `delta` of the target, linear beyond.
pub fn huber(pred: &Array, target: &Array, delta: f64) -> Result<Array> {
    mean_all(&unreduced::huber(pred, target, delta)?)
}

/// Smooth L1 loss: Huber divided by `beta` (PyTorch's definition).
pub fn smooth_l1(pred: &Array, target: &Array, beta: f64) -> Result<Array> {
    mean_all(&unreduced::smooth_l1(pred, target, beta)?)
}

/// `1 − cos(a, b)` over the last axis, mean over the rest.
pub fn cosine_similarity_loss(a: &Array, b: &Array, eps: f64) -> Result<Array> {
    mean_all(&unreduced::cosine_similarity_loss(a, b, eps)?)
}

/// The fraction of rows of `logits [n, classes]` whose largest entry is at the target id.
pub fn accuracy(logits: &Array, targets: &Array) -> Result<f32> {
    let pred = argmax(logits, Some(-1), false)?;
    // Ids compare as 32-bit integers unless the targets are wider: not every device has 64-bit
    // integer kernels (wgpu), and argmax's ids are uint32.
    let t = if targets.dtype().bits() > 32 { DType::I64 } else { DType::I32 };
    let hit = equal(&pred.astype(t)?, &targets.astype(t)?)?;
    mean(&hit.astype(DType::F32)?, None, false)?.item::<f32>()
}

//! Loss functions, as `mlx.nn.losses`: each returns the mean over the batch (a scalar)
//! unless said otherwise. Class targets are integer class ids; probabilities are accepted
//! where a distribution makes sense.

use strata_core::{DType, Result};

use crate::graph::Array;
use crate::ops::*;

fn s(like: &Array, v: f64) -> Array {
    weak_scalar(like, v)
}

fn mean_all(x: &Array) -> Result<Array> {
    mean(x, None, false)
}

/// Mean squared error.
pub fn mse(pred: &Array, target: &Array) -> Result<Array> {
    mean_all(&square(&subtract(pred, target)?)?)
}

/// Mean absolute error.
pub fn l1(pred: &Array, target: &Array) -> Result<Array> {
    mean_all(&abs(&subtract(pred, target)?)?)
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
    let logp = subtract(logits, &logsumexp(logits, Some(&[-1]), true)?)?;
    let picked = squeeze(&take_along_axis(&logp, &expand_dims(targets, -1)?, -1)?, Some(&[-1]))?;
    let nll = negative(&picked)?;
    if label_smoothing == 0.0 {
        return mean_all(&nll);
    }
    let uniform = negative(&mean(&logp, Some(&[-1]), false)?)?;
    mean_all(&add(
        &multiply(&nll, &s(&nll, 1.0 - label_smoothing))?,
        &multiply(&uniform, &s(&uniform, label_smoothing))?,
    )?)
}

/// Cross-entropy against target probabilities `[..., classes]` (soft labels).
pub fn cross_entropy_probs(logits: &Array, probs: &Array) -> Result<Array> {
    let logp = subtract(logits, &logsumexp(logits, Some(&[-1]), true)?)?;
    mean_all(&negative(&sum(&multiply(probs, &logp)?, Some(&[-1]), false)?)?)
}

/// Negative log-likelihood of log-probabilities `[..., classes]` at class ids `[...]`.
pub fn nll(logp: &Array, targets: &Array) -> Result<Array> {
    let picked = take_along_axis(logp, &expand_dims(targets, -1)?, -1)?;
    mean_all(&negative(&picked)?)
}

/// Binary cross-entropy of logits against targets in [0, 1], computed stably
/// (`max(x, 0) − x·y + log(1 + e^−|x|)`).
pub fn binary_cross_entropy_with_logits(logits: &Array, targets: &Array) -> Result<Array> {
    let x = logits;
    let l = add(
        &subtract(&maximum(x, &s(x, 0.0))?, &multiply(x, &targets.astype(x.dtype())?)?)?,
        &softplus(&negative(&abs(x)?)?)?,
    )?;
    mean_all(&l)
}

/// Binary cross-entropy of probabilities in (0, 1) against targets (log clipped at −100, as
/// PyTorch and MLX do).
pub fn binary_cross_entropy(probs: &Array, targets: &Array) -> Result<Array> {
    let y = targets.astype(probs.dtype())?;
    let lp = maximum(&log(probs)?, &s(probs, -100.0))?;
    let lq = maximum(&log1p(&negative(probs)?)?, &s(probs, -100.0))?;
    mean_all(&negative(&add(&multiply(&y, &lp)?, &multiply(&subtract(&s(&y, 1.0), &y)?, &lq)?)?)?)
}

/// Kullback–Leibler divergence `Σ p (log p − log q)` from log-probabilities `logq` (the
/// model's) to `logp` (the target's), over the last axis, mean over the rest.
pub fn kl_div(logq: &Array, logp: &Array) -> Result<Array> {
    mean_all(&sum(&multiply(&exp(logp)?, &subtract(logp, logq)?)?, Some(&[-1]), false)?)
}

/// Huber loss: quadratic within `delta` of the target, linear beyond.
pub fn huber(pred: &Array, target: &Array, delta: f64) -> Result<Array> {
    let d = abs(&subtract(pred, target)?)?;
    let quad = multiply(&square(&d)?, &s(&d, 0.5))?;
    let lin = multiply(&subtract(&d, &s(&d, 0.5 * delta))?, &s(&d, delta))?;
    mean_all(&where_(&less_equal(&d, &s(&d, delta))?, &quad, &lin)?)
}

/// Smooth L1 loss: Huber divided by `beta` (PyTorch's definition).
pub fn smooth_l1(pred: &Array, target: &Array, beta: f64) -> Result<Array> {
    let h = huber(pred, target, beta)?;
    multiply(&h, &s(&h, 1.0 / beta))
}

/// `1 − cos(a, b)` over the last axis, mean over the rest.
pub fn cosine_similarity_loss(a: &Array, b: &Array, eps: f64) -> Result<Array> {
    let dot = sum(&multiply(a, b)?, Some(&[-1]), false)?;
    let na = sqrt(&sum(&square(a)?, Some(&[-1]), false)?)?;
    let nb = sqrt(&sum(&square(b)?, Some(&[-1]), false)?)?;
    let cos = divide(&dot, &maximum(&multiply(&na, &nb)?, &s(&dot, eps))?)?;
    mean_all(&subtract(&s(&cos, 1.0), &cos)?)
}

/// The fraction of rows of `logits [n, classes]` whose largest entry is at the target id.
pub fn accuracy(logits: &Array, targets: &Array) -> Result<f32> {
    let pred = argmax(logits, Some(-1), false)?;
    let hit = equal(&pred.astype(DType::I64)?, &targets.astype(DType::I64)?)?;
    mean(&hit.astype(DType::F32)?, None, false)?.item::<f32>()
}

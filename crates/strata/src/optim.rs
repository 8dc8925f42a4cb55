//! Optimizers and learning-rate schedules, as `mlx.optimizers`.
//!
//! An [`Optimizer`] takes a parameter tree and its gradient tree (from
//! [`nn::value_and_grad`](crate::nn::value_and_grad) or [`value_and_grad_tree`](crate::value_and_grad_tree))
//! and returns the updated parameters; its per-parameter state (moments, step count) lives
//! inside it, keyed by leaf order, and round-trips through [`Optimizer::state`] and
//! [`Optimizer::load_state`] (so it can be saved with [`crate::io`]).

use std::sync::Arc;

use strata_core::{DType, Error, Result};

use crate::graph::Array;
use crate::ops::*;
use crate::tree::Tree;

fn invalid(op: &'static str, message: String) -> Error {
    Error::InvalidArgument { op, message }
}

fn s(like: &Array, v: f64) -> Array {
    weak_scalar(like, v)
}

/// A learning rate as a function of the step (0 for the first update).
#[derive(Clone)]
pub struct Schedule(Arc<dyn Fn(usize) -> f64 + Send + Sync>);

impl Schedule {
    /// The rate at `step`.
    pub fn at(&self, step: usize) -> f64 {
        (self.0)(step)
    }

    /// A schedule from a function.
    pub fn new(f: impl Fn(usize) -> f64 + Send + Sync + 'static) -> Schedule {
        Schedule(Arc::new(f))
    }
}

impl From<f64> for Schedule {
    fn from(lr: f64) -> Schedule {
        Schedule::new(move |_| lr)
    }
}

/// `init · rate^⌊step / every⌋`.
pub fn step_decay(init: f64, rate: f64, every: usize) -> Schedule {
    Schedule::new(move |t| init * rate.powi((t / every.max(1)) as i32))
}

/// `init · rate^step`.
pub fn exponential_decay(init: f64, rate: f64) -> Schedule {
    Schedule::new(move |t| init * rate.powi(t as i32))
}

/// Cosine from `init` to `end` over `steps`, then `end`.
pub fn cosine_decay(init: f64, steps: usize, end: f64) -> Schedule {
    Schedule::new(move |t| {
        let f = (t.min(steps) as f64 / steps.max(1) as f64 * std::f64::consts::PI).cos();
        end + (init - end) * 0.5 * (1.0 + f)
    })
}

/// Linear from `init` to `end` over `steps`, then `end` (a warm-up when `init` is 0).
pub fn linear_schedule(init: f64, end: f64, steps: usize) -> Schedule {
    Schedule::new(move |t| init + (end - init) * t.min(steps) as f64 / steps.max(1) as f64)
}

/// `schedules[i]` from `boundaries[i-1]` on, each counting its steps from its own start (a
/// warm-up joined to a decay). No schedules at all is a rate of 0.
///
/// ```
/// use strata::optim::{join_schedules, linear_schedule, cosine_decay};
/// let s = join_schedules(vec![linear_schedule(0.0, 1e-3, 100), cosine_decay(1e-3, 1000, 0.0)], &[100]);
/// assert_eq!(s.at(50), 5e-4);
/// assert_eq!(s.at(100), 1e-3);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn join_schedules(schedules: Vec<Schedule>, boundaries: &[usize]) -> Schedule {
    if schedules.is_empty() {
        return Schedule::from(0.0);
    }
    let b = boundaries.to_vec();
    Schedule::new(move |t| {
        let i = b.iter().take_while(|&&x| t >= x).count().min(schedules.len() - 1);
        let start = if i == 0 { 0 } else { b[i - 1] };
        schedules[i].at(t - start)
    })
}

/// `grads` scaled so that their global L2 norm (over every leaf together) is at most
/// `max_norm`; also the norm before. MLX's rule: the scale is `min(max_norm / (norm + 10⁻⁶), 1)`,
/// so gradients within the bound come back unchanged, bit for bit.
///
/// ```
/// use strata::{Array, Tree, optim};
/// let g = Tree::map([("a", Tree::from(Array::from_slice(&[3.0f32], &[1])?)),
///                    ("b", Tree::from(Array::from_slice(&[4.0f32], &[1])?))]);
/// let (c, norm) = optim::clip_grad_norm(&g, 1.0)?;
/// assert_eq!(norm.item::<f32>()?, 5.0);
/// assert!((c.get("b").unwrap().item::<f32>()? - 0.8).abs() < 1e-6);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn clip_grad_norm(grads: &Tree, max_norm: f64) -> Result<(Tree, Array)> {
    if max_norm.is_nan() || max_norm < 0.0 {
        return Err(invalid("clip_grad_norm", format!("max_norm {max_norm} must be at least 0")));
    }
    let leaves = grads.leaves();
    let mut total: Option<Array> = None;
    for g in &leaves {
        // Squares summed in float32 at least (16-bit ones would overflow), float64 kept.
        let wide = if g.dtype() == DType::F64 { DType::F64 } else { DType::F32 };
        let sq = sum(&square(&g.astype(wide)?)?, None, false)?;
        total = Some(match total {
            Some(t) => add(&t, &sq)?,
            None => sq,
        });
    }
    let norm = sqrt(&total.unwrap_or(crate::array::zeros(&[], DType::F32)?))?;
    let scale = minimum(&divide(&s(&norm, max_norm), &add(&norm, &s(&norm, 1e-6))?)?, &s(&norm, 1.0))?;
    // Scaled in the wider type, then cast: a small scale would underflow in float16.
    let clipped = grads.map_leaves(&mut |g| multiply(g, &scale)?.astype(g.dtype()))?;
    Ok((clipped, norm))
}

/// A rule that turns gradients into parameter updates.
pub trait Optimizer {
    /// The parameters after one step along `grads` (a tree of the same structure).
    fn update(&mut self, params: &Tree, grads: &Tree) -> Result<Tree>;
    /// The step count and per-parameter state, for saving.
    fn state(&self) -> Tree;
    /// Restores a state saved by [`state`](Self::state) from an optimizer of the same kind
    /// (through a file: [`crate::io::save_tree`], then [`crate::io::load_tree_flat`]); the next
    /// step is then the one the saved optimizer would have taken, bit for bit. A state without
    /// a step or a slot, with slots of another optimizer, or with lists of different lengths is
    /// an `Err` and leaves the optimizer as it was; state arrays that do not fit the parameters
    /// (count, shape or type) are an `Err` at the next [`update`](Self::update).
    fn load_state(&mut self, state: &Tree) -> Result<()>;
    /// The learning rate the next step will use.
    fn learning_rate(&self) -> f64;
}

/// The shape of state slot `k` for a parameter of a shape (the parameter's unless an optimizer
/// keeps something smaller, as Adafactor's factored second moments); it starts as zeros.
type SlotShape = Arc<dyn Fn(usize, &[usize]) -> Vec<usize> + Send + Sync>;

/// The shared machinery: step count, schedule, and `k` state arrays per parameter.
#[derive(Clone)]
struct Slots {
    step: usize,
    lr: Schedule,
    per_param: Vec<Vec<Array>>,
    names: &'static [&'static str],
    shape: Option<SlotShape>,
}

impl Slots {
    fn new(lr: Schedule, names: &'static [&'static str]) -> Slots {
        Slots { step: 0, lr, per_param: Vec::new(), names, shape: None }
    }

    /// Runs `rule(param, grad, state, lr, step)` on every leaf, creating zero state the first
    /// time; returns the new parameters.
    fn apply(
        &mut self,
        op: &'static str,
        params: &Tree,
        grads: &Tree,
        mut rule: impl FnMut(&Array, &Array, &mut [Array], f64, usize) -> Result<Array>,
    ) -> Result<Tree> {
        let (p, g) = (params.leaves(), grads.leaves());
        if p.len() != g.len() {
            return Err(invalid(op, format!("{} parameters but {} gradients", p.len(), g.len())));
        }
        let shape_of = |k: usize, x: &Array| match &self.shape {
            Some(f) => f(k, x.shape()),
            None => x.shape().to_vec(),
        };
        if self.per_param.is_empty() {
            self.per_param = p
                .iter()
                .map(|x| (0..self.names.len()).map(|k| crate::array::zeros(&shape_of(k, x), x.dtype())).collect())
                .collect::<Result<_>>()?;
        } else if self.per_param.len() != p.len() {
            return Err(invalid(op, format!("state for {} parameters, given {}", self.per_param.len(), p.len())));
        }
        // A loaded state must fit the parameters exactly: a slot of another shape would
        // broadcast silently, one of another type would change the arithmetic.
        for (i, (x, st)) in p.iter().zip(&self.per_param).enumerate() {
            for (k, a) in st.iter().enumerate() {
                let want = shape_of(k, x);
                if a.shape() != want || a.dtype() != x.dtype() {
                    return Err(invalid(
                        op,
                        format!(
                            "state {}.{i} is {:?} {}; parameter {i} ({:?} {}) needs {want:?} of its type",
                            self.names[k],
                            a.shape(),
                            a.dtype(),
                            x.shape(),
                            x.dtype()
                        ),
                    ));
                }
            }
        }
        if let Some((i, (x, dx))) = p.iter().zip(&g).enumerate().find(|(_, (x, dx))| x.shape() != dx.shape()) {
            return Err(invalid(op, format!("parameter {i} {:?} has a gradient {:?}", x.shape(), dx.shape())));
        }
        // The step and state change only once every parameter's update has been built.
        let lr = self.lr.at(self.step);
        let mut state = self.per_param.clone();
        let mut out = Vec::with_capacity(p.len());
        for ((x, dx), st) in p.iter().zip(&g).zip(&mut state) {
            out.push(rule(x, &dx.astype(x.dtype())?, st, lr, self.step + 1)?);
        }
        let updated = params.with_leaves(&out)?;
        self.step += 1;
        self.per_param = state;
        Ok(updated)
    }

    fn state(&self) -> Tree {
        let step = Array::from_slice(&[self.step as u64], &[]).unwrap_or_else(crate::ops::failed);
        let mut m = vec![("step".to_string(), Tree::Array(step))];
        for (k, name) in self.names.iter().enumerate() {
            m.push((
                name.to_string(),
                Tree::List(self.per_param.iter().map(|st| Tree::Array(st[k].clone())).collect()),
            ));
        }
        Tree::map(m)
    }

    /// Takes the state from `t`, all or nothing. The arrays are checked against the
    /// parameters at the next step (their shapes are not known before).
    fn load_state(&mut self, t: &Tree) -> Result<()> {
        let bad = |what: &str| invalid("Optimizer::load_state", format!("the state has no {what}"));
        let Tree::Map(m) = t else { return Err(bad("map of step and slots")) };
        let step = match m.get("step") {
            Some(Tree::Array(a)) if a.ndim() == 0 && a.dtype().is_integer() => a.astype(DType::U64)?.item::<u64>()?,
            Some(_) => {
                return Err(invalid("Optimizer::load_state", "step must be an integer scalar".into()));
            }
            None => return Err(bad("step")),
        };
        // Another optimizer's state (Adam's `m` and `v` offered to SGD) has slots this one
        // does not keep.
        if let Some(other) = m.keys().find(|k| *k != "step" && !self.names.contains(&k.as_str())) {
            return Err(invalid(
                "Optimizer::load_state",
                format!("the state has {other}, not a slot of this optimizer (it keeps {})", self.names.join(", ")),
            ));
        }
        let mut per: Vec<Vec<Array>> = Vec::new();
        for name in self.names {
            let items = match m.get(*name) {
                Some(Tree::List(items)) => items.as_slice(),
                // A state saved before the first step has empty lists, which a file cannot hold.
                None if step == 0 => &[],
                _ => return Err(bad(&format!("list {name}"))),
            };
            let first = self.names[0];
            if *name == first {
                per = vec![Vec::new(); items.len()];
            } else if items.len() != per.len() {
                return Err(invalid(
                    "Optimizer::load_state",
                    format!("{name} has {} entries, {first} {}", items.len(), per.len()),
                ));
            }
            for (p, it) in per.iter_mut().zip(items) {
                let Tree::Array(a) = it else { return Err(bad(&format!("arrays in {name}"))) };
                p.push(a.clone());
            }
        }
        self.step = step as usize;
        self.per_param = per;
        Ok(())
    }
}

macro_rules! optimizer_common {
    () => {
        fn state(&self) -> Tree {
            self.slots.state()
        }
        fn load_state(&mut self, state: &Tree) -> Result<()> {
            self.slots.load_state(state)
        }
        fn learning_rate(&self) -> f64 {
            self.slots.lr.at(self.slots.step)
        }
    };
}

/// Stochastic gradient descent with momentum (optionally Nesterov), dampening and L2 weight
/// decay (PyTorch's and MLX's rule: `v ← μ·v + (1 − dampening)·(g + λ·p)`).
#[derive(Clone)]
pub struct Sgd {
    #[allow(missing_docs)]
    pub momentum: f64,
    #[allow(missing_docs)]
    pub weight_decay: f64,
    #[allow(missing_docs)]
    pub dampening: f64,
    #[allow(missing_docs)]
    pub nesterov: bool,
    slots: Slots,
}

impl Sgd {
    /// Plain SGD at `lr` (a rate or a [`Schedule`]).
    pub fn new(lr: impl Into<Schedule>) -> Sgd {
        Sgd { momentum: 0.0, weight_decay: 0.0, dampening: 0.0, nesterov: false, slots: Slots::new(lr.into(), &["v"]) }
    }

    /// With momentum `mu` (Nesterov's if `nesterov`).
    pub fn momentum(mut self, mu: f64, nesterov: bool) -> Sgd {
        self.momentum = mu;
        self.nesterov = nesterov;
        self
    }

    /// With L2 weight decay `wd`.
    pub fn weight_decay(mut self, wd: f64) -> Sgd {
        self.weight_decay = wd;
        self
    }

    /// With dampening `d`: the gradient enters the momentum as `(1 − d)·g`, from the first
    /// step on (MLX's rule; PyTorch takes the first gradient whole).
    pub fn dampening(mut self, d: f64) -> Sgd {
        self.dampening = d;
        self
    }
}

impl Optimizer for Sgd {
    fn update(&mut self, params: &Tree, grads: &Tree) -> Result<Tree> {
        let (mu, wd, damp, nest) = (self.momentum, self.weight_decay, self.dampening, self.nesterov);
        if nest && (mu <= 0.0 || damp != 0.0) {
            return Err(invalid(
                "Sgd",
                format!("Nesterov momentum needs a momentum above 0 and no dampening; given {mu} and {damp}"),
            ));
        }
        self.slots.apply("Sgd", params, grads, |p, g, st, lr, _| {
            let g = if wd != 0.0 { add(g, &multiply(p, &s(p, wd))?)? } else { g.clone() };
            let d = if mu != 0.0 {
                let v = add(&multiply(&st[0], &s(p, mu))?, &multiply(&g, &s(p, 1.0 - damp))?)?;
                st[0] = v.clone();
                if nest { add(&g, &multiply(&v, &s(p, mu))?)? } else { v }
            } else {
                g
            };
            subtract(p, &multiply(&d, &s(p, lr))?)
        })
    }
    optimizer_common!();
}

/// Adam (and AdamW with `weight_decay`, decoupled): moments `m`, `v` with decay rates
/// `betas`, `eps` added to `√v̂`. Bias correction is on (PyTorch's rule; MLX's `Adam`
/// defaults to off: set `bias_correction = false` to match it).
#[derive(Clone)]
pub struct Adam {
    #[allow(missing_docs)]
    pub betas: (f64, f64),
    #[allow(missing_docs)]
    pub eps: f64,
    /// Decoupled weight decay (AdamW): `p ← p − lr·λ·p` before the Adam step.
    pub weight_decay: f64,
    #[allow(missing_docs)]
    pub bias_correction: bool,
    slots: Slots,
}

impl Adam {
    /// Adam at `lr` with betas (0.9, 0.999) and eps 1e-8.
    pub fn new(lr: impl Into<Schedule>) -> Adam {
        Adam {
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            bias_correction: true,
            slots: Slots::new(lr.into(), &["m", "v"]),
        }
    }
}

/// AdamW: Adam with decoupled weight decay `weight_decay` (0.01 by default, as MLX and PyTorch).
pub fn adamw(lr: impl Into<Schedule>, weight_decay: f64) -> Adam {
    let mut a = Adam::new(lr);
    a.weight_decay = weight_decay;
    a
}

impl Optimizer for Adam {
    fn update(&mut self, params: &Tree, grads: &Tree) -> Result<Tree> {
        let ((b1, b2), eps, wd, bc) = (self.betas, self.eps, self.weight_decay, self.bias_correction);
        self.slots.apply("Adam", params, grads, |p, g, st, lr, t| {
            let m = add(&multiply(&st[0], &s(p, b1))?, &multiply(g, &s(p, 1.0 - b1))?)?;
            let v = add(&multiply(&st[1], &s(p, b2))?, &multiply(&square(g)?, &s(p, 1.0 - b2))?)?;
            st[0] = m.clone();
            st[1] = v.clone();
            let (c1, c2) = if bc { (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32)) } else { (1.0, 1.0) };
            let step =
                divide(&multiply(&m, &s(p, lr / c1))?, &add(&sqrt(&multiply(&v, &s(p, 1.0 / c2))?)?, &s(p, eps))?)?;
            let p = if wd != 0.0 { multiply(p, &s(p, 1.0 - lr * wd))? } else { p.clone() };
            subtract(&p, &step)
        })
    }
    optimizer_common!();
}

/// Adamax: Adam with the infinity norm (`u ← max(β₂·u, |g|)`). Bias correction of `m` is on
/// (PyTorch's rule; MLX's `Adamax` has none: set `bias_correction = false` to match it).
#[derive(Clone)]
pub struct Adamax {
    #[allow(missing_docs)]
    pub betas: (f64, f64),
    #[allow(missing_docs)]
    pub eps: f64,
    #[allow(missing_docs)]
    pub bias_correction: bool,
    slots: Slots,
}

impl Adamax {
    /// Adamax at `lr`, betas (0.9, 0.999), eps 1e-8.
    pub fn new(lr: impl Into<Schedule>) -> Adamax {
        Adamax { betas: (0.9, 0.999), eps: 1e-8, bias_correction: true, slots: Slots::new(lr.into(), &["m", "u"]) }
    }
}

impl Optimizer for Adamax {
    fn update(&mut self, params: &Tree, grads: &Tree) -> Result<Tree> {
        let ((b1, b2), eps, bc) = (self.betas, self.eps, self.bias_correction);
        self.slots.apply("Adamax", params, grads, |p, g, st, lr, t| {
            let m = add(&multiply(&st[0], &s(p, b1))?, &multiply(g, &s(p, 1.0 - b1))?)?;
            let u = maximum(&multiply(&st[1], &s(p, b2))?, &abs(g)?)?;
            st[0] = m.clone();
            st[1] = u.clone();
            let c1 = if bc { 1.0 - b1.powi(t as i32) } else { 1.0 };
            subtract(p, &divide(&multiply(&m, &s(p, lr / c1))?, &add(&u, &s(p, eps))?)?)
        })
    }
    optimizer_common!();
}

/// Adagrad: the learning rate divided by the root of the summed squared gradients.
#[derive(Clone)]
pub struct Adagrad {
    #[allow(missing_docs)]
    pub eps: f64,
    slots: Slots,
}

impl Adagrad {
    /// Adagrad at `lr`, eps 1e-8.
    pub fn new(lr: impl Into<Schedule>) -> Adagrad {
        Adagrad { eps: 1e-8, slots: Slots::new(lr.into(), &["sum"]) }
    }
}

impl Optimizer for Adagrad {
    fn update(&mut self, params: &Tree, grads: &Tree) -> Result<Tree> {
        let eps = self.eps;
        self.slots.apply("Adagrad", params, grads, |p, g, st, lr, _| {
            let acc = add(&st[0], &square(g)?)?;
            st[0] = acc.clone();
            subtract(p, &divide(&multiply(g, &s(p, lr))?, &add(&sqrt(&acc)?, &s(p, eps))?)?)
        })
    }
    optimizer_common!();
}

/// RMSprop: the gradient divided by the root of a running mean of its square (decay `alpha`).
#[derive(Clone)]
pub struct RmsProp {
    #[allow(missing_docs)]
    pub alpha: f64,
    #[allow(missing_docs)]
    pub eps: f64,
    slots: Slots,
}

impl RmsProp {
    /// RMSprop at `lr`, alpha 0.99, eps 1e-8.
    pub fn new(lr: impl Into<Schedule>) -> RmsProp {
        RmsProp { alpha: 0.99, eps: 1e-8, slots: Slots::new(lr.into(), &["v"]) }
    }
}

impl Optimizer for RmsProp {
    fn update(&mut self, params: &Tree, grads: &Tree) -> Result<Tree> {
        let (a, eps) = (self.alpha, self.eps);
        self.slots.apply("RmsProp", params, grads, |p, g, st, lr, _| {
            let v = add(&multiply(&st[0], &s(p, a))?, &multiply(&square(g)?, &s(p, 1.0 - a))?)?;
            st[0] = v.clone();
            subtract(p, &divide(&multiply(g, &s(p, lr))?, &add(&sqrt(&v)?, &s(p, eps))?)?)
        })
    }
    optimizer_common!();
}

/// Lion: the sign of an interpolated momentum, with decoupled weight decay.
#[derive(Clone)]
pub struct Lion {
    #[allow(missing_docs)]
    pub betas: (f64, f64),
    #[allow(missing_docs)]
    pub weight_decay: f64,
    slots: Slots,
}

impl Lion {
    /// Lion at `lr`, betas (0.9, 0.99), no weight decay.
    pub fn new(lr: impl Into<Schedule>) -> Lion {
        Lion { betas: (0.9, 0.99), weight_decay: 0.0, slots: Slots::new(lr.into(), &["m"]) }
    }
}

impl Optimizer for Lion {
    fn update(&mut self, params: &Tree, grads: &Tree) -> Result<Tree> {
        let ((b1, b2), wd) = (self.betas, self.weight_decay);
        self.slots.apply("Lion", params, grads, |p, g, st, lr, _| {
            let c = add(&multiply(&st[0], &s(p, b1))?, &multiply(g, &s(p, 1.0 - b1))?)?;
            st[0] = add(&multiply(&st[0], &s(p, b2))?, &multiply(g, &s(p, 1.0 - b2))?)?;
            let p = if wd != 0.0 { multiply(p, &s(p, 1.0 - lr * wd))? } else { p.clone() };
            subtract(&p, &multiply(&sign(&c)?, &s(&p, lr))?)
        })
    }
    optimizer_common!();
}

/// Adafactor (Shazeer & Stern; MLX's `Adafactor`): second moments of matrices kept as a row
/// and a column average (memory `O(n + m)` for an `n × m` weight), updates clipped by their
/// RMS, and by default a relative step size `min(1e-2, 1/√t)` scaled by the parameter's RMS, so
/// no learning rate is needed. Parameters of two or more axes are factored over the last two.
#[derive(Clone)]
pub struct Adafactor {
    /// Added to `g²` (`eps.0`) and the floor of the parameter-RMS scale (`eps.1`).
    pub eps: (f64, f64),
    /// Updates whose RMS exceeds this are scaled down to it.
    pub clip_threshold: f64,
    /// `β₂ = 1 − t^decay_rate`.
    pub decay_rate: f64,
    /// A first moment with this decay, if any.
    pub beta1: Option<f64>,
    /// Decoupled weight decay, scaled by the step size.
    pub weight_decay: f64,
    /// Scale the step size by the parameter's RMS.
    pub scale_parameter: bool,
    /// Use the relative step size instead of the learning rate.
    pub relative_step: bool,
    /// With `relative_step`, grow the step size as `1e-6·t` at first.
    pub warmup_init: bool,
    slots: Slots,
}

impl Adafactor {
    /// MLX's defaults: relative step sizes, no first moment, no weight decay.
    pub fn new() -> Adafactor {
        // The squared gradient's row and column means for two or more axes (the full-size slot
        // a scalar placeholder), the full square otherwise (the factored slots placeholders);
        // the first moment full-size.
        let factored = |k: usize, s: &[usize]| -> Vec<usize> {
            let n = s.len();
            match (k, n >= 2) {
                (0, true) => s[..n - 1].to_vec(),
                (1, true) => s[..n - 2].iter().chain(&s[n - 1..]).copied().collect(),
                (2, false) | (3, _) => s.to_vec(),
                _ => Vec::new(),
            }
        };
        Adafactor {
            eps: (1e-30, 1e-3),
            clip_threshold: 1.0,
            decay_rate: -0.8,
            beta1: None,
            weight_decay: 0.0,
            scale_parameter: true,
            relative_step: true,
            warmup_init: false,
            slots: Slots {
                shape: Some(Arc::new(factored)),
                ..Slots::new(Schedule::from(0.0), &["exp_avg_sq_row", "exp_avg_sq_col", "exp_avg_sq", "exp_avg"])
            },
        }
    }

    /// Steps of `lr` (scaled by the parameter's RMS while `scale_parameter`) instead of the
    /// relative step size. (MLX ignores a learning rate unless `relative_step=False` is also
    /// given; here giving one is what turns relative steps off.)
    pub fn with_learning_rate(lr: impl Into<Schedule>) -> Adafactor {
        let mut a = Adafactor::new();
        a.slots.lr = lr.into();
        a.relative_step = false;
        a
    }
}

impl Default for Adafactor {
    fn default() -> Adafactor {
        Adafactor::new()
    }
}

/// `√mean(x²)` as a scalar array.
fn rms(x: &Array) -> Result<Array> {
    sqrt(&mean(&square(x)?, None, false)?)
}

impl Optimizer for Adafactor {
    fn update(&mut self, params: &Tree, grads: &Tree) -> Result<Tree> {
        let a = self.clone();
        self.slots.apply("Adafactor", params, grads, |p, g, st, lr, t| {
            let t = t as f64;
            let relative =
                if a.relative_step { (if a.warmup_init { 1e-6 * t } else { 1e-2 }).min(1.0 / t.sqrt()) } else { lr };
            let step_size = if a.scale_parameter {
                multiply(&maximum(&rms(p)?, &s(p, a.eps.1))?, &s(p, relative))?
            } else {
                s(p, relative)
            };
            let b2 = 1.0 - t.powf(a.decay_rate);
            let blend = |old: &Array, new: &Array| add(&multiply(old, &s(p, b2))?, &multiply(new, &s(p, 1.0 - b2))?);
            let g2 = add(&square(g)?, &s(p, a.eps.0))?;
            let update = if p.ndim() >= 2 {
                st[0] = blend(&st[0], &mean(&g2, Some(&[-1]), false)?)?;
                st[1] = blend(&st[1], &mean(&g2, Some(&[-2]), false)?)?;
                let r = rsqrt(&divide(&st[0], &mean(&st[0], Some(&[-1]), true)?)?)?;
                let c = rsqrt(&st[1])?;
                multiply(&multiply(&expand_dims(&r, -1)?, &expand_dims(&c, -2)?)?, g)?
            } else {
                st[2] = blend(&st[2], &g2)?;
                multiply(&rsqrt(&st[2])?, g)?
            };
            let clip = maximum(&divide(&rms(&update)?, &s(p, a.clip_threshold))?, &s(p, 1.0))?;
            let mut update = multiply(&divide(&update, &clip)?, &step_size)?;
            if let Some(b1) = a.beta1 {
                st[3] = add(&multiply(&st[3], &s(p, b1))?, &multiply(&update, &s(p, 1.0 - b1))?)?;
                update = st[3].clone();
            }
            let p = if a.weight_decay != 0.0 {
                add(p, &multiply(p, &multiply(&step_size, &s(p, -a.weight_decay))?)?)?
            } else {
                p.clone()
            };
            subtract(&p, &update)
        })
    }
    optimizer_common!();
}

/// Muon (Jordan et al.; MLX's `Muon`): SGD momentum whose update, for parameters of two or
/// more axes (flattened to `[shape[0], rest]`), is replaced by its nearest semi-orthogonal
/// matrix through five Newton–Schulz iterations, and the step scaled by
/// `√max(1, rows/cols)`. Vectors take the plain momentum step.
#[derive(Clone)]
pub struct Muon {
    #[allow(missing_docs)]
    pub momentum: f64,
    /// Added to the gradient as `λ·p` (MLX's rule).
    pub weight_decay: f64,
    #[allow(missing_docs)]
    pub nesterov: bool,
    /// Newton–Schulz iterations.
    pub ns_steps: usize,
    slots: Slots,
}

impl Muon {
    /// MLX's defaults: momentum 0.95, weight decay 0.01, Nesterov, five iterations.
    pub fn new(lr: impl Into<Schedule>) -> Muon {
        Muon { momentum: 0.95, weight_decay: 0.01, nesterov: true, ns_steps: 5, slots: Slots::new(lr.into(), &["v"]) }
    }
}

/// The semi-orthogonal factor of `x` (2-D) by the quintic Newton–Schulz iteration.
fn newton_schulz(x: &Array, steps: usize) -> Result<Array> {
    let (a, b, c) = (3.4445, -4.7750, 2.0315);
    let tall = x.shape()[0] > x.shape()[1];
    let mut x = if tall { x.transpose(None)? } else { x.clone() };
    let norm = sqrt(&sum(&square(&x)?, None, true)?)?;
    x = divide(&x, &add(&norm, &s(&x, 1e-7))?)?;
    for _ in 0..steps {
        let m = matmul(&x, &x.transpose(None)?)?;
        let bm = add(&multiply(&m, &s(&m, b))?, &multiply(&matmul(&m, &m)?, &s(&m, c))?)?;
        x = add(&multiply(&x, &s(&x, a))?, &matmul(&bm, &x)?)?;
    }
    if tall { x.transpose(None) } else { Ok(x) }
}

impl Optimizer for Muon {
    fn update(&mut self, params: &Tree, grads: &Tree) -> Result<Tree> {
        let (mu, wd, nesterov, steps) = (self.momentum, self.weight_decay, self.nesterov, self.ns_steps);
        self.slots.apply("Muon", params, grads, |p, g, st, lr, _| {
            let g = if wd != 0.0 { add(g, &multiply(p, &s(p, wd))?)? } else { g.clone() };
            st[0] = add(&multiply(&st[0], &s(p, mu))?, &multiply(&g, &s(p, 1.0 - mu))?)?;
            let update = if nesterov {
                add(&multiply(&g, &s(p, 1.0 - mu))?, &multiply(&st[0], &s(p, mu))?)?
            } else {
                st[0].clone()
            };
            let (update, lr) = if p.ndim() >= 2 {
                let shape = p.shape().to_vec();
                let flat = update.reshape(&[shape[0] as isize, -1])?;
                let o = newton_schulz(&flat, steps)?.reshape(&shape.iter().map(|&d| d as isize).collect::<Vec<_>>())?;
                let n = shape.len();
                (o, lr * (shape[n - 2] as f64 / shape[n - 1] as f64).max(1.0).sqrt())
            } else {
                (update, lr)
            };
            subtract(p, &multiply(&update, &s(p, lr))?)
        })
    }
    optimizer_common!();
}

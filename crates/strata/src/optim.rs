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

/// `grads` scaled so that their global L2 norm is at most `max_norm`; also the norm before.
pub fn clip_grad_norm(grads: &Tree, max_norm: f64) -> Result<(Tree, Array)> {
    let leaves = grads.leaves();
    let mut total: Option<Array> = None;
    for g in &leaves {
        let sq = sum(&square(&g.astype(DType::F32)?)?, None, false)?;
        total = Some(match total {
            Some(t) => add(&t, &sq)?,
            None => sq,
        });
    }
    let norm = sqrt(&total.unwrap_or(crate::array::zeros(&[], DType::F32)?))?;
    let scale = minimum(&divide(&s(&norm, max_norm), &add(&norm, &s(&norm, 1e-6))?)?, &s(&norm, 1.0))?;
    let clipped = grads.map_leaves(&mut |g| multiply(g, &scale.astype(g.dtype())?))?;
    Ok((clipped, norm))
}

/// A rule that turns gradients into parameter updates.
pub trait Optimizer {
    /// The parameters after one step along `grads` (a tree of the same structure).
    fn update(&mut self, params: &Tree, grads: &Tree) -> Result<Tree>;
    /// The step count and per-parameter state, for saving.
    fn state(&self) -> Tree;
    /// Restores a state saved by [`state`](Self::state) from an optimizer of the same kind.
    fn load_state(&mut self, state: &Tree) -> Result<()>;
    /// The learning rate the next step will use.
    fn learning_rate(&self) -> f64;
}

/// The shared machinery: step count, schedule, and `k` state arrays per parameter.
#[derive(Clone)]
struct Slots {
    step: usize,
    lr: Schedule,
    per_param: Vec<Vec<Array>>,
    names: &'static [&'static str],
}

impl Slots {
    fn new(lr: Schedule, names: &'static [&'static str]) -> Slots {
        Slots { step: 0, lr, per_param: Vec::new(), names }
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
        if self.per_param.is_empty() {
            self.per_param = p
                .iter()
                .map(|x| self.names.iter().map(|_| crate::array::zeros(x.shape(), x.dtype())).collect::<Result<_>>())
                .collect::<Result<_>>()?;
        } else if self.per_param.len() != p.len() {
            return Err(invalid(op, format!("state for {} parameters, given {}", self.per_param.len(), p.len())));
        }
        let lr = self.lr.at(self.step);
        self.step += 1;
        let mut out = Vec::with_capacity(p.len());
        for ((x, dx), st) in p.iter().zip(&g).zip(&mut self.per_param) {
            if x.shape() != dx.shape() {
                return Err(invalid(op, format!("a parameter {:?} has a gradient {:?}", x.shape(), dx.shape())));
            }
            out.push(rule(x, &dx.astype(x.dtype())?, st, lr, self.step)?);
        }
        params.with_leaves(&out)
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

    fn load_state(&mut self, t: &Tree) -> Result<()> {
        let bad = |what: &str| invalid("Optimizer::load_state", format!("the state has no {what}"));
        let step = t.get("step").ok_or_else(|| bad("step"))?.astype(DType::U64)?.item::<u64>()?;
        let mut per: Vec<Vec<Array>> = Vec::new();
        for name in self.names {
            let Tree::Map(m) = t else { return Err(bad("map")) };
            let Some(Tree::List(items)) = m.get(*name) else { return Err(bad(name)) };
            if per.is_empty() {
                per = vec![Vec::new(); items.len()];
            }
            if items.len() != per.len() {
                return Err(invalid(
                    "Optimizer::load_state",
                    format!("{name} has {} entries, not {}", items.len(), per.len()),
                ));
            }
            for (p, it) in per.iter_mut().zip(items) {
                let Tree::Array(a) = it else { return Err(bad("arrays")) };
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
}

impl Optimizer for Sgd {
    fn update(&mut self, params: &Tree, grads: &Tree) -> Result<Tree> {
        let (mu, wd, damp, nest) = (self.momentum, self.weight_decay, self.dampening, self.nesterov);
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

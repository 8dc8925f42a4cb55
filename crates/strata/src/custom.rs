//! Functions with derivative rules of their own: [`custom_vjp`], and [`checkpoint`] built on it.
//!
//! A custom function is one primitive per output (`Prim::Custom`) whose inputs are the
//! function's arguments only. Evaluating it runs the forward function on the arguments' values
//! in a graph of its own, so none of its intermediates outlive the evaluation — that is what
//! lets `checkpoint` trade recomputation for memory. Reverse mode calls the given rule;
//! forward mode (`jvp`) and `vmap` use the forward function itself.

use std::sync::{Arc, Mutex};

use strata_core::Result;

use crate::graph::{Array, Data};
use crate::ops::{check_ok, invalid};
use crate::prim::Prim;

type Forward = dyn Fn(&[Array]) -> Result<Vec<Array>> + Send + Sync;
type Rule = dyn Fn(&[Array], &[Array], &[Array]) -> Result<Vec<Array>> + Send + Sync;

/// A custom function shared by the nodes of its outputs.
pub(crate) struct CustomFn {
    pub(crate) forward: Arc<Forward>,
    rule: Arc<Rule>,
    /// The outputs' shapes and dtypes.
    outputs: Vec<(Vec<usize>, strata_core::DType)>,
    /// The forward function computes on the host (reads values), so it has no graph: `jvp`
    /// goes through the vjp rule instead (it is linear), and `vmap` calls it on batches.
    pub(crate) opaque: Option<&'static str>,
    /// The last evaluation: argument node ids and every output's value (a function with
    /// several outputs runs once for all of them).
    last: Mutex<Option<(Vec<u64>, Vec<Data>)>>,
}

impl std::fmt::Debug for CustomFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "custom function with {} outputs", self.outputs.len())
    }
}

/// Output `index` of a custom function.
#[derive(Clone, Debug)]
pub(crate) struct CustomOutput {
    pub(crate) func: Arc<CustomFn>,
    pub(crate) index: usize,
}

impl PartialEq for CustomOutput {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.func, &other.func) && self.index == other.index
    }
}

impl CustomOutput {
    /// The output nodes of `func` applied to `args`.
    fn nodes(func: &Arc<CustomFn>, args: &[Array]) -> Vec<Array> {
        let device = args.first().map(Array::device).unwrap_or_else(crate::default_device);
        func.outputs
            .iter()
            .enumerate()
            .map(|(index, (shape, dtype))| {
                let prim = Prim::Custom(CustomOutput { func: func.clone(), index });
                Array::node(prim, args.to_vec(), shape.clone(), *dtype, device)
            })
            .collect()
    }

    /// The value of this output for evaluated arguments.
    pub(crate) fn eval(&self, args: &[Array]) -> Result<Data> {
        let ids: Vec<u64> = args.iter().map(Array::id).collect();
        let mut last = self.func.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seen, values)) = last.as_ref()
            && *seen == ids
        {
            return Ok(values[self.index].clone());
        }
        // Fresh leaves holding the arguments' values: the forward graph hangs off these, not
        // off the caller's graph, and is dropped when this returns.
        let leaves: Vec<Array> = args
            .iter()
            .map(|a| {
                let d = a
                    .data()
                    .cloned()
                    .ok_or_else(|| crate::graph::internal("a custom function's argument is pending"))?;
                Ok(Array::from_data(d, a.dtype(), a.device()))
            })
            .collect::<Result<_>>()?;
        let outs = (self.func.forward)(&leaves)?;
        crate::graph::eval_all(&outs.iter().collect::<Vec<_>>())?;
        let same = outs.len() == self.func.outputs.len()
            && outs.iter().zip(&self.func.outputs).all(|(o, (s, t))| o.shape() == s.as_slice() && o.dtype() == *t);
        if !same {
            let got: Vec<_> = outs.iter().map(|o| (o.shape().to_vec(), o.dtype())).collect();
            return Err(invalid(
                "custom_vjp",
                format!("the function returned {got:?} when evaluated but {:?} when traced", self.func.outputs),
            ));
        }
        let values = outs
            .iter()
            .map(|o| o.data().cloned().ok_or_else(|| crate::graph::internal("a custom output was not evaluated")))
            .collect::<Result<Vec<_>>>()?;
        let value = values[self.index].clone();
        *last = Some((ids, values));
        Ok(value)
    }

    /// The cotangents of the arguments given this output's cotangent `g` (the others' are
    /// zero: a rule is linear in the cotangents, so the per-output calls add up).
    pub(crate) fn vjp(&self, args: &[Array], g: &Array) -> Result<Vec<Array>> {
        let outputs = CustomOutput::nodes(&self.func, args);
        let cots = outputs
            .iter()
            .enumerate()
            .map(|(k, o)| if k == self.index { Ok(g.clone()) } else { crate::array::zeros(o.shape(), o.dtype()) })
            .collect::<Result<Vec<_>>>()?;
        let grads = (self.func.rule)(args, &outputs, &cots)?;
        if grads.len() != args.len() {
            return Err(invalid(
                "custom_vjp",
                format!("the vjp rule returned {} cotangents for {} arguments", grads.len(), args.len()),
            ));
        }
        for (i, (g, a)) in grads.iter().zip(args).enumerate() {
            if g.shape() != a.shape() {
                return Err(invalid(
                    "custom_vjp",
                    format!("the vjp rule's cotangent {i} has shape {:?}; argument {i} has {:?}", g.shape(), a.shape()),
                ));
            }
        }
        Ok(grads)
    }
}

/// `forward` with the reverse-mode derivative `rule(primals, outputs, cotangents) → one
/// cotangent per primal` instead of the one its ops imply (MLX's `custom_function` with a
/// `vjp`). `jvp` and `vmap` go through `forward` itself. With several outputs the rule is
/// called once per output that receives a cotangent, the others' cotangents zero. Gradients
/// flow to the arguments only: pass parameters as arguments, not captured in the closure.
///
/// ```
/// use strata::{Array, custom_vjp, grad};
/// // The identity, with gradients clipped to [-1, 1] on the way back.
/// let clip_grad = custom_vjp(
///     |x: &[Array]| Ok(vec![x[0].clone()]),
///     |_x: &[Array], _y: &[Array], g: &[Array]| Ok(vec![strata::clip(&g[0], Some(-1.0), Some(1.0))?]),
/// );
/// let f = move |x: &[Array]| (clip_grad(x)?.remove(0) * 5.0).sum(None, false);
/// let g = grad(f, &[])(&[Array::from_slice(&[1.0f32, 2.0], &[2])?])?;
/// assert_eq!(g[0].to_vec::<f32>()?, [1.0, 1.0]);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn custom_vjp<F, R>(forward: F, rule: R) -> impl Fn(&[Array]) -> Result<Vec<Array>> + Clone
where
    F: Fn(&[Array]) -> Result<Vec<Array>> + Send + Sync + 'static,
    R: Fn(&[Array], &[Array], &[Array]) -> Result<Vec<Array>> + Send + Sync + 'static,
{
    let (forward, rule): (Arc<Forward>, Arc<Rule>) = (Arc::new(forward), Arc::new(rule));
    move |args: &[Array]| {
        check_ok(&args.iter().collect::<Vec<_>>())?;
        // Shapes and types from a lazy trace (nothing runs).
        let outputs = forward(args)?.iter().map(|o| (o.shape().to_vec(), o.dtype())).collect();
        let func = Arc::new(CustomFn {
            forward: forward.clone(),
            rule: rule.clone(),
            outputs,
            opaque: None,
            last: Mutex::new(None),
        });
        Ok(CustomOutput::nodes(&func, args))
    }
}

/// A function computed on the host (its forward reads its arguments' values), with a
/// reverse-mode rule: `name(args)`'s outputs as nodes. Its forward pass runs once per evaluation
/// for all outputs; `jvp` is the vjp of the (linear) rule; `vmap` calls it on the batched
/// arguments (so it must take leading batch axes). Used by `linalg`.
pub(crate) fn host_function(
    name: &'static str,
    args: &[Array],
    outputs: Vec<(Vec<usize>, strata_core::DType)>,
    forward: impl Fn(&[Array]) -> Result<Vec<Array>> + Send + Sync + 'static,
    rule: impl Fn(&[Array], &[Array], &[Array]) -> Result<Vec<Array>> + Send + Sync + 'static,
) -> Result<Vec<Array>> {
    check_ok(&args.iter().collect::<Vec<_>>())?;
    let func = Arc::new(CustomFn {
        forward: Arc::new(forward),
        rule: Arc::new(rule),
        outputs,
        opaque: Some(name),
        last: Mutex::new(None),
    });
    Ok(CustomOutput::nodes(&func, args))
}

/// `f`, whose intermediates are not kept for the backward pass but recomputed there from its
/// arguments: memory for time, as `mx.checkpoint` and `jax.checkpoint`. The gradients are
/// `f`'s, with respect to its arguments (pass parameters as arguments, not captured).
///
/// ```
/// use strata::{Array, checkpoint, grad};
/// let block = checkpoint(|x: &[Array]| Ok(vec![strata::tanh(&strata::exp(&x[0])?)?]));
/// let f = move |x: &[Array]| block(x)?.remove(0).sum(None, false);
/// let g = grad(f, &[])(&[Array::from_slice(&[0.5f32], &[1])?])?;
/// let e = 0.5f32.exp();
/// assert!((g[0].item::<f32>()? - e * (1.0 - e.tanh().powi(2))).abs() < 1e-6);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn checkpoint<F>(f: F) -> impl Fn(&[Array]) -> Result<Vec<Array>> + Clone
where
    F: Fn(&[Array]) -> Result<Vec<Array>> + Send + Sync + 'static,
{
    let f = Arc::new(f);
    let g = f.clone();
    custom_vjp(
        move |a: &[Array]| f(a),
        move |primals: &[Array], _outputs: &[Array], cots: &[Array]| {
            Ok(crate::autodiff::vjp(|a| g(a), primals, cots)?.1)
        },
    )
}

//! Derivatives: each primitive's reverse-mode (`vjp`) and forward-mode (`jvp`) rule, and the
//! transforms built on them. Rules are written with array ops, so their results are graphs
//! too: `grad` of `grad`, `jvp` of `vjp` and the like compose without special cases.

use std::collections::{HashMap, HashSet};
use strata_core::DType;

use strata_core::kernel::{BinaryOp, Fused, FusedOp, ReduceOp, ScanOp, UnaryOp};
use strata_core::{Error, Result};

use crate::array::{ones_like, zeros};
use crate::graph::{Array, TraceGuard, topo_until};
use crate::ops::{self, *};
use crate::prim::Prim;

fn not_differentiable(what: String) -> Error {
    Error::InvalidArgument { op: "grad", message: what }
}

fn s(like: &Array, v: f64) -> Array {
    ops::weak_scalar(like, v)
}

/// `dy/dx` of a unary op at `x` (with output `y`), or `None` where it is zero everywhere it
/// exists (rounding, predicates).
fn unary_derivative(op: UnaryOp, x: &Array, y: &Array) -> Result<Option<Array>> {
    use UnaryOp::*;
    use std::f64::consts::{LN_2, LN_10, PI};
    let one = || s(x, 1.0);
    Ok(Some(match op {
        Neg => s(x, -1.0),
        Abs => sign(x)?,
        Square => multiply(x, &s(x, 2.0))?,
        Sqrt => divide(&s(y, 0.5), y)?,
        Rsqrt => multiply(&s(y, -0.5), &divide(y, x)?)?,
        Reciprocal => negative(&square(y)?)?,
        Exp => y.clone(),
        Exp2 => multiply(y, &s(y, LN_2))?,
        Expm1 => add(y, &one())?,
        Log => reciprocal(x)?,
        Log2 => reciprocal(&multiply(x, &s(x, LN_2))?)?,
        Log10 => reciprocal(&multiply(x, &s(x, LN_10))?)?,
        Log1p => reciprocal(&add(x, &one())?)?,
        Sin => cos(x)?,
        Cos => negative(&sin(x)?)?,
        Tan => add(&one(), &square(y)?)?,
        Asin => rsqrt(&subtract(&one(), &square(x)?)?)?,
        Acos => negative(&rsqrt(&subtract(&one(), &square(x)?)?)?)?,
        Atan => reciprocal(&add(&one(), &square(x)?)?)?,
        Sinh => cosh(x)?,
        Cosh => sinh(x)?,
        Tanh => subtract(&one(), &square(y)?)?,
        Asinh => rsqrt(&add(&square(x)?, &one())?)?,
        Acosh => rsqrt(&subtract(&square(x)?, &one())?)?,
        Atanh => reciprocal(&subtract(&one(), &square(x)?)?)?,
        Erf => multiply(&s(x, 2.0 / PI.sqrt()), &exp(&negative(&square(x)?)?)?)?,
        ErfInv => multiply(&s(y, PI.sqrt() / 2.0), &exp(&square(y)?)?)?,
        Sigmoid => multiply(y, &subtract(&one(), y)?)?,
        Softplus => sigmoid(x)?,
        Relu => greater(x, &s(x, 0.0))?.astype(x.dtype())?,
        Gelu => {
            // Φ(x) + x·φ(x)
            let cdf =
                multiply(&s(x, 0.5), &add(&one(), &erf(&multiply(x, &s(x, std::f64::consts::FRAC_1_SQRT_2))?)?)?)?;
            let pdf = multiply(&s(x, 1.0 / (2.0 * PI).sqrt()), &exp(&multiply(&square(x)?, &s(x, -0.5))?)?)?;
            add(&cdf, &multiply(x, &pdf)?)?
        }
        GeluTanh => {
            // 0.5(1 + t) + 0.5x(1 - t²)·c(1 + 3a x²), t = tanh(c(x + a x³))
            let (c, a) = ((2.0 / PI).sqrt(), 0.044715);
            let x2 = square(x)?;
            let inner = multiply(&s(x, c), &add(x, &multiply(&s(x, a), &multiply(&x2, x)?)?)?)?;
            let t = tanh(&inner)?;
            let left = multiply(&s(x, 0.5), &add(&one(), &t)?)?;
            let dinner = multiply(&s(x, c), &add(&one(), &multiply(&s(x, 3.0 * a), &x2)?)?)?;
            let right = multiply(&multiply(&s(x, 0.5), x)?, &multiply(&subtract(&one(), &square(&t)?)?, &dinner)?)?;
            add(&left, &right)?
        }
        Silu => {
            let sg = sigmoid(x)?;
            multiply(&sg, &add(&one(), &multiply(x, &subtract(&one(), &sg)?)?)?)?
        }
        Sign | Floor | Ceil | Round | IsNan | IsInf | IsFinite | LogicalNot | BitwiseNot => return Ok(None),
    }))
}

/// `(∂y/∂a, ∂y/∂b)` of a binary op, element-wise; `None` where zero.
fn binary_partials(op: BinaryOp, a: &Array, b: &Array, y: &Array) -> Result<(Option<Array>, Option<Array>)> {
    use BinaryOp::*;
    let one = || s(a, 1.0);
    Ok(match op {
        Add => (Some(one()), Some(one())),
        Sub => (Some(one()), Some(s(a, -1.0))),
        Mul => (Some(b.clone()), Some(a.clone())),
        Div => (Some(reciprocal(b)?), Some(negative(&divide(y, b)?)?)),
        Pow => {
            let da = multiply(b, &power(a, &subtract(b, &one())?)?)?;
            // y·ln a, defined as 0 where a = 0 (as JAX does, so x**2 at 0 has a finite grad).
            let zero = equal(a, &s(a, 0.0))?;
            let la = log(&where_(&zero, &one(), a)?)?;
            let db = where_(&zero, &s(a, 0.0), &multiply(y, &la)?)?;
            (Some(da), Some(db))
        }
        Maximum | Minimum => {
            let pick = if op == Maximum { greater_equal(a, b)? } else { less_equal(a, b)? };
            let pa = pick.astype(a.dtype())?;
            (Some(pa.clone()), Some(subtract(&one(), &pa)?))
        }
        Atan2 => {
            let r = add(&square(a)?, &square(b)?)?;
            (Some(divide(b, &r)?), Some(negative(&divide(a, &r)?)?))
        }
        LogAddExp => (Some(exp(&subtract(a, y)?)?), Some(exp(&subtract(b, y)?)?)),
        Remainder => (Some(one()), Some(negative(&floor_divide(a, b)?)?)),
        FloorDiv | Equal | NotEqual | Less | LessEqual | Greater | GreaterEqual | LogicalAnd | LogicalOr
        | BitwiseAnd | BitwiseOr | BitwiseXor | LeftShift | RightShift => (None, None),
    })
}

/// A fused program as the graph of separate ops it stands for (its derivatives are theirs).
fn expand_fused(program: &Fused, xs: &[Array]) -> Result<Array> {
    let mut vals: Vec<Array> = Vec::with_capacity(program.ops.len());
    for op in &program.ops {
        let v = match *op {
            FusedOp::Input(k) => xs[k].clone(),
            FusedOp::Unary(u, a) => unary(u, &vals[a])?,
            FusedOp::Binary(b, p, q) => binary(b, &vals[p], &vals[q])?,
        };
        vals.push(v);
    }
    Ok(vals.pop().expect("validated programs are not empty"))
}

fn node_like(prim: &Prim, inputs: Vec<Array>, like: &Array) -> Array {
    Array::node(prim.clone(), inputs, like.shape().to_vec(), like.dtype(), like.device())
}

fn sum_to_shape(g: &Array, shape: &[usize]) -> Result<Array> {
    let lead = g.ndim() - shape.len();
    let axes: Vec<isize> = (0..g.ndim())
        .filter(|&i| i < lead || (shape[i - lead] == 1 && g.shape()[i] != 1))
        .map(|i| i as isize)
        .collect();
    let r = if axes.is_empty() { g.clone() } else { sum(g, Some(&axes), true)? };
    Ok(reshape_to(&r, shape))
}

/// Whether derivatives flow through `a`: floating and complex types.
fn is_float(a: &Array) -> bool {
    a.dtype().is_float() || a.dtype() == DType::C64
}

/// The cotangents of `node`'s inputs given the cotangent `g` of its output (`None`: no
/// derivative flows to that input).
/// fp8 products are for inference: their operands have no tangent space worth the name.
fn no_derivative() -> strata_core::Error {
    strata_core::Error::InvalidArgument {
        op: "scaled_matmul",
        message: "fp8 products have no derivative (differentiate a float32 or bfloat16 matmul instead)".into(),
    }
}

fn node_vjp(node: &Array, x: &[Array], g: &Array) -> Result<Vec<Option<Array>>> {
    let prim = node.prim();
    // The cotangent times an element-wise partial derivative; complex cotangents are real
    // pairs (fft.rs), so a complex partial enters conjugated.
    let mul = |d: Option<Array>| {
        d.map(|d| if d.dtype() == DType::C64 { multiply(g, &crate::fft::conj(&d)?) } else { multiply(g, &d) })
            .transpose()
    };
    Ok(match prim {
        Prim::Constant | Prim::Error(_) => vec![],
        Prim::ScaledMatmul => return Err(no_derivative()),
        Prim::Identity => vec![Some(g.clone())],
        Prim::StopGradient => vec![None],
        Prim::Unary(op) => vec![mul(unary_derivative(*op, &x[0], node)?)?],
        Prim::Binary(op) => {
            let (da, db) = binary_partials(*op, &x[0], &x[1], node)?;
            match op {
                BinaryOp::Add => vec![Some(g.clone()), Some(g.clone())],
                BinaryOp::Sub => vec![Some(g.clone()), Some(negative(g)?)],
                _ => vec![mul(da)?, mul(db)?],
            }
        }
        Prim::Select => {
            let z = s(g, 0.0);
            vec![None, Some(where_(&x[0], g, &z)?), Some(where_(&x[0], &z, g)?)]
        }
        Prim::Reduce(op, axes) => {
            let gx = match op {
                ReduceOp::Sum => Some(broadcast_to(g, x[0].shape())?),
                ReduceOp::Max | ReduceOp::Min => {
                    let mask = equal(&x[0], node)?.astype(g.dtype())?;
                    let ax: Vec<isize> = axes.iter().map(|&a| a as isize).collect();
                    let n = sum(&mask, Some(&ax), true)?;
                    Some(multiply(&mask, &divide(g, &n)?)?)
                }
                ReduceOp::Prod => Some(divide(&multiply(g, node)?, &x[0])?),
                _ => None,
            };
            vec![gx]
        }
        Prim::Scan { op, axis, reverse, inclusive } => {
            let ax = *axis as isize;
            match (op, inclusive) {
                (ScanOp::Sum, _) => vec![Some(cumsum(g, ax, !reverse, *inclusive)?)],
                (ScanOp::LogAddExp, true) => {
                    let r = cumsum(&multiply(g, &exp(&negative(node)?)?)?, ax, !reverse, true)?;
                    vec![Some(multiply(&exp(&x[0])?, &r)?)]
                }
                _ => return Err(not_differentiable(format!("the derivative of {} is not implemented yet", op.name()))),
            }
        }
        Prim::Cast => vec![if is_float(&x[0]) && is_float(node) { Some(g.astype(x[0].dtype())?) } else { None }],
        Prim::Matmul => {
            let (a, b) = (&x[0], &x[1]);
            vec![Some(matmul(g, &swapaxes(b, -1, -2)?)?), Some(matmul(&swapaxes(a, -1, -2)?, g)?)]
        }
        Prim::Conv(desc) => {
            let (dx, dw) = crate::conv::conv_vjp(desc, &x[0], &x[1], g)?;
            vec![Some(dx), Some(dw)]
        }
        Prim::Reshape => vec![Some(reshape_to(g, x[0].shape()))],
        Prim::Transpose(perm) => {
            let mut inv = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inv[p] = i;
            }
            vec![Some(permute(g, inv))]
        }
        Prim::Broadcast => vec![Some(sum_to_shape(g, x[0].shape())?)],
        Prim::Slice { start, step } => {
            let base = zeros(x[0].shape(), g.dtype())?;
            let p = Prim::SliceUpdate { start: start.clone(), step: step.clone() };
            vec![Some(node_like(&p, vec![base, g.clone()], &x[0]))]
        }
        Prim::SliceUpdate { start, step } => {
            let z = zeros(x[1].shape(), g.dtype())?;
            let base = node_like(prim, vec![g.clone(), z], &x[0]);
            let upd = node_like(&Prim::Slice { start: start.clone(), step: step.clone() }, vec![g.clone()], &x[1]);
            vec![Some(base), Some(upd)]
        }
        Prim::RandomBits | Prim::ArgSort(_) => vec![None],
        Prim::Gather(axis) => {
            let base = zeros(x[0].shape(), g.dtype())?;
            vec![Some(node_like(&Prim::ScatterAdd(*axis), vec![base, x[1].clone(), g.clone()], &x[0])), None]
        }
        Prim::ScatterAdd(axis) => {
            let upd = node_like(&Prim::Gather(*axis), vec![g.clone(), x[1].clone()], &x[2]);
            vec![Some(g.clone()), None, Some(upd)]
        }
        Prim::Fused(program) => {
            let (_, gs) = vjp(|a| Ok(vec![expand_fused(program, a)?]), x, std::slice::from_ref(g))?;
            gs.into_iter().map(Some).collect()
        }
        Prim::Custom(c) => c.vjp(x, g)?.into_iter().map(Some).collect(),
        // y = x·Wᵀ gives dx = g·W: the same weight, the other way round.
        Prim::QuantizedMatmul { weight, transpose } => {
            vec![Some(crate::quantized::quantized_matmul(g, weight, !transpose)?)]
        }
        Prim::Attention(desc) => {
            let (_, gs) = vjp(|a| Ok(vec![crate::fast::attention_reference(desc, a)?]), x, std::slice::from_ref(g))?;
            gs.into_iter().zip(x).map(|(g, xi)| is_float(xi).then_some(g)).collect()
        }
        Prim::Concat(axis) => {
            let mut at = 0;
            let mut out = Vec::new();
            for xi in x {
                let len = xi.shape()[*axis] as isize;
                out.push(Some(slice_axis(g, *axis as isize, at, at + len)?));
                at += len;
            }
            out
        }
    })
}

/// The tangent of `node`'s output given its inputs' tangents (`None`: zero).
fn node_jvp(node: &Array, x: &[Array], t: &[Option<Array>]) -> Result<Option<Array>> {
    let prim = node.prim();
    let tz = |i: usize| -> Result<Array> {
        match &t[i] {
            Some(t) => Ok(t.clone()),
            None => zeros(x[i].shape(), x[i].dtype()),
        }
    };
    let scaled = |i: usize, d: Option<Array>| -> Result<Option<Array>> {
        match (&t[i], d) {
            (Some(t), Some(d)) => Ok(Some(multiply(t, &d)?)),
            _ => Ok(None),
        }
    };
    let sum_opt = |a: Option<Array>, b: Option<Array>| -> Result<Option<Array>> {
        Ok(match (a, b) {
            (Some(a), Some(b)) => Some(add(&a, &b)?),
            (a, b) => a.or(b),
        })
    };
    Ok(match prim {
        Prim::Constant | Prim::Error(_) | Prim::StopGradient => None,
        Prim::ScaledMatmul => return Err(no_derivative()),
        Prim::Identity => t[0].clone(),
        Prim::Unary(op) => scaled(0, unary_derivative(*op, &x[0], node)?)?,
        Prim::Binary(op) => {
            let (da, db) = binary_partials(*op, &x[0], &x[1], node)?;
            sum_opt(scaled(0, da)?, scaled(1, db)?)?
        }
        Prim::Select => {
            if t[1].is_none() && t[2].is_none() {
                None
            } else {
                Some(where_(&x[0], &tz(1)?, &tz(2)?)?)
            }
        }
        Prim::Reduce(op, axes) => {
            let Some(t0) = &t[0] else { return Ok(None) };
            let ax: Vec<isize> = axes.iter().map(|&a| a as isize).collect();
            match op {
                ReduceOp::Sum => Some(node_like(prim, vec![t0.clone()], node)),
                ReduceOp::Max | ReduceOp::Min => {
                    let mask = equal(&x[0], node)?.astype(t0.dtype())?;
                    Some(divide(&sum(&multiply(t0, &mask)?, Some(&ax), true)?, &sum(&mask, Some(&ax), true)?)?)
                }
                ReduceOp::Prod => Some(multiply(node, &sum(&divide(t0, &x[0])?, Some(&ax), true)?)?),
                _ => None,
            }
        }
        Prim::Scan { op, inclusive, .. } => {
            let Some(t0) = &t[0] else { return Ok(None) };
            match (op, inclusive) {
                (ScanOp::Sum, _) => Some(node_like(prim, vec![t0.clone()], node)),
                (ScanOp::LogAddExp, true) => {
                    // dyᵢ = e^(−yᵢ) Σ_{j≤i} e^(xⱼ) tⱼ
                    let Prim::Scan { axis, reverse, .. } = prim else { unreachable!() };
                    let c = cumsum(&multiply(&exp(&x[0])?, t0)?, *axis as isize, *reverse, true)?;
                    Some(multiply(&exp(&negative(node)?)?, &c)?)
                }
                _ => return Err(not_differentiable(format!("the derivative of {} is not implemented yet", op.name()))),
            }
        }
        Prim::Cast => match &t[0] {
            Some(t0) if is_float(node) => Some(t0.astype(node.dtype())?),
            _ => None,
        },
        Prim::Matmul => {
            let l = t[0].as_ref().map(|ta| matmul(ta, &x[1])).transpose()?;
            let r = t[1].as_ref().map(|tb| matmul(&x[0], tb)).transpose()?;
            sum_opt(l, r)?
        }
        Prim::RandomBits | Prim::ArgSort(_) => None,
        // Bilinear: d conv(x, w) = conv(dx, w) + conv(x, dw).
        Prim::Conv(desc) => {
            let l = t[0].as_ref().map(|tx| crate::conv::conv_node(tx, &x[1], desc)).transpose()?;
            let r = t[1].as_ref().map(|tw| crate::conv::conv_node(&x[0], tw, desc)).transpose()?;
            sum_opt(l, r)?
        }
        Prim::Gather(_) => t[0].as_ref().map(|t0| node_like(prim, vec![t0.clone(), x[1].clone()], node)),
        Prim::ScatterAdd(_) => {
            if t[0].is_none() && t[2].is_none() {
                None
            } else {
                Some(node_like(prim, vec![tz(0)?, x[1].clone(), tz(2)?], node))
            }
        }
        Prim::Fused(program) => {
            let ts = (0..x.len()).map(tz).collect::<Result<Vec<_>>>()?;
            let (_, out) = jvp(|a| Ok(vec![expand_fused(program, a)?]), x, &ts)?;
            out.into_iter().next()
        }
        Prim::QuantizedMatmul { .. } => t[0].as_ref().map(|t0| node_like(prim, vec![t0.clone()], node)),
        // A host function has no graph to push tangents through, but its vjp rule is a
        // linear map u ↦ Jᵀu written in array ops: the vjp of that map at t is J·t.
        Prim::Custom(c) if c.func.opaque.is_some() => {
            let ts = (0..x.len()).map(tz).collect::<Result<Vec<_>>>()?;
            let u0 = zeros(node.shape(), node.dtype())?;
            let (_, jt) = vjp(|u| c.vjp(x, &u[0]), &[u0], &ts)?;
            jt.into_iter().next()
        }
        Prim::Custom(c) => {
            let ts = (0..x.len()).map(tz).collect::<Result<Vec<_>>>()?;
            let (_, mut out) = jvp(|a| (c.func.forward)(a), x, &ts)?;
            Some(out.swap_remove(c.index))
        }
        Prim::Attention(desc) => {
            let ts = (0..x.len()).map(tz).collect::<Result<Vec<_>>>()?;
            let (_, out) = jvp(|a| Ok(vec![crate::fast::attention_reference(desc, a)?]), x, &ts)?;
            out.into_iter().next()
        }
        // Linear in their inputs: the same primitive applied to the tangents.
        Prim::Reshape
        | Prim::Transpose(_)
        | Prim::Broadcast
        | Prim::Slice { .. }
        | Prim::SliceUpdate { .. }
        | Prim::Concat(_) => {
            if t.iter().all(Option::is_none) {
                None
            } else {
                let ts = (0..x.len()).map(tz).collect::<Result<Vec<_>>>()?;
                Some(node_like(prim, ts, node))
            }
        }
    })
}

/// Fresh handles on the arguments, so a transform can tell them from everything else.
fn trace_inputs(primals: &[Array]) -> Vec<Array> {
    primals.iter().map(|p| node_like(&Prim::Identity, vec![p.clone()], p)).collect()
}

fn accumulate(map: &mut HashMap<u64, Array>, id: u64, g: Array) -> Result<()> {
    let g = match map.remove(&id) {
        Some(prev) => add(&prev, &g)?,
        None => g,
    };
    map.insert(id, g);
    Ok(())
}

/// The reverse pass: cotangents of `inputs` given those of `outputs`.
fn backward(inputs: &[Array], outputs: &[Array], cotangents: &[Array]) -> Result<Vec<Array>> {
    let input_ids: HashSet<u64> = inputs.iter().map(Array::id).collect();
    let order = topo_until(outputs, &input_ids);
    let mut depends: HashSet<u64> = input_ids.clone();
    for n in &order {
        if n.inputs().iter().any(|i| depends.contains(&i.id())) {
            depends.insert(n.id());
        }
    }
    let mut cot: HashMap<u64, Array> = HashMap::new();
    for (o, c) in outputs.iter().zip(cotangents) {
        if depends.contains(&o.id()) {
            accumulate(&mut cot, o.id(), c.clone())?;
        }
    }
    for n in order.iter().rev() {
        if input_ids.contains(&n.id()) || !depends.contains(&n.id()) {
            continue;
        }
        let Some(g) = cot.remove(&n.id()) else { continue };
        let xs: Vec<Array> = n.inputs().clone();
        let gs = node_vjp(n, &xs, &g)?;
        for (xi, gi) in xs.iter().zip(gs) {
            if let Some(gi) = gi
                && depends.contains(&xi.id())
            {
                let gi = if is_float(xi) && gi.dtype() != xi.dtype() { gi.astype(xi.dtype())? } else { gi };
                accumulate(&mut cot, xi.id(), gi)?;
            }
        }
    }
    inputs.iter().map(|i| cot.remove(&i.id()).map_or_else(|| zeros(i.shape(), i.dtype()), Ok)).collect()
}

fn check_like(what: &str, given: &[Array], like: &[Array]) -> Result<()> {
    if given.len() != like.len() {
        return Err(Error::InvalidArgument {
            op: "vjp",
            message: format!("{} {what} given for {} arrays", given.len(), like.len()),
        });
    }
    for (i, (g, l)) in given.iter().zip(like).enumerate() {
        if g.shape() != l.shape() {
            return Err(Error::InvalidArgument {
                op: "vjp",
                message: format!("{what} {i} has shape {:?}; it must match {:?}", g.shape(), l.shape()),
            });
        }
    }
    Ok(())
}

/// Runs `f` at `primals` and pulls `cotangents` (one per output, of its shape) back through
/// it: returns `f`'s outputs and the cotangents of its arguments.
///
/// ```
/// use strata::{Array, vjp, sin};
/// let x = Array::from_slice(&[0.0f32, 1.0], &[2])?;
/// let (y, g) = vjp(|a| Ok(vec![sin(&a[0])?]), &[x], &[Array::from_slice(&[1.0f32, 2.0], &[2])?])?;
/// assert!((g[0].to_vec::<f32>()?[1] - 2.0 * 1f32.cos()).abs() < 1e-6);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn vjp(
    f: impl FnOnce(&[Array]) -> Result<Vec<Array>>,
    primals: &[Array],
    cotangents: &[Array],
) -> Result<(Vec<Array>, Vec<Array>)> {
    let _trace = TraceGuard::new();
    let inputs = trace_inputs(primals);
    let outputs = f(&inputs)?;
    check_like("cotangent", cotangents, &outputs)?;
    let cots = cotangents.iter().zip(&outputs).map(|(c, o)| c.astype(o.dtype())).collect::<Result<Vec<_>>>()?;
    let grads = backward(&inputs, &outputs, &cots)?;
    Ok((outputs, grads))
}

/// Runs `f` at `primals` and pushes `tangents` (one per argument, of its shape) forward:
/// returns `f`'s outputs and their tangents.
pub fn jvp(
    f: impl FnOnce(&[Array]) -> Result<Vec<Array>>,
    primals: &[Array],
    tangents: &[Array],
) -> Result<(Vec<Array>, Vec<Array>)> {
    check_like("tangent", tangents, primals)?;
    let _trace = TraceGuard::new();
    let inputs = trace_inputs(primals);
    let outputs = f(&inputs)?;
    let input_ids: HashSet<u64> = inputs.iter().map(Array::id).collect();
    let mut tan: HashMap<u64, Array> = HashMap::new();
    for (i, t) in inputs.iter().zip(tangents) {
        tan.insert(i.id(), t.astype(i.dtype())?);
    }
    for n in topo_until(&outputs, &input_ids) {
        if tan.contains_key(&n.id()) {
            continue;
        }
        let xs: Vec<Array> = n.inputs().clone();
        let ts: Vec<Option<Array>> = xs.iter().map(|x| tan.get(&x.id()).cloned()).collect();
        if ts.iter().all(Option::is_none) {
            continue;
        }
        if let Some(t) = node_jvp(&n, &xs, &ts)? {
            tan.insert(n.id(), t);
        }
    }
    let touts = outputs
        .iter()
        .map(|o| tan.get(&o.id()).cloned().map_or_else(|| zeros(o.shape(), o.dtype()), Ok))
        .collect::<Result<Vec<_>>>()?;
    Ok((outputs, touts))
}

fn scalar_output(y: &Array) -> Result<()> {
    if y.size() != 1 {
        return Err(Error::InvalidArgument {
            op: "grad",
            message: format!(
                "the function returned shape {:?}; grad needs a scalar (use vjp with a cotangent)",
                y.shape()
            ),
        });
    }
    if !y.dtype().is_float() {
        return Err(Error::InvalidArgument {
            op: "grad",
            message: format!("the function returned {}; grad needs a floating-point output", y.dtype()),
        });
    }
    Ok(())
}

/// `f`'s value and its gradient with respect to the arguments numbered `argnums`
/// (all of them if empty). `f` returns a scalar.
///
/// ```
/// use strata::{Array, value_and_grad};
/// let f = |x: &[Array]| (&x[0] * &x[0]).sum(None, false);
/// let (v, g) = value_and_grad(f, &[])(&[Array::from_slice(&[3.0f32], &[1])?])?;
/// assert_eq!((v.item::<f32>()?, g[0].item::<f32>()?), (9.0, 6.0));
/// # Ok::<(), strata::Error>(())
/// ```
pub fn value_and_grad<F>(f: F, argnums: &[usize]) -> impl Fn(&[Array]) -> Result<(Array, Vec<Array>)>
where
    F: Fn(&[Array]) -> Result<Array>,
{
    let argnums = argnums.to_vec();
    move |args: &[Array]| {
        let nums: Vec<usize> = if argnums.is_empty() { (0..args.len()).collect() } else { argnums.clone() };
        if let Some(&bad) = nums.iter().find(|&&i| i >= args.len()) {
            return Err(Error::InvalidArgument {
                op: "grad",
                message: format!("argnum {bad} is out of range for {} arguments", args.len()),
            });
        }
        let _trace = TraceGuard::new();
        let mut all = args.to_vec();
        let traced = trace_inputs(&nums.iter().map(|&i| args[i].clone()).collect::<Vec<_>>());
        for (&i, t) in nums.iter().zip(&traced) {
            all[i] = t.clone();
        }
        let y = f(&all)?;
        scalar_output(&y)?;
        let grads = backward(&traced, std::slice::from_ref(&y), &[ones_like(&y)?])?;
        Ok((y, grads))
    }
}

/// The gradient of a scalar `f` with respect to the arguments numbered `argnums` (all if
/// empty).
pub fn grad<F>(f: F, argnums: &[usize]) -> impl Fn(&[Array]) -> Result<Vec<Array>>
where
    F: Fn(&[Array]) -> Result<Array>,
{
    let vg = value_and_grad(f, argnums);
    move |args: &[Array]| Ok(vg(args)?.1)
}

//! `vmap`: a function of one example mapped over a batch axis. The function is traced once on
//! the first example (real data, so it may read values), and its graph is replayed with every
//! primitive rewritten by its batching rule: the batch rides along as a new leading axis, and
//! operands without one broadcast against it.

use std::sync::Arc;

use strata_core::{Error, Result};

use crate::compile::{Value, trace};
use crate::graph::Array;
use crate::ops::{self, broadcast_to, moveaxis, norm_axis, permute, reshape_to};
use crate::prim::Prim;

fn invalid(message: String) -> Error {
    Error::InvalidArgument { op: "vmap", message }
}

/// A replayed value: its array and whether axis 0 is the batch.
#[derive(Clone)]
struct Batched {
    a: Array,
    batched: bool,
}

/// `x` with a batch axis of size `b` in front (broadcast if it has none).
fn with_batch(x: &Batched, b: usize) -> Result<Array> {
    if x.batched {
        return Ok(x.a.clone());
    }
    let mut shape = vec![b];
    shape.extend(x.a.shape());
    broadcast_to(&reshape_to(&x.a, &[&[1], x.a.shape()].concat()), &shape)
}

/// Runs one traced step on batched operands; the result has the batch in front.
fn batch_step(prim: &Prim, xs: &[Batched], shape: &[usize], dtype: strata_core::DType, b: usize) -> Result<Array> {
    let bshape: Vec<usize> = [&[b][..], shape].concat();
    let like = |inputs: Vec<Array>, prim: Prim| Array::node(prim, inputs, bshape.clone(), dtype, xs[0].a.device());
    let all = || xs.iter().map(|x| with_batch(x, b)).collect::<Result<Vec<_>>>();
    Ok(match prim {
        Prim::Constant | Prim::Error(_) => return Err(invalid("internal error: a constant step".into())),
        // Element-wise: the operands already have the step's shape; give them all the batch.
        Prim::Identity
        | Prim::StopGradient
        | Prim::Unary(_)
        | Prim::Binary(_)
        | Prim::Select
        | Prim::Cast
        | Prim::Fused(_) => like(all()?, prim.clone()),
        // Leading axes of x are batch axes already.
        Prim::QuantizedMatmul { .. } => like(all()?, prim.clone()),
        Prim::ScaledMatmul => {
            return Err(invalid("scaled_matmul takes 2-D operands: call it once per matrix, not under vmap".into()));
        }
        Prim::Reshape => like(all()?, Prim::Reshape),
        Prim::Transpose(perm) => {
            let p: Vec<usize> = std::iter::once(0).chain(perm.iter().map(|&p| p + 1)).collect();
            like(all()?, Prim::Transpose(p))
        }
        Prim::Broadcast => {
            // Align the example's axes to the right of the target, after the batch.
            let x = with_batch(&xs[0], b)?;
            let lead = shape.len() + 1 - x.ndim();
            let mut s = vec![b];
            s.extend(std::iter::repeat_n(1, lead));
            s.extend(&x.shape()[1..]);
            like(vec![reshape_to(&x, &s)], Prim::Broadcast)
        }
        Prim::Reduce(op, axes) => like(all()?, Prim::Reduce(*op, axes.iter().map(|a| a + 1).collect())),
        Prim::Scan { op, axis, reverse, inclusive } => {
            like(all()?, Prim::Scan { op: *op, axis: axis + 1, reverse: *reverse, inclusive: *inclusive })
        }
        Prim::Slice { start, step } => {
            like(all()?, Prim::Slice { start: [&[0][..], start].concat(), step: [&[1][..], step].concat() })
        }
        Prim::SliceUpdate { start, step } => {
            like(all()?, Prim::SliceUpdate { start: [&[0][..], start].concat(), step: [&[1][..], step].concat() })
        }
        Prim::Concat(axis) => like(all()?, Prim::Concat(axis + 1)),
        Prim::Gather(axis) => like(all()?, Prim::Gather(axis + 1)),
        Prim::ArgSort(axis) => like(all()?, Prim::ArgSort(axis + 1)),
        // One key per example: [B, 1, 2] keys give [B, 1, N] bits; flatten the key axis away.
        Prim::RandomBits => {
            let k = with_batch(&xs[0], b)?; // [B, K, 2]
            let (kk, n) = (shape[0], shape[1]);
            let keys = reshape_to(&k, &[b * kk, 2]);
            let bits = Array::node(Prim::RandomBits, vec![keys], vec![b * kk, n], dtype, k.device());
            reshape_to(&bits, &bshape)
        }
        Prim::ScatterAdd(axis) => like(all()?, Prim::ScatterAdd(axis + 1)),
        Prim::Conv(desc) => {
            let x = with_batch(&xs[0], b)?; // [b, batch, ...]
            if xs[1].batched {
                // A weight per example: one convolution each.
                let one = |a: &Array, i: usize| {
                    ops::slice_axis(a, 0, i as isize, i as isize + 1).and_then(|s| ops::squeeze(&s, Some(&[0])))
                };
                let ys = (0..b)
                    .map(|i| crate::conv::conv_node(&one(&x, i)?, &one(&xs[1].a, i)?, desc))
                    .collect::<Result<Vec<_>>>()?;
                ops::stack(&ys.iter().collect::<Vec<_>>(), 0)?
            } else {
                // One weight: the examples join the convolution's batch.
                let folded = reshape_to(&x, &[&[b * x.shape()[1]][..], &x.shape()[2..]].concat());
                reshape_to(&crate::conv::conv_node(&folded, &xs[1].a, desc)?, &bshape)
            }
        }
        // The forward function mapped (a custom vjp rule does not survive vmap).
        // A host function takes leading batch axes itself (tracing it would freeze its values).
        Prim::Custom(c) if c.func.opaque.is_some() => (c.func.forward)(&all()?)?.swap_remove(c.index),
        Prim::Custom(c) => {
            let f = c.func.forward.clone();
            let axes: Vec<Option<isize>> = xs.iter().map(|x| x.batched.then_some(0)).collect();
            let args: Vec<Array> = xs.iter().map(|x| x.a.clone()).collect();
            vmap(move |a: &[Array]| f(a), &axes, &[])(&args)?.swap_remove(c.index)
        }
        // The examples join the attention's batch axis.
        Prim::Attention(desc) => {
            let fold = |x: &Batched| -> Result<Array> {
                let a = with_batch(x, b)?;
                Ok(reshape_to(&a, &[&[b * a.shape()[1]][..], &a.shape()[2..]].concat()))
            };
            let folded = xs.iter().map(fold).collect::<Result<Vec<_>>>()?;
            let out = [&[b * shape[0]][..], &shape[1..]].concat();
            reshape_to(&Array::node(Prim::Attention(*desc), folded, out, dtype, xs[0].a.device()), &bshape)
        }
        Prim::Matmul => {
            let (a, bm) = (with_batch(&xs[0], b)?, with_batch(&xs[1], b)?);
            like(vec![a, bm], Prim::Matmul)
        }
    })
}

/// Maps `f` over axis `in_axes[i]` of argument `i` (`None`: not mapped, the same for every
/// example), returning outputs with the batch at `out_axes[j]` (0 for all if empty).
///
/// ```
/// use strata::{Array, vmap};
/// // Each row's dot product with itself, mapped over rows.
/// let f = vmap(|a: &[Array]| Ok(vec![strata::inner(&a[0], &a[0])?]), &[Some(0)], &[]);
/// let x = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
/// assert_eq!(f(&[x])?[0].to_vec::<f32>()?, [5.0, 25.0]);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn vmap<F>(f: F, in_axes: &[Option<isize>], out_axes: &[isize]) -> impl Fn(&[Array]) -> Result<Vec<Array>>
where
    F: Fn(&[Array]) -> Result<Vec<Array>>,
{
    let (in_axes, out_axes) = (in_axes.to_vec(), out_axes.to_vec());
    let f = Arc::new(f);
    move |args: &[Array]| {
        if in_axes.len() != args.len() {
            return Err(invalid(format!("{} in_axes for {} arguments", in_axes.len(), args.len())));
        }
        // Move each mapped axis to the front and find the batch size.
        let mut front = Vec::with_capacity(args.len());
        let mut size: Option<usize> = None;
        for (i, (a, ax)) in args.iter().zip(&in_axes).enumerate() {
            match ax {
                None => front.push(Batched { a: a.clone(), batched: false }),
                Some(ax) => {
                    let k = norm_axis("vmap", *ax, a.ndim())?;
                    let n = a.shape()[k];
                    if let Some(s) = size
                        && s != n
                    {
                        return Err(invalid(format!(
                            "argument {i} has {n} examples along axis {ax}; earlier ones have {s}"
                        )));
                    }
                    size = Some(n);
                    front.push(Batched { a: moveaxis(a, k as isize, 0)?, batched: true });
                }
            }
        }
        let Some(b) = size else { return Err(invalid("no argument is mapped (every in_axis is None)".into())) };
        if b == 0 {
            return Err(invalid("the mapped axis is empty".into()));
        }
        // Trace on the first example.
        let examples: Vec<Array> = front
            .iter()
            .map(|x| {
                if x.batched {
                    ops::slice_axis(&x.a, 0, 0, 1).and_then(|s| ops::squeeze(&s, Some(&[0])))
                } else {
                    Ok(x.a.clone())
                }
            })
            .collect::<Result<_>>()?;
        let program = trace(&*f, &examples)?;
        let mut vals: Vec<Batched> = Vec::with_capacity(program.steps.len());
        let get = |v: &Value, vals: &[Batched]| match v {
            Value::Arg(i) => front[*i].clone(),
            Value::Const(c) => Batched { a: c.clone(), batched: false },
            Value::Step(j) => vals[*j].clone(),
        };
        for s in &program.steps {
            let xs: Vec<Batched> = s.inputs.iter().map(|v| get(v, &vals)).collect();
            let a = if xs.iter().any(|x| x.batched) {
                Batched { a: batch_step(&s.prim, &xs, &s.shape, s.dtype, b)?, batched: true }
            } else {
                let inputs = xs.into_iter().map(|x| x.a).collect();
                Batched {
                    a: Array::node(s.prim.clone(), inputs, s.shape.clone(), s.dtype, args[0].device()),
                    batched: false,
                }
            };
            vals.push(a);
        }
        let outs: Vec<Batched> = program.outputs.iter().map(|v| get(v, &vals)).collect();
        if !out_axes.is_empty() && out_axes.len() != outs.len() {
            return Err(invalid(format!("{} out_axes for {} outputs", out_axes.len(), outs.len())));
        }
        outs.iter()
            .enumerate()
            .map(|(j, o)| {
                let a = with_batch(o, b)?;
                let ax = out_axes.get(j).copied().unwrap_or(0);
                let k = norm_axis("vmap", ax, a.ndim())?;
                let mut perm: Vec<usize> = (1..a.ndim()).collect();
                perm.insert(k, 0);
                Ok(permute(&a, perm))
            })
            .collect()
    }
}

//! `compile`: trace a function once per input signature (shapes and dtypes), keep the graph
//! as a program, and replay it on later calls — with chains of element-wise operations fused
//! into one kernel ([`Fused`]), so a GELU written as nine ops reads and writes memory once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use strata_core::kernel::{Fused, FusedOp};
use strata_core::{DType, Result};

use crate::graph::{Array, TraceGuard, topo_until};
use crate::prim::Prim;

/// Where a step's operand comes from.
#[derive(Clone)]
pub(crate) enum Value {
    Arg(usize),
    Const(Array),
    Step(usize),
}

pub(crate) struct Step {
    pub prim: Prim,
    pub inputs: Vec<Value>,
    pub shape: Vec<usize>,
    pub dtype: DType,
}

/// A traced function: steps in dependency order and which values it returns.
pub(crate) struct Program {
    pub steps: Vec<Step>,
    pub outputs: Vec<Value>,
}

type Signature = Vec<(Vec<usize>, DType)>;

/// A compiled function; call it with [`Compiled::call`].
pub struct Compiled<F> {
    f: F,
    cache: Mutex<HashMap<Signature, Arc<Program>>>,
}

/// Compiles `f`: the first call with a given signature traces it; later calls replay the
/// traced (and fused) program without running `f`. Like MLX's `compile`, `f` must be pure: a
/// value it reads from outside its arguments is captured as a constant at tracing time.
///
/// ```
/// use strata::{Array, compile};
/// let gelu = compile(|x: &[Array]| {
///     let x = &x[0];
///     Ok(vec![0.5 * x * (1.0 + strata::tanh(&(0.79788456 * (x + 0.044715 * x * x * x)))?)])
/// });
/// let x = Array::from_slice(&[-1.0f32, 0.0, 2.0], &[3])?;
/// let y = gelu.call(&[x])?;
/// assert!((y[0].to_vec::<f32>()?[2] - 1.9545977).abs() < 1e-6);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn compile<F>(f: F) -> Compiled<F>
where
    F: Fn(&[Array]) -> Result<Vec<Array>>,
{
    Compiled { f, cache: Mutex::new(HashMap::new()) }
}

impl<F> Compiled<F>
where
    F: Fn(&[Array]) -> Result<Vec<Array>>,
{
    /// Runs the function (lazily: the results are pending arrays, as uncompiled).
    pub fn call(&self, args: &[Array]) -> Result<Vec<Array>> {
        let sig: Signature = args.iter().map(|a| (a.shape().to_vec(), a.dtype())).collect();
        let cached = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&sig).cloned();
        let program = match cached {
            Some(p) => p,
            None => {
                let p = Arc::new(fuse(trace(&self.f, args)?));
                self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(sig, p.clone());
                p
            }
        };
        Ok(replay(&program, args))
    }

    /// How many signatures have been traced.
    pub fn traces(&self) -> usize {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

pub(crate) fn trace(f: &impl Fn(&[Array]) -> Result<Vec<Array>>, args: &[Array]) -> Result<Program> {
    let _trace = TraceGuard::new();
    let inputs: Vec<Array> = args
        .iter()
        .map(|a| Array::node(Prim::Identity, vec![a.clone()], a.shape().to_vec(), a.dtype(), a.device()))
        .collect();
    let outputs = f(&inputs)?;
    let arg_of: HashMap<u64, usize> = inputs.iter().enumerate().map(|(i, a)| (a.id(), i)).collect();
    let stop: HashSet<u64> = arg_of.keys().copied().collect();
    let order = topo_until(&outputs, &stop);
    // Nodes that depend on an argument become steps; the rest are constants.
    let mut value: HashMap<u64, Value> = HashMap::new();
    let mut steps = Vec::new();
    for n in &order {
        if let Prim::Error(e) = n.prim() {
            return Err(e.clone());
        }
        if let Some(&i) = arg_of.get(&n.id()) {
            value.insert(n.id(), Value::Arg(i));
            continue;
        }
        let ins = n.inputs().clone();
        let dependent = ins.iter().any(|i| matches!(value.get(&i.id()), Some(Value::Arg(_) | Value::Step(_))));
        if !dependent {
            value.insert(n.id(), Value::Const(n.clone()));
            continue;
        }
        let inputs = ins.iter().map(|i| value[&i.id()].clone()).collect();
        value.insert(n.id(), Value::Step(steps.len()));
        steps.push(Step { prim: n.prim().clone(), inputs, shape: n.shape().to_vec(), dtype: n.dtype() });
    }
    let outputs = outputs.iter().map(|o| value[&o.id()].clone()).collect();
    Ok(Program { steps, outputs })
}

/// A value's identity, for sharing one input slot between its uses.
fn key(v: &Value) -> (u8, u64) {
    match v {
        Value::Arg(a) => (0, *a as u64),
        Value::Const(c) => (1, c.id()),
        Value::Step(j) => (2, *j as u64),
    }
}

fn fusable(s: &Step) -> bool {
    let float = matches!(s.dtype, DType::F32 | DType::F64);
    match s.prim {
        Prim::Unary(op) => float && op.output_dtype(s.dtype).ok() == Some(s.dtype),
        Prim::Binary(op) => float && op.output_dtype(s.dtype).ok() == Some(s.dtype),
        _ => false,
    }
}

/// Merges element-wise steps into [`Prim::Fused`] steps. A step joins its users' group when
/// all its users are in one fusable group of its shape and dtype and it is not an output.
fn fuse(p: Program) -> Program {
    let n = p.steps.len();
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, s) in p.steps.iter().enumerate() {
        for v in &s.inputs {
            if let Value::Step(j) = v {
                users[*j].push(i);
            }
        }
    }
    let is_output: HashSet<usize> =
        p.outputs.iter().filter_map(|v| if let Value::Step(j) = v { Some(*j) } else { None }).collect();
    let mut group: Vec<Option<usize>> = vec![None; n];
    for i in (0..n).rev() {
        if !fusable(&p.steps[i]) {
            continue;
        }
        let shared = users[i].first().and_then(|&u| group[u]).filter(|&g| {
            !is_output.contains(&i)
                && users[i].iter().all(|&u| group[u] == Some(g))
                && p.steps[g].shape == p.steps[i].shape
                && p.steps[g].dtype == p.steps[i].dtype
        });
        group[i] = Some(shared.unwrap_or(i));
    }
    // Rebuild: each group becomes one step at its root's place.
    let mut members: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, g) in group.iter().enumerate() {
        if let Some(g) = g {
            members.entry(*g).or_default().push(i);
        }
    }
    let mut new_index: Vec<Option<usize>> = vec![None; n];
    let mut steps = Vec::new();
    let remap = |v: &Value, new_index: &[Option<usize>]| match v {
        Value::Step(j) => Value::Step(new_index[*j].expect("inputs come first")),
        v => v.clone(),
    };
    for (i, s) in p.steps.iter().enumerate() {
        match group[i] {
            Some(g) if g != i => continue, // emitted with its root
            Some(g) if members[&g].len() > 1 => {
                let ms = &members[&g];
                let mut ops = Vec::new();
                // Where each member's result and each outside operand sit in `ops`.
                let mut slot: HashMap<usize, usize> = HashMap::new();
                let mut outside: HashMap<(u8, u64), usize> = HashMap::new();
                let mut ext: Vec<Value> = Vec::new();
                for &m in ms {
                    let st = &p.steps[m];
                    let mut operand = |v: &Value| -> usize {
                        if let Value::Step(j) = v
                            && let Some(&k) = slot.get(j)
                        {
                            return k;
                        }
                        *outside.entry(key(v)).or_insert_with(|| {
                            ext.push(v.clone());
                            ops.push(FusedOp::Input(ext.len() - 1));
                            ops.len() - 1
                        })
                    };
                    let op = match st.prim {
                        Prim::Unary(u) => FusedOp::Unary(u, operand(&st.inputs[0])),
                        Prim::Binary(b) => {
                            let x = operand(&st.inputs[0]);
                            FusedOp::Binary(b, x, operand(&st.inputs[1]))
                        }
                        _ => unreachable!("only fusable steps are grouped"),
                    };
                    ops.push(op);
                    slot.insert(m, ops.len() - 1);
                }
                let inputs = ext.iter().map(|v| remap(v, &new_index)).collect();
                let program = Fused { dtype: s.dtype, ops };
                new_index[i] = Some(steps.len());
                steps.push(Step {
                    prim: Prim::Fused(Arc::new(program)),
                    inputs,
                    shape: s.shape.clone(),
                    dtype: s.dtype,
                });
            }
            _ => {
                let inputs = s.inputs.iter().map(|v| remap(v, &new_index)).collect();
                new_index[i] = Some(steps.len());
                steps.push(Step { prim: s.prim.clone(), inputs, shape: s.shape.clone(), dtype: s.dtype });
            }
        }
    }
    let outputs = p.outputs.iter().map(|v| remap(v, &new_index)).collect();
    Program { steps, outputs }
}

fn replay(p: &Program, args: &[Array]) -> Vec<Array> {
    let device = args.first().map(|a| a.device()).unwrap_or_else(crate::default_device);
    let mut made: Vec<Array> = Vec::with_capacity(p.steps.len());
    let get = |v: &Value, made: &[Array]| match v {
        Value::Arg(i) => args[*i].clone(),
        Value::Const(c) => c.clone(),
        Value::Step(j) => made[*j].clone(),
    };
    for s in &p.steps {
        let inputs = s.inputs.iter().map(|v| get(v, &made)).collect();
        made.push(Array::node(s.prim.clone(), inputs, s.shape.clone(), s.dtype, device));
    }
    p.outputs.iter().map(|v| get(v, &made)).collect()
}

//! The [`Fused`] kernel: an element-wise program run over blocks of `CHUNK` elements, each
//! step a vectorized loop over one block held in L1 (one op per loop, its `match` resolved
//! outside the loop), blocks split across threads. Contiguous inputs are read in place,
//! broadcast scalars folded into the ops that use them (and steps on scalars alone folded
//! once per call), and register blocks reused once their value is dead, so memory is touched
//! once per input and once for the output, and L1 holds the live set, however long the chain.

use bytemuck::Pod;
use rayon::prelude::*;
use strata_core::kernel::{BinaryOp, Fused, FusedOp, Layout, UnaryOp};
use strata_core::{DType, Error, Result};

use crate::elem::Float;
use crate::{TensorMut, TensorRef};

const OP: &str = "fused";
/// Elements per step loop (4 KiB of f32: the live register blocks fit L1 together).
const CHUNK: usize = 1024;
/// Elements per parallel task.
const TASK: usize = 16 * CHUNK;

/// Runs `program` on `inputs` (each of the output's shape and the program's dtype, any
/// strides) into a contiguous `out`.
pub fn fused(program: &Fused, inputs: &[TensorRef<'_>], out: TensorMut<'_>) -> Result<()> {
    let ins: Vec<(&Layout, DType)> = inputs.iter().map(|t| (t.layout, t.dtype)).collect();
    program.validate(&ins, (out.layout, out.dtype))?;
    for (i, t) in inputs.iter().enumerate() {
        t.check(OP, &format!("input {i}"))?;
    }
    out.check(OP, "the output")?;
    if out.layout.numel() == 0 {
        return Ok(());
    }
    if !out.layout.is_contiguous() {
        return Err(Error::InvalidArgument { op: OP, message: "the output must be contiguous".into() });
    }
    match program.dtype {
        DType::F32 => run::<f32>(program, inputs, out),
        _ => run::<f64>(program, inputs, out),
    }
    Ok(())
}

/// How an input is read: a slice, one broadcast value, or any strides.
enum Source<'a, T> {
    Contiguous(&'a [T]),
    Scalar(T),
    Strided(&'a [T], &'a Layout),
}

fn run<T: Float + Pod>(program: &Fused, inputs: &[TensorRef<'_>], out: TensorMut<'_>) {
    let n = out.layout.numel();
    let offset = out.layout.offset();
    let o = &mut out.buffer.typed_mut::<T>()[offset..offset + n];
    let sources: Vec<Source<'_, T>> = inputs
        .iter()
        .map(|t| {
            let data = t.buffer.typed::<T>();
            let l = t.layout;
            if l.is_contiguous() {
                Source::Contiguous(&data[l.offset()..l.offset() + n])
            } else if l.strides().iter().zip(l.shape()).all(|(&s, &d)| s == 0 || d == 1) {
                Source::Scalar(data[l.offset()])
            } else {
                Source::Strided(data, l)
            }
        })
        .collect();
    let plan = plan(program, &sources);
    let task = |(t, o): (usize, &mut [T])| {
        let mut regs = vec![T::ZERO; plan.slots * CHUNK];
        for (c, o) in o.chunks_mut(CHUNK).enumerate() {
            block(&plan, &sources, t * TASK + c * CHUNK, o, &mut regs);
        }
    };
    if n > TASK {
        o.par_chunks_mut(TASK).enumerate().for_each(task);
    } else {
        task((0, o));
    }
}

/// Where a step's values for the current block are: a register block, a contiguous input
/// read in place, or one value (a broadcast input, or steps on such values folded when the
/// plan is made).
#[derive(Clone, Copy)]
enum Arg<T> {
    Slot(usize),
    Input(usize),
    Value(T),
}

/// One loop over a block, into a register slot or (`None`) the output.
enum Step<T> {
    Gather(usize, Option<usize>),
    Copy(Arg<T>),
    Unary(UnaryOp, Arg<T>, Option<usize>),
    Binary(BinaryOp, Arg<T>, Arg<T>, Option<usize>),
}

/// The program as loops over a block, made once per call. Register blocks are reused once
/// their value is dead, so the live set, not the program's length, decides how much of L1 a
/// block takes.
struct Plan<T> {
    steps: Vec<Step<T>>,
    slots: usize,
}

fn plan<T: Float>(program: &Fused, sources: &[Source<'_, T>]) -> Plan<T> {
    let n = program.ops.len();
    let last = n - 1;
    let operands = |op: &FusedOp| match *op {
        FusedOp::Input(_) => [None, None],
        FusedOp::Unary(_, a) => [Some(a), None],
        FusedOp::Binary(_, x, y) => [Some(x), (y != x).then_some(y)],
    };
    let mut last_use = vec![0; n];
    for (i, op) in program.ops.iter().enumerate() {
        operands(op).into_iter().flatten().for_each(|a| last_use[a] = i);
    }
    let mut args: Vec<Arg<T>> = Vec::with_capacity(n);
    let (mut steps, mut free, mut slots) = (Vec::new(), Vec::new(), 0);
    for (i, op) in program.ops.iter().enumerate() {
        let mut dst = || {
            (i != last).then(|| {
                free.pop().unwrap_or_else(|| {
                    slots += 1;
                    slots - 1
                })
            })
        };
        let arg = match *op {
            FusedOp::Input(k) => match &sources[k] {
                Source::Contiguous(_) => Some(Arg::Input(k)),
                Source::Scalar(v) => Some(Arg::Value(*v)),
                Source::Strided(..) => {
                    let d = dst();
                    steps.push(Step::Gather(k, d));
                    d.map(Arg::Slot)
                }
            },
            FusedOp::Unary(u, a) => match args[a] {
                Arg::Value(v) => Some(Arg::Value(v.unary(u))),
                a => {
                    let d = dst();
                    steps.push(Step::Unary(u, a, d));
                    d.map(Arg::Slot)
                }
            },
            FusedOp::Binary(b, x, y) => match (args[x], args[y]) {
                (Arg::Value(p), Arg::Value(q)) => Some(Arg::Value(p.binary(q, b))),
                (x, y) => {
                    let d = dst();
                    steps.push(Step::Binary(b, x, y, d));
                    d.map(Arg::Slot)
                }
            },
        };
        // `None`: the step wrote the output. An input or a folded value is copied out.
        let arg = match arg {
            Some(a) if i == last => {
                steps.push(Step::Copy(a));
                a
            }
            Some(a) => a,
            None => Arg::Value(T::ZERO),
        };
        args.push(arg);
        for a in operands(op).into_iter().flatten() {
            if let (true, Arg::Slot(s)) = (last_use[a] == i, args[a]) {
                free.push(s);
            }
        }
    }
    Plan { steps, slots }
}

/// Elements `start .. start + out.len()`.
fn block<T: Float + Pod>(plan: &Plan<T>, sources: &[Source<'_, T>], start: usize, out: &mut [T], regs: &mut [T]) {
    let w = out.len();
    for step in &plan.steps {
        let dst_slot = match *step {
            Step::Gather(_, d) | Step::Unary(.., d) | Step::Binary(.., d) => d,
            Step::Copy(_) => None,
        };
        // The destination block, and the register file split around it for the operands.
        let (lo, dst, hi, at) = match dst_slot {
            Some(d) => {
                let (lo, rest) = regs.split_at_mut(d * CHUNK);
                let (dst, hi) = rest.split_at_mut(CHUNK);
                (&*lo, &mut dst[..w], &*hi, d)
            }
            None => (&*regs, &mut *out, &[][..], usize::MAX),
        };
        let slice = |a: Arg<T>| -> &[T] {
            match a {
                Arg::Slot(s) if s < at => &lo[s * CHUNK..s * CHUNK + w],
                Arg::Slot(s) => &hi[(s - at - 1) * CHUNK..(s - at - 1) * CHUNK + w],
                Arg::Input(k) => match &sources[k] {
                    Source::Contiguous(s) => &s[start..start + w],
                    _ => unreachable!("only contiguous inputs are read in place"),
                },
                Arg::Value(_) => unreachable!("values are folded into the ops that use them"),
            }
        };
        match *step {
            Step::Gather(k, _) => {
                if let Source::Strided(data, l) = &sources[k] {
                    for (j, d) in dst.iter_mut().enumerate() {
                        *d = data[position(l, start + j)];
                    }
                }
            }
            Step::Copy(Arg::Value(v)) => dst.fill(v),
            Step::Copy(a) => dst.copy_from_slice(slice(a)),
            Step::Unary(u, a, _) => unary_slice(u, slice(a), dst),
            Step::Binary(b, Arg::Value(p), y, _) => binary_scalar_left(b, p, slice(y), dst),
            Step::Binary(b, x, Arg::Value(q), _) => binary_scalar_right(b, slice(x), q, dst),
            Step::Binary(b, x, y, _) => binary_slice(b, slice(x), slice(y), dst),
        }
    }
}

/// The buffer position of row-major element `i` of `l`.
fn position(l: &Layout, mut i: usize) -> usize {
    let mut pos = l.offset() as isize;
    for (&d, &s) in l.shape().iter().zip(l.strides()).rev() {
        pos += (i % d) as isize * s;
        i /= d;
    }
    pos as usize
}

macro_rules! unary_slice_arms {
    ($op:ident, $a:ident, $o:ident; $($v:ident)*) => {
        match $op {
            $(UnaryOp::$v => crate::elementwise::simd1($a, $o, &|x: T| x.unary(UnaryOp::$v)),)*
            _ => unreachable!("rejected by Fused::validate"),
        }
    };
}

macro_rules! binary_slice_arms {
    ($op:ident, $a:ident, $b:ident, $o:ident; $($v:ident)*) => {
        match $op {
            $(BinaryOp::$v => crate::elementwise::simd2($a, $b, $o, &|x: T, y: T| x.binary(y, BinaryOp::$v)),)*
            _ => unreachable!("rejected by Fused::validate"),
        }
    };
}

fn unary_slice<T: Float + Pod>(op: UnaryOp, a: &[T], o: &mut [T]) {
    crate::elementwise::unary_float_ops!(unary_slice_arms(op, a, o))
}

fn binary_slice<T: Float + Pod>(op: BinaryOp, a: &[T], b: &[T], o: &mut [T]) {
    crate::elementwise::binary_float_ops!(binary_slice_arms(op, a, b, o))
}

macro_rules! binary_scalar_arms {
    ($op:ident, $a:ident, $o:ident, $f:ident; $($v:ident)*) => {
        match $op {
            $(BinaryOp::$v => crate::elementwise::simd1($a, $o, &|x: T| $f(x, BinaryOp::$v)),)*
            _ => unreachable!("rejected by Fused::validate"),
        }
    };
}

/// `o = a op s`.
fn binary_scalar_right<T: Float + Pod>(op: BinaryOp, a: &[T], s: T, o: &mut [T]) {
    let f = move |x: T, op: BinaryOp| x.binary(s, op);
    crate::elementwise::binary_float_ops!(binary_scalar_arms(op, a, o, f))
}

/// `o = s op b`.
fn binary_scalar_left<T: Float + Pod>(op: BinaryOp, s: T, b: &[T], o: &mut [T]) {
    let f = move |y: T, op: BinaryOp| s.binary(y, op);
    crate::elementwise::binary_float_ops!(binary_scalar_arms(op, b, o, f))
}

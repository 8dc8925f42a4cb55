//! The [`Fused`] kernel: an element-wise program run over blocks of `CHUNK` elements, each
//! step a vectorized loop over one block held in L1 (one op per loop, its `match` resolved
//! outside the loop), blocks split across threads. Contiguous inputs are read in place and
//! broadcast scalars folded into the ops that use them, so memory is touched once per input
//! and once for the output, however long the chain.

use bytemuck::Pod;
use rayon::prelude::*;
use strata_core::kernel::{BinaryOp, Fused, FusedOp, Layout, UnaryOp};
use strata_core::{DType, Error, Result};

use crate::elem::Float;
use crate::{TensorMut, TensorRef};

const OP: &str = "fused";
/// Elements per step loop (4 KiB of f32: every live step fits L1 together).
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
    let task = |(t, o): (usize, &mut [T])| {
        let mut regs = vec![T::ZERO; program.ops.len() * CHUNK];
        for (c, o) in o.chunks_mut(CHUNK).enumerate() {
            block(program, &sources, t * TASK + c * CHUNK, o, &mut regs);
        }
    };
    if n > TASK {
        o.par_chunks_mut(TASK).enumerate().for_each(task);
    } else {
        task((0, o));
    }
}

/// Where a step's values for the current block are: in its register block, straight in a
/// contiguous input, or one broadcast value (folded into the ops that use it).
#[derive(Clone, Copy)]
enum Operand {
    Reg(usize),
    Input(usize),
    Scalar(usize),
}

/// Elements `start .. start + out.len()`; the last step writes `out` directly.
fn block<T: Float + Pod>(program: &Fused, sources: &[Source<'_, T>], start: usize, out: &mut [T], regs: &mut [T]) {
    let w = out.len();
    let last = program.ops.len() - 1;
    let mut where_: Vec<Operand> = Vec::with_capacity(program.ops.len());
    for (i, op) in program.ops.iter().enumerate() {
        let (before, rest) = regs.split_at_mut(i * CHUNK);
        let dst = if i == last { &mut *out } else { &mut rest[..w] };
        let slice = |o: Operand| -> &[T] {
            match o {
                Operand::Reg(k) => &before[k * CHUNK..k * CHUNK + w],
                Operand::Input(k) => match &sources[k] {
                    Source::Contiguous(s) => &s[start..start + w],
                    _ => unreachable!("only contiguous inputs are read in place"),
                },
                Operand::Scalar(_) => unreachable!("scalars are folded into their users"),
            }
        };
        let scalar = |o: Operand| match o {
            Operand::Scalar(k) => match &sources[k] {
                Source::Scalar(v) => Some(*v),
                _ => None,
            },
            _ => None,
        };
        let here = match *op {
            FusedOp::Input(k) => match &sources[k] {
                Source::Contiguous(_) if i != last => Operand::Input(k),
                Source::Scalar(_) if i != last => Operand::Scalar(k),
                Source::Contiguous(s) => {
                    dst.copy_from_slice(&s[start..start + w]);
                    Operand::Reg(i)
                }
                Source::Scalar(v) => {
                    dst.fill(*v);
                    Operand::Reg(i)
                }
                Source::Strided(data, l) => {
                    for (j, d) in dst.iter_mut().enumerate() {
                        *d = data[position(l, start + j)];
                    }
                    Operand::Reg(i)
                }
            },
            FusedOp::Unary(u, a) => {
                match scalar(where_[a]) {
                    Some(v) => dst.fill(v.unary(u)),
                    None => unary_slice(u, slice(where_[a]), dst),
                }
                Operand::Reg(i)
            }
            FusedOp::Binary(b, x, y) => {
                match (scalar(where_[x]), scalar(where_[y])) {
                    (Some(p), Some(q)) => dst.fill(p.binary(q, b)),
                    (None, Some(q)) => binary_scalar_right(b, slice(where_[x]), q, dst),
                    (Some(p), None) => binary_scalar_left(b, p, slice(where_[y]), dst),
                    (None, None) => binary_slice(b, slice(where_[x]), slice(where_[y]), dst),
                }
                Operand::Reg(i)
            }
        };
        where_.push(here);
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

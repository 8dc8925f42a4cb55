//! The fused element-wise kernel against a float64 interpretation of the same program, over
//! every input arrangement (read in place, gathered, broadcast and folded), programs whose
//! output is an input or a value known before the loop, and lengths past one parallel task
//! with a ragged tail; outputs poisoned first.

mod common;

use common::*;
use strata_core::DType;
use strata_core::kernel::{BinaryOp, Fused, FusedOp, UnaryOp};
use strata_cpu::{TensorMut, TensorRef};

fn interpret(program: &Fused, inputs: &[Vec<f64>], i: usize) -> f64 {
    let mut v: Vec<f64> = Vec::with_capacity(program.ops.len());
    for op in &program.ops {
        let x = match *op {
            FusedOp::Input(k) => inputs[k][i],
            FusedOp::Unary(UnaryOp::Tanh, a) => v[a].tanh(),
            FusedOp::Unary(UnaryOp::Exp, a) => v[a].exp(),
            FusedOp::Unary(UnaryOp::Neg, a) => -v[a],
            FusedOp::Binary(BinaryOp::Add, a, b) => v[a] + v[b],
            FusedOp::Binary(BinaryOp::Sub, a, b) => v[a] - v[b],
            FusedOp::Binary(BinaryOp::Mul, a, b) => v[a] * v[b],
            FusedOp::Binary(BinaryOp::Div, a, b) => v[a] / v[b],
            FusedOp::Binary(BinaryOp::Maximum, a, b) => v[a].max(v[b]),
            ref op => unreachable!("{op:?} is not used here"),
        };
        v.push(x);
    }
    v[v.len() - 1]
}

fn check(program: &Fused, shape: &[usize], arrangements: &[Arrangement], seed: u64) {
    let n: usize = shape.iter().product();
    let dtype = program.dtype;
    let mut values = Vec::new();
    let mut tensors = Vec::new();
    for (k, &a) in arrangements.iter().enumerate() {
        let mut v = values_in(n, seed + k as u64);
        tensors.push(tensor(dtype, shape, &mut v, a));
        values.push(v);
    }
    let mut poison = vec![f64::NAN; n];
    let (mut ob, ol) = tensor(dtype, shape, &mut poison, Arrangement::Contiguous);
    let ins: Vec<TensorRef<'_>> = tensors.iter().map(|(b, l)| TensorRef::new(dtype, b, l)).collect();
    strata_cpu::fused(program, &ins, TensorMut::new(dtype, &mut ob, &ol)).unwrap();
    let got = read(dtype, &ob, &ol);
    let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
    for (i, &g) in got.iter().enumerate() {
        let want = interpret(program, &values, i);
        assert!(
            (g - want).abs() <= tol * want.abs().max(1.0),
            "{:?} {arrangements:?} {shape:?}: element {i} = {g}, want {want}",
            program.ops
        );
    }
}

/// Values in [-2, 2) away from zero, so divisions stay well conditioned.
fn values_in(n: usize, seed: u64) -> Vec<f64> {
    values(n, seed).into_iter().map(|v| if v.abs() < 0.1 { v + 0.5 } else { 2.0 * v }).collect()
}

use FusedOp::{Binary as B, Input as I, Unary as U};

#[test]
fn long_chains_reuse_registers() {
    // tanh-GELU with a second input: x·x reads one step twice, values die at different steps.
    let ops = vec![
        I(0),
        I(1),
        B(BinaryOp::Mul, 0, 0),
        B(BinaryOp::Mul, 2, 0),
        B(BinaryOp::Mul, 3, 1),
        B(BinaryOp::Add, 0, 4),
        U(UnaryOp::Tanh, 5),
        B(BinaryOp::Maximum, 6, 1),
        B(BinaryOp::Mul, 0, 7),
        U(UnaryOp::Exp, 8),
        B(BinaryOp::Div, 9, 1),
        B(BinaryOp::Sub, 10, 2),
    ];
    for dtype in [DType::F32, DType::F64] {
        let program = Fused { dtype, ops: ops.clone() };
        for (k, &a) in ARRANGEMENTS.iter().enumerate() {
            for &b in &ARRANGEMENTS {
                check(&program, &[3, 7, 13], &[a, b], k as u64 * 10);
            }
        }
        // Past one parallel task (16 Ki elements), with a ragged last block.
        check(&program, &[3, 7001], &[Arrangement::Contiguous, Arrangement::Broadcast], 7);
        check(&program, &[3, 7001], &[Arrangement::Transposed, Arrangement::Scalar], 8);
    }
}

#[test]
fn outputs_that_are_inputs_or_known_values() {
    for dtype in [DType::F32, DType::F64] {
        // The output is the input itself: copied, gathered or filled.
        for a in ARRANGEMENTS {
            check(&Fused { dtype, ops: vec![I(0)] }, &[5, 9], &[a], 3);
        }
        // Scalars only: folded before the loop, the output filled.
        let scalars = Fused { dtype, ops: vec![I(0), I(1), B(BinaryOp::Add, 0, 1), U(UnaryOp::Exp, 2)] };
        check(&scalars, &[4, 6], &[Arrangement::Scalar, Arrangement::Scalar], 4);
        // A folded value met by an array, and an input returned after other steps.
        let mixed = Fused { dtype, ops: vec![I(0), U(UnaryOp::Neg, 0), I(1), B(BinaryOp::Mul, 1, 2), I(1)] };
        check(&mixed, &[4, 6], &[Arrangement::Scalar, Arrangement::Reversed], 5);
        let folded = Fused { dtype, ops: vec![I(0), U(UnaryOp::Neg, 0), I(1), B(BinaryOp::Mul, 1, 2)] };
        check(&folded, &[4, 6], &[Arrangement::Scalar, Arrangement::Reversed], 6);
    }
}

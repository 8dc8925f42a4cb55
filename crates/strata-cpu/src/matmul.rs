//! `matmul2d` on the CPU: checks the operands, then runs the GEMM for each batch entry.

use bytemuck::Pod;
use half::{bf16, f16};
use rayon::prelude::*;
use strata_core::formats::{F8E4M3, F8E5M2};
use strata_core::kernel::{Layout, Matmul2d, MatmulMode, Scales};
use strata_core::{DType, Error, Result};

use crate::gemm::{self, Acc, Epilogue, Input, Mat, MatMut, Output};
use crate::{TensorMut, TensorRef};

const OP: &str = "matmul2d";

/// Runs a [`Matmul2d`]: `out = left·right` (or `+ out`), then the epilogue; with `scales`
/// (fp8 operands), the product is scaled first.
///
/// Errors (before touching `out`) if the types or shapes do not match the descriptor, an
/// operand reaches outside its buffer, or the output has a broadcast (zero-stride) axis.
pub fn matmul2d(
    desc: &Matmul2d,
    left: TensorRef<'_>,
    right: TensorRef<'_>,
    bias: Option<TensorRef<'_>>,
    scales: Option<Scales<'_, crate::CpuBuffer>>,
    out: TensorMut<'_>,
) -> Result<()> {
    desc.validate_call(&left, &right, bias.as_ref(), scales.as_ref(), &out)?;
    let types = (left.dtype, out.dtype);
    let ops = Operands { left, right, bias, scales, out };
    match types {
        (DType::F32, DType::F32) => run::<f32, f32, f32, f32>(desc, ops),
        (DType::F16, DType::F16) => run::<f32, f16, f16, f16>(desc, ops),
        (DType::F16, DType::F32) => run::<f32, f16, f16, f32>(desc, ops),
        (DType::BF16, DType::BF16) => run::<f32, bf16, bf16, bf16>(desc, ops),
        (DType::BF16, DType::F32) => run::<f32, bf16, bf16, f32>(desc, ops),
        (DType::F64, DType::F64) => run::<f64, f64, f64, f64>(desc, ops),
        (DType::I8, DType::I32) => run::<i32, i8, i8, i32>(desc, ops),
        (DType::F8E4M3, _) => fp8_right::<F8E4M3>(desc, ops),
        (DType::F8E5M2, _) => fp8_right::<F8E5M2>(desc, ops),
        (l, o) => {
            Err(Error::InvalidArgument { op: OP, message: format!("{l} -> {o} is not implemented on the CPU yet") })
        }
    }
}

/// The operands of one call.
struct Operands<'a> {
    left: TensorRef<'a>,
    right: TensorRef<'a>,
    bias: Option<TensorRef<'a>>,
    scales: Option<Scales<'a, crate::CpuBuffer>>,
    out: TensorMut<'a>,
}

fn fp8_right<IA: Input<f32>>(desc: &Matmul2d, ops: Operands<'_>) -> Result<()> {
    match ops.right.dtype {
        DType::F8E4M3 => fp8_out::<IA, F8E4M3>(desc, ops),
        _ => fp8_out::<IA, F8E5M2>(desc, ops),
    }
}

fn fp8_out<IA: Input<f32>, IB: Input<f32>>(desc: &Matmul2d, ops: Operands<'_>) -> Result<()> {
    match ops.out.dtype {
        DType::F16 => run::<f32, IA, IB, f16>(desc, ops),
        DType::BF16 => run::<f32, IA, IB, bf16>(desc, ops),
        _ => run::<f32, IA, IB, f32>(desc, ops),
    }
}

/// A scale operand (`[]` or `[len]`) as one factor per index.
fn factors(t: &TensorRef<'_>, len: usize) -> Vec<f32> {
    let data: &[f32] = t.buffer.typed();
    if t.layout.ndim() == 0 {
        vec![data[t.layout.offset()]; len]
    } else {
        (0..len).map(|i| data[t.layout.position(&[i]) as usize]).collect()
    }
}

/// The matrix view of the last two axes of `layout` at buffer position `base`, transposed
/// if asked: rows and columns as the product uses them.
fn view(layout: &Layout, transpose: bool) -> (isize, isize) {
    let s = layout.strides();
    let (rs, cs) = (s[s.len() - 2], s[s.len() - 1]);
    if transpose { (cs, rs) } else { (rs, cs) }
}

fn run<A, IA, IB, O>(desc: &Matmul2d, ops: Operands<'_>) -> Result<()>
where
    A: Acc,
    IA: Input<A>,
    IB: Input<A>,
    O: Output<A> + Pod,
{
    let Operands { left, right, bias, scales, out } = ops;
    let (m, n, k) = (desc.m, desc.n, desc.k);
    let bias: Option<Vec<A>> = bias.map(|b| {
        let data: &[O] = b.buffer.typed();
        (0..n).map(|j| data[b.layout.position(&[j]) as usize].widen()).collect()
    });
    let epilogue = Epilogue { bias: bias.as_deref(), activation: desc.epilogue.activation() };
    let accumulate = desc.mode == MatmulMode::MultiplyAccumulate;
    let (a_rs, a_cs) = view(left.layout, desc.transpose_left);
    let (b_rs, b_cs) = view(right.layout, desc.transpose_right);
    let (c_rs, c_cs) = view(out.layout, false);
    // Buffers are 64-byte aligned and the operands were checked to lie inside them.
    let a_ptr = left.buffer.as_bytes().as_ptr() as usize;
    let b_ptr = right.buffer.as_bytes().as_ptr() as usize;
    let c_ptr = out.buffer.typed_mut::<O>().as_mut_ptr() as usize;
    // Scaled products: the plain product into an f32 workspace, then `(sₗ[i]·sᵣ[j])·acc`,
    // the accumulation, bias and activation as the epilogue would apply them.
    let scales = scales.map(|s| (factors(&s.left, m), factors(&s.right, n)));

    let batch_shape = &out.layout.shape()[..out.layout.ndim() - 2];
    let batches: usize = batch_shape.iter().product();
    let batch_position = |layout: &Layout, b: usize| -> isize {
        // The position of the matrix at row-major batch index `b`, with its own strides.
        let mut rem = b;
        let mut pos = layout.offset() as isize;
        for (ax, &d) in batch_shape.iter().enumerate().rev() {
            pos += (rem % d) as isize * layout.strides()[ax];
            rem /= d;
        }
        pos
    };
    let one = |b: usize| {
        // SAFETY: the layouts were checked to lie inside their buffers, the output has no
        // zero strides, and `out` is borrowed mutably, so C overlaps neither input.
        unsafe {
            let a = Mat {
                ptr: (a_ptr as *const IA).offset(batch_position(left.layout, b)),
                rows: m,
                cols: k,
                rs: a_rs,
                cs: a_cs,
            };
            let bm = Mat {
                ptr: (b_ptr as *const IB).offset(batch_position(right.layout, b)),
                rows: k,
                cols: n,
                rs: b_rs,
                cs: b_cs,
            };
            let c = MatMut {
                ptr: (c_ptr as *mut O).offset(batch_position(out.layout, b)),
                rows: m,
                cols: n,
                rs: c_rs,
                cs: c_cs,
            };
            match &scales {
                None => gemm::gemm::<A, IA, IB, O>(a, bm, c, accumulate, &epilogue),
                Some((sa, sb)) => {
                    let mut work = vec![A::default(); m * n];
                    let w = MatMut { ptr: work.as_mut_ptr(), rows: m, cols: n, rs: n as isize, cs: 1 };
                    gemm::gemm::<A, IA, IB, A>(
                        a,
                        bm,
                        w,
                        false,
                        &Epilogue { bias: None, activation: Default::default() },
                    );
                    for i in 0..m {
                        for j in 0..n {
                            let p = c.at(i, j);
                            let mut v = work[i * n + j].scaled(sa[i] * sb[j]);
                            if accumulate {
                                v = A::add(v, (*p).widen());
                            }
                            *p = O::narrow(epilogue.apply(v, j));
                        }
                    }
                }
            }
        }
    };
    if batches > 1 && m * n * k < (1 << 22) {
        (0..batches).into_par_iter().for_each(one);
    } else {
        (0..batches).for_each(one);
    }
    Ok(())
}

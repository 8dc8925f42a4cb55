//! `matmul2d` on the CPU: checks the operands, then runs the GEMM for each batch entry.

use bytemuck::Pod;
use half::{bf16, f16};
use rayon::prelude::*;
use strata_core::kernel::{Layout, Matmul2d, MatmulMode};
use strata_core::{DType, Error, Result};

use crate::gemm::{self, Acc, Epilogue, Input, Mat, MatMut, Output};
use crate::{TensorMut, TensorRef};

const OP: &str = "matmul2d";

/// Runs a [`Matmul2d`]: `out = left·right` (or `+ out`), then the epilogue.
///
/// Errors (before touching `out`) if the types or shapes do not match the descriptor, an
/// operand reaches outside its buffer, or the output has a broadcast (zero-stride) axis.
pub fn matmul2d(
    desc: &Matmul2d,
    left: TensorRef<'_>,
    right: TensorRef<'_>,
    bias: Option<TensorRef<'_>>,
    out: TensorMut<'_>,
) -> Result<()> {
    desc.validate_call(&left, &right, bias.as_ref(), &out)?;
    match (left.dtype, out.dtype) {
        (DType::F32, DType::F32) => run::<f32, f32, f32>(desc, left, right, bias, out),
        (DType::F16, DType::F16) => run::<f32, f16, f16>(desc, left, right, bias, out),
        (DType::F16, DType::F32) => run::<f32, f16, f32>(desc, left, right, bias, out),
        (DType::BF16, DType::BF16) => run::<f32, bf16, bf16>(desc, left, right, bias, out),
        (DType::BF16, DType::F32) => run::<f32, bf16, f32>(desc, left, right, bias, out),
        (DType::F64, DType::F64) => run::<f64, f64, f64>(desc, left, right, bias, out),
        (DType::I8, DType::I32) => run::<i32, i8, i32>(desc, left, right, bias, out),
        (l, o) => {
            Err(Error::InvalidArgument { op: OP, message: format!("{l} -> {o} is not implemented on the CPU yet") })
        }
    }
}

/// The matrix view of the last two axes of `layout` at buffer position `base`, transposed
/// if asked: rows and columns as the product uses them.
fn view(layout: &Layout, transpose: bool) -> (isize, isize) {
    let s = layout.strides();
    let (rs, cs) = (s[s.len() - 2], s[s.len() - 1]);
    if transpose { (cs, rs) } else { (rs, cs) }
}

fn run<A, I, O>(
    desc: &Matmul2d,
    left: TensorRef<'_>,
    right: TensorRef<'_>,
    bias: Option<TensorRef<'_>>,
    out: TensorMut<'_>,
) -> Result<()>
where
    A: Acc,
    I: Input<A> + Pod,
    O: Output<A> + Pod,
{
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
    let a_ptr = left.buffer.typed::<I>().as_ptr() as usize;
    let b_ptr = right.buffer.typed::<I>().as_ptr() as usize;
    let c_ptr = out.buffer.typed_mut::<O>().as_mut_ptr() as usize;

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
                ptr: (a_ptr as *const I).offset(batch_position(left.layout, b)),
                rows: m,
                cols: k,
                rs: a_rs,
                cs: a_cs,
            };
            let bm = Mat {
                ptr: (b_ptr as *const I).offset(batch_position(right.layout, b)),
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
            gemm::gemm::<A, I, I, O>(a, bm, c, accumulate, &epilogue);
        }
    };
    if batches > 1 && m * n * k < (1 << 22) {
        (0..batches).into_par_iter().for_each(one);
    } else {
        (0..batches).for_each(one);
    }
    Ok(())
}

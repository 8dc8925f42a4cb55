//! Test support: random values, buffers of any standard type, and layouts of every kind
//! (contiguous, transposed, reversed, offset, broadcast) holding given logical values.
#![allow(dead_code)]

use half::{bf16, f16};
use strata_core::DType;
use strata_core::kernel::Layout;
use strata_cpu::CpuBuffer;

/// Fresh pseudo-random values in [-1, 1) (never all zeros).
pub fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

/// The value `v` rounded to `dtype` (integers: truncated then wrapped like a cast).
pub fn round(dtype: DType, v: f64) -> f64 {
    match dtype {
        DType::F64 => v,
        DType::F32 => v as f32 as f64,
        DType::F16 => f16::from_f64(v).to_f64(),
        DType::BF16 => bf16::from_f64(v).to_f64(),
        DType::Bool => (v != 0.0) as u8 as f64,
        DType::I8 => v as i64 as i8 as f64,
        DType::U8 => v as i64 as u8 as f64,
        DType::I16 => v as i64 as i16 as f64,
        DType::U16 => v as i64 as u16 as f64,
        DType::I32 => v as i64 as i32 as f64,
        DType::U32 => v as i64 as u32 as f64,
        DType::I64 => v as i64 as f64,
        DType::U64 => (if v >= 0.0 { v as u64 } else { v as i64 as u64 }) as f64,
        t => panic!("no test storage for {t}"),
    }
}

/// Writes `v` at element `i` of a buffer of `dtype`.
pub fn put(dtype: DType, b: &mut CpuBuffer, i: usize, v: f64) {
    match dtype {
        DType::F64 => b.typed_mut::<f64>()[i] = v,
        DType::F32 => b.typed_mut::<f32>()[i] = v as f32,
        DType::F16 => b.typed_mut::<f16>()[i] = f16::from_f64(v),
        DType::BF16 => b.typed_mut::<bf16>()[i] = bf16::from_f64(v),
        DType::Bool => b.as_bytes_mut()[i] = (v != 0.0) as u8,
        DType::I8 => b.typed_mut::<i8>()[i] = v as i64 as i8,
        DType::U8 => b.typed_mut::<u8>()[i] = v as i64 as u8,
        DType::I16 => b.typed_mut::<i16>()[i] = v as i64 as i16,
        DType::U16 => b.typed_mut::<u16>()[i] = v as i64 as u16,
        DType::I32 => b.typed_mut::<i32>()[i] = v as i64 as i32,
        DType::U32 => b.typed_mut::<u32>()[i] = v as i64 as u32,
        DType::I64 => b.typed_mut::<i64>()[i] = v as i64,
        DType::U64 => b.typed_mut::<u64>()[i] = if v >= 0.0 { v as u64 } else { v as i64 as u64 },
        t => panic!("no test storage for {t}"),
    }
}

/// Reads element `i` of a buffer of `dtype` as f64.
pub fn get(dtype: DType, b: &CpuBuffer, i: usize) -> f64 {
    match dtype {
        DType::F64 => b.typed::<f64>()[i],
        DType::F32 => b.typed::<f32>()[i] as f64,
        DType::F16 => b.typed::<f16>()[i].to_f64(),
        DType::BF16 => b.typed::<bf16>()[i].to_f64(),
        DType::Bool => b.as_bytes()[i] as f64,
        DType::I8 => b.typed::<i8>()[i] as f64,
        DType::U8 => b.typed::<u8>()[i] as f64,
        DType::I16 => b.typed::<i16>()[i] as f64,
        DType::U16 => b.typed::<u16>()[i] as f64,
        DType::I32 => b.typed::<i32>()[i] as f64,
        DType::U32 => b.typed::<u32>()[i] as f64,
        DType::I64 => b.typed::<i64>()[i] as f64,
        DType::U64 => b.typed::<u64>()[i] as f64,
        t => panic!("no test storage for {t}"),
    }
}

/// How a logical tensor sits in memory.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arrangement {
    Contiguous,
    /// Axes reversed in memory (a transpose).
    Transposed,
    /// The first axis stored backwards (a negative stride).
    Reversed,
    /// Contiguous, after 5 unused elements.
    Offset,
    /// Every axis but the last broadcast (stride 0): one row repeated. Inputs only.
    Broadcast,
    /// Every axis broadcast: a scalar. Inputs only.
    Scalar,
}

pub const ARRANGEMENTS: [Arrangement; 6] = [
    Arrangement::Contiguous,
    Arrangement::Transposed,
    Arrangement::Reversed,
    Arrangement::Offset,
    Arrangement::Broadcast,
    Arrangement::Scalar,
];
pub const OUTPUT_ARRANGEMENTS: [Arrangement; 4] =
    [Arrangement::Contiguous, Arrangement::Transposed, Arrangement::Reversed, Arrangement::Offset];

/// A layout of `shape` in the given arrangement, and the buffer length it needs.
pub fn arrange(shape: &[usize], a: Arrangement) -> (Layout, usize) {
    let n: usize = shape.iter().product();
    let nd = shape.len();
    let c = Layout::contiguous(shape);
    let l = match a {
        Arrangement::Contiguous => c,
        Arrangement::Offset => Layout::new(shape, c.strides(), 5).unwrap(),
        Arrangement::Transposed => {
            let rev: Vec<usize> = shape.iter().rev().copied().collect();
            let mut st = Layout::contiguous(&rev).strides().to_vec();
            st.reverse();
            Layout::new(shape, &st, 0).unwrap()
        }
        Arrangement::Reversed if nd > 0 && shape[0] > 0 => {
            let mut st = c.strides().to_vec();
            let off = (shape[0] - 1) as isize * st[0];
            st[0] = -st[0];
            Layout::new(shape, &st, off as usize).unwrap()
        }
        Arrangement::Reversed => c,
        Arrangement::Broadcast => {
            let mut st = vec![0isize; nd];
            if nd > 0 {
                st[nd - 1] = 1;
            }
            Layout::new(shape, &st, 0).unwrap()
        }
        Arrangement::Scalar => Layout::new(shape, &vec![0; nd], 0).unwrap(),
    };
    let len = l.span().map_or(0, |(_, hi)| hi as usize + 1).max(n.min(1)) + 5;
    (l, len)
}

/// The row-major multi-index of element `i` of `shape`.
pub fn unravel(shape: &[usize], mut i: usize) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for ax in (0..shape.len()).rev() {
        idx[ax] = i % shape[ax];
        i /= shape[ax];
    }
    idx
}

/// A buffer of `dtype` holding the logical `values` (row-major over `shape`) in the given
/// arrangement; broadcast arrangements hold the values of the first row (or first element)
/// everywhere, and `values` is rewritten to what the tensor actually holds. Unused elements
/// are NaN (floats) or 77.
pub fn tensor(dtype: DType, shape: &[usize], values: &mut [f64], a: Arrangement) -> (CpuBuffer, Layout) {
    let (l, len) = arrange(shape, a);
    let w = (dtype.bits() as usize / 8).max(1);
    let mut b = CpuBuffer::zeros(len * w).unwrap();
    let poison = if dtype.is_float() { f64::NAN } else { 77.0 };
    for i in 0..len {
        put(dtype, &mut b, i, poison);
    }
    let inner = shape.last().copied().unwrap_or(1).max(1);
    for i in 0..values.len() {
        let src = match a {
            Arrangement::Broadcast => i % inner,
            Arrangement::Scalar => 0,
            _ => i,
        };
        values[i] = round(dtype, values[src]);
        let p = l.position(&unravel(shape, i)) as usize;
        put(dtype, &mut b, p, values[i]);
    }
    (b, l)
}

/// The logical values (row-major) of a tensor.
pub fn read(dtype: DType, b: &CpuBuffer, l: &Layout) -> Vec<f64> {
    (0..l.numel()).map(|i| get(dtype, b, l.position(&unravel(l.shape(), i)) as usize)).collect()
}

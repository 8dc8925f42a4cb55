//! Quantized matrix multiplication on the CPU.
//!
//! The weight is dequantized a few rows at a time into a small f32 scratch (64 rows of `W`,
//! in L2), and each chunk feeds the GEMM, which for a single row of `x` is the vector path
//! (dot products over the decoded rows). Chunks run in parallel. FP4 rows (mxfp4, nvfp4)
//! decode with AVX-512 table permutes, 32 elements per block in a few instructions; affine
//! 4- and 8-bit rows with AVX-512 widening and `q·scale + bias`; other modes use the block
//! decoder of `strata-core`, which defines the values bit for bit (the fast decoders are
//! tested equal to it).
//!
//! With few rows of `x` (GEMV-like products, `x·Wᵀ`), a row of `W` is decoded into L1 and dotted
//! with every row of `x` at once instead: the weight is read once, and nothing else is.

use bytemuck::Pod;
use half::{bf16, f16};
use rayon::prelude::*;
use strata_core::formats::{E8M0, F4E2M1, F8E4M3};
use strata_core::kernel::{Layout, QuantizedMatmul};
use strata_core::quant::{MxElement, QuantMode, QuantizedTensor};
use strata_core::{DType, Result};

use crate::gemm::{self, Epilogue, Input, Mat, MatMut, Output};
use crate::{TensorMut, TensorRef};

/// Weight rows decoded per chunk.
const CHUNK: usize = 64;
/// Rows of `x` (over the whole batch) up to which `x·Wᵀ` decodes each weight row once into L1
/// and dots it with every row of `x`, instead of feeding the GEMM.
const FEW_ROWS: usize = 4;

/// Runs a [`QuantizedMatmul`]: `out = x·Wᵀ` (or `x·W`).
///
/// Errors (before writing) if the shapes or types do not fit, or an operand reaches outside
/// its buffer.
pub fn quantized_matmul(
    desc: &QuantizedMatmul,
    x: TensorRef<'_>,
    w: &QuantizedTensor,
    out: TensorMut<'_>,
) -> Result<()> {
    desc.validate_call(&x, w.shape(), &out)?;
    match (x.dtype, out.dtype) {
        (DType::F32, DType::F32) => run::<f32, f32>(desc, x, w, out),
        (DType::F16, DType::F16) => run::<f16, f16>(desc, x, w, out),
        (DType::F16, DType::F32) => run::<f16, f32>(desc, x, w, out),
        (DType::BF16, DType::BF16) => run::<bf16, bf16>(desc, x, w, out),
        (DType::BF16, DType::F32) => run::<bf16, f32>(desc, x, w, out),
        _ => unreachable!("validated"),
    }
}

fn run<I, O>(desc: &QuantizedMatmul, x: TensorRef<'_>, w: &QuantizedTensor, out: TensorMut<'_>) -> Result<()>
where
    I: Pod + Input<f32>,
    O: Pod + Output<f32>,
{
    let (m, n, k) = desc.validate((x.layout, x.dtype), w.shape(), (out.layout, out.dtype))?;
    let batch_shape = &x.layout.shape()[..x.layout.ndim() - 2];
    let batches: usize = batch_shape.iter().product();
    let xs = x.layout.strides();
    let (x_rs, x_cs) = (xs[xs.len() - 2], xs[xs.len() - 1]);
    let os = out.layout.strides();
    let (o_rs, o_cs) = (os[os.len() - 2], os[os.len() - 1]);
    let x_ptr = x.buffer.typed::<I>().as_ptr() as usize;
    let o_ptr = out.buffer.typed_mut::<O>().as_mut_ptr() as usize;
    let batch_pos = |l: &Layout, b: usize| -> isize {
        let mut rem = b;
        let mut pos = l.offset() as isize;
        for (ax, &d) in batch_shape.iter().enumerate().rev() {
            pos += (rem % d) as isize * l.strides()[ax];
            rem /= d;
        }
        pos
    };
    let (xl, ol) = (x.layout, out.layout);
    let none = Epilogue { bias: None, activation: Default::default() };
    if desc.transpose && batches * m <= FEW_ROWS && k > 0 {
        // Every row of x widened to f32 once.
        let mut xf = vec![0.0f32; batches * m * k];
        for (r, row) in xf.chunks_exact_mut(k.max(1)).enumerate() {
            let base = batch_pos(xl, r / m) + (r % m) as isize * x_rs;
            for (p, v) in row.iter_mut().enumerate() {
                // SAFETY: inside x (validated shapes, checked buffer).
                *v = unsafe { *(x_ptr as *const I).offset(base + p as isize * x_cs) }.widen();
            }
        }
        let rows = batches * m;
        (0..n.div_ceil(CHUNK)).into_par_iter().for_each(|c| {
            let mut row = vec![0.0f32; k];
            let mut scales = Vec::new();
            let mut y = [0.0f32; FEW_ROWS];
            for j in c * CHUNK..(c * CHUNK + CHUNK).min(n) {
                if !affine_row_dots(w, j, &xf, &mut scales, &mut y[..rows]) {
                    decode_rows(w, j..j + 1, &mut row);
                    for (yr, xr) in y.iter_mut().zip(xf.chunks_exact(k)) {
                        *yr = dot(&row, xr);
                    }
                }
                for (r, &v) in y[..rows].iter().enumerate() {
                    let pos = batch_pos(ol, r / m) + (r % m) as isize * o_rs + j as isize * o_cs;
                    // SAFETY: inside the output; chunks write disjoint columns.
                    unsafe { *(o_ptr as *mut O).offset(pos) = O::narrow(v) };
                }
            }
        });
        return Ok(());
    }
    if desc.transpose {
        // W is [n, k]: each chunk of its rows is a block of output columns.
        (0..n.div_ceil(CHUNK)).into_par_iter().for_each(|c| {
            let (n0, nc) = (c * CHUNK, CHUNK.min(n - c * CHUNK));
            let mut rows = vec![0.0f32; nc * k];
            decode_rows(w, n0..n0 + nc, &mut rows);
            for b in 0..batches {
                // SAFETY: validated shapes, checked buffers; chunks write disjoint columns.
                unsafe {
                    let a =
                        Mat { ptr: (x_ptr as *const I).offset(batch_pos(xl, b)), rows: m, cols: k, rs: x_rs, cs: x_cs };
                    let wt = Mat { ptr: rows.as_ptr(), rows: k, cols: nc, rs: 1, cs: k as isize };
                    let y = MatMut {
                        ptr: (o_ptr as *mut O).offset(batch_pos(ol, b) + n0 as isize * o_cs),
                        rows: m,
                        cols: nc,
                        rs: o_rs,
                        cs: o_cs,
                    };
                    gemm::gemm::<f32, I, f32, O>(a, wt, y, false, &none);
                }
            }
        });
    } else {
        // W is [k, n]: chunks of its rows are slices of the reduction, summed into the output.
        let mut rows = vec![0.0f32; CHUNK * n];
        for (c, k0) in (0..k).step_by(CHUNK).enumerate() {
            let kc = CHUNK.min(k - k0);
            rows[..kc * n].par_chunks_mut(n).enumerate().for_each(|(r, row)| decode_rows(w, k0 + r..k0 + r + 1, row));
            for b in 0..batches {
                // SAFETY: as above; one chunk at a time writes the whole output.
                unsafe {
                    let a = Mat {
                        ptr: (x_ptr as *const I).offset(batch_pos(xl, b) + k0 as isize * x_cs),
                        rows: m,
                        cols: kc,
                        rs: x_rs,
                        cs: x_cs,
                    };
                    let wk = Mat { ptr: rows.as_ptr(), rows: kc, cols: n, rs: n as isize, cs: 1 };
                    let y = MatMut {
                        ptr: (o_ptr as *mut O).offset(batch_pos(ol, b)),
                        rows: m,
                        cols: n,
                        rs: o_rs,
                        cs: o_cs,
                    };
                    gemm::gemm::<f32, I, f32, O>(a, wk, y, c > 0, &none);
                }
            }
        }
        if k == 0 {
            // An empty sum.
            for b in 0..batches {
                for i in 0..m {
                    for j in 0..n {
                        // SAFETY: inside the output.
                        unsafe {
                            *(o_ptr as *mut O).offset(batch_pos(ol, b) + i as isize * o_rs + j as isize * o_cs) =
                                O::narrow(0.0)
                        };
                    }
                }
            }
        }
    }
    Ok(())
}

/// Dequantizes whole rows of a 2-D quantized tensor into `out` (`rows.len() × cols`).
pub(crate) fn decode_rows(w: &QuantizedTensor, rows: std::ops::Range<usize>, out: &mut [f32]) {
    let mode = *w.mode();
    let block = mode.block_size();
    let blocks = (rows.start * w.shape()[1] / block)..(rows.end * w.shape()[1] / block);
    let fp4 = matches!(mode, QuantMode::Mx { element: MxElement::E2M1, .. } | QuantMode::Nvfp4 { .. });
    let affine = matches!(mode, QuantMode::Affine { bits: 4 | 8, .. }) && block.is_multiple_of(32);
    if affine {
        let bits = mode.element_bits() as usize;
        let biases = w.biases().expect("affine tensors carry biases");
        let scales: Vec<(f32, f32)> = blocks.clone().map(|b| (w.scales().get_f32(b), biases.get_f32(b))).collect();
        let bytes = &w.data()[blocks.start * block * bits / 8..blocks.end * block * bits / 8];
        decode_affine(bytes, bits, block, &scales, out);
        return;
    }
    if fp4 {
        let tensor_scale = w.tensor_scale();
        let scale = |b: usize| -> f32 {
            let s = w.scales().bytes[b];
            match tensor_scale {
                Some(t) => F8E4M3::from_bits(s).to_f32() * t,
                None => E8M0::from_bits(s).to_f32(),
            }
        };
        let bytes = &w.data()[blocks.start * block / 2..blocks.end * block / 2];
        decode_fp4(bytes, block, blocks.clone().map(scale), out);
    } else {
        for (b, o) in blocks.zip(out.chunks_exact_mut(block)) {
            w.dequantize_block(b, o);
        }
    }
}

/// `y[r] = Σ_p W[j, p]·x[r][p]` for row `j` of an affine 4- or 8-bit `W` and every row of `xs`
/// (`y.len()` rows of `k`), decoding the codes in registers as [`decode_affine`] does (the same
/// values) without writing them anywhere. Returns `false`, computing nothing, for other modes
/// or without AVX-512. `scales` is scratch.
fn affine_row_dots(w: &QuantizedTensor, j: usize, xs: &[f32], scales: &mut Vec<(f32, f32)>, y: &mut [f32]) -> bool {
    let mode = *w.mode();
    let (block, k) = (mode.block_size(), w.shape()[1]);
    if !matches!(mode, QuantMode::Affine { bits: 4 | 8, .. }) || !block.is_multiple_of(32) || y.len() > FEW_ROWS {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bw") {
        let bits = mode.element_bits() as usize;
        let biases = w.biases().expect("affine tensors carry biases");
        let blocks = j * k / block..(j + 1) * k / block;
        scales.clear();
        scales.extend(blocks.clone().map(|b| (w.scales().get_f32(b), biases.get_f32(b))));
        let bytes = &w.data()[j * k * bits / 8..(j + 1) * k * bits / 8];
        // SAFETY: the CPU has AVX-512F/BW; `bytes` holds the row's k codes and `xs` y.len() rows of k.
        unsafe { affine_row_dots_avx512(bytes, bits, block, scales, xs, k, y) };
        return true;
    }
    let _ = (j, xs, scales, k);
    false
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn affine_row_dots_avx512(
    bytes: &[u8],
    bits: usize,
    block: usize,
    scales: &[(f32, f32)],
    xs: &[f32],
    k: usize,
    y: &mut [f32],
) {
    use std::arch::x86_64::*;
    let rows = y.len();
    let mut acc = [[_mm512_setzero_ps(); 2]; FEW_ROWS];
    for g in 0..k / 32 {
        let (s, b) = scales[g * 32 / block];
        let (s, b) = (_mm512_set1_ps(s), _mm512_set1_ps(b));
        // SAFETY: group `g` has 32 codes and every row of `xs` 32 values at 32·g.
        unsafe {
            let (v0, v1) = affine_group_avx512(bytes, bits, g, s, b);
            for (r, acc) in acc.iter_mut().enumerate().take(rows) {
                let x = xs.as_ptr().add(r * k + 32 * g);
                acc[0] = _mm512_fmadd_ps(v0, _mm512_loadu_ps(x), acc[0]);
                acc[1] = _mm512_fmadd_ps(v1, _mm512_loadu_ps(x.add(16)), acc[1]);
            }
        }
    }
    for (yr, acc) in y.iter_mut().zip(&acc) {
        *yr = _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]));
    }
}

/// `Σ a·b` with four vector accumulators (AVX-512 where the CPU has it).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { dot_avx512(a, b) };
    }
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY (every load): `i + 64 <= n` or `i + 16 <= n`, both slices hold `n` floats.
    while i + 64 <= n {
        for (u, acc) in acc.iter_mut().enumerate() {
            let (x, y) =
                unsafe { (_mm512_loadu_ps(a.as_ptr().add(i + 16 * u)), _mm512_loadu_ps(b.as_ptr().add(i + 16 * u))) };
            *acc = _mm512_fmadd_ps(x, y, *acc);
        }
        i += 64;
    }
    while i + 16 <= n {
        let (x, y) = unsafe { (_mm512_loadu_ps(a.as_ptr().add(i)), _mm512_loadu_ps(b.as_ptr().add(i))) };
        acc[0] = _mm512_fmadd_ps(x, y, acc[0]);
        i += 16;
    }
    let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    _mm512_reduce_add_ps(sum) + a[i..n].iter().zip(&b[i..n]).map(|(x, y)| x * y).sum::<f32>()
}

/// Decodes affine 4- or 8-bit codes (element 0 in the low bits) in blocks of `block` elements
/// with a (scale, bias) each: `out[i] = q_i · scale + bias`, rounded after the product and after
/// the sum as `strata-core`'s decoder does (no fused multiply-add), so the values are the same.
fn decode_affine(bytes: &[u8], bits: usize, block: usize, scales: &[(f32, f32)], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bw") {
        // SAFETY: the CPU has AVX-512F/BW.
        unsafe { decode_affine_avx512(bytes, bits, block, scales, out) };
        return;
    }
    for (i, o) in out.iter_mut().enumerate() {
        let q = if bits == 8 { bytes[i] } else { (bytes[i / 2] >> (4 * (i % 2))) & 15 };
        let (s, b) = scales[i / block];
        *o = f32::from(q) * s + b;
    }
}

/// The 32 values of affine group `g` (codes of `bits` = 4 or 8, element 0 in the low bits):
/// `q·s + b`, rounded after the product and after the sum.
///
/// # Safety
/// The CPU has AVX-512F/BW and `bytes` holds group `g` (32 codes).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
unsafe fn affine_group_avx512(
    bytes: &[u8],
    bits: usize,
    g: usize,
    s: std::arch::x86_64::__m512,
    b: std::arch::x86_64::__m512,
) -> (std::arch::x86_64::__m512, std::arch::x86_64::__m512) {
    use std::arch::x86_64::*;
    debug_assert!(bytes.len() >= 32 * (g + 1) * bits / 8);
    // SAFETY: the caller's contract: the group's 16 (4-bit) or 32 (8-bit) bytes are there.
    let (first, second) = unsafe {
        if bits == 4 {
            let low = _mm_set1_epi8(0x0F);
            let packed = _mm_loadu_si128(bytes.as_ptr().add(16 * g).cast());
            let lo = _mm_and_si128(packed, low);
            let hi = _mm_and_si128(_mm_srli_epi16(packed, 4), low);
            (_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi)), _mm512_cvtepu8_epi32(_mm_unpackhi_epi8(lo, hi)))
        } else {
            let p = bytes.as_ptr().add(32 * g);
            (_mm512_cvtepu8_epi32(_mm_loadu_si128(p.cast())), _mm512_cvtepu8_epi32(_mm_loadu_si128(p.add(16).cast())))
        }
    };
    (
        _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(first), s), b),
        _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(second), s), b),
    )
}

/// [`decode_affine`] 32 elements at a time (`block` is a multiple of 32).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn decode_affine_avx512(bytes: &[u8], bits: usize, block: usize, scales: &[(f32, f32)], out: &mut [f32]) {
    use std::arch::x86_64::*;
    for (g, o) in out.chunks_exact_mut(32).enumerate() {
        let (s, b) = scales[g * 32 / block];
        let (s, b) = (_mm512_set1_ps(s), _mm512_set1_ps(b));
        // SAFETY: group `g` has 32 codes; `o` holds 32 floats.
        unsafe {
            let (v0, v1) = affine_group_avx512(bytes, bits, g, s, b);
            _mm512_storeu_ps(o.as_mut_ptr(), v0);
            _mm512_storeu_ps(o.as_mut_ptr().add(16), v1);
        }
    }
}

/// The 16 FP4 E2M1 values, by code.
fn fp4_table() -> [f32; 16] {
    std::array::from_fn(|c| F4E2M1::from_bits(c as u8).to_f32())
}

/// Decodes packed FP4 codes (two per byte, element 0 low) in blocks of `block` elements with
/// one scale each: `out[i] = value(code_i) · scale(block of i)`.
fn decode_fp4(bytes: &[u8], block: usize, scales: impl Iterator<Item = f32>, out: &mut [f32]) {
    let scales: Vec<f32> = scales.collect();
    // The elements a SIMD decoder did (the rest are decoded one by one below).
    let done = {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU has AVX-512F/BW.
            unsafe { decode_fp4_avx512(bytes, block, &scales, out) }
        } else {
            0
        }
        #[cfg(not(target_arch = "x86_64"))]
        0
    };
    let table = fp4_table();
    for j in done / 2..bytes.len() {
        let s = scales[2 * j / block];
        out[2 * j] = table[usize::from(bytes[j] & 15)] * s;
        out[2 * j + 1] = table[usize::from(bytes[j] >> 4)] * s;
    }
}

/// The vectorized part of [`decode_fp4`]: whole groups of 32 elements. Returns how many
/// elements it decoded.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn decode_fp4_avx512(bytes: &[u8], block: usize, scales: &[f32], out: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let table = fp4_table();
    // SAFETY: 16 floats, unaligned load.
    let lut = unsafe { _mm512_loadu_ps(table.as_ptr()) };
    let low = _mm_set1_epi8(0x0F);
    // Every 16 bytes are 32 codes: separate the nibbles and interleave them back into element
    // order, widen to 32-bit indices, look the values up with one permute per 16.
    let groups = bytes.len() / 16;
    for (i, (chunk, o)) in bytes.chunks_exact(16).zip(out.chunks_exact_mut(32)).enumerate() {
        let s0 = _mm512_set1_ps(scales[i * 32 / block]);
        let s1 = _mm512_set1_ps(scales[(i * 32 + 16) / block]);
        // SAFETY: `chunk` has 16 bytes and `o` 32 floats.
        unsafe {
            let packed = _mm_loadu_si128(chunk.as_ptr().cast());
            let lo = _mm_and_si128(packed, low);
            let hi = _mm_and_si128(_mm_srli_epi16(packed, 4), low);
            let first = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi));
            let second = _mm512_cvtepu8_epi32(_mm_unpackhi_epi8(lo, hi));
            _mm512_storeu_ps(o.as_mut_ptr(), _mm512_mul_ps(_mm512_permutexvar_ps(first, lut), s0));
            _mm512_storeu_ps(o.as_mut_ptr().add(16), _mm512_mul_ps(_mm512_permutexvar_ps(second, lut), s1));
        }
    }
    groups * 32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuBuffer;
    use strata_core::quant::{self, Numerics, TensorScale};

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 11) as f64 / (1u64 << 52) as f64 - 1.0) as f32
            })
            .collect()
    }

    /// `quantized_matmul` equals the product with the dequantized weight (f64 reference).
    fn check(mode: &QuantMode, transpose: bool, batch: &[usize], m: usize, n: usize, k: usize, seed: u64) {
        let wshape = if transpose { [n, k] } else { [k, n] };
        let wv: Vec<f32> = values(n * k, seed).iter().map(|v| v * 3.0).collect();
        let w = quant::quantize(&wv, &wshape, mode).unwrap();
        let wd = quant::dequantize(&w);
        let b: usize = batch.iter().product();
        let xv = values(b * m * k, seed + 1);
        let mut xs = batch.to_vec();
        xs.extend([m, k]);
        let mut os = batch.to_vec();
        os.extend([m, n]);
        let bx = CpuBuffer::from_slice(&xv).unwrap();
        let mut bo = CpuBuffer::from_slice(&vec![f32::NAN; b * m * n]).unwrap();
        quantized_matmul(
            &QuantizedMatmul { transpose },
            TensorRef::new(DType::F32, &bx, &Layout::contiguous(&xs)),
            &w,
            TensorMut::new(DType::F32, &mut bo, &Layout::contiguous(&os)),
        )
        .unwrap();
        let got = bo.typed::<f32>();
        for bi in 0..b {
            for i in 0..m {
                for j in 0..n {
                    let (mut want, mut mag) = (0.0f64, 0.0f64);
                    for p in 0..k {
                        let wij = if transpose { wd[j * k + p] } else { wd[p * n + j] } as f64;
                        let t = xv[(bi * m + i) * k + p] as f64 * wij;
                        want += t;
                        mag += t.abs();
                    }
                    let g = got[(bi * m + i) * n + j] as f64;
                    assert!(
                        (g - want).abs() <= 1e-6 * mag + 1e-30,
                        "{mode} t={transpose} {batch:?} {m}x{n}x{k}: y[{bi},{i},{j}] = {g}, want {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_mode_both_layouts() {
        let modes = [
            "mxfp4",
            "mxfp4+mlx",
            "nvfp4",
            "mxfp8",
            "mxfp8_e5m2",
            "mxfp6_e3m2",
            "mxfp6_e2m3",
            "mxint8",
            "affine:4:64",
            "affine:3:32",
            "affine:8:128",
        ];
        for (s, mode) in modes.iter().enumerate() {
            let mode: QuantMode = mode.parse().unwrap();
            for (m, n, batch) in [(1, 70, &[][..]), (2, 70, &[2][..]), (5, 129, &[2][..]), (33, 64, &[][..])] {
                check(&mode, true, batch, m, n, 256, s as u64);
                check(&mode, false, batch, m, 128, n.max(2) * 2, s as u64 + 100);
            }
        }
        let nv = QuantMode::Nvfp4 { tensor_scale: TensorScale::One, numerics: Numerics::Ocp };
        check(&nv, true, &[], 1, 4096 / 32, 4096, 7);
    }

    #[test]
    fn fast_decoders_are_the_block_decoder() {
        // The vectorized FP4 and affine decoders give exactly what strata-core's decoder gives.
        for (mode, cols) in [
            ("mxfp4", 512),
            ("nvfp4", 512),
            ("nvfp4+noclip", 48),
            ("affine:4:64", 512),
            ("affine:8:32", 96),
            ("affine:4:128", 256),
        ] {
            let mode: QuantMode = mode.parse().unwrap();
            let v: Vec<f32> = values(64 * cols, 3).iter().map(|x| x * 100.0).collect();
            let w = quant::quantize(&v, &[64, cols], &mode).unwrap();
            let mut fast = vec![0.0f32; 64 * cols];
            decode_rows(&w, 0..64, &mut fast);
            let slow = quant::dequantize(&w);
            assert!(fast.iter().zip(&slow).all(|(a, b)| a.to_bits() == b.to_bits()), "{mode}");
        }
    }

    #[test]
    fn bad_operands() {
        let w = quant::quantize(&values(64 * 32, 1), &[32, 64], &QuantMode::mxfp4()).unwrap();
        let bx = CpuBuffer::from_slice(&values(4 * 48, 2)).unwrap();
        let mut bo = CpuBuffer::zeros(4 * 32 * 4).unwrap();
        let e = quantized_matmul(
            &QuantizedMatmul::default(),
            TensorRef::new(DType::F32, &bx, &Layout::contiguous(&[4, 48])),
            &w,
            TensorMut::new(DType::F32, &mut bo, &Layout::contiguous(&[4, 32])),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("[4, 48]") && e.contains("[.., m, 64]"), "{e}");
    }
}

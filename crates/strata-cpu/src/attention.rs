//! Scaled dot-product attention on the CPU as an online-softmax ("flash") loop.
//!
//! Work is split into tasks of one (batch, head, block of `BQ` queries). A task walks the keys
//! in blocks of `BK`: `S = Q·Kᵀ` for the block (a GEMM reading q and k in place, any
//! strides), scale and mask, then the running row maximum `m`, the running sum `l` and the
//! output `O` are rescaled and `O += exp(S − m)·V` (a second GEMM). Only `BQ × BK` scores
//! exist at a time; causal tasks stop at the last key their last query can see.

use bytemuck::Pod;
use half::{bf16, f16};
use rayon::prelude::*;
use strata_core::kernel::{Attention, AttentionDims, AttentionMask, Layout};
use strata_core::{DType, Result};

use crate::gemm::{self, Acc, Epilogue, Input, Mat, MatMut, Output};
use crate::{TensorMut, TensorRef};

const BQ: usize = 64;
const BK: usize = 512;

/// Runs an [`Attention`]. Errors (before writing) if shapes or types do not fit the
/// descriptor or an operand reaches outside its buffer.
pub fn attention(
    desc: &Attention,
    q: TensorRef<'_>,
    k: TensorRef<'_>,
    v: TensorRef<'_>,
    mask: Option<TensorRef<'_>>,
    out: TensorMut<'_>,
) -> Result<()> {
    let dims = desc.validate_call(&q, &k, &v, mask.as_ref(), &out)?;
    match q.dtype {
        DType::F32 => run::<f32, f32>(desc, dims, q, k, v, mask, out),
        DType::F16 => run::<f32, f16>(desc, dims, q, k, v, mask, out),
        DType::BF16 => run::<f32, bf16>(desc, dims, q, k, v, mask, out),
        DType::F64 => run::<f64, f64>(desc, dims, q, k, v, mask, out),
        _ => unreachable!("validated"),
    }
}

/// The arithmetic the softmax needs beyond [`Acc`].
trait Real:
    Acc + PartialOrd + std::ops::Sub<Output = Self> + std::ops::Mul<Output = Self> + std::ops::Div<Output = Self>
{
    const NEG_INF: Self;
    fn from_f32(x: f32) -> Self;
    fn exp_inplace(x: &mut [Self]);
    fn exp(self) -> Self;
}

impl Real for f32 {
    const NEG_INF: f32 = f32::NEG_INFINITY;
    fn from_f32(x: f32) -> f32 {
        x
    }
    fn exp_inplace(x: &mut [f32]) {
        crate::math::exp_inplace(x)
    }
    fn exp(self) -> f32 {
        crate::math::exp_f32(self)
    }
}

impl Real for f64 {
    const NEG_INF: f64 = f64::NEG_INFINITY;
    fn from_f32(x: f32) -> f64 {
        x as f64
    }
    fn exp_inplace(x: &mut [f64]) {
        x.iter_mut().for_each(|v| *v = v.exp());
    }
    fn exp(self) -> f64 {
        f64::exp(self)
    }
}

fn run<A, T>(
    desc: &Attention,
    dims: AttentionDims,
    q: TensorRef<'_>,
    k: TensorRef<'_>,
    v: TensorRef<'_>,
    mask: Option<TensorRef<'_>>,
    out: TensorMut<'_>,
) -> Result<()>
where
    A: Real,
    T: Pod + Input<A> + Output<A>,
{
    let AttentionDims { batch: b, q_heads: hq, q_len: lq, d, kv_heads: hkv, k_len: lk, dv } = dims;
    let group = hq / hkv;
    let scale = A::from_f32(desc.scale);
    // Bottom-right alignment: query i sees keys j <= i + shift.
    let shift = lk as isize - lq as isize;
    let (qd, kd, vd) = (q.buffer.typed::<T>(), k.buffer.typed::<T>(), v.buffer.typed::<T>());
    let out_ptr = out.buffer.typed_mut::<T>().as_mut_ptr() as usize;
    let out_layout = out.layout.clone();
    // The mask, read as an additive bias per entry.
    let mask_at: Option<Box<dyn Fn(usize) -> A + Sync>> = mask.map(|m| -> Box<dyn Fn(usize) -> A + Sync> {
        match m.dtype {
            DType::Bool => {
                let data = m.buffer.as_bytes();
                Box::new(move |p| if data[p] != 0 { A::default() } else { A::NEG_INF })
            }
            _ => {
                let data = m.buffer.typed::<T>();
                Box::new(move |p| Input::widen(data[p]))
            }
        }
    });
    let mask_layout = mask.map(|m| m.layout.clone());

    let q_blocks = lq.div_ceil(BQ);
    (0..b * hq * q_blocks).into_par_iter().for_each(|task| {
        let (bh, qb) = (task / q_blocks, task % q_blocks);
        let (bi, h) = (bh / hq, bh % hq);
        let hk = h / group;
        let (i0, bq) = (qb * BQ, BQ.min(lq - qb * BQ));
        let pos = |l: &Layout, idx: [usize; 4]| l.position(&idx);
        let qs = q.layout.strides();
        let (ks, vs) = (k.layout.strides(), v.layout.strides());
        // SAFETY (all views): validated shapes, checked to lie inside their buffers.
        let q_blk = Mat {
            ptr: unsafe { qd.as_ptr().offset(pos(q.layout, [bi, h, i0, 0])) },
            rows: bq,
            cols: d,
            rs: qs[2],
            cs: qs[3],
        };
        let mut s = vec![A::default(); bq * BK];
        let mut o = vec![A::default(); bq * dv];
        let mut m = vec![A::NEG_INF; bq];
        let mut l = vec![A::default(); bq];
        // The last key the block's last query can see.
        let key_end = match desc.mask {
            AttentionMask::Causal => ((i0 + bq - 1) as isize + shift + 1).clamp(0, lk as isize) as usize,
            _ => lk,
        };
        for j0 in (0..key_end).step_by(BK) {
            let bk = BK.min(key_end - j0);
            let kt = Mat {
                ptr: unsafe { kd.as_ptr().offset(pos(k.layout, [bi, hk, j0, 0])) },
                rows: d,
                cols: bk,
                rs: ks[3],
                cs: ks[2],
            };
            let sm = MatMut { ptr: s.as_mut_ptr(), rows: bq, cols: bk, rs: bk as isize, cs: 1 };
            // SAFETY: the views are in bounds and `s` is exclusively ours.
            unsafe {
                gemm::gemm::<A, T, T, A>(q_blk, kt, sm, false, &Epilogue { bias: None, activation: Default::default() })
            };
            for r in 0..bq {
                let row = &mut s[r * bk..(r + 1) * bk];
                let i = i0 + r;
                for (j, x) in row.iter_mut().enumerate() {
                    *x = *x * scale;
                    if desc.mask == AttentionMask::Causal && (j0 + j) as isize > i as isize + shift {
                        *x = A::NEG_INF;
                    }
                }
                if let (Some(at), Some(ml)) = (&mask_at, &mask_layout) {
                    for (j, x) in row.iter_mut().enumerate() {
                        *x = A::add(*x, at(ml.position(&[bi, h, i, j0 + j]) as usize));
                    }
                }
                let mx = row.iter().fold(A::NEG_INF, |a, &x| if x > a { x } else { a });
                let m_new = if mx > m[r] { mx } else { m[r] };
                if m_new == A::NEG_INF {
                    // Nothing visible yet in this row: its probabilities are all zero.
                    row.fill(A::default());
                    continue;
                }
                for x in row.iter_mut() {
                    *x = *x - m_new;
                }
                A::exp_inplace(row);
                let sum = row.iter().fold(A::default(), |a, &x| A::add(a, x));
                let alpha = if m[r] == A::NEG_INF { A::default() } else { (m[r] - m_new).exp() };
                l[r] = A::add(l[r] * alpha, sum);
                for x in &mut o[r * dv..(r + 1) * dv] {
                    *x = *x * alpha;
                }
                m[r] = m_new;
            }
            let p = Mat { ptr: s.as_ptr(), rows: bq, cols: bk, rs: bk as isize, cs: 1 };
            let vb = Mat {
                ptr: unsafe { vd.as_ptr().offset(pos(v.layout, [bi, hk, j0, 0])) },
                rows: bk,
                cols: dv,
                rs: vs[2],
                cs: vs[3],
            };
            let om = MatMut { ptr: o.as_mut_ptr(), rows: bq, cols: dv, rs: dv as isize, cs: 1 };
            // SAFETY: as above.
            unsafe {
                gemm::gemm::<A, A, T, A>(p, vb, om, true, &Epilogue { bias: None, activation: Default::default() })
            };
        }
        for r in 0..bq {
            let inv = if l[r] == A::default() { A::default() } else { A::from_f32(1.0) / l[r] };
            for c in 0..dv {
                let p = out_layout.position(&[bi, h, i0 + r, c]);
                // SAFETY: each task writes only its own rows of the (non-broadcast) output.
                unsafe { *(out_ptr as *mut T).offset(p) = T::narrow(o[r * dv + c] * inv) };
            }
        }
    });
    Ok(())
}

/// `softmax(q·kᵀ·scale + mask)·v` in f64, term by term: the tests' reference.
#[cfg(test)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn reference(
    desc: &Attention,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    mask: Option<&[f64]>,
    shape_q: [usize; 4],
    shape_k: [usize; 4],
    dv: usize,
) -> Vec<f64> {
    let [b, hq, lq, d] = shape_q;
    let [_, hkv, lk, _] = shape_k;
    let mut out = vec![0.0; b * hq * lq * dv];
    for bi in 0..b {
        for h in 0..hq {
            let hk = h / (hq / hkv);
            for i in 0..lq {
                let mut scores: Vec<f64> = (0..lk)
                    .map(|j| {
                        let mut s: f64 = (0..d)
                            .map(|x| q[((bi * hq + h) * lq + i) * d + x] * k[((bi * hkv + hk) * lk + j) * d + x])
                            .sum();
                        s *= desc.scale as f64;
                        if desc.mask == AttentionMask::Causal && j as isize > i as isize + lk as isize - lq as isize {
                            s = f64::NEG_INFINITY;
                        }
                        if let Some(m) = mask {
                            s += m[((bi * hq + h) * lq + i) * lk + j];
                        }
                        s
                    })
                    .collect();
                let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                if mx == f64::NEG_INFINITY {
                    continue;
                }
                scores.iter_mut().for_each(|s| *s = (*s - mx).exp());
                let sum: f64 = scores.iter().sum();
                for c in 0..dv {
                    out[((bi * hq + h) * lq + i) * dv + c] =
                        (0..lk).map(|j| scores[j] * v[((bi * hkv + hk) * lk + j) * dv + c]).sum::<f64>() / sum;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuBuffer;
    use proptest::prelude::*;

    fn values(n: usize, seed: u64) -> Vec<f64> {
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

    #[allow(clippy::too_many_arguments)]
    fn check(
        b: usize,
        hq: usize,
        hkv: usize,
        lq: usize,
        lk: usize,
        d: usize,
        dv: usize,
        mask: AttentionMask,
        bool_mask: bool,
        dtype: DType,
        seed: u64,
    ) {
        let desc = Attention::new(1.0 / (d as f32).sqrt()).mask(mask);
        // Scores large enough that the softmax is far from uniform.
        let q: Vec<f64> = values(b * hq * lq * d, seed).iter().map(|x| 3.0 * x).collect();
        let k = values(b * hkv * lk * d, seed + 1);
        let v = values(b * hkv * lk * dv, seed + 2);
        let raw_mask = values(b * hq * lq * lk, seed + 3);
        let mask_f: Option<Vec<f64>> = (mask == AttentionMask::Explicit).then(|| {
            raw_mask
                .iter()
                .map(|&x| if bool_mask { if x < -0.6 { f64::NEG_INFINITY } else { 0.0 } } else { 2.0 * x })
                .collect()
        });
        // Round the inputs to the tested type first, so the reference sees the same values.
        let round = |x: &[f64]| -> Vec<f64> {
            x.iter()
                .map(|&x| match dtype {
                    DType::F32 => x as f32 as f64,
                    DType::F16 => f16::from_f64(x).to_f64(),
                    DType::BF16 => bf16::from_f64(x).to_f64(),
                    _ => x,
                })
                .collect()
        };
        let (q, k, v) = (round(&q), round(&k), round(&v));
        let mask_f = mask_f.map(|m| if bool_mask { m } else { round(&m) });
        let want = reference(&desc, &q, &k, &v, mask_f.as_deref(), [b, hq, lq, d], [b, hkv, lk, d], dv);
        let enc = |x: &[f64]| -> CpuBuffer {
            match dtype {
                DType::F32 => CpuBuffer::from_slice(&x.iter().map(|&v| v as f32).collect::<Vec<_>>()).unwrap(),
                DType::F64 => CpuBuffer::from_slice(x).unwrap(),
                DType::F16 => CpuBuffer::from_slice(&x.iter().map(|&v| f16::from_f64(v)).collect::<Vec<_>>()).unwrap(),
                _ => CpuBuffer::from_slice(&x.iter().map(|&v| bf16::from_f64(v)).collect::<Vec<_>>()).unwrap(),
            }
        };
        let (bq, bk, bv) = (enc(&q), enc(&k), enc(&v));
        let lay = |s: [usize; 4]| Layout::contiguous(&s);
        let (lq_, lk_, lv_, lo_) =
            (lay([b, hq, lq, d]), lay([b, hkv, lk, d]), lay([b, hkv, lk, dv]), lay([b, hq, lq, dv]));
        let lm = lay([b, hq, lq, lk]);
        let (mask_buf, mask_dtype) = match (&mask_f, bool_mask) {
            (Some(m), true) => (
                CpuBuffer::from_slice(&m.iter().map(|&x| u8::from(x == 0.0)).collect::<Vec<u8>>()).unwrap(),
                DType::Bool,
            ),
            (Some(m), false) => (enc(m), dtype),
            (None, _) => (CpuBuffer::zeros(0).unwrap(), dtype),
        };
        let mut bo = enc(&vec![f64::NAN; want.len()]);
        attention(
            &desc,
            TensorRef::new(dtype, &bq, &lq_),
            TensorRef::new(dtype, &bk, &lk_),
            TensorRef::new(dtype, &bv, &lv_),
            mask_f.as_ref().map(|_| TensorRef::new(mask_dtype, &mask_buf, &lm)),
            TensorMut::new(dtype, &mut bo, &lo_),
        )
        .unwrap();
        let got: Vec<f64> = match dtype {
            DType::F32 => bo.typed::<f32>().iter().map(|&v| v as f64).collect(),
            DType::F64 => bo.typed::<f64>().to_vec(),
            DType::F16 => bo.typed::<f16>().iter().map(|v| v.to_f64()).collect(),
            _ => bo.typed::<bf16>().iter().map(|v| v.to_f64()).collect(),
        };
        let tol = match dtype {
            DType::F64 => 1e-12,
            DType::F32 => 2e-5,
            DType::F16 => 2e-3,
            _ => 1.6e-2,
        };
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= tol,
                "{dtype} b{b} hq{hq} hkv{hkv} lq{lq} lk{lk} d{d} dv{dv} {mask:?} bool={bool_mask}: out[{i}] = {g}, want {w}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

        #[test]
        fn matches_naive_softmax(
            b in 1usize..3, hkv in 1usize..3, group in 1usize..4, lq in prop_oneof![1usize..10, 60usize..140], lk in prop_oneof![1usize..10, 500usize..1100],
            d in prop::sample::select(vec![8usize, 64, 80]), dv in prop::sample::select(vec![8usize, 64]),
            mask in prop::sample::select(vec![AttentionMask::None, AttentionMask::Causal, AttentionMask::Explicit]), bool_mask in any::<bool>(), seed in any::<u64>()
        ) {
            check(b, hkv * group, hkv, lq, lk, d, dv, mask, bool_mask, DType::F32, seed);
        }
    }

    #[test]
    fn every_dtype_and_head_dims() {
        for (i, dtype) in [DType::F64, DType::F32, DType::F16, DType::BF16].into_iter().enumerate() {
            for d in [64, 128, 256] {
                check(1, 4, 2, 70, 600, d, d, AttentionMask::Causal, false, dtype, i as u64 * 10 + d as u64);
            }
        }
        // More queries than keys: the first queries see nothing and get zeros.
        check(1, 2, 1, 20, 5, 16, 16, AttentionMask::Causal, false, DType::F32, 99);
        check(1, 2, 2, 9, 9, 16, 16, AttentionMask::Explicit, true, DType::F64, 98);
    }
}

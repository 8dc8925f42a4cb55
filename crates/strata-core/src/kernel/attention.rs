//! `Attention`: scaled dot-product attention, `softmax(q·kᵀ·scale + mask)·v`.

use super::{Layout, Storage, TensorMut, TensorRef};
use crate::DType;
use crate::error::{Error, Result};

/// Which score entries are kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AttentionMask {
    /// Every key for every query.
    #[default]
    None,
    /// Query `i` sees key `j` iff `j ≤ i + (keys − queries)`: aligned at the bottom right, as
    /// in MLX and FlashAttention, so the last query sees every key.
    Causal,
    /// An extra operand `[batch, heads, queries, keys]` (broadcast with zero strides as
    /// needed): added to the scores if it is a float type; if it is `bool`, `false` removes
    /// the entry.
    Explicit,
}

/// The sizes of a checked attention call: `q [batch, q_heads, q_len, d]`,
/// `k [batch, kv_heads, k_len, d]`, `v [batch, kv_heads, k_len, dv]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionDims {
    /// Batch size.
    pub batch: usize,
    /// Query heads.
    pub q_heads: usize,
    /// Queries per head.
    pub q_len: usize,
    /// Size of a query (and key) head.
    pub d: usize,
    /// Key/value heads (dividing `q_heads`).
    pub kv_heads: usize,
    /// Keys per head.
    pub k_len: usize,
    /// Size of a value (and output) head.
    pub dv: usize,
}

/// Scaled dot-product attention over `[batch, heads, sequence, dim]` tensors, with grouped
/// (GQA) and multi-query (MQA) key/value heads.
///
/// Operands: `q [B, Hq, Lq, D]`, `k [B, Hkv, Lk, D]`, `v [B, Hkv, Lk, Dv]`, output
/// `[B, Hq, Lq, Dv]`, with `Hq` a multiple of `Hkv` (query head `h` reads key/value head
/// `h / (Hq / Hkv)`). The softmax runs in f32 (f64 for f64 operands) as an online (flash)
/// softmax over blocks of keys. A query whose every key is masked out gets a zero output.
///
/// ```
/// use strata_core::kernel::{Attention, Layout};
///
/// let att = Attention::new(0.125);
/// let (q, kv) = (Layout::contiguous(&[1, 8, 128, 64]), Layout::contiguous(&[1, 2, 256, 64]));
/// assert!(att.validate_shapes(&q, &kv, &kv, &q, None).is_ok());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Attention {
    /// Multiplies the scores (usually `1/√D`).
    pub scale: f32,
    /// Masking.
    pub mask: AttentionMask,
}

impl Attention {
    /// Unmasked attention with the given scale.
    pub fn new(scale: f32) -> Self {
        Attention { scale, mask: AttentionMask::None }
    }

    /// Sets the mask.
    pub fn mask(mut self, mask: AttentionMask) -> Self {
        self.mask = mask;
        self
    }

    fn err(message: String) -> Error {
        Error::InvalidArgument { op: "attention", message }
    }

    /// Checks the shapes of `q`, `k`, `v`, the output and the mask operand.
    pub fn validate_shapes(
        &self,
        q: &Layout,
        k: &Layout,
        v: &Layout,
        out: &Layout,
        mask: Option<&Layout>,
    ) -> Result<AttentionDims> {
        let four = |what: &str, l: &Layout| -> Result<[usize; 4]> {
            l.shape().try_into().map_err(|_| {
                Self::err(format!("{what} has shape {:?}; it needs [batch, heads, sequence, dim]", l.shape()))
            })
        };
        let [b, hq, lq, d] = four("q", q)?;
        let [kb, hkv, lk, kd] = four("k", k)?;
        let [vb, vh, vl, dv] = four("v", v)?;
        if kb != b || vb != b || vh != hkv || vl != lk || kd != d {
            return Err(Self::err(format!(
                "q {:?}, k {:?} and v {:?} disagree: k needs [{b}, Hkv, Lk, {d}] and v [{b}, Hkv, Lk, Dv] with the same Hkv and Lk",
                q.shape(),
                k.shape(),
                v.shape()
            )));
        }
        if hkv == 0 || hq % hkv != 0 {
            return Err(Self::err(format!("{hq} query heads cannot be shared among {hkv} key/value heads")));
        }
        if out.shape() != [b, hq, lq, dv] {
            return Err(Self::err(format!("the output has shape {:?}; it needs {:?}", out.shape(), [b, hq, lq, dv])));
        }
        match (self.mask, mask) {
            (AttentionMask::Explicit, None) => Err(Self::err("an explicit mask needs a mask operand".into())),
            (AttentionMask::Explicit, Some(m)) if m.shape() != [b, hq, lq, lk] => Err(Self::err(format!(
                "the mask has shape {:?}; it needs {:?} (broadcast with zero strides)",
                m.shape(),
                [b, hq, lq, lk]
            ))),
            (AttentionMask::None | AttentionMask::Causal, Some(_)) => {
                Err(Self::err("a mask operand was given but the mask is not explicit".into()))
            }
            _ => Ok(AttentionDims { batch: b, q_heads: hq, q_len: lq, d, kv_heads: hkv, k_len: lk, dv }),
        }
    }

    /// Checks a call before anything runs: shapes and types ([`validate_shapes`],
    /// [`validate_types`]), every operand inside its buffer, and an output whose elements
    /// do not share memory (each is written once).
    ///
    /// [`validate_shapes`]: Self::validate_shapes
    /// [`validate_types`]: Self::validate_types
    pub fn validate_call<B: Storage>(
        &self,
        q: &TensorRef<'_, B>,
        k: &TensorRef<'_, B>,
        v: &TensorRef<'_, B>,
        mask: Option<&TensorRef<'_, B>>,
        out: &TensorMut<'_, B>,
    ) -> Result<AttentionDims> {
        let dims = self.validate_shapes(q.layout, k.layout, v.layout, out.layout, mask.map(|m| m.layout))?;
        self.validate_types(q.dtype, k.dtype, v.dtype, out.dtype, mask.map(|m| m.dtype))?;
        for (t, what) in [(q, "q"), (k, "k"), (v, "v")] {
            t.check("attention", what)?;
        }
        if let Some(m) = mask {
            m.check("attention", "the mask")?;
        }
        out.check("attention", "the output")?;
        if !out.layout.is_non_overlapping() {
            return Err(Self::err("the output has elements that share memory".into()));
        }
        Ok(dims)
    }

    /// Checks the types: q, k, v and the output share one of f32, f64, f16, bf16; a mask is
    /// `bool` or that type.
    pub fn validate_types(&self, q: DType, k: DType, v: DType, out: DType, mask: Option<DType>) -> Result<()> {
        if !matches!(q, DType::F32 | DType::F64 | DType::F16 | DType::BF16) || k != q || v != q || out != q {
            return Err(Self::err(format!(
                "unsupported types q {q}, k {k}, v {v}, out {out} (all float32, float64, float16 or bfloat16)"
            )));
        }
        if let Some(m) = mask
            && m != DType::Bool
            && m != q
        {
            return Err(Self::err(format!("the mask is {m}; it must be bool or {q}")));
        }
        Ok(())
    }
}

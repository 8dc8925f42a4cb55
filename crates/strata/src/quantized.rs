//! Quantized weights in the array layer: [`quantize`], [`dequantize`] and
//! [`quantized_matmul`], on the kernel layer's [`QuantizedTensor`] (every mode: MX fp8/fp6/fp4
//! and int8 with E8M0 block scales, nvfp4, MLX's affine).
//!
//! A [`QuantizedArray`] keeps its planes on the host and is made resident on a device the first
//! time a product runs there (once per device). The product's derivative with respect to `x`
//! is the product with the same weight the other way round (`g·W` for `y = x·Wᵀ`), so training
//! through a frozen quantized layer needs no dequantized copy; the weight itself gets none
//! (quantized codes are not differentiable).

use std::any::{Any, TypeId};
use std::sync::{Arc, Mutex};

pub use strata_core::quant::{MxElement, Numerics, QuantMode, QuantizedTensor};
use strata_core::{DType, Result};

use crate::graph::Array;
use crate::ops::{check_ok, invalid, make};
use crate::prim::Prim;

/// A quantized 2-D weight (see the module docs).
#[derive(Clone)]
pub struct QuantizedArray(Arc<Inner>);

/// A device: its backend's type and its name.
type DeviceKey = (TypeId, String);

struct Inner {
    tensor: QuantizedTensor,
    /// The weight made resident, per device (keyed by the backend's type and the device's name,
    /// so two GPUs of one backend keep a copy each; the backend's own `Quantized` type inside).
    resident: Mutex<Vec<(DeviceKey, Arc<dyn Any + Send + Sync>)>>,
}

impl std::fmt::Debug for QuantizedArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QuantizedArray({} {:?})", self.0.tensor.mode(), self.0.tensor.shape())
    }
}

impl PartialEq for QuantizedArray {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl QuantizedArray {
    /// Wraps planes made elsewhere (e.g. loaded from a file).
    pub fn from_tensor(tensor: QuantizedTensor) -> QuantizedArray {
        QuantizedArray(Arc::new(Inner { tensor, resident: Mutex::new(Vec::new()) }))
    }

    /// The planes.
    pub fn tensor(&self) -> &QuantizedTensor {
        &self.0.tensor
    }

    /// The logical shape.
    pub fn shape(&self) -> &[usize] {
        self.0.tensor.shape()
    }

    /// The mode.
    pub fn mode(&self) -> &QuantMode {
        self.0.tensor.mode()
    }

    /// The weight made resident on backend `B` (once per backend).
    pub(crate) fn resident<B: strata_core::kernel::Backend + 'static>(&self, backend: &B) -> Result<Arc<B::Quantized>>
    where
        B::Quantized: 'static,
    {
        let mut r = self.0.resident.lock().unwrap_or_else(|e| e.into_inner());
        let key = (TypeId::of::<B>(), backend.name());
        let found = r.iter().find(|(k, _)| *k == key).map(|(_, q)| q.clone());
        let q = match found {
            Some(q) => q,
            None => {
                let q: Arc<dyn Any + Send + Sync> = Arc::new(backend.upload_quantized(&self.0.tensor)?);
                r.push((key, q.clone()));
                q
            }
        };
        q.downcast::<B::Quantized>().map_err(|_| crate::graph::internal("a resident weight of another backend's type"))
    }
}

/// `w` (2-D, float) quantized along its last axis in `mode`; the values are read back to the
/// host and encoded there, bit-exactly as `strata_core::quant` (and so `ml_dtypes` and MLX).
///
/// ```
/// use strata::{Array, quantize, dequantize, QuantMode};
/// let w = strata::linspace(-1.0, 1.0, 64, strata::DType::F32)?.reshape(&[2, 32])?;
/// let q = quantize(&w, &QuantMode::mxfp8(strata::MxElement::E4M3))?;
/// let (back, orig) = (dequantize(&q, strata::DType::F32)?.to_vec::<f32>()?, w.to_vec::<f32>()?);
/// // E4M3 keeps 3 mantissa bits: within 1/16 relative.
/// assert!(back.iter().zip(&orig).all(|(b, o)| (b - o).abs() <= o.abs() / 16.0));
/// # Ok::<(), strata::Error>(())
/// ```
pub fn quantize(w: &Array, mode: &QuantMode) -> Result<QuantizedArray> {
    check_ok(&[w])?;
    if !w.dtype().is_float() || w.ndim() != 2 {
        return Err(invalid(
            "quantize",
            format!("needs a 2-D floating-point weight; got {} {:?}", w.dtype(), w.shape()),
        ));
    }
    let values = w.astype(DType::F32)?.to_vec::<f32>()?;
    let t = strata_core::quant::quantize(&values, w.shape(), mode)?;
    Ok(QuantizedArray::from_tensor(t))
}

/// The weight's values, decoded, as `dtype` (on the default device).
pub fn dequantize(q: &QuantizedArray, dtype: DType) -> Result<Array> {
    let v = strata_core::quant::dequantize(q.tensor());
    Array::from_slice(&v, q.shape())?.astype(dtype)
}

/// `x·Wᵀ` (`transpose`, the linear-layer convention: `W` is `[n, k]`) or `x·W` (`W` is `[k,
/// n]`) for `x [..., m, k]` of float32, float16 or bfloat16, dequantizing `W` block by block
/// inside the kernel. The result has `x`'s type.
pub fn quantized_matmul(x: &Array, w: &QuantizedArray, transpose: bool) -> Result<Array> {
    check_ok(&[x])?;
    let desc = strata_core::kernel::QuantizedMatmul { transpose };
    let x = if matches!(x.dtype(), DType::F32 | DType::F16 | DType::BF16) {
        x.clone()
    } else if x.dtype().is_float() || x.dtype().is_integer() {
        x.astype(DType::F32)?
    } else {
        return Err(invalid("quantized_matmul", format!("x is {}; it must be a real number type", x.dtype())));
    };
    let layout = strata_core::kernel::Layout::contiguous(x.shape());
    let (_, n, _) =
        desc.validate((&layout, x.dtype()), w.tensor().shape(), (&out_layout(&x, w, transpose), x.dtype()))?;
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("validated 2-D or more") = n;
    let dtype = x.dtype();
    Ok(make(Prim::QuantizedMatmul { weight: w.clone(), transpose }, vec![x], shape, dtype))
}

/// The layout the output would have (for validation before the node exists).
fn out_layout(x: &Array, w: &QuantizedArray, transpose: bool) -> strata_core::kernel::Layout {
    let mut s = x.shape().to_vec();
    if let (Some(last), [r, c]) = (s.last_mut(), w.shape()) {
        *last = if transpose { *r } else { *c };
    }
    strata_core::kernel::Layout::contiguous(&s)
}

//! Creating arrays and reading them back.

use std::sync::Arc;

use half::{bf16, f16};
use strata_core::kernel::Layout;
use strata_core::{DType, Error, Result};
use strata_cpu::CpuBuffer;

use crate::device::{Device, default_device};
use crate::graph::{Array, Buffer, Data};
use crate::ops;

/// A Rust type that an array's elements can be read as or written from.
pub trait Element: Copy + 'static {
    /// The matching dtype.
    const DTYPE: DType;
    /// The little-endian bytes of `values`.
    fn to_bytes(values: &[Self]) -> Vec<u8>;
    /// Values from little-endian bytes (`bytes.len()` is a multiple of the size).
    fn from_bytes(bytes: &[u8]) -> Vec<Self>;
}

macro_rules! pod_element {
    ($($t:ty => $d:ident),*) => {$(
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            fn to_bytes(values: &[Self]) -> Vec<u8> {
                bytemuck::cast_slice(values).to_vec()
            }
            fn from_bytes(bytes: &[u8]) -> Vec<Self> {
                bytemuck::pod_collect_to_vec(bytes)
            }
        }
    )*};
}
pod_element!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, u64 => U64, i64 => I64,
    f16 => F16, bf16 => BF16, f32 => F32, f64 => F64);

impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn to_bytes(values: &[Self]) -> Vec<u8> {
        values.iter().map(|&b| u8::from(b)).collect()
    }
    fn from_bytes(bytes: &[u8]) -> Vec<Self> {
        bytes.iter().map(|&b| b != 0).collect()
    }
}

fn invalid(op: &'static str, message: String) -> Error {
    Error::InvalidArgument { op, message }
}

impl Array {
    /// An array of `shape` holding `data` (row-major), on the default device.
    pub fn from_slice<T: Element>(data: &[T], shape: &[usize]) -> Result<Array> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(invalid(
                "Array::from_slice",
                format!("{} values cannot fill shape {shape:?} ({n} elements)", data.len()),
            ));
        }
        Array::from_bytes(&T::to_bytes(data), shape, T::DTYPE, default_device())
    }

    /// A 0-d array holding `value`.
    pub fn scalar<T: Element>(value: T) -> Array {
        // One value always fits shape []; what can fail is the device (out of memory, a lost
        // context), and then the array carries the error, as a failed operator's result does.
        Array::from_bytes(&T::to_bytes(&[value]), &[], T::DTYPE, default_device()).unwrap_or_else(crate::ops::failed)
    }

    /// An array from raw little-endian bytes of `dtype` (sub-byte types packed).
    pub fn from_bytes(bytes: &[u8], shape: &[usize], dtype: DType, device: Device) -> Result<Array> {
        let n: usize = shape.iter().product();
        if bytes.len() != dtype.byte_len(n) {
            return Err(invalid(
                "Array::from_bytes",
                format!("{} bytes do not hold {n} elements of {dtype} (shape {shape:?})", bytes.len()),
            ));
        }
        let buffer = upload(bytes, device)?;
        Ok(Array::from_data(Data { buffer: Arc::new(buffer), layout: Layout::contiguous(shape) }, dtype, device))
    }

    /// The elements in row-major order, converted to `T` (as [`astype`](Array::astype) does)
    /// if the dtype differs. Evaluates the array.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        let a = if self.dtype() == T::DTYPE { self.clone() } else { self.astype(T::DTYPE)? };
        let a = ops::contiguous(&a)?;
        a.eval()?;
        let data = a.data().expect("evaluated");
        let start = data.layout.offset() * T::DTYPE.bits() as usize / 8;
        let len = T::DTYPE.byte_len(a.size());
        let bytes = data.buffer.host_bytes(start + len)?;
        Ok(T::from_bytes(&bytes[start..]))
    }

    /// The elements' raw little-endian bytes in row-major order (sub-byte types packed, as
    /// [`from_bytes`](Array::from_bytes) takes them). Evaluates the array.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let a = ops::contiguous(self)?;
        a.eval()?;
        let data = a.data().expect("evaluated");
        let bits = self.dtype().bits() as usize;
        if !(data.layout.offset() * bits).is_multiple_of(8) {
            return Err(invalid("to_bytes", format!("a {} view that starts inside a byte", self.dtype())));
        }
        let start = data.layout.offset() * bits / 8;
        let len = self.dtype().byte_len(a.size());
        Ok(data.buffer.host_bytes(start + len)?[start..start + len].to_vec())
    }

    /// The single element of a one-element array.
    pub fn item<T: Element>(&self) -> Result<T> {
        if self.size() != 1 {
            return Err(invalid("item", format!("the array has shape {:?}, not one element", self.shape())));
        }
        Ok(self.to_vec::<T>()?[0])
    }
}

/// A filled array: `value` converted to `dtype`, broadcast to `shape` (no memory per element
/// until something writes a new array from it).
pub fn full(shape: &[usize], value: f64, dtype: DType) -> Result<Array> {
    ops::broadcast_to(&from_f64(vec![value], &[], dtype)?, shape)
}

/// Zeros.
pub fn zeros(shape: &[usize], dtype: DType) -> Result<Array> {
    full(shape, 0.0, dtype)
}

/// Ones.
pub fn ones(shape: &[usize], dtype: DType) -> Result<Array> {
    full(shape, 1.0, dtype)
}

/// Zeros shaped and typed like `a`.
pub fn zeros_like(a: &Array) -> Result<Array> {
    zeros(a.shape(), a.dtype())
}

/// Ones shaped and typed like `a`.
pub fn ones_like(a: &Array) -> Result<Array> {
    ones(a.shape(), a.dtype())
}

/// An array of `dtype` from f64 values, converted on the host (with the CPU backend's
/// rounding) so that a device without float64 never sees them.
fn from_f64(values: Vec<f64>, shape: &[usize], dtype: DType) -> Result<Array> {
    use strata_core::kernel::{Backend, TensorMut, TensorRef};
    let n: usize = shape.iter().product();
    if n != values.len() {
        return Err(invalid("Array::from_f64", format!("{} values cannot fill shape {shape:?}", values.len())));
    }
    let l = Layout::contiguous(&[n]);
    let src = CpuBuffer::from_slice(&f64::to_bytes(&values))?;
    let mut dst = strata_cpu::Cpu.alloc_output(dtype.byte_len(n))?;
    strata_cpu::Cpu.cast(TensorRef::new(DType::F64, &src, &l), TensorMut::new(dtype, &mut dst, &l))?;
    Array::from_bytes(dst.as_bytes(), shape, dtype, default_device())
}

/// `start, start + step, …` up to (excluding) `stop`, as NumPy's `arange`.
pub fn arange(start: f64, stop: f64, step: f64, dtype: DType) -> Result<Array> {
    if step == 0.0 || !step.is_finite() || !start.is_finite() || !stop.is_finite() {
        return Err(invalid(
            "arange",
            format!("start {start}, stop {stop}, step {step}: need finite values and a non-zero step"),
        ));
    }
    let n = ((stop - start) / step).ceil().max(0.0) as usize;
    from_f64((0..n).map(|i| start + i as f64 * step).collect(), &[n], dtype)
}

/// `num` evenly spaced values from `start` to `stop` inclusive.
pub fn linspace(start: f64, stop: f64, num: usize, dtype: DType) -> Result<Array> {
    let step = if num > 1 { (stop - start) / (num - 1) as f64 } else { 0.0 };
    let mut v: Vec<f64> = (0..num).map(|i| start + i as f64 * step).collect();
    if num > 1 {
        v[num - 1] = stop;
    }
    from_f64(v, &[num], dtype)
}

/// An `n × m` matrix with ones on diagonal `k` (0 main, positive above).
pub fn eye(n: usize, m: usize, k: isize, dtype: DType) -> Result<Array> {
    let v = (0..n * m).map(|i| if (i % m) as isize - (i / m) as isize == k { 1.0 } else { 0.0 }).collect();
    from_f64(v, &[n, m], dtype)
}

/// The `n × n` identity.
pub fn identity(n: usize, dtype: DType) -> Result<Array> {
    eye(n, n, 0, dtype)
}

/// An `n × m` matrix with ones on and below diagonal `k`.
pub fn tri(n: usize, m: usize, k: isize, dtype: DType) -> Result<Array> {
    let v = (0..n * m).map(|i| if (i % m) as isize - (i / m) as isize <= k { 1.0 } else { 0.0 }).collect();
    from_f64(v, &[n, m], dtype)
}

/// A buffer on `device` holding `bytes`.
pub(crate) fn upload(bytes: &[u8], device: Device) -> Result<Buffer> {
    Ok(match device {
        Device::Cpu => Buffer::Cpu(CpuBuffer::from_slice(bytes)?),
        #[cfg(feature = "cuda")]
        Device::Cuda => {
            use strata_core::kernel::Backend;
            Buffer::Cuda(crate::device::cuda()?.upload(bytes)?)
        }
        #[cfg(feature = "wgpu")]
        Device::Wgpu => {
            use strata_core::kernel::Backend;
            Buffer::Wgpu(crate::device::wgpu()?.upload(bytes)?)
        }
    })
}

//! Random numbers from splittable keys: Threefry-2x32 counters as in JAX and MLX, bit for bit
//! with MLX 0.32 (`key`, `split`, `bits`, `uniform`). A key is a `uint32` array of shape `[2]`;
//! the same key always gives the same numbers, and `split` makes independent new keys. Calls
//! without a key draw one from a global key that [`seed`] resets.

use std::sync::Mutex;

use strata_core::{DType, Error, Result};

use crate::graph::Array;
use crate::ops::{self, reshape_to};
use crate::prim::Prim;

fn invalid(op: &'static str, message: String) -> Error {
    Error::InvalidArgument { op, message }
}

/// The key for `seed` (MLX's `mx.random.key`): `[seed >> 32, seed & 0xffffffff]`.
pub fn key(seed: u64) -> Array {
    // Two words always fit [2]; a device that cannot take them leaves the error in the key.
    Array::from_slice(&[(seed >> 32) as u32, seed as u32], &[2]).unwrap_or_else(crate::ops::failed)
}

static GLOBAL: Mutex<Option<Array>> = Mutex::new(None);

/// Resets the global key (used by calls without a key) to `key(seed)`.
pub fn seed(seed: u64) {
    *GLOBAL.lock().unwrap_or_else(|e| e.into_inner()) = Some(key(seed));
}

/// The given key, or a fresh one split from the global key.
fn key_or_next(k: Option<&Array>) -> Result<Array> {
    if let Some(k) = k {
        if k.shape() != [2] || k.dtype() != DType::U32 {
            return Err(invalid("random", format!("a key is uint32 [2]; got {} {:?}", k.dtype(), k.shape())));
        }
        return Ok(k.clone());
    }
    let mut g = GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
    let current = g.get_or_insert_with(|| {
        key(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64))
    });
    let parts = split(current, 2)?;
    let next = ops::squeeze(&ops::slice_axis(&parts, 0, 0, 1)?, Some(&[0]))?;
    let used = ops::squeeze(&ops::slice_axis(&parts, 0, 1, 2)?, Some(&[0]))?;
    crate::eval_all(&[&next, &used])?;
    *g = Some(next);
    Ok(used)
}

/// `shape` of random `uint32` words from `key`.
pub fn bits(shape: &[usize], key: Option<&Array>) -> Result<Array> {
    let k = key_or_next(key)?;
    let n: usize = shape.iter().product();
    let keys = reshape_to(&k, &[1, 2]);
    let out = Array::node(Prim::RandomBits, vec![keys], vec![1, n], DType::U32, k.device());
    Ok(reshape_to(&out, shape))
}

/// `num` new keys (`[num, 2]`) from `key`.
pub fn split(key: &Array, num: usize) -> Result<Array> {
    let k = key_or_next(Some(key))?;
    let b = bits(&[num * 2], Some(&k))?;
    Ok(reshape_to(&b, &[num, 2]))
}

/// Uniform samples in `[low, high)` of a floating `dtype`.
pub fn uniform(low: f64, high: f64, shape: &[usize], dtype: DType, key: Option<&Array>) -> Result<Array> {
    if !dtype.is_float() || low.partial_cmp(&high) != Some(std::cmp::Ordering::Less) {
        return Err(invalid("uniform", format!("needs a floating dtype and low < high; got {dtype}, [{low}, {high})")));
    }
    let b = bits(shape, key)?.astype(DType::F32)?;
    let unit = ops::minimum(
        &ops::divide(&b, &Array::scalar(4_294_967_295.0f32))?,
        &Array::scalar(f32::from_bits(1.0f32.to_bits() - 1)),
    )?;
    let u = unit.astype(dtype)?;
    ops::add(&ops::multiply(&u, &ops::weak_scalar(&u, high - low))?, &ops::weak_scalar(&u, low))
}

/// Normal samples with mean `loc` and standard deviation `scale` (`√2·erfinv(u)` of a uniform
/// `u` in (-1, 1), as MLX does).
pub fn normal(shape: &[usize], dtype: DType, loc: f64, scale: f64, key: Option<&Array>) -> Result<Array> {
    let lo = f64::from(f32::from_bits((-1.0f32).to_bits() - 1)); // nextafter(-1, 0)
    let u = uniform(lo, 1.0, shape, dtype, key)?;
    let z = ops::multiply(&ops::erfinv(&u)?, &ops::weak_scalar(&u, std::f64::consts::SQRT_2))?;
    ops::add(&ops::multiply(&z, &ops::weak_scalar(&z, scale))?, &ops::weak_scalar(&z, loc))
}

/// Integers uniform in `[low, high)`.
pub fn randint(low: i64, high: i64, shape: &[usize], dtype: DType, key: Option<&Array>) -> Result<Array> {
    if low >= high || !dtype.is_integer() {
        return Err(invalid("randint", format!("needs an integer dtype and low < high; got {dtype}, [{low}, {high})")));
    }
    let u = uniform(0.0, 1.0, shape, DType::F64, key)?;
    let v =
        ops::floor(&ops::add(&ops::multiply(&u, &Array::scalar((high - low) as f64))?, &Array::scalar(low as f64))?)?;
    ops::clip(&v, Some(low as f64), Some((high - 1) as f64))?.astype(dtype)
}

/// `true` with probability `p`.
pub fn bernoulli(p: f64, shape: &[usize], key: Option<&Array>) -> Result<Array> {
    ops::less(&uniform(0.0, 1.0, shape, DType::F32, key)?, &Array::scalar(p as f32))
}

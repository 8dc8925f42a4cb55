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

/// Gumbel samples, `−log(−log(u))` for `u` uniform in `[0, 1)` (as MLX).
pub fn gumbel(shape: &[usize], dtype: DType, key: Option<&Array>) -> Result<Array> {
    let u = uniform(0.0, 1.0, shape, dtype, key)?;
    ops::negative(&ops::log(&ops::negative(&ops::log(&u)?)?)?)
}

/// Indices drawn from the categorical distribution with unnormalised log-probabilities
/// `logits` along `axis` (the Gumbel-max trick, as MLX): one per lane, or `num_samples` per
/// lane on a new last axis.
///
/// ```
/// use strata::{Array, random};
/// // Logits with one overwhelming entry always pick it.
/// let logits = Array::from_slice(&[0.0f32, 50.0, 0.0, 0.0, 0.0, 50.0], &[2, 3])?;
/// let s = random::categorical(&logits, -1, Some(4), Some(&random::key(7)))?;
/// assert_eq!(s.to_vec::<u32>()?, [1, 1, 1, 1, 2, 2, 2, 2]);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn categorical(logits: &Array, axis: isize, num_samples: Option<usize>, key: Option<&Array>) -> Result<Array> {
    let ax = ops::norm_axis("categorical", axis, logits.ndim())?;
    let logits = if logits.dtype().is_float() { logits.clone() } else { logits.astype(DType::F32)? };
    match num_samples {
        None => {
            let g = gumbel(logits.shape(), logits.dtype(), key)?;
            ops::argmax(&ops::add(&logits, &g)?, Some(ax as isize), false)
        }
        Some(n) => {
            // Logits with a new last axis of n draws (MLX's layout, so samples match its own).
            let mut shape = logits.shape().to_vec();
            shape.push(n);
            let g = gumbel(&shape, logits.dtype(), key)?;
            ops::argmax(&ops::add(&ops::expand_dims(&logits, -1)?, &g)?, Some(ax as isize), false)
        }
    }
}

/// Normal samples truncated to `[lower, upper]`: `√2·erfinv(u)` for `u` uniform between the
/// bounds' images under `erf(·/√2)`, clipped (as MLX).
pub fn truncated_normal(lower: f64, upper: f64, shape: &[usize], dtype: DType, key: Option<&Array>) -> Result<Array> {
    if !dtype.is_float() || lower.partial_cmp(&upper) != Some(std::cmp::Ordering::Less) {
        return Err(invalid(
            "truncated_normal",
            format!("needs a floating dtype and lower < upper; got {dtype}, [{lower}, {upper}]"),
        ));
    }
    // The bounds' images in the sample type, as MLX computes them.
    let bound = |v: f64| -> Result<f64> {
        let a = crate::array::full(&[], v / std::f64::consts::SQRT_2, dtype)?;
        ops::erf(&a)?.astype(DType::F64)?.item::<f64>()
    };
    let u = uniform(bound(lower)?, bound(upper)?, shape, dtype, key)?;
    let z = ops::multiply(&ops::erfinv(&u)?, &ops::weak_scalar(&u, std::f64::consts::SQRT_2))?;
    ops::clip(&z, Some(lower), Some(upper))
}

/// A random permutation of `0..n` as uint32 (MLX's `permutation(n)`: the argsort of `n`
/// random words).
pub fn permutation(n: usize, key: Option<&Array>) -> Result<Array> {
    crate::sort::argsort(&bits(&[n], key)?, Some(0))
}

/// `x` with its slices along `axis` in a random order.
pub fn shuffle(x: &Array, axis: isize, key: Option<&Array>) -> Result<Array> {
    let ax = ops::norm_axis("shuffle", axis, x.ndim())?;
    ops::take(x, &permutation(x.shape()[ax], key)?, Some(ax as isize))
}

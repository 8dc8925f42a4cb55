//! Discrete Fourier transforms, as `numpy.fft` and `mlx.core.fft`, and the complex64 helpers
//! they need ([`real`], [`imag`], [`conj`], [`complex`]).
//!
//! complex64 arrays hold (real, imaginary) pairs of f32. `add`, `subtract`, `multiply`,
//! `divide`, `negative`, `exp`, `equal` and `not_equal` take them (CPU kernels; a GPU device
//! runs them through its visible CPU fallback); `sum`, `mean`, `abs`, [`angle`], `matmul` (four
//! real products), `power` and every other element-wise function NumPy defines on complex
//! numbers (roots, logarithms, exponentials, the trigonometric and hyperbolic functions and
//! their inverses, `sign`) are compositions of real ops, so their derivatives come with them.
//!
//! Every transform is a composition of one-dimensional transforms along the last axis, each
//! one host function computed in float64 by rustfft (any length: mixed radix, Bluestein for
//! large primes), as the linear algebra runs on the host; results are complex64 (or float32
//! for `irfft`), as MLX's. Each has a reverse-mode rule in array ops, so gradients compose.
//! Complex cotangents follow the real-pair convention (PyTorch's): for a real loss L of
//! z = a + ib the cotangent is ∂L/∂a + i·∂L/∂b, and a complex-linear map y = Az has the rule
//! z̄ = Aᴴȳ — for the unnormalized transform, n·ifft(ȳ).

use std::sync::Arc;

use rustfft::FftPlanner;
use rustfft::num_complex::Complex;
use strata_core::kernel::UnaryOp;
use strata_core::{DType, Error, Result};

use crate::custom::host_function;
use crate::graph::Array;
use crate::ops::*;
use crate::{full, zeros, zeros_like};

fn err(op: &'static str, message: String) -> Error {
    Error::InvalidArgument { op, message }
}

/// The values of a complex64 array, row-major, widened to float64.
pub(crate) fn complex_values(a: &Array) -> Result<Vec<Complex<f64>>> {
    let a = a.astype(DType::C64)?;
    let bytes = a.to_bytes()?;
    let pairs: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
    Ok(pairs.chunks_exact(2).map(|p| Complex::new(f64::from(p[0]), f64::from(p[1]))).collect())
}

/// A complex64 array of `shape` on `like`'s device.
pub(crate) fn complex_array(values: &[Complex<f64>], shape: &[usize], like: &Array) -> Result<Array> {
    let pairs: Vec<f32> = values.iter().flat_map(|c| [c.re as f32, c.im as f32]).collect();
    Array::from_bytes(bytemuck::cast_slice(&pairs), shape, DType::C64, like.device())
}

/// The real part (the array itself when it is real).
pub fn real(z: &Array) -> Result<Array> {
    if z.dtype() != DType::C64 {
        return Ok(z.clone());
    }
    // The cast keeps the real part, and its derivative is the cast back: (ȳ, 0).
    z.astype(DType::F32)
}

/// The imaginary part (zeros when the array is real).
pub fn imag(z: &Array) -> Result<Array> {
    if z.dtype() != DType::C64 {
        return zeros_like(z);
    }
    let outs = host_function(
        "imag",
        std::slice::from_ref(z),
        vec![(z.shape().to_vec(), DType::F32)],
        |args| {
            let v: Vec<f32> = complex_values(&args[0])?.iter().map(|c| c.im as f32).collect();
            Ok(vec![Array::from_bytes(bytemuck::cast_slice(&v), args[0].shape(), DType::F32, args[0].device())?])
        },
        |_, _, g| Ok(vec![complex(&zeros_like(&g[0])?, &g[0])?]),
    )?;
    Ok(outs.into_iter().next().expect("one output"))
}

/// `re + i·im` as complex64, broadcast together.
///
/// ```
/// use strata::{Array, complex};
/// let re = Array::from_slice(&[1.0f32, -0.5], &[2])?;
/// let im = Array::from_slice(&[2.0f32, -1.0], &[2])?;
/// let z = complex(&re, &im)?;
/// assert_eq!(format!("{z}"), "array([  1.+2.j, -0.5-1.j], dtype=complex64)");
/// assert_eq!(strata::abs(&z)?.to_vec::<f32>()?, [5f32.sqrt(), 1.25f32.sqrt()]);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn complex(re: &Array, im: &Array) -> Result<Array> {
    let shape = broadcast_shapes(re.shape(), im.shape())?;
    let re = broadcast_to(&re.astype(DType::F32)?, &shape)?;
    let im = broadcast_to(&im.astype(DType::F32)?, &shape)?;
    let outs = host_function(
        "complex",
        &[re, im],
        vec![(shape, DType::C64)],
        |args| {
            let (re, im) = (args[0].to_vec::<f32>()?, args[1].to_vec::<f32>()?);
            let v: Vec<Complex<f64>> =
                re.iter().zip(&im).map(|(&a, &b)| Complex::new(f64::from(a), f64::from(b))).collect();
            Ok(vec![complex_array(&v, args[0].shape(), &args[0])?])
        },
        |_, _, g| Ok(vec![real(&g[0])?, imag(&g[0])?]),
    )?;
    Ok(outs.into_iter().next().expect("one output"))
}

/// The complex conjugate (the array itself when it is real).
pub fn conj(z: &Array) -> Result<Array> {
    if z.dtype() != DType::C64 {
        return Ok(z.clone());
    }
    complex(&real(z)?, &negative(&imag(z)?)?)
}

/// `|z|` of a complex array as float32 (`abs` of a real one otherwise).
fn complex_abs(z: &Array) -> Result<Array> {
    if z.dtype() != DType::C64 {
        return abs(z);
    }
    sqrt(&add(&square(&real(z)?)?, &square(&imag(z)?)?)?)
}

/// The argument of `z` in (−π, π] as float32, as `numpy.angle` (0 or π for real arrays).
pub fn angle(z: &Array) -> Result<Array> {
    arctan2(&imag(z)?, &real(z)?)
}

/// The element-wise functions of complex64 that are compositions of real ones (principal
/// branches, as NumPy's); `None` for the others.
pub(crate) fn complex_unary(op: UnaryOp, z: &Array) -> Result<Option<Array>> {
    let (a, b) = (real(z)?, imag(z)?);
    let one = scalar(1.0)?;
    Ok(Some(match op {
        UnaryOp::Abs => complex_abs(z)?,
        UnaryOp::Square => multiply(z, z)?,
        UnaryOp::Reciprocal => divide(&one, z)?,
        // √z = √|z| (cos θ/2 + i sin θ/2); log z = ln|z| + iθ.
        UnaryOp::Sqrt => {
            let (r, half) = (sqrt(&complex_abs(z)?)?, scale(&angle(z)?, 0.5)?);
            complex(&multiply(&r, &cos(&half)?)?, &multiply(&r, &sin(&half)?)?)?
        }
        UnaryOp::Log => complex(&log(&complex_abs(z)?)?, &angle(z)?)?,
        // sin(a + ib) = sin a cosh b + i cos a sinh b; cos(a + ib) = cos a cosh b − i sin a sinh b.
        UnaryOp::Sin => complex(&multiply(&sin(&a)?, &cosh(&b)?)?, &multiply(&cos(&a)?, &sinh(&b)?)?)?,
        UnaryOp::Cos => complex(&multiply(&cos(&a)?, &cosh(&b)?)?, &negative(&multiply(&sin(&a)?, &sinh(&b)?)?)?)?,
        UnaryOp::Tan => divide(&sin(z)?, &cos(z)?)?,
        // sinh(a + ib) = sinh a cos b + i cosh a sin b; cosh(a + ib) = cosh a cos b + i sinh a sin b.
        UnaryOp::Sinh => complex(&multiply(&sinh(&a)?, &cos(&b)?)?, &multiply(&cosh(&a)?, &sin(&b)?)?)?,
        UnaryOp::Cosh => complex(&multiply(&cosh(&a)?, &cos(&b)?)?, &multiply(&sinh(&a)?, &sin(&b)?)?)?,
        UnaryOp::Tanh => divide(&sinh(z)?, &cosh(z)?)?,
        UnaryOp::Exp2 => exp(&scale(z, std::f64::consts::LN_2)?)?,
        // eᶻ − 1 without cancellation near 0: (expm1 a · cos b − 2 sin²(b/2)) + i eᵃ sin b.
        UnaryOp::Expm1 => {
            let half = sin(&scale(&b, 0.5)?)?;
            let re = subtract(&multiply(&expm1(&a)?, &cos(&b)?)?, &scale(&multiply(&half, &half)?, 2.0)?)?;
            complex(&re, &multiply(&exp(&a)?, &sin(&b)?)?)?
        }
        UnaryOp::Log2 => scale(&log(z)?, std::f64::consts::LOG2_E)?,
        UnaryOp::Log10 => scale(&log(z)?, std::f64::consts::LOG10_E)?,
        // log(1 + z) without cancellation near 0: ½ log1p(2a + a² + b²) + i atan2(b, 1 + a).
        UnaryOp::Log1p => {
            let two_a = scale(&a, 2.0)?;
            let t = add(&add(&two_a, &multiply(&a, &a)?)?, &multiply(&b, &b)?)?;
            complex(&scale(&log1p(&t)?, 0.5)?, &arctan2(&b, &add(&a, &one)?)?)?
        }
        UnaryOp::Rsqrt => divide(&one, &sqrt(z)?)?,
        // z / |z|, and 0 at 0 (NumPy 2).
        UnaryOp::Sign => {
            let r = complex_abs(z)?;
            let safe = where_(&equal(&r, &scalar(0.0)?)?, &one, &r)?;
            divide(z, &safe)?
        }
        // The principal branches, as NumPy's (C99): asin z = −i log(iz + √(1 − z²)),
        // acos z = π/2 − asin z, atan z = (i/2)(log(1 − iz) − log(1 + iz)),
        // asinh z = log(z + √(z² + 1)), acosh z = log(z + √(z + 1)·√(z − 1)),
        // atanh z = ½(log(1 + z) − log(1 − z)).
        UnaryOp::Asin => {
            let root = sqrt(&subtract(&one, &multiply(z, z)?)?)?;
            times_i(&log(&add(&times_i(z, 1.0)?, &root)?)?, -1.0)?
        }
        UnaryOp::Acos => subtract(&scalar(std::f64::consts::FRAC_PI_2)?, &arcsin(z)?)?,
        UnaryOp::Atan => {
            let iz = times_i(z, 1.0)?;
            let d = subtract(&log(&subtract(&one, &iz)?)?, &log(&add(&one, &iz)?)?)?;
            times_i(&d, 0.5)?
        }
        UnaryOp::Asinh => log(&add(z, &sqrt(&add(&multiply(z, z)?, &one)?)?)?)?,
        UnaryOp::Acosh => {
            let roots = multiply(&sqrt(&add(z, &one)?)?, &sqrt(&subtract(z, &one)?)?)?;
            log(&add(z, &roots)?)?
        }
        UnaryOp::Atanh => {
            let d = subtract(&log(&add(&one, z)?)?, &log(&subtract(&one, z)?)?)?;
            scale(&d, 0.5)?
        }
        _ => return Ok(None),
    }))
}

/// `aᵇ` for complex64: the principal value `exp(b·log a)`, with NumPy's values at a = 0 (1 for
/// b = 0, 0 for a positive real b).
pub(crate) fn complex_power(a: &Array, b: &Array) -> Result<Array> {
    let general = exp(&multiply(b, &log(a)?)?)?;
    let zero = scalar(0.0)?;
    let base_zero = equal(&complex_abs(a)?, &zero)?;
    let b_zero = equal(&complex_abs(b)?, &zero)?;
    let b_positive = logical_and(&greater(&real(b)?, &zero)?, &equal(&imag(b)?, &zero)?)?;
    let at_zero = where_(&b_zero, &scalar(1.0)?, &where_(&b_positive, &zero, &general)?)?;
    where_(&base_zero, &at_zero, &general)
}

/// A float32 scalar (promoted by the complex operations it meets).
fn scalar(v: f64) -> Result<Array> {
    full(&[], v, DType::F32)
}

/// `k·i·z`: (−k·Im z) + i (k·Re z).
fn times_i(z: &Array, k: f64) -> Result<Array> {
    complex(&scale(&imag(z)?, -k)?, &scale(&real(z)?, k)?)
}

/// The transform kinds of one axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Complex to complex; `inverse` scales by 1/n.
    C2C { inverse: bool },
    /// Real to the n/2 + 1 non-negative frequencies.
    R2C,
    /// The n/2 + 1 non-negative frequencies of a real signal of length `n` back to it.
    C2R { n: usize },
}

impl Kind {
    /// The transform's length for an input of `len` along the axis.
    fn points(self, len: usize) -> usize {
        match self {
            Kind::C2R { n } => n,
            _ => len,
        }
    }
}

/// `kind` along the last axis of `x` (already of the right length: n for `C2C`/`R2C`, n/2 + 1
/// for `C2R`).
fn last_axis(kind: Kind, x: &Array) -> Result<Array> {
    let shape = x.shape().to_vec();
    let len = *shape.last().expect("callers pass at least one axis");
    let (out_len, out_t) = match kind {
        Kind::C2C { .. } => (len, DType::C64),
        Kind::R2C => (len / 2 + 1, DType::C64),
        Kind::C2R { n } => (n, DType::F32),
    };
    let mut out_shape = shape.clone();
    *out_shape.last_mut().expect("non-empty") = out_len;
    let x = match kind {
        Kind::R2C => x.astype(DType::F32)?,
        _ => x.astype(DType::C64)?,
    };
    let outs = host_function(
        "fft",
        std::slice::from_ref(&x),
        vec![(out_shape.clone(), out_t)],
        move |args| {
            let values = complex_values(&args[0])?;
            let n = kind.points(len);
            let mut planner = FftPlanner::<f64>::new();
            let plan: Arc<dyn rustfft::Fft<f64>> = match kind {
                Kind::C2C { inverse: false } | Kind::R2C => planner.plan_fft_forward(n),
                Kind::C2C { inverse: true } | Kind::C2R { .. } => planner.plan_fft_inverse(n),
            };
            let rows = values.len().checked_div(len).unwrap_or(0);
            let mut out = Vec::with_capacity(rows * out_len);
            let mut buf = vec![Complex::new(0.0, 0.0); n];
            for row in 0..rows {
                let v = &values[row * len..(row + 1) * len];
                match kind {
                    Kind::C2R { .. } => {
                        // The Hermitian spectrum; the imaginary parts of the zero and Nyquist
                        // frequencies are ignored, as NumPy does.
                        for (k, b) in buf.iter_mut().enumerate() {
                            let mut c = if k < len { v[k] } else { v[n - k].conj() };
                            if k == 0 || 2 * k == n {
                                c.im = 0.0;
                            }
                            *b = c;
                        }
                    }
                    _ => buf.copy_from_slice(v),
                }
                if n > 0 {
                    plan.process(&mut buf);
                }
                let factor = match kind {
                    Kind::C2C { inverse: true } | Kind::C2R { .. } => 1.0 / n as f64,
                    _ => 1.0,
                };
                out.extend(buf[..out_len].iter().map(|c| c * factor));
            }
            let like = &args[0];
            let y = if out_t == DType::F32 {
                let re: Vec<f32> = out.iter().map(|c| c.re as f32).collect();
                Array::from_bytes(bytemuck::cast_slice(&re), &out_shape, DType::F32, like.device())?
            } else {
                complex_array(&out, &out_shape, like)?
            };
            Ok(vec![y])
        },
        move |_, _, g| {
            let g = &g[0];
            let n = kind.points(len) as f64;
            let dx = match kind {
                // y = F x: x̄ = Fᴴ ȳ = n·ifft(ȳ); y = ifft(x) = Fᴴx/n: x̄ = F ȳ / n.
                Kind::C2C { inverse: false } => scale(&last_axis(Kind::C2C { inverse: true }, g)?, n)?,
                Kind::C2C { inverse: true } => scale(&last_axis(Kind::C2C { inverse: false }, g)?, 1.0 / n)?,
                // The kept frequencies of F x: x̄ = Re(Fᴴ ȳ) with ȳ zero beyond them.
                Kind::R2C => {
                    let full = pad_last(g, len)?;
                    real(&scale(&last_axis(Kind::C2C { inverse: true }, &full)?, n)?)?
                }
                // x_j = (1/n) Σ_k w_k Re(y_k e^{2πijk/n}), w_k = 2 but 1 at 0 and n/2: the
                // cotangent of y_k is (w_k/n)·rfft(x̄)_k.
                Kind::C2R { n } => {
                    let f = last_axis(Kind::R2C, g)?;
                    let w: Vec<f32> =
                        (0..len).map(|k| if k == 0 || 2 * k == n { 1.0 } else { 2.0 } / n as f32).collect();
                    let f = pad_last(&f, len)?;
                    multiply(&f, &Array::from_bytes(bytemuck::cast_slice(&w), &[len], DType::F32, g.device())?)?
                }
            };
            Ok(vec![dx])
        },
    )?;
    Ok(outs.into_iter().next().expect("one output"))
}

/// `x · s` for a real scalar `s`.
fn scale(x: &Array, s: f64) -> Result<Array> {
    multiply(x, &scalar(s)?)
}

/// `x` cut or zero-padded along its last axis to `n`.
fn pad_last(x: &Array, n: usize) -> Result<Array> {
    let len = *x.shape().last().expect("at least one axis");
    if len >= n {
        return slice_axis(x, -1, 0, n as isize);
    }
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("non-empty") = n - len;
    concatenate(&[x, &zeros(&shape, x.dtype())?], -1)
}

fn axis_of(op: &'static str, x: &Array, axis: isize) -> Result<usize> {
    let nd = x.ndim() as isize;
    let a = if axis < 0 { axis + nd } else { axis };
    if x.ndim() == 0 || !(0..nd).contains(&a) {
        return Err(err(op, format!("axis {axis} is out of range for an array of shape {:?}", x.shape())));
    }
    Ok(a as usize)
}

/// One transform of `kind` along `axis` with length `n` (the input is cut or zero-padded to
/// it; for `C2R`, `n` is the output length and the input takes n/2 + 1).
fn along(op: &'static str, kind: impl Fn(usize) -> Kind, x: &Array, n: Option<usize>, axis: isize) -> Result<Array> {
    let a = axis_of(op, x, axis)?;
    let len = x.shape()[a];
    let c2r = matches!(kind(0), Kind::C2R { .. });
    let n = n.unwrap_or(if c2r { 2 * len.saturating_sub(1) } else { len });
    if n == 0 {
        return Err(err(op, format!("a transform of length 0 along axis {axis} (shape {:?})", x.shape())));
    }
    let last = moveaxis(x, a as isize, -1)?;
    let input = pad_last(&last, if c2r { n / 2 + 1 } else { n })?;
    moveaxis(&last_axis(kind(n), &input)?, -1, a as isize)
}

/// The discrete Fourier transform along `axis`, of length `n` (default: the axis's), as
/// `numpy.fft.fft`. Differentiable.
///
/// ```
/// use strata::{Array, fft};
/// let x = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[4])?;
/// let y = fft::fft(&x, None, -1)?;
/// assert_eq!(fft::real(&y)?.to_vec::<f32>()?, [10.0, -2.0, -2.0, -2.0]);
/// assert_eq!(fft::imag(&y)?.to_vec::<f32>()?, [0.0, 2.0, 0.0, -2.0]);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn fft(x: &Array, n: Option<usize>, axis: isize) -> Result<Array> {
    along("fft", |_| Kind::C2C { inverse: false }, x, n, axis)
}

/// The inverse transform along `axis` (scaled by 1/n), as `numpy.fft.ifft`.
pub fn ifft(x: &Array, n: Option<usize>, axis: isize) -> Result<Array> {
    along("ifft", |_| Kind::C2C { inverse: true }, x, n, axis)
}

/// The transform of a real signal along `axis`: its n/2 + 1 non-negative frequencies, as
/// `numpy.fft.rfft` (a complex input is taken by its real part).
pub fn rfft(x: &Array, n: Option<usize>, axis: isize) -> Result<Array> {
    along("rfft", |_| Kind::R2C, &real(x)?, n, axis)
}

/// The inverse of [`rfft`]: a real signal of length `n` (default 2·(m − 1) for m frequencies)
/// from its non-negative frequencies, as `numpy.fft.irfft`.
pub fn irfft(x: &Array, n: Option<usize>, axis: isize) -> Result<Array> {
    along("irfft", |n| Kind::C2R { n }, x, n, axis)
}

/// The axes and lengths of an n-dimensional transform: `axes` (default: the last `s.len()`, or
/// every axis) and `s` (default: their lengths).
fn plan_axes(
    op: &'static str,
    x: &Array,
    s: Option<&[usize]>,
    axes: Option<&[isize]>,
) -> Result<Vec<(isize, Option<usize>)>> {
    let axes: Vec<isize> = match (axes, s) {
        (Some(a), _) => a.to_vec(),
        (None, Some(s)) => (0..s.len()).map(|i| i as isize - s.len() as isize).collect(),
        (None, None) => (0..x.ndim() as isize).collect(),
    };
    if let Some(s) = s
        && s.len() != axes.len()
    {
        return Err(err(op, format!("{} lengths for {} axes", s.len(), axes.len())));
    }
    let mut seen = Vec::new();
    for &a in &axes {
        let a = axis_of(op, x, a)?;
        if seen.contains(&a) {
            return Err(err(op, format!("axis {a} is repeated in {axes:?}")));
        }
        seen.push(a);
    }
    Ok(axes.iter().enumerate().map(|(i, &a)| (a, s.map(|s| s[i]))).collect())
}

/// The transform over `axes` (default: all) with lengths `s`, as `numpy.fft.fftn`.
pub fn fftn(x: &Array, s: Option<&[usize]>, axes: Option<&[isize]>) -> Result<Array> {
    plan_axes("fftn", x, s, axes)?.into_iter().try_fold(x.clone(), |y, (a, n)| fft(&y, n, a))
}

/// The inverse of [`fftn`], as `numpy.fft.ifftn`.
pub fn ifftn(x: &Array, s: Option<&[usize]>, axes: Option<&[isize]>) -> Result<Array> {
    plan_axes("ifftn", x, s, axes)?.into_iter().try_fold(x.clone(), |y, (a, n)| ifft(&y, n, a))
}

/// The transform of a real signal over `axes`: [`rfft`] along the last of them, then [`fft`]
/// along the others, as `numpy.fft.rfftn`.
pub fn rfftn(x: &Array, s: Option<&[usize]>, axes: Option<&[isize]>) -> Result<Array> {
    let mut plan = plan_axes("rfftn", x, s, axes)?;
    let Some((a, n)) = plan.pop() else { return Ok(x.clone()) };
    plan.into_iter().try_fold(rfft(x, n, a)?, |y, (a, n)| fft(&y, n, a))
}

/// The inverse of [`rfftn`]: [`ifft`] along all but the last of `axes`, then [`irfft`] along it
/// (`s`'s last length, default 2·(m − 1)), as `numpy.fft.irfftn`.
pub fn irfftn(x: &Array, s: Option<&[usize]>, axes: Option<&[isize]>) -> Result<Array> {
    let mut plan = plan_axes("irfftn", x, s, axes)?;
    let Some((a, n)) = plan.pop() else { return Ok(x.clone()) };
    let y = plan.into_iter().try_fold(x.clone(), |y, (a, n)| ifft(&y, n, a))?;
    irfft(&y, n, a)
}

/// [`fftn`] over the last two axes (or `axes`).
pub fn fft2(x: &Array, s: Option<&[usize]>, axes: Option<&[isize]>) -> Result<Array> {
    fftn(x, s, Some(axes.unwrap_or(&[-2, -1])))
}

/// [`ifftn`] over the last two axes (or `axes`).
pub fn ifft2(x: &Array, s: Option<&[usize]>, axes: Option<&[isize]>) -> Result<Array> {
    ifftn(x, s, Some(axes.unwrap_or(&[-2, -1])))
}

/// [`rfftn`] over the last two axes (or `axes`).
pub fn rfft2(x: &Array, s: Option<&[usize]>, axes: Option<&[isize]>) -> Result<Array> {
    rfftn(x, s, Some(axes.unwrap_or(&[-2, -1])))
}

/// [`irfftn`] over the last two axes (or `axes`).
pub fn irfft2(x: &Array, s: Option<&[usize]>, axes: Option<&[isize]>) -> Result<Array> {
    irfftn(x, s, Some(axes.unwrap_or(&[-2, -1])))
}

fn shift(op: &'static str, x: &Array, axes: Option<&[isize]>, inverse: bool) -> Result<Array> {
    let axes: Vec<isize> = axes.map_or_else(|| (0..x.ndim() as isize).collect(), <[isize]>::to_vec);
    axes.iter().try_fold(x.clone(), |y, &a| {
        let n = y.shape()[axis_of(op, &y, a)?] as isize;
        roll(&y, if inverse { -(n / 2) } else { n / 2 }, a)
    })
}

/// The zero frequency moved to the middle of `axes` (default: all), as `numpy.fft.fftshift`.
pub fn fftshift(x: &Array, axes: Option<&[isize]>) -> Result<Array> {
    shift("fftshift", x, axes, false)
}

/// The inverse of [`fftshift`], as `numpy.fft.ifftshift`.
pub fn ifftshift(x: &Array, axes: Option<&[isize]>) -> Result<Array> {
    shift("ifftshift", x, axes, true)
}

/// The frequencies of an `n`-point transform with sample spacing `d` (float32):
/// `[0, 1, …, ⌈n/2⌉ − 1, −⌊n/2⌋, …, −1] / (d·n)`, as `numpy.fft.fftfreq`.
pub fn fftfreq(n: usize, d: f64) -> Result<Array> {
    let v: Vec<f32> = (0..n)
        .map(|i| if i < n.div_ceil(2) { i as f64 } else { i as f64 - n as f64 } / (d * n as f64))
        .map(|f| f as f32)
        .collect();
    Array::from_slice(&v, &[n])
}

/// The non-negative frequencies of an `n`-point [`rfft`]: `[0, 1, …, ⌊n/2⌋] / (d·n)`, as
/// `numpy.fft.rfftfreq`.
pub fn rfftfreq(n: usize, d: f64) -> Result<Array> {
    let v: Vec<f32> = (0..=n / 2).map(|i| (i as f64 / (d * n as f64)) as f32).collect();
    Array::from_slice(&v, &[n / 2 + 1])
}

//! Linear algebra, as `numpy.linalg` / `mlx.core.linalg`: factorizations and solvers over the
//! last two axes (leading axes are a batch).
//!
//! The factorizations run on the host in float64 (float32 inputs come back as float32), as
//! MLX runs its linalg on the CPU: LU with partial pivoting (`solve`, `inv`, `det`, `slogdet`,
//! `lu`, `lu_factor`), Cholesky, triangular solves, Householder QR, cyclic Jacobi for `eigh`,
//! one-sided Jacobi for `svd`, the complex Schur form (Hessenberg reduction, shifted QR) for
//! `eig`/`eigvals`. Each is one host function in the graph with a reverse-mode rule
//! written in array ops (so gradients run on the device and compose); forward mode is the
//! reverse rule transposed (the rule is linear in the cotangents). `eig` has no rule yet.
//! `norm`, `cross` and `pinv` are compositions of other ops.

use strata_core::{DType, Error, Result};

use crate::custom::host_function;
use crate::graph::Array;
use crate::ops::*;

fn err(op: &'static str, message: String) -> Error {
    Error::InvalidArgument { op, message }
}

/// A batch of row-major matrices in float64.
struct Mats {
    batch: Vec<usize>,
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl Mats {
    fn of(op: &'static str, a: &Array) -> Result<Mats> {
        if a.ndim() < 2 {
            return Err(err(op, format!("needs matrices [..., m, n]; got shape {:?}", a.shape())));
        }
        let (b, rc) = a.shape().split_at(a.ndim() - 2);
        Ok(Mats { batch: b.to_vec(), rows: rc[0], cols: rc[1], data: a.to_vec::<f64>()? })
    }
    fn count(&self) -> usize {
        self.batch.iter().product()
    }
    fn mat(&self, i: usize) -> &[f64] {
        let n = self.rows * self.cols;
        &self.data[i * n..(i + 1) * n]
    }
}

/// An array of `dtype` on `like`'s device from float64 values.
fn out(values: Vec<f64>, shape: &[usize], dtype: DType, like: &Array) -> Result<Array> {
    let a = Array::from_bytes(bytemuck::cast_slice::<f64, u8>(&values), shape, DType::F64, like.device())?;
    a.astype(dtype)
}

fn float_type(op: &'static str, a: &Array) -> Result<DType> {
    match a.dtype() {
        DType::F32 | DType::F64 => Ok(a.dtype()),
        DType::F16 | DType::BF16 => Ok(DType::F32),
        t if t.is_integer() || t == DType::Bool => Ok(DType::F32),
        t => Err(Error::UnsupportedDType { op, dtype: t, expected: "a real number type" }),
    }
}

fn square_size(op: &'static str, a: &Array) -> Result<usize> {
    let s = a.shape();
    if a.ndim() < 2 || s[a.ndim() - 1] != s[a.ndim() - 2] {
        return Err(err(op, format!("needs square matrices [..., n, n]; got shape {s:?}")));
    }
    Ok(s[a.ndim() - 1])
}

fn mt(a: &Array) -> Result<Array> {
    swapaxes(a, -1, -2)
}

// ---- host algorithms (one matrix, row-major, float64) ------------------------------------

/// LU with partial pivoting in place: returns the row permutation and its sign, or the column
/// where a pivot is exactly zero.
fn lu_in_place(a: &mut [f64], n: usize) -> (Vec<usize>, f64, Option<usize>) {
    let mut perm: Vec<usize> = (0..n).collect();
    let (mut sign, mut singular) = (1.0, None);
    for k in 0..n {
        // The first of equal pivots, as LAPACK's idamax (so ties factor as NumPy and MLX do).
        let p = (k..n).fold(k, |best, i| if a[i * n + k].abs() > a[best * n + k].abs() { i } else { best });
        if a[p * n + k] == 0.0 {
            singular.get_or_insert(k);
            continue;
        }
        if p != k {
            for j in 0..n {
                a.swap(k * n + j, p * n + j);
            }
            perm.swap(k, p);
            sign = -sign;
        }
        for i in k + 1..n {
            let f = a[i * n + k] / a[k * n + k];
            a[i * n + k] = f;
            for j in k + 1..n {
                a[i * n + j] -= f * a[k * n + j];
            }
        }
    }
    (perm, sign, singular)
}

/// Solves `LU x = P b` for the `m` columns of `b` (`n × m`, row-major), in place.
fn lu_solve(lu: &[f64], perm: &[usize], n: usize, b: &mut [f64], m: usize) {
    let pb: Vec<f64> = perm.iter().flat_map(|&p| b[p * m..(p + 1) * m].to_vec()).collect();
    b.copy_from_slice(&pb);
    for c in 0..m {
        for i in 0..n {
            let s: f64 = (0..i).map(|j| lu[i * n + j] * b[j * m + c]).sum();
            b[i * m + c] -= s;
        }
        for i in (0..n).rev() {
            let s: f64 = (i + 1..n).map(|j| lu[i * n + j] * b[j * m + c]).sum();
            b[i * m + c] = (b[i * m + c] - s) / lu[i * n + i];
        }
    }
}

/// Cyclic Jacobi on a symmetric matrix: eigenvalues ascending and the eigenvectors as columns.
fn jacobi_eigh(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j].powi(2))
            .sum();
        let total: f64 = a.iter().map(|x| x * x).sum();
        if off <= 1e-30 * total.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let (c, s) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| a[i * n + i].total_cmp(&a[j * n + j]));
    let w = order.iter().map(|&i| a[i * n + i]).collect();
    let mut vs = vec![0.0; n * n];
    for (c, &o) in order.iter().enumerate() {
        for r in 0..n {
            vs[r * n + c] = v[r * n + o];
        }
    }
    (w, vs)
}

/// One-sided Jacobi SVD of an `m × n` matrix with `m ≥ n`: `U` (`m × n`), `S` (descending) and
/// `V` (`n × n`, columns the right singular vectors).
fn jacobi_svd(a: &[f64], m: usize, n: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut u = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let mut rotated = false;
        for p in 0..n {
            for q in p + 1..n {
                let (mut alpha, mut beta, mut gamma) = (0.0, 0.0, 0.0);
                for k in 0..m {
                    let (up, uq) = (u[k * n + p], u[k * n + q]);
                    alpha += up * up;
                    beta += uq * uq;
                    gamma += up * uq;
                }
                if gamma.abs() <= 1e-15 * (alpha * beta).sqrt() || gamma == 0.0 {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let t = if zeta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                for k in 0..m {
                    let (up, uq) = (u[k * n + p], u[k * n + q]);
                    u[k * n + p] = c * up - s * uq;
                    u[k * n + q] = s * up + c * uq;
                }
                for k in 0..n {
                    let (vp, vq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vp - s * vq;
                    v[k * n + q] = s * vp + c * vq;
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let norms: Vec<f64> = (0..n).map(|j| (0..m).map(|k| u[k * n + j].powi(2)).sum::<f64>().sqrt()).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| norms[j].total_cmp(&norms[i]));
    let (mut uo, mut vo) = (vec![0.0; m * n], vec![0.0; n * n]);
    for (c, &o) in order.iter().enumerate() {
        for k in 0..m {
            uo[k * n + c] = if norms[o] > 0.0 { u[k * n + o] / norms[o] } else { 0.0 };
        }
        for k in 0..n {
            vo[k * n + c] = v[k * n + o];
        }
    }
    (uo, order.iter().map(|&o| norms[o]).collect(), vo)
}

// ---- public functions --------------------------------------------------------------------

/// `x` with `A x = b` for square `a [..., n, n]` and `b [..., n, k]` (or `[..., n]`); a
/// singular matrix is an `Err`.
///
/// ```
/// let a = strata::Array::from_slice(&[2.0f32, 1.0, 1.0, 3.0], &[2, 2])?;
/// let b = strata::Array::from_slice(&[3.0f32, 5.0], &[2])?;
/// let x = strata::linalg::solve(&a, &b)?.to_vec::<f32>()?;
/// assert!((x[0] - 0.8).abs() < 1e-6 && (x[1] - 1.4).abs() < 1e-6);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn solve(a: &Array, b: &Array) -> Result<Array> {
    let n = square_size("solve", a)?;
    let vector = b.ndim() == a.ndim() - 1;
    let b2 = if vector { expand_dims(b, -1)? } else { b.clone() };
    if b2.ndim() != a.ndim()
        || b2.shape()[b2.ndim() - 2] != n
        || b2.shape()[..b2.ndim() - 2] != a.shape()[..a.ndim() - 2]
    {
        return Err(err(
            "solve",
            format!("a {:?} and b {:?} do not fit (b needs [..., {n}, k] or [..., {n}])", a.shape(), b.shape()),
        ));
    }
    let t = result_type(float_type("solve", a)?, float_type("solve", b)?);
    let (a, b2) = (a.astype(t)?, b2.astype(t)?);
    let shape = b2.shape().to_vec();
    let x = host_function(
        "solve",
        &[a, b2],
        vec![(shape.clone(), t)],
        move |args| {
            let (am, bm) = (Mats::of("solve", &args[0])?, Mats::of("solve", &args[1])?);
            let k = bm.cols;
            let mut xs = Vec::with_capacity(bm.data.len());
            for i in 0..am.count() {
                let mut l = am.mat(i).to_vec();
                let (perm, _, singular) = lu_in_place(&mut l, n);
                if let Some(c) = singular {
                    return Err(err("solve", format!("matrix {i} of the batch is singular (no pivot in column {c})")));
                }
                let mut x = bm.mat(i).to_vec();
                lu_solve(&l, &perm, n, &mut x, k);
                xs.extend(x);
            }
            Ok(vec![out(xs, args[1].shape(), t, &args[0])?])
        },
        |args, outs, g| {
            // dB = A⁻ᵀ G, dA = −dB Xᵀ.
            let db = solve(&mt(&args[0])?, &g[0])?;
            let da = negative(&matmul(&db, &mt(&outs[0])?)?)?;
            Ok(vec![da, db])
        },
    )?;
    let x = x.into_iter().next().expect("one output");
    if vector { squeeze(&x, Some(&[-1])) } else { Ok(x) }
}

/// The inverse of square matrices; a singular one is an `Err`.
pub fn inv(a: &Array) -> Result<Array> {
    let n = square_size("inv", a)?;
    let eye = crate::array::identity(n, float_type("inv", a)?)?;
    let batch: Vec<usize> = a.shape()[..a.ndim() - 2].to_vec();
    solve(a, &broadcast_to(&eye, &[&batch[..], &[n, n]].concat())?)
}

/// `(sign, log|det|)` of square matrices (sign 0 and log −∞ where singular).
pub fn slogdet(a: &Array) -> Result<(Array, Array)> {
    let n = square_size("slogdet", a)?;
    let t = float_type("slogdet", a)?;
    let a = a.astype(t)?;
    let batch: Vec<usize> = a.shape()[..a.ndim() - 2].to_vec();
    let outs = host_function(
        "slogdet",
        std::slice::from_ref(&a),
        vec![(batch.clone(), t), (batch.clone(), t)],
        move |args| {
            let am = Mats::of("slogdet", &args[0])?;
            let (mut signs, mut logs) = (Vec::new(), Vec::new());
            for i in 0..am.count() {
                let mut l = am.mat(i).to_vec();
                let (_, mut sign, singular) = lu_in_place(&mut l, n);
                if singular.is_some() {
                    signs.push(0.0);
                    logs.push(f64::NEG_INFINITY);
                    continue;
                }
                let mut log = 0.0;
                for k in 0..n {
                    let d = l[k * n + k];
                    sign *= d.signum();
                    log += d.abs().ln();
                }
                signs.push(sign);
                logs.push(log);
            }
            Ok(vec![out(signs, &am.batch, t, &args[0])?, out(logs, &am.batch, t, &args[0])?])
        },
        |args, _outs, g| {
            // d log|det A| = tr(A⁻¹ dA): the cotangent is g · A⁻ᵀ (the sign has none).
            let ginv = mt(&inv(&args[0])?)?;
            Ok(vec![multiply(&expand_dims(&expand_dims(&g[1], -1)?, -1)?, &ginv)?])
        },
    )?;
    let mut it = outs.into_iter();
    Ok((it.next().expect("sign"), it.next().expect("log")))
}

/// The determinant of square matrices.
pub fn det(a: &Array) -> Result<Array> {
    let (s, l) = slogdet(a)?;
    multiply(&s, &exp(&l)?)
}

/// The LU factorization with partial pivoting as MLX's `linalg.lu_factor` (and SciPy's): the
/// factors in one matrix (`L` below the diagonal, its unit diagonal implied, `U` on and
/// above) and the pivots as `uint32` row swaps (row `k` was swapped with row `pivots[k]`, in
/// order). Singular matrices factor too (a zero pivot column is left as it is).
/// Differentiable where `A` is not singular (through the factors; the pivots are constant).
pub fn lu_factor(a: &Array) -> Result<(Array, Array)> {
    let (factors, _, swaps) = lu_parts("lu_factor", a)?;
    Ok((factors, swaps))
}

/// `(p, L, U)` with `A = L[p, :] @ U` per matrix (MLX's `linalg.lu`: `p` a `uint32` row
/// index, `L` unit lower triangular, `U` upper triangular).
///
/// ```
/// # use strata::{Array, linalg};
/// let a = Array::from_slice(&[0.0f32, 2.0, 1.0, 1.0], &[2, 2])?;
/// let (p, l, u) = linalg::lu(&a)?;
/// let back = strata::take(&l, &p, Some(0))?.matmul(&u)?;
/// assert_eq!(back.to_vec::<f32>()?, [0.0, 2.0, 1.0, 1.0]);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn lu(a: &Array) -> Result<(Array, Array, Array)> {
    let (factors, rows, _) = lu_parts("lu", a)?;
    let n = factors.shape()[factors.ndim() - 1];
    let t = factors.dtype();
    let eye = crate::array::identity(n, t)?;
    let lower = add(&multiply(&factors, &crate::array::tri(n, n, -1, t)?)?, &eye)?;
    let upper = multiply(&factors, &mt(&crate::array::tri(n, n, 0, t)?)?)?;
    Ok((rows, lower, upper))
}

/// The packed factors, the row index `p` (`A = L[p] U`) and the LAPACK-style swaps, as
/// `uint32`.
fn lu_parts(op: &'static str, a: &Array) -> Result<(Array, Array, Array)> {
    let n = square_size(op, a)?;
    let t = float_type(op, a)?;
    let a = a.astype(t)?;
    let shape = a.shape().to_vec();
    let batch: Vec<usize> = shape[..shape.len() - 2].to_vec();
    let index_shape = [&batch[..], &[n]].concat();
    let outs = host_function(
        op,
        std::slice::from_ref(&a),
        vec![(shape.clone(), t), (index_shape.clone(), DType::U32), (index_shape.clone(), DType::U32)],
        move |args| {
            let am = Mats::of(op, &args[0])?;
            let (mut factors, mut rows, mut swaps) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..am.count() {
                let mut l = am.mat(i).to_vec();
                let (perm, _, _) = lu_in_place(&mut l, n);
                // perm[i] is the row of A that ended at row i; p is its inverse.
                let mut p = vec![0.0; n];
                for (i, &r) in perm.iter().enumerate() {
                    p[r] = i as f64;
                }
                // The swaps that build perm from the identity, one per step.
                let mut current: Vec<usize> = (0..n).collect();
                let mut at: Vec<usize> = (0..n).collect();
                for k in 0..n {
                    let j = at[perm[k]];
                    swaps.push(j as f64);
                    current.swap(k, j);
                    at[current[k]] = k;
                    at[current[j]] = j;
                }
                factors.extend(l);
                rows.extend(p);
            }
            Ok(vec![
                out(factors, args[0].shape(), t, &args[0])?,
                out(rows, &[&am.batch[..], &[n]].concat(), DType::U32, &args[0])?,
                out(swaps, &[&am.batch[..], &[n]].concat(), DType::U32, &args[0])?,
            ])
        },
        move |_, outs, g| {
            // With L U = A[perm] (L unit lower, U upper, packed in F) and X = L⁻¹ dA[perm] U⁻¹:
            // dL = L tril(X, −1), dU = triu(X) U, so A̅[perm] = L⁻ᵀ (tril(Lᵀ L̅, −1) + triu(U̅ Uᵀ)) U⁻ᵀ
            // with L̅ = tril(F̅, −1), U̅ = triu(F̅); row p[r] of that is row r of A̅.
            let (f, rows) = (&outs[0], &outs[1]);
            let strict = crate::array::tri(n, n, -1, t)?;
            let upper_mask = mt(&crate::array::tri(n, n, 0, t)?)?;
            let l = add(&multiply(f, &strict)?, &crate::array::identity(n, t)?)?;
            let u = multiply(f, &upper_mask)?;
            let (lbar, ubar) = (multiply(&g[0], &strict)?, multiply(&g[0], &upper_mask)?);
            let m = add(
                &multiply(&matmul(&mt(&l)?, &lbar)?, &strict)?,
                &multiply(&matmul(&ubar, &mt(&u)?)?, &upper_mask)?,
            )?;
            let y = solve_triangular(&mt(&l)?, &m, false)?;
            let permuted = mt(&solve_triangular(&u, &mt(&y)?, false)?)?;
            Ok(vec![take_along_axis(&permuted, &broadcast_to(&expand_dims(rows, -1)?, f.shape())?, -2)?])
        },
    )?;
    let mut it = outs.into_iter();
    Ok((it.next().expect("factors"), it.next().expect("rows"), it.next().expect("swaps")))
}

/// The inverse of `A` from its Cholesky factor (`A = L Lᵀ`, or `A = Uᵀ U` with `upper`):
/// `A⁻¹ = L⁻ᵀ L⁻¹` (MLX's `linalg.cholesky_inv`). Differentiable.
pub fn cholesky_inv(factor: &Array, upper: bool) -> Result<Array> {
    let n = square_size("cholesky_inv", factor)?;
    let l = if upper { mt(factor)? } else { factor.clone() };
    let t = float_type("cholesky_inv", &l)?;
    let batch: Vec<usize> = l.shape()[..l.ndim() - 2].to_vec();
    let eye = broadcast_to(&crate::array::identity(n, t)?, &[&batch[..], &[n, n]].concat())?;
    let linv = solve_triangular(&l, &eye, true)?;
    matmul(&mt(&linv)?, &linv)
}

/// The lower Cholesky factor `L` (`A = L Lᵀ`) of symmetric positive-definite matrices; a
/// matrix that is not positive definite is an `Err`.
pub fn cholesky(a: &Array) -> Result<Array> {
    let n = square_size("cholesky", a)?;
    let t = float_type("cholesky", a)?;
    let a = a.astype(t)?;
    let shape = a.shape().to_vec();
    let l = host_function(
        "cholesky",
        std::slice::from_ref(&a),
        vec![(shape.clone(), t)],
        move |args| {
            let am = Mats::of("cholesky", &args[0])?;
            let mut ls = Vec::with_capacity(am.data.len());
            for b in 0..am.count() {
                let a = am.mat(b);
                let mut l = vec![0.0; n * n];
                for j in 0..n {
                    let d = a[j * n + j] - (0..j).map(|k| l[j * n + k] * l[j * n + k]).sum::<f64>();
                    if d <= 0.0 || d.is_nan() {
                        return Err(err(
                            "cholesky",
                            format!("matrix {b} of the batch is not positive definite (pivot {j} is {d})"),
                        ));
                    }
                    l[j * n + j] = d.sqrt();
                    for i in j + 1..n {
                        let s = a[i * n + j] - (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum::<f64>();
                        l[i * n + j] = s / l[j * n + j];
                    }
                }
                ls.extend(l);
            }
            Ok(vec![out(ls, args[0].shape(), t, &args[0])?])
        },
        move |_args, outs, g| {
            // Φ(Lᵀ Ḡ) (lower triangle, diagonal halved), then A̅ = sym(L⁻ᵀ Φ L⁻¹).
            let l = &outs[0];
            let lt = crate::array::tri(n, n, 0, l.dtype())?;
            let half = subtract(&lt, &multiply(&crate::array::identity(n, l.dtype())?, &weak_scalar(l, 0.5))?)?;
            let phi = multiply(&matmul(&mt(l)?, &g[0])?, &half)?;
            let linv = inv(l)?;
            let x = matmul(&matmul(&mt(&linv)?, &phi)?, &linv)?;
            let sym = multiply(&add(&x, &mt(&x)?)?, &weak_scalar(&x, 0.5))?;
            // Only the lower triangle of A is read: the upper part's share folds onto it.
            let strict = crate::array::tri(n, n, -1, l.dtype())?;
            Ok(vec![multiply(&sym, &add(&lt, &strict)?)?])
        },
    )?;
    Ok(l.into_iter().next().expect("one output"))
}

/// `x` with `T x = b` for triangular `t` (`lower` or upper), by `solve` (the triangle is
/// taken from `t`, the rest ignored).
pub fn solve_triangular(t: &Array, b: &Array, lower: bool) -> Result<Array> {
    let n = square_size("solve_triangular", t)?;
    let mask = crate::array::tri(n, n, 0, float_type("solve_triangular", t)?)?;
    let mask = if lower { mask } else { mt(&mask)? };
    solve(&multiply(t, &mask)?, b)
}

/// Eigenvalues (ascending) and eigenvectors (columns) of symmetric matrices; only the lower
/// triangle is read, as NumPy's `eigh(UPLO="L")`.
///
/// ```
/// let a = strata::Array::from_slice(&[2.0f64, 1.0, 1.0, 2.0], &[2, 2])?;
/// let (w, _v) = strata::linalg::eigh(&a)?;
/// let w = w.to_vec::<f64>()?;
/// assert!((w[0] - 1.0).abs() < 1e-12 && (w[1] - 3.0).abs() < 1e-12);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn eigh(a: &Array) -> Result<(Array, Array)> {
    let n = square_size("eigh", a)?;
    let t = float_type("eigh", a)?;
    let a = a.astype(t)?;
    let batch: Vec<usize> = a.shape()[..a.ndim() - 2].to_vec();
    let shape = a.shape().to_vec();
    let outs = host_function(
        "eigh",
        std::slice::from_ref(&a),
        vec![([&batch[..], &[n]].concat(), t), (shape.clone(), t)],
        move |args| {
            let am = Mats::of("eigh", &args[0])?;
            let (mut ws, mut vs) = (Vec::new(), Vec::new());
            for b in 0..am.count() {
                let m = am.mat(b);
                let sym: Vec<f64> =
                    (0..n * n).map(|k| if k / n >= k % n { m[k] } else { m[(k % n) * n + k / n] }).collect();
                let (w, v) = jacobi_eigh(&sym, n);
                ws.extend(w);
                vs.extend(v);
            }
            let wshape = [&am.batch[..], &[n]].concat();
            Ok(vec![out(ws, &wshape, t, &args[0])?, out(vs, args[0].shape(), t, &args[0])?])
        },
        move |_args, outs, g| {
            // A̅ = V (diag(w̄) + F ∘ (Vᵀ V̄)) Vᵀ with F_ij = 1/(w_j − w_i) off the diagonal;
            // then the lower triangle is what was read (the upper mirrored into it).
            let (w, v) = (&outs[0], &outs[1]);
            let diff = subtract(&expand_dims(w, -2)?, &expand_dims(w, -1)?)?; // w_j − w_i
            let eye = crate::array::identity(n, w.dtype())?;
            let f = where_(
                &equal(&eye, &weak_scalar(&eye, 1.0))?,
                &crate::array::zeros_like(&diff)?,
                &reciprocal(&add(&diff, &eye)?)?,
            )?;
            let inner = add(&multiply(&expand_dims(&g[0], -1)?, &eye)?, &multiply(&f, &matmul(&mt(v)?, &g[1])?)?)?;
            let full = matmul(&matmul(v, &inner)?, &mt(v)?)?;
            let sym = multiply(&add(&full, &mt(&full)?)?, &weak_scalar(&full, 0.5))?;
            // Only the lower triangle of A is read: fold the upper part's share onto it.
            let lower = crate::array::tri(n, n, 0, w.dtype())?;
            let strict = crate::array::tri(n, n, -1, w.dtype())?;
            Ok(vec![multiply(&sym, &add(&lower, &strict)?)?])
        },
    )?;
    let mut it = outs.into_iter();
    Ok((it.next().expect("w"), it.next().expect("v")))
}

/// The eigenvalues of symmetric matrices, ascending.
pub fn eigvalsh(a: &Array) -> Result<Array> {
    Ok(eigh(a)?.0)
}

/// The reduced QR factorization `A = Q R` (`Q [..., m, k]` with orthonormal columns, `R [...,
/// k, n]` upper triangular, `k = min(m, n)`), by Householder reflections. Differentiable for
/// full-rank matrices of any shape (for wide ones, `m < n`, through the leading square block).
pub fn qr(a: &Array) -> Result<(Array, Array)> {
    let (a, t, m, n, batch) = matrices("qr", a)?;
    let k = m.min(n);
    let outs = host_function(
        "qr",
        std::slice::from_ref(&a),
        vec![([&batch[..], &[m, k]].concat(), t), ([&batch[..], &[k, n]].concat(), t)],
        move |args| {
            let am = Mats::of("qr", &args[0])?;
            let (mut qs, mut rs) = (Vec::new(), Vec::new());
            for b in 0..am.count() {
                let mut r = am.mat(b).to_vec();
                let mut q = vec![0.0; m * m];
                for i in 0..m {
                    q[i * m + i] = 1.0;
                }
                for j in 0..k {
                    let norm = (j..m).map(|i| r[i * n + j].powi(2)).sum::<f64>().sqrt();
                    if norm == 0.0 {
                        continue;
                    }
                    let alpha = if r[j * n + j] > 0.0 { -norm } else { norm };
                    let mut v: Vec<f64> = (j..m).map(|i| r[i * n + j]).collect();
                    v[0] -= alpha;
                    let vn: f64 = v.iter().map(|x| x * x).sum();
                    if vn == 0.0 {
                        continue;
                    }
                    for c in 0..n {
                        let d: f64 = (j..m).map(|i| v[i - j] * r[i * n + c]).sum::<f64>() * 2.0 / vn;
                        for i in j..m {
                            r[i * n + c] -= d * v[i - j];
                        }
                    }
                    for row in 0..m {
                        let d: f64 = (j..m).map(|i| q[row * m + i] * v[i - j]).sum::<f64>() * 2.0 / vn;
                        for i in j..m {
                            q[row * m + i] -= d * v[i - j];
                        }
                    }
                }
                // Signs as LAPACK leaves them are arbitrary; make R's diagonal non-negative.
                for j in 0..k {
                    if r[j * n + j] < 0.0 {
                        for c in 0..n {
                            r[j * n + c] = -r[j * n + c];
                        }
                        for row in 0..m {
                            q[row * m + j] = -q[row * m + j];
                        }
                    }
                }
                qs.extend((0..m).flat_map(|i| q[i * m..i * m + k].to_vec()));
                for i in 0..k {
                    rs.extend((0..n).map(|c| if c >= i { r[i * n + c] } else { 0.0 }));
                }
            }
            Ok(vec![
                out(qs, &[&am.batch[..], &[m, k]].concat(), t, &args[0])?,
                out(rs, &[&am.batch[..], &[k, n]].concat(), t, &args[0])?,
            ])
        },
        move |_, outs, g| {
            // The transpose of the forward-mode rule (JAX's qr_jvp_rule, m ≥ n): with
            // B = QᵀQ̄ − R̄Rᵀ and G = tril(B − Bᵀ, −1) − B, Ā = (Q̄ + Q G) R⁻ᵀ.
            let tall = |q: &Array, r: &Array, qbar: &Array, rbar: &Array| -> Result<Array> {
                let b = subtract(&matmul(&mt(q)?, qbar)?, &matmul(rbar, &mt(r)?)?)?;
                let strict = crate::array::tri(k, k, -1, b.dtype())?;
                let gm = subtract(&multiply(&subtract(&b, &mt(&b)?)?, &strict)?, &b)?;
                let x = add(qbar, &matmul(q, &gm)?)?;
                mt(&solve_triangular(r, &mt(&x)?, false)?)
            };
            let (q, r) = (&outs[0], &outs[1]);
            if m >= n {
                return Ok(vec![tall(q, r, &g[0], &g[1])?]);
            }
            // Wide: A = [X | Y] with X = Q R_X square and Y = Q R_Y, so Y's share reaches Q:
            // X̄ is the square rule with Q̄ + Y R̄_Yᵀ, and Ȳ = Q R̄_Y.
            let (rx, ry) = (slice_axis(r, -1, 0, m as isize)?, slice_axis(r, -1, m as isize, n as isize)?);
            let (rbx, rby) = (slice_axis(&g[1], -1, 0, m as isize)?, slice_axis(&g[1], -1, m as isize, n as isize)?);
            let y = matmul(q, &ry)?;
            let xbar = tall(q, &rx, &add(&g[0], &matmul(&y, &mt(&rby)?)?)?, &rbx)?;
            concatenate(&[&xbar, &matmul(q, &rby)?], -1).map(|a| vec![a])
        },
    )?;
    let mut it = outs.into_iter();
    Ok((it.next().expect("q"), it.next().expect("r")))
}

/// `U`, `S`, `Vᵀ` of every matrix of `args[0]` (`k = min(m, n)`), on the host.
fn svd_forward(args: &[Array], m: usize, n: usize, t: DType) -> Result<Vec<Array>> {
    let k = m.min(n);
    let am = Mats::of("svd", &args[0])?;
    let (mut us, mut ss, mut vts) = (Vec::new(), Vec::new(), Vec::new());
    for b in 0..am.count() {
        let x = am.mat(b);
        if m >= n {
            let (u, s, v) = jacobi_svd(x, m, n);
            us.extend(u);
            ss.extend(s);
            vts.extend((0..n).flat_map(|i| (0..n).map(|j| v[j * n + i]).collect::<Vec<_>>()));
        } else {
            // Aᵀ = V S Uᵀ.
            let xt: Vec<f64> = (0..n * m).map(|p| x[(p % m) * n + p / m]).collect();
            let (v, s, u) = jacobi_svd(&xt, n, m);
            us.extend(u);
            ss.extend(s);
            vts.extend((0..m).flat_map(|i| (0..n).map(|j| v[j * m + i]).collect::<Vec<_>>()));
        }
    }
    let b = &am.batch;
    Ok(vec![
        out(us, &[&b[..], &[m, k]].concat(), t, &args[0])?,
        out(ss, &[&b[..], &[k]].concat(), t, &args[0])?,
        out(vts, &[&b[..], &[k, n]].concat(), t, &args[0])?,
    ])
}

/// `a` as a float type with its matrix sizes, or an error.
fn matrices(op: &'static str, a: &Array) -> Result<(Array, DType, usize, usize, Vec<usize>)> {
    let t = float_type(op, a)?;
    if a.ndim() < 2 {
        return Err(err(op, format!("needs matrices [..., m, n]; got shape {:?}", a.shape())));
    }
    let (m, n) = (a.shape()[a.ndim() - 2], a.shape()[a.ndim() - 1]);
    Ok((a.astype(t)?, t, m, n, a.shape()[..a.ndim() - 2].to_vec()))
}

/// The reduced singular value decomposition `A = U diag(S) Vᵀ` (`U [..., m, k]`, `S [...,
/// k]` descending, `Vt [..., k, n]`, `k = min(m, n)`), by one-sided Jacobi. Differentiable
/// where the singular values are distinct and nonzero (the vectors' derivative divides by
/// their gaps and by the values; singular vectors are defined up to sign, so a loss should
/// not depend on it).
pub fn svd(a: &Array) -> Result<(Array, Array, Array)> {
    let (a, t, m, n, batch) = matrices("svd", a)?;
    let k = m.min(n);
    let shapes = vec![
        ([&batch[..], &[m, k]].concat(), t),
        ([&batch[..], &[k]].concat(), t),
        ([&batch[..], &[k, n]].concat(), t),
    ];
    let outs = host_function(
        "svd",
        std::slice::from_ref(&a),
        shapes,
        move |args| svd_forward(args, m, n, t),
        |_, outs, g| {
            // Townsend's rule (2016), F[i, j] = 1/(s_j² − s_i²) off the diagonal:
            // Ā = U[(F∘(UᵀŪ − ŪᵀU))S + diag(S̄) + S(F∘(VᵀV̄ − V̄ᵀV))]Vᵀ
            //     + (I − UUᵀ)ŪS⁻¹Vᵀ + US⁻¹V̄ᵀ(I − VVᵀ).
            let (u, sv, vt) = (&outs[0], &outs[1], &outs[2]);
            let (v, gv) = (mt(vt)?, mt(&g[2])?);
            let k = sv.shape()[sv.ndim() - 1];
            let s2 = square(sv)?;
            let gap = subtract(&expand_dims(&s2, -2)?, &expand_dims(&s2, -1)?)?;
            let off = crate::array::eye(k, k, 0, DType::Bool)?;
            let f = where_(&off, &crate::array::zeros_like(&gap)?, &reciprocal(&gap)?)?;
            let skew = |a: &Array, da: &Array| -> Result<Array> {
                let p = matmul(&mt(a)?, da)?;
                multiply(&f, &subtract(&p, &mt(&p)?)?)
            };
            let (row, col) = (expand_dims(sv, -2)?, expand_dims(sv, -1)?);
            let inner = add(
                &add(
                    &multiply(&skew(u, &g[0])?, &row)?,
                    &multiply(&crate::array::eye(k, k, 0, sv.dtype())?, &expand_dims(&g[1], -1)?)?,
                )?,
                &multiply(&col, &skew(&v, &gv)?)?,
            )?;
            let core = matmul(&matmul(u, &inner)?, vt)?;
            let left = divide(&subtract(&g[0], &matmul(u, &matmul(&mt(u)?, &g[0])?)?)?, &row)?;
            let right = divide(&subtract(&mt(&gv)?, &matmul(&matmul(&mt(&gv)?, &v)?, vt)?)?, &col)?;
            Ok(vec![add(&add(&core, &matmul(&left, vt)?)?, &matmul(u, &right)?)?])
        },
    )?;
    let mut it = outs.into_iter();
    let (u, _, vt) = (it.next().expect("u"), it.next(), it.next().expect("vt"));
    Ok((u, svdvals(&a)?, vt))
}

/// The singular values, descending, differentiable: `A̅ = U diag(S̄) Vᵀ`.
pub fn svdvals(a: &Array) -> Result<Array> {
    let (a, t, m, n, batch) = matrices("svdvals", a)?;
    let k = m.min(n);
    let s = host_function(
        "svdvals",
        std::slice::from_ref(&a),
        vec![([&batch[..], &[k]].concat(), t)],
        move |args| Ok(vec![svd_forward(args, m, n, t)?.swap_remove(1)]),
        |args, _outs, g| {
            let (u, _, vt) = svd(&args[0])?;
            Ok(vec![matmul(&multiply(&u, &expand_dims(&g[0], -2)?)?, &vt)?])
        },
    )?;
    Ok(s.into_iter().next().expect("one output"))
}

/// The pseudo-inverse through the SVD, singular values below `rcond · max(S)` dropped.
pub fn pinv(a: &Array, rcond: f64) -> Result<Array> {
    let (u, s, vt) = svd(a)?;
    let cutoff = multiply(&max(&s, Some(&[-1]), true)?, &weak_scalar(&s, rcond))?;
    let keep = greater(&s, &cutoff)?;
    let sinv = where_(
        &keep,
        &reciprocal(&where_(&keep, &s, &crate::array::ones_like(&s)?)?)?,
        &crate::array::zeros_like(&s)?,
    )?;
    matmul(&multiply(&mt(&vt)?, &expand_dims(&sinv, -2)?)?, &mt(&u)?)
}

/// The norm of a vector (`ord`: `None` or 2 Euclidean, 1, ∞ as `f64::INFINITY`, −∞, 0 the
/// count of non-zeros, any other p) over the last axis, or with `matrix` of the last two axes
/// (`None` Frobenius, 1, −1, ∞, −∞, 2 and −2 by singular values; `nuc` through `ord = f64::NAN`).
pub fn norm(x: &Array, ord: Option<f64>, matrix: bool) -> Result<Array> {
    let t = float_type("norm", x)?;
    let x = x.astype(t)?;
    let ax = |a: isize| Some(vec![a]);
    if !matrix {
        let a = abs(&x)?;
        let axes = ax(-1);
        let axes = axes.as_deref();
        return match ord {
            None => sqrt(&sum(&square(&x)?, axes, false)?),
            Some(p) if p == f64::INFINITY => max(&a, axes, false),
            Some(p) if p == f64::NEG_INFINITY => min(&a, axes, false),
            Some(0.0) => sum(&not_equal(&x, &weak_scalar(&x, 0.0))?.astype(t)?, axes, false),
            Some(1.0) => sum(&a, axes, false),
            Some(2.0) => sqrt(&sum(&square(&x)?, axes, false)?),
            Some(p) => power(&sum(&power(&a, &weak_scalar(&a, p))?, axes, false)?, &weak_scalar(&a, 1.0 / p)),
        };
    }
    if x.ndim() < 2 {
        return Err(err("norm", format!("a matrix norm needs [..., m, n]; got shape {:?}", x.shape())));
    }
    let a = abs(&x)?;
    match ord {
        None => sqrt(&sum(&square(&x)?, Some(&[-2, -1]), false)?),
        Some(p) if p.is_nan() => sum(&svd(&x)?.1, Some(&[-1]), false),
        Some(1.0) => max(&sum(&a, Some(&[-2]), false)?, Some(&[-1]), false),
        Some(-1.0) => min(&sum(&a, Some(&[-2]), false)?, Some(&[-1]), false),
        Some(p) if p == f64::INFINITY => max(&sum(&a, Some(&[-1]), false)?, Some(&[-1]), false),
        Some(p) if p == f64::NEG_INFINITY => min(&sum(&a, Some(&[-1]), false)?, Some(&[-1]), false),
        Some(2.0) => max(&svd(&x)?.1, Some(&[-1]), false),
        Some(-2.0) => min(&svd(&x)?.1, Some(&[-1]), false),
        Some(p) => Err(err("norm", format!("matrix norm order {p} is not one of None, nuc (NaN), ±1, ±2, ±∞"))),
    }
}

/// The cross product of 3-vectors along the last axis (broadcasting the rest).
pub fn cross(a: &Array, b: &Array) -> Result<Array> {
    if a.shape().last() != Some(&3) || b.shape().last() != Some(&3) {
        return Err(err("cross", format!("needs 3-vectors on the last axis; got {:?} and {:?}", a.shape(), b.shape())));
    }
    let c = |x: &Array, i: isize| slice_axis(x, -1, i, i + 1);
    let (a0, a1, a2, b0, b1, b2) = (c(a, 0)?, c(a, 1)?, c(a, 2)?, c(b, 0)?, c(b, 1)?, c(b, 2)?);
    let x = subtract(&multiply(&a1, &b2)?, &multiply(&a2, &b1)?)?;
    let y = subtract(&multiply(&a2, &b0)?, &multiply(&a0, &b2)?)?;
    let z = subtract(&multiply(&a0, &b1)?, &multiply(&a1, &b0)?)?;
    concatenate(&[&x, &y, &z], -1)
}

// ---- general eigenproblems (complex Schur form) ------------------------------------------

type C64 = rustfft::num_complex::Complex<f64>;

/// The complex Schur form of `h` (n × n, row-major) in place, `h = Q T Qᴴ` with `T` upper
/// triangular: Householder reduction to Hessenberg form, then shifted QR steps (Wilkinson
/// shifts, Givens rotations) with deflation. Returns `Q`, or an error when an eigenvalue does
/// not converge.
fn complex_schur(h: &mut [C64], n: usize) -> std::result::Result<Vec<C64>, usize> {
    let zero = C64::new(0.0, 0.0);
    let mut q: Vec<C64> = (0..n * n).map(|k| if k / n == k % n { C64::new(1.0, 0.0) } else { zero }).collect();
    // Hessenberg: a reflector I − 2vvᴴ per column zeroes it below the subdiagonal.
    for k in 0..n.saturating_sub(2) {
        let x: Vec<C64> = (k + 1..n).map(|i| h[i * n + k]).collect();
        let norm = x.iter().map(|c| c.norm_sqr()).sum::<f64>().sqrt();
        if norm == 0.0 {
            continue;
        }
        let phase = if x[0].norm() == 0.0 { C64::new(1.0, 0.0) } else { x[0] / x[0].norm() };
        let mut v = x;
        v[0] += phase * norm;
        let vn = v.iter().map(|c| c.norm_sqr()).sum::<f64>().sqrt();
        v.iter_mut().for_each(|c| *c /= vn);
        for j in 0..n {
            let s: C64 = (0..v.len()).map(|i| v[i].conj() * h[(k + 1 + i) * n + j]).sum();
            (0..v.len()).for_each(|i| h[(k + 1 + i) * n + j] -= v[i] * s * 2.0);
        }
        for m in [&mut *h, &mut q] {
            for i in 0..n {
                let s: C64 = (0..v.len()).map(|j| m[i * n + k + 1 + j] * v[j]).sum();
                (0..v.len()).for_each(|j| m[i * n + k + 1 + j] -= s * v[j].conj() * 2.0);
            }
        }
        (k + 2..n).for_each(|i| h[i * n + k] = zero);
    }
    let (mut hi, mut iterations) = (n.saturating_sub(1), 0);
    while hi > 0 {
        // The active block is lo..=hi, below the last negligible subdiagonal entry.
        let mut lo = hi;
        while lo > 0 {
            let s = h[(lo - 1) * n + lo - 1].l1_norm() + h[lo * n + lo].l1_norm();
            if h[lo * n + lo - 1].l1_norm() <= f64::EPSILON * s.max(f64::MIN_POSITIVE) {
                h[lo * n + lo - 1] = zero;
                break;
            }
            lo -= 1;
        }
        if lo == hi {
            hi -= 1;
            iterations = 0;
            continue;
        }
        iterations += 1;
        if iterations > 60 {
            return Err(hi);
        }
        // Wilkinson's shift: the trailing 2 × 2 block's eigenvalue nearer its last entry (an
        // exceptional one every tenth step, against cycles).
        let (a, b, c, d) = (h[(hi - 1) * n + hi - 1], h[(hi - 1) * n + hi], h[hi * n + hi - 1], h[hi * n + hi]);
        let mu = if iterations % 10 == 0 {
            d + h[hi * n + hi - 1].norm()
        } else {
            let half = (a - d) * 0.5;
            let root = (half * half + b * c).sqrt();
            let (l1, l2) = (d + half + root, d + half - root);
            if (l1 - d).norm() < (l2 - d).norm() { l1 } else { l2 }
        };
        // One QR step of H − μI on the block, as rotations zeroing the subdiagonal, then RQ + μI.
        (lo..=hi).for_each(|i| h[i * n + i] -= mu);
        let mut rotations = Vec::with_capacity(hi - lo);
        for k in lo..hi {
            let (x, y) = (h[k * n + k], h[(k + 1) * n + k]);
            let r = (x.norm_sqr() + y.norm_sqr()).sqrt();
            let (cs, sn) = if r == 0.0 { (C64::new(1.0, 0.0), zero) } else { (x / r, y / r) };
            // [cs̄ sn̄; −sn cs] applied to rows k, k + 1.
            for j in k..n {
                let (p, t) = (h[k * n + j], h[(k + 1) * n + j]);
                h[k * n + j] = cs.conj() * p + sn.conj() * t;
                h[(k + 1) * n + j] = -sn * p + cs * t;
            }
            rotations.push((cs, sn));
        }
        for (k, &(cs, sn)) in (lo..hi).zip(&rotations) {
            for (m, rows) in [(&mut *h, (k + 2).min(hi) + 1), (&mut q, n)] {
                for i in 0..rows {
                    let (p, t) = (m[i * n + k], m[i * n + k + 1]);
                    m[i * n + k] = p * cs + t * sn;
                    m[i * n + k + 1] = -p * sn.conj() + t * cs.conj();
                }
            }
        }
        (lo..=hi).for_each(|i| h[i * n + i] += mu);
    }
    Ok(q)
}

/// The eigenvectors of the upper triangular `t` mapped through `q` (columns of the row-major
/// result), each of unit norm with its largest entry real and positive.
fn schur_vectors(t: &[C64], q: &[C64], n: usize) -> Vec<C64> {
    let zero = C64::new(0.0, 0.0);
    let scale = t.iter().map(|c| c.l1_norm()).fold(0.0, f64::max).max(f64::MIN_POSITIVE);
    let mut v = vec![zero; n * n];
    for k in 0..n {
        let lambda = t[k * n + k];
        let mut y = vec![zero; n];
        y[k] = C64::new(1.0, 0.0);
        for i in (0..k).rev() {
            let s: C64 = (i + 1..=k).map(|j| t[i * n + j] * y[j]).sum();
            let mut d = t[i * n + i] - lambda;
            // Equal eigenvalues: perturb the pivot, as LAPACK's trevc does.
            if d.l1_norm() < f64::EPSILON * scale {
                d = C64::new(f64::EPSILON * scale, 0.0);
            }
            y[i] = -s / d;
        }
        let mut col: Vec<C64> = (0..n).map(|i| (0..=k).map(|j| q[i * n + j] * y[j]).sum()).collect();
        let norm = col.iter().map(|c| c.norm_sqr()).sum::<f64>().sqrt();
        let big = col.iter().copied().fold(zero, |m, c| if c.norm() > m.norm() { c } else { m });
        let phase = if big.norm() == 0.0 { C64::new(1.0, 0.0) } else { big.conj() / big.norm() };
        col.iter_mut().for_each(|c| *c = *c * phase / norm);
        (0..n).for_each(|i| v[i * n + k] = col[i]);
    }
    v
}

/// Eigenvalues and right eigenvectors of general square matrices, as `numpy.linalg.eig` and
/// `mx.linalg.eig`: complex64 `w[..., n]` and `v[..., n, n]` with `A v[:, k] = w[k] v[:, k]`,
/// each column of unit norm with its largest entry real. Real or complex64 input; computed in
/// complex float64 (Hessenberg reduction, shifted QR to the Schur form, back substitution).
/// The eigenvalues come in the order the QR iteration finds them (NumPy's may differ). Not
/// differentiable (a non-normal matrix's eigenvectors have no stable derivative in general).
///
/// ```
/// use strata::{Array, linalg};
/// // A rotation by 90°: eigenvalues ±i.
/// let a = Array::from_slice(&[0.0f32, -1.0, 1.0, 0.0], &[2, 2])?;
/// let w = linalg::eigvals(&a)?;
/// let mut im = strata::imag(&w)?.to_vec::<f32>()?;
/// im.sort_by(f32::total_cmp);
/// assert!((im[0] + 1.0).abs() < 1e-6 && (im[1] - 1.0).abs() < 1e-6);
/// assert!(strata::real(&w)?.to_vec::<f32>()?.iter().all(|r| r.abs() < 1e-6));
/// # Ok::<(), strata::Error>(())
/// ```
pub fn eig(a: &Array) -> Result<(Array, Array)> {
    let mut outs = eig_outputs("eig", a, true)?.into_iter();
    Ok((outs.next().expect("w"), outs.next().expect("v")))
}

/// The eigenvalues of general square matrices (complex64), as [`eig`] without the vectors.
pub fn eigvals(a: &Array) -> Result<Array> {
    Ok(eig_outputs("eigvals", a, false)?.remove(0))
}

fn eig_outputs(op: &'static str, a: &Array, vectors: bool) -> Result<Vec<Array>> {
    let n = square_size(op, a)?;
    let a = if a.dtype() == DType::C64 { a.clone() } else { a.astype(float_type(op, a)?)? };
    let batch: Vec<usize> = a.shape()[..a.ndim() - 2].to_vec();
    let mut outputs = vec![([&batch[..], &[n]].concat(), DType::C64)];
    if vectors {
        outputs.push((a.shape().to_vec(), DType::C64));
    }
    host_function(
        op,
        std::slice::from_ref(&a),
        outputs,
        move |args| {
            let values = crate::fft::complex_values(&args[0])?;
            let (mut ws, mut vs) = (Vec::new(), Vec::new());
            for (b, m) in values.chunks((n * n).max(1)).enumerate().take(batch.iter().product()) {
                let mut t = m.to_vec();
                let q = complex_schur(&mut t, n).map_err(|k| {
                    err(op, format!("matrix {b} of the batch: eigenvalue {k} did not converge in 60 QR steps"))
                })?;
                ws.extend((0..n).map(|i| t[i * n + i]));
                if vectors {
                    vs.extend(schur_vectors(&t, &q, n));
                }
            }
            let like = &args[0];
            let mut out = vec![crate::fft::complex_array(&ws, &[&batch[..], &[n]].concat(), like)?];
            if vectors {
                out.push(crate::fft::complex_array(&vs, args[0].shape(), like)?);
            }
            Ok(out)
        },
        move |_, _, _| Err(err(op, "has no derivative (general eigenvectors have none that is stable)".into())),
    )
}

//! Linear algebra, as `numpy.linalg` / `mlx.core.linalg`: factorizations and solvers over the
//! last two axes (leading axes are a batch).
//!
//! The factorizations run on the host in float64 (float32 inputs come back as float32), as
//! MLX runs its linalg on the CPU. LU with partial pivoting (`solve`, `inv`, `det`, `slogdet`,
//! `lu`, `lu_factor`), Cholesky, QR, the symmetric eigensolver (`eigh`), the SVD and the
//! general eigensolver (`eig`/`eigvals`) are faer's blocked algorithms, with LAPACK's
//! conventions kept where faer's differ (exactly singular LU, rank-deficient QR). Each is one host function in the graph with a reverse-mode rule
//! written in array ops (so gradients run on the device and compose); forward mode is the
//! reverse rule transposed (the rule is linear in the cotangents). `eig` has no rule yet.
//! `norm`, `cross` and `pinv` are compositions of other ops.

use strata_core::{DType, Error, Result};

use faer::linalg::solvers::Solve;
use faer::{MatMut, MatRef, Side};

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
    /// `f(index, matrix)` for every matrix of the batch, in parallel (a batch of small matrices
    /// is many independent factorizations), each giving its part of `N` outputs; output `o` is
    /// the parts `o` of the batch in order. The first failure in batch order is the error.
    fn each<const N: usize>(&self, f: impl Fn(usize, &[f64]) -> Result<[Vec<f64>; N]> + Sync) -> Result<[Vec<f64>; N]> {
        use rayon::prelude::*;
        let results: Vec<Result<[Vec<f64>; N]>> =
            (0..self.count()).into_par_iter().map(|i| f(i, self.mat(i))).collect();
        let mut outputs: [Vec<f64>; N] = std::array::from_fn(|_| Vec::new());
        for parts in results {
            for (o, part) in outputs.iter_mut().zip(parts?) {
                o.extend(part);
            }
        }
        Ok(outputs)
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
//
// The factorizations are faer's (blocked, on its GEMM and our rayon pool): a row-major slice
// is a strided view for it, and results come back row-major.

fn view(a: &[f64], rows: usize, cols: usize) -> MatRef<'_, f64> {
    MatRef::from_row_major_slice(a, rows, cols)
}

fn row_major(m: MatRef<'_, f64>) -> Vec<f64> {
    let mut out = vec![0.0; m.nrows() * m.ncols()];
    MatMut::from_row_major_slice_mut(&mut out, m.nrows(), m.ncols()).copy_from(m);
    out
}

/// NaN or infinity in the matrix: iterative factorizations would not converge on it.
fn check_finite(op: &'static str, a: &[f64], b: usize) -> Result<()> {
    match a.iter().all(|x| x.is_finite()) {
        true => Ok(()),
        false => Err(err(op, format!("matrix {b} of the batch contains NaN or infinity"))),
    }
}

/// An LU factorization with partial pivoting: `L U = A[perm]` with `L` unit lower and `U`
/// upper packed in `factors` (an exactly singular matrix has a zero on the diagonal), and the
/// sign of the permutation.
struct Lu {
    factors: Vec<f64>,
    perm: Vec<usize>,
    sign: f64,
}

/// LU with partial pivoting (the first of equal pivots, as LAPACK's idamax, so ties factor as
/// NumPy and MLX do). A matrix with an exactly zero pivot goes through the unblocked loop,
/// which leaves that column as it is, as LAPACK's `getrf` does (faer would divide by it).
fn lu_host(a: &[f64], n: usize) -> Lu {
    let f = view(a, n, n).partial_piv_lu();
    let u = f.U();
    if (0..n).all(|k| u[(k, k)] != 0.0) {
        let l = f.L();
        let factors = (0..n * n).map(|p| if p % n < p / n { l[(p / n, p % n)] } else { u[(p / n, p % n)] }).collect();
        let perm = f.P().arrays().0.to_vec();
        return Lu { factors, sign: permutation_sign(&perm), perm };
    }
    let mut factors = a.to_vec();
    let mut perm: Vec<usize> = (0..n).collect();
    let mut sign = 1.0;
    for k in 0..n {
        let p = (k..n).fold(k, |best, i| if factors[i * n + k].abs() > factors[best * n + k].abs() { i } else { best });
        if factors[p * n + k] == 0.0 {
            continue;
        }
        if p != k {
            for j in 0..n {
                factors.swap(k * n + j, p * n + j);
            }
            perm.swap(k, p);
            sign = -sign;
        }
        for i in k + 1..n {
            let f = factors[i * n + k] / factors[k * n + k];
            factors[i * n + k] = f;
            for j in k + 1..n {
                factors[i * n + j] -= f * factors[k * n + j];
            }
        }
    }
    Lu { factors, perm, sign }
}

/// Householder QR one column at a time, as LAPACK's `geqrf` does it: a column with nothing
/// left below the diagonal gets no reflection and R keeps its place (faer's blocked QR instead
/// moves the next column up, so a rank-deficient matrix comes out as a staircase). The thin
/// `Q` (`m × k`) and `R` (`k × n`), row-major, `k = min(m, n)`.
fn householder_qr(a: &[f64], m: usize, n: usize) -> (Vec<f64>, Vec<f64>) {
    let k = m.min(n);
    let mut r = a.to_vec();
    let mut q = vec![0.0; m * m];
    for i in 0..m {
        q[i * m + i] = 1.0;
    }
    for j in 0..k {
        let norm = (j..m).map(|i| r[i * n + j].powi(2)).sum::<f64>().sqrt();
        let alpha = if r[j * n + j] > 0.0 { -norm } else { norm };
        let mut v: Vec<f64> = (j..m).map(|i| r[i * n + j]).collect();
        v[0] -= alpha;
        let vn: f64 = v.iter().map(|x| x * x).sum();
        if norm == 0.0 || vn == 0.0 {
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
    let thin_q = (0..m).flat_map(|i| q[i * m..i * m + k].to_vec()).collect();
    let thin_r = (0..k).flat_map(|i| (0..n).map(move |c| (i, c))).map(|(i, c)| if c >= i { r[i * n + c] } else { 0.0 });
    (thin_q, thin_r.collect())
}

fn permutation_sign(perm: &[usize]) -> f64 {
    let mut seen = vec![false; perm.len()];
    let mut sign = 1.0;
    for start in 0..perm.len() {
        let mut i = start;
        let mut len = 0;
        while !seen[i] {
            seen[i] = true;
            i = perm[i];
            len += 1;
        }
        if len % 2 == 0 && len > 0 {
            sign = -sign;
        }
    }
    sign
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
            let [xs] = am.each(|i, a| {
                let f = view(a, n, n).partial_piv_lu();
                let u = f.U();
                if let Some(c) = (0..n).find(|&c| u[(c, c)] == 0.0) {
                    return Err(err("solve", format!("matrix {i} of the batch is singular (no pivot in column {c})")));
                }
                Ok([row_major(f.solve(view(bm.mat(i), n, k)).as_ref())])
            })?;
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
            let [signs, logs] = am.each(|_, a| {
                let Lu { factors: l, mut sign, .. } = lu_host(a, n);
                if (0..n).any(|k| l[k * n + k] == 0.0) {
                    return Ok([vec![0.0], vec![f64::NEG_INFINITY]]);
                }
                let mut log = 0.0;
                for k in 0..n {
                    let d = l[k * n + k];
                    sign *= d.signum();
                    log += d.abs().ln();
                }
                Ok([vec![sign], vec![log]])
            })?;
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
            let [factors, rows, swaps] = am.each(|_, a| {
                let Lu { factors: l, perm, .. } = lu_host(a, n);
                // perm[i] is the row of A that ended at row i; p is its inverse.
                let mut p = vec![0.0; n];
                for (i, &r) in perm.iter().enumerate() {
                    p[r] = i as f64;
                }
                // The swaps that build perm from the identity, one per step.
                let mut swaps = Vec::with_capacity(n);
                let mut current: Vec<usize> = (0..n).collect();
                let mut at: Vec<usize> = (0..n).collect();
                for k in 0..n {
                    let j = at[perm[k]];
                    swaps.push(j as f64);
                    current.swap(k, j);
                    at[current[k]] = k;
                    at[current[j]] = j;
                }
                Ok([l, p, swaps])
            })?;
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
            let [ls] = am.each(|b, a| {
                check_finite("cholesky", a, b)?;
                let f = view(a, n, n).llt(Side::Lower).map_err(|e| {
                    let faer::linalg::cholesky::llt::factor::LltError::NonPositivePivot { index } = e;
                    err("cholesky", format!("matrix {b} of the batch is not positive definite (pivot {index})"))
                })?;
                Ok([row_major(f.L())])
            })?;
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
            let [ws, vs] = am.each(|b, a| {
                if n == 0 {
                    return Ok([Vec::new(), Vec::new()]); // faer's workspace sizing underflows at 0
                }
                check_finite("eigh", a, b)?;
                let e = view(a, n, n)
                    .self_adjoint_eigen(Side::Lower)
                    .map_err(|e| err("eigh", format!("matrix {b} of the batch: {e:?}")))?;
                Ok([e.S().column_vector().iter().copied().collect(), row_major(e.U())])
            })?;
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
/// k, n]` upper triangular with a non-negative diagonal, `k = min(m, n)`), by blocked
/// Householder reflections. Differentiable for
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
            let [qs, rs] = am.each(|b, a| {
                check_finite("qr", a, b)?;
                let f = view(a, m, n).qr();
                let (mut q, mut r) = (row_major(f.compute_thin_Q().as_ref()), row_major(f.thin_R()));
                if (0..k).any(|j| r[j * n + j] == 0.0) {
                    // Rank-deficient: R as LAPACK (and NumPy) give it, not faer's staircase.
                    (q, r) = householder_qr(a, m, n);
                }
                // Signs as LAPACK leaves them are arbitrary; make R's diagonal non-negative.
                for j in 0..k {
                    if r[j * n + j] < 0.0 {
                        r[j * n..(j + 1) * n].iter_mut().for_each(|x| *x = -*x);
                        (0..m).for_each(|row| q[row * k + j] = -q[row * k + j]);
                    }
                }
                Ok([q, r])
            })?;
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
    let [us, ss, vts] = am.each(|b, a| {
        check_finite("svd", a, b)?;
        let f = view(a, m, n).thin_svd().map_err(|e| err("svd", format!("matrix {b} of the batch: {e:?}")))?;
        Ok([row_major(f.U()), f.S().column_vector().iter().copied().collect(), row_major(f.V().transpose())])
    })?;
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
/// k]` descending, `Vt [..., k, n]`, `k = min(m, n)`). Differentiable
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
    if s.shape().last() == Some(&0) {
        // No singular values (an empty matrix): max(S) below has none to take, and the
        // pseudo-inverse is NumPy's empty (or zero) [..., n, m].
        return matmul(&mt(&vt)?, &mt(&u)?);
    }
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
/// count of non-zeros, any other p but NaN) over the last axis, or with `matrix` of the last two axes
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
            // NaN stands for `nuc`, which NumPy refuses for vectors too (a NaN p would give NaN).
            Some(p) if p.is_nan() => {
                Err(err("norm", "the nuclear norm (ord NaN) is a matrix norm, not a vector one".into()))
            }
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

// ---- general eigenproblems --------------------------------------------------------------

type C64 = faer::c64;

/// The eigenvectors' columns scaled as LAPACK's `geev` leaves them: unit norm, the entry of
/// largest magnitude real.
fn normalize_columns(v: MatRef<'_, C64>) -> Vec<C64> {
    let n = v.nrows();
    let mut out = vec![C64::new(0.0, 0.0); n * v.ncols()];
    for j in 0..v.ncols() {
        let col: Vec<C64> = (0..n).map(|i| v[(i, j)]).collect();
        let norm = col.iter().map(|x| x.norm_sqr()).sum::<f64>().sqrt();
        let big = col.iter().copied().fold(C64::new(0.0, 0.0), |b, x| if x.norm_sqr() > b.norm_sqr() { x } else { b });
        let scale = if norm > 0.0 && big.norm() > 0.0 { big.conj() / (big.norm() * norm) } else { C64::new(1.0, 0.0) };
        for (i, x) in col.into_iter().enumerate() {
            out[i * v.ncols() + j] = x * scale;
        }
    }
    out
}

/// Eigenvalues and right eigenvectors of general square matrices, as `numpy.linalg.eig` and
/// `mx.linalg.eig`: complex64 `w[..., n]` and `v[..., n, n]` with `A v[:, k] = w[k] v[:, k]`,
/// each column of unit norm with its largest entry real. Real or complex64 input; computed in
/// float64 (faer's Hessenberg reduction, multishift QR to the Schur form, back substitution;
/// complex only for complex input). The eigenvalues come in the order the QR iteration finds
/// them (NumPy's may differ). Not
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
            let (mut ws, mut vs) = (Vec::new(), Vec::new());
            let count: usize = batch.iter().product();
            let complex = args[0].dtype() == DType::C64;
            let (values, reals) = match complex {
                true => (crate::fft::complex_values(&args[0])?, Vec::new()),
                false => (Vec::new(), args[0].to_vec::<f64>()?),
            };
            for b in 0..count {
                let at = b * n * n..(b + 1) * n * n;
                let finite = match complex {
                    true => values[at.clone()].iter().all(|x| x.re.is_finite() && x.im.is_finite()),
                    false => reals[at.clone()].iter().all(|x| x.is_finite()),
                };
                if !finite {
                    return Err(err(op, format!("matrix {b} of the batch contains NaN or infinity")));
                }
                let e = match complex {
                    true => MatRef::from_row_major_slice(&values[at], n, n).eigen(),
                    false => view(&reals[at], n, n).eigen(),
                }
                .map_err(|e| err(op, format!("matrix {b} of the batch: {e:?}")))?;
                ws.extend(e.S().column_vector().iter().copied());
                if vectors {
                    vs.extend(normalize_columns(e.U()));
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

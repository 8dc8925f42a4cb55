//! Every differentiable primitive's vjp and jvp against central finite differences in f64,
//! on fresh random inputs; and the transforms composed.

use strata::*;

fn rand_vec(n: usize, seed: u64, lo: f64, hi: f64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ std::env::var("STRATA_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            lo + (hi - lo) * ((s >> 11) as f64 / (1u64 << 53) as f64)
        })
        .collect()
}

fn arr(v: &[f64], shape: &[usize]) -> Array {
    Array::from_slice(v, shape).unwrap()
}

type F = dyn Fn(&[Array]) -> Result<Array>;

/// Checks the vjp (through `grad` of `Σ f(x)·w` for random `w`) and the jvp of `f` against
/// central differences at `xs`.
fn check(name: &str, f: &F, xs: &[Array]) {
    check_in(name, f, xs, DType::F64, 1e-6, 1e-5);
}

/// `check` for functions computed in float32 (the transforms): finite differences with a wide
/// step, exact up to rounding for the linear maps they are, and a float32 tolerance.
fn check_f32(name: &str, f: &F, xs: &[Array]) {
    check_in(name, f, xs, DType::F32, 0.25, 2e-4);
}

/// `check` with the arguments in `dtype`, a difference step `eps` and a relative tolerance.
fn check_in(name: &str, f: &F, xs: &[Array], dtype: DType, eps: f64, tol: f64) {
    let xs: Vec<Array> = xs.iter().map(|x| x.astype(dtype).unwrap()).collect();
    let y = f(&xs).unwrap_or_else(|e| panic!("{name}: {e}"));
    let w = arr(&rand_vec(y.size(), 99, -1.0, 1.0), y.shape());
    let loss = |a: &[Array]| -> Result<Array> { (f(a)?.astype(DType::F64)? * &w).sum(None, false) };
    let grads = grad(loss, &[])(&xs).unwrap_or_else(|e| panic!("{name}: {e}"));
    for (i, x) in xs.iter().enumerate() {
        let xv = x.to_vec::<f64>().unwrap();
        let g = grads[i].to_vec::<f64>().unwrap();
        assert_eq!(grads[i].shape(), x.shape(), "{name}: gradient shape");
        let with = |v: Vec<f64>| {
            let mut args = xs.clone();
            args[i] = arr(&v, x.shape()).astype(dtype).unwrap();
            args
        };
        for j in 0..xv.len() {
            let at = |d: f64| {
                let mut v = xv.clone();
                v[j] += d;
                loss(&with(v)).unwrap().item::<f64>().unwrap()
            };
            let fd = (at(eps) - at(-eps)) / (2.0 * eps);
            assert!(
                (g[j] - fd).abs() < tol * (1.0 + fd.abs()),
                "{name}: d/dx{i}[{j}] = {} by vjp, {fd} by differences",
                g[j]
            );
        }
        // jvp along a random direction against the directional difference.
        let t = arr(&rand_vec(x.size(), 7 + i as u64, -1.0, 1.0), x.shape()).astype(dtype).unwrap();
        let mut tangents: Vec<Array> = xs.iter().map(|x| zeros_like(x).unwrap()).collect();
        tangents[i] = t.clone();
        let (_, jt) = jvp(|a| Ok(vec![f(a)?]), &xs, &tangents).unwrap_or_else(|e| panic!("{name} jvp: {e}"));
        let tv = t.to_vec::<f64>().unwrap();
        let shifted = |d: f64| {
            let v: Vec<f64> = xv.iter().zip(&tv).map(|(a, b)| a + d * b).collect();
            f(&with(v)).unwrap().to_vec::<f64>().unwrap()
        };
        let (p, m) = (shifted(eps), shifted(-eps));
        let got = jt[0].to_vec::<f64>().unwrap();
        for k in 0..p.len() {
            let fd = (p[k] - m[k]) / (2.0 * eps);
            assert!((got[k] - fd).abs() < tol * (1.0 + fd.abs()), "{name}: jvp[{k}] = {} vs {fd}", got[k]);
        }
    }
}

#[test]
fn unary_derivatives() {
    use UnaryOp::*;
    let cases: &[(UnaryOp, f64, f64)] = &[
        (Neg, -2.0, 2.0),
        (Abs, 0.1, 2.0),
        (Square, -2.0, 2.0),
        (Sqrt, 0.2, 3.0),
        (Rsqrt, 0.2, 3.0),
        (Reciprocal, 0.5, 3.0),
        (Exp, -2.0, 2.0),
        (Exp2, -2.0, 2.0),
        (Expm1, -2.0, 2.0),
        (Log, 0.2, 3.0),
        (Log2, 0.2, 3.0),
        (Log10, 0.2, 3.0),
        (Log1p, -0.5, 3.0),
        (Sin, -3.0, 3.0),
        (Cos, -3.0, 3.0),
        (Tan, -1.2, 1.2),
        (Asin, -0.9, 0.9),
        (Acos, -0.9, 0.9),
        (Atan, -3.0, 3.0),
        (Sinh, -2.0, 2.0),
        (Cosh, -2.0, 2.0),
        (Tanh, -2.0, 2.0),
        (Asinh, -3.0, 3.0),
        (Acosh, 1.2, 3.0),
        (Atanh, -0.9, 0.9),
        (Erf, -2.0, 2.0),
        (ErfInv, -0.9, 0.9),
        (Sigmoid, -3.0, 3.0),
        (Softplus, -3.0, 3.0),
        (Relu, 0.1, 2.0),
        (Gelu, -3.0, 3.0),
        (GeluTanh, -3.0, 3.0),
        (Silu, -3.0, 3.0),
    ];
    for (i, &(op, lo, hi)) in cases.iter().enumerate() {
        let x = arr(&rand_vec(7, i as u64, lo, hi), &[7]);
        check(op.name(), &move |a: &[Array]| unary(op, &a[0]), &[x]);
    }
}

#[test]
fn binary_derivatives_with_broadcasting() {
    use BinaryOp::*;
    for (i, &op) in [Add, Sub, Mul, Div, Pow, Maximum, Minimum, Atan2, LogAddExp, Remainder].iter().enumerate() {
        let a = arr(&rand_vec(6, 10 + i as u64, 0.5, 2.0), &[2, 3]);
        let b = arr(&rand_vec(3, 20 + i as u64, 0.6, 2.1), &[3]);
        check(op.name(), &move |x: &[Array]| binary(op, &x[0], &x[1]), &[a, b]);
    }
}

#[test]
fn reductions_scans_and_shapes() {
    let x = arr(&rand_vec(24, 3, -2.0, 2.0), &[2, 3, 4]);
    let cases: Vec<(&str, Box<F>)> = vec![
        ("sum", Box::new(|a| sum(&a[0], Some(&[1]), false))),
        ("sum keepdims", Box::new(|a| sum(&a[0], Some(&[0, 2]), true))),
        ("mean", Box::new(|a| mean(&a[0], Some(&[-1]), false))),
        ("var", Box::new(|a| var(&a[0], Some(&[1]), false, 1))),
        ("max", Box::new(|a| max(&a[0], Some(&[2]), false))),
        ("min", Box::new(|a| min(&a[0], None, false))),
        ("prod", Box::new(|a| prod(&a[0], Some(&[1]), false))),
        ("logsumexp", Box::new(|a| logsumexp(&a[0], Some(&[2]), false))),
        ("softmax", Box::new(|a| softmax(&a[0], Some(&[-1])))),
        ("cumsum", Box::new(|a| cumsum(&a[0], 1, false, true))),
        ("cumsum reverse exclusive", Box::new(|a| cumsum(&a[0], -1, true, false))),
        ("logcumsumexp", Box::new(|a| scan(ScanOp::LogAddExp, &a[0], 2, false, true))),
        ("reshape", Box::new(|a| a[0].reshape(&[4, -1]))),
        ("transpose", Box::new(|a| a[0].transpose(Some(&[2, 0, 1])))),
        ("broadcast", Box::new(|a| broadcast_to(&a[0], &[3, 2, 3, 4]))),
        ("slice", Box::new(|a| slice(&a[0], &[1, 0, -1], &[2, 3, 0], &[1, 2, -2]))),
        ("flip", Box::new(|a| flip(&a[0], Some(&[1])))),
        ("concat", Box::new(|a| concatenate(&[&a[0], &exp(&a[0])?], 1))),
        ("stack", Box::new(|a| stack(&[&a[0], &sin(&a[0])?], 0))),
        ("pad", Box::new(|a| pad(&a[0], &[(1, 0), (0, 2), (1, 1)], 0.5))),
        ("roll", Box::new(|a| roll(&a[0], 2, -1))),
        ("tile", Box::new(|a| tile(&a[0], &[2, 1, 1]))),
        ("repeat", Box::new(|a| repeat(&a[0], 2, 1))),
        ("where", Box::new(|a| where_(&greater(&a[0], &Array::scalar(0.0))?, &square(&a[0])?, &sin(&a[0])?))),
        (
            "slice_update",
            Box::new(|a| {
                slice_update(
                    &a[0],
                    &cos(&slice(&a[0], &[0, 0, 0], &[1, 2, 2], &[1, 1, 1])?)?,
                    &[1, 1, 2],
                    &[2, 3, 4],
                    &[1, 1, 1],
                )
            }),
        ),
        ("clip", Box::new(|a| clip(&a[0], Some(-1.0), Some(1.0)))),
        ("take", Box::new(|a| take(&a[0], &Array::from_slice(&[2i32, -1, 0, 2], &[2, 2])?, Some(-1)))),
        (
            "take_along_axis",
            Box::new(|a| take_along_axis(&a[0], &Array::from_slice(&[2i32, 0, 1, 1, 0, 2, 2, 2], &[2, 1, 4])?, 1)),
        ),
        (
            "scatter_add",
            Box::new(|a| {
                let idx = Array::from_slice(&[1i32, 3, 0, 3, 2, 3], &[2, 3, 1])?;
                let upd = slice(&sin(&a[0])?, &[0, 0, 0], &[2, 3, 1], &[1, 1, 1])?;
                scatter_add_along_axis(&a[0], &idx, &upd, 2)
            }),
        ),
        (
            "gather on two axes",
            Box::new(|a| {
                let ij = [Array::from_slice(&[1i32, -1, 0, 1], &[4])?, Array::from_slice(&[3i32, 0, -2, 3], &[4])?];
                gather(&a[0], &ij, &[0, 2])
            }),
        ),
        (
            "scatter_add on two axes",
            Box::new(|a| {
                let ij = [Array::from_slice(&[1i32, -1, 0, 1], &[4])?, Array::from_slice(&[3i32, 0, -2, 3], &[4])?];
                scatter_add(&a[0], &ij, &[0, 2], &sin(&gather(&a[0], &ij, &[0, 2])?)?)
            }),
        ),
        ("cast round trip", Box::new(|a| a[0].astype(DType::F32)?.astype(DType::F64))),
    ];
    for (name, f) in cases {
        if name == "cast round trip" {
            // f32 rounding makes differences of 1e-6 meaningless: just check the vjp is the identity.
            let g = grad(|a: &[Array]| f(a)?.sum(None, false), &[])(std::slice::from_ref(&x)).unwrap();
            assert!(g[0].to_vec::<f64>().unwrap().iter().all(|&v| v == 1.0));
            continue;
        }
        check(name, &*f, std::slice::from_ref(&x));
    }
}

#[test]
fn matmul_derivatives() {
    let a = arr(&rand_vec(2 * 3 * 4, 5, -1.0, 1.0), &[2, 3, 4]);
    let b = arr(&rand_vec(4 * 5, 6, -1.0, 1.0), &[4, 5]);
    check("batched matmul", &|x: &[Array]| matmul(&x[0], &x[1]), &[a.clone(), b.clone()]);
    let v = arr(&rand_vec(4, 7, -1.0, 1.0), &[4]);
    check("matrix-vector", &|x: &[Array]| matmul(&x[0], &x[1]), &[a, v]);
}

#[test]
fn conv_derivatives() {
    let r = |shape: &[usize], seed: u64| arr(&rand_vec(shape.iter().product(), seed, -1.0, 1.0), shape);
    // (input, MLX-layout weight, descriptor): strides, dilation, padding, groups, transposes.
    let mut strided = Conv::new_2d([2, 1], [1, 0]);
    strided.padding[1] = (1, 2);
    let cases: Vec<(&str, Array, Array, Conv)> = vec![
        ("conv1d stride 2 dilation 2", r(&[2, 9, 3], 1), r(&[4, 3, 3], 2), {
            let mut d = Conv::new(1).dilation(&[2]);
            d.stride[0] = 2;
            d.padding[0] = (1, 1);
            d
        }),
        ("conv2d strided, uneven padding", r(&[1, 6, 5, 2], 3), r(&[3, 3, 2, 2], 4), strided),
        ("conv2d depthwise", r(&[2, 4, 4, 3], 5), r(&[3, 3, 3, 1], 6), Conv::new_2d([1, 1], [1, 1]).groups(3)),
        ("conv2d groups 2", r(&[1, 5, 4, 4], 7), r(&[6, 2, 2, 2], 8), Conv::new_2d([2, 1], [0, 1]).groups(2)),
        (
            "conv_transpose2d",
            r(&[1, 3, 4, 3], 9),
            r(&[2, 3, 2, 3], 10),
            Conv::new_2d([2, 1], [1, 0]).transposed(&[1, 0]),
        ),
        (
            "conv_transpose1d groups 2",
            r(&[2, 4, 4], 11),
            r(&[6, 3, 2], 12),
            Conv::new(1).groups(2).transposed(&[0]).dilation(&[2]),
        ),
        // Output padding past the stride (allowed as the dilation is larger).
        ("conv_transpose1d dilation 2, output padding 1", r(&[1, 4, 1], 17), r(&[1, 3, 1], 18), {
            Conv::new(1).dilation(&[2]).transposed(&[1])
        }),
        ("conv3d", r(&[1, 3, 4, 3, 2], 13), r(&[2, 2, 3, 2, 2], 14), {
            let mut d = Conv::new(3);
            d.stride = [1, 2, 1];
            d.padding = [(0, 0), (1, 1), (1, 0)];
            d
        }),
    ];
    for (name, x, w, desc) in cases {
        check(name, &move |a: &[Array]| conv_general(&a[0], &a[1], &desc), &[x, w]);
    }
    // grad of grad goes through the weight's cotangent (slices, matmuls) and the transpose.
    let (x, w) = (r(&[1, 5, 2], 15), r(&[2, 3, 2], 16));
    check(
        "grad of conv1d",
        &|a: &[Array]| {
            let inner = |b: &[Array]| square(&conv1d(&b[0], &b[1], 1, 1, 1, 1)?)?.sum(None, false);
            Ok(grad(inner, &[0])(a)?.remove(0))
        },
        &[x, w],
    );
}

#[test]
fn fast_derivatives() {
    let r = |shape: &[usize], seed: u64| arr(&rand_vec(shape.iter().product(), seed, -1.0, 1.0), shape);
    let (x, w, b) = (r(&[2, 3, 6], 31), r(&[6], 32), r(&[6], 33));
    check("rms_norm", &|a: &[Array]| fast::rms_norm(&a[0], Some(&a[1]), 1e-5), &[x.clone(), w.clone()]);
    check("layer_norm", &|a: &[Array]| fast::layer_norm(&a[0], Some(&a[1]), Some(&a[2]), 1e-5), &[x.clone(), w, b]);
    check("rope", &|a: &[Array]| fast::rope(&a[0], 4, false, 10000.0, 1.0, 2), std::slice::from_ref(&x));
    check("rope traditional", &|a: &[Array]| fast::rope(&a[0], 6, true, 100.0, 0.5, 0), std::slice::from_ref(&x));
    let (q, k, v) = (r(&[1, 4, 3, 4], 34), r(&[1, 2, 5, 4], 35), r(&[1, 2, 5, 3], 36));
    check(
        "attention, grouped heads",
        &|a: &[Array]| fast::scaled_dot_product_attention(&a[0], &a[1], &a[2], 0.5, fast::Mask::None),
        &[q.clone(), k.clone(), v.clone()],
    );
    check(
        "attention, causal",
        &|a: &[Array]| fast::scaled_dot_product_attention(&a[0], &a[1], &a[2], 0.5, fast::Mask::Causal),
        &[q.clone(), k.clone(), v.clone()],
    );
    let m = r(&[3, 5], 37);
    check(
        "attention, additive mask (and its gradient)",
        &|a: &[Array]| fast::scaled_dot_product_attention(&a[0], &a[1], &a[2], 0.5, fast::Mask::Array(&a[3])),
        &[q, k, v, m],
    );
}

#[test]
fn einsum_derivatives() {
    let r = |shape: &[usize], seed: u64| arr(&rand_vec(shape.iter().product(), seed, -1.0, 1.0), shape);
    let (a, b, c) = (r(&[3, 4], 51), r(&[2, 4, 5], 52), r(&[4, 4], 53));
    check("einsum ij,bjk->bik", &|x: &[Array]| einsum("ij,bjk->bik", &[&x[0], &x[1]]), &[a.clone(), b.clone()]);
    check("einsum ii,ji->j (diagonal)", &|x: &[Array]| einsum("ii,ji->j", &[&x[0], &x[1]]), &[c, a.clone()]);
    check("tensordot", &|x: &[Array]| tensordot_axes(&x[0], &x[1], &[1], &[1]), &[a, b]);
}

#[test]
fn linalg_derivatives() {
    let r = |shape: &[usize], seed: u64| arr(&rand_vec(shape.iter().product(), seed, -1.0, 1.0), shape);
    let eye = |n: usize| identity(n, DType::F64).unwrap();
    // Well-conditioned square matrices: random plus 3·I.
    let a = (r(&[2, 3, 3], 61) + eye(3) * 3.0).clone();
    let b = r(&[2, 3, 2], 62);
    check("solve", &|x: &[Array]| linalg::solve(&x[0], &x[1]), &[a.clone(), b]);
    check("inv", &|x: &[Array]| linalg::inv(&x[0]), std::slice::from_ref(&a));
    check("det", &|x: &[Array]| linalg::det(&x[0]), std::slice::from_ref(&a));
    check("slogdet", &|x: &[Array]| Ok(linalg::slogdet(&x[0])?.1), std::slice::from_ref(&a));
    // LU with row swaps (a random matrix pivots): the packed factors, and L and U apart.
    let g = r(&[2, 4, 4], 60);
    check("lu_factor", &|x: &[Array]| Ok(linalg::lu_factor(&x[0])?.0), std::slice::from_ref(&g));
    check("lu L", &|x: &[Array]| Ok(linalg::lu(&x[0])?.1), std::slice::from_ref(&g));
    check("lu U", &|x: &[Array]| Ok(linalg::lu(&x[0])?.2), std::slice::from_ref(&g));
    let swaps = arr(&[0.0, 2.0, 1.0, 1.0, 1.0, 0.0, 3.0, 0.5, 1.0], &[3, 3]);
    let (p, _, _) = linalg::lu(&swaps).unwrap();
    assert_ne!(p.to_vec::<u32>().unwrap(), [0, 1, 2], "the matrix should pivot");
    check("lu_factor with pivots", &|x: &[Array]| Ok(linalg::lu_factor(&x[0])?.0), &[swaps]);
    let x = r(&[3, 3], 63);
    let spd = |x: &Array| -> Result<Array> { Ok(matmul(x, &x.transpose(None)?)? + identity(3, DType::F64)?) };
    check("cholesky of X·Xᵀ + I", &move |v: &[Array]| linalg::cholesky(&spd(&v[0])?), std::slice::from_ref(&x));
    let sym = |x: &Array| -> Result<Array> { Ok(x + x.transpose(None)?) };
    check("eigh values", &move |v: &[Array]| Ok(linalg::eigh(&sym(&v[0])?)?.0), std::slice::from_ref(&x));
    // Eigenvectors up to sign: fix it by making each column's largest entry positive.
    check(
        "eigh vectors (sign-fixed)",
        &move |v: &[Array]| {
            let (_, vecs) = linalg::eigh(&sym(&v[0])?)?;
            let s = sign(&sum(&vecs, Some(&[0]), true)?)?;
            Ok(vecs * stop_gradient(&s)?)
        },
        std::slice::from_ref(&x),
    );
    check("singular values", &|v: &[Array]| Ok(linalg::svd(&v[0])?.1), &[r(&[4, 3], 64)]);
    // Singular vectors, tall and wide, with the sign of each pair fixed as for eigh.
    let svd_fixed = |v: &[Array]| -> Result<(Array, Array)> {
        let (u, _, vt) = linalg::svd(&v[0])?;
        let s = stop_gradient(&sign(&sum(&u, Some(&[-2]), true)?)?)?;
        Ok((&u * &s, &vt * swapaxes(&s, -1, -2)?))
    };
    for (shape, seed) in [([4, 3], 66), ([3, 5], 69)] {
        check("svd U (sign-fixed)", &move |v: &[Array]| Ok(svd_fixed(v)?.0), &[r(&shape, seed)]);
        check("svd Vt (sign-fixed)", &move |v: &[Array]| Ok(svd_fixed(v)?.1), &[r(&shape, seed)]);
    }
    // qr of tall and square matrices (Q and R each, and both through one scalar), batched.
    let tall = r(&[2, 4, 3], 65);
    check("qr Q", &|v: &[Array]| Ok(linalg::qr(&v[0])?.0), std::slice::from_ref(&tall));
    check("qr R", &|v: &[Array]| Ok(linalg::qr(&v[0])?.1), std::slice::from_ref(&tall));
    check(
        "qr Q·R and Q together",
        &|v: &[Array]| {
            let (q, rr) = linalg::qr(&v[0])?;
            Ok(sin(&q)? * 2.0 + sum(&rr, Some(&[-1]), true)?)
        },
        &[(r(&[3, 3], 67) + eye(3) * 2.0).clone()],
    );
    // Wide matrices (batched): Q, R, and both through one scalar.
    let wide = r(&[2, 3, 5], 68);
    check("wide qr Q", &|v: &[Array]| Ok(linalg::qr(&v[0])?.0), std::slice::from_ref(&wide));
    check("wide qr R", &|v: &[Array]| Ok(linalg::qr(&v[0])?.1), std::slice::from_ref(&wide));
    check(
        "wide qr Q and R together",
        &|v: &[Array]| {
            let (q, rr) = linalg::qr(&v[0])?;
            Ok(sum(&sin(&q)?, Some(&[-1]), false)? + sum(&rr, Some(&[-1]), false)?)
        },
        std::slice::from_ref(&wide),
    );
}

#[test]
fn sort_derivatives() {
    let x = arr(&rand_vec(24, 21, -2.0, 2.0), &[4, 6]);
    check("sort axis 1", &|a: &[Array]| sort(&a[0], Some(1)), std::slice::from_ref(&x));
    check("sort flattened", &|a: &[Array]| sort(&a[0], None), std::slice::from_ref(&x));
    check("topk", &|a: &[Array]| topk(&a[0], 2, Some(0)), std::slice::from_ref(&x));
}

#[test]
fn transforms_compose() {
    // grad of grad: d²/dx² x³ = 6x.
    let x = arr(&[0.5, -1.5, 2.0], &[3]);
    let g = |a: &[Array]| -> Result<Array> { power(&a[0], &Array::scalar(3.0))?.sum(None, false) };
    let gg = grad(move |a: &[Array]| grad(g, &[])(a)?[0].sum(None, false), &[])(std::slice::from_ref(&x)).unwrap();
    let got = gg[0].to_vec::<f64>().unwrap();
    for (g, x) in got.iter().zip([0.5, -1.5, 2.0]) {
        assert!((g - 6.0 * x).abs() < 1e-12, "{g} vs {}", 6.0 * x);
    }
    // jvp of vjp: for f = sin, vjp(x, c) = c·cos x; its jvp in x along t is -c·sin(x)·t.
    let c = arr(&[1.0, 2.0, 3.0], &[3]);
    let t = arr(&[0.3, -0.2, 1.0], &[3]);
    let cc = c.clone();
    let (_, jt) = jvp(
        move |a| Ok(vjp(|b| Ok(vec![sin(&b[0])?]), a, std::slice::from_ref(&cc))?.1),
        std::slice::from_ref(&x),
        &[t],
    )
    .unwrap();
    let got = jt[0].to_vec::<f64>().unwrap();
    for (((g, x), c), t) in got.iter().zip([0.5f64, -1.5, 2.0]).zip([1.0, 2.0, 3.0]).zip([0.3, -0.2, 1.0]) {
        assert!((g + c * x.sin() * t).abs() < 1e-12);
    }
    // value_and_grad with argnums, and stop_gradient.
    let f = |a: &[Array]| (&a[0] * &stop_gradient(&a[1])? * &a[1]).sum(None, false);
    let (v, gs) = value_and_grad(f, &[1])(&[arr(&[2.0], &[1]), arr(&[3.0], &[1])]).unwrap();
    assert_eq!(v.item::<f64>().unwrap(), 18.0);
    assert_eq!(gs.len(), 1);
    assert_eq!(gs[0].item::<f64>().unwrap(), 6.0);
}

#[test]
fn errors_are_clear() {
    let x = arr(&[1.0, 2.0], &[2]);
    let e = grad(|a: &[Array]| Ok(a[0].clone()), &[])(std::slice::from_ref(&x)).err().unwrap().to_string();
    assert!(e.contains("[2]") && e.contains("scalar"), "{e}");
    let e = grad(|a: &[Array]| a[0].sum(None, false), &[3])(std::slice::from_ref(&x)).err().unwrap().to_string();
    assert!(e.contains("argnum 3"), "{e}");
    let e = vjp(|a| Ok(vec![a[0].clone()]), std::slice::from_ref(&x), &[arr(&[1.0], &[1])]).err().unwrap().to_string();
    assert!(e.contains("[1]") && e.contains("[2]"), "{e}");
}

#[test]
fn custom_vjp_and_checkpoint() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // A rule that differs from the ops' derivative is the one used: d/dx sin(x) reported as 2.
    let odd = custom_vjp(
        |x: &[Array]| Ok(vec![sin(&x[0])?, exp(&x[0])?]),
        |x: &[Array], _y: &[Array], g: &[Array]| Ok(vec![&g[0] * 2.0 + &g[1] * exp(&x[0])?]),
    );
    let x = arr(&[0.3, -0.7, 1.1], &[3]);
    let o = odd.clone();
    let gs =
        grad(move |a: &[Array]| (o(a)?[0].clone() + o(a)?[1].clone()).sum(None, false), &[])(std::slice::from_ref(&x))
            .unwrap();
    for (g, xv) in gs[0].to_vec::<f64>().unwrap().iter().zip([0.3f64, -0.7, 1.1]) {
        assert!((g - (2.0 + xv.exp())).abs() < 1e-12, "{g}");
    }
    // Values are the forward function's; jvp and vmap go through it.
    let y = odd(std::slice::from_ref(&x)).unwrap();
    assert!((y[0].to_vec::<f64>().unwrap()[0] - 0.3f64.sin()).abs() < 1e-15);
    let t = arr(&[1.0, 1.0, 1.0], &[3]);
    let o = odd.clone();
    let (_, jt) = jvp(move |a| o(a), std::slice::from_ref(&x), &[t]).unwrap();
    assert!((jt[0].to_vec::<f64>().unwrap()[2] - 1.1f64.cos()).abs() < 1e-12);
    let o = odd.clone();
    let v = vmap(move |a: &[Array]| o(a), &[Some(0)], &[])(&[arr(&[0.1, 0.2, 0.3, 0.4], &[2, 2])]).unwrap();
    assert!((v[1].to_vec::<f64>().unwrap()[3] - 0.4f64.exp()).abs() < 1e-12);
    // A rule returning the wrong number or shape of cotangents is an error.
    let bad = custom_vjp(|x: &[Array]| Ok(vec![x[0].clone()]), |_: &[Array], _: &[Array], _: &[Array]| Ok(vec![]));
    let e = grad(move |a: &[Array]| bad(a)?[0].sum(None, false), &[])(std::slice::from_ref(&x)).err().unwrap();
    assert!(e.to_string().contains("returned 0 cotangents for 1 arguments"), "{e}");

    // checkpoint: the gradients of the plain function, the forward run again in the backward pass.
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let block = move |a: &[Array]| -> Result<Vec<Array>> {
        c.fetch_add(1, Ordering::SeqCst);
        let h = tanh(&matmul(&a[0], &a[1])?)?;
        Ok(vec![tanh(&matmul(&h, &a[1])?)?])
    };
    let (x, w) = (arr(&rand_vec(12, 41, -1.0, 1.0), &[3, 4]), arr(&rand_vec(16, 42, -1.0, 1.0), &[4, 4]));
    let b2 = block.clone();
    let plain = grad(move |a: &[Array]| square(&b2(a)?[0])?.sum(None, false), &[])(&[x.clone(), w.clone()]).unwrap();
    let ck = checkpoint(block);
    let before = calls.load(Ordering::SeqCst);
    let ckd = grad(move |a: &[Array]| square(&ck(a)?[0])?.sum(None, false), &[])(&[x, w]).unwrap();
    eval_all(&[&ckd[0], &ckd[1]]).unwrap();
    // Once to learn the shapes, once to evaluate, once more in the backward pass.
    assert_eq!(calls.load(Ordering::SeqCst) - before, 3);
    for (p, c) in plain.iter().zip(&ckd) {
        for (a, b) in p.to_vec::<f64>().unwrap().iter().zip(c.to_vec::<f64>().unwrap()) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
    }
}

#[test]
fn fft_derivatives() {
    let r = |shape: &[usize], seed: u64| arr(&rand_vec(shape.iter().product(), seed, -1.0, 1.0), shape);
    // Complex values built from two real arrays, results read back as (real, imaginary).
    fn c(x: &[Array]) -> Result<Array> {
        complex(&x[0], &x[1])
    }
    fn pairs(z: Array) -> Result<Array> {
        stack(&[&real(&z)?, &imag(&z)?], -1)
    }
    fn mt_c(x: &[Array]) -> Result<Array> {
        swapaxes(&c(x)?, -1, -2)
    }
    let (re, im) = (r(&[2, 6], 81), r(&[2, 6], 82));
    let both = [re.clone(), im.clone()];
    check_f32("fft", &|x: &[Array]| pairs(fft::fft(&c(x)?, None, -1)?), &both);
    check_f32("fft along axis 0, padded", &|x: &[Array]| pairs(fft::fft(&c(x)?, Some(3), 0)?), &both);
    check_f32("ifft, cut", &|x: &[Array]| pairs(fft::ifft(&c(x)?, Some(4), -1)?), &both);
    check_f32("rfft", &|x: &[Array]| pairs(fft::rfft(&x[0], None, -1)?), std::slice::from_ref(&re));
    check_f32("rfft, odd and padded", &|x: &[Array]| pairs(fft::rfft(&x[0], Some(9), -1)?), std::slice::from_ref(&re));
    check_f32("irfft, even", &|x: &[Array]| fft::irfft(&c(x)?, Some(10), -1), &both);
    check_f32("irfft, odd", &|x: &[Array]| fft::irfft(&c(x)?, Some(9), -1), &both);
    check_f32("fftn with s", &|x: &[Array]| pairs(fft::fftn(&c(x)?, Some(&[3, 5]), None)?), &both);
    check_f32(
        "rfftn then irfftn",
        &|x: &[Array]| fft::irfftn(&fft::rfftn(&x[0], None, None)?, Some(&[2, 6]), None),
        std::slice::from_ref(&re),
    );
    let (b0, b1) = (r(&[1, 6], 83), r(&[1, 6], 84));
    check_f32(
        "complex multiply (broadcast)",
        &|x: &[Array]| pairs(multiply(&complex(&x[0], &x[1])?, &complex(&x[2], &x[3])?)?),
        &[re.clone(), im.clone(), b0.clone(), b1.clone()],
    );
    // Away from |z| = 0, where abs bends too sharply for differences in float32.
    let (re2, b2) = (&re + 2.0, &b0 + 2.0);
    check_in(
        "abs of a complex product",
        &|x: &[Array]| abs(&multiply(&complex(&x[0], &x[1])?, &complex(&x[2], &x[3])?)?),
        &[re2, im.clone(), b2, b1],
        DType::F32,
        1e-2,
        2e-4,
    );
    check_f32("complex sum and conj", &|x: &[Array]| pairs(conj(&sum(&c(x)?, Some(&[0]), false)?)?), &both);
    check_f32("complex matmul", &|x: &[Array]| pairs(matmul(&c(x)?, &mt_c(x)?)?), &both);
    check_in("complex exp", &|x: &[Array]| pairs(exp(&c(x)?)?), &both, DType::F32, 1e-2, 2e-4);
    // Away from 0 and the negative real axis (the branch cut of sqrt and log).
    let right = [&re + 2.0, im.clone()];
    for (name, op) in [("sqrt", UnaryOp::Sqrt), ("log", UnaryOp::Log), ("sin", UnaryOp::Sin), ("cos", UnaryOp::Cos)] {
        let f = move |x: &[Array]| pairs(unary(op, &c(x)?)?);
        check_in(&format!("complex {name}"), &f, &right, DType::F32, 1e-2, 5e-4);
    }
    // The compositions of this stop, in the upper half-plane (Im z in [1.5, 3.5]: off the real
    // axis, where the inverse functions' branch cuts lie).
    let upper = [re.clone(), &im + 2.5];
    for (name, op) in [
        ("tan", UnaryOp::Tan),
        ("tanh", UnaryOp::Tanh),
        ("expm1", UnaryOp::Expm1),
        ("log1p", UnaryOp::Log1p),
        ("arcsin", UnaryOp::Asin),
        ("arctan", UnaryOp::Atan),
        ("arccosh", UnaryOp::Acosh),
    ] {
        let f = move |x: &[Array]| pairs(unary(op, &c(x)?)?);
        check_in(&format!("complex {name}"), &f, &upper, DType::F32, 1e-2, 5e-4);
    }
    check_in(
        "complex power",
        &|x: &[Array]| pairs(power(&c(x)?, &complex(&(&x[0] * 0.5), &(&x[1] * 0.2))?)?),
        &upper,
        DType::F32,
        1e-2,
        5e-4,
    );
    check_in(
        "complex divide and mean",
        &|x: &[Array]| pairs(mean(&divide(&c(x)?, &complex(&(&x[1] + 3.0), &x[0])?)?, Some(&[1]), false)?),
        &both,
        DType::F32,
        1e-2,
        2e-4,
    );
}

/// `shape` of random values whose magnitudes lie in [0.2, 1]: away from the kink of |x| at 0,
/// where the 1- and ∞-norms stop being differentiable.
fn away_from_zero(shape: &[usize], seed: u64) -> Array {
    let v: Vec<f64> = rand_vec(shape.iter().product(), seed, -0.8, 0.8).iter().map(|x| x + 0.2 * x.signum()).collect();
    arr(&v, shape)
}

#[test]
fn norm_derivatives() {
    let v = away_from_zero(&[3, 5], 91);
    // Vector orders, over the last axis (p < 1 included: differentiable with no zero entry).
    for ord in
        [None, Some(1.0), Some(2.0), Some(f64::INFINITY), Some(f64::NEG_INFINITY), Some(3.0), Some(0.5), Some(-1.5)]
    {
        check(
            &format!("vector norm {ord:?}"),
            &move |a: &[Array]| linalg::norm(&a[0], ord, false),
            std::slice::from_ref(&v),
        );
    }
    // Matrix orders, batched: the sums of |x| need no zero entry and a unique extreme row or
    // column; the singular-value ones distinct nonzero singular values (random matrices have).
    let m = away_from_zero(&[2, 4, 3], 92);
    for ord in [
        None,
        Some(f64::NAN),
        Some(2.0),
        Some(-2.0),
        Some(1.0),
        Some(-1.0),
        Some(f64::INFINITY),
        Some(f64::NEG_INFINITY),
    ] {
        check(
            &format!("matrix norm {ord:?}"),
            &move |a: &[Array]| linalg::norm(&a[0], ord, true),
            std::slice::from_ref(&m),
        );
    }
}

#[test]
fn pinv_cross_and_triangular_derivatives() {
    let r = |shape: &[usize], seed: u64| arr(&rand_vec(shape.iter().product(), seed, -1.0, 1.0), shape);
    let eye = |n: usize| identity(n, DType::F64).unwrap();
    check("pinv, tall and batched", &|x: &[Array]| linalg::pinv(&x[0], 1e-15), &[r(&[2, 4, 3], 93)]);
    check("pinv, wide", &|x: &[Array]| linalg::pinv(&x[0], 1e-15), &[r(&[3, 5], 94)]);
    check("cross, broadcast", &|x: &[Array]| linalg::cross(&x[0], &x[1]), &[r(&[2, 1, 3], 95), r(&[4, 3], 96)]);
    // Full matrices: the triangle not named is ignored, so its gradient is zero, as the
    // differences of the function agree.
    let t = r(&[2, 3, 3], 97) + eye(3) * 3.0;
    let b = r(&[2, 3, 2], 98);
    for lower in [true, false] {
        check(
            &format!("solve_triangular lower={lower}"),
            &move |x: &[Array]| linalg::solve_triangular(&x[0], &x[1], lower),
            &[t.clone(), b.clone()],
        );
        check(
            &format!("cholesky_inv upper={}", !lower),
            &move |x: &[Array]| linalg::cholesky_inv(&x[0], !lower),
            std::slice::from_ref(&t),
        );
    }
    let g = grad(|x: &[Array]| linalg::solve_triangular(&x[0], &x[1], true)?.sum(None, false), &[0])(&[t, b]).unwrap();
    let g = g[0].to_vec::<f64>().unwrap();
    assert!(g.iter().enumerate().filter(|(p, _)| p % 3 > p / 3 % 3).all(|(_, v)| *v == 0.0), "upper gradient {g:?}");
}

/// The factorizations' rules on batches, and on matrices that are not symmetric: cholesky and
/// eigh read only the lower triangle, so the upper one's gradient is zero.
#[test]
fn batched_and_lower_triangle_derivatives() {
    let r = |shape: &[usize], seed: u64| arr(&rand_vec(shape.iter().product(), seed, -1.0, 1.0), shape);
    let t = |x: &Array| swapaxes(x, -1, -2);
    let x = r(&[2, 3, 3], 101);
    let spd = move |x: &Array| -> Result<Array> { Ok(matmul(x, &t(x)?)? + identity(3, DType::F64)?) };
    check("batched cholesky", &move |v: &[Array]| linalg::cholesky(&spd(&v[0])?), std::slice::from_ref(&x));
    let sym = move |x: &Array| -> Result<Array> { Ok(x + t(x)?) };
    check("batched eigh values", &move |v: &[Array]| Ok(linalg::eigh(&sym(&v[0])?)?.0), std::slice::from_ref(&x));
    // Eigen- and singular vectors up to sign, fixed per column by the sign of its sum.
    let fixed = |vecs: &Array| -> Result<Array> { stop_gradient(&sign(&sum(vecs, Some(&[-2]), true)?)?) };
    check(
        "batched eigh vectors (sign-fixed)",
        &move |v: &[Array]| {
            let (_, vecs) = linalg::eigh(&sym(&v[0])?)?;
            Ok(&vecs * fixed(&vecs)?)
        },
        std::slice::from_ref(&x),
    );
    let m = r(&[2, 4, 3], 102);
    check("batched singular values", &|v: &[Array]| Ok(linalg::svd(&v[0])?.1), std::slice::from_ref(&m));
    check(
        "batched svd U and Vt (sign-fixed)",
        &move |v: &[Array]| {
            let (u, _, vt) = linalg::svd(&v[0])?;
            let s = fixed(&u)?;
            concatenate(&[&(&u * &s), &t(&(&vt * t(&s)?))?], -2)
        },
        std::slice::from_ref(&m),
    );
    // A matrix whose lower triangle mirrored is positive definite, with unrelated values above
    // the diagonal.
    let n = 4;
    let y = r(&[2, n, n], 103);
    let upper_noise = r(&[2, n, n], 104) * t(&tri(n, n, -1, DType::F64).unwrap()).unwrap() * 3.0;
    let a = spd4(&y) + upper_noise;
    let upper_zero = |name: &str, f: &F| {
        let g = grad(|v: &[Array]| sin(&f(v)?)?.sum(None, false), &[0])(std::slice::from_ref(&a)).unwrap();
        let g = g[0].to_vec::<f64>().unwrap();
        let above = g.iter().enumerate().filter(|(p, _)| p % n > p / n % n);
        assert!(above.clone().all(|(_, v)| *v == 0.0), "{name}: gradient above the diagonal {g:?}");
        assert!(g.iter().any(|v| *v != 0.0), "{name}: no gradient at all");
        check(name, f, std::slice::from_ref(&a));
    };
    upper_zero("cholesky, not symmetric", &|v: &[Array]| linalg::cholesky(&v[0]));
    upper_zero("eigh values, not symmetric", &|v: &[Array]| Ok(linalg::eigh(&v[0])?.0));
    upper_zero("eigh vectors (sign-fixed), not symmetric", &move |v: &[Array]| {
        let (_, vecs) = linalg::eigh(&v[0])?;
        Ok(&vecs * fixed(&vecs)?)
    });
}

/// `y yᵀ + I` for `[..., 4, 4]`.
fn spd4(y: &Array) -> Array {
    matmul(y, &swapaxes(y, -1, -2).unwrap()).unwrap() + identity(4, DType::F64).unwrap()
}

#[test]
fn fft_nd_and_shift_derivatives() {
    let r = |shape: &[usize], seed: u64| arr(&rand_vec(shape.iter().product(), seed, -1.0, 1.0), shape);
    fn c(x: &[Array]) -> Result<Array> {
        complex(&x[0], &x[1])
    }
    fn pairs(z: Array) -> Result<Array> {
        stack(&[&real(&z)?, &imag(&z)?], -1)
    }
    let both = [r(&[2, 3, 4], 111), r(&[2, 3, 4], 112)];
    let re = std::slice::from_ref(&both[0]);
    check_f32(
        "ifftn over two axes with s",
        &|x: &[Array]| pairs(fft::ifftn(&c(x)?, Some(&[4, 3]), Some(&[0, 2]))?),
        &both,
    );
    check_f32("fft2", &|x: &[Array]| pairs(fft::fft2(&c(x)?, None, None)?), &both);
    check_f32("fft2 with s, axes", &|x: &[Array]| pairs(fft::fft2(&c(x)?, Some(&[3, 5]), Some(&[0, -1]))?), &both);
    check_f32("ifft2", &|x: &[Array]| pairs(fft::ifft2(&c(x)?, None, None)?), &both);
    check_f32("ifft2 with s", &|x: &[Array]| pairs(fft::ifft2(&c(x)?, Some(&[2, 6]), None)?), &both);
    check_f32("rfft2", &|x: &[Array]| pairs(fft::rfft2(&x[0], None, None)?), re);
    check_f32("rfft2 with s, axes", &|x: &[Array]| pairs(fft::rfft2(&x[0], Some(&[3, 5]), Some(&[1, 0]))?), re);
    check_f32("irfft2", &|x: &[Array]| fft::irfft2(&c(x)?, None, None), &both);
    check_f32("irfft2 with odd s", &|x: &[Array]| fft::irfft2(&c(x)?, Some(&[4, 5]), Some(&[0, 2])), &both);
    // The shifts are rolls: exact in float64.
    let x = r(&[3, 4, 5], 113);
    check("fftshift", &|a: &[Array]| fft::fftshift(&a[0], None), std::slice::from_ref(&x));
    check("ifftshift, odd axes", &|a: &[Array]| fft::ifftshift(&a[0], Some(&[0, -1])), std::slice::from_ref(&x));
    check_f32(
        "fftshift of a complex fft",
        &|x: &[Array]| pairs(fft::fftshift(&fft::fft(&c(x)?, None, -1)?, Some(&[-1]))?),
        &both,
    );
}

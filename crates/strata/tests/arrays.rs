//! Behaviour of the array handle: creation, operators, display, laziness, memory, errors.

use strata::*;

#[test]
fn creation_and_reading() {
    let a = arange(0.0, 6.0, 1.0, DType::I32).unwrap().reshape(&[2, 3]).unwrap();
    assert_eq!(a.to_vec::<i32>().unwrap(), [0, 1, 2, 3, 4, 5]);
    assert_eq!(a.to_vec::<f32>().unwrap(), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(linspace(0.0, 1.0, 5, DType::F64).unwrap().to_vec::<f64>().unwrap(), [0.0, 0.25, 0.5, 0.75, 1.0]);
    assert_eq!(eye(2, 3, 1, DType::F32).unwrap().to_vec::<f32>().unwrap(), [0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
    assert_eq!(tri(2, 2, 0, DType::U8).unwrap().to_vec::<u8>().unwrap(), [1, 0, 1, 1]);
    assert_eq!(full(&[2, 2], 2.5, DType::F16).unwrap().sum(None, false).unwrap().item::<f32>().unwrap(), 10.0);
    assert_eq!(Array::scalar(true).to_vec::<bool>().unwrap(), [true]);
    assert!(Array::from_slice(&[1.0f32; 5], &[2, 3]).unwrap_err().to_string().contains("[2, 3]"));
    assert!(Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap().item::<f32>().unwrap_err().to_string().contains("[2]"));
}

#[test]
fn operators_and_weak_scalars() {
    let a = Array::from_slice(&[1i32, 2, 3], &[3]).unwrap();
    // An integer scalar keeps int32; a fractional one promotes to float32.
    let b = &a * 2 + 1;
    assert_eq!((b.dtype(), b.to_vec::<i32>().unwrap()), (DType::I32, vec![3, 5, 7]));
    let c = &a * 0.5;
    assert_eq!((c.dtype(), c.to_vec::<f32>().unwrap()), (DType::F32, vec![0.5, 1.0, 1.5]));
    let h = Array::from_slice(&[half::f16::from_f32(1.5)], &[1]).unwrap();
    assert_eq!((&h * 2.0).dtype(), DType::F16);
    assert_eq!((-&a).to_vec::<i32>().unwrap(), [-1, -2, -3]);
    assert_eq!((1.0 - &c).to_vec::<f32>().unwrap(), [0.5, 0.0, -0.5]);
    assert_eq!((&a % 2).to_vec::<i32>().unwrap(), [1, 0, 1]);
    let m = Array::from_slice(&[true, false], &[2]).unwrap();
    assert_eq!((!&m).to_vec::<bool>().unwrap(), [false, true]);
}

#[test]
fn failed_operators_carry_their_error() {
    let a = zeros(&[2, 3], DType::F32).unwrap();
    let b = zeros(&[4], DType::F32).unwrap();
    let c = &a + &b; // does not panic
    let e = c.eval().unwrap_err().to_string();
    assert!(e.contains("[2, 3]") && e.contains("[4]"), "{e}");
    // Using it in a function op returns the same error at the call.
    assert_eq!(exp(&c).unwrap_err().to_string(), e);
    assert!((&c * 2.0).to_vec::<f32>().unwrap_err().to_string().contains("[2, 3]"));
}

#[test]
fn bad_input_is_an_error_naming_shapes() {
    let x = zeros(&[2, 3], DType::F32).unwrap();
    let msg = |r: Result<Array>| r.unwrap_err().to_string();
    assert!(msg(sum(&x, Some(&[2]), false)).contains("axis 2"));
    assert!(msg(sum(&x, Some(&[-3]), false)).contains("axis -3"));
    assert!(msg(x.reshape(&[4, -1])).contains("[2, 3]"));
    assert!(msg(matmul(&x, &x)).contains("inner dimensions"));
    assert!(msg(x.transpose(Some(&[0, 0]))).contains("permutation"));
    assert!(msg(broadcast_to(&x, &[3, 3])).contains("[3, 3]"));
    assert!(msg(concatenate(&[&x, &zeros(&[3, 2], DType::F32).unwrap()], 0)).contains("[3, 2]"));
    assert!(msg(bitwise_and(&x, &x)).contains("float32"));
    assert!(msg(matmul(&zeros(&[2, 2], DType::I32).unwrap(), &zeros(&[2, 2], DType::I32).unwrap())).contains("int32"));
    assert!(msg(max(&zeros(&[0, 2], DType::F32).unwrap(), Some(&[0]), false)).contains("empty"));
    assert!(split(&x, 4, 1).unwrap_err().to_string().contains("4 equal"));
    let bad = Array::from_slice(&[0i32, 3], &[2]).unwrap();
    assert!(
        take(&x, &bad, Some(1))
            .unwrap()
            .eval()
            .unwrap_err()
            .to_string()
            .contains("index 3 is out of range for an axis of size 3")
    );
    // x is [2, 3]: row 1, column 3 is out of range on its own axis though 1·3 + 3 < 6.
    let (i, j) = (Array::from_slice(&[1i32], &[1]).unwrap(), Array::from_slice(&[3i32], &[1]).unwrap());
    let e = gather(&x, &[i.clone(), j.clone()], &[0, 1]).unwrap().eval().unwrap_err().to_string();
    assert!(e.contains("out of range"), "{e}");
    assert!(msg(gather(&x, std::slice::from_ref(&i), &[0, 1])).contains("1 index arrays for 2 axes"));
    assert!(msg(gather(&x, &[i.clone(), j.clone()], &[1, -1])).contains("repeat"));
    assert!(msg(scatter_add(&x, &[i, j], &[0, 1], &zeros(&[2], DType::F32).unwrap())).contains("do not broadcast"));
    assert!(msg(take(&x, &zeros(&[2], DType::F32).unwrap(), Some(1))).contains("integers"));
    // Sorting, convolutions, einsum, attention.
    assert!(msg(topk(&x, 4, Some(1))).contains("k = 4"));
    assert!(msg(sort(&x, Some(2))).contains("axis 2"));
    let img = zeros(&[1, 5, 5, 3], DType::F32).unwrap();
    let w = zeros(&[4, 3, 3, 2], DType::F32).unwrap();
    assert!(msg(conv2d(&img, &w, [1, 1], [0, 0], [1, 1], 1)).contains("3 channels"));
    assert!(msg(conv2d(&img, &zeros(&[4, 3, 3], DType::F32).unwrap(), [1, 1], [0, 0], [1, 1], 1)).contains("weight"));
    let (ii, wi) = (img.astype(DType::I32).unwrap(), w.astype(DType::I32).unwrap());
    assert!(msg(conv2d(&ii, &wi, [1, 1], [0, 0], [1, 1], 1)).contains("int32"));
    assert!(msg(einsum("ij,jk->ik", &[&x, &x])).contains("sizes 3 and 2"));
    assert!(msg(einsum("ij->iz", &[&x])).contains("`z`"));
    assert!(msg(einsum("ij,k", &[&x])).contains("2 operands"));
    assert!(msg(tensordot(&x, &x, 3)).contains("3 axes to contract"));
    assert!(msg(tensordot_axes(&x, &x, &[0, 0], &[0, 1])).contains("must not repeat"));
    let q = zeros(&[1, 3, 4, 8], DType::F32).unwrap();
    let kv = zeros(&[1, 2, 4, 8], DType::F32).unwrap();
    assert!(msg(fast::scaled_dot_product_attention(&q, &kv, &kv, 1.0, fast::Mask::None)).contains("3 query heads"));
    assert!(msg(fast::rope(&x, 3, false, 1e4, 1.0, 0)).contains("even dims"));
}

#[test]
fn display_like_numpy() {
    let a = Array::from_slice(&[1.0f32, 2.5, -3.0, 4.0], &[2, 2]).unwrap();
    assert_eq!(a.to_string(), "array([[ 1. ,  2.5],\n       [-3. ,  4. ]])");
    let i = arange(0.0, 3.0, 1.0, DType::I64).unwrap();
    assert_eq!(i.to_string(), "array([0, 1, 2], dtype=int64)");
    let f = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    assert_eq!(f.to_string(), "array([1., 2.])");
    let big = arange(0.0, 2000.0, 1.0, DType::I32).unwrap();
    assert!(big.to_string().contains("..."));
}

#[test]
fn lazy_until_read_and_views_share_memory() {
    let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let t = a.transpose(None).unwrap();
    let y = exp(&t).unwrap();
    assert!(!y.is_evaluated() && !t.is_evaluated());
    y.eval().unwrap();
    assert!(y.is_evaluated() && t.is_evaluated());
    assert_eq!(t.to_vec::<f32>().unwrap(), [1.0, 3.0, 2.0, 4.0]);
    let e: Vec<f32> = [1.0f32, 3.0, 2.0, 4.0].iter().map(|v| v.exp()).collect();
    // Within an ulp or two: each device has its own exp.
    for (g, w) in y.to_vec::<f32>().unwrap().iter().zip(&e) {
        assert!((g - w).abs() <= 2.0 * f32::EPSILON * w, "{g} vs {w}");
    }
}

#[test]
fn the_default_device_is_the_best_one_present() {
    // `scripts/device/array-test.sh` sets STRATA_EXPECT_DEVICE=cuda so that its suites cannot
    // quietly run on the CPU; elsewhere the default is CUDA when it can be opened, else a
    // hardware GPU through wgpu, never a software adapter (CI's lavapipe), else the CPU.
    let hardware_wgpu = Device::from_name("wgpu").is_ok_and(|d| !d.is_software());
    // The description says so too (CI's lavapipe: "wgpu: llvmpipe … through Vulkan (a software
    // adapter)").
    for d in [Device::from_name("wgpu"), Ok(Device::Cpu)].into_iter().flatten() {
        assert_eq!(d.is_software(), d.describe().ends_with("(a software adapter)"), "{}", d.describe());
    }
    let best = if Device::from_name("cuda").is_ok() {
        "cuda"
    } else if hardware_wgpu {
        "wgpu"
    } else {
        "cpu"
    };
    let want = std::env::var("STRATA_EXPECT_DEVICE").unwrap_or_else(|_| best.to_owned());
    if std::env::var_os("STRATA_DEVICE").is_none() || std::env::var_os("STRATA_EXPECT_DEVICE").is_some() {
        assert_eq!(default_device().name(), want, "default {}", default_device().describe());
    }
    assert!(default_device().describe().starts_with(default_device().name()));
    let a = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    assert_eq!(a.device(), default_device());
    // Arrays on different devices combine: the CPU operand is copied to the node's device.
    let host = Array::from_bytes(&3.0f32.to_le_bytes(), &[], DType::F32, Device::Cpu).unwrap();
    assert_eq!((&a * &host).to_vec::<f32>().unwrap(), [3.0, 6.0]);
}

#[test]
fn quantized_matmul_matches_the_dequantized_product() {
    let r =
        |shape: &[usize], seed: u64| random::uniform(-1.0, 1.0, shape, DType::F32, Some(&random::key(seed))).unwrap();
    let close = |a: &Array, b: &Array, what: &str| {
        assert_eq!(a.shape(), b.shape(), "{what}");
        for (i, (p, q)) in a.to_vec::<f32>().unwrap().iter().zip(b.to_vec::<f32>().unwrap()).enumerate() {
            assert!((p - q).abs() <= 1e-4 * q.abs().max(1.0), "{what}[{i}]: {p} vs {q}");
        }
    };
    let modes = [
        QuantMode::mxfp4(),
        QuantMode::mxfp8(MxElement::E4M3),
        QuantMode::nvfp4(),
        QuantMode::affine(4, 64),
        QuantMode::mxint8(),
    ];
    let x = r(&[2, 3, 64], 1);
    for mode in modes {
        // y = x·Wᵀ with W [n, k] = [24, 64].
        let w = r(&[24, 64], 2);
        let q = quantize(&w, &mode).unwrap();
        let wd = dequantize(&q, DType::F32).unwrap();
        let y = quantized_matmul(&x, &q, true).unwrap();
        close(&y, &matmul(&x, &wd.transpose(None).unwrap()).unwrap(), &format!("{mode} x·Wᵀ"));
        // y = x·W with W [k, n] = [64, 128] (quantized along n).
        let w2 = r(&[64, 128], 3);
        let q2 = quantize(&w2, &mode).unwrap();
        let y2 = quantized_matmul(&x, &q2, false).unwrap();
        close(&y2, &matmul(&x, &dequantize(&q2, DType::F32).unwrap()).unwrap(), &format!("{mode} x·W"));
        // The gradient in x is the cotangent times W (no dequantized copy), and vmap maps it.
        let c = r(&[2, 3, 24], 4);
        let cc = c.clone();
        let qq = q.clone();
        let g = grad(move |a: &[Array]| (quantized_matmul(&a[0], &qq, true)? * &cc).sum(None, false), &[])(
            std::slice::from_ref(&x),
        )
        .unwrap();
        close(&g[0], &matmul(&c, &wd).unwrap(), &format!("{mode} gradient"));
        let qv = q.clone();
        let v = vmap(move |a: &[Array]| Ok(vec![quantized_matmul(&a[0], &qv, true)?]), &[Some(1)], &[])(
            std::slice::from_ref(&x),
        )
        .unwrap();
        close(&v[0], &moveaxis(&y, 1, 0).unwrap(), &format!("{mode} vmap"));
    }
    // Bad input names what is wrong.
    let q = quantize(&r(&[8, 32], 5), &QuantMode::mxfp4()).unwrap();
    let e = quantized_matmul(&r(&[2, 16], 6), &q, true).unwrap_err().to_string();
    assert!(e.contains("[.., m, 32]"), "{e}");
    let e = quantize(&r(&[8, 30], 7), &QuantMode::mxfp4()).unwrap_err().to_string();
    assert!(e.contains("30"), "{e}");
}

#[test]
fn parameter_trees_and_async_eval() {
    // A two-layer model's parameters as a tree; the gradient comes back in the same shape.
    let r = |shape: &[usize], seed: u64| random::normal(shape, DType::F32, 0.0, 1.0, Some(&random::key(seed))).unwrap();
    let params = Tree::map([
        ("layers", Tree::List(vec![Tree::map([("w", Tree::from(r(&[4, 8], 1))), ("b", Tree::from(r(&[8], 2)))])])),
        ("out", Tree::from(r(&[8, 1], 3))),
    ]);
    let x = r(&[5, 4], 4);
    let model = move |p: &Tree| -> Result<Array> {
        let h = tanh(&(matmul(&x, p.get("layers.0.w").unwrap())? + p.get("layers.0.b").unwrap()))?;
        square(&matmul(&h, p.get("out").unwrap())?)?.mean(None, false)
    };
    let (loss, g) = value_and_grad_tree(&model)(&params).unwrap();
    let names: Vec<String> = g.flatten().into_iter().map(|(k, _)| k).collect();
    assert_eq!(names, ["layers.0.b", "layers.0.w", "out"]);
    // Against the flat value_and_grad on the same leaves.
    let leaves: Vec<Array> = params.leaves().into_iter().cloned().collect();
    let structure = params.clone();
    let flat = move |xs: &[Array]| model(&structure.with_leaves(xs)?);
    let (v, gs) = value_and_grad(flat, &[])(&leaves).unwrap();
    assert_eq!(v.item::<f32>().unwrap(), loss.item::<f32>().unwrap());
    for (a, b) in g.leaves().iter().zip(&gs) {
        assert_eq!(a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    }
    // An SGD step over the tree, and structure mismatches as errors.
    let stepped = params.zip_map(&g, &mut |p, d| Ok(p - d * 0.1)).unwrap();
    assert_eq!(stepped.get("out").unwrap().shape(), [8, 1]);
    assert!(params.zip_map(&Tree::List(vec![]), &mut |p, _| Ok(p.clone())).is_err());
    assert!(params.with_leaves(&leaves[..2]).is_err());

    // async_eval: the work happens on another thread; waiting returns its result; reading an
    // array being evaluated meanwhile is safe (it waits for or repeats no node).
    let big = arange(0.0, 200_000.0, 1.0, DType::F32).unwrap();
    let s = sin(&big).unwrap().sum(None, false).unwrap();
    let h = async_eval(&[&s]);
    let t = cos(&big).unwrap().sum(None, false).unwrap();
    let (sv, tv) = (s.item::<f32>().unwrap(), t.item::<f32>().unwrap());
    h.wait().unwrap();
    assert!(s.is_evaluated() && sv.is_finite() && tv.is_finite());
    let bad = take(&big, &Array::from_slice(&[300_000i32], &[1]).unwrap(), Some(0)).unwrap();
    assert!(async_eval(&[&bad]).wait().unwrap_err().to_string().contains("out of range"));
}

#[test]
fn linalg_factorizations_reconstruct_and_bad_input_is_an_error() {
    let r = |shape: &[usize], seed: u64| random::normal(shape, DType::F64, 0.0, 1.0, Some(&random::key(seed))).unwrap();
    let close = |a: &Array, b: &Array, what: &str| {
        assert_eq!(a.shape(), b.shape(), "{what}");
        for (i, (p, q)) in a.to_vec::<f64>().unwrap().iter().zip(b.to_vec::<f64>().unwrap()).enumerate() {
            assert!((p - q).abs() <= 1e-10 * q.abs().max(1.0), "{what}[{i}]: {p} vs {q}");
        }
    };
    let t = |x: &Array| swapaxes(x, -1, -2).unwrap();
    // Small shapes, and shapes past the factorizations' block sizes.
    for (m, n) in [(5, 3), (3, 5), (4, 4), (150, 70), (70, 150), (130, 130)] {
        let a = r(&[2, m, n], m as u64 * 10 + n as u64);
        let (q, rr) = linalg::qr(&a).unwrap();
        close(&matmul(&q, &rr).unwrap(), &a, "Q·R");
        let k = m.min(n);
        close(
            &matmul(&t(&q), &q).unwrap(),
            &broadcast_to(&identity(k, DType::F64).unwrap(), &[2, k, k]).unwrap(),
            "QᵀQ",
        );
        let (u, s, vt) = linalg::svd(&a).unwrap();
        close(&matmul(&(&u * expand_dims(&s, -2).unwrap()), &vt).unwrap(), &a, "U·S·Vᵀ");
        close(
            &matmul(&t(&u), &u).unwrap(),
            &broadcast_to(&identity(k, DType::F64).unwrap(), &[2, k, k]).unwrap(),
            "UᵀU",
        );
    }
    for n in [4, 140] {
        let x = r(&[3, n, n], 7);
        let spd = matmul(&x, &t(&x)).unwrap() + identity(n, DType::F64).unwrap();
        let l = linalg::cholesky(&spd).unwrap();
        close(&matmul(&l, &t(&l)).unwrap(), &spd, "L·Lᵀ");
        let upper =
            l.to_vec::<f64>().unwrap().iter().enumerate().filter(|(p, _)| p % n > p / n % n).all(|(_, v)| *v == 0.0);
        assert!(upper, "L has nonzeros above its diagonal");
        let (w, v) = linalg::eigh(&spd).unwrap();
        close(&matmul(&(&v * expand_dims(&w, -2).unwrap()), &t(&v)).unwrap(), &spd, "V·diag(w)·Vᵀ");
        let w = w.to_vec::<f64>().unwrap();
        assert!(w.chunks(n).all(|c| c.windows(2).all(|p| p[0] <= p[1])), "eigenvalues ascending");
        // A = L[p]·U and a solve's residual.
        let (p, lo, up) = linalg::lu(&x).unwrap();
        let lp = take_along_axis(&lo, &broadcast_to(&expand_dims(&p, -1).unwrap(), x.shape()).unwrap(), -2).unwrap();
        close(&matmul(&lp, &up).unwrap(), &x, "L[p]·U");
        let b = r(&[3, n, 5], 8);
        close(&matmul(&x, &linalg::solve(&x, &b).unwrap()).unwrap(), &b, "A·solve(A, b)");
    }
    let x = r(&[3, 4, 4], 7);
    let spd = matmul(&x, &t(&x)).unwrap() + identity(4, DType::F64).unwrap();
    // An exactly zero pivot (column 1 after the first step) leaves that column as LAPACK's
    // getrf does: finite factors that still multiply back.
    let zero_pivot = Array::from_slice(&[1.0f64, 2.0, 3.0, 2.0, 4.0, 7.0, 4.0, 8.0, 1.0], &[3, 3]).unwrap();
    let (f, swaps) = linalg::lu_factor(&zero_pivot).unwrap();
    assert!(f.to_vec::<f64>().unwrap().iter().all(|v| v.is_finite()), "{:?}", f.to_vec::<f64>());
    assert_eq!(swaps.to_vec::<u32>().unwrap()[0], 2);
    let (p, lo, up) = linalg::lu(&zero_pivot).unwrap();
    let lp = take_along_axis(&lo, &broadcast_to(&expand_dims(&p, -1).unwrap(), &[3, 3]).unwrap(), -2).unwrap();
    close(&matmul(&lp, &up).unwrap(), &zero_pivot, "L[p]·U, singular");
    assert_eq!(linalg::det(&zero_pivot).unwrap().item::<f64>().unwrap(), 0.0);
    // Empty matrices (and batches of them) factor into empty results.
    for s in [&[0usize, 0][..], &[2, 0, 0], &[0, 3, 3]] {
        let e = strata::zeros(s, DType::F64).unwrap();
        let (w, v) = linalg::eigh(&e).unwrap();
        let (u, sv, vt) = linalg::svd(&e).unwrap();
        let (q, rr) = linalg::qr(&e).unwrap();
        let (ew, ev) = linalg::eig(&e).unwrap();
        let all =
            [linalg::solve(&e, &e).unwrap(), linalg::det(&e).unwrap(), linalg::cholesky(&e).unwrap(), w, v, u, sv];
        strata::eval_all(&all.iter().chain([&vt, &q, &rr, &ew, &ev]).collect::<Vec<_>>()).unwrap();
        assert_eq!(all[3].shape(), &s[..s.len() - 1], "eigh of {s:?}");
    }
    // A rank-deficient QR keeps R where LAPACK (and NumPy) leave it, no staircase.
    let deficient = Array::from_slice(&[0.0f64, 1.0, 0.0, 1.0], &[2, 2]).unwrap();
    let (q, rr) = linalg::qr(&deficient).unwrap();
    assert_eq!(rr.to_vec::<f64>().unwrap(), [0.0, 1.0, 0.0, 1.0]);
    close(&matmul(&q, &rr).unwrap(), &deficient, "Q·R, rank-deficient");
    // NaN makes the iterative factorizations an error, not a hang or a panic.
    let nan = Array::from_slice(&[1.0f64, f64::NAN, f64::NAN, 1.0], &[2, 2]).unwrap();
    for e in
        [linalg::eigh(&nan).unwrap().0.eval(), linalg::svd(&nan).unwrap().1.eval(), linalg::qr(&nan).unwrap().1.eval()]
    {
        assert!(e.unwrap_err().to_string().contains("NaN"));
    }
    // vmap over a host function takes the batch as a leading axis.
    let per = vmap(|a: &[Array]| Ok(vec![linalg::det(&a[0])?]), &[Some(0)], &[])(std::slice::from_ref(&spd)).unwrap();
    close(&per[0], &linalg::det(&spd).unwrap(), "vmap(det)");
    // Bad input.
    let sing = Array::from_slice(&[1.0f64, 2.0, 2.0, 4.0], &[2, 2]).unwrap();
    let e = linalg::inv(&sing).unwrap().eval().unwrap_err().to_string();
    assert!(e.contains("singular"), "{e}");
    assert_eq!(linalg::det(&sing).unwrap().item::<f64>().unwrap(), 0.0);
    let e = linalg::cholesky(&(&sing * -1.0)).unwrap().eval().unwrap_err().to_string();
    assert!(e.contains("not positive definite"), "{e}");
    assert!(linalg::solve(&r(&[3, 2], 1), &r(&[3], 2)).unwrap_err().to_string().contains("square"));
    assert!(linalg::solve(&r(&[3, 3], 1), &r(&[4], 2)).unwrap_err().to_string().contains("do not fit"));
    // f32 in, f32 out.
    let f = linalg::inv(&spd.astype(DType::F32).unwrap()).unwrap();
    assert_eq!(f.dtype(), DType::F32);
}

/// `eig` of general matrices: A v = w v for every pair, unit columns, on random real
/// matrices (complex pairs among their eigenvalues), a complex one, a defective one and a
/// triangular one; eigvals the same values.
#[test]
fn eig_pairs_satisfy_a_v_equals_w_v() {
    let pairs = |z: &Array| -> Vec<(f64, f64)> {
        let (re, im) = (real(z).unwrap().to_vec::<f64>().unwrap(), imag(z).unwrap().to_vec::<f64>().unwrap());
        re.into_iter().zip(im).collect()
    };
    let check = |a: &Array, what: &str| {
        let (w, v) = linalg::eig(a).unwrap();
        let n = a.shape()[a.ndim() - 1];
        let count: usize = a.shape()[..a.ndim() - 2].iter().product();
        assert_eq!(w.shape(), [&a.shape()[..a.ndim() - 2], &[n]].concat().as_slice(), "{what}: w shape");
        assert_eq!(v.shape(), a.shape(), "{what}: v shape");
        let (am, wv, vv) = (pairs(&a.astype(DType::C64).unwrap()), pairs(&w), pairs(&v));
        let mul = |(a, b): (f64, f64), (c, d): (f64, f64)| (a * c - b * d, a * d + b * c);
        for m in 0..count {
            let norm: f64 = am[m * n * n..(m + 1) * n * n].iter().map(|(r, i)| r.hypot(*i)).fold(0.0, f64::max);
            for k in 0..n {
                let col = |i: usize| vv[m * n * n + i * n + k];
                let len: f64 = (0..n).map(|i| col(i).0.powi(2) + col(i).1.powi(2)).sum::<f64>().sqrt();
                assert!((len - 1.0).abs() < 1e-5, "{what}: |v{k}| = {len}");
                for i in 0..n {
                    let av = (0..n).fold((0.0, 0.0), |s, j| {
                        let p = mul(am[m * n * n + i * n + j], col(j));
                        (s.0 + p.0, s.1 + p.1)
                    });
                    let wv_ = mul(wv[m * n + k], col(i));
                    let err = (av.0 - wv_.0).hypot(av.1 - wv_.1);
                    assert!(err < 1e-4 * (1.0 + norm), "{what}: matrix {m}, (A v{k} − w v{k})[{i}] = {err}");
                }
            }
        }
        let w2 = linalg::eigvals(a).unwrap();
        assert_eq!(pairs(&w2), wv, "{what}: eigvals");
    };
    let r = |shape: &[usize], seed: u64| random::normal(shape, DType::F32, 0.0, 1.0, Some(&random::key(seed))).unwrap();
    check(&r(&[3, 6, 6], 11), "random 6 × 6");
    check(&r(&[1, 1], 12), "1 × 1");
    check(&r(&[17, 17], 13), "random 17 × 17");
    check(&complex(&r(&[5, 5], 14), &r(&[5, 5], 15)).unwrap(), "complex 5 × 5");
    // Past the eigensolver's block sizes.
    check(&r(&[80, 80], 16), "random 80 × 80");
    check(&complex(&r(&[40, 40], 17), &r(&[40, 40], 18)).unwrap(), "complex 40 × 40");
    let jordan = Array::from_slice(&[2.0f32, 1.0, 0.0, 0.0, 2.0, 1.0, 0.0, 0.0, 2.0], &[3, 3]).unwrap();
    check(&jordan, "a Jordan block");
    check(&Array::from_slice(&[1.0f32, 5.0, 0.0, 3.0], &[2, 2]).unwrap(), "triangular");
    assert!(linalg::eig(&r(&[3, 4], 1)).unwrap_err().to_string().contains("square"));
}

/// `scaled_matmul` on fp8 arrays against the same product of the widened values, per-tensor and
/// per-row scales, the weight seen transposed (the tensor-core layout) and not; bad calls and
/// differentiation are errors.
#[test]
fn scaled_fp8_matmul_and_its_errors() {
    let (m, n, k) = (5, 7, 33);
    let a =
        random::uniform(-2.0, 2.0, &[m, k], DType::F32, Some(&random::key(1))).unwrap().astype(DType::F8E4M3).unwrap();
    let w =
        random::uniform(-2.0, 2.0, &[n, k], DType::F32, Some(&random::key(2))).unwrap().astype(DType::F8E5M2).unwrap();
    let wide = |x: &Array| x.astype(DType::F32).unwrap();
    let rows = random::uniform(0.5, 2.0, &[m], DType::F32, Some(&random::key(3))).unwrap();
    let cols = random::uniform(0.5, 2.0, &[n], DType::F32, Some(&random::key(4))).unwrap();
    let one = Array::from_slice(&[0.75f32], &[]).unwrap();
    let wt = w.transpose(None).unwrap();
    // fp8 views with strides read as any other type's (a transposed view is not its storage).
    assert_eq!(wide(&wt).to_vec::<f32>().unwrap(), wide(&w).transpose(None).unwrap().to_vec::<f32>().unwrap());
    let back = contiguous(&wide(&wt)).unwrap().astype(DType::F8E5M2).unwrap();
    assert_eq!(wide(&back).to_vec::<f32>().unwrap(), wide(&wt).to_vec::<f32>().unwrap());
    let plain = matmul(&wide(&a), &wide(&wt)).unwrap();
    for (b, sa, sb) in [(&wt, &rows, &cols), (&contiguous(&wt).unwrap(), &one, &one)] {
        let got = scaled_matmul(&a, b, sa, sb, DType::F32).unwrap().to_vec::<f32>().unwrap();
        let sa = if sa.ndim() == 0 { sa.clone() } else { sa.reshape(&[m as isize, 1]).unwrap() };
        let want = (&(&plain * &sa) * sb).to_vec::<f32>().unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{g} vs {w}");
        }
    }
    let bf = scaled_matmul(&a, &wt, &one, &one, DType::BF16).unwrap();
    assert_eq!(bf.dtype(), DType::BF16);
    let msg = |r: Result<Array>| r.unwrap_err().to_string();
    let e = msg(scaled_matmul(&wide(&a), &wide(&wt), &one, &one, DType::F32));
    assert!(e.contains("float8_e4m3fn or float8_e5m2"), "{e}");
    let e = msg(scaled_matmul(&a, &wt, &cols, &one, DType::F32));
    assert!(e.contains("scale_a has shape [7]; it needs [] or [5]"), "{e}");
    let e = msg(scaled_matmul(&a, &a, &one, &one, DType::F32));
    assert!(e.contains("do not chain"), "{e}");
    let e = msg(scaled_matmul(&a, &wt, &one, &one, DType::I32));
    assert!(e.contains("unsupported types"), "{e}");
    let f = |x: &[Array]| scaled_matmul(&a, &wt, &x[0], &one, DType::F32)?.sum(None, false);
    let e = grad(f, &[0])(&[Array::from_slice(&[1.0f32], &[]).unwrap()]).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("no derivative"), "{e}");
}

/// Bad arguments to the linalg and FFT functions are errors that say what is wrong, whether
/// found when the graph is built or when it runs; none panics.
#[test]
fn linalg_and_fft_bad_input_is_an_error() {
    let r = |shape: &[usize]| random::normal(shape, DType::F64, 0.0, 1.0, Some(&random::key(3))).unwrap();
    let message = |what: &str, got: Result<Array>| -> String {
        match got.and_then(|a| a.eval().map(|_| a)) {
            Ok(a) => panic!("{what}: no error, got shape {:?}", a.shape()),
            Err(e) => e.to_string(),
        }
    };
    let expect = |what: &str, got: Result<Array>, words: &str| {
        let e = message(what, got);
        assert!(e.contains(words), "{what}: {e}");
    };
    let (m, v, sq) = (r(&[3, 4]), r(&[4]), r(&[2, 3, 3]));
    expect("solve_triangular of a wide matrix", linalg::solve_triangular(&m, &v, true), "square");
    expect("solve_triangular with a b that does not fit", linalg::solve_triangular(&sq, &r(&[2, 4, 1]), false), "fit");
    expect("cholesky_inv of a wide matrix", linalg::cholesky_inv(&m, false), "square");
    expect("cross of 4-vectors", linalg::cross(&v, &v), "3-vectors");
    expect("cross that does not broadcast", linalg::cross(&r(&[2, 3]), &r(&[4, 3])), "broadcast");
    expect("matrix norm of a vector", linalg::norm(&v, None, true), "[..., m, n]");
    expect("matrix norm of order 3", linalg::norm(&m, Some(3.0), true), "order 3");
    expect("nuclear norm of a vector", linalg::norm(&v, Some(f64::NAN), false), "vector");
    expect("pinv of a vector", linalg::pinv(&v, 1e-15), "[..., m, n]");
    expect("qr of a vector", linalg::qr(&v).map(|q| q.0), "[..., m, n]");
    expect("lu of a wide matrix", linalg::lu(&m).map(|l| l.1), "square");
    expect("eigh of a wide matrix", linalg::eigh(&m).map(|e| e.0), "square");
    expect("eigvals of a wide matrix", linalg::eigvals(&m), "square");
    let z = complex(&m, &m).unwrap();
    expect("fft2 of a vector", fft::fft2(&v, None, None), "out of range");
    expect("fftn, lengths for other axes", fft::fftn(&z, Some(&[2, 3]), Some(&[0])), "2 lengths for 1 axes");
    expect("ifft2, an axis twice", fft::ifft2(&z, None, Some(&[1, -1])), "repeated");
    expect("rfft2 to length 0", fft::rfft2(&m, Some(&[0, 4]), None), "length 0");
    expect("irfft2 of one frequency", fft::irfft2(&r(&[3, 1]), None, None), "length 0");
    expect("fft of an empty axis", fft::fft(&r(&[2, 0]), None, -1), "length 0");
    expect("fft of a scalar", fft::fft(&Array::scalar(1.0f32), None, -1), "out of range");
    expect("fftshift, axis out of range", fft::fftshift(&m, Some(&[2])), "out of range");
}

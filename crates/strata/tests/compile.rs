//! `compile` against the uncompiled graph, on fresh random inputs.

use strata::*;

mod common;

fn rand(shape: &[usize], seed: u64, dtype: DType) -> Array {
    (common::rand(shape, seed) * 2.0).astype(dtype).unwrap()
}

fn gelu(x: &Array) -> Result<Array> {
    Ok(0.5 * x * (1.0 + tanh(&(0.7978845608028654 * (x + 0.044715 * x * x * x)))?))
}

/// Several outputs, an intermediate that is also an output, a reduction between two chains,
/// a captured constant, broadcasting and a scalar.
fn mixed(a: &[Array]) -> Result<Vec<Array>> {
    let (x, y) = (&a[0], &a[1]);
    let h = gelu(&(x * y - 1.0))?;
    let s = sum(&h, Some(&[-1]), true)?;
    let z = exp(&(&h - &s))? * sigmoid(y)? + Array::scalar(0.25).astype(x.dtype())?;
    Ok(vec![z, h.clone(), sqrt(&(square(x)? + 1.0))?])
}

fn assert_close(a: &Array, b: &Array) {
    assert_eq!(a.shape(), b.shape());
    assert_eq!(a.dtype(), b.dtype());
    let (x, y) = (a.to_vec::<f64>().unwrap(), b.to_vec::<f64>().unwrap());
    let tol = if a.dtype() == DType::F64 { 1e-14 } else { 2e-6 };
    for (i, (p, q)) in x.iter().zip(&y).enumerate() {
        assert!((p - q).abs() <= tol * q.abs().max(1.0), "element {i}: {p} vs {q}");
    }
}

#[test]
fn compiled_matches_uncompiled() {
    let f = compile(mixed);
    for (i, (shape, dtype)) in
        [(vec![3, 70_000], DType::F32), (vec![5, 7], DType::F64), (vec![1, 1], DType::F32), (vec![4, 0], DType::F32)]
            .into_iter()
            .enumerate()
    {
        let args = [rand(&shape, 1 + i as u64, dtype), rand(&[shape[1]], 10 + i as u64, dtype)];
        let got = f.call(&args).unwrap();
        let want = mixed(&args).unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert_close(g, w);
        }
    }
    assert_eq!(f.traces(), 4);
    // Same signature again: replayed, not retraced.
    f.call(&[rand(&[5, 7], 3, DType::F64), rand(&[7], 4, DType::F64)]).unwrap();
    assert_eq!(f.traces(), 4);
}

#[test]
fn strided_arguments_and_gradients_through_fused_kernels() {
    let f = compile(|a: &[Array]| Ok(vec![gelu(&a[0])?]));
    let x = rand(&[64, 48], 5, DType::F64).transpose(None).unwrap();
    assert_close(&f.call(std::slice::from_ref(&x)).unwrap()[0], &gelu(&x).unwrap());
    // grad of a compiled function (its fused kernel differentiates as the ops it stands for).
    let loss = |a: &[Array]| f.call(a)?[0].sum(None, false);
    let plain = |a: &[Array]| gelu(&a[0])?.sum(None, false);
    let g1 = grad(loss, &[])(std::slice::from_ref(&x)).unwrap();
    let g2 = grad(plain, &[])(std::slice::from_ref(&x)).unwrap();
    assert_close(&g1[0], &g2[0]);
}

#[test]
fn errors_surface_when_tracing() {
    let f = compile(|a: &[Array]| Ok(vec![&a[0] + &a[1]]));
    let e = f.call(&[rand(&[2, 3], 1, DType::F32), rand(&[4], 2, DType::F32)]).unwrap_err().to_string();
    assert!(e.contains("[2, 3]") && e.contains("[4]"), "{e}");
}

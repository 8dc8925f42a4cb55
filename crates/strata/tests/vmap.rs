//! `vmap` against a loop over examples, and composed with `grad`.

use strata::*;

mod common;
use common::rand;

fn close(a: &Array, b: &Array) {
    assert_eq!(a.shape(), b.shape());
    for (x, y) in a.to_vec::<f64>().unwrap().iter().zip(b.to_vec::<f64>().unwrap()) {
        assert!((x - y).abs() < 1e-12 * y.abs().max(1.0), "{x} vs {y}");
    }
}

/// One example: x [3, 4], w [4, 5] (unmapped), v [4].
fn example(a: &[Array]) -> Result<Vec<Array>> {
    let (x, w, v) = (&a[0], &a[1], &a[2]);
    let h = tanh(&matmul(x, w)?)?;
    let s = softmax(&h, Some(&[-1]))?;
    let t = concatenate(&[&s.transpose(None)?, &slice(&h.transpose(None)?, &[0, 0], &[5, 3], &[1, 2])?], 1)?;
    let r = sum(&(x * v), Some(&[0]), false)?; // [4]
    let c = cumsum(&r, 0, false, true)?;
    let p = pad(&c, &[(1, 1)], 0.5)?;
    Ok(vec![t, p, logsumexp(&h, None, false)?])
}

#[test]
fn vmap_matches_a_loop() {
    let (b, w, v) = (6, rand(&[4, 5], 2), rand(&[4], 3));
    // Mapped over axis 1 of x (shape [3, B, 4]); outputs stacked along out_axes.
    let xs = rand(&[3, b, 4], 1);
    let f = vmap(example, &[Some(1), None, None], &[0, -1, 0]);
    let got = f(&[xs.clone(), w.clone(), v.clone()]).unwrap();
    let mut per: Vec<Vec<Array>> = vec![Vec::new(); 3];
    for i in 0..b {
        let xi = squeeze(&slice_axis(&xs, 1, i as isize, i as isize + 1).unwrap(), Some(&[1])).unwrap();
        for (j, o) in example(&[xi, w.clone(), v.clone()]).unwrap().into_iter().enumerate() {
            per[j].push(o);
        }
    }
    let want = |j: usize, axis: isize| stack(&per[j].iter().collect::<Vec<_>>(), axis).unwrap();
    close(&got[0], &want(0, 0));
    close(&got[1], &want(1, -1));
    close(&got[2], &want(2, 0));
}

#[test]
fn vmap_composes_with_grad() {
    // Per-example gradients: vmap(grad(f)).
    let w = rand(&[4], 5);
    let xs = rand(&[7, 4], 6);
    let f = |a: &[Array]| -> Result<Array> { sum(&sin(&(&a[0] * &a[1]))?, None, false) };
    let per_example = vmap(move |a: &[Array]| grad(f, &[0])(a), &[None, Some(0)], &[]);
    let got = per_example(&[w.clone(), xs.clone()]).unwrap();
    // d/dw Σ sin(w·x) = x·cos(w·x), row by row.
    let want = &xs * cos(&(&xs * &w)).unwrap();
    close(&got[0], &want);
    // grad of a vmapped function.
    let total = |a: &[Array]| -> Result<Array> {
        let m = vmap(|b: &[Array]| Ok(vec![sum(&exp(&(&b[0] * &b[1]))?, None, false)?]), &[Some(0), None], &[])(a)?;
        sum(&m[0], None, false)
    };
    let g = grad(total, &[1])(&[xs.clone(), w.clone()]).unwrap();
    let want = sum(&(&xs * exp(&(&xs * &w)).unwrap()), Some(&[0]), false).unwrap();
    close(&g[0], &want);
}

#[test]
fn vmap_errors() {
    let f = vmap(|a: &[Array]| Ok(vec![a[0].clone()]), &[Some(0), Some(0)], &[]);
    let e = f(&[rand(&[3, 2], 1), rand(&[4, 2], 2)]).unwrap_err().to_string();
    assert!(e.contains("4 examples") && e.contains("3"), "{e}");
    let e = f(&[rand(&[3], 1)]).unwrap_err().to_string();
    assert!(e.contains("1 arguments"), "{e}");
}

#[test]
fn vmap_of_conv_and_sort_matches_a_loop() {
    // x: 5 examples of [2, 6, 3]; w shared, or one per example.
    let xs = rand(&[5, 2, 6, 3], 11);
    let w = rand(&[4, 3, 3], 12);
    let ws = rand(&[5, 4, 3, 3], 13);
    let f = |a: &[Array]| -> Result<Vec<Array>> {
        let y = conv1d(&a[0], &a[1], 2, 1, 1, 1)?;
        Ok(vec![sort(&y, Some(1))?, argsort(&a[0], Some(-1))?])
    };
    let one =
        |a: &Array, i: usize| squeeze(&slice_axis(a, 0, i as isize, i as isize + 1).unwrap(), Some(&[0])).unwrap();
    for (w, axis) in [(&w, None), (&ws, Some(0))] {
        let got = vmap(f, &[Some(0), axis], &[])(&[xs.clone(), w.clone()]).unwrap();
        let per: Vec<Vec<Array>> =
            (0..5).map(|i| f(&[one(&xs, i), if axis.is_some() { one(w, i) } else { w.clone() }]).unwrap()).collect();
        for j in 0..2 {
            close(&got[j], &stack(&per.iter().map(|p| &p[j]).collect::<Vec<_>>(), 0).unwrap());
        }
    }
}

#[test]
fn vmap_of_attention_matches_a_loop() {
    // q mapped over its first axis (3 examples of [1, 2, 4, 8]); k and v shared.
    let qs = rand(&[3, 1, 2, 4, 8], 21);
    let (k, v) = (rand(&[1, 1, 6, 8], 22), rand(&[1, 1, 6, 8], 23));
    let f = |a: &[Array]| -> Result<Vec<Array>> {
        Ok(vec![fast::scaled_dot_product_attention(&a[0], &a[1], &a[2], 0.3, fast::Mask::Causal)?])
    };
    let got = vmap(f, &[Some(0), None, None], &[])(&[qs.clone(), k.clone(), v.clone()]).unwrap();
    let per: Vec<Array> = (0..3)
        .map(|i| {
            let qi = squeeze(&slice_axis(&qs, 0, i, i + 1).unwrap(), Some(&[0])).unwrap();
            f(&[qi, k.clone(), v.clone()]).unwrap().remove(0)
        })
        .collect();
    close(&got[0], &stack(&per.iter().collect::<Vec<_>>(), 0).unwrap());
}

//! Random numbers: determinism, ranges and moments (the bits themselves are checked against
//! MLX in `numpy.rs`).

use strata::*;

#[test]
fn same_key_same_numbers_and_splits_differ() {
    let k = random::key(123);
    let a = random::uniform(0.0, 1.0, &[100], DType::F32, Some(&k)).unwrap().to_vec::<f32>().unwrap();
    let b = random::uniform(0.0, 1.0, &[100], DType::F32, Some(&k)).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(a, b);
    let ks = random::split(&k, 2).unwrap();
    let k1 = squeeze(&slice_axis(&ks, 0, 0, 1).unwrap(), Some(&[0])).unwrap();
    let c = random::uniform(0.0, 1.0, &[100], DType::F32, Some(&k1)).unwrap().to_vec::<f32>().unwrap();
    assert_ne!(a, c);
    random::seed(5);
    let d = random::uniform(0.0, 1.0, &[3], DType::F32, None).unwrap().to_vec::<f32>().unwrap();
    let e = random::uniform(0.0, 1.0, &[3], DType::F32, None).unwrap().to_vec::<f32>().unwrap();
    assert_ne!(d, e, "the global key advances");
    random::seed(5);
    assert_eq!(random::uniform(0.0, 1.0, &[3], DType::F32, None).unwrap().to_vec::<f32>().unwrap(), d);
}

#[test]
fn distributions_have_their_moments() {
    let n = 200_000;
    let k = random::key(9);
    let z = random::normal(&[n], DType::F32, 1.5, 2.0, Some(&k)).unwrap();
    let (m, s) = (
        mean(&z, None, false).unwrap().item::<f32>().unwrap(),
        std(&z, None, false, 0).unwrap().item::<f32>().unwrap(),
    );
    assert!((m - 1.5).abs() < 0.02 && (s - 2.0).abs() < 0.02, "mean {m}, std {s}");
    let r = random::randint(-3, 4, &[n], DType::I32, Some(&k)).unwrap().to_vec::<i32>().unwrap();
    assert!(r.iter().all(|&v| (-3..4).contains(&v)));
    for v in -3..4 {
        let f = r.iter().filter(|&&x| x == v).count() as f64 / n as f64;
        assert!((f - 1.0 / 7.0).abs() < 0.01, "{v}: {f}");
    }
    let b = random::bernoulli(0.3, &[n], Some(&k)).unwrap().astype(DType::F32).unwrap();
    let p = mean(&b, None, false).unwrap().item::<f32>().unwrap();
    assert!((p - 0.3).abs() < 0.01, "{p}");
    let e = random::uniform(0.0, 1.0, &[2], DType::F32, Some(&Array::scalar(1u32))).unwrap_err().to_string();
    assert!(e.contains("uint32 [2]"), "{e}");
}

#[test]
fn vmap_over_keys() {
    let keys = random::split(&random::key(1), 4).unwrap();
    let f = vmap(|a: &[Array]| Ok(vec![random::uniform(0.0, 1.0, &[3], DType::F32, Some(&a[0]))?]), &[Some(0)], &[]);
    let got = f(std::slice::from_ref(&keys)).unwrap()[0].to_vec::<f32>().unwrap();
    for i in 0..4 {
        let k = squeeze(&slice_axis(&keys, 0, i, i + 1).unwrap(), Some(&[0])).unwrap();
        let want = random::uniform(0.0, 1.0, &[3], DType::F32, Some(&k)).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(&got[i as usize * 3..i as usize * 3 + 3], &want[..]);
    }
}

//! nn, optim and io end to end: a training run that reaches a stated accuracy, freezing,
//! update errors, optimizer state through a file, and safetensors/npy files — bit-exact round
//! trips, files written by Python's `safetensors` and NumPy read here, and (checked by
//! `scripts/refs/io_check.py` after the tests) files written here read there.

use std::path::PathBuf;

use strata::nn::{self, Module};
use strata::optim::{self, Optimizer};
use strata::*;

#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../examples/train_mlp.rs"]
mod train_mlp;

fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/nn-test");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn the_spiral_classifier_trains_to_98_percent() {
    let (png, s) = train_mlp::run(&scratch(""), false).unwrap();
    assert!(png.exists() && s.weights.exists());
    assert!(s.loss.1 < s.loss.0 / 5.0, "loss {:?}", s.loss);
    assert!(s.accuracy >= 0.98, "accuracy {}", s.accuracy);
}

#[test]
fn frozen_layers_get_no_gradient_and_bad_updates_are_errors() {
    let mut m =
        nn::Sequential::new().push(nn::Linear::new(3, 4, true).unwrap()).push(nn::Linear::new(4, 2, false).unwrap());
    m.freeze(Some(0), true);
    let t = m.trainable_parameters();
    let names: Vec<String> = t.flatten().into_iter().map(|(k, _)| k).collect();
    assert_eq!(names, ["layers.1.weight"]);
    let x = random::normal(&[5, 3], DType::F32, 0.0, 1.0, Some(&random::key(1))).unwrap();
    let vg = nn::value_and_grad(|m: &nn::Sequential, a: &[Array]| square(&m.forward(&a[0])?)?.sum(None, false));
    let (_, g) = vg(&m, std::slice::from_ref(&x)).unwrap();
    assert_eq!(g.flatten().len(), 1);
    let before = m.parameters().get("layers.0.weight").unwrap().to_vec::<f32>().unwrap();
    let mut opt = optim::Sgd::new(0.1);
    let p = opt.update(&m.trainable_parameters(), &g).unwrap();
    m.update(&p).unwrap();
    assert_eq!(m.parameters().get("layers.0.weight").unwrap().to_vec::<f32>().unwrap(), before);
    // A leaf of the wrong shape names its path.
    let bad = Tree::map([(
        "layers",
        Tree::List(vec![
            Tree::map([("weight", Tree::from(zeros(&[2, 2], DType::F32).unwrap()))]),
            Tree::map::<&str>([]),
        ]),
    )]);
    let e = m.update(&bad).unwrap_err().to_string();
    assert!(e.contains("layers.0.weight has shape [4, 3]"), "{e}");
    // Attention needs [batch, length, dims].
    let mha = nn::MultiHeadAttention::new(8, 2, true).unwrap();
    let e = mha.forward(&strata::ones(&[5, 8], DType::F32).unwrap()).unwrap_err().to_string();
    assert!(e.contains("[batch, length, dims]"), "{e}");
    // Dropout is the identity in evaluation mode, and drops while training.
    let mut d = nn::Sequential::new().push(nn::Dropout::new(0.5).unwrap());
    let ones = strata::ones(&[1000], DType::F32).unwrap();
    let kept = d.forward(&ones).unwrap().to_vec::<f32>().unwrap().iter().filter(|&&v| v != 0.0).count();
    assert!((400..600).contains(&kept), "{kept}");
    d.set_training(false);
    assert_eq!(d.forward(&ones).unwrap().to_vec::<f32>().unwrap(), vec![1.0; 1000]);
}

#[test]
fn optimizer_state_round_trips_through_a_file() {
    let p =
        Tree::map([("w", Tree::from(random::normal(&[3, 3], DType::F32, 0.0, 1.0, Some(&random::key(2))).unwrap()))]);
    let g = p.map_leaves(&mut |a| Ok(a * 0.3)).unwrap();
    let mut a = optim::adamw(1e-2, 0.01);
    let p1 = a.update(&p, &g).unwrap();
    let p2 = a.update(&p1, &g).unwrap();
    let path = scratch("adam_state.safetensors");
    io::save_tree(&path, &a.state()).unwrap();
    // A fresh optimizer (no state of its own yet) takes the state from the file alone.
    let mut b = optim::adamw(1e-2, 0.01);
    b.load_state(&io::load_tree_flat(&path).unwrap()).unwrap();
    let (n1, n2) = (a.update(&p2, &g).unwrap(), b.update(&p2, &g).unwrap());
    assert_eq!(n1.get("w").unwrap().to_vec::<f32>().unwrap(), n2.get("w").unwrap().to_vec::<f32>().unwrap());
    // Schedules and clipping.
    let s = optim::cosine_decay(1.0, 10, 0.0);
    assert!((s.at(5) - 0.5).abs() < 1e-12 && s.at(20) == 0.0);
    let (c, norm) = optim::clip_grad_norm(&g, 0.1).unwrap();
    let cn: f32 = c.leaves()[0].to_vec::<f32>().unwrap().iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((cn - 0.1).abs() < 1e-4 && norm.item::<f32>().unwrap() > 0.1);
}

#[test]
fn files_round_trip_bit_exactly_and_bad_files_are_errors() {
    let k = random::key(3);
    let f = random::normal(&[4, 5], DType::F32, 0.0, 3.0, Some(&k)).unwrap();
    let arrays: Vec<(String, Array)> = [DType::F32, DType::F16, DType::BF16, DType::F64, DType::F8E4M3, DType::F8E5M2]
        .iter()
        .map(|&t| (format!("x_{t}"), f.astype(t).unwrap()))
        .chain([
            ("ids".to_string(), Array::from_slice(&[1i32, -7, 1 << 30], &[3]).unwrap()),
            ("mask".to_string(), greater(&f, &Array::scalar(0.0f32)).unwrap()),
            ("u".to_string(), Array::from_slice(&[u64::MAX, 3], &[2]).unwrap()),
        ])
        .collect();
    let path = scratch("round_trip.safetensors");
    io::save_safetensors(&path, &arrays, None).unwrap();
    // (The file orders tensors its own way: by alignment, then name.)
    let back: std::collections::BTreeMap<String, Array> = io::load_safetensors(&path).unwrap().into_iter().collect();
    assert_eq!(back.len(), arrays.len());
    for (n, a) in &arrays {
        let b = &back[n];
        assert_eq!((a.dtype(), a.shape()), (b.dtype(), b.shape()), "{n}");
        assert_eq!(a.to_bytes().unwrap(), b.to_bytes().unwrap(), "{n}");
    }
    // A truncated file, a missing tensor and a shape mismatch name what is wrong.
    let bytes = std::fs::read(&path).unwrap();
    let cut = scratch("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = io::load_safetensors(&cut).unwrap_err().to_string();
    assert!(e.contains("cut.safetensors") && e.contains("not a valid safetensors file"), "{e}");
    let like = Tree::map([("nope", Tree::from(zeros(&[1], DType::F32).unwrap()))]);
    assert!(io::load_tree(&path, &like).unwrap_err().to_string().contains("no tensor named nope"));
    let like = Tree::map([("x_float32", Tree::from(zeros(&[5, 4], DType::F32).unwrap()))]);
    assert!(io::load_tree(&path, &like).unwrap_err().to_string().contains("x_float32 has shape [4, 5]"));
    // .npy
    for (n, a) in &arrays {
        if matches!(a.dtype(), DType::BF16 | DType::F8E4M3 | DType::F8E5M2) {
            assert!(io::save_npy(&scratch("x.npy"), a).is_err(), "{n}: NumPy has no such type");
            continue;
        }
        let p = scratch(&format!("{n}.npy"));
        io::save_npy(&p, a).unwrap();
        let b = io::load_npy(&p).unwrap();
        assert_eq!((a.dtype(), a.shape()), (b.dtype(), b.shape()));
        assert_eq!(a.to_bytes().unwrap(), b.to_bytes().unwrap(), "{n}.npy");
    }
    let junk = scratch("junk.npy");
    std::fs::write(&junk, b"not numpy at all").unwrap();
    assert!(io::load_npy(&junk).unwrap_err().to_string().contains("not a .npy file"));
    // .npz, stored and deflated; a corrupt archive and a corrupt member are errors naming them.
    let npy_ok: Vec<(&str, &Array)> = arrays
        .iter()
        .filter(|(_, a)| !matches!(a.dtype(), DType::BF16 | DType::F8E4M3 | DType::F8E5M2))
        .map(|(n, a)| (n.as_str(), a))
        .collect();
    for compress in [false, true] {
        let p = scratch("round_trip.npz");
        io::save_npz(&p, &npy_ok, compress).unwrap();
        let back = io::load_npz(&p).unwrap();
        assert_eq!(back.len(), npy_ok.len());
        for ((n, a), (m, b)) in npy_ok.iter().zip(&back) {
            assert_eq!((*n, a.dtype(), a.shape()), (m.as_str(), b.dtype(), b.shape()));
            assert_eq!(a.to_bytes().unwrap(), b.to_bytes().unwrap(), "{n} in .npz");
        }
    }
    let e = io::load_npz(&junk).unwrap_err().to_string();
    assert!(e.contains("junk.npy") && e.contains("not a .npz"), "{e}");
    let bad = scratch("bad_member.npz");
    {
        use std::io::Write;
        let mut z = zip::ZipWriter::new(std::fs::File::create(&bad).unwrap());
        z.start_file("w.npy", zip::write::SimpleFileOptions::default()).unwrap();
        z.write_all(b"\x93NUMPY garbage").unwrap();
        z.finish().unwrap();
    }
    let e = io::load_npz(&bad).unwrap_err().to_string();
    assert!(e.contains("bad_member.npz") && e.contains("w:"), "{e}");

    // For Python: a file of known values that scripts/refs/io_check.py reads back.
    if let Some(dir) = std::env::var_os("STRATA_IO_EXPORT") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        let keep: Vec<(String, Array)> = arrays
            .iter()
            .filter(|(_, a)| !matches!(a.dtype(), DType::BF16 | DType::F8E4M3 | DType::F8E5M2))
            .cloned()
            .collect();
        io::save_safetensors(&dir.join("from_rust.safetensors"), &keep, None).unwrap();
        let json: serde_json::Map<String, serde_json::Value> = keep
            .iter()
            .map(|(n, a)| (n.clone(), serde_json::json!({"dtype": a.dtype().to_string(), "shape": a.shape(), "data": a.to_vec::<f64>().unwrap()})))
            .collect();
        std::fs::write(dir.join("from_rust.json"), serde_json::Value::Object(json).to_string()).unwrap();
        io::save_npy(&dir.join("from_rust.npy"), &keep[0].1).unwrap();
        let named: Vec<(&str, &Array)> = keep.iter().map(|(n, a)| (n.as_str(), a)).collect();
        io::save_npz(&dir.join("from_rust.npz"), &named, true).unwrap();
    }
}

#[test]
fn files_written_by_python_load_with_their_values() {
    let root = std::env::var_os("STRATA_REFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/refs"));
    let dir = root.join("io");
    let want: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("values.json"))
            .unwrap_or_else(|e| panic!("{}: {e}; run scripts/test (it writes the Python files) first", dir.display())),
    )
    .unwrap();
    let got = io::load_safetensors(&dir.join("from_python.safetensors")).unwrap();
    let want = want.as_object().unwrap();
    assert_eq!(got.len(), want.len());
    for (name, a) in &got {
        let w = &want[name];
        assert_eq!(a.dtype().to_string(), w["dtype"].as_str().unwrap(), "{name}");
        let shape: Vec<usize> = w["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(a.shape(), shape, "{name}");
        let vals: Vec<f64> = w["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(a.to_vec::<f64>().unwrap(), vals, "{name}");
        let npy = io::load_npy(&dir.join(format!("{name}.npy"))).unwrap();
        assert_eq!(npy.to_vec::<f64>().unwrap(), vals, "{name}.npy");
    }
    // np.savez and np.savez_compressed archives of the same arrays.
    for file in ["from_python.npz", "from_python_compressed.npz"] {
        let got = io::load_npz(&dir.join(file)).unwrap();
        assert_eq!(got.len(), want.len(), "{file}");
        for (name, a) in &got {
            let vals: Vec<f64> = want[name]["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(a.dtype().to_string(), want[name]["dtype"].as_str().unwrap(), "{file}: {name}");
            assert_eq!(a.to_vec::<f64>().unwrap(), vals, "{file}: {name}");
        }
    }
}

#[test]
fn a_transformer_learns_to_negate_and_batch_norm_tracks_its_statistics() {
    // A one-layer encoder taught to negate its input (its residual path starts near the
    // identity, so the loss starts near 4): the loss falls by 5× in 80 Adam steps.
    let model = nn::TransformerEncoder::new(1, 16, 4, Some(32), 0.0, true).unwrap();
    let x = random::normal(&[4, 6, 16], DType::F32, 0.0, 1.0, Some(&random::key(3))).unwrap();
    let step = nn::value_and_grad(|m: &nn::TransformerEncoder, a: &[Array]| {
        nn::losses::mse(&m.forward_masked(&a[0], fast::Mask::Causal)?, &negative(&a[0])?)
    });
    let mut opt = optim::Adam::new(1e-2);
    let mut m = model;
    let first = step(&m, std::slice::from_ref(&x)).unwrap().0.item::<f32>().unwrap();
    for _ in 0..80 {
        let (_, g) = step(&m, std::slice::from_ref(&x)).unwrap();
        let p = opt.update(&m.trainable_parameters(), &g).unwrap();
        m.update(&p).unwrap();
        eval_all(&m.parameters().leaves()).unwrap();
    }
    let last = step(&m, std::slice::from_ref(&x)).unwrap().0.item::<f32>().unwrap();
    assert!(last < first / 5.0, "{first} -> {last}");
    assert!(m.parameters().flatten().iter().any(|(n, _)| n == "layers.0.attention.query_proj.weight"));

    // BatchNorm: a step through value_and_grad (which runs a clone) moves the model's running
    // statistics; they are parameters but not trainable ones.
    let bn = nn::BatchNorm::new(3, 1e-5, 0.1, true).unwrap();
    let xb = random::normal(&[8, 3], DType::F32, 2.0, 1.0, Some(&random::key(4))).unwrap();
    let loss = nn::value_and_grad(|m: &nn::BatchNorm, a: &[Array]| sum(&square(&m.forward(&a[0])?)?, None, false));
    let (_, g) = loss(&bn, std::slice::from_ref(&xb)).unwrap();
    let mean = bn.running_stats().0.to_vec::<f32>().unwrap();
    assert!(mean.iter().all(|&v| v > 0.05), "running mean {mean:?}");
    assert_eq!(g.flatten().len(), 2);
    assert_eq!(bn.parameters().flatten().len(), 4);
    let one = random::normal(&[1, 3], DType::F32, 0.0, 1.0, None).unwrap();
    assert!(bn.forward(&one).unwrap_err().to_string().contains("one value per channel"));
    let bl = nn::Bilinear::new(2, 3, 4, true).unwrap();
    assert!(bl.forward(&one).unwrap_err().to_string().contains("forward_pair"));
    assert!(bl.forward_pair(&one, &one).unwrap_err().to_string().contains("[..., 2]"));
}

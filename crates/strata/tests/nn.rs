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
fn accuracy_counts_rows_whose_largest_logit_is_the_target() {
    // Rows 0, 2 and 3 are right, row 1 wrong (its largest entry is at 0): 3/4 for every integer
    // type of the targets (compared as 32-bit integers, or 64-bit ones for int64 targets).
    let logits =
        Array::from_slice(&[0.1f32, 2.0, -1.0, 3.0, 0.5, 0.2, -2.0, -3.0, -0.5, 0.0, 4.0, 3.5], &[4, 3]).unwrap();
    for t in [DType::U32, DType::I32, DType::U8] {
        let targets = Array::from_slice(&[1u32, 2, 2, 1], &[4]).unwrap().astype(t).unwrap();
        assert_eq!(nn::losses::accuracy(&logits, &targets).unwrap(), 0.75, "{t}");
    }
    let targets = Array::from_slice(&[1i64, 2, 2, 1], &[4]).unwrap();
    assert_eq!(nn::losses::accuracy(&logits, &targets).unwrap(), 0.75, "int64");
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
    // Another type is an error unless asked for (load_tree_cast).
    let like = Tree::map([("x_float16", Tree::from(zeros(&[4, 5], DType::F32).unwrap()))]);
    let e = io::load_tree(&path, &like).unwrap_err().to_string();
    assert!(e.contains("x_float16 is float16; the model has float32"), "{e}");
    let cast = io::load_tree_cast(&path, &like).unwrap();
    let want = back["x_float16"].astype(DType::F32).unwrap();
    assert_eq!(cast.get("x_float16").unwrap().to_bytes().unwrap(), want.to_bytes().unwrap());
    // A tensor whose bytes the file does not hold (cut short, or fewer than its shape needs)
    // is named.
    let header = |h: &str| {
        let mut b = (h.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(h.as_bytes());
        b
    };
    let short = scratch("short_tensor.safetensors");
    let mut bytes = header(
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[4,5],"data_offsets":[8,88]}}"#,
    );
    bytes.extend_from_slice(&[0u8; 60]);
    std::fs::write(&short, &bytes).unwrap();
    let e = io::load_safetensors(&short).unwrap_err().to_string();
    assert!(
        e.contains("short_tensor.safetensors")
            && e.contains("tensor w (F32 [4, 5]) lies at bytes 8..88 of the data, which holds only 60"),
        "{e}"
    );
    let mut bytes = header(r#"{"w":{"dtype":"F16","shape":[4,5],"data_offsets":[0,30]}}"#);
    bytes.extend_from_slice(&[0u8; 30]);
    std::fs::write(&short, &bytes).unwrap();
    let e = io::load_safetensors(&short).unwrap_err().to_string();
    assert!(e.contains("tensor w: its shape and type need 40 bytes; the header gives it bytes 0..30"), "{e}");
    let one = scratch("one.safetensors");
    io::save_safetensors(&one, &[("only".to_string(), f.clone())], None).unwrap();
    let bytes = std::fs::read(&one).unwrap();
    std::fs::write(&short, &bytes[..bytes.len() - 4]).unwrap();
    let e = io::load_safetensors(&short).unwrap_err().to_string();
    assert!(e.contains("tensor only (F32 [4, 5])") && e.contains("holds only 76"), "{e}");
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
    // A body cut short, and a header cut short.
    let whole = std::fs::read(scratch("x_float32.npy")).unwrap();
    let cut = scratch("cut.npy");
    std::fs::write(&cut, &whole[..whole.len() - 8]).unwrap();
    let e = io::load_npy(&cut).unwrap_err().to_string();
    assert!(
        e.contains("cut.npy") && e.contains("shape [4, 5] of float32 needs 80 bytes of data; the file has 72"),
        "{e}"
    );
    std::fs::write(&cut, &whole[..40]).unwrap();
    let e = io::load_npy(&cut).unwrap_err().to_string();
    assert!(e.contains("the header is cut short"), "{e}");
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
        // A model's parameter file (dotted names, nested containers), with each tensor's bytes
        // in hex for a bit-exact comparison there.
        let model = nn::Sequential::new()
            .push(nn::Linear::new(3, 4, true).unwrap())
            .push(
                nn::Sequential::new()
                    .push(nn::PRelu::new(4, 0.1).unwrap())
                    .push(nn::LayerNorm::new(4, 1e-5, true).unwrap()),
            )
            .push(nn::Conv1d::new(4, 2, 3, 1, 1, true).unwrap());
        let params = model.parameters();
        io::save_tree(&dir.join("module.safetensors"), &params).unwrap();
        let json: serde_json::Map<String, serde_json::Value> = params
            .flatten()
            .iter()
            .map(|(n, a)| {
                let hex: String = a.to_bytes().unwrap().iter().map(|b| format!("{b:02x}")).collect();
                (n.clone(), serde_json::json!({"dtype": a.dtype().to_string(), "shape": a.shape(), "hex": hex}))
            })
            .collect();
        assert!(json.contains_key("layers.1.layers.0.weight") && json.contains_key("layers.2.bias"));
        std::fs::write(dir.join("module.json"), serde_json::Value::Object(json).to_string()).unwrap();
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

/// Every activation is a composition of differentiable ops: its gradient (through autodiff)
/// matches central differences in float64, at points away from its kinks.
#[test]
fn activations_differentiate_and_bad_arguments_are_errors() {
    use nn::Activation as A;
    let acts = [
        A::Relu,
        A::Relu6,
        A::Relu2,
        A::LeakyRelu(0.07),
        A::Gelu,
        A::GeluTanh,
        A::GeluFast,
        A::Silu,
        A::Sigmoid,
        A::LogSigmoid,
        A::Tanh,
        A::HardTanh { min: -0.8, max: 1.3 },
        A::Softplus,
        A::Softsign,
        A::Mish,
        A::Hardswish,
        A::Elu(1.3),
        A::Celu(0.7),
        A::Selu,
        A::Glu,
        A::Softmax,
        A::Softmin,
        A::LogSoftmax,
        A::Softshrink(0.6),
        A::HardShrink(0.4),
        A::Step(0.25),
    ];
    // Points clear of every kink (0, ±λ, the clip bounds, ±3 and 6) by more than the step.
    let xs = [-7.1, -3.4, -2.6, -1.37, -0.71, -0.23, 0.11, 0.47, 0.93, 1.61, 2.2, 2.9, 3.3, 4.4, 6.5, -0.05];
    let x = Array::from_slice(&xs, &[2, 8]).unwrap();
    let w = random::normal(&[2, 8], DType::F64, 0.0, 1.0, Some(&random::key(11))).unwrap();
    for act in acts {
        let f = |a: &[Array]| -> Result<Array> {
            let y = act.forward(&a[0])?;
            // Weights of the output's shape (GLU halves the last axis).
            let wy = slice(&w, &[0, 0], &[2, y.shape()[1] as isize], &[1, 1])?;
            sum(&multiply(&y, &wy)?, None, false)
        };
        let g = grad(f, &[])(std::slice::from_ref(&x)).unwrap()[0].to_vec::<f64>().unwrap();
        let h = 1e-6;
        for i in 0..xs.len() {
            let at = |d: f64| {
                let mut v = xs;
                v[i] += d;
                f(&[Array::from_slice(&v, &[2, 8]).unwrap()]).unwrap().item::<f64>().unwrap()
            };
            let fd = (at(h) - at(-h)) / (2.0 * h);
            assert!(
                (g[i] - fd).abs() <= 1e-6 * fd.abs().max(1.0),
                "{act:?} at x = {}: autodiff {} vs {fd}",
                xs[i],
                g[i]
            );
        }
    }
    let e = A::Glu.forward(&zeros(&[3, 5], DType::F32).unwrap()).unwrap_err().to_string();
    assert!(e.contains("[3, 5]") && e.contains("even size"), "{e}");
    let e = A::HardTanh { min: 1.0, max: -1.0 }.forward(&x).unwrap_err().to_string();
    assert!(e.contains("min 1 is above max -1"), "{e}");
    assert!(A::Celu(0.0).forward(&x).unwrap_err().to_string().contains("alpha must not be 0"));

    // PReLU's slope is a parameter: its gradient is Σ min(x, 0) over the elements it scales.
    assert!(nn::PRelu::new(0, 0.25).unwrap_err().to_string().contains("at least 1"));
    let e = nn::PRelu::new(3, 0.25).unwrap().forward(&zeros(&[2, 4], DType::F32).unwrap()).unwrap_err().to_string();
    assert!(e.contains("3 slopes need input [..., 3]"), "{e}");
    let m = nn::Sequential::new().push(nn::PRelu::new(8, 0.25).unwrap());
    let xf = x.astype(DType::F32).unwrap();
    let vg = nn::value_and_grad(|m: &nn::Sequential, a: &[Array]| m.forward(&a[0])?.sum(None, false));
    let (_, g) = vg(&m, std::slice::from_ref(&xf)).unwrap();
    let g = g.get("layers.0.weight").unwrap().to_vec::<f32>().unwrap();
    for (j, gj) in g.iter().enumerate() {
        let want: f32 = [xs[j], xs[8 + j]].iter().map(|&v| v.min(0.0) as f32).sum();
        assert!((gj - want).abs() <= 1e-6, "slope {j}: {gj} vs {want}");
    }
}

#[test]
fn freezing_by_path_prefix() {
    let lin = |i, o| nn::Linear::new(i, o, true).unwrap();
    let mut m = nn::Sequential::new()
        .push(lin(3, 4))
        .push(nn::Sequential::new().push(lin(4, 4)).push(nn::PRelu::new(1, 0.25).unwrap()))
        .push(lin(4, 2));
    let trainable = |m: &nn::Sequential| -> Vec<String> {
        m.trainable_parameters().flatten().into_iter().map(|(n, _)| n).collect()
    };
    let all = trainable(&m);
    assert_eq!(all.len(), 7);
    m.freeze_path("layers.1.layers.0", true).unwrap();
    assert_eq!(
        trainable(&m),
        ["layers.0.bias", "layers.0.weight", "layers.1.layers.1.weight", "layers.2.bias", "layers.2.weight"]
    );
    m.freeze_path("layers.1", true).unwrap();
    m.freeze_path("layers.2", true).unwrap();
    assert_eq!(trainable(&m), ["layers.0.bias", "layers.0.weight"]);
    // Frozen parameters are still parameters (saved and loaded), only not trained.
    assert_eq!(m.parameters().flatten().len(), 7);
    m.freeze_path("", false).unwrap();
    assert_eq!(trainable(&m), all);
    m.freeze_path("layers", true).unwrap();
    assert!(trainable(&m).is_empty());
    for (path, want) in [
        ("layers.3", "layers.3: no such module (a Sequential of 3 layers)"),
        ("layers.1.layers.9", "layers.1.layers.9: no such module (a Sequential of 2 layers)"),
        ("layers.0.weight", "layers.0.weight: a Linear freezes as a whole"),
        ("head", "head: no such module"),
        ("layers.x", "layers.x: no such module"),
    ] {
        let e = m.freeze_path(path, false).unwrap_err().to_string();
        assert!(e.contains(want), "{path}: {e}");
    }
}

/// Each initializer's sample statistics on a large weight match its formula for the weight's
/// fans (`[out, in]` and `[out, *kernel, in]` layouts); the same key gives the same values.
#[test]
fn initializers_have_their_stated_distributions() {
    use nn::Init;
    // (shape, fan_in, fan_out)
    let shapes: [(&[usize], f64, f64); 3] =
        [(&[384, 512], 512.0, 384.0), (&[64, 3, 3, 96], 864.0, 576.0), (&[300_000], 300_000.0, 300_000.0)];
    for (shape, fi, fo) in shapes {
        let n: usize = shape.iter().product();
        for (init, uniform, bound) in [
            (Init::GlorotUniform, true, (6.0 / (fi + fo)).sqrt()),
            (Init::GlorotNormal, false, (2.0 / (fi + fo)).sqrt()),
            (Init::HeUniform, true, (6.0 / fi).sqrt()),
            (Init::HeNormal, false, (2.0 / fi).sqrt()),
            (Init::LecunUniform, true, 1.0 / fi.sqrt()),
        ] {
            let key = random::key(21);
            let a = init.array(shape, Some(&key)).unwrap();
            assert_eq!((a.shape(), a.dtype()), (shape, DType::F32));
            let v: Vec<f64> = a.to_vec::<f64>().unwrap();
            let mean = v.iter().sum::<f64>() / n as f64;
            let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
            // A uniform in ±b has σ = b/√3; a normal's σ is the stated one.
            let sigma = if uniform { bound / 3f64.sqrt() } else { bound };
            assert!(mean.abs() < 5.0 * sigma / (n as f64).sqrt(), "{init:?} {shape:?}: mean {mean}");
            assert!((std / sigma - 1.0).abs() < 0.02, "{init:?} {shape:?}: σ {std}, want {sigma}");
            let within = v.iter().filter(|x| x.abs() <= sigma).count() as f64 / n as f64;
            let peak = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            if uniform {
                assert!(peak <= bound && peak > 0.99 * bound, "{init:?} {shape:?}: max |x| {peak}, bound {bound}");
                assert!((within - 1.0 / 3f64.sqrt()).abs() < 0.01, "{init:?}: {within} within σ");
            } else {
                assert!((within - 0.6827).abs() < 0.01, "{init:?}: {within} within σ");
            }
            let again = init.array(shape, Some(&key)).unwrap();
            assert_eq!(a.to_bytes().unwrap(), again.to_bytes().unwrap(), "{init:?}: not deterministic");
            let other = init.array(shape, Some(&random::key(22))).unwrap();
            assert_ne!(a.to_bytes().unwrap(), other.to_bytes().unwrap(), "{init:?}: the key is ignored");
        }
    }
    // The named functions are the variants.
    let k = random::key(5);
    for (f, init) in [
        (nn::glorot_uniform as fn(&[usize], Option<&Array>) -> Result<Array>, Init::GlorotUniform),
        (nn::glorot_normal, Init::GlorotNormal),
        (nn::he_uniform, Init::HeUniform),
        (nn::he_normal, Init::HeNormal),
    ] {
        let want = init.array(&[7, 9], Some(&k)).unwrap();
        assert_eq!(f(&[7, 9], Some(&k)).unwrap().to_bytes().unwrap(), want.to_bytes().unwrap(), "{init:?}");
    }
    assert_eq!(Init::Constant(0.37).array(&[4, 3], None).unwrap().to_vec::<f32>().unwrap(), vec![0.37f32; 12]);
}

#[test]
fn dropout_scales_what_it_keeps_by_exactly_one_over_one_minus_p() {
    let p = 0.3;
    let x = random::normal(&[4000], DType::F32, 0.0, 1.0, Some(&random::key(8))).unwrap();
    let d = nn::Dropout::new(p).unwrap();
    let y = d.forward(&x).unwrap().to_vec::<f32>().unwrap();
    let scale = (1.0 / (1.0 - p)) as f32;
    let mut kept = 0;
    for (a, b) in x.to_vec::<f32>().unwrap().iter().zip(&y) {
        if *b != 0.0 {
            kept += 1;
            assert_eq!(b.to_bits(), (a * scale).to_bits(), "{a} kept as {b}");
        }
    }
    // Binomial(4000, 0.7): mean 2800, σ 29.
    assert!((2650..2950).contains(&kept), "kept {kept} of 4000");
    for bad in [1.0, -0.1, f64::NAN] {
        assert!(nn::Dropout::new(bad).unwrap_err().to_string().contains("must be in [0, 1)"), "{bad}");
    }
}

#[test]
fn pooling_layers_check_their_input() {
    let x4 = zeros(&[2, 3, 3, 1], DType::F32).unwrap();
    let e = nn::Pool::max3d(2, 2, 0).forward(&x4).unwrap_err().to_string();
    assert!(e.contains("3-D pool") && e.contains("[2, 3, 3, 1]"), "{e}");
    let e = nn::Pool::avg1d(5, 1, 0).forward(&zeros(&[1, 3, 2], DType::F32).unwrap()).unwrap_err().to_string();
    assert!(e.contains("3 positions, the window 5"), "{e}");
    let e = nn::Pool::max1d(2, 0, 0).forward(&zeros(&[1, 3, 2], DType::F32).unwrap()).unwrap_err().to_string();
    assert!(e.contains("stride [0]"), "{e}");
    let four = nn::Pool { spatial: 4, ..nn::Pool::max3d(2, 2, 0) };
    assert!(four.forward(&x4).is_err());
}

#[test]
fn losses_reject_mismatched_arguments() {
    let logits = zeros(&[4, 3], DType::F32).unwrap();
    let ids = Array::from_slice(&[0i32, 2, 1, 1], &[4]).unwrap();
    let cases: [(Result<Array>, &str); 8] = [
        (nn::losses::nll(&logits, &Array::from_slice(&[0i32, 1], &[2]).unwrap()), "integer class ids of shape [4]"),
        (nn::losses::cross_entropy(&logits, &zeros(&[4], DType::F32).unwrap(), 0.0), "the targets are [4] float32"),
        (nn::losses::cross_entropy(&logits, &ids, 1.0), "label smoothing 1 is not in [0, 1)"),
        (nn::losses::cross_entropy_probs(&logits, &zeros(&[4, 2], DType::F32).unwrap()), "[4, 3] and targets [4, 2]"),
        (nn::losses::smooth_l1(&logits, &logits, 0.0), "beta 0 must be positive"),
        (nn::losses::smooth_l1(&logits, &zeros(&[3], DType::F32).unwrap(), 1.0), "same shape"),
        (nn::losses::binary_cross_entropy(&logits, &zeros(&[4, 1], DType::F32).unwrap()), "same shape"),
        (nn::losses::huber(&logits, &logits, -1.0), "delta -1 must be positive"),
    ];
    for (r, want) in cases {
        let e = r.unwrap_err().to_string();
        assert!(e.contains(want), "{e} (want {want:?})");
    }
}

/// Two steps of each optimizer, its state through a file into a fresh one, and the third step
/// of both: bit-equal. Then malformed or mismatched states.
#[test]
fn every_optimizer_state_round_trips_bit_exactly() {
    let k = random::split(&random::key(31), 4).unwrap();
    let key = |i: isize| slice(&k, &[i, 0], &[i + 1, 2], &[1, 1]).unwrap().reshape(&[2]).unwrap();
    let p = Tree::map([
        ("w", Tree::from(random::normal(&[3, 4], DType::F32, 0.0, 1.0, Some(&key(0))).unwrap())),
        ("b", Tree::from(random::normal(&[5], DType::F32, 0.0, 1.0, Some(&key(1))).unwrap())),
    ]);
    let grads =
        |i: isize| p.map_leaves(&mut |a| random::normal(a.shape(), DType::F32, 0.0, 1.0, Some(&key(i)))).unwrap();
    let (g1, g2) = (grads(2), grads(3));
    type Make = fn() -> Box<dyn Optimizer>;
    let makers: Vec<(&str, Make)> = vec![
        ("sgd", || Box::new(optim::Sgd::new(optim::exponential_decay(0.1, 0.9)).momentum(0.9, false).dampening(0.1))),
        ("sgd_nesterov", || Box::new(optim::Sgd::new(0.1).momentum(0.9, true).weight_decay(0.01))),
        ("adam", || Box::new(optim::Adam::new(1e-2))),
        ("adamw", || Box::new(optim::adamw(1e-2, 0.05))),
        ("adamax", || Box::new(optim::Adamax::new(1e-2))),
        ("adagrad", || Box::new(optim::Adagrad::new(0.1))),
        ("rmsprop", || Box::new(optim::RmsProp::new(1e-2))),
        ("adafactor", || Box::new(optim::Adafactor::new())),
        ("adafactor_b1", || {
            let mut a = optim::Adafactor::with_learning_rate(1e-2);
            a.beta1 = Some(0.9);
            Box::new(a)
        }),
        ("lion", || Box::new(optim::Lion::new(1e-3))),
        ("muon", || Box::new(optim::Muon::new(0.02))),
    ];
    for (name, make) in &makers {
        let mut a = make();
        let p1 = a.update(&p, &g1).unwrap();
        let p2 = a.update(&p1, &g2).unwrap();
        let path = scratch(&format!("state_{name}.safetensors"));
        io::save_tree(&path, &a.state()).unwrap();
        let mut b = make();
        b.load_state(&io::load_tree_flat(&path).unwrap()).unwrap();
        assert_eq!(a.learning_rate(), b.learning_rate(), "{name}: the step count did not come back");
        let (n1, n2) = (a.update(&p2, &g1).unwrap(), b.update(&p2, &g1).unwrap());
        for ((n, x), (_, y)) in n1.flatten().iter().zip(n2.flatten()) {
            assert_eq!(x.to_bytes().unwrap(), y.to_bytes().unwrap(), "{name}: {n} after the reload");
        }
        assert_ne!(n1.get("w").unwrap().to_bytes().unwrap(), p2.get("w").unwrap().to_bytes().unwrap(), "{name}");
    }
    // Adafactor keeps the matrix's second moment factored: a row and a column.
    let mut f = optim::Adafactor::new();
    f.update(&p, &g1).unwrap();
    let st = f.state();
    let shape = |n: &str| st.flatten().into_iter().find(|(k, _)| k == n).unwrap().1.shape().to_vec();
    // Leaves in key order: b (a vector, unfactored) is 0, w is 1.
    assert_eq!(
        (shape("exp_avg_sq_row.1"), shape("exp_avg_sq_col.1"), shape("exp_avg_sq.0")),
        (vec![3], vec![4], vec![5])
    );

    let mut adam = optim::Adam::new(1e-2);
    adam.update(&p, &g1).unwrap();
    let good = adam.state();
    let with = |key: &str, t: Tree| -> Tree {
        let Tree::Map(mut m) = good.clone() else { unreachable!() };
        m.insert(key.to_string(), t);
        Tree::Map(m)
    };
    let without = |key: &str| -> Tree {
        let Tree::Map(mut m) = good.clone() else { unreachable!() };
        m.remove(key);
        Tree::Map(m)
    };
    let arr = |shape: &[usize], t: DType| Tree::from(random::normal(shape, t, 0.0, 1.0, Some(&key(0))).unwrap());
    // Errors at load, which leave the optimizer as it was.
    for (bad, want) in [
        (without("step"), "the state has no step"),
        (without("v"), "the state has no list v"),
        (with("step", arr(&[], DType::F32)), "step must be an integer scalar"),
        (with("v", Tree::List(vec![arr(&[5], DType::F32)])), "v has 1 entries, m 2"),
        (with("momentum", Tree::List(vec![])), "the state has momentum, not a slot of this optimizer (it keeps m, v)"),
        (Tree::List(vec![]), "the state has no map"),
    ] {
        let e = adam.load_state(&bad).unwrap_err().to_string();
        assert!(e.contains(want), "{e} (want {want:?})");
    }
    assert!(optim::Sgd::new(0.1).load_state(&good).unwrap_err().to_string().contains("the state has m"));
    // Errors at the next step, naming the slot.
    for (bad, want) in [
        (
            with("m", Tree::List(vec![arr(&[5], DType::F32), arr(&[4, 3], DType::F32)])),
            "state m.1 is [4, 3] float32; parameter 1 ([3, 4] float32)",
        ),
        (with("v", Tree::List(vec![arr(&[5], DType::F16), arr(&[3, 4], DType::F32)])), "state v.0 is [5] float16"),
        (with("m", Tree::List((0..3).map(|_| arr(&[5], DType::F32)).collect())), "v has 2 entries, m 3"),
    ] {
        let mut o = optim::Adam::new(1e-2);
        let e = match o.load_state(&bad) {
            Ok(()) => o.update(&p, &g1).unwrap_err().to_string(),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(want), "{e} (want {want:?})");
    }
    let mut o = optim::Adam::new(1e-2);
    o.load_state(&good).unwrap();
    let one = Tree::map([("b", Tree::from(zeros(&[5], DType::F32).unwrap()))]);
    assert!(o.update(&one, &one).unwrap_err().to_string().contains("state for 2 parameters, given 1"));
    // The failed steps changed nothing: the reloaded optimizer still steps as the original.
    let (n1, n2) = (adam.update(&p, &g2).unwrap(), o.update(&p, &g2).unwrap());
    assert_eq!(n1.get("w").unwrap().to_bytes().unwrap(), n2.get("w").unwrap().to_bytes().unwrap());
    // A fresh optimizer's state (step 0, no slots yet) also round-trips through a file.
    let path = scratch("state_fresh.safetensors");
    io::save_tree(&path, &optim::Adam::new(1e-2).state()).unwrap();
    let mut fresh = optim::Adam::new(1e-2);
    fresh.load_state(&io::load_tree_flat(&path).unwrap()).unwrap();
    let mut plain = optim::Adam::new(1e-2);
    assert_eq!(
        fresh.update(&p, &g1).unwrap().get("w").unwrap().to_bytes().unwrap(),
        plain.update(&p, &g1).unwrap().get("w").unwrap().to_bytes().unwrap()
    );
    // Nesterov momentum without momentum, or with dampening, is not defined.
    let e = optim::Sgd::new(0.1).momentum(0.9, true).dampening(0.2).update(&p, &g1).unwrap_err().to_string();
    assert!(e.contains("Nesterov momentum needs"), "{e}");
}

#[test]
fn clipping_leaves_small_gradients_bit_equal() {
    let g = Tree::map([
        ("a", Tree::from(random::normal(&[3, 4], DType::F32, 0.0, 1.0, Some(&random::key(41))).unwrap())),
        (
            "b",
            Tree::List(vec![Tree::from(random::normal(&[6], DType::F16, 0.0, 1.0, Some(&random::key(42))).unwrap())]),
        ),
    ]);
    let (_, norm) = optim::clip_grad_norm(&g, 1.0).unwrap();
    let norm = norm.item::<f32>().unwrap() as f64;
    let want: f64 = g.leaves().iter().flat_map(|l| l.to_vec::<f64>().unwrap()).map(|v| v * v).sum::<f64>().sqrt();
    assert!((norm - want).abs() <= 1e-5 * want, "{norm} vs {want}");
    let (same, _) = optim::clip_grad_norm(&g, 2.0 * norm).unwrap();
    for ((n, a), (_, b)) in g.flatten().iter().zip(same.flatten()) {
        assert_eq!((a.dtype(), a.to_bytes().unwrap()), (b.dtype(), b.to_bytes().unwrap()), "{n} changed");
    }
    let (c, _) = optim::clip_grad_norm(&g, 0.5 * norm).unwrap();
    let after: f64 = c.leaves().iter().flat_map(|l| l.to_vec::<f64>().unwrap()).map(|v| v * v).sum::<f64>().sqrt();
    // float16 leaves round each clipped value to 2⁻¹¹ relative.
    assert!((after - 0.5 * norm).abs() <= 1e-3 * norm, "{after} vs {}", 0.5 * norm);
    assert_eq!(c.get("b.0").unwrap().dtype(), DType::F16);
    assert!(optim::clip_grad_norm(&g, -1.0).unwrap_err().to_string().contains("max_norm -1 must be at least 0"));
}

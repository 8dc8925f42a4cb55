//! `strata::nn` and `strata::optim` against golden vectors that `scripts/refs/nn.py` writes with
//! a fresh seed on every `scripts/test` run: float64 references by MLX's definitions (each
//! checked there against MLX itself) for every activation, the losses under each reduction, the
//! convolution, pooling, normalization and RoPE layers, schedules, gradient clipping and
//! optimizer trajectories. Missing vectors fail the test.

use std::path::PathBuf;

use serde_json::Value;
use strata::nn::{self, Module, losses::Reduction};
use strata::optim::{self, Optimizer};
use strata::*;

fn refs() -> Value {
    let root = std::env::var_os("STRATA_REFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/refs"));
    let path = root.join("nn/cases.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `scripts/test` (it writes the nn vectors) first", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn decode(v: &Value) -> Array {
    let shape: Vec<usize> = v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let dtype = v["dtype"].as_str().unwrap().parse::<DType>().unwrap();
    let data: Vec<f64> = v["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    Array::from_slice(&data, &shape).unwrap().astype(dtype).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn f(kw: &Value, key: &str) -> f64 {
    kw[key].as_f64().unwrap_or_else(|| panic!("no {key} in {kw}"))
}

fn u(kw: &Value, key: &str) -> usize {
    kw[key].as_u64().unwrap_or_else(|| panic!("no {key} in {kw}")) as usize
}

fn list(kw: &Value, key: &str) -> Vec<usize> {
    kw[key].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect()
}

fn pair(kw: &Value, key: &str) -> [usize; 2] {
    let v = list(kw, key);
    [v[0], v[1]]
}

/// The result's tolerance against a float64 reference, by its type: a few ulps of float32
/// (transcendentals and summation orders differ), relative, with an absolute floor at 1.
fn close(got: f64, want: f64, dtype: DType) -> bool {
    let rel = match dtype {
        DType::F64 => 1e-12,
        DType::F32 => 2e-5,
        DType::F16 | DType::BF16 => 1e-2,
        t => panic!("no tolerance for {t}"),
    };
    (got - want).abs() <= rel * want.abs().max(1.0)
}

fn activation(name: &str, kw: &Value) -> nn::Activation {
    use nn::Activation as A;
    match name {
        "relu" => A::Relu,
        "relu6" => A::Relu6,
        "relu2" => A::Relu2,
        "leaky_relu" => A::LeakyRelu(f(kw, "negative_slope")),
        "gelu" => A::Gelu,
        "gelu_approx" => A::GeluTanh,
        "gelu_fast_approx" => A::GeluFast,
        "silu" => A::Silu,
        "sigmoid" => A::Sigmoid,
        "log_sigmoid" => A::LogSigmoid,
        "tanh" => A::Tanh,
        "hard_tanh" => A::HardTanh { min: f(kw, "min_val"), max: f(kw, "max_val") },
        "softplus" => A::Softplus,
        "softsign" => A::Softsign,
        "mish" => A::Mish,
        "hardswish" => A::Hardswish,
        "elu" => A::Elu(f(kw, "alpha")),
        "celu" => A::Celu(f(kw, "alpha")),
        "selu" => A::Selu,
        "glu" => A::Glu,
        "softmax" => A::Softmax,
        "softmin" => A::Softmin,
        "log_softmax" => A::LogSoftmax,
        "softshrink" => A::Softshrink(f(kw, "lambd")),
        "hard_shrink" => A::HardShrink(f(kw, "lambd")),
        "step" => A::Step(f(kw, "threshold")),
        other => panic!("no activation {other}"),
    }
}

fn loss(a: &[Array], kw: &Value) -> Result<Array> {
    use nn::losses::unreduced as l;
    let each = match kw["name"].as_str().unwrap() {
        "nll" => l::nll(&a[0], &a[1])?,
        "cross_entropy" => l::cross_entropy(&a[0], &a[1], f(kw, "label_smoothing"))?,
        "cross_entropy_probs" => l::cross_entropy_probs(&a[0], &a[1])?,
        "smooth_l1" => l::smooth_l1(&a[0], &a[1], f(kw, "beta"))?,
        "huber" => l::huber(&a[0], &a[1], f(kw, "delta"))?,
        "binary_cross_entropy" => l::binary_cross_entropy(&a[0], &a[1])?,
        "binary_cross_entropy_with_logits" => l::binary_cross_entropy_with_logits(&a[0], &a[1])?,
        "mse" => l::mse(&a[0], &a[1])?,
        "l1" => l::l1(&a[0], &a[1])?,
        "kl_div" => l::kl_div(&a[0], &a[1])?,
        "cosine_similarity" => l::cosine_similarity_loss(&a[0], &a[1], 1e-8)?,
        other => panic!("no loss {other}"),
    };
    let how = match kw["reduction"].as_str().unwrap() {
        "none" => Reduction::None,
        "mean" => Reduction::Mean,
        _ => Reduction::Sum,
    };
    // The mean-reducing functions are the unreduced ones averaged: check they agree.
    if how == Reduction::Mean {
        let mean = match kw["name"].as_str().unwrap() {
            "nll" => Some(nn::losses::nll(&a[0], &a[1])?),
            "cross_entropy_probs" => Some(nn::losses::cross_entropy_probs(&a[0], &a[1])?),
            "smooth_l1" => Some(nn::losses::smooth_l1(&a[0], &a[1], f(kw, "beta"))?),
            "binary_cross_entropy" => Some(nn::losses::binary_cross_entropy(&a[0], &a[1])?),
            _ => None,
        };
        if let Some(m) = mean {
            let r = nn::losses::reduce(&each, how)?;
            assert_eq!(m.to_vec::<f32>()?, r.to_vec::<f32>()?, "{kw}: the mean function and reduce(Mean) differ");
        }
    }
    nn::losses::reduce(&each, how)
}

fn run(op: &str, a: &[Array], kw: &Value) -> Result<Array> {
    match op {
        "activation" => activation(kw["name"].as_str().unwrap(), kw).forward(&a[0]),
        "prelu" => nn::PRelu { weight: a[1].clone(), frozen: false }.forward(&a[0]),
        "loss" => loss(a, kw),
        "conv1d" => {
            let mut c = nn::Conv1d::new(1, 1, 1, 1, 0, true)?;
            (c.weight, c.bias) = (a[1].clone(), Some(a[2].clone()));
            (c.stride, c.padding, c.dilation, c.groups) =
                (list(kw, "stride")[0], list(kw, "padding")[0], list(kw, "dilation")[0], u(kw, "groups"));
            c.forward(&a[0])
        }
        "conv2d" => {
            let mut c = nn::Conv2d::new(1, 1, 1, 1, 0, true)?;
            (c.weight, c.bias) = (a[1].clone(), Some(a[2].clone()));
            (c.stride, c.padding, c.dilation, c.groups) =
                (pair(kw, "stride"), pair(kw, "padding"), pair(kw, "dilation"), u(kw, "groups"));
            c.forward(&a[0])
        }
        "pool" => {
            let (k, s, p) = (u(kw, "kernel"), u(kw, "stride"), u(kw, "padding"));
            let pool = match (u(kw, "spatial"), kw["average"].as_bool().unwrap()) {
                (1, false) => nn::Pool::max1d(k, s, p),
                (1, true) => nn::Pool::avg1d(k, s, p),
                (3, false) => nn::Pool::max3d(k, s, p),
                (3, true) => nn::Pool::avg3d(k, s, p),
                other => panic!("no pool {other:?}"),
            };
            pool.forward(&a[0])
        }
        "layer_norm" => {
            let d = *a[0].shape().last().unwrap();
            let mut ln = nn::LayerNorm::new(d, f(kw, "eps") as f32, a.len() == 3)?;
            if a.len() == 3 {
                (ln.weight, ln.bias) = (Some(a[1].clone()), Some(a[2].clone()));
            }
            assert_eq!(ln.parameters().flatten().len(), if a.len() == 3 { 2 } else { 0 });
            ln.forward(&a[0])
        }
        "rms_norm" => {
            let mut rms = nn::RmsNorm::new(a[1].size(), f(kw, "eps") as f32)?;
            rms.weight = a[1].clone();
            rms.forward(&a[0])
        }
        "rope" => {
            let mut r = nn::Rope::new(u(kw, "dims"));
            (r.traditional, r.base, r.scale) =
                (kw["traditional"].as_bool().unwrap(), f(kw, "base") as f32, f(kw, "scale") as f32);
            let offset = u(kw, "offset");
            // The layer's own forward is the offset-0 case.
            if offset == 0 { r.forward(&a[0]) } else { r.forward_at(&a[0], offset) }
        }
        "clip_grad_norm" => {
            let g = Tree::map([
                ("a", Tree::from(a[0].clone())),
                ("b", Tree::from(a[1].clone())),
                ("c", Tree::from(a[2].clone())),
            ]);
            let (c, norm) = optim::clip_grad_norm(&g, f(kw, "max_norm"))?;
            let flat: Vec<Array> =
                c.leaves().iter().map(|l| l.reshape(&[-1])).chain([norm.reshape(&[1])]).collect::<Result<_>>()?;
            concatenate(&flat.iter().collect::<Vec<_>>(), 0)
        }
        other => panic!("no op {other}"),
    }
}

#[test]
fn layers_losses_and_clipping_match_mlx() {
    let refs = refs();
    let cases = refs["cases"].as_array().unwrap();
    assert!(cases.len() >= 100, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let (op, kw) = (c["op"].as_str().unwrap(), &c["kw"]);
        let args: Vec<Array> = c["args"].as_array().unwrap().iter().map(decode).collect();
        let want_shape: Vec<usize> =
            c["out"]["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        let want = floats(&c["out"]["data"]);
        let got = match run(op, &args, kw) {
            Ok(g) => g,
            Err(e) => {
                failures.push(format!("case {i} {op} {kw}: error {e}"));
                continue;
            }
        };
        // Results keep the inputs' type (float32 throughout).
        if got.shape() != want_shape || got.dtype() != args[0].dtype() {
            failures.push(format!("case {i} {op} {kw}: got {:?} {}, want {want_shape:?}", got.shape(), got.dtype()));
            continue;
        }
        let g = got.to_vec::<f64>().unwrap();
        if let Some(j) = (0..g.len()).find(|&j| !close(g[j], want[j], got.dtype())) {
            failures.push(format!("case {i} {op} {kw}: element {j} is {}, the reference {}", g[j], want[j]));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn schedules_match_mlx() {
    let refs = refs();
    let cases = refs["schedules"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for c in cases {
        let (name, kw) = (c["name"].as_str().unwrap(), &c["kw"]);
        let s = match name {
            "step_decay" => optim::step_decay(f(kw, "init"), f(kw, "rate"), u(kw, "every")),
            "exponential_decay" => optim::exponential_decay(f(kw, "init"), f(kw, "rate")),
            "cosine_decay" => optim::cosine_decay(f(kw, "init"), u(kw, "steps"), f(kw, "end")),
            "linear_schedule" => optim::linear_schedule(f(kw, "init"), f(kw, "end"), u(kw, "steps")),
            "join_schedules" => optim::join_schedules(
                vec![
                    optim::linear_schedule(0.0, f(kw, "init"), u(kw, "warmup")),
                    optim::cosine_decay(f(kw, "init"), u(kw, "steps"), f(kw, "end")),
                ],
                &[u(kw, "warmup")],
            ),
            other => panic!("no schedule {other}"),
        };
        for (t, want) in floats(&c["values"]).into_iter().enumerate() {
            // Both sides compute in float64: only rounding separates them.
            assert!(close(s.at(t), want, DType::F64), "{name} {kw} at step {t}: {} vs {want}", s.at(t));
        }
    }
}

/// SGD with dampening and Adamax's defaults, four steps on a matrix and a vector.
#[test]
fn optimizer_settings_match_mlx() {
    let refs = refs();
    let cases = refs["optimizers"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let mut opt: Box<dyn Optimizer> = match name {
            "sgd_dampening" => Box::new(optim::Sgd::new(0.1).momentum(0.9, false).dampening(0.3).weight_decay(0.01)),
            "adamax_defaults_mlx" => {
                let mut a = optim::Adamax::new(0.01);
                a.bias_correction = false;
                Box::new(a)
            }
            "adamax_defaults" => Box::new(optim::Adamax::new(0.01)),
            other => panic!("no optimizer {other}"),
        };
        let tree = |w: &Value, b: &Value| {
            let (w, b): (Vec<f32>, Vec<f32>) =
                (floats(w).iter().map(|&v| v as f32).collect(), floats(b).iter().map(|&v| v as f32).collect());
            Tree::map([
                ("w", Tree::from(Array::from_slice(&w, &[3, 4]).unwrap())),
                ("b", Tree::from(Array::from_slice(&b, &[5]).unwrap())),
            ])
        };
        let mut p = tree(&c["w0"], &c["b0"]);
        for (k, (g, after)) in c["grads"].as_array().unwrap().iter().zip(c["after"].as_array().unwrap()).enumerate() {
            p = opt.update(&p, &tree(&g[0], &g[1])).unwrap();
            for (leaf, want) in [("w", &after[0]), ("b", &after[1])] {
                let got = p.get(leaf).unwrap().to_vec::<f64>().unwrap();
                for (i, (a, b)) in got.iter().zip(floats(want)).enumerate() {
                    assert!(close(*a, b, DType::F32), "{name} step {k} {leaf}[{i}]: {a} vs {b}");
                }
            }
        }
    }
}

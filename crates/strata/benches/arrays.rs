//! The array layer's benchmark: graph overhead and element-wise chains against MLX CPU (and
//! NumPy) in the same run, interleaved as in `strata-cpu`'s benchmark.
//!
//! `cargo bench -p strata --bench arrays [-- --rounds 9] [--only SUBSTRING]`

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;
use strata::{Array, DType};

#[path = "../../strata-cpu/benches/common/peers.rs"]
mod peers;
use peers::{Peers, median};

fn gelu(x: &Array) -> Array {
    0.5 * x * (1.0 + strata::tanh(&(0.7978845608028654 * (x + 0.044715 * x * x * x))).unwrap())
}

/// One training step as a user writes it: `nn::value_and_grad` of `loss` on `(x, y)`, an Adam
/// update, and one evaluation of the new parameters and the loss.
fn train_step<M: strata::nn::Module + Clone>(
    model: M,
    x: Array,
    y: Array,
    loss: impl Fn(&M, &[Array]) -> strata::Result<Array>,
) -> impl Fn() {
    use strata::optim::{self, Optimizer};
    let state = std::cell::RefCell::new((model, optim::Adam::new(1e-3)));
    let step = strata::nn::value_and_grad(loss);
    move || {
        let (model, opt) = &mut *state.borrow_mut();
        let (l, g) = step(model, &[x.clone(), y.clone()]).unwrap();
        let p = opt.update(&model.trainable_parameters(), &g).unwrap();
        model.update(&p).unwrap();
        let mut all = p.leaves();
        all.push(&l);
        strata::eval_all(&all).unwrap();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize =
        args.iter().position(|a| a == "--rounds").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(9);
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).cloned().unwrap_or_default();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut peers = Peers::start(&root, threads).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    println!("peers: {}", peers.ready);

    let n_adds = 10_000;
    let one = Array::scalar(1.0f32);
    let adds = || {
        let mut x = Array::scalar(0.0f32);
        for _ in 0..n_adds {
            x = &x + &one;
        }
        x.eval().unwrap();
    };
    let n = 1 << 20;
    let x = strata::linspace(-4.0, 4.0, n, DType::F32).unwrap();
    x.eval().unwrap();
    let chain = || gelu(&x).eval().unwrap();
    let compiled = strata::compile(|a: &[Array]| Ok(vec![gelu(&a[0])]));
    let fused = || compiled.call(std::slice::from_ref(&x)).unwrap()[0].eval().unwrap();

    // One MLP training step (issue 5's benchmark): 784 → 256 → 10, cross-entropy, Adam.
    let mlp = |batch: usize| {
        use strata::nn::{self, Module};
        let model = nn::Sequential::new()
            .push(nn::Linear::new(784, 256, true).unwrap())
            .push(nn::Activation::Relu)
            .push(nn::Linear::new(256, 10, true).unwrap());
        let x = strata::random::normal(&[batch, 784], DType::F32, 0.0, 1.0, None).unwrap();
        let y = strata::random::randint(0, 10, &[batch], DType::U32, None).unwrap();
        train_step(model, x, y, |m: &nn::Sequential, a: &[Array]| {
            nn::losses::cross_entropy(&m.forward(&a[0])?, &a[1], 0.0)
        })
    };
    let (mlp32, mlp1024) = (mlp(32), mlp(1024));

    // One transformer-encoder training step (issue 5's benchmark): 2 pre-norm layers, 128
    // wide, 4 heads, MLP 512, batch 8 × 64 tokens, causal, MSE, Adam.
    let (tl, td, th, tm, tb, ts) = (2, 128, 4, 512, 8, 64);
    let transformer = {
        use strata::nn;
        let model = nn::TransformerEncoder::new(tl, td, th, Some(tm), 0.0, true).unwrap();
        let x = strata::random::normal(&[tb, ts, td], DType::F32, 0.0, 1.0, None).unwrap();
        let y = strata::random::normal(&[tb, ts, td], DType::F32, 0.0, 1.0, None).unwrap();
        train_step(model, x, y, |m: &nn::TransformerEncoder, a: &[Array]| {
            nn::losses::mse(&m.forward_masked(&a[0], strata::fast::Mask::Causal)?, &a[1])
        })
    };

    // linalg at n = 512 in float64 (issue 5's benchmark) against NumPy's LAPACK.
    let m = 512;
    let a = (strata::random::normal(&[m, m], DType::F64, 0.0, 1.0, None).unwrap()
        + strata::identity(m, DType::F64).unwrap() * (m as f64).sqrt())
    .clone();
    let rhs = strata::random::normal(&[m, m], DType::F64, 0.0, 1.0, None).unwrap();
    let sym = (&a + a.transpose(None).unwrap()).clone();
    strata::eval_all(&[&a, &rhs, &sym]).unwrap();
    let solve = || strata::linalg::solve(&a, &rhs).unwrap().eval().unwrap();
    let eigh = || {
        let (w, v) = strata::linalg::eigh(&sym).unwrap();
        strata::eval_all(&[&w, &v]).unwrap()
    };
    let svd = || {
        let (u, s, vt) = strata::linalg::svd(&a).unwrap();
        strata::eval_all(&[&u, &s, &vt]).unwrap()
    };
    let eig = || {
        let (w, v) = strata::linalg::eig(&a).unwrap();
        strata::eval_all(&[&w, &v]).unwrap()
    };

    // The same on a batch of small matrices (per-matrix overhead).
    let (small, count) = (8, 4096);
    let batch = (strata::random::normal(&[count, small, small], DType::F64, 0.0, 1.0, None).unwrap()
        + strata::identity(small, DType::F64).unwrap() * (small as f64).sqrt())
    .clone();
    let batch_sym = (&batch + strata::swapaxes(&batch, -1, -2).unwrap()).clone();
    strata::eval_all(&[&batch, &batch_sym]).unwrap();
    let inv_batch = || strata::linalg::inv(&batch).unwrap().eval().unwrap();
    let eigh_batch = || {
        let (w, v) = strata::linalg::eigh(&batch_sym).unwrap();
        strata::eval_all(&[&w, &v]).unwrap()
    };

    type Case<'a> = (&'a str, serde_json::Value, Vec<&'a str>, Box<dyn Fn() + 'a>, f64);
    let cases: Vec<Case> = vec![
        (
            "graph: 10,000 scalar adds, then eval",
            json!({"op": "graph_adds", "n": n_adds}),
            vec!["mlx"],
            Box::new(adds),
            n_adds as f64,
        ),
        (
            "gelu chain, 1M float32 (uncompiled)",
            json!({"op": "gelu_chain", "n": n}),
            vec!["mlx", "mlx_compiled", "numpy"],
            Box::new(chain),
            1.0,
        ),
        (
            "gelu chain, 1M float32 (compiled)",
            json!({"op": "gelu_chain", "n": n}),
            vec!["mlx", "mlx_compiled", "numpy"],
            Box::new(fused),
            1.0,
        ),
        (
            "MLP step 784-256-10, Adam, batch 32",
            json!({"op": "mlp_step", "batch": 32, "dims": 784, "hidden": 256, "classes": 10}),
            vec!["mlx"],
            Box::new(mlp32),
            1.0,
        ),
        (
            "transformer encoder step, 2×128, batch 8×64",
            json!({"op": "transformer_step", "layers": tl, "dims": td, "heads": th, "mlp": tm, "batch": tb, "seq": ts}),
            vec!["mlx"],
            Box::new(transformer),
            1.0,
        ),
        (
            "linalg solve 512×512 f64, 512 rhs",
            json!({"op": "linalg", "fn": "solve", "n": m}),
            vec!["numpy"],
            Box::new(solve),
            1.0,
        ),
        ("linalg eigh 512×512 f64", json!({"op": "linalg", "fn": "eigh", "n": m}), vec!["numpy"], Box::new(eigh), 1.0),
        ("linalg svd 512×512 f64", json!({"op": "linalg", "fn": "svd", "n": m}), vec!["numpy"], Box::new(svd), 1.0),
        ("linalg eig 512×512 f64", json!({"op": "linalg", "fn": "eig", "n": m}), vec!["numpy"], Box::new(eig), 1.0),
        (
            "linalg inv 4096 × 8×8 f64",
            json!({"op": "linalg", "fn": "inv", "n": small, "batch": count}),
            vec!["numpy"],
            Box::new(inv_batch),
            1.0,
        ),
        (
            "linalg eigh 4096 × 8×8 f64",
            json!({"op": "linalg", "fn": "eigh", "n": small, "batch": count}),
            vec!["numpy"],
            Box::new(eigh_batch),
            1.0,
        ),
        (
            "MLP step 784-256-10, Adam, batch 1024",
            json!({"op": "mlp_step", "batch": 1024, "dims": 784, "hidden": 256, "classes": 10}),
            vec!["mlx"],
            Box::new(mlp1024),
            1.0,
        ),
    ];
    for (name, case, names, ours, per) in cases {
        if !name.contains(only.as_str()) {
            continue;
        }
        ours();
        let mut mine = Vec::new();
        let mut theirs = vec![Vec::new(); names.len()];
        for _ in 0..rounds {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let t = Instant::now();
            ours();
            mine.push(t.elapsed().as_secs_f64());
            for (i, p) in names.iter().enumerate() {
                theirs[i].push(peers.time(&case, p).unwrap_or_else(|e| panic!("{p}: {e}")));
            }
        }
        let us = median(&mut mine);
        let mut line = format!("{name:<42} ours {:>9.3} ms", us * 1e3);
        if per > 1.0 {
            line += &format!(" ({:.2} µs/op)", us / per * 1e6);
        }
        for (p, t) in names.iter().zip(theirs.iter_mut()) {
            let t = median(t);
            line += &format!(" | {p} {:.3} ms -> {:.2}x", t * 1e3, t / us);
        }
        println!("{line}");
    }
    if "gelu chain, steady state".contains(only.as_str()) {
        // compile against our own graph as a training loop calls it: back to back, warm
        // caches, no peer in between (the rows above are single calls after the peers ran).
        let burst = |f: &dyn Fn()| {
            let t = Instant::now();
            (0..10).for_each(|_| f());
            t.elapsed().as_secs_f64() / 10.0
        };
        let (mut plain, mut fusedt) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            plain.push(burst(&chain));
            fusedt.push(burst(&fused));
        }
        let (p, f) = (median(&mut plain), median(&mut fusedt));
        println!(
            "gelu chain, steady state (10 calls back to back) uncompiled {:.3} ms, compiled {:.3} ms -> compile {:.2}x",
            p * 1e3,
            f * 1e3,
            p / f
        );
    }
}

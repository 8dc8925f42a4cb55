//! The op set against NumPy: golden vectors that `scripts/refs/arrays.py` writes with a fresh
//! seed on every `scripts/test` run (0-size and 1-size axes, negative axes, broadcasting edge
//! cases, integer arithmetic and promotion). Missing vectors fail the test.

use std::path::PathBuf;

use serde_json::Value;
use strata::nn::Module;
use strata::optim::Optimizer;
use strata::*;

fn refs() -> Value {
    let root = std::env::var_os("STRATA_REFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/refs"));
    let path = root.join("arrays/cases.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `scripts/test` (it writes the NumPy vectors) first", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn number(v: &Value) -> f64 {
    match v {
        Value::String(s) => match s.as_str() {
            "nan" => f64::NAN,
            "inf" => f64::INFINITY,
            _ => f64::NEG_INFINITY,
        },
        Value::Bool(b) => f64::from(u8::from(*b)),
        v => v.as_f64().unwrap(),
    }
}

fn decode(v: &Value) -> Array {
    let shape: Vec<usize> = v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let dtype = v["dtype"].as_str().unwrap().parse::<DType>().unwrap();
    let data: Vec<f64> = v["data"].as_array().unwrap().iter().map(number).collect();
    Array::from_slice(&data, &shape).unwrap().astype(dtype).unwrap()
}

fn axes(kw: &Value, key: &str) -> Option<Vec<isize>> {
    kw[key].as_array().map(|a| a.iter().map(|v| v.as_i64().unwrap() as isize).collect())
}

fn int(kw: &Value, key: &str) -> isize {
    kw[key].as_i64().unwrap() as isize
}

/// The FFT cases: complex values as [..., 2] (real, imaginary) pairs, both ways.
fn fft_case(op: &str, a: &[Array], kw: &Value) -> Result<Array> {
    let c = |x: &Array| {
        let last = x.ndim() as isize - 1;
        complex(
            &squeeze(&slice_axis(x, last, 0, 1)?, Some(&[last]))?,
            &squeeze(&slice_axis(x, last, 1, 2)?, Some(&[last]))?,
        )
    };
    let pairs = |z: Array| stack(&[&real(&z)?, &imag(&z)?], -1);
    let n = kw["n"].as_u64().map(|n| n as usize);
    let s: Option<Vec<usize>> = kw["s"].as_array().map(|v| v.iter().map(|d| d.as_u64().unwrap() as usize).collect());
    let (s, ax) = (s.as_deref(), axes(kw, "axes"));
    let ax = ax.as_deref();
    // A real input (float64 among them) goes in as it is.
    let z = |x: &Array| if kw["real_input"].as_bool() == Some(true) { Ok(x.clone()) } else { c(x) };
    match op {
        "fft_fft" => pairs(fft::fft(&z(&a[0])?, n, int(kw, "axis"))?),
        "fft_ifft" => pairs(fft::ifft(&c(&a[0])?, n, int(kw, "axis"))?),
        "fft_rfft" => pairs(fft::rfft(&a[0], n, int(kw, "axis"))?),
        "fft_irfft" => fft::irfft(&c(&a[0])?, n, int(kw, "axis")),
        "fft_fftn" => pairs(fft::fftn(&c(&a[0])?, s, ax)?),
        "fft_ifftn" => pairs(fft::ifftn(&c(&a[0])?, s, ax)?),
        "fft_rfftn" => pairs(fft::rfftn(&a[0], s, ax)?),
        "fft_irfftn" => fft::irfftn(&c(&a[0])?, s, ax),
        "fft_fft2" => pairs(fft::fft2(&c(&a[0])?, s, ax)?),
        "fft_ifft2" => pairs(fft::ifft2(&c(&a[0])?, s, ax)?),
        "fft_rfft2" => pairs(fft::rfft2(&a[0], s, ax)?),
        "fft_irfft2" => fft::irfft2(&c(&a[0])?, s, ax),
        "fft_fftshift" => fft::fftshift(&a[0], ax),
        "fft_ifftshift" => fft::ifftshift(&a[0], ax),
        "fft_fftfreq" => fft::fftfreq(n.unwrap(), kw["d"].as_f64().unwrap()),
        "fft_rfftfreq" => fft::rfftfreq(n.unwrap(), kw["d"].as_f64().unwrap()),
        "complex_multiply" => pairs(multiply(&c(&a[0])?, &c(&a[1])?)?),
        "complex_add" => pairs(add(&c(&a[0])?, &c(&a[1])?)?),
        "complex_abs" => abs(&c(&a[0])?),
        "complex_sum" => pairs(sum(&c(&a[0])?, Some(&[0]), false)?),
        "complex_negative" => pairs(negative(&c(&a[0])?)?),
        "complex_divide" => pairs(divide(&c(&a[0])?, &c(&a[1])?)?),
        "complex_power" => pairs(power(&c(&a[0])?, &c(&a[1])?)?),
        "complex_exp" => pairs(exp(&c(&a[0])?)?),
        "complex_unary" => {
            let name = kw["name"].as_str().unwrap();
            pairs(unary(*UnaryOp::ALL.iter().find(|o| o.name() == name).unwrap(), &c(&a[0])?)?)
        }
        "complex_angle" => angle(&c(&a[0])?),
        "complex_mean" => pairs(mean(&c(&a[0])?, Some(&[1]), false)?),
        "complex_matmul" => pairs(matmul(&c(&a[0])?, &c(&a[1])?)?),
        "complex_equal" => equal(&c(&a[0])?, &c(&a[1])?),
        "complex_not_equal" => not_equal(&c(&a[0])?, &c(&a[1])?),
        _ => Err(unhandled(op)),
    }
}

/// An op name the script writes that this file does not run: a failure of that case.
fn unhandled(op: &str) -> Error {
    Error::InvalidArgument { op: "ops_match_numpy", message: format!("no dispatch for op {op}") }
}

/// `x [..., m, n]` as `[..., m·n]`.
fn flat_matrices(x: &Array) -> Result<Array> {
    let batch: Vec<isize> = x.shape()[..x.ndim() - 2].iter().map(|&d| d as isize).collect();
    x.reshape(&[&batch[..], &[-1]].concat())
}

/// The signs that make each column's largest entry (by magnitude) positive, `[..., 1, k]`:
/// the same convention the script puts on NumPy's singular and eigenvectors.
fn column_signs(v: &Array) -> Result<Array> {
    let big = take_along_axis(v, &argmax(&abs(v)?, Some(-2), true)?, -2)?;
    let one = ones_like(&big)?;
    where_(&less(&big, &zeros_like(&big)?)?, &negative(&one)?, &one)
}

fn run(op: &str, a: &[Array], kw: &Value) -> Result<Array> {
    let ax = axes(kw, "axes");
    let keep = kw["keepdims"].as_bool().unwrap_or(false);
    let ax = ax.as_deref();
    let scan_op = |op| scan(op, &a[0], int(kw, "axis"), false, true);
    match op {
        "isnan" | "isinf" | "negative" | "absolute" | "sign" | "square" | "sqrt" | "reciprocal" | "exp" | "exp2"
        | "expm1" | "log" | "log2" | "log10" | "log1p" | "sin" | "cos" | "tan" | "arcsin" | "arccos" | "arctan"
        | "sinh" | "cosh" | "tanh" | "arcsinh" | "arccosh" | "arctanh" | "floor" | "ceil" | "round" | "sigmoid"
        | "softplus" | "relu" | "silu" => {
            let op = *UnaryOp::ALL.iter().find(|o| o.name() == op).unwrap();
            unary(op, &a[0])
        }
        "sum" => sum(&a[0], ax, keep),
        "mean" => mean(&a[0], ax, keep),
        "max" => max(&a[0], ax, keep),
        "min" => min(&a[0], ax, keep),
        "prod" => prod(&a[0], ax, keep),
        "all" => all(&a[0], ax, keep),
        "any" => any(&a[0], ax, keep),
        "var" => var(&a[0], ax, keep, kw["ddof"].as_u64().unwrap() as usize),
        "std" => std(&a[0], ax, keep, kw["ddof"].as_u64().unwrap() as usize),
        "logsumexp" => logsumexp(&a[0], ax, keep),
        "argmax" => argmax(&a[0], kw["axis"].as_i64().map(|v| v as isize), false),
        "argmin" => argmin(&a[0], kw["axis"].as_i64().map(|v| v as isize), false),
        "softmax" => softmax(&a[0], Some(&[int(kw, "axis")])),
        "cumsum" => scan_op(ScanOp::Sum),
        "cumprod" => scan_op(ScanOp::Prod),
        "cummax" => scan_op(ScanOp::Max),
        "cummin" => scan_op(ScanOp::Min),
        "logcumsumexp" => scan_op(ScanOp::LogAddExp),
        "reshape" => a[0].reshape(&axes(kw, "shape").unwrap()),
        "transpose" => a[0].transpose(axes(kw, "perm").as_deref()),
        "swapaxes" => swapaxes(&a[0], int(kw, "a"), int(kw, "b")),
        "moveaxis" => moveaxis(&a[0], int(kw, "a"), int(kw, "b")),
        "expand_dims" => expand_dims(&a[0], int(kw, "axis")),
        "squeeze" => squeeze(&a[0], ax),
        "concatenate" => concatenate(&a.iter().collect::<Vec<_>>(), int(kw, "axis")),
        "stack" => stack(&a.iter().collect::<Vec<_>>(), int(kw, "axis")),
        "split" => {
            let idx: Vec<usize> = axes(kw, "indices").unwrap().iter().map(|&i| i as usize).collect();
            let mut parts = split_at(&a[0], &idx, int(kw, "axis"))?;
            parts.reverse();
            concatenate(&parts.iter().collect::<Vec<_>>(), int(kw, "axis"))
        }
        "pad" => {
            let w: Vec<(usize, usize)> = kw["widths"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_u64().unwrap() as usize, p[1].as_u64().unwrap() as usize))
                .collect();
            pad(&a[0], &w, kw["value"].as_f64().unwrap())
        }
        "tile" => tile(&a[0], &axes(kw, "reps").unwrap().iter().map(|&r| r as usize).collect::<Vec<_>>()),
        "repeat" => repeat(&a[0], int(kw, "repeats") as usize, int(kw, "axis")),
        "flip" => flip(&a[0], ax),
        "roll" => roll(&a[0], int(kw, "shift"), int(kw, "axis")),
        "slice" => slice(&a[0], &axes(kw, "start").unwrap(), &axes(kw, "stop").unwrap(), &axes(kw, "step").unwrap()),
        "broadcast_to" => {
            broadcast_to(&a[0], &axes(kw, "shape").unwrap().iter().map(|&d| d as usize).collect::<Vec<_>>())
        }
        "where" => where_(&a[0], &a[1], &a[2]),
        "clip" => clip(&a[0], kw["lo"].as_f64(), kw["hi"].as_f64()),
        "matmul" => matmul(&a[0], &a[1]),
        "take" => take(&a[0], &a[1], kw["axis"].as_i64().map(|v| v as isize)),
        "take_along_axis" => take_along_axis(&a[0], &a[1], int(kw, "axis")),
        "scatter_add" => scatter_add_along_axis(&a[0], &a[1], &a[2], int(kw, "axis")),
        "outer" => outer(&a[0], &a[1]),
        "sort" => sort(&a[0], kw["axis"].as_i64().map(|v| v as isize)),
        "argsort" => argsort(&a[0], kw["axis"].as_i64().map(|v| v as isize)),
        "topk" => topk(&a[0], kw["k"].as_u64().unwrap() as usize, kw["axis"].as_i64().map(|v| v as isize)),
        "put_along_axis" => put_along_axis(&a[0], &a[1], &a[2], int(kw, "axis")),
        "gather_nd" => gather(&a[0], &a[1..], &axes(kw, "axes").unwrap()),
        "scatter_add_nd" => {
            let k = a.len() - 2;
            scatter_add(&a[0], &a[1..=k], &axes(kw, "axes").unwrap(), &a[k + 1])
        }
        "scatter_nd" => {
            let k = a.len() - 2;
            scatter(&a[0], &a[1..=k], &axes(kw, "axes").unwrap(), &a[k + 1])
        }
        "nn_transformer_encoder" | "nn_transformer_decoder" => {
            // MLX's parameters by name, put into ours by path: every one of ours must be there.
            let names: Vec<&str> = kw["names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
            let decoder = op == "nn_transformer_decoder";
            let inputs = if decoder { 2 } else { 1 };
            let given: std::collections::BTreeMap<&str, &Array> = names.iter().copied().zip(&a[inputs..]).collect();
            let nf = kw["norm_first"].as_bool().unwrap();
            let load = |m: &mut dyn Module| -> Result<()> {
                let mine = m.parameters();
                assert_eq!(mine.flatten().len(), names.len(), "{op}: {names:?}");
                let leaves: Vec<Array> = mine.flatten().iter().map(|(n, _)| given[n.as_str()].clone()).collect();
                m.update(&mine.with_leaves(&leaves)?)
            };
            if decoder {
                let mut m = nn::TransformerDecoder::new(2, 16, 4, Some(24), 0.0, nf)?;
                load(&mut m)?;
                m.forward_with(&a[0], &a[1], strata::fast::Mask::Causal, strata::fast::Mask::None)
            } else {
                let mut m = nn::TransformerEncoder::new(2, 16, 4, Some(24), 0.0, nf)?;
                load(&mut m)?;
                m.forward_masked(&a[0], strata::fast::Mask::Causal)
            }
        }
        "nn_batch_norm" => {
            let mut bn = nn::BatchNorm::new(6, 1e-5, 0.3, true)?;
            let (t0, t1) = (bn.forward(&a[0])?, bn.forward(&a[1])?);
            bn.set_training(false);
            let e = bn.forward(&a[0])?;
            let rv = broadcast_to(&bn.running_stats().1, e.shape())?;
            stack(&[&t0, &t1, &e, &rv], 0)
        }
        "nn_conv3d" | "nn_conv_transpose1d" | "nn_conv_transpose2d" | "nn_conv_transpose3d" => {
            fn layer<const N: usize>(a: &[Array], kw: &Value, transposed: bool) -> Result<Array> {
                let (s, p) = (int(kw, "stride") as usize, int(kw, "padding") as usize);
                let mut c = nn::ConvNd::<N>::new(1, 1, 1, s, p, true)?;
                (c.weight, c.bias, c.transposed) = (a[1].clone(), Some(a[2].clone()), transposed);
                c.forward(&a[0])
            }
            match op {
                "nn_conv3d" => layer::<3>(a, kw, false),
                "nn_conv_transpose1d" => layer::<1>(a, kw, true),
                "nn_conv_transpose2d" => layer::<2>(a, kw, true),
                _ => layer::<3>(a, kw, true),
            }
        }
        "nn_bilinear" => {
            nn::Bilinear { weight: a[2].clone(), bias: Some(a[3].clone()), frozen: false }.forward_pair(&a[0], &a[1])
        }
        "boolean_mask" => boolean_mask(&a[0], &a[1]),
        "nn_linear" => nn::Linear { weight: a[1].clone(), bias: Some(a[2].clone()), frozen: false }.forward(&a[0]),
        "nn_embedding" => nn::Embedding { weight: a[1].clone(), frozen: false }.forward(&a[0]),
        "nn_group_norm" => {
            let mut g = nn::GroupNorm::new(kw["groups"].as_u64().unwrap() as usize, a[1].size(), 1e-5)?;
            (g.weight, g.bias) = (a[1].clone(), a[2].clone());
            g.forward(&a[0])
        }
        "nn_max_pool2d" | "nn_avg_pool2d" => {
            let (k, st, p) = (int(kw, "kernel") as usize, int(kw, "stride") as usize, int(kw, "padding") as usize);
            if op == "nn_max_pool2d" { nn::Pool::max2d(k, st, p) } else { nn::Pool::avg2d(k, st, p) }.forward(&a[0])
        }
        "loss_cross_entropy" => nn::losses::cross_entropy(&a[0], &a[1], kw["smoothing"].as_f64().unwrap()),
        "loss_mse" => nn::losses::mse(&a[0], &a[1]),
        "loss_l1" => nn::losses::l1(&a[0], &a[1]),
        "loss_huber" => nn::losses::huber(&a[0], &a[1], kw["delta"].as_f64().unwrap()),
        "loss_bce_logits" => nn::losses::binary_cross_entropy_with_logits(&a[0], &a[1]),
        "loss_cosine" => nn::losses::cosine_similarity_loss(&a[0], &a[1], 1e-8),
        "loss_kl" => nn::losses::kl_div(&a[0], &a[1]),
        "linalg_solve" => linalg::solve(&a[0], &a[1]),
        "linalg_inv" => linalg::inv(&a[0]),
        "linalg_det" => linalg::det(&a[0]),
        "linalg_slogdet" => {
            let (s, l) = linalg::slogdet(&a[0])?;
            stack(&[&s, &l], 0)
        }
        "linalg_cholesky" => linalg::cholesky(&a[0]),
        "linalg_cholesky_inv" => linalg::cholesky_inv(&a[0], false),
        "linalg_lu_factor" => {
            let (f, piv) = linalg::lu_factor(&a[0])?;
            concatenate(&[&f, &expand_dims(&piv.astype(f.dtype())?, -1)?], -1)
        }
        "linalg_lu" => {
            let (p, l, u) = linalg::lu(&a[0])?;
            concatenate(&[&expand_dims(&p.astype(l.dtype())?, -1)?, &l, &u], -1)
        }
        "linalg_qr" => {
            let (q, r) = linalg::qr(&a[0])?;
            concatenate(&[&flat_matrices(&q)?, &flat_matrices(&r)?], -1)
        }
        "linalg_svd" => {
            let (u, s, vt) = linalg::svd(&a[0])?;
            let sg = column_signs(&u)?;
            let (u, vt) = (multiply(&u, &sg)?, multiply(&vt, &swapaxes(&sg, -1, -2)?)?);
            concatenate(&[&flat_matrices(&u)?, &s, &flat_matrices(&vt)?], -1)
        }
        "linalg_eigh" => {
            let (w, v) = linalg::eigh(&a[0])?;
            concatenate(&[&w, &flat_matrices(&multiply(&v, &column_signs(&v)?)?)?], -1)
        }
        "linalg_eigvalsh" => linalg::eigvalsh(&a[0]),
        "linalg_svdvals" => Ok(linalg::svd(&a[0])?.1),
        "linalg_pinv" => linalg::pinv(&a[0], 1e-15),
        "linalg_solve_triangular" => linalg::solve_triangular(&a[0], &a[1], kw["lower"].as_bool().unwrap()),
        "linalg_norm" => {
            let ord = match &kw["ord"] {
                Value::Null => None,
                Value::String(s) if s == "nuc" => Some(f64::NAN),
                Value::String(s) if s == "inf" => Some(f64::INFINITY),
                Value::String(_) => Some(f64::NEG_INFINITY),
                v => v.as_f64(),
            };
            linalg::norm(&a[0], ord, kw["matrix"].as_bool().unwrap())
        }
        op if op.starts_with("fft_") || op.starts_with("complex_") => fft_case(op, a, kw),
        "linalg_cross" => linalg::cross(&a[0], &a[1]),
        "linalg_eigvals_sorted" => {
            // NumPy's order is LAPACK's: compare sorted by real part (to 1e-4, so that a
            // conjugate pair's rounding does not decide), then imaginary part.
            let w = linalg::eigvals(&a[0])?;
            let n = a[0].shape()[a[0].ndim() - 1];
            let (re, im) = (real(&w)?.to_vec::<f32>()?, imag(&w)?.to_vec::<f32>()?);
            let mut out = Vec::new();
            for m in 0..re.len() / n {
                let mut p: Vec<(f32, f32)> = (m * n..(m + 1) * n).map(|k| (re[k], im[k])).collect();
                p.sort_by(|x, y| ((x.0 * 1e4).round(), x.1).partial_cmp(&((y.0 * 1e4).round(), y.1)).unwrap());
                out.extend(p.into_iter().flat_map(|(r, i)| [r, i]));
            }
            Array::from_slice(&out, &[w.shape(), &[2]].concat())
        }
        "einsum" => einsum(kw["spec"].as_str().unwrap(), &a.iter().collect::<Vec<_>>()),
        "tensordot" => tensordot(&a[0], &a[1], kw["axes"].as_u64().unwrap() as usize),
        "tensordot_axes" => tensordot_axes(&a[0], &a[1], &axes(kw, "a").unwrap(), &axes(kw, "b").unwrap()),
        "rms_norm" => fast::rms_norm(&a[0], Some(&a[1]), kw["eps"].as_f64().unwrap() as f32),
        "layer_norm" => fast::layer_norm(&a[0], Some(&a[1]), Some(&a[2]), kw["eps"].as_f64().unwrap() as f32),
        "rope" => fast::rope(
            &a[0],
            kw["dims"].as_u64().unwrap() as usize,
            kw["traditional"].as_bool().unwrap(),
            kw["base"].as_f64().unwrap() as f32,
            kw["scale"].as_f64().unwrap() as f32,
            kw["offset"].as_u64().unwrap() as usize,
        ),
        "sdpa" => {
            let mask = match kw["mask"].as_str().unwrap() {
                "causal" => fast::Mask::Causal,
                "none" => fast::Mask::None,
                _ => fast::Mask::Array(&a[3]),
            };
            fast::scaled_dot_product_attention(&a[0], &a[1], &a[2], kw["scale"].as_f64().unwrap() as f32, mask)
        }
        "conv" | "conv_transpose" => {
            let list = |k: &str| -> Vec<usize> { axes(kw, k).unwrap().iter().map(|&v| v as usize).collect() };
            let s = a[0].ndim() - 2;
            let mut desc = Conv::new(s).groups(kw["groups"].as_u64().unwrap() as usize).dilation(&list("dilation"));
            desc.stride[..s].copy_from_slice(&list("stride"));
            for (p, v) in desc.padding.iter_mut().zip(list("padding")) {
                *p = (v, v);
            }
            if op == "conv_transpose" {
                desc = desc.transposed(&list("output_padding"));
            }
            conv_general(&a[0], &a[1], &desc)
        }
        name => match BinaryOp::ALL.iter().find(|o| o.name() == name) {
            Some(&op) => binary(op, &a[0], &a[1]),
            None => Err(unhandled(name)),
        },
    }
}

/// The linalg ops the script must write, each with float32 and float64 input.
const LINALG_OPS: &[&str] = &[
    "linalg_solve",
    "linalg_inv",
    "linalg_det",
    "linalg_slogdet",
    "linalg_cholesky",
    "linalg_cholesky_inv",
    "linalg_lu_factor",
    "linalg_lu",
    "linalg_qr",
    "linalg_svd",
    "linalg_eigh",
    "linalg_eigvalsh",
    "linalg_svdvals",
    "linalg_pinv",
    "linalg_solve_triangular",
    "linalg_norm",
    "linalg_cross",
    "linalg_eigvals_sorted",
];

/// The FFT ops the script must write.
const FFT_OPS: &[&str] = &[
    "fft_fft",
    "fft_ifft",
    "fft_rfft",
    "fft_irfft",
    "fft_fftn",
    "fft_ifftn",
    "fft_rfftn",
    "fft_irfftn",
    "fft_fft2",
    "fft_ifft2",
    "fft_rfft2",
    "fft_irfft2",
    "fft_fftshift",
    "fft_ifftshift",
    "fft_fftfreq",
    "fft_rfftfreq",
];

/// The FFT ops that must also have a float64 input (taken as float32, as MLX does).
const FFT_F64_OPS: &[&str] = &["fft_fft", "fft_rfft", "fft_rfftn", "fft_rfft2", "fft_fftshift"];

/// Tolerance by dtype: float32 results may differ from NumPy's by a few ulps (different
/// transcendental implementations and summation orders).
fn close(got: f64, want: f64, dtype: DType) -> bool {
    if want.is_nan() {
        return got.is_nan();
    }
    if want.is_infinite() {
        return got == want;
    }
    let rel = match dtype {
        DType::F64 => 1e-12,
        DType::F32 => 2e-5,
        DType::F16 | DType::BF16 => 1e-2,
        _ => 0.0,
    };
    (got - want).abs() <= rel * want.abs().max(1.0)
}

#[test]
fn ops_match_numpy() {
    let refs = refs();
    let cases = refs["cases"].as_array().unwrap();
    assert!(cases.len() > 300, "only {} cases", cases.len());
    // A case the script stops writing would pass unnoticed: these must each be there, the
    // linalg ones on float32 and on float64 input, some FFT ones on float64 too.
    let present = |op: &str, dtype: Option<&str>| {
        cases.iter().any(|c| c["op"] == op && dtype.is_none_or(|t| c["args"][0]["dtype"] == t))
    };
    let mut missing: Vec<String> = Vec::new();
    for op in LINALG_OPS {
        for t in ["float32", "float64"] {
            if !present(op, Some(t)) {
                missing.push(format!("{op} ({t})"));
            }
        }
    }
    missing.extend(FFT_OPS.iter().filter(|op| !present(op, None)).map(|op| op.to_string()));
    missing.extend(FFT_F64_OPS.iter().filter(|op| !present(op, Some("float64"))).map(|op| format!("{op} (float64)")));
    assert!(missing.is_empty(), "no cases for {missing:?}");
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let op = c["op"].as_str().unwrap();
        let args: Vec<Array> = c["args"].as_array().unwrap().iter().map(decode).collect();
        let want = decode(&c["out"]);
        let got = match run(op, &args, &c["kw"]) {
            Ok(g) => g,
            Err(e) => {
                failures.push(format!("case {i} {op} {:?}: error {e}", c["kw"]));
                continue;
            }
        };
        let shapes: Vec<_> = args.iter().map(|a| a.shape().to_vec()).collect();
        if got.shape() != want.shape() || got.dtype() != want.dtype() {
            failures.push(format!(
                "case {i} {op} {shapes:?} {}: got {:?} {}, NumPy {:?} {}",
                c["kw"],
                got.shape(),
                got.dtype(),
                want.shape(),
                want.dtype()
            ));
            continue;
        }
        let (g, w) = (got.to_vec::<f64>().unwrap(), want.to_vec::<f64>().unwrap());
        if let Some(j) = (0..g.len()).find(|&j| !close(g[j], w[j], want.dtype())) {
            failures.push(format!("case {i} {op} {shapes:?} {}: element {j} is {} , NumPy {}", c["kw"], g[j], w[j]));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from NumPy:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn promotion_matches_numpy() {
    let refs = refs();
    for p in refs["promotion"].as_array().unwrap() {
        let t = |i: usize| p[i].as_str().unwrap().parse::<DType>().unwrap();
        let (a, b) = (t(0), t(1));
        // An integer with a float gives the float type (MLX's rule); NumPy widens the float
        // until it holds every integer value (int32 + float32 → float64).
        let want = match (a.is_integer(), b.is_integer()) {
            (true, false) if b.is_float() => b,
            (false, true) if a.is_float() => a,
            _ => t(2),
        };
        assert_eq!(result_type(a, b), want, "{a} with {b} (NumPy: {})", t(2));
    }
}

#[test]
fn random_matches_mlx() {
    let refs = refs();
    for r in refs["random"].as_array().unwrap() {
        let seed = r["seed"].as_u64().unwrap();
        let k = random::key(seed);
        let want: Vec<u32> = r["split"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(random::split(&k, 3).unwrap().to_vec::<u32>().unwrap(), want, "split, seed {seed}");
        let u = random::uniform(-2.0, 3.0, &[2, 7], DType::F32, Some(&k)).unwrap().to_vec::<f32>().unwrap();
        let want: Vec<f32> = r["uniform"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        assert_eq!(u, want, "uniform, seed {seed}");
        let z = random::normal(&[9], DType::F32, 0.0, 1.0, Some(&k)).unwrap().to_vec::<f32>().unwrap();
        for (a, b) in z.iter().zip(r["normal"].as_array().unwrap()) {
            // erfinv implementations differ in the last bits.
            let b = b.as_f64().unwrap() as f32;
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "normal, seed {seed}: {a} vs {b}");
        }
        let ints = |name: &str| -> Vec<u32> {
            r[name].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect()
        };
        let p = random::permutation(12, Some(&k)).unwrap().to_vec::<u32>().unwrap();
        assert_eq!(p, ints("permutation"), "permutation, seed {seed}");
        let logits = Array::from_slice(&[0.1f32, 1.5, -0.3, 0.8, 2.0, -1.0, 0.0, 0.5], &[2, 4]).unwrap();
        let c = random::categorical(&logits, -1, Some(5), Some(&k)).unwrap();
        assert_eq!(c.shape(), [2, 5]);
        assert_eq!(c.to_vec::<u32>().unwrap(), ints("categorical"), "categorical, seed {seed}");
        let floats = |name: &str, got: Array| {
            for (a, b) in got.to_vec::<f32>().unwrap().iter().zip(r[name].as_array().unwrap()) {
                let b = b.as_f64().unwrap() as f32;
                assert!((a - b).abs() <= 2e-5 * b.abs().max(1.0), "{name}, seed {seed}: {a} vs {b}");
            }
        };
        floats("gumbel", random::gumbel(&[7], DType::F32, Some(&k)).unwrap());
        floats("truncated_normal", random::truncated_normal(-0.5, 1.5, &[9], DType::F32, Some(&k)).unwrap());
    }
}

/// Three steps of each optimizer from the same start and gradients as `mlx.optimizers`.
#[test]
fn optimizers_match_mlx() {
    let refs = refs();
    let cases = refs["optimizers"].as_array().unwrap();
    assert!(cases.len() >= 14);
    let floats = |v: &Value| -> Vec<f32> { v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect() };
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let mut opt: Box<dyn Optimizer> = match name {
            "sgd" => Box::new(optim::Sgd::new(0.1)),
            "sgd_momentum" => Box::new(optim::Sgd::new(0.1).momentum(0.9, false).weight_decay(0.01)),
            "sgd_nesterov" => Box::new(optim::Sgd::new(0.1).momentum(0.9, true)),
            "adam" => Box::new(optim::Adam::new(0.01)),
            "adam_mlx" => {
                let mut a = optim::Adam::new(0.01);
                a.bias_correction = false;
                Box::new(a)
            }
            "adamw" => Box::new(optim::adamw(0.01, 0.1)),
            "adamax_mlx" => {
                let mut a = optim::Adamax::new(0.01);
                a.bias_correction = false;
                Box::new(a)
            }
            "adagrad" => Box::new(optim::Adagrad::new(0.1)),
            "rmsprop" => Box::new(optim::RmsProp::new(0.01)),
            "lion" => {
                let mut l = optim::Lion::new(0.01);
                l.weight_decay = 0.1;
                Box::new(l)
            }
            "adafactor" => Box::new(optim::Adafactor::new()),
            "adafactor_b1" => {
                let mut a = optim::Adafactor::with_learning_rate(0.01);
                (a.beta1, a.weight_decay) = (Some(0.9), 0.1);
                Box::new(a)
            }
            "muon" => Box::new(optim::Muon::new(0.02)),
            "muon_plain" => {
                let mut m = optim::Muon::new(0.02);
                (m.nesterov, m.weight_decay) = (false, 0.0);
                Box::new(m)
            }
            other => panic!("no optimizer {other}"),
        };
        let tree = |w: &Value, b: &Value| {
            Tree::map([
                ("w", Tree::from(Array::from_slice(&floats(w), &[3, 4]).unwrap())),
                ("b", Tree::from(Array::from_slice(&floats(b), &[5]).unwrap())),
            ])
        };
        let mut p = tree(&c["p0"], &c["q0"]);
        let steps = c["grads"].as_array().unwrap().iter().zip(c["qgrads"].as_array().unwrap());
        for (k, (g, h)) in steps.enumerate() {
            p = opt.update(&p, &tree(g, h)).unwrap();
            for (leaf, key) in [("w", "after"), ("b", "qafter")] {
                let got = p.get(leaf).unwrap().to_vec::<f32>().unwrap();
                for (i, (a, b)) in got.iter().zip(floats(&c[key][k])).enumerate() {
                    assert!((a - b).abs() <= 2e-6 * b.abs().max(1.0), "{name} step {k} {leaf}[{i}]: {a} vs MLX {b}");
                }
            }
        }
    }
}

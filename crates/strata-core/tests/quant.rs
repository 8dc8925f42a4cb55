//! Quantization against two independent references (`scripts/refs/quant.py`):
//! `mlx.core.quantize`/`dequantize` for affine, mxfp4, mxfp8 and nvfp4 under
//! [`Numerics::Mlx`], and gfloat's OCP MX block encoder for every MX element format under the
//! default [`Numerics::Ocp`] — packed words, scales, biases and dequantized values, bit for bit.

mod common;

use common::{Npy, manifest, refs_dir};
use strata_core::DType;
use strata_core::quant::{self, Numerics, QuantMode, TensorScale};

fn bits_of(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Index and values of the first difference, for a readable failure.
fn first_diff<T: PartialEq + std::fmt::Debug>(a: &[T], b: &[T]) -> Option<String> {
    if a.len() != b.len() {
        return Some(format!("lengths {} vs {}", a.len(), b.len()));
    }
    let n = a.iter().zip(b).filter(|(x, y)| x != y).count();
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .map(|i| format!("{n} differ, first at {i}: ours {:?}, reference {:?}", a[i], b[i]))
}

#[test]
fn matches_mlx_quantize_and_dequantize() {
    let dir = refs_dir("quant");
    let m = manifest(&dir);
    let mlx = &m["mlx"];
    let dir = dir.join("mlx");
    let x = Npy::read(&dir.join("x.npy"));
    let shape = x.shape.clone();
    let x = x.to_f32();
    let mut checked = 0;
    for case in mlx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let mut mode: QuantMode = case["mode"].as_str().unwrap().parse().unwrap();
        if let QuantMode::Nvfp4 { numerics, .. } = mode {
            let tensor_scale =
                case["global_scale"].as_f64().map_or(TensorScale::One, |g| TensorScale::Global(g as f32));
            mode = QuantMode::Nvfp4 { tensor_scale, numerics };
        }
        // MLX quantizes the weight in its own dtype: round the input the same way.
        let dtype: DType = case["input_dtype"].as_str().unwrap().parse().unwrap();
        let input: Vec<f32> = x.iter().map(|&v| dtype.decode_f32(dtype.encode_f32(v))).collect();
        let q = quant::quantize(&input, &shape, &mode).unwrap();

        let words = Npy::read(&dir.join(format!("{name}.wq.npy"))).to_u32();
        if let Some(d) = first_diff(&q.data_words(), &words) {
            panic!("{name}: packed words differ from MLX: {d}");
        }
        let scales = Npy::read(&dir.join(format!("{name}.scales.npy")));
        match mode {
            QuantMode::Affine { .. } => {
                let want = bits_of(&scales.to_f32());
                if let Some(d) = first_diff(&bits_of(&q.scales().to_f32_vec()), &want) {
                    panic!("{name}: scales differ from MLX: {d}");
                }
                let want = bits_of(&Npy::read(&dir.join(format!("{name}.biases.npy"))).to_f32());
                if let Some(d) = first_diff(&bits_of(&q.biases().unwrap().to_f32_vec()), &want) {
                    panic!("{name}: biases differ from MLX: {d}");
                }
            }
            _ => {
                if let Some(d) = first_diff(&q.scales().bytes, &scales.to_u8()) {
                    panic!("{name}: scale codes differ from MLX: {d}");
                }
            }
        }
        if case["dequantized"].as_bool().unwrap_or(false) {
            let want = bits_of(&Npy::read(&dir.join(format!("{name}.deq.npy"))).to_f32());
            if let Some(d) = first_diff(&bits_of(&quant::dequantize(&q)), &want) {
                panic!("{name}: dequantized values differ from MLX: {d}");
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 67, "expected 63 affine and 4 fp cases");
    eprintln!("{checked} cases bit-equal to mlx {}", mlx["mlx"]);
}

#[test]
fn mx_blocks_match_gfloat() {
    let dir = refs_dir("quant");
    let m = manifest(&dir);
    let dir = dir.join("gfloat");
    let x = Npy::read(&dir.join("x.npy"));
    assert_eq!(x.shape[1], 32);
    let shape = x.shape.clone();
    let x = x.to_f32();
    let cases = m["gfloat"]["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 6, "every MX element format");
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let mode: QuantMode = case["mode"].as_str().unwrap().parse().unwrap();
        assert!(matches!(mode, QuantMode::Mx { numerics: Numerics::Ocp, .. }));
        let q = quant::quantize(&x, &shape, &mode).unwrap();
        let scales = Npy::read(&dir.join(format!("{name}.scales.npy"))).to_u8();
        if let Some(d) = first_diff(&q.scales().bytes, &scales) {
            panic!("{name}: E8M0 scales differ from gfloat: {d}");
        }
        let codes = Npy::read(&dir.join(format!("{name}.codes.npy"))).to_u8();
        if let Some(d) = first_diff(&q.codes(), &codes) {
            panic!("{name}: element codes differ from gfloat: {d}");
        }
    }
}

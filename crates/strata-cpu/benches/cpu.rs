//! The CPU benchmark: Strata's kernels against NumPy/OpenBLAS and MLX on the same machine, in
//! the same run.
//!
//! `cargo bench -p strata-cpu --bench cpu [-- --filter 'matmul f32|conv' --rounds 9 --json out.json]`
//! (`--filter` keeps the cases whose name contains any of the `|`-separated parts)
//!
//! It starts `scripts/bench/peers.py serve` (from `target/pyenv`, which `scripts/test`
//! creates) and, for every case, alternates one timing of our kernel with one timing of each
//! peer, `rounds` times, so that both see the same drift of a noisy machine; it reports
//! medians and the ratio `peer time / our time` (above 1: we are faster). It also measures the
//! machine's FMA peak (every core running independent AVX-512 or AVX2 FMAs), so GEMM figures
//! can be read as a fraction of it. Results are printed as a table and written as JSON.

use std::path::PathBuf;
use std::time::Instant;

use half::{bf16, f16};
use serde_json::{Value, json};

#[path = "common/peers.rs"]
mod peers;
use peers::{Peers, median};
use strata_core::DType;
use strata_core::kernel::{Attention, AttentionMask, Conv, Layout, Matmul2d, QuantizedMatmul};
use strata_core::quant::{self, QuantMode};
use strata_cpu::{CpuBuffer, TensorMut, TensorRef};

/// A benchmark case: our kernel as a closure, its peers, and its FLOP count.
struct Case {
    name: String,
    peer_case: Value,
    peers: Vec<&'static str>,
    flops: f64,
    ours: Box<dyn FnMut()>,
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 / (1u64 << 52) as f64 - 1.0) as f32
        })
        .collect()
}

fn buffer<T: bytemuck::Pod>(v: &[T]) -> &'static CpuBuffer {
    Box::leak(Box::new(CpuBuffer::from_slice(v).unwrap()))
}

fn layout(shape: &[usize]) -> &'static Layout {
    Box::leak(Box::new(Layout::contiguous(shape)))
}

fn matmul_case(m: usize, n: usize, k: usize, dtype: DType, peers: Vec<&'static str>) -> Case {
    let (a, b) = (random(m * k, 1), random(k * n, 2));
    let (ab, bb) = match dtype {
        DType::F32 => (buffer(&a), buffer(&b)),
        DType::BF16 => (
            buffer(&a.iter().map(|&v| bf16::from_f32(v)).collect::<Vec<_>>()),
            buffer(&b.iter().map(|&v| bf16::from_f32(v)).collect::<Vec<_>>()),
        ),
        _ => (
            buffer(&a.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>()),
            buffer(&b.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>()),
        ),
    };
    let mut cb = CpuBuffer::zeros(m * n * dtype.bits() as usize / 8).unwrap();
    let (la, lb, lc) = (layout(&[m, k]), layout(&[k, n]), layout(&[m, n]));
    let desc = Matmul2d::new(m, n, k);
    Case {
        name: format!("matmul {dtype} {m}x{n}x{k}"),
        peer_case: json!({"op": "matmul", "m": m, "n": n, "k": k, "dtype": dtype.name()}),
        peers,
        flops: 2.0 * (m * n * k) as f64,
        ours: Box::new(move || {
            strata_cpu::matmul2d(
                &desc,
                TensorRef::new(dtype, ab, la),
                TensorRef::new(dtype, bb, lb),
                None,
                None,
                TensorMut::new(dtype, &mut cb, lc),
            )
            .unwrap()
        }),
    }
}

fn conv_case() -> Case {
    let (n, h, w, ci, co) = (8, 56, 56, 64, 64);
    let x = buffer(&random(n * h * w * ci, 3));
    let wt = buffer(&random(9 * ci * co, 4));
    let mut y = CpuBuffer::zeros(n * h * w * co * 4).unwrap();
    let (lx, lw, ly) = (layout(&[n, h, w, ci]), layout(&[3, 3, ci, co]), layout(&[n, h, w, co]));
    let desc = Conv::new_2d([1, 1], [1, 1]);
    Case {
        name: "conv2d 3x3 64->64 8x56x56".into(),
        peer_case: json!({"op": "conv2d", "n": n, "h": h, "w": w, "c_in": ci, "c_out": co, "kh": 3, "kw": 3, "stride": 1, "pad": 1}),
        peers: vec!["mlx", "numpy_im2col"],
        flops: 2.0 * (n * h * w * co * 9 * ci) as f64,
        ours: Box::new(move || {
            strata_cpu::conv(
                &desc,
                TensorRef::new(DType::F32, x, lx),
                TensorRef::new(DType::F32, wt, lw),
                TensorMut::new(DType::F32, &mut y, ly),
            )
            .unwrap()
        }),
    }
}

fn attention_case(causal: bool) -> Case {
    let (b, hds, l, d) = (1, 8, 1024, 64);
    let q = buffer(&random(b * hds * l * d, 5));
    let k = buffer(&random(b * hds * l * d, 6));
    let v = buffer(&random(b * hds * l * d, 7));
    let mut o = CpuBuffer::zeros(b * hds * l * d * 4).unwrap();
    let lq = layout(&[b, hds, l, d]);
    let desc =
        Attention::new(1.0 / (d as f32).sqrt()).mask(if causal { AttentionMask::Causal } else { AttentionMask::None });
    Case {
        name: format!("attention L=1024 D=64 H=8{}", if causal { " causal" } else { "" }),
        peer_case: json!({"op": "attention", "b": b, "heads": hds, "seq": l, "dim": d, "causal": causal}),
        peers: vec!["mlx", "numpy"],
        flops: 4.0 * (b * hds * l * l * d) as f64 / if causal { 2.0 } else { 1.0 },
        ours: Box::new(move || {
            strata_cpu::attention(
                &desc,
                TensorRef::new(DType::F32, q, lq),
                TensorRef::new(DType::F32, k, lq),
                TensorRef::new(DType::F32, v, lq),
                None,
                TensorMut::new(DType::F32, &mut o, lq),
            )
            .unwrap()
        }),
    }
}

fn qmatmul_case(m: usize, mode: &str) -> Case {
    let (n, k) = (4096, 4096);
    let w =
        Box::leak(Box::new(quant::quantize(&random(n * k, 8), &[n, k], &mode.parse::<QuantMode>().unwrap()).unwrap()));
    let x = buffer(&random(m * k, 9));
    let mut y = CpuBuffer::zeros(m * n * 4).unwrap();
    let (lx, ly) = (layout(&[m, k]), layout(&[m, n]));
    let peer_mode = if mode.starts_with("affine") { "affine4" } else { mode };
    Case {
        name: format!("quantized matmul {mode} {m}x{n}x{k}"),
        peer_case: json!({"op": "qmatmul", "m": m, "n": n, "k": k, "mode": peer_mode}),
        peers: vec!["mlx", "numpy_dequant"],
        flops: 2.0 * (m * n * k) as f64,
        ours: Box::new(move || {
            strata_cpu::quantized_matmul(
                &QuantizedMatmul::default(),
                TensorRef::new(DType::F32, x, lx),
                w,
                TensorMut::new(DType::F32, &mut y, ly),
            )
            .unwrap()
        }),
    }
}

/// FLOP/s of independent FMAs on every core: the machine's arithmetic peak.
fn fma_peak() -> (f64, &'static str) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // 16 independent accumulators cover the FMA latency on both ports.
        #[allow(clippy::needless_range_loop)] // an iterator here compiles to memory round trips
        #[target_feature(enable = "avx512f")]
        fn avx512(iters: usize) -> f32 {
            let mut acc = [_mm512_set1_ps(0.0); 16];
            let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
            for _ in 0..iters {
                for k in 0..16 {
                    acc[k] = _mm512_fmadd_ps(acc[k], a, b);
                }
            }
            acc.iter().map(|v| _mm512_reduce_add_ps(*v)).sum()
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            let threads = rayon::current_num_threads();
            let iters = 30_000_000;
            let t = Instant::now();
            let handles: Vec<_> = (0..threads).map(|_| std::thread::spawn(move || unsafe { avx512(iters) })).collect();
            let sums: Vec<f32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            std::hint::black_box(sums);
            return (threads as f64 * iters as f64 * 16.0 * 16.0 * 2.0 / t.elapsed().as_secs_f64(), "AVX-512");
        }
    }
    (f64::NAN, "unmeasured")
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let filter = arg("--filter").unwrap_or_default();
    let rounds: usize = arg("--rounds").and_then(|r| r.parse().ok()).unwrap_or(9);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let json_path = arg("--json").map(PathBuf::from).unwrap_or_else(|| root.join("target/bench/cpu.json"));

    let mut peers = match Peers::start(&root, rayon::current_num_threads()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let (peak, isa) = fma_peak();
    let threads = rayon::current_num_threads();
    println!(
        "CPU: {} ({threads} threads); FMA peak {:.0} GFLOP/s ({isa}); our kernels {:?}",
        cpu_model(),
        peak / 1e9,
        strata_cpu::kernel_names()
    );
    println!("peers: {}", peers.ready);

    let mut cases = Vec::new();
    let numpy_mlx = || vec!["numpy", "mlx"];
    for n in [256, 512, 1024, 2048, 4096] {
        cases.push(matmul_case(n, n, n, DType::F32, if n <= 1024 { numpy_mlx() } else { vec!["numpy"] }));
    }
    for m in [1, 16, 128] {
        cases.push(matmul_case(m, 4096, 4096, DType::F32, vec!["numpy"]));
    }
    for n in [1024, 2048] {
        cases.push(matmul_case(n, n, n, DType::BF16, if n == 1024 { numpy_mlx() } else { vec!["numpy"] }));
        cases.push(matmul_case(n, n, n, DType::F16, vec!["numpy"]));
    }
    cases.push(conv_case());
    cases.push(attention_case(false));
    cases.push(attention_case(true));
    cases.push(qmatmul_case(1, "mxfp4"));
    cases.push(qmatmul_case(1, "nvfp4"));
    cases.push(qmatmul_case(1, "affine:4:64"));

    let mut results = Vec::new();
    for mut case in cases.into_iter().filter(|c| filter.split('|').any(|f| c.name.contains(f))) {
        (case.ours)(); // warm-up (allocations, page faults, kernel choice)
        let mut ours = Vec::new();
        let mut theirs: Vec<Vec<f64>> = vec![Vec::new(); case.peers.len()];
        let mut failed: Vec<Option<String>> = vec![None; case.peers.len()];
        for _ in 0..rounds {
            // OpenBLAS's threads spin for a while after each call (OPENBLAS_THREAD_TIMEOUT):
            // let them go to sleep so that they do not take our cores.
            std::thread::sleep(std::time::Duration::from_millis(200));
            let t = Instant::now();
            (case.ours)();
            ours.push(t.elapsed().as_secs_f64());
            for (i, p) in case.peers.iter().enumerate() {
                if failed[i].is_none() {
                    match peers.time(&case.peer_case, p) {
                        Ok(s) => theirs[i].push(s),
                        Err(e) => failed[i] = Some(e),
                    }
                }
            }
        }
        let ours_med = median(&mut ours);
        let peer_meds: Vec<f64> = theirs.iter_mut().map(|v| median(v)).collect();
        let mut line =
            format!("{:<40} ours {:>9.3} ms {:>7.1} GFLOP/s", case.name, ours_med * 1e3, case.flops / ours_med / 1e9);
        let mut peer_json = Vec::new();
        for (i, p) in case.peers.iter().enumerate() {
            match &failed[i] {
                Some(e) => line += &format!(" | {p}: failed ({e})"),
                None => line += &format!(" | {p} {:>9.3} ms -> {:>6.2}x", peer_meds[i] * 1e3, peer_meds[i] / ours_med),
            }
            peer_json.push(
                json!({"peer": p, "median_s": peer_meds[i], "ratio": peer_meds[i] / ours_med, "error": failed[i]}),
            );
        }
        println!("{line}");
        results.push(
            json!({"case": case.name, "peer_case": case.peer_case, "flops": case.flops, "ours_median_s": ours_med,
            "ours_gflops": case.flops / ours_med / 1e9, "peers": peer_json, "rounds": rounds}),
        );
    }
    let report = json!({"cpu": cpu_model(), "threads": threads, "fma_peak_gflops": peak / 1e9, "kernels": strata_cpu::kernel_names(),
        "peers": peers.ready, "results": results});
    if let Some(dir) = json_path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&json_path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("wrote {}", json_path.display());
}

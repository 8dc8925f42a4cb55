//! The wgpu backend on the best adapter present, in one run: element-wise kernels, reductions
//! and scans against the adapter's own buffer copy (achieved bandwidth, bytes read + written
//! per second), and `matmul2d` against cuBLAS on the same card when CUDA is there too
//! (TFLOP/s, with the results checked against each other first).
//!
//! `cargo run --release -p strata-wgpu --example bench` (`STRATA_WGPU_ADAPTER` picks another
//! adapter). Timings are wall-clock over back-to-back runs ended by a wait, best of five, for
//! both sides.

use std::time::Instant;

use cudarc::cublas::{CudaBlas, Gemm, GemmConfig, sys::cublasOperation_t};
use half::f16;
use strata_core::DType;
use strata_core::kernel::{Backend, BinaryOp, Layout, Matmul2d, ReduceOp, ScanOp, TensorMut, TensorRef, UnaryOp};
use strata_wgpu::{Wgpu, WgpuBuffer};

/// Best of five timings of `reps` back-to-back runs, seconds per run.
fn time<B: Backend>(gpu: &B, reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    gpu.synchronize().unwrap();
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        gpu.synchronize().unwrap();
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    best
}

type Case<'a> = (&'a str, usize, Box<dyn Fn(&mut WgpuBuffer) + 'a>);

fn random(t: DType, n: usize, seed: &mut u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 4);
    for _ in 0..n {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let v = (*seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
        match t {
            DType::F16 => out.extend(f16::from_f64(v).to_le_bytes()),
            _ => out.extend((v as f32).to_le_bytes()),
        }
    }
    out
}

fn decode(t: DType, b: &[u8]) -> Vec<f64> {
    match t {
        DType::F16 => b.chunks(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f64()).collect(),
        _ => b.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect(),
    }
}

fn bandwidth(gpu: &Wgpu) -> Result<(), strata_core::Error> {
    let bytes = (1usize << 30).min(gpu.device().limits().max_storage_buffer_binding_size as usize / 4 * 4);
    let n = bytes / 4;
    let l = Layout::contiguous(&[n]);
    let x = gpu.upload(&vec![0x3f; bytes])?;
    let y = gpu.upload(&vec![0x40; bytes])?;
    let mut out = gpu.alloc_output(bytes)?;
    let gbs = |moved: usize, s: f64| moved as f64 / s / 1e9;
    let buffer_copy = time(gpu, 20, || gpu.memcpy(&x, &out).unwrap());
    // The yardstick: the card's copy bandwidth, from CUDA's device-to-device copy when CUDA is
    // there (Vulkan's buffer copy may run on a copy engine), else the adapter's buffer copy.
    let copy = match strata_cuda::Cuda::new(0) {
        Ok(cuda) => {
            let (cx, mut cy) = (cuda.alloc(bytes)?, cuda.alloc_output(bytes)?);
            time(&cuda, 20, || cuda.memcpy(&cx, &mut cy).unwrap())
        }
        Err(_) => buffer_copy,
    };
    println!("{:<36} {:>9} {:>8}", format!("case ({} MiB f32)", bytes >> 20), "GB/s", "vs copy");
    println!("{:<36} {:>9.0} {:>8.2}", "yardstick: device-to-device copy", gbs(2 * bytes, copy), 1.0);
    println!("{:<36} {:>9.0} {:>8.2}", "wgpu copy_buffer_to_buffer", gbs(2 * bytes, buffer_copy), copy / buffer_copy);
    let r = |b| TensorRef::new(DType::F32, b, &l);
    let half_l = Layout::contiguous(&[n]);
    let side = 1usize << n.trailing_zeros().div_ceil(2);
    let (rows, cols) = (n / side, side);
    let square = Layout::contiguous(&[rows, cols]);
    let sq = |b| TensorRef::new(DType::F32, b, &square);
    let per_row = Layout::contiguous(&[rows]);
    let per_col = Layout::contiguous(&[cols]);
    let scalar = Layout::contiguous(&[]);
    let cases: Vec<Case> = vec![
        ("copy kernel", 2 * bytes, Box::new(|o| gpu.copy(r(&x), TensorMut::new(DType::F32, o, &l)).unwrap())),
        (
            "unary neg",
            2 * bytes,
            Box::new(|o| gpu.unary(UnaryOp::Neg, r(&x), TensorMut::new(DType::F32, o, &l)).unwrap()),
        ),
        (
            "unary exp",
            2 * bytes,
            Box::new(|o| gpu.unary(UnaryOp::Exp, r(&x), TensorMut::new(DType::F32, o, &l)).unwrap()),
        ),
        (
            "binary add",
            3 * bytes,
            Box::new(|o| gpu.binary(BinaryOp::Add, r(&x), r(&y), TensorMut::new(DType::F32, o, &l)).unwrap()),
        ),
        (
            "cast f32 -> f16",
            bytes + bytes / 2,
            Box::new(|o| gpu.cast(r(&x), TensorMut::new(DType::F16, o, &half_l)).unwrap()),
        ),
        (
            "sum over rows (axis 1)",
            bytes,
            Box::new(|o| gpu.reduce(ReduceOp::Sum, &[1], sq(&x), TensorMut::new(DType::F32, o, &per_row)).unwrap()),
        ),
        (
            "sum over columns (axis 0)",
            bytes,
            Box::new(|o| gpu.reduce(ReduceOp::Sum, &[0], sq(&x), TensorMut::new(DType::F32, o, &per_col)).unwrap()),
        ),
        (
            "sum of everything",
            bytes,
            Box::new(|o| gpu.reduce(ReduceOp::Sum, &[0], r(&x), TensorMut::new(DType::F32, o, &scalar)).unwrap()),
        ),
        (
            "cumsum along rows",
            2 * bytes,
            Box::new(|o| {
                gpu.scan(ScanOp::Sum, 1, false, true, sq(&x), TensorMut::new(DType::F32, o, &square)).unwrap()
            }),
        ),
    ];
    for (name, moved, f) in &cases {
        let s = time(gpu, 10, || f(&mut out));
        println!("{name:<36} {:>9.0} {:>8.2}", gbs(*moved, s), gbs(*moved, s) / gbs(2 * bytes, copy));
    }
    Ok(())
}

/// Host time per dispatch of a tiny kernel, back to back.
fn dispatch(gpu: &Wgpu) -> Result<(), strata_core::Error> {
    let tiny = Layout::contiguous(&[256]);
    let x = gpu.upload(&[0x3f; 1024])?;
    let mut out = gpu.alloc_output(1024)?;
    let s = time(gpu, 2000, || {
        gpu.unary(UnaryOp::Neg, TensorRef::new(DType::F32, &x, &tiny), TensorMut::new(DType::F32, &mut out, &tiny))
            .unwrap()
    });
    println!("{:<36} {:>9.2} µs", "dispatch, 1 KiB", s * 1e6);
    // The host's part alone: recording (and submitting), without waiting for the device.
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..2000 {
            gpu.unary(
                UnaryOp::Neg,
                TensorRef::new(DType::F32, &x, &tiny),
                TensorMut::new(DType::F32, &mut out, &tiny),
            )?;
        }
        best = best.min(t.elapsed().as_secs_f64() / 2000.0);
        gpu.synchronize()?;
    }
    println!("{:<36} {:>9.2} µs", "dispatch, host time to record", best * 1e6);
    Ok(())
}

/// One product of the GEMM sections: `C = A·B` (m × n × k, row-major), or `C = A·Bᵀ` with B
/// stored n × k as a `Linear` layer's weight is (`nt`).
#[derive(Clone, Copy)]
struct Product {
    t: DType,
    m: usize,
    n: usize,
    k: usize,
    nt: bool,
}

/// cuBLAS on the product's row-major operands (Cᵀ = Bᵀ·Aᵀ in its column-major terms).
fn cublas(
    blas: &CudaBlas,
    p: Product,
    a: &strata_cuda::CudaBuffer,
    b: &strata_cuda::CudaBuffer,
    c: &mut strata_cuda::CudaBuffer,
) {
    fn config<T>(Product { m, n, k, nt, .. }: Product, alpha: T, beta: T) -> GemmConfig<T> {
        let (transa, lda) =
            if nt { (cublasOperation_t::CUBLAS_OP_T, k as i32) } else { (cublasOperation_t::CUBLAS_OP_N, n as i32) };
        let transb = cublasOperation_t::CUBLAS_OP_N;
        let (m, n, k) = (n as i32, m as i32, k as i32);
        GemmConfig { transa, transb, m, n, k, alpha, lda, ldb: k, beta, ldc: m }
    }
    let Product { t, m, n, k, .. } = p;
    // SAFETY: each buffer holds the operand's elements of the type it is viewed as.
    unsafe {
        if t == DType::F16 {
            let (av, bv) =
                (a.device_slice().transmute::<f16>(m * k).unwrap(), b.device_slice().transmute::<f16>(k * n).unwrap());
            let mut cv = c.device_slice_mut().transmute_mut::<f16>(m * n).unwrap();
            blas.gemm(config(p, f16::ONE, f16::ZERO), &bv, &av, &mut cv).unwrap();
        } else {
            let (av, bv) =
                (a.device_slice().transmute::<f32>(m * k).unwrap(), b.device_slice().transmute::<f32>(k * n).unwrap());
            let mut cv = c.device_slice_mut().transmute_mut::<f32>(m * n).unwrap();
            blas.gemm(config(p, 1.0f32, 0.0f32), &bv, &av, &mut cv).unwrap();
        }
    }
}

fn gemm(gpu: &Wgpu, cases: &[Product]) -> Result<(), strata_core::Error> {
    let cuda = match strata_cuda::Cuda::new(0) {
        Ok(c) => c,
        Err(e) => {
            println!("matmul2d: no cuBLAS to compare with ({e})");
            return Ok(());
        }
    };
    let blas = CudaBlas::new(cuda.stream().clone()).expect("cuBLAS");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    println!(
        "{:<9} {:>2} {:>6} {:>6} {:>6} {:>10} {:>10} {:>7} {:>10}",
        "dtype", "B", "m", "n", "k", "ours TF/s", "cuBLAS", "ratio", "rel.diff"
    );
    for &p in cases {
        let Product { t, m, n, k, nt } = p;
        let w = t.bits() as usize / 8;
        let (la, lc) = (Layout::contiguous(&[m, k]), Layout::contiguous(&[m, n]));
        let lb = Layout::contiguous(&if nt { [n, k] } else { [k, n] });
        let (ha, hb) = (random(t, m * k, &mut seed), random(t, k * n, &mut seed));
        let (a, b) = (gpu.upload(&ha)?, gpu.upload(&hb)?);
        let mut ours = gpu.upload(&vec![0xA5; m * n * w])?;
        let (ca, cb) = (cuda.upload(&ha)?, cuda.upload(&hb)?);
        let mut theirs = cuda.upload(&vec![0x5A; m * n * w])?;
        let desc = Matmul2d::new(m, n, k).transpose_right(nt);
        let run = |c: &mut WgpuBuffer| {
            gpu.matmul2d(
                &desc,
                TensorRef::new(t, &a, &la),
                TensorRef::new(t, &b, &lb),
                None,
                None,
                TensorMut::new(t, c, &lc),
            )
            .unwrap()
        };
        run(&mut ours);
        cublas(&blas, p, &ca, &cb, &mut theirs);
        let (mut x, mut y) = (vec![0u8; m * n * w], vec![0u8; m * n * w]);
        gpu.download(&ours, &mut x)?;
        cuda.download(&theirs, &mut y)?;
        let (x, y) = (decode(t, &x), decode(t, &y));
        let diff: f64 = x.iter().zip(&y).map(|(p, q)| (p - q) * (p - q)).sum::<f64>().sqrt();
        let norm: f64 = y.iter().map(|q| q * q).sum::<f64>().sqrt();
        let flops = 2.0 * (m * n * k) as f64;
        let reps = (2e11 / flops).clamp(3.0, 200.0) as usize;
        let mine = time(gpu, reps, || run(&mut ours));
        let peer = time(&cuda, reps, || cublas(&blas, p, &ca, &cb, &mut theirs));
        println!(
            "{:<9} {:>2} {:>6} {:>6} {:>6} {:>10.2} {:>10.2} {:>7.2} {:>10.1e}",
            t.to_string(),
            if nt { "NT" } else { "NN" },
            m,
            n,
            k,
            flops / mine / 1e12,
            flops / peer / 1e12,
            peer / mine,
            diff / norm
        );
    }
    Ok(())
}

fn main() -> Result<(), strata_core::Error> {
    let gpu = Wgpu::new()?;
    let info = gpu.adapter_info();
    println!(
        "adapter: {} ({:?}, {:?}, driver {}); cooperative matrices: {}; subgroups: {}; workgroup memory: {} KiB",
        info.name,
        info.device_type,
        info.backend,
        info.driver_info,
        gpu.has_coop(),
        gpu.has_subgroups(),
        gpu.limits().max_compute_workgroup_storage_size / 1024
    );
    // Arguments pick sections: `bandwidth`, `dispatch`, `gemm` (both dtypes), `f16` or `f32`
    // (one GEMM dtype), `decode` (products of one and eight rows with a `Linear` weight, both
    // dtypes); none runs everything.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let want = |s: &str| args.is_empty() || args.iter().any(|a| a == s);
    if want("bandwidth") {
        bandwidth(&gpu)?;
    }
    if want("dispatch") {
        dispatch(&gpu)?;
    }
    let named = |t: DType| args.iter().any(|a| a.parse::<DType>().ok() == Some(t));
    let mut cases = Vec::new();
    for t in [DType::F32, DType::F16].into_iter().filter(|&t| want("gemm") || named(t)) {
        cases.extend([4096, 8192].map(|n| Product { t, m: n, n, k: n, nt: false }));
    }
    if want("decode") {
        // (n, k) of a Llama-3-8B layer (qkv+o 4096², MLP 14336 up and down) and a 70B-class MLP.
        for t in [DType::F16, DType::F32] {
            for (n, k) in [(4096, 4096), (14336, 4096), (4096, 14336), (28672, 8192)] {
                cases.extend([1, 8].map(|m| Product { t, m, n, k, nt: true }));
            }
        }
    }
    if cases.is_empty() {
        return Ok(());
    }
    gemm(&gpu, &cases)
}

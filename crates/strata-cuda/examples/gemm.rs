//! `matmul2d` against cuBLAS on the same card, in one run: row-major `C = A·B` on fresh random
//! inputs, timed with device events (median of interleaved repetitions), the results checked
//! against each other (‖ours − cuBLAS‖ / ‖cuBLAS‖) before anything is timed.
//!
//! `cargo run --release -p strata-cuda --example gemm [SIZES...]` (on a machine with a GPU;
//! sizes default to 2048 4096 8192).

use cudarc::cublas::{CudaBlas, Gemm, GemmConfig, sys::cublasOperation_t};
use cudarc::driver::sys::CUevent_flags;
use half::{bf16, f16};
use strata_core::DType;
use strata_core::kernel::{Backend, Layout, Matmul2d, TensorMut, TensorRef};
use strata_cuda::{Cuda, CudaBuffer};

struct Rng(u64);
impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

fn random(t: DType, n: usize, rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 4);
    for _ in 0..n {
        let v = rng.unit();
        match t {
            DType::BF16 => out.extend(bf16::from_f64(v).to_le_bytes()),
            DType::F16 => out.extend(f16::from_f64(v).to_le_bytes()),
            _ => out.extend((v as f32).to_le_bytes()),
        }
    }
    out
}

fn decode(t: DType, b: &[u8]) -> Vec<f64> {
    match t {
        DType::BF16 => b.chunks(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f64()).collect(),
        DType::F16 => b.chunks(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f64()).collect(),
        _ => b.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect(),
    }
}

/// cuBLAS on row-major operands: C = A·B is Cᵀ = Bᵀ·Aᵀ in its column-major terms; with B
/// stored n × k (`nt`), C = A·Bᵀ is Cᵀ = B·Aᵀ, B's column-major view transposed.
fn cublas(blas: &CudaBlas, t: DType, n: usize, nt: bool, a: &CudaBuffer, b: &CudaBuffer, c: &mut CudaBuffer) {
    fn config<T>(n: usize, nt: bool, alpha: T, beta: T) -> GemmConfig<T> {
        let n = n as i32;
        let transa = if nt { cublasOperation_t::CUBLAS_OP_T } else { cublasOperation_t::CUBLAS_OP_N };
        let transb = cublasOperation_t::CUBLAS_OP_N;
        GemmConfig { transa, transb, m: n, n, k: n, alpha, lda: n, ldb: n, beta, ldc: n }
    }
    let len = n * n;
    // SAFETY: each buffer holds n·n elements of the type it is viewed as.
    unsafe {
        match t {
            DType::BF16 => {
                let (av, bv) = (
                    a.device_slice().transmute::<bf16>(len).unwrap(),
                    b.device_slice().transmute::<bf16>(len).unwrap(),
                );
                let mut cv = c.device_slice_mut().transmute_mut::<bf16>(len).unwrap();
                blas.gemm(config(n, nt, bf16::ONE, bf16::ZERO), &bv, &av, &mut cv).unwrap();
            }
            DType::F16 => {
                let (av, bv) =
                    (a.device_slice().transmute::<f16>(len).unwrap(), b.device_slice().transmute::<f16>(len).unwrap());
                let mut cv = c.device_slice_mut().transmute_mut::<f16>(len).unwrap();
                blas.gemm(config(n, nt, f16::ONE, f16::ZERO), &bv, &av, &mut cv).unwrap();
            }
            _ => {
                let (av, bv) =
                    (a.device_slice().transmute::<f32>(len).unwrap(), b.device_slice().transmute::<f32>(len).unwrap());
                let mut cv = c.device_slice_mut().transmute_mut::<f32>(len).unwrap();
                blas.gemm(config(n, nt, 1.0f32, 0.0f32), &bv, &av, &mut cv).unwrap();
            }
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), strata_core::Error> {
    let gpu = Cuda::new(0)?;
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![2048, 4096, 8192] } else { sizes };
    let blas = CudaBlas::new(gpu.stream().clone()).expect("cuBLAS");
    let event = || gpu.context().new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).expect("an event");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    println!("device: {} ({})", gpu.device_name(), gpu.arch());
    let mut rows = Vec::new();
    // NN: B stored k × n (the warp-scope kernel); NT: B stored n × k, both operands K-major
    // (the warpgroup kernel on sm_90a).
    for (t, nt) in
        [(DType::BF16, true), (DType::BF16, false), (DType::F16, true), (DType::F16, false), (DType::F32, false)]
    {
        for &n in &sizes {
            if t == DType::F32 && n > 4096 {
                continue; // the SIMT kernel: one size is enough to place it
            }
            let w = t.bits() as usize / 8;
            let l = Layout::contiguous(&[n, n]);
            let a = gpu.upload(&random(t, n * n, &mut rng))?;
            let b = gpu.upload(&random(t, n * n, &mut rng))?;
            let mut ours = gpu.upload(&vec![0xA5; n * n * w])?;
            let mut theirs = gpu.upload(&vec![0x5A; n * n * w])?;
            let desc = Matmul2d::new(n, n, n).transpose_right(nt);
            let run = |c: &mut CudaBuffer| {
                gpu.matmul2d(
                    &desc,
                    TensorRef::new(t, &a, &l),
                    TensorRef::new(t, &b, &l),
                    None,
                    TensorMut::new(t, c, &l),
                )
                .unwrap()
            };
            run(&mut ours);
            cublas(&blas, t, n, nt, &a, &b, &mut theirs);
            let (mut x, mut y) = (vec![0u8; n * n * w], vec![0u8; n * n * w]);
            gpu.download(&ours, &mut x)?;
            gpu.download(&theirs, &mut y)?;
            let (x, y) = (decode(t, &x), decode(t, &y));
            let diff: f64 = x.iter().zip(&y).map(|(p, q)| (p - q) * (p - q)).sum::<f64>().sqrt();
            let norm: f64 = y.iter().map(|q| q * q).sum::<f64>().sqrt();
            let rel = diff / norm;
            let (mut mine, mut peer) = (Vec::new(), Vec::new());
            let reps = if n >= 8192 { 10 } else { 30 };
            for rep in 0..reps + 3 {
                for which in 0..2 {
                    let (s, e) = (event(), event());
                    s.record(gpu.stream()).unwrap();
                    if which == 0 {
                        run(&mut ours)
                    } else {
                        cublas(&blas, t, n, nt, &a, &b, &mut theirs)
                    }
                    e.record(gpu.stream()).unwrap();
                    let ms = s.elapsed_ms(&e).unwrap() as f64;
                    if rep >= 3 {
                        if which == 0 { mine.push(ms) } else { peer.push(ms) }
                    }
                }
            }
            let flops = 2.0 * (n as f64).powi(3);
            let (ms, pms) = (median(mine), median(peer));
            rows.push(format!(
                "{:<9} {:<3} {:>6} {:>10.1} {:>10.1} {:>7.2} {:>10.1e}",
                t.to_string(),
                if nt { "NT" } else { "NN" },
                n,
                flops / ms / 1e9,
                flops / pms / 1e9,
                pms / ms,
                rel
            ));
        }
    }
    println!(
        "{:<9} {:<3} {:>6} {:>10} {:>10} {:>7} {:>10}",
        "dtype", "B", "n", "ours TF/s", "cuBLAS", "ratio", "rel.diff"
    );
    for r in rows {
        println!("{r}");
    }
    Ok(())
}

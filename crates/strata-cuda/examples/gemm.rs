//! `matmul2d` against cuBLAS on the same card, in one run: row-major `C = A·B` on fresh random
//! inputs, timed with device events (median of interleaved repetitions, L2 flushed before every
//! launch), the results checked against each other (‖ours − cuBLAS‖ / ‖cuBLAS‖) before anything
//! is timed.
//!
//! `cargo run --release -p strata-cuda --example gemm [CASES...]` on a machine with a GPU. A
//! case is `N` (square, every type and both layouts of B, and f32 with relaxed precision: tf32
//! against cuBLAS's TF32 mode) or `MxNxK` (bf16, B stored n × k as a `Linear` layer's weight
//! is); with none, the square sizes 4096 and 8192 and the LLM shapes (m = 16 … 8192 against the
//! projections of 8B- and 70B-class models).

use cudarc::cublas::sys::{cublasMath_t, cublasOperation_t, cublasSetMathMode};
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::CudaSlice;
use cudarc::driver::sys::CUevent_flags;
use half::{bf16, f16};
use strata_core::DType;
use strata_core::kernel::{Backend, Layout, Matmul2d, TensorMut, TensorRef};
use strata_cuda::{Cuda, CudaBuffer};

struct Rng(u64);
impl Rng {
    fn unit(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

fn random(t: DType, n: usize, rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 4);
    for _ in 0..n {
        let v = rng.unit();
        match t {
            DType::BF16 => out.extend(bf16::from_f32(v).to_le_bytes()),
            DType::F16 => out.extend(f16::from_f32(v).to_le_bytes()),
            _ => out.extend(v.to_le_bytes()),
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

/// One product: `C[m × n] = A[m × k] · B`, B stored n × k (`nt`) or k × n.
#[derive(Clone, Copy)]
struct Case {
    t: DType,
    m: usize,
    n: usize,
    k: usize,
    nt: bool,
    /// f32 with relaxed precision on both sides (tf32).
    tf32: bool,
}

/// cuBLAS on row-major operands: C = A·B is Cᵀ = Bᵀ·Aᵀ in its column-major terms; with B
/// stored n × k (`nt`), Bᵀ is B's column-major view transposed.
fn cublas(blas: &CudaBlas, c: Case, a: &CudaBuffer, b: &CudaBuffer, out: &mut CudaBuffer) {
    fn config<T>(c: Case, alpha: T, beta: T) -> GemmConfig<T> {
        let (m, n, k) = (c.m as i32, c.n as i32, c.k as i32);
        let transa = if c.nt { cublasOperation_t::CUBLAS_OP_T } else { cublasOperation_t::CUBLAS_OP_N };
        let lda = if c.nt { k } else { n };
        GemmConfig { transa, transb: cublasOperation_t::CUBLAS_OP_N, m: n, n: m, k, alpha, lda, ldb: k, beta, ldc: n }
    }
    let (la, lb, lc) = (c.m * c.k, c.k * c.n, c.m * c.n);
    let math = if c.tf32 { cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH } else { cublasMath_t::CUBLAS_DEFAULT_MATH };
    // SAFETY: the handle is live; each buffer holds at least the elements of the type it is
    // viewed as.
    unsafe {
        cublasSetMathMode(*blas.handle(), math);
        match c.t {
            DType::BF16 => {
                let (av, bv) =
                    (a.device_slice().transmute::<bf16>(la).unwrap(), b.device_slice().transmute::<bf16>(lb).unwrap());
                let mut cv = out.device_slice_mut().transmute_mut::<bf16>(lc).unwrap();
                blas.gemm(config(c, bf16::ONE, bf16::ZERO), &bv, &av, &mut cv).unwrap();
            }
            DType::F16 => {
                let (av, bv) =
                    (a.device_slice().transmute::<f16>(la).unwrap(), b.device_slice().transmute::<f16>(lb).unwrap());
                let mut cv = out.device_slice_mut().transmute_mut::<f16>(lc).unwrap();
                blas.gemm(config(c, f16::ONE, f16::ZERO), &bv, &av, &mut cv).unwrap();
            }
            _ => {
                let (av, bv) =
                    (a.device_slice().transmute::<f32>(la).unwrap(), b.device_slice().transmute::<f32>(lb).unwrap());
                let mut cv = out.device_slice_mut().transmute_mut::<f32>(lc).unwrap();
                blas.gemm(config(c, 1.0f32, 0.0f32), &bv, &av, &mut cv).unwrap();
            }
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn parse(args: &[String]) -> Vec<Case> {
    let square = |n: usize| {
        let mut v = Vec::new();
        for (t, nt, tf32) in [
            (DType::BF16, true, false),
            (DType::BF16, false, false),
            (DType::F16, true, false),
            (DType::F16, false, false),
            (DType::F32, true, true),
            (DType::F32, false, false),
        ] {
            // The f32 SIMT kernel: one size is enough to place it.
            if t != DType::F32 || tf32 || n <= 4096 {
                v.push(Case { t, m: n, n, k: n, nt, tf32 });
            }
        }
        v
    };
    let mut cases = Vec::new();
    for a in args {
        let dims: Vec<usize> = a.split('x').filter_map(|d| d.parse().ok()).collect();
        match dims[..] {
            [n] => cases.extend(square(n)),
            [m, n, k] => cases.push(Case { t: DType::BF16, m, n, k, nt: true, tf32: false }),
            _ => eprintln!("skipping {a:?}: a case is N or MxNxK"),
        }
    }
    if args.is_empty() {
        cases.extend(square(4096));
        cases.extend(square(8192));
        // (n, k) of a Llama-3-8B layer (qkv+o 4096², MLP 14336 up and down) and a 70B-class MLP.
        for (n, k) in [(4096, 4096), (14336, 4096), (4096, 14336), (28672, 8192)] {
            for m in [16, 128, 1024, 4096, 8192] {
                cases.push(Case { t: DType::BF16, m, n, k, nt: true, tf32: false });
            }
        }
    }
    cases
}

fn main() -> Result<(), strata_core::Error> {
    let gpu = Cuda::new(0)?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cases = parse(&args);
    let blas = CudaBlas::new(gpu.stream().clone()).expect("cuBLAS");
    let event = || gpu.context().new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).expect("an event");
    // Written before every timed launch so that no operand starts in L2 (50–60 MB on Hopper).
    let mut flush: CudaSlice<u8> = gpu.stream().alloc_zeros(256 << 20).expect("the L2 flush buffer");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    println!("device: {} ({})", gpu.device_name(), gpu.arch());
    println!(
        "{:<5} {:<3} {:>6} {:>6} {:>6} {:>10} {:>10} {:>7} {:>9}",
        "dtype", "B", "m", "n", "k", "ours TF/s", "cuBLAS", "ratio", "rel.diff"
    );
    let mut operands: Option<(DType, usize, usize, bool, CudaBuffer)> = None;
    for c in cases {
        let w = c.t.bits() as usize / 8;
        let a = gpu.upload(&random(c.t, c.m * c.k, &mut rng))?;
        // B is shared by the cases that differ only in m.
        if operands.as_ref().is_none_or(|o| (o.0, o.1, o.2, o.3) != (c.t, c.n, c.k, c.nt)) {
            drop(operands.take()); // free the last B first
            operands = Some((c.t, c.n, c.k, c.nt, gpu.upload(&random(c.t, c.n * c.k, &mut rng))?));
        }
        let b = &operands.as_ref().unwrap().4;
        let mut ours = gpu.upload(&vec![0xA5; c.m * c.n * w])?;
        let mut theirs = gpu.upload(&vec![0x5A; c.m * c.n * w])?;
        let desc = Matmul2d::new(c.m, c.n, c.k).transpose_right(c.nt).relaxed_precision(c.tf32);
        let (la, lb, lc) = (
            Layout::contiguous(&[c.m, c.k]),
            Layout::contiguous(&if c.nt { [c.n, c.k] } else { [c.k, c.n] }),
            Layout::contiguous(&[c.m, c.n]),
        );
        let run = |out: &mut CudaBuffer| {
            gpu.matmul2d(
                &desc,
                TensorRef::new(c.t, &a, &la),
                TensorRef::new(c.t, b, &lb),
                None,
                TensorMut::new(c.t, out, &lc),
            )
            .unwrap()
        };
        run(&mut ours);
        cublas(&blas, c, &a, b, &mut theirs);
        let (mut x, mut y) = (vec![0u8; c.m * c.n * w], vec![0u8; c.m * c.n * w]);
        gpu.download(&ours, &mut x)?;
        gpu.download(&theirs, &mut y)?;
        let (x, y) = (decode(c.t, &x), decode(c.t, &y));
        let diff: f64 = x.iter().zip(&y).map(|(p, q)| (p - q) * (p - q)).sum::<f64>().sqrt();
        let norm: f64 = y.iter().map(|q| q * q).sum::<f64>().sqrt();
        let flops = 2.0 * c.m as f64 * c.n as f64 * c.k as f64;
        let reps = if flops > 5e11 { 10 } else { 30 };
        let (mut mine, mut peer) = (Vec::new(), Vec::new());
        for rep in 0..reps + 3 {
            for which in 0..2 {
                gpu.stream().memset_zeros(&mut flush).expect("flushing L2");
                let (s, e) = (event(), event());
                s.record(gpu.stream()).unwrap();
                if which == 0 {
                    run(&mut ours)
                } else {
                    cublas(&blas, c, &a, b, &mut theirs)
                }
                e.record(gpu.stream()).unwrap();
                let ms = s.elapsed_ms(&e).unwrap() as f64;
                if rep >= 3 {
                    if which == 0 { mine.push(ms) } else { peer.push(ms) }
                }
            }
        }
        let (ms, pms) = (median(mine), median(peer));
        println!(
            "{:<5} {:<3} {:>6} {:>6} {:>6} {:>10.1} {:>10.1} {:>7.2} {:>9.1e}",
            if c.tf32 { "tf32".to_string() } else { c.t.to_string() },
            if c.nt { "NT" } else { "NN" },
            c.m,
            c.n,
            c.k,
            flops / ms / 1e9,
            flops / pms / 1e9,
            pms / ms,
            diff / norm
        );
    }
    Ok(())
}

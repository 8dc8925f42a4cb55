//! `matmul2d` against cuBLAS on the same card, in one run: row-major `C = A·B` on fresh random
//! inputs, timed with device events (median of interleaved repetitions, L2 flushed before every
//! launch), the results checked against each other (‖ours − cuBLAS‖ / ‖cuBLAS‖) before anything
//! is timed.
//!
//! `cargo run --release -p strata-cuda --example gemm [CASES...]` on a machine with a GPU. A
//! case is `N` (square, every type and both layouts of B, f32 with relaxed precision: tf32
//! against cuBLAS's TF32 mode, and fp8), `MxNxK` (bf16, B stored n × k as a `Linear` layer's
//! weight is) or `fp8:MxNxK`; with none, the square sizes 4096 and 8192 and the LLM shapes
//! (m = 1 … 8192 against the projections of 8B- and 70B-class models), in bf16 and fp8. A case
//! after `bias:` (`bias:fp8:MxNxK`) adds a random bias along n on both sides, the peer being
//! cuBLASLt with its bias epilogue. `f32:MxNxK` is exact f32 (the SIMT kernel against cuBLAS's
//! SGEMM) with B stored both ways.
//!
//! fp8 is E4M3 on both sides with per-tensor scales into bf16, against cuBLASLt's fp8 GEMM
//! (`CUBLASLT_MATMUL_DESC_FAST_ACCUM` on: the tensor cores' own accumulation, as ours).

#[path = "common/operands.rs"]
mod operands;

use cudarc::cublas::sys::{cublasMath_t, cublasOperation_t, cublasSetMathMode};
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::cublaslt::{result as lt, sys as ltsys};
use cudarc::driver::CudaSlice;
use cudarc::driver::DevicePtr;
use half::{bf16, f16};
use strata_core::DType;
use strata_core::kernel::{Activation, Backend, Epilogue, Layout, Matmul2d, Scales, TensorMut, TensorRef};
use strata_cuda::{Cuda, CudaBuffer};

use operands::{Rng, Timer, decode, median, random, relative_difference};

/// One product: `C[m × n] = A[m × k] · B`, B stored n × k (`nt`) or k × n.
#[derive(Clone, Copy)]
struct Case {
    t: DType,
    /// The output's type: `t`, or bf16 for fp8.
    out: DType,
    m: usize,
    n: usize,
    k: usize,
    nt: bool,
    /// f32 with relaxed precision on both sides (tf32).
    tf32: bool,
    /// Both sides add a bias along n (the peer: cuBLASLt's bias epilogue).
    bias: bool,
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

/// cuBLASLt, the peer of the fp8 products (E4M3 · E4M3 → bf16, f32 scales per tensor, fast
/// accumulation; the layout fp8 requires, both operands K-major (its "TN"), is our A row-major
/// and B stored n × k) and of the products with a bias (its bias epilogue, so that both sides
/// do the same work). In its column-major terms Cᵀ[n × m] = Bᵀ·Aᵀ with B's buffer as its A
/// (transposed where B is stored n × k), and the bias runs along Cᵀ's rows.
struct Lt {
    handle: ltsys::cublasLtHandle_t,
    workspace: CudaSlice<u8>,
}

impl Lt {
    fn new(gpu: &Cuda) -> Lt {
        let workspace = gpu.stream().alloc_zeros(32 << 20).expect("the cuBLASLt workspace");
        Lt { handle: lt::create_handle().expect("cuBLASLt"), workspace }
    }

    /// The descriptor, layouts and algorithm of case `c`, made once before it is timed (the
    /// heuristic query and the descriptors' set-up are host work that would otherwise sit
    /// between the timer's start event and the product). `scales` (fp8 only) and `bias` must
    /// outlive the plan.
    fn plan(
        &self,
        gpu: &Cuda,
        c: Case,
        scales: Option<(&CudaBuffer, &CudaBuffer)>,
        bias: Option<&CudaBuffer>,
    ) -> LtPlan {
        use ltsys::cublasLtMatmulDescAttributes_t as D;
        use ltsys::cudaDataType::{CUDA_R_8F_E4M3, CUDA_R_16BF, CUDA_R_16F, CUDA_R_32F};
        let data_type = |t: DType| match t {
            DType::F8E4M3 => CUDA_R_8F_E4M3,
            DType::BF16 => CUDA_R_16BF,
            DType::F16 => CUDA_R_16F,
            _ => CUDA_R_32F,
        };
        let s = gpu.stream();
        let (m, n, k) = (c.m as u64, c.n as u64, c.k as u64);
        // (The pointers stay valid after their guards: the buffers outlive the plan.)
        let scale_ptrs = scales.map(|(sa, sb)| (sb.device_slice().device_ptr(s).0, sa.device_slice().device_ptr(s).0));
        let bias_ptr = bias.map(|b| b.device_slice().device_ptr(s).0);
        // SAFETY: the handle is live; the attribute buffers are the types cuBLASLt documents
        // for each attribute, and it copies them.
        unsafe {
            use ltsys::cublasComputeType_t::{CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_32F_FAST_TF32};
            let compute = if c.tf32 { CUBLAS_COMPUTE_32F_FAST_TF32 } else { CUBLAS_COMPUTE_32F };
            let desc = lt::create_matmul_desc(compute, CUDA_R_32F).expect("a cuBLASLt matmul descriptor");
            let set = |attr: D, v: *const std::ffi::c_void, size: usize| {
                lt::set_matmul_desc_attribute(desc, attr, v, size).expect("a cuBLASLt attribute")
            };
            let t = cublasOperation_t::CUBLAS_OP_T as i32;
            if c.nt {
                set(D::CUBLASLT_MATMUL_DESC_TRANSA, (&t as *const i32).cast(), 4);
            }
            if let Some((sap, sbp)) = &scale_ptrs {
                let fast: i8 = 1;
                set(D::CUBLASLT_MATMUL_DESC_FAST_ACCUM, (&fast as *const i8).cast(), 1);
                set(D::CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, (sap as *const u64).cast(), 8);
                set(D::CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, (sbp as *const u64).cast(), 8);
            }
            if let Some(bias) = &bias_ptr {
                let epilogue = ltsys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS as u32;
                set(D::CUBLASLT_MATMUL_DESC_EPILOGUE, (&epilogue as *const u32).cast(), 4);
                set(D::CUBLASLT_MATMUL_DESC_BIAS_POINTER, (bias as *const u64).cast(), 8);
            }
            let la = if c.nt {
                lt::create_matrix_layout(data_type(c.t), k, n, k as i64).unwrap()
            } else {
                lt::create_matrix_layout(data_type(c.t), n, k, n as i64).unwrap()
            };
            let lb = lt::create_matrix_layout(data_type(c.t), k, m, k as i64).unwrap();
            let ld = lt::create_matrix_layout(data_type(c.out), n, m, n as i64).unwrap();
            let pref = lt::create_matmul_pref().unwrap();
            let bytes: usize = 32 << 20;
            lt::set_matmul_pref_attribute(
                pref,
                ltsys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                (&bytes as *const usize).cast(),
                8,
            )
            .unwrap();
            let h =
                lt::get_matmul_algo_heuristic(self.handle, desc, la, lb, ld, ld, pref).expect("a cuBLASLt algorithm");
            lt::destroy_matmul_pref(pref).unwrap();
            LtPlan { desc, layouts: [la, lb, ld], algo: h.algo }
        }
    }

    /// Queues `out = (sa·sb)·A·B (+ bias)` on the GPU's stream by `plan`.
    fn matmul(&mut self, gpu: &Cuda, plan: &LtPlan, a: &CudaBuffer, b: &CudaBuffer, out: &mut CudaBuffer) {
        let s = gpu.stream();
        let (ap, _g1) = b.device_slice().device_ptr(s);
        let (bp, _g2) = a.device_slice().device_ptr(s);
        let (dp, _g3) = out.device_slice().device_ptr(s);
        let (wp, _g4) = self.workspace.device_ptr(s);
        let [la, lb, ld] = plan.layouts;
        let (alpha, beta) = (1.0f32, 0.0f32);
        // SAFETY: the plan's descriptors are live; the pointers are device allocations of the
        // sizes its layouts describe.
        unsafe {
            lt::matmul(
                self.handle,
                plan.desc,
                (&alpha as *const f32).cast(),
                (&beta as *const f32).cast(),
                ap as *const _,
                la,
                bp as *const _,
                lb,
                dp as *const _,
                ld,
                dp as *mut _,
                ld,
                &plan.algo,
                wp as *mut _,
                32 << 20,
                s.cu_stream() as _,
            )
            .expect("cuBLASLt matmul");
        }
    }
}

/// A case's cuBLASLt descriptor, its operands' layouts and the algorithm chosen for them.
struct LtPlan {
    desc: ltsys::cublasLtMatmulDesc_t,
    layouts: [ltsys::cublasLtMatrixLayout_t; 3],
    algo: ltsys::cublasLtMatmulAlgo_t,
}

impl Drop for LtPlan {
    fn drop(&mut self) {
        // SAFETY: made by `Lt::plan`, destroyed once, after every product queued with them
        // (cuBLASLt reads them when the product is queued).
        unsafe {
            for l in self.layouts {
                let _ = lt::destroy_matrix_layout(l);
            }
            let _ = lt::destroy_matmul_desc(self.desc);
        }
    }
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
                v.push(Case { t, out: t, m: n, n, k: n, nt, tf32, bias: false });
            }
        }
        v.push(Case { t: DType::F8E4M3, out: DType::BF16, m: n, n, k: n, nt: true, tf32: false, bias: false });
        v
    };
    let fp8 = |m, n, k| Case { t: DType::F8E4M3, out: DType::BF16, m, n, k, nt: true, tf32: false, bias: false };
    let bf16 = |m, n, k| Case { t: DType::BF16, out: DType::BF16, m, n, k, nt: true, tf32: false, bias: false };
    let f32 = |m, n, k| Case { t: DType::F32, out: DType::F32, m, n, k, nt: false, tf32: false, bias: false };
    let mut cases = Vec::new();
    for arg in args {
        let (bias, a) = arg.strip_prefix("bias:").map_or((false, arg.as_str()), |s| (true, s));
        let (is_fp8, spec) = a.strip_prefix("fp8:").map_or((false, a), |s| (true, s));
        let (is_f32, spec) = spec.strip_prefix("f32:").map_or((false, spec), |s| (true, s));
        let start = cases.len();
        let dims: Vec<usize> = spec.split('x').filter_map(|d| d.parse().ok()).collect();
        match dims[..] {
            [n] if !is_fp8 && !is_f32 => cases.extend(square(n)),
            [m, n, k] if is_fp8 => cases.push(fp8(m, n, k)),
            [m, n, k] if is_f32 => cases.extend([false, true].map(|nt| Case { nt, ..f32(m, n, k) })),
            [m, n, k] => cases.push(bf16(m, n, k)),
            _ => eprintln!("skipping {arg:?}: a case is N, MxNxK, fp8:MxNxK or f32:MxNxK, each optionally after bias:"),
        }
        for c in &mut cases[start..] {
            c.bias = bias;
        }
    }
    if args.is_empty() {
        cases.extend(square(4096));
        cases.extend(square(8192));
        // (n, k) of a Llama-3-8B layer (qkv+o 4096², MLP 14336 up and down) and a 70B-class MLP.
        for (n, k) in [(4096, 4096), (14336, 4096), (4096, 14336), (28672, 8192)] {
            for m in [1, 16, 128, 1024, 4096, 8192] {
                cases.push(bf16(m, n, k));
            }
        }
        for (n, k) in [(14336, 4096), (4096, 14336), (28672, 8192)] {
            for m in [128, 1024, 4096, 8192] {
                cases.push(fp8(m, n, k));
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
    let mut blas_lt = Lt::new(&gpu);
    // Per-tensor scales of the fp8 products: 0.5 and 0.25 (exact, so both sides agree).
    let (scale_a, scale_b) = (gpu.upload(&0.5f32.to_le_bytes())?, gpu.upload(&0.25f32.to_le_bytes())?);
    let scalar = Layout::contiguous(&[]);
    // Flushes L2 before every timed launch so that no operand starts there (50–60 MB on Hopper).
    let mut timer = Timer::new(&gpu);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    println!("device: {} ({})", gpu.device_name(), gpu.arch());
    let tuned = std::env::var("STRATA_GEMM_TUNE").is_ok_and(|v| v == "1" || v == "on");
    println!(
        "plans: {}",
        if tuned { "tuned (STRATA_GEMM_TUNE=1; tuning happens in the warm-up)" } else { "the kernels' rules" }
    );
    println!(
        "{:<5} {:<3} {:>6} {:>6} {:>6} {:>10} {:>10} {:>7} {:>9}",
        "dtype", "B", "m", "n", "k", "ours TF/s", "cuBLAS", "ratio", "rel.diff"
    );
    let mut operands: Option<(DType, usize, usize, bool, CudaBuffer)> = None;
    for c in cases {
        let w = c.out.bits() as usize / 8;
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
        let scales = (c.t == DType::F8E4M3).then(|| Scales {
            left: TensorRef::new(DType::F32, &scale_a, &scalar),
            right: TensorRef::new(DType::F32, &scale_b, &scalar),
        });
        let bias_l = Layout::contiguous(&[c.n]);
        let bias = c.bias.then(|| gpu.upload(&random(c.out, c.n, &mut rng))).transpose()?;
        let desc = if c.bias { desc.epilogue(Epilogue::Bias(Activation::None)) } else { desc };
        let run = |out: &mut CudaBuffer| {
            gpu.matmul2d(
                &desc,
                TensorRef::new(c.t, &a, &la),
                TensorRef::new(c.t, b, &lb),
                bias.as_ref().map(|b| TensorRef::new(c.out, b, &bias_l)),
                scales,
                TensorMut::new(c.out, out, &lc),
            )
            .unwrap()
        };
        let lt_plan = (c.t == DType::F8E4M3 || c.bias).then(|| {
            let scales = (c.t == DType::F8E4M3).then_some((&scale_a, &scale_b));
            blas_lt.plan(&gpu, c, scales, bias.as_ref())
        });
        let mut peer = |out: &mut CudaBuffer| match &lt_plan {
            Some(plan) => blas_lt.matmul(&gpu, plan, &a, b, out),
            None => cublas(&blas, c, &a, b, out),
        };
        run(&mut ours);
        peer(&mut theirs);
        let (mut x, mut y) = (vec![0u8; c.m * c.n * w], vec![0u8; c.m * c.n * w]);
        gpu.download(&ours, &mut x)?;
        gpu.download(&theirs, &mut y)?;
        let (x, y) = (decode(c.out, &x), decode(c.out, &y));
        let rel = relative_difference(&x, &y);
        let flops = 2.0 * c.m as f64 * c.n as f64 * c.k as f64;
        let reps = if flops > 5e11 { 10 } else { 30 };
        let (mut mine, mut theirs_ms) = (Vec::new(), Vec::new());
        for rep in 0..reps + 3 {
            for which in 0..2 {
                let ms = timer.once(&gpu, || if which == 0 { run(&mut ours) } else { peer(&mut theirs) });
                if rep >= 3 {
                    if which == 0 { mine.push(ms) } else { theirs_ms.push(ms) }
                }
            }
        }
        let (ms, pms) = (median(mine), median(theirs_ms));
        println!(
            "{:<5} {:<3} {:>6} {:>6} {:>6} {:>10.1} {:>10.1} {:>7.2} {:>9.1e}",
            match c.t {
                _ if c.tf32 => "tf32".to_string(),
                DType::F8E4M3 => "e4m3".to_string(),
                t => t.to_string(),
            } + if c.bias { "+bias" } else { "" },
            if c.nt { "NT" } else { "NN" },
            c.m,
            c.n,
            c.k,
            flops / ms / 1e9,
            flops / pms / 1e9,
            pms / ms,
            rel
        );
    }
    Ok(())
}

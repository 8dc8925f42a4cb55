//! Every CUDA kernel against the CPU backend (the conformance suite, `strata-conformance`),
//! plus what is CUDA's own. Needs a GPU: `scripts/device/cuda-test.sh` runs it on the GPU
//! machine with `STRATA_REQUIRE_CUDA=1` (then a missing device fails); elsewhere each test says
//! it was not run.

use strata_conformance as suite;
use strata_core::DType;
use strata_core::kernel::{Backend, BinaryOp, Layout, TensorMut, TensorRef, UnaryOp};
use strata_cuda::Cuda;

fn gpu() -> Option<Cuda> {
    match Cuda::new(0) {
        Ok(g) => Some(g),
        Err(e) => {
            assert!(std::env::var_os("STRATA_REQUIRE_CUDA").is_none(), "STRATA_REQUIRE_CUDA is set: {e}");
            eprintln!("not run: {e}");
            None
        }
    }
}

macro_rules! suite_tests {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            let Some(gpu) = gpu() else { return };
            suite::$name(&gpu, &strata_cuda::supported_dtypes());
        }
    )*};
}

suite_tests!(
    unary_ops_match_the_cpu,
    binary_ops_match_the_cpu_with_broadcasting,
    casts_select_and_copies_match_the_cpu,
    reductions_match_the_cpu,
    scans_match_the_cpu,
    scans_over_many_lanes_match_the_cpu,
    gather_scatter_and_random_bits_match_the_cpu,
    argsort_matches_the_cpu,
    argsort_long_lanes_match_the_cpu,
    a_bad_index_is_an_error_and_nothing_is_written,
    matmul2d_matches_the_cpu,
    matmul2d_many_tiles_match_the_cpu,
    matmul2d_few_rows_match_the_cpu,
    fused_programs_match_the_cpu,
    attention_matches_the_cpu,
    conv_matches_the_cpu,
);

/// fp8 operands are the GEMM's alone (no element-wise kernel takes them), so this suite is not
/// among those run over `supported_dtypes`.
#[test]
fn matmul2d_scaled_fp8_matches_the_cpu() {
    let Some(gpu) = gpu() else { return };
    suite::matmul2d_scaled_fp8_matches_the_cpu(&gpu, &suite::FP8_PAIRS);
}

/// The general kernels of attention and convolution on the shapes the tensor-core ones take
/// (the other tests run those): the reference kernels stay right too.
#[test]
fn attention_and_conv_on_the_general_kernels_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let general = gpu.with_tensor_cores(false);
    suite::attention_matches_the_cpu(&general, &strata_cuda::supported_dtypes());
    suite::conv_matches_the_cpu(&general, &strata_cuda::supported_dtypes());
}

/// Quantized products in every mode, dequantized by the device's kernel.
#[test]
fn quantized_matmul_matches_the_cpu() {
    let Some(gpu) = gpu() else { return };
    suite::quantized_matmul_matches_the_cpu(&gpu, &strata_cuda::supported_dtypes());
}

/// Products on tuned plans (`with_tuning_file`, a file of its own): every candidate of the
/// warp-specialized kernel is timed on a scratch output (the accumulating products check that
/// the caller's C is left alone), the fastest kept; then a fresh device runs the same products
/// on the plans read back from the file.
#[test]
fn tuned_products_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    // One 16-bit type and one fp8 pair (mixed, so both formats): tuning compiles every
    // candidate plan's kernel, and with every type the test did not finish in seven minutes on
    // the H200 machine. The candidates' schedules, CTA pairs and widths are checked on every
    // type by the matmul2d suites run with each forced (`scripts/device/cuda-test.sh`), their
    // splits of k by the suites' split-K cases; this test checks that tuning keeps plans and
    // that a fresh device runs them.
    let types = [DType::BF16];
    // A file of this run's own, so that every plan is timed here rather than read from an
    // earlier run's `tuning.txt`.
    let file = std::env::temp_dir().join(format!("strata-tuning-test-{}.txt", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let tuned = gpu.with_tuning_file(&file);
    suite::matmul2d_many_tiles_match_the_cpu(&tuned, &types);
    let fp8 = [(DType::F8E4M3, DType::F8E5M2)];
    suite::matmul2d_scaled_fp8_matches_the_cpu(&tuned, &fp8);
    let kept = std::fs::read_to_string(&file).unwrap_or_default();
    let plans = kept.lines().filter(|l| l.starts_with("gemm ")).count();
    eprintln!("{plans} tuned plans in {}", file.display());
    // A forced schedule, cluster or tile width tunes nothing.
    let forced = ["STRATA_GEMM_SCHEDULE", "STRATA_GEMM_CLUSTER", "STRATA_GEMM_TILE_N"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if gpu.arch() == "sm_90a" && !forced {
        assert!(plans > 0, "no plan was kept in {}", file.display());
    }
    // A new device reads the plans back and runs them.
    let fresh = Cuda::new(0).unwrap().with_tuning_file(&file);
    suite::matmul2d_many_tiles_match_the_cpu(&fresh, &types);
    suite::matmul2d_scaled_fp8_matches_the_cpu(&fresh, &fp8);
    let _ = std::fs::remove_file(&file);
}

/// Host copies through the default staging ring (four slots of 32 MiB, wrapped by the largest
/// length) and through a ring of three slots of an odd size, so that chunks end mid-word and
/// the ring wraps several times within one copy and across queued ones.
#[test]
fn host_copies_through_staging_round_trip() {
    let Some(gpu) = gpu() else { return };
    const SMALL: usize = 64 << 10;
    let mib = 1 << 20;
    suite::host_copies_round_trip(&gpu, &[1, 7, SMALL - 1, SMALL, 32 * mib - 1, 32 * mib + 1, 130 * mib + 5, 3 * mib]);
    let chunk = SMALL + 3;
    let ring = gpu.with_staging(chunk, 3);
    suite::host_copies_round_trip(
        &ring,
        &[SMALL, chunk - 1, chunk, chunk + 1, 3 * chunk, 3 * chunk + 1, 7 * chunk + 123, 2 * mib],
    );
}

#[test]
fn bad_input_and_out_of_memory_are_errors() {
    let Some(gpu) = gpu() else { return };
    eprintln!("architecture: {}", gpu.arch());
    suite::bad_input_and_out_of_memory_are_errors(&gpu);
}

#[test]
fn a_fused_program_of_nine_inputs_is_an_error() {
    use strata_core::kernel::{Fused, FusedOp as F};
    let Some(gpu) = gpu() else { return };
    let l = Layout::contiguous(&[4]);
    let ops: Vec<F> = (0..9).map(F::Input).chain([F::Binary(BinaryOp::Add, 0, 8)]).collect();
    let program = Fused { dtype: DType::F32, ops };
    let x = gpu.upload(&[0u8; 16]).unwrap();
    let mut y = gpu.alloc(16).unwrap();
    let refs: Vec<_> = (0..9).map(|_| TensorRef::new(DType::F32, &x, &l)).collect();
    let err = gpu.fused(&program, &refs, TensorMut::new(DType::F32, &mut y, &l)).unwrap_err();
    assert!(err.to_string().contains("at most 8"), "{err}");
}

#[test]
fn kernel_times_reach_the_flight_recorder() {
    use strata_trace::{ProcessFilter, RecordKind, SegmentKind, Store};
    let Some(gpu) = gpu() else { return };
    let _alone = suite::EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner());
    assert!(strata_trace::enabled(), "the recorder is on unless STRATA_TRACE=off");
    gpu.set_kernel_timing(true);
    let n = 1 << 22;
    let l = Layout::contiguous(&[n]);
    let x = gpu.upload(&vec![0x3f; n * 4]).unwrap();
    let mut y = gpu.alloc_output(n * 4).unwrap();
    let before = strata_trace::now_ns();
    for _ in 0..20 {
        gpu.unary(UnaryOp::Log1p, TensorRef::new(DType::F32, &x, &l), TensorMut::new(DType::F32, &mut y, &l)).unwrap();
    }
    gpu.synchronize().unwrap();
    let after = strata_trace::now_ns();
    strata_trace::flush().unwrap();
    let store = Store::new(strata_trace::config().unwrap().dir);
    let filter = ProcessFilter::Pid(std::process::id());
    let trace = store.load(SegmentKind::Detail, None, &filter, &mut |_, _| {}, &mut |_| {}).unwrap();
    let kernels: Vec<(u64, u64)> = trace
        .processes
        .iter()
        .flat_map(|p| &p.records)
        .filter_map(|r| match &r.kind {
            RecordKind::Gpu { name, dur } if &**name == "log1p" => Some((r.ts, *dur)),
            _ => None,
        })
        .collect();
    assert_eq!(kernels.len(), 20, "one GPU record per launch");
    for (i, &(t, dur)) in kernels.iter().enumerate() {
        // 16 MiB read and written: microseconds on any GPU of this decade, never zero.
        assert!(dur > 1_000 && dur < 100_000_000, "kernel {i}: {dur} ns");
        assert!(t + 1_000_000 >= before && t <= after + 1_000_000, "kernel {i} at {t}, window {before}..{after}");
        if i > 0 {
            assert!(t >= kernels[i - 1].0, "kernels on one stream run in order");
        }
    }
    eprintln!("GPU kernel times: first {} ns, last {} ns", kernels[0].1, kernels[19].1);
}

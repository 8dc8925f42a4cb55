//! Every wgpu kernel against the CPU backend (the conformance suite), and every kernel the suite
//! compiled validated and translated to MSL, HLSL and SPIR-V by naga. Runs on any adapter:
//! hardware first, else a software one (Mesa's lavapipe in CI). `STRATA_REQUIRE_WGPU=1` makes a
//! missing adapter a failure instead of a skip.

use std::sync::OnceLock;

use strata_conformance as suite;
use strata_wgpu::{Options, Wgpu};

fn gpu() -> Option<&'static Wgpu> {
    static GPU: OnceLock<Option<Wgpu>> = OnceLock::new();
    GPU.get_or_init(|| {
        let options = Options { allow_software: true, ..Options::from_env() };
        match Wgpu::with_options(&options) {
            Ok(g) => {
                suite::set_math(suite::Math::Shader);
                let info = g.adapter_info();
                eprintln!(
                    "adapter: {} ({:?}, {:?}, driver {})",
                    info.name, info.device_type, info.backend, info.driver_info
                );
                Some(g)
            }
            Err(e) => {
                assert!(std::env::var_os("STRATA_REQUIRE_WGPU").is_none(), "STRATA_REQUIRE_WGPU is set: {e}");
                eprintln!("not run: {e}");
                None
            }
        }
    })
    .as_ref()
}

/// int64 indices (read as int32 on every adapter): out of range is an `Err` naming the index
/// (the suite's cases include values past 32 bits).
#[test]
fn int64_indices_out_of_range_are_errors() {
    let Some(gpu) = gpu() else { return };
    suite::a_bad_index_is_an_error_and_nothing_is_written(gpu, &[strata_core::DType::F32, strata_core::DType::I64]);
}

macro_rules! suite_tests {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            let Some(gpu) = gpu() else { return };
            suite::$name(gpu, &strata_wgpu::supported_dtypes());
        }
    )*};
}

/// The element-wise suites on the types the element-wise kernels take: int64 and uint64 too
/// where the adapter has `SHADER_INT64` (lavapipe does).
macro_rules! elementwise_tests {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            let Some(gpu) = gpu() else { return };
            let types = gpu.elementwise_dtypes();
            eprintln!("types: {types:?}");
            suite::$name(gpu, &types);
        }
    )*};
}

elementwise_tests!(
    unary_ops_match_the_cpu,
    binary_ops_match_the_cpu_with_broadcasting,
    casts_select_and_copies_match_the_cpu
);

suite_tests!(
    reductions_match_the_cpu,
    scans_match_the_cpu,
    scans_over_many_lanes_match_the_cpu,
    gather_scatter_and_random_bits_match_the_cpu,
    int64_indices_match_the_cpu,
    a_bad_index_is_an_error_and_nothing_is_written,
    matmul2d_matches_the_cpu,
    matmul2d_few_rows_match_the_cpu,
    fused_programs_match_the_cpu,
    attention_matches_the_cpu,
    conv_matches_the_cpu,
    quantized_matmul_matches_the_cpu,
    argsort_matches_the_cpu,
    argsort_long_lanes_match_the_cpu,
);

/// Products of many tiles with ragged edges (the cooperative-matrix kernel's pipeline over k
/// and its edges); on hardware adapters only: lavapipe would take minutes.
#[test]
fn matmul2d_many_tiles_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    if gpu.adapter_info().device_type == wgpu::DeviceType::Cpu {
        eprintln!("matmul2d_many_tiles_match_the_cpu: not run on a software adapter");
        return;
    }
    suite::matmul2d_many_tiles_match_the_cpu(gpu, &strata_wgpu::supported_dtypes());
}

/// Uploads and downloads of lengths that end mid-word (staging is padded to whole words).
#[test]
fn host_copies_round_trip() {
    let Some(gpu) = gpu() else { return };
    suite::host_copies_round_trip(gpu, &[1, 3, 7, 1000, (64 << 10) + 3, (1 << 20) + 5]);
}

#[test]
fn bad_input_and_out_of_memory_are_errors() {
    let Some(gpu) = gpu() else { return };
    suite::bad_input_and_out_of_memory_are_errors(gpu);
}

/// The few-rows products with f16 widened by bit operations, as on adapters without
/// `unpack2x16float` (the suite above takes it where the adapter has it).
#[test]
fn few_rows_with_portable_f16_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    suite::matmul2d_few_rows_match_the_cpu(&gpu.with_portable_f16(), &strata_wgpu::supported_dtypes());
}

/// Validates `code` with naga and writes it as MSL, HLSL and SPIR-V; the error names the
/// stage that failed.
fn translate(code: &str) -> Result<(), String> {
    use naga::back::{hlsl, msl, spv};
    use naga::valid::{Capabilities, ValidationFlags, Validator};
    let module = naga::front::wgsl::parse_str(code).map_err(|e| format!("parse: {}", e.emit_to_string(code)))?;
    // The cooperative-matrix kernels (on adapters that have them) need their capabilities and
    // MSL 2.3 (simdgroup matrices); naga has no HLSL for them (DX12 takes the SIMT kernel).
    // Kernels on subgroups (scans, where the adapter has them) need MSL 2.1 and shader model 6.
    let coop = code.contains("enable wgpu_cooperative_matrix;");
    let subgroups = code.contains("subgroup_id");
    // Element-wise kernels of int64 and uint64 values (on adapters with `SHADER_INT64`) need
    // MSL 2.3 and shader model 6.
    let int64 = code.contains("i64") || code.contains("u64");
    let mut caps = Capabilities::default();
    // `unpack2x16float` is used only where the adapter has it (`SHADER_F16_IN_F32`, which wgpu
    // reports everywhere but on GL ES and on Mesa's Vulkan without 16-bit floats); the others
    // widen f16 by bit operations.
    if code.contains("unpack2x16float") {
        caps |= Capabilities::SHADER_FLOAT16_IN_FLOAT32;
    }
    if coop {
        caps |= Capabilities::COOPERATIVE_MATRIX | Capabilities::SHADER_FLOAT16;
    }
    if subgroups {
        caps |= Capabilities::SUBGROUP;
    }
    if int64 {
        caps |= Capabilities::SHADER_INT64;
    }
    let info = Validator::new(ValidationFlags::all(), caps)
        .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
        .subgroup_operations(naga::valid::SubgroupOperationSet::all())
        .validate(&module)
        .map_err(|e| format!("validate: {}", e.emit_to_string(code)))?;
    let lang_version = if coop || int64 {
        (2, 3)
    } else if subgroups {
        (2, 1)
    } else {
        (1, 0)
    };
    let options = msl::Options { lang_version, ..msl::Options::default() };
    msl::write_string(&module, &info, &options, &msl::PipelineOptions::default()).map_err(|e| format!("MSL: {e}"))?;
    if !coop {
        let mut out = String::new();
        let shader_model =
            if subgroups || int64 { hlsl::ShaderModel::V6_0 } else { hlsl::Options::default().shader_model };
        hlsl::Writer::new(
            &mut out,
            &hlsl::Options { shader_model, ..hlsl::Options::default() },
            &hlsl::PipelineOptions::default(),
        )
        .write(&module, &info, None)
        .map_err(|e| format!("HLSL: {e}"))?;
    }
    spv::write_vec(&module, &info, &spv::Options::default(), None).map_err(|e| format!("SPIR-V: {e}"))?;
    Ok(())
}

#[test]
fn every_kernel_translates_to_msl_hlsl_and_spirv() {
    let Some(gpu) = gpu() else { return };
    let elementwise = gpu.elementwise_dtypes();
    suite::unary_ops_match_the_cpu(gpu, &elementwise);
    suite::binary_ops_match_the_cpu_with_broadcasting(gpu, &elementwise);
    suite::casts_select_and_copies_match_the_cpu(gpu, &elementwise);
    let types = strata_wgpu::supported_dtypes();
    suite::reductions_match_the_cpu(gpu, &types);
    suite::scans_match_the_cpu(gpu, &types);
    suite::gather_scatter_and_random_bits_match_the_cpu(gpu, &types);
    suite::int64_indices_match_the_cpu(gpu, &types);
    suite::a_bad_index_is_an_error_and_nothing_is_written(gpu, &types);
    suite::matmul2d_matches_the_cpu(gpu, &types);
    suite::matmul2d_few_rows_match_the_cpu(gpu, &types);
    suite::fused_programs_match_the_cpu(gpu, &types);
    suite::attention_matches_the_cpu(gpu, &types);
    suite::conv_matches_the_cpu(gpu, &types);
    suite::quantized_matmul_matches_the_cpu(gpu, &types);
    suite::argsort_matches_the_cpu(gpu, &types);
    suite::argsort_long_lanes_match_the_cpu(gpu, &types);
    let sources = gpu.kernel_sources();
    let failures: Vec<String> =
        sources.iter().filter_map(|(key, code)| translate(code).err().map(|e| format!("{key}: {e}"))).collect();
    eprintln!("{} kernels translated to MSL, HLSL and SPIR-V", sources.len());
    assert!(sources.len() > 300, "the suite compiled only {} kernels", sources.len());
    assert!(failures.is_empty(), "{} kernels failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn kernel_times_reach_the_flight_recorder() {
    use strata_core::DType;
    use strata_core::kernel::{Backend, Layout, TensorMut, TensorRef, UnaryOp};
    use strata_trace::{ProcessFilter, RecordKind, SegmentKind, Store};
    let Some(gpu) = gpu() else { return };
    if !gpu.has_timestamps() {
        eprintln!("not run: the adapter has no timestamp queries");
        return;
    }
    let _alone = suite::EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner());
    assert!(strata_trace::enabled(), "the recorder is on unless STRATA_TRACE=off");
    gpu.set_kernel_timing(true);
    let n = 1 << 18;
    let l = Layout::contiguous(&[n]);
    let x = gpu.upload(&vec![0x3f; n * 4]).unwrap();
    let mut y = gpu.alloc_output(n * 4).unwrap();
    let before = strata_trace::now_ns();
    // More than one submission's worth, so that batches are resolved and read in turn.
    for _ in 0..100 {
        gpu.unary(UnaryOp::Log1p, TensorRef::new(DType::F32, &x, &l), TensorMut::new(DType::F32, &mut y, &l)).unwrap();
    }
    gpu.synchronize().unwrap();
    gpu.set_kernel_timing(false);
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
    assert_eq!(kernels.len(), 100, "one GPU record per dispatch");
    for (i, &(t, dur)) in kernels.iter().enumerate() {
        assert!(dur > 0 && dur < 10_000_000_000, "kernel {i}: {dur} ns");
        assert!(t + 1_000_000 >= before && t <= after + 1_000_000, "kernel {i} at {t}, window {before}..{after}");
    }
    eprintln!("GPU kernel times: first {} ns, last {} ns", kernels[0].1, kernels[99].1);
}

/// Element-wise operations, fused programs, reductions and scans on operands larger than the
/// device binds at once run in parts, on windows of the buffers. With a binding cap of 1 KiB,
/// their suites (broadcasting, transposed and offset operands, 8- and 16-bit outputs that share
/// words across parts, reductions whose halves combine, arg reductions, scans carried along
/// their axis in either direction) cut nearly every operand into windows.
#[test]
fn ops_past_the_binding_limit_run_in_windows() {
    let Some(gpu) = gpu() else { return };
    let small = gpu.with_binding_cap(1024);
    let types = strata_wgpu::supported_dtypes();
    suite::unary_ops_match_the_cpu(&small, &types);
    suite::binary_ops_match_the_cpu_with_broadcasting(&small, &types);
    suite::casts_select_and_copies_match_the_cpu(&small, &types);
    suite::fused_programs_match_the_cpu(&small, &types);
    suite::reductions_match_the_cpu(&small, &types);
    suite::scans_match_the_cpu(&small, &types);
    suite::scans_over_many_lanes_match_the_cpu(&small, &types);
}

/// Products whose operands are larger than the device binds at once run in parts: with a
/// 16 KiB cap, the product suite's larger cases (256³, every transpose, bias and activation,
/// accumulation, batches with a broadcast operand, 16-bit outputs) are cut along m, n, k and
/// the batch, the halves of k accumulating in f32.
#[test]
fn products_past_the_binding_limit_run_in_parts() {
    let Some(gpu) = gpu() else { return };
    suite::matmul2d_matches_the_cpu(&gpu.with_binding_cap(16 << 10), &strata_wgpu::supported_dtypes());
}

/// Attention whose operands are larger than the device binds at once runs in parts: with a
/// 112 KiB cap, the attention suite's larger cases (a causal one with grouped heads stored
/// interleaved, 130 queries of 128 columns, whose heads' windows reach across the others' and
/// are copied densely; 200 × 300 without a mask) are cut along the heads (whole groups) and the
/// query rows (a causal part keeping the whole problem's diagonal). One
/// head's keys past the cap stay an error (the largest here, 100 KiB, would fail at 96).
#[test]
fn attention_past_the_binding_limit_runs_in_parts() {
    let Some(gpu) = gpu() else { return };
    suite::attention_matches_the_cpu(&gpu.with_binding_cap(112 << 10), &strata_wgpu::supported_dtypes());
}

/// Attention cut along its query rows: with a 4 KiB cap, causal heads of 150 queries over 96
/// keys and 130 over 120 (rows that see no key, and rows that see all) and one of 140 queries
/// with an additive mask are cut into parts of rows, a causal part keeping the whole problem's
/// diagonal. Each row is computed alone either way, so the parts must equal the whole bit for bit
/// (the whole is checked against the CPU by `attention_matches_the_cpu`).
#[test]
fn attention_cut_along_rows_equals_the_whole() {
    use strata_core::DType;
    use strata_core::kernel::{Attention, AttentionMask, Backend, Layout, TensorMut, TensorRef};
    let Some(gpu) = gpu() else { return };
    let parts = gpu.with_binding_cap(4 << 10);
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ std::process::id() as u64;
    let mut uniform = |n: usize| -> Vec<u8> {
        (0..n)
            .flat_map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0).to_le_bytes()
            })
            .collect()
    };
    for (lq, lk, mask) in
        [(150, 96, AttentionMask::Causal), (130, 120, AttentionMask::Causal), (140, 40, AttentionMask::Explicit)]
    {
        let (b, h, d) = (1, 2, 8);
        let (ql, kl, ml) = (
            Layout::contiguous(&[b, h, lq, d]),
            Layout::contiguous(&[b, h, lk, d]),
            Layout::new(&[b, h, lq, lk], &[0, 0, lk as isize, 1], 0).unwrap(),
        );
        let (q, k, v) = (
            gpu.upload(&uniform(b * h * lq * d)).unwrap(),
            gpu.upload(&uniform(b * h * lk * d)).unwrap(),
            gpu.upload(&uniform(b * h * lk * d)).unwrap(),
        );
        let m = gpu.upload(&uniform(lq * lk)).unwrap();
        let desc = Attention::new(0.25).mask(mask);
        let run = |g: &Wgpu| {
            let mut out = g.upload(&vec![0xff; b * h * lq * d * 4]).unwrap();
            let r = |x| TensorRef::new(DType::F32, x, &ql);
            let (rk, rv) = (TensorRef::new(DType::F32, &k, &kl), TensorRef::new(DType::F32, &v, &kl));
            let mask = (mask == AttentionMask::Explicit).then(|| TensorRef::new(DType::F32, &m, &ml));
            g.attention(&desc, r(&q), rk, rv, mask, TensorMut::new(DType::F32, &mut out, &ql)).unwrap();
            let mut bytes = vec![0u8; b * h * lq * d * 4];
            g.download(&out, &mut bytes).unwrap();
            bytes
        };
        let (whole, cut) = (run(gpu), run(&parts));
        assert!(whole == cut, "{mask:?} {lq} × {lk}: the parts differ from the whole");
    }
}

/// Quantized products whose activations or outputs are larger than the device binds at once run
/// in parts of rows: the quantized suite at a 9 KiB cap (every weight plane fits; the batched
/// f32 case's activations do not), and a product of 120 rows stored batch-minor at a 4 KiB cap,
/// in f32 and f16 (whose output goes through an f32 scratch), equal bit for bit to the whole
/// (each output is computed alone either way; the whole is checked against the CPU by
/// `quantized_matmul_matches_the_cpu`).
#[test]
fn quantized_products_past_the_binding_limit_run_in_parts() {
    use strata_core::DType;
    use strata_core::kernel::{Backend, Layout, QuantizedMatmul, TensorMut, TensorRef};
    use strata_core::quant::{QuantMode, quantize};
    let Some(gpu) = gpu() else { return };
    let types = strata_wgpu::supported_dtypes();
    suite::quantized_matmul_matches_the_cpu(&gpu.with_binding_cap(9 << 10), &types);
    let parts = gpu.with_binding_cap(4 << 10);
    let (b, m, k, n) = (3, 40, 128, 32);
    let values: Vec<f32> = (0..n * k).map(|i| (i * 37 % 101) as f32 / 50.0 - 1.0).collect();
    let mode: QuantMode = "mxfp4".parse().unwrap();
    let w = quantize(&values, &[n, k], &mode).unwrap();
    let (wg, wp) = (gpu.upload_quantized(&w).unwrap(), parts.upload_quantized(&w).unwrap());
    let x: Vec<u8> = (0..b * m * k).flat_map(|i| ((i * 53 % 97) as f32 / 48.0 - 1.0).to_le_bytes()).collect();
    let x = gpu.upload(&x).unwrap();
    let flat = Layout::contiguous(&[b * m * k]);
    let mut x16 = gpu.alloc_output(b * m * k * 2).unwrap();
    gpu.cast(TensorRef::new(DType::F32, &x, &flat), TensorMut::new(DType::F16, &mut x16, &flat)).unwrap();
    // [b, m, k] viewed from storage ordered [m, b, k].
    let xl = Layout::new(&[b, m, k], &[k as isize, (b * k) as isize, 1], 0).unwrap();
    let ol = Layout::contiguous(&[b, m, n]);
    for out_t in [DType::F32, DType::F16] {
        let bytes = b * m * n * out_t.bits() as usize / 8;
        let run = |g: &Wgpu, w| {
            let mut out = g.upload(&vec![0xff; bytes]).unwrap();
            let o = TensorMut::new(out_t, &mut out, &ol);
            let x = TensorRef::new(out_t, if out_t == DType::F32 { &x } else { &x16 }, &xl);
            g.quantized_matmul(&QuantizedMatmul { transpose: true }, x, w, o).unwrap();
            let mut back = vec![0u8; bytes];
            g.download(&out, &mut back).unwrap();
            back
        };
        assert!(run(gpu, &wg) == run(&parts, &wp), "{out_t}: the parts differ from the whole");
    }
}

/// Convolutions whose operands are larger than the device binds at once run in parts: the conv
/// suite at a 64 KiB cap in every type, and in f32 at 8 KiB, where parts are cut along the
/// batch, the output rows (the input rows they read, padding shifted), and the output channels
/// (whole groups with their input channels; channel slices of channels-last operands copied
/// densely, the output written densely and copied into place). 16-bit outputs are not cut
/// along channels (their parts must stay contiguous), so one image whose 16-bit weight does
/// not fit stays an error.
#[test]
fn conv_past_the_binding_limit_runs_in_parts() {
    use strata_core::DType;
    let Some(gpu) = gpu() else { return };
    suite::conv_matches_the_cpu(&gpu.with_binding_cap(64 << 10), &strata_wgpu::supported_dtypes());
    suite::conv_matches_the_cpu(&gpu.with_binding_cap(8 << 10), &[DType::F32]);
}

/// The same at the device's own limit: a sum of two f32 arrays just larger than it (128 MiB on
/// lavapipe; on adapters that bind more, the cap is lowered to 64 MiB so the test stays quick),
/// one of them broadcast along rows, and its cast to f16.
#[test]
fn arrays_larger_than_a_binding_are_processed_in_windows() {
    use strata_core::DType;
    use strata_core::kernel::{Backend, BinaryOp, Layout, TensorMut, TensorRef};
    let Some(gpu) = gpu() else { return };
    let gpu = if gpu.limits().max_storage_buffer_binding_size > 256 << 20 {
        gpu.with_binding_cap(64 << 20)
    } else {
        gpu.clone()
    };
    // Just over the cap: one f32 row of 1000 past it.
    let cols = 1000;
    let rows = gpu.binding_cap() as usize / 4 / cols + 7;
    let n = rows * cols;
    let a: Vec<f32> = (0..n).map(|i| (i % 9973) as f32 * 0.5 - 1000.0).collect();
    let b: Vec<f32> = (0..cols).map(|j| j as f32 * 0.25).collect();
    let (la, lb, lo) = (
        Layout::contiguous(&[rows, cols]),
        Layout::new(&[rows, cols], &[0, 1], 0).unwrap(),
        Layout::contiguous(&[rows, cols]),
    );
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let ga = gpu.upload(&bytes(&a)).unwrap();
    let gb = gpu.upload(&bytes(&b)).unwrap();
    let mut sum = gpu.upload(&vec![0xA5; n * 4]).unwrap();
    gpu.binary(
        BinaryOp::Add,
        TensorRef::new(DType::F32, &ga, &la),
        TensorRef::new(DType::F32, &gb, &lb),
        TensorMut::new(DType::F32, &mut sum, &lo),
    )
    .unwrap();
    let mut half = gpu.upload(&vec![0x5A; n * 2]).unwrap();
    gpu.cast(TensorRef::new(DType::F32, &sum, &lo), TensorMut::new(DType::F16, &mut half, &lo)).unwrap();
    let mut got = vec![0u8; n * 4];
    gpu.download(&sum, &mut got).unwrap();
    let mut got16 = vec![0u8; n * 2];
    gpu.download(&half, &mut got16).unwrap();
    for (i, (g, h)) in got.chunks_exact(4).zip(got16.chunks_exact(2)).enumerate() {
        let g = f32::from_le_bytes([g[0], g[1], g[2], g[3]]);
        let want = a[i] + b[i % cols];
        assert_eq!(g, want, "element {i} of the sum");
        let h = half::f16::from_le_bytes([h[0], h[1]]);
        assert_eq!(h, half::f16::from_f32(want), "element {i} of the cast");
    }
}

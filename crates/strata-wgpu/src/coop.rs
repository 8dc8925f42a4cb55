//! `matmul2d` for f16 on cooperative matrices (`EXPERIMENTAL_COOPERATIVE_MATRIX`: Vulkan's
//! `KHR_cooperative_matrix` on NVIDIA, simdgroup matrices on Metal), where the adapter has
//! 16×16×16 f16 products with f32 accumulators and 32-wide subgroups, and
//! `STRATA_WGPU_COOP=1` asks for it (opt-in until it is faster than the SIMT kernel).
//!
//! A workgroup of eight subgroups computes a 128×128 tile: 128×32 and 32×128 slices of the
//! operands are staged in workgroup memory as f16 (any strides: the staging follows them),
//! each subgroup multiplies a 64×32 part with 4×2 accumulator matrices, and the results go out
//! through a 16×16 staging tile per subgroup, where the epilogue (accumulate, bias,
//! activation) runs. Loads and stores of cooperative matrices use constant strides only: naga
//! 30's SPIR-V writer panics on a stride that is not a constant.

use strata_core::kernel::{Activation, Layout, Matmul2d, MatmulMode, TensorMut, TensorRef};
use strata_core::{DType, Result};

use crate::matmul::{epilogue, header, launch, operand_strides};
use crate::wgsl;
use crate::{Wgpu, WgpuBuffer};

/// Whether the adapter's cooperative matrices can run this kernel.
pub(crate) fn supported(adapter: &wgpu::Adapter) -> bool {
    let need = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16;
    let info = adapter.get_info();
    adapter.features().contains(need)
        && info.subgroup_min_size == 32
        && info.subgroup_max_size == 32
        && adapter.cooperative_matrix_properties().iter().any(|p| {
            (p.m_size, p.n_size, p.k_size) == (16, 16, 16)
                && p.ab_type == wgpu::CooperativeScalarType::F16
                && p.cr_type == wgpu::CooperativeScalarType::F32
        })
        // Opt-in until it beats the SIMT kernel: 17 against 22 TFLOP/s for f16 at 8192 on an
        // H200 (BENCHMARKS.md), correct but staged too slowly.
        && std::env::var("STRATA_WGPU_COOP").is_ok_and(|v| v == "1")
}

/// The product on cooperative matrices (f16 operands; the caller checked the device).
pub(crate) fn matmul(
    gpu: &Wgpu,
    desc: &Matmul2d,
    left: &TensorRef<'_, WgpuBuffer>,
    right: &TensorRef<'_, WgpuBuffer>,
    bias: Option<&TensorRef<'_, WgpuBuffer>>,
    out: TensorMut<'_, WgpuBuffer>,
) -> Result<()> {
    let batch_axes = out.layout.ndim() - 2;
    let (l_ms, l_ks, r_ks, r_ns) = operand_strides(desc, left.layout, right.layout);
    // Both operands contiguous along the staged axis with every row starting on a 32-bit word:
    // full tiles are staged two halves per load.
    let even = |l: &Layout, step: i32| {
        step % 2 == 0 && l.offset().is_multiple_of(2) && l.strides()[..batch_axes].iter().all(|s| s % 2 == 0)
    };
    let pairs = l_ks == 1 && r_ns == 1 && even(left.layout, l_ms) && even(right.layout, r_ks);
    let accumulate = desc.mode == MatmulMode::MultiplyAccumulate;
    let direct = wgsl::bits(out.dtype) == 32;
    let act = desc.epilogue.activation();
    let key = format!(
        "matmul coop f16 -> {} bias{} acc{accumulate} {act:?}",
        out.dtype,
        bias.map(|b| b.dtype.to_string()).unwrap_or_default()
    );
    let reads = 2 + usize::from(bias.is_some()) + usize::from(accumulate && !direct);
    let kernel = gpu.kernel(&key, reads, 1, || source(out.dtype, bias.map(|b| b.dtype), accumulate, act))?;
    launch(gpu, &kernel, desc, left, right, bias, out, u32::from(pairs), 128)
}

/// The kernel; its parameters are [`launch`]'s, with `flag` saying the operands can be
/// staged in pairs.
fn source(ot: DType, bias: Option<DType>, accumulate: bool, act: Activation) -> String {
    let mut s = String::from("enable f16;\nenable wgpu_cooperative_matrix;\n");
    s += &header(DType::F16, DType::F16, ot, bias, accumulate);
    s += "var<workgroup> As: array<f16, 4096>;
var<workgroup> Bs: array<f16, 4096>;
var<workgroup> Ts: array<f32, 2048>;
var<workgroup> Z: array<f32, 256>;

fn lhs_at(lb: i32, i: u32, k: u32) -> f16 {
    if i >= p[0] || k >= p[2] { return f16(0.0); }
    return f16(ld_lhs(bitcast<u32>(lb + bitcast<i32>(i) * bitcast<i32>(p[8]) + bitcast<i32>(k) * bitcast<i32>(p[9]))));
}

fn rhs_at(rb: i32, k: u32, j: u32) -> f16 {
    if j >= p[1] || k >= p[2] { return f16(0.0); }
    return f16(ld_rhs(bitcast<u32>(rb + bitcast<i32>(k) * bitcast<i32>(p[10]) + bitcast<i32>(j) * bitcast<i32>(p[11]))));
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let M = p[0];
    let N = p[1];
    let K = p[2];
    let group = wg.y * nwg.x + wg.x;
    let tn = (N + 127u) / 128u;
    let per_batch = ((M + 127u) / 128u) * tn;
    if group >= per_batch * p[3] { return; }
    let b = group / per_batch;
    let t = group % per_batch;
    let row0 = (t / tn) * 128u;
    let col0 = (t % tn) * 128u;
    let lb = bitcast<i32>(p[4]) + batch_offset(b, 26u);
    let rb = bitcast<i32>(p[5]) + batch_offset(b, 32u);
    // Eight subgroups of 32: subgroup sg computes rows wm*64.. and columns wn*32.. of the tile.
    let sg = lid / 32u;
    let lane = lid % 32u;
    let wm = sg / 4u;
    let wn = sg % 4u;
    Z[lid] = 0.0;
    workgroupBarrier();
";
    for r in 0..4 {
        for c in 0..2 {
            s += &format!("    var c{r}{c} = coopLoad<coop_mat16x16<f32, C>>(&Z[0], 16u);\n");
        }
    }
    s += "    let pairs = p[19] == 1u && row0 + 128u <= M && col0 + 128u <= N;
    for (var k0 = 0u; k0 < K; k0 += 32u) {
        if pairs && k0 + 32u <= K {
            for (var q = 0u; q < 8u; q++) {
                let w = lid + q * 256u;
                let row = w / 16u;
                let kw = (w % 16u) * 2u;
                let ea = lb + bitcast<i32>(row0 + row) * bitcast<i32>(p[8]) + bitcast<i32>(k0 + kw);
                let va = lhs[bitcast<u32>(ea) / 2u];
                As[row * 32u + kw] = f16(f16_to_f32(va & 0xffffu));
                As[row * 32u + kw + 1u] = f16(f16_to_f32(va >> 16u));
                let kb = w / 64u;
                let nw = (w % 64u) * 2u;
                let eb = rb + bitcast<i32>(k0 + kb) * bitcast<i32>(p[10]) + bitcast<i32>(col0 + nw);
                let vb = rhs[bitcast<u32>(eb) / 2u];
                Bs[kb * 128u + nw] = f16(f16_to_f32(vb & 0xffffu));
                Bs[kb * 128u + nw + 1u] = f16(f16_to_f32(vb >> 16u));
            }
        } else {
            for (var q = 0u; q < 16u; q++) {
                let e = lid + q * 256u;
                As[e] = lhs_at(lb, row0 + e / 32u, k0 + e % 32u);
                Bs[e] = rhs_at(rb, k0 + e / 128u, col0 + e % 128u);
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 32u; kk += 16u) {
";
    for r in 0..4 {
        s += &format!(
            "            let a{r} = coopLoadT<coop_mat16x16<f16, A>>(&As[(wm * 64u + {}u) * 32u + kk], 32u);\n",
            r * 16
        );
    }
    for c in 0..2 {
        s += &format!(
            "            let b{c} = coopLoadT<coop_mat16x16<f16, B>>(&Bs[kk * 128u + wn * 32u + {}u], 128u);\n",
            c * 16
        );
    }
    for r in 0..4 {
        for c in 0..2 {
            s += &format!("            c{r}{c} = coopMultiplyAdd(a{r}, b{c}, c{r}{c});\n");
        }
    }
    s += "        }\n        workgroupBarrier();\n    }\n";
    s += "    let db = bitcast<i32>(p[6]) + batch_offset(b, 38u);\n";
    s += "    let ob = bitcast<i32>(p[16]) + batch_offset(b, 44u);\n";
    let epilogue = format!(
        "            var v = Ts[sg * 256u + e];\n{}",
        epilogue(ot, bias.is_some(), accumulate, act, "f32", "            ")
    );
    for r in 0..4 {
        for c in 0..2 {
            s += &format!(
                "    coopStoreT(c{r}{c}, &Ts[sg * 256u], 16u);
    workgroupBarrier();
    for (var e = lane; e < 256u; e += 32u) {{
        let i = row0 + wm * 64u + {}u + e / 16u;
        let j = col0 + wn * 32u + {}u + e % 16u;
        if i < M && j < N {{
{epilogue}        }}
    }}
    workgroupBarrier();
",
                r * 16,
                c * 16
            );
        }
    }
    s += "}\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cooperative-matrix kernels cannot run in CI (lavapipe has no cooperative matrices),
    /// so every variant is validated by naga and written as SPIR-V and MSL here.
    #[test]
    fn every_variant_validates_and_translates() {
        use naga::back::{msl, spv};
        use naga::valid::{Capabilities, ValidationFlags, Validator};
        let caps = Capabilities::default() | Capabilities::COOPERATIVE_MATRIX | Capabilities::SHADER_FLOAT16;
        let mut count = 0;
        for ot in [DType::F16, DType::F32] {
            for bias in [None, Some(ot)] {
                for accumulate in [false, true] {
                    for act in [Activation::None, Activation::Gelu] {
                        let code = crate::module_code(&source(ot, bias, accumulate, act));
                        let module = naga::front::wgsl::parse_str(&code)
                            .unwrap_or_else(|e| panic!("{}", e.emit_to_string(&code)));
                        let info = Validator::new(ValidationFlags::all(), caps)
                            .validate(&module)
                            .unwrap_or_else(|e| panic!("{}", e.emit_to_string(&code)));
                        spv::write_vec(&module, &info, &spv::Options::default(), None).expect("SPIR-V");
                        // Metal's simdgroup matrices need MSL 2.3.
                        let options = msl::Options { lang_version: (2, 3), ..msl::Options::default() };
                        msl::write_string(&module, &info, &options, &msl::PipelineOptions::default()).expect("MSL");
                        count += 1;
                    }
                }
            }
        }
        assert_eq!(count, 16);
    }
}

//! `matmul2d` with at most eight rows (decoding: m is the batch of tokens) and both operands
//! contiguous along k, as `x · Wᵀ` is with a `Linear` layer's weight stored n × k: f32, f16 and
//! bf16 on any adapter, no subgroups, no cooperative matrices.
//!
//! Such a product is bound by reading B once. The tiled kernels give it a 128-row tile (most of
//! its rows empty) and too few workgroups to keep the memory busy. Here a workgroup takes 16
//! columns of C: eight groups of 32 threads, each group two rows of B, its threads splitting k.
//! A thread reads 16 bytes of each of its two rows and of every row of A at a time (neighbouring
//! threads neighbouring 16 bytes, so a group reads 512 contiguous bytes of a row), two such steps
//! an iteration with all their loads issued first, and keeps four-wide partial sums; the group's
//! sums meet in workgroup memory before the epilogue. A 16-bit output with an even number of contiguous columns is stored a word (two
//! neighbouring columns) at a time by one thread, not through f32 scratch and a second dispatch.
//!
//! `STRATA_WGPU_FEW_ROWS=0` leaves such products to the other kernels (to compare).

use strata_core::kernel::{Activation, Layout, Matmul2d, MatmulMode, TensorMut, TensorRef};
use strata_core::{DType, Result};

use crate::matmul::{epilogue, finish, header, last2, launch, operand_strides};
use crate::{Wgpu, WgpuBuffer, wgsl};

/// Rows of B (columns of C) a thread, and threads along k in a group.
const ROWS: u32 = 2;
const LANES: u32 = 32;
/// One slot of the reduction's workgroup memory: a row of 33 (a group's 32 sums and a pad) for
/// each of the eight groups, so that the threads summing a row each meet a bank of their own.
const RED_SLOT: u32 = 8 * (LANES + 1);

/// Whether the kernel takes the product: at most eight rows of float operands of one type, both
/// contiguous along k, every row (and batch) starting on 16 bytes, k a multiple of the elements in
/// 16 bytes.
pub(crate) fn takes(
    gpu: &Wgpu,
    desc: &Matmul2d,
    left: &TensorRef<'_, WgpuBuffer>,
    right: &TensorRef<'_, WgpuBuffer>,
) -> bool {
    let t = left.dtype;
    if !gpu.few_rows {
        return false;
    }
    if desc.m > 8 || desc.k == 0 || right.dtype != t || !matches!(t, DType::F32 | DType::F16 | DType::BF16) {
        return false;
    }
    let per = (128 / wgsl::bits(t)) as i64;
    let (l_ms, l_ks, r_ks, r_ns) = operand_strides(desc, left.layout, right.layout);
    let aligned = |l: &Layout, outer: i32, rows: usize| {
        let batch = l.ndim() - 2;
        (l.offset() as i64) % per == 0
            && (rows == 1 || i64::from(outer) % per == 0)
            && l.strides()[..batch].iter().all(|&s| (s as i64) % per == 0)
    };
    l_ks == 1
        && r_ks == 1
        && (desc.k as i64) % per == 0
        && aligned(left.layout, l_ms, desc.m)
        && aligned(right.layout, r_ns, desc.n)
}

/// The product on this kernel (`takes` said yes).
pub(crate) fn matmul(
    gpu: &Wgpu,
    desc: &Matmul2d,
    left: &TensorRef<'_, WgpuBuffer>,
    right: &TensorRef<'_, WgpuBuffer>,
    bias: Option<&TensorRef<'_, WgpuBuffer>>,
    out: TensorMut<'_, WgpuBuffer>,
) -> Result<()> {
    let accumulate = desc.mode == MatmulMode::MultiplyAccumulate;
    let act = desc.epilogue.activation();
    let (t, ot, bt, m) = (left.dtype, out.dtype, bias.map(|b| b.dtype), desc.m as u32);
    // Whole words of a 16-bit output: every thread's two columns start a word.
    let (o_ms, o_ns) = last2(out.layout);
    let batch = out.layout.ndim() - 2;
    let even = |v: i64| v % 2 == 0;
    let pairs = wgsl::bits(ot) == 16
        && o_ns == 1
        && even(desc.n as i64)
        && (desc.m == 1 || even(i64::from(o_ms)))
        && even(out.layout.offset() as i64)
        && out.layout.strides()[..batch].iter().all(|&s| even(s as i64));
    let direct = pairs || wgsl::bits(ot) == 32;
    let v = Variant { t, ot, bias: bt, accumulate, act, m, pairs, unpack: t == DType::F16 && gpu.f16_in_f32 };
    let key = format!("matmul few rows {v:?}");
    let reads = 2 + usize::from(bias.is_some()) + usize::from(accumulate && !direct);
    let kernel = gpu.kernel(&key, reads, 1, || source(&v))?;
    launch(gpu, &kernel, desc, left, right, bias, out, 0, (8, (8 * ROWS) as usize), pairs)
}

/// Everything a kernel is specialized on.
#[derive(Clone, Copy, Debug)]
struct Variant {
    /// The operands' type and the output's.
    t: DType,
    ot: DType,
    bias: Option<DType>,
    accumulate: bool,
    act: Activation,
    /// Rows of A.
    m: u32,
    /// The output stored in words of two 16-bit elements.
    pairs: bool,
    /// f16 widened by `unpack2x16float` (where the adapter has it) rather than by bit operations.
    unpack: bool,
}

/// The kernel for `v`.
fn source(v: &Variant) -> String {
    let Variant { t, ot, bias, accumulate, act, m, pairs, unpack } = *v;
    let per = 128 / wgsl::bits(t);
    // Stored in words, the output is read in place when accumulating (no copy of it bound).
    let mut s = header(t, t, ot, bias, accumulate && !pairs, Some("array<vec4<u32>>"));
    if pairs && accumulate {
        s += &wgsl::loader("out", ot);
    }
    // 16 bytes as four-wide f32 vectors: one for f32, two for 16-bit types.
    let halves = |lo: &str, hi: &str| {
        format!(
            "fn lo(q: vec4<u32>) -> vec4<f32> {{ return {lo}; }}\nfn hi(q: vec4<u32>) -> vec4<f32> {{ return {hi}; }}\n"
        )
    };
    s += &match t {
        DType::F32 => "fn lo(q: vec4<u32>) -> vec4<f32> { return bitcast<vec4<f32>>(q); }\n".to_owned(),
        DType::F16 if unpack => halves(
            "vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y))",
            "vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w))",
        ),
        DType::F16 => halves(
            "vec4<f32>(f16_to_f32(q.x & 0xffffu), f16_to_f32(q.x >> 16u), f16_to_f32(q.y & 0xffffu), f16_to_f32(q.y >> 16u))",
            "vec4<f32>(f16_to_f32(q.z & 0xffffu), f16_to_f32(q.z >> 16u), f16_to_f32(q.w & 0xffffu), f16_to_f32(q.w >> 16u))",
        ),
        _ => halves(
            "bitcast<vec4<f32>>(vec4<u32>(q.x << 16u, q.x & 0xffff0000u, q.y << 16u, q.y & 0xffff0000u))",
            "bitcast<vec4<f32>>(vec4<u32>(q.z << 16u, q.z & 0xffff0000u, q.w << 16u, q.w & 0xffff0000u))",
        ),
    };
    // The loads of one 16-byte step at chunk `c` (named with `x`), and its products.
    let fetch = |c: &str, x: &str| {
        let mut r = String::new();
        for row in 0..ROWS {
            r += &format!("        let w{row}{x} = rhs[w{row}_at + {c}];\n");
        }
        for i in 0..m {
            r += &format!("        let x{i}{x} = lhs[x{i}_at + {c}];\n");
        }
        r
    };
    let products = |x: &str| {
        let mut r = String::new();
        let parts: &[&str] = if per == 8 { &["lo", "hi"] } else { &["lo"] };
        for part in parts {
            for row in 0..ROWS {
                r += &format!("        let w{row}{x}_{part} = {part}(w{row}{x});\n");
            }
            for i in 0..m {
                r += &format!("        let x{i}{x}_{part} = {part}(x{i}{x});\n");
            }
            for row in 0..ROWS {
                for i in 0..m {
                    r += &format!("        s{row}_{i} += w{row}{x}_{part} * x{i}{x}_{part};\n");
                }
            }
        }
        r
    };
    let sums = ROWS * m;
    let rounds = sums.div_ceil(8);
    s += &format!(
        "var<workgroup> red: array<f32, {}>;

@compute @workgroup_size({})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {{
{walk}    let g = lid / {LANES}u;
    let lane = lid % {LANES}u;
    let chunks = K / {per}u;
",
        8 * RED_SLOT,
        LANES * 8,
        walk = crate::matmul::tile_walk(8, ROWS * 8),
    );
    // Rows past N read the last row (no load under a branch); their sums are never stored.
    for row in 0..ROWS {
        s += &format!(
            "    let w{row}_at = bitcast<u32>(rb + bitcast<i32>(min(col0 + g * {ROWS}u + {row}u, N - 1u)) * bitcast<i32>(p[11])) / {per}u;\n"
        );
    }
    for i in 0..m {
        s += &format!("    let x{i}_at = bitcast<u32>(lb + {i} * bitcast<i32>(p[8])) / {per}u;\n");
    }
    for row in 0..ROWS {
        for i in 0..m {
            s += &format!("    var s{row}_{i} = vec4<f32>(0.0);\n");
        }
    }
    s += &format!("    var c = lane;\n    for (; c + {LANES}u < chunks; c += {}u) {{\n", 2 * LANES);
    s += &fetch("c", "a");
    s += &fetch(&format!("c + {LANES}u"), "b");
    s += &products("a");
    s += &products("b");
    s += "    }\n    if c < chunks {\n";
    s += &fetch("c", "a");
    s += &products("a");
    s += "    }\n";
    s += "    let db = bitcast<i32>(p[6]) + batch_offset(b, 38u);\n";
    s += "    let ob = bitcast<i32>(p[16]) + batch_offset(b, 44u);\n";
    // The sums of each group, eight at a time (sum v is row v % 2 of A's row v / 2): red[v][lid],
    // then one thread a (group, v), or a (group, pair of v) where the output is stored in words.
    for round in 0..rounds {
        for slot in 0..8 {
            let v = round * 8 + slot;
            if v < sums {
                let (row, i) = (v % ROWS, v / ROWS);
                s += &format!(
                    "    red[{slot}u * {RED_SLOT}u + g * {}u + lane] = dot(s{row}_{i}, vec4<f32>(1.0));\n",
                    LANES + 1
                );
            }
        }
        s += "    workgroupBarrier();\n";
        let sum = |slot: &str| {
            format!(
                "var sum{slot} = 0.0;
        for (var q = 0u; q < {LANES}u; q++) {{
            sum{slot} += red[({slot}) * {RED_SLOT}u + gg * {}u + q];
        }}",
                LANES + 1
            )
        };
        if pairs {
            s += &format!(
                "    if lid < 32u {{
        let gg = lid / 4u;
        let s0 = 2u * (lid % 4u);
        let s1 = s0 + 1u;
        {}
        {}
        let i = ({}u + s0) / {ROWS}u;
        let j = col0 + gg * {ROWS}u;
        if i < {m}u && j < N {{
{}        }}
    }}
    workgroupBarrier();
",
                sum("s0"),
                sum("s1"),
                round * 8,
                store_pair(ot, bias.is_some(), accumulate, act, "            ")
            );
        } else {
            s += &format!(
                "    if lid < 64u {{
        let gg = lid / 8u;
        let s0 = lid % 8u;
        let vi = {}u + s0;
        {}
        let i = vi / {ROWS}u;
        let j = col0 + gg * {ROWS}u + vi % {ROWS}u;
        if vi < {sums}u && j < N {{
            var v = sums0;
{}        }}
    }}
    workgroupBarrier();
",
                round * 8,
                sum("s0"),
                epilogue(ot, bias.is_some(), accumulate, act, "f32", "            ")
            );
        }
    }
    s += "}\n";
    s
}

/// The WGSL statements that finish outputs `(i, j)` and `(i, j + 1)` from `sums0` and `sums1` and
/// store them as one word of 16-bit elements (`j` even, so the word is theirs alone).
fn store_pair(ot: DType, bias: bool, accumulate: bool, act: Activation, indent: &str) -> String {
    let mut s = format!(
        "{indent}let d = bitcast<u32>(db + bitcast<i32>(i) * bitcast<i32>(p[12]) + bitcast<i32>(j) * bitcast<i32>(p[13]));\n"
    );
    let mut halves = Vec::new();
    for h in 0..2u32 {
        let old = accumulate.then(|| format!("ld_out(d + {h}u)"));
        s += &format!("{indent}var v{h} = sums{h};\n{indent}{{\n{indent}    var v = v{h};\n");
        s += &finish(old.as_deref(), bias, &format!("j + {h}u"), act, "f32", &format!("{indent}    "));
        s += &format!("{indent}    v{h} = v;\n{indent}}}\n");
        halves.push(wgsl::encode(ot, &format!("v{h}")));
    }
    s += &format!("{indent}out[d >> 1u] = {} | ({} << 16u);\n", halves[0], halves[1]);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without `unpack2x16float` the kernels need no capability beyond WGSL's defaults (adapters
    /// without `SHADER_F16_IN_F32` compile them); the test suites run them all on lavapipe.
    #[test]
    fn portable_variants_validate_without_capabilities() {
        use naga::valid::{Capabilities, ValidationFlags, Validator};
        for t in [DType::F16, DType::BF16, DType::F32] {
            for (m, pairs, accumulate) in [(1, true, true), (3, false, false), (8, true, false), (5, false, true)] {
                // Words of two elements hold 16-bit outputs only.
                let pairs = pairs && wgsl::bits(t) == 16;
                // 16-bit outputs through f32 scratch (read back when accumulating) once too.
                let ot = if pairs || m == 5 { t } else { DType::F32 };
                let v = Variant { t, ot, bias: Some(ot), accumulate, act: Activation::Gelu, m, pairs, unpack: false };
                let code = crate::module_code(&source(&v));
                assert!(!code.contains("unpack2x16float"), "{v:?}");
                let module = naga::front::wgsl::parse_str(&code)
                    .unwrap_or_else(|e| panic!("{v:?}: {}", e.emit_to_string(&code)));
                Validator::new(ValidationFlags::all(), Capabilities::default())
                    .validate(&module)
                    .unwrap_or_else(|e| panic!("{v:?}: {}", e.emit_to_string(&code)));
            }
        }
    }
}

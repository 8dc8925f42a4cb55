//! `matmul2d` for f16 on cooperative matrices (`EXPERIMENTAL_COOPERATIVE_MATRIX`: Vulkan's
//! `KHR_cooperative_matrix` on NVIDIA, simdgroup matrices on Metal), where the adapter has
//! square f16 products with f32 accumulators: 16×16×16 with 32-wide subgroups (NVIDIA's Vulkan
//! driver; off with `STRATA_WGPU_COOP=0`), or 8×8×8 on Apple's GPUs (Metal's simdgroup
//! matrices; translated to MSL in CI but never run, so only with `STRATA_WGPU_COOP=1`).
//!
//! A workgroup computes a tile of the output (128×256 on 16×16 matrices, 64×64 on 8×8 ones);
//! its subgroups split it in a grid ([`Tiles`]), each holding a grid of f32 accumulators.
//! Slices along k of both operands are staged in workgroup memory: every thread loads its share
//! of the next slice into registers (16 bytes at a time where the operand is contiguous and
//! aligned, element by element at the edges and for other strides) before the products of the
//! current one, and stores it after them (with two buffers, one barrier a slice suffices).
//! Each operand is staged along its contiguous axis, rows padded by 16 bytes so that the matrix
//! loads hit every bank once; the matrix loads then read rows or columns as that layout says.
//!
//! What made it fast (H100/H200, BENCHMARKS.md): no global load under a branch — tiles wholly
//! inside the operands take a copy of the pipeline without bounds checks, addresses computed
//! once, and the last slice loads itself again rather than skip — went from 55 to 160 TFLOP/s;
//! slices of 64 in one buffer to 190; tiles of 128×256 for sixteen subgroups to 230 (more
//! subgroups to cover each slice's barriers); operands bound as `vec4<u32>` to 255–259 (0.34×
//! cuBLAS at 8192³). Two buffers of 64 do not fit the 48 KiB of workgroup memory NVIDIA's
//! Vulkan driver allows; a second set of prefetch registers and 64×64 tiles did not help.
//!
//! What bounds it (H200, BENCHMARKS.md): the driver lowers the products to `mma.sync`
//! (`HMMA.16816.F32`, whose own peak is 0.84× cuBLAS) and the matrix loads to `ldmatrix`, as a
//! hand-written kernel would, at 126 of the 128 registers 512 threads can have. With the
//! global loads and the barriers knocked out, the products run at 0.51× cuBLAS; staging the
//! operands (then 8-byte global loads, stores, two barriers a slice) with the products knocked
//! out took 83 % of the kernel's time at 8192³. Holding 2 or 4 slices in registers ahead
//! changed nothing, so it is that path's throughput that bounds the kernel, not its latency.
//!
//! Naga's SPIR-V writer needs constant strides for matrix loads and stores, so operands are
//! never loaded straight from their buffers. The operands are bound as `vec4<u32>`, so that a
//! quad is one 16-byte load (`LDG.E.128`; bound as `vec4<f16>`, the driver loaded a quad in two
//! 8-byte halves, each warp's load covering half of every sector it touched), and unpacked to
//! halves (naga's `bitcast` cannot change a vector's length, so `unpack2x16float`, which the
//! driver turns into byte permutes); `STRATA_WGPU_COOP_LOAD16=0` binds them as `vec4<f16>`.
//! On Vulkan the staging arrays hold `vec4<f16>` too (matrix loads count their stride in array
//! elements), while Metal's `simdgroup_load` takes a pointer to the matrix's scalar type, so
//! elsewhere the staging holds `f16` scalars. Results leave through an f × f f32 tile per
//! subgroup in workgroup memory, where the epilogue (accumulate, bias, activation) runs.

use strata_core::kernel::{Activation, Layout, Matmul2d, MatmulMode, TensorMut, TensorRef};
use strata_core::{DType, Result};

use crate::matmul::{epilogue, header, launch, operand_strides};
use crate::wgsl;
use crate::{Wgpu, WgpuBuffer};

/// How this device runs the kernel, decided once when it is opened.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Config {
    tiles: Tiles,
    /// Staging as `vec4<f16>` (Vulkan) rather than `f16` scalars.
    wide: bool,
    /// Operands bound as `vec4<u32>`, so that a quad is one 16-byte load, rather than as
    /// `vec4<f16>` (two 8-byte loads, the driver does not merge them).
    loads16: bool,
}

/// The kernel's configuration on `adapter`, or `None` when its cooperative matrices cannot run
/// it.
pub(crate) fn config(adapter: &wgpu::Adapter) -> Option<Config> {
    let frag = fragment(adapter)?;
    Some(Config {
        tiles: Tiles::from_env(adapter.limits().max_compute_workgroup_storage_size, frag),
        wide: adapter.get_info().backend == wgpu::Backend::Vulkan
            && std::env::var("STRATA_WGPU_COOP_WIDE").map_or(true, |v| v != "0"),
        // Measured on NVIDIA's Vulkan driver only (0.30 → 0.34 of cuBLAS); elsewhere as before.
        loads16: adapter.get_info().backend == wgpu::Backend::Vulkan
            && std::env::var("STRATA_WGPU_COOP_LOAD16").map_or(true, |v| v != "0"),
    })
}

/// The side of the square f16 × f16 → f32 cooperative matrices the kernel runs on this
/// adapter, or `None` where it does not: 16 where the adapter has them and 32-wide subgroups
/// (NVIDIA's Vulkan driver; off with `STRATA_WGPU_COOP=0`), and 8 on Apple's GPUs through Metal
/// with `STRATA_WGPU_COOP=1` (simdgroup matrices: opt-in until a Mac has passed the matmul2d
/// suites on them; wgpu reports Metal's subgroups as 4 to 64 wide for every Mac, but Apple's
/// own GPUs run 32-wide SIMD-groups, which the kernel's split of a workgroup assumes).
fn fragment(adapter: &wgpu::Adapter) -> Option<u32> {
    let need = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16;
    let info = adapter.get_info();
    let has = |f: u32| {
        adapter.cooperative_matrix_properties().iter().any(|p| {
            (p.m_size, p.n_size, p.k_size) == (f, f, f)
                && p.ab_type == wgpu::CooperativeScalarType::F16
                && p.cr_type == wgpu::CooperativeScalarType::F32
        })
    };
    // 16×16 on unless `STRATA_WGPU_COOP=0`: 0.34× cuBLAS against the SIMT kernel's 0.03×
    // (H200, BENCHMARKS.md).
    let asked = std::env::var("STRATA_WGPU_COOP").ok();
    if !adapter.features().contains(need) || asked.as_deref() == Some("0") {
        return None;
    }
    if info.subgroup_min_size == 32 && info.subgroup_max_size == 32 && has(16) {
        Some(16)
    } else if asked.as_deref() == Some("1")
        && info.backend == wgpu::Backend::Metal
        && info.name.starts_with("Apple")
        && has(8)
    {
        Some(8)
    } else {
        None
    }
}

/// How a workgroup's subgroups split its tile of `f·wm·rm × f·wn·rn`: `wm × wn` subgroups,
/// each holding `rm × rn` accumulators of f × f (`frag`, 16 or 8); slices of `bk` along k,
/// staged in `stages` buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tiles {
    wm: u32,
    wn: u32,
    rm: u32,
    rn: u32,
    bk: u32,
    stages: u32,
    frag: u32,
}

impl Tiles {
    /// Tiles of 128×256 split among sixteen subgroups of 64×32, slices of 32 in one buffer:
    /// the fastest of fifteen tilings measured on an H200 (BENCHMARKS.md). Twice the subgroups
    /// of the 128×128 tiling hide more of each slice's barriers.
    const DEFAULT: Tiles = Tiles { wm: 2, wn: 8, rm: 4, rn: 2, bk: 32, stages: 1, frag: 16 };

    /// On 8×8 matrices (Apple's simdgroup matrices): 64×64 tiles of four simdgroups of 32×32
    /// and slices of 16, the shape of MLX's f16 GEMM tiles, here in two buffers (13 KiB of
    /// Metal's 32 with the epilogue's tiles). Not run: no Mac (validated and translated to MSL
    /// in CI only).
    const SIMDGROUP: Tiles = Tiles { wm: 2, wn: 2, rm: 4, rn: 4, bk: 16, stages: 2, frag: 8 };

    /// The default on matrices of `frag`, or `STRATA_WGPU_COOP_TILES=WMxWNxRMxRNxBKxSTAGES` (for
    /// tuning); a choice that does not fit `max_shared` bytes of workgroup memory or the
    /// kernel's shape rules is reported and the default taken.
    fn from_env(max_shared: u32, frag: u32) -> Tiles {
        let default = if frag == 8 { Tiles::SIMDGROUP } else { Tiles::DEFAULT };
        let Ok(v) = std::env::var("STRATA_WGPU_COOP_TILES") else { return default };
        let d: Vec<u32> = v.split('x').filter_map(|x| x.parse().ok()).collect();
        let parsed = match *d.as_slice() {
            [wm, wn, rm, rn, bk, stages] => Some(Tiles { wm, wn, rm, rn, bk, stages, frag }),
            _ => None,
        };
        match parsed.filter(|t| t.fits(max_shared)) {
            Some(t) => t,
            None => {
                eprintln!(
                    "strata-wgpu: STRATA_WGPU_COOP_TILES={v} is not a tiling this device runs \
                     (WMxWNxRMxRNxBKxSTAGES, tiles of 64 to 256, k slices of 16, 32 or 64, one or two \
                     stages, at most 1024 threads and {max_shared} bytes of workgroup memory); \
                     using {default:?}"
                );
                default
            }
        }
    }

    /// Whether the kernel can be built this way: every thread stages whole quads of both
    /// operands, and the staging and the epilogue's tiles fit in `max_shared` bytes.
    fn fits(&self, max_shared: u32) -> bool {
        let (a, b) = self.staging(true, true);
        let shared = 16 * self.stages * (a.size() + b.size()) + 4 * self.frag * self.frag * self.wm * self.wn;
        [64, 128, 256].contains(&self.tm())
            && [64, 128, 256].contains(&self.tn())
            && self.threads() <= 1024
            && (self.tm() * self.bk / 8).is_multiple_of(self.threads())
            && (self.tn() * self.bk / 8).is_multiple_of(self.threads())
            && (1..=2).contains(&self.stages)
            && [16, 32, 64].contains(&self.bk)
            && shared <= max_shared
    }

    fn threads(&self) -> u32 {
        32 * self.wm * self.wn
    }

    /// The rows of the workgroup's tile of the output.
    fn tm(&self) -> u32 {
        self.frag * self.wm * self.rm
    }

    /// The columns of the workgroup's tile of the output.
    fn tn(&self) -> u32 {
        self.frag * self.wn * self.rn
    }

    /// How the left and right operands are staged, given whether each runs along k.
    fn staging(&self, a_k_major: bool, b_k_major: bool) -> (Staging, Staging) {
        (
            Staging { k_major: a_k_major, bk: self.bk, side: self.tm() },
            Staging { k_major: b_k_major, bk: self.bk, side: self.tn() },
        )
    }
}

/// How one operand is staged: `k_major` when its rows of the staging run along k (the operand
/// is contiguous along k, or along neither axis), else along m (n); sizes are in 16-byte quads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Staging {
    k_major: bool,
    /// The slice's extent along k.
    bk: u32,
    /// The tile's extent along m (n).
    side: u32,
}

impl Staging {
    /// Quads of a staging row.
    fn per_row(&self) -> u32 {
        if self.k_major { self.bk / 8 } else { self.side / 8 }
    }

    /// Quads between consecutive staging rows (one quad of padding).
    fn row(&self) -> u32 {
        self.per_row() + 1
    }

    /// Quads of one buffer.
    fn size(&self) -> u32 {
        if self.k_major { self.side * self.row() } else { self.bk * self.row() }
    }
}

/// The product on cooperative matrices (f16 operands) as `config` says.
pub(crate) fn matmul(
    gpu: &Wgpu,
    config: Config,
    desc: &Matmul2d,
    left: &TensorRef<'_, WgpuBuffer>,
    right: &TensorRef<'_, WgpuBuffer>,
    bias: Option<&TensorRef<'_, WgpuBuffer>>,
    out: TensorMut<'_, WgpuBuffer>,
) -> Result<()> {
    let batch_axes = out.layout.ndim() - 2;
    let (l_ms, l_ks, r_ks, r_ns) = operand_strides(desc, left.layout, right.layout);
    let Config { tiles, wide, loads16 } = config;
    let (a, b) = tiles.staging(l_ks == 1 || l_ms != 1, r_ks == 1 || r_ns != 1);
    // An operand loads 16 bytes at a time when its staged axis is contiguous and every row
    // (and batch) starts on 8 elements.
    let quads = |l: &Layout, unit: i32, other: i32| {
        unit == 1
            && other % 8 == 0
            && l.offset().is_multiple_of(8)
            && l.strides()[..batch_axes].iter().all(|s| s % 8 == 0)
    };
    let a_quads = if a.k_major { quads(left.layout, l_ks, l_ms) } else { quads(left.layout, l_ms, l_ks) };
    let b_quads = if b.k_major { quads(right.layout, r_ks, r_ns) } else { quads(right.layout, r_ns, r_ks) };
    let accumulate = desc.mode == MatmulMode::MultiplyAccumulate;
    let direct = wgsl::bits(out.dtype) == 32;
    let act = desc.epilogue.activation();
    let v = Variant { tiles, a, b, wide, loads16, ot: out.dtype, bias: bias.map(|b| b.dtype), accumulate, act };
    let key = format!("matmul coop {v:?}");
    let reads = 2 + usize::from(bias.is_some()) + usize::from(accumulate && !direct);
    let kernel = gpu.kernel(&key, reads, 1, || source(&v))?;
    let flag = u32::from(a_quads) | (u32::from(b_quads) << 1);
    launch(gpu, &kernel, desc, left, right, bias, out, flag, (tiles.tm() as usize, tiles.tn() as usize), false)
}

/// Everything a kernel is specialized on.
#[derive(Clone, Copy, Debug)]
struct Variant {
    tiles: Tiles,
    a: Staging,
    b: Staging,
    /// Staging as `vec4<f16>` (Vulkan) rather than `f16` scalars.
    wide: bool,
    /// Operands bound as `vec4<u32>` rather than `vec4<f16>`.
    loads16: bool,
    ot: DType,
    bias: Option<DType>,
    accumulate: bool,
    act: Activation,
}

/// The WGSL of one operand's loaders: `{x}_el` reads element (outer, k) (zero outside the
/// operand) and `{x}_quad` the quad `w` (8 elements, as the two columns of a `mat2x4`) of the
/// slice at (`o0`, `k0`) in the order of the staging. For slices wholly inside an operand that
/// loads whole quads, `{x}_start` gives quad `w`'s element at k = 0 once, and `{x}_fast` loads
/// the quad at an element without a branch (a load in a branch costs its whole latency before
/// the next one issues) or a read of the parameters.
fn operand(x: &str, st: Staging, loads16: bool, limit: &str, s_outer: &str, s_k: &str, flag: u32) -> String {
    let per_row = st.per_row();
    // Element `e` and the quad at element `e` (a multiple of 8) of the operand's buffer.
    let (el, quad) = if loads16 {
        (
            format!("f16(unpack2x16float({x}[e >> 3u][(e >> 1u) & 3u])[e & 1u])"),
            format!(
                "let q = {x}[e >> 3u];
    return mat2x4<f16>(vec4<f16>(vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y))), \
vec4<f16>(vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w))));"
            ),
        )
    } else {
        (format!("{x}[e >> 2u][e & 3u]"), format!("let q = e >> 2u;\n    return mat2x4<f16>({x}[q], {x}[q + 1u]);"))
    };
    let (o, k, full, at, along_outer) = if st.k_major {
        (
            format!("o0 + w / {per_row}u"),
            format!("k0 + (w % {per_row}u) * 8u"),
            format!("o < {limit} && k + 8u <= p[2]"),
            format!("base + bitcast<i32>(o) * bitcast<i32>({s_outer}) + bitcast<i32>(k)"),
            false,
        )
    } else {
        (
            format!("o0 + (w % {per_row}u) * 8u"),
            format!("k0 + w / {per_row}u"),
            format!("k < p[2] && o + 8u <= {limit}"),
            format!("base + bitcast<i32>(k) * bitcast<i32>({s_k}) + bitcast<i32>(o)"),
            true,
        )
    };
    format!(
        "fn {x}_el(base: i32, o: u32, k: u32) -> f16 {{
    if o >= {limit} || k >= p[2] {{ return f16(0.0); }}
    let e = bitcast<u32>(base + bitcast<i32>(o) * bitcast<i32>({s_outer}) + bitcast<i32>(k) * bitcast<i32>({s_k}));
    return {el};
}}

fn {x}_quad(base: i32, o0: u32, k0: u32, w: u32) -> mat2x4<f16> {{
    let o = {o};
    let k = {k};
    if (p[19] & {flag}u) != 0u && {full} {{
        let e = bitcast<u32>({at});
        {quad}
    }}
    return mat2x4<f16>({});
}}

fn {x}_start(base: i32, o0: u32, w: u32) -> u32 {{
    let k0 = 0u;
    let o = {o};
    let k = {k};
    return bitcast<u32>({at});
}}

fn {x}_fast(e: u32) -> mat2x4<f16> {{
    {quad}
}}

",
        (0..8)
            .map(|j| if along_outer {
                format!("{x}_el(base, o + {j}u, k)")
            } else {
                format!("{x}_el(base, o, k + {j}u)")
            })
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The kernel; its parameters are [`launch`]'s, with `flag` bit 0 (1) saying the left (right)
/// operand loads whole quads.
fn source(v: &Variant) -> String {
    let Variant { tiles: t, a, b, wide, loads16, ot, bias, accumulate, act } = *v;
    let threads = t.threads();
    let (tm, tn) = (t.tm(), t.tn());
    let mut s = String::from("enable f16;\nenable wgpu_cooperative_matrix;\n");
    s += &header(
        DType::F16,
        DType::F16,
        ot,
        bias,
        accumulate,
        Some(if loads16 { "array<vec4<u32>>" } else { "array<vec4<f16>>" }),
    );
    // Staging arrays: `q` elements per quad of 8 halves.
    let q = if wide { 2 } else { 8 };
    let elem = if wide { "vec4<f16>" } else { "f16" };
    s += &format!("var<workgroup> As: array<{elem}, {}>;\n", t.stages * a.size() * q);
    s += &format!("var<workgroup> Bs: array<{elem}, {}>;\n", t.stages * b.size() * q);
    let f = t.frag;
    s += &format!("var<workgroup> Ts: array<f32, {}>;\n", t.wm * t.wn * f * f);
    s += &operand("lhs", a, loads16, "p[0]", "p[8]", "p[9]", 1);
    s += &operand("rhs", b, loads16, "p[1]", "p[11]", "p[10]", 2);
    // Where a staged quad goes, and the store itself.
    let slot = |st: Staging| {
        let per_row = st.per_row();
        format!("(w / {per_row}u) * {}u + w % {per_row}u", st.row())
    };
    let put = |arr: &str, at: String| {
        if wide {
            format!("    {arr}[2u * ({at})] = v[0];\n    {arr}[2u * ({at}) + 1u] = v[1];\n")
        } else {
            let mut r = format!("    let e = ({at}) * 8u;\n");
            for j in 0..8 {
                r += &format!("    {arr}[e + {j}u] = v[{}][{}];\n", j / 4, j % 4);
            }
            r
        }
    };
    for (x, arr, st) in [("a", "As", a), ("b", "Bs", b)] {
        s += &format!(
            "fn put_{x}(buf: u32, w: u32, v: mat2x4<f16>) {{\n    let at = buf * {}u + {};\n{}}}\n\n",
            st.size(),
            slot(st),
            put(arr, "at".into())
        );
    }
    s += &format!(
        "@compute @workgroup_size({threads})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {{
{walk}    // Subgroup sg computes rows sm * {}.. and columns sn * {}.. of the tile.
    let sg = lid / 32u;
    let lane = lid % 32u;
    let sm = sg / {}u;
    let sn = sg % {}u;
",
        t.rm * f,
        t.rn * f,
        t.wn,
        t.wn,
        walk = crate::matmul::tile_walk(tm, tn),
    );
    // Zero accumulators, loaded from a zeroed f × f tile.
    s += &format!("    for (var e = lid; e < {}u; e += {threads}u) {{ Ts[e] = 0.0; }}\n", f * f);
    s += "    workgroupBarrier();\n";
    for r in 0..t.rm {
        for c in 0..t.rn {
            s += &format!("    var c{r}_{c} = coopLoad<coop_mat{f}x{f}<f32, C>>(&Ts[0], {f}u);\n");
        }
    }
    s += "    workgroupBarrier();\n";
    // Each thread's share of a slice: `per` quads of each operand, registers ra*/rb*.
    let bk = t.bk;
    let per_a = tm * bk / 8 / threads;
    let per_b = tn * bk / 8 / threads;
    // (register, loader, base, tile origin, start, k step) of every quad a thread stages.
    let quads: Vec<_> = (0..per_a)
        .map(|i| (format!("ra{i}"), "lhs", "lb", "row0", format!("pa{i}"), "ka", "a", i * threads))
        .chain((0..per_b).map(|i| (format!("rb{i}"), "rhs", "rb", "col0", format!("pb{i}"), "kb", "b", i * threads)))
        .collect();
    let fetch = |k0: &str, fast: bool| {
        let mut r = String::new();
        for (reg, x, base, origin, start, ks, _, w) in &quads {
            r += &if fast {
                format!("            {reg} = {x}_fast({start} + ({k0}) * {ks});\n")
            } else {
                format!("            {reg} = {x}_quad({base}, {origin}, {k0}, lid + {w}u);\n")
            };
        }
        r
    };
    let store = |buf: &str| {
        let mut r = String::new();
        for (reg, _, _, _, _, _, role, w) in &quads {
            r += &format!("            put_{role}({buf}, lid + {w}u, {reg});\n");
        }
        r
    };
    // The matrix loads: pointer into the staging (in elements of the staging array) and
    // stride, for the left operand's f rows at `m` and the right one's f columns at `n`.
    let load = |role: &str, arr: &str, st: Staging, outer: String, kk: u32| {
        let size = st.size();
        let (at, major) = if st.k_major {
            (format!("cur * {size}u + ({outer}) * {}u + {}u", st.row(), kk / 8), role == "A")
        } else {
            (format!("cur * {size}u + {}u + ({outer}) / 8u", kk * st.row()), role == "B")
        };
        // Row-major for A means m along rows of the staging: A staged k-major, B staged
        // n-major (rows of k); otherwise column-major.
        let op = if major { "coopLoadT" } else { "coopLoad" };
        format!("{op}<coop_mat{f}x{f}<f16, {role}>>(&{arr}[({at}) * {q}u], {}u)", st.row() * q)
    };
    let mut products = String::new();
    for kk in (0..bk).step_by(f as usize) {
        products += "            {\n";
        for r in 0..t.rm {
            let m = format!("sm * {}u + {}u", t.rm * f, r * f);
            products += &format!("            let a{r} = {};\n", load("A", "As", a, m, kk));
        }
        for c in 0..t.rn {
            let n = format!("sn * {}u + {}u", t.rn * f, c * f);
            products += &format!("            let b{c} = {};\n", load("B", "Bs", b, n, kk));
        }
        for r in 0..t.rm {
            for c in 0..t.rn {
                products += &format!("            c{r}_{c} = coopMultiplyAdd(a{r}, b{c}, c{r}_{c});\n");
            }
        }
        products += "            }\n";
    }
    // The pipeline over k, twice: without checks where the tile and every slice lie inside
    // operands that load whole quads, with them elsewhere.
    // Where each quad of a slice starts, and how far apart slices are, in elements.
    for (reg, x, base, origin, start, _, _, w) in &quads {
        s += &format!("    var {reg}: mat2x4<f16>;\n    let {start} = {x}_start({base}, {origin}, lid + {w}u);\n");
    }
    s += &format!("    let ka = {};\n", if a.k_major { "1u" } else { "p[9]" });
    s += &format!("    let kb = {};\n", if b.k_major { "1u" } else { "p[10]" });
    s += &format!("    let slices = (K + {bk}u - 1u) / {bk}u;\n");
    // `&`, not `&&`: naga lowers the short-circuit to a branch, after which the matrix
    // operations no longer count as in uniform control flow.
    s += &format!(
        "    let fast = ((p[19] & 3u) == 3u) & (row0 + {tm}u <= M) & (col0 + {tn}u <= N) & (K % {bk}u == 0u) & (K > 0u);\n"
    );
    for fast in [true, false] {
        s += if fast { "    if fast {\n" } else { "    } else {\n" };
        s += &fetch("0u", fast);
        s += &store("0u");
        s += "        workgroupBarrier();\n";
        let cur = if t.stages == 2 { "i & 1u" } else { "0u" };
        s += &format!("        for (var i = 0u; i < slices; i++) {{\n            let cur = {cur};\n");
        // Later slices load without a branch (the last one loads itself again): a load under
        // a branch is waited for where the branch ends, before the products it should overlap.
        s += &fetch(&format!("min(i + 1u, slices - 1u) * {bk}u"), fast);
        s += &products;
        // With one buffer, the next slice waits in registers until every subgroup is done
        // with the current one.
        if t.stages == 2 {
            s += &store("1u - cur");
        } else {
            s += "            workgroupBarrier();\n";
            s += &store("0u");
        }
        s += "            workgroupBarrier();\n        }\n";
    }
    s += "    }\n";
    s += "    let db = bitcast<i32>(p[6]) + batch_offset(b, 38u);\n";
    s += "    let ob = bitcast<i32>(p[16]) + batch_offset(b, 44u);\n";
    let epilogue = format!(
        "            var v = Ts[sg * {}u + e];\n{}",
        f * f,
        epilogue(ot, bias.is_some(), accumulate, act, "f32", "            ")
    );
    for r in 0..t.rm {
        for c in 0..t.rn {
            s += &format!(
                "    coopStoreT(c{r}_{c}, &Ts[sg * {ff}u], {f}u);
    workgroupBarrier();
    for (var e = lane; e < {ff}u; e += 32u) {{
        let i = row0 + sm * {}u + {}u + e / {f}u;
        let j = col0 + sn * {}u + {}u + e % {f}u;
        if i < M && j < N {{
{epilogue}        }}
    }}
    workgroupBarrier();
",
                t.rm * f,
                r * f,
                t.rn * f,
                c * f,
                ff = f * f,
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
    /// so every variant is validated by naga and written as SPIR-V, and the portable ones
    /// (f16 staging) as MSL, here: on 16×16 matrices (NVIDIA's Vulkan driver) and on 8×8 ones
    /// (Apple's simdgroup matrices, which no Mac has run).
    #[test]
    fn every_variant_validates_and_translates() {
        use naga::back::{msl, spv};
        use naga::valid::{Capabilities, ValidationFlags, Validator};
        let caps = Capabilities::default()
            | Capabilities::COOPERATIVE_MATRIX
            | Capabilities::SHADER_FLOAT16
            | Capabilities::SHADER_FLOAT16_IN_FLOAT32;
        let mut count = 0;
        let tiles = [
            Tiles::DEFAULT,
            Tiles { wm: 2, wn: 2, rm: 4, rn: 4, bk: 32, stages: 2, frag: 16 },
            Tiles { wm: 4, wn: 2, rm: 2, rn: 4, bk: 16, stages: 2, frag: 16 },
            Tiles { wm: 2, wn: 2, rm: 2, rn: 2, bk: 64, stages: 2, frag: 16 },
            Tiles { wm: 4, wn: 2, rm: 4, rn: 4, bk: 32, stages: 1, frag: 16 },
            Tiles { wm: 2, wn: 4, rm: 4, rn: 4, bk: 32, stages: 1, frag: 16 },
            // Apple's 8×8 simdgroup matrices, within Metal's 32 KiB.
            Tiles::SIMDGROUP,
            Tiles { wm: 2, wn: 4, rm: 4, rn: 4, bk: 32, stages: 1, frag: 8 },
        ];
        for t in tiles {
            assert!(t.fits(if t.frag == 8 { 32 << 10 } else { 48 << 10 }), "{t:?}");
        }
        for (n, (wide, t)) in [true, false].into_iter().flat_map(|w| tiles.map(|t| (w, t))).enumerate() {
            for (a, b) in [(true, true), (true, false), (false, true), (false, false)] {
                // Every epilogue once, on a rotating choice of the rest.
                for (e, (ot, bias, accumulate, act)) in [
                    (DType::F16, None, false, Activation::None),
                    (DType::F32, Some(DType::F32), true, Activation::Gelu),
                    (DType::F16, Some(DType::F16), true, Activation::Relu),
                ]
                .into_iter()
                .enumerate()
                {
                    if (n + e) % 3 != 0 && !(a && b) {
                        continue;
                    }
                    let v = Variant {
                        tiles: t,
                        a: t.staging(a, b).0,
                        b: t.staging(a, b).1,
                        wide,
                        // Both loads for every tiling, across the two stagings: the defaults run
                        // as NVIDIA's (wide, 16-byte loads) and Metal's (f16 scalars, 8-byte).
                        loads16: (n + n / tiles.len()).is_multiple_of(2),
                        ot,
                        bias,
                        accumulate,
                        act,
                    };
                    let code = crate::module_code(&source(&v));
                    let module = naga::front::wgsl::parse_str(&code)
                        .unwrap_or_else(|e| panic!("{v:?}: {}", e.emit_to_string(&code)));
                    let info = Validator::new(ValidationFlags::all(), caps)
                        .validate(&module)
                        .unwrap_or_else(|e| panic!("{v:?}: {}", e.emit_to_string(&code)));
                    spv::write_vec(&module, &info, &spv::Options::default(), None).expect("SPIR-V");
                    if !wide {
                        // Metal's simdgroup matrices need MSL 2.3.
                        let options = msl::Options { lang_version: (2, 3), ..msl::Options::default() };
                        let (msl, _) =
                            msl::write_string(&module, &info, &options, &msl::PipelineOptions::default()).expect("MSL");
                        assert!(msl.contains("simdgroup_load"), "{v:?}");
                        assert!(msl.contains("simdgroup_multiply_accumulate"), "{v:?}");
                        // Metal has 8×8 simdgroup matrices only (naga writes 16×16 ones as
                        // `simdgroup_half16x16`, which Metal lacks; no Metal adapter reports them,
                        // so they never run there).
                        if t.frag == 8 {
                            for ty in ["simdgroup_half8x8", "simdgroup_float8x8"] {
                                assert!(msl.contains(ty), "{v:?}: no {ty} in its MSL");
                            }
                        }
                    }
                    count += 1;
                }
            }
        }
        assert_eq!(count, 96);
    }
}

//! `matmul2d` on any adapter: the choice of kernel (the few-rows one, `few_rows.rs`, for products
//! of at most eight rows; cooperative matrices, `coop.rs`, for f16 where the adapter has them;
//! else the one here), the parameters they share, and a tiled SIMT kernel.
//!
//! The SIMT kernel: a workgroup of 16×16 threads computes a 128×128 tile of the output, staging
//! 128×8 slices of both operands in workgroup memory (double-buffered: the next slice goes from
//! registers to the other buffer while this one is multiplied, one barrier a slice; tiles inside
//! the output load without bounds checks); each thread keeps 8×8 accumulators in registers as
//! sixteen four-wide vectors (f32 for the float types, i32 for int8) and reads its operands from
//! workgroup memory as vectors. Operands take any strides (transposes are strides); the staging
//! loads follow whichever axis is contiguous. A 16-bit output is computed into f32 scratch and
//! rounded by a map, so threads never share a word. Operands larger than the device binds at
//! once run in parts (`windowed`).

use strata_core::kernel::{Activation, Epilogue, Layout, Matmul2d, MatmulMode, Scales, TensorMut, TensorRef};
use strata_core::{DType, Result};

use crate::elementwise::{input, map};
use crate::parts::{Part, reach, slice};
use crate::wgsl::{self, Ct};
use crate::{Kernel, Wgpu, WgpuBuffer, err};

const TILE: usize = 128;
pub(crate) const MAX_BATCH_DIMS: usize = 6;

/// The strides of `l`'s first `batch` axes, padded to [`MAX_BATCH_DIMS`] with zeros.
pub(crate) fn batch_strides(l: &Layout, batch: usize) -> Vec<u32> {
    let s = l.strides();
    (0..MAX_BATCH_DIMS).map(|d| if d < batch { s[d] as i32 as u32 } else { 0 }).collect()
}

/// The stride of the last two axes of `l`: `(rows, columns)`.
pub(crate) fn last2(l: &Layout) -> (i32, i32) {
    let s = l.strides();
    (s[s.len() - 2] as i32, s[s.len() - 1] as i32)
}

pub(crate) fn matmul2d(
    gpu: &Wgpu,
    desc: &Matmul2d,
    left: TensorRef<'_, WgpuBuffer>,
    right: TensorRef<'_, WgpuBuffer>,
    bias: Option<TensorRef<'_, WgpuBuffer>>,
    scales: Option<Scales<'_, WgpuBuffer>>,
    out: TensorMut<'_, WgpuBuffer>,
) -> Result<()> {
    const OP: &str = "matmul2d";
    desc.validate_call(&left, &right, bias.as_ref(), scales.as_ref(), &out)?;
    let mut types = vec![left.dtype, right.dtype, out.dtype];
    types.extend(bias.map(|b| b.dtype));
    wgsl::check_types(OP, &types)?;
    let (m, n) = (desc.m, desc.n);
    let batch_shape = &out.layout.shape()[..out.layout.ndim() - 2];
    if batch_shape.len() > MAX_BATCH_DIMS {
        return Err(err(
            OP,
            format!("{} batch axes: the wgpu kernel takes at most {MAX_BATCH_DIMS}", batch_shape.len()),
        ));
    }
    let batch: usize = batch_shape.iter().product();
    if m == 0 || n == 0 || batch == 0 {
        return Ok(());
    }
    let cap = gpu.binding_cap;
    let scratch = if wgsl::bits(out.dtype) == 32 { 0 } else { 4 * out.layout.numel() as u64 };
    if [Some(left.buffer), Some(right.buffer), bias.map(|b| b.buffer), Some(&*out.buffer)]
        .into_iter()
        .flatten()
        .any(|b| b.bound_bytes() > cap)
        || scratch > cap
    {
        return windowed(gpu, desc, left, right, bias, out);
    }
    if crate::few_rows::takes(gpu, desc, &left, &right) {
        return crate::few_rows::matmul(gpu, desc, &left, &right, bias.as_ref(), out);
    }
    if let Some(config) = gpu.coop_config()
        && left.dtype == DType::F16
        && right.dtype == DType::F16
    {
        return crate::coop::matmul(gpu, config, desc, &left, &right, bias.as_ref(), out);
    }
    let (_, l_ks, _, r_ns) = operand_strides(desc, left.layout, right.layout);
    let accumulate = desc.mode == MatmulMode::MultiplyAccumulate;
    let direct = wgsl::bits(out.dtype) == 32;
    let act = desc.epilogue.activation();
    let key = format!(
        "matmul {} {} -> {} a{} b{} bias{} acc{accumulate} direct{direct} {act:?}",
        left.dtype,
        right.dtype,
        out.dtype,
        l_ks == 1,
        r_ns == 1,
        bias.map(|b| b.dtype.to_string()).unwrap_or_default()
    );
    let reads = 2 + usize::from(bias.is_some()) + usize::from(accumulate && !direct);
    let kernel = gpu.kernel(&key, reads, 1, || {
        source(left.dtype, right.dtype, out.dtype, bias.map(|b| b.dtype), accumulate, l_ks == 1, r_ns == 1, act)
    })?;
    launch(gpu, &kernel, desc, &left, &right, bias.as_ref(), out, 0, (TILE, TILE), false)
}

/// A product's dimensions, by which its parts are cut: a batch axis, or m, n or k.
#[derive(Clone, Copy, PartialEq)]
enum Dim {
    Batch(usize),
    M,
    N,
    K,
}

/// One part of a product cut into windows: its descriptor, the layouts of its operands
/// (left, right, output, bias) and whether it holds the first and the last of the k range.
struct ProductPart {
    desc: Matmul2d,
    layouts: [Option<Layout>; 4],
    first_k: bool,
    last_k: bool,
}

/// [`matmul2d`] over operands larger than the device binds at once. A 16- or 8-bit output is
/// computed into f32 scratch (read from the output first when accumulating; the bias widened to
/// f32 too) and rounded by one map at the end, so every part below accumulates in 32 bits. While a part's operands do not
/// fit windows, it is halved along the dimension along which its widest operand reaches
/// furthest: halves along a batch axis, m or n are independent; along k, the first half runs
/// first with the product's own mode and no epilogue, the second accumulates onto it and
/// applies the bias and activation. Fitting parts run on windows of the buffers.
fn windowed(
    gpu: &Wgpu,
    desc: &Matmul2d,
    left: TensorRef<'_, WgpuBuffer>,
    right: TensorRef<'_, WgpuBuffer>,
    bias: Option<TensorRef<'_, WgpuBuffer>>,
    out: TensorMut<'_, WgpuBuffer>,
) -> Result<()> {
    if wgsl::bits(out.dtype) != 32 {
        let whole = Layout::contiguous(out.layout.shape());
        let mut acc = gpu.take(whole.numel() * 4)?;
        if desc.mode == MatmulMode::MultiplyAccumulate {
            let from = [input("x", TensorRef::new(out.dtype, out.buffer, out.layout))];
            map(gpu, "matmul2d", "x", &from, TensorMut::new(DType::F32, &mut acc, &whole))?;
        }
        // The bias, of the output's type, in f32 as the scratch is.
        let bias_layout = Layout::contiguous(&[desc.n]);
        let mut bias32 = None;
        if let Some(b) = bias {
            let mut buf = gpu.take(desc.n * 4)?;
            map(gpu, "matmul2d", "x", &[input("x", b)], TensorMut::new(DType::F32, &mut buf, &bias_layout))?;
            bias32 = Some(buf);
        }
        let b = bias32.as_ref().map(|buf| TensorRef::new(DType::F32, buf, &bias_layout));
        windowed(gpu, desc, left, right, b, TensorMut::new(DType::F32, &mut acc, &whole))?;
        return map(gpu, "matmul2d", "x", &[input("x", TensorRef::new(DType::F32, &acc, &whole))], out);
    }
    let nb = out.layout.ndim() - 2;
    // The axis of each operand (left, right, output, bias) along a dimension.
    let axis = |o: usize, d: Dim| -> Option<usize> {
        let (tl, tr) = (desc.transpose_left, desc.transpose_right);
        match (o, d) {
            (3, Dim::N) => Some(0),
            (3, _) => None,
            (_, Dim::Batch(b)) => Some(b),
            (0, Dim::M) => Some(nb + usize::from(tl)),
            (0, Dim::K) => Some(nb + usize::from(!tl)),
            (1, Dim::K) => Some(nb + usize::from(tr)),
            (1, Dim::N) => Some(nb + usize::from(!tr)),
            (2, Dim::M) => Some(nb),
            (2, Dim::N) => Some(nb + 1),
            _ => None,
        }
    };
    let types = [left.dtype, right.dtype, out.dtype, bias.map_or(DType::F32, |b| b.dtype)];
    let buffers = [Some(left.buffer), Some(right.buffer), Some(&*out.buffer), bias.map(|b| b.buffer)];
    let layouts = [
        Some(left.layout.clone()),
        Some(right.layout.clone()),
        Some(out.layout.clone()),
        bias.map(|b| b.layout.clone()),
    ];
    let mut parts = vec![ProductPart { desc: *desc, layouts, first_k: true, last_k: true }];
    while let Some(part) = parts.pop() {
        let wins = part
            .layouts
            .iter()
            .zip(&buffers)
            .zip(&types)
            .map(|((l, b), &t)| match (l, b) {
                (Some(l), Some(b)) if l.numel() > 0 => Part::of(gpu, l, t, b).map(Some),
                _ => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        if wins.iter().flatten().all(|w| w.bytes() <= gpu.binding_cap) {
            // Operands without elements (k = 0) are bound as a placeholder; nothing reads them.
            let placeholder = if wins[..2].iter().any(Option::is_none) { Some(gpu.take(16)?) } else { None };
            let view = |o: usize| match (&wins[o], buffers[o]) {
                (Some(w), Some(b)) => Some(w.view(b)),
                (None, Some(_)) => placeholder.as_ref().map(|p| p.window(0, 16)),
                _ => None,
            };
            let (lv, rv, mut ov, bv) =
                (view(0).expect("left"), view(1).expect("right"), view(2).expect("out"), view(3));
            let empty: Vec<Layout> =
                part.layouts.iter().map(|l| Layout::contiguous(l.as_ref().map_or(&[][..], |l| l.shape()))).collect();
            let layout = |o: usize| wins[o].as_ref().map_or(&empty[o], |w| &w.layout);
            let mut d = part.desc;
            if !part.first_k {
                d.mode = MatmulMode::MultiplyAccumulate;
            }
            if !part.last_k {
                d.epilogue = Epilogue::None;
            }
            let b = bv.as_ref().filter(|_| part.last_k).map(|b| TensorRef::new(types[3], b, layout(3)));
            matmul2d(
                gpu,
                &d,
                TensorRef::new(left.dtype, &lv, layout(0)),
                TensorRef::new(right.dtype, &rv, layout(1)),
                b,
                None,
                TensorMut::new(out.dtype, &mut ov, layout(2)),
            )?;
            continue;
        }
        // The widest operand, and the dimension along which it reaches furthest.
        let widest = (0..4).max_by_key(|&o| wins[o].as_ref().map_or(0, |w| w.bytes())).expect("four operands");
        let wl = part.layouts[widest].as_ref().expect("an operand");
        let extent = |d: Dim| match d {
            Dim::Batch(b) => part.layouts[2].as_ref().expect("out").shape()[b],
            Dim::M => part.desc.m,
            Dim::N => part.desc.n,
            Dim::K => part.desc.k,
        };
        let dims = (0..nb).map(Dim::Batch).chain([Dim::M, Dim::N, Dim::K]);
        let reach = |d: Dim| axis(widest, d).map_or(0, |ax| reach(wl, ax));
        let Some(dim) = dims.filter(|&d| extent(d) > 1 && axis(widest, d).is_some()).max_by_key(|&d| reach(d)) else {
            return Err(err(
                "matmul2d",
                format!("one element is wider than this device binds ({} bytes)", gpu.binding_cap),
            ));
        };
        let (len, half) = (extent(dim), extent(dim) / 2);
        // Pushed second, popped first: along k, the first half.
        for (a, b) in [(half, len), (0, half)] {
            let layouts = (0..4)
                .map(|o| match (&part.layouts[o], axis(o, dim)) {
                    (Some(l), Some(ax)) => slice(l, ax, a, b).map(Some),
                    (l, _) => Ok(l.clone()),
                })
                .collect::<Result<Vec<_>>>()?;
            let mut d = part.desc;
            match dim {
                Dim::M => d.m = b - a,
                Dim::N => d.n = b - a,
                Dim::K => d.k = b - a,
                Dim::Batch(_) => {}
            }
            let (first_k, last_k) = if dim == Dim::K {
                (part.first_k && a == 0, part.last_k && b == len)
            } else {
                (part.first_k, part.last_k)
            };
            let layouts: [Option<Layout>; 4] = layouts.try_into().expect("four operands");
            parts.push(ProductPart { desc: d, layouts, first_k, last_k });
        }
    }
    Ok(())
}

/// Builds the parameters the GEMM kernels take and runs `kernel` over tiles of the output; a
/// 16-bit output is computed into f32 scratch (read back when accumulating) and rounded by a
/// map, so that no two threads share a word, unless the kernel stores whole words itself
/// (`stores_16`).
///
/// Parameters: `[m, n, k, batch, left_off, right_off, dest_off, bias_off, l_ms, l_ks, r_ks,
/// r_ns, d_ms, d_ns, batch_axes, bias_stride, out_off, o_ms, o_ns, flag, batch_shape[6],
/// then the batch strides of left, right, dest and out (6 each)]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn launch(
    gpu: &Wgpu,
    kernel: &Kernel,
    desc: &Matmul2d,
    left: &TensorRef<'_, WgpuBuffer>,
    right: &TensorRef<'_, WgpuBuffer>,
    bias: Option<&TensorRef<'_, WgpuBuffer>>,
    out: TensorMut<'_, WgpuBuffer>,
    flag: u32,
    (tile_m, tile_n): (usize, usize),
    stores_16: bool,
) -> Result<()> {
    const OP: &str = "matmul2d";
    let (m, n, k) = (desc.m, desc.n, desc.k);
    let batch_shape = &out.layout.shape()[..out.layout.ndim() - 2];
    let batch: usize = batch_shape.iter().product();
    let (l_ms, l_ks, r_ks, r_ns) = operand_strides(desc, left.layout, right.layout);
    let (o_ms, o_ns) = last2(out.layout);
    // The kernel stores into the output itself (32-bit outputs, or 16-bit ones a kernel stores in
    // whole words: `stores_16`), else into f32 scratch that a map rounds.
    let direct = stores_16 || wgsl::bits(out.dtype) == 32;
    let accumulate = desc.mode == MatmulMode::MultiplyAccumulate;
    let scratch_layout = Layout::contiguous(out.layout.shape());
    let dest_layout = if direct { out.layout } else { &scratch_layout };
    let (d_ms, d_ns) = last2(dest_layout);
    let mut p: Vec<u32> = vec![
        m as u32,
        n as u32,
        k as u32,
        batch as u32,
        left.layout.offset() as u32,
        right.layout.offset() as u32,
        dest_layout.offset() as u32,
        bias.map_or(0, |b| b.layout.offset() as u32),
        l_ms as u32,
        l_ks as u32,
        r_ks as u32,
        r_ns as u32,
        d_ms as u32,
        d_ns as u32,
        batch_shape.len() as u32,
        bias.map_or(0, |b| b.layout.strides()[0] as i32 as u32),
        out.layout.offset() as u32,
        o_ms as u32,
        o_ns as u32,
        flag,
    ];
    p.extend((0..MAX_BATCH_DIMS).map(|d| batch_shape.get(d).map_or(1, |&s| s as u32)));
    for l in [left.layout, right.layout, dest_layout, out.layout] {
        p.extend(batch_strides(l, batch_shape.len()));
    }
    let tiles = (m.div_ceil(tile_m) * n.div_ceil(tile_n) * batch) as u64;
    let mut ins: Vec<&WgpuBuffer> = vec![left.buffer, right.buffer];
    ins.extend(bias.map(|b| b.buffer));
    if direct {
        return gpu.dispatch(OP, kernel, &p, &ins, &[out.buffer], tiles);
    }
    if accumulate {
        ins.push(out.buffer);
    }
    let scratch = gpu.take(out.layout.numel() * 4)?;
    gpu.dispatch(OP, kernel, &p, &ins, &[&scratch], tiles)?;
    drop(ins);
    map(gpu, OP, "x", &[input("x", TensorRef::new(DType::F32, &scratch, &scratch_layout))], out)
}

/// The strides of (m, k) in the left operand and of (k, n) in the right one.
pub(crate) fn operand_strides(desc: &Matmul2d, left: &Layout, right: &Layout) -> (i32, i32, i32, i32) {
    let (lr, lc) = last2(left);
    let (l_ms, l_ks) = if desc.transpose_left { (lc, lr) } else { (lr, lc) };
    let (rr, rc) = last2(right);
    let (r_ks, r_ns) = if desc.transpose_right { (rc, rr) } else { (rr, rc) };
    (l_ms, l_ks, r_ks, r_ns)
}

/// The start of a GEMM kernel's `main` (`wg`, `nwg` and `p` in scope): the sizes `M`, `N`, `K`;
/// the work group's output tile of `rows` × `cols` (`b` its batch entry, `row0` and `col0` its
/// first row and column; the tiles of each batch entry walked a row of tiles at a time), or a
/// return for a work group past the last; and the operands' first elements `lb` and `rb`.
pub(crate) fn tile_walk(rows: u32, cols: u32) -> String {
    format!(
        "    let M = p[0];
    let N = p[1];
    let K = p[2];
    let group = wg.y * nwg.x + wg.x;
    let tiles_n = (N + {cols}u - 1u) / {cols}u;
    let per_batch = ((M + {rows}u - 1u) / {rows}u) * tiles_n;
    if group >= per_batch * p[3] {{ return; }}
    let b = group / per_batch;
    let t = group % per_batch;
    let row0 = (t / tiles_n) * {rows}u;
    let col0 = (t % tiles_n) * {cols}u;
    let lb = bitcast<i32>(p[4]) + batch_offset(b, 26u);
    let rb = bitcast<i32>(p[5]) + batch_offset(b, 32u);
"
    )
}

/// The WGSL the GEMM kernels open with: the bindings (parameters, left, right, the bias, the
/// old output when accumulating into scratch, the destination), their loaders and
/// `batch_offset`. With `vectors` the operands are bound as that array type (`array<vec4<f16>>`,
/// say) and the kernel brings its own loaders.
pub(crate) fn header(
    lt: DType,
    rt: DType,
    ot: DType,
    bias: Option<DType>,
    accumulate: bool,
    vectors: Option<&str>,
) -> String {
    let direct = wgsl::bits(ot) == 32;
    let mut s = String::from("@group(0) @binding(0) var<storage, read> p: array<u32>;\n");
    let operand = vectors.unwrap_or("array<u32>");
    s += &format!("@group(0) @binding(1) var<storage, read> lhs: {operand};\n");
    s += &format!("@group(0) @binding(2) var<storage, read> rhs: {operand};\n");
    if vectors.is_none() {
        s += &wgsl::loader("lhs", lt);
        s += &wgsl::loader("rhs", rt);
    }
    let mut next = 3;
    if let Some(bt) = bias {
        s += &format!("@group(0) @binding({next}) var<storage, read> bias: array<u32>;\n");
        s += &wgsl::loader("bias", bt);
        next += 1;
    }
    if accumulate && !direct {
        s += &format!("@group(0) @binding({next}) var<storage, read> cin: array<u32>;\n");
        s += &wgsl::loader("cin", ot);
        next += 1;
    }
    s += &format!("@group(0) @binding({next}) var<storage, read_write> out: array<u32>;\n");
    if accumulate && direct {
        s += &wgsl::loader("out", ot);
    }
    s += "
fn batch_offset(b: u32, strides: u32) -> i32 {
    var rem = b;
    var at = 0;
    for (var d = p[14]; d > 0u; d--) {
        let n = p[19u + d];
        at += bitcast<i32>(rem % n) * bitcast<i32>(p[strides + d - 1u]);
        rem = rem / n;
    }
    return at;
}
";
    s
}

/// The WGSL statements that finish output `(i, j)` from `v` (of `acc_t`): the old output when
/// accumulating, the bias, the activation, the store at `d` (computed here from `db`, and the
/// old output's position from `ob`).
pub(crate) fn epilogue(ot: DType, bias: bool, accumulate: bool, act: Activation, acc_t: &str, indent: &str) -> String {
    let direct = wgsl::bits(ot) == 32;
    let mut s = format!(
        "{indent}let d = bitcast<u32>(db + bitcast<i32>(i) * bitcast<i32>(p[12]) + bitcast<i32>(j) * bitcast<i32>(p[13]));\n"
    );
    let old = accumulate.then(|| {
        let o = "bitcast<u32>(ob + bitcast<i32>(i) * bitcast<i32>(p[17]) + bitcast<i32>(j) * bitcast<i32>(p[18]))";
        if direct { format!("ld_out({o})") } else { format!("{acc_t}(ld_cin({o}))") }
    });
    s += &finish(old.as_deref(), bias, "j", act, acc_t, indent);
    let dest_t = if direct { ot } else { DType::F32 };
    s += &format!("{indent}out[d] = {};\n", wgsl::encode(dest_t, "v"));
    s
}

/// The WGSL statements that take `v` (of `acc_t`) from the product to the value stored: `+ old`
/// (the old output's expression, when accumulating), `+` the bias at column `j`, the
/// activation.
pub(crate) fn finish(old: Option<&str>, bias: bool, j: &str, act: Activation, acc_t: &str, indent: &str) -> String {
    let mut s = String::new();
    if let Some(old) = old {
        s += &format!("{indent}v = v + {old};\n");
    }
    if bias {
        s += &format!(
            "{indent}v = v + {acc_t}(ld_bias(bitcast<u32>(bitcast<i32>(p[7]) + bitcast<i32>({j}) * bitcast<i32>(p[15]))));\n"
        );
    }
    if act != Activation::None {
        s += &format!("{indent}v = {};\n", wgsl::activation(act));
    }
    s
}

#[allow(clippy::too_many_arguments)]
fn source(
    lt: DType,
    rt: DType,
    ot: DType,
    bias: Option<DType>,
    accumulate: bool,
    a_k_contiguous: bool,
    b_n_contiguous: bool,
    act: Activation,
) -> String {
    let int = Ct::of(lt) != Ct::F32;
    let acc_t = if int { "i32" } else { "f32" };
    let zero = if int { "0" } else { "0.0" };
    let mut s = header(lt, rt, ot, bias, accumulate, None);
    // Shared tiles, k-major: As[k][m] and Bs[k][n] as rows of 32 four-wide vectors, so that a
    // thread reads its four rows (columns) with one vector load; two of each, so that the
    // next slice is stored while the current one is read (one barrier a slice).
    s += &format!(
        "var<workgroup> As: array<vec4<{acc_t}>, 512>;
var<workgroup> Bs: array<vec4<{acc_t}>, 512>;

fn lhs_at(lb: i32, i: u32, k: u32) -> {acc_t} {{
    if i >= p[0] || k >= p[2] {{ return {zero}; }}
    return lhs_in(lb, i, k);
}}

fn rhs_at(rb: i32, k: u32, j: u32) -> {acc_t} {{
    if j >= p[1] || k >= p[2] {{ return {zero}; }}
    return rhs_in(rb, k, j);
}}

fn lhs_in(lb: i32, i: u32, k: u32) -> {acc_t} {{
    return {acc_t}(ld_lhs(bitcast<u32>(lb + bitcast<i32>(i) * bitcast<i32>(p[8]) + bitcast<i32>(k) * bitcast<i32>(p[9]))));
}}

fn rhs_in(rb: i32, k: u32, j: u32) -> {acc_t} {{
    return {acc_t}(ld_rhs(bitcast<u32>(rb + bitcast<i32>(k) * bitcast<i32>(p[10]) + bitcast<i32>(j) * bitcast<i32>(p[11]))));
}}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {{
{walk}    let tx = lid % 16u;
    let ty = lid / 16u;
",
        walk = tile_walk(128, 128),
    );
    for r in 0..8 {
        for h in 0..2 {
            s += &format!("    var c{r}{h} = vec4<{acc_t}>({zero});\n");
        }
    }
    // Each thread stages four elements of each operand a slice; consecutive threads walk the
    // operand's contiguous axis. The q-th of them as (offset along the tile's 128 rows or
    // columns, offset along k, vector and lane of its shared-memory slot): the same for A's
    // rows as for B's columns, the order of the two axes in memory deciding.
    let staged = |k_contiguous: bool, q: usize| -> [String; 4] {
        if k_contiguous {
            let k = format!("(lid % 2u) * 4u + {q}u");
            ["lid / 2u".into(), k.clone(), format!("({k}) * 32u + lid / 8u"), "(lid / 2u) % 4u".into()]
        } else {
            [
                format!("(lid % 32u) * 4u + {q}u"),
                "lid / 32u".into(),
                "(lid / 32u) * 32u + lid % 32u".into(),
                format!("{q}u"),
            ]
        }
    };
    // (element, shared-memory slot) of the q-th staged element of A and of B at slice k0, into
    // buffer `buf`.
    let a_elem = |q: usize| {
        let [i, k, v, c] = staged(a_k_contiguous, q);
        (format!("row0 + {i}, k0 + {k}"), format!("As[buf + {v}][{c}]"))
    };
    let b_elem = |q: usize| {
        let [j, k, v, c] = staged(!b_n_contiguous, q);
        (format!("k0 + {k}, col0 + {j}"), format!("Bs[buf + {v}][{c}]"))
    };
    // Loads of slice `k0` into registers, checked against the edges or not.
    let load = |checked: bool, indent: &str| {
        let (la, lb_) = if checked { ("lhs_at", "rhs_at") } else { ("lhs_in", "rhs_in") };
        let mut l = String::new();
        for q in 0..4 {
            l += &format!("{indent}ra{q} = {la}(lb, {});\n", a_elem(q).0);
            l += &format!("{indent}rb{q} = {lb_}(rb, {});\n", b_elem(q).0);
        }
        l
    };
    let store = {
        let mut l = String::new();
        for q in 0..4 {
            l += &format!("            {} = ra{q};\n", a_elem(q).1);
            l += &format!("            {} = rb{q};\n", b_elem(q).1);
        }
        l
    };
    let mut compute = String::from("            for (var kk = 0u; kk < 8u; kk++) {\n");
    compute +=
        "                let a0 = As[cur + kk * 32u + ty];\n                let a1 = As[cur + kk * 32u + 16u + ty];\n";
    compute +=
        "                let b0 = Bs[cur + kk * 32u + tx];\n                let b1 = Bs[cur + kk * 32u + 16u + tx];\n";
    for r in 0..8 {
        let a = format!("a{}[{}]", r / 4, r % 4);
        for h in 0..2 {
            compute += &if int {
                format!("                c{r}{h} = c{r}{h} + vec4({a}) * b{h};\n")
            } else {
                format!("                c{r}{h} = fma(vec4({a}), b{h}, c{r}{h});\n")
            };
        }
    }
    compute += "            }\n";
    for q in 0..4 {
        s += &format!("    var ra{q}: {acc_t};\n    var rb{q}: {acc_t};\n");
    }
    // Tiles wholly inside the output with whole slices of k take a copy of the pipeline whose
    // loads are not under a branch (a load under one is waited for where the branch ends), and
    // whose last slice loads itself again instead of branching around the prefetch.
    // (K = 0 has no slice to load.)
    s += "    let interior = row0 + 128u <= M && col0 + 128u <= N && K > 0u && K % 8u == 0u;\n";
    for checked in [false, true] {
        s += if checked { "    } else {\n" } else { "    if interior {\n" };
        s += "        {\n            let k0 = 0u;\n            let buf = 0u;\n";
        s += &load(checked, "            ");
        s += &store;
        s += "        }\n        workgroupBarrier();\n";
        s += "        for (var k = 0u; k < K; k += 8u) {\n";
        s += "            let cur = ((k / 8u) % 2u) * 256u;\n            let buf = 256u - cur;\n";
        if checked {
            s += "            let k0 = k + 8u;\n            if k0 < K {\n";
            s += &load(true, "                ");
            s += "            }\n";
        } else {
            s += "            let k0 = select(k + 8u, k, k + 8u >= K);\n";
            s += &load(false, "            ");
        }
        s += &compute;
        s += &store;
        s += "            workgroupBarrier();\n        }\n";
    }
    s += "    }\n";
    s += "    let db = bitcast<i32>(p[6]) + batch_offset(b, 38u);\n";
    s += "    let ob = bitcast<i32>(p[16]) + batch_offset(b, 44u);\n";
    // Thread (tx, ty) holds rows ty*4 + 0..4 and 64 + ty*4 + 0..4, columns tx*4 + 0..4 and
    // 64 + tx*4 + 0..4 of the tile.
    s += &format!("    var acc: array<vec4<{acc_t}>, 16>;\n");
    for r in 0..8 {
        for h in 0..2 {
            s += &format!("    acc[{}] = c{r}{h};\n", r * 2 + h);
        }
    }
    s += "    for (var r = 0u; r < 8u; r++) {
        let i = row0 + select(ty * 4u + r, 64u + ty * 4u + r - 4u, r >= 4u);
        for (var h = 0u; h < 2u; h++) {
            for (var c = 0u; c < 4u; c++) {
                let j = col0 + h * 64u + tx * 4u + c;
                if i < M && j < N {
                    var v = acc[r * 2u + h][c];
";
    s += &epilogue(ot, bias.is_some(), accumulate, act, acc_t, "                    ");
    s += "                }\n            }\n        }\n    }\n}\n";
    s
}

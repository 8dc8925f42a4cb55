//! Element-wise kernels: one generated "map" kernel evaluates a WGSL expression of any number of
//! strided, broadcast operands into an output of any layout (8- and 16-bit outputs must be
//! contiguous: threads then own whole 32-bit words). Unary, binary, select, copy and cast are
//! all maps; so is the final packing step of kernels that compute into 32-bit scratch.

use strata_core::kernel::{
    BinaryOp, Layout, TensorMut, TensorRef, UnaryOp, validate_binary, validate_elementwise, validate_select,
    validate_unary,
};
use strata_core::{DType, Error, Result};

use crate::parts::{Part, cut_axis, slice};
use crate::wgsl::{self, Ct};
use crate::{WORKGROUP, Wgpu, WgpuBuffer, err};

/// The most axes a kernel's geometry takes.
pub(crate) const MAX_DIMS: usize = 8;

/// An input of a map: its name in the expression and the operand.
pub(crate) struct Input<'a> {
    name: &'static str,
    t: TensorRef<'a, WgpuBuffer>,
    /// Whether `value` loads it at `pos(k, i)` (else the code reads it through `ld_in{k}`).
    load: bool,
    /// Indices, which may also be int64 ([`wgsl::check_index_type`]).
    index: bool,
}

pub(crate) fn input<'a>(name: &'static str, t: TensorRef<'a, WgpuBuffer>) -> Input<'a> {
    Input { name, t, load: true, index: false }
}

/// Indices the map loads at `pos(k, i)`.
pub(crate) fn index_input<'a>(name: &'static str, t: TensorRef<'a, WgpuBuffer>) -> Input<'a> {
    Input { name, t, load: true, index: true }
}

/// An input the map's code reads itself (through `ld_in{k}` and `pos(k + 1, i)`).
pub(crate) fn raw_input<'a>(name: &'static str, t: TensorRef<'a, WgpuBuffer>) -> Input<'a> {
    Input { name, t, load: false, index: false }
}

/// What a map computes: `helpers` (WGSL functions), then in `value(i)` the statements `body`
/// and `return expr;`. `extra` parameters follow the geometry, from `p[EXTRA]` on.
/// `positional`: the code uses the logical index `i` or positions of its own (`pos`, raw
/// inputs), so it cannot run part by part on windows of its operands.
#[derive(Default)]
pub(crate) struct Code<'a> {
    pub helpers: &'a str,
    pub body: &'a str,
    pub expr: &'a str,
    pub extra: &'a [u32],
    pub positional: bool,
}

/// Geometry parameters: `[n, ndim, base, 0, shape[8], then per operand (output first):
/// offset, strides[8]]`, strides as two's-complement u32.
pub(crate) fn params(op: &'static str, out: &Layout, inputs: &[&Layout]) -> Result<Vec<u32>> {
    let nd = out.ndim();
    if nd > MAX_DIMS {
        return Err(err(op, format!("{nd} dimensions: the wgpu kernels take at most {MAX_DIMS}")));
    }
    let n = u32::try_from(out.numel()).map_err(|_| err(op, format!("{} elements: more than 2^32", out.numel())))?;
    let mut p = vec![n, nd as u32, out.offset() as u32, 0];
    p.extend((0..MAX_DIMS).map(|d| out.shape().get(d).map_or(1, |&s| s as u32)));
    for l in std::iter::once(out).chain(inputs.iter().copied()) {
        p.push(l.offset() as u32);
        p.extend((0..MAX_DIMS).map(|d| l.strides().get(d).map_or(0, |&s| s as i32 as u32)));
    }
    Ok(p)
}

/// Where the parameters after the geometry of `operands` operands start (see [`params`]).
pub(crate) fn extra_at(operands: usize) -> usize {
    12 + 9 * operands
}

/// WGSL `pos(k, i)`: the element of operand `k` (0 = output) at logical index `i`.
pub(crate) fn pos_fn(contiguous: bool) -> &'static str {
    if contiguous {
        return "fn pos(k: u32, i: u32) -> u32 {\n    return p[12u + k * 9u] + i;\n}\n";
    }
    "fn pos(k: u32, i: u32) -> u32 {
    var rem = i;
    var at = bitcast<i32>(p[12u + k * 9u]);
    for (var d = p[1]; d > 0u; d--) {
        let s = p[3u + d];
        at += bitcast<i32>(rem % s) * bitcast<i32>(p[12u + k * 9u + d]);
        rem = rem / s;
    }
    return bitcast<u32>(at);
}
"
}

/// [`map_code`] over operands larger than the device binds at once (2 GiB or less; 128 MiB on
/// lavapipe). The output is halved along the axis of its widest operand's longest reach in
/// memory, and again, until every operand's part lies in a window the device binds (starting
/// at a multiple of its offset alignment, ending on a whole 32 bytes, as the vector path
/// reads); each part then runs on windows of the buffers, its layouts rebased to them. Every
/// element is read and written by exactly one part, so the parts' order does not matter.
fn windowed(
    gpu: &Wgpu,
    op: &'static str,
    code: &Code<'_>,
    inputs: &[Input<'_>],
    out: TensorMut<'_, WgpuBuffer>,
) -> Result<()> {
    let types: Vec<DType> = std::iter::once(out.dtype).chain(inputs.iter().map(|i| i.t.dtype)).collect();
    let mut parts: Vec<Vec<Layout>> =
        vec![std::iter::once(out.layout).chain(inputs.iter().map(|i| i.t.layout)).cloned().collect()];
    while let Some(ls) = parts.pop() {
        let buffers = std::iter::once(&*out.buffer).chain(inputs.iter().map(|i| i.t.buffer));
        let wins = ls
            .iter()
            .zip(&types)
            .zip(buffers)
            .map(|((l, &t), b)| Part::of(gpu, l, t, b))
            .collect::<Result<Vec<_>>>()?;
        if wins.iter().all(|w| w.bytes() <= gpu.binding_cap) {
            let mut out_view = wins[0].view(out.buffer);
            let in_views: Vec<WgpuBuffer> = inputs.iter().zip(&wins[1..]).map(|(i, w)| w.view(i.t.buffer)).collect();
            let part_inputs: Vec<Input<'_>> = inputs
                .iter()
                .zip(&in_views)
                .zip(&wins[1..])
                .map(|((i, b), w)| Input { t: TensorRef::new(i.t.dtype, b, &w.layout), ..*i })
                .collect();
            map_code(gpu, op, code, &part_inputs, TensorMut::new(out.dtype, &mut out_view, &wins[0].layout))?;
            continue;
        }
        // Halve the axis along which the widest operand's part reaches furthest in memory (a
        // transposed operand is cut along its own outer axis, not the output's); an 8- or
        // 16-bit output only along its first long axis, so that its parts stay contiguous.
        let shape = ls[0].shape();
        let widest = (0..ls.len()).max_by_key(|&o| wins[o].bytes()).expect("an output");
        let Some(ax) = cut_axis(&ls[widest], wgsl::bits(out.dtype) < 32) else {
            return Err(err(op, format!("one element is wider than this device binds ({} bytes)", gpu.binding_cap)));
        };
        let half = shape[ax] / 2;
        for (a, b) in [(half, shape[ax]), (0, half)] {
            parts.push(ls.iter().map(|l| slice(l, ax, a, b)).collect::<Result<Vec<_>>>()?);
        }
    }
    Ok(())
}

/// The standard entry point header: `gid` is the global thread index, `group` the workgroup's.
pub(crate) const MAIN: &str = "@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let group = wg.y * nwg.x + wg.x;
    let gid = group * 256u + lid;
";

/// Runs `out = expr(inputs)` element by element. `expr` is WGSL over the inputs' names (each
/// loaded as its compute type) and yields the output's compute type.
pub(crate) fn map(
    gpu: &Wgpu,
    op: &'static str,
    expr: &str,
    inputs: &[Input<'_>],
    out: TensorMut<'_, WgpuBuffer>,
) -> Result<()> {
    map_code(gpu, op, &Code { expr, ..Code::default() }, inputs, out)
}

/// [`map`] with helper functions, statements and extra parameters.
pub(crate) fn map_code(
    gpu: &Wgpu,
    op: &'static str,
    code: &Code<'_>,
    inputs: &[Input<'_>],
    out: TensorMut<'_, WgpuBuffer>,
) -> Result<()> {
    let expr = code.expr;
    let mut types: Vec<DType> = inputs.iter().map(|i| i.t.dtype).collect();
    types.push(out.dtype);
    for i in inputs.iter().filter(|i| i.index) {
        wgsl::check_index_type(op, i.t.dtype)?;
    }
    let checked: Vec<DType> = inputs.iter().filter(|i| !i.index).map(|i| i.t.dtype).chain([out.dtype]).collect();
    wgsl::check_types_with(op, &checked, gpu.int64)?;
    let wide = checked.iter().any(|&t| wgsl::bits(t) == 64);
    let n = out.layout.numel();
    if n == 0 {
        return Ok(());
    }
    // Operands larger than the device binds at once: maps whose code sees values only, not
    // positions, run part by part on windows of them.
    let plain = !code.positional && code.extra.is_empty() && inputs.iter().all(|i| i.load);
    if plain
        && std::iter::once(&*out.buffer)
            .chain(inputs.iter().map(|i| i.t.buffer))
            .any(|b| b.bound_bytes() > gpu.binding_cap)
    {
        return windowed(gpu, op, code, inputs, out);
    }
    let narrow = wgsl::bits(out.dtype) < 32;
    if narrow && !out.layout.is_contiguous() {
        return Err(err(
            op,
            format!(
                "a {} output must be contiguous on wgpu (threads own whole 32-bit words); got strides {:?}",
                out.dtype,
                out.layout.strides()
            ),
        ));
    }
    let layouts: Vec<&Layout> = inputs.iter().map(|i| i.t.layout).collect();
    let contiguous = out.layout.is_contiguous() && layouts.iter().all(|l| l.is_contiguous());
    // Dense 16- and 32-bit operands whose offsets are whole blocks of a thread's elements: each
    // thread moves four or eight elements in 16-byte vectors.
    let lanes = packed_lanes(&types);
    let packed = contiguous
        && types.iter().all(|&t| matches!(wgsl::bits(t), 16 | 32))
        && inputs.iter().all(|i| i.load)
        && std::iter::once(out.layout).chain(layouts.iter().copied()).all(|l| l.offset() % lanes == 0);
    let shape = if packed {
        " packed"
    } else if contiguous {
        " c"
    } else {
        ""
    };
    let mut key = format!("map {op} {}{} {expr} -> {}{shape}", code.helpers, code.body, out.dtype);
    for i in inputs {
        key.push_str(&format!(" {}:{}{}", i.name, i.t.dtype, if i.load { "" } else { " raw" }));
    }
    let extra_at = extra_at(inputs.len() + 1);
    let kernel = gpu.kernel(&key, inputs.len(), 1, || {
        // Packed operands are bound as vectors of four elements.
        let array = if packed { "array<vec4<u32>>" } else { "array<u32>" };
        let mut s = String::from("@group(0) @binding(0) var<storage, read> p: array<u32>;\n");
        for (k, i) in inputs.iter().enumerate() {
            s += &format!("@group(0) @binding({}) var<storage, read> in{k}: {};\n", k + 1, array);
            if !packed {
                let var = format!("in{k}");
                s += &if i.index { wgsl::index_loader(&var, i.t.dtype) } else { wgsl::loader(&var, i.t.dtype) };
            }
        }
        s += &format!("@group(0) @binding({}) var<storage, read_write> out: {};\n", inputs.len() + 1, array);
        s += pos_fn(contiguous);
        s += &format!("const EXTRA: u32 = {extra_at}u;\n{}\n", code.helpers);
        if wide {
            s += wgsl::INT64_HELPERS;
        }
        // `compute(i, inputs...)`: the element at logical index `i` from its loaded inputs.
        let ct = |i: &Input<'_>| if i.index { Ct::of_index(i.t.dtype) } else { Ct::of(i.t.dtype) };
        let args: String =
            inputs.iter().filter(|i| i.load).map(|i| format!(", {}: {}", i.name, ct(i).name())).collect();
        s += &format!(
            "fn compute(i: u32{args}) -> {} {{\n{}    return {expr};\n}}\n",
            Ct::of(out.dtype).name(),
            code.body
        );
        if packed {
            return s + &packed_main(inputs, out.dtype, lanes);
        }
        s += &format!("fn value(i: u32) -> {} {{\n    return compute(i", Ct::of(out.dtype).name());
        for (k, _) in inputs.iter().enumerate().filter(|(_, i)| i.load) {
            s += &format!(", ld_in{k}(pos({}u, i))", k + 1);
        }
        s += ");\n}\n";
        s += "fn out_pos(i: u32) -> u32 {\n    return pos(0u, i);\n}\n";
        s += MAIN;
        s += "    let n = p[0];\n    let base = p[2];\n";
        s += &wgsl::store_loop(out.dtype);
        s += "}\n";
        s
    })?;
    let mut p = params(op, out.layout, &layouts)?;
    p.extend(code.extra);
    let threads = if packed {
        n.div_ceil(lanes)
    } else if narrow {
        let per = wgsl::per_word(out.dtype) as usize;
        let base = out.layout.offset();
        (base + n - 1) / per - base / per + 1
    } else {
        n
    };
    let reads: Vec<&WgpuBuffer> = inputs.iter().map(|i| i.t.buffer).collect();
    gpu.dispatch(op, &kernel, &p, &reads, &[out.buffer], (threads as u64).div_ceil(u64::from(WORKGROUP)))
}

/// Elements a thread of a packed map moves: eight when an operand is 16-bit (so that every
/// operand moves whole 16-byte vectors and a thread has as many bytes in flight as a 32-bit
/// copy's), four otherwise.
fn packed_lanes(types: &[DType]) -> usize {
    if types.iter().any(|&t| wgsl::bits(t) == 16) { 8 } else { 4 }
}

/// The entry point of a packed map: `lanes` elements per thread (see [`packed_lanes`]) through
/// `vec4<u32>` bindings, a 32-bit operand taking `lanes / 4` vectors and a 16-bit one (two to a
/// word) `lanes / 8`; the last, partial block is stored element by element (a 16-bit output's
/// half-filled last word keeps its other half).
fn packed_main(inputs: &[Input<'_>], out_t: DType, lanes: usize) -> String {
    let mut s = String::from(MAIN);
    s += &format!("    let n = p[0];\n    let i = gid * {lanes}u;\n    if i >= n {{ return; }}\n");
    // Vectors a thread moves, and elements in a vector, for an operand of type `t`.
    let vectors = |t: DType| lanes * wgsl::bits(t) as usize / 128;
    let per_vector = |t: DType| 128 / wgsl::bits(t) as usize;
    for (k, input) in inputs.iter().enumerate() {
        let t = input.t.dtype;
        for v in 0..vectors(t) {
            s += &format!(
                "    let w{k}_{v} = in{k}[p[{}] / {}u + gid * {}u + {v}u];\n",
                12 + 9 * (k + 1),
                per_vector(t),
                vectors(t)
            );
        }
    }
    // Element `lane`'s bits of operand `k`.
    let bits = |k: usize, t: DType, lane: usize| {
        if wgsl::bits(t) == 32 {
            format!("w{k}_{}[{}]", lane / 4, lane % 4)
        } else {
            format!("((w{k}_{}[{}] >> {}u) & 0xffffu)", lane / 8, (lane % 8) / 2, 16 * (lane % 2))
        }
    };
    let narrow = wgsl::bits(out_t) == 16;
    let out_vectors = vectors(out_t);
    for v in 0..out_vectors {
        s += &format!("    var r{v} = vec4<u32>(0u);\n");
    }
    for lane in 0..lanes {
        let args: String = inputs
            .iter()
            .enumerate()
            .map(|(k, i)| format!(", {}", wgsl::decode(&bits(k, i.t.dtype, lane), i.t.dtype)))
            .collect();
        let v = wgsl::encode(out_t, &format!("compute(i + {lane}u{args})"));
        s += &if narrow {
            format!("    r{}[{}] |= ({v} & 0xffffu) << {}u;\n", lane / 8, (lane % 8) / 2, 16 * (lane % 2))
        } else {
            format!("    r{}[{}] = {v};\n", lane / 4, lane % 4)
        };
    }
    s += &format!("    let o = p[12] / {}u + gid * {out_vectors}u;\n    if i + {lanes}u <= n {{\n", per_vector(out_t));
    for v in 0..out_vectors {
        s += &format!("        out[o + {v}u] = r{v};\n");
    }
    s += "        return;\n    }\n";
    // The partial block: 16-bit outputs word by word (one vector), 32-bit ones element by
    // element (one or two vectors).
    s += &if narrow {
        "    for (var w = 0u; i + 2u * w < n; w++) {
        if i + 2u * w + 1u < n {
            out[o][w] = r0[w];
        } else {
            out[o][w] = (out[o][w] & 0xffff0000u) | (r0[w] & 0xffffu);
        }
    }
}
"
        .to_owned()
    } else {
        let mut t = String::from("    for (var l = 0u; i + l < n; l++) {\n");
        for v in 0..out_vectors {
            t += &format!(
                "        if l / 4u == {v}u {{\n            out[o + {v}u][l % 4u] = r{v}[l % 4u];\n        }}\n"
            );
        }
        t + "    }\n}\n"
    };
    s
}

pub(crate) fn unary(
    gpu: &Wgpu,
    op: UnaryOp,
    x: TensorRef<'_, WgpuBuffer>,
    out: TensorMut<'_, WgpuBuffer>,
) -> Result<()> {
    validate_unary(op, &x, &out)?;
    map(gpu, op.name(), &wgsl::unary(op, x.dtype), &[input("v", x)], out)
}

pub(crate) fn binary(
    gpu: &Wgpu,
    op: BinaryOp,
    a: TensorRef<'_, WgpuBuffer>,
    b: TensorRef<'_, WgpuBuffer>,
    out: TensorMut<'_, WgpuBuffer>,
) -> Result<()> {
    validate_binary(op, &a, &b, &out)?;
    map(gpu, op.name(), &wgsl::binary(op, a.dtype), &[input("a", a), input("b", b)], out)
}

pub(crate) fn select(
    gpu: &Wgpu,
    cond: TensorRef<'_, WgpuBuffer>,
    a: TensorRef<'_, WgpuBuffer>,
    b: TensorRef<'_, WgpuBuffer>,
    out: TensorMut<'_, WgpuBuffer>,
) -> Result<()> {
    validate_select(&cond, &a, &b, &out)?;
    map(gpu, "where", "select(b, a, c)", &[input("c", cond), input("a", a), input("b", b)], out)
}

pub(crate) fn copy(gpu: &Wgpu, x: TensorRef<'_, WgpuBuffer>, out: TensorMut<'_, WgpuBuffer>) -> Result<()> {
    if x.dtype != out.dtype {
        return Err(Error::InvalidArgument {
            op: "copy",
            message: format!("{} into {}: use cast", x.dtype, out.dtype),
        });
    }
    cast(gpu, x, out)
}

pub(crate) fn cast(gpu: &Wgpu, x: TensorRef<'_, WgpuBuffer>, out: TensorMut<'_, WgpuBuffer>) -> Result<()> {
    const OP: &str = "cast";
    validate_elementwise(OP, &[x.layout], out.layout)?;
    x.check(OP, "the input")?;
    out.check(OP, "the output")?;
    // (Before the expression is built: it takes the widths of types the kernels have.)
    wgsl::check_types_with(OP, &[x.dtype, out.dtype], gpu.int64)?;
    map(gpu, OP, &wgsl::cast(x.dtype, out.dtype), &[input("x", x)], out)
}

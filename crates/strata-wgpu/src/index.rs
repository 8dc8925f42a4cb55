//! Indexing along one axis (`take_along_axis`, `scatter_add`), Threefry random bits and fused
//! element-wise programs. Index values are checked on the device before anything is written:
//! a bad one costs a synchronisation and comes back as an `Err` naming it.

use strata_core::kernel::{
    Backend, Fused, FusedOp, Layout, TensorMut, TensorRef, validate_elementwise, validate_gather, validate_random_bits,
    validate_scatter_add,
};
use strata_core::{DType, Result};

use crate::elementwise::{Code, MAIN, extra_at, index_input, input, map_code, params, pos_fn, raw_input};
use crate::wgsl::{self, Ct};
use crate::{WORKGROUP, Wgpu, WgpuBuffer, err};

/// `l` with its stride along `axis` set to zero (the index supplies that coordinate).
fn without_axis(l: &Layout, shape: &[usize], axis: usize) -> Result<Layout> {
    let mut strides = l.strides().to_vec();
    strides[axis] = 0;
    Layout::new(shape, &strides, l.offset())
}

/// WGSL statements turning the loaded index `idx` into `v: i32` in `0..size` (negative
/// indices count from the end; `size` is `p[EXTRA + 1]`).
fn wrap(ti: DType) -> &'static str {
    if Ct::of_index(ti) == Ct::I32 {
        "    var v = idx;\n    if v < 0 { v = v + bitcast<i32>(p[EXTRA + 1u]); }\n"
    } else {
        "    let v = bitcast<i32>(idx);\n"
    }
}

/// Errors naming the first out-of-range index, if any (synchronises).
fn check_indices(gpu: &Wgpu, op: &'static str, idx: &TensorRef<'_, WgpuBuffer>, size: usize) -> Result<()> {
    let n = idx.layout.numel();
    if n == 0 {
        return Ok(());
    }
    let contiguous = idx.layout.is_contiguous();
    let key = format!("check indices {} {contiguous}", idx.dtype);
    let kernel = gpu.kernel(&key, 1, 1, || {
        let mut s = String::from(
            "@group(0) @binding(0) var<storage, read> p: array<u32>;
@group(0) @binding(1) var<storage, read> idx: array<u32>;
@group(0) @binding(2) var<storage, read_write> bad: array<atomic<u32>>;
",
        );
        s += &wgsl::index_loader("idx", idx.dtype);
        s += pos_fn(contiguous);
        s += MAIN;
        s += &format!(
            "    if gid >= p[0] {{ return; }}\n    let v = ld_idx(pos(0u, gid));\n    let size = p[{}];\n",
            extra_at(1)
        );
        s += if Ct::of_index(idx.dtype) == Ct::I32 {
            "    if v < -bitcast<i32>(size) || v >= bitcast<i32>(size) { atomicMin(&bad[0], gid); }\n}\n"
        } else {
            "    if v >= size { atomicMin(&bad[0], gid); }\n}\n"
        };
        s
    })?;
    let mut p = params(op, idx.layout, &[])?;
    p.push(size as u32);
    let bad = gpu.upload(&u32::MAX.to_le_bytes())?;
    gpu.dispatch(op, &kernel, &p, &[idx.buffer], &[&bad], (n as u64).div_ceil(u64::from(WORKGROUP)))?;
    let mut word = [0u8; 4];
    gpu.download(&bad, &mut word)?;
    let first = u32::from_le_bytes(word);
    if first == u32::MAX {
        return Ok(());
    }
    // Read the offending value back to name it.
    let shape = idx.layout.shape();
    let mut at = vec![0usize; shape.len()];
    let mut rem = first as usize;
    for d in (0..shape.len()).rev() {
        at[d] = rem % shape[d];
        rem /= shape[d];
    }
    let pos = idx.layout.position(&at) as usize;
    let w = idx.dtype.bits() as usize / 8;
    let mut raw = vec![0u8; (pos + 1) * w];
    gpu.download(idx.buffer, &mut raw)?;
    let v = &raw[pos * w..];
    let value = match idx.dtype {
        DType::I32 => i64::from(i32::from_le_bytes(v.try_into().unwrap_or_default())),
        DType::U32 => i64::from(u32::from_le_bytes(v.try_into().unwrap_or_default())),
        _ => i64::from_le_bytes(v.try_into().unwrap_or_default()),
    };
    Err(err(op, format!("index {value} is out of range for an axis of size {size}")))
}

pub(crate) fn gather(
    gpu: &Wgpu,
    axis: usize,
    x: TensorRef<'_, WgpuBuffer>,
    idx: TensorRef<'_, WgpuBuffer>,
    out: TensorMut<'_, WgpuBuffer>,
) -> Result<()> {
    const OP: &str = "take_along_axis";
    validate_gather(axis, &x, &idx, &out)?;
    wgsl::check_types(OP, &[x.dtype])?;
    wgsl::check_index_type(OP, idx.dtype)?;
    let size = x.layout.shape()[axis];
    check_indices(gpu, OP, &idx, size)?;
    let xl = without_axis(x.layout, idx.layout.shape(), axis)?;
    let body = format!(
        "{}    let at = bitcast<u32>(bitcast<i32>(pos(2u, i)) + v * bitcast<i32>(p[EXTRA]));\n",
        wrap(idx.dtype)
    );
    let extra = [x.layout.strides()[axis] as i32 as u32, size as u32];
    let code = Code { body: &body, expr: "ld_in1(at)", extra: &extra, positional: true, ..Code::default() };
    map_code(gpu, OP, &code, &[index_input("idx", idx), raw_input("x", TensorRef::new(x.dtype, x.buffer, &xl))], out)
}

pub(crate) fn scatter_add(
    gpu: &Wgpu,
    axis: usize,
    idx: TensorRef<'_, WgpuBuffer>,
    updates: TensorRef<'_, WgpuBuffer>,
    out: TensorMut<'_, WgpuBuffer>,
) -> Result<()> {
    const OP: &str = "scatter_add";
    validate_scatter_add(axis, &idx, &updates, &out)?;
    wgsl::check_types(OP, &[out.dtype])?;
    wgsl::check_index_type(OP, idx.dtype)?;
    let n = updates.layout.numel();
    let size = out.layout.shape()[axis];
    check_indices(gpu, OP, &idx, size)?;
    if n == 0 {
        return Ok(());
    }
    let ol = without_axis(out.layout, idx.layout.shape(), axis)?;
    let contiguous = updates.layout.is_contiguous() && idx.layout.is_contiguous();
    let key = format!("scatter_add {} {} {contiguous}", out.dtype, idx.dtype);
    let kernel = gpu.kernel(&key, 2, 1, || {
        let mut s = String::from(
            "@group(0) @binding(0) var<storage, read> p: array<u32>;
@group(0) @binding(1) var<storage, read> in0: array<u32>;
@group(0) @binding(2) var<storage, read> in1: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<atomic<u32>>;
",
        );
        s += &format!("const EXTRA: u32 = {}u;\n", extra_at(3));
        s += &wgsl::index_loader("in0", idx.dtype);
        s += &wgsl::loader("in1", out.dtype);
        // Operand 0 (the one the iteration runs over) is the updates, then the indices, then
        // the output without the indexed axis. A contiguous updates/indices pair does not make
        // the output contiguous, so positions are always walked.
        s += pos_fn(false);
        s += MAIN;
        s += "    let i = gid;\n    if i >= p[0] { return; }\n    let idx = ld_in0(pos(1u, i));\n";
        s += wrap(idx.dtype);
        s += "    let at = bitcast<u32>(bitcast<i32>(pos(2u, i)) + v * bitcast<i32>(p[EXTRA]));\n";
        s += "    let u = ld_in1(pos(0u, i));\n";
        s += if out.dtype == DType::F32 {
            // Float atomics are a compare-and-swap loop on the bits.
            "    loop {
        let old = atomicLoad(&out[at]);
        let sum = bitcast<u32>(bitcast<f32>(old) + u);
        if atomicCompareExchangeWeak(&out[at], old, sum).exchanged { break; }
    }
}
"
        } else {
            "    atomicAdd(&out[at], bitcast<u32>(u));\n}\n"
        };
        s
    })?;
    let mut p = params(OP, updates.layout, &[idx.layout, &ol])?;
    p.extend([out.layout.strides()[axis] as i32 as u32, size as u32]);
    let groups = (n as u64).div_ceil(u64::from(WORKGROUP));
    gpu.dispatch(OP, &kernel, &p, &[idx.buffer, updates.buffer], &[out.buffer], groups)
}

const THREEFRY: &str = "
fn rotl(x: u32, r: u32) -> u32 {
    return (x << r) | (x >> (32u - r));
}

// Threefry-2x32 with 20 rounds (the CPU backend's `threefry2x32`, MLX's and JAX's generator).
fn threefry(k0: u32, k1: u32, c0: u32, c1: u32) -> vec2<u32> {
    var ks = array<u32, 3>(k0, k1, k0 ^ k1 ^ 0x1BD11BDAu);
    var rot = array<u32, 8>(13u, 15u, 26u, 6u, 17u, 29u, 16u, 24u);
    var x = c0 + ks[0];
    var y = c1 + ks[1];
    for (var i = 0u; i < 5u; i++) {
        for (var r = 0u; r < 4u; r++) {
            x += y;
            y = rotl(y, rot[(i % 2u) * 4u + r]) ^ x;
        }
        x += ks[(i + 1u) % 3u];
        y += ks[(i + 2u) % 3u] + i + 1u;
    }
    return vec2<u32>(x, y);
}
";

pub(crate) fn random_bits(gpu: &Wgpu, keys: TensorRef<'_, WgpuBuffer>, out: TensorMut<'_, WgpuBuffer>) -> Result<()> {
    const OP: &str = "random_bits";
    validate_random_bits(&keys, &out)?;
    let (count, n) = (out.layout.shape()[0], out.layout.shape()[1]);
    let work = count * n.div_ceil(2);
    if work == 0 {
        return Ok(());
    }
    let kernel = gpu.kernel("random_bits", 1, 1, || {
        let mut s = String::from(
            "@group(0) @binding(0) var<storage, read> p: array<u32>;
@group(0) @binding(1) var<storage, read> keys: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
",
        );
        s += THREEFRY;
        s += MAIN;
        // p: [count, n, key_stride0, key_stride1, key_offset, out_offset]
        s += "    let n = p[1];
    let half = n / 2u;
    let odd = n % 2u;
    let per_key = half + odd;
    if gid >= p[0] * per_key { return; }
    let k = gid / per_key;
    let j = gid % per_key;
    let kb = bitcast<i32>(p[4]) + bitcast<i32>(k) * bitcast<i32>(p[2]);
    let k0 = keys[bitcast<u32>(kb)];
    let k1 = keys[bitcast<u32>(kb + bitcast<i32>(p[3]))];
    let row = p[5] + k * n;
    if j < half {
        let r = threefry(k0, k1, j, j + half + odd);
        out[row + j] = r.x;
        out[row + j + half + odd] = r.y;
    } else {
        out[row + half] = threefry(k0, k1, half, 0u).x;
    }
}
";
        s
    })?;
    let s = keys.layout.strides();
    let p = [
        count as u32,
        n as u32,
        s[0] as i32 as u32,
        s[1] as i32 as u32,
        keys.layout.offset() as u32,
        out.layout.offset() as u32,
    ];
    gpu.dispatch(OP, &kernel, &p, &[keys.buffer], &[out.buffer], (work as u64).div_ceil(u64::from(WORKGROUP)))
}

pub(crate) fn fused(
    gpu: &Wgpu,
    program: &Fused,
    inputs: &[TensorRef<'_, WgpuBuffer>],
    out: TensorMut<'_, WgpuBuffer>,
) -> Result<()> {
    const OP: &str = "fused";
    let described: Vec<(&Layout, DType)> = inputs.iter().map(|x| (x.layout, x.dtype)).collect();
    program.validate(&described, (out.layout, out.dtype))?;
    wgsl::check_types(OP, &[program.dtype])?;
    let most = gpu.max_inputs();
    if inputs.len() > most {
        return Err(err(OP, format!("{} inputs: a fused kernel takes at most {most} on this adapter", inputs.len())));
    }
    validate_elementwise(OP, &described.iter().map(|d| d.0).collect::<Vec<_>>(), out.layout)?;
    for (i, x) in inputs.iter().enumerate() {
        x.check(OP, &format!("input {i}"))?;
    }
    out.check(OP, "the output")?;
    const NAMES: [&str; 16] =
        ["x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14", "x15"];
    if inputs.len() > NAMES.len() {
        return Err(err(OP, format!("{} inputs: a fused kernel takes at most {}", inputs.len(), NAMES.len())));
    }
    let (mut helpers, mut body) = (String::new(), String::new());
    for (i, op) in program.ops.iter().enumerate() {
        let line = match *op {
            FusedOp::Input(k) => NAMES[k].to_owned(),
            FusedOp::Unary(u, a) => {
                helpers +=
                    &format!("fn step{i}(v: f32) -> f32 {{\n    return {};\n}}\n", wgsl::unary(u, program.dtype));
                format!("step{i}(s{a})")
            }
            FusedOp::Binary(b, x, y) => {
                helpers += &format!(
                    "fn step{i}(a: f32, b: f32) -> f32 {{\n    return {};\n}}\n",
                    wgsl::binary(b, program.dtype)
                );
                format!("step{i}(s{x}, s{y})")
            }
        };
        body += &format!("    let s{i} = {line};\n");
    }
    let expr = format!("s{}", program.ops.len() - 1);
    let named: Vec<_> = inputs.iter().enumerate().map(|(k, x)| input(NAMES[k], *x)).collect();
    map_code(gpu, OP, &Code { helpers: &helpers, body: &body, expr: &expr, ..Code::default() }, &named, out)
}

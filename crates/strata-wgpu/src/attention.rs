//! Scaled dot-product attention, `softmax(q·kᵀ·scale + mask)·v`, as an online ("flash")
//! softmax in WGSL: the general kernel, for f32 and the 16-bit floats (accumulating in f32),
//! heads up to 256 wide, any strides, grouped key/value heads and every mask.
//!
//! A workgroup of 64 threads owns one query row, staged in workgroup memory. The keys go by
//! in chunks of 64, one a thread: each thread takes the whole dot product of its key with the
//! row; the chunk's maximum and sum are reduced in workgroup memory; then each thread adds the
//! chunk's probabilities times `v` into its own columns of the output (`t + 64·c`, `c < 4`).
//! Portable by construction: no subgroups, no cooperative matrices.

use strata_core::kernel::{Attention, AttentionDims, AttentionMask, Backend, Layout, TensorMut, TensorRef};
use strata_core::{DType, Error, Result};

use crate::elementwise::{input, map};
use crate::parts::{Part, bind_input, input_bytes, slice};
use crate::{Wgpu, WgpuBuffer};
use crate::{err, wgsl};

const OP: &str = "attention";
const MAX_D: usize = 256;

/// Offset, then the four strides.
fn place(l: &Layout) -> [u32; 5] {
    let s = l.strides();
    [l.offset() as u32, s[0] as i32 as u32, s[1] as i32 as u32, s[2] as i32 as u32, s[3] as i32 as u32]
}

/// The kernel for operands of type `t`, a mask of type `mask` (if any), writing f32 results
/// (`direct`: into the output itself, else into a contiguous scratch).
fn source(t: DType, mask: Option<DType>) -> String {
    let mut s = String::from(
        "@group(0) @binding(0) var<storage, read> p: array<u32>;
@group(0) @binding(1) var<storage, read> q: array<u32>;
@group(0) @binding(2) var<storage, read> k: array<u32>;
@group(0) @binding(3) var<storage, read> v: array<u32>;
",
    );
    let out_binding = if mask.is_some() { 5 } else { 4 };
    if mask.is_some() {
        s += "@group(0) @binding(4) var<storage, read> m: array<u32>;\n";
    }
    s += &format!("@group(0) @binding({out_binding}) var<storage, read_write> out: array<u32>;\n");
    for x in ["q", "k", "v"] {
        s += &wgsl::loader(x, t);
    }
    if let Some(mt) = mask {
        s += &wgsl::loader("m", mt);
    }
    // The additive term of a mask entry: a bool removes the entry, a float is added.
    let masked = match mask {
        None => String::new(),
        Some(DType::Bool) => "                if !ld_m(at(29u, b, h, i, j)) { s = -inf(); }\n".into(),
        Some(_) => "                s += ld_m(at(29u, b, h, i, j));\n".into(),
    };
    // p: [batch, hq, lq, d, hkv, lk, dv, causal, scale (f32 bits)], then offset and strides of
    // q (9), k (14), v (19), out (24), mask (29); then the causal diagonal (34: row i sees keys
    // j <= i + p[34], lk - lq for a whole problem).
    s += &format!(
        "var<workgroup> qs: array<f32, {MAX_D}>;
var<workgroup> ps: array<f32, 64>;
var<workgroup> red: array<f32, 64>;

fn at(o: u32, b: u32, h: u32, r: u32, c: u32) -> u32 {{
    return bitcast<u32>(bitcast<i32>(p[o]) + bitcast<i32>(b) * bitcast<i32>(p[o + 1u])
        + bitcast<i32>(h) * bitcast<i32>(p[o + 2u]) + bitcast<i32>(r) * bitcast<i32>(p[o + 3u])
        + bitcast<i32>(c) * bitcast<i32>(p[o + 4u]));
}}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {{
    let batch = p[0];
    let hq = p[1];
    let lq = p[2];
    let d = p[3];
    let hkv = p[4];
    let lk = p[5];
    let dv = p[6];
    let scale = bitcast<f32>(p[8]);
    let row = wg.y * nwg.x + wg.x;
    if row >= batch * hq * lq {{ return; }}
    let i = row % lq;
    let h = (row / lq) % hq;
    let b = row / (lq * hq);
    let hk = h / (hq / hkv);
    for (var x = t; x < d; x += 64u) {{
        qs[x] = ld_q(at(9u, b, h, i, x));
    }}
    workgroupBarrier();
    // Bottom-right alignment: query i sees keys j <= i + (lk - lq).
    var key_end = lk;
    // (A part of the rows gets the whole problem's diagonal in p[34].)
    if p[7] == 1u {{
        key_end = u32(clamp(i32(i) + bitcast<i32>(p[34]) + 1, 0, i32(lk)));
    }}
    var mx = -inf();
    var l = 0.0;
    var o = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var j0 = 0u; j0 < key_end; j0 += 64u) {{
        let j = j0 + t;
        var s = -inf();
        if j < key_end {{
            var acc = 0.0;
            for (var x = 0u; x < d; x++) {{
                acc += qs[x] * ld_k(at(14u, b, hk, j, x));
            }}
            s = acc * scale;
{masked}        }}
        red[t] = s;
        workgroupBarrier();
        for (var off = 32u; off > 0u; off >>= 1u) {{
            if t < off {{
                red[t] = max(red[t], red[t + off]);
            }}
            workgroupBarrier();
        }}
        let m_new = max(mx, red[0]);
        workgroupBarrier();
        // Nothing visible yet (m_new = -inf) leaves every probability and the sum at zero.
        let dead = m_new == -inf();
        let pr = select(exp(s - m_new), 0.0, dead || s == -inf());
        let alpha = select(exp(mx - m_new), 0.0, dead || mx == -inf());
        ps[t] = pr;
        red[t] = pr;
        workgroupBarrier();
        for (var off = 32u; off > 0u; off >>= 1u) {{
            if t < off {{
                red[t] += red[t + off];
            }}
            workgroupBarrier();
        }}
        l = l * alpha + red[0];
        let keys = min(64u, key_end - j0);
        for (var c = 0u; c < 4u; c++) {{
            o[c] *= alpha;
            let x = t + 64u * c;
            if x < dv {{
                for (var jj = 0u; jj < keys; jj++) {{
                    let pj = ps[jj];
                    if pj != 0.0 {{
                        o[c] += pj * ld_v(at(19u, b, hk, j0 + jj, x));
                    }}
                }}
            }}
        }}
        mx = m_new;
        workgroupBarrier();
    }}
    // A row that sees no key gets zeros.
    let inv = select(1.0 / l, 0.0, l == 0.0);
    for (var c = 0u; c < 4u; c++) {{
        let x = t + 64u * c;
        if x < dv {{
            out[at(24u, b, h, i, x)] = bitcast<u32>(o[c] * inv);
        }}
    }}
}}
"
    );
    s
}

pub(crate) fn attention(
    gpu: &Wgpu,
    desc: &Attention,
    q: TensorRef<'_, WgpuBuffer>,
    k: TensorRef<'_, WgpuBuffer>,
    v: TensorRef<'_, WgpuBuffer>,
    mask: Option<TensorRef<'_, WgpuBuffer>>,
    out: TensorMut<'_, WgpuBuffer>,
) -> Result<()> {
    let AttentionDims { batch, q_heads: hq, q_len: lq, d, k_len: lk, dv, .. } =
        desc.validate_call(&q, &k, &v, mask.as_ref(), &out)?;
    wgsl::check_types(OP, &[q.dtype])?;
    if d > MAX_D || dv > MAX_D {
        return Err(Error::NotImplemented { op: "attention with heads wider than 256", backend: gpu.name() });
    }
    if batch * hq * lq == 0 || dv == 0 {
        return Ok(());
    }
    // Query i sees keys j <= i + shift (bottom-right alignment).
    let shift = lk as i64 - lq as i64;
    let cap = gpu.binding_cap;
    let scratch = if out.dtype == DType::F32 { 0 } else { 4 * out.layout.numel() as u64 };
    let mut buffers = vec![q.buffer, k.buffer, v.buffer, &*out.buffer];
    buffers.extend(mask.as_ref().map(|m| m.buffer));
    if buffers.iter().all(|b| b.bound_bytes() <= cap) && scratch <= cap {
        return launch(gpu, desc, shift, [q, k, v], mask, out);
    }
    windowed(gpu, desc, shift, [q, k, v], mask, out)
}

/// Attention whose operands the device cannot bind whole: parts halved along the batch, then
/// the heads (query heads with their group's key/value heads), then the query rows (a causal
/// part keeping the whole problem's diagonal). Each input of a part is bound as
/// the window its elements lie in, or, where that window is too wide (heads stored interleaved
/// reach across the others' columns), copied densely first; the output is written through an
/// f32 scratch where its window is too wide. Keys are never split (a row's softmax needs all of
/// them), so one head's keys and values must fit.
fn windowed(
    gpu: &Wgpu,
    desc: &Attention,
    shift: i64,
    [q, k, v]: [TensorRef<'_, WgpuBuffer>; 3],
    mask: Option<TensorRef<'_, WgpuBuffer>>,
    out: TensorMut<'_, WgpuBuffer>,
) -> Result<()> {
    let cap = gpu.binding_cap;
    let t = q.dtype;
    let mt = mask.as_ref().map(|m| m.dtype);
    let out_buf = out.buffer;
    // The output (3) is measured apart: it is written.
    let buffers = [Some(q.buffer), Some(k.buffer), Some(v.buffer), None, mask.as_ref().map(|m| m.buffer)];
    let types = [t, t, t, t, mt.unwrap_or(t)];
    let whole = [Some(q.layout), Some(k.layout), Some(v.layout), Some(out.layout), mask.as_ref().map(|m| m.layout)];
    let mut parts: Vec<([Option<Layout>; 5], i64)> = vec![(whole.map(|l| l.cloned()), shift)];
    while let Some((ls, shift)) = parts.pop() {
        let o = ls[3].as_ref().expect("an output");
        let o_win = Part::of(gpu, o, t, out_buf)?;
        let out_fits = if t == DType::F32 && o_win.bytes() <= cap { true } else { 4 * o.numel() as u64 <= cap };
        // Bytes q, k, v and the mask take bound.
        let mut sizes = [0u64; 4];
        for (j, i) in [0, 1, 2, 4].into_iter().enumerate() {
            if let (Some(l), Some(b)) = (&ls[i], buffers[i]) {
                sizes[j] = input_bytes(gpu, l, types[i], b)?;
            }
        }
        if out_fits && sizes.iter().all(|&b| b <= cap) {
            launch_part(gpu, desc, shift, &ls, &buffers, (t, mt), (o_win, out_buf))?;
            continue;
        }
        let shape = |i: usize| ls[i].as_ref().expect("an operand").shape().to_vec();
        let (qs, ks) = (shape(0), shape(1));
        let (batch, hq, lq, hkv, lk) = (qs[0], qs[1], qs[2], ks[1], ks[2]);
        // Operand i of each half cut along `ax` to `ranges[i]` (the mask's axes are batch,
        // heads, rows and keys; the others' batch, heads, rows and columns).
        let cut = |ax: usize, ranges: [(usize, usize); 5]| -> Result<[Option<Layout>; 5]> {
            let mut next = ls.clone();
            for (i, (a, b)) in ranges.into_iter().enumerate() {
                next[i] = ls[i].as_ref().map(|l| slice(l, ax, a, b)).transpose()?;
            }
            Ok(next)
        };
        if batch > 1 || hq > 1 {
            let (ax, len, kv_len, half, kv_half) = if batch > 1 {
                (0, batch, batch, batch / 2, batch / 2)
            } else if hkv > 1 {
                // Whole groups: the query heads of the first half of the key/value heads.
                let g = hq / hkv;
                (1, hq, hkv, hkv / 2 * g, hkv / 2)
            } else {
                // One key/value head serves every query head: it stays whole.
                (1, hq, 1, hq / 2, 1)
            };
            let kv = |first: bool| match (kv_len, first) {
                (1, _) => (0, 1),
                (_, true) => (0, kv_half),
                (_, false) => (kv_half, kv_len),
            };
            for ((a, b), (ka, kb)) in [((half, len), kv(false)), ((0, half), kv(true))] {
                parts.push((cut(ax, [(a, b), (ka, kb), (ka, kb), (a, b), (a, b)])?, shift));
            }
        } else if lq > 1 && sizes[1] <= cap && sizes[2] <= cap {
            // Halves of the rows; a causal part keeps the whole problem's diagonal. (Its keys
            // are not cut: the last part's last row sees all of them.)
            let half = lq / 2;
            for (a, b) in [(half, lq), (0, half)] {
                parts.push((cut(2, [(a, b), (0, lk), (0, lk), (a, b), (a, b)])?, shift + a as i64));
            }
        } else {
            let what = if lq > 1 { "one head's keys or values" } else { "one query row's operands" };
            return Err(err(OP, format!("{what} are more than this device binds at once ({cap} bytes)")));
        }
    }
    Ok(())
}

/// Runs one part of [`windowed`] whose operands all fit: inputs as [`bind_input`] binds them;
/// the output as its window, or through the whole buffer (which [`launch`] then writes through
/// a scratch) where the window is too wide.
fn launch_part(
    gpu: &Wgpu,
    desc: &Attention,
    shift: i64,
    ls: &[Option<Layout>; 5],
    buffers: &[Option<&WgpuBuffer>; 5],
    (t, mt): (DType, Option<DType>),
    (o_win, out): (Part, &mut WgpuBuffer),
) -> Result<()> {
    let ty = |i: usize| if i == 4 { mt.expect("a mask type") } else { t };
    let mut held: Vec<(WgpuBuffer, Layout)> = Vec::new();
    for i in [0, 1, 2, 4] {
        if let (Some(l), Some(b)) = (&ls[i], buffers[i]) {
            held.push(bind_input(gpu, l, ty(i), b)?);
        }
    }
    let r = |j: usize, t: DType| TensorRef::new(t, &held[j].0, &held[j].1);
    let mask = ls[4].as_ref().map(|_| r(3, ty(4)));
    let qkv = [r(0, t), r(1, t), r(2, t)];
    if o_win.bytes() <= gpu.binding_cap {
        let mut view = o_win.view(out);
        return launch(gpu, desc, shift, qkv, mask, TensorMut::new(t, &mut view, &o_win.layout));
    }
    launch(gpu, desc, shift, qkv, mask, TensorMut::new(t, out, ls[3].as_ref().expect("an output")))
}

/// One dispatch of the kernel over operands it can bind whole, laid out `[batch, heads, rows,
/// columns]` (the mask `[batch, heads, rows, keys]`), causal rows seeing keys `j <= i + shift`.
fn launch(
    gpu: &Wgpu,
    desc: &Attention,
    shift: i64,
    [q, k, v]: [TensorRef<'_, WgpuBuffer>; 3],
    mask: Option<TensorRef<'_, WgpuBuffer>>,
    out: TensorMut<'_, WgpuBuffer>,
) -> Result<()> {
    let (qs, ks) = (q.layout.shape(), k.layout.shape());
    let (batch, hq, lq, d, hkv, lk, dv) = (qs[0], qs[1], qs[2], qs[3], ks[1], ks[2], v.layout.shape()[3]);
    let rows = batch * hq * lq;
    // 32-bit results go straight to the output; 16-bit ones through an f32 scratch, as a
    // thread owns whole words of its output (and 32-bit ones whose output cannot be bound).
    let direct = out.dtype == DType::F32 && out.buffer.bound_bytes() <= gpu.binding_cap;
    let scratch_layout = Layout::contiguous(out.layout.shape());
    let dest = if direct { out.layout } else { &scratch_layout };
    let mut p: Vec<u32> = vec![
        batch as u32,
        hq as u32,
        lq as u32,
        d as u32,
        hkv as u32,
        lk as u32,
        dv as u32,
        u32::from(desc.mask == AttentionMask::Causal),
        desc.scale.to_bits(),
    ];
    for l in [q.layout, k.layout, v.layout, dest] {
        p.extend(place(l));
    }
    p.extend(mask.as_ref().map_or([0; 5], |m| place(m.layout)));
    p.push(shift as i32 as u32);
    let mask_t = mask.as_ref().map(|m| m.dtype);
    let mut reads = vec![q.buffer, k.buffer, v.buffer];
    reads.extend(mask.as_ref().map(|m| m.buffer));
    let kernel =
        gpu.kernel(&format!("attention {} {mask_t:?}", q.dtype), reads.len(), 1, || source(q.dtype, mask_t))?;
    if direct {
        return gpu.dispatch(OP, &kernel, &p, &reads, &[out.buffer], rows as u64);
    }
    let scratch = gpu.take(out.layout.numel() * 4)?;
    gpu.dispatch(OP, &kernel, &p, &reads, &[&scratch], rows as u64)?;
    drop(reads);
    map(gpu, OP, "x", &[input("x", TensorRef::new(DType::F32, &scratch, &scratch_layout))], out)
}

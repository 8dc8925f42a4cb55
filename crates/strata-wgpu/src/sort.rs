//! `argsort` in WGSL: a bitonic sort of (key, position) pairs, stable, NaNs last.
//!
//! Each element becomes a 32-bit key whose unsigned order is the values' order (floats by value,
//! every NaN last, -0.0 equal to 0.0; integers by value; every type here is at most 32 bits
//! wide). Comparing pairs as (key, position) makes the bitonic network, not stable by itself,
//! give exactly NumPy's `kind="stable"` order; padding to a power of two sorts after everything,
//! NaNs included, by its positions.
//!
//! A lane that fits in workgroup memory (up to 4096 elements, where the adapter has 32 KiB) is
//! sorted by one workgroup. A longer one is cut into blocks of that size: each block is sorted
//! in workgroup memory (alternating directions, as the network's first stages would), then each
//! later stage of the network runs its long strides as passes over the lane in a scratch buffer
//! (a thread per compared pair) and its strides shorter than a block in workgroup memory again,
//! block by block. Lanes are limited by what one binding holds (8 bytes an element).

use strata_core::kernel::{Backend, Layout, TensorMut, TensorRef, dense_copy, validate_argsort};
use strata_core::{DType, Error, Result};

use crate::elementwise::MAIN;
use crate::wgsl::{self, Ct};
use crate::{Wgpu, WgpuBuffer};

const OP: &str = "argsort";
/// Threads of a block-sorting workgroup: each takes block elements `t`, `t + THREADS`, ...
const THREADS: u32 = 256;

/// Elements a workgroup sorts: a power of two that fits the device's workgroup memory at 8
/// bytes an element, at most 4096.
fn block_len(gpu: &Wgpu) -> usize {
    let fits = gpu.limits().max_compute_workgroup_storage_size as usize / 8;
    if fits == 0 { 0 } else { (1usize << fits.ilog2()).min(4096) }
}

/// The kernel that sorts blocks in workgroup memory (parameters below).
fn block_source(t: DType, block: usize) -> String {
    let key = match Ct::of(t) {
        // The bits of -0.0 become those of +0.0; a NaN (any payload) the largest key.
        Ct::F32 => {
            "let f = ld_x(e);
    var b = bitcast<u32>(f);
    if b == 0x80000000u { b = 0u; }
    if is_nan(f) { return 0xffffffffu; }
    return select(b | 0x80000000u, ~b, (b >> 31u) != 0u);"
        }
        Ct::I32 => "return bitcast<u32>(ld_x(e)) ^ 0x80000000u;",
        Ct::Bool => "return select(0u, 1u, ld_x(e));",
        Ct::U32 => "return ld_x(e);",
        Ct::I64 | Ct::U64 => unreachable!("`sort` refuses 64-bit keys before building a kernel (check_types)"),
    };
    let mut s = String::from(
        "@group(0) @binding(0) var<storage, read> p: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> sk: array<u32>;
@group(0) @binding(3) var<storage, read_write> sp: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<u32>;
",
    );
    s += &wgsl::loader("x", t);
    s += &format!(
        "var<workgroup> keys: array<u32, {block}>;
var<workgroup> pos: array<u32, {block}>;

fn key(e: u32) -> u32 {{
    {key}
}}

// p: [lanes, len, inner, pow2, blocks a lane, first stage, last stage, from x, to out, span].
// x and out are dense: lane l = (outer, in) holds elements (outer·len + j)·inner + in. The
// scratch pairs (sk, sp) hold lane l's element j at l·pow2 + j. A workgroup takes `span`
// elements of one lane (a block), loads them (from x, or from the scratch), runs stages
// `first..=last` of the network on them (strides shorter than the block only), and stores them
// (to the scratch, or their positions to out).
@compute @workgroup_size({THREADS})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {{
    let g = wg.y * nwg.x + wg.x;
    if g >= p[0] * p[4] {{ return; }}
    let lane = g / p[4];
    let j0 = (g % p[4]) * p[9];
    let len = p[1];
    let inner = p[2];
    let span = p[9];
    let base = (lane / inner) * len * inner + lane % inner;
    let scratch = lane * p[3] + j0;
    for (var i = t; i < span; i += {THREADS}u) {{
        let j = j0 + i;
        if p[7] != 0u {{
            // Padding (past the lane's end) sorts last; it is never read from x.
            if j < len {{
                keys[i] = key(base + j * inner);
            }} else {{
                keys[i] = 0xffffffffu;
            }}
            pos[i] = j;
        }} else {{
            keys[i] = sk[scratch + i];
            pos[i] = sp[scratch + i];
        }}
    }}
    workgroupBarrier();
    for (var size = p[5]; size <= p[6]; size <<= 1u) {{
        for (var stride = min(size, span) >> 1u; stride > 0u; stride >>= 1u) {{
            for (var i = t; i < span; i += {THREADS}u) {{
                let q = i ^ stride;
                if q > i {{
                    // The direction comes from the element's place in the whole lane.
                    let up = ((j0 + i) & size) == 0u;
                    let greater = keys[i] > keys[q] || (keys[i] == keys[q] && pos[i] > pos[q]);
                    if greater == up {{
                        let k = keys[i];
                        keys[i] = keys[q];
                        keys[q] = k;
                        let o = pos[i];
                        pos[i] = pos[q];
                        pos[q] = o;
                    }}
                }}
            }}
            workgroupBarrier();
        }}
    }}
    for (var i = t; i < span; i += {THREADS}u) {{
        let j = j0 + i;
        if p[8] != 0u {{
            if j < len {{
                out[base + j * inner] = pos[i];
            }}
        }} else {{
            sk[scratch + i] = keys[i];
            sp[scratch + i] = pos[i];
        }}
    }}
}}
"
    );
    s
}

/// One long stride of one stage over the scratch: a thread per compared pair.
fn stride_source() -> String {
    let mut s = String::from(
        "@group(0) @binding(0) var<storage, read> p: array<u32>;
@group(0) @binding(1) var<storage, read_write> sk: array<u32>;
@group(0) @binding(2) var<storage, read_write> sp: array<u32>;
",
    );
    s += MAIN;
    // p: [pairs, pow2, size, stride]
    s += "    if gid >= p[0] { return; }
    let half = p[1] >> 1u;
    let stride = p[3];
    let lane = gid / half;
    let r = gid % half;
    let j = (r / stride) * 2u * stride + r % stride;
    let a = lane * p[1] + j;
    let b = a + stride;
    let up = (j & p[2]) == 0u;
    let greater = sk[a] > sk[b] || (sk[a] == sk[b] && sp[a] > sp[b]);
    if greater == up {
        let k = sk[a];
        sk[a] = sk[b];
        sk[b] = k;
        let o = sp[a];
        sp[a] = sp[b];
        sp[b] = o;
    }
}
";
    s
}

/// The indices that sort each lane along `axis` (stable, NaNs last).
pub(crate) fn argsort(
    gpu: &Wgpu,
    axis: usize,
    x: TensorRef<'_, WgpuBuffer>,
    out: TensorMut<'_, WgpuBuffer>,
) -> Result<()> {
    validate_argsort(axis, &x, &out)?;
    wgsl::check_types(OP, &[x.dtype])?;
    let shape = x.layout.shape();
    let n = x.layout.numel();
    if n == 0 {
        return Ok(());
    }
    let len = shape.get(axis).copied().unwrap_or(1);
    let (lanes, inner) = (n / len, shape.iter().skip(axis + 1).product::<usize>());
    let (pow2, block) = (len.next_power_of_two(), block_len(gpu));
    let span = pow2.min(block);
    let blocks = pow2 / span;
    // The scratch pairs of long lanes, 4 bytes each.
    let scratch = if blocks > 1 { 4 * lanes * pow2 } else { 4 };
    if block < 2 || (lanes * pow2) as u64 >= 1 << 32 || scratch as u64 > gpu.binding_cap {
        return Err(Error::NotImplemented { op: "argsort of lanes this long", backend: gpu.name() });
    }
    // The kernels read and write dense operands; others go through a copy.
    let dense = |l: &Layout| l.is_contiguous() && l.offset() == 0;
    let contiguous = Layout::contiguous(shape);
    let xc = dense_copy(gpu, &x)?;
    let xbuf = xc.as_ref().unwrap_or(x.buffer);
    let tmp = if dense(out.layout) { None } else { Some(gpu.alloc_output(4 * n)?) };
    let obuf = tmp.as_ref().unwrap_or(out.buffer);
    let (sk, sp) = (gpu.alloc_output(scratch)?, gpu.alloc_output(scratch)?);
    let sort = gpu.kernel(&format!("argsort blocks {} {block}", x.dtype), 1, 3, || block_source(x.dtype, block))?;
    let groups = (lanes * blocks) as u64;
    let u = |v: usize| v as u32;
    // Stages up to the block's length, in workgroup memory; for a lane that fits, the whole sort.
    let p = [u(lanes), u(len), u(inner), u(pow2), u(blocks), 2, u(span), 1, u32::from(blocks == 1), u(span)];
    gpu.dispatch(OP, &sort, &p, &[xbuf], &[&sk, &sp, obuf], groups)?;
    // Longer lanes: each later stage's long strides over the scratch, then its short ones
    // block by block (the last stage writing the positions out).
    if blocks > 1 {
        let step = gpu.kernel("argsort stride", 0, 2, stride_source)?;
        let pairs = lanes * pow2 / 2;
        let mut size = 2 * span;
        while size <= pow2 {
            let mut stride = size / 2;
            while stride >= span {
                let p = [u(pairs), u(pow2), u(size), u(stride)];
                gpu.dispatch(OP, &step, &p, &[], &[&sk, &sp], pairs.div_ceil(256) as u64)?;
                stride /= 2;
            }
            let last = u32::from(size == pow2);
            let p = [u(lanes), u(len), u(inner), u(pow2), u(blocks), u(size), u(size), 0, last, u(span)];
            gpu.dispatch(OP, &sort, &p, &[xbuf], &[&sk, &sp, obuf], groups)?;
            size *= 2;
        }
    }
    match tmp {
        Some(tmp) => gpu.copy(TensorRef::new(DType::U32, &tmp, &contiguous), out),
        None => Ok(()),
    }
}

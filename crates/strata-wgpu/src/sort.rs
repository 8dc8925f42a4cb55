//! `argsort` in WGSL: a workgroup per lane, a bitonic sort of (key, position) pairs in
//! workgroup memory, as the CUDA backend does.
//!
//! Each element becomes a 32-bit key whose unsigned order is the values' order (floats by value,
//! every NaN last, -0.0 equal to 0.0; integers by value; every type here is at most 32 bits
//! wide). Comparing pairs as (key, position) makes the bitonic network, not stable by itself,
//! give exactly NumPy's `kind="stable"` order; padding to a power of two sorts after everything,
//! NaNs included, by its positions. Lanes longer than the workgroup memory holds are
//! `NotImplemented` (the array layer then sorts on the CPU, visibly).

use strata_core::kernel::{Backend, Layout, TensorMut, TensorRef, validate_argsort};
use strata_core::{DType, Error, Result};

use crate::wgsl::{self, Ct};
use crate::{Wgpu, WgpuBuffer};

const OP: &str = "argsort";
/// Threads of a workgroup: each takes lane elements `t`, `t + THREADS`, ...
const THREADS: u32 = 256;

/// The longest lane the device's workgroup memory sorts: a power of two, 8 bytes an element,
/// at most 4096.
fn max_lane(gpu: &Wgpu) -> usize {
    let fits = gpu.limits().max_compute_workgroup_storage_size as usize / 8;
    if fits == 0 { 0 } else { (1usize << fits.ilog2()).min(4096) }
}

fn source(t: DType, max: usize) -> String {
    let key = match Ct::of(t) {
        // The bits of -0.0 become those of +0.0; a NaN (any payload) the largest key.
        Ct::F32 => {
            "let f = ld_x(e);
    var b = bitcast<u32>(f);
    if b == 0x80000000u { b = 0u; }
    if f != f { return 0xffffffffu; }
    return select(b | 0x80000000u, ~b, (b >> 31u) != 0u);"
        }
        Ct::I32 => "return bitcast<u32>(ld_x(e)) ^ 0x80000000u;",
        Ct::Bool => "return select(0u, 1u, ld_x(e));",
        Ct::U32 => "return ld_x(e);",
    };
    let mut s = String::from(
        "@group(0) @binding(0) var<storage, read> p: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
",
    );
    s += &wgsl::loader("x", t);
    s += &format!(
        "var<workgroup> keys: array<u32, {max}>;
var<workgroup> pos: array<u32, {max}>;

fn key(e: u32) -> u32 {{
    {key}
}}

// p: [lanes, len, inner, pow2]; x and out dense, lane l = (outer, in) holding elements
// (outer·len + j)·inner + in.
@compute @workgroup_size({THREADS})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {{
    let lane = wg.y * nwg.x + wg.x;
    if lane >= p[0] {{ return; }}
    let len = p[1];
    let inner = p[2];
    let pow2 = p[3];
    let base = (lane / inner) * len * inner + lane % inner;
    for (var j = t; j < pow2; j += {THREADS}u) {{
        if j < len {{
            keys[j] = key(base + j * inner);
        }} else {{
            keys[j] = 0xffffffffu;
        }}
        pos[j] = j;
    }}
    workgroupBarrier();
    for (var size = 2u; size <= pow2; size <<= 1u) {{
        for (var stride = size >> 1u; stride > 0u; stride >>= 1u) {{
            for (var j = t; j < pow2; j += {THREADS}u) {{
                let q = j ^ stride;
                if q > j {{
                    let up = (j & size) == 0u;
                    let greater = keys[j] > keys[q] || (keys[j] == keys[q] && pos[j] > pos[q]);
                    if greater == up {{
                        let k = keys[j];
                        keys[j] = keys[q];
                        keys[q] = k;
                        let o = pos[j];
                        pos[j] = pos[q];
                        pos[q] = o;
                    }}
                }}
            }}
            workgroupBarrier();
        }}
    }}
    for (var j = t; j < len; j += {THREADS}u) {{
        out[base + j * inner] = pos[j];
    }}
}}
"
    );
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
    let max = max_lane(gpu);
    if len > max {
        return Err(Error::NotImplemented {
            op: "argsort of lanes longer than workgroup memory holds",
            backend: gpu.name(),
        });
    }
    let lanes = u32::try_from(n / len)
        .map_err(|_| Error::InvalidArgument { op: OP, message: format!("{} lanes: more than 2^32", n / len) })?;
    let inner: usize = shape.iter().skip(axis + 1).product();
    // The kernel reads and writes dense operands; others go through a copy.
    let dense = |l: &Layout| l.is_contiguous() && l.offset() == 0;
    let contiguous = Layout::contiguous(shape);
    let xc = if dense(x.layout) {
        None
    } else {
        let mut b = gpu.alloc_output(x.dtype.byte_len(n))?;
        gpu.copy(x, TensorMut::new(x.dtype, &mut b, &contiguous))?;
        Some(b)
    };
    let xbuf = xc.as_ref().unwrap_or(x.buffer);
    let kernel = gpu.kernel(&format!("argsort {} {max}", x.dtype), 1, 1, || source(x.dtype, max))?;
    let p = [lanes, len as u32, inner as u32, len.next_power_of_two() as u32];
    if dense(out.layout) {
        return gpu.dispatch(OP, &kernel, &p, &[xbuf], &[out.buffer], u64::from(lanes));
    }
    let tmp = gpu.alloc_output(4 * n)?;
    gpu.dispatch(OP, &kernel, &p, &[xbuf], &[&tmp], u64::from(lanes))?;
    gpu.copy(TensorRef::new(DType::U32, &tmp, &contiguous), out)
}

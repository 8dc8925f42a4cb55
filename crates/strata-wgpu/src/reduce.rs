//! Reductions over any set of axes and scans along one axis.
//!
//! A reduction gives each output a workgroup (its threads stride over the reduced elements,
//! then combine in workgroup memory) or, when there are few elements per output, a thread.
//! Results are written as 32-bit values; an output of another type or layout is filled from
//! that scratch by a map, so no two threads ever share a word. A scan gives each lane a thread
//! that walks the axis, or, for long lanes, a subgroup (dense, aligned, forward lanes on an
//! adapter with subgroups: 16-byte vectors, shuffles, no barrier) or a workgroup that scans
//! tiles of 2048 (eight consecutive elements a thread, then the threads' totals: across each
//! subgroup by shuffles where the adapter has subgroups, in workgroup memory elsewhere),
//! carrying the prefix from chunk to chunk (16-bit floats accumulate in f32, as on the CPU).
//! Operands larger than the device binds at once run in parts: a reduction's halves combine, a
//! scan's lanes carry their running value from one part to the next.

use strata_core::kernel::{Layout, ReduceOp, ScanOp, TensorMut, TensorRef, validate_reduce_call, validate_scan};
use strata_core::{DType, Result};

use crate::elementwise::{MAIN, MAX_DIMS, input, map};
use crate::parts::{Part, cut_axis, reach, slice};
use crate::wgsl::{self, Ct};
use crate::{WORKGROUP, Wgpu, WgpuBuffer, err};

/// Below this many elements per output, a thread reduces each output alone.
const SERIAL_BELOW: usize = 64;

/// The 32-bit type results are computed in.
fn scratch_type(ct: Ct) -> DType {
    match ct {
        Ct::F32 => DType::F32,
        Ct::I32 => DType::I32,
        Ct::U32 | Ct::Bool => DType::U32,
        Ct::I64 => DType::I64,
        Ct::U64 => DType::U64,
    }
}

/// The smallest and largest values of an integer type, as WGSL literals of its compute type.
fn int_range(t: DType) -> (&'static str, &'static str) {
    match t {
        DType::I8 => ("-128", "127"),
        DType::I16 => ("-32768", "32767"),
        DType::I32 => ("i32(-2147483648)", "2147483647"),
        DType::U8 => ("0u", "255u"),
        DType::U16 => ("0u", "65535u"),
        _ => ("0u", "4294967295u"),
    }
}

/// How a reduction of `t` accumulates: its type, identity, `combine(a, v)` (an element `v`
/// into the accumulator `a`) and `merge(a, b)` (two accumulators).
struct Reduction {
    acc: Ct,
    ident: String,
    combine: String,
    merge: String,
}

fn reduction(op: ReduceOp, t: DType) -> Reduction {
    let ct = Ct::of(t);
    let float = ct == Ct::F32;
    let (lo, hi) = int_range(t);
    let (zero, one) = match ct {
        Ct::F32 => ("0.0", "1.0"),
        Ct::I32 => ("0", "1"),
        _ => ("0u", "1u"),
    };
    let truth = match ct {
        Ct::F32 => "(v != 0.0 || is_nan(v))".to_owned(),
        Ct::Bool => "v".to_owned(),
        _ => format!("(v != {zero})"),
    };
    let r = |acc, ident: &str, combine: &str, merge: &str| Reduction {
        acc,
        ident: ident.into(),
        combine: combine.into(),
        merge: merge.into(),
    };
    match op {
        ReduceOp::Sum => r(ct, zero, "a + v", "a + b"),
        ReduceOp::Prod => r(ct, one, "a * v", "a * b"),
        ReduceOp::Max if float => r(ct, "-inf()", "nan_max(a, v)", "nan_max(a, b)"),
        ReduceOp::Min if float => r(ct, "inf()", "nan_min(a, v)", "nan_min(a, b)"),
        ReduceOp::Max => r(ct, lo, "max(a, v)", "max(a, b)"),
        ReduceOp::Min => r(ct, hi, "min(a, v)", "min(a, b)"),
        ReduceOp::All => r(Ct::U32, "1u", &format!("select(0u, a, {truth})"), "min(a, b)"),
        ReduceOp::Any => r(Ct::U32, "0u", &format!("select(a, 1u, {truth})"), "max(a, b)"),
        // The arg reductions carry a value and an index; `beats` decides between candidates.
        ReduceOp::ArgMax | ReduceOp::ArgMin => r(ct, zero, "", ""),
    }
}

/// WGSL `beats(va, ia, vb, ib)`: whether candidate b replaces a (the first extreme wins, the
/// first NaN over everything; index 0xffffffff marks no candidate yet).
fn beats(op: ReduceOp, t: DType) -> String {
    let ct = Ct::of(t).name();
    let cmp = if op == ReduceOp::ArgMax { ">" } else { "<" };
    let nan = if Ct::of(t) == Ct::F32 {
        "    let na = is_nan(va);\n    let nb = is_nan(vb);\n    if na || nb { return nb && (!na || ib < ia); }\n"
    } else {
        ""
    };
    format!(
        "fn beats(va: {ct}, ia: u32, vb: {ct}, ib: u32) -> bool {{
    if ib == 0xffffffffu {{ return false; }}
    if ia == 0xffffffffu {{ return true; }}
{nan}    return vb {cmp} va || (vb == va && ib < ia);
}}
"
    )
}

/// Shape and strides of the kept and reduced parts of `x`, each in row-major order, axes of one
/// element dropped and neighbours that step through memory as one axis merged (so a whole
/// dense array reduces along one axis: the kernel's simple path, no index walk per element).
struct Split {
    kept_shape: Vec<u32>,
    kept_strides: Vec<i32>,
    red_shape: Vec<u32>,
    red_strides: Vec<i32>,
}

fn split(x: &Layout, axes: &[usize]) -> Split {
    let mut s = Split { kept_shape: vec![], kept_strides: vec![], red_shape: vec![], red_strides: vec![] };
    for (d, (&n, &st)) in x.shape().iter().zip(x.strides()).enumerate() {
        let (shape, strides) = if axes.contains(&d) {
            (&mut s.red_shape, &mut s.red_strides)
        } else {
            (&mut s.kept_shape, &mut s.kept_strides)
        };
        if n == 1 {
            continue;
        }
        match (shape.last_mut(), strides.last_mut()) {
            (Some(ln), Some(ls)) if i64::from(*ls) == st as i64 * n as i64 => {
                *ln *= n as u32;
                *ls = st as i32;
            }
            _ => {
                shape.push(n as u32);
                strides.push(st as i32);
            }
        }
    }
    s
}

/// `dims[8]` padded with `fill`.
fn pad<T: Copy>(v: &[T], fill: T) -> impl Iterator<Item = T> + '_ {
    (0..MAX_DIMS).map(move |d| v.get(d).copied().unwrap_or(fill))
}

pub(crate) fn reduce(
    gpu: &Wgpu,
    op: ReduceOp,
    axes: &[usize],
    x: TensorRef<'_, WgpuBuffer>,
    out: TensorMut<'_, WgpuBuffer>,
) -> Result<()> {
    let axes = validate_reduce_call(op, axes, &x, &out)?;
    wgsl::check_types(op.name(), &[x.dtype, out.dtype])?;
    let outputs = out.layout.numel();
    if outputs == 0 {
        return Ok(());
    }
    if x.buffer.bound_bytes() > gpu.binding_cap || out.buffer.bound_bytes() > gpu.binding_cap {
        return windowed(gpu, op, &axes, x, out);
    }
    if x.layout.ndim() > MAX_DIMS {
        return Err(err(
            op.name(),
            format!("{} dimensions: the wgpu kernels take at most {MAX_DIMS}", x.layout.ndim()),
        ));
    }
    let sp = split(x.layout, &axes);
    let count: usize = sp.red_shape.iter().map(|&n| n as usize).product();
    let red = reduction(op, x.dtype);
    let arg = op.is_index();
    let sd = if arg { DType::U32 } else { scratch_type(red.acc) };
    // A workgroup per output when the reduced elements are adjacent in memory (its threads
    // read them together); a thread per output when the kept ones are (neighbouring threads
    // read neighbouring outputs' elements), or when each output has only a few elements.
    let innermost =
        (0..x.layout.ndim()).filter(|&d| x.layout.shape()[d] > 1).min_by_key(|&d| x.layout.strides()[d].unsigned_abs());
    let reduced_inner = innermost.is_none_or(|d| axes.contains(&d));
    let serial = count < SERIAL_BELOW || !reduced_inner;
    // A thread per four neighbouring outputs, read as one 16-byte vector per step, where the
    // innermost kept axis is dense and every element of a vector starts on 16 bytes.
    let last = sp.kept_shape.len().checked_sub(1);
    let quads = serial
        && !arg
        && wgsl::bits(x.dtype) == 32
        && last.is_some_and(|d| sp.kept_strides[d] == 1 && sp.kept_shape[d].is_multiple_of(4))
        && x.layout.offset().is_multiple_of(4)
        && sp.kept_strides[..last.unwrap_or(0)].iter().chain(&sp.red_strides).all(|s| s % 4 == 0);
    // Few outputs with many elements each: split each output's elements into chunks reduced
    // in parallel, then reduce the partial results (not for the arg reductions, whose partial
    // results would need their indices).
    let chunks = if arg {
        1
    } else if serial {
        // About 2^17 threads in all (a thread takes four outputs with quads).
        (count / 256).clamp(1, ((1usize << 17) * if quads { 4 } else { 1 }).div_ceil(outputs))
    } else {
        (count / 4096).clamp(1, 2048usize.div_ceil(outputs))
    };
    let chunk = count.div_ceil(chunks);
    let single = sp.red_shape.len() == 1;
    let key = format!(
        "reduce {} {} {} {}{}",
        op.name(),
        x.dtype,
        if serial { "serial" } else { "group" },
        if single { "single" } else { "walk" },
        if quads { " quads" } else { "" }
    );
    let kernel = gpu.kernel(&key, 1, 1, || reduce_source(op, x.dtype, serial, single, quads))?;
    let partial = chunks > 1;
    let direct = !partial && out.layout.is_contiguous() && out.dtype == sd;
    let scratch = if direct { None } else { Some(gpu.take(outputs * chunks * 4)?) };
    let out_off = if direct { out.layout.offset() as u32 } else { 0 };
    let mut p = vec![
        outputs as u32,
        count as u32,
        sp.kept_shape.len() as u32,
        sp.red_shape.len() as u32,
        x.layout.offset() as u32,
        out_off,
        chunks as u32,
        chunk as u32,
    ];
    p.extend(pad(&sp.kept_shape, 1));
    p.extend(pad(&sp.kept_strides, 0).map(|v| v as u32));
    p.extend(pad(&sp.red_shape, 1));
    p.extend(pad(&sp.red_strides, 0).map(|v| v as u32));
    let work = (outputs * chunks / if quads { 4 } else { 1 }) as u64;
    let groups = if serial { work.div_ceil(u64::from(WORKGROUP)) } else { work };
    let Some(dest) = &scratch else {
        return gpu.dispatch(op.name(), &kernel, &p, &[x.buffer], &[out.buffer], groups);
    };
    gpu.dispatch(op.name(), &kernel, &p, &[x.buffer], &[dest], groups)?;
    if !partial {
        let l = Layout::contiguous(out.layout.shape());
        return map(gpu, op.name(), &wgsl::cast(sd, out.dtype), &[input("x", TensorRef::new(sd, dest, &l))], out);
    }
    // The partial results: [outputs, chunks] from workgroups, [chunks, outputs] from threads.
    let (pl, axis) =
        if serial { (Layout::contiguous(&[chunks, outputs]), 0) } else { (Layout::contiguous(&[outputs, chunks]), 1) };
    let partials = TensorRef::new(sd, dest, &pl);
    let flat = Layout::contiguous(&[outputs]);
    if op.validate_types(sd, out.dtype).is_ok() && out.layout.is_contiguous() {
        let whole = Layout::new(&[outputs], &[1], out.layout.offset())?;
        return reduce(gpu, op, &[axis], partials, TensorMut::new(out.dtype, out.buffer, &whole));
    }
    let mut second = gpu.take(outputs * 4)?;
    reduce(gpu, op, &[axis], partials, TensorMut::new(sd, &mut second, &flat))?;
    let l = Layout::contiguous(out.layout.shape());
    map(gpu, op.name(), &wgsl::cast(sd, out.dtype), &[input("x", TensorRef::new(sd, &second, &l))], out)
}

/// [`reduce`] over operands larger than the device binds at once. While a part of `x` or of
/// the output does not fit a window, it is halved along the kept axis along which `x` reaches
/// furthest (the halves reduce independently); when only reduced axes are left to halve, each
/// half is reduced into a partial result and the two partial results are reduced into the
/// output (for sums, products, extrema and the predicates; an arg reduction so large is an
/// `Err`). Fitting parts run on windows of the buffers, their layouts rebased to them.
fn windowed(
    gpu: &Wgpu,
    op: ReduceOp,
    axes: &[usize],
    x: TensorRef<'_, WgpuBuffer>,
    out: TensorMut<'_, WgpuBuffer>,
) -> Result<()> {
    // The output keeps the reduced axes (with size 1) or drops them.
    let kept_dims = out.layout.ndim() == x.layout.ndim();
    let out_axis = |ax: usize| if kept_dims { ax } else { ax - axes.iter().filter(|&&a| a < ax).count() };
    let mut parts = vec![(x.layout.clone(), out.layout.clone())];
    while let Some((xl, ol)) = parts.pop() {
        let (xp, outp) = (Part::of(gpu, &xl, x.dtype, x.buffer)?, Part::of(gpu, &ol, out.dtype, out.buffer)?);
        if xp.bytes() <= gpu.binding_cap && outp.bytes() <= gpu.binding_cap {
            let (xv, mut ov) = (xp.view(x.buffer), outp.view(out.buffer));
            reduce(
                gpu,
                op,
                axes,
                TensorRef::new(x.dtype, &xv, &xp.layout),
                TensorMut::new(out.dtype, &mut ov, &outp.layout),
            )?;
            continue;
        }
        let reach = |ax: usize| reach(&xl, ax);
        let long = |ax: &usize| xl.shape()[*ax] > 1;
        if let Some(ax) = (0..xl.ndim()).filter(|a| !axes.contains(a)).filter(long).max_by_key(|&a| reach(a)) {
            let half = xl.shape()[ax] / 2;
            for (a, b) in [(half, xl.shape()[ax]), (0, half)] {
                parts.push((slice(&xl, ax, a, b)?, slice(&ol, out_axis(ax), a, b)?));
            }
            continue;
        }
        let combinable = op.is_index() || op.validate_types(out.dtype, out.dtype).is_ok();
        let Some(ax) = axes.iter().copied().filter(long).max_by_key(|&a| reach(a)).filter(|_| combinable) else {
            return Err(err(
                op.name(),
                format!("a reduction of {} bytes into one result: more than this device binds at once", xp.bytes()),
            ));
        };
        // Each half reduced into a partial result (this part's output is one element: no kept
        // axis is longer than one), then the two combined into the output.
        let (len, half) = (xl.shape()[ax], xl.shape()[ax] / 2);
        let halves = [slice(&xl, ax, 0, half)?, slice(&xl, ax, half, len)?];
        let pair = Layout::contiguous(&[&[2], ol.shape()].concat());
        let slot = |h: usize| Layout::new(ol.shape(), &vec![0; ol.ndim()], h);
        let into_pair = |r: ReduceOp, t: DType, buf: &mut WgpuBuffer| -> Result<()> {
            for (h, hl) in halves.iter().enumerate() {
                windowed(gpu, r, axes, TensorRef::new(x.dtype, x.buffer, hl), TensorMut::new(t, buf, &slot(h)?))?;
            }
            Ok(())
        };
        let mut partial = gpu.take(2 * 4)?;
        if !op.is_index() {
            into_pair(op, out.dtype, &mut partial)?;
            reduce(
                gpu,
                op,
                &[0],
                TensorRef::new(out.dtype, &partial, &pair),
                TensorMut::new(out.dtype, out.buffer, &ol),
            )?;
            continue;
        }
        // An arg reduction (one axis): each half's index and extreme; the second half's index
        // (shifted by `half`) where its extreme wins, the first's on ties and NaNs, which come
        // first.
        let extreme = if op == ReduceOp::ArgMax { ReduceOp::Max } else { ReduceOp::Min };
        let mut values = gpu.take(2 * 4)?;
        into_pair(op, out.dtype, &mut partial)?;
        into_pair(extreme, x.dtype, &mut values)?;
        let cmp = if op == ReduceOp::ArgMax { ">" } else { "<" };
        let wins = if x.dtype.is_float() {
            format!("!is_nan(v0) && (is_nan(v1) || v1 {cmp} v0)")
        } else {
            format!("v1 {cmp} v0")
        };
        let ct = Ct::of(out.dtype).name();
        let (l0, l1) = (slot(0)?, slot(1)?);
        let inputs = [
            input("v0", TensorRef::new(x.dtype, &values, &l0)),
            input("v1", TensorRef::new(x.dtype, &values, &l1)),
            input("i0", TensorRef::new(out.dtype, &partial, &l0)),
            input("i1", TensorRef::new(out.dtype, &partial, &l1)),
        ];
        map(
            gpu,
            op.name(),
            &format!("select(i0, i1 + {ct}({half}), {wins})"),
            &inputs,
            TensorMut::new(out.dtype, out.buffer, &ol),
        )?;
    }
    Ok(())
}

/// The reduction kernel. p: `[outputs, count, n_kept, n_red, x_off, out_off, chunks,
/// chunk, kept_shape[8], kept_strides[8], red_shape[8], red_strides[8]]`. Workgroup `g` (or
/// thread `g` when `serial`) reduces chunk `c` of output `o` and writes result `g`, where a
/// workgroup's `(o, c)` is `(g / chunks, g % chunks)` and a thread's `(g % outputs, g /
/// outputs)`, so that neighbouring threads take neighbouring outputs. With `quads` (serial,
/// 32-bit, not an arg reduction), thread `g` takes outputs `4(g % (outputs/4))..+4` of chunk
/// `g / (outputs/4)`, reading `x` as `vec4<u32>`.
fn reduce_source(op: ReduceOp, t: DType, serial: bool, single: bool, quads: bool) -> String {
    let red = reduction(op, t);
    let arg = op.is_index();
    let acc_t = red.acc.name();
    let mut s = format!(
        "@group(0) @binding(0) var<storage, read> p: array<u32>;
@group(0) @binding(1) var<storage, read> x: {};
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
",
        if quads { "array<vec4<u32>>" } else { "array<u32>" }
    );
    if !quads {
        s += &wgsl::loader("x", t);
    }
    s += "fn walk(i: u32, shape: u32, strides: u32, nd: u32) -> i32 {
    var rem = i;
    var at = 0;
    for (var d = nd; d > 0u; d--) {
        let n = p[shape + d - 1u];
        at += bitcast<i32>(rem % n) * bitcast<i32>(p[strides + d - 1u]);
        rem = rem / n;
    }
    return at;
}
";
    s += if single {
        "fn red_pos(xb: i32, r: u32) -> u32 {\n    return bitcast<u32>(xb + bitcast<i32>(r) * bitcast<i32>(p[32]));\n}\n"
    } else {
        "fn red_pos(xb: i32, r: u32) -> u32 {\n    return bitcast<u32>(xb + walk(r, 24u, 32u, p[3]));\n}\n"
    };
    if arg {
        s += &beats(op, t);
    } else {
        let xt = Ct::of(t).name();
        s += &format!("fn combine(a: {acc_t}, v: {xt}) -> {acc_t} {{\n    return {};\n}}\n", red.combine);
        s += &format!("fn merge(a: {acc_t}, b: {acc_t}) -> {acc_t} {{\n    return {};\n}}\n", red.merge);
    }
    let step = if arg {
        "        let v = ld_x(red_pos(xb, r));\n        if beats(a, ai, v, r) { a = v; ai = r; }\n"
    } else {
        "        a = combine(a, ld_x(red_pos(xb, r)));\n"
    };
    let store = if arg {
        "out[p[5] + g] = ai;".to_owned()
    } else {
        format!("out[p[5] + g] = {};", wgsl::encode(scratch_type(red.acc), "a"))
    };
    if quads {
        let store = |j: usize| {
            format!(
                "    out[p[5] + c * p[0] + o + {j}u] = {};\n",
                wgsl::encode(scratch_type(red.acc), &format!("a{j}"))
            )
        };
        s += MAIN;
        s += "    let q = p[0] / 4u;\n    let g = gid;\n    if g >= q * p[6] { return; }\n";
        s += "    let o = (g % q) * 4u;\n    let c = g / q;\n";
        s += "    let xb = bitcast<i32>(p[4]) + walk(o, 8u, 16u, p[2]);\n";
        s += "    let lo = c * p[7];\n    let hi = min(p[1], lo + p[7]);\n";
        for j in 0..4 {
            s += &format!("    var a{j}: {acc_t} = {};\n", red.ident);
        }
        s += "    for (var r = lo; r < hi; r++) {\n        let w = x[red_pos(xb, r) / 4u];\n";
        for j in 0..4 {
            s += &format!("        a{j} = combine(a{j}, {});\n", wgsl::decode(&format!("w[{j}]"), t));
        }
        s += "    }\n";
        for j in 0..4 {
            s += &store(j);
        }
        s += "}\n";
        return s;
    }
    let (index, start, stride) = if serial {
        ("    let g = gid;\n    let o = g % p[0];\n    let c = g / p[0];\n", "lo", "1u")
    } else {
        ("    let g = group;\n    let o = g / p[6];\n    let c = g % p[6];\n", "lo + lid", "256u")
    };
    if !serial {
        s += &format!("var<workgroup> sv: array<{acc_t}, 256>;\nvar<workgroup> si: array<u32, 256>;\n");
    }
    s += MAIN;
    s += index;
    s += "    if o >= p[0] || c >= p[6] { return; }\n";
    s += "    let xb = bitcast<i32>(p[4]) + walk(o, 8u, 16u, p[2]);\n";
    s += "    let lo = c * p[7];\n    let hi = min(p[1], lo + p[7]);\n";
    s += &format!("    var a: {acc_t} = {};\n    var ai = 0xffffffffu;\n", red.ident);
    s += &format!("    for (var r = {start}; r < hi; r += {stride}) {{\n{step}    }}\n");
    if serial {
        s += &format!("    {store}\n}}\n");
        return s;
    }
    s += "    sv[lid] = a;\n    si[lid] = ai;\n    workgroupBarrier();\n";
    s += "    for (var h = 128u; h > 0u; h >>= 1u) {\n        if lid < h {\n";
    s += if arg {
        "            if beats(sv[lid], si[lid], sv[lid + h], si[lid + h]) { sv[lid] = sv[lid + h]; si[lid] = si[lid + h]; }\n"
    } else {
        "            sv[lid] = merge(sv[lid], sv[lid + h]);\n"
    };
    s += "        }\n        workgroupBarrier();\n    }\n";
    s +=
        &format!("    if lid == 0u {{\n        let a = sv[0];\n        let ai = si[0];\n        {store}\n    }}\n}}\n");
    s
}

/// The block scan's middle step, from each thread's `total` of its eight elements to `a`, the
/// prefix before them (the tile's carry included), with `carry` moved past the tile; in
/// workgroup memory, a Hillis–Steele scan over the 256 totals (sixteen barriers).
const WORKGROUP_TOTALS: &str = "        st[r] = total;
        workgroupBarrier();
        for (var off = 1u; off < 256u; off <<= 1u) {
            var t = st[r];
            if r >= off {
                t = f(st[r - off], t);
            }
            workgroupBarrier();
            st[r] = t;
            workgroupBarrier();
        }
        var a = carry;
        if r > 0u {
            a = f(carry, st[r - 1u]);
        }
        carry = f(carry, st[255]);
";

/// [`WORKGROUP_TOTALS`] on subgroups: a Hillis–Steele scan across each subgroup's lanes by
/// shuffles (no barrier), the subgroups' totals through workgroup memory (one barrier), each
/// thread folding those of the subgroups before its own. The next tile's first barrier orders
/// this tile's reads of `st` before they are overwritten.
const SUBGROUP_TOTALS: &str = "        var inc = total;
        for (var off = 1u; off < sg_size; off <<= 1u) {
            let t = subgroupShuffleUp(inc, off);
            if sg_lane >= off {
                inc = f(t, inc);
            }
        }
        let below = subgroupShuffleUp(inc, 1u);
        if sg_lane == sg_size - 1u {
            st[sg_id] = inc;
        }
        workgroupBarrier();
        var a = carry;
        for (var q = 0u; q < sg_count; q++) {
            let t = st[q];
            if q < sg_id {
                a = f(a, t);
            }
            carry = f(carry, t);
        }
        if sg_lane > 0u {
            a = f(a, below);
        }
";

/// [`MAIN`] with the subgroup builtins (`sg_id`, `sg_lane`, `sg_size`, `sg_count`).
fn subgroup_main() -> String {
    MAIN.replace(
        "@builtin(local_invocation_index) lid: u32) {",
        "@builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_id) sg_id: u32, @builtin(subgroup_invocation_id) sg_lane: u32,
        @builtin(subgroup_size) sg_size: u32, @builtin(num_subgroups) sg_count: u32) {",
    )
}

/// A scan kernel's walk from `lane` to where its lane starts in `x` (`xb`), in the output
/// (`ob`) and, chained, in `carry_buf` (`cb`); then `var {start}`, the running value it
/// starts from (the carry read back where `p[41]` says so). `p` as [`run_scan`] lays it out.
fn lane_start(ctn: &str, ident: &str, chained: bool, start: &str) -> String {
    format!(
        "    var rem = lane;
    var xb = bitcast<i32>(p[4]);
    var ob = bitcast<i32>(p[5]);
    {}
    for (var d = p[6]; d > 0u; d--) {{
        let n = p[7u + d];
        let i = bitcast<i32>(rem % n);
        rem = rem / n;
        xb += i * bitcast<i32>(p[15u + d]);
        ob += i * bitcast<i32>(p[23u + d]);
        {}
    }}
    var {start}: {ctn} = {ident};
    {}
",
        if chained { "var cb = bitcast<i32>(p[40]);" } else { "" },
        if chained { "cb += i * bitcast<i32>(p[31u + d]);" } else { "" },
        if chained {
            format!("if p[41] != 0u {{ {start} = bitcast<{ctn}>(carry_buf[bitcast<u32>(cb)]); }}")
        } else {
            String::new()
        },
    )
}

/// The scan kernel of [`run_scan`]'s vectorized path: subgroup `sg_id < K` of workgroup
/// `group` (`K = p[7]`, the fewest subgroups a workgroup can have) walks lanes
/// `group · K + sg_id`, then every `workgroups · K`-th, in chunks of
/// whole 16-byte vectors: a row of one vector a thread (eight 16-bit elements; two rows of four
/// for 32-bit ones), so that each load of a subgroup reads one dense run. Each thread scans its
/// vector's elements, takes the prefix before them from a shuffle scan of the threads' totals,
/// and stores its results (32-bit) as whole vectors; the subgroup's last total carries to the
/// next row by a shuffle: no workgroup memory, no barrier. (H200, cumsum along 16384-long f32
/// rows: 0.86–0.87 of the copy bandwidth, against 0.74–0.76 for a workgroup per lane with tiles
/// of 2048, and 0.66–0.67 with each thread's eight elements in two adjacent vectors, whose
/// loads leave every other 16 bytes to the next instruction; BENCHMARKS.md.) `p` as
/// [`run_scan`] lays it out.
fn vector_scan(t: DType, sd: DType, ident: &str, f: &str, inclusive: bool) -> String {
    let ctn = Ct::of(t).name();
    let wide = wgsl::bits(t) == 32;
    let (rows, per) = if wide { (2, 4) } else { (1, 8) };
    let mut s = String::from(
        "@group(0) @binding(0) var<storage, read> p: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<u32>>;
",
    );
    s += &format!("fn f(a: {ctn}, v: {ctn}) -> {ctn} {{\n    return {f};\n}}\n");
    s += &subgroup_main();
    s += &format!(
        "    let len = p[1];
    // p[7] subgroups a workgroup, whatever size its subgroups have (a driver may mix sizes).
    if sg_id >= p[7] {{ return; }}
    for (var lane = group * p[7] + sg_id; lane < p[0]; lane += nwg.x * nwg.y * p[7]) {{
{}        let xv = bitcast<u32>(xb) / {per}u;
        let ov = bitcast<u32>(ob) / 4u;
        for (var c0 = 0u; c0 < len; c0 += {}u * sg_size) {{
",
        lane_start(ctn, ident, false, "carry"),
        rows * per,
    );
    for r in 0..rows {
        s += &format!(
            "            let s{r} = c0 + ({r}u * sg_size + sg_lane) * {per}u;
            var w{r} = vec4<u32>(0u);
            if s{r} < len {{
                w{r} = x[xv + s{r} / {per}u];
            }}
"
        );
    }
    for r in 0..rows {
        for e in 0..per {
            let bits =
                if wide { format!("w{r}[{e}]") } else { format!("((w{r}[{}] >> {}u) & 0xffffu)", e / 2, 16 * (e % 2)) };
            s += &format!(
                "            let v{r}_{e} = select({ident}, {}, s{r} + {e}u < len);\n",
                wgsl::decode(&bits, t)
            );
        }
        s += &format!("            let i{r}_0 = v{r}_0;\n");
        for e in 1..per {
            s += &format!("            let i{r}_{e} = f(i{r}_{}, v{r}_{e});\n", e - 1);
        }
        s += &format!("            var inc{r} = i{r}_{};\n", per - 1);
        for off in [1, 2, 4, 8, 16, 32, 64] {
            s += &format!(
                "            if {off}u < sg_size {{
                let t = subgroupShuffleUp(inc{r}, {off}u);
                if sg_lane >= {off}u {{
                    inc{r} = f(t, inc{r});
                }}
            }}
"
            );
        }
        s += &format!(
            "            let below{r} = subgroupShuffleUp(inc{r}, 1u);
            var a{r} = carry;
            if sg_lane > 0u {{
                a{r} = f(carry, below{r});
            }}
            carry = f(carry, subgroupShuffle(inc{r}, sg_size - 1u));
"
        );
        for e in 0..per {
            let chosen = match (inclusive, e) {
                (true, _) => format!("f(a{r}, i{r}_{e})"),
                (false, 0) => format!("a{r}"),
                (false, _) => format!("f(a{r}, i{r}_{})", e - 1),
            };
            s += &format!("            let o{r}_{e} = {};\n", wgsl::encode(sd, &chosen));
        }
        s += &format!("            let at{r} = ov + s{r} / 4u;\n            if s{r} + {per}u <= len {{\n");
        for v in 0..per / 4 {
            s += &format!(
                "                out[at{r} + {v}u] = vec4<u32>(o{r}_{}, o{r}_{}, o{r}_{}, o{r}_{});\n",
                4 * v,
                4 * v + 1,
                4 * v + 2,
                4 * v + 3
            );
        }
        s += "            } else {\n";
        for e in 0..per {
            s += &format!(
                "                if s{r} + {e}u < len {{\n                    out[at{r} + {}u][{}] = o{r}_{e};\n                }}\n",
                e / 4,
                e % 4
            );
        }
        s += "            }\n";
    }
    s += "        }\n";
    s += "    }\n}\n";
    s
}

/// Lanes from which a scan takes a subgroup per lane (see [`run_scan`]).
const VECTOR_LANES: usize = 4096;

pub(crate) fn scan(
    gpu: &Wgpu,
    op: ScanOp,
    axis: usize,
    reverse: bool,
    inclusive: bool,
    x: TensorRef<'_, WgpuBuffer>,
    out: TensorMut<'_, WgpuBuffer>,
) -> Result<()> {
    validate_scan(op, axis, &x, &out)?;
    wgsl::check_types(op.name(), &[x.dtype, out.dtype])?;
    let n = x.layout.numel();
    if n == 0 {
        return Ok(());
    }
    if x.layout.ndim() > MAX_DIMS {
        return Err(err(
            op.name(),
            format!("{} dimensions: the wgpu kernels take at most {MAX_DIMS}", x.layout.ndim()),
        ));
    }
    let scan = Scan { op, axis, reverse, inclusive };
    // Results of another type than the 32-bit one they are computed in go through a scratch.
    let scratch = if out.dtype == scratch_type(Ct::of(x.dtype)) { 0 } else { 4 * n as u64 };
    let cap = gpu.binding_cap;
    if x.buffer.bound_bytes() > cap || out.buffer.bound_bytes() > cap || scratch > cap {
        return scan_windowed(gpu, scan, x, out);
    }
    run_scan(gpu, scan, x, out, None)
}

/// A scan's parameters.
#[derive(Clone, Copy)]
struct Scan {
    op: ScanOp,
    axis: usize,
    reverse: bool,
    inclusive: bool,
}

/// Each lane's running value between the parts of a scan cut along its axis: a 32-bit value per
/// lane in `buf` (in the type the scan computes in), laid out as `layout` (the scanned shape
/// with the axis of length one). A part starts from it where `read` (else from the identity, at
/// the start of the lanes) and leaves its lanes' totals in it.
struct Carry<'a> {
    buf: &'a WgpuBuffer,
    layout: Layout,
    read: bool,
}

/// [`scan`] over operands larger than the device binds at once. While a part of `x`, of the
/// output or of the scratch does not fit a window, it is halved along the axis along which `x`
/// reaches furthest (a 16- or 8-bit output along its first long axis, so that its parts stay
/// contiguous). Halves of other axes scan independently; along the scanned axis the half that
/// comes first in the scan's order runs first, and each lane's running value passes to the
/// second through a carry buffer, exactly as the kernel carries it from tile to tile.
fn scan_windowed(gpu: &Wgpu, scan: Scan, x: TensorRef<'_, WgpuBuffer>, out: TensorMut<'_, WgpuBuffer>) -> Result<()> {
    let sd = scratch_type(Ct::of(x.dtype));
    let mut lanes_shape = x.layout.shape().to_vec();
    if let Some(len) = lanes_shape.get_mut(scan.axis) {
        *len = 1;
    }
    let carry_all = Layout::contiguous(&lanes_shape);
    let carry_buf = gpu.take(4 * carry_all.numel())?;
    // (x's part, the output's part, the carry's part, whether the part starts its lanes)
    let mut parts = vec![(x.layout.clone(), out.layout.clone(), carry_all, true)];
    while let Some((xl, ol, cl, first)) = parts.pop() {
        let n = xl.numel();
        let (xp, op) = (Part::of(gpu, &xl, x.dtype, x.buffer)?, Part::of(gpu, &ol, out.dtype, out.buffer)?);
        let cp = Part::of(gpu, &cl, sd, &carry_buf)?;
        let scratch = if out.dtype == sd { 0 } else { 4 * n as u64 };
        if [xp.bytes(), op.bytes(), cp.bytes(), scratch].iter().all(|&b| b <= gpu.binding_cap) {
            let (xv, mut ov, cv) = (xp.view(x.buffer), op.view(out.buffer), cp.view(&carry_buf));
            let carry = Carry { buf: &cv, layout: cp.layout.clone(), read: !first };
            run_scan(
                gpu,
                scan,
                TensorRef::new(x.dtype, &xv, &xp.layout),
                TensorMut::new(out.dtype, &mut ov, &op.layout),
                Some(carry),
            )?;
            continue;
        }
        let shape = xl.shape();
        let widest = if op.bytes() > xp.bytes() { &ol } else { &xl };
        let Some(ax) = cut_axis(widest, wgsl::bits(out.dtype) < 32) else {
            return Err(err(
                scan.op.name(),
                format!("one element is wider than this device binds ({} bytes)", gpu.binding_cap),
            ));
        };
        let (len, half) = (shape[ax], shape[ax] / 2);
        // Pushed second, popped first: along the scanned axis, the half the scan meets first.
        let mut halves = [(half, len), (0, half)];
        if ax == scan.axis && scan.reverse {
            halves.reverse();
        }
        for (h, &(a, b)) in halves.iter().enumerate() {
            let cut = |l: &Layout| slice(l, ax, a, b);
            let (c, starts) = if ax == scan.axis { (cl.clone(), first && h == 1) } else { (cut(&cl)?, first) };
            parts.push((cut(&xl)?, cut(&ol)?, c, starts));
        }
    }
    Ok(())
}

/// [`scan`] on operands the device binds, carrying each lane's running value in and out of
/// `carry` where given.
fn run_scan(
    gpu: &Wgpu,
    scan: Scan,
    x: TensorRef<'_, WgpuBuffer>,
    out: TensorMut<'_, WgpuBuffer>,
    carry: Option<Carry<'_>>,
) -> Result<()> {
    let Scan { op, axis, reverse, inclusive } = scan;
    let n = x.layout.numel();
    let chained = carry.is_some();
    let ct = Ct::of(x.dtype);
    let float = ct == Ct::F32;
    let (lo, hi) = int_range(x.dtype);
    let (ident, f) = match op {
        ScanOp::Sum => (
            if float {
                "0.0"
            } else if ct == Ct::I32 {
                "0"
            } else {
                "0u"
            },
            "a + v",
        ),
        ScanOp::Prod => (
            if float {
                "1.0"
            } else if ct == Ct::I32 {
                "1"
            } else {
                "1u"
            },
            "a * v",
        ),
        ScanOp::Max if float => ("-inf()", "nan_max(a, v)"),
        ScanOp::Min if float => ("inf()", "nan_min(a, v)"),
        ScanOp::Max => (lo, "max(a, v)"),
        ScanOp::Min => (hi, "min(a, v)"),
        ScanOp::LogAddExp => ("-inf()", "logaddexp_f(a, v)"),
    };
    let sd = scratch_type(ct);
    let direct = out.dtype == sd;
    let len = x.layout.shape().get(axis).copied().unwrap_or(1);
    let lanes = n / len.max(1);
    let lane = |l: &Layout| -> (Vec<u32>, Vec<i32>, i32) {
        let mut shape: Vec<u32> = l.shape().iter().map(|&s| s as u32).collect();
        let mut strides: Vec<i32> = l.strides().iter().map(|&s| s as i32).collect();
        let step = strides.get(axis).copied().unwrap_or(0);
        if axis < shape.len() {
            shape.remove(axis);
            strides.remove(axis);
        }
        (shape, strides, step)
    };
    let scratch = if direct { None } else { Some(gpu.take(n * 4)?) };
    let dest = scratch.as_ref().unwrap_or(out.buffer);
    let scratch_layout = Layout::contiguous(x.layout.shape());
    let dest_layout = if direct { out.layout } else { &scratch_layout };
    let (shape, xs, xstep) = lane(x.layout);
    let (_, os, ostep) = lane(dest_layout);
    // Many long lanes that run forward over dense, 16-byte aligned 16- or 32-bit elements (in
    // bindings of whole 16-byte vectors): a subgroup per lane, 16-byte vectors, no barrier
    // (`vector_scan`). Fewer lanes keep a workgroup each, which has eight times a subgroup's
    // loads in flight on its lane (the threshold is about half the subgroups a large GPU
    // holds; reasoned, not measured). A part of a windowed scan that carries its lanes along
    // has one lane: windows cut the lanes before the scanned axis.
    let per_vector = 128 / wgsl::bits(x.dtype) as usize;
    let vectorized = gpu.has_subgroups()
        && !chained
        && lanes >= VECTOR_LANES
        && !reverse
        && len >= 128
        && matches!(wgsl::bits(x.dtype), 16 | 32)
        && xstep == 1
        && ostep == 1
        && x.layout.offset().is_multiple_of(per_vector)
        && dest_layout.offset().is_multiple_of(4)
        && shape.iter().zip(&xs).all(|(&n, &s)| n == 1 || s % per_vector as i32 == 0)
        && shape.iter().zip(&os).all(|(&n, &s)| n == 1 || s % 4 == 0)
        && x.buffer.bound_bytes().is_multiple_of(16)
        && dest.bound_bytes().is_multiple_of(16);
    // Otherwise long lanes, not too many of them: a workgroup per lane, scanning tiles of 2048
    // with a carried prefix; or a thread per lane walking it.
    let block = !vectorized && len >= 128 && lanes < (1 << 16);
    let sub = block && gpu.has_subgroups();
    // Eight elements a thread: sixteen ran at 0.47 of the copy bandwidth against 0.77, 32 at
    // 0.29 (H200, BENCHMARKS.md).
    let per = 8;
    let tile = 256 * per;
    let key = format!("scan {} {} {reverse} {inclusive} {block} {sub} {vectorized} {chained}", op.name(), x.dtype);
    let kernel = gpu.kernel(&key, 1, 1 + usize::from(chained), || {
        if vectorized {
            return vector_scan(x.dtype, sd, ident, f, inclusive);
        }
        let ctn = ct.name();
        let mut s = String::from(
            "@group(0) @binding(0) var<storage, read> p: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
",
        );
        if chained {
            s += "@group(0) @binding(3) var<storage, read_write> carry_buf: array<u32>;\n";
        }
        s += &wgsl::loader("x", x.dtype);
        s += &format!("fn f(a: {ctn}, v: {ctn}) -> {ctn} {{\n    return {f};\n}}\n");
        if block {
            // A tile of 2048 elements in workgroup memory (a padding slot every 32, so that a
            // thread's eight neighbours sit in different banks) and the 256 threads' totals.
            s += &format!(
                "var<workgroup> sv: array<{ctn}, {}>;\nvar<workgroup> st: array<{ctn}, 256>;\n",
                tile + tile / 32
            );
            s += "fn sslot(e: u32) -> u32 {\n    return e + e / 32u;\n}\n";
        }
        // p: [lanes, len, x_step, out_step, x_off, out_off, nd, 0, shape[8], x_strides[8],
        //     out_strides[8]] (the lanes: the layout without the scanned axis); chained, then
        //     [carry_strides[8], carry_off, read the carry]
        s += &if sub { subgroup_main() } else { MAIN.to_string() };
        s += &format!(
            "    let lane = {};
    if lane >= p[0] {{ return; }}
{}    let len = p[1];
",
            if block { "group" } else { "gid" },
            lane_start(ctn, ident, chained, "start"),
        );
        let index = if reverse { "len - 1u - step" } else { "step" };
        let store = |v: &str| format!("out[bitcast<u32>(ob + i * bitcast<i32>(p[3]))] = {};", wgsl::encode(sd, v));
        let chosen = if inclusive { "after" } else { "before" };
        if block {
            // A thread scans elements r·8 .. r·8 + 8 of a tile, r its place in the order of
            // the scan (its subgroup's, then its own within it).
            let rank = if sub { "sg_id * sg_size + sg_lane" } else { "lid" };
            s += &format!(
                "    var carry: {ctn} = start;
    let r = {rank};
    for (var t0 = 0u; t0 < len; t0 += {tile}u) {{
        for (var j = 0u; j < {per}u; j++) {{
            let step = t0 + j * 256u + lid;
            let i = bitcast<i32>({index});
            var v: {ctn} = {ident};
            if step < len {{
                v = ld_x(bitcast<u32>(xb + i * bitcast<i32>(p[2])));
            }}
            sv[sslot(j * 256u + lid)] = v;
        }}
        workgroupBarrier();
        var total: {ctn} = {ident};
        for (var q = 0u; q < {per}u; q++) {{
            total = f(total, sv[sslot(r * {per}u + q)]);
        }}
{}        for (var q = 0u; q < {per}u; q++) {{
            let e = sslot(r * {per}u + q);
            let before = a;
            a = f(a, sv[e]);
            let after = a;
            sv[e] = {chosen};
        }}
        workgroupBarrier();
        for (var j = 0u; j < {per}u; j++) {{
            let step = t0 + j * 256u + lid;
            let i = bitcast<i32>({index});
            if step < len {{
                {}
            }}
        }}
        workgroupBarrier();
    }}
    {}
}}
",
                if sub { SUBGROUP_TOTALS } else { WORKGROUP_TOTALS },
                store("sv[sslot(j * 256u + lid)]"),
                // Every thread read the carry before thread 0 overwrites it.
                if chained {
                    "storageBarrier();\n    if lid == 0u { carry_buf[bitcast<u32>(cb)] = bitcast<u32>(carry); }"
                } else {
                    ""
                }
            );
        } else {
            s += &format!(
                "    var a: {ctn} = start;
    for (var step = 0u; step < len; step++) {{
        let i = bitcast<i32>({index});
        let before = a;
        a = f(a, ld_x(bitcast<u32>(xb + i * bitcast<i32>(p[2]))));
        let after = a;
        {}
    }}
    {}
}}
",
                store(chosen),
                if chained { "carry_buf[bitcast<u32>(cb)] = bitcast<u32>(a);" } else { "" }
            );
        }
        s
    })?;
    let mut p = vec![
        lanes as u32,
        len as u32,
        xstep as u32,
        ostep as u32,
        x.layout.offset() as u32,
        dest_layout.offset() as u32,
        shape.len() as u32,
        0,
    ];
    p.extend(pad(&shape, 1));
    p.extend(pad(&xs, 0).map(|v| v as u32));
    p.extend(pad(&os, 0).map(|v| v as u32));
    // The carry's lanes, in the order of the others (its scanned axis has one element).
    if let Some(c) = &carry {
        let (_, cs, _) = lane(&c.layout);
        p.extend(pad(&cs, 0).map(|v| v as u32));
        p.extend([c.layout.offset() as u32, u32::from(c.read)]);
    }
    // The vectorized kernel's subgroups a workgroup (as many as the smallest count of subgroups
    // a workgroup can have); past a couple of waves on a large GPU they walk more than one
    // lane each (a grid-stride loop).
    let per_group = (WORKGROUP / gpu.subgroup_max_size().clamp(1, WORKGROUP)).max(1);
    if vectorized {
        p[7] = per_group;
    }
    let groups = if vectorized {
        (lanes as u64).div_ceil(u64::from(per_group)).min(2048)
    } else if block {
        lanes as u64
    } else {
        (lanes as u64).div_ceil(u64::from(WORKGROUP))
    };
    let mut writes: Vec<&WgpuBuffer> = Vec::with_capacity(2);
    writes.push(dest);
    if let Some(c) = &carry {
        writes.push(c.buf);
    }
    gpu.dispatch(op.name(), &kernel, &p, &[x.buffer], &writes, groups)?;
    let Some(scratch) = scratch else { return Ok(()) };
    map(gpu, op.name(), &wgsl::cast(sd, out.dtype), &[input("x", TensorRef::new(sd, &scratch, &scratch_layout))], out)
}

//! N-d convolution and its transpose (channels last) in WGSL: the general kernel, a thread per
//! output element summing over the kernel window and its group's channels, for f32 and the
//! 16-bit floats (accumulating in f32), any strides, dilations, padding and groups.
//!
//! A convolution gathers `in[b, o·stride + k·dilation − pad, g·cig + j] · w[k, j, co]`; its
//! transpose gathers the same terms from the other side: output position `p` takes input
//! position `o = (p + pad − k·dilation) / stride` where that divides exactly, and weight
//! `w[k, c mod cig, g·cog + j]` (see `strata_core::kernel::Conv`). Spatial axes are padded to
//! three with axes of size one. (An implicit-GEMM kernel on cooperative matrices is the fast
//! path to come; this one is the portable reference.)

use strata_core::kernel::{Backend, Conv, Layout, TensorMut, TensorRef};
use strata_core::{DType, Error, Result};

use crate::elementwise::{MAIN, input, map};
use crate::parts::{Part, bind_input, input_bytes, slice};
use crate::{Wgpu, WgpuBuffer, err, wgsl};

const OP: &str = "conv";

/// Offset, then the strides of batch, three spatial axes (zero where absent) and channels.
fn place(l: &Layout, s: usize) -> [u32; 6] {
    let st = l.strides();
    let mut p = [l.offset() as u32, st[0] as i32 as u32, 0, 0, 0, st[s + 1] as i32 as u32];
    for ax in 0..s {
        p[2 + ax] = st[1 + ax] as i32 as u32;
    }
    p
}

/// The weight's offset, then the strides of three kernel axes (zero where absent), the
/// channel within a group and the other channel.
fn place_weight(l: &Layout, s: usize) -> [u32; 6] {
    let st = l.strides();
    let mut p = [l.offset() as u32, 0, 0, 0, st[s] as i32 as u32, st[s + 1] as i32 as u32];
    for ax in 0..s {
        p[1 + ax] = st[ax] as i32 as u32;
    }
    p
}

fn source(t: DType) -> String {
    let mut s = String::from(
        "@group(0) @binding(0) var<storage, read> p: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;
",
    );
    s += &wgsl::loader("x", t);
    s += &wgsl::loader("w", t);
    // p: [n, transposed, cig, cog, c_out, 0, out[3], in[3], kernel[3], stride[3], dilation[3],
    //     pad_lo[3]], then offset and strides of x (24), w (30) and the destination (36).
    s += "fn at(o: u32, i0: u32, i1: u32, i2: u32, i3: u32, i4: u32) -> u32 {
    return bitcast<u32>(bitcast<i32>(p[o]) + bitcast<i32>(i0) * bitcast<i32>(p[o + 1u])
        + bitcast<i32>(i1) * bitcast<i32>(p[o + 2u]) + bitcast<i32>(i2) * bitcast<i32>(p[o + 3u])
        + bitcast<i32>(i3) * bitcast<i32>(p[o + 4u]) + bitcast<i32>(i4) * bitcast<i32>(p[o + 5u]));
}

// The input position along axis `ax` that kernel tap `k` takes for output position `o`, or
// -1 where there is none.
fn source_pos(ax: u32, o: u32, k: u32) -> i32 {
    let stride = i32(p[15u + ax]);
    let offset = i32(k * p[18u + ax]) - i32(p[21u + ax]);
    var i: i32;
    if p[1] == 0u {
        i = i32(o) * stride + offset;
    } else {
        let num = i32(o) - offset;
        if num < 0 || num % stride != 0 {
            return -1;
        }
        i = num / stride;
    }
    if i < 0 || i >= i32(p[9u + ax]) {
        return -1;
    }
    return i;
}
";
    s += MAIN;
    s += "    if gid >= p[0] { return; }
    let c_out = p[4];
    let c = gid % c_out;
    var r = gid / c_out;
    let o2 = r % p[8];
    r /= p[8];
    let o1 = r % p[7];
    r /= p[7];
    let o0 = r % p[6];
    let b = r / p[6];
    let transposed = p[1] != 0u;
    let cig = p[2];
    let cog = p[3];
    // The channels summed, and where they start: a convolution's group of input channels;
    // a transpose's group of (forward) output channels.
    let count = select(cig, cog, transposed);
    let first = select((c / cog) * cig, (c / cig) * cog, transposed);
    var acc = 0.0;
    for (var k0 = 0u; k0 < p[12]; k0++) {
        let i0 = source_pos(0u, o0, k0);
        if i0 < 0 { continue; }
        for (var k1 = 0u; k1 < p[13]; k1++) {
            let i1 = source_pos(1u, o1, k1);
            if i1 < 0 { continue; }
            for (var k2 = 0u; k2 < p[14]; k2++) {
                let i2 = source_pos(2u, o2, k2);
                if i2 < 0 { continue; }
                for (var j = 0u; j < count; j++) {
                    let xv = ld_x(at(24u, b, u32(i0), u32(i1), u32(i2), first + j));
                    var wv: f32;
                    if transposed {
                        wv = ld_w(at(30u, k0, k1, k2, c % cig, first + j));
                    } else {
                        wv = ld_w(at(30u, k0, k1, k2, j, c));
                    }
                    acc += xv * wv;
                }
            }
        }
    }
    out[at(36u, b, o0, o1, o2, c)] = bitcast<u32>(acc);
}
";
    s
}

pub(crate) fn conv(
    gpu: &Wgpu,
    desc: &Conv,
    x: TensorRef<'_, WgpuBuffer>,
    weight: TensorRef<'_, WgpuBuffer>,
    out: TensorMut<'_, WgpuBuffer>,
) -> Result<()> {
    desc.validate_call(&x, &weight, &out)?;
    wgsl::check_types(OP, &[x.dtype])?;
    let n = out.layout.numel();
    if n == 0 {
        return Ok(());
    }
    let cap = gpu.binding_cap;
    let scratch = if out.dtype == DType::F32 { 0 } else { 4 * n as u64 };
    if [x.buffer, weight.buffer, &*out.buffer].iter().any(|b| b.bound_bytes() > cap) || scratch > cap {
        return windowed(gpu, desc, x, weight, out);
    }
    let n32 = u32::try_from(n)
        .map_err(|_| Error::InvalidArgument { op: OP, message: format!("{n} output elements: more than 2^32") })?;
    let s = desc.spatial;
    let three = |v: &[usize]| {
        let mut a = [1u32; 3];
        for ax in 0..s {
            a[ax] = v[ax] as u32;
        }
        a
    };
    let (xs, ws, os) = (x.layout.shape(), weight.layout.shape(), out.layout.shape());
    let (c_in, c_out) = (xs[s + 1], os[s + 1]);
    // The forward map's channel counts per group: a transpose runs a convolution from its
    // output's channels to its input's.
    let (cin_f, cout_f) = if desc.transposed { (c_out, c_in) } else { (c_in, c_out) };
    let (cig, cog) = (cin_f / desc.groups, cout_f / desc.groups);
    let direct = out.dtype == DType::F32;
    let scratch_layout = Layout::contiguous(os);
    let dest = if direct { out.layout } else { &scratch_layout };
    let mut p: Vec<u32> = vec![n32, u32::from(desc.transposed), cig as u32, cog as u32, c_out as u32, 0];
    p.extend(three(&os[1..]));
    p.extend(three(&xs[1..]));
    p.extend(three(ws));
    for v in [&desc.stride, &desc.dilation] {
        p.extend((0..3).map(|ax| if ax < s { v[ax] as u32 } else { 1 }));
    }
    p.extend((0..3).map(|ax| if ax < s { desc.padding[ax].0 as u32 } else { 0 }));
    p.extend(place(x.layout, s));
    p.extend(place_weight(weight.layout, s));
    p.extend(place(dest, s));
    let kernel = gpu.kernel(&format!("conv {}", x.dtype), 2, 1, || source(x.dtype))?;
    let groups = (n as u64).div_ceil(u64::from(crate::WORKGROUP));
    if direct {
        return gpu.dispatch(OP, &kernel, &p, &[x.buffer, weight.buffer], &[out.buffer], groups);
    }
    let scratch = gpu.take(n * 4)?;
    gpu.dispatch(OP, &kernel, &p, &[x.buffer, weight.buffer], &[&scratch], groups)?;
    map(gpu, OP, "x", &[input("x", TensorRef::new(DType::F32, &scratch, &scratch_layout))], out)
}

/// A convolution whose operands the device cannot bind whole: parts halved along the batch,
/// then (forward convolutions) along the output's first spatial axis longer than one, with the
/// input positions those read and the padding shifted to match, then (forward convolutions
/// with 32-bit outputs, or where the weight does not fit) along the output channels — whole
/// groups where there are several, with their input channels. Inputs are bound as [`bind_input`]
/// binds them; an output whose window is too wide is written densely and copied into place.
/// One image's part that still does not fit is an `Err`.
fn windowed(
    gpu: &Wgpu,
    desc: &Conv,
    x: TensorRef<'_, WgpuBuffer>,
    weight: TensorRef<'_, WgpuBuffer>,
    out: TensorMut<'_, WgpuBuffer>,
) -> Result<()> {
    let cap = gpu.binding_cap;
    let s = desc.spatial;
    let c = s + 1;
    let mut parts = vec![(*desc, x.layout.clone(), weight.layout.clone(), out.layout.clone())];
    while let Some((d, xl, wl, ol)) = parts.pop() {
        let ow = Part::of(gpu, &ol, out.dtype, out.buffer)?;
        // A 32-bit output whose window is too wide is written densely and copied into place.
        let dense_out = 4 * ol.numel() as u64;
        let out_fits = if out.dtype == DType::F32 { ow.bytes().min(dense_out) <= cap } else { dense_out <= cap };
        let inputs_fit = input_bytes(gpu, &xl, x.dtype, x.buffer)? <= cap
            && input_bytes(gpu, &wl, weight.dtype, weight.buffer)? <= cap;
        if out_fits && inputs_fit {
            let (xv, xl) = bind_input(gpu, &xl, x.dtype, x.buffer)?;
            let (wv, wl) = bind_input(gpu, &wl, weight.dtype, weight.buffer)?;
            let (xr, wr) = (TensorRef::new(x.dtype, &xv, &xl), TensorRef::new(weight.dtype, &wv, &wl));
            if ow.bytes() <= cap {
                let mut ov = ow.view(out.buffer);
                conv(gpu, &d, xr, wr, TensorMut::new(out.dtype, &mut ov, &ow.layout))?;
            } else {
                let dense = Layout::contiguous(ol.shape());
                let mut tmp = gpu.take(dense_out as usize)?;
                conv(gpu, &d, xr, wr, TensorMut::new(DType::F32, &mut tmp, &dense))?;
                gpu.copy(TensorRef::new(DType::F32, &tmp, &dense), TensorMut::new(DType::F32, out.buffer, &ol))?;
            }
            continue;
        }
        let (batch, c_in, c_out) = (xl.shape()[0], xl.shape()[c], ol.shape()[c]);
        // The first spatial axis with more than one output position (cutting it keeps a part
        // of a one-image output contiguous).
        let axis = (0..s).find(|&j| ol.shape()[1 + j] > 1);
        let weight_fits = input_bytes(gpu, &wl, weight.dtype, weight.buffer)? <= cap;
        if batch > 1 {
            let half = batch / 2;
            for (a, b) in [(half, batch), (0, half)] {
                parts.push((d, slice(&xl, 0, a, b)?, wl.clone(), slice(&ol, 0, a, b)?));
            }
        } else if let Some(j) = axis.filter(|_| weight_fits && !d.transposed) {
            // Output positions [a, b) along spatial axis j read input positions [i0, i1): the
            // input is cut to those, its padding shifted to match.
            let (stride, dil, (lo, _)) = (d.stride[j], d.dilation[j], d.padding[j]);
            let (extent, len, outs) = ((wl.shape()[j] - 1) * dil + 1, xl.shape()[1 + j], ol.shape()[1 + j]);
            for (a, b) in [(outs / 2, outs), (0, outs / 2)] {
                let i0 = (a * stride).saturating_sub(lo);
                let i1 = ((b - 1) * stride + extent).saturating_sub(lo).clamp(i0, len);
                let pad_lo = lo + i0 - a * stride;
                let pad_hi = (b - a - 1) * stride + extent - (i1 - i0) - pad_lo;
                let mut next = d;
                next.padding[j] = (pad_lo, pad_hi);
                parts.push((next, slice(&xl, 1 + j, i0, i1)?, wl.clone(), slice(&ol, 1 + j, a, b)?));
            }
        } else if !d.transposed && out.dtype == DType::F32 && c_out > 1 {
            // Output channels [a, b) with their weights; with groups, whole ones and their inputs.
            let (cig, cog) = (c_in / d.groups, c_out / d.groups);
            let halves = if d.groups > 1 {
                let g = d.groups / 2;
                [(g, d.groups), (0, g)].map(|(g0, g1)| (g1 - g0, (g0 * cig, g1 * cig), (g0 * cog, g1 * cog)))
            } else {
                [(c_out / 2, c_out), (0, c_out / 2)].map(|(a, b)| (1, (0, c_in), (a, b)))
            };
            for (groups, (xa, xb), (oa, ob)) in halves {
                let next = Conv { groups, ..d };
                parts.push((next, slice(&xl, c, xa, xb)?, slice(&wl, c, oa, ob)?, slice(&ol, c, oa, ob)?));
            }
        } else {
            return Err(err(
                OP,
                format!("one image's part of the convolution is more than this device binds at once ({cap} bytes)"),
            ));
        }
    }
    Ok(())
}

//! Quantized matrix multiplication in WGSL: `y = x·Wᵀ` (or `x·W`) with `W` a quantized tensor
//! whose planes live on the device ([`WgpuQuantized`], uploaded once by `upload_quantized`),
//! dequantized inside the kernel element by element: no dequantized copy of the weight exists.
//!
//! The general kernel: a thread per output element walks `k`, reading each code from the data
//! plane's bitstream (codes of 1 to 8 bits, possibly straddling two words), its block's scale
//! (E8M0, E4M3 or a float) and, for affine modes, its bias. Every mode of
//! [`strata_core::quant`] is decoded: affine (1-8 bits), MX with FP8/FP6/FP4/INT8 elements,
//! and nvfp4. It is the portable reference that a cooperative-matrix kernel will be held to.
//! Values are built from their bits (powers of two by `bitcast`, not `exp2`), so MX and nvfp4
//! weights dequantize exactly to the CPU's values; an affine weight may differ in its last bit
//! where a driver fuses its multiply-add (WGSL lets it). The order of the f32 sums differs.

use strata_core::kernel::{Backend, Layout, QuantizedMatmul, TensorMut, TensorRef};
use strata_core::quant::{MxElement, QuantMode, QuantizedTensor};
use strata_core::{DType, Error, Result};

use crate::elementwise::{MAIN, input, map};
use crate::parts::{Part, bind_input, cut_axis, input_bytes, slice};
use crate::{Wgpu, WgpuBuffer, err, wgsl};

const OP: &str = "quantized_matmul";

/// A quantized 2-D weight with its planes on the device: the wgpu backend's
/// `Backend::Quantized`.
pub struct WgpuQuantized {
    mode: QuantMode,
    shape: [usize; 2],
    data: WgpuBuffer,
    scales: WgpuBuffer,
    biases: Option<WgpuBuffer>,
    tensor_scale: f32,
}

impl WgpuQuantized {
    /// The quantization mode.
    pub fn mode(&self) -> &QuantMode {
        &self.mode
    }

    /// The weight's logical shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
}

/// Copies a 2-D quantized weight's planes to the device.
pub(crate) fn upload(gpu: &Wgpu, w: &QuantizedTensor) -> Result<WgpuQuantized> {
    let shape: [usize; 2] = w.shape().try_into().map_err(|_| Error::InvalidArgument {
        op: OP,
        message: format!("the weight has shape {:?}; quantized products take 2-D weights", w.shape()),
    })?;
    let data = gpu.upload(w.data())?;
    let scales = gpu.upload(&w.scales().bytes)?;
    let biases = w.biases().map(|b| gpu.upload(&b.bytes)).transpose()?;
    Ok(WgpuQuantized { mode: *w.mode(), shape, data, scales, biases, tensor_scale: w.tensor_scale().unwrap_or(1.0) })
}

/// `2^e` for an exponent inside f32's normal range, from its bits.
const POW2: &str = "fn pow2(e: i32) -> f32 {
    return bitcast<f32>(u32(e + 127) << 23u);
}
";

/// WGSL `fn element(c: u32) -> f32`: the value of code `c` of a minifloat with `e` exponent
/// and `m` mantissa bits (IEEE-like: subnormals at exponent 0; `inf_nan`: the top exponent is
/// infinity and NaN, as E5M2's; `nan_at_max`: the all-ones code is NaN, as E4M3's).
fn minifloat(e: u32, m: u32, bias: i32, inf_nan: bool, nan_at_max: bool) -> String {
    let emax = (1u32 << e) - 1;
    let mmask = (1u32 << m) - 1;
    let mut s = format!(
        "fn element(c: u32) -> f32 {{
    let ex = (c >> {m}u) & {emax}u;
    let f = c & {mmask}u;
    let sign = select(1.0, -1.0, ((c >> {}u) & 1u) != 0u);
",
        e + m
    );
    if inf_nan {
        s += &format!(
            "    if ex == {emax}u {{
        return select(sign * bitcast<f32>(0x7f800000u), bitcast<f32>(0x7fc00000u), f != 0u);
    }}
"
        );
    }
    if nan_at_max {
        s += &format!(
            "    if ex == {emax}u && f == {mmask}u {{
        return bitcast<f32>(0x7fc00000u);
    }}
"
        );
    }
    s += &format!(
        "    if ex == 0u {{
        return sign * f32(f) * pow2({});
    }}
    return sign * (1.0 + f32(f) * pow2(-{m})) * pow2(i32(ex) - {bias});
}}
",
        1 - bias - m as i32
    );
    s
}

/// The element decoder, the scale reader and how a weight value is formed, per mode.
fn decoders(mode: &QuantMode) -> String {
    let e8m0 = "fn scale(b: u32) -> f32 {
    let s = (sc[b >> 2u] >> ((b & 3u) * 8u)) & 0xffu;
    if s == 255u {
        return bitcast<f32>(0x7fc00000u);
    }
    if s == 0u {
        return bitcast<f32>(0x00400000u);
    }
    return bitcast<f32>(s << 23u);
}
";
    let mut s = String::from(POW2);
    match mode {
        QuantMode::Affine { scale_dtype, .. } => {
            s += "fn element(c: u32) -> f32 {\n    return f32(c);\n}\n";
            s += &wgsl::loader("sc", *scale_dtype);
            s += &wgsl::loader("bi", *scale_dtype);
            s += "fn weight(c: u32, b: u32) -> f32 {\n    return element(c) * ld_sc(b) + ld_bi(b);\n}\n";
        }
        QuantMode::Mx { element, .. } => {
            s += &match element {
                MxElement::E4M3 => minifloat(4, 3, 7, false, true),
                MxElement::E5M2 => minifloat(5, 2, 15, true, false),
                MxElement::E3M2 => minifloat(3, 2, 3, false, false),
                MxElement::E2M3 => minifloat(2, 3, 1, false, false),
                MxElement::E2M1 => minifloat(2, 1, 1, false, false),
                MxElement::Int8 => {
                    "fn element(c: u32) -> f32 {\n    return f32(bitcast<i32>(c << 24u) >> 24u) * 0.015625;\n}\n".into()
                }
            };
            s += e8m0;
            s += "fn weight(c: u32, b: u32) -> f32 {\n    return element(c) * scale(b);\n}\n";
        }
        QuantMode::Nvfp4 { .. } => {
            s += &minifloat(2, 1, 1, false, false);
            // The E4M3 block scale, decoded by a second minifloat reader.
            s += &minifloat(4, 3, 7, false, true).replace("fn element(", "fn e4m3(");
            s += "fn scale(b: u32) -> f32 {
    return e4m3((sc[b >> 2u] >> ((b & 3u) * 8u)) & 0xffu) * bitcast<f32>(p[6]);
}
fn weight(c: u32, b: u32) -> f32 {
    return element(c) * scale(b);
}
";
        }
    }
    s
}

fn source(t: DType, mode: &QuantMode) -> String {
    let bits = mode.element_bits();
    let mut s = String::from(
        "@group(0) @binding(0) var<storage, read> p: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read> q: array<u32>;
@group(0) @binding(3) var<storage, read> sc: array<u32>;
@group(0) @binding(4) var<storage, read> bi: array<u32>;
@group(0) @binding(5) var<storage, read> rows: array<u32>;
@group(0) @binding(6) var<storage, read_write> out: array<u32>;
",
    );
    s += &wgsl::loader("x", t);
    s += &decoders(mode);
    // Code `e` of the data plane: `bits` bits of the little-endian bitstream, which may run
    // into the next word.
    s += &format!(
        "fn code(e: u32) -> u32 {{
    let pos = e * {bits}u;
    let w = pos >> 5u;
    let sh = pos & 31u;
    var c = q[w] >> sh;
    if sh + {bits}u > 32u {{
        c |= q[w + 1u] << (32u - sh);
    }}
    return c & {}u;
}}
",
        (1u32 << bits) - 1
    );
    s += MAIN;
    // p: [outputs, n, k, transpose, x's stride along k, the output's along n, nvfp4's tensor
    // scale (bits)]; rows: for each row of the output, where it and its row of x start.
    s += &format!(
        "    if gid >= p[0] {{ return; }}
    let n = p[1];
    let k = p[2];
    let j = gid % n;
    let r = gid / n;
    let xo = bitcast<i32>(rows[2u * r]);
    let xs = bitcast<i32>(p[4]);
    var acc = 0.0;
    for (var i = 0u; i < k; i++) {{
        let e = select(i * n + j, j * k + i, p[3] != 0u);
        acc += ld_x(u32(xo + i32(i) * xs)) * weight(code(e), e / {}u);
    }}
    out[u32(bitcast<i32>(rows[2u * r + 1u]) + i32(j) * bitcast<i32>(p[5]))] = bitcast<u32>(acc);
}}
",
        mode.block_size()
    );
    s
}

pub(crate) fn quantized_matmul(
    gpu: &Wgpu,
    desc: &QuantizedMatmul,
    x: TensorRef<'_, WgpuBuffer>,
    w: &WgpuQuantized,
    out: TensorMut<'_, WgpuBuffer>,
) -> Result<()> {
    let (_, n, k) = desc.validate_call(&x, &w.shape, &out)?;
    wgsl::check_types(OP, &[x.dtype, out.dtype])?;
    let total = out.layout.numel();
    if total == 0 {
        return Ok(());
    }
    let too_big = |what: String| Error::InvalidArgument { op: OP, message: format!("{what}: more than 2^31") };
    let total32 = u32::try_from(total).map_err(|_| too_big(format!("{total} output elements")))?;
    if w.shape[0] * w.shape[1] * w.mode.element_bits() as usize >= 1 << 32 {
        return Err(too_big(format!("a weight of {:?}", w.shape)));
    }
    let cap = gpu.binding_cap;
    for (plane, what) in [(Some(&w.data), "data"), (Some(&w.scales), "scales"), (w.biases.as_ref(), "biases")] {
        if let Some(b) = plane.filter(|b| b.bound_bytes() > cap) {
            return Err(err(
                OP,
                format!(
                    "the weight's {what} plane ({} bytes) is more than this device binds at once ({cap} bytes)",
                    b.bytes
                ),
            ));
        }
    }
    let rows_bytes = 8 * (total / n.max(1)) as u64;
    let scratch = if out.dtype == DType::F32 { 0 } else { 4 * total as u64 };
    if x.buffer.bound_bytes() > cap || out.buffer.bound_bytes() > cap || scratch > cap || rows_bytes > cap {
        return windowed(gpu, desc, x, w, out);
    }
    let direct = out.dtype == DType::F32;
    let scratch_layout = Layout::contiguous(out.layout.shape());
    let dest = if direct { out.layout } else { &scratch_layout };
    let to_i32 = |v: isize| i32::try_from(v).map(|v| v as u32).map_err(|_| too_big(format!("offset {v}")));
    let mut rows = Vec::with_capacity(2 * total / n.max(1));
    for (xr, or) in x.layout.row_starts().zip(dest.row_starts()) {
        rows.push(to_i32(xr)?);
        rows.push(to_i32(or)?);
    }
    let rows = gpu.upload(crate::bytes_of(&rows))?;
    let (xs, ds) = (x.layout.strides(), dest.strides());
    let p = [
        total32,
        n as u32,
        k as u32,
        u32::from(desc.transpose),
        to_i32(xs[xs.len() - 1])?,
        to_i32(ds[ds.len() - 1])?,
        w.tensor_scale.to_bits(),
    ];
    let key = format!("quantized_matmul {} {}", x.dtype, w.mode);
    let kernel = gpu.kernel(&key, 5, 1, || source(x.dtype, &w.mode))?;
    let groups = (total as u64).div_ceil(u64::from(crate::WORKGROUP));
    // Modes without biases bind the scales twice (never read as biases).
    let biases = w.biases.as_ref().unwrap_or(&w.scales);
    let reads = [x.buffer, &w.data, &w.scales, biases, &rows];
    if direct {
        return gpu.dispatch(OP, &kernel, &p, &reads, &[out.buffer], groups);
    }
    let scratch = gpu.take(total * 4)?;
    gpu.dispatch(OP, &kernel, &p, &reads, &[&scratch], groups)?;
    map(gpu, OP, "x", &[input("x", TensorRef::new(DType::F32, &scratch, &scratch_layout))], out)
}

/// A product whose activations, output or row table the device cannot bind whole: parts of
/// rows, halved along the leading axis of `x` (and the output) that `x` reaches furthest along;
/// activations bound as [`bind_input`] binds them, the output as its window, the weight's planes
/// whole.
fn windowed(
    gpu: &Wgpu,
    desc: &QuantizedMatmul,
    x: TensorRef<'_, WgpuBuffer>,
    w: &WgpuQuantized,
    out: TensorMut<'_, WgpuBuffer>,
) -> Result<()> {
    let cap = gpu.binding_cap;
    let nd = x.layout.ndim();
    let n = out.layout.shape()[nd - 1];
    let mut parts = vec![(x.layout.clone(), out.layout.clone())];
    while let Some((xl, ol)) = parts.pop() {
        let ow = Part::of(gpu, &ol, out.dtype, out.buffer)?;
        let rows = ol.numel() / n.max(1);
        let scratch = if out.dtype == DType::F32 { 0 } else { 4 * ol.numel() as u64 };
        let x_bytes = input_bytes(gpu, &xl, x.dtype, x.buffer)?;
        if x_bytes <= cap && ow.bytes() <= cap && scratch <= cap && 8 * rows as u64 <= cap {
            let (xv, xlay) = bind_input(gpu, &xl, x.dtype, x.buffer)?;
            let mut ov = ow.view(out.buffer);
            let o = TensorMut::new(out.dtype, &mut ov, &ow.layout);
            quantized_matmul(gpu, desc, TensorRef::new(x.dtype, &xv, &xlay), w, o)?;
            continue;
        }
        // Only the rows' axes are cut: a row's k (and its n outputs) stay in one part. A 16-bit
        // output is cut along its outermost long axis, so that its parts stay contiguous.
        let lead = Layout::new(&xl.shape()[..nd - 1], &xl.strides()[..nd - 1], xl.offset())?;
        let Some(ax) = cut_axis(&lead, wgsl::bits(out.dtype) < 32) else {
            return Err(err(
                OP,
                format!("one row of the product is more than this device binds at once ({cap} bytes)"),
            ));
        };
        let (len, half) = (xl.shape()[ax], xl.shape()[ax] / 2);
        for (a, b) in [(half, len), (0, half)] {
            parts.push((slice(&xl, ax, a, b)?, slice(&ol, ax, a, b)?));
        }
    }
    Ok(())
}

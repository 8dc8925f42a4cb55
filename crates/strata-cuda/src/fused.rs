//! [`Fused`] element-wise programs as one generated kernel: every step becomes a line of CUDA
//! C++ over registers, each input is read once and the output written once.

use cudarc::driver::{DeviceRepr, PushKernelArg};
use strata_core::kernel::{Fused, FusedOp, Layout, TensorMut, TensorRef};
use strata_core::{Error, Result};

use crate::{Cuda, CudaBuffer, ELEMENTWISE, MAX_DIMS, c, exprs};

/// The most inputs a fused kernel takes.
pub(crate) const MAX_INPUTS: usize = 8;

/// Mirrors the `FusedGeometry` each generated kernel declares: operand 0 is the output.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct FusedGeometry {
    n: i64,
    ndim: i32,
    contiguous: i32,
    shape: [i64; MAX_DIMS],
    stride: [[i64; MAX_DIMS]; MAX_INPUTS + 1],
    offset: [i64; MAX_INPUTS + 1],
}

// SAFETY: plain old data with the C layout of the generated `FusedGeometry`.
unsafe impl DeviceRepr for FusedGeometry {}

/// The kernel source of `program` (inputs `in0`, `in1`, …).
pub(crate) fn source(program: &Fused, inputs: usize) -> String {
    let t = c(program.dtype);
    let ct = exprs::compute_type(program.dtype);
    let params: String = (0..inputs).map(|i| format!("const {t}* __restrict__ in{i}, ")).collect();
    let mut body = String::new();
    for (i, op) in program.ops.iter().enumerate() {
        let line = match *op {
            FusedOp::Input(k) => format!("(CT)strata::ld(in{k}[fused_position(g, {}, i)])", k + 1),
            FusedOp::Unary(u, a) => format!("[](CT v) -> CT {{ return {}; }}(s{a})", exprs::unary(u, program.dtype)),
            FusedOp::Binary(b, x, y) => {
                format!("[](CT a, CT b) -> CT {{ return {}; }}(s{x}, s{y})", exprs::binary(b, program.dtype))
            }
        };
        body.push_str(&format!("        const CT s{i} = {line};\n"));
    }
    let last = program.ops.len() - 1;
    format!(
        "{ELEMENTWISE}
#ifndef STRATA_FUSED_GEOMETRY
#define STRATA_FUSED_GEOMETRY
struct FusedGeometry {{
    i64 n;
    i32 ndim, contiguous;
    i64 shape[{MAX_DIMS}];
    i64 stride[{ops}][{MAX_DIMS}];
    i64 offset[{ops}];
}};
__device__ __forceinline__ i64 fused_position(const FusedGeometry& g, int which, i64 i) {{
    if (g.contiguous) return g.offset[which] + i;
    i64 p = g.offset[which];
    for (int d = g.ndim - 1; d >= 0; --d) {{
        p += (i % g.shape[d]) * g.stride[which][d];
        i /= g.shape[d];
    }}
    return p;
}}
#endif
extern \"C\" __global__ void strata_kernel({params}{t}* __restrict__ y, FusedGeometry g) {{
    typedef {ct} CT;
    STRATA_GRID_LOOP(i, g.n) {{
{body}        y[fused_position(g, 0, i)] = strata::St<{t}>::from(s{last});
    }}
}}
",
        ops = MAX_INPUTS + 1,
    )
}

pub(crate) fn fused(
    cuda: &Cuda,
    program: &Fused,
    inputs: &[TensorRef<'_, CudaBuffer>],
    out: TensorMut<'_, CudaBuffer>,
) -> Result<()> {
    const OP: &str = "fused";
    let described: Vec<(&Layout, strata_core::DType)> = inputs.iter().map(|x| (x.layout, x.dtype)).collect();
    program.validate(&described, (out.layout, out.dtype))?;
    if inputs.len() > MAX_INPUTS {
        return Err(Error::InvalidArgument {
            op: OP,
            message: format!("{} inputs: a fused CUDA kernel takes at most {MAX_INPUTS}", inputs.len()),
        });
    }
    strata_core::kernel::validate_elementwise(OP, &described.iter().map(|d| d.0).collect::<Vec<_>>(), out.layout)?;
    for (i, x) in inputs.iter().enumerate() {
        x.check(OP, &format!("input {i}"))?;
    }
    out.check(OP, "the output")?;
    let nd = out.layout.ndim();
    if nd > MAX_DIMS {
        return Err(Error::InvalidArgument { op: OP, message: format!("{nd} dimensions: at most {MAX_DIMS}") });
    }
    let mut g = FusedGeometry { n: out.layout.numel() as i64, ndim: nd as i32, ..Default::default() };
    if g.n == 0 {
        return Ok(());
    }
    let layouts: Vec<&Layout> = std::iter::once(out.layout).chain(inputs.iter().map(|x| x.layout)).collect();
    g.contiguous = i32::from(layouts.iter().all(|l| l.is_contiguous()));
    for (d, &s) in out.layout.shape().iter().enumerate() {
        g.shape[d] = s as i64;
    }
    for (w, l) in layouts.iter().enumerate() {
        g.offset[w] = l.offset() as i64;
        for (d, &s) in l.strides().iter().enumerate() {
            g.stride[w][d] = s as i64;
        }
    }
    let key = format!("fused {} {:?}", inputs.len(), program);
    let f = cuda.kernel(&key, || source(program, inputs.len()))?;
    let mut b = cuda.stream.launch_builder(&f);
    for x in inputs {
        b.arg(x.buffer.slice());
    }
    b.arg(out.buffer.slice_mut()).arg(&g);
    let cfg = cuda.linear(g.n as u64, 256, 32);
    // SAFETY: the parameters are the inputs, the output and the geometry, as generated; every
    // operand was checked against its buffer.
    cuda.timed(OP, || unsafe { b.launch(cfg) })
}

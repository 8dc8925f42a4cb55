//! Quantized matrix multiplication (`kernels/qmatmul.cu`): `y = x·Wᵀ` (or `x·W`) with `W`'s
//! planes resident on the device ([`CudaQuantized`], uploaded once by `upload_quantized`) and
//! dequantized inside the kernel, in every mode of [`strata_core::quant`]. The general kernel, a
//! thread per output element; the same algorithm as the wgpu backend's, which is checked on
//! lavapipe. A tensor-core kernel (dequantizing tiles into shared memory for `mma`) is next.

use cudarc::driver::{DeviceRepr, PushKernelArg};
use strata_core::kernel::{Backend, QuantizedMatmul, TensorMut, TensorRef};
use strata_core::quant::{MxElement, QuantMode, QuantizedTensor};
use strata_core::{DType, Error, Result};

use crate::{Cuda, CudaBuffer, ELEMENTWISE, c};

const QMATMUL: &str = include_str!("../kernels/qmatmul.cu");
const OP: &str = "quantized_matmul";

/// A quantized 2-D weight with its planes on the device: the CUDA backend's
/// `Backend::Quantized`, with the host's description of it.
pub struct CudaQuantized {
    host: QuantizedTensor,
    planes: Planes,
}

struct Planes {
    data: CudaBuffer,
    scales: CudaBuffer,
    biases: Option<CudaBuffer>,
}

/// The C layout of `QmatmulGeometry`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct QmatmulGeometry {
    total: i64,
    n: i64,
    k: i64,
    transpose: i64,
    x_cs: i64,
    o_cs: i64,
    tensor_scale: f32,
}

// SAFETY: plain old data with the C layout of `QmatmulGeometry`.
unsafe impl DeviceRepr for QmatmulGeometry {}

/// Copies a 2-D quantized weight's planes to the device (the data plane padded by a word: a
/// code may be read with the word after it).
pub(crate) fn upload(cuda: &Cuda, w: &QuantizedTensor) -> Result<CudaQuantized> {
    if w.shape().len() != 2 {
        return Err(Error::InvalidArgument {
            op: OP,
            message: format!("the weight has shape {:?}; quantized products take 2-D weights", w.shape()),
        });
    }
    let mut data = w.data().to_vec();
    data.resize(data.len().next_multiple_of(4) + 4, 0);
    let planes = Planes {
        data: cuda.upload(&data)?,
        scales: cuda.upload(&w.scales().bytes)?,
        biases: w.biases().map(|b| cuda.upload(&b.bytes)).transpose()?,
    };
    Ok(CudaQuantized { host: w.clone(), planes })
}

/// The mode's struct `Mode` (`BITS`, `BLOCK`, `weight`) in a namespace of its own.
fn mode_source(mode: &QuantMode, ns: &str) -> String {
    let minifloat = |e: MxElement| match e {
        MxElement::E4M3 => "strata::minifloat<4, 3, 7, false, true>(c)".to_owned(),
        MxElement::E5M2 => "strata::minifloat<5, 2, 15, true, false>(c)".to_owned(),
        MxElement::E3M2 => "strata::minifloat<3, 2, 3, false, false>(c)".to_owned(),
        MxElement::E2M3 => "strata::minifloat<2, 3, 1, false, false>(c)".to_owned(),
        MxElement::E2M1 => "strata::minifloat<2, 1, 1, false, false>(c)".to_owned(),
        MxElement::Int8 => "(float)(i8)(u8)c * 0.015625f".to_owned(),
    };
    let weight = match mode {
        QuantMode::Affine { scale_dtype, .. } => {
            let t = c(*scale_dtype);
            // Rounded twice, as the CPU does (no contraction into a fused multiply-add).
            format!(
                "return __fadd_rn(__fmul_rn((float)c, strata::ld(((const {t}*)sc)[b])), strata::ld(((const {t}*)bi)[b]));"
            )
        }
        QuantMode::Mx { element, .. } => format!("return {} * strata::e8m0(sc[b]);", minifloat(*element)),
        QuantMode::Nvfp4 { .. } => format!(
            "return {} * (strata::minifloat<4, 3, 7, false, true>(sc[b]) * g.tensor_scale);",
            minifloat(MxElement::E2M1)
        ),
    };
    format!(
        "namespace {ns} {{
struct Mode {{
    static const int BITS = {};
    static const i64 BLOCK = {};
    __device__ static float weight(u32 c, const u8* __restrict__ sc, const u8* __restrict__ bi,
                                   const QmatmulGeometry& g, i64 b) {{
        {weight}
    }}
}};
}}
",
        mode.element_bits(),
        mode.block_size()
    )
}

fn source(t: DType, out: DType, mode: &QuantMode) -> String {
    let ident: String = format!("{mode}").chars().map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '_' }).collect();
    let ns = format!("strata_q_{ident}_{t}_{out}");
    format!("{ELEMENTWISE}{QMATMUL}\n{}\nSTRATA_QMATMUL({}, {}, {ns}::Mode)\n", mode_source(mode, &ns), c(t), c(out))
}

/// Every mode the suite covers, for every pair of types: what CI compiles through NVRTC.
pub(crate) fn all_sources() -> Vec<String> {
    let modes = [
        "mxfp4",
        "mxfp6_e3m2",
        "mxfp6_e2m3",
        "mxfp8",
        "mxfp8_e5m2",
        "mxint8",
        "nvfp4",
        "affine:2:32",
        "affine:3:64:float16",
    ];
    let mut all = Vec::new();
    for m in modes {
        let mode: QuantMode = m.parse().expect("a mode");
        for (t, o) in [(DType::F32, DType::F32), (DType::F16, DType::F16), (DType::BF16, DType::F32)] {
            all.push(source(t, o, &mode));
        }
    }
    all.push(source(DType::BF16, DType::BF16, &"affine:4:32:bfloat16".parse().expect("a mode")));
    all
}

pub(crate) fn quantized_matmul(
    cuda: &Cuda,
    desc: &QuantizedMatmul,
    x: TensorRef<'_, CudaBuffer>,
    w: &CudaQuantized,
    out: TensorMut<'_, CudaBuffer>,
) -> Result<()> {
    let (_, n, k) = desc.validate_call(&x, w.host.shape(), &out)?;
    let planes = &w.planes;
    let total = out.layout.numel();
    if total == 0 {
        return Ok(());
    }
    let rows: Vec<i64> =
        x.layout.row_starts().zip(out.layout.row_starts()).flat_map(|(a, b)| [a as i64, b as i64]).collect();
    let rows = cuda.upload(&rows.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())?;
    let (xs, os) = (x.layout.strides(), out.layout.strides());
    let g = QmatmulGeometry {
        total: total as i64,
        n: n as i64,
        k: k as i64,
        transpose: i64::from(desc.transpose),
        x_cs: xs[xs.len() - 1] as i64,
        o_cs: os[os.len() - 1] as i64,
        tensor_scale: w.host.tensor_scale().unwrap_or(1.0),
    };
    let mode = w.host.mode();
    let f = cuda
        .kernel(&format!("quantized_matmul {} {} {mode}", x.dtype, out.dtype), || source(x.dtype, out.dtype, mode))?;
    let biases = planes.biases.as_ref().unwrap_or(&planes.scales);
    let cfg = cuda.linear(total as u64, 256, 8);
    let mut b = cuda.stream.launch_builder(&f);
    b.arg(x.buffer.slice()).arg(planes.data.slice()).arg(planes.scales.slice()).arg(biases.slice()).arg(rows.slice());
    b.arg(out.buffer.slice_mut()).arg(&g);
    // SAFETY: parameters as `STRATA_QMATMUL` declares them; x and the output were checked against
    // their buffers with the shapes the weight's planes were made for (every block index is
    // inside the scale plane, every code inside the padded data plane), and no two output
    // elements share memory.
    cuda.timed(OP, || unsafe { b.launch(cfg) })
}

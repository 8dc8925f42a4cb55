//! Quantized tensors: a data plane of narrow codes, a scale plane with one scale per block of
//! the last axis, and (affine) a bias plane — the representation Apple's Metal tensors and
//! MLX use for quantized weights, and that the kernels dequantize block by block.
//!
//! # Modes
//!
//! | mode | block | element | scale | bias | bits/elem |
//! |---|---|---|---|---|---|
//! | `mxfp8` (e4m3 or e5m2) | 32 | FP8 | E8M0 | — | 8.25 |
//! | `mxfp6` (e3m2 or e2m3) | 32 | FP6 | E8M0 | — | 6.25 |
//! | `mxfp4` | 32 | FP4 E2M1 | E8M0 | — | 4.25 |
//! | `mxint8` | 32 | INT8 × 2⁻⁶ | E8M0 | — | 8.25 |
//! | `nvfp4` | 16 | FP4 E2M1 | FP8 E4M3 × fp32 tensor scale | — | 4.5 |
//! | `affine` | 32, 64, 128 | 1–6 or 8-bit unsigned | f32/f16/bf16 | yes | bits + 2·16/group… |
//!
//! # Which MXFP4 numerics, and why
//!
//! The default, [`Numerics::Ocp`], is the OCP Microscaling spec v1.0 §6.3 rule: the block scale
//! is `X = 2^(floor(log2(amax)) − emax_elem)`, each element is `V/X` rounded to nearest-even in
//! the element format, and values beyond the element's max are clamped to ±max. It is the rule
//! the spec and its reference implementation (Microsoft's `microxcaling`, and `gfloat`) define,
//! so data we write reads back the same on every MX-capable device, and it is the only rule
//! that keeps the largest element in the top binade of the element format. Its cost is that
//! the largest magnitudes of a block can clip (for FP4, anything in (6·X, 8·X) becomes 6·X).
//!
//! Two alternatives are explicit:
//! - [`Numerics::NoClip`] rounds the scale up instead (`X = 2^ceil(log2(amax / max_elem))`,
//!   NVIDIA's "RCEIL" and torchao's `CEIL`), so nothing clips, at the price of one binade of
//!   resolution in some blocks.
//! - [`Numerics::Mlx`] reproduces `mlx.core.quantize` (0.32.4) bit for bit. Its MX scale is
//!   the never-clipping one, computed from `amax / max_elem` rounded to f32; its FP4 elements
//!   take the nearest value with ties toward the smaller magnitude, and negative values that
//!   round to zero are stored as `+0` (MLX picks the first minimum of `|x − lut|`). Use it to
//!   exchange weights with MLX. (MLX's own sources up to August 2026 round the scale to the
//!   nearest power of two instead; the 0.32.4 wheel rounds up, and that is what we match.)
//!
//! # Special values (all modes)
//!
//! - A block whose values are all zero gets the smallest scale (E8M0 `0x00`, 2⁻¹²⁷, as `gfloat`
//!   does; `0x7F` = 1.0 under [`Numerics::Mlx`], as MLX does) and zero codes.
//! - A block that holds a NaN or ±Inf gets a NaN scale (E8M0 `0xFF`, E4M3 `0x7F`, or a NaN
//!   float scale and bias for affine) and zero codes, and dequantizes to all NaN: the MX spec's
//!   meaning of a NaN scale, and what `microxcaling` and torchao produce.
//! - `f32` subnormals are ordinary small values: scales go down to 2⁻¹²⁷, below which blocks
//!   clamp to that scale and their elements flush toward zero by the element's rounding.
//!
//! # Layout
//!
//! Blocks run along the last axis. The data plane holds the codes of all elements in
//! row-major order as one little-endian bitstream ([`crate::formats::pack`]), which read as
//! `u32` words is MLX's packed weight; the scale plane holds one scale per block, row-major,
//! shape `[.., last / block]`.

mod affine;
mod mx;
mod nvfp4;

use std::fmt;
use std::str::FromStr;

use crate::DType;
use crate::error::{Error, Result};
use crate::formats::{FloatFormat, ieee, minifloat, pack};

/// The element format of an MX mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MxElement {
    /// FP8 E4M3 (`mxfp8`, the default FP8 element).
    E4M3,
    /// FP8 E5M2 (`mxfp8_e5m2`).
    E5M2,
    /// FP6 E3M2 (`mxfp6_e3m2`).
    E3M2,
    /// FP6 E2M3 (`mxfp6_e2m3`).
    E2M3,
    /// FP4 E2M1 (`mxfp4`).
    E2M1,
    /// INT8 two's complement with an implicit scale of 2⁻⁶ (`mxint8`): values -2..=1.984375.
    Int8,
}

impl MxElement {
    /// Width of one element in bits.
    pub const fn bits(self) -> u32 {
        match self {
            MxElement::E4M3 | MxElement::E5M2 | MxElement::Int8 => 8,
            MxElement::E3M2 | MxElement::E2M3 => 6,
            MxElement::E2M1 => 4,
        }
    }

    /// The element type of the data plane.
    pub const fn dtype(self) -> DType {
        match self {
            MxElement::E4M3 => DType::F8E4M3,
            MxElement::E5M2 => DType::F8E5M2,
            MxElement::E3M2 => DType::F6E3M2,
            MxElement::E2M3 => DType::F6E2M3,
            MxElement::E2M1 => DType::F4E2M1,
            MxElement::Int8 => DType::I8,
        }
    }

    /// The floating-point layout, for the float elements.
    pub const fn float_format(self) -> Option<FloatFormat> {
        self.dtype().float_format()
    }

    /// `emax_elem` of the OCP spec: the exponent of the largest power of two in range.
    pub const fn emax(self) -> i32 {
        match self.float_format() {
            Some(f) => f.emax(),
            None => 0,
        }
    }

    /// The largest element magnitude (448, 57344, 28, 7.5, 6, 127/64).
    pub const fn max_value(self) -> f32 {
        match self.float_format() {
            Some(f) => f.max_value(),
            None => 127.0 / 64.0,
        }
    }
}

/// Which rounding rules a block-scaled mode follows; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Numerics {
    /// OCP MX v1.0: scale from `floor(log2(amax))`, elements rounded to nearest-even and
    /// clamped to the element max. For nvfp4, the E4M3 block scale is `amax/6` rounded to
    /// nearest-even (NVIDIA's recipe).
    #[default]
    Ocp,
    /// Scales rounded up so no element clips; elements rounded to nearest-even.
    NoClip,
    /// Bit-compatible with `mlx.core.quantize` 0.32.
    Mlx,
}

/// The fp32 per-tensor scale of nvfp4.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum TensorScale {
    /// From the tensor's largest finite magnitude, so block scales use the whole E4M3 range:
    /// `global = amax` (NVIDIA's recipe; MLX's `global_scale = amax`).
    #[default]
    Amax,
    /// A given global amax `g` (MLX's `global_scale`): blocks are encoded against `448·6/g`
    /// and the stored tensor scale is `g/(448·6)`.
    Global(f32),
    /// No tensor scale (1.0): MLX's nvfp4 without `global_scale`.
    One,
}

/// A quantization mode: the block size, element format, scale format and rounding rules.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum QuantMode {
    /// OCP MX: 32-element blocks sharing an E8M0 scale.
    Mx {
        /// The element format.
        element: MxElement,
        /// Rounding rules.
        numerics: Numerics,
    },
    /// NVIDIA nvfp4: 16-element blocks of FP4 E2M1 with an FP8 E4M3 scale, times one fp32
    /// scale per tensor.
    Nvfp4 {
        /// How the tensor scale is chosen.
        tensor_scale: TensorScale,
        /// Rounding rules.
        numerics: Numerics,
    },
    /// MLX's affine mode: `w ≈ scale · q + bias` per group, `q` an unsigned `bits`-bit code.
    Affine {
        /// 1, 2, 3, 4, 5, 6 or 8.
        bits: u32,
        /// 32, 64 or 128.
        group_size: usize,
        /// Type of the stored scales and biases: float32, float16 or bfloat16 (MLX stores them
        /// in the weight's type).
        scale_dtype: DType,
    },
}

impl QuantMode {
    /// `mxfp4`: FP4 E2M1 elements, OCP numerics.
    pub const fn mxfp4() -> Self {
        QuantMode::Mx { element: MxElement::E2M1, numerics: Numerics::Ocp }
    }

    /// `mxfp6` with the given FP6 element (E3M2 or E2M3).
    pub const fn mxfp6(element: MxElement) -> Self {
        QuantMode::Mx { element, numerics: Numerics::Ocp }
    }

    /// `mxfp8` with the given FP8 element (E4M3 or E5M2).
    pub const fn mxfp8(element: MxElement) -> Self {
        QuantMode::Mx { element, numerics: Numerics::Ocp }
    }

    /// `mxint8`.
    pub const fn mxint8() -> Self {
        QuantMode::Mx { element: MxElement::Int8, numerics: Numerics::Ocp }
    }

    /// `nvfp4` with the tensor scale taken from the tensor's amax.
    pub const fn nvfp4() -> Self {
        QuantMode::Nvfp4 { tensor_scale: TensorScale::Amax, numerics: Numerics::Ocp }
    }

    /// MLX's affine mode with float32 scales and biases.
    pub const fn affine(bits: u32, group_size: usize) -> Self {
        QuantMode::Affine { bits, group_size, scale_dtype: DType::F32 }
    }

    /// The same mode with other rounding rules (no effect on affine, which has one rule).
    pub const fn with_numerics(self, numerics: Numerics) -> Self {
        match self {
            QuantMode::Mx { element, .. } => QuantMode::Mx { element, numerics },
            QuantMode::Nvfp4 { tensor_scale, .. } => QuantMode::Nvfp4 { tensor_scale, numerics },
            affine @ QuantMode::Affine { .. } => affine,
        }
    }

    /// Elements per block (group).
    pub const fn block_size(&self) -> usize {
        match self {
            QuantMode::Mx { .. } => 32,
            QuantMode::Nvfp4 { .. } => 16,
            QuantMode::Affine { group_size, .. } => *group_size,
        }
    }

    /// Bits per element code in the data plane.
    pub const fn element_bits(&self) -> u32 {
        match self {
            QuantMode::Mx { element, .. } => element.bits(),
            QuantMode::Nvfp4 { .. } => 4,
            QuantMode::Affine { bits, .. } => *bits,
        }
    }

    /// The type of the scale plane.
    pub const fn scale_dtype(&self) -> DType {
        match self {
            QuantMode::Mx { .. } => DType::E8M0,
            QuantMode::Nvfp4 { .. } => DType::F8E4M3,
            QuantMode::Affine { scale_dtype, .. } => *scale_dtype,
        }
    }

    /// Storage per element, scales and biases included (the tensor scale not counted).
    pub fn bits_per_element(&self) -> f64 {
        let per_block = match self {
            QuantMode::Affine { scale_dtype, .. } => 2 * scale_dtype.bits(),
            _ => self.scale_dtype().bits(),
        };
        f64::from(self.element_bits()) + f64::from(per_block) / self.block_size() as f64
    }

    /// Checks the parameters (affine bits and group size, scale type, a given tensor scale).
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| Err(Error::InvalidArgument { op: "quantize", message });
        match *self {
            QuantMode::Affine { bits, group_size, scale_dtype } => {
                if !matches!(bits, 1..=6 | 8) {
                    return invalid(format!("affine quantization supports 1, 2, 3, 4, 5, 6 or 8 bits, not {bits}"));
                }
                if !matches!(group_size, 32 | 64 | 128) {
                    return invalid(format!(
                        "affine quantization supports group sizes 32, 64 and 128, not {group_size}"
                    ));
                }
                if !matches!(scale_dtype, DType::F32 | DType::F16 | DType::BF16) {
                    return Err(Error::UnsupportedDType {
                        op: "quantize (affine scales)",
                        dtype: scale_dtype,
                        expected: "float32, float16 or bfloat16",
                    });
                }
            }
            QuantMode::Nvfp4 { tensor_scale: TensorScale::Global(g), .. } if !(g.is_finite() && g > 0.0) => {
                return invalid(format!("the nvfp4 global scale must be finite and positive, not {g}"));
            }
            _ => {}
        }
        Ok(())
    }
}

impl fmt::Display for QuantMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let numerics = match self {
            QuantMode::Mx { numerics, .. } | QuantMode::Nvfp4 { numerics, .. } => *numerics,
            QuantMode::Affine { .. } => Numerics::Ocp,
        };
        match self {
            QuantMode::Mx { element, .. } => f.write_str(match element {
                MxElement::E4M3 => "mxfp8",
                MxElement::E5M2 => "mxfp8_e5m2",
                MxElement::E3M2 => "mxfp6_e3m2",
                MxElement::E2M3 => "mxfp6_e2m3",
                MxElement::E2M1 => "mxfp4",
                MxElement::Int8 => "mxint8",
            })?,
            QuantMode::Nvfp4 { .. } => f.write_str("nvfp4")?,
            QuantMode::Affine { bits, group_size, scale_dtype } => {
                write!(f, "affine:{bits}:{group_size}")?;
                if *scale_dtype != DType::F32 {
                    write!(f, ":{scale_dtype}")?;
                }
            }
        }
        match numerics {
            Numerics::Ocp => Ok(()),
            Numerics::NoClip => f.write_str("+noclip"),
            Numerics::Mlx => f.write_str("+mlx"),
        }
    }
}

impl FromStr for QuantMode {
    type Err = Error;

    /// Parses `mxfp4`, `mxfp8[_e4m3|_e5m2]`, `mxfp6[_e3m2|_e2m3]`, `mxint8`, `nvfp4`,
    /// `affine[:BITS[:GROUP[:SCALE_DTYPE]]]` (default 4 bits, groups of 64, f32 scales), each
    /// optionally followed by `+noclip` or `+mlx`.
    fn from_str(s: &str) -> Result<Self> {
        let unknown = || {
            Error::UnknownQuantMode {
            name: s.to_string(),
            known: "mxfp4, mxfp6_e3m2, mxfp6_e2m3, mxfp8, mxfp8_e5m2, mxint8, nvfp4, affine[:BITS[:GROUP[:DTYPE]]], with an optional +noclip or +mlx".into(),
        }
        };
        let lower = s.trim().to_ascii_lowercase();
        let (base, numerics) = match lower.split_once('+') {
            None => (lower.as_str(), Numerics::Ocp),
            Some((base, "noclip")) => (base, Numerics::NoClip),
            Some((base, "mlx")) => (base, Numerics::Mlx),
            Some(_) => return Err(unknown()),
        };
        let mx = |element| QuantMode::Mx { element, numerics };
        let mode = match base {
            "mxfp4" | "mxfp4_e2m1" => mx(MxElement::E2M1),
            "mxfp6" | "mxfp6_e3m2" => mx(MxElement::E3M2),
            "mxfp6_e2m3" => mx(MxElement::E2M3),
            "mxfp8" | "mxfp8_e4m3" => mx(MxElement::E4M3),
            "mxfp8_e5m2" => mx(MxElement::E5M2),
            "mxint8" => mx(MxElement::Int8),
            "nvfp4" => QuantMode::Nvfp4 { tensor_scale: TensorScale::Amax, numerics },
            _ if base == "affine" || base.starts_with("affine:") => {
                let mut parts = base.split(':').skip(1);
                let bits = parts.next().map_or(Ok(4), str::parse).map_err(|_| unknown())?;
                let group_size = parts.next().map_or(Ok(64), str::parse).map_err(|_| unknown())?;
                let scale_dtype = parts.next().map_or(Ok(DType::F32), str::parse)?;
                if parts.next().is_some() {
                    return Err(unknown());
                }
                QuantMode::Affine { bits, group_size, scale_dtype }
            }
            _ => return Err(unknown()),
        };
        mode.validate()?;
        Ok(mode)
    }
}

/// One plane of per-block values (scales or biases): its element type and little-endian bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Plane {
    /// Element type of the plane.
    pub dtype: DType,
    /// The values, little-endian, row-major.
    pub bytes: Vec<u8>,
}

impl Plane {
    fn zeros(dtype: DType, count: usize) -> Self {
        Plane { dtype, bytes: vec![0; dtype.byte_len(count)] }
    }

    /// Number of values in the plane.
    pub fn len(&self) -> usize {
        self.bytes.len() * 8 / self.dtype.bits() as usize
    }

    /// Whether the plane is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Value `i` as an `f32` (exact for every scale type).
    pub fn get_f32(&self, i: usize) -> f32 {
        match self.dtype {
            DType::F32 => f32::from_le_bytes(self.bytes[4 * i..4 * i + 4].try_into().expect("4 bytes")),
            DType::F16 => ieee::f16_to_f32(half::f16::from_le_bytes([self.bytes[2 * i], self.bytes[2 * i + 1]])),
            DType::BF16 => ieee::bf16_to_f32(half::bf16::from_le_bytes([self.bytes[2 * i], self.bytes[2 * i + 1]])),
            other => other.decode_f32(u64::from(self.bytes[i])),
        }
    }

    /// Rounds `v` to the plane's type and stores it at `i`.
    fn set_f32(&mut self, i: usize, v: f32) {
        match self.dtype {
            DType::F32 => self.bytes[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes()),
            DType::F16 => self.bytes[2 * i..2 * i + 2].copy_from_slice(&ieee::f16_from_f32(v).to_le_bytes()),
            DType::BF16 => self.bytes[2 * i..2 * i + 2].copy_from_slice(&ieee::bf16_from_f32(v).to_le_bytes()),
            other => self.bytes[i] = other.encode_f32(v) as u8,
        }
    }

    /// Every value as `f32`.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        (0..self.len()).map(|i| self.get_f32(i)).collect()
    }
}

/// A quantized tensor: logical shape, mode, and the planes that encode it.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedTensor {
    mode: QuantMode,
    shape: Vec<usize>,
    data: Vec<u8>,
    scales: Plane,
    biases: Option<Plane>,
    tensor_scale: Option<f32>,
}

impl QuantizedTensor {
    /// Assembles a tensor from its planes (e.g. loaded from a file), checking that every plane
    /// has the size and type the mode and shape call for.
    pub fn from_parts(
        mode: QuantMode,
        shape: Vec<usize>,
        data: Vec<u8>,
        scales: Plane,
        biases: Option<Plane>,
        tensor_scale: Option<f32>,
    ) -> Result<Self> {
        const OP: &str = "QuantizedTensor::from_parts";
        mode.validate()?;
        let blocks = check_blocks(OP, &shape, &mode)?;
        let count: usize = shape.iter().product();
        let data_len = pack::packed_len(count, mode.element_bits());
        let invalid = |message: String| Err(Error::InvalidArgument { op: OP, message });
        if data.len() != data_len {
            return invalid(format!(
                "the data plane has {} bytes; {count} codes of {} bits need {data_len}",
                data.len(),
                mode.element_bits()
            ));
        }
        if scales.dtype != mode.scale_dtype() || scales.bytes.len() != mode.scale_dtype().byte_len(blocks) {
            return invalid(format!(
                "the scale plane is {} bytes of {}; {mode} needs {blocks} scales of {} ({} bytes)",
                scales.bytes.len(),
                scales.dtype,
                mode.scale_dtype(),
                mode.scale_dtype().byte_len(blocks)
            ));
        }
        let needs_bias = matches!(mode, QuantMode::Affine { .. });
        match &biases {
            Some(b) if !needs_bias => return invalid(format!("{mode} has no bias plane, but one was given")),
            None if needs_bias => return invalid("affine mode needs a bias plane".into()),
            Some(b) if b.dtype != scales.dtype || b.bytes.len() != scales.bytes.len() => {
                return invalid(format!(
                    "the bias plane ({} bytes of {}) must match the scale plane ({} bytes of {})",
                    b.bytes.len(),
                    b.dtype,
                    scales.bytes.len(),
                    scales.dtype
                ));
            }
            _ => {}
        }
        let needs_tensor_scale = matches!(mode, QuantMode::Nvfp4 { .. });
        if tensor_scale.is_some() != needs_tensor_scale {
            return invalid(format!("{mode} {} a tensor scale", if needs_tensor_scale { "needs" } else { "has no" }));
        }
        Ok(QuantizedTensor { mode, shape, data, scales, biases, tensor_scale })
    }

    /// The mode it was quantized with.
    pub fn mode(&self) -> &QuantMode {
        &self.mode
    }

    /// The logical shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of logical elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The packed element codes (little-endian bitstream, row-major).
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The data plane as little-endian `u32` words: MLX's packed weight (the last word is
    /// zero-padded if the plane is not a whole number of words).
    pub fn data_words(&self) -> Vec<u32> {
        self.data
            .chunks(4)
            .map(|c| {
                let mut w = [0u8; 4];
                w[..c.len()].copy_from_slice(c);
                u32::from_le_bytes(w)
            })
            .collect()
    }

    /// The element codes, one per byte.
    pub fn codes(&self) -> Vec<u8> {
        pack::unpack(&self.data, self.mode.element_bits(), self.len())
    }

    /// The scale plane: one scale per block, shape [`scales_shape`](Self::scales_shape).
    pub fn scales(&self) -> &Plane {
        &self.scales
    }

    /// The bias plane (affine mode only).
    pub fn biases(&self) -> Option<&Plane> {
        self.biases.as_ref()
    }

    /// The fp32 per-tensor scale (nvfp4 only): a value is `element · block scale · this`.
    pub fn tensor_scale(&self) -> Option<f32> {
        self.tensor_scale
    }

    /// The block factors: 1 along every axis but the last, the block size along it.
    pub fn block_shape(&self) -> Vec<usize> {
        let mut b = vec![1; self.shape.len()];
        if let Some(last) = b.last_mut() {
            *last = self.mode.block_size();
        }
        b
    }

    /// Shape of the scale (and bias) plane: the logical shape with the last axis divided by the
    /// block size.
    pub fn scales_shape(&self) -> Vec<usize> {
        let mut s = self.shape.clone();
        if let Some(last) = s.last_mut() {
            *last /= self.mode.block_size();
        }
        s
    }

    /// Bytes of all planes together.
    pub fn nbytes(&self) -> usize {
        self.data.len()
            + self.scales.bytes.len()
            + self.biases.as_ref().map_or(0, |b| b.bytes.len())
            + self.tensor_scale.map_or(0, |_| 4)
    }

    /// Dequantizes block `b` (row-major over the scale plane) into `out` (one block long).
    /// This is the unit the kernels work in: they never materialize the whole tensor.
    pub fn dequantize_block(&self, b: usize, out: &mut [f32]) {
        let block = self.mode.block_size();
        assert_eq!(out.len(), block, "dequantize_block: `out` must hold one block of {block}");
        let bits = self.mode.element_bits();
        let mut codes = [0u8; 128];
        let codes = &mut codes[..block];
        let first_byte = b * block * bits as usize / 8;
        pack::unpack_into(&self.data[first_byte..], bits, codes);
        match self.mode {
            QuantMode::Mx { element, .. } => mx::dequantize_block(element, self.scales.bytes[b], codes, out),
            QuantMode::Nvfp4 { .. } => {
                nvfp4::dequantize_block(self.scales.bytes[b], self.tensor_scale.unwrap_or(1.0), codes, out)
            }
            QuantMode::Affine { .. } => {
                let bias = self.biases.as_ref().expect("affine tensors carry biases").get_f32(b);
                affine::dequantize_block(self.scales.get_f32(b), bias, codes, out)
            }
        }
    }
}

/// Checks that `shape` has a last axis of whole blocks; returns the number of blocks.
fn check_blocks(op: &'static str, shape: &[usize], mode: &QuantMode) -> Result<usize> {
    let Some(&last) = shape.last() else {
        return Err(Error::InvalidArgument {
            op,
            message: "a scalar (shape []) has no last axis to split into blocks".into(),
        });
    };
    let block = mode.block_size();
    if last % block != 0 {
        return Err(Error::BlockMismatch { op, mode: mode.to_string(), shape: shape.to_vec(), len: last, block });
    }
    Ok(shape.iter().product::<usize>() / block)
}

/// Quantizes `x`, of logical `shape` (row-major), in blocks along the last axis.
///
/// Errors if `x` does not have `shape`'s element count, the last axis is not a multiple of
/// the mode's block size, or the mode's parameters are unsupported.
///
/// ```
/// use strata_core::quant::{quantize, dequantize, QuantMode};
///
/// let x: Vec<f32> = (0..128).map(|i| (i as f32 - 64.0) / 10.0).collect();
/// let q = quantize(&x, &[2, 64], &QuantMode::affine(4, 64))?;
/// assert_eq!(q.data().len(), 128 * 4 / 8);
/// let y = dequantize(&q);
/// assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() < 0.22));
/// # Ok::<(), strata_core::Error>(())
/// ```
pub fn quantize(x: &[f32], shape: &[usize], mode: &QuantMode) -> Result<QuantizedTensor> {
    const OP: &str = "quantize";
    mode.validate()?;
    let count: usize = shape.iter().product();
    if x.len() != count {
        return Err(Error::LengthMismatch {
            op: OP,
            what: "the input",
            shape: shape.to_vec(),
            expected: count,
            got: x.len(),
        });
    }
    let blocks = check_blocks(OP, shape, mode)?;
    let block = mode.block_size();
    let mut codes = vec![0u8; count];
    let mut scales = Plane::zeros(mode.scale_dtype(), blocks);
    let mut biases = None;
    let mut tensor_scale = None;
    match *mode {
        QuantMode::Mx { element, numerics } => {
            for (b, (xb, cb)) in x.chunks_exact(block).zip(codes.chunks_exact_mut(block)).enumerate() {
                scales.bytes[b] = mx::quantize_block(element, numerics, xb, cb);
            }
        }
        QuantMode::Nvfp4 { tensor_scale: ts, numerics } => {
            let global = match ts {
                TensorScale::Amax => Some(x.iter().filter(|v| v.is_finite()).fold(0.0f32, |m, v| m.max(v.abs()))),
                TensorScale::Global(g) => Some(g),
                TensorScale::One => None,
            };
            let scaling = nvfp4::TensorScaling::new(global);
            for (b, (xb, cb)) in x.chunks_exact(block).zip(codes.chunks_exact_mut(block)).enumerate() {
                scales.bytes[b] = nvfp4::quantize_block(&scaling, numerics, xb, cb);
            }
            tensor_scale = Some(scaling.decode);
        }
        QuantMode::Affine { bits, scale_dtype, .. } => {
            let mut bias_plane = Plane::zeros(scale_dtype, blocks);
            for (b, (xb, cb)) in x.chunks_exact(block).zip(codes.chunks_exact_mut(block)).enumerate() {
                let (scale, bias) = affine::quantize_block(bits, xb, cb);
                scales.set_f32(b, scale);
                bias_plane.set_f32(b, bias);
            }
            biases = Some(bias_plane);
        }
    }
    let data = pack::pack(&codes, mode.element_bits());
    Ok(QuantizedTensor { mode: *mode, shape: shape.to_vec(), data, scales, biases, tensor_scale })
}

/// Quantizes little-endian `bytes` of element type `dtype` (float32, float16 or bfloat16; the
/// 16-bit types are widened exactly). Any other type is an [`Error::UnsupportedDType`].
pub fn quantize_bytes(bytes: &[u8], dtype: DType, shape: &[usize], mode: &QuantMode) -> Result<QuantizedTensor> {
    let x: Vec<f32> = match dtype {
        DType::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect(),
        DType::F16 => bytes.chunks_exact(2).map(|c| ieee::f16_to_f32(half::f16::from_le_bytes([c[0], c[1]]))).collect(),
        DType::BF16 => {
            bytes.chunks_exact(2).map(|c| ieee::bf16_to_f32(half::bf16::from_le_bytes([c[0], c[1]]))).collect()
        }
        other => {
            return Err(Error::UnsupportedDType {
                op: "quantize",
                dtype: other,
                expected: "float32, float16 or bfloat16",
            });
        }
    };
    if bytes.len() != x.len() * (dtype.bits() as usize / 8) {
        return Err(Error::InvalidArgument {
            op: "quantize",
            message: format!("{} bytes is not a whole number of {dtype} elements", bytes.len()),
        });
    }
    quantize(&x, shape, mode)
}

/// Dequantizes to `f32`, row-major in the tensor's logical shape.
pub fn dequantize(q: &QuantizedTensor) -> Vec<f32> {
    let mut out = vec![0.0f32; q.len()];
    for (b, chunk) in out.chunks_exact_mut(q.mode.block_size()).enumerate() {
        q.dequantize_block(b, chunk);
    }
    out
}

/// `2^k` as an `f32`, for k in -149..=127 (exact, subnormals included).
fn pow2(k: i32) -> f32 {
    debug_assert!((-149..=127).contains(&k));
    if k >= -126 { f32::from_bits(((k + 127) as u32) << 23) } else { f32::from_bits(1 << (k + 149)) }
}

/// `floor(log2(a))` for a finite positive `f32`, exact (subnormals included).
fn floor_log2(a: f32) -> i32 {
    let bits = a.to_bits();
    let exp = (bits >> 23) as i32;
    if exp != 0 { exp - 127 } else { -127 - (bits.leading_zeros() as i32 - 9) }
}

/// The E4M3 layout, shared by nvfp4's scales.
const E4M3: FloatFormat = minifloat::E4M3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(pow2(-149), f32::from_bits(1));
        assert_eq!(pow2(-127), f32::from_bits(1 << 22));
        assert_eq!(pow2(3), 8.0);
        assert_eq!(floor_log2(1.0), 0);
        assert_eq!(floor_log2(7.99), 2);
        assert_eq!(floor_log2(f32::from_bits(1)), -149);
        assert_eq!(floor_log2(f32::from_bits(1 << 22)), -127);
        assert_eq!(floor_log2(f32::MAX), 127);
    }

    #[test]
    fn modes_parse_and_print() {
        for s in [
            "mxfp4",
            "mxfp8",
            "mxfp8_e5m2",
            "mxfp6_e3m2",
            "mxfp6_e2m3",
            "mxint8",
            "nvfp4",
            "affine:4:64",
            "affine:3:32:bfloat16",
            "mxfp4+mlx",
            "nvfp4+noclip",
        ] {
            let m: QuantMode = s.parse().unwrap();
            assert_eq!(m.to_string(), s);
        }
        assert_eq!("affine".parse::<QuantMode>().unwrap(), QuantMode::affine(4, 64));
        let err = "affine:7".parse::<QuantMode>().unwrap_err().to_string();
        assert!(err.contains("not 7"), "{err}");
        assert!("mxfp5".parse::<QuantMode>().is_err());
        assert!("affine:4:64:int8".parse::<QuantMode>().is_err());
    }

    #[test]
    fn bad_input_is_an_error() {
        let x = vec![1.0f32; 64];
        let e = quantize(&x, &[2, 30], &QuantMode::mxfp4()).unwrap_err();
        assert!(matches!(e, Error::LengthMismatch { expected: 60, got: 64, .. }), "{e}");
        let e = quantize(&x, &[4, 16], &QuantMode::mxfp4()).unwrap_err().to_string();
        assert!(e.contains("[4, 16]") && e.contains("16 elements") && e.contains("32-element blocks of mxfp4"), "{e}");
        assert!(quantize(&x, &[], &QuantMode::mxfp4()).is_err());
        let e = quantize(&x, &[64], &QuantMode::affine(7, 64)).unwrap_err().to_string();
        assert!(e.contains("not 7"), "{e}");
        let e = quantize(&x, &[64], &QuantMode::affine(4, 48)).unwrap_err().to_string();
        assert!(e.contains("not 48"), "{e}");
        let e = quantize_bytes(&[0; 64], DType::I32, &[16], &QuantMode::nvfp4()).unwrap_err().to_string();
        assert!(e.contains("int32 is not supported"), "{e}");
        let e =
            quantize(&x, &[64], &QuantMode::Nvfp4 { tensor_scale: TensorScale::Global(0.0), numerics: Numerics::Ocp });
        assert!(e.is_err());
    }

    #[test]
    fn from_parts_checks_planes() {
        let x: Vec<f32> = (0..64).map(|i| i as f32).collect();
        let q = quantize(&x, &[64], &QuantMode::affine(4, 32)).unwrap();
        let back = QuantizedTensor::from_parts(
            *q.mode(),
            q.shape().to_vec(),
            q.data().to_vec(),
            q.scales().clone(),
            q.biases().cloned(),
            None,
        )
        .unwrap();
        assert_eq!(back, q);
        let short = QuantizedTensor::from_parts(
            *q.mode(),
            vec![64],
            q.data()[1..].to_vec(),
            q.scales().clone(),
            q.biases().cloned(),
            None,
        );
        assert!(short.unwrap_err().to_string().contains("31 bytes"));
        let no_bias =
            QuantizedTensor::from_parts(*q.mode(), vec![64], q.data().to_vec(), q.scales().clone(), None, None);
        assert!(no_bias.is_err());
    }
}

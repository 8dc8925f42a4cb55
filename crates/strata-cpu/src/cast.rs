//! Copies between layouts and casts between any two element types.
//!
//! Casts follow NumPy and `ml_dtypes`: floats round to nearest-even (each value once: f64 →
//! FP8 rounds to odd in f32 first, as `ml_dtypes` does), integers wrap, float → integer
//! truncates (saturating for the standard integers, wrapping for the sub-byte ones, NaN → 0),
//! anything → bool is `!= 0`, complex → real drops the imaginary part. Packed sub-byte
//! tensors must be contiguous.

use half::{bf16, f16};
use strata_core::formats::pack;
use strata_core::kernel::validate_elementwise;
use strata_core::{DType, Error, Kind, Result};

use crate::strided::{gather, scatter};
use crate::{TensorMut, TensorRef};

/// `out = x` for two tensors of one type, any layouts.
pub fn copy(x: TensorRef<'_>, out: TensorMut<'_>) -> Result<()> {
    const OP: &str = "copy";
    if x.dtype != out.dtype {
        return Err(Error::InvalidArgument { op: OP, message: format!("{} into {}: use cast", x.dtype, out.dtype) });
    }
    cast(x, out)
}

/// `out = x` converted to `out`'s type, any layouts.
pub fn cast(x: TensorRef<'_>, out: TensorMut<'_>) -> Result<()> {
    const OP: &str = "cast";
    validate_elementwise(OP, &[x.layout], out.layout)?;
    x.check(OP, "the input")?;
    out.check(OP, "the output")?;
    for (t, l) in [(x.dtype, x.layout), (out.dtype, out.layout)] {
        if t.is_packed() && (!l.is_contiguous() || !(l.offset() * t.bits() as usize).is_multiple_of(8)) {
            return Err(Error::InvalidArgument {
                op: OP,
                message: format!(
                    "{t} tensors are packed several to a byte: they must be contiguous and start on a byte"
                ),
            });
        }
    }
    let values = read(x)?;
    write(&values, out);
    Ok(())
}

/// One element in a type that holds every source value exactly (but u64/i64 beyond 2^53,
/// which stay integers).
#[derive(Clone, Copy, Debug)]
enum Scalar {
    Bool(bool),
    Int(i64),
    UInt(u64),
    /// A float, and whether it came from f64 (which needs careful rounding to narrow types).
    Float(f64, bool),
    Complex(f32, f32),
}

fn read(x: TensorRef<'_>) -> Result<Vec<Scalar>> {
    let b = x.buffer;
    let l = x.layout;
    let float = |v: f64| Scalar::Float(v, false);
    Ok(match x.dtype {
        DType::Bool => gather(b.as_bytes(), l, |v: u8| Scalar::Bool(v != 0)),
        DType::U8 => gather(b.typed::<u8>(), l, |v| Scalar::UInt(v.into())),
        DType::I8 => gather(b.typed::<i8>(), l, |v| Scalar::Int(v.into())),
        DType::U16 => gather(b.typed::<u16>(), l, |v| Scalar::UInt(v.into())),
        DType::I16 => gather(b.typed::<i16>(), l, |v| Scalar::Int(v.into())),
        DType::U32 => gather(b.typed::<u32>(), l, |v| Scalar::UInt(v.into())),
        DType::I32 => gather(b.typed::<i32>(), l, |v| Scalar::Int(v.into())),
        DType::U64 => gather(b.typed::<u64>(), l, Scalar::UInt),
        DType::I64 => gather(b.typed::<i64>(), l, Scalar::Int),
        DType::F16 => gather(b.typed::<f16>(), l, |v| float(v.to_f64())),
        DType::BF16 => gather(b.typed::<bf16>(), l, |v| float(v.to_f64())),
        DType::F32 => gather(b.typed::<f32>(), l, |v| float(v.into())),
        DType::F64 => gather(b.typed::<f64>(), l, |v| Scalar::Float(v, true)),
        DType::C64 => gather(b.typed::<[f32; 2]>(), l, |v| Scalar::Complex(v[0], v[1])),
        // fp8 and E8M0: a byte an element, so any strides (floats all, decoded exactly).
        t if t.bits() == 8 => gather(b.as_bytes(), l, |c: u8| float(t.decode_f32(u64::from(c)).into())),
        t => {
            // Narrow formats: decode every code through f32 (exact).
            let n = l.numel();
            let start = l.offset() * t.bits() as usize / 8;
            let codes = pack::unpack(&b.as_bytes()[start..], t.bits(), n);
            codes
                .into_iter()
                .map(|c| match t.kind() {
                    Kind::Float => float(t.decode_f32(u64::from(c)).into()),
                    Kind::SInt => Scalar::Int(t.decode_f32(u64::from(c)) as i64),
                    _ => Scalar::UInt(t.decode_f32(u64::from(c)) as u64),
                })
                .collect()
        }
    })
}

impl Scalar {
    fn as_f64(self) -> f64 {
        match self {
            Scalar::Bool(b) => b as u8 as f64,
            Scalar::Int(i) => i as f64,
            Scalar::UInt(u) => u as f64,
            Scalar::Float(f, _) => f,
            Scalar::Complex(r, _) => r as f64,
        }
    }

    /// As f32 with one rounding (f64 sources go through round-to-odd, so that a second
    /// rounding to a narrower format is still correct; integers convert directly).
    fn as_f32_for_narrow(self) -> f32 {
        match self {
            Scalar::Float(f, true) => round_to_odd_f32(f),
            Scalar::Int(i) => i as f32,
            Scalar::UInt(u) => u as f32,
            s => s.as_f64() as f32,
        }
    }

    /// As f32, rounded once to nearest.
    fn as_f32(self) -> f32 {
        match self {
            Scalar::Int(i) => i as f32,
            Scalar::UInt(u) => u as f32,
            s => s.as_f64() as f32,
        }
    }

    fn is_nonzero(self) -> bool {
        match self {
            Scalar::Bool(b) => b,
            Scalar::Int(i) => i != 0,
            Scalar::UInt(u) => u != 0,
            Scalar::Float(f, _) => f != 0.0,
            Scalar::Complex(r, i) => r != 0.0 || i != 0.0,
        }
    }

    /// As an integer, wrapping (integers) or truncating and saturating (floats, NaN → 0).
    fn as_i64_wrapping(self) -> i64 {
        match self {
            Scalar::Bool(b) => b as i64,
            Scalar::Int(i) => i,
            Scalar::UInt(u) => u as i64,
            s => s.as_f64() as i64,
        }
    }
}

/// `f64 → f32` rounding toward zero, then setting the last bit if anything was lost: a
/// later rounding to fewer bits is then exactly the single rounding of the f64.
fn round_to_odd_f32(v: f64) -> f32 {
    let r = v as f32;
    if r.is_nan() || r.is_infinite() || r as f64 == v {
        return r;
    }
    // Truncate toward zero: step back one ulp if nearest rounding went away from zero.
    let mut t = r;
    if (t as f64).abs() > v.abs() {
        t = f32::from_bits(t.to_bits() - 1);
    }
    f32::from_bits(t.to_bits() | 1)
}

fn write(values: &[Scalar], out: TensorMut<'_>) {
    let l = out.layout;
    let b = out.buffer;
    macro_rules! int {
        ($t:ty) => {
            scatter(values, b.typed_mut::<$t>(), l, |s: Scalar| match s {
                // Float -> int: truncate and saturate to the target (Rust's `as`), NaN -> 0.
                Scalar::Float(..) | Scalar::Complex(..) => s.as_f64() as $t,
                s => s.as_i64_wrapping() as $t,
            })
        };
    }
    match out.dtype {
        DType::Bool => scatter(values, b.as_bytes_mut(), l, |s| s.is_nonzero() as u8),
        DType::U8 => int!(u8),
        DType::I8 => int!(i8),
        DType::U16 => int!(u16),
        DType::I16 => int!(i16),
        DType::U32 => int!(u32),
        DType::I32 => int!(i32),
        DType::U64 => scatter(values, b.typed_mut::<u64>(), l, |s| match s {
            Scalar::Float(..) | Scalar::Complex(..) => s.as_f64() as u64,
            Scalar::UInt(u) => u,
            s => s.as_i64_wrapping() as u64,
        }),
        DType::I64 => int!(i64),
        DType::F16 => scatter(values, b.typed_mut::<f16>(), l, |s| match s {
            Scalar::Float(f, _) => f16::from_f64(f),
            s => f16::from_f64(s.as_f64()),
        }),
        DType::BF16 => scatter(values, b.typed_mut::<bf16>(), l, |s| match s {
            Scalar::Float(f, _) => bf16::from_f64(f),
            // ml_dtypes converts integers to bfloat16 through float32.
            s => bf16::from_f32(s.as_f32()),
        }),
        DType::F32 => scatter(values, b.typed_mut::<f32>(), l, |s| s.as_f32()),
        DType::F64 => scatter(values, b.typed_mut::<f64>(), l, |s| s.as_f64()),
        DType::C64 => scatter(values, b.typed_mut::<[f32; 2]>(), l, |s| match s {
            Scalar::Complex(r, i) => [r, i],
            s => [s.as_f32(), 0.0],
        }),
        t if t.bits() == 8 => scatter(values, b.as_bytes_mut(), l, |s| t.encode_f32(s.as_f32_for_narrow()) as u8),
        t => {
            let codes: Vec<u8> = values
                .iter()
                .map(|&s| match t.int_format() {
                    Some(f) => match s {
                        Scalar::Float(..) | Scalar::Complex(..) => {
                            let v = s.as_f64();
                            if v.is_finite() && v.abs() < 9.2e18 { f.wrap(v as i64) as u8 } else { 0 }
                        }
                        s => f.wrap(s.as_i64_wrapping()) as u8,
                    },
                    None => t.encode_f32(s.as_f32_for_narrow()) as u8,
                })
                .collect();
            let start = l.offset() * t.bits() as usize / 8;
            let bytes = b.as_bytes_mut();
            let len = pack::packed_len(codes.len(), t.bits());
            let dst = &mut bytes[start..start + len];
            // A partial last byte keeps the bits beyond the tensor.
            let keep = if len > 0 { dst[len - 1] } else { 0 };
            dst.fill(0);
            pack::pack_into(&codes, t.bits(), dst);
            let used = codes.len() * t.bits() as usize % 8;
            if used != 0 {
                dst[len - 1] |= keep & !((1u8 << used) - 1);
            }
        }
    }
}

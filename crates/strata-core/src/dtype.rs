//! Element types: the standard numeric types, complex64, and the narrow formats of the OCP
//! Microscaling spec and `ml_dtypes`.
//!
//! Everything a backend or the array layer needs to know about a type comes from the one
//! table in this file ([`dtypes!`]): its name, width and kind. Conversions of single values
//! to and from `f32` ([`DType::encode_f32`], [`DType::decode_f32`]) follow `ml_dtypes`/NumPy
//! bit for bit for the floating and sub-byte types; see [`crate::formats`] for the rules.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::formats::{self, FloatFormat, IntFormat, Overflow, ieee, minifloat};

/// What kind of number a type holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `bool`.
    Bool,
    /// Unsigned integer.
    UInt,
    /// Two's complement integer.
    SInt,
    /// Binary floating point (including the narrow formats and E8M0).
    Float,
    /// Complex floating point.
    Complex,
}

macro_rules! dtypes {
    ($($variant:ident => $name:literal, $bits:literal, $kind:ident, [$($alias:literal),*], $doc:literal;)*) => {
        /// An element type.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum DType {
            $(#[doc = $doc] $variant,)*
        }

        impl DType {
            /// Every type, in declaration order.
            pub const ALL: &'static [DType] = &[$(DType::$variant),*];

            /// Canonical name (NumPy / `ml_dtypes` spelling).
            pub const fn name(self) -> &'static str {
                match self { $(DType::$variant => $name,)* }
            }

            /// Width of one element in bits.
            pub const fn bits(self) -> u32 {
                match self { $(DType::$variant => $bits,)* }
            }

            /// What kind of number it holds.
            pub const fn kind(self) -> Kind {
                match self { $(DType::$variant => Kind::$kind,)* }
            }

            fn aliases(self) -> &'static [&'static str] {
                match self { $(DType::$variant => &[$($alias),*],)* }
            }
        }
    };
}

dtypes! {
    Bool    => "bool",           8,  Bool,    ["b1"],                 "Boolean, one byte (0 or 1).";
    U8      => "uint8",          8,  UInt,    ["u8"],                 "Unsigned 8-bit integer.";
    I8      => "int8",           8,  SInt,    ["i8"],                 "Signed 8-bit integer.";
    U16     => "uint16",         16, UInt,    ["u16"],                "Unsigned 16-bit integer.";
    I16     => "int16",          16, SInt,    ["i16"],                "Signed 16-bit integer.";
    U32     => "uint32",         32, UInt,    ["u32"],                "Unsigned 32-bit integer.";
    I32     => "int32",          32, SInt,    ["i32"],                "Signed 32-bit integer.";
    U64     => "uint64",         64, UInt,    ["u64"],                "Unsigned 64-bit integer.";
    I64     => "int64",          64, SInt,    ["i64"],                "Signed 64-bit integer.";
    F16     => "float16",        16, Float,   ["f16", "half"],        "IEEE binary16.";
    BF16    => "bfloat16",       16, Float,   ["bf16"],               "bfloat16: f32's exponent, 7 mantissa bits.";
    F32     => "float32",        32, Float,   ["f32", "float"],       "IEEE binary32.";
    F64     => "float64",        64, Float,   ["f64", "double"],      "IEEE binary64.";
    C64     => "complex64",      64, Complex, ["c64"],                "Complex number of two `f32` (real, imaginary).";
    F8E4M3  => "float8_e4m3fn",  8,  Float,   ["f8e4m3", "e4m3", "fp8_e4m3"], "OCP FP8 E4M3: max ±448, NaN `S.1111.111`, no Inf.";
    F8E5M2  => "float8_e5m2",    8,  Float,   ["f8e5m2", "e5m2", "fp8_e5m2"], "OCP FP8 E5M2: max ±57344, Inf and NaN.";
    F6E3M2  => "float6_e3m2fn",  6,  Float,   ["f6e3m2", "e3m2", "fp6_e3m2"], "OCP FP6 E3M2: max ±28, all finite.";
    F6E2M3  => "float6_e2m3fn",  6,  Float,   ["f6e2m3", "e2m3", "fp6_e2m3"], "OCP FP6 E2M3: max ±7.5, all finite.";
    F4E2M1  => "float4_e2m1fn",  4,  Float,   ["f4e2m1", "e2m1", "fp4", "fp4_e2m1"], "OCP FP4 E2M1: ±{0, .5, 1, 1.5, 2, 3, 4, 6}.";
    E8M0    => "float8_e8m0fnu", 8,  Float,   ["e8m0"],               "OCP E8M0 scale: 2^(c-127), `0xFF` NaN, no zero, unsigned.";
    I4      => "int4",           4,  SInt,    ["i4"],                 "Signed 4-bit integer, -8..=7.";
    U4      => "uint4",          4,  UInt,    ["u4"],                 "Unsigned 4-bit integer, 0..=15.";
    I2      => "int2",           2,  SInt,    ["i2"],                 "Signed 2-bit integer, -2..=1.";
    U2      => "uint2",          2,  UInt,    ["u2"],                 "Unsigned 2-bit integer, 0..=3.";
}

impl DType {
    /// Bytes that `count` elements occupy, sub-byte types packed ([`formats::pack`]).
    pub const fn byte_len(self, count: usize) -> usize {
        formats::pack::packed_len(count, self.bits())
    }

    /// Whether elements are narrower than a byte and stored packed.
    pub const fn is_packed(self) -> bool {
        self.bits() < 8
    }

    /// Whether this is a floating-point type (complex excluded).
    pub const fn is_float(self) -> bool {
        matches!(self.kind(), Kind::Float)
    }

    /// Whether this is an integer type (bool excluded).
    pub const fn is_integer(self) -> bool {
        matches!(self.kind(), Kind::UInt | Kind::SInt)
    }

    /// The layout of a narrow floating-point type, if this is one.
    pub const fn float_format(self) -> Option<FloatFormat> {
        match self {
            DType::F8E4M3 => Some(minifloat::E4M3),
            DType::F8E5M2 => Some(minifloat::E5M2),
            DType::F6E3M2 => Some(minifloat::E3M2),
            DType::F6E2M3 => Some(minifloat::E2M3),
            DType::F4E2M1 => Some(minifloat::E2M1),
            DType::E8M0 => Some(minifloat::E8M0),
            _ => None,
        }
    }

    /// The layout of a sub-byte integer type, if this is one.
    pub const fn int_format(self) -> Option<IntFormat> {
        match self {
            DType::I4 => Some(formats::INT4),
            DType::U4 => Some(formats::UINT4),
            DType::I2 => Some(formats::INT2),
            DType::U2 => Some(formats::UINT2),
            _ => None,
        }
    }

    /// Converts one `f32` to this type's bit pattern (in the low [`bits`](Self::bits) bits),
    /// as NumPy/`ml_dtypes` `astype` does for the floating and sub-byte types. Standard integer
    /// types truncate toward zero and saturate (Rust's `as`; NumPy leaves out-of-range float →
    /// int casts undefined), NaN giving 0; `bool` is `x != 0` (NaN is true); complex64 takes
    /// `x` as its real part.
    pub fn encode_f32(self, x: f32) -> u64 {
        if let Some(fmt) = self.float_format() {
            return u64::from(fmt.encode(x, Overflow::Special));
        }
        if let Some(fmt) = self.int_format() {
            return u64::from(fmt.encode(x));
        }
        match self {
            DType::Bool => u64::from(x != 0.0),
            DType::U8 => u64::from(x as u8),
            DType::I8 => u64::from((x as i8) as u8),
            DType::U16 => u64::from(x as u16),
            DType::I16 => u64::from((x as i16) as u16),
            DType::U32 => u64::from(x as u32),
            DType::I32 => u64::from((x as i32) as u32),
            DType::U64 => x as u64,
            DType::I64 => (x as i64) as u64,
            DType::F16 => u64::from(ieee::f16_from_f32(x).to_bits()),
            DType::BF16 => u64::from(ieee::bf16_from_f32(x).to_bits()),
            DType::F32 => u64::from(x.to_bits()),
            DType::F64 => f64::from(x).to_bits(),
            DType::C64 => u64::from(x.to_bits()),
            _ => unreachable!("narrow types are handled above"),
        }
    }

    /// The value of a bit pattern as an `f32`: exact for every type of 16 bits or fewer,
    /// rounded to nearest for the wider ones; complex64 gives its real part.
    pub fn decode_f32(self, bits: u64) -> f32 {
        if let Some(fmt) = self.float_format() {
            return fmt.decode(bits as u32);
        }
        if let Some(fmt) = self.int_format() {
            return fmt.decode(bits as u32) as f32;
        }
        match self {
            DType::Bool => f32::from(u8::from(bits & 0xFF != 0)),
            DType::U8 => f32::from(bits as u8),
            DType::I8 => f32::from(bits as u8 as i8),
            DType::U16 => f32::from(bits as u16),
            DType::I16 => f32::from(bits as u16 as i16),
            DType::U32 => bits as u32 as f32,
            DType::I32 => bits as u32 as i32 as f32,
            DType::U64 => bits as f32,
            DType::I64 => bits as i64 as f32,
            DType::F16 => ieee::f16_to_f32(half::f16::from_bits(bits as u16)),
            DType::BF16 => ieee::bf16_to_f32(half::bf16::from_bits(bits as u16)),
            DType::F32 | DType::C64 => f32::from_bits(bits as u32),
            DType::F64 => f64::from_bits(bits) as f32,
            _ => unreachable!("narrow types are handled above"),
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = Error;

    /// Parses a canonical name (`"float8_e4m3fn"`) or a short alias (`"e4m3"`, `"bf16"`),
    /// ignoring case.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        DType::ALL.iter().copied().find(|d| d.name() == s || d.aliases().contains(&s.as_str())).ok_or_else(|| {
            Error::UnknownDType { name: s, known: DType::ALL.iter().map(|d| d.name()).collect::<Vec<_>>().join(", ") }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for &d in DType::ALL {
            assert_eq!(d.name().parse::<DType>().unwrap(), d);
            for alias in d.aliases() {
                assert_eq!(alias.parse::<DType>().unwrap(), d);
            }
        }
        let err = "float7".parse::<DType>().unwrap_err().to_string();
        assert!(err.contains("float7") && err.contains("float8_e4m3fn"), "{err}");
    }

    #[test]
    fn widths() {
        assert_eq!(DType::F4E2M1.byte_len(3), 2);
        assert_eq!(DType::F6E3M2.byte_len(4), 3);
        assert_eq!(DType::C64.byte_len(2), 16);
        assert!(DType::I2.is_packed() && !DType::F8E4M3.is_packed());
    }

    #[test]
    fn encode_decode_agree_on_exact_values() {
        for &d in DType::ALL {
            let v = if d == DType::E8M0 { 4.0 } else { 1.0 };
            assert_eq!(d.decode_f32(d.encode_f32(v)), v, "{d}");
        }
    }
}

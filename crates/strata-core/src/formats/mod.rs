//! Element formats narrower than 32 bits, correct to the bit.
//!
//! | type | format | max | NaN | Inf | `f32` → format overflow |
//! |---|---|---|---|---|---|
//! | [`f16`] | IEEE binary16 | 65504 | yes | yes | ±Inf |
//! | [`bf16`] | bfloat16 | 3.39e38 | yes | yes | ±Inf |
//! | [`F8E4M3`] | OCP FP8 E4M3 ("fn") | 448 | `S.1111.111` | no | NaN |
//! | [`F8E5M2`] | OCP FP8 E5M2 | 57344 | yes | yes | ±Inf |
//! | [`F6E3M2`] | OCP FP6 E3M2 | 28 | no | no | ±28 |
//! | [`F6E2M3`] | OCP FP6 E2M3 | 7.5 | no | no | ±7.5 |
//! | [`F4E2M1`] | OCP FP4 E2M1 | 6 | no | no | ±6 |
//! | [`E8M0`] | OCP E8M0 scale | 2^127 | `0xFF` | no | NaN |
//! | [`I4`], [`U4`], [`I2`], [`U2`] | two's complement / unsigned | 7, 15, 1, 3 | — | — | wraps |
//!
//! **Casting follows `ml_dtypes` 0.6 exactly** (and NumPy for `f16`): round to nearest, ties
//! to even; overflow and NaN as in the table and in [`FloatFormat::encode`]; sub-byte integers
//! truncate toward zero and wrap, NaN/Inf giving 0 ([`IntFormat::encode`]). The tests compare
//! every code's decoding and millions of encodings against `ml_dtypes` (`scripts/refs`).
//! Where a saturating conversion is wanted (as the MX quantizers do), use
//! [`FloatFormat::encode`] with [`Overflow::Saturate`] or the `from_f32_saturating`
//! constructors.
//!
//! Sub-byte codes are stored packed, little-endian, first element in the lowest bits
//! ([`pack`]).

pub mod ieee;
pub mod intn;
pub mod minifloat;
pub mod pack;

pub use half::{bf16, f16};
pub use intn::{INT2, INT4, IntFormat, UINT2, UINT4};
pub use minifloat::{FloatFormat, Overflow, Specials};

use std::cmp::Ordering;
use std::fmt;

macro_rules! minifloat_type {
    ($(#[$doc:meta])* $name:ident, $format:expr, $codes:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default)]
        #[repr(transparent)]
        pub struct $name(u8);

        impl $name {
            /// The format's layout and properties.
            pub const FORMAT: FloatFormat = $format;
            const TABLE: [f32; $codes] = minifloat::decode_table::<$codes>($format);
            /// The largest finite value.
            pub const MAX: Self = Self($format.max_code() as u8);
            /// The smallest positive normal value.
            pub const MIN_POSITIVE: Self = Self($format.encode($format.min_normal(), Overflow::Special) as u8);

            /// The value with this bit pattern (bits above the format's width are ignored).
            pub const fn from_bits(bits: u8) -> Self {
                Self(bits & (($codes - 1) as u8))
            }

            /// The bit pattern, in the low bits of a byte.
            pub const fn to_bits(self) -> u8 {
                self.0
            }

            /// Rounds an `f32` to nearest-even as `ml_dtypes`' `astype` does
            /// ([`Overflow::Special`]).
            pub const fn from_f32(x: f32) -> Self {
                Self($format.encode(x, Overflow::Special) as u8)
            }

            /// Rounds an `f32` to nearest-even, clamping overflow and ±Inf to ±max.
            pub const fn from_f32_saturating(x: f32) -> Self {
                Self($format.encode(x, Overflow::Saturate) as u8)
            }

            /// The exact value as an `f32`.
            pub const fn to_f32(self) -> f32 {
                Self::TABLE[self.0 as usize]
            }

            /// Whether this is NaN.
            pub const fn is_nan(self) -> bool {
                $format.is_nan(self.0 as u32)
            }

            /// Whether this is neither NaN nor infinite.
            pub const fn is_finite(self) -> bool {
                !$format.is_nan(self.0 as u32) && !$format.is_inf(self.0 as u32)
            }
        }

        impl From<$name> for f32 {
            fn from(x: $name) -> f32 {
                x.to_f32()
            }
        }

        impl PartialEq for $name {
            /// Numeric equality: `-0 == +0` and NaN is unequal to everything.
            fn eq(&self, other: &Self) -> bool {
                self.to_f32() == other.to_f32()
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                self.to_f32().partial_cmp(&other.to_f32())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?} = {:#04x})", stringify!($name), self.to_f32(), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.to_f32(), f)
            }
        }
    };
}

minifloat_type!(
    /// OCP FP8 E4M3 (`ml_dtypes.float8_e4m3fn`): max ±448, NaN `S.1111.111`, no Inf.
    F8E4M3, minifloat::E4M3, 256
);
minifloat_type!(
    /// OCP FP8 E5M2 (`ml_dtypes.float8_e5m2`): max ±57344, IEEE-like Inf and NaN.
    F8E5M2, minifloat::E5M2, 256
);
minifloat_type!(
    /// OCP FP6 E3M2 (`ml_dtypes.float6_e3m2fn`): max ±28, every code finite.
    F6E3M2, minifloat::E3M2, 64
);
minifloat_type!(
    /// OCP FP6 E2M3 (`ml_dtypes.float6_e2m3fn`): max ±7.5, every code finite.
    F6E2M3, minifloat::E2M3, 64
);
minifloat_type!(
    /// OCP FP4 E2M1 (`ml_dtypes.float4_e2m1fn`): {0, 0.5, 1, 1.5, 2, 3, 4, 6} and negatives.
    F4E2M1, minifloat::E2M1, 16
);
minifloat_type!(
    /// OCP E8M0 (`ml_dtypes.float8_e8m0fnu`): the MX block scale `2^(c-127)`, `0xFF` NaN.
    E8M0, minifloat::E8M0, 256
);

impl E8M0 {
    /// The scale `2^exponent`, for `exponent` in -127..=127.
    pub const fn from_exponent(exponent: i32) -> Option<Self> {
        if exponent < -127 || exponent > 127 { None } else { Some(Self((exponent + 127) as u8)) }
    }

    /// The power of two this scale denotes, or `None` for NaN.
    pub const fn exponent(self) -> Option<i32> {
        if self.0 == 0xFF { None } else { Some(self.0 as i32 - 127) }
    }
}

macro_rules! intn_type {
    ($(#[$doc:meta])* $name:ident, $format:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(transparent)]
        pub struct $name(u8);

        impl $name {
            /// The format's width and range.
            pub const FORMAT: IntFormat = $format;
            /// The largest value.
            pub const MAX: Self = Self::wrapping_from_i64($format.max() as i64);
            /// The smallest value.
            pub const MIN: Self = Self::wrapping_from_i64($format.min() as i64);

            /// The value with this bit pattern (bits above the width are ignored).
            pub const fn from_bits(bits: u8) -> Self {
                Self($format.wrap(bits as i64) as u8)
            }

            /// The bit pattern, in the low bits of a byte.
            pub const fn to_bits(self) -> u8 {
                self.0
            }

            /// `v` modulo `2^bits`.
            pub const fn wrapping_from_i64(v: i64) -> Self {
                Self($format.wrap(v) as u8)
            }

            /// `v` if it is in range.
            pub const fn checked_from_i64(v: i64) -> Option<Self> {
                if v < $format.min() as i64 || v > $format.max() as i64 { None } else { Some(Self::wrapping_from_i64(v)) }
            }

            /// Converts an `f32` as `ml_dtypes` does ([`IntFormat::encode`]).
            pub const fn from_f32(x: f32) -> Self {
                Self($format.encode(x) as u8)
            }

            /// The value.
            pub const fn to_i32(self) -> i32 {
                $format.decode(self.0 as u32)
            }

            /// The value as an `f32` (exact).
            pub const fn to_f32(self) -> f32 {
                self.to_i32() as f32
            }
        }

        impl From<$name> for i32 {
            fn from(x: $name) -> i32 {
                x.to_i32()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_i32())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.to_i32(), f)
            }
        }
    };
}

intn_type!(
    /// `ml_dtypes.int4`: a two's complement 4-bit integer, -8..=7.
    I4, INT4
);
intn_type!(
    /// `ml_dtypes.uint4`: an unsigned 4-bit integer, 0..=15.
    U4, UINT4
);
intn_type!(
    /// `ml_dtypes.int2`: a two's complement 2-bit integer, -2..=1.
    I2, INT2
);
intn_type!(
    /// `ml_dtypes.uint2`: an unsigned 2-bit integer, 0..=3.
    U2, UINT2
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_wrappers() {
        assert_eq!(F8E4M3::MAX.to_f32(), 448.0);
        assert_eq!(F8E4M3::from_f32(1e6).to_bits(), 0x7F);
        assert!(F8E4M3::from_f32(1e6).is_nan());
        assert_eq!(F8E4M3::from_f32_saturating(1e6), F8E4M3::MAX);
        assert_eq!(F8E5M2::from_f32(1e6).to_f32(), f32::INFINITY);
        assert_eq!(F4E2M1::from_f32(2.5).to_f32(), 2.0);
        assert_eq!(F4E2M1::from_f32(-0.0), F4E2M1::from_f32(0.0));
        assert_eq!(F6E2M3::MIN_POSITIVE.to_f32(), 1.0);
        assert_eq!(E8M0::from_exponent(-3).unwrap().to_f32(), 0.125);
        assert_eq!(E8M0::from_f32(3.0).exponent(), Some(2));
        assert_eq!(I4::from_f32(-7.9).to_i32(), -7);
        assert_eq!((I4::MIN.to_i32(), U2::MAX.to_i32()), (-8, 3));
        assert_eq!(format!("{}", F8E4M3::from_f32(0.3)), "0.3125");
    }
}

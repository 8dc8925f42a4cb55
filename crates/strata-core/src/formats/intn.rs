//! Sub-byte integers: `int4`, `uint4`, `int2`, `uint2`, as `ml_dtypes` defines them.

/// A sub-byte integer format: its width and whether it is two's complement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IntFormat {
    /// Canonical name, as `ml_dtypes` spells it.
    pub name: &'static str,
    /// Width in bits.
    pub bits: u32,
    /// Two's complement (`int4`, `int2`) or unsigned.
    pub signed: bool,
}

impl IntFormat {
    /// The smallest value.
    pub const fn min(&self) -> i32 {
        if self.signed { -(1 << (self.bits - 1)) } else { 0 }
    }

    /// The largest value.
    pub const fn max(&self) -> i32 {
        if self.signed { (1 << (self.bits - 1)) - 1 } else { (1 << self.bits) - 1 }
    }

    const fn mask(&self) -> u32 {
        (1 << self.bits) - 1
    }

    /// The code of `v` wrapped modulo `2^bits` (C++'s narrowing, what `ml_dtypes` does).
    pub const fn wrap(&self, v: i64) -> u32 {
        (v as u32) & self.mask()
    }

    /// The value a code denotes (sign-extended for signed formats).
    pub const fn decode(&self, code: u32) -> i32 {
        let code = code & self.mask();
        if self.signed && code >> (self.bits - 1) != 0 { code as i32 - (1 << self.bits) } else { code as i32 }
    }

    /// Converts an `f32` as `ml_dtypes` does on x86-64: truncate toward zero, then wrap modulo
    /// `2^bits`. NaN, ±Inf and magnitudes of 2^31 and beyond become 0 (the CPU's conversion
    /// yields `i32::MIN`, whose low bits are zero; any float that large is a multiple of 16
    /// anyway, so wrapping its true value gives 0 too).
    pub const fn encode(&self, x: f32) -> u32 {
        let abs = f32::from_bits(x.to_bits() & 0x7FFF_FFFF);
        if abs.is_nan() || abs >= 2_147_483_648.0 {
            return 0;
        }
        self.wrap(x as i64)
    }
}

/// `ml_dtypes.int4`: -8..=7.
pub const INT4: IntFormat = IntFormat { name: "int4", bits: 4, signed: true };
/// `ml_dtypes.uint4`: 0..=15.
pub const UINT4: IntFormat = IntFormat { name: "uint4", bits: 4, signed: false };
/// `ml_dtypes.int2`: -2..=1.
pub const INT2: IntFormat = IntFormat { name: "int2", bits: 2, signed: true };
/// `ml_dtypes.uint2`: 0..=3.
pub const UINT2: IntFormat = IntFormat { name: "uint2", bits: 2, signed: false };

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_wrapping() {
        assert_eq!((INT4.min(), INT4.max()), (-8, 7));
        assert_eq!((UINT2.min(), UINT2.max()), (0, 3));
        assert_eq!(INT4.decode(INT4.encode(8.5)), -8);
        assert_eq!(INT4.decode(INT4.encode(-3.7)), -3);
        assert_eq!(UINT2.decode(UINT2.encode(-3.3)), 1);
        assert_eq!(INT2.encode(f32::NAN), 0);
        assert_eq!(UINT4.encode(f32::INFINITY), 0);
        assert_eq!(UINT4.encode(3e9), 0);
    }
}

//! Narrow binary floating-point formats: FP8 (E4M3, E5M2), FP6 (E3M2, E2M3), FP4 (E2M1) and
//! the E8M0 scale format of the OCP Microscaling spec.
//!
//! One generic codec, [`FloatFormat`], is parameterised by a format's exponent and mantissa
//! widths, bias and special-value encoding; the typed wrappers in [`super`] ([`F8E4M3`] and
//! friends) are thin newtypes over it. The conversion from `f32` is a port of the algorithm
//! `ml_dtypes` uses (`ConvertImpl` in `float8.h`): normalize, round the mantissa to nearest-even
//! with the carry flowing into the exponent, then detect overflow. Following it step for step
//! is what makes us bit-exact with `ml_dtypes`, which the tests check exhaustively.
//!
//! [`F8E4M3`]: super::F8E4M3

/// How a format uses its codes beyond the finite numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Specials {
    /// IEEE-754-like: the all-ones exponent holds ±Inf (zero mantissa) and NaN (any other
    /// mantissa). FP8 E5M2.
    Ieee,
    /// OCP "fn" (finite + NaN): no infinities; only `S.1111.111` is NaN, so the all-ones
    /// exponent carries ordinary numbers. FP8 E4M3.
    NanOnly,
    /// Every code is a finite number: no Inf, no NaN. FP6 E3M2/E2M3 and FP4 E2M1.
    Finite,
    /// Unsigned exponent-only format with no zero: code `c` is `2^(c-127)` and `0xFF` is NaN.
    /// E8M0, the MX block scale.
    E8M0,
}

/// What converting a value beyond the largest finite number produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Overflow {
    /// What `ml_dtypes` / NumPy `astype` does: ±Inf where the format has it (E5M2), NaN where
    /// it has NaN but no Inf (E4M3, E8M0), the largest finite value where it has neither
    /// (FP6, FP4). NaN inputs become the format's NaN.
    #[default]
    Special,
    /// Clamp finite overflow and ±Inf to ±max finite (PTX's `satfinite`, the OCP MX rule for
    /// elements). NaN still becomes the format's NaN.
    Saturate,
}

/// A narrow floating-point format, described by its bit layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FloatFormat {
    /// Canonical name, as `ml_dtypes` spells it.
    pub name: &'static str,
    /// Width of the exponent field in bits.
    pub exponent_bits: u32,
    /// Width of the stored mantissa (fraction) field in bits.
    pub mantissa_bits: u32,
    /// Exponent bias.
    pub bias: i32,
    /// Whether the format has a sign bit (all but E8M0).
    pub signed: bool,
    /// How the format uses its special codes.
    pub specials: Specials,
}

/// The f32 quiet NaN that `ml_dtypes` produces when it decodes a NaN code.
const F32_QNAN: u32 = 0x7FC0_0000;
const F32_SIGN: u32 = 0x8000_0000;
const F32_MANT_BITS: u32 = 23;
const F32_BIAS: i32 = 127;

impl FloatFormat {
    /// Total width in bits.
    pub const fn bits(&self) -> u32 {
        self.signed as u32 + self.exponent_bits + self.mantissa_bits
    }

    /// Number of distinct codes (`2^bits`).
    pub const fn code_count(&self) -> usize {
        1 << self.bits()
    }

    const fn sign_mask(&self) -> u32 {
        if self.signed { 1 << (self.bits() - 1) } else { 0 }
    }

    const fn magnitude_mask(&self) -> u32 {
        (1 << (self.exponent_bits + self.mantissa_bits)) - 1
    }

    /// The code of the largest finite value.
    pub const fn max_code(&self) -> u32 {
        let e = self.exponent_bits;
        let m = self.mantissa_bits;
        match self.specials {
            Specials::Ieee => (((1 << e) - 2) << m) | ((1 << m) - 1),
            Specials::NanOnly => self.magnitude_mask() - 1,
            Specials::Finite => self.magnitude_mask(),
            Specials::E8M0 => 0xFE,
        }
    }

    /// The code `ml_dtypes` uses for NaN (positive sign), if the format has NaN.
    ///
    /// For the all-finite formats `ml_dtypes` maps NaN to `-0` (its "implementation-defined"
    /// choice, see [`Self::encode`]); that is not a NaN code, so this returns `None` for them.
    pub const fn nan_code(&self) -> Option<u32> {
        match self.specials {
            // Quiet NaN: all-ones exponent, top mantissa bit set (E5M2: 0x7E).
            Specials::Ieee => {
                Some((((1 << self.exponent_bits) - 1) << self.mantissa_bits) | (1 << (self.mantissa_bits - 1)))
            }
            Specials::NanOnly => Some(self.magnitude_mask()),
            Specials::Finite => None,
            Specials::E8M0 => Some(0xFF),
        }
    }

    /// The code of +Inf, if the format has infinities.
    pub const fn inf_code(&self) -> Option<u32> {
        match self.specials {
            Specials::Ieee => Some(((1 << self.exponent_bits) - 1) << self.mantissa_bits),
            _ => None,
        }
    }

    /// Whether `code` encodes NaN.
    pub const fn is_nan(&self, code: u32) -> bool {
        let mag = code & self.magnitude_mask();
        match self.specials {
            Specials::Ieee => {
                let exp_all_ones = ((1 << self.exponent_bits) - 1) << self.mantissa_bits;
                mag & exp_all_ones == exp_all_ones && mag & ((1 << self.mantissa_bits) - 1) != 0
            }
            Specials::NanOnly => mag == self.magnitude_mask(),
            Specials::Finite => false,
            Specials::E8M0 => code & 0xFF == 0xFF,
        }
    }

    /// Whether `code` encodes ±Inf.
    pub const fn is_inf(&self, code: u32) -> bool {
        match self.inf_code() {
            Some(inf) => code & self.magnitude_mask() == inf,
            None => false,
        }
    }

    /// Decodes `code` (in the low [`bits`](Self::bits) bits) to the exact `f32` it denotes.
    ///
    /// Every finite value of these formats is exactly representable in `f32` (E8M0's smallest,
    /// 2^-127, as an `f32` subnormal). NaN decodes to the `f32` quiet NaN with the code's sign,
    /// as `ml_dtypes` does.
    pub const fn decode(&self, code: u32) -> f32 {
        f32::from_bits(self.decode_bits(code))
    }

    /// [`decode`](Self::decode), returning the `f32` bit pattern.
    pub const fn decode_bits(&self, code: u32) -> u32 {
        let code = code & ((1 << self.bits()) - 1);
        let sign = if code & self.sign_mask() != 0 { F32_SIGN } else { 0 };
        if self.is_nan(code) {
            return sign | F32_QNAN;
        }
        if self.is_inf(code) {
            return sign | 0x7F80_0000;
        }
        if let Specials::E8M0 = self.specials {
            // 2^(c-127): an f32 normal with biased exponent c, except 2^-127, a subnormal.
            return if code == 0 { 1 << 22 } else { code << F32_MANT_BITS };
        }
        let m = self.mantissa_bits;
        let mag = code & self.magnitude_mask();
        let exp = mag >> m;
        let frac = mag & ((1 << m) - 1);
        if exp == 0 {
            if frac == 0 {
                return sign;
            }
            // Subnormal: frac * 2^(1 - bias - m). Normalize on the highest set bit p.
            let p = 31 - frac.leading_zeros();
            let f32_exp = (p as i32) + 1 - self.bias - (m as i32) + F32_BIAS;
            let f32_frac = (frac - (1 << p)) << (F32_MANT_BITS - p);
            return sign | ((f32_exp as u32) << F32_MANT_BITS) | f32_frac;
        }
        let f32_exp = (exp as i32) - self.bias + F32_BIAS;
        sign | ((f32_exp as u32) << F32_MANT_BITS) | (frac << (F32_MANT_BITS - m))
    }

    /// Converts an `f32` to this format, rounding to nearest, ties to even.
    ///
    /// With [`Overflow::Special`] this is bit-for-bit what `ml_dtypes` does on
    /// `np.float32(x).astype(...)`, including its choices for the cases the OCP spec leaves
    /// to the implementation: NaN becomes the format's NaN code with the input's sign, and for
    /// formats without NaN (FP6, FP4) NaN becomes `-0` (positive NaN) or `+0` (negative NaN);
    /// zero and negative inputs to E8M0 become NaN.
    pub const fn encode(&self, x: f32, overflow: Overflow) -> u32 {
        let saturate = matches!(overflow, Overflow::Saturate);
        let bits = x.to_bits();
        let negative = bits & F32_SIGN != 0;
        let abs_bits = bits & !F32_SIGN;
        let sign = if negative { self.sign_mask() } else { 0 };

        if abs_bits == 0x7F80_0000 {
            // ±Inf.
            let mag = match (self.specials, saturate) {
                (_, true) | (Specials::Finite, _) => self.max_code(),
                (Specials::Ieee, false) => ((1 << self.exponent_bits) - 1) << self.mantissa_bits,
                (Specials::NanOnly, false) => self.magnitude_mask(),
                (Specials::E8M0, false) => 0xFF,
            };
            if let Specials::E8M0 = self.specials {
                return if negative { 0xFF } else { mag };
            }
            return mag | sign;
        }
        if abs_bits > 0x7F80_0000 {
            // NaN: the format's quiet NaN, signed like the input. ml_dtypes' "NaN" for the
            // all-finite formats is the code 0b1000..0, i.e. -0, and negating it gives +0.
            return match self.specials {
                Specials::Finite => self.sign_mask() ^ sign,
                Specials::E8M0 => 0xFF,
                _ => match self.nan_code() {
                    Some(nan) => nan | sign,
                    None => 0,
                },
            };
        }
        if abs_bits == 0 {
            return match self.specials {
                // E8M0 has no zero: NaN, or its smallest value when saturating.
                Specials::E8M0 => {
                    if saturate {
                        0
                    } else {
                        0xFF
                    }
                }
                _ => sign,
            };
        }
        if negative && !self.signed {
            return if saturate { 0 } else { 0xFF };
        }

        // Normalize to (unbiased exponent, mantissa with the implicit bit at position 23).
        let biased = (abs_bits >> F32_MANT_BITS) as i32;
        let fraction = abs_bits & ((1 << F32_MANT_BITS) - 1);
        let (exponent, mantissa) = if biased != 0 {
            (biased - F32_BIAS, (1 << F32_MANT_BITS) | fraction)
        } else {
            // f32 subnormal: shift the fraction up until its top bit is the implicit bit.
            let shift = fraction.leading_zeros() - (32 - F32_MANT_BITS) + 1;
            (1 - F32_BIAS - shift as i32, fraction << shift)
        };

        // `target_base` is the target's biased exponent minus one: the implicit bit, still in
        // the mantissa, adds the one back when the two are summed below (and a rounding carry
        // out of the mantissa flows into the exponent for free).
        let target_base = exponent + self.bias - 1;
        let denormal_shift = if target_base < 0 { -target_base } else { 0 };
        // A shift of 25 already rounds everything to zero; clamp so the shift stays defined.
        let mut shift = (F32_MANT_BITS - self.mantissa_bits) as i32 + denormal_shift;
        if shift > F32_MANT_BITS as i32 + 2 {
            shift = F32_MANT_BITS as i32 + 2;
        }
        let aligned = round_nearest_even(mantissa, shift as u32) >> shift;
        let exp_field = if target_base > 0 { target_base as u32 } else { 0 };
        let result = aligned + (exp_field << self.mantissa_bits);

        // C++'s numeric_limits::max_exponent is one more than the largest unbiased exponent.
        let max_exponent = ((self.max_code() & self.magnitude_mask()) >> self.mantissa_bits) as i32 - self.bias + 1;
        let overflowed = target_base >= max_exponent + self.bias || result > self.max_code();
        let result = if overflowed {
            match (self.specials, saturate) {
                (_, true) | (Specials::Finite, _) => self.max_code(),
                (Specials::Ieee, false) => ((1 << self.exponent_bits) - 1) << self.mantissa_bits,
                (Specials::NanOnly, false) => self.magnitude_mask(),
                (Specials::E8M0, false) => 0xFF,
            }
        } else {
            result
        };
        result | sign
    }

    /// Every finite value of the format in increasing order, with its code (one entry per
    /// value: `+0` stands for both zeros).
    pub fn finite_values(&self) -> Vec<(u32, f32)> {
        let mut values: Vec<(u32, f32)> = (0..self.code_count() as u32)
            .map(|c| (c, self.decode(c)))
            .filter(|(c, v)| v.is_finite() && !(*v == 0.0 && *c != 0))
            .collect();
        values.sort_by(|a, b| a.1.total_cmp(&b.1));
        values
    }

    /// The largest finite value.
    pub const fn max_value(&self) -> f32 {
        self.decode(self.max_code())
    }

    /// The smallest positive normal value (for E8M0, its smallest value, 2^-127).
    pub const fn min_normal(&self) -> f32 {
        match self.specials {
            Specials::E8M0 => self.decode(0),
            _ => self.decode(1 << self.mantissa_bits),
        }
    }

    /// The smallest positive value (a subnormal, where the format has them).
    pub const fn min_positive(&self) -> f32 {
        match self.specials {
            Specials::E8M0 => self.decode(0),
            _ => self.decode(1),
        }
    }

    /// The gap between 1.0 and the next larger value (machine epsilon).
    pub const fn epsilon(&self) -> f32 {
        match self.specials {
            Specials::E8M0 => 1.0,
            _ => f32::from_bits(((F32_BIAS - self.mantissa_bits as i32) as u32) << F32_MANT_BITS),
        }
    }

    /// The unbiased exponent of the largest power of two in range (`emax` in the OCP spec).
    pub const fn emax(&self) -> i32 {
        ((self.max_code() & self.magnitude_mask()) >> self.mantissa_bits) as i32 - self.bias
    }
}

/// Rounds away the low `shift` bits of `bits` to nearest, ties to even, by adding the bias
/// `0111..1 + L` (L the lowest kept bit); the caller shifts the result right by `shift`.
const fn round_nearest_even(bits: u32, shift: u32) -> u32 {
    if shift == 0 {
        return bits;
    }
    let keep_lsb = (bits >> shift) & 1;
    bits + keep_lsb + (1 << (shift - 1)) - 1
}

/// FP8 E4M3 as in OCP 8-bit FP v1.0 and `ml_dtypes.float8_e4m3fn`: bias 7, max ±448, NaN
/// `S.1111.111`, no infinities.
pub const E4M3: FloatFormat = FloatFormat {
    name: "float8_e4m3fn",
    exponent_bits: 4,
    mantissa_bits: 3,
    bias: 7,
    signed: true,
    specials: Specials::NanOnly,
};

/// FP8 E5M2 (`ml_dtypes.float8_e5m2`): IEEE-like, bias 15, max ±57344, ±Inf and NaN.
pub const E5M2: FloatFormat = FloatFormat {
    name: "float8_e5m2",
    exponent_bits: 5,
    mantissa_bits: 2,
    bias: 15,
    signed: true,
    specials: Specials::Ieee,
};

/// FP6 E3M2 (`ml_dtypes.float6_e3m2fn`): bias 3, max ±28, all codes finite.
pub const E3M2: FloatFormat = FloatFormat {
    name: "float6_e3m2fn",
    exponent_bits: 3,
    mantissa_bits: 2,
    bias: 3,
    signed: true,
    specials: Specials::Finite,
};

/// FP6 E2M3 (`ml_dtypes.float6_e2m3fn`): bias 1, max ±7.5, all codes finite.
pub const E2M3: FloatFormat = FloatFormat {
    name: "float6_e2m3fn",
    exponent_bits: 2,
    mantissa_bits: 3,
    bias: 1,
    signed: true,
    specials: Specials::Finite,
};

/// FP4 E2M1 (`ml_dtypes.float4_e2m1fn`): values {0, 0.5, 1, 1.5, 2, 3, 4, 6} and negatives.
pub const E2M1: FloatFormat = FloatFormat {
    name: "float4_e2m1fn",
    exponent_bits: 2,
    mantissa_bits: 1,
    bias: 1,
    signed: true,
    specials: Specials::Finite,
};

/// E8M0 (`ml_dtypes.float8_e8m0fnu`): the MX block scale, `2^(c-127)` for c in 0..=254,
/// 0xFF NaN; unsigned, no zero.
pub const E8M0: FloatFormat = FloatFormat {
    name: "float8_e8m0fnu",
    exponent_bits: 8,
    mantissa_bits: 0,
    bias: 127,
    signed: false,
    specials: Specials::E8M0,
};

/// Decodes every code of `fmt` at compile time (`N` must be `2^bits`).
pub(crate) const fn decode_table<const N: usize>(fmt: FloatFormat) -> [f32; N] {
    let mut table = [0.0f32; N];
    let mut code = 0;
    while code < N {
        table[code] = fmt.decode(code as u32);
        code += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_constants() {
        assert_eq!(E4M3.max_value(), 448.0);
        assert_eq!(E4M3.min_normal(), 2f32.powi(-6));
        assert_eq!(E4M3.min_positive(), 2f32.powi(-9));
        assert_eq!(E5M2.max_value(), 57344.0);
        assert_eq!(E5M2.min_positive(), 2f32.powi(-16));
        assert_eq!(E3M2.max_value(), 28.0);
        assert_eq!(E2M3.max_value(), 7.5);
        assert_eq!(E2M1.max_value(), 6.0);
        assert_eq!(E8M0.max_value(), 2f32.powi(127));
        assert_eq!(E8M0.min_positive().to_bits(), 1 << 22);
        let fp4: Vec<f32> = E2M1.finite_values().iter().map(|v| v.1).filter(|v| *v >= 0.0).collect();
        assert_eq!(fp4, [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]);
        assert_eq!(E4M3.emax(), 8);
        assert_eq!(E5M2.emax(), 15);
        assert_eq!(E2M1.emax(), 2);
        assert_eq!(E3M2.emax(), 4);
        assert_eq!(E2M3.emax(), 2);
        assert_eq!(E4M3.epsilon(), 0.125);
    }

    #[test]
    fn every_finite_code_round_trips() {
        for fmt in [E4M3, E5M2, E3M2, E2M3, E2M1, E8M0] {
            for code in 0..fmt.code_count() as u32 {
                let v = fmt.decode(code);
                if v.is_nan() {
                    assert!(fmt.encode(v, Overflow::Special) == fmt.nan_code().unwrap() | (code & fmt.sign_mask()));
                    continue;
                }
                assert_eq!(fmt.encode(v, Overflow::Special), code, "{} code {code:#x} = {v}", fmt.name);
            }
        }
    }

    #[test]
    fn overflow_policies() {
        assert_eq!(E4M3.encode(1e9, Overflow::Special), 0x7F);
        assert_eq!(E4M3.encode(-1e9, Overflow::Saturate), 0xFE);
        assert_eq!(E5M2.encode(1e9, Overflow::Special), 0x7C);
        assert_eq!(E5M2.encode(f32::NEG_INFINITY, Overflow::Saturate), 0xFB);
        assert_eq!(E2M1.encode(1e9, Overflow::Special), 0x7);
        // 464 is the midpoint between 448 and the (absent) 480: ties to even keeps 448.
        assert_eq!(E4M3.encode(464.0, Overflow::Special), 0x7E);
        assert_eq!(E4M3.encode(464.1, Overflow::Special), 0x7F);
    }
}

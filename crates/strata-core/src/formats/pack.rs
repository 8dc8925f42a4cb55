//! Packing of sub-byte codes into bytes.
//!
//! Strata stores `b`-bit codes as one little-endian bitstream: code `i` occupies stream bits
//! `i*b .. (i+1)*b`, and stream bit `j` is bit `j % 8` of byte `j / 8`. For 4-bit codes this
//! puts element 0 in the low nibble (as PyTorch's `float4_e2m1fn_x2` and the PTX `e2m1x2`
//! conversions do); read as little-endian `u32` words it is exactly MLX's packing for every
//! width (2, 4 and 8 bits in a word, 3, 5 and 6 bits across byte groups).

/// Number of bytes that hold `count` codes of `bits` bits.
pub const fn packed_len(count: usize, bits: u32) -> usize {
    (count * bits as usize).div_ceil(8)
}

/// Packs the low `bits` bits of each code (1 ≤ bits ≤ 8) into a little-endian bitstream.
pub fn pack(codes: &[u8], bits: u32) -> Vec<u8> {
    let mut out = vec![0u8; packed_len(codes.len(), bits)];
    pack_into(codes, bits, &mut out);
    out
}

/// [`pack`] into a buffer of at least [`packed_len`] bytes, which must be zeroed.
pub fn pack_into(codes: &[u8], bits: u32, out: &mut [u8]) {
    assert!((1..=8).contains(&bits), "pack: {bits} bits per code is outside 1..=8");
    let mask = ((1u16 << bits) - 1) as u8;
    match bits {
        8 => out[..codes.len()].copy_from_slice(codes),
        4 => {
            for (byte, pair) in out.iter_mut().zip(codes.chunks(2)) {
                *byte = (pair[0] & mask) | pair.get(1).map_or(0, |hi| (hi & mask) << 4);
            }
        }
        _ => {
            for (i, &code) in codes.iter().enumerate() {
                let bit = i * bits as usize;
                let word = u16::from(code & mask) << (bit % 8);
                out[bit / 8] |= word as u8;
                if bit % 8 + bits as usize > 8 {
                    out[bit / 8 + 1] |= (word >> 8) as u8;
                }
            }
        }
    }
}

/// Unpacks `count` codes of `bits` bits from a little-endian bitstream.
pub fn unpack(bytes: &[u8], bits: u32, count: usize) -> Vec<u8> {
    let mut out = vec![0u8; count];
    unpack_into(bytes, bits, &mut out);
    out
}

/// [`unpack`] into `out`, one code per byte.
pub fn unpack_into(bytes: &[u8], bits: u32, out: &mut [u8]) {
    assert!((1..=8).contains(&bits), "unpack: {bits} bits per code is outside 1..=8");
    assert!(
        bytes.len() >= packed_len(out.len(), bits),
        "unpack: {} bytes hold fewer than {} codes of {bits} bits",
        bytes.len(),
        out.len()
    );
    let mask = ((1u16 << bits) - 1) as u8;
    match bits {
        8 => out.copy_from_slice(&bytes[..out.len()]),
        4 => {
            for (i, code) in out.iter_mut().enumerate() {
                *code = (bytes[i / 2] >> ((i % 2) * 4)) & mask;
            }
        }
        _ => {
            for (i, code) in out.iter_mut().enumerate() {
                let bit = i * bits as usize;
                let lo = u16::from(bytes[bit / 8]);
                let hi = if bit % 8 + bits as usize > 8 { u16::from(bytes[bit / 8 + 1]) } else { 0 };
                *code = (((hi << 8) | lo) >> (bit % 8)) as u8 & mask;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_width() {
        for bits in 1..=8u32 {
            let codes: Vec<u8> = (0..101u32).map(|i| ((i * 37 + 11) % (1 << bits)) as u8).collect();
            let packed = pack(&codes, bits);
            assert_eq!(packed.len(), packed_len(codes.len(), bits));
            assert_eq!(unpack(&packed, bits, codes.len()), codes, "{bits} bits");
        }
    }

    #[test]
    fn layout_is_lsb_first() {
        assert_eq!(pack(&[0x1, 0x2, 0x3], 4), [0x21, 0x03]);
        assert_eq!(pack(&[1, 2, 3, 0], 2), [0b00_11_10_01]);
        // 3-bit: codes 7, 0, 5 -> bits 111 000 101 -> 0b01_000_111, 0b1.
        assert_eq!(pack(&[7, 0, 5], 3), [0b0100_0111, 0b1]);
        // 6-bit: four codes in three bytes.
        assert_eq!(pack(&[0x3F, 0, 0x3F, 0], 6), [0x3F, 0xF0, 0x03]);
    }
}

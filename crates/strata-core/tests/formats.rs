//! Every element format against `ml_dtypes` (NumPy for float16): the decoding of every code,
//! and the encoding of tens of millions of f32 values chosen around each format's rounding
//! points and range edges plus random ones (see `scripts/refs/formats.py`), bit for bit.

mod common;

use common::{Npy, manifest, refs_dir};
use strata_core::DType;

#[test]
fn decode_every_code_matches_ml_dtypes() {
    let dir = refs_dir("formats");
    let m = manifest(&dir);
    let formats = m["formats"].as_object().unwrap();
    assert_eq!(formats.len(), 12, "expected all 12 narrow formats in {}", dir.display());
    for (name, info) in formats {
        let dtype: DType = name.parse().unwrap();
        let bits = info["bits"].as_u64().unwrap() as u32;
        assert_eq!(dtype.bits(), bits, "{name}");
        let expected = Npy::read(&dir.join(format!("{name}.decode.npy"))).to_u32();
        assert_eq!(expected.len(), 1 << bits, "{name}");
        for (code, &want) in expected.iter().enumerate() {
            let got = dtype.decode_f32(code as u64).to_bits();
            assert_eq!(got, want, "{name}: code {code:#x} decodes to {got:#010x}, ml_dtypes says {want:#010x}");
        }
    }
}

#[test]
fn encode_matches_ml_dtypes() {
    let dir = refs_dir("formats");
    let m = manifest(&dir);
    let seed = &m["seed"];
    let mut total = 0;
    for (name, info) in m["formats"].as_object().unwrap() {
        let dtype: DType = name.parse().unwrap();
        let inputs = Npy::read(&dir.join(format!("{name}.encode_in.npy"))).to_u32();
        let expected = Npy::read(&dir.join(format!("{name}.encode_out.npy"))).to_u64();
        assert_eq!(inputs.len(), info["encode_cases"].as_u64().unwrap() as usize);
        assert_eq!(inputs.len(), expected.len());
        let mismatches: Vec<String> = inputs
            .iter()
            .zip(&expected)
            .filter_map(|(&x, &want)| {
                let got = dtype.encode_f32(f32::from_bits(x));
                (got != want).then(|| format!("{:e} ({x:#010x}) -> {got:#x}, ml_dtypes {want:#x}", f32::from_bits(x)))
            })
            .take(10)
            .collect();
        assert!(mismatches.is_empty(), "{name} (seed {seed}): {}", mismatches.join("; "));
        total += inputs.len();
    }
    assert!(total >= 12_000_000, "only {total} encode cases");
    eprintln!("{total} encodes bit-equal to ml_dtypes (seed {seed})");
}

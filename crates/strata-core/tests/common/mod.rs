//! Test support: finding the reference vectors that `scripts/refs` writes, and reading them.
#![allow(dead_code)]

use std::path::PathBuf;

/// The directory holding the reference vectors: `$STRATA_REFS`, or `target/refs` at the root
/// of the workspace. A missing directory fails the test with the command that makes it:
/// these tests compare against `ml_dtypes`, `mlx` and `gfloat`, and passing without them would
/// prove nothing.
pub fn refs_dir(sub: &str) -> PathBuf {
    let root = std::env::var_os("STRATA_REFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/refs"));
    let dir = root.join(sub);
    assert!(
        dir.join("manifest.json").is_file(),
        "reference vectors missing in {}: run `scripts/test` (or `scripts/refs/generate`) first",
        dir.display()
    );
    dir
}

/// A `.npy` array: its dtype descriptor (e.g. `<u4`), shape and raw little-endian bytes.
pub struct Npy {
    pub descr: String,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl Npy {
    pub fn read(path: &std::path::Path) -> Npy {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        assert_eq!(&bytes[..6], b"\x93NUMPY", "{} is not a .npy file", path.display());
        let (header_len, start) = match bytes[6] {
            1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
            _ => (u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, 12),
        };
        let header = std::str::from_utf8(&bytes[start..start + header_len]).unwrap();
        let field = |key: &str| {
            let at = header.find(key).unwrap_or_else(|| panic!("{}: no {key} in {header}", path.display()));
            header[at + key.len()..].trim_start_matches([':', ' ', '\'', '('])
        };
        let descr = field("'descr'").split('\'').next().unwrap().to_string();
        assert!(field("'fortran_order'").starts_with("False"), "{}: Fortran order", path.display());
        let shape =
            field("'shape'").split(')').next().unwrap().split(',').filter_map(|s| s.trim().parse().ok()).collect();
        Npy { descr, shape, data: bytes[start + header_len..].to_vec() }
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The elements widened to u64 (for unsigned integer arrays of 1, 2, 4 or 8 bytes).
    pub fn to_u64(&self) -> Vec<u64> {
        let width = self.descr[2..].parse::<usize>().unwrap();
        assert!(self.descr[1..].starts_with('u'), "expected an unsigned array, got {}", self.descr);
        self.data
            .chunks_exact(width)
            .map(|c| {
                let mut b = [0u8; 8];
                b[..width].copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect()
    }

    pub fn to_u32(&self) -> Vec<u32> {
        self.to_u64().into_iter().map(|v| v as u32).collect()
    }

    pub fn to_u8(&self) -> Vec<u8> {
        assert!(matches!(self.descr.as_str(), "|u1" | "<u1"), "expected uint8, got {}", self.descr);
        self.data.clone()
    }

    pub fn to_f32(&self) -> Vec<f32> {
        assert_eq!(self.descr, "<f4", "expected float32");
        self.data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
    }
}

/// The manifest of a reference directory, as JSON.
pub fn manifest(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

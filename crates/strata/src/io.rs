//! Saving and loading arrays: safetensors (the `safetensors` crate; what PyTorch, MLX and
//! Hugging Face models ship in) and NumPy's `.npy` and `.npz` (the `zip` crate).
//!
//! A parameter [`Tree`] is stored flat under its dotted paths (`layers.0.weight`), so a model
//! saved here loads in Python with `safetensors.numpy.load_file` under the same names, and a
//! file written there loads here. A corrupt or mismatched file is an `Err` that names the file
//! and the tensor (or archive member).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use strata_core::{DType, Error, Result};

use crate::graph::Array;
use crate::tree::Tree;

fn err(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::InvalidArgument { op: "io", message: format!("{}: {message}", path.display()) }
}

fn to_st(d: DType) -> Option<Dtype> {
    Some(match d {
        DType::Bool => Dtype::BOOL,
        DType::U8 => Dtype::U8,
        DType::I8 => Dtype::I8,
        DType::U16 => Dtype::U16,
        DType::I16 => Dtype::I16,
        DType::U32 => Dtype::U32,
        DType::I32 => Dtype::I32,
        DType::U64 => Dtype::U64,
        DType::I64 => Dtype::I64,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::F32 => Dtype::F32,
        DType::F64 => Dtype::F64,
        DType::F8E4M3 => Dtype::F8_E4M3,
        DType::F8E5M2 => Dtype::F8_E5M2,
        DType::E8M0 => Dtype::F8_E8M0,
        DType::C64 => Dtype::C64,
        _ => return None,
    })
}

fn from_st(d: Dtype) -> Option<DType> {
    Some(match d {
        Dtype::BOOL => DType::Bool,
        Dtype::U8 => DType::U8,
        Dtype::I8 => DType::I8,
        Dtype::U16 => DType::U16,
        Dtype::I16 => DType::I16,
        Dtype::U32 => DType::U32,
        Dtype::I32 => DType::I32,
        Dtype::U64 => DType::U64,
        Dtype::I64 => DType::I64,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::F32 => DType::F32,
        Dtype::F64 => DType::F64,
        Dtype::F8_E4M3 => DType::F8E4M3,
        Dtype::F8_E5M2 => DType::F8E5M2,
        Dtype::F8_E8M0 => DType::E8M0,
        Dtype::C64 => DType::C64,
        _ => return None,
    })
}

/// Writes named arrays to a safetensors file (with optional string metadata).
///
/// ```
/// let dir = std::env::temp_dir().join(format!("strata-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("w.safetensors");
/// let w = strata::arange(0.0, 6.0, 1.0, strata::DType::BF16)?.reshape(&[2, 3])?;
/// strata::io::save_safetensors(&path, &[("w".into(), w.clone())], None)?;
/// let back = strata::io::load_safetensors(&path)?;
/// assert_eq!(back[0].0, "w");
/// assert_eq!(back[0].1.to_vec::<f32>()?, w.to_vec::<f32>()?);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn save_safetensors(
    path: &Path,
    arrays: &[(String, Array)],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let mut bytes = Vec::with_capacity(arrays.len());
    for (name, a) in arrays {
        let t = to_st(a.dtype()).ok_or_else(|| err(path, format!("{name}: safetensors has no {} type", a.dtype())))?;
        bytes.push((name, t, a.shape().to_vec(), a.to_bytes()?));
    }
    let views = bytes
        .iter()
        .map(|(name, t, shape, b)| {
            TensorView::new(*t, shape.clone(), b)
                .map(|v| (name.to_string(), v))
                .map_err(|e| err(path, format!("{name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, metadata, path).map_err(|e| err(path, e))
}

/// Reads every array of a safetensors file, in the file's order (the `safetensors` writer
/// orders by alignment, then name), onto the default device.
pub fn load_safetensors(path: &Path) -> Result<Vec<(String, Array)>> {
    let data = std::fs::read(path).map_err(|e| err(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&data).map_err(|e| match short_tensor(&data) {
        Some(which) => err(path, format!("not a valid safetensors file: {which}")),
        None => err(path, format!("not a valid safetensors file: {e}")),
    })?;
    let mut named: Vec<(usize, String, Array)> = Vec::new();
    for (name, view) in st.tensors() {
        let t =
            from_st(view.dtype()).ok_or_else(|| err(path, format!("{name}: unsupported type {:?}", view.dtype())))?;
        let a = Array::from_bytes(view.data(), view.shape(), t, crate::default_device())
            .map_err(|e| err(path, format!("{name}: {e}")))?;
        // The header's data offsets give the file's order (the map does not keep it).
        let at = view.data().as_ptr() as usize - data.as_ptr() as usize;
        named.push((at, name, a));
    }
    named.sort_by_key(|(at, _, _)| *at);
    Ok(named.into_iter().map(|(_, n, a)| (n, a)).collect())
}

/// The first tensor of a safetensors file whose bytes the file does not hold as its header
/// describes them (cut short, or of another size than its shape and type need), said in words;
/// `None` when the header itself is unreadable or every tensor is whole. The `safetensors`
/// crate's own errors for these cases name no tensor.
fn short_tensor(data: &[u8]) -> Option<String> {
    let n = u64::from_le_bytes(data.get(..8)?.try_into().ok()?) as usize;
    let body = data.len().checked_sub(n.checked_add(8)?)?;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(data.get(8..8 + n)?).ok()?;
    let mut tensors: Vec<(usize, usize, &str, &serde_json::Value)> = header
        .iter()
        .filter(|(name, _)| name.as_str() != "__metadata__")
        .filter_map(|(name, info)| {
            let at = info.get("data_offsets")?.as_array()?;
            Some((at.first()?.as_u64()? as usize, at.get(1)?.as_u64()? as usize, name.as_str(), info))
        })
        .collect();
    tensors.sort_by_key(|t| (t.0, t.1));
    for (start, end, name, info) in tensors {
        let dtype = info.get("dtype").and_then(|d| serde_json::from_value::<Dtype>(d.clone()).ok());
        let shape: Option<Vec<usize>> =
            info.get("shape")?.as_array()?.iter().map(|d| d.as_u64().map(|d| d as usize)).collect();
        let need = dtype.zip(shape.as_ref()).and_then(|(t, s)| {
            s.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?.checked_mul(t.bitsize()).map(|b| b.div_ceil(8))
        });
        if end > body {
            return Some(format!(
                "tensor {name} ({} {}) lies at bytes {start}..{end} of the data, which holds only {body}",
                dtype.map_or("?".to_string(), |t| format!("{t:?}")),
                shape.map_or("?".to_string(), |s| format!("{s:?}")),
            ));
        }
        if let Some(need) = need.filter(|&need| end.checked_sub(start) != Some(need)) {
            return Some(format!(
                "tensor {name}: its shape and type need {need} bytes; the header gives it bytes {start}..{end}"
            ));
        }
    }
    None
}

/// Saves a parameter tree under its dotted paths.
pub fn save_tree(path: &Path, tree: &Tree) -> Result<()> {
    save_safetensors(path, &tree.flatten(), None)
}

/// Loads a file into the structure of `like` (a model's current parameters): every path of
/// `like` must be in the file with the same shape and type. A missing tensor, a shape or a type
/// mismatch is an `Err` naming it; [`load_tree_cast`] converts types instead.
///
/// ```
/// use strata::{DType, Tree, io};
/// let dir = std::env::temp_dir().join(format!("strata-doc-tree-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("m.safetensors");
/// let half = Tree::map([("w", Tree::from(strata::ones(&[2], DType::F16)?))]);
/// io::save_tree(&path, &half)?;
/// let like = Tree::map([("w", Tree::from(strata::zeros(&[2], DType::F32)?))]);
/// let e = io::load_tree(&path, &like).unwrap_err().to_string();
/// assert!(e.contains("w is float16; the model has float32"), "{e}");
/// assert_eq!(io::load_tree_cast(&path, &like)?.get("w").unwrap().dtype(), DType::F32);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn load_tree(path: &Path, like: &Tree) -> Result<Tree> {
    load_tree_with(path, like, false)
}

/// [`load_tree`], converting each tensor to the type of `like`'s leaf (weights saved in
/// bfloat16 loaded into a float32 model, say); shapes must still match.
pub fn load_tree_cast(path: &Path, like: &Tree) -> Result<Tree> {
    load_tree_with(path, like, true)
}

fn load_tree_with(path: &Path, like: &Tree, cast: bool) -> Result<Tree> {
    let mut file: BTreeMap<String, Array> = load_safetensors(path)?.into_iter().collect();
    let mut leaves = Vec::new();
    for (name, want) in like.flatten() {
        let a = file.remove(&name).ok_or_else(|| err(path, format!("no tensor named {name}")))?;
        if a.shape() != want.shape() {
            return Err(err(path, format!("{name} has shape {:?}; the model needs {:?}", a.shape(), want.shape())));
        }
        if !cast && a.dtype() != want.dtype() {
            return Err(err(
                path,
                format!("{name} is {}; the model has {} (load_tree_cast converts)", a.dtype(), want.dtype()),
            ));
        }
        leaves.push(a.astype(want.dtype())?);
    }
    like.with_leaves(&leaves)
}

/// A file's tensors as a tree rebuilt from their dotted names (`m.0` and `m.1` become a list
/// under `m`): what [`crate::optim::Optimizer::load_state`] takes from a saved state, without a
/// template of the right size.
pub fn load_tree_flat(path: &Path) -> Result<Tree> {
    #[derive(Default)]
    struct Node(BTreeMap<String, Node>, Option<Array>);
    let mut root = Node::default();
    for (name, a) in load_safetensors(path)? {
        let mut at = &mut root;
        for part in name.split('.') {
            at = at.0.entry(part.to_string()).or_default();
        }
        at.1 = Some(a);
    }
    fn build(path: &Path, name: &str, n: Node) -> Result<Tree> {
        if let Some(a) = n.1 {
            if !n.0.is_empty() {
                return Err(err(path, format!("{name} is both a tensor and a prefix of others")));
            }
            return Ok(Tree::Array(a));
        }
        let indices: Option<Vec<usize>> = n.0.keys().map(|k| k.parse::<usize>().ok()).collect();
        let list = matches!(&indices, Some(ix) if ix.iter().enumerate().all(|(i, &k)| i == k));
        let kids = n.0.into_iter().map(|(k, c)| {
            let full = if name.is_empty() { k.clone() } else { format!("{name}.{k}") };
            build(path, &full, c).map(|t| (k, t))
        });
        if list {
            // BTreeMap orders "10" before "2": put the items in numeric order.
            let mut items = kids.collect::<Result<Vec<_>>>()?;
            items.sort_by_key(|(k, _)| k.parse::<usize>().unwrap_or(usize::MAX));
            Ok(Tree::List(items.into_iter().map(|(_, t)| t).collect()))
        } else {
            Ok(Tree::Map(kids.collect::<Result<_>>()?))
        }
    }
    build(path, "", root)
}

/// The `.npy` header's type code for `d`.
fn npy_descr(d: DType) -> Option<&'static str> {
    Some(match d {
        DType::Bool => "|b1",
        DType::U8 => "|u1",
        DType::I8 => "|i1",
        DType::U16 => "<u2",
        DType::I16 => "<i2",
        DType::U32 => "<u4",
        DType::I32 => "<i4",
        DType::U64 => "<u8",
        DType::I64 => "<i8",
        DType::F16 => "<f2",
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::C64 => "<c8",
        _ => return None,
    })
}

/// Writes one array as a NumPy `.npy` file (version 1.0, C order).
pub fn save_npy(path: &Path, a: &Array) -> Result<()> {
    let out = npy_bytes(a).map_err(|m| err(path, m))?;
    std::fs::write(path, out).map_err(|e| err(path, e))
}

/// An array as the bytes of a `.npy` file.
fn npy_bytes(a: &Array) -> std::result::Result<Vec<u8>, String> {
    let descr = npy_descr(a.dtype()).ok_or_else(|| format!("NumPy has no {} type", a.dtype()))?;
    let shape = match a.shape() {
        [n] => format!("({n},)"),
        s => format!("({})", s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64.
    let pad = (64 - (10 + header.len() + 1) % 64) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&a.to_bytes().map_err(|e| e.to_string())?);
    Ok(out)
}

/// Reads a NumPy `.npy` file (C order, little-endian) onto the default device.
pub fn load_npy(path: &Path) -> Result<Array> {
    let data = std::fs::read(path).map_err(|e| err(path, e))?;
    npy_from_bytes(&data, &|m| err(path, m))
}

/// The array in the bytes of a `.npy` file; `err` says where they came from.
fn npy_from_bytes(data: &[u8], err: &dyn Fn(String) -> Error) -> Result<Array> {
    let err = |m: &dyn std::fmt::Display| err(m.to_string());
    if data.len() < 10 || &data[..6] != b"\x93NUMPY" {
        return Err(err(&"not a .npy file (no \\x93NUMPY magic)"));
    }
    let (hlen, start) = match data[6] {
        1 => (u16::from_le_bytes([data[8], data[9]]) as usize, 10),
        2 | 3 if data.len() >= 12 => (u32::from_le_bytes([data[8], data[9], data[10], data[11]]) as usize, 12),
        v => return Err(err(&format!(".npy version {v} is not supported"))),
    };
    let header = data
        .get(start..start + hlen)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| err(&"the header is cut short or not text"))?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}':"))? + key.len() + 3;
        Some(header[i..].trim_start())
    };
    let descr = field("descr").and_then(|v| v.strip_prefix('\'')).and_then(|v| v.split('\'').next());
    let dtype = [
        DType::Bool,
        DType::U8,
        DType::I8,
        DType::U16,
        DType::I16,
        DType::U32,
        DType::I32,
        DType::U64,
        DType::I64,
        DType::F16,
        DType::F32,
        DType::F64,
        DType::C64,
    ]
    .into_iter()
    .find(|&d| npy_descr(d) == descr)
    .ok_or_else(|| err(&format!("unsupported type {descr:?} (little-endian numbers and bool are)")))?;
    if field("fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err(err(&"Fortran-ordered arrays are not supported"));
    }
    let shape_text = field("shape").and_then(|v| v.strip_prefix('(')).and_then(|v| v.split(')').next());
    let shape: Vec<usize> = shape_text
        .ok_or_else(|| err(&"the header has no shape"))?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| err(&format!("bad shape entry {s:?}"))))
        .collect::<Result<_>>()?;
    let body = &data[start + hlen..];
    let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).filter(|&n| n.checked_mul(8).is_some());
    let Some(count) = count else { return Err(err(&format!("shape {shape:?} is too large"))) };
    let need = dtype.byte_len(count);
    if body.len() != need {
        return Err(err(&format!(
            "shape {shape:?} of {dtype} needs {need} bytes of data; the file has {}",
            body.len()
        )));
    }
    Array::from_bytes(body, &shape, dtype, crate::default_device())
}

/// Writes named arrays as a NumPy `.npz` archive (`np.savez`; with `compress`,
/// `np.savez_compressed`): one `NAME.npy` member per array, readable by `np.load`.
pub fn save_npz(path: &Path, arrays: &[(&str, &Array)], compress: bool) -> Result<()> {
    use std::io::Write;
    let file = std::fs::File::create(path).map_err(|e| err(path, e))?;
    let mut zip = zip::ZipWriter::new(file);
    let method = if compress { zip::CompressionMethod::Deflated } else { zip::CompressionMethod::Stored };
    // Large arrays need ZIP64 records; NumPy writes them the same way.
    let options = zip::write::SimpleFileOptions::default().compression_method(method).large_file(true);
    for (name, a) in arrays {
        let bytes = npy_bytes(a).map_err(|m| err(path, format!("{name}: {m}")))?;
        zip.start_file(format!("{name}.npy"), options).map_err(|e| err(path, format!("{name}: {e}")))?;
        zip.write_all(&bytes).map_err(|e| err(path, format!("{name}: {e}")))?;
    }
    zip.finish().map_err(|e| err(path, e))?;
    Ok(())
}

/// Reads a NumPy `.npz` archive (compressed or not): its arrays by name (the member names
/// without `.npy`), in the archive's order. A member that is not a valid `.npy` is an error
/// naming it.
pub fn load_npz(path: &Path) -> Result<Vec<(String, Array)>> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| err(path, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| err(path, format!("not a .npz (zip) archive: {e}")))?;
    let mut out = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let mut member = zip.by_index(i).map_err(|e| err(path, e))?;
        let full = member.name().map_err(|e| err(path, e))?.to_string();
        let name = full.strip_suffix(".npy").unwrap_or(&full).to_string();
        let mut data = Vec::with_capacity(member.size().min(1 << 30) as usize);
        member.read_to_end(&mut data).map_err(|e| err(path, format!("{name}: {e}")))?;
        let a = npy_from_bytes(&data, &|m| err(path, format!("{name}: {m}")))?;
        out.push((name, a));
    }
    Ok(out)
}

//! `Display` for arrays, in NumPy's style: `array([[1, 2],\n       [3, 4]], dtype=int32)`.

use std::fmt;

use strata_core::DType;

use crate::graph::Array;

const EDGE: usize = 3;
const SUMMARIZE_ABOVE: usize = 1000;

fn format_values(a: &Array) -> Result<Vec<String>, strata_core::Error> {
    Ok(match a.dtype() {
        DType::Bool => a.to_vec::<bool>()?.iter().map(|&b| if b { "True" } else { "False" }.to_string()).collect(),
        t if t.is_integer() && t.bits() <= 32 && t != DType::U32 => {
            a.to_vec::<i64>()?.iter().map(|v| v.to_string()).collect()
        }
        DType::U32 | DType::U64 => a.to_vec::<u64>()?.iter().map(|v| v.to_string()).collect(),
        DType::I64 => a.to_vec::<i64>()?.iter().map(|v| v.to_string()).collect(),
        DType::C64 => {
            // NumPy's `1.5-2.j`.
            let pairs: Vec<f32> = bytemuck::pod_collect_to_vec(&a.to_bytes()?);
            pairs
                .chunks_exact(2)
                .map(|p| {
                    let sign = if p[1] < 0.0 { "-" } else { "+" };
                    format!("{}{sign}{}j", decimals(p[0].into()), decimals(p[1].abs().into()))
                })
                .collect()
        }
        _ => {
            let v = a.to_vec::<f64>()?;
            let all_int = v.iter().all(|x| !x.is_finite() || (x.fract() == 0.0 && x.abs() < 1e16));
            let plain: Vec<String> = v
                .iter()
                .map(|&x| match x {
                    x if x.is_nan() => "nan".into(),
                    x if x.is_infinite() => if x > 0.0 { "inf" } else { "-inf" }.into(),
                    x if all_int => format!("{x:.0}."),
                    x if x != 0.0 && (x.abs() >= 1e8 || x.abs() < 1e-4) => format!("{x:.6e}"),
                    x => decimals(x),
                })
                .collect();
            // Align the decimal points, padding fractions on the right (NumPy's style).
            let frac = |s: &str| s.find('.').map_or(0, |i| s.len() - i - 1);
            let width = plain.iter().filter(|s| !s.contains('e')).map(|s| frac(s)).max().unwrap_or(0);
            plain
                .into_iter()
                .map(|s| {
                    if s.contains('.') && !s.contains('e') {
                        format!("{s:<w$}", w = s.len() + width - frac(&s))
                    } else {
                        s
                    }
                })
                .collect()
        }
    })
}

/// `x` with up to eight decimals, trailing zeros dropped (`1.`, `0.25`).
fn decimals(x: f64) -> String {
    format!("{x:.8}").trim_end_matches('0').to_string()
}

fn write_nested(f: &mut String, vals: &[String], shape: &[usize], indent: usize, width: usize) {
    if shape.is_empty() {
        f.push_str(&format!("{:>width$}", vals[0]));
        return;
    }
    let n = shape[0];
    let inner: usize = shape[1..].iter().product();
    let summarize = vals.len() > SUMMARIZE_ABOVE && n > 2 * EDGE;
    f.push('[');
    let idx: Vec<Option<usize>> = if summarize {
        (0..EDGE).map(Some).chain([None]).chain((n - EDGE..n).map(Some)).collect()
    } else {
        (0..n).map(Some).collect()
    };
    for (j, i) in idx.iter().enumerate() {
        if j > 0 {
            f.push(',');
            if shape.len() > 1 {
                f.push_str(&"\n".repeat(shape.len() - 1));
                f.push_str(&" ".repeat(indent + 1));
            } else {
                f.push(' ');
            }
        }
        match i {
            Some(i) => write_nested(f, &vals[i * inner..(i + 1) * inner], &shape[1..], indent + 1, width),
            None => f.push_str("..."),
        }
    }
    f.push(']');
}

impl fmt::Display for Array {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vals = match format_values(self) {
            Ok(v) => v,
            Err(e) => return write!(f, "array(<error: {e}>)"),
        };
        let width = vals.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut body = String::new();
        write_nested(&mut body, &vals, self.shape(), 6, width);
        let default = matches!(self.dtype(), DType::F32 | DType::Bool | DType::I32);
        if default { write!(f, "array({body})") } else { write!(f, "array({body}, dtype={})", self.dtype()) }
    }
}

impl fmt::Debug for Array {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Array(shape={:?}, dtype={}, device={}", self.shape(), self.dtype(), self.device())?;
        if self.is_evaluated() { write!(f, ")") } else { write!(f, ", pending {})", self.prim().name()) }
    }
}

//! `strata formats`: the element types and quantization modes, as tables.

use std::fmt::Write as _;
use std::time::Instant;

use strata_core::formats::{FloatFormat, Specials};
use strata_core::quant::{self, QuantMode};
use strata_core::{DType, Kind};

/// Arguments of `strata formats`.
#[derive(clap::Args)]
pub struct Args {
    /// A narrow type (e.g. `e4m3`, `float4_e2m1fn`, `int4`): list every code and its value.
    name: Option<String>,
    /// Rows of the sample weight matrix the quantization table is measured on.
    #[arg(long, default_value_t = 256)]
    rows: usize,
    /// Columns of the sample weight matrix (a multiple of 128).
    #[arg(long, default_value_t = 4096)]
    cols: usize,
    /// Seed of the sample weight matrix.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(name) = &args.name {
        let dtype: DType = name.parse()?;
        print!("{}", code_table(dtype)?);
        return Ok(());
    }
    println!("Element types (casts from f32 round to nearest-even and follow ml_dtypes bit for bit)\n");
    print!("{}", dtype_table());
    println!();
    if args.cols == 0 || !args.cols.is_multiple_of(128) {
        return Err(format!(
            "--cols must be a positive multiple of 128 (every mode's block divides it), not {}",
            args.cols
        )
        .into());
    }
    println!(
        "Quantization of a {}x{} weight matrix (Gaussian rows of scales 2^-4..2^4, 0.5% outliers at 10x; seed {})\n",
        args.rows, args.cols, args.seed
    );
    print!("{}", quant_table(args.rows, args.cols, args.seed)?);
    println!("\nSQNR: 10·log10(Σx² / Σ(x−x̂)²). +noclip rounds MX scales up; +mlx matches mlx.core.quantize.");
    println!("Every code of one type: `strata formats e2m1` (or any name above).");
    Ok(())
}

/// Formats a number compactly: integers plainly, others to 4 significant digits.
fn num(v: f64) -> String {
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    if v.fract() == 0.0 && v.abs() < 1e7 {
        return format!("{v}");
    }
    let exp = v.abs().log2();
    if exp.fract() == 0.0 && v > 0.0 && exp.abs() > 16.0 && 2f64.powf(exp) == v {
        return format!("2^{exp}");
    }
    if (1e-3..1e7).contains(&v.abs()) { format!("{}", (v * 1e4).round() / 1e4) } else { format!("{v:.3e}") }
}

/// Left-aligned columns separated by two spaces.
fn render(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> =
        (0..rows[0].len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        writeln!(out, "  {}", line.join("  ").trim_end()).unwrap();
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            writeln!(out, "  {}", rule.join("  ")).unwrap();
        }
    }
    out
}

struct FloatRow {
    max: f64,
    min_normal: f64,
    min_sub: f64,
    eps: f64,
    nan: &'static str,
    inf: &'static str,
    overflow: &'static str,
}

fn ieee_row(dtype: DType) -> FloatRow {
    let (max, min_normal, min_sub, eps) = match dtype {
        DType::F16 => (65504.0, 2f64.powi(-14), 2f64.powi(-24), 2f64.powi(-10)),
        DType::BF16 => {
            (f64::from(strata_core::formats::bf16::MAX.to_f32()), 2f64.powi(-126), 2f64.powi(-133), 2f64.powi(-7))
        }
        DType::F32 | DType::C64 => {
            (f64::from(f32::MAX), f64::from(f32::MIN_POSITIVE), 2f64.powi(-149), f64::from(f32::EPSILON))
        }
        _ => (f64::MAX, f64::MIN_POSITIVE, 2f64.powi(-1074), f64::EPSILON),
    };
    FloatRow { max, min_normal, min_sub, eps, nan: "yes", inf: "yes", overflow: "±Inf" }
}

fn narrow_row(f: &FloatFormat) -> FloatRow {
    let (nan, inf, overflow) = match f.specials {
        Specials::Ieee => ("S.11111.xx (xx≠0)", "yes", "±Inf"),
        Specials::NanOnly => ("S.1111.111", "no", "NaN"),
        Specials::Finite => ("none (NaN→-0)", "no", "±max"),
        Specials::E8M0 => ("0xFF", "no", "NaN"),
    };
    FloatRow {
        max: f64::from(f.max_value()),
        min_normal: f64::from(f.min_normal()),
        min_sub: f64::from(f.min_positive()),
        eps: f64::from(f.epsilon()),
        nan,
        inf,
        overflow,
    }
}

fn dtype_table() -> String {
    let mut rows = vec![
        ["dtype", "bits", "kind", "max", "min normal", "min subnormal", "epsilon", "NaN", "Inf", "f32 overflow →"]
            .map(String::from)
            .to_vec(),
    ];
    for &d in DType::ALL {
        let kind = match d.kind() {
            Kind::Bool => "bool",
            Kind::UInt => "uint",
            Kind::SInt => "int",
            Kind::Float => "float",
            Kind::Complex => "complex",
        };
        let mut row = vec![d.name().to_string(), d.bits().to_string(), kind.to_string()];
        if d.is_float() || d == DType::C64 {
            let r = d.float_format().map_or_else(|| ieee_row(d), |f| narrow_row(&f));
            let sub = if r.min_sub < r.min_normal { num(r.min_sub) } else { "—".into() };
            row.extend([num(r.max), num(r.min_normal), sub, num(r.eps), r.nan.into(), r.inf.into(), r.overflow.into()]);
        } else {
            let (lo, hi, wrap) = match (d.int_format(), d) {
                (Some(f), _) => (i128::from(f.min()), i128::from(f.max()), "wraps"),
                (None, DType::Bool) => (0, 1, "x≠0"),
                (None, _) => {
                    let bits = d.bits();
                    if d.kind() == Kind::SInt {
                        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1, "saturates")
                    } else {
                        (0, (1i128 << bits) - 1, "saturates")
                    }
                }
            };
            row.extend([
                format!("{hi}"),
                format!("min {lo}"),
                "—".into(),
                "—".into(),
                "—".into(),
                "—".into(),
                wrap.into(),
            ]);
        }
        rows.push(row);
    }
    render(&rows)
}

fn code_table(dtype: DType) -> Result<String, String> {
    if dtype.bits() > 8 {
        return Err(format!(
            "{dtype} has {} codes; code tables are for types of 8 bits or fewer",
            1u64 << dtype.bits()
        ));
    }
    let mut rows = vec![["code", "bits", "value", "class"].map(String::from).to_vec()];
    let fields = dtype.float_format().map(|f| (f.signed, f.exponent_bits, f.mantissa_bits));
    for code in 0..(1u32 << dtype.bits()) {
        let bits = format!("{code:0w$b}", w = dtype.bits() as usize);
        let bits = match fields {
            Some((signed, e, _)) => {
                let s = usize::from(signed);
                let (sign, rest) = bits.split_at(s);
                let (exp, man) = rest.split_at(e as usize);
                [sign, exp, man].iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join(".")
            }
            None => bits,
        };
        let v = dtype.decode_f32(u64::from(code));
        let class = match (dtype.float_format(), v) {
            (_, v) if v.is_nan() => "NaN",
            (_, v) if v.is_infinite() => "Inf",
            (_, 0.0) => "zero",
            (Some(f), v) if v.abs() < f.min_normal() => "subnormal",
            (Some(_), _) => "normal",
            (None, _) => "integer",
        };
        rows.push(vec![format!("{code:#04x}"), bits, num(f64::from(v)), class.into()]);
    }
    let mut out = format!("{dtype}: {} bits, {} codes\n\n", dtype.bits(), 1u32 << dtype.bits());
    out += &render(&rows);
    Ok(out)
}

/// SplitMix64: a small, well-mixed generator for the sample matrix.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        (-2.0 * self.uniform().ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
    }
}

fn sample_weights(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix(seed);
    let mut x = Vec::with_capacity(rows * cols);
    for _ in 0..rows {
        let scale = 2f64.powf(8.0 * rng.uniform() - 4.0);
        for _ in 0..cols {
            let outlier = if rng.uniform() < 0.005 { 10.0 } else { 1.0 };
            x.push((rng.normal() * scale * outlier) as f32);
        }
    }
    x
}

fn quant_table(rows: usize, cols: usize, seed: u64) -> Result<String, strata_core::Error> {
    let x = sample_weights(rows, cols, seed);
    let signal: f64 = x.iter().map(|&v| f64::from(v).powi(2)).sum();
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let modes = [
        "mxfp8",
        "mxfp8_e5m2",
        "mxint8",
        "mxfp6_e2m3",
        "mxfp6_e3m2",
        "mxfp4",
        "mxfp4+noclip",
        "mxfp4+mlx",
        "nvfp4",
        "affine:8:64",
        "affine:6:64",
        "affine:4:32",
        "affine:4:64",
        "affine:4:128",
        "affine:3:64",
        "affine:2:64",
    ];
    let mut table = vec![
        ["mode", "block", "bits/elem", "SQNR dB", "max |err|/amax", "quantize M elem/s"].map(String::from).to_vec(),
    ];
    for name in modes {
        let mode: QuantMode = name.parse()?;
        let start = Instant::now();
        let q = quant::quantize(&x, &[rows, cols], &mode)?;
        let seconds = start.elapsed().as_secs_f64();
        let y = quant::dequantize(&q);
        let (noise, max_err) = x.iter().zip(&y).fold((0.0f64, 0.0f64), |(n, m), (&a, &b)| {
            let e = f64::from(a) - f64::from(b);
            (n + e * e, m.max(e.abs()))
        });
        table.push(vec![
            name.to_string(),
            mode.block_size().to_string(),
            format!("{:.3}", mode.bits_per_element()),
            format!("{:.1}", 10.0 * (signal / noise).log10()),
            format!("{:.2e}", max_err / f64::from(amax)),
            format!("{:.0}", x.len() as f64 / seconds / 1e6),
        ]);
    }
    Ok(render(&table))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_render() {
        let t = dtype_table();
        assert!(t.contains("float8_e4m3fn") && t.contains("448") && t.contains("S.1111.111"), "{t}");
        let codes = code_table(DType::F4E2M1).unwrap();
        assert!(codes.contains("0.10.1") && codes.contains("subnormal") && codes.lines().count() == 16 + 4, "{codes}");
        assert!(code_table(DType::F32).is_err());
        let q = quant_table(2, 128, 1).unwrap();
        assert_eq!(q.lines().count(), 2 + 16, "{q}");
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(448.0), "448");
        assert_eq!(num(0.015625), "0.0156");
        assert_eq!(num(2f64.powi(-127)), "2^-127");
        assert_eq!(num(65504.0), "65504");
        assert_eq!(num(3.4e38), "3.400e38");
        assert_eq!(num(-0.0), "-0");
        assert_eq!(num(f64::MAX), "1.798e308");
    }
}

//! The backend conformance suite: every kernel of a [`Backend`] against the CPU backend on
//! fresh random inputs (floats with NaN, infinities and signed zeros among them, integers at
//! their extremes), on contiguous, transposed, offset and broadcast layouts, with the output
//! poisoned before each run. Tolerances are set by dtype: integers exactly, floats within a
//! few units in the last place, sums and products within a relative error.
//!
//! Each GPU backend's tests call these functions with the types it stores; a failure lists
//! every differing case with its inputs. `STRATA_SEED` repeats a run.

#![allow(clippy::type_complexity)]

use half::{bf16, f16};
use strata_core::formats::{F8E4M3, F8E5M2};
use strata_core::kernel::{
    Activation, Attention, AttentionMask, Backend, BinaryOp, Conv, Epilogue, Layout, Matmul2d, MatmulMode, ReduceOp,
    Scales, ScanOp, TensorMut, TensorRef, UnaryOp,
};
use strata_core::{DType, Error};
use strata_cpu::Cpu;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn seed() -> u64 {
    std::env::var("STRATA_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    }) | 1
}

/// `n` random elements of `t` as bytes: floats in ±4 with a few specials, integers small
/// (with the extremes now and then), bools 0/1.
fn random(t: DType, n: usize, rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let special = rng.next().is_multiple_of(23);
        let x = (rng.unit() * 8.0 - 4.0) * if rng.next().is_multiple_of(5) { 40.0 } else { 1.0 };
        let f = if special { [f64::NAN, f64::INFINITY, -f64::INFINITY, 0.0, -0.0, 1e30, -1e-30][i % 7] } else { x };
        let int = |lo: i64, hi: i64, rng: &mut Rng| -> i64 {
            if special { [lo, hi, 0, -1i64.max(lo), 1][i % 5] } else { (rng.next() % 200) as i64 - 100 }.clamp(lo, hi)
        };
        match t {
            DType::F32 => out.extend((f as f32).to_le_bytes()),
            DType::F64 => out.extend(f.to_le_bytes()),
            DType::F16 => out.extend(f16::from_f64(f).to_le_bytes()),
            DType::BF16 => out.extend(bf16::from_f64(f).to_le_bytes()),
            DType::Bool => out.push((rng.next() & 1) as u8),
            DType::U8 => out.push(int(0, 255, rng) as u8),
            DType::I8 => out.push(int(-128, 127, rng) as i8 as u8),
            DType::U16 => out.extend((int(0, 65535, rng) as u16).to_le_bytes()),
            DType::I16 => out.extend((int(-32768, 32767, rng) as i16).to_le_bytes()),
            DType::U32 => out.extend((int(0, u32::MAX as i64, rng) as u32).to_le_bytes()),
            DType::I32 => out.extend((int(i32::MIN as i64, i32::MAX as i64, rng) as i32).to_le_bytes()),
            // (Past i64::MAX too: the top bit is where unsigned 64-bit arithmetic differs.)
            DType::U64 if special => out.extend([0, u64::MAX, 1 << 63, 1, (1 << 63) + 12345][i % 5].to_le_bytes()),
            DType::U64 => out.extend((int(0, i64::MAX, rng) as u64).to_le_bytes()),
            DType::I64 => out.extend(int(i64::MIN, i64::MAX, rng).to_le_bytes()),
            _ => unreachable!(),
        }
    }
    out
}

/// `bytes` of float type `t` with finite values clamped to ±`limit` (NaN and ±∞ kept).
fn clamp_finite(t: DType, bytes: Vec<u8>, limit: f64) -> Vec<u8> {
    match t {
        DType::F32 => bytes
            .chunks(4)
            .flat_map(|c| {
                let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                (if v.is_finite() { v.clamp(-limit as f32, limit as f32) } else { v }).to_le_bytes()
            })
            .collect(),
        DType::F64 => bytes
            .chunks(8)
            .flat_map(|c| {
                let v = f64::from_le_bytes(c.try_into().expect("8 bytes"));
                (if v.is_finite() { v.clamp(-limit, limit) } else { v }).to_le_bytes()
            })
            .collect(),
        _ => bytes,
    }
}

fn decode(t: DType, b: &[u8]) -> Vec<f64> {
    let w = (t.bits() / 8) as usize;
    b.chunks(w)
        .map(|c| match t {
            DType::F8E4M3 => F8E4M3::from_bits(c[0]).to_f32() as f64,
            DType::F8E5M2 => F8E5M2::from_bits(c[0]).to_f32() as f64,
            DType::F32 => f32::from_le_bytes(c.try_into().unwrap()) as f64,
            DType::F64 => f64::from_le_bytes(c.try_into().unwrap()),
            DType::F16 => f16::from_le_bytes(c.try_into().unwrap()).to_f64(),
            DType::BF16 => bf16::from_le_bytes(c.try_into().unwrap()).to_f64(),
            _ => f64::NAN,
        })
        .collect()
}

/// Whether GPU bytes `g` match CPU bytes `c` for type `t`: integers exactly, floats within a
/// few units in the last place (math functions differ by an ulp or two between libraries; a
/// 16-bit result may round the other way) or a small absolute error near zero.
fn close(t: DType, g: &[u8], c: &[u8]) -> Option<usize> {
    if !t.is_float() {
        let w = (t.bits() / 8) as usize;
        return g.chunks(w).zip(c.chunks(w)).position(|(a, b)| a != b);
    }
    let (ulps, abs, mant) = match t {
        DType::F32 => (16.0, 1e-6, 23),
        DType::F64 => (16.0, 1e-12, 52),
        DType::F16 => (1.0, 1e-3, 10),
        _ => (1.0, 1e-2, 7),
    };
    decode(t, g).iter().zip(decode(t, c)).position(|(&a, b)| {
        let same = (a.is_nan() && b.is_nan()) || a == b;
        let m = a.abs().max(b.abs());
        let ulp = if m > 0.0 { 2f64.powi(m.log2().floor() as i32 - mant) } else { 0.0 };
        !(same || (a - b).abs() <= (ulps * ulp).max(abs))
    })
}

const SHAPE: [usize; 2] = [37, 29];

/// How GPU results are compared with the CPU's.
#[derive(Clone, Copy)]
enum Tol {
    /// Integers exactly, floats within a few ulps ([`close`]).
    Ulps,
    /// Floats within this relative error (sums and products, whose order differs).
    Relative(f64),
    /// Floats within `rel · |x| + abs` (products, whose sums may cancel).
    Mixed(f64, f64),
    /// Every element bit for bit (conversions whose rounding rule is what is tested).
    Bits,
}

fn differs(t: DType, tol: Tol, g: &[u8], c: &[u8]) -> Option<usize> {
    match tol {
        Tol::Relative(r) if t.is_float() => decode(t, g).iter().zip(decode(t, c)).position(|(&a, b)| {
            let same = (a.is_nan() && b.is_nan()) || a == b;
            !(same || (a - b).abs() <= r * a.abs().max(b.abs()))
        }),
        Tol::Mixed(r, abs) if t.is_float() => decode(t, g).iter().zip(decode(t, c)).position(|(&a, b)| {
            let same = (a.is_nan() && b.is_nan()) || a == b;
            !(same || (a - b).abs() <= r * a.abs().max(b.abs()) + abs)
        }),
        Tol::Bits => {
            let w = (t.bits() as usize / 8).max(1);
            g.chunks(w).zip(c.chunks(w)).position(|(a, b)| a != b)
        }
        _ => close(t, g, c),
    }
}

/// Runs `gpu_op` and `cpu_op` on the same operands (uploaded from `inputs`) and compares.
#[allow(clippy::too_many_arguments)]
fn compare<B: Backend>(
    gpu: &B,
    what: &str,
    inputs: &[(DType, Vec<u8>, Layout)],
    out_t: DType,
    out_l: &Layout,
    gpu_op: impl Fn(&[TensorRef<'_, B::Buffer>], TensorMut<'_, B::Buffer>) -> Result<(), Error>,
    cpu_op: impl Fn(&[TensorRef<'_, strata_cpu::CpuBuffer>], TensorMut<'_, strata_cpu::CpuBuffer>) -> Result<(), Error>,
    failures: &mut Vec<String>,
) {
    compare_with(gpu, what, inputs, None, out_t, out_l, Tol::Ulps, gpu_op, cpu_op, failures)
}

/// [`compare`] with a tolerance, and optionally the output's initial contents (otherwise the
/// GPU's is poisoned and the CPU's zeroed).
#[allow(clippy::too_many_arguments)]
fn compare_with<B: Backend>(
    gpu: &B,
    what: &str,
    inputs: &[(DType, Vec<u8>, Layout)],
    initial: Option<&[u8]>,
    out_t: DType,
    out_l: &Layout,
    tol: Tol,
    gpu_op: impl Fn(&[TensorRef<'_, B::Buffer>], TensorMut<'_, B::Buffer>) -> Result<(), Error>,
    cpu_op: impl Fn(&[TensorRef<'_, strata_cpu::CpuBuffer>], TensorMut<'_, strata_cpu::CpuBuffer>) -> Result<(), Error>,
    failures: &mut Vec<String>,
) {
    // The whole initial buffer when there is one: an output with gaps (padded rows, an offset)
    // must leave them as they were.
    let bytes = initial.map_or(out_l.numel() * (out_t.bits() / 8) as usize, <[u8]>::len);
    let gbufs: Vec<_> = inputs.iter().map(|(_, b, _)| gpu.upload(b).unwrap()).collect();
    let cbufs: Vec<_> = inputs.iter().map(|(_, b, _)| Cpu.upload(b).unwrap()).collect();
    let grefs: Vec<_> = inputs.iter().zip(&gbufs).map(|((t, _, l), b)| TensorRef::new(*t, b, l)).collect();
    let crefs: Vec<_> = inputs.iter().zip(&cbufs).map(|((t, _, l), b)| TensorRef::new(*t, b, l)).collect();
    let (mut gout, mut cout) = match initial {
        Some(init) => (gpu.upload(init).unwrap(), Cpu.upload(init).unwrap()),
        None => (gpu.upload(&vec![0xA5; bytes]).unwrap(), Cpu.alloc(bytes).unwrap()),
    };
    let cpu_result = cpu_op(&crefs, TensorMut::new(out_t, &mut cout, out_l));
    let gpu_result = gpu_op(&grefs, TensorMut::new(out_t, &mut gout, out_l));
    match (cpu_result, gpu_result) {
        (Ok(()), Ok(())) => {}
        (Err(_), Err(_)) => return,
        (c, g) => {
            failures.push(format!("{what}: cpu {c:?}, gpu {g:?}"));
            return;
        }
    }
    let mut g = vec![0u8; bytes];
    let mut c = vec![0u8; bytes];
    gpu.download(&gout, &mut g).unwrap();
    Cpu.download(&cout, &mut c).unwrap();
    if let Some(i) = differs(out_t, tol, &g, &c) {
        let w = (out_t.bits() / 8) as usize;
        let input = if out_l.shape() == SHAPE {
            let shown: Vec<String> = inputs
                .iter()
                .map(|(t, b, l)| {
                    let pos = l.position(&[i / SHAPE[1], i % SHAPE[1]]).max(0) as usize;
                    let wi = (t.bits() / 8) as usize;
                    format!("{:?}", &b[pos * wi..pos * wi + wi])
                })
                .collect();
            format!(" (inputs {})", shown.join(", "))
        } else {
            String::new()
        };
        failures.push(format!(
            "{what}: element {i}: gpu {:?} cpu {:?}{input}",
            &g[i * w..i * w + w],
            &c[i * w..i * w + w],
        ));
    }
}

fn layouts() -> (Layout, Layout) {
    let contiguous = Layout::contiguous(&SHAPE);
    // The same elements seen transposed back: strides (1, 37) over a [29, 37] buffer.
    let transposed = Layout::contiguous(&[SHAPE[1], SHAPE[0]]).swap_axes(0, 1);
    (contiguous, transposed)
}

fn report(what: &str, failures: Vec<String>, cases: usize) {
    eprintln!("{what}: {cases} cases, {} failures", failures.len());
    assert!(
        failures.is_empty(),
        "{what}: {} of {cases} cases differ from the CPU:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// How closely a backend's math functions must match the CPU's (correctly rounded or nearly:
/// the Rust standard library).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Math {
    /// Within 16 units in the last place, every input (CUDA's libdevice).
    Libm,
    /// The accuracy shader languages promise: float32 transcendental functions within a
    /// relative error of 2^-14 (about 1000 ulps; Vulkan allows `exp` 3 + 2|x| ulps and the
    /// inverse trigonometric functions 4096), and the trigonometric functions only on
    /// |x| < 10^4 (inputs beyond are scaled into range), where our argument reduction holds.
    Shader,
}

static MATH: std::sync::Mutex<Math> = std::sync::Mutex::new(Math::Libm);

/// Sets the accuracy the unary and binary suites hold the backend to (`Libm` by default).
pub fn set_math(m: Math) {
    *MATH.lock().unwrap_or_else(|e| e.into_inner()) = m;
}

fn math() -> Math {
    *MATH.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `op` (a unary or binary operation's name) is a transcendental function, which
/// shader languages do not round correctly.
fn transcendental(op: &str) -> bool {
    matches!(
        op,
        "exp"
            | "exp2"
            | "expm1"
            | "log"
            | "log2"
            | "log10"
            | "log1p"
            | "sin"
            | "cos"
            | "tan"
            | "arcsin"
            | "arccos"
            | "arctan"
            | "sinh"
            | "cosh"
            | "tanh"
            | "arcsinh"
            | "arccosh"
            | "arctanh"
            | "erf"
            | "erfinv"
            | "sigmoid"
            | "softplus"
            | "gelu"
            | "gelu_tanh"
            | "silu"
            | "power"
            | "arctan2"
            | "logaddexp"
    )
}

/// The tolerance for `op` on `t` under the current [`Math`].
fn op_tol(op: &str, t: DType) -> Tol {
    if math() == Math::Shader && t == DType::F32 && transcendental(op) {
        Tol::Mixed(1.0 / 16384.0, 1e-6)
    } else {
        Tol::Ulps
    }
}

/// Under [`Math::Shader`], float inputs of the trigonometric functions beyond 10^4 in
/// magnitude are scaled by 10^-26 (they keep their sign; the specials stay).
fn trig_range(op: &str, t: DType, bytes: Vec<u8>) -> Vec<u8> {
    if math() != Math::Shader || !matches!(op, "sin" | "cos" | "tan") || !t.is_float() {
        return bytes;
    }
    let w = (t.bits() / 8) as usize;
    bytes
        .chunks(w)
        .flat_map(|c| {
            let x = decode(t, c)[0];
            let x = if x.is_finite() && x.abs() >= 1e4 { x * 1e-26 } else { x };
            match t {
                DType::F32 => (x as f32).to_le_bytes().to_vec(),
                DType::F64 => x.to_le_bytes().to_vec(),
                DType::F16 => f16::from_f64(x).to_le_bytes().to_vec(),
                _ => bf16::from_f64(x).to_le_bytes().to_vec(),
            }
        })
        .collect()
}

/// Held by the suites that run `log1p`; a backend's test that counts its own `log1p` kernels
/// in the flight recorder holds it too.
pub static EXCLUSIVE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Every unary operation on every type, from contiguous, transposed and offset inputs.
pub fn unary_ops_match_the_cpu<B: Backend>(gpu: &B, types: &[DType]) {
    let _log1p = EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = Rng(seed());
    let (contiguous, transposed) = layouts();
    // Dense but starting one element in: the kernels' packed path does not apply.
    let shifted = Layout::new(&SHAPE, &[SHAPE[1] as isize, 1], 1).unwrap();
    let (mut failures, mut cases) = (Vec::new(), 0);
    for &t in types {
        for &op in UnaryOp::ALL {
            let Ok(out_t) = op.output_dtype(t) else { continue };
            for l in [&contiguous, &transposed, &shifted] {
                let x = trig_range(op.name(), t, random(t, SHAPE[0] * SHAPE[1] + 1, &mut rng));
                cases += 1;
                compare_with(
                    gpu,
                    &format!("{} {t} {:?}", op.name(), l.strides()),
                    &[(t, x, l.clone())],
                    None,
                    out_t,
                    &contiguous,
                    op_tol(op.name(), t),
                    |i, o| gpu.unary(op, i[0], o),
                    |i, o| Cpu.unary(op, i[0], o),
                    &mut failures,
                );
            }
        }
    }
    report("unary", failures, cases);
}

/// Every binary operation on every type, with a broadcast row and a transposed operand.
pub fn binary_ops_match_the_cpu_with_broadcasting<B: Backend>(gpu: &B, types: &[DType]) {
    let mut rng = Rng(seed() ^ 0x9e37);
    let (contiguous, transposed) = layouts();
    // The second operand is one row broadcast over the first axis.
    let row = Layout::new(&SHAPE, &[0, 1], 0).unwrap();
    let (mut failures, mut cases) = (Vec::new(), 0);
    for &t in types {
        for &op in BinaryOp::ALL {
            let Ok(out_t) = op.output_dtype(t) else { continue };
            let n = SHAPE[0] * SHAPE[1];
            for (la, lb, nb) in [(&transposed, &row, SHAPE[1]), (&contiguous, &contiguous, n)] {
                let a = random(t, n, &mut rng);
                let b = random(t, nb, &mut rng);
                cases += 1;
                compare_with(
                    gpu,
                    &format!("{} {t} {:?} {:?}", op.name(), la.strides(), lb.strides()),
                    &[(t, a, la.clone()), (t, b, lb.clone())],
                    None,
                    out_t,
                    &contiguous,
                    op_tol(op.name(), t),
                    |i, o| gpu.binary(op, i[0], i[1], o),
                    |i, o| Cpu.binary(op, i[0], i[1], o),
                    &mut failures,
                );
            }
        }
    }
    report("binary", failures, cases);
}

/// Every cast between the types, and `where`.
pub fn casts_select_and_copies_match_the_cpu<B: Backend>(gpu: &B, types: &[DType]) {
    let mut rng = Rng(seed() ^ 0x51ed);
    let (contiguous, transposed) = layouts();
    let (mut failures, mut cases) = (Vec::new(), 0);
    for &from in types {
        for &to in types {
            for l in [&transposed, &contiguous] {
                let x = random(from, SHAPE[0] * SHAPE[1], &mut rng);
                cases += 1;
                compare(
                    gpu,
                    &format!("cast {from} -> {to} {:?}", l.strides()),
                    &[(from, x, l.clone())],
                    to,
                    &contiguous,
                    |i, o| gpu.cast(i[0], o),
                    |i, o| Cpu.cast(i[0], o),
                    &mut failures,
                );
            }
            // Dense lengths that leave every partial block a thread of a vectorized kernel can
            // be left with (four or eight elements a thread).
            for n in 1..=17 {
                let l = Layout::contiguous(&[n]);
                let x = random(from, n, &mut rng);
                cases += 1;
                compare(
                    gpu,
                    &format!("cast {from} -> {to} [{n}]"),
                    &[(from, x, l.clone())],
                    to,
                    &l,
                    |i, o| gpu.cast(i[0], o),
                    |i, o| Cpu.cast(i[0], o),
                    &mut failures,
                );
            }
        }
        let cond = random(DType::Bool, SHAPE[0] * SHAPE[1], &mut rng);
        let (a, b) = (random(from, SHAPE[0] * SHAPE[1], &mut rng), random(from, SHAPE[0] * SHAPE[1], &mut rng));
        cases += 1;
        compare(
            gpu,
            &format!("where {from}"),
            &[(DType::Bool, cond, contiguous.clone()), (from, a, transposed.clone()), (from, b, contiguous.clone())],
            from,
            &contiguous,
            |i, o| gpu.select(i[0], i[1], i[2], o),
            |i, o| Cpu.select(i[0], i[1], i[2], o),
            &mut failures,
        );
    }
    // Integers past float32's 24 bits into bfloat16 go through float32, two roundings, as the
    // CPU and ml_dtypes do: 2^25 + 2^17 + 1 is 2^25 + 2^17 in f32, a bfloat16 tie that goes to
    // even (2^25), where one rounding from the exact value gives 2^25 + 2^18. Bit for bit: a
    // ulp's tolerance would pass either rule.
    if types.contains(&DType::BF16) {
        let big: [i64; 6] =
            [33_685_505, 33_685_503, (1 << 30) + (1 << 22) + 1, 16_777_217, (1 << 41) + (1 << 33) + 1, i64::MAX];
        for from in [DType::I32, DType::U32, DType::I64, DType::U64].into_iter().filter(|t| types.contains(t)) {
            let fits = |v: i64| match from {
                DType::I32 => i32::try_from(v).is_ok(),
                DType::U32 => u32::try_from(v).is_ok(),
                DType::I64 => true,
                _ => v >= 0,
            };
            let values: Vec<i64> = big.iter().flat_map(|&v| [v, -v]).filter(|&v| fits(v)).collect();
            let bytes: Vec<u8> = values
                .iter()
                .flat_map(|&v| match from {
                    DType::I32 => (v as i32).to_le_bytes().to_vec(),
                    DType::U32 => (v as u32).to_le_bytes().to_vec(),
                    _ => v.to_le_bytes().to_vec(),
                })
                .collect();
            let l = Layout::contiguous(&[values.len()]);
            cases += 1;
            compare_with(
                gpu,
                &format!("cast {from} -> bfloat16 past 2^24 {values:?}"),
                &[(from, bytes, l.clone())],
                None,
                DType::BF16,
                &l,
                Tol::Bits,
                |i, o| gpu.cast(i[0], o),
                |i, o| Cpu.cast(i[0], o),
                &mut failures,
            );
        }
    }
    report("cast/select", failures, cases);
}

/// Shape, type and bounds errors, reading past a buffer, and an allocation no device has.
pub fn bad_input_and_out_of_memory_are_errors<B: Backend>(gpu: &B) {
    eprintln!("device: {}", gpu.name());
    // A petabyte: the driver refuses, the pool empties its cache, retries, and reports.
    match gpu.alloc_output(1 << 50) {
        Err(Error::OutOfMemory { device, bytes }) => assert!(!device.is_empty() && bytes == 1 << 50),
        Err(e) => panic!("expected OutOfMemory, got {e}"),
        Ok(_) => panic!("a petabyte was allocated"),
    }
    // Still usable afterwards.
    let x = gpu.upload(&[0u8; 16]).unwrap();
    let mut y = gpu.alloc(8).unwrap();
    let (l4, l2) = (Layout::contiguous(&[4]), Layout::contiguous(&[2]));
    let err = gpu.unary(UnaryOp::Exp, TensorRef::new(DType::F32, &x, &l4), TensorMut::new(DType::F32, &mut y, &l2));
    assert!(err.unwrap_err().to_string().contains("shape"));
    let err = gpu.unary(UnaryOp::Exp, TensorRef::new(DType::F32, &x, &l4), TensorMut::new(DType::F32, &mut y, &l4));
    let msg = err.unwrap_err().to_string();
    assert!(msg.contains("outside its buffer"), "an output too small for its layout: {msg}");
    let err = gpu.unary(UnaryOp::Exp, TensorRef::new(DType::I32, &x, &l4), TensorMut::new(DType::I32, &mut y, &l2));
    assert!(err.is_err());
    let mut back = [0u8; 32];
    assert!(gpu.download(&x, &mut back).is_err(), "reading past the end");
}

/// `n` floats of `t` drawn uniformly from `[lo, hi)`: inputs whose sums and products are well
/// conditioned, so that a different order of operations stays within a relative tolerance.
fn uniform(t: DType, n: usize, lo: f64, hi: f64, rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..n {
        let f = lo + (hi - lo) * rng.unit();
        match t {
            DType::F32 => out.extend((f as f32).to_le_bytes()),
            DType::F64 => out.extend(f.to_le_bytes()),
            DType::F16 => out.extend(f16::from_f64(f).to_le_bytes()),
            DType::BF16 => out.extend(bf16::from_f64(f).to_le_bytes()),
            DType::F8E4M3 => out.push(F8E4M3::from_f32(f as f32).to_bits()),
            DType::F8E5M2 => out.push(F8E5M2::from_f32(f as f32).to_bits()),
            _ => unreachable!("floats only"),
        }
    }
    out
}

/// The relative tolerance of an accumulation in `t` (16-bit types accumulate in f32 and round
/// once, so one ulp of the result).
fn accumulation_tol(t: DType) -> Tol {
    match t {
        DType::F64 => Tol::Relative(1e-12),
        DType::F32 => Tol::Relative(2e-5),
        DType::F16 => Tol::Relative(2.0 / 1024.0),
        _ => Tol::Relative(2.0 / 128.0),
    }
}

/// Every reduction over one axis, several and all, on every type.
pub fn reductions_match_the_cpu<B: Backend>(gpu: &B, types: &[DType]) {
    let mut rng = Rng(seed() ^ 0x7ed5);
    let (contiguous, transposed) = layouts();
    // (input layout, axes, output shape): rows, columns, everything, strided rows; then long
    // blocks that the kernels split into chunks (rows and columns), and rows long enough for a
    // whole block per output.
    let cases: Vec<(Layout, Vec<usize>, Vec<usize>)> = vec![
        (contiguous.clone(), vec![1], vec![SHAPE[0]]),
        (contiguous.clone(), vec![0], vec![1, SHAPE[1]]),
        (contiguous.clone(), vec![0, 1], vec![]),
        (transposed.clone(), vec![1], vec![SHAPE[0], 1]),
        (Layout::contiguous(&[3, 20011]), vec![1], vec![3]),
        (Layout::contiguous(&[20011, 3]), vec![0], vec![3]),
        (Layout::contiguous(&[100_003]), vec![0], vec![]),
        (Layout::contiguous(&[5, 5003]), vec![1], vec![5, 1]),
        (Layout::contiguous(&[4, 6, 7]), vec![0, 2], vec![6]),
        // Columns whose innermost kept axis is dense and a multiple of four (four outputs a
        // thread on CUDA), long enough to be chunked, and with two kept axes.
        (Layout::contiguous(&[2003, 12]), vec![0], vec![12]),
        (Layout::contiguous(&[5, 301, 8]), vec![1], vec![5, 8]),
    ];
    let (mut failures, mut count) = (Vec::new(), 0);
    for &t in types {
        for &op in ReduceOp::ALL {
            let out_t = match op {
                ReduceOp::All | ReduceOp::Any => DType::Bool,
                ReduceOp::ArgMax | ReduceOp::ArgMin if types.contains(&DType::I64) => {
                    [DType::I64, DType::U32][count % 2]
                }
                ReduceOp::ArgMax | ReduceOp::ArgMin => [DType::I32, DType::U32][count % 2],
                _ => t,
            };
            if op.validate_types(t, out_t).is_err() {
                continue;
            }
            for (l, axes, out_shape) in &cases {
                if op.is_index() && axes.len() != 1 {
                    continue;
                }
                let n = l.shape().iter().product::<usize>() + l.offset();
                let accumulates = t.is_float() && matches!(op, ReduceOp::Sum | ReduceOp::Prod);
                if accumulates && op == ReduceOp::Prod && n > 2000 {
                    continue; // a product of thousands of values leaves the range of the type
                }
                let buffer_len = l.shape().iter().product::<usize>();
                let x = if accumulates {
                    uniform(t, buffer_len, 0.5, 1.5, &mut rng)
                } else {
                    random(t, buffer_len, &mut rng)
                };
                let tol = if accumulates { accumulation_tol(t) } else { Tol::Ulps };
                let out_l = Layout::contiguous(out_shape);
                count += 1;
                compare_with(
                    gpu,
                    &format!("{} {t} -> {out_t} {:?} {:?} axes {axes:?}", op.name(), l.shape(), l.strides()),
                    &[(t, x, l.clone())],
                    None,
                    out_t,
                    &out_l,
                    tol,
                    |i, o| gpu.reduce(op, axes, i[0], o),
                    |i, o| Cpu.reduce(op, axes, i[0], o),
                    &mut failures,
                );
            }
        }
    }
    report("reduce", failures, count);
}

/// Every scan, inclusive and exclusive, forward and reversed, on every type.
pub fn scans_match_the_cpu<B: Backend>(gpu: &B, types: &[DType]) {
    let mut rng = Rng(seed() ^ 0x5ca9);
    let (contiguous, transposed) = layouts();
    // Short lanes (a thread each), lanes along a strided axis, and long dense lanes (a block
    // each, several tiles).
    let cases: Vec<(Layout, usize)> = vec![
        (contiguous.clone(), 1),
        (contiguous, 0),
        (transposed, 1),
        (Layout::contiguous(&[3, 3001]), 1),
        // 4-aligned rows (16-byte loads on CUDA): several tiles and a ragged last one.
        (Layout::contiguous(&[2, 5004]), 1),
        (Layout::contiguous(&[1, 9000]), 1),
        // One lane whose last thread's eight elements are cut short.
        (Layout::contiguous(&[1, 4099]), 1),
        // Lanes enough for a warp (CUDA) or a subgroup (wgpu) each, rows 16-byte aligned in
        // every type of 16 bits or more.
        (Layout::contiguous(&[5000, 136]), 1),
    ];
    let (mut failures, mut count) = (Vec::new(), 0);
    for &t in types {
        for &op in ScanOp::ALL {
            if op.output_dtype(t).is_err() {
                continue;
            }
            for (l, axis) in &cases {
                for (reverse, inclusive) in [(false, true), (true, false), (true, true), (false, false)] {
                    let n = l.shape().iter().product::<usize>();
                    let x = match (t.is_float(), op) {
                        (true, ScanOp::Sum) => uniform(t, n, 0.0, 1.0, &mut rng),
                        (true, ScanOp::Prod) => uniform(t, n, 0.995, 1.005, &mut rng),
                        (true, ScanOp::LogAddExp) => uniform(t, n, -4.0, 4.0, &mut rng),
                        _ => random(t, n, &mut rng),
                    };
                    // A running log-sum-exp near zero cancels: its error is absolute (a few
                    // ulps of the terms, which are of order one), not relative.
                    let tol = match (t, op) {
                        (_, ScanOp::Max | ScanOp::Min) => Tol::Ulps,
                        (_, _) if !t.is_float() => Tol::Ulps,
                        (DType::F64, ScanOp::LogAddExp) => Tol::Mixed(1e-12, 1e-13),
                        (DType::F32, ScanOp::LogAddExp) => Tol::Mixed(2e-5, 1e-6),
                        (DType::F16, ScanOp::LogAddExp) => Tol::Mixed(2.0 / 1024.0, 4e-3),
                        (_, ScanOp::LogAddExp) => Tol::Mixed(2.0 / 128.0, 3e-2),
                        _ => accumulation_tol(t),
                    };
                    count += 1;
                    compare_with(
                        gpu,
                        &format!(
                            "{} {t} {:?} {:?} axis {axis} rev {reverse} incl {inclusive}",
                            op.name(),
                            l.shape(),
                            l.strides()
                        ),
                        &[(t, x, l.clone())],
                        None,
                        t,
                        &Layout::contiguous(l.shape()),
                        tol,
                        |i, o| gpu.scan(op, *axis, reverse, inclusive, i[0], o),
                        |i, o| Cpu.scan(op, *axis, reverse, inclusive, i[0], o),
                        &mut failures,
                    );
                }
            }
        }
    }
    report("scan", failures, count);
}

/// `n` indices of type `ti` in `[-size, size)` (non-negative for uint32).
fn indices(ti: DType, n: usize, size: usize, rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..n {
        let v = (rng.next() % (2 * size as u64)) as i64 - size as i64;
        match ti {
            DType::I32 => out.extend((v as i32).to_le_bytes()),
            DType::I64 => out.extend(v.to_le_bytes()),
            _ => out.extend((v.rem_euclid(size as i64) as u32).to_le_bytes()),
        }
    }
    out
}

/// `take_along_axis` by indices of type `ti` on every element width `types` has, along both
/// axes of a strided array, and `scatter_add` with repeated indices into an output that already
/// holds values.
fn gather_and_scatter_by<B: Backend>(
    gpu: &B,
    ti: DType,
    types: &[DType],
    rng: &mut Rng,
    failures: &mut Vec<String>,
    count: &mut usize,
) {
    let (contiguous, transposed) = layouts();
    let ours = |t: &DType| types.contains(t);
    // take_along_axis on every element width, along both axes, from a strided array.
    for t in [DType::U8, DType::F16, DType::F32, DType::F64].into_iter().filter(ours) {
        for (x_l, axis, idx_shape) in [(&contiguous, 1, [SHAPE[0], 11]), (&transposed, 0, [13, SHAPE[1]])] {
            let n = idx_shape[0] * idx_shape[1];
            let x = random(t, SHAPE[0] * SHAPE[1], rng);
            let idx = indices(ti, n, SHAPE[axis], rng);
            *count += 1;
            compare(
                gpu,
                &format!("take_along_axis {t} by {ti} axis {axis}"),
                &[(t, x, x_l.clone()), (ti, idx, Layout::contiguous(&idx_shape))],
                t,
                &Layout::contiguous(&idx_shape),
                |i, o| gpu.gather(axis, i[0], i[1], o),
                |i, o| Cpu.gather(axis, i[0], i[1], o),
                failures,
            );
        }
    }
    // scatter_add with repeated indices into an output that already holds values.
    for t in strata_core::kernel::SCATTER_TYPES.into_iter().filter(ours) {
        let idx_shape = [SHAPE[0], 50];
        let idx = indices(ti, idx_shape[0] * idx_shape[1], SHAPE[1], rng);
        let updates = if t.is_float() {
            uniform(t, idx_shape[0] * idx_shape[1], -1.0, 1.0, rng)
        } else {
            random(t, idx_shape[0] * idx_shape[1], rng)
        };
        let initial = if t.is_float() {
            uniform(t, SHAPE[0] * SHAPE[1], 10.0, 11.0, rng)
        } else {
            random(t, SHAPE[0] * SHAPE[1], rng)
        };
        *count += 1;
        compare_with(
            gpu,
            &format!("scatter_add {t} by {ti}"),
            &[(ti, idx, Layout::contiguous(&idx_shape)), (t, updates, Layout::contiguous(&idx_shape))],
            Some(&initial),
            t,
            &contiguous,
            if t.is_float() { Tol::Relative(1e-6) } else { Tol::Ulps },
            |i, o| gpu.scatter_add(1, i[0], i[1], o),
            |i, o| Cpu.scatter_add(1, i[0], i[1], o),
            failures,
        );
    }
}

/// Gathers and scatters by int64 indices (PyTorch's and NumPy's default) on a backend that takes
/// them as indices though not as values (`types` without int64): the wgpu backend.
pub fn int64_indices_match_the_cpu<B: Backend>(gpu: &B, types: &[DType]) {
    let mut rng = Rng(seed() ^ 0x1264);
    let (mut failures, mut count) = (Vec::new(), 0);
    gather_and_scatter_by(gpu, DType::I64, types, &mut rng, &mut failures, &mut count);
    report("gather/scatter_add by int64", failures, count);
}

/// `take_along_axis`, `scatter_add` with repeated indices, and Threefry random bits.
pub fn gather_scatter_and_random_bits_match_the_cpu<B: Backend>(gpu: &B, types: &[DType]) {
    let mut rng = Rng(seed() ^ 0x6a7e);
    let (mut failures, mut count) = (Vec::new(), 0);
    let ours = |t: &DType| types.contains(t);
    for ti in strata_core::kernel::INDEX_TYPES.into_iter().filter(ours) {
        gather_and_scatter_by(gpu, ti, types, &mut rng, &mut failures, &mut count);
    }
    for n in [1, 2, 7, 1000, 4097] {
        let keys = random(DType::U32, 10, &mut rng);
        count += 1;
        compare(
            gpu,
            &format!("random_bits [5, {n}]"),
            &[(DType::U32, keys, Layout::contiguous(&[5, 2]))],
            DType::U32,
            &Layout::contiguous(&[5, n]),
            |i, o| gpu.random_bits(i[0], o),
            |i, o| Cpu.random_bits(i[0], o),
            &mut failures,
        );
    }
    report("gather/scatter_add/random_bits", failures, count);
}

/// `argsort` against the CPU: every type the backend takes, both axes of a strided operand,
/// lanes of lengths around the powers of two (ties from small integers, NaNs, ±0 and
/// infinities among the floats), a strided output. Indices must be equal (the order is stable).
pub fn argsort_matches_the_cpu<B: Backend>(gpu: &B, types: &[DType]) {
    let mut rng = Rng(seed() ^ 0x5047);
    let (contiguous, transposed) = layouts();
    let (mut failures, mut count) = (Vec::new(), 0);
    let sortable = [
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
        DType::BF16,
        DType::F32,
        DType::F64,
    ];
    for t in sortable.into_iter().filter(|t| types.contains(t)) {
        for (l, axis) in [(&contiguous, 1), (&contiguous, 0), (&transposed, 1), (&transposed, 0)] {
            let x = random(t, SHAPE[0] * SHAPE[1], &mut rng);
            count += 1;
            compare(
                gpu,
                &format!("argsort {t} axis {axis} {:?}", l.strides()),
                &[(t, x, l.clone())],
                DType::U32,
                &contiguous,
                |i, o| gpu.argsort(axis, i[0], o),
                |i, o| Cpu.argsort(axis, i[0], o),
                &mut failures,
            );
        }
    }
    for t in [DType::F32, DType::I32].into_iter().filter(|t| types.contains(t)) {
        for len in [1, 2, 31, 32, 33, 255, 1000, 1024, 4095, 4096] {
            let shape = [3, len];
            let x = random(t, 3 * len, &mut rng);
            count += 1;
            // The output transposed: [3, len] seen through strides (1, 3).
            let out = Layout::contiguous(&[len, 3]).swap_axes(0, 1);
            compare(
                gpu,
                &format!("argsort {t} lanes of {len}"),
                &[(t, x, Layout::contiguous(&shape))],
                DType::U32,
                &out,
                |i, o| gpu.argsort(1, i[0], o),
                |i, o| Cpu.argsort(1, i[0], o),
                &mut failures,
            );
        }
    }
    report("argsort", failures, count);
}

/// `argsort` of lanes longer than one workgroup sorts (4096 elements on most adapters): lengths
/// past the block size and its multiples, along the last axis and along the first (lanes
/// interleaved), with ties and NaNs; indices must be equal (the order is stable).
pub fn argsort_long_lanes_match_the_cpu<B: Backend>(gpu: &B, types: &[DType]) {
    let mut rng = Rng(seed() ^ 0x5048);
    let (mut failures, mut count) = (Vec::new(), 0);
    for t in [DType::F32, DType::I32, DType::F16].into_iter().filter(|t| types.contains(t)) {
        for len in [4097, 8192, 10_000, 40_000] {
            for (shape, axis) in [([2, len], 1), ([len, 3], 0)] {
                let n = shape[0] * shape[1];
                count += 1;
                compare(
                    gpu,
                    &format!("argsort {t} {shape:?} axis {axis}"),
                    &[(t, random(t, n, &mut rng), Layout::contiguous(&shape))],
                    DType::U32,
                    &Layout::contiguous(&shape),
                    |i, o| gpu.argsort(axis, i[0], o),
                    |i, o| Cpu.argsort(axis, i[0], o),
                    &mut failures,
                );
            }
        }
    }
    report("argsort of long lanes", failures, count);
}

/// An out-of-range index is an `Err` naming it, and the output is untouched: int64 ones also
/// where dropping their high word would leave an index in range (2^32 + 3), or none (i64::MIN).
pub fn a_bad_index_is_an_error_and_nothing_is_written<B: Backend>(gpu: &B, types: &[DType]) {
    let x = gpu.upload(&[1u8; 4 * 10]).unwrap();
    let l = Layout::contiguous(&[10]);
    let int64 = [-11, (1i64 << 32) + 3, i64::MIN, -(1i64 << 32) + 1].map(|bad| (DType::I64, bad));
    for (ti, bad) in [(DType::I32, 10i64), (DType::U32, 4_000_000_000)].into_iter().chain(int64) {
        if !types.contains(&ti) {
            continue;
        }
        let mut raw: Vec<u8> = Vec::new();
        for v in [0i64, 3, bad, 9] {
            match ti {
                DType::I32 => raw.extend((v as i32).to_le_bytes()),
                DType::I64 => raw.extend(v.to_le_bytes()),
                _ => raw.extend((v as u32).to_le_bytes()),
            }
        }
        let idx = gpu.upload(&raw).unwrap();
        let il = Layout::contiguous(&[4]);
        let mut out = gpu.upload(&[0xA5; 16]).unwrap();
        let err = gpu
            .gather(
                0,
                TensorRef::new(DType::F32, &x, &l),
                TensorRef::new(ti, &idx, &il),
                TensorMut::new(DType::F32, &mut out, &il),
            )
            .unwrap_err();
        let expected = if ti == DType::U32 { 4_000_000_000u32.to_string() } else { bad.to_string() };
        assert!(err.to_string().contains(&format!("index {expected} is out of range")), "{ti}: {err}");
        let mut back = [0u8; 16];
        gpu.download(&out, &mut back).unwrap();
        assert_eq!(back, [0xA5; 16], "{ti}: the output was written");
        let mut acc = gpu.upload(&[0u8; 40]).unwrap();
        let upd = gpu.upload(&[0u8; 16]).unwrap();
        let err = gpu
            .scatter_add(
                0,
                TensorRef::new(ti, &idx, &il),
                TensorRef::new(DType::F32, &upd, &il),
                TensorMut::new(DType::F32, &mut acc, &l),
            )
            .unwrap_err();
        assert!(err.to_string().contains("out of range"), "{ti}: {err}");
    }
}

/// Random elements for a product: floats in [-1, 1), int8 over its range.
fn operand(t: DType, n: usize, rng: &mut Rng) -> Vec<u8> {
    if t.is_float() { uniform(t, n, -1.0, 1.0, rng) } else { random(t, n, rng) }
}

/// N-d convolutions and their transposes on every float type: 1-, 2- and 3-D, strides,
/// dilations, asymmetric padding, groups (depthwise too), output padding, and an input stored
/// in another order.
pub fn conv_matches_the_cpu<B: Backend>(gpu: &B, types: &[DType]) {
    let mut rng = Rng(seed() ^ 0xc0a7);
    let (mut failures, mut count) = (Vec::new(), 0);
    let conv = |spatial: usize, stride: &[usize], dilation: &[usize], padding: &[(usize, usize)], groups: usize| {
        let mut c = Conv::new(spatial).groups(groups).dilation(dilation);
        c.stride[..spatial].copy_from_slice(stride);
        c.padding[..spatial].copy_from_slice(padding);
        c
    };
    // (descriptor, input shape, weight shape, operands stored in another order: see below)
    let cases: Vec<(Conv, Vec<usize>, Vec<usize>, bool)> = vec![
        (conv(1, &[2], &[1], &[(1, 1)], 1), vec![2, 13, 6], vec![3, 6, 5], false),
        (conv(2, &[1, 1], &[1, 1], &[(1, 1), (1, 1)], 1), vec![2, 9, 8, 4], vec![3, 3, 4, 6], false),
        (conv(2, &[1, 1], &[1, 1], &[(1, 1), (1, 1)], 1), vec![2, 9, 8, 4], vec![3, 3, 4, 6], true),
        (conv(2, &[2, 1], &[1, 2], &[(2, 1), (0, 1)], 2), vec![1, 11, 10, 6], vec![3, 2, 3, 4], false),
        (conv(2, &[1, 1], &[1, 1], &[(1, 1), (1, 1)], 8), vec![2, 7, 7, 8], vec![3, 3, 1, 8], false),
        (
            conv(3, &[1, 2, 1], &[1, 1, 1], &[(1, 0), (1, 1), (0, 1)], 1),
            vec![1, 5, 6, 4, 3],
            vec![2, 3, 2, 3, 4],
            false,
        ),
        (
            conv(2, &[2, 2], &[1, 1], &[(1, 1), (1, 1)], 1).transposed(&[1, 0]),
            vec![1, 4, 5, 6],
            vec![3, 3, 3, 6],
            false,
        ),
        (conv(1, &[3], &[2], &[(2, 1)], 2).transposed(&[2]), vec![2, 7, 4], vec![3, 2, 4], true),
        // Shapes the 16-bit implicit GEMM takes (channels in multiples of eight): several tiles
        // of positions with a partial last one, output channels past one tile, depths that end
        // mid-slice (cig of 8, 24, 136), strides, dilations, uneven padding, groups, 1-D and 3-D,
        // and an input stored in another order.
        (conv(2, &[1, 1], &[1, 1], &[(1, 1), (1, 1)], 1), vec![2, 17, 19, 32], vec![3, 3, 32, 40], false),
        (conv(2, &[2, 1], &[2, 1], &[(2, 1), (1, 1)], 2), vec![1, 20, 18, 48], vec![3, 3, 24, 144], false),
        (conv(1, &[1], &[1], &[(2, 2)], 1), vec![3, 300, 16], vec![5, 16, 136], false),
        (
            conv(3, &[1, 1, 1], &[1, 1, 1], &[(1, 1), (1, 1), (1, 1)], 1),
            vec![1, 6, 7, 8, 8],
            vec![3, 3, 3, 8, 16],
            false,
        ),
        (conv(2, &[1, 1], &[1, 1], &[(1, 1), (1, 1)], 1), vec![2, 12, 10, 16], vec![3, 3, 16, 24], true),
        (conv(2, &[1, 1], &[1, 1], &[(0, 0), (0, 0)], 1), vec![2, 9, 9, 136], vec![1, 1, 136, 24], false),
        (conv(2, &[1, 1], &[1, 1], &[(1, 1), (1, 1)], 8), vec![1, 10, 10, 64], vec![3, 3, 8, 64], false),
        // Depths of nine, eleven and twenty 64-deep slices on a few blocks: CUDA's warpgroup
        // kernel splits them two, two and five ways (over two groups; in part of a channel
        // tile; with 72 channels, the second split starts mid-tap and the last slice is ragged).
        // (Each image's 16-bit operands stay within wgpu's 64 KiB test binding.)
        (conv(2, &[1, 1], &[1, 1], &[(1, 1), (1, 1)], 2), vec![2, 9, 7, 128], vec![3, 3, 64, 48], false),
        (conv(1, &[1], &[1], &[(2, 2)], 1), vec![2, 100, 256], vec![5, 256, 24], false),
        (conv(2, &[1, 1], &[1, 1], &[(1, 1), (1, 1)], 1), vec![1, 8, 8, 72], vec![3, 3, 72, 16], false),
    ];
    for &t in types.iter().filter(|t| matches!(t, DType::F32 | DType::F64 | DType::F16 | DType::BF16)) {
        for (ci, (desc, xs, ws, other)) in cases.iter().enumerate() {
            let os = desc.output_shape(xs, ws).expect("a valid case");
            let xl = if *other && desc.spatial >= 2 {
                // Stored as [b, s1, s0, ...]: the view swaps the two back.
                let mut stored = xs.clone();
                stored.swap(1, 2);
                Layout::contiguous(&stored).swap_axes(1, 2)
            } else if *other {
                // 1-D: every other element of a buffer twice as long.
                let st = Layout::contiguous(xs);
                let strides: Vec<isize> = st.strides().iter().map(|s| 2 * s).collect();
                Layout::new(xs, &strides, 1).unwrap()
            } else {
                Layout::contiguous(xs)
            };
            let x_len = if *other && desc.spatial < 2 { 2 * xs.iter().product::<usize>() } else { xs.iter().product() };
            // With 2+ spatial axes, the weight too is stored with its first two axes swapped.
            let wl = if *other && desc.spatial >= 2 {
                let mut stored = ws.clone();
                stored.swap(0, 1);
                Layout::contiguous(&stored).swap_axes(0, 1)
            } else {
                Layout::contiguous(ws)
            };
            let inputs = vec![
                (t, uniform(t, x_len, -1.0, 1.0, &mut rng), xl),
                (t, uniform(t, ws.iter().product(), -1.0, 1.0, &mut rng), wl),
            ];
            // Sums that cancel err by up to about one rounding a term: the absolute part grows
            // with the depth past the 288 terms (3 × 3 × 32) it was set for.
            let depth = ws[..ws.len() - 1].iter().product::<usize>() as f64;
            let grow = (depth / 288.0).max(1.0);
            let tol = match t {
                DType::F64 => Tol::Mixed(1e-12, 1e-12 * grow),
                DType::F32 => Tol::Mixed(2e-5, 1e-5 * grow),
                DType::F16 => Tol::Mixed(2.0 / 1024.0, 1e-3 * grow),
                _ => Tol::Mixed(2.0 / 128.0, 1e-2 * grow),
            };
            count += 1;
            compare_with(
                gpu,
                &format!("conv {t} case {ci} {desc:?}"),
                &inputs,
                None,
                t,
                &Layout::contiguous(&os),
                tol,
                |i, o| gpu.conv(desc, i[0], i[1], o),
                |i, o| Cpu.conv(desc, i[0], i[1], o),
                &mut failures,
            );
        }
    }
    report("conv", failures, count);
}

/// Scaled dot-product attention on every float type: grouped key/value heads, more queries
/// than keys and the reverse, causal masks (rows that see no key give zeros), additive and
/// boolean masks broadcast over heads, operands stored in other orders, heads of 16 to 256, and
/// the shapes of the 16-bit tensor-core kernels.
pub fn attention_matches_the_cpu<B: Backend>(gpu: &B, types: &[DType]) {
    let mut rng = Rng(seed() ^ 0xa77e);
    let (mut failures, mut count) = (Vec::new(), 0);
    // (batch, query heads, key/value heads, queries, keys, d, dv, mask, stored in another order)
    let cases = [
        (2, 4, 4, 37, 45, 64, 64, AttentionMask::None, false),
        (1, 8, 2, 33, 70, 32, 48, AttentionMask::Causal, false),
        (2, 2, 1, 50, 20, 16, 16, AttentionMask::Causal, true),
        (1, 4, 2, 19, 40, 64, 32, AttentionMask::Explicit, false),
        (2, 2, 2, 21, 33, 40, 40, AttentionMask::Explicit, true),
        (1, 2, 1, 17, 64, 256, 256, AttentionMask::None, true),
        // Shapes the 16-bit tensor-core kernels take (heads of 32, 64 and 128, rows 16-byte
        // aligned): several blocks of queries and keys with partial last ones, causal with
        // more keys than queries and the reverse (rows that see nothing), masks of both kinds
        // (an even case is additive, an odd one boolean).
        (1, 4, 2, 130, 200, 128, 128, AttentionMask::Causal, true),
        (2, 2, 2, 150, 96, 32, 32, AttentionMask::Causal, false),
        (1, 2, 1, 70, 129, 64, 64, AttentionMask::Explicit, false),
        (2, 3, 3, 65, 64, 64, 64, AttentionMask::Explicit, true),
        (1, 2, 2, 200, 300, 64, 64, AttentionMask::None, false),
        // Heads of 128 (CUDA: Q in shared memory, blocks of 32 keys): partial blocks of both,
        // and masks of both kinds.
        (1, 2, 2, 150, 200, 128, 128, AttentionMask::None, false),
        (2, 2, 1, 70, 129, 128, 128, AttentionMask::Explicit, true),
        (1, 1, 1, 33, 100, 128, 128, AttentionMask::Explicit, false),
        // CUDA's warpgroup kernels (blocks of 128 or 192 queries, of 128 or 64 keys): up to
        // three blocks of queries and five of keys under a causal mask, the last ones partial
        // (heads of 64: one head's keys stay within wgpu's 96 KiB binding in the test that caps
        // it); then more queries than keys, so that blocks of queries see no key at all, or keys
        // of one block only.
        (1, 2, 1, 260, 300, 64, 64, AttentionMask::Causal, false),
        (1, 2, 1, 300, 100, 128, 128, AttentionMask::Causal, false),
        (1, 2, 2, 400, 70, 64, 64, AttentionMask::Causal, false),
    ];
    // `[b, h, l, d]` stored as `[b, l, h, d]` (heads interleaved, as a projection leaves them).
    let layout = |shape: [usize; 4], other: bool| {
        let [_, h, l, d] = shape;
        if other {
            Layout::new(&shape, &[(l * h * d) as isize, d as isize, (h * d) as isize, 1], 0).unwrap()
        } else {
            Layout::contiguous(&shape)
        }
    };
    for &t in types.iter().filter(|t| matches!(t, DType::F32 | DType::F64 | DType::F16 | DType::BF16)) {
        for (ci, &(b, hq, hkv, lq, lk, d, dv, mask, other)) in cases.iter().enumerate() {
            let ql = layout([b, hq, lq, d], other);
            let kl = layout([b, hkv, lk, d], other);
            let vl = layout([b, hkv, lk, dv], other);
            let mut inputs = vec![
                (t, uniform(t, b * hq * lq * d, -1.0, 1.0, &mut rng), ql),
                (t, uniform(t, b * hkv * lk * d, -1.0, 1.0, &mut rng), kl),
                (t, uniform(t, b * hkv * lk * dv, -1.0, 1.0, &mut rng), vl),
            ];
            if mask == AttentionMask::Explicit {
                // One mask for every head (a zero stride); the boolean one hides all of row 0.
                let ml = Layout::new(&[b, hq, lq, lk], &[(lq * lk) as isize, 0, lk as isize, 1], 0).unwrap();
                let n = b * lq * lk;
                if ci % 2 == 0 {
                    inputs.push((t, uniform(t, n, -2.0, 2.0, &mut rng), ml));
                } else {
                    let bits: Vec<u8> =
                        (0..n).map(|e| u8::from(e % (lq * lk) >= lk && !rng.next().is_multiple_of(4))).collect();
                    inputs.push((DType::Bool, bits, ml));
                }
            }
            let desc = Attention::new(1.0 / (d as f32).sqrt()).mask(mask);
            // The 16-bit tensor-core kernels round the probabilities to the input type before
            // P·V, as FlashAttention does: an output may be off by u·Σ p·|v| ≤ u (|v| ≤ 1, u the
            // type's unit roundoff), which a row that sees two keys of opposite signs leaves
            // larger than the output itself; hence an absolute allowance of 2u.
            let tol = match t {
                DType::F64 => Tol::Mixed(1e-12, 1e-13),
                DType::F32 => Tol::Mixed(2e-5, 2e-6),
                DType::F16 => Tol::Mixed(2.0 / 1024.0, 1.0 / 1024.0),
                _ => Tol::Mixed(2.0 / 128.0, 1.0 / 128.0),
            };
            count += 1;
            compare_with(
                gpu,
                &format!("attention {t} case {ci} {mask:?}"),
                &inputs,
                None,
                t,
                &Layout::contiguous(&[b, hq, lq, dv]),
                tol,
                |i, o| gpu.attention(&desc, i[0], i[1], i[2], i.get(3).copied(), o),
                |i, o| Cpu.attention(&desc, i[0], i[1], i[2], i.get(3).copied(), o),
                &mut failures,
            );
        }
    }
    report("attention", failures, count);
}

/// Quantized products `x·Wᵀ` and `x·W` in every quantization mode (affine of 1 to 8 bits with
/// each scale type, MX with FP8/FP6/FP4/INT8 elements, nvfp4): a single row (the GEMV of
/// decoding), batches, `x` stored transposed, outputs of x's type and f32. The weight goes to
/// each backend through `upload_quantized`; values dequantize exactly alike, so only the order
/// of the sums differs.
pub fn quantized_matmul_matches_the_cpu<B: Backend>(gpu: &B, types: &[DType]) {
    use strata_core::kernel::QuantizedMatmul;
    use strata_core::quant::{QuantMode, quantize};
    let mut rng = Rng(seed() ^ 0x9a11);
    let (mut failures, mut count) = (Vec::new(), 0);
    let modes = [
        "mxfp4",
        "mxfp6_e3m2",
        "mxfp6_e2m3",
        "mxfp8",
        "mxfp8_e5m2",
        "mxint8",
        "nvfp4",
        "affine:1:32",
        "affine:2:32",
        "affine:3:64:float16",
        "affine:4:32:bfloat16",
        "affine:5:128",
        "affine:6:64",
        "affine:8:64:float16",
    ];
    // (batch, m, k, n, transpose, x stored transposed)
    let cases = [
        (vec![], 1, 128, 40, true, false),
        (vec![2], 5, 256, 33, true, false),
        (vec![], 7, 48, 128, false, false),
        (vec![], 6, 128, 16, true, true),
    ];
    for &t in types.iter().filter(|t| matches!(t, DType::F32 | DType::F16 | DType::BF16)) {
        for (mi, name) in modes.iter().enumerate() {
            let mode: QuantMode = name.parse().expect("a mode the suite names");
            for (ci, (batch, m, k, n, transpose, xt)) in cases.iter().enumerate() {
                let (m, k, n) = (*m, *k, *n);
                let w_shape = if *transpose { [n, k] } else { [k, n] };
                let w: Vec<f32> = (0..n * k).map(|_| 2.0 * rng.unit() as f32 - 1.0).collect();
                let q = quantize(&w, &w_shape, &mode).expect("quantizable");
                let rows: usize = batch.iter().product::<usize>() * m;
                let mut xs = batch.clone();
                xs.extend([m, k]);
                let xl = if *xt { Layout::new(&xs, &[1, m as isize], 0).unwrap() } else { Layout::contiguous(&xs) };
                let mut os = batch.clone();
                os.extend([m, n]);
                // Outputs alternate between x's type and f32.
                let out_t = if (mi + ci) % 2 == 0 { t } else { DType::F32 };
                let tol = match out_t {
                    DType::F32 => Tol::Mixed(1e-5, 1e-4),
                    DType::F16 => Tol::Mixed(2.0 / 1024.0, 1e-3),
                    _ => Tol::Mixed(2.0 / 128.0, 1e-2),
                };
                let desc = QuantizedMatmul { transpose: *transpose };
                let (wg, wc) = (gpu.upload_quantized(&q).unwrap(), Cpu.upload_quantized(&q).unwrap());
                count += 1;
                compare_with(
                    gpu,
                    &format!("quantized_matmul {name} {t} -> {out_t} case {ci}"),
                    &[(t, uniform(t, rows * k, -1.0, 1.0, &mut rng), xl)],
                    None,
                    out_t,
                    &Layout::contiguous(&os),
                    tol,
                    |i, o| gpu.quantized_matmul(&desc, i[0], &wg, o),
                    |i, o| Cpu.quantized_matmul(&desc, i[0], &wc, o),
                    &mut failures,
                );
            }
        }
    }
    report("quantized_matmul", failures, count);
}

/// `matmul2d` on odd and tile-sized shapes, every transpose, epilogues, accumulation and batches.
pub fn matmul2d_matches_the_cpu<B: Backend>(gpu: &B, types: &[DType]) {
    let mut rng = Rng(seed() ^ 0x3a7b);
    // (m, n, k): scalars, odd sizes (the SIMT kernel), multiples of 8 off the 128-tiles (the
    // tensor-core kernel with edge tiles and a partial k step), several k steps.
    let sizes = [(1, 1, 1), (17, 33, 9), (136, 200, 72), (256, 256, 256), (5, 300, 40)];
    let pairs = [
        (DType::F16, DType::F16),
        (DType::F16, DType::F32),
        (DType::BF16, DType::BF16),
        (DType::BF16, DType::F32),
        (DType::F32, DType::F32),
        (DType::F64, DType::F64),
        (DType::I8, DType::I32),
    ];
    let (mut failures, mut count) = (Vec::new(), 0);
    for (t, out_t) in pairs.into_iter().filter(|(a, b)| types.contains(a) && types.contains(b)) {
        let tol = match out_t {
            DType::F16 => Tol::Mixed(1.0 / 1024.0, 2e-3),
            DType::BF16 => Tol::Mixed(1.0 / 128.0, 2e-2),
            DType::F32 => Tol::Mixed(1e-5, 1e-4),
            _ => Tol::Mixed(1e-12, 1e-12),
        };
        for &(m, n, k) in &sizes {
            for (tl, tr) in [(false, false), (true, false), (false, true), (true, true)] {
                let variant = count % 4;
                let desc = Matmul2d::new(m, n, k).transpose_left(tl).transpose_right(tr);
                // Every fourth case adds a bias and an activation, every fourth accumulates,
                // every fourth is batched (3 products, the right operand broadcast).
                let (desc, batch) = match variant {
                    1 if t != DType::I8 => (desc.epilogue(Epilogue::Bias(Activation::Gelu)), 1),
                    1 => (desc.epilogue(Epilogue::Bias(Activation::None)), 1),
                    2 => (desc.mode(MatmulMode::MultiplyAccumulate), 1),
                    3 => (desc, 3),
                    _ => (desc, 1),
                };
                let dims = |r: usize, c: usize, t: bool| if t { [c, r] } else { [r, c] };
                let [lr, lc] = dims(m, k, tl);
                let [rr, rc] = dims(k, n, tr);
                let left = Layout::contiguous(&[batch, lr, lc]);
                let right = Layout::new(&[batch, rr, rc], &[0, rc as isize, 1], 0).unwrap();
                let out_l = Layout::contiguous(&[batch, m, n]);
                let mut inputs =
                    vec![(t, operand(t, batch * lr * lc, &mut rng), left), (t, operand(t, rr * rc, &mut rng), right)];
                if desc.epilogue.has_bias() {
                    inputs.push((
                        out_t,
                        operand(if out_t == DType::I32 { DType::I8 } else { out_t }, n, &mut rng),
                        Layout::contiguous(&[n]),
                    ));
                    if out_t == DType::I32 {
                        // int8 values widened: the bias is int32.
                        let b = inputs.pop().unwrap();
                        let wide: Vec<u8> = b.1.iter().flat_map(|&v| i32::from(v as i8).to_le_bytes()).collect();
                        inputs.push((DType::I32, wide, b.2));
                    }
                }
                let initial = operand(if out_t == DType::I32 { DType::I8 } else { out_t }, batch * m * n, &mut rng);
                let initial = if out_t == DType::I32 {
                    initial.iter().flat_map(|&v| i32::from(v as i8).to_le_bytes()).collect()
                } else {
                    initial
                };
                count += 1;
                compare_with(
                    gpu,
                    &format!(
                        "matmul2d {t}->{out_t} m={m} n={n} k={k} tl={tl} tr={tr} batch={batch} {:?} {:?}",
                        desc.epilogue, desc.mode
                    ),
                    &inputs,
                    Some(&initial),
                    out_t,
                    &out_l,
                    tol,
                    |i, o| gpu.matmul2d(&desc, i[0], i[1], i.get(2).copied(), None, o),
                    |i, o| Cpu.matmul2d(&desc, i[0], i[1], i.get(2).copied(), None, o),
                    &mut failures,
                );
            }
        }
        // A K-major pair whose rows are padded (stride 40 for k = 37): the tensor-core kernel's
        // partial 16-byte chunks at the end of k.
        let (m, n, k) = (70, 90, 37);
        let left = Layout::new(&[m, k], &[40, 1], 0).unwrap();
        let right = Layout::new(&[n, k], &[40, 1], 0).unwrap();
        let desc = Matmul2d::new(m, n, k).transpose_right(true);
        count += 1;
        compare_with(
            gpu,
            &format!("matmul2d {t}->{out_t} padded rows"),
            &[(t, operand(t, m * 40, &mut rng), left), (t, operand(t, n * 40, &mut rng), right)],
            None,
            out_t,
            &Layout::contiguous(&[m, n]),
            tol,
            |i, o| gpu.matmul2d(&desc, i[0], i[1], None, None, o),
            |i, o| Cpu.matmul2d(&desc, i[0], i[1], None, None, o),
            &mut failures,
        );
    }
    report("matmul2d", failures, count);
}

/// Every pair of fp8 operand types (left, right).
pub const FP8_PAIRS: [(DType, DType); 4] = [
    (DType::F8E4M3, DType::F8E4M3),
    (DType::F8E4M3, DType::F8E5M2),
    (DType::F8E5M2, DType::F8E4M3),
    (DType::F8E5M2, DType::F8E5M2),
];

/// Scaled fp8 products (`float8_e4m3fn`/`float8_e5m2` on either side, per-tensor and per-row
/// scales) into f32, bf16 and f16: the tensor-core layout (both operands K-major) on tile-sized,
/// ragged and split-K shapes, other layouts, a bias and activation, accumulation, a batch with
/// the right operand broadcast. The GPU may accumulate with fewer bits than the CPU's f32 (the
/// fp8 tensor cores of Hopper do), so the error is measured against `Σ|aᵢbᵢ|·s`, the size of
/// the terms, and the worst of each type pair is printed. `pairs`: the (left, right) types, each
/// of [`FP8_PAIRS`] in the full suite.
pub fn matmul2d_scaled_fp8_matches_the_cpu<B: Backend>(gpu: &B, pairs: &[(DType, DType)]) {
    let mut rng = Rng(seed() ^ 0x8f8f);
    // (m, n, k, tl, tr, batch): the K-major layout on edge tiles (with an odd number of tile
    // rows, so that a pair of CTAs has a second tile wholly below m), many k steps and few
    // tiles (split-K), then the other layouts and a k whose rows the copy engine cannot address.
    // The scaling (per tensor or per row) and the epilogue (bias and activation, accumulation,
    // none) rotate so that every shape meets each. 1100 × 4104 × 144: 153 tiles of 128 × 256,
    // more than the 132 multiprocessors of an H100 or H200, each of two k steps, so that some
    // CTAs walk two (k's rows of 144 bytes, which the copy engine takes).
    let shapes = [
        (136, 264, 112, false, true, 1),
        (300, 264, 256, false, true, 1),
        (256, 512, 1024, false, true, 2),
        (48, 520, 2048, false, true, 1),
        (17, 33, 40, false, false, 1),
        (40, 70, 48, true, true, 1),
        (70, 90, 37, false, true, 1),
        (1100, 4104, 144, false, true, 1),
    ];
    let (mut failures, mut count) = (Vec::new(), 0);
    for (pi, &(lt, rt)) in pairs.iter().enumerate() {
        let mut worst = 0.0f64;
        for (oi, out_t) in [DType::F32, DType::BF16, DType::F16].into_iter().enumerate() {
            let rel = match out_t {
                DType::F32 => 0.0,
                DType::BF16 => 1.0 / 128.0,
                _ => 1.0 / 1024.0,
            };
            for (case, &(m, n, k, tl, tr, batch)) in shapes.iter().enumerate() {
                let per_row = (case + oi + pi) % 2 == 0;
                let desc = Matmul2d::new(m, n, k).transpose_left(tl).transpose_right(tr);
                let desc = match (case + oi) % 3 {
                    0 => desc.epilogue(Epilogue::Bias(Activation::Relu)),
                    1 => desc.mode(MatmulMode::MultiplyAccumulate),
                    _ => desc,
                };
                let [lr, lc] = if tl { [k, m] } else { [m, k] };
                let [rr, rc] = if tr { [n, k] } else { [k, n] };
                let left = Layout::contiguous(&[batch, lr, lc]);
                let right = Layout::new(&[batch, rr, rc], &[0, rc as isize, 1], 0).unwrap();
                let out_l = Layout::contiguous(&[batch, m, n]);
                let (a, b) =
                    (uniform(lt, batch * lr * lc, -1.0, 1.0, &mut rng), uniform(rt, rr * rc, -1.0, 1.0, &mut rng));
                let (sl, sr) = if per_row { (m, n) } else { (1, 1) };
                let (sa, sb) =
                    (uniform(DType::F32, sl, 0.5, 2.0, &mut rng), uniform(DType::F32, sr, 0.5, 2.0, &mut rng));
                let scale_l = |len: usize| if per_row { Layout::contiguous(&[len]) } else { Layout::contiguous(&[]) };
                let mut inputs = vec![
                    (lt, a, left.clone()),
                    (rt, b, right.clone()),
                    (DType::F32, sa, scale_l(m)),
                    (DType::F32, sb, scale_l(n)),
                ];
                if desc.epilogue.has_bias() {
                    inputs.push((out_t, uniform(out_t, n, -1.0, 1.0, &mut rng), Layout::contiguous(&[n])));
                }
                let initial = uniform(out_t, batch * m * n, -1.0, 1.0, &mut rng);
                // The size of the terms of each output: Σₚ|aᵢₚ·bₚⱼ|·sₗ·sᵣ (|A| and |B| gathered
                // K-major first).
                let (av, bv) = (decode(lt, &inputs[0].1), decode(rt, &inputs[1].1));
                let (sav, sbv) = (decode(DType::F32, &inputs[2].1), decode(DType::F32, &inputs[3].1));
                let gather = |v: &[f64], l: &Layout, rows: usize, t: bool, z: usize| -> Vec<f64> {
                    let mut out = Vec::with_capacity(rows * k);
                    for r in 0..rows {
                        out.extend(
                            (0..k).map(|p| v[l.position(&if t { [z, p, r] } else { [z, r, p] }) as usize].abs()),
                        );
                    }
                    out
                };
                let mut size = vec![0.0f64; batch * m * n];
                for z in 0..batch {
                    let (ak, bk) = (gather(&av, &left, m, tl, z), gather(&bv, &right, n, !tr, z));
                    for i in 0..m {
                        for j in 0..n {
                            let t: f64 = ak[i * k..][..k].iter().zip(&bk[j * k..][..k]).map(|(x, y)| x * y).sum();
                            size[(z * m + i) * n + j] =
                                t * sav[if per_row { i } else { 0 }] * sbv[if per_row { j } else { 0 }];
                        }
                    }
                }
                let gbufs: Vec<_> = inputs.iter().map(|(_, b, _)| gpu.upload(b).unwrap()).collect();
                let cbufs: Vec<_> = inputs.iter().map(|(_, b, _)| Cpu.upload(b).unwrap()).collect();
                // NaN in every output type: an element left unwritten fails.
                let poison = vec![0xFFu8; initial.len()];
                let start = if desc.mode == MatmulMode::MultiplyAccumulate { &initial } else { &poison };
                let (mut gout, mut cout) = (gpu.upload(start).unwrap(), Cpu.upload(start).unwrap());
                let grefs: Vec<_> = inputs.iter().zip(&gbufs).map(|((t, _, l), b)| TensorRef::new(*t, b, l)).collect();
                let crefs: Vec<_> = inputs.iter().zip(&cbufs).map(|((t, _, l), b)| TensorRef::new(*t, b, l)).collect();
                let what = format!(
                    "matmul2d {lt}·{rt}->{out_t} m={m} n={n} k={k} tl={tl} tr={tr} batch={batch} per_row={per_row} {:?} {:?}",
                    desc.epilogue, desc.mode
                );
                count += 1;
                let gs = Scales { left: grefs[2], right: grefs[3] };
                let cs = Scales { left: crefs[2], right: crefs[3] };
                let g_res = gpu.matmul2d(
                    &desc,
                    grefs[0],
                    grefs[1],
                    grefs.get(4).copied(),
                    Some(gs),
                    TensorMut::new(out_t, &mut gout, &out_l),
                );
                let c_res = Cpu.matmul2d(
                    &desc,
                    crefs[0],
                    crefs[1],
                    crefs.get(4).copied(),
                    Some(cs),
                    TensorMut::new(out_t, &mut cout, &out_l),
                );
                if let Err(e) = g_res.and(c_res) {
                    failures.push(format!("{what}: {e}"));
                    continue;
                }
                let (mut g, mut c) = (vec![0u8; initial.len()], vec![0u8; initial.len()]);
                gpu.download(&gout, &mut g).unwrap();
                Cpu.download(&cout, &mut c).unwrap();
                let (g, c) = (decode(out_t, &g), decode(out_t, &c));
                // The tensor cores' error, in units of the terms' size, beyond the rounding of
                // the output.
                let allowed = FP8_ACCUMULATION * (k as f64 / 32.0).sqrt().max(1.0);
                let mut bad = None;
                for e in 0..g.len() {
                    let over = match (g[e].is_nan(), c[e].is_nan()) {
                        (false, false) => ((g[e] - c[e]).abs() - rel * c[e].abs()).max(0.0) / size[e].max(1e-30),
                        (true, true) => 0.0,
                        _ => f64::INFINITY,
                    };
                    worst = worst.max(over);
                    if over > allowed && bad.is_none() {
                        bad = Some(format!("{what}: element {e}: gpu {} cpu {} (terms {})", g[e], c[e], size[e]));
                    }
                }
                failures.extend(bad);
            }
        }
        eprintln!(
            "matmul2d {lt}·{rt}: largest error {worst:.2e} of the terms' size (allowed {FP8_ACCUMULATION:.1e}·√(k/32))"
        );
    }
    report("matmul2d (scaled fp8)", failures, count);
}

/// How far a GPU's fp8 product may stray from the CPU's, relative to the size of its terms:
/// Hopper's fp8 tensor cores keep about 14 bits of the running sum (DeepSeek-V3 §3.3.2), so
/// each 32-deep step may lose up to a part in 2¹³ of the sum so far (itself at most the terms'
/// size). On random inputs those losses have random signs and grow as the square root of the
/// steps: `FP8_ACCUMULATION · √(k / 32)`, twice the per-step bound, and at least
/// `FP8_ACCUMULATION`. Largest seen: 1.5e-4 of the terms' size on an H100 (4 × 72 cases) and
/// 2.8e-4 on an H200 at k = 256 (eight steps), which a linear bound of 2⁻¹⁵ a step refused.
const FP8_ACCUMULATION: f64 = 1.0 / 4096.0;

/// Scans over more lanes than a GPU runs blocks at once (each block walks several lanes), of
/// sums, maxima and log-sum-exps in f32 and bf16, both directions, inclusive and exclusive; and
/// forward sums over more lanes than a GPU runs warps at once (CUDA's warp-a-lane scans walk
/// several; on wgpu, subgroups do past 2048 workgroups), rows of 268 leaving a ragged last
/// chunk.
pub fn scans_over_many_lanes_match_the_cpu<B: Backend>(gpu: &B, types: &[DType]) {
    let mut rng = Rng(seed() ^ 0x5ca7);
    let all = [ScanOp::Sum, ScanOp::Max, ScanOp::LogAddExp];
    let directions = [(false, true), (false, false), (true, true)];
    let cases: [(&[usize], &[ScanOp], &[(bool, bool)]); 2] =
        [(&[4500, 1028], &all, &directions), (&[17500, 268], &[ScanOp::Sum], &directions[..2])];
    let (mut failures, mut count) = (Vec::new(), 0);
    for t in [DType::F32, DType::BF16].into_iter().filter(|t| types.contains(t)) {
        for (shape, ops, directions) in cases {
            let l = Layout::contiguous(shape);
            let n = l.numel();
            for &op in ops {
                for &(reverse, inclusive) in directions {
                    let x = uniform(t, n, 0.0, 1.0, &mut rng);
                    let tol = match (t, op) {
                        (_, ScanOp::Max) => Tol::Ulps,
                        (DType::F32, ScanOp::LogAddExp) => Tol::Mixed(2e-5, 1e-6),
                        (_, ScanOp::LogAddExp) => Tol::Mixed(2.0 / 128.0, 3e-2),
                        _ => accumulation_tol(t),
                    };
                    count += 1;
                    compare_with(
                        gpu,
                        &format!("{} {t} {shape:?} rev {reverse} incl {inclusive}", op.name()),
                        &[(t, x, l.clone())],
                        None,
                        t,
                        &l,
                        tol,
                        |i, o| gpu.scan(op, 1, reverse, inclusive, i[0], o),
                        |i, o| Cpu.scan(op, 1, reverse, inclusive, i[0], o),
                        &mut failures,
                    );
                }
            }
        }
    }
    report("scan (many lanes)", failures, count);
}

/// Products with few rows (m ≤ 16: decoding, where m is the batch of tokens) and B
/// stored n × k as a `Linear` layer's weight is, the shapes CUDA's and wgpu's few-rows kernels
/// take: one row (with a row stride off the 16-byte grid, which one row may have), rows of one
/// and two tiles of eight, k of one 8-element chunk, of fewer 32-wide steps than the kernel has
/// k parts and of many, ragged n (and n of 1 and 5), padded rows, operands starting past their
/// buffers' starts, batches with B broadcast and with a B each, a B wide enough that CUDA keeps
/// its tiled kernel on a large GPU, and each epilogue, into the operands' type and f32; in bf16,
/// f16 and f32.
pub fn matmul2d_few_rows_match_the_cpu<B: Backend>(gpu: &B, types: &[DType]) {
    let mut rng = Rng(seed() ^ 0x5e1f);
    let (mut failures, mut count) = (Vec::new(), 0);
    // (m, n, k, row strides of A and B, batch and whether B has one matrix each, variant, offset)
    let cases = [
        (1, 1000, 1032, 1032, 1032, (1, false), 0, 0),
        (3, 33, 40, 40, 40, (1, false), 1, 8),
        (8, 300, 264, 264, 264, (1, false), 2, 0),
        (9, 64, 8, 8, 8, (1, false), 0, 0),
        (16, 517, 520, 520, 520, (3, true), 1, 0),
        (16, 40, 4104, 4104, 4104, (1, false), 2, 0),
        (5, 70, 48, 56, 56, (1, false), 0, 16),
        (12, 129, 96, 104, 104, (2, false), 2, 0),
        (1, 5, 64, 67, 64, (1, false), 1, 0),
        (2, 1, 16, 16, 16, (2, true), 0, 24),
        (4, 25600, 64, 64, 64, (1, false), 1, 0),
    ];
    for t in [DType::BF16, DType::F16, DType::F32].into_iter().filter(|t| types.contains(t)) {
        for (ci, &(m, n, k, lda, ldb, (batch, b_each), variant, off)) in cases.iter().enumerate() {
            let out_t = if ci % 2 == 0 { t } else { DType::F32 };
            let desc = Matmul2d::new(m, n, k).transpose_right(true);
            let desc = match variant {
                1 => desc.epilogue(Epilogue::Bias(Activation::Gelu)),
                2 => desc.mode(MatmulMode::MultiplyAccumulate),
                _ => desc,
            };
            let b_count = if b_each { batch } else { 1 };
            let left = Layout::new(&[batch, m, k], &[(m * lda) as isize, lda as isize, 1], off).unwrap();
            let b_stride = if b_each { (n * ldb) as isize } else { 0 };
            let right = Layout::new(&[batch, n, k], &[b_stride, ldb as isize, 1], off).unwrap();
            let mut inputs = vec![
                (t, operand(t, off + batch * m * lda, &mut rng), left),
                (t, operand(t, off + b_count * n * ldb, &mut rng), right),
            ];
            if desc.epilogue.has_bias() {
                inputs.push((out_t, operand(out_t, n, &mut rng), Layout::contiguous(&[n])));
            }
            // Two thirds of the f32 outputs have padded rows and an offset (an even and an odd
            // one), whose gaps must keep their values. 16-bit ones stay contiguous: wgpu stores
            // them a 32-bit word at a time and refuses gaps (an `Err`, not a difference).
            let (ldc, off_c) = match ci % 3 {
                1 if out_t == DType::F32 => (n + 2, 2),
                2 if out_t == DType::F32 => (n + 3, 5),
                _ => (n, 0),
            };
            let out_l = Layout::new(&[batch, m, n], &[(m * ldc) as isize, ldc as isize, 1], off_c).unwrap();
            let initial = operand(out_t, off_c + batch * m * ldc, &mut rng);
            // f32 sums of k products drift apart with k, the more so where tensor cores round
            // their sums less carefully than the CPU (NVIDIA's cooperative matrices: 1.4e-4 on
            // an element of 3.05 at k = 4104); the bound grows as √k, a random walk's.
            let f32_abs = 1e-4 * (k as f64 / 256.0).max(1.0).sqrt();
            let tol = match out_t {
                DType::F16 => Tol::Mixed(1.0 / 1024.0, 2e-3),
                DType::BF16 => Tol::Mixed(1.0 / 128.0, 2e-2),
                _ => Tol::Mixed(1e-5, f32_abs),
            };
            count += 1;
            compare_with(
                gpu,
                &format!(
                    "matmul2d {t}->{out_t} m={m} n={n} k={k} lda={lda} ldb={ldb} batch={batch} b_each={b_each} \
                     offset={off} ldc={ldc} c_offset={off_c} {:?} {:?}",
                    desc.epilogue, desc.mode
                ),
                &inputs,
                Some(&initial),
                out_t,
                &out_l,
                tol,
                |i, o| gpu.matmul2d(&desc, i[0], i[1], i.get(2).copied(), None, o),
                |i, o| Cpu.matmul2d(&desc, i[0], i[1], i.get(2).copied(), None, o),
                &mut failures,
            );
        }
    }
    report("matmul2d (few rows)", failures, count);
}

/// Products large enough that a persistent kernel walks several output tiles per multiprocessor
/// (more tiles than a GPU has multiprocessors), with ragged edges: 16-bit ones with ragged m, n
/// and k, batched operands, a broadcast right operand, a bias with an activation, and both
/// layouts of the right operand; f32 ones on the same shapes, and f32 and f64 ones with the left
/// operand stored transposed, k ragged or not (CUDA's SIMT kernel on its 128 × 128 tiles, each
/// of its load paths). Too heavy for software rasterizers; the CUDA suite runs it.
pub fn matmul2d_many_tiles_match_the_cpu<B: Backend>(gpu: &B, types: &[DType]) {
    let mut rng = Rng(seed() ^ 0x7d1e);
    let (m, n, batch) = (1000, 2056, 3);
    let (mut failures, mut count) = (Vec::new(), 0);
    // f32 too: CUDA's SIMT kernel on its 128 × 128 tiles, whose edge tiles read whole vectors.
    for t in [DType::BF16, DType::F16, DType::F32].into_iter().filter(|t| types.contains(t)) {
        // k = 96: two k steps a tile, fewer than the chunks its output leaves in (CUDA's
        // warp-specialized kernel stores a 16-bit 256-column tile in four).
        for (k, tr, broadcast, bias) in [
            (200, false, false, false),
            (200, true, true, true),
            (200, true, false, false),
            (200, false, true, true),
            (96, true, true, true),
            (96, false, false, false),
        ] {
            let desc = Matmul2d::new(m, n, k).transpose_right(tr);
            let desc = if bias { desc.epilogue(Epilogue::Bias(Activation::Relu)) } else { desc };
            let [rr, rc] = if tr { [n, k] } else { [k, n] };
            let right_batch = if broadcast { 1 } else { batch };
            let right =
                Layout::new(&[batch, rr, rc], &[if broadcast { 0 } else { (rr * rc) as isize }, rc as isize, 1], 0)
                    .unwrap();
            let mut inputs = vec![
                (t, operand(t, batch * m * k, &mut rng), Layout::contiguous(&[batch, m, k])),
                (t, operand(t, right_batch * rr * rc, &mut rng), right),
            ];
            if bias {
                inputs.push((t, operand(t, n, &mut rng), Layout::contiguous(&[n])));
            }
            count += 1;
            let tol = match t {
                DType::BF16 => Tol::Mixed(1.0 / 128.0, 2e-2),
                DType::F16 => Tol::Mixed(1.0 / 1024.0, 2e-3),
                _ => Tol::Mixed(1e-5, 1e-4),
            };
            compare_with(
                gpu,
                &format!("matmul2d {t} m={m} n={n} k={k} batch={batch} tr={tr} broadcast={broadcast} bias={bias}"),
                &inputs,
                None,
                t,
                &Layout::contiguous(&[batch, m, n]),
                tol,
                |i, o| gpu.matmul2d(&desc, i[0], i[1], i.get(2).copied(), None, o),
                |i, o| Cpu.matmul2d(&desc, i[0], i[1], i.get(2).copied(), None, o),
                &mut failures,
            );
        }
    }
    // The left operand stored k × m: rows read four at a time where m is a multiple of four and
    // k of eight (the last rows' vectors clamped), element by element otherwise.
    for t in [DType::F32, DType::F64].into_iter().filter(|t| types.contains(t)) {
        for (m, k) in [(1000, 200), (1002, 200), (1000, 203)] {
            let desc = Matmul2d::new(m, n, k).transpose_left(true);
            let inputs = [
                (t, operand(t, k * m, &mut rng), Layout::contiguous(&[k, m])),
                (t, operand(t, k * n, &mut rng), Layout::contiguous(&[k, n])),
            ];
            count += 1;
            let tol = if t == DType::F32 { Tol::Mixed(1e-5, 1e-4) } else { Tol::Mixed(1e-12, 1e-12) };
            compare_with(
                gpu,
                &format!("matmul2d {t} m={m} n={n} k={k} tl=true"),
                &inputs,
                None,
                t,
                &Layout::contiguous(&[m, n]),
                tol,
                |i, o| gpu.matmul2d(&desc, i[0], i[1], None, None, o),
                |i, o| Cpu.matmul2d(&desc, i[0], i[1], None, None, o),
                &mut failures,
            );
        }
    }
    // Few tiles and a long k: the k steps are split among work units (split-K on CUDA) and the
    // partial products summed with the epilogue (bias and activation, accumulation into C); n of
    // 1030 leaves the last four columns of each row of the partial sums half written.
    // (B of n = 1030 stored n × k: stored k × n its rows are not 16-byte multiples, and the
    // tensor-core path does not take it.) Two 256 × 2240 × 64 products: on a GPU of 97 to 132
    // multiprocessors, 140 tiles of 128 × 64 (the widest that fill it), so some take two, each a
    // single chunk of a 16-bit output. Two 40 × 2200 × 96 products: on a GPU of 94 to 275
    // multiprocessors, 138 tiles of 64 × 32 (the last 24 columns wide), enough that k is not
    // split, each stored from 64-byte rows. (Under the rules a consumer never stores two such
    // tiles; the suite run with `STRATA_GEMM_TILE_N=32` forced does, on the products above.)
    for (m, n, k, tr, variant) in [
        (48, 520, 1000, true, 0),
        (48, 520, 1000, false, 1),
        (48, 520, 1000, true, 2),
        (48, 520, 1000, false, 0),
        (64, 1030, 1024, true, 1),
        (64, 1030, 1024, true, 2),
        (256, 2240, 64, true, 1),
        (256, 2240, 64, true, 0),
        (40, 2200, 96, true, 0),
        (40, 2200, 96, true, 1),
    ] {
        for t in [DType::BF16, DType::F16].into_iter().filter(|t| types.contains(t)) {
            let desc = Matmul2d::new(m, n, k).transpose_right(tr);
            let desc = match variant {
                1 => desc.epilogue(Epilogue::Bias(Activation::Gelu)),
                2 => desc.mode(MatmulMode::MultiplyAccumulate),
                _ => desc,
            };
            let [rr, rc] = if tr { [n, k] } else { [k, n] };
            let mut inputs = vec![
                (t, operand(t, 2 * m * k, &mut rng), Layout::contiguous(&[2, m, k])),
                (t, operand(t, rr * rc, &mut rng), Layout::new(&[2, rr, rc], &[0, rc as isize, 1], 0).unwrap()),
            ];
            if desc.epilogue.has_bias() {
                inputs.push((t, operand(t, n, &mut rng), Layout::contiguous(&[n])));
            }
            let initial = operand(t, 2 * m * n, &mut rng);
            count += 1;
            let tol = if t == DType::BF16 { Tol::Mixed(1.0 / 128.0, 2e-2) } else { Tol::Mixed(1.0 / 1024.0, 2e-3) };
            compare_with(
                gpu,
                &format!("matmul2d {t} m={m} n={n} k={k} batch=2 tr={tr} {:?} {:?}", desc.epilogue, desc.mode),
                &inputs,
                Some(&initial),
                t,
                &Layout::contiguous(&[2, m, n]),
                tol,
                |i, o| gpu.matmul2d(&desc, i[0], i[1], i.get(2).copied(), None, o),
                |i, o| Cpu.matmul2d(&desc, i[0], i[1], i.get(2).copied(), None, o),
                &mut failures,
            );
        }
    }
    // Single products of 1024 × 14336 × 2048. On a GPU of 132 multiprocessors (H100, H200) CUDA
    // cuts off the last wave of the first one's 448 wide tiles: the first 12544 columns run on
    // 128 × 256 tiles, the last 1792 on 128 × 128 ones in a second launch (B and C taken from
    // the cut on). The second (B stored k × n, a bias, accumulation) is not cut yet; it is here
    // for when it is.
    for (tr, plain) in [(true, true), (false, false)] {
        for t in [DType::BF16, DType::F16].into_iter().filter(|t| types.contains(t)) {
            let (m, n, k) = (1024, 14336, 2048);
            let desc = Matmul2d::new(m, n, k).transpose_right(tr);
            let desc = if !plain {
                desc.epilogue(Epilogue::Bias(Activation::Relu)).mode(MatmulMode::MultiplyAccumulate)
            } else {
                desc
            };
            let [rr, rc] = if tr { [n, k] } else { [k, n] };
            let mut inputs = vec![
                (t, operand(t, m * k, &mut rng), Layout::contiguous(&[m, k])),
                (t, operand(t, rr * rc, &mut rng), Layout::contiguous(&[rr, rc])),
            ];
            if desc.epilogue.has_bias() {
                inputs.push((t, operand(t, n, &mut rng), Layout::contiguous(&[n])));
            }
            // Poisoned unless accumulating: a column the second launch missed fails.
            let initial = (!plain).then(|| operand(t, m * n, &mut rng));
            count += 1;
            let tol = if t == DType::BF16 { Tol::Mixed(1.0 / 128.0, 2e-2) } else { Tol::Mixed(1.0 / 1024.0, 2e-3) };
            compare_with(
                gpu,
                &format!("matmul2d {t} m={m} n={n} k={k} tr={tr} {:?} {:?}", desc.epilogue, desc.mode),
                &inputs,
                initial.as_deref(),
                t,
                &Layout::contiguous(&[m, n]),
                tol,
                |i, o| gpu.matmul2d(&desc, i[0], i[1], i.get(2).copied(), None, o),
                |i, o| Cpu.matmul2d(&desc, i[0], i[1], i.get(2).copied(), None, o),
                &mut failures,
            );
        }
    }
    // f32 products that allow relaxed precision (tf32 tensor cores on Hopper: each operand keeps
    // 10 mantissa bits, so the error grows with √k), B stored n × k (the tensor-core layout) and
    // k × n (exact kernels), with a bias and an activation, split k and padded rows.
    if types.contains(&DType::F32) {
        for (m, n, k, tr, batch) in [
            (136, 200, 72, true, 1),
            (1000, 2056, 200, true, 3),
            (48, 520, 1000, true, 2),
            (70, 90, 37, true, 1),
            (136, 200, 72, false, 1),
        ] {
            let t = DType::F32;
            let desc = Matmul2d::new(m, n, k).transpose_right(tr).relaxed_precision(true);
            let desc = if batch == 3 { desc.epilogue(Epilogue::Bias(Activation::Silu)) } else { desc };
            let [rr, rc] = if tr { [n, k] } else { [k, n] };
            let mut inputs = vec![
                (t, operand(t, batch * m * k, &mut rng), Layout::contiguous(&[batch, m, k])),
                (t, operand(t, rr * rc, &mut rng), Layout::new(&[batch, rr, rc], &[0, rc as isize, 1], 0).unwrap()),
            ];
            if desc.epilogue.has_bias() {
                inputs.push((t, operand(t, n, &mut rng), Layout::contiguous(&[n])));
            }
            count += 1;
            compare_with(
                gpu,
                &format!("matmul2d f32 relaxed m={m} n={n} k={k} batch={batch} tr={tr} {:?}", desc.epilogue),
                &inputs,
                None,
                t,
                &Layout::contiguous(&[batch, m, n]),
                Tol::Mixed(1e-2, 3e-3 * (k as f64).sqrt()),
                |i, o| gpu.matmul2d(&desc, i[0], i[1], i.get(2).copied(), None, o),
                |i, o| Cpu.matmul2d(&desc, i[0], i[1], i.get(2).copied(), None, o),
                &mut failures,
            );
        }
    }
    report("matmul2d (many tiles)", failures, count);
}

/// Fused element-wise programs with broadcast and transposed inputs.
pub fn fused_programs_match_the_cpu<B: Backend>(gpu: &B, types: &[DType]) {
    use strata_core::kernel::{Fused, FusedOp as F};
    let mut rng = Rng(seed() ^ 0xf5ed);
    let (contiguous, transposed) = layouts();
    let row = Layout::new(&SHAPE, &[0, 1], 0).unwrap();
    let n = SHAPE[0] * SHAPE[1];
    let (mut failures, mut count) = (Vec::new(), 0);
    for t in [DType::F32, DType::F64].into_iter().filter(|t| types.contains(t)) {
        // sigmoid(tanh(exp(x0)·x1) + x2) then max with x0: a broadcast row and a transposed input.
        let chain = Fused {
            dtype: t,
            ops: vec![
                F::Input(0),
                F::Input(1),
                F::Input(2),
                F::Unary(UnaryOp::Exp, 0),
                F::Binary(BinaryOp::Mul, 3, 1),
                F::Unary(UnaryOp::Tanh, 4),
                F::Binary(BinaryOp::Add, 5, 2),
                F::Unary(UnaryOp::Sigmoid, 6),
                F::Binary(BinaryOp::Maximum, 7, 0),
            ],
        };
        // Eight inputs summed: the most a fused CUDA kernel takes.
        let mut ops: Vec<F> = (0..8).map(F::Input).collect();
        ops.push(F::Binary(BinaryOp::Add, 0, 1));
        for i in 2..8 {
            ops.push(F::Binary(BinaryOp::Add, ops.len() - 1, i));
        }
        let sum8 = Fused { dtype: t, ops };
        for (program, layouts) in
            [(&chain, vec![contiguous.clone(), transposed.clone(), row.clone()]), (&sum8, vec![transposed.clone(); 8])]
        {
            let inputs: Vec<(DType, Vec<u8>, Layout)> = layouts
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let bytes = if program == &sum8 {
                        uniform(t, n, -1.0, 1.0, &mut rng)
                    } else if i == 0 {
                        // exp's argument: finite values kept within ±80, where e^x is a normal
                        // number. Below that the result is subnormal, which Vulkan and Metal
                        // may flush to zero (exp(-99)·∞ is then NaN rather than ∞): a choice
                        // the shader languages leave to the driver, not a fusion bug.
                        clamp_finite(t, random(t, n, &mut rng), 80.0)
                    } else {
                        random(t, n, &mut rng)
                    };
                    (t, bytes, l.clone())
                })
                .collect();
            count += 1;
            compare(
                gpu,
                &format!("fused {t} {} steps", program.ops.len()),
                &inputs,
                t,
                &contiguous,
                |i, o| gpu.fused(program, i, o),
                |i, o| Cpu.fused(program, i, o),
                &mut failures,
            );
        }
    }
    report("fused", failures, count);
}

/// Uploads and downloads of random bytes at `lengths` (chosen by the backend around its
/// staging boundaries): all uploads are queued before anything is read back, each upload's
/// source is dropped at once, a kernel copies every buffer on the device, and the copies are
/// read back whole and in part (the result poisoned first), last upload first.
pub fn host_copies_round_trip<B: Backend>(gpu: &B, lengths: &[usize]) {
    let mut rng = Rng(seed() ^ 0x7a45);
    let mut sent = Vec::new();
    for &n in lengths {
        let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        let buf = gpu.upload(&bytes.clone()).unwrap_or_else(|e| panic!("upload of {n} bytes: {e}"));
        sent.push((bytes, buf));
    }
    let mut copies = Vec::new();
    for (bytes, buf) in &sent {
        let n = bytes.len();
        let l = Layout::contiguous(&[n]);
        let mut out = gpu.alloc_output(n).unwrap();
        gpu.copy(TensorRef::new(DType::U8, buf, &l), TensorMut::new(DType::U8, &mut out, &l)).unwrap();
        copies.push(out);
    }
    let mut failures = Vec::new();
    for ((bytes, buf), copy) in sent.iter().zip(&copies).rev() {
        let n = bytes.len();
        for (what, b) in [("upload", buf), ("device copy", copy)] {
            let mut back = vec![0xa5u8; n];
            gpu.download(b, &mut back).unwrap();
            if let Some(i) = back.iter().zip(bytes).position(|(a, b)| a != b) {
                failures.push(format!("{what} of {n} bytes: first difference at byte {i}"));
            }
        }
        // A prefix of an odd length.
        let part = (n / 2) | 1;
        let mut back = vec![0xa5u8; part];
        gpu.download(copy, &mut back).unwrap();
        if back[..] != bytes[..part] {
            failures.push(format!("the first {part} of {n} bytes differ"));
        }
    }
    eprintln!("host copies: {} lengths, up to {} bytes", lengths.len(), lengths.iter().max().unwrap_or(&0));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

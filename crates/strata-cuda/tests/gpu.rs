//! Every CUDA kernel against the CPU backend on fresh random inputs, with the GPU output
//! poisoned before each run. Needs a GPU: `scripts/device/cuda-test.sh` runs it on the GPU
//! machine with `STRATA_REQUIRE_CUDA=1` (then a missing device fails); elsewhere each test says
//! it was not run.

use half::{bf16, f16};
use strata_core::kernel::{Backend, BinaryOp, Layout, TensorMut, TensorRef, UnaryOp};
use strata_core::{DType, Error};
use strata_cpu::Cpu;
use strata_cuda::Cuda;

fn gpu() -> Option<Cuda> {
    match Cuda::new(0) {
        Ok(g) => Some(g),
        Err(e) => {
            assert!(std::env::var_os("STRATA_REQUIRE_CUDA").is_none(), "STRATA_REQUIRE_CUDA is set: {e}");
            eprintln!("not run: {e}");
            None
        }
    }
}

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
            DType::U64 => out.extend((int(0, i64::MAX, rng) as u64).to_le_bytes()),
            DType::I64 => out.extend(int(i64::MIN, i64::MAX, rng).to_le_bytes()),
            _ => unreachable!(),
        }
    }
    out
}

fn decode(t: DType, b: &[u8]) -> Vec<f64> {
    let w = (t.bits() / 8) as usize;
    b.chunks(w)
        .map(|c| match t {
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

/// Runs `gpu_op` and `cpu_op` on the same operands (uploaded from `inputs`) and compares.
#[allow(clippy::too_many_arguments)]
fn compare(
    gpu: &Cuda,
    what: &str,
    inputs: &[(DType, Vec<u8>, Layout)],
    out_t: DType,
    out_l: &Layout,
    gpu_op: impl Fn(&[TensorRef<'_, strata_cuda::CudaBuffer>], TensorMut<'_, strata_cuda::CudaBuffer>) -> Result<(), Error>,
    cpu_op: impl Fn(&[TensorRef<'_, strata_cpu::CpuBuffer>], TensorMut<'_, strata_cpu::CpuBuffer>) -> Result<(), Error>,
    failures: &mut Vec<String>,
) {
    let bytes = out_l.numel() * (out_t.bits() / 8) as usize;
    let gbufs: Vec<_> = inputs.iter().map(|(_, b, _)| gpu.upload(b).unwrap()).collect();
    let cbufs: Vec<_> = inputs.iter().map(|(_, b, _)| Cpu.upload(b).unwrap()).collect();
    let grefs: Vec<_> = inputs.iter().zip(&gbufs).map(|((t, _, l), b)| TensorRef::new(*t, b, l)).collect();
    let crefs: Vec<_> = inputs.iter().zip(&cbufs).map(|((t, _, l), b)| TensorRef::new(*t, b, l)).collect();
    let mut gout = gpu.upload(&vec![0xA5; bytes]).unwrap(); // poisoned
    let mut cout = Cpu.alloc(bytes).unwrap();
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
    if let Some(i) = close(out_t, &g, &c) {
        let w = (out_t.bits() / 8) as usize;
        let input: Vec<String> = inputs
            .iter()
            .map(|(t, b, l)| {
                let pos = l.position(&[i / SHAPE[1], i % SHAPE[1]]).max(0) as usize;
                let wi = (t.bits() / 8) as usize;
                format!("{:?}", &b[pos * wi..pos * wi + wi])
            })
            .collect();
        failures.push(format!(
            "{what}: element {i}: gpu {:?} cpu {:?} (inputs {})",
            &g[i * w..i * w + w],
            &c[i * w..i * w + w],
            input.join(", ")
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

#[test]
fn unary_ops_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng(seed());
    let (contiguous, transposed) = layouts();
    // Dense but starting one element in: the kernels' packed path does not apply.
    let shifted = Layout::new(&SHAPE, &[SHAPE[1] as isize, 1], 1).unwrap();
    let (mut failures, mut cases) = (Vec::new(), 0);
    for &t in &strata_cuda::supported_dtypes() {
        for &op in UnaryOp::ALL {
            let Ok(out_t) = op.output_dtype(t) else { continue };
            for l in [&contiguous, &transposed, &shifted] {
                let x = random(t, SHAPE[0] * SHAPE[1] + 1, &mut rng);
                cases += 1;
                compare(
                    &gpu,
                    &format!("{} {t} {:?}", op.name(), l.strides()),
                    &[(t, x, l.clone())],
                    out_t,
                    &contiguous,
                    |i, o| gpu.unary(op, i[0], o),
                    |i, o| Cpu.unary(op, i[0], o),
                    &mut failures,
                );
            }
        }
    }
    report("unary", failures, cases);
}

#[test]
fn binary_ops_match_the_cpu_with_broadcasting() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng(seed() ^ 0x9e37);
    let (contiguous, transposed) = layouts();
    // The second operand is one row broadcast over the first axis.
    let row = Layout::new(&SHAPE, &[0, 1], 0).unwrap();
    let (mut failures, mut cases) = (Vec::new(), 0);
    for &t in &strata_cuda::supported_dtypes() {
        for &op in BinaryOp::ALL {
            let Ok(out_t) = op.output_dtype(t) else { continue };
            let n = SHAPE[0] * SHAPE[1];
            for (la, lb, nb) in [(&transposed, &row, SHAPE[1]), (&contiguous, &contiguous, n)] {
                let a = random(t, n, &mut rng);
                let b = random(t, nb, &mut rng);
                cases += 1;
                compare(
                    &gpu,
                    &format!("{} {t} {:?} {:?}", op.name(), la.strides(), lb.strides()),
                    &[(t, a, la.clone()), (t, b, lb.clone())],
                    out_t,
                    &contiguous,
                    |i, o| gpu.binary(op, i[0], i[1], o),
                    |i, o| Cpu.binary(op, i[0], i[1], o),
                    &mut failures,
                );
            }
        }
    }
    report("binary", failures, cases);
}

#[test]
fn casts_select_and_copies_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng(seed() ^ 0x51ed);
    let (contiguous, transposed) = layouts();
    let (mut failures, mut cases) = (Vec::new(), 0);
    let types = strata_cuda::supported_dtypes();
    for &from in &types {
        for &to in &types {
            for l in [&transposed, &contiguous] {
                let x = random(from, SHAPE[0] * SHAPE[1], &mut rng);
                cases += 1;
                compare(
                    &gpu,
                    &format!("cast {from} -> {to} {:?}", l.strides()),
                    &[(from, x, l.clone())],
                    to,
                    &contiguous,
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
            &gpu,
            &format!("where {from}"),
            &[(DType::Bool, cond, contiguous.clone()), (from, a, transposed.clone()), (from, b, contiguous.clone())],
            from,
            &contiguous,
            |i, o| gpu.select(i[0], i[1], i[2], o),
            |i, o| Cpu.select(i[0], i[1], i[2], o),
            &mut failures,
        );
    }
    report("cast/select", failures, cases);
}

#[test]
fn bad_input_and_out_of_memory_are_errors() {
    let Some(gpu) = gpu() else { return };
    eprintln!("device: {} ({})", gpu.name(), gpu.arch());
    // A petabyte: the driver refuses, the pool empties its cache, retries, and reports.
    match gpu.alloc_output(1 << 50) {
        Err(Error::OutOfMemory { device, bytes }) => assert_eq!((device.as_str(), bytes), ("cuda:0", 1 << 50)),
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

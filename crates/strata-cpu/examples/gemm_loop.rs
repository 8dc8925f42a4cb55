//! Runs one GEMM shape in a loop, for profilers:
//! `cargo run --release --example gemm_loop -- M N K REPS` (`STRATA_DTYPE=f16|bf16` for half inputs and outputs).
use strata_core::DType;
use strata_core::kernel::{Layout, Matmul2d};
use strata_cpu::{CpuBuffer, TensorMut, TensorRef, matmul2d};
fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let (m, n, k, reps) = match args[..] {
        [n, reps] => (n, n, n, reps),
        [m, n, k, reps] => (m, n, k, reps),
        _ => (1024, 1024, 1024, 20),
    };
    let dt = match std::env::var("STRATA_DTYPE").as_deref() {
        Ok("f16") => DType::F16,
        Ok("bf16") => DType::BF16,
        _ => DType::F32,
    };
    let bytes = |len: usize| -> CpuBuffer {
        match dt {
            DType::F32 => CpuBuffer::from_slice(&vec![0.5f32; len]).unwrap(),
            _ => CpuBuffer::from_slice(&vec![0x3800u16; len]).unwrap(),
        }
    };
    let (a, b) = (bytes(m * k), bytes(k * n));
    let mut c = CpuBuffer::zeros(m * n * dt.bits() as usize / 8).unwrap();
    let (la, lb, lc) = (Layout::contiguous(&[m, k]), Layout::contiguous(&[k, n]), Layout::contiguous(&[m, n]));
    let run = |c: &mut CpuBuffer| {
        matmul2d(
            &Matmul2d::new(m, n, k),
            TensorRef::new(dt, &a, &la),
            TensorRef::new(dt, &b, &lb),
            None,
            None,
            TensorMut::new(dt, c, &lc),
        )
        .unwrap()
    };
    run(&mut c);
    let t = std::time::Instant::now();
    for _ in 0..reps {
        run(&mut c);
    }
    let s = t.elapsed().as_secs_f64() / reps as f64;
    println!("{m}x{n}x{k}: {:.1} GFLOP/s ({:.3} ms)", 2.0 * (m * n * k) as f64 / s / 1e9, s * 1e3);
}

//! Runs one GEMM size in a loop (for profilers): `cargo run --release --example gemm_loop -- N REPS`.
use strata_core::DType;
use strata_core::kernel::{Layout, Matmul2d};
use strata_cpu::{CpuBuffer, TensorMut, TensorRef, matmul2d};
fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let (n, reps) = (args.first().copied().unwrap_or(1024), args.get(1).copied().unwrap_or(20));
    let a = CpuBuffer::from_slice(&vec![0.5f32; n * n]).unwrap();
    let mut c = CpuBuffer::zeros(n * n * 4).unwrap();
    let l = Layout::contiguous(&[n, n]);
    let t = std::time::Instant::now();
    for _ in 0..reps {
        matmul2d(
            &Matmul2d::new(n, n, n),
            TensorRef::new(DType::F32, &a, &l),
            TensorRef::new(DType::F32, &a, &l),
            None,
            TensorMut::new(DType::F32, &mut c, &l),
        )
        .unwrap();
    }
    let s = t.elapsed().as_secs_f64() / reps as f64;
    println!("{n}: {:.1} GFLOP/s", 2.0 * (n as f64).powi(3) / s / 1e9);
}

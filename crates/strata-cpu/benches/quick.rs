//! A quick sgemm throughput check while tuning (the peer-compared benchmark is `benches/cpu.rs`).
use std::time::Instant;
use strata_core::DType;
use strata_core::kernel::{Layout, Matmul2d};
use strata_cpu::{CpuBuffer, TensorMut, TensorRef, matmul2d};
fn main() {
    println!("{:?}", strata_cpu::kernel_names());
    let only: Option<usize> = std::env::var("ONLY").ok().and_then(|r| r.parse().ok());
    for &(m, n, k) in &[
        (256, 256, 256),
        (512, 512, 512),
        (1024, 1024, 1024),
        (2048, 2048, 2048),
        (4096, 4096, 4096),
        (1, 4096, 4096),
        (16, 4096, 4096),
        (128, 4096, 4096),
        (2000, 2000, 2000),
        (2047, 2047, 2047),
        (2056, 2056, 2056),
        (1536, 1536, 1536),
        (3072, 3072, 3072),
    ] {
        if only.is_some_and(|o| o != m.max(n).max(k) || m != n) || (only.is_none() && m > 1 && m != 256 && m % 256 != 0)
        {
            continue;
        }
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 104729) % 1000) as f32 / 1000.0).collect();
        let (ab, bb) = (CpuBuffer::from_slice(&a).unwrap(), CpuBuffer::from_slice(&b).unwrap());
        let mut cb = CpuBuffer::zeros(m * n * 4).unwrap();
        let (la, lb, lc) = (Layout::contiguous(&[m, k]), Layout::contiguous(&[k, n]), Layout::contiguous(&[m, n]));
        let desc = Matmul2d::new(m, n, k);
        let mut run = || {
            matmul2d(
                &desc,
                TensorRef::new(DType::F32, &ab, &la),
                TensorRef::new(DType::F32, &bb, &lb),
                None,
                TensorMut::new(DType::F32, &mut cb, &lc),
            )
            .unwrap()
        };
        run();
        let mut ts = vec![];
        let reps: usize = std::env::var("REPS").ok().and_then(|r| r.parse().ok()).unwrap_or(9);
        for _ in 0..reps {
            let t = Instant::now();
            run();
            ts.push(t.elapsed().as_secs_f64());
        }
        ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let g = |t: f64| 2.0 * (m * n * k) as f64 / t / 1e9;
        println!("{m}x{n}x{k}: best {:.1} median {:.1} GFLOP/s", g(ts[0]), g(ts[ts.len() / 2]));
    }
}

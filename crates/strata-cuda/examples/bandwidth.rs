//! Element-wise kernels, reductions and scans against the driver's device-to-device copy, on
//! 1 GiB of f32: achieved bandwidth (bytes read + written per second) and the ratio to the
//! copy, measured in one run.
//!
//! `cargo run --release -p strata-cuda --example bandwidth` (on a machine with a GPU).

use std::time::Instant;

use strata_core::DType;
use strata_core::kernel::{Backend, BinaryOp, Layout, ReduceOp, ScanOp, TensorMut, TensorRef, UnaryOp};
use strata_cuda::{Cuda, CudaBuffer};

/// Best of five timings of `reps` back-to-back launches, seconds per launch.
fn time(gpu: &Cuda, reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    gpu.synchronize().unwrap();
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        gpu.synchronize().unwrap();
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    best
}

type Case<'a> = (&'a str, usize, Box<dyn Fn(&mut CudaBuffer, &mut CudaBuffer) + 'a>);

fn main() -> Result<(), strata_core::Error> {
    let gpu = Cuda::new(0)?;
    let n = 1usize << 28; // 1 GiB of f32
    let l = Layout::contiguous(&[n]);
    let bytes = n * 4;
    let x = gpu.upload(&vec![0x3f; bytes])?;
    let y = gpu.upload(&vec![0x40; bytes])?;
    let mut out = gpu.alloc_output(bytes)?;
    let mut half = gpu.alloc_output(bytes / 2)?;
    let copy = time(&gpu, 20, || gpu.memcpy(&x, &mut out).unwrap());
    let gbs = |moved: usize, s: f64| moved as f64 / s / 1e9;
    println!("device: {} ({})", gpu.device_name(), gpu.arch());
    println!("{:<36} {:>9} {:>8}", "case (1 GiB f32)", "GB/s", "vs copy");
    println!("{:<36} {:>9.0} {:>8}", "driver device-to-device copy", gbs(2 * bytes, copy), "1.00");
    let r = |b| TensorRef::new(DType::F32, b, &l);
    let cases: Vec<Case> = vec![
        ("copy kernel", 2 * bytes, Box::new(|o, _| gpu.copy(r(&x), TensorMut::new(DType::F32, o, &l)).unwrap())),
        (
            "unary neg",
            2 * bytes,
            Box::new(|o, _| gpu.unary(UnaryOp::Neg, r(&x), TensorMut::new(DType::F32, o, &l)).unwrap()),
        ),
        (
            "unary exp",
            2 * bytes,
            Box::new(|o, _| gpu.unary(UnaryOp::Exp, r(&x), TensorMut::new(DType::F32, o, &l)).unwrap()),
        ),
        (
            "binary add",
            3 * bytes,
            Box::new(|o, _| gpu.binary(BinaryOp::Add, r(&x), r(&y), TensorMut::new(DType::F32, o, &l)).unwrap()),
        ),
        (
            "cast f32 -> bf16",
            bytes + bytes / 2,
            Box::new(|_, h| gpu.cast(r(&x), TensorMut::new(DType::BF16, h, &l)).unwrap()),
        ),
    ];
    for (name, moved, f) in &cases {
        let s = time(&gpu, 20, || f(&mut out, &mut half));
        println!("{name:<36} {:>9.0} {:>8.2}", gbs(*moved, s), gbs(*moved, s) / gbs(2 * bytes, copy));
    }
    // Reductions and scans over the same 1 GiB seen as a 16384 x 16384 matrix (or flat).
    let side = 1usize << 14;
    let square = Layout::contiguous(&[side, side]);
    let flat = Layout::contiguous(&[n]);
    let rows_out = Layout::contiguous(&[side]);
    let scalar = Layout::contiguous(&[]);
    let sq = |b| TensorRef::new(DType::F32, b, &square);
    let reductions: Vec<Case> = vec![
        (
            "sum over rows (axis 1)",
            bytes,
            Box::new(|o, _| gpu.reduce(ReduceOp::Sum, &[1], sq(&x), TensorMut::new(DType::F32, o, &rows_out)).unwrap()),
        ),
        (
            "sum over columns (axis 0)",
            bytes,
            Box::new(|o, _| gpu.reduce(ReduceOp::Sum, &[0], sq(&x), TensorMut::new(DType::F32, o, &rows_out)).unwrap()),
        ),
        (
            "sum of everything",
            bytes,
            Box::new(|o, _| {
                gpu.reduce(
                    ReduceOp::Sum,
                    &[0],
                    TensorRef::new(DType::F32, &x, &flat),
                    TensorMut::new(DType::F32, o, &scalar),
                )
                .unwrap()
            }),
        ),
        (
            "max over rows (axis 1)",
            bytes,
            Box::new(|o, _| gpu.reduce(ReduceOp::Max, &[1], sq(&x), TensorMut::new(DType::F32, o, &rows_out)).unwrap()),
        ),
        (
            "cumsum along rows",
            2 * bytes,
            Box::new(|o, _| {
                gpu.scan(ScanOp::Sum, 1, false, true, sq(&x), TensorMut::new(DType::F32, o, &square)).unwrap()
            }),
        ),
    ];
    for (name, moved, f) in &reductions {
        let s = time(&gpu, 10, || f(&mut out, &mut half));
        println!("{name:<36} {:>9.0} {:>8.2}", gbs(*moved, s), gbs(*moved, s) / gbs(2 * bytes, copy));
    }
    // Launch cost: back-to-back kernels on 1 KiB, where the work itself is negligible, without
    // and with the flight recorder's per-launch GPU timing.
    let tiny = Layout::contiguous(&[256]);
    for on in [false, true] {
        gpu.set_kernel_timing(on);
        let s = time(&gpu, 2000, || {
            gpu.unary(UnaryOp::Neg, TensorRef::new(DType::F32, &x, &tiny), TensorMut::new(DType::F32, &mut out, &tiny))
                .unwrap()
        });
        let what = if on { "launch, 1 KiB, GPU times on" } else { "launch, 1 KiB, GPU times off" };
        println!("{what:<36} {:>9.2} µs", s * 1e6);
    }
    host_copies(&gpu)
}

/// Host-to-device and device-to-host copies of 256 MiB: ours (page-locked staging) against the
/// driver's copy from pageable memory (what a plain `cuMemcpy` of a `Vec` does) and from
/// page-locked memory (the link's ceiling), then how long an upload of 16 MiB keeps the caller.
fn host_copies(gpu: &Cuda) -> Result<(), strata_core::Error> {
    let err =
        |e: cudarc::driver::DriverError| strata_core::Error::InvalidArgument { op: "bench", message: format!("{e:?}") };
    let bytes = 256usize << 20;
    let host: Vec<u8> = (0..bytes).map(|i| (i * 7) as u8).collect();
    let mut back = vec![0u8; bytes];
    let mut dev = gpu.alloc_output(bytes)?;
    let stream = gpu.stream().clone();
    // SAFETY: filled below before it is read.
    let mut pinned = unsafe { gpu.context().alloc_pinned::<u8>(bytes) }.map_err(err)?;
    pinned.as_mut_slice().map_err(err)?.copy_from_slice(&host);
    let gbs = |s: f64| bytes as f64 / s / 1e9;
    println!("{:<36} {:>9} {:>9} {:>8}", "host copies (256 MiB)", "up GB/s", "down GB/s", "vs driver");
    let up_driver = time(gpu, 3, || stream.memcpy_htod(&host, dev.device_slice_mut()).unwrap());
    let down_driver = time(gpu, 3, || stream.memcpy_dtoh(dev.device_slice(), &mut back).unwrap());
    let up_pinned = time(gpu, 3, || stream.memcpy_htod(&pinned, dev.device_slice_mut()).unwrap());
    let down_pinned = time(gpu, 3, || stream.memcpy_dtoh(dev.device_slice(), &mut pinned).unwrap());
    let row = |what: &str, up: f64, down: f64| {
        let ratio = format!("{:.2}/{:.2}", up_driver / up, down_driver / down);
        println!("{what:<36} {:>9.1} {:>9.1} {ratio:>8}", gbs(up), gbs(down));
    };
    row("driver, pageable memory", up_driver, down_driver);
    row("driver, page-locked memory", up_pinned, down_pinned);
    for (chunk, slots) in [(32 << 20, 4), (8 << 20, 4), (64 << 20, 4)] {
        let ring = if (chunk, slots) == (32 << 20, 4) { gpu.clone() } else { gpu.with_staging(chunk, slots) };
        let up = time(gpu, 3, || drop(ring.upload(&host).unwrap()));
        let down = time(gpu, 3, || ring.download(&dev, &mut back).unwrap());
        row(&format!("ours, {slots} slots of {} MiB", chunk >> 20), up, down);
    }
    // What the caller waits for: an upload that fits the staging ring returns before its copy
    // ends (the driver's pageable copy returns once it is done).
    let small = &host[..16 << 20];
    let call = |f: &mut dyn FnMut()| {
        gpu.synchronize().unwrap();
        let t = Instant::now();
        f();
        let returned = t.elapsed().as_secs_f64();
        gpu.synchronize().unwrap();
        (returned, t.elapsed().as_secs_f64())
    };
    let best =
        |f: &mut dyn FnMut()| (0..5).map(|_| call(f)).fold((f64::INFINITY, 0.0), |a, b| if b.0 < a.0 { b } else { a });
    let (ours, ours_all) = best(&mut || drop(gpu.upload(small).unwrap()));
    let mut d = gpu.alloc_output(small.len())?;
    let (driver, driver_all) = best(&mut || stream.memcpy_htod(small, d.device_slice_mut()).unwrap());
    println!(
        "upload 16 MiB, caller held: ours {:.0} µs of {:.0}, driver {:.0} µs of {:.0}",
        ours * 1e6,
        ours_all * 1e6,
        driver * 1e6,
        driver_all * 1e6
    );
    Ok(())
}

//! 2-D convolution on the GPU (channels last): our implicit GEMM on tensor cores timed with
//! device events (median of repetitions, L2 flushed before every launch), in TFLOP/s, on the
//! layers of ResNet-50 and of a diffusion U-Net. PyTorch's `conv2d` (cuDNN, channels last,
//! `cudnn.benchmark` on) is the peer: `scripts/device/conv.sh` runs this and
//! `scripts/device/conv_peer.py` on the same shapes in the same call.
//!
//! `cargo run --release -p strata-cuda --example conv [CASES...]`, a case being
//! `TYPE:NxHxWxCIN:K:COUT[:sSTRIDE]` (e.g. `f16:32x56x56x64:3:64`, padding K/2); with none, the
//! shapes below.
//!
//! Each row also times the general kernel (a thread per output element) on the same operands,
//! and checks the two against each other (‖fast − general‖ / ‖general‖) before anything is
//! timed.

#[path = "common/operands.rs"]
mod operands;

use strata_core::DType;
use strata_core::kernel::{Backend, Conv, Layout, TensorMut, TensorRef};
use strata_cuda::{Cuda, CudaBuffer};

use operands::{Rng, Timer, decode, random, relative_difference};

#[derive(Clone, Copy)]
struct Case {
    t: DType,
    n: usize,
    h: usize,
    w: usize,
    cin: usize,
    k: usize,
    cout: usize,
    stride: usize,
}

impl Case {
    fn desc(&self) -> Conv {
        Conv::new_2d([self.stride; 2], [self.k / 2; 2])
    }
    fn shapes(&self) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
        let x = vec![self.n, self.h, self.w, self.cin];
        let w = vec![self.k, self.k, self.cin, self.cout];
        let y = self.desc().output_shape(&x, &w).expect("a valid case");
        (x, w, y)
    }
    /// 2 · outputs · (taps · input channels).
    fn flops(&self) -> f64 {
        let (_, _, y) = self.shapes();
        2.0 * y.iter().product::<usize>() as f64 * (self.k * self.k * self.cin) as f64
    }
}

fn parse(args: &[String]) -> Vec<Case> {
    let case = |t, n, h, cin, k, cout, stride| Case { t, n, h, w: h, cin, k, cout, stride };
    if args.is_empty() {
        use DType::{BF16, F16};
        return vec![
            // ResNet-50's 3x3 and 1x1 layers at batch 32.
            case(F16, 32, 56, 64, 3, 64, 1),
            case(F16, 32, 28, 128, 3, 128, 1),
            case(F16, 32, 14, 256, 3, 256, 1),
            case(F16, 32, 7, 512, 3, 512, 1),
            case(F16, 32, 56, 256, 1, 64, 1),
            case(F16, 32, 14, 1024, 1, 256, 1),
            case(F16, 32, 56, 128, 3, 128, 2),
            // A diffusion U-Net's 3x3 layers at batch 2.
            case(F16, 2, 64, 320, 3, 320, 1),
            case(F16, 2, 32, 640, 3, 640, 1),
            case(BF16, 2, 64, 320, 3, 320, 1),
        ];
    }
    args.iter()
        .map(|a| {
            let parts: Vec<&str> = a.split(':').collect();
            let t = match parts[0] {
                "bf16" => DType::BF16,
                "f16" => DType::F16,
                other => panic!("a case's type is f16 or bf16, not {other}"),
            };
            let num = |s: &str| -> usize { s.parse().unwrap_or_else(|_| panic!("{s} in {a} is not a number")) };
            let dims: Vec<usize> = parts.get(1).expect("TYPE:NxHxWxCIN:K:COUT").split('x').map(num).collect();
            let [n, h, w, cin] = dims[..] else { panic!("a case's input is NxHxWxCIN, not {a}") };
            let k = num(parts.get(2).expect("the kernel size"));
            let cout = num(parts.get(3).expect("the output channels"));
            let stride = parts.get(4).map_or(1, |s| num(s.trim_start_matches('s')));
            Case { t, n, h, w, cin, k, cout, stride }
        })
        .collect()
}

fn main() -> Result<(), strata_core::Error> {
    let gpu = Cuda::new(0)?;
    let general_gpu = gpu.with_tensor_cores(false);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut timer = Timer::new(&gpu);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    println!("device: {} ({})", gpu.device_name(), gpu.arch());
    println!(
        "{:<5} {:>16} {:>3} {:>5} {:>2} {:>10} {:>10} {:>9}",
        "dtype", "input", "k", "c_out", "s", "ours TF/s", "general", "rel.diff"
    );
    for c in parse(&args) {
        let (xs, ws, ys) = c.shapes();
        let (xl, wl, yl) = (Layout::contiguous(&xs), Layout::contiguous(&ws), Layout::contiguous(&ys));
        let x = gpu.upload(&random(c.t, xl.numel(), &mut rng))?;
        let w = gpu.upload(&random(c.t, wl.numel(), &mut rng))?;
        let mut fast = gpu.upload(&vec![0xA5; yl.numel() * 2])?;
        let mut general = gpu.upload(&vec![0x5A; yl.numel() * 2])?;
        let desc = c.desc();
        let run = |out: &mut CudaBuffer, tensor_cores: bool| {
            let gpu = if tensor_cores { &gpu } else { &general_gpu };
            gpu.conv(&desc, TensorRef::new(c.t, &x, &xl), TensorRef::new(c.t, &w, &wl), TensorMut::new(c.t, out, &yl))
                .unwrap()
        };
        run(&mut fast, true);
        run(&mut general, false);
        let (mut a, mut b) = (vec![0u8; yl.numel() * 2], vec![0u8; yl.numel() * 2]);
        gpu.download(&fast, &mut a)?;
        gpu.download(&general, &mut b)?;
        let rel = relative_difference(&decode(c.t, &a), &decode(c.t, &b));
        let fast_ms = timer.median_of(&gpu, 20, || run(&mut fast, true));
        // The general kernel is far slower: a few repetitions of it are enough.
        let general_ms = timer.median_of(&gpu, 3, || run(&mut general, false));
        println!(
            "{:<5} {:>16} {:>3} {:>5} {:>2} {:>10.1} {:>10.2} {:>9.1e}",
            c.t.to_string(),
            format!("{}x{}x{}x{}", c.n, c.h, c.w, c.cin),
            c.k,
            c.cout,
            c.stride,
            c.flops() / fast_ms / 1e9,
            c.flops() / general_ms / 1e9,
            rel
        );
    }
    Ok(())
}

//! Scaled dot-product attention on the GPU: our kernels timed with device events (median of
//! repetitions, L2 flushed before every launch), in TFLOP/s, for the shapes FlashAttention's
//! papers report (16k tokens a batch, heads of 64 and 128, causal or not). PyTorch's SDPA is the
//! peer: `scripts/device/attention.sh` runs this and `scripts/device/attention_peer.py` on the same
//! shapes in the same call.
//!
//! `cargo run --release -p strata-cuda --example attention [CASES...]`, a case being
//! `TYPE:BATCHxHEADSxLENxD[:causal]` (e.g. `f16:4x16x4096x128:causal`); with none, f16 at
//! lengths 1k, 4k and 16k, heads of 64 and 128, causal and not, and two bf16 rows.
//!
//! Each row also times the general kernel (a warp per query row) on the same operands, and
//! checks the two against each other (‖fast − general‖ / ‖general‖) before anything is timed.

#[path = "common/operands.rs"]
mod operands;

use strata_core::DType;
use strata_core::kernel::{Attention, AttentionMask, Backend, Layout, TensorMut, TensorRef};
use strata_cuda::{Cuda, CudaBuffer};

use operands::{Rng, Timer, decode, random, relative_difference};

#[derive(Clone, Copy)]
struct Case {
    t: DType,
    batch: usize,
    heads: usize,
    len: usize,
    d: usize,
    causal: bool,
}

impl Case {
    /// Multiply-adds counted as FlashAttention's benchmarks count them: 4·b·h·l²·d, halved
    /// when causal.
    fn flops(&self) -> f64 {
        let f = 4.0 * (self.batch * self.heads) as f64 * (self.len * self.len) as f64 * self.d as f64;
        if self.causal { f / 2.0 } else { f }
    }
}

fn parse(args: &[String]) -> Vec<Case> {
    if args.is_empty() {
        let mut cases = Vec::new();
        for d in [64, 128] {
            for len in [1024, 4096, 16384] {
                for causal in [false, true] {
                    cases.push(Case { t: DType::F16, batch: 16384 / len, heads: 2048 / d, len, d, causal });
                }
            }
        }
        cases.push(Case { t: DType::BF16, batch: 4, heads: 16, len: 4096, d: 128, causal: false });
        cases.push(Case { t: DType::BF16, batch: 4, heads: 16, len: 4096, d: 128, causal: true });
        return cases;
    }
    args.iter()
        .map(|a| {
            let parts: Vec<&str> = a.split(':').collect();
            let t = match parts[0] {
                "bf16" => DType::BF16,
                "f16" => DType::F16,
                other => panic!("a case's type is f16 or bf16, not {other}"),
            };
            let dims: Vec<usize> =
                parts.get(1).expect("TYPE:BxHxLxD").split('x').map(|x| x.parse().expect("a number")).collect();
            let [batch, heads, len, d] = dims[..] else { panic!("a case's shape is BATCHxHEADSxLENxD, not {a}") };
            Case { t, batch, heads, len, d, causal: parts.get(2) == Some(&"causal") }
        })
        .collect()
}

fn main() -> Result<(), strata_core::Error> {
    let gpu = Cuda::new(0)?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut timer = Timer::new(&gpu);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    println!("device: {} ({})", gpu.device_name(), gpu.arch());
    println!(
        "{:<5} {:>5} {:>5} {:>6} {:>4} {:<6} {:>10} {:>10} {:>9}",
        "dtype", "batch", "heads", "len", "d", "mask", "ours TF/s", "general", "rel.diff"
    );
    for c in parse(&args) {
        let n = c.batch * c.heads * c.len * c.d;
        let layout = Layout::contiguous(&[c.batch, c.heads, c.len, c.d]);
        let (q, k, v) = (
            gpu.upload(&random(c.t, n, &mut rng))?,
            gpu.upload(&random(c.t, n, &mut rng))?,
            gpu.upload(&random(c.t, n, &mut rng))?,
        );
        let mut fast = gpu.upload(&vec![0xA5; n * 2])?;
        let mut general = gpu.upload(&vec![0x5A; n * 2])?;
        let desc = Attention::new(1.0 / (c.d as f32).sqrt()).mask(if c.causal {
            AttentionMask::Causal
        } else {
            AttentionMask::None
        });
        let general_gpu = gpu.with_tensor_cores(false);
        let run = |out: &mut CudaBuffer, tensor_cores: bool| {
            let gpu = if tensor_cores { &gpu } else { &general_gpu };
            gpu.attention(
                &desc,
                TensorRef::new(c.t, &q, &layout),
                TensorRef::new(c.t, &k, &layout),
                TensorRef::new(c.t, &v, &layout),
                None,
                TensorMut::new(c.t, out, &layout),
            )
            .unwrap()
        };
        run(&mut fast, true);
        run(&mut general, false);
        let (mut x, mut y) = (vec![0u8; n * 2], vec![0u8; n * 2]);
        gpu.download(&fast, &mut x)?;
        gpu.download(&general, &mut y)?;
        let (x, y) = (decode(c.t, &x), decode(c.t, &y));
        let rel = relative_difference(&x, &y);
        let fast_ms = timer.median_of(&gpu, 20, || run(&mut fast, true));
        // The general kernel is ~50x slower: a few repetitions of it are enough.
        let general_ms = timer.median_of(&gpu, 3, || run(&mut general, false));
        println!(
            "{:<5} {:>5} {:>5} {:>6} {:>4} {:<6} {:>10.1} {:>10.1} {:>9.1e}",
            c.t.to_string(),
            c.batch,
            c.heads,
            c.len,
            c.d,
            if c.causal { "causal" } else { "none" },
            c.flops() / fast_ms / 1e9,
            c.flops() / general_ms / 1e9,
            rel
        );
    }
    Ok(())
}

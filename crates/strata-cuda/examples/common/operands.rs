//! Random operands and the helpers the CUDA benchmarks share (included with `#[path]`).

use cudarc::driver::CudaSlice;
use cudarc::driver::sys::CUevent_flags;
use half::{bf16, f16};
use strata_core::DType;
use strata_core::formats::F8E4M3;
use strata_cuda::Cuda;

/// xorshift64: uniform values in [-1, 1).
pub struct Rng(pub u64);

impl Rng {
    pub fn unit(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// `n` random elements of type `t` (bf16, f16, fp8 E4M3 or f32), little-endian.
pub fn random(t: DType, n: usize, rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 4);
    for _ in 0..n {
        let v = rng.unit();
        match t {
            DType::BF16 => out.extend(bf16::from_f32(v).to_le_bytes()),
            DType::F16 => out.extend(f16::from_f32(v).to_le_bytes()),
            DType::F8E4M3 => out.push(F8E4M3::from_f32(v).to_bits()),
            _ => out.extend(v.to_le_bytes()),
        }
    }
    out
}

/// Elements of type `t` (bf16, f16 or f32) as f64.
pub fn decode(t: DType, b: &[u8]) -> Vec<f64> {
    match t {
        DType::BF16 => b.chunks(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f64()).collect(),
        DType::F16 => b.chunks(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f64()).collect(),
        _ => b.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect(),
    }
}

/// ‖x − y‖ / ‖y‖.
pub fn relative_difference(x: &[f64], y: &[f64]) -> f64 {
    let diff: f64 = x.iter().zip(y).map(|(p, q)| (p - q) * (p - q)).sum::<f64>().sqrt();
    let norm: f64 = y.iter().map(|q| q * q).sum::<f64>().sqrt();
    diff / norm
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times work queued on the device's stream with a pair of events, L2 flushed (a 256 MiB buffer
/// zeroed) before each launch, as METHOD.md asks.
pub struct Timer {
    flush: CudaSlice<u8>,
}

impl Timer {
    pub fn new(gpu: &Cuda) -> Timer {
        Timer { flush: gpu.stream().alloc_zeros(256 << 20).expect("the L2 flush buffer") }
    }

    /// Milliseconds `run` takes on the stream.
    pub fn once(&mut self, gpu: &Cuda, run: impl FnOnce()) -> f64 {
        let event = || gpu.context().new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).expect("an event");
        gpu.stream().memset_zeros(&mut self.flush).expect("flushing L2");
        let (s, e) = (event(), event());
        s.record(gpu.stream()).expect("recording an event");
        run();
        e.record(gpu.stream()).expect("recording an event");
        s.elapsed_ms(&e).expect("an event's time") as f64
    }

    /// The median of `reps` timings of `run`, after two warm-ups.
    #[allow(dead_code)] // (the gemm example interleaves ours and the peer's with `once`)
    pub fn median_of(&mut self, gpu: &Cuda, reps: usize, mut run: impl FnMut()) -> f64 {
        let ms: Vec<f64> = (0..reps + 2).map(|_| self.once(gpu, &mut run)).skip(2).collect();
        median(ms)
    }
}

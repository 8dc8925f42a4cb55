//! Scaled dot-product attention (`kernels/attention.cu`), four kernels:
//! - on Hopper (sm_90a), for f16 and bf16 heads of 64 or 128 (d = dv) whose rows are contiguous
//!   and 16-byte aligned (the common case of a model's attention), FlashAttention-3's design on
//!   `wgmma`: a producer warpgroup loads Q, K and V through the copy engine (TMA) into rings
//!   guarded by transaction barriers, two consumer warpgroups of 64 query rows take turns on
//!   the tensor cores, and P goes from S's accumulators into P·V as the register operand;
//! - the same kernel with every thread's cp.async and a barrier per block of keys, where the
//!   copy engine cannot describe an operand (or `STRATA_ATTENTION_TMA=0`);
//! - FlashAttention-2 on `mma.sync` for those shapes before Hopper, and for heads of 32;
//! - the general online-softmax kernel, a warp per query row, for every other call: every type
//!   the primitive takes, heads up to 256, any strides. It is the reference the tensor-core
//!   kernels are held to, in the conformance suite and in the benchmark.
//!
//! All take grouped key/value heads and every mask.

use cudarc::driver::{DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg};
use strata_core::kernel::{Attention, AttentionDims, AttentionMask, Backend, Layout, TensorMut, TensorRef};
use strata_core::{DType, Error, Result};

use crate::matmul::{TENSOR_OPS, TensorMap, encode_tiled};
use crate::{Cuda, CudaBuffer, ELEMENTWISE, FLOAT_TYPES, c, float_source};

const ATTENTION: &str = include_str!("../kernels/attention.cu");
const OP: &str = "attention";
/// `STRATA_ATTENTION_MAX_D` and `STRATA_ATTENTION_WARPS` in `attention.cu`.
const MAX_D: usize = 256;
const WARPS: u64 = 4;
/// The tensor-core kernels' head sizes: `mma.sync`'s, and `wgmma`'s (whose tiles have rows of
/// 64 elements).
const FLASH_D: [usize; 3] = [32, 64, 128];
const WG_D: [usize; 2] = [64, 128];

/// The C layout of `AttentionGeometry`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct AttentionGeometry {
    batch: i64,
    hq: i64,
    lq: i64,
    d: i64,
    hkv: i64,
    lk: i64,
    dv: i64,
    q: [i64; 5],
    k: [i64; 5],
    v: [i64; 5],
    out: [i64; 5],
    mask: [i64; 5],
    scale: f32,
    mask_kind: i32,
}

// SAFETY: plain old data with the C layout of `AttentionGeometry`.
unsafe impl DeviceRepr for AttentionGeometry {}

/// The general kernel for operands of type `t` (accumulating in f32, f64 for f64).
pub(crate) fn source(t: DType) -> String {
    float_source(ATTENTION, "STRATA_ATTENTION", t)
}

/// How the tensor-core kernel runs heads of one size.
#[derive(Clone, Copy, Debug)]
struct FlashPlan {
    /// Query rows a warp (a block has four warps).
    rm: usize,
    /// Keys a block.
    bn: usize,
    /// Q's fragments read from shared memory for every block of keys, not held in registers.
    q_shared: bool,
}

impl FlashPlan {
    /// 32 query rows a warp (each K and V fragment read from shared memory feeds twice the
    /// products of 16), with Q in registers and blocks of 64 keys up to heads of 64. Heads of
    /// 128 keep 32 rows as FlashAttention-2 does: the output's 128 accumulators a thread leave no
    /// room for Q's fragments or for 64 keys' scores, so Q stays in shared memory and the keys
    /// come 32 at a time (246 registers, no spills; on an H200, 0.64–0.66 of FlashAttention-2
    /// where 16 rows with Q in registers ran at 0.56–0.62).
    fn for_head(d: usize) -> FlashPlan {
        if d >= 128 {
            FlashPlan { rm: 32, bn: 32, q_shared: true }
        } else {
            FlashPlan { rm: 32, bn: 64, q_shared: false }
        }
    }

    /// Q's block and one block each of K and V, 16-bit elements.
    fn smem(self, d: usize) -> u32 {
        ((4 * self.rm + 2 * self.bn) * d * 2) as u32
    }
}

/// The tensor-core kernel for 16-bit type `t`, head size `d`, on plan `p`.
fn flash_source(t: DType, d: usize, p: FlashPlan) -> String {
    let FlashPlan { rm, bn, q_shared } = p;
    format!("{ELEMENTWISE}{TENSOR_OPS}{ATTENTION}\nSTRATA_FLASH_ATTENTION({}, {d}, {rm}, {bn}, {q_shared})\n", c(t))
}

/// How the warpgroup kernel runs heads of one size.
#[derive(Clone, Copy, Debug, PartialEq)]
struct WgPlan {
    /// Keys a block (64 or 128).
    bn: usize,
    /// Warpgroups of 64 query rows a block (2 or 3).
    wg: usize,
}

impl WgPlan {
    /// With the copy engine (`tma`), two consumer warpgroups (128 query rows) and blocks of 128
    /// keys, FlashAttention-3's tile for heads of 128; with cp.async, three warpgroups and blocks
    /// of 64 keys. On an H200 each was the fastest of the plans timed, or within 3 % of it, on
    /// every shape but short causal heads of 64 (BENCHMARKS.md).
    /// `STRATA_ATTENTION_WG_PLAN=BN,WG` forces another (to time the others), except three
    /// consumers with 128 keys on the copy engine, which would spill (160 registers each).
    fn chosen(tma: bool) -> WgPlan {
        let forced = std::env::var("STRATA_ATTENTION_WG_PLAN").ok().and_then(|v| {
            let (bn, wg) = v.split_once(',')?;
            Some(WgPlan { bn: bn.trim().parse().ok()?, wg: wg.trim().parse().ok()? })
        });
        let default = if tma { WgPlan { bn: 128, wg: 2 } } else { WgPlan { bn: 64, wg: 3 } };
        let valid =
            |p: &WgPlan| [64, 128].contains(&p.bn) && [2, 3].contains(&p.wg) && !(tma && p.bn == 128 && p.wg == 3);
        forced.filter(valid).unwrap_or(default)
    }

    /// Bytes of shared memory: Q's rows, `stages` stages each of K and V, the copy engine's
    /// barriers (four a stage and Q's) where `barriers`, and the slack that aligns the tiles to
    /// 1024 bytes.
    fn smem_with(self, d: usize, stages: usize, barriers: bool) -> usize {
        let bars = if barriers { 8 * (4 * stages + 1) } else { 0 };
        (64 * self.wg * d + 2 * stages * self.bn * d) * 2 + bars + 1024
    }

    /// The cp.async form's: two stages.
    fn smem(self, d: usize) -> u32 {
        self.smem_with(d, 2, false) as u32
    }

    /// Stages of K and V in the copy engine's form: four, or as many as fit.
    fn tma_stages(self, d: usize) -> usize {
        (2..=4).rev().find(|&s| self.smem_with(d, s, true) <= 227 << 10).unwrap_or(2)
    }

    fn tma_smem(self, d: usize) -> u32 {
        self.smem_with(d, self.tma_stages(d), true) as u32
    }
}

/// The copy engine's form of the warpgroup kernel.
fn tma_source(t: DType, d: usize, p: WgPlan) -> String {
    let (WgPlan { bn, wg }, stages, pp) = (p, p.tma_stages(d), ping_pong());
    format!(
        "{ELEMENTWISE}{TENSOR_OPS}{ATTENTION}\nSTRATA_FLASH_ATTENTION_TMA({}, {d}, {bn}, {wg}, {stages}, {pp})\n",
        c(t)
    )
}

/// Whether the copy engine's form takes turns among its consumers for the tensor cores
/// (`STRATA_ATTENTION_PINGPONG=0` or `1`).
fn ping_pong() -> bool {
    std::env::var("STRATA_ATTENTION_PINGPONG").map_or(true, |v| v != "0")
}

/// `STRATA_ATTENTION_TMA=0` keeps the warpgroup kernel on cp.async (to test or time it).
fn copy_engine() -> bool {
    std::env::var("STRATA_ATTENTION_TMA").map_or(true, |v| v != "0")
}

/// Q, K or V (`[batch, heads, rows, d]`, 16-bit, rows contiguous) at `ptr` as the copy engine
/// sees it, in boxes of 64 rows of 64 elements; `None` where it cannot (a broadcast axis, a
/// stride the driver refuses).
fn tma_map(t: DType, ptr: u64, l: &Layout) -> Option<TensorMap> {
    let (shape, s) = (l.shape(), l.strides());
    if s[..3].iter().any(|&x| x <= 0) {
        return None;
    }
    let w = u64::from(t.bits() / 8);
    let dims = [shape[3] as u64, shape[2] as u64, shape[1] as u64, shape[0] as u64];
    let strides = [s[2] as u64 * w, s[1] as u64 * w, s[0] as u64 * w];
    encode_tiled(t, ptr + l.offset() as u64 * w, &dims, &strides, &[64, 64, 1, 1])
}

/// The warpgroup kernel for 16-bit type `t`, head size `d`, on plan `p`.
fn wg_source(t: DType, d: usize, p: WgPlan) -> String {
    let WgPlan { bn, wg } = p;
    format!("{ELEMENTWISE}{TENSOR_OPS}{ATTENTION}\nSTRATA_FLASH_ATTENTION_WG({}, {d}, {bn}, {wg})\n", c(t))
}

pub(crate) fn all_sources() -> Vec<String> {
    let mut all: Vec<String> = FLOAT_TYPES.map(source).to_vec();
    for t in [DType::F16, DType::BF16] {
        for d in FLASH_D {
            all.push(flash_source(t, d, FlashPlan::for_head(d)));
        }
        for d in WG_D {
            all.push(wg_source(t, d, WgPlan::chosen(false)));
            all.push(tma_source(t, d, WgPlan::chosen(true)));
        }
    }
    all
}

/// Offset, then the four strides.
fn place(l: &Layout) -> [i64; 5] {
    let s = l.strides();
    [l.offset() as i64, s[0] as i64, s[1] as i64, s[2] as i64, s[3] as i64]
}

/// Whether the tensor-core kernel takes the call: 16-bit operands, a head size it has, and
/// rows that `cp.async` can copy in 16-byte pieces (contiguous, every row start 16-byte
/// aligned).
fn flash_eligible(t: DType, d: usize, dv: usize, operands: [&Layout; 3]) -> bool {
    let aligned = |l: &Layout| {
        let s = l.strides();
        s[3] == 1 && l.offset().is_multiple_of(8) && s[..3].iter().all(|&x| x % 8 == 0)
    };
    matches!(t, DType::F16 | DType::BF16) && d == dv && FLASH_D.contains(&d) && operands.iter().all(|l| aligned(l))
}

pub(crate) fn attention(
    cuda: &Cuda,
    desc: &Attention,
    q: TensorRef<'_, CudaBuffer>,
    k: TensorRef<'_, CudaBuffer>,
    v: TensorRef<'_, CudaBuffer>,
    mask: Option<TensorRef<'_, CudaBuffer>>,
    out: TensorMut<'_, CudaBuffer>,
) -> Result<()> {
    let AttentionDims { batch, q_heads: hq, q_len: lq, d, kv_heads: hkv, k_len: lk, dv } =
        desc.validate_call(&q, &k, &v, mask.as_ref(), &out)?;
    if d > MAX_D || dv > MAX_D {
        return Err(Error::NotImplemented { op: "attention with heads wider than 256", backend: cuda.name() });
    }
    let rows = (batch * hq * lq) as u64;
    if rows == 0 || dv == 0 {
        return Ok(());
    }
    let mask_kind = match (desc.mask, mask.as_ref().map(|m| m.dtype)) {
        (AttentionMask::None, _) => 0,
        (AttentionMask::Causal, _) => 1,
        (AttentionMask::Explicit, Some(DType::Bool)) => 3,
        (AttentionMask::Explicit, _) => 2,
    };
    let g = AttentionGeometry {
        batch: batch as i64,
        hq: hq as i64,
        lq: lq as i64,
        d: d as i64,
        hkv: hkv as i64,
        lk: lk as i64,
        dv: dv as i64,
        q: place(q.layout),
        k: place(k.layout),
        v: place(v.layout),
        out: place(out.layout),
        mask: mask.as_ref().map_or([0; 5], |m| place(m.layout)),
        scale: desc.scale,
        mask_kind,
    };
    let plan = FlashPlan::for_head(d);
    // `STRATA_GEMM_KERNEL=warp` keeps attention off `wgmma` too (to test or time the other).
    let warpgroup =
        cuda.arch() == "sm_90a" && WG_D.contains(&d) && crate::matmul::kernel_override().as_deref() != Some("warp");
    let flash = cuda.tensor_cores()
        && crate::has_mma_sync(cuda.arch())
        && flash_eligible(q.dtype, d, dv, [q.layout, k.layout, v.layout]);
    // The copy engine's view of Q, K and V where it has one (the guards order its reads on the
    // stream like the launch's own arguments).
    let reads =
        (flash && warpgroup && copy_engine()).then(|| [&q, &k, &v].map(|x| x.buffer.slice().device_ptr(&cuda.stream)));
    let maps = reads.as_ref().and_then(|r| {
        Some([
            tma_map(q.dtype, r[0].0, q.layout)?,
            tma_map(k.dtype, r[1].0, k.layout)?,
            tma_map(v.dtype, r[2].0, v.layout)?,
        ])
    });
    let wg = WgPlan::chosen(maps.is_some());
    let bm = if warpgroup { 64 * wg.wg } else { 4 * plan.rm };
    // A block per `bm` queries of a head; a grid too large for one launch takes the general
    // kernel, whose blocks stride over the rows.
    let flash_blocks = i32::try_from(lq.div_ceil(bm) * batch * hq).ok();
    // The copy engine's form runs exactly when there are maps to pass it.
    let launch_maps = flash_blocks.and(maps.as_ref());
    let (f, cfg, name) = if let Some(blocks) = flash_blocks
        && launch_maps.is_some()
    {
        let smem = wg.tma_smem(d);
        let f = cuda.kernel_with_smem(
            &format!("attention {} wgmma tma d{d} {wg:?} {}", q.dtype, ping_pong()),
            smem,
            || tma_source(q.dtype, d, wg),
        )?;
        let threads = 128 * (wg.wg as u32 + 1);
        (
            f,
            LaunchConfig { grid_dim: (blocks as u32, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: smem },
            "attention (wgmma, TMA)",
        )
    } else if let Some(blocks) = flash_blocks
        && flash
        && warpgroup
    {
        let smem = wg.smem(d);
        let f = cuda.kernel_with_smem(&format!("attention {} wgmma d{d} {wg:?}", q.dtype), smem, || {
            wg_source(q.dtype, d, wg)
        })?;
        let threads = 128 * wg.wg as u32;
        (
            f,
            LaunchConfig { grid_dim: (blocks as u32, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: smem },
            "attention (wgmma)",
        )
    } else if let Some(blocks) = flash_blocks
        && flash
    {
        let smem = plan.smem(d);
        let f = cuda.kernel_with_smem(&format!("attention {} tensor cores d{d} {plan:?}", q.dtype), smem, || {
            flash_source(q.dtype, d, plan)
        })?;
        let blocks = blocks as u32;
        (
            f,
            LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (128, 1, 1), shared_mem_bytes: smem },
            "attention (tensor cores)",
        )
    } else {
        let f = cuda.kernel(&format!("attention {}", q.dtype), || source(q.dtype))?;
        let blocks = rows.div_ceil(WARPS).min(u64::from(cuda.sms) * 16).max(1) as u32;
        (f, LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (32 * WARPS as u32, 1, 1), shared_mem_bytes: 0 }, OP)
    };
    // Without a mask the kernel still takes a pointer; it is never read.
    let mask_buf = mask.as_ref().map_or(q.buffer, |m| m.buffer);
    let mut b = cuda.stream.launch_builder(&f);
    match launch_maps {
        Some([mq, mk, mv]) => b.arg(mq).arg(mk).arg(mv),
        None => b.arg(q.buffer.slice()).arg(k.buffer.slice()).arg(v.buffer.slice()),
    };
    b.arg(mask_buf.slice());
    b.arg(out.buffer.slice_mut()).arg(&g);
    // SAFETY: parameters as `STRATA_ATTENTION`, `STRATA_FLASH_ATTENTION`,
    // `STRATA_FLASH_ATTENTION_WG` and `STRATA_FLASH_ATTENTION_TMA` declare them (the last two
    // launched on sm_90a only, with their shared memory); every operand was checked against its
    // buffer (the tensor-core kernels read whole 16-byte pieces of rows, which lie inside them;
    // the copy engine reads through maps of the same extents), and the output has no broadcast
    // axis, so no two threads write one element.
    cuda.timed(name, || unsafe { b.launch(cfg) })
}

//! `matmul2d` on the device (`kernels/gemm.cu` over `kernels/tensor_ops.cuh`, and
//! `kernels/gemm_simt.cu` for the CUDA cores): the choice between the tensor-core kernels, the
//! few-rows kernel and the SIMT one, the geometry, the launch.

use cudarc::driver::{DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg};
use strata_core::kernel::{Activation, Backend, Layout, Matmul2d, MatmulMode, Scales, TensorMut, TensorRef};
use strata_core::{DType, Error, Result};

use crate::{Cuda, CudaBuffer, ELEMENTWISE, c, exprs};

pub(crate) const TENSOR_OPS: &str = include_str!("../kernels/tensor_ops.cuh");
const GEMM: &str = include_str!("../kernels/gemm.cu");
const GEMM_SIMT: &str = include_str!("../kernels/gemm_simt.cu");
const MAX_BATCH: usize = 6;

/// Mirrors `strata::MatmulGeometry` in `kernels/gemm.cu`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct MatmulGeometry {
    m: i64,
    n: i64,
    k: i64,
    batch: i64,
    nbatch: i32,
    accumulate: i32,
    has_bias: i32,
    has_scale: i32,
    batch_shape: [i64; MAX_BATCH],
    a_batch: [i64; MAX_BATCH],
    b_batch: [i64; MAX_BATCH],
    c_batch: [i64; MAX_BATCH],
    a_rs: i64,
    a_cs: i64,
    b_rs: i64,
    b_cs: i64,
    c_rs: i64,
    c_cs: i64,
    a_off: i64,
    b_off: i64,
    c_off: i64,
    bias_stride: i64,
    bias_off: i64,
    scale_a: u64,
    scale_b: u64,
    scale_a_stride: i64,
    scale_b_stride: i64,
}

// SAFETY: plain old data with the C layout of `strata::MatmulGeometry`.
unsafe impl DeviceRepr for MatmulGeometry {}

impl MatmulGeometry {
    /// The product of the output's first `to` columns.
    fn columns_to(&self, to: usize) -> MatmulGeometry {
        MatmulGeometry { n: to as i64, ..*self }
    }

    /// The product of the output's columns from `from` on: B, C, the bias and B's scales moved
    /// along with them.
    fn columns_from(&self, from: usize) -> MatmulGeometry {
        let j = from as i64;
        let scale_b = if self.has_scale != 0 { self.scale_b + 4 * (j * self.scale_b_stride) as u64 } else { 0 };
        MatmulGeometry {
            n: self.n - j,
            b_off: self.b_off + j * self.b_cs,
            c_off: self.c_off + j * self.c_cs,
            bias_off: self.bias_off + j * self.bias_stride,
            scale_b,
            ..*self
        }
    }
}

/// Which kernel runs a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    /// Tensor cores at warpgroup scope (`wgmma`, sm_90a): f16/bf16, A K-major; whether B is.
    /// Runs the persistent warp-specialized kernel fed by the copy engine (TMA) when both
    /// operands can be described by tensor maps, else the cp.async one.
    Warpgroup { right_k_major: bool },
    /// Tensor cores at warp scope (`mma.sync`): f16/bf16; whether A and B are K-major.
    Warp { left_k_major: bool, right_k_major: bool },
    /// Both operands K-major on sm_90a, f32 products that allow relaxed precision (tf32 tensor
    /// cores) or fp8 ones: the warp-specialized kernel (else the SIMT kernel).
    KMajor,
    /// CUDA cores: every other type or layout.
    Simt,
}

/// Bytes of dynamic shared memory the warpgroup kernel takes (`STRATA_WG_SMEM`).
const WG_SMEM: u32 = 4 * (128 + 256) * 64 * 2 + 1024;
/// Bytes of dynamic shared memory the warp-specialized kernel takes (`STRATA_WS_SMEM`): the
/// operand stages, the output's staging buffers, alignment, barriers and the tiles' bias; within
/// the 227 KiB a CTA may have on Hopper.
const WS_SMEM: u32 = 4 * (128 + 256) * 64 * 2 + 4 * 8192 + 1024 + 512 + 1024;
const _: () = assert!(WS_SMEM <= 227 << 10);

/// Mirrors `strata::tensor_ops::TensorMap`: a `CUtensorMap` passed by value.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(crate) struct TensorMap([u64; 16]);

// SAFETY: 128 bytes of plain data, laid out as the kernel's `TensorMap` parameter.
unsafe impl DeviceRepr for TensorMap {}

/// One operand of the warp-specialized kernel as the copy engine sees it: a 3-d tensor of
/// `inner` contiguous elements by `outer` rows (`row_stride` elements apart) by `batch`
/// matrices (`batch_stride` apart, or one matrix shared by the whole batch).
struct TmaOperand {
    t: DType,
    inner: usize,
    outer: usize,
    row_stride: i64,
    batch: Option<(usize, i64)>,
    /// The box the kernel loads or stores: (inner, outer) elements. Rows of 128 bytes are
    /// swizzled (the layout `wgmma` and the epilogue expect); narrower ones (a 32-column tile's
    /// 16-bit output) are not.
    boxed: (u32, u32),
}

impl TmaOperand {
    /// The tensor map over the f16/bf16/f32/fp8 matrix at `ptr` (the operand's offset applied), or
    /// `None` where the copy engine cannot address it (misaligned, strides not multiples of 16
    /// bytes, another type).
    fn encode(&self, ptr: u64) -> Option<TensorMap> {
        let w = u64::from(self.t.bits() / 8);
        let aligned = |bytes: i64| bytes > 0 && bytes % 16 == 0;
        let row = if self.outer == 1 { self.inner.next_multiple_of(16) as i64 } else { self.row_stride };
        if !ptr.is_multiple_of(16) || !aligned(row * w as i64) {
            return None;
        }
        let (count, bstride) = match self.batch {
            Some((count, stride)) => (count, stride),
            None => (1, row * self.outer as i64),
        };
        if !aligned(bstride * w as i64) {
            return None;
        }
        let dims = [self.inner as u64, self.outer as u64, count as u64];
        let strides = [row as u64 * w, bstride as u64 * w];
        encode_tiled(self.t, ptr, &dims, &strides, &[self.boxed.0, self.boxed.1, 1])
    }
}

/// A tensor map over the tensor at `ptr` (16-byte aligned) of `dims` (innermost first, at most
/// five), whose outer axes lie `strides` bytes apart (multiples of 16), loaded or stored in
/// boxes of `boxes` elements: swizzled by 128 bytes where a box's row is 128 bytes (the layout
/// `wgmma` and `Tile<T, ROWS, 64>` expect), else not. `None` where the driver refuses it.
pub(crate) fn encode_tiled(t: DType, ptr: u64, dims: &[u64], strides: &[u64], boxes: &[u32]) -> Option<TensorMap> {
    use cudarc::driver::sys;
    let rank = dims.len();
    if !(1..=5).contains(&rank) || strides.len() + 1 != rank || boxes.len() != rank {
        return None;
    }
    let w = u64::from(t.bits() / 8);
    let swizzle = if u64::from(boxes[0]) * w == 128 {
        sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B
    } else {
        sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_NONE
    };
    let ty = match t {
        DType::BF16 => sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
        DType::F16 => sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
        DType::F32 => sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_FLOAT32,
        DType::F8E4M3 | DType::F8E5M2 => sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_UINT8,
        _ => return None,
    };
    let ones = [1u32; 5];
    let mut map = std::mem::MaybeUninit::<sys::CUtensorMap>::zeroed();
    // SAFETY: `dims`, `boxes` and `ones` hold `rank` entries and `strides` rank - 1; `ptr` is a
    // live device allocation that holds the described tensor (the caller checked the operand
    // against its buffer). The driver checks alignment and bounds and returns an error.
    let r = unsafe {
        sys::cuTensorMapEncodeTiled(
            map.as_mut_ptr(),
            ty,
            rank as u32,
            ptr as *mut std::ffi::c_void,
            dims.as_ptr(),
            strides.as_ptr(),
            boxes.as_ptr(),
            ones.as_ptr(),
            sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
            swizzle,
            sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )
    };
    if r != sys::CUresult::CUDA_SUCCESS {
        return None;
    }
    // SAFETY: initialized by the successful call.
    Some(TensorMap(unsafe { map.assume_init() }.opaque))
}

/// The one stride that walks a flattened batch index through `strides` over `shape`
/// (`Some(0)`: the operand is shared by every batch entry), or `None` where no single stride
/// does (then the copy engine's 3-d view cannot describe the operand).
fn batch_stride(shape: &[i64], strides: &[i64]) -> Option<i64> {
    let mut first = None;
    let mut expected = 0;
    for (&n, &s) in shape.iter().zip(strides).rev().filter(|(n, _)| **n != 1) {
        match first {
            None => first = Some(s),
            Some(_) if s != expected => return None,
            Some(_) => {}
        }
        expected = s * n;
    }
    Some(first.unwrap_or(0))
}

/// The C type of a GEMM operand (fp8 types are GEMM operands only).
fn operand_c(t: DType) -> &'static str {
    match t {
        DType::F8E4M3 => "e4m3",
        DType::F8E5M2 => "e5m2",
        _ => c(t),
    }
}

/// The compute type of the SIMT kernel for input type `t`.
fn compute(t: DType) -> &'static str {
    match t {
        DType::F64 => "double",
        DType::I8 => "i32",
        _ => "float",
    }
}

/// One GEMM compilation unit: the headers, the activation `act` over compute type `ct` as
/// `STRATA_ACT`, and the kernel macro `invocation`.
fn unit(act: Activation, ct: &str, invocation: String) -> String {
    format!(
        "{ELEMENTWISE}{TENSOR_OPS}{GEMM}\n#undef STRATA_ACT\n#define STRATA_ACT(v) ({})\n{invocation}\n",
        exprs::activation(act, ct)
    )
}

pub(crate) fn tc_source(t: DType, out: DType, act: Activation, left_k_major: bool, right_k_major: bool) -> String {
    unit(act, "float", format!("STRATA_GEMM_TC({}, {}, {left_k_major}, {right_k_major})", c(t), c(out)))
}

pub(crate) fn wg_source(t: DType, out: DType, act: Activation, right_k_major: bool) -> String {
    unit(act, "float", format!("STRATA_GEMM_WG({}, {}, {right_k_major})", c(t), c(out)))
}

/// How the warp-specialized kernel runs one product (its compile-time parameters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WsConfig {
    /// B is K-major (stored n × k), else MN-major.
    pub right_k_major: bool,
    /// CTAs per cluster, 1 or 2 (pairs share B's tile).
    pub cluster: usize,
    /// Ping-pong consumers (a 64-row tile each, taking turns) rather than cooperative ones (one
    /// 128-row tile together).
    pub pingpong: bool,
    /// Columns of a tile: 256, or 128 or 64 (16-bit and fp8 types without clusters), or 32
    /// (those on ping-pong tiles with B K-major), which make more tiles and keep more stages in
    /// flight in the same shared memory (8, 12 and 16 of 64 rows; [`WsConfig::exists`]); or 224
    /// (fp8 without clusters), where their waves are fuller than 256's ([`WsConfig::rule`]).
    pub cols: usize,
}

/// The environment's overrides of [`WsConfig::choose`]'s rules, to compare and test:
/// `STRATA_GEMM_SCHEDULE=coop|pingpong`, `STRATA_GEMM_CLUSTER=1|2` and
/// `STRATA_GEMM_TILE_N=32|64|128|224|256` (a malformed width warns once and is ignored, as is a
/// narrow width beside `STRATA_GEMM_CLUSTER=2`: pairs of CTAs run 256-column tiles only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Forced {
    schedule: Option<bool>,
    pairs: Option<bool>,
    cols: Option<usize>,
}

impl Forced {
    fn from_env() -> Forced {
        let schedule = match std::env::var("STRATA_GEMM_SCHEDULE").as_deref() {
            Ok("pingpong") => Some(true),
            Ok("coop") => Some(false),
            _ => None,
        };
        let pairs = match std::env::var("STRATA_GEMM_CLUSTER").as_deref() {
            Ok("1") => Some(false),
            Ok("2") => Some(true),
            _ => None,
        };
        let cols = match std::env::var("STRATA_GEMM_TILE_N").as_deref() {
            Ok(v @ ("32" | "64" | "128" | "224" | "256")) => v.parse().ok(),
            Ok(v) => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    eprintln!("strata-cuda: STRATA_GEMM_TILE_N={v} is not 32, 64, 128, 224 or 256; the rules choose")
                });
                None
            }
            Err(_) => None,
        };
        if pairs == Some(true) && cols.is_some_and(|c| c != 256) {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                eprintln!("strata-cuda: STRATA_GEMM_CLUSTER=2 runs 256-column tiles; STRATA_GEMM_TILE_N is ignored")
            });
        }
        Forced { schedule, pairs, cols }
    }
}

impl WsConfig {
    /// The choice for a `batch` of m × n products of type `t` on `sms` multiprocessors, as the
    /// environment may force it ([`Forced`]).
    fn choose(m: usize, n: usize, batch: usize, sms: usize, t: DType, right_k_major: bool) -> WsConfig {
        WsConfig::rule(m, n, batch, sms, t, right_k_major, Forced::from_env())
    }

    /// The rules, given what is forced.
    ///
    /// 16-bit and fp8 products choose the tile's width by how many tiles there are (measured
    /// on an H200 over 16 shapes × 6 tiles, BENCHMARKS.md "Tiles of 64 and 128 columns"): the
    /// schedule and width whose tiles fill at least three quarters of the multiprocessors, the
    /// widest such, but 128 columns rather than 256 where their waves are fuller by a tenth
    /// (tiles over waves × multiprocessors; 64-column tiles run whole waves at 0.5–0.8 of
    /// cuBLAS, so they serve only to fill the GPU at all); cooperative consumers (128 rows)
    /// first, ping-pong (64) where m ≤ 64 or where even the cooperative 64-column tiles do not
    /// fill; the narrowest where none do (then split-K adds units). So 128 × 4096 × 4096 runs
    /// 128 tiles of 64 × 64 (bf16: 0.65 → 0.90 of cuBLAS), 512 × 4096 × 4096 128 of 128 × 128
    /// (0.77 → 0.92), 1024 × 14336 × 4096 896 of 128 × 128 (0.86 → 0.89; 16-bit ones are now
    /// cut instead, [`last_wave_cut`]), and the large
    /// squares their 128 × 256 tiles as before. Ping-pong tiles with B K-major also come 32
    /// columns wide, as cuBLAS runs bf16 64 × 4096 × 4096 (128 tiles of 64 × 32 with sixteen
    /// stages, where 64 columns make 64 tiles and split k in two: 0.79 → 0.93 of cuBLAS).
    ///
    /// fp8 products take 224-column tiles where they make more than one wave and the model of
    /// waves × [`WsConfig::tile_cost`] says they beat the choice above by a twentieth (fp8
    /// 1024 × 14336 × 4096: 0.89 → 0.91–0.92 of cuBLASLt, 512 × 14336 × 4096: 0.96 →
    /// 1.05–1.06; H200, BENCHMARKS.md).
    ///
    /// fp8 products on 256-column tiles run in CTA pairs wherever there are two rows of tiles:
    /// their k steps go twice as fast, so fetching B once for two tiles matters most there
    /// (16-bit pairs measured no faster: 0.95 of cuBLAS either way at bf16 8192³ on an H200).
    /// Narrow tiles run alone.
    ///
    /// tf32 (and any product with pairs forced) keeps 256 columns and takes cooperative
    /// consumers, unless ping-pong's half-height tiles fill the last wave of tiles better:
    /// ping-pong runs whole waves at about 0.9 of the cooperative speed (twice the loads from L2
    /// per product), but where the cooperative tiles leave most of the GPU idle (fp8 128 × 14336
    /// on wide tiles, before fp8 had narrow ones: 56 for 132 multiprocessors) it took fp8 from
    /// 0.48 to 0.75, and with m ≤ 64 it wastes half as many rows.
    fn rule(m: usize, n: usize, batch: usize, sms: usize, t: DType, right_k_major: bool, f: Forced) -> WsConfig {
        let pairs = f.pairs.unwrap_or(strata_core::kernel::is_fp8(t));
        let sms = sms.max(1);
        let units =
            |pingpong: bool, cols: usize| m.div_ceil(if pingpong { 64 } else { 128 }) * n.div_ceil(cols) * batch;
        let waves = |units: usize| units.div_ceil(sms);
        // Pairs need a second row of tiles.
        let paired = |ws: WsConfig| WsConfig { cluster: if m > ws.rows() && pairs { 2 } else { 1 }, ..ws };
        let alone = WsConfig { right_k_major, cluster: 1, pingpong: false, cols: 256 };
        let narrow = WsConfig { cols: 64, ..alone };
        if !narrow.exists(t) || f.pairs == Some(true) {
            let pingpong = f.schedule.unwrap_or_else(|| {
                m <= 64 || waves(2 * units(false, 256)) as f64 * 0.5 / 0.9 < waves(units(false, 256)) as f64
            });
            return paired(WsConfig { pingpong, ..alone });
        }
        // The widths the kernel has for this schedule, widest first (or the one forced, where it
        // has it; else 64).
        let widths = |pingpong: bool| {
            let has = |&c: &usize| WsConfig { pingpong, cols: c, ..alone }.exists(t);
            let all: Vec<usize> = f.cols.map_or(vec![256, 128, 64, 32], |c| vec![c]).into_iter().filter(has).collect();
            if all.is_empty() { vec![64] } else { all }
        };
        let fullness = |u: usize| u as f64 / (waves(u) * sms) as f64;
        let width = |pingpong: bool| {
            let widths = widths(pingpong);
            let fills = |c: usize| units(pingpong, c) * 4 >= sms * 3;
            let pick = widths.iter().copied().find(|&c| fills(c))?;
            let better = |c: usize| fullness(units(pingpong, c)) > fullness(units(pingpong, pick)) + 0.1;
            Some(if pick == 256 && widths.contains(&128) && better(128) { 128 } else { pick })
        };
        let narrowest = |pingpong: bool| widths(pingpong).last().copied().unwrap_or(64);
        let (pingpong, cols) = match f.schedule {
            Some(pp) => (pp, width(pp).unwrap_or_else(|| narrowest(pp))),
            // (A width forced that cooperative tiles do not have goes to ping-pong.)
            None => match (m > 64 && f.cols.is_none_or(|c| WsConfig { cols: c, ..alone }.exists(t)))
                .then(|| width(false))
                .flatten()
            {
                Some(cols) => (false, cols),
                None => (true, width(true).unwrap_or_else(|| narrowest(true))),
            },
        };
        let ws = WsConfig { pingpong, cols, ..alone };
        // fp8's 224-column tiles where they make more than one wave and the model of waves
        // ([`WsConfig::tile_cost`]) says they beat the choice by a twentieth: 1024 × 14336 makes
        // 512 of them, 3.9 waves of 132, where 256 columns make 448 (3.4 waves, the fourth 39 %
        // full) and 128 make 896 at 0.9 of the speed. (In one wave the model's gain did not show:
        // fp8 128 × 28672 × 4096 ran at 1.03 of cuBLASLt on either width.)
        let w224 = WsConfig { cols: 224, ..ws };
        let time = |ws: WsConfig| waves(units(ws.pingpong, ws.cols)) as f64 * ws.tile_cost();
        let several = units(false, 224) > sms;
        if f.cols.is_none() && !pingpong && w224.exists(t) && several && time(w224) < 0.95 * time(ws) {
            return w224;
        }
        if cols == 256 { paired(ws) } else { ws }
    }

    /// Whether the kernel has this configuration for operands of type `t`: 256 columns for
    /// every type; 128 and 64 for 16-bit and fp8 types with CTAs alone; 32 for those on 64-row
    /// tiles (ping-pong) with B K-major; 224 for fp8 with CTAs alone (fp8's B is always K-major).
    fn exists(self, t: DType) -> bool {
        let narrow = (t.bits() == 16 || strata_core::kernel::is_fp8(t)) && self.cluster == 1;
        match self.cols {
            256 => true,
            128 | 64 => narrow,
            32 => narrow && self.pingpong && self.right_k_major,
            224 => strata_core::kernel::is_fp8(t) && self.cluster == 1 && self.right_k_major,
            _ => false,
        }
    }

    /// How long one work unit takes, relative to a cooperative 128 × 256 tile: its share of
    /// that tile's products over the speed its tiles run whole waves at (H200, BENCHMARKS.md:
    /// 128 columns at 0.9 of the wide tiles' speed, 64 at 0.65, 32 at 0.5, 224 at 0.97 (a guess
    /// two shapes bear out); ping-pong's 64-row tiles at 0.9).
    fn tile_cost(self) -> f64 {
        let speed = match self.cols {
            256 => 1.0,
            224 => 0.97,
            128 => 0.9,
            64 => 0.65,
            _ => 0.5,
        } * if self.pingpong { 0.9 } else { 1.0 };
        (self.rows() * self.cols) as f64 / (128.0 * 256.0) / speed
    }

    /// Rows of A (and of C) in one work unit's tile.
    fn rows(self) -> usize {
        if self.pingpong { 64 } else { 128 }
    }

    /// Output tiles of `g`'s product.
    fn tiles(self, g: &MatmulGeometry) -> usize {
        (g.m as usize).div_ceil(self.rows()) * (g.n as usize).div_ceil(self.cols) * g.batch as usize
    }

    /// Whether the environment forces the schedule, the clusters or the tile's width (then
    /// nothing is tuned).
    fn forced() -> bool {
        ["STRATA_GEMM_SCHEDULE", "STRATA_GEMM_CLUSTER", "STRATA_GEMM_TILE_N"]
            .iter()
            .any(|v| std::env::var_os(v).is_some())
    }
}

/// The warp-specialized kernel for operand types `(left, right)` (equal but for fp8 pairs).
pub(crate) fn ws_source((t, tb): (DType, DType), out: DType, act: Activation, ws: WsConfig) -> String {
    let (a, b, o) = (operand_c(t), operand_c(tb), c(out));
    let WsConfig { right_k_major, cluster, pingpong, cols } = ws;
    unit(act, "float", format!("STRATA_GEMM_WS({a}, {b}, {o}, {right_k_major}, {cluster}, {pingpong}, {cols})"))
}

pub(crate) fn reduce_source(out: DType, act: Activation) -> String {
    unit(act, "float", format!("STRATA_GEMM_SPLITK_REDUCE({})", c(out)))
}

/// The SIMT kernel (`kernels/gemm_simt.cu`) for operand types `(t, tb)` on `tile` × `tile` tiles
/// of C (64 or 128: [`simt_tile`]).
pub(crate) fn simt_source((t, tb): (DType, DType), out: DType, act: Activation, tile: usize) -> String {
    let ct = compute(t);
    let (a, b, o) = (operand_c(t), operand_c(tb), c(out));
    let invocation = format!("{GEMM_SIMT}\nSTRATA_GEMM_SIMT({a}, {b}, {ct}, {o}, {tile}, {tile})");
    unit(act, ct, invocation)
}

/// The SIMT kernel's tile for `g` on `sms` multiprocessors: 128 × 128 (eight by eight outputs
/// a thread) where those tiles fill every multiprocessor at least once, else 64 × 64 (four by
/// four), whose more numerous CTAs keep more multiprocessors busy on smaller products.
fn simt_tile(g: &MatmulGeometry, sms: usize) -> usize {
    let big = (g.m as usize).div_ceil(128) * (g.n as usize).div_ceil(128) * g.batch as usize;
    if big >= sms { 128 } else { 64 }
}

/// Whether a matrix with row stride `rs` and column stride `cs` (for rows × cols) can be
/// fetched by 16-byte copies along its unit-stride dimension: returns whether it is
/// row-major (`Some(true)`), column-major (`Some(false)`), or neither.
fn unit_major(rs: i64, cs: i64, rows: usize, cols: usize, base: &[i64]) -> Option<bool> {
    let aligned = |v: i64| v.rem_euclid(8) == 0;
    if !base.iter().all(|&b| aligned(b)) {
        return None;
    }
    if cs == 1 && (aligned(rs) || rows == 1) && rs >= 0 {
        Some(true)
    } else if rs == 1 && (aligned(cs) || cols == 1) && cs >= 0 {
        Some(false)
    } else {
        None
    }
}

pub(crate) fn matmul2d(
    cuda: &Cuda,
    desc: &Matmul2d,
    left: TensorRef<'_, CudaBuffer>,
    right: TensorRef<'_, CudaBuffer>,
    bias: Option<TensorRef<'_, CudaBuffer>>,
    scales: Option<Scales<'_, CudaBuffer>>,
    out: TensorMut<'_, CudaBuffer>,
) -> Result<()> {
    const OP: &str = "matmul2d";
    desc.validate_call(&left, &right, bias.as_ref(), scales.as_ref(), &out)?;
    let (m, n, k) = (desc.m, desc.n, desc.k);
    let nd = out.layout.ndim();
    let nbatch = nd - 2;
    if nbatch > MAX_BATCH {
        return Err(Error::InvalidArgument {
            op: OP,
            message: format!("{nbatch} batch axes: the CUDA kernel takes at most {MAX_BATCH}"),
        });
    }
    let two = |l: &Layout, t: bool| -> (i64, i64) {
        let s = l.strides();
        let (r, c) = (s[s.len() - 2] as i64, s[s.len() - 1] as i64);
        if t { (c, r) } else { (r, c) }
    };
    let (a_rs, a_cs) = two(left.layout, desc.transpose_left);
    let (b_rs, b_cs) = two(right.layout, desc.transpose_right);
    let (c_rs, c_cs) = two(out.layout, false);
    let mut g = MatmulGeometry {
        m: m as i64,
        n: n as i64,
        k: k as i64,
        batch: out.layout.shape()[..nbatch].iter().product::<usize>() as i64,
        nbatch: nbatch as i32,
        accumulate: i32::from(desc.mode == MatmulMode::MultiplyAccumulate),
        has_bias: i32::from(bias.is_some()),
        a_rs,
        a_cs,
        b_rs,
        b_cs,
        c_rs,
        c_cs,
        a_off: left.layout.offset() as i64,
        b_off: right.layout.offset() as i64,
        c_off: out.layout.offset() as i64,
        ..Default::default()
    };
    for d in 0..nbatch {
        g.batch_shape[d] = out.layout.shape()[d] as i64;
        g.a_batch[d] = left.layout.strides()[d] as i64;
        g.b_batch[d] = right.layout.strides()[d] as i64;
        g.c_batch[d] = out.layout.strides()[d] as i64;
    }
    if let Some(b) = &bias {
        (g.bias_stride, g.bias_off) = (b.layout.strides()[0] as i64, b.layout.offset() as i64);
    }
    // The scale operands' addresses (their offsets applied) go in the geometry; the read
    // guards keep them ordered on this stream until the launches are queued.
    let mut _scale_guards = Vec::new();
    if let Some(s) = &scales {
        g.has_scale = 1;
        for (t, ptr, stride) in
            [(&s.left, &mut g.scale_a, &mut g.scale_a_stride), (&s.right, &mut g.scale_b, &mut g.scale_b_stride)]
        {
            let (p, guard) = t.buffer.slice().device_ptr(&cuda.stream);
            *ptr = p + 4 * t.layout.offset() as u64;
            *stride = t.layout.strides().first().map_or(0, |&s| s as i64);
            _scale_guards.push(guard);
        }
    }
    let types = (left.dtype, right.dtype);
    if g.batch == 0 || m == 0 || n == 0 {
        return Ok(());
    }
    let act = desc.epilogue.activation();
    let mut a_base = vec![g.a_off];
    a_base.extend(&g.a_batch[..nbatch]);
    let mut b_base = vec![g.b_off];
    b_base.extend(&g.b_batch[..nbatch]);
    let layouts = (unit_major(a_rs, a_cs, m, k, &a_base), unit_major(b_rs, b_cs, k, n, &b_base));
    let path = choose(cuda.arch(), left.dtype, desc.relaxed_precision, layouts);
    // A bias-less kernel still takes a pointer; it is never read.
    let dummy;
    let bias_buf = match &bias {
        Some(b) => b.buffer,
        None => {
            dummy = cuda.alloc_output(16)?;
            &dummy
        }
    };
    let few = FewRows::choose(cuda, &g, types, layouts);
    let specialized = match path {
        _ if few.is_some() => None,
        Path::Warpgroup { right_k_major } if kernel_override().as_deref() != Some("wg") => Some(right_k_major),
        Path::KMajor => Some(true),
        _ => None,
    };
    if let Some(right_k_major) = specialized {
        let (a_ptr, _a_read) = left.buffer.slice().device_ptr(&cuda.stream);
        let (b_ptr, _b_read) = right.buffer.slice().device_ptr(&cuda.stream);
        let ptrs = (a_ptr, b_ptr);
        let sms = cuda.sms as usize;
        let rule = Plan::choose(&g, sms, left.dtype, right_k_major);
        if tma_maps(&g, nbatch, left.dtype, ptrs, rule.ws).is_some() {
            let run = WsRun { g: &g, nbatch, types, act, ptrs, bias: bias_buf };
            let plan = if cuda.tuning() && !WsConfig::forced() { tuned(cuda, &run, rule, &out)? } else { rule };
            // A kept plan was chosen for operands of this shape, not these strides: where the
            // copy engine cannot fetch these as it would, the rule's plan runs.
            let plan = if tma_maps(&g, nbatch, left.dtype, ptrs, plan.ws).is_some() { plan } else { rule };
            if plan == rule
                && !cuda.tuning()
                && let Some((cut, wide)) = last_wave_cut(&g, sms, left.dtype, right_k_major)
            {
                let (head, tail) = (g.columns_to(cut), g.columns_from(cut));
                let tail_plan = Plan::choose(&tail, sms, left.dtype, right_k_major);
                if tma_maps(&head, nbatch, left.dtype, ptrs, wide).is_some()
                    && tma_maps(&tail, nbatch, left.dtype, ptrs, tail_plan.ws).is_some()
                {
                    WsRun { g: &head, ..run }.launch(cuda, Plan { ws: wide, splits: 1 }, out.dtype, out.buffer)?;
                    return WsRun { g: &tail, ..run }.launch(cuda, tail_plan, out.dtype, out.buffer);
                }
            }
            return run.launch(cuda, plan, out.dtype, out.buffer);
        }
    }
    let tiles = |f, (bm, bn): (usize, usize), smem| {
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(bn) as u32, m.div_ceil(bm) as u32, g.batch.min(65535) as u32),
            block_dim: (256, 1, 1),
            shared_mem_bytes: smem,
        };
        if cfg.grid_dim.1 > 65535 {
            return Err(Error::InvalidArgument {
                op: OP,
                message: format!("m = {m} exceeds the grid the CUDA kernel uses"),
            });
        }
        Ok((f, cfg))
    };
    let (f, cfg) = match (few, path) {
        (Some(p), _) => {
            let key = format!("gemm skinny {} {} {act:?} {p:?}", left.dtype, out.dtype);
            let f = cuda.kernel(&key, || skinny_source(left.dtype, out.dtype, act, p))?;
            let grid_dim = (n.div_ceil(16 * p.groups as usize) as u32, g.batch.min(65535) as u32, 1);
            (f, LaunchConfig { grid_dim, block_dim: (32 * p.groups * p.parts, 1, 1), shared_mem_bytes: 0 })
        }
        (None, Path::Warpgroup { right_k_major }) => {
            let key = format!("gemm wg {} {} {act:?} {right_k_major}", left.dtype, out.dtype);
            let f = cuda.kernel_with_smem(&key, WG_SMEM, || wg_source(left.dtype, out.dtype, act, right_k_major))?;
            tiles(f, (128, 256), WG_SMEM)?
        }
        (None, Path::Warp { left_k_major, right_k_major }) => {
            let key = format!("gemm tc {} {} {act:?} {left_k_major} {right_k_major}", left.dtype, out.dtype);
            let f = cuda.kernel(&key, || tc_source(left.dtype, out.dtype, act, left_k_major, right_k_major))?;
            tiles(f, (128, 128), 0)?
        }
        (None, Path::Simt | Path::KMajor) => {
            let t = simt_tile(&g, cuda.sms as usize);
            let key = format!("gemm simt {} {} {} {act:?} {t}", left.dtype, right.dtype, out.dtype);
            tiles(cuda.kernel(&key, || simt_source(types, out.dtype, act, t))?, (t, t), 0)?
        }
    };
    let mut b = cuda.stream.launch_builder(&f);
    b.arg(left.buffer.slice()).arg(right.buffer.slice()).arg(bias_buf.slice()).arg(out.buffer.slice_mut()).arg(&g);
    // SAFETY: parameters as `STRATA_GEMM_*` declare them; every operand was checked against its
    // buffer, and the tensor-core path only runs on 16-byte aligned unit-stride matrices.
    cuda.timed(OP, || unsafe { b.launch(cfg) })
}

/// How the few-rows kernel (`gemm_skinny`) runs a product: `mt` tiles of eight rows of A;
/// blocks of `u` k steps of 32 loaded at once; `groups` × `parts` warps a CTA (groups of 16
/// columns of C, each splitting k in `parts`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FewRows {
    mt: u32,
    u: u32,
    groups: u32,
    parts: u32,
}

impl FewRows {
    /// The kernel's plan for `g`, or `None` where it does not take the product. It takes
    /// m ≤ 16 rows of 16-bit operands of one type, both K-major (A row-major, B stored n × k
    /// as a `Linear` layer's weight is), k a multiple of 8, on GPUs with `mma.sync`. Such
    /// products are bound by reading B once; the tiled kernels spend most of each tile's rows
    /// on nothing and, where B has few columns, split k among their few tiles and sum the parts
    /// in a second pass. On an H200 this kernel took 16 × 4096 × 4096 from 0.69 to 1.15 of
    /// cuBLAS (BENCHMARKS.md). On Hopper, where the tiled kernel's 256-column tiles alone fill
    /// three quarters of the multiprocessors (16 × 28672 × 8192: 112 tiles), its copy engine
    /// streams B faster (0.96–1.01 of cuBLAS against 0.91–0.95; at m = 1 the two are even), so
    /// it keeps those.
    ///
    /// Eight warps a CTA on 16 columns of C, each taking every eighth pair of k steps: the best
    /// of seventeen shapes of the kernel measured on the H200. `STRATA_GEMM_SKINNY=0` turns the
    /// kernel off and `=1` on wherever it can run (to compare), `=U,GROUPS,PARTS` also sets its
    /// shape (to tune); `STRATA_GEMM_KERNEL` (a tiled kernel named) turns it off, even when
    /// forced.
    fn choose(
        cuda: &Cuda,
        g: &MatmulGeometry,
        types: (DType, DType),
        layouts: (Option<bool>, Option<bool>),
    ) -> Option<FewRows> {
        let mt = if g.m <= 8 { 1 } else { 2 };
        let default = FewRows { mt, u: 2, groups: 1, parts: 8 };
        let setting = std::env::var("STRATA_GEMM_SKINNY").ok();
        let (forced, plan) = match setting.as_deref() {
            None => (None, default),
            Some("0") => (Some(false), default),
            Some("1") => (Some(true), default),
            Some(v) => {
                let d: Vec<u32> = v.split(',').filter_map(|x| x.parse().ok()).collect();
                match *d.as_slice() {
                    [u, groups, parts]
                        if (1..=8).contains(&u)
                            && groups > 0
                            && groups.checked_mul(parts).is_some_and(|w| (1..=32).contains(&w)) =>
                    {
                        (Some(true), FewRows { mt, u, groups, parts })
                    }
                    _ => {
                        static WARNED: std::sync::Once = std::sync::Once::new();
                        WARNED.call_once(|| {
                            eprintln!(
                                "strata-cuda: STRATA_GEMM_SKINNY={v} is not 0, 1 or U,GROUPS,PARTS (U of 1 to 8, at \
                                 most 32 warps); the rules choose"
                            )
                        });
                        (None, default)
                    }
                }
            }
        };
        let wide =
            cuda.arch() == "sm_90a" && (g.n as usize).div_ceil(256) * g.batch as usize * 4 >= cuda.sms as usize * 3;
        let on = forced.unwrap_or(!wide) && kernel_override().is_none();
        let takes = on
            && crate::has_mma_sync(cuda.arch())
            && types.0 == types.1
            && matches!(types.0, DType::F16 | DType::BF16)
            && layouts == (Some(true), Some(false))
            && g.m <= 16
            && g.k > 0
            && g.k % 8 == 0
            && g.has_scale == 0;
        takes.then_some(plan)
    }
}

fn skinny_source(t: DType, out: DType, act: Activation, p: FewRows) -> String {
    let FewRows { mt, u, groups, parts } = p;
    unit(act, "float", format!("STRATA_GEMM_SKINNY({}, {}, {mt}, {u}, {groups}, {parts})", c(t), c(out)))
}

/// `STRATA_GEMM_KERNEL`: `warp` keeps products (and implicit-GEMM convolutions and attention) off
/// the warpgroup kernels, `wg` off the warp-specialized one (to test or time the others).
pub(crate) fn kernel_override() -> Option<String> {
    std::env::var("STRATA_GEMM_KERNEL").ok()
}

/// The tensor maps of the warp-specialized kernel run as `ws` says: A (K-major, boxes of a work
/// unit's rows), B (K-major or MN-major; a K-major box holds the rows one CTA of the cluster
/// fetches) and whether each walks the batch, or `None` where the copy engine cannot describe
/// them.
fn tma_maps(g: &MatmulGeometry, nbatch: usize, t: DType, (a_ptr, b_ptr): (u64, u64), ws: WsConfig) -> Option<Maps> {
    let shape = &g.batch_shape[..nbatch];
    let (sa, sb) = (batch_stride(shape, &g.a_batch[..nbatch])?, batch_stride(shape, &g.b_batch[..nbatch])?);
    if g.batch > i64::from(i32::MAX) || g.k == 0 {
        return None;
    }
    let walk = |s: i64| (s != 0).then_some((g.batch as usize, s));
    let (m, n, k) = (g.m as usize, g.n as usize, g.k as usize);
    // Boxes 128 bytes deep in k (64 16-bit elements, 32 f32 ones, 128 fp8 ones); an MN-major B
    // in blocks of 64 × 64.
    let (w, depth) = (u64::from(t.bits() / 8), 128 / (t.bits() / 8));
    let a = TmaOperand { t, inner: k, outer: m, row_stride: g.a_rs, batch: walk(sa), boxed: (depth, ws.rows() as u32) };
    let b = if ws.right_k_major {
        let rows = (ws.cols / ws.cluster) as u32;
        TmaOperand { t, inner: k, outer: n, row_stride: g.b_cs, batch: walk(sb), boxed: (depth, rows) }
    } else {
        TmaOperand { t, inner: n, outer: k, row_stride: g.b_rs, batch: walk(sb), boxed: (64, 64) }
    };
    let a_map = a.encode(a_ptr + g.a_off as u64 * w)?;
    let b_map = b.encode(b_ptr + g.b_off as u64 * w)?;
    Some(Maps { a: a_map, b: b_map, a_batched: i32::from(sa != 0), b_batched: i32::from(sb != 0) })
}

/// The output's tensor map for the copy engine's stores (chunks of 64 rows × 128 bytes, or of
/// 32 columns where 128 bytes of them do not divide the tile's `cols`), or `None` where C must
/// be written element by element (accumulating, strided, misaligned).
fn tma_output(g: &MatmulGeometry, nbatch: usize, t: DType, c_ptr: u64, cols: usize) -> Option<TensorMap> {
    let sc = batch_stride(&g.batch_shape[..nbatch], &g.c_batch[..nbatch])?;
    if g.accumulate != 0 || g.c_cs != 1 || (sc == 0 && g.batch > 1) {
        return None;
    }
    let w = u64::from(t.bits() / 8);
    debug_assert!(cols.is_multiple_of(32), "{cols}-column tiles: chunks of 32 columns do not divide them");
    let c = TmaOperand {
        t,
        inner: g.n as usize,
        outer: g.m as usize,
        row_stride: g.c_rs,
        batch: (sc != 0).then_some((g.batch as usize, sc)),
        // (32 columns where 128 bytes of them do not divide the tile: the kernel's chunks, `CW`
        // in gemm.cu; both must divide the tile.)
        boxed: (if cols.is_multiple_of(128 / w as usize) { 128 / w as u32 } else { 32 }, 64),
    };
    c.encode(c_ptr + g.c_off as u64 * w)
}

/// Where to cut the output's columns so that those before the cut run whole waves of wide
/// tiles (128 × 256) and the rest run as the rules choose for them alone, in a second launch:
/// `(cut, the wide tiles' configuration)`, where a model of the two launches says they beat the
/// rule's one. That is wave quantization: 1024 × 14336 × 4096 makes 448 wide tiles, whose
/// fourth wave on 132 multiprocessors is 39 % full; the rule's 896 tiles of 128 columns fill
/// seven waves to 97 % but run at 0.9 of the wide tiles' speed; cut at 49 · 256 columns, 392
/// wide tiles fill three waves (but for four multiprocessors) and 112 narrow ones one. (A
/// lighter stream-K: no partial tiles, no fix-up.) The model counts waves, each as long as a
/// work unit's tile takes ([`WsConfig::tile_cost`]), and charges the second launch a fixed
/// time: 0.15 of a wave of 64 k steps, the one shape measured, so more of a shorter wave.
///
/// Only where it was measured and checked on an H200: single 16-bit products (no batch), B
/// stored n × k, no bias, not accumulating, schedule and width not forced. There the cut took
/// bf16 1024 × 14336 × 4096 from 0.91 to 0.93 of cuBLAS, its result equal to cuBLAS's; fp8 went
/// from 0.89 to 0.85 (its k steps are twice as fast, so the second launch and the narrow
/// tiles' fixed cost weigh twice as much; BENCHMARKS.md).
fn last_wave_cut(g: &MatmulGeometry, sms: usize, t: DType, right_k_major: bool) -> Option<(usize, WsConfig)> {
    let plain = g.has_bias == 0 && g.accumulate == 0 && right_k_major;
    if g.batch != 1 || t.bits() != 16 || !plain || WsConfig::forced() {
        return None;
    }
    let (m, n) = (g.m as usize, g.n as usize);
    let time = |ws: WsConfig, n: usize| {
        let units = m.div_ceil(ws.rows() * ws.cluster) * n.div_ceil(ws.cols);
        units.div_ceil((sms / ws.cluster).max(1)) as f64 * ws.tile_cost()
    };
    let force_wide = Forced { schedule: Some(false), pairs: None, cols: Some(256) };
    let wide = WsConfig::rule(m, n, 1, sms, t, right_k_major, force_wide);
    if wide.cols != 256 || wide.pingpong {
        return None;
    }
    let (slots, per_column) = ((sms / wide.cluster).max(1), m.div_ceil(wide.rows() * wide.cluster));
    let full = per_column * n.div_ceil(256) / slots;
    let cut = full * slots / per_column * 256;
    if full < 2 || cut == 0 || cut >= n {
        return None;
    }
    let rule = WsConfig::rule(m, n, 1, sms, t, right_k_major, Forced::default());
    let tail = WsConfig::rule(m, n - cut, 1, sms, t, right_k_major, Forced::default());
    let second_launch = 0.15 * 64.0 / ksteps(g, t).max(1) as f64;
    (time(wide, cut) + time(tail, n - cut) + second_launch < time(rule, n)).then_some((cut, wide))
}

/// One warp-specialized product as it will run: the kernel's configuration and how many ways
/// its k steps are split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Plan {
    ws: WsConfig,
    splits: usize,
}

impl Plan {
    /// The rule's plan ([`WsConfig::choose`], [`split_k`]) for `g` on `sms` multiprocessors.
    fn choose(g: &MatmulGeometry, sms: usize, t: DType, right_k_major: bool) -> Plan {
        let (m, n, batch) = (g.m as usize, g.n as usize, g.batch as usize);
        let ws = WsConfig::choose(m, n, batch, sms, t, right_k_major);
        Plan { ws, splits: split_k(ws.tiles(g), ksteps(g, t), sms) }
    }

    /// Every plan the tuner times for `g`: both schedules, CTA pairs where there is a second row
    /// of tiles, narrower tiles (and fp8's 224-column ones) where the type has them, and each
    /// split of k that leaves at most two units a multiprocessor and at least four k steps a unit
    /// (the rule's plan always among them).
    fn candidates(g: &MatmulGeometry, sms: usize, t: DType, rule: Plan) -> Vec<Plan> {
        let mut out = vec![rule];
        let steps = ksteps(g, t);
        let shapes = [false, true]
            .into_iter()
            .flat_map(|pp| [(pp, 1, 256), (pp, 2, 256), (pp, 1, 224), (pp, 1, 128), (pp, 1, 64), (pp, 1, 32)]);
        for (pingpong, cluster, cols) in shapes {
            let ws = WsConfig { cluster, pingpong, cols, ..rule.ws };
            if (cluster == 2 && g.m as usize <= ws.rows()) || !ws.exists(t) {
                continue;
            }
            let tiles = ws.tiles(g);
            for s in [1, 2, 3, 4, 6, 8, 12, 16] {
                if s > 1 && (tiles * s > 2 * sms || s > (steps / 4).max(1)) {
                    continue;
                }
                let plan = Plan { ws, splits: steps.div_ceil(steps.div_ceil(s)) };
                if !out.contains(&plan) {
                    out.push(plan);
                }
            }
        }
        out
    }

    fn text(self) -> String {
        let ws = self.ws;
        format!("pingpong={} cluster={} splits={} cols={}", u8::from(ws.pingpong), ws.cluster, self.splits, ws.cols)
    }

    /// The plan `text` wrote, for a product whose B is K-major or not; `None` if it is not one.
    fn parse(text: &str, right_k_major: bool) -> Option<Plan> {
        let mut fields = text.split(' ').map(|f| f.split_once('='));
        let mut next = |name: &str| fields.next().flatten().filter(|(k, _)| *k == name)?.1.parse::<usize>().ok();
        let (pingpong, cluster, splits, cols) = (next("pingpong")?, next("cluster")?, next("splits")?, next("cols")?);
        let ok = pingpong <= 1
            && [1, 2].contains(&cluster)
            && (1..=64).contains(&splits)
            && (cols == 256 || (cluster == 1 && [32, 64, 128, 224].contains(&cols)));
        ok.then_some(Plan { ws: WsConfig { right_k_major, cluster, pingpong: pingpong == 1, cols }, splits })
    }
}

/// k steps of a warp-specialized tile (128 bytes of k each).
fn ksteps(g: &MatmulGeometry, t: DType) -> usize {
    (g.k as usize).div_ceil(128 * 8 / t.bits() as usize)
}

/// The operands of one warp-specialized product, for launching it by any plan.
struct WsRun<'a> {
    g: &'a MatmulGeometry,
    nbatch: usize,
    types: (DType, DType),
    act: Activation,
    ptrs: (u64, u64),
    bias: &'a CudaBuffer,
}

impl WsRun<'_> {
    /// Queues the product by `plan` into `out` (of type `t`, laid out as the geometry says).
    fn launch(&self, cuda: &Cuda, plan: Plan, t: DType, out: &mut CudaBuffer) -> Result<()> {
        let (g, ws, act, types) = (self.g, plan.ws, self.act, self.types);
        let maps = tma_maps(g, self.nbatch, types.0, self.ptrs, ws).ok_or_else(|| Error::InvalidArgument {
            op: "matmul2d",
            message: format!("no tensor maps for the operands as {ws:?} fetches them"),
        })?;
        let (m, n, cluster) = (g.m as usize, g.n as usize, ws.cluster);
        // Whole clusters, each walking cluster tiles (`cluster` tiles one above the other).
        let units = m.div_ceil(ws.rows() * cluster) * n.div_ceil(ws.cols) * g.batch as usize * plan.splits;
        let ctas = (units * cluster).min(cuda.sms as usize / cluster * cluster);
        let cfg = LaunchConfig { grid_dim: (ctas as u32, 1, 1), block_dim: (384, 1, 1), shared_mem_bytes: WS_SMEM };
        if plan.splits > 1 {
            return split_k_product(cuda, g, &maps, plan.splits, cfg, ws, (types, act), self.bias, t, out);
        }
        let key = format!("gemm ws {} {} {t} {act:?} {ws:?}", types.0, types.1);
        let f = cuda.kernel_with_smem(&key, WS_SMEM, || ws_source(types, t, act, ws))?;
        let (c_ptr, c_guard) = out.slice().device_ptr(&cuda.stream);
        let map_c = tma_output(g, self.nbatch, t, c_ptr, ws.cols);
        drop(c_guard);
        let c_tma = i32::from(map_c.is_some());
        let map_c = map_c.unwrap_or(TensorMap([0; 16]));
        let mut b = cuda.stream.launch_builder(&f);
        b.arg(&maps.a).arg(&maps.b).arg(&map_c).arg(&maps.a_batched).arg(&maps.b_batched).arg(&c_tma).arg(&1i32);
        b.arg(self.bias.slice()).arg(out.slice_mut()).arg(g);
        // SAFETY: parameters as `STRATA_GEMM_WS` declares them; the tensor maps describe
        // operands that were checked against their buffers, which stay alive (and ordered on
        // this stream by the read guards and the output's argument) until the launch is queued.
        cuda.timed("matmul2d", || unsafe { b.launch(cfg) })
    }
}

/// The tuned plan for `run` (timed now, on a scratch output, if no earlier choice is kept).
fn tuned(cuda: &Cuda, run: &WsRun<'_>, rule: Plan, out: &TensorMut<'_, CudaBuffer>) -> Result<Plan> {
    let g = run.g;
    let key = format!(
        "gemm {} {} sms={} {} {} {} m={} n={} k={} batch={} b_k_major={} accumulate={}",
        cuda.device_name().replace(['\t', '\n'], " "),
        cuda.arch(),
        cuda.sms,
        run.types.0,
        run.types.1,
        out.dtype,
        g.m,
        g.n,
        g.k,
        g.batch,
        rule.ws.right_k_major,
        g.accumulate,
    );
    let runnable = |p: &Plan| p.ws.exists(run.types.0);
    if let Some(plan) = cuda.tuner.get(&key).and_then(|t| Plan::parse(&t, rule.ws.right_k_major)).filter(runnable) {
        return Ok(plan);
    }
    let plans = Plan::candidates(g, cuda.sms as usize, run.types.0, rule);
    let mut scratch = cuda.alloc_output(out.buffer.bytes)?;
    let best = crate::tune::fastest(cuda, plans.len(), |i| run.launch(cuda, plans[i], out.dtype, &mut scratch))?;
    cuda.tuner.put(&key, &plans[best].text());
    Ok(plans[best])
}

/// How many work units share each output tile's k steps (split-K): enough to fill the GPU when
/// the tiles alone would leave half of its multiprocessors idle, with at least four k steps a
/// unit and none empty.
pub(crate) fn split_k(tiles: usize, ksteps: usize, sms: usize) -> usize {
    // (k = 0 has no steps to split; the warp-specialized kernel does not take it anyway.)
    if tiles * 2 > sms || ksteps == 0 {
        return 1;
    }
    let s = (sms / tiles).min(ksteps / 4).max(1);
    ksteps.div_ceil(ksteps.div_ceil(s))
}

/// A product whose k steps are split `splits` ways: the warp-specialized kernel stores fp32
/// partial tiles, then `STRATA_GEMM_SPLITK_REDUCE` sums them into C with the epilogue.
#[allow(clippy::too_many_arguments)]
fn split_k_product(
    cuda: &Cuda,
    g: &MatmulGeometry,
    maps: &Maps,
    splits: usize,
    cfg: LaunchConfig,
    ws: WsConfig,
    (types, act): ((DType, DType), Activation),
    bias: &CudaBuffer,
    t: DType,
    out: &mut CudaBuffer,
) -> Result<()> {
    let (m, n, batch) = (g.m as usize, g.n as usize, g.batch as usize);
    let ld = n.next_multiple_of(4);
    let mut part = cuda.alloc_output(batch * splits * m * ld * 4)?;
    let (p_ptr, guard) = part.slice().device_ptr(&cuda.stream);
    let rows = TmaOperand {
        t: DType::F32,
        inner: n,
        outer: m,
        row_stride: ld as i64,
        batch: Some((batch * splits, (m * ld) as i64)),
        boxed: (32, 64),
    };
    let map_p = rows.encode(p_ptr).ok_or_else(|| Error::InvalidArgument {
        op: "matmul2d",
        message: format!("no tensor map for a {batch}·{splits} × {m} × {n} split-K workspace"),
    })?;
    drop(guard);
    let key = format!("gemm ws {} {} f32 None {ws:?}", types.0, types.1);
    let f = cuda.kernel_with_smem(&key, WS_SMEM, || ws_source(types, DType::F32, Activation::None, ws))?;
    let partial = MatmulGeometry { has_bias: 0, accumulate: 0, has_scale: 0, ..*g };
    let mut b = cuda.stream.launch_builder(&f);
    let splits = splits as i32;
    b.arg(&maps.a).arg(&maps.b).arg(&map_p).arg(&maps.a_batched).arg(&maps.b_batched).arg(&1i32).arg(&splits);
    b.arg(bias.slice()).arg(part.slice_mut()).arg(&partial);
    // SAFETY: as for the single-pass launch; the workspace holds every partial tile.
    cuda.timed("matmul2d", || unsafe { b.launch(cfg) })?;
    let key = format!("gemm splitk {t} {act:?}");
    let f = cuda.kernel(&key, || reduce_source(t, act))?;
    let mut b = cuda.stream.launch_builder(&f);
    let ld = ld as i64;
    b.arg(part.slice()).arg(&splits).arg(&ld).arg(bias.slice()).arg(out.slice_mut()).arg(g);
    // A thread for every four columns of the workspace.
    let cfg = cuda.linear((batch * m * ld as usize / 4) as u64, 256, 16);
    // SAFETY: parameters as `STRATA_GEMM_SPLITK_REDUCE` declares them; the output was checked
    // against its buffer.
    cuda.timed("matmul2d", || unsafe { b.launch(cfg) })
}

/// What `tma_maps` finds.
struct Maps {
    a: TensorMap,
    b: TensorMap,
    a_batched: i32,
    b_batched: i32,
}

/// The kernel for a product on `arch` whose left operand is of type `t` (the right one's is the
/// same, or another fp8 type) and whose matrices are row-major (`Some(true)`), column-major
/// (`Some(false)`) or neither (`None`); `relaxed`: the descriptor allows lower precision (tf32
/// for f32).
pub(crate) fn choose(arch: &str, t: DType, relaxed: bool, (left, right): (Option<bool>, Option<bool>)) -> Path {
    let (Some(left_row_major), Some(right_row_major)) = (left, right) else { return Path::Simt };
    // A row-major left operand has K contiguous; a right operand has K contiguous when it is
    // column-major (stored n × k).
    let (left_k_major, right_k_major) = (left_row_major, !right_row_major);
    let warp_only = kernel_override().as_deref() == Some("warp");
    let k_major_kernel = (t == DType::F32 && relaxed) || strata_core::kernel::is_fp8(t);
    if k_major_kernel && arch == "sm_90a" && left_k_major && right_k_major && !warp_only {
        return Path::KMajor;
    }
    if !matches!(t, DType::F16 | DType::BF16) || !crate::has_mma_sync(arch) {
        return Path::Simt;
    }
    if arch == "sm_90a" && left_k_major && !warp_only {
        Path::Warpgroup { right_k_major }
    } else {
        Path::Warp { left_k_major, right_k_major }
    }
}

/// Every GEMM kernel the backend can generate (for the NVRTC compile test).
pub(crate) fn all_sources() -> Vec<String> {
    let mut units = Vec::new();
    for (t, outs) in [
        (DType::F16, &[DType::F16, DType::F32][..]),
        (DType::BF16, &[DType::BF16, DType::F32][..]),
        (DType::F32, &[DType::F32][..]),
        (DType::F64, &[DType::F64][..]),
        (DType::I8, &[DType::I32][..]),
    ] {
        for &o in outs {
            units.push(simt_source((t, t), o, Activation::None, 64));
            units.push(simt_source((t, t), o, Activation::None, 128));
            if matches!(t, DType::F16 | DType::BF16) {
                for (mt, u, groups, parts) in [(1, 2, 1, 8), (2, 4, 2, 4)] {
                    let p = FewRows { mt, u, groups, parts };
                    units.push(skinny_source(t, o, Activation::None, p));
                }
                for (lk, rk) in [(true, true), (true, false), (false, true), (false, false)] {
                    units.push(tc_source(t, o, Activation::None, lk, rk));
                }
            }
        }
    }
    // Each activation once per kernel kind: the expressions are the same for every type.
    for (t, o) in
        [(DType::F16, DType::F16), (DType::F16, DType::F32), (DType::BF16, DType::BF16), (DType::BF16, DType::F32)]
    {
        units.push(wg_source(t, o, Activation::None, true));
        units.push(wg_source(t, o, Activation::None, false));
        for (right_k_major, pingpong) in [(true, false), (false, true)] {
            units.push(ws_source(
                (t, t),
                o,
                Activation::None,
                WsConfig { right_k_major, cluster: 2, pingpong, cols: 256 },
            ));
            // The narrow tiles, each width with each layout of B and on both schedules (32
            // columns: ping-pong, B K-major).
            for cols in [64, 128] {
                let ws = WsConfig { right_k_major, cluster: 1, pingpong: (cols == 64) != pingpong, cols };
                units.push(ws_source((t, t), o, Activation::None, ws));
            }
            if right_k_major {
                let ws = WsConfig { right_k_major, cluster: 1, pingpong: true, cols: 32 };
                units.push(ws_source((t, t), o, Activation::None, ws));
            }
        }
        units.push(reduce_source(o, Activation::None));
    }
    // fp8: every pair, each output type once.
    let fp8 = [DType::F8E4M3, DType::F8E5M2];
    for (i, types) in fp8.iter().flat_map(|&l| fp8.map(|r| (l, r))).enumerate() {
        let o = [DType::F32, DType::BF16, DType::F16, DType::F32][i];
        let ws = WsConfig { right_k_major: true, cluster: 1 + i % 2, pingpong: i < 2, cols: 256 };
        units.push(ws_source(types, o, Activation::None, ws));
        // Each pair's narrow `wgmma` forms (n32, n64, n128) and n224.
        for (cols, pingpong) in [(32, true), (64, i % 2 == 0), (128, i % 2 == 1), (224, i % 2 == 0)] {
            let ws = WsConfig { right_k_major: true, cluster: 1, pingpong, cols };
            units.push(ws_source(types, o, Activation::None, ws));
        }
        units.push(simt_source(types, o, Activation::None, 64 << (i % 2)));
    }
    for act in Activation::ALL {
        units.push(simt_source((DType::F32, DType::F32), DType::F32, act, 128));
        units.push(wg_source(DType::BF16, DType::BF16, act, true));
        let ws = WsConfig { right_k_major: false, cluster: 1, pingpong: false, cols: 256 };
        units.push(ws_source((DType::BF16, DType::BF16), DType::BF16, act, ws));
        units.push(reduce_source(DType::BF16, act));
        let ws = WsConfig { right_k_major: true, cluster: 2, pingpong: true, cols: 256 };
        units.push(ws_source((DType::F32, DType::F32), DType::F32, act, ws));
        units.push(tc_source(DType::BF16, DType::BF16, act, true, false));
        let p = FewRows { mt: 2, u: 2, groups: 1, parts: 8 };
        units.push(skinny_source(DType::F16, DType::F32, act, p));
    }
    units
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the rules cut a product's columns for its last wave (132 multiprocessors): only
    /// where the narrow tiles' extra waves cost more than a second launch saves.
    #[test]
    fn the_last_wave_is_cut_off_where_it_pays() {
        let cut = |m: i64, n: i64, t: DType| {
            let g = MatmulGeometry { m, n, k: 4096, batch: 1, ..Default::default() };
            last_wave_cut(&g, 132, t, true).map(|(cut, ws)| (cut, ws.cluster))
        };
        let g = MatmulGeometry { m: 1024, n: 14336, k: 4096, batch: 1, ..Default::default() };
        // 448 wide tiles: three waves of 49 columns of tiles, then 112 tiles of 128 × 128 for
        // the last 1792 columns. Not for fp8 (slower on an H200) or tf32 (not measured).
        assert_eq!(cut(1024, 14336, DType::BF16), Some((49 * 256, 1)));
        assert_eq!(cut(1024, 14336, DType::F16), Some((49 * 256, 1)));
        assert_eq!(cut(1024, 14336, DType::F8E4M3), None);
        assert_eq!(cut(1024, 14336, DType::F32), None);
        // Whole waves already full enough, or too few of them for a cut to pay.
        for (m, n) in [(4096, 4096), (8192, 8192), (4096, 14336), (1024, 28672), (1024, 4096), (128, 14336)] {
            assert_eq!(cut(m, n, DType::BF16), None, "{m} x {n}");
        }
        // Nor, until checked on a GPU, a batch, a bias, accumulation or B stored k × n.
        for other in [
            MatmulGeometry { batch: 2, ..g },
            MatmulGeometry { has_bias: 1, ..g },
            MatmulGeometry { accumulate: 1, ..g },
        ] {
            assert_eq!(last_wave_cut(&other, 132, DType::BF16, true), None);
        }
        assert_eq!(last_wave_cut(&g, 132, DType::BF16, false), None);
        // A short k pays the second launch's fixed time out of shorter waves: cut at k = 2048,
        // not at 1024.
        assert!(last_wave_cut(&MatmulGeometry { k: 2048, ..g }, 132, DType::BF16, true).is_some());
        assert_eq!(last_wave_cut(&MatmulGeometry { k: 1024, ..g }, 132, DType::BF16, true), None);
    }

    /// The columns from a cut on: B, C, the bias and B's per-column scales move with them.
    #[test]
    fn a_cut_moves_every_column_operand() {
        let g = MatmulGeometry {
            n: 1000,
            b_cs: 64,
            c_cs: 1,
            c_off: 5,
            bias_stride: 2,
            bias_off: 3,
            has_scale: 1,
            scale_b: 4096,
            scale_b_stride: 1,
            ..Default::default()
        };
        let t = g.columns_from(256);
        assert_eq!((t.n, t.b_off, t.c_off, t.bias_off, t.scale_b), (744, 256 * 64, 261, 515, 4096 + 1024));
        assert_eq!(g.columns_to(256).n, 256);
        // Scales of the whole tensor (stride 0) stay where they are.
        let whole = MatmulGeometry { scale_b_stride: 0, ..g }.columns_from(256);
        assert_eq!(whole.scale_b, 4096);
    }

    /// The rules' tiles on an H200's 132 multiprocessors: the best of the six measured for each
    /// shape of BENCHMARKS.md's sweep.
    #[test]
    fn tiles_fill_the_gpu() {
        let shape = |m, n, t| {
            let ws = WsConfig::rule(m, n, 1, 132, t, true, Forced::default());
            (if ws.pingpong { "pingpong" } else { "coop" }, ws.cols)
        };
        let bf16 = |m, n| shape(m, n, DType::BF16);
        // Ping-pong where m ≤ 64 or the cooperative tiles cannot fill.
        assert_eq!(bf16(32, 4096), ("pingpong", 32));
        assert_eq!(bf16(64, 4096), ("pingpong", 32));
        assert_eq!(bf16(64, 14336), ("pingpong", 128));
        assert_eq!(bf16(128, 4096), ("pingpong", 64));
        // The widest cooperative tiles that fill.
        assert_eq!(bf16(256, 4096), ("coop", 64));
        assert_eq!(bf16(512, 4096), ("coop", 128));
        assert_eq!(bf16(128, 14336), ("coop", 128));
        assert_eq!(bf16(1024, 4096), ("coop", 256));
        assert_eq!(bf16(4096, 4096), ("coop", 256));
        assert_eq!(bf16(1024, 28672), ("coop", 256));
        // 448 wide tiles fill their four waves to 85 %, 896 narrow ones their seven to 97 %.
        assert_eq!(bf16(1024, 14336), ("coop", 128));
        // 224 wide tiles fill two waves as well as 448 of 128 columns do (85 %); 896 of 64
        // columns would fill seven better, but run at 0.8 of the wide tiles' speed.
        assert_eq!(bf16(512, 14336), ("coop", 256));
        // Too few even at 32 columns: the narrowest (and split-K on top).
        assert_eq!(bf16(64, 1024), ("pingpong", 32));
        // 32 columns only where B is K-major.
        let nn = WsConfig::rule(64, 1024, 1, 132, DType::BF16, false, Forced::default());
        assert_eq!((nn.pingpong, nn.cols), (true, 64));
        // The conformance suite's case of more 64-column tiles than multiprocessors.
        let ws = WsConfig::rule(256, 2240, 2, 132, DType::BF16, true, Forced::default());
        let tiles = 256usize.div_ceil(ws.rows()) * 2240usize.div_ceil(ws.cols) * 2;
        assert_eq!((ws.pingpong, ws.cols, tiles), (false, 64, 140));
        // And its 138 tiles of 64 × 32, too many to split k.
        let ws = WsConfig::rule(40, 2200, 2, 132, DType::BF16, true, Forced::default());
        let tiles = 2200usize.div_ceil(ws.cols) * 2;
        assert_eq!((ws.pingpong, ws.cols, tiles, split_k(tiles, 2, 132)), (true, 32, 138, 1));
        // fp8: the same widths; the wide tiles in pairs where there are two rows of them.
        let fp8 = |m, n| {
            let ws = WsConfig::rule(m, n, 1, 132, DType::F8E4M3, true, Forced::default());
            (if ws.pingpong { "pingpong" } else { "coop" }, ws.cols, ws.cluster)
        };
        assert_eq!(fp8(128, 4096), ("pingpong", 64, 1));
        assert_eq!(fp8(64, 4096), ("pingpong", 32, 1));
        assert_eq!(fp8(128, 14336), ("coop", 128, 1));
        assert_eq!(fp8(16, 28672), ("pingpong", 256, 1));
        assert_eq!(fp8(4096, 4096), ("coop", 256, 2));
        // 224 columns where their waves are fuller: 512 tiles at 1024 × 14336 (3.9 waves of 132)
        // against 448 of 256 columns (3.4) and 896 of 128 (6.8, at 0.9 of the speed); 256 tiles
        // at 512 × 14336 (1.9 waves) against 224 of 256 columns (1.7); not in a single wave (128
        // × 28672), nor where 256's waves are as full.
        assert_eq!(fp8(1024, 14336), ("coop", 224, 1));
        assert_eq!(fp8(512, 14336), ("coop", 224, 1));
        assert_eq!(fp8(128, 28672), ("coop", 256, 1));
        assert_eq!(fp8(4096, 14336), ("coop", 256, 2));
        assert_eq!(fp8(8192, 8192), ("coop", 256, 2));
        // tf32 has only the wide tiles.
        assert_eq!(shape(128, 4096, DType::F32), ("pingpong", 256));
    }

    /// What the environment forces wins over the rules, and never asks for a kernel that does
    /// not exist (narrow tiles in pairs, or for tf32).
    #[test]
    fn forced_settings_win() {
        let rule = |m, t, f| {
            let ws = WsConfig::rule(m, 4096, 1, 132, t, true, f);
            assert!(ws.exists(t), "{ws:?} for {t}");
            (ws.pingpong, ws.cluster, ws.cols)
        };
        let narrow = Forced { cols: Some(64), ..Forced::default() };
        let pairs = Forced { pairs: Some(true), ..narrow };
        let coop = Forced { schedule: Some(false), ..narrow };
        let thin = Forced { cols: Some(32), ..Forced::default() };
        assert_eq!(rule(4096, DType::BF16, narrow), (false, 1, 64));
        assert_eq!(rule(4096, DType::BF16, thin), (true, 1, 32));
        assert_eq!(rule(4096, DType::BF16, Forced { schedule: Some(false), ..thin }), (false, 1, 64));
        assert_eq!(rule(4096, DType::F8E4M3, thin), (true, 1, 32));
        // 224 columns only for fp8.
        let w224 = Forced { cols: Some(224), ..Forced::default() };
        assert_eq!(rule(4096, DType::F8E4M3, w224), (false, 1, 224));
        assert_eq!(rule(4096, DType::F8E4M3, Forced { schedule: Some(true), ..w224 }), (true, 1, 224));
        assert_ne!(rule(4096, DType::BF16, w224).2, 224);
        // tf32 has only the wide tiles.
        assert_eq!(rule(4096, DType::F32, thin), (false, 1, 256));
        assert_eq!(rule(4096, DType::F8E5M2, narrow), (false, 1, 64));
        assert_eq!(rule(32, DType::BF16, coop), (false, 1, 64));
        assert_eq!(rule(4096, DType::BF16, pairs), (false, 2, 256));
        assert_eq!(rule(4096, DType::F32, narrow), (false, 1, 256));
        let alone = Forced { pairs: Some(false), ..Forced::default() };
        assert_eq!(rule(4096, DType::F8E4M3, alone), (false, 1, 256));
    }

    #[test]
    fn plans_read_back_what_they_wrote_and_nothing_else() {
        let ws = WsConfig { right_k_major: false, cluster: 1, pingpong: true, cols: 128 };
        let plan = Plan { ws, splits: 3 };
        assert_eq!(plan.text(), "pingpong=1 cluster=1 splits=3 cols=128");
        assert_eq!(Plan::parse(&plan.text(), false), Some(plan));
        let wide = Plan { ws: WsConfig { right_k_major: true, cluster: 1, pingpong: false, cols: 224 }, splits: 1 };
        assert_eq!(Plan::parse(&wide.text(), true), Some(wide));
        for bad in [
            "pingpong=1 cluster=2 splits=3 cols=128",
            "pingpong=0 cluster=2 splits=1 cols=224",
            "pingpong=1 cluster=1 splits=3 cols=96",
            "pingpong=1 cluster=1 splits=3",
            "pingpong=0 cluster=1 splits=0 cols=256",
            "cluster=1 pingpong=0 splits=1 cols=256",
        ] {
            assert_eq!(Plan::parse(bad, true), None, "{bad}");
        }
    }
}

//! GEMM micro-kernels: an `MR × NR` tile of `A·B` over `k` steps, from packed panels.
//!
//! Each kernel keeps its whole tile in registers: `MR` rows of `NR / LANES` vectors. Per step
//! it loads one row of the B panel (`NR` values, `NV` vectors) and, for each of the `MR` rows,
//! broadcasts one value of the A panel and issues `NV` fused multiply-adds. AVX-512 (32 `zmm`
//! registers) runs 12 × 32 for f32 (24 accumulators) and 12 × 16 for f64; AVX2 (16 `ymm`)
//! runs 6 × 16 and 6 × 8 (12 accumulators, the most that leaves room for B and the broadcast).
//! The finished tile is stored straight into C (row stride `rs_c`, unit column stride), added
//! to what C holds when accumulating; the driver routes edge tiles through a small buffer.
//!
//! A panel layout: for each step `p`, `MR` consecutive values (`a[p*MR + i]`).
//! B panel layout: for each step `p`, `NR` consecutive values at `b[p*ldb + j]`.
//!
//! The AVX-512 BF16 kernel (`pairs`) takes bf16 operands without widening them: each step is
//! two steps of k, each 32-bit slot of the panels holding the bf16 values of k = 2p (low half)
//! and 2p + 1 (high half), and `vdpbf16ps` adds both products to the f32 accumulator — twice
//! the multiply-adds of an f32 FMA per instruction, from half the bytes. The products are
//! exact; the instruction rounds after each of its two additions (as two FMAs would) but
//! flushes subnormal inputs and results to zero (magnitudes below 2⁻¹²⁶).

/// A micro-kernel: `C[..MR, ..NR] = A_panel · B_panel (+ C)`, C with row stride `rs_c` and
/// unit column stride.
#[derive(Clone, Copy)]
pub(crate) struct Microkernel<T> {
    /// Rows of the tile.
    pub mr: usize,
    /// Columns of the tile.
    pub nr: usize,
    /// Name, for benchmarks and traces.
    pub name: &'static str,
    /// Each step is a pair of bf16 steps of k in one 32-bit slot (see the module docs).
    pub pairs: bool,
    /// `f(k, a_panel, b_panel, ldb, c, rs_c, accumulate)`. Safety: the panels hold `k` steps,
    /// C holds an `mr × nr` tile at that stride, and the CPU has the kernel's features.
    pub run: unsafe fn(usize, *const T, *const T, usize, *mut T, usize, bool),
}

impl<T> Microkernel<T> {
    /// The kernel's steps for `kc` steps of k (pairs of them for a pair kernel).
    pub(crate) fn steps(&self, kc: usize) -> usize {
        if self.pairs { kc.div_ceil(2) } else { kc }
    }
}

/// The portable kernel: plain Rust the compiler vectorizes as it can.
macro_rules! portable_kernel {
    ($name:ident, $t:ty, $mr:literal, $nr:literal) => {
        unsafe fn $name(k: usize, a: *const $t, b: *const $t, ldb: usize, c: *mut $t, rs_c: usize, accumulate: bool) {
            let mut acc = [[0 as $t; $nr]; $mr];
            for p in 0..k {
                // SAFETY: the caller guarantees k steps of both panels.
                let (ap, bp) = unsafe {
                    (std::slice::from_raw_parts(a.add(p * $mr), $mr), std::slice::from_raw_parts(b.add(p * ldb), $nr))
                };
                for i in 0..$mr {
                    for j in 0..$nr {
                        acc[i][j] = <$t as super::Acc>::mul_add(ap[i], bp[j], acc[i][j]);
                    }
                }
            }
            for i in 0..$mr {
                for j in 0..$nr {
                    // SAFETY: C holds the tile.
                    unsafe {
                        let p = c.add(i * rs_c + j);
                        *p = if accumulate { <$t as super::Acc>::add(*p, acc[i][j]) } else { acc[i][j] };
                    }
                }
            }
        }
    };
}

portable_kernel!(portable_f32, f32, 4, 8);
portable_kernel!(portable_f64, f64, 4, 4);
portable_kernel!(portable_i32, i32, 4, 8);

/// How many steps ahead the kernels prefetch B (8 to 16 measured alike; BENCHMARKS.md).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const PREFETCH: usize = 16;

/// Asks for the cache line holding `p` (a hint: it never faults, whatever the address).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch<T>(p: *const T) {
    use std::arch::x86_64::*;
    #[allow(unused_unsafe)]
    // SAFETY: a prefetch reads nothing and cannot fault.
    unsafe {
        _mm_prefetch::<_MM_HINT_T0>(p.cast())
    }
}
/// NEON kernels leave prefetching to the hardware (stable Rust has no prefetch on aarch64).
#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn prefetch<T>(_: *const T) {}

/// A SIMD kernel for one instruction set of architecture `$arch`: `$mr` rows, `$nv` vectors
/// of `$lanes` per row.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
macro_rules! simd_kernel {
    ($name:ident, $arch:ident, $feature:literal, $t:ty, $vec:ty, $mr:literal, $nv:literal, $lanes:literal,
     $zero:ident, $load:ident, $set1:ident, $fmadd:ident, $add:ident, $store:ident) => {
        #[target_feature(enable = $feature)]
        unsafe fn $name(k: usize, a: *const $t, b: *const $t, ldb: usize, c: *mut $t, rs_c: usize, accumulate: bool) {
            use std::arch::$arch::*;
            let mut acc: [[$vec; $nv]; $mr] = [[$zero(); $nv]; $mr];
            // Bring the C tile toward L1 while the products run: its rows are far apart and
            // would otherwise all miss at the end.
            for i in 0..$mr {
                prefetch(c.wrapping_add(i * rs_c));
                prefetch(c.wrapping_add(i * rs_c + $nv * $lanes - 1));
            }
            let (mut a, mut b) = (a, b);
            for _ in 0..k {
                // SAFETY: the caller guarantees k steps of both panels.
                unsafe {
                    let mut bv: [$vec; $nv] = [$zero(); $nv];
                    for v in 0..$nv {
                        bv[v] = $load(b.add(v * $lanes));
                    }
                    // The B micro-panel streams from L2: ask for it a few steps ahead.
                    prefetch(b.wrapping_add(PREFETCH * ldb));
                    prefetch(b.wrapping_add(PREFETCH * ldb + $nv * $lanes - 1));
                    for i in 0..$mr {
                        let ai = $set1(*a.add(i));
                        for v in 0..$nv {
                            acc[i][v] = $fmadd(ai, bv[v], acc[i][v]);
                        }
                    }
                    a = a.add($mr);
                    b = b.add(ldb);
                }
            }
            for i in 0..$mr {
                for v in 0..$nv {
                    // SAFETY: C holds the tile.
                    unsafe {
                        let p = c.add(i * rs_c + v * $lanes);
                        $store(p, if accumulate { $add($load(p), acc[i][v]) } else { acc[i][v] });
                    }
                }
            }
        }
    };
}

// One line per kernel: name, features, element, vector, MR, vectors per row, lanes, and the
// intrinsics for zero, load, broadcast, multiply-add, add and store.
#[cfg(target_arch = "x86_64")]
simd_kernel! { avx512_f32, x86_64, "avx512f", f32, __m512, 12, 2, 16, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_storeu_ps }
#[cfg(target_arch = "x86_64")]
simd_kernel! { avx512_f64, x86_64, "avx512f", f64, __m512d, 12, 2, 8, _mm512_setzero_pd, _mm512_loadu_pd, _mm512_set1_pd, _mm512_fmadd_pd, _mm512_add_pd, _mm512_storeu_pd }
#[cfg(target_arch = "x86_64")]
simd_kernel! { avx512_i32, x86_64, "avx512f", i32, __m512i, 12, 2, 16, _mm512_setzero_si512, load512_i32, _mm512_set1_epi32, mla512_i32, _mm512_add_epi32, store512_i32 }
#[cfg(target_arch = "x86_64")]
simd_kernel! { avx2_f32, x86_64, "avx2,fma", f32, __m256, 6, 2, 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_storeu_ps }
#[cfg(target_arch = "x86_64")]
simd_kernel! { avx2_f64, x86_64, "avx2,fma", f64, __m256d, 6, 2, 4, _mm256_setzero_pd, _mm256_loadu_pd, _mm256_set1_pd, _mm256_fmadd_pd, _mm256_add_pd, _mm256_storeu_pd }

// NEON's zero and multiply-add in the argument order of the x86 intrinsics.
#[cfg(target_arch = "aarch64")]
#[inline]
#[target_feature(enable = "neon")]
fn neon_zero_f32() -> std::arch::aarch64::float32x4_t {
    std::arch::aarch64::vdupq_n_f32(0.0)
}
#[cfg(target_arch = "aarch64")]
#[inline]
#[target_feature(enable = "neon")]
fn neon_fma_f32(
    a: std::arch::aarch64::float32x4_t,
    b: std::arch::aarch64::float32x4_t,
    acc: std::arch::aarch64::float32x4_t,
) -> std::arch::aarch64::float32x4_t {
    std::arch::aarch64::vfmaq_f32(acc, b, a)
}
#[cfg(target_arch = "aarch64")]
#[inline]
#[target_feature(enable = "neon")]
fn neon_zero_f64() -> std::arch::aarch64::float64x2_t {
    std::arch::aarch64::vdupq_n_f64(0.0)
}
#[cfg(target_arch = "aarch64")]
#[inline]
#[target_feature(enable = "neon")]
fn neon_fma_f64(
    a: std::arch::aarch64::float64x2_t,
    b: std::arch::aarch64::float64x2_t,
    acc: std::arch::aarch64::float64x2_t,
) -> std::arch::aarch64::float64x2_t {
    std::arch::aarch64::vfmaq_f64(acc, b, a)
}

// NEON (every aarch64 CPU has it), 8 × 12 f32 and 8 × 6 f64: 24 accumulators, 3 B vectors and
// a broadcast of the 32 registers.
#[cfg(target_arch = "aarch64")]
simd_kernel! { neon_f32, aarch64, "neon", f32, float32x4_t, 8, 3, 4, neon_zero_f32, vld1q_f32, vdupq_n_f32, neon_fma_f32, vaddq_f32, vst1q_f32 }
#[cfg(target_arch = "aarch64")]
simd_kernel! { neon_f64, aarch64, "neon", f64, float64x2_t, 8, 3, 2, neon_zero_f64, vld1q_f64, vdupq_n_f64, neon_fma_f64, vaddq_f64, vst1q_f64 }

// The bf16-pair kernel's operations on f32 vectors that carry pairs of bf16 values: a
// broadcast of one slot's bits and `vdpbf16ps`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
fn set1_pair(x: f32) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    _mm512_castsi512_ps(_mm512_set1_epi32(x.to_bits() as i32))
}
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx512bf16")]
fn dot_pairs(
    a: std::arch::x86_64::__m512,
    b: std::arch::x86_64::__m512,
    acc: std::arch::x86_64::__m512,
) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    // SAFETY: a bit-for-bit reinterpretation between two 512-bit vector types.
    let (a, b) = unsafe { (std::mem::transmute::<__m512, __m512bh>(a), std::mem::transmute::<__m512, __m512bh>(b)) };
    _mm512_dpbf16_ps(acc, a, b)
}
#[cfg(target_arch = "x86_64")]
simd_kernel! { avx512_bf16_pairs, x86_64, "avx512f,avx512bf16", f32, __m512, 12, 2, 16, _mm512_setzero_ps, _mm512_loadu_ps, set1_pair, dot_pairs, _mm512_add_ps, _mm512_storeu_ps }

/// The AVX-512 BF16 kernel for bf16 · bf16 products, where the CPU has it (chosen once).
pub(crate) fn bf16_pair_kernel() -> Option<Microkernel<f32>> {
    static CHOICE: std::sync::OnceLock<Option<Microkernel<f32>>> = std::sync::OnceLock::new();
    *CHOICE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if allowed("avx512")
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
        {
            return Some(Microkernel {
                mr: 12,
                nr: 32,
                name: "avx512-bf16 12x32 pairs",
                pairs: true,
                run: avx512_bf16_pairs,
            });
        }
        None
    })
}

// i32 counterparts of the float intrinsics the kernel macro uses: a multiply-add (there is no
// fused one for 32-bit integers) and loads/stores through `*const i32`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn mla512_i32(
    a: std::arch::x86_64::__m512i,
    b: std::arch::x86_64::__m512i,
    c: std::arch::x86_64::__m512i,
) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    _mm512_add_epi32(_mm512_mullo_epi32(a, b), c)
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn load512_i32(p: *const i32) -> std::arch::x86_64::__m512i {
    // SAFETY: the caller's pointer covers 16 values.
    unsafe { std::arch::x86_64::_mm512_loadu_si512(p.cast()) }
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store512_i32(p: *mut i32, v: std::arch::x86_64::__m512i) {
    // SAFETY: the caller's pointer covers 16 values.
    unsafe { std::arch::x86_64::_mm512_storeu_si512(p.cast(), v) }
}

/// The kernels this CPU can run, best first. `STRATA_CPU_KERNEL=avx2|portable` caps the
/// choice (to test the fallbacks on a machine that has more).
fn allowed(level: &str) -> bool {
    let cap = std::env::var("STRATA_CPU_KERNEL").unwrap_or_default();
    let rank = |l: &str| match l {
        "portable" => 0,
        "avx2" => 1,
        _ => 2,
    };
    cap.is_empty() || rank(level) <= rank(&cap)
}

/// The best f32 kernel for this CPU (chosen once).
pub(crate) fn f32_kernel() -> Microkernel<f32> {
    static CHOICE: std::sync::OnceLock<Microkernel<f32>> = std::sync::OnceLock::new();
    *CHOICE.get_or_init(choose_f32)
}

/// The best f64 kernel for this CPU (chosen once).
pub(crate) fn f64_kernel() -> Microkernel<f64> {
    static CHOICE: std::sync::OnceLock<Microkernel<f64>> = std::sync::OnceLock::new();
    *CHOICE.get_or_init(choose_f64)
}

fn choose_f32() -> Microkernel<f32> {
    #[cfg(target_arch = "x86_64")]
    {
        if allowed("avx512") && std::arch::is_x86_feature_detected!("avx512f") {
            return Microkernel { mr: 12, nr: 32, name: "avx512 12x32", pairs: false, run: avx512_f32 };
        }
        if allowed("avx2") && std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Microkernel { mr: 6, nr: 16, name: "avx2 6x16", pairs: false, run: avx2_f32 };
        }
    }
    #[cfg(target_arch = "aarch64")]
    if allowed("neon") {
        return Microkernel { mr: 8, nr: 12, name: "neon 8x12", pairs: false, run: neon_f32 };
    }
    Microkernel { mr: 4, nr: 8, name: "portable 4x8", pairs: false, run: portable_f32 }
}

/// The best i32 (int8 products) kernel for this CPU (chosen once).
pub(crate) fn i32_kernel() -> Microkernel<i32> {
    static CHOICE: std::sync::OnceLock<Microkernel<i32>> = std::sync::OnceLock::new();
    *CHOICE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if allowed("avx512") && std::arch::is_x86_feature_detected!("avx512f") {
                return Microkernel { mr: 12, nr: 32, name: "avx512 12x32 i32", pairs: false, run: avx512_i32 };
            }
        }
        Microkernel { mr: 4, nr: 8, name: "portable 4x8 i32", pairs: false, run: portable_i32 }
    })
}

#[cfg(test)]
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
pub(crate) fn all_i32_kernels() -> Vec<Microkernel<i32>> {
    let mut ks = vec![Microkernel {
        mr: 4,
        nr: 8,
        name: "portable 4x8 i32",
        pairs: false,
        run: portable_i32 as unsafe fn(_, _, _, _, _, _, _),
    }];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        ks.push(Microkernel { mr: 12, nr: 32, name: "avx512 12x32 i32", pairs: false, run: avx512_i32 });
    }
    ks
}

fn choose_f64() -> Microkernel<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        if allowed("avx512") && std::arch::is_x86_feature_detected!("avx512f") {
            return Microkernel { mr: 12, nr: 16, name: "avx512 12x16", pairs: false, run: avx512_f64 };
        }
        if allowed("avx2") && std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Microkernel { mr: 6, nr: 8, name: "avx2 6x8", pairs: false, run: avx2_f64 };
        }
    }
    #[cfg(target_arch = "aarch64")]
    if allowed("neon") {
        return Microkernel { mr: 8, nr: 6, name: "neon 8x6", pairs: false, run: neon_f64 };
    }
    Microkernel { mr: 4, nr: 4, name: "portable 4x4", pairs: false, run: portable_f64 }
}

/// Every f32 kernel this CPU can run (for tests that check each one).
#[cfg(test)]
pub(crate) fn all_f32_kernels() -> Vec<Microkernel<f32>> {
    let mut ks = vec![Microkernel {
        mr: 4,
        nr: 8,
        name: "portable 4x8",
        pairs: false,
        run: portable_f32 as unsafe fn(_, _, _, _, _, _, _),
    }];
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            ks.push(Microkernel { mr: 6, nr: 16, name: "avx2 6x16", pairs: false, run: avx2_f32 });
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            ks.push(Microkernel { mr: 12, nr: 32, name: "avx512 12x32", pairs: false, run: avx512_f32 });
        }
    }
    #[cfg(target_arch = "aarch64")]
    ks.push(Microkernel { mr: 8, nr: 12, name: "neon 8x12", pairs: false, run: neon_f32 });
    ks
}

/// Every f64 kernel this CPU can run.
#[cfg(test)]
pub(crate) fn all_f64_kernels() -> Vec<Microkernel<f64>> {
    let mut ks = vec![Microkernel {
        mr: 4,
        nr: 4,
        name: "portable 4x4",
        pairs: false,
        run: portable_f64 as unsafe fn(_, _, _, _, _, _, _),
    }];
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            ks.push(Microkernel { mr: 6, nr: 8, name: "avx2 6x8", pairs: false, run: avx2_f64 });
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            ks.push(Microkernel { mr: 12, nr: 16, name: "avx512 12x16", pairs: false, run: avx512_f64 });
        }
    }
    #[cfg(target_arch = "aarch64")]
    ks.push(Microkernel { mr: 8, nr: 6, name: "neon 8x6", pairs: false, run: neon_f64 });
    ks
}

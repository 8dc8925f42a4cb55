// gemm.cu: matmul2d. `C = act(op(A)·op(B) (+ C) + bias)` over any batch axes.
//
// - A tensor-core kernel for f16/bf16 operands (fp32 accumulation) whose matrices have a unit
//   stride in one dimension and 16-byte aligned rows: 128 x 128 block tiles, 32-deep k steps
//   through a 3-stage cp.async pipeline, eight warps of 64 x 32 running
//   `tensor_ops::Matmul2d` (mma.sync).
// - On sm_90a, when A is K-major (B either way), a warpgroup kernel on `wgmma` instead (below).
// - A SIMT kernel for everything else (f32, f64, int8 -> int32, fp8 in other layouts, any
//   strides): gemm_simt.cu, which builds on this file.
// - Products of at most 16 rows with both operands K-major (decoding with a `Linear` weight)
//   stream B through `mma.sync` on a kernel of their own (`gemm_skinny`, below).
// - fp8 products (E4M3/E5M2 on either side, both operands K-major) on sm_90a run the
//   warp-specialized kernel on `wgmma ... k32` with f32 accumulation; their per-tensor or
//   per-row scales multiply the product in the epilogue, before accumulation, bias and
//   activation.
// All share the epilogue. The Rust side defines STRATA_ACT(v), the activation on a float or
// double `v` (or `v` itself).

#ifndef STRATA_GEMM_CU
#define STRATA_GEMM_CU

namespace strata {

#define STRATA_MAX_BATCH 6

struct MatmulGeometry {
    i64 m, n, k;
    i64 batch;  // product of the batch axes
    i32 nbatch;
    i32 accumulate;  // C += ...
    i32 has_bias;
    i32 has_scale;  // scaled fp8 product: v *= scale_a[row * scale_a_stride] * scale_b[col * ...]
    i64 batch_shape[STRATA_MAX_BATCH], a_batch[STRATA_MAX_BATCH], b_batch[STRATA_MAX_BATCH], c_batch[STRATA_MAX_BATCH];
    // A seen as m x k, B as k x n, C as m x n: (row, col) at offset + row * rs + col * cs.
    i64 a_rs, a_cs, b_rs, b_cs, c_rs, c_cs;
    i64 a_off, b_off, c_off, bias_stride, bias_off;
    const float* scale_a;
    const float* scale_b;
    i64 scale_a_stride, scale_b_stride;  // 0: one factor for the whole operand
};

// The factor of output (row, col) of a scaled product (1 otherwise); rows and columns past the
// edge read nothing.
__device__ __forceinline__ float scale_of(const MatmulGeometry& g, i64 row, i64 col) {
    if (!g.has_scale || row >= g.m || col >= g.n) return 1.f;
    return g.scale_a[row * g.scale_a_stride] * g.scale_b[col * g.scale_b_stride];
}

__device__ __forceinline__ void batch_offsets(const MatmulGeometry& g, i64 z, i64& a, i64& b, i64& c) {
    a = g.a_off;
    b = g.b_off;
    c = g.c_off;
    for (int d = g.nbatch - 1; d >= 0; --d) {
        const i64 i = z % g.batch_shape[d];
        z /= g.batch_shape[d];
        a += i * g.a_batch[d];
        b += i * g.b_batch[d];
        c += i * g.c_batch[d];
    }
}

// The epilogue of output (row, col): scale, accumulate, bias, activation, rounding store.
template <class CT, class TOUT, class F>
__device__ __forceinline__ void finish(CT v, TOUT* c, i64 pos, const TOUT* bias, const MatmulGeometry& g, i64 row,
                                       i64 col, F act) {
    if (g.has_scale) v *= (CT)scale_of(g, row, col);
    if (g.accumulate) v += (CT)ld(c[pos]);
    if (g.has_bias) v += (CT)ld(bias[g.bias_off + col * g.bias_stride]);
    c[pos] = St<TOUT>::from(act(v));
}

// Two adjacent outputs rounded to TOUT as one word: 32 bits for 16-bit types, 64 for f32.
template <class TOUT> __device__ __forceinline__ auto pack_pair(float x, float y) {
    if constexpr (sizeof(TOUT) == 2) {
        return (u32)St<TOUT>::from(x).bits | ((u32)St<TOUT>::from(y).bits << 16);
    } else {
        return (u64)__float_as_uint(x) | ((u64)__float_as_uint(y) << 32);
    }
}

// Two adjacent outputs in one store (the address is aligned to the pair).
template <class TOUT> __device__ __forceinline__ void store_pair(TOUT* p, float x, float y) {
    *(decltype(pack_pair<TOUT>(x, y))*)p = pack_pair<TOUT>(x, y);
}

// A compile-time flag as a value, for generic lambdas that compile a path with and without.
template <bool B> struct Flag {
    static constexpr bool value = B;
};

// ---- tensor cores ------------------------------------------------------------------------------
template <class T, class TOUT, bool LK, bool RK, class F>
__device__ void gemm_tc(const T* __restrict__ a, const T* __restrict__ b, const TOUT* bias, TOUT* c,
                        const MatmulGeometry& g, F act) {
    using namespace tensor_ops;
    const int BM = 128, BN = 128, BK = 32, STAGES = 3, THREADS = 256;
    // A's stage tile is [BM][BK] when K-major, else [BK][BM]; B's is [BN][BK] or [BK][BN].
    typedef Tile<T, LK ? BM : BK, LK ? BK : BM> TA;
    typedef Tile<T, RK ? BN : BK, RK ? BK : BN> TB;
    __shared__ __align__(128) T smem_a[STAGES][BM * BK];
    __shared__ __align__(128) T smem_b[STAGES][BN * BK];
    const int warp = threadIdx.x / 32;
    const int wm = (warp / 4) * 64, wn = (warp % 4) * 32;
    typedef Matmul2d<64, 32, LK, RK, Warp> Mm;
    const i64 m0 = (i64)blockIdx.y * BM, n0 = (i64)blockIdx.x * BN;
    const int ktiles = (int)((g.k + BK - 1) / BK);
    for (i64 z = blockIdx.z; z < g.batch; z += gridDim.z) {
        i64 ao, bo, co;
        batch_offsets(g, z, ao, bo, co);
        const int mrows = (int)min((i64)BM, g.m - m0), ncols = (int)min((i64)BN, g.n - n0);
        auto load = [&](int stage, int kt) {
            const i64 k0 = (i64)kt * BK;
            const int kk = (int)min((i64)BK, g.k - k0);
            TA ta{smem_a[stage]};
            TB tb{smem_b[stage]};
            if constexpr (LK) load_async<T, BM, BK, THREADS>(ta, a + ao + m0 * g.a_rs + k0, g.a_rs, mrows, kk);
            else load_async<T, BK, BM, THREADS>(ta, a + ao + k0 * g.a_cs + m0, g.a_cs, kk, mrows);
            if constexpr (RK) load_async<T, BN, BK, THREADS>(tb, b + bo + n0 * g.b_cs + k0, g.b_cs, ncols, kk);
            else load_async<T, BK, BN, THREADS>(tb, b + bo + k0 * g.b_rs + n0, g.b_rs, kk, ncols);
        };
        Dest<64, 32> acc;
        acc.fill(0.f);
#pragma unroll
        for (int s = 0; s < STAGES - 1; ++s) {
            if (s < ktiles) load(s, s);
            commit();
        }
        for (int kt = 0; kt < ktiles; ++kt) {
            wait<STAGES - 2>();
            __syncthreads();
            const int next = kt + STAGES - 1;
            if (next < ktiles) load(next % STAGES, next);
            commit();
            const int s = kt % STAGES;
            TA ta{smem_a[s]};
            TB tb{smem_b[s]};
            Mm::template run<BK, T>(acc, ta, wm, tb, wn, 0);
        }
        wait<0>();
        __syncthreads();
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const i64 gi = m0 + wm + Dest<64, 32>::row(i, e), gj = n0 + wn + Dest<64, 32>::col(j, e);
                    if (gi < g.m && gj < g.n)
                        finish<float, TOUT>(acc.v[i][j][e], c, co + gi * g.c_rs + gj * g.c_cs, bias, g, gi, gj, act);
                }
    }
}

// ---- tensor cores, warpgroup scope (sm_90a) ------------------------------------------------------
// A K-major; B K-major (RK) or MN-major (stored k x n, fed to wgmma transposed). 128 x 256 block tiles, 64-deep k steps through a 4-stage cp.async
// pipeline in 1024-byte-aligned dynamic shared memory (192 KiB), two warpgroups each owning a
// 64 x 256 wgmma destination (128 fp32 registers a thread). One group of products stays in
// flight while the next tiles load. Blocks are visited in groups of 8 block-rows so that
// neighbours share operand tiles in L2.
#define STRATA_WG_BM 128
#define STRATA_WG_BN 256
#define STRATA_WG_BK 64
#define STRATA_WG_STAGES 4
#define STRATA_WG_SMEM (STRATA_WG_STAGES * (STRATA_WG_BM + STRATA_WG_BN) * STRATA_WG_BK * 2 + 1024)

template <class T, class TOUT, bool RK, class F>
__device__ void gemm_wg(const T* __restrict__ a, const T* __restrict__ b, const TOUT* bias, TOUT* c,
                        const MatmulGeometry& g, F act) {
#if defined(STRATA_HAS_WGMMA)
    using namespace tensor_ops;
    const int BM = STRATA_WG_BM, BN = STRATA_WG_BN, BK = STRATA_WG_BK, S = STRATA_WG_STAGES, THREADS = 256;
    extern __shared__ u8 dyn_smem[];
    T* base = (T*)(((size_t)dyn_smem + 1023) & ~(size_t)1023);
    T* sa = base;                   // S tiles of [BM][BK]
    T* sb = base + S * BM * BK;     // S tiles of [BN][BK]
    const int wg = threadIdx.x / 128;
    typedef Matmul2d<64, BN, true, RK, Warpgroup> Mm;
    // Grouped raster: 8 block-rows at a time, column by column.
    const int grid_n = gridDim.x, grid_m = gridDim.y;
    const int id = blockIdx.x + blockIdx.y * grid_n, per_group = 8 * grid_n, first = (id / per_group) * 8;
    const int rows_here = min(8, grid_m - first);
    const i64 m0 = (i64)(first + (id % per_group) % rows_here) * BM;
    const i64 n0 = (i64)((id % per_group) / rows_here) * BN;
    const int ktiles = (int)((g.k + BK - 1) / BK);
    for (i64 z = blockIdx.z; z < g.batch; z += gridDim.z) {
        i64 ao, bo, co;
        batch_offsets(g, z, ao, bo, co);
        const int mrows = (int)min((i64)BM, g.m - m0), ncols = (int)min((i64)BN, g.n - n0);
        auto load = [&](int stage, int kt) {
            const i64 k0 = (i64)kt * BK;
            const int kk = (int)min((i64)BK, g.k - k0);
            load_async<T, BM, BK, THREADS>(Tile<T, BM, BK>{sa + stage * BM * BK}, a + ao + m0 * g.a_rs + k0, g.a_rs, mrows, kk);
            if constexpr (RK) {
                load_async<T, BN, BK, THREADS>(Tile<T, BN, BK>{sb + stage * BN * BK}, b + bo + n0 * g.b_cs + k0, g.b_cs, ncols, kk);
            } else {
                // B stored k x n: BN/64 blocks of [BK k][64 n].
                const T* row = b + bo + k0 * g.b_rs + n0;
#pragma unroll
                for (int blk = 0; blk < BN / 64; ++blk) {
                    const int cols = max(0, min(64, ncols - blk * 64));
                    load_async<T, BK, 64, THREADS>(Tile<T, BK, 64>{sb + stage * BN * BK + blk * 64 * BK},
                                                   cols > 0 ? row + blk * 64 : row, g.b_rs, kk, cols);
                }
            }
        };
        WgDest<BN> acc;
        acc.fill(0.f);
#pragma unroll
        for (int s = 0; s < S - 2; ++s) {
            if (s < ktiles) load(s, s);
            commit();
        }
        for (int kt = 0; kt < ktiles; ++kt) {
            // Tile kt has landed, and every warpgroup's products of tile kt-2 are done, so its
            // stage can be refilled.
            wait<S - 3>();
            fence_proxy_async();
            __syncthreads();
            const int next = kt + S - 2;
            if (next < ktiles) load(next % S, next);
            commit();
            const int s = kt % S;
            Mm::template run<BK, T>(acc, sa + s * BM * BK + wg * 64 * BK, sb + s * BN * BK);
            wgmma_wait<1>();
            acc.fence();
        }
        wgmma_wait<0>();
        acc.fence();
        wait<0>();
        __syncthreads();
#pragma unroll
        for (int i = 0; i < BN / 2; ++i) {
            const i64 gi = m0 + wg * 64 + WgDest<BN>::row(i), gj = n0 + WgDest<BN>::col(i);
            if (gi < g.m && gj < g.n)
                finish<float, TOUT>(acc.v[i], c, co + gi * g.c_rs + gj * g.c_cs, bias, g, gi, gj, act);
        }
    }
#else
    __trap();  // the host launches this kernel on sm_90a only
#endif
}

// ---- tensor cores, warp-specialized and persistent (sm_90a) ---------------------------------------
// The wgmma products of `gemm_wg` (k steps of 128 bytes: 64 f16/bf16 elements, or 32 f32 ones
// multiplied as tf32 when the product allows relaxed precision, or 128 fp8 ones) on tiles of 128
// or 64 rows (PP below) and 256 columns, or 128 or 64 for 16-bit and fp8 products with too few
// wide tiles (BN; also 32 on 64-row tiles with B K-major), organised as FlashAttention-3 and
// CUTLASS's Hopper kernels are: one CTA per multiprocessor walks the output tiles; in each, a
// producer warpgroup (one thread, few registers) asks the copy engine for A's and B's tiles of
// every k step, S stages ahead (4 of the widest tiles, up to 16 of the narrowest, in the same
// shared memory), and two consumer warpgroups (the registers the producer gave up) run the
// products and the epilogue. Stages change hands through transaction barriers: `full` (the copy
// engine's bytes landed) and `empty` (both consumers' products of the stage are done), so the
// producer fetches the next tile while the consumers still store the last one.
// Operands come as tensor maps over (k, rows, batch) (B: (n, k, batch) when MN-major), which
// zero-fill beyond every edge: ragged m, n and k cost nothing here. The output leaves the same
// way when C is a tensor map too (`c_tma`; not when accumulating into C): each consumer rounds
// its 64-row block into shared memory, 128 bytes of columns at a time (a 32-column tile of a
// 16-bit output: its 64 bytes), and the copy engine stores it (clipped at the edges) while the
// next chunk is written. Storing straight from the registers instead (the fallback) scatters
// 16-byte pieces over 8 rows per instruction and cost as much as a quarter of the kernel's time.
#define STRATA_WS_STAGES 4
// Each consumer stages its output through two 8 KiB buffers of 64 rows x 128 bytes (or 64).
#define STRATA_WS_EPI_BYTES 8192
// The operand stages' shared memory: four stages of the largest tile (128 x 256, 128 bytes of
// k); narrower tiles keep more stages in flight in the same bytes (16 of 64 x 32).
#define STRATA_WS_STAGE_BYTES (STRATA_WS_STAGES * (STRATA_WG_BM + STRATA_WG_BN) * 128)
// Each consumer's copy of its tile's bias (16-bit outputs, and f32 ones of tiles up to 128
// columns): read from global memory under the tile's products, so that the epilogue's factors are
// shared-memory loads by small indices.
#define STRATA_WS_BIAS_BYTES 1024
#define STRATA_WS_SMEM (STRATA_WS_STAGE_BYTES + 4 * STRATA_WS_EPI_BYTES + 1024 + 512 + STRATA_WS_BIAS_BYTES)

// Tile `t` of the walk: grouped raster (8 block-rows at a time, column by column) within each
// batch entry.
__device__ __forceinline__ void ws_tile(i64 t, int tiles_m, int tiles_n, i64& z, int& tm, int& tn) {
    const i64 per_batch = (i64)tiles_m * tiles_n;
    z = t / per_batch;
    const int r = (int)(t % per_batch), per_group = 8 * tiles_n, first = (r / per_group) * 8;
    const int rows_here = min(8, tiles_m - first), within = r % per_group;
    tm = first + within % rows_here;
    tn = within / rows_here;
}

// With `splits` > 1 the k steps of each tile are shared out among that many work units (split-K,
// for products with too few tiles to fill the GPU); unit s of batch entry z stores its fp32
// partial tile through `map_c` at batch coordinate z * splits + s, and `gemm_splitk_reduce`
// sums them.
//
// With CL = 2 the CTAs run in clusters of two that take vertically adjacent tiles (rows tm and
// tm + 1 of the same column tn): both need the same B tile, so each producer fetches half of it
// and multicasts that half into both CTAs, halving B's traffic from L2 (B is the larger
// operand of a 128 x 256 tile). A stage is then written by both producers, so it goes back
// only when the consumers of both CTAs are done with it: each consumer warp arrives on the
// `empty` barrier of both.
//
// PP chooses how the two consumers share the work (the schedules of CUTLASS's Hopper kernels):
// cooperative (false), both on one tile of 128 rows, 64 rows each, so that the tensor cores wait
// while both round and store it; or ping-pong (true), each on tiles of its own of 64 rows,
// taking turns: the work units alternate between them, and a consumer starts its products only
// when the other has taken the last stage of its own (the `turn` barriers), so one's epilogue
// runs while the other's products keep the tensor cores busy. The stages still go round in
// the producer's order, which the turns keep the consumers to (a consumer that ran ahead would
// wait on a stage's barrier two phases early, which parity cannot tell from one).
template <class T, class TB, class TOUT, bool RK, int CL, bool PP, int BN_, class F>
__device__ void gemm_ws(const tensor_ops::TensorMap& map_a, const tensor_ops::TensorMap& map_b,
                        const tensor_ops::TensorMap& map_c, int a_batched, int b_batched, int c_tma, int splits,
                        const TOUT* bias, TOUT* c, const MatmulGeometry& g, F act) {
#if defined(STRATA_HAS_WGMMA)
    using namespace tensor_ops;
    static_assert(RK || sizeof(T) == 2, "an MN-major B only for 16-bit types");
    static_assert(sizeof(TB) == sizeof(T), "B's type differs from A's only within fp8");
    // k steps of 128 bytes: 64 16-bit elements, 32 f32 ones (tf32 products) or 128 fp8 ones.
    // BM x BN: a work unit's tile (A's box has BM rows and B's BN / CL, as the host sets them).
    constexpr int BM = PP ? 64 : STRATA_WG_BM, BN = BN_, BK = 128 / sizeof(T);
    constexpr int S = STRATA_WS_STAGE_BYTES / ((BM + BN) * 128);
    static_assert(BN == 256 || (sizeof(T) <= 2 && CL == 1), "narrow tiles: 16-bit and fp8 types, no clusters");
    static_assert(BN != 32 || (RK && PP), "32 columns: B K-major, 64-row tiles");
    static_assert(BN != 224 || (sizeof(T) == 1 && CL == 1), "224 columns: fp8, no clusters");
    static_assert(2 * S + 2 <= 64, "the barriers fit their 512 bytes");
    static_assert(1023 + S * (BM + BN) * 128 + 4 * STRATA_WS_EPI_BYTES + 512 + STRATA_WS_BIAS_BYTES <= STRATA_WS_SMEM,
                  "the aligned layout fits the dynamic shared memory the host gives");
    constexpr u32 STAGE_BYTES = (BM + BN) * BK * sizeof(T);
    extern __shared__ u8 dyn_smem[];
    T* base = (T*)(((size_t)dyn_smem + 1023) & ~(size_t)1023);
    T* sa = base;                // S tiles of [BM][BK]
    T* sb = base + S * BM * BK;  // S tiles of [BN][BK] (or BN/64 blocks of [BK][64])
    u8* epi = (u8*)(sb + S * BN * BK);  // 2 consumers x 2 buffers
    u64* full = (u64*)(epi + 4 * STRATA_WS_EPI_BYTES);
    u64* empty = full + S;
    u64* turn = empty + S;  // ping-pong: turn[w], consumer w may start its products
    u8* bias_smem = (u8*)full + 512;  // 2 consumers x BN outputs' bias, where they fit
    const int wg = threadIdx.x / 128;
    static_assert(CL == 1 || CL == 2, "clusters of one or two CTAs");
    const int rank = CL == 2 ? (int)cluster_rank() : 0;
    // The walk is over cluster tiles: CL vertically adjacent tiles, one per CTA.
    const int tiles_m = (int)((g.m + BM - 1) / BM), tiles_n = (int)((g.n + BN - 1) / BN);
    const int groups_m = (tiles_m + CL - 1) / CL;
    const i64 tiles = (i64)groups_m * tiles_n * g.batch;
    const int ktiles = (int)((g.k + BK - 1) / BK), kper = (ktiles + splits - 1) / splits;
    const i64 units = tiles * splits;
    const i64 first_unit = blockIdx.x / CL, unit_step = gridDim.x / CL;
    if (threadIdx.x == 0) {
        tma_prefetch_map(map_a);
        tma_prefetch_map(map_b);
        for (int s = 0; s < S; ++s) {
            mbar_init(&full[s], 1);
            // One arrival per warp of the consumers that read the stage, in each CTA.
            mbar_init(&empty[s], (PP ? 4 : 8) * CL);
        }
        // One arrival per warp of the consumer handing over: the turn passes only when all
        // four have waited for it and issued their products, so no warp of the other
        // consumer can fall two phases behind (a single arrival let a slow warp miss one).
        mbar_init(&turn[0], 4);
        mbar_init(&turn[1], 4);
        mbar_init_fence();
    }
    if constexpr (CL > 1) cluster_sync();
    else __syncthreads();
    if (wg == 0) {
        regs_release<40>();
        if (threadIdx.x == 0) {
            u32 it = 0;
            for (i64 u = first_unit; u < units; u += unit_step) {
                i64 z;
                int gm, tn;
                ws_tile(u / splits, groups_m, tiles_n, z, gm, tn);
                const int tm = gm * CL + rank;
                const int za = a_batched ? (int)z : 0, zb = b_batched ? (int)z : 0;
                const int k_begin = (int)(u % splits) * kper, k_end = min(ktiles, k_begin + kper);
                for (int kt = k_begin; kt < k_end; ++kt, ++it) {
                    const int s = it % S;
                    mbar_wait(&empty[s], ((it / S) & 1) ^ 1);
                    mbar_expect_tx(&full[s], STAGE_BYTES);
                    tma_load(sa + s * BM * BK, map_a, &full[s], kt * BK, tm * BM, za);
                    if constexpr (CL == 1 && RK) {
                        tma_load(sb + s * BN * BK, map_b, &full[s], kt * BK, tn * BN, zb);
                    } else if constexpr (CL == 1) {
#pragma unroll
                        for (int blk = 0; blk < BN / 64; ++blk)
                            tma_load(sb + s * BN * BK + blk * 64 * BK, map_b, &full[s], tn * BN + blk * 64, kt * BK, zb);
                    } else if constexpr (RK) {
                        // This CTA's half of B's rows, into both CTAs.
                        const int half = rank * (BN / 2);
                        tma_load_multicast(sb + s * BN * BK + half * BK, map_b, &full[s], kt * BK, tn * BN + half, zb, 3);
                    } else {
#pragma unroll
                        for (int blk = rank * (BN / 128); blk < (rank + 1) * (BN / 128); ++blk)
                            tma_load_multicast(sb + s * BN * BK + blk * 64 * BK, map_b, &full[s], tn * BN + blk * 64,
                                               kt * BK, zb, 3);
                    }
                }
            }
        }
    } else {
        regs_acquire<232>();
        typedef Matmul2d<64, BN, true, RK, Warpgroup> Mm;
        const int cw = wg - 1;
        const bool leader = (threadIdx.x % 32) == 0;
        u32 it = 0;
        int mine = 0;  // ping-pong: this consumer's work units so far
        // The parity of this consumer's output chunks so far: chunks alternate between its two
        // buffers across tiles too (a tile of one chunk, 64 or 32 16-bit columns, would
        // otherwise write the buffer its last tile's store may still be reading).
        int flip = 0;
        // Hands stage `s` back to the producer of every CTA that writes it.
        auto release = [&](int s) {
            if (!leader) return;
            if constexpr (CL == 1) mbar_arrive(&empty[s]);
            else {
                mbar_arrive_cluster(&empty[s], 0);
                mbar_arrive_cluster(&empty[s], 1);
            }
        };
        for (i64 u = first_unit, nth = 0; u < units; u += unit_step, ++nth) {
            i64 z;
            int gm, tn;
            ws_tile(u / splits, groups_m, tiles_n, z, gm, tn);
            const int tm = gm * CL + rank;
            const int k_begin = (int)(u % splits) * kper, k_end = min(ktiles, k_begin + kper);
            if (PP && (int)(nth & 1) != cw) {
                it += max(0, k_end - k_begin);  // the other consumer's stages
                continue;
            }
            // Consumer 1 waits for phase `mine` of its turn barrier; consumer 0 goes first,
            // then waits for phase `mine - 1`.
            if (PP && (cw == 1 || mine > 0)) mbar_wait(&turn[cw], (u32)(mine - 1 + cw) & 1);
            ++mine;
            // The scale factors of this thread's two output rows (or of the whole product), for
            // the epilogue: read once a tile (per-element reads cost fp8 a fifth of its speed),
            // before the products, which hide their latency. Only fp8 products have scales, and
            // only the copy engine's epilogue uses these (the other reads them per element).
            constexpr bool SCALED = sizeof(T) == 1;
            float row_a = 1.f, row_b = 1.f;
            if (SCALED && g.has_scale && c_tma) {
                const i64 ra = (i64)tm * BM + (PP ? 0 : cw * 64) + WgDest<BN>::row(0), rb = ra + 8;
                const float s0 = g.scale_b_stride == 0 ? g.scale_b[0] : 1.f;
                row_a = (ra < g.m ? g.scale_a[ra * g.scale_a_stride] : 0.f) * s0;
                row_b = (rb < g.m ? g.scale_a[rb * g.scale_a_stride] : 0.f) * s0;
            }
            // This tile's bias, a column a thread (two for 256 columns), for the copy engine's
            // epilogue: its loads go out now and land under the products; the values go to this
            // consumer's shared copy after them (zero past n), where the epilogue reads them by
            // the column's index within the tile. (Read in the epilogue from global memory,
            // 64-bit index arithmetic and latency a chunk at a time, they had cost a bias product
            // of k = 1024 a seventh of its speed.)
            constexpr bool BIAS_SMEM = 2 * BN * sizeof(TOUT) <= STRATA_WS_BIAS_BYTES;
            constexpr int BPT = (BN + 127) / 128;
            TOUT* tile_bias = (TOUT*)bias_smem + cw * BN;
            const bool stage_bias = BIAS_SMEM && c_tma && g.has_bias;
            TOUT bias_regs[BPT];
            if (stage_bias) {
#pragma unroll
                for (int b = 0; b < BPT; ++b) {
                    const int col = (int)(threadIdx.x % 128) + b * 128;
                    const i64 j = (i64)tn * BN + col;
                    if (col < BN) bias_regs[b] = j < g.n ? bias[g.bias_off + j * g.bias_stride] : TOUT{};
                }
            }
            WgDest<BN> acc;
            acc.fill(0.f);
            for (int kt = k_begin; kt < k_end; ++kt, ++it) {
                const int s = it % S;
                mbar_wait(&full[s], (it / S) & 1);
                Mm::template run<BK, T, TB>(acc, sa + s * BM * BK + (PP ? 0 : cw * 64 * BK), (const TB*)(sb + s * BN * BK));
                // Keep this step's products in flight; the previous step's are done, so its
                // stage goes back to the producer.
                wgmma_wait<1>();
                acc.fence();
                if (kt > k_begin) release((it - 1) % S);
            }
            // Every stage of this unit has landed: the other consumer's turn.
            if (PP && leader) mbar_arrive(&turn[1 - cw]);
            wgmma_wait<0>();
            acc.fence();
            if (k_end > k_begin) release((it - 1) % S);
            // A cluster's second tile past the last row (an odd number of tile rows) was only
            // computed to share B.
            if (CL > 1 && (i64)tm * BM >= g.m) continue;
            const int zc = (int)(z * splits + u % splits);
            const i64 m0 = (i64)tm * BM + (PP ? 0 : cw * 64), n0 = (i64)tn * BN;
            if (c_tma) {
                // Chunks of 128 bytes of columns (swizzled as the tensor map says), or of 32
                // columns where those do not divide the tile (64-byte rows of a 32-column 16-bit
                // tile or of a 224-column one, unswizzled), as `tma_output` sets the map's box.
                constexpr int WIDE = 128 / (int)sizeof(TOUT), CW = BN % WIDE == 0 ? WIDE : 32;
                static_assert(BN % CW == 0, "the chunks divide the tile");
                constexpr int PER = CW / 2, ROW = CW * sizeof(TOUT);  // registers per chunk, bytes a row
                const bool issuer = threadIdx.x % 128 == 0;
                const u32 epi0 = smem_addr(epi + cw * 2 * STRATA_WS_EPI_BYTES);
                // The epilogue is unrolled over the registers (a run-time index would send them
                // to local memory) and runs once a tile, fetching its instructions afresh:
                // branches per element for a bias and per-column scales made fp8 tiles of few k
                // steps stall on instruction fetch more than on their products. So products
                // without them take a copy of the loop with none.
                auto chunks = [&](auto per_column) {
                    constexpr bool PC = decltype(per_column)::value;
                    u32 buf = epi0;
                    // The per-column factors of this thread's columns in the current chunk (two
                    // for each group of 8 columns): B's scales, and the bias where the tile's
                    // shared copy does not fit (f32 outputs wider than 128 columns), read at the
                    // chunk's start with the index clamped to the last column (the map clips the
                    // columns past it): the loads go out together, and the elements take no branch
                    // (per element, with the bounds, they had cost bias products a quarter of
                    // their speed: bf16 4096 × 4096 × 1024 with a bias 0.64 → 0.86 of cuBLAS).
                    constexpr int CF = PC ? PER / 2 : 1;
                    float col_scale[CF], col_bias[CF];
#pragma unroll
                    for (int i = 0; i < BN / 2; i += 2) {
                        const int q = i / PER;
                        if (PC && i % PER == 0) {
                            const bool scaled = SCALED && g.has_scale && g.scale_b_stride != 0;
#pragma unroll
                            for (int f = 0; f < CF; ++f) {
                                const i64 j = min(n0 + WgDest<BN>::col(i + 2 * f - f % 2), g.n - 1);
                                col_scale[f] = scaled ? g.scale_b[j * g.scale_b_stride] : 1.f;
                                // -0, the additive identity (x + -0 is x for x = -0 too): an f32
                                // product's -0 stays -0, as on the CPU. (The shared copy is read
                                // below, once the barrier has passed.)
                                col_bias[f] = g.has_bias && !BIAS_SMEM ? (float)ld(bias[g.bias_off + j * g.bias_stride])
                                                                       : -0.f;
                            }
                        }
                        if (i % PER == 0) {
                            if (q > 0) {
                                fence_proxy_async();
                                named_barrier(1 + cw, 128);
                                if (issuer) {
                                    tma_store(map_c, buf, (int)(n0 + (q - 1) * CW), (int)m0, zc);
                                    bulk_commit();
                                }
                            }
                            // Chunk q's buffer is ((q + flip) & 1) of this consumer's two; the
                            // store that last read it (two chunks ago) is done with it.
                            buf = epi0 + ((q + flip) & 1) * STRATA_WS_EPI_BYTES;
                            if (issuer) bulk_wait_read<1>();
                            named_barrier(1 + cw, 128);
                            if (PC && stage_bias) {
#pragma unroll
                                for (int f = 0; f < CF; ++f) col_bias[f] = ld(tile_bias[WgDest<BN>::col(i + 2 * f - f % 2)]);
                            }
                        }
                        const int r = WgDest<BN>::row(i), col = WgDest<BN>::col(i) - q * CW;
                        float v0 = acc.v[i], v1 = acc.v[i + 1];
                        if constexpr (SCALED) {
                            const float f = (i % 4) >= 2 ? row_b : row_a;
                            v0 *= f;
                            v1 *= f;
                        }
                        if constexpr (PC) {
                            const int f = 2 * ((i % PER) / 4);
                            v0 = fmaf(v0, col_scale[f], col_bias[f]);
                            v1 = fmaf(v1, col_scale[f + 1], col_bias[f + 1]);
                        }
                        // The tensor map's 128-byte swizzle: 16-byte piece p of row r sits at p ^ (r % 8).
                        const int byte = col * (int)sizeof(TOUT);
                        const int at = ROW == 128 ? (((byte >> 4) ^ (r & 7)) << 4) + (byte & 15) : byte;
                        st_shared(buf + r * ROW + at, pack_pair<TOUT>(act(v0), act(v1)));
                    }
                    fence_proxy_async();
                    named_barrier(1 + cw, 128);
                    if (issuer) {
                        tma_store(map_c, buf, (int)(n0 + BN - CW), (int)m0, zc);
                        bulk_commit();
                    }
                };
                // The tile's bias into this consumer's shared copy: its last tile's epilogue read
                // the copy before its final barrier, and this one's first chunk reads it after
                // its first.
                if (stage_bias) {
#pragma unroll
                    for (int b = 0; b < BPT; ++b) {
                        const int col = (int)(threadIdx.x % 128) + b * 128;
                        if (col < BN) tile_bias[col] = bias_regs[b];
                    }
                }
                // (Two copies of an f32 output's eight chunks leave the cooperative kernel too few
                // registers to keep its wgmma in flight: ptxas serializes them, and tf32 lost 5 %.)
                if (sizeof(TOUT) == 4 || g.has_bias || (SCALED && g.has_scale && g.scale_b_stride != 0))
                    chunks(Flag<true>());
                else
                    chunks(Flag<false>());
                flip ^= (BN / CW) & 1;
                continue;
            }
            i64 ao, bo, co;
            batch_offsets(g, z, ao, bo, co);
            // Pairs of adjacent columns go out as one store when C's rows are unit-stride.
            const bool pairs = g.c_cs == 1 && ((co + m0 * g.c_rs + n0) & 1) == 0 && (g.c_rs & 1) == 0 && !g.accumulate;
#pragma unroll
            for (int i = 0; i < BN / 2; i += 2) {
                const i64 gi = m0 + WgDest<BN>::row(i), gj = n0 + WgDest<BN>::col(i);
                if (gi >= g.m) continue;
                if (pairs && gj + 1 < g.n) {
                    float v0 = acc.v[i] * scale_of(g, gi, gj), v1 = acc.v[i + 1] * scale_of(g, gi, gj + 1);
                    if (g.has_bias) {
                        v0 += (float)ld(bias[g.bias_off + gj * g.bias_stride]);
                        v1 += (float)ld(bias[g.bias_off + (gj + 1) * g.bias_stride]);
                    }
                    store_pair(c + co + gi * g.c_rs + gj, act(v0), act(v1));
                } else {
                    if (gj < g.n) finish<float, TOUT>(acc.v[i], c, co + gi * g.c_rs + gj * g.c_cs, bias, g, gi, gj, act);
                    if (gj + 1 < g.n)
                        finish<float, TOUT>(acc.v[i + 1], c, co + gi * g.c_rs + (gj + 1) * g.c_cs, bias, g, gi, gj + 1,
                                            act);
                }
            }
        }
        if (c_tma && threadIdx.x % 128 == 0) bulk_wait<0>();
    }
    // The other CTA may still arrive on this one's barriers.
    if constexpr (CL > 1) cluster_sync();
#else
    __trap();  // the host launches this kernel on sm_90a only
#endif
}

// The second pass of split-K: C = act(Σ_s partial[z * splits + s] (+ C) + bias), the partial
// tiles fp32 rows of `ld` elements (n rounded up to a multiple of 4, 16-byte aligned). A thread
// takes four adjacent columns, one 16-byte load from each partial (unrolled four splits at a
// time, so their loads go out together); the last quad of a row, where n is not a multiple of
// 4, reads its columns one at a time (the padding was never written). One element a thread with
// 64-bit index arithmetic took 7.4 µs for 8 MiB on an H200, longer than cuBLAS's whole product
// of the same shape.
template <class TOUT, class F>
__device__ void gemm_splitk_reduce(const float* __restrict__ part, int splits, i64 ld, const TOUT* bias, TOUT* c,
                                   const MatmulGeometry& g, F act) {
    const i64 quads = ld / 4, per_entry = g.m * quads, total = g.batch * per_entry, mn = g.m * ld;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (i64)gridDim.x * blockDim.x) {
        const i64 z = e / per_entry, r = e - z * per_entry, i = r / quads, j = (r - i * quads) * 4;
        const float* p = part + z * splits * mn + i * ld + j;
        float vs[4] = {0.f, 0.f, 0.f, 0.f};
        if (j + 4 <= g.n) {
            float4 v = *(const float4*)p;
#pragma unroll 4
            for (int s = 1; s < splits; ++s) {
                const float4 w = *(const float4*)(p + s * mn);
                v.x += w.x;
                v.y += w.y;
                v.z += w.z;
                v.w += w.w;
            }
            vs[0] = v.x, vs[1] = v.y, vs[2] = v.z, vs[3] = v.w;
        } else {
            for (int s = 0; s < splits; ++s)
#pragma unroll
                for (int q = 0; q < 4; ++q)
                    if (j + q < g.n) vs[q] += p[s * mn + q];
        }
        i64 ao, bo, co;
        batch_offsets(g, z, ao, bo, co);
#pragma unroll
        for (int q = 0; q < 4; ++q)
            if (j + q < g.n) finish<float, TOUT>(vs[q], c, co + i * g.c_rs + (j + q) * g.c_cs, bias, g, i, j + q, act);
    }
}

// ---- few rows: streaming B ---------------------------------------------------------------------
// With m <= 16 (decoding: m is the batch of tokens) the product reads B once and does little
// else, so its time is B's bytes over the memory bandwidth; tiles of 64 or 128 rows of A would
// leave most of each `mma` empty and too few CTAs to keep enough loads in flight. This kernel
// swaps the roles: C^T = B^T A^T on `mma.m16n8k16`, 16 columns of B as the fragment's rows and
// A's m rows as its 8 (MT = 1) or 16 (MT = 2) columns. Both operands K-major, k a multiple of 8.
//
// Fragments come straight from global memory into registers: a dot product may take its terms
// in any order, so within each 32-wide k step thread (g, t) of a warp reads the eight elements
// at 8t..8t+7 of its rows with one 16-byte load, and they serve as its k pairs of two `mma`
// steps, for A and B alike (their k slots then name the same element). A warp loads U
// consecutive k steps at once (U * 64 contiguous bytes of each of its rows of B, with a hint to
// fetch 256 bytes from memory), the next U while it multiplies these. A CTA of GROUPS x PARTS
// warps covers 16 * GROUPS columns of C, each group of 16 split along k among PARTS warps (every
// PARTS-th block of U steps); the partial sums meet in shared memory before the epilogue.
__device__ __forceinline__ uint4 ld_stream(const void* p) {  // read once: no L1 allocation
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
    return r;
}

template <class T, class TOUT, int MT, int U, int GROUPS, int PARTS, class F>
__device__ void gemm_skinny(const T* __restrict__ a, const T* __restrict__ b, const TOUT* bias, TOUT* c,
                            const MatmulGeometry& g, F act) {
    constexpr int COLS = 16 * GROUPS;
    __shared__ float part[PARTS][COLS][MT * 8 + 1];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gq = lane / 4, t = lane % 4;
    const int grp = warp % GROUPS, kp = warp / GROUPS;
    const i64 n0 = (i64)blockIdx.x * COLS;
    const i64 blocks = (g.k + 32 * U - 1) / (32 * U);  // blocks of U k steps
    const i64 mine = (blocks - kp + PARTS - 1) / PARTS;  // blocks this warp takes
    for (i64 z = blockIdx.y; z < g.batch; z += gridDim.y) {
        i64 ao, bo, co;
        batch_offsets(g, z, ao, bo, co);
        // This thread's two columns of B (rows of its n x k storage) and MT rows of A.
        const i64 nb = n0 + grp * 16 + gq;
        const T* w[2] = {b + bo + nb * g.b_cs, b + bo + (nb + 8) * g.b_cs};
        const bool w_in[2] = {nb < g.n, nb + 8 < g.n};
        const T* x[MT];
        bool x_in[MT];
#pragma unroll
        for (int r = 0; r < MT; ++r) {
            x[r] = a + ao + (gq + 8 * r) * g.a_rs;
            x_in[r] = gq + 8 * r < g.m;
        }
        const uint4 zero = make_uint4(0, 0, 0, 0);
        // Two sets of registers (each named, never indexed at run time, so they stay registers).
        uint4 w0[U][2], x0[U][MT], w1[U][2], x1[U][MT];
        // Loads this warp's block j (zeros past the end of k).
        auto load = [&](uint4 (&wv)[U][2], uint4 (&xv)[U][MT], i64 j) {
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const i64 k = ((kp + PARTS * j) * U + u) * 32 + 8 * t;
                const bool in = k < g.k;
#pragma unroll
                for (int h = 0; h < 2; ++h) wv[u][h] = in && w_in[h] ? ld_stream(w[h] + k) : zero;
#pragma unroll
                for (int r = 0; r < MT; ++r) xv[u][r] = in && x_in[r] ? *(const uint4*)(x[r] + k) : zero;
            }
        };
        float acc[MT][4] = {};
        auto products = [&](const uint4 (&wv)[U][2], const uint4 (&xv)[U][MT]) {
#pragma unroll
            for (int u = 0; u < U; ++u) {
                // Rows gq and gq + 8 of the fragment; k pairs 8t + {0, 1} and {2, 3}, then {4, 5}
                // and {6, 7}.
                const uint4 r0 = wv[u][0], r8 = wv[u][1];
                const u32 fa[2][4] = {{r0.x, r8.x, r0.y, r8.y}, {r0.z, r8.z, r0.w, r8.w}};
#pragma unroll
                for (int r = 0; r < MT; ++r) {
                    const uint4 xr = xv[u][r];
                    const u32 fb[2][2] = {{xr.x, xr.y}, {xr.z, xr.w}};
                    tensor_ops::mma_16816(acc[r], fa[0], fb[0], T{});
                    tensor_ops::mma_16816(acc[r], fa[1], fb[1], T{});
                }
            }
        };
        load(w0, x0, 0);
        for (i64 j = 0; j < mine; j += 2) {
            if (j + 1 < mine) load(w1, x1, j + 1);
            products(w0, x0);
            if (j + 1 >= mine) break;
            if (j + 2 < mine) load(w0, x0, j + 2);
            products(w1, x1);
        }
        // acc[r]: C at columns gq and gq + 8 (of the group) of rows 8r + 2t and 8r + 2t + 1
        // (the fragment's rows are C's columns).
#pragma unroll
        for (int r = 0; r < MT; ++r) {
            float* p = &part[kp][grp * 16 + gq][8 * r + 2 * t];
            float* q = &part[kp][grp * 16 + gq + 8][8 * r + 2 * t];
            p[0] = acc[r][0];
            p[1] = acc[r][1];
            q[0] = acc[r][2];
            q[1] = acc[r][3];
        }
        __syncthreads();
        for (int e = threadIdx.x; e < COLS * MT * 8; e += blockDim.x) {
            const int j = e % COLS, i = e / COLS;  // neighbouring threads on neighbouring columns
            const i64 gj = n0 + j;
            if (i < g.m && gj < g.n) {
                float v = 0.f;
#pragma unroll
                for (int q = 0; q < PARTS; ++q) v += part[q][j][i];
                finish<float, TOUT>(v, c, co + i * g.c_rs + gj * g.c_cs, bias, g, i, gj, act);
            }
        }
        __syncthreads();
    }
}

}  // namespace strata

#endif  // STRATA_GEMM_CU

// MT: n8 tiles of A's rows (m <= 8 * MT).
#define STRATA_GEMM_SKINNY(T, TOUT, MT, U, GROUPS, PARTS)                                            \
    extern "C" __global__ void __launch_bounds__(32 * GROUPS * PARTS) strata_kernel(                \
        const T* __restrict__ a, const T* __restrict__ b, const TOUT* bias, TOUT* c,                   \
        strata::MatmulGeometry g) {                                                                  \
        strata::gemm_skinny<T, TOUT, MT, U, GROUPS, PARTS>(a, b, bias, c, g,                          \
                                                           [](float v) -> float { return STRATA_ACT(v); }); \
    }

#define STRATA_GEMM_TC(T, TOUT, LK, RK)                                                              \
    extern "C" __global__ void __launch_bounds__(256) strata_kernel(                                 \
        const T* __restrict__ a, const T* __restrict__ b, const TOUT* bias, TOUT* c,                   \
        strata::MatmulGeometry g) {                                                                  \
        strata::gemm_tc<T, TOUT, LK, RK>(a, b, bias, c, g, [](float v) -> float { return STRATA_ACT(v); }); \
    }

#define STRATA_GEMM_WG(T, TOUT, RK)                                                                      \
    extern "C" __global__ void __launch_bounds__(256, 1) strata_kernel(                              \
        const T* __restrict__ a, const T* __restrict__ b, const TOUT* bias, TOUT* c,                   \
        strata::MatmulGeometry g) {                                                                  \
        strata::gemm_wg<T, TOUT, RK>(a, b, bias, c, g, [](float v) -> float { return STRATA_ACT(v); }); \
    }

// CL: CTAs per cluster (1 or 2), fixed at compile time so that a plain launch forms the
// clusters. CL = 1 declares no cluster at all: declared with clusters of one, the bf16 8192³
// product ran at 0.78 of cuBLAS on an H100 where pairs ran at 0.96.
#define STRATA_CLUSTER_DIMS_1
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define STRATA_CLUSTER_DIMS_2 __cluster_dims__(2, 1, 1)
#else
#define STRATA_CLUSTER_DIMS_2
#endif
#define STRATA_CLUSTER_DIMS(CL) STRATA_CLUSTER_DIMS_##CL
#define STRATA_GEMM_WS(T, TB, TOUT, RK, CL, PP, BN)                                                      \
    extern "C" __global__ void __launch_bounds__(384, 1) STRATA_CLUSTER_DIMS(CL) strata_kernel(      \
        const __grid_constant__ strata::tensor_ops::TensorMap map_a,                                   \
        const __grid_constant__ strata::tensor_ops::TensorMap map_b,                                   \
        const __grid_constant__ strata::tensor_ops::TensorMap map_c, int a_batched, int b_batched,      \
        int c_tma, int splits, const TOUT* bias, TOUT* c, strata::MatmulGeometry g) {                \
        strata::gemm_ws<T, TB, TOUT, RK, CL, PP, BN>(map_a, map_b, map_c, a_batched, b_batched, c_tma, splits, bias, c, g, \
                                     [](float v) -> float { return STRATA_ACT(v); });                \
    }

#define STRATA_GEMM_SPLITK_REDUCE(TOUT)                                                                 \
    extern "C" __global__ void __launch_bounds__(256) strata_kernel(                                 \
        const float* __restrict__ part, int splits, long long ld, const TOUT* bias, TOUT* c,          \
        strata::MatmulGeometry g) {                                                                  \
        strata::gemm_splitk_reduce<TOUT>(part, splits, ld, bias, c, g, [](float v) -> float { return STRATA_ACT(v); }); \
    }

// gemm.cu: matmul2d. `C = act(op(A)·op(B) (+ C) + bias)` over any batch axes.
//
// - A tensor-core kernel for f16/bf16 operands (fp32 accumulation) whose matrices have a unit
//   stride in one dimension and 16-byte aligned rows: 128 x 128 block tiles, 32-deep k steps
//   through a 3-stage cp.async pipeline, eight warps of 64 x 32 running
//   `tensor_ops::Matmul2d` (mma.sync).
// - On sm_90a, when A is K-major (B either way), a warpgroup kernel on `wgmma` instead (below).
// - A SIMT kernel for everything else (f32, f64, int8 -> int32, any strides): 64 x 64 tiles,
//   4 x 4 outputs per thread.
// Both share the epilogue. The Rust side defines STRATA_ACT(v), the activation on a float or
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
    i32 pad;
    i64 batch_shape[STRATA_MAX_BATCH], a_batch[STRATA_MAX_BATCH], b_batch[STRATA_MAX_BATCH], c_batch[STRATA_MAX_BATCH];
    // A seen as m x k, B as k x n, C as m x n: (row, col) at offset + row * rs + col * cs.
    i64 a_rs, a_cs, b_rs, b_cs, c_rs, c_cs;
    i64 a_off, b_off, c_off, bias_stride, bias_off;
};

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

// The epilogue of one output element: accumulate, bias, activation, rounding store.
template <class CT, class TOUT, class F>
__device__ __forceinline__ void finish(CT v, TOUT* c, i64 pos, const TOUT* bias, const MatmulGeometry& g, i64 col,
                                       F act) {
    if (g.accumulate) v += (CT)ld(c[pos]);
    if (g.has_bias) v += (CT)ld(bias[g.bias_off + col * g.bias_stride]);
    c[pos] = St<TOUT>::from(act(v));
}

// ---- SIMT --------------------------------------------------------------------------------------
template <class TIN, class CT, class TOUT, class F>
__device__ void gemm_simt(const TIN* __restrict__ a, const TIN* __restrict__ b, const TOUT* bias, TOUT* c,
                          const MatmulGeometry& g, F act) {
    const int BM = 64, BN = 64, BK = 16;
    __shared__ CT As[BK][BM + 1];
    __shared__ CT Bs[BK][BN + 1];
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const i64 m0 = (i64)blockIdx.y * BM, n0 = (i64)blockIdx.x * BN;
    for (i64 z = blockIdx.z; z < g.batch; z += gridDim.z) {
        i64 ao, bo, co;
        batch_offsets(g, z, ao, bo, co);
        CT acc[4][4];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[i][j] = (CT)0;
        for (i64 k0 = 0; k0 < g.k; k0 += BK) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int idx = tid + e * 256;
                // A: BM rows x BK; adjacent threads on adjacent rows or columns, whichever is
                // unit-stride in memory.
                int r, p;
                if (g.a_rs == 1) { r = idx % BM; p = idx / BM; } else { p = idx % BK; r = idx / BK; }
                const i64 gr = m0 + r, gp = k0 + p;
                As[p][r] = (gr < g.m && gp < g.k) ? (CT)ld(a[ao + gr * g.a_rs + gp * g.a_cs]) : (CT)0;
                int q, s;
                if (g.b_cs == 1) { s = idx % BN; q = idx / BN; } else { q = idx % BK; s = idx / BK; }
                const i64 gq = k0 + q, gs = n0 + s;
                Bs[q][s] = (gq < g.k && gs < g.n) ? (CT)ld(b[bo + gq * g.b_rs + gs * g.b_cs]) : (CT)0;
            }
            __syncthreads();
#pragma unroll
            for (int p = 0; p < BK; ++p) {
                CT av[4], bv[4];
#pragma unroll
                for (int i = 0; i < 4; ++i) av[i] = As[p][ty * 4 + i];
#pragma unroll
                for (int j = 0; j < 4; ++j) bv[j] = Bs[p][tx * 4 + j];
#pragma unroll
                for (int i = 0; i < 4; ++i)
#pragma unroll
                    for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
            }
            __syncthreads();
        }
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const i64 gi = m0 + ty * 4 + i, gj = n0 + tx * 4 + j;
                if (gi < g.m && gj < g.n) finish<CT, TOUT>(acc[i][j], c, co + gi * g.c_rs + gj * g.c_cs, bias, g, gj, act);
            }
    }
}

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
                        finish<float, TOUT>(acc.v[i][j][e], c, co + gi * g.c_rs + gj * g.c_cs, bias, g, gj, act);
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
            if (gi < g.m && gj < g.n) finish<float, TOUT>(acc.v[i], c, co + gi * g.c_rs + gj * g.c_cs, bias, g, gj, act);
        }
    }
#else
    __trap();  // the host launches this kernel on sm_90a only
#endif
}

}  // namespace strata

#endif  // STRATA_GEMM_CU

#define STRATA_GEMM_SIMT(TIN, CT, TOUT)                                                              \
    extern "C" __global__ void __launch_bounds__(256) strata_kernel(                                 \
        const TIN* __restrict__ a, const TIN* __restrict__ b, const TOUT* bias, TOUT* c,               \
        strata::MatmulGeometry g) {                                                                  \
        strata::gemm_simt<TIN, CT, TOUT>(a, b, bias, c, g, [](CT v) -> CT { return STRATA_ACT(v); }); \
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

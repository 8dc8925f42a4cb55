// attention.cu: scaled dot-product attention, softmax(q·kᵀ·scale + mask)·v, as an online
// ("flash") softmax: the general kernel, for every type, head size up to 256, any strides, GQA,
// causal or explicit masks (bool or additive), accumulating in f32 (f64 for f64).
//
// A warp owns one query row. Its keys go by in chunks of 32, one key a lane: each lane takes
// the whole dot product of its key with the row (staged in shared memory), so a chunk costs
// one maximum and one sum across the warp, not a reduction per key; the row's probabilities
// are then broadcast lane to lane and each lane accumulates its own columns of the output
// (column lane + 32·t, t < 8). Only the running maximum, the running sum and those eight
// accumulators live from chunk to chunk.

#ifndef STRATA_ATTENTION_CU
#define STRATA_ATTENTION_CU

#define STRATA_ATTENTION_WARPS 4
#define STRATA_ATTENTION_MAX_D 256

struct AttentionGeometry {
    i64 batch, hq, lq, d, hkv, lk, dv;
    i64 q[5], k[5], v[5], out[5], mask[5];  // offset, then strides of [batch, head, row, column]
    float scale;
    i32 mask_kind;  // 0: none, 1: causal, 2: additive (the operands' type), 3: bool
};

namespace strata {

__device__ __forceinline__ float exp_of(float x) { return expf(x); }
__device__ __forceinline__ double exp_of(double x) { return exp(x); }
__device__ __forceinline__ float max_of(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double max_of(double a, double b) { return fmax(a, b); }

template <class A> __device__ __forceinline__ A warp_max(A v) {
#pragma unroll
    for (int d = 16; d > 0; d >>= 1) v = max_of(v, __shfl_xor_sync(0xffffffffu, v, d));
    return v;
}
template <class A> __device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
    for (int d = 16; d > 0; d >>= 1) v += __shfl_xor_sync(0xffffffffu, v, d);
    return v;
}
template <class T, class A>
__device__ __forceinline__ void attention_rows(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                                               const void* __restrict__ mask, T* __restrict__ out,
                                               const AttentionGeometry& g) {
    __shared__ A rows[STRATA_ATTENTION_WARPS][STRATA_ATTENTION_MAX_D];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const A neg_inf = -(A)STRATA_INF;
    A* qr = rows[warp];
    const i64 total = g.batch * g.hq * g.lq;
    const i64 group = g.hq / g.hkv;
    const i64 shift = g.lk - g.lq;
    for (i64 row = (i64)blockIdx.x * STRATA_ATTENTION_WARPS + warp; row < total;
         row += (i64)gridDim.x * STRATA_ATTENTION_WARPS) {
        const i64 i = row % g.lq, h = (row / g.lq) % g.hq, b = row / (g.lq * g.hq), hk = h / group;
        __syncwarp();
        for (i64 x = lane; x < g.d; x += 32) qr[x] = (A)ld(q[g.q[0] + b * g.q[1] + h * g.q[2] + i * g.q[3] + x * g.q[4]]);
        __syncwarp();
        const T* kb = k + g.k[0] + b * g.k[1] + hk * g.k[2];
        const T* vb = v + g.v[0] + b * g.v[1] + hk * g.v[2];
        // Bottom-right alignment: query i sees keys j <= i + (lk - lq).
        const i64 key_end = g.mask_kind == 1 ? min(max(i + shift + 1, (i64)0), g.lk) : g.lk;
        A m = neg_inf, l = 0, o[8];
#pragma unroll
        for (int t = 0; t < 8; ++t) o[t] = 0;
        for (i64 j0 = 0; j0 < key_end; j0 += 32) {
            const i64 j = j0 + lane;
            A s = neg_inf;
            if (j < key_end) {
                const T* kr = kb + j * g.k[3];
                A acc = 0;
                for (i64 x = 0; x < g.d; ++x) acc += qr[x] * (A)ld(kr[x * g.k[4]]);
                s = acc * (A)g.scale;
                if (g.mask_kind >= 2) {
                    const i64 at = g.mask[0] + b * g.mask[1] + h * g.mask[2] + i * g.mask[3] + j * g.mask[4];
                    if (g.mask_kind == 3) {
                        if (!((const u8*)mask)[at]) s = neg_inf;
                    } else {
                        s += (A)ld(((const T*)mask)[at]);
                    }
                }
            }
            const A m_new = max_of(m, warp_max(s));
            if (m_new == neg_inf) continue;  // nothing visible yet: the same in every lane
            const A p = s == neg_inf ? (A)0 : exp_of(s - m_new);
            const A alpha = m == neg_inf ? (A)0 : exp_of(m - m_new);
            l = l * alpha + warp_sum(p);
#pragma unroll
            for (int t = 0; t < 8; ++t) o[t] *= alpha;
            const int keys = (int)min((i64)32, key_end - j0);
            for (int jj = 0; jj < keys; ++jj) {
                const A pj = __shfl_sync(0xffffffffu, p, jj);
                if (pj == (A)0) continue;
                const T* vr = vb + (j0 + jj) * g.v[3];
#pragma unroll
                for (int t = 0; t < 8; ++t) {
                    const i64 x = lane + 32 * t;
                    if (x < g.dv) o[t] += pj * (A)ld(vr[x * g.v[4]]);
                }
            }
            m = m_new;
        }
        // A row that sees no key gets zeros.
        const A inv = l == (A)0 ? (A)0 : (A)1 / l;
        T* orow = out + g.out[0] + b * g.out[1] + h * g.out[2] + i * g.out[3];
#pragma unroll
        for (int t = 0; t < 8; ++t) {
            const i64 x = lane + 32 * t;
            if (x < g.dv) orow[x * g.out[4]] = St<T>::from(o[t] * inv);
        }
    }
}

}  // namespace strata

// T: the operands' type; A: the accumulator's (float, or double for double).
#define STRATA_ATTENTION(T, A)                                                                          \
    extern "C" __global__ void __launch_bounds__(32 * STRATA_ATTENTION_WARPS)                          \
        strata_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,       \
                      const void* __restrict__ mask, T* __restrict__ out, const AttentionGeometry g) { \
        strata::attention_rows<T, A>(q, k, v, mask, out, g);                                           \
    }

#endif  // STRATA_ATTENTION_CU

// The tensor-core kernel needs tensor_ops.cuh, which only its sources include.
#if defined(STRATA_TENSOR_OPS_CUH) && !defined(STRATA_FLASH_ATTENTION_CU)
#define STRATA_FLASH_ATTENTION_CU

// ---- the tensor-core kernel (FlashAttention-2 on mma.sync) -------------------------------------
// For 16-bit operands whose rows are contiguous and 16-byte aligned, heads of 32, 64 or 128
// (d = dv): four warps own RM query rows each (a block of 4·RM), and the keys go by in blocks of
// BN staged in shared memory by cp.async. Each warp computes S = Q·Kᵀ on tensor cores (Q's
// fragments held in registers, or read from shared memory for each block of keys where the
// registers are short: QS), updates its rows' running maximum and sum in registers, and feeds the
// probabilities straight from S's accumulators into P·V as the left operand
// (`Dest::to_left_input`), so S never leaves registers. V's load overlaps S = Q·Kᵀ and the next
// K's load overlaps P·V. Masks are applied to S element by element; causal blocks wholly above
// the diagonal are skipped. Softmax runs in base 2 (the scale folded with log2 e).

namespace strata {

__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// Query i's score against key j (x = q·k), scaled and in base 2, or -inf where a mask hides it
// (keys past the end always): for blocks whose masks must be checked element by element.
template <class T>
__device__ __forceinline__ float masked_score(float x, const AttentionGeometry& g, const void* __restrict__ mask, i64 b,
                                              i64 h, i64 i, i64 j) {
    float y = x * g.scale;
    if (j >= g.lk || (g.mask_kind == 1 && j > i + (g.lk - g.lq))) return -STRATA_INF;
    if (g.mask_kind >= 2 && i < g.lq) {
        const i64 at = g.mask[0] + b * g.mask[1] + h * g.mask[2] + i * g.mask[3] + j * g.mask[4];
        if (g.mask_kind == 3) {
            if (!((const u8*)mask)[at]) return -STRATA_INF;
        } else {
            y += ld(((const T*)mask)[at]);
        }
    }
    return y * 1.4426950408889634f;  // log2 e
}

// What a block of the tensor-core kernels takes: BM queries of one head of one batch entry
// (the longest, causal, blocks first, so that the tail of the grid is the short ones), the key
// head of their group, and the blocks of BN keys that some row of them can see.
struct FlashBlock {
    i64 b, h, hk, q0;
    int key_blocks;
    template <int BM, int BN> __device__ static FlashBlock of(const AttentionGeometry& g) {
        const i64 q_blocks = (g.lq + BM - 1) / BM;
        const i64 qb = q_blocks - 1 - (i64)blockIdx.x % q_blocks, bh = (i64)blockIdx.x / q_blocks;
        const i64 h = bh % g.hq, q0 = qb * BM;
        // Bottom-right alignment: query i sees keys j <= i + (lk - lq).
        const i64 key_end = g.mask_kind == 1 ? min(max(q0 + BM + (g.lk - g.lq), (i64)0), g.lk) : g.lk;
        return FlashBlock{bh / g.hq, h, h / (g.hq / g.hkv), q0, (int)((key_end + BN - 1) / BN)};
    }
};

template <class T, int D, int RM, int BN, bool QS>
__device__ __forceinline__ void flash_attention(const T* __restrict__ q, const T* __restrict__ k,
                                                const T* __restrict__ v, const void* __restrict__ mask,
                                                T* __restrict__ out, const AttentionGeometry& g) {
    using namespace tensor_ops;
    constexpr int WARPS = 4, BM = WARPS * RM, THREADS = 32 * WARPS;
    constexpr float LOG2E = 1.4426950408889634f;
    extern __shared__ __align__(128) unsigned char flash_smem[];
    T* smem = reinterpret_cast<T*>(flash_smem);
    const Tile<T, BM, D> tq{smem};
    const Tile<T, BN, D> tk{smem + BM * D}, tv{smem + BM * D + BN * D};

    const int warp = threadIdx.x / 32;
    const FlashBlock fb = FlashBlock::of<BM, BN>(g);
    const i64 b = fb.b, h = fb.h, hk = fb.hk, q0 = fb.q0, shift = g.lk - g.lq;
    const int key_blocks = fb.key_blocks;

    const T* qg = q + g.q[0] + b * g.q[1] + h * g.q[2] + q0 * g.q[3];
    const T* kg = k + g.k[0] + b * g.k[1] + hk * g.k[2];
    const T* vg = v + g.v[0] + b * g.v[1] + hk * g.v[2];
    const float scale = g.scale * LOG2E;

    using Qk = Matmul2d<RM, BN, true, true>;
    using Pv = Matmul2d<RM, D, true, false>;
    Left<T, RM, D> qf;
    Dest<RM, D> o;
    o.fill(0.f);
    float m[RM / 16][2], l[RM / 16][2];
#pragma unroll
    for (int i = 0; i < RM / 16; ++i) m[i][0] = m[i][1] = -STRATA_INF, l[i][0] = l[i][1] = 0.f;

    if (key_blocks > 0) {
        load_async<T, BM, D, THREADS>(tq, qg, g.q[3], (int)min((i64)BM, g.lq - q0), D);
        load_async<T, BN, D, THREADS>(tk, kg, g.k[3], (int)min((i64)BN, g.lk), D);
        commit();
    }
    for (int kb = 0; kb < key_blocks; ++kb) {
        const i64 k0 = (i64)kb * BN;
        const int rows = (int)min((i64)BN, g.lk - k0);
        wait<0>();
        __syncthreads();  // K (and Q) landed; every warp is done with the previous V
        load_async<T, BN, D, THREADS>(tv, vg + k0 * g.v[3], g.v[3], rows, D);
        commit();
        if (!QS && kb == 0) {
#pragma unroll
            for (int i = 0; i < RM / 16; ++i)
#pragma unroll
                for (int x = 0; x < D / 16; ++x) Qk::load_left(qf.r[i][x], tq, warp * RM + i * 16, x * 16);
        }
        Dest<RM, BN> s;
        s.fill(0.f);
        if constexpr (QS) Qk::template run<D, T>(s, tq, warp * RM, tk, 0, 0);
        else Qk::template run<D, T>(s, qf, tk, 0, 0);

        // Scale (base 2) and mask. Keys past the end are always hidden; the causal diagonal and
        // explicit masks only where the block needs them.
        const i64 row0 = q0 + warp * RM;
        const bool diagonal = g.mask_kind == 1 && k0 + BN - 1 > row0 + shift;
        if (g.mask_kind >= 2 || diagonal || k0 + BN > g.lk) {
            s.map([&](float x, int r, int c) { return masked_score<T>(x, g, mask, b, h, row0 + r, k0 + c); });
        } else {
            s.map([&](float x, int, int) { return x * scale; });
        }

        // Online softmax: rescale what was accumulated by 2^(m_old - m_new).
        float mx[RM / 16][2], sum[RM / 16][2], alpha[RM / 16][2], base[RM / 16][2];
        s.reduce_rows(mx, [](float a, float c) { return fmaxf(a, c); });
#pragma unroll
        for (int i = 0; i < RM / 16; ++i)
#pragma unroll
            for (int hh = 0; hh < 2; ++hh) {
                const float m_new = fmaxf(m[i][hh], mx[i][hh]);
                // A row that has seen no key yet keeps exponent base 0: its p are all 0.
                base[i][hh] = m_new == -STRATA_INF ? 0.f : m_new;
                alpha[i][hh] = fast_exp2(m[i][hh] - base[i][hh]);
                m[i][hh] = m_new;
            }
        s.map([&](float x, int r, int) {
            const int i = r / 16, hh = (r % 16) / 8;
            return fast_exp2(x - base[i][hh]);
        });
        s.reduce_rows(sum, [](float a, float c) { return a + c; });
#pragma unroll
        for (int i = 0; i < RM / 16; ++i)
#pragma unroll
            for (int hh = 0; hh < 2; ++hh) l[i][hh] = l[i][hh] * alpha[i][hh] + sum[i][hh];
        o.map([&](float x, int r, int) {
            const int i = r / 16, hh = (r % 16) / 8;
            return x * alpha[i][hh];
        });
        const Left<T, RM, BN> p = s.template to_left_input<T>();

        wait<0>();
        __syncthreads();  // V landed; every warp is done with K
        if (kb + 1 < key_blocks) {
            const i64 k1 = k0 + BN;
            load_async<T, BN, D, THREADS>(tk, kg + k1 * g.k[3], g.k[3], (int)min((i64)BN, g.lk - k1), D);
            commit();
        }
        Pv::template run<BN, T>(o, p, tv, 0, 0);
    }

    // Normalize and store; a row that saw no key gets zeros.
    T* og = out + g.out[0] + b * g.out[1] + h * g.out[2];
    const i64 row0 = q0 + warp * RM;
    float inv[RM / 16][2];
#pragma unroll
    for (int i = 0; i < RM / 16; ++i)
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) inv[i][hh] = l[i][hh] == 0.f ? 0.f : 1.f / l[i][hh];
#pragma unroll
    for (int i = 0; i < RM / 16; ++i)
#pragma unroll
        for (int j = 0; j < D / 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int r = Dest<RM, D>::row(i, e), c = Dest<RM, D>::col(j, e);
                const i64 row = row0 + r;
                if (row < g.lq) og[row * g.out[3] + c * g.out[4]] = St<T>::from(o.v[i][j][e] * inv[i][e >= 2]);
            }
}

// ---- the warpgroup kernels (FlashAttention on wgmma, sm_90a) --------------------------------------
// Heads of 64 or 128 on Hopper's warpgroup instructions: WG warpgroups own 64 query rows each,
// and the keys go by in blocks of BN through rings of 128-byte-swizzled K and V tiles. Each
// warpgroup computes S = Q·Kᵀ with `wgmma` from shared memory (Q's and K's tiles of 64
// columns), applies the mask and the online softmax to S in registers, and multiplies P·V with P
// straight from S's accumulators as `wgmma`'s register operand and V read MN-major from its
// tiles. As in FlashAttention-3, a warpgroup overlaps the softmax with the tensor cores: it
// issues the next block's S and this block's P·V together and works out the next softmax while
// P·V runs. Two ways to fill the rings: every thread's cp.async and a block-wide barrier per
// block of keys (`flash_attention_wg`), or the copy engine (TMA) driven by a producer warpgroup
// through transaction barriers, so that no consumer waits for loads or for a barrier of the
// whole block (`flash_attention_tma`; its consumers wait only for their turn on the tensor
// cores).

#if defined(STRATA_HAS_WGMMA)
// What a warpgroup's rows carry from block to block: the running maximum and sum of its two
// rows a thread, and where they are.
struct WgRows {
    const AttentionGeometry& g;
    const void* mask;
    i64 b, h, row0, shift;
    float m[2] = {-STRATA_INF, -STRATA_INF}, l[2] = {0.f, 0.f};

    // The scores of the keys from k0 into probabilities (base 2), the running maximum and sum
    // updated; `alpha` rescales what was accumulated before.
    template <class T, int BN> __device__ void softmax(tensor_ops::WgDest<BN>& s, i64 k0, float (&alpha)[2]) {
        constexpr float LOG2E = 1.4426950408889634f;
        const bool diagonal = g.mask_kind == 1 && k0 + BN - 1 > row0 + shift;
        if (g.mask_kind >= 2 || diagonal || k0 + BN > g.lk) {
            s.map([&](float x, int r, int c) { return masked_score<T>(x, g, mask, b, h, row0 + r, k0 + c); });
        } else {
            const float scale = g.scale * LOG2E;
            s.map([&](float x, int, int) { return x * scale; });
        }
        float mx[2], sum[2], base[2];
        s.reduce_rows(mx, [](float a, float c) { return fmaxf(a, c); });
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
            const float m_new = fmaxf(m[hh], mx[hh]);
            // A row that has seen no key yet keeps exponent base 0: its p are all 0.
            base[hh] = m_new == -STRATA_INF ? 0.f : m_new;
            alpha[hh] = fast_exp2(m[hh] - base[hh]);
            m[hh] = m_new;
        }
        s.map([&](float x, int r, int) { return fast_exp2(x - base[(r % 16) / 8]); });
        s.reduce_rows(sum, [](float a, float c) { return a + c; });
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) l[hh] = l[hh] * alpha[hh] + sum[hh];
    }

    // Normalizes and stores the output rows; a row that saw no key gets zeros.
    template <class T, int D> __device__ void store(const tensor_ops::WgDest<D>& o, T* __restrict__ out) const {
        T* og = out + g.out[0] + b * g.out[1] + h * g.out[2];
        float inv[2];
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) inv[hh] = l[hh] == 0.f ? 0.f : 1.f / l[hh];
#pragma unroll
        for (int i = 0; i < D / 2; ++i) {
            const i64 row = row0 + tensor_ops::WgDest<D>::row(i);
            if (row < g.lq)
                og[row * g.out[3] + tensor_ops::WgDest<D>::col(i) * g.out[4]] = St<T>::from(o.v[i] * inv[(i % 4) >= 2]);
        }
    }
};
#endif

template <class T, int D, int BN, int WG>
__device__ __forceinline__ void flash_attention_wg(const T* __restrict__ q, const T* __restrict__ k,
                                                   const T* __restrict__ v, const void* __restrict__ mask,
                                                   T* __restrict__ out, const AttentionGeometry& g) {
#if defined(STRATA_HAS_WGMMA)
    using namespace tensor_ops;
    constexpr int BM = 64 * WG, THREADS = 128 * WG, DB = D / 64;
    // Elements of a 64 x 64 tile, of a K stage (DB tiles [BN][64]) and of a V stage (BN/64
    // slabs of DB tiles [64 keys][64 columns]).
    constexpr int T64 = 64 * 64, KS = DB * BN * 64, VS = BN * D;
    extern __shared__ u8 flash_wg_smem[];
    T* sq = (T*)(((size_t)flash_wg_smem + 1023) & ~(size_t)1023);  // WG x DB tiles [64][64]
    T* sk = sq + WG * DB * T64;                                       // two K stages
    T* sv = sk + 2 * KS;                                              // two V stages

    const int wgi = threadIdx.x / 128;
    const FlashBlock fb = FlashBlock::of<BM, BN>(g);
    const i64 b = fb.b, h = fb.h, hk = fb.hk, q0 = fb.q0, shift = g.lk - g.lq;
    const int key_blocks = fb.key_blocks;
    WgRows rows{g, mask, b, h, q0 + 64 * wgi, shift};

    const T* qg = q + g.q[0] + b * g.q[1] + h * g.q[2] + q0 * g.q[3];
    const T* kg = k + g.k[0] + b * g.k[1] + hk * g.k[2];
    const T* vg = v + g.v[0] + b * g.v[1] + hk * g.v[2];

    const auto load_k = [&](int kb) {
        const i64 k0 = (i64)kb * BN;
        const int n = (int)min((i64)BN, g.lk - k0);
#pragma unroll
        for (int x = 0; x < DB; ++x)
            load_async<T, BN, 64, THREADS>(Tile<T, BN, 64>{sk + (kb & 1) * KS + x * BN * 64},
                                           kg + k0 * g.k[3] + 64 * x, g.k[3], n, 64);
    };
    const auto load_v = [&](int kb) {
        const i64 k0 = (i64)kb * BN;
        const int n = (int)min((i64)BN, g.lk - k0);
#pragma unroll
        for (int sl = 0; sl < BN / 64; ++sl) {
            const int r = max(0, min(64, n - 64 * sl));
#pragma unroll
            for (int x = 0; x < DB; ++x)
                load_async<T, 64, 64, THREADS>(Tile<T, 64, 64>{sv + (kb & 1) * VS + (sl * DB + x) * T64},
                                               r > 0 ? vg + (k0 + 64 * sl) * g.v[3] + 64 * x : vg, g.v[3], r, 64);
        }
    };
    // S = Q·Kᵀ for block kb, issued (DB groups of products).
    const auto scores = [&](WgDest<BN>& s, int kb) {
        s.fill(0.f);
#pragma unroll
        for (int x = 0; x < DB; ++x)
            Matmul2d<64, BN, true, true, Warpgroup>::template run<64, T>(s, sq + (wgi * DB + x) * T64,
                                                                         sk + (kb & 1) * KS + x * BN * 64);
    };

    WgDest<D> o;
    o.fill(0.f);
    if (key_blocks > 0) {
#pragma unroll
        for (int w = 0; w < WG; ++w) {
            const int r = (int)max((i64)0, min((i64)64, g.lq - q0 - 64 * w));
#pragma unroll
            for (int x = 0; x < DB; ++x)
                load_async<T, 64, 64, THREADS>(Tile<T, 64, 64>{sq + (w * DB + x) * T64},
                                               r > 0 ? qg + 64 * w * g.q[3] + 64 * x : qg, g.q[3], r, 64);
        }
        load_k(0);
        commit();
        if (key_blocks > 1) load_k(1);
        load_v(0);
        commit();
        wait<1>();  // Q and the first K
        fence_proxy_async();
        __syncthreads();
        WgDest<BN> s;
        scores(s, 0);
        wgmma_wait<0>();
        s.fence();
        float alpha[2];
        rows.template softmax<T, BN>(s, 0, alpha);  // (nothing accumulated yet to rescale)
        WgLeft<T, BN> p = s.template to_left_input<T>();
        using Pv = Matmul2d<64, D, true, false, Warpgroup>;
        // The last block's P·V is peeled off: with the next S issued on every pass, ptxas sees
        // which group `wgmma_wait<1>` leaves in flight and does not serialize them (C7514).
        for (int kb = 0; kb + 1 < key_blocks; ++kb) {
            // K of the next block and V of this one landed, and both warpgroups are done with
            // the stages the next loads fill (K of this block, V of the last).
            wait<0>();
            fence_proxy_async();
            __syncthreads();
            if (kb + 2 < key_blocks) load_k(kb + 2);
            load_v(kb + 1);
            commit();
            scores(s, kb + 1);
            Pv::template run<BN, T>(o, p, sv + (kb & 1) * VS);
            wgmma_wait<1>();  // the scores (committed first)
            s.fence();
            rows.template softmax<T, BN>(s, (i64)(kb + 1) * BN, alpha);
            wgmma_wait<0>();
            o.fence();
            p.fence();  // P's registers stay P's until the product that reads them is done
            o.map([&](float x, int r, int) { return x * alpha[(r % 16) / 8]; });
            p = s.template to_left_input<T>();
        }
        wait<0>();
        fence_proxy_async();
        __syncthreads();
        Pv::template run<BN, T>(o, p, sv + ((key_blocks - 1) & 1) * VS);
        wgmma_wait<0>();
        o.fence();
    }
    wait<0>();
    rows.template store<T, D>(o, out);
#else
    __trap();  // the host launches this kernel on sm_90a only
#endif
}

// The copy engine's form: WG consumer warpgroups and a producer warpgroup, whose one thread
// loads Q once and then K and V a block at a time into S-stage rings, each stage with a full
// barrier (its bytes landed) and an empty one (every consumer warp is done with it). The
// tensor maps view Q, K and V as [batch][heads][rows][d] in boxes of 64 x 64. PP (ping-pong):
// the consumers take turns to issue their products, through named barriers 1..WG, so that one
// warpgroup's softmax runs while another's products hold the tensor cores.
template <class T, int D, int BN, int WG, int S, bool PP>
__device__ __forceinline__ void flash_attention_tma(const tensor_ops::TensorMap& map_q,
                                                    const tensor_ops::TensorMap& map_k,
                                                    const tensor_ops::TensorMap& map_v, const void* __restrict__ mask,
                                                    T* __restrict__ out, const AttentionGeometry& g) {
#if defined(STRATA_HAS_WGMMA)
    using namespace tensor_ops;
    constexpr int BM = 64 * WG, DB = D / 64;
    constexpr int T64 = 64 * 64, KS = DB * BN * 64, VS = BN * D;
    extern __shared__ u8 flash_tma_smem[];
    T* sq = (T*)(((size_t)flash_tma_smem + 1023) & ~(size_t)1023);  // WG x DB tiles [64][64]
    T* sk = sq + WG * DB * T64;                                        // S K stages
    T* sv = sk + S * KS;                                               // S V stages
    u64* bars = (u64*)(sv + S * VS);
    u64 *full_k = bars, *full_v = bars + S, *empty_k = bars + 2 * S, *empty_v = bars + 3 * S, *full_q = bars + 4 * S;

    const int wgi = threadIdx.x / 128;
    const FlashBlock fb = FlashBlock::of<BM, BN>(g);
    const i64 b = fb.b, h = fb.h, hk = fb.hk, q0 = fb.q0, shift = g.lk - g.lq;
    const int key_blocks = fb.key_blocks;

    if (threadIdx.x == 0) {
        for (int s = 0; s < S; ++s) {
            mbar_init(&full_k[s], 1);
            mbar_init(&full_v[s], 1);
            mbar_init(&empty_k[s], 4 * WG);
            mbar_init(&empty_v[s], 4 * WG);
        }
        mbar_init(full_q, 1);
        mbar_init_fence();
    }
    __syncthreads();

    if (wgi == WG) {
        // The producer: one thread issues every load.
        regs_release<24>();
        if (threadIdx.x != WG * 128 || key_blocks == 0) return;
        mbar_expect_tx(full_q, WG * DB * T64 * sizeof(T));
        for (int w = 0; w < WG; ++w)
            for (int x = 0; x < DB; ++x)
                tma_load_4d(sq + (w * DB + x) * T64, map_q, full_q, 64 * x, (int)q0 + 64 * w, (int)h, (int)b);
        for (int kb = 0; kb < key_blocks; ++kb) {
            const int s = kb % S, k0 = kb * BN;
            const u32 phase = ((kb / S) & 1) ^ 1;  // a fresh barrier's previous phase counts as done
            mbar_wait(&empty_k[s], phase);
            mbar_expect_tx(&full_k[s], KS * sizeof(T));
            for (int x = 0; x < DB; ++x)
                for (int r = 0; r < BN / 64; ++r)
                    tma_load_4d(sk + s * KS + x * BN * 64 + r * T64, map_k, &full_k[s], 64 * x, k0 + 64 * r, (int)hk,
                                (int)b);
            mbar_wait(&empty_v[s], phase);
            mbar_expect_tx(&full_v[s], VS * sizeof(T));
            for (int sl = 0; sl < BN / 64; ++sl)
                for (int x = 0; x < DB; ++x)
                    tma_load_4d(sv + s * VS + (sl * DB + x) * T64, map_v, &full_v[s], 64 * x, k0 + 64 * sl, (int)hk,
                                (int)b);
        }
        return;
    }

    regs_acquire<WG == 3 ? 160 : 232>();
    WgRows rows{g, mask, b, h, q0 + 64 * wgi, shift};
    const bool leader = threadIdx.x % 32 == 0;
    // Warpgroup w waits on barrier 1 + w (its own 128 threads and the 128 of the one before it
    // arrive there) and hands the turn on; the last one starts the first round and skips its
    // last hand-over, so every barrier sees as many arrivals as waits.
    const auto turn = [&] {
        if constexpr (PP) named_barrier(1 + wgi, 256);
    };
    const auto pass = [&](bool last) {
        if constexpr (PP)
            if (!(last && wgi == WG - 1)) named_arrive(1 + (wgi + 1) % WG, 256);
    };
    if (PP && key_blocks > 0 && wgi == WG - 1) named_arrive(1, 256);
    const auto scores = [&](WgDest<BN>& s, int kb) {
        s.fill(0.f);
#pragma unroll
        for (int x = 0; x < DB; ++x)
            Matmul2d<64, BN, true, true, Warpgroup>::template run<64, T>(s, sq + (wgi * DB + x) * T64,
                                                                         sk + (kb % S) * KS + x * BN * 64);
    };
    WgDest<D> o;
    o.fill(0.f);
    if (key_blocks > 0) {
        mbar_wait(full_q, 0);
        mbar_wait(&full_k[0], 0);
        WgDest<BN> s;
        turn();
        scores(s, 0);
        pass(false);
        wgmma_wait<0>();
        s.fence();
        if (leader) mbar_arrive(&empty_k[0]);
        float alpha[2];
        rows.template softmax<T, BN>(s, 0, alpha);
        WgLeft<T, BN> p = s.template to_left_input<T>();
        using Pv = Matmul2d<64, D, true, false, Warpgroup>;
        for (int kb = 0; kb + 1 < key_blocks; ++kb) {
            const int sn = (kb + 1) % S, sc = kb % S;
            mbar_wait(&full_k[sn], ((kb + 1) / S) & 1);
            mbar_wait(&full_v[sc], (kb / S) & 1);
            turn();
            scores(s, kb + 1);
            Pv::template run<BN, T>(o, p, sv + sc * VS);
            pass(false);
            wgmma_wait<1>();  // the scores (committed first)
            s.fence();
            if (leader) mbar_arrive(&empty_k[sn]);
            rows.template softmax<T, BN>(s, (i64)(kb + 1) * BN, alpha);
            wgmma_wait<0>();
            o.fence();
            p.fence();
            if (leader) mbar_arrive(&empty_v[sc]);
            o.map([&](float x, int r, int) { return x * alpha[(r % 16) / 8]; });
            p = s.template to_left_input<T>();
        }
        const int last = key_blocks - 1;
        mbar_wait(&full_v[last % S], (last / S) & 1);
        turn();
        Pv::template run<BN, T>(o, p, sv + (last % S) * VS);
        pass(true);
        wgmma_wait<0>();
        o.fence();
    }
    rows.template store<T, D>(o, out);
#else
    __trap();  // the host launches this kernel on sm_90a only
#endif
}

}  // namespace strata

// The warpgroup kernels (sm_90a): T f16 or bf16, D 64 or 128, BN keys a block (64 or 128), WG
// warpgroups of 64 query rows; the copy engine's form with S stages and a producer warpgroup,
// PP: the consumers' products in turns.
#define STRATA_FLASH_ATTENTION_WG(T, D, BN, WG)                                                        \
    extern "C" __global__ void __launch_bounds__(128 * WG, 1)                                          \
        strata_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,       \
                      const void* __restrict__ mask, T* __restrict__ out, const AttentionGeometry g) { \
        strata::flash_attention_wg<T, D, BN, WG>(q, k, v, mask, out, g);                               \
    }
#define STRATA_FLASH_ATTENTION_TMA(T, D, BN, WG, S, PP)                                                \
    extern "C" __global__ void __launch_bounds__(128 * (WG + 1), 1)                                    \
        strata_kernel(const __grid_constant__ strata::tensor_ops::TensorMap map_q,                     \
                      const __grid_constant__ strata::tensor_ops::TensorMap map_k,                     \
                      const __grid_constant__ strata::tensor_ops::TensorMap map_v,                     \
                      const void* __restrict__ mask, T* __restrict__ out, const AttentionGeometry g) { \
        strata::flash_attention_tma<T, D, BN, WG, S, PP>(map_q, map_k, map_v, mask, out, g);           \
    }

// T: f16 or bf16; D: the head size (32, 64 or 128); RM: query rows a warp (16 or 32); BN: keys a
// block (32 or 64); QS: Q's fragments read from shared memory for each block of keys rather
// than held in registers.
#define STRATA_FLASH_ATTENTION(T, D, RM, BN, QS)                                                       \
    extern "C" __global__ void __launch_bounds__(128)                                                  \
        strata_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,       \
                      const void* __restrict__ mask, T* __restrict__ out, const AttentionGeometry g) { \
        strata::flash_attention<T, D, RM, BN, QS>(q, k, v, mask, out, g);                              \
    }
#endif  // STRATA_FLASH_ATTENTION_CU

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

// sort.cu: argsort of lanes, a bitonic sort in shared memory (and global memory for long lanes).
//
// Each element becomes a 64-bit key whose unsigned order is the values' order (floats by
// value, every NaN last, -0.0 equal to 0.0; integers by value), paired with its position. The
// pairs are compared as (key, position), which makes the bitonic network (not stable by itself)
// give exactly the stable order NumPy's `kind="stable"` gives. A lane of up to STRATA_SORT_MAX
// elements is sorted by one block in shared memory; a longer one is cut into blocks of that
// size, sorted in shared memory in alternating directions (as the network's first stages
// would), and each later stage runs its long strides as passes over scratch pairs in global
// memory (STRATA_ARGSORT_STRIDE) and its short ones in shared memory again, block by block.
#ifndef STRATA_SORT_CU
#define STRATA_SORT_CU

#define STRATA_SORT_MAX 4096

namespace strata {
__device__ __forceinline__ u64 sort_key_f(double v) {
    if (isnan(v)) return 0xffffffffffffffffull;
    const u64 b = (u64)__double_as_longlong(v + 0.0);  // -0.0 + 0.0 is +0.0
    return (b >> 63) ? ~b : (b | 0x8000000000000000ull);
}
__device__ __forceinline__ u64 sort_key(float v) { return sort_key_f((double)v); }
__device__ __forceinline__ u64 sort_key(double v) { return sort_key_f(v); }
__device__ __forceinline__ u64 sort_key(f16 v) { return sort_key_f((double)ld(v)); }
__device__ __forceinline__ u64 sort_key(bf16 v) { return sort_key_f((double)ld(v)); }
__device__ __forceinline__ u64 sort_key(i8 v) { return (u64)(i64)v ^ 0x8000000000000000ull; }
__device__ __forceinline__ u64 sort_key(i16 v) { return (u64)(i64)v ^ 0x8000000000000000ull; }
__device__ __forceinline__ u64 sort_key(i32 v) { return (u64)(i64)v ^ 0x8000000000000000ull; }
__device__ __forceinline__ u64 sort_key(i64 v) { return (u64)v ^ 0x8000000000000000ull; }
__device__ __forceinline__ u64 sort_key(u8 v) { return (u64)v; }
__device__ __forceinline__ u64 sort_key(u16 v) { return (u64)v; }
__device__ __forceinline__ u64 sort_key(u32 v) { return (u64)v; }
__device__ __forceinline__ u64 sort_key(u64 v) { return v; }
}  // namespace strata

// x and out contiguous; lane l = (outer, in) holds elements (outer·len + j)·inner + in. The
// network runs over `pow2` (the lane length rounded up to a power of two; the padding sorts
// last). A block takes `span` elements of one lane (all of it when pow2 ≤ STRATA_SORT_MAX),
// loads them (from x, or from the scratch pairs sk/sp, which hold lane l's element j at
// l·pow2 + j), runs stages first..=last of the network on them (strides shorter than the span
// only; the direction comes from the element's place in the whole lane), and stores them (to
// the scratch, or their positions to out).
#define STRATA_ARGSORT(T)                                                                         \
    extern "C" __global__ void strata_kernel(const T* __restrict__ x, u32* __restrict__ out,       \
                                             u64* __restrict__ sk, u32* __restrict__ sp, i64 len,  \
                                             i64 inner, i64 pow2, i64 blocks, i64 first, i64 last, \
                                             i32 from_x, i32 to_out, i64 span) {                  \
        __shared__ u64 key[STRATA_SORT_MAX];                                                      \
        __shared__ u32 pos[STRATA_SORT_MAX];                                                      \
        const i64 lane = blockIdx.x / blocks, j0 = (blockIdx.x % blocks) * span;                  \
        const i64 outer = lane / inner, in = lane % inner;                                        \
        const i64 base = outer * len * inner + in, scratch = lane * pow2 + j0;                    \
        for (i64 i = threadIdx.x; i < span; i += blockDim.x) {                                    \
            const i64 j = j0 + i;                                                                 \
            if (from_x) {                                                                         \
                key[i] = j < len ? strata::sort_key(x[base + j * inner]) : 0xffffffffffffffffull; \
                pos[i] = (u32)j;                                                                  \
            } else {                                                                              \
                key[i] = sk[scratch + i];                                                         \
                pos[i] = sp[scratch + i];                                                         \
            }                                                                                     \
        }                                                                                         \
        __syncthreads();                                                                          \
        for (i64 size = first; size <= last; size <<= 1) {                                        \
            for (i64 stride = min(size, span) >> 1; stride > 0; stride >>= 1) {                   \
                for (i64 i = threadIdx.x; i < span; i += blockDim.x) {                            \
                    const i64 q = i ^ stride;                                                     \
                    if (q > i) {                                                                  \
                        const bool up = ((j0 + i) & size) == 0;                                   \
                        const bool greater = key[i] > key[q] || (key[i] == key[q] && pos[i] > pos[q]); \
                        if (greater == up) {                                                      \
                            const u64 k = key[i]; key[i] = key[q]; key[q] = k;                    \
                            const u32 o = pos[i]; pos[i] = pos[q]; pos[q] = o;                    \
                        }                                                                         \
                    }                                                                             \
                }                                                                                 \
                __syncthreads();                                                                  \
            }                                                                                     \
        }                                                                                         \
        for (i64 i = threadIdx.x; i < span; i += blockDim.x) {                                    \
            const i64 j = j0 + i;                                                                 \
            if (to_out) {                                                                         \
                if (j < len) out[base + j * inner] = pos[i];                                      \
            } else {                                                                              \
                sk[scratch + i] = key[i];                                                         \
                sp[scratch + i] = pos[i];                                                         \
            }                                                                                     \
        }                                                                                         \
    }

// One long stride of one stage over the scratch pairs of every lane: a thread per compared pair
// (`pairs` = lanes · pow2 / 2).
#define STRATA_ARGSORT_STRIDE                                                                     \
    extern "C" __global__ void strata_kernel(u64* __restrict__ sk, u32* __restrict__ sp, i64 pairs, \
                                             i64 pow2, i64 size, i64 stride) {                    \
        for (i64 g = blockIdx.x * (i64)blockDim.x + threadIdx.x; g < pairs;                       \
             g += (i64)gridDim.x * blockDim.x) {                                                  \
            const i64 half = pow2 >> 1, lane = g / half, r = g % half;                            \
            const i64 j = (r / stride) * 2 * stride + r % stride;                                 \
            const i64 a = lane * pow2 + j, b = a + stride;                                        \
            const bool up = (j & size) == 0;                                                      \
            const bool greater = sk[a] > sk[b] || (sk[a] == sk[b] && sp[a] > sp[b]);              \
            if (greater == up) {                                                                  \
                const u64 k = sk[a]; sk[a] = sk[b]; sk[b] = k;                                    \
                const u32 o = sp[a]; sp[a] = sp[b]; sp[b] = o;                                    \
            }                                                                                     \
        }                                                                                         \
    }

#endif  // STRATA_SORT_CU

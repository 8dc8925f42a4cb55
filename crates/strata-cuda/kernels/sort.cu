// sort.cu: argsort of lanes, one thread block per lane, a bitonic sort in shared memory.
//
// Each element becomes a 64-bit key whose unsigned order is the values' order (floats by
// value, every NaN last, -0.0 equal to 0.0; integers by value), paired with its position. The
// pairs are compared as (key, position), which makes the bitonic network (not stable by itself)
// give exactly the stable order NumPy's `kind="stable"` gives. Lanes up to STRATA_SORT_MAX
// elements; longer ones are the host's to refuse.
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

// x and out contiguous; lane l = (outer, in) holds elements (outer·len + j)·inner + in.
// `pow2` is the lane length rounded up to a power of two (the padding sorts last).
#define STRATA_ARGSORT(T)                                                                         \
    extern "C" __global__ void strata_kernel(const T* __restrict__ x, u32* __restrict__ out,       \
                                             i64 len, i64 inner, i64 pow2) {                      \
        __shared__ u64 key[STRATA_SORT_MAX];                                                      \
        __shared__ u32 pos[STRATA_SORT_MAX];                                                      \
        const i64 lane = blockIdx.x, outer = lane / inner, in = lane % inner;                     \
        const i64 base = outer * len * inner + in;                                                \
        for (i64 j = threadIdx.x; j < pow2; j += blockDim.x) {                                    \
            key[j] = j < len ? strata::sort_key(x[base + j * inner]) : 0xffffffffffffffffull;     \
            pos[j] = (u32)j;                                                                      \
        }                                                                                         \
        __syncthreads();                                                                          \
        for (i64 size = 2; size <= pow2; size <<= 1) {                                            \
            for (i64 stride = size >> 1; stride > 0; stride >>= 1) {                              \
                for (i64 j = threadIdx.x; j < pow2; j += blockDim.x) {                            \
                    const i64 p = j ^ stride;                                                     \
                    if (p > j) {                                                                  \
                        const bool up = (j & size) == 0;                                          \
                        const bool greater = key[j] > key[p] || (key[j] == key[p] && pos[j] > pos[p]); \
                        if (greater == up) {                                                      \
                            const u64 k = key[j]; key[j] = key[p]; key[p] = k;                    \
                            const u32 q = pos[j]; pos[j] = pos[p]; pos[p] = q;                    \
                        }                                                                         \
                    }                                                                             \
                }                                                                                 \
                __syncthreads();                                                                  \
            }                                                                                     \
        }                                                                                         \
        for (i64 j = threadIdx.x; j < len; j += blockDim.x) out[base + j * inner] = pos[j];       \
    }

#endif  // STRATA_SORT_CU

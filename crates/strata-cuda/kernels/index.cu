// index.cu: indexing along one axis and counter-based random bits.
//
// Operands are addressed through the strided Geometry over the shape of the indices; the
// indexed operand's stride along the axis is zero there and applied to the index instead.
// Indices are checked by a first kernel (the lowest position holding a bad one is kept), so
// that a bad index is reported before anything is written.
#ifndef STRATA_INDEX_CU
#define STRATA_INDEX_CU

// Records the first position whose index lies outside [-size, size).
#define STRATA_CHECK_INDICES(TI)                                                                  \
    extern "C" __global__ void strata_kernel(const TI* __restrict__ idx, u64* __restrict__ bad,     \
                                             strata::Geometry g, i64 size) {                      \
        STRATA_GRID_LOOP(i, g.n) {                                                                \
            const i64 v = (i64)idx[strata::position(g, 1, i)];                                    \
            if (v < -size || v >= size) atomicMin(bad, (u64)i);                                   \
        }                                                                                         \
    }

// out[.., j, ..] = x[.., idx[.., j, ..], ..]. Operands: 0 the output, 1 the indices, 2 the array.
#define STRATA_GATHER(T, TI)                                                                      \
    extern "C" __global__ void strata_kernel(const T* __restrict__ x, const TI* __restrict__ idx,   \
                                             T* __restrict__ y, strata::Geometry g, i64 axis_stride, \
                                             i64 size) {                                          \
        STRATA_GRID_LOOP(i, g.n) {                                                                \
            i64 v = (i64)idx[strata::position(g, 1, i)];                                          \
            if (v < 0) v += size;                                                                 \
            y[strata::position(g, 0, i)] = x[strata::position(g, 2, i) + v * axis_stride];        \
        }                                                                                         \
    }

// out[.., idx[.., j, ..], ..] += updates[.., j, ..] with atomics (repeated indices accumulate).
// Operands: 0 the updates, 1 the indices, 2 the output. Integers wrap (two's complement adds).
namespace strata {
__device__ __forceinline__ void atomic_add(float* p, float v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(double* p, double v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(i32* p, i32 v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(i64* p, i64 v) { atomicAdd((unsigned long long*)p, (unsigned long long)v); }
}  // namespace strata

#define STRATA_SCATTER_ADD(T, TI)                                                                 \
    extern "C" __global__ void strata_kernel(const TI* __restrict__ idx, const T* __restrict__ u,   \
                                             T* __restrict__ y, strata::Geometry g, i64 axis_stride, \
                                             i64 size) {                                          \
        STRATA_GRID_LOOP(i, g.n) {                                                                \
            i64 v = (i64)idx[strata::position(g, 1, i)];                                          \
            if (v < 0) v += size;                                                                 \
            strata::atomic_add(&y[strata::position(g, 2, i) + v * axis_stride], u[strata::position(g, 0, i)]); \
        }                                                                                         \
    }

namespace strata {
// Threefry-2x32 with 20 rounds (the CPU backend's `threefry2x32`, MLX's and JAX's generator).
__device__ __forceinline__ void threefry2x32(u32 k0, u32 k1, u32 c0, u32 c1, u32& o0, u32& o1) {
    const u32 ks[3] = {k0, k1, k0 ^ k1 ^ 0x1BD11BDAu};
    const int rot[2][4] = {{13, 15, 26, 6}, {17, 29, 16, 24}};
    u32 x = c0 + ks[0], y = c1 + ks[1];
#pragma unroll
    for (int i = 0; i < 5; ++i) {
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            x += y;
            y = ((y << rot[i % 2][r]) | (y >> (32 - rot[i % 2][r]))) ^ x;
        }
        x += ks[(i + 1) % 3];
        y += ks[(i + 2) % 3] + (u32)(i + 1);
    }
    o0 = x;
    o1 = y;
}
}  // namespace strata

// out[k, j] for N words per key, laid out as the CPU backend's `random_bits` (MLX's layout).
#define STRATA_RANDOM_BITS                                                                        \
    extern "C" __global__ void strata_kernel(const u32* __restrict__ keys, u32* __restrict__ out,   \
                                             i64 count, i64 n, i64 key_stride0, i64 key_stride1,  \
                                             i64 key_offset, i64 out_offset) {                    \
        const i64 half = n / 2, odd = n % 2, per_key = half + odd;                                \
        STRATA_GRID_LOOP(t, count * per_key) {                                                    \
            const i64 k = t / per_key, j = t % per_key;                                           \
            const u32 k0 = keys[key_offset + k * key_stride0];                                    \
            const u32 k1 = keys[key_offset + k * key_stride0 + key_stride1];                      \
            u32* row = out + out_offset + k * n;                                                  \
            u32 a, b;                                                                             \
            if (j < half) {                                                                       \
                strata::threefry2x32(k0, k1, (u32)j, (u32)(j + half + odd), a, b);                \
                row[j] = a;                                                                       \
                row[j + half + odd] = b;                                                          \
            } else {                                                                              \
                strata::threefry2x32(k0, k1, (u32)half, 0u, a, b);                                \
                row[half] = a;                                                                    \
            }                                                                                     \
        }                                                                                         \
    }

#endif  // STRATA_INDEX_CU

// qmatmul.cu: y = x·Wᵀ (or x·W) with W quantized (affine 1-8 bits, MX FP8/FP6/FP4/INT8 with
// E8M0 block scales, nvfp4 with E4M3 block scales and a tensor scale), dequantized inside the
// kernel: the general kernel, a thread per output element walking k.
//
// The mode is a struct `M` the host generates beside the instance (`M::BITS`, `M::BLOCK`, and
// `M::weight(q, sc, bi, g, e)`: element e of W from its code, its block's scale and, for affine
// modes, its bias). Codes are read from the data plane as a little-endian bitstream of u32
// words (a code may straddle two; the plane is padded by a word). Powers of two are built from
// their bits and the products rounded in the CPU backend's order (affine's multiply and add
// rounded separately), so weights dequantize exactly as the CPU's do.
#ifndef STRATA_QMATMUL_CU
#define STRATA_QMATMUL_CU

struct QmatmulGeometry {
    i64 total, n, k, transpose, x_cs, o_cs;  // outputs, n, k, W stored [n, k]?, strides along k and n
    float tensor_scale;                      // nvfp4's (1 otherwise)
};

namespace strata {

__device__ __forceinline__ float pow2i(int e) { return __int_as_float((e + 127) << 23); }

// The value of minifloat code `c` with E exponent bits, M mantissa bits and bias B; INF_NAN: the
// top exponent is infinity and NaN (E5M2); NAN_AT_MAX: the all-ones code is NaN (E4M3).
template <int E, int M, int B, bool INF_NAN, bool NAN_AT_MAX> __device__ __forceinline__ float minifloat(u32 c) {
    const u32 emax = (1u << E) - 1, mmask = (1u << M) - 1;
    const u32 ex = (c >> M) & emax, f = c & mmask;
    const float sign = ((c >> (E + M)) & 1u) ? -1.f : 1.f;
    if (INF_NAN && ex == emax) return f ? STRATA_NAN : sign * STRATA_INF;
    if (NAN_AT_MAX && ex == emax && f == mmask) return STRATA_NAN;
    if (ex == 0) return sign * (float)f * pow2i(1 - B - M);
    return sign * (1.f + (float)f * pow2i(-M)) * pow2i((int)ex - B);
}

// E8M0: 2^(s - 127); 0xFF is NaN.
__device__ __forceinline__ float e8m0(u32 s) {
    if (s == 255u) return STRATA_NAN;
    return s == 0u ? __int_as_float(0x00400000) : __int_as_float(s << 23);
}

template <int BITS> __device__ __forceinline__ u32 code_at(const u32* __restrict__ q, i64 e) {
    const i64 pos = e * BITS;
    const i64 w = pos >> 5;
    const u32 sh = (u32)(pos & 31);
    u32 c = q[w] >> sh;
    if (sh + BITS > 32) c |= q[w + 1] << (32 - sh);
    return c & ((1u << BITS) - 1);
}

template <class T, class O, class M>
__device__ __forceinline__ void qmatmul(const T* __restrict__ x, const u32* __restrict__ q, const u8* __restrict__ sc,
                                        const u8* __restrict__ bi, const i64* __restrict__ rows, O* __restrict__ out,
                                        const QmatmulGeometry& g) {
    for (i64 gid = (i64)blockIdx.x * blockDim.x + threadIdx.x; gid < g.total; gid += (i64)gridDim.x * blockDim.x) {
        const i64 j = gid % g.n, r = gid / g.n;
        const T* xr = x + rows[2 * r];
        float acc = 0.f;
        for (i64 i = 0; i < g.k; ++i) {
            const i64 e = g.transpose ? j * g.k + i : i * g.n + j;
            acc += (float)ld(xr[i * g.x_cs]) * M::weight(code_at<M::BITS>(q, e), sc, bi, g, e / M::BLOCK);
        }
        out[rows[2 * r + 1] + j * g.o_cs] = St<O>::from(acc);
    }
}

}  // namespace strata

// T: x's type; O: the output's (T or float); M: the mode (generated).
#define STRATA_QMATMUL(T, O, M)                                                                      \
    extern "C" __global__ void strata_kernel(const T* __restrict__ x, const u32* __restrict__ q,     \
                                             const u8* __restrict__ sc, const u8* __restrict__ bi,  \
                                             const i64* __restrict__ rows, O* __restrict__ out,     \
                                             const QmatmulGeometry g) {                             \
        strata::qmatmul<T, O, M>(x, q, sc, bi, rows, out, g);                                      \
    }

#endif  // STRATA_QMATMUL_CU

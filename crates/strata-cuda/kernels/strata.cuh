// strata.cuh: the base of Strata's CUDA header library. Element types (16-bit floats stored as
// bits and converted with PTX `cvt`, so no CUDA toolkit header is needed at run time), loads
// into a compute type and rounding stores, strided index arithmetic, and the integer helpers
// whose semantics match the CPU backend (wrapping arithmetic, Python's floor division and
// remainder, saturating float-to-integer casts with NaN -> 0).
#pragma once

typedef signed char i8;
typedef unsigned char u8;
typedef short i16;
typedef unsigned short u16;
typedef int i32;
typedef unsigned int u32;
typedef long long i64;
typedef unsigned long long u64;

struct f16 { u16 bits; };
struct bf16 { u16 bits; };
// OCP fp8 (the operands of scaled products): E4M3 ("fn": no Inf, NaN S.1111.111) and E5M2.
struct e4m3 { u8 bits; };
struct e5m2 { u8 bits; };

#define STRATA_NAN __int_as_float(0x7fc00000)
#define STRATA_INF __int_as_float(0x7f800000)

namespace strata {

// ---- loads: element -> compute type -------------------------------------------------------
__device__ __forceinline__ float ld(f16 x) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x.bits));
    return f;
}
__device__ __forceinline__ float ld(bf16 x) { return __uint_as_float(((u32)x.bits) << 16); }
// E5M2 is the top byte of an f16.
__device__ __forceinline__ float ld(e5m2 x) { return ld(f16{(u16)((u16)x.bits << 8)}); }
__device__ __forceinline__ float ld(e4m3 x) {
    const u32 e = (x.bits >> 3) & 15, m = x.bits & 7;
    float v;
    if (e == 15 && m == 7) v = STRATA_NAN;
    else if (e == 0) v = (float)m * 0.001953125f;  // subnormal: m · 2^-9
    else v = __uint_as_float(((e + 120) << 23) | (m << 20));
    return (x.bits & 0x80) ? -v : v;
}
template <class T> __device__ __forceinline__ T ld(T x) { return x; }

// ---- stores: compute type -> element (round to nearest even) ------------------------------
template <class T> struct St {
    template <class C> __device__ __forceinline__ static T from(C c) { return (T)c; }
};
template <> struct St<f16> {
    __device__ __forceinline__ static f16 from(float c) {
        u16 h;
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(c));
        return f16{h};
    }
};
template <> struct St<bf16> {
    __device__ __forceinline__ static bf16 from(float c) {
        u16 h;
        asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(c));
        return bf16{h};
    }
};

// f64 -> f32 rounding toward zero with a sticky last bit: a later rounding to 16 bits is then
// the single correct rounding of the f64 (the CPU backend does the same).
__device__ __forceinline__ float round_to_odd_f32(double v) {
    float r = __double2float_rz(v);
    if (isnan(r) || isinf(r) || (double)r == v) return r;
    return __uint_as_float(__float_as_uint(r) | 1u);
}

// Float -> integer: truncate, saturate to the target's range, NaN -> 0.
template <class T> __device__ __forceinline__ T sat(double v, double lo, double hi) {
    if (isnan(v)) return (T)0;
    if (v <= lo) return (T)lo;
    if (v >= hi) return (T)hi;
    return (T)trunc(v);
}
__device__ __forceinline__ i64 sat_i64(double v) {
    if (isnan(v)) return 0;
    if (v <= -9223372036854775808.0) return (i64)0x8000000000000000ull;
    if (v >= 9223372036854775808.0) return 0x7fffffffffffffffll;
    return (i64)v;
}
__device__ __forceinline__ u64 sat_u64(double v) {
    if (isnan(v) || v <= 0.0) return 0;
    if (v >= 18446744073709551616.0) return 0xffffffffffffffffull;
    return (u64)v;
}

// ---- geometry: up to 8 dimensions, 3 operands + output -------------------------------------
#define STRATA_MAX_DIMS 8
// Four consecutive elements moved by one load or store (16 bytes for f32).
template <class T, int N> struct alignas(sizeof(T) * N) Pack { T v[N]; };

struct Geometry {
    i64 n;            // elements of the output
    i32 ndim;
    i32 contiguous;   // 1: every operand row-major and dense, index = offset + i;
                      // 2: also every offset a multiple of 4 (the packed path applies)
    i64 shape[STRATA_MAX_DIMS];
    i64 stride[4][STRATA_MAX_DIMS];
    i64 offset[4];
};

__device__ __forceinline__ i64 position(const Geometry& g, int which, i64 i) {
    if (g.contiguous) return g.offset[which] + i;
    i64 p = g.offset[which];
    for (int d = g.ndim - 1; d >= 0; --d) {
        i64 c = i % g.shape[d];
        i /= g.shape[d];
        p += c * g.stride[which][d];
    }
    return p;
}

#define STRATA_GRID_LOOP(i, n) \
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)

// The elements past the last whole pack of four, one per thread.
#define STRATA_TAIL_LOOP(i, n) \
    for (i64 i = ((n) / 4) * 4 + (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)

// ---- integer semantics of the CPU backend -------------------------------------------------
template <class T> struct Unsigned { typedef T type; };
template <> struct Unsigned<i8> { typedef u8 type; };
template <> struct Unsigned<i16> { typedef u16 type; };
template <> struct Unsigned<i32> { typedef u32 type; };
template <> struct Unsigned<i64> { typedef u64 type; };

template <class T> __device__ __forceinline__ T wadd(T a, T b) { typedef typename Unsigned<T>::type U; return (T)(U)((U)a + (U)b); }
template <class T> __device__ __forceinline__ T wsub(T a, T b) { typedef typename Unsigned<T>::type U; return (T)(U)((U)a - (U)b); }
template <class T> __device__ __forceinline__ T wmul(T a, T b) { typedef typename Unsigned<T>::type U; return (T)(U)((U)a * (U)b); }
template <class T> __device__ __forceinline__ T wneg(T a) { typedef typename Unsigned<T>::type U; return (T)(U)((U)0 - (U)a); }
template <class T> struct IsSigned { static const bool value = false; };
template <> struct IsSigned<i8> { static const bool value = true; };
template <> struct IsSigned<i16> { static const bool value = true; };
template <> struct IsSigned<i32> { static const bool value = true; };
template <> struct IsSigned<i64> { static const bool value = true; };
// Written so that unsigned types compare nothing (no "pointless comparison" warnings).
template <class T> __device__ __forceinline__ bool is_neg(T a) { return IsSigned<T>::value && (i64)a < 0; }

template <class T> __device__ __forceinline__ T floordiv_int(T a, T b) {
    if (b == (T)0) return (T)0;
    if (is_neg(b) && b == wneg((T)1)) return wneg(a);  // exact; MIN / -1 wraps to MIN
    T q = a / b;
    if ((a % b != (T)0) && (is_neg(a) != is_neg(b))) q = wsub(q, (T)1);
    return q;
}
template <class T> __device__ __forceinline__ T rem_int(T a, T b) {
    if (b == (T)0) return (T)0;
    if (is_neg(b) && b == wneg((T)1)) return (T)0;
    T r = a % b;
    if (r != (T)0 && (is_neg(r) != is_neg(b))) r = wadd(r, b);
    return r;
}
template <class T> __device__ __forceinline__ T pow_int(T a, T b) {
    if (is_neg(b)) {
        if (a == (T)1) return (T)1;
        if (is_neg(a) && a == wneg((T)1)) return (b % (T)2 == (T)0) ? (T)1 : a;
        return (T)0;
    }
    T acc = (T)1, base = a;
    u64 e = (u64)b;
    while (e > 0) {
        if (e & 1) acc = wmul(acc, base);
        base = wmul(base, base);
        e >>= 1;
    }
    return acc;
}
template <class T> __device__ __forceinline__ T shl_int(T a, T b) {
    if (is_neg(b) || (u64)b >= sizeof(T) * 8) return (T)0;
    return (T)((typename Unsigned<T>::type)a << (int)b);
}
template <class T> __device__ __forceinline__ T shr_int(T a, T b) {
    if (is_neg(b) || (u64)b >= sizeof(T) * 8) return is_neg(a) ? wneg((T)1) : (T)0;
    return (T)(a >> (int)b);
}

// ---- float helpers ------------------------------------------------------------------------
template <class T> __device__ __forceinline__ T py_rem(T a, T b) {
    T r = fmod(a, b);
    return (r != (T)0 && ((r < (T)0) != (b < (T)0))) ? r + b : r;
}
// NumPy's npy_divmod: the quotient of a - fmod(a, b) rounded to the nearest integer.
template <class T> __device__ __forceinline__ T floordiv_float(T a, T b) {
    if (b == (T)0) return a / b;
    const T m = fmod(a, b);
    T div = (a - m) / b;
    if (m != (T)0 && ((b < (T)0) != (m < (T)0))) div -= (T)1;
    if (div == (T)0) return copysign((T)0, a / b);
    const T f = floor(div);
    return (div - f > (T)0.5) ? f + (T)1 : f;
}
template <class T> __device__ __forceinline__ T nan_max(T a, T b) {
    return (isnan(a) || isnan(b)) ? (T)STRATA_NAN : (a > b ? a : b);
}
template <class T> __device__ __forceinline__ T nan_min(T a, T b) {
    return (isnan(a) || isnan(b)) ? (T)STRATA_NAN : (a < b ? a : b);
}
template <class T> __device__ __forceinline__ T logaddexp(T a, T b) {
    T m = fmax(a, b);
    if (m == (T)-STRATA_INF) return m;
    if (isnan(a) || isnan(b)) return (T)STRATA_NAN;
    return m + log1p(exp(-fabs(a - b)));
}
template <class T> __device__ __forceinline__ T sign_float(T v) {
    return v > (T)0 ? (T)1 : (v < (T)0 ? (T)-1 : v);
}

}  // namespace strata

// reduce.cu: reductions over any set of axes and scans along one axis.
//
// A reduction sees its input as [kept..., reduced...]. Two strategies:
// - rows (the innermost reduced axis is dense): a group of threads (a warp, or the whole
//   block for long rows) shares one output, strides over its elements and combines through
//   shuffles and shared memory;
// - columns (otherwise, e.g. summing over axis 0 of a row-major matrix): one thread per output,
//   adjacent threads on adjacent outputs so that their loads coalesce; four adjacent outputs
//   per thread with 16-byte loads where the innermost kept axis is dense.
// Few outputs over long blocks split each block into chunks whose partial results go to a dense
// scratch array that a second launch reduces (arg reductions never split).
//
// Every combine is associative and commutative for the values it sees (the arg reductions
// order ties by index), so only float sums and products depend on the order, within rounding.
#ifndef STRATA_REDUCE_CU
#define STRATA_REDUCE_CU

namespace strata {

template <class T> struct Limits;
#define STRATA_LIMITS(T, LO, HI) \
    template <> struct Limits<T> { __device__ static T lowest() { return LO; } __device__ static T highest() { return HI; } };
STRATA_LIMITS(bool, false, true)
STRATA_LIMITS(i8, -128, 127)
STRATA_LIMITS(u8, 0, 255)
STRATA_LIMITS(i16, -32768, 32767)
STRATA_LIMITS(u16, 0, 65535)
STRATA_LIMITS(i32, (i32)0x80000000, 0x7fffffff)
STRATA_LIMITS(u32, 0u, 0xffffffffu)
STRATA_LIMITS(i64, (i64)0x8000000000000000ull, 0x7fffffffffffffffll)
STRATA_LIMITS(u64, 0ull, 0xffffffffffffffffull)
STRATA_LIMITS(float, -STRATA_INF, STRATA_INF)
STRATA_LIMITS(double, -(double)STRATA_INF, (double)STRATA_INF)

template <class T> __device__ __forceinline__ bool is_nan(T) { return false; }
template <> __device__ __forceinline__ bool is_nan(float v) { return isnan(v); }
template <> __device__ __forceinline__ bool is_nan(double v) { return isnan(v); }

template <class T> __device__ __forceinline__ T rmax(T a, T b) {
    if (is_nan(a) || is_nan(b)) return is_nan(a) ? a : b;
    return a > b ? a : b;
}
template <class T> __device__ __forceinline__ T rmin(T a, T b) {
    if (is_nan(a) || is_nan(b)) return is_nan(a) ? a : b;
    return a < b ? a : b;
}

// Shuffles of every accumulator type (the hardware moves 32- and 64-bit words).
#define STRATA_SHFL(T, W)                                                                       \
    __device__ __forceinline__ T shfl_down(T v, int d) { return (T)__shfl_down_sync(0xffffffffu, (W)v, d); } \
    __device__ __forceinline__ T shfl_up(T v, int d) { return (T)__shfl_up_sync(0xffffffffu, (W)v, d); } \
    __device__ __forceinline__ T shfl_idx(T v, int src) { return (T)__shfl_sync(0xffffffffu, (W)v, src); }
STRATA_SHFL(bool, int)
STRATA_SHFL(i8, int)
STRATA_SHFL(u8, int)
STRATA_SHFL(i16, int)
STRATA_SHFL(u16, int)
STRATA_SHFL(i32, int)
STRATA_SHFL(u32, unsigned)
STRATA_SHFL(i64, long long)
STRATA_SHFL(u64, unsigned long long)
STRATA_SHFL(float, float)
STRATA_SHFL(double, double)

template <class C> struct ArgV { C v; i64 i; };
template <class C> __device__ __forceinline__ ArgV<C> shfl_down(ArgV<C> a, int d) {
    ArgV<C> r;
    r.v = shfl_down(a.v, d);
    r.i = shfl_down(a.i, d);
    return r;
}

// ---- the operations: identity, lift (an element and its index), combine, output -----------
template <class CT> struct RSum {
    typedef CT A;
    __device__ static A id() { return (CT)0; }
    __device__ static A lift(CT v, i64) { return v; }
    __device__ static A comb(A a, A b) { return wadd(a, b); }
    template <class T> __device__ static T out(A a) { return St<T>::from(a); }
};
template <class CT> struct RProd {
    typedef CT A;
    __device__ static A id() { return (CT)1; }
    __device__ static A lift(CT v, i64) { return v; }
    __device__ static A comb(A a, A b) { return wmul(a, b); }
    template <class T> __device__ static T out(A a) { return St<T>::from(a); }
};
template <class CT> struct RMax {
    typedef CT A;
    __device__ static A id() { return Limits<CT>::lowest(); }
    __device__ static A lift(CT v, i64) { return v; }
    __device__ static A comb(A a, A b) { return rmax(a, b); }
    template <class T> __device__ static T out(A a) { return St<T>::from(a); }
};
template <class CT> struct RMin {
    typedef CT A;
    __device__ static A id() { return Limits<CT>::highest(); }
    __device__ static A lift(CT v, i64) { return v; }
    __device__ static A comb(A a, A b) { return rmin(a, b); }
    template <class T> __device__ static T out(A a) { return St<T>::from(a); }
};
template <class CT> struct RLogAddExp {
    typedef CT A;
    __device__ static A id() { return Limits<CT>::lowest(); }
    __device__ static A lift(CT v, i64) { return v; }
    __device__ static A comb(A a, A b) { return logaddexp(a, b); }
    template <class T> __device__ static T out(A a) { return St<T>::from(a); }
};
template <class CT> struct RAll {
    typedef bool A;
    __device__ static A id() { return true; }
    __device__ static A lift(CT v, i64) { return v != (CT)0; }
    __device__ static A comb(A a, A b) { return a && b; }
    template <class T> __device__ static T out(A a) { return (T)a; }
};
template <class CT> struct RAny {
    typedef bool A;
    __device__ static A id() { return false; }
    __device__ static A lift(CT v, i64) { return v != (CT)0; }
    __device__ static A comb(A a, A b) { return a || b; }
    template <class T> __device__ static T out(A a) { return (T)a; }
};
// The first index of the largest (MAX) or smallest value; the first NaN beats everything.
template <class CT, bool MAX> struct RArg {
    typedef ArgV<CT> A;
    __device__ static A id() { A a; a.v = (CT)0; a.i = -1; return a; }
    __device__ static A lift(CT v, i64 i) { A a; a.v = v; a.i = i; return a; }
    __device__ static A comb(A a, A b) {
        if (a.i < 0) return b;
        if (b.i < 0) return a;
        bool an = is_nan(a.v), bn = is_nan(b.v);
        if (an || bn) return (an && bn) ? (a.i < b.i ? a : b) : (an ? a : b);
        if (MAX ? a.v > b.v : a.v < b.v) return a;
        if (MAX ? b.v > a.v : b.v < a.v) return b;
        return a.i < b.i ? a : b;
    }
    template <class T> __device__ static T out(A a) { return (T)a.i; }
};

struct ReduceGeometry {
    i64 outputs;    // output elements (the product of the kept shape)
    i64 block;      // input elements combined into each
    i64 chunks;     // > 1: partial results, written densely to y[o * chunks + c]
    i64 chunk_len;
    i32 nkept, nred;
    i32 rows;       // 1: a group of `group` threads per output; 0: one thread per output
    i32 group;      // 32 or the block size
    i32 red_dense;  // the reduced elements are one dense run: position = base + j
    i32 vec4;       // rows: the runs and chunks start at multiples of 4 elements; columns: the
                    // innermost kept axis is dense, 4-aligned, a multiple of 4 long (Pack loads)
    i64 kept_shape[STRATA_MAX_DIMS], kept_in[STRATA_MAX_DIMS], kept_out[STRATA_MAX_DIMS];
    i64 red_shape[STRATA_MAX_DIMS], red_stride[STRATA_MAX_DIMS];
    i64 in_offset, out_offset;
};

__device__ __forceinline__ void kept_position(const ReduceGeometry& g, i64 o, i64& in, i64& out) {
    in = g.in_offset;
    out = g.out_offset;
    for (int d = g.nkept - 1; d >= 0; --d) {
        i64 c = o % g.kept_shape[d];
        o /= g.kept_shape[d];
        in += c * g.kept_in[d];
        out += c * g.kept_out[d];
    }
}

__device__ __forceinline__ i64 reduced_position(const ReduceGeometry& g, i64 j) {
    if (g.red_dense) return j;
    if (g.nred == 1) return j * g.red_stride[0];
    i64 p = 0;
    for (int d = g.nred - 1; d >= 0; --d) {
        p += (j % g.red_shape[d]) * g.red_stride[d];
        j /= g.red_shape[d];
    }
    return p;
}

template <class OP> __device__ __forceinline__ typename OP::A warp_reduce(typename OP::A a) {
#pragma unroll
    for (int d = 16; d > 0; d /= 2) a = OP::comb(a, shfl_down(a, d));
    return a;
}

template <class TIN, class CT, class TOUT, class OP>
__device__ __forceinline__ void reduce(const TIN* __restrict__ x, TOUT* __restrict__ y, const ReduceGeometry& g) {
    typedef typename OP::A A;
    const i64 items = g.outputs * g.chunks;
    if (g.rows) {
        __shared__ A partial[32];
        const int G = g.group, lane = threadIdx.x % G, per_block = blockDim.x / G;
        for (i64 item = (i64)blockIdx.x * per_block + threadIdx.x / G; item - threadIdx.x / G < items;
             item += (i64)gridDim.x * per_block) {
            // Every thread of a group (the block, for G == blockDim) runs the same iterations.
            const bool live = item < items;
            const i64 o = live ? item / g.chunks : 0, c = live ? item % g.chunks : 0;
            i64 in, out;
            kept_position(g, o, in, out);
            const i64 j0 = c * g.chunk_len, j1 = min(j0 + g.chunk_len, g.block);
            A acc = OP::id();
            if (live && g.vec4) {
                // Four elements per 16-byte (f32) load, two accumulators in flight.
                const Pack<TIN, 4>* p = (const Pack<TIN, 4>*)(x + in);
                A acc2 = OP::id();
                i64 q = j0 / 4 + lane;
                const i64 q1 = j1 / 4;
                for (; q + G < q1; q += 2 * G) {
                    const Pack<TIN, 4> u = p[q], w = p[q + G];
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        acc = OP::comb(acc, OP::lift((CT)ld(u.v[e]), 4 * q + e));
                        acc2 = OP::comb(acc2, OP::lift((CT)ld(w.v[e]), 4 * (q + G) + e));
                    }
                }
                if (q < q1) {
                    const Pack<TIN, 4> u = p[q];
#pragma unroll
                    for (int e = 0; e < 4; ++e) acc = OP::comb(acc, OP::lift((CT)ld(u.v[e]), 4 * q + e));
                }
                acc = OP::comb(acc, acc2);
            } else if (live) {
#pragma unroll 4
                for (i64 j = j0 + lane; j < j1; j += G)
                    acc = OP::comb(acc, OP::lift((CT)ld(x[in + reduced_position(g, j)]), j));
            }
            acc = warp_reduce<OP>(acc);
            if (G > 32) {
                const int warp = threadIdx.x / 32;
                if (threadIdx.x % 32 == 0) partial[warp] = acc;
                __syncthreads();
                if (warp == 0) {
                    acc = threadIdx.x < G / 32 ? partial[threadIdx.x] : OP::id();
                    acc = warp_reduce<OP>(acc);
                }
                __syncthreads();
            }
            if (live && lane == 0) {
                if (g.chunks > 1) y[item] = OP::template out<TOUT>(acc);
                else y[out] = OP::template out<TOUT>(acc);
            }
        }
    } else if (g.vec4) {
        // Columns with the innermost kept axis dense (and a multiple of four long, every row
        // 4-aligned): four adjacent outputs per thread, one 16-byte (f32) load per row, four rows
        // of loads in flight.
        const i64 quads = g.outputs / 4, step = g.kept_out[g.nkept - 1];
        STRATA_GRID_LOOP(t, quads * g.chunks) {
            const i64 o = (t % quads) * 4, c = t / quads;
            i64 in, out;
            kept_position(g, o, in, out);
            const i64 j0 = c * g.chunk_len, j1 = min(j0 + g.chunk_len, g.block);
            A acc[4] = {OP::id(), OP::id(), OP::id(), OP::id()};
            i64 j = j0;
            for (; j + 3 < j1; j += 4) {
                Pack<TIN, 4> u[4];
#pragma unroll
                for (int r = 0; r < 4; ++r) u[r] = *(const Pack<TIN, 4>*)(x + in + reduced_position(g, j + r));
#pragma unroll
                for (int r = 0; r < 4; ++r)
#pragma unroll
                    for (int e = 0; e < 4; ++e) acc[e] = OP::comb(acc[e], OP::lift((CT)ld(u[r].v[e]), j + r));
            }
            for (; j < j1; ++j) {
                const Pack<TIN, 4> u = *(const Pack<TIN, 4>*)(x + in + reduced_position(g, j));
#pragma unroll
                for (int e = 0; e < 4; ++e) acc[e] = OP::comb(acc[e], OP::lift((CT)ld(u.v[e]), j));
            }
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                if (g.chunks > 1) y[(o + e) * g.chunks + c] = OP::template out<TOUT>(acc[e]);
                else y[out + e * step] = OP::template out<TOUT>(acc[e]);
            }
        }
    } else {
        STRATA_GRID_LOOP(t, items) {
            const i64 o = t % g.outputs, c = t / g.outputs;
            i64 in, out;
            kept_position(g, o, in, out);
            const i64 j0 = c * g.chunk_len, j1 = min(j0 + g.chunk_len, g.block);
            // Four accumulators: four independent loads in flight per thread, whatever the
            // occupancy the rows branch leaves this kernel.
            A acc = OP::id(), acc1 = OP::id(), acc2 = OP::id(), acc3 = OP::id();
            i64 j = j0;
            for (; j + 3 < j1; j += 4) {
                const CT v0 = (CT)ld(x[in + reduced_position(g, j)]);
                const CT v1 = (CT)ld(x[in + reduced_position(g, j + 1)]);
                const CT v2 = (CT)ld(x[in + reduced_position(g, j + 2)]);
                const CT v3 = (CT)ld(x[in + reduced_position(g, j + 3)]);
                acc = OP::comb(acc, OP::lift(v0, j));
                acc1 = OP::comb(acc1, OP::lift(v1, j + 1));
                acc2 = OP::comb(acc2, OP::lift(v2, j + 2));
                acc3 = OP::comb(acc3, OP::lift(v3, j + 3));
            }
            for (; j < j1; ++j) acc = OP::comb(acc, OP::lift((CT)ld(x[in + reduced_position(g, j)]), j));
            acc = OP::comb(OP::comb(acc, acc1), OP::comb(acc2, acc3));
            if (g.chunks > 1) y[o * g.chunks + c] = OP::template out<TOUT>(acc);
            else y[out] = OP::template out<TOUT>(acc);
        }
    }
}

struct ScanGeometry {
    i64 lanes, n;           // lanes, and elements along the scanned axis
    i32 nlane, reverse, inclusive;
    i32 walker;  // who walks a lane: 0 a thread, 1 a block, 2 a warp (`scan_warps`)
    i64 lane_shape[STRATA_MAX_DIMS], lane_in[STRATA_MAX_DIMS], lane_out[STRATA_MAX_DIMS];
    i64 in_offset, out_offset, in_stride, out_stride;
};

template <class OP, class CT> __device__ __forceinline__ CT warp_inclusive_scan(CT v, int lane) {
#pragma unroll
    for (int d = 1; d < 32; d *= 2) {
        CT u = shfl_up(v, d);
        if (lane >= d) v = OP::comb(u, v);
    }
    return v;
}

// The exclusive prefix, within the block's tile, of each thread's `total` (warp scans, then a
// scan of the warp totals); `tile_total` gets the whole tile's.
template <class OP, class CT>
__device__ __forceinline__ CT block_exclusive_prefix(CT total, CT* warp_totals, CT& tile_total) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    const CT inclusive = warp_inclusive_scan<OP>(total, lane);
    if (lane == 31) warp_totals[warp] = inclusive;
    __syncthreads();
    if (warp == 0) {
        CT w = lane < warps ? warp_totals[lane] : OP::id();
        warp_totals[lane] = warp_inclusive_scan<OP>(w, lane);
    }
    __syncthreads();
    const CT before_thread = shfl_up(inclusive, 1);
    CT prefix = warp > 0 ? warp_totals[warp - 1] : OP::id();
    if (lane > 0) prefix = OP::comb(prefix, before_thread);
    tile_total = warp_totals[warps - 1];
    __syncthreads();
    return prefix;
}

// Forward scans of many dense lanes whose rows start 4-aligned: a warp per lane, chunks of 256
// elements, each thread's 8 moved by two packs of four (16-byte loads and stores for f32), the
// next chunk's loads issued before this one is scanned. No block barrier: each warp streams its
// own lane, so a slow load holds up one warp, not a block. (H200, cumsum along 16384 rows of
// 16384 f32: 0.93 of copy bandwidth; a block per lane with tiles of 2048 and three barriers a
// tile reached 0.71, and that block kernel with 16 elements a thread 0.37, prefetching across
// lanes 0.33.)
template <class T, class CT, class OP>
__device__ __forceinline__ void scan_warps(const T* __restrict__ x, T* __restrict__ y, const ScanGeometry& g) {
    constexpr int E = 8;
    constexpr i64 chunk = 32 * E;
    const int lane = threadIdx.x % 32;
    const i64 warps_per_block = blockDim.x / 32, warps = (i64)gridDim.x * warps_per_block;
    for (i64 l = (i64)blockIdx.x * warps_per_block + threadIdx.x / 32; l < g.lanes; l += warps) {
        i64 in = g.in_offset, out = g.out_offset, r = l;
        for (int d = g.nlane - 1; d >= 0; --d) {
            i64 c = r % g.lane_shape[d];
            r /= g.lane_shape[d];
            in += c * g.lane_in[d];
            out += c * g.lane_out[d];
        }
        auto load = [&](i64 at, CT (&v)[E]) {
            const i64 s0 = at + E * (i64)lane;
            if (s0 + E <= g.n) {
                const Pack<T, 4> p = *(const Pack<T, 4>*)(x + in + s0), q = *(const Pack<T, 4>*)(x + in + s0 + 4);
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    v[e] = (CT)ld(p.v[e]);
                    v[4 + e] = (CT)ld(q.v[e]);
                }
            } else {
#pragma unroll
                for (int e = 0; e < E; ++e) v[e] = s0 + e < g.n ? (CT)ld(x[in + s0 + e]) : OP::id();
            }
        };
        CT cur[E], nxt[E] = {};  // `nxt` is copied after the last chunk too, unread
        load(0, cur);
        CT carry = OP::id();
        for (i64 at = 0; at < g.n; at += chunk) {
            if (at + chunk < g.n) load(at + chunk, nxt);
            CT incl[E];
            incl[0] = cur[0];
#pragma unroll
            for (int e = 1; e < E; ++e) incl[e] = OP::comb(incl[e - 1], cur[e]);
            const CT through = warp_inclusive_scan<OP>(incl[E - 1], lane);
            const CT before = shfl_up(through, 1);
            const CT base = lane > 0 ? OP::comb(carry, before) : carry;
            T o[E];
#pragma unroll
            for (int e = 0; e < E; ++e)
                o[e] = St<T>::from(g.inclusive ? OP::comb(base, incl[e]) : (e == 0 ? base : OP::comb(base, incl[e - 1])));
            const i64 s0 = at + E * (i64)lane;
            if (s0 + E <= g.n) {
                Pack<T, 4> p, q;
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    p.v[e] = o[e];
                    q.v[e] = o[4 + e];
                }
                *(Pack<T, 4>*)(y + out + s0) = p;
                *(Pack<T, 4>*)(y + out + s0 + 4) = q;
            } else {
#pragma unroll
                for (int e = 0; e < E; ++e)
                    if (s0 + e < g.n) y[out + s0 + e] = o[e];
            }
            carry = OP::comb(carry, shfl_idx(through, 31));
#pragma unroll
            for (int e = 0; e < E; ++e) cur[e] = nxt[e];
        }
    }
}

// A scan: one thread per lane walking it in order, or (long dense lanes) one block per lane
// scanning tiles of 4 x blockDim elements with a carry between tiles, or a warp per lane
// (`scan_warps`, where the lanes are forward, unit-stride and 4-aligned).
template <class T, class CT, class OP>
__device__ __forceinline__ void scan(const T* __restrict__ x, T* __restrict__ y, const ScanGeometry& g) {
    if (!g.walker) {
        STRATA_GRID_LOOP(l, g.lanes) {
            i64 in = g.in_offset, out = g.out_offset, r = l;
            for (int d = g.nlane - 1; d >= 0; --d) {
                i64 c = r % g.lane_shape[d];
                r /= g.lane_shape[d];
                in += c * g.lane_in[d];
                out += c * g.lane_out[d];
            }
            CT acc = OP::id();
            for (i64 s = 0; s < g.n; ++s) {
                const i64 i = g.reverse ? g.n - 1 - s : s;
                const CT before = acc;
                acc = OP::comb(acc, (CT)ld(x[in + i * g.in_stride]));
                y[out + i * g.out_stride] = St<T>::from(g.inclusive ? acc : before);
            }
        }
        return;
    }
    if (g.walker == 2) {
        scan_warps<T, CT, OP>(x, y, g);
        return;
    }
    __shared__ CT warp_totals[32];
    for (i64 l = blockIdx.x; l < g.lanes; l += gridDim.x) {
        i64 in = g.in_offset, out = g.out_offset, r = l;
        for (int d = g.nlane - 1; d >= 0; --d) {
            i64 c = r % g.lane_shape[d];
            r /= g.lane_shape[d];
            in += c * g.lane_in[d];
            out += c * g.lane_out[d];
        }
        CT carry = OP::id();
        for (i64 tile = 0; tile < g.n; tile += 4 * (i64)blockDim.x) {
            CT v[4];
            const i64 s0 = tile + 4 * (i64)threadIdx.x;
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                const i64 s = s0 + k, i = g.reverse ? g.n - 1 - s : s;
                v[k] = s < g.n ? (CT)ld(x[in + i * g.in_stride]) : OP::id();
                if (k > 0) v[k] = OP::comb(v[k - 1], v[k]);
            }
            CT tile_total;
            const CT base = OP::comb(carry, block_exclusive_prefix<OP>(v[3], warp_totals, tile_total));
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                const i64 s = s0 + k, i = g.reverse ? g.n - 1 - s : s;
                if (s < g.n) {
                    const CT value = g.inclusive ? OP::comb(base, v[k]) : (k == 0 ? base : OP::comb(base, v[k - 1]));
                    y[out + i * g.out_stride] = St<T>::from(value);
                }
            }
            carry = OP::comb(carry, tile_total);
        }
    }
}

}  // namespace strata

#define STRATA_REDUCE(TIN, CT, TOUT, ...)                                                          \
    extern "C" __global__ void strata_kernel(const TIN* __restrict__ x, TOUT* __restrict__ y,      \
                                             strata::ReduceGeometry g) {                          \
        strata::reduce<TIN, CT, TOUT, __VA_ARGS__>(x, y, g);                                                \
    }

#define STRATA_SCAN(T, CT, ...)                                                                     \
    extern "C" __global__ void strata_kernel(const T* __restrict__ x, T* __restrict__ y,           \
                                             strata::ScanGeometry g) {                            \
        strata::scan<T, CT, __VA_ARGS__>(x, y, g);                                                          \
    }

#endif  // STRATA_REDUCE_CU

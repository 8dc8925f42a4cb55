// conv.cu: N-d convolution and its transpose (channels last). The general kernel, a thread per
// output element summing over the kernel window and its group's channels, for every float type
// (accumulating in f32, f64 for f64), any strides, dilations, padding and groups; and, for
// 16-bit forward convolutions with channels in multiples of eight, an implicit GEMM on tensor
// cores (`conv_igemm`). Spatial axes are padded to three with axes of size one.
//
// A convolution gathers in[b, o·stride + k·dilation − pad, g·cig + j] · w[k, j, co]; its
// transpose gathers the same terms from the other side: output position p takes input position
// o = (p + pad − k·dilation) / stride where that divides exactly, and weight
// w[k, c mod cig, g·cog + j] (see strata_core::kernel::Conv).

#ifndef STRATA_CONV_CU
#define STRATA_CONV_CU

struct ConvGeometry {
    i64 n;                       // output elements
    i32 transposed;
    i64 cig, cog, c_out;         // the forward map's channels per group; the output's channels
    i64 out[3], in[3], kernel[3], stride[3], dilation[3], pad[3];
    i64 x[6], w[6], y[6];        // offset, then strides (batch, 3 spatial, channels; for w: 3
                                 // kernel axes, channel within the group, other channel)
};

namespace strata {

// The input position along `ax` that tap k takes for output position o, or -1.
__device__ __forceinline__ i64 conv_source(const ConvGeometry& g, int ax, i64 o, i64 k) {
    const i64 offset = k * g.dilation[ax] - g.pad[ax];
    i64 i;
    if (!g.transposed) {
        i = o * g.stride[ax] + offset;
    } else {
        const i64 num = o - offset;
        if (num < 0 || num % g.stride[ax] != 0) return -1;
        i = num / g.stride[ax];
    }
    return i >= 0 && i < g.in[ax] ? i : -1;
}

template <class T, class A>
__device__ __forceinline__ void conv(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y,
                                     const ConvGeometry& g) {
    STRATA_GRID_LOOP(e, g.n) {
        const i64 c = e % g.c_out;
        i64 r = e / g.c_out;
        const i64 o2 = r % g.out[2];
        r /= g.out[2];
        const i64 o1 = r % g.out[1];
        r /= g.out[1];
        const i64 o0 = r % g.out[0];
        const i64 b = r / g.out[0];
        // The channels summed and where they start: a convolution's group of input channels,
        // a transpose's group of (forward) output channels.
        const i64 count = g.transposed ? g.cog : g.cig;
        const i64 first = g.transposed ? (c / g.cig) * g.cog : (c / g.cog) * g.cig;
        A acc = 0;
        for (i64 k0 = 0; k0 < g.kernel[0]; ++k0) {
            const i64 i0 = conv_source(g, 0, o0, k0);
            if (i0 < 0) continue;
            for (i64 k1 = 0; k1 < g.kernel[1]; ++k1) {
                const i64 i1 = conv_source(g, 1, o1, k1);
                if (i1 < 0) continue;
                for (i64 k2 = 0; k2 < g.kernel[2]; ++k2) {
                    const i64 i2 = conv_source(g, 2, o2, k2);
                    if (i2 < 0) continue;
                    const T* xp = x + g.x[0] + b * g.x[1] + i0 * g.x[2] + i1 * g.x[3] + i2 * g.x[4] + first * g.x[5];
                    const T* wp = w + g.w[0] + k0 * g.w[1] + k1 * g.w[2] + k2 * g.w[3];
                    for (i64 j = 0; j < count; ++j) {
                        const T wv = g.transposed ? wp[(c % g.cig) * g.w[4] + (first + j) * g.w[5]]
                                                  : wp[j * g.w[4] + c * g.w[5]];
                        acc += (A)ld(xp[j * g.x[5]]) * (A)ld(wv);
                    }
                }
            }
        }
        y[g.y[0] + b * g.y[1] + o0 * g.y[2] + o1 * g.y[3] + o2 * g.y[4] + c * g.y[5]] = St<T>::from(acc);
    }
}


}  // namespace strata

#define STRATA_CONV(T, A)                                                                         \
    extern "C" __global__ void strata_kernel(const T* __restrict__ x, const T* __restrict__ w,    \
                                             T* __restrict__ y, const ConvGeometry g) {           \
        strata::conv<T, A>(x, w, y, g);                                                           \
    }

#endif  // STRATA_CONV_CU

// The tensor-core kernels, where tensor_ops.cuh was included first.
#if defined(STRATA_TENSOR_OPS_CUH) && !defined(STRATA_CONV_IGEMM_CU)
#define STRATA_CONV_IGEMM_CU
namespace strata {

// The implicit GEMM (f16/bf16, a forward convolution): per group g, Y[m, n] = Σ_kk A[m, kk]·B[kk, n]
// with m = (b, o0, o1, o2) an output position, kk = (k0, k1, k2, j) a tap and a channel of the
// group, n an output channel of the group, A[m, kk] the input element tap kk reads for position
// m (zero in the padding) and B the weight as a K x c_out matrix (row kk at w[0] + kk·w[4]: the
// host gives the weight rows evenly spaced). The host also checks that cig > 0 and cig % 8 == 0,
// that the input's channels are contiguous with every other stride (and its offset) a multiple
// of eight elements, and that positions fit in 30 bits.
//
// A's slices are gathered in 16-byte runs of eight channels (a run never crosses a tap, as cig %
// 8 == 0) from the rows' input positions, zero-filled where the tap falls in the padding. Each
// thread gathers the same eight-channel column of ROWS rows (STEP apart) of every slice, so it
// keeps those rows' positions and steps its (tap, channel) forward a slice at a time, without
// dividing.
template <class T, int ROWS, int STEP> struct ConvGather {
    i64 xrow[ROWS];     // each row's batch and group in the input
    int pos[ROWS][3];   // each row's first input position along each axis (tap 0)
    int row0, col;      // the tile row of this thread's first row, and its column
    int j, k0, k1, k2;  // the (tap, channel) of the column in the next slice

    // `first`: the column (tap and channel) of the first slice this block reads (its split's).
    __device__ ConvGather(const ConvGeometry& g, i64 m0, i64 grp, int row0_, int col_, i64 first)
        : row0(row0_), col(col_) {
        const i64 M = g.n / g.c_out;
#pragma unroll
        for (int r = 0; r < ROWS; ++r) {
            const i64 m = m0 + row0 + STEP * r;
            i64 q = m;
            const int o2 = (int)(q % g.out[2]);
            q /= g.out[2];
            const int o1 = (int)(q % g.out[1]);
            q /= g.out[1];
            const int o0 = (int)(q % g.out[0]);
            xrow[r] = g.x[0] + (q / g.out[0]) * g.x[1] + grp * g.cig;
            pos[r][0] = m < M ? o0 * (int)g.stride[0] - (int)g.pad[0] : -(1 << 30);  // past M: never valid
            pos[r][1] = o1 * (int)g.stride[1] - (int)g.pad[1];
            pos[r][2] = o2 * (int)g.stride[2] - (int)g.pad[2];
        }
        // Column `col + first`: in 64 bits, since a split's start may lie many taps in; each
        // slice after steps in 32.
        j = k0 = k1 = k2 = 0;
        advance<i64>(g, (i64)col + first);
    }

    // Steps the (tap, channel) `by` columns on, by carries: channels, then taps k2, k1, k0.
    template <class I> __device__ void advance(const ConvGeometry& g, I by) {
        I jj = (I)j + by;
        while (jj >= (I)g.cig) {
            jj -= (I)g.cig;
            if (++k2 == (int)g.kernel[2]) {
                k2 = 0;
                if (++k1 == (int)g.kernel[1]) k1 = 0, ++k0;
            }
        }
        j = (int)jj;
    }

    // Copies this thread's runs of the next BK-deep slice into `a` (zeros past K and in the
    // padding), then steps to the slice after.
    template <int BK, class TileA> __device__ void fetch(const T* __restrict__ x, const ConvGeometry& g, const TileA& a) {
        const bool tap = k0 < (int)g.kernel[0];
        const int d0 = k0 * (int)g.dilation[0], d1 = k1 * (int)g.dilation[1], d2 = k2 * (int)g.dilation[2];
#pragma unroll
        for (int r = 0; r < ROWS; ++r) {
            const int i0 = pos[r][0] + d0, i1 = pos[r][1] + d1, i2 = pos[r][2] + d2;
            const bool valid = tap && (unsigned)i0 < (unsigned)g.in[0] && (unsigned)i1 < (unsigned)g.in[1] &&
                               (unsigned)i2 < (unsigned)g.in[2];
            const T* src = valid ? x + xrow[r] + i0 * g.x[2] + i1 * g.x[3] + i2 * g.x[4] + j : x;
            tensor_ops::cp_async16(a.at(row0 + STEP * r, col), src, valid ? 16 : 0);
        }
        advance<int>(g, BK);
    }
};

// Where output row m of group `grp` starts (its first channel), or null past the last row.
template <class T> __device__ __forceinline__ T* conv_out_row(T* y, const ConvGeometry& g, i64 m, i64 grp) {
    if (m >= g.n / g.c_out) return nullptr;
    i64 q = m;
    const i64 o2 = q % g.out[2];
    q /= g.out[2];
    const i64 o1 = q % g.out[1];
    q /= g.out[1];
    return y + g.y[0] + (q / g.out[0]) * g.y[1] + (q % g.out[0]) * g.y[2] + o1 * g.y[3] + o2 * g.y[4] + grp * g.cog;
}

// Output channels n and n + 1 of a row: one 32-bit store where the pair is aligned.
template <class T> __device__ __forceinline__ void conv_store_pair(T* p, float lo, float hi) {
    if (((u64)p & 3) == 0) {
        *reinterpret_cast<u32*>(p) = tensor_ops::Mma<T>::pack(lo, hi);
    } else {
        p[0] = St<T>::from(lo);
        p[1] = St<T>::from(hi);
    }
}

// At warp scope (mma.sync, sm_80 and later): a block computes a 128 x 128 tile of Y with four
// warps (64 x 64 each) over a ring of four stages of 32-deep slices of A and B fetched with
// cp.async (B's rows as a plain tile).
template <class T> __device__ __forceinline__ void conv_igemm(const T* __restrict__ x, const T* __restrict__ w,
                                                               T* __restrict__ y, const ConvGeometry& g) {
    using namespace tensor_ops;
    constexpr int BM = 128, BN = 128, BK = 32, STAGES = 4, THREADS = 128;
    constexpr int STEP = THREADS / (BK / 8), ROWS = BM / STEP;
    extern __shared__ __align__(128) unsigned char conv_smem[];
    T* smem = reinterpret_cast<T*>(conv_smem);
    const auto ta = [&](int s) { return Tile<T, BM, BK>{smem + s * (BM * BK + BK * BN)}; };
    const auto tb = [&](int s) { return Tile<T, BK, BN>{smem + s * (BM * BK + BK * BN) + BM * BK}; };

    const i64 K = g.kernel[0] * g.kernel[1] * g.kernel[2] * g.cig;
    const i64 m0 = (i64)blockIdx.x * BM, n0 = (i64)blockIdx.y * BN, grp = blockIdx.z;
    const int slices = (int)((K + BK - 1) / BK);
    ConvGather<T, ROWS, STEP> gather(g, m0, grp, threadIdx.x / (BK / 8), (threadIdx.x % (BK / 8)) * 8, 0);
    const T* wg = w + g.w[0] + grp * g.cog + n0;
    const auto fetch = [&](int slice) {
        const int s = slice % STAGES;
        gather.template fetch<BK>(x, g, ta(s));
        const i64 k = (i64)slice * BK;
        load_async<T, BK, BN, THREADS>(tb(s), wg + k * g.w[4], g.w[4], (int)min((i64)BK, K - k),
                                       (int)min((i64)BN, g.cog - n0));
    };

    const int warp = threadIdx.x / 32, wm = warp / 2, wn = warp % 2;
    using Mm = Matmul2d<64, 64, true, false>;
    Dest<64, 64> acc;
    acc.fill(0.f);
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < slices) fetch(s);
        commit();
    }
    for (int slice = 0; slice < slices; ++slice) {
        wait<STAGES - 2>();
        __syncthreads();  // this slice landed; every warp is done with the one fetched next
        if (slice + STAGES - 1 < slices) fetch(slice + STAGES - 1);
        commit();
        const int s = slice % STAGES;
        Mm::template run<BK, T>(acc, ta(s), wm * 64, tb(s), wn * 64, 0);
    }
    wait<0>();

#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            T* row = conv_out_row(y, g, m0 + wm * 64 + Dest<64, 64>::row(i, 2 * h), grp);
            if (row == nullptr) continue;
#pragma unroll
            for (int jj = 0; jj < 8; ++jj) {
                const i64 n = n0 + wn * 64 + Dest<64, 64>::col(jj, 0);
                if (n < g.cog) conv_store_pair(row + n, acc.v[i][jj][2 * h], acc.v[i][jj][2 * h + 1]);
            }
        }
}

// At warpgroup scope (sm_90a), as `gemm_wg` runs a GEMM: 128 x BN block tiles (BN 128 or 256),
// 64-deep slices through a cp.async ring in 1024-byte-aligned shared memory (six stages for
// BN = 128, four for 256: four or two slices in flight while one is multiplied), two
// warpgroups each owning a 64 x BN `wgmma` destination, one group of products in flight. B's
// slices arrive as BN/64 blocks of [64 k][64 n].
// `splits` > 1: the slices are split that many ways along blockIdx.z (over the groups), and each
// block stores its fp32 partial tile into `part` ([split][row][channel]), which
// `conv_splitk_reduce` sums into y; for grids too small to fill the device.
template <class T, int BN>
__device__ __forceinline__ void conv_wg(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y,
                                        float* __restrict__ part, int splits, const ConvGeometry& g) {
#if defined(STRATA_HAS_WGMMA)
    using namespace tensor_ops;
    constexpr int BM = 128, BK = 64, S = BN == 128 ? 6 : 4, THREADS = 256;
    constexpr int STEP = THREADS / (BK / 8), ROWS = BM / STEP;
    extern __shared__ u8 conv_wg_smem[];
    T* sa = (T*)(((size_t)conv_wg_smem + 1023) & ~(size_t)1023);  // S tiles of [BM][BK]
    T* sb = sa + S * BM * BK;                                       // S tiles of BN/64 x [BK][64]

    const i64 K = g.kernel[0] * g.kernel[1] * g.kernel[2] * g.cig, groups = g.c_out / g.cog;
    const i64 m0 = (i64)blockIdx.x * BM, n0 = (i64)blockIdx.y * BN, grp = blockIdx.z % groups;
    const int split = (int)(blockIdx.z / groups), all = (int)((K + BK - 1) / BK), per = (all + splits - 1) / splits;
    // This block's slices: [first, first + slices) (the host makes every split non-empty).
    const int first = split * per, slices = min(all - first, per);
    ConvGather<T, ROWS, STEP> gather(g, m0, grp, threadIdx.x / (BK / 8), (threadIdx.x % (BK / 8)) * 8,
                                     (i64)first * BK);
    const T* wg_ptr = w + g.w[0] + grp * g.cog + n0;
    const int ncols = (int)min((i64)BN, g.cog - n0);
    const auto fetch = [&](int slice) {
        const int s = slice % S;
        gather.template fetch<BK>(x, g, Tile<T, BM, BK>{sa + s * BM * BK});
        const i64 k = (i64)(first + slice) * BK;
        const int kk = (int)min((i64)BK, K - k);
        const T* row = wg_ptr + k * g.w[4];
#pragma unroll
        for (int blk = 0; blk < BN / 64; ++blk) {
            const int cols = max(0, min(64, ncols - blk * 64));
            load_async<T, BK, 64, THREADS>(Tile<T, BK, 64>{sb + s * BN * BK + blk * 64 * BK},
                                           cols > 0 ? row + blk * 64 : row, g.w[4], kk, cols);
        }
    };

    const int wgi = threadIdx.x / 128;
    using Mm = Matmul2d<64, BN, true, false, Warpgroup>;
    WgDest<BN> acc;
    acc.fill(0.f);
#pragma unroll
    for (int s = 0; s < S - 2; ++s) {
        if (s < slices) fetch(s);
        commit();
    }
    for (int slice = 0; slice < slices; ++slice) {
        // This slice landed, and both warpgroups' products of slice - 2 are done, so its stage
        // can be refilled.
        wait<S - 3>();
        fence_proxy_async();
        __syncthreads();
        if (slice + S - 2 < slices) fetch(slice + S - 2);
        commit();
        const int s = slice % S;
        Mm::template run<BK, T>(acc, sa + s * BM * BK + wgi * 64 * BK, sb + s * BN * BK);
        wgmma_wait<1>();
        acc.fence();
    }
    wgmma_wait<0>();
    acc.fence();
    wait<0>();

    if (splits > 1) {
        // The partial tile, in pairs of adjacent channels (c_out is even, so pairs are aligned).
        const i64 M = g.n / g.c_out;
#pragma unroll
        for (int i = 0; i < BN / 2; i += 2) {
            const i64 m = m0 + wgi * 64 + WgDest<BN>::row(i % 4), n = n0 + WgDest<BN>::col(i);
            if (m < M && n < g.cog)
                *(float2*)&part[((i64)split * M + m) * g.c_out + grp * g.cog + n] = make_float2(acc.v[i], acc.v[i + 1]);
        }
        return;
    }
    // A thread's outputs lie on two rows; their places first, then pairs of adjacent channels.
    T* rows[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) rows[h] = conv_out_row(y, g, m0 + wgi * 64 + WgDest<BN>::row(2 * h), grp);
#pragma unroll
    for (int i = 0; i < BN / 2; i += 2) {
        T* row = rows[(i % 4) >= 2];
        const i64 n = n0 + WgDest<BN>::col(i);
        if (row != nullptr && n < g.cog) conv_store_pair(row + n, acc.v[i], acc.v[i + 1]);
    }
#else
    __trap();  // the host launches this kernel on sm_90a only
#endif
}

// y = the sum of `splits` partial outputs ([split][row][channel], fp32), rounded once.
template <class T> __device__ __forceinline__ void conv_splitk_reduce(const float* __restrict__ part, int splits,
                                                                      T* __restrict__ y, const ConvGeometry& g) {
    STRATA_GRID_LOOP(e, g.n) {
        float sum = 0.f;
        for (int s = 0; s < splits; ++s) sum += part[(i64)s * g.n + e];
        conv_out_row(y, g, e / g.c_out, 0)[e % g.c_out] = St<T>::from(sum);
    }
}

}  // namespace strata

// T: f16 or bf16 (the host checks the shapes and strides the kernels take).
#define STRATA_CONV_TENSOR_CORES(T)                                                               \
    extern "C" __global__ void __launch_bounds__(128)                                             \
        strata_kernel(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, const ConvGeometry g) { \
        strata::conv_igemm<T>(x, w, y, g);                                                        \
    }
// The warpgroup kernel (sm_90a): T f16 or bf16, BN 128 or 256; `splits` ways along k (then fp32
// partial tiles into `part`, summed by STRATA_CONV_SPLITK_REDUCE).
#define STRATA_CONV_WGMMA(T, BN)                                                                  \
    extern "C" __global__ void __launch_bounds__(256)                                             \
        strata_kernel(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y,        \
                      float* __restrict__ part, int splits, const ConvGeometry g) {               \
        strata::conv_wg<T, BN>(x, w, y, part, splits, g);                                         \
    }
#define STRATA_CONV_SPLITK_REDUCE(T)                                                              \
    extern "C" __global__ void __launch_bounds__(256)                                             \
        strata_kernel(const float* __restrict__ part, int splits, T* __restrict__ y, const ConvGeometry g) { \
        strata::conv_splitk_reduce<T>(part, splits, y, g);                                        \
    }
#endif  // STRATA_CONV_IGEMM_CU

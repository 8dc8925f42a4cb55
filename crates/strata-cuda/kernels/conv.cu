// conv.cu: N-d convolution and its transpose (channels last): the general kernel, a thread per
// output element summing over the kernel window and its group's channels, for every float type
// (accumulating in f32, f64 for f64), any strides, dilations, padding and groups. Spatial axes
// are padded to three with axes of size one.
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

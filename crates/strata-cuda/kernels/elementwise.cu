// elementwise.cu: the element-wise kernels. The Rust side instantiates one of these macros per
// (operation, types) with the operation's expression. Dense operands whose offsets are
// multiples of four (Geometry.contiguous == 2) move four elements per load and store; anything
// else takes one grid-stride loop over the output, each operand addressed through the strided
// Geometry (operand 0 is the output).

#define STRATA_UNARY(TIN, TOUT, CTYPE, ...)                                                   \
    extern "C" __global__ void strata_kernel(const TIN* __restrict__ x, TOUT* __restrict__ y, \
                                             strata::Geometry g) {                            \
        typedef CTYPE CT;                                                                     \
        if (g.contiguous == 2) {                                                              \
            const strata::Pack<TIN, 4>* xp = (const strata::Pack<TIN, 4>*)(x + g.offset[1]);  \
            strata::Pack<TOUT, 4>* yp = (strata::Pack<TOUT, 4>*)(y + g.offset[0]);            \
            STRATA_GRID_LOOP(j, g.n / 4) {                                                    \
                const strata::Pack<TIN, 4> p = xp[j];                                         \
                strata::Pack<TOUT, 4> q;                                                      \
                _Pragma("unroll") for (int k = 0; k < 4; ++k) {                              \
                    CT v = (CT)strata::ld(p.v[k]);                                            \
                    q.v[k] = strata::St<TOUT>::from(__VA_ARGS__);                             \
                }                                                                             \
                yp[j] = q;                                                                    \
            }                                                                                 \
            STRATA_TAIL_LOOP(i, g.n) {                                                        \
                CT v = (CT)strata::ld(x[g.offset[1] + i]);                                    \
                y[g.offset[0] + i] = strata::St<TOUT>::from(__VA_ARGS__);                     \
            }                                                                                 \
            return;                                                                           \
        }                                                                                     \
        STRATA_GRID_LOOP(i, g.n) {                                                            \
            CT v = (CT)strata::ld(x[strata::position(g, 1, i)]);                              \
            y[strata::position(g, 0, i)] = strata::St<TOUT>::from(__VA_ARGS__);               \
        }                                                                                     \
    }

#define STRATA_BINARY(TIN, TOUT, CTYPE, ...)                                                   \
    extern "C" __global__ void strata_kernel(const TIN* __restrict__ xa,                       \
                                             const TIN* __restrict__ xb, TOUT* __restrict__ y,  \
                                             strata::Geometry g) {                             \
        typedef CTYPE CT;                                                                      \
        if (g.contiguous == 2) {                                                               \
            const strata::Pack<TIN, 4>* ap = (const strata::Pack<TIN, 4>*)(xa + g.offset[1]);  \
            const strata::Pack<TIN, 4>* bp = (const strata::Pack<TIN, 4>*)(xb + g.offset[2]);  \
            strata::Pack<TOUT, 4>* yp = (strata::Pack<TOUT, 4>*)(y + g.offset[0]);             \
            STRATA_GRID_LOOP(j, g.n / 4) {                                                     \
                const strata::Pack<TIN, 4> pa = ap[j], pb = bp[j];                             \
                strata::Pack<TOUT, 4> q;                                                       \
                _Pragma("unroll") for (int k = 0; k < 4; ++k) {                               \
                    CT a = (CT)strata::ld(pa.v[k]);                                            \
                    CT b = (CT)strata::ld(pb.v[k]);                                            \
                    q.v[k] = strata::St<TOUT>::from(__VA_ARGS__);                              \
                }                                                                              \
                yp[j] = q;                                                                     \
            }                                                                                  \
            STRATA_TAIL_LOOP(i, g.n) {                                                         \
                CT a = (CT)strata::ld(xa[g.offset[1] + i]);                                    \
                CT b = (CT)strata::ld(xb[g.offset[2] + i]);                                    \
                y[g.offset[0] + i] = strata::St<TOUT>::from(__VA_ARGS__);                      \
            }                                                                                  \
            return;                                                                            \
        }                                                                                      \
        STRATA_GRID_LOOP(i, g.n) {                                                             \
            CT a = (CT)strata::ld(xa[strata::position(g, 1, i)]);                              \
            CT b = (CT)strata::ld(xb[strata::position(g, 2, i)]);                              \
            y[strata::position(g, 0, i)] = strata::St<TOUT>::from(__VA_ARGS__);                \
        }                                                                                      \
    }

// out = cond ? a : b, element bits copied unchanged.
#define STRATA_SELECT(T)                                                                       \
    extern "C" __global__ void strata_kernel(const u8* __restrict__ c, const T* __restrict__ a, \
                                             const T* __restrict__ b, T* __restrict__ y,       \
                                             strata::Geometry g) {                             \
        STRATA_GRID_LOOP(i, g.n) {                                                             \
            y[strata::position(g, 0, i)] = c[strata::position(g, 1, i)]                        \
                                               ? a[strata::position(g, 2, i)]                  \
                                               : b[strata::position(g, 3, i)];                 \
        }                                                                                      \
    }

// A conversion (or, with TIN == TOUT and the expression `x`, a copy between layouts).
#define STRATA_CAST(TIN, TOUT, ...)                                                            \
    extern "C" __global__ void strata_kernel(const TIN* __restrict__ src, TOUT* __restrict__ y, \
                                             strata::Geometry g) {                             \
        if (g.contiguous == 2) {                                                               \
            const strata::Pack<TIN, 4>* sp = (const strata::Pack<TIN, 4>*)(src + g.offset[1]); \
            strata::Pack<TOUT, 4>* yp = (strata::Pack<TOUT, 4>*)(y + g.offset[0]);            \
            STRATA_GRID_LOOP(j, g.n / 4) {                                                     \
                const strata::Pack<TIN, 4> p = sp[j];                                          \
                strata::Pack<TOUT, 4> q;                                                       \
                _Pragma("unroll") for (int k = 0; k < 4; ++k) {                               \
                    TIN x = p.v[k];                                                            \
                    q.v[k] = (__VA_ARGS__);                                                    \
                }                                                                              \
                yp[j] = q;                                                                     \
            }                                                                                  \
            STRATA_TAIL_LOOP(i, g.n) {                                                         \
                TIN x = src[g.offset[1] + i];                                                  \
                y[g.offset[0] + i] = (__VA_ARGS__);                                            \
            }                                                                                  \
            return;                                                                            \
        }                                                                                      \
        STRATA_GRID_LOOP(i, g.n) {                                                             \
            TIN x = src[strata::position(g, 1, i)];                                            \
            y[strata::position(g, 0, i)] = (__VA_ARGS__);                                      \
        }                                                                                      \
    }

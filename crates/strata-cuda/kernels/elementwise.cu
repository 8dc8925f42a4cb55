// elementwise.cu: the element-wise kernels. The Rust side instantiates one of these macros per
// (operation, types) with the operation's expression; one grid-stride loop over the output,
// each operand addressed through the shared strided Geometry (operand 0 is the output).

#define STRATA_UNARY(TIN, TOUT, CTYPE, ...)                                                   \
    extern "C" __global__ void strata_kernel(const TIN* __restrict__ x, TOUT* __restrict__ y, \
                                             strata::Geometry g) {                            \
        typedef CTYPE CT;                                                                     \
        STRATA_GRID_LOOP(i, g.n) {                                                            \
            CT v = (CT)strata::ld(x[strata::position(g, 1, i)]);                              \
            y[strata::position(g, 0, i)] = strata::St<TOUT>::from(__VA_ARGS__);               \
        }                                                                                     \
    }

#define STRATA_BINARY(TIN, TOUT, CTYPE, ...)                                                  \
    extern "C" __global__ void strata_kernel(const TIN* __restrict__ xa,                      \
                                             const TIN* __restrict__ xb, TOUT* __restrict__ y, \
                                             strata::Geometry g) {                            \
        typedef CTYPE CT;                                                                     \
        STRATA_GRID_LOOP(i, g.n) {                                                            \
            CT a = (CT)strata::ld(xa[strata::position(g, 1, i)]);                             \
            CT b = (CT)strata::ld(xb[strata::position(g, 2, i)]);                             \
            y[strata::position(g, 0, i)] = strata::St<TOUT>::from(__VA_ARGS__);               \
        }                                                                                     \
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
        STRATA_GRID_LOOP(i, g.n) {                                                             \
            TIN x = src[strata::position(g, 1, i)];                                            \
            y[strata::position(g, 0, i)] = (__VA_ARGS__);                                      \
        }                                                                                      \
    }

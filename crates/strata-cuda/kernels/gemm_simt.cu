// gemm_simt.cu: matmul2d on the CUDA cores, for every product the tensor-core kernels of
// gemm.cu do not take: f32 without `relaxed_precision` (the default for f32 arrays), f64,
// int8 -> int32, and 16-bit or fp8 operands in layouts or on GPUs the tensor-core kernels do not
// serve. It follows gemm.cu (its geometry, batch offsets and epilogue), in a unit of its own so
// that a change here leaves the tensor-core kernels' cached cubins alone.
//
// The classic register-blocked SGEMM: 256 threads as a 16 x 16 grid over a BM x BN tile of C
// (BM, BN of 64 or 128), each thread owning (BM / 16) x (BN / 16) outputs in 4 x 4 blocks 64
// rows or columns apart, so that each k step reads its operands from shared memory as vectors
// of four: a warp's A reads are two addresses, each broadcast to half the warp, and its B reads
// one dense run (256 bytes for 32-bit compute types). (Warps of 4 x 8 threads, fewer
// shared-memory wavefronts a step, ran no faster on an H200.) k steps through slices of 8; the
// next slice's global loads go to registers while this one multiplies, then to the other of two
// shared-memory buffers, one barrier a slice. Each thread loads BM / 32 elements of A and
// BN / 32 of B a slice, along whichever dimension is contiguous in memory, as one vector load
// where the matrix's rows (or columns) are aligned to it and k is a multiple of the slice, else
// element by element with bounds checks (any strides).

#ifndef STRATA_GEMM_SIMT_CU
#define STRATA_GEMM_SIMT_CU

namespace strata {

// N consecutive elements of T, aligned as one vector load or store.
template <class T, int N> struct alignas(N * sizeof(T)) SimtVec {
    T v[N];
};

// One operand's slice for one thread: L elements of a ROWS x 8 slice (A: BM rows of k; B seen
// as BN columns of k), read along k (`along_k`) or along the rows, into compute type CT.
template <class T, class CT, int L> struct SimtLoad {
    CT v[L];
    // The L elements at `p` as one vector.
    __device__ __forceinline__ void vector(const T* __restrict__ p) {
        const SimtVec<T, L> w = *(const SimtVec<T, L>*)p;
#pragma unroll
        for (int e = 0; e < L; ++e) v[e] = (CT)ld(w.v[e]);
    }
    // Element by element from `p` (the operand at this batch), with bounds: the thread's first
    // element is at (`row`, `kk`) of a `rows` x `k` matrix with strides `rs` and `ks`.
    __device__ __forceinline__ void checked(const T* __restrict__ p, i64 rs, i64 ks, bool along_k, i64 row, i64 kk,
                                            i64 rows, i64 k) {
#pragma unroll
        for (int e = 0; e < L; ++e) {
            const i64 r = along_k ? row : row + e, q = along_k ? kk + e : kk;
            v[e] = (r < rows && q < k) ? (CT)ld(p[r * rs + q * ks]) : (CT)0;
        }
    }
    __device__ __forceinline__ SimtVec<CT, L> vec() const {
        SimtVec<CT, L> w;
#pragma unroll
        for (int e = 0; e < L; ++e) w.v[e] = v[e];
        return w;
    }
};

template <class TA, class TB, class CT, class TOUT, int BM, int BN, class F>
__device__ void gemm_simt(const TA* __restrict__ a, const TB* __restrict__ b, const TOUT* bias, TOUT* c,
                          const MatmulGeometry& g, F act) {
    constexpr int BK = 8, PAD = 4, TM = BM / 16, TN = BN / 16, LA = BM / 32, LB = BN / 32;
    static_assert((BM == 64 || BM == 128) && (BN == 64 || BN == 128), "tiles of 64 or 128");
    // [buffer][k][row]: rows padded so that a thread's L stores along k (A row-major, B stored
    // n x k) fall on distinct banks across the warp.
    __shared__ __align__(32) CT As[2][BK][BM + PAD];
    __shared__ __align__(32) CT Bs[2][BK][BN + PAD];
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const i64 m0 = (i64)blockIdx.y * BM, n0 = (i64)blockIdx.x * BN;
    // A's slice is read along k when k is A's unit stride (row-major A), else along m: a thread
    // takes LA consecutive k of row tid / (8 / LA), or LA consecutive rows at k step tid / 32.
    // B likewise, seen as n rows of k. (The geometry's fields are read where used: they live in
    // the parameter bank, not in registers.)
    const bool a_k = g.a_cs == 1 && g.a_rs != 1, b_k = g.b_rs == 1 && g.b_cs != 1;
    const int ar = a_k ? tid / (BK / LA) : (tid % 32) * LA, ak = a_k ? (tid % (BK / LA)) * LA : tid / 32;
    const int br = b_k ? tid / (BK / LB) : (tid % 32) * LB, bk = b_k ? (tid % (BK / LB)) * LB : tid / 32;
    const int ktiles = (int)((g.k + BK - 1) / BK);
    for (i64 z = blockIdx.z; z < g.batch; z += gridDim.z) {
        CT acc[TM][TN];
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) acc[i][j] = (CT)0;
        // The k loop, with every load one vector (V) or element by element with bounds.
        auto run = [&](auto vec) {
            constexpr bool V = decltype(vec)::value;
            i64 ao, bo, co;
            batch_offsets(g, z, ao, bo, co);
            // The thread's first elements, stepped a slice at a time (V only). A vector past
            // the matrix's last row reads the last one instead (k and, where the vector runs
            // along the rows, the rows are multiples of it): those rows of A (columns of B) only
            // reach outputs past the edge, which are never stored.
            const TA* pa = a;
            const TB* pb = b;
            if constexpr (V) {
                const i64 ra = min(m0 + ar, a_k ? g.m - 1 : g.m - LA), rb = min(n0 + br, b_k ? g.n - 1 : g.n - LB);
                pa += ao + ra * g.a_rs + ak * g.a_cs;
                pb += bo + rb * g.b_cs + bk * g.b_rs;
            }
            SimtLoad<TA, CT, LA> la;
            SimtLoad<TB, CT, LB> lb;
            auto fetch = [&](int kt) {
                if constexpr (V) {
                    la.vector(pa);
                    lb.vector(pb);
                    pa += BK * g.a_cs;
                    pb += BK * g.b_rs;
                } else {
                    const i64 k0 = (i64)kt * BK;
                    la.checked(a + ao, g.a_rs, g.a_cs, a_k, m0 + ar, k0 + ak, g.m, g.k);
                    lb.checked(b + bo, g.b_cs, g.b_rs, b_k, n0 + br, k0 + bk, g.n, g.k);
                }
            };
            auto stash = [&](int buf) {
                if (a_k) {
#pragma unroll
                    for (int e = 0; e < LA; ++e) As[buf][ak + e][ar] = la.v[e];
                } else {
                    *(SimtVec<CT, LA>*)&As[buf][ak][ar] = la.vec();
                }
                if (b_k) {
#pragma unroll
                    for (int e = 0; e < LB; ++e) Bs[buf][bk + e][br] = lb.v[e];
                } else {
                    *(SimtVec<CT, LB>*)&Bs[buf][bk][br] = lb.vec();
                }
            };
            fetch(0);
            stash(0);
            __syncthreads();
            for (int kt = 0; kt < ktiles; ++kt) {
                const int cur = kt & 1;
                const bool more = kt + 1 < ktiles;
                if (more) fetch(kt + 1);
#pragma unroll
                for (int p = 0; p < BK; ++p) {
                    SimtVec<CT, 4> av[TM / 4], bv[TN / 4];
#pragma unroll
                    for (int i = 0; i < TM / 4; ++i) av[i] = *(const SimtVec<CT, 4>*)&As[cur][p][64 * i + 4 * ty];
#pragma unroll
                    for (int j = 0; j < TN / 4; ++j) bv[j] = *(const SimtVec<CT, 4>*)&Bs[cur][p][64 * j + 4 * tx];
#pragma unroll
                    for (int i = 0; i < TM; ++i)
#pragma unroll
                        for (int j = 0; j < TN; ++j) acc[i][j] += av[i / 4].v[i % 4] * bv[j / 4].v[j % 4];
                }
                // The other buffer was last read in the previous slice, before its barrier.
                if (more) stash(cur ^ 1);
                __syncthreads();
            }
        };
        {
            i64 ao, bo, co;
            batch_offsets(g, z, ao, bo, co);
            // Vectors need their first element aligned: the batch's offset and the stride
            // between vectors multiples of L (the allocator aligns buffers to 256 bytes); and
            // k a multiple of the slice, and rows read L at a time a multiple of L, so that
            // each vector lies wholly inside the matrix or wholly outside.
            const bool a_vec = (a_k ? g.a_rs % LA == 0 : g.a_rs == 1 && g.a_cs % LA == 0 && g.m % LA == 0) && ao % LA == 0;
            const bool b_vec = (b_k ? g.b_cs % LB == 0 : g.b_cs == 1 && g.b_rs % LB == 0 && g.n % LB == 0) && bo % LB == 0;
            if (a_vec && b_vec && g.k % BK == 0 && g.k > 0 && g.m > 0 && g.n > 0) run(Flag<true>());
            else run(Flag<false>());
        }
        i64 ao, bo, co;
        batch_offsets(g, z, ao, bo, co);
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) {
                const i64 gi = m0 + 64 * (i / 4) + 4 * ty + i % 4, gj = n0 + 64 * (j / 4) + 4 * tx + j % 4;
                if (gi < g.m && gj < g.n)
                    finish<CT, TOUT>(acc[i][j], c, co + gi * g.c_rs + gj * g.c_cs, bias, g, gi, gj, act);
            }
    }
}

}  // namespace strata

// BM x BN tiles; two CTAs a multiprocessor where the accumulators are 32-bit.
#define STRATA_GEMM_SIMT(TA, TB, CT, TOUT, BM, BN)                                                    \
    extern "C" __global__ void __launch_bounds__(256, sizeof(CT) == 4 ? 2 : 1) strata_kernel(        \
        const TA* __restrict__ a, const TB* __restrict__ b, const TOUT* bias, TOUT* c,                 \
        strata::MatmulGeometry g) {                                                                  \
        strata::gemm_simt<TA, TB, CT, TOUT, BM, BN>(a, b, bias, c, g, [](CT v) -> CT { return STRATA_ACT(v); }); \
    }

#endif

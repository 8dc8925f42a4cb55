// tensor_ops.cuh: Strata's kernel-authoring library for tensor cores (the analog of Apple's
// TensorOps): shared-memory tiles, cooperative tensors held in registers, and `matmul2d` over
// them with a descriptor and an execution scope.
//
// Scope `Warp` runs on `mma.sync.m16n8k16` (sm_80 and later). A descriptor
// `Matmul2d<M, N, LEFT_K_MAJOR, RIGHT_K_MAJOR>` says the warp's tile (M x N, multiples of 16
// and 8), and how each operand's tile lies in shared memory: K-major (K contiguous: a row-major
// left operand, a transposed right one) or MN-major (fetched with `ldmatrix.trans`).
//
// The destination fragment's layout equals the left operand's register layout for K = 16
// (after rounding to 16 bits), which is what FlashAttention feeds from S = QK^T into P·V:
// `Dest::is_compatible_as_left_input` and `to_left_input` expose it.
#ifndef STRATA_TENSOR_OPS_CUH
#define STRATA_TENSOR_OPS_CUH

namespace strata {
namespace tensor_ops {

__device__ __forceinline__ int lane_id() { return threadIdx.x & 31; }

__device__ __forceinline__ u32 smem_addr(const void* p) { return (u32)__cvta_generic_to_shared(p); }

// ---- 16-bit element types ------------------------------------------------------------------
template <class T> struct Mma;
template <> struct Mma<f16> {
    __device__ static u32 pack(float lo, float hi) {
        u32 r;
        asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
        return r;
    }
};
template <> struct Mma<bf16> {
    __device__ static u32 pack(float lo, float hi) {
        u32 r;
        asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
        return r;
    }
};

__device__ __forceinline__ void mma_16816(float* d, const u32* a, const u32* b, f16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ void mma_16816(float* d, const u32* a, const u32* b, bf16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ void ldmatrix_x4(u32* r, const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(u32* r, const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

// ---- shared-memory tiles -------------------------------------------------------------------
// A ROWS x COLS tile of 16-bit elements, row-major, with the 16-byte chunks of each row
// permuted by an XOR of the row so that the eight rows one `ldmatrix` reads fall in distinct
// banks (and so do `cp.async`'s stores).
template <class T, int ROWS, int COLS> struct Tile {
    static_assert(sizeof(T) == 2, "16-bit elements");
    static const int CHUNKS = COLS / 8;  // 16-byte chunks per row
    static_assert(CHUNKS == 2 || CHUNKS == 4 || CHUNKS % 8 == 0, "rows of 32, 64 or a multiple of 128 bytes");
    T* data;
    __device__ static int swizzle(int row) {
        return CHUNKS >= 8 ? (row & 7) : CHUNKS == 4 ? ((row >> 1) & 3) : ((row >> 2) & 1);
    }
    // The element at (row, col); col % 8 is kept within its chunk.
    __device__ T* at(int row, int col) const {
        return data + row * COLS + (((col >> 3) ^ swizzle(row)) << 3) + (col & 7);
    }
};

// Copies a ROWS x COLS tile from global memory (row stride `ld` elements, 16-byte aligned rows)
// into `t`, asynchronously, every thread of the block taking a share of the 16-byte chunks.
// Elements outside (rows, cols) read as zero.
template <class T, int ROWS, int COLS, int THREADS>
__device__ __forceinline__ void load_async(Tile<T, ROWS, COLS> t, const T* g, i64 ld, int rows, int cols) {
    const int CH = COLS / 8;
#pragma unroll
    for (int i = threadIdx.x; i < ROWS * CH; i += THREADS) {
        const int r = i / CH, c = (i % CH) * 8;
        const int valid = (r < rows) ? max(0, min(8, cols - c)) : 0;
        const T* src = valid > 0 ? g + r * ld + c : g;
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_addr(t.at(r, c))), "l"(src),
                     "r"(valid * 2));
    }
}
__device__ __forceinline__ void commit() { asm volatile("cp.async.commit_group;"); }
template <int N> __device__ __forceinline__ void wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N)); }

// ---- cooperative tensors --------------------------------------------------------------------
// The left operand of a warp's M x 16 step in registers (four 32-bit words per 16 x 16 block).
template <class T, int M, int K> struct Left {
    u32 r[M / 16][K / 16][4];
};

// A warp's M x N destination in fp32 registers: thread `lane` holds, for each 16 x 8 block,
// rows lane/4 and lane/4 + 8, columns 2*(lane%4) and 2*(lane%4)+1.
template <int M, int N> struct Dest {
    static_assert(M % 16 == 0 && N % 8 == 0, "a warp tile is made of 16 x 8 blocks");
    float v[M / 16][N / 8][4];

    __device__ void fill(float x) {
#pragma unroll
        for (int i = 0; i < M / 16; ++i)
#pragma unroll
            for (int j = 0; j < N / 8; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) v[i][j][e] = x;
    }
    // Row and column within the tile of element e of block (i, j).
    __device__ static int row(int i, int e) { return i * 16 + lane_id() / 4 + (e >= 2 ? 8 : 0); }
    __device__ static int col(int j, int e) { return j * 8 + 2 * (lane_id() % 4) + (e & 1); }
    // v = f(v, row, col) for every element the thread holds.
    template <class F> __device__ void map(F f) {
#pragma unroll
        for (int i = 0; i < M / 16; ++i)
#pragma unroll
            for (int j = 0; j < N / 8; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) v[i][j][e] = f(v[i][j][e], row(i, e), col(j, e));
    }
    // Combines each row across the tile with `f` (e.g. max, +): out[i][h] is the result for
    // row i*16 + lane/4 + 8h, the same in the four threads that share the row.
    template <class F> __device__ void reduce_rows(float (&out)[M / 16][2], F f) const {
#pragma unroll
        for (int i = 0; i < M / 16; ++i)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                float a = v[i][0][2 * h];
                a = f(a, v[i][0][2 * h + 1]);
#pragma unroll
                for (int j = 1; j < N / 8; ++j) a = f(f(a, v[i][j][2 * h]), v[i][j][2 * h + 1]);
                a = f(a, __shfl_xor_sync(0xffffffffu, a, 1));
                a = f(a, __shfl_xor_sync(0xffffffffu, a, 2));
                out[i][h] = a;
            }
    }
    // A destination M x N feeds the next product as its left operand M x K (K = N) when N is
    // a multiple of 16: the register layouts coincide.
    static const bool is_compatible_as_left_input = N % 16 == 0;
    template <class T> __device__ Left<T, M, N> to_left_input() const {
        static_assert(N % 16 == 0, "see is_compatible_as_left_input");
        Left<T, M, N> l;
#pragma unroll
        for (int i = 0; i < M / 16; ++i)
#pragma unroll
            for (int k = 0; k < N / 16; ++k) {
                l.r[i][k][0] = Mma<T>::pack(v[i][2 * k][0], v[i][2 * k][1]);
                l.r[i][k][1] = Mma<T>::pack(v[i][2 * k][2], v[i][2 * k][3]);
                l.r[i][k][2] = Mma<T>::pack(v[i][2 * k + 1][0], v[i][2 * k + 1][1]);
                l.r[i][k][3] = Mma<T>::pack(v[i][2 * k + 1][2], v[i][2 * k + 1][3]);
            }
        return l;
    }
};

// ---- execution scopes and the descriptor -----------------------------------------------------
struct Warp {};  // one warp, mma.sync (the warpgroup scope, wgmma, is the next step on sm_90a)

// matmul2d: D[M x N] += A[M x K] * B[K x N] for one warp. The left tile holds A as [M][K]
// (LEFT_K_MAJOR) or [K][M]; the right tile holds B as [N][K] (RIGHT_K_MAJOR) or [K][N].
template <int M, int N, bool LEFT_K_MAJOR, bool RIGHT_K_MAJOR, class Scope = Warp> struct Matmul2d {
    static_assert(M % 16 == 0 && N % 16 == 0, "warp tiles are multiples of 16");

    // A's 16 x 16 block at (m0, k0) of the tile, as mma's left registers.
    template <class TileA> __device__ static void load_left(u32* r, const TileA& a, int m0, int k0) {
        const int l = lane_id(), j = l / 8, i = l % 8;
        if (LEFT_K_MAJOR) ldmatrix_x4(r, a.at(m0 + i + (j & 1) * 8, k0 + (j >> 1) * 8));
        else ldmatrix_x4_trans(r, a.at(k0 + i + (j >> 1) * 8, m0 + (j & 1) * 8));
    }
    // B's 16 (k) x 16 (n) block at (k0, n0) as two n8 halves: r[0..1] for n0, r[2..3] for n0+8.
    template <class TileB> __device__ static void load_right(u32* r, const TileB& b, int k0, int n0) {
        const int l = lane_id(), j = l / 8, i = l % 8;
        if (RIGHT_K_MAJOR) ldmatrix_x4(r, b.at(n0 + i + (j >> 1) * 8, k0 + (j & 1) * 8));
        else ldmatrix_x4_trans(r, b.at(k0 + i + (j & 1) * 8, n0 + (j >> 1) * 8));
    }

    // d += A[m0.., k0..k0+K) * B[k0..k0+K, n0..): both operands from shared memory.
    template <int K, class T, class TileA, class TileB>
    __device__ static void run(Dest<M, N>& d, const TileA& a, int m0, const TileB& b, int n0, int k0) {
#pragma unroll
        for (int k = 0; k < K; k += 16) {
            u32 ar[M / 16][4], br[N / 16][4];
#pragma unroll
            for (int i = 0; i < M / 16; ++i) load_left(ar[i], a, m0 + i * 16, k0 + k);
#pragma unroll
            for (int j = 0; j < N / 16; ++j) load_right(br[j], b, k0 + k, n0 + j * 16);
#pragma unroll
            for (int i = 0; i < M / 16; ++i)
#pragma unroll
                for (int j = 0; j < N / 8; ++j) mma_16816(d.v[i][j], ar[i], &br[j / 2][(j & 1) * 2], T());
        }
    }

    // d += L * B[k0..k0+K, n0..): the left operand already in registers (a previous
    // destination converted by `to_left_input`).
    template <int K, class T, class TileB>
    __device__ static void run(Dest<M, N>& d, const Left<T, M, K>& l, const TileB& b, int n0, int k0) {
#pragma unroll
        for (int k = 0; k < K; k += 16) {
            u32 br[N / 16][4];
#pragma unroll
            for (int j = 0; j < N / 16; ++j) load_right(br[j], b, k0 + k, n0 + j * 16);
#pragma unroll
            for (int i = 0; i < M / 16; ++i)
#pragma unroll
                for (int j = 0; j < N / 8; ++j) mma_16816(d.v[i][j], l.r[i][k / 16], &br[j / 2][(j & 1) * 2], T());
        }
    }
};

}  // namespace tensor_ops
}  // namespace strata

#endif  // STRATA_TENSOR_OPS_CUH

// tensor_ops.cuh: Strata's kernel-authoring library for tensor cores (the analog of Apple's
// TensorOps): shared-memory tiles, cooperative tensors held in registers, and `matmul2d` over
// them with a descriptor and an execution scope.
//
// Scope `Warp` runs on `mma.sync.m16n8k16` (sm_80 and later); scope `Warpgroup` on `wgmma`
// (sm_90a, both operands K-major, 128-byte swizzled tiles). A descriptor
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
// Stores to shared memory by 32-bit shared addresses: a generic pointer costs a 64-bit register
// pair per address and the generic path's address-space check.
__device__ __forceinline__ void st_shared(u32 addr, u32 v) {
    asm volatile("st.shared.b32 [%0], %1;" ::"r"(addr), "r"(v));
}
__device__ __forceinline__ void st_shared(u32 addr, u64 v) {
    asm volatile("st.shared.b64 [%0], %1;" ::"r"(addr), "l"(v));
}

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
// One 16-byte cp.async from global to shared memory, reading `bytes` of it (the rest zeros).
__device__ __forceinline__ void cp_async16(const void* smem, const void* src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_addr(smem)), "l"(src), "r"(bytes));
}

template <class T, int ROWS, int COLS, int THREADS>
__device__ __forceinline__ void load_async(Tile<T, ROWS, COLS> t, const T* g, i64 ld, int rows, int cols) {
    const int CH = COLS / 8;
#pragma unroll
    for (int i = threadIdx.x; i < ROWS * CH; i += THREADS) {
        const int r = i / CH, c = (i % CH) * 8;
        const int valid = (r < rows) ? max(0, min(8, cols - c)) : 0;
        cp_async16(t.at(r, c), valid > 0 ? g + r * ld + c : g, valid * 2);
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
struct Warp {};  // one warp, mma.sync (sm_80 and later); `Warpgroup` (wgmma, sm_90a) is below

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

// ---- warpgroup scope (sm_90a): wgmma ---------------------------------------------------------
// Four consecutive warps (a warpgroup) issue one asynchronous `wgmma` over operands in shared
// memory, in tiles of rows of 64 16-bit elements with the 128-byte swizzle (exactly how
// `Tile<T, ROWS, 64>` lays them out), 1024-byte aligned: A K-major, B K-major or MN-major.
struct Warpgroup {};

// A tensor map (CUtensorMap) encoded by the host and passed by value as a `__grid_constant__`
// kernel parameter: the copy engine reads it from the parameter space.
struct __align__(64) TensorMap {
    u64 opaque[16];
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define STRATA_HAS_WGMMA 1

// The shared-memory matrix descriptor of a K-major, 128-byte-swizzled tile starting at `p`
// (8-row groups 1024 bytes apart; the leading offset is unused by this layout).
__device__ __forceinline__ u64 wgmma_desc(const void* p) {
    const u64 addr = smem_addr(p);
    return ((addr & 0x3FFFF) >> 4) | ((u64)1 << 16) | ((u64)(1024 >> 4) << 32) | ((u64)1 << 62);
}
// The descriptor of an MN-major tile (B stored k x n): blocks of [64 k][64 n], 128-byte rows
// swizzled as above, `block_bytes` apart along N; 8-row (k) groups 1024 bytes apart.
__device__ __forceinline__ u64 wgmma_desc_mn(const void* p, u32 block_bytes) {
    const u64 addr = smem_addr(p);
    return ((addr & 0x3FFFF) >> 4) | ((u64)(block_bytes >> 4) << 16) | ((u64)(1024 >> 4) << 32) | ((u64)1 << 62);
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N> __device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}
// Shared memory written through the generic proxy (cp.async, stores) becomes visible to the
// tensor cores' async proxy.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

// One `wgmma` with fp32 accumulators: D[64 x N] (N/2 registers a thread) += A · B from the
// shared-memory descriptors of A and B. SHAPE is the instruction's suffix
// (`m64n128k16.f32.bf16.bf16`); TRANS is ", 0, T" for 16-bit types (B transposed, MN-major,
// when T is 1) and empty for types whose operands must both be K-major (tf32, fp8).
#define STRATA_WGMMA(NAME, TY, SHAPE, TRANS, REGS, OUTS, DA, DB, P)                                   \
    __device__ __forceinline__ void NAME(float* d, u64 desc_a, u64 desc_b, int scale_d, TY) {         \
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " P ", 0;\n"                                     \
                     "wgmma.mma_async.sync.aligned." SHAPE " {" REGS "}, " DA ", " DB ", p, 1, 1" TRANS ";\n}\n" \
                     : OUTS                                                                          \
                     : "l"(desc_a), "l"(desc_b), "r"(scale_d));                                        \
    }
// The accumulators as operands, 8 to 128 at a time, and their places in the instruction.
#define STRATA_WG_D8(i) \
    "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])
#define STRATA_WG_D16 STRATA_WG_D8(0), STRATA_WG_D8(8)
#define STRATA_WG_D32(i) STRATA_WG_D8(i), STRATA_WG_D8(i + 8), STRATA_WG_D8(i + 16), STRATA_WG_D8(i + 24)
#define STRATA_WG_D64 STRATA_WG_D32(0), STRATA_WG_D32(32)
#define STRATA_WG_D112 STRATA_WG_D64, STRATA_WG_D32(64), STRATA_WG_D8(96), STRATA_WG_D8(104)
#define STRATA_WG_D128 STRATA_WG_D64, STRATA_WG_D32(64), STRATA_WG_D32(96)
#define STRATA_WG_R16 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
#define STRATA_WG_R32 STRATA_WG_R16 ", " \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define STRATA_WG_R64 STRATA_WG_R32 ", " \
    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
    "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define STRATA_WG_R112 STRATA_WG_R64 ", " \
    "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, " \
    "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, " \
    "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111"
#define STRATA_WG_R128 STRATA_WG_R64 ", " \
    "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, " \
    "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, " \
    "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, " \
    "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
#define STRATA_WGMMA_N32(NAME, TY, SHAPE, TRANS) \
    STRATA_WGMMA(NAME, TY, SHAPE, TRANS, STRATA_WG_R16, STRATA_WG_D16, "%16", "%17", "%18")
#define STRATA_WGMMA_N64(NAME, TY, SHAPE, TRANS) \
    STRATA_WGMMA(NAME, TY, SHAPE, TRANS, STRATA_WG_R32, STRATA_WG_D32(0), "%32", "%33", "%34")
#define STRATA_WGMMA_N128(NAME, TY, SHAPE, TRANS) \
    STRATA_WGMMA(NAME, TY, SHAPE, TRANS, STRATA_WG_R64, STRATA_WG_D64, "%64", "%65", "%66")
#define STRATA_WGMMA_N224(NAME, TY, SHAPE, TRANS) \
    STRATA_WGMMA(NAME, TY, SHAPE, TRANS, STRATA_WG_R112, STRATA_WG_D112, "%112", "%113", "%114")
#define STRATA_WGMMA_N256(NAME, TY, SHAPE, TRANS) \
    STRATA_WGMMA(NAME, TY, SHAPE, TRANS, STRATA_WG_R128, STRATA_WG_D128, "%128", "%129", "%130")
// 16-bit types, k16; `_tb`: B transposed (MN-major). n32 only K-major (the MN-major B tiles
// come in blocks of 64 columns).
STRATA_WGMMA_N32(wgmma_m64n32k16, f16, "m64n32k16.f32.f16.f16", ", 0, 0")
STRATA_WGMMA_N32(wgmma_m64n32k16, bf16, "m64n32k16.f32.bf16.bf16", ", 0, 0")
STRATA_WGMMA_N64(wgmma_m64n64k16, f16, "m64n64k16.f32.f16.f16", ", 0, 0")
STRATA_WGMMA_N64(wgmma_m64n64k16, bf16, "m64n64k16.f32.bf16.bf16", ", 0, 0")
STRATA_WGMMA_N64(wgmma_m64n64k16_tb, f16, "m64n64k16.f32.f16.f16", ", 0, 1")
STRATA_WGMMA_N64(wgmma_m64n64k16_tb, bf16, "m64n64k16.f32.bf16.bf16", ", 0, 1")
STRATA_WGMMA_N128(wgmma_m64n128k16, f16, "m64n128k16.f32.f16.f16", ", 0, 0")
STRATA_WGMMA_N128(wgmma_m64n128k16, bf16, "m64n128k16.f32.bf16.bf16", ", 0, 0")
STRATA_WGMMA_N128(wgmma_m64n128k16_tb, f16, "m64n128k16.f32.f16.f16", ", 0, 1")
STRATA_WGMMA_N128(wgmma_m64n128k16_tb, bf16, "m64n128k16.f32.bf16.bf16", ", 0, 1")
STRATA_WGMMA_N256(wgmma_m64n256k16, f16, "m64n256k16.f32.f16.f16", ", 0, 0")
STRATA_WGMMA_N256(wgmma_m64n256k16, bf16, "m64n256k16.f32.bf16.bf16", ", 0, 0")
STRATA_WGMMA_N256(wgmma_m64n256k16_tb, f16, "m64n256k16.f32.f16.f16", ", 0, 1")
STRATA_WGMMA_N256(wgmma_m64n256k16_tb, bf16, "m64n256k16.f32.bf16.bf16", ", 0, 1")
// A from registers (four 32-bit words a thread: the warp's 16 x 16 block of A laid out as
// `mma.sync`'s left operand), B MN-major from shared memory: what P·V takes in FlashAttention.
#define STRATA_WGMMA_RA(NAME, TY, SHAPE, REGS, OUTS, A, DB, P)                                       \
    __device__ __forceinline__ void NAME(float* d, const u32* a, u64 desc_b, int scale_d, TY) {       \
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " P ", 0;\n"                                    \
                     "wgmma.mma_async.sync.aligned." SHAPE " {" REGS "}, {" A "}, " DB ", p, 1, 1, 1;\n}\n" \
                     : OUTS                                                                          \
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d));         \
    }
STRATA_WGMMA_RA(wgmma_m64n64k16_ra_tb, f16, "m64n64k16.f32.f16.f16", STRATA_WG_R32, STRATA_WG_D32(0),
                "%32, %33, %34, %35", "%36", "%37")
STRATA_WGMMA_RA(wgmma_m64n64k16_ra_tb, bf16, "m64n64k16.f32.bf16.bf16", STRATA_WG_R32, STRATA_WG_D32(0),
                "%32, %33, %34, %35", "%36", "%37")
STRATA_WGMMA_RA(wgmma_m64n128k16_ra_tb, f16, "m64n128k16.f32.f16.f16", STRATA_WG_R64, STRATA_WG_D64,
                "%64, %65, %66, %67", "%68", "%69")
STRATA_WGMMA_RA(wgmma_m64n128k16_ra_tb, bf16, "m64n128k16.f32.bf16.bf16", STRATA_WG_R64, STRATA_WG_D64,
                "%64, %65, %66, %67", "%68", "%69")
// f32 operands read as tf32 (the low 13 mantissa bits ignored): 8 deep, 32 bytes like k16.
STRATA_WGMMA_N256(wgmma_m64n256k8, float, "m64n256k8.f32.tf32.tf32", "")
// fp8 pairs, 32 deep (32 bytes like k16), each side E4M3 or E5M2, at each width.
template <class A, class B> struct Pair {};
typedef Pair<e4m3, e4m3> e4m3_e4m3;
typedef Pair<e4m3, e5m2> e4m3_e5m2;
typedef Pair<e5m2, e4m3> e5m2_e4m3;
typedef Pair<e5m2, e5m2> e5m2_e5m2;
#define STRATA_WGMMA_FP8(N)                                                                        \
    STRATA_WGMMA_N##N(wgmma_m64n##N##k32, e4m3_e4m3, "m64n" #N "k32.f32.e4m3.e4m3", "") \
    STRATA_WGMMA_N##N(wgmma_m64n##N##k32, e4m3_e5m2, "m64n" #N "k32.f32.e4m3.e5m2", "") \
    STRATA_WGMMA_N##N(wgmma_m64n##N##k32, e5m2_e4m3, "m64n" #N "k32.f32.e5m2.e4m3", "") \
    STRATA_WGMMA_N##N(wgmma_m64n##N##k32, e5m2_e5m2, "m64n" #N "k32.f32.e5m2.e5m2", "")
STRATA_WGMMA_FP8(32)
STRATA_WGMMA_FP8(64)
STRATA_WGMMA_FP8(128)
// (224 columns: 512 tiles of 128 × 224 fill 3.9 waves of 132 where 448 of 128 × 256 fill 3.4, at
// 1024 × 14336.)
STRATA_WGMMA_FP8(224)
STRATA_WGMMA_FP8(256)

// A warpgroup's 64 x K left operand in registers: warp w holds rows 16w..16w+15 as `Left`'s
// 16 x 16 blocks along K (16-bit elements, four 32-bit words a block).
template <class T, int K> struct WgLeft {
    u32 r[K / 16][4];
    // Keeps the registers live (unchanged) up to here: a `wgmma` in flight may still read them.
    __device__ void fence() {
#pragma unroll
        for (int k = 0; k < K / 16; ++k)
#pragma unroll
            for (int i = 0; i < 4; ++i) asm volatile("" : "+r"(r[k][i])::"memory");
    }
};

// A warpgroup's 64 x N destination in fp32 registers: warp w of the group holds rows
// 16w..16w+15, laid out as `Dest`'s 16 x 8 blocks along N.
template <int N> struct WgDest {
    float v[N / 2];
    __device__ void fill(float x) {
#pragma unroll
        for (int i = 0; i < N / 2; ++i) v[i] = x;
    }
    __device__ static int row(int i) { return 16 * ((threadIdx.x / 32) % 4) + lane_id() / 4 + ((i % 4) >= 2 ? 8 : 0); }
    __device__ static int col(int i) { return 8 * (i / 4) + 2 * (lane_id() % 4) + (i & 1); }
    // Keeps the compiler from moving accesses to the registers across an asynchronous wgmma.
    __device__ void fence() {
#pragma unroll
        for (int i = 0; i < N / 2; ++i) asm volatile("" : "+f"(v[i])::"memory");
    }
    // v = f(v, row, col) for every element the thread holds (rows and columns within the tile).
    template <class F> __device__ void map(F f) {
#pragma unroll
        for (int i = 0; i < N / 2; ++i) v[i] = f(v[i], row(i), col(i));
    }
    // Combines each row across the tile with `f`: out[h] is the result for the thread's row
    // `row(2 * h)`, the same in the four threads that share the row.
    template <class F> __device__ void reduce_rows(float (&out)[2], F f) const {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            float a = f(v[2 * h], v[2 * h + 1]);
#pragma unroll
            for (int j = 1; j < N / 8; ++j) a = f(f(a, v[4 * j + 2 * h]), v[4 * j + 2 * h + 1]);
            a = f(a, __shfl_xor_sync(0xffffffffu, a, 1));
            a = f(a, __shfl_xor_sync(0xffffffffu, a, 2));
            out[h] = a;
        }
    }
    // As `Dest`'s: a 64 x N destination is the left operand 64 x K (K = N) of the next product,
    // rounded to 16 bits, without leaving the registers.
    static const bool is_compatible_as_left_input = N % 16 == 0;
    template <class T> __device__ WgLeft<T, N> to_left_input() const {
        static_assert(N % 16 == 0, "see is_compatible_as_left_input");
        WgLeft<T, N> l;
#pragma unroll
        for (int k = 0; k < N / 16; ++k) {
            l.r[k][0] = Mma<T>::pack(v[8 * k], v[8 * k + 1]);
            l.r[k][1] = Mma<T>::pack(v[8 * k + 2], v[8 * k + 3]);
            l.r[k][2] = Mma<T>::pack(v[8 * k + 4], v[8 * k + 5]);
            l.r[k][3] = Mma<T>::pack(v[8 * k + 6], v[8 * k + 7]);
        }
        return l;
    }
};

// One wgmma over 32 bytes of K: k16 for 16-bit types, k8 for tf32, k32 for fp8 (A of type T,
// B of type TB).
template <int N, bool TRANS_B, class T, class TB = T>
__device__ __forceinline__ void wgmma_m64k16(float* d, u64 a, u64 b, T t) {
    if constexpr (sizeof(T) == 1) {
        static_assert(!TRANS_B, "fp8: both operands K-major");
        if constexpr (N == 256) wgmma_m64n256k32(d, a, b, 1, Pair<T, TB>());
        else if constexpr (N == 224) wgmma_m64n224k32(d, a, b, 1, Pair<T, TB>());
        else if constexpr (N == 128) wgmma_m64n128k32(d, a, b, 1, Pair<T, TB>());
        else if constexpr (N == 64) wgmma_m64n64k32(d, a, b, 1, Pair<T, TB>());
        else wgmma_m64n32k32(d, a, b, 1, Pair<T, TB>());
    } else if constexpr (sizeof(T) == 4) {
        static_assert(N == 256 && !TRANS_B, "tf32: n256, both operands K-major");
        wgmma_m64n256k8(d, a, b, 1, t);
    } else if constexpr (N == 256 && TRANS_B) wgmma_m64n256k16_tb(d, a, b, 1, t);
    else if constexpr (N == 256) wgmma_m64n256k16(d, a, b, 1, t);
    else if constexpr (N == 128 && TRANS_B) wgmma_m64n128k16_tb(d, a, b, 1, t);
    else if constexpr (N == 128) wgmma_m64n128k16(d, a, b, 1, t);
    else if constexpr (N == 64 && TRANS_B) wgmma_m64n64k16_tb(d, a, b, 1, t);
    else if constexpr (N == 64) wgmma_m64n64k16(d, a, b, 1, t);
    else {
        static_assert(N == 32 && !TRANS_B, "n32: B K-major");
        wgmma_m64n32k16(d, a, b, 1, t);
    }
}

// matmul2d at warpgroup scope: D[64 x N] += A[64 x K] · B[K x N], K 128 bytes of elements at
// most (64 16-bit ones, 32 f32 ones read as tf32, 128 fp8 ones) in 32-byte steps. A's tile is
// [64][K] (K-major). B's is [N][K] (K-major, RIGHT_K_MAJOR) or N/64 blocks of [64 k][64 n]
// (MN-major, 16-bit types only). B's type TB differs from A's only for fp8 pairs. Issues the
// products and commits them as one group; `wgmma_wait<n>()` later waits until at most n groups
// are in flight.
template <int N, bool RIGHT_K_MAJOR> struct Matmul2d<64, N, true, RIGHT_K_MAJOR, Warpgroup> {
    static_assert(N == 32 || N == 64 || N == 128 || N == 256 || (N == 224 && RIGHT_K_MAJOR),
                  "wgmma n32, n64, n128 or n256 (n224: fp8)");
    template <int K, class T, class TB = T> __device__ static void run(WgDest<N>& d, const T* a, const TB* b) {
        const u64 da = wgmma_desc(a);
        const u64 db = RIGHT_K_MAJOR ? wgmma_desc(b) : wgmma_desc_mn(b, 64 * 64 * sizeof(T));
        wgmma_fence();
#pragma unroll
        for (int k = 0; k < K * (int)sizeof(T) / 32; ++k) {
            // 32-byte steps along a K-major row, or 16 rows of 128 bytes down an MN-major
            // block.
            const u64 b_step = RIGHT_K_MAJOR ? 2 * k : 128 * k;
            wgmma_m64k16<N, !RIGHT_K_MAJOR, T, TB>(d.v, da + 2 * k, db + b_step, T());
        }
        wgmma_commit();
    }
    // A in registers (`WgDest::to_left_input`), B MN-major (16-bit types, N 64 or 128): K/64
    // slabs of N/64 blocks of [64 k][64 n], the slabs one after another.
    template <int K, class T> __device__ static void run(WgDest<N>& d, const WgLeft<T, K>& a, const T* b) {
        static_assert(!RIGHT_K_MAJOR && sizeof(T) == 2 && (N == 64 || N == 128) && K % 64 == 0,
                      "register A: 16-bit types, B MN-major, n64 or n128");
        const u64 db = wgmma_desc_mn(b, 64 * 64 * sizeof(T));
        wgmma_fence();
#pragma unroll
        for (int k = 0; k < K / 16; ++k) {
            // 16 rows of 128 bytes down a block; a slab of N/64 blocks every 64 rows.
            const u64 b_step = (k / 4) * (N / 64) * (64 * 64 * sizeof(T) / 16) + (k % 4) * 128;
            if constexpr (N == 128) wgmma_m64n128k16_ra_tb(d.v, a.r[k], db + b_step, 1, T());
            else wgmma_m64n64k16_ra_tb(d.v, a.r[k], db + b_step, 1, T());
        }
        wgmma_commit();
    }
};

// ---- the bulk tensor copy engine (TMA) and transaction barriers --------------------------------
// A producer thread asks the copy engine for a tile (`tma_load`: a box of a tensor described by
// a `TensorMap` the host encoded, written to shared memory with the same 128-byte swizzle as
// `Tile<T, ROWS, 64>`, zeros outside the tensor) and tells a barrier how many bytes will land
// (`mbar_expect_tx`); consumers wait on the barrier's phase (`mbar_wait`) and hand the stage
// back through another barrier (`mbar_arrive`).
__device__ __forceinline__ void mbar_init(u64* bar, u32 count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}
// Makes initialized barriers visible to the copy engine and the other threads (then a
// __syncthreads).
__device__ __forceinline__ void mbar_init_fence() {
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    fence_proxy_async();
}
__device__ __forceinline__ void mbar_expect_tx(u64* bar, u32 bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(u64* bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_addr(bar)) : "memory");
}
// Waits until the barrier's phase of parity `parity` has completed.
__device__ __forceinline__ void mbar_wait(u64* bar, u32 parity) {
    asm volatile(
        "{\n.reg .pred p;\n"
        "WAIT:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
        "@!p bra WAIT;\n"
        "}\n" ::"r"(smem_addr(bar)),
        "r"(parity)
        : "memory");
}
// A 3-d box at coordinates (c0 innermost, c1, c2) of `map` into shared memory at `dst`,
// completing on `bar`.
__device__ __forceinline__ void tma_load(void* dst, const TensorMap& map, u64* bar, int c0, int c1, int c2) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];" ::"r"(
            smem_addr(dst)),
        "l"((u64)&map), "r"(c0), "r"(c1), "r"(c2), "r"(smem_addr(bar))
        : "memory");
}
// The same for a 4-d box (c3 outermost).
__device__ __forceinline__ void tma_load_4d(void* dst, const TensorMap& map, u64* bar, int c0, int c1, int c2, int c3) {
    asm volatile(
        "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], [%6];" ::"r"(
            smem_addr(dst)),
        "l"((u64)&map), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(smem_addr(bar))
        : "memory");
}
// Stores a 3-d box of `map` at (c0, c1, c2) from shared memory at `src` (a shared address, as
// `smem_addr` gives; the same swizzle as the load; parts outside the tensor are not written).
// Completion is tracked per thread in bulk groups: `bulk_commit`, then `bulk_wait_read<n>` (the
// shared memory of all but n groups may be reused) or `bulk_wait<n>` (their writes are done).
__device__ __forceinline__ void tma_store(const TensorMap& map, u32 src, int c0, int c1, int c2) {
    asm volatile("cp.async.bulk.tensor.3d.global.shared::cta.tile.bulk_group [%0, {%1, %2, %3}], [%4];" ::"l"((u64)&map),
                 "r"(c0), "r"(c1), "r"(c2), "r"(src)
                 : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void bulk_wait_read() {
    asm volatile("cp.async.bulk.wait_group.read %0;" ::"n"(N) : "memory");
}
template <int N> __device__ __forceinline__ void bulk_wait() {
    asm volatile("cp.async.bulk.wait_group %0;" ::"n"(N) : "memory");
}
// A barrier among `threads` threads (a multiple of 32) of the block, numbered `id` (1-15; 0 is
// __syncthreads's).
__device__ __forceinline__ void named_barrier(int id, int threads) {
    asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
}
// Arrives on named barrier `id` without waiting (the threads that wait there count `threads`
// with these).
__device__ __forceinline__ void named_arrive(int id, int threads) {
    asm volatile("bar.arrive %0, %1;" ::"r"(id), "r"(threads) : "memory");
}
// ---- thread-block clusters (sm_90) ------------------------------------------------------------
// CTAs of one cluster share operand tiles: a producer multicasts its half of a tile into every
// CTA's shared memory (same offset, completing on each CTA's barrier at the same offset), and
// consumers hand a stage back to every producer that writes it (`mbar_arrive_cluster`).
__device__ __forceinline__ u32 cluster_rank() {
    u32 r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
}
// Every thread of every CTA in the cluster (barrier inits made visible before, shared memory
// kept alive after). Not `.aligned`: the threads of a warp may arrive apart.
__device__ __forceinline__ void cluster_sync() {
    asm volatile("barrier.cluster.arrive.release;\nbarrier.cluster.wait.acquire;" ::: "memory");
}
// Arrives on the barrier at `bar`'s offset in the shared memory of cluster CTA `rank`.
__device__ __forceinline__ void mbar_arrive_cluster(u64* bar, u32 rank) {
    asm volatile(
        "{\n.reg .b32 remote;\n"
        "mapa.shared::cluster.u32 remote, %0, %1;\n"
        "mbarrier.arrive.shared::cluster.b64 _, [remote];\n}" ::"r"(smem_addr(bar)),
        "r"(rank)
        : "memory");
}
// `tma_load` into the same offset of every CTA in `mask`, completing on each one's `bar`.
__device__ __forceinline__ void tma_load_multicast(void* dst, const TensorMap& map, u64* bar, int c0, int c1, int c2,
                                                   u16 mask) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1, {%2, %3, %4}], [%5], %6;" ::"r"(
            smem_addr(dst)),
        "l"((u64)&map), "r"(c0), "r"(c1), "r"(c2), "r"(smem_addr(bar)), "h"(mask)
        : "memory");
}
__device__ __forceinline__ void tma_prefetch_map(const TensorMap& map) {
    asm volatile("prefetch.tensormap [%0];" ::"l"((u64)&map) : "memory");
}
// Warp specialization: a producer warpgroup gives registers back, consumers take them
// (`setmaxnreg`; the kernel needs a register cap at entry, `__launch_bounds__(threads, 1)`).
template <int N> __device__ __forceinline__ void regs_release() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(N));
}
template <int N> __device__ __forceinline__ void regs_acquire() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(N));
}
#endif

}  // namespace tensor_ops
}  // namespace strata

#endif  // STRATA_TENSOR_OPS_CUH

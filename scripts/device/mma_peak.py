"""The ceiling of warp-scope tensor-core products on this GPU: `mma.sync.m16n8k16` (f16 in, f32
accumulators), the instruction NVIDIA's Vulkan driver lowers a cooperative-matrix product to
(`HMMA.16816.F32` in the driver's machine code, see BENCHMARKS.md), run from registers only (no
memory traffic at all), with cuBLAS's f16 GEMM at 8192³ timed in the same process for the ratio.
A cooperative-matrix GEMM cannot be faster than this, whatever its tiling.

    there:  python3 scripts/device/mma_peak.py
"""

import cupy as cp

SRC = r"""
extern "C" __global__ void mma_loop(float* out, int iters) {
    // Eight independent accumulators a warp, so that no product waits for the one before.
    float acc[8][4] = {};
    unsigned a[4], b[2];
    for (int i = 0; i < 4; ++i) a[i] = 0x3c003c00u ^ (threadIdx.x * 2654435761u + i);
    for (int i = 0; i < 2; ++i) b[i] = 0x3c003c00u ^ (threadIdx.x * 40503u + i);
    for (int it = 0; it < iters; ++it) {
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            asm volatile(
                "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                "{%0,%1,%2,%3};\n"
                : "+f"(acc[j][0]), "+f"(acc[j][1]), "+f"(acc[j][2]), "+f"(acc[j][3])
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
        }
    }
    float s = 0.f;
    for (int j = 0; j < 8; ++j) s += acc[j][0] + acc[j][1] + acc[j][2] + acc[j][3];
    out[blockIdx.x * blockDim.x + threadIdx.x] = s;
}
"""


def timed(f, reps=5):
    start, end = cp.cuda.Event(), cp.cuda.Event()
    f()
    best = float("inf")
    for _ in range(reps):
        start.record()
        f()
        end.record()
        end.synchronize()
        best = min(best, cp.cuda.get_elapsed_time(start, end) / 1e3)
    return best


def main():
    dev = cp.cuda.Device()
    props = cp.cuda.runtime.getDeviceProperties(dev.id)
    sms = props["multiProcessorCount"]
    print(f"{props['name'].decode()}: {sms} multiprocessors")
    mod = cp.RawModule(code=SRC, options=("-std=c++17",))
    k = mod.get_function("mma_loop")
    iters = 4096
    peak = 0.0
    for warps in (4, 8, 16):
        blocks, threads = sms * 4, 32 * warps
        out = cp.empty(blocks * threads, dtype=cp.float32)
        t = timed(lambda: k((blocks,), (threads,), (out, cp.int32(iters))))
        flops = 2 * 16 * 8 * 16 * 8 * iters * (blocks * warps)
        print(f"mma.sync m16n8k16 f16->f32, {warps} warps a block, {blocks} blocks: {flops / t / 1e12:.1f} TFLOP/s")
        peak = max(peak, flops / t)
    n = 8192
    a = cp.random.standard_normal((n, n), dtype=cp.float32).astype(cp.float16)
    b = cp.random.standard_normal((n, n), dtype=cp.float32).astype(cp.float16)
    c = cp.empty((n, n), dtype=cp.float16)
    t = timed(lambda: cp.matmul(a, b, out=c))
    blas = 2 * n**3 / t
    print(f"cuBLAS f16 GEMM {n}^3 (cupy.matmul): {blas / 1e12:.1f} TFLOP/s")
    print(f"mma.sync ceiling / cuBLAS: {peak / blas:.2f}")


if __name__ == "__main__":
    main()

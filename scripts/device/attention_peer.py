"""PyTorch's scaled_dot_product_attention on the shapes of the `attention` example, timed the
same way (CUDA events, median of 20 after 2 warm-ups, L2 flushed before every launch), once per
SDPA backend: FLASH (FlashAttention-2) and CUDNN (cuDNN's Hopper kernels).

    python3 scripts/device/attention_peer.py [CASES...]   (cases as the example takes them)
"""

import sys

import torch
from peer_timing import l2_flush_buffer, time_ms
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.functional import scaled_dot_product_attention as sdpa


def cases(args):
    if not args:
        out = []
        for d in (64, 128):
            for n in (1024, 4096, 16384):
                for causal in (False, True):
                    out.append(("f16", 16384 // n, 2048 // d, n, d, causal))
        out.append(("bf16", 4, 16, 4096, 128, False))
        out.append(("bf16", 4, 16, 4096, 128, True))
        return out
    out = []
    for a in args:
        parts = a.split(":")
        b, h, n, d = (int(x) for x in parts[1].split("x"))
        out.append((parts[0], b, h, n, d, len(parts) > 2 and parts[2] == "causal"))
    return out


def main():
    flush = l2_flush_buffer()
    print(f"device: {torch.cuda.get_device_name()} (torch {torch.__version__})")
    print(f"{'dtype':<5} {'batch':>5} {'heads':>5} {'len':>6} {'d':>4} {'mask':<6} {'FLASH TF/s':>10} {'cuDNN TF/s':>10}")
    for t, b, h, n, d, causal in cases(sys.argv[1:]):
        dt = torch.float16 if t == "f16" else torch.bfloat16
        q, k, v = (torch.rand(b, h, n, d, device="cuda", dtype=dt) * 2 - 1 for _ in range(3))
        flops = 4.0 * b * h * n * n * d / (2 if causal else 1)
        row = []
        for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION):
            try:
                with sdpa_kernel(backend):
                    ms = time_ms(lambda: sdpa(q, k, v, is_causal=causal), flush)
                row.append(f"{flops / ms / 1e9:>10.1f}")
            except RuntimeError as err:  # a backend that does not take the shape
                row.append(f"{'n/a':>10}")
                print(f"  {backend}: {str(err).splitlines()[0]}", file=sys.stderr)
        print(f"{t:<5} {b:>5} {h:>5} {n:>6} {d:>4} {'causal' if causal else 'none':<6} {' '.join(row)}")


if __name__ == "__main__":
    main()

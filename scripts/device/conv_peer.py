"""PyTorch's conv2d (cuDNN, channels last, `cudnn.benchmark` on so cuDNN picks its fastest
algorithm first) on the shapes of the `conv` example, timed the same way (CUDA events, median of
20 after 2 warm-ups, L2 flushed before every launch).

    python3 scripts/device/conv_peer.py [CASES...]   (cases as the example takes them)
"""

import sys

import torch
from peer_timing import l2_flush_buffer, time_ms
import torch.nn.functional as F


def cases(args):
    if not args:
        return [
            ("f16", 32, 56, 64, 3, 64, 1),
            ("f16", 32, 28, 128, 3, 128, 1),
            ("f16", 32, 14, 256, 3, 256, 1),
            ("f16", 32, 7, 512, 3, 512, 1),
            ("f16", 32, 56, 256, 1, 64, 1),
            ("f16", 32, 14, 1024, 1, 256, 1),
            ("f16", 32, 56, 128, 3, 128, 2),
            ("f16", 2, 64, 320, 3, 320, 1),
            ("f16", 2, 32, 640, 3, 640, 1),
            ("bf16", 2, 64, 320, 3, 320, 1),
        ]
    out = []
    for a in args:
        parts = a.split(":")
        n, h, w, cin = (int(x) for x in parts[1].split("x"))
        assert h == w, "square inputs"
        stride = int(parts[4].lstrip("s")) if len(parts) > 4 else 1
        out.append((parts[0], n, h, cin, int(parts[2]), int(parts[3]), stride))
    return out


def main():
    torch.backends.cudnn.benchmark = True
    flush = l2_flush_buffer()
    print(f"device: {torch.cuda.get_device_name()} (torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()})")
    print(f"{'dtype':<5} {'input':>16} {'k':>3} {'c_out':>5} {'s':>2} {'cuDNN TF/s':>10}")
    for t, n, h, cin, k, cout, stride in cases(sys.argv[1:]):
        dt = torch.float16 if t == "f16" else torch.bfloat16
        x = (torch.rand(n, cin, h, h, device="cuda", dtype=dt) * 2 - 1).to(memory_format=torch.channels_last)
        w = (torch.rand(cout, cin, k, k, device="cuda", dtype=dt) * 2 - 1).to(memory_format=torch.channels_last)
        y = F.conv2d(x, w, stride=stride, padding=k // 2)
        flops = 2.0 * y.numel() * k * k * cin
        ms = time_ms(lambda: F.conv2d(x, w, stride=stride, padding=k // 2), flush)
        print(f"{t:<5} {f'{n}x{h}x{h}x{cin}':>16} {k:>3} {cout:>5} {stride:>2} {flops / ms / 1e9:>10.1f}")


if __name__ == "__main__":
    main()

"""How the PyTorch peers are timed, as our examples time ours: CUDA events around each launch,
L2 flushed (a 256 MiB buffer zeroed) before it, the median of `reps` after two warm-ups."""

import torch


def l2_flush_buffer():
    return torch.empty(256 << 20, dtype=torch.uint8, device="cuda")


def time_ms(fn, flush, reps=20):
    times = []
    for rep in range(reps + 2):
        flush.zero_()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        if rep >= 2:
            times.append(s.elapsed_time(e))
    times.sort()
    return times[len(times) // 2]

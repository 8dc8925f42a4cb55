#!/usr/bin/env python3
"""Peer timings for Strata's CPU benchmarks: NumPy and MLX running the same cases as our kernels.

The Rust benchmark binary spawns this script once, as a long-lived child, and for each case
alternates timing our kernel with asking this script to time a peer. Interleaving puts both
under the same drift of a noisy machine (frequency changes, neighbours), which separate runs
would not.

Protocol (`peers.py serve`): one JSON object per line on stdin and stdout.
  On start:  {"ready": true, "numpy": "2.4.6", "mlx": "0.32.4", "blas": "SkylakeX", "threads": 2}
             blas is the core OpenBLAS picked at run time (NumPy's BLAS; null if unknown) and
             threads the number of threads OpenBLAS uses.
  Request:   {"id": 7, "case": {...}, "peer": "numpy", "reps": 20}
  Reply:     {"id": 7, "seconds": [t1, ..., t20]}   or   {"id": 7, "error": "message"}
The inputs of a (case, peer) are made once and kept (a few at a time), and the operation runs
once untimed before its first timing. Each repetition is timed alone with time.perf_counter;
for MLX it includes building the graph and mx.eval, since MLX is lazy. An error answers that
request only; EOF on stdin ends the process. stdout carries protocol lines only; logs go to
stderr. NumPy's thread count follows OPENBLAS_NUM_THREADS (default: every core), so the
spawning side should set it to the thread count of the kernel it compares with.

For humans: `peers.py run '{"op": "matmul", "m": 1024, "n": 1024, "k": 1024}' --peer numpy
--reps 5` prints the median time and GFLOP/s (or GB/s).

Cases and their peers (all on the CPU; random inputs from seed 0, float32 unless said):
  {"op": "matmul", "m", "n", "k", "dtype": "float32" | "float16" | "bfloat16"}
      numpy         float32 a @ b; for float16/bfloat16 the inputs are rounded to that type
                    and widened back before timing (the "NumPy f32 on upcast inputs" floor)
      numpy_native  float16 only: NumPy's own float16 matmul (refused above 2^31 MNK)
      mlx           mx.matmul in the case's dtype
  {"op": "conv2d", "n", "h", "w", "c_in", "c_out", "kh", "kw", "stride", "pad"}   NHWC
      mlx           mx.conv2d, weight (C_out, KH, KW, C_in)
      numpy_im2col  pad + im2col + one GEMM, all timed; checked against MLX at setup
  {"op": "attention", "b", "heads", "seq", "dim", "causal"}   q, k, v (B, H, L, D)
      mlx           mx.fast.scaled_dot_product_attention
      numpy         softmax(q k^T / sqrt(D) [+ causal mask]) v; checked against MLX at setup
  {"op": "qmatmul", "m", "n", "k", "mode": "mxfp4" | "mxfp8" | "nvfp4" | "affine4"}
      x (M, K) times W (N, K) quantized along K: y = x @ W.T (affine4: group 64, 4 bits)
      mlx           mx.quantized_matmul; checked against x @ dequantize(W).T at setup
      numpy_dequant x @ W_dequantized.T with the float32 weight made at setup (the floor)
  {"op": "gemv_bandwidth", "bytes"}
      numpy         np.copyto of `bytes` bytes of float32: a bandwidth reference
  {"op": "graph_adds", "n"}
      mlx           a chain of n lazy scalar adds, then mx.eval (graph overhead per op)
  {"op": "gelu_chain", "n"}     tanh-GELU written as 9 element-wise ops on n float32
  {"op": "mlp_step", "batch", "dims", "hidden", "classes"}  one MLP training step (Adam)
  {"op": "transformer_step", "layers", "dims", "heads", "mlp", "batch", "seq"}  one
      transformer-encoder training step (causal mask, MSE to a fixed target, Adam)
  {"op": "linalg", "fn": "solve"|"eigh"|"svd"|"eig", "n"}  float64 n×n factorizations
  {"op": "linalg", "fn": "inv"|"eigh", "n", "batch"}  the same over a batch of small matrices
      mlx           uncompiled, mx.eval
      mlx_compiled  the same function through mx.compile
      numpy         the same expression in NumPy

Note: the Linux mlx[cpu] wheel links the reference (netlib) BLAS it bundles, not OpenBLAS, so
MLX's CPU matmul and conv are single-threaded and unblocked: a weak peer, not MLX at its best.
"""
import argparse
import collections
import ctypes
import gc
import glob
import json
import math
import os
import statistics
import sys
import time
import traceback

import ml_dtypes
import mlx.core as mx
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SEED = 0
# Kept (case, peer) setups. The Rust side finishes one case before the next, so a few are
# enough, and a bound keeps a long run of large cases from holding every input it ever made.
CACHE_SIZE = 8

NP_DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}
MX_DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}

mx.set_default_device(mx.cpu)


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def need(case, *keys):
    missing = [k for k in keys if k not in case]
    if missing:
        raise ValueError(f"case {case.get('op')!r} lacks {', '.join(missing)}")
    return [case[k] for k in keys]


def randn(gen, shape, scale=1.0):
    return (gen.standard_normal(shape, dtype=np.float32) * np.float32(scale)).astype(np.float32)


def to_mx(a, dtype="float32"):
    # Through float32: mx.array does not take ml_dtypes arrays, and the widening and the
    # narrowing back are exact for values already representable in `dtype`.
    arr = mx.array(np.asarray(a, dtype=np.float32)).astype(MX_DTYPES[dtype])
    mx.eval(arr)
    return arr


def check(name, got, want, rtol, atol):
    got, want = np.asarray(got, dtype=np.float32), np.asarray(want, dtype=np.float32)
    if got.shape != want.shape:
        raise ValueError(f"{name}: shape {got.shape} != reference {want.shape}")
    if not np.allclose(got, want, rtol=rtol, atol=atol):
        err = float(np.max(np.abs(got - want)))
        raise ValueError(f"{name}: differs from the reference (max abs error {err:.3g}, "
                         f"rtol {rtol}, atol {atol})")


def flops(case):
    """Floating-point operations of one execution of `case`, or None where it is not a measure."""
    op = case.get("op")
    if op in ("matmul", "qmatmul"):
        m, n, k = need(case, "m", "n", "k")
        return 2 * m * n * k
    if op == "conv2d":
        n, _, _, c_in, c_out, kh, kw, _, _ = conv_shape(case)
        oh, ow = conv_out_hw(case)
        return 2 * n * oh * ow * c_out * kh * kw * c_in
    if op == "attention":
        b, h, l, d = need(case, "b", "heads", "seq", "dim")
        f = 4 * b * h * l * l * d
        return f // 2 if case.get("causal") else f
    return None


# Each setup takes a case and returns a function of no arguments that runs the operation once
# (to completion, for MLX). Everything it needs is made in the setup, outside the timing.
PEERS = {}


def peer(op, name):
    def register(setup):
        PEERS[(op, name)] = setup
        return setup
    return register


# ---- matmul ---------------------------------------------------------------------------------

def matmul_inputs(case):
    """a (M, K) and b (K, N), rounded to the case's dtype (and of that dtype)."""
    m, n, k = need(case, "m", "n", "k")
    dtype = case.get("dtype", "float32")
    if dtype not in NP_DTYPES:
        raise ValueError(f"unknown dtype {dtype!r} (one of {', '.join(NP_DTYPES)})")
    gen = np.random.default_rng(SEED)
    a = randn(gen, (m, k)).astype(NP_DTYPES[dtype])
    b = randn(gen, (k, n)).astype(NP_DTYPES[dtype])
    return a, b, dtype


@peer("matmul", "numpy")
def matmul_numpy(case):
    a, b, _ = matmul_inputs(case)
    a, b = np.ascontiguousarray(a, dtype=np.float32), np.ascontiguousarray(b, dtype=np.float32)
    # A preallocated output keeps page faults of a fresh result out of the timing; the
    # product is the same `a @ b` (one sgemm).
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.float32)
    return lambda: np.matmul(a, b, out=out)


@peer("matmul", "numpy_native")
def matmul_numpy_native(case):
    m, n, k = need(case, "m", "n", "k")
    if case.get("dtype", "float32") != "float16":
        raise ValueError("numpy_native is for dtype float16 only")
    # NumPy's float16 matmul is a plain loop without BLAS; past this size one run takes
    # minutes on a small machine.
    if m * n * k > 2**31:
        raise ValueError("too slow")
    a, b, _ = matmul_inputs(case)
    out = np.empty((m, n), dtype=np.float16)
    return lambda: np.matmul(a, b, out=out)


@peer("matmul", "mlx")
def matmul_mlx(case):
    a, b, dtype = matmul_inputs(case)
    a, b = to_mx(a, dtype), to_mx(b, dtype)
    return lambda: mx.eval(mx.matmul(a, b))


# ---- conv2d ---------------------------------------------------------------------------------

def conv_shape(case):
    return need(case, "n", "h", "w", "c_in", "c_out", "kh", "kw", "stride", "pad")


def conv_out_hw(case):
    _, h, w, _, _, kh, kw, s, p = conv_shape(case)
    return (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1


def conv_inputs(case):
    n, h, w, c_in, c_out, kh, kw, _, _ = conv_shape(case)
    gen = np.random.default_rng(SEED)
    x = randn(gen, (n, h, w, c_in))
    # Scaled by 1/sqrt(fan-in) so that outputs are O(1) and fixed tolerances mean the same
    # for every shape.
    wt = randn(gen, (c_out, kh, kw, c_in), scale=1 / math.sqrt(kh * kw * c_in))
    return x, wt


def conv_mlx_fn(case):
    *_, stride, pad = conv_shape(case)
    x, wt = conv_inputs(case)
    x, wt = to_mx(x), to_mx(wt)
    return lambda: mx.conv2d(x, wt, stride=stride, padding=pad)


@peer("conv2d", "mlx")
def conv2d_mlx(case):
    conv = conv_mlx_fn(case)
    return lambda: mx.eval(conv())


@peer("conv2d", "numpy_im2col")
def conv2d_numpy_im2col(case):
    n, h, w, c_in, c_out, kh, kw, s, p = conv_shape(case)
    oh, ow = conv_out_hw(case)
    x, wt = conv_inputs(case)
    # Buffers made once, like a kernel's workspace: the padded input (its zero border is never
    # written again), the patch matrix and the output.
    xp = np.zeros((n, h + 2 * p, w + 2 * p, c_in), dtype=np.float32)
    interior = xp[:, p:p + h, p:p + w, :]
    # (N, H', W', C, KH, KW) windows of xp, strided, reordered to the (KH, KW, C) order of a
    # weight row, so that copying them fills the patch matrix with C-contiguous runs.
    windows = sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::s, ::s][:, :oh, :ow]
    windows = windows.transpose(0, 1, 2, 4, 5, 3)
    patches = np.empty((n * oh * ow, kh * kw * c_in), dtype=np.float32)
    patches_6d = patches.reshape(n, oh, ow, kh, kw, c_in)
    w_mat = np.ascontiguousarray(wt.reshape(c_out, kh * kw * c_in).T)
    out = np.empty((n * oh * ow, c_out), dtype=np.float32)

    def run():
        np.copyto(interior, x)
        np.copyto(patches_6d, windows)
        np.matmul(patches, w_mat, out=out)
        return out.reshape(n, oh, ow, c_out)

    want = conv_mlx_fn(case)()
    check("numpy_im2col vs mlx.conv2d", run(), want, rtol=1e-4, atol=1e-4)
    return run


# ---- attention ------------------------------------------------------------------------------

def attention_inputs(case):
    b, h, l, d = need(case, "b", "heads", "seq", "dim")
    gen = np.random.default_rng(SEED)
    q, k, v = (randn(gen, (b, h, l, d)) for _ in range(3))
    return q, k, v, 1.0 / math.sqrt(d), bool(case.get("causal", False))


def attention_mlx_fn(case):
    q, k, v, scale, causal = attention_inputs(case)
    q, k, v = to_mx(q), to_mx(k), to_mx(v)
    mask = "causal" if causal else None
    return lambda: mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)


@peer("attention", "mlx")
def attention_mlx(case):
    attn = attention_mlx_fn(case)
    return lambda: mx.eval(attn())


@peer("attention", "numpy")
def attention_numpy(case):
    q, k, v, scale, causal = attention_inputs(case)
    b, h, l, d = q.shape
    scale = np.float32(scale)
    k_t = k.swapaxes(-1, -2)  # a strided view: BLAS reads it as a transposed operand
    scores = np.empty((b, h, l, l), dtype=np.float32)
    out = np.empty((b, h, l, d), dtype=np.float32)
    # -inf above the diagonal: exp turns those scores into exact zeros.
    mask = np.triu(np.full((l, l), -np.inf, dtype=np.float32), k=1) if causal else None

    def run():
        s = np.matmul(q, k_t, out=scores)
        s *= scale
        if mask is not None:
            s += mask
        s -= s.max(axis=-1, keepdims=True)  # keeps exp from overflowing
        np.exp(s, out=s)
        s /= s.sum(axis=-1, keepdims=True)
        return np.matmul(s, v, out=out)

    want = attention_mlx_fn(case)()
    check("numpy attention vs mlx sdpa", run(), want, rtol=1e-4, atol=1e-5)
    return run


# ---- qmatmul --------------------------------------------------------------------------------

# Arguments of mx.quantize / dequantize / quantized_matmul per mode. The MX and NV modes take
# MLX's defaults (group 32 or 16, fixed element width).
QMODES = {
    "mxfp4": {"mode": "mxfp4"},
    "mxfp8": {"mode": "mxfp8"},
    "nvfp4": {"mode": "nvfp4"},
    "affine4": {"mode": "affine", "group_size": 64, "bits": 4},
}


def qmatmul_inputs(case):
    """x (M, K) as an mx array, and W (N, K) quantized: (wq, scales, biases or None, kwargs)."""
    m, n, k, mode = need(case, "m", "n", "k", "mode")
    if mode not in QMODES:
        raise ValueError(f"unknown mode {mode!r} (one of {', '.join(QMODES)})")
    kw = QMODES[mode]
    gen = np.random.default_rng(SEED)
    x = to_mx(randn(gen, (m, k)))
    w = to_mx(randn(gen, (n, k), scale=1 / math.sqrt(k)))
    parts = mx.quantize(w, **kw)  # (wq, scales) for the float modes, + biases for affine
    wq, scales = parts[0], parts[1]
    biases = parts[2] if len(parts) > 2 else None
    mx.eval(*[a for a in (wq, scales, biases) if a is not None])
    return x, wq, scales, biases, kw


def dequantized(wq, scales, biases, kw):
    # dtype is needed: for the float modes the scales are uint8 codes, and MLX then returns
    # bfloat16 unless told otherwise.
    w = mx.dequantize(wq, scales, biases, dtype=mx.float32, **kw)
    mx.eval(w)
    return w


@peer("qmatmul", "mlx")
def qmatmul_mlx(case):
    x, wq, scales, biases, kw = qmatmul_inputs(case)

    def qmm():
        return mx.quantized_matmul(x, wq, scales, biases, transpose=True, **kw)

    want = np.array(x) @ np.array(dequantized(wq, scales, biases, kw)).T
    # Relative to the largest output: both sides sum K products in different orders.
    check("mlx quantized_matmul vs x @ dequantize(W).T", np.array(qmm()), want,
          rtol=1e-4, atol=1e-5 * float(np.abs(want).max()))
    return lambda: mx.eval(qmm())


@peer("qmatmul", "numpy_dequant")
def qmatmul_numpy_dequant(case):
    x, wq, scales, biases, kw = qmatmul_inputs(case)
    x = np.array(x)
    w = np.array(dequantized(wq, scales, biases, kw))
    out = np.empty((x.shape[0], w.shape[0]), dtype=np.float32)
    return lambda: np.matmul(x, w.T, out=out)


# ---- gemv_bandwidth -------------------------------------------------------------------------

@peer("gemv_bandwidth", "numpy")
def bandwidth_numpy(case):
    (nbytes,) = need(case, "bytes")
    count = int(nbytes) // 4
    if count < 1:
        raise ValueError("bytes must be at least 4")
    src = randn(np.random.default_rng(SEED), (count,))
    dst = np.zeros_like(src)  # written once here so its pages exist before timing
    return lambda: np.copyto(dst, src)


# ---- array-layer graphs ---------------------------------------------------------------------

@peer("graph_adds", "mlx")
def graph_adds_mlx(case):
    """A chain of n scalar adds recorded lazily, then one eval: per-op graph overhead."""
    (n,) = need(case, "n")
    one = mx.array(1.0)

    def run():
        x = mx.array(0.0)
        for _ in range(n):
            x = x + one
        mx.eval(x)
    return run


def gelu_chain(mod, x):
    # tanh-GELU written out element-wise, as a user would (9 element-wise ops).
    return 0.5 * x * (1.0 + mod.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


@peer("gelu_chain", "mlx")
def gelu_chain_mlx(case):
    (n,) = need(case, "n")
    x = mx.array(np.random.default_rng(SEED).standard_normal(n).astype(np.float32))
    return lambda: mx.eval(gelu_chain(mx, x))


@peer("gelu_chain", "mlx_compiled")
def gelu_chain_mlx_compiled(case):
    (n,) = need(case, "n")
    x = mx.array(np.random.default_rng(SEED).standard_normal(n).astype(np.float32))
    f = mx.compile(lambda x: gelu_chain(mx, x))
    return lambda: mx.eval(f(x))


@peer("gelu_chain", "numpy")
def gelu_chain_numpy(case):
    (n,) = need(case, "n")
    x = np.random.default_rng(SEED).standard_normal(n).astype(np.float32)
    return lambda: gelu_chain(np, x)


def train_step(model, loss, opt, *args):
    # One step as an MLX user writes it: nn.value_and_grad, optimizer.update, one eval.
    import mlx.nn as nn
    step = nn.value_and_grad(model, loss)

    def run():
        l, g = step(model, *args)
        opt.update(model, g)
        mx.eval(model.parameters(), opt.state, l)
    return run


@peer("mlp_step", "mlx")
def mlp_step_mlx(case):
    # One training step of a 2-layer MLP (Linear, ReLU, Linear; cross-entropy; Adam), the
    # step written as an MLX user would (nn.value_and_grad, optimizer.update, eval).
    import mlx.nn as nn
    import mlx.optimizers as optim
    batch, dims, hidden, classes = need(case, "batch", "dims", "hidden", "classes")
    gen = np.random.default_rng(SEED)
    x = mx.array(gen.standard_normal((batch, dims)).astype(np.float32))
    y = mx.array(gen.integers(0, classes, batch).astype(np.uint32))
    model = nn.Sequential(nn.Linear(dims, hidden), nn.ReLU(), nn.Linear(hidden, classes))
    opt = optim.Adam(1e-3, bias_correction=True)

    def loss(m, x, y):
        return nn.losses.cross_entropy(m(x), y, reduction="mean")

    return train_step(model, loss, opt, x, y)


@peer("transformer_step", "mlx")
def transformer_step_mlx(case):
    # One training step of nn.TransformerEncoder (pre-norm, causal mask, MSE, Adam), written
    # as the MLP step is.
    import mlx.nn as nn
    import mlx.optimizers as optim
    layers, dims, heads, mlp, batch, seq = need(case, "layers", "dims", "heads", "mlp", "batch", "seq")
    gen = np.random.default_rng(SEED)
    x = mx.array(gen.standard_normal((batch, seq, dims)).astype(np.float32))
    y = mx.array(gen.standard_normal((batch, seq, dims)).astype(np.float32))
    model = nn.TransformerEncoder(layers, dims, heads, mlp_dims=mlp)
    mask = nn.MultiHeadAttention.create_additive_causal_mask(seq)
    opt = optim.Adam(1e-3, bias_correction=True)

    def loss(m, x, y):
        return nn.losses.mse_loss(m(x, mask), y)

    return train_step(model, loss, opt, x, y)


@peer("linalg", "numpy")
def linalg_numpy(case):
    # float64 n×n: solve against n right-hand sides, eigh of a symmetric matrix, svd.
    fn, n = need(case, "fn", "n")
    gen = np.random.default_rng(SEED)
    a = gen.standard_normal((case.get("batch", 1), n, n)) + n ** 0.5 * np.eye(n)
    if "batch" in case:
        if fn == "inv":
            return lambda: np.linalg.inv(a)
        s = a + a.transpose(0, 2, 1)
        return lambda: np.linalg.eigh(s)
    a = a[0]
    if fn == "solve":
        b = gen.standard_normal((n, n))
        return lambda: np.linalg.solve(a, b)
    if fn == "eigh":
        s = a + a.T
        return lambda: np.linalg.eigh(s)
    if fn == "svd":
        return lambda: np.linalg.svd(a, full_matrices=False)
    if fn == "eig":
        return lambda: np.linalg.eig(a)
    raise ValueError(f"no linalg function {fn}")


# ---- timing ---------------------------------------------------------------------------------

class Bench:
    def __init__(self):
        self.cache = collections.OrderedDict()  # key -> run function, least recent first

    def prepare(self, case, peer_name):
        if not isinstance(case, dict) or "op" not in case:
            raise ValueError("case must be an object with an 'op'")
        key = json.dumps(case, sort_keys=True) + "|" + str(peer_name)
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        setup = PEERS.get((case["op"], peer_name))
        if setup is None:
            known = sorted(p for (o, p) in PEERS if o == case["op"])
            if not known:
                raise ValueError(f"unknown op {case['op']!r}")
            raise ValueError(f"no peer {peer_name!r} for {case['op']} (one of {', '.join(known)})")
        run = setup(case)
        run()  # warm-up: first-touch pages, allocator caches, BLAS threads started
        self.cache[key] = run
        while len(self.cache) > CACHE_SIZE:
            self.cache.popitem(last=False)
            gc.collect()
            mx.clear_cache()
        return run

    def time(self, case, peer_name, reps):
        if not isinstance(reps, int) or isinstance(reps, bool) or reps < 1:
            raise ValueError("reps must be a positive integer")
        run = self.prepare(case, peer_name)
        seconds = []
        # A collection inside a timed run would be charged to the peer.
        gc.disable()
        try:
            for _ in range(reps):
                t0 = time.perf_counter()
                run()
                seconds.append(time.perf_counter() - t0)
        finally:
            gc.enable()
        return seconds


def blas_info():
    """(core name, threads) of NumPy's OpenBLAS, read through its C API; (None, cpus) if absent."""
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "*openblas*"))
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        # The symbol names depend on how the wheel's OpenBLAS was built (ILP64 or not).
        for suffix in ("64_", "", "_64_"):
            try:
                corename = getattr(lib, "scipy_openblas_get_corename" + suffix)
                threads = getattr(lib, "scipy_openblas_get_num_threads" + suffix)
            except AttributeError:
                continue
            corename.restype, threads.restype = ctypes.c_char_p, ctypes.c_int
            return corename().decode(), int(threads())
    return None, os.cpu_count()


def serve():
    # Protocol lines go to a private copy of stdout; fd 1 itself now points at stderr, so
    # anything a library prints, from Python or C, cannot corrupt the protocol.
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(obj):
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    blas, threads = blas_info()
    send({"ready": True, "numpy": np.__version__, "mlx": mx.__version__, "blas": blas,
          "threads": threads})
    bench = Bench()
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        if not line.strip():
            continue
        rid = None
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("a request must be a JSON object")
            rid = req.get("id")
            for field in ("case", "peer", "reps"):
                if field not in req:
                    raise ValueError(f"request lacks {field!r}")
            reply = {"id": rid, "seconds": bench.time(req["case"], req["peer"], req["reps"])}
        except Exception as e:
            # A bad request needs one line; anything else, the whole story.
            detail = str(e) if isinstance(e, (ValueError, KeyError)) else traceback.format_exc()
            log(f"peers.py: request {rid}: {detail}")
            reply = {"id": rid, "error": f"{type(e).__name__}: {e}"}
        send(reply)


def describe(seconds):
    return f"{seconds * 1e3:.3f} ms" if seconds < 1 else f"{seconds:.3f} s"


def run_cli(case_json, peer_name, reps):
    try:
        case = json.loads(case_json)
        seconds = Bench().time(case, peer_name, reps)
    except (ValueError, KeyError) as e:
        sys.exit(f"peers.py: {e}")
    med = statistics.median(seconds)
    line = f"{case['op']} {peer_name}: median {describe(med)} (min {describe(min(seconds))}, " \
           f"{reps} reps)"
    f = flops(case)
    if f is not None:
        line += f", {f / med / 1e9:.1f} GFLOP/s"
    if case["op"] == "gemv_bandwidth":
        # A copy reads and writes every byte: 2 x bytes of traffic.
        line += f", {case['bytes'] / med / 1e9:.1f} GB/s copied ({2 * case['bytes'] / med / 1e9:.1f} GB/s traffic)"
    print(line)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("serve", help="answer timing requests on stdin (JSON lines)")
    r = sub.add_parser("run", help="time one case and print the median")
    r.add_argument("case", help="the case as JSON, e.g. '{\"op\": \"matmul\", \"m\": 64, ...}'")
    r.add_argument("--peer", required=True)
    r.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    if args.cmd == "serve":
        serve()
    else:
        run_cli(args.case, args.peer, args.reps)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Golden vectors for strata::nn and strata::optim: activations, losses (each reduction),
convolution, pooling, normalization and RoPE layers, learning-rate schedules, gradient clipping
and optimizer trajectories, on fresh random inputs.

Every reference is computed in float64 with NumPy from the formula MLX defines, and MLX's own
function, layer, schedule or optimizer (float32) is run on the same inputs and must agree with
it; so the vectors carry MLX's semantics at float64 precision. Writes OUT/nn/cases.json:
  "cases":      [{"op", "args": [{"shape", "dtype", "data"}], "kw": {...}, "out": {...}}]
  "schedules":  [{"name", "kw": {...}, "values": [rate at step 0, 1, ...]}]
  "optimizers": [{"name", "w0", "b0", "grads": [[w, b], ...], "after": [[w, b], ...]}]
The Rust test is crates/strata/tests/nn_refs.rs.
"""
import argparse
import itertools
import json
import math
import os

import numpy as np
import mlx.core as mx
import mlx.nn as mnn
import mlx.optimizers as mo


def enc(a):
    a = np.asarray(a)
    flat = a.reshape(-1)
    if a.dtype == np.bool_:
        data = [bool(v) for v in flat]
    elif np.issubdtype(a.dtype, np.integer):
        data = [int(v) for v in flat]
    else:
        data = [float(v) for v in flat.astype(np.float64)]
        assert all(math.isfinite(v) for v in data), "non-finite reference"
    return {"shape": list(a.shape), "dtype": str(a.dtype), "data": data}


def agree(what, mlx_out, ref, rtol=1e-5, atol=1e-5):
    """MLX's float32 answer must match the float64 formula: otherwise the formula is not MLX's."""
    got = np.array(mlx_out, dtype=np.float64)
    ref = np.asarray(ref, np.float64)
    assert got.shape == ref.shape, (what, got.shape, ref.shape)
    bad = np.abs(got - ref) > atol + rtol * np.abs(ref)
    assert not bad.any(), f"{what}: MLX {got[bad][:4]} vs formula {ref[bad][:4]}"


def softplus(x):
    return np.logaddexp(0.0, x)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def softmax(x):
    return np.exp(log_softmax(x))


def erf(x):
    return np.vectorize(math.erf)(x)


SELU_ALPHA, SELU_LAMBDA = 1.6732632423543772, 1.0507009873554805

# name → (float64 formula, MLX function, keyword parameters for both)
ACTIVATIONS = {
    "relu": (lambda x: np.maximum(x, 0), mnn.relu, {}),
    "relu6": (lambda x: np.clip(x, 0, 6), mnn.relu6, {}),
    "relu2": (lambda x: np.maximum(x, 0) ** 2, mnn.relu2, {}),
    "leaky_relu": (lambda x, negative_slope: np.maximum(x, negative_slope * x), mnn.leaky_relu, {"negative_slope": 0.07}),
    "gelu": (lambda x: 0.5 * x * (1 + erf(x / math.sqrt(2))), mnn.gelu, {}),
    "gelu_approx": (lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))), mnn.gelu_approx, {}),
    "gelu_fast_approx": (lambda x: x * sigmoid(1.702 * x), mnn.gelu_fast_approx, {}),
    "silu": (lambda x: x * sigmoid(x), mnn.silu, {}),
    "sigmoid": (sigmoid, mnn.sigmoid, {}),
    "log_sigmoid": (lambda x: -softplus(-x), mnn.log_sigmoid, {}),
    "tanh": (np.tanh, mnn.tanh, {}),
    "hard_tanh": (lambda x, min_val, max_val: np.clip(x, min_val, max_val), mnn.hard_tanh, {"min_val": -0.8, "max_val": 1.3}),
    "softplus": (softplus, mnn.softplus, {}),
    "softsign": (lambda x: x / (1 + np.abs(x)), mnn.softsign, {}),
    "mish": (lambda x: x * np.tanh(softplus(x)), mnn.mish, {}),
    "hardswish": (lambda x: x * np.clip(x + 3, 0, 6) / 6, mnn.hardswish, {}),
    "elu": (lambda x, alpha: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))), mnn.elu, {"alpha": 1.3}),
    "celu": (lambda x, alpha: np.maximum(x, 0) + alpha * np.expm1(np.minimum(x, 0) / alpha), mnn.celu, {"alpha": 0.7}),
    "selu": (lambda x: SELU_LAMBDA * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0))), mnn.selu, {}),
    "glu": (lambda x: x[..., : x.shape[-1] // 2] * sigmoid(x[..., x.shape[-1] // 2:]), mnn.glu, {}),
    "softmax": (softmax, mnn.softmax, {}),
    "softmin": (lambda x: softmax(-x), mnn.softmin, {}),
    "log_softmax": (log_softmax, mnn.log_softmax, {}),
    "softshrink": (lambda x, lambd: np.where(np.abs(x) > lambd, x - np.sign(x) * lambd, 0), mnn.softshrink, {"lambd": 0.6}),
    "hard_shrink": (lambda x, lambd: np.where(np.abs(x) > lambd, x, 0), mnn.hard_shrink, {"lambd": 0.4}),
    "step": (lambda x, threshold: (x >= threshold).astype(np.float64), mnn.step, {"threshold": 0.25}),
}


def conv_ref(x, w, b, stride, padding, dilation, groups):
    """Channels-last convolution in float64: x [n, *spatial, cin], w [cout, *kernel, cin/groups]."""
    x, w, b = (np.asarray(v, np.float64) for v in (x, w, b))
    nd = x.ndim - 2
    x = np.pad(x, [(0, 0)] + [(p, p) for p in padding] + [(0, 0)])
    ks = w.shape[1:-1]
    out_sp = [(x.shape[1 + a] - dilation[a] * (ks[a] - 1) - 1) // stride[a] + 1 for a in range(nd)]
    cin_g, cout_g = w.shape[-1], w.shape[0] // groups
    out = np.zeros([x.shape[0], *out_sp, w.shape[0]])
    for tap in itertools.product(*[range(k) for k in ks]):
        sl = tuple(slice(tap[a] * dilation[a], tap[a] * dilation[a] + (out_sp[a] - 1) * stride[a] + 1, stride[a]) for a in range(nd))
        xt = x[(slice(None), *sl)]
        for g in range(groups):
            wg = w[(slice(g * cout_g, (g + 1) * cout_g), *tap)]
            out[..., g * cout_g:(g + 1) * cout_g] += xt[..., g * cin_g:(g + 1) * cin_g] @ wg.T
    return out + b


def pool_ref(x, kernel, stride, padding, average):
    x = np.asarray(x, np.float64)
    nd = x.ndim - 2
    x = np.pad(x, [(0, 0)] + [(p, p) for p in padding] + [(0, 0)], constant_values=0.0 if average else -np.inf)
    out_sp = [(x.shape[1 + a] - kernel[a]) // stride[a] + 1 for a in range(nd)]
    taps = [x[(slice(None), *(slice(t[a], t[a] + (out_sp[a] - 1) * stride[a] + 1, stride[a]) for a in range(nd)))]
            for t in itertools.product(*[range(k) for k in kernel])]
    return np.mean(taps, 0) if average else np.max(taps, 0)


def rope_ref(x, dims, traditional, base, scale, offset):
    x = np.asarray(x, np.float64)
    pos = (offset + np.arange(x.shape[-2])) * scale
    theta = pos[:, None] * base ** (-np.arange(0, dims, 2) / dims)[None, :]
    c, s = np.cos(theta), np.sin(theta)
    xr = x[..., :dims]
    if traditional:
        x1, x2 = xr[..., 0::2], xr[..., 1::2]
        rot = np.stack([x1 * c - x2 * s, x1 * s + x2 * c], -1).reshape(xr.shape)
    else:
        x1, x2 = xr[..., : dims // 2], xr[..., dims // 2:]
        rot = np.concatenate([x1 * c - x2 * s, x1 * s + x2 * c], -1)
    return np.concatenate([rot, x[..., dims:]], -1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    mx.random.seed(int(rng.integers(0, 2**31)))
    cases = []

    def add(op, inputs, out, **kw):
        cases.append({"op": op, "args": [enc(x) for x in inputs], "kw": kw, "out": enc(out)})

    def r(shape, lo=-2.0, hi=2.0):
        return rng.uniform(lo, hi, size=shape).astype(np.float32)

    def f64(a):
        return np.asarray(a, np.float64)

    # Activations, float32 inputs over a wide range (both branches of every piecewise one).
    for name, (formula, mlx_f, kw) in ACTIVATIONS.items():
        x = r((4, 6), -6.0, 6.0)
        want = formula(f64(x), **kw)
        agree(name, mlx_f(mx.array(x), **kw), want)
        add("activation", [x], want, name=name, **kw)
    x = r((3, 5, 6), -4.0, 4.0)
    alpha = r((6,), 0.05, 0.5)
    prelu = mnn.PReLU(6)
    prelu.weight = mx.array(alpha)
    want = np.maximum(f64(x), 0) + f64(alpha) * np.minimum(f64(x), 0)
    agree("prelu", prelu(mx.array(x)), want)
    add("prelu", [x, alpha], want)

    # Losses, each reduction; MLX's function with the same reduction must agree.
    def reduced(loss, how):
        return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[how]

    L = mnn.losses
    logits = r((5, 4), -3, 3)
    ids = rng.integers(0, 4, size=(5,)).astype(np.int32)
    logits3 = r((2, 3, 4), -3, 3)
    ids3 = rng.integers(0, 4, size=(2, 3)).astype(np.int32)
    probs = softmax(f64(r((5, 4), -2, 2))).astype(np.float32)
    pred, target = r((6, 3)), r((6, 3))
    p01 = r((6, 3), 0.02, 0.98)
    p01[0, 0], p01[1, 1] = 0.0, 1.0  # the logs clipped at −100
    y01 = (rng.random((6, 3)) < 0.5).astype(np.float32)
    ysoft = r((6, 3), 0.0, 1.0)
    for how in ["none", "mean", "sum"]:
        for lg, t in [(logits, ids), (logits3, ids3)]:
            lp = log_softmax(f64(lg)).astype(np.float32)
            want = -np.take_along_axis(f64(lp), t[..., None].astype(np.int64), -1)[..., 0]
            agree("nll", L.nll_loss(mx.array(lp), mx.array(t), reduction=how), reduced(want, how))
            add("loss", [lp, t], reduced(want, how), name="nll", reduction=how)
            for ls in [0.0, 0.15]:
                lpf = log_softmax(f64(lg))
                nll = -np.take_along_axis(lpf, t[..., None].astype(np.int64), -1)[..., 0]
                want = (1 - ls) * nll - ls * lpf.mean(-1)
                agree("cross_entropy", L.cross_entropy(mx.array(lg), mx.array(t), label_smoothing=ls, reduction=how), reduced(want, how))
                add("loss", [lg, t], reduced(want, how), name="cross_entropy", reduction=how, label_smoothing=ls)
        want = -(f64(probs) * log_softmax(f64(logits))).sum(-1)
        agree("cross_entropy probs", L.cross_entropy(mx.array(logits), mx.array(probs), reduction=how), reduced(want, how))
        add("loss", [logits, probs], reduced(want, how), name="cross_entropy_probs", reduction=how)
        for beta in [1.0, 0.4]:
            d = np.abs(f64(pred) - f64(target))
            want = np.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta)
            agree("smooth_l1", L.smooth_l1_loss(mx.array(pred), mx.array(target), beta=beta, reduction=how), reduced(want, how))
            add("loss", [pred, target], reduced(want, how), name="smooth_l1", reduction=how, beta=beta)
        delta = 0.7
        d = np.abs(f64(pred) - f64(target))
        want = np.where(d <= delta, 0.5 * d * d, delta * (d - 0.5 * delta))
        agree("huber", L.huber_loss(mx.array(pred), mx.array(target), delta=delta, reduction=how), reduced(want, how))
        add("loss", [pred, target], reduced(want, how), name="huber", reduction=how, delta=delta)
        for y in [y01, ysoft]:
            lp = np.maximum(np.log(f64(p01), where=p01 > 0, out=np.full(p01.shape, -np.inf)), -100)
            lq = np.maximum(np.log1p(-f64(p01), where=p01 < 1, out=np.full(p01.shape, -np.inf)), -100)
            want = -(f64(y) * lp + (1 - f64(y)) * lq)
            agree("bce", L.binary_cross_entropy(mx.array(p01), mx.array(y), with_logits=False, reduction=how), reduced(want, how), atol=1e-4)
            add("loss", [p01, y], reduced(want, how), name="binary_cross_entropy", reduction=how)
            x64 = f64(pred)
            want = np.maximum(x64, 0) - x64 * f64(y) + np.log1p(np.exp(-np.abs(x64)))
            agree("bce logits", L.binary_cross_entropy(mx.array(pred), mx.array(y), reduction=how), reduced(want, how))
            add("loss", [pred, y], reduced(want, how), name="binary_cross_entropy_with_logits", reduction=how)
        want = (f64(pred) - f64(target)) ** 2
        agree("mse", L.mse_loss(mx.array(pred), mx.array(target), reduction=how), reduced(want, how))
        add("loss", [pred, target], reduced(want, how), name="mse", reduction=how)
        want = np.abs(f64(pred) - f64(target))
        agree("l1", L.l1_loss(mx.array(pred), mx.array(target), reduction=how), reduced(want, how))
        add("loss", [pred, target], reduced(want, how), name="l1", reduction=how)
        lq_, lp_ = log_softmax(f64(pred)).astype(np.float32), log_softmax(f64(target)).astype(np.float32)
        want = (np.exp(f64(lp_)) * (f64(lp_) - f64(lq_))).sum(-1)
        agree("kl_div", L.kl_div_loss(mx.array(lq_), mx.array(lp_), axis=-1, reduction=how), reduced(want, how))
        add("loss", [lq_, lp_], reduced(want, how), name="kl_div", reduction=how)
        # MLX's cosine_similarity_loss is the similarity itself; the loss here is 1 − it.
        a64, b64 = f64(pred), f64(target)
        cos = (a64 * b64).sum(-1) / np.sqrt((a64 ** 2).sum(-1) * (b64 ** 2).sum(-1))
        agree("cosine", L.cosine_similarity_loss(mx.array(pred), mx.array(target), axis=-1, reduction="none"), cos)
        add("loss", [pred, target], reduced(1 - cos, how), name="cosine_similarity", reduction=how)

    # Convolution layers with bias, MLX's layout ([out, *kernel, in / groups]) and MLX's layers.
    for nd, cin, cout, kernel, stride, padding, dilation, groups, xshape in [
        (1, 4, 6, (3,), (1,), (0,), (1,), 1, (2, 9, 4)),
        (1, 4, 6, (3,), (2,), (2,), (2,), 2, (2, 11, 4)),
        (2, 3, 5, (3, 3), (1, 1), (1, 1), (1, 1), 1, (2, 6, 5, 3)),
        (2, 4, 6, (3, 2), (2, 1), (1, 0), (1, 2), 2, (2, 7, 6, 4)),
    ]:
        x = r(xshape)
        w = r((cout, *kernel, cin // groups), -0.5, 0.5)
        b = r((cout,))
        want = conv_ref(x, w, b, stride, padding, dilation, groups)
        if nd == 1:
            layer = mnn.Conv1d(cin, cout, kernel[0], stride=stride[0], padding=padding[0], dilation=dilation[0], groups=groups)
        else:
            layer = mnn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups)
        layer.weight, layer.bias = mx.array(w), mx.array(b)
        agree(f"conv{nd}d", layer(mx.array(x)), want)
        add(f"conv{nd}d", [x, w, b], want, stride=list(stride), padding=list(padding), dilation=list(dilation), groups=groups)

    # Pooling, 1-D and 3-D (2-D is in arrays.py), against MLX's pooling layers.
    for nd, kernel, stride, padding, xshape in [(1, 3, 2, 1, (2, 9, 3)), (1, 2, 1, 0, (1, 5, 2)),
                                               (3, 2, 2, 1, (2, 5, 4, 3, 2)), (3, 3, 1, 0, (1, 4, 5, 3, 2))]:
        x = r(xshape)
        for average in [False, True]:
            want = pool_ref(x, [kernel] * nd, [stride] * nd, [padding] * nd, average)
            cls = {(1, False): mnn.MaxPool1d, (1, True): mnn.AvgPool1d, (3, False): mnn.MaxPool3d, (3, True): mnn.AvgPool3d}[(nd, average)]
            agree(f"pool{nd}d", cls(kernel, stride, padding)(mx.array(x)), want)
            add("pool", [x], want, spatial=nd, kernel=kernel, stride=stride, padding=padding, average=average)

    # Normalization layers and RoPE, as MLX's layer wrappers.
    x = r((2, 3, 8), -3, 3)
    w, b = r((8,), 0.5, 1.5), r((8,))
    for affine in [True, False]:
        x64 = f64(x)
        mu = x64.mean(-1, keepdims=True)
        want = (x64 - mu) / np.sqrt(((x64 - mu) ** 2).mean(-1, keepdims=True) + 1e-5)
        ln = mnn.LayerNorm(8, eps=1e-5, affine=affine)
        if affine:
            want = want * f64(w) + f64(b)
            ln.weight, ln.bias = mx.array(w), mx.array(b)
        agree("layer_norm", ln(mx.array(x)), want)
        add("layer_norm", [x, w, b] if affine else [x], want, eps=1e-5)
    want = f64(x) / np.sqrt((f64(x) ** 2).mean(-1, keepdims=True) + 1e-6) * f64(w)
    rms = mnn.RMSNorm(8, eps=1e-6)
    rms.weight = mx.array(w)
    agree("rms_norm", rms(mx.array(x)), want)
    add("rms_norm", [x, w], want, eps=1e-6)
    xr = r((2, 5, 8), -2, 2)
    for traditional, base, scale, offset, dims in [(False, 10000.0, 1.0, 0, 8), (True, 10000.0, 1.0, 3, 6),
                                                   (False, 500.0, 0.5, 7, 6), (True, 1000.0, 2.0, 0, 8)]:
        want = rope_ref(xr, dims, traditional, base, scale, offset)
        agree("rope", mnn.RoPE(dims, traditional=traditional, base=base, scale=scale)(mx.array(xr), offset=offset), want)
        add("rope", [xr], want, dims=dims, traditional=traditional, base=base, scale=scale, offset=offset)

    # Global-norm gradient clipping over three leaves: one clipped case, one within the bound.
    leaves = [r((3, 4)), r((5,)), r((2, 2, 2))]
    norm = math.sqrt(sum((f64(g) ** 2).sum() for g in leaves))
    for max_norm in [0.3 * norm, 2.0 * norm]:
        scale = min(max_norm / (norm + 1e-6), 1.0)
        want = np.concatenate([f64(g).ravel() * scale for g in leaves] + [[norm]])
        clipped, mnorm = mo.clip_grad_norm({"a": mx.array(leaves[0]), "b": mx.array(leaves[1]), "c": mx.array(leaves[2])}, max_norm)
        agree("clip_grad_norm", np.concatenate([np.array(clipped[k]).ravel() for k in "abc"] + [[float(mnorm)]]), want)
        add("clip_grad_norm", leaves, want, max_norm=max_norm)

    # Schedules over steps past their ends.
    schedules = []
    steps = list(range(0, 121))
    init = float(rng.uniform(0.01, 0.5))
    rate = float(rng.uniform(0.8, 0.99))
    every = int(rng.integers(3, 15))
    dsteps = int(rng.integers(20, 90))
    end = float(rng.uniform(0.0, 0.005))
    warm = int(rng.integers(5, 30))

    def cosine(i, n, e):
        return lambda t: e + (i - e) * 0.5 * (1 + math.cos(math.pi * min(t, n) / n))

    def linear(i, e, n):
        return lambda t: i + (e - i) * min(t, n) / n

    for name, kw, formula, mlx_s in [
        ("step_decay", {"init": init, "rate": rate, "every": every}, lambda t: init * rate ** (t // every), mo.step_decay(init, rate, every)),
        ("exponential_decay", {"init": init, "rate": rate}, lambda t: init * rate ** t, mo.exponential_decay(init, rate)),
        ("cosine_decay", {"init": init, "steps": dsteps, "end": end}, cosine(init, dsteps, end), mo.cosine_decay(init, dsteps, end)),
        ("linear_schedule", {"init": end, "end": init, "steps": dsteps}, linear(end, init, dsteps), mo.linear_schedule(end, init, dsteps)),
        ("join_schedules", {"init": init, "warmup": warm, "steps": dsteps, "end": end},
         lambda t: linear(0.0, init, warm)(t) if t < warm else cosine(init, dsteps, end)(t - warm),
         mo.join_schedules([mo.linear_schedule(0.0, init, warm), mo.cosine_decay(init, dsteps, end)], [warm])),
    ]:
        values = [formula(t) for t in steps]
        agree(name, [float(mlx_s(mx.array(t))) for t in steps], values, rtol=1e-5, atol=1e-7)
        schedules.append({"name": name, "kw": kw, "values": values})

    # Optimizer trajectories in float64 by MLX's rules (checked against MLX's optimizers), for
    # the settings arrays.py leaves out: SGD with dampening, Adamax's defaults (MLX's: no bias
    # correction; and PyTorch's, with it).
    optimizers = []
    w0, b0 = r((3, 4)), r((5,))
    grads = [(r((3, 4)), r((5,))) for _ in range(4)]

    def sgd(lr, mu, damp, wd):
        def run(p, g, st, t):
            g = g + wd * p
            st["v"] = mu * st.get("v", 0.0) + (1 - damp) * g
            return p - lr * st["v"]
        return run

    def adamax(lr, b1, b2, eps, bias_correction):
        def run(p, g, st, t):
            st["m"] = b1 * st.get("m", 0.0) + (1 - b1) * g
            st["u"] = np.maximum(b2 * st.get("u", 0.0), np.abs(g))
            c = 1 - b1 ** t if bias_correction else 1.0
            return p - lr / c * st["m"] / (st["u"] + eps)
        return run

    for name, rule, mlx_opt in [
        ("sgd_dampening", sgd(0.1, 0.9, 0.3, 0.01), mo.SGD(0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
        ("adamax_defaults_mlx", adamax(0.01, 0.9, 0.999, 1e-8, False), mo.Adamax(0.01)),
        ("adamax_defaults", adamax(0.01, 0.9, 0.999, 1e-8, True), None),
    ]:
        p = {"w": f64(w0), "b": f64(b0)}
        st = {"w": {}, "b": {}}
        mp = {"w": mx.array(w0), "b": mx.array(b0)}
        after = []
        for t, (gw, gb) in enumerate(grads, 1):
            p = {k: rule(p[k], f64(g), st[k], t) for k, g in [("w", gw), ("b", gb)]}
            if mlx_opt is not None:
                mp = mlx_opt.apply_gradients({"w": mx.array(gw), "b": mx.array(gb)}, mp)
                for k in "wb":
                    agree(f"{name} step {t} {k}", mp[k], p[k], rtol=1e-5, atol=1e-6)
            after.append([p["w"].ravel().tolist(), p["b"].ravel().tolist()])
        optimizers.append({"name": name, "w0": w0.ravel().tolist(), "b0": b0.ravel().tolist(),
                           "grads": [[gw.ravel().tolist(), gb.ravel().tolist()] for gw, gb in grads], "after": after})

    os.makedirs(os.path.join(args.out, "nn"), exist_ok=True)
    with open(os.path.join(args.out, "nn", "cases.json"), "w") as f:
        json.dump({"seed": args.seed, "mlx": mx.__version__, "cases": cases, "schedules": schedules, "optimizers": optimizers}, f)
    print(f"nn: {len(cases)} cases, {len(schedules)} schedules, {len(optimizers)} optimizer runs (each agreeing with MLX {mx.__version__})")


if __name__ == "__main__":
    main()

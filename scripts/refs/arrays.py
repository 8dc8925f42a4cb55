#!/usr/bin/env python3
"""Golden vectors for the array layer: NumPy's answers for the op set on fresh random inputs.

Writes OUT/arrays/cases.json (and manifest.json): a list of cases
{"op", "args": [{"shape", "dtype", "data"}], "kw": {...}, "out": {"shape", "dtype", "data"}}
where non-finite floats are written as the strings "nan", "inf", "-inf". The Rust test
(crates/strata/tests/numpy.rs) runs the same op by name and compares with a tolerance set by dtype.
"""
import argparse
import json
import math
import os

import numpy as np
import mlx.core as mx


def enc(a):
    a = np.asarray(a)
    flat = a.reshape(-1)
    if a.dtype == np.bool_:
        data = [bool(v) for v in flat]
    elif np.issubdtype(a.dtype, np.integer):
        data = [int(v) for v in flat]
    else:
        data = [float(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")) for v in flat.astype(np.float64)]
    return {"shape": list(a.shape), "dtype": str(a.dtype), "data": data}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    cases = []

    def add(op, inputs, out, **kw):
        cases.append({"op": op, "args": [enc(x) for x in inputs], "kw": kw, "out": enc(out)})

    def r(shape, lo=-2.0, hi=2.0, dtype=np.float32):
        return rng.uniform(lo, hi, size=shape).astype(dtype)

    with np.errstate(all="ignore"):
        # Unary ops on a few shapes (0-size, 1-size, odd), each in its domain.
        unary = {
            "negative": (np.negative, -3, 3), "absolute": (np.abs, -3, 3), "sign": (np.sign, -3, 3),
            "square": (np.square, -3, 3), "sqrt": (np.sqrt, 0, 4), "reciprocal": (np.reciprocal, 0.5, 3),
            "exp": (np.exp, -3, 3), "exp2": (np.exp2, -3, 3), "expm1": (np.expm1, -1, 1), "log": (np.log, 0.1, 4),
            "log2": (np.log2, 0.1, 4), "log10": (np.log10, 0.1, 4), "log1p": (np.log1p, -0.5, 3),
            "sin": (np.sin, -4, 4), "cos": (np.cos, -4, 4), "tan": (np.tan, -1.2, 1.2), "arcsin": (np.arcsin, -1, 1),
            "arccos": (np.arccos, -1, 1), "arctan": (np.arctan, -4, 4), "sinh": (np.sinh, -3, 3),
            "cosh": (np.cosh, -3, 3), "tanh": (np.tanh, -3, 3), "arcsinh": (np.arcsinh, -3, 3),
            "arccosh": (np.arccosh, 1, 4), "arctanh": (np.arctanh, -0.95, 0.95), "floor": (np.floor, -3, 3),
            "ceil": (np.ceil, -3, 3), "round": (np.round, -3, 3),
            "sigmoid": (lambda x: 1 / (1 + np.exp(-x.astype(np.float64))), -5, 5),
            "softplus": (lambda x: np.logaddexp(0, x.astype(np.float64)), -5, 5),
            "relu": (lambda x: np.maximum(x, 0), -3, 3),
            "silu": (lambda x: x.astype(np.float64) / (1 + np.exp(-x.astype(np.float64))), -5, 5),
        }
        for name, (f, lo, hi) in unary.items():
            for shape in [(0, 3), (1,), (3, 5)]:
                x = r(shape, lo, hi)
                add(name, [x], np.asarray(f(x)).astype(np.float32))
        for shape in [(4,), (2, 3)]:
            x = r(shape) * 1e38
            x.flat[0] = np.nan
            add("isnan", [x], np.isnan(x))
            add("isinf", [x * 100], np.isinf(x * 100))
        # Binary ops with broadcasting edge cases.
        shapes = [((2, 1, 3), (4, 1)), ((0, 3), (1, 3)), ((), (5,)), ((1,), (1,)), ((3, 4), (3, 4))]
        binary = {
            "add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide,
            "maximum": np.maximum, "minimum": np.minimum, "arctan2": np.arctan2, "logaddexp": np.logaddexp,
            "power": np.power, "remainder": np.remainder, "floor_divide": np.floor_divide,
            "equal": np.equal, "less": np.less, "greater_equal": np.greater_equal,
        }
        for name, f in binary.items():
            for sa, sb in shapes:
                lo = 0.5 if name == "power" else -3
                a, b = r(sa, lo, 3), r(sb, 0.5 if name in ("power",) else -3, 3)
                if name in ("remainder", "floor_divide", "divide"):
                    b = np.where(np.abs(b) < 0.3, 0.7, b).astype(np.float32)
                add(name, [a, b], f(a, b))
        # Integer arithmetic and promotion.
        ai = rng.integers(-50, 50, size=(3, 4)).astype(np.int32)
        bi = rng.integers(1, 9, size=(4,)).astype(np.int32)
        for name in ["add", "subtract", "multiply", "floor_divide", "remainder", "maximum"]:
            add(name, [ai, bi], binary[name](ai, bi))
        add("divide", [ai, bi], (ai / bi).astype(np.float32))
        bf = r((4,))
        add("add", [ai, bf], ai.astype(np.float32) + bf)
        add("add", [ai.astype(np.uint8), ai.astype(np.int8)], ai.astype(np.uint8).astype(np.int16) + ai.astype(np.int8))
        for name, f in [("bitwise_and", np.bitwise_and), ("bitwise_or", np.bitwise_or), ("bitwise_xor", np.bitwise_xor)]:
            add(name, [ai, bi], f(ai, bi))
        # Reductions over axes (negative, several, all; keepdims; empty).
        x = r((3, 4, 5))
        for axes in [None, (0,), (-1,), (0, 2), (1, -1)]:
            for keep in [False, True]:
                kw = {"axes": None if axes is None else list(axes), "keepdims": keep}
                add("sum", [x], np.sum(x, axis=axes, keepdims=keep), **kw)
                add("mean", [x], np.mean(x, axis=axes, keepdims=keep), **kw)
                add("max", [x], np.max(x, axis=axes, keepdims=keep), **kw)
                add("min", [x], np.min(x, axis=axes, keepdims=keep), **kw)
                add("prod", [x], np.prod(x, axis=axes, keepdims=keep), **kw)
                add("var", [x], np.var(x.astype(np.float64), axis=axes, keepdims=keep, ddof=1).astype(np.float32), ddof=1, **kw)
                add("std", [x], np.std(x.astype(np.float64), axis=axes, keepdims=keep).astype(np.float32), ddof=0, **kw)
                m = np.max(x, axis=axes, keepdims=True)
                lse = (np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m)
                add("logsumexp", [x], lse if keep else np.squeeze(lse, axis=axes), **kw)
                add("all", [x > -1.5], np.all(x > -1.5, axis=axes, keepdims=keep), **kw)
                add("any", [x > 1.5], np.any(x > 1.5, axis=axes, keepdims=keep), **kw)
        e = r((0, 3))
        add("sum", [e], np.sum(e, axis=0), axes=[0], keepdims=False)
        add("prod", [e], np.prod(e, axis=0), axes=[0], keepdims=False)
        e2 = r((4, 0))
        add("sum", [e2], np.sum(e2, axis=-1, keepdims=True), axes=[-1], keepdims=True)
        add("max", [r((0, 4))], np.zeros((0,), np.float32), axes=[-1], keepdims=False)
        for axis in [None, 0, -1]:
            add("argmax", [x], np.argmax(x, axis=axis).astype(np.uint32), axis=axis)
            add("argmin", [x], np.argmin(x, axis=axis).astype(np.uint32), axis=axis)
        for axis in [0, -1]:
            add("softmax", [x], np.exp(x - np.max(x, axis=axis, keepdims=True)) / np.sum(np.exp(x - np.max(x, axis=axis, keepdims=True)), axis=axis, keepdims=True), axis=axis)
            add("cumsum", [x], np.cumsum(x, axis=axis), axis=axis)
            add("cumprod", [x], np.cumprod(x, axis=axis), axis=axis)
            add("cummax", [x], np.maximum.accumulate(x, axis=axis), axis=axis)
            add("cummin", [x], np.minimum.accumulate(x, axis=axis), axis=axis)
            add("logcumsumexp", [x], np.logaddexp.accumulate(x.astype(np.float64), axis=axis).astype(np.float32), axis=axis)
        # Shape ops.
        add("reshape", [x], x.reshape(5, -1), shape=[5, -1])
        add("transpose", [x], np.transpose(x, (2, 0, 1)), perm=[2, 0, 1])
        add("transpose", [x], np.transpose(x), perm=None)
        add("swapaxes", [x], np.swapaxes(x, 0, -1), a=0, b=-1)
        add("moveaxis", [x], np.moveaxis(x, 0, -1), a=0, b=-1)
        add("expand_dims", [x], np.expand_dims(x, -2), axis=-2)
        s1 = r((1, 3, 1))
        add("squeeze", [s1], np.squeeze(s1), axes=None)
        add("squeeze", [s1], np.squeeze(s1, axis=-1), axes=[-1])
        y = r((3, 2, 5))
        add("concatenate", [x, y], np.concatenate([x, y], axis=1), axis=1)
        add("stack", [x, x * 2], np.stack([x, x * 2], axis=-1), axis=-1)
        add("split", [x], np.concatenate(np.split(x, [1, 3], axis=1)[::-1], axis=1), indices=[1, 3], axis=1)
        add("pad", [x], np.pad(x, ((1, 0), (0, 2), (3, 1)), constant_values=0.25), widths=[[1, 0], [0, 2], [3, 1]], value=0.25)
        add("tile", [y], np.tile(y, (2, 1, 3)), reps=[2, 1, 3])
        add("repeat", [y], np.repeat(y, 3, axis=1), repeats=3, axis=1)
        add("flip", [x], np.flip(x, axis=(0, 2)), axes=[0, 2])
        add("roll", [x], np.roll(x, -3, axis=2), shift=-3, axis=2)
        add("slice", [x], x[2:0:-1, ::2, -4:], start=[2, 0, -4], stop=[0, 4, 5], step=[-1, 2, 1])
        add("slice", [x], x[5:, 1:3, -100:100], start=[5, 1, -100], stop=[3, 3, 100], step=[1, 1, 1])
        add("broadcast_to", [y[:, :1, :]], np.broadcast_to(y[:, :1, :], (4, 3, 6, 5)), shape=[4, 3, 6, 5])
        add("where", [x > 0, x, y[:, :1, :]], np.where(x > 0, x, y[:, :1, :]))
        add("clip", [x], np.clip(x, -0.5, 1.0), lo=-0.5, hi=1.0)
        # Indexing (negative indices included).
        idx = rng.integers(-4, 4, size=(2, 3)).astype(np.int32)
        add("take", [x, idx], np.take(x, idx, axis=1), axis=1)
        add("take", [x, idx], np.take(x, idx), axis=None)
        ia = rng.integers(-5, 5, size=(3, 4, 7)).astype(np.int64)
        add("take_along_axis", [x, ia], np.take_along_axis(x, ia, axis=2), axis=2)
        ib = rng.integers(0, 3, size=(3, 1, 5)).astype(np.int32)
        add("take_along_axis", [x, ib], np.take_along_axis(x, np.broadcast_to(ib, (3, 1, 5)), axis=1), axis=1)
        iu = rng.integers(0, 4, size=(3, 6, 5)).astype(np.int32)
        upd = r((3, 6, 5))
        sa = x.copy()
        for i in range(3):
            for j in range(6):
                for k in range(5):
                    sa[i, iu[i, j, k], k] += upd[i, j, k]
        add("scatter_add", [x, iu, upd], sa, axis=1)
        # matmul with batch broadcasting and vectors.
        a, b = r((2, 1, 3, 4)), r((5, 4, 6))
        add("matmul", [a, b], np.matmul(a, b))
        v = r((4,))
        add("matmul", [a, v], np.matmul(a, v))
        add("matmul", [v, b], np.matmul(v, b))
        add("matmul", [r((3, 0)), r((0, 2))], np.zeros((3, 2), np.float32))
        ad = r((7, 9), dtype=np.float64)
        bd = r((9, 11), dtype=np.float64)
        add("matmul", [ad, bd], ad @ bd)
        w = r((3,))
        add("outer", [v, w], np.outer(v, w))

        # Sorting: NaNs last, stable on ties (integers with repeats), any axis, flattened.
        xs = r((4, 5, 6))
        xs[0, 1, 2] = np.nan
        xs[2, 3, 0] = np.nan
        for ax in [0, 1, -1]:
            add("sort", [xs], np.sort(xs, axis=ax, kind="stable"), axis=ax)
            add("argsort", [xs], np.argsort(xs, axis=ax, kind="stable").astype(np.uint32), axis=ax)
        add("sort", [xs], np.sort(xs, axis=None), axis=None)
        ti = rng.integers(-3, 3, size=(7, 9)).astype(np.int32)
        add("argsort", [ti], np.argsort(ti, axis=1, kind="stable").astype(np.uint32), axis=1)
        add("argsort", [ti.astype(np.uint8)], np.argsort(ti.astype(np.uint8), axis=0, kind="stable").astype(np.uint32), axis=0)
        add("sort", [ti.astype(np.float16)], np.sort(ti.astype(np.float16), axis=1, kind="stable"), axis=1)
        add("topk", [xs[1:]], np.sort(xs[1:], axis=-1)[..., -3:], k=3, axis=-1)
        add("topk", [ti], np.sort(ti, axis=0)[-7:], k=7, axis=0)
        add("sort", [r((0, 3))], np.zeros((0, 3), np.float32), axis=0)

        # Convolutions (channels last, MLX weight layout [c_out, *k, c_in/groups]) against a
        # float64 direct sum; the transposed ones also against MLX, whose API this is.
        def conv_ref(x, w, stride, pad, dil, groups):
            s = x.ndim - 2
            x, w = x.astype(np.float64), w.astype(np.float64)
            xp = np.pad(x, [(0, 0)] + [(p, p) for p in pad] + [(0, 0)])
            k = w.shape[1:-1]
            out_sp = [(xp.shape[1 + a] - dil[a] * (k[a] - 1) - 1) // stride[a] + 1 for a in range(s)]
            co, cig = w.shape[0], w.shape[-1]
            cog = co // groups
            y = np.zeros([x.shape[0]] + out_sp + [co])
            for tap in np.ndindex(*k):
                sl = tuple(slice(tap[a] * dil[a], tap[a] * dil[a] + (out_sp[a] - 1) * stride[a] + 1, stride[a]) for a in range(s))
                win = xp[(slice(None),) + sl]
                for g in range(groups):
                    wg = w[(slice(g * cog, (g + 1) * cog),) + tap + (slice(None),)]  # [cog, cig]
                    y[..., g * cog:(g + 1) * cog] += win[..., g * cig:(g + 1) * cig] @ wg.T
            return y

        def conv_t_ref(x, w, stride, pad, dil, outpad, groups):
            s = x.ndim - 2
            x, w = x.astype(np.float64), w.astype(np.float64)
            k = w.shape[1:-1]
            co, cig = w.shape[0], w.shape[-1]
            cog = co // groups
            full = [(x.shape[1 + a] - 1) * stride[a] + dil[a] * (k[a] - 1) + 1 + outpad[a] for a in range(s)]
            y = np.zeros([x.shape[0]] + full + [co])
            for tap in np.ndindex(*k):
                sl = tuple(slice(tap[a] * dil[a], tap[a] * dil[a] + (x.shape[1 + a] - 1) * stride[a] + 1, stride[a]) for a in range(s))
                for g in range(groups):
                    wg = w[(slice(g * cog, (g + 1) * cog),) + tap + (slice(None),)]  # [cog, cig]
                    y[(slice(None),) + sl + (slice(g * cog, (g + 1) * cog),)] += x[..., g * cig:(g + 1) * cig] @ wg.T
            crop = tuple(slice(pad[a], full[a] - pad[a]) for a in range(s))
            return y[(slice(None),) + crop]

        convs = [  # (input shape, weight shape, stride, pad, dilation, groups)
            ((2, 9, 3), (4, 3, 3), [2], [1], [1], 1),
            ((1, 10, 4), (6, 2, 2), [1], [0], [3], 2),
            ((2, 7, 6, 3), (5, 3, 3, 3), [1, 2], [1, 0], [1, 1], 1),
            ((1, 6, 5, 4), (4, 3, 2, 1), [1, 1], [1, 1], [2, 1], 4),
            ((1, 4, 5, 3, 2), (3, 2, 3, 2, 2), [1, 2, 1], [0, 1, 1], [1, 1, 1], 1),
        ]
        for xs_, ws_, st, pd, dl, gr in convs:
            cx, cw = r(xs_), r(ws_)
            add("conv", [cx, cw], conv_ref(cx, cw, st, pd, dl, gr).astype(np.float32), stride=st, padding=pd, dilation=dl, groups=gr)
        cx, cw = r((1, 5, 5, 4), dtype=np.float64), r((3, 3, 3, 4), dtype=np.float64)
        add("conv", [cx, cw], conv_ref(cx, cw, [1, 1], [1, 1], [1, 1], 1), stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=1)
        convts = [  # (input, weight, stride, pad, dilation, output padding, groups)
            ((2, 5, 3), (4, 3, 3), [2], [1], [1], [1], 1),
            ((1, 4, 5, 4), (6, 3, 3, 2), [2, 1], [1, 0], [1, 1], [1, 0], 2),
            ((1, 3, 4, 2), (3, 2, 3, 2), [1, 2], [0, 1], [2, 1], [1, 1], 1),
        ]
        fns = {1: mx.conv_transpose1d, 2: mx.conv_transpose2d}
        for xs_, ws_, st, pd, dl, op, gr in convts:
            cx, cw = r(xs_), r(ws_)
            want = conv_t_ref(cx, cw, st, pd, dl, op, gr)
            s_ = len(xs_) - 2
            unwrap = (lambda v: v[0]) if s_ == 1 else (lambda v: tuple(v))
            got = np.array(fns[s_](mx.array(cx), mx.array(cw), stride=unwrap(st), padding=unwrap(pd),
                                   dilation=unwrap(dl), output_padding=unwrap(op), groups=gr))
            assert got.shape == want.shape and np.allclose(got, want, rtol=1e-4, atol=1e-4), \
                f"conv_transpose reference disagrees with MLX for {xs_} {ws_}"
            add("conv_transpose", [cx, cw], want.astype(np.float32), stride=st, padding=pd, dilation=dl, output_padding=op, groups=gr)

        # put_along_axis (distinct indices per lane: a permutation's first columns) and masks.
        pb = r((3, 5))
        pi = np.argsort(rng.random((3, 5)), axis=1)[:, :3].astype(np.int32)
        pv = r((3, 3))
        pw = pb.copy()
        np.put_along_axis(pw, pi, pv, axis=1)
        add("put_along_axis", [pb, pi, pv], pw, axis=1)
        # gather / scatter across several axes: NumPy's advanced indexing with the indexed axes
        # moved to the front (so the broadcast index axes come first, the rest in order).
        gx = r((3, 4, 5))
        for axes_, ishapes in [([0, 2], [(2, 3), (3,)]), ([2, 1], [(4,), (2, 1)]), ([1], [(2, 2)]), ([0, 1, 2], [(5,), (5,), (1,)])]:
            idxs = [rng.integers(-gx.shape[a], gx.shape[a], size=sh).astype(np.int32) for a, sh in zip(axes_, ishapes)]
            front = np.moveaxis(gx, axes_, range(len(axes_)))
            want = front[tuple(idxs)]
            add("gather_nd", [gx, *idxs], want, axes=axes_)
            upd = r(want.shape)
            acc = gx.copy()
            np.add.at(np.moveaxis(acc, axes_, range(len(axes_))), tuple(idxs), upd)
            add("scatter_add_nd", [gx, *idxs, upd], acc, axes=axes_)
        # scatter (set) at distinct positions: a permutation's first entries of the flat index.
        flat = rng.permutation(3 * 5)[:6]
        si = [(flat // 5).astype(np.int32), (flat % 5).astype(np.int32) - 5]
        su = r((6, 4))
        put = gx.copy()
        np.moveaxis(put, [0, 2], [0, 1])[tuple(si)] = su
        add("scatter_nd", [gx, *si, su], put, axes=[0, 2])
        add("boolean_mask", [pb, pb > 0.3], pb[pb > 0.3])
        add("boolean_mask", [pb, np.zeros((3, 5), bool)], pb[np.zeros((3, 5), bool)])

        # einsum and tensordot.
        ea, eb, ec = r((3, 4)), r((4, 5)), r((5, 2))
        sq = r((4, 4))
        bt = r((2, 3, 4))
        for spec, ops_ in [("ij,jk->ik", [ea, eb]), ("ij,jk,kl->il", [ea, eb, ec]), ("ii->i", [sq]), ("ii", [sq]),
                           ("ij->", [ea]), ("ji", [ea]), ("i,i", [ea[0], ea[1]]), ("i,j->ij", [ea[0], eb[0]]),
                           ("bij,bkj->bik", [bt, r((2, 5, 4))]), ("...ij,jk->...ik", [bt, eb]),
                           ("b...j,j->b...", [bt, ea[0]]), ("ij,ij->ij", [ea, ea]), ("iij->ij", [r((3, 3, 2))]),
                           ("ab,cd->", [ea, eb]), ("...i,...i->...", [r((2, 1, 4)), r((3, 4))])]:
            add("einsum", ops_, np.einsum(spec, *ops_), spec=spec)
        ta, tb = r((2, 3, 4)), r((3, 4, 5))
        add("tensordot", [ta, tb], np.tensordot(ta, tb, axes=2), axes=2)
        tc = r((4, 2, 6))
        add("tensordot_axes", [ta, tc], np.tensordot(ta, tc, axes=([2, 0], [0, 1])), a=[2, 0], b=[0, 1])

        # mx.fast: MLX's own outputs are the reference (this is its API).
        def m(f, *xs, **kw):
            return np.array(f(*[mx.array(x) for x in xs], **kw))
        xf, wf, bf = r((2, 3, 8)), r((8,)), r((8,))
        add("rms_norm", [xf, wf], m(mx.fast.rms_norm, xf, wf, eps=1e-5), eps=1e-5)
        add("layer_norm", [xf, wf, bf], m(mx.fast.layer_norm, xf, wf, bf, eps=1e-5), eps=1e-5)
        xr = r((2, 3, 5, 8))
        for dims, trad, base, scale, off in [(8, False, 10000.0, 1.0, 0), (8, True, 10000.0, 1.0, 3), (4, False, 500.0, 0.5, 2), (6, True, 10000.0, 2.0, 0)]:
            want = np.array(mx.fast.rope(mx.array(xr), dims, traditional=trad, base=base, scale=scale, offset=off))
            add("rope", [xr], want, dims=dims, traditional=trad, base=base, scale=scale, offset=off)
        for (hq, hkv, lq, lk, d), mk in [((4, 2, 5, 7, 8), None), ((2, 1, 6, 6, 16), "causal"), ((3, 3, 4, 9, 8), "causal"),
                                          ((2, 2, 3, 5, 8), "bool"), ((4, 1, 3, 5, 8), "float")]:
            q, k, v = r((2, hq, lq, d)), r((2, hkv, lk, d)), r((2, hkv, lk, d))
            scale = 1.0 / math.sqrt(d)
            ops_ = [q, k, v]
            if mk == "bool":
                mask = rng.random((1, hq, lq, lk)) < 0.7
                mask[..., 0] = True
                ops_.append(mask)
            elif mk == "float":
                mask = r((lq, lk))
                ops_.append(mask)
            mm = mx.array(ops_[3]) if len(ops_) > 3 else ("causal" if mk == "causal" else None)
            want = np.array(mx.fast.scaled_dot_product_attention(mx.array(q), mx.array(k), mx.array(v), scale=scale, mask=mm))
            add("sdpa", ops_, want, scale=scale, mask=mk or "none")

    # nn layers and losses (float64 NumPy formulas), and optimizer trajectories from
    # mlx.optimizers (their conventions: bias correction and all).
    with np.errstate(all="ignore"):
        def f64(*xs):
            return [np.asarray(v, np.float64) for v in xs]
        xl, wl, bl = r((2, 3, 5)), r((4, 5)), r((4,))
        a, w, b = f64(xl, wl, bl)
        add("nn_linear", [xl, wl, bl], (a @ w.T + b).astype(np.float32))
        ids = rng.integers(0, 6, size=(2, 3)).astype(np.int32)
        emb = r((6, 4))
        add("nn_embedding", [ids, emb], emb[ids])
        xg = r((2, 4, 3, 6))
        wg, bg = r((6,)), r((6,))
        g_ = xg.astype(np.float64).reshape(2, -1, 3, 2)
        mu = g_.mean(axis=(1, 3), keepdims=True)
        var = ((g_ - mu) ** 2).mean(axis=(1, 3), keepdims=True)
        gn = ((g_ - mu) / np.sqrt(var + 1e-5)).reshape(xg.shape) * wg + bg
        add("nn_group_norm", [xg, wg, bg], gn.astype(np.float32), groups=3)
        xp_ = r((2, 7, 6, 3))
        pad_ = np.pad(xp_.astype(np.float64), [(0, 0), (1, 1), (1, 1), (0, 0)], constant_values=-np.inf)
        mp = np.stack([pad_[:, i:i + 7:2, j:j + 6:2] for i in range(3) for j in range(3)]).max(0)
        add("nn_max_pool2d", [xp_], mp.astype(np.float32), kernel=3, stride=2, padding=1)
        ap = np.stack([xp_[:, i:i + 6:2, j:j + 5:2] for i in range(2) for j in range(2)]).mean(0)
        add("nn_avg_pool2d", [xp_], ap.astype(np.float32), kernel=2, stride=2, padding=0)
        lg = r((5, 4), -3, 3)
        tg = rng.integers(0, 4, size=(5,)).astype(np.int32)
        l64 = lg.astype(np.float64)
        logp = l64 - np.log(np.exp(l64).sum(-1, keepdims=True))
        nllv = -logp[np.arange(5), tg]
        for ls in [0.0, 0.1]:
            add("loss_cross_entropy", [lg, tg], np.float32(((1 - ls) * nllv + ls * (-logp.mean(-1))).mean()), smoothing=ls)
        pr, tr = r((6, 3)), r((6, 3))
        p64, t64 = f64(pr, tr)
        d = np.abs(p64 - t64)
        add("loss_mse", [pr, tr], np.float32(((p64 - t64) ** 2).mean()))
        add("loss_l1", [pr, tr], np.float32(d.mean()))
        add("loss_huber", [pr, tr], np.float32(np.where(d <= 0.5, 0.5 * d * d, 0.5 * (d - 0.25)).mean()), delta=0.5)
        yb = (rng.random((6, 3)) < 0.5).astype(np.float32)
        add("loss_bce_logits", [pr, yb], np.float32((np.maximum(p64, 0) - p64 * yb + np.log1p(np.exp(-np.abs(p64)))).mean()))
        cos = (p64 * t64).sum(-1) / np.sqrt((p64 ** 2).sum(-1) * (t64 ** 2).sum(-1))
        add("loss_cosine", [pr, tr], np.float32((1 - cos).mean()))
        lq = np.log(np.exp(p64) / np.exp(p64).sum(-1, keepdims=True))
        lp = np.log(np.exp(t64) / np.exp(t64).sum(-1, keepdims=True))
        add("loss_kl", [lq.astype(np.float32), lp.astype(np.float32)], np.float32((np.exp(lp) * (lp - lq)).sum(-1).mean()))

    # linalg (float64 mostly; NumPy's LAPACK is the reference).
    with np.errstate(all="ignore"):
        A = r((2, 4, 4), dtype=np.float64) + 4 * np.eye(4)
        B = r((2, 4, 3), dtype=np.float64)
        add("linalg_solve", [A, B], np.linalg.solve(A, B))
        add("linalg_solve", [A[0], B[0, :, 0]], np.linalg.solve(A[0], B[0, :, 0]))
        add("linalg_inv", [A], np.linalg.inv(A))
        add("linalg_det", [A], np.linalg.det(A))
        sg, ld = np.linalg.slogdet(A - 4 * np.eye(4))
        add("linalg_slogdet", [A - 4 * np.eye(4)], np.stack([sg, ld]))
        S = A @ np.swapaxes(A, -1, -2) + np.eye(4)
        add("linalg_cholesky", [S], np.linalg.cholesky(S))
        add("linalg_cholesky_inv", [np.linalg.cholesky(S)], np.linalg.inv(S))
        # LU against MLX's (NumPy has none): the packed factors and swaps, and p, L, U.
        Lq = r((3, 5, 5))
        lf, piv = mx.linalg.lu_factor(mx.array(Lq), stream=mx.cpu)
        add("linalg_lu_factor", [Lq], np.concatenate([np.array(lf), np.array(piv)[..., None].astype(np.float32)], -1))
        # Small integers: equal pivot candidates everywhere (the first is taken, as LAPACK).
        Lt = rng.integers(-2, 3, (2, 4, 4)).astype(np.float32) + 5 * np.eye(4, dtype=np.float32)[::-1]
        lf, piv = mx.linalg.lu_factor(mx.array(Lt), stream=mx.cpu)
        add("linalg_lu_factor", [Lt], np.concatenate([np.array(lf), np.array(piv)[..., None].astype(np.float32)], -1))
        pp, ll, uu = mx.linalg.lu(mx.array(Lq), stream=mx.cpu)
        add("linalg_lu", [Lq], np.concatenate([np.array(pp)[..., None].astype(np.float32), np.array(ll), np.array(uu)], -1))
        add("linalg_eigvalsh", [S], np.linalg.eigvalsh(S))
        M = r((3, 5, 3), dtype=np.float64)
        add("linalg_svdvals", [M], np.linalg.svd(M, compute_uv=False))
        add("linalg_svdvals", [np.swapaxes(M, -1, -2)], np.linalg.svd(np.swapaxes(M, -1, -2), compute_uv=False))
        add("linalg_pinv", [M], np.linalg.pinv(M))
        for es in [(2, 0, 3), (3, 0)]:  # no singular values: an empty (or zero) pseudo-inverse
            E = r(es, dtype=np.float64)
            add("linalg_pinv", [E], np.linalg.pinv(E))
        T = np.tril(A[0])
        add("linalg_solve_triangular", [T, B[0]], np.linalg.solve(T, B[0]), lower=True)
        for o in [None, 1, 2, np.inf, -np.inf, 0, 3]:
            add("linalg_norm", [B], np.linalg.norm(B, ord=o, axis=-1), ord=o if o is None or np.isfinite(o) else ("inf" if o > 0 else "-inf"), matrix=False)
        for o in [None, 1, -1, 2, -2, np.inf, "nuc"]:
            add("linalg_norm", [M], np.linalg.norm(M, ord=o, axis=(-2, -1)), ord=o if o is None or o == "nuc" or np.isfinite(o) else "inf", matrix=True)
        ca, cb = r((4, 3)), r((1, 3))
        add("linalg_cross", [ca, cb], np.cross(ca, cb))
        Af = A.astype(np.float32)
        add("linalg_inv", [Af], np.linalg.inv(A).astype(np.float32))
        # General eigenvalues (complex pairs among them), sorted by real then imaginary part,
        # as (real, imaginary) pairs.
        G = r((2, 6, 6))
        ev = np.sort_complex(np.linalg.eigvals(G.astype(np.float64)))
        add("linalg_eigvals_sorted", [G], np.stack([ev.real, ev.imag], -1).astype(np.float32))
        # eigvals answers in complex64 (as MLX) whatever the input: a float64 input is compared
        # at the float32 tolerance.
        G64 = r((2, 5, 5), dtype=np.float64)
        ev = np.sort_complex(np.linalg.eigvals(G64))
        add("linalg_eigvals_sorted", [G64], np.stack([ev.real, ev.imag], -1).astype(np.float32))

        # float32 inputs: NumPy in float64 from the same float32 values, rounded once. The
        # factorizations run in float64 here too, one rounding apart; pinv, cholesky_inv and
        # the norms add a few float32 operations on top, which at these sizes and condition
        # numbers (near 10) stay well inside the float32 tolerance.
        def as32(*xs):
            return [np.asarray(v, np.float32) for v in xs]

        def up(*xs):
            return [np.asarray(v, np.float64) for v in xs]

        A32, B32, S32, M32 = as32(A, B, S, M)
        A6, B6, S6, M6 = up(A32, B32, S32, M32)
        add("linalg_solve", [A32, B32], np.linalg.solve(A6, B6).astype(np.float32))
        add("linalg_solve", [A32[1], B32[1, :, 2]], np.linalg.solve(A6[1], B6[1, :, 2]).astype(np.float32))
        add("linalg_det", [A32], np.linalg.det(A6).astype(np.float32))
        Z32 = as32(A - 4 * np.eye(4))[0]
        sg, ld = np.linalg.slogdet(up(Z32)[0])
        add("linalg_slogdet", [Z32], np.stack([sg, ld]).astype(np.float32))
        add("linalg_cholesky", [S32], np.linalg.cholesky(S6).astype(np.float32))
        L32 = as32(np.linalg.cholesky(S))[0]
        add("linalg_cholesky_inv", [L32], np.linalg.inv(up(L32)[0] @ np.swapaxes(up(L32)[0], -1, -2)).astype(np.float32))
        add("linalg_eigvalsh", [S32], np.linalg.eigvalsh(S6).astype(np.float32))
        add("linalg_svdvals", [M32], np.linalg.svd(M6, compute_uv=False).astype(np.float32))
        add("linalg_svdvals", [np.swapaxes(M32, -1, -2)], np.linalg.svd(np.swapaxes(M6, -1, -2), compute_uv=False).astype(np.float32))
        add("linalg_pinv", [M32], np.linalg.pinv(M6).astype(np.float32))
        for lower in [True, False]:
            tri_ = np.tril if lower else np.triu
            # The full matrix goes in: the other triangle must be ignored.
            add("linalg_solve_triangular", [A32, B32], np.linalg.solve(tri_(A6), B6).astype(np.float32), lower=lower)
            add("linalg_solve_triangular", [A, B], np.linalg.solve(tri_(A), B), lower=lower)
        for o in [None, 1, 2, np.inf, 3, 0.5, -1]:
            add("linalg_norm", [B32], np.linalg.norm(B6, ord=o, axis=-1).astype(np.float32), ord=o if o is None or np.isfinite(o) else "inf", matrix=False)
        for o in [None, 1, -2, np.inf, "nuc"]:
            add("linalg_norm", [M32], np.linalg.norm(M6, ord=o, axis=(-2, -1)).astype(np.float32), ord=o if o is None or o == "nuc" or np.isfinite(o) else "inf", matrix=True)
        # The orders the cases above leave out (negative and fractional p; matrix −∞).
        for o in [-1, -2, -0.5, 0.5, -np.inf]:
            add("linalg_norm", [B], np.linalg.norm(B, ord=o, axis=-1), ord=o if np.isfinite(o) else "-inf", matrix=False)
        add("linalg_norm", [M], np.linalg.norm(M, ord=-np.inf, axis=(-2, -1)), ord="-inf", matrix=True)
        ca6, cb6 = r((2, 1, 3), dtype=np.float64), r((4, 3), dtype=np.float64)
        add("linalg_cross", [ca6, cb6], np.cross(ca6, cb6))

        # LU in float64: NumPy has none (and SciPy is not a dependency), so LAPACK's unblocked
        # getrf written out (partial pivoting on the first largest |entry|), checked to
        # reconstruct A and to pivot as MLX does on the same matrices in float32.
        def getrf(a):
            a = a.copy()
            n = a.shape[-1]
            piv = np.zeros(n, np.int64)
            for k in range(n):
                p = k + int(np.argmax(np.abs(a[k:, k])))
                piv[k] = p
                a[[k, p]] = a[[p, k]]
                if a[k, k] != 0:
                    a[k + 1:, k] /= a[k, k]
                    a[k + 1:, k + 1:] -= np.outer(a[k + 1:, k], a[k, k + 1:])
            perm = np.arange(n)
            for k in range(n):
                perm[[k, piv[k]]] = perm[[piv[k], k]]
            lo, u = np.tril(a, -1) + np.eye(n), np.triu(a)
            p = np.argsort(perm)  # A = L[p] U
            return a, piv, p, lo, u

        Lq64 = r((3, 5, 5), dtype=np.float64)
        lus = [getrf(m_) for m_ in Lq64]
        for m_, (f_, piv_, p_, lo_, u_) in zip(Lq64, lus):
            assert np.allclose(lo_[p_] @ u_, m_, rtol=1e-12, atol=1e-12), "getrf does not reconstruct A"
            _, mpiv = mx.linalg.lu_factor(mx.array(m_.astype(np.float32)), stream=mx.cpu)
            assert (np.array(mpiv) == piv_).all(), "getrf pivots differently from MLX"
        add("linalg_lu_factor", [Lq64], np.stack([np.concatenate([f_, piv_[:, None].astype(np.float64)], -1) for f_, piv_, *_ in lus]))
        add("linalg_lu", [Lq64], np.stack([np.concatenate([p_[:, None].astype(np.float64), lo_, u_], -1) for _, _, p_, lo_, u_ in lus]))

        # QR, SVD and eigh against NumPy's factors. Signs are arbitrary: R's diagonal is made
        # non-negative (as ours is), each singular pair and eigenvector gets the sign that makes
        # its column's largest entry positive (the Rust side does the same to its own).
        def qr_ref(a):
            q, r_ = np.linalg.qr(a)
            d = np.where(np.diagonal(r_, axis1=-2, axis2=-1) < 0, -1.0, 1.0)
            q, r_ = q * d[..., None, :], r_ * d[..., :, None]
            b = a.shape[:-2]
            return np.concatenate([q.reshape(b + (-1,)), r_.reshape(b + (-1,))], -1)

        def col_signs(v):
            big = np.take_along_axis(v, np.argmax(np.abs(v), axis=-2)[..., None, :], -2)
            return np.where(big < 0, -1.0, 1.0)

        for qa in [r((2, 5, 3), dtype=np.float64), r((3, 5), dtype=np.float64), r((4, 4))]:
            add("linalg_qr", [qa], qr_ref(qa.astype(np.float64)).astype(qa.dtype))

        def orthogonal(b, n):
            return np.linalg.qr(rng.standard_normal(b + (n, n)))[0]

        # Separated singular values and eigenvalues (gaps of at least 0.5): the vectors are then
        # well conditioned, so float64 tolerances hold.
        for b, m_, n_, dt in [((2,), 5, 3, np.float64), ((), 3, 4, np.float64), ((2,), 4, 4, np.float32)]:
            k = min(m_, n_)
            sv = np.sort(np.arange(1, k + 1) + rng.uniform(0, 0.5, b + (k,)))[..., ::-1]
            a = (orthogonal(b, m_)[..., :k] * sv[..., None, :]) @ np.swapaxes(orthogonal(b, n_)[..., :k], -1, -2)
            a = a.astype(dt)
            u, s, vt = np.linalg.svd(a.astype(np.float64), full_matrices=False)
            sg = col_signs(u)
            u, vt = u * sg, vt * np.swapaxes(sg, -1, -2)
            add("linalg_svd", [a], np.concatenate([u.reshape(b + (-1,)), s, vt.reshape(b + (-1,))], -1).astype(dt))
        for b, n_, dt in [((2,), 5, np.float64), ((), 3, np.float64), ((3,), 4, np.float32)]:
            w = np.arange(n_) + rng.uniform(-1, -0.5, b + (n_,))
            q = orthogonal(b, n_)
            a = (q * w[..., None, :]) @ np.swapaxes(q, -1, -2)
            a = ((a + np.swapaxes(a, -1, -2)) / 2).astype(dt)
            w, v = np.linalg.eigh(a.astype(np.float64))
            v = v * col_signs(v)
            add("linalg_eigh", [a], np.concatenate([w, v.reshape(b + (-1,))], -1).astype(dt))

    # FFT: complex values travel as [..., 2] (real, imaginary) pairs of float32; NumPy computes
    # in complex128 from the same float32 values.
    def cpx(shape):
        zp = r(shape + (2,))
        return zp, zp[..., 0].astype(np.float64) + 1j * zp[..., 1]

    def pairs(z):
        return np.stack([z.real, z.imag], -1).astype(np.float32)

    zp, z = cpx((3, 8))
    for n, axis in [(None, -1), (5, -1), (12, 0), (None, 0)]:
        add("fft_fft", [zp], pairs(np.fft.fft(z, n=n, axis=axis)), n=n, axis=axis)
        add("fft_ifft", [zp], pairs(np.fft.ifft(z, n=n, axis=axis)), n=n, axis=axis)
    zp7, z7 = cpx((2, 7))
    add("fft_fft", [zp7], pairs(np.fft.fft(z7)), n=None, axis=-1)
    zp97, z97 = cpx((97,))
    add("fft_fft", [zp97], pairs(np.fft.fft(z97)), n=None, axis=-1)
    x, x7 = r((3, 10)), r((4, 7))
    for xx, n, axis in [(x, None, -1), (x, 7, -1), (x7, None, 0), (x7, 12, -1)]:
        add("fft_rfft", [xx], pairs(np.fft.rfft(xx.astype(np.float64), n=n, axis=axis)), n=n, axis=axis)
    yp, y = cpx((3, 6))
    for n, axis in [(None, -1), (11, -1), (10, -1), (4, 0)]:
        add("fft_irfft", [yp], np.fft.irfft(y, n=n, axis=axis).astype(np.float32), n=n, axis=axis)
    zp3, z3 = cpx((2, 4, 6))
    add("fft_fftn", [zp3], pairs(np.fft.fftn(z3)), s=None, axes=None)
    add("fft_fftn", [zp3], pairs(np.fft.fftn(z3, s=(3, 8), axes=(0, 2))), s=[3, 8], axes=[0, 2])
    add("fft_ifftn", [zp3], pairs(np.fft.ifftn(z3, axes=(1, 2))), s=None, axes=[1, 2])
    x3 = r((2, 4, 6))
    add("fft_rfftn", [x3], pairs(np.fft.rfftn(x3.astype(np.float64))), s=None, axes=None)
    add("fft_rfftn", [x3], pairs(np.fft.rfftn(x3.astype(np.float64), axes=(0, 1))), s=None, axes=[0, 1])
    add("fft_irfftn", [zp3], np.fft.irfftn(z3, axes=(1, 2)).astype(np.float32), s=None, axes=[1, 2])
    add("fft_irfftn", [zp3], np.fft.irfftn(z3, s=(4, 9), axes=(0, 2)).astype(np.float32), s=[4, 9], axes=[0, 2])
    add("fft_fftshift", [x3], np.fft.fftshift(x3), axes=None)
    add("fft_ifftshift", [x7], np.fft.ifftshift(x7, axes=(1,)), axes=[1])
    for n, d in [(8, 1.0), (7, 0.5)]:
        add("fft_fftfreq", [], np.fft.fftfreq(n, d).astype(np.float32), n=n, d=d)
        add("fft_rfftfreq", [], np.fft.rfftfreq(n, d).astype(np.float32), n=n, d=d)
    # The 2-D transforms (NumPy's default axes are the last two; s and axes as it takes them).
    zp4, z4 = cpx((2, 4, 6))
    x4 = r((2, 4, 6))
    for s, ax in [(None, None), ((3, 8), None), (None, (0, 2)), ((5, 4), (2, 0))]:
        kw = {"s": None if s is None else list(s), "axes": None if ax is None else list(ax)}
        ax = ax or (-2, -1)
        add("fft_fft2", [zp4], pairs(np.fft.fft2(z4, s=s, axes=ax)), **kw)
        add("fft_ifft2", [zp4], pairs(np.fft.ifft2(z4, s=s, axes=ax)), **kw)
        add("fft_rfft2", [x4], pairs(np.fft.rfft2(x4.astype(np.float64), s=s, axes=ax)), **kw)
    for s, ax in [(None, None), ((4, 9), None), ((3, 5), (0, 1)), (None, (2, 1))]:
        kw = {"s": None if s is None else list(s), "axes": None if ax is None else list(ax)}
        add("fft_irfft2", [zp4], np.fft.irfft2(z4, s=s, axes=ax or (-2, -1)).astype(np.float32), **kw)
    # float64 input: taken as float32 (complex64 for fft), as MLX does, so NumPy's float64
    # answer is compared at the float32 tolerance. fftshift is a roll and stays float64.
    x64 = r((3, 10), dtype=np.float64)
    add("fft_rfft", [x64], pairs(np.fft.rfft(x64)), n=None, axis=-1)
    add("fft_rfft", [x64], pairs(np.fft.rfft(x64, n=7, axis=0)), n=7, axis=0)
    add("fft_fft", [x64], pairs(np.fft.fft(x64, axis=0)), n=None, axis=0, real_input=True)
    add("fft_rfftn", [x64], pairs(np.fft.rfftn(x64)), s=None, axes=None)
    add("fft_rfft2", [x64], pairs(np.fft.rfft2(x64, s=(4, 6))), s=[4, 6], axes=None)
    add("fft_fftshift", [x64], np.fft.fftshift(x64, axes=(1,)), axes=[1])
    add("fft_ifftshift", [x64], np.fft.ifftshift(x64), axes=None)
    # complex64 arithmetic, and abs and sum of complex arrays.
    ap, a_ = cpx((3, 4))
    bp, b_ = cpx((1, 4))
    add("complex_multiply", [ap, bp], pairs(a_ * b_))
    add("complex_add", [ap, bp], pairs(a_ + b_))
    add("complex_abs", [ap], np.abs(a_).astype(np.float32))
    add("complex_sum", [ap], pairs(np.sum(a_, axis=0)))
    add("complex_negative", [ap], pairs(-a_))
    add("complex_divide", [ap, bp], pairs(a_ / b_))
    for name_, f_ in [("sqrt", np.sqrt), ("log", np.log), ("sin", np.sin), ("cos", np.cos),
                      ("square", np.square), ("reciprocal", np.reciprocal), ("tan", np.tan),
                      ("sinh", np.sinh), ("cosh", np.cosh), ("tanh", np.tanh), ("exp2", np.exp2),
                      ("expm1", np.expm1), ("log2", np.log2), ("log10", np.log10),
                      ("log1p", np.log1p), ("rsqrt", lambda z: 1 / np.sqrt(z)), ("sign", np.sign),
                      ("arcsin", np.arcsin), ("arccos", np.arccos), ("arctan", np.arctan),
                      ("arcsinh", np.arcsinh), ("arccosh", np.arccosh), ("arctanh", np.arctanh)]:
        add("complex_unary", [ap], pairs(f_(a_)), name=name_)
    # Near 0, where expm1 and log1p must not cancel.
    sp, s_ = cpx((2, 3))
    sp *= 1e-4
    s_ = sp[..., 0].astype(np.float64) + 1j * sp[..., 1]
    for name_, f_ in [("expm1", np.expm1), ("log1p", np.log1p)]:
        add("complex_unary", [sp], pairs(f_(s_)), name=name_)
    add("complex_power", [ap, bp], pairs(a_ ** b_))
    zp = ap.copy()
    zp[0, :2] = 0.0  # NumPy's values at a zero base
    wp = np.broadcast_to(bp, zp.shape).copy()
    wp[0, 0] = 0.0
    wp[0, 1] = [1.5, 0.0]
    z_ = zp[..., 0].astype(np.float64) + 1j * zp[..., 1]
    w_ = wp[..., 0].astype(np.float64) + 1j * wp[..., 1]
    add("complex_power", [zp, wp], pairs(z_ ** w_))
    add("complex_angle", [ap], np.angle(a_).astype(np.float32))
    add("complex_exp", [ap], pairs(np.exp(a_)))
    add("complex_mean", [ap], pairs(np.mean(a_, axis=1)))
    mp, m_ = cpx((2, 4, 3))
    add("complex_matmul", [ap, mp], pairs(a_ @ m_))
    cp = ap.copy()
    cp[0, :2, 1] += 1.0  # equal real parts, different imaginary ones
    cp[1, 1, 0] -= 0.5
    cc = cp[..., 0].astype(np.float64) + 1j * cp[..., 1]
    add("complex_equal", [ap, cp], a_ == cc)
    add("complex_not_equal", [ap, cp], a_ != cc)

    # Transformer stacks, batch norm and the bilinear layer: MLX's own layers are the reference
    # (their parameters go out by name, so the Rust side must match MLX's structure).
    import mlx.nn as mnn
    from mlx.utils import tree_flatten
    mx.random.seed(int(rng.integers(0, 2**31)))
    for nf in [True, False]:
        tx, mem = r((2, 5, 16)), r((2, 7, 16))
        causal = mnn.MultiHeadAttention.create_additive_causal_mask(5)
        tenc = mnn.TransformerEncoder(num_layers=2, dims=16, num_heads=4, mlp_dims=24, norm_first=nf)
        tenc.eval()
        names, vals = zip(*[(k, np.array(v)) for k, v in tree_flatten(tenc.parameters())])
        add("nn_transformer_encoder", [tx, *vals], np.array(tenc(mx.array(tx), causal)), names=list(names), norm_first=nf)
        dec = mnn.TransformerDecoder(num_layers=2, dims=16, num_heads=4, mlp_dims=24, norm_first=nf)
        dec.eval()
        names, vals = zip(*[(k, np.array(v)) for k, v in tree_flatten(dec.parameters())])
        want = np.array(dec(mx.array(tx), mx.array(mem), causal, None))
        add("nn_transformer_decoder", [tx, mem, *vals], want, names=list(names), norm_first=nf)
    bn = mnn.BatchNorm(6, momentum=0.3)
    bx = [r((4, 3, 6)) for _ in range(2)]
    train_out = [np.array(bn(mx.array(v))) for v in bx]
    bn.eval()
    eval_out = np.array(bn(mx.array(bx[0])))
    add("nn_batch_norm", [bx[0], bx[1]], np.stack([*train_out, eval_out, np.broadcast_to(np.array(bn.running_var), eval_out.shape)]))
    for name_, layer, xs_ in [("nn_conv3d", mnn.Conv3d(2, 3, 2, stride=1, padding=1), (1, 4, 4, 3, 2)),
                              ("nn_conv_transpose1d", mnn.ConvTranspose1d(3, 2, 3, stride=2, padding=1), (2, 5, 3)),
                              ("nn_conv_transpose2d", mnn.ConvTranspose2d(3, 2, 3, stride=2, padding=1), (2, 4, 5, 3)),
                              ("nn_conv_transpose3d", mnn.ConvTranspose3d(2, 2, 2, stride=2, padding=0), (1, 3, 2, 3, 2))]:
        cx_ = r(xs_)
        add(name_, [cx_, np.array(layer.weight), np.array(layer.bias)], np.array(layer(mx.array(cx_))),
            stride=layer.stride[0] if isinstance(layer.stride, tuple) else layer.stride,
            padding=layer.padding[0] if isinstance(layer.padding, tuple) else layer.padding)
    bl_ = mnn.Bilinear(5, 3, 4)
    b1, b2 = r((2, 3, 5)), r((2, 3, 3))
    add("nn_bilinear", [b1, b2, np.array(bl_.weight), np.array(bl_.bias)], np.array(bl_(mx.array(b1), mx.array(b2))))

    import mlx.optimizers as mo
    # Two parameters, a matrix "w" and a vector "b" (Adafactor factors only the first, Muon
    # orthogonalizes only the first), three steps each.
    optims = []
    p0, q0 = r((3, 4)), r((5,))
    gs = [(r((3, 4)), r((5,))) for _ in range(3)]
    for name, make in [("sgd", lambda: mo.SGD(0.1)), ("sgd_momentum", lambda: mo.SGD(0.1, momentum=0.9, weight_decay=0.01)),
                       ("sgd_nesterov", lambda: mo.SGD(0.1, momentum=0.9, nesterov=True)),
                       ("adam", lambda: mo.Adam(0.01, bias_correction=True)), ("adam_mlx", lambda: mo.Adam(0.01)),
                       ("adamw", lambda: mo.AdamW(0.01, weight_decay=0.1, bias_correction=True)),
                       ("adamax_mlx", lambda: mo.Adamax(0.01)), ("adagrad", lambda: mo.Adagrad(0.1)),
                       ("rmsprop", lambda: mo.RMSprop(0.01)), ("lion", lambda: mo.Lion(0.01, weight_decay=0.1)),
                       ("adafactor", lambda: mo.Adafactor()),
                       ("adafactor_b1", lambda: mo.Adafactor(0.01, relative_step=False, beta_1=0.9, weight_decay=0.1)),
                       ("muon", lambda: mo.Muon(0.02)), ("muon_plain", lambda: mo.Muon(0.02, nesterov=False, weight_decay=0.0))]:
        opt = make()
        params = {"w": mx.array(p0), "b": mx.array(q0)}
        traj, qtraj = [], []
        for g, h in gs:
            params = opt.apply_gradients({"w": mx.array(g), "b": mx.array(h)}, params)
            traj.append(np.array(params["w"]).ravel().tolist())
            qtraj.append(np.array(params["b"]).ravel().tolist())
        optims.append({"name": name, "p0": p0.ravel().tolist(), "grads": [g.ravel().tolist() for g, _ in gs], "after": traj,
                       "q0": q0.tolist(), "qgrads": [h.tolist() for _, h in gs], "qafter": qtraj})

    # Type promotion: NumPy 2's result_type over the standard types (uint64 with a signed type
    # is left out: MLX and Strata give float32 there, NumPy float64).
    types = ["bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "float16", "float32", "float64"]
    promo = [[a, b, str(np.result_type(a, b))] for a in types for b in types]

    # Random numbers: MLX's Threefry keys, splits, uniforms and normals for random seeds.
    rand = []
    cat_logits = [[0.1, 1.5, -0.3, 0.8], [2.0, -1.0, 0.0, 0.5]]
    for sd in [0, int(rng.integers(0, 2**32)), int(rng.integers(2**32, 2**63))]:
        k = mx.random.key(sd)
        rand.append({
            "seed": sd,
            "split": np.array(mx.random.split(k, 3)).ravel().tolist(),
            "uniform": np.array(mx.random.uniform(-2.0, 3.0, shape=(2, 7), key=k)).ravel().tolist(),
            "normal": np.array(mx.random.normal(shape=(9,), key=k)).ravel().tolist(),
            "permutation": np.array(mx.random.permutation(12, key=k)).ravel().tolist(),
            "gumbel": np.array(mx.random.gumbel(shape=(7,), key=k)).ravel().tolist(),
            "truncated_normal": np.array(mx.random.truncated_normal(-0.5, 1.5, shape=(9,), key=k)).ravel().tolist(),
            "categorical": np.array(mx.random.categorical(mx.array(cat_logits), axis=-1, num_samples=5, key=k)).ravel().tolist(),
        })

    # Files written by Python's safetensors and NumPy, for the Rust loader (tests/nn.rs).
    from safetensors.numpy import save_file
    iod = os.path.join(args.out, "io")
    os.makedirs(iod, exist_ok=True)
    tensors = {
        "weight": r((3, 4)), "bias16": r((5,)).astype(np.float16), "ids": rng.integers(-9, 9, (2, 3)).astype(np.int64),
        "flags": rng.random((4,)) < 0.5, "counts": rng.integers(0, 200, (6,)).astype(np.uint8), "d": r((2, 2), dtype=np.float64),
        "scalar": np.array(2.5, np.float32),
    }
    save_file(tensors, os.path.join(iod, "from_python.safetensors"))
    for k, v in tensors.items():
        np.save(os.path.join(iod, k + ".npy"), v)
    np.savez(os.path.join(iod, "from_python.npz"), **tensors)
    np.savez_compressed(os.path.join(iod, "from_python_compressed.npz"), **tensors)
    with open(os.path.join(iod, "values.json"), "w") as f:
        json.dump({k: {"dtype": str(v.dtype), "shape": list(v.shape), "data": v.astype(np.float64).ravel().tolist()}
                   for k, v in tensors.items()}, f)

    os.makedirs(os.path.join(args.out, "arrays"), exist_ok=True)
    with open(os.path.join(args.out, "arrays", "cases.json"), "w") as f:
        json.dump({"seed": args.seed, "numpy": np.__version__, "cases": cases, "promotion": promo, "random": rand,
                   "optimizers": optims}, f)
    with open(os.path.join(args.out, "arrays", "manifest.json"), "w") as f:
        json.dump({"seed": args.seed, "cases": len(cases)}, f)
    print(f"arrays: {len(cases)} cases, {len(promo)} promotion pairs")


if __name__ == "__main__":
    main()

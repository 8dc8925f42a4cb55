#!/usr/bin/env python3
"""Reference vectors for Strata's quantization, from two independent implementations.

OUT/quant/mlx/: mlx.core.quantize / dequantize (mlx[cpu]) for the affine mode (every bits,
group size and weight dtype MLX supports), mxfp4, mxfp8 and nvfp4 (with and without a global
scale). Each case stores the input, MLX's packed words, scales, biases and dequantized values.

OUT/quant/gfloat/: MX block encodes by gfloat, Graphcore's independent implementation of the
OCP MX v1.0 rule (scale 2^(floor(log2 amax) - emax), RNE, saturate), for every MX element
format: the E8M0 scale code and element codes of each 32-element block.

The inputs mix rows of very different magnitudes, outliers, all-zero blocks and values placed
exactly on rounding ties, so that every rounding decision of the algorithms is exercised.
"""
import argparse
import json
import pathlib

import mlx.core as mx
import numpy as np
from gfloat import block as gblock
from gfloat import RoundMode
from gfloat import formats as gformats


def weights(rng, rows, cols, lo=-4, hi=4):
    """Random rows spanning magnitudes 10^lo..10^hi, with outliers, zero blocks and ties."""
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    x *= (10.0 ** rng.uniform(lo, hi, size=(rows, 1))).astype(np.float32)
    outliers = rng.random((rows, cols)) < 0.01
    x[outliers] *= 20
    x[0, :32] = 0.0  # an all-zero block (32 covers one block of every mode)
    # A row of exact ties: multiples of 1/4 up to 6 scaled by a power of two, so the
    # scaled values land on FP4/FP8 midpoints and on affine half-steps.
    ties = rng.integers(-24, 25, size=cols).astype(np.float32) / 4
    ties[::16] = 6.0
    x[1] = ties * np.float32(2.0 ** rng.integers(-10, 10))
    return x


def save(d, name, arr):
    np.save(d / f"{name}.npy", np.ascontiguousarray(arr))


def raw_bits(a):
    """An MLX array's values as unsigned ints of their width (bit-exact comparisons)."""
    a = np.array(a.astype(mx.float32)) if a.dtype == mx.bfloat16 else np.array(a)
    return a


def mlx_cases(out, rng):
    d = out / "mlx"
    d.mkdir(parents=True, exist_ok=True)
    cases = []
    # Up to ~1e4 so that the float16 copies stay finite.
    x32 = weights(rng, 16, 256, lo=-4, hi=2.5)
    save(d, "x", x32)
    dtypes = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
    for bits in [1, 2, 3, 4, 5, 6, 8]:
        for group in [32, 64, 128]:
            for dname, dt in dtypes.items():
                w = mx.array(x32).astype(dt)
                wq, scales, biases = mx.quantize(w, group_size=group, bits=bits, mode="affine")
                name = f"affine_{bits}_{group}_{dname}"
                save(d, name + ".wq", np.array(wq))
                # Scales and biases as f32 (exact for every dtype) to compare values bit for bit.
                save(d, name + ".scales", np.array(scales.astype(mx.float32)))
                save(d, name + ".biases", np.array(biases.astype(mx.float32)))
                case = {"name": name, "mode": f"affine:{bits}:{group}:{dname}", "input_dtype": dname}
                if dname == "float32":
                    deq = mx.dequantize(wq, scales, biases, group_size=group, bits=bits, mode="affine")
                    save(d, name + ".deq", np.array(deq))
                    case["dequantized"] = True
                cases.append(case)
    w = mx.array(x32)
    amax = float(np.abs(x32).max())
    fp_cases = [
        ("mxfp4", "mxfp4+mlx", {}),
        ("mxfp8", "mxfp8+mlx", {}),
        ("nvfp4", "nvfp4+mlx", {}),
        ("nvfp4_global", "nvfp4+mlx", {"global_scale": mx.array(amax, dtype=mx.float32)}),
    ]
    for name, mode, kw in fp_cases:
        mlx_mode = name.split("_")[0]
        wq, scales = mx.quantize(w, mode=mlx_mode, **kw)
        deq = mx.dequantize(wq, scales, mode=mlx_mode, dtype=mx.float32, **kw)
        save(d, name + ".wq", np.array(wq))
        save(d, name + ".scales", np.array(scales))
        save(d, name + ".deq", np.array(deq))
        case = {"name": name, "mode": mode, "input_dtype": "float32", "dequantized": True}
        if kw:
            case["global_scale"] = amax
        cases.append(case)
    return {"mlx": mx.__version__, "shape": list(x32.shape), "cases": cases}


GFLOAT_FORMATS = {
    "mxfp8": gformats.format_info_mxfp8_e4m3,
    "mxfp8_e5m2": gformats.format_info_mxfp8_e5m2,
    "mxfp6_e3m2": gformats.format_info_mxfp6_e3m2,
    "mxfp6_e2m3": gformats.format_info_mxfp6_e2m3,
    "mxfp4": gformats.format_info_mxfp4_e2m1,
    "mxint8": gformats.format_info_mxint8,
}


def gfloat_cases(out, rng, blocks):
    d = out / "gfloat"
    d.mkdir(parents=True, exist_ok=True)
    x = weights(rng, blocks // 8, 256).reshape(-1, 32)
    # f32 subnormals and the extremes of the f32 range, one block each.
    x[2] = (rng.standard_normal(32) * 1e-40).astype(np.float32)
    x[3] = (rng.standard_normal(32) * 1e37).astype(np.float32)
    save(d, "x", x)
    cases = []
    for mode, fi in GFLOAT_FORMATS.items():
        scale_codes, elem_codes = [], []
        for vals in x.astype(np.float64):
            scale = gblock.compute_scale_amax(fi.etype.emax, vals)
            codes = list(gblock.encode_block(fi, scale, vals / scale, RoundMode.TiesToEven))
            scale_codes.append(codes[0])
            elem_codes.append(codes[1:])
        save(d, f"{mode}.scales", np.array(scale_codes, dtype=np.uint8))
        save(d, f"{mode}.codes", np.array(elem_codes, dtype=np.uint8))
        cases.append({"name": mode, "mode": mode})
    return {"blocks": int(x.shape[0]), "cases": cases}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="target/refs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gfloat-blocks", type=int, default=512)
    args = ap.parse_args()
    out = pathlib.Path(args.out) / "quant"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    manifest = {"seed": args.seed, "mlx": mlx_cases(out, rng), "gfloat": gfloat_cases(out, rng, args.gfloat_blocks)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    n = len(manifest["mlx"]["cases"]) + len(manifest["gfloat"]["cases"])
    print(f"quant: {n} cases (mlx {mx.__version__}, gfloat), seed {args.seed} -> {out}")


if __name__ == "__main__":
    main()

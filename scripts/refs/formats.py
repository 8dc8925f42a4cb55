#!/usr/bin/env python3
"""Reference vectors for Strata's element formats, from ml_dtypes (and NumPy for float16).

For every format of 16 bits or fewer this writes, under OUT/formats/:
  NAME.decode.npy      the f32 bit pattern of every code, in code order (uint32)
  NAME.encode_in.npy   f32 bit patterns to convert (uint32)
  NAME.encode_out.npy  the code each one converts to (uint8 / uint16)

The inputs are every f32 within 64 ulps of each representable value and of each midpoint
between neighbours (where the rounding decisions are), every f32 within 2^16 ulps of the
overflow threshold and of the underflow threshold, special values and NaN payloads, 1M
uniformly random bit patterns and 1M random values spread log-uniformly over the format's
range. A manifest.json lists the formats with their bit widths and the seed.
"""
import argparse
import json
import pathlib

import ml_dtypes
import numpy as np

FORMATS = {
    # name: (numpy dtype, bits)
    "float8_e4m3fn": (ml_dtypes.float8_e4m3fn, 8),
    "float8_e5m2": (ml_dtypes.float8_e5m2, 8),
    "float6_e3m2fn": (ml_dtypes.float6_e3m2fn, 6),
    "float6_e2m3fn": (ml_dtypes.float6_e2m3fn, 6),
    "float4_e2m1fn": (ml_dtypes.float4_e2m1fn, 4),
    "float8_e8m0fnu": (ml_dtypes.float8_e8m0fnu, 8),
    "int4": (ml_dtypes.int4, 4),
    "uint4": (ml_dtypes.uint4, 4),
    "int2": (ml_dtypes.int2, 2),
    "uint2": (ml_dtypes.uint2, 2),
    "float16": (np.float16, 16),
    "bfloat16": (ml_dtypes.bfloat16, 16),
}

SPECIALS = np.array(
    [0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001,
     0xFF800001, 0x7FA00000, 0x7F812345, 0x7FFFFFFF, 0xFFFFFFFF, 0x7F7FFFFF, 0xFF7FFFFF,
     0x00000001, 0x80000001, 0x007FFFFF, 0x00800000, 0x3F800000, 0xBF800000],
    dtype=np.uint32,
)


def code_view(arr, dtype, bits):
    """The codes of an array of `dtype`, as unsigned ints of the right width."""
    raw = arr.view(np.uint16 if bits == 16 else np.uint8)
    return raw & ((1 << bits) - 1) if bits < 8 else raw


def all_codes(dtype, bits):
    codes = np.arange(1 << bits, dtype=np.uint16 if bits == 16 else np.uint8)
    return codes.view(dtype)


def around(bits_u32, radius):
    """Every f32 bit pattern within `radius` ulps of each given positive pattern, both signs."""
    offsets = np.arange(-radius, radius + 1, dtype=np.int64)
    pats = (bits_u32.astype(np.int64)[:, None] + offsets[None, :]).ravel()
    pats = pats[(pats >= 0) & (pats < 0x7F800000)].astype(np.uint32)
    return np.concatenate([pats, pats | np.uint32(0x80000000)])


def inputs_for(dtype, bits, rng):
    values = all_codes(dtype, bits).astype(np.float32)
    finite = np.unique(np.abs(values[np.isfinite(values)]))
    mids = ((finite[1:].astype(np.float64) + finite[:-1]) / 2).astype(np.float32)
    radius = 64 if bits <= 8 else 4
    edge = around(np.concatenate([finite, mids]).view(np.uint32), radius)
    vmax, vmin = finite.max(), finite[finite > 0].min()
    # Overflow threshold: half an ulp of the top binade above max; underflow: half the smallest.
    top_ulp = vmax - finite[-2] if len(finite) > 1 else vmax
    thresholds = np.array([vmax + top_ulp / 2, vmin / 2, vmax * 2, vmin / 4], dtype=np.float32)
    sweep = around(thresholds.view(np.uint32), 1 << 16 if bits <= 8 else 1 << 12)
    random_bits = rng.integers(0, 1 << 32, size=1 << 20, dtype=np.uint64).astype(np.uint32)
    lo, hi = np.log2(max(float(vmin) / 8, 1e-45)), np.log2(float(vmax) * 4)
    in_range = (2.0 ** rng.uniform(lo, hi, size=1 << 20)).astype(np.float32)
    in_range *= rng.choice(np.array([-1, 1], dtype=np.float32), size=in_range.size)
    return np.concatenate([SPECIALS, edge, sweep, random_bits, in_range.view(np.uint32)])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="target/refs")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = pathlib.Path(args.out) / "formats"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    manifest = {"seed": args.seed, "ml_dtypes": ml_dtypes.__version__, "numpy": np.__version__, "formats": {}}
    with np.errstate(invalid="ignore", over="ignore"):
        for name, (dtype, bits) in FORMATS.items():
            decoded = all_codes(dtype, bits).astype(np.float32).view(np.uint32)
            np.save(out / f"{name}.decode.npy", decoded)
            inputs = inputs_for(dtype, bits, rng)
            encoded = code_view(inputs.view(np.float32).astype(dtype), dtype, bits)
            np.save(out / f"{name}.encode_in.npy", inputs)
            np.save(out / f"{name}.encode_out.npy", encoded)
            manifest["formats"][name] = {"bits": bits, "encode_cases": int(inputs.size)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    total = sum(f["encode_cases"] for f in manifest["formats"].values())
    print(f"formats: {len(FORMATS)} formats, {total} encode cases, seed {args.seed} -> {out}")


if __name__ == "__main__":
    main()

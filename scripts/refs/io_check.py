#!/usr/bin/env python3
"""Reads the files the Rust test `files_round_trip_bit_exactly_and_bad_files_are_errors` wrote
(STRATA_IO_EXPORT) with Python's safetensors and NumPy, and checks every value: arrays of
each type, and a model's parameter file under its dotted names, byte for byte."""
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file


def main():
    d = sys.argv[1]
    want = json.load(open(os.path.join(d, "from_rust.json")))
    got = load_file(os.path.join(d, "from_rust.safetensors"))
    assert set(got) == set(want), (sorted(got), sorted(want))
    for name, w in want.items():
        a = got[name]
        assert str(a.dtype) == w["dtype"], (name, a.dtype, w["dtype"])
        assert list(a.shape) == w["shape"], (name, a.shape, w["shape"])
        assert np.array_equal(a.astype(np.float64).ravel(), np.array(w["data"], np.float64), equal_nan=True), name
    npy = np.load(os.path.join(d, "from_rust.npy"))
    w = want["x_float32"]
    assert str(npy.dtype) == "float32" and list(npy.shape) == w["shape"], (npy.dtype, npy.shape)
    assert np.array_equal(npy.astype(np.float64).ravel(), np.array(w["data"], np.float64)), "from_rust.npy"
    with np.load(os.path.join(d, "from_rust.npz")) as z:
        assert set(z.files) == set(want), (sorted(z.files), sorted(want))
        for name, w in want.items():
            a = z[name]
            assert str(a.dtype) == w["dtype"] and list(a.shape) == w["shape"], (name, a.dtype, a.shape)
            assert np.array_equal(a.astype(np.float64).ravel(), np.array(w["data"], np.float64), equal_nan=True), name
    # A module's parameters: the names Rust's tree gives them, each tensor's bytes as written.
    mwant = json.load(open(os.path.join(d, "module.json")))
    module = load_file(os.path.join(d, "module.safetensors"))
    assert set(module) == set(mwant), (sorted(module), sorted(mwant))
    assert "layers.1.layers.0.weight" in module, sorted(module)
    for name, w in mwant.items():
        a = module[name]
        assert str(a.dtype) == w["dtype"] and list(a.shape) == w["shape"], (name, a.dtype, a.shape, w)
        assert np.ascontiguousarray(a).tobytes().hex() == w["hex"], name
    print(f"io: {len(want)} tensors, one .npy, a compressed .npz and a module's {len(mwant)} parameters written by Rust "
          f"read by safetensors and NumPy {np.__version__}: equal")


if __name__ == "__main__":
    main()

"""Inputs and dense oracles shared by the simulator tests."""

from __future__ import annotations

import numpy as np


DTYPES = ("float32", "float64", "float16", "uint8", "uint16", "int16")
ALIGNS = ("center", "left", "corners")


def random_array(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Fresh values over the dtype's range (integers) or around [-50, 300) (floats)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return rng.integers(info.min, int(info.max) + 1, size=shape).astype(dtype)
    return (rng.random(shape) * 350 - 50).astype(dtype)

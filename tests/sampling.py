"""Test inputs shared by the CPU test modules."""

import numpy as np


def sample(rng: np.random.Generator, shape: tuple[int, ...], dtype) -> np.ndarray:
    """Random values of ``dtype``: normal * 10 for floats, the whole range for integers."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return (rng.standard_normal(shape) * 10).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)

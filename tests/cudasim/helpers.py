"""Inputs and dense oracles shared by the simulator tests."""

from __future__ import annotations

import numpy as np

from fastinterp import reference

DTYPES = ("float32", "float64", "float16", "uint8", "uint16", "int16")
ALIGNS = ("center", "left", "corners")


def random_array(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Fresh values over the dtype's range (integers) or around [-50, 300) (floats)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return rng.integers(info.min, int(info.max) + 1, size=shape).astype(dtype)
    return (rng.random(shape) * 350 - 50).astype(dtype)


def interpolation_matrix(in_size: int, out_size: int, align: str) -> np.ndarray:
    """Dense (out, in) float64 matrix of one axis, from the reference's taps."""
    matrix = np.zeros((out_size, in_size))
    for d in range(out_size):
        i0, i1, w = reference.taps(d, in_size, out_size, align)
        matrix[d, i0] += 1.0 - w
        matrix[d, i1] += w
    return matrix


def dense_adjoint(grad_out: np.ndarray, in_h: int, in_w: int, align: str) -> np.ndarray:
    """The transpose of the interpolation applied to (..., OH, OW): M_y^T g M_x, in float64."""
    rows = interpolation_matrix(in_h, grad_out.shape[-2], align)
    cols = interpolation_matrix(in_w, grad_out.shape[-1], align)
    return np.einsum("yi,...ij,jx->...yx", rows.T, grad_out.astype(np.float64), cols)

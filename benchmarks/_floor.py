"""The memory floor: the time to write an output of a given size with every thread.

No resize can finish faster than it can write its output, so a parallel fill of an array of
the output's size and dtype is the yardstick the kernels are measured against.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: Elements per parallel task: big enough to amortise scheduling, small enough to balance.
_BLOCK = 1 << 16


@njit(parallel=True, cache=True)
def _fill_blocks(flat, value, block_size):
    n_blocks = (flat.size + block_size - 1) // block_size
    for block in prange(n_blocks):
        start = block * block_size
        # A loop over the block's own view: indexing ``flat`` from ``start`` kept 8-bit
        # stores from vectorising (a uint8 fill ran 4-6x slower than numpy's).
        part = flat[start : min(start + block_size, flat.size)]
        for i in range(part.size):
            part[i] = value


def fill(out: np.ndarray) -> np.ndarray:
    """Write 1 into every element of the C-contiguous array ``out`` with all numba threads."""
    _fill_blocks(out.reshape(-1), out.dtype.type(1), _BLOCK)
    return out


def empty_and_fill(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A fresh array filled in parallel: the floor for methods that allocate their output."""
    return fill(np.empty(shape, dtype))

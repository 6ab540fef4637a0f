"""The memory floor: the time to write an output of a given size with every thread.

No resize can finish faster than it can write its output, so a parallel fill of an array of
the output's size and dtype is the yardstick the kernels are measured against. The fill uses
ordinary stores, which read each line for ownership before writing it; fastinterp writes a
large ``out=`` in streaming stores, which do not, so it can beat that fill:
:func:`streaming_fill` is the floor for those.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastinterp import _cpu

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


@njit(parallel=True, cache=True)
def _streaming_fill_blocks(flat, vector, block_size):
    lanes, value = vector.size, vector[0]
    n_blocks = (flat.size + block_size - 1) // block_size
    for block in prange(n_blocks):
        start = block * block_size
        count = min(block_size, flat.size - start)
        head, body_stop = _cpu._aligned_span(flat, start, count, lanes)
        for i in range(start, start + head):
            _cpu._stream_scalar(flat, i, value)
        for i in range(start + head, start + body_stop, lanes):
            _cpu._stream_vector(flat, i, vector, 0, 0, value, value)  # one row: the vector itself
        for i in range(start + body_stop, start + count):
            _cpu._stream_scalar(flat, i, value)
        _cpu._store_fence()


def streaming_fill(out: np.ndarray) -> np.ndarray:
    """Write 1 into every element of the C-contiguous float array ``out`` with all numba threads,
    in streaming stores, as fastinterp writes a large ``out=`` (see :data:`fastinterp._cpu.STREAM_BYTES`)."""
    if out.dtype.kind != "f" or not (out.flags.c_contiguous and out.flags.aligned):
        raise TypeError(f"a streaming fill writes C-contiguous, aligned float arrays, not {out.dtype} {out.flags}")
    vector = np.ones(_cpu.VECTOR_BYTES // out.itemsize, out.dtype)
    _streaming_fill_blocks(out.reshape(-1), vector, _BLOCK)
    return out

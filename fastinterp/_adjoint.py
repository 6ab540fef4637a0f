"""CPU adjoint of bilinear resize: the gradient with respect to the input.

The forward reads, for every output pixel, two input rows and two input columns. Its
adjoint could scatter each output gradient back to those four input pixels, but scattered
adds from several threads need atomics and give a run-to-run varying sum. Here every input
pixel instead *gathers* from the output pixels that read it, so each input pixel is
written by exactly one task, in a fixed order: no atomics, bit-identical results.

Which output pixels read an input index is the inverse of the per-axis tables of
:mod:`fastinterp._coords`, kept in CSR form (:class:`InverseTaps`). Each task owns one
plane and a block of input rows, and makes two passes of the same weighted row gather:

1. vertical: for each input row, the weighted sum of the output-gradient rows that read
   it (whole contiguous rows, so the inner loop vectorises), stored as one column of a
   transposed scratch block;
2. horizontal: for each input column, the weighted sum of the scratch rows (output
   columns) that read it, over all the task's rows at once.

Gathering the horizontal pass one scalar at a time would chain every add on the previous
one; over the transposed block the adds are independent and vectorise.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from ._api import schedule
from ._coords import axis_taps
from ._threads import parallel_launch


class InverseTaps(NamedTuple):
    """For input index ``i`` along one axis: ``outputs[start[i]:start[i + 1]]`` are the output
    indices that read it and ``weights[...]`` the weights they read it with."""

    start: np.ndarray  # int64, length in_size + 1
    outputs: np.ndarray  # int64, increasing within each input index
    weights: np.ndarray  # compute dtype


@lru_cache(maxsize=256)
def inverse_axis_taps(in_size: int, out_size: int, align: str, dtype: np.dtype) -> InverseTaps:
    """The transpose of :func:`fastinterp._coords.axis_taps` in CSR form.

    Built from the float64 tables and cast once, so the adjoint uses the same weights the
    forward does. Where an edge is clamped (``first == second``) the output index appears
    twice, once for each weight, exactly as the forward reads it twice.
    """
    taps = axis_taps(in_size, out_size, align, np.dtype(np.float64))
    output_index = np.arange(out_size, dtype=np.int64)
    sources = np.concatenate([taps.first, taps.second])
    outputs = np.concatenate([output_index, output_index])
    weights = np.concatenate([taps.w_first, taps.w_second])
    order = np.lexsort((outputs, sources))
    start = np.zeros(in_size + 1, dtype=np.int64)
    np.cumsum(np.bincount(sources, minlength=in_size), out=start[1:])
    inverse = InverseTaps(start, outputs[order], weights[order].astype(dtype))
    for array in inverse:
        array.setflags(write=False)
    return inverse


@njit(inline="always")
def _gather_rows(rows, inverse, index, total):
    """``total[:] = sum of weight * rows[o]`` over the (o, weight) pairs that read input ``index``."""
    total[:] = 0
    for k in range(inverse.start[index], inverse.start[index + 1]):
        weight, row = inverse.weights[k], rows[inverse.outputs[k]]
        for j in range(total.shape[0]):
            total[j] += weight * row[j]


@njit(cache=True)
def _adjoint_task(grad_out, grad_in, ys, xs, task, blocks_per_plane, rows_per_task):
    in_h, in_w, out_w = grad_in.shape[1], grad_in.shape[2], grad_out.shape[2]
    plane = task // blocks_per_plane
    row_start = (task % blocks_per_plane) * rows_per_task
    row_stop = min(row_start + rows_per_task, in_h)
    n_rows = row_stop - row_start
    # The vertical pass leaves its rows transposed (one row per output column), so that
    # the horizontal pass is the same contiguous, vectorisable row gather.
    row_sum = np.empty(out_w, dtype=grad_in.dtype)
    columns = np.empty((out_w, n_rows), dtype=grad_in.dtype)
    for i in range(row_start, row_stop):
        _gather_rows(grad_out[plane], ys, i, row_sum)
        columns[:, i - row_start] = row_sum
    column_sum = np.empty(n_rows, dtype=grad_in.dtype)
    for j in range(in_w):
        _gather_rows(columns, xs, j, column_sum)
        grad_in[plane, row_start:row_stop, j] = column_sum


@njit(cache=True, parallel=True)
def adjoint_planes(grad_out, grad_in, ys, xs, rows_per_task, serial):
    """Gradient ``grad_in`` (P, H, W) of a resize from the output gradient ``grad_out`` (P, OH, OW).

    Both arrays are C-contiguous and of the compute dtype; ``ys``/``xs`` are the
    :class:`InverseTaps` of the two axes. Tasks are one plane and ``rows_per_task`` input
    rows each, run serially when ``serial`` is true.
    """
    blocks = -(-grad_in.shape[1] // rows_per_task)
    n_tasks = grad_in.shape[0] * blocks
    if serial:
        for task in range(n_tasks):
            _adjoint_task(grad_out, grad_in, ys, xs, task, blocks, rows_per_task)
    else:
        for task in prange(n_tasks):
            _adjoint_task(grad_out, grad_in, ys, xs, task, blocks, rows_per_task)


def resize_adjoint(grad_out: np.ndarray, grad_in: np.ndarray, align: str) -> None:
    """Write into ``grad_in`` (P, H, W) the gradient of resizing it to ``grad_out`` (P, OH, OW).

    Both arrays must be C-contiguous, of one dtype (float32 or float64, the compute dtype)
    and hold the same number of planes; ``align`` must already be validated.
    """
    planes, in_h, in_w = grad_in.shape
    _, out_h, out_w = grad_out.shape
    ys = inverse_axis_taps(in_h, out_h, align, grad_in.dtype)
    xs = inverse_axis_taps(in_w, out_w, align, grad_in.dtype)
    # Work is proportional to the output gradient read, so schedule on its size.
    rows_per_task, serial = schedule(planes, in_h, grad_out.size)
    if serial:
        adjoint_planes(grad_out, grad_in, ys, xs, rows_per_task, True)
    else:
        with parallel_launch():
            adjoint_planes(grad_out, grad_in, ys, xs, rows_per_task, False)

"""Antialiased bilinear resizing on the CPU: weight tables and numba kernels.

On a downscaled axis every output blends all the inputs under a triangle filter widened by
the scale factor, as torch's ``antialias=True`` and Pillow's BILINEAR do (the definition is
:func:`fastinterp.reference.antialias_taps`); an upscaled axis is plain bilinear. The filter
is separable, so a task (one image or plane times a block of output rows) runs two passes:

* vertical: an output row (or an intermediate row) is a weighted sum of whole source rows,
  contiguous and vectorised;
* horizontal: each output element gathers its taps along the row; channels-last pixels
  gather channel vectors.

Which pass runs first depends only on the sizes (:func:`vertical_first`), never on the
layout, and every sum runs over its taps in ascending order from ``w[0] * x[0]``: both
layouts give the same bits. float16 and integers are computed in float32; integers are
rounded to nearest and saturated on the store, as the plain path does.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from ._cpu import _as_weight_type, _task_count, _task_rows, _to_output
from ._plan import check_antialias_align
from ._threads import parallel_launch

#: Bytes of weight tables kept for reuse (tables of large downscales are large).
TABLE_CACHE_BYTES = 64 << 20
#: How much more a horizontal tap (on transposed rows) costs than a vertical one, for
#: choosing the pass order.
GATHER_COST = 1.5
#: Output rows the kernels resize at once: the width of the horizontal pass's vectors.
BLOCK_ROWS = 32


class AntialiasTaps(NamedTuple):
    """One axis: ``out[d] = sum(weights[d, k] * src[first[d] + k] for k in range(count[d]))``.

    ``weights`` has one row per output index, padded with zeros past ``count[d]``.
    """

    first: np.ndarray  # int64, (out_size,)
    count: np.ndarray  # int64, (out_size,)
    weights: np.ndarray  # compute dtype, (out_size, max(count))


def _build_taps(in_size: int, out_size: int, dtype: np.dtype) -> AntialiasTaps:
    """The tables of :func:`fastinterp.reference.antialias_taps`, vectorised in float64, then cast."""
    if in_size == out_size:  # torch skips such an axis: a copy, no neighbour read
        first = np.arange(out_size, dtype=np.int64)
        return AntialiasTaps(first, np.ones(out_size, np.int64), np.ones((out_size, 1), dtype))
    scale = in_size / out_size
    support = max(scale, 1.0)
    inverse = 1.0 / scale if scale >= 1.0 else 1.0
    centre = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    first = np.maximum(np.floor(centre - support + 0.5).astype(np.int64), 0)
    count = np.minimum(np.floor(centre + support + 0.5).astype(np.int64), in_size) - first
    offsets = np.arange(count.max())
    positions = first[:, np.newaxis] + offsets
    weights = np.maximum(0.0, 1.0 - np.abs((positions - centre[:, np.newaxis] + 0.5) * inverse))
    weights[offsets >= count[:, np.newaxis]] = 0.0
    weights /= weights.sum(axis=1, keepdims=True)
    return AntialiasTaps(first, count, weights.astype(dtype))


def _build_adjoint_taps(in_size: int, out_size: int, dtype: np.dtype) -> AntialiasTaps:
    """The transpose of :func:`_build_taps`, indexed by input: the outputs that read input
    ``i`` with their weights, from the float64 tables, then cast.

    Windows move right with the output index, so the outputs that read one input form a
    contiguous run: the adjoint is again a banded filter, and the forward kernels compute it
    as a gather (deterministic, no atomics). An input no output reads gets one zero weight.
    """
    forward = _build_taps(in_size, out_size, np.dtype(np.float64))
    inputs = np.arange(in_size)
    first = np.searchsorted(forward.first + forward.count, inputs, side="right")
    count = np.searchsorted(forward.first, inputs, side="right") - first
    unread = count < 1
    first, count = np.where(unread, np.minimum(first, out_size - 1), first), np.maximum(count, 1)
    offsets = np.arange(count.max())
    outputs = np.minimum(first[:, np.newaxis] + offsets, out_size - 1)
    columns = np.clip(inputs[:, np.newaxis] - forward.first[outputs], 0, forward.weights.shape[1] - 1)
    weights = forward.weights[outputs, columns]
    weights[(offsets >= count[:, np.newaxis]) | unread[:, np.newaxis]] = 0.0
    return AntialiasTaps(first, count, weights.astype(dtype))


_table_lock = threading.Lock()
_tables: OrderedDict[tuple[int, int, np.dtype, bool], AntialiasTaps] = OrderedDict()
_table_bytes = 0


def antialias_taps(in_size: int, out_size: int, dtype: np.dtype, adjoint: bool = False) -> AntialiasTaps:
    """Read-only tables of one axis (of its adjoint, indexed by input, with ``adjoint``),
    least recently used kept up to :data:`TABLE_CACHE_BYTES`."""
    global _table_bytes
    key = (in_size, out_size, np.dtype(dtype), adjoint)
    with _table_lock:
        if key in _tables:
            _tables.move_to_end(key)
            return _tables[key]
    taps = (_build_adjoint_taps if adjoint else _build_taps)(in_size, out_size, key[2])
    for array in taps:
        array.setflags(write=False)
    size = sum(array.nbytes for array in taps)
    with _table_lock:
        if key not in _tables:
            _tables[key] = taps
            _table_bytes += size
            while _table_bytes > TABLE_CACHE_BYTES and len(_tables) > 1:
                _, dropped = _tables.popitem(last=False)
                _table_bytes -= sum(array.nbytes for array in dropped)
        return _tables[key]


def vertical_first(in_h: int, in_w: int, ys: AntialiasTaps, xs: AntialiasTaps, gather_cost: float = GATHER_COST) -> bool:
    """Whether blending rows first does less work than gathering along rows first.

    Vertical first: ``out_h * in_w`` row taps, then ``out_h * out_w`` horizontal taps;
    horizontal first: a transposed copy of the source, ``in_h * out_w`` horizontal taps, then
    ``out_h * out_w`` row taps (all per channel).
    """
    out_h, out_w = len(ys.first), len(xs.first)
    row_taps, column_taps = ys.count.mean(), xs.count.mean()
    vertical = out_h * in_w * row_taps + gather_cost * out_h * out_w * column_taps
    horizontal = in_h * in_w + gather_cost * in_h * out_w * column_taps + out_h * out_w * row_taps
    return vertical <= horizontal


@njit(inline="always")
def _blend_rows(rows, start, step, count, weights, total):
    """``total[:] = sum(weights[k] * rows[start + k * step])``, in ascending ``k``."""
    weight, row = weights[0], rows[start]
    for x in range(total.shape[0]):
        total[x] = _as_weight_type(row[x], weight) * weight
    for k in range(1, count):
        weight, row = weights[k], rows[start + k * step]
        for x in range(total.shape[0]):
            total[x] += _as_weight_type(row[x], weight) * weight


@njit(inline="always")
def _gather_columns(columns, xs, channels, sums):
    """The horizontal pass on a block of rows stored transposed, vectorised over the rows:
    ``sums[j * C + c] = sum(xs.weights[j, k] * columns[(xs.first[j] + k) * C + c])``."""
    for j in range(xs.first.shape[0]):
        for c in range(channels):
            _blend_rows(columns, xs.first[j] * channels + c, channels, xs.count[j], xs.weights[j], sums[j * channels + c])


@njit(cache=True)
def _antialias_task(src, out, ys, xs, channels, rows_first, task, blocks, rows_per_task, block_rows):
    """Output rows ``[row_start, row_stop)`` of one item, in blocks of ``block_rows`` rows;
    ``src`` (N, H, W * C) and ``out`` (N, OH, OW * C) are flat rows of ``channels`` interleaved values.

    The horizontal pass works on the block transposed (one row per source column), so that
    it too is a sum of contiguous rows that vectorises, like the adjoint in fastinterp._cpu.
    """
    item, row_start, row_stop = _task_rows(task, blocks, rows_per_task, out.shape[1])
    dtype = xs.weights.dtype
    in_width, out_width = src.shape[2], out.shape[2]
    for block_start in range(row_start, row_stop, block_rows):
        block_stop = min(block_start + block_rows, row_stop)
        if rows_first:
            n_rows, first_row = block_stop - block_start, 0
            columns = np.empty((in_width, n_rows), dtype=dtype)
            column_sums = np.empty(in_width, dtype=dtype)
            for i in range(block_start, block_stop):
                _blend_rows(src[item], ys.first[i], 1, ys.count[i], ys.weights[i], column_sums)
                columns[:, i - block_start] = column_sums
        else:  # gather the source rows the block reads, then blend them
            first_row = ys.first[block_start]
            n_rows = ys.first[block_stop - 1] + ys.count[block_stop - 1] - first_row
            columns = np.empty((in_width, n_rows), dtype=dtype)
            for r in range(n_rows):
                line = src[item, first_row + r]
                for x in range(in_width):
                    columns[x, r] = _as_weight_type(line[x], xs.weights[0, 0])
        sums = np.empty((out_width, n_rows), dtype=dtype)
        _gather_columns(columns, xs, channels, sums)
        if rows_first:
            for i in range(block_start, block_stop):
                target = out[item, i]
                for x in range(out_width):
                    target[x] = _to_output(sums[x, i - block_start], target)
        else:
            rows = np.ascontiguousarray(sums.T)
            row_sums = np.empty(out_width, dtype=dtype)
            for i in range(block_start, block_stop):
                _blend_rows(rows, ys.first[i] - first_row, 1, ys.count[i], ys.weights[i], row_sums)
                target = out[item, i]
                for x in range(out_width):
                    target[x] = _to_output(row_sums[x], target)


@njit(cache=True)
def serial_antialias(src, out, ys, xs, channels, rows_first, rows_per_task, block_rows):
    """Every task of :func:`_antialias_task`, in order, on the calling thread."""
    n_tasks, blocks = _task_count(src, out, rows_per_task)
    for task in range(n_tasks):
        _antialias_task(src, out, ys, xs, channels, rows_first, task, blocks, rows_per_task, block_rows)


@njit(cache=True, parallel=True)
def parallel_antialias(src, out, ys, xs, channels, rows_first, rows_per_task, block_rows):
    """:func:`serial_antialias` on numba's thread pool."""
    n_tasks, blocks = _task_count(src, out, rows_per_task)
    for task in prange(n_tasks):
        # int64, so that both drivers share one compiled task body (see fastinterp._cpu)
        _antialias_task(src, out, ys, xs, channels, rows_first, np.int64(task), blocks, rows_per_task, block_rows)


def run_antialias(
    src: np.ndarray,
    dest: np.ndarray,
    in_h: int,
    in_w: int,
    out_h: int,
    out_w: int,
    align: str,
    compute_dtype: np.dtype,
    rows_per_task: int,
    serial: bool,
    gather_cost: float = GATHER_COST,
    block_rows: int = BLOCK_ROWS,
) -> None:
    """Antialiased resize of C-contiguous kernel-layout ``src`` into C-contiguous ``dest``.

    ``src`` is (P, H, W) planes or (N, H, W, C) pixels, float32, float64 or an integer dtype
    (float16 converted to float32 by the caller); ``dest`` the same layout with the output's
    size, in float32, float64 or the input's integer dtype. ``rows_per_task`` and ``serial``
    split the work as for the plain kernels (:func:`fastinterp._cpu.schedule`); ``gather_cost``
    and ``block_rows`` are the tunables :data:`GATHER_COST` and :data:`BLOCK_ROWS`.
    """
    check_antialias_align(align)
    ys, xs = antialias_taps(in_h, out_h, compute_dtype), antialias_taps(in_w, out_w, compute_dtype)
    _run(src, dest, ys, xs, rows_per_task, serial, gather_cost, block_rows)


def run_antialias_adjoint(
    grad_out: np.ndarray,
    grad_in: np.ndarray,
    in_h: int,
    in_w: int,
    compute_dtype: np.dtype,
    rows_per_task: int,
    serial: bool,
    gather_cost: float = GATHER_COST,
    block_rows: int = BLOCK_ROWS,
) -> None:
    """The gradient of :func:`run_antialias` with respect to its input: ``grad_in`` (P, in_h,
    in_w) from ``grad_out`` (P, out_h, out_w), both C-contiguous in the compute dtype.

    The forward kernels with the transposed tables: every input gathers the outputs that
    read it in ascending order, so the result is deterministic. ``rows_per_task`` counts
    rows of ``grad_in``.
    """
    out_h, out_w = grad_out.shape[1], grad_out.shape[2]
    ys = antialias_taps(in_h, out_h, compute_dtype, adjoint=True)
    xs = antialias_taps(in_w, out_w, compute_dtype, adjoint=True)
    _run(grad_out, grad_in, ys, xs, rows_per_task, serial, gather_cost, block_rows)


def _run(src, dest, ys, xs, rows_per_task, serial, gather_cost, block_rows) -> None:
    """Resize ``src`` into ``dest`` with the tables ``ys`` and ``xs`` (one entry per row and
    column of ``dest``)."""
    if not (src.flags.c_contiguous and dest.flags.c_contiguous):
        raise ValueError("the antialias kernels need C-contiguous src and dest")
    channels = src.shape[3] if src.ndim == 4 else 1
    (items, in_h, in_w), (out_h, out_w) = src.shape[:3], dest.shape[1:3]
    flat_src = src.reshape(items, in_h, in_w * channels)
    flat_dest = dest.reshape(dest.shape[0], out_h, out_w * channels)
    rows_first = vertical_first(in_h, in_w, ys, xs, gather_cost)
    if serial:
        serial_antialias(flat_src, flat_dest, ys, xs, channels, rows_first, rows_per_task, block_rows)
    else:
        with parallel_launch():
            parallel_antialias(flat_src, flat_dest, ys, xs, channels, rows_first, rows_per_task, block_rows)

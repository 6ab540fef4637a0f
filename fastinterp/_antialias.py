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
from ._threads import parallel_launch
from .reference import ANTIALIAS_ALIGN_MODES

#: Bytes of weight tables kept for reuse (tables of large downscales are large).
TABLE_CACHE_BYTES = 64 << 20
#: How much more a gathered (horizontal) tap costs than a vectorised (vertical) one, for
#: choosing the pass order.
GATHER_COST = 2.0


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


_table_lock = threading.Lock()
_tables: OrderedDict[tuple[int, int, np.dtype], AntialiasTaps] = OrderedDict()
_table_bytes = 0


def antialias_taps(in_size: int, out_size: int, dtype: np.dtype) -> AntialiasTaps:
    """Read-only tables of one axis, least recently used kept up to :data:`TABLE_CACHE_BYTES`."""
    global _table_bytes
    key = (in_size, out_size, np.dtype(dtype))
    with _table_lock:
        if key in _tables:
            _tables.move_to_end(key)
            return _tables[key]
    taps = _build_taps(in_size, out_size, key[2])
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

    Vertical first: ``out_h * in_w`` vectorised row taps, then ``out_h * out_w`` gathers;
    horizontal first: ``in_h * out_w`` gathers, then ``out_h * out_w`` row taps (per channel).
    """
    out_h, out_w = len(ys.first), len(xs.first)
    row_taps, column_taps = ys.count.mean(), xs.count.mean()
    vertical = out_h * in_w * row_taps + gather_cost * out_h * out_w * column_taps
    horizontal = gather_cost * in_h * out_w * column_taps + out_h * out_w * row_taps
    return vertical <= horizontal


@njit(inline="always")
def _blend_rows(rows, start, count, weights, total):
    """``total[:] = sum(weights[k] * rows[start + k])``, in ascending ``k``."""
    weight, row = weights[0], rows[start]
    for x in range(total.shape[0]):
        total[x] = _as_weight_type(row[x], weight) * weight
    for k in range(1, count):
        weight, row = weights[k], rows[start + k]
        for x in range(total.shape[0]):
            total[x] += _as_weight_type(row[x], weight) * weight


@njit(inline="always")
def _blend_columns(row, xs, channels, target, sums):
    """Gather one row along x into ``target`` (a flat row of ``channels`` interleaved values),
    converted for storing into it; ``sums`` is scratch for one pixel's channels."""
    if channels == 1:
        for j in range(target.shape[0]):
            start, weights = xs.first[j], xs.weights[j]
            total = _as_weight_type(row[start], weights[0]) * weights[0]
            for k in range(1, xs.count[j]):
                total += _as_weight_type(row[start + k], weights[k]) * weights[k]
            target[j] = _to_output(total, target)
        return
    for j in range(target.shape[0] // channels):
        start, weights = xs.first[j] * channels, xs.weights[j]
        for c in range(channels):
            sums[c] = _as_weight_type(row[start + c], weights[0]) * weights[0]
        for k in range(1, xs.count[j]):
            at = start + k * channels
            for c in range(channels):
                sums[c] += _as_weight_type(row[at + c], weights[k]) * weights[k]
        for c in range(channels):
            target[j * channels + c] = _to_output(sums[c], target)


@njit(cache=True)
def _antialias_task(src, out, ys, xs, channels, rows_first, task, blocks, rows_per_task):
    """Output rows ``[row_start, row_stop)`` of one item; ``src`` (N, H, W * C) and
    ``out`` (N, OH, OW * C) are flat rows of ``channels`` interleaved values."""
    item, row_start, row_stop = _task_rows(task, blocks, rows_per_task, out.shape[1])
    dtype = xs.weights.dtype
    sums = np.empty(channels, dtype=dtype)
    if rows_first:
        column_sums = np.empty(src.shape[2], dtype=dtype)
        for i in range(row_start, row_stop):
            _blend_rows(src[item], ys.first[i], ys.count[i], ys.weights[i], column_sums)
            _blend_columns(column_sums, xs, channels, out[item, i], sums)
        return
    first_row = ys.first[row_start]
    rows = np.empty((ys.first[row_stop - 1] + ys.count[row_stop - 1] - first_row, out.shape[2]), dtype=dtype)
    for r in range(rows.shape[0]):
        _blend_columns(src[item, first_row + r], xs, channels, rows[r], sums)
    row_sums = np.empty(out.shape[2], dtype=dtype)
    for i in range(row_start, row_stop):
        _blend_rows(rows, ys.first[i] - first_row, ys.count[i], ys.weights[i], row_sums)
        target = out[item, i]
        for x in range(target.shape[0]):
            target[x] = _to_output(row_sums[x], target)


@njit(cache=True)
def serial_antialias(src, out, ys, xs, channels, rows_first, rows_per_task):
    """Every task of :func:`_antialias_task`, in order, on the calling thread."""
    n_tasks, blocks = _task_count(src, out, rows_per_task)
    for task in range(n_tasks):
        _antialias_task(src, out, ys, xs, channels, rows_first, task, blocks, rows_per_task)


@njit(cache=True, parallel=True)
def parallel_antialias(src, out, ys, xs, channels, rows_first, rows_per_task):
    """:func:`serial_antialias` on numba's thread pool."""
    n_tasks, blocks = _task_count(src, out, rows_per_task)
    for task in prange(n_tasks):
        # int64, so that both drivers share one compiled task body (see fastinterp._cpu)
        _antialias_task(src, out, ys, xs, channels, rows_first, np.int64(task), blocks, rows_per_task)


def check_antialias_align(align: str) -> str:
    """``align`` if antialiasing defines it, else a one-line ValueError."""
    if align not in ANTIALIAS_ALIGN_MODES:
        raise ValueError(
            f"antialias=True is defined only for align in {ANTIALIAS_ALIGN_MODES} (the filter is centred "
            f"on (i + 0.5) * in/out), got {align!r}"
        )
    return align


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
) -> None:
    """Antialiased resize of C-contiguous kernel-layout ``src`` into C-contiguous ``dest``.

    ``src`` is (P, H, W) planes or (N, H, W, C) pixels, float32, float64 or an integer dtype
    (float16 converted to float32 by the caller); ``dest`` the same layout with the output's
    size, in float32, float64 or the input's integer dtype. ``rows_per_task`` and ``serial``
    split the work as for the plain kernels (:func:`fastinterp._api.schedule`).
    """
    check_antialias_align(align)
    if not (src.flags.c_contiguous and dest.flags.c_contiguous):
        raise ValueError("run_antialias needs C-contiguous src and dest")
    channels = src.shape[3] if src.ndim == 4 else 1
    ys = antialias_taps(in_h, out_h, compute_dtype)
    xs = antialias_taps(in_w, out_w, compute_dtype)
    flat_src = src.reshape(src.shape[0], in_h, in_w * channels)
    flat_dest = dest.reshape(dest.shape[0], out_h, out_w * channels)
    rows_first = vertical_first(in_h, in_w, ys, xs, gather_cost)
    if serial:
        serial_antialias(flat_src, flat_dest, ys, xs, channels, rows_first, rows_per_task)
    else:
        with parallel_launch():
            parallel_antialias(flat_src, flat_dest, ys, xs, channels, rows_first, rows_per_task)

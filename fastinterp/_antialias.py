"""Antialiased bilinear resizing on the CPU: weight tables and numba kernels.

On a downscaled axis every output blends all the inputs under a triangle filter widened by
the scale factor, as torch's ``antialias=True`` and Pillow's BILINEAR do (the definition is
:func:`fastinterp.reference.antialias_taps`); an upscaled axis is plain bilinear. The filter
is separable, so a task (one image or plane times a block of output rows) runs two passes:

* vertical: an output row (or an intermediate row) is a weighted sum of whole source rows,
  contiguous and vectorised;
* horizontal: each output element gathers its taps along the row; channels-last pixels
  gather channel vectors.

At an integer downscale factor k (up to :data:`MAX_FIXED_FACTOR`) every output away from
the ends of the width reads 2k neighbours with the same weights (halving: 1/8, 3/8, 3/8,
1/8), ``k`` apart from one output to the next (:class:`FixedTaps`, read from the table). The
horizontal pass then runs along each row with those fixed strided taps, which vectorises
without a transpose; the table serves the ends (clipped, renormalised windows).

Which pass runs first depends only on the sizes (:func:`vertical_first`), never on the
layout or on fixed taps, and every sum runs over its taps in ascending order from
``w[0] * x[0]``: both layouts and both horizontal passes give the same bits (as does the
CUDA twin, which always uses the tables). float16 and integers are computed in float32; integers are
rounded to nearest and saturated on the store, as the plain path does.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from typing import Any, NamedTuple

import numpy as np
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from ._cpu import _as_weight_type, _task_count, _task_rows, _to_output, read_only
from ._plan import check_antialias_align
from ._threads import parallel_launch

#: Bytes of weight tables kept for reuse (tables of large downscales are large).
TABLE_CACHE_BYTES = 64 << 20
#: How much more a horizontal tap (on transposed rows) costs than a vertical one, for
#: choosing the pass order.
GATHER_COST = 1.5
#: Output rows the kernels resize at once: the width of the horizontal pass's vectors.
BLOCK_ROWS = 32
#: The largest integer downscale factor of the width with its own kernel (2k taps, unrolled:
#: each factor compiles once per dtype).
MAX_FIXED_FACTOR = 8


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


class FixedTaps(NamedTuple):
    """The interior of an axis where every output has the same taps, shifted: for ``d`` in
    ``[start, stop)``, ``out[d] = sum(weights[k] * src[first + step * (d - start) + k])``
    with ``step = len(weights) // 2`` (an integer factor k reads 2k taps).

    ``weights`` is a tuple, so that the tap count, and with it the step, is a constant of the
    compiled kernel: its loops unroll and its strided reads vectorise. The kernels take
    ``(start, stop, first)`` and ``weights`` as two arguments: a parallel loop cannot take a
    tuple inside a tuple.
    """

    start: int
    stop: int
    first: int
    weights: tuple  # of the compute dtype's scalars, bit for bit the table's


def _bit_view(array: np.ndarray) -> np.ndarray:
    """``array`` as unsigned integers of its size: equal views mean equal bits (-0.0 is not 0.0)."""
    return array.view(np.dtype(f"u{array.dtype.itemsize}"))


@functools.lru_cache(maxsize=256)
def fixed_taps(in_size: int, out_size: int, dtype: np.dtype, max_factor: int = MAX_FIXED_FACTOR) -> FixedTaps | None:
    """The longest run of outputs around the middle whose rows of the table
    (:func:`antialias_taps`) are the middle's, shifted by ``in_size // out_size`` each, at an
    integer downscale factor of at most ``max_factor``; else None.

    Read from the table, never recomputed: the fixed kernel gives the table kernel's bits.
    """
    factor, remainder = divmod(in_size, out_size)
    if remainder or not 2 <= factor <= max_factor:
        return None
    taps = antialias_taps(in_size, out_size, dtype)
    n_taps = 2 * factor
    middle = out_size // 2
    if taps.weights.shape[1] < n_taps or taps.count[middle] != n_taps:
        return None
    bits = _bit_view(taps.weights[:, :n_taps])
    shift = taps.first - factor * np.arange(out_size)
    same = (taps.count == n_taps) & (shift == shift[middle]) & (bits == bits[middle]).all(axis=1)
    others = np.flatnonzero(~same)
    start = int(others[others < middle].max(initial=-1)) + 1
    stop = int(others[others > middle].min(initial=out_size))
    weights = tuple(taps.weights[middle, :n_taps])
    return FixedTaps(start, stop, int(taps.first[start]), weights)


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
    """``total[:] = sum(weights[k] * rows[start + k * step])``, in ascending ``k``.

    Two rows per sweep over ``total`` (half its loads and stores): ``(t + a) + b`` is the
    order one row per sweep would give, so the bits are the same.
    """
    first, row = weights[0], rows[start]
    if count == 1:
        for x in range(total.shape[0]):
            total[x] = _as_weight_type(row[x], first) * first
        return
    second, next_row = weights[1], rows[start + step]
    for x in range(total.shape[0]):
        total[x] = _as_weight_type(row[x], first) * first + _as_weight_type(next_row[x], second) * second
    for k in range(2, count - 1, 2):
        first, row = weights[k], rows[start + k * step]
        second, next_row = weights[k + 1], rows[start + (k + 1) * step]
        for x in range(total.shape[0]):
            total[x] = (total[x] + _as_weight_type(row[x], first) * first) + _as_weight_type(next_row[x], second) * second
    if count % 2 and count > 2:
        first, row = weights[count - 1], rows[start + (count - 1) * step]
        for x in range(total.shape[0]):
            total[x] += _as_weight_type(row[x], first) * first


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


@njit(inline="always")
def _table_outputs(line, target, xs, channels, start, stop):
    """``target[j * C + c]`` for outputs ``j`` in ``[start, stop)`` from one row ``line`` of
    ``channels`` (C) interleaved values, with the taps of the table ``xs``."""
    for j in range(start, stop):
        weights, base = xs.weights[j], xs.first[j] * channels
        for c in range(channels):
            total = _as_weight_type(line[base + c], weights[0]) * weights[0]
            for k in range(1, xs.count[j]):
                total += _as_weight_type(line[base + k * channels + c], weights[k]) * weights[k]
            target[j * channels + c] = _to_output(total, target)


@njit(inline="always")
def _fixed_outputs(window, outputs, n_taps, weights):
    """``outputs[j] = sum(weights[k] * window[step * j + k])`` with ``step = n_taps // 2``: the
    outputs of :class:`FixedTaps`, whose weights are the same for all, from the first tap of
    the first (indices from 0, so that numba's check for negative indices folds away). With
    ``n_taps`` a constant the tap loop unrolls; on contiguous rows the reads vectorise."""
    step = n_taps // 2
    for j in range(outputs.shape[0]):
        base = step * j
        total = _as_weight_type(window[base], weights[0]) * weights[0]
        for k in range(1, n_taps):
            total += _as_weight_type(window[base + k], weights[k]) * weights[k]
        outputs[j] = _to_output(total, outputs)


@njit(inline="always")
def _filter_rows(lines, targets, n_rows, xs, span, n_taps, weights, channels):
    """The horizontal pass of ``n_rows`` consecutive rows of ``channels`` (C) interleaved
    values, flat in ``lines`` and ``targets``: the fixed taps of ``span`` (start, stop, first)
    on the inside, the table at both ends of each row.

    The width is ``step = n_taps // 2`` times the output width, so the first tap of output
    ``(r, j)``, ``first + step * (r * out_w + j - start)`` per channel, runs on across rows:
    the inside of all the rows is one loop, and the ends of the rows it crosses are then
    overwritten with the table's values.
    """
    start, stop, first = span
    out_w = xs.first.shape[0]
    last = (n_rows - 1) * out_w + stop  # one past the last output of the run
    if channels == 1:  # contiguous, and a literal 1 below: the loops know their strides
        _fixed_outputs(lines[first:], targets[start:last], n_taps, weights)
        _row_ends(lines, targets, n_rows, xs, span, 1)
    else:
        for c in range(channels):
            _fixed_outputs(lines[first * channels + c :: channels], targets[start * channels + c : last * channels : channels],
                           n_taps, weights)  # fmt: skip
        _row_ends(lines, targets, n_rows, xs, span, channels)


@njit(inline="always")
def _row_ends(lines, targets, n_rows, xs, span, channels):
    """The outputs of each row outside ``span``, from the table."""
    start, stop = span[0], span[1]
    in_row, out_row = lines.shape[0] // n_rows, targets.shape[0] // n_rows
    for r in range(n_rows):
        line, target = lines[r * in_row : (r + 1) * in_row], targets[r * out_row : (r + 1) * out_row]
        _table_outputs(line, target, xs, channels, 0, start)
        _table_outputs(line, target, xs, channels, stop, xs.first.shape[0])


@njit(cache=True)
def _fixed_task(src, out, ys, xs, span, fixed_weights, channels, rows_first, task, blocks, rows_per_task, block_rows):
    """:func:`_antialias_task` where the width has :class:`FixedTaps`: the horizontal pass runs
    along rows (:func:`_filter_rows`), with no transpose. Rows first, each output row blends
    its source rows into one row (kept in the first-level cache), then filters it into
    ``out``; columns first, a block filters the source rows it reads, then blends them into
    its output rows."""
    item, row_start, row_stop = _task_rows(task, blocks, rows_per_task, out.shape[1])
    n_taps, weights = len(fixed_weights), np.array(fixed_weights)
    # One inlined copy of the body: a second one with a literal channel count of 1 ran 10-20%
    # faster on short rows but made every fixed-taps kernel take 55 s instead of 35 s of CPU to
    # compile (a user's first antialiased call at each integer factor, and the CI's cold runs).
    _fixed_rows(src, out, ys, xs, span, n_taps, weights, channels, rows_first, item, row_start, row_stop, block_rows)


@njit(inline="always")
def _fixed_rows(src, out, ys, xs, span, n_taps, weights, channels, rows_first, item, row_start, row_stop, block_rows):
    """The body of :func:`_fixed_task`: output rows ``[row_start, row_stop)`` of ``item``."""
    dtype = xs.weights.dtype
    in_row, out_row = src.shape[2], out.shape[2]
    if rows_first:
        column_sums = np.empty(in_row, dtype=dtype)
        for i in range(row_start, row_stop):
            _blend_rows(src[item], ys.first[i], 1, ys.count[i], ys.weights[i], column_sums)
            _filter_rows(column_sums, out[item, i], 1, xs, span, n_taps, weights, channels)
    else:
        lines = src[item].reshape(-1)
        row_sums = np.empty(out_row, dtype=dtype)
        for block_start in range(row_start, row_stop, block_rows):
            block_stop = min(block_start + block_rows, row_stop)
            first_row = ys.first[block_start]
            n_rows = ys.first[block_stop - 1] + ys.count[block_stop - 1] - first_row
            rows = np.empty((n_rows, out_row), dtype=dtype)
            _filter_rows(lines[first_row * in_row : (first_row + n_rows) * in_row], rows.reshape(-1), n_rows, xs, span,
                         n_taps, weights, channels)  # fmt: skip
            for i in range(block_start, block_stop):
                _blend_rows(rows, ys.first[i] - first_row, 1, ys.count[i], ys.weights[i], row_sums)
                target = out[item, i]
                for x in range(out_row):
                    target[x] = _to_output(row_sums[x], target)


def _run_task(src, out, ys, xs, span, fixed_weights, channels, rows_first, task, blocks, rows_per_task, block_rows):  # pragma: no cover
    raise NotImplementedError


@overload(_run_task, inline="always")
def _run_task_impl(src, out, ys, xs, span, fixed_weights, channels, rows_first, task, blocks, rows_per_task, block_rows):
    """The task body: the table body for no ``fixed_weights`` (``()``), else the fixed-taps body."""
    if len(fixed_weights) == 0:

        def table_task(src, out, ys, xs, span, fixed_weights, channels, rows_first, task, blocks, rows_per_task, block_rows):
            _antialias_task(src, out, ys, xs, channels, rows_first, task, blocks, rows_per_task, block_rows)

        return table_task

    def fixed_task(src, out, ys, xs, span, fixed_weights, channels, rows_first, task, blocks, rows_per_task, block_rows):
        _fixed_task(src, out, ys, xs, span, fixed_weights, channels, rows_first, task, blocks, rows_per_task, block_rows)

    return fixed_task


@intrinsic
def _claim_task(typingctx, counter):
    """``counter[0]``, incremented in the same atomic step: the next task of :func:`parallel_antialias`.

    The driver hands out tasks one at a time from a shared counter, not in one fixed block per
    thread (what prange does with the workqueue layer): a thread that loses its core then runs
    fewer tasks instead of holding up the call. It happens after any torch op on the CPU:
    torch's OpenMP workers spin for about 10 ms of CPU each before they sleep (GNU OpenMP's
    default), on the cores our threads need; with one of two threads sharing its core with a
    spinning process, the (2048, 96, 96) -> 24 x 24 resize took 32 ms instead of 53.
    The plain drivers of fastinterp._cpu keep prange's blocks: their short calls gain less, and
    the loop around the task body cost 0.6-1.1 s more to compile for each of them.
    """

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, array, [context.get_constant(types.intp, 0)])
        return builder.atomic_rmw("add", pointer, context.get_constant(types.int64, 1), "monotonic")

    return types.int64(counter), codegen


@njit(cache=True)
def serial_antialias(src, out, ys, xs, span, fixed_weights, channels, rows_first, rows_per_task, block_rows):
    """Every task, in order, on the calling thread: :func:`_fixed_task` where the width has
    :class:`FixedTaps` (their ``span`` (start, stop, first) and ``fixed_weights``), else
    (``fixed_weights`` ``()``) :func:`_antialias_task`."""
    n_tasks, blocks = _task_count(src, out, rows_per_task)
    for task in range(n_tasks):
        _run_task(src, out, ys, xs, span, fixed_weights, channels, rows_first, task, blocks, rows_per_task, block_rows)


@njit(cache=True, parallel=True)
def parallel_antialias(src, out, ys, xs, span, fixed_weights, channels, rows_first, rows_per_task, block_rows):
    """:func:`serial_antialias` on numba's thread pool."""
    n_tasks, blocks = _task_count(src, out, rows_per_task)
    counter = np.zeros(1, np.int64)
    for _ in prange(n_tasks):
        # Each iteration runs tasks from the shared counter until none is left: in effect the
        # first iteration of each thread does its share, the others find nothing left. Task
        # numbers are int64, as in serial_antialias: both drivers share one compiled task body.
        task = _claim_task(counter)
        while task < n_tasks:
            _run_task(src, out, ys, xs, span, fixed_weights, channels, rows_first, task, blocks, rows_per_task, block_rows)
            task = _claim_task(counter)


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
    max_fixed_factor: int = MAX_FIXED_FACTOR,
) -> None:
    """Antialiased resize of C-contiguous kernel-layout ``src`` into C-contiguous ``dest``.

    ``src`` is (P, H, W) planes or (N, H, W, C) pixels, float32, float64 or an integer dtype
    (float16 converted to float32 by the caller); ``dest`` the same layout with the output's
    size, in float32, float64 or the input's integer dtype. ``rows_per_task`` and ``serial``
    split the work as for the plain kernels (:func:`fastinterp._cpu.schedule`); ``gather_cost``,
    ``block_rows`` and ``max_fixed_factor`` are the tunables :data:`GATHER_COST`,
    :data:`BLOCK_ROWS` and :data:`MAX_FIXED_FACTOR`.
    """
    check_antialias_align(align)
    ys, xs = antialias_taps(in_h, out_h, compute_dtype), antialias_taps(in_w, out_w, compute_dtype)
    fixed = fixed_taps(in_w, out_w, np.dtype(compute_dtype), max_fixed_factor)
    rows_first = vertical_first(in_h, in_w, ys, xs, gather_cost)
    run_tables(src, dest, ys, xs, fixed, rows_first, rows_per_task, serial, block_rows)


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
    rows_first = vertical_first(out_h, out_w, ys, xs, gather_cost)  # the sizes of what the kernels read
    run_tables(grad_out, grad_in, ys, xs, None, rows_first, rows_per_task, serial, block_rows)


def run_tables(
    src: np.ndarray, dest: np.ndarray, ys: Any, xs: Any, fixed: FixedTaps | None, rows_first: bool,
    rows_per_task: int, serial: bool, block_rows: int = BLOCK_ROWS,
) -> None:
    """Resize ``src`` into ``dest`` with the tables ``ys`` and ``xs`` (one entry per row and
    column of ``dest``), the :class:`FixedTaps` of ``xs`` (or None) and the pass order
    ``rows_first`` (:func:`vertical_first`; a caller resizing part of an array passes the
    whole array's, see :func:`fastinterp.dask.run_region`)."""
    if not (src.flags.c_contiguous and dest.flags.c_contiguous):
        raise ValueError("the antialias kernels need C-contiguous src and dest")
    span, weights = ((fixed.start, fixed.stop, fixed.first), fixed.weights) if fixed else ((0, 0, 0), ())
    channels = src.shape[3] if src.ndim == 4 else 1
    (items, in_h, in_w), (out_h, out_w) = src.shape[:3], dest.shape[1:3]
    flat_src = read_only(src.reshape(items, in_h, in_w * channels))
    flat_dest = dest.reshape(dest.shape[0], out_h, out_w * channels)
    if serial:
        serial_antialias(flat_src, flat_dest, ys, xs, span, weights, channels, rows_first, rows_per_task, block_rows)
    else:
        with parallel_launch():
            parallel_antialias(flat_src, flat_dest, ys, xs, span, weights, channels, rows_first, rows_per_task, block_rows)

"""Bilinear resize of dask arrays larger than memory: :func:`resize`.

``import fastinterp.dask`` needs the ``[dask]`` extra; ``import fastinterp`` never imports dask.

Each output block is computed from exactly the input rows and columns its taps read: for
output rows ``[a, b)`` those are input rows ``min(first[a:b]) .. max(second[a:b])`` of the
full-axis taps (:mod:`fastinterp._coords`; with ``antialias=True`` the wider windows
``first .. first + count`` of :func:`fastinterp._antialias.antialias_taps`), and the same for
columns. The task runs the table kernels of :mod:`fastinterp._cpu` (or
:mod:`fastinterp._antialias`) on that input with the whole array's taps, sliced to the block
and rebased to the input it holds (:func:`run_region`): never taps, pass orders or shortcuts
chosen from the region's own sizes, which would differ from the whole array's. Every output
element is therefore computed from the same source values, weights and operations as
:func:`fastinterp.resize` of the whole array: the result is bit-identical, whatever the
chunking.

The graph has one task per output block and no rechunk. Where output blocks map one to one
onto input blocks and every block's region reaches at most into its neighbours (the usual
case: output chunks are the input's scaled), each task reads its own input block and copies
of the parts of its neighbours it needs (its halos), which one small task per input block cuts
out: an input block is let go once its own output block is done, and dask runs the graph row
after row, holding two rows of input blocks at most. Otherwise each task reads the input blocks
its region overlaps and copies the region out of them.
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
from typing import Any, NamedTuple

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer
from dask.utils import parse_bytes

from ._coords import NO_PERIOD, interleaved_taps
from ._plan import (
    INTERLEAVE_MAX_CHANNELS, Plan, antialias_applies, check_align, check_antialias, check_dtype, numpy_layout,
    output_size,
)

__all__ = ["resize"]

#: Bytes of interpolated input rows one task of the plain kernels buffers at most: under
#: glibc's default mmap threshold (128 KiB), which distributed pins for its workers (it sets
#: ``MALLOC_TRIM_THRESHOLD_``), so the buffer is recycled from the heap rather than mapped
#: fresh, and its pages cleared and faulted in, on every task.
TASK_SCRATCH_BYTES = 120 << 10


class Span(NamedTuple):
    """One output block along one spatial axis and the input it reads.

    Output indices ``[out_start, out_stop)`` read input indices ``[in_start, in_stop)``; the
    task's concatenated input blocks begin at input index ``slab_start``.
    """

    out_start: int
    out_stop: int
    in_start: int
    in_stop: int
    slab_start: int

    def overlap(self, start: int, stop: int, origin: int) -> slice:
        """Input indices ``[start, stop)`` that this span reads, counted from ``origin`` (no
        later than the first of them); empty where the span reads none of them."""
        first, last = max(start, self.in_start), min(stop, self.in_stop)
        return slice(first - origin, max(first, last) - origin)  # empty where they do not meet


def _spatial_axes(shape: tuple[int, ...], channels_first: bool) -> tuple[int, int]:
    """Axes of H and W in the user's layout (the layouts of :func:`fastinterp.resize`)."""
    ndim = len(shape)
    if ndim == 2:
        return 0, 1
    if ndim in (3, 4):
        return (ndim - 2, ndim - 1) if channels_first else (ndim - 3, ndim - 2)
    layouts = "(N, C, H, W)" if channels_first else "(N, H, W, C)"
    raise ValueError(f"expected a 2-D (H, W), 3-D or 4-D {layouts} dask array, got {ndim} dimensions {shape}")


def _make_plan(
    darr: Any, w_rate: Any, h_rate: Any, size: Any, align: Any, legacy: Any, antialias: Any, channels_first: bool
) -> Plan:
    """The request's plan, validated as :func:`fastinterp.resize` validates it.

    Unlike the in-memory front there is no cap on the output's size: it need not fit in memory.
    """
    if not isinstance(legacy, bool):
        raise TypeError(f"legacy must be True or False, got {legacy!r}")
    align = check_align(align, legacy)
    antialias = check_antialias(antialias, align, legacy)
    native = check_dtype(darr.dtype, legacy)
    if 0 in darr.shape:
        raise ValueError(f"cannot resize an empty array (shape {darr.shape})")
    row_axis, col_axis = _spatial_axes(darr.shape, channels_first)
    in_h, in_w = darr.shape[row_axis], darr.shape[col_axis]
    out_h, out_w = output_size(in_h, in_w, w_rate, h_rate, size)
    layout = "pixels" if darr.ndim > 2 and not channels_first else "planes"
    out_dtype = np.dtype(np.uint8) if legacy else native
    antialias = antialias and antialias_applies(in_h, in_w, out_h, out_w)
    return Plan(layout, in_h, in_w, out_h, out_w, align, legacy, native, out_dtype, antialias=antialias)


def _full_taps(plan: Plan) -> tuple[Any, Any]:
    """The whole array's row and column taps: the antialias tables, or those of the plain kernels."""
    if plan.antialias:
        from ._antialias import antialias_taps  # numba loads with the first plan that needs it

        return antialias_taps(plan.in_h, plan.out_h, plan.compute_dtype), antialias_taps(
            plan.in_w, plan.out_w, plan.compute_dtype
        )
    return plan.taps()


def _read_bounds(taps: Any) -> tuple[np.ndarray, np.ndarray]:
    """For each output index, the first input index it reads and one past the last."""
    if "count" in taps._fields:  # antialias tables: a window of count[d] inputs from first[d]
        return taps.first, taps.first + taps.count
    return taps.first, taps.second + 1


def _scaled_chunks(in_chunks: tuple[int, ...], in_size: int, out_size: int) -> list[int]:
    """Output chunks whose boundaries are the input's, scaled to the output and rounded."""
    bounds = np.cumsum((0, *in_chunks), dtype=np.int64)
    scaled = np.unique((bounds * out_size + in_size // 2) // in_size)
    return np.diff(scaled).tolist()


def _split(chunks: list[int], most: int) -> tuple[int, ...]:
    """``chunks`` with every chunk longer than ``most`` cut into near-equal parts."""
    parts: list[int] = []
    for chunk in chunks:
        pieces = -(-chunk // most)
        parts.extend(chunk // pieces + (k < chunk % pieces) for k in range(pieces))
    return tuple(parts)


def _output_chunks(darr: Any, plan: Plan, axes: tuple[int, int], block_bytes: int) -> tuple[tuple[int, ...], ...]:
    """The input's chunks, scaled along H and W, then cut so no block exceeds ``block_bytes``.

    Non-spatial axes (N, C) keep the input's chunks: each output block reads the same ones.
    """
    row_axis, col_axis = axes
    rows = _scaled_chunks(darr.chunks[row_axis], plan.in_h, plan.out_h)
    columns = _scaled_chunks(darr.chunks[col_axis], plan.in_w, plan.out_w)
    others = math.prod(max(c) for axis, c in enumerate(darr.chunks) if axis not in axes)
    budget = max(1, block_bytes // (others * plan.out_dtype.itemsize))  # spatial elements per block
    most_rows, most_columns = max(rows), max(columns)
    if most_rows * most_columns > budget:  # upsampling: shrink both sides by the same factor
        most_rows = max(1, math.floor(most_rows * math.sqrt(budget / (most_rows * most_columns))))
        most_columns = max(1, budget // most_rows)
    chunks = list(darr.chunks)
    chunks[row_axis], chunks[col_axis] = _split(rows, most_rows), _split(columns, most_columns)
    return tuple(chunks)


def _spans(out_chunks: tuple[int, ...], taps: Any, in_bounds: np.ndarray) -> list[tuple[Span, range]]:
    """For each output chunk along one axis: its :class:`Span` and the input blocks it reads."""
    result = []
    out_start = 0
    starts, stops = _read_bounds(taps)
    for chunk in out_chunks:
        out_stop = out_start + chunk
        in_start = int(starts[out_start:out_stop].min())
        in_stop = int(stops[out_start:out_stop].max())
        first_block = int(np.searchsorted(in_bounds, in_start, side="right")) - 1
        last_block = int(np.searchsorted(in_bounds, in_stop, side="left")) - 1
        span = Span(out_start, out_stop, in_start, in_stop, int(in_bounds[first_block]))
        result.append((span, range(first_block, last_block + 1)))
        out_start = out_stop
    return result


def _neighbour_offsets(spans: list[tuple[Span, range]], chunks: tuple[int, ...]) -> tuple[int, ...] | None:
    """Along one axis, where output blocks map one to one onto input blocks and each reads its
    own input block and at most the blocks next to it: which of the blocks -1, 0, +1 from its
    own any output block reads. None otherwise."""
    if len(spans) != len(chunks):
        return None
    offsets = {0}
    for b, (_, blocks) in enumerate(spans):
        if not b - 1 <= blocks.start <= b < blocks.stop <= b + 2:
            return None
        offsets.update(block - b for block in blocks)
    return tuple(sorted(offsets))


def _block_key(name: str, others: tuple[int, ...], axes: tuple[int, int], row: int, column: int) -> tuple:
    """The key of block (``row``, ``column``) along H and W and ``others`` along the other axes, in order."""
    index = list(others)
    for axis, block in sorted(zip(axes, (row, column))):
        index.insert(axis, block)
    return (name, *index)


def _region_taps(taps: Any, span: Span, origin: int, scale: int = 1) -> Any:
    """``taps`` (any of the tap tuples) of the span's outputs, their input indices rebased to
    input index ``origin`` (``scale`` values per index).

    Read-only like the cached full-axis taps, so numba reuses the kernels compiled for those.
    """
    out_slice = slice(span.out_start * scale, span.out_stop * scale)
    fields = []
    for field, values in zip(taps._fields, taps):
        values = values[out_slice]
        if field in ("first", "second"):  # input indices; the rest are weights and counts
            values = values - origin * scale
            values.setflags(write=False)
        fields.append(values)
    return type(taps)(*fields)


def _index(ndim: int, axes: tuple[int, int], rows: slice, columns: slice) -> tuple[slice, ...]:
    index = [slice(None)] * ndim
    index[axes[0]], index[axes[1]] = rows, columns
    return tuple(index)


def _cut(ndim: int, axes: tuple[int, int], rows: Span, columns: Span, block_rows: tuple[int, int],
         block_columns: tuple[int, int]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """(the part of an input block that the region of ``rows`` and ``columns`` reads, where that
    part goes in the region), for the block holding input rows and columns ``[start, stop)``."""
    (top, bottom), (left, right) = block_rows, block_columns
    part = _index(ndim, axes, rows.overlap(top, bottom, top), columns.overlap(left, right, left))
    where = _index(ndim, axes, rows.overlap(top, bottom, rows.in_start), columns.overlap(left, right, columns.in_start))
    return part, where


_scratch = threading.local()


def _region_buffer(shape: list[int], dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-contiguous array for one task's input region, in memory this thread reuses.

    A fresh array of that size would be new pages for the kernel to clear and fault in on every
    task (distributed starts workers with ``MALLOC_TRIM_THRESHOLD_``, which keeps glibc from
    recycling large blocks): each thread keeps the largest region it has assembled instead.
    """
    nbytes = math.prod(shape) * dtype.itemsize
    buffer = getattr(_scratch, "region", None)
    if buffer is None or buffer.size < nbytes:
        buffer = _scratch.region = np.empty(nbytes, np.uint8)
    return buffer[:nbytes].view(dtype).reshape(shape)


def _assemble(pieces: list[tuple[tuple[slice, ...], np.ndarray]], shape: list[int]) -> np.ndarray:
    """The input region of ``shape`` from ``pieces`` (where in the region, the values): the
    piece itself where one C-contiguous piece holds it all, else one copy into this thread's
    region buffer (the kernels read C-contiguous input)."""
    pieces = [(where, part) for where, part in pieces if part.size]  # neighbours' parts may be empty
    if len(pieces) == 1 and pieces[0][1].flags.c_contiguous:
        return pieces[0][1]
    region = _region_buffer(shape, pieces[0][1].dtype)
    for where, part in pieces:
        region[where] = part
    return region


def _region_shape(like: np.ndarray, axes: tuple[int, int], rows: Span, columns: Span) -> list[int]:
    shape = list(like.shape)
    shape[axes[0]], shape[axes[1]] = rows.in_stop - rows.in_start, columns.in_stop - columns.in_start
    return shape


def _rows_within(row_taps: Any, most: int, lines: int) -> int:
    """The most output rows per task, up to ``most`` and at least one, such that no task reads
    more than ``lines`` input rows (each buffered interpolated by a task of the plain kernels)."""
    first, stop = _read_bounds(row_taps)

    def widest(rows: int) -> int:  # the most input rows that ``rows`` consecutive outputs read
        return int((stop[rows - 1 :] - first[: len(first) - rows + 1]).max())

    low, high = 1, min(most, len(first))  # widest() grows with rows: the largest that fits
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if widest(middle) <= lines else (low, middle - 1)
    return low


def run_region(
    src: np.ndarray, target: np.ndarray, plan: Plan, row_taps: Any, column_taps: Any, rows_first: bool,
    scratch_bytes: int = TASK_SCRATCH_BYTES,
) -> None:
    """Resize kernel-layout ``src`` into C-contiguous ``target`` (in the kernels' output dtype:
    float32 for float16) with the given taps, as the table kernels of the whole request would.

    The taps are those of ``plan`` (the whole array), sliced to ``target``'s rows and columns
    and rebased to ``src``: everything that depends on sizes (the taps, the antialias pass
    order ``rows_first``) comes from the whole array, never from the region. ``scratch_bytes``
    bounds the rows a plain task buffers (:data:`TASK_SCRATCH_BYTES`). The plain taps of
    a channels-last image with few channels must already be interleaved (see :func:`_resize_region`).
    """
    from . import _cpu  # numba loads with the first block, not with this module

    src = np.ascontiguousarray(src, dtype=np.float32 if plan.dtype == np.float16 else plan.dtype)
    if plan.antialias:
        from . import _antialias

        rows_per_task, serial = _cpu.schedule(src.shape[0], target.shape[1], max(src.size, target.size))
        # the table body (no fixed taps: they are found from an axis's own sizes)
        _antialias.run_tables(src, target, row_taps, column_taps, None, rows_first, rows_per_task, serial)
        return
    if plan.legacy and plan.layout == "planes":  # the legacy body works on (N, H, W, C)
        src, target = src[..., np.newaxis], target[..., np.newaxis]
    rows_per_task, serial = _cpu.schedule(src.shape[0], target.shape[1], target.size)
    # A task buffers the input rows it reads, interpolated to the output's width: one task for a
    # whole block (one thread) would buffer as many bytes as the block again, fresh memory each
    # time. Capped instead (:data:`TASK_SCRATCH_BYTES`); the bits do not depend on the split.
    line_bytes = target[0, 0].size * plan.compute_dtype.itemsize
    rows_per_task = _rows_within(row_taps, rows_per_task, scratch_bytes // line_bytes)
    # As the in-memory resize: a period for channels-first only (channels-last taps are interleaved)
    x_period = plan.column_period(column_taps) if plan.layout == "planes" else NO_PERIOD
    _cpu.run_tasks(src, target, row_taps, column_taps, rows_per_task, serial, x_period)


def _resize_region(
    plan: Plan, channels_first: bool, axes: tuple[int, int], rows_first: bool, rows: Span, columns: Span,
    region: np.ndarray,
) -> np.ndarray:
    """One output block from ``region``, the input rows and columns that the block reads
    (:class:`Span` ``rows`` and ``columns``)."""
    shape = list(region.shape)
    shape[axes[0]], shape[axes[1]] = rows.out_stop - rows.out_start, columns.out_stop - columns.out_start
    # The kernels store float16 results in float32 (as fastinterp.resize does), rounded once at the end.
    result = np.empty(shape, np.float32 if plan.out_dtype == np.float16 else plan.out_dtype)
    layout, src = numpy_layout(region, channels_first)
    _, target = numpy_layout(result, channels_first)
    ys, xs = _full_taps(plan)
    scale = 1
    if layout == "pixels" and not plan.legacy and not plan.antialias and src.shape[3] <= INTERLEAVE_MAX_CHANNELS:
        # As fastinterp.resize does: each image row is one flat row of W * C values, resized
        # with the planes body and interleaved taps (a few channels make too short an inner loop).
        scale = src.shape[3]
        xs = interleaved_taps(plan.in_w, plan.out_w, plan.align, plan.compute_dtype, scale)
        src, target = src.reshape(*src.shape[:2], -1), target.reshape(*target.shape[:2], -1)
    row_taps, column_taps = _region_taps(ys, rows, rows.in_start), _region_taps(xs, columns, columns.in_start, scale)
    run_region(src, target, plan, row_taps, column_taps, rows_first)
    return result.astype(plan.out_dtype, copy=False)


def _resize_blocks(
    plan: Plan, channels_first: bool, axes: tuple[int, int], rows_first: bool, rows: Span, columns: Span,
    blocks: list[list[np.ndarray]],
) -> np.ndarray:
    """One output block from the input blocks around its region (rows of blocks along H, each a list along W)."""
    pieces = []
    top = rows.slab_start
    for line in blocks:
        bottom, left = top + line[0].shape[axes[0]], columns.slab_start
        for block in line:
            right = left + block.shape[axes[1]]
            part, where = _cut(block.ndim, axes, rows, columns, (top, bottom), (left, right))
            pieces.append((where, block[part]))
            left = right
        top = bottom
    region = _assemble(pieces, _region_shape(blocks[0][0], axes, rows, columns))
    return _resize_region(plan, channels_first, axes, rows_first, rows, columns, region)


def _copy_parts(parts: tuple[tuple[slice, ...], ...], block: np.ndarray) -> tuple[np.ndarray, ...]:
    """Copies of ``parts`` of an input block, for the output blocks next to its own: the block
    itself can then be let go as soon as its own output block is done."""
    return tuple(block[part].copy() for part in parts)


def _resize_with_halos(
    plan: Plan, channels_first: bool, axes: tuple[int, int], rows_first: bool, rows: Span, columns: Span,
    own: tuple[tuple[slice, ...], tuple[slice, ...]], halos: tuple[tuple[int, tuple[slice, ...]], ...],
    block: np.ndarray, neighbours: list[tuple[np.ndarray, ...]],
) -> np.ndarray:
    """One output block from its own input block ``block`` (``own``: the part it reads, where
    that goes in the region) and its neighbours' copied parts (``halos``: for each neighbour,
    which of its parts, and where that goes)."""
    part, where = own
    pieces = [(where, block[part])]
    pieces.extend((halo_where, parts[position]) for parts, (position, halo_where) in zip(neighbours, halos))
    region = _assemble(pieces, _region_shape(block, axes, rows, columns))
    return _resize_region(plan, channels_first, axes, rows_first, rows, columns, region)


def resize(
    darr: Any,
    w_rate: float | None = None,
    h_rate: float | None = None,
    *,
    align: str = "center",
    size: tuple[int, int] | None = None,
    channels_first: bool = False,
    legacy: bool = False,
    antialias: bool = False,
) -> da.Array:
    """Bilinear resize of a dask array, lazily, block by block: :func:`fastinterp.resize` for
    arrays that need not fit in memory.

    The options, layouts, output size and dtype are those of :func:`fastinterp.resize` on a
    numpy array: (H, W), (H, W, C) or (N, H, W, C), or with ``channels_first=True`` (C, H, W)
    or (N, C, H, W); ``antialias=True`` blends every input under the widened filter of a
    downscaled axis, and each block then reads the wider region that filter covers. The
    result is bit-identical to :func:`fastinterp.resize` of the whole array in memory,
    whatever the input's chunks.

    The output's chunks follow the input's: chunk boundaries along H and W are the input's
    scaled by the rate (rounded), and blocks larger than dask's ``array.chunk-size`` setting
    are cut; other axes keep the input's chunks. Each output block is one task that reads only
    the input blocks holding the rows and columns its taps need. Everything is validated here,
    before anything is computed.
    """
    if not isinstance(darr, da.Array):
        raise TypeError(
            f"fastinterp.dask.resize takes a dask array, got {type(darr).__name__}; "
            "use fastinterp.resize for numpy arrays and tensors"
        )
    if not isinstance(channels_first, bool):
        raise TypeError(f"channels_first must be True or False, got {channels_first!r}")
    if not isinstance(darr._meta, np.ndarray):
        raise TypeError(f"fastinterp.dask.resize needs numpy blocks, got blocks of {type(darr._meta).__name__}")
    if any(math.isnan(c) for chunks in darr.chunks for c in chunks):
        raise ValueError("the dask array has unknown chunk sizes; call compute_chunk_sizes() first")
    plan = _make_plan(darr, w_rate, h_rate, size, align, legacy, antialias, channels_first)
    axes = _spatial_axes(darr.shape, channels_first)
    out_chunks = _output_chunks(darr, plan, axes, parse_bytes(dask.config.get("array.chunk-size")))
    name = "fastinterp-resize-" + tokenize(darr.name, plan, channels_first, out_chunks)
    ys, xs = _full_taps(plan)
    rows_first = False
    if plan.antialias:  # the whole array's pass order: its own sizes could choose the other, with other bits
        from ._antialias import vertical_first

        rows_first = vertical_first(plan.in_h, plan.in_w, ys, xs)
    row_axis, col_axis = axes
    row_spans = _spans(out_chunks[row_axis], ys, np.cumsum((0, *darr.chunks[row_axis])))
    column_spans = _spans(out_chunks[col_axis], xs, np.cumsum((0, *darr.chunks[col_axis])))
    other_axes = [axis for axis in range(darr.ndim) if axis not in axes]
    others = list(itertools.product(*(range(darr.numblocks[axis]) for axis in other_axes)))
    graph: dict[tuple, Any] = {}
    offsets = _neighbour_offsets(row_spans, darr.chunks[row_axis]), _neighbour_offsets(
        column_spans, darr.chunks[col_axis]
    )
    if None not in offsets:
        # Output blocks map one to one onto input blocks. Each reads its own input block, and
        # copies of the parts of its neighbours that it needs, which one small task per input
        # block cuts out for all of them: an input block is then held only until its own output
        # block and that task are done, and dask runs the graph row after row of blocks. (With
        # each task reading its neighbours' whole blocks, dask ran the outputs that read one
        # block first, all over the array, and held, then spilled, most of the input.)
        parts_name = "fastinterp-halos-" + tokenize(name)
        bounds = [np.cumsum((0, *darr.chunks[axis])).tolist() for axis in axes]
        halo_parts: dict[tuple[int, int], list[tuple[slice, ...]]] = {}  # input block -> parts its neighbours read
        tasks = []
        for (i, (rows, _)), (j, (columns, _)) in itertools.product(enumerate(row_spans), enumerate(column_spans)):
            own, halos_of_block = None, []
            # Every block takes parts from the same neighbours, empty or not: dask orders such a
            # regular graph row after row (blocks that need nothing from their neighbours would
            # otherwise run first, all over the array, each holding its input block for the rest).
            for r, c in itertools.product(
                (i + k for k in offsets[0] if 0 <= i + k < len(row_spans)),
                (j + k for k in offsets[1] if 0 <= j + k < len(column_spans)),
            ):
                cut = _cut(darr.ndim, axes, rows, columns, bounds[0][r : r + 2], bounds[1][c : c + 2])
                if (r, c) == (i, j):
                    own = cut
                else:
                    parts = halo_parts.setdefault((r, c), [])
                    halos_of_block.append(((r, c), len(parts), cut[1]))
                    parts.append(cut[0])
            tasks.append((i, j, rows, columns, own, halos_of_block))
        parts_graph = {
            _block_key(parts_name, index, axes, r, c): (
                functools.partial(_copy_parts, tuple(parts)), _block_key(darr.name, index, axes, r, c)
            )
            for (r, c), parts in halo_parts.items()
            for index in others
        }
        for i, j, rows, columns, own, halos_of_block in tasks:
            halos_arg = tuple((position, where) for _, position, where in halos_of_block)
            job = functools.partial(
                _resize_with_halos, plan, channels_first, axes, rows_first, rows, columns, own, halos_arg
            )
            for index in others:
                neighbours = [_block_key(parts_name, index, axes, r, c) for (r, c), _, _ in halos_of_block]
                graph[_block_key(name, index, axes, i, j)] = (job, _block_key(darr.name, index, axes, i, j), neighbours)
        parts_layer = HighLevelGraph.from_collections(parts_name, parts_graph, dependencies=[darr])
        layers, dependencies = dict(parts_layer.layers), dict(parts_layer.dependencies)
        layers[name] = MaterializedLayer(graph)
        dependencies[name] = {parts_name, *darr.__dask_layers__()}
        layer = HighLevelGraph(layers, dependencies)
    else:  # one task per output block reads the input blocks its region overlaps
        for (i, (rows, row_blocks)), (j, (columns, column_blocks)) in itertools.product(
            enumerate(row_spans), enumerate(column_spans)
        ):
            job = functools.partial(_resize_blocks, plan, channels_first, axes, rows_first, rows, columns)
            for index in others:
                blocks = [[_block_key(darr.name, index, axes, r, c) for c in column_blocks] for r in row_blocks]
                graph[_block_key(name, index, axes, i, j)] = (job, blocks)
        layer = HighLevelGraph.from_collections(name, graph, dependencies=[darr])
    return da.Array(layer, name, out_chunks, meta=np.empty((0,) * darr.ndim, plan.out_dtype))

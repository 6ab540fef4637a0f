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
case: output chunks are the input's scaled), each task reads its own input block widened by
the halos, through dask's overlap layer, which dask runs row after row, holding few input
blocks at once. Otherwise each task reads the input blocks its region overlaps and copies the
region out of them.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, NamedTuple

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph
from dask.utils import parse_bytes

from ._coords import interleaved_taps
from ._plan import (
    INTERLEAVE_MAX_CHANNELS, Plan, antialias_applies, check_align, check_antialias, check_dtype, numpy_layout,
    output_size,
)

__all__ = ["resize"]

#: Bytes of interpolated rows one task of the plain kernels buffers at most (about 1 MiB).
TASK_SCRATCH_BYTES = 1 << 20


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
        """Input indices ``[start, stop)`` that this span reads, counted from ``origin``."""
        return slice(max(start, self.in_start) - origin, min(stop, self.in_stop) - origin)


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


def _halo(spans: list[tuple[Span, range]], chunks: tuple[int, ...]) -> tuple[int, int] | None:
    """Input indices (before, after) beyond its own input block that any output block reads
    along one axis, where output blocks map one to one onto input blocks and only the next
    blocks hold those (dask's overlap takes halos from the neighbours only); else None."""
    if len(spans) != len(chunks):
        return None
    bounds = np.cumsum((0, *chunks))
    before = max(0, *(int(bounds[b]) - span.in_start for b, (span, _) in enumerate(spans)))
    after = max(0, *(span.in_stop - int(bounds[b + 1]) for b, (span, _) in enumerate(spans)))
    if len(chunks) > 1 and (before > min(chunks[:-1]) or after > min(chunks[1:])):
        return None
    return before, after


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


def _assemble(blocks: list[list[np.ndarray]], axes: tuple[int, int], rows: Span, columns: Span) -> np.ndarray:
    """The input region of ``rows`` and ``columns`` from the blocks that hold it (rows of blocks
    along H, each a list along W): a view when one block holds it, else one copy."""
    ndim = blocks[0][0].ndim
    pieces = []  # (where in the region, the block's part)
    top = rows.slab_start
    for line in blocks:
        bottom, left = top + line[0].shape[axes[0]], columns.slab_start
        for block in line:
            right = left + block.shape[axes[1]]
            part = _index(ndim, axes, rows.overlap(top, bottom, top), columns.overlap(left, right, left))
            where = _index(
                ndim, axes, rows.overlap(top, bottom, rows.in_start), columns.overlap(left, right, columns.in_start)
            )
            pieces.append((where, block[part]))
            left = right
        top = bottom
    if len(pieces) == 1:
        return pieces[0][1]
    shape = list(blocks[0][0].shape)
    shape[axes[0]], shape[axes[1]] = rows.in_stop - rows.in_start, columns.in_stop - columns.in_start
    region = np.empty(shape, blocks[0][0].dtype)
    for where, part in pieces:
        region[where] = part
    return region


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
    a channels-last image with few channels must already be interleaved (see :func:`_resize_block`).
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
    # A task buffers the input rows it reads, interpolated to the output's width: cap it, since
    # one task for a whole block (one thread) would hold as many bytes as the block again, on
    # a worker whose memory is what limits out-of-core work. The bits do not depend on it.
    row_bytes = target[0, 0].size * plan.compute_dtype.itemsize * max(1, -(-src.shape[1] // target.shape[1]))
    rows_per_task = max(1, min(rows_per_task, scratch_bytes // row_bytes))
    _cpu.run_tasks(src, target, row_taps, column_taps, rows_per_task, serial)


def _resize_region(
    plan: Plan, channels_first: bool, axes: tuple[int, int], rows_first: bool, rows: Span, columns: Span,
    origin: tuple[int, int], region: np.ndarray,
) -> np.ndarray:
    """One output block from ``region``, input rows and columns from ``origin`` that hold all
    the block reads (:class:`Span` ``rows`` and ``columns``)."""
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
    row_taps, column_taps = _region_taps(ys, rows, origin[0]), _region_taps(xs, columns, origin[1], scale)
    run_region(src, target, plan, row_taps, column_taps, rows_first)
    return result.astype(plan.out_dtype, copy=False)


def _resize_blocks(
    plan: Plan, channels_first: bool, axes: tuple[int, int], rows_first: bool, rows: Span, columns: Span,
    blocks: list[list[np.ndarray]],
) -> np.ndarray:
    """One output block from the input blocks around its region (rows of blocks along H, each a list along W)."""
    region = _assemble(blocks, axes, rows, columns)
    origin = (rows.in_start, columns.in_start)
    return _resize_region(plan, channels_first, axes, rows_first, rows, columns, origin, region)


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
    halos = _halo(row_spans, darr.chunks[row_axis]), _halo(column_spans, darr.chunks[col_axis])
    graph: dict[tuple, Any] = {}
    if None not in halos:
        # Each output block from its own input block widened by the halos, through dask's
        # overlap layer: dask orders that graph row after row, so few input blocks are held at
        # once. (With one task reading the blocks themselves, it runs the outputs that read one
        # block first all over the array and holds, then spills, most of the input.)
        depth = {axis: halo for axis, halo in zip(axes, halos) if halo != (0, 0)}
        source = da.overlap.overlap_internal(darr, depth) if depth else darr
        # where each widened block begins: its own block's start, less the halo before it (none for the first)
        origins = [
            [int(start) - (halo[0] if k else 0) for k, start in enumerate(np.cumsum((0, *darr.chunks[axis])))]
            for axis, halo in zip(axes, halos)
        ]
        for (i, (rows, _)), (j, (columns, _)) in itertools.product(enumerate(row_spans), enumerate(column_spans)):
            origin = (origins[0][i], origins[1][j])
            job = functools.partial(_resize_region, plan, channels_first, axes, rows_first, rows, columns, origin)
            for index in others:
                graph[_block_key(name, index, axes, i, j)] = (job, _block_key(source.name, index, axes, i, j))
    else:  # one task per output block reads the input blocks its region overlaps
        source = darr
        for (i, (rows, row_blocks)), (j, (columns, column_blocks)) in itertools.product(
            enumerate(row_spans), enumerate(column_spans)
        ):
            job = functools.partial(_resize_blocks, plan, channels_first, axes, rows_first, rows, columns)
            for index in others:
                blocks = [[_block_key(darr.name, index, axes, r, c) for c in column_blocks] for r in row_blocks]
                graph[_block_key(name, index, axes, i, j)] = (job, blocks)
    layer = HighLevelGraph.from_collections(name, graph, dependencies=[source])
    return da.Array(layer, name, out_chunks, meta=np.empty((0,) * darr.ndim, plan.out_dtype))

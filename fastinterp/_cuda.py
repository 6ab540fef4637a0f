"""CUDA backend: numba.cuda kernels behind :func:`fastinterp.resize` and the torch adjoint.

Imported only when a device array, ``backend="cuda"`` or ``device=`` asks for it.

Every kernel sees C-contiguous data as a flat array in one 4-D view ``(outer, rows, cols,
inner)``: channels-first planes are ``(P, H, W, 1)``, channels-last images ``(N, H, W, C)``.
A thread owns one (inner, col) position and loops over rows and outer items, so consecutive
threads write consecutive addresses and the column tables are read once per thread. Blocks
and grid come from the problem's shape and the device's multiprocessor count
(:func:`launch_shape`).

* forward: the taps of :mod:`fastinterp._coords`, as element offsets, copied to the device
  once per shape. A thread walks down a run of output rows, interpolating each source row
  it needs horizontally once and blending two of them per output element (at 8x: one blend
  and one store per element). The arithmetic is the CPU kernels', operation for operation,
  with non-contracting ``*_rn`` intrinsics (NVVM would otherwise fuse multiply-adds), so
  float outputs equal the CPU's bit for bit and the legacy output the original's.
* adjoint: the transpose of the forward, two gathers. The vertical kernel walks strips of
  input rows down the output-gradient rows that read them (the forward's row taps; the
  strips' extents from :func:`fastinterp._coords.inverse_axis_taps`), lanes on consecutive
  columns (coalesced, each gradient element loaded once, or twice at a strip boundary,
  several loads in flight per thread), keeping two running row sums and storing (P, H, OW)
  vertical sums; the horizontal kernel sums those along each row. Every input element sums
  its readers in a fixed (ascending) order, so the result is deterministic, without atomics.

Indices are unsigned 64-bit: no wrap-around code per access, no overflow past 2**31.
Launches are specialized and configured once per shape, stream and dtypes. For torch, what
a request resolves to (plan, layout, launch) is kept per tensor layout and arguments, and
the numba views and stream per (addresses, stream) (see :meth:`_Launch.on_tensors`).
"""

from __future__ import annotations

import functools
import math
import sys
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numba
import numpy as np
from numba import cuda

from ._api import (
    Plan, _check_out_numpy, _numpy_layout, _user_out_shape, check_align, check_tensor_out, make_plan, mark_written,
)
from ._coords import axis_taps, inverse_axis_taps

_SIMULATED = bool(getattr(numba.config, "ENABLE_CUDASIM", 0))

#: Threads per block (128 was fastest for many small maps on an H200, and as fast for larger).
THREADS_PER_BLOCK = 128
#: Blocks launched, in multiples of what the GPU holds at once (8 was fastest on an H200).
WAVES = 8
_MAX_GRID_YZ = 65535
_MAX_THREADS_PER_SM = 2048
_MAX_BLOCKS_PER_SM = 32
#: Length of the header (problem dimensions) that starts every device index table.
_HEADER = 8
#: The adjoint's threads per block, output rows each thread loads ahead, output columns it
#: walks at once, input rows per strip, and register cap of its vertical kernel. On an H100,
#: (1, 2048, 24, 24) from 8x: 183 us here (3 blocks of 256 per SM); uncapped, ptxas takes
#: 94 registers (2 blocks): 217; capped at 64 it spills: 234; 6 columns and 2 rows ahead, or
#: 128 threads, or strips of 48 rows: the same (benchmarks/results/gpu-h100.md).
ADJOINT_THREADS = 256
ADJOINT_LOADS_IN_FLIGHT = 4
ADJOINT_COLUMNS_PER_THREAD = 4
ADJOINT_STRIP_ROWS = 24
ADJOINT_MAX_REGISTERS = 80

# ----------------------------------------------------------------------------------------
# Arithmetic. The simulator runs kernels as Python, where numpy scalar operations already
# round once per operation, exactly like the _rn intrinsics it does not implement.
if _SIMULATED:
    def _mul(a, b):
        return a * b

    def _add(a, b):
        return a + b

    _mul32 = _mul64 = _mul
    _add32 = _add64 = _add
    _rint32 = np.rint
else:  # pragma: no cover - compiled for a real GPU only
    from numba.cuda import libdevice

    _mul32, _add32, _rint32 = libdevice.fmul_rn, libdevice.fadd_rn, libdevice.rintf
    _mul64, _add64 = libdevice.dmul_rn, libdevice.dadd_rn


@dataclass(frozen=True)
class _Arithmetic:
    """The operations of one compute dtype."""

    cast: Callable  # np.float32 or np.float64: a loaded element into the compute dtype
    mul: Callable
    add: Callable


_ARITHMETIC = {
    "float32": _Arithmetic(np.float32, _mul32, _add32),
    "float64": _Arithmetic(np.float64, _mul64, _add64),
}


@cuda.jit(device=True)
def _thread_position(channel_blocks):
    """(inner index, col, row slot, row slots) of this thread, all unsigned 64-bit."""
    block = np.uint64(cuda.blockIdx.x)
    if channel_blocks == 1:  # skip a 64-bit division in the common case
        inner = np.uint64(cuda.threadIdx.x)
        col = block * np.uint64(cuda.blockDim.y) + np.uint64(cuda.threadIdx.y)
    else:
        inner = (block % channel_blocks) * np.uint64(cuda.blockDim.x) + np.uint64(cuda.threadIdx.x)
        col = (block // channel_blocks) * np.uint64(cuda.blockDim.y) + np.uint64(cuda.threadIdx.y)
    slot = np.uint64(cuda.blockIdx.y) * np.uint64(cuda.blockDim.z) + np.uint64(cuda.threadIdx.z)
    return inner, col, slot, np.uint64(cuda.gridDim.y) * np.uint64(cuda.blockDim.z)


def _correct_rows(arith: _Arithmetic) -> tuple[Callable, Callable]:
    """The CPU kernels' order: each source row horizontally, then two rows vertically. A
    clamped axis (both taps one edge pixel) reads it alone, as on the CPU: an infinity there
    stays infinite instead of ``inf * 0 = NaN``."""
    mul, add = arith.mul, arith.add

    @cuda.jit(device=True)
    def row_terms(left, right, w_left, w_right, clamped):
        value = left if clamped else add(mul(left, w_left), mul(right, w_right))
        return value, value

    @cuda.jit(device=True)
    def blend(upper, lower, w_upper, w_lower, clamped):
        return upper[0] if clamped else add(mul(upper[0], w_upper), mul(lower[0], w_lower))

    return row_terms, blend


def _legacy_rows(arith: _Arithmetic) -> tuple[Callable, Callable]:
    """The original's ``ul*x2_x*y2_y + ur*x_x1*y2_y + ll*x2_x*y_y1 + lr*x_x1*y_y1``, left to right."""
    mul, add = arith.mul, arith.add

    @cuda.jit(device=True)
    def row_terms(left, right, x2_x, x_x1, clamped):  # (the original reads both taps, clamped or not)
        return mul(left, x2_x), mul(right, x_x1)

    @cuda.jit(device=True)
    def blend(upper, lower, y2_y, y_y1, clamped):
        value = add(mul(upper[0], y2_y), mul(upper[1], y2_y))
        value = add(value, mul(lower[0], y_y1))
        return add(value, mul(lower[1], y_y1))

    return row_terms, blend


@cuda.jit(device=True)
def _store_float(out, index, value):
    out[index] = value  # float16 outputs round to nearest even, as numpy's cast


def _integer_store(low: float, high: float) -> Callable:
    @cuda.jit(device=True)
    def store(out, index, value):
        rounded = _rint32(value)
        if rounded < low:
            rounded = low
        elif rounded > high:
            rounded = high
        out[index] = rounded

    return store


@cuda.jit(device=True)
def _store_legacy_uint8(out, index, value):
    # numpy's float -> uint8 store: a C cast through int32 (truncate, wrap modulo 256),
    # 0 for NaN, infinities and anything outside int32.
    if value >= -2147483648.0 and value < 2147483648.0:
        out[index] = np.uint8(np.int64(value) & 0xFF)
    else:
        out[index] = np.uint8(0)


@functools.lru_cache(maxsize=None)
def _forward_kernel(compute: str, store_kind: str, out_dtype: str) -> Any:
    """The forward kernel for a compute dtype and a way of storing (float, integer, legacy)."""
    arith = _ARITHMETIC[compute]
    cast = arith.cast
    row_terms, blend = _legacy_rows(arith) if store_kind == "legacy" else _correct_rows(arith)
    if store_kind == "integer":
        info = np.iinfo(out_dtype)
        store = _integer_store(float(info.min), float(info.max))
    else:
        store = _store_legacy_uint8 if store_kind == "legacy" else _store_float

    @cuda.jit(device=True)
    def source_row(src, row, left, right, w_left, w_right):
        return row_terms(cast(src[row + left]), cast(src[row + right]), w_left, w_right, left == right)

    @cuda.jit
    def forward(src, out, table, weights):
        """out[o, i, j, c] from src[o, {upper,lower}[i], {left,right}[j], c].

        ``table``: header (out_h, out_w, inner, channel_blocks, in_image, out_image, outer,
        rows_per_thread); (left, right) column offsets for each output column; the segment
        of each output row; the segments (start row, upper, lower row offsets), then
        (out_h, 0, 0). A segment is a run of output rows that read the same two source
        rows. ``weights``: (w_upper, w_lower) for each output row, then (w_left, w_right)
        for each output column.

        A thread walks down a run of output rows of one (channel, column), segment by
        segment: it interpolates a segment's two source rows horizontally once (or takes
        them from the previous segment) and then blends them vertically for each of its
        output rows. At 8x that is one blend and one store per output element.
        """
        out_h, out_w, inner, channel_blocks = table[0], table[1], table[2], table[3]
        in_image, out_image, outer, rows_per_thread = table[4], table[5], table[6], table[7]
        c, j, row_slot, _ = _thread_position(channel_blocks)
        first_row = row_slot * rows_per_thread
        if c >= inner or j >= out_w or first_row >= out_h:
            return
        end_row = first_row + rows_per_thread
        if end_row > out_h:
            end_row = out_h
        col = np.uint64(_HEADER) + np.uint64(2) * j
        left, right = table[col] + c, table[col + np.uint64(1)] + c
        col_weight = np.uint64(2) * (out_h + j)
        w_left, w_right = weights[col_weight], weights[col_weight + np.uint64(1)]
        segment_of_row = np.uint64(_HEADER) + np.uint64(2) * out_w
        segments = segment_of_row + out_h
        row_step = out_w * inner
        no_row = np.uint64(0xFFFFFFFFFFFFFFFF)  # no source offset equals it
        o = np.uint64(cuda.blockIdx.z)
        while o < outer:
            base = o * in_image
            dest = o * out_image + first_row * row_step + j * inner + c
            upper_key, lower_key = no_row, no_row
            upper_terms = lower_terms = row_terms(cast(0), cast(0), w_left, w_right, False)
            entry = segments + np.uint64(3) * table[segment_of_row + first_row]
            i = first_row
            while i < end_row:
                upper, lower, segment_end = table[entry + np.uint64(1)], table[entry + np.uint64(2)], table[entry + np.uint64(3)]
                if segment_end > end_row:
                    segment_end = end_row
                if upper != upper_key:
                    if upper == lower_key:
                        upper_terms = lower_terms
                    else:
                        upper_terms = source_row(src, base + upper, left, right, w_left, w_right)
                    upper_key = upper
                if lower != lower_key:
                    if lower == upper_key:
                        lower_terms = upper_terms
                    else:
                        lower_terms = source_row(src, base + lower, left, right, w_left, w_right)
                    lower_key = lower
                while i < segment_end:
                    pair = np.uint64(2) * i
                    store(out, dest, blend(upper_terms, lower_terms, weights[pair], weights[pair + np.uint64(1)],
                                           upper == lower))
                    dest += row_step
                    i += np.uint64(1)
                entry += np.uint64(3)
            o += np.uint64(cuda.gridDim.z)

    return forward


@cuda.jit(device=True)
def _smaller(a, b):
    return a if a < b else b  # (the builtin min does not compile for the device everywhere)


@functools.lru_cache(maxsize=None)
def _adjoint_kernels(
    compute: str, loads_in_flight: int, columns_per_thread: int, max_registers: int | None
) -> tuple[Any, Any]:
    """The adjoint's two kernels, (vertical, horizontal), for a compute dtype, the output rows
    each thread loads ahead, the output columns it walks at once, and the vertical kernel's
    register cap (None: the compiler's choice)."""
    cast = _ARITHMETIC[compute].cast
    element = np.float32 if compute == "float32" else np.float64
    # The simulator takes no register cap.
    options = {} if _SIMULATED or max_registers is None else {"max_registers": max_registers}
    ahead, across = loads_in_flight, columns_per_thread
    window = ahead * across  # (local array sizes must be constants)

    @cuda.jit(device=True)
    def store_and_shift(sums, at, part, width, now, following):
        """Store a finished input row's sums (``now``, columns ``at + g * part`` below ``width``)
        and move the window down a row."""
        for g in range(across):
            col = np.uint64(g) * part
            if col < width:
                sums[at + col] = now[g]
            now[g] = following[g]
            following[g] = 0

    @cuda.jit(**options)
    def vertical(grad, sums, table, weights):
        """sums[p, i, c] = sum over output rows r reading input row i of w_y * grad[p, r, c],
        for rows of ``out_w`` columns (the output's width, or the input's when the horizontal
        pass ran first).

        ``table``: header (planes, out_h, out_w, in_h, strip_rows, strips per plane, part),
        the rows' CSR (start [in_h + 1], output rows) of :func:`inverse_axis_taps`, the
        forward's upper row of each output row [out_h] (the lower is the next one); ``weights``:
        the upper weights, then the lower ones (0 where clamped).

        A thread takes a strip of input rows of one plane at the output columns ``k + g *
        part`` (lanes on consecutive columns: coalesced) and walks down the output rows that
        read the strip, loading each gradient element once (rows at a strip boundary are read
        by both strips): each output row adds its weighted value to a window of two running
        sums (the rows it reads), and a row's sum is stored once the walk has passed its last
        reader. Every sum adds its terms in ascending output order.
        """
        planes, out_h, out_w, in_h = table[0], table[1], table[2], table[3]
        strip_rows, strips, part = table[4], table[5], table[6]
        one = np.uint64(1)
        y_start = np.uint64(_HEADER)
        y_outputs = y_start + in_h + one
        y_upper = y_outputs + table[y_start + in_h]
        values = cuda.local.array(window, element)
        uppers = cuda.local.array(ahead, np.uint64)
        upper_weights = cuda.local.array(ahead, element)
        lower_weights = cuda.local.array(ahead, element)
        now = cuda.local.array(across, element)
        following = cuda.local.array(across, element)
        item = np.uint64(cuda.blockIdx.x) * np.uint64(cuda.blockDim.x) + np.uint64(cuda.threadIdx.x)
        while item < planes * strips * part:
            plane_strip, k = item // part, item % part
            plane, lo = plane_strip // strips, (plane_strip % strips) * strip_rows
            hi = _smaller(lo + strip_rows, in_h)
            width = out_w - k  # the thread's columns are those below it
            begin_entry, end_entry = table[y_start + lo], table[y_start + hi]
            r = r_end = np.uint64(0)
            if begin_entry < end_entry:  # outputs grow with inputs: the strip's readers are a run
                r, r_end = table[y_outputs + begin_entry], table[y_outputs + end_entry - one] + one
            for g in range(across):
                now[g] = following[g] = 0
            grad_base = plane * out_h * out_w + k
            at = (plane * in_h + lo) * out_w + k
            current = lo  # the input row ``now`` sums; ``following`` sums the next one
            while r < r_end:
                for u in range(ahead):  # the rows' taps first: in flight with the loads below
                    if r + np.uint64(u) < r_end:
                        row = r + np.uint64(u)
                        uppers[u] = table[y_upper + row]
                        upper_weights[u], lower_weights[u] = weights[row], weights[out_h + row]
                for u in range(ahead):
                    if r + np.uint64(u) < r_end:
                        offset = grad_base + (r + np.uint64(u)) * out_w
                        for g in range(across):  # a column past the row reads 0 and is never stored
                            inside = np.uint64(g) * part < width
                            values[u * across + g] = cast(grad[offset + np.uint64(g) * part]) if inside else cast(0)
                for u in range(ahead):
                    if r + np.uint64(u) < r_end:
                        upper = uppers[u]
                        while current < upper:  # (readers of the strip have upper < hi)
                            store_and_shift(sums, at, part, width, now, following)
                            current += one
                            at += out_w
                        # The lower row is the next one (a clamped bottom edge reads one row past
                        # the end with weight 0: no strip stores that row).
                        for g in range(across):
                            value = values[u * across + g]
                            if upper == current:
                                now[g] += upper_weights[u] * value
                                following[g] += lower_weights[u] * value
                            else:  # the row above the strip: its lower row is the strip's first
                                now[g] += lower_weights[u] * value
                r += np.uint64(ahead)
            while current < hi:  # the strip's last rows, and rows nobody reads (zeros)
                store_and_shift(sums, at, part, width, now, following)
                current += one
                at += out_w
            item += np.uint64(cuda.gridDim.x) * np.uint64(cuda.blockDim.x)

    @cuda.jit
    def horizontal(sums, out, table, weights):
        """out[p, i, j] = sum over output columns x reading input column j of w_x * sums[p, i, x].

        ``table``: header (rows: planes * in_h, or planes * out_h when this pass runs first;
        in_w; out_w), the count of readers of each input column [in_w], then the readers
        (output columns) as ``taps[t, j]`` [most readers, in_w], ascending in t; ``weights``:
        their weights, laid out alike. Lanes on consecutive input columns thus read the
        tables coalesced. A thread sums one input pixel in ascending output order, ``ahead``
        loads issued before any is added.
        """
        rows, in_w, out_w = table[0], table[1], table[2]
        counts = np.uint64(_HEADER)
        taps = counts + in_w
        values = cuda.local.array(ahead, element)
        item = np.uint64(cuda.blockIdx.x) * np.uint64(cuda.blockDim.x) + np.uint64(cuda.threadIdx.x)
        while item < rows * in_w:
            base, j = (item // in_w) * out_w, item % in_w
            count = table[counts + j]
            total = cast(0)
            t = np.uint64(0)
            while t < count:
                for u in range(ahead):
                    if t + np.uint64(u) < count:
                        values[u] = cast(sums[base + table[taps + (t + np.uint64(u)) * in_w + j]])
                for u in range(ahead):
                    if t + np.uint64(u) < count:
                        total += weights[(t + np.uint64(u)) * in_w + j] * values[u]
                t += np.uint64(ahead)
            out[item] = total
            item += np.uint64(cuda.gridDim.x) * np.uint64(cuda.blockDim.x)

    return vertical, horizontal


# ----------------------------------------------------------------------------------------
# Launch shapes and device tables.


@dataclass(frozen=True)
class LaunchShape:
    """Block and grid of one launch over an ``(outer, rows, cols, inner)`` output."""

    block: tuple[int, int, int]  # (inner, cols, rows) threads
    grid: tuple[int, int, int]  # (channel blocks * col blocks, row blocks, outer blocks)
    channel_blocks: int


def launch_shape(
    outer: int,
    rows: int,
    cols: int,
    inner: int,
    multiprocessors: int,
    threads_per_block: int = THREADS_PER_BLOCK,
    waves: int = WAVES,
) -> LaunchShape:
    """Shape a launch to the problem: channels innermost, then columns, then row slots.

    A block takes whole channel vectors and whole rows where they fit, so its threads write
    one contiguous run. The grid covers every (channel, column) and then spreads over outer
    items first and rows second until the GPU has ``waves`` times what it holds at once;
    threads walk the rest in loops. Many small maps (2048 x 7 x 7) thus spread over the
    outer items, one large image (3 x 4000 x 6000) over its rows.
    """
    block_inner = min(inner, threads_per_block)
    block_cols = min(cols, threads_per_block // block_inner)
    block_rows = min(rows, threads_per_block // (block_inner * block_cols))
    channel_blocks = -(-inner // block_inner)
    grid_x = channel_blocks * -(-cols // block_cols)
    threads = block_inner * block_cols * block_rows
    wanted = waves * multiprocessors * min(_MAX_BLOCKS_PER_SM, _MAX_THREADS_PER_SM // threads)
    grid_z = min(outer, _MAX_GRID_YZ, -(-wanted // grid_x))
    grid_y = min(-(-rows // block_rows), _MAX_GRID_YZ, -(-wanted // (grid_x * grid_z)))
    return LaunchShape((block_inner, block_cols, block_rows), (grid_x, grid_y, grid_z), channel_blocks)


def _rows_per_thread(rows: int, shape: LaunchShape) -> int:
    return -(-rows // (shape.grid[1] * shape.block[2]))


@functools.lru_cache(maxsize=None)
def _device_count() -> int:
    return 1 if _SIMULATED else len(cuda.gpus)


def _current_device_id() -> int:
    return 0 if _SIMULATED else cuda.current_context().device.id


@functools.lru_cache(maxsize=None)
def _multiprocessors(device_id: int) -> int:
    # The simulator runs every thread as a Python thread: keep its grids small.
    return 1 if _SIMULATED else cuda.get_current_device().MULTIPROCESSOR_COUNT


class _Launch:
    """A kernel with its launch shape and device tables, configured once per stream."""

    def __init__(self, kernel: Any, shape: LaunchShape, table: np.ndarray, weights: np.ndarray) -> None:
        self.kernel, self.shape = kernel, shape
        self.table, self.weights = cuda.to_device(table), cuda.to_device(weights)
        self._configured: dict[Any, Any] = {}
        self._on_tensors: dict[tuple[Any, ...], Callable[[], None]] = {}

    def __call__(self, src: Any, out: Any, stream: Any) -> None:
        # Specialized to the argument dtypes, so calls skip numba's type dispatch. Streams by
        # identity: numba's need not be hashable, and the entry keeps the stream alive.
        # The simulator's kernel[...] configures and returns the shared kernel itself: redo it.
        key = (id(stream), src.dtype, out.dtype)
        configured = None if _SIMULATED else self._configured.get(key)
        if configured is None:
            specialized = self.kernel.specialize(src, out, self.table, self.weights)
            with warnings.catch_warnings():  # numba warns of small grids; small problems make them
                warnings.simplefilter("ignore")
                configured = specialized[self.shape.grid, self.shape.block, stream]
            self._configured[key] = configured
        configured(src, out, self.table, self.weights)

    def on_tensors(self, src: Any, out: Any, stream_handle: int) -> None:
        """Launch on the memory of two dense torch tensors on CUDA stream ``stream_handle``.

        The numba views and stream are kept per (addresses, sizes, dtypes, stream), so a
        repeated call is one dictionary lookup before numba's launch.
        """
        key = (src.data_ptr(), src.numel(), src.dtype, out.data_ptr(), out.numel(), out.dtype, stream_handle)
        launch = self._on_tensors.get(key)
        if launch is None:
            if len(self._on_tensors) >= _MAX_TENSOR_VIEWS:
                self._on_tensors.clear()
            # The views have no owner: the entry keeps no memory alive.
            launch = self._on_tensors[key] = functools.partial(
                self, _tensor_numba(src), _tensor_numba(out), _numba_stream(stream_handle))
        launch()


def _header(*values: int) -> list[int]:
    return [*values] + [0] * (_HEADER - len(values))


def forward_launch(plan: Plan, outer: int, inner: int, shape: LaunchShape) -> _Launch:
    """The forward launch of ``plan`` over ``outer`` images of ``inner`` channels."""
    ys, xs = plan.taps()
    row_stride = plan.in_w * inner
    header = _header(plan.out_h, plan.out_w, inner, shape.channel_blocks, plan.in_h * row_stride,
                     plan.out_h * plan.out_w * inner, outer, _rows_per_thread(plan.out_h, shape))
    rows = np.stack([ys.first, ys.second], 1)
    starts = np.ones(plan.out_h, bool)
    starts[1:] = np.any(rows[1:] != rows[:-1], axis=1)
    segments = np.concatenate([np.flatnonzero(starts)[:, None], rows[starts] * row_stride], axis=1)
    table = np.concatenate([
        header,
        (np.stack([xs.first, xs.second], 1) * inner).reshape(-1),
        np.cumsum(starts) - 1,
        segments.reshape(-1),
        [plan.out_h, 0, 0],
    ]).astype(np.uint64)
    weights = np.concatenate([np.stack([ys.w_first, ys.w_second], 1), np.stack([xs.w_first, xs.w_second], 1)]).reshape(-1)
    if plan.legacy:
        store_kind = "legacy"
    else:
        store_kind = "integer" if plan.out_dtype.kind in "ui" else "float"
    kernel = _forward_kernel(plan.compute_dtype.name, store_kind, plan.out_dtype.name)
    return _Launch(kernel, shape, table, weights)


@functools.lru_cache(maxsize=128)
def _cached_forward_launch(plan: Plan, outer: int, inner: int, device_id: int) -> _Launch:
    shape = launch_shape(outer, plan.out_h, plan.out_w, inner, _multiprocessors(device_id))
    return forward_launch(plan, outer, inner, shape)


class _AdjointLaunch:
    """The adjoint's two launches and the partial sums between them: vertical first (sums of
    shape (planes, in_h, out_w)) or horizontal first ((planes, out_h, in_w)), the smaller."""

    def __init__(self, vertical: _Launch, horizontal: _Launch, vertical_first: bool, sums_size: int,
                 compute: np.dtype) -> None:
        self.vertical, self.horizontal, self.vertical_first = vertical, horizontal, vertical_first
        self.sums_size, self.compute = sums_size, compute

    def _passes(self) -> tuple[_Launch, _Launch]:
        return (self.vertical, self.horizontal) if self.vertical_first else (self.horizontal, self.vertical)

    def __call__(self, grad: Any, out: Any, stream: Any) -> None:
        first, second = self._passes()
        sums = cuda.device_array(self.sums_size, self.compute, stream=stream)
        first(grad, sums, stream)
        second(sums, out, stream)

    def on_tensors(self, grad: Any, out: Any, stream_handle: int) -> None:
        """Launch on dense torch tensors, the sums in torch's caching allocator (on the current stream)."""
        torch = sys.modules["torch"]
        first, second = self._passes()
        sums = torch.empty(self.sums_size, dtype=getattr(torch, self.compute.name), device=grad.device)
        first.on_tensors(grad, sums, stream_handle)
        second.on_tensors(sums, out, stream_handle)


def _grid(items: int, threads_per_block: int, waves: int, multiprocessors: int) -> LaunchShape:
    """A 1-D grid-stride launch over ``items``: ``waves`` times what the GPU holds at once, at most."""
    blocks = min(-(-items // threads_per_block), waves * multiprocessors * (_MAX_THREADS_PER_SM // threads_per_block))
    return LaunchShape((threads_per_block, 1, 1), (max(1, min(blocks, 2**31 - 1)), 1, 1), 1)


def _by_rank(inverse: Any) -> tuple[np.ndarray, np.ndarray]:
    """A CSR table of :func:`inverse_axis_taps` as (readers, weights) of shape (most readers,
    inputs): entry [t, i] is input i's t-th reader, zeros past its count."""
    counts = np.diff(inverse.start)
    inputs = np.repeat(np.arange(len(counts)), counts)
    ranks = np.arange(len(inputs)) - inverse.start[inputs]
    readers = np.zeros((max(1, counts.max(initial=0)), len(counts)), np.int64)
    weights = np.zeros(readers.shape, inverse.weights.dtype)
    readers[ranks, inputs], weights[ranks, inputs] = inverse.outputs, inverse.weights
    return readers, weights


def adjoint_launch(
    planes: int, in_h: int, in_w: int, out_h: int, out_w: int, align: str, compute: np.dtype, multiprocessors: int,
    threads_per_block: int = ADJOINT_THREADS, waves: int = WAVES, loads_in_flight: int = ADJOINT_LOADS_IN_FLIGHT,
    columns_per_thread: int = ADJOINT_COLUMNS_PER_THREAD, strip_rows: int = ADJOINT_STRIP_ROWS,
    max_registers: int | None = ADJOINT_MAX_REGISTERS,
) -> _AdjointLaunch:
    """The adjoint (P, OH, OW) -> (P, H, W) in two gathers, vertical then horizontal or the
    other way round, whichever holds fewer partial sums in between.

    Writing and reading the partial sums (in the compute dtype) costs ``2 * H / OH`` of a
    float32 gradient's bytes, vertical first (a quarter at 8x), and keeps both kernels small:
    no shared memory, no barriers, any sizes. Horizontal first, where that is smaller (the
    height shrinks and the width grows: vertical first would hold 16M sums for (4000, 10)
    from (10, 4000)), the horizontal kernel reads the gradient, less efficiently.
    """
    rows, columns = inverse_axis_taps(in_h, out_h, align, compute), inverse_axis_taps(in_w, out_w, align, compute)
    row_taps = axis_taps(in_h, out_h, align, compute)
    vertical, horizontal = _adjoint_kernels(compute.name, loads_in_flight, columns_per_thread, max_registers)
    vertical_first = in_h * out_w <= out_h * in_w
    cols = out_w if vertical_first else in_w  # the width of the rows the vertical pass walks
    rows_across = planes * (in_h if vertical_first else out_h)  # the rows the horizontal pass sums
    strip_rows = min(strip_rows, in_h)
    strips, part = -(-in_h // strip_rows), -(-cols // columns_per_thread)
    vertical_table = np.concatenate([
        _header(planes, out_h, cols, in_h, strip_rows, strips, part),
        rows.start, rows.outputs, row_taps.first,
    ]).astype(np.uint64)
    readers, reader_weights = _by_rank(columns)
    horizontal_table = np.concatenate([
        _header(rows_across, in_w, out_w), np.diff(columns.start), readers.reshape(-1)]).astype(np.uint64)
    return _AdjointLaunch(
        _Launch(vertical, _grid(planes * strips * part, threads_per_block, waves, multiprocessors), vertical_table,
                np.concatenate([row_taps.w_first, row_taps.w_second])),
        _Launch(horizontal, _grid(rows_across * in_w, threads_per_block, waves, multiprocessors), horizontal_table,
                reader_weights.reshape(-1)),
        vertical_first, planes * min(in_h * out_w, out_h * in_w), compute)


@functools.lru_cache(maxsize=64)
def _cached_adjoint_launch(
    planes: int, in_h: int, in_w: int, out_h: int, out_w: int, align: str, compute: np.dtype, device_id: int
) -> _AdjointLaunch:
    return adjoint_launch(planes, in_h, in_w, out_h, out_w, align, compute, _multiprocessors(device_id))


# ----------------------------------------------------------------------------------------
# Arrays: torch CUDA tensors, numba device arrays, CuPy arrays, and host arrays copied over.


_cuda_checked = False


def require_cuda() -> None:
    """Raise a clear error where numba sees no CUDA device (checked once per process)."""
    global _cuda_checked
    if _cuda_checked:
        return
    if not cuda.is_available():
        raise RuntimeError(
            "no CUDA device is available to numba (no GPU, no driver, or numba-cuda missing: "
            "pip install 'fastinterp[cuda]'); use backend='cpu' with host data"
        )
    _cuda_checked = True


def parse_device(device: Any) -> int | None:
    """The GPU index of ``device`` (``"cuda"``, ``"cuda:1"``, a ``torch.device``); None for the current one."""
    text = str(device)
    if text == "cuda":
        return None
    prefix, _, index = text.partition(":")
    if prefix != "cuda" or not index.isdigit():
        raise ValueError(f"device must be 'cuda' or 'cuda:N', got {device!r}")
    return int(index)


class _OnDevice:
    """Run a block on GPU ``index`` (numba's current one when None), switching only if needed."""

    def __init__(self, index: int | None) -> None:
        self.index = index
        self._switch = None

    def __enter__(self) -> int:
        if _device_count() == 1:  # nothing to switch; skips a driver query per call
            return 0
        current = _current_device_id()
        if self.index is None or self.index == current:
            return current
        self._switch = cuda.gpus[self.index]
        self._switch.__enter__()
        return self.index

    def __exit__(self, *exc: Any) -> None:
        if self._switch is not None:
            self._switch.__exit__(*exc)


_streams: dict[int, Any] = {}
_streams_lock = threading.Lock()


def _numba_stream(handle: int) -> Any:
    """numba's view of a CUDA stream handle (torch's or CuPy's current stream), cached."""
    stream = _streams.get(handle)
    if stream is None:
        with _streams_lock:
            stream = cuda.legacy_default_stream() if handle == 0 else cuda.external_stream(handle)
            _streams[handle] = stream
    return stream


@functools.lru_cache(maxsize=1024, typed=True)
def _cached_plan(*request: Any) -> Plan:
    return make_plan(*request)


def plan_request(
    layout: str, kernel_shape: tuple[int, ...], dtype: np.dtype, w_rate: Any, h_rate: Any, size: Any, align: Any, legacy: Any
) -> Plan:
    """:func:`fastinterp._api.make_plan`, remembered: repeated calls skip re-validation."""
    request = (layout, kernel_shape, dtype, w_rate, h_rate, size, align, legacy)
    try:
        hash(request)
    except TypeError:  # a list for size, say: validate without the cache
        return make_plan(*request)
    return _cached_plan(*request)


def _kernel_view(kernel_shape: tuple[int, ...]) -> tuple[int, int]:
    """(outer, inner) of a kernel-layout shape: (P, H, W) planes or (N, H, W, C) pixels."""
    return kernel_shape[0], (kernel_shape[3] if len(kernel_shape) == 4 else 1)


def run(plan: Plan, kernel_shape: tuple[int, ...], src: Any, out: Any, stream: Any, device_id: int) -> None:
    """Resize flat C-contiguous device array ``src`` into flat ``out`` (both numba arrays)."""
    outer, inner = _kernel_view(kernel_shape)
    _cached_forward_launch(plan, outer, inner, device_id)(src, out, stream)


def _overlap(first: tuple[int, int], second: tuple[int, int]) -> bool:
    """Whether two device memory ranges (start, bytes) overlap."""
    return first[0] < second[0] + second[1] and second[0] < first[0] + first[1]


# -- torch --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _torch_numpy_dtype(dtype: Any) -> np.dtype:
    """numpy's name for a torch dtype (make_plan then says which are supported)."""
    name = str(dtype).removeprefix("torch.")
    if name not in ("float32", "float64", "float16", "uint8", "uint16", "int8", "int16", "int32", "int64", "bool"):
        raise TypeError(f"the CUDA backend does not support tensors of dtype {dtype}")
    return np.dtype(name)


def _torch_range(t: Any) -> tuple[int, int]:
    return t.data_ptr(), t.numel() * t.element_size()


def _check_torch_out(out: Any, t: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    torch = sys.modules["torch"]
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"out= must be a torch tensor for tensor input, got {type(out).__name__}")
    if out.device != t.device:
        where = "the host" if out.device.type == "cpu" else str(out.device)
        raise ValueError(f"out= is on {where}, the input on {t.device}; pass an output on {t.device}")
    if tuple(out.shape) != shape or out.dtype != dtype:
        raise ValueError(f"out= has shape {tuple(out.shape)} and dtype {out.dtype}, expected {shape} and {dtype}")
    check_tensor_out(out)
    if _overlap(_torch_range(out), _torch_range(t)):
        raise ValueError("out= overlaps the input; pass a separate tensor")
    return out


def _current_stream_handle(device_index: int) -> int:
    """torch's current stream on a GPU, as a raw handle (``current_stream()`` builds an object)."""
    return sys.modules["torch"]._C._cuda_getCurrentRawStream(device_index)


@dataclass(frozen=True)
class _TorchRequest:
    """What a resize of one tensor layout with one set of arguments needs, validated once."""

    launch: _Launch
    out_shape: tuple[int, ...]
    out_dtype: Any  # the result's torch dtype
    target_dtype: Any  # what the kernel writes: float32 for a bfloat16 result
    memory_format: Any
    upcast: bool  # bfloat16 input, computed in float32
    copy_input: bool  # not dense in the kernel's layout


#: Requests by everything :func:`make_plan` and the layout depend on (see :func:`_torch_request`).
_torch_requests: dict[tuple[Any, ...], _TorchRequest] = {}
_MAX_TORCH_REQUESTS = 256


def _torch_request(t: Any, w_rate: Any, h_rate: Any, size: Any, align: Any, legacy: Any, device_id: int) -> _TorchRequest:
    """The request of resizing ``t``, from a cache keyed by what validating it reads.

    The layout follows from shape and strides, the plan from the kernel shape, dtype and
    arguments. Arguments are keyed with their types (``True == 1`` but only one is a valid
    rate), so an identical request skips validation and a different one repeats it;
    unhashable arguments (``size`` as a list) are validated every time.
    """
    size_types = tuple(map(type, size)) if type(size) is tuple else type(size)
    key = (t.shape, t.stride(), t.dtype, t.device, w_rate, h_rate, size, align, legacy,
           type(w_rate), type(h_rate), size_types, type(align), type(legacy))
    try:
        request = _torch_requests.get(key)
    except TypeError:
        return _build_torch_request(t, w_rate, h_rate, size, align, legacy, device_id)
    if request is None:
        if len(_torch_requests) >= _MAX_TORCH_REQUESTS:
            _torch_requests.clear()
        request = _torch_requests[key] = _build_torch_request(t, w_rate, h_rate, size, align, legacy, device_id)
    return request


def _build_torch_request(t: Any, w_rate: Any, h_rate: Any, size: Any, align: Any, legacy: Any, device_id: int) -> _TorchRequest:
    torch = sys.modules["torch"]
    if t.ndim < 2:
        raise ValueError(f"expected a tensor of shape (..., H, W), got shape {tuple(t.shape)}")
    channels_last = t.ndim == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    upcast = t.dtype == torch.bfloat16
    if channels_last:
        n, c, h, w = t.shape
        layout, kernel_shape = "pixels", (n, h, w, c)
    else:
        layout, kernel_shape = "planes", (math.prod(t.shape[:-2]), *t.shape[-2:])
    compute_dtype = torch.float32 if upcast else t.dtype
    plan = make_plan(layout, kernel_shape, _torch_numpy_dtype(compute_dtype), w_rate, h_rate, size, align, legacy)
    out_dtype = torch.uint8 if legacy else t.dtype
    outer, inner = _kernel_view(kernel_shape)
    return _TorchRequest(
        launch=_cached_forward_launch(plan, outer, inner, device_id),
        out_shape=(*t.shape[:-2], plan.out_h, plan.out_w),
        out_dtype=out_dtype,
        target_dtype=torch.float32 if out_dtype == torch.bfloat16 else out_dtype,
        memory_format=memory_format,
        upcast=upcast,
        copy_input=not t.is_contiguous(memory_format=memory_format),
    )


def resize_torch(t: Any, w_rate: Any, h_rate: Any, size: Any, align: Any, legacy: bool, out: Any) -> Any:
    """Resize a CUDA tensor (..., H, W) on its device and torch's current stream, zero-copy.

    A 4-D ``channels_last`` tensor is read and written in that layout. bfloat16, which numba
    has no type for, is computed in float32 and rounded back.
    """
    torch = sys.modules["torch"]
    require_cuda()
    device_index = t.device.index
    with _OnDevice(device_index) as device_id:
        request = _torch_request(t, w_rate, h_rate, size, align, legacy, device_id)
        src = t.detach() if t.requires_grad else t  # (no_grad mode) views of it refuse to be read
        if request.upcast:
            src = src.float()
        if request.copy_input:
            src = src.contiguous(memory_format=request.memory_format)
        if out is None:
            result = torch.empty(request.out_shape, dtype=request.out_dtype, device=t.device,
                                 memory_format=request.memory_format)
            direct = request.target_dtype == request.out_dtype
        else:
            result = _check_torch_out(out, t, request.out_shape, request.out_dtype)
            direct = result.dtype == request.target_dtype and result.is_contiguous(memory_format=request.memory_format)
        target = result if direct else torch.empty(
            request.out_shape, dtype=request.target_dtype, device=t.device, memory_format=request.memory_format)
        request.launch.on_tensors(src, target, _current_stream_handle(device_index))
    if target is not result:
        result.copy_(target)
    elif out is not None:
        mark_written(result)
    return result


# -- numba and CuPy device arrays; host arrays copied in and out ----------------------------


def _is_cupy(arr: Any) -> bool:
    return type(arr).__module__.startswith("cupy")


def _memory_range(arr: Any) -> tuple[int, int]:
    # The simulator's device arrays are numpy arrays underneath.
    interface = arr.__array_interface__ if _SIMULATED else arr.__cuda_array_interface__
    return interface["data"][0], arr.nbytes


def _is_c_contiguous(arr: Any) -> bool:
    return arr.flags.c_contiguous if _is_cupy(arr) else arr.is_c_contiguous()


def _check_device_out(out: Any, arr: Any, shape: tuple[int, ...], dtype: np.dtype) -> Any:
    if isinstance(out, np.ndarray):
        raise ValueError("out= is on the host, the input on the GPU; pass a device array of the output's shape")
    if _is_cupy(out) != _is_cupy(arr):
        raise TypeError(f"out= must be of the input's kind ({type(arr).__name__}), got {type(out).__name__}")
    if tuple(out.shape) != shape or np.dtype(out.dtype) != dtype:
        raise ValueError(f"out= has shape {tuple(out.shape)} and dtype {out.dtype}, expected {shape} and {dtype}")
    if _is_cupy(out) and out.device.id != arr.device.id:
        raise ValueError(f"out= is on GPU {out.device.id}, the input on GPU {arr.device.id}")
    if not _is_c_contiguous(out):
        raise ValueError("out= must be C-contiguous")
    if _overlap(_memory_range(out), _memory_range(arr)):
        raise ValueError("out= overlaps the input; pass a separate array")
    return out


def _kernel_shape(shape: tuple[int, ...], dtype: np.dtype, channels_first: bool) -> tuple[str, tuple[int, ...]]:
    """Layout and kernel shape of a numpy-convention array shape (no data is touched)."""
    layout, view = _numpy_layout(np.broadcast_to(np.empty((), dtype), shape), channels_first)
    return layout, view.shape


def resize_device_array(
    arr: Any, w_rate: Any, h_rate: Any, size: Any, align: Any, legacy: bool, out: Any, channels_first: bool
) -> Any:
    """Resize a numba or CuPy device array (numpy's layouts) into one of the same kind."""
    require_cuda()
    dtype = np.dtype(arr.dtype)
    layout, kernel_shape = _kernel_shape(tuple(arr.shape), dtype, channels_first)
    plan = plan_request(layout, kernel_shape, dtype, w_rate, h_rate, size, align, legacy)
    user_shape = _user_out_shape(tuple(arr.shape), plan, channels_first)
    if _is_cupy(arr):
        import cupy

        device, stream = arr.device.id, _numba_stream(cupy.cuda.get_current_stream().ptr)
        arr = cupy.ascontiguousarray(arr)
        allocate = functools.partial(cupy.empty, user_shape, plan.out_dtype)
    else:
        if not arr.is_c_contiguous():
            raise ValueError("numba device arrays must be C-contiguous; copy it into a contiguous one first")
        device, stream = None, 0
        allocate = functools.partial(cuda.device_array, user_shape, plan.out_dtype)
    with _OnDevice(device) as device_id:
        result = allocate() if out is None else _check_device_out(out, arr, user_shape, plan.out_dtype)
        run(plan, kernel_shape, _flat_numba(arr), _flat_numba(result), stream, device_id)
    return result


#: numba views of flat tensors by (address, elements, dtype). torch's caching allocator hands
#: the same addresses out again, and numba launches far faster with a view it has seen.
_tensor_views: dict[tuple[int, int, Any], Any] = {}
_MAX_TENSOR_VIEWS = 64


def _tensor_numba(t: Any) -> Any:
    """A flat numba view of a dense CUDA tensor's memory, valid while ``t`` lives (the caller keeps it)."""
    if _SIMULATED:
        return t
    key = (t.data_ptr(), t.numel(), t.dtype)
    view = _tensor_views.get(key)
    if view is None:
        if len(_tensor_views) >= _MAX_TENSOR_VIEWS:
            _tensor_views.clear()
        # Described directly: torch's own description is slower. No owner: the view must not
        # keep freed memory alive; any live tensor at this address has these elements.
        interface = {"shape": (t.numel(),), "strides": None, "typestr": _torch_numpy_dtype(t.dtype).str,
                     "data": (t.data_ptr(), False), "version": 2}
        view = _tensor_views[key] = cuda.from_cuda_array_interface(interface, owner=None, sync=False)
    return view


def _flat_numba(arr: Any) -> Any:
    """A flat numba view of a C-contiguous device array (numba, CuPy or torch)."""
    flat = arr if _SIMULATED else cuda.as_cuda_array(arr)
    return flat if flat.ndim == 1 else flat.reshape(-1)


def resize_host(
    arr: np.ndarray, w_rate: Any, h_rate: Any, size: Any, align: Any, legacy: bool, out: Any,
    channels_first: bool, device: int | None,
) -> np.ndarray:
    """Copy a numpy array to GPU ``device``, resize it there, and copy the result back."""
    require_cuda()
    layout, src = _numpy_layout(arr, channels_first)
    plan = plan_request(layout, src.shape, arr.dtype, w_rate, h_rate, size, align, legacy)
    user_shape = _user_out_shape(arr.shape, plan, channels_first)
    if out is not None:
        _check_out_numpy(out, user_shape, plan.out_dtype, arr)
    with _OnDevice(device) as device_id:
        src_device = cuda.to_device(np.ascontiguousarray(src, dtype=plan.dtype).reshape(-1))
        out_device = cuda.device_array(math.prod(user_shape), plan.out_dtype)
        run(plan, src.shape, src_device, out_device, 0, device_id)
        result = out_device.copy_to_host().reshape(user_shape)
    if out is None:
        return result
    out[...] = result
    return out


# ----------------------------------------------------------------------------------------
# The adjoint, for fastinterp.torch's backward.

_ADJOINT_DTYPES = ("float32", "float64", "float16")


def _check_adjoint_request(shape: tuple[int, ...], dtype: np.dtype, in_h: Any, in_w: Any, align: Any) -> str:
    for name, value in (("in_h", in_h), ("in_w", in_w)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if len(shape) < 2 or 0 in shape:
        raise ValueError(f"expected a non-empty gradient of shape (..., OH, OW), got {shape}")
    if dtype.name not in _ADJOINT_DTYPES:
        raise TypeError(f"the adjoint supports {', '.join(_ADJOINT_DTYPES)}, got {dtype}")
    return check_align(align, False)


def resize_adjoint_cuda(grad_out: Any, in_h: int, in_w: int, align: str) -> Any:
    """The input gradient of ``resize(x, size=(OH, OW), align=align)`` for an (..., in_h, in_w) ``x``.

    ``grad_out`` is a CUDA tensor (or a numba device array) of shape (..., OH, OW), float32,
    float64 or float16. Each input pixel sums, in a fixed order, the output pixels that read
    it times their weights (computed in float32, float64 for float64): deterministic, no
    atomics. Returns a new C-contiguous array of shape (..., in_h, in_w) and ``grad_out``'s
    dtype on its device; tensors are read and written on torch's current stream.
    """
    torch = sys.modules.get("torch")
    is_tensor = torch is not None and isinstance(grad_out, torch.Tensor)
    shape = tuple(grad_out.shape)
    dtype = _torch_numpy_dtype(grad_out.dtype) if is_tensor else np.dtype(grad_out.dtype)
    align = _check_adjoint_request(shape, dtype, in_h, in_w, align)
    if is_tensor and grad_out.device.type != "cuda":
        raise ValueError(f"resize_adjoint_cuda needs a CUDA tensor, got one on {grad_out.device}")
    compute = np.dtype(np.float64 if dtype == np.float64 else np.float32)
    in_shape = (*shape[:-2], in_h, in_w)
    sizes = (math.prod(shape[:-2]), in_h, in_w, shape[-2], shape[-1], align, compute)
    if is_tensor:
        grad = grad_out.detach().contiguous()
        with _OnDevice(grad.device.index) as device_id:
            grad_in = torch.empty(in_shape, dtype=grad.dtype, device=grad.device)
            _cached_adjoint_launch(*sizes, device_id).on_tensors(grad, grad_in, _current_stream_handle(grad.device.index))
        return grad_in
    if not _is_c_contiguous(grad_out):
        raise ValueError("numba device arrays must be C-contiguous; copy it into a contiguous one first")
    with _OnDevice(None) as device_id:
        grad_in = cuda.device_array(in_shape, dtype)
        _cached_adjoint_launch(*sizes, device_id)(_flat_numba(grad_out), _flat_numba(grad_in), 0)
    return grad_in

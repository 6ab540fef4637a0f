"""CUDA kernels of the plain bilinear path: the forward and the adjoint, with numba.cuda.

Every kernel sees C-contiguous data as a flat array in one 4-D view ``(outer, rows, cols,
inner)``: channels-first planes are ``(P, H, W, 1)``, channels-last images ``(N, H, W, C)``.
A thread owns one (inner, col) position and loops over rows and outer items, so consecutive
threads write consecutive addresses and the column tables are read once per thread.

* forward: the taps of :mod:`fastinterp._coords`, as element offsets. A thread walks down a
  run of output rows, interpolating each source row it needs horizontally once and blending
  two of them per output element (at 8x: one blend and one store per element). The
  arithmetic is the CPU kernels', operation for operation, with non-contracting ``*_rn``
  intrinsics (NVVM would otherwise fuse multiply-adds), so float outputs equal the CPU's bit
  for bit and the legacy output the original's.
* adjoint: the transpose of the forward, two gathers. The vertical kernel walks strips of
  input rows down the output-gradient rows that read them (the forward's row taps; the
  strips' extents from :func:`fastinterp._coords.inverse_axis_taps`), lanes on consecutive
  columns (coalesced, each gradient element loaded once, or twice at a strip boundary,
  several loads in flight per thread), keeping two running row sums and storing (P, H, OW)
  vertical sums; the horizontal kernel sums those along each row. Every input element sums
  its readers in a fixed (ascending) order, so the result is deterministic, without atomics.

Indices are unsigned 64-bit: no wrap-around code per access, no overflow past 2**31. The
arithmetic and stores here are shared with :mod:`fastinterp._cuda_antialias`; launch shapes
and device tables are in :mod:`fastinterp._cuda_launch`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import numba
import numpy as np
from numba import cuda

SIMULATED = bool(getattr(numba.config, "ENABLE_CUDASIM", 0))
#: Length of the header (problem dimensions) that starts every device index table.
HEADER = 8

# ----------------------------------------------------------------------------------------
# Arithmetic. The simulator runs kernels as Python, where numpy scalar operations already
# round once per operation, exactly like the _rn intrinsics it does not implement.
if SIMULATED:
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


ARITHMETIC = {
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
def store_float(out, index, value):
    out[index] = value  # float16 outputs round to nearest even, as numpy's cast


def integer_store(low: float, high: float) -> Callable:
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
def forward_kernel(compute: str, store_kind: str, out_dtype: str) -> Any:
    """The forward kernel for a compute dtype and a way of storing (float, integer, legacy)."""
    arith = ARITHMETIC[compute]
    cast = arith.cast
    row_terms, blend = _legacy_rows(arith) if store_kind == "legacy" else _correct_rows(arith)
    if store_kind == "integer":
        info = np.iinfo(out_dtype)
        store = integer_store(float(info.min), float(info.max))
    else:
        store = _store_legacy_uint8 if store_kind == "legacy" else store_float

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
        col = np.uint64(HEADER) + np.uint64(2) * j
        left, right = table[col] + c, table[col + np.uint64(1)] + c
        col_weight = np.uint64(2) * (out_h + j)
        w_left, w_right = weights[col_weight], weights[col_weight + np.uint64(1)]
        segment_of_row = np.uint64(HEADER) + np.uint64(2) * out_w
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
def adjoint_kernels(
    compute: str, loads_in_flight: int, columns_per_thread: int, max_registers: int | None
) -> tuple[Any, Any]:
    """The adjoint's two kernels, (vertical, horizontal), for a compute dtype, the output rows
    each thread loads ahead, the output columns it walks at once, and the vertical kernel's
    register cap (None: the compiler's choice)."""
    cast = ARITHMETIC[compute].cast
    element = np.float32 if compute == "float32" else np.float64
    # The simulator takes no register cap.
    options = {} if SIMULATED or max_registers is None else {"max_registers": max_registers}
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
        y_start = np.uint64(HEADER)
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
        counts = np.uint64(HEADER)
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

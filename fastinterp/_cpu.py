"""CPU backend: numba kernels behind :func:`fastinterp.resize`.

Three kernels, one per memory pattern:

* :func:`resize_planes`: channels-first planes (P, H, W), separable. Each task (one plane,
  one block of output rows) interpolates the input rows it needs horizontally into a small
  scratch buffer, then blends pairs of those rows vertically: the inner loops run over
  contiguous memory and vectorise.
* :func:`resize_pixels`: channels-last (N, H, W, C). Each output pixel blends four
  contiguous channel vectors; the inner loop runs over channels.
* :func:`legacy_pixels`: the original script's arithmetic and uint8 store, bit for bit.

Every kernel takes the per-axis tables of :mod:`fastinterp._coords`, works on
``rows_per_task`` output rows per task and runs its tasks serially when ``serial`` is true
(small work is not worth waking the thread pool).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import overload


def _to_output(value, out):  # pragma: no cover - replaced by the overload below in jitted code
    raise NotImplementedError


@overload(_to_output, inline="always")
def _to_output_impl(value, out):
    """Convert a computed value for storing into ``out``: round and saturate for integers."""
    if isinstance(out.dtype, types.Integer):
        info = np.iinfo(out.dtype.key if hasattr(out.dtype, "key") else str(out.dtype))
        low, high = float(info.min), float(info.max)

        def store_integer(value, out):
            rounded = np.rint(value)
            if rounded < low:
                return low
            if rounded > high:
                return high
            return rounded

        return store_integer
    return lambda value, out: value


@njit(inline="always")
def _task_rows(task, blocks_per_outer, rows_per_task, out_h):
    outer = task // blocks_per_outer
    row_start = (task % blocks_per_outer) * rows_per_task
    return outer, row_start, min(row_start + rows_per_task, out_h)


@njit(cache=True)
def _plane_task(src, out, ys, xs, task, blocks_per_plane, rows_per_task):
    out_h, out_w = out.shape[1], out.shape[2]
    plane, row_start, row_stop = _task_rows(task, blocks_per_plane, rows_per_task, out_h)
    first_row = ys.first[row_start]
    rows = np.empty((ys.second[row_stop - 1] - first_row + 1, out_w), dtype=xs.w_first.dtype)
    for r in range(rows.shape[0]):
        line = src[plane, first_row + r]
        for j in range(out_w):
            rows[r, j] = line[xs.first[j]] * xs.w_first[j] + line[xs.second[j]] * xs.w_second[j]
    for i in range(row_start, row_stop):
        top, bottom = rows[ys.first[i] - first_row], rows[ys.second[i] - first_row]
        w_top, w_bottom = ys.w_first[i], ys.w_second[i]
        target = out[plane, i]
        for j in range(out_w):
            target[j] = _to_output(top[j] * w_top + bottom[j] * w_bottom, out)


@njit(cache=True, parallel=True)
def resize_planes(src, out, ys, xs, rows_per_task, serial):
    """Correct bilinear resize of C-contiguous planes ``src`` (P, H, W) into ``out`` (P, OH, OW)."""
    blocks = -(-out.shape[1] // rows_per_task)
    n_tasks = src.shape[0] * blocks
    if serial:
        for task in range(n_tasks):
            _plane_task(src, out, ys, xs, task, blocks, rows_per_task)
    else:
        for task in prange(n_tasks):
            _plane_task(src, out, ys, xs, task, blocks, rows_per_task)


@njit(cache=True)
def _pixel_task(src, out, ys, xs, task, blocks_per_image, rows_per_task):
    out_h, out_w, channels = out.shape[1], out.shape[2], out.shape[3]
    image, row_start, row_stop = _task_rows(task, blocks_per_image, rows_per_task, out_h)
    for i in range(row_start, row_stop):
        upper, lower = src[image, ys.first[i]], src[image, ys.second[i]]
        w_top, w_bottom = ys.w_first[i], ys.w_second[i]
        for j in range(out_w):
            left, right = xs.first[j], xs.second[j]
            w_left, w_right = xs.w_first[j], xs.w_second[j]
            target = out[image, i, j]
            for c in range(channels):
                top = upper[left, c] * w_left + upper[right, c] * w_right
                bottom = lower[left, c] * w_left + lower[right, c] * w_right
                target[c] = _to_output(top * w_top + bottom * w_bottom, out)


@njit(cache=True, parallel=True)
def resize_pixels(src, out, ys, xs, rows_per_task, serial):
    """Correct bilinear resize of channels-last images ``src`` (N, H, W, C) into ``out`` (N, OH, OW, C)."""
    blocks = -(-out.shape[1] // rows_per_task)
    n_tasks = src.shape[0] * blocks
    if serial:
        for task in range(n_tasks):
            _pixel_task(src, out, ys, xs, task, blocks, rows_per_task)
    else:
        for task in prange(n_tasks):
            _pixel_task(src, out, ys, xs, task, blocks, rows_per_task)


@njit(inline="always")
def _legacy_uint8(value):
    # numpy stores a float into uint8 through a C cast to a 32-bit integer: truncation,
    # wrap-around modulo 256, and 0 for NaN, infinities and anything outside int32.
    if value >= -2147483648.0 and value < 2147483648.0:
        return np.uint8(np.int64(value) & 0xFF)
    return np.uint8(0)


@njit(cache=True)
def _legacy_task(src, out, ys, xs, task, blocks_per_image, rows_per_task):
    out_h, out_w, channels = out.shape[1], out.shape[2], out.shape[3]
    image, row_start, row_stop = _task_rows(task, blocks_per_image, rows_per_task, out_h)
    for i in range(row_start, row_stop):
        upper, lower = src[image, ys.first[i]], src[image, ys.second[i]]
        y2_y, y_y1 = ys.w_first[i], ys.w_second[i]
        for j in range(out_w):
            j1, j2 = xs.first[j], xs.second[j]
            x2_x, x_x1 = xs.w_first[j], xs.w_second[j]
            target = out[image, i, j]
            for c in range(channels):
                # The original's expression, term by term and left to right.
                value = (
                    upper[j1, c] * x2_x * y2_y
                    + upper[j2, c] * x_x1 * y2_y
                    + lower[j1, c] * x2_x * y_y1
                    + lower[j2, c] * x_x1 * y_y1
                )
                target[c] = _legacy_uint8(value)


@njit(cache=True, parallel=True)
def legacy_pixels(src, out, ys, xs, rows_per_task, serial):
    """The original script's transform of (N, H, W, C) ``src`` into uint8 ``out`` (N, OH, OW, C)."""
    blocks = -(-out.shape[1] // rows_per_task)
    n_tasks = src.shape[0] * blocks
    if serial:
        for task in range(n_tasks):
            _legacy_task(src, out, ys, xs, task, blocks, rows_per_task)
    else:
        for task in prange(n_tasks):
            _legacy_task(src, out, ys, xs, task, blocks, rows_per_task)

"""CPU backend, fixed factors: ``align="center"`` by exactly 2 up or 1/2 down on both axes.

At these factors every output element's taps and weights follow from its index alone:

* 2x up: output ``2k + 1`` blends inputs ``k`` and ``k + 1`` with 3/4 and 1/4, output ``2k + 2``
  the same inputs with 1/4 and 3/4; output 0 reads input 0 with weights 1 and 0 (input 1 is
  still read: ``inf * 0`` is NaN, as in the table path), and the last output reads the last
  input alone (a clamped tap, see :func:`fastinterp._cpu._unclamped_count`);
* halving: output ``k`` blends inputs ``2k`` and ``2k + 1`` with 1/2 and 1/2, with no edge case.

So these kernels need no tap tables and no gathers, yet compute the same operations in the
same order and precision as the table path of :mod:`fastinterp._cpu` (``left * w_left +
right * w_right`` along each row, then ``top * w_top + bottom * w_bottom``; integers in
float32, rounded half to even and saturated by :func:`fastinterp._cpu._to_output`): their
results are bit for bit those of the tables, in every dtype.

Integer dtypes are computed in integers instead, which gives the same result: with the weights
scaled by 4 (quarters: 3 and 1, 2 and 2, 4 and 0) every output is ``s / 16`` for an integer
``s``, and the float32 path computes exactly ``s / 16`` too (each product and sum is a multiple of
1/16 below 2**20 in magnitude, exact in float32's 24 bits), which it then rounds half to even,
as :func:`_integer_result` does (see tests/test_fixed_factor.py, which checks the rounding for
every ``s`` of every integer dtype); a blend of in-range values never needs saturating.

They see flat rows of ``W * channels`` values, ``channels`` interleaved per pixel (a plane is
one channel). One task body per factor; tasks as in :mod:`fastinterp._cpu` (one image times
one block of output rows), run serially for small outputs.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from ._cpu import _as_weight_type, _task_count, _task_rows, _to_output, read_only, schedule
from ._plan import Plan
from ._threads import parallel_launch

UPSCALE, HALVE = 2, -2
#: Integer weights are the float ones times this: 1/4, 3/4, 1/2 and 1 become 1, 3, 2 and 4.
INTEGER_WEIGHT_SCALE = 4


def fixed_factor(plan: Plan) -> int:
    """:data:`UPSCALE` for an exact 2x upscale of both axes, :data:`HALVE` for an exact halving of
    both, else 0 (the table path). Decided from the sizes: halving an odd size is not a factor 2."""
    if plan.legacy or plan.antialias or plan.align != "center":
        return 0
    if plan.out_h == 2 * plan.in_h and plan.out_w == 2 * plan.in_w:
        return UPSCALE
    if plan.in_h == 2 * plan.out_h and plan.in_w == 2 * plan.out_w:
        return HALVE
    return 0


def weight_unit(dtype: np.dtype, compute_dtype: np.dtype) -> np.generic:
    """The weight 1 of the kernels for ``dtype``, its type the one they compute in: floats in
    ``compute_dtype``; integers in quarters, in an integer type wide enough for a row blended
    along one axis (16 bits for uint8, 32 otherwise)."""
    if dtype.kind == "f":
        return compute_dtype.type(1.0)
    return (np.int16 if dtype == np.uint8 else np.int32)(INTEGER_WEIGHT_SCALE)


@njit(inline="always")
def _weight(fraction, one):
    """The weight ``fraction`` (1/4, 3/4, 1/2 or 0) in the kernels' units and type."""
    return _as_weight_type(fraction * one, one)


def _integer_result(total):  # pragma: no cover - replaced by the overload below in jitted code
    raise NotImplementedError


@overload(_integer_result, inline="always")
def _integer_result_impl(total):
    """``total / 16`` rounded half to even (``total`` in sixteenths: weights in quarters on both axes).

    With ``q = total >> 4`` (rounded down, also when negative) and ``r`` the remainder 0..15,
    adding 7 carries into ``q`` when ``r > 8``, and adding ``q & 1`` as well when ``r == 8``: an odd
    ``q`` goes up to the even neighbour, an even one stays."""
    return lambda total: (total + (7 + ((total >> 4) & 1))) >> 4


def _result(value, one, out):  # pragma: no cover - replaced by the overload below in jitted code
    raise NotImplementedError


@overload(_result, inline="always")
def _result_impl(value, one, out):
    """The stored value of a blend: integers from sixteenths, floats as the table path stores them."""
    if isinstance(one, types.Integer):
        # Cast back to the weights' type at every step: numba widens integer arithmetic to 64 bits,
        # and the casts let LLVM compute in 16 or 32-bit vector lanes again.
        return lambda value, one, out: _integer_result(_as_weight_type(value, one))
    return lambda value, one, out: _to_output(value, out)


def _alone(value, one):  # pragma: no cover - replaced by the overload below in jitted code
    raise NotImplementedError


@overload(_alone, inline="always")
def _alone_impl(value, one):
    """A clamped tap's value read alone, in the kernels' units: the value itself for floats (as the
    table path, which does not multiply it by 1), ``value * one`` for integers."""
    if isinstance(one, types.Integer):
        return lambda value, one: value * one
    return lambda value, one: value


@njit(inline="always")
def _upscale_row(line, dst, phase_near, phase_far, channels, one):
    """``dst`` (2 * W pixels) from ``line`` (W pixels), both flat rows of ``channels`` per pixel."""
    width = line.shape[0] // channels
    zero, near, far = _weight(0.0, one), _weight(0.75, one), _weight(0.25, one)
    last = (2 * width - 1) * channels
    for c in range(channels):
        first = _as_weight_type(line[c], one)
        if width > 1:  # output 0: weights 1 and 0 on inputs 0 and 1
            dst[c] = first * one + _as_weight_type(line[channels + c], one) * zero
        else:
            dst[c] = _alone(first, one)
        dst[last + c] = _alone(_as_weight_type(line[(width - 1) * channels + c], one), one)
    pairs = (width - 1) * channels
    # Both phases of every pair of neighbouring pixels from contiguous reads (this vectorises
    # for any number of channels); putting them in place is then a plain copy.
    for m in range(pairs):
        left, right = _as_weight_type(line[m], one), _as_weight_type(line[m + channels], one)
        phase_near[m] = _as_weight_type(left * near + right * far, one)
        phase_far[m] = _as_weight_type(left * far + right * near, one)
    if channels == 1:  # single values interleave in vector registers; a loop over channels would not
        for k in range(pairs):
            dst[2 * k + 1] = phase_near[k]
            dst[2 * k + 2] = phase_far[k]
    else:
        for k in range(width - 1):
            for c in range(channels):
                dst[(2 * k + 1) * channels + c] = phase_near[k * channels + c]
                dst[(2 * k + 2) * channels + c] = phase_far[k * channels + c]


@njit(cache=True)
def _upscale_task(src, out, task, blocks_per_image, rows_per_task, channels, one):
    in_h, out_h, in_size, out_size = src.shape[1], out.shape[1], src.shape[2], out.shape[2]
    image, row_start, row_stop = _task_rows(task, blocks_per_image, rows_per_task, out_h)
    zero, near, far = _weight(0.0, one), _weight(0.75, one), _weight(0.25, one)
    # Upscaled input rows, input row r in slot r % 2: neighbouring output rows share them.
    rows = np.full((2, out_size), zero)
    held = np.full(2, -1)
    phase_near, phase_far = np.full(in_size, zero), np.full(in_size, zero)
    for i in range(row_start, row_stop):
        top = max(i - 1, 0) // 2
        bottom = min(top + 1, in_h - 1)
        for r in (top, bottom):
            if held[r % 2] != r:
                _upscale_row(src[image, r], rows[r % 2], phase_near, phase_far, channels, one)
                held[r % 2] = r
        upper, lower, target = rows[top % 2], rows[bottom % 2], out[image, i]
        if top == bottom:  # the last row (or a one-row input): the row itself, clamped
            for j in range(out_size):
                target[j] = _result(_alone(upper[j], one), one, out)
            continue
        if i == 0:
            w_top, w_bottom = one, zero
        elif i % 2 == 1:
            w_top, w_bottom = near, far
        else:
            w_top, w_bottom = far, near
        for j in range(out_size):
            target[j] = _result(upper[j] * w_top + lower[j] * w_bottom, one, out)


@njit(inline="always")
def _halved(a, b, c, d, half, one, out):
    """The stored mean of a 2x2 block (a b / c d), blended as the table path blends it."""
    upper_pair, lower_pair = _as_weight_type(a * half + b * half, one), _as_weight_type(c * half + d * half, one)
    return _result(upper_pair * half + lower_pair * half, one, out)


@njit(cache=True)
def _halve_task(src, out, task, blocks_per_image, rows_per_task, channels, one):
    out_size = out.shape[2]
    image, row_start, row_stop = _task_rows(task, blocks_per_image, rows_per_task, out.shape[1])
    half = _weight(0.5, one)
    for i in range(row_start, row_stop):
        upper, lower, target = src[image, 2 * i], src[image, 2 * i + 1], out[image, i]
        if channels == 1:  # pairs of single values deinterleave in vector registers
            for j in range(out_size):
                a, b = _as_weight_type(upper[2 * j], one), _as_weight_type(upper[2 * j + 1], one)
                c, d = _as_weight_type(lower[2 * j], one), _as_weight_type(lower[2 * j + 1], one)
                target[j] = _halved(a, b, c, d, half, one, out)
        else:
            for k in range(out_size // channels):
                for channel in range(channels):
                    m = 2 * k * channels + channel
                    a, b = _as_weight_type(upper[m], one), _as_weight_type(upper[m + channels], one)
                    c, d = _as_weight_type(lower[m], one), _as_weight_type(lower[m + channels], one)
                    target[k * channels + channel] = _halved(a, b, c, d, half, one, out)


@njit(inline="always")
def _run_task(src, out, factor, task, blocks, rows_per_task, channels, one):
    if factor == UPSCALE:
        _upscale_task(src, out, task, blocks, rows_per_task, channels, one)
    else:
        _halve_task(src, out, task, blocks, rows_per_task, channels, one)


@njit(cache=True)
def serial_tasks(src, out, factor, rows_per_task, channels, one):
    """Fill ``out`` from ``src`` by ``factor`` in tasks of one image and ``rows_per_task`` rows of ``out``."""
    n_tasks, blocks = _task_count(src, out, rows_per_task)
    for task in range(n_tasks):
        _run_task(src, out, factor, task, blocks, rows_per_task, channels, one)


@njit(cache=True, parallel=True)
def parallel_tasks(src, out, factor, rows_per_task, channels, one):
    """:func:`serial_tasks` on numba's thread pool."""
    n_tasks, blocks = _task_count(src, out, rows_per_task)
    for task in prange(n_tasks):
        _run_task(src, out, factor, np.int64(task), blocks, rows_per_task, channels, one)  # see _cpu.parallel_tasks


def run_fixed(src: np.ndarray, target: np.ndarray, factor: int, channels: int, compute_dtype: np.dtype) -> None:
    """Resize C-contiguous flat rows ``src`` (images, H, W * channels) into ``target`` (images,
    out_h, out_w * channels) by ``factor`` (:data:`UPSCALE` or :data:`HALVE`)."""
    src, one = read_only(src), weight_unit(src.dtype, compute_dtype)
    rows_per_task, serial = schedule(src.shape[0], target.shape[1], target.size)
    if serial:
        serial_tasks(src, target, factor, rows_per_task, channels, one)
    else:
        with parallel_launch():
            parallel_tasks(src, target, factor, rows_per_task, channels, one)

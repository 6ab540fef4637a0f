"""Per-axis interpolation tables shared by every backend.

For each output index along one axis the kernels need two source indices and their two
weights. Computing them once per axis (vectorised, float64, the same operations as
:mod:`fastinterp.reference`) keeps the kernels free of coordinate arithmetic and keeps
every backend on exactly the same coordinates.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from typing import Any, Callable, NamedTuple

import numpy as np

#: Bytes of tap tables each cache keeps (least recently used first out): a bound in entries
#: would keep gigabytes after a few hundred wide outputs.
CACHE_BYTES = 64 * 2**20


def cached_by_bytes(max_bytes: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """An LRU cache of a function returning a tuple of arrays, bounded by the arrays' bytes.

    A result larger than ``max_bytes`` is returned without being kept. ``cache_clear()`` and
    ``cached_bytes()`` are attached to the wrapper.
    """

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        entries: OrderedDict[tuple[Any, ...], tuple[Any, int]] = OrderedDict()
        lock = threading.Lock()
        total = 0

        @functools.wraps(function)
        def cached(*args: Any) -> Any:
            nonlocal total
            with lock:
                if args in entries:
                    entries.move_to_end(args)
                    return entries[args][0]
            value = function(*args)
            size = sum(array.nbytes for array in value)
            with lock:
                if size <= max_bytes and args not in entries:
                    entries[args] = (value, size)
                    total += size
                    while total > max_bytes:
                        total -= entries.popitem(last=False)[1][1]
            return value

        def cache_clear() -> None:
            nonlocal total
            with lock:
                entries.clear()
                total = 0

        cached.cache_clear = cache_clear
        cached.cached_bytes = lambda: total
        return cached

    return decorate


class AxisTaps(NamedTuple):
    """Source indices and weights of one axis: ``out[d] = src[first[d]] * w_first[d] + src[second[d]] * w_second[d]``."""

    first: np.ndarray  # int64
    second: np.ndarray  # int64
    w_first: np.ndarray  # compute dtype
    w_second: np.ndarray  # compute dtype


class LegacyAxisTaps(NamedTuple):
    """Taps of the original script: ``w_first = ceil(src) - src`` and ``w_second = src - floor(src)``.

    A type of its own so that the kernels pick the original's arithmetic by type.
    """

    first: np.ndarray  # int64
    second: np.ndarray  # int64
    w_first: np.ndarray  # compute dtype
    w_second: np.ndarray  # compute dtype


def _readonly(*arrays: np.ndarray) -> None:
    for array in arrays:
        array.setflags(write=False)


@cached_by_bytes(CACHE_BYTES)
def axis_taps(in_size: int, out_size: int, align: str, dtype: np.dtype) -> AxisTaps:
    """Taps of the correct algorithm (see :func:`fastinterp.reference.taps`), edges clamped.

    Computed in place where possible: a wide axis needs about two float64 arrays of
    temporaries beside its tables, not ten.
    """
    src = np.arange(out_size, dtype=np.float64)
    if align == "center":
        src += 0.5
        src *= in_size / out_size
        src -= 0.5
        np.maximum(src, 0.0, out=src)
    elif align == "left":
        src *= in_size / out_size
    else:  # corners
        src *= (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    floor = np.floor(src)
    np.minimum(floor, in_size - 1, out=floor)
    first = floor.astype(np.int64)
    w_second = np.subtract(src, floor, out=src)
    del floor
    second = first + 1
    np.minimum(second, in_size - 1, out=second)
    # Where both taps are the same (clamped) pixel, weigh it 1 and 0: float32 weights that
    # only nearly sum to 1 would otherwise turn a replicated 3.5 into 3.5000002.
    w_second[second == first] = 0.0
    w_first = (1.0 - w_second).astype(dtype, copy=False)  # (in float64, then rounded once)
    taps = AxisTaps(first, second, w_first, w_second.astype(dtype, copy=False))
    _readonly(*taps)
    return taps


#: :func:`tap_period` of taps without a period.
NO_PERIOD = (0, 0, 0)


@functools.lru_cache(maxsize=1024)
def tap_period(in_size: int, out_size: int, align: str, dtype: np.dtype) -> tuple[int, int, int]:
    """:func:`period_of` the taps of :func:`axis_taps`, with the factor as period, for an integer
    upscale (at least 2x); :data:`NO_PERIOD` otherwise.

    An integer upscale's taps repeat with the factor as period between its clamped or
    differently weighted edges (by 8 with ``align="center"``: outputs 8i + 4 to 8i + 11 read
    inputs i and i + 1). The kernels then need no gathers there.
    """
    factor = upscale_factor(in_size, out_size)
    return period_of(axis_taps(in_size, out_size, align, dtype), factor) if factor else NO_PERIOD


def upscale_factor(in_size: int, out_size: int) -> int:
    """The factor of an integer upscale by at least 2 (the period its taps repeat with), else 0."""
    return out_size // in_size if out_size % in_size == 0 and out_size >= 2 * in_size else 0


def period_of(taps: AxisTaps, period: int) -> tuple[int, int, int]:
    """``(start, period, count)`` such that output ``start + k * period + q`` (``k < count``,
    ``q < period``) blends inputs ``taps.first[start] + k`` and ``taps.first[start] + k + 1``, or
    :data:`NO_PERIOD`; checked on the tables themselves, so any taps may be given (a region's).

    Only the indices repeat: the kernels keep reading each output's own weights, so that a
    factor whose weights are not exact binary fractions gives the same bits as the tables.
    """
    blended = int(np.count_nonzero(taps.first != taps.second))  # the clamped taps are a suffix
    if blended == 0:
        return NO_PERIOD
    later = np.flatnonzero(taps.first[:blended] != taps.first[0])
    # The run of the first input is the period before the second input's first column (or
    # before the clamped columns, for a one-pixel run); where that column comes sooner, the
    # first run is cut short (a region's left edge) and is left to the gathers.
    second_run = int(later[0]) if later.size else blended
    start = second_run - period if second_run >= period else second_run
    count = (blended - start) // period
    if count == 0:
        return NO_PERIOD
    columns = np.arange(start, start + count * period)
    expected = taps.first[start] + (columns - start) // period
    if not (np.array_equal(taps.first[columns], expected) and np.array_equal(taps.second[columns], expected + 1)):
        return NO_PERIOD
    return (start, period, count)


@cached_by_bytes(CACHE_BYTES)
def legacy_axis_taps(in_size: int, out_size: int, align: str, dtype: np.dtype) -> LegacyAxisTaps:
    """Taps of the original script (see :func:`fastinterp.reference.legacy_src_coord`).

    Where the coordinate is clamped it is an integer, so both weights are 0: that is the
    original's black frame, reproduced on purpose.
    """
    dst = np.arange(out_size, dtype=np.float64)
    if align == "left":
        src = dst * (in_size / out_size)
    else:  # center
        src = (dst + 0.5) * (in_size / out_size) - 0.5
    src = np.minimum(np.maximum(src + 0.001, 0.0), float(in_size - 1))
    first = np.floor(src)
    second = np.ceil(src)
    taps = LegacyAxisTaps(
        first.astype(np.int64),
        second.astype(np.int64),
        (second - src).astype(dtype),
        (src - first).astype(dtype),
    )
    _readonly(*taps)
    return taps


@cached_by_bytes(CACHE_BYTES)
def interleaved_taps(in_size: int, out_size: int, align: str, dtype: np.dtype, channels: int) -> AxisTaps:
    """:func:`axis_taps` for rows of ``channels`` interleaved values per pixel, read as flat rows.

    Flat element ``j * channels + c`` reads ``first[j] * channels + c`` and
    ``second[j] * channels + c`` with pixel ``j``'s weights.
    """
    taps = axis_taps(in_size, out_size, align, dtype)
    channel = np.arange(channels)
    interleaved = AxisTaps(
        (taps.first[:, np.newaxis] * channels + channel).ravel(),
        (taps.second[:, np.newaxis] * channels + channel).ravel(),
        np.repeat(taps.w_first, channels),
        np.repeat(taps.w_second, channels),
    )
    _readonly(*interleaved)
    return interleaved


class InverseTaps(NamedTuple):
    """For input index ``i`` along one axis: ``outputs[start[i]:start[i + 1]]`` are the output
    indices that read it (ascending, each once) and ``weights[...]`` the weights they read it with."""

    start: np.ndarray  # int64, length in_size + 1
    outputs: np.ndarray  # int64
    weights: np.ndarray  # compute dtype


@cached_by_bytes(CACHE_BYTES)
def inverse_axis_taps(in_size: int, out_size: int, align: str, dtype: np.dtype) -> InverseTaps:
    """The transpose of :func:`axis_taps` in CSR form, for the adjoint on every backend.

    Built from the float64 tables and cast once, so the adjoint uses the forward's weights.
    Each output index appears once per input index it reads, in ascending order: a fixed
    summation order. Where an edge is clamped (``first == second``) its weights are summed.
    """
    taps = axis_taps(in_size, out_size, align, np.dtype(np.float64))
    output_index = np.arange(out_size, dtype=np.int64)
    distinct = taps.first != taps.second
    sources = np.concatenate([taps.first, taps.second[distinct]])
    outputs = np.concatenate([output_index, output_index[distinct]])
    weights = np.concatenate([np.where(distinct, taps.w_first, taps.w_first + taps.w_second), taps.w_second[distinct]])
    order = np.lexsort((outputs, sources))
    start = np.zeros(in_size + 1, dtype=np.int64)
    np.cumsum(np.bincount(sources, minlength=in_size), out=start[1:])
    inverse = InverseTaps(start, outputs[order], weights[order].astype(dtype))
    _readonly(*inverse)
    return inverse

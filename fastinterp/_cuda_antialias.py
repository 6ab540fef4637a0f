"""CUDA twin of :mod:`fastinterp._antialias`: antialiased resizing with numba.cuda.

Imported only when antialiasing runs on a GPU. Two passes, in the order the CPU picks
(:func:`fastinterp._antialias.vertical_first`, from the sizes only), through an intermediate
buffer in the compute dtype:

* vertical: ``out[n, i, x] = sum_k w[i, k] * src[n, first[i] + k, x]``, threads on
  consecutive ``x`` (coalesced);
* horizontal: ``out[n, i, j * C + c] = sum_k w[j, k] * src[n, i, (first[j] + k) * C + c]``.

The weight tables are the CPU's (:func:`fastinterp._antialias.antialias_taps`), each sum runs
over its taps in ascending order from ``w[0] * x[0]`` as on the CPU, and the arithmetic uses
the non-contracting ``*_rn`` intrinsics of :mod:`fastinterp._cuda_kernels`: float outputs equal the
CPU's bit for bit, integer outputs are its float32 values rounded and saturated the same way.
Arrays are flat and C-contiguous; a thread walks the elements of its pass with a grid stride.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np
from numba import cuda

from ._antialias import antialias_taps, vertical_first
from ._cuda_kernels import ARITHMETIC, integer_store, store_float
from . import _cuda_launch
from ._plan import check_antialias_align

#: Threads per block of both passes.
THREADS_PER_BLOCK = 128
#: Blocks launched at most, in multiples of the multiprocessors (threads loop over the rest).
BLOCKS_PER_MULTIPROCESSOR = 32


@functools.lru_cache(maxsize=None)
def _pass_kernels(compute: str, store_kind: str, out_dtype: str) -> tuple[Callable, Callable]:
    """The (vertical, horizontal) kernels for a compute dtype, storing as floats or integers."""
    arith = ARITHMETIC[compute]
    cast, mul, add = arith.cast, arith.mul, arith.add
    if store_kind == "integer":
        info = np.iinfo(out_dtype)
        store = integer_store(float(info.min), float(info.max))
    else:
        store = store_float

    @cuda.jit
    def vertical(src, out, first, count, weights, items, out_rows, in_rows, width):
        """``out`` (items, out_rows, width) from ``src`` (items, in_rows, width), flat."""
        taps = weights.shape[0] // out_rows
        total = items * out_rows * width
        e = cuda.grid(1)
        while e < total:
            x = e % width
            i = (e // width) % out_rows
            source = (e // (width * out_rows)) * in_rows * width + first[i] * width + x
            tap = i * taps
            value = mul(cast(src[source]), weights[tap])
            for k in range(1, count[i]):
                value = add(value, mul(cast(src[source + k * width]), weights[tap + k]))
            store(out, e, value)
            e += cuda.gridsize(1)

    @cuda.jit
    def horizontal(src, out, first, count, weights, rows, in_width, out_width, channels):
        """``out`` (rows, out_width) from ``src`` (rows, in_width), flat; every leading
        dimension folded into ``rows``, ``channels`` values interleaved per pixel."""
        taps = weights.shape[0] * channels // out_width
        total = rows * out_width
        e = cuda.grid(1)
        while e < total:
            x = e % out_width
            j = x // channels
            source = (e // out_width) * in_width + first[j] * channels + x % channels
            tap = j * taps
            value = mul(cast(src[source]), weights[tap])
            for k in range(1, count[j]):
                value = add(value, mul(cast(src[source + k * channels]), weights[tap + k]))
            store(out, e, value)
            e += cuda.gridsize(1)

    return vertical, horizontal


@functools.lru_cache(maxsize=64)
def _device_taps(in_size: int, out_size: int, compute: str, adjoint: bool, device_id: int) -> tuple[Any, Any, Any]:
    """The CPU's tables of one axis (or of its adjoint) on the device: first, count and the flat weights."""
    taps = antialias_taps(in_size, out_size, np.dtype(compute), adjoint)
    return cuda.to_device(taps.first), cuda.to_device(taps.count), cuda.to_device(np.ascontiguousarray(taps.weights).ravel())


def _grid(elements: int, device_id: int) -> int:
    return max(1, min(-(-elements // THREADS_PER_BLOCK), BLOCKS_PER_MULTIPROCESSOR * _cuda_launch.multiprocessors(device_id)))


def run_antialias(
    src: Any,
    out: Any,
    in_h: int,
    in_w: int,
    out_h: int,
    out_w: int,
    align: str,
    compute_dtype: np.dtype,
    stream: Any = 0,
    device_id: int = 0,
) -> None:
    """Antialiased resize of C-contiguous device array ``src`` into ``out``, on ``stream``.

    Both in one kernel layout: (P, H, W) planes or (N, H, W, C) pixels. ``out`` has the
    output's size and dtype (float32, float64, float16 or the input's integer dtype);
    ``compute_dtype`` is float64 for float64 data, else float32, as on the CPU.
    """
    check_antialias_align(align)
    _run(src, out, (in_h, out_h), (in_w, out_w), np.dtype(compute_dtype), False, stream, device_id)


def run_antialias_adjoint(grad_out: Any, grad_in: Any, compute_dtype: np.dtype, stream: Any = 0, device_id: int = 0) -> None:
    """The gradient of :func:`run_antialias` with respect to its input: ``grad_in`` (P, H, W)
    from ``grad_out`` (P, OH, OW), both C-contiguous device arrays in the compute dtype (or
    float16, computed in float32 and rounded once on the store).

    The forward kernels with the transposed tables (see
    :func:`fastinterp._antialias.run_antialias_adjoint`): a deterministic gather, the CPU's bits.
    """
    (in_h, in_w), (out_h, out_w) = grad_in.shape[1:3], grad_out.shape[1:3]
    _run(grad_out, grad_in, (in_h, out_h), (in_w, out_w), np.dtype(compute_dtype), True, stream, device_id)


def _run(src: Any, out: Any, rows: tuple[int, int], cols: tuple[int, int], compute: np.dtype, adjoint: bool,
         stream: Any, device_id: int) -> None:
    """Both passes from ``src`` into ``out`` with the tables of (in, out) sizes ``rows`` and
    ``cols`` (of their adjoints with ``adjoint``, which then run from out to in)."""
    items, channels = src.shape[0], (src.shape[3] if len(src.shape) == 4 else 1)
    (src_h, src_w), (dest_h, dest_w) = src.shape[1:3], out.shape[1:3]
    ys_first, ys_count, ys_weights = _device_taps(*rows, compute.name, adjoint, device_id)
    xs_first, xs_count, xs_weights = _device_taps(*cols, compute.name, adjoint, device_id)
    out_dtype = np.dtype(out.dtype)
    store_kind = "integer" if out_dtype.kind in "ui" else "float"
    vertical, horizontal = _pass_kernels(compute.name, store_kind, out_dtype.name)
    # The first pass writes the intermediate buffer, in the compute dtype.
    to_buffer_vertical, to_buffer_horizontal = _pass_kernels(compute.name, "float", compute.name)
    flat_src, flat_out = src.reshape(src.size), out.reshape(out.size)
    ys_host = antialias_taps(*rows, compute, adjoint)
    xs_host = antialias_taps(*cols, compute, adjoint)
    if vertical_first(src_h, src_w, ys_host, xs_host):
        buffer = cuda.device_array(items * dest_h * src_w * channels, compute, stream=stream)
        to_buffer_vertical[_grid(buffer.size, device_id), THREADS_PER_BLOCK, stream](
            flat_src, buffer, ys_first, ys_count, ys_weights, items, dest_h, src_h, src_w * channels)
        horizontal[_grid(flat_out.size, device_id), THREADS_PER_BLOCK, stream](
            buffer, flat_out, xs_first, xs_count, xs_weights, items * dest_h, src_w * channels, dest_w * channels, channels)
    else:
        buffer = cuda.device_array(items * src_h * dest_w * channels, compute, stream=stream)
        to_buffer_horizontal[_grid(buffer.size, device_id), THREADS_PER_BLOCK, stream](
            flat_src, buffer, xs_first, xs_count, xs_weights, items * src_h, src_w * channels, dest_w * channels, channels)
        vertical[_grid(flat_out.size, device_id), THREADS_PER_BLOCK, stream](
            buffer, flat_out, ys_first, ys_count, ys_weights, items, dest_h, src_h, dest_w * channels)


class AntialiasLaunch:
    """Both passes from ``src_shape`` to ``out_shape`` (kernel layouts), called as a
    :class:`fastinterp._cuda_launch.Launch` is: on flat device arrays or on dense torch tensors.

    ``adjoint``: the gradient, from an output gradient ``src_shape`` to an input gradient
    ``out_shape``; ``compute_dtype`` is float64 for float64 data, else float32.
    """

    def __init__(self, src_shape: tuple[int, ...], out_shape: tuple[int, ...], compute_dtype: np.dtype,
                 adjoint: bool, device_id: int) -> None:
        self.src_shape, self.out_shape = src_shape, out_shape
        (src_h, src_w), (dest_h, dest_w) = src_shape[1:3], out_shape[1:3]
        # (in, out) sizes of the forward's tables: the adjoint runs from its output to its input
        self.rows, self.cols = ((dest_h, src_h), (dest_w, src_w)) if adjoint else ((src_h, dest_h), (src_w, dest_w))
        self.compute, self.adjoint, self.device_id = np.dtype(compute_dtype), adjoint, device_id

    def __call__(self, src: Any, out: Any, stream: Any) -> None:
        _run(src.reshape(self.src_shape), out.reshape(self.out_shape), self.rows, self.cols, self.compute,
             self.adjoint, stream, self.device_id)

    def on_tensors(self, src: Any, out: Any, stream_handle: int) -> None:
        """Launch on the memory of two dense torch tensors on CUDA stream ``stream_handle``."""
        self(_cuda_launch.tensor_numba(src), _cuda_launch.tensor_numba(out), _cuda_launch.numba_stream(stream_handle))

"""CUDA launch configuration: launch shapes, device tables, streams and memory views.

Blocks and grid come from the problem's shape and the device's multiprocessor count
(:func:`launch_shape`). A :class:`Launch` is a kernel of :mod:`fastinterp._cuda_kernels`
with its shape and index tables on the device, specialized and configured once per stream
and dtypes; for torch, the numba views and stream are kept per (addresses, stream) (see
:meth:`Launch.on_tensors`).
"""

from __future__ import annotations

import functools
import sys
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from numba import cuda

from ._coords import axis_taps, inverse_axis_taps
from ._cuda_kernels import HEADER, SIMULATED, adjoint_kernels, forward_kernel
from ._plan import Plan

#: Threads per block (128 was fastest for many small maps on an H200, and as fast for larger).
THREADS_PER_BLOCK = 128
#: Blocks launched, in multiples of what the GPU holds at once (8 was fastest on an H200).
WAVES = 8
_MAX_GRID_YZ = 65535
_MAX_THREADS_PER_SM = 2048
_MAX_BLOCKS_PER_SM = 32
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
    return 1 if SIMULATED else len(cuda.gpus)


def _current_device_id() -> int:
    return 0 if SIMULATED else cuda.current_context().device.id


@functools.lru_cache(maxsize=None)
def multiprocessors(device_id: int) -> int:
    # The simulator runs every thread as a Python thread: keep its grids small.
    return 1 if SIMULATED else cuda.get_current_device().MULTIPROCESSOR_COUNT


class Launch:
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
        configured = None if SIMULATED else self._configured.get(key)
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
            if len(self._on_tensors) >= MAX_TENSOR_VIEWS:
                self._on_tensors.clear()
            # The views have no owner: the entry keeps no memory alive.
            launch = self._on_tensors[key] = functools.partial(
                self, tensor_numba(src), tensor_numba(out), numba_stream(stream_handle))
        launch()


def _header(*values: int) -> list[int]:
    return [*values] + [0] * (HEADER - len(values))


def forward_launch(plan: Plan, outer: int, inner: int, shape: LaunchShape) -> Launch:
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
    kernel = forward_kernel(plan.compute_dtype.name, store_kind, plan.out_dtype.name)
    return Launch(kernel, shape, table, weights)


@functools.lru_cache(maxsize=128)
def cached_forward_launch(plan: Plan, outer: int, inner: int, device_id: int) -> Launch:
    shape = launch_shape(outer, plan.out_h, plan.out_w, inner, multiprocessors(device_id))
    return forward_launch(plan, outer, inner, shape)


class AdjointLaunch:
    """The adjoint's two launches and the partial sums between them: vertical first (sums of
    shape (planes, in_h, out_w)) or horizontal first ((planes, out_h, in_w)), the smaller."""

    def __init__(self, vertical: Launch, horizontal: Launch, vertical_first: bool, sums_size: int,
                 compute: np.dtype) -> None:
        self.vertical, self.horizontal, self.vertical_first = vertical, horizontal, vertical_first
        self.sums_size, self.compute = sums_size, compute

    def _passes(self) -> tuple[Launch, Launch]:
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


def by_rank(inverse: Any) -> tuple[np.ndarray, np.ndarray]:
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
) -> AdjointLaunch:
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
    vertical, horizontal = adjoint_kernels(compute.name, loads_in_flight, columns_per_thread, max_registers)
    vertical_first = in_h * out_w <= out_h * in_w
    cols = out_w if vertical_first else in_w  # the width of the rows the vertical pass walks
    rows_across = planes * (in_h if vertical_first else out_h)  # the rows the horizontal pass sums
    strip_rows = min(strip_rows, in_h)
    strips, part = -(-in_h // strip_rows), -(-cols // columns_per_thread)
    vertical_table = np.concatenate([
        _header(planes, out_h, cols, in_h, strip_rows, strips, part),
        rows.start, rows.outputs, row_taps.first,
    ]).astype(np.uint64)
    readers, reader_weights = by_rank(columns)
    horizontal_table = np.concatenate([
        _header(rows_across, in_w, out_w), np.diff(columns.start), readers.reshape(-1)]).astype(np.uint64)
    return AdjointLaunch(
        Launch(vertical, _grid(planes * strips * part, threads_per_block, waves, multiprocessors), vertical_table,
                np.concatenate([row_taps.w_first, row_taps.w_second])),
        Launch(horizontal, _grid(rows_across * in_w, threads_per_block, waves, multiprocessors), horizontal_table,
                reader_weights.reshape(-1)),
        vertical_first, planes * min(in_h * out_w, out_h * in_w), compute)


@functools.lru_cache(maxsize=64)
def cached_adjoint_launch(
    planes: int, in_h: int, in_w: int, out_h: int, out_w: int, align: str, compute: np.dtype, device_id: int
) -> AdjointLaunch:
    return adjoint_launch(planes, in_h, in_w, out_h, out_w, align, compute, multiprocessors(device_id))


class OnDevice:
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


def numba_stream(handle: int) -> Any:
    """numba's view of a CUDA stream handle (torch's or CuPy's current stream), cached."""
    stream = _streams.get(handle)
    if stream is None:
        with _streams_lock:
            stream = cuda.legacy_default_stream() if handle == 0 else cuda.external_stream(handle)
            _streams[handle] = stream
    return stream


@functools.lru_cache(maxsize=None)
def torch_numpy_dtype(dtype: Any) -> np.dtype:
    """numpy's name for a torch dtype (make_plan then says which are supported)."""
    name = str(dtype).removeprefix("torch.")
    if name not in ("float32", "float64", "float16", "uint8", "uint16", "int8", "int16", "int32", "int64", "bool"):
        raise TypeError(f"the CUDA backend does not support tensors of dtype {dtype}")
    return np.dtype(name)


#: numba views of flat tensors by (address, elements, dtype). torch's caching allocator hands
#: the same addresses out again, and numba launches far faster with a view it has seen.
_tensor_views: dict[tuple[int, int, Any], Any] = {}
MAX_TENSOR_VIEWS = 64


def tensor_numba(t: Any) -> Any:
    """A flat numba view of a dense CUDA tensor's memory, valid while ``t`` lives (the caller keeps it)."""
    if SIMULATED:
        return t
    key = (t.data_ptr(), t.numel(), t.dtype)
    view = _tensor_views.get(key)
    if view is None:
        if len(_tensor_views) >= MAX_TENSOR_VIEWS:
            _tensor_views.clear()
        # Described directly: torch's own description is slower. No owner: the view must not
        # keep freed memory alive; any live tensor at this address has these elements.
        interface = {"shape": (t.numel(),), "strides": None, "typestr": torch_numpy_dtype(t.dtype).str,
                     "data": (t.data_ptr(), False), "version": 2}
        view = _tensor_views[key] = cuda.from_cuda_array_interface(interface, owner=None, sync=False)
    return view


def flat_numba(arr: Any) -> Any:
    """A flat numba view of a C-contiguous device array (numba, CuPy or torch)."""
    flat = arr if SIMULATED else cuda.as_cuda_array(arr)
    return flat if flat.ndim == 1 else flat.reshape(-1)

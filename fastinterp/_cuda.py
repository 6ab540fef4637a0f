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
* adjoint: the transpose of the forward, as two gathers along one axis each (rows, then
  columns) through CSR tables built on the host: every input element sums its readers in a
  fixed order, so the result is deterministic, without atomics.

Indices are unsigned 64-bit: no wrap-around code per access, no overflow past 2**31.
Launches are specialized and configured once per shape, stream and dtypes; numba views of
torch tensors are reused by address (see :func:`_tensor_numba`).
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

from ._api import Plan, _check_out_numpy, _numpy_layout, _user_out_shape, check_align, make_plan
from ._coords import inverse_axis_taps

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
    """The CPU kernels' order: each source row horizontally, then two rows vertically."""
    mul, add = arith.mul, arith.add

    @cuda.jit(device=True)
    def row_terms(left, right, w_left, w_right):
        value = add(mul(left, w_left), mul(right, w_right))
        return value, value

    @cuda.jit(device=True)
    def blend(upper, lower, w_upper, w_lower):
        return add(mul(upper[0], w_upper), mul(lower[0], w_lower))

    return row_terms, blend


def _legacy_rows(arith: _Arithmetic) -> tuple[Callable, Callable]:
    """The original's ``ul*x2_x*y2_y + ur*x_x1*y2_y + ll*x2_x*y_y1 + lr*x_x1*y_y1``, left to right."""
    mul, add = arith.mul, arith.add

    @cuda.jit(device=True)
    def row_terms(left, right, x2_x, x_x1):
        return mul(left, x2_x), mul(right, x_x1)

    @cuda.jit(device=True)
    def blend(upper, lower, y2_y, y_y1):
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
        return row_terms(cast(src[row + left]), cast(src[row + right]), w_left, w_right)

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
            upper_terms = lower_terms = row_terms(cast(0), cast(0), w_left, w_right)
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
                    store(out, dest, blend(upper_terms, lower_terms, weights[pair], weights[pair + np.uint64(1)]))
                    dest += row_step
                    i += np.uint64(1)
                entry += np.uint64(3)
            o += np.uint64(cuda.gridDim.z)

    return forward


@functools.lru_cache(maxsize=None)
def _gather_kernel(compute: str) -> Any:
    """The adjoint's pass: a weighted gather along the cols axis of a 4-D view."""
    cast = _ARITHMETIC[compute].cast

    @cuda.jit
    def gather(src, out, table, weights):
        """out[o, i, j, c] = sum over k of weights[k] * src[o, i, source[k], c], k in CSR row j.

        ``table``: header (rows, src_cols, out_cols, inner, channel_blocks, outer), then
        the CSR row pointers [out_cols + 1] and the source offsets (source index * inner).
        """
        rows, src_cols, out_cols, inner = table[0], table[1], table[2], table[3]
        channel_blocks, outer = table[4], table[5]
        c, j, row_start, row_step = _thread_position(channel_blocks)  # rows strided over slots
        if c >= inner or j >= out_cols:
            return
        begin, end = table[np.uint64(_HEADER) + j], table[np.uint64(_HEADER) + j + np.uint64(1)]
        entries = np.uint64(_HEADER) + out_cols + np.uint64(1)
        # Lines are (outer, row) pairs: line = o * rows + i.
        image_line, image_step = np.uint64(cuda.blockIdx.z) * rows, np.uint64(cuda.gridDim.z) * rows
        while image_line < outer * rows:
            line = image_line + row_start
            while line < image_line + rows:
                src_row = line * src_cols * inner + c
                total = cast(0)
                for k in range(begin, end):
                    total += weights[k] * cast(src[src_row + table[entries + k]])
                out[(line * out_cols + j) * inner + c] = total
                line += row_step
            image_line += image_step

    return gather


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


def gather_launch(
    outer: int, rows: int, src_cols: int, out_cols: int, inner: int, align: str, compute: np.dtype,
    shape: LaunchShape,
) -> _Launch:
    """One adjoint pass: (outer, rows, src_cols, inner) -> (outer, rows, out_cols, inner)."""
    inverse = inverse_axis_taps(out_cols, src_cols, align, compute)
    table = np.concatenate([
        _header(rows, src_cols, out_cols, inner, shape.channel_blocks, outer), inverse.start, inverse.outputs * inner,
    ]).astype(np.uint64)
    return _Launch(_gather_kernel(compute.name), shape, table, inverse.weights)


@functools.lru_cache(maxsize=64)
def _adjoint_launches(
    planes: int, in_h: int, in_w: int, out_h: int, out_w: int, align: str, compute: np.dtype, device_id: int
) -> tuple[_Launch, _Launch]:
    """Rows pass (P, OH, OW) -> (P, H, OW), then columns pass (P, H, OW) -> (P, H, W)."""
    multiprocessors = _multiprocessors(device_id)
    rows_pass = gather_launch(planes, 1, out_h, in_h, out_w, align, compute,
                              launch_shape(planes, 1, in_h, out_w, multiprocessors))
    cols_pass = gather_launch(planes, in_h, out_w, in_w, 1, align, compute,
                              launch_shape(planes, in_h, in_w, 1, multiprocessors))
    return rows_pass, cols_pass


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


def _torch_flat(t: Any, channels_last: bool) -> Any:
    """A flat, zero-copy view of ``t`` in kernel order (NHWC for channels_last)."""
    return (t.permute(0, 2, 3, 1) if channels_last else t).reshape(-1)


def _check_torch_out(out: Any, t: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    torch = sys.modules["torch"]
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"out= must be a torch tensor for tensor input, got {type(out).__name__}")
    if out.device != t.device:
        where = "the host" if out.device.type == "cpu" else str(out.device)
        raise ValueError(f"out= is on {where}, the input on {t.device}; pass an output on {t.device}")
    if tuple(out.shape) != shape or out.dtype != dtype:
        raise ValueError(f"out= has shape {tuple(out.shape)} and dtype {out.dtype}, expected {shape} and {dtype}")
    if _overlap(_torch_range(out), _torch_range(t)):
        raise ValueError("out= overlaps the input; pass a separate tensor")
    return out


def _torch_stream(device: Any) -> Any:
    torch = sys.modules["torch"]
    return _numba_stream(torch.cuda.current_stream(device).cuda_stream)


def resize_torch(t: Any, w_rate: Any, h_rate: Any, size: Any, align: Any, legacy: bool, out: Any) -> Any:
    """Resize a CUDA tensor (..., H, W) on its device and torch's current stream, zero-copy.

    A 4-D ``channels_last`` tensor is read and written in that layout. bfloat16, which numba
    has no type for, is computed in float32 and rounded back.
    """
    torch = sys.modules["torch"]
    require_cuda()
    if t.ndim < 2:
        raise ValueError(f"expected a tensor of shape (..., H, W), got shape {tuple(t.shape)}")
    channels_last = t.ndim == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    compute_t = t.detach() if t.requires_grad else t  # (no_grad mode) the array interface refuses it
    if compute_t.dtype == torch.bfloat16:
        compute_t = compute_t.float()
    if channels_last:
        n, c, h, w = t.shape
        layout, kernel_shape = "pixels", (n, h, w, c)
    else:
        layout, kernel_shape = "planes", (math.prod(t.shape[:-2]), *t.shape[-2:])
    plan = plan_request(layout, kernel_shape, _torch_numpy_dtype(compute_t.dtype), w_rate, h_rate, size, align, legacy)
    shape = (*t.shape[:-2], plan.out_h, plan.out_w)
    out_dtype = torch.uint8 if legacy else t.dtype
    if out is None:
        result = torch.empty(shape, dtype=out_dtype, device=t.device, memory_format=memory_format)
    else:
        result = _check_torch_out(out, t, shape, out_dtype)
    direct = result.dtype != torch.bfloat16 and result.is_contiguous(memory_format=memory_format)
    target = result if direct else torch.empty(
        shape, dtype=torch.float32 if result.dtype == torch.bfloat16 else result.dtype,
        device=t.device, memory_format=memory_format,
    )
    src = _torch_flat(compute_t.contiguous(memory_format=memory_format), channels_last)
    with _OnDevice(t.device.index) as device_id:
        run(plan, kernel_shape, _tensor_numba(src), _tensor_numba(_torch_flat(target, channels_last)),
            _torch_stream(t.device), device_id)
    if target is not result:
        result.copy_(target)
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
    """A numba view of a flat CUDA tensor, valid while ``t`` lives (the caller keeps it)."""
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


def _adjoint_passes(
    grad: Any, tmp: Any, grad_in: Any, in_h: int, in_w: int, align: str, compute: np.dtype, stream: Any, device_id: int,
    shape: tuple[int, ...],
) -> None:
    """Run both gathers over flat numba arrays: grad (P, OH, OW) -> tmp (P, H, OW) -> grad_in (P, H, W)."""
    planes, out_h, out_w = math.prod(shape[:-2]), shape[-2], shape[-1]
    rows_pass, cols_pass = _adjoint_launches(planes, in_h, in_w, out_h, out_w, align, compute, device_id)
    rows_pass(grad, tmp, stream)
    cols_pass(tmp, grad_in, stream)


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
    tmp_size = math.prod(shape[:-2]) * in_h * shape[-1]
    if is_tensor:
        grad = grad_out.detach().contiguous()
        with _OnDevice(grad.device.index) as device_id:
            tmp = torch.empty(tmp_size, dtype=getattr(torch, compute.name), device=grad.device)
            grad_in = torch.empty(in_shape, dtype=grad.dtype, device=grad.device)
            _adjoint_passes(_tensor_numba(grad.view(-1)), _tensor_numba(tmp), _tensor_numba(grad_in.view(-1)),
                            in_h, in_w, align, compute,
                            _torch_stream(grad.device), device_id, shape)
        return grad_in
    if not _is_c_contiguous(grad_out):
        raise ValueError("numba device arrays must be C-contiguous; copy it into a contiguous one first")
    with _OnDevice(None) as device_id:
        tmp = cuda.device_array(tmp_size, compute)
        grad_in = cuda.device_array(in_shape, dtype)
        _adjoint_passes(_flat_numba(grad_out), tmp, _flat_numba(grad_in), in_h, in_w, align, compute, 0, device_id, shape)
    return grad_in

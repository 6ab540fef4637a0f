"""CPU backend: numba kernels behind :func:`fastinterp.resize`.

The drivers :func:`serial_tasks` and :func:`parallel_tasks` split the output into tasks (one
image or plane times one block of output rows) and run each with the task body that fits
its arguments' types, one per memory pattern:

* planes (P, H, W), channels-first, separable: a task interpolates the input rows it needs
  horizontally into a small scratch buffer, then blends pairs of those rows vertically, so
  the inner loops run over contiguous memory and vectorise; large outputs are blended
  in a cached block and streamed out (:data:`STREAM_MIN_BYTES`);
* pixels (N, H, W, C), channels-last: the same two passes on vectors of contiguous channels
  (the inner loop runs over channels), the horizontal pass of an output column shared by the
  output rows that read the same two input rows. With taps of type
  :class:`~fastinterp._coords.LegacyAxisTaps` it computes the original script's expression
  and uint8 store instead, bit for bit;
* adjoint (taps of type :class:`~fastinterp._coords.InverseTaps`): the gradient of a resize
  with respect to its input, ``src`` the output gradient (P, OH, OW) and ``out`` the input
  gradient (P, H, W): every input pixel gathers from the output pixels that read it, so
  there are no atomics and the result is deterministic.

The taps come from :mod:`fastinterp._coords`. :func:`run_tasks` runs small work serially: it
is not worth waking the thread pool, and writes large planes outputs with streaming stores
(:data:`STREAM_MIN_BYTES`).
"""

from __future__ import annotations

import platform

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload
from numba.np.numpy_support import as_dtype

from ._coords import InverseTaps, LegacyAxisTaps
from ._threads import get_num_threads, parallel_launch

#: Below this many output elements a call runs on the calling thread only.
SERIAL_THRESHOLD = 1 << 16
#: Target number of tasks per thread, so that uneven tasks still balance.
TASKS_PER_THREAD = 8
#: Planes outputs of at least this many bytes are written with streaming (non-temporal) stores.
#: An ordinary store to a line that is not cached first reads the line from memory, so a large
#: output costs twice its size in memory traffic (the parallel fill of the benchmarks pays
#: that too); streaming stores write it once, but bypass the caches, which a small output that
#: is read right after the call would miss.
STREAM_MIN_BYTES = 1 << 25
#: From this many rows on, the planes body's horizontal pass runs column by column (see
#: :func:`_horizontal_by_columns`): a vector of float32 rows in one AVX register.
COLUMNS_MIN_ROWS = 8
#: Bytes of one streaming store: one AVX register, aligned to its size.
STREAM_BYTES = 32
#: Streaming stores write whole cache lines: a line that also takes an ordinary store (the
#: ends of a row) is read into the cache, and a streaming store to it then flushes it (this
#: made a (2048, 192, 192) output 5x slower than with ordinary stores).
CACHE_LINE_BYTES = 64


def schedule(outer: int, out_h: int, out_elements: int) -> tuple[int, bool]:
    """Rows per task and whether to run serially, for ``outer`` images of ``out_h`` rows."""
    if out_elements < SERIAL_THRESHOLD:
        return out_h, True
    threads = get_num_threads()
    if threads == 1:
        return out_h, True
    wanted_tasks = threads * TASKS_PER_THREAD
    if outer >= wanted_tasks:
        return out_h, False
    blocks_per_outer = -(-wanted_tasks // outer)
    return max(1, -(-out_h // blocks_per_outer)), False


def _to_output(value, out):  # pragma: no cover - replaced by the overload below in jitted code
    raise NotImplementedError


@overload(_to_output, inline="always")
def _to_output_impl(value, out):
    """Convert a computed value for storing into ``out``: round and saturate for integers."""
    if isinstance(out.dtype, types.Integer):
        info = np.iinfo(str(out.dtype))
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


def _as_weight_type(value, weight):  # pragma: no cover - replaced by the overload below in jitted code
    raise NotImplementedError


@overload(_as_weight_type, inline="always")
def _as_weight_type_impl(value, weight):
    """``value`` as the weights' float type: numba would compute integer * float32 in float64."""
    weight_type = as_dtype(weight).type
    return lambda value, weight: weight_type(value)


def _vector_pointer(context, builder, array_type, array, index):
    """Pointer to the ``STREAM_BYTES`` of the 1-D ``array`` from element ``index`` on, as one vector."""
    data = context.make_array(array_type)(context, builder, array).data
    element = context.get_data_type(array_type.dtype)
    vector = ir.VectorType(element, STREAM_BYTES // context.get_abi_sizeof(element))
    return builder.bitcast(builder.gep(data, [index]), vector.as_pointer())


def _load_lanes(context, builder, array_type, array, index):
    pointer = _vector_pointer(context, builder, array_type, array, index)
    return builder.load(pointer, align=context.get_abi_sizeof(pointer.type.pointee.element))


def _splat(builder, value, vector_type):
    vector = ir.Constant(vector_type, ir.Undefined)
    for lane in range(vector_type.count):
        vector = builder.insert_element(vector, value, ir.IntType(32)(lane))
    return vector


def _stream_store(builder, value, pointer):
    store = builder.store(value, pointer, align=STREAM_BYTES)
    store.set_metadata("nontemporal", builder.module.add_metadata([ir.IntType(32)(1)]))


@intrinsic
def _stream_copy(typingctx, target, at, source, start):
    """``target[at:at + lanes] = source[start:start + lanes]`` in one streaming store
    (``target`` aligned to ``STREAM_BYTES`` at ``at``)."""

    def codegen(context, builder, signature, args):
        target_type, _, source_type, _ = signature.args
        value = _load_lanes(context, builder, source_type, args[2], args[3])
        _stream_store(builder, value, _vector_pointer(context, builder, target_type, args[0], args[1]))
        return context.get_dummy_value()

    return types.void(target, at, source, start), codegen


@intrinsic
def _misalignment(typingctx, array, at):
    """Elements from ``array[at]`` to the next cache-line boundary of the 1-D ``array``."""

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        data = context.make_array(array_type)(context, builder, args[0]).data
        address = builder.ptrtoint(builder.gep(data, [args[1]]), context.get_value_type(types.intp))
        line = ir.Constant(address.type, CACHE_LINE_BYTES)
        gap = builder.urem(builder.sub(line, builder.urem(address, line)), line)
        itemsize = context.get_abi_sizeof(context.get_data_type(array_type.dtype))
        return builder.udiv(gap, ir.Constant(address.type, itemsize))

    return types.intp(array, at), codegen


@intrinsic
def _store_fence(typingctx):
    """Order this thread's streaming stores before anything it does next: they are weakly
    ordered, and a locked instruction (all a ``seq_cst`` fence is on x86) does not order them."""

    def codegen(context, builder, signature, args):
        if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
            function_type = ir.FunctionType(ir.VoidType(), [])
            builder.call(cgutils.get_or_insert_function(builder.module, function_type, "llvm.x86.sse.sfence"), [])
        else:
            builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


@njit(inline="always")
def _stream_out(target, at, source):
    """``target[at:at + source.size] = source``, both flat: the cache lines that lie wholly in
    the range in streaming stores, the partial lines at its ends (which neighbouring tasks also
    write) in ordinary ones. Each line takes one kind of store only: a streaming store to a
    line that an ordinary store has cached flushes it (writing rows in place this way, with a
    partial line at every row's end, cost as much as ordinary stores)."""
    lanes = STREAM_BYTES // target.itemsize
    head = min(source.size, _misalignment(target, at))
    vectors = (source.size - head) // (CACHE_LINE_BYTES // target.itemsize) * (CACHE_LINE_BYTES // STREAM_BYTES)
    for j in range(head):
        target[at + j] = source[j]
    for k in range(vectors):
        _stream_copy(target, at + head + k * lanes, source, head + k * lanes)
    for j in range(head + vectors * lanes, source.size):
        target[at + j] = source[j]
    _store_fence()


@njit(inline="always")
def _task_rows(task, blocks_per_outer, rows_per_task, out_h):
    outer = task // blocks_per_outer
    row_start = (task % blocks_per_outer) * rows_per_task
    return outer, row_start, min(row_start + rows_per_task, out_h)


@njit(inline="always")
def _unclamped_count(taps):
    """How many leading taps are not clamped. A clamped tap (``first == second``, past the
    last pixel) must read its pixel alone: ``inf * 1 + inf * 0`` would be NaN. Sources grow
    with the output index, so the clamped taps are a suffix, handled outside the blend loop."""
    n = taps.first.shape[0]
    while n > 0 and taps.first[n - 1] == taps.second[n - 1]:
        n -= 1
    return n


@njit(inline="always")
def _horizontal_by_rows(lines, xs, rows):
    """``rows[r]`` = ``lines[r]`` interpolated along the row, row by row (a gather per element)."""
    blended_columns = _unclamped_count(xs)
    for r in range(rows.shape[0]):
        line = lines[r]
        for j in range(blended_columns):
            w_left, w_right = xs.w_first[j], xs.w_second[j]
            left, right = _as_weight_type(line[xs.first[j]], w_left), _as_weight_type(line[xs.second[j]], w_left)
            rows[r, j] = left * w_left + right * w_right
        for j in range(blended_columns, rows.shape[1]):
            rows[r, j] = _as_weight_type(line[xs.first[j]], xs.w_first[j])


@njit(inline="always")
def _horizontal_by_columns(lines, xs, rows):
    """:func:`_horizontal_by_rows` column by column: each output column blends two input
    columns over every row at once, a vector operation where the row-by-row pass gathers one
    element at a time; the price is two small transposes. The same operations on the same
    values, so the same bits."""
    n_rows, in_w, out_w = rows.shape[0], lines.shape[1], rows.shape[1]
    columns = np.empty((in_w, n_rows), dtype=rows.dtype)
    for r in range(n_rows):
        for c in range(in_w):
            columns[c, r] = _as_weight_type(lines[r, c], xs.w_first[0])
    blended = np.empty((out_w, n_rows), dtype=rows.dtype)
    blended_columns = _unclamped_count(xs)
    for j in range(blended_columns):
        left, right, column = columns[xs.first[j]], columns[xs.second[j]], blended[j]
        w_left, w_right = xs.w_first[j], xs.w_second[j]
        for r in range(n_rows):
            column[r] = left[r] * w_left + right[r] * w_right
    for j in range(blended_columns, out_w):
        blended[j] = columns[xs.first[j]]
    for r in range(n_rows):
        for j in range(out_w):
            rows[r, j] = blended[j, r]


@njit(cache=True)
def _plane_task(src, out, ys, xs, task, blocks_per_plane, rows_per_task, stream):
    out_h, out_w = out.shape[1], out.shape[2]
    plane, row_start, row_stop = _task_rows(task, blocks_per_plane, rows_per_task, out_h)
    first_row = ys.first[row_start]
    rows = np.empty((ys.second[row_stop - 1] - first_row + 1, out_w), dtype=xs.w_first.dtype)
    if rows.shape[0] >= COLUMNS_MIN_ROWS:
        _horizontal_by_columns(src[plane, first_row : first_row + rows.shape[0]], xs, rows)
    else:
        _horizontal_by_rows(src[plane, first_row : first_row + rows.shape[0]], xs, rows)
    # Streaming: the block is blended in a cached buffer, then streamed out (see _stream_out).
    block = np.empty((row_stop - row_start, out_w), out.dtype) if stream else out[plane, row_start:row_stop]
    for i in range(row_start, row_stop):
        top, bottom = rows[ys.first[i] - first_row], rows[ys.second[i] - first_row]
        w_top, w_bottom = ys.w_first[i], ys.w_second[i]
        target = block[i - row_start]
        if ys.first[i] == ys.second[i]:  # a clamped row: the row itself (see _unclamped_count)
            for j in range(out_w):
                target[j] = _to_output(top[j], out)
        else:
            for j in range(out_w):
                target[j] = _to_output(top[j] * w_top + bottom[j] * w_bottom, out)
    if stream:
        _stream_out(out.reshape(out.size), (plane * out_h + row_start) * out_w, block.reshape(block.size))


@njit(inline="always")
def _legacy_uint8(value):
    # numpy stores a float into uint8 with a C cast through a 32-bit integer; doing the same
    # cast here gives the same machine instruction and so the same result for every input:
    # truncation, wrap-around modulo 256, and (on x86) 0 for NaN, infinities and anything
    # outside int32. A range check would be clearer but stops the loop from vectorising.
    return np.uint8(np.int32(value) & 0xFF)


@njit(inline="always")
def _horizontal_pixels(line, left, right, w_left, w_right, result):
    """``result`` = the channels of pixel ``left`` of the image row ``line`` (W, C) blended with
    those of pixel ``right``; pixel ``left`` alone where the columns are clamped (see
    :func:`_unclamped_count`). The planes body's row operations, channel by channel."""
    first, second = line[left], line[right]
    if left == right:
        for c in range(result.shape[0]):
            result[c] = _as_weight_type(first[c], w_left)
    else:
        for c in range(result.shape[0]):
            result[c] = _as_weight_type(first[c], w_left) * w_left + _as_weight_type(second[c], w_left) * w_right


def _pixel_rows(src, out, ys, xs, image, row_start, row_stop):  # pragma: no cover - see the overload
    raise NotImplementedError


@overload(_pixel_rows, inline="always")
def _pixel_rows_impl(src, out, ys, xs, image, row_start, row_stop):
    """Output rows ``row_start:row_stop`` of one (H, W, C) image: separable, or with taps of type
    :class:`~fastinterp._coords.LegacyAxisTaps` the original script's expression."""
    if getattr(ys, "instance_class", None) is LegacyAxisTaps:

        def original_expression(src, out, ys, xs, image, row_start, row_stop):
            for i in range(row_start, row_stop):
                upper, lower = src[image, ys.first[i]], src[image, ys.second[i]]
                w_top, w_bottom = ys.w_first[i], ys.w_second[i]
                for j in range(out.shape[2]):
                    left, right = xs.first[j], xs.second[j]
                    w_left, w_right = xs.w_first[j], xs.w_second[j]
                    target = out[image, i, j]
                    for c in range(out.shape[3]):
                        # img[i1,j1]*x2_x*y2_y + img[i1,j2]*x_x1*y2_y + img[i2,j1]*x2_x*y_y1 + img[i2,j2]*x_x1*y_y1,
                        # term by term and left to right, as numpy evaluates it in the original.
                        target[c] = _legacy_uint8(
                            upper[left, c] * w_left * w_top + upper[right, c] * w_right * w_top
                            + lower[left, c] * w_left * w_bottom + lower[right, c] * w_right * w_bottom
                        )  # fmt: skip

        return original_expression

    def separable(src, out, ys, xs, image, row_start, row_stop):
        # The same operations, in the same order and precision, as the planes body (bit-identical
        # results in both layouts). Consecutive output rows that read the same two input rows
        # (8 at a time when upscaling by 8) share the horizontal pass of each output column.
        upper_row = np.empty(out.shape[3], dtype=xs.w_first.dtype)
        lower_row = np.empty(out.shape[3], dtype=xs.w_first.dtype)
        i = row_start
        while i < row_stop:
            group_stop = i + 1
            while group_stop < row_stop and ys.first[group_stop] == ys.first[i] and ys.second[group_stop] == ys.second[i]:
                group_stop += 1
            y_clamped = ys.first[i] == ys.second[i]
            for j in range(out.shape[2]):
                left, right, w_left, w_right = xs.first[j], xs.second[j], xs.w_first[j], xs.w_second[j]
                _horizontal_pixels(src[image, ys.first[i]], left, right, w_left, w_right, upper_row)
                if not y_clamped:
                    _horizontal_pixels(src[image, ys.second[i]], left, right, w_left, w_right, lower_row)
                for r in range(i, group_stop):
                    target = out[image, r, j]
                    if y_clamped:  # a clamped row: the row itself (see _unclamped_count)
                        for c in range(target.shape[0]):
                            target[c] = _to_output(upper_row[c], out)
                    else:
                        w_top, w_bottom = ys.w_first[r], ys.w_second[r]
                        for c in range(target.shape[0]):
                            target[c] = _to_output(upper_row[c] * w_top + lower_row[c] * w_bottom, out)
            i = group_stop

    return separable


@njit(cache=True)
def _pixel_task(src, out, ys, xs, task, blocks_per_image, rows_per_task, stream):
    image, row_start, row_stop = _task_rows(task, blocks_per_image, rows_per_task, out.shape[1])
    _pixel_rows(src, out, ys, xs, image, row_start, row_stop)


@njit(inline="always")
def _gather_rows(rows, inverse, index, total):
    """``total[:] = sum of weight * rows[o]`` over the (o, weight) pairs that read input ``index``."""
    total[:] = 0
    for k in range(inverse.start[index], inverse.start[index + 1]):
        weight, row = inverse.weights[k], rows[inverse.outputs[k]]
        for j in range(total.shape[0]):
            total[j] += weight * row[j]


@njit(cache=True)
def _adjoint_task(grad_out, grad_in, ys, xs, task, blocks_per_plane, rows_per_task, stream):
    in_h, in_w, out_w = grad_in.shape[1], grad_in.shape[2], grad_out.shape[2]
    plane, row_start, row_stop = _task_rows(task, blocks_per_plane, rows_per_task, in_h)
    n_rows = row_stop - row_start
    # The vertical pass leaves its rows transposed (one row per output column), so that
    # the horizontal pass is the same contiguous, vectorisable row gather.
    row_sum = np.empty(out_w, dtype=grad_in.dtype)
    columns = np.empty((out_w, n_rows), dtype=grad_in.dtype)
    for i in range(row_start, row_stop):
        _gather_rows(grad_out[plane], ys, i, row_sum)
        columns[:, i - row_start] = row_sum
    column_sum = np.empty(n_rows, dtype=grad_in.dtype)
    for j in range(in_w):
        _gather_rows(columns, xs, j, column_sum)
        grad_in[plane, row_start:row_stop, j] = column_sum


def _run_task(src, out, ys, xs, task, blocks, rows_per_task, stream):  # pragma: no cover - see the overload
    raise NotImplementedError


@overload(_run_task, inline="always")
def _run_task_impl(src, out, ys, xs, task, blocks, rows_per_task, stream):
    """Pick the task body from the argument types: the adjoint for inverse taps, else (P, H, W)
    planes or (N, H, W, C) pixels by the rank of ``src``."""
    if getattr(ys, "instance_class", None) is InverseTaps:
        body = _adjoint_task
    elif src.ndim == 3:
        body = _plane_task
    else:
        body = _pixel_task
    return lambda src, out, ys, xs, task, blocks, rows_per_task, stream: body(
        src, out, ys, xs, task, blocks, rows_per_task, stream
    )


@njit(inline="always")
def _task_count(src, out, rows_per_task):
    """(tasks, row blocks per leading item) for tasks of ``rows_per_task`` rows of ``out``."""
    blocks = -(-out.shape[1] // rows_per_task)
    return src.shape[0] * blocks, blocks


# Two drivers, not one with a serial branch: LLVM optimises the task body again inside every
# driver that calls it, and a first call now compiles only the driver it runs.
@njit(cache=True)
def serial_tasks(src, out, ys, xs, rows_per_task, stream=False):
    """Fill ``out`` from ``src`` in tasks of one leading item and ``rows_per_task`` rows of ``out``,
    in order; with ``stream``, planes are written with streaming stores."""
    n_tasks, blocks = _task_count(src, out, rows_per_task)
    for task in range(n_tasks):
        _run_task(src, out, ys, xs, task, blocks, rows_per_task, stream)


@njit(cache=True, parallel=True)
def parallel_tasks(src, out, ys, xs, rows_per_task, stream=False):
    """:func:`serial_tasks` on numba's thread pool."""
    n_tasks, blocks = _task_count(src, out, rows_per_task)
    for task in prange(n_tasks):
        # prange's index is unsigned: cast it so that both drivers call one compiled task body
        # instead of compiling a second one for uint64 (1.2 s when the other driver first runs).
        _run_task(src, out, ys, xs, np.int64(task), blocks, rows_per_task, stream)


def streams(out: np.ndarray, min_bytes: int = STREAM_MIN_BYTES, fresh_output: bool = False) -> bool:
    """Whether the kernels write ``out`` with streaming stores: large enough to leave the caches
    anyway (see :data:`STREAM_MIN_BYTES`), aligned to its items (numpy allows less), and not
    just allocated (``fresh_output``): the kernel zeroes each new page through the cache on the
    first write, and streaming stores over those cached lines cost more than ordinary ones (a
    fresh (2048, 192, 192) float32 output: 1.10x and 1.13x in two paired runs)."""
    return not fresh_output and out.nbytes >= min_bytes and out.ctypes.data % out.itemsize == 0


def run_tasks(
    src, out, ys, xs, rows_per_task: int, serial: bool, stream_min_bytes: int = STREAM_MIN_BYTES,
    fresh_output: bool = False,
) -> None:
    """Run the tasks serially or in parallel; parallel launches go through the thread-safety guard.
    ``stream_min_bytes`` and ``fresh_output``: see :func:`streams`."""
    stream = streams(out, stream_min_bytes, fresh_output)
    if serial:
        serial_tasks(src, out, ys, xs, rows_per_task, stream)
    else:
        with parallel_launch():
            parallel_tasks(src, out, ys, xs, rows_per_task, stream)

"""CPU backend: numba kernels behind :func:`fastinterp.resize`.

The drivers :func:`serial_tasks` and :func:`parallel_tasks` split the output into tasks (one
image or plane times one block of output rows) and run each with the task body that fits
its arguments' types, one per memory pattern:

* planes (P, H, W), channels-first, separable: a task interpolates the input rows it needs
  horizontally into a small scratch buffer, then blends pairs of those rows vertically, so
  the inner loops run over contiguous memory and vectorise. Where the column taps are
  periodic in whole vectors (an integer upscale by a multiple of 8 in float32, of 4 in
  float64: see :func:`fastinterp._coords.tap_period`), the horizontal pass reads each pair of
  input pixels once and writes its output columns as whole vectors (:func:`_blend_vector`);
  elsewhere it gathers the taps of each output column;
* pixels (N, H, W, C), channels-last: each output pixel blends four contiguous channel
  vectors; the inner loop runs over channels. With taps of type
  :class:`~fastinterp._coords.LegacyAxisTaps` it computes the original script's expression
  and uint8 store instead, bit for bit;
* adjoint (taps of type :class:`~fastinterp._coords.InverseTaps`): the gradient of a resize
  with respect to its input, ``src`` the output gradient (P, OH, OW) and ``out`` the input
  gradient (P, H, W): every input pixel gathers from the output pixels that read it, so
  there are no atomics and the result is deterministic.

The taps come from :mod:`fastinterp._coords`. :func:`run_tasks` runs small work serially: it
is not worth waking the thread pool.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload
from numba.np.numpy_support import as_dtype

from ._coords import NO_PERIOD, InverseTaps, LegacyAxisTaps
from ._threads import get_num_threads, parallel_launch

#: Below this many output elements a call runs on the calling thread only.
SERIAL_THRESHOLD = 1 << 16
#: Target number of tasks per thread, so that uneven tasks still balance.
TASKS_PER_THREAD = 8
#: Bytes of one vector of :func:`_blend_vector` (an AVX2 register: 8 float32 or 4 float64 lanes;
#: LLVM splits it into two where vectors are narrower, and it stays correct everywhere).
VECTOR_BYTES = 32


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


def _lanes(row):  # pragma: no cover - replaced by the overload below in jitted code
    raise NotImplementedError


@overload(_lanes, inline="always")
def _lanes_impl(row):
    """Elements of ``row``'s dtype in one vector of :data:`VECTOR_BYTES` (a constant of the type)."""
    lanes = VECTOR_BYTES * 8 // row.dtype.bitwidth
    return lambda row: lanes


@intrinsic
def _blend_vector(typingctx, row, start, left, right, w_left, w_right):
    """``row[start + k] = left * w_left[start + k] + right * w_right[start + k]`` for the
    :func:`_lanes` ``k`` of one vector, as one vector load, multiply, add and store.

    A loop over 8 columns does not give this: numba's loop vectoriser takes 8 lanes times 4
    interleaved (32 columns) per step, so 8 columns run in its 4-lane tail behind runtime alias
    checks, and numba turns off the SLP vectoriser that would make one vector of 8 unrolled
    statements (NUMBA_SLP_VECTORIZE=0 by default).
    Each lane is the same IEEE multiply and add as the scalar loop, so the bits are the same.
    The caller keeps ``start + lanes`` within all three arrays (nothing is checked here).
    """
    same = row.dtype == w_left.dtype == w_right.dtype == left == right
    if not (same and isinstance(row.dtype, types.Float) and row.ndim == w_left.ndim == w_right.ndim == 1):
        return None
    if not row.layout == w_left.layout == w_right.layout == "C":  # it reads raw memory from ``start`` on
        return None
    lanes = VECTOR_BYTES * 8 // row.dtype.bitwidth

    def codegen(context, builder, signature, args):
        row_value, start_value, left_value, right_value, w_left_value, w_right_value = args
        element = context.get_data_type(row.dtype)
        vector = ir.VectorType(element, lanes)
        alignment = row.dtype.bitwidth // 8

        def vector_pointer(array_type, array_value):
            data = context.make_array(array_type)(context, builder, array_value).data
            return builder.bitcast(builder.gep(data, [start_value]), vector.as_pointer())

        def splat(scalar):
            undefined = ir.Constant(vector, ir.Undefined)
            first = builder.insert_element(undefined, scalar, ir.Constant(ir.IntType(32), 0))
            return builder.shuffle_vector(first, undefined, ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))

        weights_left = builder.load(vector_pointer(w_left, w_left_value), align=alignment)
        weights_right = builder.load(vector_pointer(w_right, w_right_value), align=alignment)
        blended = builder.fadd(builder.fmul(splat(left_value), weights_left), builder.fmul(splat(right_value), weights_right))
        builder.store(blended, vector_pointer(row, row_value), align=alignment)
        return context.get_dummy_value()

    return types.none(row, start, left, right, w_left, w_right), codegen


@njit(inline="always")
def _interpolate_gather(line, row, xs, start, stop):
    """Blended columns ``start:stop`` of ``row`` from ``line``, each reading its own taps."""
    for j in range(start, stop):
        w_left, w_right = xs.w_first[j], xs.w_second[j]
        left, right = _as_weight_type(line[xs.first[j]], w_left), _as_weight_type(line[xs.second[j]], w_left)
        row[j] = left * w_left + right * w_right


@njit(inline="always")
def _interpolate_periodic(line, row, xs, period_start, period, count):
    """Columns ``period_start + k * period + q`` of ``row`` (``k < count``, ``q < period``, period a
    multiple of :func:`_lanes`) from inputs ``first + k`` and ``first + k + 1`` of ``line``, as
    vectors: the same operations as :func:`_interpolate_gather`, without its gathers."""
    if count == 0:
        return
    lanes, w_type = _lanes(row), xs.w_first[0]
    # A slice indexed from 0: numba's wraparound of a possibly negative index (first + k)
    # would otherwise cost a select per read.
    inputs = line[xs.first[period_start] : xs.first[period_start] + count + 1]
    for k in range(count):
        left, right = _as_weight_type(inputs[k], w_type), _as_weight_type(inputs[k + 1], w_type)
        for j in range(period_start + k * period, period_start + (k + 1) * period, lanes):
            _blend_vector(row, j, left, right, xs.w_first, xs.w_second)


@njit(cache=True)
def _plane_task(src, out, ys, xs, task, blocks_per_plane, rows_per_task, x_period):
    out_h, out_w = out.shape[1], out.shape[2]
    plane, row_start, row_stop = _task_rows(task, blocks_per_plane, rows_per_task, out_h)
    first_row = ys.first[row_start]
    rows = np.empty((ys.second[row_stop - 1] - first_row + 1, out_w), dtype=xs.w_first.dtype)
    blended_columns = _unclamped_count(xs)
    period_start, period, count = x_period
    if period == 0 or period % _lanes(rows) != 0:  # no period in whole vectors: gather all
        period_start, count = blended_columns, 0
    period_stop = period_start + count * period
    for r in range(rows.shape[0]):
        line, row = src[plane, first_row + r], rows[r]
        # From column 0, a constant: numba then drops the wraparound of a negative index, which
        # cost the gathers 18% on channels-last photos (flat rows) when the start was a variable.
        _interpolate_gather(line, row, xs, 0, period_start)
        _interpolate_periodic(line, row, xs, period_start, period, count)
        _interpolate_gather(line, row, xs, period_stop, blended_columns)
        for j in range(blended_columns, out_w):
            row[j] = _as_weight_type(line[xs.first[j]], xs.w_first[j])
    for i in range(row_start, row_stop):
        top, bottom = rows[ys.first[i] - first_row], rows[ys.second[i] - first_row]
        w_top, w_bottom = ys.w_first[i], ys.w_second[i]
        target = out[plane, i]
        if ys.first[i] == ys.second[i]:  # a clamped row: the row itself (see _unclamped_count)
            for j in range(out_w):
                target[j] = _to_output(top[j], out)
        else:
            for j in range(out_w):
                target[j] = _to_output(top[j] * w_top + bottom[j] * w_bottom, out)


@njit(inline="always")
def _legacy_uint8(value):
    # numpy stores a float into uint8 with a C cast through a 32-bit integer; doing the same
    # cast here gives the same machine instruction and so the same result for every input:
    # truncation, wrap-around modulo 256, and (on x86) 0 for NaN, infinities and anything
    # outside int32. A range check would be clearer but stops the loop from vectorising.
    return np.uint8(np.int32(value) & 0xFF)


def _blend(a, b, c, d, w_left, w_right, w_top, w_bottom, x_clamped, y_clamped, ys, out):  # pragma: no cover
    raise NotImplementedError


@overload(_blend, inline="always")
def _blend_impl(a, b, c, d, w_left, w_right, w_top, w_bottom, x_clamped, y_clamped, ys, out):
    """The stored value of one output element from its four taps (a b / c d) and weights;
    a clamped axis reads its first tap alone (see :func:`_unclamped_count`)."""
    if getattr(ys, "instance_class", None) is LegacyAxisTaps:

        def original_expression(a, b, c, d, w_left, w_right, w_top, w_bottom, x_clamped, y_clamped, ys, out):
            # img[i1,j1]*x2_x*y2_y + img[i1,j2]*x_x1*y2_y + img[i2,j1]*x2_x*y_y1 + img[i2,j2]*x_x1*y_y1,
            # term by term and left to right, as numpy evaluates it in the original.
            return _legacy_uint8(a * w_left * w_top + b * w_right * w_top + c * w_left * w_bottom + d * w_right * w_bottom)

        return original_expression

    def bilinear(a, b, c, d, w_left, w_right, w_top, w_bottom, x_clamped, y_clamped, ys, out):
        # The same operations, in the same order and precision, as the separable planes body:
        # bit-identical results in both layouts.
        a, b = _as_weight_type(a, w_left), _as_weight_type(b, w_left)
        c, d = _as_weight_type(c, w_left), _as_weight_type(d, w_left)
        top = a if x_clamped else a * w_left + b * w_right
        if y_clamped:
            return _to_output(top, out)
        bottom = c if x_clamped else c * w_left + d * w_right
        return _to_output(top * w_top + bottom * w_bottom, out)

    return bilinear


@njit(cache=True)
def _pixel_task(src, out, ys, xs, task, blocks_per_image, rows_per_task, x_period):
    out_h, out_w, channels = out.shape[1], out.shape[2], out.shape[3]
    image, row_start, row_stop = _task_rows(task, blocks_per_image, rows_per_task, out_h)
    for i in range(row_start, row_stop):
        upper, lower = src[image, ys.first[i]], src[image, ys.second[i]]
        w_top, w_bottom = ys.w_first[i], ys.w_second[i]
        y_clamped = ys.first[i] == ys.second[i]
        for j in range(out_w):
            left, right = xs.first[j], xs.second[j]
            w_left, w_right = xs.w_first[j], xs.w_second[j]
            target = out[image, i, j]
            for c in range(channels):
                target[c] = _blend(
                    upper[left, c], upper[right, c], lower[left, c], lower[right, c],
                    w_left, w_right, w_top, w_bottom, left == right, y_clamped, ys, out,
                )  # fmt: skip


@njit(inline="always")
def _gather_rows(rows, inverse, index, total):
    """``total[:] = sum of weight * rows[o]`` over the (o, weight) pairs that read input ``index``."""
    total[:] = 0
    for k in range(inverse.start[index], inverse.start[index + 1]):
        weight, row = inverse.weights[k], rows[inverse.outputs[k]]
        for j in range(total.shape[0]):
            total[j] += weight * row[j]


@njit(cache=True)
def _adjoint_task(grad_out, grad_in, ys, xs, task, blocks_per_plane, rows_per_task, x_period):
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


def _run_task(src, out, ys, xs, task, blocks, rows_per_task, x_period):  # pragma: no cover - see the overload
    raise NotImplementedError


@overload(_run_task, inline="always")
def _run_task_impl(src, out, ys, xs, task, blocks, rows_per_task, x_period):
    """Pick the task body from the argument types: the adjoint for inverse taps, else (P, H, W)
    planes or (N, H, W, C) pixels by the rank of ``src``. Only the planes body reads ``x_period``."""
    if getattr(ys, "instance_class", None) is InverseTaps:
        body = _adjoint_task
    elif src.ndim == 3:
        body = _plane_task
    else:
        body = _pixel_task
    return lambda src, out, ys, xs, task, blocks, rows_per_task, x_period: body(
        src, out, ys, xs, task, blocks, rows_per_task, x_period
    )


@njit(inline="always")
def _task_count(src, out, rows_per_task):
    """(tasks, row blocks per leading item) for tasks of ``rows_per_task`` rows of ``out``."""
    blocks = -(-out.shape[1] // rows_per_task)
    return src.shape[0] * blocks, blocks


# Two drivers, not one with a serial branch: LLVM optimises the task body again inside every
# driver that calls it, and a first call now compiles only the driver it runs.
@njit(cache=True)
def serial_tasks(src, out, ys, xs, rows_per_task, x_period=NO_PERIOD):
    """Fill ``out`` from ``src`` in tasks of one leading item and ``rows_per_task`` rows of ``out``, in order;
    ``x_period``: see :func:`fastinterp._coords.tap_period` (the planes body reads it)."""
    n_tasks, blocks = _task_count(src, out, rows_per_task)
    for task in range(n_tasks):
        _run_task(src, out, ys, xs, task, blocks, rows_per_task, x_period)


@njit(cache=True, parallel=True)
def parallel_tasks(src, out, ys, xs, rows_per_task, x_period=NO_PERIOD):
    """:func:`serial_tasks` on numba's thread pool."""
    n_tasks, blocks = _task_count(src, out, rows_per_task)
    for task in prange(n_tasks):
        # prange's index is unsigned: cast it so that both drivers call one compiled task body
        # instead of compiling a second one for uint64 (1.2 s when the other driver first runs).
        _run_task(src, out, ys, xs, np.int64(task), blocks, rows_per_task, x_period)


def read_only(src: np.ndarray) -> np.ndarray:
    """``src`` as a read-only view, as every driver passes its source: numba compiles a kernel
    once for writable and once for read-only arrays (``np.asarray`` of a PIL image is
    read-only), and the kernels only read their source, so one kind compiles each kernel once."""
    view = src.view()
    view.flags.writeable = False
    return view


def run_tasks(src, out, ys, xs, rows_per_task: int, serial: bool, x_period: tuple[int, int, int] = NO_PERIOD) -> None:
    """Run the tasks serially or in parallel; parallel launches go through the thread-safety guard.
    ``x_period``, the period of ``xs`` (:func:`fastinterp._coords.tap_period`), lets the planes body
    skip the gathers; it changes no result."""
    src = read_only(src)
    if serial:
        serial_tasks(src, out, ys, xs, rows_per_task, x_period)
    else:
        with parallel_launch():
            parallel_tasks(src, out, ys, xs, rows_per_task, x_period)

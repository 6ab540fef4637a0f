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
  elsewhere it gathers the taps of each output column. A large output that the caller gives
  is written in streaming stores (:data:`STREAM_BYTES`, :func:`streams`);
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

import platform

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload
from numba.np.numpy_support import as_dtype

from ._coords import NO_PERIOD, AxisTaps, InverseTaps, LegacyAxisTaps
from ._threads import get_num_threads, parallel_launch

#: Below this many output elements a call runs on the calling thread only.
SERIAL_THRESHOLD = 1 << 16
#: Target number of tasks per thread, so that uneven tasks still balance.
TASKS_PER_THREAD = 8
#: Bytes of one vector of :func:`_blend_vector` (an AVX2 register: 8 float32 or 4 float64 lanes;
#: LLVM splits it into two where vectors are narrower, and it stays correct everywhere).
VECTOR_BYTES = 32
#: From this many bytes on, an output the caller gives is written in streaming stores, which skip
#: reading each line for ownership and leave the cache alone: 0.84-0.90x the time of a fill with
#: ordinary stores on (2048, 192, 192) float32, where ordinary stores took 1.2-1.5x (the loads of
#: the blended rows wait behind stores queued for memory). An output that fits in the last-level
#: cache (32 MiB on a server core complex) is left there for its reader.
STREAM_BYTES = 32 << 20


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


def _vector_codegen(context, builder, dtype):
    """The LLVM vector type of one :data:`VECTOR_BYTES` vector of ``dtype``, a pointer to it at
    ``array[index]`` (flat index of a C-contiguous array) and a scalar broadcast to all lanes."""
    lanes = VECTOR_BYTES * 8 // dtype.bitwidth
    vector = ir.VectorType(context.get_data_type(dtype), lanes)

    def pointer(array_type, array_value, index):
        data = context.make_array(array_type)(context, builder, array_value).data
        return builder.bitcast(builder.gep(data, [index]), vector.as_pointer())

    def splat(scalar):
        undefined = ir.Constant(vector, ir.Undefined)
        first = builder.insert_element(undefined, scalar, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(first, undefined, ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))

    return pointer, splat


def _float_arrays_of_one_dtype(*arrays) -> bool:
    """Whether the numba types are C-contiguous float arrays of one dtype, as the vector
    intrinsics need: they read and write raw memory from an index on."""
    first = arrays[0]
    return (
        all(isinstance(a, types.Array) and a.dtype == first.dtype and a.layout == "C" for a in arrays)
        and isinstance(first.dtype, types.Float)
    )


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
    if not (_float_arrays_of_one_dtype(row, w_left, w_right) and row.ndim == w_left.ndim == w_right.ndim == 1):
        return None
    if not left == right == row.dtype:
        return None

    def codegen(context, builder, signature, args):
        row_value, start_value, left_value, right_value, w_left_value, w_right_value = args
        pointer, splat = _vector_codegen(context, builder, row.dtype)
        alignment = row.dtype.bitwidth // 8
        weights_left = builder.load(pointer(w_left, w_left_value, start_value), align=alignment)
        weights_right = builder.load(pointer(w_right, w_right_value, start_value), align=alignment)
        blended = builder.fadd(builder.fmul(splat(left_value), weights_left), builder.fmul(splat(right_value), weights_right))
        builder.store(blended, pointer(row, row_value, start_value), align=alignment)
        return context.get_dummy_value()

    return types.none(row, start, left, right, w_left, w_right), codegen


def _store_streaming(builder, value, pointer, alignment):
    """A non-temporal store: written to memory without first reading the line for ownership
    and without filling the cache."""
    store = builder.store(value, pointer, align=alignment)
    store.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))


@intrinsic
def _stream_vector(typingctx, out, index, rows, top, bottom, w_top, w_bottom):
    """``out.flat[index + k] = rows.flat[top + k] * w_top + rows.flat[bottom + k] * w_bottom`` for
    the :func:`_lanes` ``k`` of one vector, in a streaming store (``rows.flat[top + k]`` alone where
    ``top == bottom``: a clamped row, see :func:`_unclamped_count`).

    The same IEEE multiply and add per lane as the scalar loop. The caller keeps every index
    within its array and ``out``'s address at ``index`` a multiple of :data:`VECTOR_BYTES` (a
    streaming store of a misaligned vector faults), and ends with :func:`_store_fence`.
    """
    if not (_float_arrays_of_one_dtype(out, rows) and w_top == w_bottom == out.dtype):
        return None

    def codegen(context, builder, signature, args):
        out_value, index_value, rows_value, top_value, bottom_value, w_top_value, w_bottom_value = args
        pointer, splat = _vector_codegen(context, builder, out.dtype)
        alignment = out.dtype.bitwidth // 8
        upper = builder.load(pointer(rows, rows_value, top_value), align=alignment)
        with builder.if_else(builder.icmp_signed("==", top_value, bottom_value)) as (clamped, blended):
            with clamped:
                _store_streaming(builder, upper, pointer(out, out_value, index_value), VECTOR_BYTES)
            with blended:
                lower = builder.load(pointer(rows, rows_value, bottom_value), align=alignment)
                value = builder.fadd(builder.fmul(upper, splat(w_top_value)), builder.fmul(lower, splat(w_bottom_value)))
                _store_streaming(builder, value, pointer(out, out_value, index_value), VECTOR_BYTES)
        return context.get_dummy_value()

    return types.none(out, index, rows, top, bottom, w_top, w_bottom), codegen


@intrinsic
def _stream_scalar(typingctx, out, index, value):
    """``out.flat[index] = value`` in a streaming store, for the columns of a row outside its
    aligned vectors: with ordinary stores among the streaming ones, the headline output took
    1.9-2.9x the fill (even with the ordinary stores on lines of their own: the clamped edge
    rows), against 0.84-0.87x streamed throughout."""
    if not (_float_arrays_of_one_dtype(out) and value == out.dtype):
        return None

    def codegen(context, builder, signature, args):
        out_value, index_value, scalar = args
        data = context.make_array(out)(context, builder, out_value).data
        _store_streaming(builder, scalar, builder.gep(data, [index_value]), out.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.none(out, index, value), codegen


@intrinsic
def _stream_pixel_vector(typingctx, target, index, upper, lower, columns, weights, y_clamped):
    """``target.flat[index + k]`` for the :func:`_lanes` ``k`` of one vector: the channels-last
    blend of :func:`_blend` in a streaming store, from ``upper.flat`` and ``lower.flat`` at
    ``columns`` (left + k, right + k) with ``weights`` (left, right, top, bottom). A clamped axis
    (left == right, or ``y_clamped``) reads its first tap alone, as the scalar body does, and
    each lane is the same IEEE multiply and add: the same bits. Alignment and the fence: as
    :func:`_stream_vector`."""
    if not (_float_arrays_of_one_dtype(target, upper, lower) and columns == types.UniTuple(types.int64, 2)):
        return None
    if weights != types.UniTuple(target.dtype, 4) or y_clamped != types.boolean:
        return None

    def codegen(context, builder, signature, args):
        target_value, index_value, upper_value, lower_value, columns_value, weights_value, y_clamped_value = args
        pointer, splat = _vector_codegen(context, builder, target.dtype)
        alignment = target.dtype.bitwidth // 8
        left_index, right_index = (builder.extract_value(columns_value, n) for n in range(2))
        w_left, w_right, w_top, w_bottom = (splat(builder.extract_value(weights_value, n)) for n in range(4))
        x_clamped = builder.icmp_signed("==", left_index, right_index)
        y_clamped_bit = context.cast(builder, y_clamped_value, types.boolean, types.boolean)

        def across(row_type, row_value):
            left = builder.load(pointer(row_type, row_value, left_index), align=alignment)
            right = builder.load(pointer(row_type, row_value, right_index), align=alignment)
            return builder.select(x_clamped, left, builder.fadd(builder.fmul(left, w_left), builder.fmul(right, w_right)))

        top, bottom = across(upper, upper_value), across(lower, lower_value)
        value = builder.select(y_clamped_bit, top, builder.fadd(builder.fmul(top, w_top), builder.fmul(bottom, w_bottom)))
        _store_streaming(builder, value, pointer(target, target_value, index_value), VECTOR_BYTES)
        return context.get_dummy_value()

    return types.none(target, index, upper, lower, columns, weights, y_clamped), codegen


@intrinsic
def _store_fence(typingctx):
    """A store fence: streaming stores are not ordered with other stores, so a task that made
    them fences before the thread reports its work done. On x86 an SFENCE, the fence the
    architecture documents for them (LLVM lowers a ``fence seq_cst`` to a locked add there,
    which is not documented to order them); elsewhere a ``fence seq_cst``."""

    def codegen(context, builder, signature, args):
        if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86"):
            sfence = builder.module.declare_intrinsic("llvm.x86.sse.sfence", fnty=ir.FunctionType(ir.VoidType(), []))
            builder.call(sfence, [])
        else:
            builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.none(), codegen


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
def _plane_task(src, out, ys, xs, task, blocks_per_plane, rows_per_task, x_period, stream):
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
    # Indexed, not through row views: each view of ``rows`` or ``out`` costs two atomic updates
    # of its owner's reference count, and three per output row (two scratch rows and the output
    # row) made the headline case 1.4x the fill instead of 1.2x.
    for i in range(row_start, row_stop):
        top, bottom = ys.first[i] - first_row, ys.second[i] - first_row
        _blend_rows(out, plane, i, rows, top, bottom, ys.w_first[i], ys.w_second[i], stream)
    if stream:
        _store_fence()


@njit(inline="always")
def _blended(rows, top, bottom, j, w_top, w_bottom):
    """Column ``j`` of rows ``top`` and ``bottom`` blended; row ``top`` alone where they are one
    (a clamped row, see :func:`_unclamped_count`)."""
    return rows[top, j] if top == bottom else rows[top, j] * w_top + rows[bottom, j] * w_bottom


@njit(inline="always")
def _blend_rows_cached(out, plane, i, rows, top, bottom, w_top, w_bottom):
    if top == bottom:  # tested once per row, not per column, so that both loops vectorise
        for j in range(out.shape[2]):
            out[plane, i, j] = _to_output(rows[top, j], out)
    else:
        for j in range(out.shape[2]):
            out[plane, i, j] = _to_output(rows[top, j] * w_top + rows[bottom, j] * w_bottom, out)


@njit(inline="always")
def _aligned_span(out, index, count, lanes):
    """(head, body_stop) for ``count`` elements of C-contiguous ``out`` from flat ``index`` on: the
    first ``head`` end where the address is a multiple of :data:`VECTOR_BYTES`, whole vectors of
    ``lanes`` run to ``body_stop``, the rest is the tail (``out`` aligned to its element size)."""
    misaligned = (out.ctypes.data + index * out.itemsize) % VECTOR_BYTES
    head = min(count, (VECTOR_BYTES - misaligned) % VECTOR_BYTES // out.itemsize)
    return head, head + (count - head) // lanes * lanes


@njit(inline="always")
def _blend_rows_streamed(out, plane, i, rows, top, bottom, w_top, w_bottom):
    """:func:`_blend_rows_cached` in streaming stores: vectors from the row's first aligned
    address on (:func:`_stream_vector`), single columns before and after (:func:`_stream_scalar`)."""
    out_w, lanes = out.shape[2], _lanes(rows)
    index = (plane * out.shape[1] + i) * out_w  # of out[plane, i, 0]: out is C-contiguous
    head, body_stop = _aligned_span(out, index, out_w, lanes)
    for j in range(head):
        _stream_scalar(out, index + j, _blended(rows, top, bottom, j, w_top, w_bottom))
    for j in range(head, body_stop, lanes):
        _stream_vector(out, index + j, rows, top * out_w + j, bottom * out_w + j, w_top, w_bottom)
    for j in range(body_stop, out_w):
        _stream_scalar(out, index + j, _blended(rows, top, bottom, j, w_top, w_bottom))


def _blend_rows(out, plane, i, rows, top, bottom, w_top, w_bottom, stream):  # pragma: no cover - see the overload
    raise NotImplementedError


@overload(_blend_rows, inline="always")
def _blend_rows_impl(out, plane, i, rows, top, bottom, w_top, w_bottom, stream):
    """``out[plane, i] = rows[top] * w_top + rows[bottom] * w_bottom`` (row ``top`` alone where
    ``top == bottom``); with ``stream``, in streaming stores where the output can take them: a
    C-contiguous float array of the rows' dtype (an integer output is rounded and saturated per
    element). ``stream`` None: never (see :func:`run_tasks`)."""
    if isinstance(stream, types.NoneType) or not _float_arrays_of_one_dtype(out, rows):
        return lambda out, plane, i, rows, top, bottom, w_top, w_bottom, stream: _blend_rows_cached(
            out, plane, i, rows, top, bottom, w_top, w_bottom
        )

    def blend(out, plane, i, rows, top, bottom, w_top, w_bottom, stream):
        if stream:
            _blend_rows_streamed(out, plane, i, rows, top, bottom, w_top, w_bottom)
        else:
            _blend_rows_cached(out, plane, i, rows, top, bottom, w_top, w_bottom)

    return blend


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
def _pixel_task(src, out, ys, xs, task, blocks_per_image, rows_per_task, x_period, stream):
    image, row_start, row_stop = _task_rows(task, blocks_per_image, rows_per_task, out.shape[1])
    for i in range(row_start, row_stop):
        # Views per row, none per pixel: each view costs two atomic reference-count updates.
        upper, lower, target = src[image, ys.first[i]], src[image, ys.second[i]], out[image, i]
        # ``stream is not None`` on a None argument is pruned before typing, so a call that does
        # not stream compiles no streaming code (1.5-2 s of cold compile for this body when the
        # choice was made per pixel by the types alone).
        if stream is not None and stream:
            _pixel_row_streamed(upper, lower, target, ys, xs, i)
        else:
            _pixel_row(upper, lower, target, ys, xs, i)
    if stream is not None and stream:
        _store_fence()


def _pixel_row_streamed(upper, lower, target, ys, xs, i):  # pragma: no cover - see the overload
    raise NotImplementedError


@overload(_pixel_row_streamed, inline="always")
def _pixel_row_streamed_impl(upper, lower, target, ys, xs, i):
    """Output row ``i`` into ``target`` (W, C) from input rows ``upper`` and ``lower``, each pixel's
    channels in streaming stores: vectors from its first aligned address on
    (:func:`_stream_pixel_vector`), single channels before and after. Where the output cannot
    take them (see :func:`_blend_rows`; also input rows of its dtype and the correct taps, as
    the legacy ones store uint8), in ordinary stores."""
    streamable = _float_arrays_of_one_dtype(target, upper, lower)
    streamable = streamable and getattr(ys, "instance_class", None) is AxisTaps

    def blend(upper, lower, target, ys, xs, i):
        channels, lanes = target.shape[1], _lanes(target)
        weights_y = (ys.w_first[i], ys.w_second[i])
        y_clamped = ys.first[i] == ys.second[i]
        for j in range(target.shape[0]):
            left, right = xs.first[j], xs.second[j]
            weights = (xs.w_first[j], xs.w_second[j], weights_y[0], weights_y[1])
            head, body_stop = _aligned_span(target, j * channels, channels, lanes)
            for c in range(head):
                _stream_scalar(target, j * channels + c, _pixel_blend_call(upper, lower, left, right, weights, y_clamped, c, ys, target))
            for c in range(head, body_stop, lanes):
                _stream_pixel_vector(target, j * channels + c, upper, lower, (left * channels + c, right * channels + c), weights, y_clamped)
            for c in range(body_stop, channels):
                _stream_scalar(target, j * channels + c, _pixel_blend_call(upper, lower, left, right, weights, y_clamped, c, ys, target))

    return blend if streamable else lambda upper, lower, target, ys, xs, i: _pixel_row(upper, lower, target, ys, xs, i)


@njit(inline="always")
def _pixel_row(upper, lower, target, ys, xs, i):
    """Output row ``i`` into ``target`` (W, C) from input rows ``upper`` and ``lower``."""
    weights_y = (ys.w_first[i], ys.w_second[i])
    y_clamped = ys.first[i] == ys.second[i]
    for j in range(target.shape[0]):
        left, right = xs.first[j], xs.second[j]
        weights = (xs.w_first[j], xs.w_second[j], weights_y[0], weights_y[1])
        for c in range(target.shape[1]):
            target[j, c] = _pixel_blend(upper, lower, left, right, weights, y_clamped, c, ys, target)


@njit
def _pixel_blend_call(upper, lower, left, right, weights, y_clamped, c, ys, target):
    """:func:`_pixel_blend` as a function call (LLVM inlines it): inlined by numba twice into one
    function, it left IR that numba warned about (NumbaIRAssumptionWarning)."""
    return _pixel_blend(upper, lower, left, right, weights, y_clamped, c, ys, target)


@njit(inline="always")
def _pixel_blend(upper, lower, left, right, weights, y_clamped, c, ys, target):
    """Channel ``c`` of the output pixel with columns ``left`` and ``right`` of input rows ``upper``
    and ``lower``, ``weights`` (left, right, top, bottom), as stored in ``target``."""
    w_left, w_right, w_top, w_bottom = weights
    return _blend(
        upper[left, c], upper[right, c], lower[left, c], lower[right, c],
        w_left, w_right, w_top, w_bottom, left == right, y_clamped, ys, target,
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
def _adjoint_task(grad_out, grad_in, ys, xs, task, blocks_per_plane, rows_per_task, x_period, stream):
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


def _run_task(src, out, ys, xs, task, blocks, rows_per_task, x_period, stream):  # pragma: no cover - see the overload
    raise NotImplementedError


@overload(_run_task, inline="always")
def _run_task_impl(src, out, ys, xs, task, blocks, rows_per_task, x_period, stream):
    """Pick the task body from the argument types: the adjoint for inverse taps, else (P, H, W)
    planes or (N, H, W, C) pixels by the rank of ``src``. Only the planes body reads ``x_period``,
    the planes and pixels bodies ``stream``."""
    if getattr(ys, "instance_class", None) is InverseTaps:
        body = _adjoint_task
    elif src.ndim == 3:
        body = _plane_task
    else:
        body = _pixel_task
    return lambda src, out, ys, xs, task, blocks, rows_per_task, x_period, stream: body(
        src, out, ys, xs, task, blocks, rows_per_task, x_period, stream
    )


@njit(inline="always")
def _task_count(src, out, rows_per_task):
    """(tasks, row blocks per leading item) for tasks of ``rows_per_task`` rows of ``out``."""
    blocks = -(-out.shape[1] // rows_per_task)
    return src.shape[0] * blocks, blocks


# Two drivers, not one with a serial branch: LLVM optimises the task body again inside every
# driver that calls it, and a first call now compiles only the driver it runs.
@njit(cache=True)
def serial_tasks(src, out, ys, xs, rows_per_task, x_period=NO_PERIOD, stream=None):
    """Fill ``out`` from ``src`` in tasks of one leading item and ``rows_per_task`` rows of ``out``, in order;
    ``x_period``: see :func:`fastinterp._coords.tap_period`; ``stream`` True: write the output in
    streaming stores where it can take them, None: never (see :func:`run_tasks`)."""
    n_tasks, blocks = _task_count(src, out, rows_per_task)
    for task in range(n_tasks):
        _run_task(src, out, ys, xs, task, blocks, rows_per_task, x_period, stream)


@njit(cache=True, parallel=True)
def parallel_tasks(src, out, ys, xs, rows_per_task, x_period=NO_PERIOD, stream=None):
    """:func:`serial_tasks` on numba's thread pool."""
    n_tasks, blocks = _task_count(src, out, rows_per_task)
    for task in prange(n_tasks):
        # prange's index is unsigned: cast it so that both drivers call one compiled task body
        # instead of compiling a second one for uint64 (1.2 s when the other driver first runs).
        _run_task(src, out, ys, xs, np.int64(task), blocks, rows_per_task, x_period, stream)


def read_only(src: np.ndarray) -> np.ndarray:
    """``src`` as a read-only view, as every driver passes its source: numba compiles a kernel
    once for writable and once for read-only arrays (``np.asarray`` of a PIL image is
    read-only), and the kernels only read their source, so one kind compiles each kernel once."""
    view = src.view()
    view.flags.writeable = False
    return view


def run_tasks(
    src, out, ys, xs, rows_per_task: int, serial: bool, x_period: tuple[int, int, int] = NO_PERIOD,
    stream: bool = False,
) -> None:
    """Run the tasks serially or in parallel; parallel launches go through the thread-safety guard.
    ``x_period``, the period of ``xs`` (:func:`fastinterp._coords.tap_period`), lets the planes body
    skip the gathers; ``stream`` (see :func:`streams`) has it write in streaming stores. Neither
    changes a result."""
    src = read_only(src)
    # Not streaming is passed as None, not False: the kernels are then typed without their
    # streaming code, which cost every cold first call 2.5-3.3 s more to compile; a call that
    # streams compiles its own. An output off its element alignment never streams (a streaming
    # vector store there faults); numba types every array as aligned, so it is checked here.
    stream_or_none = True if stream and out.flags.aligned else None
    if serial:
        serial_tasks(src, out, ys, xs, rows_per_task, x_period, stream_or_none)
    else:
        with parallel_launch():
            parallel_tasks(src, out, ys, xs, rows_per_task, x_period, stream_or_none)


def streams(out: np.ndarray, fresh: bool, compute_dtype: np.dtype, stream_bytes: int = STREAM_BYTES) -> bool:
    """Whether to write ``out`` in streaming stores: an output of ``stream_bytes`` or more that
    was not just allocated, C-contiguous, aligned, of the ``compute_dtype`` the kernels blend in
    (the others take ordinary stores anyway: asking would only compile the kernels again). The
    kernel zeroes a fresh page into the cache on its first write, where ordinary stores then hit
    it: streaming there took 1.20-1.26x ``np.empty`` + fill on (2048, 192, 192) float32,
    ordinary stores 1.13-1.18x."""
    if fresh or out.nbytes < stream_bytes or out.dtype != compute_dtype:
        return False
    return bool(out.flags.c_contiguous and out.flags.aligned)

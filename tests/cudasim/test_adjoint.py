"""The adjoint (input gradient) kernels against a dense transposed interpolation matrix."""

from __future__ import annotations

import numpy as np
import pytest
from numba import cuda

import fastinterp
from fastinterp import _cuda, _cuda_launch
from fastinterp._coords import inverse_axis_taps

from fastinterp.reference import bilinear_adjoint

from .helpers import ALIGNS

pytestmark = pytest.mark.cudasim


@pytest.mark.parametrize("align", ALIGNS)
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-13), ("float32", 1e-5), ("float16", 2e-3)])
def test_adjoint_matches_dense_transpose(align, dtype, rtol):
    rng = np.random.default_rng(11)
    grad = (rng.random((2, 3, 7, 9)) * 2 - 1).astype(dtype)
    grad_in = _cuda.resize_adjoint_cuda(cuda.to_device(grad), 3, 4, align)
    assert grad_in.shape == (2, 3, 3, 4) and grad_in.dtype == np.dtype(dtype)
    expected = bilinear_adjoint(grad, 3, 4, align)
    np.testing.assert_allclose(grad_in.copy_to_host(), expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def test_adjoint_is_the_transpose_of_the_forward():
    rng = np.random.default_rng(12)
    x, grad = rng.random((3, 4, 5)), rng.random((3, 6, 8))
    forward = fastinterp.resize(x, size=(6, 8), channels_first=True, device="cuda")
    backward = _cuda.resize_adjoint_cuda(cuda.to_device(grad), 4, 5, "center").copy_to_host()
    assert np.vdot(forward, grad) == pytest.approx(np.vdot(x, backward), rel=1e-12)


def test_adjoint_is_deterministic_and_shapes_its_output():
    grad = cuda.to_device(np.random.default_rng(13).random((5, 7, 9)).astype(np.float32))
    first = _cuda.resize_adjoint_cuda(grad, 3, 4, "corners").copy_to_host()
    np.testing.assert_array_equal(first, _cuda.resize_adjoint_cuda(grad, 3, 4, "corners").copy_to_host())
    assert first.shape == (5, 3, 4)


@pytest.mark.parametrize("align", ALIGNS)
@pytest.mark.parametrize("columns_per_thread, strip_rows, loads", [(1, 8, 3), (2, 1, 1), (3, 2, 3), (4, 5, 2)])
@pytest.mark.parametrize("in_size, out_size", [((5, 7), (13, 17)), ((9, 11), (4, 5)), ((1, 1), (3, 40))])
def test_adjoint_strips_and_column_groups_cover_everything(
    columns_per_thread, strip_rows, loads, in_size, out_size, align
):
    """Threads walking several output columns (some past the row's end) and strips of input
    rows (output rows read from both sides of a strip boundary, input rows nobody reads, a
    clamped bottom edge), up and down, in every align mode."""
    (in_h, in_w), (out_h, out_w) = in_size, out_size
    grad = np.random.default_rng(16).standard_normal((3, out_h, out_w))
    launch = _cuda_launch.adjoint_launch(3, in_h, in_w, out_h, out_w, align, np.dtype(np.float64), 1,
                                  threads_per_block=32, waves=1, loads_in_flight=loads,
                                  columns_per_thread=columns_per_thread, strip_rows=strip_rows)
    out = cuda.to_device(np.full(3 * in_h * in_w, np.nan))
    launch(cuda.to_device(grad.reshape(-1)), out, 0)
    expected = bilinear_adjoint(grad, in_h, in_w, align)
    np.testing.assert_allclose(out.copy_to_host().reshape(expected.shape), expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dtype, rtol", [("float32", 1e-5), ("float16", 2e-3)])
def test_adjoint_grids_smaller_than_the_work_loop_over_it(dtype, rtol):
    """Two blocks of 8 threads for every launch: each thread takes many strips and pixels in
    turn (the grid-stride loops), and must reset its running sums for each."""
    grad = np.random.default_rng(18).standard_normal((4, 19, 23)).astype(dtype)
    launch = _cuda_launch.adjoint_launch(4, 6, 5, 19, 23, "left", np.dtype(np.float32), 1,
                                  columns_per_thread=2, strip_rows=2)
    for part in (launch.vertical, launch.horizontal):
        part.shape = _cuda_launch.LaunchShape((8, 1, 1), (2, 1, 1), 1)
    out = cuda.to_device(np.full(4 * 6 * 5, np.nan, dtype))
    launch(cuda.to_device(grad.reshape(-1)), out, 0)
    expected = bilinear_adjoint(grad, 6, 5, "left")
    np.testing.assert_allclose(out.copy_to_host().reshape(expected.shape), expected, rtol=rtol,
                               atol=rtol * np.abs(expected).max())


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-13), ("float16", 2e-3)])
@pytest.mark.parametrize("in_size, out_size, vertical_first", [
    ((40, 3), (4, 30), False),  # height shrinks, width grows: horizontal first holds 4 x 3 sums, not 40 x 30
    ((4, 30), (40, 3), True),
    ((6, 6), (12, 12), True),  # a tie: vertical first
])
def test_adjoint_runs_the_pass_with_fewer_partial_sums_first(in_size, out_size, vertical_first, dtype, rtol):
    (in_h, in_w), (out_h, out_w) = in_size, out_size
    launch = _cuda_launch.adjoint_launch(2, in_h, in_w, out_h, out_w, "corners", np.dtype(np.float64), 1)
    assert launch.vertical_first == vertical_first
    assert launch.sums_size == 2 * min(in_h * out_w, out_h * in_w)
    grad = np.random.default_rng(19).standard_normal((2, out_h, out_w)).astype(dtype)
    got = _cuda.resize_adjoint_cuda(cuda.to_device(grad), in_h, in_w, "corners").copy_to_host()
    expected = bilinear_adjoint(grad, in_h, in_w, "corners")
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def test_adjoint_grids_cover_the_items_and_stay_in_limits():
    launch = _cuda_launch.adjoint_launch(2048, 24, 24, 192, 192, "center", np.dtype(np.float32), 132)
    assert launch.sums_size == 2048 * 24 * 192
    for part in (launch.vertical, launch.horizontal):
        (threads, _, _), (blocks, _, _) = part.shape.block, part.shape.grid
        assert threads == _cuda_launch.ADJOINT_THREADS and 1 <= blocks <= _cuda_launch.WAVES * 132 * 2048 // threads
    tiny = _cuda_launch.adjoint_launch(1, 1, 1, 1, 1, "center", np.dtype(np.float32), 132)
    assert tiny.vertical.shape.grid == tiny.horizontal.shape.grid == (1, 1, 1)


@pytest.mark.parametrize(
    "args, error",
    [
        ((np.zeros((7, 9), np.int32), 3, 4, "center"), TypeError),
        ((np.zeros((7, 9), np.float32), 0, 4, "center"), ValueError),
        ((np.zeros((7, 9), np.float32), 3, 4, "middle"), ValueError),
        ((np.zeros(9, np.float32), 3, 4, "center"), ValueError),
    ],
)
def test_adjoint_rejects_bad_requests(args, error):
    grad, *rest = args
    with pytest.raises(error):
        _cuda.resize_adjoint_cuda(cuda.to_device(grad), *rest)


def test_one_launch_serves_every_gradient_dtype():
    """float16 and float32 gradients share launch tables; each must get its own kernel types."""
    grad = np.random.default_rng(15).random((2, 7, 9))
    for dtype in ("float32", "float16", "float32"):
        got = _cuda.resize_adjoint_cuda(cuda.to_device(grad.astype(dtype)), 3, 4, "center").copy_to_host()
        np.testing.assert_allclose(got, bilinear_adjoint(grad.astype(dtype), 3, 4, "center"), rtol=2e-3)


def test_readers_by_rank_keep_each_inputs_order_and_pad_with_zeros():
    columns = inverse_axis_taps(9, 4, "center", np.dtype(np.float64))  # downscaled: some unread
    readers, weights = _cuda_launch.by_rank(columns)
    counts = np.diff(columns.start)
    assert readers.shape == weights.shape == (counts.max(), 9) and 0 in counts
    for j in range(9):
        span = slice(columns.start[j], columns.start[j + 1])
        np.testing.assert_array_equal(readers[:counts[j], j], columns.outputs[span])
        np.testing.assert_array_equal(weights[:counts[j], j], columns.weights[span])
        assert not readers[counts[j]:, j].any() and not weights[counts[j]:, j].any()

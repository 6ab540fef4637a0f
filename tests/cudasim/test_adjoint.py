"""The adjoint (input gradient) kernels against a dense transposed interpolation matrix."""

from __future__ import annotations

import numpy as np
import pytest
from numba import cuda

import fastinterp
from fastinterp import _cuda

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


def test_adjoint_grid_stride_loops_cover_everything():
    rng = np.random.default_rng(14)
    grad = rng.random((3, 7, 9))
    tmp = cuda.device_array(3 * 4 * 9)
    out = cuda.to_device(np.full(3 * 4 * 5, np.nan))
    tiny = _cuda.LaunchShape((3, 1, 1), (3 * 4, 1, 2), 3)  # 3 channel blocks x 4 columns, strided outer items
    _cuda.gather_launch(3, 1, 7, 4, 9, "left", np.dtype(np.float64), tiny)(cuda.to_device(grad.reshape(-1)), tmp, 0)
    cols = _cuda.LaunchShape((1, 2, 2), (3, 1, 1), 1)  # 3 column blocks, strided rows and outer items
    _cuda.gather_launch(3, 4, 9, 5, 1, "left", np.dtype(np.float64), cols)(tmp, out, 0)
    np.testing.assert_allclose(out.copy_to_host().reshape(3, 4, 5), bilinear_adjoint(grad, 4, 5, "left"), rtol=1e-13)


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

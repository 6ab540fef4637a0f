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


@pytest.mark.parametrize("in_size, out_size", [((4, 5), (9, 13)), ((9, 11), (4, 5)), ((1, 1), (3, 40))])
@pytest.mark.parametrize("sums_bytes, partial_bytes", [(8 * 64, 8 * 48), (8 * 3, 8 * 2), (8, 8)])
def test_adjoint_tiles_bands_and_chunks_cover_everything(in_size, out_size, sums_bytes, partial_bytes):
    """Shared buffers far too small for a plane: input rows in bands, columns in tiles, the
    output columns a tile reads in chunks, several units per block, unread input pixels."""
    (in_h, in_w), (out_h, out_w) = in_size, out_size
    grad = np.random.default_rng(14).random((3, out_h, out_w))
    launch = _cuda.adjoint_launch(3, in_h, in_w, out_h, out_w, "center", np.dtype(np.float64), 1,
                                  threads_per_block=64, waves=1, sums_bytes=sums_bytes, partial_bytes=partial_bytes,
                                  loads_in_flight=3)
    out = cuda.to_device(np.full(3 * in_h * in_w, np.nan))
    launch(cuda.to_device(grad.reshape(-1)), out, 0)
    expected = bilinear_adjoint(grad, in_h, in_w, "center")
    np.testing.assert_allclose(out.copy_to_host().reshape(expected.shape), expected, rtol=1e-13, atol=1e-13)


def test_adjoint_tiles_fit_the_shared_buffers():
    for in_size, out_size in [((24, 24), (192, 192)), ((4000, 6000), (32000, 48000)), ((1, 1), (1, 100000))]:
        for compute in (np.dtype(np.float32), np.dtype(np.float64)):
            launch = _cuda.adjoint_launch(2, *in_size, *out_size, "center", compute, 132)
            planes, _, _, in_h, in_w, band_rows, tile_cols, chunk_cols = launch.table.copy_to_host()[:8]
            assert band_rows * chunk_cols * compute.itemsize <= _cuda.ADJOINT_SUMS_BYTES
            assert band_rows * tile_cols * compute.itemsize <= _cuda.ADJOINT_PARTIAL_BYTES
            assert 1 <= band_rows <= in_h and 1 <= tile_cols <= in_w
    whole_plane = _cuda.adjoint_launch(2048, 24, 24, 192, 192, "center", np.dtype(np.float32), 132)
    assert tuple(whole_plane.table.copy_to_host()[5:8]) == (24, 24, 192)  # one unit per plane


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

"""Device arrays in and out, the backend switch, and the errors of the CUDA front."""

from __future__ import annotations

import numpy as np
import pytest
from numba import cuda

import fastinterp

pytestmark = pytest.mark.cudasim


def test_device_array_in_device_array_out():
    x = np.random.default_rng(20).random((2, 3, 4, 2)).astype(np.float32)
    result = fastinterp.resize(cuda.to_device(x), 2.0, 1.7)
    assert type(result).__name__ == type(cuda.to_device(x)).__name__ and result.shape == (2, 5, 8, 2)
    np.testing.assert_array_equal(result.copy_to_host(), fastinterp.resize(x, 2.0, 1.7))


def test_out_is_written_and_returned():
    x = np.random.default_rng(21).random((3, 4, 5)).astype(np.float32)
    out = cuda.to_device(np.full((3, 7, 9), np.nan, np.float32))
    assert fastinterp.resize(cuda.to_device(x), size=(7, 9), channels_first=True, out=out) is out
    np.testing.assert_array_equal(out.copy_to_host(), fastinterp.resize(x, size=(7, 9), channels_first=True))
    host_out = np.full((7, 9, 5), np.nan, np.float32)
    assert fastinterp.resize(x, size=(7, 9), out=host_out, device="cuda") is host_out
    np.testing.assert_array_equal(host_out, fastinterp.resize(x, size=(7, 9)))


def test_strided_host_out_is_filled():
    x = np.random.default_rng(22).random((4, 5)).astype(np.float32)
    out = np.zeros((9, 14), np.float32)[:, ::2]
    fastinterp.resize(x, size=(9, 7), out=out, device="cuda:0")
    np.testing.assert_array_equal(out, fastinterp.resize(x, size=(9, 7)))


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda d, h: fastinterp.resize(d, 2.0, backend="cpu"), ValueError, "never moves data"),
        (lambda d, h: fastinterp.resize(h, 2.0, backend="cuda"), ValueError, "device='cuda'"),
        (lambda d, h: fastinterp.resize(h, 2.0, backend="cpu", device="cuda"), ValueError, "backend='cpu'"),
        (lambda d, h: fastinterp.resize(d, 2.0, device="cuda"), ValueError, "already on the GPU"),
        (lambda d, h: fastinterp.resize(h, 2.0, backend="gpu"), ValueError, "backend must be"),
        (lambda d, h: fastinterp.resize(h, 2.0, device="gpu"), ValueError, "device must be"),
        (lambda d, h: fastinterp.resize(d, 2.0, out=np.zeros((6, 8), np.float32)), ValueError, "on the host"),
        (lambda d, h: fastinterp.resize(d, 2.0, out=cuda.device_array((6, 9), np.float32)), ValueError, "shape"),
        (lambda d, h: fastinterp.resize(d, 2.0, out=cuda.device_array((6, 8), np.float64)), ValueError, "dtype"),
        (lambda d, h: fastinterp.resize(d, 2.0, out=d), ValueError, "shape"),
        (lambda d, h: fastinterp.resize(cuda.to_device(h.astype(np.int32)), 2.0), TypeError, "int32"),
        (lambda d, h: fastinterp.resize(d, 2.0, align="middle"), ValueError, "align"),
        (lambda d, h: fastinterp.resize(d, 2.0, align="corners", legacy=True), ValueError, "legacy align"),
        (lambda d, h: fastinterp.resize(cuda.to_device(np.zeros((2, 3, 4, 5, 6))), 2.0), ValueError, "dimensions"),
    ],
)
def test_clear_errors(call, error, message):
    host = np.random.default_rng(23).random((3, 4)).astype(np.float32)
    with pytest.raises(error, match=message):
        call(cuda.to_device(host), host)


def test_out_overlapping_the_input_is_refused():
    both = cuda.to_device(np.zeros((2, 4, 4), np.float32))
    with pytest.raises(ValueError, match="overlaps"):
        fastinterp.resize(both[0], size=(4, 4), out=both[0])


def test_non_contiguous_device_array_is_refused():
    strided = cuda.to_device(np.zeros((4, 8), np.float32))[:, ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        fastinterp.resize(strided, 2.0)

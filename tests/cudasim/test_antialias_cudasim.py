"""The antialias CUDA twin under the simulator: the CPU kernels' bits, every dtype, both
layouts and both pass orders (tiny shapes: the simulator runs each thread in Python)."""

from __future__ import annotations

import numpy as np
import pytest

from fastinterp import _antialias, _cuda_antialias, reference
from fastinterp.reference import to_integer_dtype

from .helpers import DTYPES, random_array

pytestmark = pytest.mark.cudasim


def cpu_resize(src: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """The CPU kernels as the front runs them: float16 through float32."""
    work = np.float32 if src.dtype == np.float16 else src.dtype
    compute = np.dtype(np.float64 if src.dtype == np.float64 else np.float32)
    source = np.ascontiguousarray(src, dtype=work)
    out = np.empty((src.shape[0], out_h, out_w, *src.shape[3:]), work)
    _antialias.run_antialias(source, out, src.shape[1], src.shape[2], out_h, out_w, "center", compute, out_h, True)
    return out.astype(src.dtype)


# (in_h, in_w) -> (out_h, out_w): rows first (both down), columns first (height up, width
# down), mixed factors, a kept axis.
SIZES = [((9, 8), (4, 3)), ((3, 10), (7, 3)), ((6, 7), (6, 2))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels", [None, 3], ids=["planes", "pixels"])
@pytest.mark.parametrize("sizes", SIZES, ids=["down", "up-down", "kept-down"])
def test_cuda_twin_matches_cpu(dtype, channels, sizes):
    (in_h, in_w), (out_h, out_w) = sizes
    rng = np.random.default_rng(abs(hash((dtype, channels, sizes))) % 2**32)
    shape = (2, in_h, in_w) if channels is None else (1, in_h, in_w, channels)
    src = random_array(rng, shape, dtype)
    gpu = _cuda_antialias.resize_host(src, out_h, out_w)
    cpu = cpu_resize(src, out_h, out_w)
    assert gpu.dtype == src.dtype and gpu.shape == cpu.shape
    # Same tables, same operations in the same order, no contraction: the CPU's bits.
    np.testing.assert_array_equal(gpu, cpu)


def test_pass_orders_are_the_cpus():
    dtype = np.dtype(np.float32)
    for (in_h, in_w), (out_h, out_w) in SIZES[:2]:
        ys, xs = _antialias.antialias_taps(in_h, out_h, dtype), _antialias.antialias_taps(in_w, out_w, dtype)
        assert _antialias.vertical_first(in_h, in_w, ys, xs) == (out_h < in_h)


def test_float64_matches_reference():
    src = random_array(np.random.default_rng(5), (1, 11, 7), "float64")
    expected = reference.antialiased_resize(src[0], 4, 5)
    np.testing.assert_allclose(_cuda_antialias.resize_host(src, 4, 5)[0], expected, rtol=0, atol=1e-12)


def test_integers_round_the_float32_result():
    src = random_array(np.random.default_rng(6), (1, 8, 8), "uint8")
    as_float = _cuda_antialias.resize_host(src.astype(np.float32), 3, 3)
    np.testing.assert_array_equal(_cuda_antialias.resize_host(src, 3, 3), to_integer_dtype(as_float, np.dtype(np.uint8)))


def test_align_other_than_center_is_refused():
    with pytest.raises(ValueError, match="antialias=True is defined only for align"):
        _cuda_antialias.resize_host(np.zeros((1, 4, 4), np.float32), 2, 2, align="corners")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sizes", SIZES, ids=["down", "up-down", "kept-down"])
def test_adjoint_matches_cpu(dtype, sizes):
    """The gradient: the CPU's adjoint gather, bit for bit."""
    from numba import cuda

    (in_h, in_w), (out_h, out_w) = sizes
    grad_out = random_array(np.random.default_rng(9), (2, out_h, out_w), dtype)
    cpu = np.empty((2, in_h, in_w), dtype)
    _antialias.run_antialias_adjoint(grad_out, cpu, in_h, in_w, np.dtype(dtype), in_h, True)
    device_grad_in = cuda.device_array((2, in_h, in_w), dtype)
    _cuda_antialias.run_antialias_adjoint(cuda.to_device(grad_out), device_grad_in, np.dtype(dtype))
    np.testing.assert_array_equal(device_grad_in.copy_to_host(), cpu)

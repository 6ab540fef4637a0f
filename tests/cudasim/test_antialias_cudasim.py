"""Antialiasing on the CUDA backend under the simulator, through the public front
(``fastinterp.resize(..., antialias=True)`` with ``device="cuda"`` or device arrays, and the
adjoint of the torch operator): the CPU's bits, every dtype, both layouts and both pass
orders (tiny shapes: the simulator runs each thread in Python)."""

from __future__ import annotations

import numpy as np
import pytest
from numba import cuda

import fastinterp
from fastinterp import _antialias, _cuda, _cuda_launch, reference
from fastinterp.reference import to_integer_dtype

from .helpers import DTYPES, random_array

pytestmark = pytest.mark.cudasim

# (in_h, in_w) -> (out_h, out_w): rows first (both down), columns first (height up, width
# down), mixed factors, a kept axis.
SIZES = [((9, 8), (4, 3)), ((3, 10), (7, 3)), ((6, 7), (6, 2))]


def front(src: np.ndarray, out_size: tuple[int, int], **where) -> np.ndarray:
    """Antialiased resize of kernel-layout ``src``: (P, H, W) planes or (N, H, W, C) pixels."""
    return fastinterp.resize(src, size=out_size, antialias=True, channels_first=src.ndim == 3, **where)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels", [None, 3], ids=["planes", "pixels"])
@pytest.mark.parametrize("sizes", SIZES, ids=["down", "up-down", "kept-down"])
def test_gpu_matches_cpu_through_the_front(dtype, channels, sizes):
    (in_h, in_w), out_size = sizes
    rng = np.random.default_rng(abs(hash((dtype, channels, sizes))) % 2**32)
    shape = (2, in_h, in_w) if channels is None else (1, in_h, in_w, channels)
    src = random_array(rng, shape, dtype)
    gpu = front(src, out_size, device="cuda")
    cpu = front(src, out_size)
    assert gpu.dtype == src.dtype and gpu.shape == cpu.shape
    # Same tables, same operations in the same order, no contraction: the CPU's bits.
    np.testing.assert_array_equal(gpu, cpu)
    device_result = front(cuda.to_device(src), out_size)
    np.testing.assert_array_equal(device_result.copy_to_host(), cpu)


def test_device_array_out_and_upscale():
    src = random_array(np.random.default_rng(3), (2, 6, 9), "float32")
    out = cuda.device_array((2, 4, 4), np.float32)
    assert front(cuda.to_device(src), (4, 4), out=out) is out
    np.testing.assert_array_equal(out.copy_to_host(), front(src, (4, 4)))
    # No axis downscaled: the plain kernels, bit for bit.
    plain = fastinterp.resize(src, size=(8, 11), channels_first=True, device="cuda")
    np.testing.assert_array_equal(front(src, (8, 11), device="cuda"), plain)


def test_pass_orders_are_the_cpus():
    dtype = np.dtype(np.float32)
    for (in_h, in_w), (out_h, out_w) in SIZES[:2]:
        ys, xs = _antialias.antialias_taps(in_h, out_h, dtype), _antialias.antialias_taps(in_w, out_w, dtype)
        assert _antialias.vertical_first(in_h, in_w, ys, xs) == (out_h < in_h)


def test_float64_matches_reference():
    src = random_array(np.random.default_rng(5), (1, 11, 7), "float64")
    expected = reference.antialiased_resize(src[0], 4, 5)
    np.testing.assert_allclose(front(src, (4, 5), device="cuda")[0], expected, rtol=0, atol=1e-12)


def test_integers_round_the_float32_result():
    src = random_array(np.random.default_rng(6), (1, 8, 8), "uint8")
    as_float = front(src.astype(np.float32), (3, 3), device="cuda")
    np.testing.assert_array_equal(front(src, (3, 3), device="cuda"), to_integer_dtype(as_float, np.dtype(np.uint8)))


@pytest.mark.parametrize("bad, error, message", [
    ({"align": "corners"}, ValueError, r"antialias=True is defined only for align in \('center',\)"),
    ({"legacy": True}, ValueError, "antialias=True cannot be combined with legacy=True"),
    ({"antialias": "yes"}, TypeError, "antialias must be True or False"),
])  # fmt: skip
def test_undefined_combinations_are_refused(bad, error, message):
    src = np.zeros((1, 4, 4), np.float32)
    arguments = {"size": (2, 2), "channels_first": True, "antialias": True, **bad}
    with pytest.raises(error, match=message):
        fastinterp.resize(src, device="cuda", **arguments)
    with pytest.raises(error, match=message):
        fastinterp.resize(cuda.to_device(src), **arguments)


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("sizes", SIZES, ids=["down", "up-down", "kept-down"])
def test_adjoint_matches_cpu(dtype, sizes):
    """The gradient the torch operator's backward takes on CUDA: the CPU's adjoint gather, bit
    for bit (float16 computed in float32 and rounded once)."""
    (in_h, in_w), (out_h, out_w) = sizes
    grad_out = random_array(np.random.default_rng(9), (2, 1, out_h, out_w), dtype)
    compute = np.dtype(np.float64 if dtype == "float64" else np.float32)
    cpu = np.empty((2, in_h, in_w), compute)
    _antialias.run_antialias_adjoint(grad_out.reshape(2, out_h, out_w).astype(compute), cpu, in_h, in_w, compute,
                                     in_h, True)  # fmt: skip
    gpu = _cuda.resize_adjoint_cuda(cuda.to_device(grad_out), in_h, in_w, "center", True)
    assert gpu.shape == (2, 1, in_h, in_w) and gpu.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(gpu.copy_to_host().reshape(cpu.shape), cpu.astype(dtype))


def test_adjoint_without_a_downscaled_axis_is_the_plain_one():
    grad_out = random_array(np.random.default_rng(10), (2, 7, 9), "float32")
    plain = _cuda.resize_adjoint_cuda(cuda.to_device(grad_out), 4, 5, "center")
    antialiased = _cuda.resize_adjoint_cuda(cuda.to_device(grad_out), 4, 5, "center", True)
    np.testing.assert_array_equal(antialiased.copy_to_host(), plain.copy_to_host())


def test_launches_are_configured_once_per_request(monkeypatch):
    """A torch request keeps its antialias launch: a second call builds nothing new."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(_cuda_launch, "tensor_numba", lambda t: torch.as_strided(t, (t.numel(),), (1,)).numpy())
    monkeypatch.setattr(_cuda, "_current_stream_handle", lambda device_index: 0)
    monkeypatch.setattr(_cuda_launch, "numba_stream", lambda handle: 0)
    monkeypatch.setattr(_cuda, "_torch_requests", {})
    x = torch.rand(2, 3, 9, 8).contiguous(memory_format=torch.channels_last)
    got = _cuda.resize_torch(x, None, None, (4, 3), "center", False, None, True)
    assert got.is_contiguous(memory_format=torch.channels_last)
    expected = fastinterp.resize(x, size=(4, 3), antialias=True)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    launch = next(iter(_cuda._torch_requests.values())).launch
    _cuda.resize_torch(x, None, None, (4, 3), "center", False, None, True)
    assert len(_cuda._torch_requests) == 1 and next(iter(_cuda._torch_requests.values())).launch is launch

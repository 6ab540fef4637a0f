"""The torch front of the CUDA backend, with CPU tensors standing in for CUDA tensors.

The simulator has no CUDA tensors, so these tests hand the kernels numpy views of CPU
tensors (zero-copy, as ``as_cuda_array`` does on a GPU) and run on stream 0. What they
check is the front: layouts (channels_last kept), out=, bfloat16 via float32, errors.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastinterp
from fastinterp import _cuda, _cuda_launch

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.cudasim


@pytest.fixture(autouse=True)
def cpu_tensors_as_device_arrays(monkeypatch):
    def flat_view(t):
        """The tensor's memory in memory order, as ``tensor_numba`` views a CUDA tensor."""
        return torch.as_strided(t, (t.numel(),), (1,)).numpy()

    monkeypatch.setattr(_cuda_launch, "tensor_numba", flat_view)
    monkeypatch.setattr(_cuda, "_current_stream_handle", lambda device_index: 0)
    monkeypatch.setattr(_cuda_launch, "numba_stream", lambda handle: 0)
    monkeypatch.setattr(_cuda, "_torch_requests", {})


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.uint8])
def test_layouts_and_dtypes(channels_last, dtype):
    x = (torch.rand(2, 3, 4, 5) * 255).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    got = _cuda.resize_torch(x, None, None, (7, 9), "corners", False, None)
    assert got.dtype == dtype and got.shape == (2, 3, 7, 9)
    assert got.is_contiguous(memory_format=torch.channels_last) == channels_last
    torch.testing.assert_close(got, fastinterp.resize(x, size=(7, 9), align="corners"), rtol=0, atol=int(dtype == torch.uint8))


def test_out_strided_and_bfloat16():
    x = torch.rand(3, 4, 5)
    out = torch.full((3, 7, 18), float("nan"))[..., ::2]  # not contiguous: written through a temporary
    assert _cuda.resize_torch(x, None, None, (7, 9), "center", False, out) is out
    torch.testing.assert_close(out, fastinterp.resize(x, size=(7, 9)), rtol=0, atol=0)
    bf = x.to(torch.bfloat16)
    got = _cuda.resize_torch(bf, 2.0, None, None, "center", False, None)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got, fastinterp.resize(bf.float(), 2.0).to(torch.bfloat16), rtol=0, atol=0)


def test_legacy_tensor():
    x = torch.rand(1, 2, 5, 6) * 300
    got = _cuda.resize_torch(x, 1.7, 1.3, None, "center", True, None)
    assert got.dtype == torch.uint8
    assert torch.equal(got, fastinterp.resize(x, 1.7, 1.3, legacy=True))


@pytest.mark.parametrize(
    "make_out, error, message",
    [
        (lambda: np.zeros((3, 7, 9), np.float32), TypeError, "torch tensor"),
        (lambda: torch.zeros(3, 7, 8), ValueError, "shape"),
        (lambda: torch.zeros(3, 7, 9, dtype=torch.float64), ValueError, "dtype"),
    ],
)
def test_out_errors(make_out, error, message):
    with pytest.raises(error, match=message):
        _cuda.resize_torch(torch.rand(3, 4, 5), None, None, (7, 9), "center", False, make_out())


def test_dtype_and_rank_errors():
    with pytest.raises(TypeError, match="int32"):
        _cuda.resize_torch(torch.zeros(4, 5, dtype=torch.int32), 2.0, None, None, "center", False, None)
    with pytest.raises(TypeError, match="complex"):
        _cuda.resize_torch(torch.zeros(4, 5, dtype=torch.complex64), 2.0, None, None, "center", False, None)
    with pytest.raises(ValueError, match="shape"):
        _cuda.resize_torch(torch.zeros(5), 2.0, None, None, "center", False, None)


def test_overlapping_out_is_refused():
    both = torch.zeros(2, 4, 4)
    with pytest.raises(ValueError, match="overlaps"):
        _cuda.resize_torch(both[0:1], None, None, (4, 4), "center", False, both[0:1])


def test_host_tensor_routes():
    x = torch.rand(4, 5)
    with pytest.raises(ValueError, match="device='cuda'"):
        fastinterp.resize(x, 2.0, backend="cuda")
    with pytest.raises(TypeError, match="tensor.to"):
        fastinterp.resize(x, 2.0, device="cuda")


def test_repeated_requests_are_validated_once_and_by_type():
    x = torch.rand(2, 3, 4, 5)
    first = _cuda._torch_request(x, 2.0, None, None, "center", False, False, 0)
    assert _cuda._torch_request(torch.rand(2, 3, 4, 5), 2.0, None, None, "center", False, False, 0) is first
    assert _cuda._torch_request(x, 2, None, None, "center", False, False, 0) is not first  # 2 == 2.0, another type
    _cuda.resize_torch(x, None, None, (2, 3), "center", False, None, True)
    with pytest.raises(TypeError, match="antialias must be True or False"):
        _cuda.resize_torch(x, None, None, (2, 3), "center", False, None, 1)  # 1 == True
    _cuda.resize_torch(x, 1.0, None, None, "center", False, None)
    with pytest.raises(TypeError, match="rate"):
        _cuda.resize_torch(x, True, None, None, "center", False, None)  # True == 1.0
    _cuda.resize_torch(x, None, None, (8, 10), "center", False, None)
    with pytest.raises(ValueError, match="size"):
        _cuda.resize_torch(x, None, None, (8.0, 10), "center", False, None)  # (8.0, 10) == (8, 10)
    listed = _cuda.resize_torch(x, None, None, [8, 10], "center", False, None)  # unhashable: not cached
    torch.testing.assert_close(listed, fastinterp.resize(x, size=(8, 10)), rtol=0, atol=0)
    assert _cuda._torch_request(x.contiguous(memory_format=torch.channels_last), 2.0, None, None,
                                "center", False, False, 0).memory_format == torch.channels_last


def test_launches_on_tensors_are_kept_per_address_and_stream():
    x = torch.rand(3, 4, 5)
    request = _cuda._torch_request(x, None, None, (7, 9), "center", False, False, 0)
    outs = [torch.full((3, 7, 9), float("nan")) for _ in range(2)]
    request.launch._on_tensors.clear()  # launches are shared with earlier tests
    for out in (*outs, outs[0]):
        request.launch.on_tensors(x, out, 0)
    assert len(request.launch._on_tensors) == 2
    for out in outs:
        torch.testing.assert_close(out, fastinterp.resize(x, size=(7, 9)), rtol=0, atol=0)

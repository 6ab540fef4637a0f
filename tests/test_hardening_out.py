"""Issue 12, item 8: ``out=`` is refused where numpy's ufuncs or torch's out= ops refuse it,
accepted where writing it is safe, and a written tensor's version counter moves."""

import numpy as np
import pytest
import torch

import fastinterp
from fastinterp.reference import bilinear_resize

IMAGE = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
EXPECTED = fastinterp.resize(IMAGE, 2)


def _self_overlapping_numpy():
    return [
        np.lib.stride_tricks.as_strided(np.zeros(10, np.float32), (8, 10), (0, 4), writeable=True),
        np.lib.stride_tricks.as_strided(np.zeros(40, np.float32), (8, 10), (16, 4), writeable=True),
    ]


@pytest.mark.parametrize("index", [0, 1], ids=["zero-stride", "rows-overlap"])
def test_a_self_overlapping_numpy_out_is_refused(index):
    out = _self_overlapping_numpy()[index]
    with pytest.raises(ValueError, match="more than one element of out= refers to a single memory location"):
        fastinterp.resize(IMAGE, 2, out=out)


def test_an_expanded_tensor_out_is_refused():
    out = torch.zeros(1, 10).expand(8, 10)
    with pytest.raises(ValueError, match="more than one element of out= refers to a single memory location"):
        fastinterp.resize(torch.from_numpy(IMAGE), 2, out=out)


def test_a_tensor_out_that_requires_grad_is_refused():
    out = torch.zeros(8, 10, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"out=\.\.\. arguments don't support automatic differentiation"):
        fastinterp.resize(torch.from_numpy(IMAGE), 2, out=out)
    with torch.no_grad():  # as torch: allowed where no graph is recorded
        fastinterp.resize(torch.from_numpy(IMAGE), 2, out=out)
    assert np.array_equal(out.detach().numpy(), EXPECTED)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_writing_a_tensor_out_bumps_its_version(dtype):
    weight = torch.ones(8, 10, dtype=dtype, requires_grad=True)
    out = torch.zeros(8, 10, dtype=dtype)
    loss = (weight * out).sum()  # saves ``out`` for the backward
    before = out._version
    fastinterp.resize(torch.from_numpy(IMAGE).to(dtype), 2, out=out)
    assert out._version > before
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


@pytest.mark.parametrize("byteorder", [">", "<"])
@pytest.mark.parametrize("channels", [None, 3])
def test_a_non_native_out_is_written(byteorder, channels):
    image = IMAGE if channels is None else np.repeat(IMAGE[..., np.newaxis], channels, axis=2)
    want = fastinterp.resize(image, 2)
    out = np.zeros(want.shape, np.dtype(np.float32).newbyteorder(byteorder))
    assert fastinterp.resize(image, 2, out=out) is out
    assert np.array_equal(out, want)


def test_a_masked_out_is_refused_in_one_line():
    with pytest.raises(TypeError, match="out= is a masked array"):
        fastinterp.resize(IMAGE, 2, out=np.ma.masked_array(np.zeros((8, 10), np.float32)))


def test_disjoint_interleaved_views_are_accepted():
    buffer = np.zeros((16, 10), np.float32)
    source, out = buffer[1::2][:4, :5], buffer[::2]
    source[...] = IMAGE
    fastinterp.resize(source, 2, out=out)
    assert np.array_equal(out, EXPECTED)
    assert np.array_equal(buffer[1::2][:4, :5], IMAGE)  # the source is untouched
    tensor = torch.zeros(16, 10)
    tensor[1::2][:4, :5] = torch.from_numpy(IMAGE)
    fastinterp.resize(tensor[1::2][:4, :5], 2, out=tensor[::2])
    assert np.array_equal(tensor[::2].numpy(), EXPECTED)


def test_a_truly_overlapping_out_is_still_refused():
    buffer = np.zeros((16, 10), np.float32)
    with pytest.raises(ValueError, match="overlaps the input"):
        fastinterp.resize(buffer[:4, :5], 2, out=buffer[2:10])
    tensor = torch.zeros(16, 10)
    with pytest.raises(ValueError, match="overlaps the input"):
        fastinterp.resize(tensor[:4, :5], 2, out=tensor[2:10])


def test_results_match_the_reference():
    assert np.allclose(EXPECTED, bilinear_resize(IMAGE, 8, 10), atol=1e-6)

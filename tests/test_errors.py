"""Bad input gets a clear error before any work is done."""

import numpy as np
import pytest
import torch

import fastinterp

IMG = np.zeros((4, 5), np.float32)


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"w_rate": 0}, ValueError, "w_rate must be a finite number > 0"),
        ({"w_rate": -2}, ValueError, "> 0"),
        ({"w_rate": float("nan")}, ValueError, "finite"),
        ({"w_rate": float("inf")}, ValueError, "finite"),
        ({"w_rate": 2, "h_rate": 0.0}, ValueError, "h_rate"),
        ({"w_rate": "8"}, TypeError, "w_rate must be a real number"),
        ({"w_rate": True}, TypeError, "real number"),
        ({"w_rate": 0.01}, ValueError, "empty"),
        ({}, ValueError, "give a rate"),
        ({"w_rate": 2, "size": (8, 10)}, ValueError, "not both"),
        ({"size": (8,)}, TypeError, "pair"),
        ({"size": (0, 3)}, ValueError, "integers >= 1"),
        ({"size": (2.5, 3)}, ValueError, "integers >= 1"),
        ({"w_rate": 2, "align": "middle"}, ValueError, "align must be one of"),
        ({"w_rate": 2, "align": "corners", "legacy": True}, ValueError, "legacy align"),
        ({"w_rate": 2, "legacy": "yes"}, TypeError, "legacy must be True or False"),
        ({"w_rate": 2, "channels_first": 1}, TypeError, "channels_first"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        fastinterp.resize(IMG, **kwargs)


@pytest.mark.parametrize(
    "arr,error,message",
    [
        (np.zeros(5, np.float32), ValueError, "got 1 dimensions"),
        (np.zeros((1, 2, 3, 4, 5), np.float32), ValueError, "got 5 dimensions"),
        (np.zeros((0, 5), np.float32), ValueError, "empty"),
        (np.zeros((3, 4, 0), np.float32), ValueError, "empty"),
        (np.zeros((3, 4), bool), TypeError, "numeric"),
        (np.zeros((3, 4), complex), TypeError, "numeric"),
        (np.zeros((3, 4), object), TypeError, "numeric"),
        (np.array([["a", "b"]]), TypeError, "numeric"),
        (np.zeros((3, 4), np.int64), TypeError, "does not support dtype int64"),
        ("not an array", TypeError, "expected an array"),
        (None, TypeError, "expected an array"),
    ],
)
def test_bad_arrays(arr, error, message):
    with pytest.raises(error, match=message):
        fastinterp.resize(arr, 2)


def test_legacy_rejects_float16_with_the_options():
    with pytest.raises(TypeError, match="legacy=True does not support dtype float16; supported: float32"):
        fastinterp.resize(np.zeros((3, 3, 1), np.float16), 2, legacy=True)


def test_huge_output_is_refused_with_its_size_before_allocating():
    with pytest.raises(ValueError, match=r"would need 384\.0 GiB with its temporaries"):
        fastinterp.resize(np.zeros((3, 4, 4), np.float32), 2**15, channels_first=True)


@pytest.mark.parametrize(
    "out,error,message",
    [
        (np.zeros((8, 9), np.float32), ValueError, r"shape \(8, 9\), expected \(8, 10\)"),
        (np.zeros((8, 10), np.float64), TypeError, "dtype float64, expected float32"),
        ([[0.0] * 10] * 8, TypeError, "numpy array"),
        (torch.zeros(8, 10), TypeError, "numpy array"),
    ],
)
def test_bad_out(out, error, message):
    with pytest.raises(error, match=message):
        fastinterp.resize(IMG, 2, out=out)


def test_read_only_and_overlapping_out():
    out = np.zeros((8, 10), np.float32)
    out.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        fastinterp.resize(IMG, 2, out=out)
    buffer = np.zeros((8, 10), np.float32)
    with pytest.raises(ValueError, match="overlaps the input"):
        fastinterp.resize(buffer[:4, :5], 2, out=buffer)


def test_bad_torch_inputs():
    with pytest.raises(ValueError, match=r"shape \(\.\.\., H, W\)"):
        fastinterp.resize(torch.zeros(5), 2)
    with pytest.raises(TypeError, match="real floating or integer tensor"):
        fastinterp.resize(torch.zeros(3, 3, dtype=torch.complex64), 2)
    with pytest.raises(TypeError, match="torch tensor"):
        fastinterp.resize(torch.zeros(3, 3), 2, out=np.zeros((6, 6), np.float32))
    with pytest.raises(ValueError, match="expected"):
        fastinterp.resize(torch.zeros(3, 3), 2, out=torch.zeros(6, 5))


def test_errors_leave_out_untouched():
    out = np.full((8, 10), 5.0, np.float32)
    with pytest.raises(ValueError):
        fastinterp.resize(IMG, 2, align="bad", out=out)
    assert (out == 5.0).all()


def test_bad_thread_counts():
    with pytest.raises(ValueError, match="between 1 and"):
        fastinterp.set_num_threads(0)
    with pytest.raises(TypeError, match="int"):
        fastinterp.set_num_threads(1.5)


def test_dropin_rejects_bad_align_and_rates():
    with pytest.raises(ValueError, match="legacy align must be one of"):
        fastinterp.BilinearInterpolation(8, 8, align="corners")
    with pytest.raises(ValueError, match="w_rate"):
        fastinterp.BilinearInterpolation(0, 8)
    with pytest.raises(ValueError, match="h_rate"):
        fastinterp.BilinearInterpolation(8, 8).set_rate(2, -1)

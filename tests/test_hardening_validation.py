"""Issue 12, item 12: every front (``fastinterp.resize``, ``fastinterp.torch.resize``, the
registered ops) refuses what it cannot do with one line of its own, before any kernel or
torch internal runs."""

import numpy as np
import pytest
import torch

import fastinterp
import fastinterp.torch as fastinterp_torch

GRAD = torch.ones(1, 2, 10, 14)


@pytest.mark.parametrize("op", ["resize", "resize_backward"])
@pytest.mark.parametrize(
    "height,width,align,error,message",
    [
        (5, 7, "nope", ValueError, "align must be one of"),
        (5, 7, "CENTER", ValueError, "align must be one of"),
        (0, 7, "center", ValueError, ">= 1"),
        (-1, 7, "center", ValueError, ">= 1"),
        (5, 2**40, "center", ValueError, "GiB"),
    ],
)
def test_the_registered_ops_validate_their_arguments(op, height, width, align, error, message):
    with pytest.raises(error, match=message):
        getattr(torch.ops.fastinterp, op)(GRAD, height, width, align)


@pytest.mark.parametrize("op", ["resize", "resize_backward"])
def test_the_registered_ops_refuse_integer_tensors(op):
    with pytest.raises(TypeError, match="floating tensor"):
        getattr(torch.ops.fastinterp, op)(GRAD.to(torch.uint8), 5, 7, "center")


@pytest.mark.parametrize("channels_first", [True, 1, "yes"])
def test_channels_first_with_a_tensor_is_refused(channels_first):
    with pytest.raises((TypeError, ValueError), match=r"channels_first.*\(\.\.\., H, W\)"):
        fastinterp.resize(torch.ones(3, 4, 5), 2, channels_first=channels_first)


def test_channels_first_false_with_a_tensor_is_the_default():
    assert fastinterp.resize(torch.ones(3, 4, 5), 2, channels_first=False).shape == (3, 8, 10)


@pytest.mark.parametrize("rate", [1e308, 10**400, 1e200, 2**1030])
def test_huge_rates_raise_the_documented_value_error(rate):
    for rates in ((rate,), (2, rate)):
        with pytest.raises(ValueError, match="rate|the output would") as error:
            fastinterp.resize(np.ones((4, 5), np.float32), *rates)
        assert "\n" not in str(error.value) and len(str(error.value)) < 400


@pytest.mark.parametrize("scale", [1e308, 10**400])
def test_huge_scale_factors_raise_value_error(scale):
    with pytest.raises(ValueError, match="scale_factor"):
        fastinterp_torch.resize(torch.ones(4, 5), scale)


def test_a_masked_array_is_refused():
    masked = np.ma.masked_array(np.ones((4, 5), np.float32), mask=np.eye(4, 5, dtype=bool))
    with pytest.raises(TypeError, match="masked array"):
        fastinterp.resize(masked, 2)
    with pytest.raises(TypeError, match="masked array"):
        fastinterp.BilinearInterpolation(2, 2).transform(masked[..., np.newaxis])


def _quantized():
    return torch.quantize_per_tensor(torch.ones(4, 5), 0.1, 0, torch.quint8)


def _nested():
    return torch.nested.nested_tensor([torch.ones(4, 5), torch.ones(3, 5)], layout=torch.strided)


@pytest.mark.parametrize(
    "make,what",
    [
        (_quantized, "quantized"),
        (lambda: torch.ones(4, 5).to(torch.float8_e4m3fn), "float8_e4m3fn"),
        (lambda: torch.ones(4, 5).to(torch.float8_e5m2), "float8_e5m2"),
        (_nested, "nested"),
        (lambda: torch.ones(4, 5).to_sparse(), "sparse"),
    ],
)
@pytest.mark.parametrize("front", ["resize", "torch.resize"])
def test_exotic_tensors_get_one_line_type_errors(make, what, front):
    call = fastinterp.resize if front == "resize" else fastinterp_torch.resize
    with pytest.raises(TypeError, match=what) as error:
        call(make(), 2)
    assert "\n" not in str(error.value)

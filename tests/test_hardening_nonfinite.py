"""Issue 12, item 13: infinities and NaNs propagate as in torch's bilinear interpolation.

A clamped edge reads its one pixel with weight 1 and no second tap: ``inf * 1 + inf * 0``
would be NaN where torch keeps the infinity. Every CPU layout is compared with
``torch.nn.functional.interpolate`` (both ``align_corners``); the CUDA kernels are compared
under the simulator in tests/cudasim/.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastinterp
from fastinterp.reference import bilinear_resize


def nonfinite_maps(channels: int, seed: int = 0) -> np.ndarray:
    """(2, channels, 5, 6) float32 maps with +inf, -inf and NaN on edges, corners and inside."""
    rng = np.random.default_rng(seed)
    maps = rng.standard_normal((2, channels, 5, 6)).astype(np.float32)
    maps[0, :, :, -1] = np.inf  # right column
    maps[0, :, -1, :] = -np.inf  # bottom row
    maps[1, :, 0, 0] = np.nan
    maps[1, :, 2, 3] = np.inf
    maps[1, :, -1, -1] = -np.inf  # bottom-right corner
    return maps


def torch_reference(maps: np.ndarray, size: tuple[int, int], align: str) -> np.ndarray:
    return F.interpolate(torch.from_numpy(maps), size=size, mode="bilinear", align_corners=align == "corners").numpy()


def assert_same_nonfinite(got: np.ndarray, want: np.ndarray) -> None:
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(np.isinf(got), np.isinf(want))
    assert np.array_equal(got[np.isinf(got)], want[np.isinf(want)])
    finite = np.isfinite(want)
    assert np.allclose(got[finite], want[finite], rtol=1e-5, atol=1e-5)


# torch copies where the size does not change, and with align_corners=True it interpolates as
# ``a + w * (b - a)`` (NaN wherever a tap is infinite, even with weight 0 or at a clamped
# edge): there, and for every align, the float64 reference is the judge.
TORCH_SIZES = [(10, 12), (13, 17), (3, 4), (1, 1)]
SIZES = [*TORCH_SIZES, (5, 6), (9, 11)]
LAYOUTS = ["channels_first", "channels_last", "torch", "torch_channels_last"]


def fastinterp_resize(maps: np.ndarray, size: tuple[int, int], align: str, layout: str) -> np.ndarray:
    if layout == "channels_first":
        got = fastinterp.resize(maps, size=size, align=align, channels_first=True)
    elif layout == "channels_last":
        got = fastinterp.resize(maps.transpose(0, 2, 3, 1), size=size, align=align).transpose(0, 3, 1, 2)
    else:
        tensor = torch.from_numpy(maps)
        if layout == "torch_channels_last":
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        got = fastinterp.resize(tensor, size=size, align=align).numpy()
    return got


@pytest.mark.parametrize("size", TORCH_SIZES)
@pytest.mark.parametrize("channels", [1, 3, 20])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_nonfinite_values_propagate_as_in_torch(size, channels, layout):
    maps = nonfinite_maps(channels)
    assert_same_nonfinite(fastinterp_resize(maps, size, "center", layout), torch_reference(maps, size, "center"))


def reference(maps: np.ndarray, size: tuple[int, int], align: str) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        planes = [bilinear_resize(plane, *size, align) for plane in maps.reshape(-1, *maps.shape[2:])]
    return np.stack(planes).reshape(*maps.shape[:2], *size).astype(np.float32)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("align", ["center", "corners", "left"])
@pytest.mark.parametrize("channels", [1, 3, 20])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_nonfinite_values_propagate_as_in_the_reference(size, align, channels, layout):
    maps = nonfinite_maps(channels)
    assert_same_nonfinite(fastinterp_resize(maps, size, align, layout), reference(maps, size, align))


@pytest.mark.parametrize("size", TORCH_SIZES)
def test_the_reference_keeps_infinities_at_clamped_edges_as_torch(size):
    maps = nonfinite_maps(1)
    assert_same_nonfinite(reference(maps, size, "center"), torch_reference(maps, size, "center"))


def test_a_single_infinite_pixel_stays_infinite():
    for value in (np.inf, -np.inf):
        got = fastinterp.resize(np.full((1, 1), value, np.float32), size=(3, 4))
        assert np.array_equal(got, np.full((3, 4), value, np.float32))


def test_legacy_keeps_the_original_black_frame():
    """legacy=True reproduces the original script, non-finite values included."""
    from fastinterp.reference import legacy_transform

    image = nonfinite_maps(3)[0].transpose(1, 2, 0)
    got = fastinterp.resize(image, 2, legacy=True)
    assert np.array_equal(got, legacy_transform(image, 2, 2))

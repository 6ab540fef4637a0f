"""Issue 12, item 13 on the CUDA kernels: a clamped edge reads its one pixel alone, so
infinities there stay infinite; NaNs and infinities land where the CPU puts them."""

from __future__ import annotations

import numpy as np
import pytest

import fastinterp

from .helpers import ALIGNS

pytestmark = pytest.mark.cudasim


def nonfinite_maps(channels: int) -> np.ndarray:
    maps = np.random.default_rng(0).standard_normal((2, channels, 3, 4)).astype(np.float32)
    maps[0, :, :, -1] = np.inf
    maps[0, :, -1, :] = -np.inf
    maps[1, :, 0, 0] = np.nan
    maps[1, :, 1, 2] = np.inf
    return maps


@pytest.mark.parametrize("align", ALIGNS)
@pytest.mark.parametrize("size", [(7, 9), (3, 4), (1, 1)])
@pytest.mark.parametrize("channels_first", [True, False], ids=["planes", "pixels"])
def test_nonfinite_values_match_the_cpu(align, size, channels_first):
    maps = nonfinite_maps(3)
    x = maps if channels_first else np.ascontiguousarray(maps.transpose(0, 2, 3, 1))
    with np.errstate(invalid="ignore"):
        gpu = fastinterp.resize(x, size=size, align=align, channels_first=channels_first, device="cuda")
    cpu = fastinterp.resize(x, size=size, align=align, channels_first=channels_first)
    np.testing.assert_array_equal(gpu, cpu)  # (NaNs compare equal here)
    assert np.isinf(cpu).any() or size == (1, 1)


def test_an_infinite_pixel_stays_infinite():
    x = np.full((1, 1), -np.inf, np.float32)
    with np.errstate(invalid="ignore"):
        got = fastinterp.resize(x, size=(3, 4), device="cuda")
    assert np.array_equal(got, np.full((3, 4), -np.inf, np.float32))

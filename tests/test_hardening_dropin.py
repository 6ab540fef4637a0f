"""Issue 12, item 10: the drop-in ``BilinearInterpolation.transform`` reads any array-like as
(H, W, C), as the original does, whatever its type, and returns what the original returns."""

import numpy as np
import pytest
import torch

import fastinterp
from fastinterp.reference import legacy_transform

IMAGE = np.random.default_rng(0).uniform(0, 255, (5, 7, 3)).astype(np.float32)


@pytest.mark.parametrize("kind", ["numpy", "torch", "torch-requires-grad", "list"])
@pytest.mark.parametrize("legacy", [True, False])
def test_transform_reads_any_array_like_as_hwc(kind, legacy):
    image = {
        "numpy": lambda: IMAGE,
        "torch": lambda: torch.from_numpy(IMAGE.copy()),
        "torch-requires-grad": lambda: torch.from_numpy(IMAGE.copy()).requires_grad_(),
        "list": lambda: IMAGE.tolist(),
    }[kind]()
    resizer = fastinterp.BilinearInterpolation(2, 2, legacy=legacy)
    got = resizer.transform(image)
    want = resizer.transform(np.asarray(IMAGE.tolist()) if kind == "list" else IMAGE)
    assert isinstance(got, np.ndarray)
    assert got.shape == (10, 14, 3)
    assert np.array_equal(got, want)
    if legacy:
        assert np.array_equal(got, legacy_transform(np.asarray(image) if kind == "list" else IMAGE, 2, 2))

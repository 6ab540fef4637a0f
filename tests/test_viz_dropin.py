"""viz.visualize_feature_map: the original's signature and file names, every channel, correct maps."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib
import numpy as np
import torch
from PIL import Image

import fastinterp
from viz import visualize_feature_map


def test_writes_every_channel_and_the_sum_with_the_original_names(tmp_path, capsys):
    features = torch.randn(1, 5, 6, 7, generator=torch.Generator().manual_seed(2))
    written = visualize_feature_map(features, f"{tmp_path}/", "drone", fastinterp.BilinearInterpolation(8, 8))
    names = [f"{i}_drone.jpg" for i in range(5)] + ["sum_drone.jpg"]
    assert written == [f"{tmp_path}/{name}" for name in names]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    assert capsys.readouterr().out == "save sum_drone.jpg\n"

    upsampled = fastinterp.resize(features[0].numpy(), 8, channels_first=True)
    maps = {f"{i}_drone.jpg": channel for i, channel in enumerate(upsampled)}
    maps["sum_drone.jpg"] = upsampled.astype(np.float64).sum(axis=0)
    for name, values in maps.items():
        expected = matplotlib.colormaps["viridis"]((values - values.min()) / (values.max() - values.min()), bytes=True)[..., :3]
        with Image.open(tmp_path / name) as image:
            assert image.format == "JPEG" and image.size == (56, 48)
            error = np.abs(np.asarray(image.convert("RGB")).astype(int) - expected.astype(int))
        assert error.mean() < 1.5 and error.max() < 40, name


def test_uses_the_rates_and_align_of_any_bilinear_object(tmp_path, capsys):
    original_style = SimpleNamespace(w_rate=2, h_rate=3, align="left")
    features = np.random.default_rng(0).standard_normal((1, 3, 6, 7)).astype(np.float32)
    written = visualize_feature_map(features, str(tmp_path / "run1_"), "baseline", original_style)
    assert [p.split("/")[-1] for p in written] == ["run1_0_baseline.jpg", "run1_1_baseline.jpg", "run1_2_baseline.jpg",
                                                   "run1_sum_baseline.jpg"]
    with Image.open(written[0]) as image:
        assert image.size == (14, 18)
    with Image.open(written[0]) as image:
        decoded = np.asarray(image.convert("RGB")).astype(int)

    def error_against(align: str) -> float:
        values = fastinterp.resize(features[0, 0], 2, 3, align=align)
        rgb = matplotlib.colormaps["viridis"]((values - values.min()) / (values.max() - values.min()), bytes=True)[..., :3]
        return float(np.abs(decoded - rgb.astype(int)).mean())

    assert error_against("left") < 4.0 < error_against("center")

"""viz.compare's per-channel files: A and B of each channel on one shared scale, A - B on a
symmetric diverging scale, their statistics in the manifest, and the output estimate's bound."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import viz
from viz.api import compare_estimate
from viz.compare import DIFFERENCE_CMAP, compare_layer
from viz.inputs import original_preprocess
from viz.render import LUT_SIZE, RenderOptions, colormap_lut, load_channel, upsample


def indices(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "P"
        return np.asarray(image)


def channel(target: Path, manifest: dict, which: str, c: int) -> np.ndarray:
    """Palette indices of channel ``c`` of A, B or A - B (``which``), from its page or its file."""
    image = load_channel(target, manifest["channels"], c, which)
    assert image.mode == "P"
    return np.asarray(image)


def features(seed: int, shape: tuple[int, int, int] = (7, 5, 6)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.fixture(params=[False, True], ids=["pages", "files"])
def written(tmp_path, request) -> tuple[np.ndarray, np.ndarray, Path, dict, RenderOptions]:
    a, b = features(0), features(1)
    b[3] = a[3]  # a channel with no difference
    b[5] = 2.0  # a flat channel in B
    options = RenderOptions(scale=3, threads=2, chunk_mb=0.001, channel_files=request.param)  # a few channels per chunk
    manifest = compare_layer(a, b, tmp_path, options)
    return a, b, tmp_path, manifest, options


def test_a_and_b_decode_back_to_one_shared_scale_per_channel(written):
    a, b, target, manifest, options = written
    channels = manifest["channels"]
    size = tuple(manifest["image_size"])
    up_a, up_b = upsample(a, size), upsample(b, size)
    lo, hi = np.array(channels["scale_lo"]), np.array(channels["scale_hi"])
    np.testing.assert_allclose(lo, np.minimum(up_a.min((1, 2)), up_b.min((1, 2))), rtol=1e-6)
    np.testing.assert_allclose(hi, np.maximum(up_a.max((1, 2)), up_b.max((1, 2))), rtol=1e-6)
    if options.channel_files:
        assert channels["files_a"][4] == "channels_a/0004.png" and channels["files_b"][4] == "channels_b/0004.png"
    else:
        assert [channels[f"atlas_{which}"]["pages"] for which in ("a", "b", "diff")] == [
            ["channels_a.png"], ["channels_b.png"], ["channels_diff.png"]]
    for c in range(len(a)):
        for up, which in ((up_a[c], "a"), (up_b[c], "b")):
            index = channel(target, manifest, which, c).astype(np.float64)
            assert index.shape == size
            step = (hi[c] - lo[c]) / LUT_SIZE
            # each pixel's value lies in its colour's bin of the shared scale lo..hi (the top bin is closed)
            assert np.all(lo[c] + index * step <= up + 1e-5 * (hi[c] - lo[c]))
            assert np.all(up <= lo[c] + (index + 1) * step + 1e-5 * (hi[c] - lo[c]))
        both = np.concatenate([channel(target, manifest, "a", c), channel(target, manifest, "b", c)])
        assert both.min() == 0 and both.max() == LUT_SIZE - 1  # ONE scale spans A and B together
    image = load_channel(target, channels, 0, "a")
    assert np.array_equal(np.array(image.getpalette()[: 3 * LUT_SIZE]).reshape(-1, 3), colormap_lut(options.cmap))


def test_the_difference_is_symmetric_and_white_where_a_equals_b(written):
    a, b, target, manifest, _ = written
    channels = manifest["channels"]
    size = tuple(manifest["image_size"])
    difference = upsample(a, size) - upsample(b, size)
    assert channels["diff_cmap"] == DIFFERENCE_CMAP
    for c in range(len(a)):
        index = channel(target, manifest, "diff", c).astype(np.float64)
        limit = channels["diff_limit"][c]
        decoded = -limit + (index + 0.5) * (2 * limit / LUT_SIZE)
        np.testing.assert_allclose(decoded, difference[c], atol=limit / LUT_SIZE + 1e-6)
        if c != 3:
            assert limit == pytest.approx(np.abs(difference[c]).max(), rel=1e-6)
            assert index.min() == 0 or index.max() == LUT_SIZE - 1  # the largest |A - B| reaches an end
    assert np.unique(channel(target, manifest, "diff", 3)).tolist() == [LUT_SIZE // 2]  # white
    assert channels["diff_limit"][3] == 1.0 and channels["max_abs_diff"][3] == 0.0


def test_the_manifest_holds_each_channels_statistics(written):
    a, b, target, manifest, _ = written
    channels = manifest["channels"]
    np.testing.assert_allclose(channels["mean_a"], a.mean((1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(channels["max_a"], a.max((1, 2)), rtol=1e-6)
    np.testing.assert_allclose(channels["mean_b"], b.mean((1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(channels["max_b"], b.max((1, 2)), rtol=1e-6)
    np.testing.assert_allclose(channels["max_abs_diff"], np.abs(a - b).max((1, 2)), rtol=1e-6)
    listed = set(manifest["files"])
    on_disk = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}
    assert listed == on_disk and json.loads((target / "manifest.json").read_text()) == manifest


def test_chunking_and_pages_do_not_change_the_channel_images(tmp_path):
    a, b = features(2), features(3)
    written = {}
    for name, chunk_mb, channel_files in (("small", 0.001, False), ("large", 64.0, False), ("files", 64.0, True)):
        (tmp_path / name).mkdir()
        written[name] = compare_layer(a, b, tmp_path / name, RenderOptions(scale=3, threads=2, chunk_mb=chunk_mb, channel_files=channel_files))
    for which in ("a", "b", "diff"):
        for c in range(len(a)):
            files = channel(tmp_path / "files", written["files"], which, c)
            assert np.array_equal(channel(tmp_path / "small", written["small"], which, c), files)
            assert np.array_equal(channel(tmp_path / "large", written["large"], which, c), files)
            assert np.array_equal(files, indices(tmp_path / "files" / f"channels_{which}" / f"{c:04d}.png"))


@pytest.mark.parametrize("image_format", ["png", "jpg"])
def test_the_estimate_bounds_what_a_compare_writes(tmp_path, image_format):
    """Noise photos at 4x, two random nets: the estimate is an upper bound of the bytes written."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "noise.png")
    nets = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        nets.append(torch.nn.Sequential(torch.nn.Conv2d(3, 48, 3, stride=2, padding=1)).eval())
    options = RenderOptions(scale=4, threads=2, image_format=image_format, top_k=4)
    [result] = viz.compare(*nets, [tmp_path / "noise.png"], ["0"], tmp_path / "out", options=options,
                           preprocess=original_preprocess(64), progress=False)
    assert (result.directory / ("channels_diff/0047.jpg" if image_format == "jpg" else "channels_diff.png")).is_file()
    written = sum(p.stat().st_size for p in result.directory.rglob("*") if p.is_file())
    estimate = compare_estimate("x", result.manifest["feature_shape"], options).output_bytes
    assert written <= estimate


def test_a_nan_in_either_model_gives_the_same_ranges(tmp_path):
    """A NaN at one position of every channel of A or of B: the shared sum and sheet ranges do not
    depend on which side holds it (as ``np.min`` of the single-model render, the NaN propagates)."""
    clean, poisoned = features(0), features(1)
    poisoned[:, 1, 1] = np.nan
    options = RenderOptions(scale=3, threads=1)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    nan_in_b = compare_layer(clean, poisoned, tmp_path / "b", options)
    nan_in_a = compare_layer(poisoned, clean, tmp_path / "a", options)
    for ranges in (nan_in_a["sum_range"], nan_in_b["sum_range"], nan_in_a["sheet"]["range"], nan_in_b["sheet"]["range"]):
        assert np.isnan(ranges).all(), ranges

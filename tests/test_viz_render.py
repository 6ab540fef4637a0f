"""viz.render: written pixels against an independent numpy + matplotlib computation."""

from __future__ import annotations

import io
import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

import fastinterp
from viz.errors import VizError
from viz.render import _huffman_lengths
from viz.render import (
    RenderOptions, colormap_lut, palette_indices, palette_png, palette_pngs, quantize_planes, render_layer, write_indexed,
)

VIRIDIS = matplotlib.colormaps["viridis"]


def expected_rgb(values: np.ndarray, lo: np.float32, hi: np.float32, cmap=VIRIDIS) -> np.ndarray:
    """matplotlib's own float -> colour mapping of (values - lo) / (hi - lo)."""
    if hi == lo:
        return np.broadcast_to(cmap(0, bytes=True)[:3], (*values.shape, 3))
    return cmap((values - lo) / (hi - lo), bytes=True)[..., :3]


def read_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture
def features() -> np.ndarray:
    rng = np.random.default_rng(7)
    maps = rng.standard_normal((5, 6, 7)).astype(np.float32)
    maps[2] = 0.25  # a flat channel
    maps[4] *= 1000.0  # a large range
    return maps


def test_channel_pngs_equal_numpy_normalise_and_colormap_of_fastinterp_output(tmp_path, features):
    manifest = render_layer(features, tmp_path, RenderOptions(scale=3, threads=2))
    upsampled = fastinterp.resize(features, 3, channels_first=True)
    assert upsampled.shape == (5, 18, 21)
    for i, channel in enumerate(upsampled):
        path = tmp_path / "channels" / f"{i:04d}.png"
        with Image.open(path) as image:
            assert image.mode == "P" and image.size == (21, 18)
        np.testing.assert_array_equal(read_rgb(path), expected_rgb(channel, channel.min(), channel.max()))
        assert manifest["channels"]["scale_lo"][i] == pytest.approx(float(channel.min()), rel=1e-6)
        assert manifest["channels"]["scale_hi"][i] == pytest.approx(float(channel.max()), rel=1e-6)


def test_layer_and_percentile_normalisation(tmp_path, features):
    upsampled = fastinterp.resize(features, 2, channels_first=True)
    (tmp_path / "layer").mkdir()
    render_layer(features, tmp_path / "layer", RenderOptions(scale=2, norm="layer"))
    lo, hi = upsampled.min(), upsampled.max()
    for i, channel in enumerate(upsampled):
        np.testing.assert_array_equal(read_rgb(tmp_path / "layer" / "channels" / f"{i:04d}.png"), expected_rgb(channel, lo, hi))

    (tmp_path / "pct").mkdir()
    render_layer(features, tmp_path / "pct", RenderOptions(scale=2, norm="percentile", clip=5.0))
    for i, channel in enumerate(upsampled):
        lo, hi = np.percentile(channel, [5.0, 95.0]).astype(np.float32)
        np.testing.assert_array_equal(read_rgb(tmp_path / "pct" / "channels" / f"{i:04d}.png"), expected_rgb(channel, lo, hi))


def test_file_names_summaries_and_manifest(tmp_path, features):
    image = np.random.default_rng(1).integers(0, 256, (30, 35, 3), dtype=np.uint8)
    manifest = render_layer(features, tmp_path, RenderOptions(scale=2, top_k=3, rank_by="max"), image=image,
                            context={"model": "tiny", "layer": "block"})
    channel_files = [f"channels/{i:04d}.png" for i in range(5)]
    summaries = ["sum.png", "mean.png", "max.png", "sheet.png", "overlay.png", "manifest.json"]
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(channel_files + summaries)
    assert manifest["files"] == channel_files + summaries
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    assert manifest["model"] == "tiny" and manifest["layer"] == "block"
    assert manifest["feature_shape"] == [5, 6, 7] and manifest["image_size"] == [12, 14]
    np.testing.assert_allclose(manifest["channels"]["mean"], features.mean(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_allclose(manifest["channels"]["energy"], np.square(features.astype(np.float64)).mean(axis=(1, 2)), rtol=1e-6)
    assert manifest["sheet"]["channels"] == list(np.argsort(-features.max(axis=(1, 2)), kind="stable")[:3])

    upsampled = fastinterp.resize(features, 2, channels_first=True)
    total = fastinterp.resize(features.astype(np.float64).sum(axis=0), 2)
    maximum = upsampled.max(axis=0)
    np.testing.assert_array_equal(read_rgb(tmp_path / "sum.png"), expected_rgb(total, total.min(), total.max()))
    np.testing.assert_array_equal(read_rgb(tmp_path / "max.png"), expected_rgb(maximum, maximum.min(), maximum.max()))
    assert manifest["summaries"]["mean"]["max"] == pytest.approx(total.max() / 5)

    on_image = fastinterp.resize(total, size=(30, 35))
    colours = expected_rgb(on_image, on_image.min(), on_image.max()).astype(np.float32)
    blended = np.clip(np.rint(0.5 * image.astype(np.float32) + 0.5 * colours), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(read_rgb(tmp_path / "overlay.png"), blended)


def test_streaming_in_small_chunks_writes_the_same_files(tmp_path, features):
    (tmp_path / "whole").mkdir()
    (tmp_path / "chunked").mkdir()
    render_layer(features, tmp_path / "whole", RenderOptions(scale=4, norm="layer"))
    one_channel_mb = 9 * 24 * 28 / 2**20  # the chunk budget of a single upsampled channel
    render_layer(features, tmp_path / "chunked", RenderOptions(scale=4, norm="layer", chunk_mb=2 * one_channel_mb))
    for name in [f"channels/{i:04d}.png" for i in range(5)] + ["sum.png", "max.png"]:
        np.testing.assert_array_equal(read_rgb(tmp_path / "whole" / name), read_rgb(tmp_path / "chunked" / name))


def test_jpeg_output_and_any_colormap(tmp_path, features):
    manifest = render_layer(features, tmp_path, RenderOptions(scale=8, image_format="jpg", cmap="magma"))
    assert manifest["files"][:2] == ["channels/0000.jpg", "channels/0001.jpg"]
    assert "sum.jpg" in manifest["files"] and "sheet.png" in manifest["files"]
    channel = fastinterp.resize(features[0], 8)
    expected = expected_rgb(channel, channel.min(), channel.max(), matplotlib.colormaps["magma"]).astype(int)
    with Image.open(tmp_path / "channels" / "0000.jpg") as image:
        assert image.format == "JPEG"
        error = np.abs(np.asarray(image.convert("RGB")).astype(int) - expected)
    assert error.mean() < 1.5 and error.max() < 40


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"norm": "global"}, "--norm must be one of channel, layer, percentile"),
        ({"cmap": "viridiss"}, "unknown matplotlib colormap 'viridiss'; closest: viridis"),
        ({"scale": 0.0}, "--scale must be a number > 0"),
        ({"top_k": 0}, "--top-k must be >= 1"),
    ],
)
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(VizError, match="^" + message.replace("(", r"\(")):
        RenderOptions(**options)


def test_scale_input_upsamples_to_the_input_image(tmp_path, features):
    image = np.zeros((30, 35, 3), np.uint8)
    manifest = render_layer(features, tmp_path, RenderOptions(scale=None), image=image)
    assert manifest["image_size"] == [30, 35]
    channel = fastinterp.resize(features[1], size=(30, 35))
    np.testing.assert_array_equal(read_rgb(tmp_path / "channels" / "0001.png"), expected_rgb(channel, channel.min(), channel.max()))
    with pytest.raises(VizError, match="^--scale input needs the input image$"):
        render_layer(features, tmp_path / "none", RenderOptions(scale=None))


def test_progress_counts_each_channel_once_when_chunks_are_not_multiples_of_the_write_batch(tmp_path):
    """The bug behind "2158ch of 2048": a chunk's last writer task was counted as a full batch."""
    import threading

    maps = np.random.default_rng(1).standard_normal((40, 3, 3)).astype(np.float32)
    one_channel_mb = 10 * 12 * 12 / 2**20  # BYTES_PER_CHUNK_PIXEL per pixel of a 12x12 channel
    counted, lock = [], threading.Lock()

    def progress(n: int) -> None:
        with lock:
            counted.append(n)

    render_layer(maps, tmp_path, RenderOptions(scale=4, chunk_mb=18 * one_channel_mb, threads=3), progress=progress)
    assert sum(counted) == 40 and len(list((tmp_path / "channels").iterdir())) == 40
    assert sorted(counted) == sorted([16, 2, 16, 2, 4])  # chunks of 18, 18 and 4 channels


def decoded_palette_png(data: bytes) -> tuple[np.ndarray, bytes]:
    """Indices and RGB palette of a PNG, as Pillow reads it (after verifying the file)."""
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG" and image.mode == "P"
        return np.asarray(image), bytes(image.getpalette("RGB"))


def pillow_palette_png(indices: np.ndarray, palette: bytes) -> bytes:
    image = Image.fromarray(indices, "P")
    image.putpalette(palette)
    stream = io.BytesIO()
    image.save(stream, "PNG")
    return stream.getvalue()


def check_palette_png_round_trip(indices: np.ndarray) -> None:
    palette = colormap_lut("magma").tobytes()
    ours, ours_palette = decoded_palette_png(palette_png(indices, palette))
    pillows, pillows_palette = decoded_palette_png(pillow_palette_png(indices, palette))
    np.testing.assert_array_equal(ours, indices)
    np.testing.assert_array_equal(ours, pillows)
    assert ours_palette == pillows_palette == palette


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (97, 33), (33, 97), (2, 256)])
def test_palette_png_decodes_to_the_same_indices_and_palette_as_pillows_own_png(shape):
    rng = np.random.default_rng(sum(shape))
    noise = rng.integers(0, 256, shape, dtype=np.uint8)  # every byte value, every row difference
    check_palette_png_round_trip(noise)
    smooth = (np.add.outer(np.arange(shape[0]), np.arange(shape[1])) * 7 % 256).astype(np.uint8)
    check_palette_png_round_trip(smooth)


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40))))
def test_palette_png_round_trips_any_shape(indices):
    check_palette_png_round_trip(indices)


def test_the_files_of_a_stack_equal_those_of_each_image():
    stack = np.random.default_rng(3).integers(0, 256, (4, 5, 6), dtype=np.uint8)
    stack[1] = 9  # a constant image: one literal and the end of block
    palette = colormap_lut("magma").tobytes()
    files = palette_pngs(stack, palette)
    for image, file in zip(stack, files):
        assert bytes(file) == palette_png(image, palette)
        check_palette_png_round_trip(image)


def test_a_skewed_histogram_gets_a_code_of_at_most_15_bits():
    """Counts 1, 2, 4, ... 2**15 make an unlimited Huffman code 17 bits deep (with the filter
    byte and the end of block): the encoder must limit it to deflate's 15. One row is filtered
    against its left neighbour only, so its differences are the coded residuals."""
    counts = 2 ** np.arange(16)
    assert _huffman_lengths(np.append(np.append(counts, 1), 1), 99).max() > 15
    assert _huffman_lengths(np.append(np.append(counts, 1), 1), 15).max() == 15
    residuals = np.repeat(np.arange(16) * 3 + 1, counts)
    np.random.default_rng(0).shuffle(residuals)
    row = (np.cumsum(residuals) % 256).astype(np.uint8)[None, :]
    check_palette_png_round_trip(row)


def test_channel_files_are_smaller_than_the_rows_they_hold():
    """Real upsampled maps: the Huffman code earns its keep (a stored file would be ~10 kB)."""
    maps = fastinterp.resize(np.random.default_rng(2).standard_normal((8, 12, 12)).astype(np.float32), 8, channels_first=True)
    lo, hi = maps.min(axis=(1, 2), keepdims=True), maps.max(axis=(1, 2), keepdims=True)
    files = palette_pngs(palette_indices(maps, lo, hi), colormap_lut("viridis").tobytes())
    assert all(len(file) < 0.6 * 96 * 97 for file in files)


def test_written_channels_have_pillows_pixels_and_palette(tmp_path, features):
    render_layer(features, tmp_path, RenderOptions(scale=3, threads=2))
    upsampled = fastinterp.resize(features, 3, channels_first=True)
    palette = colormap_lut("viridis").tobytes()
    for i, channel in enumerate(upsampled):
        ours, ours_palette = decoded_palette_png((tmp_path / "channels" / f"{i:04d}.png").read_bytes())
        expected = ((channel - channel.min()) / (channel.max() - channel.min()) * 256).clip(0, 255).astype(np.uint8) \
            if channel.max() > channel.min() else np.zeros(channel.shape, np.uint8)
        pillows, pillows_palette = decoded_palette_png(pillow_palette_png(expected, palette))
        np.testing.assert_array_equal(ours, pillows)
        assert ours_palette == pillows_palette
    write_indexed(tmp_path / "single.png", upsampled[0].astype(np.uint8), colormap_lut("viridis"))
    np.testing.assert_array_equal(decoded_palette_png((tmp_path / "single.png").read_bytes())[0], upsampled[0].astype(np.uint8))


def numpy_quantized(upsampled: np.ndarray, max_map: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The numpy path that quantize_planes replaces: each plane's range, its indices, the max map."""
    with np.errstate(invalid="ignore", over="ignore"):
        lo, hi = upsampled.min(axis=(1, 2)), upsampled.max(axis=(1, 2))
        indices = palette_indices(upsampled, lo[:, None, None], hi[:, None, None])
        return indices, lo, hi, np.maximum(max_map, upsampled.max(axis=0))


special_floats = st.sampled_from([0.0, -0.0, 1e-30, -3.5, 7.25, 1e30, -1e30, np.inf, -np.inf, np.nan])


@settings(max_examples=200, deadline=None)
@given(
    arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9)),
           elements=st.one_of(st.floats(-1e6, 1e6, width=32), special_floats)),
    st.booleans(),
)
def test_quantize_planes_equals_the_numpy_path_bit_for_bit(upsampled, one_constant_plane):
    if one_constant_plane:
        upsampled[0] = upsampled.flat[0]
    max_map = np.full(upsampled.shape[1:], -np.inf, np.float32)
    max_map[0, 0] = np.nan if np.isnan(upsampled).any() else 0.5
    expected, expected_lo, expected_hi, expected_max = numpy_quantized(upsampled, max_map.copy())
    lo, hi = np.empty(len(upsampled), np.float32), np.empty(len(upsampled), np.float32)
    with np.errstate(invalid="ignore"):
        indices = quantize_planes(upsampled, lo, hi, max_map, own_range=True)
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_array_equal(lo, expected_lo)
    np.testing.assert_array_equal(hi, expected_hi)
    np.testing.assert_array_equal(max_map, expected_max)


def test_quantize_planes_with_given_ranges_and_a_real_layer():
    upsampled = fastinterp.resize(np.random.default_rng(5).standard_normal((6, 12, 12)).astype(np.float32), 8, channels_first=True)
    lo = np.array([-2, -1, -0.5, 0, 0, -3], np.float32)
    hi = np.array([2, 1, 0.5, 0, -1, 3], np.float32)  # the fourth range is flat, the fifth inverted: both give 0
    max_map = np.full(upsampled.shape[1:], -np.inf, np.float32)
    indices = quantize_planes(upsampled, lo.copy(), hi.copy(), max_map, own_range=False)
    np.testing.assert_array_equal(indices, palette_indices(upsampled, lo[:, None, None], hi[:, None, None]))
    assert not indices[3].any() and not indices[4].any() and indices[0].any()
    np.testing.assert_array_equal(max_map, upsampled.max(axis=0))

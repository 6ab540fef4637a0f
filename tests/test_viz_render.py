"""viz.render: written pixels against an independent numpy + matplotlib computation."""

from __future__ import annotations

import heapq
import io
import json
import zlib
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
    BYTES_PER_CHUNK_PIXEL, Atlas, RenderOptions, adler32_combine, colormap_lut, idat_band, load_channel, palette_indices, palette_png,
    palette_pngs, png_end, png_head, quantize_planes, render_layer, write_indexed,
)

VIRIDIS = matplotlib.colormaps["viridis"]


def expected_rgb(values: np.ndarray, lo: np.float32, hi: np.float32, cmap=VIRIDIS) -> np.ndarray:
    """matplotlib's own float -> colour mapping of (values - lo) / (hi - lo)."""
    if hi == lo:
        return np.broadcast_to(cmap(0, bytes=True)[:3], (*values.shape, 3))
    return cmap((values - lo) / (hi - lo), bytes=True)[..., :3]


def read_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def channel_rgb(directory: Path, channel: int) -> np.ndarray:
    """A written channel's colours, from its atlas page or its own file (the manifest says which)."""
    channels = json.loads((directory / "manifest.json").read_text())["channels"]
    return np.asarray(load_channel(directory, channels, channel).convert("RGB"))


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
        image = load_channel(tmp_path, manifest["channels"], i)
        assert image.mode == "P" and image.size == (21, 18)
        np.testing.assert_array_equal(channel_rgb(tmp_path, i), expected_rgb(channel, channel.min(), channel.max()))
        assert manifest["channels"]["scale_lo"][i] == pytest.approx(float(channel.min()), rel=1e-6)
        assert manifest["channels"]["scale_hi"][i] == pytest.approx(float(channel.max()), rel=1e-6)


def test_layer_and_percentile_normalisation(tmp_path, features):
    upsampled = fastinterp.resize(features, 2, channels_first=True)
    (tmp_path / "layer").mkdir()
    render_layer(features, tmp_path / "layer", RenderOptions(scale=2, norm="layer"))
    lo, hi = upsampled.min(), upsampled.max()
    for i, channel in enumerate(upsampled):
        np.testing.assert_array_equal(channel_rgb(tmp_path / "layer", i), expected_rgb(channel, lo, hi))

    (tmp_path / "pct").mkdir()
    render_layer(features, tmp_path / "pct", RenderOptions(scale=2, norm="percentile", clip=5.0))
    for i, channel in enumerate(upsampled):
        lo, hi = np.percentile(channel, [5.0, 95.0]).astype(np.float32)
        np.testing.assert_array_equal(channel_rgb(tmp_path / "pct", i), expected_rgb(channel, lo, hi))


def test_file_names_summaries_and_manifest(tmp_path, features):
    image = np.random.default_rng(1).integers(0, 256, (30, 35, 3), dtype=np.uint8)
    manifest = render_layer(features, tmp_path, RenderOptions(scale=2, top_k=3, rank_by="max"), image=image,
                            context={"model": "tiny", "layer": "block"})
    summaries = ["sum.png", "mean.png", "max.png", "sheet.png", "overlay.png", "manifest.json"]
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(["channels.png", *summaries])
    assert manifest["files"] == ["channels.png", *summaries]
    # 5 tiles of 12 x 14 in a near-square page: 3 columns, 2 rows
    assert manifest["channels"]["atlas"] == {"pages": ["channels.png"], "tile": [12, 14], "columns": 3, "per_page": 5, "count": 5}
    with Image.open(tmp_path / "channels.png") as page:
        assert page.size == (3 * 14, 2 * 12) and page.mode == "P"
    (tmp_path / "loose").mkdir()
    loose = render_layer(features, tmp_path / "loose", RenderOptions(scale=2, channel_files=True))
    channel_files = [f"channels/{i:04d}.png" for i in range(5)]
    assert loose["files"] == channel_files + summaries[:4] + ["manifest.json"] and loose["channels"]["files"] == channel_files
    assert "atlas" not in loose["channels"] and "files" not in manifest["channels"]
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
    for i in range(5):
        np.testing.assert_array_equal(channel_rgb(tmp_path / "whole", i), channel_rgb(tmp_path / "chunked", i))
    for name in ["sum.png", "max.png"]:
        np.testing.assert_array_equal(read_rgb(tmp_path / "whole" / name), read_rgb(tmp_path / "chunked" / name))


@pytest.mark.parametrize("channel_files", [False, True])
def test_a_nan_in_a_later_chunk_gives_the_same_layer_range_as_in_one_chunk(tmp_path, features, channel_files):
    """--norm layer: the layer's range is that of all its values (NaN if one is NaN, as numpy's min
    gives for one chunk) whichever chunk the NaN falls in; Python's min() of the chunks' minima
    skipped a NaN after the first chunk, so --chunk-mb (and pages, whose chunks are rows of tiles)
    changed the colours."""
    features = features.copy()
    features[4, 1, 1] = np.nan
    one_channel_mb = 9 * 24 * 28 / 2**20
    manifests = []
    for name, chunk_mb in (("whole", 64.0), ("chunked", 2 * one_channel_mb)):
        (tmp_path / name).mkdir()
        manifests.append(render_layer(features, tmp_path / name, RenderOptions(scale=4, norm="layer", chunk_mb=chunk_mb, channel_files=channel_files)))
    assert manifests[0]["channels"]["scale_lo"] == pytest.approx(manifests[1]["channels"]["scale_lo"], nan_ok=True)
    for i in range(5):
        np.testing.assert_array_equal(channel_rgb(tmp_path / "whole", i), channel_rgb(tmp_path / "chunked", i))


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
    np.testing.assert_array_equal(channel_rgb(tmp_path, 1), expected_rgb(channel, channel.min(), channel.max()))
    with pytest.raises(VizError, match="^--scale input needs the input image$"):
        render_layer(features, tmp_path / "none", RenderOptions(scale=None))


def test_progress_counts_each_channel_once_when_chunks_are_not_multiples_of_the_write_batch(tmp_path):
    """The bug behind "2158ch of 2048": a chunk's last writer task was counted as a full batch."""
    import threading

    maps = np.random.default_rng(1).standard_normal((40, 3, 3)).astype(np.float32)
    one_channel_mb = BYTES_PER_CHUNK_PIXEL * 12 * 12 / 2**20  # the chunk budget of a 12x12 channel
    counted, lock = [], threading.Lock()

    def progress(n: int) -> None:
        with lock:
            counted.append(n)

    render_layer(maps, tmp_path, RenderOptions(scale=4, chunk_mb=18 * one_channel_mb, threads=3, channel_files=True), progress=progress)
    assert sum(counted) == 40 and len(list((tmp_path / "channels").iterdir())) == 40
    assert sorted(counted) == sorted([16, 2, 16, 2, 4])  # chunks of 18, 18 and 4 channels
    counted.clear()
    (tmp_path / "pages").mkdir()
    manifest = render_layer(maps, tmp_path / "pages", RenderOptions(scale=4, chunk_mb=18 * one_channel_mb, threads=3, page_pixels=7 * 144),
                            progress=progress)
    assert sum(counted) == 40 and len(manifest["channels"]["atlas"]["pages"]) == 7  # pages of 6 tiles (2 rows of 3), the last of 4


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


def huffman_cost(counts: list[int]) -> int:
    """The bits of an optimal prefix code for ``counts`` (two symbols at least): the sum of the
    merged weights, merging the two lightest each time (a plain heap)."""
    heap = [count for count in counts if count > 0]
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        merged = heapq.heappop(heap) + heapq.heappop(heap)
        cost += merged
        heapq.heappush(heap, merged)
    return cost


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 10**6), min_size=2, max_size=286).filter(lambda c: sum(map(bool, c)) >= 2))
def test_huffman_lengths_are_an_optimal_complete_code(counts):
    lengths = _huffman_lengths(np.array(counts, np.int64), 99)
    assert int(np.dot(lengths, counts)) == huffman_cost(counts)
    assert all((length > 0) == (count > 0) for length, count in zip(lengths, counts))
    assert sum(2.0 ** -int(length) for length in lengths if length) == 1.0  # complete: Kraft's sum is 1


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
        image = load_channel(tmp_path, json.loads((tmp_path / "manifest.json").read_text())["channels"], i)
        ours, ours_palette = np.asarray(image), bytes(image.getpalette("RGB"))
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


# --- channel pages (atlases) ---------------------------------------------------------------------


def idat_stream(data: bytes) -> bytes:
    """The zlib stream of a PNG: its IDAT chunks' data, in order."""
    import struct

    position, stream = 8, b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        if data[position + 4 : position + 8] == b"IDAT":
            stream += data[position + 8 : position + 8 + length]
        position += 12 + length
    return stream


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 30), st.integers(1, 30))), st.data())
def test_a_png_written_in_bands_decodes_to_its_indices_and_its_checksum_holds(indices, data):
    """Bands encoded apart (each its own deflate block, ending on a byte) make one valid PNG; zlib
    checks the Adler-32 combined from the bands'."""
    height, width = indices.shape
    cuts = sorted(set(data.draw(st.lists(st.integers(1, height - 1), max_size=4)) if height > 1 else []))
    palette = colormap_lut("magma").tobytes()
    parts, adler = [png_head(height, width, palette)], 1
    for top, bottom in zip([0, *cuts], [*cuts, height]):
        above = int(top > 0)
        chunk, band_adler = idat_band(indices[top - above : bottom], above, zlib_header=top == 0)
        parts.append(bytes(chunk))
        adler = adler32_combine(adler, band_adler, (bottom - top) * (width + 1))
    png = b"".join([*parts, png_end(adler)])
    assert len(zlib.decompress(idat_stream(png))) == height * (width + 1)  # raises on a wrong checksum
    decoded, decoded_palette = decoded_palette_png(png)
    np.testing.assert_array_equal(decoded, indices)
    assert decoded_palette == palette


def test_atlas_layout_of_resnet50_layer4_and_of_pages():
    atlas = Atlas.plan("channels", 2048, (96, 96), 1 << 25, 10_000)
    assert (atlas.pages, atlas.columns, atlas.per_page) == (["channels.png"], 46, 2048)
    assert atlas.page_shape(0) == (45 * 96, 46 * 96)  # nearly square
    assert atlas.box(47) == (96, 96, 192, 192) and atlas.box(2047) == (23 * 96, 44 * 96, 24 * 96, 45 * 96)
    paged = Atlas.plan("channels_a", 100, (10, 30), 1000, 10_000)  # 3 wide tiles fit a page: one column is squarest
    assert (paged.columns, paged.per_page, paged.page_shape(0), paged.page_shape(33)) == (1, 3, (30, 30), (10, 30))
    assert paged.pages[0] == "channels_a-000.png" and len(paged.pages) == -(-100 // paged.per_page)
    assert Atlas.plan("channels", 2048, (96, 96), 1 << 25, 8).columns == 8  # a row of tiles stays within the chunk budget
    assert Atlas.from_entry(paged.entry()) == paged
    for junk in ({**paged.entry(), "pages": ["../../x.png"]}, {**atlas.entry(), "pages": ["../x.png"]}, {"pages": []},
                 {**atlas.entry(), "columns": 0}, "channels.png"):
        with pytest.raises(VizError, match="^not an atlas description"):
            Atlas.from_entry(junk)
    with pytest.raises(VizError, match="^channel 2048 is not one of the 2048 channels$"):
        atlas.box(2048)


@pytest.mark.parametrize("change", [
    {"count": float("inf")},  # JSON's Infinity: int() raised OverflowError, not a VizError
    {"count": 2048.5}, {"count": "2048"}, {"columns": True}, {"tile": [96.7, 96]},  # were truncated or coerced
    {"count": 10**15, "per_page": 10**15},  # one page of 10^15 tiles
    {"columns": 10**12},  # more columns than tiles on the page
    {"per_page": 2049},  # more tiles on a page than channels
    {"count": 10**15, "per_page": 1},  # 10^15 page names were built before the 1 listed was compared: a hang
])
def test_an_atlas_description_a_writer_cannot_have_written_is_refused(change):
    entry = {**Atlas.plan("channels", 2048, (96, 96), 1 << 25, 10_000).entry(), **change}
    with pytest.raises(VizError, match="^not an atlas description"):
        Atlas.from_entry(entry)


def test_load_channel_refuses_a_page_its_atlas_does_not_describe(tmp_path, features):
    """An edited tile size (or a page swapped for another) made Pillow crop past the page's edge:
    a tile padded with index 0, silently wrong; now a one-line error."""
    manifest = render_layer(features, tmp_path, RenderOptions(scale=4))
    atlas = manifest["channels"]["atlas"]
    assert load_channel(tmp_path, manifest["channels"], 4).size == tuple(reversed(atlas["tile"]))
    edited = {**manifest["channels"], "atlas": {**atlas, "tile": [side * 2 for side in atlas["tile"]]}}
    with pytest.raises(VizError, match=r"^channels\.png is a \d+ x \d+ image, not the \d+ x \d+ page of its atlas$"):
        load_channel(tmp_path, edited, 4)


def test_load_channel_of_images_the_manifest_does_not_have_is_a_one_line_error(tmp_path, features):
    """A one-image job has no "a" (compare) images: a KeyError('files_a') came out before."""
    manifest = render_layer(features, tmp_path, RenderOptions(scale=2))
    with pytest.raises(VizError, match="^the manifest's channels have neither 'atlas_a' nor 'files_a'$"):
        load_channel(tmp_path, manifest["channels"], 0, "a")


@pytest.mark.parametrize(("scale", "norm", "page_pixels", "chunk_channels"), [
    (3, "channel", 1 << 25, 100),  # one page
    (2.5, "layer", 700, 3),  # many pages, chunks of one row
    (1.7, "percentile", 2000, 2),  # odd tile sizes, chunks of whole rows of 1 tile
])
def test_each_tile_of_the_pages_is_the_channels_own_file_bit_for_bit(tmp_path, scale, norm, page_pixels, chunk_channels):
    maps = np.random.default_rng(11).standard_normal((23, 7, 9)).astype(np.float32)
    maps[5] = 3.0  # flat
    maps[6, 2, 2] = 40.0  # an outlier
    size = (round(7 * scale), round(9 * scale))
    chunk_mb = chunk_channels * BYTES_PER_CHUNK_PIXEL * size[0] * size[1] / 2**20
    options = dict(scale=scale, norm=norm, threads=3, chunk_mb=chunk_mb)
    (tmp_path / "pages").mkdir()
    (tmp_path / "files").mkdir()
    paged = render_layer(maps, tmp_path / "pages", RenderOptions(**options, page_pixels=page_pixels))
    loose = render_layer(maps, tmp_path / "files", RenderOptions(**options, channel_files=True))
    atlas = paged["channels"]["atlas"]
    assert atlas["tile"] == list(size) and atlas["count"] == 23
    for page in atlas["pages"]:
        png = (tmp_path / "pages" / page).read_bytes()
        zlib.decompress(idat_stream(png))  # the checksum holds
        decoded_palette_png(png)  # and Pillow verifies the file
    for channel in range(23):
        tile = load_channel(tmp_path / "pages", paged["channels"], channel)
        with Image.open(tmp_path / "files" / loose["channels"]["files"][channel]) as own:
            np.testing.assert_array_equal(np.asarray(tile), np.asarray(own))
            assert tile.getpalette() == own.getpalette()
    for key in ("scale_lo", "scale_hi", "mean", "max"):
        assert paged["channels"][key] == loose["channels"][key]


def test_palette_indices_give_nan_index_0_without_a_warning():
    """NaN is documented as index 0 (background), on every platform, with no RuntimeWarning from
    numpy's cast (a test run printed one per NaN map)."""
    import warnings

    from viz.render import palette_indices

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        indices = palette_indices(np.array([np.nan, 0.0, 1.0, 2.0, np.inf, -np.inf], np.float32), 0.0, 2.0)
    np.testing.assert_array_equal(indices, [0, 0, 128, 255, 255, 0])


@pytest.mark.parametrize(("channel_files", "planted"), [(False, "files"), (True, "files"), (True, "folder")])
def test_a_name_the_writer_creates_that_is_already_a_symlink_is_not_followed(tmp_path, features, channel_files, planted):
    """The writers open their files with O_NOFOLLOW: a symlink planted at a name they write (in a
    staging folder only this process writes, so only by a race) leaves what it points to as it
    was; so does one at the folder of loose channels."""
    options = RenderOptions(channel_files=channel_files)
    (tmp_path / "learn").mkdir()
    render_layer(features, tmp_path / "learn", options)
    secret, elsewhere, target = tmp_path / "secret", tmp_path / "elsewhere", tmp_path / "target"
    secret.write_bytes(b"keep")
    elsewhere.mkdir()
    target.mkdir()
    for entry in (tmp_path / "learn").iterdir():
        if entry.is_dir() == (planted == "folder"):
            (target / entry.name).symlink_to(elsewhere if entry.is_dir() else secret)
    with pytest.raises(OSError):
        render_layer(features, target, options)
    assert secret.read_bytes() == b"keep"
    assert not any(elsewhere.iterdir())


def test_write_indexed_refuses_a_format_it_does_not_write(tmp_path):
    with pytest.raises(ValueError, match=r"\.png or \.jpg files, not '\.webp'"):
        write_indexed(tmp_path / "channel.webp", np.zeros((2, 2), np.uint8), colormap_lut("viridis"))
    assert not any(tmp_path.iterdir())

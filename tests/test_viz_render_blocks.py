"""viz.render's encoder and quantiser kernels against straightforward references (zlib, the PNG
spec's Paeth predictor, numpy): the fast kernels must give the same bytes at every edge."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from viz.render import ADLER_BLOCK, CRC_TABLES, _chunk_crc, _histogram_adler, _paeth_rows, colormap_lut, overlay, quantize_planes, rgb_png, upsample
from viz.render import palette_indices


def spec_paeth_rows(image: np.ndarray, first: int, pixel_bytes: int) -> np.ndarray:
    """PNG filter 4 as the PNG specification writes it (9.4), one byte at a time; the left
    neighbours are ``pixel_bytes`` bytes back."""
    height, width = image.shape
    rows = np.empty((height - first, width + 1), np.uint8)
    for y in range(first, height):
        rows[y - first, 0] = 4
        for x in range(width):
            a = int(image[y, x - pixel_bytes]) if x >= pixel_bytes else 0
            b = int(image[y - 1, x]) if y > 0 else 0
            c = int(image[y - 1, x - pixel_bytes]) if x >= pixel_bytes and y > 0 else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            guess = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            rows[y - first, x + 1] = (int(image[y, x]) - guess) % 256
    return rows


@settings(max_examples=80, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 40))), st.data(), st.sampled_from([1, 3]))
def test_paeth_rows_equal_the_specifications_filter(image, data, pixel_bytes):
    """Every byte value and row difference, widths around the vector lengths (and narrower than a
    pixel), palette and RGB, with and without a row above."""
    first = data.draw(st.integers(0, image.shape[0] - 1))
    rows = np.full((image.shape[0] - first, image.shape[1] + 1), 77, np.uint8)
    _paeth_rows(image, first, rows, pixel_bytes)
    np.testing.assert_array_equal(rows, spec_paeth_rows(image, first, pixel_bytes))


def check_histogram_adler(data: np.ndarray) -> None:
    counts = np.full(257, -5, np.int64)
    counts[256] = 1  # the end of block's count is the caller's and stays
    adler = _histogram_adler(data, counts)
    assert adler == zlib.adler32(data.tobytes())
    np.testing.assert_array_equal(counts[:256], np.bincount(data, minlength=256))
    assert counts[256] == 1


@settings(max_examples=80, deadline=None)
@given(arrays(np.uint8, st.integers(0, 70)))
def test_histogram_and_adler32_of_short_data_equal_numpy_and_zlib(data):
    """Lengths that are not multiples of the four bytes a step, and the empty input (Adler-32 is 1)."""
    check_histogram_adler(data)


@pytest.mark.parametrize("length", [ADLER_BLOCK - 1, ADLER_BLOCK, ADLER_BLOCK + 3, 3 * ADLER_BLOCK + 2])
def test_histogram_and_adler32_across_the_reduction_blocks(length):
    """All 255s: the largest sums between two reductions; random bytes: every count."""
    check_histogram_adler(np.full(length, 255, np.uint8))
    check_histogram_adler(np.random.default_rng(length).integers(0, 256, length, dtype=np.uint8))


@pytest.mark.parametrize("length", [*range(0, 20), 1000, 100_003])
def test_chunk_crc_equals_zlibs_crc32(length):
    """Sliced by 8 bytes and then one at a time: lengths on and off the 8-byte steps."""
    data = np.random.default_rng(length).integers(0, 256, length + 4, dtype=np.uint8)
    file = np.concatenate([np.zeros(3, np.uint8), data, np.zeros(4, np.uint8)])
    end = _chunk_crc(file, 3, 3 + len(data), CRC_TABLES)
    assert end == 3 + len(data) + 4
    assert int.from_bytes(file[end - 4 : end].tobytes(), "big") == zlib.crc32(data.tobytes())


def serial_range(plane: np.ndarray) -> tuple[np.float32, np.float32]:
    """A plane's extremes as one scan in row-major order finds them with ``<`` and ``>``: NaN is
    skipped and, of equal zeros, the first one is kept (its sign is the manifest's)."""
    low, high = np.float32(np.inf), np.float32(-np.inf)
    for value in plane.ravel():
        low = value if value < low else low
        high = value if value > high else high
    return low, high


zeros_and_signs = st.sampled_from([0.0, -0.0, 0.0, -0.0, 1.5, -2.5, np.inf, -np.inf])


@settings(max_examples=150, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(1, 7), st.integers(1, 19)), elements=zeros_and_signs))
def test_a_planes_range_keeps_the_sign_of_its_first_zero(upsampled):
    """The range is found column by column (vectorised): the sign of a zero extreme must still be
    the one a serial scan keeps, bit for bit."""
    lo, hi = np.empty(len(upsampled), np.float32), np.empty(len(upsampled), np.float32)
    quantize_planes(upsampled, lo, hi, np.full(upsampled.shape[1:], -np.inf, np.float32), own_range=True)
    expected = np.array([serial_range(plane) for plane in upsampled], np.float32)
    np.testing.assert_array_equal(lo.view(np.uint32), expected[:, 0].view(np.uint32))
    np.testing.assert_array_equal(hi.view(np.uint32), expected[:, 1].view(np.uint32))


@pytest.mark.parametrize("count, columns", [(7, 3), (6, 3), (1, 4), (5, 1)])
def test_quantized_tiles_hold_each_planes_indices(count, columns):
    """``out`` as a page's rows of tiles: plane c in row c // columns, column c % columns; the rest untouched."""
    upsampled = np.random.default_rng(count).standard_normal((count, 4, 6)).astype(np.float32)
    lo, hi = np.empty(count, np.float32), np.empty(count, np.float32)
    alone = quantize_planes(upsampled, lo, hi, np.full((4, 6), -np.inf, np.float32), own_range=True)
    rows = -(-count // columns)
    grid = np.full((rows, 4, columns, 6), 200, np.uint8)
    tiled_max = np.full((4, 6), -np.inf, np.float32)
    assert quantize_planes(upsampled, lo.copy(), hi.copy(), tiled_max, own_range=True, out=grid) is grid
    for c in range(count):
        np.testing.assert_array_equal(grid[c // columns, :, c % columns], alone[c])
    for c in range(count, rows * columns):
        assert (grid[c // columns, :, c % columns] == 200).all()
    np.testing.assert_array_equal(tiled_max, upsampled.max(axis=0))


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 30), st.integers(1, 30), st.just(3))))
def test_rgb_png_decodes_to_its_pixels(image):
    with Image.open(io.BytesIO(bytes(rgb_png(image)))) as decoded:
        assert decoded.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(decoded), image)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_overlay_equals_numpys_float32_blend(alpha):
    """The blend kernel against the numpy expression it replaces, bit for bit (ties of rint included)."""
    rng = np.random.default_rng(int(alpha * 10))
    image = rng.integers(0, 256, (37, 41, 3), dtype=np.uint8)
    summary = rng.standard_normal((5, 6)).astype(np.float32)
    lut = colormap_lut("magma")
    resized = upsample(summary, image.shape[:2])
    colours = lut[palette_indices(resized, resized.min(), resized.max())].astype(np.float32)
    expected = np.clip(np.rint((1.0 - alpha) * image.astype(np.float32) + alpha * colours), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(overlay(image, summary, lut, alpha), expected)


@pytest.mark.parametrize("lo, hi", [(-1.0, 2.0), (0.5, 0.5), (2.0, -1.0), (float("nan"), 1.0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_coloured_panels_equal_the_numpy_colours_with_nan_as_background(lo, hi, dtype):
    """Figure panels (sheets, compare panels): each value's colour as palette_indices gives it, NaN
    gaps as the background; flat, inverted and NaN ranges included."""
    from viz.render import BACKGROUND, _coloured

    image = np.random.default_rng(3).uniform(-2, 3, (9, 11)).astype(dtype)
    image[2, :4] = np.nan
    lut = colormap_lut("viridis")
    missing = np.isnan(image)
    with np.errstate(invalid="ignore"):
        expected = lut[palette_indices(np.where(missing, lo, image).astype(np.float32), lo, hi)]
    expected[missing] = BACKGROUND
    np.testing.assert_array_equal(np.asarray(_coloured(image, lut, lo, hi, 1)), expected)
    np.testing.assert_array_equal(np.asarray(_coloured(image, lut, lo, hi, 3)), expected.repeat(3, axis=0).repeat(3, axis=1))

"""Feature maps to image files: upsampling, normalisation, colour mapping, writing.

Colour mapping follows matplotlib's rule for floats: a value normalised to ``x`` in [0, 1]
takes colour ``lut[min(floor(x * 256), 255)]`` of the colormap's 256-entry table, so a
written channel equals ``cmap(x, bytes=True)``. Channel images are 8-bit palette PNGs built
from that table, encoded by :func:`palette_pngs` (numba, without the GIL, so the writer
threads really run in parallel) with no pyplot and no Pillow per channel. The
contact sheet and the comparison panels are composed with Pillow too; matplotlib supplies
only colour tables and tick positions, so ``matplotlib.figure`` is never imported.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import threading
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from numba import njit

import fastinterp

from .errors import VizError
from .paths import inside, open_for_writing, write_all, write_file

NORM_MODES = ("channel", "layer", "percentile")
RANK_MODES = ("mean", "max", "energy")
IMAGE_FORMATS = ("png", "jpg")
#: zlib level for the RGB PNGs Pillow writes: level 1 is ~2x faster than the default 6 for ~5% more bytes.
PNG_COMPRESS_LEVEL = 1
JPEG_QUALITY = 95
#: Bytes per output pixel while a chunk is processed: float32 map, float32 scratch, uint8 index,
#: and of the previous chunk still being written: its indices tiled into page bands (or its
#: indices), their filtered scanlines and their encoded bytes.
BYTES_PER_CHUNK_PIXEL = 12
#: Default chunk budget. Small on purpose: chunks that stay in the CPU caches avoid the page
#: faults of fresh 100 MB arrays (measured: 4-5x faster normalisation than one big chunk).
DEFAULT_CHUNK_MB = 16.0
#: Channels per writer task (one file per channel).
WRITE_BATCH = 16
LUT_SIZE = 256
#: Most pixels on one page of channel tiles: ResNet-50 layer4 at 8x (2,048 tiles of 96 x 96,
#: 19 Mpx) is one page; a browser holds a shown page at 4 bytes a pixel.
DEFAULT_PAGE_PIXELS = 1 << 25
#: The largest width or height a PNG can have (its IHDR's limit).
PNG_MAX_SIDE = 2**31 - 1
#: Pixels of a page encoded as one band (one deflate block, one task of the writer threads):
#: whole rows of tiles, at least one.
BAND_PIXELS = 1 << 19


def default_threads() -> int:
    """Writer threads: one per CPU the process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@dataclass(frozen=True)
class RenderOptions:
    """How a layer's feature maps become images.

    ``scale``: upsampling factor (``round(h * scale)``, as ``fastinterp.resize``), or None to
    upsample to the input image's size. ``norm``: ``channel`` (each channel's own min..max),
    ``layer`` (one min..max for the whole layer) or ``percentile`` (each channel clipped to its
    ``clip``..``100 - clip`` percentiles). Ranges are taken on the upsampled maps.
    """

    scale: float | None = 8.0
    norm: str = "channel"
    clip: float = 1.0
    cmap: str = "viridis"
    image_format: str = "png"
    top_k: int = 16
    rank_by: str = "mean"
    alpha: float = 0.5
    chunk_mb: float = DEFAULT_CHUNK_MB
    threads: int = field(default_factory=default_threads)
    #: Where the channels are upsampled: None on the host, or a CUDA device (``"cuda"``,
    #: ``"cuda:N"``) for fastinterp's GPU backend, each chunk copied there and back.
    resize_device: str | None = None
    #: One file per channel (``channels/NNNN.png``) instead of tiles on a few pages
    #: (``channels.png``, :class:`Atlas`). JPEG channel images are always one file each (JPEG's
    #: 8x8 blocks would mix neighbouring tiles).
    channel_files: bool = False
    #: Most pixels on one page of channel tiles.
    page_pixels: int = DEFAULT_PAGE_PIXELS

    def __post_init__(self) -> None:
        _check_choice("norm", self.norm, NORM_MODES)
        _check_choice("rank", self.rank_by, RANK_MODES)
        _check_choice("format", self.image_format, IMAGE_FORMATS)
        if self.scale is not None and not (math.isfinite(self.scale) and self.scale > 0):
            raise VizError(f"--scale must be a number > 0 or 'input', got {self.scale}")
        if not 0 <= self.clip < 50:
            raise VizError(f"--clip must be a percentage in [0, 50), got {self.clip}")
        if self.top_k < 1:
            raise VizError(f"--top-k must be >= 1, got {self.top_k}")
        if not 0 <= self.alpha <= 1:
            raise VizError(f"--alpha must be in [0, 1], got {self.alpha}")
        if self.chunk_mb <= 0 or self.threads < 1:
            raise VizError("--chunk-mb must be > 0 and --threads >= 1")
        if not (isinstance(self.page_pixels, int) and self.page_pixels >= 1):
            raise VizError(f"page_pixels must be an integer >= 1, got {self.page_pixels!r}")
        colormap_lut(self.cmap)  # fail now on an unknown colormap

    @property
    def loose_channels(self) -> bool:
        """Whether each channel image is a file of its own (else tiles of :class:`Atlas` pages)."""
        return self.channel_files or self.image_format != "png"

    def output_size(self, feature_hw: tuple[int, int], input_hw: tuple[int, int] | None) -> tuple[int, int]:
        """(height, width) of the upsampled channel images."""
        if self.scale is None:
            if input_hw is None:
                raise VizError("--scale input needs the input image")
            return input_hw
        return max(1, round(feature_hw[0] * self.scale)), max(1, round(feature_hw[1] * self.scale))


def _check_choice(what: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise VizError(f"--{what} must be one of {', '.join(choices)}, got {value!r}")


def colormap_lut(name: str) -> np.ndarray:
    """The (256, 3) uint8 colour table of a matplotlib colormap."""
    import difflib

    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(matplotlib.colormaps), n=3)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise VizError(f"unknown matplotlib colormap {name!r}{hint}") from None
    return np.ascontiguousarray(cmap.resampled(LUT_SIZE)(np.arange(LUT_SIZE), bytes=True)[:, :3])


def palette_indices(values: np.ndarray, lo: Any, hi: Any) -> np.ndarray:
    """Colour-table indices of ``values`` normalised to ``lo``..``hi`` (broadcast), as uint8.

    ``x = (v - lo) / (hi - lo)`` in the values' precision, index ``floor(x * 256)`` clipped
    to 0..255 (values outside the range saturate). A flat range (``hi == lo``) maps to 0, NaN to 0.
    """
    lo = np.asarray(lo, values.dtype)
    span = np.asarray(hi, values.dtype) - lo
    span = np.where(span > 0, span, np.inf).astype(values.dtype)
    scaled = values - lo
    scaled /= span  # in place: a layer's chunk is megabytes, and fresh arrays cost page faults
    scaled *= LUT_SIZE
    np.clip(scaled, 0, LUT_SIZE - 1, out=scaled)
    np.copyto(scaled, 0, where=scaled != scaled)  # NaN: the cast's result would depend on the CPU (and warn)
    return scaled.astype(np.uint8)


@njit(cache=True, nogil=True)
def _plane_range(plane, columns):  # pragma: no cover - compiled
    """(min, max, has NaN) of a (H, W) float32 plane, as one scan in row-major order with Python's
    ``min``/``max`` finds them (NaN skipped; of equal zeros, the first one's sign).

    Each column's extremes are kept across the rows (a loop LLVM vectorises; a single running
    minimum is a chain it cannot) in ``columns``, a (2, 2, W) scratch read from one half and
    written to the other in turn: storing back where it was read, LLVM would keep the old value
    with a masked store, which is slower on x86 than the whole scan. The columns are then
    reduced in order; where the extreme is a zero, the first zero of the plane gives its sign."""
    height, width = plane.shape
    columns[0, 0] = np.inf
    columns[0, 1] = -np.inf
    has_nan = False
    for y in range(height):
        row, lows, highs = plane[y], columns[y & 1, 0], columns[y & 1, 1]
        new_lows, new_highs = columns[1 - (y & 1), 0], columns[1 - (y & 1), 1]
        for x in range(width):
            value = row[x]
            has_nan |= value != value
            new_lows[x] = value if value < lows[x] else lows[x]
            new_highs[x] = value if value > highs[x] else highs[x]
    lows, highs = columns[height & 1, 0], columns[height & 1, 1]
    low, high = np.float32(np.inf), np.float32(-np.inf)
    for x in range(width):
        low = lows[x] if lows[x] < low else low
        high = highs[x] if highs[x] > high else high
    return _first_equal(plane, low), _first_equal(plane, high), has_nan


@njit(cache=True, nogil=True)
def _first_equal(plane, value):  # pragma: no cover - compiled
    """``value``, or for a zero the plane's first element equal to it (0.0 or -0.0)."""
    if value == 0:
        for y in range(plane.shape[0]):
            for x in range(plane.shape[1]):
                if plane[y, x] == value:
                    return plane[y, x]
    return value


@njit(cache=True, nogil=True)
def _quantize_planes(upsampled, lo, hi, own_range, max_map, out):  # pragma: no cover - compiled
    """:func:`palette_indices` of each (H, W) plane of ``upsampled`` on its ``lo``..``hi``, bit for
    bit (the same float32 operations; NaN gives 0 as numpy's cast does on x86), into the tiles of
    ``out`` (rows, H, columns, W): plane ``c`` is ``out[c // columns, :, c % columns]``.

    With ``own_range`` each plane's range is found here first (:func:`_plane_range`) and written
    to ``lo``/``hi`` (NaN when the plane holds a NaN, as ``min``/``max`` give). ``max_map``
    becomes the elementwise maximum of itself and every plane (NaN wins, as in ``np.maximum``).
    A plane stays in the cache through its passes; each pass is a loop LLVM vectorises."""
    columns = out.shape[2]
    scratch = np.empty((2, 2, upsampled.shape[2]), np.float32)
    kept = np.empty(upsampled.shape[2], np.float32)
    for c in range(upsampled.shape[0]):
        plane = upsampled[c]
        if own_range:
            low, high, has_nan = _plane_range(plane, scratch)
            lo[c], hi[c] = (np.float32(np.nan), np.float32(np.nan)) if has_nan else (low, high)
        low = lo[c]
        span = hi[c] - low
        span = span if span > 0 else np.float32(np.inf)
        for y in range(plane.shape[0]):
            _quantize_row(plane[y], low, span, out[c // columns, y, c % columns])
        _fold_max(plane, max_map, kept)


@njit(cache=True, nogil=True)
def _quantize_row(row, low, span, indices):  # pragma: no cover - compiled
    """``indices`` of one row: ``floor((value - low) / span * 256)`` clipped to 0..255, NaN to 0."""
    lut_size, top = np.float32(LUT_SIZE), np.float32(LUT_SIZE - 1)
    for x in range(row.shape[0]):
        scaled = (row[x] - low) / span * lut_size
        indices[x] = np.uint8(np.int32(min(scaled, top))) if scaled >= 0 else np.uint8(0)  # NaN fails the test: 0


@njit(cache=True, nogil=True)
def _fold_max(plane, max_map, kept):  # pragma: no cover - compiled
    """``max_map`` becomes the elementwise maximum of itself and ``plane`` (NaN wins, as in
    ``np.maximum``); each row is made in the scratch row ``kept`` first (a masked store
    otherwise, see :func:`_plane_range`)."""
    for y in range(plane.shape[0]):
        row, largest = plane[y], max_map[y]
        for x in range(row.shape[0]):
            kept[x] = largest[x] if (largest[x] >= row[x]) | (largest[x] != largest[x]) else row[x]
        for x in range(row.shape[0]):
            largest[x] = kept[x]


def quantize_planes(
    upsampled: np.ndarray, lo: np.ndarray, hi: np.ndarray, max_map: np.ndarray, *, own_range: bool,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """(C, H, W) float32 maps to their uint8 palette indices (as :func:`palette_indices`, each
    plane on its ``lo[c]``..``hi[c]``, found here when ``own_range``: the (C,) float32 arrays are
    then filled in); ``max_map`` (H, W) float32 takes the elementwise maximum of the planes.
    ``out``: where the indices go, as tiles of a (rows, H, columns, W) uint8 array (plane ``c`` in
    row ``c // columns``, column ``c % columns``: a page's layout, :meth:`AtlasPages.tiles`);
    by default a new (C, H, W) array, which is returned."""
    if out is None:
        out = np.empty((upsampled.shape[0], upsampled.shape[1], 1, upsampled.shape[2]), np.uint8)
        _quantize_planes(upsampled, lo, hi, own_range, max_map, out)
        return out.reshape(upsampled.shape)
    _quantize_planes(upsampled, lo, hi, own_range, max_map, out)
    return out


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG row filter 4, "Paeth": each byte minus the one of its left, upper and upper-left
#: neighbours nearest their planar guess. On upsampled maps it leaves the smallest residuals
#: (order-0 entropy of ResNet-50 layer4 channels at 8x: 2.8 kB a channel, against 3.9 kB with
#: the "Up" filter and 6.6 kB unfiltered), which a Huffman code alone then packs well.
PNG_FILTER_PAETH = 4
#: Deflate (RFC 1951): literal/length symbols used (the literals and the end of block), the
#: distance codes sent (two, unused: zlib's rule for a block without matches), code length limits.
LITERAL_SYMBOLS = 257
END_OF_BLOCK = 256
DISTANCE_CODES = 2
MAX_CODE_BITS = 15
MAX_CODE_LENGTH_BITS = 7
#: The order in which a dynamic block sends the code lengths of its code-length alphabet.
CODE_LENGTH_ORDER = np.array([16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15], np.int64)
#: Upper bound of a dynamic block's header (3 + 14 + 19 * 3 bits, 259 code lengths of <= 14 bits).
DEFLATE_HEADER_BOUND = 512
ADLER_MODULUS = 65521
#: Bytes summed between two reductions of Adler-32's sums: they stay far inside int64.
ADLER_BLOCK = 1 << 16
#: The type of the image-data chunk, and the end of an empty stored block (lengths 0 and ~0).
IDAT = np.frombuffer(b"IDAT", np.uint8)
EMPTY_STORED_BLOCK_END = np.array([0, 0, 0xFF, 0xFF], np.uint8)


def _crc_tables() -> np.ndarray:
    """PNG's CRC-32 (polynomial 0xEDB88320) as the (8, 256) tables of "slicing by 8": row 0 is the
    byte-wise table; row k advances a byte's CRC over k more zero bytes, so 8 bytes are folded
    in with 8 independent look-ups instead of 8 dependent ones (5x faster)."""
    crc = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        crc = np.where(crc & 1, np.uint32(0xEDB88320) ^ (crc >> np.uint32(1)), crc >> np.uint32(1))
    tables = np.empty((8, 256), np.uint32)
    tables[0] = crc
    for k in range(1, 8):
        tables[k] = (tables[k - 1] >> np.uint32(8)) ^ tables[0][tables[k - 1] & np.uint32(0xFF)]
    return tables


CRC_TABLES = _crc_tables()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


@njit(cache=True, nogil=True)
def _huffman_lengths(counts, max_bits):  # pragma: no cover - compiled
    """Code lengths (<= ``max_bits``; 0 for a symbol of count 0) of an optimal prefix code.

    At least two symbols get a code, as deflate wants. A code deeper than ``max_bits`` is
    built again from halved counts: it converges to a balanced code, always short enough.
    Plain loops only: numpy's sorts and fancy indexing here cost the first run ~8 s of compiling.
    """
    counts = counts.copy()
    n = 0
    for count in counts:
        n += count > 0
    symbol = 0
    while n < 2:  # the first symbols without a count get one
        if counts[symbol] == 0:
            counts[symbol], n = 1, n + 1
        symbol += 1
    used = np.empty(n, np.int64)
    n = 0
    for symbol in range(len(counts)):
        if counts[symbol] > 0:
            used[n], n = symbol, n + 1
    order = np.empty(n, np.int64)
    weight, parent, depth = np.empty(2 * n - 1, np.int64), np.empty(2 * n - 1, np.int64), np.empty(2 * n - 1, np.int64)
    while True:
        _sort_by_count(used, counts, order)
        for k in range(n):
            weight[k] = counts[order[k]]
        leaf, node = 0, n  # two queues: the sorted leaves and the merged nodes (made in increasing weight)
        for new in range(n, 2 * n - 1):
            total = 0
            for _ in range(2):
                if leaf < n and (node >= new or weight[leaf] <= weight[node]):
                    child, leaf = leaf, leaf + 1
                else:
                    child, node = node, node + 1
                parent[child] = new
                total += weight[child]
            weight[new] = total
        depth[2 * n - 2], deepest = 0, 0
        for k in range(2 * n - 3, -1, -1):  # a parent is made after its children
            depth[k] = depth[parent[k]] + 1
            deepest = max(deepest, depth[k])
        if deepest <= max_bits:
            break
        for symbol in used:
            counts[symbol] = (counts[symbol] + 1) // 2
    lengths = np.zeros(len(counts), np.int64)
    for k in range(n):
        lengths[order[k]] = depth[k]
    return lengths


@njit(cache=True, nogil=True)
def _sort_by_count(symbols, counts, order):  # pragma: no cover - compiled
    """``symbols`` (increasing) into ``order`` by increasing count, ties by symbol: a shell sort
    of the distinct keys count * 2**9 + symbol (deflate's alphabets have < 2**9 symbols)."""
    for k in range(len(symbols)):
        order[k] = counts[symbols[k]] << 9 | symbols[k]
    gap = len(order) // 2
    while gap > 0:
        for k in range(gap, len(order)):
            key, j = order[k], k
            while j >= gap and order[j - gap] > key:
                order[j] = order[j - gap]
                j -= gap
            order[j] = key
        gap //= 2
    for k in range(len(order)):
        order[k] &= (1 << 9) - 1


@njit(cache=True, nogil=True)
def _canonical_codes(lengths):  # pragma: no cover - compiled
    """Deflate's canonical codes of ``lengths`` (RFC 1951 3.2.2), bit-reversed: bits go out LSB first."""
    per_length = np.zeros(MAX_CODE_BITS + 1, np.int64)
    for length in lengths:
        per_length[length] += 1
    per_length[0] = 0
    next_code = np.zeros(MAX_CODE_BITS + 1, np.int64)
    for bits in range(1, MAX_CODE_BITS + 1):
        next_code[bits] = (next_code[bits - 1] + per_length[bits - 1]) << 1
    codes = np.zeros(len(lengths), np.int64)
    for symbol in range(len(lengths)):
        length = lengths[symbol]
        if length:
            code, reversed_code = next_code[length], 0
            next_code[length] += 1
            for _ in range(length):
                reversed_code = (reversed_code << 1) | (code & 1)
                code >>= 1
            codes[symbol] = reversed_code
    return codes


@njit(nogil=True)
def _put_bits(out, position, buffer, filled, value, bits):  # pragma: no cover - compiled
    """Append ``bits`` bits of ``value`` to the bit buffer; whole 32-bit words go to ``out``. Not
    inlined by numba (LLVM still may): six call sites of its typed IR cost a first run ~2 s."""
    buffer |= np.uint64(value) << np.uint64(filled)
    filled += bits
    if filled >= 32:
        for k in range(4):
            out[position + k] = (buffer >> np.uint64(8 * k)) & np.uint64(0xFF)
        buffer >>= np.uint64(32)
        filled -= 32
        position += 4
    return position, buffer, filled


@njit(inline="always")
def _put_bytes(out, position, data):  # pragma: no cover - compiled
    """``data`` at ``position``; returns the position after it. A loop, not a slice assignment:
    its shape check compiles error formatting that cost a first run ~5 s."""
    for k in range(len(data)):
        out[position + k] = data[k]
    return position + len(data)


@njit(inline="always")
def _put_u32(out, position, value):  # pragma: no cover - compiled
    """A big-endian 32-bit number at ``position``; returns the position after it."""
    for k in range(4):
        out[position + k] = (value >> (24 - 8 * k)) & 0xFF
    return position + 4


@njit(cache=True, nogil=True)
def _paeth_rows(image, first, rows, pixel_bytes):  # pragma: no cover - compiled
    """The PNG scanlines of rows ``first``.. of a (h, row bytes) uint8 image of ``pixel_bytes``
    bytes a pixel (1: palette, or 3: RGB), Paeth-filtered (row ``first - 1``, when there is one, is
    their upper neighbour), into (h - first, row bytes + 1) ``rows``.

    Without branches in x and in 16-bit numbers (:func:`_paeth_row`), so that LLVM vectorises the
    loop 16 bytes at a time (each output byte depends on the image only): 10x faster than a loop
    that tests for the edges."""
    height, width = image.shape
    for y in range(first, height):
        line, current = rows[y - first], image[y]
        line[0] = PNG_FILTER_PAETH
        if y == 0:  # no row above: the guess is the left neighbour (0 for the first pixel)
            for x in range(min(pixel_bytes, width)):
                line[x + 1] = current[x]
            for x in range(pixel_bytes, width):
                line[x + 1] = current[x] - current[x - pixel_bytes]
            continue
        above = image[y - 1]
        for x in range(min(pixel_bytes, width)):  # no left neighbour: the guess is the upper one
            line[x + 1] = current[x] - above[x]
        if pixel_bytes == 1:  # a constant step lets LLVM vectorise the loop (with a variable one it is 10x slower)
            _paeth_row(current, above, line, 1)
        else:
            _paeth_row(current, above, line, 3)


@njit(cache=True, nogil=True)
def _paeth_row(current, above, line, pixel_bytes):  # pragma: no cover - compiled
    """Bytes ``pixel_bytes``.. of a row below another, Paeth-filtered into ``line[1 + x]``; called
    with a constant ``pixel_bytes``, which LLVM needs to vectorise the loop."""
    for x in range(pixel_bytes, current.shape[0]):
        left, up, upper_left = np.int16(current[x - pixel_bytes]), np.int16(above[x]), np.int16(above[x - pixel_bytes])
        # distances as max - min and max(s, -s): abs() would widen the lanes to 64 bits (4x slower)
        to_left, to_up = np.int16(max(up, upper_left) - min(up, upper_left)), np.int16(max(left, upper_left) - min(left, upper_left))
        both = np.int16(left + up - upper_left - upper_left)
        to_corner = np.int16(max(both, np.int16(-both)))
        guess = left if (to_left <= to_up) & (to_left <= to_corner) else (up if to_up <= to_corner else upper_left)
        line[x + 1] = np.uint8((current[x] - guess) & 0xFF)


@njit(cache=True, nogil=True)
def _histogram_adler(data, counts):  # pragma: no cover - compiled
    """``counts[:256]`` becomes the histogram of the bytes of ``data``; returns their Adler-32
    (RFC 1950). One pass, four bytes a step: four histograms (filtered scanlines hold long runs
    of one byte, whose counts would otherwise wait on each other) and Adler's sums advanced by
    four bytes at once (``high`` gains ``4 low + 4 b0 + 3 b1 + 2 b2 + b3``)."""
    partial = np.zeros((4, 256), np.int64)
    low, high = np.int64(1), np.int64(0)
    for start in range(0, len(data), ADLER_BLOCK):
        end = min(start + ADLER_BLOCK, len(data))
        whole = start + (end - start) // 4 * 4
        for k in range(start, whole, 4):
            b0, b1, b2, b3 = np.int64(data[k]), np.int64(data[k + 1]), np.int64(data[k + 2]), np.int64(data[k + 3])
            partial[0, b0] += 1
            partial[1, b1] += 1
            partial[2, b2] += 1
            partial[3, b3] += 1
            high += 4 * (low + b0) + 3 * b1 + 2 * b2 + b3
            low += b0 + b1 + b2 + b3
        for k in range(whole, end):
            partial[0, data[k]] += 1
            low += data[k]
            high += low
        low %= ADLER_MODULUS
        high %= ADLER_MODULUS
    for byte in range(256):
        counts[byte] = partial[0, byte] + partial[1, byte] + partial[2, byte] + partial[3, byte]
    return high << 16 | low


@njit(cache=True, nogil=True)
def _huffman_block(data, counts, out, position, final):  # pragma: no cover - compiled
    """The bytes of ``data`` (``counts``: their histogram, and 1 for the end of block) as one
    dynamic-Huffman deflate block of literals (RFC 1951), written to ``out`` from the byte
    ``position``; returns the position after it. A ``final`` block ends zero-padded to a byte;
    another ends with an empty stored block (zlib's sync flush), so that it too ends on a byte and
    blocks encoded apart can be concatenated."""
    lengths = _huffman_lengths(counts, np.int64(MAX_CODE_BITS))
    codes = _canonical_codes(lengths)
    # The code lengths of both alphabets as code-length symbols: runs of zeros as 17 (3-10) or 18 (11-138).
    sent_lengths = np.ones(LITERAL_SYMBOLS + DISTANCE_CODES, np.int64)
    _put_bytes(sent_lengths, 0, lengths)
    symbols, extras = np.empty(len(sent_lengths), np.int64), np.empty(len(sent_lengths), np.int64)
    n_symbols, k = 0, 0
    while k < len(sent_lengths):
        run = 1
        while sent_lengths[k] == 0 and k + run < len(sent_lengths) and sent_lengths[k + run] == 0 and run < 138:
            run += 1
        if run >= 11:
            symbols[n_symbols], extras[n_symbols] = 18, run - 11
        elif run >= 3:
            symbols[n_symbols], extras[n_symbols] = 17, run - 3
        else:
            symbols[n_symbols], extras[n_symbols], run = sent_lengths[k], 0, 1
        n_symbols += 1
        k += run
    length_counts = np.zeros(19, np.int64)
    for s in range(n_symbols):
        length_counts[symbols[s]] += 1
    length_lengths = _huffman_lengths(length_counts, np.int64(MAX_CODE_LENGTH_BITS))
    length_codes = _canonical_codes(length_lengths)
    n_length_codes = 19
    while n_length_codes > 4 and length_lengths[CODE_LENGTH_ORDER[n_length_codes - 1]] == 0:
        n_length_codes -= 1

    buffer, filled = np.uint64(0), 0
    header = (1 if final else 0) | 2 << 1 | (LITERAL_SYMBOLS - 257) << 3 | (DISTANCE_CODES - 1) << 8 | (n_length_codes - 4) << 13  # dynamic
    position, buffer, filled = _put_bits(out, position, buffer, filled, header, np.int64(17))
    for k in range(n_length_codes):
        position, buffer, filled = _put_bits(out, position, buffer, filled, length_lengths[CODE_LENGTH_ORDER[k]], np.int64(3))
    for s in range(n_symbols):
        symbol = symbols[s]
        position, buffer, filled = _put_bits(out, position, buffer, filled, length_codes[symbol], length_lengths[symbol])
        if symbol >= 17:
            position, buffer, filled = _put_bits(out, position, buffer, filled, extras[s], 3 if symbol == 17 else 7)
    # The hot loop, written out (through the helper it is 4x slower): each byte's code and length
    # from one table entry, and 64 bits written at a time (a code that does not fit is carried).
    table = np.empty(LITERAL_SYMBOLS, np.uint64)
    for symbol in range(LITERAL_SYMBOLS):
        table[symbol] = np.uint64(codes[symbol]) | np.uint64(lengths[symbol]) << np.uint64(32)
    for k in range(data.shape[0]):
        entry = table[data[k]]
        code, length = entry & np.uint64(0xFFFFFFFF), np.int64(entry >> np.uint64(32))
        buffer |= code << np.uint64(filled)
        filled += length
        if filled >= 64:
            for b in range(8):
                out[position + b] = (buffer >> np.uint64(8 * b)) & np.uint64(0xFF)
            position += 8
            filled -= 64
            buffer = code >> np.uint64(length - filled) if filled > 0 else np.uint64(0)
    while filled >= 8:  # back to fewer than 8 bits for _put_bits
        out[position] = buffer & np.uint64(0xFF)
        buffer >>= np.uint64(8)
        filled -= 8
        position += 1
    position, buffer, filled = _put_bits(out, position, buffer, filled, codes[END_OF_BLOCK], lengths[END_OF_BLOCK])
    if not final:  # the header of an empty stored block: not last, type 0
        position, buffer, filled = _put_bits(out, position, buffer, filled, np.int64(0), np.int64(3))
    while filled > 0:  # the last partial byte, zero-padded
        out[position] = buffer & np.uint64(0xFF)
        buffer >>= np.uint64(8)
        filled -= 8
        position += 1
    if not final:
        position = _put_bytes(out, position, EMPTY_STORED_BLOCK_END)
    return position


def adler32_combine(first: int, second: int, second_length: int) -> int:
    """Adler-32 of two byte strings one after the other, from their own (zlib's adler32_combine)."""
    low = ((first & 0xFFFF) + (second & 0xFFFF) - 1) % ADLER_MODULUS
    high = ((first >> 16) + (second >> 16) + second_length * (first & 0xFFFF) - second_length) % ADLER_MODULUS
    return high << 16 | low


@njit(cache=True, nogil=True)
def _zlib_stream(rows, counts, adler, out, position):  # pragma: no cover - compiled
    """The bytes of ``rows`` (``counts``: their histogram, and 1 for the end of block; ``adler``:
    their Adler-32) as a zlib stream (RFC 1950) of one deflate block (:func:`_huffman_block`),
    written to ``out`` from ``position``; returns the position after it."""
    out[position], out[position + 1] = 0x78, 0x01  # deflate with a 32 KiB window; (0x78 << 8 | 0x01) % 31 == 0
    position = _huffman_block(rows.ravel(), counts, out, position + 2, np.bool_(True))
    return _put_u32(out, position, adler)


@njit(cache=True, nogil=True)
def _chunk_crc(file, start, end, crc_tables):  # pragma: no cover - compiled
    """Write the CRC of the PNG chunk whose type starts at ``start`` and data ends at ``end``; returns the end."""
    crc = np.uint32(0xFFFFFFFF)
    k = start
    while k + 8 <= end:  # slicing by 8 (:func:`_crc_tables`)
        low = crc ^ (np.uint32(file[k]) | np.uint32(file[k + 1]) << 8 | np.uint32(file[k + 2]) << 16 | np.uint32(file[k + 3]) << 24)
        crc = (crc_tables[7, low & 0xFF] ^ crc_tables[6, (low >> 8) & 0xFF] ^ crc_tables[5, (low >> 16) & 0xFF]
               ^ crc_tables[4, low >> 24] ^ crc_tables[3, file[k + 4]] ^ crc_tables[2, file[k + 5]]
               ^ crc_tables[1, file[k + 6]] ^ crc_tables[0, file[k + 7]])
        k += 8
    for k in range(k, end):
        crc = crc_tables[0, (crc ^ file[k]) & 0xFF] ^ (crc >> np.uint32(8))
    return _put_u32(file, end, crc ^ np.uint32(0xFFFFFFFF))


@njit(cache=True, nogil=True)
def _png_files(images, pixel_bytes, head, tail, crc_tables, out, sizes):  # pragma: no cover - compiled
    """Each (h, row bytes) image of ``images`` (``pixel_bytes`` bytes a pixel) as a whole PNG file
    in its row of ``out`` (its length in ``sizes``): ``head`` (signature, IHDR, PLTE), the IDAT
    chunk, ``tail`` (IEND)."""
    rows = np.empty((images.shape[1], images.shape[2] + 1), np.uint8)
    counts = np.zeros(LITERAL_SYMBOLS, np.int64)
    counts[END_OF_BLOCK] = 1
    for i in range(images.shape[0]):
        file = out[i]
        start = _put_bytes(file, 0, head)
        _paeth_rows(images[i], np.int64(0), rows, pixel_bytes)
        adler = _histogram_adler(rows.ravel(), counts)
        end = _zlib_stream(rows, counts, adler, file, start + 8)
        _put_bytes(file, _put_u32(file, start, end - start - 8), IDAT)
        end = _chunk_crc(file, start + 4, end, crc_tables)
        sizes[i] = _put_bytes(file, end, tail)


@njit(cache=True, nogil=True)
def _idat_band(image, first, zlib_header, crc_tables, out):  # pragma: no cover - compiled
    """Rows ``first``.. of a (h, w) uint8 image (row ``first - 1`` being the row above them in the
    picture) as one IDAT chunk in ``out``: their Paeth-filtered scanlines as a deflate block that
    ends on a byte (:func:`_huffman_block`, not final), after the zlib header when ``zlib_header``.
    Returns the chunk's length in bytes and the Adler-32 of the scanlines."""
    rows = np.empty((image.shape[0] - first, image.shape[1] + 1), np.uint8)
    counts = np.zeros(LITERAL_SYMBOLS, np.int64)
    counts[END_OF_BLOCK] = 1
    _paeth_rows(image, first, rows, np.int64(1))
    adler = _histogram_adler(rows.ravel(), counts)
    position = 8
    if zlib_header:
        out[8], out[9] = 0x78, 0x01
        position = 10
    end = _huffman_block(rows.ravel(), counts, out, position, np.bool_(False))
    _put_bytes(out, _put_u32(out, 0, end - 8), IDAT)
    return _chunk_crc(out, np.int64(4), end, crc_tables), adler


def png_head(height: int, width: int, palette: bytes | None) -> bytes:
    """The signature, IHDR (8-bit palette image) and PLTE chunks that start a palette PNG; with
    ``palette=None``, the signature and IHDR of an 8-bit RGB image."""
    if palette is None:
        return PNG_SIGNATURE + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return PNG_SIGNATURE + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)) + _png_chunk(b"PLTE", palette)


def idat_band(image: np.ndarray, first: int, *, zlib_header: bool) -> tuple[memoryview, int]:
    """Rows ``first``.. of a (h, w) uint8 index image, as one IDAT chunk of a palette PNG written
    band by band (:func:`_idat_band`; row ``first - 1`` is only their upper neighbour for the
    filter); returns the chunk and the Adler-32 of its uncompressed bytes (``(h - first) * (w + 1)``).
    Bands encoded apart (e.g. on several threads) are written one after the other between
    :func:`png_head` and :func:`png_end`."""
    image = _read_only(np.ascontiguousarray(image, np.uint8))
    symbols = (image.shape[0] - first) * (image.shape[1] + 1) + 1
    out = np.empty(8 + 2 + DEFLATE_HEADER_BOUND + (MAX_CODE_BITS * symbols + 7) // 8 + 5 + 4, np.uint8)
    size, adler = _idat_band(image, first, zlib_header, CRC_TABLES, out)
    return memoryview(out)[:size], int(adler)


#: The zlib stream's end after blocks that each end on a byte: an empty final block of the fixed code.
FINAL_EMPTY_BLOCK = b"\x03\x00"


def png_end(adler: int) -> bytes:
    """What ends a PNG written with :func:`idat_band`: the last IDAT (an empty final deflate block
    and the Adler-32 of all the scanlines) and IEND."""
    return _png_chunk(b"IDAT", FINAL_EMPTY_BLOCK + struct.pack(">I", adler)) + _png_chunk(b"IEND", b"")


def palette_pngs(indices: np.ndarray, palette: bytes) -> list[memoryview]:
    """(n, h, w) uint8 index images as n 8-bit palette PNG files (``palette``: RGB bytes).

    Our own encoder: Paeth-filtered rows in one deflate block coded with a Huffman code made
    for the image (no LZ77 matching). On ResNet-50 layer4 channels at 8x it takes half of
    zlib level 1's CPU time on the Up-filtered rows, for ~15% larger files (3.9 against
    3.4 kB with the 780-byte palette). numba, without the GIL: the writer threads run in parallel.
    """
    indices = np.ascontiguousarray(indices, np.uint8)
    return _png_files_of(indices, 1, png_head(*indices.shape[1:], palette))


def rgb_png(image: np.ndarray) -> memoryview:
    """An (h, w, 3) uint8 image as an 8-bit RGB PNG, by the encoder of :func:`palette_pngs`: a
    third of Pillow's CPU time at zlib level 1 (on the overlays and sheets drawn here) for larger files."""
    image = np.ascontiguousarray(image, np.uint8)
    height, width, _ = image.shape
    return _png_files_of(image.reshape(1, height, width * 3), 3, png_head(height, width, None))[0]


def write_rgb(path: Path, image: np.ndarray) -> None:
    """Write an (h, w, 3) uint8 image as an RGB PNG (:func:`rgb_png`)."""
    write_file(path, rgb_png(image))


def _read_only(images: np.ndarray) -> np.ndarray:
    """A read-only view, as both encoders pass their images: numba compiles a kernel (and the
    helpers it shares with the other encoder) once per writability, 6 s more on a first run."""
    view = images.view()
    view.flags.writeable = False
    return view


def _png_files_of(images: np.ndarray, pixel_bytes: int, head: bytes) -> list[memoryview]:
    """(n, h, row bytes) uint8 images as n PNG files that start with ``head`` (:func:`_png_files`)."""
    count, height, row_bytes = images.shape
    images = _read_only(images)
    tail = _png_chunk(b"IEND", b"")
    symbols = height * (row_bytes + 1) + 1
    bound = len(head) + 12 + 2 + DEFLATE_HEADER_BOUND + (MAX_CODE_BITS * symbols + 7) // 8 + 8 + 4 + len(tail)
    out = np.empty((count, bound), np.uint8)
    sizes = np.empty(count, np.int64)
    _png_files(images, pixel_bytes, np.frombuffer(head, np.uint8), np.frombuffer(tail, np.uint8), CRC_TABLES, out, sizes)
    return [memoryview(file)[:size] for file, size in zip(out, sizes)]


def palette_png(indices: np.ndarray, palette: bytes) -> bytes:
    """One (h, w) uint8 index image as an 8-bit palette PNG (:func:`palette_pngs`)."""
    return bytes(palette_pngs(indices[None], palette)[0])


def write_indexed(path: Path, indices: np.ndarray, lut: np.ndarray) -> None:
    """Write a 2-D index image: an 8-bit palette PNG, or an RGB JPEG for ``.jpg`` paths."""
    from PIL import Image

    if path.suffix == ".png":
        write_file(path, palette_png(indices, lut.tobytes()))
    elif path.suffix not in (".jpg", ".jpeg"):
        raise ValueError(f"channel images are .png or .jpg files, not {path.suffix!r}")
    else:
        encoded = io.BytesIO()
        # 4:4:4: chroma subsampling would smear the colormap's hues across channel edges.
        Image.fromarray(lut[indices], "RGB").save(encoded, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
        write_file(path, encoded.getbuffer())


def write_map(path: Path, values: np.ndarray, lut: np.ndarray, lo: float | None = None, hi: float | None = None) -> tuple[float, float]:
    """Write one 2-D map normalised to ``lo``..``hi`` (default: its own range); returns the range."""
    lo = float(values.min()) if lo is None else lo
    hi = float(values.max()) if hi is None else hi
    write_indexed(path, palette_indices(values, lo, hi), lut)
    return lo, hi


def warm_up_in_background() -> threading.Thread:
    """Load fastinterp's and this module's compiled kernels (numba's cache) on a background thread.

    Loading takes a second or two of mostly single-threaded work; started before the model is
    built, it overlaps with the model's construction and forward pass instead of delaying
    the first channel. The first real call waits for it (numba's compiler lock).
    """

    def load() -> None:
        # Not a factor 2, which takes other kernels (fastinterp._cpu_fixed) than the run's
        # maps do: compiling those cost a first run 13 s.
        upsampled = upsample(np.zeros((2, 2, 2), np.float32), (5, 5))
        upsample(np.zeros((2, 2), np.float64), (5, 5))
        indices = quantize_planes(upsampled, np.empty(2, np.float32), np.empty(2, np.float32), upsampled[0].copy(), own_range=True)
        palette_pngs(indices, bytes(3 * LUT_SIZE))
        idat_band(indices[0], 0, zlib_header=True)
        lut = np.zeros((LUT_SIZE, 3), np.uint8)
        rgb_png(overlay(np.zeros((2, 2, 3), np.uint8), upsampled[0], lut, 0.5))
        _coloured(upsampled[0], lut, 0.0, 1.0, 1)

    thread = threading.Thread(target=load, name="fastinterp-warm-up", daemon=True)
    thread.start()
    return thread


def upsample(maps: np.ndarray, size: tuple[int, int], device: str | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Bilinear upsampling (``fastinterp.resize``, align center) of a (C, h, w) or (h, w) array,
    on the GPU when ``device`` names one (the result comes back to the host), else into ``out``
    when given (a reused buffer: fresh megabytes cost page faults)."""
    if device is not None:
        return fastinterp.resize(maps, size=size, channels_first=True, device=device)
    return fastinterp.resize(maps, size=size, channels_first=True, out=out)


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel statistics of the raw (not upsampled) feature maps, float64."""

    mean: np.ndarray
    min: np.ndarray
    max: np.ndarray
    energy: np.ndarray  # mean of squares

    @classmethod
    def of(cls, features: np.ndarray) -> ChannelStats:
        flat = features.reshape(features.shape[0], -1).astype(np.float64)
        return cls(flat.mean(1), flat.min(1), flat.max(1), np.square(flat).mean(1))

    def top(self, rank_by: str, k: int) -> np.ndarray:
        """Indices of the ``k`` highest-ranked channels, best first (ties: lower index first)."""
        score = getattr(self, rank_by)
        return np.argsort(-score, kind="stable")[:k]


def _chunk_ranges(upsampled: np.ndarray, options: RenderOptions, layer_range: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray]:
    """Each plane's lo, hi (float32): to be filled by :func:`quantize_planes` for ``channel``."""
    count = upsampled.shape[0]
    if options.norm == "layer":
        assert layer_range is not None
        lo, hi = np.full(count, layer_range[0]), np.full(count, layer_range[1])
    elif options.norm == "percentile":
        lo, hi = np.percentile(upsampled.reshape(count, -1), [options.clip, 100 - options.clip], axis=1)
    else:
        return np.empty(count, np.float32), np.empty(count, np.float32)
    return lo.astype(np.float32), hi.astype(np.float32)


def channels_per_chunk(size: tuple[int, int], chunk_mb: float) -> int:
    """How many upsampled channels fit the memory budget at once (at least one)."""
    return max(1, int(chunk_mb * 2**20 // (BYTES_PER_CHUNK_PIXEL * size[0] * size[1])))


@dataclass
class Panel:
    """One image of a figure; NaN pixels are drawn as background."""

    title: str
    image: np.ndarray
    labels: Sequence[tuple[float, float, str]] = ()


@dataclass
class PanelGroup:
    """Panels sharing one colour scale and one colorbar."""

    panels: Sequence[Panel]
    cmap: str
    lo: float
    hi: float
    colorbar_label: str


#: Panels smaller than this (in pixels, height) are enlarged by an integer factor (nearest).
MIN_PANEL_PX = 256
#: Contact-sheet tiles: the longest side of a tile; the channel files hold the detail.
SHEET_TILE_MAX_PX = 128
MARGIN_PX = 10
GAP_PX = 8
COLORBAR_WIDTH_PX = 16
BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)


def sheet_tile_size(size: tuple[int, int]) -> tuple[int, int]:
    """The channel image size shrunk (never enlarged) so its longest side fits a sheet tile."""
    shrink = min(1.0, SHEET_TILE_MAX_PX / max(size))
    return max(1, round(size[0] * shrink)), max(1, round(size[1] * shrink))


def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _coloured(image: np.ndarray, lut: np.ndarray, lo: float, hi: float, zoom: int) -> Any:
    """An RGB ``PIL.Image`` of a 2-D map on lo..hi (NaN as background), enlarged ``zoom`` times."""
    from PIL import Image

    low = np.float32(lo)
    span = np.float32(hi) - low
    rgb = np.empty((*image.shape, 3), np.uint8)
    _colour_rows(np.ascontiguousarray(image, np.float32), low, span if span > 0 else np.float32(np.inf), lut,
                 np.array(BACKGROUND, np.uint8), rgb)
    drawn = Image.fromarray(rgb)
    return drawn.resize((image.shape[1] * zoom, image.shape[0] * zoom), resample=Image.Resampling.NEAREST) if zoom > 1 else drawn


@njit(cache=True, nogil=True)
def _colour_rows(image, low, span, lut, background, out):  # pragma: no cover - compiled
    """``out`` (h, w, 3): the colour of each value of the (h, w) float32 ``image`` as
    :func:`palette_indices` gives it (:func:`_quantize_row`), ``background`` where it is NaN."""
    indices = np.empty(image.shape[1], np.uint8)
    for y in range(image.shape[0]):
        _quantize_row(image[y], low, span, indices)
        for x in range(image.shape[1]):
            colour = background if image[y, x] != image[y, x] else lut[indices[x]]
            for channel in range(3):
                out[y, x, channel] = colour[channel]


def _colorbar(lut: np.ndarray, lo: float, hi: float, height: int, label: str) -> Any:
    """A vertical colorbar with ticks at round values of the real range lo..hi, and its label."""
    from matplotlib.ticker import MaxNLocator
    from PIL import Image, ImageDraw

    font = _font(11)
    ticks = [t for t in MaxNLocator(nbins=6).tick_values(lo, hi) if lo <= t <= hi] if hi > lo else [lo]
    texts = [f"{t:.4g}" for t in ticks]
    text_width = max(int(font.getlength(text)) for text in texts)
    label_image = Image.new("L", (int(font.getlength(label)) + 2, 14), 0)
    ImageDraw.Draw(label_image).text((1, 0), label, fill=255, font=font)
    label_image = label_image.rotate(90, expand=True)
    bar = Image.new("RGB", (COLORBAR_WIDTH_PX + 6 + text_width + 6 + label_image.width, height + 12), BACKGROUND)
    gradient = lut[np.linspace(LUT_SIZE - 1, 0, height).round().astype(np.intp)]
    bar.paste(Image.fromarray(np.ascontiguousarray(np.repeat(gradient[:, None], COLORBAR_WIDTH_PX, axis=1))), (0, 6))
    draw = ImageDraw.Draw(bar)
    draw.rectangle((0, 6, COLORBAR_WIDTH_PX - 1, 6 + height - 1), outline=INK)
    for tick, text in zip(ticks, texts):
        y = 6 + (height - 1) * (1.0 - ((tick - lo) / (hi - lo) if hi > lo else 0.0))
        draw.line((COLORBAR_WIDTH_PX, y, COLORBAR_WIDTH_PX + 3, y), fill=INK)
        draw.text((COLORBAR_WIDTH_PX + 6, y), text, fill=INK, font=font, anchor="lm")
    top = 6 + max(0, (height - label_image.height) // 2)
    bar.paste(Image.new("RGB", label_image.size, INK), (bar.width - label_image.width, top), label_image)
    return bar


def save_figure(path: Path, title: str, groups: Sequence[PanelGroup]) -> None:
    """Draw panel groups side by side, each group with a colorbar of its real value range.

    Drawn with Pillow (matplotlib only supplies colour tables and tick positions): panels are
    shown pixel for pixel, enlarged by a whole factor when small, with NaN as background.
    """
    from PIL import Image, ImageDraw

    panels = [panel for group in groups for panel in group.panels]
    zoom = max(1, -(-MIN_PANEL_PX // max(panel.image.shape[0] for panel in panels)))
    height = max(panel.image.shape[0] for panel in panels) * zoom
    title_font, panel_font, label_font = _font(14), _font(13), _font(max(9, min(12, 3 * zoom + 6)))
    title_lines = title.splitlines()
    panel_title_height = 20 if any(panel.title for panel in panels) else 0
    top = MARGIN_PX + 18 * len(title_lines) + (6 if title_lines else 0) + panel_title_height
    pieces: list[tuple[Any, int, str, Panel | None]] = []  # image, x, title, panel (None: colorbar)
    x = MARGIN_PX
    for group in groups:
        lut = colormap_lut(group.cmap)
        for panel in group.panels:
            drawn = _coloured(panel.image, lut, group.lo, group.hi, zoom)
            pieces.append((drawn, x, panel.title, panel))
            x += drawn.width + GAP_PX
        bar = _colorbar(lut, group.lo, group.hi, height, group.colorbar_label)
        pieces.append((bar, x, "", None))
        x += bar.width + 2 * GAP_PX
    canvas = Image.new("RGB", (x - 2 * GAP_PX + MARGIN_PX, top + height + 6 + MARGIN_PX), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for line_number, line in enumerate(title_lines):
        draw.text((canvas.width / 2, MARGIN_PX + 18 * line_number), line, fill=INK, font=title_font, anchor="ma")
    for image, left, panel_title, panel in pieces:
        canvas.paste(image, (left, top - (6 if panel is None else 0)))
        if panel_title:
            draw.text((left + image.width / 2, top - 4), panel_title, fill=INK, font=panel_font, anchor="md")
        for label_x, label_y, text in panel.labels if panel is not None else ():
            draw.text((left + label_x * zoom, top + label_y * zoom), text, fill="white", font=label_font,
                      stroke_width=1, stroke_fill="black")
    write_rgb(path, np.asarray(canvas))


def mosaic(maps: np.ndarray, labels: Sequence[str]) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """Tile (k, h, w) maps in a near-square grid with NaN gaps; returns it and label positions."""
    count, height, width = maps.shape
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    gap = max(2, height // 16)
    canvas = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap), np.nan, np.float32)
    placed = []
    for n, (tile, label) in enumerate(zip(maps, labels)):
        y, x = (n // columns) * (height + gap), (n % columns) * (width + gap)
        canvas[y : y + height, x : x + width] = tile
        placed.append((x + 1.5, y + 1.5, label))
    return canvas, placed


def overlay(image: np.ndarray, summary: np.ndarray, lut: np.ndarray, alpha: float) -> np.ndarray:
    """Alpha-blend a colour-mapped 2-D map (upsampled to the image) over an (H, W, 3) uint8 image:
    ``rint((1 - alpha) * image + alpha * colour)`` in float32."""
    resized = upsample(summary, image.shape[:2])
    blended = np.empty(image.shape, np.uint8)
    _blend(np.ascontiguousarray(image, np.uint8), palette_indices(resized, resized.min(), resized.max()), lut,
           np.float32(1.0 - alpha), np.float32(alpha), blended)
    return blended


@njit(cache=True, nogil=True)
def _blend(image, indices, lut, keep, alpha, out):  # pragma: no cover - compiled
    """``out = rint(keep * image + alpha * lut[indices])`` clipped to 0..255, each pixel in float32
    as numpy computes it (one pass instead of numpy's eight over float copies of the image)."""
    for y in range(image.shape[0]):
        for x in range(image.shape[1]):
            colour = lut[indices[y, x]]
            for channel in range(3):
                value = np.rint(keep * np.float32(image[y, x, channel]) + alpha * np.float32(colour[channel]))
                out[y, x, channel] = np.uint8(min(max(value, np.float32(0)), np.float32(255)))


def manifest_json(manifest: dict[str, Any]) -> str:
    """A manifest as JSON text: each top-level entry on a line of its own, each written compactly.
    ``json.dumps(indent=...)`` takes the pure-Python encoder: 50 ms for the 12,000 numbers of a
    2048-channel layer, against about 5 ms here."""
    lines = [f" {json.dumps(key)}: {json.dumps(value)}" for key, value in manifest.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def rounded(values: np.ndarray) -> list[float]:
    """Numbers for a manifest: each value to 7 significant digits (float32's precision)."""
    return [float(f"{v:.7g}") for v in np.asarray(values, np.float64).tolist()]  # Python floats: 2x faster than numpy's


def write_batch(paths: Sequence[Path], indices: np.ndarray, lut: np.ndarray, progress: Callable[[int], None] | None) -> None:
    """One writer task: the (n, h, w) index images to their n files (a few, so the pool's
    per-task overhead stays small); then ``progress(n)``."""
    assert len(paths) == len(indices), "one file per channel"
    if paths and paths[0].suffix == ".png":
        for path, data in zip(paths, palette_pngs(indices, lut.tobytes())):
            write_file(path, data)
    else:
        for path, channel in zip(paths, indices):
            write_indexed(path, channel, lut)
    if progress is not None:
        progress(len(paths))


def finish(futures: Sequence[Future[None]]) -> None:
    """Wait for the writer tasks, raising the first error."""
    for future in futures:
        future.result()


@dataclass(frozen=True)
class Atlas:
    """Where the channel images of a layer lie as tiles of a few 8-bit palette PNG pages.

    Channel ``c`` is tile ``k = c % per_page`` of page ``pages[c // per_page]``, in row-major
    order: its pixels are rows ``(k // columns) * h`` .. ``+ h`` and columns ``(k % columns) * w``
    .. ``+ w`` of the page, ``(h, w) = tile``, exactly the palette indices a file of its own
    would hold. Pages hold ``per_page`` tiles (the last one the rest) in ``columns`` columns;
    the unused end of a page's last row is index 0. One page is ``<stem>.png``; more are
    ``<stem>-000.png``, ``<stem>-001.png``, ...: creating thousands of small files costs far
    more than encoding them on this kind of machine (0.04-1.3 ms of system time per file).
    """

    stem: str
    count: int
    tile: tuple[int, int]
    columns: int
    per_page: int

    @classmethod
    def plan(cls, stem: str, count: int, tile: tuple[int, int], page_pixels: int, max_columns: int) -> Atlas:
        """Pages of at most ``page_pixels`` pixels (at least one tile each), nearly square, with at
        most ``max_columns`` tiles in a row (a row of tiles is encoded at once: the chunk budget)."""
        tile_pixels = tile[0] * tile[1]
        capacity = count if count * tile_pixels <= page_pixels else max(1, page_pixels // tile_pixels)
        # square: columns * w == rows * h with rows = capacity / columns
        columns = max(1, min(capacity, max_columns, math.ceil(math.sqrt(capacity * tile[0] / tile[1]))))
        per_page = count if capacity == count else capacity // columns * columns  # later pages start on a row
        return cls(stem, count, (int(tile[0]), int(tile[1])), columns, per_page)

    @property
    def pages(self) -> list[str]:
        """The page files, in order."""
        number = -(-self.count // self.per_page)
        digits = max(3, len(str(number - 1)))
        return [f"{self.stem}.png"] if number == 1 else [f"{self.stem}-{p:0{digits}d}.png" for p in range(number)]

    def page_shape(self, page: int) -> tuple[int, int]:
        """(height, width) of page ``page`` in pixels."""
        tiles = min(self.per_page, self.count - page * self.per_page)
        return -(-tiles // self.columns) * self.tile[0], self.columns * self.tile[1]

    def box(self, channel: int) -> tuple[int, int, int, int]:
        """Channel ``channel``'s tile on its page as Pillow's (left, top, right, bottom)."""
        if not 0 <= channel < self.count:
            raise VizError(f"channel {channel} is not one of the {self.count} channels")
        k = channel % self.per_page
        top, left = (k // self.columns) * self.tile[0], (k % self.columns) * self.tile[1]
        return left, top, left + self.tile[1], top + self.tile[0]

    def entry(self) -> dict[str, Any]:
        """The manifest's description (see docs/viz.md)."""
        return {"pages": self.pages, "tile": list(self.tile), "columns": self.columns, "per_page": self.per_page, "count": self.count}

    @classmethod
    def from_entry(cls, entry: Any) -> Atlas:
        """An atlas from a manifest's description; a :class:`VizError` if it is not one this module writes."""
        try:
            pages = [str(page) for page in entry["pages"]]
            stem = pages[0][: -len(".png")] if len(pages) == 1 else pages[0].rsplit("-", 1)[0]
            numbers = [entry["count"], *entry["tile"], entry["columns"], entry["per_page"]]
            # JSON integers only: a float (Infinity too), string or bool is no count a writer wrote
            consistent = len(numbers) == 5 and all(type(n) is int and n >= 1 for n in numbers)
            if consistent:
                atlas = cls(stem, numbers[0], (numbers[1], numbers[2]), numbers[3], numbers[4])
                # as plan() lays pages out; the page count is checked before the names are built
                consistent = (atlas.columns <= atlas.per_page <= atlas.count and -(-atlas.count // atlas.per_page) == len(pages)
                              and max(atlas.page_shape(0)) <= PNG_MAX_SIDE and atlas.pages == pages and stem.replace("_", "").isalnum() and stem.isascii())
        except (KeyError, IndexError, TypeError, ValueError):
            consistent = False
        if not consistent:
            raise VizError(f"not an atlas description: {str(entry)[:200]}")
        return atlas


def load_channel(directory: Path | str, channels: dict[str, Any], channel: int, which: str = "") -> Any:
    """Channel ``channel``'s image as a ``PIL.Image`` (palette mode for PNG), from a job folder and its
    manifest's ``channels`` entry: a crop of its atlas page (``atlas``), or its own file (``files``,
    written with ``channel_files``). ``which``: ``""`` for a one-image job; ``"a"``, ``"b"`` or
    ``"diff"`` for a compare's channels of A, of B and of A - B."""
    from PIL import Image

    suffix = f"_{which}" if which else ""
    if f"atlas{suffix}" in channels:
        atlas = Atlas.from_entry(channels[f"atlas{suffix}"])
        box = atlas.box(channel)
        page = atlas.pages[channel // atlas.per_page]
        with Image.open(inside(directory, page)) as image:
            height, width = atlas.page_shape(channel // atlas.per_page)
            if image.size != (width, height):  # Pillow would crop past the edge: a tile padded with 0
                raise VizError(f"{page} is a {image.height} x {image.width} image, not the {height} x {width} page of its atlas")
            return image.crop(box)
    files = channels.get(f"files{suffix}")
    if not isinstance(files, list):
        raise VizError(f"the manifest's channels have neither 'atlas{suffix}' nor 'files{suffix}'")
    if not 0 <= channel < len(files):
        raise VizError(f"channel {channel} is not one of the {len(files)} channels")
    with Image.open(inside(directory, files[channel])) as image:
        image.load()
        return image


class ChannelFiles:
    """Writes a layer's channel images one file each, ``<folder>/NNNN.<format>``, on the writer pool."""

    def __init__(self, target: Path, folder: str, count: int, size: tuple[int, int], image_format: str, lut: np.ndarray,
                 pool: ThreadPoolExecutor) -> None:
        digits = max(4, len(str(count - 1)))
        self.names = [f"{folder}/{i:0{digits}d}.{image_format}" for i in range(count)]
        (target / folder).mkdir()
        self.target, self.size, self.lut, self.pool = target, size, lut, pool
        self._tiles = np.empty((0, size[0], 1, size[1]), np.uint8)
        self._writing: list[Future[None]] = []

    def step(self, channels: int) -> int:
        """Channels per chunk for a budget of ``channels``."""
        return channels

    def chunks(self, step: int) -> list[tuple[int, int]]:
        return [(start, min(start + step, len(self.names))) for start in range(0, len(self.names), step)]

    def tiles(self, start: int, end: int) -> np.ndarray:
        """Where channels ``start``..``end`` are to be quantised (:func:`quantize_planes`' ``out``),
        one image each: a new (n, h, 1, w) array, written by :meth:`submit_tiles`."""
        self._tiles = np.empty((end - start, *self.size[:1], 1, *self.size[1:]), np.uint8)
        return self._tiles

    def submit_tiles(self, start: int, progress: Callable[[int], None] | None) -> None:
        """Write what was quantised into :meth:`tiles` (after :meth:`drain`)."""
        self.submit(start, self._tiles[:, :, 0], progress)

    def submit(self, start: int, indices: np.ndarray, progress: Callable[[int], None] | None) -> None:
        """Write the (n, h, w) index images of channels ``start``.. (after :meth:`drain`)."""
        end = start + len(indices)
        # each task's files end with the chunk, so progress counts exactly the channels written
        self._writing = [
            self.pool.submit(write_batch, [self.target / f for f in self.names[first : min(first + WRITE_BATCH, end)]],
                             indices[first - start : first - start + WRITE_BATCH], self.lut, progress)
            for first in range(start, end, WRITE_BATCH)
        ]

    def drain(self) -> None:
        """Wait until the submitted images are written."""
        finish(self._writing)

    def close(self) -> None:
        self.drain()

    def release(self) -> None:
        """Nothing to release: files are closed as they are written."""

    @property
    def files(self) -> list[str]:
        return self.names

    def entry(self) -> dict[str, Any]:
        return {"files": self.names}


class AtlasPages:
    """Writes a layer's channel images as the tiles of :class:`Atlas` pages, a chunk at a time:
    each chunk (whole rows of tiles of one page) is tiled into bands, the bands are encoded on the
    writer pool (:func:`idat_band`) and written in order to the page's file by :meth:`drain`."""

    def __init__(self, target: Path, atlas: Atlas, lut: np.ndarray, pool: ThreadPoolExecutor) -> None:
        self.target, self.atlas, self.pool = target, atlas, pool
        self.palette = lut.tobytes()
        self._pending: list[tuple[int, Future[tuple[memoryview, int]], int]] = []  # page, band, scanline bytes
        self._above: np.ndarray | None = None  # the last pixel row tiled so far on the current page
        self._page, self._descriptor, self._adler = -1, -1, 1
        self._chunk, self._first, self._count = np.empty((1, 0), np.uint8), 0, 0  # the rows of tiles being filled (:meth:`tiles`)

    def step(self, channels: int) -> int:
        """Channels per chunk for a budget of ``channels``: whole rows of tiles."""
        return max(1, channels // self.atlas.columns) * self.atlas.columns

    def chunks(self, step: int) -> list[tuple[int, int]]:
        """(first, end) channels of each chunk: whole rows of tiles, never across two pages."""
        atlas = self.atlas
        return [(start, min(start + step, page_start + atlas.per_page, atlas.count))
                for page_start in range(0, atlas.count, atlas.per_page)
                for start in range(page_start, min(page_start + atlas.per_page, atlas.count), step)]

    def tiles(self, start: int, end: int) -> np.ndarray:
        """Where channels ``start``..``end`` (a chunk of :meth:`chunks`) are to be quantised
        (:func:`quantize_planes`' ``out``): their rows of tiles on the page, a (rows, h, columns, w)
        view of a new image whose row 0 is the pixel row above them (the filter's upper neighbour);
        the unused end of a last row is 0. Encoded by :meth:`submit_tiles`."""
        (height, width), columns = self.atlas.tile, self.atlas.columns
        rows = -(-(end - start) // columns)
        self._chunk, self._first, self._count = np.empty((1 + rows * height, columns * width), np.uint8), start, end - start
        grid = self._chunk[1:].reshape(rows, height, columns, width)
        if (end - start) % columns:
            grid[-1, :, (end - start) % columns :] = 0
        if start % self.atlas.per_page:
            self._chunk[0] = self._above
        return grid

    def submit_tiles(self, start: int, progress: Callable[[int], None] | None) -> None:
        """Encode the rows of tiles filled through :meth:`tiles` in bands on the writer pool (after :meth:`drain`)."""
        assert start == self._first, "the chunk of the last tiles() call"
        atlas, chunk, count, (height, width) = self.atlas, self._chunk, self._count, self.atlas.tile
        page, columns = start // atlas.per_page, atlas.columns
        band_rows = max(1, BAND_PIXELS // (columns * width * height))
        for first in range(0, count, band_rows * columns):
            at_top = (start + first) % atlas.per_page == 0
            top = 1 + first // columns * height  # the band's first pixel row in the chunk
            rows = -(-min(band_rows * columns, count - first) // columns)
            band = chunk[top - (not at_top) : top + rows * height]
            self._pending.append((page, self.pool.submit(self._encode, band, int(not at_top), at_top,
                                                         min(band_rows * columns, count - first), progress),
                                  rows * height * (columns * width + 1)))
        self._above = chunk[-1]

    def submit(self, start: int, indices: np.ndarray, progress: Callable[[int], None] | None) -> None:
        """Tile and encode the (n, h, w) index images of channels ``start``.. (a chunk of :meth:`chunks`)."""
        grid = self.tiles(start, start + len(indices))
        columns, whole = self.atlas.columns, len(indices) // self.atlas.columns
        grid[:whole] = indices[: whole * columns].reshape(whole, columns, *self.atlas.tile).transpose(0, 2, 1, 3)
        if len(indices) % columns:
            grid[whole, :, : len(indices) % columns] = indices[whole * columns :].transpose(1, 0, 2)
        self.submit_tiles(start, progress)

    @staticmethod
    def _encode(band: np.ndarray, first: int, zlib_header: bool, count: int, progress: Callable[[int], None] | None) -> tuple[memoryview, int]:
        encoded = idat_band(band, first, zlib_header=zlib_header)
        if progress is not None:
            progress(count)
        return encoded

    def drain(self) -> None:
        """Write the encoded bands in order, opening and ending pages as they come."""
        pending, self._pending = self._pending, []
        for page, band, length in pending:
            data, adler = band.result()
            if page != self._page:
                self._end_page()
                self._page = page
                self._descriptor = open_for_writing(self.target / self.atlas.pages[page])
                height, width = self.atlas.page_shape(page)
                write_all(self._descriptor, png_head(height, width, self.palette))
                self._adler = 1
            write_all(self._descriptor, data)
            self._adler = adler32_combine(self._adler, adler, length)

    def _end_page(self) -> None:
        if self._descriptor >= 0:
            try:
                write_all(self._descriptor, png_end(self._adler))
            finally:
                self.release()

    def close(self) -> None:
        """Write what is left and end the last page."""
        self.drain()
        self._end_page()

    def release(self) -> None:
        """Close the open page (after an error: it is left incomplete)."""
        if self._descriptor >= 0:
            descriptor, self._descriptor = self._descriptor, -1
            os.close(descriptor)

    @property
    def files(self) -> list[str]:
        return self.atlas.pages

    def entry(self) -> dict[str, Any]:
        return {"atlas": self.atlas.entry()}


def channel_writer(
    target: Path, name: str, count: int, size: tuple[int, int], options: RenderOptions, lut: np.ndarray,
    pool: ThreadPoolExecutor, chunk_channels: int,
) -> ChannelFiles | AtlasPages:
    """The writer of a layer's ``count`` channel images of ``size`` into ``target``: files in the folder
    ``name`` (``options.loose_channels``), else the pages ``name.png`` or ``name-000.png``, ...
    ``chunk_channels``: the channels the chunk budget holds (a row of tiles is no longer)."""
    if options.loose_channels:
        return ChannelFiles(target, name, count, size, options.image_format, lut, pool)
    return AtlasPages(target, Atlas.plan(name, count, size, options.page_pixels, chunk_channels), lut, pool)


def _write_summaries(
    features: np.ndarray, max_map: np.ndarray, size: tuple[int, int], target: Path, options: RenderOptions, lut: np.ndarray
) -> tuple[dict[str, dict[str, Any]], np.ndarray]:
    """The channel sum (upsampled from the exact float64 sum), mean and max maps, each on its own range."""
    sum_map = upsample(features.sum(axis=0, dtype=np.float64), size)
    summaries = {"sum": sum_map, "mean": sum_map / len(features), "max": max_map}
    info = {}
    for name, values in summaries.items():
        file = f"{name}.{options.image_format}"
        lo, hi = write_map(target / file, values, lut)
        info[name] = {"file": file, "min": lo, "max": hi}
    return info, sum_map


def _write_sheet(
    maps: np.ndarray, ranked: np.ndarray, count: int, size: tuple[int, int], path: Path, options: RenderOptions,
    context: dict[str, Any],
) -> tuple[float, float]:
    """The top-k contact sheet on one shared scale (the real range of its tiles); returns that range."""
    tiles = upsample(maps, sheet_tile_size(size))
    sheet_range = (float(tiles.min()), float(tiles.max()))
    canvas, labels = mosaic(tiles, [f"#{i}" for i in ranked])
    title = " ".join(str(context[key]) for key in ("model", "layer") if context.get(key))
    save_figure(
        path,
        f"{title}: top {len(ranked)} of {count} channels by {options.rank_by}".strip(": "),
        [PanelGroup([Panel("", canvas, labels)], options.cmap, *sheet_range, "activation")],
    )
    return sheet_range


def render_layer(
    features: np.ndarray,
    target: Path,
    options: RenderOptions,
    *,
    image: np.ndarray | None = None,
    context: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
    extra: dict[str, Any] | None = None,
    extra_files: Sequence[str] = (),
) -> dict[str, Any]:
    """Write every channel, the sum/mean/max maps, the top-k sheet, the overlay and
    ``manifest.json`` for one layer's (C, h, w) feature maps into the existing ``target``.

    The channels are the tiles of the pages ``channels.png`` (or ``channels-000.png``, ...;
    :class:`Atlas`, the manifest's ``channels.atlas``), or with ``options.channel_files`` (and
    for JPEG) the files ``channels/NNNN.<format>`` (``channels.files``); :func:`load_channel`
    reads one back from either.

    ``image`` is the (H, W, 3) uint8 input as the network saw it (for the overlay and for
    ``scale=None``); ``context`` (model, weights, layer, image, ...) goes into the manifest;
    ``progress(n)`` is called as channels are written (n channels each time, C in all).
    ``extra`` (e.g. the Grad-CAM entry) is merged into the manifest and ``extra_files``, files
    the caller wrote into ``target``, are listed with the others. Returns the manifest.
    """
    features = np.ascontiguousarray(features, dtype=np.float32)
    if features.ndim != 3:
        raise VizError(f"expected (C, h, w) feature maps, got shape {features.shape}")
    count = features.shape[0]
    size = options.output_size(features.shape[1:], None if image is None else image.shape[:2])
    lut = colormap_lut(options.cmap)
    stats = ChannelStats.of(features)
    budget = channels_per_chunk(size, options.chunk_mb)
    pool = ThreadPoolExecutor(options.threads)
    writer = channel_writer(target, "channels", count, size, options, lut, pool, budget)
    chunks = writer.chunks(writer.step(budget))
    buffer = np.empty((max(end - start for start, end in chunks), *size), np.float32)

    def upsampled() -> Any:
        for start, end in chunks:
            yield start, upsample(features[start:end], size, options.resize_device, buffer[: end - start])

    try:
        layer_range = None
        if options.norm == "layer":  # a first pass for the range keeps memory bounded
            extremes = np.array([(up.min(), up.max()) for _, up in upsampled()])
            # numpy's min, not Python's: a NaN in any chunk gives NaN, as in one chunk (Python's skips it after the first)
            layer_range = (extremes[:, 0].min(), extremes[:, 1].max())
        scales = np.empty((count, 2), np.float64)
        max_map = np.full(size, -np.inf, np.float32)
        for start, up in upsampled():
            lo, hi = _chunk_ranges(up, options, layer_range)
            # straight into the page's layout: no copy of the indices to tile them
            quantize_planes(up, lo, hi, max_map, own_range=options.norm == "channel", out=writer.tiles(start, start + len(up)))
            scales[start : start + len(up)] = np.stack([lo, hi], axis=1)
            writer.drain()  # at most one chunk is being written while the next one is computed
            writer.submit_tiles(start, progress)
        # The summaries, the sheet and the overlay are drawn while the last chunk is written.
        summary_info, sum_map = _write_summaries(features, max_map, size, target, options, lut)
        top = min(options.top_k, count)
        ranked = stats.top(options.rank_by, top)
        sheet_range = _write_sheet(features[ranked], ranked, count, size, target / "sheet.png", options, context or {})
        files = [*writer.files, *(info["file"] for info in summary_info.values()), "sheet.png"]
        overlay_info = None
        if image is not None:
            write_rgb(target / "overlay.png", overlay(image, sum_map, lut, options.alpha))
            overlay_info = {"file": "overlay.png", "of": "sum", "alpha": options.alpha, "size": list(image.shape[:2])}
            files.append("overlay.png")
        files += [*extra_files, "manifest.json"]
        writer.close()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        writer.release()

    manifest = {
        **(context or {}),
        "feature_shape": list(features.shape),
        "image_size": list(size),
        "upsampling": {"method": "fastinterp.resize bilinear, align=center", "scale": options.scale},
        "normalisation": {"mode": options.norm, "clip_percent": options.clip if options.norm == "percentile" else None},
        "colormap": options.cmap,
        "value_range": {"min": float(stats.min.min()), "max": float(stats.max.max())},
        "summaries": summary_info,
        "sheet": {"file": "sheet.png", "rank_by": options.rank_by, "channels": ranked.tolist(), "range": list(sheet_range)},
        "overlay": overlay_info,
        "channels": {
            **writer.entry(),
            "mean": rounded(stats.mean),
            "min": rounded(stats.min),
            "max": rounded(stats.max),
            "energy": rounded(stats.energy),
            "scale_lo": rounded(scales[:, 0]),
            "scale_hi": rounded(scales[:, 1]),
        },
        **(extra or {}),
        "files": files,
    }
    write_file(target / "manifest.json", manifest_json(manifest).encode())
    return manifest

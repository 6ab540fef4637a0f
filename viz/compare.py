"""Two models (or two checkpoints) on the same image and layer, on one shared colour scale."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .errors import VizError
from .paths import write_file
from .render import (
    ChannelStats,
    Panel,
    PanelGroup,
    RenderOptions,
    channel_writer,
    channels_per_chunk,
    colormap_lut,
    manifest_json,
    mosaic,
    palette_indices,
    rounded,
    save_figure,
    sheet_tile_size,
    upsample,
    write_indexed,
    write_map,
)

#: Diverging colormap of the difference map: white is zero, red where A is higher.
DIFFERENCE_CMAP = "RdBu_r"
#: The channel images: A and B on one scale per channel, and A - B on a symmetric diverging scale;
#: each the stem of its pages (``channels_a.png``) or the folder of its files (``channels_a/NNNN.png``).
CHANNEL_DIRS = ("channels_a", "channels_b", "channels_diff")
#: Upsampled maps alive per channel of a chunk (A, B, A - B): the chunk budget is shared by them.
MAPS_PER_CHANNEL = 3


def _shared_range(*arrays: np.ndarray) -> tuple[float, float]:
    """The range of all ``arrays`` together; NaN if any holds a NaN, as ``min`` of one array gives
    (Python's ``min`` over the arrays' minima would drop a NaN unless it came first)."""
    return float(np.min([a.min() for a in arrays])), float(np.max([a.max() for a in arrays]))


def _tiles(maps: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The sheet's tiles as one uint8 index mosaic (gaps get index 0), for exact comparison."""
    canvas, _ = mosaic(maps, [""] * len(maps))
    return palette_indices(np.nan_to_num(canvas, nan=lo), lo, hi)


def _symmetric(largest: np.ndarray) -> np.ndarray:
    """The half-width of a diverging scale: the largest |difference|, 1 where that is 0 (all white)."""
    return np.where(largest > 0, largest, 1.0).astype(largest.dtype)


def _write_channels(
    features_a: np.ndarray, features_b: np.ndarray, size: tuple[int, int], target: Path, options: RenderOptions, lut: np.ndarray,
) -> tuple[list[dict[str, Any]], list[str], np.ndarray, np.ndarray]:
    """Every channel of A and B on one scale per channel (their joint range on the upsampled maps)
    and A - B on a symmetric diverging scale, written chunk by chunk while the next chunk is
    upsampled (pages, or files with ``options.channel_files``). Returns the manifest entries (one
    per :data:`CHANNEL_DIRS` name), the files written, the (C, 2) shared scales and the (C,)
    half-widths of the difference scales."""
    count = features_a.shape[0]
    luts = (lut, lut, colormap_lut(DIFFERENCE_CMAP))
    budget = max(1, channels_per_chunk(size, options.chunk_mb) // MAPS_PER_CHANNEL)
    scales = np.empty((count, 2), np.float64)
    limits = np.empty(count, np.float64)
    pool = ThreadPoolExecutor(options.threads)
    writers = [channel_writer(target, name, count, size, options, table, pool, budget) for name, table in zip(CHANNEL_DIRS, luts)]
    try:
        for start, end in writers[0].chunks(writers[0].step(budget)):
            up_a = upsample(features_a[start:end], size, options.resize_device)
            up_b = upsample(features_b[start:end], size, options.resize_device)
            lo = np.minimum(up_a.min(axis=(1, 2)), up_b.min(axis=(1, 2)))[:, None, None]
            hi = np.maximum(up_a.max(axis=(1, 2)), up_b.max(axis=(1, 2)))[:, None, None]
            difference = up_a - up_b
            half = _symmetric(np.abs(difference).max(axis=(1, 2)))[:, None, None]
            indices = (palette_indices(up_a, lo, hi), palette_indices(up_b, lo, hi), palette_indices(difference, -half, half))
            scales[start:end, 0], scales[start:end, 1], limits[start:end] = lo.ravel(), hi.ravel(), half.ravel()
            del up_a, up_b, difference
            for writer, images in zip(writers, indices):
                writer.drain()  # at most one chunk is being written while the next one is computed
                writer.submit(start, images, None)
        for writer in writers:
            writer.close()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for writer in writers:
            writer.release()
    return [writer.entry() for writer in writers], [f for writer in writers for f in writer.files], scales, limits


def compare_layer(
    features_a: np.ndarray,
    features_b: np.ndarray,
    target: Path,
    options: RenderOptions,
    *,
    labels: tuple[str, str] = ("A", "B"),
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write side-by-side sum maps and top-k sheets of two (C, h, w) feature maps on one
    shared scale, and their difference, into the existing directory ``target``.

    Files: ``sum_a.png``, ``sum_b.png`` (shared scale), ``difference.png`` (A - B sum, symmetric
    diverging scale, white = 0), ``sheet_a.png``, ``sheet_b.png`` (the top-k channels of A by
    ``options.rank_by``, same channels for B, shared scale), ``panel_sum.png`` and
    ``panel_sheet.png`` (labelled figures with colorbars) and ``manifest.json``; and every
    channel of A and of B on ONE scale per channel (the joint min..max of the channel's
    upsampled A and B: ``channels.scale_lo``/``scale_hi``), tiles of the pages ``channels_a.png``
    and ``channels_b.png`` (manifest: ``channels.atlas_a``, ``atlas_b``), and A - B of each
    channel on a symmetric diverging scale (``-channels.diff_limit``..``diff_limit``, white = 0)
    in ``channels_diff.png`` (``atlas_diff``); with ``options.channel_files`` they are the files
    ``channels_a/NNNN.png``, ... (``files_a``, ``files_b``, ``files_diff``). The manifest's
    ``channels`` also holds the mean and max of A and of B and the max |A - B| of each
    channel's raw map.
    """
    features_a = np.ascontiguousarray(features_a, dtype=np.float32)
    features_b = np.ascontiguousarray(features_b, dtype=np.float32)
    if features_a.shape != features_b.shape or features_a.ndim != 3:
        raise VizError(f"cannot compare feature maps of shapes {features_a.shape} and {features_b.shape}")
    count = features_a.shape[0]
    size = options.output_size(features_a.shape[1:], None)
    lut = colormap_lut(options.cmap)
    entries, channel_files, scales, diff_limits = _write_channels(features_a, features_b, size, target, options, lut)
    stats_a, stats_b = ChannelStats.of(features_a), ChannelStats.of(features_b)
    largest_difference = np.abs(features_a - features_b).reshape(count, -1).max(axis=1)

    sum_a = upsample(features_a.sum(axis=0, dtype=np.float64), size)
    sum_b = upsample(features_b.sum(axis=0, dtype=np.float64), size)
    sum_range = _shared_range(sum_a, sum_b)
    write_map(target / "sum_a.png", sum_a, lut, *sum_range)
    write_map(target / "sum_b.png", sum_b, lut, *sum_range)
    difference = sum_a - sum_b
    largest = float(np.abs(difference).max())
    limit = largest if largest > 0 else 1.0  # all zero: everything maps to the middle (white)
    write_map(target / "difference.png", difference, colormap_lut(DIFFERENCE_CMAP), -limit, limit)

    top = min(options.top_k, count)
    ranked = stats_a.top(options.rank_by, top)
    tile = sheet_tile_size(size)
    maps_a, maps_b = upsample(features_a[ranked], tile), upsample(features_b[ranked], tile)
    sheet_range = _shared_range(maps_a, maps_b)
    write_indexed(target / "sheet_a.png", _tiles(maps_a, *sheet_range), lut)
    write_indexed(target / "sheet_b.png", _tiles(maps_b, *sheet_range), lut)

    context = context or {}
    image_name = Path(context["image"]).name if "image" in context else ""
    where = f"{image_name} {context.get('layer', '')}".strip()
    legend = f"A = {labels[0]}\nB = {labels[1]}"
    save_figure(
        target / "panel_sum.png",
        f"{where}: channel sum, shared scale\n{legend}".strip(": "),
        [
            PanelGroup([Panel("A", sum_a), Panel("B", sum_b)], options.cmap, *sum_range, "sum of channels"),
            PanelGroup([Panel("A - B", difference)], DIFFERENCE_CMAP, -limit, limit, "difference"),
        ],
    )
    channel_labels = [f"#{i}" for i in ranked]
    canvas_a, placed_a = mosaic(maps_a, channel_labels)
    canvas_b, placed_b = mosaic(maps_b, channel_labels)
    save_figure(
        target / "panel_sheet.png",
        f"{where}: top {top} channels of A by {options.rank_by}, shared scale\n{legend}".strip(": "),
        [PanelGroup([Panel("A", canvas_a, placed_a), Panel("B", canvas_b, placed_b)], options.cmap, *sheet_range, "activation")],
    )
    manifest = {
        **context,
        "a": labels[0],
        "b": labels[1],
        "feature_shape": list(features_a.shape),
        "image_size": list(size),
        "colormap": options.cmap,
        "sum_range": list(sum_range),
        "difference": {"file": "difference.png", "cmap": DIFFERENCE_CMAP, "max_abs": largest},
        "sheet": {"rank_by": options.rank_by, "channels": ranked.tolist(), "range": list(sheet_range)},
        "channels": {
            **{f"{key}_{which}": value for entry, which in zip(entries, ("a", "b", "diff")) for key, value in entry.items()},
            "mean_a": rounded(stats_a.mean),
            "max_a": rounded(stats_a.max),
            "mean_b": rounded(stats_b.mean),
            "max_b": rounded(stats_b.max),
            "max_abs_diff": rounded(largest_difference),
            "scale_lo": rounded(scales[:, 0]),
            "scale_hi": rounded(scales[:, 1]),
            "diff_cmap": DIFFERENCE_CMAP,
            "diff_limit": rounded(diff_limits),
        },
        "files": [
            *channel_files,
            "sum_a.png", "sum_b.png", "difference.png", "sheet_a.png", "sheet_b.png",
            "panel_sum.png", "panel_sheet.png", "manifest.json",
        ],
    }
    write_file(target / "manifest.json", manifest_json(manifest).encode())
    return manifest

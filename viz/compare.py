"""Two models (or two checkpoints) on the same image and layer, on one shared colour scale."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .errors import VizError
from .render import (
    ChannelStats,
    Panel,
    PanelGroup,
    RenderOptions,
    colormap_lut,
    mosaic,
    palette_indices,
    save_figure,
    sheet_tile_size,
    upsample,
    write_indexed,
    write_map,
)

#: Diverging colormap of the difference map: white is zero, red where A is higher.
DIFFERENCE_CMAP = "RdBu_r"


def _shared_range(*arrays: np.ndarray) -> tuple[float, float]:
    return float(min(a.min() for a in arrays)), float(max(a.max() for a in arrays))


def _tiles(maps: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The sheet's tiles as one uint8 index mosaic (gaps get index 0), for exact comparison."""
    canvas, _ = mosaic(maps, [""] * len(maps))
    return palette_indices(np.nan_to_num(canvas, nan=lo), lo, hi)


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
    ``panel_sheet.png`` (labelled figures with colorbars) and ``manifest.json``.
    """
    features_a = np.ascontiguousarray(features_a, dtype=np.float32)
    features_b = np.ascontiguousarray(features_b, dtype=np.float32)
    if features_a.shape != features_b.shape or features_a.ndim != 3:
        raise VizError(f"cannot compare feature maps of shapes {features_a.shape} and {features_b.shape}")
    count = features_a.shape[0]
    size = options.output_size(features_a.shape[1:], None)
    lut = colormap_lut(options.cmap)

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
    ranked = ChannelStats.of(features_a).top(options.rank_by, top)
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
        "files": [
            "sum_a.png", "sum_b.png", "difference.png", "sheet_a.png", "sheet_b.png",
            "panel_sum.png", "panel_sheet.png", "manifest.json",
        ],
    }
    (target / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest

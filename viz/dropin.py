"""``visualize_feature_map``: the original script's function with its signature and file names,
done right (every channel there is, per-channel normalisation, correct bilinear upsampling)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

import fastinterp

from .render import colormap_lut, default_threads, palette_indices, write_indexed, write_map

#: The original upsampled with ``BilinearInterpolation(8, 8)``.
DEFAULT_RATE = 8.0


def _rates_and_align(bilinear: Any) -> tuple[float, float, str]:
    if bilinear is None:
        return DEFAULT_RATE, DEFAULT_RATE, "center"
    return float(bilinear.w_rate), float(bilinear.h_rate), getattr(bilinear, "align", "center")


def visualize_feature_map(img_batch: Any, out_path: str, type: str, BI: Any = None, *, cmap: str = "viridis") -> list[str]:  # noqa: A002 (the original's names)
    """Write ``{out_path}{i}_{type}.jpg`` for every channel i and ``{out_path}sum_{type}.jpg``.

    Drop-in for the original: ``img_batch`` is a layer's (1, C, h, w) output (tensor or
    array), ``out_path`` a prefix the file names are appended to (as in the original, so it
    usually ends with ``/``), ``type`` a tag for the names, ``BI`` the original's
    ``BilinearInterpolation`` (or fastinterp's; its rates and ``align`` are used; None
    means 8x). Unlike the original it writes all C channels rather than 2048, upsamples with
    correct float bilinear interpolation (:func:`fastinterp.resize`, no uint8 truncation, no
    black frame), maps each channel's own min..max through ``cmap`` and writes the pixels
    themselves (no axes), in parallel threads. Returns the written paths, channels first.
    """
    maps = img_batch.detach().float().cpu().numpy() if hasattr(img_batch, "detach") else np.asarray(img_batch)
    maps = np.ascontiguousarray(maps.reshape(-1, *maps.shape[-2:]), dtype=np.float32)
    w_rate, h_rate, align = _rates_and_align(BI)
    size = (round(maps.shape[1] * h_rate), round(maps.shape[2] * w_rate))
    upsampled = fastinterp.resize(maps, size=size, align=align, channels_first=True)
    indices = palette_indices(upsampled, upsampled.min(axis=(1, 2), keepdims=True), upsampled.max(axis=(1, 2), keepdims=True))
    lut = colormap_lut(cmap)
    paths = [f"{out_path}{i}_{type}.jpg" for i in range(len(maps))]
    with ThreadPoolExecutor(default_threads()) as pool:
        list(pool.map(lambda i: write_indexed(Path(paths[i]), indices[i], lut), range(len(maps))))
    sum_path = f"{out_path}sum_{type}.jpg"
    write_map(Path(sum_path), upsampled.sum(axis=0, dtype=np.float64), lut)
    print(f"save sum_{type}.jpg")
    return [*paths, sum_path]

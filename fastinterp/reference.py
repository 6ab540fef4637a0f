"""Pure-Python reference implementations: slow and obvious on purpose.

Every compiled kernel in fastinterp is tested against the functions here.

* :func:`legacy_transform` reproduces ``BilinearInterpolation.transform`` of the original
  feature-map script exactly: the same output size, the same source coordinates (with the
  ``+0.001`` shift and the clamp that produces a black frame), the same numpy arithmetic on
  the channel vector and the same store into a ``uint8`` array (truncation and wrap-around).
* :func:`bilinear_resize` is a plain-loop, float64 implementation of correct bilinear
  resizing for each ``align`` convention, with replicated (clamped) edges.

Neither is meant to be fast; both are meant to be easy to check by reading.
"""

from __future__ import annotations

import math

import numpy as np

ALIGN_MODES = ("center", "left", "corners")
LEGACY_ALIGN_MODES = ("center", "left")


def legacy_src_coord(dst: int, source: int, goal: int, align: str) -> float:
    """Source coordinate of output index ``dst`` as the original script computes it.

    ``align`` is ``"left"`` or ``"center"``. The result is shifted by 0.001 and clamped to
    ``[0, source - 1]``, exactly as ``get_src_h``/``get_src_w`` of the original class.
    """
    if align == "left":
        src = float(dst * (source / goal))
    elif align == "center":
        src = float((dst + 0.5) * (source / goal) - 0.5)
    else:
        raise ValueError(f"legacy align must be one of {LEGACY_ALIGN_MODES}, got {align!r}")
    src += 0.001
    src = max(0.0, src)
    src = min(float(source - 1), src)
    return src


def legacy_output_size(in_size: int, rate: float) -> int:
    """Output length for one axis: Python's ``round`` (half to even), as the original."""
    return round(in_size * rate)


def legacy_transform(img: np.ndarray, w_rate: float, h_rate: float, align: str = "center") -> np.ndarray:
    """The original ``BilinearInterpolation.transform`` of an (H, W, C) array.

    Returns a new ``uint8`` array of shape ``(round(H*h_rate), round(W*w_rate), C)``.
    The arithmetic is numpy's on the (C,) channel vectors, term by term and left to right,
    so a float32 image is computed in float32 and float64 or integer images in float64.
    """
    source_h, source_w, source_c = img.shape
    goal_h = legacy_output_size(source_h, h_rate)
    goal_w = legacy_output_size(source_w, w_rate)
    new_img = np.zeros((goal_h, goal_w, source_c), dtype=np.uint8)
    with np.errstate(invalid="ignore", over="ignore"):
        for i in range(goal_h):
            src_i = legacy_src_coord(i, source_h, goal_h, align)
            for j in range(goal_w):
                src_j = legacy_src_coord(j, source_w, goal_w, align)
                i2, i1 = math.ceil(src_i), int(src_i)
                j2, j1 = math.ceil(src_j), int(src_j)
                x2_x, x_x1 = j2 - src_j, src_j - j1
                y2_y, y_y1 = i2 - src_i, src_i - i1
                new_img[i, j] = (
                    img[i1, j1] * x2_x * y2_y
                    + img[i1, j2] * x_x1 * y2_y
                    + img[i2, j1] * x2_x * y_y1
                    + img[i2, j2] * x_x1 * y_y1
                )
    return new_img


def src_coord(dst: int, in_size: int, out_size: int, align: str) -> float:
    """Source coordinate of output index ``dst`` for the correct algorithm (float64).

    * ``center``: ``(dst + 0.5) * in/out - 0.5``, clamped to >= 0 (torch ``align_corners=False``).
    * ``left``: ``dst * in/out`` (TF1 ``resize_bilinear``, ONNX ``asymmetric``).
    * ``corners``: ``dst * (in - 1)/(out - 1)``, 0 when ``out == 1`` (``align_corners=True``).
    """
    if align == "center":
        return max((dst + 0.5) * (in_size / out_size) - 0.5, 0.0)
    if align == "left":
        return dst * (in_size / out_size)
    if align == "corners":
        return 0.0 if out_size == 1 else dst * ((in_size - 1) / (out_size - 1))
    raise ValueError(f"align must be one of {ALIGN_MODES}, got {align!r}")


def taps(dst: int, in_size: int, out_size: int, align: str) -> tuple[int, int, float]:
    """The two source indices and the weight of the second one for output index ``dst``.

    Indices are clamped to ``[0, in_size - 1]`` (edges replicated).
    """
    src = src_coord(dst, in_size, out_size, align)
    i0 = min(int(math.floor(src)), in_size - 1)
    i1 = min(i0 + 1, in_size - 1)
    return i0, i1, src - i0


def bilinear_resize(plane: np.ndarray, out_h: int, out_w: int, align: str = "center") -> np.ndarray:
    """Correct bilinear resize of one 2-D plane, computed in float64 with plain loops.

    Each output pixel is ``top * (1 - wy) + bottom * wy`` with
    ``top = a * (1 - wx) + b * wx`` and ``bottom = c * (1 - wx) + d * wx``, except along a
    clamped axis (both taps the same edge pixel), which reads that pixel alone: an infinity
    there stays infinite instead of becoming ``inf * 0 = NaN``.
    """
    in_h, in_w = plane.shape
    src = plane.astype(np.float64)
    out = np.empty((out_h, out_w), dtype=np.float64)
    for i in range(out_h):
        y0, y1, wy = taps(i, in_h, out_h, align)
        for j in range(out_w):
            x0, x1, wx = taps(j, in_w, out_w, align)
            top = src[y0, x0] if x0 == x1 else src[y0, x0] * (1.0 - wx) + src[y0, x1] * wx
            bottom = src[y1, x0] if x0 == x1 else src[y1, x0] * (1.0 - wx) + src[y1, x1] * wx
            out[i, j] = top if y0 == y1 else top * (1.0 - wy) + bottom * wy
    return out


def interpolation_matrix(in_size: int, out_size: int, align: str) -> np.ndarray:
    """Dense (out_size, in_size) float64 matrix of one axis: ``resize = M_y @ plane @ M_x.T``."""
    matrix = np.zeros((out_size, in_size))
    for d in range(out_size):
        i0, i1, w = taps(d, in_size, out_size, align)
        matrix[d, i0] += 1.0 - w
        matrix[d, i1] += w
    return matrix


def bilinear_adjoint(grad_out: np.ndarray, in_h: int, in_w: int, align: str = "center") -> np.ndarray:
    """The gradient of a resize of (..., in_h, in_w) given the output's gradient (..., OH, OW):
    the transpose of the interpolation, ``M_y.T @ grad @ M_x``, in float64."""
    rows = interpolation_matrix(in_h, grad_out.shape[-2], align)
    cols = interpolation_matrix(in_w, grad_out.shape[-1], align)
    return np.einsum("yi,...ij,jx->...yx", rows.T, grad_out.astype(np.float64), cols)


def to_integer_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round to nearest (half to even) and saturate to the range of an integer dtype."""
    info = np.iinfo(dtype)
    return np.clip(np.rint(values), info.min, info.max).astype(dtype)


#: The only ``align`` with an antialiased definition: torch's ``antialias=True`` centres its
#: filter on ``(dst + 0.5) * in/out`` whatever ``align_corners`` says, and Pillow has no other.
ANTIALIAS_ALIGN_MODES = ("center",)


def antialias_taps(dst: int, in_size: int, out_size: int) -> tuple[int, list[float]]:
    """First source index and normalised weights of output ``dst`` along one antialiased axis.

    torch's ``_upsample_bilinear2d_aa`` and Pillow's BILINEAR: the triangle filter, widened
    by ``scale = in/out`` on a downscaled axis (``support = scale``) and not on an upscaled one
    (``support = 1``, which is plain bilinear with clamped edges). The taps are the indices in
    ``[floor(centre - support + 0.5), floor(centre + support + 0.5))`` clipped to the image,
    ``centre = (dst + 0.5) * scale``, each weighted ``tri((i - centre + 0.5) / max(scale, 1))``;
    the weights are divided by their sum, so clipped edges are renormalised. An axis that
    keeps its size is copied (torch skips it).
    """
    if in_size == out_size:
        return dst, [1.0]
    scale = in_size / out_size
    support = max(scale, 1.0)
    inverse = 1.0 / scale if scale >= 1.0 else 1.0
    centre = (dst + 0.5) * scale
    first = max(int(math.floor(centre - support + 0.5)), 0)
    stop = min(int(math.floor(centre + support + 0.5)), in_size)
    weights = [max(0.0, 1.0 - abs((i - centre + 0.5) * inverse)) for i in range(first, stop)]
    total = sum(weights)
    return first, [w / total for w in weights]


def antialiased_resize(plane: np.ndarray, out_h: int, out_w: int, align: str = "center") -> np.ndarray:
    """Antialiased bilinear resize of one 2-D plane, in float64 with plain loops.

    ``out[i, j] = sum over (a, b) of wy[a] * wx[b] * plane[y0 + a, x0 + b]`` with the taps of
    :func:`antialias_taps` on each axis. Only ``align="center"`` is defined.
    """
    if align not in ANTIALIAS_ALIGN_MODES:
        raise ValueError(f"antialias is defined only for align in {ANTIALIAS_ALIGN_MODES}, got {align!r}")
    in_h, in_w = plane.shape
    src = plane.astype(np.float64)
    out = np.empty((out_h, out_w), dtype=np.float64)
    for i in range(out_h):
        y0, wy = antialias_taps(i, in_h, out_h)
        for j in range(out_w):
            x0, wx = antialias_taps(j, in_w, out_w)
            total = 0.0
            for a, weight_y in enumerate(wy):
                for b, weight_x in enumerate(wx):
                    total += weight_y * weight_x * src[y0 + a, x0 + b]
            out[i, j] = total
    return out

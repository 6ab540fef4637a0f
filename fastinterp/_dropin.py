"""``BilinearInterpolation``: a compiled drop-in for the original script's class."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import reference
from ._api import resize
from ._plan import check_align, check_rate, is_torch_tensor


class BilinearInterpolation:
    """Drop-in for the original ``BilinearInterpolation(w_rate, h_rate, *, align='center')``.

    By default :meth:`transform` returns exactly the original's pixels (``uint8``, with its
    truncation, wrap-around, black frame and 0.001 px shift), compiled. With
    ``legacy=False`` it returns the correct bilinear resize instead, in the input's dtype,
    with edges replicated.

    Unlike the original, an unknown ``align`` raises ``ValueError`` instead of logging and
    falling back to ``"center"``.
    """

    def __init__(self, w_rate: float, h_rate: float, *, align: str = "center", legacy: bool = True) -> None:
        self.legacy = legacy
        self.align = check_align(align, legacy)
        self.set_rate(w_rate, h_rate)

    def set_rate(self, w_rate: float, h_rate: float) -> None:
        """Set the width and height scale factors."""
        check_rate("w_rate", w_rate)
        check_rate("h_rate", h_rate)
        self.w_rate = w_rate
        self.h_rate = h_rate

    def get_src_h(self, dst_i: int, source_h: int, goal_h: int) -> float:
        """Source row of output row ``dst_i``, as the original computes it (shifted, clamped)."""
        return reference.legacy_src_coord(dst_i, source_h, goal_h, self.align)

    def get_src_w(self, dst_j: int, source_w: int, goal_w: int) -> float:
        """Source column of output column ``dst_j``, as the original computes it."""
        return reference.legacy_src_coord(dst_j, source_w, goal_w, self.align)

    def transform(self, img: Any) -> np.ndarray:
        """Resize an (H, W, C) array (an (H, W) one is accepted too).

        Like the original, any array-like is read as (H, W, C) and the result is a numpy
        array: a CPU tensor is read through numpy (not as torch's (..., H, W)); a GPU array
        stays on its GPU.
        """
        if is_torch_tensor(img):
            if img.device.type != "cpu":
                raise ValueError(f"transform reads host (H, W, C) images; this tensor is on {img.device}: use tensor.cpu()")
            img = img.detach().resolve_conj().resolve_neg().numpy()
        return resize(img, self.w_rate, self.h_rate, align=self.align, legacy=self.legacy)

    def __repr__(self) -> str:
        return (
            f"BilinearInterpolation(w_rate={self.w_rate!r}, h_rate={self.h_rate!r}, "
            f"align={self.align!r}, legacy={self.legacy!r})"
        )

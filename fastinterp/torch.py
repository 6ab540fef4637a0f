"""PyTorch integration: a differentiable, compilable bilinear resize and an ``nn.Module``.

:func:`resize` and :class:`Resize` run the registered operators ``fastinterp::resize`` and
``fastinterp::resize_backward`` of :mod:`fastinterp._torch_ops`: each has a fake kernel (so
they trace under ``torch.compile(fullgraph=True)`` and ``torch.export``) and each is the
other's gradient; the backward gathers, so it is deterministic and needs no atomics.

This module imports torch; ``import fastinterp`` does not import it.

Output size from ``scale_factor`` follows torch: ``floor(in * scale)``, whereas
:func:`fastinterp.resize` with rates rounds (``round(in * rate)``, as the original script).
The sampling grid always uses the actual ratio ``in / out``, which is what torch does with
``size=`` or ``recompute_scale_factor=True``; with a ``scale_factor`` whose ``in * scale`` is
not an integer, torch's default maps with ``1 / scale`` instead and differs slightly.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

from ._plan import check_align, check_antialias
from ._torch_ops import check_tensor, is_integer, resize_op, size_pair


def _scale_pair(scale_factor: Any) -> tuple[float, float]:
    """``scale_factor`` as (scale_h, scale_w): a number means both, as in ``torch.nn.Upsample``."""
    pair = (scale_factor, scale_factor) if isinstance(scale_factor, numbers.Real) else scale_factor
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise TypeError(f"scale_factor must be a number or a pair (scale_h, scale_w), got {scale_factor!r}")
    return _check_scale(pair[0]), _check_scale(pair[1])


def _check_scale(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"scale_factor must hold real numbers, got {type(value).__name__}")
    # Comparisons rather than math.isfinite: they also trace when dynamo makes the float symbolic.
    if is_integer(value) and value.bit_length() > 1000:  # past float's range
        raise ValueError(f"scale_factor must hold finite numbers > 0, got an int of {value.bit_length()} bits")
    if not 0 < value < math.inf:
        raise ValueError(f"scale_factor must hold finite numbers > 0, got {value}")
    return value


def _normalised(pair: tuple[Any, Any]) -> Any:
    """One value where both axes agree (as ``nn.Upsample`` prints it), else the pair."""
    return pair[0] if pair[0] == pair[1] else pair


def _check_size_or_scale(size: Any, scale_factor: Any) -> None:
    if (size is None) == (scale_factor is None):
        raise ValueError("give exactly one of size= and scale_factor=")


def _output_size(in_h: int, in_w: int, scale_factor: Any, size: Any) -> tuple[int, int]:
    _check_size_or_scale(size, scale_factor)
    if size is not None:
        return size_pair(size)
    scale_h, scale_w = _scale_pair(scale_factor)
    if not (in_h * scale_h < math.inf and in_w * scale_w < math.inf):
        raise ValueError(f"scale_factor={scale_factor!r} turns a {in_h}x{in_w} input into an output too large to count")
    out_h, out_w = math.floor(in_h * scale_h), math.floor(in_w * scale_w)
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"scale_factor={scale_factor!r} turns a {in_h}x{in_w} input into an empty {out_h}x{out_w} output"
        )
    return out_h, out_w


def resize(
    x: torch.Tensor,
    scale_factor: float | tuple[float, float] | None = None,
    size: int | tuple[int, int] | None = None,
    align: str = "center",
    antialias: bool = False,
) -> torch.Tensor:
    """Differentiable bilinear resize of the last two dimensions of a (..., H, W) tensor.

    Parameters
    ----------
    x
        A float16, bfloat16, float32 or float64 tensor on the CPU or CUDA, with any leading
        dimensions. A 4-D ``torch.channels_last`` tensor gives a channels_last result.
    scale_factor
        A number or a pair (scale_h, scale_w). The output size is ``floor(in * scale)``,
        as in ``torch.nn.functional.interpolate`` (:func:`fastinterp.resize` rounds).
    size
        An int or a pair (out_h, out_w): the output size. Give this or ``scale_factor``.
    align
        ``"center"`` (``align_corners=False``), ``"corners"`` (``align_corners=True``) or
        ``"left"`` (TF1 ``resize_bilinear``).
    antialias
        Downscaled axes use the triangle filter widened by the scale factor, as
        ``F.interpolate(..., antialias=True)``; ``align="center"`` only. Where no axis is
        downscaled the result is the plain resize's, bit for bit.

    Gradients (and gradients of gradients) flow through it; the backward is deterministic.
    """
    check_tensor(x)
    out_h, out_w = _output_size(x.shape[-2], x.shape[-1], scale_factor, size)
    align = check_align(align, legacy=False)
    return resize_op(x, out_h, out_w, align, check_antialias(antialias, align, legacy=False))


class Resize(torch.nn.Module):
    """Bilinear resize as a module, with the arguments of ``torch.nn.Upsample``.

    ``Resize(scale_factor=2)`` replaces ``nn.Upsample(scale_factor=2, mode="bilinear")``
    and ``Resize(scale_factor=2, align="corners")`` the same with ``align_corners=True``;
    ``Resize(scale_factor=0.25, antialias=True)`` downscales without aliasing.
    """

    def __init__(
        self,
        size: int | tuple[int, int] | None = None,
        scale_factor: float | tuple[float, float] | None = None,
        align: str = "center",
        antialias: bool = False,
    ) -> None:
        super().__init__()
        _check_size_or_scale(size, scale_factor)
        self.size = None if size is None else _normalised(size_pair(size))
        self.scale_factor = None if scale_factor is None else _normalised(tuple(map(float, _scale_pair(scale_factor))))
        self.align = check_align(align, legacy=False)
        self.antialias = check_antialias(antialias, self.align, legacy=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize(x, scale_factor=self.scale_factor, size=self.size, align=self.align, antialias=self.antialias)

    def extra_repr(self) -> str:
        what = f"size={self.size!r}" if self.size is not None else f"scale_factor={self.scale_factor!r}"
        return f"{what}, align={self.align!r}" + (", antialias=True" if self.antialias else "")


#: The name ``torch.nn.Upsample`` users look for.
Upsample = Resize

"""PyTorch integration: a differentiable, compilable bilinear resize and an ``nn.Module``.

Two custom operators are registered with :mod:`torch.library`, each with a fake kernel
(so they trace under ``torch.compile(fullgraph=True)`` and ``torch.export``) and each the
other's gradient, because bilinear resize is linear:

* ``fastinterp::resize(x, out_h, out_w, align)``: the resize of :func:`fastinterp.resize`
  (zero-copy on the CPU);
* ``fastinterp::resize_backward(grad_out, in_h, in_w, align)``: its adjoint, computed by
  gathering (:mod:`fastinterp._adjoint` on the CPU, ``fastinterp._cuda`` on CUDA), so it
  is deterministic and needs no atomics.

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

import numpy as np
import torch

from . import _api
from ._adjoint import resize_adjoint

#: dtypes the operators accept. float16 and bfloat16 are computed in float32.
FLOATING_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: devices the operators run on; CUDA needs ``fastinterp._cuda`` (numba-cuda).
DEVICE_TYPES = ("cpu", "cuda")


def _memory_format(t: torch.Tensor) -> torch.memory_format:
    """The memory format the kernels keep: channels_last for a 4-D channels_last tensor."""
    return torch.channels_last if _api._torch_layout(t) == "pixels" else torch.contiguous_format


def _empty_resized(t: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """An uninitialised tensor like ``t`` with the last two sizes replaced, in ``t``'s format."""
    shape = (*t.shape[:-2], height, width)
    return torch.empty(shape, dtype=t.dtype, device=t.device, memory_format=_memory_format(t))


def _check_op_arguments(x: torch.Tensor, height: int, width: int, align: str) -> None:
    """The operators are public (``torch.ops.fastinterp.*``): validate what they are given."""
    _check_tensor(x)
    _size_pair((height, width))
    _api.check_align(align, legacy=False)
    # (bfloat16 as float16: both are computed through a float32 temporary)
    _api.check_size((math.prod(x.shape[:-2]),), height, width, np.dtype(f"f{x.element_size()}"))


@torch.library.custom_op("fastinterp::resize", mutates_args=())
def _resize_op(x: torch.Tensor, out_h: int, out_w: int, align: str) -> torch.Tensor:
    """Bilinear resize of the last two dimensions of ``x`` to (out_h, out_w)."""
    _check_op_arguments(x, out_h, out_w, align)
    result = _api.resize(x.detach(), size=(out_h, out_w), align=align)
    return result.contiguous(memory_format=_memory_format(x))


@_resize_op.register_fake
def _resize_fake(x: torch.Tensor, out_h: int, out_w: int, align: str) -> torch.Tensor:
    return _empty_resized(x, out_h, out_w)


def _adjoint_cpu(grad_out: torch.Tensor, in_h: int, in_w: int, align: str) -> torch.Tensor:
    """The CPU adjoint in the compute dtype, on a contiguous copy of ``grad_out`` where needed."""
    compute_dtype = torch.float64 if grad_out.dtype == torch.float64 else torch.float32
    grad = grad_out.detach().to(compute_dtype).contiguous()
    grad_in = torch.empty((*grad.shape[:-2], in_h, in_w), dtype=compute_dtype)
    resize_adjoint(
        grad.numpy().reshape(-1, *grad.shape[-2:]),
        grad_in.numpy().reshape(-1, in_h, in_w),
        align,
    )
    return grad_in


@torch.library.custom_op("fastinterp::resize_backward", mutates_args=())
def _resize_backward_op(grad_out: torch.Tensor, in_h: int, in_w: int, align: str) -> torch.Tensor:
    """Gradient with respect to the input of a resize from (in_h, in_w) to ``grad_out``'s size."""
    _check_op_arguments(grad_out, in_h, in_w, align)
    if grad_out.device.type == "cuda":
        from . import _cuda  # numba.cuda is loaded only for CUDA tensors

        grad = grad_out.detach()
        if grad.dtype == torch.bfloat16:  # numba has no bfloat16: compute it in float32
            grad = grad.float()
        grad_in = _cuda.resize_adjoint_cuda(grad.contiguous(), in_h, in_w, align)
    else:
        grad_in = _adjoint_cpu(grad_out, in_h, in_w, align)
    return grad_in.to(dtype=grad_out.dtype, memory_format=_memory_format(grad_out))


@_resize_backward_op.register_fake
def _resize_backward_fake(grad_out: torch.Tensor, in_h: int, in_w: int, align: str) -> torch.Tensor:
    return _empty_resized(grad_out, in_h, in_w)


def _register_adjoint(op: Any, adjoint: Any) -> None:
    """Give ``op`` (tensor, height, width, align) -> tensor the gradient ``adjoint``.

    Both operators are linear maps between two spatial sizes, so the gradient of one is the
    other applied to the incoming gradient, mapping back to the size of ``op``'s input.
    """

    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        source, _, _, align = inputs
        ctx.source_size = (source.shape[-2], source.shape[-1])
        ctx.align = align

    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        return adjoint(grad, *ctx.source_size, ctx.align), None, None, None

    op.register_autograd(backward, setup_context=setup_context)


_register_adjoint(_resize_op, _resize_backward_op)
_register_adjoint(_resize_backward_op, _resize_op)


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _size_pair(size: Any) -> tuple[int, int]:
    """``size`` as (out_h, out_w): an int means both, as in ``torch.nn.Upsample``."""
    pair = (size, size) if _is_integer(size) else size
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(_is_integer(v) and v >= 1 for v in pair)):
        raise ValueError(f"size must be an int or a pair (out_h, out_w) of ints >= 1, got {size!r}")
    return int(pair[0]), int(pair[1])


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
    if _is_integer(value) and value.bit_length() > 1000:  # past float's range
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
        return _size_pair(size)
    scale_h, scale_w = _scale_pair(scale_factor)
    if not (in_h * scale_h < math.inf and in_w * scale_w < math.inf):
        raise ValueError(f"scale_factor={scale_factor!r} turns a {in_h}x{in_w} input into an output too large to count")
    out_h, out_w = math.floor(in_h * scale_h), math.floor(in_w * scale_w)
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"scale_factor={scale_factor!r} turns a {in_h}x{in_w} input into an empty {out_h}x{out_w} output"
        )
    return out_h, out_w


def _check_tensor(x: Any) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    _api.check_tensor_kind(x)
    if x.ndim < 2:
        raise ValueError(f"expected a tensor of shape (..., H, W), got shape {tuple(x.shape)}")
    if x.dtype not in FLOATING_DTYPES:
        names = ", ".join(str(d) for d in FLOATING_DTYPES)
        raise TypeError(
            f"fastinterp.torch.resize needs a floating tensor ({names}), got {x.dtype}; "
            "fastinterp.resize handles integer images"
        )
    if x.device.type not in DEVICE_TYPES:
        raise ValueError(f"tensors on {x.device} are not supported; use a cpu or cuda tensor")
    if x.numel() == 0:
        raise ValueError(f"cannot resize an empty tensor (shape {tuple(x.shape)})")


def resize(
    x: torch.Tensor,
    scale_factor: float | tuple[float, float] | None = None,
    size: int | tuple[int, int] | None = None,
    align: str = "center",
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

    Gradients (and gradients of gradients) flow through it; the backward is deterministic.
    """
    _check_tensor(x)
    out_h, out_w = _output_size(x.shape[-2], x.shape[-1], scale_factor, size)
    return _resize_op(x, out_h, out_w, _api.check_align(align, legacy=False))


class Resize(torch.nn.Module):
    """Bilinear resize as a module, with the arguments of ``torch.nn.Upsample``.

    ``Resize(scale_factor=2)`` replaces ``nn.Upsample(scale_factor=2, mode="bilinear")``
    and ``Resize(scale_factor=2, align="corners")`` the same with ``align_corners=True``.
    """

    def __init__(
        self,
        size: int | tuple[int, int] | None = None,
        scale_factor: float | tuple[float, float] | None = None,
        align: str = "center",
    ) -> None:
        super().__init__()
        _check_size_or_scale(size, scale_factor)
        self.size = None if size is None else _normalised(_size_pair(size))
        self.scale_factor = None if scale_factor is None else _normalised(tuple(map(float, _scale_pair(scale_factor))))
        self.align = _api.check_align(align, legacy=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize(x, scale_factor=self.scale_factor, size=self.size, align=self.align)

    def extra_repr(self) -> str:
        what = f"size={self.size!r}" if self.size is not None else f"scale_factor={self.scale_factor!r}"
        return f"{what}, align={self.align!r}"


#: The name ``torch.nn.Upsample`` users look for.
Upsample = Resize

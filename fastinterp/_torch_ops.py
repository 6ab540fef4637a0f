"""The registered torch operators behind :mod:`fastinterp.torch` and the front's tensor paths.

Two custom operators are registered with :mod:`torch.library`, each with a fake kernel
(so they trace under ``torch.compile(fullgraph=True)`` and ``torch.export``) and each the
other's gradient, because bilinear resize is linear:

* ``fastinterp::resize(x, out_h, out_w, align, antialias=False)``: the resize of
  :func:`fastinterp.resize` (zero-copy on the CPU);
* ``fastinterp::resize_backward(grad_out, in_h, in_w, align, antialias=False)``: its adjoint,
  computed by gathering (:mod:`fastinterp._adjoint` and :mod:`fastinterp._antialias` on the
  CPU, ``fastinterp._cuda`` on CUDA), so it is deterministic and needs no atomics.

They sit below the front (:mod:`fastinterp._api` calls them for tensors that need a gradient
or run under ``torch.compile``) and call the backends directly.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch

from . import _antialias, _cpu, _cpu_arrays
from ._adjoint import resize_adjoint
from ._plan import antialias_applies, check_align, check_antialias, check_size, check_tensor_kind, torch_layout

#: dtypes the operators accept. float16 and bfloat16 are computed in float32.
FLOATING_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: devices the operators run on; CUDA needs ``fastinterp._cuda`` (numba-cuda).
DEVICE_TYPES = ("cpu", "cuda")


def _memory_format(t: torch.Tensor) -> torch.memory_format:
    """The memory format the kernels keep: channels_last for a 4-D channels_last tensor."""
    return torch.channels_last if torch_layout(t) == "pixels" else torch.contiguous_format


def _empty_resized(t: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """An uninitialised tensor like ``t`` with the last two sizes replaced, in ``t``'s format."""
    shape = (*t.shape[:-2], height, width)
    return torch.empty(shape, dtype=t.dtype, device=t.device, memory_format=_memory_format(t))


def _check_op_arguments(x: torch.Tensor, height: int, width: int, align: str, antialias: bool) -> None:
    """The operators are public (``torch.ops.fastinterp.*``): validate what they are given."""
    check_tensor(x)
    size_pair((height, width))
    check_align(align, legacy=False)
    check_antialias(antialias, align, legacy=False)
    # (bfloat16 as float16: both are computed through a float32 temporary)
    check_size((math.prod(x.shape[:-2]),), height, width, np.dtype(f"f{x.element_size()}"))


@torch.library.custom_op("fastinterp::resize", mutates_args=())
def resize_op(x: torch.Tensor, out_h: int, out_w: int, align: str, antialias: bool = False) -> torch.Tensor:
    """Bilinear resize of the last two dimensions of ``x`` to (out_h, out_w)."""
    _check_op_arguments(x, out_h, out_w, align, antialias)
    request = (x.detach(), None, None, (out_h, out_w), align, False, None, antialias)
    if x.device.type == "cuda":
        from . import _cuda  # numba.cuda is loaded only for CUDA tensors

        result = _cuda.resize_torch(*request)
    else:
        result = _cpu_arrays.resize_torch_cpu(*request)
    return result.contiguous(memory_format=_memory_format(x))


@resize_op.register_fake
def _resize_fake(x: torch.Tensor, out_h: int, out_w: int, align: str, antialias: bool = False) -> torch.Tensor:
    return _empty_resized(x, out_h, out_w)


def _adjoint_cpu(grad_out: torch.Tensor, in_h: int, in_w: int, align: str, antialias: bool) -> torch.Tensor:
    """The CPU adjoint in the compute dtype, on a contiguous copy of ``grad_out`` where needed."""
    compute_dtype = torch.float64 if grad_out.dtype == torch.float64 else torch.float32
    grad = grad_out.detach().to(compute_dtype).contiguous()
    grad_in = torch.empty((*grad.shape[:-2], in_h, in_w), dtype=compute_dtype)
    grad_planes = grad.numpy().reshape(-1, *grad.shape[-2:])
    grad_in_planes = grad_in.numpy().reshape(-1, in_h, in_w)
    if antialias and antialias_applies(in_h, in_w, *grad.shape[-2:]):
        # Work follows the larger of what is read and written, as in the forward.
        schedule = _cpu.schedule(len(grad_in_planes), in_h, max(grad_planes.size, grad_in_planes.size))
        _antialias.run_antialias_adjoint(grad_planes, grad_in_planes, in_h, in_w, grad_planes.dtype, *schedule)
    else:
        resize_adjoint(grad_planes, grad_in_planes, align)
    return grad_in


@torch.library.custom_op("fastinterp::resize_backward", mutates_args=())
def resize_backward_op(
    grad_out: torch.Tensor, in_h: int, in_w: int, align: str, antialias: bool = False
) -> torch.Tensor:
    """Gradient with respect to the input of a resize from (in_h, in_w) to ``grad_out``'s size."""
    _check_op_arguments(grad_out, in_h, in_w, align, antialias)
    if grad_out.device.type == "cuda":
        from . import _cuda  # numba.cuda is loaded only for CUDA tensors

        grad = grad_out.detach()
        if grad.dtype == torch.bfloat16:  # numba has no bfloat16: compute it in float32
            grad = grad.float()
        grad_in = _cuda.resize_adjoint_cuda(grad.contiguous(), in_h, in_w, align, antialias)
    else:
        grad_in = _adjoint_cpu(grad_out, in_h, in_w, align, antialias)
    return grad_in.to(dtype=grad_out.dtype, memory_format=_memory_format(grad_out))


@resize_backward_op.register_fake
def _resize_backward_fake(
    grad_out: torch.Tensor, in_h: int, in_w: int, align: str, antialias: bool = False
) -> torch.Tensor:
    return _empty_resized(grad_out, in_h, in_w)


def _register_adjoint(op: Any, adjoint: Any) -> None:
    """Give ``op`` (tensor, height, width, align, antialias) -> tensor the gradient ``adjoint``.

    Both operators are linear maps between two spatial sizes, so the gradient of one is the
    other applied to the incoming gradient, mapping back to the size of ``op``'s input.
    """

    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        source, _, _, align, antialias = inputs
        ctx.source_size = (source.shape[-2], source.shape[-1])
        ctx.align, ctx.antialias = align, antialias

    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        return adjoint(grad, *ctx.source_size, ctx.align, ctx.antialias), None, None, None, None

    op.register_autograd(backward, setup_context=setup_context)


_register_adjoint(resize_op, resize_backward_op)
_register_adjoint(resize_backward_op, resize_op)


def is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def size_pair(size: Any) -> tuple[int, int]:
    """``size`` as (out_h, out_w): an int means both, as in ``torch.nn.Upsample``."""
    pair = (size, size) if is_integer(size) else size
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(is_integer(v) and v >= 1 for v in pair)):
        raise ValueError(f"size must be an int or a pair (out_h, out_w) of ints >= 1, got {size!r}")
    return int(pair[0]), int(pair[1])


def check_tensor(x: Any) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    check_tensor_kind(x)
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


def differentiable_resize(x: Any, out_h: int, out_w: int, align: str, antialias: bool) -> torch.Tensor:
    """The resize operator on a checked floating tensor: gradients flow through it."""
    check_tensor(x)
    return resize_op(x, out_h, out_w, align, antialias)

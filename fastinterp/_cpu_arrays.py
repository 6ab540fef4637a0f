"""CPU backend, array side: numpy arrays and CPU tensors to and from the numba kernels.

:func:`run_cpu` runs a :class:`~fastinterp._plan.Plan` on kernel-layout arrays (temporaries
where the output cannot be written directly, interleaved rows for a few channels, the
fixed-factor kernels of :mod:`fastinterp._cpu_fixed` where they apply, the antialias kernels
of :mod:`fastinterp._antialias` where the plan asks for them);
:func:`resize_numpy` and :func:`resize_torch_cpu` are the front's numpy and CPU-tensor paths
(a CPU tensor is used zero-copy through numpy).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _antialias, _cpu, _cpu_fixed
from ._coords import NO_PERIOD, interleaved_taps
from ._plan import (
    INTERLEAVE_MAX_CHANNELS, Plan, check_out_numpy, check_tensor_out, is_torch_tensor, make_plan, mark_written,
    numpy_layout, overlaps, torch_layout, user_out_shape,
)


def run_cpu(src: np.ndarray, dest: np.ndarray, plan: Plan, fresh: bool) -> None:
    """Resize kernel-layout ``src`` into kernel-layout ``dest`` with the numba kernels.

    ``src`` may have any strides and byte order; ``dest`` must already have the right shape
    and the plan's output dtype. Where ``dest`` cannot be written directly (not C-contiguous,
    float16) the kernel writes a C-contiguous temporary that is then copied into it. ``fresh``:
    ``dest`` was just allocated (see :func:`fastinterp._cpu.streams`).
    """
    src = np.ascontiguousarray(src, dtype=np.float32 if plan.dtype == np.float16 else plan.dtype)
    direct = dest.flags.c_contiguous and dest.dtype != np.float16 and dest.dtype.isnative
    target = dest if direct else np.empty(dest.shape, np.float32 if dest.dtype == np.float16 else dest.dtype.newbyteorder("="))
    if plan.antialias:
        # It reads far more than it writes: split and thread it by the larger of the two.
        _antialias.run_antialias(
            src, target, plan.in_h, plan.in_w, plan.out_h, plan.out_w, plan.align, plan.compute_dtype,
            *_cpu.schedule(src.shape[0], plan.out_h, max(src.size, target.size)),
        )
    else:
        _run_plain(src, target, plan, _cpu.streams(target, fresh or not direct, plan.compute_dtype))
    if not direct:
        np.copyto(dest, target.reshape(dest.shape), casting="unsafe")


def _run_plain(src: np.ndarray, target: np.ndarray, plan: Plan, stream: bool) -> None:
    """The plain bilinear kernels, C-contiguous ``src`` into ``target``: those of
    :mod:`fastinterp._cpu_fixed` at a factor they take (same bits, no tables), else the tables of
    :mod:`fastinterp._cpu` (``stream``: see :func:`fastinterp._cpu.streams`)."""
    factor = _cpu_fixed.fixed_factor(plan)
    if factor:  # both layouts as flat rows of W * channels
        images, channels = src.shape[0], src.shape[3] if plan.layout == "pixels" else 1
        flat_src, flat_target = src.reshape(images, plan.in_h, -1), target.reshape(images, plan.out_h, -1)
        _cpu_fixed.run_fixed(flat_src, flat_target, factor, channels, plan.compute_dtype)
        return
    if plan.legacy and plan.layout == "planes":  # the legacy body works on (N, H, W, C)
        src, target = src[..., np.newaxis], target[..., np.newaxis]
    ys, xs = plan.taps()
    x_period = plan.column_period() if plan.layout == "planes" else NO_PERIOD
    if plan.layout == "pixels" and not plan.legacy and src.shape[3] <= INTERLEAVE_MAX_CHANNELS:
        # A few channels make an inner loop too short to vectorise: read each image row as
        # one flat row of W * C values instead, with the planes body and interleaved taps.
        images, channels = src.shape[0], src.shape[3]
        src, target = src.reshape(images, plan.in_h, -1), target.reshape(images, plan.out_h, -1)
        xs = interleaved_taps(plan.in_w, plan.out_w, plan.align, plan.compute_dtype, channels)
    _cpu.run_tasks(src, target, ys, xs, *_cpu.schedule(src.shape[0], plan.out_h, target.size), x_period, stream)


def resize_numpy(
    arr: np.ndarray, w_rate: Any, h_rate: Any, size: Any, align: Any, legacy: bool, out: Any, channels_first: bool,
    antialias: Any = False,
) -> np.ndarray:
    """Resize a numpy array (the layouts of :func:`fastinterp.resize`) on the CPU."""
    layout, src = numpy_layout(arr, channels_first)
    plan = make_plan(layout, src.shape, arr.dtype, w_rate, h_rate, size, align, legacy, antialias)
    user_shape = user_out_shape(arr.shape, plan, channels_first)
    if out is None:
        result = np.empty(user_shape, plan.out_dtype)
    else:
        result = check_out_numpy(out, user_shape, plan.out_dtype, arr)
    _, dest = numpy_layout(result, channels_first)
    run_cpu(src, dest, plan, fresh=out is None)
    if not np.may_share_memory(dest, result):  # folding a strided out= had to copy it
        np.copyto(result, dest.reshape(user_shape))
    return result


def _torch_kernel_view(array: np.ndarray, layout: str) -> np.ndarray:
    if layout == "pixels":
        return array.transpose(0, 2, 3, 1)
    return array.reshape(-1, *array.shape[-2:])


def _empty_cpu_tensor(shape: tuple[int, ...], dtype: Any, channels_last: bool) -> Any:
    """A new CPU tensor, allocated by numpy where it can be.

    numpy asks the kernel for huge pages on large arrays and torch.empty does not: the first
    write of a 302 MB output costs several times less (page faults dominate a fresh output).
    """
    import torch

    if dtype == torch.bfloat16:  # numpy has no bfloat16
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        return torch.empty(shape, dtype=dtype, memory_format=memory_format)
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    if channels_last:
        n, c, h, w = shape
        return torch.from_numpy(np.empty((n, h, w, c), np_dtype)).permute(0, 3, 1, 2)
    return torch.from_numpy(np.empty(shape, np_dtype))


def resize_torch_cpu(
    t: Any, w_rate: Any, h_rate: Any, size: Any, align: Any, legacy: bool, out: Any, antialias: Any = False
) -> Any:
    """CPU tensors: zero-copy through numpy; (..., H, W) as in torch, channels_last kept."""
    import torch

    if t.ndim < 2:
        raise ValueError(f"expected a tensor of shape (..., H, W), got shape {tuple(t.shape)}")
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"expected a real floating or integer tensor, got {t.dtype}")
    layout = torch_layout(t)
    compute_t = t.detach().resolve_conj().resolve_neg()
    if compute_t.dtype == torch.bfloat16:  # numpy has no bfloat16: compute in float32
        compute_t = compute_t.float()
    src_np = compute_t.numpy()
    src = _torch_kernel_view(src_np, layout)
    plan = make_plan(layout, src.shape, src_np.dtype, w_rate, h_rate, size, align, legacy, antialias)
    out_dtype = torch.uint8 if legacy else t.dtype
    shape = (*t.shape[:-2], plan.out_h, plan.out_w)
    if out is None:
        result = _empty_cpu_tensor(shape, out_dtype, channels_last=layout == "pixels")
    else:
        if not is_torch_tensor(out):
            raise TypeError(f"out= must be a torch tensor for tensor input, got {type(out).__name__}")
        if out.device.type != "cpu":
            raise ValueError(f"out= is on {out.device}, the input on cpu")
        if tuple(out.shape) != shape or out.dtype != out_dtype:
            raise ValueError(f"out= has shape {tuple(out.shape)} and dtype {out.dtype}, expected {shape} and {out_dtype}")
        check_tensor_out(out)
        result = out
    writable = result if result.dtype != torch.bfloat16 else torch.empty_like(result, dtype=torch.float32)
    dest_np = writable.detach().numpy()
    if out is not None and overlaps(dest_np, src_np):
        raise ValueError("out= overlaps the input; pass a separate tensor")
    dest = _torch_kernel_view(dest_np, layout)
    run_cpu(src, dest, plan, fresh=out is None or writable is not result)
    if not np.may_share_memory(dest, dest_np):  # folding a strided out= had to copy it
        np.copyto(dest_np, dest.reshape(dest_np.shape))
    if writable is not result:
        result.copy_(writable)
    elif out is not None:
        mark_written(result)
    return result

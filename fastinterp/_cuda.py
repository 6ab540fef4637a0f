"""CUDA backend, array side: torch CUDA tensors, numba and CuPy device arrays, and host
arrays copied over, to and from the launches of :mod:`fastinterp._cuda_launch`.

Imported only when a device array, ``backend="cuda"`` or ``device=`` asks for it. For torch,
what a request resolves to (plan, layout, launch) is kept per tensor layout and arguments
(:func:`_torch_request`). The adjoint for :mod:`fastinterp.torch`'s backward is
:func:`resize_adjoint_cuda`.
"""

from __future__ import annotations

import functools
import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import cuda

from ._cuda_antialias import AntialiasLaunch
from ._cuda_kernels import SIMULATED
from ._cuda_launch import (
    AdjointLaunch, Launch, OnDevice, cached_adjoint_launch, cached_forward_launch, flat_numba, numba_stream,
    torch_numpy_dtype,
)
from ._plan import (
    Plan, antialias_applies, check_align, check_antialias, check_out_numpy, check_tensor_out, make_plan, mark_written,
    numpy_layout, user_out_shape,
)


_cuda_checked = False


def require_cuda() -> None:
    """Raise a clear error where numba sees no CUDA device (checked once per process)."""
    global _cuda_checked
    if _cuda_checked:
        return
    if not cuda.is_available():
        raise RuntimeError(
            "no CUDA device is available to numba (no GPU, no driver, or numba-cuda missing: "
            "pip install 'fastinterp[cuda]'); use backend='cpu' with host data"
        )
    _cuda_checked = True


def parse_device(device: Any) -> int | None:
    """The GPU index of ``device`` (``"cuda"``, ``"cuda:1"``, a ``torch.device``); None for the current one."""
    text = str(device)
    if text == "cuda":
        return None
    prefix, _, index = text.partition(":")
    if prefix != "cuda" or not index.isdigit():
        raise ValueError(f"device must be 'cuda' or 'cuda:N', got {device!r}")
    return int(index)


@functools.lru_cache(maxsize=1024, typed=True)
def _cached_plan(*request: Any) -> Plan:
    return make_plan(*request)


def plan_request(
    layout: str, kernel_shape: tuple[int, ...], dtype: np.dtype, w_rate: Any, h_rate: Any, size: Any, align: Any,
    legacy: Any, antialias: Any = False,
) -> Plan:
    """:func:`fastinterp._plan.make_plan`, remembered: repeated calls skip re-validation."""
    request = (layout, kernel_shape, dtype, w_rate, h_rate, size, align, legacy, antialias)
    try:
        hash(request)
    except TypeError:  # a list for size, say: validate without the cache
        return make_plan(*request)
    return _cached_plan(*request)


def _kernel_view(kernel_shape: tuple[int, ...]) -> tuple[int, int]:
    """(outer, inner) of a kernel-layout shape: (P, H, W) planes or (N, H, W, C) pixels."""
    return kernel_shape[0], (kernel_shape[3] if len(kernel_shape) == 4 else 1)


def forward_launch(plan: Plan, kernel_shape: tuple[int, ...], device_id: int) -> Launch | AntialiasLaunch:
    """The launch that resizes a ``kernel_shape`` array as ``plan`` says: plain or antialiased."""
    if plan.antialias:
        out_shape = (kernel_shape[0], plan.out_h, plan.out_w, *kernel_shape[3:])
        return AntialiasLaunch(kernel_shape, out_shape, plan.compute_dtype, False, device_id)
    outer, inner = _kernel_view(kernel_shape)
    return cached_forward_launch(plan, outer, inner, device_id)


def run(plan: Plan, kernel_shape: tuple[int, ...], src: Any, out: Any, stream: Any, device_id: int) -> None:
    """Resize flat C-contiguous device array ``src`` into flat ``out`` (both numba arrays)."""
    forward_launch(plan, kernel_shape, device_id)(src, out, stream)


def _overlap(first: tuple[int, int], second: tuple[int, int]) -> bool:
    """Whether two device memory ranges (start, bytes) overlap."""
    return first[0] < second[0] + second[1] and second[0] < first[0] + first[1]


# -- torch --------------------------------------------------------------------------------


def _torch_range(t: Any) -> tuple[int, int]:
    return t.data_ptr(), t.numel() * t.element_size()


def _check_torch_out(out: Any, t: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    torch = sys.modules["torch"]
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"out= must be a torch tensor for tensor input, got {type(out).__name__}")
    if out.device != t.device:
        where = "the host" if out.device.type == "cpu" else str(out.device)
        raise ValueError(f"out= is on {where}, the input on {t.device}; pass an output on {t.device}")
    if tuple(out.shape) != shape or out.dtype != dtype:
        raise ValueError(f"out= has shape {tuple(out.shape)} and dtype {out.dtype}, expected {shape} and {dtype}")
    check_tensor_out(out)
    if _overlap(_torch_range(out), _torch_range(t)):
        raise ValueError("out= overlaps the input; pass a separate tensor")
    return out


def _current_stream_handle(device_index: int) -> int:
    """torch's current stream on a GPU, as a raw handle (``current_stream()`` builds an object)."""
    return sys.modules["torch"]._C._cuda_getCurrentRawStream(device_index)


@dataclass(frozen=True)
class _TorchRequest:
    """What a resize of one tensor layout with one set of arguments needs, validated once."""

    launch: Launch | AntialiasLaunch
    out_shape: tuple[int, ...]
    out_dtype: Any  # the result's torch dtype
    target_dtype: Any  # what the kernel writes: float32 for a bfloat16 result
    memory_format: Any
    upcast: bool  # bfloat16 input, computed in float32
    copy_input: bool  # not dense in the kernel's layout


#: Requests by everything :func:`make_plan` and the layout depend on (see :func:`_torch_request`).
_torch_requests: dict[tuple[Any, ...], _TorchRequest] = {}
_MAX_TORCH_REQUESTS = 256


def _torch_request(
    t: Any, w_rate: Any, h_rate: Any, size: Any, align: Any, legacy: Any, antialias: Any, device_id: int
) -> _TorchRequest:
    """The request of resizing ``t``, from a cache keyed by what validating it reads.

    The layout follows from shape and strides, the plan from the kernel shape, dtype and
    arguments. Arguments are keyed with their types (``True == 1`` but only one is a valid
    rate), so an identical request skips validation and a different one repeats it;
    unhashable arguments (``size`` as a list) are validated every time.
    """
    size_types = tuple(map(type, size)) if type(size) is tuple else type(size)
    arguments = (w_rate, h_rate, size, align, legacy, antialias)
    key = (t.shape, t.stride(), t.dtype, t.device, *arguments, *map(type, arguments), size_types)
    try:
        request = _torch_requests.get(key)
    except TypeError:
        return _build_torch_request(t, *arguments, device_id)
    if request is None:
        if len(_torch_requests) >= _MAX_TORCH_REQUESTS:
            _torch_requests.clear()
        request = _torch_requests[key] = _build_torch_request(t, *arguments, device_id)
    return request


def _build_torch_request(
    t: Any, w_rate: Any, h_rate: Any, size: Any, align: Any, legacy: Any, antialias: Any, device_id: int
) -> _TorchRequest:
    torch = sys.modules["torch"]
    if t.ndim < 2:
        raise ValueError(f"expected a tensor of shape (..., H, W), got shape {tuple(t.shape)}")
    channels_last = t.ndim == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    upcast = t.dtype == torch.bfloat16
    if channels_last:
        n, c, h, w = t.shape
        layout, kernel_shape = "pixels", (n, h, w, c)
    else:
        layout, kernel_shape = "planes", (math.prod(t.shape[:-2]), *t.shape[-2:])
    compute_dtype = torch.float32 if upcast else t.dtype
    plan = make_plan(layout, kernel_shape, torch_numpy_dtype(compute_dtype), w_rate, h_rate, size, align, legacy,
                     antialias)
    out_dtype = torch.uint8 if legacy else t.dtype
    return _TorchRequest(
        launch=forward_launch(plan, kernel_shape, device_id),
        out_shape=(*t.shape[:-2], plan.out_h, plan.out_w),
        out_dtype=out_dtype,
        target_dtype=torch.float32 if out_dtype == torch.bfloat16 else out_dtype,
        memory_format=memory_format,
        upcast=upcast,
        copy_input=not t.is_contiguous(memory_format=memory_format),
    )


def resize_torch(
    t: Any, w_rate: Any, h_rate: Any, size: Any, align: Any, legacy: bool, out: Any, antialias: Any = False
) -> Any:
    """Resize a CUDA tensor (..., H, W) on its device and torch's current stream, zero-copy.

    A 4-D ``channels_last`` tensor is read and written in that layout. bfloat16, which numba
    has no type for, is computed in float32 and rounded back.
    """
    torch = sys.modules["torch"]
    require_cuda()
    device_index = t.device.index
    with OnDevice(device_index) as device_id:
        request = _torch_request(t, w_rate, h_rate, size, align, legacy, antialias, device_id)
        src = t.detach() if t.requires_grad else t  # (no_grad mode) views of it refuse to be read
        if request.upcast:
            src = src.float()
        if request.copy_input:
            src = src.contiguous(memory_format=request.memory_format)
        if out is None:
            result = torch.empty(request.out_shape, dtype=request.out_dtype, device=t.device,
                                 memory_format=request.memory_format)
            direct = request.target_dtype == request.out_dtype
        else:
            result = _check_torch_out(out, t, request.out_shape, request.out_dtype)
            direct = result.dtype == request.target_dtype and result.is_contiguous(memory_format=request.memory_format)
        target = result if direct else torch.empty(
            request.out_shape, dtype=request.target_dtype, device=t.device, memory_format=request.memory_format)
        request.launch.on_tensors(src, target, _current_stream_handle(device_index))
    if target is not result:
        result.copy_(target)
    elif out is not None:
        mark_written(result)
    return result


# -- numba and CuPy device arrays; host arrays copied in and out ----------------------------


def _is_cupy(arr: Any) -> bool:
    return type(arr).__module__.startswith("cupy")


def _memory_range(arr: Any) -> tuple[int, int]:
    # The simulator's device arrays are numpy arrays underneath.
    interface = arr.__array_interface__ if SIMULATED else arr.__cuda_array_interface__
    return interface["data"][0], arr.nbytes


def _is_c_contiguous(arr: Any) -> bool:
    return arr.flags.c_contiguous if _is_cupy(arr) else arr.is_c_contiguous()


def _check_device_out(out: Any, arr: Any, shape: tuple[int, ...], dtype: np.dtype) -> Any:
    if isinstance(out, np.ndarray):
        raise ValueError("out= is on the host, the input on the GPU; pass a device array of the output's shape")
    if _is_cupy(out) != _is_cupy(arr):
        raise TypeError(f"out= must be of the input's kind ({type(arr).__name__}), got {type(out).__name__}")
    if tuple(out.shape) != shape or np.dtype(out.dtype) != dtype:
        raise ValueError(f"out= has shape {tuple(out.shape)} and dtype {out.dtype}, expected {shape} and {dtype}")
    if _is_cupy(out) and out.device.id != arr.device.id:
        raise ValueError(f"out= is on GPU {out.device.id}, the input on GPU {arr.device.id}")
    if not _is_c_contiguous(out):
        raise ValueError("out= must be C-contiguous")
    if _overlap(_memory_range(out), _memory_range(arr)):
        raise ValueError("out= overlaps the input; pass a separate array")
    return out


def _kernel_shape(shape: tuple[int, ...], dtype: np.dtype, channels_first: bool) -> tuple[str, tuple[int, ...]]:
    """Layout and kernel shape of a numpy-convention array shape (no data is touched)."""
    layout, view = numpy_layout(np.broadcast_to(np.empty((), dtype), shape), channels_first)
    return layout, view.shape


def resize_device_array(
    arr: Any, w_rate: Any, h_rate: Any, size: Any, align: Any, legacy: bool, out: Any, channels_first: bool,
    antialias: Any = False,
) -> Any:
    """Resize a numba or CuPy device array (numpy's layouts) into one of the same kind."""
    require_cuda()
    dtype = np.dtype(arr.dtype)
    layout, kernel_shape = _kernel_shape(tuple(arr.shape), dtype, channels_first)
    plan = plan_request(layout, kernel_shape, dtype, w_rate, h_rate, size, align, legacy, antialias)
    user_shape = user_out_shape(tuple(arr.shape), plan, channels_first)
    if _is_cupy(arr):
        import cupy

        device, stream = arr.device.id, numba_stream(cupy.cuda.get_current_stream().ptr)
        arr = cupy.ascontiguousarray(arr)
        allocate = functools.partial(cupy.empty, user_shape, plan.out_dtype)
    else:
        if not arr.is_c_contiguous():
            raise ValueError("numba device arrays must be C-contiguous; copy it into a contiguous one first")
        device, stream = None, 0
        allocate = functools.partial(cuda.device_array, user_shape, plan.out_dtype)
    with OnDevice(device) as device_id:
        result = allocate() if out is None else _check_device_out(out, arr, user_shape, plan.out_dtype)
        run(plan, kernel_shape, flat_numba(arr), flat_numba(result), stream, device_id)
    return result


def resize_host(
    arr: np.ndarray, w_rate: Any, h_rate: Any, size: Any, align: Any, legacy: bool, out: Any,
    channels_first: bool, device: int | None, antialias: Any = False,
) -> np.ndarray:
    """Copy a numpy array to GPU ``device``, resize it there, and copy the result back."""
    require_cuda()
    layout, src = numpy_layout(arr, channels_first)
    plan = plan_request(layout, src.shape, arr.dtype, w_rate, h_rate, size, align, legacy, antialias)
    user_shape = user_out_shape(arr.shape, plan, channels_first)
    if out is not None:
        check_out_numpy(out, user_shape, plan.out_dtype, arr)
    with OnDevice(device) as device_id:
        src_device = cuda.to_device(np.ascontiguousarray(src, dtype=plan.dtype).reshape(-1))
        out_device = cuda.device_array(math.prod(user_shape), plan.out_dtype)
        run(plan, src.shape, src_device, out_device, 0, device_id)
        result = out_device.copy_to_host().reshape(user_shape)
    if out is None:
        return result
    out[...] = result
    return out


# ----------------------------------------------------------------------------------------
# The adjoint, for fastinterp.torch's backward.

_ADJOINT_DTYPES = ("float32", "float64", "float16")


def _check_adjoint_request(shape: tuple[int, ...], dtype: np.dtype, in_h: Any, in_w: Any, align: Any) -> str:
    for name, value in (("in_h", in_h), ("in_w", in_w)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if len(shape) < 2 or 0 in shape:
        raise ValueError(f"expected a non-empty gradient of shape (..., OH, OW), got {shape}")
    if dtype.name not in _ADJOINT_DTYPES:
        raise TypeError(f"the adjoint supports {', '.join(_ADJOINT_DTYPES)}, got {dtype}")
    return check_align(align, False)


def resize_adjoint_cuda(grad_out: Any, in_h: int, in_w: int, align: str, antialias: Any = False) -> Any:
    """The input gradient of ``resize(x, size=(OH, OW), align=align, antialias=antialias)`` for an
    (..., in_h, in_w) ``x``.

    ``grad_out`` is a CUDA tensor (or a numba device array) of shape (..., OH, OW), float32,
    float64 or float16. Each input pixel sums, in a fixed order, the output pixels that read
    it times their weights (computed in float32, float64 for float64): deterministic, no
    atomics. Returns a new C-contiguous array of shape (..., in_h, in_w) and ``grad_out``'s
    dtype on its device; tensors are read and written on torch's current stream.
    """
    torch = sys.modules.get("torch")
    is_tensor = torch is not None and isinstance(grad_out, torch.Tensor)
    shape = tuple(grad_out.shape)
    dtype = torch_numpy_dtype(grad_out.dtype) if is_tensor else np.dtype(grad_out.dtype)
    align = _check_adjoint_request(shape, dtype, in_h, in_w, align)
    antialias = check_antialias(antialias, align, False) and antialias_applies(in_h, in_w, *shape[-2:])
    if is_tensor and grad_out.device.type != "cuda":
        raise ValueError(f"resize_adjoint_cuda needs a CUDA tensor, got one on {grad_out.device}")
    compute = np.dtype(np.float64 if dtype == np.float64 else np.float32)
    in_shape = (*shape[:-2], in_h, in_w)
    planes = math.prod(shape[:-2])

    def launch(device_id: int) -> AntialiasLaunch | AdjointLaunch:
        if antialias:
            return AntialiasLaunch((planes, *shape[-2:]), (planes, in_h, in_w), compute, True, device_id)
        return cached_adjoint_launch(planes, in_h, in_w, shape[-2], shape[-1], align, compute, device_id)

    if is_tensor:
        grad = grad_out.detach().contiguous()
        with OnDevice(grad.device.index) as device_id:
            grad_in = torch.empty(in_shape, dtype=grad.dtype, device=grad.device)
            launch(device_id).on_tensors(grad, grad_in, _current_stream_handle(grad.device.index))
        return grad_in
    if not _is_c_contiguous(grad_out):
        raise ValueError("numba device arrays must be C-contiguous; copy it into a contiguous one first")
    with OnDevice(None) as device_id:
        grad_in = cuda.device_array(in_shape, dtype)
        launch(device_id)(flat_numba(grad_out), flat_numba(grad_in), 0)
    return grad_in
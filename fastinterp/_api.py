"""The front of :func:`fastinterp.resize`: it validates the request and dispatches it.

What kind of data it is (numpy, torch CPU or CUDA, a GPU array) and which backend runs it
(``backend=``, ``device=``) is decided here; everything else about the request is checked
by :mod:`fastinterp._plan` before any kernel runs. The backends are imported on first use:
the CPU (:mod:`fastinterp._cpu_arrays`), CUDA (:mod:`fastinterp._cuda`) and the torch
operators (:mod:`fastinterp._torch_ops`) for tensors that need a gradient or a graph node.
"""

from __future__ import annotations

from typing import Any

from ._plan import as_numeric_array, check_align, check_antialias, check_tensor_kind, is_torch_tensor, output_size

BACKENDS = ("auto", "cpu", "cuda")


def is_on_gpu(arr: Any) -> bool:
    """Whether ``arr`` lives on a GPU: a CUDA tensor, or an array with the CUDA array
    interface (numba, CuPy), or a device array of numba's CUDA simulator."""
    if is_torch_tensor(arr):
        return arr.device.type == "cuda"
    return hasattr(arr, "__cuda_array_interface__") or type(arr).__module__.startswith("numba.cuda.simulator")


def _check_backend(backend: Any, device: Any, on_gpu: bool) -> None:
    """Refuse any combination that would move data between host and GPU unasked."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "cpu" and device is not None:
        raise ValueError(f"device={device!r} runs on the GPU; it cannot be combined with backend='cpu'")
    if on_gpu and backend == "cpu":
        raise ValueError(
            "backend='cpu' got data on the GPU; fastinterp never moves data silently: copy it to the "
            "host first (tensor.cpu(), device_array.copy_to_host()) or use backend='cuda'"
        )
    if on_gpu and device is not None:
        raise ValueError("device= copies host arrays to the GPU and back; this input is already on the GPU")
    if not on_gpu and backend == "cuda" and device is None:
        raise ValueError(
            "backend='cuda' got host data; pass device='cuda' to copy it to the GPU and back, "
            "or move it to the GPU first"
        )


def resize(
    arr: Any,
    w_rate: float | None = None,
    h_rate: float | None = None,
    *,
    align: str = "center",
    size: tuple[int, int] | None = None,
    out: Any = None,
    channels_first: bool = False,
    legacy: bool = False,
    backend: str = "auto",
    device: str | None = None,
    antialias: bool = False,
) -> Any:
    """Bilinear resize of an image, a stack of channels or a batch of feature maps.

    Parameters
    ----------
    arr
        A numpy array, a torch tensor, or a GPU array (numba device array, CuPy array).
        numpy and GPU arrays: (H, W), (H, W, C) or (N, H, W, C), or with
        ``channels_first=True`` (C, H, W) or (N, C, H, W). torch: (..., H, W) as in torch;
        a 4-D ``torch.channels_last`` tensor is read and written in that layout. CPU tensors
        are used zero-copy through numpy, CUDA tensors zero-copy through the CUDA array
        interface, on torch's current stream.
    w_rate, h_rate
        Scale factors, width first as in the original ``BilinearInterpolation``; one rate
        means both. The output size is ``round(in * rate)`` (Python's round).
    align
        ``"center"`` (torch ``align_corners=False``, OpenCV, Pillow), ``"corners"``
        (``align_corners=True``) or ``"left"`` (TF1 ``resize_bilinear``). Edges are replicated.
    size
        ``(out_h, out_w)``: an exact output size instead of rates.
    out
        Write into this preallocated array (a tensor for tensor input, a device array of the
        input's kind on the input's GPU for GPU input) of the output's shape and dtype; it is
        returned.
    channels_first
        numpy and GPU arrays: read 3-D input as (C, H, W) and 4-D as (N, C, H, W). Refused
        with a tensor (always (..., H, W)).
    legacy
        Reproduce the original script's ``BilinearInterpolation.transform`` bit for bit:
        uint8 output with truncation and wrap-around, black frame, +0.001 px shift. Only
        ``"center"`` and ``"left"`` exist there.
    backend
        ``"auto"`` (the GPU for GPU data, the CPU for host data), ``"cpu"`` or ``"cuda"``.
        Data is never moved between host and GPU unless ``device`` asks for it: ``"cpu"``
        with GPU data and ``"cuda"`` with host data and no ``device`` are errors.
    device
        numpy input only: ``"cuda"`` or ``"cuda:N"`` copies the array to that GPU, resizes
        it there and copies the result back.
    antialias
        Downscaled axes blend every input under the bilinear (triangle) filter widened by the
        scale factor, as torch's ``antialias=True`` and Pillow's BILINEAR: no aliasing. Only
        ``align="center"``, not with ``legacy=True``. Where no axis is downscaled the result is
        the plain path's, bit for bit.

    Returns
    -------
    An array of the input's kind, dtype and device (uint8 with ``legacy=True``). float16 and
    integer inputs are computed in float32; integers are rounded to nearest and saturated.
    On the GPU, float results equal the CPU's bit for bit.
    """
    on_gpu = is_on_gpu(arr)
    _check_backend(backend, device, on_gpu)
    if is_torch_tensor(arr):
        import torch

        check_tensor_kind(arr)
        if channels_first is not False:
            raise ValueError(
                f"channels_first={channels_first!r} is for numpy and GPU arrays; tensors are (..., H, W) as in torch"
            )
        if device is not None:
            raise TypeError("device= copies numpy arrays; move a tensor with tensor.to('cuda') instead")
        if torch.compiler.is_compiling():
            return _resize_while_compiling(arr, w_rate, h_rate, size, align, legacy, out, antialias)
        return _resize_tensor(arr, w_rate, h_rate, size, align, legacy, out, antialias)
    if not isinstance(channels_first, bool):
        raise TypeError(f"channels_first must be True or False, got {channels_first!r}")
    if on_gpu:
        from . import _cuda

        return _cuda.resize_device_array(arr, w_rate, h_rate, size, align, legacy, out, channels_first, antialias)
    arr = as_numeric_array(arr)
    if device is not None:
        from . import _cuda

        index = _cuda.parse_device(device)
        return _cuda.resize_host(arr, w_rate, h_rate, size, align, legacy, out, channels_first, index, antialias)
    from . import _cpu_arrays

    return _cpu_arrays.resize_numpy(arr, w_rate, h_rate, size, align, legacy, out, channels_first, antialias)


def _resize_tensor(
    t: Any, w_rate: Any, h_rate: Any, size: Any, align: Any, legacy: bool, out: Any, antialias: Any
) -> Any:
    """Eager tensors: the differentiable op where a gradient is wanted, else the kernels directly."""
    import torch

    if t.requires_grad and torch.is_grad_enabled():
        return _resize_with_autograd(t, w_rate, h_rate, size, align, legacy, out, antialias)
    if t.device.type == "cuda":
        from . import _cuda

        return _cuda.resize_torch(t, w_rate, h_rate, size, align, legacy, out, antialias)
    if t.device.type != "cpu":
        raise ValueError(f"tensors on {t.device} are not supported")
    from . import _cpu_arrays

    return _cpu_arrays.resize_torch_cpu(t, w_rate, h_rate, size, align, legacy, out, antialias)


def _resize_while_compiling(
    t: Any, w_rate: Any, h_rate: Any, size: Any, align: Any, legacy: bool, out: Any, antialias: Any
) -> Any:
    """Under ``torch.compile``: a floating tensor goes through the registered op (a node of
    the graph, with its fake kernel and gradient); what the op does not cover (integers,
    ``legacy=True``, ``out=``) runs eagerly behind a graph break (an error with ``fullgraph=True``)."""
    import torch

    if not legacy and out is None and t.is_floating_point() and t.ndim >= 2:
        from . import _torch_ops

        align = check_align(align, False)
        antialias = check_antialias(antialias, align, False)
        out_h, out_w = output_size(t.shape[-2], t.shape[-1], w_rate, h_rate, size)
        return _torch_ops.resize_op(t, out_h, out_w, align, antialias)
    return torch.compiler.disable(_resize_tensor)(t, w_rate, h_rate, size, align, legacy, out, antialias)


def _resize_with_autograd(
    t: Any, w_rate: Any, h_rate: Any, size: Any, align: Any, legacy: bool, out: Any, antialias: Any
) -> Any:
    """Tensors that need a gradient go through the differentiable op of :mod:`fastinterp._torch_ops`."""
    if legacy:
        raise ValueError("legacy=True has no gradient (its output is uint8); detach the tensor first")
    if out is not None:
        raise ValueError("out= cannot be used with a tensor that requires grad")
    if t.ndim < 2:
        raise ValueError(f"expected a tensor of shape (..., H, W), got shape {tuple(t.shape)}")
    from . import _torch_ops

    align = check_align(align, False)
    antialias = check_antialias(antialias, align, False)
    out_h, out_w = output_size(t.shape[-2], t.shape[-1], w_rate, h_rate, size)
    return _torch_ops.differentiable_resize(t, out_h, out_w, align, antialias)

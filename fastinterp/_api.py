"""The validating front of :func:`fastinterp.resize`.

Everything about the request is checked here, before any kernel runs: the array's kind,
rank, dtype and layout, the rates or size, ``out=``, the mode. The kernels behind it see
only C-contiguous arrays in one of two layouts:

* ``planes``: (P, H, W), every leading dimension folded into P (channels-first data);
* ``pixels``: (N, H, W, C), channels innermost (channels-last data).
"""

from __future__ import annotations

import math
import numbers
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._coords import AxisTaps, axis_taps, interleaved_taps, legacy_axis_taps
from ._threads import get_num_threads
from .reference import ALIGN_MODES, LEGACY_ALIGN_MODES

#: Most bytes one call agrees to allocate: the output (in its dtype) and the temporaries
#: the call needs (tap tables, a copy for a strided or float16 ``out=``).
MAX_OUTPUT_BYTES = 2**36
#: Bytes of the tap tables per output row or column: two int64 indices, two weights.
TAP_BYTES = 2 * 8 + 2 * 8

#: dtypes of the correct kernels. float16 is computed in float32; integers are computed in
#: float32, rounded to nearest and saturated.
SUPPORTED_DTYPES = tuple(np.dtype(t) for t in ("float32", "float64", "float16", "uint8", "uint16", "int16"))
#: dtypes the original script's arithmetic is reproduced for (integers compute in float64).
LEGACY_DTYPES = tuple(np.dtype(t) for t in ("float32", "float64", "uint8", "uint16", "int16"))

#: Channels-last images with at most this many channels are resized as flat rows of W * C.
INTERLEAVE_MAX_CHANNELS = 16
#: Below this many output elements a call runs on the calling thread only.
SERIAL_THRESHOLD = 1 << 16
#: Target number of tasks per thread, so that uneven tasks still balance.
TASKS_PER_THREAD = 8


@dataclass(frozen=True)
class Plan:
    """A validated request, in kernel terms."""

    layout: str  # "planes" or "pixels"
    in_h: int
    in_w: int
    out_h: int
    out_w: int
    align: str
    legacy: bool
    dtype: np.dtype  # element dtype of the input as the kernels see it
    out_dtype: np.dtype

    @property
    def compute_dtype(self) -> np.dtype:
        if self.dtype == np.float64 or (self.legacy and self.dtype != np.float32):
            return np.dtype(np.float64)
        return np.dtype(np.float32)

    def taps(self) -> tuple[AxisTaps, AxisTaps]:
        make = legacy_axis_taps if self.legacy else axis_taps
        return (
            make(self.in_h, self.out_h, self.align, self.compute_dtype),
            make(self.in_w, self.out_w, self.align, self.compute_dtype),
        )


def is_torch_tensor(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def _is_rate(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_rate(name: str, value: Any) -> float:
    if not _is_rate(value):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:  # an int past float's range, such as 10**400
        raise ValueError(f"{name} must be a finite number > 0, got an int of {value.bit_length()} bits") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def output_size(
    in_h: int, in_w: int, w_rate: Any, h_rate: Any, size: Any
) -> tuple[int, int]:
    """Output (height, width) from rates (``round(in * rate)``, as the original) or ``size``."""
    if size is not None:
        if w_rate is not None or h_rate is not None:
            raise ValueError("give either rates or size=, not both")
        if not isinstance(size, (tuple, list)) or len(size) != 2:
            raise TypeError(f"size must be a pair (out_h, out_w), got {size!r}")
        for value in size:
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"size must hold two integers >= 1, got {tuple(size)!r}")
        return int(size[0]), int(size[1])
    if w_rate is None and h_rate is None:
        raise ValueError("give a rate (w_rate, h_rate) or an output size=(out_h, out_w)")
    if h_rate is None:
        h_rate = w_rate
    if w_rate is None:
        w_rate = h_rate
    w_rate, h_rate = check_rate("w_rate", w_rate), check_rate("h_rate", h_rate)
    if not max(in_h * h_rate, in_w * w_rate) <= MAX_OUTPUT_BYTES:  # (also refuses inf without an OverflowError)
        raise ValueError(
            f"rates (w_rate={w_rate}, h_rate={h_rate}) turn a {in_h}x{in_w} input into a "
            f"{in_h * h_rate:.3g}x{in_w * w_rate:.3g} output, more than fastinterp.MAX_OUTPUT_BYTES"
        )
    out_h, out_w = round(in_h * h_rate), round(in_w * w_rate)
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"rates (w_rate={w_rate}, h_rate={h_rate}) turn a {in_h}x{in_w} input into an empty "
            f"{out_h}x{out_w} output"
        )
    return out_h, out_w


def check_align(align: Any, legacy: bool) -> str:
    modes = LEGACY_ALIGN_MODES if legacy else ALIGN_MODES
    if align not in modes:
        what = "legacy align" if legacy else "align"
        raise ValueError(f"{what} must be one of {modes}, got {align!r}")
    return align


def check_dtype(dtype: np.dtype, legacy: bool) -> np.dtype:
    """The native-byte-order dtype the kernels will see, or a TypeError naming the options."""
    native = dtype.newbyteorder("=") if dtype.byteorder not in ("=", "|") else dtype
    allowed = LEGACY_DTYPES if legacy else SUPPORTED_DTYPES
    if native not in allowed:
        mode = "legacy=True" if legacy else "resize"
        names = ", ".join(str(d) for d in allowed)
        raise TypeError(f"{mode} does not support dtype {dtype}; supported: {names}")
    return native


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:,.1f} GiB" if n_bytes < 2**80 else f"about 10**{len(str(n_bytes)) - 1} bytes"


def check_size(lead: tuple[int, ...], out_h: int, out_w: int, out_dtype: np.dtype, taps_per_row: int = 1) -> None:
    """Refuse, before allocating, a call that would need more than :data:`MAX_OUTPUT_BYTES`.

    Counts the output in its dtype, a temporary of the same size (the worst case: a strided
    or float16 ``out=``, a pixels layout's copy) and the tap tables, ``taps_per_row`` entries per
    output column (the channels of an interleaved row) and one per output row.
    """
    elements = math.prod(lead) * out_h * out_w
    temporary_itemsize = 4 if out_dtype == np.float16 else out_dtype.itemsize  # float16 is computed in float32
    needed = elements * (out_dtype.itemsize + temporary_itemsize) + TAP_BYTES * (out_h + out_w * taps_per_row)
    if needed > MAX_OUTPUT_BYTES:
        shape = (*lead, out_h, out_w)
        raise ValueError(
            f"the output (shape {shape} in the kernels' order) would need {_gib(needed)} with its "
            f"temporaries, more than the {_gib(MAX_OUTPUT_BYTES)} of fastinterp.MAX_OUTPUT_BYTES; resize in pieces"
        )


def schedule(outer: int, out_h: int, out_elements: int) -> tuple[int, bool]:
    """Rows per task and whether to run serially, for ``outer`` images of ``out_h`` rows."""
    if out_elements < SERIAL_THRESHOLD:
        return out_h, True
    threads = get_num_threads()
    if threads == 1:
        return out_h, True
    wanted_tasks = threads * TASKS_PER_THREAD
    if outer >= wanted_tasks:
        return out_h, False
    blocks_per_outer = -(-wanted_tasks // outer)
    return max(1, -(-out_h // blocks_per_outer)), False


def run_cpu(src: np.ndarray, dest: np.ndarray, plan: Plan) -> None:
    """Resize kernel-layout ``src`` into kernel-layout ``dest`` with the numba kernels.

    ``src`` may have any strides and byte order; ``dest`` must already have the right shape
    and the plan's output dtype. Where ``dest`` cannot be written directly (not C-contiguous,
    float16) the kernel writes a C-contiguous temporary that is then copied into it.
    """
    from . import _cpu

    src = np.ascontiguousarray(src, dtype=np.float32 if plan.dtype == np.float16 else plan.dtype)
    direct = dest.flags.c_contiguous and dest.dtype != np.float16 and dest.dtype.isnative
    target = dest if direct else np.empty(dest.shape, np.float32 if dest.dtype == np.float16 else dest.dtype.newbyteorder("="))
    if plan.legacy and plan.layout == "planes":  # the legacy body works on (N, H, W, C)
        src, target = src[..., np.newaxis], target[..., np.newaxis]
    ys, xs = plan.taps()
    if plan.layout == "pixels" and not plan.legacy and src.shape[3] <= INTERLEAVE_MAX_CHANNELS:
        # A few channels make an inner loop too short to vectorise: read each image row as
        # one flat row of W * C values instead, with the planes body and interleaved taps.
        images, channels = src.shape[0], src.shape[3]
        src, target = src.reshape(images, plan.in_h, -1), target.reshape(images, plan.out_h, -1)
        xs = interleaved_taps(plan.in_w, plan.out_w, plan.align, plan.compute_dtype, channels)
    _cpu.run_tasks(src, target, ys, xs, *schedule(src.shape[0], plan.out_h, target.size))
    if not direct:
        np.copyto(dest, target.reshape(dest.shape), casting="unsafe")


def check_distinct_elements(shape: tuple[int, ...], byte_strides: tuple[int, ...], itemsize: int) -> None:
    """Refuse an ``out=`` where two indices reach one memory location (a broadcast or expanded
    view, a hand-made ``as_strided``): its result would depend on the order of the writes.

    Exact for every view numpy or torch slicing makes: sorted by stride, each dimension must
    step over everything the smaller ones span.
    """
    span = itemsize
    for stride, length in sorted((abs(stride), length) for length, stride in zip(shape, byte_strides) if length > 1):
        if stride < span:
            raise ValueError(
                "unsupported operation: more than one element of out= refers to a single memory location "
                "(a broadcast or expanded view?); pass an array with its own memory, e.g. a copy"
            )
        span += stride * (length - 1)


def overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two arrays share an element, exactly (disjoint interleaved views do not);
    a problem too hard to solve quickly counts as an overlap."""
    try:
        return np.shares_memory(a, b, max_work=100_000)
    except np.exceptions.TooHardError:
        return True


def check_tensor_out(out: Any) -> None:
    """What torch's out= ops refuse about the output tensor itself."""
    import torch

    if out.requires_grad and torch.is_grad_enabled():
        raise RuntimeError(
            "resize(): functions with out=... arguments don't support automatic differentiation, "
            "but out= requires grad"
        )
    check_distinct_elements(tuple(out.shape), tuple(st * out.element_size() for st in out.stride()), out.element_size())


def mark_written(out: Any) -> None:
    """Bump a tensor's version counter after writing it behind torch's back (through numpy or
    numba), so that autograd refuses a backward that saved its old values, as for an in-place op."""
    import torch

    torch.autograd.graph.increment_version(out)


def _check_out_numpy(out: Any, shape: tuple[int, ...], dtype: np.dtype, src: np.ndarray) -> np.ndarray:
    refuse_masked(out, "out=")
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out= must be a numpy array for numpy input, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"out= has shape {out.shape}, expected {shape}")
    if out.dtype.newbyteorder("=") != dtype:
        raise TypeError(f"out= has dtype {out.dtype}, expected {dtype}")
    if not out.flags.writeable:
        raise ValueError("out= is read-only")
    check_distinct_elements(out.shape, out.strides, out.itemsize)
    if overlaps(out, src):
        raise ValueError("out= overlaps the input; pass a separate array")
    return out


def _numpy_layout(arr: np.ndarray, channels_first: bool) -> tuple[str, np.ndarray]:
    """Kernel layout and kernel-shaped view of a numpy input (no copy unless folding needs one)."""
    if arr.ndim == 2:
        return "planes", arr[np.newaxis]
    if arr.ndim == 3:
        return ("planes", arr) if channels_first else ("pixels", arr[np.newaxis])
    if arr.ndim == 4:
        return ("planes", arr.reshape(-1, *arr.shape[2:])) if channels_first else ("pixels", arr)
    layouts = "(N, C, H, W)" if channels_first else "(N, H, W, C)"
    raise ValueError(
        f"expected a 2-D (H, W), 3-D or 4-D {layouts} array, got {arr.ndim} dimensions {arr.shape}"
    )


def refuse_masked(arr: Any, what: str) -> None:
    """Masked arrays are refused: the kernels would read the hidden values and drop the mask."""
    if isinstance(arr, np.ma.MaskedArray):
        raise TypeError(
            f"{what} is a masked array; fastinterp does not resize masks: pass arr.filled(value) or arr.data"
        )


def as_numeric_array(arr: Any) -> np.ndarray:
    refuse_masked(arr, "the input")
    if not isinstance(arr, np.ndarray):
        if isinstance(arr, (str, bytes)) or arr is None:
            raise TypeError(f"expected an array, got {type(arr).__name__}")
        arr = np.asarray(arr)
    if arr.dtype.kind not in "uif":
        raise TypeError(f"expected a numeric array (float or integer), got dtype {arr.dtype}")
    return arr


def make_plan(
    layout: str,
    kernel_src_shape: tuple[int, ...],
    dtype: np.dtype,
    w_rate: Any,
    h_rate: Any,
    size: Any,
    align: Any,
    legacy: bool,
) -> Plan:
    """Validate everything about a request that does not depend on where the data lives."""
    if not isinstance(legacy, bool):
        raise TypeError(f"legacy must be True or False, got {legacy!r}")
    align = check_align(align, legacy)
    native = check_dtype(dtype, legacy)
    if 0 in kernel_src_shape:
        raise ValueError(f"cannot resize an empty array (kernel shape {kernel_src_shape})")
    in_h, in_w = kernel_src_shape[1], kernel_src_shape[2]
    out_h, out_w = output_size(in_h, in_w, w_rate, h_rate, size)
    lead = (kernel_src_shape[0],) + kernel_src_shape[3:]
    out_dtype = np.dtype(np.uint8) if legacy else native
    check_size(lead, out_h, out_w, out_dtype, math.prod(lead[1:]))
    return Plan(layout, in_h, in_w, out_h, out_w, align, legacy, native, out_dtype)


def resize_numpy(
    arr: np.ndarray, w_rate: Any, h_rate: Any, size: Any, align: Any, legacy: bool, out: Any, channels_first: bool
) -> np.ndarray:
    layout, src = _numpy_layout(arr, channels_first)
    plan = make_plan(layout, src.shape, arr.dtype, w_rate, h_rate, size, align, legacy)
    user_shape = _user_out_shape(arr.shape, plan, channels_first)
    if out is None:
        result = np.empty(user_shape, plan.out_dtype)
    else:
        result = _check_out_numpy(out, user_shape, plan.out_dtype, arr)
    _, dest = _numpy_layout(result, channels_first)
    run_cpu(src, dest, plan)
    if not np.may_share_memory(dest, result):  # folding a strided out= had to copy it
        np.copyto(result, dest.reshape(user_shape))
    return result


def _user_out_shape(in_shape: tuple[int, ...], plan: Plan, channels_first: bool) -> tuple[int, ...]:
    if len(in_shape) == 2 or channels_first:
        return (*in_shape[:-2], plan.out_h, plan.out_w)
    return (*in_shape[:-3], plan.out_h, plan.out_w, in_shape[-1])


def check_tensor_kind(t: Any) -> None:
    """Refuse, in one line, tensors whose storage the kernels cannot read as a strided array."""
    import torch

    if t.is_nested:
        raise TypeError("nested tensors are not supported; resize each of its tensors (t.unbind())")
    if t.is_quantized:
        raise TypeError(f"quantized tensors ({t.dtype}) are not supported; dequantize() first")
    if t.layout != torch.strided:
        raise TypeError(f"{t.layout} tensors are not supported (sparse or other non-strided layouts); to_dense() first")
    if t.dtype.is_floating_point and t.dtype.itemsize == 1:
        raise TypeError(f"dtype {t.dtype} is not supported; convert to float16, bfloat16 or float32 first")


def _torch_layout(t: Any) -> str:
    """``pixels`` for a 4-D tensor stored channels_last, else ``planes``."""
    import torch

    if t.ndim == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return "pixels"
    return "planes"


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


def resize_torch_cpu(t: Any, w_rate: Any, h_rate: Any, size: Any, align: Any, legacy: bool, out: Any) -> Any:
    """CPU tensors: zero-copy through numpy; (..., H, W) as in torch, channels_last kept."""
    import torch

    if t.ndim < 2:
        raise ValueError(f"expected a tensor of shape (..., H, W), got shape {tuple(t.shape)}")
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"expected a real floating or integer tensor, got {t.dtype}")
    layout = _torch_layout(t)
    compute_t = t.detach().resolve_conj().resolve_neg()
    if compute_t.dtype == torch.bfloat16:  # numpy has no bfloat16: compute in float32
        compute_t = compute_t.float()
    src_np = compute_t.numpy()
    src = _torch_kernel_view(src_np, layout)
    plan = make_plan(layout, src.shape, src_np.dtype, w_rate, h_rate, size, align, legacy)
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
    run_cpu(src, dest, plan)
    if not np.may_share_memory(dest, dest_np):  # folding a strided out= had to copy it
        np.copyto(dest_np, dest.reshape(dest_np.shape))
    if writable is not result:
        result.copy_(writable)
    elif out is not None:
        mark_written(result)
    return result


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
            return _resize_while_compiling(arr, w_rate, h_rate, size, align, legacy, out)
        return _resize_tensor(arr, w_rate, h_rate, size, align, legacy, out)
    if not isinstance(channels_first, bool):
        raise TypeError(f"channels_first must be True or False, got {channels_first!r}")
    if on_gpu:
        from . import _cuda

        return _cuda.resize_device_array(arr, w_rate, h_rate, size, align, legacy, out, channels_first)
    arr = as_numeric_array(arr)
    if device is not None:
        from . import _cuda

        index = _cuda.parse_device(device)
        return _cuda.resize_host(arr, w_rate, h_rate, size, align, legacy, out, channels_first, index)
    return resize_numpy(arr, w_rate, h_rate, size, align, legacy, out, channels_first)


def _resize_tensor(t: Any, w_rate: Any, h_rate: Any, size: Any, align: Any, legacy: bool, out: Any) -> Any:
    """Eager tensors: the differentiable op where a gradient is wanted, else the kernels directly."""
    import torch

    if t.requires_grad and torch.is_grad_enabled():
        return _resize_with_autograd(t, w_rate, h_rate, size, align, legacy, out)
    if t.device.type == "cuda":
        from . import _cuda

        return _cuda.resize_torch(t, w_rate, h_rate, size, align, legacy, out)
    if t.device.type != "cpu":
        raise ValueError(f"tensors on {t.device} are not supported")
    return resize_torch_cpu(t, w_rate, h_rate, size, align, legacy, out)


def _resize_while_compiling(t: Any, w_rate: Any, h_rate: Any, size: Any, align: Any, legacy: bool, out: Any) -> Any:
    """Under ``torch.compile``: a floating tensor goes through the registered op (a node of
    the graph, with its fake kernel and gradient); what the op does not cover (integers,
    ``legacy=True``, ``out=``) runs eagerly behind a graph break (an error with ``fullgraph=True``)."""
    import torch

    if not legacy and out is None and t.is_floating_point() and t.ndim >= 2:
        from . import torch as fastinterp_torch

        out_h, out_w = output_size(t.shape[-2], t.shape[-1], w_rate, h_rate, size)
        return fastinterp_torch._resize_op(t, out_h, out_w, check_align(align, False))
    return torch.compiler.disable(_resize_tensor)(t, w_rate, h_rate, size, align, legacy, out)


def _resize_with_autograd(t: Any, w_rate: Any, h_rate: Any, size: Any, align: Any, legacy: bool, out: Any) -> Any:
    """Tensors that need a gradient go through the differentiable op of :mod:`fastinterp.torch`."""
    if legacy:
        raise ValueError("legacy=True has no gradient (its output is uint8); detach the tensor first")
    if out is not None:
        raise ValueError("out= cannot be used with a tensor that requires grad")
    if t.ndim < 2:
        raise ValueError(f"expected a tensor of shape (..., H, W), got shape {tuple(t.shape)}")
    from . import torch as fastinterp_torch

    out_size = output_size(t.shape[-2], t.shape[-1], w_rate, h_rate, size)
    return fastinterp_torch.resize(t, size=out_size, align=check_align(align, False))

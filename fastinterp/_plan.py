"""Validation, output sizes, layouts and the plan: the bottom of fastinterp, below every backend.

Everything about a request that does not depend on where the data lives is checked here:
the dtype, the rates or size, the alignment, the byte limit, an ``out=`` array, the layout.
The kernels see only C-contiguous arrays in one of two layouts:

* ``planes``: (P, H, W), every leading dimension folded into P (channels-first data);
* ``pixels``: (N, H, W, C), channels innermost (channels-last data).

This module imports numpy and the shared tables only (torch lazily, for tensors): every
backend and the front import it, it imports none of them.
"""

from __future__ import annotations

import math
import numbers
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._coords import NO_PERIOD, AxisTaps, axis_taps, legacy_axis_taps, period_of, tap_period, upscale_factor
from .reference import ALIGN_MODES, ANTIALIAS_ALIGN_MODES, LEGACY_ALIGN_MODES

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
    #: The antialias kernels run: ``antialias=True`` was asked and an axis is downscaled
    #: (see :func:`antialias_applies`). Keyword-only: plans built field by field keep their order.
    antialias: bool = field(default=False, kw_only=True)

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

    def column_period(self, column_taps: AxisTaps | None = None) -> tuple[int, int, int]:
        """The period of the column taps (:func:`~fastinterp._coords.tap_period`), or of a region's
        ``column_taps`` (:func:`~fastinterp._coords.period_of`, for :mod:`fastinterp.dask`); none
        for legacy taps."""
        factor = upscale_factor(self.in_w, self.out_w)
        if self.legacy or not factor:
            return NO_PERIOD
        if column_taps is None:
            return tap_period(self.in_w, self.out_w, self.align, self.compute_dtype)
        return period_of(column_taps, factor)


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


def check_antialias_align(align: Any) -> str:
    """``align`` if antialiasing defines it, else a one-line ValueError."""
    if align not in ANTIALIAS_ALIGN_MODES:
        raise ValueError(
            f"antialias=True is defined only for align in {ANTIALIAS_ALIGN_MODES} (the filter is centred "
            f"on (i + 0.5) * in/out), got {align!r}"
        )
    return align


def check_antialias(antialias: Any, align: Any, legacy: bool) -> bool:
    """``antialias`` if it can be combined with ``align`` and ``legacy``, else a one-line error."""
    if not isinstance(antialias, bool):
        raise TypeError(f"antialias must be True or False, got {antialias!r}")
    if antialias and legacy:
        raise ValueError("antialias=True cannot be combined with legacy=True (the original script has no filter)")
    if antialias:
        check_antialias_align(align)
    return antialias


def antialias_applies(in_h: int, in_w: int, out_h: int, out_w: int) -> bool:
    """Whether ``antialias=True`` changes the result: an axis is downscaled. Otherwise the plain
    path runs, bit for bit (the antialias filter of an upscaled axis is plain bilinear, up to
    rounding), on every backend and in both directions of the torch operators."""
    return out_h < in_h or out_w < in_w


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


def check_out_numpy(out: Any, shape: tuple[int, ...], dtype: np.dtype, src: np.ndarray) -> np.ndarray:
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


def numpy_layout(arr: np.ndarray, channels_first: bool) -> tuple[str, np.ndarray]:
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
    antialias: Any = False,
) -> Plan:
    """Validate everything about a request that does not depend on where the data lives."""
    if not isinstance(legacy, bool):
        raise TypeError(f"legacy must be True or False, got {legacy!r}")
    align = check_align(align, legacy)
    antialias = check_antialias(antialias, align, legacy)
    native = check_dtype(dtype, legacy)
    if 0 in kernel_src_shape:
        raise ValueError(f"cannot resize an empty array (kernel shape {kernel_src_shape})")
    in_h, in_w = kernel_src_shape[1], kernel_src_shape[2]
    out_h, out_w = output_size(in_h, in_w, w_rate, h_rate, size)
    lead = (kernel_src_shape[0],) + kernel_src_shape[3:]
    out_dtype = np.dtype(np.uint8) if legacy else native
    check_size(lead, out_h, out_w, out_dtype, math.prod(lead[1:]))
    antialias = antialias and antialias_applies(in_h, in_w, out_h, out_w)
    return Plan(layout, in_h, in_w, out_h, out_w, align, legacy, native, out_dtype, antialias=antialias)


def user_out_shape(in_shape: tuple[int, ...], plan: Plan, channels_first: bool) -> tuple[int, ...]:
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


def torch_layout(t: Any) -> str:
    """``pixels`` for a 4-D tensor stored channels_last, else ``planes``."""
    import torch

    if t.ndim == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return "pixels"
    return "planes"


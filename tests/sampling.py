"""Test inputs shared by the CPU test modules, and which compiled kernels the CI draws."""

import os

import numpy as np
from hypothesis import settings

#: ``HYPOTHESIS_PROFILE=thorough`` (a nightly run) draws every kernel signature; the CI a covering set.
THOROUGH = os.environ.get("HYPOTHESIS_PROFILE") == "thorough"

#: The antialias kernels with fixed taps compile once per (kernel dtype, integer width factor):
#: about 60 s of CPU each, cold. The CI compiles these: every kernel dtype at factor 2 (a
#: halving, the usual case), and float32 at 3 and 4 as well (an odd step; the benchmark's 96 ->
#: 24). The factor only sets the tap count the loops unroll to, up to 16 at MAX_FIXED_FACTOR 8
#: (whose tables are tested without compiling). Tests that call the kernels themselves run the
#: other factors with the table kernel (the fixed kernel gives its bits); tests through the
#: front draw no size that would take one.
FIXED_TAPS_FACTORS = {
    np.dtype(np.float32): (2, 3, 4),
    np.dtype(np.float64): (2,),
    np.dtype(np.uint8): (2,),
    np.dtype(np.uint16): (2,),
    np.dtype(np.int16): (2,),
}


def sample(rng: np.random.Generator, shape: tuple[int, ...], dtype) -> np.ndarray:
    """Random values of ``dtype``: normal * 10 for floats, the whole range for integers."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return (rng.standard_normal(shape) * 10).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)


def fixed_taps_compiled(dtype, in_w: int, out_w: int) -> bool:
    """Whether the CI compiles the fixed-taps kernel that an antialiased resize of ``dtype`` from
    width ``in_w`` to ``out_w`` may take (float16 runs in the float32 kernels; a width that is not
    an integer downscale takes none, so any such width is fine)."""
    factor, remainder = divmod(in_w, out_w)
    if THOROUGH or remainder or factor < 2:
        return True
    kernel_dtype = np.dtype(np.float32 if np.dtype(dtype) == np.float16 else dtype)
    return factor in FIXED_TAPS_FACTORS[kernel_dtype]


def examples_per_case(cases: int) -> settings:
    """The hypothesis profile's ``max_examples`` shared among ``cases`` parametrized cases of one
    test (one per compiled kernel, so that pytest-xdist spreads the compiles), at least 5 each."""
    return settings(max_examples=max(5, settings().max_examples // cases))

"""Issue 12, item 11: memory is bounded in bytes. Tap-table caches keep at most
``CACHE_BYTES`` each, a wide output's temporaries stay proportional to it, and a call whose
output and temporaries would pass ``MAX_OUTPUT_BYTES`` is refused before allocating.
Measured with tracemalloc (numpy reports its allocations to it), never with a clock."""

import tracemalloc

import numpy as np
import pytest

import fastinterp
from fastinterp import _coords

CACHES = (_coords.axis_taps, _coords.legacy_axis_taps, _coords.interleaved_taps, _coords.inverse_axis_taps)


def _clear_caches():
    for cache in CACHES:
        cache.cache_clear()


def test_tap_caches_are_bounded_in_bytes():
    _clear_caches()
    fastinterp.resize(np.ones((1, 2), np.float32), size=(1, 100_000))  # compiled before measuring
    tracemalloc.start()
    try:
        for k in range(30):  # 30 wide outputs of 4.8 MB of tables each
            fastinterp.resize(np.ones((1, 2), np.float32), size=(1, 200_000 + k))
        retained = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert all(cache.cached_bytes() <= _coords.CACHE_BYTES for cache in CACHES)
    assert retained <= _coords.CACHE_BYTES + 8 * 2**20
    _clear_caches()


def test_a_wide_output_needs_temporaries_proportional_to_it():
    fastinterp.resize(np.ones((1, 2), np.float32), size=(1, 1000))  # compiled before measuring
    _clear_caches()
    tracemalloc.start()
    try:
        out = fastinterp.resize(np.ones((1, 2), np.float32), size=(1, 2_000_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The output, its int64 and float32 tap tables (6x) and their in-place float64
    # construction: 10x here (14x when every step made a new float64 array).
    assert peak <= 12 * out.nbytes
    _clear_caches()


@pytest.mark.parametrize(
    "shape,size,dtype",
    [
        ((1, 2), (1, 2**32), np.float32),  # 16 GiB of output, 128 GiB of tables
        ((1, 2), (2**17, 2**17), np.float64),  # exactly 2**34 elements: 128 GiB
        ((2, 2, 2, 3), (2**16, 2**16), np.uint16),  # 2 images of 3 channels: 96 GiB
    ],
)
def test_calls_past_the_byte_limit_are_refused_before_allocating(shape, size, dtype):
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"would need [\d,.]+ GiB with its temporaries") as error:
            fastinterp.resize(np.ones(shape, dtype), size=size)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "\n" not in str(error.value)
    assert peak < 2**20


def test_the_limit_counts_the_dtype():
    """The same element count passes in uint8 and is refused in float64."""
    elements = fastinterp.MAX_OUTPUT_BYTES // 4
    side = int(elements**0.5)
    with pytest.raises(ValueError, match="GiB"):
        fastinterp._plan.check_size((1,), side, side, np.dtype(np.float64))
    fastinterp._plan.check_size((1,), side, side, np.dtype(np.uint8))

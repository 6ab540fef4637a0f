"""The per-axis tables every backend reads, against the reference and the original."""

import math

import numpy as np
import pytest

from fastinterp import reference
from fastinterp._coords import axis_taps, inverse_axis_taps, legacy_axis_taps
from benchmarks.original_bilinear import BilinearInterpolation as Original

SIZES = [(4, 9), (9, 4), (1, 5), (5, 1), (3, 3), (12, 96), (7, 3)]


@pytest.mark.parametrize("in_size, out_size", SIZES)
@pytest.mark.parametrize("align", reference.ALIGN_MODES)
def test_taps_are_the_reference_taps(in_size, out_size, align):
    taps = axis_taps(in_size, out_size, align, np.dtype(np.float64))
    for d in range(out_size):
        first, second, w_second = reference.taps(d, in_size, out_size, align)
        assert (taps.first[d], taps.second[d]) == (first, second)
        if first != second:  # clamped taps weigh the one pixel 1 and 0 (same value, exactly)
            assert taps.w_second[d] == w_second and taps.w_first[d] == 1.0 - w_second
        else:
            assert (taps.w_first[d], taps.w_second[d]) == (1.0, 0.0)


@pytest.mark.parametrize("in_size, out_size", SIZES)
@pytest.mark.parametrize("align", reference.LEGACY_ALIGN_MODES)
def test_legacy_taps_are_the_originals_coordinates(in_size, out_size, align):
    taps = legacy_axis_taps(in_size, out_size, align, np.dtype(np.float64))
    original = Original(1, 1, align=align)
    for d in range(out_size):
        src = original.get_src_h(d, in_size, out_size)
        assert (taps.first[d], taps.second[d]) == (int(src), math.ceil(src))
        assert (taps.w_first[d], taps.w_second[d]) == (math.ceil(src) - src, src - int(src))


@pytest.mark.parametrize("in_size, out_size", SIZES)
@pytest.mark.parametrize("align", reference.ALIGN_MODES)
def test_inverse_taps_are_the_transpose(in_size, out_size, align):
    start, outputs, weights = inverse_axis_taps(in_size, out_size, align, np.dtype(np.float64))
    dense = np.zeros((in_size, out_size))
    for k in range(in_size):
        readers = outputs[start[k] : start[k + 1]]
        assert np.all(np.diff(readers) > 0)  # ascending, each output once: a fixed summation order
        dense[k, readers] = weights[start[k] : start[k + 1]]
    expected = reference.interpolation_matrix(in_size, out_size, align).T
    np.testing.assert_allclose(dense, expected, rtol=0, atol=1e-15)


def test_tables_are_read_only_and_cached():
    taps = axis_taps(5, 9, "center", np.dtype(np.float32))
    assert taps is axis_taps(5, 9, "center", np.dtype(np.float32))
    with pytest.raises(ValueError, match="read-only"):
        taps.first[0] = 3

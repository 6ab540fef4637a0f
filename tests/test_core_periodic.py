"""The planes body's gather-free horizontal pass at periodic column taps (an integer upscale:
``fastinterp._coords.tap_period``) against its gathers and the plain-loop reference, bit for bit."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastinterp
from fastinterp import _cpu
from fastinterp._coords import NO_PERIOD, AxisTaps, axis_taps, period_of, tap_period
from fastinterp._plan import make_plan
from sampling import sample
from test_fixed_factor import DTYPES, assert_same_bits, with_specials
from test_resize import ALIGNS, assert_matches_reference, reference_planes

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


def planes_path(src: np.ndarray, out_hw: tuple[int, int], align: str, x_period: tuple[int, int, int], serial: bool):
    """``_cpu.run_tasks`` on (P, H, W) planes as the front runs it, with the column period given."""
    plan = make_plan("planes", src.shape, src.dtype, None, None, out_hw, align, False)
    compute_src = src.astype(np.float32) if src.dtype == np.float16 else src
    out = np.empty((src.shape[0], *out_hw), compute_src.dtype)
    ys, xs = plan.taps()
    rows_per_task = out_hw[0] if serial else max(1, out_hw[0] // 3)
    _cpu.run_tasks(compute_src, out, ys, xs, rows_per_task, serial, x_period)
    return out.astype(src.dtype)


@given(
    in_size=st.integers(1, 40),
    factor=st.integers(1, 20),
    extra=st.sampled_from([0, 0, 0, 1, -1]),  # mostly integer factors, a few sizes just off them
    align=st.sampled_from(ALIGNS),
    dtype=st.sampled_from([F32, F64]),
)
def test_a_period_describes_the_tap_tables(in_size, factor, extra, align, dtype):
    out_size = max(1, in_size * factor + extra)
    start, period, count = tap_period(in_size, out_size, align, dtype)
    taps = axis_taps(in_size, out_size, align, dtype)
    if period == 0:
        # Every integer upscale of at least two pixels has one where align="center" or "left".
        assert not (extra == 0 and factor >= 2 and in_size >= 2 and align != "corners")
        return
    assert period == out_size // in_size and count >= 1
    columns = np.arange(start, start + count * period)
    first = taps.first[start] + (columns - start) // period
    assert np.array_equal(taps.first[columns], first) and np.array_equal(taps.second[columns], first + 1)


def assert_describes(taps: AxisTaps, found: tuple[int, int, int]) -> None:
    start, period, count = found
    columns = np.arange(start, start + count * period)
    first = taps.first[start] + (columns - start) // period
    assert np.array_equal(taps.first[columns], first) and np.array_equal(taps.second[columns], first + 1)


@given(region_start=st.integers(0, 191), width=st.integers(1, 192))
def test_a_region_of_the_columns_has_the_period_of_its_full_runs(region_start, width):
    """A region's taps (as fastinterp.dask slices them) start and end anywhere in a run: the
    period covers whole runs only, and every whole run of the region."""
    taps = axis_taps(24, 192, "center", F32)
    region = AxisTaps(*(array[region_start : region_start + width] for array in taps))
    start, period, count = period_of(region, 8)
    if period:
        assert period == 8
        assert_describes(region, (start, period, count))
    # Runs i (columns 8i + 4 .. 8i + 11, inputs i and i + 1) wholly inside the region.
    whole_runs = sum(1 for i in range(23) if region_start <= 8 * i + 4 and 8 * i + 12 <= region_start + width)
    assert count >= whole_runs


def test_the_headline_upscale_is_periodic():
    """(24, 24) x8, align="center": outputs 8i + 4 .. 8i + 11 read inputs i and i + 1, for i < 23."""
    assert tap_period(24, 192, "center", F32) == (4, 8, 23)
    assert tap_period(24, 192, "left", F64) == (0, 8, 23)
    assert tap_period(24, 200, "center", F32) == NO_PERIOD


@given(
    in_h=st.integers(1, 12),
    in_w=st.integers(1, 12),
    factor=st.sampled_from([2, 3, 4, 5, 8, 8, 12, 16, 16, 24]),
    out_h=st.integers(1, 30),
    planes=st.integers(1, 3),
    align=st.sampled_from(ALIGNS),
    dtype=st.sampled_from(DTYPES),
    special_share=st.sampled_from([0.0, 0.2]),
    serial=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_same_bits_as_the_gathers(in_h, in_w, factor, out_h, planes, align, dtype, special_share, serial, seed):
    """The period changes no bit: every dtype (integers rounded half to even and saturated),
    NaN and infinities (an edge column still reads its second tap: inf * 0 is NaN), each factor
    a multiple of the vector's lanes or not, and the front's result is the same."""
    rng = np.random.default_rng(seed)
    src = with_specials(rng, sample(rng, (planes, in_h, in_w), dtype), special_share)
    out_hw = (out_h, in_w * factor)
    compute = F64 if dtype == np.float64 else F32
    period = tap_period(in_w, out_hw[1], align, compute)
    gathered = planes_path(src, out_hw, align, NO_PERIOD, serial)
    assert_same_bits(planes_path(src, out_hw, align, period, serial), gathered)
    assert_same_bits(fastinterp.resize(src, size=out_hw, align=align, channels_first=True), gathered)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("factor", [8, 16])
def test_matches_the_plain_loop_reference(dtype, factor):
    """Through the front, channels-first, at factors whose period fills whole vectors."""
    rng = np.random.default_rng(5)
    planes = sample(rng, (4, 7, 6), dtype)
    out_hw = (7 * factor, 6 * factor)
    assert tap_period(6, out_hw[1], "center", F64 if dtype == np.float64 else F32)[1] == factor
    got = fastinterp.resize(planes, size=out_hw, channels_first=True)
    assert_matches_reference(got, reference_planes(planes, *out_hw, "center"), dtype)


def test_a_wrong_period_is_seen():
    """The comparison above can fail: the kernel follows the period it is given, and one shifted
    by a column reads the wrong inputs."""
    src = sample(np.random.default_rng(0), (1, 6, 6), np.float32)
    start, period, count = tap_period(6, 48, "center", F32)
    right = planes_path(src, (48, 48), "center", (start, period, count), serial=True)
    wrong = planes_path(src, (48, 48), "center", (start + 1, period, count - 1), serial=True)
    assert not np.array_equal(right, wrong)


def test_the_headline_case_through_the_thread_pool():
    """(P, 24, 24) x8 float32 as the benchmark runs it (P = 2048 there), against its gathers."""
    src = sample(np.random.default_rng(2), (64, 24, 24), np.float32)
    got = fastinterp.resize(src, 8, channels_first=True)
    assert_same_bits(got, planes_path(src, (192, 192), "center", NO_PERIOD, serial=False))


def test_the_vector_blend_refuses_arrays_that_are_not_contiguous():
    """_blend_vector reads and writes raw memory from ``start`` on: a strided array would be read
    as if it were contiguous, so it is refused when the kernel is typed, never run."""
    from numba import njit
    from numba.core.errors import TypingError

    @njit
    def blend(row, weights):
        _cpu._blend_vector(row, 0, np.float32(1), np.float32(2), weights, weights)

    row, weights = np.zeros(8, np.float32), np.arange(16, dtype=np.float32)
    blend(row, weights[:8])
    np.testing.assert_array_equal(row, 3 * weights[:8])
    with pytest.raises(TypingError):
        blend(row, weights[::2])

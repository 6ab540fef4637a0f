"""The legacy path: the original script's pixels, bit for bit.

Chain of trust: the verbatim original -> ``reference.legacy_transform`` -> the compiled
kernel (through ``resize(legacy=True)`` and the drop-in class). Every comparison is
``np.array_equal``, never a tolerance.
"""

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastinterp
from fastinterp import reference
from benchmarks.original_bilinear import BilinearInterpolation as Original

LEGACY_DTYPES = [np.float32, np.float64, np.uint8, np.uint16, np.int16]


def feature_map(rng, shape, dtype):
    """Values that exercise truncation, wrap-around and sign: -400..700 for signed/float."""
    dtype = np.dtype(dtype)
    if dtype.kind == "u":
        return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    if dtype.kind == "i":
        return rng.integers(-400, 700, shape).astype(dtype)
    return (rng.standard_normal(shape) * 200 + 100).astype(dtype)


def original(img, w_rate, h_rate, align="center"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN/inf casts warn in numpy
        return Original(w_rate, h_rate, align=align).transform(img)


@pytest.mark.parametrize("align", ["center", "left"])
@pytest.mark.parametrize("dtype", LEGACY_DTYPES)
def test_reference_equals_original(align, dtype):
    rng = np.random.default_rng(1)
    img = feature_map(rng, (5, 4, 3), dtype)
    for w_rate, h_rate in [(8, 8), (2.5, 3), (0.5, 1.75)]:
        expected = original(img, w_rate, h_rate, align)
        assert np.array_equal(reference.legacy_transform(img, w_rate, h_rate, align), expected)


@pytest.mark.parametrize("align", ["center", "left"])
def test_src_coords_equal_original(align):
    ours, theirs = fastinterp.BilinearInterpolation(8, 8, align=align), Original(8, 8, align=align)
    for source, goal in [(12, 96), (7, 3), (1, 5), (24, 192), (5, 13)]:
        for d in range(goal):
            assert ours.get_src_h(d, source, goal) == theirs.get_src_h(d, source, goal)
            assert ours.get_src_w(d, source, goal) == theirs.get_src_w(d, source, goal)


@pytest.mark.parametrize("align", ["center", "left"])
@pytest.mark.parametrize("dtype", LEGACY_DTYPES)
@pytest.mark.parametrize("rate", [1, 2, 3, 5, 8, 16, 0.5, 1.5, 2.75])
def test_kernel_bit_exact(align, dtype, rate):
    rng = np.random.default_rng(int(rate * 100))
    img = feature_map(rng, (6, 5, 7), dtype)
    got = fastinterp.resize(img, rate, align=align, legacy=True)
    assert got.dtype == np.uint8
    assert np.array_equal(got, reference.legacy_transform(img, rate, rate, align))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_bit_exact_on_special_values(dtype):
    """NaN, infinities, huge and negative values go through numpy's int32 cast rules."""
    specials = [np.nan, np.inf, -np.inf, -1.0, 255.5, 256.0, 300.0, -300.7, 1e9, 2.0**31 + 5, -(2.0**31) - 9, 1e30]
    rng = np.random.default_rng(7)
    img = rng.choice(np.array(specials, dtype=dtype), size=(4, 4, len(specials)))
    img[..., : len(specials)] = np.array(specials, dtype=dtype)  # every special in every pixel slot
    for align in ("center", "left"):
        got = fastinterp.resize(img, 3, 2, align=align, legacy=True)
        assert np.array_equal(got, original(img, 3, 2, align))


def test_black_frame_and_truncation_are_reproduced():
    """The two defects that define the legacy output, checked directly."""
    img = np.full((12, 12, 1), 200.7, dtype=np.float32)
    got = fastinterp.resize(img, 8, legacy=True)[..., 0]
    frame = np.ones((96, 96), bool)
    frame[4:92, 4:92] = False
    assert (got[frame] == 0).all()  # center: rate/2 px of black on every side
    assert set(np.unique(got[~frame])) <= {199, 200}  # truncated, never rounded up to 201


@given(
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    c=st.integers(1, 4),
    w_rate=st.sampled_from([0.5, 1, 1.25, 2, 3, 7.5, 8]),
    h_rate=st.sampled_from([0.5, 1, 1.5, 2, 4, 8]),
    align=st.sampled_from(["center", "left"]),
    dtype=st.sampled_from(LEGACY_DTYPES),
    seed=st.integers(0, 2**16),
)
def test_dropin_matches_original(h, w, c, w_rate, h_rate, align, dtype, seed):
    img = feature_map(np.random.default_rng(seed), (h, w, c), dtype)
    if round(h * h_rate) == 0 or round(w * w_rate) == 0:
        return  # the original divides by zero there; resize refuses (tested in test_errors)
    got = fastinterp.BilinearInterpolation(w_rate, h_rate, align=align).transform(img)
    assert np.array_equal(got, original(img, w_rate, h_rate, align))


def test_legacy_channels_first_and_batches_match_per_image():
    rng = np.random.default_rng(3)
    stack = feature_map(rng, (2, 3, 5, 4), np.float32)  # (N, C, H, W)
    got = fastinterp.resize(stack, 4, legacy=True, channels_first=True)
    for n in range(2):
        expected = reference.legacy_transform(stack[n].transpose(1, 2, 0), 4, 4)
        assert np.array_equal(got[n], expected.transpose(2, 0, 1))


def test_dropin_correct_mode_keeps_dtype_and_replicates_edges():
    img = np.full((12, 12, 2), 0.25, dtype=np.float32)
    bi = fastinterp.BilinearInterpolation(8, 8, legacy=False)
    got = bi.transform(img)
    assert got.dtype == np.float32 and got.shape == (96, 96, 2)
    assert np.allclose(got, 0.25, rtol=0, atol=1e-7)  # no black frame, no truncation


def test_dropin_set_rate_and_large_stack():
    bi = fastinterp.BilinearInterpolation(8, 8)
    bi.set_rate(2, 3)
    img = feature_map(np.random.default_rng(5), (24, 24, 2048), np.float32)
    got = bi.transform(img)
    assert got.shape == (72, 48, 2048)
    sub = img[..., ::97]
    assert np.array_equal(got[..., ::97], reference.legacy_transform(sub, 2, 3))


@pytest.mark.parametrize("rate", [5, 8])
def test_kernel_bit_exact_whatever_rows_each_task_takes(rate):
    """A task's rows may start and end anywhere, serially or in parallel: every split of the
    output rows into tasks gives the reference's pixels."""
    from fastinterp import _cpu
    from fastinterp._coords import legacy_axis_taps

    img = feature_map(np.random.default_rng(rate), (7, 6, 9), np.float32)
    expected = reference.legacy_transform(img, rate, rate)
    out_h, out_w = expected.shape[:2]
    ys = legacy_axis_taps(7, out_h, "center", np.dtype(np.float32))
    xs = legacy_axis_taps(6, out_w, "center", np.dtype(np.float32))
    for rows_per_task in (1, 2, 3, 5, 6, 7, 11, out_h):
        for serial in (True, False):
            out = np.full((1, *expected.shape), 77, dtype=np.uint8)
            _cpu.run_tasks(img[np.newaxis], out, ys, xs, rows_per_task, serial)
            assert np.array_equal(out[0], expected), (rows_per_task, serial)

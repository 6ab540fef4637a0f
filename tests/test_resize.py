"""The correct kernels against the plain-loop reference, torch and OpenCV."""

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fastinterp
from fastinterp import reference
from fastinterp._coords import axis_taps
from sampling import sample

ALIGNS = ["center", "left", "corners"]
FLOAT_TOL = {np.float32: 2e-6, np.float64: 1e-13, np.float16: 2e-3}


def reference_planes(planes, out_h, out_w, align):
    """(P, H, W) -> (P, out_h, out_w) float64 with the plain-loop reference."""
    return np.stack([reference.bilinear_resize(p, out_h, out_w, align) for p in planes])


def assert_matches_reference(got, expected, dtype):
    """Floats: within float rounding. Integers: exact, except where float32 arithmetic (a few
    ulp of the value: 0.004 at 65535) may land on the other side of a .5 rounding boundary
    than the float64 reference."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        scale = max(1.0, float(np.nanmax(np.abs(expected))))
        np.testing.assert_allclose(got.astype(np.float64), expected, rtol=0, atol=FLOAT_TOL[dtype.type] * scale * 4)
        return
    exact = reference.to_integer_dtype(expected, dtype)
    differs = got != exact
    near_half = np.abs(np.abs(expected - np.floor(expected)) - 0.5) < 1e-4 + 1e-6 * np.abs(expected)
    assert not (differs & ~near_half).any(), f"{differs.sum()} integer pixels off the reference"
    assert (np.abs(got.astype(np.int64) - exact) <= 1).all()


@pytest.mark.parametrize("align", ALIGNS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.uint8, np.uint16, np.int16])
@pytest.mark.parametrize("out_size", [(13, 9), (1, 1), (5, 7), (40, 3)])
def test_planes_match_reference(align, dtype, out_size):
    rng = np.random.default_rng(0)
    planes = sample(rng, (3, 5, 7), dtype)
    got = fastinterp.resize(planes, size=out_size, align=align, channels_first=True)
    assert got.dtype == dtype and got.shape == (3, *out_size)
    assert_matches_reference(got, reference_planes(planes, *out_size, align), dtype)


@pytest.mark.parametrize("align", ALIGNS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8, np.uint16, np.int16])
@pytest.mark.parametrize("channels", [1, 3, 40])  # flat interleaved rows up to 16 channels, pixels above
def test_channels_last_equals_channels_first_bitwise(align, dtype, channels):
    rng = np.random.default_rng(1)
    chw = sample(rng, (channels, 9, 11), dtype)
    hwc = np.ascontiguousarray(chw.transpose(1, 2, 0))
    a = fastinterp.resize(chw, 2.5, 3, align=align, channels_first=True)
    b = fastinterp.resize(hwc, 2.5, 3, align=align)
    assert np.array_equal(a, b.transpose(2, 0, 1))  # same arithmetic, same order


@pytest.mark.parametrize("align", ALIGNS)
def test_one_pixel_input_is_replicated(align):
    got = fastinterp.resize(np.array([[3.5]], np.float32), size=(4, 6), align=align)
    assert got.shape == (4, 6) and (got == 3.5).all()


def test_constant_image_stays_constant_at_the_edges():
    """No black frame: edges are replicated, never zero-padded."""
    got = fastinterp.resize(np.full((12, 12), 7.0, np.float32), 8)
    np.testing.assert_allclose(got, 7.0, rtol=0, atol=1e-5)


@pytest.mark.parametrize("align,align_corners", [("center", False), ("corners", True)])
@pytest.mark.parametrize("size", [(96, 96), (17, 5), (3, 2)])
def test_matches_torch_interpolate(align, align_corners, size):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 12, 9)).astype(np.float32)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(x), size=size, mode="bilinear", align_corners=align_corners
    ).numpy()
    got = fastinterp.resize(x, size=size, align=align, channels_first=True)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5)


def test_torch_channels_last_tensor_kept_and_correct():
    x = torch.randn(2, 16, 7, 5).to(memory_format=torch.channels_last)
    got = fastinterp.resize(x, 4, 3)
    assert got.is_contiguous(memory_format=torch.channels_last) and not got.is_contiguous()
    expected = torch.nn.functional.interpolate(x, size=(21, 20), mode="bilinear")
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8])
def test_torch_dtypes_round_trip(dtype):
    x = (torch.rand(3, 6, 5) * 200).to(dtype)
    got = fastinterp.resize(x, size=(12, 10))
    assert got.dtype == dtype and got.shape == (3, 12, 10)
    expected = reference_planes(x.float().numpy(), 12, 10, "center")
    atol = {torch.float16: 0.2, torch.bfloat16: 1.0}.get(dtype, 0.51)  # one unit of the stored type
    np.testing.assert_allclose(got.float().numpy(), expected, rtol=0, atol=atol)


def test_torch_out_tensor_is_written():
    x = torch.randn(3, 5, 5)
    out = torch.full((3, 10, 10), float("nan"))
    result = fastinterp.resize(x, 2, out=out)
    assert result is out
    torch.testing.assert_close(out, torch.nn.functional.interpolate(x[None], size=(10, 10), mode="bilinear")[0])


def test_matches_opencv():
    rng = np.random.default_rng(3)
    img = rng.standard_normal((12, 12, 3)).astype(np.float32)
    expected = cv2.resize(img, (96, 96), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(fastinterp.resize(img, 8), expected, rtol=0, atol=1e-5)
    u8 = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    diff = fastinterp.resize(u8, 8).astype(int) - cv2.resize(u8, (96, 96), interpolation=cv2.INTER_LINEAR)
    assert np.abs(diff).max() <= 1  # OpenCV's 11-bit fixed point is off by one on some pixels


@pytest.mark.parametrize("channels_first", [False, True])
def test_many_channels(channels_first):
    shape = (100_000, 2, 3) if channels_first else (2, 3, 100_000)
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    got = fastinterp.resize(x, 2, channels_first=channels_first)
    planes = x if channels_first else x.transpose(2, 0, 1)
    got_planes = got if channels_first else got.transpose(2, 0, 1)
    idx = [0, 1, 77_777, 99_999]
    assert_matches_reference(got_planes[idx], reference_planes(planes[idx], 4, 6, "center"), np.float32)


def test_non_contiguous_big_endian_read_only_inputs():
    rng = np.random.default_rng(5)
    base = rng.standard_normal((8, 10, 12)).astype(np.float32)
    expected = fastinterp.resize(np.ascontiguousarray(base[::2, 1::2, ::3]), 3, channels_first=True)
    strided = base[::2, 1::2, ::3]
    big_endian = strided.astype(">f4")
    read_only = strided.copy()
    read_only.setflags(write=False)
    for variant in (strided, big_endian, read_only, np.asfortranarray(strided)):
        assert np.array_equal(fastinterp.resize(variant, 3, channels_first=True), expected)


def test_strided_out_is_filled():
    x = np.random.default_rng(6).standard_normal((2, 3, 4, 5)).astype(np.float32)
    big = np.full((2, 3, 8, 20), np.nan, np.float32)
    out = big[:, :, :, ::2]  # non-contiguous
    fastinterp.resize(x, 2, out=out, channels_first=True)
    assert np.array_equal(out, fastinterp.resize(x, 2, channels_first=True))
    assert np.isnan(big[:, :, :, 1::2]).all()  # nothing outside out= was touched


def test_nan_spreads_only_to_pixels_that_read_it():
    img = np.zeros((6, 6), np.float32)
    img[2, 3] = np.nan
    got = fastinterp.resize(img, 4)
    ys, xs = axis_taps(6, 24, "center", np.dtype(np.float64)), axis_taps(6, 24, "center", np.dtype(np.float64))
    reads_row = (ys.first == 2) | (ys.second == 2)
    reads_col = (xs.first == 3) | (xs.second == 3)
    assert np.array_equal(np.isnan(got), reads_row[:, None] & reads_col[None, :])


def test_integers_saturate():
    x = np.array([[0, 65535], [65535, 0]], np.uint16)
    got = fastinterp.resize(x, 3)
    assert got.max() == 65535 and got.min() == 0


@given(
    layout=st.sampled_from(["hw", "hwc", "chw", "nhwc", "nchw"]),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    c=st.integers(1, 5),
    out_h=st.integers(1, 30),
    out_w=st.integers(1, 30),
    align=st.sampled_from(ALIGNS),
    dtype=st.sampled_from([np.float32, np.float64, np.float16, np.uint8, np.uint16, np.int16]),
    seed=st.integers(0, 2**16),
)
def test_hypothesis_any_layout_dtype_mode(layout, h, w, c, out_h, out_w, align, dtype, seed):
    rng = np.random.default_rng(seed)
    shape = {"hw": (h, w), "hwc": (h, w, c), "chw": (c, h, w), "nhwc": (2, h, w, c), "nchw": (2, c, h, w)}[layout]
    x = sample(rng, shape, dtype)
    channels_first = layout in ("chw", "nchw")
    got = fastinterp.resize(x, size=(out_h, out_w), align=align, channels_first=channels_first)
    # Bring everything to (P, H, W) planes for the reference.
    to_planes = {
        "hw": lambda a: a[None],
        "hwc": lambda a: a.transpose(2, 0, 1),
        "chw": lambda a: a,
        "nhwc": lambda a: a.transpose(0, 3, 1, 2).reshape(-1, *a.shape[1:3]),
        "nchw": lambda a: a.reshape(-1, *a.shape[2:]),
    }[layout]
    assert got.dtype == dtype
    assert_matches_reference(to_planes(got), reference_planes(to_planes(x), out_h, out_w, align), dtype)


def test_large_work_uses_parallel_path_and_agrees_with_serial():
    x = np.random.default_rng(8).standard_normal((64, 24, 24)).astype(np.float32)
    parallel = fastinterp.resize(x, 8, channels_first=True)
    threads = fastinterp.get_num_threads()
    fastinterp.set_num_threads(1)
    try:
        serial = fastinterp.resize(x, 8, channels_first=True)
    finally:
        fastinterp.set_num_threads(threads)
    assert np.array_equal(parallel, serial)


def test_torch_non_contiguous_input_and_strided_out():
    x = torch.randn(2, 3, 5, 6)
    expected = torch.nn.functional.interpolate(x.transpose(2, 3), size=(12, 10), mode="bilinear")
    torch.testing.assert_close(fastinterp.resize(x.transpose(2, 3), 2), expected, rtol=0, atol=2e-6)
    big = torch.full((2, 3, 10, 24), float("nan"))
    out = big[..., ::2]
    fastinterp.resize(x, 2, out=out)
    torch.testing.assert_close(out, torch.nn.functional.interpolate(x, size=(10, 12), mode="bilinear"), rtol=0, atol=2e-6)
    assert big[..., 1::2].isnan().all()

"""The fixed-factor kernels (``fastinterp._cpu_fixed``: align="center", exactly 2x up or 1/2 down)
against the tap-table kernels of ``fastinterp._cpu``, bit for bit, and against the reference."""

import numpy as np
import pytest
import torch
from numba import njit
from hypothesis import given
from hypothesis import strategies as st

import fastinterp
from fastinterp import _cpu, _cpu_fixed, reference
from fastinterp._coords import interleaved_taps
from fastinterp._plan import INTERLEAVE_MAX_CHANNELS, make_plan
from sampling import sample
from test_hardening_fork import _run as run_in_fresh_interpreter

DTYPES = [np.float32, np.float64, np.float16, np.uint8, np.uint16, np.int16]


def table_path(src: np.ndarray, layout: str, out_hw: tuple[int, int]) -> np.ndarray:
    """What the tap tables compute for kernel-layout ``src`` ((P, H, W) planes or (N, H, W, C) pixels):
    ``_cpu.run_tasks`` with the plan's taps, as ``_cpu_arrays._run_plain`` runs them off the fixed factors."""
    plan = make_plan(layout, src.shape, src.dtype, None, None, out_hw, "center", False)
    compute_src = src.astype(np.float32) if src.dtype == np.float16 else src
    out = np.empty((src.shape[0], *out_hw, *src.shape[3:]), compute_src.dtype)
    ys, xs = plan.taps()
    kernel_src, kernel_out = compute_src, out
    if layout == "pixels" and src.shape[3] <= INTERLEAVE_MAX_CHANNELS:
        images, channels = src.shape[0], src.shape[3]
        kernel_src, kernel_out = compute_src.reshape(images, plan.in_h, -1), out.reshape(images, plan.out_h, -1)
        xs = interleaved_taps(plan.in_w, plan.out_w, "center", plan.compute_dtype, channels)
    _cpu.run_tasks(kernel_src, kernel_out, ys, xs, *_cpu.schedule(src.shape[0], plan.out_h, out.size))
    return out.astype(src.dtype)


def assert_same_bits(got: np.ndarray, expected: np.ndarray) -> None:
    """Equal bit patterns, except that any NaN equals any NaN (no kernel promises a NaN's payload)."""
    assert got.dtype == expected.dtype and got.shape == expected.shape
    if got.dtype.kind == "f":
        both_nan = np.isnan(got) & np.isnan(expected)
        got, expected = np.where(both_nan, 0, got), np.where(both_nan, 0, expected)
    differs = got.view(f"u{got.itemsize}") != expected.view(f"u{got.itemsize}")
    assert not differs.any(), f"{differs.sum()} of {differs.size} elements differ, first at {np.argwhere(differs)[0]}"


def with_specials(rng: np.random.Generator, x: np.ndarray, share: float) -> np.ndarray:
    """``x`` with a ``share`` of its values replaced by NaN, +-inf, +-0, the largest and tiniest values."""
    if x.dtype.kind != "f":
        return x
    info = np.finfo(x.dtype)
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, info.max, -info.max, info.smallest_subnormal], x.dtype)
    mask = rng.random(x.shape) < share
    return np.where(mask, rng.choice(specials, x.shape), x)


def size_pair(factor: int, out_hw: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(input size, output size) of a resize by ``factor`` (2 or -2) whose smaller side is ``out_hw``."""
    small, large = out_hw, (2 * out_hw[0], 2 * out_hw[1])
    return (small, large) if factor == 2 else (large, small)


@given(
    factor=st.sampled_from([2, -2]),
    small_h=st.integers(1, 9),
    small_w=st.integers(1, 9),
    lead=st.integers(1, 3),
    layout=st.sampled_from(["planes", "pixels"]),
    channels=st.sampled_from([1, 2, 3, 4, 7, 16, 17, 40]),  # interleaved up to 16, one pixel vector above
    dtype=st.sampled_from(DTYPES),
    special_share=st.sampled_from([0.0, 0.2]),
    seed=st.integers(0, 2**16),
)
def test_same_bits_as_the_tap_tables(factor, small_h, small_w, lead, layout, channels, dtype, special_share, seed):
    rng = np.random.default_rng(seed)
    (in_h, in_w), out_hw = size_pair(factor, (small_h, small_w))
    shape = (lead, in_h, in_w) if layout == "planes" else (lead, in_h, in_w, channels)
    src = with_specials(rng, sample(rng, shape, dtype), special_share)
    assert _cpu_fixed.fixed_factor(make_plan(layout, shape, src.dtype, None, None, out_hw, "center", False)) == factor
    if layout == "planes":
        got = fastinterp.resize(src, size=out_hw, channels_first=True)
    else:
        got = fastinterp.resize(src, size=out_hw)
    assert_same_bits(got, table_path(src, layout, out_hw))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("factor", [2, -2])
@pytest.mark.parametrize("layout", ["planes", "pixels"])
def test_parallel_tasks_same_bits_as_the_tap_tables(dtype, factor, layout):
    """Outputs past the serial threshold run on the thread pool, in blocks of rows."""
    rng = np.random.default_rng(3)
    (in_h, in_w), out_hw = size_pair(factor, (151, 145))
    shape = (3, in_h, in_w) if layout == "planes" else (1, in_h, in_w, 3)
    src = with_specials(rng, sample(rng, shape, dtype), 0.01)
    assert np.prod(out_hw) * 3 >= _cpu.SERIAL_THRESHOLD
    got = fastinterp.resize(src, size=out_hw, channels_first=layout == "planes")
    assert_same_bits(got, table_path(src, layout, out_hw))


@given(
    factor=st.sampled_from([2, -2]),
    small_h=st.integers(1, 6),
    small_w=st.integers(1, 6),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
)
def test_matches_the_plain_loop_reference(factor, small_h, small_w, dtype, seed):
    """Integers and float64 exactly: at these weights (1/4, 3/4, 1/2) every step of float64 and,
    for integers, float32 arithmetic is exact, so the reference rounds the same value."""
    rng = np.random.default_rng(seed)
    (in_h, in_w), (out_h, out_w) = size_pair(factor, (small_h, small_w))
    planes = sample(rng, (2, in_h, in_w), dtype)
    got = fastinterp.resize(planes, size=(out_h, out_w), channels_first=True)
    expected = np.stack([reference.bilinear_resize(p, out_h, out_w, "center") for p in planes])
    if np.dtype(dtype).kind != "f":
        np.testing.assert_array_equal(got, reference.to_integer_dtype(expected, np.dtype(dtype)))
    elif dtype == np.float64:
        assert_same_bits(got, expected)
    else:
        tolerance = {np.float32: 4e-7, np.float16: 1e-3}[dtype] * max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(got.astype(np.float64), expected, rtol=0, atol=tolerance)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
@pytest.mark.parametrize("factor", [2, -2])
def test_integer_extremes_round_and_saturate_as_the_tables(dtype, factor):
    """Inputs of only the smallest and largest values (and their neighbours): every rounding
    case of the 1/16 and 1/4 steps, at both ends of the range."""
    info = np.iinfo(dtype)
    values = np.array([info.min, info.min + 1, info.max - 1, info.max], dtype)
    rng = np.random.default_rng(5)
    (in_h, in_w), out_hw = size_pair(factor, (40, 24))
    src = rng.choice(values, (2, in_h, in_w))
    got = fastinterp.resize(src, size=out_hw, channels_first=True)
    assert_same_bits(got, table_path(src, "planes", out_hw))
    assert got.min() >= info.min and got.max() <= info.max and {info.min, info.max} <= set(np.unique(got).tolist())


def test_ties_round_half_to_even():
    """A 2x2 uint8 halving whose mean is x.5 (0.5, 1.5, 2.5, 3.5, 254.5): to the even neighbour, as numpy's rint."""
    blocks = [(0, [1, 1, 0, 0]), (2, [1, 1, 1, 3]), (2, [3, 3, 2, 2]), (4, [4, 4, 3, 3]), (254, [255, 255, 254, 254])]
    for expected, values in blocks:
        block = np.array(values, np.uint8).reshape(2, 2)
        assert fastinterp.resize(block, size=(1, 1))[0, 0] == expected


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8, torch.int16, torch.float64])
@pytest.mark.parametrize("factor", [2, -2])
def test_torch_cpu_tensors(channels_last, dtype, factor):
    rng = np.random.default_rng(6)
    (in_h, in_w), out_hw = size_pair(factor, (7, 5))
    x = torch.from_numpy(sample(rng, (2, 3, in_h, in_w), torch.empty(0, dtype=dtype).numpy().dtype))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    got = fastinterp.resize(x, size=out_hw)
    assert got.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert_same_bits(got.numpy(), table_path(x.numpy().reshape(6, in_h, in_w), "planes", out_hw).reshape(got.shape))
    if dtype in (torch.float32, torch.float64):
        expected = torch.nn.functional.interpolate(x, size=out_hw, mode="bilinear", align_corners=False)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "in_hw,out_hw",
    [((5, 8), (2, 4)), ((8, 5), (4, 2)), ((7, 7), (3, 3)), ((4, 4), (8, 7)), ((4, 4), (8, 4)), ((4, 4), (2, 8))],
)
def test_other_sizes_keep_the_tables(in_hw, out_hw):
    """Halving an odd size, or one axis by another factor: not a fixed factor; the same results."""
    src = np.random.default_rng(7).standard_normal((2, *in_hw)).astype(np.float32)
    assert _cpu_fixed.fixed_factor(make_plan("planes", src.shape, src.dtype, None, None, out_hw, "center", False)) == 0
    assert_same_bits(fastinterp.resize(src, size=out_hw, channels_first=True), table_path(src, "planes", out_hw))


@pytest.mark.parametrize("align,legacy,antialias", [("left", False, False), ("corners", False, False),
                                                    ("center", True, False), ("center", False, True)])
def test_only_the_plain_centred_path_takes_fixed_factors(align, legacy, antialias):
    """An antialiased upscale is the plain path (no axis is downscaled), so it takes the factor too."""
    for shape, out_hw, plain in [((1, 4, 6), (8, 12), antialias), ((1, 4, 6), (2, 3), False)]:
        plan = make_plan("planes", shape, np.dtype(np.float32), None, None, out_hw, align, legacy, antialias)
        assert _cpu_fixed.fixed_factor(plan) == (2 if plain else 0)


def test_fork_after_a_fixed_factor_call_in_the_parent():
    done = run_in_fresh_interpreter(
        "import numpy as np, fastinterp, multiprocessing as mp\n"
        "x = np.ones((3, 200, 300), np.float32)\n"
        "assert fastinterp.resize(x, 2, channels_first=True).shape == (3, 400, 600)\n"
        "def work(i):\n"
        "    return float(fastinterp.resize(x + i, 0.5, channels_first=True).sum())\n"
        "with mp.get_context('fork').Pool(2) as pool:\n"
        "    sums = pool.map(work, range(3))\n"
        "assert sums == [3 * 100 * 150 * (1.0 + i) for i in range(3)], sums\n"
        "print('ok')\n"
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@njit
def _integer_results(totals):
    out = np.empty_like(totals)
    for i in range(totals.shape[0]):
        out[i] = _cpu_fixed._integer_result(totals[i])
    return out


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
def test_integer_rounding_is_the_float32_rounding_for_every_total(dtype):
    """Exhaustive: every blend in sixteenths a dtype can produce, ``s`` from 16 * min to 16 * max.
    The float32 path holds exactly ``s / 16`` (a multiple of 1/16 below 2**20) and rounds it with
    np.rint, half to even; the integer path must give the same integer."""
    info = np.iinfo(dtype)
    totals = np.arange(16 * int(info.min), 16 * int(info.max) + 1, dtype=np.int64)
    float32_path = np.rint(totals.astype(np.float32) / np.float32(16))
    assert np.array_equal(float32_path, totals / 16 - np.remainder(totals / 16, 1) + (np.remainder(totals, 16) > 8)
                          + ((np.remainder(totals, 16) == 8) & (np.floor_divide(totals, 16) % 2 == 1)))
    assert np.array_equal(_integer_results(totals), float32_path.astype(np.int64))

"""Antialiased resizing: the kernels of fastinterp._antialias against the plain-loop
reference, torch ``antialias=True`` and Pillow's BILINEAR."""

import matplotlib.cbook
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st
from PIL import Image
from skimage import data

import fastinterp
from fastinterp import _antialias, reference
from fastinterp._antialias import (
    antialias_taps, fixed_taps, parallel_antialias, run_antialias, run_antialias_adjoint, serial_antialias,
)
from sampling import examples_per_case, fixed_taps_compiled, sample

DTYPES = [np.float32, np.float64, np.float16, np.uint8, np.uint16, np.int16]


def kernel_resize(src, out_h, out_w, *, rows_first=None, fixed=None, rows_per_task=None, serial=True, block_rows=32):
    """Resize kernel-layout ``src`` ((P, H, W) or (N, H, W, C)) as the front's run_cpu will:
    float16 through float32, integers computed in float32. ``rows_first`` forces a pass order,
    ``fixed`` the horizontal pass: True the fixed-taps kernel (the width must have
    :class:`FixedTaps`), False the table kernel; None for both: what run_antialias picks, except
    that a fixed-taps kernel the CI does not compile (sampling.fixed_taps_compiled) is replaced
    by the table kernel (test_fixed_path_gives_the_table_paths_bits: the same bits)."""
    if fixed is None and not fixed_taps_compiled(src.dtype, src.shape[2], out_w):
        fixed = False
    dtype = src.dtype
    compute = np.dtype(np.float64 if dtype == np.float64 else np.float32)
    work_dtype = np.float32 if dtype == np.float16 else dtype
    src = np.ascontiguousarray(src, dtype=work_dtype)  # the drivers take any source read-only (_cpu.read_only)
    target = np.empty((src.shape[0], out_h, out_w, *src.shape[3:]), work_dtype)
    rows_per_task = rows_per_task or out_h
    in_h, in_w = src.shape[1], src.shape[2]
    ys, xs = antialias_taps(in_h, out_h, compute), antialias_taps(in_w, out_w, compute)
    if rows_first is None and fixed is None:
        run_antialias(src, target, in_h, in_w, out_h, out_w, "center", compute, rows_per_task, serial, block_rows=block_rows)
    else:
        if rows_first is None:
            rows_first = _antialias.vertical_first(in_h, in_w, ys, xs)
        span, weights = (0, 0, 0), ()
        if fixed or (fixed is None and fixed_taps(in_w, out_w, compute)):
            taps = fixed_taps(in_w, out_w, compute)
            span, weights = (taps.start, taps.stop, taps.first), taps.weights
        channels = src.shape[3] if src.ndim == 4 else 1
        driver = serial_antialias if serial else parallel_antialias
        driver(
            src.reshape(src.shape[0], in_h, -1), target.reshape(target.shape[0], out_h, -1), ys, xs, span, weights,
            channels, rows_first, rows_per_task, block_rows,
        )  # fmt: skip
    return target.astype(dtype) if dtype == np.float16 else target


def reference_planes(planes, out_h, out_w):
    return np.stack([reference.antialiased_resize(p, out_h, out_w) for p in planes])


def assert_near_reference(got, expected, dtype):
    """Floats within float rounding (of float32 for float16's computation, then float16's);
    integers within 1 of the rounded float64 reference (float32 arithmetic may land on the
    other side of a .5 boundary), and equal where the reference is not near such a boundary."""
    dtype = np.dtype(dtype)
    scale = max(1.0, float(np.abs(expected).max()))
    if dtype.kind == "f":
        tolerance = {np.float64: 1e-13, np.float32: 1e-5, np.float16: 2e-3}[dtype.type]
        np.testing.assert_allclose(got.astype(np.float64), expected, rtol=0, atol=tolerance * scale)
        return
    exact = reference.to_integer_dtype(expected, dtype)
    differs = got != exact
    near_half = np.abs(np.abs(expected - np.floor(expected)) - 0.5) < 1e-5 * scale
    assert not (differs & ~near_half).any()
    assert (np.abs(got.astype(np.int64) - exact) <= 1).all()


def torch_antialias(planes, out_h, out_w):
    tensor = torch.from_numpy(np.ascontiguousarray(planes))[None]
    return F.interpolate(tensor, size=(out_h, out_w), mode="bilinear", antialias=True, align_corners=False)[0].numpy()


# ---------------------------------------------------------------------------- the reference


@pytest.mark.parametrize(
    "in_size, out_size",
    [((20, 30), (7, 11)), ((16, 16), (8, 8)), ((9, 13), (20, 5)), ((10, 10), (10, 3)), ((50, 7), (3, 7)),
     ((5, 5), (1, 1)), ((7, 50), (20, 3)), ((33, 17), (32, 18))],
)  # fmt: skip
def test_reference_is_torch_in_float64(in_size, out_size):
    plane = np.random.default_rng(1).standard_normal(in_size)
    expected = torch_antialias(plane[np.newaxis], *out_size)[0]
    np.testing.assert_allclose(reference.antialiased_resize(plane, *out_size), expected, rtol=0, atol=1e-13)


def test_reference_taps_widen_only_when_downscaling():
    assert reference.antialias_taps(1, 8, 4) == (1, [0.125, 0.375, 0.375, 0.125])  # halving: 4 taps, support 2
    assert reference.antialias_taps(2, 4, 8) == (0, [0.25, 0.75])  # doubling: plain bilinear at 0.75
    assert reference.antialias_taps(3, 6, 6) == (3, [1.0])  # same size: a copy


@pytest.mark.parametrize("align", ["corners", "left", "middle"])
def test_align_other_than_center_is_refused(align):
    with pytest.raises(ValueError, match=r"antialias.*'center'"):
        reference.antialiased_resize(np.zeros((4, 4)), 2, 2, align=align)
    with pytest.raises(ValueError, match=r"antialias=True is defined only for align in \('center',\)"):
        run_antialias(np.zeros((1, 4, 4)), np.zeros((1, 2, 2)), 4, 4, 2, 2, align, np.dtype(np.float64), 2, True)


# ------------------------------------------------------------------ kernels vs the reference


@pytest.mark.parametrize("dtype", DTYPES)  # a kernel each: a test each, for pytest-xdist to spread
@examples_per_case(len(DTYPES))
@given(
    data=st.data(),
    in_size=st.tuples(st.integers(1, 24), st.integers(1, 24)),
    out_size=st.tuples(st.integers(1, 24), st.integers(1, 24)),
    channels=st.sampled_from([None, 1, 3, 5]),  # None: (P, H, W) planes; else (N, H, W, C) pixels
    rows_first=st.booleans(),
    serial=st.booleans(),
)
def test_kernels_match_reference(data, dtype, in_size, out_size, channels, rows_first, serial):
    rows_per_task = data.draw(st.integers(1, out_size[0]), label="rows_per_task")
    block_rows = data.draw(st.integers(1, 5), label="block_rows")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    shape = (2, *in_size) if channels is None else (2, *in_size, channels)
    src = sample(rng, shape, dtype)
    got = kernel_resize(src, *out_size, rows_first=rows_first, rows_per_task=rows_per_task, serial=serial, block_rows=block_rows)
    assert got.dtype == dtype and got.shape == (2, *out_size, *shape[3:])
    planes = src if channels is None else np.moveaxis(src, 3, 1).reshape(-1, *in_size)
    as_planes = got if channels is None else np.moveaxis(got, 3, 1).reshape(-1, *out_size)
    assert_near_reference(as_planes, reference_planes(planes, *out_size), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
@pytest.mark.parametrize("rows_first", [True, False])
def test_layouts_schedules_and_blocks_give_the_same_bits(dtype, rows_first):
    """Planes and pixels, serial and parallel, any task and block split: one arithmetic."""
    rng = np.random.default_rng(2)
    pixels = sample(rng, (2, 37, 29, 3), dtype)
    planes = np.ascontiguousarray(np.moveaxis(pixels, 3, 1)).reshape(6, 37, 29)
    expected = kernel_resize(planes, 11, 13, rows_first=rows_first)
    for rows_per_task, serial, block_rows in [(11, True, 32), (2, False, 1), (5, False, 3)]:
        got = kernel_resize(pixels, 11, 13, rows_first=rows_first, rows_per_task=rows_per_task, serial=serial, block_rows=block_rows)
        np.testing.assert_array_equal(np.moveaxis(got, 3, 1).reshape(6, 11, 13), expected)


def test_pass_order_follows_the_work():
    """Rows first when the height shrinks most; columns first when only the width does."""
    dtype = np.dtype(np.float32)
    assert _antialias.vertical_first(1080, 1920, antialias_taps(1080, 540, dtype), antialias_taps(1920, 960, dtype))
    assert _antialias.vertical_first(96, 96, antialias_taps(96, 24, dtype), antialias_taps(96, 24, dtype))
    assert not _antialias.vertical_first(100, 1000, antialias_taps(100, 1000, dtype), antialias_taps(1000, 100, dtype))


# ------------------------------------------------------- fixed taps at integer width factors


def assert_same_bits(got, expected):
    """Equal values, NaN where NaN, and equal signs (of zeros too) where not NaN."""
    np.testing.assert_array_equal(got, expected)
    if got.dtype.kind == "f":
        numbers = ~np.isnan(expected)
        np.testing.assert_array_equal(np.signbit(got[numbers]), np.signbit(expected[numbers]))


@pytest.mark.parametrize("factor", [2, 3, 4, 8])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fixed_taps_are_the_tables_rows(factor, dtype):
    """Every output of the run reads the table's taps: same first tap, count and weight bits."""
    out_size = 13
    table, fixed = antialias_taps(factor * out_size, out_size, dtype), fixed_taps(factor * out_size, out_size, np.dtype(dtype))
    assert len(fixed.weights) == 2 * factor and 0 < fixed.start < fixed.stop < out_size  # both ends are clipped
    for d in range(fixed.start, fixed.stop):
        assert table.first[d] == fixed.first + factor * (d - fixed.start) and table.count[d] == 2 * factor
        assert table.weights[d, : 2 * factor].tobytes() == np.array(fixed.weights, dtype).tobytes()
    for d in (fixed.start - 1, fixed.stop):  # the run is as long as it can be
        assert table.count[d] != 2 * factor or table.first[d] != fixed.first + factor * (d - fixed.start)
    if factor == 2:
        assert fixed.weights == (0.125, 0.375, 0.375, 0.125)


@pytest.mark.parametrize("in_size, out_size", [(101, 50), (20, 10 + 1), (18, 2), (9, 1), (40, 40), (20, 40), (90, 10)])
def test_no_fixed_taps_where_the_factor_is_not_a_small_integer(in_size, out_size):
    """Not a whole factor, factor 9 (past MAX_FIXED_FACTOR), upscales, copies; 2 or 1 outputs at
    factor 9 or under have no interior (every window is clipped)."""
    assert fixed_taps(in_size, out_size, np.dtype(np.float32)) is None


#: (dtype, width factor) of the fixed-taps kernels the CI compiles (sampling.FIXED_TAPS_FACTORS;
#: each pair is a kernel of its own; HYPOTHESIS_PROFILE=thorough tests every factor named here).
FIXED_KERNELS = [(dtype, factor) for dtype in DTYPES for factor in (2, 3, 4, 8) if fixed_taps_compiled(dtype, factor, 1)]


@pytest.mark.parametrize("dtype, factor", FIXED_KERNELS)
@given(
    data=st.data(),
    out_w=st.integers(1, 12),
    extra=st.sampled_from([0, 0, 0, 1]),  # 1: the factor does not divide the width, the table path runs
    in_h=st.integers(1, 20),
    out_h=st.integers(1, 20),
    channels=st.sampled_from([None, 1, 3]),  # None: (P, H, W) planes; else (N, H, W, C) pixels
    rows_first=st.booleans(),
    bad=st.sampled_from([None, np.nan, np.inf, -np.inf]),
)
def test_fixed_path_gives_the_table_paths_bits(dtype, factor, data, out_w, extra, in_h, out_h, channels, rows_first, bad):
    """The fixed-taps kernel against the table kernel: the same bits in every dtype and layout,
    both pass orders, any task and block split, NaN and infinities anywhere (at the ends too)."""
    in_w = factor * out_w + extra
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    shape = (2, in_h, in_w) if channels is None else (2, in_h, in_w, channels)
    src = sample(rng, shape, dtype)
    if bad is not None and np.dtype(dtype).kind == "f":
        for _ in range(data.draw(st.integers(1, 3), label="bad values")):
            src[tuple(int(rng.integers(n)) for n in shape)] = bad
    split = {
        "rows_per_task": data.draw(st.integers(1, out_h), label="rows_per_task"),
        "block_rows": data.draw(st.integers(1, 5), label="block_rows"),
        "serial": data.draw(st.booleans(), label="serial"),
    }
    expected = kernel_resize(src, out_h, out_w, rows_first=rows_first, fixed=False, **split)
    compute = np.dtype(np.float64 if dtype == np.float64 else np.float32)
    if fixed_taps(in_w, out_w, compute) is None:
        assert extra or out_w <= 2
        return
    assert_same_bits(kernel_resize(src, out_h, out_w, rows_first=rows_first, fixed=True, **split), expected)


@pytest.mark.parametrize(
    "in_size, out_size, dtype",
    [((1080, 1920), (540, 960), np.float32), ((96, 96), (24, 24), np.float32), ((61, 90), (200, 30), np.float32),
     ((1080, 1920), (540, 960), np.uint8)],
)  # fmt: skip
def test_the_front_takes_the_fixed_path_with_the_table_paths_bits(in_size, out_size, dtype):
    """fastinterp.resize at the benchmark's sizes (and a height upscaled: columns first) equals
    the table kernel, planes and pixels, in parallel (uint8 at the halving: each dtype and factor
    is a kernel of its own, see sampling.FIXED_TAPS_FACTORS)."""
    assert fixed_taps_compiled(dtype, in_size[1], out_size[1])
    compute = np.dtype(np.float32)
    assert fixed_taps(in_size[1], out_size[1], compute) is not None
    planes = sample(np.random.default_rng(16), (3, *in_size), dtype)
    expected = kernel_resize(planes, *out_size, fixed=False, serial=False, rows_per_task=7)
    assert_same_bits(fastinterp.resize(planes, size=out_size, channels_first=True, antialias=True), expected)
    pixels = np.ascontiguousarray(planes.transpose(1, 2, 0))
    assert_same_bits(fastinterp.resize(pixels, size=out_size, antialias=True), expected.transpose(1, 2, 0))


# ------------------------------------------------------------------------------ torch parity


@pytest.mark.parametrize(
    "in_size, out_size",
    [((1080, 1920), (540, 960)), ((96, 96), (24, 24)), ((97, 131), (30, 41)), ((64, 48), (200, 17)),
     ((50, 300), (13, 301)), ((17, 19), (17, 5)), ((300, 7), (1, 1)), ((40, 40), (39, 41))],
)  # fmt: skip
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_matches_torch(in_size, out_size, dtype):
    """Within float rounding of torch (which computes float32 weights in float32)."""
    planes = np.random.default_rng(3).standard_normal((2, *in_size)).astype(dtype)
    got = kernel_resize(planes, *out_size, serial=False, rows_per_task=7)
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got, torch_antialias(planes, *out_size), rtol=0, atol=tolerance * float(np.abs(planes).max()))


def test_photo_halved_matches_torch():
    photo = np.ascontiguousarray(data.astronaut().transpose(2, 0, 1), np.float32) / 255
    got = kernel_resize(photo, 256, 256)
    np.testing.assert_allclose(got, torch_antialias(photo, 256, 256), rtol=0, atol=2e-6)


# --------------------------------------------------------------------------- Pillow parity


def _photos():
    hopper = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    return {"astronaut": data.astronaut(), "chelsea": data.chelsea(), "grace_hopper": np.asarray(hopper)}


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "grace_hopper"])
@pytest.mark.parametrize("factor", [(1 / 2, 1 / 2), (1 / 3, 1 / 3), (0.19, 0.45), (2.01, 0.2), (0.14, 1.03), (1, 0.5)])
def test_uint8_within_one_of_pillow(name, factor):
    """Pillow rounds to uint8 between its two passes and uses 22-bit fixed-point weights: within 1."""
    photo = _photos()[name]
    height, width = photo.shape[:2]
    out_h, out_w = round(height * factor[0]), round(width * factor[1])
    pillow = np.asarray(Image.fromarray(photo).resize((out_w, out_h), Image.BILINEAR))
    got = kernel_resize(np.ascontiguousarray(photo)[np.newaxis], out_h, out_w, serial=False, rows_per_task=9)[0]
    difference = np.abs(got.astype(np.int64) - pillow)
    assert difference.max() <= 1
    assert (difference == 0).mean() > 0.8  # most pixels are equal: the same filter, not a near one
    gray = np.ascontiguousarray(photo[..., 0])
    pillow_gray = np.asarray(Image.fromarray(gray).resize((out_w, out_h), Image.BILINEAR))
    assert np.abs(kernel_resize(gray[np.newaxis], out_h, out_w)[0].astype(np.int64) - pillow_gray).max() <= 1


def test_float32_plane_matches_pillow_f_mode():
    plane = np.ascontiguousarray(data.camera(), np.float32)
    pillow = np.asarray(Image.fromarray(plane, mode="F").resize((171, 101), Image.BILINEAR))
    np.testing.assert_allclose(kernel_resize(plane[np.newaxis], 101, 171)[0], pillow, rtol=0, atol=1e-3)


# ------------------------------------------------------------------------------ odd cases


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows_first", [True, False])
def test_constant_stays_constant(dtype, rows_first):
    """Integers exactly; floats within the rounding of weights that sum to 1 only nearly."""
    value = {np.uint8: 200, np.uint16: 65535, np.int16: -32768}.get(dtype, 3.7)
    src = np.full((1, 45, 31, 2), value, dtype)
    got = kernel_resize(src, 7, 12, rows_first=rows_first)
    if np.dtype(dtype).kind == "f":
        np.testing.assert_allclose(got.astype(np.float64), float(src.flat[0]), rtol=4 * np.finfo(np.float32).eps)
    else:
        assert (got == value).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("in_size, out_size", [((16, 16), (8, 8)), ((20, 30), (7, 11)), ((9, 13), (20, 5)), ((8, 8), (8, 3))])
def test_nan_and_inf_spread_as_in_torch(bad, in_size, out_size):
    """A NaN or infinity reaches every output whose filter window holds it, as in torch: an
    infinity gives inf under a positive weight, NaN under a window edge's zero weight (0 * inf);
    NaN and inf together give NaN. Integers saturate (not tested here: no integer NaN)."""
    planes = np.random.default_rng(4).random((2, *in_size)).astype(np.float32)
    planes[0, in_size[0] // 2, in_size[1] // 3] = bad
    planes[1, 0, -1] = bad
    planes[1, -1, 0] = -bad
    expected = torch_antialias(planes, *out_size)
    for rows_first in (True, False):
        got = kernel_resize(planes, *out_size, rows_first=rows_first)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        np.testing.assert_array_equal(np.isposinf(got), np.isposinf(expected))
        np.testing.assert_array_equal(np.isneginf(got), np.isneginf(expected))
        finite = np.isfinite(expected)
        np.testing.assert_allclose(got[finite], expected[finite], rtol=0, atol=1e-5)


def test_integers_saturate():
    """Wide int16 swings stay in range: a weighted mean never leaves it, rounding must not either."""
    src = np.zeros((1, 6, 6), np.int16)
    src[0, ::2] = 32767
    src[0, 1::2] = -32768
    got = kernel_resize(src, 3, 3)
    assert got.dtype == np.int16 and (got >= -32768).all() and (got <= 32767).all()
    assert_near_reference(got, reference_planes(src, 3, 3), np.int16)


def test_non_contiguous_arrays_are_refused():
    src = np.zeros((1, 8, 8), np.float32)
    with pytest.raises(ValueError, match="C-contiguous"):
        run_antialias(src[:, ::2], np.zeros((1, 2, 2), np.float32), 4, 8, 2, 2, "center", np.dtype(np.float32), 2, True)


def test_tables_are_read_only_and_cached_within_their_byte_budget(monkeypatch):
    monkeypatch.setattr(_antialias, "TABLE_CACHE_BYTES", 4096)
    monkeypatch.setattr(_antialias, "_tables", type(_antialias._tables)())
    monkeypatch.setattr(_antialias, "_table_bytes", 0)
    taps = antialias_taps(100, 30, np.float32)
    assert antialias_taps(100, 30, np.float32) is taps
    assert not taps.weights.flags.writeable and taps.weights.dtype == np.float32
    assert taps.count.min() >= 1 and np.allclose(taps.weights.astype(np.float64).sum(axis=1), 1.0, atol=1e-6)
    for out_size in range(31, 60):
        antialias_taps(100, out_size, np.float32)
    assert _antialias._table_bytes <= 4096 + taps.weights.nbytes * 4
    assert (100, 30, np.dtype(np.float32), False) not in _antialias._tables


# -------------------------------------------------------------------------------- adjoint


def dense_matrix(in_size, out_size):
    """(out_size, in_size) float64 matrix of one antialiased axis, from the reference."""
    matrix = np.zeros((out_size, in_size))
    for d in range(out_size):
        first, weights = reference.antialias_taps(d, in_size, out_size)
        matrix[d, first : first + len(weights)] = weights
    return matrix


@given(
    in_size=st.tuples(st.integers(1, 30), st.integers(1, 30)),
    out_size=st.tuples(st.integers(1, 30), st.integers(1, 30)),
    dtype=st.sampled_from([np.float32, np.float64]),
    serial=st.booleans(),
)
def test_adjoint_is_the_transpose_of_the_reference(in_size, out_size, dtype, serial):
    grad_out = np.random.default_rng(7).standard_normal((2, *out_size)).astype(dtype)
    grad_in = np.empty((2, *in_size), dtype)
    run_antialias_adjoint(grad_out, grad_in, *in_size, np.dtype(dtype), 3, serial)
    expected = np.einsum("yi,pij,jx->pyx", dense_matrix(in_size[0], out_size[0]).T, grad_out.astype(np.float64),
                         dense_matrix(in_size[1], out_size[1]))  # fmt: skip
    tolerance = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(grad_in, expected, rtol=0, atol=tolerance * max(1.0, float(np.abs(expected).max())))


@pytest.mark.parametrize("in_size, out_size", [((96, 96), (24, 24)), ((37, 50), (80, 13)), ((20, 20), (20, 7))])
def test_adjoint_matches_torch_backward_and_is_deterministic(in_size, out_size):
    x = torch.zeros((1, 3, *in_size), dtype=torch.float64, requires_grad=True)
    grad_out = torch.from_numpy(np.random.default_rng(8).standard_normal((1, 3, *out_size)))
    F.interpolate(x, size=out_size, mode="bilinear", antialias=True, align_corners=False).backward(grad_out)
    runs = []
    for rows_per_task, serial in [(in_size[0], True), (5, False), (1, False)]:
        grad_in = np.empty((3, *in_size))
        run_antialias_adjoint(grad_out[0].numpy().copy(), grad_in, *in_size, np.dtype(np.float64), rows_per_task, serial)
        runs.append(grad_in)
    np.testing.assert_allclose(runs[0], x.grad[0].numpy(), rtol=0, atol=1e-12)
    for other in runs[1:]:
        np.testing.assert_array_equal(other, runs[0])


# ------------------------------------------------------------- through fastinterp.resize


def as_planes(arr, channels_first):
    """Any layout of fastinterp.resize as (P, H, W) planes."""
    if arr.ndim == 2:
        return arr[np.newaxis]
    if channels_first:
        return arr.reshape(-1, *arr.shape[-2:])
    return np.moveaxis(arr, -1, -3).reshape(-1, *arr.shape[-3:-1])


LAYOUTS = {  # name: (shape of an input of in_size, channels_first)
    "HW": (lambda h, w: (h, w), False),
    "HWC3": (lambda h, w: (h, w, 3), False),
    "HWC20": (lambda h, w: (h, w, 20), False),  # past the interleaving threshold of the plain path
    "NHWC": (lambda h, w: (2, h, w, 4), False),
    "CHW": (lambda h, w: (3, h, w), True),
    "NCHW": (lambda h, w: (2, 3, h, w), True),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_resize_matches_the_reference_in_every_layout_and_dtype(dtype, layout):
    """fastinterp.resize(..., antialias=True): the reference within rounding, and in every
    layout the same bits as the (P, H, W) planes of the same data."""
    make_shape, channels_first = LAYOUTS[layout]
    src = sample(np.random.default_rng(11), make_shape(23, 31), dtype)
    got = fastinterp.resize(src, size=(9, 7), antialias=True, channels_first=channels_first)
    assert got.dtype == src.dtype and got.shape == make_shape(9, 7)
    planes = np.ascontiguousarray(as_planes(src, channels_first))
    assert_near_reference(as_planes(got, channels_first), reference_planes(planes, 9, 7), dtype)
    np.testing.assert_array_equal(as_planes(got, channels_first), fastinterp.resize(planes, size=(9, 7), antialias=True, channels_first=True))


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.uint8])
def test_strided_byteswapped_and_out_arrays(dtype):
    src = sample(np.random.default_rng(12), (40, 36, 3), dtype)
    expected = fastinterp.resize(src, size=(11, 10), antialias=True)
    strided = np.zeros((80, 36, 6), dtype)[::2, :, ::2]
    strided[...] = src
    np.testing.assert_array_equal(fastinterp.resize(strided, size=(11, 10), antialias=True), expected)
    swapped = src.astype(src.dtype.newbyteorder())
    np.testing.assert_array_equal(fastinterp.resize(swapped, size=(11, 10), antialias=True), expected)
    out = np.zeros((11, 20, 3), dtype)[:, ::2]  # not contiguous: written through a temporary
    assert fastinterp.resize(src, size=(11, 10), antialias=True, out=out) is out
    np.testing.assert_array_equal(out, expected)


def test_large_input_runs_in_parallel_with_the_same_bits():
    """Past the serial threshold by input size (few outputs): the parallel schedule, one arithmetic."""
    src = sample(np.random.default_rng(13), (4, 300, 300), np.float32)
    got = fastinterp.resize(src, size=(5, 6), antialias=True, channels_first=True)
    np.testing.assert_array_equal(got, kernel_resize(src, 5, 6))


@pytest.mark.parametrize("out_size", [(40, 50), (20, 50), (40, 31), (23, 31)])
def test_no_downscaled_axis_is_the_plain_path_bit_for_bit(out_size):
    src = sample(np.random.default_rng(14), (2, 20, 31), np.float32)
    plain = fastinterp.resize(src, size=out_size, channels_first=True)
    np.testing.assert_array_equal(fastinterp.resize(src, size=out_size, channels_first=True, antialias=True), plain)
    tensor = torch.from_numpy(src)
    # torch's antialias=True computes the same filter another way: within float32 rounding
    theirs = F.interpolate(tensor[None], size=out_size, mode="bilinear", antialias=True)[0]
    np.testing.assert_allclose(plain, theirs, rtol=0, atol=2e-6 * float(np.abs(src).max()))


@pytest.mark.parametrize("in_size, out_size", [((200, 300), (67, 100)), ((96, 96), (24, 24)), ((30, 80), (61, 20))])
def test_resize_matches_torch_through_the_front(in_size, out_size):
    planes = np.random.default_rng(15).standard_normal((3, *in_size)).astype(np.float32)
    expected = torch_antialias(planes, *out_size)
    got = fastinterp.resize(planes, size=out_size, channels_first=True, antialias=True)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * float(np.abs(planes).max()))
    pixels = np.ascontiguousarray(planes.transpose(1, 2, 0))
    np.testing.assert_array_equal(fastinterp.resize(pixels, size=out_size, antialias=True).transpose(2, 0, 1), got)


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_uint8_photo_within_one_of_pillow_through_the_front(name):
    photo = _photos()[name]
    out_h, out_w = photo.shape[0] // 3, photo.shape[1] // 2
    pillow = np.asarray(Image.fromarray(photo).resize((out_w, out_h), Image.BILINEAR))
    got = fastinterp.resize(photo, size=(out_h, out_w), antialias=True)
    assert np.abs(got.astype(np.int64) - pillow).max() <= 1


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8])
def test_cpu_tensors_give_the_numpy_bits(layout, dtype):
    x = (torch.rand(2, 3, 25, 19) * 200).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    got = fastinterp.resize(x, size=(8, 6), antialias=True)
    assert got.dtype == dtype and got.shape == (2, 3, 8, 6)
    assert got.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")
    computed = x.float() if dtype == torch.bfloat16 else x
    expected = fastinterp.resize(computed.numpy(), size=(8, 6), antialias=True, channels_first=True)
    torch.testing.assert_close(got, torch.from_numpy(expected).to(dtype), rtol=0, atol=0)
    if dtype.is_floating_point:
        reference_torch = F.interpolate(x.double(), size=(8, 6), mode="bilinear", antialias=True)
        tolerance = 200 * max(torch.finfo(dtype).eps, 1e-6)  # values up to 200, rounded to the dtype
        torch.testing.assert_close(got.double(), reference_torch, rtol=0, atol=tolerance)


@pytest.mark.parametrize("arguments, error, message", [
    ({"align": "corners"}, ValueError, r"antialias=True is defined only for align in \('center',\)"),
    ({"align": "left"}, ValueError, r"antialias=True is defined only for align in \('center',\)"),
    ({"legacy": True}, ValueError, "antialias=True cannot be combined with legacy=True"),
    ({"legacy": True, "align": "left"}, ValueError, "antialias=True cannot be combined with legacy=True"),
    ({"antialias": 1}, TypeError, "antialias must be True or False, got 1"),
    ({"antialias": None}, TypeError, "antialias must be True or False, got None"),
])  # fmt: skip
def test_undefined_combinations_are_refused(arguments, error, message):
    """Refused whatever the sizes (an upscale too) and the kind of data (legacy=True on a tensor
    that requires grad says first that legacy has no gradient)."""
    inputs = [np.zeros((8, 8), np.float32), torch.zeros(1, 8, 8)]
    if "legacy" not in arguments:
        inputs.append(torch.zeros(1, 8, 8, requires_grad=True))
    for array in inputs:
        for size in ((4, 4), (16, 16)):
            with pytest.raises(error, match=message):
                fastinterp.resize(array, size=size, **{"antialias": True, **arguments})


@pytest.mark.parametrize("dtype", DTYPES)
@examples_per_case(len(DTYPES))
@given(
    data=st.data(),
    in_size=st.tuples(st.integers(1, 20), st.integers(1, 20)),
    out_size=st.tuples(st.integers(1, 20), st.integers(1, 20)),
    layout=st.sampled_from(sorted(LAYOUTS)),
)
def test_front_over_shapes_dtypes_and_layouts(data, dtype, in_size, out_size, layout):
    """Any sizes through fastinterp.resize: the reference where an axis is downscaled, the
    plain path's bits where none is."""
    assume(fixed_taps_compiled(dtype, in_size[1], out_size[1]))  # a kernel the CI compiles (see sampling.py)
    make_shape, channels_first = LAYOUTS[layout]
    src = sample(np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed")), make_shape(*in_size), dtype)
    got = fastinterp.resize(src, size=out_size, antialias=True, channels_first=channels_first)
    assert got.dtype == src.dtype and got.shape == make_shape(*out_size)
    if out_size[0] < in_size[0] or out_size[1] < in_size[1]:
        planes = np.ascontiguousarray(as_planes(src, channels_first))
        assert_near_reference(as_planes(got, channels_first), reference_planes(planes, *out_size), dtype)
    else:
        np.testing.assert_array_equal(got, fastinterp.resize(src, size=out_size, channels_first=channels_first))

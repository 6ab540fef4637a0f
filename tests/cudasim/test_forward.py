"""Forward kernels against the CPU path and the reference, every mode, layout and dtype."""

from __future__ import annotations

import numpy as np
import pytest

import fastinterp
from fastinterp import _cuda_launch, reference
from fastinterp._plan import make_plan
from fastinterp.reference import to_integer_dtype

from .helpers import ALIGNS, DTYPES, random_array

pytestmark = pytest.mark.cudasim

IN_SHAPE, OUT_SIZE = (3, 4), (7, 9)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("align", ALIGNS)
@pytest.mark.parametrize("channels_first", [True, False], ids=["planes", "pixels"])
def test_forward_matches_cpu(dtype, align, channels_first):
    rng = np.random.default_rng(abs(hash((dtype, align, channels_first))) % 2**32)
    shape = (2, 2, *IN_SHAPE) if channels_first else (2, *IN_SHAPE, 3)
    x = random_array(rng, shape, dtype)
    gpu = fastinterp.resize(x, size=OUT_SIZE, align=align, channels_first=channels_first, device="cuda")
    cpu = fastinterp.resize(x, size=OUT_SIZE, align=align, channels_first=channels_first)
    assert gpu.dtype == x.dtype and gpu.shape == cpu.shape
    if np.dtype(dtype).kind == "f":
        # Same operations in the same order without contraction: the CPU's bits.
        np.testing.assert_array_equal(gpu, cpu)
    else:
        # Integers are computed in float32, then rounded half to even and saturated.
        as_float = fastinterp.resize(x.astype(np.float32), size=OUT_SIZE, align=align,
                                     channels_first=channels_first, device="cuda")
        np.testing.assert_array_equal(gpu, to_integer_dtype(as_float, np.dtype(dtype)))
        assert np.abs(gpu.astype(np.int64) - cpu.astype(np.int64)).max() <= 1


@pytest.mark.parametrize("align", ALIGNS)
def test_forward_matches_reference(align):
    rng = np.random.default_rng(7)
    x = rng.random((5, 6)) * 100 - 20
    gpu = fastinterp.resize(x, size=(11, 4), align=align, device="cuda")
    np.testing.assert_allclose(gpu, reference.bilinear_resize(x, 11, 4, align), rtol=0, atol=1e-12)
    gpu32 = fastinterp.resize(x.astype(np.float32), size=(11, 4), align=align, device="cuda")
    np.testing.assert_allclose(gpu32, reference.bilinear_resize(x, 11, 4, align), rtol=1e-5, atol=1e-4)


def test_integer_outputs_round_half_even_and_saturate():
    x = np.array([[0, 255], [255, 0]], np.uint8)
    out = fastinterp.resize(x, size=(2, 4), align="corners", device="cuda")  # weights 1/3, 2/3
    expected = to_integer_dtype(reference.bilinear_resize(x, 2, 4, "corners"), np.dtype(np.uint8))
    np.testing.assert_array_equal(out, expected)
    halves = np.array([[1.0, 2.0]], np.float32)  # 1.5 rounds to 2, 2.5 would round to 2
    x16 = np.array([[-32768, 32767]], np.int16)
    assert fastinterp.resize(x16, size=(1, 3), align="corners", device="cuda").tolist() == [[-32768, 0, 32767]]
    assert fastinterp.resize(halves, size=(1, 3), align="corners", device="cuda").tolist() == [[1.0, 1.5, 2.0]]


@pytest.mark.parametrize("dtype", ["float32", "float64", "uint8", "uint16", "int16"])
@pytest.mark.parametrize("align", ["center", "left"])
def test_legacy_is_bit_exact(dtype, align):
    rng = np.random.default_rng(3)
    x = random_array(rng, (5, 6, 2), dtype)
    if np.dtype(dtype).kind == "f":  # reach the wrap-around and the out-of-int32 zeros
        x[0, 0, 0], x[1, 1, 1], x[2, 2, 0] = 700.25, -3.5e9, np.nan
    gpu = fastinterp.resize(x, 1.7, 1.4, align=align, legacy=True, device="cuda")
    np.testing.assert_array_equal(gpu, reference.legacy_transform(x, 1.7, 1.4, align))


def test_legacy_planes_match_cpu():
    x = random_array(np.random.default_rng(4), (2, 4, 5), "float32")
    gpu = fastinterp.resize(x, 2.3, 1.5, legacy=True, channels_first=True, device="cuda")
    np.testing.assert_array_equal(gpu, fastinterp.resize(x, 2.3, 1.5, legacy=True, channels_first=True))


@pytest.mark.parametrize(
    "shape",
    [
        # The grid covers every (channel, column); rows and outer items are strided.
        _cuda_launch.LaunchShape((5, 3, 2), (3, 2, 2), 1),
        _cuda_launch.LaunchShape((2, 2, 1), (3 * 5, 1, 1), 3),  # 3 channel blocks x 5 column blocks
        _cuda_launch.LaunchShape((5, 9, 2), (1, 1, 1), 1),
    ],
)
def test_every_launch_shape_writes_every_element(shape):
    from numba import cuda

    rng = np.random.default_rng(5)
    x = random_array(rng, (3, 3, 4, 5), "float32")  # (N, H, W, C)
    plan = make_plan("pixels", x.shape, x.dtype, None, None, (7, 9), "center", False)
    out = cuda.to_device(np.full((3, 7, 9, 5), np.nan, np.float32).reshape(-1))
    _cuda_launch.forward_launch(plan, 3, 5, shape)(cuda.to_device(x.reshape(-1)), out, 0)
    expected = fastinterp.resize(x, size=(7, 9))
    np.testing.assert_array_equal(out.copy_to_host().reshape(expected.shape), expected)


def test_launch_shape_fills_the_gpu_for_small_maps_and_large_images():
    for outer, rows, cols, inner in [(2048, 56, 56, 1), (3, 32000, 48000, 1), (1, 56, 56, 2048), (32 * 2048, 56, 56, 1)]:
        shape = _cuda_launch.launch_shape(outer, rows, cols, inner, multiprocessors=132)
        threads = np.prod(shape.block) * np.prod(shape.grid)
        assert threads >= min(132 * 2048, outer * rows * cols * inner), (outer, rows, cols, inner, shape)
        per_block = _cuda_launch.THREADS_PER_BLOCK
        assert np.prod(shape.block) <= per_block and max(shape.grid[1:]) <= 65535
        block_inner, block_cols, _ = shape.block
        assert block_inner == min(inner, per_block) and (block_cols == cols or block_inner * block_cols == per_block)


@pytest.mark.parametrize("in_size, out_size", [((13, 17), (5, 6)), ((9, 4), (4, 9)), ((5, 6), (1, 1)), ((1, 1), (3, 2))])
@pytest.mark.parametrize("align", ALIGNS)
def test_downscaling_and_single_pixels_match_cpu(in_size, out_size, align):
    x = random_array(np.random.default_rng(8), (*in_size, 2), "float32")
    gpu = fastinterp.resize(x, size=out_size, align=align, device="cuda")
    np.testing.assert_array_equal(gpu, fastinterp.resize(x, size=out_size, align=align))


@pytest.mark.parametrize("rates", [(0.45, 0.6), (2.0, 3.0), (1.0, 1.0)])
def test_legacy_downscaling_and_integer_coordinates(rates):
    x = random_array(np.random.default_rng(9), (9, 11, 2), "float64")
    gpu = fastinterp.resize(x, *rates, legacy=True, device="cuda")
    np.testing.assert_array_equal(gpu, reference.legacy_transform(x, *rates))

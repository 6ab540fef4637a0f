"""Streaming (non-temporal) stores of the planes body: the same bits as ordinary stores.

Large outputs (:data:`fastinterp._cpu.STREAM_MIN_BYTES`) are blended in a cached buffer and
streamed out in whole cache lines; here the threshold is forced to 0 (stream) and to
infinity (ordinary stores) on small outputs at every alignment, so both paths run.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastinterp
from fastinterp import _cpu
from fastinterp._coords import axis_taps

NEVER = 1 << 62
SHAPES = [(24, 24, 192, 192), (5, 7, 13, 29), (3, 3, 1, 50), (7, 5, 40, 3), (1, 1, 9, 70), (4, 40, 8, 17)]


def _bits(array: np.ndarray) -> np.ndarray:
    return array.view(np.dtype(f"u{array.itemsize}"))


def _input(shape: tuple[int, ...], dtype: np.dtype, rng: np.random.Generator) -> np.ndarray:
    if np.dtype(dtype).kind == "f":
        x = rng.standard_normal(shape).astype(dtype)
        x.flat[0], x.flat[-1], x.flat[len(x.flat) // 2] = np.inf, -np.inf, np.nan
        return x
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8, np.int16])
@pytest.mark.parametrize(("h", "w", "out_h", "out_w"), SHAPES)
def test_streamed_output_has_the_same_bits_at_every_alignment(dtype, h, w, out_h, out_w):
    rng = np.random.default_rng(out_h * out_w)
    compute = np.dtype(np.float64 if dtype == np.float64 else np.float32)
    x = _input((3, h, w), dtype, rng)
    src = x.astype(compute) if np.dtype(dtype).kind != "f" else x
    ys, xs = axis_taps(h, out_h, "center", compute), axis_taps(w, out_w, "center", compute)
    itemsize = np.dtype(dtype).itemsize
    for offset in range(0, _cpu.CACHE_LINE_BYTES // itemsize + 1, max(1, 4 // itemsize)):
        raw = np.empty(3 * out_h * out_w + offset, dtype)
        streamed = raw[offset:].reshape(3, out_h, out_w)
        for rows_per_task in (1, 2, out_h):
            for serial in (True, False):
                expected = np.full((3, out_h, out_w), 7, dtype)
                streamed[...] = 7
                _cpu.run_tasks(src, expected, ys, xs, rows_per_task, serial, stream_min_bytes=NEVER)
                _cpu.run_tasks(src, streamed, ys, xs, rows_per_task, serial, stream_min_bytes=0)
                assert np.array_equal(_bits(streamed), _bits(expected)), (offset, rows_per_task, serial)
                assert not np.shares_memory(streamed, raw[:offset])  # nothing written before the output


def test_only_large_item_aligned_outputs_stream():
    big = np.empty(_cpu.STREAM_MIN_BYTES // 4, np.float32)
    assert _cpu.streams(big)
    assert not _cpu.streams(big[:-1])
    misaligned = np.frombuffer(bytearray(_cpu.STREAM_MIN_BYTES + 8), np.float32, count=_cpu.STREAM_MIN_BYTES // 4, offset=1)
    assert not _cpu.streams(misaligned)
    assert not _cpu.streams(big, fresh_output=True)  # a new output's pages are zeroed through the cache


def test_a_large_resize_streams_and_matches_the_reference_path():
    """Through the front: a (64, 96, 96) float32 stack by 8 (75 MB, above the threshold)
    against the same call cut into planes small enough to use ordinary stores."""
    x = np.random.default_rng(3).random((64, 96, 96), dtype=np.float32)
    assert _cpu.streams(np.empty((64, 768, 768), np.float32))
    whole = fastinterp.resize(x, 8, channels_first=True)
    planes = np.stack([fastinterp.resize(x[i : i + 1], 8, channels_first=True)[0] for i in range(64)])
    assert np.array_equal(_bits(whole), _bits(planes))


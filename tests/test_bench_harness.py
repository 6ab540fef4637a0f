"""The benchmark harness's checks: a method that differs from fastinterp must not pass them."""

import numpy as np
import pytest

from benchmarks._harness import max_abs_diff


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_max_abs_diff_finds_one_changed_element(dtype):
    expected = np.zeros((3, 700, 5), dtype)
    actual = expected.copy()
    actual[2, 650, 4] = 200  # in the last block of rows, and above int8/uint8 wrap-around
    assert max_abs_diff(actual, expected) == 200
    assert max_abs_diff(expected, actual) == 200


def test_max_abs_diff_reads_strided_views():
    expected = np.random.default_rng(0).random((4, 30, 20), dtype=np.float32)
    channels_last = np.ascontiguousarray(expected.transpose(1, 2, 0))
    assert max_abs_diff(channels_last.transpose(2, 0, 1), expected) == 0.0
    channels_last[7, 3, 1] += 0.5
    assert max_abs_diff(channels_last.transpose(2, 0, 1), expected) == pytest.approx(0.5)


def test_max_abs_diff_treats_nan_as_infinitely_wrong():
    expected = np.ones((2, 4, 4), np.float32)
    actual = expected.copy()
    actual[1, 3, 3] = np.nan
    assert max_abs_diff(actual, expected) == np.inf


def test_max_abs_diff_refuses_other_shapes():
    with pytest.raises(AssertionError, match="shape"):
        max_abs_diff(np.zeros((2, 3, 4)), np.zeros((2, 4, 3)))


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
@pytest.mark.parametrize("size", [1, 6, 7, 50])
def test_floor_fill_writes_every_element_and_nothing_else(dtype, size):
    from benchmarks._floor import _fill_blocks

    buffer = np.zeros(size + 2, dtype)
    _fill_blocks(buffer[1:-1], dtype(1), 7)  # blocks of 7: a partial last block for most sizes
    assert buffer[0] == 0 and buffer[-1] == 0
    assert (buffer[1:-1] == 1).all()


@pytest.mark.parametrize(
    ("ratio", "shown", "met"),
    [(1.3066, "1.307x", False), (1.2951, "1.295x", True), (1.2, "1.20x", True), (1.5, "1.50x", False)],
)
def test_target_ratio_near_its_bound_shows_the_digit_that_decides(ratio, shown, met):
    from benchmarks._harness import Record, evaluate_targets

    info = {"ratio": ratio, "targets": [{"value": "ratio", "unit": "x", "max": 1.3}]}
    [(line, was_met)] = evaluate_targets([Record("g", "paired", 1.0, info)])
    assert was_met is met
    assert f"= {shown} (target <= 1.3)" in line

"""The antialias parallel driver hands out tasks from a shared counter
(fastinterp._antialias._claim_task): every task runs exactly once, whatever the number of
tasks and threads."""

import numba
import numpy as np
import pytest
from numba import njit

import fastinterp
from fastinterp import _antialias


@njit
def _claim_twice(counter):
    return _antialias._claim_task(counter), _antialias._claim_task(counter)


def test_a_claim_returns_the_counter_and_increments_it_atomically():
    counter = np.array([5], np.int64)
    assert _claim_twice(counter) == (5, 6)
    assert counter[0] == 7
    # One atomic read-modify-write each: two threads can never take the same task (a plain
    # load, add and store can, though a stress test on two busy cores rarely shows it).
    ir = "".join(_claim_twice.inspect_llvm().values())
    assert ir.count("atomicrmw add") == 2


@pytest.fixture
def two_threads():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs a pool of two threads")
    before = fastinterp.get_num_threads()
    fastinterp.set_num_threads(2)
    yield
    fastinterp.set_num_threads(before)


@pytest.mark.parametrize("rows_per_task", [1, 2, 5])
@pytest.mark.parametrize("items", [1, 2, 7])
def test_parallel_driver_runs_every_task_once(two_threads, items, rows_per_task):
    """Task counts from 1 to 35, below, at and above the thread count: the parallel driver
    leaves no NaN sentinel behind and gives the serial driver's bits."""
    src = np.random.default_rng(items).random((items, 10, 8), dtype=np.float32)
    ys = _antialias.antialias_taps(10, 5, np.dtype(np.float32))
    xs = _antialias.antialias_taps(8, 3, np.dtype(np.float32))
    expected, got = np.full((items, 5, 3), np.nan, np.float32), np.full((items, 5, 3), np.nan, np.float32)
    _antialias.run_tables(src, expected, ys, xs, None, True, rows_per_task, serial=True)
    _antialias.run_tables(src, got, ys, xs, None, True, rows_per_task, serial=False)
    assert not np.isnan(got).any()
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))

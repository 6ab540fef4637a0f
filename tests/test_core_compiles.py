"""Each CPU driver is compiled once per kind of request, not again for a read-only source
(``np.asarray`` of a PIL image is read-only; the drivers take every source read-only)."""

import numpy as np
import pytest

import fastinterp
from fastinterp import _antialias, _cpu, _cpu_fixed

DRIVERS = (
    _cpu.serial_tasks, _cpu.parallel_tasks, _cpu_fixed.serial_tasks, _cpu_fixed.parallel_tasks,
    _antialias.serial_antialias, _antialias.parallel_antialias,
)


def _compiled() -> int:
    return sum(len(driver.signatures) for driver in DRIVERS)


@pytest.mark.parametrize(
    "in_size, out_size, antialias",
    [((5, 7), (9, 11), False), ((5, 7), (10, 14), False), ((15, 21), (6, 9), True)],
    ids=["tables", "fixed factor", "antialias tables"],
)
@pytest.mark.parametrize("channels_first", [True, False], ids=["planes", "pixels"])
def test_a_read_only_source_reuses_the_compiled_driver(in_size, out_size, antialias, channels_first):
    shape = (3, *in_size) if channels_first else (*in_size, 3)
    writable = np.random.default_rng(0).random(shape, dtype=np.float32)
    expected = fastinterp.resize(writable, size=out_size, channels_first=channels_first, antialias=antialias)
    compiled = _compiled()
    frozen = writable.copy()
    frozen.flags.writeable = False
    result = fastinterp.resize(frozen, size=out_size, channels_first=channels_first, antialias=antialias)
    assert _compiled() == compiled
    np.testing.assert_array_equal(result, expected)

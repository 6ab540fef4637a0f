"""Thread safety, thread control and a light import."""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import fastinterp


def test_concurrent_calls_from_python_threads_agree():
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((64, 12, 12)).astype(np.float32) for _ in range(8)]
    expected = [fastinterp.resize(x, 8, channels_first=True) for x in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda x: fastinterp.resize(x, 8, channels_first=True), inputs * 3))
    for got, want in zip(results, expected * 3):
        assert np.array_equal(got, want)


def test_concurrent_calls_do_not_abort_the_process():
    """numba's workqueue layer aborts on concurrent parallel launches; fastinterp must not."""
    code = (
        "import numpy as np, fastinterp\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "x = np.ones((256, 24, 24), np.float32)\n"
        "with ThreadPoolExecutor(4) as pool:\n"
        "    outs = list(pool.map(lambda _: fastinterp.resize(x, 4, channels_first=True), range(16)))\n"
        "assert all(o.shape == (256, 96, 96) for o in outs)\n"
        "print('ok')\n"
    )
    for layer in ("", "workqueue"):
        env = {"PATH": "/usr/bin:/bin", **({"NUMBA_THREADING_LAYER": layer} if layer else {})}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**env, **_pythonpath()})
        assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def _pythonpath():
    import os

    return {k: v for k, v in os.environ.items() if k in ("PYTHONPATH", "HOME", "NUMBA_CACHE_DIR")}


def test_set_num_threads_round_trip():
    before = fastinterp.get_num_threads()
    fastinterp.set_num_threads(1)
    try:
        assert fastinterp.get_num_threads() == 1
    finally:
        fastinterp.set_num_threads(before)
    assert fastinterp.get_num_threads() == before


def test_import_is_light():
    code = "import sys, fastinterp; print(sorted(m for m in ('numba', 'torch', 'numba.cuda') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_serial_and_parallel_launches_share_one_compiled_task_body():
    """prange hands out uint64 indices; compiling the task body for them as well as for the
    serial driver's int64 would double the cold compile time."""
    import numba
    from numba import types

    from fastinterp import _cpu
    from fastinterp._coords import axis_taps

    # Drivers compiled here, not loaded from numba's cache, ask the task body for every
    # signature they call (a cached driver holds the body's code and asks for none).
    serial = numba.njit(_cpu.serial_tasks.py_func)
    parallel = numba.njit(parallel=True)(_cpu.parallel_tasks.py_func)
    taps = axis_taps(3, 6, "center", np.dtype(np.float32))
    planes = np.ones((4, 3, 3), np.float32)
    for driver in (serial, parallel):
        driver(planes, np.empty((4, 6, 6), np.float32), taps, taps, 2)
    task_types = {signature[4] for signature in _cpu._plane_task.signatures}
    assert task_types == {types.int64}


def test_benchmarks_pin_threads_through_fastinterp():
    """The benchmarks' thread pinning must let fastinterp choose its fork-safe layer first:
    numba.set_num_threads alone would start numba's pool on its default layer (GNU OpenMP)."""
    from pathlib import Path

    code = (
        "import numba\n"
        "from benchmarks._harness import pin_threads\n"
        "pinned = pin_threads()\n"
        "print(numba.config.THREADING_LAYER, pinned['numba'] == numba.get_num_threads())\n"
    )
    env = {"PATH": "/usr/bin:/bin", **_pythonpath()}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parent.parent)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["forksafe", "True"]

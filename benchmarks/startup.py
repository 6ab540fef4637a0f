"""First-call latency of fastinterp in a new process, with a cold and a warm numba cache.

Run ``python benchmarks/startup.py`` for a one-off measurement, ``python benchmarks/startup.py
--pairs 9`` for the warm first call against the control timed in alternation (issue 13: within
0.1 s of it); ``test_bench_core.py`` uses :func:`measure` and :func:`measure_legacy` for the
core issue's targets (cold compile < 5 s) and :func:`measure_numba_floor` for
what any numba package pays before its first warm call.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parent.parent

#: Run in the child: numpy is already imported (as in any user's program), then the clock
#: covers ``import fastinterp`` and the first call of each kind of kernel.
_CHILD = r"""
import json, time
import numpy as np
rng = np.random.default_rng(0)
stack = rng.random((2048, 24, 24), dtype=np.float32)
start = time.perf_counter()
import fastinterp
import_done = time.perf_counter()
fastinterp.resize(stack, 8, channels_first=True)
first_done = time.perf_counter()
fastinterp.resize(stack, 8, channels_first=True)
second_done = time.perf_counter()
fastinterp.resize(rng.integers(0, 256, (24, 24, 2048), dtype=np.uint8), 8)
uint8_done = time.perf_counter()
fastinterp.resize(stack[:, :, :1] * 255, 8, legacy=True)
legacy_done = time.perf_counter()
print(json.dumps({
    "import_s": import_done - start,
    "first_call_s": first_done - start,
    "second_call_s": second_done - first_done,
    "first_uint8_hwc_call_s": uint8_done - second_done,
    "first_legacy_call_s": legacy_done - uint8_done,
}))
"""


#: The drop-in's first call on the (24, 24, 2048) stack, then on one channel as the original
#: script calls it: the legacy kernel shares no compiled code with the calls above.
_LEGACY_CHILD = r"""
import json, time
import numpy as np
stack = np.random.default_rng(0).random((24, 24, 2048), dtype=np.float32) * 255
start = time.perf_counter()
import fastinterp
fastinterp.BilinearInterpolation(8, 8).transform(stack)
first_done = time.perf_counter()
fastinterp.BilinearInterpolation(8, 8).transform(stack[:12, :12, :1])
print(json.dumps({
    "first_call_s": first_done - start,
    "first_one_channel_call_s": time.perf_counter() - first_done,
}))
"""


#: The control: a one-line cached parallel numba function filling an output of the same size.
_FLOOR_MODULE = """
from numba import njit, prange

@njit(cache=True, parallel=True)
def fill(flat):
    for i in prange(flat.shape[0]):
        flat[i] = 1.0
"""
_FLOOR_CHILD = r"""
import json, time
import numpy as np
start = time.perf_counter()
import numba
import_done = time.perf_counter()
import numba_floor
numba_floor.fill(np.empty(2048 * 192 * 192, np.float32))
first_done = time.perf_counter()
print(json.dumps({"numba_import_s": import_done - start, "first_call_s": first_done - start}))
"""


def _run_child(code: str, cwd: Path, cache_dir: str) -> dict[str, Any]:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    start = time.perf_counter()
    child = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    times = json.loads(child.stdout.strip().splitlines()[-1])
    times["process_s"] = time.perf_counter() - start
    return times


@contextlib.contextmanager
def numba_floor_workspace() -> Iterator[Path]:
    """A folder holding the control module (``_FLOOR_MODULE``) with its numba cache filled."""
    with tempfile.TemporaryDirectory(prefix="fastinterp-numba-floor-") as scratch:
        Path(scratch, "numba_floor.py").write_text(_FLOOR_MODULE)
        _run_child(_FLOOR_CHILD, Path(scratch), str(Path(scratch, "cache")))  # compiles
        yield Path(scratch)


def measure_numba_floor(workspace: Path) -> dict[str, Any]:
    """``import numba`` and the first call of a one-line cached parallel fill of a
    (2048, 192, 192) float32 output, in a new process with a warm cache.

    This is the least a numba-compiled call costs in a new process: numba's import and its
    one-time set-up of the typing and lowering registries, which loads scipy.linalg when scipy
    is installed (numba checks for BLAS).
    """
    return _run_child(_FLOOR_CHILD, workspace, str(workspace / "cache"))


def measure(cache_dir: str) -> dict[str, Any]:
    """Times of a fresh Python process whose numba cache is ``cache_dir`` (see ``_CHILD``).

    ``first_call_s`` is ``import fastinterp`` plus the first float32 channels-first
    (2048, 24, 24) x8 call; ``process_s`` is the child's whole wall time.
    """
    return _run_child(_CHILD, REPOSITORY, cache_dir)


def measure_legacy(cache_dir: str) -> dict[str, Any]:
    """Times of a fresh Python process whose first fastinterp call is the drop-in's (see
    ``_LEGACY_CHILD``); ``first_call_s`` includes ``import fastinterp``."""
    return _run_child(_LEGACY_CHILD, REPOSITORY, cache_dir)


def cold_then_warm() -> tuple[dict[str, Any], dict[str, Any]]:
    """One process on an empty numba cache (compiles), then one on the cache it left."""
    with tempfile.TemporaryDirectory(prefix="fastinterp-numba-cache-") as cache_dir:
        return measure(cache_dir), measure(cache_dir)


def warm_against_control(pairs: int) -> dict[str, float]:
    """Medians over ``pairs`` rounds, each a new process of fastinterp's warm first call and one
    of the control (:func:`measure_numba_floor`), in alternating order: load that comes and goes
    weighs on both alike. ``excess_s`` is the median of the per-round differences."""
    ours, control = [], []
    with tempfile.TemporaryDirectory(prefix="fastinterp-numba-cache-") as cache_dir, numba_floor_workspace() as workspace:
        measure(cache_dir)  # fills the cache
        for round_index in range(pairs):
            runs = [lambda: ours.append(measure(cache_dir)), lambda: control.append(measure_numba_floor(workspace))]
            for run in runs if round_index % 2 == 0 else runs[::-1]:
                run()
    return {
        "first_call_s": statistics.median(r["first_call_s"] for r in ours),
        "control_first_call_s": statistics.median(r["first_call_s"] for r in control),
        "excess_s": statistics.median(o["first_call_s"] - c["first_call_s"] for o, c in zip(ours, control)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python benchmarks/startup.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, help="only the warm first call against the control, this many rounds")
    args = parser.parse_args(argv)
    if args.pairs:
        load_before = os.getloadavg()[0]
        times = warm_against_control(args.pairs)
        print(
            f"warm first call {times['first_call_s']:.3f} s, control {times['control_first_call_s']:.3f} s, "
            f"excess (median of {args.pairs} paired differences) {times['excess_s']:.3f} s (target <= 0.1 s); "
            f"load {load_before:.2f} -> {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
        )
        return
    cold, warm = cold_then_warm()
    print(f"{'':<24}{'cold cache':>12}{'warm cache':>12}")
    for key in cold:
        print(f"{key:<24}{cold[key]:>11.3f}s{warm[key]:>11.3f}s")
    with tempfile.TemporaryDirectory(prefix="fastinterp-numba-cache-") as cache_dir:
        legacy = measure_legacy(cache_dir)
    print(f"drop-in on (24, 24, 2048), cold cache: first call {legacy['first_call_s']:.3f}s")
    with numba_floor_workspace() as workspace:
        floor = measure_numba_floor(workspace)
    print(f"numba floor (a cached one-line parallel fill, warm cache): first call {floor['first_call_s']:.3f}s")


if __name__ == "__main__":
    main()

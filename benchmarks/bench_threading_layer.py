"""Cost of the fork-safe threading layer (issue 12, item 7): the same resize under each layer.

Each layer runs in its own interpreter (numba picks its layer once per process):
``python -m benchmarks.bench_threading_layer``. Prints the median of 15 calls per case and
the ratio against GNU OpenMP (``omp``, the previous default), measured in the same run.
"""

from __future__ import annotations

import os
import subprocess
import sys

CASE = r"""
import statistics, time, numpy as np, numba, fastinterp
x = np.random.default_rng(0).standard_normal((2048, 24, 24)).astype(np.float32)
out = np.empty((2048, 192, 192), np.float32)
def median(call):
    call()
    times = []
    for _ in range(15):
        start = time.perf_counter(); call(); times.append(time.perf_counter() - start)
    return statistics.median(times)
out_ms = median(lambda: fastinterp.resize(x, 8, channels_first=True, out=out)) * 1e3
fresh_ms = median(lambda: fastinterp.resize(x, 8, channels_first=True)) * 1e3
print(numba.threading_layer(), f"{out_ms:.2f}", f"{fresh_ms:.2f}")
"""


def measure(layer: str | None) -> tuple[str, float, float]:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    if layer:
        env["NUMBA_THREADING_LAYER"] = layer
    done = subprocess.run([sys.executable, "-c", CASE], capture_output=True, text=True, env=env, check=True)
    name, out_ms, fresh_ms = done.stdout.split()
    return name, float(out_ms), float(fresh_ms)


def main() -> None:
    print(f"load average before: {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    baseline = measure("omp")
    rows = [baseline, measure(None)]
    for name, out_ms, fresh_ms in rows:
        print(f"{name:10s} out= {out_ms:8.2f} ms ({out_ms / baseline[1]:.3f}x omp)   "
              f"fresh {fresh_ms:8.2f} ms ({fresh_ms / baseline[2]:.3f}x omp)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

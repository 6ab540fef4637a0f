"""Issue 12, item 7: fork after use.

A torch user resizes in the main process, then starts fork-based workers (a
``multiprocessing`` pool, a ``DataLoader`` with workers). GNU OpenMP cannot run a parallel
region in a child forked after it started its threads: the child hangs. Each scenario runs
in its own interpreter under a timeout, so that a regression fails instead of hanging.
"""

import os
import subprocess
import sys

import pytest

# Big enough to run on the thread pool (more than fastinterp._cpu.SERIAL_THRESHOLD outputs).
PARENT_CALL = (
    "import numpy as np, fastinterp\n"
    "x = np.ones((256, 24, 24), np.float32)\n"
    "assert fastinterp.resize(x, 4, channels_first=True).shape == (256, 96, 96)\n"
)

POOL = PARENT_CALL + (
    "import multiprocessing as mp\n"
    "def work(i):\n"
    "    return float(fastinterp.resize(x + i, 4, channels_first=True).sum())\n"
    "with mp.get_context('fork').Pool(2) as pool:\n"
    "    sums = pool.map(work, range(4))\n"
    "assert sums == [float(256 * 96 * 96 * (1 + i)) for i in range(4)], sums\n"
    "print('ok')\n"
)

DATALOADER = PARENT_CALL + (
    "import torch\n"
    "from torch.utils.data import DataLoader, Dataset\n"
    "class Resized(Dataset):\n"
    "    def __len__(self):\n"
    "        return 4\n"
    "    def __getitem__(self, i):\n"
    "        return fastinterp.resize(torch.full((256, 24, 24), float(i)), 4)\n"
    "loader = DataLoader(Resized(), batch_size=1, num_workers=2, multiprocessing_context='fork')\n"
    "means = [float(batch.mean()) for batch in loader]\n"
    "assert means == [0.0, 1.0, 2.0, 3.0], means\n"
    "print('ok')\n"
)


#: A hang guard, never a timing: a cold run compiles the kernel in the child first (12 s of CPU,
#: 27 s at load 4.5), and a loaded 2-core CI machine shares the cores with numba compiling in
#: both pytest workers; a hung fork never finishes, whatever the patience.
PATIENCE_S = 300


def _run(code: str, layer: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    if layer is not None:
        env["NUMBA_THREADING_LAYER"] = layer
    try:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=PATIENCE_S)
    except subprocess.TimeoutExpired:
        pytest.fail("the forked workers hung (a threading layer that is not fork-safe?)")


@pytest.mark.parametrize("code", [POOL, DATALOADER], ids=["fork-pool", "dataloader-2-workers"])
def test_fork_after_a_parallel_call_in_the_parent(code):
    done = _run(code)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_the_default_threading_layer_is_fork_safe():
    code = PARENT_CALL + "import numba; print(numba.threading_layer())"
    done = _run(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() in ("tbb", "workqueue")

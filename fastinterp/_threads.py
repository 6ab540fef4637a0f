"""Thread control for the CPU kernels: safe under Python threads and after ``fork``.

Two hazards decide the threading layer:

* threads: numba's ``workqueue`` layer aborts the process when two Python threads launch
  parallel kernels at the same time;
* fork: GNU OpenMP (numba's ``omp`` layer on Linux) hangs a child forked after the parent
  ran a parallel region, which is what a torch user does (resize in the main process, then
  a fork-based ``DataLoader`` or ``multiprocessing`` pool).

Unless the user chose a layer (``NUMBA_THREADING_LAYER`` or ``numba.config``), fastinterp
asks numba for a fork-safe one (``forksafe``): TBB where it can be loaded (fork- and
thread-safe), else ``workqueue``, whose parallel launches fastinterp serialises with a lock
(concurrent calls from several threads then take turns on the pool instead of aborting).
What remains: a user who forces ``omp`` (GNU OpenMP) gets thread safety but not fork
safety; with ``workqueue``, concurrent calls do not run in parallel with each other.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

_launch_lock = threading.Lock()
_configured = False


def _new_lock_in_child() -> None:
    # A child forked while another thread held the lock would otherwise wait for ever.
    global _launch_lock
    _launch_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


def configure_threading_layer() -> None:
    """Pick a fork-safe numba threading layer once, before the first parallel launch."""
    global _configured
    if _configured:
        return
    import numba

    if "NUMBA_THREADING_LAYER" not in os.environ and numba.config.THREADING_LAYER == "default":
        numba.config.THREADING_LAYER = "forksafe"
    _configured = True


def _layer_is_threadsafe() -> bool:
    import numba

    try:
        return numba.threading_layer() in ("omp", "tbb")
    except ValueError:  # no parallel launch yet: decided by the configured layer
        return numba.config.THREADING_LAYER in ("threadsafe", "safe", "omp", "tbb")


@contextlib.contextmanager
def parallel_launch() -> Iterator[None]:
    """Context for one parallel kernel launch: serialised only where the layer needs it."""
    configure_threading_layer()
    if _layer_is_threadsafe():
        yield
    else:
        with _launch_lock:
            yield


def get_num_threads() -> int:
    """Number of threads the CPU kernels use in the calling thread (numba's setting)."""
    import numba

    configure_threading_layer()  # numba starts its pool on this query: choose the layer first

    return numba.get_num_threads()


def set_num_threads(n: int) -> None:
    """Set the number of threads the CPU kernels use in the calling thread.

    This is numba's per-thread setting: it must be between 1 and ``NUMBA_NUM_THREADS``
    (the size of the pool, fixed at start-up; by default the number of cores).
    """
    import numba

    configure_threading_layer()
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"number of threads must be an int, got {type(n).__name__}")
    if not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"number of threads must be between 1 and {numba.config.NUMBA_NUM_THREADS}, got {n}")
    numba.set_num_threads(n)

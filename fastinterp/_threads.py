"""Thread control for the CPU kernels.

numba's default ``workqueue`` threading layer aborts the process when two Python threads
launch parallel kernels at the same time. Unless the user chose a layer
(``NUMBA_THREADING_LAYER``), fastinterp asks numba for a thread-safe layer (OpenMP or TBB)
when one can be loaded, and otherwise serialises its own parallel launches with a lock.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

_launch_lock = threading.Lock()
_configured = False


def _safe_layer_available() -> bool:
    for module in ("numba.np.ufunc.omppool", "numba.np.ufunc.tbbpool"):
        try:
            __import__(module)
            return True
        except ImportError:
            continue
    return False


def configure_threading_layer() -> None:
    """Pick a thread-safe numba threading layer once, before the first parallel launch."""
    global _configured
    if _configured:
        return
    import numba

    if "NUMBA_THREADING_LAYER" not in os.environ and numba.config.THREADING_LAYER == "default":
        if _safe_layer_available():
            numba.config.THREADING_LAYER = "threadsafe"
    _configured = True


def _layer_is_threadsafe() -> bool:
    import numba

    try:
        return numba.threading_layer() in ("omp", "tbb")
    except ValueError:  # no parallel launch yet: decided by the configured layer
        return numba.config.THREADING_LAYER in ("threadsafe", "omp", "tbb")


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

    return numba.get_num_threads()


def set_num_threads(n: int) -> None:
    """Set the number of threads the CPU kernels use in the calling thread.

    This is numba's per-thread setting: it must be between 1 and ``NUMBA_NUM_THREADS``
    (the size of the pool, fixed at start-up; by default the number of cores).
    """
    import numba

    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"number of threads must be an int, got {type(n).__name__}")
    if not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"number of threads must be between 1 and {numba.config.NUMBA_NUM_THREADS}, got {n}")
    numba.set_num_threads(n)

"""The numba.cuda kernels under numba's CUDA simulator.

NUMBA_ENABLE_CUDASIM must be set before numba is first imported, so these tests run in a
pytest process of their own (the second one in tests/run.sh); anywhere else they are skipped.
"""

import os
from pathlib import Path

import pytest

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    if SIMULATED:
        return
    skip = pytest.mark.skip(reason="needs NUMBA_ENABLE_CUDASIM=1 (tests/run.sh runs these in their own process)")
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(skip)

#!/usr/bin/env bash
# Install fastinterp with everything its tests need, then run the two test processes:
# the main suite, and the numba.cuda kernels under the CUDA simulator (NUMBA_ENABLE_CUDASIM
# must be set before numba is imported, so it gets a process of its own).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check \
    torch==2.14.1 torchvision==0.29.1 -e ".[test,viz,bench]"
python3 -m pytest -q -p no:cacheprovider -m "not cudasim" --ignore=tests/cudasim "$@"
NUMBA_ENABLE_CUDASIM=1 python3 -m pytest -q -p no:cacheprovider -m cudasim tests/cudasim "$@"

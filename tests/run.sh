#!/usr/bin/env bash
# Install fastinterp with everything its tests need, then run the two test processes:
# the main suite, and the numba.cuda kernels under the CUDA simulator (NUMBA_ENABLE_CUDASIM
# must be set before numba is imported, so it gets a process of its own).
set -euo pipefail
cd "$(dirname "$0")/.."
# The explorer's tests drive Debian's headless Chromium (Playwright is pointed at it; it never
# downloads a browser of its own).
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "tests/run.sh: chromium is missing; install Debian's chromium package (the browser tests need it)" >&2
        exit 2
    fi
fi
python3 -m pip install --quiet --disable-pip-version-check \
    torch==2.14.1 torchvision==0.29.1 -e ".[test,viz,bench]"
# Two workers (pytest-xdist), as many as the CI machine has cores: most of a cold run is numba
# compiling kernels, one signature at a time per process, and numba's file cache is safe to share
# between processes. worksteal starts each worker on a contiguous half of the tests (module
# fixtures such as Chromium and LocalCluster start once per worker) and rebalances at the end.
# Not -n auto: it counts the host's cores, not a container's CPU quota.
# --timeout (pytest-timeout): a test that hangs fails after 20 minutes with every thread's stack,
# instead of holding CI until its own limit with nothing to show (the longest test takes a few
# minutes on a cold, loaded machine; the whole cold run about 12).
python3 -m pytest -q -p no:cacheprovider -n 2 --dist worksteal --timeout 1200 -m "not cudasim" --ignore=tests/cudasim "$@"
NUMBA_ENABLE_CUDASIM=1 python3 -m pytest -q -p no:cacheprovider --timeout 1200 -m cudasim tests/cudasim "$@"

"""The report's comparison suite: every other library on the feature-map cases, every method
on the photo, batch and scaling-series cases, and the methods that antialias on the
antialias cases.

``python -m benchmarks`` runs it together with ``test_bench_core.py``; with
``FASTINTERP_BENCH_MODE=quick`` the series stops at 2**24 output elements.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks._harness import bench_method, mode
from benchmarks._methods import (
    CORE_METHODS, METHODS, antialias_cases, antialias_targets, feature_map_cases, report_cases,
)

PAIRS = [(case, name) for case in feature_map_cases() for name in METHODS if name not in CORE_METHODS] + [
    (case, name)
    for case in report_cases(quick=mode() == "quick")
    for name, method in METHODS.items()
    if method.in_series or not case.series
] + [(case, name) for case in antialias_cases() for name, method in METHODS.items() if method.antialias]


@pytest.mark.parametrize(("case", "name"), PAIRS, ids=[f"{case.id}|{name}" for case, name in PAIRS])
def test_resize(benchmark: Any, case: Any, name: str) -> None:
    targets = antialias_targets(case) if case.antialias and name == "fastinterp CHW" else []
    bench_method(benchmark, case, name, targets)

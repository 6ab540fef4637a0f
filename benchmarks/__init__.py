"""Benchmarks of fastinterp beside the alternatives (pytest-benchmark suites and a report).

Run ``python -m benchmarks`` from the repository root for the report (``docs/benchmarks.md``
and ``docs/benchmarks.png``), or ``python -m pytest benchmarks/test_bench_core.py`` for the
core suite with its ratios and targets printed after the run.
"""

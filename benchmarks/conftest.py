"""Shared by every benchmark suite: equal thread counts, primed memory, and ratios printed after the run.

Generic on purpose. Any benchmark may set ``extra_info["label"]`` (its name in the ratio
table), ``extra_info["role"] = "baseline"`` (the denominator of its group's ratios),
``extra_info["scale"]`` (factor from the timed work to the whole case) and
``extra_info["targets"]`` (see :func:`benchmarks._harness.evaluate_targets`).
"""

from __future__ import annotations

from typing import Any

from benchmarks._harness import (
    baseline_of,
    by_group,
    evaluate_targets,
    format_ms,
    prepare_timing,
    records_from_session,
)

_pinned: dict[str, int] = {}


def pytest_configure(config: Any) -> None:
    _pinned.update(prepare_timing())


def pytest_benchmark_update_machine_info(config: Any, machine_info: dict[str, Any]) -> None:
    machine_info["threads"] = dict(_pinned)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    session = getattr(config, "_benchmarksession", None)
    records = records_from_session(session.benchmarks) if session is not None else []
    if not records:
        return
    write = terminalreporter.write_line
    terminalreporter.section("ratios (median of the whole case; x = time / the group's baseline)")
    write(f"threads: {_pinned}")
    for group, members in by_group(records).items():
        baseline = baseline_of(members)
        write("")
        write(f"{group}" + (f"  (baseline: {baseline.label})" if baseline else ""))
        for record in members:
            ratio = f"{record.median_s / baseline.median_s:8.2f}x" if baseline else ""
            note = " *" + record.info["note"] if record.info.get("scale", 1.0) != 1.0 else ""
            write(f"  {record.label:<34} {format_ms(record.median_s):>10} ms {ratio}{note}")
    targets = evaluate_targets(records)
    if targets:
        terminalreporter.section("targets")
        for description, _met in targets:
            write(description)

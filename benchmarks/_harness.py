"""What the benchmark suites and the report share: mode, threads, checking, timing, ratios.

Environment variables (all optional):

* ``FASTINTERP_BENCH_MODE``: ``quick`` (short time budget per method, smaller series) or
  ``full`` (the default);
* ``FASTINTERP_BENCH_THREADS``: the thread count pinned for numba, torch and OpenCV (default:
  numba's pool size, the number of cores);
* ``FASTINTERP_BENCH_EXCLUSIONS``: a file to which every excluded (case, method) is appended
  as one JSON line with its reason, for the report.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import pytest

from benchmarks._methods import METHODS, Case, Method, Prepared, Unavailable, expected_cf, input_cf


@dataclass(frozen=True)
class Settings:
    """How long to time each method, and how large a slow method's share may be."""

    budget_s: float  # timed rounds per method add up to about this much
    min_rounds: int  # ... but at least this many
    max_rounds: int
    subset_elements: int  # slow per-plane methods time only this many output elements
    paired_rounds: int  # rounds of each side of a target's ratio, timed in alternation


SETTINGS = {
    "quick": Settings(budget_s=0.15, min_rounds=3, max_rounds=9, subset_elements=2**19, paired_rounds=7),
    "full": Settings(budget_s=2.0, min_rounds=5, max_rounds=100, subset_elements=2**24, paired_rounds=21),
}
#: Calls at least this long get as few as one timed round (a single burst of load on a shared
#: machine then decides the number, so it is kept to calls too slow to repeat).
SLOW_CALL_S = 1.0


def mode() -> str:
    name = os.environ.get("FASTINTERP_BENCH_MODE", "full")
    if name not in SETTINGS:
        raise ValueError(f"FASTINTERP_BENCH_MODE must be one of {sorted(SETTINGS)}, got {name!r}")
    return name


def settings() -> Settings:
    return SETTINGS[mode()]


def pin_threads() -> dict[str, int]:
    """Give numba, torch and OpenCV the same thread count; return what each was set to.

    numba's through fastinterp: it picks its fork-safe threading layer before numba's pool
    starts (``numba.set_num_threads`` would start it on numba's default layer).
    """
    import numba

    import fastinterp

    count = int(os.environ.get("FASTINTERP_BENCH_THREADS", numba.config.NUMBA_NUM_THREADS))
    fastinterp.set_num_threads(count)
    pinned = {"numba": fastinterp.get_num_threads()}
    try:
        import torch

        torch.set_num_threads(count)
        pinned["torch"] = torch.get_num_threads()
    except ImportError:
        pass
    try:
        import cv2

        cv2.setNumThreads(count)
        pinned["opencv"] = cv2.getNumThreads()
    except ImportError:
        pass
    return pinned


def prime_fresh_memory(gib: float = 1.0) -> None:
    """Touch and free ``gib`` GiB once, before any timing.

    The first large allocations of a process on these VMs fault their pages in 3 to 5 times
    slower than later ones (a fresh (2048, 96, 96) float32 output: 85 ms on the first call,
    15 ms from the fourth on), which would penalise whichever benchmark happens to run first.
    """
    page_elements = 4096 // np.dtype(np.float32).itemsize
    scratch = np.empty(int(gib * 2**30) // 4, np.float32)
    scratch[::page_elements] = 0.0
    del scratch


def prepare_timing(threads: int | None = None) -> dict[str, int]:
    """What every benchmark process does before it times anything: pin the thread counts
    (``threads``, else ``FASTINTERP_BENCH_THREADS``, else all cores; see :func:`pin_threads`)
    and prime fresh memory (:func:`prime_fresh_memory`). Returns the pinned counts."""
    if threads:
        os.environ["FASTINTERP_BENCH_THREADS"] = str(threads)
    pinned = pin_threads()
    prime_fresh_memory()
    return pinned


def max_abs_diff(actual: np.ndarray, expected: np.ndarray) -> float:
    """Largest absolute difference; inf if any difference is NaN.

    Works in blocks of rows small enough for the cache, in float32 unless an input is wider:
    the differences checked are far above float32 rounding, and a 604 MB case is then checked
    in about 0.2 s instead of 2 s.
    """
    if actual.shape != expected.shape:
        raise AssertionError(f"shape {actual.shape} differs from fastinterp's {expected.shape}")
    rows, row_elements = expected.shape[-2], expected.size // expected.shape[-2]
    step = max(1, (1 << 18) // max(1, row_elements))
    work_dtype = np.result_type(actual.dtype, expected.dtype, np.float32)
    worst = 0.0
    for start in range(0, rows, step):
        block = np.s_[..., start : start + step, :]
        diff = np.subtract(actual[block], expected[block], dtype=work_dtype)
        block_worst = float(np.abs(diff, out=diff).max())
        if block_worst != block_worst:  # NaN
            return float("inf")
        worst = max(worst, block_worst)
    return worst


def record_exclusion(group: str, label: str, reason: str, **info: Any) -> NoReturn:
    """Note a method left out of a case (for the report) and skip the test."""
    path = os.environ.get("FASTINTERP_BENCH_EXCLUSIONS")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps({"group": group, "label": label, "reason": reason, **info}) + "\n")
    pytest.skip(f"{label} excluded from {group}: {reason}")


def call_once(run: Callable[[], Any]) -> tuple[Any, float]:
    """Run once (the warm-up, whose result is checked); return the result and its duration."""
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def time_run(
    benchmark: Any, run: Callable[[], Any], *, first_s: float, group: str, label: str, **info: Any
) -> None:
    """The one timing helper: as many rounds of ``run`` as the mode's budget allows.

    ``first_s`` is the duration of the checked first call. Over a second it may have been
    compilation or cache loading, so one more call estimates the steady time before the rounds
    are chosen. ``info`` lands in the benchmark's ``extra_info``: ``role`` (``baseline`` is the
    group's ratio denominator), ``scale`` (factor from the timed work to the whole case),
    ``note``, and ``targets`` (see :func:`evaluate_targets`).
    """
    config = settings()
    reprobed = first_s >= SLOW_CALL_S
    if reprobed:
        first_s = call_once(run)[1]
    low = 1 if first_s >= SLOW_CALL_S else config.min_rounds
    rounds = int(min(config.max_rounds, max(low, config.budget_s / max(first_s, 1e-9))))
    benchmark.group = group
    benchmark.extra_info.update(label=label, **info)
    # An untimed call right before the rounds: fresh outputs then reuse memory the guest kernel
    # has just freed instead of memory it may have handed back to the host meanwhile (the
    # checks between the first call and the rounds take seconds on big cases).
    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=0 if reprobed else 1)


#: The pause before each call timed in alternation or rotation. After each parallel op, torch's
#: OpenMP workers spin for about 10 ms of CPU before they sleep (GNU OpenMP's default spin count;
#: measured from /proc/self/task/*/schedstat), on the cores the next call needs: without the
#: pause, a method timed right after torch is charged for torch's spinning, one timed after
#: itself is not (fastinterp's (2048, 96, 96) antialias read 16.8 or 9.4 ms on a quiet machine
#: depending on which came first, and the median of an alternation fell on either).
SETTLE_S = 0.03


def settled_time(run: Callable[[], Any], settle_s: float = SETTLE_S) -> float:
    """Seconds one call of ``run`` takes, started after ``settle_s`` seconds of sleep."""
    time.sleep(settle_s)
    return call_once(run)[1]


def rotating_medians(
    calls: dict[str, Callable[[], Any]], rounds: int, timer: Callable[[Callable[[], Any]], float] = settled_time,
) -> dict[str, float]:
    """Median of ``timer(call)`` for every call over ``rounds`` rounds, each round timing every
    call once in an order that rotates from round to round (by default each call after a pause,
    :func:`settled_time`: not charged for the thread pool of the call before it spinning)."""
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(timer(calls[name]))
    return {name: statistics.median(values) for name, values in times.items()}


def paired_times(first: Callable[[], Any], second: Callable[[], Any], rounds: int | None = None) -> tuple[float, float]:
    """Median times of two calls timed in alternation (``rounds`` rounds, by default the
    mode's), after one untimed call of each.

    Each round times both, in an order that alternates from round to round, each call after
    :data:`SETTLE_S` of sleep. Load on a shared machine that comes and goes then weighs on both
    sides alike: the ratio of these medians moves far less from run to run than that of two
    medians timed minutes apart.
    """
    first(), second()
    times: tuple[list[float], list[float]] = ([], [])
    for round_index in range(settings().paired_rounds if rounds is None else rounds):
        order = (0, 1) if round_index % 2 == 0 else (1, 0)
        for side in order:
            times[side].append(settled_time((first, second)[side]))
    return float(np.median(times[0])), float(np.median(times[1]))


def planes_to_time(case: Case, per_plane_cost: bool) -> int:
    """All planes, or for slow per-plane methods as many as the mode's subset allows."""
    if not per_plane_cost:
        return case.planes
    per_plane = case.out_elements // case.planes
    return max(1, min(case.planes, settings().subset_elements // per_plane))


def _difference(case: Case, method: Method, prepared: Prepared, planes: int, result: Any) -> tuple[float, float]:
    """Largest difference of a method's result to what it must equal, and the tolerance."""
    actual = prepared.as_cf(result)
    expected = prepared.expected
    if expected is None:
        expected = expected_cf(case).reshape(-1, *case.out_hw)[:planes].reshape(actual.shape)
    tolerance = method.uint8_tolerance if expected.dtype == np.uint8 else 1e-5
    return max_abs_diff(actual, expected), tolerance


def bench_method(benchmark: Any, case: Case, name: str, targets: Iterable[dict] = ()) -> None:
    """Check ``METHODS[name]`` against fastinterp on ``case``, then time it (or exclude it)."""
    method = METHODS[name]
    where = {"case": case.title, "dtype": case.dtype}
    reason = method.excluded(case)
    if reason:
        record_exclusion(case.id, name, reason, **where)
    planes = planes_to_time(case, method.per_plane_cost)
    try:
        prepared = method.prepare(case, input_cf(case), planes)
    except Unavailable as error:
        record_exclusion(case.id, name, f"skipped: {error}", **where)
    result, first_s = call_once(prepared.run)
    info: dict[str, Any] = {}
    if prepared.as_cf is not None:
        info["max_diff"], tolerance = _difference(case, method, prepared, planes, result)
        if info["max_diff"] > tolerance:
            reason = f"differs from fastinterp by up to {info['max_diff']:g} (tolerance {tolerance:g})"
            record_exclusion(case.id, name, reason, **where)
    del result  # freed before the timed rounds
    note, scale = prepared.note, prepared.scale
    if planes < case.planes:
        scale = case.planes / planes
        note = "; ".join(filter(None, [f"timed on {planes} of {case.planes} planes, scaled x{scale:,.1f}", note]))
    time_run(
        benchmark,
        prepared.run,
        first_s=first_s,
        group=case.id,
        label=name,
        role=method.role,
        scale=scale,
        note=note,
        out_elements=case.out_elements,
        series=case.series,
        targets=list(targets),
        **where,
        **info,
    )


@dataclass(frozen=True)
class Record:
    """One benchmark's result: its group, label, median time of the whole case and extra info."""

    group: str
    label: str
    median_s: float
    info: dict[str, Any]

    @classmethod
    def make(cls, group: str, name: str, median_s: float, info: dict[str, Any]) -> Record:
        return cls(group, info.get("label", name), median_s * info.get("scale", 1.0), info)


def records_from_session(benchmarks: Iterable[Any]) -> list[Record]:
    """Records from pytest-benchmark's in-process results (``config._benchmarksession``)."""
    return [Record.make(b.group, b.name, b.stats.median, b.extra_info) for b in benchmarks if b]


def records_from_json(report: dict[str, Any]) -> list[Record]:
    """Records from a ``--benchmark-json`` file."""
    return [Record.make(b["group"], b["name"], b["stats"]["median"], b["extra_info"]) for b in report["benchmarks"]]


def by_group(records: Iterable[Record]) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(record.group, []).append(record)
    return groups


def baseline_of(group: list[Record]) -> Record | None:
    return next((r for r in group if r.info.get("role") == "baseline"), None)


def _ratio(value: float, target: dict[str, Any]) -> str:
    """A ratio with two decimals, or three where two would round it onto its bound (1.3065x
    shown as 1.30x would read as meeting <= 1.3)."""
    bound = target.get("max", target.get("min"))
    digits = 3 if abs(value - bound) < 0.01 else 2
    return f"{value:.{digits}f}x"


def evaluate_targets(records: list[Record]) -> list[tuple[str, bool]]:
    """Each target a benchmark declared in ``extra_info["targets"]``, as (description, met).

    A target is ``{"over": label, "max": x}`` or ``{"over": label, "min": x}`` (this
    benchmark's time over that of ``label`` in the same group), or ``{"value": key,
    "max": x}`` (a number the benchmark stored in its extra info, in seconds, or a ratio with
    ``"unit": "x"``), which may name a ``"control"``: the label of a benchmark in the same
    group whose same number is shown beside it (what the value cannot go below).
    """
    groups = by_group(records)
    results = []
    for record in records:
        for target in record.info.get("targets", []):
            if "over" in target:
                other = next((r for r in groups[record.group] if r.label == target["over"]), None)
                if other is None:
                    results.append((f"{record.group}: {target['over']} was not measured", False))
                    continue
                value, what = record.median_s / other.median_s, f"{record.label} / {other.label}"
                shown = _ratio(value, target)
            else:
                value, what = record.info[target["value"]], f"{record.label}: {target['value']}"
                shown = _ratio(value, target) if target.get("unit") == "x" else f"{value:.3f} s"
                control = next((r for r in groups[record.group] if r.label == target.get("control")), None)
                if control is not None:
                    shown += f" ({control.label}: {control.info[target['value']]:.3f} s)"
            bound = "max" if "max" in target else "min"
            met = value <= target["max"] if bound == "max" else value >= target["min"]
            limit = f"<= {target['max']}" if bound == "max" else f">= {target['min']}"
            results.append((f"{record.group}: {what} = {shown} (target {limit}): {'met' if met else 'MISSED'}", met))
    return results


def format_ms(seconds: float) -> str:
    milliseconds = seconds * 1e3
    return f"{milliseconds:,.3g}" if milliseconds < 100 else f"{milliseconds:,.0f}"

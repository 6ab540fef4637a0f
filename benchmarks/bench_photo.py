"""The photo rows of the report, (3, 1080, 1920) x2 and x0.5 in uint8 and float32, timed in alternation.

``python -m benchmarks.bench_photo [--threads N] [--rounds N]`` from the repository root prints,
per case, the median of every method of the report that runs on these rows (fastinterp CHW and
HWC, fresh and ``out=``; torch NCHW and channels_last; OpenCV per plane and HWC), plus
``table path``: fastinterp's kernels with tap tables (:func:`fastinterp._cpu.run_tasks`, what
these rows ran before :mod:`fastinterp._cpu_fixed`), into a preallocated output in each layout.
Each round runs every method once, in an order that rotates from round to round, so that load
on a shared machine weighs on all alike, each after a pause of ``SETTLE_S`` (see
:mod:`benchmarks._harness`). Threads are pinned equal for numba, torch and OpenCV,
as in the report. Each method's result is checked against fastinterp's before timing.

Target (issue 13, section 3): on every row the fastest fastinterp variant beats every peer.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from benchmarks._harness import format_ms, max_abs_diff, prepare_timing, rotating_medians
from benchmarks._methods import (
    METHODS, Case, Prepared, channels_first_view, channels_last, channels_last_shape, expected_cf, input_cf,
    report_cases,
)

#: The methods of the report timed here (the slow per-plane libraries and the original script
#: are orders of magnitude away on these rows).
TIMED = (
    "fastinterp CHW", "fastinterp CHW out=", "fastinterp HWC", "fastinterp HWC out=",
    "torch NCHW", "torch channels_last", "OpenCV HWC chunks", "OpenCV CHW per plane",
)  # fmt: skip
PEERS = ("torch NCHW", "torch channels_last", "OpenCV HWC chunks", "OpenCV CHW per plane")


def table_path(case: Case, x: np.ndarray, channels_first: bool) -> Prepared:
    """fastinterp's tap-table kernels into a preallocated output: these rows before the fixed kernels."""
    from fastinterp import _cpu
    from fastinterp._coords import interleaved_taps
    from fastinterp._plan import make_plan

    channels, (in_h, in_w), (out_h, out_w) = x.shape[0], x.shape[1:], case.out_hw
    src = x if channels_first else channels_last(x).reshape(1, in_h, in_w * channels)
    out = np.empty(case.out_shape if channels_first else (1, out_h, out_w * channels), x.dtype)
    plan = make_plan("planes", (src.shape[0], in_h, in_w), x.dtype, None, None, case.out_hw, "center", False)
    ys, xs = plan.taps()
    if not channels_first:
        xs = interleaved_taps(in_w, out_w, "center", plan.compute_dtype, channels)
    rows_per_task, serial = _cpu.schedule(src.shape[0], out_h, out.size)

    def run() -> np.ndarray:
        _cpu.run_tasks(src, out, ys, xs, rows_per_task, serial)
        return out

    if channels_first:
        return Prepared(run, lambda result: result)
    return Prepared(run, lambda result: channels_first_view(result.reshape(channels_last_shape(case.out_shape))))


def prepared_methods(case: Case) -> dict[str, Prepared]:
    """Every timed method made ready for ``case`` and checked against fastinterp's output."""
    x = input_cf(case)
    methods = {name: METHODS[name].prepare(case, x, case.planes) for name in TIMED}
    methods["table path CHW out="] = table_path(case, x, channels_first=True)
    methods["table path HWC out="] = table_path(case, x, channels_first=False)
    expected = expected_cf(case)
    for name, prepared in methods.items():
        fastinterp_side = name.startswith(("fastinterp", "table path"))
        tolerance = 0 if fastinterp_side else (1 if case.dtype == "uint8" else 1e-5)
        difference = max_abs_diff(prepared.as_cf(prepared.run()), expected)
        if difference > tolerance:
            raise AssertionError(f"{case.id}: {name} differs from fastinterp by {difference} (> {tolerance})")
    return methods


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_photo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, help="threads for numba, torch and OpenCV (default: all cores)")
    parser.add_argument("--rounds", type=int, default=15, help="rotating rounds per case")
    args = parser.parse_args()
    pinned = prepare_timing(args.threads)
    load_before = os.getloadavg()[0]
    print(f"threads pinned: {pinned}; {args.rounds} rotating rounds per case, medians")
    verdicts = []
    for case in (c for c in report_cases(quick=True) if c.title.startswith("photo")):
        methods = prepared_methods(case)
        medians = rotating_medians({name: prepared.run for name, prepared in methods.items()}, args.rounds)
        best = min((name for name in medians if name.startswith("fastinterp")), key=medians.__getitem__)
        print(f"\n{case.id}\n| method | median ms | x best fastinterp |\n|---|---:|---:|")
        for name, seconds in sorted(medians.items(), key=lambda item: item[1]):
            print(f"| {name} | {format_ms(seconds)} | {seconds / medians[best]:.2f}x |")
        fastest_peer = min(PEERS, key=medians.__getitem__)
        ratio = medians[fastest_peer] / medians[best]
        verdicts.append(f"{case.id}: {best} {format_ms(medians[best])} ms, fastest peer {fastest_peer} "
                        f"{format_ms(medians[fastest_peer])} ms: peer/ours {ratio:.2f}x "
                        f"({'fastinterp first' if ratio > 1 else 'PEER FASTER'})")
    print(f"\nload average (1 min) before {load_before:.2f}, after {os.getloadavg()[0]:.2f}")
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()

"""Where the time of the headline resize goes beyond the memory floor, in both layouts.

``python -m benchmarks.bench_out [--rounds N] [--threads N]`` from the repository root times
(2048, 24, 24) x8 float32 (the headline case of ``python -m benchmarks``) in two parts:

* the targets of issue 13, timed in rotation on all threads (each call after a pause, see
  :func:`benchmarks._harness.settled_time`): ``out=`` over a parallel fill of the output, a
  fresh output over ``np.empty`` + fill, channels-first (CHW) and channels-last (HWC); and
  ``out=`` over a fill in streaming stores, which fastinterp uses for a large ``out=``;
* the breakdown, on one thread, per plane: the fill of an output-sized array in ordinary
  stores (each line read for ownership, then written back) and in streaming stores (what
  writing this output costs fastinterp, see :data:`fastinterp._cpu.STREAM_BYTES`), the
  resize into an output that stays in the last-level cache (the arithmetic alone: the time of
  48 planes less that of 16, over 32, so that the per-call cost drops out), the resize
  ``out=`` (both), and for CHW its horizontal pass alone (an output of 24 x 192: the same
  horizontal work, an eighth of the vertical). ``overlap`` is the share of the shorter of
  arithmetic and streaming that runs under the other: 100% would put ``out=`` at the
  streaming fill's time.

Nothing is asserted: on a shared machine read the ratios, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks._floor import empty_and_fill, fill, streaming_fill
from benchmarks._harness import prepare_timing, rotating_medians, settled_time

PLANES, IN_SIZE, OUT_SIZE = 2048, 24, 192
#: Plane counts whose outputs (2.4 and 7.1 MB) stay in the last-level cache: the difference of
#: their times is the resize's arithmetic alone, without the cost of a call.
CACHED_PLANES = (16, 48)


def cpu_time(call: Callable[[], Any]) -> float:
    """CPU seconds of the process for one call (on one thread, the call's whole cost; it does
    not count the time another process holds the core, unlike the wall clock)."""
    start = time.process_time()
    call()
    return time.process_time() - start


def resize_calls(planes: np.ndarray, out_size: tuple[int, int], fresh: bool) -> dict[str, Callable[[], Any]]:
    """fastinterp into a fresh output or ``out=``, channels-first and channels-last."""
    import fastinterp

    channels_last = np.ascontiguousarray(planes.transpose(1, 2, 0))
    if fresh:
        return {
            "CHW": lambda: fastinterp.resize(planes, size=out_size, channels_first=True),
            "HWC": lambda: fastinterp.resize(channels_last, size=out_size),
        }
    out_cf = np.empty((planes.shape[0], *out_size), planes.dtype)
    out_cl = np.empty((*out_size, planes.shape[0]), planes.dtype)
    return {
        "CHW out=": lambda: fastinterp.resize(planes, size=out_size, channels_first=True, out=out_cf),
        "HWC out=": lambda: fastinterp.resize(channels_last, size=out_size, out=out_cl),
    }


def targets(rounds: int) -> list[str]:
    planes = np.random.default_rng(0).random((PLANES, IN_SIZE, IN_SIZE), dtype=np.float32)
    out = np.empty((PLANES, OUT_SIZE, OUT_SIZE), np.float32)
    calls = {
        "fill out=": lambda: fill(out),
        "streaming fill out=": lambda: streaming_fill(out),
        "np.empty + fill": lambda: empty_and_fill(out.shape, out.dtype),
        **resize_calls(planes, (OUT_SIZE, OUT_SIZE), fresh=False),
        **resize_calls(planes, (OUT_SIZE, OUT_SIZE), fresh=True),
    }
    for call in calls.values():  # untimed first calls
        call()
    medians = rotating_medians(calls, rounds, settled_time)
    lines = [f"- {name}: {medians[name] * 1e3:.1f} ms" for name in calls]
    for name, floor, bound in (("CHW out=", "fill out=", 1.1), ("HWC out=", "fill out=", 1.1),
                               ("CHW", "np.empty + fill", 1.15), ("HWC", "np.empty + fill", 1.15)):  # fmt: skip
        ratio = medians[name] / medians[floor]
        lines.append(f"- {name} / {floor} = {ratio:.2f}x (target <= {bound}): {'met' if ratio <= bound else 'MISSED'}")
    for name in ("CHW out=", "HWC out="):  # fastinterp streams a large out= (fastinterp._cpu.STREAM_BYTES)
        lines.append(f"- {name} / streaming fill out= = {medians[name] / medians['streaming fill out=']:.2f}x (the floor for streaming stores)")
    # The resizes' difference also holds ordinary against streaming stores: a fresh output is
    # written in ordinary stores (fastinterp._cpu.streams), the 302 MB out= in streaming ones.
    lines.append(f"- a fresh output costs (page faults, zeroing; for the resizes, ordinary stores against the out= call's "
                 f"streaming ones too): fill {1e3 * (medians['np.empty + fill'] - medians['fill out=']):.1f} ms, "
                 f"CHW {1e3 * (medians['CHW'] - medians['CHW out=']):.1f} ms, HWC {1e3 * (medians['HWC'] - medians['HWC out=']):.1f} ms")
    return lines


def breakdown(rounds: int) -> list[str]:
    import fastinterp

    threads = fastinterp.get_num_threads()
    fastinterp.set_num_threads(1)
    try:
        planes = np.random.default_rng(0).random((PLANES, IN_SIZE, IN_SIZE), dtype=np.float32)
        out = np.empty((PLANES, OUT_SIZE, OUT_SIZE), np.float32)
        square = (OUT_SIZE, OUT_SIZE)
        calls = {
            "fill out=": lambda: fill(out),
            "streaming fill out=": lambda: streaming_fill(out),
            **resize_calls(planes, square, fresh=False),
        }
        for count in CACHED_PLANES:
            in_cache = resize_calls(planes[:count].copy(), square, fresh=False)
            calls.update({f"{name} {count} planes": call for name, call in in_cache.items()})
        calls["CHW out= horizontal pass"] = resize_calls(planes, (IN_SIZE, OUT_SIZE), fresh=False)["CHW out="]
        for call in calls.values():
            call()
        per_call = rotating_medians(calls, rounds, cpu_time)
    finally:
        fastinterp.set_num_threads(threads)
    whole = ("fill out=", "streaming fill out=", "CHW out=", "HWC out=", "CHW out= horizontal pass")
    per_plane = {name: per_call[name] / PLANES * 1e6 for name in whole}
    few, many = CACHED_PLANES
    for layout in ("CHW out=", "HWC out="):
        per_plane[f"{layout} in cache"] = (per_call[f"{layout} {many} planes"] - per_call[f"{layout} {few} planes"]) / (many - few) * 1e6
    lines = [f"- {name}: {micros:.2f} us per plane" for name, micros in per_plane.items()]
    # The whole output (302 MB) is written in streaming stores, the in-cache ones in ordinary stores.
    write = per_plane["streaming fill out="]
    for layout in ("CHW out=", "HWC out="):
        both, arithmetic = per_plane[layout], per_plane[f"{layout} in cache"]
        hidden = (write + arithmetic - both) / min(write, arithmetic)
        lines.append(f"- {layout}: {both / per_plane['fill out=']:.2f}x the fill, {both / write:.2f}x the streaming fill "
                     f"on one thread; arithmetic {arithmetic:.2f} us + streaming {write:.2f} us, overlap {100 * hidden:.0f}%")
    horizontal = per_plane["CHW out= horizontal pass"] / per_plane["CHW out= in cache"]
    lines.append(f"- so: where the arithmetic alone takes longer than writing the output, out= cannot come within "
                 f"1.1x of the streaming fill by hiding it; CHW's horizontal pass (whole vectors per pair of input pixels at "
                 f"this factor, see fastinterp._coords.tap_period; on an eighth of the rows) is {100 * horizontal:.0f}% "
                 f"of its arithmetic")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_out", description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, help="threads for numba (default: all cores)")
    parser.add_argument("--rounds", type=int, default=9, help="rotating rounds")
    args = parser.parse_args()
    pinned = prepare_timing(args.threads)
    load_before = os.getloadavg()[0]
    print(f"(2048, 24, 24) x8 float32; threads pinned: {pinned}; {args.rounds} rotating rounds, medians")
    print("\nTargets (all threads, wall clock, each call after a pause):")
    print("\n".join(targets(args.rounds)))
    print("\nBreakdown (one thread, CPU time of the process):")
    print("\n".join(breakdown(args.rounds)))
    print(f"\nload average (1 min) before {load_before:.2f}, after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

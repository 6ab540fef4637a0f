"""Antialiased downscaling against torch ``antialias=True`` and Pillow's BILINEAR (CPU).

``python -m benchmarks.bench_antialias [--threads N] [--rounds N]`` from the repository root
prints one row per case: the median time of each side, timed in alternation (so that load on
a shared machine weighs on both alike), each call after a pause (so that neither is charged for
torch's OpenMP workers spinning after torch's call: :data:`benchmarks._harness.SETTLE_S`), their
ratio, the target and the machine load; then, for the torch cases, fastinterp's time right after
a torch call and the CPU time torch's threads spin after one.

fastinterp's side is ``fastinterp.resize(planes, size=..., channels_first=True, antialias=True)``
into a fresh output each call (as torch and Pillow allocate theirs). ``python -m benchmarks``
times the same cases in its report (the antialias cases of ``benchmarks/_methods.py``); this
script is the quick check of the targets. Targets (issue 13): at least 2x
torch for a (3, 1080, 1920) float32 photo halved and for (2048, 96, 96) -> (2048, 24, 24);
faster than Pillow per plane, in uint8 ('L') and float32 ('F').
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks._harness import SETTLE_S, call_once, paired_times


@dataclass(frozen=True)
class Row:
    case: str
    peer: str
    fastinterp_s: float
    peer_s: float
    target: float  # the speed-up over the peer asked for

    @property
    def speedup(self) -> float:
        return self.peer_s / self.fastinterp_s


def worker_spin_s(call: Callable[[], Any], idle_s: float = 0.1, repeats: int = 3) -> float | None:
    """CPU seconds that the process's other threads burn in the ``idle_s`` after ``call``
    returns, while the calling thread sleeps (median of ``repeats``); None where Linux's
    per-thread ``schedstat`` is not available. After a torch op these are torch's OpenMP
    workers spinning before they sleep."""
    tasks = "/proc/self/task"
    if not os.path.exists(f"{tasks}/{threading.get_native_id()}/schedstat"):
        return None

    def others_cpu_ns() -> int:
        total = 0
        for task in os.listdir(tasks):
            if int(task) != threading.get_native_id():
                with contextlib.suppress(OSError), open(f"{tasks}/{task}/schedstat") as stat:  # OSError: it ended
                    total += int(stat.read().split()[0])
        return total

    spins = []
    for _ in range(repeats):
        call()
        before = others_cpu_ns()
        time.sleep(idle_s)
        spins.append((others_cpu_ns() - before) * 1e-9)
    return statistics.median(spins)


def right_after(first: Callable[[], Any], second: Callable[[], Any], rounds: int) -> float:
    """Median time of ``second`` called right after ``first``, with no pause between them."""
    times = []
    for _ in range(rounds):
        time.sleep(SETTLE_S)
        first()
        times.append(call_once(second)[1])
    return statistics.median(times)


def fastinterp_call(planes: np.ndarray, out_h: int, out_w: int) -> Callable[[], np.ndarray]:
    """An antialiased resize of (P, H, W) ``planes`` into a fresh output."""
    import fastinterp

    return lambda: fastinterp.resize(planes, size=(out_h, out_w), channels_first=True, antialias=True)


def photo(height: int, width: int) -> np.ndarray:
    """scikit-image's astronaut, resized to (height, width, 3) uint8 by Pillow (real content)."""
    from PIL import Image
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((width, height), Image.BICUBIC))


def measure(rounds: int) -> tuple[list[Row], list[str]]:
    import torch
    import torch.nn.functional as F
    from PIL import Image

    rows, notes = [], []

    def against_torch(case: str, planes: np.ndarray, out_h: int, out_w: int) -> None:
        tensor = torch.from_numpy(planes)[None]
        ours = fastinterp_call(planes, out_h, out_w)
        theirs = lambda: F.interpolate(tensor, size=(out_h, out_w), mode="bilinear", antialias=True, align_corners=False)  # noqa: E731
        np.testing.assert_allclose(ours(), theirs()[0].numpy(), atol=2e-5 * float(np.abs(planes).max()))
        rows.append(Row(case, "torch antialias=True", *paired_times(ours, theirs, rounds), target=2.0))
        spin = worker_spin_s(theirs)
        notes.append(
            f"{case}: fastinterp right after torch (no pause): {right_after(theirs, ours, rounds) * 1e3:.2f} ms; "
            + ("" if spin is None else f"torch's other threads burn {spin * 1e3:.1f} ms of CPU in the 100 ms after its call")
        )

    image = photo(1080, 1920)
    against_torch("(3, 1080, 1920) float32 photo -> (540, 960)", np.ascontiguousarray(image.transpose(2, 0, 1), np.float32) / 255, 540, 960)
    maps = np.random.default_rng(0).standard_normal((2048, 96, 96), dtype=np.float32)
    against_torch("(2048, 96, 96) float32 -> (24, 24)", maps, 24, 24)

    def against_pillow(case: str, plane: np.ndarray, mode: str, out_h: int, out_w: int) -> None:
        pillow_image = Image.fromarray(plane, mode=mode)
        ours = fastinterp_call(plane[np.newaxis], out_h, out_w)
        theirs = lambda: pillow_image.resize((out_w, out_h), Image.BILINEAR)  # noqa: E731
        tolerance = 1 if plane.dtype == np.uint8 else 1e-4
        assert np.abs(ours()[0].astype(np.float64) - np.asarray(theirs(), np.float64)).max() <= tolerance
        rows.append(Row(case, f"Pillow '{mode}'", *paired_times(ours, theirs, rounds), target=1.0))

    gray = np.ascontiguousarray(image[..., 1])
    against_pillow("(1080, 1920) uint8 plane -> (540, 960)", gray, "L", 540, 960)
    against_pillow("(1080, 1920) float32 plane -> (540, 960)", gray.astype(np.float32), "F", 540, 960)
    against_pillow("(1080, 1920) uint8 plane -> (270, 480)", gray, "L", 270, 480)
    return rows, notes


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_antialias", description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="threads for numba and torch (default 2)")
    parser.add_argument("--rounds", type=int, default=11, help="alternating rounds per case")
    args = parser.parse_args()
    import torch

    import fastinterp

    fastinterp.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    rows, notes = measure(args.rounds)
    print(f"threads: numba {fastinterp.get_num_threads()}, torch {torch.get_num_threads()} (Pillow: 1); "
          f"load average before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}; {args.rounds} alternating rounds, "
          f"medians, each call after {SETTLE_S * 1e3:g} ms of sleep")
    print("| case | peer | fastinterp ms | peer ms | speed-up | target |")
    print("|---|---|---:|---:|---:|---:|")
    for row in rows:
        verdict = "met" if row.speedup >= row.target else "NOT met"
        print(f"| {row.case} | {row.peer} | {row.fastinterp_s * 1e3:.2f} | {row.peer_s * 1e3:.2f} | "
              f"{row.speedup:.2f}x | >= {row.target:g}x {verdict} |")
    print("\nWhat a loop alternating torch ops and fastinterp pays (torch's OpenMP workers spin before they sleep;")
    print("OMP_WAIT_POLICY=PASSIVE in the environment stops it):")
    print("\n".join(f"- {note}" for note in notes))


if __name__ == "__main__":
    main()

"""fastinterp.torch beside torch on the CPU: forward and backward of a bilinear upsample.

Run ``python3 -m pytest benchmarks/test_bench_torch.py --benchmark-only``. Both libraries run
in the same process with the same thread count; after the module, the torch/fastinterp
ratios and the issue's backward target (at least 3x faster) are printed. Each result is
checked against torch before it is timed; nothing here asserts a time.

Self-contained on purpose: it sets ``extra_info`` ``label``/``role`` so a shared ratio table
can pick it up, but needs nothing from the rest of ``benchmarks/``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import fastinterp  # noqa: E402
from fastinterp.torch import resize  # noqa: E402

SHAPE = (1, 2048, 24, 24)
SCALE = 8
CASE = f"{SHAPE} x{SCALE} float32 cpu"
BACKWARD_TARGET = 3.0  # torch's backward time / ours, at least

LIBRARIES: dict[str, Callable[[Any], Any]] = {
    "fastinterp.torch": lambda x: resize(x, scale_factor=SCALE),
    "torch": lambda x: torch.nn.functional.interpolate(x, scale_factor=SCALE, mode="bilinear", align_corners=False),
}


def _ratio_lines(found: dict[tuple[str, str], float]) -> list[str]:
    lines = [f"{CASE}, {torch.get_num_threads()} threads (torch) / {fastinterp.get_num_threads()} (numba):"]
    for pass_name in ("forward", "backward"):
        ours, theirs = found.get((pass_name, "fastinterp.torch")), found.get((pass_name, "torch"))
        if ours is None or theirs is None:
            continue
        line = (
            f"  {pass_name:<8} fastinterp {ours * 1e3:8.1f} ms   torch {theirs * 1e3:8.1f} ms"
            f"   torch/fastinterp {theirs / ours:5.2f}x"
        )
        if pass_name == "backward":
            line += f"   target >= {BACKWARD_TARGET:g}x: {'met' if theirs / ours >= BACKWARD_TARGET else 'MISSED'}"
        lines.append(line)
    return lines if len(lines) > 1 else []


@pytest.fixture(scope="module")
def medians(request: Any) -> Iterator[dict[tuple[str, str], float]]:
    """Median seconds by (pass, library); the ratios are printed once the module is done."""
    torch.set_num_threads(fastinterp.get_num_threads())  # the same pool size for both libraries
    found: dict[tuple[str, str], float] = {}
    yield found
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    lines = _ratio_lines(found)
    if reporter is None or not lines:
        return
    # Output of a fixture's teardown is captured (and dropped when tests pass) unless suspended.
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.ensure_newline()
        for line in lines:
            reporter.write_line(line)


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    """The input, the output gradient, and torch's output and input gradient to check against."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(SHAPE, generator=generator).requires_grad_()
    expected = LIBRARIES["torch"](x)
    grad_out = torch.randn(expected.shape, generator=generator)
    (expected_grad,) = torch.autograd.grad(expected, x, grad_out)
    return {"x": x, "grad_out": grad_out, "expected": expected.detach(), "expected_grad": expected_grad}


def _time(benchmark: Any, medians: dict, pass_name: str, library: str, run: Callable[[], Any]) -> None:
    benchmark.group = f"{CASE} {pass_name}"
    benchmark.extra_info.update(label=library, role="baseline" if library == "torch" else "candidate")
    benchmark.pedantic(run, rounds=8, iterations=1, warmup_rounds=1)
    if benchmark.stats is not None:
        medians[(pass_name, library)] = benchmark.stats.stats.median


@pytest.mark.parametrize("library", LIBRARIES)
def test_forward(benchmark: Any, medians: dict, data: dict, library: str) -> None:
    x = data["x"].detach()
    run = lambda: LIBRARIES[library](x)  # noqa: E731
    torch.testing.assert_close(run(), data["expected"], rtol=1e-5, atol=1e-5)
    _time(benchmark, medians, "forward", library, run)


@pytest.mark.parametrize("library", LIBRARIES)
def test_backward(benchmark: Any, medians: dict, data: dict, library: str) -> None:
    """The backward pass alone: the graph is built once and kept (``retain_graph``)."""
    x, grad_out = data["x"], data["grad_out"]
    y = LIBRARIES[library](x)
    run = lambda: torch.autograd.grad(y, x, grad_out, retain_graph=True)[0]  # noqa: E731
    torch.testing.assert_close(run(), data["expected_grad"], rtol=1e-4, atol=1e-4)
    _time(benchmark, medians, "backward", library, run)

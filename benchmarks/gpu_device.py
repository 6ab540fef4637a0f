"""One command for a GPU machine: check the CUDA backend against torch and the CPU, then time it.

    PYTHONPATH=. python3 benchmarks/gpu_device.py --out "$OUT"

(a) Correctness on the GPU, fresh random inputs every time, outputs poisoned first:
    forward (3 aligns x NCHW/channels_last x dtypes) equal to the CPU path bit for bit
    (integers: computed in float32, within 1 of the CPU), close to torch ``interpolate``;
    legacy bit-exact against the original script's reference; the adjoint against torch
    autograd's gradient and bit-identical across runs; numba/CuPy/host-copy inputs;
    bfloat16; a (1, 3, 4000, 6000) 8x uint8 output of 4.6e9 elements (64-bit offsets);
    ``antialias=True`` (both layouts, both pass orders, every dtype) equal to the CPU bit for
    bit, and its backward equal to the CPU's adjoint and bit-identical across runs.
(b) Timing with CUDA events, each call queued behind a GPU sleep so Python launch time is
    not counted, median of many runs after warm-up: fastinterp against torch (NCHW and
    channels_last), the adjoint against torch's backward, antialiased downscaling against
    torch's ``antialias=True`` (issue 13: within 1.5x of the bytes floor), a device-to-device
    copy for the bytes floor, and the Python-side cost of one call on a small input.

Writes ``gpu_device.json`` under ``--out`` and prints a table last. Exits 1 if a check failed.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import traceback
from typing import Any, Callable

import numpy as np

# numba-cuda 0.30 still calls np.row_stack, which numpy 2.5 removed: alias it before
# numba.cuda compiles anything.
if not hasattr(np, "row_stack"):
    np.row_stack = np.vstack

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from numba import cuda  # noqa: E402

import fastinterp  # noqa: E402
from fastinterp import _cuda, _cuda_launch, reference  # noqa: E402
from fastinterp._coords import axis_taps  # noqa: E402

ALIGNS = ("center", "left", "corners")
TIMED_CASES = [(1, 2048, 12, 12), (1, 2048, 24, 24), (1, 256, 96, 96), (32, 2048, 7, 7)]
FACTOR = 8
checks: list[dict[str, Any]] = []
timings: dict[str, Any] = {}


def check(name: str, passed: bool, detail: str = "") -> None:
    checks.append({"check": name, "passed": bool(passed), "detail": detail})
    print(f"  {'ok  ' if passed else 'FAIL'} {name} {detail}", flush=True)


def guarded(section: str, body: Callable[[], None]) -> None:
    """Run one section; a crash is recorded as a failed check and the script goes on."""
    print(f"== {section}", flush=True)
    started = time.perf_counter()
    try:
        body()
    except Exception:  # noqa: BLE001 - reported, then the next section runs
        check(f"{section}: crashed", False, traceback.format_exc(limit=6))
    print(f"   ({time.perf_counter() - started:.1f} s)", flush=True)


def random_tensor(shape: tuple[int, ...], dtype: torch.dtype, channels_last: bool = False) -> torch.Tensor:
    if dtype in (torch.uint8, torch.int16):
        info = torch.iinfo(dtype)
        t = torch.randint(info.min, info.max + 1, shape, dtype=torch.int32, device="cuda").to(dtype)
    else:
        t = (torch.rand(shape, device="cuda", dtype=torch.float64) * 350 - 50).to(dtype)
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t


def poisoned_like(shape: tuple[int, ...], dtype: torch.dtype, channels_last: bool) -> torch.Tensor:
    fill = 0xAB if dtype in (torch.uint8, torch.int16) else float("nan")
    out = torch.full(shape, fill, dtype=dtype, device="cuda")
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def cpu_resize(t: torch.Tensor, size: tuple[int, int], align: str, legacy: bool = False) -> np.ndarray:
    return fastinterp.resize(t.cpu(), size=size, align=align, legacy=legacy).numpy()


# --------------------------------------------------------------------------- (a) checks


def check_forward() -> None:
    shape, size = (2, 37, 13, 17), (29, 40)
    for dtype in (torch.float32, torch.float64, torch.float16, torch.uint8, torch.int16):
        for align in ALIGNS:
            for channels_last in (False, True):
                x = random_tensor(shape, dtype, channels_last)
                out = poisoned_like((*shape[:2], *size), dtype, channels_last)
                got = fastinterp.resize(x, size=size, align=align, out=out)
                torch.cuda.synchronize()
                # int16 is checked against float32 only: each CPU signature costs compile time.
                expected = None if dtype == torch.int16 else cpu_resize(x, size, align)
                layout = "channels_last" if channels_last else "NCHW"
                name = f"forward {str(dtype)[6:]} {align} {layout}"
                kept = got.is_contiguous(memory_format=torch.channels_last) if channels_last else got.is_contiguous()
                if dtype.is_floating_point:
                    same = np.array_equal(got.cpu().numpy(), expected, equal_nan=False)
                    check(name + " == CPU bit for bit", same and got is out and kept)
                else:
                    as_float = fastinterp.resize(x.float(), size=size, align=align)
                    info = torch.iinfo(dtype)
                    rounded = torch.round(as_float).clamp(info.min, info.max).to(dtype)  # half to even
                    off_by = 0 if expected is None else np.abs(
                        got.cpu().numpy().astype(np.int64) - expected.astype(np.int64)).max()
                    check(name + " == rint(float32), within 1 of CPU", bool(torch.equal(got, rounded))
                          and off_by <= 1 and kept, f"max |GPU-CPU| {off_by}")
    # Many channels (several channel blocks per pixel) and a fresh output.
    x = random_tensor((2, 600, 5, 6), torch.float32, channels_last=True)
    got = fastinterp.resize(x, size=(11, 13))
    torch.cuda.synchronize()
    check("forward 600 channels channels_last == CPU", np.array_equal(got.cpu().numpy(), cpu_resize(x, (11, 13), "center")))


def check_against_torch() -> None:
    for align, corners in (("center", False), ("corners", True)):
        for channels_last in (False, True):
            x = random_tensor((3, 64, 24, 31), torch.float32, channels_last)
            got = fastinterp.resize(x, size=(192, 248), align=align)
            want = F.interpolate(x.double(), size=(192, 248), mode="bilinear", align_corners=corners)
            error = ((got.double() - want).norm() / want.norm()).item()
            check(f"forward vs torch {align} {'channels_last' if channels_last else 'NCHW'}", error < 1e-6,
                  f"rel. error {error:.1e}")


def check_legacy() -> None:
    for dtype in (np.float32, np.float64, np.uint8, np.int16):
        for align in ("center", "left"):
            rng = np.random.default_rng()
            if np.dtype(dtype).kind == "f":  # past 255 and below 0: the wrap-around
                x = (rng.random((9, 11, 3)) * 600 - 100).astype(dtype)
            else:
                x = rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max + 1, (9, 11, 3)).astype(dtype)
            got = fastinterp.resize(x, 1.7, 2.3, align=align, legacy=True, device="cuda")
            want = reference.legacy_transform(x, 1.7, 2.3, align)
            check(f"legacy {np.dtype(dtype).name} {align} == original", np.array_equal(got, want))
    x = random_tensor((1, 3, 64, 80), torch.float32)
    got = fastinterp.resize(x, 3.3, 2.1, legacy=True)
    torch.cuda.synchronize()
    want = fastinterp.resize(x.cpu(), 3.3, 2.1, legacy=True).numpy()
    check("legacy float32 planes (1,3,64,80) == CPU", np.array_equal(got.cpu().numpy(), want))


def check_adjoint() -> None:
    for align, corners in (("center", False), ("corners", True)):
        for dtype in (torch.float32, torch.float64, torch.float16):
            x = torch.rand((2, 16, 12, 12), device="cuda", dtype=torch.float64, requires_grad=True)
            y = F.interpolate(x, size=(96, 96), mode="bilinear", align_corners=corners)
            grad = torch.randn_like(y)
            (want,) = torch.autograd.grad(y, x, grad)
            first = _cuda.resize_adjoint_cuda(grad.to(dtype), 12, 12, align)
            second = _cuda.resize_adjoint_cuda(grad.to(dtype), 12, 12, align)
            error = ((first.double() - want).norm() / want.norm()).item()
            limit = {torch.float64: 1e-13, torch.float32: 1e-6, torch.float16: 2e-3}[dtype]
            check(f"adjoint {align} {str(dtype)[6:]} vs torch autograd", error < limit and first.dtype == dtype
                  and first.shape == x.shape and first.is_contiguous(), f"rel. error {error:.1e}")
            check(f"adjoint {align} {str(dtype)[6:]} bit-identical twice", bool(torch.equal(first, second)))
    # Several strips per plane, reads far wider than the input (thousands of readers per
    # column), downscaling (input pixels nobody reads), many planes.
    for in_size, out_size, planes in (((37, 300), (296, 2400), 3), ((2, 3), (5, 12000), 2),
                                      ((50, 60), (20, 25), 5), ((24, 24), (192, 192), 2048)):
        x = torch.rand((1, planes, *in_size), device="cuda", dtype=torch.float64, requires_grad=True)
        y = F.interpolate(x, size=out_size, mode="bilinear", align_corners=False)
        grad = torch.randn_like(y)
        (want,) = torch.autograd.grad(y, x, grad)
        # float32 sums of up to ~5000 terms (the widest read) round more than 1e-6.
        for dtype, limit in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
            got = _cuda.resize_adjoint_cuda(grad.to(dtype), *in_size, "center")
            again = _cuda.resize_adjoint_cuda(grad.to(dtype), *in_size, "center")
            error = ((got.double() - want).norm() / want.norm()).item()
            check(f"adjoint {planes}x{in_size} from {out_size} {str(dtype)[6:]} vs torch, bit-identical twice",
                  error < limit and bool(torch.equal(got, again)), f"rel. error {error:.1e}")


def check_other_inputs() -> None:
    rng = np.random.default_rng()
    x = rng.random((2, 13, 17, 3)).astype(np.float32)
    want = fastinterp.resize(x, 2.5, 1.5)
    check("numpy device='cuda' == CPU", np.array_equal(fastinterp.resize(x, 2.5, 1.5, device="cuda"), want))
    got = fastinterp.resize(cuda.to_device(x), 2.5, 1.5)
    check("numba device array == CPU", np.array_equal(got.copy_to_host(), want))
    x16 = rng.integers(0, 65536, (13, 17, 2)).astype(np.uint16)
    got16 = fastinterp.resize(x16, size=(40, 50), device="cuda")
    as_float = fastinterp.resize(x16.astype(np.float32), size=(40, 50), device="cuda")
    check("uint16 == rint(float32)", np.array_equal(got16, reference.to_integer_dtype(as_float, np.dtype(np.uint16))))
    try:
        import cupy
    except ImportError:
        check("CuPy input", True, "(CuPy not installed: skipped)")
    else:
        got = fastinterp.resize(cupy.asarray(x), 2.5, 1.5)
        check("CuPy array == CPU", isinstance(got, cupy.ndarray) and np.array_equal(cupy.asnumpy(got), want))
    bf = random_tensor((2, 8, 10, 12), torch.bfloat16)
    got = fastinterp.resize(bf, size=(30, 36))
    want_bf = fastinterp.resize(bf.float(), size=(30, 36)).to(torch.bfloat16)
    check("bfloat16 via float32", got.dtype == torch.bfloat16 and bool(torch.equal(got, want_bf)))
    errors = []
    for call, error in (
        (lambda: fastinterp.resize(random_tensor((1, 2, 4, 4), torch.float32), 2.0, backend="cpu"), ValueError),
        (lambda: fastinterp.resize(random_tensor((1, 2, 4, 4), torch.float32), 2.0, out=torch.empty(1, 2, 8, 8)),
         ValueError),
        (lambda: fastinterp.resize(random_tensor((1, 2, 4, 4), torch.int16).int(), 2.0), TypeError),
    ):
        try:
            call()
            errors.append(f"no {error.__name__}")
        except error:
            pass
    check("clear errors (backend='cpu' on GPU data, out= on host, int32)", not errors, "; ".join(errors))


def check_huge() -> None:
    """(1, 3, 4000, 6000) uint8 at 8x: 4.6e9 output elements, past 2**32 bytes."""
    x = random_tensor((1, 3, 4000, 6000), torch.uint8)
    out = fastinterp.resize(x, float(FACTOR))
    torch.cuda.synchronize()
    elements = out.numel()
    flat = out.view(-1)
    rng = np.random.default_rng()
    picks = np.concatenate([rng.integers(0, elements, 20000), np.arange(elements - 5000, elements)])
    plane, rest = np.divmod(picks, out.shape[2] * out.shape[3])
    rows, cols = np.divmod(rest, out.shape[3])
    ys = axis_taps(4000, out.shape[2], "center", np.dtype(np.float32))
    xs = axis_taps(6000, out.shape[3], "center", np.dtype(np.float32))
    src = x.cpu().numpy()[0].astype(np.float32)

    def tap(axis, i):  # noqa: ANN001
        return axis.first[i], axis.second[i], axis.w_first[i], axis.w_second[i]

    y0, y1, wy0, wy1 = tap(ys, rows)
    x0, x1, wx0, wx1 = tap(xs, cols)
    upper = src[plane, y0, x0] * wx0 + src[plane, y0, x1] * wx1
    lower = src[plane, y1, x0] * wx0 + src[plane, y1, x1] * wx1
    expected = np.clip(np.rint(upper * wy0 + lower * wy1), 0, 255)
    got = flat[torch.from_numpy(picks).cuda()].cpu().numpy()
    check("(1,3,4000,6000) 8x uint8, 4.6e9 elements: sampled pixels", elements > 2**32
          and np.abs(got.astype(np.int64) - expected.astype(np.int64)).max() <= 1, f"{elements:,} elements")


def check_antialias() -> None:
    """``antialias=True`` on the GPU: the CPU's bits for every dtype and layout, with the rows
    blended first (both axes down) and the columns first (height up, width down); the torch
    operator's backward against the CPU's, and bit-identical across runs."""
    from fastinterp.torch import resize as differentiable_resize

    for (in_h, in_w), size in (((37, 53), (11, 17)), ((20, 40), (33, 13))):
        for dtype in (torch.float32, torch.float64, torch.float16, torch.uint8):
            for channels_last in (False, True):
                x = random_tensor((2, 5, in_h, in_w), dtype, channels_last)
                out = poisoned_like((2, 5, *size), dtype, channels_last)
                got = fastinterp.resize(x, size=size, antialias=True, out=out)
                torch.cuda.synchronize()
                expected = fastinterp.resize(x.cpu(), size=size, antialias=True).numpy()
                layout = "channels_last" if channels_last else "NCHW"
                check(f"antialias {(in_h, in_w)}->{size} {str(dtype)[6:]} {layout} == CPU bit for bit",
                      got is out and np.array_equal(got.cpu().numpy(), expected))
    x = random_tensor((2, 5, 37, 53), torch.float32).requires_grad_()
    grad = torch.randn((2, 5, 11, 17), device="cuda")
    runs = [torch.autograd.grad(differentiable_resize(x, size=(11, 17), antialias=True), x, grad)[0] for _ in range(3)]
    x_cpu = x.detach().cpu().requires_grad_()
    expected = torch.autograd.grad(differentiable_resize(x_cpu, size=(11, 17), antialias=True), x_cpu, grad.cpu())[0]
    check("antialias backward == CPU bit for bit, the same bits on every run",
          torch.equal(runs[0].cpu(), expected) and all(torch.equal(run, runs[0]) for run in runs[1:]))


# --------------------------------------------------------------------------- (b) timings


def gpu_time_us(call: Callable[[], Any], runs: int = 40, warmup: int = 5) -> float:
    """Median GPU time of ``call`` in microseconds, each run queued behind a GPU sleep.

    The sleep holds the stream while Python enqueues the run, so the events bracket the
    kernels alone, not the Python that launches them.
    """
    for _ in range(warmup):
        call()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(2_000_000)  # ~1 ms: longer than launching one call
        start.record()
        call()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000)
    return statistics.median(times)


def copy_rate() -> float:
    """Device-to-device copy rate, bytes read plus written per second."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda").random_()
    dst = torch.empty_like(src)
    seconds = gpu_time_us(lambda: dst.copy_(src), runs=20) / 1e6
    return 2 * src.numel() / seconds


def time_forward_cases(rate: float) -> None:
    timings["forward_float32"] = [printed(forward_row(shape, rate)) for shape in TIMED_CASES]


def printed(row: dict[str, Any]) -> dict[str, Any]:
    print(f"   {row}", flush=True)
    return row


def forward_row(shape: tuple[int, int, int, int], rate: float) -> dict[str, Any]:
    n, c, h, w = shape
    size = (h * FACTOR, w * FACTOR)
    x = random_tensor(shape, torch.float32)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    out = torch.empty(n, c, *size, device="cuda")
    out_cl = torch.empty_like(out, memory_format=torch.channels_last)
    return {
        "case": f"{shape} 8x float32",
        "launch": str(_cuda_launch.launch_shape(n * c, *size, 1, torch.cuda.get_device_properties(0).multi_processor_count)),
        "floor_us": (x.numel() + out.numel()) * 4 / rate * 1e6,
        "fastinterp_nchw_us": gpu_time_us(lambda: fastinterp.resize(x, size=size, out=out)),
        "fastinterp_channels_last_us": gpu_time_us(lambda: fastinterp.resize(x_cl, size=size, out=out_cl)),
        "torch_nchw_us": gpu_time_us(lambda: F.interpolate(x, size=size, mode="bilinear", align_corners=False)),
        "torch_channels_last_us": gpu_time_us(
            lambda: F.interpolate(x_cl, size=size, mode="bilinear", align_corners=False)),
    }


def time_launch_shapes() -> None:
    """The float32 targets under other block sizes and grid depths (data for tuning)."""
    rows = []
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    stream = _cuda_launch.numba_stream(_cuda._current_stream_handle(0))
    for shape in ((1, 2048, 24, 24), (32, 2048, 7, 7)):
        n, c, h, w = shape
        size = (h * FACTOR, w * FACTOR)
        x = random_tensor(shape, torch.float32)
        out = torch.empty(n, c, *size, device="cuda")
        src, dst = _cuda_launch.flat_numba(x.view(-1)), _cuda_launch.flat_numba(out.view(-1))
        plan = _cuda.plan_request("planes", (n * c, h, w), np.dtype(np.float32), None, None, size, "center", False)
        for threads in (128, 256, 512):
            for waves in (1, 2, 4, 8):
                candidate = _cuda_launch.launch_shape(n * c, *size, 1, sms, threads, waves)
                launch = _cuda_launch.forward_launch(plan, n * c, 1, candidate)
                rows.append({"case": str(shape), "threads": threads, "waves": waves, "grid": candidate.grid,
                             "block": candidate.block,
                             "us": gpu_time_us(lambda: launch(src, dst, stream), runs=20)})
        del x, out
    timings["launch_shapes"] = rows
    for row in rows:
        print(f"   {row}", flush=True)


def time_other_dtypes(rate: float) -> None:
    timings["forward_other"] = [printed(other_dtype_row(dtype, rate)) for dtype in (torch.uint8, torch.float16)]
    timings["forward_other"].append(printed(huge_uint8_row(rate)))


def other_dtype_row(dtype: torch.dtype, rate: float) -> dict[str, Any]:
    shape, size = (1, 2048, 24, 24), (192, 192)
    x = random_tensor(shape, dtype)
    out = torch.empty(1, 2048, *size, device="cuda", dtype=dtype)
    return {
        "case": f"{shape} 8x {str(dtype)[6:]}",
        "floor_us": (x.numel() + out.numel()) * x.element_size() / rate * 1e6,
        "fastinterp_nchw_us": gpu_time_us(lambda: fastinterp.resize(x, size=size, out=out)),
        "torch_nchw_us": None if dtype == torch.uint8 else gpu_time_us(
            lambda: F.interpolate(x, size=size, mode="bilinear", align_corners=False)),
    }


def huge_uint8_row(rate: float) -> dict[str, Any]:
    x = random_tensor((1, 3, 4000, 6000), torch.uint8)
    out = torch.empty(1, 3, 32000, 48000, device="cuda", dtype=torch.uint8)
    return {"case": "(1, 3, 4000, 6000) 8x uint8", "floor_us": (x.numel() + out.numel()) / rate * 1e6,
            "fastinterp_nchw_us": gpu_time_us(lambda: fastinterp.resize(x, size=(32000, 48000), out=out), runs=10),
            "torch_nchw_us": None}


def time_antialias(rate: float) -> None:
    """Antialiased downscaling (issue 13's cases: a photo halved, feature maps pooled 4x) against
    torch's ``antialias=True``; the floor is the bytes read and written."""
    timings["antialias"] = [printed(antialias_row(shape, size, rate))
                            for shape, size in (((1, 3, 1080, 1920), (540, 960)), ((1, 2048, 96, 96), (24, 24)))]
    for row in timings["antialias"]:
        for layout in ("nchw", "channels_last"):
            ours = row[f"fastinterp_{layout}_us"]
            check(f"{row['case']} {layout}: within 1.5x of the bytes floor (issue 13)", ours <= 1.5 * row["floor_us"],
                  f"{ours:.1f} us, floor {row['floor_us']:.1f} us")


def antialias_row(shape: tuple[int, int, int, int], size: tuple[int, int], rate: float) -> dict[str, Any]:
    x = random_tensor(shape, torch.float32)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    out = torch.empty(*shape[:2], *size, device="cuda")
    out_cl = torch.empty_like(out, memory_format=torch.channels_last)
    return {
        "case": f"{shape} -> {size} antialias float32",
        "floor_us": (x.numel() + out.numel()) * 4 / rate * 1e6,
        "fastinterp_nchw_us": gpu_time_us(lambda: fastinterp.resize(x, size=size, antialias=True, out=out)),
        "fastinterp_channels_last_us": gpu_time_us(
            lambda: fastinterp.resize(x_cl, size=size, antialias=True, out=out_cl)),
        "torch_nchw_us": gpu_time_us(
            lambda: F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)),
        "torch_channels_last_us": gpu_time_us(
            lambda: F.interpolate(x_cl, size=size, mode="bilinear", align_corners=False, antialias=True)),
    }


def time_adjoint(rate: float) -> None:
    timings["adjoint"] = [printed(adjoint_row(shape, rate)) for shape in TIMED_CASES]
    sweep_adjoint()


def adjoint_row(shape: tuple[int, int, int, int], rate: float) -> dict[str, Any]:
    n, c, h, w = shape
    x = torch.rand(shape, device="cuda", requires_grad=True)
    y = F.interpolate(x, scale_factor=FACTOR, mode="bilinear", align_corners=False)
    grad = torch.randn_like(y)
    return {
        "case": f"{shape} 8x float32 backward",
        "floor_us": (grad.numel() + x.numel()) * 4 / rate * 1e6,
        "fastinterp_nchw_us": gpu_time_us(lambda: _cuda.resize_adjoint_cuda(grad, h, w, "center")),
        "torch_nchw_us": gpu_time_us(lambda: torch.autograd.grad(y, x, grad, retain_graph=True)),
    }


def _kernel_resources(launch: Any) -> str:
    """ptxas's registers and local memory (spills) per thread of a launch's compiled kernel."""
    try:
        dispatcher = next(iter(launch._configured.values())).dispatcher  # the specialized kernel
        return f"{dispatcher.get_regs_per_thread()} regs, {dispatcher.get_local_mem_per_thread()} B local"
    except Exception as error:  # noqa: BLE001 - informative only
        return f"? ({type(error).__name__})"


def sweep_adjoint() -> None:
    """The adjoint's tunables on (1, 2048, 24, 24) 8x float32. The summation order does not
    depend on them, so every variant must give the default's bits."""
    x = torch.rand((1, 2048, 24, 24), device="cuda")
    grad = torch.randn((1, 2048, 192, 192), device="cuda")
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    expected = _cuda.resize_adjoint_cuda(grad, 24, 24, "center")
    stream = _cuda._current_stream_handle(0)
    default = (_cuda_launch.ADJOINT_THREADS, _cuda_launch.ADJOINT_LOADS_IN_FLIGHT, _cuda_launch.ADJOINT_COLUMNS_PER_THREAD,
               _cuda_launch.ADJOINT_STRIP_ROWS, _cuda_launch.ADJOINT_MAX_REGISTERS)
    variants = [(threads, loads, columns, strip, default[4]) for threads in (128, 256)
                for loads, columns in ((2, 4), (4, 4), (2, 6)) for strip in (24, 48)]
    variants += [(*default[:4], registers) for registers in (64, 72, None)]
    rows, differing = [], []
    for threads, loads, columns, strip, registers in variants:
        launch = _cuda_launch.adjoint_launch(2048, 24, 24, 192, 192, "center", np.dtype(np.float32), sms,
                                      threads_per_block=threads, loads_in_flight=loads, columns_per_thread=columns,
                                      strip_rows=strip, max_registers=registers)
        got = torch.full_like(x, float("nan"))
        us = gpu_time_us(lambda: launch.on_tensors(grad, got, stream), runs=20)  # noqa: B023
        rows.append({"threads": threads, "loads_in_flight": loads, "columns": columns, "strip_rows": strip,
                     "max_registers": registers, "us": us,
                     "resources": _kernel_resources(launch.vertical)})
        print(f"   {rows[-1]}", flush=True)
        if not torch.equal(got, expected):
            differing.append(f"{threads}/{loads}/{columns}/{strip}/{registers}")
    timings["adjoint_sweep"] = rows
    check("adjoint variants (threads / loads / columns / strip / registers) == default bit for bit",
          not differing, ", ".join(differing))
    # The default's two kernels on their own.
    launch = _cuda_launch.adjoint_launch(2048, 24, 24, 192, 192, "center", np.dtype(np.float32), sms)
    sums = torch.empty(launch.sums_size, device="cuda")
    got = torch.empty_like(x)
    timings["adjoint_kernels_us"] = {
        "vertical": gpu_time_us(lambda: launch.vertical.on_tensors(grad, sums, stream)),
        "horizontal": gpu_time_us(lambda: launch.horizontal.on_tensors(sums, got, stream)),
    }
    print(f"   {timings['adjoint_kernels_us']}", flush=True)


def time_overhead() -> None:
    """Python-side cost of one call on a small input: back-to-back calls, one sync at the end."""
    x = random_tensor((1, 16, 8, 8), torch.float32)
    out = torch.empty(1, 16, 16, 16, device="cuda")

    def per_call_us(call: Callable[[], Any], calls: int = 3000) -> float:
        for _ in range(200):
            call()
        torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(calls):
            call()
        torch.cuda.synchronize()
        return (time.perf_counter() - started) / calls * 1e6

    plan = _cuda.plan_request("planes", (16, 8, 8), np.dtype(np.float32), 2.0, None, None, "center", False)
    launch = _cuda_launch.cached_forward_launch(plan, 16, 1, 0)
    x_flat, out_flat = x.view(-1), out.view(-1)
    src, dst = _cuda_launch.tensor_numba(x_flat), _cuda_launch.tensor_numba(out_flat)
    handle = _cuda._current_stream_handle(0)
    stream = _cuda_launch.numba_stream(handle)

    def enter_device() -> None:
        with _cuda_launch.OnDevice(0):
            pass

    timings["overhead_us"] = {
        "fastinterp.resize(x, 2.0)": per_call_us(lambda: fastinterp.resize(x, 2.0)),
        "fastinterp.resize(x, 2.0, out=out)": per_call_us(lambda: fastinterp.resize(x, 2.0, out=out)),
        "_cuda.resize_torch (no front)": per_call_us(
            lambda: _cuda.resize_torch(x, 2.0, None, None, "center", False, out)),
        "launch, cached numba arrays": per_call_us(lambda: launch(src, dst, stream)),
        "launch on tensors (views kept by address)": per_call_us(lambda: launch.on_tensors(x, out, handle)),
        "launch, fresh numba arrays": per_call_us(
            lambda: launch(cuda.as_cuda_array(x_flat), cuda.as_cuda_array(out_flat), stream)),
        "tensor_numba(tensor), cached view": per_call_us(lambda: _cuda_launch.tensor_numba(x_flat)),
        "cuda.as_cuda_array(tensor)": per_call_us(lambda: cuda.as_cuda_array(x)),
        "plan_request": per_call_us(lambda: _cuda.plan_request(
            "planes", (16, 8, 8), np.dtype(np.float32), 2.0, None, None, "center", False)),
        "_cached_forward_launch lookup": per_call_us(lambda: _cuda_launch.cached_forward_launch(plan, 16, 1, 0)),
        "OnDevice enter/exit": per_call_us(enter_device),
        "_current_stream_handle": per_call_us(lambda: _cuda._current_stream_handle(0)),
        "torch.cuda.current_stream()": per_call_us(lambda: torch.cuda.current_stream(x.device)),
        "torch.empty": per_call_us(lambda: torch.empty(1, 16, 16, 16, device="cuda")),
        "torch F.interpolate": per_call_us(lambda: F.interpolate(x, scale_factor=2.0, mode="bilinear")),
    }
    print(f"   {timings['overhead_us']}", flush=True)


# --------------------------------------------------------------------------- report


def table() -> str:
    rate = timings.get("copy_rate_bytes_per_s")
    lines = [f"device: {timings.get('device')}; copy rate {rate / 1e12:.2f} TB/s (read + write)" if rate else "",
             "| case | floor us | fastinterp NCHW us | x floor | fastinterp CL us | torch NCHW us | torch CL us | "
             "torch/fastinterp NCHW |", "|---|---|---|---|---|---|---|---|"]

    def fmt(value: Any) -> str:
        return "-" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"

    rows = [row for key in ("forward_float32", "forward_other", "antialias", "adjoint") for row in timings.get(key, [])]
    for row in rows:
        ours, theirs = row["fastinterp_nchw_us"], row.get("torch_nchw_us")
        lines.append(" | ".join([
            f"| {row['case']}", fmt(row["floor_us"]), fmt(ours), f"{ours / row['floor_us']:.2f}",
            fmt(row.get("fastinterp_channels_last_us")), fmt(theirs), fmt(row.get("torch_channels_last_us")),
            f"{theirs / ours:.1f}x |" if theirs else "- |",
        ]))
    if "adjoint_sweep" in timings:
        sweep = sorted(timings["adjoint_sweep"], key=lambda r: r["us"])
        lines.append("adjoint sweep, fastest first (threads / loads / columns / strip rows / max registers: us): "
                     + ", ".join(f"{r['threads']}/{r['loads_in_flight']}/{r['columns']}/{r['strip_rows']}/"
                                 f"{r['max_registers']}:{r['us']:.0f}" for r in sweep))
    if "adjoint_kernels_us" in timings:
        lines.append(f"adjoint kernels (default, us): {timings['adjoint_kernels_us']}")
    for case in sorted({row["case"] for row in timings.get("launch_shapes", [])}):
        sweep = [row for row in timings["launch_shapes"] if row["case"] == case]
        best = min(sweep, key=lambda row: row["us"])
        lines.append(f"launch sweep {case}: best {best['us']:.1f} us at {best['threads']} threads, "
                     f"{best['waves']} waves; all: " + ", ".join(f"{r['threads']}/{r['waves']}:{r['us']:.0f}" for r in sweep))
    for name, value in timings.get("overhead_us", {}).items():
        lines.append(f"per call: {name}: {value:.1f} us")
    failed = [c["check"] for c in checks if not c["passed"]]
    lines.append(f"checks: {len(checks) - len(failed)}/{len(checks)} passed" + (f"; FAILED: {failed}" if failed else ""))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".", help="folder for gpu_device.json")
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args()
    import numba

    props = torch.cuda.get_device_properties(0)
    timings["device"] = f"{props.name}, {props.multi_processor_count} SMs"
    timings["versions"] = {"python": platform.python_version(), "torch": torch.__version__,
                           "numba": numba.__version__, "numpy": np.__version__}
    try:
        from importlib.metadata import version

        timings["versions"]["numba-cuda"] = version("numba-cuda")
    except Exception:  # noqa: BLE001 - informative only
        pass
    print(timings, flush=True)
    torch.manual_seed(int(time.time()))
    for name, body in (("forward vs CPU", check_forward), ("forward vs torch", check_against_torch),
                       ("legacy", check_legacy), ("adjoint", check_adjoint), ("other inputs", check_other_inputs),
                       ("huge output", check_huge), ("antialias", check_antialias)):
        guarded(name, body)
    torch.cuda.empty_cache()
    if not args.skip_timing:
        guarded("copy rate", lambda: timings.__setitem__("copy_rate_bytes_per_s", copy_rate()))
        rate = timings.get("copy_rate_bytes_per_s", 3.0e12)
        guarded("forward float32 timings", lambda: time_forward_cases(rate))
        guarded("launch shape sweep", time_launch_shapes)
        guarded("uint8/float16 timings", lambda: time_other_dtypes(rate))
        guarded("antialias timings", lambda: time_antialias(rate))
        guarded("adjoint timings", lambda: time_adjoint(rate))
        guarded("per-call overhead", time_overhead)
    with open(f"{args.out}/gpu_device.json", "w") as handle:
        json.dump({"checks": checks, "timings": timings}, handle, indent=1, default=str)
    print("\n" + table(), flush=True)
    return 0 if all(c["passed"] for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())

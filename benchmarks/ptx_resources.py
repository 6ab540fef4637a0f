"""Registers, spills and shared memory of the CUDA kernels, without a GPU.

    PYTHONPATH=. python3 benchmarks/ptx_resources.py [--cc 9.0] [--ptxas PATH]

numba compiles each kernel to PTX for the given compute capability (numba asks the current
device for it while compiling device functions: this script answers instead, so no GPU or
driver is needed), and ``ptxas -v`` reports what the machine code uses: the numbers that set
how many blocks fit on a multiprocessor. Needs numba's CUDA toolkit pieces (libNVVM) and
``ptxas`` (on PATH or under ``$CUDA_HOME/bin``). Device time is scarce; this costs none.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from numba import cuda, types

F32, F16, F64, U8, U64 = types.float32[::1], types.float16[::1], types.float64[::1], types.uint8[::1], types.uint64[::1]


def device_answering(cc: tuple[int, int]) -> Any:
    """A stand-in for ``numba.cuda.dispatcher.get_current_device``: numba's device-function
    compiles then see ``cc`` instead of querying a GPU."""

    class _Device:
        compute_capability = cc

    return lambda: _Device()


def kernels() -> list[tuple[str, Any, tuple[Any, ...], int | None]]:
    """(name, kernel, signature, register cap) of every kernel at its default tunables."""
    from fastinterp import _cuda_kernels, _cuda_launch

    cap = _cuda_launch.ADJOINT_MAX_REGISTERS
    tunables = (_cuda_launch.ADJOINT_LOADS_IN_FLIGHT, _cuda_launch.ADJOINT_COLUMNS_PER_THREAD, cap)
    vertical32, horizontal32 = _cuda_kernels.adjoint_kernels("float32", *tunables)
    vertical64, horizontal64 = _cuda_kernels.adjoint_kernels("float64", *tunables)
    return [
        ("forward float32", _cuda_kernels.forward_kernel("float32", "float", "float32"), (F32, F32, U64, F32), None),
        ("forward uint8", _cuda_kernels.forward_kernel("float32", "integer", "uint8"), (U8, U8, U64, F32), None),
        ("forward legacy", _cuda_kernels.forward_kernel("float32", "legacy", "uint8"), (F32, U8, U64, F32), None),
        ("adjoint vertical float32", vertical32, (F32, F32, U64, F32), cap),
        ("adjoint vertical float16", vertical32, (F16, F32, U64, F32), cap),
        ("adjoint horizontal float32", horizontal32, (F32, F32, U64, F32), None),
        ("adjoint vertical float64", vertical64, (F64, F64, U64, F64), cap),
        ("adjoint horizontal float64", horizontal64, (F64, F64, U64, F64), None),
    ]


def ptxas_report(ptx: str, cc: tuple[int, int], ptxas: str, max_registers: int | None) -> str:
    """``ptxas -v``'s registers, spills, stack and shared memory of one kernel, on one line."""
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch, "kernel.ptx")
        source.write_text(ptx)
        command = [ptxas, f"-arch=sm_{cc[0]}{cc[1]}", "-v", str(source), "-o", os.devnull]
        if max_registers is not None:
            command.insert(1, f"--maxrregcount={max_registers}")
        result = subprocess.run(command, capture_output=True, text=True, check=True)
    text = result.stderr
    registers = re.search(r"Used (\d+) registers", text)
    spills = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", text)
    shared = re.search(r"(\d+) bytes smem", text)
    return (f"{registers.group(1) if registers else '?'} registers"
            + (f" (cap {max_registers})" if max_registers else "")
            + (f", stack {spills.group(1)} B, spills {spills.group(2)}/{spills.group(3)} B stored/loaded"
               if spills else "")
            + f", {shared.group(1) if shared else 0} B shared")


def find_ptxas(given: str | None) -> str:
    cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    candidates = [given, shutil.which("ptxas"), os.path.join(cuda_home, "bin", "ptxas")]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate):
            return candidate
    raise SystemExit("ptxas not found: put it on PATH, set CUDA_HOME, or pass --ptxas")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cc", default="9.0", help="compute capability, e.g. 9.0 (H100, H200)")
    parser.add_argument("--ptxas", help="path of ptxas")
    args = parser.parse_args(argv)
    cc = tuple(int(part) for part in args.cc.split("."))
    ptxas = find_ptxas(args.ptxas)
    import numba.cuda.dispatcher as dispatcher

    dispatcher.get_current_device = device_answering(cc)
    for name, kernel, signature, cap in kernels():
        ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=cc)
        print(f"{name}: {ptxas_report(ptx, cc, ptxas, cap)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

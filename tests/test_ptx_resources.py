"""The CUDA kernels' machine-code resources, from PTX compiled here (no GPU needed).

Skipped where numba cannot compile PTX (no libNVVM) or ``ptxas`` is missing.
"""

from __future__ import annotations

import os

import pytest

from benchmarks import ptx_resources

pytestmark = pytest.mark.skipif(bool(os.environ.get("NUMBA_ENABLE_CUDASIM")), reason="needs numba's real CUDA compiler")


@pytest.fixture()
def ptxas(monkeypatch):
    try:
        found = ptx_resources.find_ptxas(None)
    except SystemExit:
        pytest.skip("ptxas not found")
    import numba.cuda.dispatcher as dispatcher

    monkeypatch.setattr(dispatcher, "get_current_device", ptx_resources.device_answering((9, 0)))
    try:
        from numba import cuda

        cuda.compile_ptx(lambda a: None, "void(float32[::1])", cc=(9, 0))
    except Exception as error:  # noqa: BLE001 - no libNVVM here
        pytest.skip(f"numba cannot compile PTX here: {error}")
    return found


def test_float32_kernels_do_not_spill_at_their_register_caps(ptxas):
    """The adjoint's vertical kernel is capped at ADJOINT_MAX_REGISTERS to fit 3 blocks of 256
    per multiprocessor; the cap was chosen where float32 does not spill."""
    from numba import cuda

    reports = {}
    for name, kernel, signature, cap in ptx_resources.kernels():
        if "float64" not in name:
            ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))
            reports[name] = ptx_resources.ptxas_report(ptx, (9, 0), ptxas, cap)
    assert {"forward float32", "adjoint vertical float32", "adjoint horizontal float32"} <= set(reports)
    for name, report in reports.items():
        assert "spills 0/0 B" in report, (name, report)

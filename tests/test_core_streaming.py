"""The planes body's streaming stores (``_cpu.run_tasks(..., stream=True)``, taken for a large
output the caller gives): the same bits as ordinary stores at every alignment of the output,
nothing written outside it, and the cases that must not stream."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastinterp
from fastinterp import _cpu
from fastinterp._plan import make_plan
from sampling import sample
from test_fixed_factor import assert_same_bits, with_specials
from test_resize import ALIGNS

#: What the margins of the buffer around an output view hold: no kernel writes this pattern.
SENTINEL = 0x5A


def output_at(buffer: np.ndarray, offset_bytes: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A C-contiguous view of ``shape`` that starts ``offset_bytes`` past a 64-byte boundary in ``buffer``."""
    start = -buffer.ctypes.data % 64 + offset_bytes
    size = int(np.prod(shape)) * dtype.itemsize
    return buffer[start : start + size].view(dtype).reshape(shape)


def run_kernel(src: np.ndarray, out: np.ndarray, align: str, serial: bool, stream: bool) -> None:
    """The planes body on (P, H, W), the pixels body on (N, H, W, C), as the front runs them."""
    layout = "planes" if src.ndim == 3 else "pixels"
    plan = make_plan(layout, src.shape, src.dtype, None, None, out.shape[1:3], align, False)
    ys, xs = plan.taps()
    rows_per_task = out.shape[1] if serial else max(1, out.shape[1] // 3)
    x_period = plan.column_period() if layout == "planes" else (0, 0, 0)
    _cpu.run_tasks(src, out, ys, xs, rows_per_task, serial, x_period, stream)


@given(
    planes=st.integers(1, 3),
    channels=st.sampled_from([None, None, 5, 16, 19]),  # None: planes; else channels-last pixels
    in_hw=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    out_hw=st.tuples(st.integers(1, 40), st.integers(1, 70)),
    factor=st.sampled_from([None, 2, 8]),  # None: the sizes drawn; else an integer upscale (periodic columns)
    align=st.sampled_from(ALIGNS),
    dtype=st.sampled_from([np.dtype(np.float32), np.dtype(np.float64)]),
    element_offset=st.integers(0, 7),
    serial=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_streaming_stores_write_the_bits_of_ordinary_ones_and_nothing_else(
    planes, channels, in_hw, out_hw, factor, align, dtype, element_offset, serial, seed
):
    """Both bodies; every start of the output against a vector boundary (vectors, then single
    streamed columns or channels before and after them); clamped edges; NaN and infinities."""
    if factor:
        out_hw = (in_hw[0] * factor, in_hw[1] * factor)
    rng = np.random.default_rng(seed)
    pixels = () if channels is None else (channels,)
    src = with_specials(rng, sample(rng, (planes, *in_hw, *pixels), dtype), 0.05)
    expected = np.empty((planes, *out_hw, *pixels), dtype)
    run_kernel(src, expected, align, serial, stream=False)
    buffer = np.full(expected.nbytes + 128, SENTINEL, np.uint8)
    out = output_at(buffer, element_offset * dtype.itemsize, expected.shape, dtype)
    run_kernel(src, out, align, serial, stream=True)
    assert_same_bits(out, expected)
    outside = np.ones(buffer.size, bool)
    start = out.ctypes.data - buffer.ctypes.data
    outside[start : start + out.nbytes] = False
    assert (buffer[outside] == SENTINEL).all()


@pytest.mark.parametrize("dtype", [np.uint8, np.int16])
def test_an_integer_output_asked_to_stream_is_rounded_and_saturated_as_usual(dtype):
    """Streaming stores write float vectors; an integer output takes the ordinary loop instead."""
    rng = np.random.default_rng(3)
    src = sample(rng, (2, 6, 6), np.float32) * 1e4
    expected, streamed = np.empty((2, 48, 48), dtype), np.empty((2, 48, 48), dtype)
    run_kernel(src, expected, "center", serial=True, stream=False)
    run_kernel(src, streamed, "center", serial=True, stream=True)
    assert_same_bits(streamed, expected)
    assert expected.min() == np.iinfo(dtype).min or expected.max() == np.iinfo(dtype).max  # it did saturate


def test_only_a_large_output_the_caller_gives_streams():
    """A fresh output has just been zeroed into the cache by the kernel: ordinary stores hit it.
    A small one stays in the cache for its reader. Only the compute dtype, C-contiguous, aligned."""
    f32 = np.dtype(np.float32)
    small, large = np.empty(1000, f32), np.empty(_cpu.STREAM_BYTES // 4, f32)
    assert _cpu.streams(large, fresh=False, compute_dtype=f32)
    assert not _cpu.streams(large, fresh=True, compute_dtype=f32)
    assert not _cpu.streams(small, fresh=False, compute_dtype=f32)
    # Outputs the kernels would write in ordinary stores anyway: asking would compile them again.
    assert not _cpu.streams(large.view(np.uint8), fresh=False, compute_dtype=f32)
    strided = np.empty(_cpu.STREAM_BYTES // 2, f32)[::2]  # as many bytes as ``large``
    assert strided.nbytes == large.nbytes and not _cpu.streams(strided, fresh=False, compute_dtype=f32)
    # An output off its element alignment: a streaming vector store there faults.
    unaligned = np.empty(large.nbytes + 4, np.uint8)[1 : 1 + large.nbytes].view(f32)
    assert not unaligned.flags.aligned and not _cpu.streams(unaligned, fresh=False, compute_dtype=f32)


def test_a_large_out_through_the_front_matches_a_fresh_output():
    """(256, 24, 24) x8 float32 into out= (38 MB, over STREAM_BYTES: streamed) against a fresh
    output (ordinary stores), through the thread pool, in an output that starts off a vector."""
    src = with_specials(np.random.default_rng(4), sample(np.random.default_rng(5), (256, 24, 24), np.float32), 0.01)
    expected = fastinterp.resize(src, 8, channels_first=True)
    assert expected.nbytes >= _cpu.STREAM_BYTES
    buffer = np.full(expected.nbytes + 128, SENTINEL, np.uint8)
    out = output_at(buffer, 4, expected.shape, np.dtype(np.float32))
    assert fastinterp.resize(src, 8, channels_first=True, out=out) is out
    assert_same_bits(out, expected)
    assert (buffer[: out.ctypes.data - buffer.ctypes.data] == SENTINEL).all()


@pytest.mark.parametrize("bad", ["strided", "mixed dtypes"])
def test_the_streaming_store_refuses_arrays_it_cannot_write_as_vectors(bad):
    """_stream_vector writes raw memory from an index on: a strided output or rows of another
    dtype are refused when the kernel is typed, never run."""
    from numba import njit
    from numba.core.errors import TypingError

    @njit
    def store(out, rows, weight):
        _cpu._stream_vector(out, 0, rows, 0, 8, weight, weight)
        _cpu._store_fence()

    rows = np.arange(16, dtype=np.float32)
    aligned = output_at(np.zeros(256, np.uint8), 0, (32,), np.dtype(np.float32))
    store(aligned, rows, np.float32(0.5))
    np.testing.assert_array_equal(aligned[:8], (rows[:8] + rows[8:]) / 2)
    out = aligned[::2] if bad == "strided" else np.zeros(32, np.float64)
    with pytest.raises(TypingError):
        store(out, rows, np.float32(0.5))


def test_an_out_off_its_element_alignment_is_written_in_ordinary_stores():
    """A float32 ``out=`` one byte past a boundary (numpy and torch allow it): a streaming vector
    store there faults, so such an output must never stream. Run in a child: a fault kills it."""
    child = textwrap.dedent(
        """
        import numpy as np, fastinterp
        src = np.random.default_rng(0).random((256, 24, 24), dtype=np.float32)
        expected = fastinterp.resize(src, 8, channels_first=True)
        buffer = np.zeros(expected.nbytes + 64, np.uint8)
        start = -buffer.ctypes.data % 64 + 1
        out = buffer[start : start + expected.nbytes].view(np.float32).reshape(expected.shape)
        assert not out.flags.aligned and out.nbytes >= fastinterp._cpu.STREAM_BYTES
        fastinterp.resize(src, 8, channels_first=True, out=out)
        assert np.array_equal(out, expected)
        print("same values")
        """
    )
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "same values" in result.stdout, (result.returncode, result.stderr[-2000:])


def test_only_the_calls_that_stream_compile_streaming_stores():
    """Streaming stores are in the kernel compiled for ``stream=True`` and not in the one for the
    other calls (None: see ``_cpu.run_tasks``), both bodies; compiled here, not loaded from the cache."""
    import numba

    serial = numba.njit(_cpu.serial_tasks.py_func)
    for src in (np.ones((2, 4, 4), np.float32), np.ones((1, 4, 4, 9), np.float32)):
        layout = "planes" if src.ndim == 3 else "pixels"
        plan = make_plan(layout, src.shape, src.dtype, None, None, (8, 40), "center", False)
        ys, xs = plan.taps()
        out = np.empty((src.shape[0], 8, 40, *src.shape[3:]), np.float32)
        for stream in (True, None):
            serial(_cpu.read_only(src), out, ys, xs, 8, (0, 0, 0), stream)
        streaming = {str(signature[-1]): "movnt" in serial.inspect_asm(signature) for signature in serial.signatures}
        assert streaming == {"bool": True, "none": False}, (layout, streaming)
        serial = numba.njit(_cpu.serial_tasks.py_func)  # a fresh dispatcher per body

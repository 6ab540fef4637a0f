"""fastinterp.dask.resize: bit-identical to fastinterp.resize of the whole array, whatever the
chunking, with a graph in which each output block reads only the input blocks it needs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import dask  # noqa: E402
import dask.core  # noqa: E402

import fastinterp  # noqa: E402
import fastinterp.dask  # noqa: E402
from fastinterp import _cpu  # noqa: E402
from fastinterp._antialias import antialias_taps, vertical_first  # noqa: E402
from fastinterp._coords import axis_taps, legacy_axis_taps  # noqa: E402
from fastinterp._plan import LEGACY_DTYPES, SUPPORTED_DTYPES  # noqa: E402
from sampling import fixed_taps_compiled  # noqa: E402

#: layout name -> (user axes, channels_first)
LAYOUTS = {
    "HW": ("HW", False),
    "HWC": ("HWC", False),
    "NHWC": ("NHWC", False),
    "CHW": ("CHW", True),
    "NCHW": ("NCHW", True),
}


def random_array(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Values that use the dtype's whole range, so rounding and saturation are exercised."""
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    return (rng.standard_normal(shape) * 100).astype(dtype)


@st.composite
def axis_chunks(draw: st.DrawFn, size: int) -> tuple[int, ...]:
    """Uniform chunks of any length (1 included), or an irregular partition of ``size``."""
    if draw(st.booleans()):
        step = draw(st.integers(1, size))
        return (step,) * (size // step) + ((size % step,) if size % step else ())
    cuts = sorted(draw(st.sets(st.integers(1, size - 1), max_size=6))) if size > 1 else []
    return tuple(np.diff([0, *cuts, size]).tolist())


@st.composite
def requests(draw: st.DrawFn) -> dict:
    layout = draw(st.sampled_from(sorted(LAYOUTS)))
    axes, channels_first = LAYOUTS[layout]
    sizes = {"H": draw(st.integers(1, 30)), "W": draw(st.integers(1, 30)),
             "C": draw(st.sampled_from([1, 2, 3, 4, 16, 17, 20])), "N": draw(st.integers(1, 3))}  # fmt: skip
    shape = tuple(sizes[axis] for axis in axes)
    legacy = draw(st.booleans())
    dtype = draw(st.sampled_from(LEGACY_DTYPES if legacy else SUPPORTED_DTYPES))
    align = draw(st.sampled_from(("center", "left") if legacy else ("center", "corners", "left")))
    if draw(st.booleans()):
        options = {"size": (draw(st.integers(1, 45)), draw(st.integers(1, 45)))}
    else:
        rates = st.sampled_from([0.2, 0.37, 0.5, 0.8, 1, 1.25, 2, 3.3])
        options = {"w_rate": draw(rates), "h_rate": draw(rates)}
        assume(round(sizes["H"] * options["h_rate"]) >= 1 and round(sizes["W"] * options["w_rate"]) >= 1)
    chunks = tuple(draw(axis_chunks(n)) for n in shape)
    return dict(shape=shape, chunks=chunks, dtype=dtype, channels_first=channels_first,
                options=dict(options, align=align, legacy=legacy), seed=draw(st.integers(0, 2**32 - 1)))  # fmt: skip


def check_against_memory(request: dict) -> None:
    data = random_array(np.random.default_rng(request["seed"]), request["shape"], request["dtype"])
    lazy = fastinterp.dask.resize(
        da.from_array(data, chunks=request["chunks"]), channels_first=request["channels_first"], **request["options"]
    )
    want = fastinterp.resize(data, channels_first=request["channels_first"], **request["options"])
    got = lazy.compute(scheduler="sync")
    assert lazy.shape == want.shape and lazy.dtype == want.dtype
    assert got.shape == want.shape and got.dtype == want.dtype
    assert np.array_equal(got, want, equal_nan=True)


@given(requests())
def test_bit_identical_to_the_in_memory_resize(request):
    check_against_memory(request)


@pytest.mark.parametrize("factor", [8, 16])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_periodic_upscales_are_bit_identical_to_the_in_memory_resize(factor, dtype):
    """Channels-first integer upscales whose column taps repeat in whole vectors: the in-memory
    planes body blends them without gathers (``_coords.period_of``); each block's region too,
    with chunks that cut the columns anywhere."""
    check_against_memory(dict(shape=(3, 7, 13), chunks=((2, 1), (4, 3), (5, 1, 7)), dtype=dtype, channels_first=True,
                              options=dict(w_rate=factor, h_rate=2), seed=factor))


@st.composite
def antialias_requests(draw: st.DrawFn) -> dict:
    """Requests with ``antialias=True``: downscales by up to 1/7 on one axis or both (the other
    may be upscaled), so that windows span many pixels and several blocks."""
    layout = draw(st.sampled_from(sorted(LAYOUTS)))
    axes, channels_first = LAYOUTS[layout]
    sizes = {"H": draw(st.integers(1, 40)), "W": draw(st.integers(1, 40)),
             "C": draw(st.sampled_from([1, 3, 4, 17])), "N": draw(st.integers(1, 2))}  # fmt: skip
    shape = tuple(sizes[axis] for axis in axes)
    out_h, out_w = draw(st.integers(1, 45)), draw(st.integers(1, 45))
    assume(out_h < sizes["H"] or out_w < sizes["W"])  # else the plain path runs (tested above)
    chunks = tuple(draw(axis_chunks(n)) for n in shape)
    dtype = draw(st.sampled_from(SUPPORTED_DTYPES))
    # the in-memory resize would take a fixed-taps kernel that only the thorough profile compiles
    assume(fixed_taps_compiled(dtype, sizes["W"], out_w))
    return dict(shape=shape, chunks=chunks, dtype=dtype,
                channels_first=channels_first, options=dict(size=(out_h, out_w), antialias=True),
                seed=draw(st.integers(0, 2**32 - 1)))  # fmt: skip


@given(antialias_requests())
def test_antialias_is_bit_identical_to_the_in_memory_resize(request):
    check_against_memory(request)


def test_antialias_blocks_use_the_whole_arrays_pass_order():
    """Blocks whose own sizes would choose the other pass order (columns first here, where the
    whole 12x12 -> 14x3 resize blends rows first) give the whole array's bits, not their own."""
    data = random_array(np.random.default_rng(5), (12, 12), np.float32)
    ys, xs = antialias_taps(12, 14, np.dtype(np.float32)), antialias_taps(12, 3, np.dtype(np.float32))
    assert not vertical_first(12, 12, ys, xs)
    lazy = fastinterp.dask.resize(da.from_array(data, chunks=(3, 12)), size=(14, 3), antialias=True)
    row_starts = np.cumsum((0, *lazy.chunks[0]))
    own_choices = set()
    for a, b in zip(row_starts[:-1], row_starts[1:]):
        region_rows = (ys.first[b - 1] + ys.count[b - 1]) - ys.first[a]
        block_ys = ys._replace(first=ys.first[a:b] - ys.first[a], count=ys.count[a:b], weights=ys.weights[a:b])
        own_choices.add(bool(vertical_first(region_rows, 12, block_ys, xs)))
    assert own_choices == {False, True}  # some blocks would choose differently on their own
    want = fastinterp.resize(data, size=(14, 3), antialias=True)
    assert np.array_equal(lazy.compute(scheduler="sync"), want)


@pytest.mark.parametrize("shape, chunks, size", [((40, 37, 2), (7, 5, 1), (9, 30)), ((23, 60), (1, 11), (4, 7))])
def test_antialias_blocks_depend_only_on_the_input_blocks_around_their_windows(shape, chunks, size):
    source = da.zeros(shape, dtype=np.float32, chunks=chunks)
    lazy = fastinterp.dask.resize(source, size=size, antialias=True)
    ys = antialias_taps(shape[0], size[0], np.dtype(np.float32))
    xs = antialias_taps(shape[1], size[1], np.dtype(np.float32))
    check_dependencies(source, lazy, ys, xs)


@pytest.mark.parametrize("rate", [0.3, 0.5, 1.0, 1.7, 4.0])
@pytest.mark.parametrize("legacy", [False, True])
def test_chunks_of_one_row_and_one_column(rate, legacy):
    for chunks in ((1, 9, 3), (13, 1, 3), (1, 1, 1)):
        check_against_memory(dict(shape=(11, 13, 3), chunks=chunks, dtype=np.uint8, channels_first=False,
                                  options=dict(w_rate=rate, legacy=legacy), seed=7))  # fmt: skip


def test_output_chunks_follow_the_input_chunks_scaled():
    lazy = fastinterp.dask.resize(da.zeros((30, 40, 3), dtype=np.uint8, chunks=(10, 20, 3)), 2)
    assert lazy.chunks == ((20, 20, 20), (40, 40), (3,))
    lazy = fastinterp.dask.resize(da.zeros((2, 5, 30, 40), dtype=np.float32, chunks=(1, 2, 7, 40)), 0.5,
                                  channels_first=True)  # fmt: skip
    assert lazy.chunks == ((1, 1), (2, 2, 1), (4, 3, 4, 3, 1), (20,))


def test_large_output_blocks_are_cut_to_the_chunk_size_setting():
    data = random_array(np.random.default_rng(3), (40, 30, 3), np.float32)
    with dask.config.set({"array.chunk-size": "64KiB"}):
        lazy = fastinterp.dask.resize(da.from_array(data, chunks=(20, 30, 3)), 8)
    block_bytes = [np.prod(shape) * 4 for shape in _block_shapes(lazy.chunks)]
    assert max(block_bytes) <= 64 * 1024 and len(block_bytes) > 2
    assert np.array_equal(lazy.compute(scheduler="sync"), fastinterp.resize(data, 8))


def _block_shapes(chunks: tuple[tuple[int, ...], ...]) -> list[tuple[int, ...]]:
    import itertools

    return list(itertools.product(*chunks))


def _overlapping_blocks(chunks: tuple[int, ...], start: int, stop: int) -> set[int]:
    bounds = np.cumsum((0, *chunks))
    return {b for b in range(len(chunks)) if bounds[b] < stop and bounds[b + 1] > start}


def _input_dependencies(graph: dict, key: tuple, source_name: str) -> set[tuple]:
    """The input blocks ``key`` depends on, through any layers in between (the halo parts)."""
    found, stack = set(), [key]
    while stack:
        for dependency in dask.core.get_dependencies(graph, stack.pop()):
            (found.add if dependency[0] == source_name else stack.append)(dependency)
    return found


def _reads(taps) -> tuple[np.ndarray, np.ndarray]:
    """First input index each output reads and one past the last, plain or antialias taps."""
    if hasattr(taps, "weights"):
        return taps.first, taps.first + taps.count
    return taps.first, taps.second + 1


def check_dependencies(source: da.Array, lazy: da.Array, ys, xs) -> set[bool]:
    """Every output block depends on the input blocks its taps read, and on no other blocks
    than those its own input block widened by the halos holds: the most any output block
    reads beyond its own input block (the halos it takes from its neighbours). Returns,
    for each block, whether it depends on exactly what it reads."""
    graph = dict(lazy.dask)
    exact = set()
    spans = []  # per axis: for each output block, the input range it reads and its halo-widened own block
    for taps, out_chunks, in_chunks in ((ys, lazy.chunks[0], source.chunks[0]), (xs, lazy.chunks[1], source.chunks[1])):
        starts, stops = _reads(taps)
        out_bounds, in_bounds = np.cumsum((0, *out_chunks)), np.cumsum((0, *in_chunks))
        read = [(starts[a:b].min(), stops[a:b].max()) for a, b in zip(out_bounds[:-1], out_bounds[1:])]
        if len(read) == len(in_chunks):
            before = max(0, *(in_bounds[k] - start for k, (start, _) in enumerate(read)))
            after = max(0, *(stop - in_bounds[k + 1] for k, (_, stop) in enumerate(read)))
            widened = [(in_bounds[k] - before, in_bounds[k + 1] + after) for k in range(len(read))]
        else:
            widened = read
        spans.append([(_overlapping_blocks(in_chunks, *r), _overlapping_blocks(in_chunks, *w)) for r, w in zip(read, widened)])
    keys = [key for key in graph if key[0] == lazy.name]
    assert len(keys) == np.prod(lazy.numblocks)
    for key in keys:
        i, j, *rest = key[1:]
        (rows, most_rows), (columns, most_columns) = spans[0][i], spans[1][j]
        got = _input_dependencies(graph, key, source.name)
        assert {(source.name, r, c, *rest) for r in rows for c in columns} <= got, key
        assert got <= {(source.name, r, c, *rest) for r in most_rows for c in most_columns}, key
        exact.add(len(got) == len(rows) * len(columns))
    return exact


@pytest.mark.parametrize("rate, align, legacy", [(1.7, "center", False), (0.45, "corners", False),
                                                 (2.5, "left", False), (0.6, "center", True)])  # fmt: skip
@pytest.mark.parametrize("chunks", [(7, 5, 1), (3, 1, 1)])
def test_each_output_block_depends_only_on_the_input_blocks_around_its_region(rate, align, legacy, chunks):
    source = da.zeros((40, 37, 2), dtype=np.uint8, chunks=chunks)
    lazy = fastinterp.dask.resize(source, rate, align=align, legacy=legacy)
    make = legacy_axis_taps if legacy else axis_taps
    ys = make(40, lazy.shape[0], align, np.dtype(np.float32))
    xs = make(37, lazy.shape[1], align, np.dtype(np.float32))
    check_dependencies(source, lazy, ys, xs)


def test_without_halos_each_output_block_depends_on_exactly_the_blocks_it_reads():
    """Where regions reach past the next block (chunks of one column at 0.45), no overlap: each
    task reads the blocks its region overlaps, and nothing else."""
    source = da.zeros((40, 37, 2), dtype=np.uint8, chunks=(7, 1, 1))
    lazy = fastinterp.dask.resize(source, 0.45)
    assert dict(lazy.dask.dependencies) == {source.name: set(), lazy.name: {source.name}}  # no overlap, no rechunk
    ys, xs = axis_taps(40, lazy.shape[0], "center", np.dtype(np.float32)), axis_taps(37, lazy.shape[1], "center", np.dtype(np.float32))
    assert check_dependencies(source, lazy, ys, xs) == {True}


def _most_input_blocks_held(source: da.Array, lazy: da.Array) -> int:
    """The most input blocks held at once when the graph of ``lazy`` runs in dask's static
    order on one thread (the order of a one-thread worker), each until its last reader is done."""
    from dask.order import order

    graph = dict(lazy.__dask_graph__())
    dependencies = {key: dask.core.get_dependencies(graph, key) for key in graph}
    readers = {key: 0 for key in graph}
    for needs in dependencies.values():
        for key in needs:
            readers[key] += 1
    priorities = order(graph)
    held, most = set(), 0
    for key in sorted(graph, key=priorities.__getitem__):
        if key[0] == source.name:
            held.add(key)
        for needed in dependencies[key]:
            readers[needed] -= 1
            if readers[needed] == 0:
                held.discard(needed)
        most = max(most, len(held))
    return most


@pytest.mark.parametrize("rate", [0.8, 0.5, 1.3])
def test_out_of_core_order_holds_about_a_row_of_input_blocks(rate):
    """A tall image of 40 x 4 blocks runs row after row: at most two rows of input blocks held
    at once. (The overlap-layer graph held 11 at 0.8 and 1.3, 43 at 0.5; taking parts only
    from the neighbours a block reads, 12 at 0.8: blocks that need none ran first.)"""
    source = da.zeros((40 * 41, 4 * 41, 3), dtype=np.uint8, chunks=(41, 41, 3))
    lazy = fastinterp.dask.resize(source, rate)
    assert _most_input_blocks_held(source, lazy) <= 2 * 4


@given(size=st.integers(1, 300), out_size=st.integers(1, 300), align=st.sampled_from(["center", "corners", "left"]),
       most=st.integers(1, 400), lines=st.integers(1, 40))  # fmt: skip
def test_a_plain_task_reads_at_most_the_lines_its_buffer_holds(size, out_size, align, most, lines):
    """``_rows_within``: the most output rows per task (up to ``most``) that read at most
    ``lines`` input rows, wherever the task starts (one row when even one reads more)."""
    taps = axis_taps(size, out_size, align, np.dtype(np.float32))
    rows = fastinterp.dask._rows_within(taps, most, lines)

    def widest(k):
        return max(taps.second[i + k - 1] + 1 - taps.first[i] for i in range(out_size - k + 1))

    assert 1 <= rows <= min(most, out_size)
    assert rows == 1 or widest(rows) <= lines
    assert rows == min(most, out_size) or widest(rows + 1) > lines


def test_threads_of_one_process_give_the_same_bits():
    """Each thread assembles its regions in its own buffer."""
    data = random_array(np.random.default_rng(8), (300, 260, 3), np.uint8)
    lazy = fastinterp.dask.resize(da.from_array(data, chunks=(37, 41, 3)), 0.8)
    assert np.array_equal(lazy.compute(scheduler="threads", num_workers=4), fastinterp.resize(data, 0.8))


def _poisoned_source(allowed_rows: int) -> da.Array:
    """A 60x20 array in blocks of 6 rows whose blocks below ``allowed_rows`` raise when computed."""

    def block(block_info=None):
        (top, _), _ = block_info[None]["array-location"]
        if top >= allowed_rows:
            raise RuntimeError(f"block at row {top} was read")
        return np.full(block_info[None]["chunk-shape"], top, np.float32)

    return da.map_blocks(block, chunks=((6,) * 10, (20,)), dtype=np.float32)


def test_computing_one_output_block_reads_only_its_input_blocks():
    lazy = fastinterp.dask.resize(_poisoned_source(allowed_rows=12), 2)  # output blocks of 12 rows
    top = lazy[:12].compute(scheduler="sync")  # reads input rows 0..6: blocks 0 and 1
    assert np.array_equal(top[:6], np.zeros((6, 40), np.float32))
    with pytest.raises(RuntimeError, match="was read"):  # the poison is live
        lazy.compute(scheduler="sync")


def test_reuses_the_kernels_compiled_for_the_in_memory_resize():
    """Sliced taps are read-only like the cached ones: no numba signature (a compile) per block.
    (At 1.7, not 2: the in-memory resize by exactly 2 runs the fixed-factor kernels instead.)"""
    planes = random_array(np.random.default_rng(1), (3, 20, 20), np.float32)
    pixels = random_array(np.random.default_rng(2), (20, 20, 3), np.uint8)
    fastinterp.resize(planes, 1.7, channels_first=True)
    fastinterp.resize(pixels, 1.7)
    before = len(_cpu.serial_tasks.signatures)
    fastinterp.dask.resize(da.from_array(planes, chunks=(1, 7, 6)), 1.7, channels_first=True).compute(scheduler="sync")
    fastinterp.dask.resize(da.from_array(pixels, chunks=(7, 6, 3)), 1.7).compute(scheduler="sync")
    assert len(_cpu.serial_tasks.signatures) == before


def test_import_fastinterp_does_not_import_dask():
    import subprocess
    import sys

    code = "import sys, fastinterp; print('dask' in sys.modules, 'distributed' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False False"


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, scheduler_kwargs={"dashboard": False}, silence_logs=40
    )
    with cluster, distributed.Client(cluster) as connected:
        yield connected


def test_on_a_local_cluster_of_two_processes(client):
    rng = np.random.default_rng(11)
    image = random_array(rng, (300, 410, 3), np.uint8)
    maps = random_array(rng, (2, 5, 64, 48), np.float16)
    cases = [
        (image, (64, 100, 3), dict(w_rate=1.37, h_rate=0.61), False),
        (image, (37, 410, 3), dict(size=(512, 333), align="corners"), False),
        (image, (100, 50, 3), dict(w_rate=0.75, legacy=True), False),
        (maps, (1, 2, 10, 48), dict(w_rate=4.5), True),
        (image, (64, 100, 3), dict(size=(41, 123), antialias=True), False),
    ]
    lazies = [fastinterp.dask.resize(da.from_array(data, chunks=chunks), channels_first=cf, **options)
              for data, chunks, options, cf in cases]  # fmt: skip
    results = client.compute(lazies, sync=True)
    assert len(client.scheduler_info()["workers"]) == 2
    for (data, _, options, cf), got in zip(cases, results):
        want = fastinterp.resize(data, channels_first=cf, **options)
        assert got.dtype == want.dtype and np.array_equal(got, want)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: fastinterp.dask.resize(np.zeros((4, 4)), 2), TypeError, "use fastinterp.resize"),
        (lambda: fastinterp.dask.resize([[1.0, 2.0]], 2), TypeError, "use fastinterp.resize"),
        (lambda: fastinterp.dask.resize(da.zeros((4, 4, 3, 2, 2)), 2), ValueError, "5 dimensions"),
        (lambda: fastinterp.dask.resize(da.zeros((4,)), 2), ValueError, "1 dimensions"),
        (lambda: fastinterp.dask.resize(da.zeros((4, 4)), 2, align="middle"), ValueError, "align must be one of"),
        (lambda: fastinterp.dask.resize(da.zeros((4, 4)), 2, align="corners", legacy=True), ValueError, "legacy align"),
        (lambda: fastinterp.dask.resize(da.zeros((4, 4), dtype=np.float16), 2, legacy=True), TypeError, "float16"),
        (lambda: fastinterp.dask.resize(da.zeros((4, 4), dtype=bool), 2), TypeError, "does not support dtype bool"),
        (lambda: fastinterp.dask.resize(da.zeros((4, 4), dtype=np.int64), 2), TypeError, "int64"),
        (lambda: fastinterp.dask.resize(da.zeros((4, 4)), 2, size=(3, 3)), ValueError, "not both"),
        (lambda: fastinterp.dask.resize(da.zeros((4, 4))), ValueError, "give a rate"),
        (lambda: fastinterp.dask.resize(da.zeros((4, 4)), -1.0), ValueError, "finite number > 0"),
        (lambda: fastinterp.dask.resize(da.zeros((4, 4)), 0.01), ValueError, "empty"),
        (lambda: fastinterp.dask.resize(da.zeros((0, 4)), 2), ValueError, "empty array"),
        (lambda: fastinterp.dask.resize(da.zeros((4, 4)), 2, channels_first=1), TypeError, "channels_first"),
        (lambda: fastinterp.dask.resize(da.zeros((4, 4)), 2, legacy="yes"), TypeError, "legacy must be"),
        (lambda: fastinterp.dask.resize(_unknown_chunks(), 2), ValueError, "compute_chunk_sizes"),
        (lambda: fastinterp.dask.resize(da.zeros((4, 4)), 0.5, antialias=1), TypeError, "antialias must be"),
        (lambda: fastinterp.dask.resize(da.zeros((4, 4)), 0.5, antialias=True, legacy=True), ValueError, "legacy"),
        (lambda: fastinterp.dask.resize(da.zeros((4, 4)), 0.5, antialias=True, align="corners"), ValueError,
         "antialias=True is defined only"),
    ],
)
def test_bad_input_is_refused_in_one_line_before_computing(call, error, message):
    with pytest.raises(error, match=message) as caught:
        call()
    assert "\n" not in str(caught.value)


def _unknown_chunks() -> da.Array:
    values = da.arange(16, chunks=4).reshape(4, 4)
    return values[values[:, 0] > 3]

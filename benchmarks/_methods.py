"""Benchmark cases and the resize methods compared on them, registered in :data:`METHODS`.

A case is a channels-first problem: an input of shape ``lead + (H, W)`` (``lead`` is (C,) or
(N, C)) resized to ``lead + (out_h, out_w)`` with the ``center`` convention (torch
``align_corners=False``, OpenCV, Pillow upscaling, scipy ``grid_mode=True``). An antialias case
downscales with the widened triangle filter instead (fastinterp and torch ``antialias=True``,
Pillow's BILINEAR); only the methods that compute it run there (:attr:`Method.antialias`).
Every method gets the same channels-first input, converts it to the layout it works in while
it is prepared (untimed), and returns a :class:`Prepared` run whose result can be viewed
channels-first again for the correctness check against fastinterp. Explicit output sizes are passed everywhere, so
that the libraries' different size rounding rules never matter.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The core issue's feature-map stacks, each resized by 8.
FEATURE_MAP_SHAPES = ((2048, 12, 12), (2048, 24, 24), (256, 96, 96))
#: Channels of the scaling series: (64, h, h) by 4 gives 2**(10 + 2 log2 h) output elements.
SERIES_CHANNELS = 64


@dataclass(frozen=True)
class Case:
    """One resize problem, channels-first: ``shape`` -> ``shape[:-2] + out_hw``."""

    title: str
    shape: tuple[int, ...]
    out_hw: tuple[int, int]
    dtype: str
    series: bool = False  # a point of the scaling series (plotted) rather than a table case
    antialias: bool = False  # downscaled with the antialias filter

    @property
    def id(self) -> str:
        return f"{self.title} {self.dtype}"

    @property
    def lead(self) -> tuple[int, ...]:
        return self.shape[:-2]

    @property
    def planes(self) -> int:
        return math.prod(self.lead)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (*self.lead, *self.out_hw)

    @property
    def out_elements(self) -> int:
        return math.prod(self.out_shape)

    @property
    def downscales(self) -> bool:
        return self.out_hw[0] < self.shape[-2] or self.out_hw[1] < self.shape[-1]


def _scaled_case(title: str, shape: tuple[int, ...], rate: float, dtype: str, series: bool = False) -> Case:
    out_hw = (round(shape[-2] * rate), round(shape[-1] * rate))
    return Case(title, shape, out_hw, dtype, series)


def antialias_cases() -> list[Case]:
    """Issue 13's antialiased downscales: a photo halved (uint8 and float32) and feature maps by 4."""
    photo = (3, 1080, 1920)
    return [
        Case(f"antialias photo {photo} x0.5", photo, (540, 960), "uint8", antialias=True),
        Case(f"antialias photo {photo} x0.5", photo, (540, 960), "float32", antialias=True),
        Case("antialias feature maps (2048, 96, 96) x0.25", (2048, 96, 96), (24, 24), "float32", antialias=True),
    ]


def antialias_targets(case: Case) -> list[dict[str, Any]]:
    """Issue 13's target for ``fastinterp CHW`` in an antialias case: faster than Pillow per
    plane. (At least twice as fast as torch's ``antialias=True`` in float32 is timed in
    alternation, in ``test_bench_core.py``: back-to-back rounds here charge the first method
    timed for the thread pool and memory state left by the one before.)"""
    return [{"over": "Pillow per plane", "max": 1.0}]


def feature_map_cases() -> list[Case]:
    """The core issue's cases: three feature-map stacks by 8, float32 and uint8."""
    return [
        _scaled_case(f"feature maps {shape} x8", shape, 8, dtype)
        for shape in FEATURE_MAP_SHAPES
        for dtype in ("float32", "uint8")
    ]


def report_cases(quick: bool) -> list[Case]:
    """Every case of the report besides the feature maps: photo, batch and the scaling series."""
    photo = (3, 1080, 1920)
    cases = [
        _scaled_case(f"photo {photo} x{rate:g}", photo, rate, dtype)
        for rate in (2, 0.5)
        for dtype in ("uint8", "float32")
    ]
    cases.append(_scaled_case("batch (32, 256, 14, 14) x4", (32, 256, 14, 14), 4, "float32"))
    # 2**16 to 2**24 output elements in quick mode (every other size), to 2**28 in full mode.
    sides = (8, 32, 128) if quick else (8, 16, 32, 64, 128, 256, 512)
    for side in sides:
        shape = (SERIES_CHANNELS, side, side)
        elements = SERIES_CHANNELS * (4 * side) ** 2
        cases.append(_scaled_case(f"series 2**{elements.bit_length() - 1}", shape, 4, "float32", series=True))
    return cases


@functools.lru_cache(maxsize=1)
def input_cf(case: Case) -> np.ndarray:
    """The case's channels-first input: uniform in [0, 1) for floats, the full range for uint8."""
    rng = np.random.default_rng(2024)
    if case.dtype == "uint8":
        return rng.integers(0, 256, case.shape, dtype=np.uint8)
    return rng.random(case.shape, dtype=np.float32).astype(case.dtype, copy=False)


@functools.lru_cache(maxsize=1)
def expected_cf(case: Case) -> np.ndarray:
    """fastinterp's channels-first output: what every other method is checked against."""
    import fastinterp

    return fastinterp.resize(input_cf(case), size=case.out_hw, channels_first=True, antialias=case.antialias)


def channels_last(x: np.ndarray) -> np.ndarray:
    """A C-contiguous channels-last copy of a channels-first array: (C,H,W) -> (H,W,C)."""
    return np.ascontiguousarray(np.moveaxis(x, -3, -1))


def channels_last_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The channels-last shape of a channels-first one: (..., C, H, W) -> (..., H, W, C)."""
    return (*shape[:-3], *shape[-2:], shape[-3])


def channels_first_view(x: np.ndarray) -> np.ndarray:
    """A channels-first view of a channels-last array (no copy)."""
    return np.moveaxis(x, -1, -3)


class Unavailable(Exception):
    """The method cannot run here, e.g. its library is not installed."""


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise Unavailable(f"{module.split('.')[0]} is not installed ({error})") from None


@dataclass
class Prepared:
    """A method made ready for one case."""

    run: Callable[[], Any]
    #: The result viewed channels-first (``lead + out_hw`` or ``(planes,) + out_hw``), or None
    #: where there is nothing to check (the memory floor).
    as_cf: Callable[[Any], np.ndarray] | None
    #: What the result must equal; None means fastinterp's output for the timed planes.
    expected: np.ndarray | None = None
    #: Factor from the timed work to the whole case (> 1 where a subset is timed).
    scale: float = 1.0
    note: str = ""


def _identity(result: np.ndarray) -> np.ndarray:
    return result


def _fastinterp(channels_first: bool, preallocated: bool) -> Callable[[Case, np.ndarray, int], Prepared]:
    def prepare(case: Case, x: np.ndarray, planes: int) -> Prepared:
        import fastinterp

        src = x if channels_first else channels_last(x)
        out_shape = case.out_shape if channels_first else channels_last_shape(case.out_shape)
        out = np.empty(out_shape, x.dtype) if preallocated else None

        def run() -> np.ndarray:
            return fastinterp.resize(src, size=case.out_hw, channels_first=channels_first, out=out,
                                     antialias=case.antialias)

        return Prepared(run, _identity if channels_first else channels_first_view)

    return prepare


def _torch(channels_last_format: bool) -> Callable[[Case, np.ndarray, int], Prepared]:
    def prepare(case: Case, x: np.ndarray, planes: int) -> Prepared:
        torch = _optional("torch")
        batch = torch.from_numpy(x.reshape((-1, *x.shape[-3:])))
        if channels_last_format:
            batch = batch.contiguous(memory_format=torch.channels_last)

        def run() -> Any:
            return torch.nn.functional.interpolate(
                batch, size=case.out_hw, mode="bilinear", align_corners=False, antialias=case.antialias)

        return Prepared(run, lambda result: result.numpy().reshape(case.out_shape))

    return prepare


def opencv_channel_cap(cv2: Any) -> int:
    """Most channels ``cv2.resize`` accepts (CV_CN_MAX, not exported): 512 in 4.x, 128 from 5.0."""
    return 128 if int(cv2.__version__.split(".")[0]) >= 5 else 512


def _opencv_chunks(case: Case, x: np.ndarray, planes: int) -> Prepared:
    cv2 = _optional("cv2")
    cap = opencv_channel_cap(cv2)
    height, width, channels = x.shape[-2], x.shape[-1], x.shape[-3]
    out_h, out_w = case.out_hw
    images = channels_last(x).reshape(-1, height, width, channels)
    starts = range(0, channels, cap)
    chunks = [[np.ascontiguousarray(image[..., start : start + cap]) for start in starts] for image in images]

    def resize_chunk(chunk: np.ndarray) -> np.ndarray:
        return cv2.resize(chunk, (out_w, out_h), interpolation=cv2.INTER_LINEAR).reshape(out_h, out_w, -1)

    def run() -> np.ndarray:
        if len(images) == 1 and len(starts) == 1:  # within the cap: OpenCV's own output
            return resize_chunk(chunks[0][0])
        out = np.empty((len(images), out_h, out_w, channels), x.dtype)
        for image_chunks, image_out in zip(chunks, out):
            for start, chunk in zip(starts, image_chunks):
                image_out[..., start : start + cap] = resize_chunk(chunk)
        return out

    note = ""
    if channels > cap:
        note = (
            f"channels-last input split into {cap}-channel chunks (OpenCV's cap) before timing; "
            "timed: resize + copy into one output"
        )
    return Prepared(run, lambda result: channels_first_view(result).reshape(case.out_shape), note=note)


def _opencv_planes(case: Case, x: np.ndarray, planes: int) -> Prepared:
    cv2 = _optional("cv2")
    src = x.reshape(-1, *x.shape[-2:])
    out_h, out_w = case.out_hw

    def run() -> np.ndarray:
        out = np.empty((len(src), out_h, out_w), x.dtype)
        for plane, plane_out in zip(src, out):
            cv2.resize(plane, (out_w, out_h), dst=plane_out, interpolation=cv2.INTER_LINEAR)
        return out

    return Prepared(run, _identity)


def _pillow(case: Case, x: np.ndarray, planes: int) -> Prepared:
    image_module = _optional("PIL.Image")
    if x.dtype not in (np.uint8, np.float32):
        raise Unavailable(f"Pillow has no one-band mode for {x.dtype}")
    src = x.reshape(-1, *x.shape[-2:])[:planes]
    out_h, out_w = case.out_hw
    bilinear = image_module.Resampling.BILINEAR

    def run() -> np.ndarray:
        out = np.empty((planes, out_h, out_w), x.dtype)
        for plane, plane_out in zip(src, out):
            plane_out[...] = np.asarray(image_module.fromarray(plane).resize((out_w, out_h), bilinear))
        return out

    return Prepared(run, _identity)


def _pillow_excluded(case: Case) -> str | None:
    if case.downscales and not case.antialias:
        return "Pillow's BILINEAR widens its filter when downscaling (antialiasing): it computes a different image"
    return None


def _scipy(case: Case, x: np.ndarray, planes: int) -> Prepared:
    ndimage = _optional("scipy.ndimage")
    src = x.reshape(-1, *x.shape[-2:])[:planes]
    out_h, out_w = case.out_hw
    factors = (out_h / src.shape[1], out_w / src.shape[2])

    def run() -> np.ndarray:
        out = np.empty((planes, out_h, out_w), x.dtype)
        for plane, plane_out in zip(src, out):
            ndimage.zoom(plane, factors, output=plane_out, order=1, mode="nearest", grid_mode=True)
        return out

    return Prepared(run, _identity)


def _skimage(case: Case, x: np.ndarray, planes: int) -> Prepared:
    transform = _optional("skimage.transform")
    src = x.reshape(-1, *x.shape[-2:])[:planes]
    out_shape = (planes, *case.out_hw)

    def run() -> np.ndarray:
        result = transform.resize(src, out_shape, order=1, mode="edge", anti_aliasing=False, preserve_range=True)
        if np.issubdtype(x.dtype, np.integer):  # skimage returns floats: round back, as a caller must
            return np.rint(result).astype(x.dtype)
        return result.astype(x.dtype, copy=False)

    return Prepared(run, _identity)


def original_transform() -> tuple[Callable[[np.ndarray, float, float], np.ndarray], str]:
    """The original script's ``transform`` (the verbatim class) and where it comes from."""
    from benchmarks.original_bilinear import BilinearInterpolation

    def transform(img: np.ndarray, w_rate: float, h_rate: float) -> np.ndarray:
        return BilinearInterpolation(w_rate, h_rate).transform(img)

    return transform, "benchmarks/original_bilinear.py BilinearInterpolation"


#: Side of the original script's output crop: its cost is per output pixel, so a crop is timed.
ORIGINAL_CROP_OUTPUT_SIDE = 64


def _original(case: Case, x: np.ndarray, planes: int) -> Prepared:
    import fastinterp

    transform, source = original_transform()
    height, width = x.shape[-2:]
    h_rate, w_rate = case.out_hw[0] / height, case.out_hw[1] / width
    crop_h = min(height, math.ceil(ORIGINAL_CROP_OUTPUT_SIDE / h_rate))
    crop_w = min(width, math.ceil(ORIGINAL_CROP_OUTPUT_SIDE / w_rate))
    image = x.reshape(-1, *x.shape[-3:])[0, :, :crop_h, :crop_w]
    if image.dtype.kind == "f":  # values over 1 so that the uint8 store has something to keep
        image = image * 255
    crop = channels_last(image)
    expected = fastinterp.resize(crop, w_rate, h_rate, legacy=True)
    scale = case.out_elements / expected.size
    note = (
        f"scaled x{scale:,.1f} from a {crop_h}x{crop_w} crop with all {crop.shape[-1]} channels "
        f"(its cost is per output pixel); {source}"
    )
    return Prepared(
        lambda: transform(crop, w_rate, h_rate),
        channels_first_view,
        expected=channels_first_view(expected),
        scale=scale,
        note=note,
    )


def _floor(preallocated: bool) -> Callable[[Case, np.ndarray, int], Prepared]:
    def prepare(case: Case, x: np.ndarray, planes: int) -> Prepared:
        from benchmarks._floor import empty_and_fill, fill

        if preallocated:
            out = fill(np.empty(case.out_shape, x.dtype))  # touched once: pages are mapped
            return Prepared(lambda: fill(out), None)
        return Prepared(lambda: empty_and_fill(case.out_shape, x.dtype), None)

    return prepare


@dataclass(frozen=True)
class Method:
    """A registered method: how to prepare it and how to judge its output."""

    prepare: Callable[[Case, np.ndarray, int], Prepared]
    description: str
    #: "baseline" (the ratios' denominator), "fastinterp", "other", "legacy" or "floor".
    role: str = "other"
    #: Largest difference to fastinterp allowed for uint8 output (fixed-point or double rounding).
    uint8_tolerance: int = 1
    #: Single-threaded, cost linear in planes: big cases are timed on a subset of planes, scaled.
    per_plane_cost: bool = False
    #: Part of the scaling series (variants that only repeat another line are left out).
    in_series: bool = True
    #: A reason the method computes something else for this case, known before running it.
    excluded: Callable[[Case], str | None] = lambda case: None
    #: Computes the antialiased downscale of the antialias cases (the others are not run there).
    antialias: bool = False


METHODS: dict[str, Method] = {
    "fastinterp CHW": Method(
        _fastinterp(True, False),
        "`fastinterp.resize(x, size=..., channels_first=True)` (`antialias=True` in the antialias cases)",
        role="baseline",
        uint8_tolerance=0,
        antialias=True,
    ),
    "fastinterp CHW out=": Method(
        _fastinterp(True, True),
        "the same into a preallocated `out=`",
        role="fastinterp",
        uint8_tolerance=0,
        in_series=False,
        antialias=True,
    ),
    "fastinterp HWC": Method(
        _fastinterp(False, False),
        "`fastinterp.resize(x, size=...)` on channels-last input",
        role="fastinterp",
        uint8_tolerance=0,
        antialias=True,
    ),
    "fastinterp HWC out=": Method(
        _fastinterp(False, True),
        "the same into a preallocated `out=`",
        role="fastinterp",
        uint8_tolerance=0,
        in_series=False,
        antialias=True,
    ),
    "torch NCHW": Method(
        _torch(False),
        "`torch.nn.functional.interpolate(mode='bilinear', align_corners=False, size=...)` "
        "(`antialias=True` in the antialias cases)",
        antialias=True,
    ),
    "torch channels_last": Method(_torch(True), "the same on a `torch.channels_last` tensor", antialias=True),
    "OpenCV HWC chunks": Method(
        _opencv_chunks,
        "`cv2.resize(INTER_LINEAR)` on channels-last input, in chunks of at most OpenCV's channel cap "
        "(128 in 5.x, 512 in 4.x; split before timing), copied into one output",
    ),
    "OpenCV CHW per plane": Method(
        _opencv_planes, "one `cv2.resize(INTER_LINEAR, dst=...)` per plane, written in place"
    ),
    "Pillow per plane": Method(
        _pillow,
        "one `Image.fromarray(plane).resize(BILINEAR)` per plane (mode 'F' for float32, 'L' for uint8), "
        "numpy in and out (Pillow always antialiases a downscale: only the antialias cases and upscales)",
        per_plane_cost=True,
        excluded=_pillow_excluded,
        antialias=True,
    ),
    "scipy zoom per plane": Method(
        _scipy, "`ndimage.zoom(order=1, grid_mode=True, mode='nearest', output=...)` per plane", per_plane_cost=True
    ),
    "skimage resize": Method(
        _skimage,
        "`transform.resize(order=1, mode='edge', anti_aliasing=False, preserve_range=True)` on the stack of planes "
        "(float64 result rounded back for uint8)",
        per_plane_cost=True,
    ),
    "original script": Method(
        _original,
        "the original script's `BilinearInterpolation(w, h).transform` on (H, W, C): its own uint8 output "
        "(black frame, truncation), checked bit-exact against `fastinterp.resize(..., legacy=True)`; "
        "timed on a crop, scaled",
        role="legacy",
        uint8_tolerance=0,
        in_series=False,
    ),
    "memory floor: fill out=": Method(
        _floor(True),
        "numba `parallel=True` fill of a preallocated output-sized array, in ordinary stores (a resize "
        "cannot beat it with ordinary stores; fastinterp writes a large `out=` in streaming stores, which can)",
        role="floor",
        in_series=False,
    ),
    "memory floor: np.empty + fill": Method(
        _floor(False), "`np.empty` + the parallel fill: the floor for a fresh output", role="floor"
    ),
}

#: The methods of the core issue's suite (the others are timed by the comparison suite).
CORE_METHODS = (
    "fastinterp CHW",
    "fastinterp CHW out=",
    "fastinterp HWC",
    "fastinterp HWC out=",
    "torch NCHW",
    "torch channels_last",
    "OpenCV HWC chunks",
    "OpenCV CHW per plane",
    "memory floor: fill out=",
    "memory floor: np.empty + fill",
)

"""The Python API behind the CLI: visualise or compare layers of any ``torch.nn.Module``."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .compare import compare_layer
from .errors import VizError
from .inputs import Preprocess, check_readable, collect_images, load_image, original_preprocess
from .layers import capture_features, resolve_layer
from .render import BYTES_PER_CHUNK_PIXEL, MIN_PANEL_PX, RenderOptions, channels_per_chunk, render_layer, sheet_tile_size
from .paths import unique_components
from .staging import OutputStaging

DEFAULT_LAYERS = ("layer4",)
DEFAULT_OUT_DIR = "viz-out"
#: Sub-directory of the output directory that holds comparisons.
COMPARE_DIR = "compare"


#: Default limit on what one run may write: an upper bound (images counted uncompressed), so a
#: run under it always fits; the default job (ResNet-50 layer4, 8x: about 15 MB) is estimated at 27 MB.
DEFAULT_MAX_OUTPUT_GB = 4.0
#: Upper bounds of the bytes per pixel of a written image: an 8-bit palette PNG (zlib never
#: grows data by more than a few bytes per block), an RGB JPEG at quality 95 and an RGB PNG.
PALETTE_PNG_BYTES_PER_PIXEL = 1.0
JPEG_BYTES_PER_PIXEL = 3.0
RGB_BYTES_PER_PIXEL = 3.0
#: Headers and palette of each file, and the manifest's lines per channel.
FILE_OVERHEAD_BYTES = 2048
MANIFEST_BYTES_PER_CHANNEL = 200
#: Memory per output pixel of the summaries: the float64 sum and mean maps, the float32 max
#: map, the normalisation's float64 scratch and the index image; and of a comparison: the two
#: float64 sum maps, their difference, the scratch and the RGB panels of the figure.
SUMMARY_BYTES_PER_PIXEL = 40
COMPARE_BYTES_PER_PIXEL = 80
GB = 1e9


@dataclass(frozen=True)
class Limits:
    """What a run may use, checked after the first forward pass and before anything is rendered.

    ``max_output_gb``: the most it may write (estimated from above); ``max_memory_gb``: the
    most memory rendering may need (None: the memory available when the check runs).
    """

    max_output_gb: float = DEFAULT_MAX_OUTPUT_GB
    max_memory_gb: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_output_gb", "max_memory_gb"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise VizError(f"--{name.replace('_', '-')} must be a number > 0, got {value}")

    def memory_bytes(self) -> float:
        return available_memory_bytes() if self.max_memory_gb is None else self.max_memory_gb * GB


def available_memory_bytes() -> float:
    """Memory the system can give this process now without swapping (Linux: MemAvailable)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


@dataclass(frozen=True)
class JobEstimate:
    """Upper estimates for one (image, layer) job: bytes written and peak memory of rendering."""

    job: str
    size: tuple[int, int]
    channels: int
    output_bytes: float
    memory_bytes: float


def render_estimate(job: str, feature_shape: Sequence[int], options: RenderOptions, input_hw: tuple[int, int]) -> JobEstimate:
    """What :func:`viz.render.render_layer` will write and need for (C, h, w) feature maps."""
    count, height, width = feature_shape
    size = options.output_size((height, width), input_hw)
    pixels = float(size[0]) * size[1]
    per_pixel = PALETTE_PNG_BYTES_PER_PIXEL if options.image_format == "png" else JPEG_BYTES_PER_PIXEL
    tile = sheet_tile_size(size)
    sheet_pixels = (min(options.top_k, count) * tile[0] * tile[1] + MIN_PANEL_PX**2) * 4  # tiles, gaps, zoom
    written = (
        (count + 3) * (pixels * per_pixel + FILE_OVERHEAD_BYTES)  # channels and sum/mean/max
        + (sheet_pixels + input_hw[0] * input_hw[1]) * RGB_BYTES_PER_PIXEL  # sheet and overlay
        + count * MANIFEST_BYTES_PER_CHANNEL
    )
    chunk = min(count, channels_per_chunk(size, options.chunk_mb)) * BYTES_PER_CHUNK_PIXEL * pixels
    memory = chunk * (2 if options.norm == "percentile" else 1) + SUMMARY_BYTES_PER_PIXEL * pixels + 4.0 * count * height * width
    return JobEstimate(job, size, count, written, memory)


def compare_estimate(job: str, feature_shape: Sequence[int], options: RenderOptions) -> JobEstimate:
    """What :func:`viz.compare.compare_layer` will write and need for (C, h, w) feature maps."""
    count, height, width = feature_shape
    size = options.output_size((height, width), None)
    pixels = max(float(size[0]) * size[1], MIN_PANEL_PX**2)
    tile = sheet_tile_size(size)
    sheet_pixels = min(options.top_k, count) * tile[0] * tile[1] * 4
    written = pixels * (3 * PALETTE_PNG_BYTES_PER_PIXEL + 4 * RGB_BYTES_PER_PIXEL) + sheet_pixels * 6 + 8 * FILE_OVERHEAD_BYTES
    return JobEstimate(job, size, count, written, COMPARE_BYTES_PER_PIXEL * pixels + 8.0 * count * height * width)


def check_limits(estimates: Sequence[JobEstimate], limits: Limits, *, repeats: int = 1, before: float = 0.0) -> float:
    """Refuse (:class:`VizError`, one line with the figures) a run past ``limits``.

    ``estimates``: the jobs of one image; ``repeats``: how many images (this one included) are
    expected to give the same jobs; ``before``: the estimated bytes of the images already
    rendered. Returns the estimated bytes written once this image is done.
    """
    total = before + repeats * sum(e.output_bytes for e in estimates)
    largest = max(estimates, key=lambda e: e.output_bytes)
    if total > limits.max_output_gb * GB:
        raise VizError(
            f"this run would write up to {total / GB:.3g} GB (e.g. {largest.job}: {largest.channels} images of "
            f"{largest.size[0]}x{largest.size[1]}), more than --max-output-gb {limits.max_output_gb:g}; "
            "lower --scale or pick fewer layers/images, or raise --max-output-gb"
        )
    hungriest = max(estimates, key=lambda e: e.memory_bytes)
    allowed = limits.memory_bytes()
    if hungriest.memory_bytes > allowed:
        source = "available now" if limits.max_memory_gb is None else "allowed by --max-memory-gb"
        raise VizError(
            f"{hungriest.job} needs about {hungriest.memory_bytes / GB:.3g} GB of memory to render "
            f"{hungriest.size[0]}x{hungriest.size[1]} images, more than the {allowed / GB:.3g} GB {source}; "
            "lower --scale (or --chunk-mb), or raise --max-memory-gb"
        )
    return before + sum(e.output_bytes for e in estimates)


@dataclass
class LayerOutput:
    """Where one (image, layer) job was written and what its manifest says."""

    image: Path
    layer: str
    directory: Path
    manifest: dict[str, Any]


def check_device(device: str) -> str:
    """``device`` if torch can use it; a :class:`VizError` for CUDA without CUDA."""
    import torch

    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise VizError(f"--device must be cpu or cuda (or cuda:N), got {device!r}")
    if device != "cpu" and not torch.cuda.is_available():
        raise VizError(f"--device {device}: CUDA is not available here (torch.cuda.is_available() is False); use --device cpu")
    return device


def image_names(paths: Sequence[Path]) -> list[str]:
    """Output folder names: each image's stem made safe (:func:`viz.paths.safe_component`) and
    unique with -2, -3, ... where stems repeat."""
    return unique_components(path.stem for path in paths)


def feature_channels(layer: str, output: Any) -> np.ndarray:
    """The (C, h, w) float32 numpy maps of the first image of a layer's (N, C, h, w) output."""
    if output.ndim != 4:
        raise VizError(f"layer {layer!r} outputs shape {tuple(output.shape)}, not (N, C, H, W) feature maps")
    return output[0].float().cpu().numpy()


def _progress_bar(total: int, description: str, enabled: bool | None) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="ch", disable=None if enabled is None else not enabled)


@dataclass
class _Plan:
    """Validated inputs shared by :func:`visualize` and :func:`compare`."""

    paths: list[Path]
    names: list[str]
    layers: list[str]
    #: Directory name of each layer (layer names of a user's model may hold any character).
    layer_dirs: dict[str, str]


def _on_device(options: RenderOptions, device: str) -> RenderOptions:
    """Upsample where the model runs: fastinterp's GPU backend for a CUDA model."""
    return replace(options, resize_device=None if device == "cpu" else device)


def _plan(models: Sequence[Any], images: Sequence[Path | str], layers: Sequence[str], device: str) -> _Plan:
    check_device(device)
    if not layers:
        raise VizError("no layer given: name at least one (e.g. layer4)")
    paths = collect_images(images)
    if not paths:
        raise VizError("no image given")
    for path in paths:
        check_readable(path)
    canonical = [resolve_layer(models[0], layer) for layer in layers]
    for other in models[1:]:
        for layer in canonical:
            resolve_layer(other, layer)
    unique = list(dict.fromkeys(canonical))
    return _Plan(paths, image_names(paths), unique, dict(zip(unique, unique_components(unique))))


def _alike(plan: _Plan, preprocess: Preprocess, index: int) -> int:
    """How many images from ``index`` on give jobs of the same size: all of them when the
    preprocessing fixes the input size, else only this one."""
    return len(plan.paths) - index if preprocess.input_size else 1


def _batches(plan: _Plan, preprocess: Preprocess, device: str) -> Iterator[tuple[Path, str, Any]]:
    for path, name in zip(plan.paths, plan.names):
        yield path, name, preprocess(load_image(path)).to(device)


def visualize(
    model: Any,
    images: Sequence[Path | str],
    layers: Sequence[str] = DEFAULT_LAYERS,
    out_dir: Path | str = DEFAULT_OUT_DIR,
    *,
    options: RenderOptions | None = None,
    preprocess: Preprocess | None = None,
    device: str = "cpu",
    overwrite: bool = False,
    context: dict[str, Any] | None = None,
    progress: bool | None = None,
    limits: Limits | None = None,
) -> list[LayerOutput]:
    """Render every channel of ``layers`` of ``model`` for each image into ``out_dir/<image>/<layer>/``.

    ``images``: image files and folders. ``layers``: dotted names (``layer4``, ``layer4[-1]``).
    The model is moved to ``device`` and put in eval mode; one forward pass per image, under
    ``torch.inference_mode``, stopped after the last requested layer. Nothing is written
    unless the whole run succeeds; existing output directories are an error unless
    ``overwrite``. ``context`` (e.g. model name and weights) is added to every manifest.
    ``progress``: a tqdm bar (None: only on a terminal). ``limits``: the most the run may
    write and the memory it may need, checked (:func:`check_limits`) right after the first
    forward pass, before anything is rendered (default :class:`Limits`).
    """
    options = _on_device(options or RenderOptions(), device)
    preprocess = preprocess or original_preprocess()
    plan = _plan([model], images, layers, device)
    model = model.to(device).eval()
    context = {"model": type(model).__name__, **(context or {})}
    results = []
    with OutputStaging(out_dir, overwrite=overwrite) as staging:
        targets = {(n, layer): staging.claim(Path(n) / plan.layer_dirs[layer]) for n in plan.names for layer in plan.layers}
        planned = 0.0
        for index, (path, name, batch) in enumerate(_batches(plan, preprocess, device)):
            captured = capture_features(model, batch, plan.layers)
            shown = preprocess.display_image(batch)
            maps = {layer: feature_channels(layer, captured[layer]) for layer in plan.layers}
            estimates = [render_estimate(f"{name}/{layer}", maps[layer].shape, options, shown.shape[:2]) for layer in plan.layers]
            planned = check_limits(estimates, limits or Limits(), repeats=_alike(plan, preprocess, index), before=planned)
            for layer in plan.layers:
                features = maps.pop(layer)
                job = {**context, "image": str(path), "input_shape": list(batch.shape),
                       "preprocess": preprocess.description, "layer": layer, "device": device}
                with _progress_bar(len(features), f"{name}/{layer}", progress) as bar:
                    manifest = render_layer(features, targets[name, layer], options, image=shown, context=job, progress=bar.update)
                results.append(LayerOutput(path, layer, staging.out_dir / name / plan.layer_dirs[layer], manifest))
    return results


def compare(
    model_a: Any,
    model_b: Any,
    images: Sequence[Path | str],
    layers: Sequence[str] = DEFAULT_LAYERS,
    out_dir: Path | str = DEFAULT_OUT_DIR,
    *,
    labels: tuple[str, str] = ("A", "B"),
    options: RenderOptions | None = None,
    preprocess: Preprocess | None = None,
    device: str = "cpu",
    overwrite: bool = False,
    context: dict[str, Any] | None = None,
    limits: Limits | None = None,
) -> list[LayerOutput]:
    """Compare two models on the same images and layers, into ``out_dir/compare/<image>/<layer>/``.

    See :func:`viz.compare.compare_layer` for the files; the other arguments (``limits`` too)
    are as for :func:`visualize`.
    """
    options = _on_device(options or RenderOptions(), device)
    preprocess = preprocess or original_preprocess()
    plan = _plan([model_a, model_b], images, layers, device)
    model_a, model_b = model_a.to(device).eval(), model_b.to(device).eval()
    results = []
    with OutputStaging(out_dir, overwrite=overwrite) as staging:
        targets = {
            (n, layer): staging.claim(Path(COMPARE_DIR) / n / plan.layer_dirs[layer]) for n in plan.names for layer in plan.layers
        }
        planned = 0.0
        for index, (path, name, batch) in enumerate(_batches(plan, preprocess, device)):
            captured_a = capture_features(model_a, batch, plan.layers)
            captured_b = capture_features(model_b, batch, plan.layers)
            maps = {layer: (feature_channels(layer, captured_a[layer]), feature_channels(layer, captured_b[layer])) for layer in plan.layers}
            estimates = [compare_estimate(f"{COMPARE_DIR}/{name}/{layer}", maps[layer][0].shape, options) for layer in plan.layers]
            planned = check_limits(estimates, limits or Limits(), repeats=_alike(plan, preprocess, index), before=planned)
            for layer in plan.layers:
                job = {**(context or {}), "image": str(path), "layer": layer, "preprocess": preprocess.description}
                manifest = compare_layer(
                    *maps.pop(layer),
                    targets[name, layer],
                    options,
                    labels=labels,
                    context=job,
                )
                results.append(LayerOutput(path, layer, staging.out_dir / COMPARE_DIR / name / plan.layer_dirs[layer], manifest))
    return results

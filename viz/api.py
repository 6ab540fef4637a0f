"""The Python API behind the CLI: visualise or compare layers of any ``torch.nn.Module``."""

from __future__ import annotations

import math
import os
import threading
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .compare import compare_layer
from .errors import VizError
from .inputs import Preprocess, check_readable, collect_images, load_image, original_preprocess
from .layers import default_layer, resolve_layer
from .gradcam import layer_maps, write_gradcam
from .render import BYTES_PER_CHUNK_PIXEL, MIN_PANEL_PX, RenderOptions, channels_per_chunk, render_layer, sheet_tile_size
from .paths import unique_components
from .staging import OutputStaging

DEFAULT_OUT_DIR = "viz-out"
#: Images per forward pass.
DEFAULT_BATCH_SIZE = 8
#: Sub-directory of the output directory that holds comparisons.
COMPARE_DIR = "compare"


#: Default limit on what one run may write: an upper bound (images counted uncompressed), so a
#: run under it always fits; the default job (ResNet-50 layer4, 8x: about 7 MB as a page of channel tiles) is estimated at 27 MB.
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
    channel_pixels = float(size[0]) * size[1]
    pixels = max(channel_pixels, MIN_PANEL_PX**2)
    tile = sheet_tile_size(size)
    sheet_pixels = min(options.top_k, count) * tile[0] * tile[1] * 4
    per_pixel = PALETTE_PNG_BYTES_PER_PIXEL if options.image_format == "png" else JPEG_BYTES_PER_PIXEL
    written = (
        pixels * (3 * PALETTE_PNG_BYTES_PER_PIXEL + 4 * RGB_BYTES_PER_PIXEL) + sheet_pixels * 6 + 8 * FILE_OVERHEAD_BYTES
        + 3 * count * (channel_pixels * per_pixel + FILE_OVERHEAD_BYTES)  # channels of A, of B and of A - B
        + count * MANIFEST_BYTES_PER_CHANNEL
    )
    chunk = min(count, channels_per_chunk(size, options.chunk_mb)) * BYTES_PER_CHUNK_PIXEL * channel_pixels
    return JobEstimate(job, size, count, written, chunk + COMPARE_BYTES_PER_PIXEL * pixels + 8.0 * count * height * width)


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

    index = device[len("cuda:"):] if device.startswith("cuda:") else None
    if device not in ("cpu", "cuda") and not (index is not None and index.isascii() and index.isdigit()):
        raise VizError(f"--device must be cpu or cuda (or cuda:N), got {device!r}")
    if device != "cpu" and not torch.cuda.is_available():
        raise VizError(f"--device {device}: CUDA is not available here (torch.cuda.is_available() is False); use --device cpu")
    if index is not None and int(index) >= torch.cuda.device_count():
        raise VizError(f"--device {device}: there are {torch.cuda.device_count()} CUDA devices (cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    return device


def image_names(paths: Sequence[Path]) -> list[str]:
    """Output folder names: each image's stem made safe (:func:`viz.paths.safe_component`) and
    unique with -2, -3, ... where stems repeat."""
    return unique_components(path.stem for path in paths)


class VizWarning(UserWarning):
    """Something the user should know about a run that still goes on (the CLI prints it as one line)."""


class RunProgress:
    """One progress display for a whole run: the stage (import, model, weights, forward, render)
    as its description, the channels rendered as its count, the total added as it becomes known.

    ``enabled``: None shows it only on a terminal (tqdm's rule). Thread-safe (writer threads count).
    """

    def __init__(self, enabled: bool | None = None, unit: str = "ch", file: Any = None) -> None:
        from tqdm import tqdm

        self._lock = threading.Lock()
        self.bar = tqdm(total=None, unit=unit, disable=None if enabled is None else not enabled, dynamic_ncols=True, file=file)

    def stage(self, text: str) -> None:
        with self._lock:
            self.bar.set_description_str(text)

    def expect(self, count: int) -> None:
        """``count`` more units of work are now known."""
        with self._lock:
            self.bar.total = (self.bar.total or 0) + count
            self.bar.refresh()

    def update(self, count: int) -> None:
        with self._lock:
            self.bar.update(count)

    def close(self) -> None:
        with self._lock:
            self.bar.close()


def _progress(progress: bool | None | RunProgress, unit: str = "ch") -> tuple[RunProgress, bool]:
    """The run's display (a given one, or a new one) and whether this call owns (closes) it."""
    if isinstance(progress, RunProgress):
        return progress, False
    return RunProgress(progress, unit), True


@dataclass
class _Plan:
    """Validated inputs shared by :func:`visualize` and :func:`compare`."""

    paths: list[Path]
    names: list[str]
    layers: list[str]
    #: The folder of each (image, layer) job for visualize and for compare.
    model_dir: str | None

    def jobs(self, *, compare: bool = False) -> dict[tuple[str, str], Path]:
        return job_directories(self.names, self.layers, self.model_dir, compare=compare)


def _on_device(options: RenderOptions, device: str) -> RenderOptions:
    """Upsample where the model runs: fastinterp's GPU backend for a CUDA model."""
    return replace(options, resize_device=None if device == "cpu" else device)


def _plan(models: Sequence[Any], images: Sequence[Path | str], layers: Sequence[str] | None, device: str,
          preprocess: Preprocess, batch_size: int, model_dir: str | None) -> _Plan:
    check_device(device)
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise VizError(f"--batch-size must be an integer >= 1, got {batch_size}")
    if layers is not None and not layers:
        raise VizError("no layer given: name at least one (e.g. layer4), or leave it out for the default layer")
    paths = collect_images(images)
    if not paths:
        raise VizError("no image given")
    for path in paths:
        check_readable(path)
    if layers is None:  # the default layer, found on the first image as the model will see it
        layers = [default_layer(models[0], preprocess(load_image(paths[0])).to(device))]
    canonical = [resolve_layer(models[0], layer) for layer in layers]
    for other in models[1:]:
        for layer in canonical:
            resolve_layer(other, layer)
    return _Plan(paths, image_names(paths), list(dict.fromkeys(canonical)), model_dir)


def job_directories(names: Sequence[str], layers: Sequence[str], model_dir: str | None = None, *, compare: bool = False) -> dict[tuple[str, str], Path]:
    """(image folder name, canonical layer) -> the job's folder relative to the output directory:
    ``[compare/][<model_dir>/]<image>/<layer>``, every part made safe and unique."""
    layer_dirs = dict(zip(layers, unique_components(layers)))
    prefix = (Path(COMPARE_DIR) if compare else Path()) / (Path(*unique_components([model_dir])) if model_dir else Path())
    return {(name, layer): prefix / name / layer_dirs[layer] for name in names for layer in layers}


def check_not_there(out_dir: Path | str, relative_dirs: Sequence[Path], overwrite: bool) -> None:
    """The one-line "already exists" error of :class:`viz.staging.OutputStaging`, before any work."""
    if overwrite:
        return
    for relative in relative_dirs:
        final = Path(out_dir) / relative
        if final.exists() or final.is_symlink():
            raise VizError(f"{final} already exists; pass --overwrite to replace it, or choose another --out")


def _alike(plan: _Plan, preprocess: Preprocess, index: int) -> int:
    """How many images from ``index`` on give jobs of the same size: all of them when the
    preprocessing fixes the input size, else only this one."""
    return len(plan.paths) - index if preprocess.input_size else 1


def batch_sizes(count: int, batch_size: int) -> list[int]:
    """Sizes of the batches of ``count`` images, at most ``batch_size`` each: whole batches, then
    the last batch's images halved again and again (8 -> 4, 2, 1, 1). Each batch is rendered
    while the next one runs through the model, so only the last batch's rendering is left
    after the last forward pass: a last batch of one image leaves the least."""
    sizes = [batch_size] * ((count - 1) // batch_size) if count else []
    left = count - sum(sizes)
    while left > 1:
        sizes.append((left + 1) // 2)
        left -= sizes[-1]
    return sizes + [left] * left


def _batches(plan: _Plan, preprocess: Preprocess, device: str, batch_size: int, dtype: Any) -> Iterator[tuple[int, Any]]:
    """(index of the first image, (n, 3, H, W) batch) in order (sizes: :func:`batch_sizes`);
    images of a size that is not fixed by the preprocessing go one at a time (they cannot be
    stacked)."""
    import torch

    first = 0
    for size in batch_sizes(len(plan.paths), batch_size if preprocess.input_size else 1):
        tensors = [preprocess(load_image(path)) for path in plan.paths[first : first + size]]
        yield first, torch.cat(tensors).to(device=device, dtype=dtype)
        first += size


def _input_dtype(model: Any) -> Any:
    """The floating dtype of the model's parameters (float32 if it has none), for its input."""
    import torch

    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def _write_index(out_dir: Path) -> Path | None:
    """The explorer page of ``out_dir`` refreshed; a failure is a warning, never the job's loss."""
    try:
        from .explorer import write_index

        return write_index(out_dir)
    except Exception as exc:  # the job's output is committed already: keep it whatever the page does
        warnings.warn(VizWarning(f"the explorer page of {out_dir} was not updated: {exc}"), stacklevel=3)
        return None


def _blank_gradcam(cam: np.ndarray, layer: str) -> None:
    if not cam.any():
        warnings.warn(VizWarning(
            f"Grad-CAM of {layer} is blank: the class score's gradient is zero there (e.g. torchvision's ViT "
            "with random weights, whose head starts at zero)"), stacklevel=3)


@dataclass
class _BatchJob:
    """One forward pass's results, to be rendered into the staged job folders."""

    plan: _Plan
    first: int
    batch: Any
    found: Any
    targets: dict[tuple[str, str], Path]
    finals: dict[tuple[str, str], Path]


def _render_batch(job: _BatchJob, options: RenderOptions, preprocess: Preprocess, context: dict[str, Any], device: str,
                  class_names: Sequence[str] | None, display: RunProgress, results: list[LayerOutput]) -> None:
    """Every (image, layer) job of one batch: its Grad-CAM files, then :func:`viz.render.render_layer`."""
    plan, found, batch = job.plan, job.found, job.batch
    for offset in range(len(batch)):
        index = job.first + offset
        path, name = plan.paths[index], plan.names[index]
        shown = preprocess.display_image(batch[offset : offset + 1])
        for layer in plan.layers:
            display.stage(f"render {name}/{layer}")
            target = job.targets[name, layer]
            extra, extra_files = {}, []
            if found.cams is not None:
                cam = found.cams[layer]
                chosen = int(cam.class_index[offset])
                entry = write_gradcam(
                    cam.cam[offset], target, options, class_index=chosen, score=float(cam.score[offset]), image=shown,
                    class_name=class_names[chosen] if class_names is not None and chosen < len(class_names) else None,
                )
                extra, extra_files = {"gradcam": entry}, [entry["file"], *([entry["overlay"]] if entry["overlay"] else [])]
            context_of_job = {**context, "image": str(path), "input_shape": [1, *batch.shape[1:]],
                              "preprocess": preprocess.description, "layer": layer, "device": device}
            manifest = render_layer(found.maps[layer][offset].numpy(), target, options, image=shown, context=context_of_job,
                                    progress=display.update, extra=extra, extra_files=extra_files)
            results.append(LayerOutput(path, layer, job.finals[name, layer], manifest))


def visualize(
    model: Any,
    images: Sequence[Path | str],
    layers: Sequence[str] | None = None,
    out_dir: Path | str = DEFAULT_OUT_DIR,
    *,
    options: RenderOptions | None = None,
    preprocess: Preprocess | None = None,
    device: str = "cpu",
    overwrite: bool = False,
    context: dict[str, Any] | None = None,
    progress: bool | None | RunProgress = None,
    limits: Limits | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    gradcam: bool | None = None,
    target_class: int | None = None,
    class_names: Sequence[str] | None = None,
    model_dir: str | None = None,
) -> list[LayerOutput]:
    """Render every channel of ``layers`` of ``model`` for each image into ``out_dir/[model_dir/]<image>/<layer>/``.

    ``images``: image files and folders. ``layers``: dotted names (``layer4``, ``layer4[-1]``);
    None: the default layer (:func:`viz.layers.default_layer`: the deepest spatial map the
    prediction depends on). The model is moved to ``device`` and put in eval mode; images go
    through it at most ``batch_size`` at a time (:func:`batch_sizes`), one whole forward pass per batch (a module that runs
    more than once is refused). Each job also gets a Grad-CAM (``gradcam.png``, its overlay and
    a ``gradcam`` manifest entry) of ``target_class`` (None: the predicted class; its name from
    ``class_names``): with ``gradcam=None`` when the model outputs class scores (N, classes),
    with True always (an error for a model without scores), with False never. Nothing is written unless the whole run
    succeeds; existing output directories are an error unless ``overwrite``. ``context`` (e.g.
    model name and weights) is added to every manifest. ``progress``: a display (None: only on
    a terminal; or a :class:`RunProgress` shared with the caller). ``limits``: the most the run
    may write and the memory it may need, checked (:func:`check_limits`) right after the first
    forward pass, before anything is rendered (default :class:`Limits`). ``model_dir``: a
    folder for this model under ``out_dir`` (the CLI passes the model's name, so that several
    models share one ``out_dir``). At the end the explorer page ``out_dir/index.html`` is
    refreshed (:func:`viz.explorer.write_index`).

    Batches give the same files as one image at a time up to the float rounding of torch's
    kernels, which may sum in another order for another batch size (bit-identical where the
    kernels are, e.g. float64 convolutions on the CPU; ``batch_size=1`` otherwise).
    """
    options = _on_device(options or RenderOptions(), device)
    preprocess = preprocess or original_preprocess()
    model = model.to(device).eval()
    display, owned = _progress(progress)
    try:
        display.stage("finding the default layer" if layers is None else "checking")
        plan = _plan([model], images, layers, device, preprocess, batch_size, model_dir)
        context = {"model": type(model).__name__, **(context or {})}
        results: list[LayerOutput] = []
        blank: set[str] = set()
        with OutputStaging(out_dir, overwrite=overwrite) as staging:
            jobs = plan.jobs()
            targets = {job: staging.claim(relative) for job, relative in jobs.items()}
            finals = {job: staging.out_dir / relative for job, relative in jobs.items()}
            planned = 0.0
            # Batch k is rendered on this thread while batch k + 1 runs through the model (torch,
            # numba and zlib release the GIL): at most two batches of maps are held at once.
            renderer = ThreadPoolExecutor(1, thread_name_prefix="viz-render")
            rendering: Future[None] | None = None
            try:
                for first, batch in _batches(plan, preprocess, device, batch_size, _input_dtype(model)):
                    last = first + len(batch)
                    display.stage(f"forward {first + 1}-{last}/{len(plan.paths)}" if len(batch) > 1 else f"forward {last}/{len(plan.paths)}")
                    found = layer_maps(model, batch, plan.layers, cams=gradcam, target_class=target_class)
                    if first == 0:
                        display.expect(len(plan.paths) * sum(found.maps[layer].shape[1] for layer in plan.layers))
                    for index in range(first, last):  # what can fail is checked before the batch is rendered
                        estimates = [render_estimate(f"{plan.names[index]}/{layer}", found.maps[layer].shape[1:], options,
                                                     tuple(batch.shape[-2:])) for layer in plan.layers]
                        planned = check_limits(estimates, limits or Limits(), repeats=_alike(plan, preprocess, index), before=planned)
                        for layer, cam in (found.cams or {}).items():
                            if layer not in blank and not cam.cam[index - first].any():
                                blank.add(layer)
                                _blank_gradcam(cam.cam[index - first], layer)
                    if rendering is not None:
                        rendering.result()
                    rendering = renderer.submit(_render_batch, _BatchJob(plan, first, batch, found, targets, finals), options,
                                                preprocess, context, device, class_names, display, results)
                if rendering is not None:
                    rendering.result()
            finally:
                renderer.shutdown(wait=True, cancel_futures=True)  # the staging folder goes only once nothing writes to it
        display.stage("explorer page")
        _write_index(Path(out_dir))
        display.stage("done")
    finally:
        if owned:
            display.close()
    return results


def same_weights(model_a: Any, model_b: Any) -> bool:
    """The two models have the same architecture and equal parameters and buffers."""
    import torch

    if type(model_a) is not type(model_b):
        return False
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    return state_a.keys() == state_b.keys() and all(
        state_a[k].shape == state_b[k].shape and torch.equal(state_a[k].cpu(), state_b[k].cpu()) for k in state_a
    )


def compare(
    model_a: Any,
    model_b: Any,
    images: Sequence[Path | str],
    layers: Sequence[str] | None = None,
    out_dir: Path | str = DEFAULT_OUT_DIR,
    *,
    labels: tuple[str, str] = ("A", "B"),
    options: RenderOptions | None = None,
    preprocess: Preprocess | None = None,
    device: str = "cpu",
    overwrite: bool = False,
    context: dict[str, Any] | None = None,
    limits: Limits | None = None,
    progress: bool | None | RunProgress = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    model_dir: str | None = None,
) -> list[LayerOutput]:
    """Compare two models on the same images and layers, into ``out_dir/compare/[model_dir/]<image>/<layer>/``.

    See :func:`viz.compare.compare_layer` for the files; the other arguments are as for
    :func:`visualize` (layers None: model A's default layer). Two models with the same weights
    (a comparison that can only show a blank difference, e.g. ``--compare none`` against
    ImageNet weights that fell back to the same random ones) give a :class:`VizWarning` and
    ``"identical_weights": true`` in each manifest.
    """
    options = _on_device(options or RenderOptions(), device)
    preprocess = preprocess or original_preprocess()
    model_a, model_b = model_a.to(device).eval(), model_b.to(device).eval()
    display, owned = _progress(progress, "job")
    try:
        display.stage("checking")
        plan = _plan([model_a, model_b], images, layers, device, preprocess, batch_size, model_dir)
        identical = same_weights(model_a, model_b)
        if identical:
            warnings.warn(VizWarning(
                f"A ({labels[0]}) and B ({labels[1]}) have IDENTICAL weights: the comparison can only show a blank "
                "difference"), stacklevel=2)
        results = []
        with OutputStaging(out_dir, overwrite=overwrite) as staging:
            jobs = plan.jobs(compare=True)
            targets = {job: staging.claim(relative) for job, relative in jobs.items()}
            display.expect(len(targets))
            planned = 0.0
            for first, batch in _batches(plan, preprocess, device, batch_size, _input_dtype(model_a)):
                display.stage(f"forward {first + 1}-{first + len(batch)}/{len(plan.paths)}")
                maps_a = layer_maps(model_a, batch, plan.layers, cams=False).maps
                maps_b = layer_maps(model_b, batch.to(_input_dtype(model_b)), plan.layers, cams=False).maps
                for offset in range(len(batch)):
                    index = first + offset
                    path, name = plan.paths[index], plan.names[index]
                    maps = {layer: (maps_a[layer][offset].numpy(), maps_b[layer][offset].numpy()) for layer in plan.layers}
                    estimates = [compare_estimate(f"{COMPARE_DIR}/{name}/{layer}", maps[layer][0].shape, options) for layer in plan.layers]
                    planned = check_limits(estimates, limits or Limits(), repeats=_alike(plan, preprocess, index), before=planned)
                    for layer in plan.layers:
                        display.stage(f"compare {name}/{layer}")
                        job = {**(context or {}), "image": str(path), "layer": layer, "preprocess": preprocess.description,
                               "identical_weights": identical}
                        manifest = compare_layer(*maps.pop(layer), targets[name, layer], options, labels=labels, context=job)
                        display.update(1)
                        results.append(LayerOutput(path, layer, staging.out_dir / jobs[name, layer], manifest))
        display.stage("explorer page")
        _write_index(Path(out_dir))
        display.stage("done")
    finally:
        if owned:
            display.close()
    return results

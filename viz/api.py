"""The Python API behind the CLI: visualise or compare layers of any ``torch.nn.Module``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .compare import compare_layer
from .errors import VizError
from .inputs import Preprocess, check_readable, collect_images, load_image, original_preprocess
from .layers import capture_features, resolve_layer
from .render import RenderOptions, render_layer
from .paths import unique_components
from .staging import OutputStaging

DEFAULT_LAYERS = ("layer4",)
DEFAULT_OUT_DIR = "viz-out"
#: Sub-directory of the output directory that holds comparisons.
COMPARE_DIR = "compare"


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
) -> list[LayerOutput]:
    """Render every channel of ``layers`` of ``model`` for each image into ``out_dir/<image>/<layer>/``.

    ``images``: image files and folders. ``layers``: dotted names (``layer4``, ``layer4[-1]``).
    The model is moved to ``device`` and put in eval mode; one forward pass per image, under
    ``torch.inference_mode``, stopped after the last requested layer. Nothing is written
    unless the whole run succeeds; existing output directories are an error unless
    ``overwrite``. ``context`` (e.g. model name and weights) is added to every manifest.
    ``progress``: a tqdm bar (None: only on a terminal).
    """
    options = _on_device(options or RenderOptions(), device)
    preprocess = preprocess or original_preprocess()
    plan = _plan([model], images, layers, device)
    model = model.to(device).eval()
    context = {"model": type(model).__name__, **(context or {})}
    results = []
    with OutputStaging(out_dir, overwrite=overwrite) as staging:
        targets = {(n, layer): staging.claim(Path(n) / plan.layer_dirs[layer]) for n in plan.names for layer in plan.layers}
        for path, name, batch in _batches(plan, preprocess, device):
            captured = capture_features(model, batch, plan.layers)
            shown = preprocess.display_image(batch)
            for layer in plan.layers:
                features = feature_channels(layer, captured[layer])
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
) -> list[LayerOutput]:
    """Compare two models on the same images and layers, into ``out_dir/compare/<image>/<layer>/``.

    See :func:`viz.compare.compare_layer` for the files; the other arguments are as for
    :func:`visualize`.
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
        for path, name, batch in _batches(plan, preprocess, device):
            captured_a = capture_features(model_a, batch, plan.layers)
            captured_b = capture_features(model_b, batch, plan.layers)
            for layer in plan.layers:
                job = {**(context or {}), "image": str(path), "layer": layer, "preprocess": preprocess.description}
                manifest = compare_layer(
                    feature_channels(layer, captured_a[layer]),
                    feature_channels(layer, captured_b[layer]),
                    targets[name, layer],
                    options,
                    labels=labels,
                    context=job,
                )
                results.append(LayerOutput(path, layer, staging.out_dir / COMPARE_DIR / name / plan.layer_dirs[layer], manifest))
    return results

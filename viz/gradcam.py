"""Grad-CAM (Selvaraju et al., 2017) of any drawable layer: CNN maps, channels-last stages, ViT tokens.

For each image: the layer's (C, h, w) maps (read by :mod:`viz.tokens`), each channel weighted
by the mean over the map of the gradient of the target class score, summed over channels,
ReLU. The target is the predicted class unless one is given. The model runs in eval mode
(each module's mode restored afterwards), so a batch gives the same maps as its images one at
a time. Where the score's gradient is zero everywhere (torchvision's ViT with random weights:
its head starts at zero) the map is zero; a layer the score is not computed from is an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from .errors import VizError
from .layers import eval_mode, resolve_layer
from .render import RenderOptions, colormap_lut, overlay, upsample, write_map, write_rgb
from .tokens import MapReader

#: Files :func:`write_gradcam` adds to a layer's folder (the map takes the channel images' format).
GRADCAM_STEM = "gradcam"
GRADCAM_OVERLAY = "gradcam_overlay.png"


class GradCam(NamedTuple):
    """Grad-CAM maps of a batch and the class each one explains."""

    cam: np.ndarray  # (N, h, w) float32, >= 0, at the layer's resolution
    class_index: np.ndarray  # (N,) int64
    score: np.ndarray  # (N,) float32: the class's score (the model's output, e.g. a logit)


def _scores(result: Any) -> Any:
    import torch

    if isinstance(result, (tuple, list)) and result:
        result = result[0]
    if not isinstance(result, torch.Tensor) or result.ndim != 2:
        shape = tuple(result.shape) if isinstance(result, torch.Tensor) else type(result).__name__
        raise VizError(f"Grad-CAM needs class scores of shape (N, classes) from the model, got {shape}")
    return result


def _is_scores(result: Any) -> bool:
    """The model's output is (N, classes) scores (or a tuple that starts with them)."""
    try:
        _scores(result)
    except VizError:
        return False
    return True


def _target_classes(scores: Any, target_class: int | None) -> Any:
    """(N,) class indices: each image's top score, or ``target_class`` checked against the scores."""
    import torch

    classes = scores.shape[1]
    if target_class is None:
        return scores.detach().argmax(1)
    if not 0 <= target_class < classes:
        raise VizError(f"target class {target_class} is out of range: the model has {classes} classes (0..{classes - 1})")
    return torch.full((scores.shape[0],), target_class, dtype=torch.long, device=scores.device)


class LayerMaps(NamedTuple):
    """What one forward pass gives for the drawn layers of a batch."""

    maps: dict[str, Any]  # canonical layer name -> (N, C, h, w) float32 CPU tensor
    cams: dict[str, GradCam] | None  # Grad-CAM of each layer, when asked for


def _reuse_error(name: str, calls: int) -> VizError:
    return VizError(
        f"layer {name!r} ran {calls} times in one forward pass (a module the model reuses, e.g. one ReLU "
        "for several places): its calls cannot be told apart, so it is not drawn; pick a layer that runs "
        "once, such as the block around it (see --list-layers)"
    )


def layer_maps(
    model: Any, x: Any, layers: Sequence[str], *, cams: bool | None = True, target_class: int | None = None,
    keep_device: bool = False,
) -> LayerMaps:
    """One forward pass of the (N, 3, H, W) batch ``x``: the maps of ``layers`` (read by
    :mod:`viz.tokens`) and, with ``cams``, their Grad-CAM from one backward pass.

    The model runs in eval mode (each module's mode restored) and whole, so a module that runs
    more than once is found and refused. Autograd records only from the first drawn layer on
    (its output becomes the graph's leaf), so the cost is one forward pass plus a backward
    through the layers after it. ``cams=None``: Grad-CAM only if the model's output is class
    scores (N, classes), else ``cams`` is None. ``target_class``: as in :func:`gradcam`. ``keep_device``: the
    maps stay where the model made them (e.g. shapes from torch's meta device), in its dtype.
    """
    import torch

    names = list(dict.fromkeys(resolve_layer(model, layer) for layer in layers))
    modules = dict(model.named_modules())
    outputs: dict[str, Any] = {}
    calls = dict.fromkeys(names, 0)
    graph = cams is not False  # autograd records from the first drawn layer on

    def make_hook(name: str) -> Any:
        def hook(_module: Any, _inputs: Any, output: Any) -> Any:
            calls[name] += 1
            tensor = output[0] if isinstance(output, (tuple, list)) and output else output
            if calls[name] > 1:
                return None
            if not isinstance(tensor, torch.Tensor):
                raise VizError(f"layer {name!r} returns {type(output).__name__}, not a tensor")
            if not graph:
                outputs[name] = tensor.detach().clone()  # later in-place operations must not change ours
                return None
            torch.set_grad_enabled(True)  # the graph starts at the first drawn layer: nothing before it is kept
            kept = tensor if tensor.requires_grad else tensor.detach().requires_grad_(tensor.is_floating_point())
            outputs[name] = kept
            # the rest of the model gets a copy, so its in-place operations leave ours intact
            if isinstance(output, torch.Tensor):
                return kept.clone()
            return type(output)((kept.clone(), *output[1:])) if type(output) in (tuple, list) else None

        return hook

    handles = [modules[name].register_forward_hook(make_hook(name)) for name in names]
    try:
        with eval_mode(model), torch.inference_mode(not graph), torch.no_grad():
            # a copy made here is an ordinary tensor even when the caller made x under inference_mode
            result = model(x.detach().clone() if graph else x)
    finally:
        for handle in handles:
            handle.remove()
    for name in names:
        if calls[name] > 1:
            raise _reuse_error(name, calls[name])
        if calls[name] == 0:
            raise VizError(f"layer {name!r} did not run during the forward pass")
    input_hw = tuple(x.shape[-2:])
    reader = MapReader(model)
    maps = {name: reader.maps(outputs[name], name, input_hw) for name in names}
    found = None
    if cams or (cams is None and _is_scores(result)):
        with torch.inference_mode(False), torch.enable_grad():  # even inside the caller's inference_mode
            found = _cams(result, outputs, maps, names, reader, input_hw, target_class)
    if not keep_device:
        maps = {name: m.detach().float().cpu() for name, m in maps.items()}
    return LayerMaps(maps, found)


def _cams(result: Any, outputs: dict[str, Any], maps: dict[str, Any], names: list[str], reader: MapReader,
          input_hw: tuple[int, int], target_class: int | None) -> dict[str, GradCam]:
    """Grad-CAM of every layer of ``names`` from one backward pass of the target scores."""
    import torch

    scores = _scores(result)
    chosen = _target_classes(scores, target_class)
    target = scores.gather(1, chosen[:, None])[:, 0]
    leaves = [outputs[name] for name in names]
    gradients: Sequence[Any] = [None] * len(names)
    if target.requires_grad:
        # each image's score depends on its own maps only (eval mode), so one backward serves the batch
        gradients = torch.autograd.grad(target.sum(), leaves, allow_unused=True)
    found = {}
    for name, gradient in zip(names, gradients):
        if gradient is None:
            raise VizError(f"the model's class scores do not depend on layer {name!r}: no Grad-CAM for it")
        weights = reader.maps(gradient, name, input_hw).mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((weights * maps[name].detach()).sum(dim=1))
        found[name] = GradCam(
            cam.float().cpu().numpy(), chosen.cpu().numpy().astype(np.int64), target.detach().float().cpu().numpy()
        )
    return found


def gradcam(model: Any, x: Any, layer: str, target_class: int | None = None) -> GradCam:
    """Grad-CAM of ``layer`` (dotted name) for the (N, 3, H, W) batch ``x``.

    ``target_class``: the class explained for every image; None: each image's predicted
    class. One forward and one backward pass; the model's parameters' ``.grad`` are untouched.
    """
    found = layer_maps(model, x, [layer], target_class=target_class).cams
    assert found is not None
    return next(iter(found.values()))


def write_gradcam(
    cam: np.ndarray,
    target: Path,
    options: RenderOptions,
    *,
    class_index: int,
    score: float,
    image: np.ndarray | None = None,
    class_name: str | None = None,
) -> dict[str, Any]:
    """Write one image's (h, w) Grad-CAM map into the existing folder ``target``; returns its manifest entry.

    ``gradcam.<format>``: the map upsampled with fastinterp to the channel images' size, on
    its own range. ``gradcam_overlay.png``: the map over ``image`` (the (H, W, 3) uint8 input
    as the network saw it), when given. File names are fixed, so nothing outside ``target``
    is written.
    """
    cam = np.asarray(cam, np.float32)
    if cam.ndim != 2:
        raise VizError(f"expected one (h, w) Grad-CAM map, got shape {cam.shape}")
    lut = colormap_lut(options.cmap)
    size = options.output_size(cam.shape, None if image is None else image.shape[:2])
    file = f"{GRADCAM_STEM}.{options.image_format}"
    lo, hi = write_map(target / file, upsample(cam, size, options.resize_device), lut)
    entry: dict[str, Any] = {
        "file": file,
        "class": int(class_index),
        "class_name": class_name,
        "score": float(score),
        "range": [lo, hi],
        "map_shape": list(cam.shape),
        "overlay": None,
    }
    if image is not None:
        write_rgb(target / GRADCAM_OVERLAY, overlay(image, cam, lut, options.alpha))
        entry["overlay"] = GRADCAM_OVERLAY
    return entry

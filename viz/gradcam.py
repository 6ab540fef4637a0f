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
from typing import Any, NamedTuple

import numpy as np

from .errors import VizError
from .layers import eval_mode, resolve_layer
from .render import RenderOptions, colormap_lut, overlay, upsample, write_map
from .tokens import to_spatial_maps

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


def _target_classes(scores: Any, target_class: int | None) -> Any:
    """(N,) class indices: each image's top score, or ``target_class`` checked against the scores."""
    import torch

    classes = scores.shape[1]
    if target_class is None:
        return scores.detach().argmax(1)
    if not 0 <= target_class < classes:
        raise VizError(f"target class {target_class} is out of range: the model has {classes} classes (0..{classes - 1})")
    return torch.full((scores.shape[0],), target_class, dtype=torch.long, device=scores.device)


def gradcam(model: Any, x: Any, layer: str, target_class: int | None = None) -> GradCam:
    """Grad-CAM of ``layer`` (dotted name) for the (N, 3, H, W) batch ``x``.

    ``target_class``: the class explained for every image; None: each image's predicted
    class. One forward and one backward pass; the model's parameters' ``.grad`` are untouched.
    """
    import torch

    name = resolve_layer(model, layer)
    module = dict(model.named_modules())[name]
    outputs: list[Any] = []

    def keep(_module: Any, _inputs: Any, output: Any) -> Any:
        tensor = output[0] if isinstance(output, (tuple, list)) else output
        outputs.append(tensor)
        if isinstance(output, torch.Tensor):
            # the rest of the model gets a copy, so its in-place operations leave ours intact
            return output.clone()
        return None

    handle = module.register_forward_hook(keep)
    # grad mode for the whole computation, even inside the caller's no_grad or inference_mode
    with eval_mode(model), torch.inference_mode(False), torch.enable_grad():
        try:
            # an input that needs gradients keeps a graph even when every parameter is frozen
            scores = _scores(model(x.detach().clone().requires_grad_(True)))
        finally:
            handle.remove()
        if len(outputs) != 1:
            raise VizError(
                f"layer {name!r} ran {len(outputs)} times in one forward pass"
                f"{' (a module the model reuses)' if outputs else ''}; Grad-CAM needs a layer that runs once"
            )
        chosen = _target_classes(scores, target_class)
        target = scores.gather(1, chosen[:, None])[:, 0]
        activation = outputs[0]
        input_hw = tuple(x.shape[-2:])
        maps = to_spatial_maps(activation, model, name, input_hw)
        # each image's score depends on its own maps only (eval mode), so one backward serves the batch
        (gradient,) = torch.autograd.grad(target.sum(), activation, allow_unused=True)
        if gradient is None:
            raise VizError(f"the model's class scores do not depend on layer {name!r}: no Grad-CAM for it")
        weights = to_spatial_maps(gradient, model, name, input_hw).mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((weights * maps).sum(dim=1))
    return GradCam(
        cam.detach().float().cpu().numpy(),
        chosen.cpu().numpy().astype(np.int64),
        target.detach().float().cpu().numpy(),
    )


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
        from PIL import Image

        Image.fromarray(overlay(image, cam, lut, options.alpha)).save(target / GRADCAM_OVERLAY)
        entry["overlay"] = GRADCAM_OVERLAY
    return entry

"""viz: feature maps of any layer of a PyTorch model, every channel, in seconds.

Python API::

    import viz
    viz.visualize(model, ["photo.jpg"], ["layer4", "layer3[-1]"], "viz-out")
    viz.compare(baseline, improved, ["photo.jpg"], ["layer4"], "viz-out", labels=("baseline", "new"))

    with viz.feature_hooks(model, ["layer1"]) as features:   # instead of editing forward()
        logits = model(batch)
    viz.visualize_feature_map(features["layer1"], "out/", "drone", BI)   # the original's drop-in

The command line (``python -m viz`` or ``fastinterp-viz``) is in :mod:`viz.cli`.
"""

from .api import LayerOutput, Limits, compare, visualize
from .dropin import visualize_feature_map
from .errors import VizError
from .inputs import Preprocess, original_preprocess, weights_preprocess
from .layers import capture_features, feature_hooks, layer_table, resolve_layer
from .render import RenderOptions, render_layer

__all__ = [
    "LayerOutput",
    "Limits",
    "Preprocess",
    "RenderOptions",
    "VizError",
    "capture_features",
    "compare",
    "feature_hooks",
    "layer_table",
    "original_preprocess",
    "render_layer",
    "resolve_layer",
    "visualize",
    "visualize_feature_map",
    "weights_preprocess",
]

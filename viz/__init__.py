"""viz: feature maps of any layer of a PyTorch model, every channel, in seconds.

Python API::

    import viz
    viz.visualize(model, ["photo.jpg"], ["layer4", "layer3[-1]"], "viz-out")   # layers None: the default layer
    viz.compare(baseline, improved, ["photo.jpg"], ["layer4"], "viz-out", labels=("baseline", "new"))

    with viz.feature_hooks(model, ["layer1"]) as features:   # instead of editing forward()
        logits = model(batch)
    viz.visualize_feature_map(features["layer1"], "out/", "drone", BI)   # the original's drop-in

The command line (``python -m viz`` or ``fastinterp-viz``) is in :mod:`viz.cli`.
"""

from .api import LayerOutput, Limits, RunProgress, VizWarning, compare, visualize
from .dropin import visualize_feature_map
from .errors import VizError
from .gradcam import GradCam, gradcam, layer_maps, write_gradcam
from .inputs import Preprocess, original_preprocess, weights_preprocess
from .layers import capture_features, default_layer, describe_layers, feature_hooks, format_layers, layer_table, resolve_layer
from .render import RenderOptions, render_layer
from .tokens import check_input_size, model_input_size, to_spatial_maps

# viz.scan's names; imported here so that ``viz.scan`` is the function (the module stays
# importable as ``import viz.scan``); it imports dask only when a cluster is asked for.
from .scan import ScanResult, load_scan, scan  # noqa: E402

__all__ = [
    "GradCam",
    "LayerOutput",
    "Limits",
    "Preprocess",
    "RenderOptions",
    "RunProgress",
    "ScanResult",
    "VizError",
    "VizWarning",
    "capture_features",
    "check_input_size",
    "compare",
    "default_layer",
    "describe_layers",
    "feature_hooks",
    "format_layers",
    "gradcam",
    "layer_maps",
    "layer_table",
    "load_scan",
    "model_input_size",
    "original_preprocess",
    "render_layer",
    "resolve_layer",
    "scan",
    "to_spatial_maps",
    "visualize",
    "visualize_feature_map",
    "weights_preprocess",
    "write_gradcam",
]

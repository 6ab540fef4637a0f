"""fastinterp: fast, correct bilinear resizing of images and CNN feature maps.

``import fastinterp`` loads numpy only; numba compiles (or loads from its cache) on the
first call, and torch is imported only for torch tensors.
"""

from ._api import resize
from ._dropin import BilinearInterpolation
from ._plan import MAX_OUTPUT_BYTES
from ._threads import get_num_threads, set_num_threads

__all__ = [
    "BilinearInterpolation",
    "MAX_OUTPUT_BYTES",
    "get_num_threads",
    "resize",
    "set_num_threads",
]
__version__ = "0.1.0"

"""Images in, model-ready tensors out: finding images, reading them, preprocessing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .errors import VizError

#: File name suffixes treated as images when a folder is given.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
#: The original script's preprocessing: 384x384 bicubic resize, ImageNet mean and std.
DEFAULT_INPUT_SIZE = 384
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_image() -> Path:
    """The built-in default input: Grace Hopper's portrait from matplotlib's sample data."""
    from matplotlib import cbook

    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def collect_images(paths: Sequence[Path | str]) -> list[Path]:
    """Expand the given files and folders (a folder's images, sorted by name) into image files."""
    images: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise VizError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            images.extend(found)
        elif path.is_file():
            images.append(path)
        else:
            raise VizError(f"cannot read image {path}: no such file or folder")
    return images


def check_readable(path: Path) -> None:
    """Fail early, before any work, on a file Pillow cannot identify as an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise VizError(f"cannot read image {path}: {_reason(exc)}") from None


def load_image(path: Path) -> Any:
    """The image at ``path`` decoded as an RGB ``PIL.Image``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise VizError(f"cannot read image {path}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return "not an image file Pillow can read"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the model's input, and how to undo the normalisation for display.

    ``transform`` maps an RGB ``PIL.Image`` to a normalised (3, H, W) float tensor;
    ``input_size`` is that (H, W) where it is fixed.
    """

    transform: Callable[[Any], Any]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: str
    input_size: tuple[int, int] | None = field(default=None)

    def __call__(self, image: Any) -> Any:
        """A (1, 3, H, W) batch of one image."""
        return self.transform(image).unsqueeze(0)

    def display_image(self, batch: Any) -> np.ndarray:
        """The network's view of the image (undoing mean/std) as an (H, W, 3) uint8 array."""
        pixels = batch[0].detach().float().cpu().numpy().transpose(1, 2, 0)
        pixels = pixels * np.asarray(self.std, np.float32) + np.asarray(self.mean, np.float32)
        return np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)


def original_preprocess(size: int = DEFAULT_INPUT_SIZE) -> Preprocess:
    """The original script's ``image_proprecess``: resize to size x size (bicubic), ImageNet mean/std."""
    from torchvision import transforms

    transform = transforms.Compose(
        [
            transforms.Resize((size, size), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    return Preprocess(
        transform, IMAGENET_MEAN, IMAGENET_STD, f"resize {size}x{size} bicubic, ImageNet mean/std", (size, size)
    )


def weights_preprocess(weights: Any) -> Preprocess:
    """The preprocessing a torchvision weights entry was trained with (``weights.transforms()``)."""
    transform = weights.transforms()
    mean = tuple(getattr(transform, "mean", IMAGENET_MEAN))
    std = tuple(getattr(transform, "std", IMAGENET_STD))
    crop = getattr(transform, "crop_size", None)
    size = (crop[0], crop[-1]) if crop else None
    return Preprocess(transform, mean, std, f"transforms of {weights}", size)

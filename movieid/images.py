"""Loading still images (cast reference photos) the way a user expects to see them."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .errors import MovieIdError
from .files import check_input_file

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def to_rgb8(image) -> np.ndarray:
    """A PIL image as RGB uint8. High-bit-depth modes (16-bit PNG and TIFF greyscale, 32-bit
    integer and float) are scaled into 0..255: PIL's own ``convert`` clips them, turning a
    16-bit photo white."""
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if image.mode == "F" and values.size and np.nanmax(values) <= 1.0:
            values = values * 255.0                     # float images are 0..1
        elif image.mode != "F":
            values = values / 257.0                     # 0..65535 -> 0..255
        grey = np.clip(np.nan_to_num(values), 0, 255).round().astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(image.convert("RGB"))


def load_rgb(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8 [H, W, 3], turned upright by its EXIF orientation."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    check_input_file(path, "image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image = ImageOps.exif_transpose(image)
                return to_rgb8(image)
    except UnidentifiedImageError:
        raise MovieIdError("not an image (unrecognised format or corrupt data)", path) from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise MovieIdError("image is too large to be a reference photo", path) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise MovieIdError(f"cannot read image ({exc})", path) from None

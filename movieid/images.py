"""Loading still images (cast reference photos) the way a user expects to see them."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .errors import MovieIdError
from .files import check_input_file

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


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
                return np.asarray(image.convert("RGB"))
    except UnidentifiedImageError:
        raise MovieIdError("not an image (unrecognised format or corrupt data)", path) from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise MovieIdError("image is too large to be a reference photo", path) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise MovieIdError(f"cannot read image ({exc})", path) from None

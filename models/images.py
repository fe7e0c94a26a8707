"""The project's one image loader: a path, PIL image or array -> upright RGB uint8 ``[H, W, 3]``.

Torch-free, shared by the faces path and the VLM. What it does beyond the usual
``Image.open(path).convert("RGB")``, and why:

- a path must be a regular, readable, non-empty file, checked before anything opens it (opening a
  named pipe blocks until someone writes to it);
- the EXIF orientation is applied (phones store portraits sideways, with a tag saying so);
- high-bit-depth images are *scaled* to 8 bits (``convert`` clips them: a 16-bit grey PNG turns white);
- transparent pixels are composited on white (``convert`` would show whatever colour hides under
  them, often black).

Every problem is one ``ImageError`` line that names the file.
"""
from __future__ import annotations

import errno
import os
import stat
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .errors import InputError

ImageSource = Union[str, os.PathLike, Image.Image, np.ndarray]
BACKGROUND = (255, 255, 255)  # under transparent pixels
_HIGH_BIT_DEPTH = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


class ImageError(InputError):
    """An image that cannot be read: missing, not a regular file, unreadable, not an image, too large."""


def load_rgb(source: ImageSource) -> np.ndarray:
    """``source`` as a C-contiguous ``[H, W, 3]`` uint8 RGB array, upright (EXIF applied)."""
    if isinstance(source, (str, os.PathLike)):
        return _load_file(Path(source))
    if isinstance(source, Image.Image):
        return _to_rgb(_upright(source))
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    raise ImageError(f"unsupported image type {type(source).__name__} (use a path, a PIL image or a numpy array)")


def check_image_file(path: Path) -> None:
    """Refuse, without opening it, anything that is not a regular, readable, non-empty file."""
    try:
        info = path.stat()
    except OSError as error:
        reason = {errno.ENOENT: "no such file", errno.ELOOP: "symlink loop", errno.EACCES: "permission denied",
                  errno.ENOTDIR: "no such file (a parent is not a folder)"}.get(error.errno)
        raise ImageError(reason or f"cannot access file ({error.strerror})", path) from None
    if not stat.S_ISREG(info.st_mode):
        kind = ("a folder" if stat.S_ISDIR(info.st_mode) else "a named pipe" if stat.S_ISFIFO(info.st_mode)
                else "a socket" if stat.S_ISSOCK(info.st_mode) else "a device")
        raise ImageError(f"not a regular file ({kind}), not an image", path)
    if info.st_size == 0:
        raise ImageError("empty file (0 bytes), not an image", path)
    if not os.access(path, os.R_OK):
        raise ImageError("permission denied", path)


def _load_file(path: Path) -> np.ndarray:
    check_image_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return _to_rgb(_upright(image))
    except PermissionError:
        raise ImageError("permission denied", path) from None
    except UnidentifiedImageError:
        raise ImageError("not an image (unrecognised format or corrupt data)", path) from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageError(f"image too large (more than {Image.MAX_IMAGE_PIXELS} pixels: "
                         "a decompression bomb?)", path) from None
    except ImageError as error:
        raise ImageError(error.problem, path) from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise ImageError(f"cannot read image ({error})", path) from None


def _upright(image: Image.Image) -> Image.Image:
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    return image if orientation == 1 else ImageOps.exif_transpose(image)


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode == "RGB":
        return np.asarray(image)
    if image.mode in _HIGH_BIT_DEPTH:
        grey = _scale_to_8_bits(np.asarray(image))
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=-1))
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        return np.asarray(Image.alpha_composite(Image.new("RGBA", rgba.size, BACKGROUND), rgba).convert("RGB"))
    try:
        return np.asarray(image.convert("RGB"))
    except ValueError as error:
        raise ImageError(f"unsupported image mode {image.mode} ({error})") from None


def _scale_to_8_bits(values: np.ndarray) -> np.ndarray:
    """16-bit and integer images by 255/65535 (rounded), floats in [0, 1] by 255; anything else
    (negative, beyond 16 bits, floats outside [0, 1]) stretched from its minimum to its maximum."""
    floating = values.dtype.kind == "f"
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    full_scale = 1.0 if floating else 65535.0
    if low < 0 or high > full_scale:
        values, full_scale = values - low, max(high - low, 1e-12)
    return np.rint(values * (255.0 / full_scale)).astype(np.uint8)


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    shape_ok = array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4))
    if array.dtype not in (np.uint8, np.uint16) or not shape_ok or array.size == 0:
        raise ImageError(f"an image array must be [H, W], [H, W, 3] or [H, W, 4], uint8 or uint16; "
                         f"got {array.dtype} {list(array.shape)}")
    if array.dtype == np.uint16:
        array = _scale_to_8_bits(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[2] == 3:
        return np.ascontiguousarray(array)
    return _to_rgb(Image.fromarray(np.ascontiguousarray(array)))

"""Image inputs to normalised pixel tensors: RGB, bicubic resize, CLIP mean/std, in torch.

The authors resize PIL images with PIL's bicubic filter: antialiased, in two passes (horizontal,
then vertical) with the intermediate image rounded to uint8. The same two passes in torch reproduce
it to within one grey level on a few pixels in ten thousand, on any device.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from movieid.errors import MovieIdError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

ImageInput = Union[str, Path, Image.Image, np.ndarray]


def to_rgb_array(image: ImageInput) -> np.ndarray:
    """A path, PIL image or ``[H, W, 3]`` uint8 RGB array as a ``[H, W, 3]`` uint8 array."""
    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as opened:
                return np.asarray(opened.convert("RGB"))
        except OSError as error:
            raise MovieIdError(f"cannot read image: {error}", image) from error
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise MovieIdError(f"an image array must be [H, W, 3] uint8 RGB, got {image.dtype} {list(image.shape)}")
        return image
    raise MovieIdError(f"unsupported image type {type(image).__name__} (use a path, a PIL image or a numpy array)")


def image_size(image: ImageInput) -> tuple[int, int]:
    """(width, height) in pixels."""
    if isinstance(image, Image.Image):
        return image.size
    height, width = to_rgb_array(image).shape[:2]
    return width, height


def resize_bicubic(image: ImageInput, size: int, device: torch.device) -> torch.Tensor:
    """``[3, size, size]`` float32 holding uint8 values, as PIL's bicubic resize would give."""
    pixels = torch.from_numpy(np.array(to_rgb_array(image))).to(device).permute(2, 0, 1)[None].float()
    for target in ((pixels.shape[2], size), (size, size)):  # horizontal pass, then vertical
        pixels = F.interpolate(pixels, size=target, mode="bicubic", align_corners=False, antialias=True)
        pixels = pixels.round().clamp(0, 255)
    return pixels[0]


def preprocess(images: Sequence[ImageInput], size: int, device: torch.device) -> torch.Tensor:
    """``[N, 3, size, size]`` float32, CLIP-normalised like torchvision's ToTensor + Normalize."""
    batch = torch.stack([resize_bicubic(image, size, device) for image in images]) / 255
    mean = torch.tensor(CLIP_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=device).view(1, 3, 1, 1)
    return (batch - mean) / std

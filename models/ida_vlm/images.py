"""Pixels for the vision tower, exactly as the authors' preprocessing gives them.

The authors' transform is torchvision's ``Resize((448, 448), BICUBIC)`` on the RGB PIL image (which
calls PIL's own bicubic resize), then ``ToTensor`` and ``Normalize`` with CLIP's mean and std.
Here PIL does the resize too, on the CPU, a few images at a time in threads (PIL lets go of the
GIL while it resamples); the uint8 result goes to the device and is normalised there with the
same float32 operations in the same order. Images are loaded upright by ``models.images.load_rgb``.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..images import ImageSource, load_rgb

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
MAX_THREADS = 16


def resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """``[H, W, 3]`` uint8 -> ``[size, size, 3]`` uint8 by PIL's bicubic filter."""
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BICUBIC))


def resize_all(images: Sequence[np.ndarray], size: int) -> np.ndarray:
    """``[N, size, size, 3]`` uint8, the images resized in parallel threads."""
    threads = min(len(images), os.cpu_count() or 1, MAX_THREADS)
    if threads <= 1:
        return np.stack([resize(image, size) for image in images])
    with ThreadPoolExecutor(threads) as pool:
        return np.stack(list(pool.map(resize, images, [size] * len(images))))


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """``[N, S, S, 3]`` uint8 -> ``[N, 3, S, S]`` float32: ToTensor (``/ 255``) then Normalize."""
    mean = torch.tensor(CLIP_MEAN, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=pixels.device).view(1, 3, 1, 1)
    return pixels.permute(0, 3, 1, 2).float().div(255).sub(mean).div(std)


def preprocess(images: Sequence[ImageSource], size: int, device: torch.device) -> torch.Tensor:
    """``[N, 3, size, size]`` float32 on ``device``, as the authors' transform gives."""
    resized = torch.from_numpy(resize_all([load_rgb(image) for image in images], size))
    if device.type == "cuda":
        resized = resized.pin_memory()
    return normalise(resized.to(device, non_blocking=True))


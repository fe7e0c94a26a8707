"""The model's pixels are the authors' pixels: PIL's bicubic resize of the RGB image on every size,
then ToTensor + Normalize with CLIP's mean and std, bit for bit."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from movieid.models.images import load_rgb
from movieid.models.ida_vlm.images import CLIP_MEAN, CLIP_STD, preprocess, resize_all

CPU = torch.device("cpu")
SIZES = [(3, 5), (37, 2000), (448, 448), (512, 512), (480, 640), (333, 517), (100, 80), (1, 1)]  # (height, width)


def _photo_like(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([127 + 90 * np.sin(xx / 13 + c) * np.cos(yy / 17 - c) for c in range(3)], -1)
    return np.clip(image + rng.normal(0, 20, image.shape), 0, 255).astype(np.uint8)


def _authors_pixels(path) -> np.ndarray:
    """Qwen-VL's ``Image.open(path).convert("RGB")``, then ``transforms.Resize((448, 448), BICUBIC)``,
    which on a PIL image is PIL's own resize."""
    return np.asarray(Image.open(path).convert("RGB").resize((448, 448), Image.BICUBIC))


def _clip(pixels_uint8: np.ndarray) -> np.ndarray:
    """torchvision ToTensor + Normalize, in float32, on an HxWx3 uint8 array -> 3xHxW."""
    x = pixels_uint8.astype(np.float32).transpose(2, 0, 1) / np.float32(255)
    mean = np.array(CLIP_MEAN, dtype=np.float32)[:, None, None]
    std = np.array(CLIP_STD, dtype=np.float32)[:, None, None]
    return (x - mean) / std


@pytest.mark.parametrize("height,width", SIZES)
def test_pixels_are_the_authors_on_every_size(tmp_path, height, width):
    path = tmp_path / "image.png"
    Image.fromarray(_photo_like(height, width, height * width)).save(path)
    expected = _authors_pixels(path)
    for source in (path, str(path), Image.open(path), np.asarray(Image.open(path))):
        resized = resize_all([load_rgb(source)], 448)[0]
        assert resized.dtype == np.uint8 and np.array_equal(resized, expected)
        assert np.array_equal(preprocess([source], 448, CPU)[0].numpy(), _clip(expected))


def test_many_images_in_threads_equal_one_at_a_time(frames):
    batch = preprocess(frames, 56, CPU)
    assert batch.shape == (len(frames), 3, 56, 56) and batch.dtype == torch.float32
    for k, frame in enumerate(frames):
        assert torch.equal(batch[k], preprocess([frame], 56, CPU)[0])


def test_input_types_agree(tmp_path, frames):
    path = tmp_path / "frame.png"
    Image.fromarray(frames[0]).save(path)
    rgba = Image.fromarray(frames[0]).convert("RGBA")  # opaque: the same pixels
    batch = preprocess([frames[0], path, str(path), Image.fromarray(frames[0]), rgba], 56, CPU)
    assert all(torch.equal(batch[k], batch[0]) for k in range(1, 5))

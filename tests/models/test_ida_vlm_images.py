"""Image preprocessing: PIL's bicubic resize reproduced in torch, exact CLIP normalisation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from movieid.models.ida_vlm.images import CLIP_MEAN, CLIP_STD, image_size, preprocess, resize_bicubic
from movieid.models.ida_vlm import IdaVlmError

CPU = torch.device("cpu")


def _clip(pixels_uint8: np.ndarray) -> np.ndarray:
    """torchvision ToTensor + Normalize, in float32, on an HxWx3 uint8 array -> 3xHxW."""
    x = pixels_uint8.astype(np.float32).transpose(2, 0, 1) / np.float32(255)
    mean = np.array(CLIP_MEAN, dtype=np.float32)[:, None, None]
    std = np.array(CLIP_STD, dtype=np.float32)[:, None, None]
    return (x - mean) / std


@pytest.mark.parametrize("shape,size", [((360, 640), 56), ((30, 44), 56), ((607, 1080), 448), ((200, 150), 448)])
def test_resize_matches_pil_bicubic(shape, size):
    rng = np.random.default_rng(sum(shape))
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    image = np.stack([127 + 90 * np.sin(xx / 13 + c) * np.cos(yy / 17 - c) for c in range(3)], -1)
    image = np.clip(image + rng.normal(0, 20, image.shape), 0, 255).astype(np.uint8)
    ours = resize_bicubic(image, size, CPU).permute(1, 2, 0).numpy().astype(np.int16)
    pil = np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC)).astype(np.int16)
    diff = np.abs(ours - pil)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.002


def test_clip_normalisation_is_exact():
    image = np.random.default_rng(1).integers(0, 256, (56, 56, 3), dtype=np.uint8)  # already 56: no resampling
    ours = preprocess([image], 56, CPU)[0].numpy()
    assert np.array_equal(ours, _clip(image))


def test_batched_and_every_input_type_agree(tmp_path, frames):
    path = tmp_path / "frame.png"
    Image.fromarray(frames[0]).save(path)
    rgba = Image.fromarray(frames[0]).convert("RGBA")
    batch = preprocess([frames[0], path, str(path), Image.fromarray(frames[0]), rgba, frames[1]], 56, CPU)
    assert batch.shape == (6, 3, 56, 56) and batch.dtype == torch.float32
    for k in range(1, 5):
        assert torch.equal(batch[k], batch[0])
    assert torch.equal(batch[5], preprocess([frames[1]], 56, CPU)[0])
    assert image_size(frames[0]) == (128, 72) and image_size(path) == (128, 72) and image_size(rgba) == (128, 72)


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(IdaVlmError, match="cannot read image"):
        preprocess([tmp_path / "missing.jpg"], 56, CPU)
    with pytest.raises(IdaVlmError, match=r"\[H, W, 3\] uint8"):
        preprocess([np.zeros((10, 10), dtype=np.uint8)], 56, CPU)
    with pytest.raises(IdaVlmError, match=r"\[H, W, 3\] uint8"):
        preprocess([np.zeros((10, 10, 3), dtype=np.float32)], 56, CPU)
    with pytest.raises(IdaVlmError, match="unsupported image type"):
        preprocess([b"bytes"], 56, CPU)

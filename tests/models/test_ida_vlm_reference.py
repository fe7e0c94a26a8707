"""Fidelity: the native model against a literal reference of the authors' forward pass (fp32)."""
from __future__ import annotations

import torch
from PIL import Image

from movieid.models.ida_vlm import build_id_query
from movieid.models.ida_vlm.prompt import chat_prompt
from tests.helpers.tiny_ida_vlm import TINY_CONFIG, make_request
from tests.models.ida_vlm_reference import reference_logits, reference_pixels, reference_visual

FLAG = {"id": 0, "test": 1, "general": 2}


def _reference(model, query, images, roles):
    state = model.state_dict()
    pixels = reference_pixels(images, TINY_CONFIG["visual"]["image_size"])
    tokens = reference_visual(state, TINY_CONFIG, pixels, [FLAG[r] for r in roles])
    return tokens, reference_logits(state, TINY_CONFIG, chat_prompt(model.tokenizer, query).ids, tokens)


def _check(model, query, images, roles):
    """Visual features and logits within 1e-5 of the authors' preprocessing and forward."""
    tokens, expected = _reference(model, query, images, roles)
    request = make_request(query, images, roles)
    torch.testing.assert_close(model.encode_images(request.images), tokens, rtol=0, atol=1e-5)
    logits = model.logits(request)
    assert logits.shape == expected.shape
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)


def test_base_matches_reference_short_prompt(base_model, frames):
    query = build_id_query(["Alice"], 1, "What is Alice doing?")
    assert len(chat_prompt(base_model.tokenizer, query).ids) <= TINY_CONFIG["seq_length"] * 2
    _check(base_model, query, frames[:2], ["id", "test"])


def test_idf_matches_reference_beyond_seq_length(idf_model, frames):
    """3 ID + 2 test images: the ID-Former is active and the prompt is far beyond seq_length
    (300), so dynamic NTK and log-n scaling are exercised too."""
    query = build_id_query(["Alice", "Bob", "Carol"], 2, "and describe their content.")
    _check(idf_model, query, frames[:5], ["id", "id", "id", "test", "test"])


def test_general_images_match_reference(idf_model, frames):
    _check(idf_model, "Picture 1: <img>a.jpg</img>\nGive an image description.", frames[5:6], ["general"])


def test_grid_resize_matches_torch_bicubic():
    """Position tables are resized by a precomputed bicubic map instead of F.interpolate."""
    from movieid.models.ida_vlm.resampler import resize_grid_embedding
    table = torch.randn(256, 96, generator=torch.Generator().manual_seed(0))
    for target in (4, 32):
        grid = table.reshape(1, 16, 16, -1).permute(0, 3, 1, 2)
        expected = torch.nn.functional.interpolate(grid, size=(target, target), mode="bicubic", align_corners=False)
        torch.testing.assert_close(resize_grid_embedding(table, target * target),
                                   expected.permute(0, 2, 3, 1).flatten(0, 2), rtol=0, atol=1e-5)
    assert resize_grid_embedding(table, 256) is table


def test_awkward_image_files_match_reference(idf_model, frames, tmp_path):
    """Image files of awkward sizes (tiny, very wide, exactly the model's size, odd, upscaled), read
    by the authors' ``Image.open(path).convert("RGB")``: the same features and logits."""
    paths = []
    for k, (height, width) in enumerate([(3, 5), (37, 2000), (56, 56), (517, 333), (30, 40)]):
        image = Image.fromarray(frames[k]).resize((width, height), Image.BILINEAR)
        paths.append(tmp_path / f"image_{k}.png")
        image.save(paths[-1])
    query = build_id_query(["Alice", "Bob"], 3, "and describe their content.")
    _check(idf_model, query, paths, ["id", "id", "test", "test", "test"])

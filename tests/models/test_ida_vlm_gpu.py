"""CUDA checks (skipped without a GPU): the GPU path agrees with the CPU one, stays
batch-independent for cached features, and batches (with prefix sharing) like one-by-one."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from movieid.models.ida_vlm import IdaVlm, build_id_query
from movieid.models.ida_vlm.images import resize_bicubic

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

ROLES = ["id", "id", "test", "test"]
QUERY = build_id_query(["Alice", "Bob"], 2, "and describe their content.")


@pytest.fixture
def exact_fp32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("variant", ["base", "idf"])
def test_cuda_fp32_matches_cpu(checkpoints, frames, exact_fp32, variant):
    """Frames already at the model's 56x56 need no resampling, so both devices see the same pixels
    (a resize may round a rare pixel differently per device) and only the network is compared."""
    crops = [frame[:56, :56] for frame in frames[:4]]
    cpu = IdaVlm.from_pretrained(checkpoints(variant), variant=variant, device="cpu")
    gpu = IdaVlm.from_pretrained(checkpoints(variant), variant=variant, device="cuda", dtype=torch.float32)
    torch.testing.assert_close(gpu.logits(QUERY, crops, ROLES).cpu(), cpu.logits(QUERY, crops, ROLES),
                               rtol=0, atol=1e-4)


def test_cuda_resize_matches_pil():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:360, 0:640]
    image = np.stack([127 + 90 * np.sin(xx / 13 + c) * np.cos(yy / 17 - c) for c in range(3)], -1)
    image = np.clip(image + rng.normal(0, 20, image.shape), 0, 255).astype(np.uint8)
    ours = resize_bicubic(image, 448, torch.device("cuda")).permute(1, 2, 0).cpu().numpy().astype(np.int16)
    pil = np.asarray(Image.fromarray(image).resize((448, 448), Image.BICUBIC)).astype(np.int16)
    diff = np.abs(ours - pil)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.002


def test_cuda_defaults_to_bf16_and_cached_cast_is_bit_identical(checkpoints, frames):
    model = IdaVlm.from_pretrained(checkpoints("idf"), variant="idf")
    assert model.device.type == "cuda" and model.dtype == torch.bfloat16
    cast = model.precompute(frames[:2], ["id", "id"])
    cached = model.logits(QUERY, [*cast, *frames[2:4]], ROLES)
    assert torch.isfinite(cached).all()
    assert torch.equal(cached, model.logits(QUERY, frames[:4], ROLES))


def test_cuda_batched_generation_equals_one_by_one(checkpoints, frames, exact_fp32):
    """Rows 0 and 3 share their cast prefix (prefilled once, the suffixes attend to it)."""
    model = IdaVlm.from_pretrained(checkpoints("idf"), variant="idf", device="cuda", dtype=torch.float32)
    cast = model.precompute(frames[:2], ["id", "id"])
    requests = [(QUERY, [*cast, *frames[2:4]], ROLES),
                ("Give an image description. <img></img>", frames[5:6], ["general"]),
                (build_id_query(["Alice"], 1, "What is Alice doing?"), [cast[0], frames[6]], ["id", "test"]),
                (QUERY, [*cast, frames[4], frames[7]], ROLES)]
    batched = model.generate(requests, max_new_tokens=12)
    unshared = model.generate(requests, max_new_tokens=12, share_prefix=False)
    alone = [model.generate([r], max_new_tokens=12)[0] for r in requests]
    assert [g.token_ids for g in batched] == [g.token_ids for g in unshared] == [g.token_ids for g in alone]

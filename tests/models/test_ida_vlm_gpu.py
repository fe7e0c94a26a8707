"""CUDA checks (skipped without a GPU): the GPU path agrees with the CPU one, stays
batch-independent for cached features, and batches like one-by-one."""
from __future__ import annotations

import pytest
import torch

from models.ida_vlm import IdaVlm, build_id_query

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
    cpu = IdaVlm.from_pretrained(checkpoints(variant), variant=variant, device="cpu")
    gpu = IdaVlm.from_pretrained(checkpoints(variant), variant=variant, device="cuda", dtype=torch.float32)
    torch.testing.assert_close(gpu.logits(QUERY, frames[:4], ROLES).cpu(), cpu.logits(QUERY, frames[:4], ROLES),
                               rtol=0, atol=2e-4)


def test_cuda_defaults_to_bf16_and_cached_cast_is_bit_identical(checkpoints, frames):
    model = IdaVlm.from_pretrained(checkpoints("idf"), variant="idf")
    assert model.device.type == "cuda" and model.dtype == torch.bfloat16
    cast = model.precompute(frames[:2], ["id", "id"])
    cached = model.logits(QUERY, [*cast, *frames[2:4]], ROLES)
    assert torch.isfinite(cached).all()
    assert torch.equal(cached, model.logits(QUERY, frames[:4], ROLES))


def test_cuda_batched_generation_equals_one_by_one(checkpoints, frames, exact_fp32):
    model = IdaVlm.from_pretrained(checkpoints("idf"), variant="idf", device="cuda", dtype=torch.float32)
    cast = model.precompute(frames[:2], ["id", "id"])
    requests = [(QUERY, [*cast, *frames[2:4]], ROLES),
                ("Give an image description. <img></img>", frames[5:6], ["general"]),
                (build_id_query(["Alice"], 1, "What is Alice doing?"), [cast[0], frames[6]], ["id", "test"])]
    batched = model.generate(requests, max_new_tokens=12)
    alone = [model.generate([r], max_new_tokens=12)[0] for r in requests]
    assert [g.token_ids for g in batched] == [g.token_ids for g in alone]

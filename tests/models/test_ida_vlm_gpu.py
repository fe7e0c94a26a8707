"""CUDA checks (skipped without a GPU): the GPU path agrees with the CPU one; batched, prefix-shared
and CUDA-graph decoding give the same answers as one by one, unshared and eager; running out of
memory halves the batch."""
from __future__ import annotations

import pytest
import torch

from movieid.models.ida_vlm import IdaVlm, RoleImage, build_id_query
from movieid.models.ida_vlm.images import preprocess
from tests.helpers.tiny_ida_vlm import make_request

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

ROLES = ["id", "id", "test", "test"]
QUERY = build_id_query(["Alice", "Bob"], 2, "and describe their content.")


@pytest.fixture
def exact_fp32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _requests(model, frames):
    """Rows 0 and 3 share their cast prefix; row 1 is general, row 2 another cast."""
    cast = model.precompute([RoleImage(frame, "id") for frame in frames[:2]])
    return [make_request(QUERY, [*cast, *frames[2:4]], ROLES),
            make_request("Give an image description. <img></img>", frames[5:6], ["general"]),
            make_request(build_id_query(["Alice"], 1, "What is Alice doing?"), [cast[0], frames[6]], ["id", "test"]),
            make_request(QUERY, [*cast, frames[4], frames[7]], ROLES)]


@pytest.mark.parametrize("variant", ["base", "idf"])
def test_cuda_fp32_matches_cpu(checkpoints, frames, exact_fp32, variant):
    cpu = IdaVlm.from_pretrained(checkpoints(variant), variant=variant, device="cpu")
    gpu = IdaVlm.from_pretrained(checkpoints(variant), variant=variant, device="cuda", dtype=torch.float32)
    request = make_request(QUERY, frames[:4], ROLES)
    torch.testing.assert_close(gpu.logits(request).cpu(), cpu.logits(request), rtol=0, atol=1e-4)
    torch.testing.assert_close(preprocess(frames, 56, torch.device("cuda")).cpu(),
                               preprocess(frames, 56, torch.device("cpu")), rtol=0, atol=1e-6)


def test_cuda_defaults_to_bf16_and_cached_cast_is_bit_identical(checkpoints, frames):
    model = IdaVlm.from_pretrained(checkpoints("idf"), variant="idf")
    assert model.device.type == "cuda" and model.dtype == torch.bfloat16
    cast = model.precompute([RoleImage(frame, "id") for frame in frames[:2]])
    cached = model.logits(make_request(QUERY, [*cast, *frames[2:4]], ROLES))
    assert torch.isfinite(cached).all()
    assert torch.equal(cached, model.logits(make_request(QUERY, frames[:4], ROLES)))


def test_cuda_batched_shared_and_graphed_generation_equal_one_by_one(checkpoints, frames, exact_fp32):
    model = IdaVlm.from_pretrained(checkpoints("idf"), variant="idf", device="cuda", dtype=torch.float32)
    requests = _requests(model, frames)
    batched = model.generate(requests, max_new_tokens=12)
    eager = model.generate(requests, max_new_tokens=12, cuda_graphs=False)
    unshared = model.generate(requests, max_new_tokens=12, share_prefix=False, cuda_graphs=False)
    alone = [model.generate([r], max_new_tokens=12)[0] for r in requests]
    ids = [g.token_ids for g in batched]
    assert ids == [g.token_ids for g in eager] == [g.token_ids for g in unshared] == [g.token_ids for g in alone]


def test_cuda_graph_replay_is_bitwise_the_eager_step_in_bf16(checkpoints, frames):
    model = IdaVlm.from_pretrained(checkpoints("idf"), variant="idf")
    requests = _requests(model, frames) * 3
    graphed = model.generate(requests, max_new_tokens=16, ignore_eos=True)
    eager = model.generate(requests, max_new_tokens=16, ignore_eos=True, cuda_graphs=False)
    assert [g.token_ids for g in graphed] == [g.token_ids for g in eager]


def test_cuda_generation_equals_the_cpu_path(checkpoints, frames, exact_fp32):
    """The CUDA path (Triton decode kernels) against plain math (CPU), fp32."""
    from movieid.models.ida_vlm.language import efficient_kernel_works

    assert efficient_kernel_works(torch.device("cuda"))
    cpu = IdaVlm.from_pretrained(checkpoints("idf"), variant="idf", device="cpu")
    gpu = IdaVlm.from_pretrained(checkpoints("idf"), variant="idf", device="cuda", dtype=torch.float32)
    on_cpu = [g.token_ids for g in cpu.generate(_requests(cpu, frames), max_new_tokens=12)]
    assert [g.token_ids for g in gpu.generate(_requests(gpu, frames), max_new_tokens=12)] == on_cpu


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_decode_kernels_equal_the_torch_paths(checkpoints, frames, exact_fp32, monkeypatch, dtype):
    """The decode step's Triton kernels (``decode_attention``) against plain attention on a random
    problem, and (fp32: in bf16 other kernels round differently, and near-tied random logits may
    then pick other tokens) the greedy tokens of a batch with them against the memory-efficient
    kernel's."""
    from movieid.models.ida_vlm import decode_attention

    cuda = torch.device("cuda")
    assert decode_attention.available(cuda) and decode_attention.check(cuda, dtype)
    if dtype != torch.float32:
        return
    model = IdaVlm.from_pretrained(checkpoints("idf"), variant="idf", device="cuda", dtype=dtype)
    requests = _requests(model, frames) * 3
    fused = [g.token_ids for g in model.generate(requests, max_new_tokens=16, ignore_eos=True)]
    monkeypatch.setattr(decode_attention, "available", lambda device: False)
    assert [g.token_ids for g in model.generate(requests, max_new_tokens=16, ignore_eos=True)] == fused


def test_running_out_of_gpu_memory_halves_the_batch(checkpoints, frames, caplog):
    """Memory capped a little above what a batch of two needed: the batch sized from the card's free
    memory (128 rows) fails with a real out-of-memory error and is halved until it fits."""
    model = IdaVlm.from_pretrained(checkpoints("base"), device="cuda", dtype=torch.float32)
    requests = _requests(model, frames) * 32
    expected = [g.token_ids for g in model.generate(requests, max_new_tokens=8, batch_size=2)]
    total = torch.cuda.get_device_properties(0).total_memory
    try:
        torch.cuda.set_per_process_memory_fraction((torch.cuda.memory_reserved() + (48 << 20)) / total)
        answers = model.generate(requests, max_new_tokens=8)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert [g.token_ids for g in answers] == expected
    assert "out of GPU memory with 128 rows" in caplog.text


def test_fused_pointwise_steps_equal_eager(checkpoints, frames, exact_fp32, monkeypatch):
    """The language model's pointwise steps compiled one kernel each (``fused``) against eager torch:
    the same greedy tokens and logits within float32 rounding (fp32); bf16 logits within a step of
    bf16 rounding (eager's roundings are emulated; only the order of float32 sums differs)."""
    from movieid.models.ida_vlm import fused

    assert fused.available(torch.device("cuda"))  # checked before the calls below are counted
    compiled_calls = []
    run_compiled = fused._run_compiled
    monkeypatch.setattr(fused, "_run_compiled", lambda fn, args: compiled_calls.append(fn) or run_compiled(fn, args))
    request = make_request(QUERY, frames[:4], ROLES)
    fp32 = IdaVlm.from_pretrained(checkpoints("idf"), variant="idf", device="cuda", dtype=torch.float32)
    bf16 = IdaVlm.from_pretrained(checkpoints("idf"), variant="idf", device="cuda")
    requests = _requests(fp32, frames) * 3
    tokens = [g.token_ids for g in fp32.generate(requests, max_new_tokens=16, ignore_eos=True)]
    logits = fp32.logits(request), bf16.logits(request).float()
    # the compiled steps ran, and none failed over to eager
    assert {fn.__name__ for fn in compiled_calls} >= {"rms_norm", "add_rms_norm", "add_layer_norm", "swiglu"}
    assert fused.available(fp32.device)
    monkeypatch.setattr(fused, "available", lambda device: False)
    assert [g.token_ids for g in fp32.generate(requests, max_new_tokens=16, ignore_eos=True)] == tokens
    torch.testing.assert_close(logits[0], fp32.logits(request), rtol=0, atol=1e-5)
    eager = bf16.logits(request).float()
    assert (logits[1] - eager).abs().max() <= 2 ** -7 * eager.abs().max()

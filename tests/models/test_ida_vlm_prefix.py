"""Shared prompt prefixes and batching: windows that open with the same precomputed cast have that
prefix prefilled once and read once per decode step (cascade attention), with the same answers as
without sharing, as one by one and as the authors' recompute loop; batches split by size or on
running out of GPU memory give the same answers too."""
from __future__ import annotations

import logging

import pytest
import torch

from movieid.models.ida_vlm import RoleImage, build_id_query
from movieid.models.ida_vlm import model as model_module
from movieid.models.ida_vlm.config import IdaVlmConfig
from movieid.models.ida_vlm.generation import (Row, SharedPrefix, alpha_for, group_ranges, plan_rows, prefill_chunks,
                                               rows_that_fit, shared_prefixes)
from movieid.models.ida_vlm.language import KVCache
from movieid.models.ida_vlm.prompt import chat_prompt
from tests.helpers.tiny_ida_vlm import TINY_CONFIG, make_request
from tests.models.ida_vlm_reference import reference_logits, reference_pixels, reference_visual

DESCRIBE = "and describe their content."
NAMES = ["Alice", "Bob", "Carol"]


def _run(model, requests, monkeypatch, **kwargs):
    """Generate; return the answers, the prefix groups used and each request's logits at its last
    prompt position (lm_head's first call, put back in request order)."""
    groups, orders, logits = [], [], []

    def spy_groups(*args):
        found = shared_prefixes(*args)
        groups.extend(found)
        return found

    def spy_plan(*args):
        rows = plan_rows(*args)
        orders.append([row.index for row in rows])
        return rows

    hook = model.lm_head.register_forward_hook(lambda module, args, out: logits.append(out))
    try:
        with monkeypatch.context() as patch:
            patch.setattr(model_module, "shared_prefixes", spy_groups)
            patch.setattr(model_module, "plan_rows", spy_plan)
            answers = model.generate(requests, max_new_tokens=10, **kwargs)
    finally:
        hook.remove()
    by_request = torch.empty_like(logits[0])
    by_request[orders[0]] = logits[0]
    return answers, groups, by_request


def _check_same_answers(model, requests, monkeypatch):
    shared, groups, logits = _run(model, requests, monkeypatch)
    unshared, no_groups, unshared_logits = _run(model, requests, monkeypatch, share_prefix=False)
    alone = [model.generate([r], max_new_tokens=10)[0] for r in requests]
    assert no_groups == []
    assert [g.token_ids for g in shared] == [g.token_ids for g in unshared] == [g.token_ids for g in alone]
    assert [g.text for g in shared] == [g.text for g in unshared] == [g.text for g in alone]
    torch.testing.assert_close(logits, unshared_logits, rtol=0, atol=1e-4)
    distances = torch.cdist(logits, logits) + torch.eye(len(requests))
    assert bool((distances > 1e-2).all())  # every row's logits differ: a row mix-up would show
    return groups


def _cast_requests(model, frames):
    """Rows 0-1 and 2-3 share the cast (two NTK alphas, unequal lengths within a group, prompts
    beyond seq_length: NTK and log-n active); row 4 has another cast, row 5 the cast given raw."""
    cast = model.precompute([RoleImage(frame, "id") for frame in frames[:3]])
    return [
        make_request(build_id_query(NAMES, 2, DESCRIBE), [*cast, *frames[3:5]], ["id"] * 3 + ["test"] * 2),
        make_request(build_id_query(NAMES, 2, "What is Alice doing?"), [*cast, *frames[5:7]], ["id"] * 3 + ["test"] * 2),
        make_request(build_id_query(NAMES, 1, DESCRIBE), [*cast, frames[7]], ["id"] * 3 + ["test"]),
        make_request(build_id_query(NAMES, 1, "What is Carol doing?"), [*cast, frames[3]], ["id"] * 3 + ["test"]),
        make_request(build_id_query(NAMES[:2], 1, "What is Bob doing?"), [*cast[:2], frames[4]], ["id"] * 2 + ["test"]),
        make_request(build_id_query(NAMES, 2, DESCRIBE), [*frames[:3], *frames[5:7]], ["id"] * 3 + ["test"] * 2),
    ]


@pytest.mark.parametrize("model_name", ["base_model", "idf_model"])
def test_shared_cast_prefix_gives_the_same_answers(request, model_name, frames, monkeypatch):
    model = request.getfixturevalue(model_name)
    requests = _cast_requests(model, frames)
    prompts = [chat_prompt(model.tokenizer, r.query) for r in requests]
    lengths = [len(p.ids) for p in prompts]
    alphas = [alpha_for(model.config, n) for n in lengths]
    assert min(lengths) > TINY_CONFIG["seq_length"] and len(set(alphas)) == 2
    assert lengths[0] != lengths[1] and alphas[0] == alphas[1] != alphas[2] == alphas[3]

    groups = _check_same_answers(model, requests, monkeypatch)
    first_test = prompts[0].image_starts[3]  # the prefix ends before the first test image's tokens
    assert groups == [SharedPrefix([0, 1], first_test), SharedPrefix([2, 3], first_test)]


def test_cascade_decode_matches_the_authors_recompute_loop(idf_model, frames):
    """The batch with shared prefixes, greedy, against the literal reference replaying each row
    alone without a cache (every step sees the whole sequence, the NTK alpha is the prompt's)."""
    requests = _cast_requests(idf_model, frames)[:5]
    ours = idf_model.generate(requests, max_new_tokens=4, ignore_eos=True)
    state = idf_model.state_dict()
    for k in (1, 3, 4):  # one row of each group (the second: its suffix attends to the first's prefix), one alone
        request, answer = requests[k], ours[k]
        raw = [frames[:3][i] if image.role == "id" else image.image for i, image in enumerate(request.images)]
        pixels = reference_pixels(raw, TINY_CONFIG["visual"]["image_size"])
        tokens = reference_visual(state, TINY_CONFIG, pixels, [0 if r == "id" else 1 for r in request.roles])
        ids = chat_prompt(idf_model.tokenizer, request.query).ids
        alpha, expected = alpha_for(idf_model.config, len(ids)), list(ids)
        for _ in range(4):
            expected.append(int(reference_logits(state, TINY_CONFIG, expected, tokens, ntk_alpha=alpha)[-1].argmax()))
        assert answer.token_ids == expected[len(ids):]


@pytest.mark.parametrize("model_name", ["base_model", "idf_model"])
def test_rows_without_the_same_precomputed_images_share_nothing(request, model_name, frames, monkeypatch):
    """The same pictures, precomputed twice or given raw, are different images for sharing."""
    model = request.getfixturevalue(model_name)
    query, roles = build_id_query(["Alice", "Bob"], 1, DESCRIBE), ["id", "id", "test"]
    requests = [make_request(query, [*model.precompute([RoleImage(f, "id") for f in frames[:2]]), frames[k]], roles)
                for k in (2, 3)]
    requests.append(make_request(query, [*frames[:2], frames[4]], roles))
    assert _check_same_answers(model, requests, monkeypatch) == []


def test_batches_by_size_and_after_running_out_of_memory_give_the_same_answers(idf_model, frames, monkeypatch, caplog):
    requests = _cast_requests(idf_model, frames)
    whole = [g.token_ids for g in idf_model.generate(requests, max_new_tokens=6)]
    assert [g.token_ids for g in idf_model.generate(requests, max_new_tokens=6, batch_size=2)] == whole

    sizes, real = [], model_module.generate_tokens

    def short_of_memory(lm, lm_head, config, rows, *args, **kwargs):
        sizes.append(len(rows))
        if len(rows) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(lm, lm_head, config, rows, *args, **kwargs)

    monkeypatch.setattr(model_module, "generate_tokens", short_of_memory)
    with caplog.at_level(logging.WARNING):
        answers = idf_model.generate(requests, max_new_tokens=6)
    assert [g.token_ids for g in answers] == whole
    assert sizes == [6, 3, 1, 1, 1, 1, 1, 1]  # halved on each failure, then kept at the size that worked
    assert "out of GPU memory with 6 rows" in caplog.text

    monkeypatch.setattr(model_module, "generate_tokens", lambda *a, **k: (_ for _ in ()).throw(
        torch.OutOfMemoryError("CUDA out of memory (simulated)")))
    with pytest.raises(model_module.IdaVlmError, match="out of GPU memory for a single request"):
        idf_model.generate(requests[:1], max_new_tokens=6)


def test_shared_prefixes_groups_by_alpha_and_opening_images():
    cast, other = object(), object()
    header = list(range(100))
    rows = [header + [cast, 7, 8], header + [cast, 7, 8, 5], header + [other, 7, 8], header + [cast, 7, 8]]
    lengths = [110, 110, 110, 103]  # row 3's shareable part is its whole prompt but the last token
    assert shared_prefixes(rows, lengths, [1, 1, 1, 1]) == [SharedPrefix([0, 1, 3], 102)]
    assert shared_prefixes(rows[:3], lengths[:3], [1, 1, 1]) == [SharedPrefix([0, 1], 103)]
    assert shared_prefixes(rows, lengths, [1, 3, 1, 3]) == [SharedPrefix([1, 3], 102)]
    assert shared_prefixes([header[:63], header[:63]], [70, 70], [1, 1]) == []  # too short to be worth it
    assert shared_prefixes([header[:64], header[:64]], [70, 70], [1, 1]) == [SharedPrefix([0, 1], 64)]


def test_rows_are_planned_by_group_then_suffix_length(monkeypatch):
    groups = [SharedPrefix([1, 3, 4], 100), SharedPrefix([0, 5], 80)]
    rows = plan_rows([300, 250, 400, 260, 250, 300], [1.0] * 6, groups)
    assert [(r.index, r.group, r.suffix) for r in rows] == [
        (1, 0, 150), (4, 0, 150), (3, 0, 160), (0, 1, 220), (5, 1, 220), (2, None, 400)]
    assert group_ranges(rows) == [(0, 3), (3, 5)]
    assert prefill_chunks(rows) == [(0, 2), (2, 3), (3, 5), (5, 6)]
    monkeypatch.setattr("movieid.models.ida_vlm.generation.PREFILL_TOKENS", 300)
    assert prefill_chunks(rows) == [(0, 2), (2, 3), (3, 4), (4, 5), (5, 6)]


def test_batch_size_follows_free_memory():
    config = IdaVlmConfig.from_dict(TINY_CONFIG)
    rows = [Row(i, 1000, 1.0) for i in range(300)]
    per_row = KVCache.bytes_per_position(config, torch.float32) * (1000 + 20) + 16 * config.vocab_size
    roomy = rows_that_fit(config, rows, 20, torch.float32, 10 ** 12)
    assert roomy == 256  # capped: beyond that decode gains nothing
    fits = rows_that_fit(config, rows, 20, torch.float32, 10 ** 9)
    assert 0.5 * 0.9 * 10 ** 9 / per_row < fits <= 0.9 * 10 ** 9 / per_row  # room kept for activations
    assert rows_that_fit(config, rows, 20, torch.float32, 10) == 1


_TRITON_CHILD = """
import json, sys
import numpy as np, torch
sys.path.insert(0, {root!r})
from movieid.models.ida_vlm import IdaVlm, decode_attention
from tests.models.test_ida_vlm_prefix import _cast_requests
# Several programs a row, as on a GPU, and a split past some rows' columns; long steps, since the
# interpreter's cost is per step (the kernels' results do not depend on these sizes).
decode_attention.SPLIT, decode_attention.BLOCK_N, decode_attention.PREFIX_BLOCK_N = 128, 64, 128
calls = []
real = decode_attention.decode_attention
decode_attention.decode_attention = lambda *args: calls.append(1) or real(*args)
model = IdaVlm.from_pretrained({checkpoint!r}, variant="idf", device="cpu")
frames = [np.asarray(f, np.uint8) for f in json.loads(sys.stdin.read())]
answers = model.generate([_cast_requests(model, frames)[i] for i in (0, 1, 4)], max_new_tokens=3, ignore_eos=True)
print(json.dumps({{"kernel_checked": decode_attention.check(torch.device("cpu"), torch.float32),
                   "calls": len(calls), "tokens": [a.token_ids for a in answers]}}))
"""


def test_triton_decode_kernels_give_the_same_answers(checkpoints, idf_model, frames):
    """The decode step's Triton kernels (``decode_attention``: the shared prefix, each row's own
    columns in splits, their merge: what a CUDA GPU with Triton runs), here through Triton's
    interpreter on the CPU, give
    the torch path's greedy tokens on a batch of two rows sharing a prefix (prompts of unequal
    length: left padding) and a row sharing nothing."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("triton", reason="Triton is not installed")
    root = str(Path(__file__).resolve().parents[2])
    script = _TRITON_CHILD.format(root=root, checkpoint=str(checkpoints("idf")))
    child = subprocess.run([sys.executable, "-c", script], input=json.dumps([f.tolist() for f in frames]),
                           capture_output=True, text=True, timeout=600, cwd=root,
                           env={**os.environ, "TRITON_INTERPRET": "1"})
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["kernel_checked"] and result["calls"] > 0
    ours = idf_model.generate([_cast_requests(idf_model, frames)[i] for i in (0, 1, 4)], max_new_tokens=3,
                              ignore_eos=True)
    assert result["tokens"] == [a.token_ids for a in ours]

"""Prefix sharing: windows that open with the same precomputed cast have that prefix prefilled once,
with the same answers as without sharing and as one by one."""
from __future__ import annotations

import pytest
import torch

from movieid.models.ida_vlm import build_id_query
from movieid.models.ida_vlm import generation
from movieid.models.ida_vlm.generation import SharedPrefix, alpha_for, shared_prefixes
from movieid.models.ida_vlm.prompt import chat_prompt
from tests.helpers.tiny_ida_vlm import TINY_CONFIG

DESCRIBE = "and describe their content."


def _run(model, requests, monkeypatch, **kwargs):
    """Generate; return the answers, the prefix groups used and the last prompt positions' logits."""
    groups, logits = [], []

    def spy(*args):
        groups.extend(shared_prefixes(*args))
        return groups

    hook = model.lm_head.register_forward_hook(lambda module, args, out: logits.append(out))
    try:
        with monkeypatch.context() as patch:
            patch.setattr(generation, "shared_prefixes", spy)
            answers = model.generate(requests, max_new_tokens=10, **kwargs)
    finally:
        hook.remove()
    return answers, groups, logits[0]  # lm_head's first call: each row's last prompt position


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


@pytest.mark.parametrize("model_name", ["base_model", "idf_model"])
def test_shared_cast_prefix_gives_the_same_answers(request, model_name, frames, monkeypatch):
    """Rows 0-1 and 2-3 share the cast (two NTK alphas, unequal lengths within a group, prompts
    beyond seq_length: NTK and log-n active); row 4 has another cast, row 5 the cast given raw."""
    model = request.getfixturevalue(model_name)
    cast = model.precompute(frames[:3], ["id"] * 3)
    names = ["Alice", "Bob", "Carol"]
    requests = [
        (build_id_query(names, 2, DESCRIBE), [*cast, *frames[3:5]], ["id"] * 3 + ["test"] * 2),
        (build_id_query(names, 2, "What is Alice doing?"), [*cast, *frames[5:7]], ["id"] * 3 + ["test"] * 2),
        (build_id_query(names, 1, DESCRIBE), [*cast, frames[7]], ["id"] * 3 + ["test"]),
        (build_id_query(names, 1, "What is Carol doing?"), [*cast, frames[3]], ["id"] * 3 + ["test"]),
        (build_id_query(names[:2], 1, "What is Bob doing?"), [*cast[:2], frames[4]], ["id"] * 2 + ["test"]),
        (build_id_query(names, 2, DESCRIBE), [*frames[:3], *frames[5:7]], ["id"] * 3 + ["test"] * 2),
    ]
    prompts = [chat_prompt(model.tokenizer, query) for query, _, _ in requests]
    lengths = [len(p.ids) for p in prompts]
    alphas = [alpha_for(model.config, n) for n in lengths]
    assert min(lengths) > TINY_CONFIG["seq_length"] and len(set(alphas)) == 2
    assert lengths[0] != lengths[1] and alphas[0] == alphas[1] != alphas[2] == alphas[3]

    groups = _check_same_answers(model, requests, monkeypatch)
    first_test = prompts[0].image_starts[3]  # the prefix ends before the first test image's tokens
    assert groups == [SharedPrefix([0, 1], first_test), SharedPrefix([2, 3], first_test)]


@pytest.mark.parametrize("model_name", ["base_model", "idf_model"])
def test_rows_without_the_same_precomputed_images_share_nothing(request, model_name, frames, monkeypatch):
    """The same pictures, precomputed twice or given raw, are different images for sharing."""
    model = request.getfixturevalue(model_name)
    query, roles = build_id_query(["Alice", "Bob"], 1, DESCRIBE), ["id", "id", "test"]
    requests = [(query, [*model.precompute(frames[:2], ["id", "id"]), frames[k]], roles) for k in (2, 3)]
    requests.append((query, [*frames[:2], frames[4]], roles))
    assert _check_same_answers(model, requests, monkeypatch) == []


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

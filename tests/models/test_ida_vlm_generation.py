"""Generation: batched == one-by-one, greedy == the authors' recompute loop, stopping, sampling."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from movieid.models.ida_vlm import Generation, build_id_query
from movieid.models.ida_vlm.generation import Sampling, alpha_for, pick_tokens
from movieid.models.ida_vlm.prompt import chat_prompt
from tests.helpers.tiny_ida_vlm import TINY_CONFIG, make_request
from tests.models.ida_vlm_reference import reference_logits, reference_pixels, reference_visual


def _requests(frames):
    """Prompts of very different lengths: one image (~290 tokens, within seq_length 300), two,
    and five images (~1400 tokens: dynamic NTK and log-n active), plus text only."""
    return [make_request(*args) for args in [
        ("Give an image description. <img></img>", frames[:1], ["general"]),
        (build_id_query(["Alice"], 1, "What is Alice doing?"), frames[1:3], ["id", "test"]),
        (build_id_query(["Alice", "Bob", "Carol"], 2, "and describe their content."), frames[2:7], ["id"] * 3 + ["test"] * 2),
        ("Who is Bob?", [], []),
        # two windows of the same length: they prefill together
        (build_id_query(["Alice", "Bob"], 2, "and describe their content."), frames[0:4], ["id"] * 2 + ["test"] * 2),
        (build_id_query(["Alice", "Carol"], 2, "and describe their content."), frames[4:8], ["id"] * 2 + ["test"] * 2),
    ]]


@pytest.mark.parametrize("model_name", ["base_model", "idf_model"])
def test_batched_generation_equals_one_by_one(request, model_name, frames):
    model = request.getfixturevalue(model_name)
    requests = _requests(frames)
    batched = model.generate(requests, max_new_tokens=10)
    alone = [model.generate([r], max_new_tokens=10)[0] for r in requests]
    lengths = [len(chat_prompt(model.tokenizer, r.query).ids) for r in requests]
    assert lengths[-1] == lengths[-2]
    assert all(isinstance(g, Generation) for g in batched)
    assert [g.token_ids for g in batched] == [g.token_ids for g in alone]
    assert [g.text for g in batched] == [g.text for g in alone]
    assert len({tuple(g.token_ids) for g in batched}) == len(requests)  # really different rows


def test_greedy_tokens_match_the_authors_recompute_loop(idf_model, frames):
    """The authors generate with transformers: every step sees the whole sequence, the NTK alpha
    is the prompt's. Replayed here with the literal reference (no KV cache)."""
    request = _requests(frames)[2]
    prompt = chat_prompt(idf_model.tokenizer, request.query).ids
    assert len(prompt) > TINY_CONFIG["seq_length"]
    state = idf_model.state_dict()
    pixels = reference_pixels([image.image for image in request.images], TINY_CONFIG["visual"]["image_size"])
    tokens = reference_visual(state, TINY_CONFIG, pixels, [0, 0, 0, 1, 1])
    alpha = alpha_for(idf_model.config, len(prompt))
    assert alpha > 1
    ids = list(prompt)
    for _ in range(6):
        ids.append(int(reference_logits(state, TINY_CONFIG, ids, tokens, ntk_alpha=alpha)[-1].argmax()))
    (ours,) = idf_model.generate([request], max_new_tokens=6, ignore_eos=True)
    assert ours.token_ids == ids[len(prompt):]


class _ScriptedHead(nn.Module):
    """Stands in for lm_head: emits ``script`` one token per call (per row), then repeats the last."""

    def __init__(self, script: list[int], vocab: int):
        super().__init__()
        self.script, self.vocab, self.calls = script, vocab, 0

    def forward(self, hidden):
        token = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        logits = torch.zeros(*hidden.shape[:-1], self.vocab)
        logits[..., token] = 1.0
        return logits


@pytest.mark.parametrize("stop", ["im_end_id", "endoftext_id", "im_start_id"])
def test_generation_stops_at_chatml_end_tokens(checkpoints, stop, frames, monkeypatch):
    from movieid.models.ida_vlm import IdaVlm
    model = IdaVlm.from_pretrained(checkpoints("base"), device="cpu")
    tok = model.tokenizer
    words = tok.encode(" Alice is walking")
    monkeypatch.setattr(model, "lm_head", _ScriptedHead([*words, getattr(tok, stop), *words], model.config.vocab_size))
    (answer,) = model.generate([make_request("Who? <img></img>", frames[:1], ["general"])], max_new_tokens=20)
    assert answer == Generation("Alice is walking", words, "stop")


def test_ignore_eos_and_max_new_tokens(checkpoints, frames, monkeypatch):
    from movieid.models.ida_vlm import IdaVlm
    model = IdaVlm.from_pretrained(checkpoints("base"), device="cpu")
    tok = model.tokenizer
    monkeypatch.setattr(model, "lm_head", _ScriptedHead([tok.im_end_id], model.config.vocab_size))
    (answer,) = model.generate([make_request("Who? <img></img>", frames[:1], ["general"])], max_new_tokens=7, ignore_eos=True)
    assert answer.token_ids == [tok.im_end_id] * 7 and answer.finish_reason == "length"


def test_length_limit_ends_generation(base_model, frames):
    (answer,) = base_model.generate([make_request("Who? <img></img>", frames[:1], ["general"])], max_new_tokens=3, ignore_eos=True)
    assert len(answer.token_ids) == 3 and answer.finish_reason == "length"


def test_sampling_is_reproducible_and_degenerates_to_greedy(base_model, frames):
    request = [make_request("Give an image description. <img></img>", frames[:1], ["general"])]
    greedy = base_model.generate(request, max_new_tokens=8, ignore_eos=True)[0].token_ids
    sampled = [base_model.generate(request, max_new_tokens=8, do_sample=True, top_p=1.0, seed=s, ignore_eos=True)[0].token_ids
               for s in (1, 1, 2)]
    assert sampled[0] == sampled[1] and sampled[0] != sampled[2]
    assert base_model.generate(request, max_new_tokens=8, do_sample=True, top_k=1, seed=3, ignore_eos=True)[0].token_ids == greedy
    assert base_model.generate(request, max_new_tokens=8, do_sample=True, top_p=1e-6, seed=4, ignore_eos=True)[0].token_ids == greedy


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([[0.1, 0.5, 0.3, 0.1]]))
    generator = torch.Generator().manual_seed(0)
    draws = {int(pick_tokens(logits, Sampling(True, top_p=0.6, top_k=0), generator)) for _ in range(200)}
    assert draws == {1, 2}
    draws = {int(pick_tokens(logits, Sampling(True, top_p=0.5, top_k=0), generator)) for _ in range(50)}
    assert draws == {1}
    draws = {int(pick_tokens(logits, Sampling(True, top_p=1.0, top_k=2), generator)) for _ in range(200)}
    assert draws == {1, 2}


def test_empty_batch(base_model):
    assert base_model.generate([]) == []

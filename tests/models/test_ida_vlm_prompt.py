"""Prompts: the published query layouts and the ChatML token stream of Qwen-VL's make_context."""
from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest
import tiktoken

from movieid.models.ida_vlm import IdaVlmError, build_id_query, grounding_query
from movieid.models.ida_vlm.prompt import chat_prompt
from movieid.models.ida_vlm.tokenizer import PAT_STR, QwenTokenizer
from tests.helpers.tiny_ida_vlm import tiny_ranks

MMID = Path("/work/shared/fixtures/mmid/benchmark_mmid.json")


@pytest.fixture(scope="module")
def tokenizer():
    return QwenTokenizer(tiny_ranks())


def test_id_query_matches_the_published_layout():
    query = build_id_query(["Julia", "Victoria"], 3, "and describe their content.")
    assert query == ("Julia is <img></img>\n Victoria is <img></img>\n Watching the following images "
                     "<img></img>\n<img></img>\n<img></img>\n and describe their content.")
    assert build_id_query([], 1, "Describe it.") == "Watching the following images <img></img>\n Describe it."
    with pytest.raises(IdaVlmError):
        build_id_query(["Julia"], 0, "x")


def test_grounding_query_matches_mmid_location_samples():
    expected = "Ben Milo is <img>image_1</img>\n In the image: <img>image_2</img>\n Identify Ben Milo with grounding."
    if MMID.exists():  # the shared fixture, where present, holds the same sample
        sample = next(s for s in json.loads(MMID.read_text()) if s["type"] == "location")
        expected = sample["question"]
        name = sample["ground_target"]
    else:
        name = "Ben Milo"
    assert grounding_query(name) == re.sub(r"<img>.*?</img>", "<img></img>", expected)


def _make_context(tokenizer, query):
    """Qwen-VL's make_context + tokenizer, on an independently built tiktoken encoding: encode
    pieces with image markup as specials, then each <img>..</img> span becomes <img>, the path
    bytes padded with <imgpad> to 256, </img>."""
    ranks = tiny_ranks()
    specials = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", *(f"<|extra_{i}|>" for i in range(205)),
                "<ref>", "</ref>", "<box>", "</box>", "<quad>", "</quad>", "<img>", "</img>", "<imgpad>")
    enc = tiktoken.Encoding("qwen-reference", pat_str=PAT_STR, mergeable_ranks=ranks,
                            special_tokens={t: len(ranks) + i for i, t in enumerate(specials)})
    allowed = set(specials[-9:])

    def encode(text):
        ids = enc.encode(unicodedata.normalize("NFC", text), allowed_special=allowed, disallowed_special=())
        out, k = [], 0
        while k < len(ids):
            if ids[k] == tokenizer.img_start_id:
                end = ids.index(tokenizer.img_end_id, k)
                path = enc.decode_bytes(ids[k + 1:end])
                out += [tokenizer.img_start_id, *path, *[tokenizer.img_pad_id] * (256 - len(path)), tokenizer.img_end_id]
                k = end + 1
            else:
                out.append(ids[k])
                k += 1
        return out
    nl = encode("\n")
    system = [tokenizer.im_start_id, *encode("system"), *nl, *encode("You are a helpful assistant."), tokenizer.im_end_id]
    return (system + nl + [tokenizer.im_start_id] + encode("user") + nl + encode(query) + [tokenizer.im_end_id]
            + nl + [tokenizer.im_start_id] + encode("assistant") + nl)


def test_chat_prompt_is_make_context_with_pads_for_image_content(tokenizer):
    query = "Heizi is <img>Heizi_1.jpg</img>\n Leizi is <img>Leizi_2.jpg</img>\n In the image: <img>x.jpg</img>\n What is Heizi doing?"
    prompt = chat_prompt(tokenizer, query)
    reference = _make_context(tokenizer, query)
    assert len(prompt.ids) == len(reference)
    inside = {s + k for s in prompt.image_starts for k in range(256)}
    assert all(prompt.ids[k] == reference[k] for k in range(len(reference)) if k not in inside)
    assert all(prompt.ids[k] == tokenizer.img_pad_id for k in inside)
    assert [prompt.ids[s - 1] for s in prompt.image_starts] == [tokenizer.img_start_id] * 3
    assert [prompt.ids[s + 256] for s in prompt.image_starts] == [tokenizer.img_end_id] * 3


def test_prompt_for_three_cast_and_five_frames_has_the_expected_length(tokenizer):
    query = build_id_query(["Alice", "Bob", "Carol"], 5, "and describe their content.")
    pieces = re.split(r"<img></img>", query)
    chatml = len(chat_prompt(tokenizer, "").ids)
    text = sum(len(tokenizer.encode(piece)) for piece in pieces)
    prompt = chat_prompt(tokenizer, query)
    assert len(prompt.image_starts) == 8
    assert len(prompt.ids) == chatml + text + 8 * 258
    # ChatML frame: <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n
    #               ... <|im_end|>\n<|im_start|>assistant\n
    frame = ([tokenizer.im_start_id] + tokenizer.encode("system") + tokenizer.encode("\n")
             + tokenizer.encode("You are a helpful assistant.") + [tokenizer.im_end_id] + tokenizer.encode("\n")
             + [tokenizer.im_start_id] + tokenizer.encode("user") + tokenizer.encode("\n"))
    assert prompt.ids[:len(frame)] == frame


def test_unmatched_image_tag_is_an_error(tokenizer):
    with pytest.raises(IdaVlmError, match="unmatched"):
        chat_prompt(tokenizer, "Alice is <img>a.jpg\n Who?")

"""Queries in the published text form, and their ChatML token ids with 256 pad slots per image."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from .errors import IdaVlmError

from .config import IMAGE_TOKENS
from .tokenizer import IMG_END, IMG_START, QwenTokenizer

SYSTEM_PROMPT = "You are a helpful assistant."
_IMAGE_SPAN = re.compile(re.escape(IMG_START) + r".*?" + re.escape(IMG_END), re.DOTALL)


@dataclass(frozen=True)
class Prompt:
    """ChatML token ids; ``image_starts[k]`` is the index of image k's first pad token."""

    ids: list[int]
    image_starts: list[int]


# Text the tokenizer reads as the model's own markup: image, reference, box and quad tags and
# special tokens such as <|im_end|>. A name or caption holding one would be an image to open, a box
# or the end of a turn.
_MODEL_TAG = re.compile(r"</?(?:img|ref|box|quad)>|<\|[^<>|]*\|>")


def model_tags(text: str) -> list[str]:
    """The model tags ``text`` holds (none in text that goes into a prompt or an answer as text)."""
    return list(dict.fromkeys(_MODEL_TAG.findall(text)))


def check_name(name: str) -> str:
    """A person's name as a prompt may hold it: one line, no '<' or '>'."""
    if not name.strip() or any(c in name for c in "<>\n\r"):
        raise IdaVlmError(f"the name {name!r} cannot go into a prompt (an empty name, a line break, "
                          "'<' or '>': a name must never become an image tag)")
    return name


def build_id_query(names: list[str], n_test: int, instruction: str) -> str:
    """The authors' ID-reference layout: one ``Name is <img></img>`` line per cast member, then
    the test images, then the instruction (ID images first, in the order of ``names``)."""
    if n_test < 1:
        raise IdaVlmError("an ID query needs at least one test image")
    names = [check_name(name) for name in names]
    tests = "\n".join([f"{IMG_START}{IMG_END}"] * n_test)
    lines = [f"{name} is {IMG_START}{IMG_END}" for name in names]
    return "\n ".join([*lines, f"Watching the following images {tests}"]) + "\n " + instruction


def grounding_query(name: str) -> str:
    """MM-ID's location prompt: the ID image of ``name``, then the image to search."""
    check_name(name)
    return f"{name} is {IMG_START}{IMG_END}\n In the image: {IMG_START}{IMG_END}\n Identify {name} with grounding."


def count_images(query: str) -> int:
    return len(_IMAGE_SPAN.findall(query))


def chat_prompt(tokenizer: QwenTokenizer, query: str) -> Prompt:
    """Qwen-VL's ``make_context`` for one user turn. Each ``<img>...</img>`` becomes ``<img>``,
    256 pads and ``</img>`` (the text between the tags is ignored: the image comes separately)."""
    query = unicodedata.normalize("NFC", query)
    texts = _IMAGE_SPAN.split(query)
    if any(tag in text for text in texts for tag in (IMG_START, IMG_END)):
        raise IdaVlmError("query has an unmatched <img> or </img> tag")
    nl = tokenizer.encode("\n")
    ids = [tokenizer.im_start_id, *tokenizer.encode("system"), *nl, *tokenizer.encode(SYSTEM_PROMPT),
           tokenizer.im_end_id, *nl, tokenizer.im_start_id, *tokenizer.encode("user"), *nl]
    image_starts = []
    for k, text in enumerate(texts):
        if k:
            ids.append(tokenizer.img_start_id)
            image_starts.append(len(ids))
            ids += [tokenizer.img_pad_id] * IMAGE_TOKENS + [tokenizer.img_end_id]
        ids += tokenizer.encode(text)
    ids += [tokenizer.im_end_id, *nl, tokenizer.im_start_id, *tokenizer.encode("assistant"), *nl]
    return Prompt(ids, image_starts)

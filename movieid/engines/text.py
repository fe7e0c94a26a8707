"""What every VLM engine asks and how its answers become captions, in one place.

A model can answer with chat or grounding markup, a role prefix, more than two sentences,
or control characters (a tiny or untrained model emits bytes like U+0004): a caption is
plain printable text of at most two sentences, and the cast names it mentions are recorded.
"""
from __future__ import annotations

import re
import unicodedata

from ..records import Cast

INSTRUCTION = "Describe in one or two sentences who is doing what, calling each person by name."
GENERAL_INSTRUCTION = "Describe in one or two sentences who is doing what."   # a window without ID images
_MARKUP = re.compile(r"<\|[^|>]*\|>|</?(?:ref|quad|img|imgpad)>|<box>.*?</box>", re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'“(]?[A-Z0-9])")


def printable(text: str) -> str:
    """``text`` without control, format, surrogate, private-use or unassigned characters
    (white space of any kind becomes a space); U+FFFD, a token cut inside a UTF-8 character,
    goes too."""
    out = []
    for char in text:
        category = unicodedata.category(char)
        if char.isspace():
            out.append(" ")
        elif category[0] != "C" and char != "\ufffd":
            out.append(char)
    return "".join(out)


def clean_caption(text: str, max_sentences: int = 2) -> str:
    """Plain text: no ChatML or grounding markup, no role prefix, at most two sentences."""
    text = _MARKUP.sub("", text)
    text = re.sub(r"^\s*(?:assistant|answer)\s*[:\n]\s*", "", text, flags=re.IGNORECASE)
    text = printable(text)
    text = " ".join(text.split())
    sentences = _SENTENCE_END.split(text)
    return " ".join(sentences[:max_sentences]).strip()


def mentioned_names(text: str, cast: Cast) -> tuple[str, ...]:
    """Cast members the text names (by full name or alias), in order of first mention."""
    found: list[tuple[int, str]] = []
    for member in cast.members:
        positions = [m.start() for label in (member.name, *member.aliases) if label.strip()
                     for m in re.finditer(rf"(?<!\w){re.escape(label)}(?!\w)", text, flags=re.IGNORECASE)]
        if positions:
            found.append((min(positions), member.name))
    return tuple(name for _, name in sorted(found))

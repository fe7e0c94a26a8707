"""Text tracks as people read them: SRT and WebVTT cues that follow subtitle conventions.

Every track (captions, audio description) goes through ``layout``: a text is broken at word
boundaries into lines of at most ``max_chars`` characters, at most ``max_lines`` lines a
cue (a longer text becomes consecutive cues sharing its time), and a cue stays on screen
for at least ``min_duration`` seconds where the next item leaves room (see ``layout``); a
cue that would start before the previous one ends is moved after it, so cues never overlap.
The files themselves are written by the ``srt`` and ``webvtt`` libraries, and any text can be
written: control characters and blank lines are taken out of cue text; WebVTT escapes ``&``, ``<``
and ``>`` as its specification says (players would read ``<b>`` or ``<c.red>`` as markup, and
``-->`` ends a cue's text); SRT has no escapes, and players read ``<b>``/``<font>`` tags in it, so
its ``<`` and ``>`` become the look-alike ``‹`` and ``›``.
"""
from __future__ import annotations

import html
import re
import textwrap
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterable, Sequence

BREAK_AFTER = (",", ";", ":", ".", "!", "?")
PUNCTUATION_BONUS = 6     # characters of imbalance a break after punctuation is worth


@dataclass(frozen=True)
class TrackStyle:
    max_lines: int = 2
    max_chars: int = 42
    min_duration: float = 1.0    # seconds a cue stays on screen at least

    def to_json(self) -> dict:
        return {"max_lines": self.max_lines, "max_chars": self.max_chars, "min_duration": self.min_duration}


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str                    # lines joined by "\n"
    identifier: str | None = None


def _wrap(text: str, width: int) -> list[str]:
    # Words longer than a line are the only thing ever broken inside a word.
    return textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False)


def _balance(words: list[str], width: int) -> list[str]:
    """Two lines as even as possible (a break after punctuation is preferred)."""
    best, best_cost = None, None
    for k in range(1, len(words)):
        first, second = " ".join(words[:k]), " ".join(words[k:])
        if len(first) > width or len(second) > width:
            continue
        cost = max(len(first), len(second)) - (PUNCTUATION_BONUS if first.endswith(BREAK_AFTER) else 0)
        if best_cost is None or cost < best_cost:
            best, best_cost = [first, second], cost
    return best or _wrap(" ".join(words), width)


def _lines(text: str, style: TrackStyle) -> list[str]:
    lines = _wrap(text, style.max_chars)
    if len(lines) == 2:
        lines = _balance(text.split(), style.max_chars)
    return lines


# Costs of cutting a text into cues: a cue costs most (use as few as fit), then where it ends
# (a sentence end is free, a clause end cheap, mid-clause dear), then unevenness.
CUE_COST = 1000.0
MID_CLAUSE_COST = 60.0
CLAUSE_END_COST = 20.0


def split_text(text: str, style: TrackStyle = TrackStyle()) -> list[str]:
    """The cue texts for one text: each at most ``max_lines`` lines of at most ``max_chars``.

    As few cues as the text needs, cut where a reader pauses (sentence ends, then clause
    ends) and of similar lengths: a small dynamic programme over the word boundaries.
    """
    words = text.split()
    if not words:
        return []
    room = style.max_lines * style.max_chars
    n = len(words)
    best = [0.0] + [float("inf")] * n      # best[j]: cost of words[:j]
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j - 1, -1, -1):
            chunk = " ".join(words[i:j])
            if len(chunk) > room:
                break
            if len(_wrap(chunk, style.max_chars)) > style.max_lines:
                continue
            end_cost = 0.0 if j == n or chunk.endswith((".", "!", "?")) else \
                CLAUSE_END_COST if chunk.endswith((",", ";", ":")) else MID_CLAUSE_COST
            cost = best[i] + CUE_COST + end_cost + ((room - len(chunk)) / 10) ** 2
            if cost < best[j]:
                best[j], cut[j] = cost, i
    chunks, j = [], n
    while j > 0:
        chunks.append(" ".join(words[cut[j]:j]))
        j = cut[j]
    return ["\n".join(_lines(chunk, style)) for chunk in reversed(chunks)]


def needed_duration(text: str, style: TrackStyle, reading_speed: float) -> float:
    """Seconds the cues of ``text`` need at ``reading_speed`` characters a second."""
    return sum(max(style.min_duration, len(c.replace("\n", " ")) / reading_speed)
               for c in split_text(text, style))


def layout(items: Iterable[tuple[float, float, str, str | None]], style: TrackStyle = TrackStyle(),
           until: float | None = None) -> list[Cue]:
    """Cues for (start, end, text, identifier) items in time order, ending by ``until`` (the film's end).

    An item whose text needs several cues shares its time among them: each gets the
    minimum duration (or an equal share of a shorter item), the rest goes by length. A cue
    shorter than ``min_duration`` is held into the next item's time, but only as far as leaves
    that item ``min_duration`` of its own (all of it, if it is shorter): every item's first
    cue starts before the item ends, and a run of flash cuts cannot push the track later and later.
    Neighbouring items with the same text are one cue.
    """
    kept = [(start, end, chunks, identifier) for start, end, text, identifier in items
            if (chunks := split_text(text, style))]
    merged: list[tuple[float, float, list[str], str | None]] = []
    for start, end, chunks, identifier in kept:
        if merged and merged[-1][2] == chunks and abs(start - merged[-1][1]) < 1e-3:
            merged[-1] = (merged[-1][0], end, chunks, merged[-1][3])
        else:
            merged.append((start, end, chunks, identifier))
    cues: list[Cue] = []
    previous_end = float("-inf")
    for k, (start, end, chunks, identifier) in enumerate(merged):
        if k + 1 < len(merged):
            next_start, next_end = merged[k + 1][:2]
            limit = next_end - min(style.min_duration, max(0.0, next_end - next_start))
        else:
            limit = float("inf") if until is None else until
        # The item's cues share [first, last]: from its start (or the previous cue's end) to its
        # end, or as far past it as the cues' minimum durations need and the limit allows.
        first = max(start, previous_end)
        last = min(max(end, first + style.min_duration * len(chunks)), max(limit, end))
        span = last - first
        base = min(style.min_duration, span / len(chunks))
        weights = [len(c) for c in chunks]
        t = first
        for n, (chunk, weight) in enumerate(zip(chunks, weights)):
            length = base + (span - base * len(chunks)) * weight / sum(weights)
            name = identifier if identifier is None or n == 0 else f"{identifier}-{n + 1}"
            cues.append(Cue(round(t, 3), round(last if n == len(chunks) - 1 else t + length, 3), chunk, name))
            t += length
        previous_end = last
    return cues


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")  # all but tab and newline
_SRT_MARKUP = str.maketrans({"<": "\u2039", ">": "\u203a"})


def cue_lines(text: str) -> str:
    """A cue's text as a file can hold it: no control characters, no blank lines."""
    lines = (" ".join(_CONTROL.sub(" ", line).split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line) or "\u00a0"  # a cue has text, if only a space


def compose_srt(cues: Sequence[Cue]) -> str:
    import srt

    return srt.compose([srt.Subtitle(index=i, start=timedelta(seconds=c.start), end=timedelta(seconds=c.end),
                                     content=cue_lines(c.text).translate(_SRT_MARKUP))
                        for i, c in enumerate(cues, 1)], reindex=False)


def compose_vtt(cues: Sequence[Cue]) -> str:
    import webvtt

    from .video import format_time

    doc = webvtt.WebVTT()
    for c in cues:
        doc.captions.append(webvtt.Caption(format_time(c.start), format_time(c.end),
                                           html.escape(cue_lines(c.text), quote=False), identifier=c.identifier))
    return doc.content


def caption_cues(doc: dict, style: TrackStyle = TrackStyle()) -> list[Cue]:
    """The caption track of an annotation document: one caption per shot."""
    return layout(((s["start"], s["end"], s["caption"], f"shot-{s['index']}") for s in doc["shots"]), style,
                  until=doc["film"].get("duration"))


def render_srt(doc: dict, style: TrackStyle = TrackStyle()) -> str:
    return compose_srt(caption_cues(doc, style))


def render_vtt(doc: dict, style: TrackStyle = TrackStyle()) -> str:
    return compose_vtt(caption_cues(doc, style))

"""An audio-description track that respects dialogue.

Each shot's description (its caption) is placed in the pause without speech nearest to the
shot's start that is long enough to read it (``reading_speed`` characters a second, every
cue at least the track's minimum duration), within ``max_shift`` seconds of the shot.
Where no pause is long enough, the description is shortened to what the longest nearby
pause holds (parentheses dropped, then later sentences, then trailing clauses), or dropped;
either way the reason is recorded in the JSON. A film without an audio track keeps one
line per shot, over the shot.

The result lives in the annotation document: ``audio_description`` (settings, the speech
found, counts) and each shot's ``description``; ``render_ad_vtt``/``render_ad_srt`` write it
as a text track (WebVTT usable as ``<track kind="descriptions">``).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .progress import Progress
from .speech import Segment, VadOptions, detect_speech, has_audio, model_version
from .subtitles import TrackStyle, compose_srt, compose_vtt, layout, needed_duration

log = logging.getLogger(__name__)

PARENTHESES = re.compile(r"\s*\([^()]*\)")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
CLAUSE_BREAK = re.compile(r",\s+|;\s+|\s+(?=(?:with|and|while|as|who|which)\s)")


@dataclass(frozen=True)
class AdOptions:
    reading_speed: float = 15.0  # characters per second
    max_shift: float = 2.0       # seconds a description may move away from its shot's start
    margin: float = 0.2          # seconds kept clear of speech on either side of a description
    spacing: float = 0.1         # seconds between two descriptions

    def to_json(self) -> dict:
        return {"reading_speed": self.reading_speed, "max_shift": self.max_shift, "margin": self.margin,
                "spacing": self.spacing}


def _subtract(free: list[tuple[float, float]], start: float, end: float) -> list[tuple[float, float]]:
    out = []
    for a, b in free:
        if end <= a or start >= b:
            out.append((a, b))
            continue
        if a < start:
            out.append((a, start))
        if end < b:
            out.append((end, b))
    return out


def shorter_versions(text: str) -> list[str]:
    """Shorter forms of a description, longest first: without parentheses, the first
    sentences, the first clauses of the first sentence."""
    found: list[str] = []
    plain = " ".join(PARENTHESES.sub("", text).split())
    for base in dict.fromkeys([text, plain]):
        sentences = SENTENCE_END.split(base)
        found += [" ".join(sentences[:k]) for k in range(len(sentences) - 1, 0, -1)]
    first = SENTENCE_END.split(plain)[0]
    cuts = [m.start() for m in CLAUSE_BREAK.finditer(first)]
    found += [first[:c].rstrip(" ,;:") for c in reversed(cuts)]
    found = [f for f in dict.fromkeys([plain, *found]) if f and f != text]
    return sorted(found, key=len, reverse=True)


def _fit(text: str, free: list[tuple[float, float]], anchor: float, style: TrackStyle, cps: float):
    """The start nearest to ``anchor`` where ``text`` fits in a free interval, or None."""
    need = needed_duration(text, style, cps)
    best = None
    for a, b in free:
        if b - a < need:
            continue
        start = min(max(anchor, a), b - need)
        if best is None or abs(start - anchor) < abs(best[0] - anchor):
            best = (start, start + need)
    return best


def place(doc: dict, speech: Sequence[Segment] | None, options: AdOptions = AdOptions(),
          style: TrackStyle = TrackStyle(), speech_model: str | None = None) -> dict:
    """A copy of ``doc`` with each shot's ``description`` placed around ``speech``
    (None: the film has no audio track)."""
    shots = doc["shots"]
    film_start = shots[0]["start"] if shots else 0.0
    film_end = shots[-1]["end"] if shots else 0.0
    free = [(film_start, film_end)]
    for seg in speech or ():
        free = _subtract(free, seg.start - options.margin, seg.end + options.margin)
    counts = {"placed": 0, "shortened": 0, "dropped": 0, "no_audio": 0}
    new_shots = []
    for shot in shots:
        text = shot["caption"]
        if speech is None:
            description = {"status": "no_audio", "text": text, "start": shot["start"], "end": shot["end"],
                           "reason": "the film has no audio track: one line per shot"}
        elif not speech:   # sound but no speech (silence, music): nothing to keep clear of
            description = {"status": "placed", "text": text, "start": shot["start"], "end": shot["end"],
                           "reason": "no speech in the film: one line per shot"}
        else:
            window = [(max(a, shot["start"] - options.max_shift), min(b, shot["end"] + options.max_shift))
                      for a, b in free]
            window = [(a, b) for a, b in window if b > a]
            spot = _fit(text, window, shot["start"], style, options.reading_speed)
            status, reason, placed_text = "placed", None, text
            if spot is None:
                longest = max((b - a for a, b in window), default=0.0)
                for shorter in shorter_versions(text):
                    spot = _fit(shorter, window, shot["start"], style, options.reading_speed)
                    if spot is not None:
                        status, placed_text = "shortened", shorter
                        reason = (f"the longest time free of speech and other descriptions within "
                                  f"{options.max_shift:g} s of the shot "
                                  f"is {longest:.1f} s; {len(text)} characters need "
                                  f"{needed_duration(text, style, options.reading_speed):.1f} s at "
                                  f"{options.reading_speed:g} characters/s")
                        break
            if spot is None:
                description = {"status": "dropped", "text": None, "start": None, "end": None,
                               "reason": (f"no time free of speech and other descriptions of {style.min_duration:g} s "
                                          f"or more within {options.max_shift:g} s of the shot"
                                          if longest < style.min_duration
                                          else f"the longest time free of speech and other descriptions within "
                                               f"{options.max_shift:g} s of the shot is {longest:.1f} s, too short for "
                                               "any form of the description")}
            else:
                start, end = round(spot[0], 3), round(spot[1], 3)
                free = _subtract(free, start - options.spacing, end + options.spacing)
                description = {"status": status, "text": placed_text, "start": start, "end": end, "reason": reason}
        counts[description["status"]] += 1
        new_shots.append({**shot, "description": description})
    section = {
        "has_audio": speech is not None,
        "speech_model": speech_model if speech is not None else None,
        "settings": {**options.to_json(), **style.to_json()},
        "speech": [{"start": s.start, "end": s.end} for s in speech or ()],
        "counts": counts,
    }
    return {**doc, "shots": new_shots, "audio_description": section}


def describe_film(doc: dict, film: str | Path, options: AdOptions = AdOptions(), style: TrackStyle = TrackStyle(),
                  vad: VadOptions = VadOptions(), progress: Progress = None) -> dict:
    """Detect speech in ``film`` and place the descriptions of ``doc`` around it."""
    if not has_audio(film):
        log.warning("%s: no audio track: the description track holds the captions, one line per shot", film)
        return place(doc, None, options, style)
    speech = detect_speech(film, vad, progress=progress, duration=doc["film"].get("duration"))
    return place(doc, speech, options, style, speech_model=model_version())


def description_cues(doc: dict, style: TrackStyle = TrackStyle()):
    if "audio_description" not in doc:
        raise ValueError("the document has no audio description (annotate with --ad)")
    items = [(d["start"], d["end"], d["text"], f"ad-{s['index']}")
             for s in doc["shots"] if (d := s.get("description")) and d["text"]]
    return layout(items, style, until=doc["film"].get("duration"))


def render_ad_vtt(doc: dict, style: TrackStyle = TrackStyle()) -> str:
    return compose_vtt(description_cues(doc, style))


def render_ad_srt(doc: dict, style: TrackStyle = TrackStyle()) -> str:
    return compose_srt(description_cues(doc, style))

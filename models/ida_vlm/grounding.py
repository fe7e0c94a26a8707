"""Grounding answers: ``<ref>Name</ref><box>(x1,y1),(x2,y2)</box>`` on a 0..1000 scale -> pixel boxes."""
from __future__ import annotations

import re
from dataclasses import dataclass

_MARKUP = re.compile(r"<ref>(.*?)</ref>|<box>\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*,\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)</box>", re.DOTALL)


@dataclass(frozen=True)
class Box:
    """A box in pixels of the image it was asked about; ``name`` is the ``<ref>`` before it, if any."""

    name: str | None
    x1: float
    y1: float
    x2: float
    y2: float


def parse_boxes(text: str, width: int, height: int) -> list[Box]:
    """Every box in an answer, in order; a ``<ref>`` names all boxes up to the next ``<ref>``."""
    boxes, name = [], None
    for match in _MARKUP.finditer(text):
        if match.group(1) is not None:
            name = match.group(1).strip()
            continue
        x1, y1, x2, y2 = (int(v) for v in match.group(2, 3, 4, 5))
        boxes.append(Box(name, x1 / 1000 * width, y1 / 1000 * height, x2 / 1000 * width, y2 / 1000 * height))
    return boxes


def box_for(boxes: list[Box], name: str) -> Box | None:
    """The first box referring to ``name`` (case-insensitive), else the first box, else None."""
    named = [box for box in boxes if box.name and box.name.casefold() == name.strip().casefold()]
    return (named or boxes or [None])[0]

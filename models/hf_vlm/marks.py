"""Face hints (``--mark-faces``): each recognised person's face boxed in a colour the prompt names.

Training-free audio-description systems pair a face recogniser with a VLM this way: the model
is told "Alice (red), Bob (blue)" and sees those boxes on the test frames. A person keeps one
colour across a window's frames; colours are given in order of first appearance (frame by
frame, left to right). People beyond the palette are left unmarked.
"""
from __future__ import annotations

import numpy as np

from .window import TestFrame

# Distinct, nameable colours (the prompt says their names).
PALETTE: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (230, 25, 75)), ("blue", (0, 100, 255)), ("green", (60, 200, 75)), ("yellow", (255, 225, 25)),
    ("magenta", (240, 50, 230)), ("cyan", (70, 240, 240)), ("orange", (245, 130, 48)), ("white", (255, 255, 255)),
)


def assign_colours(frames: tuple[TestFrame, ...] | list[TestFrame]) -> dict[str, tuple[str, tuple[int, int, int]]]:
    """Name -> (colour name, RGB), in order of first appearance."""
    colours: dict[str, tuple[str, tuple[int, int, int]]] = {}
    for frame in frames:
        for mark in sorted(frame.faces, key=lambda m: m.box[0]):
            if mark.name not in colours and len(colours) < len(PALETTE):
                colours[mark.name] = PALETTE[len(colours)]
    return colours


def line_width(height: int, width: int) -> int:
    """Thick enough to survive the processor's downscaling to a few hundred pixels."""
    return max(2, round(min(height, width) / 100))


def draw_marks(frame: TestFrame, colours: dict[str, tuple[str, tuple[int, int, int]]]) -> np.ndarray:
    """A copy of the frame with each coloured face box drawn as an outline inside the box edges."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(np.ascontiguousarray(frame.pixels))
    draw = ImageDraw.Draw(image)
    h, w = frame.pixels.shape[:2]
    width = line_width(h, w)
    for mark in frame.faces:
        if mark.name not in colours:
            continue
        x1, y1, x2, y2 = (round(v) for v in mark.box)
        x1, y1 = min(max(x1, 0), w - 1), min(max(y1, 0), h - 1)
        x2, y2 = min(max(x2, 0), w - 1), min(max(y2, 0), h - 1)
        if x2 > x1 and y2 > y1:
            draw.rectangle((x1, y1, x2, y2), outline=colours[mark.name][1], width=width)
    return np.asarray(image)


def legend(colours: dict[str, tuple[str, tuple[int, int, int]]]) -> str:
    """The sentence that names the colours: "Faces are outlined: Alice (red), Bob (blue)."."""
    if not colours:
        return ""
    return "Faces are outlined: " + ", ".join(f"{name} ({colour})" for name, (colour, _) in colours.items()) + "."

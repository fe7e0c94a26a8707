"""The ID-reference prompt of IDA-VLM as structured chat messages, for the model's own chat template.

For each cast member in the window "<Name> is" and their ID image, then "Watching the following
images" and the test frames, then the instruction (with ``--mark-faces``, the colour legend
first). Images are ``{"type": "image"}`` entries: the processor's template writes each model's
own image placeholder, and the images are passed in the same order.
"""
from __future__ import annotations

from ..ida_vlm.prompt import check_name

WATCHING = "Watching the following images "


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


def build_messages(names: list[str], n_frames: int, instruction: str, legend: str = "") -> list[dict]:
    """One user turn: ``names`` each followed by an ID image, then ``n_frames`` test images."""
    content: list[dict] = []
    for i, name in enumerate(names):
        content += [_text(("\n" if i else "") + f"{check_name(name)} is "), {"type": "image"}]
    content.append(_text(("\n" if names else "") + WATCHING))
    for i in range(n_frames):
        if i:
            content.append(_text("\n"))
        content.append({"type": "image"})
    content.append(_text("\n" + (legend + " " if legend else "") + instruction))
    return [{"role": "user", "content": content}]

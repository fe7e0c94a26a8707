"""The image window an engine sees for one shot: cast ID images first, then test frames.

IDA-VLM was trained on samples of at most eight images, ID and test images together, so a
window never holds more than ``max_images``. Test frames come from the shot's keyframes;
the remaining places go to the ID images of the cast members most likely on screen (named
in the shot first, then by best face similarity), listed in cast order. When more named people are present than
there is room for beside the test frames, test frames give way (down to one) so that
everyone recognised keeps their ID image.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .cast import Cast
from .identity import ShotFaces
from .shots import Shot

Role = Literal["id", "test", "general"]


@dataclass(frozen=True)
class WindowImage:
    role: Role
    name: str | None = None     # the cast member an ID image shows
    path: Path | None = None    # ID images: the reference photo
    frame: int | None = None    # test images: the film frame
    time: float | None = None

    def to_json(self) -> dict:
        if self.role == "id":
            return {"role": "id", "name": self.name, "path": str(self.path)}
        return {"role": self.role, "frame": self.frame, "time": round(float(self.time or 0.0), 4)}


@dataclass(frozen=True)
class Window:
    shot: Shot
    images: tuple[WindowImage, ...]

    @property
    def ids(self) -> list[WindowImage]:
        return [i for i in self.images if i.role == "id"]

    @property
    def tests(self) -> list[WindowImage]:
        return [i for i in self.images if i.role == "test"]


def build_window(shot_faces: ShotFaces, cast: Cast, max_images: int, frames_per_shot: int) -> Window:
    if max_images < 1:
        raise ValueError("a window needs room for at least one image")
    keyframes = shot_faces.keyframes
    n_test = max(1, min(frames_per_shot, len(keyframes), max_images))
    named = sum(1 for p in shot_faces.people if p.name)
    if max_images - n_test < named:
        n_test = max(1, max_images - named)
    picks = np.linspace(0, len(keyframes) - 1, n_test).round().astype(int) if keyframes else []
    tests = [WindowImage("test", frame=keyframes[i].frame, time=keyframes[i].time)
             for i in sorted(set(int(i) for i in picks))]
    room = max_images - len(tests)
    chosen = set(shot_faces.likely_cast(cast)[:room]) if len(cast) else set()
    # In cast order, not by likelihood: windows that hold the same people then share their
    # whole ID prefix, which the VLM engine computes once.
    ids = [WindowImage("id", name=m.name, path=m.id_image) for m in cast.members if m.name in chosen]
    return Window(shot=shot_faces.shot, images=tuple(ids + tests))

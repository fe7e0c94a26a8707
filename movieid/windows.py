"""The image window an engine sees for one shot: cast ID images first, then test frames.

IDA-VLM was trained on samples of at most eight images, ID and test images together, so a
window never holds more than ``max_images``. Test frames come from the shot's keyframes;
the remaining places go to the ID images of the cast members most likely on screen (named
in the shot first, then by best face similarity), listed in cast order. When more named
people are present than there is room for beside the test frames, test frames give way
(down to one) so that everyone recognised keeps their ID image.
"""
from __future__ import annotations

import numpy as np

from .config import WindowConfig
from .records import Cast, ShotPeople, Window, WindowImage


def likely_cast(people: ShotPeople, cast: Cast) -> list[str]:
    """Cast names ranked by how likely they are on screen: named first, then by best similarity."""
    named = {p.name for p in people.people if p.name}
    best = np.full(len(cast), -1.0)
    for person in people.people:
        if len(person.member_similarities):
            best = np.maximum(best, person.member_similarities)
    order = sorted(range(len(cast)), key=lambda i: (cast.names[i] not in named, -best[i], i))
    return [cast.names[i] for i in order]


def build_window(people: ShotPeople, cast: Cast, config: WindowConfig) -> Window:
    keyframes = people.keyframes
    n_test = max(1, min(config.frames_per_shot, len(keyframes), config.max_images))
    named = sum(1 for p in people.people if p.name)
    if config.max_images - n_test < named:
        n_test = max(1, config.max_images - named)
    picks = np.linspace(0, len(keyframes) - 1, n_test).round().astype(int) if keyframes else []
    tests = [WindowImage("test", frame=keyframes[i].frame, time=keyframes[i].time)
             for i in sorted(set(int(i) for i in picks))]
    room = config.max_images - len(tests)
    chosen = set(likely_cast(people, cast)[:room]) if len(cast) else set()
    # In cast order, not by likelihood: windows that hold the same people then share their
    # whole ID prefix, which the VLM engine computes once.
    ids = [WindowImage("id", name=m.name, path=m.id_image) for m in cast.members if m.name in chosen]
    return Window(shot=people.shot, images=tuple(ids + tests))

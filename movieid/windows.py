"""The image window an engine sees for one shot: cast ID images first, then test frames.

IDA-VLM was trained on samples of at most eight images, ID and test images together, so a
window never holds more than ``max_images``. Test frames come from the shot's keyframes; the
remaining places go to the ID images of the cast members most likely on screen, listed in
cast order.

A window is built from the shot's own faces as soon as they are analysed, so that captioning
can start while the rest of the film is still being analysed (names are decided film-wide,
once every shot is in: ``identity``). The evidence of one shot:

* a member's **score** is the best similarity of any face of the shot to any of the member's
  reference photos; it ranks the members;
* a member is **likely present** when a track of the shot has them as its closest member, with
  a mean similarity (over the track's faces, best photo each) of at least the face backend's
  match threshold; a track counts for one member at most.

Members likely present come first, then the others by score (cast order breaks ties). When
more members are likely present than there is room for beside the test frames, test frames
give way (down to one) so that each keeps their ID image. A window only chooses what the model
is shown: the names written in the outputs are always identity's.
"""
from __future__ import annotations

import numpy as np

from .config import WindowConfig
from .records import Cast, ShotFaces, Window, WindowImage


def likely_cast(shot: ShotFaces, cast: Cast, threshold: float) -> tuple[list[str], int]:
    """Cast names ranked by how likely they are on screen, and how many are likely present."""
    if not len(cast):
        return [], 0
    score = np.full(len(cast), -np.inf, np.float32)
    present: set[int] = set()
    for track in shot.tracks:
        sims = cast.track_similarities(track)            # [faces, members]
        score = np.maximum(score, sims.max(axis=0))
        mean = sims.mean(axis=0)
        closest = int(np.argmax(mean))
        if mean[closest] >= threshold:
            present.add(closest)
    order = sorted(range(len(cast)), key=lambda i: (i not in present, -float(score[i]), i))
    return [cast.names[i] for i in order], len(present)


def build_window(shot: ShotFaces, cast: Cast, config: WindowConfig, threshold: float) -> Window:
    """The window of one analysed shot; ``threshold`` is the face backend's match threshold."""
    keyframes = shot.keyframes
    ranked, present = likely_cast(shot, cast, threshold)
    n_test = max(1, min(config.frames_per_shot, len(keyframes), config.max_images))
    if config.max_images - n_test < present:
        n_test = max(1, config.max_images - present)
    picks = np.linspace(0, len(keyframes) - 1, n_test).round().astype(int) if keyframes else []
    tests = [WindowImage("test", frame=keyframes[i].frame, time=keyframes[i].time)
             for i in sorted(set(int(i) for i in picks))]
    chosen = set(ranked[:config.max_images - len(tests)])
    # In cast order, not by likelihood: windows that hold the same people then share their
    # whole ID prefix, which the VLM engines compute once.
    ids = [WindowImage("id", name=m.name, path=m.id_image) for m in cast.members if m.name in chosen]
    return Window(shot=shot.shot, images=tuple(ids + tests))

"""Faces of one shot linked into tracks: one track per person across the shot's analysed frames.

Frame by frame, each face joins the track it is most like (most similar pairs first), if it
is like it enough; two faces of one frame never join the same track, however alike.
"""
from __future__ import annotations

from .records import Face, Track, unit

import numpy as np

LINK_SLACK = 0.05   # linking one person's faces within a shot is a bit more lenient than naming


def link(faces: list[Face], threshold: float) -> tuple[Track, ...]:
    """Group a shot's faces into tracks, in the order the tracks start."""
    tracks: list[list[Face]] = []
    by_frame: dict[int, list[Face]] = {}
    for face in faces:
        by_frame.setdefault(face.frame, []).append(face)
    for frame in sorted(by_frame):
        here = by_frame[frame]
        means = [unit(np.mean([f.embedding for f in track], axis=0)) for track in tracks]
        pairs = sorted(((float(mean @ face.embedding), i, j) for i, mean in enumerate(means)
                        for j, face in enumerate(here)), reverse=True)
        used_tracks, used_faces = set(), set()
        for similarity, i, j in pairs:
            if similarity < threshold - LINK_SLACK:
                break
            if i in used_tracks or j in used_faces:
                continue
            tracks[i].append(here[j])
            used_tracks.add(i)
            used_faces.add(j)
        tracks.extend([face] for j, face in enumerate(here) if j not in used_faces)
    return tuple(Track(tuple(track)) for track in tracks)

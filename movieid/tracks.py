"""Faces of one shot linked into tracks: one track per person across the shot's analysed frames.

Frame by frame, each face joins the track it is most like, if it is like it enough: by
embedding alone, or (a little more leniently) when its box also overlaps the box the track
had in the previous analysed frame, since within a shot a face that stays where it was is
most likely the same person turned or blurred. Two faces of one frame never join one track.
"""
from __future__ import annotations

import numpy as np

from .records import Face, Track, unit

LINK_SLACK = 0.05   # linking one person's faces within a shot is a bit more lenient than naming
OVERLAP_IOU = 0.5   # boxes overlapping this much in consecutive analysed frames ...
OVERLAP_SLACK = 0.10  # ... link with this much slack below the threshold
OVERLAP_WEIGHT = 0.1  # how much overlap adds to a pair's affinity when choosing links


def link(faces: list[Face], threshold: float) -> tuple[Track, ...]:
    """Group a shot's faces into tracks, in the order the tracks start."""
    tracks: list[list[Face]] = []
    by_frame: dict[int, list[Face]] = {}
    for face in faces:
        by_frame.setdefault(face.frame, []).append(face)
    previous = None
    for frame in sorted(by_frame):
        here = by_frame[frame]
        pairs = []
        for i, track in enumerate(tracks):
            mean = unit(np.mean([f.embedding for f in track], axis=0))
            last = track[-1]
            for j, face in enumerate(here):
                similarity = float(mean @ face.embedding)
                iou = last.box.iou(face.box) if last.frame == previous else 0.0
                slack = OVERLAP_SLACK if iou >= OVERLAP_IOU else LINK_SLACK
                if similarity >= threshold - slack:
                    pairs.append((similarity + OVERLAP_WEIGHT * iou, i, j))
        used_tracks, used_faces = set(), set()
        for _, i, j in sorted(pairs, reverse=True):
            if i in used_tracks or j in used_faces:
                continue
            tracks[i].append(here[j])
            used_tracks.add(i)
            used_faces.add(j)
        tracks.extend([face] for j, face in enumerate(here) if j not in used_faces)
        previous = frame
    return tuple(Track(tuple(track)) for track in tracks)

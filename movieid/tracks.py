"""Faces of one shot linked into tracks: one track per person across the shot's analysed frames.

Frame by frame, each face joins the track it is most like, if it is like it enough. How like
depends on where the face is: a face whose box overlaps the box the track had in the previous
analysed frame links most leniently (within a shot, a face that stays where it was is most
likely the same person turned or blurred); one near where the track was last seen a little
less so; a face far from it (another side of the frame) only by embedding, as strictly as a
name, so that a person leaving at one edge is not continued by another entering at the other.
Two faces of one frame never join one track.

Linking face by face lets a track drift: through a dissolve, each frame is like the one before
while the last is another person. ``split_changes`` cuts a linked track where the cast says its
person changes.
"""
from __future__ import annotations

import numpy as np

from .records import Face, Track, unit

OVERLAP_IOU = 0.5     # boxes overlapping this much in consecutive analysed frames ...
OVERLAP_SLACK = 0.10  # ... link with this much slack below the threshold
NEAR = 2.0            # a face within this many face sizes of the track's last box ...
LINK_SLACK = 0.05     # ... links with this much slack; farther away it needs the threshold itself
OVERLAP_WEIGHT = 0.1  # how much overlap adds to a pair's affinity when choosing links


def _slack(last: Face, face: Face, consecutive: bool) -> tuple[float, float]:
    """(slack below the threshold, overlap) for continuing a track whose last face is ``last``."""
    iou = last.box.iou(face.box) if consecutive else 0.0
    if iou >= OVERLAP_IOU:
        return OVERLAP_SLACK, iou
    (x1, y1), (x2, y2) = last.box.center, face.box.center
    near = np.hypot(x1 - x2, y1 - y2) <= NEAR * max(last.box.size, face.box.size)
    return (LINK_SLACK if near else 0.0), iou


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
                slack, iou = _slack(last, face, last.frame == previous)
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


def split_changes(track: Track, member_similarities: np.ndarray, threshold: float) -> list[slice]:
    """The parts of ``track`` (as ranges of its faces, in order; one part if it is not cut) where
    the cast says its person changes: a cut goes where the faces before and after are least
    alike, among the cuts where they are not alike at ``threshold`` and each side on its own is
    another member's (``member_similarities`` [faces, members]: each side's closest member by
    mean similarity reaches the threshold, and the two differ). The parts are cut again the same
    way. Faces only unlike the rest (turned, blurred, or someone outside the cast) are left to
    the linker's judgement: on embeddings alone a profile of the same person can be as far from
    the frontal face as another person is."""
    embeddings = np.stack([f.embedding for f in track.faces])

    def parts(begin: int, end: int) -> list[slice]:
        cut = None
        for k in range(begin + 1, end):
            alike = float(unit(embeddings[begin:k].mean(axis=0)) @ unit(embeddings[k:end].mean(axis=0)))
            if (alike < threshold and _other_members(member_similarities[begin:k], member_similarities[k:end],
                                                     threshold)
                    and (cut is None or alike < cut[0])):
                cut = (alike, k)
        return [slice(begin, end)] if cut is None else parts(begin, cut[1]) + parts(cut[1], end)

    return parts(0, len(track.faces))


def _other_members(before: np.ndarray, after: np.ndarray, threshold: float) -> bool:
    """Whether each side's closest member (by mean similarity) reaches ``threshold`` and they differ."""
    if before.shape[1] == 0:
        return False
    a, b = before.mean(axis=0), after.mean(axis=0)
    return int(a.argmax()) != int(b.argmax()) and a.max() >= threshold and b.max() >= threshold

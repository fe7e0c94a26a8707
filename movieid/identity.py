"""Who is who: each track of each shot gets a cast name or a film-wide "Unknown n" label.

1. A track takes a cast name only on consistent evidence: the member must be the best
   match in most of the track's faces and the mean similarity must reach the backend's
   threshold; a track seen in a single keyframe of a multi-keyframe shot needs a margin on
   top. One name is given to at most one track per shot (the strongest claim wins).
2. Tracks left unnamed are clustered across the whole film (online, by mean embedding),
   and clusters are labelled "Unknown 1", "Unknown 2", ... in order of first appearance.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .records import UNKNOWN_PREFIX, Appearance, Cast, ShotFaces, ShotPeople, Track, unit

SINGLE_SIGHTING_MARGIN = 0.03


@dataclass(frozen=True, eq=False)
class _Evidence:
    """How one track compares with the cast."""

    similarities: np.ndarray     # [faces, members]
    mean: np.ndarray             # [members]
    best: int                    # the member with the highest mean (-1: no cast)


def _evidence(track: Track, cast: Cast) -> _Evidence:
    sims = np.stack([cast.similarities(f.embedding) for f in track.faces])
    mean = sims.mean(axis=0) if len(cast) else np.zeros(0, np.float32)
    return _Evidence(sims, mean, int(np.argmax(mean)) if len(cast) else -1)


def _names(shot: ShotFaces, evidence: list[_Evidence], cast: Cast, threshold: float) -> list[str | None]:
    """The cast name of each track of one shot, or None."""
    claims: list[tuple[float, int, str]] = []
    for k, (track, ev) in enumerate(zip(shot.tracks, evidence)):
        if ev.best < 0:
            continue
        votes = int(np.sum((ev.similarities.argmax(axis=1) == ev.best) & (ev.similarities[:, ev.best] >= threshold)))
        needed = threshold + (SINGLE_SIGHTING_MARGIN if len(track.faces) == 1 and len(shot.keyframes) > 1 else 0.0)
        if ev.mean[ev.best] >= needed and votes * 2 >= len(track.faces):
            claims.append((float(ev.mean[ev.best]), k, cast.names[ev.best]))
    names: list[str | None] = [None] * len(shot.tracks)
    taken: set[str] = set()
    for _, k, name in sorted(claims, key=lambda c: -c[0]):
        if name not in taken:
            names[k] = name
            taken.add(name)
    return names


def _unknown_labels(shots: list[ShotFaces], names: list[list[str | None]], threshold: float) -> tuple[dict, int]:
    """``(shot, track) -> "Unknown n"`` for the unnamed tracks, clustered film-wide in order
    of appearance (left to right within a shot); and the number of labels."""
    centroids: list[np.ndarray] = []
    counts: list[int] = []
    labels = {}
    for s, (shot, shot_names) in enumerate(zip(shots, names)):
        order = sorted(range(len(shot.tracks)), key=lambda k: shot.tracks[k].center_x)
        for k in order:
            if shot_names[k]:
                continue
            emb = shot.tracks[k].embedding
            sims = [float(c @ emb) for c in centroids]
            best = int(np.argmax(sims)) if sims else -1
            if best < 0 or sims[best] < threshold:
                centroids.append(emb)
                counts.append(1)
                best = len(centroids) - 1
            else:
                counts[best] += 1
                centroids[best] = unit(centroids[best] * (counts[best] - 1) + emb)
            labels[s, k] = f"{UNKNOWN_PREFIX} {best + 1}"
    return labels, len(centroids)


def identify(shots: list[ShotFaces], cast: Cast, threshold: float) -> tuple[list[ShotPeople], int]:
    """Every shot's people, named or labelled; and how many Unknown labels the film uses."""
    evidence = [[_evidence(track, cast) for track in shot.tracks] for shot in shots]
    names = [_names(shot, ev, cast, threshold) for shot, ev in zip(shots, evidence)]
    labels, unknown_count = _unknown_labels(shots, names, threshold)
    result = []
    for s, shot in enumerate(shots):
        people = []
        for k, (track, ev, name) in enumerate(zip(shot.tracks, evidence[s], names[s])):
            member = cast.names.index(name) if name else ev.best
            similarity = float(ev.mean[member]) if member >= 0 else 0.0
            if member >= 0 and name is None:   # unnamed: each face's closest member
                face_sims = tuple(float(f.max()) for f in ev.similarities)
            else:
                face_sims = tuple(float(f[member]) if member >= 0 else 0.0 for f in ev.similarities)
            people.append(Appearance(track, name, labels.get((s, k)), similarity, face_sims,
                                     ev.similarities.max(axis=0) if len(cast) else np.zeros(0, np.float32)))
        result.append(ShotPeople(shot.shot, shot.keyframes, tuple(people)))
    return result, unknown_count

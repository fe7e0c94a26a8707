"""Who is who: the film's tracks grouped into people, and people named from the cast.

1. **People across the film.** Every track of every shot is clustered film-wide by average
   linkage on track embeddings, merging only while the two groups' average similarity
   reaches ``cluster_threshold`` (stricter than the backend's match threshold: an extra
   person costs less than two people made one). Two tracks that share a frame are never one
   person (a cannot-link constraint), with or without a cast.
2. **Naming, open-set, per person.** A person's similarity to a member is the mean, over
   the person's faces, of the best match among the member's reference photos. The closest
   member names the person only if that similarity beats, each by a margin, (a) the match
   threshold, (b) the runner-up member and (c) the *strangers' level*: how well the film's
   other people match that member (people seen together with this one, or not alike it,
   are others; people alike it and never seen with it may be the same person in other
   light). The smallest of the three margins, over ``confidence_margin``, is the confidence (0..1);
   a name needs ``min_confidence``. So a member names one person, or several alike people
   never seen together; a look-alike stranger stays Unknown whenever the member, or anyone
   else as like the member, is in the film.
3. People left unnamed are "Unknown 1", "Unknown 2", ... in order of first appearance (left
   to right within a shot).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import IdentityConfig
from .records import UNKNOWN_PREFIX, Appearance, Cast, ShotFaces, ShotPeople, Track, unit

def cluster_threshold_for(threshold: float) -> float:
    """Film-wide clustering threshold for a backend that does not set one."""
    return threshold + 0.3 * (1.0 - threshold)


def confidence_margin_for(threshold: float) -> float:
    """The margin that gives confidence 1, for a backend that does not set one."""
    return 0.5 * (1.0 - threshold)


@dataclass(frozen=True, eq=False)
class _Person:
    """One film-wide cluster of tracks and its evidence against the cast."""

    tracks: tuple[tuple[int, int], ...]    # (shot, track) pairs, in order of appearance
    faces: np.ndarray                      # [faces, members] best-photo similarity per face
    embedding: np.ndarray
    frames: frozenset[tuple[int, int]]    # (shot, frame) pairs it is seen in

    @property
    def member_similarity(self) -> np.ndarray:
        return self.faces.mean(axis=0)


def _sharing_a_frame(frames: list[frozenset]) -> np.ndarray:
    return np.array([[bool(a & b) for b in frames] for a in frames], bool).reshape(len(frames), len(frames))


def cluster_tracks(tracks: list[Track], shot_of: list[int], threshold: float) -> list[list[int]]:
    """Average-linkage clusters of ``tracks`` (indices; ``shot_of`` their shots), never
    joining two that share a frame; each cluster's indices ascending, clusters ordered by
    their first index."""
    n = len(tracks)
    if n == 0:
        return []
    emb = np.stack([t.embedding for t in tracks]).astype(np.float64)
    sim = emb @ emb.T
    apart = _sharing_a_frame([frozenset((s, f) for f in t.frames) for t, s in zip(tracks, shot_of)])
    np.fill_diagonal(sim, -np.inf)
    sizes = np.ones(n)
    alive = np.ones(n, bool)
    members = [[i] for i in range(n)]
    while True:
        allowed = np.where(apart | ~alive[:, None] | ~alive[None, :], -np.inf, sim)
        a, b = np.unravel_index(int(np.argmax(allowed)), allowed.shape)
        if allowed[a, b] < threshold:
            break
        a, b = min(a, b), max(a, b)
        sim[a, :] = (sizes[a] * sim[a, :] + sizes[b] * sim[b, :]) / (sizes[a] + sizes[b])
        sim[:, a] = sim[a, :]
        sim[a, a] = -np.inf
        apart[a, :] |= apart[b, :]
        apart[:, a] = apart[a, :]
        sizes[a] += sizes[b]
        alive[b] = False
        members[a] += members[b]
    return sorted((sorted(members[i]) for i in range(n) if alive[i]), key=lambda c: c[0])


def _claims(people: list[_Person], threshold: float, confidence_margin: float) -> list[tuple[int, float, float]]:
    """Per person: (closest member, margin over the runner-up member, confidence)."""
    if not people or people[0].faces.shape[1] == 0:
        return [(-1, 0.0, 0.0)] * len(people)
    sims = np.stack([p.member_similarity for p in people])            # [people, members]
    emb = np.stack([p.embedding for p in people])
    alike = emb @ emb.T >= threshold
    seen_together = _sharing_a_frame([p.frames for p in people])
    claims = []
    for c in range(len(people)):
        order = np.argsort(-sims[c], kind="stable")
        best = int(order[0])
        runner_up = float(sims[c, order[1]]) if len(order) > 1 else -1.0
        others = [o for o in range(len(people)) if o != c and (seen_together[c, o] or not alike[c, o])]
        strangers = max((float(sims[o, best]) for o in others), default=-1.0)
        s = float(sims[c, best])
        evidence = min(s - threshold, s - runner_up, s - strangers)
        claims.append((best, s - runner_up, float(np.clip(evidence / confidence_margin, 0.0, 1.0)) if evidence > 0 else 0.0))
    return claims


def identify(shots: list[ShotFaces], cast: Cast, threshold: float,
             min_confidence: float = IdentityConfig.min_confidence, cluster_threshold: float | None = None,
             confidence_margin: float | None = None) -> tuple[list[ShotPeople], int]:
    """Every shot's people, named or labelled; and how many Unknown labels the film uses.
    ``threshold``, ``cluster_threshold`` and ``confidence_margin`` are the backend's."""
    cluster_threshold = cluster_threshold_for(threshold) if cluster_threshold is None else cluster_threshold
    confidence_margin = confidence_margin_for(threshold) if confidence_margin is None else confidence_margin
    # Tracks in order of appearance: shot by shot, left to right.
    keys = [(s, k) for s, shot in enumerate(shots)
            for k in sorted(range(len(shot.tracks)), key=lambda k: shot.tracks[k].center_x)]
    tracks = [shots[s].tracks[k] for s, k in keys]
    face_sims = {key: np.stack([cast.similarities(f.embedding) for f in track.faces])
                 for key, track in zip(keys, tracks)}
    people = []
    for cluster in cluster_tracks(tracks, [s for s, _ in keys], cluster_threshold):
        members = [keys[i] for i in cluster]
        faces = [f for i in cluster for f in tracks[i].faces]
        people.append(_Person(tuple(members), np.concatenate([face_sims[m] for m in members]),
                              unit(np.mean([f.embedding for f in faces], axis=0)),
                              frozenset((keys[i][0], f) for i in cluster for f in tracks[i].frames)))
    claims = _claims(people, threshold, confidence_margin)
    names, labels = [], []
    for (best, _, confidence) in claims:
        named = best >= 0 and confidence > 0 and confidence >= min_confidence
        names.append(cast.names[best] if named else None)
        labels.append(None if named else f"{UNKNOWN_PREFIX} {sum(1 for l in labels if l) + 1}")
    where = {key: c for c, person in enumerate(people) for key in person.tracks}

    result = []
    for s, shot in enumerate(shots):
        found = []
        for k, track in enumerate(shot.tracks):
            c = where[s, k]
            best, margin, confidence = claims[c]
            sims = face_sims[s, k]
            member_sims = sims.max(axis=0) if len(cast) else np.zeros(0, np.float32)
            per_face = tuple(float(f[best]) if best >= 0 else 0.0 for f in sims)
            found.append(Appearance(track, names[c], labels[c], float(np.mean(per_face)), per_face, member_sims,
                                    cluster=c, cluster_frames=len(people[c].frames), margin=margin,
                                    confidence=confidence))
        result.append(ShotPeople(shot.shot, shot.keyframes, tuple(found)))
    return result, sum(1 for label in labels if label)

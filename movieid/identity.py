"""Who is who: the film's tracks grouped into people, and people named from the cast.

0. **Tracks cut where their person changes** (``tracks.split_changes``: a dissolve from one
   person into another in one place is linked frame by frame into one track), judged by the
   faces' embeddings and by the cast.
1. **People across the film.** Every track of every shot is clustered film-wide by average
   linkage on track embeddings (tracks of low contrast counting as less alike), merging only
   while the two groups' average similarity reaches ``cluster_threshold`` (stricter than the
   backend's match threshold: an extra person costs less than two people made one). Two
   tracks that share a frame are never one person (a cannot-link constraint), with or
   without a cast.
2. **Naming, open-set, per person.** A person's similarity to a member is the mean, over
   the person's faces, of the best match among the member's reference photos (a face of low
   contrast, dark or flat, counting for less: ``evidence``). The closest member names the
   person only if that similarity beats, each by a margin, (a) the match threshold, (b) the
   runner-up member and (c) the *strangers' level*: how well the film's
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
from .tracks import split_changes


# A face flatter than this (the standard deviation of its box's brightness, grey levels) is named
# and grouped on weaker evidence: in a dark or low-contrast frame a face model's embedding drifts
# towards everyone's. On the real photos (both sets) darkened to 0.3 of their contrast and light
# (faces of about 5 grey levels), a stranger's best similarity to a member's photos rose from at
# most 0.91 to up to 0.94 and the members' own fell on average from 0.97 to 0.92-0.94; at 0.5
# (about 13 levels), up to 0.925 and 0.94-0.96.
FULL_CONTRAST = 20.0


def shortfall(track: Track) -> np.ndarray:
    """[faces]: how far each face's contrast falls short of ``FULL_CONTRAST`` (0: enough, 1: none)."""
    return np.array([0.0 if f.contrast is None else max(0.0, 1.0 - f.contrast / FULL_CONTRAST)
                     for f in track.faces], np.float32)


def evidence(cast: Cast, track: Track, confidence_margin: float) -> np.ndarray:
    """[faces, members]: each face's similarity to each member (``Cast.track_similarities``), less
    up to one confidence margin for a face of low contrast, in proportion to its ``shortfall`` (a
    face of no contrast at all needs a margin more to be named)."""
    return cast.track_similarities(track) - confidence_margin * shortfall(track)[:, None]


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
    frame_count: int                       # analysed frames it is seen in

    @property
    def member_similarity(self) -> np.ndarray:
        return self.faces.mean(axis=0)


def cluster_tracks(embeddings: np.ndarray, apart: np.ndarray, threshold: float,
                   discount: np.ndarray | None = None) -> list[list[int]]:
    """Average-linkage clusters of tracks (rows of ``embeddings``), merged while their mean
    similarity reaches ``threshold`` and never across an ``apart`` pair; each cluster's
    indices ascending, clusters ordered by their first index. A pair's similarity counts
    ``discount[i] + discount[j]`` less (tracks of low contrast). Each row's best partner is
    kept, so a merge costs O(tracks) rather than a search of the whole matrix."""
    n = len(embeddings)
    sim = embeddings.astype(np.float32) @ embeddings.T.astype(np.float32)
    if discount is not None:
        sim -= discount[:, None] + discount[None, :]
    sim[apart] = -np.inf               # stays -inf through averaging: cannot-link is kept
    np.fill_diagonal(sim, -np.inf)
    sizes = np.ones(n, np.float32)
    members = [[i] for i in range(n)]
    best = sim.argmax(axis=1)
    value = sim[np.arange(n), best]
    while n > 1:
        a = int(np.argmax(value))
        if value[a] < threshold:
            break
        a, b = sorted((a, int(best[a])))
        sim[a, :] = (sizes[a] * sim[a, :] + sizes[b] * sim[b, :]) / (sizes[a] + sizes[b])
        sim[:, a] = sim[a, :]
        sim[a, a] = -np.inf
        sim[b, :] = -np.inf
        sim[:, b] = -np.inf
        sizes[a] += sizes[b]
        members[a] += members[b]
        members[b] = []
        value[b] = -np.inf
        stale = (best == a) | (best == b)
        stale[a], stale[b] = True, False
        better = ~stale & (sim[:, a] > value)
        best[better], value[better] = a, sim[better, a]
        for i in np.flatnonzero(stale):
            best[i] = int(np.argmax(sim[i]))
            value[i] = sim[i, best[i]]
    return sorted((sorted(m) for m in members if m), key=lambda c: c[0])


def _sharing_a_frame(shots: list[ShotFaces], keys: list[tuple[int, int]]) -> np.ndarray:
    """[tracks, tracks]: whether two tracks (``keys``: shot, track) are seen in one frame."""
    apart = np.zeros((len(keys), len(keys)), bool)
    by_shot: dict[int, list[int]] = {}
    for i, (s, _) in enumerate(keys):
        by_shot.setdefault(s, []).append(i)
    for s, rows in by_shot.items():
        for i in rows:
            for j in rows:
                apart[i, j] = i != j and bool(shots[s].tracks[keys[i][1]].frames & shots[s].tracks[keys[j][1]].frames)
    return apart


def _claims(people: list[_Person], seen_together: np.ndarray, threshold: float,
            confidence_margin: float) -> list[tuple[int, float, float]]:
    """Per person: (closest member, margin over the runner-up member, confidence)."""
    if not people or people[0].faces.shape[1] == 0:
        return [(-1, 0.0, 0.0)] * len(people)
    sims = np.stack([p.member_similarity for p in people])            # [people, members]
    emb = np.stack([p.embedding for p in people])
    alike = emb @ emb.T >= threshold
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


def _split(shot: ShotFaces, cast: Cast, threshold: float, confidence_margin: float) -> list[tuple[Track, np.ndarray]]:
    """The shot's tracks, each cut where the cast says its person changes (``split_changes``),
    with each part's ``evidence`` [faces, members]."""
    parts = []
    for track in shot.tracks:
        sims = evidence(cast, track, confidence_margin)
        for part in split_changes(track, sims, threshold):
            whole = part == slice(0, len(track.faces))
            parts.append((track if whole else Track(track.faces[part]), sims[part]))
    return parts


def identify(shots: list[ShotFaces], cast: Cast, threshold: float,
             min_confidence: float = IdentityConfig.min_confidence, cluster_threshold: float | None = None,
             confidence_margin: float | None = None) -> tuple[list[ShotPeople], int]:
    """Every shot's people, named or labelled; and how many Unknown labels the film uses.
    ``threshold``, ``cluster_threshold`` and ``confidence_margin`` are the backend's."""
    cluster_threshold = cluster_threshold_for(threshold) if cluster_threshold is None else cluster_threshold
    confidence_margin = confidence_margin_for(threshold) if confidence_margin is None else confidence_margin
    split = [_split(shot, cast, threshold, confidence_margin) for shot in shots]
    shots = [ShotFaces(shot.shot, shot.keyframes, tuple(track for track, _ in parts))
             for shot, parts in zip(shots, split)]
    # Tracks in order of appearance: shot by shot, left to right.
    keys = [(s, k) for s, shot in enumerate(shots)
            for k in sorted(range(len(shot.tracks)), key=lambda k: shot.tracks[k].center_x)]
    tracks = [shots[s].tracks[k] for s, k in keys]
    face_sims = {(s, k): split[s][k][1] for s, k in keys}
    apart = _sharing_a_frame(shots, keys)
    discount = np.array([confidence_margin * float(shortfall(t).mean()) for t in tracks], np.float32)
    clusters = (cluster_tracks(np.stack([t.embedding for t in tracks]), apart, cluster_threshold, discount)
                if tracks else [])
    people = []
    for cluster in clusters:
        members = [keys[i] for i in cluster]
        faces = [f for i in cluster for f in tracks[i].faces]
        people.append(_Person(tuple(members), np.concatenate([face_sims[m] for m in members]),
                              unit(np.mean([f.embedding for f in faces], axis=0)),
                              len({(keys[i][0], f) for i in cluster for f in tracks[i].frames})))
    belongs = np.zeros((len(people), len(tracks)))
    for c, cluster in enumerate(clusters):
        belongs[c, cluster] = 1.0
    claims = _claims(people, belongs @ apart @ belongs.T > 0, threshold, confidence_margin)
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
                                    cluster=c, cluster_frames=people[c].frame_count, margin=margin,
                                    confidence=confidence))
        result.append(ShotPeople(shot.shot, shot.keyframes, tuple(found)))
    return result, sum(1 for label in labels if label)

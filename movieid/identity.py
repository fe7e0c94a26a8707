"""Who is who: faces in a shot's keyframes become people, people get cast names or
film-wide "Unknown n" labels.

1. Within a shot, faces in different keyframes that look alike are one person
   (greedy linking by embedding similarity, never two faces of one frame).
2. A person takes a cast name only on consistent evidence: the member must be the best
   match in most of the person's sightings and the mean similarity must reach the
   backend's threshold; a person seen in a single keyframe of a multi-keyframe shot needs
   a margin on top. One name is given to at most one person per shot.
3. People left unnamed are clustered across the whole film (online, by mean embedding),
   and clusters are labelled "Unknown 1", "Unknown 2", ... in order of first appearance.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from .cast import Cast
from .faces.base import Box, normalise
from .keyframes import Keyframe
from .shots import Shot

LINK_SLACK = 0.05          # linking faces of one person across keyframes is a bit more lenient
SINGLE_SIGHTING_MARGIN = 0.03
UNKNOWN_PREFIX = "Unknown"


@dataclass
class Sighting:
    """One face in one keyframe, in film display pixels."""

    frame: int
    time: float
    box: Box
    score: float
    embedding: np.ndarray = field(repr=False)
    similarities: np.ndarray | None = field(default=None, repr=False)  # to each cast member
    similarity: float = 0.0   # to the person's cast member, or to the closest one if unnamed


@dataclass
class Person:
    """One person in one shot: their sightings across the shot's keyframes."""

    sightings: list[Sighting]
    name: str | None = None     # a cast member's name
    label: str | None = None    # "Unknown n" for people not in the cast
    similarity: float = 0.0     # mean similarity to the named member (best member if unnamed)

    @property
    def display_name(self) -> str:
        return self.name or self.label or UNKNOWN_PREFIX

    @property
    def embedding(self) -> np.ndarray:
        return normalise(np.mean([s.embedding for s in self.sightings], axis=0))

    def center_x(self) -> float:
        return float(np.mean([s.box.center[0] for s in self.sightings]))

    def size(self) -> float:
        return float(np.mean([s.box.size for s in self.sightings]))


@dataclass
class ShotFaces:
    """What face analysis found in one shot."""

    shot: Shot
    keyframes: list[Keyframe]
    people: list[Person] = field(default_factory=list)

    def names(self) -> list[str]:
        """Cast names and unknown labels present, left to right."""
        ordered = sorted(self.people, key=Person.center_x)
        return list(dict.fromkeys(p.display_name for p in ordered))

    def likely_cast(self, cast: Cast) -> list[str]:
        """Cast names ranked by how likely they are on screen: named first, then by best similarity."""
        named = {p.name for p in self.people if p.name}
        best = np.full(len(cast), -1.0)
        for person in self.people:
            for s in person.sightings:
                if s.similarities is not None and len(s.similarities):
                    best = np.maximum(best, s.similarities)
        order = sorted(range(len(cast)), key=lambda i: (cast.names[i] not in named, -best[i], i))
        return [cast.names[i] for i in order]


def link_people(sightings: list[Sighting], threshold: float) -> list[Person]:
    """Group a shot's sightings into people, frame by frame, most similar pairs first."""
    people: list[Person] = []
    by_frame: dict[int, list[Sighting]] = {}
    for s in sightings:
        by_frame.setdefault(s.frame, []).append(s)
    for frame in sorted(by_frame):
        faces = by_frame[frame]
        pairs = sorted(((float(p.embedding @ s.embedding), i, j) for i, p in enumerate(people)
                        for j, s in enumerate(faces)), reverse=True)
        used_people, used_faces = set(), set()
        for sim, i, j in pairs:
            if sim < threshold - LINK_SLACK:
                break
            if i in used_people or j in used_faces:
                continue
            people[i].sightings.append(faces[j])
            used_people.add(i)
            used_faces.add(j)
        people.extend(Person([s]) for j, s in enumerate(faces) if j not in used_faces)
    return people


def name_people(shot_faces: ShotFaces, cast: Cast, threshold: float) -> None:
    """Give each person of a shot a cast name where the evidence is consistent."""
    for person in shot_faces.people:
        for s in person.sightings:
            s.similarities = cast.similarities(s.embedding)
    claims: list[tuple[float, Person, str]] = []
    for person in shot_faces.people:
        person.name = None
        if not len(cast):
            continue
        sims = np.stack([s.similarities for s in person.sightings])      # [sightings, members]
        mean = sims.mean(axis=0)
        best = int(np.argmax(mean))
        person.similarity = float(mean[best])
        votes = int(np.sum((sims.argmax(axis=1) == best) & (sims[:, best] >= threshold)))
        needed = threshold + (SINGLE_SIGHTING_MARGIN if len(person.sightings) == 1
                              and len(shot_faces.keyframes) > 1 else 0.0)
        if mean[best] >= needed and votes * 2 >= len(person.sightings):
            claims.append((person.similarity, person, cast.names[best]))
    # One name, one person per shot: the strongest claim wins.
    taken: set[str] = set()
    for _, person, name in sorted(claims, key=lambda c: -c[0]):
        if name not in taken:
            person.name = name
            taken.add(name)
    for person in shot_faces.people:
        member = cast.names.index(person.name) if person.name else None
        for s in person.sightings:
            if len(s.similarities):
                s.similarity = float(s.similarities[member] if member is not None else s.similarities.max())


def label_unknowns(shots: Iterable[ShotFaces], threshold: float) -> int:
    """Cluster unnamed people across the film; returns the number of unknown labels."""
    centroids: list[np.ndarray] = []
    counts: list[int] = []
    for shot_faces in shots:
        for person in sorted(shot_faces.people, key=Person.center_x):
            person.label = None
            if person.name:
                continue
            emb = person.embedding
            sims = [float(c @ emb) for c in centroids]
            k = int(np.argmax(sims)) if sims else -1
            if k < 0 or sims[k] < threshold:
                centroids.append(emb)
                counts.append(1)
                k = len(centroids) - 1
            else:
                counts[k] += 1
                centroids[k] = normalise(centroids[k] * (counts[k] - 1) + emb)
            person.label = f"{UNKNOWN_PREFIX} {k + 1}"
    return len(centroids)

"""Linking, naming and unknown labels on controlled embeddings (real logic, exact cases)."""
from __future__ import annotations

import numpy as np

from movieid.cast import Cast, CastMember, ReferencePhoto
from movieid.faces.base import Box, normalise
from movieid.identity import ShotFaces, Sighting, label_unknowns, link_people, name_people
from movieid.keyframes import Keyframe
from movieid.shots import Shot

THRESHOLD = 0.9
rng = np.random.default_rng(0)
BASIS = {name: normalise(rng.normal(size=128)) for name in ("alice", "bob", "carol", "dave", "erin")}


def near(name, noise=0.1, seed=None):
    r = np.random.default_rng(seed)
    return normalise(BASIS[name] + noise * normalise(r.normal(size=128)) * 0.5)


def cast_of(*names):
    return Cast(None, [CastMember(n.title(), (), [ReferencePhoto(None, "0" * 64, Box(0, 0, 1, 1), BASIS[n])])
                       for n in names], "test")


def sighting(frame, name, x=100.0, noise=0.1, seed=None):
    return Sighting(frame, frame / 25, Box(x, 50, x + 80, 130), 1.0, near(name, noise, seed))


def shot_of(sightings, frames):
    shot = Shot(0, 0, 100, 0.0, 4.0, 0)
    return ShotFaces(shot, [Keyframe(f, f / 25) for f in frames], link_people(sightings, THRESHOLD))


def test_faces_of_one_person_across_keyframes_become_one_person():
    s = [sighting(f, n, x, seed=f * 10 + i) for f in (0, 10, 20)
         for i, (n, x) in enumerate([("alice", 100), ("bob", 400)])]
    people = link_people(s, THRESHOLD)
    assert len(people) == 2 and sorted(len(p.sightings) for p in people) == [3, 3]
    # two faces in one frame are never the same person, however alike
    twins = link_people([sighting(0, "alice", 100, seed=1), sighting(0, "alice", 300, seed=2)], THRESHOLD)
    assert len(twins) == 2


def test_a_name_needs_consistent_evidence():
    cast = cast_of("alice", "bob")
    shot = shot_of([sighting(f, "alice", seed=f) for f in (0, 10, 20)], [0, 10, 20])
    name_people(shot, cast, THRESHOLD)
    assert shot.people[0].name == "Alice" and shot.people[0].similarity > THRESHOLD
    # one lucky frame in a three-keyframe shot: just above threshold is not enough
    lucky = shot_of([Sighting(10, 0.4, Box(0, 0, 80, 80), 1.0, normalise(BASIS["alice"] + 0.45 * BASIS["carol"]))],
                    [0, 10, 20])
    name_people(lucky, cast, THRESHOLD)
    sim = lucky.people[0].similarity
    assert THRESHOLD <= sim < THRESHOLD + 0.03 and lucky.people[0].name is None


def test_people_outside_the_cast_stay_unnamed():
    cast = cast_of("alice", "bob")
    shot = shot_of([sighting(f, "carol", seed=f) for f in (0, 10)], [0, 10])
    name_people(shot, cast, THRESHOLD)
    assert shot.people[0].name is None and shot.people[0].similarity < 0.5


def test_one_name_per_shot_goes_to_the_best_match():
    cast = cast_of("alice")
    close = Sighting(0, 0.0, Box(0, 0, 80, 80), 1.0, near("alice", 0.05, 1))
    lookalike = Sighting(0, 0.0, Box(300, 0, 380, 80), 1.0, normalise(BASIS["alice"] + 0.3 * BASIS["bob"]))
    shot = shot_of([close, lookalike], [0])
    name_people(shot, cast, THRESHOLD)
    names = sorted((p.name or "-") for p in shot.people)
    assert names == ["-", "Alice"]
    assert next(p for p in shot.people if p.name).sightings[0] is close


def test_unknown_labels_are_stable_across_the_film():
    cast = cast_of("alice")
    shots = []
    for i, people in enumerate([["carol"], ["dave", "carol"], ["alice"], ["erin", "dave"]]):
        sf = shot_of([sighting(0, n, 100 + 200 * k, seed=i * 7 + k) for k, n in enumerate(people)], [0])
        name_people(sf, cast, THRESHOLD)
        shots.append(sf)
    assert label_unknowns(shots, THRESHOLD) == 3
    labels = [[p.display_name for p in sorted(sf.people, key=lambda p: p.center_x())] for sf in shots]
    assert labels == [["Unknown 1"], ["Unknown 2", "Unknown 1"], ["Alice"], ["Unknown 3", "Unknown 2"]]

"""Linking, naming and unknown labels on controlled embeddings (real logic, exact cases)."""
from __future__ import annotations

import numpy as np

from movieid.identity import identify
from movieid.records import Box, Cast, CastMember, Face, Keyframe, ReferencePhoto, Shot, ShotFaces, unit
from movieid.tracks import link

THRESHOLD = 0.9
rng = np.random.default_rng(0)
BASIS = {name: unit(rng.normal(size=128)) for name in ("alice", "bob", "carol", "dave", "erin")}


def near(name, noise=0.1, seed=None):
    r = np.random.default_rng(seed)
    return unit(BASIS[name] + noise * unit(r.normal(size=128)) * 0.5)


def cast_of(*names):
    members = tuple(CastMember(n.title(), (), (ReferencePhoto(None, "0" * 64, Box(0, 0, 1, 1), BASIS[n]),))
                    for n in names)
    return Cast(None, members, "test", "key")


def face(frame, name, x=100.0, noise=0.1, seed=None):
    return Face(frame, frame / 25, Box(x, 50, x + 80, 130), 1.0, near(name, noise, seed))


def shot_of(faces, frames):
    shot = Shot(0, 0, 100, 0.0, 4.0, 0)
    return ShotFaces(shot, tuple(Keyframe(f, f / 25) for f in frames), link(faces, THRESHOLD))


def people_of(shot, cast):
    (people,), _ = identify([shot], cast, THRESHOLD)
    return people.people


def test_faces_of_one_person_across_keyframes_become_one_track():
    faces = [face(f, n, x, seed=f * 10 + i) for f in (0, 10, 20)
             for i, (n, x) in enumerate([("alice", 100), ("bob", 400)])]
    tracks = link(faces, THRESHOLD)
    assert len(tracks) == 2 and sorted(len(t.faces) for t in tracks) == [3, 3]
    # two faces in one frame are never the same person, however alike
    twins = link([face(0, "alice", 100, seed=1), face(0, "alice", 300, seed=2)], THRESHOLD)
    assert len(twins) == 2


def test_a_name_needs_consistent_evidence():
    cast = cast_of("alice", "bob")
    (person,) = people_of(shot_of([face(f, "alice", seed=f) for f in (0, 10, 20)], [0, 10, 20]), cast)
    assert person.name == "Alice" and person.similarity > THRESHOLD
    # one lucky frame in a three-keyframe shot: just above threshold is not enough
    lucky = Face(10, 0.4, Box(0, 0, 80, 80), 1.0, unit(BASIS["alice"] + 0.45 * BASIS["carol"]))
    (person,) = people_of(shot_of([lucky], [0, 10, 20]), cast)
    assert THRESHOLD <= person.similarity < THRESHOLD + 0.03 and person.name is None


def test_people_outside_the_cast_stay_unnamed():
    cast = cast_of("alice", "bob")
    (person,) = people_of(shot_of([face(f, "carol", seed=f) for f in (0, 10)], [0, 10]), cast)
    assert person.name is None and person.similarity < 0.5


def test_one_name_per_shot_goes_to_the_best_match():
    cast = cast_of("alice")
    close = Face(0, 0.0, Box(0, 0, 80, 80), 1.0, near("alice", 0.05, 1))
    lookalike = Face(0, 0.0, Box(300, 0, 380, 80), 1.0, unit(BASIS["alice"] + 0.3 * BASIS["bob"]))
    people = people_of(shot_of([close, lookalike], [0]), cast)
    assert sorted((p.name or "-") for p in people) == ["-", "Alice"]
    assert next(p for p in people if p.name).track.faces[0] is close


def test_unknown_labels_are_stable_across_the_film():
    cast = cast_of("alice")
    shots = [shot_of([face(0, n, 100 + 200 * k, seed=i * 7 + k) for k, n in enumerate(people)], [0])
             for i, people in enumerate([["carol"], ["dave", "carol"], ["alice"], ["erin", "dave"]])]
    result, unknown_count = identify(shots, cast, THRESHOLD)
    assert unknown_count == 3
    labels = [[p.display_name for p in sorted(s.people, key=lambda p: p.track.center_x)] for s in result]
    assert labels == [["Unknown 1"], ["Unknown 2", "Unknown 1"], ["Alice"], ["Unknown 3", "Unknown 2"]]


def mix(name, other, cos):
    """A unit vector at cosine ``cos`` to ``name``'s, turned towards ``other``'s."""
    a = BASIS[name]
    b = unit(BASIS[other] - (BASIS[other] @ a) * a)
    return unit(cos * a + np.sqrt(1 - cos ** 2) * b)


def test_a_face_that_stays_where_it_was_stays_in_its_track():
    first = Face(0, 0.0, Box(100, 50, 180, 130), 1.0, BASIS["alice"])
    turned = mix("alice", "erin", 0.82)           # below plain linking (0.85), above overlap linking (0.80)
    assert len(link([first, Face(10, 0.4, Box(104, 52, 184, 132), 1.0, turned)], THRESHOLD)) == 1
    assert len(link([first, Face(10, 0.4, Box(400, 52, 480, 132), 1.0, turned)], THRESHOLD)) == 2


def test_people_seen_together_are_never_one_person():
    # Two alike people (0.95, above the film-wide clustering threshold) side by side, then
    # one of them alone: two people, with or without a cast.
    a, b = BASIS["alice"], mix("alice", "bob", 0.95)
    together = shot_of([Face(0, 0.0, Box(100, 50, 180, 130), 1.0, a), Face(0, 0.0, Box(400, 50, 480, 130), 1.0, b)], [0])
    alone = ShotFaces(Shot(1, 100, 200, 4.0, 8.0, 1), (Keyframe(150, 6.0),),
                      link([Face(150, 6.0, Box(100, 50, 180, 130), 1.0, b)], THRESHOLD))
    for cast in (cast_of(), cast_of("alice")):
        result, _ = identify([together, alone], cast, THRESHOLD)
        labels = [p.display_name for p in sorted(result[0].people, key=lambda p: p.track.center_x)]
        assert len(set(labels)) == 2 and len({p.cluster for p in result[0].people}) == 2
        assert result[1].people[0].display_name == labels[1]
    # with Alice in the cast, only the closer of the two is her
    assert labels[0] == "Alice" and labels[1].startswith("Unknown")


def test_one_member_names_alike_people_never_seen_together():
    # Alice in two lights (0.92 apart: two film-wide people) in two shots: both are Alice.
    cast = cast_of("alice", "bob")
    warm, cold = mix("alice", "carol", 0.96), mix("alice", "dave", 0.96)
    assert 0.9 < float(warm @ cold) < 0.93
    shots = [shot_of([Face(f, f / 25, Box(100, 50, 180, 130), 1.0, warm) for f in (0, 10)], [0, 10]),
             ShotFaces(Shot(1, 100, 200, 4.0, 8.0, 1), (Keyframe(150, 6.0),),
                       link([Face(150, 6.0, Box(100, 50, 180, 130), 1.0, cold)], THRESHOLD))]
    result, unknown_count = identify(shots, cast, THRESHOLD)
    assert [s.people[0].display_name for s in result] == ["Alice", "Alice"] and unknown_count == 0
    assert result[0].people[0].cluster != result[1].people[0].cluster
    assert all(0.3 <= s.people[0].confidence <= 1.0 and s.people[0].margin > 0.5 for s in result)


def test_a_lookalike_stranger_is_not_named_when_the_member_is_in_the_film():
    cast = cast_of("alice", "bob")
    alice, stranger = mix("alice", "carol", 0.95), mix("alice", "dave", 0.93)
    assert float(alice @ stranger) < 0.89      # not alike each other: two people
    shots = [shot_of([Face(0, 0.0, Box(100, 50, 180, 130), 1.0, alice)], [0]),
             ShotFaces(Shot(1, 100, 200, 4.0, 8.0, 1), (Keyframe(150, 6.0),),
                       link([Face(150, 6.0, Box(100, 50, 180, 130), 1.0, stranger)], THRESHOLD))]
    # 0.93 alone would be Alice; beside a 0.95 Alice it is a stranger
    result, _ = identify(shots, cast, THRESHOLD)
    names = [s.people[0].display_name for s in result]
    assert names == ["Alice", "Unknown 1"]
    (alone,), _ = identify(shots[1:], cast, THRESHOLD)
    assert alone.people[0].name == "Alice"


# Faces as alike as different people are in a face model's space: ALIKE[a] @ ALIKE[b] = 0.8.
_q, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(128, 6)))
_common, *_own = _q.T
ALIKE = {name: unit(2 * _common + own) for name, own in zip(("alice", "bob", "carol"), _own)}


def photo_cast(*names):
    members = tuple(CastMember(n.title(), (), (ReferencePhoto(None, "0" * 64, Box(0, 0, 1, 1), ALIKE[n]),))
                    for n in names)
    return Cast(None, members, "test", "key")


def still(frame, embedding):
    """A face in the same place in every frame (a static shot: each frame overlaps the last)."""
    return Face(frame, frame / 25, Box(100, 50, 180, 130), 1.0, embedding)


def blend(a, b, w):
    return unit((1 - w) * ALIKE[a] + w * ALIKE[b])


def test_a_dissolve_into_another_member_is_cut_where_the_person_changes():
    # Alice, then a frame 90 % Bob in the same place: like Alice's track by the overlap bar
    # (0.84), so linked into it; as a whole the track would be Alice's
    faces = [still(0, ALIKE["alice"]), still(10, ALIKE["alice"]), still(20, blend("alice", "bob", 0.9))]
    (track,) = link(faces, THRESHOLD)
    shot = ShotFaces(Shot(0, 0, 30, 0.0, 1.2, 0), tuple(Keyframe(f, f / 25) for f in (0, 10, 20)), (track,))
    people = people_of(shot, photo_cast("alice", "bob"))
    assert [(p.name, sorted(p.track.frames)) for p in people] == [("Alice", [0, 10]), ("Bob", [20])]


def test_a_face_that_only_dips_keeps_its_track_and_name():
    # Alice turned away in the last frame: 0.85 to her, nobody else's (0.68 to Bob)
    turned = unit(2 * _common + _own[0] + 1.39 * _own[4])
    assert 0.84 < float(turned @ ALIKE["alice"]) < 0.86 and float(turned @ ALIKE["bob"]) < 0.7
    faces = [still(0, ALIKE["alice"]), still(10, ALIKE["alice"]), still(20, turned)]
    shot = ShotFaces(Shot(0, 0, 30, 0.0, 1.2, 0), tuple(Keyframe(f, f / 25) for f in (0, 10, 20)),
                     link(faces, THRESHOLD))
    (person,) = people_of(shot, photo_cast("alice", "bob"))
    assert person.name == "Alice" and len(person.track.faces) == 3
    # nor is a track cut between two people by embeddings alone, without the cast's word
    faces = [still(0, ALIKE["alice"]), still(10, ALIKE["alice"]), still(20, blend("alice", "bob", 0.9))]
    shot = ShotFaces(shot.shot, shot.keyframes, link(faces, THRESHOLD))
    assert len(people_of(shot, photo_cast("alice"))) == 1 and len(people_of(shot, photo_cast())) == 1



def test_a_face_of_low_contrast_needs_more_evidence_for_a_name():
    # 0.94 to Alice: a name in a well-lit face, not in a face of 4 grey levels of contrast
    # (the dark draws every face towards every other)
    face_like = unit(ALIKE["alice"] + 0.36 * _own[4])
    assert 0.93 < float(face_like @ ALIKE["alice"]) < 0.95
    cast = photo_cast("alice", "bob")
    for contrast, named in ((None, "Alice"), (40.0, "Alice"), (4.0, None)):
        faces = [Face(f, f / 25, Box(100, 50, 180, 130), 1.0, face_like, contrast) for f in (0, 10, 20)]
        (person,) = people_of(shot_of(faces, [0, 10, 20]), cast)
        assert person.name == named, (contrast, person.similarity)

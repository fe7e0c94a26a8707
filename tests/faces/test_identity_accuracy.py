"""Identity accuracy of the offline backend on real photos: cast photos -> probe photos.

Reports precision and recall of names per probe image (run with -s to see the table) and
requires that nobody outside the cast is given a cast name.
"""
from __future__ import annotations

import pytest

from movieid.cast import load_cast
from movieid.faces.dlib_backend import DlibBackend
from movieid.identity import identify
from movieid.models.images import load_rgb
from movieid.records import Face, Keyframe, Shot, ShotFaces
from movieid.tracks import link


@pytest.fixture(scope="module")
def named_probes(cast_dir, faces_dir, probe_labels, tmp_path_factory):
    backend = DlibBackend()
    cast = load_cast(cast_dir, backend, cache_dir=tmp_path_factory.mktemp("cache"))
    results = {}
    for name in probe_labels:
        image = load_rgb(faces_dir / "probes" / name)
        faces = backend.analyze(image)
        shot = ShotFaces(Shot(0, 0, 1, 0.0, 0.04, 0), (Keyframe(0, 0.0),),
                         link([Face(0, 0.0, f.box, f.score, f.embedding) for f in faces], backend.match_threshold))
        (people,), _ = identify([shot], cast, backend.match_threshold)
        results[name] = (people, image.shape[1])
    return results


def test_names_per_probe_precision_and_recall(named_probes, probe_labels):
    tp = fp = fn = 0
    rows = []
    for probe, labels in probe_labels.items():
        shot, _ = named_probes[probe]
        found = {p.name for p in shot.people if p.name}
        truth = set(labels["people"])
        tp += len(found & truth)
        fp += len(found - truth)
        fn += len(truth - found)
        rows.append(f"{probe:24} truth={sorted(truth)} found={sorted(found)}")
    precision, recall = tp / max(1, tp + fp), tp / max(1, tp + fn)
    print("\n" + "\n".join(rows) + f"\nprecision {precision:.3f}  recall {recall:.3f}")
    assert precision == 1.0
    assert recall >= 0.9


def test_left_to_right_order_matches_the_labels(named_probes, probe_labels):
    for probe in ("two_people.jpg", "kit_with_rose.jpg", "obama_and_biden.jpg"):
        shot, _ = named_probes[probe]
        named = [n for n in shot.names() if not n.startswith("Unknown")]
        assert named == probe_labels[probe]["people"], probe


def test_the_unknown_child_gets_no_cast_name(named_probes):
    shot, width = named_probes["obama_and_biden.jpg"]
    child = [p for p in shot.people if p.track.center_x > 0.75 * width]
    assert child, "the child at the lower right should be detected"
    assert all(p.name is None for p in child)
    assert all(p.similarity < 0.9 for p in child)

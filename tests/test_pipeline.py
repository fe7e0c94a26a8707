"""The whole pipeline on a real multi-shot film with known people per shot."""
from __future__ import annotations

import json
import subprocess

import pytest

from movieid.annotation import validate
from movieid.filmmaker import FilmSpec, ShotSpec, make_film
from movieid.pipeline import AnnotateOptions, annotate
from movieid.shots import ShotOptions
from movieid.writers import check_outputs, write_outputs

from .conftest import MULTISHOT_MAX_SHOT_LEN
from .subtitle_rules import check_conventions, read_cues, vtt_seconds


def options(tmp_path, **kw):
    kw.setdefault("workers", 1)
    return AnnotateOptions(shots=ShotOptions(max_shot_len=MULTISHOT_MAX_SHOT_LEN), face_backend="dlib",
                           cache_dir=str(tmp_path / "cache"), **kw)


@pytest.fixture(scope="module")
def result(multishot, cast_dir, tmp_path_factory):
    path, _, _ = multishot
    return annotate(path, cast_dir, options(tmp_path_factory.mktemp("p")), progress=False)


def test_names_per_shot_are_exactly_right(result, multishot):
    _, _, expected = multishot
    doc = result.to_json()
    got = [[n for n in shot["names"] if not n.startswith("Unknown")] for shot in doc["shots"]]
    assert got == expected


def test_people_outside_the_cast_get_stable_unknown_labels(result):
    doc = result.to_json()
    flash = doc["shots"][3]                  # the cat: nobody
    assert flash["names"] == [] and flash["caption"] == "No one recognisable on screen."
    labels = {n for shot in doc["shots"] for n in shot["names"] if n.startswith("Unknown")}
    assert doc["unknown_count"] == len(labels)


def test_json_follows_the_schema_and_uses_presentation_times(result, multishot):
    path, spec, _ = multishot
    doc = result.to_json()
    validate(doc)
    assert doc["film"]["frame_count"] == sum(s.frames for s in spec.shots)
    for shot in doc["shots"]:
        assert shot["start"] == pytest.approx(shot["start_frame"] / 25, abs=1e-3)
        assert all(shot["start_frame"] <= k["frame"] < shot["end_frame"] for k in shot["keyframes"])
        assert len(shot["window"]) <= 8
        assert [w["role"] for w in shot["window"]] == sorted((w["role"] for w in shot["window"]),
                                                             key=lambda r: r != "id")
        for face in shot["faces"]:
            x1, y1, x2, y2 = face["box"]
            assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 360
            if face["in_cast"]:
                assert face["similarity"] >= 0.9
        assert shot["caption"] and set(shot["caption_names"]) <= set(shot["names"])


def test_subtitles_parse_back_with_one_cue_per_shot(result, tmp_path):
    """One cue per shot at the shot's times, except that a cue stays at least 1 s on screen
    (the 0.12 s flash cut) and the next one then starts when it ends."""
    import srt
    import webvtt

    paths = check_outputs(tmp_path, "film", ["srt", "vtt", "json"], overwrite=False)
    write_outputs(result, paths)
    cues = list(srt.parse(paths["srt"].read_text()))
    vtt = webvtt.read(str(paths["vtt"]))
    assert len(cues) == len(vtt.captions) == len(result.shots)
    check_conventions(read_cues(paths["srt"]))
    check_conventions(read_cues(paths["vtt"]))
    previous_end = 0.0
    for cue, caption, shot in zip(cues, vtt.captions, result.shots):
        start = max(shot.shot.start, previous_end)
        assert cue.start.total_seconds() == pytest.approx(start, abs=1e-3)
        assert cue.end.total_seconds() == pytest.approx(max(shot.shot.end, start + 1.0), abs=1e-3)
        assert vtt_seconds(caption.start) == pytest.approx(start, abs=1e-3)
        assert cue.content == caption.text
        assert cue.content.replace("\n", " ") == shot.caption.text
        previous_end = cue.end.total_seconds()
    assert json.loads(paths["json"].read_text())["shots"][0]["caption"] == result.shots[0].caption.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["film.json", "film.srt", "film.vtt"]

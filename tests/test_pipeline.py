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
    import srt
    import webvtt

    paths = check_outputs(tmp_path, "film", ["srt", "vtt", "json"], overwrite=False)
    write_outputs(result, paths)
    cues = list(srt.parse(paths["srt"].read_text()))
    vtt = webvtt.read(str(paths["vtt"]))
    assert len(cues) == len(vtt.captions) == len(result.shots)
    for cue, caption, shot in zip(cues, vtt.captions, result.shots):
        assert cue.start.total_seconds() == pytest.approx(shot.shot.start, abs=1e-3)
        assert cue.end.total_seconds() == pytest.approx(shot.shot.end, abs=1e-3)
        h, m, sec = caption.start.split(":")
        assert int(h) * 3600 + int(m) * 60 + float(sec) == pytest.approx(shot.shot.start, abs=1e-3)
        assert cue.content == caption.text == shot.caption.text
    assert json.loads(paths["json"].read_text())["shots"][0]["caption"] == result.shots[0].caption.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["film.json", "film.srt", "film.vtt"]


def test_worker_processes_give_the_same_result(result, multishot, cast_dir, tmp_path):
    path, _, _ = multishot
    parallel = annotate(path, cast_dir, options(tmp_path, workers=2), progress=False)
    a, b = result.to_json(), parallel.to_json()
    for key in ("created", "settings"):
        a.pop(key), b.pop(key)
    assert a == b


def test_a_small_window_keeps_the_named_peoples_id_images(multishot, cast_dir, tmp_path):
    path, _, expected = multishot
    small = annotate(path, cast_dir, options(tmp_path, max_images=3), progress=False)
    for shot, names in zip(small.to_json()["shots"], expected):
        window = shot["window"]
        assert len(window) <= 3 and sum(w["role"] == "test" for w in window) >= 1
        ids = [w["name"] for w in window if w["role"] == "id"]
        assert set(names) <= set(ids)


def test_rotated_phone_video_is_analysed_upright(films, faces_dir, cast_dir, tmp_path):
    upright = make_film(FilmSpec([ShotSpec(faces_dir / "probes" / "obama1.jpg", 20)], width=480, height=272),
                        films / "upright.mp4")
    # Store the picture sideways with rotation metadata, as phones do.
    sideways = films / "sideways.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(upright), "-vf", "transpose=clock",
                    "-c:v", "libx264", str(films / "sideways_raw.mp4")], check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(films / "sideways_raw.mp4"), "-c", "copy",
                    "-metadata:s:v:0", "rotate=90", str(sideways)], check=True)
    doc = annotate(sideways, cast_dir, options(tmp_path), progress=False).to_json()
    assert (doc["film"]["width"], doc["film"]["height"]) == (480, 272)
    assert doc["shots"][0]["names"] == ["Barack Obama"]


def test_without_a_cast_everyone_is_unknown(multishot, tmp_path):
    path, _, _ = multishot
    doc = annotate(path, None, options(tmp_path), progress=False).to_json()
    assert doc["cast"]["members"] == []
    names = {n for s in doc["shots"] for n in s["names"]}
    assert names and all(n.startswith("Unknown") for n in names)
    assert doc["unknown_count"] >= 4         # Obama, Biden, Kit and Rose at least

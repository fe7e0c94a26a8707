"""The whole pipeline on real multi-shot films with known people per shot: the card-game film
(photos inside installed packages) and the film of real face photos (../shared)."""
from __future__ import annotations

import json
import subprocess

import pytest

from movieid.annotation import document, validate
from movieid.config import Config, FaceConfig, ShotConfig, WindowConfig
from movieid.filmmaker import FilmSpec, ShotSpec, make_film
from movieid.pipeline import annotate
from movieid.writers import check_outputs, output_paths, write_outputs
from sample_videos.build_sample import crop

from .conftest import CARDGAME_MAX_SHOT_LEN, MULTISHOT_MAX_SHOT_LEN
from .subtitle_rules import check_conventions, read_cues, vtt_seconds


def config(tmp_path, max_shot_len=CARDGAME_MAX_SHOT_LEN, max_images=8, workers=1):
    return Config(shots=ShotConfig(max_shot_len=max_shot_len), windows=WindowConfig(max_images=max_images),
                  faces=FaceConfig(backend="dlib"), workers=workers, cache_dir=str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def result(cardgame, package_cast, tmp_path_factory):
    path, _, _ = cardgame
    return annotate(path, package_cast, config(tmp_path_factory.mktemp("p")))


def cast_names(doc):
    return [[n for n in shot["names"] if not n.startswith("Unknown")] for shot in doc["shots"]]


def test_names_per_shot_are_exactly_right(result, cardgame):
    _, _, expected = cardgame
    assert cast_names(document(result)) == expected


def test_names_per_shot_are_exactly_right_on_real_photos(multishot, cast_dir, tmp_path):
    path, _, expected = multishot
    doc = document(annotate(path, cast_dir, config(tmp_path, max_shot_len=MULTISHOT_MAX_SHOT_LEN)))
    assert cast_names(doc) == expected


def test_people_outside_the_cast_get_stable_unknown_labels(result):
    doc = document(result)
    flash = doc["shots"][3]                  # the coffee cup: nobody
    assert flash["names"] == [] and flash["caption"] == "No one recognisable on screen."
    labels = {n for shot in doc["shots"] for n in shot["names"] if n.startswith("Unknown")}
    assert doc["unknown_count"] == len(labels) == 1
    assert doc["shots"][4]["names"] == ["Unknown 1"]      # Monica, the card player not in the cast


def test_json_follows_the_schema_and_uses_presentation_times(result, cardgame):
    path, spec, _ = cardgame
    doc = document(result)
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
    """One cue per shot at the shot's times (neighbouring shots with the same caption share
    one), except that a cue of a shot shorter than 1 s (a flash cut) is held into the next shot
    and the next one then starts when it ends."""
    import srt
    import webvtt

    paths = output_paths(tmp_path, "film", ["srt", "vtt", "json"])
    check_outputs(paths, overwrite=False)
    write_outputs(document(result), paths, overwrite=False)
    cues = list(srt.parse(paths["srt"].read_text()))
    vtt = webvtt.read(str(paths["vtt"]))
    groups: list[list] = []                      # runs of neighbouring shots with one caption
    for shot in result.shots:
        if groups and groups[-1][-1].caption.text == shot.caption.text:
            groups[-1].append(shot)
        else:
            groups.append([shot])
    assert len(cues) == len(vtt.captions) == len(groups) >= 5
    check_conventions(read_cues(paths["srt"]))
    check_conventions(read_cues(paths["vtt"]))
    previous_end = 0.0
    for cue, caption, group in zip(cues, vtt.captions, groups):
        first, last = group[0].shot, group[-1].shot
        start = max(first.start, previous_end)
        assert cue.start.total_seconds() == pytest.approx(start, abs=1e-3) and start < last.end
        assert cue.end.total_seconds() >= last.end - 1e-3
        assert vtt_seconds(caption.start) == pytest.approx(start, abs=1e-3)
        assert cue.content == caption.text
        assert cue.content.replace("\n", " ") == group[0].caption.text
        previous_end = cue.end.total_seconds()
    assert previous_end <= result.film.duration + 1e-3
    assert json.loads(paths["json"].read_text())["shots"][0]["caption"] == result.shots[0].caption.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["film.json", "film.srt", "film.vtt"]


def test_worker_processes_give_the_same_result(result, cardgame, package_cast, tmp_path):
    path, _, _ = cardgame
    parallel = annotate(path, package_cast, config(tmp_path, workers=2))
    a, b = document(result), document(parallel)
    for key in ("created", "settings"):
        a.pop(key), b.pop(key)
    assert a == b


def test_a_small_window_keeps_the_named_peoples_id_images(cardgame, package_cast, tmp_path):
    path, _, expected = cardgame
    small = annotate(path, package_cast, config(tmp_path, max_images=3))
    for shot, names in zip(document(small)["shots"], expected):
        window = shot["window"]
        assert len(window) <= 3 and sum(w["role"] == "test" for w in window) >= 1
        ids = [w["name"] for w in window if w["role"] == "id"]
        assert set(names) <= set(ids)


def test_rotated_phone_video_is_analysed_upright(films, package_photos, package_cast, tmp_path):
    rachel = ShotSpec(package_photos["t1"], 20, crop=crop(0, 250, 270, 152))
    upright = make_film(FilmSpec([rachel], width=480, height=272), films / "upright.mp4")
    # Store the picture sideways with rotation metadata, as phones do.
    sideways = films / "sideways.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(upright), "-vf", "transpose=clock",
                    "-c:v", "libx264", str(films / "sideways_raw.mp4")], check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(films / "sideways_raw.mp4"), "-c", "copy",
                    "-metadata:s:v:0", "rotate=90", str(sideways)], check=True)
    doc = document(annotate(sideways, package_cast, config(tmp_path)))
    assert (doc["film"]["width"], doc["film"]["height"]) == (480, 272)
    assert doc["shots"][0]["names"] == ["Rachel"]


def test_without_a_cast_everyone_is_unknown(cardgame, tmp_path):
    path, _, _ = cardgame
    doc = document(annotate(path, None, config(tmp_path)))
    assert doc["cast"]["members"] == []
    names = {n for s in doc["shots"] for n in s["names"]}
    assert names and all(n.startswith("Unknown") for n in names)
    assert doc["unknown_count"] == len(names) == 7   # the six card players and the astronaut
    assert doc["shots"][6]["names"] == doc["shots"][7]["names"] and len(doc["shots"][6]["names"]) == 1
    assert doc["shots"][0]["names"] != doc["shots"][6]["names"]   # Rachel and Phoebe: two labels
    assert doc["shots"][1]["names"][1] not in doc["shots"][5]["names"]   # Chandler and Joey (alike): two labels
    for shot in doc["shots"]:                 # nobody twice in one frame
        by_frame = {}
        for face in shot["faces"]:
            by_frame.setdefault(face["frame"], []).append(face["name"])
        assert all(len(set(names)) == len(names) for names in by_frame.values()), shot["faces"]
    validate(doc)

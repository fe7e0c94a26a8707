"""The audio-description track: each shot's line in the nearest pause without speech that
holds it, shortened or dropped with a reason otherwise; one line per shot without audio."""
from __future__ import annotations

import copy
import json

import pytest

from movieid.annotation import validate
from movieid.describe import AdOptions, describe_film, place, shorter_versions
from movieid.speech import Segment

from .conftest import dlib_config, run_cli
from .subtitle_rules import check_conventions, read_cues

pytest.importorskip("silero_vad", reason="--ad needs silero-vad (pip install -e '.[ad]')")


@pytest.fixture(scope="module")
def speech_doc(speech_film, sample, tmp_path_factory) -> dict:
    from movieid.annotation import document
    from movieid.pipeline import annotate

    film, _ = speech_film
    _, cast, _ = sample
    doc = document(annotate(film, cast, dlib_config(tmp_path_factory.mktemp("speech-doc"))))
    assert [round(s["start"], 2) for s in doc["shots"]] == [0.0, 3.0, 6.0, 9.0]
    return doc


def test_lines_go_to_the_nearest_pause_that_holds_them(speech_doc):
    """Speech 0.3-4.3 s and 6.0-8.5 s over four 3 s shots, 15 characters/s, 1 s minimum."""
    doc = copy.deepcopy(speech_doc)
    captions = ["Rachel sits at the card table.", "Ross (left) and Chandler (right)",
                "No one recognisable on screen.", "Joey"]
    for shot, caption in zip(doc["shots"], captions):
        shot["caption"] = caption
    out = place(doc, [Segment(0.3, 4.3), Segment(6.0, 8.5)], AdOptions(), speech_model="test")
    d = [s["description"] for s in out["shots"]]
    assert d[0]["status"] == "dropped" and d[0]["text"] is None
    assert "no time free of speech and other descriptions of 1 s or more within 2 s" in d[0]["reason"]
    assert d[1] == {"status": "shortened", "text": "Ross and Chandler", "start": 4.5, "end": pytest.approx(5.633),
                    "reason": d[1]["reason"]}
    assert "1.3 s" in d[1]["reason"] and "32 characters" in d[1]["reason"]
    assert (d[2]["status"], d[2]["start"], d[2]["end"]) == ("placed", 8.7, 10.7)
    assert (d[3]["status"], d[3]["start"], d[3]["end"]) == ("placed", 10.8, 11.8)
    assert out["audio_description"]["counts"] == {"placed": 2, "shortened": 1, "dropped": 1, "no_audio": 0}
    validate(out)


def test_shorter_versions_drop_parentheses_then_sentences_then_clauses():
    text = "Ross (left) and Chandler (right) play cards. Joey watches, holding a pizza."
    versions = shorter_versions(text)
    assert versions[0] == "Ross and Chandler play cards. Joey watches, holding a pizza."
    assert "Ross (left) and Chandler (right) play cards." in versions
    assert "Ross and Chandler play cards." in versions and versions[-1] == "Ross"
    assert versions == sorted(versions, key=len, reverse=True) and text not in versions


def test_real_speech_is_never_talked_over(speech_doc, speech_film):
    film, truth = speech_film
    options = AdOptions()
    doc = describe_film(speech_doc, film, options)
    validate(doc)
    section = doc["audio_description"]
    assert section["has_audio"] and section["speech_model"].startswith("silero-vad")
    assert sum(section["counts"].values()) == len(doc["shots"])
    for shot in doc["shots"]:
        d = shot["description"]
        if d["status"] == "dropped":
            assert d["text"] is None and d["reason"]
            continue
        assert d["status"] in ("placed", "shortened")
        assert d["end"] - d["start"] >= max(1.0, len(d["text"]) / options.reading_speed) - 1e-3
        assert shot["start"] - options.max_shift <= d["start"] and d["end"] <= shot["end"] + options.max_shift
        for start, end in truth:                   # the real sentences, not only what VAD found
            assert d["end"] <= start + 0.1 or d["start"] >= end - 0.1, (d, start, end)
        assert (d["status"] == "shortened") == (d["text"] != shot["caption"])
    assert doc["shots"][0]["description"]["status"] == "dropped"   # speech over all of shot 0 and around it
    assert sum(section["counts"][k] for k in ("placed", "shortened")) >= 2
    assert doc["shots"][3]["description"]["status"] == "placed"           # the silence at the end


def test_annotate_ad_writes_description_tracks(speech_film, sample, tmp_path):
    film, truth = speech_film
    _, cast, _ = sample
    env = {**__import__("os").environ, "MOVIEID_CACHE_DIR": str(tmp_path / "cache")}
    proc = run_cli("annotate", film, "--cast", cast, "-o", tmp_path, "--ad", "--face-backend", "dlib", "-q", env=env)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.glob("speech.*")) == ["speech.ad.srt", "speech.ad.vtt", "speech.json",
                                                                  "speech.srt", "speech.vtt"]
    doc = json.loads((tmp_path / "speech.json").read_text())
    validate(doc)
    placed = [s["description"] for s in doc["shots"] if s["description"]["text"]]
    for track in ("speech.ad.srt", "speech.ad.vtt"):
        cues = read_cues(tmp_path / track)
        check_conventions(cues)
        assert [c[2].replace("\n", " ") for c in cues] == [d["text"] for d in placed]
        for (start, end, _), d in zip(cues, placed):
            assert (start, end) == (pytest.approx(d["start"], abs=1e-3), pytest.approx(d["end"], abs=1e-3))
    import webvtt

    assert webvtt.read(str(tmp_path / "speech.ad.vtt")).captions   # usable as <track kind="descriptions">


def test_a_film_without_audio_keeps_one_line_per_shot(sample_doc, sample, tmp_path):
    film, _, _ = sample
    doc = describe_film(sample_doc, film)
    validate(doc)
    assert doc["audio_description"]["has_audio"] is False
    assert all(s["description"]["status"] == "no_audio" and s["description"]["text"] == s["caption"]
               and s["description"]["start"] == s["start"] for s in doc["shots"])
    from movieid.writers import check_outputs, output_paths, write_outputs

    paths = output_paths(tmp_path, "sample", ["ad.vtt"])
    check_outputs(paths, overwrite=False)
    write_outputs(doc, paths, overwrite=False)
    cues = read_cues(paths["ad.vtt"])
    check_conventions(cues)
    assert len(cues) == len(doc["shots"])


def test_silent_sound_drops_no_line_and_a_film_without_sound_says_so(sample_doc, sample, tmp_path):
    """Digital silence: no speech to keep clear of, so no line is dropped (the last shot's was,
    "for speech"); no audio track at all: the terminal says the track repeats the captions."""
    import subprocess

    from .conftest import run_cli

    film, cast, _ = sample
    silent = tmp_path / "silent.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(film), "-f", "lavfi", "-i",
                    "anullsrc=r=16000:cl=mono", "-shortest", "-c:v", "copy", "-c:a", "aac", str(silent)], check=True)
    doc = describe_film(sample_doc, silent)
    validate(doc)
    assert doc["audio_description"]["has_audio"] is True and doc["audio_description"]["speech"] == []
    assert [s["description"]["status"] for s in doc["shots"]] == ["placed"] * len(doc["shots"])
    assert all(s["description"]["text"] == s["caption"] for s in doc["shots"])
    proc = run_cli("annotate", film, "--cast", cast, "-o", tmp_path / "out", "--ad", "--face-backend", "dlib",
                   "--workers", "1", "--format", "vtt")
    assert proc.returncode == 0, proc.stderr
    assert "no audio track: the description track holds the captions, one line per shot" in proc.stderr

"""The new outputs from the command line: --format html/csv/otio and --ad in annotate and batch,
with the usual overwrite rules."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from movieid.annotation import validate

from .conftest import run_cli
from .subtitle_rules import check_conventions, read_cues


def env_with_cache(tmp_path):
    return {**os.environ, "MOVIEID_CACHE_DIR": str(tmp_path / "cache")}


def test_an_existing_output_stops_annotate_before_any_work(sample, tmp_path):
    film, cast, _ = sample
    (tmp_path / "sample.otio").write_text("mine")
    proc = run_cli("annotate", film, "--cast", cast, "-o", tmp_path, "--format", "csv", "--format", "otio",
                   env=env_with_cache(tmp_path))
    assert proc.returncode == 1 and "sample.otio" in proc.stderr and "--overwrite" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["sample.otio"]
    assert (tmp_path / "sample.otio").read_text() == "mine"


def test_ad_needs_an_existing_ad_track_replaced_only_with_overwrite(sample, tmp_path):
    film, cast, _ = sample
    (tmp_path / "sample.ad.vtt").write_text("mine")
    proc = run_cli("annotate", film, "--cast", cast, "-o", tmp_path, "--ad", "--format", "vtt",
                   env=env_with_cache(tmp_path))
    assert proc.returncode == 1 and "sample.ad.vtt" in proc.stderr


def test_batch_writes_the_new_formats_and_redoes_films_when_the_reading_speed_changes(sample, speech_film,
                                                                                      tmp_path):
    pytest.importorskip("silero_vad")
    film, cast, _ = sample
    speech, _ = speech_film
    archive = tmp_path / "archive"
    (archive / "a").mkdir(parents=True)
    shutil.copy(film, archive / "a" / "sample.mp4")
    shutil.copy(speech, archive / "speech.mp4")
    out = tmp_path / "out"
    args = ["batch", archive, "-o", out, "--cast", cast, "--face-backend", "dlib", "--ad", "-q",
            *[a for f in ("json", "vtt", "csv", "otio", "html") for a in ("--format", f)]]
    proc = run_cli(*args, env=env_with_cache(tmp_path))
    assert proc.returncode == 0, proc.stderr
    for stem in ("a/sample", "speech"):
        names = sorted(p.name for p in (out / stem).parent.glob(f"{(out / stem).name}.*"))
        assert names == [f"{(out / stem).name}.{ext}" for ext in ("ad.vtt", "csv", "html", "json", "otio", "vtt")]
        doc = json.loads((out / f"{stem}.json").read_text())
        validate(doc)
        check_conventions(read_cues(out / f"{stem}.ad.vtt"))
    assert json.loads((out / "a" / "sample.json").read_text())["audio_description"]["has_audio"] is False
    assert json.loads((out / "speech.json").read_text())["audio_description"]["has_audio"] is True
    proc = run_cli(*args, env=env_with_cache(tmp_path))
    assert proc.returncode == 0 and json.loads(run_cli("batch-status", out, "--json").stdout)[0]["state"] == "done"
    status = {e["key"]: e["attempts"] for e in json.loads(run_cli("batch-status", out, "--json").stdout)}
    proc = run_cli(*args, "--reading-speed", "12", env=env_with_cache(tmp_path))
    assert proc.returncode == 0, proc.stderr
    again = {e["key"]: e["attempts"] for e in json.loads(run_cli("batch-status", out, "--json").stdout)}
    assert all(again[k] == status[k] + 1 for k in status)      # changed settings redo every film
    assert json.loads((out / "speech.json").read_text())["audio_description"]["settings"]["reading_speed"] == 12


def test_ad_without_the_voice_activity_model_fails_before_any_work(sample, tmp_path):
    film, cast, _ = sample
    fake = tmp_path / "site" / "silero_vad"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    env = {**env_with_cache(tmp_path), "PYTHONPATH": str(tmp_path / "site")}
    proc = run_cli("annotate", film, "--cast", cast, "-o", tmp_path / "out", "--ad", env=env)
    assert proc.returncode == 1 and "has no silero_vad.onnx" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()

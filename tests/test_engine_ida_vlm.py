"""The ida-vlm engine end to end on a tiny checkpoint in the published layout, and its text handling."""
from __future__ import annotations

import json

import pytest

from movieid.engines.text import clean_caption, mentioned_names
from movieid.records import Cast, CastMember

from .conftest import run_cli
from .subtitle_rules import check_conventions, check_word_boundaries, read_cues

torch = pytest.importorskip("torch", reason="the ida-vlm engine needs PyTorch (pip install -e '.[vlm]')")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tests.helpers.tiny_ida_vlm import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_ida_vlm") / "model-base")


def test_annotate_with_the_ida_vlm_engine(cardgame, package_cast, tiny_model, tmp_path, films):
    import subprocess

    from movieid.annotation import validate

    path, _, expected = cardgame
    short = films / "vlm_short.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(path), "-frames:v", "130", "-c", "copy", str(short)],
                   check=True)
    out = tmp_path / "out"
    proc = run_cli("annotate", short, "--cast", package_cast, "-o", out, "--engine", "ida-vlm", "--model", tiny_model,
                   "--device", "cpu", "--max-new-tokens", "12", "--batch-size", "2", "--face-backend", "dlib",
                   "-q", env={**__import__("os").environ, "MOVIEID_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "vlm_short.json").read_text())
    validate(doc)
    engine = doc["engine"]
    assert engine["name"] == "ida-vlm" and engine["model"] == str(tiny_model)
    assert engine["variant"] == "base" and engine["decoding"] == "greedy" and engine["max_new_tokens"] == 12
    assert len(doc["shots"]) == 3
    for shot, names in zip(doc["shots"], expected):
        window = shot["window"]
        assert 1 <= len(window) <= 8
        ids = [w["name"] for w in window if w["role"] == "id"]
        assert set(names) <= set(ids)                  # the people on screen keep their ID images
        assert shot["caption"] and "<|" not in shot["caption"] and "<img>" not in shot["caption"]
    for track in ("vlm_short.srt", "vlm_short.vtt"):      # captions longer than a cue take several
        cues = read_cues(out / track)
        check_conventions(cues)
        check_word_boundaries(cues, [s["caption"] for s in doc["shots"]])


def test_more_than_eight_images_is_refused_for_ida_vlm(tiny_model, cardgame):
    path, _, _ = cardgame
    proc = run_cli("annotate", path, "--engine", "ida-vlm", "--model", tiny_model, "--max-images", "9")
    assert proc.returncode == 2 and "--max-images" in proc.stderr and "at most 8" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_missing_checkpoint_fails_in_one_line(cardgame, tmp_path):
    path, _, _ = cardgame
    proc = run_cli("annotate", path, "--engine", "ida-vlm", "--model", tmp_path / "no-model", "-o", tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "no-model" in proc.stderr
    assert not any(tmp_path.glob("*.srt"))


def test_captions_are_cleaned_to_two_plain_sentences():
    raw = ("assistant\n<ref>Alice</ref><box>(10,20),(300,400)</box> pushes Bob in a wheelchair.  "
           "Bob laughs!\nThey cross a street.<|im_end|>")
    assert clean_caption(raw) == "Alice pushes Bob in a wheelchair. Bob laughs!"
    assert clean_caption("<|endoftext|>") == ""


def test_mentioned_names_use_the_cast_and_its_aliases():
    cast = Cast(None, (CastMember("Jon Snow", ("Kit",), ()), CastMember("Ygritte", (), ())), "test", "key")
    assert mentioned_names("Ygritte smiles at jon snow.", cast) == ("Ygritte", "Jon Snow")
    assert mentioned_names("Kit walks; Kitty waits.", cast) == ("Jon Snow",)
    assert mentioned_names("Nobody here.", cast) == ()

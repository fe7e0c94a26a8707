"""Captioning overlaps the analysis within one annotate (issue 13): a tiny IDA-VLM checkpoint in the
published layout answers the first shots' windows while the rest of the film is still analysed,
and the result is what captioning the same windows after the analysis gives."""
from __future__ import annotations

import signal
import sys
import threading
import time

import pytest

from .conftest import CARDGAME_MAX_SHOT_LEN, dlib_config
from .test_faults import SIGNALS, assert_clean, movieid, outputs, workers

torch = pytest.importorskip("torch", reason="the ida-vlm engine needs PyTorch (pip install -e '.[vlm]')")

WAIT_S = 120   # longest a test waits for the caption thread


def _checkpoint(folder, edit=None, **overrides):
    """A tiny checkpoint (one weights file); ``edit(tensors)`` changes its weights in place."""
    from safetensors.torch import load_file, save_file

    from tests.helpers.tiny_ida_vlm import build_tiny_checkpoint

    path = build_tiny_checkpoint(folder, shards=1, config_overrides=overrides or None)
    if edit is not None:
        tensors = load_file(path / "model.safetensors")
        edit(tensors)
        save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("overlap") / "model-base")


@pytest.fixture(scope="module")
def silent_model(tmp_path_factory):
    """All logits equal: greedy decoding gives token 0 (a NUL byte) every step, which cleans to an
    empty answer."""
    return _checkpoint(tmp_path_factory.mktemp("silent") / "model-base",
                       edit=lambda tensors: tensors["lm_head.weight"].zero_())


def _config(tmp_path, model=None):
    """The card-game film's shots as ``expected`` lists them; ida-vlm batches of two (faces without ``model``)."""
    from movieid.config import EngineConfig, ShotConfig

    engine = EngineConfig() if model is None else EngineConfig(name="ida-vlm", model=str(model), device="cpu",
                                                               batch_size=2, max_new_tokens=6)
    return dlib_config(tmp_path).replace(shots=ShotConfig(max_shot_len=CARDGAME_MAX_SHOT_LEN), engine=engine)


def _doc(annotation) -> dict:
    from movieid.annotation import document

    doc = document(annotation)
    doc.pop("created")
    return doc


def test_captions_start_during_the_analysis_and_equal_captions_after_it(cardgame, package_cast, tiny_model,
                                                                         tmp_path):
    from movieid.engines import load_engine
    from movieid.face_stage import face_pool
    from movieid.faces import load_backend
    from movieid.pipeline import SWITCH_INTERVAL_S, analyse, annotate, caption, cast_for
    from movieid.video import probe

    path, _, expected = cardgame
    events: list[tuple[str, int, int]] = []
    captioned = threading.Event()

    def progress(step, done, total):
        # The last shot's faces wait here for a caption: only a caption thread that started on
        # the first shots' windows can give one before the analysis ends (after it, none comes).
        if step == "faces" and done == len(expected):
            captioned.wait(WAIT_S)
        events.append((step, done, total))
        if step == "captions":
            switches.add(sys.getswitchinterval())
            captioned.set()

    config = _config(tmp_path, tiny_model)
    switches, before = set(), sys.getswitchinterval()
    overlapped = annotate(path, package_cast, config, progress)
    # The interpreter switched threads often while captions overlapped the analysis, and as before after it.
    assert switches == {SWITCH_INTERVAL_S} and sys.getswitchinterval() == before
    steps = [step for step, _, _ in events]
    last_faces = len(steps) - 1 - steps[::-1].index("faces")
    assert "captions" in steps[:last_faces], events
    assert [e for e in events if e[0] == "captions"][-1][1:] == (len(expected), len(expected)), events

    backend = load_backend("dlib")
    with face_pool(config, backend) as pool:
        analysis = analyse(probe(path), cast_for(package_cast, backend, config), backend, config, pool)
    assert list(analysis.windows) == [s.window for s in overlapped.shots]
    sequential = caption(analysis, load_engine(config.engine))
    doc = _doc(overlapped)
    assert doc == _doc(sequential)
    assert [[n for n in s["names"] if not n.startswith("Unknown")] for s in doc["shots"]] == expected
    assert len({s["caption"] for s in doc["shots"]}) > 1      # the model's answers, not one fallback


def test_an_empty_answer_is_the_faces_caption_with_the_film_wide_names(cardgame, package_cast, silent_model,
                                                                        tmp_path):
    """The model's answers (NUL bytes, cleaned away) come before the film's names are decided; the
    captions written for them are the faces engine's, from the film-wide people."""
    from movieid.pipeline import annotate

    path, _, expected = cardgame
    silent = _doc(annotate(path, package_cast, _config(tmp_path, silent_model)))
    faces = _doc(annotate(path, package_cast, _config(tmp_path)))
    assert [s["caption"] for s in silent["shots"]] == [s["caption"] for s in faces["shots"]]
    assert [s["names"] for s in silent["shots"]] == [s["names"] for s in faces["shots"]]
    for shot, names in zip(silent["shots"], expected):
        assert all(name in shot["caption"] for name in names)   # e.g. "Ross (left) and Chandler (right)"


def test_an_engine_error_during_the_analysis_is_one_line(cardgame, package_cast, tmp_path):
    """A model whose context cannot hold a window fails in the caption thread, at its first batch."""
    short = _checkpoint(tmp_path / "short" / "model-base", max_position_embeddings=200)
    out = tmp_path / "out"
    run = movieid("annotate", cardgame[0], "--cast", package_cast, "-o", out, "--engine", "ida-vlm", "--model", short,
                  "--device", "cpu", "--batch-size", "2", "--face-backend", "dlib", "--workers", "2", "-q",
                  tmp_path=tmp_path, timeout=WAIT_S)
    assert_clean(run, 1, "exceeds the model's context of 200 tokens", out=out)


def test_ctrl_c_during_a_batch_stops_the_caption_thread_after_it(cardgame, package_cast, tiny_model, tmp_path,
                                                                  monkeypatch):
    """Ctrl-C comes after the thread's first batch (of one window), while the main thread cannot
    run its handler for a second: no other batch is reported and at most one more starts, the
    thread and the face workers are gone when annotate returns (here, in this process; the
    command line's exit is the next test's)."""
    import dataclasses
    import os

    from movieid.engines.ida_vlm import IdaVlmEngine
    from movieid.pipeline import annotate

    from .helpers.processes import descendants, wait_gone

    batches, running = [], []
    answer = IdaVlmEngine.answer

    def counted(self, requests):
        batches.append(1)
        running.append(1)
        try:
            return answer(self, requests)
        finally:
            running.pop()
    monkeypatch.setattr(IdaVlmEngine, "answer", counted)

    config = _config(tmp_path, tiny_model).replace(workers=2)
    config = config.replace(engine=dataclasses.replace(config.engine, batch_size=1))
    captions: list[int] = []
    children: set[int] = set()
    asked, busy = threading.Event(), threading.Event()

    def progress(step, done, total):
        children.update(pid for pid in descendants(os.getpid()) if workers({pid}))   # not the resource tracker
        if step == "captions":
            captions.append(done)
            if done == 1:
                asked.set()
                busy.wait(10)
                os.kill(os.getpid(), signal.SIGINT)      # as a terminal's Ctrl-C
        elif asked.is_set() and not busy.is_set():
            # The main thread in a C call that the signal cannot interrupt (as while it starts a
            # face worker, with the signal held): its handler runs a second later.
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            busy.set()
            time.sleep(1.0)
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    with pytest.raises(KeyboardInterrupt):
        annotate(cardgame[0], package_cast, config, progress)
    assert not running                                    # the batch under way ended before annotate returned
    assert captions == [1] and len(batches) <= 2          # ... unreported, and no other began
    for thread in [t for t in threading.enumerate() if t.name == "captions"]:
        thread.join(WAIT_S)
        assert not thread.is_alive()
    assert children and not wait_gone(children)


@pytest.mark.parametrize("sig, group, line, code", SIGNALS, ids=["ctrl-c", "sigterm"])
def test_a_signal_while_captions_overlap_the_analysis(cardgame, package_cast, tiny_model, tmp_path, sig, group,
                                                      line, code):
    out = tmp_path / "out"
    started: list[float] = []

    def captioning(children) -> bool:
        """Face workers up, and a moment later: the first windows are being answered."""
        if not started and workers(children) >= 2:
            started.append(time.monotonic())
        return bool(started) and time.monotonic() - started[0] > 2.0

    run = movieid("annotate", cardgame[0], "--cast", package_cast, "-o", out, "--engine", "ida-vlm", "--model",
                  tiny_model, "--device", "cpu", "--batch-size", "2", "--max-new-tokens", "6", "--face-backend",
                  "dlib", "--workers", "2", "-q", tmp_path=tmp_path, until=captioning, send=sig, group=group,
                  timeout=WAIT_S)
    assert run.signalled, "annotate finished before the signal"
    assert assert_clean(run, code, out=out) == line
    assert not outputs(out)

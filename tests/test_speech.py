"""Speech detection: silero_vad.onnx on the film's audio, checked against silero-vad's own
implementation and against real speech (espeak-ng) placed at known times."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

from movieid.errors import MovieIdError
from movieid.speech import (SAMPLE_RATE, SileroVad, VadOptions, audio_blocks, detect_speech, has_audio,
                            segments_from_probabilities)

pytest.importorskip("silero_vad", reason="speech detection needs silero-vad (pip install -e '.[ad]')")


def test_speech_is_found_where_it_was_spoken(speech_film):
    film, truth = speech_film
    found = detect_speech(film)
    assert found, "no speech found"
    for start, end in truth:   # each sentence is mostly covered (espeak's own pauses aside)
        covered = sum(max(0.0, min(end, s.end) - max(start, s.start)) for s in found)
        assert covered >= 0.75 * (end - start), (start, end, found)
    outside = sum(s.end - s.start for s in found) - sum(
        max(0.0, min(e, s.end) - max(b, s.start)) for s in found for b, e in truth)
    assert outside <= 0.3, found
    assert found[0].start == pytest.approx(truth[0][0], abs=0.15)


def test_segments_equal_silero_vads_own_get_speech_timestamps(speech_film):
    """The same model run by silero-vad's own code (torch) gives the same sample boundaries."""
    torch = pytest.importorskip("torch")
    import silero_vad

    film, _ = speech_film
    audio = np.concatenate(list(audio_blocks(film)))
    probs, total = SileroVad().probabilities(audio_blocks(film))
    ours = segments_from_probabilities(probs, total)
    theirs = silero_vad.get_speech_timestamps(torch.from_numpy(audio), silero_vad.load_silero_vad(onnx=True),
                                              sampling_rate=SAMPLE_RATE)
    assert ours == [(t["start"], t["end"]) for t in theirs]
    strict = VadOptions(threshold=0.8, min_speech=0.5, min_silence=0.3, speech_pad=0.1)
    theirs = silero_vad.get_speech_timestamps(torch.from_numpy(audio), silero_vad.load_silero_vad(onnx=True),
                                              threshold=0.8, min_speech_duration_ms=500,
                                              min_silence_duration_ms=300, speech_pad_ms=100)
    assert segments_from_probabilities(probs, total, strict) == [(t["start"], t["end"]) for t in theirs]


def test_audio_starting_late_keeps_the_films_timeline(speech_film, tmp_path):
    """An audio track that starts 1.5 s after the container start: speech times move with it."""
    film, truth = speech_film
    late = tmp_path / "late.mkv"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(film), "-itsoffset", "1.5", "-i", str(film),
                    "-map", "0:v", "-map", "1:a", "-c", "copy", str(late)], check=True)
    found = detect_speech(late)
    assert found[0].start == pytest.approx(truth[0][0] + 1.5, abs=0.15)


def test_a_film_without_audio_has_none(sample):
    film, _, _ = sample
    assert has_audio(film) is False


def test_undecodable_audio_is_one_line(tmp_path, speech_film):
    film, _ = speech_film
    broken = tmp_path / "broken.mp4"
    data = film.read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    with pytest.raises(MovieIdError) as err:
        list(audio_blocks(broken))
    assert str(broken) in str(err.value) and "\n" not in str(err.value)

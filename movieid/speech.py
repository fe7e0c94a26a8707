"""Where people speak in a film: Silero VAD on the film's audio track.

The voice-activity model is ``silero_vad.onnx`` from the silero-vad wheel (MIT licence),
run with onnxruntime: the wheel is only where the file comes from (it is never imported,
so torch is not needed). FFmpeg decodes the first audio track to 16 kHz mono PCM through a
pipe, and the model reads it in 32 ms frames, carrying its state, so memory stays flat
whatever the film's length. Frame probabilities become speech segments the way silero-vad's
``get_speech_timestamps`` makes them (same thresholds, minimum durations and padding).
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .errors import MovieIdError, install_hint
from .progress import Progress, report
from .video import _last_line, media_url, stop_if_signalled

SAMPLE_RATE = 16000
FRAME = 512                  # samples per model step at 16 kHz (32 ms)
CONTEXT = 64                 # samples of the previous frame the model sees
MODEL_FILE = "silero_vad.onnx"
READ_FRAMES = 256            # frames read from FFmpeg at a time (~8 s of audio)
PROBE_TIMEOUT_S = 120


@dataclass(frozen=True)
class VadOptions:
    """silero-vad's ``get_speech_timestamps`` defaults."""

    threshold: float = 0.5
    min_speech: float = 0.25     # seconds
    min_silence: float = 0.1
    speech_pad: float = 0.03


@dataclass(frozen=True)
class Segment:
    start: float
    end: float


def model_path() -> Path:
    """``silero_vad.onnx`` inside the installed silero-vad package (found without importing it)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise MovieIdError(f"speech detection (--ad) needs the silero-vad package: {install_hint('ad')}")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / MODEL_FILE
    if not path.is_file():
        raise MovieIdError(f"the installed silero-vad package has no {MODEL_FILE}", path)
    return path


def model_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"silero-vad {version('silero-vad')} ({MODEL_FILE})"
    except PackageNotFoundError:
        return MODEL_FILE


def has_audio(film: str | Path) -> bool:
    """Whether the file has an audio stream."""
    cmd = ["ffprobe", "-v", "error", "-select_streams", "a", "-show_entries", "stream=index", "-of", "json",
           media_url(film)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise MovieIdError("ffprobe was not found: install FFmpeg (Debian: apt-get install ffmpeg)") from None
    except subprocess.TimeoutExpired:
        raise MovieIdError(f"ffprobe gave no answer within {PROBE_TIMEOUT_S} s", film) from None
    if proc.returncode != 0:
        stop_if_signalled(proc.returncode, proc.stderr, Path(film))
        raise MovieIdError("cannot read the file's streams (ffprobe failed)", film)
    return bool(json.loads(proc.stdout or "{}").get("streams"))


def audio_blocks(film: str | Path, block_samples: int = READ_FRAMES * FRAME) -> Iterator[np.ndarray]:
    """The first audio track as float32 16 kHz mono, in blocks; sample 0 is the container's time 0
    (a late-starting audio track is padded with silence, as players do)."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", media_url(film), "-map", "0:a:0", "-vn", "-ac", "1",
           "-af", f"aresample={SAMPLE_RATE}:async=1:first_pts=0", "-f", "s16le", "-acodec", "pcm_s16le", "pipe:1"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while True:
            data = proc.stdout.read(block_samples * 2)
            if not data:
                break
            yield np.frombuffer(data[:len(data) // 2 * 2], "<i2").astype(np.float32) / 32768.0
        err = proc.stderr.read().decode(errors="replace")
        if proc.wait() != 0:
            stop_if_signalled(proc.returncode, err, Path(film))
            last = _last_line(err, Path(film)) or f"ffmpeg exit code {proc.returncode}"
            raise MovieIdError(f"cannot decode the audio track ({last})", film)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


class SileroVad:
    """Speech probability per 32 ms frame of 16 kHz audio (the stock streaming model)."""

    def __init__(self, path: str | Path | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(path or model_path()), opts, providers=["CPUExecutionProvider"])

    def probabilities(self, blocks: Iterator[np.ndarray], on_seconds: Callable[[float], None] | None = None
                      ) -> tuple[np.ndarray, int]:
        """(probability per frame, number of samples) for a stream of audio blocks; the last
        frame is padded with zeros, as silero-vad does."""
        state = np.zeros((2, 1, 128), np.float32)
        context = np.zeros((1, CONTEXT), np.float32)
        rate = np.array(SAMPLE_RATE, np.int64)
        probs: list[float] = []
        pending = np.zeros(0, np.float32)
        total = 0

        def step(frame: np.ndarray) -> None:
            nonlocal state, context
            x = np.concatenate([context, frame[None, :]], axis=1)
            out, state = self.session.run(None, {"input": x, "state": state, "sr": rate})
            probs.append(float(out[0, 0]))
            context = x[:, -CONTEXT:]

        for block in blocks:
            total += len(block)
            pending = np.concatenate([pending, block])
            usable = len(pending) // FRAME * FRAME
            for i in range(0, usable, FRAME):
                step(pending[i:i + FRAME])
            pending = pending[usable:]
            if on_seconds is not None:
                on_seconds(len(block) / SAMPLE_RATE)
        if len(pending):
            step(np.pad(pending, (0, FRAME - len(pending))))
        return np.array(probs, np.float32), total


def segments_from_probabilities(probs: np.ndarray, total_samples: int, options: VadOptions = VadOptions()
                                ) -> list[tuple[int, int]]:
    """Speech as (start, end) sample numbers: silero-vad's rule without a maximum speech length.

    Speech starts at a frame at or above ``threshold`` and ends after ``min_silence`` below
    ``threshold - 0.15``; pieces shorter than ``min_speech`` are dropped, the rest padded.
    """
    min_speech = SAMPLE_RATE * options.min_speech
    min_silence = SAMPLE_RATE * options.min_silence
    pad = SAMPLE_RATE * options.speech_pad
    low = max(options.threshold - 0.15, 0.01)
    speeches: list[list[int]] = []
    triggered, start, silence_from = False, 0, 0
    for i, p in enumerate(probs):
        sample = FRAME * i
        if p >= options.threshold:
            silence_from = 0
            if not triggered:
                triggered, start = True, sample
                continue
        if triggered and p < low:
            if not silence_from:
                silence_from = sample
            if sample - silence_from < min_silence:
                continue
            if silence_from - start > min_speech:
                speeches.append([start, silence_from])
            triggered, silence_from = False, 0
    if triggered and total_samples - start > min_speech:
        speeches.append([start, total_samples])
    for i, speech in enumerate(speeches):
        if i == 0:
            speech[0] = int(max(0, speech[0] - pad))
        if i + 1 < len(speeches):
            gap = speeches[i + 1][0] - speech[1]
            if gap < 2 * pad:
                speech[1] += int(gap // 2)
                speeches[i + 1][0] = int(max(0, speeches[i + 1][0] - gap // 2))
            else:
                speech[1] = int(min(total_samples, speech[1] + pad))
                speeches[i + 1][0] = int(max(0, speeches[i + 1][0] - pad))
        else:
            speech[1] = int(min(total_samples, speech[1] + pad))
    return [(s, e) for s, e in speeches]


def detect_speech(film: str | Path, options: VadOptions = VadOptions(), progress: Progress = None,
                  duration: float | None = None) -> list[Segment]:
    """Speech segments of a film's first audio track, in seconds on the film's timeline."""
    seconds = 0.0
    total = int(round(duration)) if duration else 0

    def advance(step: float) -> None:
        nonlocal seconds
        seconds += step
        report(progress, "speech", min(int(seconds), total or int(seconds)), max(total, int(seconds)))

    probs, samples = SileroVad().probabilities(audio_blocks(film), on_seconds=advance)
    return [Segment(round(s / SAMPLE_RATE, 3), round(e / SAMPLE_RATE, 3))
            for s, e in segments_from_probabilities(probs, samples, options)]

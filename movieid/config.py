"""The configuration of a run: one typed, nested record, validated once where it is built.

``Config`` holds a section per stage (shots, faces, cast, identity, windows, engine, outputs) and the
run's environment (workers, cache folder). A bad value raises ``ConfigError`` naming the field
(``faces.min_face``), never a command-line flag: the CLI maps fields to its flags. The
sections that decide what the outputs hold are the JSON's ``settings`` (``to_json``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

from .errors import MovieIdError, missing_dependency

DETECTOR_THRESHOLDS = {"adaptive": 3.0, "content": 27.0}
FACE_BACKENDS = ("auto", "dlib", "insightface")
MORE_FACES = ("needed", "every-frame", "off")   # where the second face detector runs (face_stage)
ENGINES = ("faces", "ida-vlm", "vlm")
FORMATS = ("srt", "vtt", "json")                   # written by default
EXTRA_FORMATS = ("html", "csv", "otio")            # on request: the review page, one row per shot, a timeline
FORMAT_CHOICES = FORMATS + EXTRA_FORMATS
AD_FORMATS = {"srt": "ad.srt", "vtt": "ad.vtt"}    # with outputs.ad: a description track beside each caption track
ALL_FORMATS = FORMAT_CHOICES + tuple(AD_FORMATS.values())


class ConfigError(MovieIdError):
    """A configuration value that cannot work; ``field`` is its dotted name (``faces.min_face``)."""

    def __init__(self, field_name: str, problem: str):
        self.field = field_name
        super().__init__(f"{field_name} {problem}")


def _check(condition: bool, field_name: str, problem: str) -> None:
    if not condition:
        raise ConfigError(field_name, problem)


def _finite(value: float | None, field_name: str, minimum: float = 0.0) -> None:
    if value is not None:
        _check(isinstance(value, (int, float)) and math.isfinite(value), field_name,
               f"must be a finite number, not {value!r}")
        _check(value >= minimum, field_name, f"must be at least {minimum:g}")


def _choice(value: str, choices: tuple[str, ...], field_name: str) -> None:
    _check(value in choices, field_name, f"must be one of {', '.join(choices)}, not {value!r}")


@dataclass(frozen=True)
class ShotConfig:
    detector: Literal["adaptive", "content"] = "adaptive"
    threshold: float | None = None     # the detector's default when None
    min_shot_len: float = 0.1          # seconds; shorter cuts are merged by the detector
    max_shot_len: float = 10.0         # seconds; longer shots are split into parts (0: never)

    def __post_init__(self) -> None:
        _choice(self.detector, tuple(DETECTOR_THRESHOLDS), "shots.detector")
        _finite(self.threshold, "shots.threshold")
        _finite(self.min_shot_len, "shots.min_shot_len")
        _finite(self.max_shot_len, "shots.max_shot_len")

    @property
    def cut_threshold(self) -> float:
        return DETECTOR_THRESHOLDS[self.detector] if self.threshold is None else self.threshold


@dataclass(frozen=True)
class FaceConfig:
    backend: str = "auto"              # auto: insightface when its model pack is on disk, else dlib
    models: str | None = None          # insightface model-pack folder
    size: int = 1280                   # longest side of frames for face analysis, pixels
    min_face: int = 40                 # smallest face analysed (shorter side, pixels at ``size``)
    more_faces: str = "off"            # the second detector (face_stage): needed, every-frame or off

    def __post_init__(self) -> None:
        _choice(self.backend, FACE_BACKENDS, "faces.backend")
        _check(self.size >= 64, "faces.size", "must be at least 64 pixels")
        _choice(self.more_faces, MORE_FACES, "faces.more_faces")
        _check(self.min_face >= 1, "faces.min_face", "must be at least 1 pixel")
        _check(self.min_face <= self.size, "faces.min_face",
               f"({self.min_face} px) cannot be larger than faces.size ({self.size} px)")


@dataclass(frozen=True)
class CastConfig:
    strict: bool = True                # a bad reference photo is an error (else skipped with a warning)


@dataclass(frozen=True)
class IdentityConfig:
    min_confidence: float = 0.3        # a name needs this confidence (0..1; ``identity``), by bench/identity.py

    def __post_init__(self) -> None:
        _finite(self.min_confidence, "identity.min_confidence")
        _check(self.min_confidence <= 1.0, "identity.min_confidence", "must be at most 1")


@dataclass(frozen=True)
class WindowConfig:
    frames_per_shot: int = 3           # keyframes (test frames) per shot
    max_images: int = 8                # images per window, cast ID images included

    def __post_init__(self) -> None:
        _check(self.frames_per_shot >= 1, "windows.frames_per_shot", "must be at least 1")
        _check(self.max_images >= 2, "windows.max_images",
               "must be at least 2 (an ID image and a test frame)")


@dataclass(frozen=True)
class EngineConfig:
    name: str = "faces"
    model: str | None = None           # model engines: checkpoint folder or hub id
    variant: str | None = None         # ida-vlm: base or idf
    device: str | None = None          # torch device (default: cuda if available)
    batch_size: int | None = None      # windows per generation batch (None: sized to free GPU memory)
    max_new_tokens: int = 64           # longest caption in tokens
    mark_faces: bool = False           # vlm: recognised faces drawn as coloured boxes on the test frames
    max_pixels: int | None = None      # vlm: most pixels per image after the processor's resize

    def __post_init__(self) -> None:
        _choice(self.name, ENGINES, "engine.name")
        _check(self.name == "faces" or bool(self.model), "engine.model",
               f"is needed by the {self.name} engine (a checkpoint folder or hub id)")
        _check(self.batch_size is None or self.batch_size >= 1, "engine.batch_size", "must be at least 1")
        _check(self.max_new_tokens >= 1, "engine.max_new_tokens", "must be at least 1")
        _check(self.max_pixels is None or self.max_pixels >= 28 * 28, "engine.max_pixels", "must be at least 784")

    def to_json(self) -> dict:
        return {} if self.name == "faces" else dataclasses.asdict(self)


@dataclass(frozen=True)
class OutputConfig:
    formats: tuple[str, ...] = FORMATS
    overwrite: bool = False
    min_duration: float = 1.0          # seconds every subtitle stays on screen at least (all text tracks)
    ad: bool = False                   # an audio-description track, placed between the dialogue
    reading_speed: float = 15.0        # characters per second a description line needs

    def __post_init__(self) -> None:
        _check(len(self.formats) > 0, "outputs.formats", "must name at least one format")
        for fmt in self.formats:
            _choice(fmt, FORMAT_CHOICES, "outputs.formats")
        _finite(self.min_duration, "outputs.min_duration")
        _finite(self.reading_speed, "outputs.reading_speed", minimum=1.0)

    @property
    def files(self) -> tuple[str, ...]:
        """The formats written: the chosen ones and, with ``ad``, a description track for each
        caption track chosen (``ad.srt``, ``ad.vtt``)."""
        return self.formats + tuple(AD_FORMATS[f] for f in self.formats if self.ad and f in AD_FORMATS)

    def to_json(self) -> dict:
        """What the files hold besides the analysis (a batch redoes a film when it changes)."""
        return {"formats": sorted(self.files), "min_duration": self.min_duration,
                **({"reading_speed": self.reading_speed} if self.ad else {})}


def _ida_vlm_max_images() -> int:
    """How many images an IDA-VLM window may hold, as the model was trained (the model package
    needs PyTorch, which only the model engines do)."""
    try:
        from .models.ida_vlm import MAX_IMAGES
    except ImportError as exc:
        raise missing_dependency(exc, "the ida-vlm engine", "vlm") from None
    return MAX_IMAGES


@dataclass(frozen=True)
class Config:
    shots: ShotConfig = field(default_factory=ShotConfig)
    faces: FaceConfig = field(default_factory=FaceConfig)
    cast: CastConfig = field(default_factory=CastConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    windows: WindowConfig = field(default_factory=WindowConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    outputs: OutputConfig = field(default_factory=OutputConfig)
    workers: int = 0                   # face-analysis processes (0: one per CPU core)
    cache_dir: str | None = None       # cast embeddings, converted models (default: files.default_cache_dir)

    def __post_init__(self) -> None:
        _check(self.workers >= 0, "workers", "cannot be negative")
        if self.engine.name == "ida-vlm":
            limit = _ida_vlm_max_images()
            _check(self.windows.max_images <= limit, "windows.max_images",
                   f"can be at most {limit} with the ida-vlm engine (as the model was trained)")

    def replace(self, **sections) -> "Config":
        return dataclasses.replace(self, **sections)

    def to_json(self) -> dict:
        """What the outputs depend on (the JSON's ``settings``; a batch redoes a film when it changes)."""
        return {"shots": dataclasses.asdict(self.shots), "faces": dataclasses.asdict(self.faces),
                "cast": dataclasses.asdict(self.cast), "identity": dataclasses.asdict(self.identity),
                "windows": dataclasses.asdict(self.windows),
                "engine": {"name": self.engine.name, **self.engine.to_json()}}

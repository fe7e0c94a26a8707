"""The records that flow between the pipeline's stages, as frozen dataclasses.

    Film ─▶ [Shot] ─▶ [Keyframe] + [Face] ─▶ [Track] ─▶ [Appearance] (a track named or labelled)
    Cast (members, reference photos, embeddings)           ─▶ Window (ID images + test frames)
                                                            ─▶ Caption ─▶ ShotAnnotation ─▶ FilmAnnotation

Each stage is a function from records to new records; nothing here is changed after it is
made. This module imports no stage (only numpy), so every stage can import it. Sizes are
display pixels (rotation and pixel aspect applied); times are presentation times in seconds
on the film's timeline; frame numbers count decoded frames from 0; ``end_frame`` is exclusive.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

UNKNOWN_PREFIX = "Unknown"
Role = Literal["id", "test"]   # a window image: a cast member's ID image, or a frame of the shot


def unit(vector: np.ndarray) -> np.ndarray:
    """``vector`` as float32 of length 1 (unchanged if it is all zeros)."""
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixels: (x1, y1) top left, (x2, y2) bottom right."""

    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        return max(0.0, self.x2 - self.x1)

    @property
    def height(self) -> float:
        return max(0.0, self.y2 - self.y1)

    @property
    def size(self) -> float:
        """The shorter side: what decides whether a face is big enough to recognise."""
        return min(self.width, self.height)

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        return (self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2

    def iou(self, other: "Box") -> float:
        w = min(self.x2, other.x2) - max(self.x1, other.x1)
        h = min(self.y2, other.y2) - max(self.y1, other.y1)
        inter = max(0.0, w) * max(0.0, h)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def scaled(self, factor: float) -> "Box":
        return Box(self.x1 * factor, self.y1 * factor, self.x2 * factor, self.y2 * factor)

    def clipped(self, width: float, height: float) -> "Box":
        return Box(min(max(self.x1, 0.0), width), min(max(self.y1, 0.0), height),
                   min(max(self.x2, 0.0), width), min(max(self.y2, 0.0), height))

    def as_list(self, digits: int = 1) -> list[float]:
        return [round(float(v), digits) for v in (self.x1, self.y1, self.x2, self.y2)]


# ----------------------------------------------------------------------------- the film

@dataclass(frozen=True, eq=False)
class Film:
    """What the pipeline knows about a video file (``video.probe``). Sizes are display sizes."""

    path: Path
    size_bytes: int
    container: str
    codec: str
    width: int
    height: int
    rotation: int            # degrees the decoder turns coded frames to display them
    fps: float               # average frame rate
    vfr: bool                # frame durations vary
    start_offset: float      # video stream start relative to the container start, seconds
    timestamps: np.ndarray = field(repr=False)  # presentation time of each frame, seconds
    frame_duration: float = 0.0                 # nominal duration of one frame, seconds
    reader: str = "decord"                      # "decord" or "ffmpeg" (fallback)

    @property
    def frame_count(self) -> int:
        return int(len(self.timestamps))

    @property
    def duration(self) -> float:
        """Time from the first frame's start to the last frame's end."""
        if self.frame_count == 0:
            return 0.0
        return float(self.end_time(self.frame_count - 1) - self.timestamps[0])

    def time(self, frame: int) -> float:
        """Presentation time of a frame's start."""
        return float(self.timestamps[frame])

    def end_time(self, frame: int) -> float:
        """Presentation time at which a frame stops being shown."""
        if frame + 1 < self.frame_count:
            return float(self.timestamps[frame + 1])
        return float(self.timestamps[frame]) + self.frame_duration


@dataclass(frozen=True)
class Shot:
    """A run of frames [start_frame, end_frame) with presentation times [start, end)."""

    index: int          # position in the film's list (after long shots are split)
    start_frame: int
    end_frame: int      # exclusive
    start: float
    end: float
    cut: int            # number of the detected shot this belongs to
    part: int = 1       # 1-based part of a long shot
    parts: int = 1

    @property
    def frame_count(self) -> int:
        return self.end_frame - self.start_frame

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Keyframe:
    """A frame chosen to show a shot (a test frame of its window)."""

    frame: int
    time: float


# ----------------------------------------------------------------------------- the cast

@dataclass(frozen=True, eq=False)
class ReferencePhoto:
    path: Path
    sha256: str
    box: Box                 # the face, in the photo's (upright) pixels
    embedding: np.ndarray = field(repr=False)


@dataclass(frozen=True, eq=False)
class CastMember:
    name: str
    aliases: tuple[str, ...]
    photos: tuple[ReferencePhoto, ...]

    @property
    def id_image(self) -> Path:
        """The photo shown to a vision-language model as this person's ID image."""
        return self.photos[0].path

    @functools.cached_property
    def embeddings(self) -> np.ndarray:
        return np.stack([p.embedding for p in self.photos])


@dataclass(frozen=True, eq=False)
class Cast:
    root: Path | None
    members: tuple[CastMember, ...]
    face_model: str
    key: str                 # identifies the content (``cast.cast_digest``): caches key on it

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def __len__(self) -> int:
        return len(self.members)

    def member(self, name: str) -> CastMember:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(name)

    def similarities(self, embedding: np.ndarray) -> np.ndarray:
        """Cosine similarity of one face to each member (best over the member's photos)."""
        if not self.members:
            return np.zeros(0, np.float32)
        return np.array([float(np.max(m.embeddings @ embedding)) for m in self.members], np.float32)

    def track_similarities(self, track: "Track") -> np.ndarray:
        """[faces, members]: each face of ``track`` against each member, as ``similarities``."""
        return np.stack([self.similarities(f.embedding) for f in track.faces])


# ----------------------------------------------------------------------------- faces and people

@dataclass(frozen=True, eq=False)
class Face:
    """One face in one analysed frame, in film display pixels, with its embedding (unit length)."""

    frame: int
    time: float
    box: Box
    score: float                              # the detector's confidence
    embedding: np.ndarray = field(repr=False)
    contrast: float | None = None             # std of the box's brightness, grey levels (None: not measured)


@dataclass(frozen=True, eq=False)
class Track:
    """One person's faces across a shot's analysed frames (never two faces of one frame)."""

    faces: tuple[Face, ...]

    @functools.cached_property
    def embedding(self) -> np.ndarray:
        return unit(np.mean([f.embedding for f in self.faces], axis=0))

    @functools.cached_property
    def frames(self) -> frozenset[int]:
        return frozenset(f.frame for f in self.faces)

    @property
    def center_x(self) -> float:
        return float(np.mean([f.box.center[0] for f in self.faces]))

    @property
    def size(self) -> float:
        return float(np.mean([f.box.size for f in self.faces]))


@dataclass(frozen=True)
class ShotFaces:
    """What face analysis found in one shot: its keyframes and the tracks of its faces."""

    shot: Shot
    keyframes: tuple[Keyframe, ...]
    tracks: tuple[Track, ...]


@dataclass(frozen=True, eq=False)
class Appearance:
    """A track with who it is: a cast member's name, or a film-wide ``Unknown n`` label.

    The evidence is the film-wide person's (``identity``): ``margin`` and ``confidence`` are
    those of the claim of the member named, or of the closest member when unnamed."""

    track: Track
    name: str | None                          # the cast member, if named
    label: str | None                         # "Unknown n" otherwise
    similarity: float                         # mean similarity to the named member (best member if unnamed)
    face_similarities: tuple[float, ...]      # per face of the track, to the same member
    member_similarities: np.ndarray = field(repr=False)  # best similarity to each cast member
    cluster: int = 0                          # the film-wide person, numbered by first appearance
    cluster_frames: int = 0                   # analysed frames that person is seen in, film-wide
    margin: float = 0.0                       # person's similarity to the member over the runner-up member's
    confidence: float = 0.0                   # 0..1: how clearly the evidence points to the member

    @property
    def display_name(self) -> str:
        return self.name or self.label or UNKNOWN_PREFIX

    @property
    def in_cast(self) -> bool:
        return self.name is not None


@dataclass(frozen=True)
class ShotPeople:
    """A shot with the people in it, in the order their tracks were found."""

    shot: Shot
    keyframes: tuple[Keyframe, ...]
    people: tuple[Appearance, ...]

    def names(self) -> list[str]:
        """Cast names and unknown labels present, left to right."""
        ordered = sorted(self.people, key=lambda p: p.track.center_x)
        return list(dict.fromkeys(p.display_name for p in ordered))


# ----------------------------------------------------------------------------- windows and captions

@dataclass(frozen=True)
class WindowImage:
    """One image an engine sees: a cast member's ID image (``path``) or a frame of the shot."""

    role: Role
    name: str | None = None     # the cast member an ID image shows
    path: Path | None = None    # ID images: the reference photo
    frame: int | None = None    # test images: the film frame
    time: float | None = None


@dataclass(frozen=True)
class Window:
    """What the engine is shown for one shot: ID images first, then test frames."""

    shot: Shot
    images: tuple[WindowImage, ...]

    @property
    def ids(self) -> list[WindowImage]:
        return [i for i in self.images if i.role == "id"]

    @property
    def tests(self) -> list[WindowImage]:
        return [i for i in self.images if i.role == "test"]


@dataclass(frozen=True)
class Caption:
    text: str
    names: tuple[str, ...]      # the cast names / unknown labels the caption mentions
    # The mentioned cast names the faces did not see in the shot (engines that check; None: not checked).
    unverified_names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ShotAnnotation:
    people: ShotPeople
    window: Window
    caption: Caption

    @property
    def shot(self) -> Shot:
        return self.people.shot


@dataclass(frozen=True, eq=False)
class FilmAnnotation:
    """The pipeline's result for one film (its JSON form: ``annotation.document``)."""

    film: Film
    cast: Cast
    engine: dict                 # what identifies the engine's output (model, variant, settings)
    settings: dict               # the configuration of the run (``Config.to_json``)
    shots: tuple[ShotAnnotation, ...]
    unknown_count: int
    created: str                 # UTC time of the run, ISO 8601
    title: str | None = None     # from a batch manifest

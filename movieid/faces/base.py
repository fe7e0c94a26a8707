"""The face-backend interface and the face data every backend returns.

A backend finds faces in an RGB image and turns each into an L2-normalised embedding;
two embeddings of the same person have a cosine similarity at or above the backend's
``match_threshold``. Everything downstream (cast, identity, captions) is backend-agnostic.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np


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


@dataclass
class Face:
    """One detected face. ``embedding`` is None until the backend has embedded it."""

    box: Box
    score: float
    landmarks: np.ndarray | None = field(default=None, repr=False)   # [5, 2] pixels
    embedding: np.ndarray | None = field(default=None, repr=False)   # L2-normalised


class FaceBackend(ABC):
    """Detects and embeds faces. Implementations load their models in ``__init__``."""

    name: str = "?"
    match_threshold: float = 0.5   # cosine similarity; tuned per backend

    @property
    @abstractmethod
    def model_id(self) -> str:
        """Identifies the weights, so cached embeddings never mix models."""

    @abstractmethod
    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 image, without embeddings."""

    @abstractmethod
    def embed(self, image: np.ndarray, faces: list[Face]) -> list[Face]:
        """The same faces with ``embedding`` set (unit length)."""

    def analyze(self, image: np.ndarray, min_size: float = 0.0) -> list[Face]:
        """Detect, then embed the faces whose shorter side is at least ``min_size`` pixels."""
        faces = [f for f in self.detect(image) if f.box.size >= min_size]
        return self.embed(image, faces) if faces else []


def normalise(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector

"""The face-backend interface and what every backend returns.

A backend finds faces in an RGB image (``detect``) and turns each into a unit-length embedding
(``embed``); two embeddings of the same person have a cosine similarity at or above the
backend's ``match_threshold``. Everything downstream (cast, identity, captions) is
backend-agnostic.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from ..records import Box


@dataclass(frozen=True, eq=False)
class Detection:
    """A face found in an image, in that image's pixels."""

    box: Box
    score: float
    landmarks: np.ndarray | None = field(default=None, repr=False)   # [5, 2] pixels


@dataclass(frozen=True, eq=False)
class EmbeddedFace:
    """A detected face with its embedding (unit length)."""

    box: Box
    score: float
    embedding: np.ndarray = field(repr=False)
    landmarks: np.ndarray | None = field(default=None, repr=False)


class FaceBackend(ABC):
    """Detects and embeds faces. Implementations load their models in ``__init__``."""

    name: str = "?"
    match_threshold: float = 0.5   # cosine similarity; tuned per backend
    # Film-wide people and naming (``identity``); None derives them from match_threshold.
    cluster_threshold: float | None = None   # tracks average this much or more: one person
    confidence_margin: float | None = None   # a name's margin that counts as confidence 1

    @property
    @abstractmethod
    def model_id(self) -> str:
        """Identifies the weights, so cached embeddings never mix models."""

    @abstractmethod
    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in an RGB uint8 image."""

    @abstractmethod
    def embed(self, image: np.ndarray, faces: list[Detection]) -> np.ndarray:
        """``[len(faces), dim]`` unit-length embeddings of ``faces`` (found in ``image``)."""

    def detect_tilted(self, image: np.ndarray) -> list[Detection]:
        """A second, costlier look for faces ``detect`` cannot see (tilted heads), in the
        image's own pixels; face analysis asks for it only where ``detect`` found nobody.
        None by default (a detector that sees tilted faces needs no second look)."""
        return []

    def detect_more(self, image: np.ndarray) -> list[Detection] | None:
        """A second detector for faces ``detect`` misses (turned, covered, dark), costlier, in the
        image's own pixels; face analysis asks for it where ``detect`` finds nobody or frames of a
        shot disagree (``face_stage``). None: the backend has none."""
        return None

    def analyze(self, image: np.ndarray, min_size: float = 0.0) -> list[EmbeddedFace]:
        """Detect, then embed the faces whose shorter side is at least ``min_size`` pixels."""
        faces = [f for f in self.detect(image) if f.box.size >= min_size]
        if not faces:
            return []
        return [EmbeddedFace(f.box, f.score, e, f.landmarks) for f, e in zip(faces, self.embed(image, faces))]


def unit_rows(vectors) -> np.ndarray:
    """Each row scaled to length 1, as float32."""
    vectors = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), -1)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)

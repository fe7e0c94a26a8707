"""The engine interface: a shot's window (images with roles) and the cast in, a caption out.

Engines take shots in batches so that model engines can batch their work; the pipeline
attaches the test frames' pixels to each request only when ``needs_pixels`` is set.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from ..cast import Cast
from ..identity import ShotFaces
from ..windows import Window


@dataclass
class CaptionRequest:
    window: Window
    faces: ShotFaces
    frames: list[np.ndarray] = field(default_factory=list, repr=False)  # RGB, one per test image
    source_size: tuple[int, int] | None = None   # (width, height) of the film pixels face boxes are in


@dataclass(frozen=True)
class Caption:
    text: str
    names: tuple[str, ...]      # the cast names / unknown labels the caption mentions
    # Mentioned cast names the faces did not see in the shot (engines that check; None: not checked).
    unverified_names: tuple[str, ...] | None = None


class Engine(ABC):
    name: str = "?"
    needs_pixels: bool = False
    batch_size: int = 64

    def start(self, cast: Cast) -> None:
        """Per-film set-up that depends only on the cast (e.g. encoding its ID images)."""

    @abstractmethod
    def caption(self, requests: list[CaptionRequest]) -> list[Caption]:
        """One caption per request, in order."""

    @abstractmethod
    def settings(self) -> dict:
        """What the JSON records about this engine (model id, variant, generation settings)."""

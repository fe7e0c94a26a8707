"""The engine interface: a shot's window (images with roles) and its people in, a caption out.

Engines take shots in batches so that model engines can batch their work; the pipeline reads
the test frames' pixels only for engines that set ``needs_pixels``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..records import Caption, Cast, ShotPeople, Window

ENGINE_FRAME_SIDE = 896   # test frames for model engines: enough for a 448 px model input


@dataclass(frozen=True, eq=False)
class CaptionRequest:
    window: Window
    people: ShotPeople
    pixels: Mapping[int, np.ndarray] = field(default_factory=dict, repr=False)  # test frame -> RGB
    film_size: tuple[int, int] = (0, 0)   # (width, height) of the film pixels face boxes are in

    def frames(self) -> list[np.ndarray]:
        """The window's test frames as RGB arrays, in window order."""
        return [self.pixels[image.frame] for image in self.window.tests]


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

"""The engine interface: a shot's window (images with roles) and its people in, a caption out.

Captioning is two steps. ``answer`` is the model's work on a batch of windows; it reads only
the window and its pixels (unless ``names_in_prompt``), so the pipeline can run it while the
rest of the film is still being analysed. ``finish`` turns one answer into the caption with
the shot's film-wide people (a fallback from the faces, names checked against them), once
identity has decided them. The pipeline reads the test frames' pixels only for engines that
set ``needs_pixels``: the frames the face analysis saw (at ``faces.size``).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..records import Caption, Cast, ShotPeople, Window

ENGINE_FRAME_SIDE = 896   # longest side of the ID images the vlm engine reads: enough for a 448 px input


@dataclass(frozen=True, eq=False)
class CaptionRequest:
    window: Window
    people: ShotPeople | None    # the shot's film-wide people; None while the film is being analysed
    pixels: Mapping[int, np.ndarray] = field(default_factory=dict, repr=False)  # test frame -> RGB
    film_size: tuple[int, int] = (0, 0)   # (width, height) of the film pixels face boxes are in

    def frames(self) -> list[np.ndarray]:
        """The window's test frames as RGB arrays, in window order."""
        return [self.pixels[image.frame] for image in self.window.tests]


class Engine(ABC):
    name: str = "?"
    needs_pixels: bool = False
    names_in_prompt: bool = False   # ``answer`` reads the shot's names: it waits for film-wide identity
    batch_size: int = 64

    def start(self, cast: Cast) -> None:
        """Per-film set-up that depends only on the cast (e.g. encoding its ID images)."""

    def answer(self, requests: list[CaptionRequest]) -> list[str]:
        """The model's raw answer to each request, in order (engines without a model: none)."""
        return [""] * len(requests)

    @abstractmethod
    def finish(self, answer: str, people: ShotPeople) -> Caption:
        """The caption of one shot from its answer and its film-wide people."""

    @abstractmethod
    def settings(self) -> dict:
        """What the JSON records about this engine (model id, variant, generation settings)."""

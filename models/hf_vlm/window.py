"""What one caption is made from: the cast ID images of a shot's window, then its test frames."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class IdImage:
    """A cast member's reference photo, shown to the model after "<name> is"."""

    name: str
    pixels: np.ndarray          # RGB uint8 [H, W, 3]


@dataclass(frozen=True, eq=False)
class FaceMark:
    """A recognised face in a test frame (drawn as a coloured box with ``--mark-faces``)."""

    name: str
    box: tuple[float, float, float, float]   # x1, y1, x2, y2 in the frame's pixels


@dataclass(frozen=True, eq=False)
class TestFrame:
    pixels: np.ndarray          # RGB uint8 [H, W, 3]
    faces: tuple[FaceMark, ...] = ()

    __test__ = False            # not a pytest test class


@dataclass(frozen=True, eq=False)
class VlmWindow:
    """One shot: the ID images first (in prompt order), then the test frames."""

    ids: tuple[IdImage, ...]
    frames: tuple[TestFrame, ...]

    @property
    def image_count(self) -> int:
        return len(self.ids) + len(self.frames)

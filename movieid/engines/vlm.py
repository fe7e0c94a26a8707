"""The ``vlm`` engine: today's open VLMs (Qwen2.5-VL, SmolVLM2, Gemma 3, ...) through transformers,
shown the cast's ID images first as IDA-VLM is.

A thin adapter from the pipeline's ``CaptionRequest`` to ``movieid.models.hf_vlm.VlmCaptioner``:
ID images are read once per cast, face boxes are scaled from film pixels to the test frames',
answers are cleaned as IDA-VLM's are. The cast names a caption mentions are recorded; those the
faces did not see in the shot are kept but listed as ``unverified_names``.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np

from ..config import EngineConfig
from ..models.hf_vlm import DEFAULT_MAX_PIXELS, FaceMark, IdImage, TestFrame, VlmCaptioner, VlmWindow
from ..models.images import load_rgb
from ..records import Caption, Cast, ShotPeople
from .base import ENGINE_FRAME_SIDE, CaptionRequest, Engine
from .faces import describe
from .text import GENERAL_INSTRUCTION, INSTRUCTION, clean_caption, mentioned_names

log = logging.getLogger(__name__)


def _shrink(pixels: np.ndarray, max_side: int) -> np.ndarray:
    from PIL import Image

    h, w = pixels.shape[:2]
    if max(h, w) <= max_side:
        return pixels
    scale = max_side / max(h, w)
    return np.asarray(Image.fromarray(pixels).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                                     Image.Resampling.LANCZOS))


class VlmEngine(Engine):
    name = "vlm"
    needs_pixels = True

    def __init__(self, config: EngineConfig):
        self.core = VlmCaptioner(config.model, INSTRUCTION, GENERAL_INSTRUCTION, device=config.device,
                                 batch_size=config.batch_size, max_new_tokens=config.max_new_tokens,
                                 max_pixels=config.max_pixels or DEFAULT_MAX_PIXELS, mark_faces=config.mark_faces)
        self.batch_size = self.core.batch_size
        self.names_in_prompt = config.mark_faces   # the marks name the faces
        self._cast: Cast | None = None
        self._ids: dict[str, np.ndarray] = {}

    def start(self, cast: Cast) -> None:
        """Read each cast member's ID image once, at most as large as the test frames (the model
        encodes it once, where it can)."""
        if self._cast is not None and cast.key == self._cast.key:
            self._cast = cast
            return
        self._cast = cast
        self._ids = {m.name: _shrink(load_rgb(m.id_image), ENGINE_FRAME_SIDE) for m in cast.members}

    def _window(self, request: CaptionRequest) -> VlmWindow:
        ids = tuple(IdImage(image.name, self._ids[image.name]) for image in request.window.ids)
        frames = []
        named = [p for p in request.people.people if p.name] if self.names_in_prompt else []
        for image, pixels in zip(request.window.tests, request.frames()):
            width, height = request.film_size
            sx, sy = pixels.shape[1] / width, pixels.shape[0] / height
            marks = tuple(FaceMark(p.name, (f.box.x1 * sx, f.box.y1 * sy, f.box.x2 * sx, f.box.y2 * sy))
                          for p in named for f in p.track.faces if f.frame == image.frame)
            frames.append(TestFrame(pixels, marks))
        return VlmWindow(ids, tuple(frames))

    def answer(self, requests: list[CaptionRequest]) -> list[str]:
        return self.core.caption([self._window(r) for r in requests])

    def finish(self, answer: str, people: ShotPeople) -> Caption:
        text = clean_caption(answer)
        if not text:  # an empty answer still gets a caption: who the faces show
            log.info("shot %d: empty answer from the model; using the faces caption", people.shot.index)
            return dataclasses.replace(describe(people.people), unverified_names=())
        names = mentioned_names(text, self._cast)
        seen = {p.name for p in people.people if p.name}
        return Caption(text, names, unverified_names=tuple(n for n in names if n not in seen))

    def settings(self) -> dict:
        return {"name": self.name, **self.core.settings()}

"""The ``ida-vlm`` engine: IDA-VLM describes each shot, shown the cast's ID images first.

Per shot the prompt takes the published form — ``Alice is <img></img>\\n Bob is <img></img>\\n
Watching the following images <img></img>\\n<img></img>...`` — then ``INSTRUCTION``. The cast's
ID images go through the vision tower once per cast (``start``) and are reused for every
window; windows are generated in batches, and windows holding the same cast members (listed
in cast order) share their prompt prefix, which the model prefills once per batch. Answers
are cleaned to one or two plain sentences, and the cast names they mention (full names or
aliases) are recorded.
"""
from __future__ import annotations

import logging

from ..config import EngineConfig
from ..models.ida_vlm import IdaVlm, Request, RoleImage, build_id_query
from ..records import Caption, Cast, ShotPeople
from .base import CaptionRequest, Engine
from .faces import describe
from .text import GENERAL_INSTRUCTION, INSTRUCTION, clean_caption, mentioned_names

log = logging.getLogger(__name__)

AUTO_CHUNK = 64   # windows per generate() call when the model sizes its own batches


class IdaVlmEngine(Engine):
    name = "ida-vlm"
    needs_pixels = True

    def __init__(self, config: EngineConfig, model: IdaVlm | None = None):
        """The checkpoint ``config.model`` loaded, or ``model`` if given (already built, e.g. by a benchmark)."""
        self.config = config
        self.model = model or IdaVlm.from_pretrained(config.model, variant=config.variant or "base",
                                                     device=config.device)
        # Windows handed to the model at once; without --batch-size it sizes its own batches to
        # the free GPU memory.
        self.batch_size = config.batch_size or AUTO_CHUNK
        self._cast: Cast | None = None
        self._ids: dict[str, object] = {}

    def start(self, cast: Cast) -> None:
        """Encode each cast member's ID image once; later films with the same cast reuse it."""
        if self._cast is not None and cast.key == self._cast.key:
            self._cast = cast
            return
        members = cast.members
        encoded = self.model.precompute([RoleImage(m.id_image, "id") for m in members])
        self._cast = cast
        self._ids = {m.name: e for m, e in zip(members, encoded)}

    def _request(self, request: CaptionRequest):
        names = [image.name for image in request.window.ids]
        frames = request.frames()
        if names:
            return Request(build_id_query(names, len(frames), INSTRUCTION),
                           (*(self._ids[n] for n in names), *(RoleImage(f, "test") for f in frames)))
        return Request(build_id_query([], len(frames), GENERAL_INSTRUCTION),
                       tuple(RoleImage(f, "general") for f in frames))

    def answer(self, requests: list[CaptionRequest]) -> list[str]:
        answers = self.model.generate([self._request(r) for r in requests], max_new_tokens=self.config.max_new_tokens,
                                      batch_size=self.config.batch_size)
        return [a.text for a in answers]

    def finish(self, answer: str, people: ShotPeople) -> Caption:
        text = clean_caption(answer)
        if not text:  # an empty answer still gets a caption: who the faces show
            log.info("shot %d: empty answer from the model; using the faces caption", people.shot.index)
            return describe(people.people)
        return Caption(text, mentioned_names(text, self._cast))

    def settings(self) -> dict:
        return {"name": self.name, "model": str(self.config.model), "variant": self.model.variant,
                "dtype": str(self.model.dtype).replace("torch.", ""), "device": str(self.model.device),
                "decoding": "greedy", "max_new_tokens": self.config.max_new_tokens,
                "batch_size": self.config.batch_size or "auto", "instruction": INSTRUCTION}

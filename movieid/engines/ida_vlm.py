"""The ``ida-vlm`` engine: IDA-VLM describes each shot, shown the cast's ID images first.

Per shot the prompt takes the published form — ``Alice is <img></img>\\n Bob is <img></img>\\n
Watching the following images <img></img>\\n<img></img>...`` — then ``INSTRUCTION``. The cast's
ID images go through the vision tower once per cast (``start``) and are reused for every
window; windows are generated in batches, and windows holding the same cast members (listed
in cast order) share their prompt prefix, which the model prefills once per batch. Answers are cleaned to one or two plain sentences,
and the cast names they mention (full names or aliases) are recorded.
"""
from __future__ import annotations

import logging
import re

from ..cast import Cast
from ..errors import MovieIdError
from .base import Caption, CaptionRequest, Engine
from .faces import describe

log = logging.getLogger(__name__)

INSTRUCTION = "Describe in one or two sentences who is doing what, calling each person by name."
GENERAL_INSTRUCTION = "Describe in one or two sentences who is doing what."

_MARKUP = re.compile(r"<\|[^|>]*\|>|</?(?:ref|quad|img|imgpad)>|<box>.*?</box>", re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'“(]?[A-Z0-9])")


def clean_caption(text: str, max_sentences: int = 2) -> str:
    """Plain text: no ChatML or grounding markup, no role prefix, at most two sentences."""
    text = _MARKUP.sub("", text).replace("\ufffd", "")  # U+FFFD: a token cut inside a UTF-8 character
    text = re.sub(r"^\s*(?:assistant|answer)\s*[:\n]\s*", "", text, flags=re.IGNORECASE)
    text = " ".join(text.split())
    sentences = _SENTENCE_END.split(text)
    return " ".join(sentences[:max_sentences]).strip()


def mentioned_names(text: str, cast: Cast) -> tuple[str, ...]:
    """Cast members the text names (by full name or alias), in order of first mention."""
    found: list[tuple[int, str]] = []
    for member in cast.members:
        positions = [m.start() for label in (member.name, *member.aliases) if label.strip()
                     for m in re.finditer(rf"(?<!\w){re.escape(label)}(?!\w)", text, flags=re.IGNORECASE)]
        if positions:
            found.append((min(positions), member.name))
    return tuple(name for _, name in sorted(found))


class IdaVlmEngine(Engine):
    name = "ida-vlm"
    needs_pixels = True

    def __init__(self, model: str, variant: str | None = None, device: str | None = None,
                 batch_size: int = 8, max_new_tokens: int = 64):
        try:
            import torch  # noqa: F401
            from movieid.models.ida_vlm import IdaVlm
        except ImportError as exc:
            raise MovieIdError(f"the ida-vlm engine needs PyTorch ({exc.name} is missing): "
                               "pip install -e '.[vlm]'") from None
        self.model_id = str(model)
        self.model = IdaVlm.from_pretrained(model, variant=variant or "base", device=device)
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self._cast: Cast | None = None
        self._cast_key: str | None = None
        self._ids: dict[str, object] = {}

    def start(self, cast: Cast) -> None:
        """Encode each cast member's ID image once; later films with the same cast reuse it."""
        if cast.key == self._cast_key:
            self._cast = cast
            return
        from movieid.models.ida_vlm import RoleImage

        members = cast.members
        encoded = self.model.precompute([RoleImage(m.id_image, "id") for m in members])
        self._cast, self._cast_key = cast, cast.key
        self._ids = {m.name: e for m, e in zip(members, encoded)}

    def _request(self, request: CaptionRequest):
        from movieid.models.ida_vlm import Request, RoleImage, build_id_query

        names = [image.name for image in request.window.ids]
        frames = request.frames
        if names:
            query = build_id_query(names, len(frames), INSTRUCTION)
            return Request(query, [*(self._ids[n] for n in names), *(RoleImage(f, "test") for f in frames)])
        images = "\n".join(["<img></img>"] * len(frames))
        return Request(f"Watching the following images {images}\n {GENERAL_INSTRUCTION}",
                       [RoleImage(f, "general") for f in frames])

    def caption(self, requests: list[CaptionRequest]) -> list[Caption]:
        answers = self.model.generate([self._request(r) for r in requests], max_new_tokens=self.max_new_tokens)
        captions = []
        for request, answer in zip(requests, answers):
            text = clean_caption(answer.text)
            if not text:  # an empty answer still gets a caption: who the faces show
                log.info("shot %d: empty answer from the model; using the faces caption", request.window.shot.index)
                captions.append(describe(request.faces.people))
                continue
            captions.append(Caption(text, mentioned_names(text, self._cast)))
        return captions

    def settings(self) -> dict:
        return {"name": self.name, "model": self.model_id, "variant": self.model.variant,
                "dtype": str(self.model.dtype).replace("torch.", ""), "device": str(self.model.device),
                "decoding": "greedy", "max_new_tokens": self.max_new_tokens, "batch_size": self.batch_size,
                "instruction": INSTRUCTION}

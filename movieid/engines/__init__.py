"""Caption engines: ``faces`` (offline default), ``ida-vlm`` (the ID-aware VLM) and ``vlm`` (open VLMs
through transformers)."""
from __future__ import annotations

from .base import Caption, CaptionRequest, Engine

ENGINES = ("faces", "ida-vlm", "vlm")

__all__ = ["ENGINES", "Caption", "CaptionRequest", "Engine", "load_engine"]


def load_engine(name: str, **options) -> Engine:
    if name == "faces":
        from .faces import FacesEngine

        return FacesEngine()
    if name == "ida-vlm":
        from .ida_vlm import IdaVlmEngine

        return IdaVlmEngine(**options)
    if name == "vlm":
        from .vlm import VlmEngine

        return VlmEngine(**options)
    raise ValueError(f"unknown engine {name!r} (choose from {', '.join(ENGINES)})")

"""Caption engines: ``faces`` (offline default), ``ida-vlm`` (the ID-aware VLM) and ``vlm`` (open
VLMs through transformers)."""
from __future__ import annotations

from ..config import EngineConfig
from ..errors import missing_dependency
from .base import CaptionRequest, Engine

__all__ = ["CaptionRequest", "Engine", "load_engine"]


def load_engine(config: EngineConfig) -> Engine:
    if config.name == "faces":
        from .faces import FacesEngine

        return FacesEngine()
    if config.name == "vlm":
        try:
            from .vlm import VlmEngine
        except ImportError as exc:
            raise missing_dependency(exc, "the vlm engine", "hf") from None
        return VlmEngine(config)
    try:
        from .ida_vlm import IdaVlmEngine
    except ImportError as exc:
        raise missing_dependency(exc, "the ida-vlm engine", "vlm") from None
    return IdaVlmEngine(config)

"""Caption engines: ``faces`` (offline default) and ``ida-vlm`` (the ID-aware VLM)."""
from __future__ import annotations

from ..config import EngineConfig
from ..errors import MovieIdError
from .base import CaptionRequest, Engine

__all__ = ["CaptionRequest", "Engine", "ida_vlm_max_images", "load_engine"]


def _need_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise MovieIdError(f"the ida-vlm engine needs PyTorch ({exc.name} is missing): "
                           "pip install -e '.[vlm]'") from None


def ida_vlm_max_images() -> int:
    """How many images an IDA-VLM window may hold (as the model was trained)."""
    _need_torch()
    from ..models.ida_vlm import MAX_IMAGES

    return MAX_IMAGES


def load_engine(config: EngineConfig) -> Engine:
    if config.name == "faces":
        from .faces import FacesEngine

        return FacesEngine()
    _need_torch()
    from .ida_vlm import IdaVlmEngine

    return IdaVlmEngine(config)

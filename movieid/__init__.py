"""movieid: per-shot, character-aware captions for films (SRT, WebVTT and JSON)."""

__version__ = "0.1.0"

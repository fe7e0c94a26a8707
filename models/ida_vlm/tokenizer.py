"""Qwen's tiktoken BPE, read from the checkpoint's ``qwen.tiktoken``, with its special tokens.

Special-token ids follow the ranks of the file, in the published order: with the published
151643-rank file ``<|endoftext|>`` is 151643 and ``<img>`` 151857; a smaller (test) file shifts
them all, so ids are always derived from the number of ranks.
"""
from __future__ import annotations

import base64
import unicodedata
from pathlib import Path

import tiktoken

from .errors import IdaVlmError

PAT_STR = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
REF_START, REF_END, BOX_START, BOX_END = "<ref>", "</ref>", "<box>", "</box>"
IMG_START, IMG_END, IMG_PAD = "<img>", "</img>", "<imgpad>"
# Markup the model reads and writes inside ordinary text (Qwen-VL's IMAGE_ST, in its order).
MARKUP_TOKENS = (REF_START, REF_END, BOX_START, BOX_END, "<quad>", "</quad>", IMG_START, IMG_END, IMG_PAD)
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END, *(f"<|extra_{i}|>" for i in range(205)), *MARKUP_TOKENS)
FULL_SIZE_ENDOFTEXT_ID = 151643  # documented value for the published qwen.tiktoken (151643 ranks)


def read_ranks(path: str | Path) -> dict[bytes, int]:
    """Parse ``base64(token) rank`` lines."""
    try:
        lines = Path(path).read_bytes().splitlines()
        ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in lines if line)}
    except (OSError, ValueError) as error:
        raise IdaVlmError(f"cannot read tokenizer ranks: {error}", path) from error
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise IdaVlmError("tokenizer ranks are not 0..n-1", path)
    return ranks


class QwenTokenizer:
    """Byte-level BPE with ChatML and Qwen-VL markup special tokens."""

    def __init__(self, ranks: dict[bytes, int]):
        self.special_ids = {token: len(ranks) + i for i, token in enumerate(SPECIAL_TOKENS)}
        self._encoding = tiktoken.Encoding(
            "qwen", pat_str=PAT_STR, mergeable_ranks=ranks, special_tokens=self.special_ids)
        self._markup = set(MARKUP_TOKENS)
        self.endoftext_id = self.special_ids[ENDOFTEXT]
        self.im_start_id = self.special_ids[IM_START]
        self.im_end_id = self.special_ids[IM_END]
        self.img_start_id = self.special_ids[IMG_START]
        self.img_end_id = self.special_ids[IMG_END]
        self.img_pad_id = self.special_ids[IMG_PAD]

    @classmethod
    def from_file(cls, path: str | Path) -> "QwenTokenizer":
        return cls(read_ranks(path))

    @property
    def n_vocab(self) -> int:
        return self._encoding.n_vocab

    def encode(self, text: str) -> list[int]:
        """NFC-normalised text to ids; markup (``<ref>``, ``<box>``, ...) becomes its special token,
        other special-token strings stay plain text (as Qwen-VL's ``make_context`` encodes)."""
        return self._encoding.encode(
            unicodedata.normalize("NFC", text), allowed_special=self._markup, disallowed_special=())

    def decode(self, ids: list[int]) -> str:
        """Ids to text; special tokens appear as their strings, ids past the vocabulary are dropped
        (an untrained model can emit the padding rows of the embedding)."""
        return self._encoding.decode([i for i in ids if i < self.n_vocab], errors="replace")

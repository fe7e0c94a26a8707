"""Model dimensions, read from the checkpoint's ``config.json`` under the published key names."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import IdaVlmError

IMAGE_TOKENS = 256  # resampler queries per image (a 16x16 grid); fixed in Qwen-VL, not in config.json

_LM_KEYS = (
    "hidden_size", "intermediate_size", "kv_channels", "layer_norm_epsilon", "num_attention_heads",
    "num_hidden_layers", "rotary_emb_base", "rotary_pct", "seq_length", "use_dynamic_ntk",
    "use_logn_attn", "no_bias", "vocab_size", "max_position_embeddings", "visual",
)
_VISUAL_KEYS = ("heads", "image_size", "image_start_id", "layers", "mlp_ratio", "output_dim", "patch_size", "width")


@dataclass(frozen=True)
class VisionConfig:
    """ViT-bigG/14 and resampler sizes (the nested ``visual`` dict)."""

    image_size: int
    patch_size: int
    width: int
    layers: int
    heads: int
    mlp_ratio: float
    output_dim: int
    image_start_id: int

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def mlp_width(self) -> int:
        return int(self.width * self.mlp_ratio)

    @property
    def resampler_heads(self) -> int:
        return self.output_dim // 128


@dataclass(frozen=True)
class IdaVlmConfig:
    """Qwen-7B language model sizes plus the vision tower's."""

    hidden_size: int
    intermediate_size: int
    kv_channels: int
    layer_norm_epsilon: float
    num_attention_heads: int
    num_hidden_layers: int
    rotary_emb_base: float
    rotary_pct: float
    seq_length: int
    use_dynamic_ntk: bool
    use_logn_attn: bool
    no_bias: bool
    vocab_size: int
    max_position_embeddings: int
    visual: VisionConfig

    @property
    def head_dim(self) -> int:
        return self.kv_channels

    @classmethod
    def from_dict(cls, raw: dict, source: str | Path | None = None) -> "IdaVlmConfig":
        missing = [k for k in _LM_KEYS if k not in raw] + [
            f"visual.{k}" for k in _VISUAL_KEYS if k not in raw.get("visual", {})]
        if missing:
            raise IdaVlmError(f"config is missing keys: {', '.join(missing)}", source)
        visual = VisionConfig(**{k: raw["visual"][k] for k in _VISUAL_KEYS})
        config = cls(**{k: raw[k] for k in _LM_KEYS if k != "visual"}, visual=visual)
        config._validate(source)
        return config

    @classmethod
    def from_file(cls, path: str | Path) -> "IdaVlmConfig":
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise IdaVlmError(f"cannot read config: {error}", path) from error
        return cls.from_dict(raw, path)

    def _validate(self, source) -> None:
        problems = []
        if self.rotary_pct != 1.0:
            problems.append(f"rotary_pct {self.rotary_pct} (only 1.0, as published, is supported)")
        if self.kv_channels * self.num_attention_heads != self.hidden_size:
            problems.append("kv_channels * num_attention_heads != hidden_size")
        if self.visual.output_dim != self.hidden_size:
            problems.append("visual.output_dim != hidden_size")
        if self.visual.output_dim % 128:
            problems.append("visual.output_dim is not a multiple of 128 (resampler heads are 128 wide)")
        if self.visual.image_size % self.visual.patch_size:
            problems.append("visual.image_size is not a multiple of visual.patch_size")
        if problems:
            raise IdaVlmError(f"unsupported config: {'; '.join(problems)}", source)

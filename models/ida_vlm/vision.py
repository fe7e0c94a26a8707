"""The vision tower (``transformer.visual``): ViT-bigG/14 patches -> resampler -> ``ln_post`` -> ``proj``."""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from . import fused
from .config import IMAGE_TOKENS, VisionConfig
from .resampler import Resampler, resize_grid_embedding


class VisualAttention(nn.Module):
    """Self-attention whose fused ``in_proj`` output is laid out per head: [heads, (q, k, v) * head_dim]."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj = nn.Linear(width, 3 * width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.in_proj(x).unflatten(-1, (self.heads, -1))  # [N, L, heads, 3 * head_dim]
        q, k, v = (t.transpose(1, 2) for t in qkv.chunk(3, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(1, 2).flatten(2))


class LayerNorm(nn.LayerNorm):
    def add(self, x: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The residual sum ``x + delta`` and its norm, in one pass on CUDA."""
        return fused.add_norm(fused.add_layer_norm, x, delta, self.weight, self.bias, self.eps)


class VisualBlock(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.width, eps=1e-6)
        self.attn = VisualAttention(config.width, config.heads)
        self.ln_2 = LayerNorm(config.width, eps=1e-6)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(config.width, config.mlp_width)),
            ("gelu", nn.GELU()),
            ("c_proj", nn.Linear(config.mlp_width, config.width)),
        ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, h = self.ln_2.add(x, self.attn(self.ln_1(x)))
        return x + self.mlp(h)


class VisualStack(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.resblocks = nn.ModuleList(VisualBlock(config) for _ in range(config.layers))


class VisionTower(nn.Module):
    def __init__(self, config: VisionConfig, with_id_former: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(3, config.width, kernel_size=config.patch_size, stride=config.patch_size, bias=False)
        self.positional_embedding = nn.Parameter(torch.empty(IMAGE_TOKENS, config.width))  # 16x16 grid
        self.ln_pre = nn.LayerNorm(config.width, eps=1e-6)
        self.transformer = VisualStack(config)
        self.attn_pool = Resampler(config, with_id_former)
        self.ln_post = nn.LayerNorm(config.output_dim, eps=1e-6)
        self.proj = nn.Parameter(torch.empty(config.output_dim, config.output_dim))

    def patch_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[N, 3, S, S]`` normalised pixels -> ``[N, grid*grid, dim]`` resampler keys/values."""
        return self.attn_pool.project(self.vit(pixels))

    def vit(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[N, 3, S, S]`` normalised pixels -> ``[N, grid*grid, width]`` ViT outputs: the part of the
        tower that training keeps frozen (the resampler after it is trained)."""
        x = self.conv1(pixels.to(self.conv1.weight.dtype)).flatten(2).transpose(1, 2)
        x = self.ln_pre(x + resize_grid_embedding(self.positional_embedding, x.shape[1]))
        for block in self.transformer.resblocks:
            x = block(x)
        return x

    def output(self, pooled: torch.Tensor) -> torch.Tensor:
        """Resampler output -> the visual tokens that replace an image's pad tokens."""
        return self.ln_post(pooled) @ self.proj

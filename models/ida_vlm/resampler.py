"""The resampler (``visual.attn_pool``): 256 learned queries cross-attend to the patch features.

With the ID-Former (checkpoint variant ``model-idf``) an extra cross-attention ``attn1`` first
lets each test image's patch features attend to the window's ID-image tokens.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from .config import IMAGE_TOKENS, VisionConfig


@functools.lru_cache(maxsize=None)
def _bicubic_map(source: int, target: int, device: torch.device) -> torch.Tensor:
    """``[target^2, source^2]`` matrix of bicubic resizing (align_corners False) from a
    source x source grid to target x target: torch's own interpolation applied to every one-hot
    grid, in float64. Depends only on the sizes, so it is built once."""
    basis = torch.eye(source * source, dtype=torch.float64).reshape(-1, 1, source, source)
    resized = F.interpolate(basis, size=(target, target), mode="bicubic", align_corners=False)
    return resized.reshape(source * source, target * target).T.float().to(device)


def resize_grid_embedding(table: torch.Tensor, n_positions: int) -> torch.Tensor:
    """A square grid of embeddings ``[n*n, C]`` resized bicubically (align_corners False, in
    float32) to ``n_positions`` positions, as Qwen-VL's ``get_abs_pos``. Done as one matrix
    product: torch's CUDA bicubic kernel walks the 4096 channels serially (17 ms a call on H100)."""
    source, target = round(table.shape[0] ** 0.5), round(n_positions ** 0.5)
    if source == target:
        return table
    return (_bicubic_map(source, target, table.device) @ table.float()).to(table.dtype)


class CrossAttention(nn.Module):
    """``nn.MultiheadAttention``'s parameters (``in_proj_weight`` holds [Q; K; V] blocks), batch first."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """Inputs are ``[N, L, dim]``, or ``[L, dim]`` when shared by the whole batch (projected once)."""
        batch = max(t.shape[0] for t in (query, key, value) if t.dim() == 3)
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q, k, v = F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(-3, -2) for t in (q, k, v))
        q, k, v = (t.expand(batch, *t.shape[-3:]) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(-3, -2).flatten(-2))


class Resampler(nn.Module):
    def __init__(self, config: VisionConfig, with_id_former: bool):
        super().__init__()
        dim, heads = config.output_dim, config.resampler_heads
        self.pos_embed = nn.Parameter(torch.empty(IMAGE_TOKENS, dim))  # fixed 2-D sin-cos, stored
        self.query = nn.Parameter(torch.empty(IMAGE_TOKENS, dim))
        self.kv_proj = nn.Linear(config.width, dim, bias=False)
        self.attn = CrossAttention(dim, heads)
        self.ln_q = nn.LayerNorm(dim, eps=1e-6)
        self.ln_kv = nn.LayerNorm(dim, eps=1e-6)
        self.attn1 = CrossAttention(dim, heads) if with_id_former else None

    def project(self, patches: torch.Tensor) -> torch.Tensor:
        """``[N, P, width]`` ViT patches -> ``[N, P, dim]`` keys/values of the resampler."""
        return self.ln_kv(self.kv_proj(patches))

    def modulate(self, features: torch.Tensor, id_tokens: torch.Tensor) -> torch.Tensor:
        """ID-Former: test-image features ``[N, P, dim]`` (plus their position embedding) attend to
        the window's ID tokens ``[n_id * 256, dim]``; the result is added back (residual)."""
        query = features + resize_grid_embedding(self.pos_embed, features.shape[1])
        return features + self.attn1(query, id_tokens, id_tokens)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[N, P, dim]`` features -> ``[N, 256, dim]`` tokens (before ``ln_post`` and ``proj``)."""
        query = self.ln_q(self.query) + self.pos_embed
        keys = features + resize_grid_embedding(self.pos_embed, features.shape[1])
        return self.attn(query, keys, features)

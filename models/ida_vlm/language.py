"""Qwen-7B (checkpoint prefix ``transformer.``): RMSNorm, rotary attention with dynamic NTK and
log-n scaling, SwiGLU MLP, and a preallocated key/value cache."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.bias import causal_lower_right

from .config import IdaVlmConfig


class RMSNorm(nn.Module):
    """Normalised in float32 and rounded to the input's dtype, then scaled (Qwen's order)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, x.shape[-1:], eps=self.eps) * self.weight


def ntk_alpha(prompt_length: int, seq_length: int) -> float:
    """Dynamic NTK factor, fixed by the prompt's length on the first forward (1 up to seq_length)."""
    return max(2 ** math.ceil(math.log(prompt_length / seq_length, 2) + 1) - 1, 1)


@dataclass
class Positions:
    """Rotary tables ``[B, T, 1, 1, head_dim]`` (float32, for queries and keys stacked) and the
    log-n query scale ``[B, T, 1, 1]``
    (None where every position is within seq_length, so the scale would be 1)."""

    cos: torch.Tensor
    sin: torch.Tensor
    logn: torch.Tensor | None

    def step(self, index: int) -> "Positions":
        """The tables of one decode step."""
        pick = slice(index, index + 1)
        return Positions(self.cos[:, pick], self.sin[:, pick], None if self.logn is None else self.logn[:, pick])


def positions_for(config: IdaVlmConfig, positions: torch.Tensor, alphas: list[float], dtype: torch.dtype) -> Positions:
    """Tables for 0-based positions ``[B, T]`` of rows whose NTK factors are ``alphas``."""
    dim = config.head_dim
    inv_freq = []
    for alpha in alphas:
        base = config.rotary_emb_base * alpha ** (dim / (dim - 2))
        inv_freq.append(1.0 / (base ** (torch.arange(0, dim, 2, device=positions.device).float() / dim)))
    freqs = positions.float()[..., None] * torch.stack(inv_freq)[:, None, :]
    emb = torch.cat((freqs, freqs), dim=-1)[:, :, None, None, :]
    logn = None
    if config.use_logn_attn and int(positions.max()) + 1 > config.seq_length:
        one_based = (positions + 1).double()
        scale = torch.where(one_based > config.seq_length, one_based.log() / math.log(config.seq_length), 1.0)
        logn = scale.float().to(dtype)[:, :, None, None]
    return Positions(emb.cos(), emb.sin(), logn)


def rotate(x: torch.Tensor, pos: Positions) -> torch.Tensor:
    """Rotary embedding, rotate-half convention, computed in float32."""
    x32 = x.float()
    first, second = x32.chunk(2, dim=-1)
    return (x32 * pos.cos + torch.cat((-second, first), dim=-1) * pos.sin).type_as(x)


@dataclass
class KVCache:
    """Keys and values of every layer, ``[B, heads, capacity, head_dim]`` each, allocated once."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @classmethod
    def allocate(cls, config: IdaVlmConfig, batch: int, capacity: int, dtype: torch.dtype, device) -> "KVCache":
        shape = (batch, config.num_attention_heads, capacity, config.head_dim)
        layers = range(config.num_hidden_layers)
        # Zeroed: masked (padding) columns still enter the attention product as 0 * value.
        return cls([torch.zeros(shape, dtype=dtype, device=device) for _ in layers],
                   [torch.zeros(shape, dtype=dtype, device=device) for _ in layers])

    def copy_columns(self, source: int, source_start: int, row: int, start: int, length: int) -> None:
        """Copy ``length`` cached positions of row ``source`` into row ``row`` (a shared prompt
        prefix), in place: no second cache."""
        for cached in (*self.keys, *self.values):
            cached[row, :, start:start + length] = cached[source, :, source_start:source_start + length]


@dataclass
class CacheSlot:
    """Where a forward writes its keys/values (rows of the cache, from column ``start``), and what
    it attends to: the cached columns from ``read_from`` up to its own (decode: 0, padding hidden
    by a mask; a prompt's suffix: its row's first column, to see the shared prefix), or, with
    ``read_from`` None, only itself (a prefill from the prompt's start)."""

    cache: KVCache
    rows: slice
    start: int
    read_from: int | None


class Attention(nn.Module):
    def __init__(self, config: IdaVlmConfig, layer: int):
        super().__init__()
        self.heads, self.layer = config.num_attention_heads, layer
        self.c_attn = nn.Linear(config.hidden_size, 3 * config.hidden_size)  # [Q; K; V] blocks
        self.c_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=not config.no_bias)

    def forward(self, x: torch.Tensor, pos: Positions, slot: CacheSlot | None,
                key_mask: torch.Tensor | None) -> torch.Tensor:
        qkv = self.c_attn(x).unflatten(-1, (3, self.heads, -1))  # [B, T, (q, k, v), heads, head_dim]
        q, k = rotate(qkv[:, :, :2], pos).unbind(2)
        v = qkv[:, :, 2]
        if pos.logn is not None:
            q = q * pos.logn
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, heads, T, head_dim]
        if slot is not None:
            keys, values = slot.cache.keys[self.layer], slot.cache.values[self.layer]
            end = slot.start + x.shape[1]
            keys[slot.rows, :, slot.start:end] = k
            values[slot.rows, :, slot.start:end] = v
            if slot.read_from is not None:
                k, v = keys[slot.rows, :, slot.read_from:end], values[slot.rows, :, slot.read_from:end]
        if key_mask is None and 1 < q.shape[2] < k.shape[2]:
            key_mask = causal_lower_right(q.shape[2], k.shape[2])  # the queries are the last keys
        causal = key_mask is None and q.shape[2] > 1
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, is_causal=causal)
        return self.c_proj(out.transpose(1, 2).flatten(2))


class MLP(nn.Module):
    """SwiGLU with the gate on ``w2``: ``c_proj(w1(x) * silu(w2(x)))``."""

    def __init__(self, config: IdaVlmConfig):
        super().__init__()
        half, bias = config.intermediate_size // 2, not config.no_bias
        self.w1 = nn.Linear(config.hidden_size, half, bias=bias)
        self.w2 = nn.Linear(config.hidden_size, half, bias=bias)
        self.c_proj = nn.Linear(half, config.hidden_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.w1(x) * F.silu(self.w2(x)))


class Block(nn.Module):
    def __init__(self, config: IdaVlmConfig, layer: int):
        super().__init__()
        self.ln_1 = RMSNorm(config.hidden_size, config.layer_norm_epsilon)
        self.attn = Attention(config, layer)
        self.ln_2 = RMSNorm(config.hidden_size, config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, pos: Positions, slot: CacheSlot | None,
                key_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), pos, slot, key_mask)
        return x + self.mlp(self.ln_2(x))


class QwenModel(nn.Module):
    """The checkpoint's ``transformer.``: token embedding, blocks, final norm, and (nested there by
    the authors) the vision tower."""

    def __init__(self, config: IdaVlmConfig, visual: nn.Module):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.hidden_size)
        self.h = nn.ModuleList(Block(config, layer) for layer in range(config.num_hidden_layers))
        self.ln_f = RMSNorm(config.hidden_size, config.layer_norm_epsilon)
        self.visual = visual

    def forward(self, x: torch.Tensor, pos: Positions, slot: CacheSlot | None = None,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings ``[B, T, hidden]`` -> final hidden states. ``key_mask`` (bool, ``[B, 1, 1, keys]``)
        hides left padding from decode steps; without it attention is causal, ``x`` being the last
        of the keys (itself, or a suffix after cached columns)."""
        for block in self.h:
            x = block(x, pos, slot, key_mask)
        return self.ln_f(x)

"""Qwen-7B (checkpoint prefix ``transformer.``): RMSNorm, rotary attention with dynamic NTK and
log-n scaling, SwiGLU MLP.

How a layer's attention reads and writes keys/values is decided by the attention context passed down
the stack: ``Causal`` (a whole prompt, no cache), ``Prefill`` (prompt positions into the cache,
after a shared prefix) and ``Decode`` (one token per row; a prefix shared by several rows is read
once for all of them)."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.bias import causal_lower_right

from . import decode_attention, fused
from .config import IdaVlmConfig


# Scaled-dot-product attention backends, most preferred first (bench/ida_vlm.py measures them).
# cuDNN's kernel takes the ViT's attention in 55 % of flash's time on an H200; prompt parts after a
# shared prefix (a lower-right causal mask) go to flash whatever the order.
SDPA_PRIORITY = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                 SDPBackend.MATH]


def attention_kernels():
    """A context in which ``F.scaled_dot_product_attention`` tries ``SDPA_PRIORITY`` in order."""
    return sdpa_kernel(SDPA_PRIORITY, set_priority=True)


class RMSNorm(nn.Module):
    """Normalised in float32 and rounded to the input's dtype, then scaled (Qwen's order)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused.call(fused.rms_norm, fused.flat(x), self.weight, self.eps).view(x.shape)

    def add(self, x: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The residual sum ``x + delta`` and its norm, in one pass on CUDA."""
        return fused.add_norm(fused.add_rms_norm, x, delta, self.weight, self.eps)


def ntk_alpha(prompt_length: int, seq_length: int) -> float:
    """Dynamic NTK factor, fixed by the prompt's length on the first forward (1 up to seq_length)."""
    return max(2 ** math.ceil(math.log(prompt_length / seq_length, 2) + 1) - 1, 1)


def inverse_frequencies(config: IdaVlmConfig, alphas: Sequence[float], device) -> torch.Tensor:
    """``[B, head_dim / 2]`` rotary frequencies of rows whose NTK factors are ``alphas``."""
    dim = config.head_dim
    exponents = torch.arange(0, dim, 2, device=device).float() / dim
    return torch.stack([1.0 / ((config.rotary_emb_base * alpha ** (dim / (dim - 2))) ** exponents) for alpha in alphas])


@dataclass
class Positions:
    """Rotary tables ``[B, T, 1, 1, head_dim]`` (float32, for queries and keys stacked) and the
    log-n query scale ``[B, T, 1, 1]`` (None where no position is past seq_length: the scale is 1)."""

    cos: torch.Tensor
    sin: torch.Tensor
    logn: torch.Tensor | None


def needs_logn(config: IdaVlmConfig, last_position: int) -> bool:
    return config.use_logn_attn and last_position + 1 > config.seq_length


def positions_for(config: IdaVlmConfig, positions: torch.Tensor, inv_freq: torch.Tensor, logn: bool,
                  dtype: torch.dtype) -> Positions:
    """Tables for 0-based positions ``[B, T]``; ``logn`` whether any is past seq_length (decided by
    the caller, so that nothing here waits for the device)."""
    freqs = positions.float()[..., None] * inv_freq[:, None, :]
    emb = torch.cat((freqs, freqs), dim=-1)[:, :, None, None, :]
    scale = None
    if logn:
        one_based = (positions + 1).double()
        scale = torch.where(one_based > config.seq_length, one_based.log() / math.log(config.seq_length), 1.0)
        scale = scale.float().to(dtype)[:, :, None, None]
    return Positions(emb.cos(), emb.sin(), scale)


@dataclass
class KVCache:
    """Keys and values of every layer, ``[B, heads, capacity, head_dim]`` each, allocated once."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @classmethod
    def allocate(cls, config: IdaVlmConfig, batch: int, capacity: int, dtype: torch.dtype, device) -> "KVCache":
        shape = (batch, config.num_attention_heads, capacity, config.head_dim)
        layers = range(config.num_hidden_layers)
        # Zeroed: masked columns still enter the attention product as 0 * value.
        return cls([torch.zeros(shape, dtype=dtype, device=device) for _ in layers],
                   [torch.zeros(shape, dtype=dtype, device=device) for _ in layers])

    @staticmethod
    def bytes_per_position(config: IdaVlmConfig, dtype: torch.dtype) -> int:
        itemsize = torch.empty((), dtype=dtype).element_size()
        return 2 * config.num_hidden_layers * config.num_attention_heads * config.head_dim * itemsize


class AttentionContext(Protocol):
    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``[B, heads, T, head_dim]`` queries, keys and values of positions -> attention output."""


class Causal:
    """A whole prompt, no cache."""

    def attend(self, layer, q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)


@dataclass
class Prefill:
    """Prompt positions written into ``cache`` (rows ``rows``, columns from ``start``); they attend
    causally to themselves and, when given, to every position of a shared prefix (its one cached
    copy, batch 1, expanded here for the product)."""

    cache: KVCache
    rows: slice
    start: int
    prefix: KVCache | None = None

    def attend(self, layer, q, k, v):
        end = self.start + k.shape[2]
        self.cache.keys[layer][self.rows, :, self.start:end] = k
        self.cache.values[layer][self.rows, :, self.start:end] = v
        if self.prefix is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        rows = q.shape[0]
        k = torch.cat([self.prefix.keys[layer].expand(rows, -1, -1, -1), k], dim=2)
        v = torch.cat([self.prefix.values[layer].expand(rows, -1, -1, -1), v], dim=2)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(q.shape[2], k.shape[2]))


def matmul_f32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` over equal leading dims with a float32 result: half-precision inputs accumulate and
    come out in float32 (on CUDA without upcast copies, so the cache is read once, as it is)."""
    lead = a.shape[:-2]
    a3, b3 = a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:])
    if a.dtype == torch.float32:
        out = torch.bmm(a3, b3)
    elif a.is_cuda:
        out = torch.bmm(a3, b3, out_dtype=torch.float32)
    else:
        out = torch.bmm(a3.float(), b3.float())
    return out.view(*lead, *out.shape[-2:])


def partial_attention(q, k, v, bias=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Attention of ``q [..., M, D]`` over ``k, v [..., K, D]``, not yet normalised: the sum of
    ``exp(score - max) * v``, the max and the sum of ``exp(score - max)`` (float32), so that parts
    over different keys merge exactly (``merge``). Scores in float32, weights rounded to the values'
    dtype for the second product, as flash attention does."""
    scores = matmul_f32(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if bias is not None:
        scores = scores + bias
    top = scores.amax(dim=-1, keepdim=True)
    weights = torch.exp(scores - top)
    return matmul_f32(weights.to(v.dtype), v), top, weights.sum(dim=-1, keepdim=True)


def merge(a: tuple, b: tuple) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two ``partial_attention`` results over disjoint keys -> the one over all of them (log-sum-exp)."""
    (out_a, top_a, sum_a), (out_b, top_b, sum_b) = a, b
    top = torch.maximum(top_a, top_b)
    scale_a, scale_b = torch.exp(top_a - top), torch.exp(top_b - top)
    return out_a * scale_a + out_b * scale_b, top, sum_a * scale_a + sum_b * scale_b


@functools.cache
def efficient_kernel_works(device: torch.device) -> bool:
    """Whether torch's memory-efficient attention kernel, called with its log-sum-exp output (an
    internal op: ``aten::_scaled_dot_product_efficient_attention``), agrees with plain math here;
    checked once per device on a small random problem, so a changed op falls back, not breaks."""
    try:
        g = torch.Generator(device=device).manual_seed(0)
        q, k, v = (torch.randn(2, 4, n, 128, generator=g, device=device, dtype=torch.bfloat16) for n in (1, 48, 48))
        bias = torch.zeros(2, 1, 1, 48, device=device).masked_fill(torch.rand(2, 1, 1, 48, generator=g, device=device) < 0.3,
                                                                     float("-inf"))
        out, lse = efficient_attention(q, k, v, bias)
        ref_out, ref_top, ref_sum = partial_attention(q.float(), k.float(), v.float(), bias)
        return bool(torch.allclose(out.float(), ref_out / ref_sum, atol=3e-2)
                    and torch.allclose(lse, ref_top + ref_sum.log(), atol=1e-3))
    except (RuntimeError, AttributeError, TypeError):
        return False


def efficient_attention(q, k, v, bias) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised attention ``[B, heads, M, D]`` and its log-sum-exp ``[B, heads, M, 1]`` (float32)
    from the memory-efficient CUDA kernel; ``bias`` ``[B, 1, 1, K]`` holds 0 or -inf, K a multiple of 16."""
    mask = bias.to(q.dtype).expand(-1, q.shape[1], q.shape[2], -1)
    out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, mask, True)[:2]
    return out, lse[..., :q.shape[2], None]


@dataclass
class Decode:
    """One new token per row. Its key and value go into column ``column`` of the rows' cache; it
    attends to its row's own columns (``bias``: 0 where the row holds a key, -inf elsewhere) and,
    for rows that share a prompt prefix, to that prefix's single cached copy, read once for all of
    them; the two parts merge by their log-sum-exp. With Triton on CUDA it is three kernels that
    read only the columns rows hold (``decode_attention``); else the rows' part runs in the
    memory-efficient attention kernel on CUDA, or as plain products. Only tensors change from step
    to step, so a CUDA graph of the step can be replayed."""

    cache: KVCache
    column: torch.Tensor  # [1] long
    bias: torch.Tensor  # [B, 1, 1, capacity] float32, capacity a multiple of 16
    shared: list[tuple[slice, KVCache]]  # rows (contiguous) and the prefix they share
    first: torch.Tensor  # [B] long: each row's first column (the bias's first 0)

    def attend(self, layer, q, k, v):
        keys, values = self.cache.keys[layer], self.cache.values[layer]
        keys.index_copy_(2, self.column, k)
        values.index_copy_(2, self.column, v)
        if decode_attention.available(q.device):
            shared = [(rows, prefix.keys[layer], prefix.values[layer]) for rows, prefix in self.shared]
            return decode_attention.decode_attention(q, keys, values, self.first, self.column, shared)
        if q.is_cuda and efficient_kernel_works(q.device):
            out, lse = efficient_attention(q, keys, values, self.bias)  # [B, heads, 1, *]
            out, top, total = out.float(), lse, torch.ones_like(lse)
        else:
            out, top, total = partial_attention(q, keys, values, self.bias)
        heads, dim = q.shape[1], q.shape[3]
        for rows, prefix in self.shared:
            n = rows.stop - rows.start
            queries = q[rows].transpose(0, 1).reshape(heads, n, dim)  # the rows' queries against one copy
            part = partial_attention(queries, prefix.keys[layer][0], prefix.values[layer][0])  # [heads, n, *]
            part = tuple(t.unsqueeze(2).transpose(0, 1) for t in part)  # [n, heads, 1, *]
            out[rows], top[rows], total[rows] = merge((out[rows], top[rows], total[rows]), part)
        return (out / total).to(q.dtype)


class Attention(nn.Module):
    def __init__(self, config: IdaVlmConfig, layer: int):
        super().__init__()
        self.heads, self.layer = config.num_attention_heads, layer
        self.c_attn = nn.Linear(config.hidden_size, 3 * config.hidden_size)  # [Q; K; V] blocks
        self.c_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=not config.no_bias)

    def forward(self, x: torch.Tensor, pos: Positions, context: AttentionContext) -> torch.Tensor:
        batch, length = x.shape[:2]
        qkv = self.c_attn(x).view(batch * length, 3, self.heads, -1)  # [B * T, (q, k, v), heads, head_dim]
        tables = qkv[:, :2], pos.cos.flatten(0, 1), pos.sin.flatten(0, 1)
        if pos.logn is None:
            q, k = fused.call(fused.rotary, *tables)
        else:
            q, k = fused.call(fused.rotary_logn, *tables, pos.logn.flatten(0, 1))
        q, k, v = (t.view(batch, length, self.heads, -1).transpose(1, 2) for t in (q, k, qkv[:, 2]))
        out = context.attend(self.layer, q, k, v)  # q, k, v: [B, heads, T, head_dim]
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
        gate = fused.call(fused.swiglu, fused.flat(self.w1(x)), fused.flat(self.w2(x)))
        return self.c_proj(gate.view(*x.shape[:-1], -1))


class Block(nn.Module):
    def __init__(self, config: IdaVlmConfig, layer: int):
        super().__init__()
        self.ln_1 = RMSNorm(config.hidden_size, config.layer_norm_epsilon)
        self.attn = Attention(config, layer)
        self.ln_2 = RMSNorm(config.hidden_size, config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, pos: Positions, context: AttentionContext) -> torch.Tensor:
        x, h = self.ln_2.add(x, self.attn(self.ln_1(x), pos, context))
        return x + self.mlp(h)


class QwenModel(nn.Module):
    """The checkpoint's ``transformer.``: token embedding, blocks, final norm, and (nested there by
    the authors) the vision tower."""

    def __init__(self, config: IdaVlmConfig, visual: nn.Module):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.hidden_size)
        self.h = nn.ModuleList(Block(config, layer) for layer in range(config.num_hidden_layers))
        self.ln_f = RMSNorm(config.hidden_size, config.layer_norm_epsilon)
        self.visual = visual

    def forward(self, x: torch.Tensor, pos: Positions, context: AttentionContext) -> torch.Tensor:
        """Embeddings ``[B, T, hidden]`` -> final hidden states."""
        for block in self.h:
            x = block(x, pos, context)
        return self.ln_f(x)

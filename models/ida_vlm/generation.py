"""Token generation: each prompt prefilled on its own into a shared, preallocated, left-padded
KV cache, then all rows decoded together, greedy by default."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import IdaVlmConfig
from .language import CacheSlot, KVCache, QwenModel, ntk_alpha, positions_for


@dataclass(frozen=True)
class Generation:
    """One answer: its text (stop token excluded, stripped) and generated token ids."""

    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" (a stop token ended it) or "length" (max_new_tokens reached)


@dataclass(frozen=True)
class GenerationDefaults:
    """The checkpoint's ``generation_config.json`` values, used where ``generate`` leaves one unset."""

    max_new_tokens: int = 512
    top_p: float = 0.3
    top_k: int = 0  # 0 disables top-k


@dataclass(frozen=True)
class Sampling:
    """Greedy unless ``do_sample`` (then temperature, top-k, top-p, as transformers orders them)."""

    do_sample: bool
    top_p: float
    top_k: int
    temperature: float = 1.0
    seed: int | None = None


def pick_tokens(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None) -> torch.Tensor:
    """``[B, vocab]`` float32 logits -> ``[B]`` next tokens."""
    if not sampling.do_sample:
        return logits.argmax(dim=-1)
    logits = logits / sampling.temperature
    if sampling.top_k > 0:
        kth = logits.topk(min(sampling.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        drop_sorted = probs.cumsum(dim=-1) - probs >= sampling.top_p  # keep the smallest set reaching top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)[:, 0]


def alpha_for(config: IdaVlmConfig, prompt_length: int) -> float:
    return ntk_alpha(prompt_length, config.seq_length) if config.use_dynamic_ntk else 1.0


@torch.inference_mode()
def generate_tokens(lm: QwenModel, lm_head: nn.Linear, config: IdaVlmConfig, prompts: list[torch.Tensor],
                    stop_ids: set[int], max_new_tokens: int, sampling: Sampling,
                    ignore_eos: bool = False) -> list[tuple[list[int], str]]:
    """Prompt embeddings ``[L_i, hidden]`` -> generated ids and finish reason per prompt.

    Row i's prompt fills cache columns ``[P - L_i, P)`` (left padding, ``P`` the longest prompt);
    its rotary positions count from its own first token, so a row decodes exactly as it would alone.
    """
    device, dtype = prompts[0].device, prompts[0].dtype
    lengths = torch.tensor([p.shape[0] for p in prompts], device=device)
    longest, batch = max(p.shape[0] for p in prompts), len(prompts)
    alphas = [alpha_for(config, p.shape[0]) for p in prompts]
    cache = KVCache.allocate(config, batch, longest + max_new_tokens, dtype, device)
    generator = None
    if sampling.do_sample and sampling.seed is not None:
        generator = torch.Generator(device=device).manual_seed(sampling.seed)

    last_hidden = []
    for row, (embeds, alpha) in enumerate(zip(prompts, alphas)):
        length = embeds.shape[0]
        pos = positions_for(config, torch.arange(length, device=device)[None], [alpha], dtype)
        slot = CacheSlot(cache, slice(row, row + 1), longest - length, read_cache=False)
        last_hidden.append(lm(embeds[None], pos, slot)[:, -1])
    logits = lm_head(torch.cat(last_hidden)).float()

    steps = torch.arange(max_new_tokens, device=device)
    decode_pos = positions_for(config, lengths[:, None] + steps[None], alphas, dtype)
    columns = torch.arange(longest + max_new_tokens, device=device)
    key_mask = None
    if bool((lengths != longest).any()):
        key_mask = (columns[None] >= (longest - lengths)[:, None])[:, None, None, :]
    stop = torch.tensor(sorted(stop_ids), device=device)
    tokens = torch.empty(batch, max_new_tokens, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    n_steps = max_new_tokens
    for step in range(max_new_tokens):
        tokens[:, step] = pick_tokens(logits, sampling, generator)
        finished |= torch.isin(tokens[:, step], stop)
        if step + 1 == max_new_tokens or (not ignore_eos and bool(finished.all())):
            n_steps = step + 1
            break
        column = longest + step
        slot = CacheSlot(cache, slice(None), column, read_cache=True)
        mask = None if key_mask is None else key_mask[..., :column + 1]
        hidden = lm(lm.wte(tokens[:, step:step + 1]), decode_pos.step(step), slot, mask)
        logits = lm_head(hidden[:, -1]).float()

    results = []
    for row in tokens[:, :n_steps].tolist():
        ends = [i for i, t in enumerate(row) if t in stop_ids]
        if ends and not ignore_eos:
            results.append((row[:ends[0]], "stop"))
        else:
            results.append((row, "length"))
    return results

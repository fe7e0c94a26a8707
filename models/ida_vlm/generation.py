"""Token generation: prompts prefilled one row at a time into a preallocated, left-padded KV
cache, then all rows decoded together, greedy by default. A prompt prefix that several rows
share (the ChatML header and the cast's precomputed ID images of a film's windows) is prefilled
once and its keys/values copied to those rows."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

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


MIN_SHARED_PREFIX = 64  # shorter common prefixes save less than their extra forward costs


@dataclass(frozen=True)
class SharedPrefix:
    """Rows whose prompts begin with the same ``length`` positions (tokens and visual tokens)."""

    rows: list[int]
    length: int


def common_length(a: Sequence, b: Sequence) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def shared_prefixes(shareable: list[list], lengths: list[int], alphas: list[float]) -> list[SharedPrefix]:
    """Groups of rows to prefill from one prefix. ``shareable[i]``: the part of row i's prompt that
    may be shared, as comparable items (token ids; a precomputed image in its first pad slot).
    Rows group by NTK alpha (it sets the rotary tables) and by the precomputed images they open
    with (a window's cast); a group shares what all its rows have in common, if at least
    ``MIN_SHARED_PREFIX`` long, leaving each row at least its last token to prefill."""
    groups: dict[tuple, list[int]] = {}
    for row, items in enumerate(shareable):
        images = tuple(item for item in items if not isinstance(item, int))
        groups.setdefault((alphas[row], images), []).append(row)
    shared = []
    for rows in groups.values():
        length = min(lengths[row] for row in rows) - 1
        for row in rows[1:]:
            length = min(length, common_length(shareable[rows[0]], shareable[row]))
        if len(rows) > 1 and length >= MIN_SHARED_PREFIX:
            shared.append(SharedPrefix(rows, length))
    return shared


@torch.inference_mode()
def generate_tokens(lm: QwenModel, lm_head: nn.Linear, config: IdaVlmConfig, prompts: list[torch.Tensor],
                    stop_ids: set[int], max_new_tokens: int, sampling: Sampling, ignore_eos: bool = False,
                    shareable: list[list] | None = None) -> list[tuple[list[int], str]]:
    """Prompt embeddings ``[L_i, hidden]`` -> generated ids and finish reason per prompt.

    Row i's prompt fills cache columns ``[P - L_i, P)`` (left padding, ``P`` the longest prompt);
    its rotary positions count from its own first token, so a row decodes exactly as it would alone.
    With ``shareable`` (see ``shared_prefixes``) a prefix common to several rows is prefilled once
    and copied into their columns; each row then prefills only the rest of its prompt, attending
    to the copied prefix: the same result, up to float rounding.
    """
    device, dtype = prompts[0].device, prompts[0].dtype
    sizes = [p.shape[0] for p in prompts]
    lengths = torch.tensor(sizes, device=device)
    longest, batch = max(sizes), len(prompts)
    alphas = [alpha_for(config, size) for size in sizes]
    cache = KVCache.allocate(config, batch, longest + max_new_tokens, dtype, device)
    generator = None
    if sampling.do_sample and sampling.seed is not None:
        generator = torch.Generator(device=device).manual_seed(sampling.seed)

    def prefill(row: int, begin: int, end: int) -> torch.Tensor:
        """Prompt positions ``[begin, end)`` of ``row`` into its cache columns; the last hidden state."""
        first_column = longest - sizes[row]
        pos = positions_for(config, torch.arange(begin, end, device=device)[None], [alphas[row]], dtype)
        slot = CacheSlot(cache, slice(row, row + 1), first_column + begin, first_column if begin else None)
        return lm(prompts[row][None, begin:end], pos, slot)[:, -1]

    prefilled = [0] * batch  # prompt positions of each row already in the cache
    for group in shared_prefixes(shareable, sizes, alphas) if shareable else []:
        source = group.rows[0]
        prefill(source, 0, group.length)
        for row in group.rows:
            if row != source:
                cache.copy_columns(source, longest - sizes[source], row, longest - sizes[row], group.length)
            prefilled[row] = group.length
    last_hidden = [prefill(row, prefilled[row], sizes[row]) for row in range(batch)]
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
        slot = CacheSlot(cache, slice(None), column, read_from=0)
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

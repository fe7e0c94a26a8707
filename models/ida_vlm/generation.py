"""Token generation for a batch of prompts, greedy by default.

Rows that open with the same prompt prefix (the ChatML header and the same precomputed ID images:
a film's windows showing the same cast) form a group. A group's prefix is prefilled once into a
cache of its own (batch 1); each row's remaining prompt, its suffix, is prefilled into the rows'
cache (rows of one group and suffix length together), attending to that prefix. Every decode step
then reads the prefix's single copy for all the group's rows, merged with each row's own columns
by log-sum-exp (``language.Decode``), instead of a copy per row. On CUDA the decode step is
captured once per batch as a CUDA graph and replayed, without per-kernel launch overhead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from .config import IdaVlmConfig
from .language import (Decode, KVCache, Prefill, QwenModel, inverse_frequencies, needs_logn, ntk_alpha,
                       positions_for)

MIN_SHARED_PREFIX = 64  # shorter common prefixes save less than their extra forward costs
PREFILL_TOKENS = 16384  # prompt positions per prefill forward (several rows of equal length together)
CACHE_ALIGN = 16  # cache columns rounded up to this (the memory-efficient kernel's mask alignment)
MAX_BATCH = 256  # rows per batch when sized from free memory: beyond this decode gains nothing


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


@dataclass(frozen=True)
class Row:
    """One prompt of a batch: the first ``prefix`` of its ``length`` positions come from shared
    prefix ``group`` (None: it shares nothing); ``index`` is its place in the caller's list."""

    index: int
    length: int
    alpha: float
    group: int | None = None
    prefix: int = 0

    @property
    def suffix(self) -> int:
        return self.length - self.prefix


def plan_rows(lengths: list[int], alphas: list[float], groups: list[SharedPrefix]) -> list[Row]:
    """Every prompt as a ``Row``, in batch order: each group's rows together (the decode step
    reads a prefix for a contiguous range of rows), rows of equal suffix length next to each other
    (they prefill together); rows sharing nothing last."""
    membership = {row: (g, group.length) for g, group in enumerate(groups) for row in group.rows}
    rows = [Row(i, lengths[i], alphas[i], *membership.get(i, (None, 0))) for i in range(len(lengths))]
    return sorted(rows, key=lambda r: (r.group is None, r.group or 0, r.suffix, r.index))


def rows_that_fit(config: IdaVlmConfig, rows: list[Row], max_new_tokens: int, dtype: torch.dtype,
                  free_bytes: int) -> int:
    """How many rows of ``rows`` (in order) one batch can hold in ``free_bytes``: each row's cache
    (its suffix plus the new tokens) and logits, after room for the prefill and vision activations."""
    per_position = KVCache.bytes_per_position(config, dtype)
    itemsize = torch.empty((), dtype=dtype).element_size()
    working = PREFILL_TOKENS * itemsize * (6 * config.hidden_size + 3 * config.intermediate_size)
    working += 64 * config.visual.grid ** 2 * itemsize * (3 * config.visual.width + 2 * config.visual.mlp_width)
    budget = 0.9 * free_bytes - working
    count = 0
    for row in rows[:MAX_BATCH]:
        budget -= per_position * (row.suffix + max_new_tokens) + 16 * config.vocab_size
        if budget < 0:
            break
        count += 1
    return max(count, 1)


class CudaGraphStep:
    """A function of fixed-shape tensors, run eagerly once (warm-up) and captured as a CUDA graph
    that later calls replay: one launch for the whole decode step instead of ~30 per layer."""

    def __init__(self, step: Callable[[], torch.Tensor]):
        self.step, self.graph, self.output = step, None, None

    def __call__(self) -> torch.Tensor:
        if self.graph is not None:
            self.graph.replay()
            return self.output
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            first = self.step()  # the step is idempotent: warming up computes this step's result
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = self.step()
        return first


@torch.inference_mode()
def generate_tokens(lm: QwenModel, lm_head: nn.Linear, config: IdaVlmConfig, rows: list[Row],
                    prefixes: dict[int, torch.Tensor], suffixes: Callable[[list[Row]], list[torch.Tensor]],
                    stop_ids: set[int], max_new_tokens: int, sampling: Sampling, generator: torch.Generator | None,
                    ignore_eos: bool = False, cuda_graph: bool = True) -> list[tuple[list[int], str]]:
    """Generated ids and finish reason for each of ``rows`` (a batch, in ``plan_rows`` order).

    ``prefixes[g]``: the embeddings ``[prefix, hidden]`` of group g's shared prefix;
    ``suffixes(rows)``: the embeddings ``[suffix, hidden]`` of those rows' own prompt positions.
    Row i's suffix fills its cache columns ``[S - suffix_i, S)`` (left padding, S the longest
    suffix); rotary positions count from the row's first token, so a row decodes as it would alone.
    """
    device, dtype = lm.wte.weight.device, lm.wte.weight.dtype
    batch, longest = len(rows), max(row.suffix for row in rows)
    capacity = -(-(longest + max_new_tokens) // CACHE_ALIGN) * CACHE_ALIGN
    cache = KVCache.allocate(config, batch, capacity, dtype, device)
    inv_freq = inverse_frequencies(config, [row.alpha for row in rows], device)

    prefix_caches: dict[int, KVCache] = {}
    for begin, _ in group_ranges(rows):
        g, embeds = rows[begin].group, prefixes[rows[begin].group]
        prefix_caches[g] = KVCache.allocate(config, 1, embeds.shape[0], dtype, device)
        pos = positions_for(config, torch.arange(embeds.shape[0], device=device)[None], inv_freq[begin:begin + 1],
                            needs_logn(config, embeds.shape[0] - 1), dtype)
        lm(embeds[None], pos, Prefill(prefix_caches[g], slice(0, 1), 0))

    last_hidden = []
    for begin, end in prefill_chunks(rows):
        chunk = rows[begin:end]
        first = chunk[0]
        x = torch.stack(suffixes(chunk))
        positions = torch.arange(first.prefix, first.length, device=device)[None].expand(len(chunk), -1)
        pos = positions_for(config, positions, inv_freq[begin:end], needs_logn(config, first.length - 1), dtype)
        context = Prefill(cache, slice(begin, end), longest - first.suffix, prefix_caches.get(first.group))
        last_hidden.append(lm(x, pos, context)[:, -1])
    logits = lm_head(torch.cat(last_hidden)).float()

    lengths = torch.tensor([row.length for row in rows], device=device)
    first_column = torch.tensor([longest - row.suffix for row in rows], device=device)
    columns = torch.arange(capacity, device=device)
    shared = [(slice(begin, end), prefix_caches[rows[begin].group]) for begin, end in group_ranges(rows)]
    logn = needs_logn(config, max(row.length for row in rows) + max_new_tokens - 1)
    token = torch.zeros(batch, dtype=torch.long, device=device)
    step_index = torch.zeros(1, dtype=torch.long, device=device)

    def decode_step() -> torch.Tensor:
        """Logits ``[B, vocab]`` after feeding ``token`` at new-token index ``step_index``."""
        column = longest + step_index
        pos = positions_for(config, (lengths + step_index)[:, None], inv_freq, logn, dtype)
        valid = (columns[None] >= first_column[:, None]) & (columns[None] <= column)
        bias = torch.where(valid, 0.0, float("-inf"))[:, None, None]
        hidden = lm(lm.wte(token)[:, None], pos, Decode(cache, column, bias, shared, first_column))
        return lm_head(hidden[:, -1]).float()

    step = CudaGraphStep(decode_step) if cuda_graph and device.type == "cuda" else decode_step
    stop = torch.tensor(sorted(stop_ids), device=device)
    tokens = torch.empty(batch, max_new_tokens, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    n_steps = max_new_tokens
    for i in range(max_new_tokens):
        tokens[:, i] = pick_tokens(logits, sampling, generator)
        finished |= torch.isin(tokens[:, i], stop)
        if i + 1 == max_new_tokens or (not ignore_eos and bool(finished.all())):
            n_steps = i + 1
            break
        token.copy_(tokens[:, i])
        step_index.fill_(i)
        logits = step()

    results = []
    for row in tokens[:, :n_steps].tolist():
        ends = [i for i, t in enumerate(row) if t in stop_ids]
        if ends and not ignore_eos:
            results.append((row[:ends[0]], "stop"))
        else:
            results.append((row, "length"))
    return results


def prefill_chunks(rows: list[Row]) -> list[tuple[int, int]]:
    """``[begin, end)`` ranges of rows with the same group and suffix length, each at most
    ``PREFILL_TOKENS`` positions (at least one row)."""
    chunks, begin = [], 0
    for end in range(1, len(rows) + 1):
        head = rows[begin]
        if (end == len(rows) or (rows[end].group, rows[end].suffix) != (head.group, head.suffix)
                or (end + 1 - begin) * head.suffix > PREFILL_TOKENS):
            chunks.append((begin, end))
            begin = end
    return chunks


def group_ranges(rows: list[Row]) -> list[tuple[int, int]]:
    """``[begin, end)`` of each shared-prefix group's rows (contiguous in ``plan_rows`` order)."""
    ranges = []
    for i, row in enumerate(rows):
        if row.group is None:
            continue
        if ranges and rows[ranges[-1][0]].group == row.group:
            ranges[-1] = (ranges[-1][0], i + 1)
        else:
            ranges.append((i, i + 1))
    return ranges

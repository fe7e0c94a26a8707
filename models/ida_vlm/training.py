"""The training side of IDA-VLM: conversations as token ids with labels, built with the same prompt
code as inference (``chat_prompt``); a differentiable forward that returns the next-token loss on
assistant tokens; the paper's choice of what trains; gradient checkpointing; LoRA through peft; and
an ID-Former added to a base model so that it starts exactly as base.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import InputError
from .config import IMAGE_TOKENS
from .generation import alpha_for
from .language import Causal, inverse_frequencies, needs_logn, positions_for
from .model import IdaVlm
from .request import check_roles
from .prompt import chat_prompt
from .tokenizer import IMG_END, IMG_START, QwenTokenizer

IGNORE_INDEX = -100  # label of positions without loss (prompt, images, padding)

# Frozen in the paper's recipe: the ViT, and the resampler's fixed sin-cos position table.
FROZEN_PREFIXES = ("transformer.visual.conv1.", "transformer.visual.positional_embedding",
                   "transformer.visual.ln_pre.", "transformer.visual.transformer.",
                   "transformer.visual.attn_pool.pos_embed")
# Qwen-VL's LoRA targets: the fused QKV, the attention output and both MLP input projections.
LORA_TARGETS = ("attn.c_attn", "attn.c_proj", "mlp.w1", "mlp.w2")

_ID_IMAGE = re.compile(r"\bis\s*$")


@dataclass(frozen=True)
class Example:
    """One conversation as model input. ``ids`` hold 256 pad slots per image starting at
    ``image_starts``; ``labels`` are ``IGNORE_INDEX`` except on the assistant's tokens (each answer
    and its ``<|im_end|>``); ``prompt_length`` (the first turn's prompt) sets the NTK factor, as at
    inference."""

    ids: tuple[int, ...]
    labels: tuple[int, ...]
    image_starts: tuple[int, ...]
    roles: tuple[str, ...]
    prompt_length: int

    @property
    def n_labels(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def image_roles(query: str) -> list[str]:
    """Roles of a released-format query's images, made explicit: an image right after "<name> is"
    is an ID image; with ID images present the others are test images, else all are general."""
    texts = re.split(re.escape(IMG_START) + r".*?" + re.escape(IMG_END), query, flags=re.DOTALL)[:-1]
    is_id = [bool(_ID_IMAGE.search(text)) for text in texts]
    if not any(is_id):
        return ["general"] * len(texts)
    return ["id" if flag else "test" for flag in is_id]


def build_example(tokenizer: QwenTokenizer, turns: Sequence[tuple[str, str]],
                  roles: Sequence[str] | None = None) -> Example:
    """``turns`` of (user query, assistant answer) -> ids and labels. The first turn is exactly the
    inference prompt (``chat_prompt``) followed by the answer; later turns follow Qwen's ChatML
    history layout (``\\n<|im_start|>user\\n...``). Images are ``<img>...</img>`` tags in the queries;
    ``roles`` default to ``image_roles`` of all queries together."""
    if not turns:
        raise InputError("a conversation needs at least one user turn and its answer")
    nl = tokenizer.encode("\n")
    ids: list[int] = []
    labels: list[int] = []
    starts: list[int] = []
    prompt_length = 0
    for k, (query, answer) in enumerate(turns):
        if IMG_START in answer or IMG_END in answer:
            raise InputError("an assistant answer holds an <img> tag")
        prompt = chat_prompt(tokenizer, query)
        turn_ids, turn_starts = list(prompt.ids), list(prompt.image_starts)
        if k:  # drop the system header: this turn continues the conversation
            cut = turn_ids.index(tokenizer.im_start_id, 1)
            turn_ids, turn_starts = nl + turn_ids[cut:], [s - cut + len(nl) for s in turn_starts]
        starts += [len(ids) + s for s in turn_starts]
        ids += turn_ids
        labels += [IGNORE_INDEX] * len(turn_ids)
        if not k:
            prompt_length = len(ids)
        answer_ids = tokenizer.encode(answer) + [tokenizer.im_end_id]
        ids += answer_ids
        labels += answer_ids
    if roles is None:
        roles = image_roles("".join(query for query, _ in turns))
    if len(roles) != len(starts):
        raise InputError(f"{len(starts)} images in the text but {len(roles)} roles")
    check_roles(roles)
    return Example(tuple(ids), tuple(labels), tuple(starts), tuple(roles), prompt_length)


@dataclass(frozen=True)
class Batch:
    """Examples padded to one length (right padding: causal attention never looks ahead at it),
    plus the normalised pixels of all their images in order."""

    ids: torch.Tensor            # [B, T] long
    labels: torch.Tensor         # [B, T] long, IGNORE_INDEX on prompts and padding
    lengths: torch.Tensor        # [B] tokens of each example (the rest is padding)
    slot_rows: torch.Tensor      # [n_images * 256] example of each visual token
    slot_cols: torch.Tensor      # [n_images * 256] its position
    pixels: torch.Tensor | None  # [n_images, 3, S, S], None without images
    roles: tuple[tuple[str, ...], ...]
    prompt_lengths: tuple[int, ...]

    @property
    def n_tokens(self) -> int:
        return int(self.lengths.sum())

    @property
    def n_labels(self) -> int:
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())

    def to(self, device: torch.device | str) -> "Batch":
        def move(t):
            return None if t is None else t.to(device, non_blocking=True)
        return Batch(move(self.ids), move(self.labels), move(self.lengths), move(self.slot_rows),
                     move(self.slot_cols), move(self.pixels), self.roles, self.prompt_lengths)


def collate(examples: Sequence[Example], pixels: Sequence[torch.Tensor], pad_id: int) -> Batch:
    """``pixels[i]``: ``[n_images_i, 3, S, S]`` of example i (``images.preprocess``)."""
    longest = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), longest), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), longest), IGNORE_INDEX, dtype=torch.long)
    rows, cols = [], []
    for row, example in enumerate(examples):
        ids[row, :len(example.ids)] = torch.tensor(example.ids)
        labels[row, :len(example.labels)] = torch.tensor(example.labels)
        for start in example.image_starts:
            rows.append(torch.full((IMAGE_TOKENS,), row))
            cols.append(torch.arange(start, start + IMAGE_TOKENS))
    with_images = [p for p in pixels if len(p)]
    empty = torch.zeros(0, dtype=torch.long)
    return Batch(ids, labels, torch.tensor([len(e.ids) for e in examples]),
                 torch.cat(rows) if rows else empty, torch.cat(cols) if cols else empty,
                 torch.cat(with_images) if with_images else None, tuple(e.roles for e in examples),
                 tuple(e.prompt_length for e in examples))


def encode_images(model: IdaVlm, pixels: torch.Tensor, roles: Sequence[Sequence[str]]) -> torch.Tensor:
    """Visual tokens ``[n_images, 256, hidden]`` of a batch, with gradients into the resampler (the
    ViT runs without them: it is frozen). As at inference, with the ID-Former each example's test
    images attend to that example's ID-image tokens (taken before ``ln_post``, detached as the
    authors train)."""
    visual = model.transformer.visual
    with torch.no_grad():
        patches = visual.vit(pixels)
    features = visual.attn_pool.project(patches)
    flat = [role for sample in roles for role in sample]
    tests = [k for k, role in enumerate(flat) if role == "test"]
    if not (model.has_id_former and tests and "id" in flat):
        return visual.output(visual.attn_pool(features))
    others = [k for k, role in enumerate(flat) if role != "test"]
    pooled_others = visual.attn_pool(features[others])
    position = {k: i for i, k in enumerate(others)}
    modulated, first = [], 0
    for sample in roles:
        ids = [first + j for j, role in enumerate(sample) if role == "id"]
        sample_tests = [first + j for j, role in enumerate(sample) if role == "test"]
        if sample_tests:
            test_features = features[sample_tests]
            if ids:
                keys = pooled_others[[position[k] for k in ids]].flatten(0, 1).detach()
                test_features = visual.attn_pool.modulate(test_features, keys)
            modulated.append(test_features)
        first += len(sample)
    pooled_tests = visual.attn_pool(torch.cat(modulated))
    order = torch.tensor(others + tests, device=features.device).argsort()
    return visual.output(torch.cat([pooled_others, pooled_tests])[order])


def loss_terms(model: IdaVlm, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of the next-token cross-entropy over the labelled positions, their number). Divide the
    first by the number over all micro-batches and ranks of a step for the mean."""
    lm = model.transformer
    embeds = lm.wte(batch.ids)
    if batch.pixels is not None:
        tokens = encode_images(model, batch.pixels, batch.roles).flatten(0, 1)
        embeds = embeds.index_put((batch.slot_rows, batch.slot_cols), tokens.to(embeds.dtype))
    length = batch.ids.shape[1]
    positions = torch.arange(length, device=batch.ids.device).expand(len(batch.ids), length)
    alphas = [alpha_for(model.config, n) for n in batch.prompt_lengths]
    pos = positions_for(model.config, positions, inverse_frequencies(model.config, alphas, embeds.device),
                        needs_logn(model.config, length - 1), embeds.dtype)
    hidden = lm(embeds, pos, Causal())
    targets = batch.labels[:, 1:]
    keep = targets != IGNORE_INDEX
    logits = model.lm_head(hidden[:, :-1][keep]).float()  # only where there is a loss
    return F.cross_entropy(logits, targets[keep], reduction="sum"), keep.sum()


# ---- what trains ----------------------------------------------------------------------------

def is_frozen_in_recipe(name: str) -> bool:
    return name.startswith(FROZEN_PREFIXES)


def set_full_tuning(model: IdaVlm) -> None:
    """The paper's recipe: the LLM, the resampler (and ID-Former) and the projection into the LLM
    train; the ViT and the fixed position table stay frozen."""
    for name, param in model.named_parameters():
        param.requires_grad_(not is_frozen_in_recipe(name))


def lora_target_pattern(targets: Sequence[str]) -> str:
    """A peft ``target_modules`` regex for the LLM blocks' modules ending in one of ``targets``
    (e.g. ``attn.c_proj``, which ``mlp.c_proj`` and the ViT's modules do not match)."""
    names = "|".join(re.escape(t) for t in targets)
    return rf"transformer\.h\.\d+\.(?:{names})"


def lora_config(rank: int, alpha: float, dropout: float, targets: Sequence[str] = LORA_TARGETS):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                      target_modules=lora_target_pattern(targets))


def add_lora(model: IdaVlm, config):
    """Wrap ``model`` with LoRA adapters (peft, in place: ``model`` itself gains the adapter layers
    and everything else freezes). An ID-Former trains fully alongside: it is new in an idf model
    started from base, and small."""
    from peft import get_peft_model

    peft_model = get_peft_model(model, config)
    if model.has_id_former:
        model.transformer.visual.attn_pool.attn1.requires_grad_(True)
    return peft_model


def master_weights_in_fp32(model: nn.Module) -> None:
    """Trainable parameters in float32 (AdamW's updates at lr 5e-6 vanish in bf16); the frozen ones
    keep their dtype (bf16 on GPU) and the forward runs under bf16 autocast."""
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()


def enable_gradient_checkpointing(model: IdaVlm, layers: int | None = None) -> None:
    """Recompute the first ``layers`` LLM blocks (all when None) in the backward pass instead of
    keeping their activations. Fewer layers trade memory for speed: a checkpointed block runs its
    forward twice, so a LoRA step (forward plus input gradients) does 1.5x the work with every
    block checkpointed. The block's forward is wrapped per instance, so parameter names stay the
    published ones."""
    blocks = list(model.transformer.h)
    for block in blocks[:len(blocks) if layers is None else max(0, layers)]:
        block.forward = functools.partial(_checkpointed, block.forward)


def _checkpointed(forward, *args, **kwargs):
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)


def with_zero_id_former(model: IdaVlm, seed: int = 0) -> IdaVlm:
    """An idf model holding ``model``'s (base) weights plus an ID-Former whose output projection is
    zero, so it computes exactly what ``model`` computes until training moves it. The input
    projections are initialised as ``nn.MultiheadAttention`` does (Xavier uniform, zero bias)."""
    if model.has_id_former:
        raise InputError("the model already has an ID-Former")
    with torch.device("meta"):
        idf = IdaVlm(model.config, model.tokenizer, model.defaults, with_id_former=True)
    idf.load_state_dict(model.state_dict(), strict=False, assign=True)
    attn1 = idf.transformer.visual.attn_pool.attn1
    attn1.to_empty(device=model.device).to(model.dtype)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        weight = torch.empty(attn1.in_proj_weight.shape)
        nn.init.xavier_uniform_(weight, generator=generator)
        attn1.in_proj_weight.copy_(weight)
        for tensor in (attn1.in_proj_bias, attn1.out_proj.weight, attn1.out_proj.bias):
            tensor.zero_()
    return idf.train(model.training).requires_grad_(False)


class LossModule(nn.Module):
    """The model with a forward over one micro-batch returning ``loss_terms``: the root that FSDP
    wraps, so its hooks gather every parameter the step uses."""

    def __init__(self, model: IdaVlm):
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return loss_terms(self.model, batch)


def merge_lora(weights: dict[str, torch.Tensor], like: IdaVlm, config, adapter_dir=None) -> dict[str, torch.Tensor]:
    """Published weights from a LoRA model's full state dict (peft names, e.g. ``...c_attn.base_layer.weight``
    and ``...c_attn.lora_A.default.weight``): a model of ``like``'s shape is rebuilt on the meta device
    around ``weights``, its adapters saved to ``adapter_dir`` (peft's layout) and merged by peft.
    The tensors of ``weights`` are used as they are (no copy; the merged ones change in place)."""
    from peft import get_peft_model

    with torch.device("meta"):
        rebuilt = IdaVlm(like.config, like.tokenizer, like.defaults, with_id_former=like.has_id_former)
    peft_model = get_peft_model(rebuilt, config)
    rebuilt.load_state_dict(weights, assign=True)
    if adapter_dir is not None:
        peft_model.save_pretrained(adapter_dir)
    return peft_model.merge_and_unload().state_dict()

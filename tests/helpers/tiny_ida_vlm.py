"""A tiny IDA-VLM checkpoint in the published layout, for tests: ``config.json`` (published key
names, nested ``visual``), sharded weights under the published parameter names with their index
file (safetensors or .bin), a small byte-level ``qwen.tiktoken`` and ``generation_config.json``.

The parameter list below is written from the published checkpoint, independently of
``movieid.models.ida_vlm``, so loading it checks the model's names. Everything is deterministic in ``seed``;
an ``idf`` checkpoint holds exactly the ``base`` weights of the same seed plus ``attn1``.
"""
from __future__ import annotations

import base64
import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import torch

N_SPECIAL = 3 + 205 + 9  # <|endoftext|>, <|im_start|>, <|im_end|>, 205 extras, 9 markup tokens
N_MERGES = 144
IMG_START_OFFSET = 3 + 205 + 6  # <img> after the ChatML tokens, the extras and <ref>..</quad>

_CORPUS = """You are a helpful assistant. system user assistant
Alice is Bob is Carol is Dave is Erin is Heizi is Leizi is Chuchun is Chaopao is
Watching the following images and describe their content. In the image: Identify with grounding.
What is doing? pushing in a wheelchair. The man the woman is walking talking sitting standing.
Give an image description. 0 1 2 3 4 5 6 7 8 9 (120,340),(560,780)"""

TINY_CONFIG = {
    "architectures": ["QWenLMHeadModel"],
    "model_type": "qwen",
    "attn_dropout_prob": 0.0,
    "emb_dropout_prob": 0.0,
    "bf16": False,
    "fp16": False,
    "fp32": False,
    "hidden_size": 256,
    "initializer_range": 0.02,
    "intermediate_size": 512,
    "kv_channels": 64,
    "layer_norm_epsilon": 1e-06,
    "max_position_embeddings": 4096,
    "no_bias": True,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "rotary_emb_base": 10000,
    "rotary_pct": 1.0,
    "scale_attn_weights": True,
    "seq_length": 300,
    "tie_word_embeddings": False,
    "tokenizer_type": "QWenTokenizer",
    "use_cache": True,
    "use_dynamic_ntk": True,
    "use_flash_attn": False,
    "use_logn_attn": True,
    "visual": {
        "heads": 4,
        "image_size": 56,
        "image_start_id": 256 + N_MERGES + IMG_START_OFFSET,
        "layers": 2,
        "mlp_ratio": 2.0,
        "output_dim": 256,
        "patch_size": 14,
        "width": 64,
    },
    "vocab_size": 640,
}


def tiny_ranks() -> dict[bytes, int]:
    """256 single bytes, then BPE merges learnt greedily from a small corpus (tie: smallest pair)."""
    ranks = {bytes([b]): b for b in range(256)}
    words = Counter(tuple(bytes([b]) for b in w.encode()) for w in re.findall(r" ?[A-Za-z]+| ?[^\sA-Za-z]+|\s+", _CORPUS))
    for rank in range(256, 256 + N_MERGES):
        pairs = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        ranks[best[0] + best[1]] = rank
        words = Counter({_merge(word, best): count for word, count in words.items()})
    return ranks


def _merge(word: tuple[bytes, ...], pair: tuple[bytes, bytes]) -> tuple[bytes, ...]:
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def sincos_2d(dim: int, grid: int) -> np.ndarray:
    """The resampler's fixed 2-D sin-cos table [grid*grid, dim] (MAE layout: w first)."""
    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)
    grid_w, grid_h = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))
    return np.concatenate([one_d(dim // 2, grid_w), one_d(dim // 2, grid_h)], axis=1).astype(np.float32)


def published_shapes(config: dict, with_id_former: bool) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape, as in the published state dict."""
    h, half, vocab = config["hidden_size"], config["intermediate_size"] // 2, config["vocab_size"]
    vis = config["visual"]
    w, e, p, mlp = vis["width"], vis["output_dim"], vis["patch_size"], int(vis["width"] * vis["mlp_ratio"])
    shapes = {"transformer.wte.weight": (vocab, h)}
    for i in range(config["num_hidden_layers"]):
        layer = f"transformer.h.{i}."
        shapes.update({
            layer + "ln_1.weight": (h,), layer + "attn.c_attn.weight": (3 * h, h),
            layer + "attn.c_attn.bias": (3 * h,), layer + "attn.c_proj.weight": (h, h),
            layer + "ln_2.weight": (h,), layer + "mlp.w1.weight": (half, h), layer + "mlp.w2.weight": (half, h),
            layer + "mlp.c_proj.weight": (h, half)})
    shapes["transformer.ln_f.weight"] = (h,)
    v = "transformer.visual."
    shapes.update({v + "conv1.weight": (w, 3, p, p), v + "positional_embedding": (256, w),
                   v + "ln_pre.weight": (w,), v + "ln_pre.bias": (w,)})
    for i in range(vis["layers"]):
        block = f"{v}transformer.resblocks.{i}."
        shapes.update({
            block + "ln_1.weight": (w,), block + "ln_1.bias": (w,),
            block + "attn.in_proj.weight": (3 * w, w), block + "attn.in_proj.bias": (3 * w,),
            block + "attn.out_proj.weight": (w, w), block + "attn.out_proj.bias": (w,),
            block + "ln_2.weight": (w,), block + "ln_2.bias": (w,),
            block + "mlp.c_fc.weight": (mlp, w), block + "mlp.c_fc.bias": (mlp,),
            block + "mlp.c_proj.weight": (w, mlp), block + "mlp.c_proj.bias": (w,)})
    pool = v + "attn_pool."
    shapes.update({pool + "query": (256, e), pool + "pos_embed": (256, e), pool + "kv_proj.weight": (e, w),
                   pool + "ln_q.weight": (e,), pool + "ln_q.bias": (e,), pool + "ln_kv.weight": (e,),
                   pool + "ln_kv.bias": (e,)})
    for attn in ("attn", "attn1") if with_id_former else ("attn",):
        shapes.update({pool + f"{attn}.in_proj_weight": (3 * e, e), pool + f"{attn}.in_proj_bias": (3 * e,),
                       pool + f"{attn}.out_proj.weight": (e, e), pool + f"{attn}.out_proj.bias": (e,)})
    shapes.update({v + "ln_post.weight": (e,), v + "ln_post.bias": (e,), v + "proj": (e, e),
                   "lm_head.weight": (vocab, h)})
    return shapes


def _random(name: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Values of a healthy random network: unit-ish norms, 1/sqrt(fan_in) weights."""
    noise = torch.randn(shape, generator=generator)
    if name.endswith("pos_embed"):
        return torch.from_numpy(sincos_2d(shape[1], round(math.sqrt(shape[0]))))
    if re.search(r"(ln_\w+|ln_f)\.weight$", name):
        return 1 + 0.1 * noise
    if name.endswith("bias"):
        return 0.02 * noise
    if name.endswith(("wte.weight", "query")):
        return noise
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else shape[0]
    return noise / math.sqrt(fan_in)


def build_tiny_checkpoint(directory: str | Path, variant: str = "base", fmt: str = "safetensors", seed: int = 0,
                          shards: int = 3, zero_id_former: bool = False, config_overrides: dict | None = None) -> Path:
    """Write a tiny checkpoint into ``directory`` and return it. ``shards=1`` writes a single
    unsharded file without index; ``zero_id_former`` zeroes ``attn1``'s output projection."""
    assert variant in ("base", "idf") and fmt in ("safetensors", "bin")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {**TINY_CONFIG, **(config_overrides or {})}
    shapes = published_shapes(config, with_id_former=variant == "idf")
    base_gen, idf_gen = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 10_000)
    tensors = {}
    for name, shape in shapes.items():
        is_idf = ".attn1." in name
        tensors[name] = _random(name, shape, idf_gen if is_idf else base_gen).contiguous()
        if is_idf and zero_id_former and ".out_proj." in name:
            tensors[name].zero_()
    _write_weights(directory, tensors, fmt, shards)

    ranks = tiny_ranks()
    (directory / "qwen.tiktoken").write_text(
        "".join(f"{base64.b64encode(token).decode()} {rank}\n" for token, rank in ranks.items()))
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    endoftext = len(ranks)
    (directory / "generation_config.json").write_text(json.dumps({
        "chat_format": "chatml", "do_sample": True, "eos_token_id": endoftext, "max_new_tokens": 512,
        "max_window_size": 6144, "pad_token_id": endoftext, "top_k": 0, "top_p": 0.3}, indent=2))
    return directory


def _write_weights(directory: Path, tensors: dict[str, torch.Tensor], fmt: str, shards: int) -> None:
    names = list(tensors)
    groups = [names[i::shards] for i in range(shards)] if shards > 1 else [names]
    stem, suffix = ("model", ".safetensors") if fmt == "safetensors" else ("pytorch_model", ".bin")
    weight_map = {}
    for i, group in enumerate(groups, start=1):
        file = f"{stem}{suffix}" if shards == 1 else f"{stem}-{i:05d}-of-{shards:05d}{suffix}"
        part = {name: tensors[name] for name in group}
        if fmt == "safetensors":
            from safetensors.torch import save_file
            save_file(part, directory / file, metadata={"format": "pt"})
        else:
            torch.save(part, directory / file)
        weight_map.update(dict.fromkeys(group, file))
    if shards > 1:
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (directory / f"{stem}{suffix}.index.json").write_text(json.dumps(index, indent=2))


def make_request(query: str, images: list, roles: list[str]):
    """``Request(query, [RoleImage(image, role), ...])``; an image that is already a ``RoleImage``
    (from ``precompute``) is kept as it is."""
    from movieid.models.ida_vlm import Request, RoleImage

    return Request(query, [image if isinstance(image, RoleImage) else RoleImage(image, role)
                           for image, role in zip(images, roles, strict=True)])

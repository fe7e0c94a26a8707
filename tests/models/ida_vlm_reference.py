"""An independent, deliberately literal reference of the authors' forward pass (Qwen-VL remote
code as modified by IDA-VLM), used to check the native model's numbers in fp32.

It follows the original structure rather than the native one: the authors' image transform (PIL
opens the file and converts it to RGB, torchvision's ``Resize((S, S), BICUBIC)`` (PIL's bicubic
resize), ``ToTensor``, ``Normalize`` with CLIP's mean and std, written out here), sequence-first ViT with the fused
per-head ``in_proj`` split by ``view``/``split``, torch's own ``nn.MultiheadAttention`` in the
resampler (and the ID-Former grouping by image flags 0 = ID, 1 = test, 2 = general), Qwen's
explicit attention with an additive causal mask, a cached rotary table whose NTK alpha is set by
the first forward, and the log-n table indexed by absolute position.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def reference_pixels(images: list, size: int) -> torch.Tensor:
    """``[N, 3, size, size]``: Qwen-VL's ``Image.open(path).convert("RGB")`` (arrays: ``Image.fromarray``)
    then torchvision's Resize/ToTensor/Normalize as they act on a PIL image."""
    out = []
    for image in images:
        pil = Image.fromarray(image) if isinstance(image, np.ndarray) else Image.open(image).convert("RGB")
        pil = pil.resize((size, size), Image.BICUBIC)  # transforms.Resize on a PIL image
        tensor = torch.from_numpy(np.array(pil, copy=True)).permute(2, 0, 1).contiguous().float().div(255)
        mean, std = torch.as_tensor(CLIP_MEAN), torch.as_tensor(CLIP_STD)
        out.append(tensor.sub_(mean[:, None, None]).div_(std[:, None, None]))
    return torch.stack(out)


def _abs_pos(table: torch.Tensor, n: int) -> torch.Tensor:
    src, tgt = int(math.sqrt(table.size(0))), int(math.sqrt(n))
    if src == tgt:
        return table
    grid = table.float().reshape(1, src, src, -1).permute(0, 3, 1, 2)
    return F.interpolate(grid, size=(tgt, tgt), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).flatten(0, 2)


def _mha(state: dict, prefix: str, dim: int, heads: int) -> nn.MultiheadAttention:
    module = nn.MultiheadAttention(dim, heads)
    module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    return module.eval()


def _ln(x, state, prefix, eps=1e-6):
    return F.layer_norm(x, x.shape[-1:], state[prefix + ".weight"], state[prefix + ".bias"], eps)


@torch.no_grad()
def reference_visual(state: dict, config: dict, pixels: torch.Tensor, flags: list[int]) -> torch.Tensor:
    """``[N, 256, output_dim]`` visual tokens, images in one batch as the authors encode them."""
    v, vis = "transformer.visual.", config["visual"]
    heads, width = vis["heads"], vis["width"]
    hn = width // heads
    x = F.conv2d(pixels, state[v + "conv1.weight"], stride=vis["patch_size"])
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    x = x + _abs_pos(state[v + "positional_embedding"], x.size(1))
    x = _ln(x, state, v + "ln_pre").permute(1, 0, 2)  # LND
    for i in range(vis["layers"]):
        b = f"{v}transformer.resblocks.{i}."
        h = _ln(x, state, b + "ln_1")
        sq, bsz, _ = h.size()
        mixed = F.linear(h, state[b + "attn.in_proj.weight"], state[b + "attn.in_proj.bias"])
        mixed = mixed.view(sq, bsz, heads, 3 * hn)
        q, k, val = mixed.split(hn, dim=-1)
        q = q.reshape(sq, bsz * heads, hn).transpose(0, 1)
        k = k.reshape(sq, bsz * heads, hn).transpose(0, 1)
        val = val.reshape(sq, bsz * heads, hn).transpose(0, 1)
        probs = torch.bmm(q / math.sqrt(hn), k.transpose(-2, -1)).softmax(dim=-1)
        ctx = torch.bmm(probs, val).view(bsz, heads, sq, hn).permute(2, 0, 1, 3).reshape(sq, bsz, width)
        x = x + F.linear(ctx, state[b + "attn.out_proj.weight"], state[b + "attn.out_proj.bias"])
        h = F.gelu(F.linear(_ln(x, state, b + "ln_2"), state[b + "mlp.c_fc.weight"], state[b + "mlp.c_fc.bias"]))
        x = x + F.linear(h, state[b + "mlp.c_proj.weight"], state[b + "mlp.c_proj.bias"])
    x = x.permute(1, 0, 2)

    p = v + "attn_pool."
    dim = vis["output_dim"]
    attn = _mha(state, p + "attn.", dim, dim // 128)
    pos_embed = _abs_pos(state[p + "pos_embed"], x.size(1))
    x = _ln(F.linear(x, state[p + "kv_proj.weight"]), state, p + "ln_kv").permute(1, 0, 2)
    q = _ln(state[p + "query"], state, p + "ln_q")
    q_ = q.unsqueeze(1).repeat(1, x.shape[1], 1)
    query_pos = state[p + "pos_embed"].unsqueeze(1)
    if p + "attn1.in_proj_weight" not in state:
        out = attn(q_ + query_pos, x + pos_embed.unsqueeze(1), x)[0]
    else:  # the authors' ID-Former grouping: a run of ID images, then the run of test images after it
        attn1 = _mha(state, p + "attn1.", dim, dim // 128)
        outs, ind = [], 0
        while ind < len(flags):
            end = ind + 1
            while end < len(flags) and flags[end] == flags[ind]:
                end += 1
            part = slice(ind, end)
            out = attn(q_[:, part] + query_pos, x[:, part] + pos_embed.unsqueeze(1), x[:, part])[0]
            outs.append(out)
            if flags[ind] == 0 and end < len(flags) and flags[end] == 1:
                test_end = end + 1
                while test_end < len(flags) and flags[test_end] == 1:
                    test_end += 1
                id_query = out.detach().permute(1, 0, 2).reshape(-1, dim)
                id_query = id_query.unsqueeze(1).repeat(1, test_end - end, 1)
                feats = x[:, end:test_end]
                mod = attn1(feats + pos_embed.unsqueeze(1), id_query, id_query)[0] + feats
                outs.append(attn(q_[:, end:test_end] + query_pos, mod + pos_embed.unsqueeze(1), mod)[0])
                end = test_end
            ind = end
        out = torch.cat(outs, 1)
    out = out.permute(1, 0, 2)
    return _ln(out, state, v + "ln_post") @ state[v + "proj"]


def _rms(x, weight, eps):
    return (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)).type_as(x) * weight


def _rotate_half(x):
    x1, x2 = x.reshape(*x.shape[:-1], 2, -1).unbind(dim=-2)
    return torch.cat((-x2, x1), dim=-1)


@torch.no_grad()
def reference_logits(state: dict, config: dict, input_ids: list[int], image_tokens: torch.Tensor | None,
                     ntk_alpha: float | None = None) -> torch.Tensor:
    """``[T, vocab]`` logits of one sequence, no cache. ``ntk_alpha`` None computes it from the
    length (a first forward); pass the prompt's alpha to mimic later decode steps."""
    ids = torch.tensor([input_ids])
    hidden = F.embedding(ids, state["transformer.wte.weight"]).clone()
    start_id = config["visual"]["image_start_id"]
    starts = (ids[0] == start_id).nonzero().flatten().tolist()
    ends = (ids[0] == start_id + 1).nonzero().flatten().tolist()
    for k, (a, b) in enumerate(zip(starts, ends)):
        hidden[0, a + 1:b] = image_tokens[k]

    seq, n_heads, hd = ids.shape[1], config["num_attention_heads"], config["kv_channels"]
    seq_length, eps = config["seq_length"], config["layer_norm_epsilon"]
    if ntk_alpha is None:
        ntk_alpha = 1.0
        if config["use_dynamic_ntk"]:
            ntk_alpha = max(2 ** math.ceil(math.log(seq / seq_length, 2) + 1) - 1, 1)
    base = config["rotary_emb_base"] * ntk_alpha ** (hd / (hd - 2))
    inv_freq = 1.0 / (base ** (torch.arange(0, hd, 2).float() / hd))
    cached = max(2 * seq, 16)
    freqs = torch.outer(torch.arange(cached).type_as(inv_freq), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)[None, :, None, :]
    cos, sin = emb.cos()[:, :seq], emb.sin()[:, :seq]
    logn = torch.tensor([math.log(i, seq_length) if i > seq_length else 1 for i in range(1, 32768)])[None, :, None, None]

    mask = torch.full((seq, seq), torch.finfo(hidden.dtype).min)
    cond = torch.arange(seq)
    mask.masked_fill_(cond < (cond + 1).view(seq, 1), 0)
    mask = mask[None, None]
    for i in range(config["num_hidden_layers"]):
        layer = f"transformer.h.{i}."
        h = _rms(hidden, state[layer + "ln_1.weight"], eps)
        mixed = F.linear(h, state[layer + "attn.c_attn.weight"], state[layer + "attn.c_attn.bias"])
        q, k, val = mixed.split(config["hidden_size"], dim=2)
        q, k, val = (t.view(*t.shape[:-1], n_heads, hd) for t in (q, k, val))
        q = (q.float() * cos + _rotate_half(q.float()) * sin).type_as(q)
        k = (k.float() * cos + _rotate_half(k.float()) * sin).type_as(k)
        if config["use_logn_attn"]:
            q = q * logn[:, :seq].type_as(q).expand_as(q)
        q, k, val = (t.permute(0, 2, 1, 3) for t in (q, k, val))
        weights = torch.matmul(q, k.transpose(-1, -2)) / torch.full([], val.size(-1) ** 0.5)
        weights = (weights + mask).softmax(dim=-1)
        ctx = torch.matmul(weights, val).transpose(1, 2).contiguous().view(1, seq, -1)
        hidden = hidden + F.linear(ctx, state[layer + "attn.c_proj.weight"])
        h = _rms(hidden, state[layer + "ln_2.weight"], eps)
        a1, a2 = F.linear(h, state[layer + "mlp.w1.weight"]), F.linear(h, state[layer + "mlp.w2.weight"])
        hidden = hidden + F.linear(a1 * F.silu(a2), state[layer + "mlp.c_proj.weight"])
    hidden = _rms(hidden, state["transformer.ln_f.weight"], eps)
    return F.linear(hidden, state["lm_head.weight"])[0]

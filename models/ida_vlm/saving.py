"""Writing a checkpoint in the published layout: safetensors shards named ``model-0000k-of-0000n``
with ``model.safetensors.index.json``, under the published parameter names, next to the source
checkpoint's own ``config.json``, ``generation_config.json``, ``qwen.tiktoken`` (and whatever other
small files it has, such as the remote-code ``.py`` files), so ``IdaVlm.from_pretrained`` and the
authors' code both load it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import InputError
from .loading import weight_files

INDEX_FILE = "model.safetensors.index.json"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".index.json")
_STAGING = ".saving"
_DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}


def checkpoint_dtype(folder: Path) -> torch.dtype:
    """The dtype the checkpoint's weights are stored in (that of its first tensor)."""
    key, file = next(iter(weight_files(folder).items()))
    if file.suffix == ".safetensors":
        with safe_open(file, framework="pt") as handle:
            return _DTYPES.get(handle.get_slice(key).get_dtype(), torch.float32)
    return torch.load(file, map_location="cpu", mmap=True, weights_only=True)[key].dtype


def save_published(state_dict: dict[str, torch.Tensor], source: Path, output: Path, dtype: torch.dtype,
                   max_shard_bytes: int = 4 * 2**30) -> list[Path]:
    """Write ``state_dict`` (published names; LoRA already merged) as shards of at most
    ``max_shard_bytes`` in ``dtype``, plus the source checkpoint's other files. Files are written
    to a staging folder and moved in with the index last, so a reader never sees a mix of old and
    new shards; earlier weight files in ``output`` are removed."""
    bad = [key for key in state_dict if "lora_" in key or ".base_layer." in key]
    if bad:
        raise InputError(f"not a published state dict (unmerged LoRA keys such as {bad[0]})")
    output.mkdir(parents=True, exist_ok=True)
    staging = output / _STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    shards: list[list[str]] = [[]]
    size = 0
    for key, tensor in state_dict.items():
        nbytes = tensor.numel() * dtype.itemsize
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(key)
        size += nbytes
    weight_map, total = {}, 0
    for k, keys in enumerate(shards, start=1):
        name = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        tensors = {key: state_dict[key].detach().to("cpu", dtype).contiguous() for key in keys}
        save_file(tensors, staging / name, metadata={"format": "pt"})
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        weight_map.update(dict.fromkeys(keys, name))
    (staging / INDEX_FILE).write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, indent=2))
    for old in output.iterdir():
        if old.is_file() and old.name.endswith(_WEIGHT_SUFFIXES):
            old.unlink()
    for extra in source.iterdir():
        if extra.is_file() and not extra.name.endswith(_WEIGHT_SUFFIXES):
            shutil.copy2(extra, staging / extra.name)
    written = []
    for file in sorted(staging.iterdir(), key=lambda f: f.name == INDEX_FILE):  # the index last
        written.append(file.replace(output / file.name))
    staging.rmdir()
    return written

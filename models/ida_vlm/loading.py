"""Finding a checkpoint (local folder, repo root or hub id) and loading its shards with low peak
memory: the model is built on the meta device and each shard's tensors are assigned in place."""
from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Iterator

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from ..errors import first_line, install_hint
from .errors import IdaVlmError

from .generation import GenerationDefaults

HUB_REPO = "jiyatai/IDA-VLM"
VARIANT_FOLDERS = {"base": "weights/model-base", "idf": "weights/model-idf"}
ID_FORMER_PREFIX = "transformer.visual.attn_pool.attn1."
_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_SINGLE_FILES = ("model.safetensors", "pytorch_model.bin")
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


def resolve_checkpoint(path_or_id: str | Path, variant: str) -> Path:
    """The folder holding ``config.json`` for ``variant``: the folder itself, ``weights/model-<variant>``
    below a repo root, or that folder of a hub repo (downloaded with huggingface_hub)."""
    if variant not in VARIANT_FOLDERS:
        raise IdaVlmError(f"unknown variant {variant!r} (use 'base' or 'idf')")
    path = Path(path_or_id).expanduser()
    if not path.exists() and _HUB_ID.fullmatch(str(path_or_id)):
        path = _download(str(path_or_id), variant)
    for folder in (path, path / VARIANT_FOLDERS[variant]):
        if (folder / "config.json").is_file():
            return folder
    raise IdaVlmError(
        f"not an IDA-VLM checkpoint: expected config.json in it or in {VARIANT_FOLDERS[variant]}/", path)


def _download(repo_id: str, variant: str) -> Path:
    folder = VARIANT_FOLDERS[variant]
    try:
        import huggingface_hub
    except ImportError as error:
        raise IdaVlmError(f"{repo_id} is not a local folder and huggingface_hub is not installed "
                           f"({install_hint('vlm')})") from error
    try:
        return Path(huggingface_hub.snapshot_download(repo_id, allow_patterns=[f"{folder}/*"]))
    except Exception as error:  # offline, unreachable, unknown repo: all end the same way for the user
        raise IdaVlmError(
            f"cannot download {folder} of hub repo {repo_id} ({first_line(error)}); where internet exists run "
            f"`huggingface-cli download {repo_id} --include '{folder}/*' --local-dir DIR` and pass DIR") from error


def weight_files(folder: Path) -> dict[str, Path]:
    """Parameter name -> file holding it, from the index file or the single unsharded file."""
    for name in _INDEX_FILES:
        if (folder / name).is_file():
            try:
                weight_map = json.loads((folder / name).read_text(encoding="utf-8"))["weight_map"]
            except (OSError, ValueError, KeyError) as error:
                raise IdaVlmError(f"cannot read weight index: {error}", folder / name) from error
            return {key: folder / file for key, file in weight_map.items()}
    for name in _SINGLE_FILES:
        if (folder / name).is_file():
            return {key: folder / name for key in _keys_of(folder / name)}
    raise IdaVlmError(f"no weights found (expected one of {', '.join(_INDEX_FILES + _SINGLE_FILES)})", folder)


_READ_ERRORS = (OSError, RuntimeError, KeyError, SafetensorError)


def _keys_of(file: Path) -> list[str]:
    try:
        if file.suffix == ".safetensors":
            with safe_open(file, framework="pt") as handle:
                return list(handle.keys())
        return list(torch.load(file, map_location="cpu", mmap=True, weights_only=True))
    except _READ_ERRORS as error:
        raise IdaVlmError(f"cannot read weights: {error}", file) from error


def _read(file: Path, keys: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
    """The named tensors of one file, read one at a time (safetensors) or memory-mapped
    (torch.load), so a shard is never held twice."""
    try:
        if file.suffix == ".safetensors":
            with safe_open(file, framework="pt") as handle:
                for key in keys:
                    yield key, handle.get_tensor(key)
        else:
            state = torch.load(file, map_location="cpu", mmap=True, weights_only=True)
            for key in keys:
                yield key, state[key]
    except _READ_ERRORS as error:
        raise IdaVlmError(f"cannot read weights: {error}", file) from error


def _key_list(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


def load_weights(model: nn.Module, files: dict[str, Path], dtype: torch.dtype, device: torch.device) -> None:
    """Assign every checkpoint tensor to ``model`` (built on meta), one shard at a time. The names
    must match exactly and every shape must agree with the config."""
    expected = {key: tensor.shape for key, tensor in model.state_dict().items()}
    missing, unexpected = sorted(expected.keys() - files.keys()), sorted(files.keys() - expected.keys())
    if missing or unexpected:
        parts = ([f"missing keys: {_key_list(missing)}"] if missing else []) + (
            [f"unexpected keys: {_key_list(unexpected)}"] if unexpected else [])
        raise IdaVlmError(f"checkpoint does not match the model: {'; '.join(parts)}", next(iter(files.values())).parent)
    by_file: dict[Path, list[str]] = defaultdict(list)
    for key, file in files.items():
        by_file[file].append(key)
    for file, keys in by_file.items():
        shard = {}
        for key, tensor in _read(file, keys):
            if tensor.shape != expected[key]:
                raise IdaVlmError(f"{key} has shape {list(tensor.shape)}, the config implies {list(expected[key])}", file)
            shard[key] = tensor.to(device=device, dtype=dtype)
        model.load_state_dict(shard, strict=False, assign=True)


def read_generation_defaults(folder: Path) -> GenerationDefaults:
    """``generation_config.json`` if present (top_p, top_k, max_new_tokens), else the published values."""
    path = folder / "generation_config.json"
    if not path.is_file():
        return GenerationDefaults()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise IdaVlmError(f"cannot read generation config: {error}", path) from error
    default = GenerationDefaults()
    return GenerationDefaults(max_new_tokens=raw.get("max_new_tokens", default.max_new_tokens),
                              top_p=raw.get("top_p", default.top_p), top_k=raw.get("top_k", default.top_k))

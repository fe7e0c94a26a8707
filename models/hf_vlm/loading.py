"""Finding the model (a local folder, or a hub id resolved through the Hugging Face cache) and
loading its processor and model with transformers' auto classes, every failure in one line.

Loading never touches the network (``local_files_only``); a hub id is first looked up in the
cache, and downloaded only when the hub is reachable and offline mode is off. Offline, a hub id
that is not cached fails at once with the command that fetches it elsewhere.
"""
from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, first_line, install_hint

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
_COMMIT = re.compile(r"[0-9a-f]{40}")
# What a model needs from a hub repo: configs, tokenizer and template files, weights.
HUB_PATTERNS = ["*.json", "*.jinja", "*.txt", "*.model", "*.tiktoken", "*.safetensors"]
HUB_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ModelSource:
    """Where the weights come from, as the JSON records it."""

    model: str                  # what the user passed
    folder: Path | None         # None: built in memory
    revision: str | None        # the hub commit, where the folder is a hub snapshot
    config_sha256: str          # identifies a plain folder's model (and any other)


def _fetch_hint(repo_id: str, revision: str | None) -> str:
    rev = f" --revision {revision}" if revision else ""
    return (f"where internet exists run `hf download {repo_id}{rev} --local-dir DIR`, "
            "copy DIR here and pass --model DIR")


def resolve(model: str | Path, revision: str | None = None) -> ModelSource:
    """The local folder holding the model's ``config.json``."""
    path = Path(model).expanduser()
    if not path.exists() and _HUB_ID.fullmatch(str(model)):
        path = _from_hub(str(model), revision)
    elif not path.exists():
        raise InputError("no such model folder (and not a hub id such as Qwen/Qwen2.5-VL-7B-Instruct)", path)
    if not path.is_dir():
        raise InputError("not a model folder (pass the folder holding config.json)", path)
    config = path / "config.json"
    if not config.is_file():
        raise InputError("not a transformers model folder: no config.json in it", path)
    commit = path.name if _COMMIT.fullmatch(path.name) and path.parent.name == "snapshots" else None
    return ModelSource(str(model), path, commit or revision, hashlib.sha256(config.read_bytes()).hexdigest())


def _from_hub(repo_id: str, revision: str | None) -> Path:
    try:
        import huggingface_hub
        from huggingface_hub import constants
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        raise InputError(f"is not a local folder and huggingface_hub is not installed ({install_hint('hf')})",
                         repo_id) from None
    try:
        return Path(huggingface_hub.snapshot_download(repo_id, revision=revision, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    if constants.is_offline_mode():
        raise InputError(f"not in the local Hugging Face cache and offline mode is on (HF_HUB_OFFLINE); "
                         f"{_fetch_hint(repo_id, revision)}", repo_id) from None
    log.info("%s: downloading from the hub", repo_id)
    try:
        return Path(huggingface_hub.snapshot_download(repo_id, revision=revision, allow_patterns=HUB_PATTERNS,
                                                      etag_timeout=HUB_TIMEOUT_S))
    except Exception as error:  # offline, unreachable, unknown or gated repo: the same advice
        raise InputError(f"cannot download it ({first_line(error)}); {_fetch_hint(repo_id, revision)}",
                         repo_id) from None


def _load_errors() -> tuple[type[BaseException], ...]:
    """What a bad folder raises inside transformers (a truncated or foreign weight file included)."""
    from safetensors import SafetensorError

    return (OSError, ValueError, KeyError, TypeError, RuntimeError, ImportError, AttributeError, SafetensorError)


def load_processor(folder: Path):
    """The folder's processor: it must hold an image processor and a chat template."""
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    except ImportError as error:
        raise InputError(f"its processor needs a package that is missing ({first_line(error)}); "
                         f"{install_hint('hf')}", folder) from None
    except _load_errors() as error:
        raise InputError(f"cannot load the processor: {first_line(error)}", folder) from None
    if getattr(processor, "image_processor", None) is None or getattr(processor, "tokenizer", None) is None:
        raise InputError("not an image-text model: its processor has no image processor and tokenizer", folder)
    if not getattr(processor, "chat_template", None):
        raise InputError("the processor has no chat template (chat_template.jinja or chat_template.json)", folder)
    return processor


def load_model(folder: Path, dtype, device):
    """``AutoModelForImageTextToText`` in ``dtype`` on ``device``, in eval mode."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except _load_errors() as error:
        raise InputError(f"cannot read config.json: {first_line(error)}", folder) from None
    try:
        model = AutoModelForImageTextToText.from_pretrained(folder, config=config, dtype=dtype, local_files_only=True)
    except ValueError as error:
        if "Unrecognized configuration class" in str(error):
            raise InputError(f"model_type {config.model_type!r} is not an image-text-to-text model that "
                             "transformers' AutoModelForImageTextToText loads", folder) from None
        raise InputError(f"cannot load the model: {first_line(error)}", folder) from None
    except _load_errors() as error:
        raise InputError(f"cannot load the model: {first_line(error)}", folder) from None
    return model.to(device).eval().requires_grad_(False)

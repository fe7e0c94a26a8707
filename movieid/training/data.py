"""Training data: the released conversation format, stage configs that mix several files, a check
of every sample before the first step, and the order in which samples are drawn.

A sample is ``{"id": ..., "conversations": [{"from": "user", "value": "Alice is <img>a.jpg</img>\\n
..."}, {"from": "assistant", "value": "..."}, ...]}`` (LLaVA's ``human``/``gpt`` are accepted too);
image paths are relative to the data root (by default the JSON file's folder). A stage config is YAML:

    data_root: images/          # optional, for every source
    sources:
      - path: movienet_id.json
        weight: 0.9
      - path: llava_general.json
        weight: 0.1              # the paper keeps ~10 % general data in each stage
        data_root: llava/        # optional, this source only
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import yaml
from PIL import Image
from tqdm import tqdm

from ..errors import MovieIdError, first_line
from ..models.errors import InputError
from ..models.ida_vlm.images import preprocess
from ..models.ida_vlm import MAX_IMAGES
from ..models.ida_vlm.tokenizer import IMG_END, IMG_START, QwenTokenizer
from ..models.ida_vlm.training import Batch, build_example, collate

log = logging.getLogger(__name__)

_IMAGE = re.compile(re.escape(IMG_START) + r"(.*?)" + re.escape(IMG_END), re.DOTALL)
_SPEAKERS = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}


@dataclass(frozen=True)
class Source:
    """One sample file of a stage, its mixing weight and where its relative image paths point."""

    path: Path
    weight: float
    data_root: Path


@dataclass(frozen=True)
class Sample:
    """A checked sample: its (query, answer) turns, resolved image paths and roles, and its
    number of loss tokens (to normalise a step's loss before its micro-batches run)."""

    id: str
    turns: tuple[tuple[str, str], ...]
    images: tuple[Path, ...]
    roles: tuple[str, ...]
    n_labels: int


@dataclass(frozen=True)
class Problem:
    """Why a sample was left out."""

    source: str
    id: str
    problem: str


def read_stage(path: Path, data_root: Path | None = None) -> list[Source]:
    """A ``.json``/``.jsonl`` sample file (one source) or a YAML stage config (several, weighted).
    ``data_root`` overrides every source's image folder."""
    path = Path(path)
    if not path.is_file():
        raise MovieIdError("training data not found", path)
    if path.suffix.lower() not in (".yaml", ".yml"):
        return [Source(path, 1.0, Path(data_root or path.parent))]
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise MovieIdError(f"cannot read stage config: {first_line(error)}", path) from error
    entries = raw.get("sources") if isinstance(raw, dict) else None
    if not isinstance(entries, list) or not entries:
        raise MovieIdError("a stage config needs a non-empty list 'sources' of {path, weight, data_root}", path)
    root = path.parent
    common = data_root or (root / raw["data_root"] if raw.get("data_root") else None)
    sources = []
    for k, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"path": entry}
        if not isinstance(entry, dict) or "path" not in entry:
            raise MovieIdError(f"source {k + 1} has no 'path'", path)
        weight = entry.get("weight", 1.0)
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight <= 0:
            raise MovieIdError(f"source {k + 1}: weight must be a positive number, got {weight!r}", path)
        file = root / entry["path"]
        if not file.is_file():
            raise MovieIdError(f"source {k + 1}: {file} not found", path)
        own = root / entry["data_root"] if entry.get("data_root") else None
        sources.append(Source(file, float(weight), Path(data_root or own or common or file.parent)))
    return sources


def _read_records(path: Path) -> list:
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        records = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MovieIdError(f"cannot read training samples: {error}", path) from error
    if not isinstance(records, list):
        raise MovieIdError("training samples must be a JSON list of {id, conversations}", path)
    return records


def _turns(record) -> list[tuple[str, str]]:
    if not isinstance(record, dict) or not isinstance(record.get("conversations"), list):
        raise InputError("no 'conversations' list")
    messages = []
    for k, message in enumerate(record["conversations"]):
        speaker = _SPEAKERS.get(str(message.get("from", "")).lower()) if isinstance(message, dict) else None
        if speaker is None or not isinstance(message.get("value"), str):
            raise InputError(f"message {k + 1} is not {{'from': 'user'|'assistant', 'value': text}}")
        messages.append((speaker, message["value"]))
    if not any(speaker == "assistant" for speaker, _ in messages):
        raise InputError("no assistant turn")
    turns = []
    for k in range(0, len(messages), 2):
        pair = messages[k:k + 2]
        if [speaker for speaker, _ in pair] != ["user", "assistant"]:
            raise InputError(f"messages must alternate user, assistant (message {k + 1} breaks it)")
        if not pair[1][1].strip():
            raise InputError(f"assistant message {k + 2} is empty")
        turns.append((pair[0][1], pair[1][1]))
    return turns


def _check_image(path: Path) -> None:
    if not path.is_file():
        raise InputError(f"missing image {path}")
    try:
        with Image.open(path) as image:
            image.size
    except OSError as error:
        raise InputError(f"unreadable image {path} ({error})") from error


def check_sample(record, index: int, source: Source, tokenizer: QwenTokenizer, max_length: int,
                 max_images: int = MAX_IMAGES) -> Sample:
    """One record -> a Sample, or ``InputError`` saying what is wrong with it."""
    turns = _turns(record)
    paths = [match.strip() for query, _ in turns for match in _IMAGE.findall(query)]
    if len(paths) > max_images:
        raise InputError(f"{len(paths)} images (at most {max_images})")
    if any(not path for path in paths):
        raise InputError("an <img></img> tag without a path")
    images = [source.data_root / path for path in paths]
    for image in images:
        _check_image(image)
    example = build_example(tokenizer, turns)
    if len(example.ids) > max_length:
        raise InputError(f"{len(example.ids)} tokens (at most {max_length})")
    return Sample(sample_id(record, index), tuple(turns), tuple(images), example.roles, example.n_labels)


def sample_id(record, index: int) -> str:
    return str(record["id"]) if isinstance(record, dict) and "id" in record else f"#{index + 1}"


def load_samples(sources: Sequence[Source], tokenizer: QwenTokenizer, max_length: int,
                 progress: bool | None = None) -> tuple[list[list[Sample]], list[Problem]]:
    """Every source's good samples, and the problems of the others."""
    kept, problems = [], []
    for source in sources:
        records = _read_records(source.path)
        good, first_problem = [], len(problems)
        for index, record in enumerate(tqdm(records, desc=f"checking {source.path.name}", unit="sample",
                                            leave=False, disable=True if progress is False else None)):
            try:
                good.append(check_sample(record, index, source, tokenizer, max_length))
            except InputError as error:
                problems.append(Problem(str(source.path), sample_id(record, index), error.problem))
        if not good:
            first = problems[first_problem] if len(problems) > first_problem else None
            raise MovieIdError(f"no usable sample among {len(records)}"
                               + (f" (first problem: {first.id}: {first.problem})" if first else ""), source.path)
        kept.append(good)
    return kept, problems


def report_problems(problems: Sequence[Problem], strict: bool, where: Path | None) -> None:
    """Name the left-out samples (a warning and ``skipped.jsonl`` in ``where``), or fail on them."""
    if not problems:
        return
    listed = "; ".join(f"{p.id}: {p.problem}" for p in problems[:5]) + (" ..." if len(problems) > 5 else "")
    if strict:
        raise MovieIdError(f"{len(problems)} bad samples (--strict): {listed}", problems[0].source)
    log.warning("left out %d bad samples: %s%s", len(problems), listed,
                f" (all in {where / 'skipped.jsonl'})" if where else "")
    if where is not None:
        with open(where / "skipped.jsonl", "w", encoding="utf-8") as out:
            for p in problems:
                out.write(json.dumps({"source": p.source, "id": p.id, "problem": p.problem}) + "\n")


def draw_order(sizes: Sequence[int], weights: Sequence[float], count: int, seed: int) -> np.ndarray:
    """``[count, 2]`` (source, sample) pairs: each draw picks a source with probability proportional
    to its weight, and each source is walked in shuffled passes (a fresh shuffle each pass).
    Deterministic in ``seed``, so a resumed run draws exactly what the killed one would have."""
    rng = np.random.default_rng(seed)
    weights = np.asarray(weights, dtype=np.float64)
    picks = rng.choice(len(sizes), size=count, p=weights / weights.sum())
    order = np.empty((count, 2), dtype=np.int64)
    for source, size in enumerate(sizes):
        where = np.flatnonzero(picks == source)
        passes = -(-len(where) // size)
        walk = np.concatenate([rng.permutation(size) for _ in range(passes)]) if passes else np.empty(0, int)
        order[where, 0], order[where, 1] = source, walk[:len(where)]
    return order


@dataclass(frozen=True)
class LoadFailure:
    """A micro-batch whose images could not be read (returned, not raised, so the message survives
    a loader worker unchanged)."""

    problem: str
    path: str | None


class MicroBatches(torch.utils.data.Dataset):
    """Micro-batch ``i`` of this rank: its samples' ids and labels, and their images read and
    preprocessed as at inference (``images.preprocess``, on the CPU of a loader worker)."""

    def __init__(self, groups: Sequence[Sequence[Sample]], tokenizer: QwenTokenizer, image_size: int):
        self.groups, self.tokenizer, self.image_size = list(groups), tokenizer, image_size

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int) -> Batch | LoadFailure:
        samples = self.groups[index]
        examples = [build_example(self.tokenizer, s.turns, s.roles) for s in samples]
        pixels = []
        for sample in samples:
            try:
                pixels.append(preprocess(list(sample.images), self.image_size, torch.device("cpu"))
                              if sample.images else torch.zeros(0))
            except InputError as error:
                return LoadFailure(f"sample {sample.id}: {error.problem}", error.path)
        return collate(examples, pixels, self.tokenizer.endoftext_id)

"""MM-ID, the paper's benchmark of ID-aware answers: answering it with IDA-VLM and scoring the
answers per type, on the released JSON as it is (585 items; types ``matching``, ``location``,
``QA_singleimage``, ``QA_multiimage``, ``caption_singleimage``, ``caption_multiimage``).

Scoring: ``matching`` by accuracy (the first digit or ordinal of the answer picks the image);
``location`` by the IoU of the answer's box (0..1000 scale, rescaled to the test image's pixels)
with the reference pixel box ``[x1, y1, x2, y2]``, as a mean and as accuracy at IoU > 0.5; the QA
and caption types by a judge model (``judge.py``) or reported as not judged. Unknown types,
malformed items and answers are counted, never fatal.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from PIL import Image
from tqdm import tqdm

from ..errors import MovieIdError
from ..models.errors import InputError
from ..models.ida_vlm.grounding import box_for, parse_boxes

MATCHING, LOCATION = "matching", "location"
JUDGED_TYPES = ("QA_singleimage", "QA_multiimage", "caption_singleimage", "caption_multiimage")
TYPES = (MATCHING, LOCATION, *JUDGED_TYPES)

_TAG = re.compile(r"<img>(.*?)</img>", re.DOTALL)
_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth")
_CHOICE = re.compile(r"\b(?:(\d+)|(" + "|".join(_ORDINALS) + r"))\b", re.IGNORECASE)
_PIXEL_BOX = re.compile(r"^\s*\[\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*\]\s*$")
_BARE_BOX = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*,\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)|"
                       r"\[\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\]")


@dataclass(frozen=True)
class Item:
    """One benchmark sample: ``images`` are its image paths in the order of the question's tags."""

    id: str
    type: str
    question: str
    images: tuple[str, ...]
    answer: str
    target: str | None  # ground_target (location) or reference_target (matching)


@dataclass(frozen=True)
class Benchmark:
    path: Path
    items: list[Item]
    malformed: list[str]  # why items were left out ("id 7: no question")


def load_benchmark(path: Path) -> Benchmark:
    """The benchmark JSON (a list of items). A file that is not such a list is an error; an item
    without what answering needs is left out and counted."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MovieIdError(f"cannot read benchmark: {error}", path) from error
    if not isinstance(raw, list):
        raise MovieIdError("a benchmark is a JSON list of items", path)
    items, malformed, seen = [], [], set()
    for index, entry in enumerate(raw):
        try:
            item = _item(entry)
        except InputError as error:
            label = entry.get("id", f"#{index + 1}") if isinstance(entry, dict) else f"#{index + 1}"
            malformed.append(f"id {label}: {error.problem}")
            continue
        if item.id in seen:
            malformed.append(f"id {item.id}: duplicate id")
            continue
        seen.add(item.id)
        items.append(item)
    return Benchmark(Path(path), items, malformed)


def _item(entry) -> Item:
    if not isinstance(entry, dict):
        raise InputError("not an object")
    for key in ("id", "type", "question", "answer"):
        if key not in entry:
            raise InputError(f"no {key!r}")
    if not isinstance(entry["question"], str):
        raise InputError("the question is not text")
    names = _TAG.findall(entry["question"])
    missing = [name for name in names if not isinstance(entry.get(name.strip()), str)]
    if missing:
        raise InputError(f"the question shows {missing[0]!r}, which the item does not have")
    target = entry.get("ground_target") or entry.get("reference_target")
    return Item(str(entry["id"]), str(entry["type"]), entry["question"],
                tuple(entry[name.strip()] for name in names), str(entry["answer"]),
                target.strip() if isinstance(target, str) else None)


def image_path(images_dir: Path, relative: str) -> Path:
    """Benchmark paths (``./images/...``) are relative to the MM-ID folder given as ``--images``."""
    return Path(images_dir) / relative


# ---- metrics -------------------------------------------------------------------------------

def chosen_image(text: str) -> int | None:
    """The image an answer picks: its first number or ordinal word ("Image 2", "the second one")."""
    match = _CHOICE.search(text or "")
    if match is None:
        return None
    return int(match.group(1)) if match.group(1) else _ORDINALS.index(match.group(2).lower()) + 1


def reference_box(answer: str) -> tuple[float, float, float, float] | None:
    """A location item's pixel box ``[x1, y1, x2, y2]``."""
    match = _PIXEL_BOX.match(answer)
    return tuple(float(v) for v in match.groups()) if match else None


def predicted_box(text: str, name: str | None, width: int, height: int) -> tuple[float, float, float, float] | None:
    """The answer's box for ``name`` in pixels: ``<ref>name</ref><box>(x1,y1),(x2,y2)</box>`` on the
    0..1000 scale (the one naming ``name``, else the first), or a bare ``(x1,y1),(x2,y2)`` or
    ``[x1, y1, x2, y2]`` on the same scale."""
    box = box_for(parse_boxes(text or "", width, height), name or "")
    if box is not None:
        return box.x1, box.y1, box.x2, box.y2
    match = _BARE_BOX.search(text or "")
    if match is None:
        return None
    x1, y1, x2, y2 = (int(v) for v in (match.groups()[:4] if match.group(1) else match.groups()[4:]))
    return x1 / 1000 * width, y1 / 1000 * height, x2 / 1000 * width, y2 / 1000 * height


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``[x1, y1, x2, y2]`` boxes (corners in any order)."""
    ax1, ax2 = sorted((a[0], a[2]))
    ay1, ay2 = sorted((a[1], a[3]))
    bx1, bx2 = sorted((b[0], b[2]))
    by1, by2 = sorted((b[1], b[3]))
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / union if union > 0 else 0.0


# ---- predictions ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Predictions:
    answers: dict[str, str | None]  # id -> answer (None: answering failed)
    malformed_lines: int
    duplicates: int


def read_predictions(path: Path) -> Predictions:
    """``{"id", "type", "answer"}`` JSON lines; the first line of an id counts."""
    answers: dict[str, str | None] = {}
    malformed = duplicates = 0
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return Predictions({}, 0, 0)
    except (OSError, UnicodeDecodeError) as error:
        raise MovieIdError(f"cannot read predictions: {error}", path) from error
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            key = str(record["id"])
            answer = record.get("answer")
            if answer is not None and not isinstance(answer, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            malformed += 1
            continue
        if key in answers:
            duplicates += 1
            continue
        answers[key] = answer
    return Predictions(answers, malformed, duplicates)


# ---- scoring -------------------------------------------------------------------------------

@dataclass
class TypeScore:
    type: str
    items: int = 0
    answered: int = 0
    missing: int = 0          # no prediction line, or answering failed
    unparsed: int = 0         # an answer without a choice (matching) or a box (location)
    unscored: int = 0         # could not be scored (no test image to size a box; the judge failed)
    correct: int = 0          # matching: right image; location: IoU > 0.5
    iou_sum: float = 0.0
    judge_scores: list[int] = field(default_factory=list)
    judged: bool = False

    def summary(self) -> dict:
        out = {"items": self.items, "answered": self.answered, "missing": self.missing,
               "unparsed": self.unparsed, "unscored": self.unscored}
        scored = self.items - self.unscored
        if self.type == MATCHING:
            out["accuracy"] = self.correct / scored if scored else None
        elif self.type == LOCATION:
            out["mean_iou"] = self.iou_sum / scored if scored else None
            out["accuracy_iou_0.5"] = self.correct / scored if scored else None
        elif self.type in JUDGED_TYPES:
            out["judged"] = len(self.judge_scores) if self.judged else None
            out["mean_judge_score"] = (sum(self.judge_scores) / len(self.judge_scores)
                                       if self.judge_scores else None)
        return out


@dataclass
class Report:
    benchmark: Benchmark
    types: dict[str, TypeScore]
    item_results: list[dict]
    predictions: Predictions
    unknown_ids: int
    judge: dict | None
    judge_failures: list[str]

    def to_json(self) -> dict:
        return {"benchmark": str(self.benchmark.path), "judge": self.judge,
                "types": {name: score.summary() for name, score in self.types.items()},
                "counts": {"items": len(self.benchmark.items), "malformed_items": len(self.benchmark.malformed),
                           "malformed_prediction_lines": self.predictions.malformed_lines,
                           "duplicate_predictions": self.predictions.duplicates,
                           "predictions_for_unknown_ids": self.unknown_ids,
                           "unknown_type_items": sum(s.items for t, s in self.types.items() if t not in TYPES),
                           "judge_failures": len(self.judge_failures)},
                "malformed_items": self.benchmark.malformed, "items": self.item_results}

    def table(self) -> str:
        rows = [f"{'type':<20} {'items':>5} {'answered':>8}  score"]
        for name, score in self.types.items():
            rows.append(f"{name:<20} {score.items:>5} {score.answered:>8}  {_describe(score)}")
        counts = self.to_json()["counts"]
        notes = [f"{value} {key.replace('_', ' ')}" for key, value in counts.items() if key != "items" and value]
        if notes:
            rows.append("also: " + ", ".join(notes))
        return "\n".join(rows)


def _describe(score: TypeScore) -> str:
    summary = score.summary()
    scored = score.items - score.unscored
    extra = [f"{n} {what}" for n, what in ((score.missing, "missing"), (score.unparsed, "unparsed"),
                                           (score.unscored, "unscored")) if n]
    tail = f" ({', '.join(extra)})" if extra else ""
    if score.type == MATCHING and summary["accuracy"] is not None:
        return f"accuracy {100 * summary['accuracy']:.1f} % ({score.correct}/{scored}){tail}"
    if score.type == LOCATION and summary["mean_iou"] is not None:
        return (f"mean IoU {summary['mean_iou']:.3f}, IoU>0.5 {100 * summary['accuracy_iou_0.5']:.1f} % "
                f"({score.correct}/{scored}){tail}")
    if score.type in JUDGED_TYPES:
        if not score.judged:
            return f"not judged{tail}"
        if summary["mean_judge_score"] is not None:
            return f"judge {summary['mean_judge_score']:.2f} / 10 ({len(score.judge_scores)} judged){tail}"
    if score.type not in TYPES:
        return "unknown type, not scored"
    return f"no score{tail}"


def score(benchmark: Benchmark, predictions: Predictions, images_dir: Path,
          judge: Callable[[Item, str], int] | None = None, judge_info: dict | None = None,
          judge_workers: int = 4, progress: bool | None = None) -> Report:
    """Score ``predictions`` against ``benchmark``; ``judge(item, answer)`` returns 1..10 or raises
    ``InputError`` (counted as a judge failure)."""
    types: dict[str, TypeScore] = {name: TypeScore(name, judged=judge is not None and name in JUDGED_TYPES)
                                   for name in TYPES}
    results: list[dict] = []
    to_judge: list[tuple[Item, str, dict]] = []
    for item in benchmark.items:
        entry = types.setdefault(item.type, TypeScore(item.type))
        entry.items += 1
        result = {"id": item.id, "type": item.type}
        results.append(result)
        answer = predictions.answers.get(item.id)
        if item.type not in TYPES:
            result["status"] = "unknown type"
            continue
        if answer is None:
            entry.missing += 1
            result["status"] = "missing"  # counts as wrong (matching) or IoU 0 (location)
            continue
        entry.answered += 1
        if item.type == MATCHING:
            _score_matching(item, answer, entry, result)
        elif item.type == LOCATION:
            _score_location(item, answer, images_dir, entry, result)
        elif judge is not None:
            to_judge.append((item, answer, result))
        else:
            result["status"] = "not judged"
    failures = _run_judge(judge, to_judge, types, judge_workers, progress) if judge and to_judge else []
    unknown = len(set(predictions.answers) - {item.id for item in benchmark.items})
    return Report(benchmark, types, results, predictions, unknown, judge_info, failures)


def _score_matching(item: Item, answer: str, entry: TypeScore, result: dict) -> None:
    truth, picked = chosen_image(item.answer), chosen_image(answer)
    if truth is None:
        entry.unscored += 1
        result["status"] = "reference answer names no image"
        return
    if picked is None:
        entry.unparsed += 1
    result.update(status="scored", chosen=picked, correct=picked == truth)
    entry.correct += picked == truth


def _score_location(item: Item, answer: str, images_dir: Path, entry: TypeScore, result: dict) -> None:
    truth = reference_box(item.answer)
    try:
        with Image.open(image_path(images_dir, item.images[-1])) as image:
            width, height = image.size
    except (OSError, IndexError):
        entry.unscored += 1
        result["status"] = "test image not found (needed to size the box)"
        return
    if truth is None:
        entry.unscored += 1
        result["status"] = "reference box is not [x1, y1, x2, y2]"
        return
    box = predicted_box(answer, item.target, width, height)
    if box is None:
        entry.unparsed += 1
    value = iou(box, truth) if box is not None else 0.0
    entry.iou_sum += value
    entry.correct += value > 0.5
    result.update(status="scored", box=None if box is None else [round(v, 1) for v in box], iou=round(value, 4))


class JudgeUnavailable(InputError):
    """The judge's endpoint failed several requests in a row: every item would fail the same way."""


def _run_judge(judge, work: list[tuple[Item, str, dict]], types: dict[str, TypeScore], workers: int,
               progress: bool | None) -> list[str]:
    from concurrent.futures import ThreadPoolExecutor

    failures = []

    def one(job):
        item, answer, result = job
        try:
            return job, judge(item, answer), None
        except JudgeUnavailable:
            raise  # every other item would fail the same way: stop (ratings so far stay cached)
        except InputError as error:
            return job, None, error.problem

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for (item, _, result), value, problem in tqdm(pool.map(one, work), total=len(work), desc="judging",
                                                      unit="item", leave=False,
                                                      disable=True if progress is False else None):
            if value is None:
                types[item.type].unscored += 1
                result.update(status="judge failed", problem=problem)
                failures.append(f"id {item.id}: {problem}")
            else:
                types[item.type].judge_scores.append(value)
                result.update(status="judged", judge_score=value)
    if failures and len(failures) == len(work):
        raise MovieIdError(f"the judge failed on every item (first: {failures[0]})")
    return failures


# ---- answering -----------------------------------------------------------------------------

def keep_valid_lines(path: Path) -> set[str]:
    """Rewrite the predictions file with only its answered lines (a kill can leave half a line;
    items whose answering failed are tried again) and return the ids it already answers."""
    if not path.is_file():
        return set()
    kept, ids = [], set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
            key = str(record["id"])
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(record.get("answer"), str) and key not in ids:
            ids.add(key)
            kept.append(line)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    tmp.replace(path)
    return ids


def answer_benchmark(answer_batch: Callable[[list[tuple[Item, list]]], list[str]], benchmark: Benchmark,
                     images_dir: Path, predictions: Path, batch_size: int, load_image: Callable,
                     progress: bool | None = None) -> tuple[int, int]:
    """Answer every item not yet in ``predictions`` (appending a line as each batch is done);
    returns (answered now, failed now). ``answer_batch`` gets (item, images) pairs and returns one
    answer each; ``load_image(path)`` reads one image (``InputError`` when it cannot)."""
    done = keep_valid_lines(predictions)
    todo = [item for item in benchmark.items if item.id not in done]
    answered = failed = 0
    predictions.parent.mkdir(parents=True, exist_ok=True)
    with open(predictions, "a", encoding="utf-8") as out, tqdm(
            total=len(todo), desc="answering", unit="item", disable=True if progress is False else None) as bar:
        for start in range(0, len(todo), batch_size):
            chunk, ready, lines = todo[start:start + batch_size], [], {}
            for item in chunk:
                try:
                    ready.append((item, [load_image(image_path(images_dir, p)) for p in item.images]))
                except InputError as error:
                    lines[item.id] = _line(item, None, error.problem)
            for (item, _), (text, problem) in zip(ready, _answer_each(answer_batch, ready)):
                lines[item.id] = _line(item, text, problem)
            for line in (lines[item.id] for item in chunk):
                out.write(json.dumps(line) + "\n")
                failed += line["answer"] is None
                answered += line["answer"] is not None
            out.flush()
            bar.update(len(lines))
    return answered, failed


def _answer_each(answer_batch, ready: list) -> list[tuple[str | None, str | None]]:
    """(answer, problem) per item: the batch at once; if the model refuses it (an item it cannot
    take), item by item, so one bad item costs only its own answer."""
    if not ready:
        return []
    try:
        return [(text, None) for text in answer_batch(ready)]
    except InputError as error:
        if len(ready) == 1:
            return [(None, error.problem)]
    return [_answer_each(answer_batch, [pair])[0] for pair in ready]


def _line(item: Item, text: str | None, problem: str | None) -> dict:
    line = {"id": item.id, "type": item.type, "answer": text}
    if problem:
        line["error"] = problem
    return line


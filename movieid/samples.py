"""Training samples in the released conversation format, made from your own material.

* ``from_annotation``: a reviewed movieid annotation (names corrected by a person) and its film.
  Per shot with named people, a caption sample: each named person's face crop as ID image (taken
  from another shot where possible, so the model must recognise, not copy), the shot's keyframes
  as test images, the caption as the answer, in the prompt the ``ida-vlm`` engine asks. Per named
  face, a location sample: ``<ref>Name</ref><box>(x1,y1),(x2,y2)</box>`` on the 0..1000 scale.
* ``from_boxes``: stage-1 style samples from box-annotated images (COCO-style JSON with a ``name``
  per box), as the paper turns RefCOCO / Flickr30k entities into ID references: a crop of the
  named person (from another image where the name recurs) as ID image, a location sample per
  box, and a caption sample where the image has a ``caption``.

The annotation is read as a JSON document checked against ``schema/annotation.schema.json``;
frames come from ``video.FrameReader`` at display size (the boxes' coordinates).
"""
from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from .annotation import read_annotation
from .errors import MovieIdError

MAX_IMAGES = 8
CROP_MARGIN = 0.4      # face box grown by this fraction of its size on each side: a head-and-shoulders crop
FRAME_CHUNK = 32       # frames decoded at a time
_UNKNOWN = re.compile(r"^Unknown \d+$")
_UNSAFE = re.compile(r"[^\w.-]+")


@dataclass(frozen=True)
class Sighting:
    """A named person's box in one image (a film frame, or a file of a box annotation)."""

    name: str
    source: str | int       # frame index or image file
    group: str | int        # shot index or image id: ID crops come from another group when possible
    box: tuple[float, float, float, float]

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


@dataclass(frozen=True)
class SamplesSummary:
    output: Path
    captions: int
    locations: int
    images: int
    skipped: int   # shots or images without a named person


def grounding_answer(name: str, box, width: int, height: int) -> str:
    """``<ref>name</ref><box>(x1,y1),(x2,y2)</box>`` with the box on Qwen-VL's 0..1000 scale."""
    def scale(value, size):
        return min(1000, max(0, round(value / size * 1000)))
    x1, y1, x2, y2 = box
    return (f"<ref>{name}</ref><box>({scale(x1, width)},{scale(y1, height)}),"
            f"({scale(x2, width)},{scale(y2, height)})</box>")


def crop_box(box, width: int, height: int, margin: float = CROP_MARGIN) -> tuple[int, int, int, int]:
    """``box`` grown by ``margin`` of its size on each side, in whole pixels inside the image."""
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    left, top = max(0, int(np.floor(x1 - dx))), max(0, int(np.floor(y1 - dy)))
    right, bottom = min(width, int(np.ceil(x2 + dx))), min(height, int(np.ceil(y2 + dy)))
    if right - left < 2 or bottom - top < 2:
        raise MovieIdError(f"box {list(box)} is outside the {width}x{height} image")
    return left, top, right, bottom


def fill_images(query: str, paths: list[str]) -> str:
    """Put ``paths`` into a query's empty ``<img></img>`` tags, in order."""
    slots = iter(paths)
    filled = re.sub(r"<img></img>", lambda _: f"<img>{next(slots)}</img>", query)
    if next(slots, None) is not None:
        raise ValueError("more paths than image tags")
    return filled


def conversation(sample_id: str, query: str, answer: str) -> dict:
    return {"id": sample_id, "conversations": [{"from": "user", "value": query},
                                               {"from": "assistant", "value": answer}]}


def id_crops(sightings: list[Sighting]) -> dict[tuple[str, object], Sighting]:
    """For every (name, group) the sighting to crop the ID image from: the name's largest box in
    another group, or in the same group when the name appears in no other."""
    by_name: dict[str, list[Sighting]] = defaultdict(list)
    for sighting in sightings:
        by_name[sighting.name].append(sighting)
    chosen = {}
    for name, seen in by_name.items():
        ranked = sorted(seen, key=lambda s: -s.area)
        for group in {s.group for s in seen}:
            chosen[(name, group)] = next((s for s in ranked if s.group != group), ranked[0])
    return chosen


class _Writer:
    """Image files under ``folder``, referred to relative to the samples file's folder."""

    def __init__(self, folder: Path, base: Path):
        self.folder, self.base, self.count = folder, base, 0
        folder.mkdir(parents=True, exist_ok=True)

    def save(self, name: str, pixels: np.ndarray) -> str:
        path = self.folder / name
        Image.fromarray(pixels).save(path, quality=95)
        self.count += 1
        return self.relative(path)

    def relative(self, path: Path) -> str:
        return Path(os.path.relpath(path, self.base)).as_posix()


def _crop_name(sighting: Sighting) -> str:
    """``Name_<frame>.jpg``, or ``Name_<image path without suffix>.jpg``."""
    source = sighting.source if isinstance(sighting.source, int) else Path(sighting.source).with_suffix("").as_posix()
    return _UNSAFE.sub("_", f"{sighting.name}_{source}") + ".jpg"


# ---- from a reviewed annotation ------------------------------------------------------------

def _is_person(name: str) -> bool:
    return bool(name.strip()) and not _UNKNOWN.match(name)


def check_reviewed(document: dict, annotation: Path, frame_count: int) -> None:
    """What a reviewed (hand-edited) annotation must hold before it becomes training data: names a
    prompt can carry (a name like ``Eve <img>/etc/hostname</img>`` would become an image tag, and
    training would open that file), captions without the model's tags, frames of this film."""
    from .cast import name_problem
    from .models.ida_vlm.prompt import model_tags

    for shot in document["shots"]:
        where = f"shot {shot['index']}"
        for name in {*shot["names"], *(face["name"] for face in shot["faces"])}:
            problem = name_problem(name) if _is_person(name) else None
            if problem is not None:
                raise MovieIdError(f"{where}: {problem}", annotation)
        tags = model_tags(shot["caption"])
        if tags:
            raise MovieIdError(f"{where}: the caption holds {', '.join(tags)}, the model's own tags "
                               "(a caption must not become an image or a box)", annotation)
        for frame in [k["frame"] for k in shot["keyframes"]] + [f["frame"] for f in shot["faces"]]:
            if not 0 <= frame < frame_count:
                raise MovieIdError(f"{where}: frame {frame} is not in the film ({frame_count} frames)", annotation)


def from_annotation(annotation: Path, film_path: Path, output: Path, images_dir: Path | None = None,
                    instruction: str | None = None, max_images: int = MAX_IMAGES, locations: bool = True,
                    progress: bool | None = None) -> SamplesSummary:
    """Write ID-reference samples made from a reviewed annotation of ``film_path`` to ``output``."""
    from .models.ida_vlm.prompt import build_id_query, grounding_query
    from .video import FrameReader, probe

    if instruction is None:
        from .engines.ida_vlm import INSTRUCTION as instruction
    document = read_annotation(annotation)
    film = probe(film_path)
    if film.frame_count != document["film"]["frame_count"]:
        raise MovieIdError(f"the annotation is of a film with {document['film']['frame_count']} frames, "
                           f"this one has {film.frame_count}", film_path)
    check_reviewed(document, annotation, film.frame_count)
    writer = _Writer(images_dir or output.with_name(output.stem + "_images"), output.parent)
    shots = document["shots"]
    sightings = [Sighting(face["name"], face["frame"], shot["index"], tuple(face["box"]))
                 for shot in shots for face in shot["faces"] if _is_person(face["name"])]
    crops = id_crops(sightings)

    cast_order = {member["name"]: k for k, member in enumerate(document["cast"]["members"])}
    plans, shown, sources, skipped = [], set(), set(), 0
    for shot in shots:
        on_screen = [n for n in shot["names"] if _is_person(n)]
        on_screen += sorted({s.name for s in sightings if s.group == shot["index"]} - set(on_screen))
        # cast order, as the engine lists ID images; names the reviewer added go last
        named = sorted(on_screen, key=lambda n: (cast_order.get(n, len(cast_order)), on_screen.index(n)))
        keyframes = [k["frame"] for k in shot["keyframes"]]
        if not named or not keyframes:
            skipped += 1
            continue
        names = named[:max_images - 1]
        frames = keyframes[:max_images - len(names)]
        faces = [s for s in sightings if s.group == shot["index"]] if locations else []
        plans.append((shot, names, frames, faces))
        shown.update(frames)
        shown.update(s.source for s in faces)
        sources.update(crops[(n, shot["index"])].source for n in names)
        sources.update(crops[(s.name, shot["index"])].source for s in faces)

    frame_files, crop_files = {}, {}
    wanted_crops = defaultdict(list)
    for sighting in set(crops.values()):
        if sighting.source in sources:
            wanted_crops[sighting.source].append(sighting)
    with FrameReader(film) as reader:
        width, height = reader.size
        order = sorted(shown | sources)
        for start in tqdm(range(0, len(order), FRAME_CHUNK), desc="frames", unit="chunk", leave=False,
                          disable=True if progress is False else None):
            chunk = order[start:start + FRAME_CHUNK]
            for index, frame in zip(chunk, reader.read(chunk)):
                if index in shown:
                    frame_files[index] = writer.save(f"frame_{index:06d}.jpg", frame)
                for sighting in wanted_crops.get(index, []):
                    left, top, right, bottom = crop_box(sighting.box, width, height)
                    crop_files[sighting] = writer.save(_crop_name(sighting), frame[top:bottom, left:right])

    samples, captions, located = [], 0, 0
    stem = Path(document["film"]["path"]).stem or film.path.stem
    for shot, names, frames, faces in plans:
        ids = [crop_files[crops[(n, shot["index"])]] for n in names]
        query = fill_images(build_id_query(names, len(frames), instruction), ids + [frame_files[f] for f in frames])
        samples.append(conversation(f"{stem}:shot{shot['index']}:caption", query, shot["caption"]))
        captions += 1
        for face in faces:
            id_image = crop_files[crops[(face.name, shot["index"])]]
            query = fill_images(grounding_query(face.name), [id_image, frame_files[face.source]])
            samples.append(conversation(f"{stem}:shot{shot['index']}:frame{face.source}:{face.name}", query,
                                        grounding_answer(face.name, face.box, width, height)))
            located += 1
    _write_samples(output, samples)
    return SamplesSummary(output, captions, located, writer.count, skipped)


def _write_samples(output: Path, samples: list[dict]) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(json.dumps(samples, indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(output)


# ---- from box-annotated images -------------------------------------------------------------

def read_boxes(path: Path) -> tuple[list[dict], dict[object, list[dict]]]:
    """COCO-style ``{"images": [{"id", "file_name", "caption"?}], "annotations": [{"image_id",
    "bbox": [x, y, w, h], "name"}]}`` -> images, and each image's named boxes."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MovieIdError(f"cannot read box annotations: {error}", path) from error
    if not isinstance(document, dict) or not isinstance(document.get("images"), list) \
            or not isinstance(document.get("annotations"), list):
        raise MovieIdError("expected a COCO-style object with 'images' and 'annotations' lists", path)
    images = {}
    for k, image in enumerate(document["images"]):
        if not isinstance(image, dict) or "id" not in image or not isinstance(image.get("file_name"), str):
            raise MovieIdError(f"images[{k}] needs 'id' and 'file_name'", path)
        images[image["id"]] = image
    boxes = defaultdict(list)
    for k, box in enumerate(document["annotations"]):
        bbox = box.get("bbox") if isinstance(box, dict) else None
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise MovieIdError(f"annotations[{k}] needs 'bbox': [x, y, width, height]", path)
        if box.get("image_id") not in images:
            raise MovieIdError(f"annotations[{k}] refers to image {box.get('image_id')!r}, not in 'images'", path)
        if isinstance(box.get("name"), str) and box["name"].strip():
            boxes[box["image_id"]].append(box)
    return list(images.values()), boxes


def from_boxes(boxes_json: Path, output: Path, images_root: Path | None = None, images_dir: Path | None = None,
               max_images: int = MAX_IMAGES, progress: bool | None = None) -> SamplesSummary:
    """Write stage-1 style ID-reference samples from box-annotated images to ``output``."""
    from .models.ida_vlm.prompt import grounding_query

    from .cast import name_problem
    from .models.ida_vlm.prompt import model_tags

    images, boxes = read_boxes(boxes_json)
    for k, box in enumerate(b for found in boxes.values() for b in found):
        problem = name_problem(box["name"].strip())
        if problem is not None:
            raise MovieIdError(f"annotation of image {box['image_id']!r}: {problem}", boxes_json)
    for image in images:
        tags = model_tags(image.get("caption") or "") if isinstance(image.get("caption"), str) else []
        if tags:
            raise MovieIdError(f"image {image['id']!r}: the caption holds {', '.join(tags)}, the model's own tags",
                               boxes_json)
    root = images_root or boxes_json.parent
    sightings = []
    for image in images:
        for box in boxes.get(image["id"], []):
            x, y, w, h = box["bbox"]
            sightings.append(Sighting(box["name"].strip(), image["file_name"], image["id"], (x, y, x + w, y + h)))
    crops = id_crops(sightings)
    writer = _Writer(images_dir or output.with_name(output.stem + "_images"), output.parent)
    crop_files: dict[Sighting, str] = {}
    samples, captions, located, skipped = [], 0, 0, 0
    for image in tqdm(images, desc="images", unit="image", leave=False, disable=True if progress is False else None):
        mine = [s for s in sightings if s.group == image["id"]]
        if not mine:
            skipped += 1
            continue
        path = root / image["file_name"]
        pixels = _read_rgb(path)
        height, width = pixels.shape[:2]
        for sighting in {crops[(s.name, image["id"])] for s in mine} - crop_files.keys():
            source = pixels if sighting.source == image["file_name"] else _read_rgb(root / sighting.source)
            left, top, right, bottom = crop_box(sighting.box, source.shape[1], source.shape[0])
            crop_files[sighting] = writer.save(_crop_name(sighting), source[top:bottom, left:right])
        picture = writer.relative(path.resolve())
        for k, sighting in enumerate(mine):
            id_image = crop_files[crops[(sighting.name, image["id"])]]
            query = fill_images(grounding_query(sighting.name), [id_image, picture])
            samples.append(conversation(f"{image['id']}:box{k}:{sighting.name}", query,
                                        grounding_answer(sighting.name, sighting.box, width, height)))
            located += 1
        caption = image.get("caption")
        if isinstance(caption, str) and caption.strip():
            names = list(dict.fromkeys(s.name for s in mine))[:max_images - 1]
            lines = "\n ".join(f"{n} is <img>{crop_files[crops[(n, image['id'])]]}</img>" for n in names)
            query = f"{lines}\n In the image: <img>{picture}</img>\n Give a description."
            samples.append(conversation(f"{image['id']}:caption", query, caption.strip()))
            captions += 1
    _write_samples(output, samples)
    return SamplesSummary(output, captions, located, writer.count, skipped)


def _read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except OSError as error:
        raise MovieIdError(f"cannot read image: {error}", path) from error

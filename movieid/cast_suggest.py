"""Cast suggestions: reference photos of the people a film shows but the cast does not know.

The film is annotated as usual (with the known cast, or none); every Unknown label that
recurs (in at least ``min_shots`` cuts) becomes a folder ``OUT/Unknown n/`` holding its best
face crops, and ``OUT/index.html`` is a contact sheet of them ordered by screen time.
Renaming a folder to the person's name makes it a cast member for the next ``annotate``.

Only the annotation document is read (labels, faces with their boxes and frames), and the
frames come from ``FrameReader``; how people were told apart is the pipeline's business.
Crops are ranked by size, sharpness (variance of the Laplacian) and frontality (how well
the face matches its mirror image), one per shot where possible. The face backend checks
each crop: exactly one usable face, the one in the middle (so the folder loads as a cast),
and like the label's most typical face (so a label that caught someone else now and then
still gives photos of one person).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MovieIdError, shell_command
from .faces import FaceBackend
from .progress import Progress, report
from .records import UNKNOWN_PREFIX, Film
from .video import FrameReader, format_time

log = logging.getLogger(__name__)

PRESELECT = 16            # largest faces of a person whose pixels are looked at
MARGINS = (0.6, 0.3)      # crop margin around the face box (fraction of its size), tried in order
MIN_CROP_FACE = 160       # crops are enlarged so the face is at least this many pixels
JPEG_QUALITY = 92
INDEX = "index.html"
PHOTO_NAME = re.compile(r"\d+-shot\d+-frame\d+\.jpg")  # the crops a suggestion writes (never a member's)


@dataclass(frozen=True)
class Suggestion:
    label: str                  # the Unknown label of the annotation ("Unknown 3")
    seconds: float              # screen time: the length of the shots it is in
    shots: int                  # shots (entries of the annotation) it is in
    first_seen: float
    folder: Path
    photos: tuple[Path, ...]


@dataclass(frozen=True)
class _Candidate:
    shot: int
    frame: int
    box: tuple[float, float, float, float]

    @property
    def size(self) -> float:
        x1, y1, x2, y2 = self.box
        return min(x2 - x1, y2 - y1)


def recurring_unknowns(doc: dict, min_shots: int = 2) -> tuple[list[tuple[str, float, int, float, list[_Candidate]]],
                                                                 list[str]]:
    """(label, screen seconds, shots, first seen, faces) of each Unknown label seen in at
    least ``min_shots`` cuts, most screen time first; and the labels seen in fewer cuts."""
    found: dict[str, dict] = {}
    for shot in doc["shots"]:
        for name in shot["names"]:
            if not name.startswith(UNKNOWN_PREFIX) or any(f["in_cast"] for f in shot["faces"] if f["name"] == name):
                continue
            entry = found.setdefault(name, {"seconds": 0.0, "shots": 0, "cuts": set(), "first": shot["start"],
                                            "faces": []})
            entry["seconds"] += shot["end"] - shot["start"]
            entry["shots"] += 1
            entry["cuts"].add(shot["cut"])
            entry["faces"] += [_Candidate(shot["index"], f["frame"], tuple(f["box"]))
                               for f in shot["faces"] if f["name"] == name]
    rows = [(label, e["seconds"], e["shots"], e["first"], e["faces"]) for label, e in found.items()
            if len(e["cuts"]) >= min_shots]
    rare = [label for label, e in found.items() if len(e["cuts"]) < min_shots]
    return sorted(rows, key=lambda r: (-r[1], r[3])), rare


def _crop(frame: np.ndarray, box, margin: float) -> np.ndarray:
    x1, y1, x2, y2 = box
    pad = margin * max(x2 - x1, y2 - y1)
    h, w = frame.shape[:2]
    return frame[int(max(0, y1 - pad)):int(min(h, y2 + pad)), int(max(0, x1 - pad)):int(min(w, x2 + pad))]


def _quality(face: np.ndarray) -> tuple[float, float]:
    """(sharpness, frontality) of a tight face crop, on a common 96 px scale."""
    import cv2

    grey = cv2.cvtColor(cv2.resize(face, (96, 96), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    sharpness = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    a = grey.astype(np.float64) - grey.mean()
    b = a[:, ::-1]
    frontality = float((a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + 1e-9))
    return sharpness, frontality


def _ranks(values: list[float]) -> np.ndarray:
    order = np.argsort(np.argsort(values))
    return order / max(1, len(values) - 1)


def rank_faces(faces: list[_Candidate], reader: FrameReader) -> list[tuple[_Candidate, np.ndarray]]:
    """A person's faces, best first: largest, sharpest and most frontal (mean of the three ranks)."""
    pool = sorted(faces, key=lambda c: -c.size)[:PRESELECT]
    frames = dict(zip(sorted({c.frame for c in pool}), reader.read(sorted({c.frame for c in pool}))))
    scored = []
    for c in pool:
        sharp, frontal = _quality(_crop(frames[c.frame], c.box, 0.0))
        scored.append((c, frames[c.frame], c.size, sharp, frontal))
    if not scored:
        return []
    score = sum(_ranks([s[i] for s in scored]) for i in (2, 3, 4)) / 3
    order = np.argsort(-score, kind="stable")
    return [(scored[i][0], scored[i][1]) for i in order]


def _reference_crop(frame: np.ndarray, candidate: _Candidate, backend: FaceBackend | None):
    """(crop, its face) showing exactly this one face, enlarged for detection; checked with
    ``backend`` (the one usable face it finds must be the one in the middle), or (None, None)."""
    import cv2

    from .cast import usable_faces

    for margin in MARGINS:
        crop = _crop(frame, candidate.box, margin)
        scale = max(1.0, MIN_CROP_FACE / max(candidate.size, 1.0))
        if scale > 1.0:
            crop = cv2.resize(crop, (round(crop.shape[1] * scale), round(crop.shape[0] * scale)),
                              interpolation=cv2.INTER_LANCZOS4)
        crop = np.ascontiguousarray(crop)
        if backend is None:
            return crop, None
        faces = usable_faces(backend.detect(crop))
        if len(faces) == 1:
            cx, cy = faces[0].box.center
            h, w = crop.shape[:2]
            if abs(cx - w / 2) < 0.25 * w and abs(cy - h / 2) < 0.25 * h:
                return crop, faces[0]
    return None, None


def pick_photos(faces: list[_Candidate], reader: FrameReader, backend: FaceBackend | None,
                count: int = 3) -> list[tuple[_Candidate, np.ndarray]]:
    """The best ``count`` usable crops of one person, from different shots where possible.

    With a backend, crops are embedded and only those that look like the label's most
    typical face (its medoid) are kept, so a label that caught a second person now and then
    still yields photos of one person.
    """
    usable = []
    for candidate, frame in rank_faces(faces, reader):
        crop, face = _reference_crop(frame, candidate, backend)
        if crop is not None:
            usable.append((candidate, crop, face))
    if backend is not None and usable:
        vectors = np.concatenate([backend.embed(crop, [face]) for _, crop, face in usable])
        sims = vectors @ vectors.T
        medoid = int(np.argmax(sims.mean(axis=1)))
        usable = [u for u, sim in zip(usable, sims[medoid]) if sim >= backend.match_threshold]
    chosen: list[tuple[_Candidate, np.ndarray]] = []
    for pass_ in (0, 1):
        for candidate, crop, _ in usable:
            if len(chosen) == count:
                return chosen
            if any(c is candidate for c, _ in chosen):
                continue
            if pass_ == 0 and any(c.shot == candidate.shot for c, _ in chosen):
                continue
            chosen.append((candidate, crop))
    return chosen


def check_targets(out: Path, labels: list[str], overwrite: bool) -> None:
    """Refuse to replace what exists without ``overwrite``, and with it, any folder holding files a
    suggestion did not write: a cast member's photos (a known cast given as the output) stay."""
    for target in [out / label for label in labels] + [out / INDEX]:
        if target.exists() and not overwrite:
            raise MovieIdError("output exists (pass --overwrite to replace it)", target)
        if target.is_dir() and any(not PHOTO_NAME.fullmatch(f.name) for f in target.iterdir()):
            raise MovieIdError("holds files that are not suggested photos (a cast member's?); "
                               "move it away to replace it", target)


def check_writable(out: Path) -> None:
    """Fail before the film is analysed, not after, when ``out`` cannot take the suggestions."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as exc:
        raise MovieIdError(f"cannot write the suggestions ({exc.strerror or exc})", out) from None


def next_step(film: Path, out: Path, known_cast: Path | None) -> tuple[str, str | None]:
    """The command that annotates the film with the renamed folders, and the folder they must
    first be moved into when they are not in the known cast's folder (the suggestions alone
    hold only the new people). Every path is quoted for a POSIX shell."""
    cast = out if known_cast is None else known_cast
    merge = None if known_cast is None or Path(known_cast).resolve() == out.resolve() else str(known_cast)
    return shell_command("movieid", "annotate", film, "--cast", cast), merge


def write_suggestions(doc: dict, film: Film, out: str | Path, backend: FaceBackend | None = None,
                      count: int = 3, min_shots: int = 2, overwrite: bool = False,
                      progress: Progress = None, known_cast: str | Path | None = None) -> list[Suggestion]:
    """Write ``OUT/<Unknown n>/`` folders and the ``OUT/index.html`` contact sheet.

    Everything is written into a temporary folder in ``out`` first and moved into place at
    the end, so a failure leaves no half-written suggestion behind.
    """
    from PIL import Image

    from .report import data_uri, render_page

    out = Path(out)
    people, rare = recurring_unknowns(doc, min_shots)
    check_targets(out, [p[0] for p in people], overwrite)
    if rare:
        log.warning("%s: %d %s seen in fewer than %d cuts not suggested (%s)", film.path, len(rare),
                    "person" if len(rare) == 1 else "people", min_shots, ", ".join(rare))
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".movieid-suggest-", dir=out))
    except OSError as exc:
        raise MovieIdError(f"cannot write the suggestions ({exc.strerror or exc})", out) from None
    suggestions: list[Suggestion] = []
    sheet = []
    try:
        with FrameReader(film) as reader:
            for done, (label, seconds, shots, first, faces) in enumerate(people, 1):
                picked = pick_photos(faces, reader, backend, count)
                report(progress, "suggest", done, len(people))
                if not picked:
                    log.warning("%s: no usable face crop of %s; not suggested", film.path, label)
                    continue
                folder = staging / label
                folder.mkdir()
                photos, thumbs = [], []
                for n, (c, crop) in enumerate(picked, 1):
                    name = f"{n}-shot{c.shot}-frame{c.frame}.jpg"
                    Image.fromarray(crop).save(folder / name, quality=JPEG_QUALITY)
                    photos.append(out / label / name)
                    small = Image.fromarray(crop)
                    small.thumbnail((180, 180))
                    thumbs.append({"src": data_uri(np.asarray(small)), "name": name,
                                   "where": f"shot {c.shot}, frame {c.frame}"})
                suggestions.append(Suggestion(label, seconds, shots, first, out / label, tuple(photos)))
                sheet.append({"label": label, "seconds": seconds, "shots": shots,
                              "first": format_time(first), "photos": thumbs})
        title = doc["film"].get("title") or Path(doc["film"]["path"]).name
        command, merge = next_step(Path(film.path), out, None if known_cast is None else Path(known_cast))
        (staging / INDEX).write_text(render_page("contact_sheet.html.j2", title=title, people=sheet,
                                                 cast=[m["name"] for m in doc["cast"]["members"]],
                                                 out=str(out), command=command, merge=merge, rare=rare,
                                                 min_shots=min_shots), encoding="utf-8")
        for item in sorted(staging.iterdir()):
            target = out / item.name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            os.replace(item, target)
    except OSError as exc:
        raise MovieIdError(f"cannot write the suggestions ({exc.strerror or exc})", out) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return suggestions


def suggest_cast(film: str | Path, out: str | Path, known_cast: str | Path | None = None, config=None,
                 count: int = 3, min_shots: int = 2, overwrite: bool = False,
                 progress: Progress = None) -> list[Suggestion]:
    """Annotate ``film`` (with ``known_cast``) and suggest the people it does not know."""
    from .annotation import document
    from .config import Config
    from .faces import load_backend
    from .pipeline import annotate
    from .video import probe

    config = config or Config()
    info = probe(film)
    check_targets(Path(out), [], overwrite)
    check_writable(Path(out))
    doc = document(annotate(info, known_cast, config, progress))
    backend = load_backend(config.faces.backend, config.faces.models)
    return write_suggestions(doc, info, out, backend, count, min_shots, overwrite, progress, known_cast)

"""The cast: who to look for, their reference photos, and those photos' face embeddings.

A cast folder holds one sub-folder per person, named after them (``cast/Rose Leslie/*.jpg``),
or loose photos named after the person (``cast/Rose_Leslie.jpg``); an optional ``cast.yaml``
or ``cast.json`` (see ``schema/cast.schema.json``) gives names, aliases and photo paths
explicitly. Each reference photo must show exactly one usable face. Embeddings are cached
on disk, keyed by the photo's content hash and the face model, so a cast is embedded once.

    discover(folder) -> [CastEntry]          the layout, no image opened
    check_photos(entries, backend) -> [PhotoCheck]   each photo's faces, or why it is unusable
    load_cast(folder, backend) -> Cast       the members with their embeddings
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .errors import MovieIdError, first_line, has_control_characters
from .faces.base import FaceBackend
from .files import check_input_file, default_cache_dir, sha256_file, write_file
from .models.errors import InputError
from .models.images import load_rgb
from .records import UNKNOWN_PREFIX, Box, Cast, CastMember, ReferencePhoto

log = logging.getLogger(__name__)

MANIFEST_NAMES = ("cast.yaml", "cast.yml", "cast.json")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# A face counts as "usable" when it is at least this big, absolutely and relative to the
# largest face in the photo: a tiny face in the background does not make a photo ambiguous.
MIN_REFERENCE_FACE_PX = 20
MIN_RELATIVE_FACE_SIZE = 0.25
# Detection on huge photos is slow and gains nothing: look at them at most this big.
MAX_REFERENCE_SIDE = 1600


@dataclass(frozen=True)
class CastEntry:
    """A cast member as the folder or manifest describes them, before any face analysis."""

    name: str
    aliases: tuple[str, ...]
    images: tuple[Path, ...]


@dataclass(frozen=True, eq=False)
class PhotoFace:
    """A face found in a reference photo, in the photo's (upright) pixels."""

    box: Box
    score: float
    embedding: np.ndarray = field(repr=False)


@dataclass(frozen=True, eq=False)
class PhotoCheck:
    """One reference photo looked at: its usable face, or the problem that makes it unusable."""

    name: str
    path: Path
    sha256: str | None
    faces: int                      # usable faces found
    face: PhotoFace | None          # the one usable face, when there is exactly one
    problem: str | None


def empty_cast(face_model: str = "") -> Cast:
    return Cast(root=None, members=(), face_model=face_model, key=cast_digest([], face_model))


def cast_digest(members: Iterable[tuple[str, Iterable[str], Iterable[str]]], face_model: str) -> str:
    """Identifies a cast's content across processes and runs: each member's name, aliases and
    photo hashes, in order, and the face model (caches of encoded ID images key on it)."""
    digest = hashlib.sha256(face_model.encode())
    for name, aliases, photo_hashes in members:
        digest.update(json.dumps([name, list(aliases), list(photo_hashes)]).encode())
    return digest.hexdigest()


def folder_digest(root: Path | None, face_model: str) -> str:
    """``cast_digest`` of a cast folder as it is on disk, without analysing a face (a batch
    redoes a film when its cast's names or photos change)."""
    if root is None:
        return "no-cast"
    try:
        entries = discover(root)
    except MovieIdError as exc:
        return f"invalid:{exc}"
    return cast_digest([(e.name, e.aliases, [_photo_digest(p) for p in e.images]) for e in entries], face_model)


def _photo_digest(path: Path) -> str:
    """A photo's content hash, or what stands for it when it cannot be read (the batch then
    reports the photo's problem for each film, and redoes them once it is fixed)."""
    try:
        check_input_file(path, "image file")
        return sha256_file(path)
    except (MovieIdError, OSError) as exc:
        return f"unreadable:{path}:{exc}"


# ----------------------------------------------------------------------------- discovery

def person_name(text: str) -> str:
    """A cast name as one string per person: trimmed and in Unicode NFC, so "Zoë" typed on
    one keyboard (NFC) and read from a macOS folder name (NFD) are the same person."""
    return unicodedata.normalize("NFC", text).strip()


# A stranger's label as a name would be confused with the film's strangers ("Unknown 2" is
# whoever the film shows second among the people not in the cast): it is reserved.
_STRANGER_LABEL = re.compile(rf"{UNKNOWN_PREFIX}\s*\d+", re.IGNORECASE)


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a cast name, or None. Names go verbatim into subtitles, WebVTT,
    CSV, timelines and model prompts: no control characters and no ``<`` or ``>`` (markup,
    a model's image tags such as ``<img>``, a cue's ``-->``); none named like a stranger's label."""
    if not name:
        return "an empty name"
    if has_control_characters(name):
        return f"the name '{name}' holds control characters"
    if "<" in name or ">" in name:
        return f"the name {name!r} holds '<' or '>' (a name cannot carry markup or a model's image tags)"
    if _STRANGER_LABEL.fullmatch(name):
        return (f"the name {name!r} is a stranger's label (Unknown n): rename the folder to the "
                "person's name")
    return None


def _name_from_file(path: Path) -> str:
    return person_name(path.stem.replace("_", " "))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.is_dir())


def _read_manifest(path: Path) -> dict:
    import yaml

    check_input_file(path, "cast manifest")   # a named pipe would block the read below
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise MovieIdError(f"cannot read cast manifest ({exc})", path) from None
    except json.JSONDecodeError as exc:
        raise MovieIdError(f"cast manifest is not valid JSON at line {exc.lineno}, column {exc.colno}: "
                           f"{exc.msg}", path) from None
    except yaml.YAMLError as exc:
        raise MovieIdError(f"cast manifest is not valid YAML{_yaml_where(exc)}: {_yaml_problem(exc)}",
                           path) from None
    if isinstance(data, list):
        data = {"members": data}
    _validate(data, "cast.schema.json", path)
    return data


def _yaml_where(exc) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"


def _yaml_problem(exc) -> str:
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    if problem:
        return f"{problem} ({context})" if context else problem
    return first_line(exc)


def _validate(data: object, schema_name: str, path: Path) -> None:
    import jsonschema

    schema = json.loads(resources.files("movieid.schema").joinpath(schema_name).read_text())
    err = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(data))
    if err is not None:
        where = "/".join(str(p) for p in err.path) or "top level"
        raise MovieIdError(f"invalid cast manifest at {where}: {err.message}", path)


def discover(root: str | Path) -> list[CastEntry]:
    """Read a cast folder's layout (and manifest) into entries; no images are opened."""
    root = Path(root)
    if not root.exists():
        raise MovieIdError("no such cast folder", root)
    if not root.is_dir():
        raise MovieIdError("is not a folder (a cast is a folder of per-person photo folders)", root)
    manifest = next((root / n for n in MANIFEST_NAMES if (root / n).exists() or (root / n).is_symlink()), None)
    entries: list[CastEntry] = []
    if manifest is not None:
        data = _read_manifest(manifest)
        for item in data["members"]:
            name = person_name(item["name"])
            if "images" in item:
                images = tuple(root / p for p in item["images"])
            else:
                folder = root / item.get("folder", name)
                images = tuple(_images_in(folder)) if folder.is_dir() else ()
                if not images:
                    raise MovieIdError(f"cast member {name!r} has no photos: list 'images' or "
                                       f"put photos in {folder}", manifest)
            for image in images:
                if not image.exists() and not image.is_symlink():   # a broken link: checked per photo
                    raise MovieIdError(f"photo listed for {name!r} does not exist", image)
            entries.append(CastEntry(name, tuple(person_name(a) for a in item.get("aliases", ())), images))
    else:
        for child in sorted(root.iterdir()):
            if child.name.startswith("."):
                continue
            if child.is_dir():
                images = _images_in(child)
                if images:
                    entries.append(CastEntry(person_name(child.name), (), tuple(images)))
                else:
                    log.warning("%s: no photos (.jpg, .jpeg, .png, .webp, .bmp) in this folder; skipped", child)
            elif child.suffix.lower() in IMAGE_SUFFIXES:
                entries.append(CastEntry(_name_from_file(child), (), (child,)))
    if not entries:
        raise MovieIdError("cast folder has no people: expected <cast>/<Name>/*.jpg "
                           "(or .png/.webp) or a cast.yaml", root)
    seen: dict[str, str] = {}
    for entry in entries:
        for name in (entry.name, *entry.aliases):
            problem = name_problem(name)
            if problem is not None:
                raise MovieIdError(problem, manifest or root / name)
        key = entry.name.casefold()
        if key in seen:
            raise MovieIdError(f"cast lists {entry.name!r} twice", root)
        seen[key] = entry.name
    return entries


# ----------------------------------------------------------------------------- embeddings

class EmbeddingCache:
    """Faces found in a photo, stored per (face model, photo content hash)."""

    def __init__(self, root: Path | None, face_model: str):
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in face_model)
        self.folder = None if root is None else Path(root) / "faces" / safe

    def _file(self, sha: str) -> Path | None:
        return None if self.folder is None else self.folder / f"{sha}.npz"

    def get(self, sha: str) -> list[PhotoFace] | None:
        path = self._file(sha)
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path) as data:
                return [PhotoFace(Box(*map(float, b)), float(s), e.astype(np.float32))
                        for b, s, e in zip(data["boxes"], data["scores"], data["embeddings"])]
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable cache entry %s (%s)", path, exc)
            return None

    def put(self, sha: str, faces: list[PhotoFace]) -> None:
        path = self._file(sha)
        if path is None:
            return
        buffer = io.BytesIO()
        np.savez(buffer, boxes=np.array([f.box.as_list(3) for f in faces], np.float32).reshape(-1, 4),
                 scores=np.array([f.score for f in faces], np.float32),
                 embeddings=np.stack([f.embedding for f in faces]) if faces else np.zeros((0, 0), np.float32))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_file(path, buffer.getvalue())
        except OSError as exc:
            log.warning("cannot write the embedding cache in %s (%s); continuing without it", path.parent, exc)


def photo_faces(path: Path, backend: FaceBackend, cache: EmbeddingCache) -> tuple[str, list[PhotoFace]]:
    """All faces in a photo, embedded, biggest first (from the cache when possible)."""
    check_input_file(path, "image file")   # a named pipe or an unreadable file: one line, nothing read
    sha = sha256_file(path)
    faces = cache.get(sha)
    if faces is None:
        image = load_rgb(path)
        scale = min(1.0, MAX_REFERENCE_SIDE / max(image.shape[:2]))
        if scale < 1.0:
            import cv2
            image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                               interpolation=cv2.INTER_AREA)
        found = backend.analyze(image)
        faces = [PhotoFace(f.box.scaled(1 / scale), f.score, f.embedding) for f in found]
        cache.put(sha, faces)
    return sha, sorted(faces, key=lambda f: -f.box.size)


def usable_faces(faces: list[PhotoFace]) -> list[PhotoFace]:
    if not faces:
        return []
    biggest = max(f.box.size for f in faces)
    floor = max(MIN_REFERENCE_FACE_PX, MIN_RELATIVE_FACE_SIZE * biggest)
    return [f for f in faces if f.box.size >= floor]


def photo_problem(faces: list[PhotoFace]) -> str | None:
    """Why a reference photo cannot be used, or None when it shows exactly one usable face."""
    usable = usable_faces(faces)
    if not usable:
        return "no face found in this reference photo (use a clear, frontal photo of one person)"
    if len(usable) > 1:
        return (f"{len(usable)} faces found in this reference photo; it must show exactly one "
                "person (crop it)")
    return None


def check_photos(entries: Iterable[CastEntry], backend: FaceBackend, cache_dir: Path | None = None,
                 on_photo: Callable[[Path], None] | None = None) -> list[PhotoCheck]:
    """Every photo of ``entries`` looked at (``movieid cast check`` prints these)."""
    cache = EmbeddingCache(default_cache_dir() if cache_dir is None else cache_dir, backend.model_id)
    checks = []
    for entry in entries:
        for path in entry.images:
            try:
                sha, faces = photo_faces(path, backend, cache)
                usable = usable_faces(faces)
                problem = photo_problem(faces)
                checks.append(PhotoCheck(entry.name, path, sha, len(usable), usable[0] if problem is None else None,
                                         problem))
            except InputError as exc:    # the photo cannot be read: its own line
                checks.append(PhotoCheck(entry.name, path, None, 0, None, exc.problem))
            finally:
                if on_photo is not None:
                    on_photo(path)
    return checks


def load_cast(root: str | Path, backend: FaceBackend, strict: bool = True, cache_dir: Path | None = None,
              on_photo: Callable[[Path], None] | None = None) -> Cast:
    """Discover a cast folder and embed every reference photo.

    ``strict``: a photo with no usable face or several faces is an error; otherwise it is
    skipped with a warning (and a member left with no photo is dropped).
    """
    root = Path(root)
    entries = discover(root)
    checks = check_photos(entries, backend, cache_dir, on_photo)
    members = []
    for entry in entries:
        photos = []
        for check in (c for c in checks if c.name == entry.name):
            if check.problem is not None:
                hint = " (or pass --no-cast-strict to skip it)" if check.sha256 is not None else ""
                if strict:
                    raise MovieIdError(check.problem + hint, check.path)
                log.warning("%s: %s; skipped", check.path, check.problem)
                continue
            photos.append(ReferencePhoto(check.path, check.sha256, check.face.box, check.face.embedding))
        if photos:
            members.append(CastMember(entry.name, entry.aliases, tuple(photos)))
        else:
            log.warning("cast member %r has no usable photo and is left out", entry.name)
    if not members:
        raise MovieIdError("no cast member has a usable reference photo", root)
    for check, problem in same_faces(checks):
        if strict:
            raise MovieIdError(problem, check.path)
        log.warning("%s: %s", check.path, problem)
    key = cast_digest([(m.name, m.aliases, [p.sha256 for p in m.photos]) for m in members], backend.model_id)
    return Cast(root=root, members=tuple(members), face_model=backend.model_id, key=key)


SAME_FACE = 0.99  # photos this alike are one picture (a copy, resized or re-encoded), not two


def same_faces(checks: list[PhotoCheck]) -> list[tuple[PhotoCheck, str]]:
    """Photos of one member that show the same face as another member's photo, with the problem:
    one picture under two names leaves neither nameable (each is the other's runner-up, at no
    margin). ``load_cast`` refuses them (a warning without strict), ``cast check`` lists them."""
    usable = [c for c in checks if c.face is not None]
    found = []
    for i, b in enumerate(usable):
        for a in usable[:i]:
            if a.name != b.name and float(a.face.embedding @ b.face.embedding) >= SAME_FACE:
                found.append((b, f"the same face as {a.name}'s photo {a.path.name} (one picture under "
                                 f"two names: neither can be named)"))
                break
    return found


def count_photos(entries: Iterable[CastEntry]) -> int:
    return sum(len(e.images) for e in entries)

"""The cast: who to look for, their reference photos, and those photos' face embeddings.

A cast folder holds one sub-folder per person, named after them (``cast/Rose Leslie/*.jpg``),
or loose photos named after the person (``cast/Rose_Leslie.jpg``); an optional ``cast.yaml``
or ``cast.json`` (see ``schema/cast.schema.json``) gives names, aliases and photo paths
explicitly. Each reference photo must show exactly one usable face. Embeddings are cached
on disk, keyed by the photo's content hash and the face model, so a cast is embedded once.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .errors import MovieIdError
from .faces.base import Box, Face, FaceBackend
from .images import IMAGE_SUFFIXES, load_rgb

log = logging.getLogger(__name__)

MANIFEST_NAMES = ("cast.yaml", "cast.yml", "cast.json")
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


@dataclass
class ReferencePhoto:
    path: Path
    sha256: str
    box: Box
    embedding: np.ndarray = field(repr=False)


@dataclass
class CastMember:
    name: str
    aliases: tuple[str, ...]
    photos: list[ReferencePhoto]

    @property
    def id_image(self) -> Path:
        """The photo shown to a vision-language model as this person's ID image."""
        return self.photos[0].path

    @property
    def embeddings(self) -> np.ndarray:
        return np.stack([p.embedding for p in self.photos])


@dataclass
class Cast:
    root: Path | None
    members: list[CastMember]
    face_model: str

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def __len__(self) -> int:
        return len(self.members)

    def member(self, name: str) -> CastMember:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(name)

    @property
    def key(self) -> str:
        """Identifies the cast's content (names, aliases, photos, face model) across processes."""
        digest = hashlib.sha256(self.face_model.encode())
        for m in self.members:
            digest.update(json.dumps([m.name, list(m.aliases), [p.sha256 for p in m.photos]]).encode())
        return digest.hexdigest()

    def similarities(self, embedding: np.ndarray) -> np.ndarray:
        """Cosine similarity of one face to each member (best over the member's photos)."""
        if not self.members:
            return np.zeros(0, np.float32)
        return np.array([float(np.max(m.embeddings @ embedding)) for m in self.members], np.float32)

    def metadata(self) -> dict:
        return {
            "root": None if self.root is None else str(self.root),
            "face_model": self.face_model,
            "members": [{"name": m.name, "aliases": list(m.aliases),
                         "photos": [{"path": str(p.path), "sha256": p.sha256, "box": p.box.as_list()}
                                    for p in m.photos]} for m in self.members],
        }


def empty_cast(face_model: str = "") -> Cast:
    return Cast(root=None, members=[], face_model=face_model)


# ----------------------------------------------------------------------------- discovery

def _name_from_file(path: Path) -> str:
    return path.stem.replace("_", " ").strip()


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def _read_manifest(path: Path) -> dict:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise MovieIdError(f"cannot read cast manifest ({exc})", path) from None
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise MovieIdError(f"cast manifest is not valid {path.suffix[1:].upper()} "
                           f"({str(exc).splitlines()[0]})", path) from None
    if isinstance(data, list):
        data = {"members": data}
    _validate(data, "cast.schema.json", path)
    return data


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
    manifest = next((root / n for n in MANIFEST_NAMES if (root / n).is_file()), None)
    entries: list[CastEntry] = []
    if manifest is not None:
        data = _read_manifest(manifest)
        for item in data["members"]:
            name = item["name"].strip()
            if "images" in item:
                images = tuple(root / p for p in item["images"])
            else:
                folder = root / item.get("folder", name)
                images = tuple(_images_in(folder)) if folder.is_dir() else ()
                if not images:
                    raise MovieIdError(f"cast member {name!r} has no photos: list 'images' or "
                                       f"put photos in {folder}", manifest)
            for image in images:
                if not image.exists():
                    raise MovieIdError(f"photo listed for {name!r} does not exist", image)
            entries.append(CastEntry(name, tuple(a.strip() for a in item.get("aliases", ())), images))
    else:
        for child in sorted(root.iterdir()):
            if child.name.startswith("."):
                continue
            if child.is_dir():
                images = _images_in(child)
                if images:
                    entries.append(CastEntry(child.name.strip(), (), tuple(images)))
                else:
                    log.warning("%s: no photos (.jpg, .jpeg, .png, .webp, .bmp) in this folder; skipped", child)
            elif child.suffix.lower() in IMAGE_SUFFIXES:
                entries.append(CastEntry(_name_from_file(child), (), (child,)))
    if not entries:
        raise MovieIdError("cast folder has no people: expected <cast>/<Name>/*.jpg "
                           "(or .png/.webp) or a cast.yaml", root)
    seen: dict[str, str] = {}
    for entry in entries:
        key = entry.name.casefold()
        if key in seen:
            raise MovieIdError(f"cast lists {entry.name!r} twice", root)
        seen[key] = entry.name
    return entries


# ----------------------------------------------------------------------------- embeddings

def default_cache_dir() -> Path:
    env = os.environ.get("MOVIEID_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "movieid"


class EmbeddingCache:
    """Faces found in a photo, stored per (face model, photo content hash)."""

    def __init__(self, root: Path | None, face_model: str):
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in face_model)
        self.folder = None if root is None else Path(root) / "faces" / safe

    def _file(self, sha: str) -> Path | None:
        return None if self.folder is None else self.folder / f"{sha}.npz"

    def get(self, sha: str) -> list[Face] | None:
        path = self._file(sha)
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path) as data:
                return [Face(box=Box(*map(float, b)), score=float(s), embedding=e.astype(np.float32))
                        for b, s, e in zip(data["boxes"], data["scores"], data["embeddings"])]
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable cache entry %s (%s)", path, exc)
            return None

    def put(self, sha: str, faces: list[Face]) -> None:
        path = self._file(sha)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, boxes=np.array([f.box.as_list(3) for f in faces], np.float32).reshape(-1, 4),
                         scores=np.array([f.score for f in faces], np.float32),
                         embeddings=np.stack([f.embedding for f in faces]) if faces
                         else np.zeros((0, 0), np.float32))
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot write the embedding cache in %s (%s); continuing without it", path.parent, exc)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def photo_faces(path: Path, backend: FaceBackend, cache: EmbeddingCache) -> tuple[str, list[Face]]:
    """All faces in a photo, embedded, biggest first (from the cache when possible)."""
    sha = file_sha256(path)
    faces = cache.get(sha)
    if faces is None:
        image = load_rgb(path)
        scale = min(1.0, MAX_REFERENCE_SIDE / max(image.shape[:2]))
        if scale < 1.0:
            import cv2
            small = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                               interpolation=cv2.INTER_AREA)
        else:
            small = image
        faces = backend.embed(small, backend.detect(small))
        for face in faces:
            face.box = face.box.scaled(1 / scale)
            face.landmarks = None
        cache.put(sha, faces)
    return sha, sorted(faces, key=lambda f: -f.box.size)


def usable_faces(faces: list[Face]) -> list[Face]:
    if not faces:
        return []
    biggest = max(f.box.size for f in faces)
    floor = max(MIN_REFERENCE_FACE_PX, MIN_RELATIVE_FACE_SIZE * biggest)
    return [f for f in faces if f.box.size >= floor]


def photo_problem(faces: list[Face]) -> str | None:
    """Why a reference photo cannot be used, or None when it shows exactly one usable face."""
    usable = usable_faces(faces)
    if not usable:
        return "no face found in this reference photo (use a clear, frontal photo of one person)"
    if len(usable) > 1:
        return (f"{len(usable)} faces found in this reference photo; it must show exactly one "
                "person (crop it)")
    return None


def load_cast(root: str | Path, backend: FaceBackend, strict: bool = True,
              cache_dir: Path | None = None, on_photo: Callable[[Path], None] | None = None) -> Cast:
    """Discover a cast folder and embed every reference photo.

    ``strict``: a photo with no usable face or several faces is an error; otherwise it is
    skipped with a warning (and a member left with no photo is dropped).
    """
    root = Path(root)
    entries = discover(root)
    cache = EmbeddingCache(default_cache_dir() if cache_dir is None else cache_dir, backend.model_id)
    members: list[CastMember] = []
    for entry in entries:
        photos = []
        for path in entry.images:
            problem = None
            try:
                sha, faces = photo_faces(path, backend, cache)
                problem = photo_problem(faces)
            except MovieIdError as exc:
                if strict:
                    raise
                log.warning("%s; skipped", exc)
                continue
            finally:
                if on_photo is not None:
                    on_photo(path)
            if problem is not None:
                if strict:
                    raise MovieIdError(problem + " (or pass --no-cast-strict to skip it)", path)
                log.warning("%s: %s; skipped", path, problem)
                continue
            face = usable_faces(faces)[0]
            photos.append(ReferencePhoto(path=path, sha256=sha, box=face.box, embedding=face.embedding))
        if photos:
            members.append(CastMember(entry.name, entry.aliases, photos))
        else:
            log.warning("cast member %r has no usable photo and is left out", entry.name)
    if not members:
        raise MovieIdError("no cast member has a usable reference photo", root)
    return Cast(root=root, members=members, face_model=backend.model_id)


def count_photos(entries: Iterable[CastEntry]) -> int:
    return sum(len(e.images) for e in entries)

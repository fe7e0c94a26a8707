"""The pipeline's result for one film, and its JSON form (schema: ``schema/annotation.schema.json``).

Times are presentation times in seconds on the film's timeline; frame numbers count
decoded frames from 0; a shot's ``end_frame`` is exclusive and ``end`` is the time its
last frame stops being shown, so consecutive shots tile the film without gaps.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

from . import __version__
from .cast import Cast
from .engines.base import Caption
from .errors import MovieIdError
from .identity import ShotFaces
from .video import Film, check_readable_file
from .windows import Window

SCHEMA_VERSION = "1.0"
SCHEMA_FILE = "annotation.schema.json"


@dataclass
class ShotAnnotation:
    faces: ShotFaces
    window: Window
    caption: Caption

    @property
    def shot(self):
        return self.faces.shot

    def to_json(self) -> dict:
        shot = self.shot
        faces = []
        people = []
        for number, person in enumerate(self.faces.people):
            people.append({"person": number, "name": person.display_name, "in_cast": person.name is not None,
                           "similarity": round(person.similarity, 4), "sightings": len(person.sightings)})
            for s in person.sightings:
                faces.append({"frame": s.frame, "time": round(s.time, 4), "box": s.box.as_list(),
                              "person": number, "name": person.display_name,
                              "in_cast": person.name is not None,
                              "similarity": round(s.similarity, 4),
                              "detection_score": round(s.score, 4)})
        faces.sort(key=lambda f: (f["frame"], f["box"][0]))
        return {
            "index": shot.index, "cut": shot.cut, "part": shot.part, "parts": shot.parts,
            "start": round(shot.start, 4), "end": round(shot.end, 4),
            "start_frame": shot.start_frame, "end_frame": shot.end_frame,
            "keyframes": [{"frame": k.frame, "time": round(k.time, 4)} for k in self.faces.keyframes],
            "window": [image.to_json() for image in self.window.images],
            "faces": faces,
            "people": people,
            "names": self.faces.names(),
            "caption": self.caption.text,
            "caption_names": list(self.caption.names),
        }


@dataclass
class FilmAnnotation:
    film: Film
    cast: Cast
    engine: dict
    settings: dict
    shots: list[ShotAnnotation]
    unknown_count: int = 0
    title: str | None = None     # from a batch manifest
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def to_json(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "movieid", "version": __version__},
            "created": self.created,
            "film": {**self.film.metadata(), "title": self.title},
            "engine": self.engine,
            "settings": self.settings,
            "cast": self.cast.metadata(),
            "unknown_count": self.unknown_count,
            "shots": [s.to_json() for s in self.shots],
        }


def load_schema() -> dict:
    return json.loads(resources.files("movieid.schema").joinpath(SCHEMA_FILE).read_text())


def validate(document: dict) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``document`` follows the schema."""
    import jsonschema

    jsonschema.Draft202012Validator(load_schema()).validate(document)


def read_annotation(path: str | Path) -> dict:
    """An annotation JSON file (e.g. one a person has edited), checked against the schema;
    any problem is one ``MovieIdError`` line naming the file and the place."""
    import jsonschema

    path = Path(path)
    check_readable_file(path, "annotation file")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise MovieIdError("is not a text file (an annotation is JSON)", path) from None
    except json.JSONDecodeError as exc:
        raise MovieIdError(f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})", path) from None
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(load_schema()).iter_errors(document))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "top level"
        message = error.message if len(error.message) <= 160 else error.message[:157] + "..."
        raise MovieIdError(f"does not follow the annotation schema at {where}: {message}", path)
    return document

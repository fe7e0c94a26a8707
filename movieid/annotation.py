"""The JSON form of the records (schema: ``schema/annotation.schema.json``), one function each.

Times are presentation times in seconds on the film's timeline; frame numbers count
decoded frames from 0; a shot's ``end_frame`` is exclusive and ``end`` is the time its
last frame stops being shown, so consecutive shots tile the film without gaps.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

from . import __version__
from .errors import MovieIdError
from .files import check_input_file
from .records import Cast, Film, FilmAnnotation, Shot, ShotAnnotation, WindowImage

SCHEMA_VERSION = "1.0"
SCHEMA_FILE = "annotation.schema.json"


def now() -> str:
    """UTC now, ISO 8601 to the second (``FilmAnnotation.created``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def film_json(film: Film) -> dict:
    """A film's facts (without per-frame timestamps)."""
    return {
        "path": str(film.path), "size_bytes": film.size_bytes, "container": film.container,
        "codec": film.codec, "width": film.width, "height": film.height,
        "rotation": film.rotation, "fps": round(film.fps, 6), "vfr": film.vfr,
        "frame_count": film.frame_count, "duration": round(film.duration, 6),
        "start_offset": round(film.start_offset, 6), "reader": film.reader,
    }


def cast_json(cast: Cast) -> dict:
    return {
        "root": None if cast.root is None else str(cast.root),
        "face_model": cast.face_model,
        "members": [{"name": m.name, "aliases": list(m.aliases),
                     "photos": [{"path": str(p.path), "sha256": p.sha256, "box": p.box.as_list()}
                                for p in m.photos]} for m in cast.members],
    }


def shot_json(shot: Shot) -> dict:
    """Where a shot is (``movieid shots --json`` lists these)."""
    return {"index": shot.index, "cut": shot.cut, "part": shot.part, "parts": shot.parts,
            "start": round(shot.start, 4), "end": round(shot.end, 4),
            "start_frame": shot.start_frame, "end_frame": shot.end_frame}


def window_image_json(image: WindowImage) -> dict:
    if image.role == "id":
        return {"role": "id", "name": image.name, "path": str(image.path)}
    return {"role": image.role, "frame": image.frame, "time": round(float(image.time or 0.0), 4)}


def shot_annotation_json(annotation: ShotAnnotation) -> dict:
    people, faces = [], []
    for number, person in enumerate(annotation.people.people):
        people.append({"person": number, "name": person.display_name, "in_cast": person.in_cast,
                       "similarity": round(person.similarity, 4), "sightings": len(person.track.faces),
                       "cluster": person.cluster, "cluster_frames": person.cluster_frames,
                       "margin": round(person.margin, 4), "confidence": round(person.confidence, 4)})
        for face, similarity in zip(person.track.faces, person.face_similarities):
            faces.append({"frame": face.frame, "time": round(face.time, 4), "box": face.box.as_list(),
                          "person": number, "name": person.display_name, "in_cast": person.in_cast,
                          "similarity": round(similarity, 4), "detection_score": round(face.score, 4)})
    faces.sort(key=lambda f: (f["frame"], f["box"][0]))
    doc = {
        **shot_json(annotation.shot),
        "keyframes": [{"frame": k.frame, "time": round(k.time, 4)} for k in annotation.people.keyframes],
        "window": [window_image_json(image) for image in annotation.window.images],
        "faces": faces,
        "people": people,
        "names": annotation.people.names(),
        "caption": annotation.caption.text,
        "caption_names": list(annotation.caption.names),
    }
    if annotation.caption.unverified_names is not None:
        doc["unverified_names"] = list(annotation.caption.unverified_names)
    return doc


def document(annotation: FilmAnnotation) -> dict:
    """The whole JSON document of a film's annotation (what every writer renders)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "movieid", "version": __version__},
        "created": annotation.created,
        "film": {**film_json(annotation.film), "title": annotation.title},
        "engine": annotation.engine,
        "settings": annotation.settings,
        "cast": cast_json(annotation.cast),
        "unknown_count": annotation.unknown_count,
        "shots": [shot_annotation_json(s) for s in annotation.shots],
    }


def load_schema() -> dict:
    return json.loads(resources.files("movieid.schema").joinpath(SCHEMA_FILE).read_text())


def validate(doc: dict) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``doc`` follows the schema."""
    import jsonschema

    jsonschema.Draft202012Validator(load_schema()).validate(doc)


def read_annotation(path: str | Path) -> dict:
    """An annotation JSON file (e.g. one a person has edited), checked against the schema; any
    problem is one ``MovieIdError`` line naming the file and the place."""
    import jsonschema

    path = Path(path)
    check_input_file(path, "annotation file")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"), parse_constant=_not_a_number)
    except UnicodeDecodeError:
        raise MovieIdError("is not a text file (an annotation is JSON)", path) from None
    except OSError as exc:
        raise MovieIdError(f"cannot read annotation ({exc.strerror or exc})", path) from None
    except json.JSONDecodeError as exc:
        raise MovieIdError(f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})", path) from None
    except ValueError as exc:   # NaN or Infinity, which JSON does not have
        raise MovieIdError(f"is not valid JSON ({exc})", path) from None
    except RecursionError:
        raise MovieIdError("is not an annotation (its JSON is nested too deeply)", path) from None
    try:
        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(load_schema()).iter_errors(doc))
    except RecursionError:
        raise MovieIdError("is not an annotation (its JSON is nested too deeply)", path) from None
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "top level"
        message = error.message if len(error.message) <= 160 else error.message[:157] + "..."
        raise MovieIdError(f"does not follow the annotation schema at {where}: {message}", path)
    _check_film_ranges(doc, path)
    return doc


def _not_a_number(word: str):
    raise ValueError(f"{word} is not a JSON number")


def _check_film_ranges(doc: dict, path: Path) -> None:
    """Times and frames must be the film's: an edited 1e308 or frame 1e9 would ask the review
    page for thumbnails and timelines of no film."""
    film = doc["film"]
    frames, end = film["frame_count"], film["duration"] + film.get("start_offset", 0.0) + 1.0
    if not (0 <= film["duration"] <= 1e7 and 0 <= frames <= 1e9):
        raise MovieIdError(f"film: a duration of {film['duration']} s and {frames} frames are not a film's", path)
    for shot in doc["shots"]:
        where = f"shots/{shot['index']}"
        if not (0 <= shot["start"] <= shot["end"] <= end):
            raise MovieIdError(f"{where}: times {shot['start']}..{shot['end']} s are outside the film "
                               f"({film['duration']} s)", path)
        for item in [*shot["keyframes"], *shot["faces"]]:
            if not 0 <= item["frame"] < max(frames, 1):
                raise MovieIdError(f"{where}: frame {item['frame']} is not in the film ({frames} frames)", path)

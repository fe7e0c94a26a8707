"""The review page of one annotation: why each name was given, shot by shot.

Per shot: its time range, keyframe thumbnails with the face boxes drawn and labelled (name
or Unknown n, similarity), the caption, the window of images the engine saw and, with an
audio description, where its line went. Above: the film's facts, the engine and settings,
the cast, and a timeline with one row per person. Where the film file can be read its
keyframes are embedded as thumbnails and a ``<video>`` plays it with the caption track.
"""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from urllib.parse import quote

import numpy as np

from ..errors import MovieIdError
from ..progress import Progress, report
from ..records import Film
from ..subtitles import TrackStyle, render_vtt
from ..video import FrameReader, format_time, probe
from .pages import data_uri, render_page

log = logging.getLogger(__name__)

THUMB_SIDE = 360          # longest side of keyframe thumbnails, pixels
ID_SIDE = 96              # ID photo thumbnails
READ_BATCH = 48           # frames decoded at a time (bounded memory on long films)
def person_hues(count: int) -> list[int]:
    """``count`` hues as far apart as they can be (360 / count degrees at least), taken in a stride
    through the circle so that neighbours in the list are far apart too (a golden-angle walk put the
    2nd and the 7th person both in green, 32 degrees apart)."""
    if count <= 0:
        return []
    stride = min((s for s in range(1, count + 1) if math.gcd(s, count) == 1),
                 key=lambda s: abs(s - 0.382 * count))
    return [round((i * stride % count) * 360 / count) for i in range(count)]


def find_film(doc: dict, *folders: str | Path | None) -> Path | None:
    """The annotated film: at the path the JSON records (a relative one is relative to where
    annotate ran, or to each of ``folders``), else by its name in one of ``folders`` (the page's,
    the JSON's)."""
    recorded = Path(doc["film"]["path"])
    places = [Path(f) for f in folders if f is not None]
    candidates = [recorded, *(p / recorded for p in places if not recorded.is_absolute()),
                  *(p / recorded.name for p in places)]
    return next((c for c in candidates if c.is_file()), None)


def _open_film(doc: dict, film: Path | None, explicit: bool) -> tuple[Film | None, str | None]:
    """The film to take thumbnails from, or why there are none (an error if the caller named it)."""
    if film is None:
        return None, "the film file was not found: no thumbnails"
    try:
        info = probe(film)
        if info.frame_count != doc["film"]["frame_count"]:
            raise MovieIdError(f"has {info.frame_count} frames, the annotation {doc['film']['frame_count']} "
                               "(not the film that was annotated)", film)
    except MovieIdError as exc:
        if explicit:
            raise
        return None, f"{exc}: no thumbnails"
    return info, None


def _thumbnails(film: Film, frames: list[int], progress: Progress) -> dict[int, str]:
    out: dict[int, str] = {}
    with FrameReader(film, max_side=THUMB_SIDE) as reader:
        for i in range(0, len(frames), READ_BATCH):
            batch = frames[i:i + READ_BATCH]
            for frame, pixels in zip(batch, reader.read(batch)):
                out[frame] = data_uri(pixels)
            report(progress, "thumbnails", len(out), len(frames))
    return out


def _may_embed(path: Path, photos: bool | Path | None) -> bool:
    """Whether the page may embed the picture at ``path``: any the run itself used (``True``),
    none of a JSON from elsewhere (``None``: it may name any picture on this disk, and the page
    would carry it away), or those under the folder the user names (links followed first)."""
    if photos is True:
        return True
    if photos is None or photos is False:
        return False
    root = Path(photos).resolve()
    return path.resolve().is_relative_to(root)


def _id_photo(photo: dict, photos: bool | Path | None = True) -> str | None:
    """A cast member's ID photo cropped around its face, or None if the file is gone or not
    one the page may embed."""
    from PIL import Image

    from ..models.errors import InputError
    from ..models.images import load_rgb

    if not _may_embed(Path(photo["path"]), photos):
        return None
    try:
        image = load_rgb(Path(photo["path"]))
    except InputError:
        return None
    x1, y1, x2, y2 = photo["box"]
    pad = 0.35 * max(x2 - x1, y2 - y1)
    h, w = image.shape[:2]
    crop = image[int(max(0, y1 - pad)):int(min(h, y2 + pad)), int(max(0, x1 - pad)):int(min(w, x2 + pad))]
    small = Image.fromarray(crop if crop.size else image)
    small.thumbnail((ID_SIDE, ID_SIDE))
    return data_uri(np.asarray(small))


def _flatten(data, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(data, dict) and data:
        rows = []
        for key, value in data.items():
            rows += _flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return rows
    return [(prefix, data if isinstance(data, str) else json.dumps(data))]


def _people(doc: dict) -> list[dict]:
    """Timeline rows: every cast member (in cast order), then the Unknown labels by number."""
    names = [m["name"] for m in doc["cast"]["members"]]
    seen = {n for s in doc["shots"] for n in s["names"]}
    unknown = sorted((n for n in seen if n not in names),
                     key=lambda n: (int(n.split()[-1]) if n.split()[-1].isdigit() else 10**9, n))
    t0 = doc["shots"][0]["start"] if doc["shots"] else 0.0
    t1 = doc["shots"][-1]["end"] if doc["shots"] else 1.0
    span = max(t1 - t0, 1e-6)
    rows = []
    hues = person_hues(len(names) + len(unknown))
    for i, name in enumerate(names + unknown):
        bars = [{"shot": s["index"], "left": 100 * (s["start"] - t0) / span,
                 "width": 100 * (s["end"] - s["start"]) / span,
                 "title": f"{name}: shot {s['index']}, {format_time(s['start'])} - {format_time(s['end'])}"}
                for s in doc["shots"] if name in s["names"]]
        seconds = sum(s["end"] - s["start"] for s in doc["shots"] if name in s["names"])
        rows.append({"name": name, "in_cast": name in names, "hue": hues[i],
                     "bars": bars, "shots": len(bars), "seconds": seconds})
    return rows


def _ticks(doc: dict, count: int = 6) -> list[dict]:
    """Time labels along the timeline, at round numbers of seconds."""
    if not doc["shots"]:
        return []
    t0, t1 = doc["shots"][0]["start"], doc["shots"][-1]["end"]
    span = max(t1 - t0, 1e-6)
    step = next((s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600) if span / s <= count), 7200)
    first = -(-t0 // step) * step
    return [{"left": 100 * (t - t0) / span, "label": format_time(t)[:8].removeprefix("00:")}
            for t in np.arange(first, t1 + 1e-9, step)]


def _shot_view(shot: dict, thumbs: dict[int, str], hues: dict[str, int]) -> dict:
    faces_by_frame: dict[int, list[dict]] = {}
    for f in shot["faces"]:
        faces_by_frame.setdefault(f["frame"], []).append(f)
    keyframes = [{"frame": k["frame"], "time": format_time(k["time"]), "thumb": thumbs.get(k["frame"]),
                  "faces": [{**f, "hue": hues.get(f["name"], 0)} for f in faces_by_frame.get(k["frame"], [])]}
                 for k in shot["keyframes"]]
    names = list(dict.fromkeys([*shot["names"], *shot["caption_names"]]))
    return {**shot, "start_text": format_time(shot["start"]), "end_text": format_time(shot["end"]),
            "seconds": shot["end"] - shot["start"], "views": keyframes, "filter_names": names,
            "chips": [{"name": n, "hue": hues.get(n, 0)} for n in shot["names"]]}


def render_html(doc: dict, film: str | Path | None = None, base: str | Path | None = None,
                style: TrackStyle = TrackStyle(), progress: Progress = None, photos: bool | Path | None = True,
                source: str | Path | None = None) -> str:
    """The review page of an annotation document.

    ``film``: the annotated film (default: the path the document records, where it exists);
    its keyframes become thumbnails and the page plays it. ``base``: the folder the page is
    written to, so the page refers to the film by a relative path (default: an absolute
    file URL). ``photos``: which cast photos may be embedded (see ``_may_embed``). ``source``:
    the JSON the document was read from.
    """
    explicit = film is not None
    folders = (base, None if source is None else Path(source).parent)
    info, note = _open_film(doc, Path(film) if explicit else find_film(doc, *folders), explicit)
    frames = sorted({k["frame"] for s in doc["shots"] for k in s["keyframes"]})
    thumbs = _thumbnails(info, frames, progress) if info is not None and frames else {}
    people = _people(doc)
    hues = {p["name"]: p["hue"] for p in people}
    video = None
    if info is not None:
        path = info.path.resolve()
        src = quote(Path(os.path.relpath(path, Path(base).resolve())).as_posix()) if base is not None \
            else path.as_uri()
        video = {"src": src, "captions": "data:text/vtt;charset=utf-8," + quote(render_vtt(doc, style)),
                 "descriptions": None}
        if "audio_description" in doc:
            from ..describe import render_ad_vtt

            video["descriptions"] = "data:text/vtt;charset=utf-8," + quote(render_ad_vtt(doc, style))
    members = [{"name": m["name"], "aliases": m["aliases"], "photos": len(m["photos"]),
                "thumb": _id_photo(m["photos"][0], photos), "hue": hues.get(m["name"], 0)}
               for m in doc["cast"]["members"]]
    film_meta = doc["film"]
    title = film_meta.get("title") or Path(film_meta["path"]).name
    script_data = {"shots": [{"index": s["index"], "start": s["start"], "end": s["end"]} for s in doc["shots"]]}
    return render_page(
        "review.html.j2", doc=doc, title=title, film=film_meta, duration=format_time(film_meta["duration"]),
        engine=_flatten(doc["engine"]), settings=_flatten(doc["settings"]), members=members, people=people,
        shots=[_shot_view(s, thumbs, hues) for s in doc["shots"]], video=video, note=note,
        member_index={m["name"]: i for i, m in enumerate(doc["cast"]["members"])}, ticks=_ticks(doc),
        ad=doc.get("audio_description"), width=film_meta["width"], height=film_meta["height"],
        script_data=script_data)

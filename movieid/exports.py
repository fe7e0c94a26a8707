"""Exports for editors and data people, each a function of the annotation document.

* CSV: one row per shot (index, start, end, start_frame, end_frame, names, caption), the
  shape training-free audio-description pipelines read; ``names`` is a JSON list (a name may
  hold any separator), and a cell a spreadsheet would run as a formula starts with a quote.
* OpenTimelineIO: the film as one clip on a video track, one marker per shot (the names in
  the marker's name, the caption in its comment, the shot in its metadata), coloured by
  the shot's main person; OTIO's adapters turn it into an NLE's own format.
"""
from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

CSV_COLUMNS = ("index", "start", "end", "start_frame", "end_frame", "names", "caption")
# What a spreadsheet takes for the start of a formula (OWASP's "CSV Injection" list): such a
# cell gets a leading single quote, which spreadsheets show as text and do not evaluate.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Marker colours for people in order of screen time; BLACK marks shots with nobody.
PERSON_COLOURS = ("RED", "GREEN", "BLUE", "YELLOW", "CYAN", "MAGENTA", "ORANGE", "PURPLE", "PINK", "WHITE")
NOBODY_COLOUR = "BLACK"


def spreadsheet_text(cell: str) -> str:
    """``cell`` as a spreadsheet shows it and never runs it (OWASP's CSV injection advice)."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def render_csv(doc: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)  # a CR in a cell stays in it
    writer.writerow(CSV_COLUMNS)
    for s in doc["shots"]:
        names = json.dumps(s["names"], ensure_ascii=False)
        writer.writerow([s["index"], f"{s['start']:.3f}", f"{s['end']:.3f}", s["start_frame"], s["end_frame"],
                         spreadsheet_text(names), spreadsheet_text(s["caption"])])
    return out.getvalue()


def main_person(shot: dict) -> str | None:
    """The person the shot is most about: seen in most keyframes, then the biggest face."""
    if not shot["people"]:
        return None
    size: Counter = Counter()
    for f in shot["faces"]:
        x1, y1, x2, y2 = f["box"]
        size[f["person"]] += (x2 - x1) * (y2 - y1)
    best = max(shot["people"], key=lambda p: (p["sightings"], size[p["person"]]))
    return best["name"]


def screen_time(doc: dict) -> Counter:
    """Seconds each name is on screen (the length of the shots it is in)."""
    seconds: Counter = Counter()
    for s in doc["shots"]:
        for name in s["names"]:
            seconds[name] += s["end"] - s["start"]
    return seconds


def person_colours(doc: dict) -> dict[str, str]:
    """A marker colour per person, in order of screen time (cycling after ten people)."""
    ranked = [name for name, _ in sorted(screen_time(doc).items(), key=lambda kv: (-kv[1], kv[0]))]
    return {name: PERSON_COLOURS[i % len(PERSON_COLOURS)] for i, name in enumerate(ranked)}


def _rate(fps: float) -> float:
    import opentimelineio as otio

    rate = otio.opentime.RationalTime.nearest_valid_timecode_rate(fps)
    return rate if abs(rate - fps) < 0.01 else fps


def render_otio(doc: dict) -> str:
    import opentimelineio as otio

    film = doc["film"]
    rate = _rate(film["fps"])
    t = otio.opentime
    span = t.TimeRange(t.RationalTime(0, rate), t.from_seconds(film["duration"] + film["start_offset"], rate))
    path = Path(film["path"])
    colours = person_colours(doc)
    clip = otio.schema.Clip(
        name=path.name,
        # an RFC 8089 file URL, percent-encoded (OTIO's url_from_filepath leaves "%20" in a name
        # as it is, which reads back as a space)
        media_reference=otio.schema.ExternalReference(target_url=path.resolve().as_uri(), available_range=span),
        source_range=span)
    for s in doc["shots"]:
        main = main_person(s)
        clip.markers.append(otio.schema.Marker(
            name=", ".join(s["names"]) or "(no one)",
            marked_range=t.TimeRange(t.from_seconds(s["start"], rate), t.from_seconds(s["end"] - s["start"], rate)),
            color=colours[main] if main else NOBODY_COLOUR,
            comment=s["caption"],
            metadata={"movieid": {"shot": s["index"], "names": s["names"], "main_person": main,
                                  "caption": s["caption"], "start_frame": s["start_frame"],
                                  "end_frame": s["end_frame"]}}))
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video, children=[clip])
    timeline = otio.schema.Timeline(name=film.get("title") or path.stem, tracks=[track],
                                    global_start_time=t.RationalTime(0, rate),
                                    metadata={"movieid": {"tool": doc["tool"], "colours": colours,
                                                          "nobody_colour": NOBODY_COLOUR}})
    return otio.adapters.write_to_string(timeline, "otio_json") + "\n"

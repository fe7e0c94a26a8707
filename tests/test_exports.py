"""CSV and OpenTimelineIO exports, read back with the csv module and OTIO's own adapter."""
from __future__ import annotations

import csv
import io
import json

import pytest

from movieid.exports import main_person, person_colours, render_csv, render_otio


def test_csv_has_one_row_per_shot(sample_doc):
    rows = list(csv.DictReader(io.StringIO(render_csv(sample_doc))))
    assert list(rows[0]) == ["index", "start", "end", "start_frame", "end_frame", "names", "caption"]
    assert len(rows) == len(sample_doc["shots"])
    for row, shot in zip(rows, sample_doc["shots"]):
        assert int(row["index"]) == shot["index"]
        assert float(row["start"]) == pytest.approx(shot["start"], abs=1e-3)
        assert float(row["end"]) == pytest.approx(shot["end"], abs=1e-3)
        assert (int(row["start_frame"]), int(row["end_frame"])) == (shot["start_frame"], shot["end_frame"])
        assert json.loads(row["names"]) == shot["names"]                # a JSON list
        assert row["caption"] == shot["caption"]      # commas and quotes survive the round trip


def test_otio_timeline_has_a_marker_per_shot(sample_doc):
    otio = pytest.importorskip("opentimelineio")
    timeline = otio.adapters.read_from_string(render_otio(sample_doc), "otio_json")
    film = sample_doc["film"]
    assert timeline.name == "sample"
    assert timeline.duration().to_seconds() == pytest.approx(film["duration"], abs=1e-3)
    (track,) = timeline.video_tracks()
    (clip,) = track.find_clips()
    assert clip.media_reference.target_url.endswith("sample.mp4")
    assert clip.duration().rate == film["fps"] == 25
    markers = list(clip.markers)
    assert len(markers) == len(sample_doc["shots"])
    colours = person_colours(sample_doc)
    for marker, shot in zip(markers, sample_doc["shots"]):
        assert marker.marked_range.start_time.to_seconds() == pytest.approx(shot["start"], abs=1e-3)
        assert marker.marked_range.start_time.value == pytest.approx(shot["start_frame"])
        assert marker.marked_range.end_time_exclusive().to_seconds() == pytest.approx(shot["end"], abs=1e-3)
        assert marker.comment == shot["caption"]
        assert marker.name == (", ".join(shot["names"]) or "(no one)")
        main = main_person(shot)
        assert marker.color == (colours[main] if main else "BLACK")
        assert list(marker.metadata["movieid"]["names"]) == shot["names"]


def test_the_main_person_has_the_most_sightings_then_the_biggest_face(sample_doc):
    two = next(s for s in sample_doc["shots"] if set(s["names"]) == {"Ross", "Chandler"})
    sizes = {}
    for f in two["faces"]:
        sizes[f["name"]] = sizes.get(f["name"], 0) + (f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1])
    sightings = {p["name"]: p["sightings"] for p in two["people"]}
    expected = max(sightings, key=lambda n: (sightings[n], sizes[n]))
    assert main_person(two) == expected
    colours = person_colours(sample_doc)
    assert len(set(colours.values())) == len(colours)          # fewer than eleven people: all distinct
    assert next(iter(colours)) in ("Chandler", "Ross", "Joey", "Unknown 1")   # most screen time first


def test_an_editor_gets_the_markers_in_an_edl(sample_doc):
    """Through OTIO's CMX 3600 adapter (another project's code): one LOC per shot, at the
    shot's timecode, in the marker's colour."""
    otio = pytest.importorskip("opentimelineio")
    if "cmx_3600" not in otio.adapters.available_adapter_names():
        pytest.skip("the CMX 3600 adapter is not installed (pip install otio-cmx3600-adapter)")
    timeline = otio.adapters.read_from_string(render_otio(sample_doc), "otio_json")
    edl = otio.adapters.write_to_string(timeline, "cmx_3600")
    locs = [line.split(None, 4)[2:] for line in edl.splitlines() if line.startswith("* LOC:")]
    assert len(locs) == len(sample_doc["shots"])
    colours = person_colours(sample_doc)
    for (timecode, colour, *name), shot in zip(locs, sample_doc["shots"]):
        assert otio.opentime.from_timecode(timecode, 25).to_seconds() == pytest.approx(shot["start"], abs=0.02)
        main = main_person(shot)
        assert colour == (colours[main] if main else "BLACK")
        assert name[0] == (", ".join(shot["names"]) or "(no one)").upper()

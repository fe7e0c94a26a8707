"""Grounding: answers on the 0..1000 scale to pixel boxes, and the MM-ID location request."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from movieid.models.ida_vlm import Box, Generation, grounding_query, parse_boxes
from movieid.models.ida_vlm.grounding import box_for
from tests.helpers.tiny_ida_vlm import make_request


def test_parses_a_named_box_into_pixels():
    boxes = parse_boxes("<ref>Ben Milo</ref><box>(383,50),(555,231)</box>", width=1000, height=500)
    assert boxes == [Box("Ben Milo", 383.0, 25.0, 555.0, 115.5)]


def test_several_refs_and_boxes():
    text = ("<ref>Alice</ref><box>(0,0),(500,500)</box><box>(500,500),(1000,1000)</box> and "
            "<ref> Bob </ref><box>( 100 , 200 ),( 300 , 400 )</box> then <box>(1,2),(3,4)</box>")
    boxes = parse_boxes(text, width=200, height=100)
    assert [b.name for b in boxes] == ["Alice", "Alice", "Bob", "Bob"]
    assert boxes[1] == Box("Alice", 100.0, 50.0, 200.0, 100.0)
    assert boxes[2] == Box("Bob", 20.0, 20.0, 60.0, 40.0)


def test_box_without_ref_and_no_box():
    assert parse_boxes("<box>(10,20),(30,40)</box>", 1000, 1000) == [Box(None, 10.0, 20.0, 30.0, 40.0)]
    assert parse_boxes("Alice is not in the image.", 640, 480) == []
    assert parse_boxes("<box>(10,20)</box>", 640, 480) == []


def test_box_for_prefers_the_named_box():
    boxes = [Box("Bob", 0, 0, 1, 1), Box("alice", 2, 2, 3, 3)]
    assert box_for(boxes, "Alice ") == boxes[1]
    assert box_for(boxes, "Carol") == boxes[0]
    assert box_for([], "Carol") is None


def test_locate_asks_the_mmid_question_and_scales_to_the_image(base_model, frames, monkeypatch):
    seen = []

    def fake_generate(requests, max_new_tokens):
        seen.extend(requests)
        return [Generation("<ref>Alice</ref><box>(250,500),(750,1000)</box>", [], "stop")]
    monkeypatch.setattr(base_model, "generate", fake_generate)
    box = base_model.locate("Alice", frames[1], frames[0])  # frames[0] is 128 x 72
    (request,) = seen
    assert request.query == grounding_query("Alice") and request.roles == ("id", "test")
    assert request.images[0].image is frames[1] and np.array_equal(request.images[1].image, frames[0])
    assert box == Box("Alice", 32.0, 36.0, 96.0, 72.0)


def test_locate_scales_to_the_upright_image(base_model, frames, monkeypatch, tmp_path):
    """A phone photo stored sideways (EXIF orientation 6): the box is in the pixels as shown."""
    path = tmp_path / "sideways.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(frames[0]).save(path, exif=exif)  # stored 128 x 72, shown 72 x 128
    monkeypatch.setattr(base_model, "generate", lambda requests, max_new_tokens: [
        Generation("<ref>Alice</ref><box>(0,0),(500,1000)</box>", [], "stop")])
    assert base_model.locate("Alice", frames[1], path) == Box("Alice", 0.0, 0.0, 36.0, 128.0)


def test_locate_runs_end_to_end(base_model, frames):
    """A random tiny model writes no box: locate gives None (its answer has no <box>)."""
    (answer,) = base_model.generate([make_request(grounding_query("Alice"), frames[1::-1], ["id", "test"])],
                                    max_new_tokens=4)
    box = base_model.locate("Alice", frames[1], frames[0], max_new_tokens=4)
    assert "<box>" not in answer.text and box is None


@pytest.mark.parametrize("text", ["<ref>Alice</ref>", "<box>(a,b),(c,d)</box>"])
def test_malformed_answers_give_no_box(text):
    assert parse_boxes(text, 100, 100) == []

"""The whole pipeline wired to the insightface backend: a tiny pack in the published layout,
picked by ``--face-backend auto`` because it is there, on a real film of coloured squares.

The pack is a fake made for wiring only: its "detector" boxes bright 96 px squares and its
"recogniser" maps colours to vectors. It checks that frames, boxes and embeddings flow
through insightface's own model classes into the JSON; nothing here says anything about how
well real insightface models recognise people, so nothing is asserted about identity."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from movieid.filmmaker import FilmSpec, ShotSpec, make_film

from .conftest import run_cli

pytest.importorskip("insightface", reason="insightface is not installed")
RED, BLUE, GREEN = (255, 30, 30), (30, 60, 255), (40, 255, 40)


def _picture(path, size, squares, background=(25, 25, 25)):
    """A dark picture with 96x96 squares of colour centred on multiples of 32 pixels."""
    image = np.full((size[1], size[0], 3), background, np.uint8)
    for (cx, cy), colour in squares:
        image[cy - 48:cy + 48, cx - 48:cx + 48] = colour
    Image.fromarray(image).save(path)
    return path


@pytest.fixture(scope="module")
def colour_film(films, tmp_path_factory):
    from tests.helpers.tiny_insightface import build_tiny_pack

    root = tmp_path_factory.mktemp("colours")
    pack = build_tiny_pack(root / "pack" / "buffalo_l")
    cast = root / "cast"
    for name, colour in (("Red", RED), ("Blue", BLUE)):
        (cast / name).mkdir(parents=True)
        _picture(cast / name / "photo.png", (640, 640), [((320, 320), colour)])
    shots = [
        # different backgrounds, so every change of picture is a cut the shot detector sees
        ShotSpec(_picture(root / "a.png", (640, 360), [((160, 192), RED)], (25, 25, 25)), 25),
        ShotSpec(_picture(root / "b.png", (640, 360), [((160, 192), BLUE), ((480, 160), RED)], (110, 90, 60)), 25),
        ShotSpec(_picture(root / "c.png", (640, 360), [((320, 192), GREEN)], (30, 60, 100)), 25),
        ShotSpec(_picture(root / "d.png", (640, 360), [((480, 192), GREEN), ((160, 160), BLUE)], (90, 30, 70)), 25),
    ]
    film = make_film(FilmSpec(shots, width=640, height=360, crf=12), films / "colours.mp4")
    return film, cast, pack


def test_auto_uses_the_insightface_pack_end_to_end(colour_film, tmp_path):
    film, cast, pack = colour_film
    env = {**os.environ, "MOVIEID_CACHE_DIR": str(tmp_path / "cache")}
    proc = run_cli("annotate", film, "--cast", cast, "--face-models", pack, "-o", tmp_path, "-q", env=env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "colours.json").read_text())
    assert doc["settings"]["face_backend_used"] == "insightface"
    assert doc["cast"]["face_model"].startswith("insightface-buffalo_l-")
    assert [len({f["box"][0] for f in s["faces"]}) for s in doc["shots"]] == [1, 2, 1, 2]   # one per square
    box = doc["shots"][0]["faces"][0]["box"]
    assert box == pytest.approx([112, 144, 208, 240], abs=2)

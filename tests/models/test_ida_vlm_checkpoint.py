"""The published checkpoint on the authors' own example (their README): switched on by
MOVIEID_IDA_VLM_CHECKPOINT naming a checkpoint folder (``weights/model-base``, or a repo root
holding it; MOVIEID_IDA_VLM_VARIANT=idf for ``weights/model-idf``). Run on a GPU:

    MOVIEID_IDA_VLM_CHECKPOINT=/models/IDA-VLM python -m pytest -q tests/models/test_ida_vlm_checkpoint.py
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from movieid.models.ida_vlm import IdaVlm, Request, RoleImage

CHECKPOINT = os.environ.get("MOVIEID_IDA_VLM_CHECKPOINT")
EXAMPLE = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "ida_vlm_example"

pytestmark = pytest.mark.skipif(not CHECKPOINT, reason="set MOVIEID_IDA_VLM_CHECKPOINT to a checkpoint folder")


def test_heizi_chuchun_example_gives_the_published_answer():
    if not EXAMPLE.is_dir():
        pytest.skip(f"the authors' example images are not at {EXAMPLE}")
    model = IdaVlm.from_pretrained(CHECKPOINT, variant=os.environ.get("MOVIEID_IDA_VLM_VARIANT", "base"))
    query = ("Heizi is <img>Heizi_1.jpg</img>\n Leizi is <img>Leizi_2.jpg</img>\n Chuchun is <img>Chuchun_1.jpg</img>\n"
             " In the image: <img>Chaopao_23.jpg</img>\n What is Chuchun doing?")
    images = [RoleImage(EXAMPLE / f"{name}.jpg", "id") for name in ("Heizi_1", "Leizi_2", "Chuchun_1")]
    request = Request(query, [*images, RoleImage(EXAMPLE / "Chaopao_23.jpg", "test")])
    (answer,) = model.generate([request], max_new_tokens=64)
    assert answer.text == "Chuchun is pushing Heizi in a wheelchair."
    assert answer.finish_reason == "stop"

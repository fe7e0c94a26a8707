"""Small training material for tests: a tiny checkpoint narrow enough to train in seconds on a
CPU (published layout, as ``tiny_ida_vlm``), and ID-reference samples in the released
conversation format over the real face photos of ``../shared/fixtures/faces``."""
from __future__ import annotations

import json
from pathlib import Path

from .tiny_ida_vlm import TINY_CONFIG, build_tiny_checkpoint

# Half the width of the tiny test model (one resampler head of 128), still the published layout.
SMALL_CONFIG = {"hidden_size": 128, "kv_channels": 64, "num_attention_heads": 2, "intermediate_size": 256,
                "visual": {**TINY_CONFIG["visual"], "output_dim": 128, "width": 32, "heads": 2}}
MAX_LENGTH = "4096"  # the tiny config's seq_length (300) is below one sample with two images

# (id, query with image paths relative to the faces folder, answer)
SAMPLES = [
    ("caption-obama", "Barack Obama is <img>cast/Barack Obama/obama.jpg</img>\n Watching the following images "
                      "<img>probes/obama1.jpg</img>\n and describe their content.", "Barack Obama is speaking."),
    ("locate-biden", "Joe Biden is <img>cast/Joe Biden/biden.jpg</img>\n In the image: "
                     "<img>probes/two_people.jpg</img>\n Identify Joe Biden with grounding.",
     "<ref>Joe Biden</ref><box>(520,100),(880,700)</box>"),
    ("qa-rose", "Rose Leslie is <img>cast/Rose Leslie/img1.jpg</img>\n In the image: "
                "<img>probes/kit_with_rose.jpg</img>\n What is Rose Leslie doing?", "Rose Leslie is smiling."),
]


def build_small_checkpoint(directory: Path, variant: str = "base", seed: int = 0) -> Path:
    return build_tiny_checkpoint(directory, variant=variant, seed=seed, config_overrides=SMALL_CONFIG)


def conversation(sample_id: str, query: str, answer: str) -> dict:
    return {"id": sample_id, "conversations": [{"from": "user", "value": query},
                                               {"from": "assistant", "value": answer}]}


def write_samples(path: Path, samples=SAMPLES, extra: list[dict] = ()) -> Path:
    """The samples as a JSON file; image paths stay relative (pass the faces folder as data root)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([conversation(*s) for s in samples] + list(extra)), encoding="utf-8")
    return path

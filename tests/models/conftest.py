"""Shared tiny IDA-VLM checkpoints and models (built once per session; all CPU, fp32)."""
from __future__ import annotations

import numpy as np
import pytest

from movieid.models.ida_vlm import IdaVlm
from tests.helpers.tiny_ida_vlm import build_tiny_checkpoint


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """Lazily built checkpoints by name: base/idf/idf_zero (safetensors, 3 shards)."""
    root = tmp_path_factory.mktemp("ida_vlm")
    specs = {"base": dict(variant="base"), "idf": dict(variant="idf"),
             "idf_zero": dict(variant="idf", zero_id_former=True)}
    built = {}

    def get(name: str):
        if name not in built:
            built[name] = build_tiny_checkpoint(root / name, **specs[name])
        return built[name]
    return get


@pytest.fixture(scope="session")
def base_model(checkpoints):
    return IdaVlm.from_pretrained(checkpoints("base"), device="cpu")


@pytest.fixture(scope="session")
def idf_model(checkpoints):
    return IdaVlm.from_pretrained(checkpoints("idf"), variant="idf", device="cpu")


@pytest.fixture(scope="session")
def frames():
    """Eight small RGB frames of different sizes, smooth plus noise, as numpy arrays."""
    rng = np.random.default_rng(0)
    out = []
    for k, (h, w) in enumerate([(72, 128), (90, 160), (64, 64), (120, 96), (60, 100), (80, 80), (48, 90), (100, 70)]):
        yy, xx = np.mgrid[0:h, 0:w]
        smooth = np.stack([127 + 100 * np.sin((xx + 7 * k) / 9 + c) * np.cos(yy / 11 - c) for c in range(3)], -1)
        out.append(np.clip(smooth + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8))
    return out

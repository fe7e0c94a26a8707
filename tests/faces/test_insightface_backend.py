"""The insightface backend on a tiny ONNX pack (see tests/helpers/tiny_insightface.py).

The tiny detector boxes any lit 96x96 square centred on a multiple of 32 (in detector-input
pixels) and the tiny recogniser embeds a face's colour, so these tests can assert where faces
are and which ones match, through insightface's own loading, detection and alignment code.
"""
from __future__ import annotations

import dataclasses
import hashlib

import functools
import http.server
import socket
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("insightface")

from movieid.errors import MovieIdError  # noqa: E402
from movieid.faces import insightface_backend as ib  # noqa: E402
from movieid.faces import load_backend  # noqa: E402
from tests.helpers.tiny_insightface import (  # noqa: E402
    DETECTOR, RECOGNISER, build_tiny_pack, face_landmarks)

# insightface's own alignment calls a scikit-image method deprecated in 0.26: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:`estimate` is deprecated:FutureWarning")

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)


def scene(width: int, height: int, squares: list[tuple[tuple[int, int], int, tuple[int, int, int]]]):
    """A black RGB image with coloured squares: ((centre x, centre y), side, colour)."""
    image = np.zeros((height, width, 3), np.uint8)
    for (cx, cy), side, colour in squares:
        image[cy - side // 2:cy + side // 2, cx - side // 2:cx + side // 2] = colour
    return image


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> Path:
    return build_tiny_pack(tmp_path_factory.mktemp("packs") / "buffalo_l")


@pytest.fixture(scope="module")
def backend(pack) -> ib.InsightFaceBackend:
    return ib.InsightFaceBackend(pack)


# --- the tiny pack through insightface's own routing ---------------------------------------

def test_insightface_routes_tiny_pack_to_scrfd_and_arcface(pack):
    from insightface.app import FaceAnalysis
    from insightface.model_zoo import SCRFD, ArcFaceONNX, get_model

    detector = get_model(str(pack / DETECTOR), providers=["CPUExecutionProvider"])
    recogniser = get_model(str(pack / RECOGNISER), providers=["CPUExecutionProvider"])
    assert isinstance(detector, SCRFD)
    assert (detector.use_kps, detector.fmc, detector._num_anchors) == (True, 3, 2)
    assert isinstance(recogniser, ArcFaceONNX)
    assert recogniser.input_size == (112, 112) and recogniser.output_shape[1] == 512
    assert (recogniser.input_mean, recogniser.input_std) == (127.5, 127.5)
    app = FaceAnalysis(name=str(pack), allowed_modules=["detection", "recognition"],
                       providers=["CPUExecutionProvider"])
    assert set(app.models) == {"detection", "recognition"}


# --- detection and embeddings ---------------------------------------------------------------

def test_detect_finds_each_square_with_its_landmarks(backend):
    image = scene(640, 640, [((224, 288), 96, RED), ((448, 448), 96, BLUE)])
    faces = sorted(backend.detect(image), key=lambda f: f.box.x1)
    assert len(faces) == 2
    for face, (cx, cy) in zip(faces, [(224, 288), (448, 448)]):
        assert face.box.as_list() == pytest.approx([cx - 48, cy - 48, cx + 48, cy + 48], abs=1)
        assert face.score > 0.9
        assert not hasattr(face, "embedding")       # detection only: embedding is a separate step
        np.testing.assert_allclose(face.landmarks, face_landmarks(cx, cy), atol=1)
        eyes, nose, mouth = face.landmarks[:2], face.landmarks[2], face.landmarks[3:]
        assert eyes[0][0] < eyes[1][0] and eyes[:, 1].max() < nose[1] < mouth[:, 1].min()
    assert backend.detect(scene(640, 640, [])) == []


def test_detect_reports_boxes_in_the_original_image(backend):
    # 1280x960 is letterboxed to 640x480 (scale 0.5): a 192 px square centred at (896, 448)
    # is the detector's 96 px square at (448, 224).
    faces = backend.detect(scene(1280, 960, [((896, 448), 192, GREEN)]))
    assert len(faces) == 1
    assert faces[0].box.as_list() == pytest.approx([800, 352, 992, 544], abs=2)
    np.testing.assert_allclose(faces[0].landmarks, face_landmarks(896, 448, side=192), atol=2)


def test_embeddings_are_unit_length_and_match_by_colour(backend):
    first = scene(640, 640, [((224, 288), 96, RED), ((448, 448), 96, BLUE)])
    second = scene(640, 640, [((320, 160), 96, RED)])
    red, blue = sorted(backend.analyze(first), key=lambda f: f.box.x1)
    (red_again,) = backend.analyze(second)
    for face in (red, blue, red_again):
        assert np.linalg.norm(face.embedding) == pytest.approx(1.0, abs=1e-5)
        assert face.embedding.shape == (512,)
    assert cosine(red.embedding, red_again.embedding) > backend.match_threshold
    assert cosine(red.embedding, red_again.embedding) == pytest.approx(1.0, abs=1e-4)
    assert cosine(red.embedding, blue.embedding) < backend.match_threshold
    assert cosine(red.embedding, blue.embedding) == pytest.approx(-0.5, abs=0.05)


def test_embeddings_see_the_rgb_colours(backend, pack):
    """Our RGB input reaches the model as RGB (insightface takes BGR and swaps it back)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(pack / RECOGNISER), providers=["CPUExecutionProvider"])

    def model_embedding(rgb):
        blob = np.broadcast_to(((np.array(rgb, np.float32) - 127.5) / 127.5)[None, :, None, None],
                               (1, 3, 112, 112))
        return session.run(None, {"input.1": np.ascontiguousarray(blob)})[0][0]

    (red,) = backend.analyze(scene(640, 640, [((224, 288), 96, RED)]))
    assert cosine(red.embedding, model_embedding(RED)) > 0.99
    assert cosine(red.embedding, model_embedding(BLUE)) < 0


def test_backend_agrees_with_insightface_face_analysis(backend, pack):
    from insightface.app import FaceAnalysis

    image = scene(640, 640, [((224, 288), 96, RED), ((448, 448), 96, GREEN)])
    app = FaceAnalysis(name=str(pack), allowed_modules=["detection", "recognition"],
                       providers=["CPUExecutionProvider"])
    app.prepare(ctx_id=0, det_size=(640, 640))
    theirs = sorted(app.get(np.ascontiguousarray(image[:, :, ::-1])), key=lambda f: f.bbox[0])
    ours = sorted(backend.analyze(image), key=lambda f: f.box.x1)
    assert len(ours) == len(theirs) == 2
    for mine, their in zip(ours, theirs):
        np.testing.assert_allclose(mine.box.as_list(), their.bbox, atol=0.1)
        np.testing.assert_allclose(mine.landmarks, their.kps, atol=1e-4)
        np.testing.assert_allclose(mine.embedding, their.normed_embedding, atol=1e-5)


def test_embed_without_landmarks_is_refused(backend):
    image = scene(640, 640, [((224, 288), 96, RED)])
    (face,) = backend.detect(image)
    with pytest.raises(ValueError, match="landmarks"):
        backend.embed(image, [dataclasses.replace(face, landmarks=None)])


def test_model_id_names_the_pack_and_changes_with_the_weights(backend, tmp_path):
    assert backend.model_id.startswith("insightface-buffalo_l-")
    same = ib.InsightFaceBackend(build_tiny_pack(tmp_path / "a" / "buffalo_l"))
    other = ib.InsightFaceBackend(build_tiny_pack(tmp_path / "b" / "buffalo_l", seed=1))
    assert same.model_id == backend.model_id
    assert other.model_id != backend.model_id


def test_backend_refuses_a_folder_without_models(tmp_path):
    with pytest.raises(MovieIdError, match="not an insightface model pack"):
        ib.InsightFaceBackend(tmp_path)


# --- finding packs ----------------------------------------------------------------------------

def test_find_pack_accepts_a_pack_folder(pack):
    assert ib.find_pack(pack) == pack
    assert ib.find_pack(str(pack)) == pack


def test_find_pack_searches_a_root_of_packs_preferring_buffalo_l(tmp_path):
    build_tiny_pack(tmp_path / "antelopev2")          # sorts first, but buffalo_l wins
    (tmp_path / ".buffalo_l-partial").mkdir()
    assert ib.find_pack(tmp_path) == tmp_path / "antelopev2"
    build_tiny_pack(tmp_path / "buffalo_l")
    assert ib.find_pack(tmp_path) == tmp_path / "buffalo_l"


def test_find_pack_needs_both_a_detector_and_a_recogniser(tmp_path):
    assert ib.find_pack(tmp_path) is None                 # empty
    assert ib.find_pack(tmp_path / "missing") is None     # absent
    pack = build_tiny_pack(tmp_path / "buffalo_l")
    (pack / RECOGNISER).unlink()
    (pack / "notes.onnx").write_bytes(b"not a model")
    assert ib.find_pack(tmp_path) is None
    assert ib.find_pack(pack) is None


def test_find_pack_defaults_to_insightface_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ib.find_pack(None) is None
    pack = build_tiny_pack(tmp_path / ".insightface" / "models" / "buffalo_l")
    assert ib.find_pack(None) == pack


# --- load_backend ------------------------------------------------------------------------------

def test_auto_picks_insightface_when_a_pack_is_there(pack):
    chosen = load_backend("auto", models_dir=pack)
    assert isinstance(chosen, ib.InsightFaceBackend) and chosen.name == "insightface"


def test_auto_falls_back_to_dlib_without_a_pack(tmp_path):
    from movieid.faces.dlib_backend import DlibBackend

    assert isinstance(load_backend("auto", models_dir=tmp_path), DlibBackend)


def test_insightface_without_a_pack_fails_fast_with_one_line(tmp_path):
    start = time.monotonic()
    with pytest.raises(MovieIdError) as caught:
        load_backend("insightface", models_dir=tmp_path)
    assert time.monotonic() - start < 5
    message = str(caught.value)
    assert "\n" not in message
    assert str(tmp_path) in message
    assert "movieid models download insightface" in message and "--face-models" in message


# --- downloading packs -------------------------------------------------------------------------

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture()
def http_folder(tmp_path):
    """A local HTTP server over a folder: yields (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def zip_pack(pack: Path, archive: Path, subfolder: str = "") -> Path:
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(pack.glob("*.onnx")):
            zipped.write(path, f"{subfolder}{path.name}")
    return archive


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def assert_nothing_left(root: Path):
    assert not root.exists() or list(root.iterdir()) == []


@pytest.mark.parametrize("url", [
    pytest.param(f"http://127.0.0.1:{closed_port()}/buffalo_l.zip", id="refused"),
    pytest.param("http://movieid-test.invalid/buffalo_l.zip", id="unresolvable"),
])
def test_download_offline_fails_fast_and_leaves_nothing(url, tmp_path, monkeypatch):
    monkeypatch.setattr(ib, "pack_url", lambda name: url)
    root = tmp_path / "models"
    start = time.monotonic()
    with pytest.raises(MovieIdError) as caught:
        ib.download_pack(root=root, timeout=5.0, progress=False)
    assert time.monotonic() - start < 3
    message = str(caught.value)
    assert url in message and "unzip it into" in message and "\n" not in message
    assert_nothing_left(root)


def test_download_from_a_silent_server_times_out(tmp_path, monkeypatch):
    with socket.socket() as silent:   # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        monkeypatch.setattr(ib, "pack_url", lambda name: f"http://127.0.0.1:{silent.getsockname()[1]}/x.zip")
        start = time.monotonic()
        with pytest.raises(MovieIdError, match="cannot download"):
            ib.download_pack(root=tmp_path / "models", timeout=1.0, progress=False)
        assert time.monotonic() - start < 3
    assert_nothing_left(tmp_path / "models")


def test_download_reports_http_errors_and_bad_zips(http_folder, tmp_path, monkeypatch):
    folder, base = http_folder
    root = tmp_path / "models"
    monkeypatch.setattr(ib, "pack_url", lambda name: f"{base}/{name}.zip")
    with pytest.raises(MovieIdError, match="HTTP 404"):
        ib.download_pack(root=root, progress=False)
    assert_nothing_left(root)
    (folder / "buffalo_l.zip").write_bytes(b"<html>not a zip</html>")
    with pytest.raises(MovieIdError, match="not send a valid zip"):
        ib.download_pack(root=root, progress=False)
    assert_nothing_left(root)
    with zipfile.ZipFile(folder / "buffalo_l.zip", "w") as zipped:
        zipped.writestr("README.txt", "no models")
    with pytest.raises(MovieIdError, match="no detection and recognition"):
        ib.download_pack(root=root, progress=False)
    assert_nothing_left(root)


@pytest.mark.parametrize("subfolder", ["", "buffalo_l/"], ids=["flat", "nested"])
def test_download_from_a_local_server_installs_a_loadable_pack(subfolder, pack, http_folder, tmp_path,
                                                                monkeypatch):
    folder, base = http_folder
    zip_pack(pack, folder / "buffalo_l.zip", subfolder)
    monkeypatch.setattr(ib, "pack_url", lambda name: f"{base}/{name}.zip")
    root = tmp_path / "models"
    target = ib.download_pack(root=root, progress=False)
    assert target == root / "buffalo_l"
    assert sorted(p.name for p in root.iterdir()) == ["buffalo_l"]   # no temporary leftovers
    assert sorted(p.name for p in target.iterdir()) == [ib.CHECKSUMS, DETECTOR, RECOGNISER]
    assert ib.find_pack(root) == target
    downloaded = ib.InsightFaceBackend(target)
    assert len(downloaded.detect(scene(640, 640, [((224, 288), 96, RED)]))) == 1
    # Already there: returned as is, without going online.
    monkeypatch.setattr(ib, "pack_url", lambda name: f"http://127.0.0.1:{closed_port()}/x.zip")
    assert ib.download_pack(root=root, progress=False) == target
    # A model file changed after the download is refused when the pack loads.
    recogniser = target / RECOGNISER
    recogniser.write_bytes(recogniser.read_bytes() + b"\0")
    with pytest.raises(MovieIdError, match="changed since it was downloaded"):
        ib.InsightFaceBackend(target)


def test_download_checks_the_zips_sha256(pack, http_folder, tmp_path, monkeypatch):
    folder, base = http_folder
    zip_pack(pack, folder / "buffalo_l.zip", "")
    monkeypatch.setattr(ib, "pack_url", lambda name: f"{base}/{name}.zip")
    with pytest.raises(MovieIdError, match="sha256"):
        ib.download_pack(root=tmp_path / "a", progress=False, sha256="0" * 64)
    assert_nothing_left(tmp_path / "a")
    digest = hashlib.sha256((folder / "buffalo_l.zip").read_bytes()).hexdigest()
    assert ib.download_pack(root=tmp_path / "b", progress=False, sha256=digest.upper()).is_dir()


def test_download_refuses_to_overwrite_a_folder_that_is_not_a_pack(tmp_path):
    (tmp_path / "buffalo_l").mkdir()
    (tmp_path / "buffalo_l" / "keep.txt").write_text("mine")
    with pytest.raises(MovieIdError, match="move it away"):
        ib.download_pack(root=tmp_path, progress=False)
    assert (tmp_path / "buffalo_l" / "keep.txt").read_text() == "mine"

"""SCRFD detection and ArcFace embeddings through insightface, from a model pack on disk.

A model pack is a plain folder of ONNX files, as insightface publishes them (buffalo_l:
det_10g.onnx, w600k_r50.onnx, plus landmark and gender/age models this backend ignores).
insightface tells the models apart by their inputs and outputs, not their names; so does
``find_pack``, which never downloads. ``download_pack`` is the one place that goes online,
and it gives up within its timeout when there is no network.
"""
from __future__ import annotations

import hashlib
import http.client
import importlib.util
import os
import shutil
import tempfile
import threading
import urllib.error
import urllib.request
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import MovieIdError, install_hint
from ..files import sha256_file
from ..records import Box
from .base import Detection, FaceBackend, unit_rows

DEFAULT_PACK = "buffalo_l"


def default_root() -> Path:
    """insightface's own model folder (``FaceAnalysis(root='~/.insightface')`` + ``models``).

    insightface 2.1 reads no environment variable for it (no ``INSIGHTFACE_HOME``), so
    neither does this.
    """
    return Path("~/.insightface/models").expanduser()


def pack_url(name: str) -> str:
    """Where insightface itself downloads pack ``name`` from (its ``utils.storage`` helper;
    insightface before 2.1 only has the ``BASE_REPO_URL`` constant)."""
    from insightface.utils import storage

    helper = getattr(storage, "model_zoo_download_url", None)
    return helper(f"{name}.zip") if helper else f"{storage.BASE_REPO_URL}/{name}.zip"


@lru_cache(maxsize=64)
def _task(path: str, size: int, mtime_ns: int) -> str | None:
    """'detection', 'recognition' or None, by insightface's ``ModelRouter`` rules.

    Reads the graph instead of opening an inference session, so probing a pack stays cheap;
    ``size`` and ``mtime_ns`` only key the cache.
    """
    import onnx
    from google.protobuf.message import DecodeError

    try:
        graph = onnx.load(path, load_external_data=False).graph
    except (DecodeError, OSError, ValueError):
        return None
    if len(graph.output) >= 5:
        return "detection"
    weights = {tensor.name for tensor in graph.initializer}
    inputs = [value for value in graph.input if value.name not in weights]
    if not inputs:
        return None
    dims = [d.dim_value if d.HasField("dim_value") else None
            for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[2] is None or dims[2] != dims[3]:
        return None
    side = dims[2]
    if side in (192, 96) or (len(inputs) == 2 and side == 128):   # landmark, attribute, swapper
        return None
    return "recognition" if side >= 112 and side % 16 == 0 else None


def _pack_models(folder: Path) -> tuple[Path, Path] | None:
    """The first detection and the first recognition ONNX file in ``folder`` (sorted, as
    ``FaceAnalysis`` picks them), or None if either is missing."""
    found: dict[str, Path] = {}
    for path in sorted(folder.glob("*.onnx")):
        if not path.is_file():
            continue
        stat = path.stat()
        task = _task(str(path), stat.st_size, stat.st_mtime_ns)
        if task is not None and task not in found:
            found[task] = path
        if len(found) == 2:
            return found["detection"], found["recognition"]
    return None


def _has_manifest(folder: Path) -> bool:
    """Whether ``folder`` is a manifest-V2 package (insightface 2.1's raccoon_*): those
    declare their own preprocessing, which the shape-based loading here would ignore."""
    try:
        from insightface.model_zoo import has_model_package_manifest
    except ImportError:   # insightface before 2.1 has no manifest packages
        return False
    return has_model_package_manifest(folder)


def _is_pack(folder: Path) -> bool:
    return folder.is_dir() and not _has_manifest(folder) and _pack_models(folder) is not None


def _installed() -> bool:
    """Whether the optional insightface library is there (without importing it: slow)."""
    return importlib.util.find_spec("insightface") is not None


def find_pack(models_dir: str | Path | None) -> Path | None:
    """The model pack to use, or None (also when insightface is not installed); never downloads.

    ``models_dir`` is a pack folder, or a folder of packs (``buffalo_l`` preferred, else the
    first by name); None means insightface's default root, ``~/.insightface/models``.
    """
    root = default_root() if models_dir is None else Path(models_dir).expanduser()
    if not _installed() or not root.is_dir():
        return None
    if _is_pack(root):
        return root
    others = sorted(p for p in root.iterdir() if p.name != DEFAULT_PACK and not p.name.startswith("."))
    for candidate in [root / DEFAULT_PACK, *others]:
        if _is_pack(candidate):
            return candidate
    return None


def missing_pack_message(models_dir: str | Path | None) -> str:
    """One line: where no pack was found, and the three ways to get one."""
    if not _installed():
        return f"the insightface backend needs the insightface library: {install_hint()}"
    root = default_root() if models_dir is None else Path(models_dir).expanduser()
    return (f"no insightface model pack (a folder with a detection and a recognition ONNX model) "
            f"in {root}; run `movieid models download insightface`, or unzip "
            f"{pack_url(DEFAULT_PACK)} into {root / DEFAULT_PACK}, or pass --face-models DIR")


def _open(url: str, timeout: float):
    """``urlopen`` with the whole connection bounded by ``timeout``.

    urlopen's own timeout covers connecting and each read but not the DNS lookup, which can
    stall far longer on a machine without network; so urlopen runs in a daemon thread that
    is abandoned if it has no answer in time.
    """
    result: dict = {}

    def connect() -> None:
        try:
            result["response"] = urllib.request.urlopen(url, timeout=timeout)
        except Exception as error:  # handed to the caller's thread below
            result["error"] = error

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TimeoutError(f"no answer within {timeout:g} s")
    if "error" in result:
        raise result["error"]
    return result["response"]


def _reason(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__


def _save(response, archive: Path, progress: bool) -> None:
    from tqdm import tqdm

    total = int(response.headers.get("Content-Length") or 0) or None
    with open(archive, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                                          desc=archive.name, disable=not progress) as bar:
        while chunk := response.read(1 << 20):
            out.write(chunk)
            bar.update(len(chunk))
    if total is not None and archive.stat().st_size != total:
        raise OSError(f"got {archive.stat().st_size} of {total} bytes")


CHECKSUMS = "SHA256SUMS"   # written beside a downloaded pack's files, checked when the pack loads


def write_checksums(pack: Path) -> None:
    """``SHA256SUMS`` (``sha256sum``'s format) for every file of a pack."""
    lines = [f"{sha256_file(p)}  {p.name}\n" for p in sorted(pack.iterdir()) if p.is_file() and p.name != CHECKSUMS]
    (pack / CHECKSUMS).write_text("".join(lines))


def check_checksums(pack: Path, files: list[Path]) -> dict[Path, str]:
    """The sha256 of each of ``files``; where the pack has ``SHA256SUMS`` they must match it."""
    digests = {path: sha256_file(path) for path in files}
    listed = pack / CHECKSUMS
    if listed.is_file():
        expected = dict(reversed(line.split(None, 1)) for line in listed.read_text().splitlines() if line.strip())
        for path, digest in digests.items():
            want = expected.get(path.name.strip())
            if want is not None and want != digest:
                raise MovieIdError(f"changed since it was downloaded: its sha256 is {digest}, {CHECKSUMS} "
                                   f"says {want} (download the pack again)", path)
    return digests


def download_pack(name: str = DEFAULT_PACK, root: str | Path | None = None,
                  timeout: float = 10.0, progress: bool = True, sha256: str | None = None) -> Path:
    """Download pack ``name`` into ``root/<name>`` (default root: ``~/.insightface/models``).

    Returns the existing folder if a pack is already there. Nothing is written before the
    server answers; the zip then goes to a temporary folder under ``root``, is checked and
    extracted there, and the pack is renamed into place only once it holds a detection and
    a recognition model, so a failed download leaves nothing behind. Without network it
    raises ``MovieIdError`` within about ``timeout`` seconds (also the limit for each read).
    With ``sha256`` the zip must have that hash. The pack gets a ``SHA256SUMS`` of its files,
    which every later load checks.
    """
    if not _installed():
        raise MovieIdError(missing_pack_message(root))
    root = default_root() if root is None else Path(root).expanduser()
    target = root / name
    if _is_pack(target):
        return target
    if target.exists():
        raise MovieIdError("exists but holds no detection and recognition ONNX models; "
                           "move it away and download again", target)
    url = pack_url(name)
    manual = (f"without internet, download {url} elsewhere and unzip it into {target}, "
              f"or pass --face-models DIR")
    try:
        response = _open(url, timeout)
    except OSError as error:   # URLError, HTTPError, timeouts and refusals are all OSErrors
        raise MovieIdError(f"cannot download {url}: {_reason(error)}; {manual}") from None
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        archive = work / f"{name}.zip"
        try:
            with response:
                _save(response, archive, progress)
        except (OSError, http.client.HTTPException) as error:
            raise MovieIdError(f"download of {url} failed: {_reason(error)}; {manual}") from None
        if sha256 is not None and sha256_file(archive) != sha256.lower():
            raise MovieIdError(f"{url} sent a zip whose sha256 is {sha256_file(archive)}, not {sha256.lower()}; "
                               f"{manual}")
        try:
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(work / "unpacked")
        except zipfile.BadZipFile:
            raise MovieIdError(f"{url} did not send a valid zip file; {manual}") from None
        pack = find_pack(work / "unpacked")   # some zips hold the models in a subfolder
        if pack is None:
            raise MovieIdError(f"{url} holds no detection and recognition ONNX models; {manual}")
        write_checksums(pack)
        os.rename(pack, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _default_providers() -> list[str]:
    import onnxruntime

    cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    return (["CUDAExecutionProvider"] if cuda else []) + ["CPUExecutionProvider"]


class InsightFaceBackend(FaceBackend):
    """SCRFD faces and ArcFace embeddings from one insightface model pack.

    Threshold: 0.28 cosine similarity is where insightface's own recognition demo for
    buffalo_l (det_10g + w600k_r50, ``web-demos/src_recognition/main.py`` in
    deepinsight/insightface) starts saying "They ARE the same person" (0.20-0.28 is
    "likely"). Published max-F1 thresholds for buffalo_l on LFW, CFP-FP, CALFW and CPLFW
    lie between 0.19 and 0.25 (huggingface.co/Library-Mutsumi/insightface), so 0.28 is a
    little on the strict side of common practice. It has not been tuned on film frames here
    (no real weights can be downloaded in this environment).
    """

    name = "insightface"
    match_threshold = 0.28
    cluster_threshold = 0.40    # not measured on film frames (no weights here); stricter than a match
    confidence_margin = 0.10

    def __init__(self, pack: str | Path, det_size: tuple[int, int] = (640, 640),
                 det_thresh: float = 0.5, providers: list[str] | None = None):
        """``det_size`` is the (width, height) frames are letterboxed to for detection:
        640x640 is what insightface's examples use; raise it to find smaller faces."""
        from insightface.model_zoo import SCRFD, ArcFaceONNX, get_model

        pack = Path(pack)
        models = _pack_models(pack) if pack.is_dir() else None
        if models is None:
            raise MovieIdError("not an insightface model pack (no detection and recognition "
                               "ONNX models)", pack)
        providers = providers or _default_providers()
        self._detector = get_model(str(models[0]), providers=providers)
        self._recogniser = get_model(str(models[1]), providers=providers)
        if not isinstance(self._detector, SCRFD) or not isinstance(self._recogniser, ArcFaceONNX):
            raise MovieIdError("insightface did not load these models as SCRFD and ArcFace: "
                               f"{models[0].name}, {models[1].name}", pack)
        # ctx_id 0 keeps the providers above (a negative one would force the CPU).
        self._detector.prepare(0, input_size=tuple(det_size), det_thresh=det_thresh)
        self._recogniser.prepare(0)
        digest = hashlib.sha256("".join(check_checksums(pack, list(models)).values()).encode())
        self._model_id = f"insightface-{pack.name}-{digest.hexdigest()[:12]}"

    @property
    def model_id(self) -> str:
        return self._model_id

    def detect(self, image: np.ndarray) -> list[Detection]:
        bgr = np.ascontiguousarray(image[:, :, ::-1], dtype=np.uint8)   # insightface wants BGR
        boxes, landmarks = self._detector.detect(bgr, max_num=0)
        h, w = image.shape[:2]
        faces = []
        for i, (x1, y1, x2, y2, score) in enumerate(boxes):
            box = Box(float(x1), float(y1), float(x2), float(y2)).clipped(w, h)
            if box.area <= 0:
                continue
            points = None if landmarks is None else np.asarray(landmarks[i], dtype=np.float32)
            faces.append(Detection(box=box, score=float(score), landmarks=points))
        return faces

    def embed(self, image: np.ndarray, faces: list[Detection]) -> np.ndarray:
        """Aligns each face on its five landmarks as ``ArcFaceONNX.get`` does, in batches."""
        from insightface.utils import face_align

        if not faces:
            return np.zeros((0, 512), np.float32)
        if any(face.landmarks is None for face in faces):
            raise ValueError("insightface aligns faces on the detector's five landmarks; "
                             "embed faces from this backend's detect()")
        bgr = np.ascontiguousarray(image[:, :, ::-1], dtype=np.uint8)
        side = self._recogniser.input_size[0]
        crops = [face_align.norm_crop(bgr, landmark=np.asarray(face.landmarks, np.float32),
                                      image_size=side) for face in faces]
        batch = self._recogniser.input_shape[0]
        batch = batch if isinstance(batch, int) and batch > 0 else len(crops)
        vectors = np.concatenate([self._recogniser.get_feat(crops[i:i + batch])
                                  for i in range(0, len(crops), batch)])
        return unit_rows(vectors)

